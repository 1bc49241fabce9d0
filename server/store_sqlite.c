/* The embedded store: one SQLite database, cairn.db, in the data dir.
 * WAL with synchronous=FULL, so a commit is on disk before it is
 * acknowledged. One write connection (the ledger's writer thread) and a
 * pool of read-only connections that read committed data concurrently. */
#include "store.h"
#include "store_sqlite.h"
#include "clock.h"
#include "contract.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Forward-only migrations: migrations[v] takes user_version v to v + 1. */
static const char *const migrations[] = {
    /* 0 -> 1: runs, their workers and labels, the event log, dedup. */
    "CREATE TABLE runs ("
    "  id INTEGER PRIMARY KEY,"
    "  run_id TEXT NOT NULL UNIQUE,"
    "  created_us INTEGER NOT NULL,"
    "  next_seq INTEGER NOT NULL DEFAULT 1,"
    "  worker_count INTEGER NOT NULL,"
    "  completed_count INTEGER NOT NULL DEFAULT 0,"
    "  latest_checkpoint_id TEXT NOT NULL DEFAULT '',"
    "  checkpoint_events INTEGER NOT NULL DEFAULT 0);"
    "CREATE TABLE run_workers ("
    "  run INTEGER NOT NULL REFERENCES runs(id),"
    "  idx INTEGER NOT NULL,"
    "  worker_id TEXT NOT NULL,"
    "  completed_seq INTEGER NOT NULL DEFAULT 0," /* 0 = not completed */
    "  PRIMARY KEY (run, idx)) WITHOUT ROWID;"
    "CREATE UNIQUE INDEX run_workers_by_id ON run_workers(run, worker_id);"
    "CREATE TABLE run_labels ("
    "  run INTEGER NOT NULL REFERENCES runs(id),"
    "  key TEXT NOT NULL,"
    "  value TEXT NOT NULL,"
    "  PRIMARY KEY (run, key)) WITHOUT ROWID;"
    "CREATE TABLE events ("
    "  run INTEGER NOT NULL REFERENCES runs(id),"
    "  seq INTEGER NOT NULL,"
    "  type TEXT NOT NULL,"
    "  worker_id TEXT NOT NULL,"
    "  payload BLOB NOT NULL,"
    "  created_us INTEGER NOT NULL,"
    "  PRIMARY KEY (run, seq));"
    "CREATE TABLE dedup ("
    "  run INTEGER NOT NULL REFERENCES runs(id),"
    "  method TEXT NOT NULL,"
    "  key TEXT NOT NULL,"
    "  fingerprint BLOB NOT NULL,"
    "  response BLOB NOT NULL,"
    "  created_us INTEGER NOT NULL,"
    "  PRIMARY KEY (run, method, key)) WITHOUT ROWID;",
};
enum { SCHEMA_VERSION = sizeof migrations / sizeof migrations[0] };

typedef enum stmt_id {
    ST_BEGIN,
    ST_COMMIT,
    ST_ROLLBACK,
    ST_SAVEPOINT,
    ST_RELEASE,
    ST_ROLLBACK_TO,
    ST_RUN_BY_NAME,
    ST_RUNS_AFTER,
    ST_RUN_INSERT,
    ST_RUN_SET_NEXT,
    ST_WORKERS,
    ST_COMPLETED,
    ST_WORKER_INSERT,
    ST_LABELS,
    ST_LABEL_INSERT,
    ST_EVENT_INSERT,
    ST_EVENTS_FROM,
    ST_DEDUP_GET,
    ST_DEDUP_PUT,
    N_STMT
} stmt_id;

#define RUN_COLUMNS \
    "id, run_id, created_us, next_seq, worker_count, completed_count, latest_checkpoint_id, checkpoint_events"

