/* Checkpoints: ids, the completed-worker set, retention and cleanup
 * (never a pinned checkpoint), and the reads. */
#include "core/domain.h"
#include "core/page.h"
#include "base/clock.h"
#include "base/limits.h"

#include <stdio.h>
#include <string.h>
#include <time.h>

/* A cleanup lists every checkpoint of a run at most this many at a time,
 * and a ListCheckpoints page holds at most this many. */
enum { LIST_PAGE = 1000 };

/* YYYYMMDD_HHMMSS_ffffff in UTC. */
static char *checkpoint_id_for(srv_arena *a, int64_t us)
{
    time_t secs = (time_t)(us / 1000000);
    struct tm tm;
    gmtime_r(&secs, &tm);
    char buf[32];
    size_t n = strftime(buf, sizeof buf, "%Y%m%d_%H%M%S", &tm);
    snprintf(buf + n, sizeof buf - n, "_%06ld", (long)(us % 1000000));
    return srv_arena_strdup(a, buf);
}

static srv_code fill_checkpoint(srv_arena *a, const char *run_id, const srv_checkpoint_rec *r,
                                Cairn__V1__Checkpoint *out, srv_error *err)
{
    cairn__v1__checkpoint__init(out);
    out->checkpoint_id = (char *)r->checkpoint_id;
    out->run_id = (char *)run_id;
    out->created_at = srv_time_text(a, r->created_us);
    out->run_state = (char *)r->run_state;
    out->completed_workers = r->completed;
    out->n_completed_workers = r->n_completed;
    out->events_count = r->events_count;
    out->snapshot_size = r->snapshot_size;
    out->snapshot_sha256 = (char *)r->sha256;
    return out->created_at ? SRV_OK : srv_fail(err, SRV_RESOURCE_EXHAUSTED, "out of memory");
}

/* The completed workers a checkpoint records: the header's, each checked
 * against the run; or, when the header lists none, the run's own set as
 * of the checkpoint's events_count. */
static srv_code completed_set(srv_apply *ap, const srv_run_head *run,
                              const Cairn__V1__CheckpointHeader *h, char ***out, size_t *n,
                              srv_error *err)
{
    if (h->n_completed_workers == 0) {
        srv_completion *c;
        size_t nc;
        if (srv_store_completions(ap->txn, ap->arena, run, &c, &nc, err))
            return err->code;
        char **v = srv_arena_alloc(ap->arena, (nc ? nc : 1) * sizeof *v);
        if (!v)
            return srv_fail(err, SRV_RESOURCE_EXHAUSTED, "out of memory");
        *n = 0;
        for (size_t i = 0; i < nc && c[i].seq <= h->events_count; i++)
            v[(*n)++] = (char *)c[i].worker_id;
        *out = v;
        return SRV_OK;
    }
    for (size_t i = 0; i < h->n_completed_workers; i++) {
        bool is_worker = false;
        uint64_t seq;
        if (srv_store_worker_get(ap->txn, run, h->completed_workers[i], &is_worker, &seq, err))
            return err->code;
        if (!is_worker) {
            char q[SRV_QUOTE_MAX];
            return srv_fail(err, SRV_INVALID_ARGUMENT,
                            "completed_workers[%zu]: %s is not a worker of run %s", i,
                            srv_quote(q, h->completed_workers[i], strlen(h->completed_workers[i])),
                            h->run_id);
        }
    }
    *out = h->completed_workers;
    *n = h->n_completed_workers;
    return SRV_OK;
}

/* Keeps the newest `keep` checkpoints of the run and every pinned one;
 * deletes the rest, each with its reference to its snapshot. Fills the
 * deleted ids, oldest first, when asked. */
static srv_code keep_newest(srv_apply *ap, const srv_run_head *run, uint32_t keep,
                            char ***deleted, size_t *n_deleted, srv_error *err)
{
    srv_checkpoint_rec *all = NULL;
    size_t n = 0, cap = 0;
    const char *after = "";
    for (;;) {
        srv_checkpoint_rec *page;
        size_t np;
        if (srv_store_checkpoints_list(ap->txn, ap->arena, run, after, LIST_PAGE, false, &page,
                                       &np, err))
            return err->code;
        for (size_t i = 0; i < np; i++) {
            if (!(all = srv_arena_grow(ap->arena, all, n, &cap, sizeof *all)))
                return srv_fail(err, SRV_RESOURCE_EXHAUSTED, "out of memory");
            all[n++] = page[i];
        }
        if (np < LIST_PAGE)
            break;
        after = page[np - 1].checkpoint_id;
    }
    size_t old = n > keep ? n - keep : 0;
    char **ids = srv_arena_alloc(ap->arena, (old ? old : 1) * sizeof *ids);
    if (!ids)
        return srv_fail(err, SRV_RESOURCE_EXHAUSTED, "out of memory");
    size_t n_ids = 0;
    for (size_t i = 0; i < old; i++) { /* oldest first */
        bool pinned = false;
        if (srv_store_pinned(ap->txn, run->run_id, all[i].checkpoint_id, ap->now_us, &pinned, err))
            return err->code;
        if (pinned)
            continue;
        if (srv_store_checkpoint_delete(ap->txn, run, all[i].checkpoint_id, err) ||
            srv_store_blob_unlink(ap->txn, all[i].sha256, err))
            return err->code;
        ids[n_ids++] = (char *)all[i].checkpoint_id;
    }
    if (deleted) {
        *deleted = ids;
        *n_deleted = n_ids;
    }
    return SRV_OK;
}

