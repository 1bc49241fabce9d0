/* SQLite store: checkpoints, retention, and the state ResumeRun reads. */
#include "store/sqlite/sqlite_int.h"
#include "core/pins.h"

#include <stdio.h>
#include <string.h>
#include <time.h>

/* A checkpoints row and its completed workers. */
typedef struct ckpt_row {
    int64_t id;
    const char *checkpoint_id;
    int64_t created_us;
    const char *run_state;
    uint64_t events_count;
    uint64_t snapshot_size;
    const char *sha256;
} ckpt_row;

static void read_ckpt_row(srv_arena *a, sqlite3_stmt *s, ckpt_row *c)
{
    c->id = sqlite3_column_int64(s, 0);
    c->checkpoint_id = sq_column_text(a, s, 1);
    c->created_us = sqlite3_column_int64(s, 2);
    c->run_state = sq_column_text(a, s, 3);
    c->events_count = (uint64_t)sqlite3_column_int64(s, 4);
    c->snapshot_size = (uint64_t)sqlite3_column_int64(s, 5);
    c->sha256 = sq_column_text(a, s, 6);
}

static srv_code fill_checkpoint(conn *c, srv_arena *a, const char *run_id, const ckpt_row *r,
                                Cairn__V1__Checkpoint *out, srv_error *err)
{
    cairn__v1__checkpoint__init(out);
    out->checkpoint_id = (char *)r->checkpoint_id;
    out->run_id = (char *)run_id;
    out->created_at = sq_format_time(a, r->created_us);
    out->run_state = (char *)r->run_state;
    out->events_count = r->events_count;
    out->snapshot_size = r->snapshot_size;
    out->snapshot_sha256 = (char *)r->sha256;
    return sq_read_strings(c, a, ST_CKPT_WORKERS, r->id, 0, &out->completed_workers,
                           &out->n_completed_workers, err);
}

/* Reads every row of a checkpoint query taking the run (and maybe an id). */
static srv_code read_ckpt_rows(conn *c, srv_arena *a, stmt_id id, int64_t run,
                               const char *checkpoint_id, ckpt_row **out, size_t *n,
                               srv_error *err)
{
    sqlite3_stmt *s = sq_stmt(c, id, err);
    if (!s)
        return err->code;
    sqlite3_bind_int64(s, 1, run);
    if (checkpoint_id)
        sq_bind_text(s, 2, checkpoint_id);
    size_t cap = 0, len = 0;
    ckpt_row *v = NULL;
    int rc;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        if (!(v = srv_arena_grow(a, v, len, &cap, sizeof *v))) {
            rc = SQLITE_NOMEM;
            break;
        }
        read_ckpt_row(a, s, &v[len++]);
    }
    sqlite3_reset(s);
    if (rc != SQLITE_DONE)
        return sq_db_fail(c->db, rc, "reading checkpoints", err);
    *out = v;
    *n = len;
    return SRV_OK;
}

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

/* Deletes one checkpoint row, its workers, and its snapshot reference. */
static srv_code delete_checkpoint(sqlite_store *s, int64_t id, const char *sha, srv_error *err)
{
    conn *w = &s->writer;
    sqlite3_stmt *st = sq_stmt(w, ST_CKPT_DELETE_WORKERS, err);
    if (!st)
        return err->code;
    sqlite3_bind_int64(st, 1, id);
    if (sq_step_done(w, st, "deleting a checkpoint", err))
        return err->code;
    if (!(st = sq_stmt(w, ST_CKPT_DELETE, err)))
        return err->code;
    sqlite3_bind_int64(st, 1, id);
    if (sq_step_done(w, st, "deleting a checkpoint", err))
        return err->code;
    return sq_blob_unref(s, sha, err);
}

/* Keeps the newest `keep` checkpoints of the run and every pinned one;
 * deletes the rest. Fills the deleted ids, oldest first, when asked. */
