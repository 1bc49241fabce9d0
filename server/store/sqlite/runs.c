/* SQLite store: runs, the event log and worker completions. */
#include "store/sqlite/sqlite_int.h"
#include "service/contract.h"

#include <stdio.h>
#include <string.h>

/* ---- runs ---- */

static bool same_strings(char **a, size_t na, char **b, size_t nb)
{
    if (na != nb)
        return false;
    for (size_t i = 0; i < na; i++)
        if (strcmp(a[i], b[i]) != 0)
            return false;
    return true;
}

static bool same_definition(const Cairn__V1__Run *run, const Cairn__V1__CreateRunRequest *req)
{
    if (!same_strings(run->workers, run->n_workers, req->workers, req->n_workers))
        return false;
    if (run->n_labels != req->n_labels)
        return false;
    for (size_t i = 0; i < req->n_labels; i++) /* both sorted by key */
        if (strcmp(run->labels[i]->key, req->labels[i]->key) != 0 ||
            strcmp(run->labels[i]->value, req->labels[i]->value) != 0)
            return false;
    return true;
}

static srv_code insert_children(conn *w, int64_t run, const Cairn__V1__CreateRunRequest *req,
                                srv_error *err)
{
    for (size_t i = 0; i < req->n_workers; i++) {
        sqlite3_stmt *s = sq_stmt(w, ST_WORKER_INSERT, err);
        if (!s)
            return err->code;
        sqlite3_bind_int64(s, 1, run);
        sqlite3_bind_int64(s, 2, (int64_t)i);
        sq_bind_text(s, 3, req->workers[i]);
        int rc = sqlite3_step(s);
        sqlite3_reset(s);
        if (rc != SQLITE_DONE)
            return sq_db_fail(w->db, rc, "storing workers", err);
    }
    for (size_t i = 0; i < req->n_labels; i++) {
        sqlite3_stmt *s = sq_stmt(w, ST_LABEL_INSERT, err);
        if (!s)
            return err->code;
        sqlite3_bind_int64(s, 1, run);
        sq_bind_text(s, 2, req->labels[i]->key);
        sq_bind_text(s, 3, req->labels[i]->value);
        int rc = sqlite3_step(s);
        sqlite3_reset(s);
        if (rc != SQLITE_DONE)
            return sq_db_fail(w->db, rc, "storing labels", err);
    }
    return SRV_OK;
}

srv_code sq_create_run(srv_store *st, srv_arena *a,
                              const Cairn__V1__CreateRunRequest *req, int64_t now_us,
                              Cairn__V1__Run *out, srv_error *err)
{
    conn *w = &sq_from(st)->writer;
    run_row r;
    srv_code rc = sq_find_run(w, a, req->run_id, &r, err);
    if (rc == SRV_OK) {
        rc = sq_fill_run(w, a, &r, out, err);
        if (rc)
            return rc;
        if (same_definition(out, req))
            return SRV_OK;
        char q[SRV_QUOTE_MAX];
        return srv_fail(err, SRV_ALREADY_EXISTS,
                        "run_id: run %s already exists with different workers or labels",
                        srv_quote(q, req->run_id, strlen(req->run_id)));
    }
    if (rc != SRV_NOT_FOUND)
        return rc;

    sqlite3_stmt *s = sq_stmt(w, ST_RUN_INSERT, err);
    if (!s)
        return err->code;
    sq_bind_text(s, 1, req->run_id);
    sqlite3_bind_int64(s, 2, now_us);
    sqlite3_bind_int64(s, 3, (int64_t)req->n_workers);
    if (sq_step_done(w, s, "creating a run", err))
        return err->code;
    int64_t id = sqlite3_last_insert_rowid(w->db);
    rc = insert_children(w, id, req, err);
    if (rc)
        return rc;
    r = (run_row){.id = id, .run_id = req->run_id, .created_us = now_us, .next_seq = 1,
                  .worker_count = (int64_t)req->n_workers, .latest_checkpoint_id = ""};
    return sq_fill_run(w, a, &r, out, err);
}

