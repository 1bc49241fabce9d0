/* PostgreSQL backend: statements and their parameters, errors, and the
 * one place every statement is sent from (call_piped: the writer's
 * pending statements ride in front of its next statement, in one round
 * trip; README.md, "Round trips of the write path"). */
#include "store/pg/pg_int.h"
#include "base/error.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- parameters ---- */

void pg_text(pg_params *p, const char *s)
{
    p->v[p->n] = s ? s : "";
    p->len[p->n] = 0;
    p->fmt[p->n] = 0;
    p->n++;
}

void pg_i64(pg_params *p, int64_t v)
{
    snprintf(p->num[p->n], sizeof p->num[p->n], "%lld", (long long)v);
    pg_text(p, p->num[p->n]);
}

void pg_bytes(pg_params *p, const void *data, size_t len)
{
    p->v[p->n] = len ? (const char *)data : "";
    p->len[p->n] = (int)len;
    p->fmt[p->n] = 1;
    p->n++;
}

void pg_sql_add(pg_sql *b, const char *fmt, ...)
{
    if (b->failed)
        return;
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(b->p ? b->p + b->len : NULL, b->p ? b->cap - b->len : 0, fmt, ap);
        va_end(ap);
        if (n < 0) {
            b->failed = true;
            return;
        }
        if (b->p && b->len + (size_t)n < b->cap) {
            b->len += (size_t)n;
            return;
        }
        size_t cap = b->cap ? b->cap * 2 : 1024;
        while (cap <= b->len + (size_t)n)
            cap *= 2;
        char *p = realloc(b->p, cap);
        if (!p) {
            b->failed = true;
            return;
        }
        b->p = p;
        b->cap = cap;
    }
}

/* ---- errors ---- */

/* A disk that cannot take more comes back later: retry after this. */
enum { DISK_FULL_PUSHBACK_MS = 1000 };

srv_code pg_fail(pg_conn *c, const PGresult *r, const char *what, srv_error *err)
{
    const char *state = r ? PQresultErrorField(r, PG_DIAG_SQLSTATE) : NULL;
    const char *raw = r ? PQresultErrorMessage(r) : NULL;
    if (!raw || !*raw)
        raw = c->pg ? PQerrorMessage(c->pg) : "no connection";
    char msg[256];
    snprintf(msg, sizeof msg, "%s", raw);
    for (size_t n = strlen(msg); n > 0 && (msg[n - 1] == '\n' || msg[n - 1] == ' '); n--)
        msg[n - 1] = '\0';
    for (char *p = msg; *p; p++)
        if (*p == '\n')
            *p = ' ';
    bool lost = !c->pg || PQstatus(c->pg) != CONNECTION_OK;
    if (lost || !state || strncmp(state, "08", 2) == 0 || strcmp(state, "57P01") == 0 ||
        strcmp(state, "57P02") == 0 || strcmp(state, "57P03") == 0 ||
        strcmp(state, "53300") == 0)
        return srv_fail(err, SRV_UNAVAILABLE, "store: %s failed: PostgreSQL unavailable: %s",
                        what, msg);
    if (strcmp(state, "23505") == 0)
        return srv_fail(err, SRV_ABORTED, "store: a concurrent write took the key while %s",
                        what);
    if (strcmp(state, "40001") == 0 || strcmp(state, "40P01") == 0)
        return srv_fail(err, SRV_ABORTED,
                        "store: %s conflicted with a concurrent transaction (%s); retry", what,
                        msg);
    if (strcmp(state, "53100") == 0)
        return srv_fail_pushback(err, SRV_RESOURCE_EXHAUSTED, DISK_FULL_PUSHBACK_MS,
                                 "store: PostgreSQL's disk is full while %s; retry later", what);
    if (strcmp(state, "53200") == 0)
        return srv_fail(err, SRV_RESOURCE_EXHAUSTED, "store: PostgreSQL out of memory while %s",
                        what);
    if (strcmp(state, "XX001") == 0 || strcmp(state, "XX002") == 0)
        return srv_fail(err, SRV_DATA_LOSS, "store: database corrupt while %s: %s", what, msg);
    if (strncmp(state, "23", 2) == 0) /* a constraint the contract names no code for */
        return srv_fail(err, SRV_INTERNAL, "store: %s broke a constraint: %s", what, msg);
    return srv_fail(err, SRV_UNAVAILABLE, "store: %s failed: %s (SQLSTATE %s)", what, msg, state);
}

