/* The embedded store: one SQLite database, cairn.db, in the data dir, and
 * snapshot files under blobs/. WAL with synchronous=FULL, so a commit is
 * on disk before it is acknowledged. One write connection (the ledger's
 * writer thread), a pool of read-only connections for read snapshots, and
 * one connection for pins, which live in a database of their own,
 * pins.db, so that pinning never waits for the writer's transaction. The data dir is locked (flock on LOCK) while
 * the store is open, so one process owns it. This file: schema,
 * statements, connections, transactions, idempotency records, opening;
 * runs.c, leases.c, checkpoints.c and blobs.c hold the rest, and files.c
 * the data dir's checks (what cairnd trusts in it). */
#include "store/sqlite/sqlite_int.h"
#include "store/sqlite/sqlite.h"
#include "base/clock.h"
#include "base/error.h"
#include "base/log.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

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
    /* 3 -> 4: the data lifecycle. When a run completed (0: not yet; runs
     * completed before this version take their last event's time), the
     * records of runs that are gone (a DeleteRun's own key), and indexes
     * for the sweeps by time. */
    "ALTER TABLE runs ADD COLUMN completed_us INTEGER NOT NULL DEFAULT 0;"
    "UPDATE runs SET completed_us = (SELECT coalesce(max(created_us), runs.created_us) "
    "  FROM events WHERE run = runs.id) "
    "  WHERE worker_count > 0 AND completed_count >= worker_count;"
    "CREATE INDEX runs_by_completion ON runs(completed_us) WHERE completed_us > 0;"
    "CREATE INDEX dedup_by_time ON dedup(created_us);"
    "CREATE TABLE gone_dedup ("
    "  run_id TEXT NOT NULL,"
    "  method TEXT NOT NULL,"
    "  key TEXT NOT NULL,"
    "  fingerprint BLOB NOT NULL,"
    "  response BLOB NOT NULL,"
    "  created_us INTEGER NOT NULL,"
    "  PRIMARY KEY (run_id, method, key)) WITHOUT ROWID;"
    "CREATE INDEX gone_dedup_by_time ON gone_dedup(created_us);",
    /* 4 -> 5: give deleted pages back to the file system. A database made
     * before takes the setting only through a VACUUM, which rewrites it
     * once and cannot run inside a transaction (VACUUM_MIGRATION). */
    "PRAGMA auto_vacuum = INCREMENTAL; VACUUM;",
    /* 5 -> 6: one row per append instead of one per event (events.c);
     * each old event becomes a batch of one. And the idempotency records
     * move out of WITHOUT ROWID tables: there a record is its key, and
     * SQLite reads a whole overflowing record (a CreateRun's response can
     * be megabytes) for every comparison a key lookup makes beside it.
     * Now the keys have an index of their own and the records sit in
     * rowid order. */
    "CREATE TABLE event_batches ("
    "  run INTEGER NOT NULL REFERENCES runs(id),"
    "  last_seq INTEGER NOT NULL,"
    "  count INTEGER NOT NULL," /* seqs last_seq - count + 1 .. last_seq */
    "  created_us INTEGER NOT NULL,"
    "  records BLOB NOT NULL,"
    "  PRIMARY KEY (run, last_seq));"
    "INSERT INTO event_batches (run, last_seq, count, created_us, records) "
    "  SELECT run, seq, 1, created_us, cairn_event_record(type, worker_id, payload) "
    "  FROM events ORDER BY run, seq;"
    "DROP TABLE events;"
    "CREATE TABLE dedup_6 ("
    "  id INTEGER PRIMARY KEY,"
    "  run INTEGER NOT NULL REFERENCES runs(id),"
    "  method TEXT NOT NULL,"
    "  key TEXT NOT NULL,"
    "  fingerprint BLOB NOT NULL,"
    "  response BLOB NOT NULL,"
    "  created_us INTEGER NOT NULL);"
    "INSERT INTO dedup_6 (run, method, key, fingerprint, response, created_us) "
    "  SELECT run, method, key, fingerprint, response, created_us FROM dedup ORDER BY created_us;"
    "DROP TABLE dedup;"
    "ALTER TABLE dedup_6 RENAME TO dedup;"
    "CREATE UNIQUE INDEX dedup_by_key ON dedup(run, method, key);"
    "CREATE INDEX dedup_by_time ON dedup(created_us);"
    "CREATE TABLE gone_dedup_6 ("
    "  id INTEGER PRIMARY KEY,"
    "  run_id TEXT NOT NULL,"
    "  method TEXT NOT NULL,"
    "  key TEXT NOT NULL,"
    "  fingerprint BLOB NOT NULL,"
    "  response BLOB NOT NULL,"
    "  created_us INTEGER NOT NULL);"
    "INSERT INTO gone_dedup_6 (run_id, method, key, fingerprint, response, created_us) "
    "  SELECT run_id, method, key, fingerprint, response, created_us FROM gone_dedup "
    "  ORDER BY created_us;"
    "DROP TABLE gone_dedup;"
    "ALTER TABLE gone_dedup_6 RENAME TO gone_dedup;"
    "CREATE UNIQUE INDEX gone_dedup_by_key ON gone_dedup(run_id, method, key);"
    "CREATE INDEX gone_dedup_by_time ON gone_dedup(created_us);",
};
enum { SCHEMA_VERSION = sizeof migrations / sizeof migrations[0], VACUUM_MIGRATION = 4 };

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
    /* Any read of the database: it makes a deferred BEGIN take its snapshot. */
    [ST_READ_SNAPSHOT] = "PRAGMA schema_version",
    [ST_READ_END] = "COMMIT",
    [ST_RUN_BY_NAME] = "SELECT " RUN_COLUMNS " FROM runs WHERE run_id = ?1",
    /* substr, not LIKE: LIKE ignores case in SQLite */
    [ST_RUNS_AFTER] = "SELECT " RUN_COLUMNS " FROM runs WHERE id > ?1 AND "
                      "substr(run_id, 1, length(?3)) = ?3 ORDER BY id LIMIT ?2",
    [ST_RUN_INSERT] = "INSERT INTO runs (run_id, created_us, worker_count) VALUES (?1, ?2, ?3)",
    [ST_RUN_DELETE_EVENTS] = "DELETE FROM event_batches WHERE run = ?1",
    [ST_RUN_DELETE_WORKERS] = "DELETE FROM run_workers WHERE run = ?1",
    [ST_RUN_DELETE_LABELS] = "DELETE FROM run_labels WHERE run = ?1",
    [ST_RUN_DELETE_LEASES] = "DELETE FROM leases WHERE run = ?1",
    [ST_RUN_DELETE_DEDUP] = "DELETE FROM dedup WHERE run = ?1",
    [ST_RUN_DELETE] = "DELETE FROM runs WHERE id = ?1",
    [ST_RUN_SET_COMPLETED] = "UPDATE runs SET completed_us = ?2 WHERE id = ?1",
    [ST_RUNS_COMPLETED_BEFORE] = "SELECT run_id FROM runs WHERE completed_us > 0 "
                                 "AND completed_us < ?1 ORDER BY completed_us LIMIT ?2",
    /* Only from the head the caller read: a seq is never written twice. */
    [ST_RUN_SET_NEXT] = "UPDATE runs SET next_seq = ?2 WHERE id = ?1 AND next_seq = ?3",
    [ST_RUN_COMPLETED] = "UPDATE runs SET completed_count = completed_count + 1 WHERE id = ?1",
    [ST_RUN_SET_CHECKPOINT] = "UPDATE runs SET latest_checkpoint_id = ?2, latest_checkpoint_us = ?3, "
                              "checkpoint_events = ?4 WHERE id = ?1",
    [ST_WORKERS] = "SELECT worker_id FROM run_workers WHERE run = ?1 ORDER BY idx",
    [ST_COMPLETED] = "SELECT worker_id FROM run_workers WHERE run = ?1 AND completed_seq > 0 "
                     "ORDER BY completed_seq",
    [ST_COMPLETIONS] = "SELECT worker_id, completed_seq FROM run_workers "
                       "WHERE run = ?1 AND completed_seq > 0 ORDER BY completed_seq",
    [ST_WORKER_SEQ] = "SELECT completed_seq FROM run_workers WHERE run = ?1 AND worker_id = ?2",
    [ST_WORKER_SET_COMPLETED] = "UPDATE run_workers SET completed_seq = ?3 "
                                "WHERE run = ?1 AND worker_id = ?2",
    [ST_WORKER_INSERT] = "INSERT INTO run_workers (run, idx, worker_id) VALUES (?1, ?2, ?3)",
    [ST_LABELS] = "SELECT key, value FROM run_labels WHERE run = ?1 ORDER BY key",
    [ST_LABEL_INSERT] = "INSERT INTO run_labels (run, key, value) VALUES (?1, ?2, ?3)",
    [ST_EVENT_INSERT] = "INSERT INTO event_batches (run, last_seq, count, created_us, records) "
                        "VALUES (?1, ?2, ?3, ?4, ?5)",
    /* The row holding from_seq, then every later one. */
    [ST_EVENTS_FROM] = "SELECT last_seq, count, created_us, records FROM event_batches "
                       "WHERE run = ?1 AND last_seq >= ?2 ORDER BY last_seq",
    [ST_DEDUP_GET] = "SELECT d.fingerprint, d.response FROM dedup d JOIN runs r ON r.id = d.run "
                     "WHERE r.run_id = ?1 AND d.method = ?2 AND d.key = ?3 "
                     "UNION ALL SELECT fingerprint, response FROM gone_dedup "
                     "WHERE run_id = ?1 AND method = ?2 AND key = ?3 LIMIT 1",
    [ST_DEDUP_PUT] = "INSERT INTO dedup (run, method, key, fingerprint, response, created_us) "
                     "SELECT id, ?2, ?3, ?4, ?5, ?6 FROM runs WHERE run_id = ?1",
    [ST_DEDUP_PUT_GONE] = "INSERT INTO gone_dedup (run_id, method, key, fingerprint, response, "
                          "created_us) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    [ST_DEDUP_EXPIRE] = "DELETE FROM dedup WHERE id IN (SELECT id "
                        "FROM dedup WHERE created_us < ?1 LIMIT ?2)",
    [ST_DEDUP_EXPIRE_GONE] = "DELETE FROM gone_dedup WHERE id IN (SELECT "
                             "id FROM gone_dedup WHERE created_us < ?1 LIMIT ?2)",
    [ST_CKPT_INSERT] = "INSERT INTO checkpoints (run, checkpoint_id, created_us, run_state, "
                       "events_count, snapshot_size, snapshot_sha256) "
                       "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    [ST_CKPT_WORKER_INSERT] = "INSERT INTO checkpoint_workers (checkpoint, idx, worker_id) "
                              "VALUES (?1, ?2, ?3)",
    [ST_CKPT_WORKERS] = "SELECT worker_id FROM checkpoint_workers WHERE checkpoint = ?1 ORDER BY idx",
    /* Ids are fixed-width timestamps, so they sort like created_us. */
    [ST_CKPT_LIST] = "SELECT " CKPT_COLUMNS " FROM checkpoints WHERE run = ?1 AND checkpoint_id > ?2 "
                     "ORDER BY checkpoint_id LIMIT ?3",
    [ST_CKPT_BY_ID] = "SELECT " CKPT_COLUMNS " FROM checkpoints WHERE run = ?1 AND checkpoint_id = ?2",
    [ST_CKPT_LATEST] = "SELECT " CKPT_COLUMNS " FROM checkpoints WHERE run = ?1 "
                       "ORDER BY checkpoint_id DESC LIMIT 1",
    [ST_CKPT_DELETE_WORKERS] = "DELETE FROM checkpoint_workers WHERE checkpoint = "
                               "(SELECT id FROM checkpoints WHERE run = ?1 AND checkpoint_id = ?2)",
    [ST_CKPT_DELETE] = "DELETE FROM checkpoints WHERE run = ?1 AND checkpoint_id = ?2",
    [ST_BLOB_REFS] = "SELECT refs FROM blobs WHERE sha256 = ?1",
    [ST_BLOB_INSERT] = "INSERT INTO blobs (sha256, size, refs) VALUES (?1, ?2, 1)",
    [ST_BLOB_ADD_REF] = "UPDATE blobs SET refs = refs + ?2 WHERE sha256 = ?1",
    [ST_BLOB_DELETE] = "DELETE FROM blobs WHERE sha256 = ?1",
    [ST_BLOB_EXISTS] = "SELECT 1 FROM blobs WHERE sha256 = ?1",
    [ST_LEASE_GET] = "SELECT lease_id, holder, fencing_token, expires_us FROM leases "
                     "WHERE run = ?1 AND worker_id = ?2",
    [ST_USAGE] = "SELECT (SELECT count(*) FROM leases WHERE expires_us > ?1), "
                 "(SELECT coalesce(sum(size), 0) FROM blobs)",
    [ST_LEASE_PUT] = "INSERT OR REPLACE INTO leases (run, worker_id, lease_id, holder, "
                     "fencing_token, expires_us) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    [ST_PIN_INSERT] = "INSERT INTO pins (run_id, checkpoint_id, expires_us) VALUES (?1, ?2, ?3)",
    [ST_PIN_DELETE] = "DELETE FROM pins WHERE id = ?1",
    [ST_PINNED] = "SELECT 1 FROM pins WHERE run_id = ?1 AND checkpoint_id = ?2 "
                  "AND expires_us > ?3 LIMIT 1",
};

