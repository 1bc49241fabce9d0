/* PostgreSQL backend: runs, the event log and worker completions. */
#include "store/pg/pg_int.h"
#include "base/clock.h"
#include "base/limits.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Reads row i of a result selected with RUN_COLUMNS. */
static void read_head(srv_arena *a, const PGresult *r, int i, srv_run_head *h)
{
    h->ref = pg_col_i64(r, i, 0);
    h->run_id = pg_col_text(a, r, i, 1);
    h->created_us = pg_col_i64(r, i, 2);
    h->next_seq = (uint64_t)pg_col_i64(r, i, 3);
    h->n_workers = (uint32_t)pg_col_i64(r, i, 4);
    h->n_completed = (uint32_t)pg_col_i64(r, i, 5);
    h->latest_checkpoint_id = pg_col_text(a, r, i, 6);
    h->checkpoint_events = (uint64_t)pg_col_i64(r, i, 7);
    h->latest_checkpoint_us = pg_col_i64(r, i, 8);
}

/* The writer locks the row it reads (pg.c, PS_RUN_BY_NAME_LOCKED): the
 * head it returns stays true until its transaction ends, whatever other
 * replicas do. */
srv_code pg_run_find(srv_txn *t, srv_arena *a, const char *run_id, srv_run_head *out,
                     bool *found, srv_error *err)
{
    pg_params p = {0};
    pg_text(&p, run_id);
    PGresult *r = pg_run(pg_conn_of(t), t->write ? PS_RUN_BY_NAME_LOCKED : PS_RUN_BY_NAME, &p,
                         "reading a run", err);
    if (!r)
        return err->code;
    *found = PQntuples(r) > 0;
    if (*found)
        read_head(a, r, 0, out);
    PQclear(r);
    return SRV_OK;
}

static srv_code read_labels(pg_conn *c, srv_arena *a, int64_t run, srv_run_rec *out,
                            srv_error *err)
{
    pg_params p = {0};
    pg_i64(&p, run);
    PGresult *r = pg_run(c, PS_LABELS, &p, "reading labels", err);
    if (!r)
        return err->code;
    int n = PQntuples(r);
    srv_label *v = n ? srv_arena_alloc(a, (size_t)n * sizeof *v) : NULL;
    for (int i = 0; v && i < n; i++)
        v[i] = (srv_label){pg_col_text(a, r, i, 0), pg_col_text(a, r, i, 1)};
    PQclear(r);
    if (n && !v)
        return srv_fail(err, SRV_RESOURCE_EXHAUSTED, "out of memory");
    out->labels = v;
    out->n_labels = (size_t)n;
    return SRV_OK;
}

static srv_code read_definition(pg_conn *c, srv_arena *a, srv_run_rec *rec, srv_error *err)
{
    int64_t ref = rec->head.ref;
    if (pg_read_strings(c, a, PS_WORKERS, ref, &rec->workers, &rec->n_workers, err) ||
        pg_read_strings(c, a, PS_COMPLETED, ref, &rec->completed, &rec->n_completed, err))
        return err->code;
    return read_labels(c, a, ref, rec, err);
}

srv_code pg_run_get(srv_txn *t, srv_arena *a, const char *run_id, srv_run_rec *out,
                    bool *found, srv_error *err)
{
    memset(out, 0, sizeof *out);
    srv_code rc = pg_run_find(t, a, run_id, &out->head, found, err);
    if (rc || !*found)
        return rc;
    return read_definition(pg_conn_of(t), a, out, err);
}

srv_code pg_runs_list(srv_txn *t, srv_arena *a, int64_t after, uint32_t limit,
                      srv_run_rec **out, size_t *n, srv_error *err)
{
    pg_conn *c = pg_conn_of(t);
    pg_params p = {0};
    pg_i64(&p, after);
    pg_i64(&p, limit);
    PGresult *r = pg_run(c, PS_RUNS_AFTER, &p, "listing runs", err);
    if (!r)
        return err->code;
    int len = PQntuples(r);
    srv_run_rec *rows = len ? srv_arena_alloc(a, (size_t)len * sizeof *rows) : NULL;
    for (int i = 0; rows && i < len; i++) {
        memset(&rows[i], 0, sizeof rows[i]);
        read_head(a, r, i, &rows[i].head);
    }
    PQclear(r);
    if (len && !rows)
        return srv_fail(err, SRV_RESOURCE_EXHAUSTED, "out of memory");
    for (int i = 0; i < len; i++)
        if (read_definition(c, a, &rows[i], err))
            return err->code;
    *out = rows;
    *n = (size_t)len;
    return SRV_OK;
}

