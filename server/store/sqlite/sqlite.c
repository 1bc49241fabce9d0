/* The embedded store: one SQLite database, cairn.db, in the data dir, and
 * snapshot files under blobs/. WAL with synchronous=FULL, so a commit is
 * on disk before it is acknowledged. One write connection (the ledger's
 * writer thread) and a pool of read-only connections that read committed
 * data concurrently. This file: schema, statements, connections,
 * transactions, idempotency records; runs, checkpoints and blobs live in
 * store_sqlite_*.c. */
#include "store/sqlite/sqlite_int.h"
#include "base/clock.h"
#include "service/contract.h"
#include "store/sqlite/sqlite.h"

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
    /* 1 -> 2: checkpoints and their content-addressed snapshots. */
    "ALTER TABLE runs ADD COLUMN latest_checkpoint_us INTEGER NOT NULL DEFAULT 0;"
    "CREATE TABLE blobs ("
    "  sha256 TEXT PRIMARY KEY,"
    "  size INTEGER NOT NULL,"
    "  refs INTEGER NOT NULL) WITHOUT ROWID;"
    "CREATE TABLE checkpoints ("
    "  id INTEGER PRIMARY KEY,"
    "  run INTEGER NOT NULL REFERENCES runs(id),"
    "  checkpoint_id TEXT NOT NULL,"
    "  created_us INTEGER NOT NULL,"
    "  run_state TEXT NOT NULL,"
    "  events_count INTEGER NOT NULL,"
    "  snapshot_size INTEGER NOT NULL,"
    "  snapshot_sha256 TEXT NOT NULL REFERENCES blobs(sha256),"
    "  UNIQUE (run, checkpoint_id));"
    "CREATE INDEX checkpoints_by_time ON checkpoints(run, created_us);"
    "CREATE TABLE checkpoint_workers ("
    "  checkpoint INTEGER NOT NULL REFERENCES checkpoints(id),"
    "  idx INTEGER NOT NULL,"
    "  worker_id TEXT NOT NULL,"
    "  PRIMARY KEY (checkpoint, idx)) WITHOUT ROWID;",
    /* 2 -> 3: worker leases; a row outlives its lease, keeping the last
     * fencing token so the next one is larger, also across restarts. */
    "CREATE TABLE leases ("
    "  run INTEGER NOT NULL REFERENCES runs(id),"
    "  worker_id TEXT NOT NULL,"
    "  lease_id TEXT NOT NULL,"
    "  holder TEXT NOT NULL,"
    "  fencing_token INTEGER NOT NULL,"
    "  expires_us INTEGER NOT NULL," /* 0 once released */
    "  PRIMARY KEY (run, worker_id)) WITHOUT ROWID;",
};
enum { SCHEMA_VERSION = sizeof migrations / sizeof migrations[0] };

#define RUN_COLUMNS                                                                    \
    "id, run_id, created_us, next_seq, worker_count, completed_count, "                \
    "latest_checkpoint_id, checkpoint_events, latest_checkpoint_us"
#define CKPT_COLUMNS \
    "id, checkpoint_id, created_us, run_state, events_count, snapshot_size, snapshot_sha256"

