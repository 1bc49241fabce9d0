/* Leases: acquire, renew, release, and the lease keeper. */
#include "internal.h"
#include "cairn/v1/coordinator.pb.h"

#include <stdlib.h>
#include <string.h>

/* The lease is live until at least sent_at + ttl on our clock: the server
 * started its ttl after it received the request. */
static void fill_lease(cairn_lease *out, const cairn_v1_Lease *m, uint32_t ttl_ms, int64_t sent_at)
{
    cairn_lease l = {0}; /* built whole, then stored: every field set, none stale */
    memcpy(l.lease_id, m->lease_id, sizeof l.lease_id);
    memcpy(l.run_id, m->run_id, sizeof l.run_id);
    memcpy(l.worker_id, m->worker_id, sizeof l.worker_id);
    memcpy(l.holder, m->holder, sizeof l.holder);
    memcpy(l.expires_at, m->expires_at, sizeof l.expires_at);
    l.fencing_token = m->fencing_token;
    l.replayed = m->replayed;
    l.ttl_ms = ttl_ms;
    l.local_expiry_ms_ = sent_at + ttl_ms;
    *out = l;
}

#define ID_FIELD_FITS(type, field) \
    _Static_assert(sizeof((type *)0)->field == CAIRN_ID_MAX + 1, #type "." #field)
ID_FIELD_FITS(cairn_v1_RenewLeaseRequest, run_id);
ID_FIELD_FITS(cairn_v1_RenewLeaseRequest, worker_id);
ID_FIELD_FITS(cairn_v1_RenewLeaseRequest, lease_id);
ID_FIELD_FITS(cairn_v1_ReleaseWorkerRequest, run_id);
ID_FIELD_FITS(cairn_v1_ReleaseWorkerRequest, worker_id);
ID_FIELD_FITS(cairn_v1_ReleaseWorkerRequest, lease_id);

/* Copies the lease's ids into a request's fields (each CAIRN_ID_MAX + 1
 * bytes, as checked above); INVALID_ARGUMENT when the request names no
 * lease. */
static cairn_status lease_ids(const cairn_lease *lease, char run_id[CAIRN_ID_MAX + 1],
                              char worker_id[CAIRN_ID_MAX + 1], char lease_id[CAIRN_ID_MAX + 1],
                              cairn_error *err)
{
    if (!lease)
        return cairn__fail(err, CAIRN_INVALID_ARGUMENT, "lease: NULL (pass the acquired lease)");
    memcpy(run_id, lease->run_id, CAIRN_ID_MAX + 1);
    memcpy(worker_id, lease->worker_id, CAIRN_ID_MAX + 1);
    memcpy(lease_id, lease->lease_id, CAIRN_ID_MAX + 1);
    return CAIRN_OK;
}

cairn_status cairn_acquire_worker(cairn_client *c, const cairn_acquire_request *req,
                                  cairn_lease *out, cairn_error *err)
{
    memset(out, 0, sizeof *out);
    cairn__error_clear(err);
    cairn_v1_AcquireWorkerRequest m = cairn_v1_AcquireWorkerRequest_init_zero;
    cairn_status rc = CAIRN__CHECK_RESERVED(req, NULL, CAIRN__NO_INDEX, err);
    if (!rc)
        rc = cairn__pick_key(m.idempotency_key, req->idempotency_key, err);
    if (!rc)
        rc = cairn__copy_str(m.run_id, sizeof m.run_id, req->run_id, "run_id", err);
    if (!rc)
        rc = cairn__copy_str(m.worker_id, sizeof m.worker_id, req->worker_id, "worker_id", err);
    if (!rc)
        rc = cairn__copy_str(m.holder, sizeof m.holder, req->holder, "holder", err);
    if (rc)
        return rc;
    m.ttl_ms = req->ttl_ms;
    cairn_v1_Lease resp = cairn_v1_Lease_init_zero;
    int64_t sent_at = cairn__mono_ms();
    rc = cairn__unary(c, CAIRN__ACQUIRE_WORKER, cairn_v1_AcquireWorkerRequest_fields, &m,
                      m.idempotency_key, cairn_v1_Lease_fields, &resp, err);
    if (!rc)
        fill_lease(out, &resp, req->ttl_ms, sent_at);
    return rc;
}

/* Renews under policy p (NULL: the client's), stopped by stop (may be
 * NULL). *out may be lease itself: the lease is read before *out is
 * written, and only on success. */
static cairn_status renew(cairn_client *c, const cairn_retry_policy *p, cairn__cancel *stop,
                          const char *key, const cairn_lease *lease, uint32_t ttl_ms,
                          cairn_lease *out, cairn_error *err)
{
    cairn__error_clear(err);
    cairn_v1_RenewLeaseRequest m = cairn_v1_RenewLeaseRequest_init_zero;
    cairn_status rc = cairn__pick_key(m.idempotency_key, key, err);
    if (!rc)
        rc = lease_ids(lease, m.run_id, m.worker_id, m.lease_id, err);
    if (rc)
        return rc;
    m.ttl_ms = ttl_ms;
    cairn_v1_Lease resp = cairn_v1_Lease_init_zero;
    int64_t sent_at = cairn__mono_ms();
    rc = cairn__unary_with(c, p, stop, CAIRN__RENEW_LEASE, cairn_v1_RenewLeaseRequest_fields, &m,
                           m.idempotency_key, cairn_v1_Lease_fields, &resp, err);
    if (!rc)
        fill_lease(out, &resp, ttl_ms, sent_at);
    return rc;
}

cairn_status cairn_renew_lease(cairn_client *c, const cairn_renew_request *req, cairn_lease *out,
                               cairn_error *err)
{
    cairn__error_clear(err);
    cairn_status rc = CAIRN__CHECK_RESERVED(req, NULL, CAIRN__NO_INDEX, err);
    if (rc)
        return rc;
    return renew(c, NULL, NULL, req->idempotency_key, req->lease, req->ttl_ms, out, err);
}

cairn_status cairn_release_worker(cairn_client *c, const cairn_release_request *req,
                                  cairn_error *err)
{
    cairn__error_clear(err);
    cairn_v1_ReleaseWorkerRequest m = cairn_v1_ReleaseWorkerRequest_init_zero;
    cairn_status rc = CAIRN__CHECK_RESERVED(req, NULL, CAIRN__NO_INDEX, err);
    if (!rc)
        rc = cairn__pick_key(m.idempotency_key, req->idempotency_key, err);
    if (!rc)
        rc = lease_ids(req->lease, m.run_id, m.worker_id, m.lease_id, err);
    if (rc)
        return rc;
    cairn_v1_ReleaseWorkerResponse resp = cairn_v1_ReleaseWorkerResponse_init_zero;
    return cairn__unary(c, CAIRN__RELEASE_WORKER, cairn_v1_ReleaseWorkerRequest_fields, &m,
                        m.idempotency_key, cairn_v1_ReleaseWorkerResponse_fields, &resp, err);
}

/* ---- the keeper ---- */

struct cairn_lease_keeper {
    cairn_client *client;
    cairn_lease lease;            /* the keeper thread's own */
    cairn_lease_lost_fn on_lost;
    void *user;
    pthread_t thread;
    /* cairn_lease_keeper_stop fires it: it ends every wait of the keeper,
     * a renewal's retry backoff included, and cancels a renewal in flight. */
    cairn__cancel stop;
    pthread_mutex_t mu;
    bool lost;
};

/* When a lease is due for renewal: a third of the way through, as seen on
 * our own clock. */
static int64_t renewal_due(const cairn_lease *l)
{
    return l->local_expiry_ms_ - 2 * (int64_t)l->ttl_ms / 3;
}

static void *keep(void *arg)
{
    cairn_lease_keeper *k = arg;
    cairn_lease *lease = &k->lease;
    cairn_error why;
    cairn__error_clear(&why);
    int64_t next = renewal_due(lease);
    for (;;) {
        if (cairn__cancel_wait(&k->stop, next - cairn__mono_ms()))
            return NULL;

        /* Retries only while the lease can still be live. */
        int64_t left = lease->local_expiry_ms_ - cairn__mono_ms();
        cairn_status rc = CAIRN_DEADLINE_EXCEEDED;
        if (left > 0) {
            cairn_retry_policy p = k->client->retry;
            p.call_deadline_ms = (uint32_t)left;
            if (p.attempt_deadline_ms > (uint32_t)left)
                p.attempt_deadline_ms = (uint32_t)left;
            rc = renew(k->client, &p, &k->stop, NULL, lease, lease->ttl_ms, lease, &why);
        } else {
            cairn__fail(&why, rc, "lease_id: %s expired before a renewal got through",
                        lease->lease_id);
        }
        if (cairn__cancel_fired(&k->stop))
            return NULL;
        if (rc == CAIRN_OK) {
            next = renewal_due(lease);
            continue;
        }
        int64_t now = cairn__mono_ms();
        if (cairn_classify(rc, &why) == CAIRN_CLASS_TRANSIENT && now < lease->local_expiry_ms_) {
            /* Still live: try again at once, or once the server's pushback
             * (which outlasted the renewal's deadline) is over, if the
             * lease is still live by then. */
            int64_t until_expiry = lease->local_expiry_ms_ - now;
            int64_t wait = why.has_retry_pushback ? why.retry_pushback_ms : 0;
            next = now + (wait < until_expiry ? wait : until_expiry);
            continue;
        }
        pthread_mutex_lock(&k->mu);
        k->lost = true;
        pthread_mutex_unlock(&k->mu);
        if (k->on_lost)
            k->on_lost(k->user, lease, &why);
        return NULL;
    }
}

cairn_status cairn_lease_keeper_start(cairn_client *c, const cairn_lease *lease,
                                      cairn_lease_lost_fn on_lost, void *user,
                                      cairn_lease_keeper **out, cairn_error *err)
{
    cairn__error_clear(err);
    if (lease->ttl_ms < 3)
        return cairn__fail(err, CAIRN_INVALID_ARGUMENT, "lease: not a granted lease (ttl_ms 0)");
    cairn_lease_keeper *k = calloc(1, sizeof *k);
    if (!k)
        return cairn__fail(err, CAIRN_NO_MEMORY, "out of memory");
    k->client = c;
    k->lease = *lease;
    k->on_lost = on_lost;
    k->user = user;
    pthread_mutex_init(&k->mu, NULL);
    cairn__cancel_init(&k->stop);
    if (pthread_create(&k->thread, NULL, keep, k) != 0) {
        cairn__cancel_destroy(&k->stop);
        pthread_mutex_destroy(&k->mu);
        free(k);
        return cairn__fail(err, CAIRN_NO_MEMORY, "cannot start the keeper thread");
    }
    *out = k;
    return CAIRN_OK;
}

bool cairn_lease_keeper_alive(cairn_lease_keeper *k)
{
    pthread_mutex_lock(&k->mu);
    bool alive = !k->lost;
    pthread_mutex_unlock(&k->mu);
    return alive;
}

void cairn_lease_keeper_stop(cairn_lease_keeper *k)
{
    if (!k)
        return;
    cairn__cancel_fire(&k->stop);
    pthread_join(k->thread, NULL);
    cairn__cancel_destroy(&k->stop);
    pthread_mutex_destroy(&k->mu);
    free(k);
}