srv_code sq_get_run(srv_store *st, srv_arena *a, const char *run_id,
                           Cairn__V1__Run *out, srv_error *err)
{
    sqlite_store *s = sq_from(st);
    conn *c = sq_reader_get(s);
    run_row r;
    srv_code rc = sq_find_run(c, a, run_id, &r, err);
    if (!rc)
        rc = sq_fill_run(c, a, &r, out, err);
    sq_reader_put(s, c);
    return rc;
}

srv_code sq_list_runs(srv_store *st, srv_arena *a, uint64_t after, uint32_t limit,
                             Cairn__V1__ListRunsResponse *out, uint64_t *next,
                             srv_error *err)
{
    sqlite_store *ss = sq_from(st);
    conn *c = sq_reader_get(ss);
    srv_code rc = SRV_OK;
    *next = 0;
    out->runs = srv_arena_alloc(a, (limit + 1) * sizeof *out->runs);
    out->n_runs = 0;
    sqlite3_stmt *s = out->runs ? sq_stmt(c, ST_RUNS_AFTER, err) : NULL;
    if (!s) {
        sq_reader_put(ss, c);
        return out->runs ? err->code
                         : srv_fail(err, SRV_RESOURCE_EXHAUSTED, "out of memory listing runs");
    }
    /* Rows first, then each run's children, so one statement is stepped
     * at a time on this connection. */
    run_row *rows = srv_arena_alloc(a, (limit + 1) * sizeof *rows);
    size_t n = 0;
    sqlite3_bind_int64(s, 1, (int64_t)after);
    sqlite3_bind_int64(s, 2, (int64_t)limit + 1);
    int sqrc;
    while (rows && (sqrc = sqlite3_step(s)) == SQLITE_ROW)
        sq_read_run_row(a, s, &rows[n++]);
    if (!rows)
        sqrc = SQLITE_NOMEM;
    sqlite3_reset(s);
    if (sqrc != SQLITE_DONE)
        rc = sq_db_fail(c->db, sqrc, "listing runs", err);
    if (!rc && n > limit) {
        n = limit;
        *next = (uint64_t)rows[n - 1].id;
    }
    for (size_t i = 0; !rc && i < n; i++) {
        Cairn__V1__Run *run = srv_arena_alloc(a, sizeof *run);
        if (!run) {
            rc = srv_fail(err, SRV_RESOURCE_EXHAUSTED, "out of memory listing runs");
            break;
        }
        rc = sq_fill_run(c, a, &rows[i], run, err);
        out->runs[out->n_runs++] = run;
    }
    sq_reader_put(ss, c);
    return rc;
}

/* ---- events ---- */

/* Looks a run up on the writer connection for a mutation that needs only
 * its numbers (the row's strings are not kept). */
static srv_code writer_run(conn *w, const char *run_id, run_row *r, srv_error *err)
{
    srv_arena *scratch = srv_arena_create();
    if (!scratch)
        return srv_fail(err, SRV_RESOURCE_EXHAUSTED, "out of memory");
    srv_code rc = sq_find_run(w, scratch, run_id, r, err);
    srv_arena_destroy(scratch);
    r->run_id = NULL;
    r->latest_checkpoint_id = NULL;
    return rc;
}

static srv_code insert_event(conn *w, int64_t run, uint64_t seq, const char *type,
                             const char *worker_id, const ProtobufCBinaryData *payload,
                             int64_t now_us, srv_error *err)
{
    sqlite3_stmt *s = sq_stmt(w, ST_EVENT_INSERT, err);
    if (!s)
        return err->code;
    sqlite3_bind_int64(s, 1, run);
    sqlite3_bind_int64(s, 2, (int64_t)seq);
    sq_bind_text(s, 3, type);
    sq_bind_text(s, 4, worker_id);
    sqlite3_bind_blob(s, 5, payload->len ? (const void *)payload->data : (const void *)"",
                      (int)payload->len, SQLITE_STATIC);
    sqlite3_bind_int64(s, 6, now_us);
    return sq_step_done(w, s, "appending events", err);
}