static const char *const sql_text[N_STMT] = {
    [ST_BEGIN] = "BEGIN IMMEDIATE",
    [ST_COMMIT] = "COMMIT",
    [ST_ROLLBACK] = "ROLLBACK",
    [ST_SAVEPOINT] = "SAVEPOINT mutation",
    [ST_RELEASE] = "RELEASE mutation",
    [ST_ROLLBACK_TO] = "ROLLBACK TO mutation",
    [ST_RUN_BY_NAME] = "SELECT " RUN_COLUMNS " FROM runs WHERE run_id = ?1",
    [ST_RUNS_AFTER] = "SELECT " RUN_COLUMNS " FROM runs WHERE id > ?1 ORDER BY id LIMIT ?2",
    [ST_RUN_INSERT] = "INSERT INTO runs (run_id, created_us, worker_count) VALUES (?1, ?2, ?3)",
    [ST_RUN_SET_NEXT] = "UPDATE runs SET next_seq = ?2 WHERE id = ?1",
    [ST_WORKERS] = "SELECT worker_id FROM run_workers WHERE run = ?1 ORDER BY idx",
    [ST_COMPLETED] = "SELECT worker_id FROM run_workers WHERE run = ?1 AND completed_seq > 0 "
                     "ORDER BY completed_seq",
    [ST_WORKER_INSERT] = "INSERT INTO run_workers (run, idx, worker_id) VALUES (?1, ?2, ?3)",
    [ST_LABELS] = "SELECT key, value FROM run_labels WHERE run = ?1 ORDER BY key",
    [ST_LABEL_INSERT] = "INSERT INTO run_labels (run, key, value) VALUES (?1, ?2, ?3)",
    [ST_EVENT_INSERT] = "INSERT INTO events (run, seq, type, worker_id, payload, created_us) "
                        "VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    [ST_EVENTS_FROM] = "SELECT seq, type, worker_id, payload, created_us FROM events "
                       "WHERE run = ?1 AND seq >= ?2 ORDER BY seq LIMIT ?3",
    [ST_DEDUP_GET] = "SELECT d.fingerprint, d.response FROM dedup d JOIN runs r ON r.id = d.run "
                     "WHERE r.run_id = ?1 AND d.method = ?2 AND d.key = ?3",
    [ST_DEDUP_PUT] = "INSERT INTO dedup (run, method, key, fingerprint, response, created_us) "
                     "SELECT id, ?2, ?3, ?4, ?5, ?6 FROM runs WHERE run_id = ?1",
};

typedef struct conn {
    sqlite3 *db;
    sqlite3_stmt *st[N_STMT];
    struct conn *next_free;
} conn;

typedef struct sqlite_store {
    srv_store base;
    conn writer;
    conn *readers;
    int n_readers;
    conn *free_readers;
    pthread_mutex_t mu;
    pthread_cond_t cv;
} sqlite_store;

/* A runs row. */
typedef struct run_row {
    int64_t id;
    const char *run_id;
    int64_t created_us;
    uint64_t next_seq;
    int64_t worker_count;
    int64_t completed_count;
    const char *latest_checkpoint_id;
    uint64_t checkpoint_events;
} run_row;

static sqlite_store *from_base(srv_store *st)
{
    return (sqlite_store *)st;
}

/* ---- errors and statements ---- */

static srv_code db_fail(sqlite3 *db, int rc, const char *what, srv_error *err)
{
    const char *detail = db ? sqlite3_errmsg(db) : sqlite3_errstr(rc);
    switch (rc & 0xff) {
    case SQLITE_FULL:
        return srv_fail_pushback(err, SRV_RESOURCE_EXHAUSTED, 1000,
                                 "store: disk full while %s; retry later", what);
    case SQLITE_NOMEM:
        return srv_fail(err, SRV_RESOURCE_EXHAUSTED, "store: out of memory while %s", what);
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
        return srv_fail(err, SRV_ABORTED, "store: busy while %s: %s", what, detail);
    case SQLITE_CORRUPT:
    case SQLITE_NOTADB:
        return srv_fail(err, SRV_DATA_LOSS, "store: database corrupt while %s: %s", what, detail);
    default:
        return srv_fail(err, SRV_UNAVAILABLE, "store: %s failed: %s", what, detail);
    }
}