/* ---- multi-row inserts ---- */

/* Inserts rows [0, n) of a table in statements of PG_ROWS_PER_INSERT
 * rows: `head` then one "(...)" per row, whose text row() writes (with
 * parameters numbered from *next, filled through add()). The first
 * `shared` parameters are the same for every statement. */
typedef struct multi {
    const char *head;
    int shared;
    int per_row;
    const char *what;
    /* Writes row i's tuple text using parameter numbers from base, and
     * its per_row parameters into v/len/fmt. */
    void (*row)(const void *ctx, size_t i, int base, pg_sql *sql, const char **v, int *len,
                int *fmt);
    const void *ctx;
} multi;

static srv_code insert_rows(pg_conn *c, const multi *m, const char *const *shared_v, size_t n,
                            srv_error *err)
{
    size_t cap = (size_t)m->shared + (size_t)m->per_row * PG_ROWS_PER_INSERT;
    const char **v = calloc(cap, sizeof *v);
    int *len = calloc(cap, sizeof *len), *fmt = calloc(cap, sizeof *fmt);
    srv_code rc = v && len && fmt ? SRV_OK
                                  : srv_fail(err, SRV_RESOURCE_EXHAUSTED, "out of memory");
    for (size_t start = 0; !rc && start < n; start += PG_ROWS_PER_INSERT) {
        size_t rows = n - start < PG_ROWS_PER_INSERT ? n - start : PG_ROWS_PER_INSERT;
        pg_sql sql = {0};
        pg_sql_add(&sql, "%s", m->head);
        for (int k = 0; k < m->shared; k++)
            v[k] = shared_v[k], len[k] = 0, fmt[k] = 0;
        int np = m->shared;
        for (size_t i = 0; i < rows; i++) {
            pg_sql_add(&sql, "%s", i ? ", " : " ");
            m->row(m->ctx, start + i, np + 1, &sql, v + np, len + np, fmt + np);
            np += m->per_row;
        }
        rc = sql.failed ? srv_fail(err, SRV_RESOURCE_EXHAUSTED, "out of memory")
                        : pg_do_sql(c, sql.p, np, v, len, fmt, m->what, err);
        free(sql.p);
    }
    free(v);
    free(len);
    free(fmt);
    return rc;
}

static void worker_row(const void *ctx, size_t i, int base, pg_sql *sql, const char **v,
                       int *len, int *fmt)
{
    char *const *workers = ctx;
    pg_sql_add(sql, "($1, %zu, $%d)", i, base);
    v[0] = workers[i];
    len[0] = fmt[0] = 0;
}

static void label_row(const void *ctx, size_t i, int base, pg_sql *sql, const char **v,
                      int *len, int *fmt)
{
    const srv_label *labels = ctx;
    pg_sql_add(sql, "($1, $%d, $%d)", base, base + 1);
    v[0] = labels[i].key;
    v[1] = labels[i].value;
    len[0] = len[1] = fmt[0] = fmt[1] = 0;
}

