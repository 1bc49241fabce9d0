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

/* ---- the writer's locked run heads ----
 *
 * The writer reads a run's row FOR NO KEY UPDATE, and holds that lock
 * until its transaction ends: no other transaction can change the row
 * meanwhile, only this one's own statements. So the head it read is
 * kept for the rest of the transaction and answered from memory, and
 * the writer's own changes keep it true: events_insert sets next_seq,
 * the other statements that change the row (a worker's completion, a
 * checkpoint) forget it. Forgotten too, with every other, at commit,
 * rollback and a rollback to the savepoint (whose row locks PostgreSQL
 * releases with it), and when the session is made again. */

void pg_heads_clear(pg_conn *c)
{
    for (int i = 0; i < c->n_heads; i++) {
        free(c->heads[i].run_id);
        free(c->heads[i].latest_checkpoint_id);
    }
    c->n_heads = 0;
}

void pg_head_forget(pg_conn *c, int64_t ref)
{
    for (int i = 0; i < c->n_heads; i++)
        if (c->heads[i].head.ref == ref) {
            free(c->heads[i].run_id);
            free(c->heads[i].latest_checkpoint_id);
            c->heads[i] = c->heads[--c->n_heads];
            return;
        }
}

static pg_head *head_by_id(pg_conn *c, const char *run_id)
{
    for (int i = 0; i < c->n_heads; i++)
        if (strcmp(c->heads[i].run_id, run_id) == 0)
            return &c->heads[i];
    return NULL;
}

static pg_head *head_by_ref(pg_conn *c, int64_t ref)
{
    for (int i = 0; i < c->n_heads; i++)
        if (c->heads[i].head.ref == ref)
            return &c->heads[i];
    return NULL;
}

/* Remembers a head just read with its row locked (not when out of
 * memory: then the next find reads it again, which costs a round trip
 * and nothing else). */
static void head_keep(pg_conn *c, const srv_run_head *h)
{
    pg_head_forget(c, h->ref); /* a head kept before: this one is newer */
    pg_head *grown = pg_grow(c->heads, c->n_heads, &c->cap_heads, sizeof *grown);
    if (!grown)
        return;
    c->heads = grown;
    pg_head *k = &c->heads[c->n_heads];
    k->run_id = strdup(h->run_id);
    k->latest_checkpoint_id = strdup(h->latest_checkpoint_id);
    if (!k->run_id || !k->latest_checkpoint_id) {
        free(k->run_id);
        free(k->latest_checkpoint_id);
        return;
    }
    k->head = *h;
    k->head.run_id = k->run_id;
    k->head.latest_checkpoint_id = k->latest_checkpoint_id;
    c->n_heads++;
}

void pg_heads_keep(pg_conn *c, const PGresult *r)
{
    srv_arena *a = srv_arena_create();
    for (int i = 0; a && i < PQntuples(r); i++) {
        srv_run_head h;
        read_head(a, r, i, &h);
        if (h.run_id && h.latest_checkpoint_id)
            head_keep(c, &h);
    }
    srv_arena_destroy(a);
}

int64_t pg_head_ref(pg_conn *c, const char *run_id)
{
    const pg_head *k = head_by_id(c, run_id);
    return k ? k->head.ref : 0;
}

/* The writer locks the row it reads (pg.c, PS_RUN_BY_NAME_LOCKED): the
 * head it returns stays true until its transaction ends, whatever other
 * replicas do. */
