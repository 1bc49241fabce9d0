/* The clustered store: one PostgreSQL database shared by every cairnd
 * replica, reached through libpq. One write connection for the ledger's
 * transaction (READ COMMITTED; the run's row is locked FOR NO KEY UPDATE
 * when the writer reads it, which serializes the mutations of one run
 * across replicas), and a pool of connections for read snapshots
 * (REPEATABLE READ READ ONLY), pins, staging and reading snapshot bytes.
 * Every session runs with synchronous_commit = on, so a commit is on the
 * server's disk (and its synchronous standbys, if any) before cairnd
 * acknowledges it. This file: schema and its migration, the statements'
 * text, connections, transactions, the clock, idempotency records,
 * opening; exec.c sends statements, runs.c, leases.c, checkpoints.c and
 * blobs.c hold the rest. Design notes in README.md. */
#include "store/pg/pg_int.h"
#include "base/clock.h"
#include "base/error.h"
#include "base/log.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Forward-only migrations: migrations[v] takes the schema from version v
 * to v + 1. All text is COLLATE "C", so ids order bytewise, as in SQLite. */
static const char *const migrations[] = {
    /* 0 -> 1: everything of store.h. */
    "CREATE TABLE runs ("
    "  id bigserial PRIMARY KEY,"
    "  run_id text COLLATE \"C\" NOT NULL UNIQUE,"
    "  created_us int8 NOT NULL,"
    "  next_seq int8 NOT NULL DEFAULT 1,"
    "  worker_count int8 NOT NULL,"
    "  completed_count int8 NOT NULL DEFAULT 0,"
    "  latest_checkpoint_id text COLLATE \"C\" NOT NULL DEFAULT '',"
    "  checkpoint_events int8 NOT NULL DEFAULT 0,"
    "  latest_checkpoint_us int8 NOT NULL DEFAULT 0);"
    "CREATE TABLE run_workers ("
    "  run int8 NOT NULL REFERENCES runs(id),"
    "  idx int8 NOT NULL,"
    "  worker_id text COLLATE \"C\" NOT NULL,"
    "  completed_seq int8 NOT NULL DEFAULT 0," /* 0 = not completed */
    "  PRIMARY KEY (run, idx),"
    "  UNIQUE (run, worker_id));"
    "CREATE TABLE run_labels ("
    "  run int8 NOT NULL REFERENCES runs(id),"
    "  key text COLLATE \"C\" NOT NULL,"
    "  value text COLLATE \"C\" NOT NULL,"
    "  PRIMARY KEY (run, key));"
    "CREATE TABLE events ("
    "  run int8 NOT NULL REFERENCES runs(id),"
    "  seq int8 NOT NULL,"
    "  type text COLLATE \"C\" NOT NULL,"
    "  worker_id text COLLATE \"C\" NOT NULL,"
    "  payload bytea NOT NULL,"
    "  created_us int8 NOT NULL,"
    "  PRIMARY KEY (run, seq));"
    "CREATE TABLE dedup ("
    "  run int8 NOT NULL REFERENCES runs(id),"
    "  method text COLLATE \"C\" NOT NULL,"
    "  key text COLLATE \"C\" NOT NULL,"
    "  fingerprint bytea NOT NULL,"
    "  response bytea NOT NULL,"
    "  created_us int8 NOT NULL,"
    "  PRIMARY KEY (run, method, key));"
    /* Content-addressed snapshots, reference-counted; their bytes are
     * chunk rows owned by the sha256, or by 'stage:<id>' while an upload
     * is staged (stages.touched_at says it is still alive). */
    "CREATE TABLE blobs ("
    "  sha256 text COLLATE \"C\" PRIMARY KEY,"
    "  size int8 NOT NULL,"
    "  refs int8 NOT NULL);"
    "CREATE TABLE stages ("
    "  id bigserial PRIMARY KEY,"
    "  touched_at timestamptz NOT NULL DEFAULT now());"
    "CREATE TABLE blob_chunks ("
    "  owner text COLLATE \"C\" NOT NULL,"
    "  n int8 NOT NULL,"
    "  data bytea NOT NULL,"
    "  PRIMARY KEY (owner, n));"
    /* Snapshots are mostly compressed already: store them as they come. */
    "ALTER TABLE blob_chunks ALTER COLUMN data SET STORAGE EXTERNAL;"
    "CREATE TABLE checkpoints ("
    "  id bigserial PRIMARY KEY,"
    "  run int8 NOT NULL REFERENCES runs(id),"
    "  checkpoint_id text COLLATE \"C\" NOT NULL,"
    "  created_us int8 NOT NULL,"
    "  run_state text COLLATE \"C\" NOT NULL,"
    "  events_count int8 NOT NULL,"
    "  snapshot_size int8 NOT NULL,"
    "  snapshot_sha256 text COLLATE \"C\" NOT NULL REFERENCES blobs(sha256),"
    "  UNIQUE (run, checkpoint_id));"
    "CREATE TABLE checkpoint_workers ("
    "  checkpoint int8 NOT NULL REFERENCES checkpoints(id) ON DELETE CASCADE,"
    "  idx int8 NOT NULL,"
    "  worker_id text COLLATE \"C\" NOT NULL,"
    "  PRIMARY KEY (checkpoint, idx));"
    /* A row outlives its lease, keeping the last fencing token. */
    "CREATE TABLE leases ("
    "  run int8 NOT NULL REFERENCES runs(id),"
    "  worker_id text COLLATE \"C\" NOT NULL,"
    "  lease_id text COLLATE \"C\" NOT NULL,"
    "  holder text COLLATE \"C\" NOT NULL,"
    "  fencing_token int8 NOT NULL,"
    "  expires_us int8 NOT NULL," /* 0 once released */
    "  PRIMARY KEY (run, worker_id));"
    /* Pins need no durability (one lost in a crash was held by a reader
     * that died with it): unlogged, yet seen by every replica. */
    "CREATE UNLOGGED TABLE pins ("
    "  id bigserial PRIMARY KEY,"
    "  run_id text COLLATE \"C\" NOT NULL,"
    "  checkpoint_id text COLLATE \"C\" NOT NULL,"
    "  expires_us int8 NOT NULL);"
    "CREATE INDEX pins_by_checkpoint ON pins (run_id, checkpoint_id);",
    /* 1 -> 2: the data lifecycle. When a run completed (0: not yet; runs
     * completed before this version take their last event's time), the
     * records of runs that are gone (a DeleteRun's own key), and indexes
     * for the sweeps by time. */
    "ALTER TABLE runs ADD COLUMN completed_us int8 NOT NULL DEFAULT 0;"
    "UPDATE runs SET completed_us = (SELECT coalesce(max(created_us), runs.created_us) "
    "  FROM events WHERE run = runs.id) "
    "  WHERE worker_count > 0 AND completed_count >= worker_count;"
    "CREATE INDEX runs_by_completion ON runs (completed_us) WHERE completed_us > 0;"
    "CREATE INDEX dedup_by_time ON dedup (created_us);"
    "CREATE TABLE gone_dedup ("
    "  run_id text COLLATE \"C\" NOT NULL,"
    "  method text COLLATE \"C\" NOT NULL,"
    "  key text COLLATE \"C\" NOT NULL,"
    "  fingerprint bytea NOT NULL,"
    "  response bytea NOT NULL,"
    "  created_us int8 NOT NULL,"
    "  PRIMARY KEY (run_id, method, key));"
    "CREATE INDEX gone_dedup_by_time ON gone_dedup (created_us);",
};
enum { SCHEMA_VERSION = sizeof migrations / sizeof migrations[0] };

