/* CreateRun, DeleteRun, GetRun, ListRuns. A cairn_run points into the decoded nanopb
 * message it came from, which it (or its page) owns. */
#include "internal.h"
#include "cairn/v1/coordinator.pb.h"

#include <stdlib.h>
#include <string.h>

/* nanopb's repeated-field counts are 16-bit in Debian's build. */
#define PB_COUNT_MAX 65535

static cairn_status fill_run(cairn_run *out, cairn_v1_Run *msg, bool owns, cairn_error *err)
{
    memset(out, 0, sizeof *out);
    cairn_label *labels = NULL;
    if (msg->labels_count) {
        labels = calloc(msg->labels_count, sizeof *labels);
        if (!labels)
            return cairn__fail(err, CAIRN_NO_MEMORY, "out of memory");
        for (pb_size_t i = 0; i < msg->labels_count; i++)
            labels[i] = (cairn_label){.key = msg->labels[i].key ? msg->labels[i].key : "",
                                      .value = msg->labels[i].value ? msg->labels[i].value : ""};
    }
    memcpy(out->run_id, msg->run_id, sizeof out->run_id);
    memcpy(out->state, msg->state, sizeof out->state);
    memcpy(out->latest_checkpoint_id, msg->latest_checkpoint_id, sizeof out->latest_checkpoint_id);
    memcpy(out->created_at, msg->created_at, sizeof out->created_at);
    out->workers = (const char *const *)msg->workers;
    out->workers_count = msg->workers_count;
    out->completed_workers = (const char *const *)msg->completed_workers;
    out->completed_workers_count = msg->completed_workers_count;
    out->labels = labels;
    out->labels_count = msg->labels_count;
    out->next_seq = msg->next_seq;
    out->replayed = msg->replayed;
    out->internal_ = owns ? msg : NULL;
    return CAIRN_OK;
}

void cairn_run_free(cairn_run *run)
{
    if (!run)
        return;
    free((void *)run->labels);
    cairn__release(cairn_v1_Run_fields, run->internal_);
    memset(run, 0, sizeof *run);
}

/* Calls m with a Run request and fills *out from the Run it returns. */
static cairn_status run_call(cairn_client *c, cairn__method m, const pb_msgdesc_t *fields,
                            const void *req, const char *key, cairn_run *out, cairn_error *err)
{
    cairn_v1_Run *msg = calloc(1, sizeof *msg);
    if (!msg)
        return cairn__fail(err, CAIRN_NO_MEMORY, "out of memory");
    cairn_status rc = cairn__unary(c, m, fields, req, key, cairn_v1_Run_fields, msg, err);
    if (!rc)
        rc = fill_run(out, msg, true, err);
    if (rc)
        cairn__release(cairn_v1_Run_fields, msg);
    return rc;
}

cairn_status cairn_create_run(cairn_client *c, const cairn_create_run_request *req,
                              cairn_run *out, cairn_error *err)
{
    memset(out, 0, sizeof *out);
    cairn__error_clear(err);
    if (req->workers_count > PB_COUNT_MAX || req->labels_count > PB_COUNT_MAX)
        return cairn__fail(err, CAIRN_INVALID_ARGUMENT,
                           "workers/labels: at most %d items per request", PB_COUNT_MAX);
    cairn_status rc = CAIRN__CHECK_RESERVED(req, NULL, CAIRN__NO_INDEX, err);
    for (size_t i = 0; !rc && i < req->labels_count; i++)
        rc = CAIRN__CHECK_RESERVED(&req->labels[i], "labels", i, err);
    if (rc)
        return rc;
    cairn_v1_CreateRunRequest m = cairn_v1_CreateRunRequest_init_zero;
    rc = cairn__pick_key(m.idempotency_key, req->idempotency_key, err);
    if (!rc)
        rc = cairn__copy_str(m.run_id, sizeof m.run_id, req->run_id, "run_id", err);
    if (rc)
        return rc;
    m.workers = (char **)req->workers;
    m.workers_count = (pb_size_t)req->workers_count;
    cairn_v1_CreateRunRequest_LabelsEntry *labels = NULL;
    if (req->labels_count) {
        labels = calloc(req->labels_count, sizeof *labels);
        if (!labels)
            return cairn__fail(err, CAIRN_NO_MEMORY, "out of memory");
        for (size_t i = 0; i < req->labels_count; i++)
            labels[i] = (cairn_v1_CreateRunRequest_LabelsEntry){(char *)req->labels[i].key,
                                                                (char *)req->labels[i].value};
    }
    m.labels = labels;
    m.labels_count = (pb_size_t)req->labels_count;
    rc = run_call(c, CAIRN__CREATE_RUN, cairn_v1_CreateRunRequest_fields, &m, m.idempotency_key,
                  out, err);
    free(labels);
    return rc;
}