srv_code pg_run_find(srv_txn *t, srv_arena *a, const char *run_id, srv_run_head *out,
                     bool *found, srv_error *err)
{
    pg_conn *c = pg_conn_of(t);
    const pg_head *k = t->write ? head_by_id(c, run_id) : NULL;
    if (k) {
        *out = k->head;
        out->run_id = srv_arena_strdup(a, k->run_id);
        out->latest_checkpoint_id = srv_arena_strdup(a, k->latest_checkpoint_id);
        if (!out->run_id || !out->latest_checkpoint_id)
            return srv_fail(err, SRV_RESOURCE_EXHAUSTED, "out of memory");
        *found = true;
        return SRV_OK;
    }
    pg_params p = {0};
    pg_text(&p, run_id);
    PGresult *r = pg_run(c, t->write ? PS_RUN_BY_NAME_LOCKED : PS_RUN_BY_NAME, &p,
                         "reading a run", err);
    if (!r)
        return err->code;
    *found = PQntuples(r) > 0;
    if (*found)
        read_head(a, r, 0, out);
    PQclear(r);
    if (*found && t->write && out->run_id && out->latest_checkpoint_id)
        head_keep(c, out);
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

srv_code pg_runs_list(srv_txn *t, srv_arena *a, int64_t after, const char *prefix,
                      uint32_t limit,
                      srv_run_rec **out, size_t *n, srv_error *err)
{
    pg_conn *c = pg_conn_of(t);
    pg_params p = {0};
    pg_i64(&p, after);
    pg_i64(&p, limit);
    pg_text(&p, prefix);
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

/* The batch of events (run->next_seq + i each) and the run's next_seq
 * in one statement. Given the head the writer holds (read with the run's
 * row locked, so no other replica can take its seqs meanwhile), it is
 * held back (pending.c) and sent merged with the appends that follow.
 * Any other head is sent at once: a stale one meets the primary key,
 * ABORTED. */
srv_code pg_events_insert(srv_txn *t, const srv_run_head *run, Cairn__V1__Event *const *events,
                          size_t n, int64_t now_us, srv_error *err)
{
    pg_conn *w = pg_conn_of(t);
    pg_head *k = head_by_ref(w, run->ref);
    if (k && k->head.next_seq != run->next_seq)
        pg_head_forget(w, run->ref), k = NULL; /* not the head it remembers: read it again */
    srv_code rc = pg_defer_events(w, run->ref, run->next_seq, events, n, now_us, err);
    if (!rc && !k)
        rc = pg_flush(w, "appending events", err);
    if (rc)
        pg_head_forget(w, run->ref);
    else if ((k = head_by_ref(w, run->ref)) != NULL)
        k->head.next_seq = run->next_seq + n;
    return rc;
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
    pg_head_forget(pg_conn_of(t), run->ref); /* its completed_count changes */
    PGresult *r = pg_run(pg_conn_of(t), PS_WORKER_SET_COMPLETED, &p, "completing a worker", err);
    if (!r)
        return err->code;
    int64_t changed = PQntuples(r) ? pg_col_i64(r, 0, 0) : 0;
    PQclear(r);
    if (changed != 1)
        return srv_fail(err, SRV_INTERNAL, "store: completing a worker the run does not have");
    return SRV_OK;
}

/* ---- the lifecycle ---- */

srv_code pg_run_delete(srv_txn *t, const srv_run_head *run, srv_error *err)
{
    pg_params p = {0};
    pg_i64(&p, run->ref);
    pg_head_forget(pg_conn_of(t), run->ref);
    return pg_do(pg_conn_of(t), PS_RUN_DELETE, &p, "deleting a run", NULL, err);
}

srv_code pg_run_set_completed(srv_txn *t, const srv_run_head *run, int64_t now_us,
                              srv_error *err)
{
    pg_params p = {0};
    pg_i64(&p, run->ref);
    pg_i64(&p, now_us);
    return pg_do(pg_conn_of(t), PS_RUN_SET_COMPLETED, &p, "recording a run's completion", NULL,
                 err);
}

srv_code pg_runs_completed_before(srv_txn *t, srv_arena *a, int64_t before_us, uint32_t limit,
                                  char ***out, size_t *n, srv_error *err)
{
    pg_params p = {0};
    pg_i64(&p, before_us);
    pg_i64(&p, limit);
    PGresult *r = pg_run(pg_conn_of(t), PS_RUNS_COMPLETED_BEFORE, &p, "listing completed runs",
                         err);
    if (!r)
        return err->code;
    return pg_result_strings(a, r, out, n, err);
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
