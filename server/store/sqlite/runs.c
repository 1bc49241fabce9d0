/* SQLite backend: runs, the event log and worker completions. */
#include "store/sqlite/sqlite_int.h"
#include "base/clock.h"
#include "base/limits.h"

#include <string.h>

/* Reads a row selected with RUN_COLUMNS. */
static void read_head(srv_arena *a, sqlite3_stmt *s, srv_run_head *r)
{
    r->ref = sqlite3_column_int64(s, 0);
    r->run_id = sq_column_text(a, s, 1);
    r->created_us = sqlite3_column_int64(s, 2);
    r->next_seq = (uint64_t)sqlite3_column_int64(s, 3);
    r->n_workers = (uint32_t)sqlite3_column_int64(s, 4);
    r->n_completed = (uint32_t)sqlite3_column_int64(s, 5);
    r->latest_checkpoint_id = sq_column_text(a, s, 6);
    r->checkpoint_events = (uint64_t)sqlite3_column_int64(s, 7);
    r->latest_checkpoint_us = sqlite3_column_int64(s, 8);
}

srv_code sq_run_find(srv_txn *t, srv_arena *a, const char *run_id, srv_run_head *out,
                     bool *found, srv_error *err)
{
    conn *c = sq_conn(t);
    sqlite3_stmt *s = sq_stmt(c, ST_RUN_BY_NAME, err);
    if (!s)
        return err->code;
    sq_bind_text(s, 1, run_id);
    int rc = sqlite3_step(s);
    *found = rc == SQLITE_ROW;
    if (*found)
        read_head(a, s, out);
    sqlite3_reset(s);
    if (rc != SQLITE_ROW && rc != SQLITE_DONE)
        return sq_db_fail(c->db, rc, "reading a run", err);
    return SRV_OK;
}

static srv_code read_labels(conn *c, srv_arena *a, int64_t run, srv_run_rec *out,
                            srv_error *err)
{
    sqlite3_stmt *s = sq_stmt(c, ST_LABELS, err);
    if (!s)
        return err->code;
    sqlite3_bind_int64(s, 1, run);
    size_t n = 0, cap = 0;
    srv_label *v = NULL;
    int rc;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        if (!(v = srv_arena_grow(a, v, n, &cap, sizeof *v))) {
            rc = SQLITE_NOMEM;
            break;
        }
        v[n++] = (srv_label){sq_column_text(a, s, 0), sq_column_text(a, s, 1)};
    }
    sqlite3_reset(s);
    if (rc != SQLITE_DONE)
        return sq_db_fail(c->db, rc, "reading labels", err);
    out->labels = v;
    out->n_labels = n;
    return SRV_OK;
}

/* The definition of a run whose head is read. */
static srv_code read_definition(conn *c, srv_arena *a, srv_run_rec *r, srv_error *err)
{
    int64_t ref = r->head.ref;
    if (sq_read_strings(c, a, ST_WORKERS, ref, &r->workers, &r->n_workers, err) ||
        sq_read_strings(c, a, ST_COMPLETED, ref, &r->completed, &r->n_completed, err))
        return err->code;
    return read_labels(c, a, ref, r, err);
}

srv_code sq_run_get(srv_txn *t, srv_arena *a, const char *run_id, srv_run_rec *out,
                    bool *found, srv_error *err)
{
    memset(out, 0, sizeof *out);
    srv_code rc = sq_run_find(t, a, run_id, &out->head, found, err);
    if (rc || !*found)
        return rc;
    return read_definition(sq_conn(t), a, out, err);
}