/* pg_advisory_xact_lock key serializing migrations of every replica:
 * "cairn" in ASCII. */
#define SCHEMA_LOCK_KEY "427296858478"

#define RUN_COLUMNS                                                                    \
    "id, run_id, created_us, next_seq, worker_count, completed_count, "                \
    "latest_checkpoint_id, checkpoint_events, latest_checkpoint_us"
#define CKPT_COLUMNS \
    "id, checkpoint_id, created_us, run_state, events_count, snapshot_size, snapshot_sha256"

const char *const pg_sql_text[PG_N_STMT] = {
    /* The database's clock, which every replica shares (README.md, "Time"). */
    [PS_NOW] = "SELECT (extract(epoch FROM clock_timestamp()) * 1000000)::int8",
    [PS_RUN_BY_NAME] = "SELECT " RUN_COLUMNS " FROM runs WHERE run_id = $1",
    /* The writer's read of a run: its row stays locked until the
     * transaction ends, so the mutations of one run, from any replica,
     * follow one another and each sees the next_seq the last one left. */
    [PS_RUN_BY_NAME_LOCKED] = "SELECT " RUN_COLUMNS " FROM runs WHERE run_id = $1 "
                              "FOR NO KEY UPDATE",
    [PS_RUNS_AFTER] = "SELECT " RUN_COLUMNS " FROM runs WHERE id > $1 AND "
                      "starts_with(run_id, $3) ORDER BY id LIMIT $2",
    [PS_RUN_INSERT] = "INSERT INTO runs (run_id, created_us, worker_count) VALUES ($1, $2, $3) "
                      "RETURNING id",
    [PS_WORKERS] = "SELECT worker_id FROM run_workers WHERE run = $1 ORDER BY idx",
    [PS_COMPLETED] = "SELECT worker_id FROM run_workers WHERE run = $1 AND completed_seq > 0 "
                     "ORDER BY completed_seq",
    [PS_COMPLETIONS] = "SELECT worker_id, completed_seq FROM run_workers "
                       "WHERE run = $1 AND completed_seq > 0 ORDER BY completed_seq",
    [PS_WORKER_SEQ] = "SELECT completed_seq FROM run_workers WHERE run = $1 AND worker_id = $2",
    [PS_WORKER_SET_COMPLETED] =
        "WITH w AS (UPDATE run_workers SET completed_seq = $3 "
        "           WHERE run = $1 AND worker_id = $2 RETURNING 1) "
        "UPDATE runs SET completed_count = completed_count + (SELECT count(*) FROM w) "
        "WHERE id = $1 RETURNING (SELECT count(*) FROM w)",
    [PS_LABELS] = "SELECT key, value FROM run_labels WHERE run = $1 ORDER BY key",
    /* At most $3 events, stopping before their cost ($4 each plus the
     * payload) passes $5, but at least one. octet_length of a stored
     * payload reads its header only, so the rows past the budget are never
     * fetched whole. */
    [PS_EVENTS_FROM] =
        "SELECT seq, type, worker_id, payload, created_us FROM ("
        "  SELECT e.*, row_number() OVER w AS i, sum(octet_length(payload) + $4::int8) OVER w "
        "    AS spent"
        "  FROM (SELECT * FROM events WHERE run = $1 AND seq >= $2 ORDER BY seq LIMIT $3) e"
        "  WINDOW w AS (ORDER BY seq)) p "
        "WHERE i = 1 OR spent <= $5::int8 ORDER BY seq",
    /* Events of any runs (pending.c; arrays in binary): $2[i] run, $3[i]
     * seq, $4..$6 type, worker, payload; each run's next_seq after its
     * last, in one statement. The announcement goes out when (and if)
     * the transaction commits. */
    [PS_EVENTS_APPEND] =
        "WITH e AS (INSERT INTO events (run, seq, type, worker_id, payload, created_us) "
        "           SELECT u.r, u.s, u.t, u.w, u.p, $1 "
        "           FROM unnest($2::int8[], $3::int8[], $4::text[], $5::text[], $6::bytea[]) "
        "           AS u(r, s, t, w, p)), "
        "     h AS (SELECT v.r, max(v.s) + 1 AS next FROM unnest($2::int8[], $3::int8[]) "
        "           AS v(r, s) GROUP BY v.r) "
        "UPDATE runs SET next_seq = h.next FROM h WHERE runs.id = h.r "
        "RETURNING pg_notify('" PG_CHANNEL "', (runs.next_seq - 1)::text || ' ' || runs.run_id)",
    [PS_DEDUP_GET] = "SELECT d.fingerprint, d.response FROM dedup d JOIN runs r ON r.id = d.run "
                     "WHERE r.run_id = $1 AND d.method = $2 AND d.key = $3 "
                     "UNION ALL SELECT fingerprint, response FROM gone_dedup "
                     "WHERE run_id = $1 AND method = $2 AND key = $3 LIMIT 1",
    /* The runs of a batch, locked in one order by every replica (so two
     * batches sharing runs wait, never deadlock). */
    [PS_RUNS_LOCK] = "SELECT " RUN_COLUMNS " FROM runs WHERE run_id = ANY($1::text[]) "
                     "ORDER BY run_id FOR NO KEY UPDATE",
    /* The records of a batch's keys: ($1[i], $2[i], $3[i]) = (run id,
     * method, key). */
    [PS_DEDUP_GET_MANY] =
        "SELECT k.r, k.m, k.k, x.fingerprint, x.response "
        "FROM unnest($1::text[], $2::text[], $3::text[]) AS k(r, m, k), LATERAL ("
        "  SELECT d.fingerprint, d.response FROM runs r JOIN dedup d ON d.run = r.id "
        "  WHERE r.run_id = k.r AND d.method = k.m AND d.key = k.k "
        "  UNION ALL SELECT g.fingerprint, g.response FROM gone_dedup g "
        "  WHERE g.run_id = k.r AND g.method = k.m AND g.key = k.k LIMIT 1) x",
    /* The records held back by a batch (pending.c), of runs it holds. */
    [PS_DEDUP_PUT_ROWS] = "INSERT INTO dedup (run, method, key, fingerprint, response, created_us) "
                          "SELECT * FROM unnest($1::int8[], $2::text[], $3::text[], $4::bytea[], "
                          "$5::bytea[], $6::int8[])",
    [PS_DEDUP_PUT] = "INSERT INTO dedup (run, method, key, fingerprint, response, created_us) "
                     "SELECT id, $2, $3, $4, $5, $6 FROM runs WHERE run_id = $1",
    [PS_DEDUP_PUT_GONE] = "INSERT INTO gone_dedup (run_id, method, key, fingerprint, response, "
                          "created_us) VALUES ($1, $2, $3, $4, $5, $6)",
    [PS_DEDUP_EXPIRE] = "DELETE FROM dedup WHERE (run, method, key) IN (SELECT run, method, key "
                        "FROM dedup WHERE created_us < $1 LIMIT $2)",
    [PS_DEDUP_EXPIRE_GONE] = "DELETE FROM gone_dedup WHERE (run_id, method, key) IN (SELECT "
                             "run_id, method, key FROM gone_dedup WHERE created_us < $1 LIMIT $2)",
    /* Every row of the run in one statement: the foreign keys are checked
     * at its end, once the children are gone too. Announced at commit, as
     * appends are, so every replica ends its watchers of the run. */
    [PS_RUN_DELETE] = "WITH e AS (DELETE FROM events WHERE run = $1), "
                      "     w AS (DELETE FROM run_workers WHERE run = $1), "
                      "     l AS (DELETE FROM run_labels WHERE run = $1), "
                      "     s AS (DELETE FROM leases WHERE run = $1), "
                      "     d AS (DELETE FROM dedup WHERE run = $1) "
                      "DELETE FROM runs WHERE id = $1 "
                      "RETURNING pg_notify('" PG_CHANNEL "', '" PG_DELETED "' || run_id)",
    [PS_RUN_SET_COMPLETED] = "UPDATE runs SET completed_us = $2 WHERE id = $1",
    [PS_RUNS_COMPLETED_BEFORE] = "SELECT run_id FROM runs WHERE completed_us > 0 "
                                 "AND completed_us < $1 ORDER BY completed_us LIMIT $2",
    [PS_CKPT_INSERT] =
        "WITH c AS (INSERT INTO checkpoints (run, checkpoint_id, created_us, run_state, "
        "           events_count, snapshot_size, snapshot_sha256) "
        "           VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id), "
        "     w AS (INSERT INTO checkpoint_workers (checkpoint, idx, worker_id) "
        "           SELECT c.id, u.o - 1, u.w FROM c, unnest($8::text[]) WITH ORDINALITY "
        "           AS u(w, o)) "
        "UPDATE runs SET latest_checkpoint_id = $2, latest_checkpoint_us = $3, "
        "checkpoint_events = $5 WHERE id = $1",
    [PS_CKPT_WORKERS] = "SELECT worker_id FROM checkpoint_workers WHERE checkpoint = $1 "
                        "ORDER BY idx",
    /* Ids are fixed-width timestamps, so they sort like created_us. */
    [PS_CKPT_LIST] = "SELECT " CKPT_COLUMNS " FROM checkpoints WHERE run = $1 "
                     "AND checkpoint_id > $2 ORDER BY checkpoint_id LIMIT $3",
    [PS_CKPT_BY_ID] = "SELECT " CKPT_COLUMNS " FROM checkpoints WHERE run = $1 "
                      "AND checkpoint_id = $2",
    [PS_CKPT_LATEST] = "SELECT " CKPT_COLUMNS " FROM checkpoints WHERE run = $1 "
                       "ORDER BY checkpoint_id DESC LIMIT 1",
    [PS_CKPT_DELETE] = "DELETE FROM checkpoints WHERE run = $1 AND checkpoint_id = $2",
    [PS_LEASE_GET] = "SELECT lease_id, holder, fencing_token, expires_us FROM leases "
                     "WHERE run = $1 AND worker_id = $2",
    [PS_USAGE] = "SELECT (SELECT count(*) FROM leases WHERE expires_us > $1), "
                 "pg_database_size(current_database())",
    [PS_LEASE_PUT] = "INSERT INTO leases (run, worker_id, lease_id, holder, fencing_token, "
                     "expires_us) VALUES ($1, $2, $3, $4, $5, $6) "
                     "ON CONFLICT (run, worker_id) DO UPDATE SET lease_id = excluded.lease_id, "
                     "holder = excluded.holder, fencing_token = excluded.fencing_token, "
                     "expires_us = excluded.expires_us",
    /* The pin and the cleanup meet on the checkpoint's row (README.md,
     * "Pins"): the pin takes it FOR KEY SHARE, the cleanup's pinned FOR
     * UPDATE, so one waits for the other to commit. */
    [PS_PIN_INSERT] = "WITH k AS (SELECT 1 FROM checkpoints k JOIN runs r ON r.id = k.run "
                      "           WHERE r.run_id = $1 AND k.checkpoint_id = $2 "
                      "           FOR KEY SHARE OF k) "
                      "INSERT INTO pins (run_id, checkpoint_id, expires_us) "
                      "SELECT $1, $2, $3 FROM (SELECT count(*) FROM k) n RETURNING id",
    [PS_CKPT_LOCK] = "SELECT 1 FROM checkpoints k JOIN runs r ON r.id = k.run "
                     "WHERE r.run_id = $1 AND k.checkpoint_id = $2 FOR UPDATE OF k",
    [PS_PIN_DELETE] = "DELETE FROM pins WHERE id = $1",
    [PS_PINNED] = "SELECT 1 FROM pins WHERE run_id = $1 AND checkpoint_id = $2 "
                  "AND expires_us > $3 LIMIT 1",
    [PS_STAGE_NEW] = "INSERT INTO stages DEFAULT VALUES RETURNING id",
    [PS_STAGE_CHUNK] = "WITH t AS (UPDATE stages SET touched_at = now() WHERE id = $1) "
                       "INSERT INTO blob_chunks (owner, n, data) "
                       "VALUES ('stage:' || $1::text, $2, $3)",
    /* $1 typed once for both uses (else text, and id = $1 fails). */
    [PS_STAGE_DROP] = "WITH c AS (DELETE FROM blob_chunks WHERE owner = 'stage:' || $1::int8) "
                      "DELETE FROM stages WHERE id = $1::int8",
    /* refs comes back 1 when the content is new: its chunks move over. */
    [PS_BLOB_LINK] = "INSERT INTO blobs (sha256, size, refs) VALUES ($1, $2, 1) "
                     "ON CONFLICT (sha256) DO UPDATE SET refs = blobs.refs + 1 RETURNING refs",
    [PS_BLOB_MOVE_STAGE] = "UPDATE blob_chunks SET owner = $1 WHERE owner = 'stage:' || $2::text",
    /* The stored copy, before a new one of the same content moves in. */
    [PS_BLOB_DROP_CHUNKS] = "DELETE FROM blob_chunks WHERE owner = $1",
    [PS_BLOB_UNREF] = "UPDATE blobs SET refs = refs - 1 WHERE sha256 = $1 RETURNING refs",
    [PS_BLOB_DROP] = "WITH c AS (DELETE FROM blob_chunks WHERE owner = $1) "
                     "DELETE FROM blobs WHERE sha256 = $1",
    [PS_BLOB_SIZE] = "SELECT size FROM blobs WHERE sha256 = $1",
    [PS_BLOB_CHUNK] = "SELECT data FROM blob_chunks WHERE owner = $1 AND n = $2",
};

