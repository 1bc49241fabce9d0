/* PostgreSQL backend: what the writer holds back until its next round
 * trip (README.md, "Round trips of the write path"). Control statements
 * return nothing the ledger needs; the events and the idempotency
 * records of an append return nothing either (their seqs come from the
 * run's locked head), so they wait too, as the elements of the arrays
 * they will be sent as. When they go, the writes between two control
 * statements are merged: the events in one statement, the records in
 * one statement. A batch of appends
 * then costs its prefetch, and at commit one round trip carrying two
 * statements and the COMMIT, whatever its size. */
#include "store/pg/pg_int.h"

#include <stdlib.h>
#include <string.h>

/* Writes held back beyond this many bytes are sent at once, so a batch
 * of large appends never holds more than this in memory twice. */
#define PG_PENDING_MAX_BYTES (8u << 20)

/* PostgreSQL's binary array format (array_recv), one dimension. */
enum { OID_BYTEA = 17, OID_INT8 = 20, OID_TEXT = 25 };

static bool buf_grow(pg_buf *b, size_t more)
{
    if (b->len + more <= b->cap)
        return true;
    size_t cap = b->cap ? b->cap * 2 : 256;
    while (cap < b->len + more)
        cap *= 2;
    uint8_t *p = realloc(b->p, cap);
    if (!p)
        return false;
    b->p = p;
    b->cap = cap;
    return true;
}

static void put_u32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

/* One array element: its length, then its bytes. */
static bool buf_elem(pg_buf *b, const void *data, size_t len)
{
    if (len > INT32_MAX || !buf_grow(b, 4 + len))
        return false;
    put_u32(b->p + b->len, (uint32_t)len);
    if (len)
        memcpy(b->p + b->len + 4, data, len);
    b->len += 4 + len;
    return true;
}

static bool buf_i64(pg_buf *b, int64_t v)
{
    uint8_t x[8];
    for (int i = 0; i < 8; i++)
        x[i] = (uint8_t)((uint64_t)v >> (56 - 8 * i));
    return buf_elem(b, x, 8);
}

/* A whole array of n elements of elem_oid from their encoded elements;
 * malloc'ed, its size in *len. */
static uint8_t *array_of(const pg_buf *elems, size_t n, uint32_t elem_oid, int *len)
{
    size_t total = (n ? 20 : 12) + elems->len;
    if (total > INT32_MAX)
        return NULL;
    uint8_t *b = malloc(total);
    if (!b)
        return NULL;
    put_u32(b, n ? 1 : 0); /* dimensions */
    put_u32(b + 4, 0);     /* no NULLs */
    put_u32(b + 8, elem_oid);
    size_t at = 12;
    if (n) {
        put_u32(b + 12, (uint32_t)n);
        put_u32(b + 16, 1); /* lower bound */
        at = 20;
    }
    if (elems->len)
        memcpy(b + at, elems->p, elems->len);
    *len = (int)total;
    return b;
}

bool pg_text_array(pg_buf *b, const char *const *v, size_t n, pg_params *p)
{
    pg_buf elems = {0};
    bool ok = true;
    for (size_t i = 0; ok && i < n; i++)
        ok = buf_elem(&elems, v[i], strlen(v[i]));
    int len = 0;
    uint8_t *a = ok ? array_of(&elems, n, OID_TEXT, &len) : NULL;
    free(elems.p);
    if (!a)
        return false;
    free(b->p);
    *b = (pg_buf){a, (size_t)len, (size_t)len};
    pg_bytes(p, a, (size_t)len);
    return true;
}

void *pg_grow(void *v, int n, int *cap, size_t size)
{
    if (n < *cap)
        return v;
    int ncap = *cap ? *cap * 2 : 16;
    void *p = realloc(v, (size_t)ncap * size);
    if (p)
        *cap = ncap;
    return p;
}

/* ---- the list ---- */

static void entry_free(pg_pending *e)
{
    for (int i = 0; i < 4; i++)
        free(e->cols[i].p);
}

static pg_pending *entry_new(pg_conn *c, pg_pending_kind kind)
{
    pg_pending *grown = pg_grow(c->pending, c->n_pending, &c->cap_pending, sizeof *grown);
    if (!grown)
        return NULL;
    c->pending = grown;
    pg_pending *e = &c->pending[c->n_pending++];
    memset(e, 0, sizeof *e);
    e->kind = kind;
    return e;
}