srv_code sq_runs_list(srv_txn *t, srv_arena *a, int64_t after, const char *prefix,
                      uint32_t limit,
                      srv_run_rec **out, size_t *n, srv_error *err)
{
    conn *c = sq_conn(t);
    sqlite3_stmt *s = sq_stmt(c, ST_RUNS_AFTER, err);
    if (!s)
        return err->code;
    /* Rows first, then each run's children, so one statement is stepped
     * at a time on this connection. */
    srv_run_rec *rows = NULL;
    size_t len = 0, cap = 0;
    sqlite3_bind_int64(s, 1, after);
    sqlite3_bind_int64(s, 2, limit);
    sqlite3_bind_text(s, 3, prefix, -1, SQLITE_STATIC);
    int rc;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        if (!(rows = srv_arena_grow(a, rows, len, &cap, sizeof *rows))) {
            rc = SQLITE_NOMEM;
            break;
        }
        memset(&rows[len], 0, sizeof rows[len]);
        read_head(a, s, &rows[len++].head);
    }
    sqlite3_reset(s);
    if (rc != SQLITE_DONE)
        return sq_db_fail(c->db, rc, "listing runs", err);
    for (size_t i = 0; i < len; i++)
        if (read_definition(c, a, &rows[i], err))
            return err->code;
    *out = rows;
    *n = len;
    return SRV_OK;
}

srv_code sq_run_insert(srv_txn *t, const char *run_id, char *const *workers, size_t n_workers,
                       const srv_label *labels, size_t n_labels,
                       int64_t now_us, int64_t *ref, srv_error *err)
{
    conn *w = sq_conn(t);
    sqlite3_stmt *s = sq_stmt(w, ST_RUN_INSERT, err);
    if (!s)
        return err->code;
    sq_bind_text(s, 1, run_id);
    sqlite3_bind_int64(s, 2, now_us);
    sqlite3_bind_int64(s, 3, (int64_t)n_workers);
    if (sq_step_done(w, s, "creating a run", err))
        return err->code;
    int64_t id = sqlite3_last_insert_rowid(w->db);
    for (size_t i = 0; i < n_workers; i++) {
        if (!(s = sq_stmt(w, ST_WORKER_INSERT, err)))
            return err->code;
        sqlite3_bind_int64(s, 1, id);
        sqlite3_bind_int64(s, 2, (int64_t)i);
        sq_bind_text(s, 3, workers[i]);
        if (sq_step_done(w, s, "storing workers", err))
            return err->code;
    }
    for (size_t i = 0; i < n_labels; i++) {
        if (!(s = sq_stmt(w, ST_LABEL_INSERT, err)))
            return err->code;
        sqlite3_bind_int64(s, 1, id);
        sq_bind_text(s, 2, labels[i].key);
        sq_bind_text(s, 3, labels[i].value);
        if (sq_step_done(w, s, "storing labels", err))
            return err->code;
    }
    *ref = id;
    return SRV_OK;
}

/* ---- the lifecycle ---- */

srv_code sq_run_delete(srv_txn *t, const srv_run_head *run, srv_error *err)
{
    conn *w = sq_conn(t);
    for (int id = ST_RUN_DELETE_EVENTS; id <= ST_RUN_DELETE; id++) {
        sqlite3_stmt *s = sq_stmt(w, (stmt_id)id, err);
        if (!s)
            return err->code;
        sqlite3_bind_int64(s, 1, run->ref);
        if (sq_step_done(w, s, "deleting a run", err))
            return err->code;
    }
    return sq_reclaim(w, err);
}

srv_code sq_run_set_completed(srv_txn *t, const srv_run_head *run, int64_t now_us,
                              srv_error *err)
{
    conn *w = sq_conn(t);
    sqlite3_stmt *s = sq_stmt(w, ST_RUN_SET_COMPLETED, err);
    if (!s)
        return err->code;
    sqlite3_bind_int64(s, 1, run->ref);
    sqlite3_bind_int64(s, 2, now_us);
    return sq_step_done(w, s, "recording a run's completion", err);
}