/* ---- statements ---- */

static bool result_ok(const PGresult *r)
{
    ExecStatusType s = PQresultStatus(r);
    return s == PGRES_COMMAND_OK || s == PGRES_TUPLES_OK;
}

/* One statement to send: prepared statement id, or SQL text (id < 0)
 * with its parameters; results in binary. */
typedef struct call {
    int id;
    const char *sql;
    int n;
    const char *const *v;
    const int *len;
    const int *fmt;
} call;

static void stmt_name(char *name, size_t cap, int id)
{
    snprintf(name, cap, "s%d", id);
}

/* With nothing pending: the statement alone, as always. */
static PGresult *call_now(pg_conn *c, const call *q, const char *what, srv_error *err)
{
    PGresult *r;
    if (q->id >= 0) {
        char name[16];
        stmt_name(name, sizeof name, q->id);
        if (!c->prepared[q->id]) {
            r = PQprepare(c->pg, name, pg_sql_text[q->id], 0, NULL);
            if (!r || !result_ok(r)) {
                pg_fail(c, r, "preparing a statement", err);
                PQclear(r);
                return NULL;
            }
            PQclear(r);
            c->prepared[q->id] = true;
        }
        r = PQexecPrepared(c->pg, name, q->n, q->v, q->len, q->fmt, 1);
    } else {
        r = PQexecParams(c->pg, q->sql, q->n, NULL, q->v, q->len, q->fmt, 1);
    }
    if (!r || !result_ok(r)) {
        pg_fail(c, r, what, err);
        PQclear(r);
        return NULL;
    }
    return r;
}

/* The next result of a pipeline, skipping the NULL that ends each
 * statement's results; NULL when the connection is gone. */
static PGresult *pipe_next(pg_conn *c)
{
    for (int i = 0; i < 2; i++) {
        PGresult *r = PQgetResult(c->pg);
        if (r)
            return r;
        if (PQstatus(c->pg) != CONNECTION_OK)
            return NULL;
    }
    return NULL;
}

/* Drops a session whose pipeline went wrong half way (results may still
 * be owed, or statements held back were lost), and its transaction with
 * it (pg_txn_active says so). A lost one is made again before its next
 * use (conn_ready; PQreset leaves pipeline mode). */
static void drop_session(pg_conn *c)
{
    if (PQstatus(c->pg) != CONNECTION_OK)
        return;
    srv_error ignored;
    PQreset(c->pg);
    if (PQstatus(c->pg) == CONNECTION_OK)
        pg_conn_setup(c, &ignored);
}

/* What each result of a pipeline answers: a PREPARE, a pending
 * statement, or qs[i]. */
typedef struct slot {
    int prepare;                  /* statement id prepared, or -1 */
    int q;                        /* index in qs, or -1 */
    const char *what;
} slot;

/* Sends q (a PREPARE first when the session lacks it); records the
 * results it owes in slots, the last one for qs[qi] (-1: none). */
static bool send_one(pg_conn *c, const call *q, const char *what, int qi, bool *preparing,
                     slot *slots, int *n)
{
    if (q->id < 0) {
        slots[(*n)++] = (slot){-1, qi, what};
        return PQsendQueryParams(c->pg, q->sql, q->n, NULL, q->v, q->len, q->fmt, 1);
    }
    char name[16];
    stmt_name(name, sizeof name, q->id);
    if (!c->prepared[q->id] && !preparing[q->id]) {
        preparing[q->id] = true;
        slots[(*n)++] = (slot){q->id, -1, "preparing a statement"};
        if (!PQsendPrepare(c->pg, name, pg_sql_text[q->id], 0, NULL))
            return false;
    }
    slots[(*n)++] = (slot){-1, qi, what};
    return PQsendQueryPrepared(c->pg, name, q->n, q->v, q->len, q->fmt, 1);
}