/* ---- connections ---- */

/* Settings of every session: acknowledged means on disk (DESIGN.md,
 * "Durability"), times in UTC, no notices in cairnd's log. */
static const char SESSION_SETUP[] = "SET synchronous_commit = on;"
                                    "SET TIME ZONE 'UTC';"
                                    "SET client_min_messages = warning;"
                                    "SET application_name = 'cairnd'";

/* Forgets what the writer's transaction sent, held, read or locked (it
 * is over, or about to begin). */
static void txn_forget(pg_conn *w)
{
    pg_pending_drop(w, 0);
    pg_heads_clear(w);
    pg_known_clear(w);
    w->now_us = 0;
    w->in_txn = false;
}

srv_code pg_conn_setup(pg_conn *c, srv_error *err)
{
    memset(c->prepared, 0, sizeof c->prepared);
    txn_forget(c);
    return pg_exec(c, SESSION_SETUP, "configuring a PostgreSQL session", err);
}

static srv_code conn_open(pg_store *s, pg_conn *c, bool writer, srv_error *err)
{
    c->txn = (srv_txn){&s->base, writer};
    c->pg = PQconnectdb(s->dsn);
    if (!c->pg)
        return srv_fail(err, SRV_RESOURCE_EXHAUSTED, "out of memory");
    if (PQstatus(c->pg) != CONNECTION_OK)
        return pg_fail(c, NULL, "connecting to PostgreSQL (--pg-dsn)", err);
    return pg_conn_setup(c, err);
}