/* ---- errors and statements ---- */

srv_code sq_db_fail(sqlite3 *db, int rc, const char *what, srv_error *err)
{
    const char *detail = db ? sqlite3_errmsg(db) : sqlite3_errstr(rc);
    switch (rc) {
    case SQLITE_CONSTRAINT_PRIMARYKEY:
    case SQLITE_CONSTRAINT_UNIQUE:
        return srv_fail(err, SRV_ABORTED, "store: a concurrent write took the key while %s",
                        what);
    default:
        break;
    }
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

srv_code sq_read_strings(conn *c, srv_arena *a, stmt_id id, int64_t key, char ***out,
                         size_t *n, srv_error *err)
{
    sqlite3_stmt *s = sq_stmt(c, id, err);
    if (!s)
        return err->code;
    sqlite3_bind_int64(s, 1, key);
    return sq_step_strings(c, a, s, "reading a list", out, n, err);
}

srv_code sq_step_strings(conn *c, srv_arena *a, sqlite3_stmt *s, const char *what, char ***out,
                         size_t *n, srv_error *err)
{
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
        return sq_db_fail(c->db, rc, what, err);
    *out = v;
    *n = len;
    return SRV_OK;
}

/* ---- read snapshots: a reader connection inside BEGIN .. COMMIT ---- */

/* Ends the read transaction, if one is open, and returns the connection
 * to the pool. */
static void sq_read_end(srv_txn *t)
{
    sqlite_store *s = sq_of(t);
    conn *c = sq_conn(t);
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

static srv_code sq_read_begin(srv_store *st, srv_txn **out, srv_error *err)
{
    sqlite_store *s = sq_from(st);
    pthread_mutex_lock(&s->mu);
    while (!s->free_readers)
        pthread_cond_wait(&s->cv, &s->mu);
    conn *c = s->free_readers;
    s->free_readers = c->next_free;
    pthread_mutex_unlock(&s->mu);
    /* A deferred BEGIN takes its snapshot at the first read, which would
     * let a commit made after read_begin show; one read here takes it. */
    srv_code rc = sq_exec(c, ST_READ_BEGIN, "beginning a read", err);
    sqlite3_stmt *q = rc ? NULL : sq_stmt(c, ST_READ_SNAPSHOT, err);
    if (!rc && !q)
        rc = err->code;
    if (q) {
        int step = sqlite3_step(q);
        if (step != SQLITE_ROW)
            rc = sq_db_fail(c->db, step, "beginning a read", err);
        sqlite3_reset(q);
    }
    if (rc) {
        sq_read_end(&c->txn);
        return rc;
    }
    *out = &c->txn;
    return SRV_OK;
}

/* ---- the write transaction ---- */

static srv_code sq_begin(srv_store *st, srv_txn **out, srv_error *err)
{
    conn *w = &sq_from(st)->writer;
    srv_code rc = sq_exec(w, ST_BEGIN, "beginning a transaction", err);
    if (!rc)
        *out = &w->txn;
    return rc;
}

/* A failed fsync inside SQLite (of the WAL, or of the directory that got
 * it) on COMMIT stops the store like one of ours. The checkpointer's need
 * no such care (it warns and tries again later): a checkpoint whose fsync
 * failed does not advance the WAL's backfill mark, so the next copies the
 * same pages again, and the WAL only starts over after one that synced. */
static bool is_fsync_error(int rc)
{
    return rc == SQLITE_IOERR_FSYNC || rc == SQLITE_IOERR_DIR_FSYNC;
}

static srv_code sq_commit(srv_txn *t, srv_error *err)
{
    sqlite_store *s = sq_of(t);
    conn *w = &s->writer;
    sqlite3_stmt *q = sq_stmt(w, ST_COMMIT, err);
    if (!q)
        return err->code;
    int rc = sqlite3_step(q);
    srv_code code = SRV_OK;
    if (rc != SQLITE_DONE && is_fsync_error(rc)) {
        code = srv_fail(err, SRV_UNAVAILABLE, "store: syncing %s/cairn.db (its WAL) failed: %s",
                        s->dir, sqlite3_errmsg(w->db));
        srv_store_fail_stop(&s->base, err);
    } else if (rc != SQLITE_DONE) {
        code = sq_db_fail(w->db, rc, "committing", err);
    }
    sqlite3_reset(q);
    if (!code)
        sq_blobs_after_commit(s);
    return code;
}

static void sq_rollback(srv_txn *t)
{
    sqlite_store *s = sq_of(t);
    conn *w = &s->writer;
    if (w->db && !sqlite3_get_autocommit(w->db)) {
        srv_error ignored;
        sq_exec(w, ST_ROLLBACK, "rolling back", &ignored);
    }
    sq_blobs_after_rollback(s);
}

static srv_code sq_savepoint(srv_txn *t, srv_error *err)
{
    return sq_exec(sq_conn(t), ST_SAVEPOINT, "opening a savepoint", err);
}

static srv_code sq_release(srv_txn *t, srv_error *err)
{
    return sq_exec(sq_conn(t), ST_RELEASE, "releasing a savepoint", err);
}

static bool sq_txn_active(srv_txn *t)
{
    return !sqlite3_get_autocommit(sq_conn(t)->db);
}

static void sq_rollback_to(srv_txn *t)
{
    srv_error ignored;
    sq_exec(sq_conn(t), ST_ROLLBACK_TO, "rolling back a savepoint", &ignored);
    sq_exec(sq_conn(t), ST_RELEASE, "releasing a savepoint", &ignored);
}

/* ---- idempotency ---- */

static srv_code sq_dedup_get(srv_txn *t, srv_arena *a, const srv_dedup_key *k,
                             srv_dedup_record *out, bool *found, srv_error *err)
{
    conn *c = sq_conn(t);
    sqlite3_stmt *s = sq_stmt(c, ST_DEDUP_GET, err);
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
        return sq_db_fail(c->db, rc, "reading an idempotency record", err);
    return SRV_OK;
}

/* One statement of the two tables' inserts (same parameters). */
static srv_code dedup_insert(conn *w, stmt_id id, const srv_dedup_key *k,
                             const srv_dedup_record *rec, int64_t now_us, srv_error *err)
{
    sqlite3_stmt *s = sq_stmt(w, id, err);
    if (!s)
        return err->code;
    sq_bind_text(s, 1, k->run_id);
    sq_bind_text(s, 2, k->method);
    sq_bind_text(s, 3, k->key);
    sqlite3_bind_blob(s, 4, rec->fingerprint, 32, SQLITE_STATIC);
    sqlite3_bind_blob(s, 5, rec->response_len ? rec->response : (const void *)"",
                      (int)rec->response_len, SQLITE_STATIC);
    sqlite3_bind_int64(s, 6, now_us);
    return sq_step_done(w, s, "recording an idempotency key", err);
}

static srv_code sq_dedup_put(srv_txn *t, const srv_dedup_key *k, const srv_dedup_record *rec,
                             int64_t now_us, srv_error *err)
{
    conn *w = sq_conn(t);
    if (dedup_insert(w, ST_DEDUP_PUT, k, rec, now_us, err))
        return err->code;
    if (sqlite3_changes(w->db) == 1)
        return SRV_OK;
    return dedup_insert(w, ST_DEDUP_PUT_GONE, k, rec, now_us, err); /* the run is gone */
}

/* Runs a statement taking (before_us, limit) and adds the rows it changed. */
static srv_code delete_before(conn *w, stmt_id id, int64_t before_us, int64_t limit, size_t *n,
                              srv_error *err)
{
    sqlite3_stmt *s = sq_stmt(w, id, err);
    if (!s)
        return err->code;
    sqlite3_bind_int64(s, 1, before_us);
    sqlite3_bind_int64(s, 2, limit);
    if (sq_step_done(w, s, "forgetting idempotency keys", err))
        return err->code;
    *n += (size_t)sqlite3_changes(w->db);
    return SRV_OK;
}

static srv_code sq_dedup_expire(srv_txn *t, int64_t before_us, uint32_t limit, size_t *n,
                                srv_error *err)
{
    conn *w = sq_conn(t);
    *n = 0;
    if (delete_before(w, ST_DEDUP_EXPIRE, before_us, limit, n, err) ||
        delete_before(w, ST_DEDUP_EXPIRE_GONE, before_us, (int64_t)(limit - *n), n, err))
        return err->code;
    return sq_reclaim(w, err);
}

srv_code sq_reclaim(conn *w, srv_error *err)
{
    /* sqlite3_exec steps it to the end: one step frees one page. */
    int rc = sqlite3_exec(w->db, "PRAGMA incremental_vacuum", NULL, NULL, NULL);
    return rc == SQLITE_OK ? SRV_OK : sq_db_fail(w->db, rc, "reclaiming free pages", err);
}

/* ---- opening and closing ---- */

static void stop_checkpointer(sqlite_store *s);

static void conn_close(conn *c)
{
    for (int i = 0; i < N_STMT; i++)
        sqlite3_finalize(c->st[i]);
    free(c->scratch);
    sqlite3_close(c->db);
    memset(c, 0, sizeof *c);
}

static void sq_close(srv_store *st)
{
    sqlite_store *s = sq_from(st);
    stop_checkpointer(s);
    if (s->writer.db)
        sq_rollback(&s->writer.txn);
    for (int i = 0; i < s->n_readers; i++)
        conn_close(&s->readers[i]);
    free(s->readers);
    conn_close(&s->writer);
    conn_close(&s->pinner);
    pthread_cond_destroy(&s->cv);
    pthread_mutex_destroy(&s->mu);
    pthread_mutex_destroy(&s->pin_mu);
    pthread_cond_destroy(&s->ckpt_cv);
    pthread_mutex_destroy(&s->ckpt_mu);
    free(s->recheck);
    free(s->dir);
    if (s->lock_fd >= 0)
        close(s->lock_fd);
    for (int i = 0; i < 3; i++) {
        int fd = i == 0 ? s->staging_fd : i == 1 ? s->blobs_fd : s->dir_fd;
        if (fd >= 0)
            close(fd);
    }
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
    int frc = sq_register_event_record(db);
    if (frc != SQLITE_OK)
        return sq_db_fail(db, frc, "migrating the schema", err);
    for (; v < target && v < SCHEMA_VERSION; v++) {
        char bump[64];
        snprintf(bump, sizeof bump, "PRAGMA user_version = %d;", v + 1);
        /* The VACUUM step runs outside a transaction; a crash before its
         * bump runs it again, which changes nothing. */
        bool in_txn = v != VACUUM_MIGRATION;
        int rc = in_txn ? sqlite3_exec(db, "BEGIN IMMEDIATE", NULL, NULL, NULL) : SQLITE_OK;
        if (rc == SQLITE_OK)
            rc = sqlite3_exec(db, migrations[v], NULL, NULL, NULL);
        if (rc == SQLITE_OK)
            rc = sqlite3_exec(db, bump, NULL, NULL, NULL);
        if (rc == SQLITE_OK && in_txn)
            rc = sqlite3_exec(db, "COMMIT", NULL, NULL, NULL);
        if (rc != SQLITE_OK) {
            srv_code code = sq_db_fail(db, rc, "migrating the schema", err);
            sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
            return code;
        }
    }
    return SRV_OK;
}

#define TEXT_OF(x) #x
#define TEXT(x) TEXT_OF(x)
#define WAL_LIMIT_TEXT TEXT(SRV_SQLITE_WAL_LIMIT)

typedef enum conn_kind { CONN_WRITER, CONN_READER, CONN_PINNER, CONN_CHECKPOINTER } conn_kind;

static srv_code conn_open(sqlite_store *s, conn *c, const char *path, conn_kind kind,
                          srv_error *err)
{
    int flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX | SQLITE_OPEN_NOFOLLOW |
                (kind != CONN_READER ? SQLITE_OPEN_CREATE : 0);
    c->txn = (srv_txn){&s->base, kind == CONN_WRITER};
    int rc = sqlite3_open_v2(path, &c->db, flags, NULL);
    if (rc != SQLITE_OK) {
        srv_code code = sq_db_fail(c->db, rc, "opening cairn.db", err);
        sqlite3_close(c->db);
        c->db = NULL;
        return code;
    }
    sqlite3_extended_result_codes(c->db, 1);
    sqlite3_busy_timeout(c->db, 10000);
    /* Pins need no fsync: one lost with a crash was held by a reader
     * that died with it. They start empty: this process owns the store,
     * so no reader is left from before. */
    /* The writer leaves checkpoints to the checkpointer (no autocheckpoint),
     * and a WAL grown by a large batch is cut back once it starts over. */
    const char *pragmas = kind == CONN_WRITER ? "PRAGMA journal_mode = WAL;"
                                                "PRAGMA synchronous = FULL;"
                                                "PRAGMA foreign_keys = ON;"
                                                "PRAGMA wal_autocheckpoint = 0;"
                                                "PRAGMA journal_size_limit = " WAL_LIMIT_TEXT ";"
                          : kind == CONN_CHECKPOINTER ? "PRAGMA synchronous = FULL;"
                                                        "PRAGMA journal_size_limit = " WAL_LIMIT_TEXT ";"
                          : kind == CONN_PINNER ? "PRAGMA journal_mode = WAL;"
                                                  "PRAGMA synchronous = OFF;"
                                                  "CREATE TABLE IF NOT EXISTS pins ("
                                                  "  id INTEGER PRIMARY KEY,"
                                                  "  run_id TEXT NOT NULL,"
                                                  "  checkpoint_id TEXT NOT NULL,"
                                                  "  expires_us INTEGER NOT NULL);"
                                                  "CREATE INDEX IF NOT EXISTS pins_by_checkpoint"
                                                  "  ON pins(run_id, checkpoint_id);"
                                                  "DELETE FROM pins;"
                                                : "PRAGMA query_only = 1;";
    rc = sqlite3_exec(c->db, pragmas, NULL, NULL, NULL);
    if (rc != SQLITE_OK)
        return sq_db_fail(c->db, rc, "configuring cairn.db", err);
    return SRV_OK;
}

/* ---- WAL checkpoints, off the writer's thread ---- */

srv_code srv_sqlite_checkpoint(srv_store *st, srv_error *err)
{
    sqlite_store *s = sq_from(st);
    pthread_mutex_lock(&s->ckpt_mu);
    int rc = sqlite3_wal_checkpoint_v2(s->checkpointer.db, "main", SQLITE_CHECKPOINT_PASSIVE,
                                       NULL, NULL);
    srv_code code = rc == SQLITE_OK ? SRV_OK
                                    : sq_db_fail(s->checkpointer.db, rc, "checkpointing", err);
    pthread_mutex_unlock(&s->ckpt_mu);
    return code;
}

/* On the writer's thread after each commit: n pages in the WAL. */
static int wal_grew(void *arg, sqlite3 *db, const char *name, int n)
{
    (void)db;
    (void)name;
    sqlite_store *s = arg;
    if (n >= SRV_SQLITE_CHECKPOINT_FRAMES) {
        pthread_mutex_lock(&s->ckpt_mu);
        s->ckpt_wanted = true;
        pthread_cond_signal(&s->ckpt_cv);
        pthread_mutex_unlock(&s->ckpt_mu);
    }
    return SQLITE_OK;
}

static void *checkpoint_main(void *arg)
{
    sqlite_store *s = arg;
    pthread_mutex_lock(&s->ckpt_mu);
    for (;;) {
        while (!s->ckpt_wanted && !s->ckpt_quit)
            pthread_cond_wait(&s->ckpt_cv, &s->ckpt_mu);
        if (s->ckpt_quit)
            break;
        s->ckpt_wanted = false;
        pthread_mutex_unlock(&s->ckpt_mu);
        srv_error err;
        if (srv_sqlite_checkpoint(&s->base, &err))
            srv_warn("store: %s", err.msg); /* the WAL grows; the next try may do */
        pthread_mutex_lock(&s->ckpt_mu);
    }
    pthread_mutex_unlock(&s->ckpt_mu);
    return NULL;
}

static srv_code start_checkpointer(sqlite_store *s, const char *path, srv_error *err)
{
    srv_code rc = conn_open(s, &s->checkpointer, path, CONN_CHECKPOINTER, err);
    if (rc)
        return rc;
    if (pthread_create(&s->ckpt_thread, NULL, checkpoint_main, s) != 0)
        return srv_fail(err, SRV_RESOURCE_EXHAUSTED, "cannot start the checkpoint thread");
    s->ckpt_started = true;
    sqlite3_wal_hook(s->writer.db, wal_grew, s);
    return SRV_OK;
}

static void stop_checkpointer(sqlite_store *s)
{
    if (s->writer.db)
        sqlite3_wal_hook(s->writer.db, NULL, NULL);
    if (s->ckpt_started) {
        pthread_mutex_lock(&s->ckpt_mu);
        s->ckpt_quit = true;
        pthread_cond_signal(&s->ckpt_cv);
        pthread_mutex_unlock(&s->ckpt_mu);
        pthread_join(s->ckpt_thread, NULL);
        s->ckpt_started = false;
    }
    conn_close(&s->checkpointer);
}

/* One process owns the store: its own clock is the store's. */
static srv_code sq_now(srv_store *st, srv_txn *t, int64_t *now_us, srv_error *err)
{
    (void)st;
    (void)t;
    (void)err;
    *now_us = srv_now_us();
    return SRV_OK;
}

static const struct srv_store_ops sqlite_ops = {
    /* 4: no prefetch; a lookup here is a B-tree probe in this process,
     * not a round trip. */
    .version = 4,
    .name = "sqlite",
    .close = sq_close,
    .read_begin = sq_read_begin,
    .read_end = sq_read_end,
    .begin = sq_begin,
    .commit = sq_commit,
    .rollback = sq_rollback,
    .savepoint = sq_savepoint,
    .release = sq_release,
    .rollback_to = sq_rollback_to,
    .run_find = sq_run_find,
    .run_get = sq_run_get,
    .runs_list = sq_runs_list,
    .run_insert = sq_run_insert,
    .events_insert = sq_events_insert,
    .events_read = sq_events_read,
    .worker_get = sq_worker_get,
    .worker_complete = sq_worker_complete,
    .completions = sq_completions,
    .lease_get = sq_lease_get,
    .lease_put = sq_lease_put,
    .checkpoint_insert = sq_checkpoint_insert,
    .checkpoint_delete = sq_checkpoint_delete,
    .checkpoint_get = sq_checkpoint_get,
    .checkpoints_list = sq_checkpoints_list,
    .pin_add = sq_pin_add,
    .pin_remove = sq_pin_remove,
    .pinned = sq_pinned,
    .stage_begin = sq_stage_begin,
    .stage_write = sq_stage_write,
    .stage_finish = sq_stage_finish,
    .stage_free = sq_stage_free,
    .blob_link = sq_blob_link,
    .blob_unlink = sq_blob_unlink,
    .blob_open = sq_blob_open,
    .blob_read = sq_blob_read,
    .blob_close = sq_blob_close,
    .dedup_get = sq_dedup_get,
    .dedup_put = sq_dedup_put,
    .txn_active = sq_txn_active,
    .now = sq_now,
    .usage = sq_usage,
    .run_delete = sq_run_delete,
    .run_set_completed = sq_run_set_completed,
    .runs_completed_before = sq_runs_completed_before,
    .dedup_expire = sq_dedup_expire,
};

/* The data dir without trailing slashes ("/" stays), in a new string. */
static char *dir_name(const char *path)
{
    char *d = strdup(path);
    for (size_t n = d ? strlen(d) : 0; n > 1 && d[n - 1] == '/'; n--)
        d[n - 1] = '\0';
    return d;
}

srv_code srv_sqlite_open(const srv_store_config *cfg, srv_store **out, srv_error *err)
{
    sqlite_store *s = calloc(1, sizeof *s);
    if (!s)
        return srv_fail(err, SRV_RESOURCE_EXHAUSTED, "out of memory");
    s->base.ops = &sqlite_ops;
    s->lock_fd = s->dir_fd = s->blobs_fd = s->staging_fd = -1;
    pthread_mutex_init(&s->mu, NULL);
    pthread_cond_init(&s->cv, NULL);
    pthread_mutex_init(&s->pin_mu, NULL);
    pthread_mutex_init(&s->ckpt_mu, NULL);
    pthread_cond_init(&s->ckpt_cv, NULL);
    s->dir = dir_name(cfg->data_dir);
    int readers = cfg->readers > 0 ? cfg->readers : 1;

    char path[SQ_PATH_MAX], pins_path[SQ_PATH_MAX];
    snprintf(path, sizeof path, "%s/cairn.db", s->dir ? s->dir : "");
    snprintf(pins_path, sizeof pins_path, "%s/pins.db", s->dir ? s->dir : "");
    /* The data dir and LOCK are checked before anything is written; the
     * database files before SQLite opens them by path. */
    srv_code rc = s->dir ? sq_data_dir_open(s, err)
                         : srv_fail(err, SRV_RESOURCE_EXHAUSTED, "out of memory");
    if (!rc)
        rc = sq_lock_data_dir(s, err);
    if (!rc)
        rc = sq_db_files_prepare(s, "cairn.db", err);
    if (!rc)
        rc = sq_db_files_prepare(s, "pins.db", err);
    if (!rc)
        rc = conn_open(s, &s->writer, path, CONN_WRITER, err);
    if (!rc)
        rc = srv_sqlite_migrate(s->writer.db, SCHEMA_VERSION, err);
    if (!rc)
        rc = sq_blobs_open(s, err);
    if (!rc)
        rc = conn_open(s, &s->pinner, pins_path, CONN_PINNER, err);
    if (!rc)
        rc = start_checkpointer(s, path, err);
    if (!rc) {
        s->readers = calloc((size_t)readers, sizeof *s->readers);
        if (!s->readers)
            rc = srv_fail(err, SRV_RESOURCE_EXHAUSTED, "out of memory");
    }
    for (int i = 0; !rc && i < readers; i++) {
        rc = conn_open(s, &s->readers[i], path, CONN_READER, err);
        s->n_readers++;
        if (!rc) {
            s->readers[i].next_free = s->free_readers;
            s->free_readers = &s->readers[i];
        }
    }
    if (rc) {
        sq_close(&s->base);
        return rc;
    }
    s->opened = true;
    *out = &s->base;
    return SRV_OK;
}