/* The pending statements (merged: pending.c), then qs[0..nq), then a
 * sync: one round trip (libpq pipeline mode). The first error of any of
 * them is reported as what failed, named by the statement that failed:
 * everything after it is skipped by the server up to the sync, as a
 * failed statement skips the rest of its transaction anyway. Fills
 * out[i] with qs[i]'s result (the caller PQclears them); returns SRV_OK,
 * or the error with every out[i] NULL. */
static srv_code call_piped(pg_conn *c, const call *qs, int nq, PGresult **out,
                           const char *what, srv_error *err)
{
    for (int i = 0; i < nq; i++)
        out[i] = NULL;
    pg_stmt *ps = NULL;
    int np = 0;
    if (pg_pending_take(c, &ps, &np, err)) {
        drop_session(c); /* the held-back writes are gone: so must be their transaction */
        return err->code;
    }
    int cap = 2 * (np + nq);
    slot *slots = cap ? calloc((size_t)cap, sizeof *slots) : NULL;
    bool preparing[PG_N_STMT] = {0};
    int ns = 0;
    bool sent = (!cap || slots) && PQenterPipelineMode(c->pg);
    for (int i = 0; sent && i < np; i++) {
        const pg_params *p = &ps[i].p;
        const call q = {ps[i].id, ps[i].sql, p->n, p->v, p->len, p->fmt};
        sent = send_one(c, &q, ps[i].what, -1, preparing, slots, &ns);
    }
    for (int i = 0; sent && i < nq; i++)
        sent = send_one(c, &qs[i], what, i, preparing, slots, &ns);
    if (sent)
        sent = PQpipelineSync(c->pg);

    /* Every result up to the sync, in the order sent. */
    PGresult *first_bad = NULL;
    const char *bad_what = what;
    bool synced = false;
    for (int i = 0; sent && !synced; i++) {
        PGresult *r = pipe_next(c);
        if (!r)
            break;
        ExecStatusType st = PQresultStatus(r);
        const slot *sl = i < ns ? &slots[i] : NULL;
        if (st == PGRES_PIPELINE_SYNC) {
            synced = true;
            PQclear(r);
        } else if (!result_ok(r)) {
            if (!first_bad && st != PGRES_PIPELINE_ABORTED) {
                first_bad = r;
                bad_what = sl ? sl->what : what;
            } else {
                PQclear(r);
            }
        } else if (sl && sl->prepare >= 0) {
            c->prepared[sl->prepare] = true;
            PQclear(r);
        } else if (sl && sl->q >= 0) {
            out[sl->q] = r;
        } else {
            PQclear(r);
        }
    }
    bool missing = false;
    for (int i = 0; i < nq; i++)
        missing |= !out[i];
    srv_code rc = SRV_OK;
    if (first_bad || !synced || missing) {
        rc = pg_fail(c, first_bad, bad_what, err);
        PQclear(first_bad);
        for (int i = 0; i < nq; i++) {
            PQclear(out[i]);
            out[i] = NULL;
        }
    }
    if (synced)
        PQexitPipelineMode(c->pg);
    else
        drop_session(c);
    free(slots);
    pg_stmts_free(ps, np);
    return rc;
}

/* Every statement of the writer and the pool goes through here: pending
 * statements go out in front of it. */
static PGresult *conn_call(pg_conn *c, const call *q, const char *what, srv_error *err)
{
    if (!c->n_pending)
        return call_now(c, q, what, err);
    PGresult *r = NULL;
    return call_piped(c, q, 1, &r, what, err) ? NULL : r;
}

srv_code pg_flush(pg_conn *c, const char *what, srv_error *err)
{
    if (!c->n_pending)
        return SRV_OK;
    return call_piped(c, NULL, 0, NULL, what, err);
}

