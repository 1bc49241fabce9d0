/* PostgreSQL backend: checkpoints and pins. */
#include "store/pg/pg_int.h"

#include <stdlib.h>
#include <string.h>

static srv_code read_rows(pg_conn *c, srv_arena *a, PGresult *r, bool full,
                          srv_checkpoint_rec **out, size_t *n, srv_error *err)
{
    int len = PQntuples(r);
    srv_checkpoint_rec *v = srv_arena_alloc(a, (size_t)(len ? len : 1) * sizeof *v);
    int64_t *ids = srv_arena_alloc(a, (size_t)(len ? len : 1) * sizeof *ids);
    for (int i = 0; v && ids && i < len; i++) {
        srv_checkpoint_rec *rec = &v[i];
        memset(rec, 0, sizeof *rec);
        ids[i] = pg_col_i64(r, i, 0);
        rec->checkpoint_id = pg_col_text(a, r, i, 1);
        rec->created_us = pg_col_i64(r, i, 2);
        rec->run_state = pg_col_text(a, r, i, 3);
        rec->events_count = (uint64_t)pg_col_i64(r, i, 4);
        rec->snapshot_size = (uint64_t)pg_col_i64(r, i, 5);
        rec->sha256 = pg_col_text(a, r, i, 6);
    }
    PQclear(r);
    if (!v || !ids)
        return srv_fail(err, SRV_RESOURCE_EXHAUSTED, "out of memory");
    for (int i = 0; full && i < len; i++)
        if (pg_read_strings(c, a, PS_CKPT_WORKERS, ids[i], &v[i].completed, &v[i].n_completed,
                            err))
            return err->code;
    *out = v;
    *n = (size_t)len;
    return SRV_OK;
}

/* A PostgreSQL text[] literal of v: every element quoted, '"' and '\'
 * escaped. NULL when out of memory; the caller frees. */
static char *text_array(char *const *v, size_t n)
{
    pg_sql b = {0};
    pg_sql_add(&b, "{");
    for (size_t i = 0; i < n; i++) {
        pg_sql_add(&b, "%s\"", i ? "," : "");
        for (const char *p = v[i]; *p; p++)
            pg_sql_add(&b, "%s%c", *p == '"' || *p == '\\' ? "\\" : "", *p);
        pg_sql_add(&b, "\"");
    }
    pg_sql_add(&b, "}");
    if (b.failed) {
        free(b.p);
        return NULL;
    }
    return b.p;
}

/* The checkpoint, its completed workers and the run's head in one
 * statement. */
srv_code pg_checkpoint_insert(srv_txn *t, const srv_run_head *run, const srv_checkpoint_rec *c,
                              srv_error *err)
{
    char *workers = text_array(c->completed, c->n_completed);
    if (!workers)
        return srv_fail(err, SRV_RESOURCE_EXHAUSTED, "out of memory");
    pg_params p = {0};
    pg_i64(&p, run->ref);
    pg_text(&p, c->checkpoint_id);
    pg_i64(&p, c->created_us);
    pg_text(&p, c->run_state);
    pg_i64(&p, (int64_t)c->events_count);
    pg_i64(&p, (int64_t)c->snapshot_size);
    pg_text(&p, c->sha256);
    pg_text(&p, workers);
    pg_head_forget(pg_conn_of(t), run->ref); /* its latest checkpoint changes */
    srv_code rc = pg_do(pg_conn_of(t), PS_CKPT_INSERT, &p, "storing a checkpoint", NULL, err);
    free(workers);
    return rc;
}

srv_code pg_checkpoint_delete(srv_txn *t, const srv_run_head *run, const char *checkpoint_id,
                              srv_error *err)
{
    pg_params p = {0};
    pg_i64(&p, run->ref);
    pg_text(&p, checkpoint_id);
    return pg_do(pg_conn_of(t), PS_CKPT_DELETE, &p, "deleting a checkpoint", NULL, err);
}

