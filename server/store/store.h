/* The store, as its callers (core/) see it: durable state as *primitive*
 * operations (find, insert, update, delete; no cairn rule), reached only
 * through the srv_store_* wrappers in store.c. A backend implements them
 * (backend.h); srv_store_open picks one by name from the registry.
 *
 * Transactions. Every data operation runs inside a srv_txn:
 * - a read snapshot (srv_store_read_begin, any thread, many at once): it
 *   sees committed data only, one consistent state for its whole life;
 * - the write transaction (srv_store_begin, the ledger's writer thread
 *   only, one at a time): it sees its own writes; savepoints nest one
 *   mutation inside it. Operations marked "write" need this one.
 *
 * Ownership: strings and arrays an operation returns live in the arena
 * the caller passes; the store never frees them. Inputs are read during
 * the call only, unless said otherwise.
 *
 * Errors: SRV_OK, or a code with *err filled: UNAVAILABLE when storage
 * fails (retry later), RESOURCE_EXHAUSTED with a pushback when the disk is
 * full, DATA_LOSS when stored data is corrupt, ABORTED when another
 * process raced this one on a unique key (the ledger retries the mutation
 * once; see backend.h). "Not there" is never an error: finders report it
 * through *found, and core/ words the error.
 *
 * Fail-stop: once an fsync of what the store writes has failed (data, a
 * directory, the database's own), the store takes no more writes: begin,
 * commit and stage_begin fail UNAVAILABLE from then on, reads go on. After
 * a failed fsync the kernel may have dropped the dirty pages and report a
 * later fsync as a success, so nothing written since the last good one can
 * be vouched for; only a process that reads the disk again can tell what is
 * there. The owner hears of it through srv_store_config's on_failed. */
#ifndef CAIRN_SERVER_STORE_STORE_H
#define CAIRN_SERVER_STORE_STORE_H

#include "base/arena.h"
#include "base/error.h"
#include "cairn/v1/coordinator.pb-c.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct srv_store srv_store;
typedef struct srv_txn srv_txn;
/* Snapshot bytes on their way in: staged while the stream arrives, then
 * linked to a checkpoint inside the write transaction. */
typedef struct srv_blob_stage srv_blob_stage;
/* Snapshot bytes on their way out. */
typedef struct srv_blob_reader srv_blob_reader;

/* What a backend may need to open; each reads the fields it knows. */
typedef struct srv_store_config {
    const char *data_dir;     /* sqlite: cairn.db, blobs/ and LOCK live here */
    int readers;              /* connections for read snapshots */
    const char *pg_dsn;       /* postgres: libpq connection string or URI */
    int pg_pool_size;         /* postgres: pool connections (0: readers + 2) */
    /* Told once, on the thread that met it, when the store stopped taking
     * writes (fail-stop, above); why says what failed. May be NULL. Must
     * not block. */
    void (*on_failed)(void *ctx, const srv_error *why);
    void *on_failed_ctx;
    /* Told, on a thread of the store's, that run_id's log holds everything
     * up to last_seq, committed by any process sharing the store (postgres:
     * LISTEN/NOTIFY; this process's own commits come too). May be NULL;
     * a backend of one process never calls it (the ledger tells its own
     * observer). Must not block; may be called until srv_store_close
     * returns. */
    void (*on_committed)(void *ctx, const char *run_id, uint64_t last_seq);
    /* Told, on the same thread as on_committed, that commits may have
     * gone untold (postgres: the listening connection was lost, and
     * whatever was announced meanwhile with it): the owner re-reads the
     * heads it cares about. Called once listening has resumed, so every
     * commit the owner's re-read misses is told through on_committed.
     * May be NULL. Must not block. Shares on_committed_ctx. */
    void (*on_resync)(void *ctx);
    /* Told, on the same thread as on_committed, that run_id was deleted,
     * by any process sharing the store (this one's own deletions come
     * too). May be NULL. Must not block. Shares on_committed_ctx. */
    void (*on_deleted)(void *ctx, const char *run_id);
    void *on_committed_ctx;
} srv_store_config;

/* Opens the backend registered as name ("sqlite", "postgres"), creating or migrating
 * its schema. INVALID_ARGUMENT for an unknown name or a backend whose ops
 * version this build does not know; the backend's own errors otherwise
 * (FAILED_PRECONDITION: data dir in use, schema newer than this build). */