static srv_code keep_newest(sqlite_store *s, srv_arena *a, const char *run_id, int64_t run,
                            uint32_t keep, srv_pins *pins, char ***deleted, size_t *n_deleted,
                            srv_error *err)
{
    conn *w = &s->writer;
    sqlite3_stmt *st = sq_stmt(w, ST_CKPT_NEWEST_FIRST, err);
    if (!st)
        return err->code;
    sqlite3_bind_int64(st, 1, run);
    /* Collect first: rows are not deleted while the query steps. */
    size_t cap = 0, n = 0;
    struct victim {
        int64_t id;
        const char *checkpoint_id, *sha;
    } *v = NULL;
    uint32_t seen = 0;
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        if (seen++ < keep)
            continue;
        const char *cid = sq_column_text(a, st, 1);
        if (pins && srv_pins_has(pins, run_id, cid))
            continue;
        if (!(v = srv_arena_grow(a, v, n, &cap, sizeof *v))) {
            rc = SQLITE_NOMEM;
            break;
        }
        v[n++] = (struct victim){sqlite3_column_int64(st, 0), cid, sq_column_text(a, st, 2)};
    }
    sqlite3_reset(st);
    if (rc != SQLITE_DONE)
        return sq_db_fail(w->db, rc, "reading checkpoints", err);

    char **ids = n ? srv_arena_alloc(a, n * sizeof *ids) : NULL;
    if (n && !ids)
        return srv_fail(err, SRV_RESOURCE_EXHAUSTED, "out of memory");
    for (size_t i = 0; i < n; i++) {
        if (delete_checkpoint(s, v[i].id, v[i].sha, err))
            return err->code;
        ids[n - 1 - i] = (char *)v[i].checkpoint_id; /* oldest first */
    }
    if (deleted) {
        *deleted = ids;
        *n_deleted = n;
    }
    return SRV_OK;
}

/* The completed workers a checkpoint records: the header's, each checked
 * against the run; or, when the header lists none, the run's own set as
 * of the checkpoint's events_count. */
static srv_code completed_set(conn *w, srv_arena *a, const run_row *r,
                              const Cairn__V1__CheckpointHeader *h, char ***out, size_t *n,
                              srv_error *err)
{
    if (h->n_completed_workers == 0)
        return sq_read_strings(w, a, ST_COMPLETED_UNTIL, r->id, (int64_t)h->events_count, out, n,
                               err);
    for (size_t i = 0; i < h->n_completed_workers; i++) {
        sqlite3_stmt *s = sq_stmt(w, ST_WORKER_SEQ, err);
        if (!s)
            return err->code;
        sqlite3_bind_int64(s, 1, r->id);
        sq_bind_text(s, 2, h->completed_workers[i]);
        int rc = sqlite3_step(s);
        sqlite3_reset(s);
        if (rc == SQLITE_DONE) {
            char q[SRV_QUOTE_MAX];
            return srv_fail(err, SRV_INVALID_ARGUMENT,
                            "completed_workers[%zu]: %s is not a worker of run %s", i,
                            srv_quote(q, h->completed_workers[i], strlen(h->completed_workers[i])),
                            h->run_id);
        }
        if (rc != SQLITE_ROW)
            return sq_db_fail(w->db, rc, "reading workers", err);
    }
    *out = h->completed_workers;
    *n = h->n_completed_workers;
    return SRV_OK;
}