static const char *const sql_text[N_STMT] = {
    [ST_BEGIN] = "BEGIN IMMEDIATE",
    [ST_COMMIT] = "COMMIT",
    [ST_ROLLBACK] = "ROLLBACK",
    [ST_SAVEPOINT] = "SAVEPOINT mutation",
    [ST_RELEASE] = "RELEASE mutation",
    [ST_ROLLBACK_TO] = "ROLLBACK TO mutation",
    [ST_READ_BEGIN] = "BEGIN",
    [ST_READ_END] = "COMMIT",
    [ST_RUN_BY_NAME] = "SELECT " RUN_COLUMNS " FROM runs WHERE run_id = ?1",
    [ST_RUNS_AFTER] = "SELECT " RUN_COLUMNS " FROM runs WHERE id > ?1 ORDER BY id LIMIT ?2",
    [ST_RUN_INSERT] = "INSERT INTO runs (run_id, created_us, worker_count) VALUES (?1, ?2, ?3)",
    [ST_RUN_SET_NEXT] = "UPDATE runs SET next_seq = ?2 WHERE id = ?1",
    [ST_RUN_COMPLETED] = "UPDATE runs SET next_seq = ?2, completed_count = completed_count + 1 "
                         "WHERE id = ?1",
    [ST_RUN_SET_CHECKPOINT] = "UPDATE runs SET latest_checkpoint_id = ?2, latest_checkpoint_us = ?3, "
                              "checkpoint_events = ?4 WHERE id = ?1",
    [ST_WORKERS] = "SELECT worker_id FROM run_workers WHERE run = ?1 ORDER BY idx",
    [ST_COMPLETED] = "SELECT worker_id FROM run_workers WHERE run = ?1 AND completed_seq > 0 "
                     "ORDER BY completed_seq",
    [ST_COMPLETED_UNTIL] = "SELECT worker_id FROM run_workers WHERE run = ?1 AND completed_seq > 0 "
                           "AND completed_seq <= ?2 ORDER BY completed_seq",
    [ST_COMPLETIONS] = "SELECT worker_id, completed_seq FROM run_workers "
                       "WHERE run = ?1 AND completed_seq > 0 ORDER BY completed_seq",
    [ST_WORKER_SEQ] = "SELECT completed_seq FROM run_workers WHERE run = ?1 AND worker_id = ?2",
    [ST_WORKER_SET_COMPLETED] = "UPDATE run_workers SET completed_seq = ?3 "
                                "WHERE run = ?1 AND worker_id = ?2",
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
    [ST_CKPT_INSERT] = "INSERT INTO checkpoints (run, checkpoint_id, created_us, run_state, "
                       "events_count, snapshot_size, snapshot_sha256) "
                       "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    [ST_CKPT_WORKER_INSERT] = "INSERT INTO checkpoint_workers (checkpoint, idx, worker_id) "
                              "VALUES (?1, ?2, ?3)",
    [ST_CKPT_WORKERS] = "SELECT worker_id FROM checkpoint_workers WHERE checkpoint = ?1 ORDER BY idx",
    /* Ids are fixed-width timestamps, so they sort like created_us. */
    [ST_CKPT_LIST] = "SELECT " CKPT_COLUMNS " FROM checkpoints WHERE run = ?1 AND checkpoint_id > ?2 "
                     "ORDER BY created_us LIMIT 1001",
    [ST_CKPT_BY_ID] = "SELECT " CKPT_COLUMNS " FROM checkpoints WHERE run = ?1 AND checkpoint_id = ?2",
    [ST_CKPT_LATEST] = "SELECT " CKPT_COLUMNS " FROM checkpoints WHERE run = ?1 "
                       "ORDER BY created_us DESC LIMIT 1",
    [ST_CKPT_NEWEST_FIRST] = "SELECT id, checkpoint_id, snapshot_sha256 FROM checkpoints "
                             "WHERE run = ?1 ORDER BY created_us DESC",
    [ST_CKPT_DELETE_WORKERS] = "DELETE FROM checkpoint_workers WHERE checkpoint = ?1",
    [ST_CKPT_DELETE] = "DELETE FROM checkpoints WHERE id = ?1",
    [ST_BLOB_REFS] = "SELECT refs FROM blobs WHERE sha256 = ?1",
    [ST_BLOB_INSERT] = "INSERT INTO blobs (sha256, size, refs) VALUES (?1, ?2, 1)",
    [ST_BLOB_ADD_REF] = "UPDATE blobs SET refs = refs + ?2 WHERE sha256 = ?1",
    [ST_BLOB_DELETE] = "DELETE FROM blobs WHERE sha256 = ?1",
    [ST_BLOB_EXISTS] = "SELECT 1 FROM blobs WHERE sha256 = ?1",
    [ST_LEASE_GET] = "SELECT lease_id, holder, fencing_token, expires_us FROM leases "
                     "WHERE run = ?1 AND worker_id = ?2",
    [ST_LEASE_PUT] = "INSERT OR REPLACE INTO leases (run, worker_id, lease_id, holder, "
                     "fencing_token, expires_us) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    [ST_LEASE_END] = "UPDATE leases SET expires_us = 0 WHERE run = ?1 AND worker_id = ?2",
};