srv_code pg_checkpoint_get(srv_txn *t, srv_arena *a, const srv_run_head *run,
                           const char *checkpoint_id, srv_checkpoint_rec *out, bool *found,
                           srv_error *err)
{
    pg_conn *c = pg_conn_of(t);
    pg_params p = {0};
    pg_i64(&p, run->ref);
    if (*checkpoint_id)
        pg_text(&p, checkpoint_id);
    PGresult *r = pg_run(c, *checkpoint_id ? PS_CKPT_BY_ID : PS_CKPT_LATEST, &p,
                         "reading a checkpoint", err);
    if (!r)
        return err->code;
    srv_checkpoint_rec *rows;
    size_t n;
    if (read_rows(c, a, r, true, &rows, &n, err))
        return err->code;
    *found = n > 0;
    if (*found)
        *out = rows[0];
    return SRV_OK;
}

srv_code pg_checkpoints_list(srv_txn *t, srv_arena *a, const srv_run_head *run,
                             const char *after, uint32_t limit, bool full,
                             srv_checkpoint_rec **out, size_t *n, srv_error *err)
{
    pg_conn *c = pg_conn_of(t);
    pg_params p = {0};
    pg_i64(&p, run->ref);
    pg_text(&p, after);
    pg_i64(&p, limit);
    PGresult *r = pg_run(c, PS_CKPT_LIST, &p, "listing checkpoints", err);
    if (!r)
        return err->code;
    return read_rows(c, a, r, full, out, n, err);
}

/* ---- pins: rows of the unlogged pins table, each insert or delete
 * committed at once on a pool connection, seen by every replica ---- */

srv_code pg_pin_add(srv_store *st, const char *run_id, const char *checkpoint_id,
                    int64_t expires_us, int64_t *pin, srv_error *err)
{
    pg_store *s = pg_from(st);
    pg_conn *c = pg_take(s, err);
    if (!c)
        return err->code;
    pg_params p = {0};
    pg_text(&p, run_id);
    pg_text(&p, checkpoint_id);
    pg_i64(&p, expires_us);
    PGresult *r = pg_run(c, PS_PIN_INSERT, &p, "pinning a checkpoint", err);
    if (r) {
        *pin = pg_col_i64(r, 0, 0);
        PQclear(r);
    }
    pg_give(s, c);
    return r ? SRV_OK : err->code;
}

srv_code pg_pin_remove(srv_store *st, int64_t pin, srv_error *err)
{
    pg_store *s = pg_from(st);
    pg_conn *c = pg_take(s, err);
    if (!c)
        return err->code;
    pg_params p = {0};
    pg_i64(&p, pin);
    srv_code rc = pg_do(c, PS_PIN_DELETE, &p, "unpinning a checkpoint", NULL, err);
    pg_give(s, c);
    return rc;
}

/* On t's connection. The writer (the cleanup) first locks the
 * checkpoint's row FOR UPDATE, which waits for a pin_add in progress on
 * it to commit (that one holds the row FOR KEY SHARE), and then reads
 * pins as committed at that moment (READ COMMITTED). So either the pin
 * is seen, or pin_add waited for the cleanup and the reader's second
 * read of the checkpoint finds it gone (core/snapshots.c): a download
 * never streams bytes that a cleanup deletes under it, although its
 * chunks are read row by row, not through an open file. */
srv_code pg_pinned(srv_txn *t, const char *run_id, const char *checkpoint_id, int64_t now_us,
                   bool *pinned, srv_error *err)
{
    pg_params p = {0};
    pg_text(&p, run_id);
    pg_text(&p, checkpoint_id);
    if (t->write && pg_do(pg_conn_of(t), PS_CKPT_LOCK, &p, "locking a checkpoint", NULL, err))
        return err->code;
    pg_i64(&p, now_us);
    PGresult *r = pg_run(pg_conn_of(t), PS_PINNED, &p, "reading pins", err);
    if (!r)
        return err->code;
    *pinned = PQntuples(r) > 0;
    PQclear(r);
    return SRV_OK;
}