/* Returns the connection's prepared statement, reset and unbound. */
static sqlite3_stmt *stmt(conn *c, stmt_id id, srv_error *err)
{
    sqlite3_stmt *s = c->st[id];
    if (s) {
        sqlite3_reset(s);
        sqlite3_clear_bindings(s);
        return s;
    }
    int rc = sqlite3_prepare_v3(c->db, sql_text[id], -1, SQLITE_PREPARE_PERSISTENT, &s, NULL);
    if (rc != SQLITE_OK) {
        db_fail(c->db, rc, "preparing a statement", err);
        return NULL;
    }
    c->st[id] = s;
    return s;
}

/* Runs a statement that returns no rows. */
static srv_code exec_stmt(conn *c, stmt_id id, const char *what, srv_error *err)
{
    sqlite3_stmt *s = stmt(c, id, err);
    if (!s)
        return err->code;
    int rc = sqlite3_step(s);
    sqlite3_reset(s);
    if (rc != SQLITE_DONE)
        return db_fail(c->db, rc, what, err);
    return SRV_OK;
}

static void bind_text(sqlite3_stmt *s, int i, const char *v)
{
    sqlite3_bind_text(s, i, v, -1, SQLITE_STATIC);
}

static const char *column_text(srv_arena *a, sqlite3_stmt *s, int i)
{
    const unsigned char *t = sqlite3_column_text(s, i);
    return srv_arena_strndup(a, t ? (const char *)t : "", (size_t)sqlite3_column_bytes(s, i));
}

/* ---- reading runs ---- */

static void read_run_row(srv_arena *a, sqlite3_stmt *s, run_row *r)
{
    r->id = sqlite3_column_int64(s, 0);
    r->run_id = column_text(a, s, 1);
    r->created_us = sqlite3_column_int64(s, 2);
    r->next_seq = (uint64_t)sqlite3_column_int64(s, 3);
    r->worker_count = sqlite3_column_int64(s, 4);
    r->completed_count = sqlite3_column_int64(s, 5);
    r->latest_checkpoint_id = column_text(a, s, 6);
    r->checkpoint_events = (uint64_t)sqlite3_column_int64(s, 7);
}

/* Finds a run by name: SRV_OK, or NOT_FOUND naming run_id. */
static srv_code find_run(conn *c, srv_arena *a, const char *run_id, run_row *r,
                         srv_error *err)
{
    sqlite3_stmt *s = stmt(c, ST_RUN_BY_NAME, err);
    if (!s)
        return err->code;
    bind_text(s, 1, run_id);
    int rc = sqlite3_step(s);
    if (rc == SQLITE_ROW) {
        read_run_row(a, s, r);
        sqlite3_reset(s);
        return SRV_OK;
    }
    sqlite3_reset(s);
    if (rc != SQLITE_DONE)
        return db_fail(c->db, rc, "reading a run", err);
    char q[SRV_QUOTE_MAX];
    return srv_fail(err, SRV_NOT_FOUND, "run_id: no run %s", srv_quote(q, run_id, strlen(run_id)));
}

/* Reads one text column of every row of a (run)-parameterized statement
 * into an arena array of strings. */
static srv_code read_strings(conn *c, srv_arena *a, stmt_id id, int64_t run,
                             char ***out, size_t *n, srv_error *err)
{
    sqlite3_stmt *s = stmt(c, id, err);
    if (!s)
        return err->code;
    sqlite3_bind_int64(s, 1, run);
    size_t cap = 0, len = 0;
    char **v = NULL;
    int rc;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        if (len == cap) {
            size_t ncap = cap ? cap * 2 : 8;
            char **nv = srv_arena_alloc(a, ncap * sizeof *nv);
            if (!nv) {
                sqlite3_reset(s);
                return srv_fail(err, SRV_RESOURCE_EXHAUSTED, "out of memory reading a run");
            }
            if (len)
                memcpy(nv, v, len * sizeof *v);
            v = nv;
            cap = ncap;
        }
        v[len++] = (char *)column_text(a, s, 0);
    }
    sqlite3_reset(s);
    if (rc != SQLITE_DONE)
        return db_fail(c->db, rc, "reading a run", err);
    *out = v;
    *n = len;
    return SRV_OK;
}