/* Whether a connection libpq still calls good is good. libpq learns that
 * the server closed it only when it reads, and an idle connection reads
 * nothing: after a restart of PostgreSQL (or pg_terminate_backend) every
 * pooled connection would fail its next statement, UNAVAILABLE, though
 * the server is back. An idle session has nothing to say, so input
 * waiting on it is the server's goodbye (a FATAL message, then the end
 * of the stream) or a notice: read it, and a closed stream makes the
 * connection bad. A server that is going away right now still fails the
 * next statement; that is UNAVAILABLE, and the client retries. */
static bool conn_alive(pg_conn *c)
{
    for (int i = 0; i < 4 && c->pg && PQstatus(c->pg) == CONNECTION_OK; i++) {
        struct pollfd p = {PQsocket(c->pg), POLLIN, 0};
        if (poll(&p, 1, 0) <= 0)
            return true;
        if (!PQconsumeInput(c->pg))
            return false;
    }
    return c->pg && PQstatus(c->pg) == CONNECTION_OK;
}

/* A connection lost (the server restarted, the network broke) is made
 * again before use; its prepared statements go with the old session. */
static srv_code conn_ready(pg_conn *c, srv_error *err)
{
    if (conn_alive(c))
        return SRV_OK;
    PQreset(c->pg);
    if (PQstatus(c->pg) != CONNECTION_OK)
        return pg_fail(c, NULL, "reconnecting to PostgreSQL", err);
    return pg_conn_setup(c, err);
}

pg_conn *pg_take(pg_store *s, srv_error *err)
{
    pthread_mutex_lock(&s->mu);
    while (!s->free_pool)
        pthread_cond_wait(&s->cv, &s->mu);
    pg_conn *c = s->free_pool;
    s->free_pool = c->next_free;
    pthread_mutex_unlock(&s->mu);
    if (conn_ready(c, err)) {
        pg_give(s, c);
        return NULL;
    }
    return c;
}

void pg_give(pg_store *s, pg_conn *c)
{
    pthread_mutex_lock(&s->mu);
    c->next_free = s->free_pool;
    s->free_pool = c;
    pthread_cond_signal(&s->cv);
    pthread_mutex_unlock(&s->mu);
}

/* ---- read snapshots: a pool connection inside a REPEATABLE READ
 * transaction, whose snapshot the SELECT takes at once ---- */

static void pg_read_end(srv_txn *t)
{
    pg_conn *c = pg_conn_of(t);
    if (c->in_txn && PQstatus(c->pg) == CONNECTION_OK) {
        srv_error ignored;
        pg_exec(c, "ROLLBACK", "ending a read", &ignored);
    }
    c->in_txn = false;
    pg_give(pg_from(t->store), c);
}

static srv_code pg_read_begin(srv_store *st, srv_txn **out, srv_error *err)
{
    pg_conn *c = pg_take(pg_from(st), err);
    if (!c)
        return err->code;
    c->in_txn = true;
    if (pg_exec(c, "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY; SELECT 1",
                "beginning a read", err)) {
        pg_read_end(&c->txn);
        return err->code;
    }
    *out = &c->txn;
    return SRV_OK;
}

/* ---- the write transaction ----
 *
 * Pending statements (pending.c): BEGIN, SAVEPOINT, RELEASE and ROLLBACK
 * TO return nothing the ledger needs, nor do the events and the
 * idempotency records of an append, so they are held on the writer and
 * go out in front of its next statement, in the same round trip
 * (call_piped), the writes merged. A savepoint whose mutation sent
 * nothing is taken out of the list instead of being sent, released or
 * rolled back to; rolling it back drops what the mutation held back.
 * pg_txn_active reads the transaction status of the last round trip; an
 * error of a pending statement comes back from the statement that
 * carried it, and takes the transaction with it. */

