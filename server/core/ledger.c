#include "core/ledger.h"
#include "base/clock.h"
#include "base/log.h"
#include "base/pbc.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

/* Mutations per transaction at most: bounds the time one batch holds
 * later callers back. */
enum { BATCH_MAX = 256, OVERLOAD_PUSHBACK_MS = 100 };

/* Per-mutation outcome while its batch is open. */
typedef struct outcome {
    srv_code code;
    srv_error err;
    const uint8_t *resp;
    size_t len;
    bool replayed;
    const char *grew_run_id;
    uint64_t grew_last_seq;
    srv_deleted_run *deleted;
} outcome;

/* A batch on its way from the writer to the replier. */
typedef struct ended {
    srv_mutation *head;
    int n;                        /* 0: free */
    srv_code code;                /* not OK: every mutation fails with err */
    srv_error err;
    outcome out[BATCH_MAX];
} ended;

/* Two batches in flight: under load the writer applies and commits one
 * while the replier answers the callers of the one before (replies are
 * gRPC sends, a fifth of the writer's time when it made them itself).
 * When no mutation is waiting, the writer answers a batch itself. */
enum { N_ENDED = 2 };

struct srv_ledger {
    srv_store *store;
    pthread_t thread, replier;
    pthread_mutex_t mu;
    pthread_cond_t cv;            /* the writer waits for mutations */
    pthread_cond_t ended_cv;      /* the replier waits for a batch, the writer for a slot */
    ended ended[N_ENDED];         /* used in turn: the writer fills, the replier empties */
    int next_fill, next_reply;
    bool writer_exited;           /* under mu: no more batches come */
    srv_mutation *head, *tail;
    int queued;
    int max_queue;
    size_t queued_bytes;          /* requests' packed sizes of the queued */
    size_t max_queue_bytes;       /* 0: no bound */
    bool stopping;
    bool joined;                  /* srv_ledger_stop ran (once) */
    srv_commit_observer observer;
    void *observer_ctx;
    srv_ledger_metrics metrics;
    srv_deletion_observer deletion_observer;
    void *deletion_observer_ctx;
};

/* Batch sizes up to BATCH_MAX, in powers of two. */
static const uint64_t batch_bounds[] = {1, 2, 4, 8, 16, 32, 64, 128, 256};

srv_code srv_apply_deleted(srv_apply *ap, const char *run_id, srv_error *err)
{
    srv_deleted_run *d = srv_arena_alloc(ap->arena, sizeof *d);
    if (!d || !(d->run_id = srv_arena_strdup(ap->arena, run_id)))
        return srv_fail(err, SRV_RESOURCE_EXHAUSTED, "out of memory");
    d->next = ap->deleted;
    ap->deleted = d;
    return SRV_OK;
}

srv_code srv_ledger_replay(const srv_mutation *m, const srv_dedup_record *rec, srv_arena *a,
                           const uint8_t **resp, size_t *len, srv_error *err)
{
    if (memcmp(rec->fingerprint, m->fingerprint, 32) != 0)
        return srv_fail(err, SRV_ALREADY_EXISTS,
                        "idempotency_key: reused with a different %s request "
                        "(a key names one request; use a new key for a new request)",
                        m->method);
    uint8_t suffix[8];
    size_t n = srv_replayed_suffix(m->response, suffix);
    uint8_t *buf = srv_arena_alloc(a, rec->response_len + n);
    if (!buf)
        return srv_fail(err, SRV_RESOURCE_EXHAUSTED, "out of memory");
    if (rec->response_len)
        memcpy(buf, rec->response, rec->response_len);
    memcpy(buf + rec->response_len, suffix, n);
    *resp = buf;
    *len = rec->response_len + n;
    return SRV_OK;
}

srv_code srv_ledger_lookup(srv_store *st, const srv_mutation *m, srv_arena *a,
                           srv_dedup_record *rec, bool *found, srv_error *err)
{
    srv_txn *t;
    if (srv_store_read_begin(st, &t, err))
        return err->code;
    const srv_dedup_key key = {m->run_id, m->method, m->key};
    srv_code rc = srv_store_dedup_get(t, a, &key, rec, found, err);
    srv_store_read_end(t);
    return rc;
}

/* The key's record if there is one, else the mutation's effects and a
 * new record, all inside the open savepoint. */