static srv_code read_labels(conn *c, srv_arena *a, int64_t run, Cairn__V1__Run *out,
                            srv_error *err)
{
    sqlite3_stmt *s = stmt(c, ST_LABELS, err);
    if (!s)
        return err->code;
    sqlite3_bind_int64(s, 1, run);
    Cairn__V1__Run__LabelsEntry **v =
        srv_arena_alloc(a, SRV_LABELS_MAX * sizeof *v);
    size_t n = 0;
    int rc = v ? SQLITE_ROW : SQLITE_NOMEM;
    while (rc == SQLITE_ROW && (rc = sqlite3_step(s)) == SQLITE_ROW) {
        Cairn__V1__Run__LabelsEntry *e = n < SRV_LABELS_MAX ? srv_arena_alloc(a, sizeof *e) : NULL;
        if (!e) {
            rc = SQLITE_NOMEM;
            break;
        }
        cairn__v1__run__labels_entry__init(e);
        e->key = (char *)column_text(a, s, 0);
        e->value = (char *)column_text(a, s, 1);
        v[n++] = e;
    }
    sqlite3_reset(s);
    if (rc != SQLITE_DONE)
        return db_fail(c->db, rc, "reading labels", err);
    out->labels = v;
    out->n_labels = n;
    return SRV_OK;
}

static const char *run_state(const run_row *r)
{
    if (r->worker_count > 0 && r->completed_count >= r->worker_count)
        return "completed";
    return r->next_seq > 1 ? "running" : "created";
}

static char *format_time(srv_arena *a, int64_t us)
{
    char buf[32];
    return srv_arena_strdup(a, srv_format_time(buf, us));
}

/* Fills a Run message from its row and child tables. */
static srv_code fill_run(conn *c, srv_arena *a, const run_row *r, Cairn__V1__Run *out,
                         srv_error *err)
{
    cairn__v1__run__init(out);
    out->run_id = (char *)r->run_id;
    out->state = (char *)run_state(r);
    out->next_seq = r->next_seq;
    out->latest_checkpoint_id = (char *)r->latest_checkpoint_id;
    out->created_at = format_time(a, r->created_us);
    srv_code rc = read_strings(c, a, ST_WORKERS, r->id, &out->workers, &out->n_workers, err);
    if (!rc)
        rc = read_strings(c, a, ST_COMPLETED, r->id, &out->completed_workers,
                          &out->n_completed_workers, err);
    if (!rc)
        rc = read_labels(c, a, r->id, out, err);
    return rc;
}

/* ---- reader pool ---- */

static conn *reader_get(sqlite_store *s)
{
    pthread_mutex_lock(&s->mu);
    while (!s->free_readers)
        pthread_cond_wait(&s->cv, &s->mu);
    conn *c = s->free_readers;
    s->free_readers = c->next_free;
    pthread_mutex_unlock(&s->mu);
    return c;
}

static void reader_put(sqlite_store *s, conn *c)
{
    pthread_mutex_lock(&s->mu);
    c->next_free = s->free_readers;
    s->free_readers = c;
    pthread_cond_signal(&s->cv);
    pthread_mutex_unlock(&s->mu);
}

/* ---- write transactions ---- */

static srv_code sq_begin(srv_store *st, srv_error *err)
{
    return exec_stmt(&from_base(st)->writer, ST_BEGIN, "beginning a transaction", err);
}

static srv_code sq_commit(srv_store *st, srv_error *err)
{
    return exec_stmt(&from_base(st)->writer, ST_COMMIT, "committing", err);
}

static void sq_rollback(srv_store *st)
{
    conn *w = &from_base(st)->writer;
    if (w->db && !sqlite3_get_autocommit(w->db)) {
        srv_error ignored;
        exec_stmt(w, ST_ROLLBACK, "rolling back", &ignored);
    }
}

static srv_code sq_savepoint(srv_store *st, srv_error *err)
{
    return exec_stmt(&from_base(st)->writer, ST_SAVEPOINT, "opening a savepoint", err);
}

