/* Worker leases and fencing. One lease row per (run, worker) outlives its
 * lease (expired or released), so the next acquisition's fencing token is
 * larger than every earlier one, also across restarts. A lease is live
 * while now < expires_us, checked when a request arrives (no sweeper);
 * now is the batch's clock reading. */
#include "core/domain.h"
#include "base/clock.h"
#include "base/hex.h"

#include <string.h>

static bool live(const srv_lease_rec *l, int64_t now_us)
{
    return l->found && now_us < l->expires_us;
}

static srv_code fill_lease(srv_arena *a, const char *run_id, const char *worker_id,
                           const srv_lease_rec *l, Cairn__V1__Lease *out, srv_error *err)
{
    cairn__v1__lease__init(out);
    out->lease_id = (char *)l->lease_id;
    out->run_id = (char *)run_id;
    out->worker_id = (char *)worker_id;
    out->holder = (char *)l->holder;
    out->fencing_token = l->fencing_token;
    out->expires_at = srv_time_text(a, l->expires_us);
    return out->expires_at ? SRV_OK : srv_fail(err, SRV_RESOURCE_EXHAUSTED, "out of memory");
}

/* The run, and the worker's lease row; the worker must be the run's.
 * *completed is the seq of its completion, 0 if none. */
static srv_code load(srv_apply *ap, const char *run_id, const char *worker_id,
                     srv_run_head *run, uint64_t *completed, srv_lease_rec *l, srv_error *err)
{
    bool is_worker = false;
    if (srv_run_require(ap->txn, ap->arena, run_id, run, err) ||
        srv_store_worker_get(ap->txn, run, worker_id, &is_worker, completed, err))
        return err->code;
    if (!is_worker) {
        char q[SRV_QUOTE_MAX];
        return srv_fail(err, SRV_INVALID_ARGUMENT, "worker_id: %s is not a worker of run %s",
                        srv_quote(q, worker_id, strlen(worker_id)), run_id);
    }
    return srv_store_lease_get(ap->txn, ap->arena, run, worker_id, l, err);
}

static srv_code lease_not_current(const srv_lease_rec *l, const char *lease_id,
                                  const char *worker_id, srv_error *err)
{
    char when[32];
    if (!l->found || strcmp(l->lease_id, lease_id) != 0)
        return srv_fail(err, SRV_FAILED_PRECONDITION,
                        "lease_id: %s is not the current lease of worker %s (taken over, or never "
                        "granted); acquire the worker again",
                        lease_id, worker_id);
    if (l->expires_us == 0)
        return srv_fail(err, SRV_FAILED_PRECONDITION, "lease_id: %s was released", lease_id);
    return srv_fail(err, SRV_FAILED_PRECONDITION,
                    "lease_id: %s expired at %s; acquire the worker again", lease_id,
                    srv_format_time(when, l->expires_us));
}

/* Stores lease l live for ttl_ms from now and answers with it. */
static srv_code grant(srv_apply *ap, const srv_run_head *run, const char *worker_id,
                      srv_lease_rec *l, uint32_t ttl_ms, Cairn__V1__Lease *out, srv_error *err)
{
    l->expires_us = ap->now_us + (int64_t)ttl_ms * 1000;
    if (srv_store_lease_put(ap->txn, run, worker_id, l, err))
        return err->code;
    return fill_lease(ap->arena, run->run_id, worker_id, l, out, err);
}

srv_code srv_lease_acquire(srv_apply *ap, const Cairn__V1__AcquireWorkerRequest *req,
                           Cairn__V1__Lease *out, srv_error *err)
{
    srv_run_head run;
    uint64_t completed;
    srv_lease_rec l;
    if (load(ap, req->run_id, req->worker_id, &run, &completed, &l, err))
        return err->code;
    if (completed)
        return srv_fail(err, SRV_FAILED_PRECONDITION,
                        "worker_id: %s already completed (seq %llu); there is nothing to lease",
                        req->worker_id, (unsigned long long)completed);
    if (live(&l, ap->now_us)) {
        char when[32];
        return srv_fail(err, SRV_FAILED_PRECONDITION,
                        "worker_id: %s is leased to holder %s until %s (renew a lease with "
                        "RenewLease)",
                        req->worker_id, l.holder, srv_format_time(when, l.expires_us));
    }
    char *lease_id = srv_arena_alloc(ap->arena, 17);
    if (!lease_id)
        return srv_fail(err, SRV_RESOURCE_EXHAUSTED, "out of memory");
    srv_random_hex(lease_id, 8);
    l.lease_id = lease_id;
    l.holder = req->holder;
    l.fencing_token = l.found ? l.fencing_token + 1 : 1;
    l.found = true;
    return grant(ap, &run, req->worker_id, &l, req->ttl_ms, out, err);
}

srv_code srv_lease_renew(srv_apply *ap, const Cairn__V1__RenewLeaseRequest *req,
                         Cairn__V1__Lease *out, srv_error *err)
{
    srv_run_head run;
    uint64_t completed;
    srv_lease_rec l;
    if (load(ap, req->run_id, req->worker_id, &run, &completed, &l, err))
        return err->code;
    if (!live(&l, ap->now_us) || strcmp(l.lease_id, req->lease_id) != 0)
        return lease_not_current(&l, req->lease_id, req->worker_id, err);
    return grant(ap, &run, req->worker_id, &l, req->ttl_ms, out, err);
}

srv_code srv_lease_release(srv_apply *ap, const Cairn__V1__ReleaseWorkerRequest *req,
                           srv_error *err)
{
    srv_run_head run;
    uint64_t completed;
    srv_lease_rec l;
    if (load(ap, req->run_id, req->worker_id, &run, &completed, &l, err))
        return err->code;
    if (!l.found || strcmp(l.lease_id, req->lease_id) != 0)
        return lease_not_current(&l, req->lease_id, req->worker_id, err);
    /* Giving up a lease that already lapsed is done already. */
    return live(&l, ap->now_us) ? srv_lease_end(ap, &run, req->worker_id, err) : SRV_OK;
}

srv_code srv_lease_end(srv_apply *ap, const srv_run_head *run, const char *worker_id,
                       srv_error *err)
{
    srv_lease_rec l;
    if (srv_store_lease_get(ap->txn, ap->arena, run, worker_id, &l, err))
        return err->code;
    if (!l.found || l.expires_us == 0)
        return SRV_OK;
    l.expires_us = 0;
    return srv_store_lease_put(ap->txn, run, worker_id, &l, err);
}

srv_code srv_fencing_check(srv_apply *ap, const srv_run_head *run, const char *worker_id,
                           uint64_t token, srv_error *err)
{
    srv_lease_rec l;
    if (srv_store_lease_get(ap->txn, ap->arena, run, worker_id, &l, err))
        return err->code;
    if (live(&l, ap->now_us) && l.fencing_token == token)
        return SRV_OK;
    if (!l.found)
        return srv_fail(err, SRV_FAILED_PRECONDITION,
                        "fencing_token: %llu: worker %s has never been leased (fenced)",
                        (unsigned long long)token, worker_id);
    return srv_fail(err, SRV_FAILED_PRECONDITION,
                    "fencing_token: %llu is not the current token of a live lease of worker %s "
                    "(current token %llu, %s) (fenced)",
                    (unsigned long long)token, worker_id, (unsigned long long)l.fencing_token,
                    live(&l, ap->now_us) ? "live" : "not live");
}