static void attempt(srv_txn *t, srv_mutation *m, int64_t now_us, outcome *o)
{
    const srv_dedup_key key = {m->run_id, m->method, m->key};
    srv_dedup_record rec;
    bool found = false;
    if (m->key)
        o->code = srv_store_dedup_get(t, m->arena, &key, &rec, &found, &o->err);
    if (!o->code && found) {
        o->code = srv_ledger_replay(m, &rec, m->arena, &o->resp, &o->len, &o->err);
        o->replayed = !o->code;
        return;
    }
    if (o->code)
        return;
    srv_apply ap = {t, m->arena, now_us, m->apply_ctx, NULL, 0, NULL};
    ProtobufCMessage *resp = m->response ? srv_new_message(m->arena, m->response) : NULL;
    o->code = resp || !m->response ? m->apply(&ap, m->request, resp, &o->err)
                                   : srv_fail(&o->err, SRV_RESOURCE_EXHAUSTED, "out of memory");
    uint8_t *buf = NULL;
    if (!o->code && resp)
        o->code = srv_pack(m->arena, resp, &buf, &o->len, &o->err);
    o->resp = buf;
    if (!o->code && m->key) {
        memcpy(rec.fingerprint, m->fingerprint, 32);
        rec.response = buf;
        rec.response_len = o->len;
        o->code = srv_store_dedup_put(t, &key, &rec, now_us, &o->err);
    }
    if (!o->code) {
        o->grew_run_id = ap.grew_run_id;
        o->grew_last_seq = ap.grew_last_seq;
        o->deleted = ap.deleted;
    }
}

/* Applies one mutation inside its savepoint. ABORTED means another
 * process took a unique key first (backend.h): undone and tried once
 * more, when it sees the winner's row. Returns false when the failure
 * took the whole transaction with it (srv_store_txn_active). */
static bool apply_one(srv_txn *t, srv_mutation *m, int64_t now_us, outcome *o)
{
    for (int tries = 0; tries < 2; tries++) {
        memset(o, 0, sizeof *o);
        o->code = srv_store_savepoint(t, &o->err);
        if (!o->code) {
            attempt(t, m, now_us, o);
            if (!o->code && (o->code = srv_store_release(t, &o->err)) == SRV_OK)
                return true;
        }
        if (!srv_store_txn_active(t))
            return false;
        srv_store_rollback_to(t);
        if (o->code != SRV_ABORTED)
            return true;
    }
    return true;
}

/* Applies and commits the batch, tells the observers, and leaves every
 * mutation's outcome in e for the replier. */
static void run_batch(srv_ledger *l, srv_mutation *batch, int n, ended *e)
{
    outcome *out = e->out;
    srv_error *batch_err = &e->err;
    srv_txn *t = NULL;
    srv_code batch_code = srv_store_begin(l->store, &t, batch_err);
    /* What the batch will look up, read ahead in one go where a lookup is
     * a round trip (the cluster store); then the store's clock, not this
     * machine's: replicas sharing a store decide lease expiry and
     * fencing by one clock (srv_store_now). */
    srv_dedup_key keys[BATCH_MAX];
    size_t n_keys = 0;
    for (srv_mutation *k = batch; k; k = k->next)
        keys[n_keys++] = (srv_dedup_key){k->run_id, k->method, k->key};
    int64_t now_us = 0;
    if (!batch_code && ((batch_code = srv_store_prefetch(t, keys, n_keys, batch_err)) ||
                        (batch_code = srv_store_now(l->store, t, &now_us, batch_err))))
        srv_store_rollback(t);

    srv_mutation *m = batch;
    for (int i = 0; i < n; i++, m = m->next) {
        memset(&out[i], 0, sizeof out[i]);
        if (!batch_code && !apply_one(t, m, now_us, &out[i])) {
            /* The store undid the whole batch: every mutation of it fails
             * with this error (and its pushback), and nothing more runs,
             * for outside a transaction each would commit by itself. */
            batch_code = out[i].code;
            *batch_err = out[i].err;
            srv_store_rollback(t);
        }
    }
    if (!batch_code) {
        int64_t start = srv_mono_us();
        batch_code = srv_store_commit(t, batch_err);
        srv_histogram_observe(&l->metrics.commit_us, (uint64_t)(srv_mono_us() - start));
        srv_histogram_observe(&l->metrics.batch_size, (uint64_t)n);
    }
    if (batch_code) /* a failed begin or commit leaves no transaction open */
        srv_warn("ledger: a batch of %d failed: %s", n, batch_err->msg);
    for (int i = 0; !batch_code && l->observer && i < n; i++)
        if (!out[i].code && out[i].grew_run_id)
            l->observer(l->observer_ctx, out[i].grew_run_id, out[i].grew_last_seq);
    for (int i = 0; !batch_code && l->deletion_observer && i < n; i++)
        for (const srv_deleted_run *d = out[i].code ? NULL : out[i].deleted; d; d = d->next)
            l->deletion_observer(l->deletion_observer_ctx, d->run_id);
    e->head = batch;
    e->code = batch_code;
}

