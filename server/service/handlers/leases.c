/* AcquireWorker, RenewLease, ReleaseWorker. */
#include "service/handlers/handlers.h"
#include "service/contract.h"
#include "service/validate.h"

static srv_code check_ttl(uint32_t ttl_ms, srv_error *err)
{
    if (ttl_ms >= SRV_LEASE_TTL_MIN_MS && ttl_ms <= SRV_LEASE_TTL_MAX_MS)
        return SRV_OK;
    return srv_fail(err, SRV_INVALID_ARGUMENT, "ttl_ms: must be %d..%d, got %u",
                    SRV_LEASE_TTL_MIN_MS, SRV_LEASE_TTL_MAX_MS, ttl_ms);
}

srv_code srv_validate_acquire_worker(ProtobufCMessage *msg, srv_arena *a, srv_error *err)
{
    (void)a;
    Cairn__V1__AcquireWorkerRequest *req = (Cairn__V1__AcquireWorkerRequest *)msg;
    if (srv_check_id("run_id", req->run_id, err) || srv_check_id("worker_id", req->worker_id, err) ||
        srv_check_id("holder", req->holder, err) || check_ttl(req->ttl_ms, err))
        return err->code;
    return SRV_OK;
}

srv_code srv_validate_renew_lease(ProtobufCMessage *msg, srv_arena *a, srv_error *err)
{
    (void)a;
    Cairn__V1__RenewLeaseRequest *req = (Cairn__V1__RenewLeaseRequest *)msg;
    if (srv_check_id("run_id", req->run_id, err) || srv_check_id("worker_id", req->worker_id, err) ||
        srv_check_id("lease_id", req->lease_id, err) || check_ttl(req->ttl_ms, err))
        return err->code;
    return SRV_OK;
}

srv_code srv_validate_release_worker(ProtobufCMessage *msg, srv_arena *a, srv_error *err)
{
    (void)a;
    Cairn__V1__ReleaseWorkerRequest *req = (Cairn__V1__ReleaseWorkerRequest *)msg;
    if (srv_check_id("run_id", req->run_id, err) || srv_check_id("worker_id", req->worker_id, err) ||
        srv_check_id("lease_id", req->lease_id, err))
        return err->code;
    return SRV_OK;
}

srv_code srv_apply_acquire_worker(srv_apply *ap, const ProtobufCMessage *req,
                                  ProtobufCMessage *resp, srv_error *err)
{
    return srv_lease_acquire(ap, (const Cairn__V1__AcquireWorkerRequest *)req,
                             (Cairn__V1__Lease *)resp, err);
}

srv_code srv_apply_renew_lease(srv_apply *ap, const ProtobufCMessage *req, ProtobufCMessage *resp,
                               srv_error *err)
{
    return srv_lease_renew(ap, (const Cairn__V1__RenewLeaseRequest *)req,
                           (Cairn__V1__Lease *)resp, err);
}

srv_code srv_apply_release_worker(srv_apply *ap, const ProtobufCMessage *req,
                                  ProtobufCMessage *resp, srv_error *err)
{
    (void)resp; /* only replayed, which the ledger sets on replays */
    return srv_lease_release(ap, (const Cairn__V1__ReleaseWorkerRequest *)req, err);
}
