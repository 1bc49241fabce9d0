/* ResumeRun: a read. Which workers still need to run, and from which
 * event, following the original resilience module:
 * - without a checkpoint: the given workers (or the run's own) minus those
 *   completed according to the log, from seq 1;
 * - with one: the given workers minus those completed in the latest
 *   checkpoint and those completed after it according to the log, from
 *   the checkpoint's events_count + 1.
 * The run, its latest checkpoint and its completions come from one read
 * snapshot. */
#include "core/domain.h"
#include "base/strset.h"

#include <string.h>

srv_code srv_resume(srv_store *st, srv_arena *a, const Cairn__V1__ResumeRunRequest *req,
                    Cairn__V1__ResumeResult *out, srv_error *err)
{
    srv_txn *t;
    if (srv_store_read_begin(st, &t, err))
        return err->code;
    srv_run_rec run;
    srv_checkpoint_rec cp;
    srv_completion *completions = NULL;
    size_t n_completions = 0;
    bool found = false, has_checkpoint = false;
    srv_code rc = srv_store_run_get(t, a, req->run_id, &run, &found, err);
    if (!rc && !found) {
        char q[SRV_QUOTE_MAX];
        rc = srv_fail(err, SRV_NOT_FOUND, "run_id: no run %s",
                      srv_quote(q, req->run_id, strlen(req->run_id)));
    }
    if (!rc)
        rc = srv_store_checkpoint_get(t, a, &run.head, "", &cp, &has_checkpoint, err);
    if (!rc)
        rc = srv_store_completions(t, a, &run.head, &completions, &n_completions, err);
    srv_store_read_end(t);
    if (rc)
        return rc;

    char **given = req->n_all_workers ? req->all_workers : run.workers;
    size_t n_given = req->n_all_workers ? req->n_all_workers : run.n_workers;
    srv_strset *done =
        srv_strset_create(a, n_completions + (has_checkpoint ? cp.n_completed : 0));
    out->workers_to_rerun = srv_arena_alloc(a, (n_given ? n_given : 1) * sizeof(char *));
    if (!done || !out->workers_to_rerun)
        return srv_fail(err, SRV_RESOURCE_EXHAUSTED, "out of memory");
    uint64_t covered = 0; /* events the checkpoint stands for */
    if (has_checkpoint) {
        covered = cp.events_count;
        for (size_t i = 0; i < cp.n_completed; i++)
            srv_strset_add(done, cp.completed[i]);
        out->checkpoint_id = (char *)cp.checkpoint_id;
        out->resumed_from_state = (char *)cp.run_state;
    }
    for (size_t i = 0; i < n_completions; i++)
        if (completions[i].seq > covered)
            srv_strset_add(done, completions[i].worker_id);
    for (size_t i = 0; i < n_given; i++)
        if (!srv_strset_has(done, given[i]))
            out->workers_to_rerun[out->n_workers_to_rerun++] = given[i];
    out->run_id = (char *)run.head.run_id;
    out->resume_from_seq = covered + 1;
    out->success = true; /* failures are gRPC statuses; kept for the module's callers */
    return SRV_OK;
}