static srv_code pg_begin(srv_store *st, srv_txn **out, srv_error *err)
{
    pg_conn *w = &pg_from(st)->writer;
    if (conn_ready(w, err))
        return err->code;
    txn_forget(w);
    if (pg_queue(w, "BEGIN ISOLATION LEVEL READ COMMITTED", err))
        return err->code;
    w->begin_queued = true;
    w->in_txn = true;
    *out = &w->txn;
    return SRV_OK;
}

static srv_code pg_commit(srv_txn *t, srv_error *err)
{
    pg_conn *w = pg_conn_of(t);
    if (w->begin_queued && !pg_pending_writes(w)) { /* nothing of it was sent or held */
        txn_forget(w);
        return SRV_OK;
    }
    PGresult *r = pg_query(w, "COMMIT", "committing", err);
    srv_code rc = SRV_OK;
    if (!r)
        /* Lost on the way: whether it committed is unknown, and a client
         * retrying with its key finds out (DESIGN.md, "Idempotency"). Or
         * a write held back failed: then its transaction is still open,
         * failed, and is rolled back. */
        rc = err->code;
    else if (strcmp(PQcmdStatus(r), "COMMIT") != 0) /* an earlier error undid it */
        rc = srv_fail(err, SRV_ABORTED, "store: the transaction failed before its commit");
    PQclear(r);
    if (rc && w->pg && PQstatus(w->pg) == CONNECTION_OK &&
        PQtransactionStatus(w->pg) != PQTRANS_IDLE) {
        srv_error ignored;
        pg_exec(w, "ROLLBACK", "rolling back", &ignored);
    }
    txn_forget(w);
    return rc;
}

static void pg_rollback(srv_txn *t)
{
    pg_conn *w = pg_conn_of(t);
    bool sent = !w->begin_queued;
    pg_pending_drop(w, 0); /* what was never sent needs no undoing */
    if (sent && w->in_txn && w->pg && PQstatus(w->pg) == CONNECTION_OK &&
        PQtransactionStatus(w->pg) != PQTRANS_IDLE) {
        srv_error ignored;
        pg_exec(w, "ROLLBACK", "rolling back", &ignored);
    }
    txn_forget(w);
}

static srv_code pg_savepoint(srv_txn *t, srv_error *err)
{
    pg_conn *w = pg_conn_of(t);
    int at = w->n_pending;
    if (pg_queue(w, "SAVEPOINT mutation", err))
        return err->code;
    w->savepoint_at = at;
    return SRV_OK;
}

static srv_code pg_release(srv_txn *t, srv_error *err)
{
    pg_conn *w = pg_conn_of(t);
    if (w->savepoint_at >= 0) {
        pg_pending_remove(w, w->savepoint_at);
        w->savepoint_at = -1;
        return SRV_OK;
    }
    return pg_queue(w, "RELEASE SAVEPOINT mutation", err);
}

/* A failed statement inside a savepoint leaves the transaction waiting
 * for ROLLBACK TO (PQTRANS_INERROR): still there. A lost connection took
 * it with it. A BEGIN still pending is a transaction with nothing sent
 * yet, alive while its connection is. */
static bool pg_txn_active(srv_txn *t)
{
    pg_conn *w = pg_conn_of(t);
    if (!w->in_txn || PQstatus(w->pg) != CONNECTION_OK)
        return false;
    if (w->begin_queued)
        return true;
    PGTransactionStatusType s = PQtransactionStatus(w->pg);
    return s == PQTRANS_INTRANS || s == PQTRANS_INERROR;
}

/* What the mutation held back goes; row locks taken since the savepoint
 * go with it, and other processes may have written since the records
 * were read ahead: the run heads and the records known are forgotten
 * (read again, after what earlier mutations held back is sent). */
static void pg_rollback_to(srv_txn *t)
{
    pg_conn *w = pg_conn_of(t);
    pg_heads_clear(w);
    pg_known_clear(w);
    if (w->savepoint_at >= 0) { /* never sent: drop it and what followed */
        pg_pending_drop(w, w->savepoint_at);
        return;
    }
    pg_pending_drop(w, 0); /* all of it came after the savepoint, which went out */
    srv_error ignored;
    if (pg_queue(w, "ROLLBACK TO SAVEPOINT mutation", &ignored) ||
        pg_queue(w, "RELEASE SAVEPOINT mutation", &ignored))
        return;
}

/* ---- the clock ---- */

static srv_code pg_now(srv_store *st, srv_txn *t, int64_t *now_us, srv_error *err)
{
    pg_store *s = pg_from(st);
    if (t && pg_conn_of(t)->now_us) { /* read ahead with the batch's runs */
        *now_us = pg_conn_of(t)->now_us;
        return SRV_OK;
    }
    pg_conn *c = t ? pg_conn_of(t) : pg_take(s, err);
    if (!c)
        return err->code;
    PGresult *r = pg_run(c, PS_NOW, NULL, "reading the database's clock", err);
    if (r) {
        *now_us = pg_col_i64(r, 0, 0);
        PQclear(r);
    }
    if (!t)
        pg_give(s, c);
    return r ? SRV_OK : err->code;
}

/* ---- idempotency ----
 *
 * The writer knows the records of keys it read with their runs locked
 * (ahead, by prefetch, or one at a time): another process writes a
 * run's record only holding the run's row, so what was read stays true
 * until this transaction ends. It knows too the records it wrote itself
 * (held back, not yet in the database). A key it does not know is read
 * from the database, after what is held back is sent. */

void pg_known_clear(pg_conn *c)
{
    for (int i = 0; i < c->n_known; i++) {
        pg_known_key *k = &c->known[i];
        free(k->run_id);
        free(k->method);
        free(k->key);
        free(k->response);
    }
    c->n_known = 0;
}

static pg_known_key *known_find(pg_conn *c, const srv_dedup_key *k)
{
    for (int i = 0; i < c->n_known; i++) {
        pg_known_key *e = &c->known[i];
        if (strcmp(e->key, k->key) == 0 && strcmp(e->run_id, k->run_id) == 0 &&
            strcmp(e->method, k->method) == 0)
            return e;
    }
    return NULL;
}

/* Records what the writer knows of key k: found with fingerprint and
 * response, or not found. Out of memory it knows nothing of k (found
 * the key is forgotten, and read again from the database). */