srv_code pg_run_insert(srv_txn *t, const char *run_id, char *const *workers, size_t n_workers,
                       const srv_label *labels, size_t n_labels, int64_t now_us, int64_t *ref,
                       srv_error *err)
{
    pg_conn *w = pg_conn_of(t);
    pg_params p = {0};
    pg_text(&p, run_id);
    pg_i64(&p, now_us);
    pg_i64(&p, (int64_t)n_workers);
    PGresult *r = pg_run(w, PS_RUN_INSERT, &p, "creating a run", err);
    if (!r)
        return err->code;
    int64_t id = pg_col_i64(r, 0, 0);
    PQclear(r);
    char idtext[24];
    snprintf(idtext, sizeof idtext, "%lld", (long long)id);
    const char *shared[] = {idtext};
    const multi wm = {"INSERT INTO run_workers (run, idx, worker_id) VALUES", 1, 1,
                      "storing workers", worker_row, workers};
    const multi lm = {"INSERT INTO run_labels (run, key, value) VALUES", 1, 2,
                      "storing labels", label_row, labels};
    if (insert_rows(w, &wm, shared, n_workers, err) ||
        insert_rows(w, &lm, shared, n_labels, err))
        return err->code;
    *ref = id;
    return SRV_OK;
}

/* ---- events ---- */

typedef struct event_rows {
    Cairn__V1__Event *const *events;
    uint64_t first_seq;
    char (*seqs)[24];
} event_rows;

static void event_row(const void *ctx, size_t i, int base, pg_sql *sql, const char **v,
                      int *len, int *fmt)
{
    const event_rows *e = ctx;
    const Cairn__V1__Event *ev = e->events[i];
    pg_sql_add(sql, "($1, $%d, $%d, $%d, $%d, $2)", base, base + 1, base + 2, base + 3);
    snprintf(e->seqs[i], sizeof e->seqs[i], "%llu", (unsigned long long)(e->first_seq + i));
    v[0] = e->seqs[i];
    v[1] = ev->type ? ev->type : "";
    v[2] = ev->worker_id ? ev->worker_id : "";
    v[3] = ev->payload.len ? (const char *)ev->payload.data : "";
    len[0] = len[1] = len[2] = 0;
    len[3] = (int)ev->payload.len;
    fmt[0] = fmt[1] = fmt[2] = 0;
    fmt[3] = 1;
}

/* One multi-row INSERT for the batch of events (run->next_seq + i each),
 * then the run's next_seq. Seqs come from the head the writer read with
 * the run's row locked, so no other replica can take them meanwhile; a
 * stale head meets the primary key (ABORTED). */
srv_code pg_events_insert(srv_txn *t, const srv_run_head *run, Cairn__V1__Event *const *events,
                          size_t n, int64_t now_us, srv_error *err)
{
    pg_conn *w = pg_conn_of(t);
    char ref[24], now[24];
    snprintf(ref, sizeof ref, "%lld", (long long)run->ref);
    snprintf(now, sizeof now, "%lld", (long long)now_us);
    const char *shared[] = {ref, now};
    event_rows e = {events, run->next_seq, calloc(n ? n : 1, sizeof *e.seqs)};
    if (!e.seqs)
        return srv_fail(err, SRV_RESOURCE_EXHAUSTED, "out of memory");
    const multi m = {"INSERT INTO events (run, seq, type, worker_id, payload, created_us) VALUES",
                     2, 4, "appending events", event_row, &e};
    srv_code rc = insert_rows(w, &m, shared, n, err);
    free(e.seqs);
    if (rc)
        return rc;
    pg_params p = {0};
    pg_i64(&p, (int64_t)(run->next_seq + n));
    pg_i64(&p, run->ref);
    /* The announcement goes out when (and if) the transaction commits. */
    return pg_do_sql(w,
                     "UPDATE runs SET next_seq = $1 WHERE id = $2 RETURNING "
                     "pg_notify('" PG_CHANNEL "', ($1 - 1)::text || ' ' || run_id)",
                     p.n, p.v, p.len, p.fmt, "appending events", err);
}

