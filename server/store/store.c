/* The store wrappers and the registry. Every caller reaches a backend
 * through here, as SQLite's sqlite3OsRead wraps pMethods->xRead: one
 * place checks the ops version, counts calls and failures, times commits
 * and (for tests) injects faults. */
#include "store/backend.h"
#include "base/clock.h"
#include "base/log.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const struct {
    const char *name;
    srv_store_opener open;
} registry[] = {
    {"sqlite", srv_sqlite_open},
    {"postgres", srv_pg_open},
};
enum { N_BACKENDS = sizeof registry / sizeof registry[0] };

static const char *const op_names[] = {
#define XX(name) #name,
    SRV_STORE_OP_MAP(XX)
#undef XX
};

const char *srv_store_op_name(srv_store_op op)
{
    return (unsigned)op < SRV_STORE_N_OPS ? op_names[op] : "?";
}

static char names[64];
static pthread_once_t names_once = PTHREAD_ONCE_INIT;

static void join_names(void)
{
    size_t n = 0;
    for (int i = 0; i < N_BACKENDS && n < sizeof names; i++)
        n += (size_t)snprintf(names + n, sizeof names - n, "%s%s", i ? ", " : "",
                              registry[i].name);
}

const char *srv_store_names(void)
{
    pthread_once(&names_once, join_names);
    return names;
}

/* The backend's ops, each of which must be set. */
#define OPS_FIELDS(XX)                                                                        \
    XX(close) XX(read_begin) XX(read_end) XX(begin) XX(commit) XX(rollback) XX(savepoint)      \
    XX(release) XX(rollback_to) XX(run_find) XX(run_get) XX(runs_list) XX(run_insert)         \
    XX(events_insert) XX(events_read) XX(worker_get) XX(worker_complete) XX(completions)      \
    XX(lease_get) XX(lease_put) XX(checkpoint_insert) XX(checkpoint_delete)                   \
    XX(checkpoint_get) XX(checkpoints_list) XX(pin_add) XX(pin_remove) XX(pinned)             \
    XX(stage_begin) XX(stage_write) XX(stage_finish) XX(stage_free) XX(blob_link)             \
    XX(blob_unlink) XX(blob_open) XX(blob_read) XX(blob_close) XX(dedup_get) XX(dedup_put)   \
    XX(txn_active)

static const char *missing_op(const struct srv_store_ops *ops)
{
#define XX(f)       \
    if (!ops->f)    \
        return #f;
    OPS_FIELDS(XX)
#undef XX
    if (ops->version >= 2 && !ops->now)
        return "now";
    if (ops->version >= 3 && !ops->usage)
        return "usage";
    if (ops->version >= 4 && !ops->run_delete)
        return "run_delete";
    if (ops->version >= 4 && !ops->run_set_completed)
        return "run_set_completed";
    if (ops->version >= 4 && !ops->runs_completed_before)
        return "runs_completed_before";
    if (ops->version >= 4 && !ops->dedup_expire)
        return "dedup_expire";
    if (ops->version >= 5 && !ops->prefetch)
        return "prefetch";
    return NULL;
}

srv_code srv_store_open(const char *name, const srv_store_config *cfg, srv_store **out,
                        srv_error *err)
{
    for (int i = 0; i < N_BACKENDS; i++) {
        if (strcmp(registry[i].name, name) != 0)
            continue;
        srv_store *st = NULL;
        srv_code rc = registry[i].open(cfg, &st, err);
        if (rc)
            return rc;
        const struct srv_store_ops *ops = st->ops;
        const char *missing = missing_op(ops);
        if (ops->version == 0 || ops->version > SRV_STORE_OPS_VERSION || missing) {
            rc = srv_fail(err, SRV_INVALID_ARGUMENT,
                          "--store: backend %s has ops version %u (this cairnd knows 1..%d)%s%s",
                          name, ops->version, SRV_STORE_OPS_VERSION,
                          missing ? " and lacks " : "", missing ? missing : "");
            if (ops->close)
                ops->close(st);
            return rc;
        }
        st->on_failed = cfg->on_failed;
        st->on_failed_ctx = cfg->on_failed_ctx;
        *out = st;
        return SRV_OK;
    }
    return srv_fail(err, SRV_INVALID_ARGUMENT, "--store: must be one of %s, got \"%.64s\"",
                    srv_store_names(), name);
}

void srv_store_close(srv_store *st)
{
    if (st)
        st->ops->close(st);
}

/* ---- fail-stop ---- */