static void known_set(pg_conn *c, const srv_dedup_key *k, bool found, const uint8_t *fingerprint,
                      const uint8_t *response, size_t response_len)
{
    pg_known_key *e = known_find(c, k);
    if (!e) {
        pg_known_key *grown = pg_grow(c->known, c->n_known, &c->cap_known, sizeof *grown);
        if (!grown)
            return;
        c->known = grown;
        e = &c->known[c->n_known];
        memset(e, 0, sizeof *e);
        e->run_id = strdup(k->run_id);
        e->method = strdup(k->method);
        e->key = strdup(k->key);
        if (!e->run_id || !e->method || !e->key) {
            free(e->run_id);
            free(e->method);
            free(e->key);
            return;
        }
        c->n_known++;
    }
    free(e->response);
    e->response = NULL;
    e->response_len = 0;
    e->found = found;
    if (!found)
        return;
    memcpy(e->fingerprint, fingerprint, 32);
    if (response_len && !(e->response = malloc(response_len))) {
        free(e->run_id);
        free(e->method);
        free(e->key);
        *e = c->known[--c->n_known];
        return;
    }
    if (response_len)
        memcpy(e->response, response, response_len);
    e->response_len = response_len;
}

static srv_code pg_dedup_get(srv_txn *t, srv_arena *a, const srv_dedup_key *k,
                             srv_dedup_record *out, bool *found, srv_error *err)
{
    pg_conn *c = pg_conn_of(t);
    const pg_known_key *e = t->write ? known_find(c, k) : NULL;
    if (e) {
        *found = e->found;
        if (e->found) {
            memcpy(out->fingerprint, e->fingerprint, 32);
            out->response_len = e->response_len;
            out->response = srv_arena_memdup(a, e->response, e->response_len);
            if (!out->response && out->response_len)
                return srv_fail(err, SRV_RESOURCE_EXHAUSTED, "out of memory");
        }
        return SRV_OK;
    }
    pg_params p = {0};
    pg_text(&p, k->run_id);
    pg_text(&p, k->method);
    pg_text(&p, k->key);
    PGresult *r = pg_run(c, PS_DEDUP_GET, &p, "reading an idempotency record", err);
    if (!r)
        return err->code;
    *found = PQntuples(r) > 0;
    srv_code rc = SRV_OK;
    if (*found) {
        memset(out->fingerprint, 0, sizeof out->fingerprint);
        if (PQgetlength(r, 0, 0) == 32)
            memcpy(out->fingerprint, PQgetvalue(r, 0, 0), 32);
        out->response_len = (size_t)PQgetlength(r, 0, 1);
        out->response = srv_arena_memdup(a, PQgetvalue(r, 0, 1), out->response_len);
        if (!out->response && out->response_len)
            rc = srv_fail(err, SRV_RESOURCE_EXHAUSTED, "out of memory");
    }
    PQclear(r);
    if (!rc && t->write && pg_head_ref(c, k->run_id)) /* read with its run locked */
        known_set(c, k, *found, out->fingerprint, out->response, out->response_len);
    return rc;
}

/* A record the writer knows is not there yet, of a run it holds locked,
 * is held back (pending.c): no other process can write it meanwhile.
 * Otherwise (the key was looked up before the run was locked, or the
 * run was created or deleted by this mutation) two replicas may race on
 * one key: the second's insert waits for the first's transaction and,
 * once it committed, fails 23505, which is ABORTED; the ledger rolls
 * back to the savepoint and tries again, and then dedup_get finds the
 * winner's record and replays it. */
static srv_code pg_dedup_put(srv_txn *t, const srv_dedup_key *k, const srv_dedup_record *rec,
                             int64_t now_us, srv_error *err)
{
    pg_conn *c = pg_conn_of(t);
    const pg_known_key *known = known_find(c, k);
    int64_t ref = known && !known->found ? pg_head_ref(c, k->run_id) : 0;
    if (ref) {
        if (pg_defer_dedup(c, ref, k, rec, now_us, err))
            return err->code;
        known_set(c, k, true, rec->fingerprint, rec->response, rec->response_len);
        return SRV_OK;
    }
    pg_params p = {0};
    pg_text(&p, k->run_id);
    pg_text(&p, k->method);
    pg_text(&p, k->key);
    pg_bytes(&p, rec->fingerprint, 32);
    pg_bytes(&p, rec->response, rec->response_len);
    pg_i64(&p, now_us);
    int64_t rows = 0;
    if (pg_do(c, PS_DEDUP_PUT, &p, "recording an idempotency key", &rows, err))
        return err->code;
    /* The run is gone (this mutation deleted it) when rows is 0. */
    if (rows != 1 && pg_do(c, PS_DEDUP_PUT_GONE, &p, "recording an idempotency key", NULL, err))
        return err->code;
    known_set(c, k, true, rec->fingerprint, rec->response, rec->response_len);
    return SRV_OK;
}

/* ---- reading a batch ahead ---- */

/* One round trip for the whole batch: its runs locked and read (in one
 * order), its keys' records read, then the clock, after the locks were
 * had. */
static srv_code pg_prefetch(srv_txn *t, const srv_dedup_key *keys, size_t n, srv_error *err)
{
    pg_conn *c = pg_conn_of(t);
    /* The distinct runs; the keys as (run, method, key) columns. */
    const char **runs = calloc(4 * (n ? n : 1), sizeof *runs);
    if (!runs)
        return srv_fail(err, SRV_RESOURCE_EXHAUSTED, "out of memory");
    const char **kr = runs + n, **km = kr + n, **kk = km + n;
    pg_buf bufs[4] = {{0}};
    srv_code rc = SRV_OK;
    size_t n_runs = 0, n_keys = 0;
    for (size_t i = 0; i < n; i++) {
        const srv_dedup_key *k = &keys[i];
        if (!k->run_id || !*k->run_id)
            continue;
        bool seen = false;
        for (size_t j = 0; j < n_runs && !seen; j++)
            seen = strcmp(runs[j], k->run_id) == 0;
        if (!seen)
            runs[n_runs++] = k->run_id;
        if (k->key && k->method) {
            kr[n_keys] = k->run_id;
            km[n_keys] = k->method;
            kk[n_keys++] = k->key;
        }
    }
    pg_params lock = {0}, get = {0}, now = {0};
    if (!pg_text_array(&bufs[0], runs, n_runs, &lock) ||
        !pg_text_array(&bufs[1], kr, n_keys, &get) || !pg_text_array(&bufs[2], km, n_keys, &get) ||
        !pg_text_array(&bufs[3], kk, n_keys, &get))
        rc = srv_fail(err, SRV_RESOURCE_EXHAUSTED, "out of memory");
    PGresult *r[3] = {NULL, NULL, NULL};
    const pg_stmt_id ids[] = {PS_RUNS_LOCK, PS_DEDUP_GET_MANY, PS_NOW};
    const pg_params *ps[] = {&lock, &get, &now};
    if (!rc)
        rc = pg_run_many(c, ids, ps, 3, r, "reading a batch's runs and keys", err);
    if (!rc) {
        pg_heads_keep(c, r[0]);
        for (size_t i = 0; i < n_keys; i++)
            known_set(c, &(srv_dedup_key){kr[i], km[i], kk[i]}, false, NULL, NULL, 0);
        for (int i = 0; i < PQntuples(r[1]); i++) {
            char *rid = PQgetvalue(r[1], i, 0), *m = PQgetvalue(r[1], i, 1),
                 *key = PQgetvalue(r[1], i, 2);
            uint8_t fp[32] = {0};
            if (PQgetlength(r[1], i, 3) == 32)
                memcpy(fp, PQgetvalue(r[1], i, 3), 32);
            known_set(c, &(srv_dedup_key){rid, m, key}, true, fp,
                      (const uint8_t *)PQgetvalue(r[1], i, 4), (size_t)PQgetlength(r[1], i, 4));
        }
        c->now_us = pg_col_i64(r[2], 0, 0);
    }
    for (int i = 0; i < 3; i++)
        PQclear(r[i]);
    for (int i = 0; i < 4; i++)
        free(bufs[i].p);
    free(runs);
    return rc;
}

