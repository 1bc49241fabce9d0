/* SQLite backend: checkpoints and pins. */
#include "store/sqlite/sqlite_int.h"

#include <string.h>

static srv_code read_rows(conn *c, srv_arena *a, sqlite3_stmt *s, bool full,
                          srv_checkpoint_rec **out, size_t *n, srv_error *err)
{
    srv_checkpoint_rec *v = NULL;
    int64_t *ids = NULL;
    size_t len = 0, cap = 0, icap = 0;
    int rc;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        if (!(v = srv_arena_grow(a, v, len, &cap, sizeof *v)) ||
            !(ids = srv_arena_grow(a, ids, len, &icap, sizeof *ids))) {
            rc = SQLITE_NOMEM;
            break;
        }
        srv_checkpoint_rec *r = &v[len];
        memset(r, 0, sizeof *r);
        ids[len++] = sqlite3_column_int64(s, 0);
        r->checkpoint_id = sq_column_text(a, s, 1);
        r->created_us = sqlite3_column_int64(s, 2);
        r->run_state = sq_column_text(a, s, 3);
        r->events_count = (uint64_t)sqlite3_column_int64(s, 4);
        r->snapshot_size = (uint64_t)sqlite3_column_int64(s, 5);
        r->sha256 = sq_column_text(a, s, 6);
    }
    sqlite3_reset(s);
    if (rc != SQLITE_DONE)
        return sq_db_fail(c->db, rc, "reading checkpoints", err);
    /* Workers after the rows: one statement steps at a time. */
    for (size_t i = 0; full && i < len; i++)
        if (sq_read_strings(c, a, ST_CKPT_WORKERS, ids[i], &v[i].completed, &v[i].n_completed,
                            err))
            return err->code;
    *out = v;
    *n = len;
    return SRV_OK;
}

srv_code sq_checkpoint_insert(srv_txn *t, const srv_run_head *run, const srv_checkpoint_rec *c,
                              srv_error *err)
{
    conn *w = sq_conn(t);
    sqlite3_stmt *q = sq_stmt(w, ST_CKPT_INSERT, err);
    if (!q)
        return err->code;
    sqlite3_bind_int64(q, 1, run->ref);
    sq_bind_text(q, 2, c->checkpoint_id);
    sqlite3_bind_int64(q, 3, c->created_us);
    sq_bind_text(q, 4, c->run_state);
    sqlite3_bind_int64(q, 5, (int64_t)c->events_count);
    sqlite3_bind_int64(q, 6, (int64_t)c->snapshot_size);
    sq_bind_text(q, 7, c->sha256);
    if (sq_step_done(w, q, "storing a checkpoint", err))
        return err->code;
    int64_t id = sqlite3_last_insert_rowid(w->db);
    for (size_t i = 0; i < c->n_completed; i++) {
        if (!(q = sq_stmt(w, ST_CKPT_WORKER_INSERT, err)))
            return err->code;
        sqlite3_bind_int64(q, 1, id);
        sqlite3_bind_int64(q, 2, (int64_t)i);
        sq_bind_text(q, 3, c->completed[i]);
        if (sq_step_done(w, q, "storing a checkpoint", err))
            return err->code;
    }
    if (!(q = sq_stmt(w, ST_RUN_SET_CHECKPOINT, err)))
        return err->code;
    sqlite3_bind_int64(q, 1, run->ref);
    sq_bind_text(q, 2, c->checkpoint_id);
    sqlite3_bind_int64(q, 3, c->created_us);
    sqlite3_bind_int64(q, 4, (int64_t)c->events_count);
    return sq_step_done(w, q, "storing a checkpoint", err);
}

srv_code sq_checkpoint_delete(srv_txn *t, const srv_run_head *run, const char *checkpoint_id,
                              srv_error *err)
{
    conn *w = sq_conn(t);
    stmt_id steps[] = {ST_CKPT_DELETE_WORKERS, ST_CKPT_DELETE};
    for (size_t i = 0; i < sizeof steps / sizeof steps[0]; i++) {
        sqlite3_stmt *q = sq_stmt(w, steps[i], err);
        if (!q)
            return err->code;
        sqlite3_bind_int64(q, 1, run->ref);
        sq_bind_text(q, 2, checkpoint_id);
        if (sq_step_done(w, q, "deleting a checkpoint", err))
            return err->code;
    }
    return SRV_OK;
}

