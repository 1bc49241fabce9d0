/* CreateRun, DeleteRun, GetRun, ListRuns. */
#include "service/handlers/handlers.h"
#include "service/contract.h"
#include "service/validate.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef Cairn__V1__CreateRunRequest__LabelsEntry label;

/* Sort by key, equal keys in request order (by index, not by address:
 * decoded entries need not sit at increasing addresses), so the last one
 * can win. */
typedef struct indexed_label {
    label *l;
    size_t i;
} indexed_label;

static int label_cmp(const void *x, const void *y)
{
    const indexed_label *a = x, *b = y;
    int c = strcmp(a->l->key, b->l->key);
    return c ? c : (a->i > b->i) - (a->i < b->i);
}

static srv_code normalize_labels(Cairn__V1__CreateRunRequest *req, srv_arena *a, srv_error *err)
{
    if (req->n_labels > SRV_LABELS_MAX)
        return srv_fail(err, SRV_INVALID_ARGUMENT, "labels: at most %d labels, got %zu",
                        SRV_LABELS_MAX, req->n_labels);
    for (size_t i = 0; i < req->n_labels; i++) {
        if (srv_check_length("labels: key", req->labels[i]->key, SRV_LABEL_KEY_MAX, err))
            return err->code;
        if (strlen(req->labels[i]->value) > SRV_LABEL_VALUE_MAX)
            return srv_fail(err, SRV_INVALID_ARGUMENT,
                            "labels: value of %s must be at most %d bytes, got %zu",
                            req->labels[i]->key, SRV_LABEL_VALUE_MAX,
                            strlen(req->labels[i]->value));
    }
    /* A map in protobuf keeps the last value of a repeated key; sorting
     * makes the request canonical for its fingerprint and for comparing
     * run definitions. */
    if (req->n_labels > 1) {
        indexed_label *v = srv_arena_alloc(a, req->n_labels * sizeof *v);
        if (!v)
            return srv_fail(err, SRV_RESOURCE_EXHAUSTED, "out of memory");
        for (size_t i = 0; i < req->n_labels; i++)
            v[i] = (indexed_label){req->labels[i], i};
        qsort(v, req->n_labels, sizeof *v, label_cmp);
        for (size_t i = 0; i < req->n_labels; i++)
            req->labels[i] = v[i].l;
    }
    size_t out = 0;
    for (size_t i = 0; i < req->n_labels; i++) {
        if (out && strcmp(req->labels[out - 1]->key, req->labels[i]->key) == 0)
            out--;
        req->labels[out++] = req->labels[i];
    }
    req->n_labels = out;
    return SRV_OK;
}

srv_code srv_validate_create_run(ProtobufCMessage *msg, srv_arena *a, srv_error *err)
{
    Cairn__V1__CreateRunRequest *req = (Cairn__V1__CreateRunRequest *)msg;
    if (srv_check_id("run_id", req->run_id, err) ||
        srv_check_count("workers", req->n_workers, 1, SRV_WORKERS_MAX, err))
        return err->code;
    for (size_t i = 0; i < req->n_workers; i++) {
        char field[32];
        snprintf(field, sizeof field, "workers[%zu]", i);
        if (srv_check_id(field, req->workers[i], err))
            return err->code;
    }
    if (srv_dedup_strings(a, req->workers, &req->n_workers, err))
        return err->code;
    return normalize_labels(req, a, err);
}

srv_code srv_apply_create_run(srv_apply *ap, const ProtobufCMessage *req, ProtobufCMessage *resp,
                              srv_error *err)
{
    return srv_run_create(ap, (const Cairn__V1__CreateRunRequest *)req, (Cairn__V1__Run *)resp,
                          err);
}

srv_code srv_apply_delete_run(srv_apply *ap, const ProtobufCMessage *req, ProtobufCMessage *resp,
                              srv_error *err)
{
    Cairn__V1__DeleteRunResponse *out = (Cairn__V1__DeleteRunResponse *)resp;
    bool existed = false;
    srv_code rc = srv_run_delete(ap, ((const Cairn__V1__DeleteRunRequest *)req)->run_id, &existed,
                                 err);
    out->existed = existed;
    return rc;
}

srv_code srv_read_get_run(srv_app *app, srv_arena *a, const ProtobufCMessage *msg,
                          ProtobufCMessage *resp, srv_error *err)
{
    return srv_run_read(app->store, a, ((const Cairn__V1__GetRunRequest *)msg)->run_id,
                        (Cairn__V1__Run *)resp, err);
}

/* A page token is the position after which the next page starts, as
 * decimal digits; anything else (including a position no store can hold,
 * past INT64_MAX) did not come from ListRuns. */
static int parse_token(const char *s, uint64_t *out)
{
    if (!*s) {
        *out = 0;
        return 0;
    }
    if (strlen(s) > 19 || strspn(s, "0123456789") != strlen(s))
        return -1;
    *out = strtoull(s, NULL, 10);
    return *out > INT64_MAX ? -1 : 0;
}

srv_code srv_validate_list_runs(ProtobufCMessage *msg, srv_arena *a, srv_error *err)
{
    (void)a;
    Cairn__V1__ListRunsRequest *req = (Cairn__V1__ListRunsRequest *)msg;
    uint64_t after;
    if (srv_check_page("page_size", req->page_size, SRV_PAGE_DEFAULT, SRV_PAGE_MAX,
                       &req->page_size, err))
        return err->code;
    if (parse_token(req->page_token, &after) < 0) {
        char q[SRV_QUOTE_MAX];
        return srv_fail(err, SRV_INVALID_ARGUMENT,
                        "page_token: must be empty or a next_page_token from ListRuns, got %s",
                        srv_quote(q, req->page_token, strlen(req->page_token)));
    }
    return SRV_OK;
}

srv_code srv_read_list_runs(srv_app *app, srv_arena *a, const char *prefix,
                            const ProtobufCMessage *msg, ProtobufCMessage *resp, srv_error *err)
{
    const Cairn__V1__ListRunsRequest *req = (const Cairn__V1__ListRunsRequest *)msg;
    Cairn__V1__ListRunsResponse *out = (Cairn__V1__ListRunsResponse *)resp;
    uint64_t after = 0, next = 0;
    parse_token(req->page_token, &after); /* validated */
    srv_code rc = srv_runs_read(app->store, a, after, prefix, req->page_size,
                                SRV_READ_PAGE_BYTES, out, &next, err);
    if (!rc && next) {
        char token[24];
        snprintf(token, sizeof token, "%llu", (unsigned long long)next);
        out->next_page_token = srv_arena_strdup(a, token);
    }
    return rc;
}