srv_code srv_store_open(const char *name, const srv_store_config *cfg, srv_store **out,
                        srv_error *err);
/* Closes the store; a write transaction still open is rolled back. NULL
 * is a no-op. */
void srv_store_close(srv_store *st);
/* The registered names, comma-separated ("sqlite"), for --help. */
const char *srv_store_names(void);

/* ---- transactions ---- */

srv_code srv_store_read_begin(srv_store *st, srv_txn **out, srv_error *err);
/* Ends a read snapshot. NULL is a no-op. */
void srv_store_read_end(srv_txn *t);

/* Writer thread only. */
srv_code srv_store_begin(srv_store *st, srv_txn **out, srv_error *err);
/* Makes everything since begin durable (fsync) or fails as a whole; the
 * transaction is over either way. */
srv_code srv_store_commit(srv_txn *t, srv_error *err);
/* Undoes everything since begin; the transaction is over. */
void srv_store_rollback(srv_txn *t);
/* A nested scope for one mutation: release keeps its effects, rollback_to
 * undoes them; both end the scope. */
srv_code srv_store_savepoint(srv_txn *t, srv_error *err);
srv_code srv_store_release(srv_txn *t, srv_error *err);
void srv_store_rollback_to(srv_txn *t);

/* ---- runs ---- */

/* The numbers of a run that mutations need. */
typedef struct srv_run_head {
    int64_t ref;                      /* the backend's handle; increases in creation order */
    const char *run_id;
    int64_t created_us;
    uint64_t next_seq;                /* 1 + the last seq */
    uint32_t n_workers;
    uint32_t n_completed;
    const char *latest_checkpoint_id; /* "" before the first */
    int64_t latest_checkpoint_us;
    uint64_t checkpoint_events;       /* the latest checkpoint's events_count */
} srv_run_head;

typedef struct srv_label {
    const char *key;
    const char *value;
} srv_label;

/* A run with its definition. */
typedef struct srv_run_rec {
    srv_run_head head;
    char **workers;                   /* in definition order */
    size_t n_workers;
    char **completed;                 /* in completion order */
    size_t n_completed;
    srv_label *labels;                /* sorted by key */
    size_t n_labels;
} srv_run_rec;

srv_code srv_store_run_find(srv_txn *t, srv_arena *a, const char *run_id, srv_run_head *out,
                            bool *found, srv_error *err);
srv_code srv_store_run_get(srv_txn *t, srv_arena *a, const char *run_id, srv_run_rec *out,
                           bool *found, srv_error *err);
/* Runs whose ref is greater than after and whose id starts with prefix
 * ("" for every run), in creation order, at most limit. */
srv_code srv_store_runs_list(srv_txn *t, srv_arena *a, int64_t after, const char *prefix,
                             uint32_t limit, srv_run_rec **out, size_t *n, srv_error *err);
/* Write. Stores a new run with next_seq 1 (labels sorted by key, no two
 * alike); *ref is its handle. ABORTED when the id exists. */
srv_code srv_store_run_insert(srv_txn *t, const char *run_id, char *const *workers,
                              size_t n_workers, const srv_label *labels, size_t n_labels,
                              int64_t now_us, int64_t *ref, srv_error *err);
/* Write. Deletes the run and everything it holds: events, workers,
 * labels, leases, idempotency records. Its checkpoints are the caller's
 * to delete first, each with its snapshot reference (checkpoint_delete,
 * blob_unlink). Ops version 3. */
srv_code srv_store_run_delete(srv_txn *t, const srv_run_head *run, srv_error *err);
/* Write. Records when the run completed (its last worker did). Ops
 * version 3. */
srv_code srv_store_run_set_completed(srv_txn *t, const srv_run_head *run, int64_t now_us,
                                     srv_error *err);
/* Ids of runs that completed before before_us, oldest completion first,
 * at most limit, in the arena. Ops version 3. */
srv_code srv_store_runs_completed_before(srv_txn *t, srv_arena *a, int64_t before_us,
                                         uint32_t limit, char ***out, size_t *n,
                                         srv_error *err);

/* ---- the event log ---- */

/* Write. Stores events[i] (type, worker_id, payload) as seq
 * run->next_seq + i, created now, and moves the run's next_seq past them.
 * ABORTED when a seq exists. */
