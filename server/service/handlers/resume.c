/* ResumeRun: a read. Which workers still need to run, and from which
 * event, following the original resilience module:
 * - without a checkpoint: the given workers (or the run's own) minus those
 *   completed according to the log, from seq 1;
 * - with one: the given workers minus those completed in the latest
 *   checkpoint and those completed after it according to the log, from
 *   the checkpoint's events_count + 1. */
#include "service/handlers/handlers.h"
#include "service/contract.h"
#include "base/strset.h"
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
    const Cairn__V1__ResumeRunRequest *req = (const Cairn__V1__ResumeRunRequest *)msg;
    srv_resume_state s = {0};
    Cairn__V1__ResumeResult *out = (Cairn__V1__ResumeResult *)resp;
    if (app->store->ops->read_resume_state(app->store, a, req->run_id, &s, err))
        return err->code;

    char **given = req->n_all_workers ? req->all_workers : s.run.workers;
    size_t n_given = req->n_all_workers ? req->n_all_workers : s.run.n_workers;
    srv_strset *done = srv_strset_create(a, s.n_completions + s.checkpoint.n_completed_workers);
    out->workers_to_rerun = srv_arena_alloc(a, (n_given ? n_given : 1) * sizeof(char *));
    if (!done || !out->workers_to_rerun)
        return srv_fail(err, SRV_RESOURCE_EXHAUSTED, "out of memory");

    uint64_t covered = 0; /* events the checkpoint stands for */
    if (s.has_checkpoint) {
        covered = s.checkpoint.events_count;
        for (size_t i = 0; i < s.checkpoint.n_completed_workers; i++)
            srv_strset_add(done, s.checkpoint.completed_workers[i]);
        out->checkpoint_id = s.checkpoint.checkpoint_id;
        out->resumed_from_state = s.checkpoint.run_state;
    }
    for (size_t i = 0; i < s.n_completions; i++)
        if (s.completions[i].seq > covered)
            srv_strset_add(done, s.completions[i].worker_id);
    for (size_t i = 0; i < n_given; i++)
        if (!srv_strset_has(done, given[i]))
            out->workers_to_rerun[out->n_workers_to_rerun++] = given[i];

    out->run_id = s.run.run_id;
    out->resume_from_seq = covered + 1;
    out->success = true; /* failures are gRPC statuses; kept for the module's callers */
    return SRV_OK;
}
