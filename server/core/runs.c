/* Runs: creation with the same-definition rule, the derived run state,
 * and the reads GetRun and ListRuns. */
#include "core/domain.h"
#include "core/page.h"
#include "base/clock.h"

#include <string.h>

const char *srv_run_state(const srv_run_head *run)
{
    if (run->n_workers > 0 && run->n_completed >= run->n_workers)
        return "completed";
    return run->next_seq > 1 ? "running" : "created";
}

static srv_code no_run(const char *run_id, srv_error *err)
{
    char q[SRV_QUOTE_MAX];
    return srv_fail(err, SRV_NOT_FOUND, "run_id: no run %s", srv_quote(q, run_id, strlen(run_id)));
}

srv_code srv_run_require(srv_txn *t, srv_arena *a, const char *run_id, srv_run_head *out,
                         srv_error *err)
{
    bool found = false;
    if (srv_store_run_find(t, a, run_id, out, &found, err))
        return err->code;
    return found ? SRV_OK : no_run(run_id, err);
}

/* The Run message of a stored run (pointing into rec). */
static srv_code fill_run(srv_arena *a, const srv_run_rec *rec, Cairn__V1__Run *out,
                         srv_error *err)
{
    cairn__v1__run__init(out);
    out->run_id = (char *)rec->head.run_id;
    out->state = (char *)srv_run_state(&rec->head);
    out->workers = rec->workers;
    out->n_workers = rec->n_workers;
    out->completed_workers = rec->completed;
    out->n_completed_workers = rec->n_completed;
    out->labels = srv_arena_alloc(a, (rec->n_labels ? rec->n_labels : 1) * sizeof *out->labels);
    if (!out->labels)
        return srv_fail(err, SRV_RESOURCE_EXHAUSTED, "out of memory");
    for (size_t i = 0; i < rec->n_labels; i++) {
        Cairn__V1__Run__LabelsEntry *e = srv_arena_alloc(a, sizeof *e);
        if (!e)
            return srv_fail(err, SRV_RESOURCE_EXHAUSTED, "out of memory");
        cairn__v1__run__labels_entry__init(e);
        e->key = (char *)rec->labels[i].key;
        e->value = (char *)rec->labels[i].value;
        out->labels[out->n_labels++] = e;
    }
    out->next_seq = rec->head.next_seq;
    out->latest_checkpoint_id = (char *)rec->head.latest_checkpoint_id;
    out->created_at = srv_time_text(a, rec->head.created_us);
    if (!out->created_at)
        return srv_fail(err, SRV_RESOURCE_EXHAUSTED, "out of memory");
    return SRV_OK;
}

static bool same_definition(const srv_run_rec *run, const Cairn__V1__CreateRunRequest *req)
{
    if (run->n_workers != req->n_workers || run->n_labels != req->n_labels)
        return false;
    for (size_t i = 0; i < req->n_workers; i++)
        if (strcmp(run->workers[i], req->workers[i]) != 0)
            return false;
    for (size_t i = 0; i < req->n_labels; i++) /* both sorted by key */
        if (strcmp(run->labels[i].key, req->labels[i]->key) != 0 ||
            strcmp(run->labels[i].value, req->labels[i]->value) != 0)
            return false;
    return true;
}