srv_code srv_checkpoints_drop_all(srv_apply *ap, const srv_run_head *run, srv_error *err)
{
    for (;;) {
        srv_checkpoint_rec *page;
        size_t n;
        if (srv_store_checkpoints_list(ap->txn, ap->arena, run, "", LIST_PAGE, false, &page, &n,
                                       err))
            return err->code;
        for (size_t i = 0; i < n; i++)
            if (srv_store_checkpoint_delete(ap->txn, run, page[i].checkpoint_id, err) ||
                srv_store_blob_unlink(ap->txn, page[i].sha256, err))
                return err->code;
        if (n < LIST_PAGE)
            return SRV_OK;
    }
}

srv_code srv_checkpoint_create(srv_apply *ap, const srv_new_checkpoint *cp,
                               Cairn__V1__Checkpoint *out, srv_error *err)
{
    const Cairn__V1__CheckpointHeader *h = cp->header;
    srv_run_head run;
    if (srv_run_require(ap->txn, ap->arena, h->run_id, &run, err))
        return err->code;
    if (h->events_count >= run.next_seq)
        return srv_fail(err, SRV_INVALID_ARGUMENT,
                        "events_count: %llu is past the run's last seq (%llu)",
                        (unsigned long long)h->events_count,
                        (unsigned long long)(run.next_seq - 1));
    srv_checkpoint_rec rec = {0};
    if (completed_set(ap, &run, h, &rec.completed, &rec.n_completed, err))
        return err->code;
    /* Ids order checkpoints: strictly after the run's previous one, even
     * within one microsecond. */
    rec.created_us = ap->now_us > run.latest_checkpoint_us ? ap->now_us
                                                           : run.latest_checkpoint_us + 1;
    if (!(rec.checkpoint_id = checkpoint_id_for(ap->arena, rec.created_us)))
        return srv_fail(err, SRV_RESOURCE_EXHAUSTED, "out of memory");
    rec.run_state = h->run_state;
    rec.events_count = h->events_count;
    rec.snapshot_size = h->snapshot_size;
    rec.sha256 = cp->sha256;
    if (srv_store_blob_link(ap->txn, cp->stage, rec.snapshot_size, err) ||
        srv_store_checkpoint_insert(ap->txn, &run, &rec, err) ||
        keep_newest(ap, &run, (uint32_t)cp->retention, NULL, NULL, err))
        return err->code;
    return fill_checkpoint(ap->arena, h->run_id, &rec, out, err);
}

srv_code srv_checkpoints_cleanup(srv_apply *ap, const char *run_id, uint32_t keep_last_n,
                                 Cairn__V1__CleanupCheckpointsResponse *out, srv_error *err)
{
    srv_run_head run;
    if (srv_run_require(ap->txn, ap->arena, run_id, &run, err) ||
        keep_newest(ap, &run, keep_last_n, &out->deleted_ids, &out->n_deleted_ids, err))
        return err->code;
    out->deleted = (uint32_t)out->n_deleted_ids;
    return SRV_OK;
}

/* ---- reads ---- */

srv_code srv_checkpoints_read(srv_store *st, srv_arena *a, const char *run_id,
                              const char *after, size_t max_bytes,
                              Cairn__V1__ListCheckpointsResponse *out, srv_error *err)
{
    out->checkpoints = srv_arena_alloc(a, LIST_PAGE * sizeof *out->checkpoints);
    if (!out->checkpoints)
        return srv_fail(err, SRV_RESOURCE_EXHAUSTED, "out of memory");
    srv_txn *t;
    if (srv_store_read_begin(st, &t, err))
        return err->code;
    srv_run_head run;
    srv_code rc = srv_run_require(t, a, run_id, &run, err);
    srv_page page = {.max_count = LIST_PAGE, .max_bytes = max_bytes};
    bool end = false;
    while (!rc && !page.full && !end) {
        uint32_t want = srv_page_want(&page);
        srv_checkpoint_rec *rows = NULL;
        size_t n = 0;
        rc = srv_store_checkpoints_list(t, a, &run, after, want, true, &rows, &n, err);
        end = !rc && n < want;
        for (size_t i = 0; !rc && i < n; i++) {
            Cairn__V1__Checkpoint *cp = srv_arena_alloc(a, sizeof *cp);
            if (!cp) {
                rc = srv_fail(err, SRV_RESOURCE_EXHAUSTED, "out of memory");
                break;
            }
            if ((rc = fill_checkpoint(a, run_id, &rows[i], cp, err)) ||
                !srv_page_admit(&page, &cp->base))
                break;
            out->checkpoints[out->n_checkpoints++] = cp;
            after = rows[i].checkpoint_id;
        }
    }
    srv_store_read_end(t);
    if (rc)
        return rc;
    if (page.full)
        out->next_page_token = (char *)after;
    return SRV_OK;
}

srv_code srv_checkpoint_read(srv_store *st, srv_arena *a, const char *run_id,
                             const char *checkpoint_id, Cairn__V1__Checkpoint *out,
                             srv_error *err)
{
    srv_txn *t;
    if (srv_store_read_begin(st, &t, err))
        return err->code;
    srv_run_head run;
    srv_checkpoint_rec rec;
    bool found = false;
    srv_code rc = srv_run_require(t, a, run_id, &run, err);
    if (!rc)
        rc = srv_store_checkpoint_get(t, a, &run, checkpoint_id, &rec, &found, err);
    srv_store_read_end(t);
    if (rc)
        return rc;
    if (found)
        return fill_checkpoint(a, run_id, &rec, out, err);
    char q[SRV_QUOTE_MAX];
    if (*checkpoint_id)
        return srv_fail(err, SRV_NOT_FOUND, "checkpoint_id: run %s has no checkpoint %s", run_id,
                        srv_quote(q, checkpoint_id, strlen(checkpoint_id)));
    return srv_fail(err, SRV_NOT_FOUND, "run_id: run %s has no checkpoint yet", run_id);
}