void pg_pending_drop(pg_conn *c, int from)
{
    for (int i = from; i < c->n_pending; i++)
        entry_free(&c->pending[i]);
    if (from < c->n_pending)
        c->n_pending = from;
    if (c->savepoint_at >= c->n_pending)
        c->savepoint_at = -1;
    if (!c->n_pending) {
        c->pending_bytes = 0;
        c->begin_queued = false;
    }
}

void pg_pending_remove(pg_conn *c, int i)
{
    entry_free(&c->pending[i]);
    memmove(&c->pending[i], &c->pending[i + 1],
            (size_t)(c->n_pending - i - 1) * sizeof c->pending[0]);
    c->n_pending--;
}

bool pg_pending_writes(const pg_conn *c)
{
    for (int i = 0; i < c->n_pending; i++)
        if (c->pending[i].kind != PG_PENDING_SQL)
            return true;
    return false;
}

srv_code pg_queue(pg_conn *c, const char *sql, srv_error *err)
{
    pg_pending *e = entry_new(c, PG_PENDING_SQL);
    if (!e)
        return srv_fail(err, SRV_RESOURCE_EXHAUSTED, "out of memory");
    e->sql = sql;
    return SRV_OK;
}

/* A write just held back: sent at once when the writes held back grew
 * past PG_PENDING_MAX_BYTES. */
static srv_code held(pg_conn *c, size_t bytes, const char *what, srv_error *err)
{
    c->pending_bytes += bytes;
    return c->pending_bytes > PG_PENDING_MAX_BYTES ? pg_flush(c, what, err) : SRV_OK;
}

srv_code pg_defer_events(pg_conn *c, int64_t ref, uint64_t first_seq,
                         Cairn__V1__Event *const *events, size_t n, int64_t now_us,
                         srv_error *err)
{
    pg_pending *e = entry_new(c, PG_PENDING_EVENTS);
    if (!e)
        return srv_fail(err, SRV_RESOURCE_EXHAUSTED, "out of memory");
    e->run_ref = ref;
    e->first_seq = first_seq;
    e->n = n;
    e->now_us = now_us;
    bool ok = true;
    for (size_t i = 0; ok && i < n; i++) {
        const Cairn__V1__Event *ev = events[i];
        const char *type = ev->type ? ev->type : "", *worker = ev->worker_id ? ev->worker_id : "";
        ok = buf_elem(&e->cols[0], type, strlen(type)) &&
             buf_elem(&e->cols[1], worker, strlen(worker)) &&
             buf_elem(&e->cols[2], ev->payload.data, ev->payload.len);
    }
    if (!ok) {
        pg_pending_drop(c, c->n_pending - 1);
        return srv_fail(err, SRV_RESOURCE_EXHAUSTED, "out of memory");
    }
    return held(c, e->cols[0].len + e->cols[1].len + e->cols[2].len, "appending events", err);
}

srv_code pg_defer_dedup(pg_conn *c, int64_t ref, const srv_dedup_key *k,
                        const srv_dedup_record *rec, int64_t now_us, srv_error *err)
{
    pg_pending *e = entry_new(c, PG_PENDING_DEDUP);
    if (!e)
        return srv_fail(err, SRV_RESOURCE_EXHAUSTED, "out of memory");
    e->run_ref = ref;
    e->now_us = now_us;
    if (!buf_elem(&e->cols[0], k->method, strlen(k->method)) ||
        !buf_elem(&e->cols[1], k->key, strlen(k->key)) ||
        !buf_elem(&e->cols[2], rec->fingerprint, 32) ||
        !buf_elem(&e->cols[3], rec->response, rec->response_len)) {
        pg_pending_drop(c, c->n_pending - 1);
        return srv_fail(err, SRV_RESOURCE_EXHAUSTED, "out of memory");
    }
    return held(c, e->cols[1].len + e->cols[3].len + 64, "recording an idempotency key", err);
}

/* ---- merging ---- */

void pg_stmts_free(pg_stmt *s, int n)
{
    for (int i = 0; s && i < n; i++)
        for (int k = 0; k < 6; k++)
            free(s[i].owned[k]);
    free(s);
}

/* Adds array param built from elems to s (owned). */
static bool add_array(pg_stmt *s, const pg_buf *elems, size_t n, uint32_t oid)
{
    int len = 0;
    uint8_t *a = array_of(elems, n, oid, &len);
    if (!a)
        return false;
    for (int k = 0; k < 6; k++)
        if (!s->owned[k]) {
            s->owned[k] = a;
            break;
        }
    pg_bytes(&s->p, a, (size_t)len);
    return true;
}