srv_code sq_append_events(srv_store *st, const Cairn__V1__AppendEventsRequest *req,
                          int64_t now_us, Cairn__V1__AppendEventsResponse *out, srv_error *err)
{
    conn *w = &sq_from(st)->writer;
    run_row r;
    srv_code rc = writer_run(w, req->run_id, &r, err);
    if (rc)
        return rc;
    if (req->expected_next_seq && req->expected_next_seq != r.next_seq)
        return srv_fail(err, SRV_FAILED_PRECONDITION,
                        "expected_next_seq: the run is at next_seq %llu, the request expected %llu",
                        (unsigned long long)r.next_seq,
                        (unsigned long long)req->expected_next_seq);
    /* A fenced batch names one worker (checked by validation). */
    if (req->fencing_token && sq_check_fencing(w, r.id, req->events[0]->worker_id,
                                               req->fencing_token, now_us, err))
        return err->code;

    uint64_t seq = r.next_seq;
    for (size_t i = 0; i < req->n_events; i++, seq++) {
        const Cairn__V1__Event *ev = req->events[i];
        if (insert_event(w, r.id, seq, ev->type, ev->worker_id, &ev->payload, now_us, err))
            return err->code;
    }
    sqlite3_stmt *s = sq_stmt(w, ST_RUN_SET_NEXT, err);
    if (!s)
        return err->code;
    sqlite3_bind_int64(s, 1, r.id);
    sqlite3_bind_int64(s, 2, (int64_t)seq);
    if (sq_step_done(w, s, "appending events", err) ||
        sq_note_log(sq_from(st), req->run_id, seq - 1, err))
        return err->code;

    out->first_seq = r.next_seq;
    out->last_seq = seq - 1;
    out->events_since_checkpoint = out->last_seq - r.checkpoint_events;
    return SRV_OK;
}

srv_code sq_complete_worker(srv_store *st, const Cairn__V1__CompleteWorkerRequest *req,
                            int64_t now_us, Cairn__V1__CompleteWorkerResponse *out,
                            srv_error *err)
{
    conn *w = &sq_from(st)->writer;
    run_row r;
    srv_code rc = writer_run(w, req->run_id, &r, err);
    if (rc)
        return rc;
    sqlite3_stmt *s = sq_stmt(w, ST_WORKER_SEQ, err);
    if (!s)
        return err->code;
    sqlite3_bind_int64(s, 1, r.id);
    sq_bind_text(s, 2, req->worker_id);
    int sqrc = sqlite3_step(s);
    uint64_t done_seq = sqrc == SQLITE_ROW ? (uint64_t)sqlite3_column_int64(s, 0) : 0;
    sqlite3_reset(s);
    char q[SRV_QUOTE_MAX];
    if (sqrc == SQLITE_DONE)
        return srv_fail(err, SRV_INVALID_ARGUMENT, "worker_id: %s is not a worker of run %s",
                        srv_quote(q, req->worker_id, strlen(req->worker_id)), req->run_id);
    if (sqrc != SQLITE_ROW)
        return sq_db_fail(w->db, sqrc, "reading a worker", err);
    if (req->fencing_token &&
        sq_check_fencing(w, r.id, req->worker_id, req->fencing_token, now_us, err))
        return err->code;
    if (done_seq)
        return srv_fail(err, SRV_FAILED_PRECONDITION,
                        "worker_id: %s already completed (its worker.completed event is seq %llu)",
                        srv_quote(q, req->worker_id, strlen(req->worker_id)),
                        (unsigned long long)done_seq);

    const ProtobufCBinaryData empty = {0, NULL};
    uint64_t seq = r.next_seq;
    if (insert_event(w, r.id, seq, "worker.completed", req->worker_id, &empty, now_us, err))
        return err->code;
    if (!(s = sq_stmt(w, ST_WORKER_SET_COMPLETED, err)))
        return err->code;
    sqlite3_bind_int64(s, 1, r.id);
    sq_bind_text(s, 2, req->worker_id);
    sqlite3_bind_int64(s, 3, (int64_t)seq);
    if (sq_step_done(w, s, "completing a worker", err))
        return err->code;
    if (!(s = sq_stmt(w, ST_RUN_COMPLETED, err)))
        return err->code;
    sqlite3_bind_int64(s, 1, r.id);
    sqlite3_bind_int64(s, 2, (int64_t)seq + 1);
    if (sq_step_done(w, s, "completing a worker", err) ||
        sq_end_lease(w, r.id, req->worker_id, err) ||
        sq_note_log(sq_from(st), req->run_id, seq, err))
        return err->code;

    r.next_seq = seq + 1;
    r.completed_count++;
    out->seq = seq;
    out->run_state = (char *)sq_run_state(&r);
    return SRV_OK;
}

