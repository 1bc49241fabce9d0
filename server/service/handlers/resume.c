/* ResumeRun: validation here, the rule in core/resume.c. */
#include "service/handlers/handlers.h"
#include "service/contract.h"
#include "service/validate.h"

#include <stdio.h>

srv_code srv_validate_resume_run(ProtobufCMessage *msg, srv_arena *a, srv_error *err)
{
    Cairn__V1__ResumeRunRequest *req = (Cairn__V1__ResumeRunRequest *)msg;
    if (srv_check_id("run_id", req->run_id, err) ||
        srv_check_count("all_workers", req->n_all_workers, 0, SRV_WORKERS_MAX, err))
        return err->code;
    for (size_t i = 0; i < req->n_all_workers; i++) {
        char field[48];
        snprintf(field, sizeof field, "all_workers[%zu]", i);
        if (srv_check_id(field, req->all_workers[i], err))
            return err->code;
    }
    return srv_dedup_strings(a, req->all_workers, &req->n_all_workers, err);
}

srv_code srv_read_resume_run(srv_app *app, srv_arena *a, const ProtobufCMessage *msg,
                             ProtobufCMessage *resp, srv_error *err)
{
    return srv_resume(app->store, a, (const Cairn__V1__ResumeRunRequest *)msg,
                      (Cairn__V1__ResumeResult *)resp, err);
}