srv_code sq_create_checkpoint(srv_store *st, srv_arena *a, const srv_new_checkpoint *cp,
                              int64_t now_us, Cairn__V1__Checkpoint *out, srv_error *err)
{
    sqlite_store *s = sq_from(st);
    conn *w = &s->writer;
    const Cairn__V1__CheckpointHeader *h = cp->header;
    run_row r;
    srv_code rc = sq_find_run(w, a, h->run_id, &r, err);
    if (rc)
        return rc;
    if (h->events_count >= r.next_seq)
        return srv_fail(err, SRV_INVALID_ARGUMENT,
                        "events_count: %llu is past the run's last seq (%llu)",
                        (unsigned long long)h->events_count,
                        (unsigned long long)(r.next_seq - 1));
    char **completed;
    size_t n_completed;
    if ((rc = completed_set(w, a, &r, h, &completed, &n_completed, err)))
        return rc;

    /* Ids order checkpoints: strictly after the run's previous one, even
     * within one microsecond. */
    int64_t created_us = now_us > r.latest_checkpoint_us ? now_us : r.latest_checkpoint_us + 1;
    char *checkpoint_id = checkpoint_id_for(a, created_us);
    uint64_t size = h->snapshot_size;
    if ((rc = sq_blob_link(s, cp->stage, size, err)))
        return rc;

    sqlite3_stmt *q = sq_stmt(w, ST_CKPT_INSERT, err);
    if (!q)
        return err->code;
    sqlite3_bind_int64(q, 1, r.id);
    sq_bind_text(q, 2, checkpoint_id);
    sqlite3_bind_int64(q, 3, created_us);
    sq_bind_text(q, 4, h->run_state);
    sqlite3_bind_int64(q, 5, (int64_t)h->events_count);
    sqlite3_bind_int64(q, 6, (int64_t)size);
    sq_bind_text(q, 7, cp->sha256);
    if (sq_step_done(w, q, "storing a checkpoint", err))
        return err->code;
    int64_t id = sqlite3_last_insert_rowid(w->db);
    for (size_t i = 0; i < n_completed; i++) {
        if (!(q = sq_stmt(w, ST_CKPT_WORKER_INSERT, err)))
            return err->code;
        sqlite3_bind_int64(q, 1, id);
        sqlite3_bind_int64(q, 2, (int64_t)i);
        sq_bind_text(q, 3, completed[i]);
        if (sq_step_done(w, q, "storing a checkpoint", err))
            return err->code;
    }
    if (!(q = sq_stmt(w, ST_RUN_SET_CHECKPOINT, err)))
        return err->code;
    sqlite3_bind_int64(q, 1, r.id);
    sq_bind_text(q, 2, checkpoint_id);
    sqlite3_bind_int64(q, 3, created_us);
    sqlite3_bind_int64(q, 4, (int64_t)h->events_count);
    if (sq_step_done(w, q, "storing a checkpoint", err))
        return err->code;
    if ((rc = keep_newest(s, a, h->run_id, r.id, (uint32_t)cp->retention, cp->pins, NULL, NULL,
                          err)))
        return rc;

    cairn__v1__checkpoint__init(out);
    out->checkpoint_id = checkpoint_id;
    out->run_id = (char *)h->run_id;
    out->created_at = sq_format_time(a, created_us);
    out->run_state = (char *)h->run_state;
    out->completed_workers = completed;
    out->n_completed_workers = n_completed;
    out->events_count = h->events_count;
    out->snapshot_size = size;
    out->snapshot_sha256 = (char *)cp->sha256;
    return SRV_OK;
}

srv_code sq_cleanup_checkpoints(srv_store *st, srv_arena *a, const char *run_id,
                                uint32_t keep_last_n, srv_pins *pins,
                                Cairn__V1__CleanupCheckpointsResponse *out, srv_error *err)
{
    sqlite_store *s = sq_from(st);
    run_row r;
    srv_code rc = sq_find_run(&s->writer, a, run_id, &r, err);
    if (!rc)
        rc = keep_newest(s, a, run_id, r.id, keep_last_n, pins, &out->deleted_ids,
                         &out->n_deleted_ids, err);
    out->deleted = (uint32_t)out->n_deleted_ids;
    return rc;
}

/* ---- reads ---- */

srv_code sq_list_checkpoints(srv_store *st, srv_arena *a, const char *run_id,
                             const char *after, size_t max_bytes,
                             Cairn__V1__ListCheckpointsResponse *out, srv_error *err)
{
    sqlite_store *s = sq_from(st);
    conn *c = sq_reader_get(s);
    run_row r;
    ckpt_row *rows = NULL;
    size_t n = 0;
    srv_code rc = sq_find_run(c, a, run_id, &r, err);
    if (!rc)
        rc = read_ckpt_rows(c, a, ST_CKPT_LIST, r.id, after, &rows, &n, err);
    if (!rc && n) {
        out->checkpoints = srv_arena_alloc(a, n * sizeof *out->checkpoints);
        if (!out->checkpoints)
            rc = srv_fail(err, SRV_RESOURCE_EXHAUSTED, "out of memory");
    }
    size_t bytes = 0;
    for (size_t i = 0; !rc && i < n; i++) {
        Cairn__V1__Checkpoint *cp = srv_arena_alloc(a, sizeof *cp);
        if (!cp) {
            rc = srv_fail(err, SRV_RESOURCE_EXHAUSTED, "out of memory");
            break;
        }
        if ((rc = fill_checkpoint(c, a, run_id, &rows[i], cp, err)))
            break;
        size_t size = protobuf_c_message_get_packed_size(&cp->base) + 8;
        if (i == 1000 || (i > 0 && bytes + size > max_bytes)) {
            out->next_page_token = (char *)rows[i - 1].checkpoint_id;
            break;
        }
        bytes += size;
        out->checkpoints[out->n_checkpoints++] = cp;
    }
    sq_reader_put(s, c);
    return rc;
}