void srv_store_fail_stop(srv_store *st, const srv_error *why)
{
    int running = 0;
    if (!atomic_compare_exchange_strong(&st->stopped, &running, 1))
        return;
    st->stop_err = *why;
    atomic_store(&st->stopped, 2);
    srv_error_log("%s; the store takes no more writes (after a failed fsync what was written "
                  "may be lost, and only a restart that reads the disk again can tell)",
                  why->msg);
    if (st->on_failed)
        st->on_failed(st->on_failed_ctx, why);
}

/* SRV_OK while the store takes writes; afterwards the refusal. */
static srv_code refuse_if_stopped(srv_store *st, srv_error *err)
{
    switch (atomic_load(&st->stopped)) {
    case 0:
        return SRV_OK;
    case 2:
        return srv_fail(err, SRV_UNAVAILABLE, "store: no more writes after a failed fsync (%s)",
                        st->stop_err.msg);
    default:
        return srv_fail(err, SRV_UNAVAILABLE, "store: no more writes after a failed fsync");
    }
}

/* ---- counting and fault injection ---- */

static srv_code enter(srv_store *st, srv_store_op op, srv_error *err)
{
    atomic_fetch_add_explicit(&st->calls[op], 1, memory_order_relaxed);
    unsigned left = atomic_load_explicit(&st->fault_countdown[op], memory_order_relaxed);
    while (left > 0 && !atomic_compare_exchange_weak(&st->fault_countdown[op], &left, left - 1))
        ;
    if (left != 1)
        return SRV_OK;
    srv_code code = (srv_code)atomic_load(&st->fault_code[op]);
    if (st->fault_hook[op])
        st->fault_hook[op](st->fault_hook_ctx[op]);
    if (!code)
        return SRV_OK;
    atomic_fetch_add_explicit(&st->failures[op], 1, memory_order_relaxed);
    return srv_fail(err, code, "store: %s failed (injected fault)", op_names[op]);
}

static srv_code leave(srv_store *st, srv_store_op op, srv_code rc)
{
    if (rc)
        atomic_fetch_add_explicit(&st->failures[op], 1, memory_order_relaxed);
    return rc;
}

void srv_store_inject_fault(srv_store *st, srv_store_op op, unsigned nth, srv_code code)
{
    atomic_store(&st->fault_countdown[op], 0);
    st->fault_hook[op] = NULL;
    atomic_store(&st->fault_code[op], (int)code);
    atomic_store(&st->fault_countdown[op], code ? nth : 0);
}

void srv_store_inject_hook(srv_store *st, srv_store_op op, unsigned nth, srv_store_hook fn,
                           void *ctx)
{
    atomic_store(&st->fault_countdown[op], 0);
    atomic_store(&st->fault_code[op], (int)SRV_OK);
    st->fault_hook[op] = fn;
    st->fault_hook_ctx[op] = ctx;
    atomic_store(&st->fault_countdown[op], fn ? nth : 0);
}

void srv_store_get_stats(srv_store *st, srv_store_stats *out)
{
    for (int i = 0; i < SRV_STORE_N_OPS; i++) {
        out->calls[i] = atomic_load_explicit(&st->calls[i], memory_order_relaxed);
        out->failures[i] = atomic_load_explicit(&st->failures[i], memory_order_relaxed);
    }
    out->commit_us_total = atomic_load(&st->commit_us_total);
    out->commit_us_max = atomic_load(&st->commit_us_max);
}