srv_code sq_checkpoint_get(srv_txn *t, srv_arena *a, const srv_run_head *run,
                           const char *checkpoint_id, srv_checkpoint_rec *out, bool *found,
                           srv_error *err)
{
    conn *c = sq_conn(t);
    sqlite3_stmt *q = sq_stmt(c, *checkpoint_id ? ST_CKPT_BY_ID : ST_CKPT_LATEST, err);
    if (!q)
        return err->code;
    sqlite3_bind_int64(q, 1, run->ref);
    if (*checkpoint_id)
        sq_bind_text(q, 2, checkpoint_id);
    srv_checkpoint_rec *rows;
    size_t n;
    if (read_rows(c, a, q, true, &rows, &n, err))
        return err->code;
    *found = n > 0;
    if (*found)
        *out = rows[0];
    return SRV_OK;
}

srv_code sq_checkpoints_list(srv_txn *t, srv_arena *a, const srv_run_head *run,
                             const char *after, uint32_t limit, bool full,
                             srv_checkpoint_rec **out, size_t *n, srv_error *err)
{
    conn *c = sq_conn(t);
    sqlite3_stmt *q = sq_stmt(c, ST_CKPT_LIST, err);
    if (!q)
        return err->code;
    sqlite3_bind_int64(q, 1, run->ref);
    sq_bind_text(q, 2, after);
    sqlite3_bind_int64(q, 3, limit);
    return read_rows(c, a, q, full, out, n, err);
}

/* ---- pins: in pins.db, on a connection of their own, each insert or
 * delete its own transaction ---- */

srv_code sq_pin_add(srv_store *st, const char *run_id, const char *checkpoint_id,
                    int64_t expires_us, int64_t *pin, srv_error *err)
{
    sqlite_store *s = sq_from(st);
    pthread_mutex_lock(&s->pin_mu);
    conn *c = &s->pinner;
    sqlite3_stmt *q = sq_stmt(c, ST_PIN_INSERT, err);
    srv_code rc = q ? SRV_OK : err->code;
    if (q) {
        sq_bind_text(q, 1, run_id);
        sq_bind_text(q, 2, checkpoint_id);
        sqlite3_bind_int64(q, 3, expires_us);
        rc = sq_step_done(c, q, "pinning a checkpoint", err);
        if (!rc)
            *pin = sqlite3_last_insert_rowid(c->db);
    }
    pthread_mutex_unlock(&s->pin_mu);
    return rc;
}

srv_code sq_pin_remove(srv_store *st, int64_t pin, srv_error *err)
{
    sqlite_store *s = sq_from(st);
    pthread_mutex_lock(&s->pin_mu);
    conn *c = &s->pinner;
    sqlite3_stmt *q = sq_stmt(c, ST_PIN_DELETE, err);
    srv_code rc = q ? SRV_OK : err->code;
    if (q) {
        sqlite3_bind_int64(q, 1, pin);
        rc = sq_step_done(c, q, "unpinning a checkpoint", err);
    }
    pthread_mutex_unlock(&s->pin_mu);
    return rc;
}

/* Read on the pin connection, as committed now, whatever t is: pins.db
 * is not part of cairn.db's transactions. That is enough for the download
 * protocol (core/snapshots.c): a reader pins, then reads its checkpoint
 * again and opens its bytes; a cleanup that missed the pin either
 * committed before that read (the reader sees NOT_FOUND) or after it (the
 * reader holds the file open, and an unlinked file stays readable). */
srv_code sq_pinned(srv_txn *t, const char *run_id, const char *checkpoint_id, int64_t now_us,
                   bool *pinned, srv_error *err)
{
    sqlite_store *s = sq_of(t);
    pthread_mutex_lock(&s->pin_mu);
    conn *c = &s->pinner;
    sqlite3_stmt *q = sq_stmt(c, ST_PINNED, err);
    srv_code rc = q ? SRV_OK : err->code;
    if (q) {
        sq_bind_text(q, 1, run_id);
        sq_bind_text(q, 2, checkpoint_id);
        sqlite3_bind_int64(q, 3, now_us);
        int step = sqlite3_step(q);
        *pinned = step == SQLITE_ROW;
        sqlite3_reset(q);
        if (step != SQLITE_ROW && step != SQLITE_DONE)
            rc = sq_db_fail(c->db, step, "reading pins", err);
    }
    pthread_mutex_unlock(&s->pin_mu);
    return rc;
}