cairn_status cairn_get_run(cairn_client *c, const char *run_id, cairn_run *out, cairn_error *err)
{
    memset(out, 0, sizeof *out);
    cairn__error_clear(err);
    cairn_v1_GetRunRequest m = cairn_v1_GetRunRequest_init_zero;
    cairn_status rc = cairn__copy_str(m.run_id, sizeof m.run_id, run_id, "run_id", err);
    if (rc)
        return rc;
    return run_call(c, CAIRN__GET_RUN, cairn_v1_GetRunRequest_fields, &m, NULL, out, err);
}

cairn_status cairn_list_runs(cairn_client *c, uint32_t page_size, const char *page_token,
                             cairn_run_page *out, cairn_error *err)
{
    memset(out, 0, sizeof *out);
    cairn__error_clear(err);
    cairn_v1_ListRunsRequest m = cairn_v1_ListRunsRequest_init_zero;
    m.page_size = page_size;
    cairn_status rc = cairn__copy_str(m.page_token, sizeof m.page_token, page_token, "page_token", err);
    if (rc)
        return rc;
    cairn_v1_ListRunsResponse *msg = calloc(1, sizeof *msg);
    if (!msg)
        return cairn__fail(err, CAIRN_NO_MEMORY, "out of memory");
    rc = cairn__unary(c, CAIRN__LIST_RUNS, cairn_v1_ListRunsRequest_fields, &m, NULL,
                      cairn_v1_ListRunsResponse_fields, msg, err);
    if (!rc && msg->runs_count) {
        out->runs = calloc(msg->runs_count, sizeof *out->runs);
        if (!out->runs)
            rc = cairn__fail(err, CAIRN_NO_MEMORY, "out of memory");
    }
    out->internal_ = msg;
    for (pb_size_t i = 0; !rc && i < msg->runs_count; i++) {
        rc = fill_run(&out->runs[i], &msg->runs[i], false, err);
        if (!rc)
            out->runs_count++;
    }
    memcpy(out->next_page_token, msg->next_page_token, sizeof out->next_page_token);
    if (rc)
        cairn_run_page_free(out);
    return rc;
}

void cairn_run_page_free(cairn_run_page *page)
{
    if (!page)
        return;
    for (size_t i = 0; i < page->runs_count; i++)
        cairn_run_free(&page->runs[i]);
    free(page->runs);
    cairn__release(cairn_v1_ListRunsResponse_fields, page->internal_);
    memset(page, 0, sizeof *page);
}

cairn_status cairn_delete_run(cairn_client *c, const cairn_delete_run_request *req,
                              cairn_delete_run_result *out, cairn_error *err)
{
    memset(out, 0, sizeof *out);
    cairn__error_clear(err);
    cairn_v1_DeleteRunRequest m = cairn_v1_DeleteRunRequest_init_zero;
    cairn_v1_DeleteRunResponse resp = cairn_v1_DeleteRunResponse_init_zero;
    cairn_status rc = CAIRN__CHECK_RESERVED(req, NULL, CAIRN__NO_INDEX, err);
    if (!rc)
        rc = cairn__pick_key(m.idempotency_key, req->idempotency_key, err);
    if (!rc)
        rc = cairn__copy_str(m.run_id, sizeof m.run_id, req->run_id, "run_id", err);
    if (!rc)
        rc = cairn__unary(c, CAIRN__DELETE_RUN, cairn_v1_DeleteRunRequest_fields, &m,
                          m.idempotency_key, cairn_v1_DeleteRunResponse_fields, &resp, err);
    if (rc)
        return rc;
    out->existed = resp.existed;
    out->replayed = resp.replayed;
    return CAIRN_OK;
}
