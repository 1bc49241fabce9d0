/* A fixed pool of threads that run jobs in the order they were queued.
 * cairnd's gRPC threads hand it whatever may block on the disk (store
 * reads, staging writes, the fsync of an upload, blob reads), so that a
 * slow disk delays those calls only, never the polling of every other
 * connection (a lease renewal must not wait behind a 1 GiB fsync).
 *
 * A job is the caller's memory (typically inside the state of the call it
 * serves), so queueing never allocates and cannot fail while the pool
 * runs. A job may queue itself again once its function runs. */
#ifndef CAIRN_SERVER_POOL_H
#define CAIRN_SERVER_POOL_H

#include <stdbool.h>

typedef struct srv_pool srv_pool;

typedef struct srv_job {
    void (*fn)(struct srv_job *job);
    struct srv_job *next;         /* the pool's */
} srv_job;

/* Starts threads (>= 1) workers. NULL when none could start. */
srv_pool *srv_pool_start(int threads);

/* Queues job to run fn(job) on a pool thread. */
void srv_pool_run(srv_pool *p, srv_job *job, void (*fn)(srv_job *job));

/* Runs every job queued (also those the running ones queue), joins the
 * threads and frees the pool. Call once nothing else queues jobs. NULL is
 * a no-op. */
void srv_pool_stop(srv_pool *p);

#endif