srv_code srv_store_events_insert(srv_txn *t, const srv_run_head *run,
                                 Cairn__V1__Event *const *events, size_t n, int64_t now_us,
                                 srv_error *err);
/* Events with seq >= from_seq in order, at most max_events, and stopping
 * before their cost (payload bytes + SRV_EVENT_COST each) passes
 * max_bytes, but at least one. run_id, seq and created_at are filled. */
srv_code srv_store_events_read(srv_txn *t, srv_arena *a, const srv_run_head *run,
                               uint64_t from_seq, uint32_t max_events, size_t max_bytes,
                               Cairn__V1__Event ***out, size_t *n, srv_error *err);

/* ---- workers ---- */

/* Whether worker_id is one of the run's workers, and the seq of its
 * completion (0: not completed). */
srv_code srv_store_worker_get(srv_txn *t, const srv_run_head *run, const char *worker_id,
                              bool *is_worker, uint64_t *completed_seq, srv_error *err);
/* Write. Marks a worker of the run completed at seq; counts it in the
 * run's n_completed. */
srv_code srv_store_worker_complete(srv_txn *t, const srv_run_head *run, const char *worker_id,
                                   uint64_t seq, srv_error *err);

typedef struct srv_completion {
    const char *worker_id;
    uint64_t seq;                     /* of its worker.completed event */
} srv_completion;

/* The run's completed workers in seq order. */
srv_code srv_store_completions(srv_txn *t, srv_arena *a, const srv_run_head *run,
                               srv_completion **out, size_t *n, srv_error *err);

/* ---- leases ---- */

/* The latest lease of a worker. The row outlives the lease, so the next
 * fencing token can be larger than every earlier one. */
typedef struct srv_lease_rec {
    bool found;
    const char *lease_id;
    const char *holder;
    uint64_t fencing_token;
    int64_t expires_us;               /* 0 once released */
} srv_lease_rec;

srv_code srv_store_lease_get(srv_txn *t, srv_arena *a, const srv_run_head *run,
                             const char *worker_id, srv_lease_rec *out, srv_error *err);
/* Write. Replaces the worker's lease row with *l. */
srv_code srv_store_lease_put(srv_txn *t, const srv_run_head *run, const char *worker_id,
                             const srv_lease_rec *l, srv_error *err);

/* ---- checkpoints ---- */

typedef struct srv_checkpoint_rec {
    const char *checkpoint_id;
    int64_t created_us;
    const char *run_state;
    uint64_t events_count;
    uint64_t snapshot_size;
    const char *sha256;               /* of the snapshot, 64 hex digits */
    char **completed;                 /* completed workers it records */
    size_t n_completed;
} srv_checkpoint_rec;

/* Write. Stores a checkpoint whose snapshot was linked by
 * srv_store_blob_link, and makes it the run's latest (latest_checkpoint_id,
 * _us and checkpoint_events of its head). ABORTED when the id exists. */
srv_code srv_store_checkpoint_insert(srv_txn *t, const srv_run_head *run,
                                     const srv_checkpoint_rec *c, srv_error *err);
/* Write. Deletes a checkpoint (not its snapshot: see blob_unlink). */
srv_code srv_store_checkpoint_delete(srv_txn *t, const srv_run_head *run,
                                     const char *checkpoint_id, srv_error *err);
/* One checkpoint, or the newest when checkpoint_id is "". */
srv_code srv_store_checkpoint_get(srv_txn *t, srv_arena *a, const srv_run_head *run,
                                  const char *checkpoint_id, srv_checkpoint_rec *out,
                                  bool *found, srv_error *err);
/* The run's checkpoints with an id greater than after ("" = all), oldest
 * first, at most limit; with their completed workers when `full`, else
 * only id, created_us and sha256 are filled. */
srv_code srv_store_checkpoints_list(srv_txn *t, srv_arena *a, const srv_run_head *run,
                                    const char *after, uint32_t limit, bool full,
                                    srv_checkpoint_rec **out, size_t *n, srv_error *err);

/* ---- pins: checkpoints being read, which cleanup must not delete ----
 * A pin is a row with an expiry, so every process's cleanup honours it
 * and a pin whose process died lapses by itself. pin_add and pin_remove
 * commit on their own (any thread, outside the write transaction) and
 * should not wait for it. pinned may read pins as committed at the time
 * of the call rather than in t's snapshot: what makes a download safe is
 * its order (pin, read the checkpoint again, open its bytes; see
 * core/snapshots.c), not the isolation of the cleanup's read. */

