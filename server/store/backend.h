/* For implementers of a store backend (store/<name>/). Callers use
 * store.h; only store.c calls these functions, through the wrappers that
 * check the version, count, time and inject faults.
 *
 * A backend fills one struct srv_store_ops and registers an opener in
 * store.c's registry. It stores and finds: no cairn rule and no error
 * text about a request lives here (core/ has them all). The semantics of
 * each operation are written beside its wrapper in store.h; below are
 * only what an implementer must add: threads, ownership and races.
 *
 * Threads.
 * - read_begin and every operation on a read snapshot may run on any
 *   thread, concurrently with each other and with the writer.
 * - begin .. commit/rollback and every "write" operation run on one
 *   thread at a time (the ledger's writer); a backend needs no lock for
 *   its write state, but may be opened by several *processes* at once
 *   (the cluster backend) and must then be correct against them.
 * - stage_*, blob_open/read/close and pin_add/pin_remove run on any
 *   thread, outside transactions.
 *
 * Ownership. srv_store and srv_txn are the first members of the backend's
 * own structs (it casts back). A srv_txn from begin or read_begin stays
 * valid until commit/rollback/read_end; the backend owns it. Everything
 * returned goes into the caller's arena. The caller keeps a stage until
 * stage_free; a reader until blob_close.
 *
 * Races with another process (the rule for every backend):
 * - a unique key taken by a concurrent transaction (run_insert,
 *   events_insert, checkpoint_insert, dedup_put) is reported as
 *   SRV_ABORTED; the ledger rolls the mutation back to its savepoint and
 *   applies it once more, and the second attempt sees the winner's row
 *   (an idempotency key then replays; a run id then compares definitions);
 * - serialization failures and deadlocks are retried inside the backend,
 *   or reported as ABORTED;
 * - pins are rows with an expiry: every process's cleanup reads them
 *   (pinned), so none deletes a checkpoint another process is streaming;
 *   the expiry frees pins of a process that died;
 * - snapshot content removed after a commit must be re-checked for
 *   references first (another transaction may have linked it again).
 *
 * Versions: SRV_STORE_OPS_VERSION grows when operations are appended;
 * never reorder or remove one. store.c refuses a backend whose version is
 * 0 or newer than its own, and one that leaves an operation NULL. */
#ifndef CAIRN_SERVER_STORE_BACKEND_H
#define CAIRN_SERVER_STORE_BACKEND_H

#include "store/store.h"

#include <stdatomic.h>

#define SRV_STORE_OPS_VERSION 5

struct srv_store_ops;

/* The wrappers' state; first member of every backend's store. */
struct srv_store {
    const struct srv_store_ops *ops;
    _Atomic uint64_t calls[SRV_STORE_N_OPS];
    _Atomic uint64_t failures[SRV_STORE_N_OPS];
    _Atomic uint64_t commit_us_total;
    _Atomic uint64_t commit_us_max;
    _Atomic unsigned fault_countdown[SRV_STORE_N_OPS];
    _Atomic int fault_code[SRV_STORE_N_OPS];      /* SRV_OK with a hook: go on */
    srv_store_hook fault_hook[SRV_STORE_N_OPS];   /* set before the countdown */
    void *fault_hook_ctx[SRV_STORE_N_OPS];
    /* Fail-stop (srv_store_fail_stop): 0 running, 1 being recorded, 2
     * stopped with stop_err; the callback comes from srv_store_config. */
    _Atomic int stopped;
    srv_error stop_err;
    void (*on_failed)(void *ctx, const srv_error *why);
    void *on_failed_ctx;
};

/* For a backend whose fsync failed (of data, of a directory, inside its
 * database engine): records why (the first call only), logs it at error
 * level and tells the store's on_failed; from then on the wrappers refuse
 * begin, commit and stage_begin (see "Fail-stop" in store.h). The
 * operation in hand still returns its own error. Any thread. */