/* Calls every done of an ended batch of n, in order. */
static void reply_batch(const ended *e, int n)
{
    srv_mutation *m = e->head;
    for (int i = 0; i < n; i++) {
        srv_mutation *next = m->next; /* done may free m */
        const outcome *o = &e->out[i];
        if (e->code)
            m->done(m->ctx, e->code, &e->err, NULL, 0, false);
        else
            m->done(m->ctx, o->code, &o->err, o->resp, o->len, o->replayed);
        m = next;
    }
}

static void *replier_main(void *arg)
{
    srv_ledger *l = arg;
    pthread_mutex_lock(&l->mu);
    for (;;) {
        ended *e = &l->ended[l->next_reply];
        while (!e->n && !l->writer_exited)
            pthread_cond_wait(&l->ended_cv, &l->mu);
        if (!e->n)
            break;
        int n = e->n;
        pthread_mutex_unlock(&l->mu);
        reply_batch(e, n);
        pthread_mutex_lock(&l->mu);
        e->n = 0;
        l->next_reply = (l->next_reply + 1) % N_ENDED;
        pthread_cond_broadcast(&l->ended_cv);
    }
    pthread_mutex_unlock(&l->mu);
    return NULL;
}

static void *writer_main(void *arg)
{
    srv_ledger *l = arg;
    pthread_mutex_lock(&l->mu);
    for (;;) {
        while (!l->head && !l->stopping)
            pthread_cond_wait(&l->cv, &l->mu);
        if (!l->head)
            break;
        srv_mutation *batch = l->head, *last = l->head;
        int n = 1;
        while (n < BATCH_MAX && last->next) {
            last = last->next;
            n++;
        }
        l->head = last->next;
        if (!l->head)
            l->tail = NULL;
        last->next = NULL;
        l->queued -= n;
        for (srv_mutation *m = batch; m; m = m->next)
            l->queued_bytes -= m->bytes;
        ended *e = &l->ended[l->next_fill];
        while (e->n) /* the replier is still on it */
            pthread_cond_wait(&l->ended_cv, &l->mu);
        pthread_mutex_unlock(&l->mu);

        run_batch(l, batch, n, e);

        pthread_mutex_lock(&l->mu);
        if (!l->head) {
            /* Nothing waits to be written: answering here costs less
             * than waking the replier (a lone caller's whole round trip
             * is two thread hops then, not three). The slot stays free
             * (n 0), so the replier never sees it. */
            pthread_mutex_unlock(&l->mu);
            reply_batch(e, n);
            pthread_mutex_lock(&l->mu);
            continue;
        }
        e->n = n;
        l->next_fill = (l->next_fill + 1) % N_ENDED;
        pthread_cond_broadcast(&l->ended_cv);
    }
    l->writer_exited = true;
    pthread_cond_broadcast(&l->ended_cv);
    pthread_mutex_unlock(&l->mu);
    return NULL;
}

static void destroy(srv_ledger *l)
{
    pthread_cond_destroy(&l->ended_cv);
    pthread_cond_destroy(&l->cv);
    pthread_mutex_destroy(&l->mu);
    free(l);
}