/* ---- errors and statements ---- */

srv_code sq_db_fail(sqlite3 *db, int rc, const char *what, srv_error *err)
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

sqlite3_stmt *sq_stmt(conn *c, stmt_id id, srv_error *err)
{
    sqlite3_stmt *s = c->st[id];
    if (s) {
        sqlite3_reset(s);
        sqlite3_clear_bindings(s);
        return s;
    }
    int rc = sqlite3_prepare_v3(c->db, sql_text[id], -1, SQLITE_PREPARE_PERSISTENT, &s, NULL);
    if (rc != SQLITE_OK) {
        sq_db_fail(c->db, rc, "preparing a statement", err);
        return NULL;
    }
    c->st[id] = s;
    return s;
}

srv_code sq_step_done(conn *c, sqlite3_stmt *s, const char *what, srv_error *err)
{
    int rc = sqlite3_step(s);
    /* Classified before the reset, which would clear the OS error. */
    srv_code code = rc == SQLITE_DONE ? SRV_OK : sq_db_fail(c->db, rc, what, err);
    sqlite3_reset(s);
    return code;
}

srv_code sq_exec(conn *c, stmt_id id, const char *what, srv_error *err)
{
    sqlite3_stmt *s = sq_stmt(c, id, err);
    return s ? sq_step_done(c, s, what, err) : err->code;
}

void sq_bind_text(sqlite3_stmt *s, int i, const char *v)
{
    sqlite3_bind_text(s, i, v, -1, SQLITE_STATIC);
}

const char *sq_column_text(srv_arena *a, sqlite3_stmt *s, int i)
{
    const unsigned char *t = sqlite3_column_text(s, i);
    return srv_arena_strndup(a, t ? (const char *)t : "", (size_t)sqlite3_column_bytes(s, i));
}

char *sq_format_time(srv_arena *a, int64_t us)
{
    char buf[32];
    return srv_arena_strdup(a, srv_format_time(buf, us));
}

/* ---- reading runs ---- */

void sq_read_run_row(srv_arena *a, sqlite3_stmt *s, run_row *r)
{
    r->id = sqlite3_column_int64(s, 0);
    r->run_id = sq_column_text(a, s, 1);
    r->created_us = sqlite3_column_int64(s, 2);
    r->next_seq = (uint64_t)sqlite3_column_int64(s, 3);
    r->worker_count = sqlite3_column_int64(s, 4);
    r->completed_count = sqlite3_column_int64(s, 5);
    r->latest_checkpoint_id = sq_column_text(a, s, 6);
    r->checkpoint_events = (uint64_t)sqlite3_column_int64(s, 7);
    r->latest_checkpoint_us = sqlite3_column_int64(s, 8);
}

/* Finds a run by name: SRV_OK, or NOT_FOUND naming run_id. */
srv_code sq_find_run(conn *c, srv_arena *a, const char *run_id, run_row *r,
                         srv_error *err)
{
    sqlite3_stmt *s = sq_stmt(c, ST_RUN_BY_NAME, err);
    if (!s)
        return err->code;
    sq_bind_text(s, 1, run_id);
    int rc = sqlite3_step(s);
    if (rc == SQLITE_ROW) {
        sq_read_run_row(a, s, r);
        sqlite3_reset(s);
        return SRV_OK;
    }
    sqlite3_reset(s);
    if (rc != SQLITE_DONE)
        return sq_db_fail(c->db, rc, "reading a run", err);
    char q[SRV_QUOTE_MAX];
    return srv_fail(err, SRV_NOT_FOUND, "run_id: no run %s", srv_quote(q, run_id, strlen(run_id)));
}