static bool append_buf(pg_buf *to, const pg_buf *from)
{
    if (!from->len)
        return true;
    if (!buf_grow(to, from->len))
        return false;
    memcpy(to->p + to->len, from->p, from->len);
    to->len += from->len;
    return true;
}

static void bufs_free(pg_buf *b, int n)
{
    for (int i = 0; i < n; i++)
        free(b[i].p);
}

/* The events entries of [at, to) made at the time of entry at, of
 * whatever runs, as one statement; marks them done. */
static bool merge_events(pg_conn *c, int at, int to, bool *done, pg_stmt *s)
{
    const int64_t now_us = c->pending[at].now_us;
    pg_buf cols[5] = {{0}}; /* runs, seqs, types, workers, payloads */
    size_t n = 0;
    bool ok = true;
    for (int i = at; ok && i < to; i++) {
        const pg_pending *e = &c->pending[i];
        if (done[i] || e->kind != PG_PENDING_EVENTS || e->now_us != now_us)
            continue;
        for (size_t k = 0; ok && k < e->n; k++)
            ok = buf_i64(&cols[0], e->run_ref) && buf_i64(&cols[1], (int64_t)(e->first_seq + k));
        for (int k = 0; ok && k < 3; k++)
            ok = append_buf(&cols[k + 2], &e->cols[k]);
        n += e->n;
        done[i] = true;
    }
    s->id = PS_EVENTS_APPEND;
    s->what = "appending events";
    pg_i64(&s->p, now_us);
    static const uint32_t oids[5] = {OID_INT8, OID_INT8, OID_TEXT, OID_TEXT, OID_BYTEA};
    for (int k = 0; ok && k < 5; k++)
        ok = add_array(s, &cols[k], n, oids[k]);
    bufs_free(cols, 5);
    return ok;
}

/* Every idempotency record of [from, to) as one statement. */
static bool merge_dedup(pg_conn *c, int from, int to, pg_stmt *s)
{
    pg_buf cols[6] = {{0}};
    size_t n = 0;
    bool ok = true;
    for (int i = from; ok && i < to; i++) {
        const pg_pending *e = &c->pending[i];
        if (e->kind != PG_PENDING_DEDUP)
            continue;
        ok = buf_i64(&cols[0], e->run_ref) && buf_i64(&cols[5], e->now_us);
        for (int k = 0; ok && k < 4; k++)
            ok = append_buf(&cols[k + 1], &e->cols[k]);
        n++;
    }
    s->id = PS_DEDUP_PUT_ROWS;
    s->what = "recording idempotency keys";
    static const uint32_t oids[6] = {OID_INT8, OID_TEXT, OID_TEXT, OID_BYTEA, OID_BYTEA, OID_INT8};
    for (int k = 0; ok && k < 6; k++)
        ok = add_array(s, &cols[k], n, oids[k]);
    bufs_free(cols, 6);
    return ok;
}

srv_code pg_pending_take(pg_conn *c, pg_stmt **out, int *n, srv_error *err)
{
    /* At most one statement per entry. */
    pg_stmt *s = c->n_pending ? calloc((size_t)c->n_pending, sizeof *s) : NULL;
    bool *done = c->n_pending ? calloc((size_t)c->n_pending, sizeof *done) : NULL;
    int ns = 0;
    bool ok = !c->n_pending || (s && done);
    for (int from = 0; ok && from < c->n_pending;) {
        if (c->pending[from].kind == PG_PENDING_SQL) {
            s[ns].id = -1;
            s[ns].sql = c->pending[from].sql;
            s[ns++].what = "a control statement";
            from++;
            continue;
        }
        int to = from;
        bool dedup = false;
        while (to < c->n_pending && c->pending[to].kind != PG_PENDING_SQL)
            dedup |= c->pending[to++].kind == PG_PENDING_DEDUP;
        for (int i = from; ok && i < to; i++)
            if (c->pending[i].kind == PG_PENDING_EVENTS && !done[i])
                ok = merge_events(c, i, to, done, &s[ns++]);
        if (ok && dedup)
            ok = merge_dedup(c, from, to, &s[ns++]);
        from = to;
    }
    free(done);
    pg_pending_drop(c, 0); /* (the BEGIN and any savepoint with it) */
    if (!ok) {
        pg_stmts_free(s, ns);
        return srv_fail(err, SRV_RESOURCE_EXHAUSTED, "out of memory");
    }
    *out = s;
    *n = ns;
    return SRV_OK;
}