void srv_store_fail_stop(srv_store *st, const srv_error *why);

/* First member of every backend's transaction. */
struct srv_txn {
    srv_store *store;
    bool write;
};

struct srv_store_ops {
    unsigned version;         /* SRV_STORE_OPS_VERSION */
    const char *name;         /* "sqlite" */

    void (*close)(srv_store *st);

    srv_code (*read_begin)(srv_store *st, srv_txn **out, srv_error *err);
    void (*read_end)(srv_txn *t);
    srv_code (*begin)(srv_store *st, srv_txn **out, srv_error *err);
    srv_code (*commit)(srv_txn *t, srv_error *err);
    void (*rollback)(srv_txn *t);
    srv_code (*savepoint)(srv_txn *t, srv_error *err);
    srv_code (*release)(srv_txn *t, srv_error *err);
    void (*rollback_to)(srv_txn *t);

    srv_code (*run_find)(srv_txn *t, srv_arena *a, const char *run_id, srv_run_head *out,
                         bool *found, srv_error *err);
    srv_code (*run_get)(srv_txn *t, srv_arena *a, const char *run_id, srv_run_rec *out,
                        bool *found, srv_error *err);
    srv_code (*runs_list)(srv_txn *t, srv_arena *a, int64_t after, const char *prefix,
                          uint32_t limit, srv_run_rec **out, size_t *n, srv_error *err);
    srv_code (*run_insert)(srv_txn *t, const char *run_id, char *const *workers,
                           size_t n_workers, const srv_label *labels,
                           size_t n_labels, int64_t now_us, int64_t *ref, srv_error *err);

    srv_code (*events_insert)(srv_txn *t, const srv_run_head *run,
                              Cairn__V1__Event *const *events, size_t n, int64_t now_us,
                              srv_error *err);
    srv_code (*events_read)(srv_txn *t, srv_arena *a, const srv_run_head *run,
                            uint64_t from_seq, uint32_t max_events, size_t max_bytes,
                            Cairn__V1__Event ***out, size_t *n, srv_error *err);

    srv_code (*worker_get)(srv_txn *t, const srv_run_head *run, const char *worker_id,
                           bool *is_worker, uint64_t *completed_seq, srv_error *err);
    srv_code (*worker_complete)(srv_txn *t, const srv_run_head *run, const char *worker_id,
                                uint64_t seq, srv_error *err);
    srv_code (*completions)(srv_txn *t, srv_arena *a, const srv_run_head *run,
                            srv_completion **out, size_t *n, srv_error *err);

    srv_code (*lease_get)(srv_txn *t, srv_arena *a, const srv_run_head *run,
                          const char *worker_id, srv_lease_rec *out, srv_error *err);
    srv_code (*lease_put)(srv_txn *t, const srv_run_head *run, const char *worker_id,
                          const srv_lease_rec *l, srv_error *err);

    srv_code (*checkpoint_insert)(srv_txn *t, const srv_run_head *run,
                                  const srv_checkpoint_rec *c, srv_error *err);
    srv_code (*checkpoint_delete)(srv_txn *t, const srv_run_head *run,
                                  const char *checkpoint_id, srv_error *err);
    srv_code (*checkpoint_get)(srv_txn *t, srv_arena *a, const srv_run_head *run,
                               const char *checkpoint_id, srv_checkpoint_rec *out, bool *found,
                               srv_error *err);
    srv_code (*checkpoints_list)(srv_txn *t, srv_arena *a, const srv_run_head *run,
                                 const char *after, uint32_t limit, bool full,
                                 srv_checkpoint_rec **out, size_t *n, srv_error *err);

    srv_code (*pin_add)(srv_store *st, const char *run_id, const char *checkpoint_id,
                        int64_t expires_us, int64_t *pin, srv_error *err);
    srv_code (*pin_remove)(srv_store *st, int64_t pin, srv_error *err);
    srv_code (*pinned)(srv_txn *t, const char *run_id, const char *checkpoint_id,
                       int64_t now_us, bool *pinned, srv_error *err);