srv_code sq_read_strings(conn *c, srv_arena *a, stmt_id id, int64_t key, int64_t key2,
                         char ***out, size_t *n, srv_error *err)
{
    sqlite3_stmt *s = sq_stmt(c, id, err);
    if (!s)
        return err->code;
    sqlite3_bind_int64(s, 1, key);
    if (sqlite3_bind_parameter_count(s) > 1)
        sqlite3_bind_int64(s, 2, key2);
    size_t cap = 0, len = 0;
    char **v = NULL;
    int rc;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        if (!(v = srv_arena_grow(a, v, len, &cap, sizeof *v))) {
            rc = SQLITE_NOMEM;
            break;
        }
        v[len++] = (char *)sq_column_text(a, s, 0);
    }
    sqlite3_reset(s);
    if (rc != SQLITE_DONE)
        return sq_db_fail(c->db, rc, "reading a list", err);
    *out = v;
    *n = len;
    return SRV_OK;
}

static srv_code read_labels(conn *c, srv_arena *a, int64_t run, Cairn__V1__Run *out,
                            srv_error *err)
{
    sqlite3_stmt *s = sq_stmt(c, ST_LABELS, err);
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
        e->key = (char *)sq_column_text(a, s, 0);
        e->value = (char *)sq_column_text(a, s, 1);
        v[n++] = e;
    }
    sqlite3_reset(s);
    if (rc != SQLITE_DONE)
        return sq_db_fail(c->db, rc, "reading labels", err);
    out->labels = v;
    out->n_labels = n;
    return SRV_OK;
}

const char *sq_run_state(const run_row *r)
{
    if (r->worker_count > 0 && r->completed_count >= r->worker_count)
        return "completed";
    return r->next_seq > 1 ? "running" : "created";
}

/* Fills a Run message from its row and child tables. */
srv_code sq_fill_run(conn *c, srv_arena *a, const run_row *r, Cairn__V1__Run *out,
                         srv_error *err)
{
    cairn__v1__run__init(out);
    out->run_id = (char *)r->run_id;
    out->state = (char *)sq_run_state(r);
    out->next_seq = r->next_seq;
    out->latest_checkpoint_id = (char *)r->latest_checkpoint_id;
    out->created_at = sq_format_time(a, r->created_us);
    srv_code rc = sq_read_strings(c, a, ST_WORKERS, r->id, 0, &out->workers, &out->n_workers, err);
    if (!rc)
        rc = sq_read_strings(c, a, ST_COMPLETED, r->id, 0, &out->completed_workers,
                          &out->n_completed_workers, err);
    if (!rc)
        rc = read_labels(c, a, r->id, out, err);
    return rc;
}

/* ---- reader pool ---- */

conn *sq_reader_get(sqlite_store *s)
{
    pthread_mutex_lock(&s->mu);
    while (!s->free_readers)
        pthread_cond_wait(&s->cv, &s->mu);
    conn *c = s->free_readers;
    s->free_readers = c->next_free;
    pthread_mutex_unlock(&s->mu);
    srv_error ignored; /* a failed BEGIN leaves autocommit reads: still correct per statement */
    sq_exec(c, ST_READ_BEGIN, "beginning a read", &ignored);
    return c;
}

void sq_reader_put(sqlite_store *s, conn *c)
{
    if (c->db && !sqlite3_get_autocommit(c->db)) {
        srv_error ignored;
        sq_exec(c, ST_READ_END, "ending a read", &ignored);
    }
    pthread_mutex_lock(&s->mu);
    c->next_free = s->free_readers;
    s->free_readers = c;
    pthread_cond_signal(&s->cv);
    pthread_mutex_unlock(&s->mu);
}

/* ---- write transactions ---- */

static srv_code sq_begin(srv_store *st, srv_error *err)
{
    return sq_exec(&sq_from(st)->writer, ST_BEGIN, "beginning a transaction", err);
}