srv_code pg_events_read(srv_txn *t, srv_arena *a, const srv_run_head *run, uint64_t from_seq,
                        uint32_t max_events, size_t max_bytes, Cairn__V1__Event ***out,
                        size_t *n, srv_error *err)
{
    pg_params p = {0};
    pg_i64(&p, run->ref);
    /* int8 is signed: a from_seq past INT64_MAX is past every seq. */
    pg_i64(&p, from_seq > INT64_MAX ? INT64_MAX : (int64_t)from_seq);
    pg_i64(&p, max_events);
    pg_i64(&p, SRV_EVENT_COST);
    pg_i64(&p, max_bytes > INT64_MAX ? INT64_MAX : (int64_t)max_bytes);
    PGresult *r = pg_run(pg_conn_of(t), PS_EVENTS_FROM, &p, "reading events", err);
    if (!r)
        return err->code;
    int rows = PQntuples(r);
    Cairn__V1__Event **v = srv_arena_alloc(a, (size_t)(rows ? rows : 1) * sizeof *v);
    srv_code rc = v ? SRV_OK : srv_fail(err, SRV_RESOURCE_EXHAUSTED, "out of memory");
    for (int i = 0; !rc && i < rows; i++) {
        Cairn__V1__Event *ev = srv_arena_alloc(a, sizeof *ev);
        if (!ev) {
            rc = srv_fail(err, SRV_RESOURCE_EXHAUSTED, "out of memory");
            break;
        }
        cairn__v1__event__init(ev);
        ev->seq = (uint64_t)pg_col_i64(r, i, 0);
        ev->run_id = (char *)run->run_id;
        ev->type = (char *)pg_col_text(a, r, i, 1);
        ev->worker_id = (char *)pg_col_text(a, r, i, 2);
        ev->payload.len = (size_t)PQgetlength(r, i, 3);
        ev->payload.data = srv_arena_memdup(a, PQgetvalue(r, i, 3), ev->payload.len);
        char buf[32];
        ev->created_at = srv_arena_strdup(a, srv_format_time(buf, pg_col_i64(r, i, 4)));
        v[i] = ev;
    }
    PQclear(r);
    if (rc)
        return rc;
    *out = v;
    *n = (size_t)rows;
    return SRV_OK;
}

/* ---- workers ---- */

srv_code pg_worker_get(srv_txn *t, const srv_run_head *run, const char *worker_id,
                       bool *is_worker, uint64_t *completed_seq, srv_error *err)
{
    pg_params p = {0};
    pg_i64(&p, run->ref);
    pg_text(&p, worker_id);
    PGresult *r = pg_run(pg_conn_of(t), PS_WORKER_SEQ, &p, "reading a worker", err);
    if (!r)
        return err->code;
    *is_worker = PQntuples(r) > 0;
    *completed_seq = *is_worker ? (uint64_t)pg_col_i64(r, 0, 0) : 0;
    PQclear(r);
    return SRV_OK;
}

srv_code pg_worker_complete(srv_txn *t, const srv_run_head *run, const char *worker_id,
                            uint64_t seq, srv_error *err)
{
    pg_params p = {0};
    pg_i64(&p, run->ref);
    pg_text(&p, worker_id);
    pg_i64(&p, (int64_t)seq);
    PGresult *r = pg_run(pg_conn_of(t), PS_WORKER_SET_COMPLETED, &p, "completing a worker", err);
    if (!r)
        return err->code;
    int64_t changed = PQntuples(r) ? pg_col_i64(r, 0, 0) : 0;
    PQclear(r);
    if (changed != 1)
        return srv_fail(err, SRV_INTERNAL, "store: completing a worker the run does not have");
    return SRV_OK;
}

srv_code pg_completions(srv_txn *t, srv_arena *a, const srv_run_head *run,
                        srv_completion **out, size_t *n, srv_error *err)
{
    pg_params p = {0};
    pg_i64(&p, run->ref);
    PGresult *r = pg_run(pg_conn_of(t), PS_COMPLETIONS, &p, "reading completions", err);
    if (!r)
        return err->code;
    int rows = PQntuples(r);
    srv_completion *v = rows ? srv_arena_alloc(a, (size_t)rows * sizeof *v) : NULL;
    for (int i = 0; v && i < rows; i++)
        v[i] = (srv_completion){pg_col_text(a, r, i, 0), (uint64_t)pg_col_i64(r, i, 1)};
    PQclear(r);
    if (rows && !v)
        return srv_fail(err, SRV_RESOURCE_EXHAUSTED, "out of memory");
    *out = v;
    *n = (size_t)rows;
    return SRV_OK;
}