static srv_code pg_dedup_expire(srv_txn *t, int64_t before_us, uint32_t limit, size_t *n,
                                srv_error *err)
{
    int64_t rows = 0, gone = 0;
    pg_params p = {0};
    pg_i64(&p, before_us);
    pg_i64(&p, limit);
    if (pg_do(pg_conn_of(t), PS_DEDUP_EXPIRE, &p, "forgetting idempotency keys", &rows, err))
        return err->code;
    pg_params q = {0};
    pg_i64(&q, before_us);
    pg_i64(&q, (int64_t)limit - rows);
    if (pg_do(pg_conn_of(t), PS_DEDUP_EXPIRE_GONE, &q, "forgetting idempotency keys", &gone, err))
        return err->code;
    *n = (size_t)(rows + gone);
    return SRV_OK;
}

/* ---- schema ---- */

/* Creates or migrates the schema in one transaction. Replicas starting
 * at once queue on an advisory lock, so one migrates and the others find
 * the work done. A schema newer than this build is refused. */
static srv_code migrate(pg_conn *c, srv_error *err)
{
    if (pg_exec(c,
                "BEGIN;"
                "SELECT pg_advisory_xact_lock(" SCHEMA_LOCK_KEY ");"
                "CREATE TABLE IF NOT EXISTS cairn_schema ("
                "  one bool PRIMARY KEY DEFAULT true CHECK (one),"
                "  version int8 NOT NULL);"
                "INSERT INTO cairn_schema (version) VALUES (0) ON CONFLICT DO NOTHING",
                "locking the schema", err))
        goto fail;
    PGresult *r = PQexecParams(c->pg, "SELECT version FROM cairn_schema", 0, NULL, NULL, NULL,
                               NULL, 1);
    if (!r || PQresultStatus(r) != PGRES_TUPLES_OK || PQntuples(r) != 1) {
        pg_fail(c, r, "reading the schema version", err);
        PQclear(r);
        goto fail;
    }
    int64_t v = pg_col_i64(r, 0, 0);
    PQclear(r);
    if (v > SCHEMA_VERSION) {
        srv_fail(err, SRV_FAILED_PRECONDITION,
                 "store: the PostgreSQL schema has version %lld, newer than this cairnd "
                 "understands (%d); run a newer cairnd",
                 (long long)v, SCHEMA_VERSION);
        goto fail;
    }
    for (; v < SCHEMA_VERSION; v++) {
        char bump[64];
        snprintf(bump, sizeof bump, "UPDATE cairn_schema SET version = %lld", (long long)v + 1);
        if (pg_exec(c, migrations[v], "migrating the schema", err) ||
            pg_exec(c, bump, "migrating the schema", err))
            goto fail;
        if (v == 0)
            srv_info("store: created the cairn schema in PostgreSQL");
    }
    if (pg_exec(c, "COMMIT", "migrating the schema", err))
        goto fail;
    return SRV_OK;
fail:
    if (PQstatus(c->pg) == CONNECTION_OK && PQtransactionStatus(c->pg) != PQTRANS_IDLE) {
        srv_error ignored;
        pg_exec(c, "ROLLBACK", "rolling back", &ignored);
    }
    return err->code;
}

/* ---- LISTEN/NOTIFY: other replicas' commits, for the watch hub ---- */

/* Pause before reconnecting a lost listener: doubles up to this. While
 * it is down, other replicas' commits reach this one's watchers only
 * once it is back (listen_main), so the cap bounds that delay after an
 * outage; one connection attempt a second per replica costs nothing. */
enum { LISTEN_RETRY_MIN_MS = 100, LISTEN_RETRY_MAX_MS = 1000 };

static srv_code listen_connect(pg_store *s, srv_error *err)
{
    pg_conn *c = &s->listener;
    if (!c->pg)
        return conn_open(s, c, false, err) ? err->code
                                           : pg_exec(c, "LISTEN " PG_CHANNEL, "listening", err);
    if (conn_ready(c, err))
        return err->code;
    return pg_exec(c, "LISTEN " PG_CHANNEL, "listening", err);
}

static void deliver(pg_store *s)
{
    PGnotify *n;
    const size_t deleted_len = strlen(PG_DELETED);
    while ((n = PQnotifies(s->listener.pg)) != NULL) {
        char *end;
        if (strncmp(n->extra, PG_DELETED, deleted_len) == 0) {
            if (s->on_deleted && n->extra[deleted_len])
                s->on_deleted(s->on_committed_ctx, n->extra + deleted_len);
            PQfreemem(n);
            continue;
        }
        unsigned long long seq = strtoull(n->extra, &end, 10);
        if (end != n->extra && *end == ' ' && end[1])
            s->on_committed(s->on_committed_ctx, end + 1, (uint64_t)seq);
        PQfreemem(n);
    }
}

/* Waits for notifications and hands them on. A lost connection is made
 * again with a growing pause. Whatever was announced while it was down
 * is lost with it, so once it listens again the owner is told to resync
 * (on_resync): it re-reads what it watches, and anything committed after
 * LISTEN is announced again. The first connection was made by
 * start_listener, before anyone watched. */
static void *listen_main(void *arg)
{
    pg_store *s = arg;
    int pause = LISTEN_RETRY_MIN_MS;
    bool up = true, warned = false;
    for (;;) {
        if (!up) {
            srv_error err;
            up = listen_connect(s, &err) == SRV_OK;
            if (!up && !warned)
                srv_warn("store: listening for other replicas' commits: %s; retrying", err.msg);
            warned = !up;
            if (up) {
                srv_info("store: listening for other replicas' commits again");
                if (s->on_resync)
                    s->on_resync(s->on_committed_ctx);
            }
        }
        struct pollfd p[2] = {{up ? PQsocket(s->listener.pg) : -1, POLLIN, 0},
                              {s->wake[0], POLLIN, 0}};
        int rc = poll(p, 2, up ? -1 : pause);
        if (rc < 0 && errno != EINTR)
            break;
        if (p[1].revents)
            break;
        if (!up) {
            pause = pause * 2 > LISTEN_RETRY_MAX_MS ? LISTEN_RETRY_MAX_MS : pause * 2;
            continue;
        }
        if (p[0].revents && !PQconsumeInput(s->listener.pg)) {
            up = false;
            continue;
        }
        pause = LISTEN_RETRY_MIN_MS;
        deliver(s);
    }
    return NULL;
}