srv_code srv_run_create(srv_apply *ap, const Cairn__V1__CreateRunRequest *req,
                        Cairn__V1__Run *out, srv_error *err)
{
    srv_run_rec rec;
    bool found = false;
    if (srv_store_run_get(ap->txn, ap->arena, req->run_id, &rec, &found, err))
        return err->code;
    if (found) {
        if (same_definition(&rec, req))
            return fill_run(ap->arena, &rec, out, err);
        char q[SRV_QUOTE_MAX];
        return srv_fail(err, SRV_ALREADY_EXISTS,
                        "run_id: run %s already exists with different workers or labels",
                        srv_quote(q, req->run_id, strlen(req->run_id)));
    }
    memset(&rec, 0, sizeof rec);
    srv_label *labels = srv_arena_alloc(ap->arena, (req->n_labels ? req->n_labels : 1) * sizeof *labels);
    if (!labels)
        return srv_fail(err, SRV_RESOURCE_EXHAUSTED, "out of memory");
    for (size_t i = 0; i < req->n_labels; i++)
        labels[i] = (srv_label){req->labels[i]->key, req->labels[i]->value};
    if (srv_store_run_insert(ap->txn, req->run_id, req->workers, req->n_workers, labels,
                             req->n_labels, ap->now_us, &rec.head.ref, err))
        return err->code;
    rec.head = (srv_run_head){.ref = rec.head.ref, .run_id = req->run_id,
                              .created_us = ap->now_us, .next_seq = 1,
                              .n_workers = (uint32_t)req->n_workers, .latest_checkpoint_id = ""};
    rec.workers = req->workers;
    rec.n_workers = req->n_workers;
    rec.labels = labels;
    rec.n_labels = req->n_labels;
    return fill_run(ap->arena, &rec, out, err);
}

srv_code srv_run_delete(srv_apply *ap, const char *run_id, bool *existed, srv_error *err)
{
    srv_run_head run;
    if (srv_store_run_find(ap->txn, ap->arena, run_id, &run, existed, err))
        return err->code;
    if (!*existed)
        return SRV_OK;
    if (srv_checkpoints_drop_all(ap, &run, err) || srv_store_run_delete(ap->txn, &run, err))
        return err->code;
    return srv_apply_deleted(ap, run_id, err);
}

srv_code srv_run_read(srv_store *st, srv_arena *a, const char *run_id, Cairn__V1__Run *out,
                      srv_error *err)
{
    srv_txn *t;
    if (srv_store_read_begin(st, &t, err))
        return err->code;
    srv_run_rec rec;
    bool found = false;
    srv_code rc = srv_store_run_get(t, a, run_id, &rec, &found, err);
    srv_store_read_end(t);
    if (rc)
        return rc;
    return found ? fill_run(a, &rec, out, err) : no_run(run_id, err);
}

srv_code srv_runs_read(srv_store *st, srv_arena *a, uint64_t after, const char *prefix,
                       uint32_t limit,
                       size_t max_bytes, Cairn__V1__ListRunsResponse *out, uint64_t *next,
                       srv_error *err)
{
    *next = 0;
    if (limit == 0)
        limit = 1;
    out->runs = srv_arena_alloc(a, limit * sizeof *out->runs);
    if (!out->runs)
        return srv_fail(err, SRV_RESOURCE_EXHAUSTED, "out of memory listing runs");
    srv_txn *t;
    if (srv_store_read_begin(st, &t, err))
        return err->code;
    srv_code rc = SRV_OK;
    int64_t pos = (int64_t)after;
    srv_page page = {.max_count = limit, .max_bytes = max_bytes};
    bool end = false;
    while (!rc && !page.full && !end) {
        uint32_t want = srv_page_want(&page);
        srv_run_rec *recs = NULL;
        size_t n = 0;
        rc = srv_store_runs_list(t, a, pos, prefix, want, &recs, &n, err);
        end = !rc && n < want;
        for (size_t i = 0; !rc && i < n; i++) {
            Cairn__V1__Run *run = srv_arena_alloc(a, sizeof *run);
            if (!run) {
                rc = srv_fail(err, SRV_RESOURCE_EXHAUSTED, "out of memory listing runs");
                break;
            }
            if ((rc = fill_run(a, &recs[i], run, err)) || !srv_page_admit(&page, &run->base))
                break;
            out->runs[out->n_runs++] = run;
            pos = recs[i].head.ref;
        }
    }
    srv_store_read_end(t);
    if (rc)
        return rc;
    if (page.full)
        *next = (uint64_t)pos;
    return SRV_OK;
}