srv_code sq_read_events(srv_store *st, srv_arena *a, const char *run_id,
                               uint64_t from_seq, uint32_t max_events, size_t max_bytes,
                               Cairn__V1__ReadEventsResponse *out, srv_error *err)
{
    sqlite_store *ss = sq_from(st);
    conn *c = sq_reader_get(ss);
    run_row r;
    srv_code rc = sq_find_run(c, a, run_id, &r, err);
    sqlite3_stmt *s = rc ? NULL : sq_stmt(c, ST_EVENTS_FROM, err);
    if (!s) {
        sq_reader_put(ss, c);
        return err->code;
    }
    out->events = srv_arena_alloc(a, max_events * sizeof *out->events);
    out->n_events = 0;
    out->next_seq = from_seq;
    sqlite3_bind_int64(s, 1, r.id);
    /* SQLite integers are signed: a from_seq past INT64_MAX is past every
     * seq, so it reads nothing and next_seq stays from_seq. */
    sqlite3_bind_int64(s, 2, from_seq > INT64_MAX ? INT64_MAX : (int64_t)from_seq);
    sqlite3_bind_int64(s, 3, max_events);
    size_t bytes = 0;
    int sqrc = out->events ? SQLITE_ROW : SQLITE_NOMEM;
    while (sqrc == SQLITE_ROW && (sqrc = sqlite3_step(s)) == SQLITE_ROW) {
        size_t len = (size_t)sqlite3_column_bytes(s, 3);
        /* Ids, type and framing cost a few hundred bytes per event. */
        size_t cost = len + 2 * SRV_ID_MAX + SRV_EVENT_TYPE_MAX + 64;
        if (out->n_events > 0 && bytes + cost > max_bytes)
            break;
        Cairn__V1__Event *ev = srv_arena_alloc(a, sizeof *ev);
        if (!ev) {
            sqrc = SQLITE_NOMEM;
            break;
        }
        cairn__v1__event__init(ev);
        ev->seq = (uint64_t)sqlite3_column_int64(s, 0);
        ev->run_id = (char *)run_id;
        ev->type = (char *)sq_column_text(a, s, 1);
        ev->worker_id = (char *)sq_column_text(a, s, 2);
        ev->payload.len = len;
        ev->payload.data = srv_arena_memdup(a, sqlite3_column_blob(s, 3), len);
        ev->created_at = sq_format_time(a, sqlite3_column_int64(s, 4));
        out->events[out->n_events++] = ev;
        out->next_seq = ev->seq + 1;
        bytes += cost;
    }
    sqlite3_reset(s);
    sq_reader_put(ss, c);
    if (sqrc != SQLITE_DONE && sqrc != SQLITE_ROW)
        return sq_db_fail(NULL, sqrc, "reading events", err);
    return SRV_OK;
}

