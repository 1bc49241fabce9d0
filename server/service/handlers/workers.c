/* CompleteWorker. */
#include "service/handlers/handlers.h"
#include "service/validate.h"

srv_code srv_validate_complete_worker(ProtobufCMessage *msg, srv_arena *a, srv_error *err)
{
    (void)a;
    Cairn__V1__CompleteWorkerRequest *req = (Cairn__V1__CompleteWorkerRequest *)msg;
    if (srv_check_id("run_id", req->run_id, err) || srv_check_id("worker_id", req->worker_id, err))
        return err->code;
    return SRV_OK;
}

srv_code srv_apply_complete_worker(srv_store *st, srv_arena *a, const ProtobufCMessage *req,
                                   void *ctx, int64_t now_us, ProtobufCMessage *resp,
                                   srv_error *err)
{
    (void)ctx;
    (void)a;
    Cairn__V1__CompleteWorkerResponse *out = (Cairn__V1__CompleteWorkerResponse *)resp;
    return st->ops->complete_worker(st, (const Cairn__V1__CompleteWorkerRequest *)req, now_us,
                                    out, err);
}