srv_code sq_note_log(sqlite_store *s, const char *run_id, uint64_t last_seq, srv_error *err)
{
    for (size_t i = s->notes_mark; i < s->n_notes; i++) {
        if (strcmp(s->notes[i].run_id, run_id) == 0) {
            s->notes[i].last_seq = last_seq;
            return SRV_OK;
        }
    }
    if (s->n_notes == s->cap_notes) {
        size_t cap = s->cap_notes ? s->cap_notes * 2 : 16;
        struct log_note *v = realloc(s->notes, cap * sizeof *v);
        if (!v)
            return srv_fail(err, SRV_RESOURCE_EXHAUSTED, "out of memory");
        s->notes = v;
        s->cap_notes = cap;
    }
    snprintf(s->notes[s->n_notes].run_id, sizeof s->notes[0].run_id, "%s", run_id);
    s->notes[s->n_notes++].last_seq = last_seq;
    return SRV_OK;
}

static void sq_set_commit_observer(srv_store *st, srv_commit_observer fn, void *ctx)
{
    sq_from(st)->observer = fn;
    sq_from(st)->observer_ctx = ctx;
}

static srv_code sq_commit(srv_store *st, srv_error *err)
{
    sqlite_store *s = sq_from(st);
    srv_code rc = sq_exec(&s->writer, ST_COMMIT, "committing", err);
    if (!rc) {
        sq_blobs_after_commit(s);
        /* A run noted by several mutations of the batch: its last note
         * carries the highest seq; each note goes out as it stands. */
        for (size_t i = 0; s->observer && i < s->n_notes; i++)
            s->observer(s->observer_ctx, s->notes[i].run_id, s->notes[i].last_seq);
    }
    s->n_notes = s->notes_mark = 0;
    return rc;
}

static void sq_rollback(srv_store *st)
{
    conn *w = &sq_from(st)->writer;
    if (w->db && !sqlite3_get_autocommit(w->db)) {
        srv_error ignored;
        sq_exec(w, ST_ROLLBACK, "rolling back", &ignored);
    }
    sq_blobs_after_rollback(sq_from(st));
    sq_from(st)->n_notes = sq_from(st)->notes_mark = 0;
}

static srv_code sq_savepoint(srv_store *st, srv_error *err)
{
    sq_from(st)->notes_mark = sq_from(st)->n_notes;
    return sq_exec(&sq_from(st)->writer, ST_SAVEPOINT, "opening a savepoint", err);
}

static srv_code sq_release(srv_store *st, srv_error *err)
{
    return sq_exec(&sq_from(st)->writer, ST_RELEASE, "releasing a savepoint", err);
}

static void sq_rollback_to(srv_store *st)
{
    sq_from(st)->n_notes = sq_from(st)->notes_mark;
    conn *w = &sq_from(st)->writer;
    srv_error ignored;
    sq_exec(w, ST_ROLLBACK_TO, "rolling back a savepoint", &ignored);
    sq_exec(w, ST_RELEASE, "releasing a savepoint", &ignored);
}

/* ---- idempotency ---- */

static srv_code sq_dedup_get(srv_store *st, srv_arena *a, const srv_dedup_key *k,
                             srv_dedup_record *out, bool *found, srv_error *err)
{
    conn *w = &sq_from(st)->writer;
    sqlite3_stmt *s = sq_stmt(w, ST_DEDUP_GET, err);
    if (!s)
        return err->code;
    sq_bind_text(s, 1, k->run_id);
    sq_bind_text(s, 2, k->method);
    sq_bind_text(s, 3, k->key);
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
        return sq_db_fail(w->db, rc, "reading an idempotency record", err);
    return SRV_OK;
}