srv_code srv_store_pin_add(srv_store *st, const char *run_id, const char *checkpoint_id,
                           int64_t expires_us, int64_t *pin, srv_error *err);
srv_code srv_store_pin_remove(srv_store *st, int64_t pin, srv_error *err);
/* Whether a pin on the checkpoint expires after now_us. */
srv_code srv_store_pinned(srv_txn *t, const char *run_id, const char *checkpoint_id,
                          int64_t now_us, bool *pinned, srv_error *err);

/* ---- snapshot bytes ---- */

/* Any thread, no transaction: one stage per upload. */
srv_code srv_store_stage_begin(srv_store *st, srv_blob_stage **out, srv_error *err);
srv_code srv_store_stage_write(srv_blob_stage *b, const uint8_t *data, size_t len,
                               srv_error *err);
/* Makes the staged bytes durable; sha256 is their hex digest. */
srv_code srv_store_stage_finish(srv_blob_stage *b, const char *sha256, srv_error *err);
/* Discards what no commit linked, and frees. NULL is a no-op. Call after
 * the transaction that linked it ended. */
void srv_store_stage_free(srv_blob_stage *b);

/* Write. Adds a reference to the finished stage's content, storing it
 * when new (identical content is stored once). */
srv_code srv_store_blob_link(srv_txn *t, srv_blob_stage *b, uint64_t size, srv_error *err);
/* Write. Drops one reference; content left without one is removed after
 * the transaction commits. */
srv_code srv_store_blob_unlink(srv_txn *t, const char *sha256, srv_error *err);

/* Any thread, no transaction. NOT_FOUND when the content is gone. */
srv_code srv_store_blob_open(srv_store *st, const char *sha256, srv_blob_reader **out,
                             srv_error *err);
/* Reads up to cap bytes; *n == 0 at the end. */
srv_code srv_store_blob_read(srv_blob_reader *r, uint8_t *buf, size_t cap, size_t *n,
                             srv_error *err);
/* NULL is a no-op. */
void srv_store_blob_close(srv_blob_reader *r);

/* False when the backend lost the write transaction t under a failed
 * operation: SQLite rolls a transaction back whole on some errors (I/O
 * errors; a full disk or no memory without a statement journal). Then
 * everything since begin is undone, and nothing more may run in t (a
 * savepoint would start a transaction of its own and commit by itself):
 * the caller fails the whole batch and rolls back. Writer thread. */
bool srv_store_txn_active(srv_txn *t);

/* ---- idempotency records: (run, method, key) -> fingerprint, response ---- */

typedef struct srv_dedup_key {
    const char *run_id;
    const char *method;               /* short RPC name, "AppendEvents" */
    const char *key;
} srv_dedup_key;

typedef struct srv_dedup_record {
    uint8_t fingerprint[32];          /* SHA-256 of the request without its key */
    const uint8_t *response;          /* the encoded response as first sent */
    size_t response_len;
} srv_dedup_record;

srv_code srv_store_dedup_get(srv_txn *t, srv_arena *a, const srv_dedup_key *k,
                             srv_dedup_record *out, bool *found, srv_error *err);
/* Write. ABORTED when the key exists. A record whose run is gone (the
 * mutation deleted it: DeleteRun) is kept by the run's id alone, so a
 * retry still finds it, until dedup_expire forgets it. */
srv_code srv_store_dedup_put(srv_txn *t, const srv_dedup_key *k, const srv_dedup_record *rec,
                             int64_t now_us, srv_error *err);
/* Write. Deletes at most limit records made before before_us (those of
 * gone runs included); *n says how many went. Ops version 3. */
srv_code srv_store_dedup_expire(srv_txn *t, int64_t before_us, uint32_t limit, size_t *n,
                                srv_error *err);

/* Write, first in a batch (the ledger, right after begin): the batch in
 * t will apply mutations of these runs with these keys (a key's key NULL:
 * the run only; run_id NULL or "": no run). A backend may read ahead what
 * they will ask for, in one round trip instead of one a call: lock and
 * read the runs (run_find), read the records (dedup_get), read its clock
 * (srv_store_now). Later calls must answer as if made now; nothing else
 * changes. A backend of ops version 4 or older reads nothing ahead. Ops
 * version 5. */
