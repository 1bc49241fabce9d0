#include "internal.h"
#include "cairn/v1/coordinator.pb.h"

#include <pb_decode.h>
#include <string.h>

cairn_status cairn_complete_worker(cairn_client *c, const cairn_complete_request *req,
                                   cairn_complete_result *out, cairn_error *err)
{
    memset(out, 0, sizeof *out);
    cairn__error_clear(err);
    cairn_v1_CompleteWorkerRequest m = cairn_v1_CompleteWorkerRequest_init_zero;
    cairn_status rc = CAIRN__CHECK_RESERVED(req, NULL, CAIRN__NO_INDEX, err);
    if (!rc)
        rc = cairn__pick_key(m.idempotency_key, req->idempotency_key, err);
    if (!rc)
        rc = cairn__copy_str(m.run_id, sizeof m.run_id, req->run_id, "run_id", err);
    if (!rc)
        rc = cairn__copy_str(m.worker_id, sizeof m.worker_id, req->worker_id, "worker_id", err);
    if (rc)
        return rc;
    m.fencing_token = req->fencing_token;
    cairn_v1_CompleteWorkerResponse resp = cairn_v1_CompleteWorkerResponse_init_zero;
    rc = cairn__unary(c, CAIRN__COMPLETE_WORKER, cairn_v1_CompleteWorkerRequest_fields, &m,
                      m.idempotency_key, cairn_v1_CompleteWorkerResponse_fields, &resp, err);
    if (rc)
        return rc;
    out->seq = resp.seq;
    out->replayed = resp.replayed;
    cairn__copy_str(out->run_state, sizeof out->run_state, resp.run_state, "run_state", NULL);
    pb_release(cairn_v1_CompleteWorkerResponse_fields, &resp);
    return CAIRN_OK;
}