srv_code srv_ledger_start(srv_store *st, int max_queue, srv_ledger **out, srv_error *err)
{
    srv_ledger *l = calloc(1, sizeof *l);
    if (!l)
        return srv_fail(err, SRV_RESOURCE_EXHAUSTED, "out of memory");
    l->store = st;
    l->max_queue = max_queue;
    srv_histogram_init(&l->metrics.batch_size, batch_bounds,
                       sizeof batch_bounds / sizeof batch_bounds[0]);
    srv_histogram_init(&l->metrics.commit_us, srv_duration_bounds_us, srv_duration_bounds_n);
    pthread_mutex_init(&l->mu, NULL);
    pthread_cond_init(&l->cv, NULL);
    pthread_cond_init(&l->ended_cv, NULL);
    if (pthread_create(&l->replier, NULL, replier_main, l) != 0) {
        destroy(l);
        return srv_fail(err, SRV_RESOURCE_EXHAUSTED, "cannot start the replier thread");
    }
    if (pthread_create(&l->thread, NULL, writer_main, l) != 0) {
        pthread_mutex_lock(&l->mu);
        l->writer_exited = true;
        pthread_cond_broadcast(&l->ended_cv);
        pthread_mutex_unlock(&l->mu);
        pthread_join(l->replier, NULL);
        destroy(l);
        return srv_fail(err, SRV_RESOURCE_EXHAUSTED, "cannot start the writer thread");
    }
    *out = l;
    return SRV_OK;
}

void srv_ledger_limit_bytes(srv_ledger *l, size_t max_queue_bytes)
{
    pthread_mutex_lock(&l->mu);
    l->max_queue_bytes = max_queue_bytes;
    pthread_mutex_unlock(&l->mu);
}

srv_ledger_metrics *srv_ledger_metrics_of(srv_ledger *l)
{
    return &l->metrics;
}

int srv_ledger_queued(srv_ledger *l)
{
    pthread_mutex_lock(&l->mu);
    int n = l->queued;
    pthread_mutex_unlock(&l->mu);
    return n;
}

void srv_ledger_observe(srv_ledger *l, srv_commit_observer fn, void *ctx)
{
    l->observer = fn;
    l->observer_ctx = ctx;
}

void srv_ledger_observe_deletions(srv_ledger *l, srv_deletion_observer fn, void *ctx)
{
    l->deletion_observer = fn;
    l->deletion_observer_ctx = ctx;
}

srv_code srv_ledger_submit(srv_ledger *l, srv_mutation *m, srv_error *err)
{
    srv_code rc = SRV_OK;
    m->next = NULL;
    m->bytes = m->request ? protobuf_c_message_get_packed_size(m->request) : 0;
    pthread_mutex_lock(&l->mu);
    if (l->stopping) {
        rc = srv_fail(err, SRV_UNAVAILABLE, "cairnd is shutting down");
    } else if (l->queued >= l->max_queue) {
        rc = srv_fail_pushback(err, SRV_RESOURCE_EXHAUSTED, OVERLOAD_PUSHBACK_MS,
                               "overloaded: %d writes queued; retry later", l->queued);
    } else if (l->max_queue_bytes && l->queued_bytes &&
               l->queued_bytes + m->bytes > l->max_queue_bytes) {
        /* (A write alone in the queue is taken whatever its size.) */
        rc = srv_fail_pushback(err, SRV_RESOURCE_EXHAUSTED, OVERLOAD_PUSHBACK_MS,
                               "overloaded: %zu bytes of writes queued, %zu more would pass "
                               "%zu; retry later",
                               l->queued_bytes, m->bytes, l->max_queue_bytes);
    } else {
        l->queued_bytes += m->bytes;
        if (l->tail)
            l->tail->next = m;
        else
            l->head = m;
        l->tail = m;
        l->queued++;
        pthread_cond_signal(&l->cv);
    }
    pthread_mutex_unlock(&l->mu);
    return rc;
}

void srv_ledger_stop(srv_ledger *l)
{
    if (!l)
        return;
    pthread_mutex_lock(&l->mu);
    bool joined = l->joined;
    l->stopping = true;
    l->joined = true;
    pthread_cond_signal(&l->cv);
    pthread_mutex_unlock(&l->mu);
    if (!joined) {
        pthread_join(l->thread, NULL); /* the writer drains the queue */
        pthread_join(l->replier, NULL); /* then the replier every batch */
    }
}

void srv_ledger_free(srv_ledger *l)
{
    if (!l)
        return;
    srv_ledger_stop(l);
    destroy(l);
}