srv_code sq_runs_completed_before(srv_txn *t, srv_arena *a, int64_t before_us, uint32_t limit,
                                  char ***out, size_t *n, srv_error *err)
{
    conn *c = sq_conn(t);
    sqlite3_stmt *s = sq_stmt(c, ST_RUNS_COMPLETED_BEFORE, err);
    if (!s)
        return err->code;
    sqlite3_bind_int64(s, 1, before_us);
    sqlite3_bind_int64(s, 2, limit);
    return sq_step_strings(c, a, s, "listing completed runs", out, n, err);
}

/* ---- events ---- */

srv_code sq_events_insert(srv_txn *t, const srv_run_head *run, Cairn__V1__Event *const *events,
                          size_t n, int64_t now_us, srv_error *err)
{
    conn *w = sq_conn(t);
    uint64_t seq = run->next_seq;
    for (size_t i = 0; i < n; i++, seq++) {
        const Cairn__V1__Event *ev = events[i];
        sqlite3_stmt *s = sq_stmt(w, ST_EVENT_INSERT, err);
        if (!s)
            return err->code;
        sqlite3_bind_int64(s, 1, run->ref);
        sqlite3_bind_int64(s, 2, (int64_t)seq);
        sq_bind_text(s, 3, ev->type);
        sq_bind_text(s, 4, ev->worker_id);
        sqlite3_bind_blob(s, 5, ev->payload.len ? (const void *)ev->payload.data : (const void *)"",
                          (int)ev->payload.len, SQLITE_STATIC);
        sqlite3_bind_int64(s, 6, now_us);
        if (sq_step_done(w, s, "appending events", err))
            return err->code;
    }
    sqlite3_stmt *s = sq_stmt(w, ST_RUN_SET_NEXT, err);
    if (!s)
        return err->code;
    sqlite3_bind_int64(s, 1, run->ref);
    sqlite3_bind_int64(s, 2, (int64_t)seq);
    return sq_step_done(w, s, "appending events", err);
}

/* Column i as text in the arena, or prev itself when it holds the same
 * text: a page's events mostly share their type and worker. */
static const char *text_like(srv_arena *a, sqlite3_stmt *s, int i, const char *prev)
{
    const char *t = (const char *)sqlite3_column_text(s, i);
    size_t n = (size_t)sqlite3_column_bytes(s, i);
    if (prev && t && strncmp(prev, t, n) == 0 && prev[n] == '\0')
        return prev;
    return srv_arena_strndup(a, t ? t : "", n);
}

srv_code sq_events_read(srv_txn *t, srv_arena *a, const srv_run_head *run, uint64_t from_seq,
                        uint32_t max_events, size_t max_bytes, Cairn__V1__Event ***out,
                        size_t *n, srv_error *err)
{
    conn *c = sq_conn(t);
    sqlite3_stmt *s = sq_stmt(c, ST_EVENTS_FROM, err);
    if (!s)
        return err->code;
    Cairn__V1__Event **v = srv_arena_alloc(a, (max_events ? max_events : 1) * sizeof *v);
    size_t len = 0, bytes = 0;
    sqlite3_bind_int64(s, 1, run->ref);
    /* SQLite integers are signed: a from_seq past INT64_MAX is past every
     * seq, so it reads nothing. */
    sqlite3_bind_int64(s, 2, from_seq > INT64_MAX ? INT64_MAX : (int64_t)from_seq);
    sqlite3_bind_int64(s, 3, max_events);
    int rc = v ? SQLITE_ROW : SQLITE_NOMEM;
    while (rc == SQLITE_ROW && (rc = sqlite3_step(s)) == SQLITE_ROW) {
        size_t plen = (size_t)sqlite3_column_bytes(s, 3);
        size_t cost = plen + SRV_EVENT_COST;
        if (len > 0 && bytes + cost > max_bytes)
            break;
        Cairn__V1__Event *ev = srv_arena_alloc(a, sizeof *ev);
        if (!ev) {
            rc = SQLITE_NOMEM;
            break;
        }
        cairn__v1__event__init(ev);
        ev->seq = (uint64_t)sqlite3_column_int64(s, 0);
        ev->run_id = (char *)run->run_id;
        const Cairn__V1__Event *prev = len ? v[len - 1] : NULL;
        ev->type = (char *)text_like(a, s, 1, prev ? prev->type : NULL);
        ev->worker_id = (char *)text_like(a, s, 2, prev ? prev->worker_id : NULL);
        ev->payload.len = plen;
        ev->payload.data = srv_arena_memdup(a, sqlite3_column_blob(s, 3), plen);
        char *when = srv_arena_alloc(a, 32);
        ev->created_at = when ? srv_format_time(when, sqlite3_column_int64(s, 4)) : NULL;
        if (!ev->type || !ev->worker_id || (plen && !ev->payload.data) || !when) {
            rc = SQLITE_NOMEM;
            break;
        }
        v[len++] = ev;
        bytes += cost;
    }
    sqlite3_reset(s);
    if (rc != SQLITE_DONE && rc != SQLITE_ROW)
        return sq_db_fail(c->db, rc, "reading events", err);
    *out = v;
    *n = len;
    return SRV_OK;
}