/* The checkpoint checkpoint_id of run r (the latest when ""), on c. */
static srv_code find_checkpoint(conn *c, srv_arena *a, const run_row *r,
                                const char *checkpoint_id, Cairn__V1__Checkpoint *out,
                                bool *found, srv_error *err)
{
    ckpt_row *rows;
    size_t n;
    srv_code rc = *checkpoint_id
                      ? read_ckpt_rows(c, a, ST_CKPT_BY_ID, r->id, checkpoint_id, &rows, &n, err)
                      : read_ckpt_rows(c, a, ST_CKPT_LATEST, r->id, NULL, &rows, &n, err);
    *found = !rc && n > 0;
    cairn__v1__checkpoint__init(out);
    if (*found)
        rc = fill_checkpoint(c, a, r->run_id, &rows[0], out, err);
    return rc;
}

srv_code sq_get_checkpoint(srv_store *st, srv_arena *a, const char *run_id,
                           const char *checkpoint_id, Cairn__V1__Checkpoint *out,
                           srv_error *err)
{
    sqlite_store *s = sq_from(st);
    conn *c = sq_reader_get(s);
    run_row r;
    bool found = false;
    srv_code rc = sq_find_run(c, a, run_id, &r, err);
    if (!rc)
        rc = find_checkpoint(c, a, &r, checkpoint_id, out, &found, err);
    sq_reader_put(s, c);
    if (rc || found)
        return rc;
    char q[SRV_QUOTE_MAX];
    if (*checkpoint_id)
        return srv_fail(err, SRV_NOT_FOUND, "checkpoint_id: run %s has no checkpoint %s", run_id,
                        srv_quote(q, checkpoint_id, strlen(checkpoint_id)));
    return srv_fail(err, SRV_NOT_FOUND, "run_id: run %s has no checkpoint yet", run_id);
}

srv_code sq_read_resume_state(srv_store *st, srv_arena *a, const char *run_id,
                              srv_resume_state *out, srv_error *err)
{
    sqlite_store *s = sq_from(st);
    conn *c = sq_reader_get(s);
    run_row r;
    srv_code rc = sq_find_run(c, a, run_id, &r, err);
    if (!rc)
        rc = sq_fill_run(c, a, &r, &out->run, err);
    if (!rc)
        rc = find_checkpoint(c, a, &r, "", &out->checkpoint, &out->has_checkpoint, err);
    sqlite3_stmt *q = rc ? NULL : sq_stmt(c, ST_COMPLETIONS, err);
    if (q) {
        sqlite3_bind_int64(q, 1, r.id);
        size_t cap = 0;
        out->n_completions = 0;
        out->completions = NULL;
        int sqrc;
        while ((sqrc = sqlite3_step(q)) == SQLITE_ROW) {
            out->completions = srv_arena_grow(a, out->completions, out->n_completions, &cap,
                                              sizeof *out->completions);
            if (!out->completions) {
                sqrc = SQLITE_NOMEM;
                break;
            }
            out->completions[out->n_completions++] = (srv_completion){
                sq_column_text(a, q, 0), (uint64_t)sqlite3_column_int64(q, 1)};
        }
        sqlite3_reset(q);
        if (sqrc != SQLITE_DONE)
            rc = sq_db_fail(c->db, sqrc, "reading completions", err);
    } else if (!rc) {
        rc = err->code;
    }
    sq_reader_put(s, c);
    return rc;
}