static srv_code start_listener(pg_store *s, srv_error *err)
{
    if (pipe2(s->wake, O_CLOEXEC) < 0)
        return srv_fail(err, SRV_RESOURCE_EXHAUSTED, "cannot make a pipe: %s", strerror(errno));
    if (listen_connect(s, err))
        return err->code;
    if (pthread_create(&s->listen_thread, NULL, listen_main, s) != 0)
        return srv_fail(err, SRV_RESOURCE_EXHAUSTED, "cannot start the listener thread");
    s->listening = true;
    return SRV_OK;
}

static void stop_listener(pg_store *s)
{
    if (s->listening) {
        char b = 1;
        while (write(s->wake[1], &b, 1) < 0 && errno == EINTR)
            ;
        pthread_join(s->listen_thread, NULL);
        s->listening = false;
    }
    if (s->listener.pg)
        PQfinish(s->listener.pg);
    s->listener.pg = NULL;
    for (int i = 0; i < 2; i++)
        if (s->wake[i] >= 0)
            close(s->wake[i]);
    s->wake[0] = s->wake[1] = -1;
}

/* ---- opening and closing ---- */

static void pg_close(srv_store *st)
{
    pg_store *s = pg_from(st);
    stop_listener(s);
    if (s->writer.pg) {
        pg_rollback(&s->writer.txn);
        PQfinish(s->writer.pg);
    }
    free(s->writer.pending); /* (emptied by the rollback) */
    free(s->writer.heads);
    free(s->writer.known);
    for (int i = 0; i < s->n_pool; i++)
        PQfinish(s->pool[i].pg);
    free(s->pool);
    pthread_cond_destroy(&s->cv);
    pthread_mutex_destroy(&s->mu);
    free(s->dsn);
    free(s);
}

static const struct srv_store_ops pg_ops = {
    .version = SRV_STORE_OPS_VERSION,
    .name = "postgres",
    .close = pg_close,
    .read_begin = pg_read_begin,
    .read_end = pg_read_end,
    .begin = pg_begin,
    .commit = pg_commit,
    .rollback = pg_rollback,
    .savepoint = pg_savepoint,
    .release = pg_release,
    .rollback_to = pg_rollback_to,
    .run_find = pg_run_find,
    .run_get = pg_run_get,
    .runs_list = pg_runs_list,
    .run_insert = pg_run_insert,
    .events_insert = pg_events_insert,
    .events_read = pg_events_read,
    .worker_get = pg_worker_get,
    .worker_complete = pg_worker_complete,
    .completions = pg_completions,
    .lease_get = pg_lease_get,
    .lease_put = pg_lease_put,
    .checkpoint_insert = pg_checkpoint_insert,
    .checkpoint_delete = pg_checkpoint_delete,
    .checkpoint_get = pg_checkpoint_get,
    .checkpoints_list = pg_checkpoints_list,
    .pin_add = pg_pin_add,
    .pin_remove = pg_pin_remove,
    .pinned = pg_pinned,
    .stage_begin = pg_stage_begin,
    .stage_write = pg_stage_write,
    .stage_finish = pg_stage_finish,
    .stage_free = pg_stage_free,
    .blob_link = pg_blob_link,
    .blob_unlink = pg_blob_unlink,
    .blob_open = pg_blob_open,
    .blob_read = pg_blob_read,
    .blob_close = pg_blob_close,
    .dedup_get = pg_dedup_get,
    .dedup_put = pg_dedup_put,
    .dedup_expire = pg_dedup_expire,
    .prefetch = pg_prefetch,
    .run_delete = pg_run_delete,
    .run_set_completed = pg_run_set_completed,
    .runs_completed_before = pg_runs_completed_before,
    .txn_active = pg_txn_active,
    .now = pg_now,
    .usage = pg_usage,
};

srv_code srv_pg_open(const srv_store_config *cfg, srv_store **out, srv_error *err)
{
    if (!cfg->pg_dsn || !*cfg->pg_dsn)
        return srv_fail(err, SRV_INVALID_ARGUMENT,
                        "--pg-dsn: required with --store postgres (or CAIRN_PG_DSN)");
    for (int i = 0; i < PG_N_STMT; i++) /* a statement id without its text */
        if (!pg_sql_text[i])
            return srv_fail(err, SRV_INTERNAL, "store: statement %d has no SQL text", i);
    pg_store *s = calloc(1, sizeof *s);
    if (!s)
        return srv_fail(err, SRV_RESOURCE_EXHAUSTED, "out of memory");
    s->base.ops = &pg_ops;
    s->wake[0] = s->wake[1] = -1;
    s->on_committed = cfg->on_committed;
    s->on_resync = cfg->on_resync;
    s->on_deleted = cfg->on_deleted;
    s->on_committed_ctx = cfg->on_committed_ctx;
    pthread_mutex_init(&s->mu, NULL);
    pthread_cond_init(&s->cv, NULL);
    s->dsn = strdup(cfg->pg_dsn);
    int pool = cfg->pg_pool_size > 0 ? cfg->pg_pool_size : (cfg->readers > 0 ? cfg->readers : 1) + 2;
    if (pool < 2)
        pool = 2;
    srv_code rc = s->dsn ? conn_open(s, &s->writer, true, err)
                         : srv_fail(err, SRV_RESOURCE_EXHAUSTED, "out of memory");
    if (!rc)
        rc = migrate(&s->writer, err);
    if (!rc && !(s->pool = calloc((size_t)pool, sizeof *s->pool)))
        rc = srv_fail(err, SRV_RESOURCE_EXHAUSTED, "out of memory");
    for (int i = 0; !rc && i < pool; i++) {
        s->n_pool++;
        rc = conn_open(s, &s->pool[i], false, err);
        if (!rc)
            pg_give(s, &s->pool[i]);
    }
    if (!rc)
        rc = pg_blobs_sweep(s, err);
    if (!rc && s->on_committed)
        rc = start_listener(s, err);
    if (rc) {
        pg_close(&s->base);
        return rc;
    }
    *out = &s->base;
    return SRV_OK;
}
