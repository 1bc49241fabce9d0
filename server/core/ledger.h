/* The ledger: the single writer. Mutations from all calls queue here; one
 * thread takes whatever has queued, applies it as one transaction (one
 * fsync for the batch: group commit), each mutation inside its own
 * savepoint together with its idempotency record; a second thread, the
 * replier, then answers every caller while the writer goes on with the
 * next batch (with nothing queued, the writer answers them itself). A
 * key seen before is answered from its record, before any other
 * precondition is looked at. After a commit the ledger tells its commit
 * observer which logs grew (the watch hub listens). */
#ifndef CAIRN_SERVER_CORE_LEDGER_H
#define CAIRN_SERVER_CORE_LEDGER_H

#include "base/arena.h"
#include "base/error.h"
#include "metrics/metrics.h"
#include "store/store.h"

#include <protobuf-c/protobuf-c.h>
#include <stdbool.h>
#include <stdint.h>

typedef struct srv_ledger srv_ledger;

/* A run an apply deleted, in the mutation's arena. */
typedef struct srv_deleted_run {
    const char *run_id;
    struct srv_deleted_run *next;
} srv_deleted_run;

/* What an apply function works with; set by the ledger. */
typedef struct srv_apply {
    srv_txn *txn;             /* the batch's write transaction */
    srv_arena *arena;         /* the mutation's: response and scratch */
    int64_t now_us;           /* one clock reading for the whole batch */
    void *ctx;                /* the mutation's apply_ctx */
    /* Set by the apply when it appended to a log: told to the observer
     * once the batch commits. */
    const char *grew_run_id;
    uint64_t grew_last_seq;
    /* Added to by the apply (srv_apply_deleted) for each run it deleted:
     * told to the deletion observer once the batch commits. */
    srv_deleted_run *deleted;
} srv_apply;

/* Notes that the apply deleted run_id (copied into its arena). */
srv_code srv_apply_deleted(srv_apply *ap, const char *run_id, srv_error *err);

/* Applies one mutation inside the batch transaction and fills resp, an
 * empty message of the mutation's response type. Runs on the writer
 * thread. */
typedef srv_code (*srv_apply_fn)(srv_apply *ap, const ProtobufCMessage *req,
                                 ProtobufCMessage *resp, srv_error *err);

/* Called once per mutation after its batch ended, in the batch's order,
 * on the replier thread, or on the writer's when nothing else waits:
 * code SRV_OK with the encoded response (in the mutation's arena), or an
 * error. replayed: the response came from an idempotency record. */
typedef void (*srv_mutation_done)(void *ctx, srv_code code, const srv_error *err,
                                  const uint8_t *resp, size_t len, bool replayed);

/* Told after each commit that a run's log grew to last_seq (a run may be
 * told more than once per commit, in increasing order); on the writer
 * thread. Must not block. */
typedef void (*srv_commit_observer)(void *ctx, const char *run_id, uint64_t last_seq);
/* Told after each commit that a run was deleted; on the writer thread.
 * Must not block. */
typedef void (*srv_deletion_observer)(void *ctx, const char *run_id);

/* A mutation with key NULL is cairnd's own (the lifecycle sweep): it has
 * no idempotency record, and with response NULL the apply gets resp NULL
 * and done gets no response. Every request from a client has a key. */
typedef struct srv_mutation {
    /* Filled by the submitter; must stay valid until done is called. */
    const char *method;                          /* dedup scope, "AppendEvents" */
    const char *run_id;
    const char *key;
    uint8_t fingerprint[32];
    const ProtobufCMessage *request;
    const ProtobufCMessageDescriptor *response;  /* apply fills one; marks replays */
    srv_apply_fn apply;
    void *apply_ctx;
    srv_arena *arena;
    srv_mutation_done done;
    void *ctx;
    /* Owned by the ledger. */
    struct srv_mutation *next;
    size_t bytes;                                /* request's packed size, while queued */
} srv_mutation;

/* Starts the writer thread over st. max_queue bounds waiting mutations;
 * past it, submissions fail with RESOURCE_EXHAUSTED and a pushback. */
srv_code srv_ledger_start(srv_store *st, int max_queue, srv_ledger **out, srv_error *err);

/* Bounds the waiting mutations by their requests' packed sizes as well
 * (0, the default: by count only); past it, submissions fail with
 * RESOURCE_EXHAUSTED and a pushback. A write is taken into an empty queue
 * whatever its size (messages are bounded by the transport). Call before the first submission. */
void srv_ledger_limit_bytes(srv_ledger *l, size_t max_queue_bytes);

/* Sets the one commit observer; call before the first submission. */
void srv_ledger_observe(srv_ledger *l, srv_commit_observer fn, void *ctx);
/* Sets the one deletion observer; call before the first submission. */
void srv_ledger_observe_deletions(srv_ledger *l, srv_deletion_observer fn, void *ctx);

/* Queues m. On SRV_OK, m->done will be called exactly once (on the writer
 * thread); on failure it is not called and *err says why (overload,
 * stopping). Thread-safe. */
srv_code srv_ledger_submit(srv_ledger *l, srv_mutation *m, srv_error *err);

/* Looks m's key (run_id, method, key) up in a read snapshot of st, before
 * the mutation is submitted: *found, and the record in arena a. The
 * ledger checks again inside its transaction, so a miss here is only a
 * hint. Any thread. */
srv_code srv_ledger_lookup(srv_store *st, const srv_mutation *m, srv_arena *a,
                           srv_dedup_record *rec, bool *found, srv_error *err);

/* Answers a key found before the mutation reached the ledger (read-only
 * lookup in a read snapshot): the stored response with replayed = true,
 * in arena a, or ALREADY_EXISTS when rec was made for another request
 * (another fingerprint). */
srv_code srv_ledger_replay(const srv_mutation *m, const srv_dedup_record *rec, srv_arena *a,
                           const uint8_t **resp, size_t *len, srv_error *err);

/* What the writer did, for metrics; recorded on the writer thread, read
 * from any. */
typedef struct srv_ledger_metrics {
    srv_histogram batch_size;     /* mutations per transaction */
    srv_histogram commit_us;      /* srv_store_commit's time, the fsync included */
} srv_ledger_metrics;

/* The ledger's metrics; they live as long as l. Any thread. */
srv_ledger_metrics *srv_ledger_metrics_of(srv_ledger *l);

/* Mutations waiting for the writer now. Any thread. */
int srv_ledger_queued(srv_ledger *l);

/* Finishes every queued mutation (each done is called) and stops the
 * thread. Submissions from then on fail with UNAVAILABLE, so the ledger
 * stays valid for callers that may still submit (the transport's threads)
 * until srv_ledger_free. Call from one thread. NULL is a no-op. */
void srv_ledger_stop(srv_ledger *l);
/* Stops the ledger if still running, and frees it. NULL is a no-op. */
void srv_ledger_free(srv_ledger *l);

#endif