    srv_code (*stage_begin)(srv_store *st, srv_blob_stage **out, srv_error *err);
    srv_code (*stage_write)(srv_blob_stage *b, const uint8_t *data, size_t len,
                            srv_error *err);
    srv_code (*stage_finish)(srv_blob_stage *b, const char *sha256, srv_error *err);
    void (*stage_free)(srv_blob_stage *b);
    srv_code (*blob_link)(srv_txn *t, srv_blob_stage *b, uint64_t size, srv_error *err);
    srv_code (*blob_unlink)(srv_txn *t, const char *sha256, srv_error *err);
    srv_code (*blob_open)(srv_store *st, const char *sha256, srv_blob_reader **out,
                          srv_error *err);
    srv_code (*blob_read)(srv_blob_reader *r, uint8_t *buf, size_t cap, size_t *n,
                          srv_error *err);
    void (*blob_close)(srv_blob_reader *r);

    srv_code (*dedup_get)(srv_txn *t, srv_arena *a, const srv_dedup_key *k,
                          srv_dedup_record *out, bool *found, srv_error *err);
    srv_code (*dedup_put)(srv_txn *t, const srv_dedup_key *k, const srv_dedup_record *rec,
                          int64_t now_us, srv_error *err);

    bool (*txn_active)(srv_txn *t);

    /* Version 2. The clock every process sharing the store agrees on
     * (srv_store_now); t is the write transaction or NULL. A backend of
     * one process may answer with srv_now_us(). */
    srv_code (*now)(srv_store *st, srv_txn *t, int64_t *now_us, srv_error *err);

    /* Version 3. What the store holds, for metrics (srv_store_usage): t
     * is a read snapshot; leases live at now_us, and the bytes the store
     * takes on disk as cheaply as the backend can tell them. */
    srv_code (*usage)(srv_txn *t, int64_t now_us, srv_store_usage *out, srv_error *err);
    /* Version 4: the data lifecycle (DeleteRun, completed-run retention,
     * the dedup window). run_delete must leave no row of the run behind;
     * a backend that caches run heads forgets the run's. A snapshot
     * being read when its run is deleted: blob_read of an open reader
     * either goes on with the bytes (a file's open descriptor) or reads
     * short; it never reads another content. */
    srv_code (*run_delete)(srv_txn *t, const srv_run_head *run, srv_error *err);
    srv_code (*run_set_completed)(srv_txn *t, const srv_run_head *run, int64_t now_us,
                                  srv_error *err);
    srv_code (*runs_completed_before)(srv_txn *t, srv_arena *a, int64_t before_us,
                                      uint32_t limit, char ***out, size_t *n, srv_error *err);
    srv_code (*dedup_expire)(srv_txn *t, int64_t before_us, uint32_t limit, size_t *n,
                             srv_error *err);
    /* Version 5: reading a batch's runs and records ahead (srv_store_prefetch),
     * for a backend whose every statement is a round trip. What it read
     * must stay true until it is asked: it holds the runs' rows locked
     * until the transaction ends, and forgets what it read at a
     * rollback to a savepoint (another process may have written since). */
    srv_code (*prefetch)(srv_txn *t, const srv_dedup_key *keys, size_t n, srv_error *err);
};

/* Stages and readers start with this, so the wrappers find the store. */
struct srv_blob_stage {
    srv_store *store;
};
struct srv_blob_reader {
    srv_store *store;
};

/* A registry row: opens a backend's store from the config. */
typedef srv_code (*srv_store_opener)(const srv_store_config *cfg, srv_store **out,
                                     srv_error *err);

/* store/sqlite/ */
srv_code srv_sqlite_open(const srv_store_config *cfg, srv_store **out, srv_error *err);
/* store/pg/ */
srv_code srv_pg_open(const srv_store_config *cfg, srv_store **out, srv_error *err);

#endif
