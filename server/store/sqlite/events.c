/* SQLite backend: the event log, one row per append.
 *
 * An append's events share their run, their time and a run of seqs, so
 * they are one row of event_batches: (run, last_seq, count, created_us,
 * records), records holding each event's type, worker_id and payload in
 * turn, each as a varint length and its bytes. One row and one index
 * entry per append instead of one per event: a batch of 100 events is
 * one b-tree insert, and a read walks rows of many events. */
#include "store/sqlite/sqlite_int.h"
#include "base/clock.h"
#include "base/limits.h"
#include "base/pbc.h"

#include <stdlib.h>
#include <string.h>

/* ---- records ---- */

static size_t varint_size(uint64_t v)
{
    size_t n = 1;
    while (v >= 0x80) {
        v >>= 7;
        n++;
    }
    return n;
}

static uint8_t *put_varint(uint8_t *p, uint64_t v)
{
    while (v >= 0x80) {
        *p++ = (uint8_t)(v | 0x80);
        v >>= 7;
    }
    *p++ = (uint8_t)v;
    return p;
}

static uint8_t *put_field(uint8_t *p, const void *data, size_t len)
{
    p = put_varint(p, len);
    if (len)
        memcpy(p, data, len);
    return p + len;
}

static size_t record_size(size_t type, size_t worker, size_t payload)
{
    return varint_size(type) + type + varint_size(worker) + worker + varint_size(payload) +
           payload;
}

/* Reads one field at *p (before end): its bytes and length. False when
 * the record is cut short. */
static bool get_field(const uint8_t **p, const uint8_t *end, const uint8_t **data, size_t *len)
{
    uint64_t v = 0;
    if (srv_read_varint(p, end, &v) < 0 || v > (uint64_t)(end - *p))
        return false;
    *data = *p;
    *len = (size_t)v;
    *p += v;
    return true;
}

/* cairn_event_record(type, worker_id, payload): one event's record, for
 * the migration that moves the per-event rows of schema 5 into batches. */
static void event_record_fn(sqlite3_context *ctx, int argc, sqlite3_value **argv)
{
    (void)argc;
    const void *f[3];
    size_t len[3];
    for (int i = 0; i < 3; i++) {
        f[i] = i < 2 ? (const void *)sqlite3_value_text(argv[i]) : sqlite3_value_blob(argv[i]);
        len[i] = (size_t)sqlite3_value_bytes(argv[i]);
    }
    size_t n = record_size(len[0], len[1], len[2]);
    uint8_t *buf = sqlite3_malloc64(n ? n : 1);
    if (!buf) {
        sqlite3_result_error_nomem(ctx);
        return;
    }
    uint8_t *p = buf;
    for (int i = 0; i < 3; i++)
        p = put_field(p, f[i], len[i]);
    sqlite3_result_blob64(ctx, buf, n, sqlite3_free);
}

int sq_register_event_record(sqlite3 *db)
{
    return sqlite3_create_function(db, "cairn_event_record", 3,
                                   SQLITE_UTF8 | SQLITE_DETERMINISTIC, NULL, event_record_fn,
                                   NULL, NULL);
}

/* ---- appends ---- */

srv_code sq_events_insert(srv_txn *t, const srv_run_head *run, Cairn__V1__Event *const *events,
                          size_t n, int64_t now_us, srv_error *err)
{
    conn *w = sq_conn(t);
    size_t size = 0;
    for (size_t i = 0; i < n; i++)
        size += record_size(strlen(events[i]->type), strlen(events[i]->worker_id),
                            events[i]->payload.len);
    if (size > w->scratch_cap) {
        uint8_t *grown = realloc(w->scratch, size);
        if (!grown)
            return srv_fail(err, SRV_RESOURCE_EXHAUSTED, "out of memory appending events");
        w->scratch = grown;
        w->scratch_cap = size;
    }
    uint8_t *p = w->scratch;
    for (size_t i = 0; i < n; i++) {
        const Cairn__V1__Event *ev = events[i];
        p = put_field(p, ev->type, strlen(ev->type));
        p = put_field(p, ev->worker_id, strlen(ev->worker_id));
        p = put_field(p, ev->payload.data, ev->payload.len);
    }
    /* The head first: a caller with a stale one (its seqs taken) is
     * refused like a unique key taken, before anything is written. */
    uint64_t last = run->next_seq + n - 1;
    sqlite3_stmt *s = sq_stmt(w, ST_RUN_SET_NEXT, err);
    if (!s)
        return err->code;
    sqlite3_bind_int64(s, 1, run->ref);
    sqlite3_bind_int64(s, 2, (int64_t)(last + 1));
    sqlite3_bind_int64(s, 3, (int64_t)run->next_seq);
    if (sq_step_done(w, s, "appending events", err))
        return err->code;
    if (sqlite3_changes(w->db) != 1)
        return srv_fail(err, SRV_ABORTED,
                        "store: a concurrent write took seq %llu of run %s while appending events",
                        (unsigned long long)run->next_seq, run->run_id);
    if (!(s = sq_stmt(w, ST_EVENT_INSERT, err)))
        return err->code;
    sqlite3_bind_int64(s, 1, run->ref);
    sqlite3_bind_int64(s, 2, (int64_t)last);
    sqlite3_bind_int64(s, 3, (int64_t)n);
    sqlite3_bind_int64(s, 4, now_us);
    sqlite3_bind_blob64(s, 5, size ? (const void *)w->scratch : (const void *)"", size,
                        SQLITE_STATIC);
    return sq_step_done(w, s, "appending events", err);
}