static srv_code sq_release(srv_store *st, srv_error *err)
{
    return exec_stmt(&from_base(st)->writer, ST_RELEASE, "releasing a savepoint", err);
}

static void sq_rollback_to(srv_store *st)
{
    conn *w = &from_base(st)->writer;
    srv_error ignored;
    exec_stmt(w, ST_ROLLBACK_TO, "rolling back a savepoint", &ignored);
    exec_stmt(w, ST_RELEASE, "releasing a savepoint", &ignored);
}

/* ---- idempotency ---- */

static srv_code sq_dedup_get(srv_store *st, srv_arena *a, const srv_dedup_key *k,
                             srv_dedup_record *out, bool *found, srv_error *err)
{
    conn *w = &from_base(st)->writer;
    sqlite3_stmt *s = stmt(w, ST_DEDUP_GET, err);
    if (!s)
        return err->code;
    bind_text(s, 1, k->run_id);
    bind_text(s, 2, k->method);
    bind_text(s, 3, k->key);
    int rc = sqlite3_step(s);
    *found = rc == SQLITE_ROW;
    if (*found) {
        const void *fp = sqlite3_column_blob(s, 0);
        memset(out->fingerprint, 0, sizeof out->fingerprint);
        if (fp && sqlite3_column_bytes(s, 0) == 32)
            memcpy(out->fingerprint, fp, 32);
        out->response_len = (size_t)sqlite3_column_bytes(s, 1);
        out->response = srv_arena_memdup(a, sqlite3_column_blob(s, 1), out->response_len);
        rc = out->response || out->response_len == 0 ? SQLITE_DONE : SQLITE_NOMEM;
    }
    sqlite3_reset(s);
    if (rc != SQLITE_DONE)
        return db_fail(w->db, rc, "reading an idempotency record", err);
    return SRV_OK;
}

static srv_code sq_dedup_put(srv_store *st, const srv_dedup_key *k,
                             const srv_dedup_record *rec, int64_t now_us, srv_error *err)
{
    conn *w = &from_base(st)->writer;
    sqlite3_stmt *s = stmt(w, ST_DEDUP_PUT, err);
    if (!s)
        return err->code;
    bind_text(s, 1, k->run_id);
    bind_text(s, 2, k->method);
    bind_text(s, 3, k->key);
    sqlite3_bind_blob(s, 4, rec->fingerprint, 32, SQLITE_STATIC);
    sqlite3_bind_blob(s, 5, rec->response_len ? rec->response : (const void *)"", (int)rec->response_len,
                      SQLITE_STATIC);
    sqlite3_bind_int64(s, 6, now_us);
    int rc = sqlite3_step(s);
    sqlite3_reset(s);
    if (rc != SQLITE_DONE)
        return db_fail(w->db, rc, "recording an idempotency key", err);
    if (sqlite3_changes(w->db) != 1)
        return srv_fail(err, SRV_INTERNAL, "store: idempotency record for a missing run");
    return SRV_OK;
}

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
        sqlite3_stmt *s = stmt(w, ST_WORKER_INSERT, err);
        if (!s)
            return err->code;
        sqlite3_bind_int64(s, 1, run);
        sqlite3_bind_int64(s, 2, (int64_t)i);
        bind_text(s, 3, req->workers[i]);
        int rc = sqlite3_step(s);
        sqlite3_reset(s);
        if (rc != SQLITE_DONE)
            return db_fail(w->db, rc, "storing workers", err);
    }
    for (size_t i = 0; i < req->n_labels; i++) {
        sqlite3_stmt *s = stmt(w, ST_LABEL_INSERT, err);
        if (!s)
            return err->code;
        sqlite3_bind_int64(s, 1, run);
        bind_text(s, 2, req->labels[i]->key);
        bind_text(s, 3, req->labels[i]->value);
        int rc = sqlite3_step(s);
        sqlite3_reset(s);
        if (rc != SQLITE_DONE)
            return db_fail(w->db, rc, "storing labels", err);
    }
    return SRV_OK;
}