srv_code srv_store_prefetch(srv_txn *t, const srv_dedup_key *keys, size_t n, srv_error *err);

/* ---- the clock ---- */

/* The store's clock, in microseconds since the Unix epoch: the one clock
 * that every process sharing the store reads, so that lease expiry,
 * fencing and pins mean the same to all of them. PostgreSQL: the
 * database server's clock_timestamp(); SQLite (one process): this
 * machine's wall clock. t is the write transaction (read on its
 * connection, writer thread) or NULL (any thread). */
srv_code srv_store_now(srv_store *st, srv_txn *t, int64_t *now_us, srv_error *err);

/* ---- what the store holds (for metrics) ---- */

typedef struct srv_store_usage {
    uint64_t bytes;               /* on disk: SQLite's database, WAL and snapshot
                                   * files; PostgreSQL's pg_database_size */
    uint64_t live_leases;         /* leases not released whose expires_at is ahead */
} srv_store_usage;

/* Reads it in a read snapshot of its own, by the store's clock. Any
 * thread; a backend of ops version 2 or older answers UNIMPLEMENTED. */
srv_code srv_store_usage_get(srv_store *st, srv_store_usage *out, srv_error *err);

/* ---- what the wrappers saw (for logs and metrics) ---- */

/* Every operation, by name; SRV_STORE_OP_<NAME> indexes counters and
 * fault injection. */
#define SRV_STORE_OP_MAP(XX)                                                               \
    XX(READ_BEGIN) XX(BEGIN) XX(COMMIT) XX(SAVEPOINT) XX(RELEASE) XX(RUN_FIND) XX(RUN_GET) \
    XX(RUNS_LIST) XX(RUN_INSERT) XX(EVENTS_INSERT) XX(EVENTS_READ) XX(WORKER_GET)          \
    XX(WORKER_COMPLETE) XX(COMPLETIONS) XX(LEASE_GET) XX(LEASE_PUT) XX(CHECKPOINT_INSERT)  \
    XX(CHECKPOINT_DELETE) XX(CHECKPOINT_GET) XX(CHECKPOINTS_LIST) XX(PIN_ADD)              \
    XX(PIN_REMOVE) XX(PINNED) XX(STAGE_BEGIN) XX(STAGE_WRITE) XX(STAGE_FINISH)             \
    XX(BLOB_LINK) XX(BLOB_UNLINK) XX(BLOB_OPEN) XX(BLOB_READ) XX(DEDUP_GET) XX(DEDUP_PUT)  \
    XX(NOW) XX(USAGE) XX(RUN_DELETE) XX(RUN_SET_COMPLETED) XX(RUNS_COMPLETED_BEFORE)         \
    XX(DEDUP_EXPIRE) XX(PREFETCH)

typedef enum srv_store_op {
#define XX(name) SRV_STORE_OP_##name,
    SRV_STORE_OP_MAP(XX)
#undef XX
        SRV_STORE_N_OPS
} srv_store_op;

/* "EVENTS_INSERT"; "?" for a number out of range. */
const char *srv_store_op_name(srv_store_op op);

typedef struct srv_store_stats {
    uint64_t calls[SRV_STORE_N_OPS];
    uint64_t failures[SRV_STORE_N_OPS];
    uint64_t commit_us_total;         /* time inside commit (the fsync) */
    uint64_t commit_us_max;
} srv_store_stats;

/* A copy of the counters. Thread-safe. */
void srv_store_get_stats(srv_store *st, srv_store_stats *out);

/* For tests: the nth call (1 = the next) of op from now fails with code
 * and a message saying it was injected, without reaching the backend.
 * code SRV_OK disarms. One armed fault (or hook) per op. Thread-safe. */
void srv_store_inject_fault(srv_store *st, srv_store_op op, unsigned nth, srv_code code);

/* For tests of races: fn(ctx) runs on the calling thread just before the
 * nth call of op reaches the backend, which then goes on as usual; fn may
 * use the store (another operation, even a write transaction when the
 * call is not the writer's). Replaces the op's armed fault. */
typedef void (*srv_store_hook)(void *ctx);
void srv_store_inject_hook(srv_store *st, srv_store_op op, unsigned nth, srv_store_hook fn,
                           void *ctx);

#endif