/* Counts the call, then runs it unless a fault is armed. */
#define WRAP(st, OP, call)                                                  \
    do {                                                                    \
        srv_code rc_ = enter((st), SRV_STORE_OP_##OP, err);                 \
        return rc_ ? rc_ : leave((st), SRV_STORE_OP_##OP, (st)->ops->call); \
    } while (0)
/* The same for an operation that needs the write transaction. */
#define WRAP_WRITE(t, OP, call)                                                          \
    do {                                                                                 \
        srv_code rc_ = enter((t)->store, SRV_STORE_OP_##OP, err);                       \
        if (!rc_ && !(t)->write)                                                         \
            rc_ = leave((t)->store, SRV_STORE_OP_##OP,                                   \
                        srv_fail(err, SRV_INTERNAL, "store: a write on a read snapshot")); \
        return rc_ ? rc_ : leave((t)->store, SRV_STORE_OP_##OP, (t)->store->ops->call);  \
    } while (0)

/* ---- transactions ---- */

srv_code srv_store_read_begin(srv_store *st, srv_txn **out, srv_error *err)
{
    WRAP(st, READ_BEGIN, read_begin(st, out, err));
}

void srv_store_read_end(srv_txn *t)
{
    if (t)
        t->store->ops->read_end(t);
}

srv_code srv_store_begin(srv_store *st, srv_txn **out, srv_error *err)
{
    srv_code rc = enter(st, SRV_STORE_OP_BEGIN, err);
    if (!rc)
        rc = leave(st, SRV_STORE_OP_BEGIN, refuse_if_stopped(st, err));
    return rc ? rc : leave(st, SRV_STORE_OP_BEGIN, st->ops->begin(st, out, err));
}

srv_code srv_store_commit(srv_txn *t, srv_error *err)
{
    srv_store *st = t->store;
    srv_code rc = enter(st, SRV_STORE_OP_COMMIT, err);
    if (!rc) /* a stop during the transaction: nothing of it commits */
        rc = leave(st, SRV_STORE_OP_COMMIT, refuse_if_stopped(st, err));
    if (rc) {
        st->ops->rollback(t);
        return rc;
    }
    int64_t start = srv_mono_us();
    rc = leave(st, SRV_STORE_OP_COMMIT, st->ops->commit(t, err));
    if (rc) /* over either way: nothing of it may commit later */
        st->ops->rollback(t);
    uint64_t took = (uint64_t)(srv_mono_us() - start);
    atomic_fetch_add(&st->commit_us_total, took);
    uint64_t max = atomic_load(&st->commit_us_max);
    while (took > max && !atomic_compare_exchange_weak(&st->commit_us_max, &max, took))
        ;
    return rc;
}

void srv_store_rollback(srv_txn *t)
{
    t->store->ops->rollback(t);
}

srv_code srv_store_savepoint(srv_txn *t, srv_error *err)
{
    WRAP_WRITE(t, SAVEPOINT, savepoint(t, err));
}

srv_code srv_store_release(srv_txn *t, srv_error *err)
{
    WRAP_WRITE(t, RELEASE, release(t, err));
}

bool srv_store_txn_active(srv_txn *t)
{
    return t->store->ops->txn_active(t);
}

void srv_store_rollback_to(srv_txn *t)
{
    t->store->ops->rollback_to(t);
}

/* ---- runs, events, workers ---- */

srv_code srv_store_run_find(srv_txn *t, srv_arena *a, const char *run_id, srv_run_head *out,
                            bool *found, srv_error *err)
{
    WRAP(t->store, RUN_FIND, run_find(t, a, run_id, out, found, err));
}

srv_code srv_store_run_get(srv_txn *t, srv_arena *a, const char *run_id, srv_run_rec *out,
                           bool *found, srv_error *err)
{
    WRAP(t->store, RUN_GET, run_get(t, a, run_id, out, found, err));
}

srv_code srv_store_runs_list(srv_txn *t, srv_arena *a, int64_t after, const char *prefix,
                             uint32_t limit, srv_run_rec **out, size_t *n, srv_error *err)
{
    WRAP(t->store, RUNS_LIST, runs_list(t, a, after, prefix, limit, out, n, err));
}

srv_code srv_store_run_insert(srv_txn *t, const char *run_id, char *const *workers,
                              size_t n_workers, const srv_label *labels,
                              size_t n_labels, int64_t now_us, int64_t *ref, srv_error *err)
{
    WRAP_WRITE(t, RUN_INSERT,
               run_insert(t, run_id, workers, n_workers, labels, n_labels, now_us, ref, err));
}

srv_code srv_store_events_insert(srv_txn *t, const srv_run_head *run,
                                 Cairn__V1__Event *const *events, size_t n, int64_t now_us,
                                 srv_error *err)
{
    WRAP_WRITE(t, EVENTS_INSERT, events_insert(t, run, events, n, now_us, err));
}

srv_code srv_store_events_read(srv_txn *t, srv_arena *a, const srv_run_head *run,
                               uint64_t from_seq, uint32_t max_events, size_t max_bytes,
                               Cairn__V1__Event ***out, size_t *n, srv_error *err)
{
    WRAP(t->store, EVENTS_READ,
         events_read(t, a, run, from_seq, max_events, max_bytes, out, n, err));
}

srv_code srv_store_worker_get(srv_txn *t, const srv_run_head *run, const char *worker_id,
                              bool *is_worker, uint64_t *completed_seq, srv_error *err)
{
    WRAP(t->store, WORKER_GET, worker_get(t, run, worker_id, is_worker, completed_seq, err));
}

srv_code srv_store_worker_complete(srv_txn *t, const srv_run_head *run, const char *worker_id,
                                   uint64_t seq, srv_error *err)
{
    WRAP_WRITE(t, WORKER_COMPLETE, worker_complete(t, run, worker_id, seq, err));
}

srv_code srv_store_completions(srv_txn *t, srv_arena *a, const srv_run_head *run,
                               srv_completion **out, size_t *n, srv_error *err)
{
    WRAP(t->store, COMPLETIONS, completions(t, a, run, out, n, err));
}

/* ---- leases, checkpoints, pins ---- */

srv_code srv_store_lease_get(srv_txn *t, srv_arena *a, const srv_run_head *run,
                             const char *worker_id, srv_lease_rec *out, srv_error *err)
{
    WRAP(t->store, LEASE_GET, lease_get(t, a, run, worker_id, out, err));
}

srv_code srv_store_lease_put(srv_txn *t, const srv_run_head *run, const char *worker_id,
                             const srv_lease_rec *l, srv_error *err)
{
    WRAP_WRITE(t, LEASE_PUT, lease_put(t, run, worker_id, l, err));
}

srv_code srv_store_checkpoint_insert(srv_txn *t, const srv_run_head *run,
                                     const srv_checkpoint_rec *c, srv_error *err)
{
    WRAP_WRITE(t, CHECKPOINT_INSERT, checkpoint_insert(t, run, c, err));
}

srv_code srv_store_checkpoint_delete(srv_txn *t, const srv_run_head *run,
                                     const char *checkpoint_id, srv_error *err)
{
    WRAP_WRITE(t, CHECKPOINT_DELETE, checkpoint_delete(t, run, checkpoint_id, err));
}

srv_code srv_store_checkpoint_get(srv_txn *t, srv_arena *a, const srv_run_head *run,
                                  const char *checkpoint_id, srv_checkpoint_rec *out,
                                  bool *found, srv_error *err)
{
    WRAP(t->store, CHECKPOINT_GET, checkpoint_get(t, a, run, checkpoint_id, out, found, err));
}

srv_code srv_store_checkpoints_list(srv_txn *t, srv_arena *a, const srv_run_head *run,
                                    const char *after, uint32_t limit, bool full,
                                    srv_checkpoint_rec **out, size_t *n, srv_error *err)
{
    WRAP(t->store, CHECKPOINTS_LIST, checkpoints_list(t, a, run, after, limit, full, out, n, err));
}

srv_code srv_store_pin_add(srv_store *st, const char *run_id, const char *checkpoint_id,
                           int64_t expires_us, int64_t *pin, srv_error *err)
{
    WRAP(st, PIN_ADD, pin_add(st, run_id, checkpoint_id, expires_us, pin, err));
}

srv_code srv_store_pin_remove(srv_store *st, int64_t pin, srv_error *err)
{
    WRAP(st, PIN_REMOVE, pin_remove(st, pin, err));
}

srv_code srv_store_pinned(srv_txn *t, const char *run_id, const char *checkpoint_id,
                          int64_t now_us, bool *pinned, srv_error *err)
{
    WRAP(t->store, PINNED, pinned(t, run_id, checkpoint_id, now_us, pinned, err));
}

/* ---- snapshot bytes ---- */

srv_code srv_store_stage_begin(srv_store *st, srv_blob_stage **out, srv_error *err)
{
    srv_code rc = enter(st, SRV_STORE_OP_STAGE_BEGIN, err);
    if (!rc)
        rc = leave(st, SRV_STORE_OP_STAGE_BEGIN, refuse_if_stopped(st, err));
    return rc ? rc : leave(st, SRV_STORE_OP_STAGE_BEGIN, st->ops->stage_begin(st, out, err));
}

srv_code srv_store_stage_write(srv_blob_stage *b, const uint8_t *data, size_t len,
                               srv_error *err)
{
    WRAP(b->store, STAGE_WRITE, stage_write(b, data, len, err));
}

srv_code srv_store_stage_finish(srv_blob_stage *b, const char *sha256, srv_error *err)
{
    WRAP(b->store, STAGE_FINISH, stage_finish(b, sha256, err));
}

void srv_store_stage_free(srv_blob_stage *b)
{
    if (b)
        b->store->ops->stage_free(b);
}

srv_code srv_store_blob_link(srv_txn *t, srv_blob_stage *b, uint64_t size, srv_error *err)
{
    WRAP_WRITE(t, BLOB_LINK, blob_link(t, b, size, err));
}

srv_code srv_store_blob_unlink(srv_txn *t, const char *sha256, srv_error *err)
{
    WRAP_WRITE(t, BLOB_UNLINK, blob_unlink(t, sha256, err));
}

srv_code srv_store_blob_open(srv_store *st, const char *sha256, srv_blob_reader **out,
                             srv_error *err)
{
    WRAP(st, BLOB_OPEN, blob_open(st, sha256, out, err));
}

srv_code srv_store_blob_read(srv_blob_reader *r, uint8_t *buf, size_t cap, size_t *n,
                             srv_error *err)
{
    WRAP(r->store, BLOB_READ, blob_read(r, buf, cap, n, err));
}

void srv_store_blob_close(srv_blob_reader *r)
{
    if (r)
        r->store->ops->blob_close(r);
}

/* ---- idempotency records ---- */

srv_code srv_store_dedup_get(srv_txn *t, srv_arena *a, const srv_dedup_key *k,
                             srv_dedup_record *out, bool *found, srv_error *err)
{
    WRAP(t->store, DEDUP_GET, dedup_get(t, a, k, out, found, err));
}

srv_code srv_store_dedup_put(srv_txn *t, const srv_dedup_key *k, const srv_dedup_record *rec,
                             int64_t now_us, srv_error *err)
{
    WRAP_WRITE(t, DEDUP_PUT, dedup_put(t, k, rec, now_us, err));
}

/* ---- the data lifecycle (ops version 3) ---- */

/* A backend from before version 3 cannot delete: the lifecycle RPCs and
 * sweeps fail rather than touch a table the backend does not know. */
static srv_code lifecycle_unsupported(srv_store *st, srv_error *err)
{
    return srv_fail(err, SRV_FAILED_PRECONDITION,
                    "store: backend %s cannot delete runs or expire keys (ops version %u < 3)",
                    st->ops->name, st->ops->version);
}

srv_code srv_store_run_delete(srv_txn *t, const srv_run_head *run, srv_error *err)
{
    if (t->store->ops->version < 3)
        return lifecycle_unsupported(t->store, err);
    WRAP_WRITE(t, RUN_DELETE, run_delete(t, run, err));
}

srv_code srv_store_run_set_completed(srv_txn *t, const srv_run_head *run, int64_t now_us,
                                     srv_error *err)
{
    if (t->store->ops->version < 3) /* nothing to sweep by without it */
        return SRV_OK;
    WRAP_WRITE(t, RUN_SET_COMPLETED, run_set_completed(t, run, now_us, err));
}

srv_code srv_store_runs_completed_before(srv_txn *t, srv_arena *a, int64_t before_us,
                                         uint32_t limit, char ***out, size_t *n,
                                         srv_error *err)
{
    if (t->store->ops->version < 3)
        return lifecycle_unsupported(t->store, err);
    WRAP(t->store, RUNS_COMPLETED_BEFORE, runs_completed_before(t, a, before_us, limit, out, n, err));
}

srv_code srv_store_dedup_expire(srv_txn *t, int64_t before_us, uint32_t limit, size_t *n,
                                srv_error *err)
{
    if (t->store->ops->version < 3)
        return lifecycle_unsupported(t->store, err);
    WRAP_WRITE(t, DEDUP_EXPIRE, dedup_expire(t, before_us, limit, n, err));
}

srv_code srv_store_prefetch(srv_txn *t, const srv_dedup_key *keys, size_t n, srv_error *err)
{
    if (t->store->ops->version < 5)
        return SRV_OK;
    WRAP_WRITE(t, PREFETCH, prefetch(t, keys, n, err));
}

/* ---- the clock ---- */

srv_code srv_store_now(srv_store *st, srv_txn *t, int64_t *now_us, srv_error *err)
{
    if (st->ops->version < 2) { /* a backend of one process, from before */
        *now_us = srv_now_us();
        return enter(st, SRV_STORE_OP_NOW, err);
    }
    WRAP(st, NOW, now(st, t, now_us, err));
}

srv_code srv_store_usage_get(srv_store *st, srv_store_usage *out, srv_error *err)
{
    if (st->ops->version < 3)
        return srv_fail(err, SRV_UNIMPLEMENTED, "store: backend %s cannot tell its usage",
                        st->ops->name);
    int64_t now_us;
    srv_txn *t;
    srv_code rc = srv_store_now(st, NULL, &now_us, err);
    if (!rc)
        rc = srv_store_read_begin(st, &t, err);
    if (rc)
        return rc;
    rc = enter(st, SRV_STORE_OP_USAGE, err);
    if (!rc)
        rc = leave(st, SRV_STORE_OP_USAGE, st->ops->usage(t, now_us, out, err));
    srv_store_read_end(t);
    return rc;
}