/* ---- reads ---- */

/* The text at data (len bytes) in the arena, or prev itself when it holds
 * the same text: a page's events mostly share their type and worker. */
static char *text_like(srv_arena *a, const uint8_t *data, size_t len, char *prev)
{
    if (prev && strncmp(prev, (const char *)data, len) == 0 && prev[len] == '\0')
        return prev;
    return srv_arena_strndup(a, (const char *)data, len);
}

/* Why a batch row cannot be read: the store is damaged (DATA_LOSS). */
static srv_code damaged(const srv_run_head *run, int64_t last_seq, srv_error *err)
{
    return srv_fail(err, SRV_DATA_LOSS,
                    "store: the events of run %s ending at seq %lld are damaged (a record is "
                    "cut short)",
                    run->run_id, (long long)last_seq);
}

/* Appends the events of one batch row (from from_seq on) to v while they
 * fit max_events and max_bytes. *full: a limit stopped it. */
static srv_code read_row(srv_arena *a, sqlite3_stmt *s, const srv_run_head *run,
                         uint64_t from_seq, uint32_t max_events, size_t max_bytes,
                         Cairn__V1__Event **v, size_t *len, size_t *bytes, bool *full,
                         srv_error *err)
{
    int64_t last = sqlite3_column_int64(s, 0);
    int64_t count = sqlite3_column_int64(s, 1);
    size_t size = (size_t)sqlite3_column_bytes(s, 3);
    /* The row's bytes are SQLite's until the next step: one copy, which
     * the events' payloads then point into. */
    const uint8_t *p = srv_arena_memdup(a, sqlite3_column_blob(s, 3), size);
    char *when = srv_arena_alloc(a, 32);
    if ((size && !p) || !when)
        return srv_fail(err, SRV_RESOURCE_EXHAUSTED, "out of memory reading events");
    srv_format_time(when, sqlite3_column_int64(s, 2));
    const uint8_t *end = p + size;
    uint64_t seq = (uint64_t)(last - count + 1);
    for (int64_t i = 0; i < count; i++, seq++) {
        const uint8_t *type, *worker, *payload;
        size_t type_len, worker_len, payload_len;
        if (!get_field(&p, end, &type, &type_len) || !get_field(&p, end, &worker, &worker_len) ||
            !get_field(&p, end, &payload, &payload_len))
            return damaged(run, last, err);
        if (seq < from_seq)
            continue;
        size_t cost = payload_len + SRV_EVENT_COST;
        if (*len == max_events || (*len > 0 && *bytes + cost > max_bytes)) {
            *full = true;
            return SRV_OK;
        }
        Cairn__V1__Event *ev = srv_arena_alloc(a, sizeof *ev);
        if (!ev)
            return srv_fail(err, SRV_RESOURCE_EXHAUSTED, "out of memory reading events");
        cairn__v1__event__init(ev);
        const Cairn__V1__Event *prev = *len ? v[*len - 1] : NULL;
        ev->seq = seq;
        ev->run_id = (char *)run->run_id;
        ev->type = text_like(a, type, type_len, prev ? prev->type : NULL);
        ev->worker_id = text_like(a, worker, worker_len, prev ? prev->worker_id : NULL);
        ev->payload = (ProtobufCBinaryData){payload_len, (uint8_t *)payload};
        ev->created_at = when;
        if (!ev->type || !ev->worker_id)
            return srv_fail(err, SRV_RESOURCE_EXHAUSTED, "out of memory reading events");
        v[(*len)++] = ev;
        *bytes += cost;
    }
    return p == end ? SRV_OK : damaged(run, last, err);
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
    if (!v)
        return srv_fail(err, SRV_RESOURCE_EXHAUSTED, "out of memory reading events");
    size_t len = 0, bytes = 0;
    bool full = max_events == 0;
    sqlite3_bind_int64(s, 1, run->ref);
    /* SQLite integers are signed: a from_seq past INT64_MAX is past every
     * seq, so it reads nothing. */
    sqlite3_bind_int64(s, 2, from_seq > INT64_MAX ? INT64_MAX : (int64_t)from_seq);
    srv_code code = SRV_OK;
    int rc = SQLITE_ROW;
    while (!full && !code && (rc = sqlite3_step(s)) == SQLITE_ROW)
        code = read_row(a, s, run, from_seq, max_events, max_bytes, v, &len, &bytes, &full,
                        err);
    sqlite3_reset(s);
    if (code)
        return code;
    if (rc != SQLITE_DONE && rc != SQLITE_ROW)
        return sq_db_fail(c->db, rc, "reading events", err);
    *out = v;
    *n = len;
    return SRV_OK;
}