static srv_code sq_create_run(srv_store *st, srv_arena *a,
                              const Cairn__V1__CreateRunRequest *req, int64_t now_us,
                              Cairn__V1__Run *out, srv_error *err)
{
    conn *w = &from_base(st)->writer;
    run_row r;
    srv_code rc = find_run(w, a, req->run_id, &r, err);
    if (rc == SRV_OK) {
        rc = fill_run(w, a, &r, out, err);
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

    sqlite3_stmt *s = stmt(w, ST_RUN_INSERT, err);
    if (!s)
        return err->code;
    bind_text(s, 1, req->run_id);
    sqlite3_bind_int64(s, 2, now_us);
    sqlite3_bind_int64(s, 3, (int64_t)req->n_workers);
    int sqrc = sqlite3_step(s);
    sqlite3_reset(s);
    if (sqrc != SQLITE_DONE)
        return db_fail(w->db, sqrc, "creating a run", err);
    int64_t id = sqlite3_last_insert_rowid(w->db);
    rc = insert_children(w, id, req, err);
    if (rc)
        return rc;
    r = (run_row){.id = id, .run_id = req->run_id, .created_us = now_us, .next_seq = 1,
                  .worker_count = (int64_t)req->n_workers, .latest_checkpoint_id = ""};
    return fill_run(w, a, &r, out, err);
}

static srv_code sq_get_run(srv_store *st, srv_arena *a, const char *run_id,
                           Cairn__V1__Run *out, srv_error *err)
{
    sqlite_store *s = from_base(st);
    conn *c = reader_get(s);
    run_row r;
    srv_code rc = find_run(c, a, run_id, &r, err);
    if (!rc)
        rc = fill_run(c, a, &r, out, err);
    reader_put(s, c);
    return rc;
}

static srv_code sq_list_runs(srv_store *st, srv_arena *a, uint64_t after, uint32_t limit,
                             Cairn__V1__ListRunsResponse *out, uint64_t *next,
                             srv_error *err)
{
    sqlite_store *ss = from_base(st);
    conn *c = reader_get(ss);
    srv_code rc = SRV_OK;
    *next = 0;
    out->runs = srv_arena_alloc(a, (limit + 1) * sizeof *out->runs);
    out->n_runs = 0;
    sqlite3_stmt *s = out->runs ? stmt(c, ST_RUNS_AFTER, err) : NULL;
    if (!s) {
        reader_put(ss, c);
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
        read_run_row(a, s, &rows[n++]);
    if (!rows)
        sqrc = SQLITE_NOMEM;
    sqlite3_reset(s);
    if (sqrc != SQLITE_DONE)
        rc = db_fail(c->db, sqrc, "listing runs", err);
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
        rc = fill_run(c, a, &rows[i], run, err);
        out->runs[out->n_runs++] = run;
    }
    reader_put(ss, c);
    return rc;
}

/* ---- events ---- */

static srv_code sq_append_events(srv_store *st, const Cairn__V1__AppendEventsRequest *req,
                                 int64_t now_us, Cairn__V1__AppendEventsResponse *out,
                                 srv_error *err)
{
    conn *w = &from_base(st)->writer;
    srv_arena *scratch = srv_arena_create();
    if (!scratch)
        return srv_fail(err, SRV_RESOURCE_EXHAUSTED, "out of memory");
    run_row r;
    srv_code rc = find_run(w, scratch, req->run_id, &r, err);
    srv_arena_destroy(scratch);
    if (rc)
        return rc;
    if (req->expected_next_seq && req->expected_next_seq != r.next_seq)
        return srv_fail(err, SRV_FAILED_PRECONDITION,
                        "expected_next_seq: the run is at next_seq %llu, the request expected %llu",
                        (unsigned long long)r.next_seq,
                        (unsigned long long)req->expected_next_seq);
    if (req->fencing_token)
        return srv_fail(err, SRV_FAILED_PRECONDITION,
                        "fencing_token: %llu is not the token of a live lease (fenced)",
                        (unsigned long long)req->fencing_token);

    uint64_t seq = r.next_seq;
    for (size_t i = 0; i < req->n_events; i++, seq++) {
        const Cairn__V1__Event *ev = req->events[i];
        sqlite3_stmt *s = stmt(w, ST_EVENT_INSERT, err);
        if (!s)
            return err->code;
        sqlite3_bind_int64(s, 1, r.id);
        sqlite3_bind_int64(s, 2, (int64_t)seq);
        bind_text(s, 3, ev->type);
        bind_text(s, 4, ev->worker_id);
        sqlite3_bind_blob(s, 5, ev->payload.len ? (const void *)ev->payload.data : (const void *)"",
                          (int)ev->payload.len, SQLITE_STATIC);
        sqlite3_bind_int64(s, 6, now_us);
        int sqrc = sqlite3_step(s);
        sqlite3_reset(s);
        if (sqrc != SQLITE_DONE)
            return db_fail(w->db, sqrc, "appending events", err);
    }
    sqlite3_stmt *s = stmt(w, ST_RUN_SET_NEXT, err);
    if (!s)
        return err->code;
    sqlite3_bind_int64(s, 1, r.id);
    sqlite3_bind_int64(s, 2, (int64_t)seq);
    int sqrc = sqlite3_step(s);
    sqlite3_reset(s);
    if (sqrc != SQLITE_DONE)
        return db_fail(w->db, sqrc, "appending events", err);

    out->first_seq = r.next_seq;
    out->last_seq = seq - 1;
    out->events_since_checkpoint = out->last_seq - r.checkpoint_events;
    return SRV_OK;
}

static srv_code sq_read_events(srv_store *st, srv_arena *a, const char *run_id,
                               uint64_t from_seq, uint32_t max_events, size_t max_bytes,
                               Cairn__V1__ReadEventsResponse *out, srv_error *err)
{
    sqlite_store *ss = from_base(st);
    conn *c = reader_get(ss);
    run_row r;
    srv_code rc = find_run(c, a, run_id, &r, err);
    sqlite3_stmt *s = rc ? NULL : stmt(c, ST_EVENTS_FROM, err);
    if (!s) {
        reader_put(ss, c);
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
        ev->type = (char *)column_text(a, s, 1);
        ev->worker_id = (char *)column_text(a, s, 2);
        ev->payload.len = len;
        ev->payload.data = srv_arena_memdup(a, sqlite3_column_blob(s, 3), len);
        ev->created_at = format_time(a, sqlite3_column_int64(s, 4));
        out->events[out->n_events++] = ev;
        out->next_seq = ev->seq + 1;
        bytes += cost;
    }
    sqlite3_reset(s);
    reader_put(ss, c);
    if (sqrc != SQLITE_DONE && sqrc != SQLITE_ROW)
        return db_fail(NULL, sqrc, "reading events", err);
    return SRV_OK;
}

/* ---- opening and closing ---- */

static void conn_close(conn *c)
{
    for (int i = 0; i < N_STMT; i++)
        sqlite3_finalize(c->st[i]);
    sqlite3_close(c->db);
    memset(c, 0, sizeof *c);
}

static void sq_close(srv_store *st)
{
    sqlite_store *s = from_base(st);
    sq_rollback(st);
    for (int i = 0; i < s->n_readers; i++)
        conn_close(&s->readers[i]);
    free(s->readers);
    conn_close(&s->writer);
    pthread_cond_destroy(&s->cv);
    pthread_mutex_destroy(&s->mu);
    free(s);
}

int srv_sqlite_schema_version(void)
{
    return SCHEMA_VERSION;
}

static int user_version(sqlite3 *db)
{
    sqlite3_stmt *s;
    int v = -1;
    if (sqlite3_prepare_v2(db, "PRAGMA user_version", -1, &s, NULL) == SQLITE_OK) {
        if (sqlite3_step(s) == SQLITE_ROW)
            v = sqlite3_column_int(s, 0);
        sqlite3_finalize(s);
    }
    return v;
}

srv_code srv_sqlite_migrate(sqlite3 *db, int target, srv_error *err)
{
    int v = user_version(db);
    if (v < 0)
        return db_fail(db, sqlite3_errcode(db), "reading the schema version", err);
    if (v > SCHEMA_VERSION)
        return srv_fail(err, SRV_FAILED_PRECONDITION,
                        "store: cairn.db has schema version %d, newer than this cairnd "
                        "understands (%d); run a newer cairnd",
                        v, SCHEMA_VERSION);
    for (; v < target && v < SCHEMA_VERSION; v++) {
        char bump[64];
        snprintf(bump, sizeof bump, "PRAGMA user_version = %d;", v + 1);
        int rc = sqlite3_exec(db, "BEGIN IMMEDIATE", NULL, NULL, NULL);
        if (rc == SQLITE_OK)
            rc = sqlite3_exec(db, migrations[v], NULL, NULL, NULL);
        if (rc == SQLITE_OK)
            rc = sqlite3_exec(db, bump, NULL, NULL, NULL);
        if (rc == SQLITE_OK)
            rc = sqlite3_exec(db, "COMMIT", NULL, NULL, NULL);
        if (rc != SQLITE_OK) {
            srv_code code = db_fail(db, rc, "migrating the schema", err);
            sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
            return code;
        }
    }
    return SRV_OK;
}

static srv_code conn_open(conn *c, const char *path, bool writer, srv_error *err)
{
    int flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX | (writer ? SQLITE_OPEN_CREATE : 0);
    int rc = sqlite3_open_v2(path, &c->db, flags, NULL);
    if (rc != SQLITE_OK) {
        srv_code code = db_fail(c->db, rc, "opening cairn.db", err);
        sqlite3_close(c->db);
        c->db = NULL;
        return code;
    }
    sqlite3_busy_timeout(c->db, 10000);
    const char *pragmas = writer ? "PRAGMA journal_mode = WAL;"
                                   "PRAGMA synchronous = FULL;"
                                   "PRAGMA foreign_keys = ON;"
                                 : "PRAGMA query_only = 1;";
    rc = sqlite3_exec(c->db, pragmas, NULL, NULL, NULL);
    if (rc != SQLITE_OK)
        return db_fail(c->db, rc, "configuring cairn.db", err);
    return SRV_OK;
}

static const struct srv_store_ops sqlite_ops = {
    .version = SRV_STORE_OPS_VERSION,
    .name = "sqlite",
    .close = sq_close,
    .begin = sq_begin,
    .commit = sq_commit,
    .rollback = sq_rollback,
    .savepoint = sq_savepoint,
    .release = sq_release,
    .rollback_to = sq_rollback_to,
    .dedup_get = sq_dedup_get,
    .dedup_put = sq_dedup_put,
    .create_run = sq_create_run,
    .append_events = sq_append_events,
    .get_run = sq_get_run,
    .list_runs = sq_list_runs,
    .read_events = sq_read_events,
};

srv_code srv_store_sqlite_open(const char *dir, int readers, srv_store **out, srv_error *err)
{
    sqlite_store *s = calloc(1, sizeof *s);
    if (!s)
        return srv_fail(err, SRV_RESOURCE_EXHAUSTED, "out of memory");
    s->base.ops = &sqlite_ops;
    pthread_mutex_init(&s->mu, NULL);
    pthread_cond_init(&s->cv, NULL);

    char path[4200];
    snprintf(path, sizeof path, "%s/cairn.db", dir);
    srv_code rc = conn_open(&s->writer, path, true, err);
    if (!rc)
        rc = srv_sqlite_migrate(s->writer.db, SCHEMA_VERSION, err);
    if (!rc) {
        s->readers = calloc((size_t)readers, sizeof *s->readers);
        if (!s->readers)
            rc = srv_fail(err, SRV_RESOURCE_EXHAUSTED, "out of memory");
    }
    for (int i = 0; !rc && i < readers; i++) {
        rc = conn_open(&s->readers[i], path, false, err);
        s->n_readers++;
        reader_put(s, &s->readers[i]);
    }
    if (rc) {
        sq_close(&s->base);
        return rc;
    }
    *out = &s->base;
    return SRV_OK;
}