srv_code pg_run_many(pg_conn *c, const pg_stmt_id *ids, const pg_params *const *p, int n,
                     PGresult **out, const char *what, srv_error *err)
{
    call qs[8];
    if (n > 8)
        return srv_fail(err, SRV_INTERNAL, "store: too many statements in one round trip");
    for (int i = 0; i < n; i++)
        qs[i] = (call){(int)ids[i], NULL, p[i]->n, p[i]->v, p[i]->len, p[i]->fmt};
    return call_piped(c, qs, n, out, what, err);
}

PGresult *pg_run(pg_conn *c, pg_stmt_id id, const pg_params *p, const char *what,
                 srv_error *err)
{
    static const pg_params none = {0};
    if (!p)
        p = &none;
    const call q = {(int)id, NULL, p->n, p->v, p->len, p->fmt};
    return conn_call(c, &q, what, err);
}

srv_code pg_do(pg_conn *c, pg_stmt_id id, const pg_params *p, const char *what, int64_t *rows,
               srv_error *err)
{
    PGresult *r = pg_run(c, id, p, what, err);
    if (!r)
        return err->code;
    if (rows)
        *rows = strtoll(PQcmdTuples(r), NULL, 10);
    PQclear(r);
    return SRV_OK;
}

PGresult *pg_query(pg_conn *c, const char *sql, const char *what, srv_error *err)
{
    const call q = {-1, sql, 0, NULL, NULL, NULL};
    return conn_call(c, &q, what, err);
}

srv_code pg_do_sql(pg_conn *c, const char *sql, int n, const char *const *v, const int *len,
                   const int *fmt, const char *what, srv_error *err)
{
    const call q = {-1, sql, n, v, len, fmt};
    PGresult *r = conn_call(c, &q, what, err);
    if (!r)
        return err->code;
    PQclear(r);
    return SRV_OK;
}

/* SQL text may hold several statements here, which a pipeline cannot
 * carry: anything queued goes first, on its own. */
srv_code pg_exec(pg_conn *c, const char *sql, const char *what, srv_error *err)
{
    if (pg_flush(c, what, err))
        return err->code;
    PGresult *r = PQexec(c->pg, sql);
    srv_code rc = r && result_ok(r) ? SRV_OK : pg_fail(c, r, what, err);
    PQclear(r);
    return rc;
}

int64_t pg_col_i64(const PGresult *r, int row, int col)
{
    const unsigned char *v = (const unsigned char *)PQgetvalue(r, row, col);
    int len = PQgetlength(r, row, col);
    if (PQgetisnull(r, row, col) || (len != 8 && len != 4))
        return 0;
    uint64_t x = 0;
    for (int i = 0; i < len; i++)
        x = x << 8 | v[i];
    return len == 8 ? (int64_t)x : (int64_t)(int32_t)(uint32_t)x;
}

const char *pg_col_text(srv_arena *a, const PGresult *r, int row, int col)
{
    return srv_arena_strndup(a, PQgetvalue(r, row, col), (size_t)PQgetlength(r, row, col));
}

srv_code pg_read_strings(pg_conn *c, srv_arena *a, pg_stmt_id id, int64_t key, char ***out,
                         size_t *n, srv_error *err)
{
    pg_params p = {0};
    pg_i64(&p, key);
    PGresult *r = pg_run(c, id, &p, "reading a list", err);
    if (!r)
        return err->code;
    return pg_result_strings(a, r, out, n, err);
}

srv_code pg_result_strings(srv_arena *a, PGresult *r, char ***out, size_t *n, srv_error *err)
{
    int rows = PQntuples(r);
    char **v = rows ? srv_arena_alloc(a, (size_t)rows * sizeof *v) : NULL;
    srv_code rc = SRV_OK;
    for (int i = 0; i < rows && !rc; i++)
        if (!v || !(v[i] = (char *)pg_col_text(a, r, i, 0)))
            rc = srv_fail(err, SRV_RESOURCE_EXHAUSTED, "out of memory");
    PQclear(r);
    if (rc)
        return rc;
    *out = v;
    *n = (size_t)rows;
    return SRV_OK;
}
