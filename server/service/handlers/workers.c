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

srv_code srv_apply_complete_worker(srv_apply *ap, const ProtobufCMessage *req,
                                   ProtobufCMessage *resp, srv_error *err)
{
    return srv_worker_complete(ap, (const Cairn__V1__CompleteWorkerRequest *)req,
                               (Cairn__V1__CompleteWorkerResponse *)resp, err);
}