/* ---- workers ---- */

srv_code sq_worker_get(srv_txn *t, const srv_run_head *run, const char *worker_id,
                       bool *is_worker, uint64_t *completed_seq, srv_error *err)
{
    conn *c = sq_conn(t);
    sqlite3_stmt *s = sq_stmt(c, ST_WORKER_SEQ, err);
    if (!s)
        return err->code;
    sqlite3_bind_int64(s, 1, run->ref);
    sq_bind_text(s, 2, worker_id);
    int rc = sqlite3_step(s);
    *is_worker = rc == SQLITE_ROW;
    *completed_seq = rc == SQLITE_ROW ? (uint64_t)sqlite3_column_int64(s, 0) : 0;
    sqlite3_reset(s);
    if (rc != SQLITE_ROW && rc != SQLITE_DONE)
        return sq_db_fail(c->db, rc, "reading a worker", err);
    return SRV_OK;
}

srv_code sq_worker_complete(srv_txn *t, const srv_run_head *run, const char *worker_id,
                            uint64_t seq, srv_error *err)
{
    conn *w = sq_conn(t);
    sqlite3_stmt *s = sq_stmt(w, ST_WORKER_SET_COMPLETED, err);
    if (!s)
        return err->code;
    sqlite3_bind_int64(s, 1, run->ref);
    sq_bind_text(s, 2, worker_id);
    sqlite3_bind_int64(s, 3, (int64_t)seq);
    if (sq_step_done(w, s, "completing a worker", err))
        return err->code;
    if (sqlite3_changes(w->db) != 1)
        return srv_fail(err, SRV_INTERNAL, "store: completing a worker the run does not have");
    if (!(s = sq_stmt(w, ST_RUN_COMPLETED, err)))
        return err->code;
    sqlite3_bind_int64(s, 1, run->ref);
    return sq_step_done(w, s, "completing a worker", err);
}

srv_code sq_completions(srv_txn *t, srv_arena *a, const srv_run_head *run,
                        srv_completion **out, size_t *n, srv_error *err)
{
    conn *c = sq_conn(t);
    sqlite3_stmt *s = sq_stmt(c, ST_COMPLETIONS, err);
    if (!s)
        return err->code;
    sqlite3_bind_int64(s, 1, run->ref);
    srv_completion *v = NULL;
    size_t len = 0, cap = 0;
    int rc;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        if (!(v = srv_arena_grow(a, v, len, &cap, sizeof *v))) {
            rc = SQLITE_NOMEM;
            break;
        }
        v[len++] = (srv_completion){sq_column_text(a, s, 0), (uint64_t)sqlite3_column_int64(s, 1)};
    }
    sqlite3_reset(s);
    if (rc != SQLITE_DONE)
        return sq_db_fail(c->db, rc, "reading completions", err);
    *out = v;
    *n = len;
    return SRV_OK;
}