static srv_code sq_dedup_put(srv_store *st, const srv_dedup_key *k,
                             const srv_dedup_record *rec, int64_t now_us, srv_error *err)
{
    conn *w = &sq_from(st)->writer;
    sqlite3_stmt *s = sq_stmt(w, ST_DEDUP_PUT, err);
    if (!s)
        return err->code;
    sq_bind_text(s, 1, k->run_id);
    sq_bind_text(s, 2, k->method);
    sq_bind_text(s, 3, k->key);
    sqlite3_bind_blob(s, 4, rec->fingerprint, 32, SQLITE_STATIC);
    sqlite3_bind_blob(s, 5, rec->response_len ? rec->response : (const void *)"", (int)rec->response_len,
                      SQLITE_STATIC);
    sqlite3_bind_int64(s, 6, now_us);
    int rc = sqlite3_step(s);
    sqlite3_reset(s);
    if (rc != SQLITE_DONE)
        return sq_db_fail(w->db, rc, "recording an idempotency key", err);
    if (sqlite3_changes(w->db) != 1)
        return srv_fail(err, SRV_INTERNAL, "store: idempotency record for a missing run");
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
    sqlite_store *s = sq_from(st);
    sq_rollback(st);
    for (int i = 0; i < s->n_readers; i++)
        conn_close(&s->readers[i]);
    free(s->readers);
    conn_close(&s->writer);
    pthread_cond_destroy(&s->cv);
    pthread_mutex_destroy(&s->mu);
    free(s->unlink_after_commit);
    free(s->notes);
    free(s->dir);
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
        return sq_db_fail(db, sqlite3_errcode(db), "reading the schema version", err);
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
            srv_code code = sq_db_fail(db, rc, "migrating the schema", err);
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
        srv_code code = sq_db_fail(c->db, rc, "opening cairn.db", err);
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
        return sq_db_fail(c->db, rc, "configuring cairn.db", err);
    return SRV_OK;
}

static const struct srv_store_ops sqlite_ops = {
    .version = SRV_STORE_OPS_VERSION,
    .name = "sqlite",
    .close = sq_close,
    .set_commit_observer = sq_set_commit_observer,
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
    .complete_worker = sq_complete_worker,
    .acquire_worker = sq_acquire_worker,
    .renew_lease = sq_renew_lease,
    .release_worker = sq_release_worker,
    .create_checkpoint = sq_create_checkpoint,
    .cleanup_checkpoints = sq_cleanup_checkpoints,
    .stage_begin = sq_stage_begin,
    .stage_write = sq_stage_write,
    .stage_finish = sq_stage_finish,
    .stage_free = sq_stage_free,
    .list_checkpoints = sq_list_checkpoints,
    .get_checkpoint = sq_get_checkpoint,
    .read_resume_state = sq_read_resume_state,
    .blob_open = sq_blob_open,
    .blob_read = sq_blob_read,
    .blob_close = sq_blob_close,
};

srv_code srv_store_sqlite_open(const char *dir, int readers, srv_store **out, srv_error *err)
{
    sqlite_store *s = calloc(1, sizeof *s);
    if (!s)
        return srv_fail(err, SRV_RESOURCE_EXHAUSTED, "out of memory");
    s->base.ops = &sqlite_ops;
    pthread_mutex_init(&s->mu, NULL);
    pthread_cond_init(&s->cv, NULL);
    s->dir = strdup(dir);

    char path[4200];
    snprintf(path, sizeof path, "%s/cairn.db", dir);
    srv_code rc = s->dir ? conn_open(&s->writer, path, true, err)
                         : srv_fail(err, SRV_RESOURCE_EXHAUSTED, "out of memory");
    if (!rc)
        rc = srv_sqlite_migrate(s->writer.db, SCHEMA_VERSION, err);
    if (!rc)
        rc = sq_blobs_open(s, err);
    if (!rc) {
        s->readers = calloc((size_t)readers, sizeof *s->readers);
        if (!s->readers)
            rc = srv_fail(err, SRV_RESOURCE_EXHAUSTED, "out of memory");
    }
    for (int i = 0; !rc && i < readers; i++) {
        rc = conn_open(&s->readers[i], path, false, err);
        s->n_readers++;
        if (!rc)
            sq_reader_put(s, &s->readers[i]);
    }
    if (rc) {
        sq_close(&s->base);
        return rc;
    }
    *out = &s->base;
    return SRV_OK;
}
