/* What only the SQLite backend has: its schema version, the migrations
 * that carry an older cairn.db forward, how opening fails on a database
 * it cannot use, and the data dir it refuses to trust (symbolic links,
 * directories others may write) and the modes it creates. Everything a
 * backend must do is in the contract suite (tests/store/). Each test gets
 * its own mkdtemp directory, removed afterwards. */
#include "base/arena.h"
#include "base/sha256.h"
#include "dirs.h"
#include "store/sqlite/sqlite.h"
#include "store/store.h"

#include <setjmp.h>
#include <sqlite3.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include <dirent.h>
#include <fcntl.h>

#define NOW_US (1769595330ll * 1000000 + 123456)

/* The schema this build writes: 1 runs and events, 2 checkpoints and
 * snapshots, 3 leases (pins live in pins.db, outside the schema), 4 the
 * data lifecycle, 5 incremental vacuum, 6 events in one row per append. A
 * new migration updates this and the table list below. */
#define SCHEMA_VERSION 6

static const char *const tables[] = {
    "runs",  "run_workers", "run_labels",         "event_batches", "dedup",
    "blobs", "checkpoints", "checkpoint_workers", "leases", "gone_dedup",
};
enum { N_TABLES = sizeof tables / sizeof tables[0] };

typedef struct fx {
    char dir[512];
    srv_store *st;
    srv_arena *a;
} fx;

/* ---- fixture ---- */

static void ok(srv_code rc, const srv_error *err)
{
    if (rc != SRV_OK)
        fail_msg("expected OK, got %d: %s", rc, err->msg);
}

static srv_code open_dir(const char *dir, srv_store **st, srv_error *err)
{
    const srv_store_config cfg = {.data_dir = dir, .readers = 2};
    return srv_store_open("sqlite", &cfg, st, err);
}

static void open_store(fx *f)
{
    srv_error err;
    ok(open_dir(f->dir, &f->st, &err), &err);
}

static void close_store(fx *f)
{
    srv_store_close(f->st);
    f->st = NULL;
}

static int setup(void **state)
{
    fx *f = calloc(1, sizeof *f);
    if (ct_temp_dir(f->dir, sizeof f->dir, "cairn-unit-store") < 0)
        return -1;
    f->a = srv_arena_create();
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fx *f = *state;
    close_store(f);
    srv_arena_destroy(f->a);
    int rc = ct_rmrf(f->dir);
    free(f);
    return rc;
}

static void db_path(const fx *f, char out[600])
{
    snprintf(out, 600, "%s/cairn.db", f->dir);
}

/* ---- through the store ---- */

static void insert_run(fx *f, const char *run_id)
{
    srv_error err;
    srv_txn *t;
    char *workers[] = {"w0"};
    int64_t ref;
    ok(srv_store_begin(f->st, &t, &err), &err);
    ok(srv_store_run_insert(t, run_id, workers, 1, NULL, 0, NOW_US, &ref, &err), &err);
    ok(srv_store_commit(t, &err), &err);
}

static bool run_found(fx *f, const char *run_id)
{
    srv_error err;
    srv_txn *t;
    srv_run_head h;
    bool found = false;
    ok(srv_store_read_begin(f->st, &t, &err), &err);
    ok(srv_store_run_find(t, f->a, run_id, &h, &found, &err), &err);
    srv_store_read_end(t);
    return found;
}

/* ---- straight to the database ---- */

static int query_int(sqlite3 *db, const char *sql)
{
    sqlite3_stmt *s;
    assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &s, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_step(s), SQLITE_ROW);
    int v = sqlite3_column_int(s, 0);
    sqlite3_finalize(s);
    return v;
}

static bool has_table(sqlite3 *db, const char *name)
{
    sqlite3_stmt *s;
    assert_int_equal(sqlite3_prepare_v2(db, "SELECT count(*) FROM sqlite_master WHERE "
                                            "type = 'table' AND name = ?1",
                                        -1, &s, NULL),
                     SQLITE_OK);
    sqlite3_bind_text(s, 1, name, -1, SQLITE_STATIC);
    assert_int_equal(sqlite3_step(s), SQLITE_ROW);
    bool found = sqlite3_column_int(s, 0) == 1;
    sqlite3_finalize(s);
    return found;
}

static void exec(sqlite3 *db, const char *sql)
{
    char *msg = NULL;
    if (sqlite3_exec(db, sql, NULL, NULL, &msg) != SQLITE_OK)
        fail_msg("%s: %s", sql, msg);
}

/* cairn.db of f's data dir at schema version v, as an older cairnd left
 * it; path gets its path. */
static sqlite3 *database_at_version(fx *f, int v, char path[600])
{
    db_path(f, path);
    sqlite3 *db;
    srv_error err;
    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    ok(srv_sqlite_migrate(db, v, &err), &err);
    return db;
}

/* ---- schema versions and migrations ---- */

static void fresh_database_has_the_current_schema_version(void **state)
{
    fx *f = *state;
    open_store(f);
    close_store(f);
    char path[600];
    db_path(f, path);
    sqlite3 *db;
    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    assert_int_equal(srv_sqlite_schema_version(), SCHEMA_VERSION);
    assert_int_equal(query_int(db, "PRAGMA user_version"), srv_sqlite_schema_version());
    for (size_t i = 0; i < N_TABLES; i++)
        if (!has_table(db, tables[i]))
            fail_msg("table %s missing in a fresh database", tables[i]);
    sqlite3_close(db);
}

static void newer_schema_is_refused_and_its_data_left_untouched(void **state)
{
    fx *f = *state;
    char path[600], sql[128];
    db_path(f, path);
    const int newer = srv_sqlite_schema_version() + 1;
    sqlite3 *db;
    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    exec(db, "CREATE TABLE keep (x TEXT); INSERT INTO keep VALUES ('precious');");
    snprintf(sql, sizeof sql, "PRAGMA user_version = %d", newer);
    exec(db, sql);
    sqlite3_close(db);

    srv_error err;
    srv_store *st = NULL;
    assert_int_equal(open_dir(f->dir, &st, &err), SRV_FAILED_PRECONDITION);
    assert_null(st);
    char want[16];
    snprintf(want, sizeof want, "%d", newer);
    if (!strstr(err.msg, want) || !strstr(err.msg, "version"))
        fail_msg("message should name version %d: %s", newer, err.msg);

    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    assert_int_equal(query_int(db, "PRAGMA user_version"), newer);
    assert_int_equal(query_int(db, "SELECT count(*) FROM keep WHERE x = 'precious'"), 1);
    assert_false(has_table(db, "runs"));
    sqlite3_close(db);

    /* the refusal let go of the data dir */
    assert_int_equal(open_dir(f->dir, &st, &err), SRV_FAILED_PRECONDITION);
    assert_null(strstr(err.msg, "in use"));
}

static void migrate_from_version_0_creates_the_tables(void **state)
{
    (void)state;
    sqlite3 *db;
    assert_int_equal(sqlite3_open(":memory:", &db), SQLITE_OK);
    assert_int_equal(query_int(db, "PRAGMA user_version"), 0);
    srv_error err;
    ok(srv_sqlite_migrate(db, srv_sqlite_schema_version(), &err), &err);
    assert_int_equal(query_int(db, "PRAGMA user_version"), srv_sqlite_schema_version());
    for (size_t i = 0; i < N_TABLES; i++)
        if (!has_table(db, tables[i]))
            fail_msg("table %s missing after migration", tables[i]);
    /* a second run is a no-op */
    ok(srv_sqlite_migrate(db, srv_sqlite_schema_version(), &err), &err);
    assert_int_equal(query_int(db, "PRAGMA user_version"), srv_sqlite_schema_version());
    sqlite3_close(db);
}

static void migrate_to_target_0_changes_nothing(void **state)
{
    (void)state;
    sqlite3 *db;
    assert_int_equal(sqlite3_open(":memory:", &db), SQLITE_OK);
    srv_error err;
    ok(srv_sqlite_migrate(db, 0, &err), &err);
    assert_int_equal(query_int(db, "PRAGMA user_version"), 0);
    assert_false(has_table(db, "runs"));
    sqlite3_close(db);
}

static void migrate_stops_at_its_target_version(void **state)
{
    (void)state;
    sqlite3 *db;
    assert_int_equal(sqlite3_open(":memory:", &db), SQLITE_OK);
    srv_error err;
    ok(srv_sqlite_migrate(db, 2, &err), &err);
    assert_int_equal(query_int(db, "PRAGMA user_version"), 2);
    assert_true(has_table(db, "checkpoints"));
    assert_false(has_table(db, "leases"));
    ok(srv_sqlite_migrate(db, 3, &err), &err);
    assert_int_equal(query_int(db, "PRAGMA user_version"), 3);
    assert_true(has_table(db, "leases"));
    sqlite3_close(db);
}

static void migrate_refuses_a_newer_database(void **state)
{
    (void)state;
    sqlite3 *db;
    assert_int_equal(sqlite3_open(":memory:", &db), SQLITE_OK);
    exec(db, "PRAGMA user_version = 99");
    srv_error err;
    assert_int_equal(srv_sqlite_migrate(db, srv_sqlite_schema_version(), &err),
                     SRV_FAILED_PRECONDITION);
    assert_non_null(strstr(err.msg, "99"));
    assert_int_equal(query_int(db, "PRAGMA user_version"), 99);
    sqlite3_close(db);
}

static void open_migrates_a_version_0_database_keeping_its_data(void **state)
{
    fx *f = *state;
    char path[600];
    db_path(f, path);
    sqlite3 *db;
    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    exec(db, "CREATE TABLE keep (x TEXT); INSERT INTO keep VALUES ('precious');");
    sqlite3_close(db);

    open_store(f);
    insert_run(f, "run-1");
    close_store(f);

    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    assert_int_equal(query_int(db, "PRAGMA user_version"), srv_sqlite_schema_version());
    assert_int_equal(query_int(db, "SELECT count(*) FROM keep"), 1);
    assert_int_equal(query_int(db, "SELECT count(*) FROM runs"), 1);
    sqlite3_close(db);
}

/* The database of a cairnd from before leases: its runs stay, and pins
 * (in pins.db) work once it is opened. */
static void open_migrates_a_version_2_database_keeping_its_runs(void **state)
{
    fx *f = *state;
    char path[600];
    srv_error err;
    sqlite3 *db = database_at_version(f, 2, path);
    exec(db, "INSERT INTO runs (run_id, created_us, worker_count) VALUES ('old-run', 1, 0)");
    sqlite3_close(db);

    open_store(f);
    assert_true(run_found(f, "old-run"));
    int64_t pin;
    ok(srv_store_pin_add(f->st, "old-run", "cp", NOW_US + 1, &pin, &err), &err);
    srv_txn *t;
    bool pinned = false;
    ok(srv_store_read_begin(f->st, &t, &err), &err);
    ok(srv_store_pinned(t, "old-run", "cp", NOW_US, &pinned, &err), &err);
    srv_store_read_end(t);
    assert_true(pinned);
    close_store(f);

    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    assert_int_equal(query_int(db, "PRAGMA user_version"), SCHEMA_VERSION);
    sqlite3_close(db);
}

/* The database of a cairnd from before the data lifecycle: its completed
 * runs get their last event's time as their completion time (retention
 * counts from it), and the file gives deleted pages back from then on. */
static void open_migrates_a_version_3_database_dating_completed_runs_and_reclaiming_space(
    void **state)
{
    fx *f = *state;
    char path[600];
    sqlite3 *db = database_at_version(f, 3, path);
    assert_int_equal(query_int(db, "PRAGMA auto_vacuum"), 0);
    exec(db, "INSERT INTO runs (id, run_id, created_us, next_seq, worker_count, completed_count) "
             "VALUES (1, 'done', 1, 3, 1, 1), (2, 'busy', 1, 2, 2, 1);"
             "INSERT INTO events (run, seq, type, worker_id, payload, created_us) VALUES "
             "(1, 1, 'a', '', x'', 5), (1, 2, 'worker.completed', 'w0', x'', 7),"
             "(2, 1, 'worker.completed', 'w0', x'', 9)");
    sqlite3_close(db);

    open_store(f);
    close_store(f);
    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    assert_int_equal(query_int(db, "PRAGMA user_version"), SCHEMA_VERSION);
    assert_int_equal(query_int(db, "PRAGMA auto_vacuum"), 2); /* INCREMENTAL */
    assert_int_equal(query_int(db, "SELECT completed_us FROM runs WHERE run_id = 'done'"), 7);
    assert_int_equal(query_int(db, "SELECT completed_us FROM runs WHERE run_id = 'busy'"), 0);
    sqlite3_close(db);
}

/* The database of a cairnd from before events were stored one row per
 * append: every event reads back with its seq, fields and time, and the
 * log goes on from where it was. */
static void open_migrates_a_version_5_database_keeping_every_event(void **state)
{
    fx *f = *state;
    char path[600];
    srv_error err;
    sqlite3 *db = database_at_version(f, 5, path);
    exec(db, "INSERT INTO runs (id, run_id, created_us, next_seq, worker_count) "
             "VALUES (1, 'a', 1, 4, 1), (2, 'b', 1, 2, 1);"
             "INSERT INTO events (run, seq, type, worker_id, payload, created_us) VALUES "
             "(1, 1, 'start', '', x'00ff10', 1769595330123456),"
             "(1, 2, 'step', 'w0', x'', 1769595331000000),"
             "(1, 3, 'worker.completed', 'w0', zeroblob(300), 1769595332000000),"
             "(2, 1, 'other', '', x'41', 1769595333000000);"
             "INSERT INTO dedup (run, method, key, fingerprint, response, created_us) VALUES "
             "(1, 'AppendEvents', 'k1', zeroblob(32), x'0801', 5);"
             "INSERT INTO gone_dedup (run_id, method, key, fingerprint, response, created_us) "
             "VALUES ('gone', 'DeleteRun', 'k2', zeroblob(32), x'0802', 6)");
    sqlite3_close(db);

    open_store(f);
    srv_txn *t;
    srv_run_head head;
    bool found = false;
    Cairn__V1__Event **v;
    size_t n;
    ok(srv_store_read_begin(f->st, &t, &err), &err);
    ok(srv_store_run_find(t, f->a, "a", &head, &found, &err), &err);
    assert_true(found);
    ok(srv_store_events_read(t, f->a, &head, 2, 100, SIZE_MAX, &v, &n, &err), &err);
    srv_store_read_end(t);
    assert_int_equal(n, 2);
    assert_int_equal(v[0]->seq, 2);
    assert_string_equal(v[0]->type, "step");
    assert_string_equal(v[0]->worker_id, "w0");
    assert_int_equal(v[0]->payload.len, 0);
    assert_string_equal(v[0]->created_at, "2026-01-28T10:15:31.000000Z");
    assert_int_equal(v[1]->seq, 3);
    assert_string_equal(v[1]->type, "worker.completed");
    assert_int_equal(v[1]->payload.len, 300);

    /* The next append goes on at seq 4, after the migrated ones. */
    Cairn__V1__Event ev = CAIRN__V1__EVENT__INIT, *evs[] = {&ev};
    ev.type = "next";
    ev.worker_id = "";
    ok(srv_store_begin(f->st, &t, &err), &err);
    ok(srv_store_run_find(t, f->a, "a", &head, &found, &err), &err);
    ok(srv_store_events_insert(t, &head, evs, 1, NOW_US, &err), &err);
    ok(srv_store_commit(t, &err), &err);
    ok(srv_store_read_begin(f->st, &t, &err), &err);
    ok(srv_store_run_find(t, f->a, "a", &head, &found, &err), &err);
    ok(srv_store_events_read(t, f->a, &head, 1, 100, SIZE_MAX, &v, &n, &err), &err);
    srv_store_read_end(t);
    assert_int_equal(n, 4);
    assert_int_equal(v[0]->payload.len, 3);
    assert_memory_equal(v[0]->payload.data, "\x00\xff\x10", 3);
    assert_string_equal(v[0]->created_at, "2026-01-28T10:15:30.123456Z");
    assert_int_equal(v[3]->seq, 4);
    assert_string_equal(v[3]->type, "next");
    close_store(f);

    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    assert_int_equal(query_int(db, "PRAGMA user_version"), SCHEMA_VERSION);
    assert_int_equal(query_int(db, "SELECT count(*) FROM event_batches"), 5);
    assert_int_equal(query_int(db, "SELECT count(*) FROM sqlite_master WHERE name = 'events'"), 0);
    /* The idempotency records are rows of their own, their keys in an
     * index of the key columns only: a lookup never compares against a
     * record's (possibly huge) response. */
    assert_int_equal(query_int(db, "SELECT count(*) FROM sqlite_master WHERE name IN "
                                   "('dedup', 'gone_dedup') AND sql LIKE '%WITHOUT ROWID%'"),
                     0);
    assert_int_equal(query_int(db, "SELECT count(*) FROM pragma_index_info('dedup_by_key')"), 3);
    assert_int_equal(
        query_int(db, "SELECT count(*) FROM pragma_index_info('gone_dedup_by_key')"), 3);
    sqlite3_close(db);

    /* The records kept: one under its run, one of a run that is gone. */
    open_store(f);
    srv_dedup_record rec;
    ok(srv_store_read_begin(f->st, &t, &err), &err);
    const srv_dedup_key kept = {"a", "AppendEvents", "k1"}, gone = {"gone", "DeleteRun", "k2"};
    ok(srv_store_dedup_get(t, f->a, &kept, &rec, &found, &err), &err);
    assert_true(found);
    assert_int_equal(rec.response_len, 2);
    assert_int_equal(rec.response[1], 1);
    ok(srv_store_dedup_get(t, f->a, &gone, &rec, &found, &err), &err);
    assert_true(found);
    assert_int_equal(rec.response[1], 2);
    srv_store_read_end(t);
    close_store(f);
}

/* A row of the log whose records are cut short is reported as damaged
 * (DATA_LOSS, naming the run and the row's last seq), not read as events. */
static void a_damaged_row_of_the_log_is_data_loss(void **state)
{
    fx *f = *state;
    srv_error err;
    open_store(f);
    insert_run(f, "run-1");
    srv_txn *t;
    srv_run_head head;
    bool found = false;
    Cairn__V1__Event ev = CAIRN__V1__EVENT__INIT, *evs[] = {&ev, &ev};
    ev.type = "step";
    ev.worker_id = "";
    ok(srv_store_begin(f->st, &t, &err), &err);
    ok(srv_store_run_find(t, f->a, "run-1", &head, &found, &err), &err);
    ok(srv_store_events_insert(t, &head, evs, 2, NOW_US, &err), &err);
    ok(srv_store_commit(t, &err), &err);
    close_store(f);

    char path[600];
    db_path(f, path);
    sqlite3 *db;
    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    /* The first record whole ("step", "", empty payload), the second cut. */
    exec(db, "UPDATE event_batches SET records = x'0473746570000004737465'");
    sqlite3_close(db);

    open_store(f);
    Cairn__V1__Event **v;
    size_t n;
    ok(srv_store_read_begin(f->st, &t, &err), &err);
    ok(srv_store_run_find(t, f->a, "run-1", &head, &found, &err), &err);
    srv_code rc = srv_store_events_read(t, f->a, &head, 1, 100, SIZE_MAX, &v, &n, &err);
    srv_store_read_end(t);
    assert_int_equal(rc, SRV_DATA_LOSS);
    assert_non_null(strstr(err.msg, "run run-1 ending at seq 2 are damaged"));
    close_store(f);
}

static int64_t file_size(const fx *f, const char *name);

/* Runs created and deleted over and over: each deletion gives its pages
 * back to the file system (auto_vacuum INCREMENTAL and an incremental
 * vacuum in the deleting transaction), so once the WAL is checkpointed
 * cairn.db is back near its empty size, cycle after cycle. */
static void deleted_runs_give_their_space_back_cycle_after_cycle(void **state)
{
    enum { CYCLES = 4, EVENTS = 500, PAYLOAD = 4096 };
    fx *f = *state;
    srv_error err;
    open_store(f);
    ok(srv_sqlite_checkpoint(f->st, &err), &err);
    int64_t empty = file_size(f, "cairn.db");
    static uint8_t payload[PAYLOAD];
    for (int cycle = 0; cycle < CYCLES; cycle++) {
        insert_run(f, "big");
        srv_txn *t;
        srv_run_head head;
        bool found = false;
        Cairn__V1__Event ev = CAIRN__V1__EVENT__INIT, *evs[] = {&ev};
        ev.type = "step";
        ev.worker_id = "";
        ev.payload = (ProtobufCBinaryData){PAYLOAD, payload};
        ok(srv_store_begin(f->st, &t, &err), &err);
        for (int i = 0; i < EVENTS; i++) {
            ok(srv_store_run_find(t, f->a, "big", &head, &found, &err), &err);
            ok(srv_store_events_insert(t, &head, evs, 1, NOW_US, &err), &err);
        }
        ok(srv_store_commit(t, &err), &err);
        ok(srv_sqlite_checkpoint(f->st, &err), &err);
        int64_t full = file_size(f, "cairn.db");
        assert_true(full > empty + EVENTS * PAYLOAD);

        ok(srv_store_begin(f->st, &t, &err), &err);
        ok(srv_store_run_find(t, f->a, "big", &head, &found, &err), &err);
        assert_true(found);
        ok(srv_store_run_delete(t, &head, &err), &err);
        ok(srv_store_commit(t, &err), &err);
        ok(srv_sqlite_checkpoint(f->st, &err), &err);
        int64_t after = file_size(f, "cairn.db");
        if (after > empty + 64 * 1024)
            fail_msg("cycle %d: cairn.db is %lld bytes after the delete, %lld when empty, "
                     "%lld full", cycle, (long long)after, (long long)empty, (long long)full);
        assert_false(run_found(f, "big"));
    }
}

/* A store that cannot open its file reports it; it must not crash while
 * cleaning up the half-opened store. The data dir itself is created when
 * missing (mkdir -p), so only one that cannot be created fails. */
static void open_fails_cleanly_when_cairn_db_cannot_be_opened(void **state)
{
    fx *f = *state;
    char file[600], under_file[700], path[600];
    snprintf(file, sizeof file, "%s/a-file", f->dir);
    FILE *fp = fopen(file, "w");
    assert_non_null(fp);
    fclose(fp);
    snprintf(under_file, sizeof under_file, "%s/no/such/dir", file);
    srv_error err;
    srv_store *st = NULL;
    memset(&err, 0, sizeof err);
    assert_int_equal(open_dir(under_file, &st, &err), SRV_UNAVAILABLE);
    assert_null(st);
    assert_non_null(strstr(err.msg, "--data-dir"));

    db_path(f, path);
    assert_int_equal(mkdir(path, 0700), 0); /* cairn.db is a directory */
    memset(&err, 0, sizeof err);
    assert_int_equal(open_dir(f->dir, &st, &err), SRV_UNAVAILABLE);
    assert_null(st);
    assert_non_null(strstr(err.msg, "cairn.db"));

    /* a missing data dir is made */
    char missing[700];
    snprintf(missing, sizeof missing, "%s/new/data", f->dir);
    ok(open_dir(missing, &f->st, &err), &err);
    insert_run(f, "run-1");
    assert_true(run_found(f, "run-1"));
}

static void open_of_a_file_that_is_not_a_database_is_data_loss(void **state)
{
    fx *f = *state;
    char path[600];
    db_path(f, path);
    FILE *fp = fopen(path, "w");
    assert_non_null(fp);
    for (int i = 0; i < 64; i++)
        fputs("this is not an sqlite database. ", fp);
    fclose(fp);
    srv_error err;
    srv_store *st = NULL;
    assert_int_equal(open_dir(f->dir, &st, &err), SRV_DATA_LOSS);
    assert_null(st);
}

static int64_t file_size(const fx *f, const char *name)
{
    char path[600];
    snprintf(path, sizeof path, "%s/%s", f->dir, name);
    struct stat sb;
    return stat(path, &sb) == 0 ? (int64_t)sb.st_size : -1;
}

/* One batch of 80 MiB grows the WAL past its limit; once checkpointed
 * (off the writer), the next write starts the WAL over and cuts the file
 * back to SRV_SQLITE_WAL_LIMIT instead of keeping 80 MiB for ever. */
static void wal_is_cut_back_after_a_large_batch_is_checkpointed(void **state)
{
    fx *f = *state;
    open_store(f);
    insert_run(f, "run-1");
    enum { EVENTS = 80, PAYLOAD = 1024 * 1024 };
    uint8_t *payload = calloc(1, PAYLOAD);
    Cairn__V1__Event ev = CAIRN__V1__EVENT__INIT, *evs[EVENTS];
    ev.type = "bulk";
    ev.worker_id = "";
    ev.payload.data = payload;
    ev.payload.len = PAYLOAD;
    for (int i = 0; i < EVENTS; i++)
        evs[i] = &ev;
    srv_error err;
    srv_txn *t;
    srv_run_head h;
    bool found = false;
    ok(srv_store_begin(f->st, &t, &err), &err);
    ok(srv_store_run_find(t, f->a, "run-1", &h, &found, &err), &err);
    assert_true(found);
    ok(srv_store_events_insert(t, &h, evs, EVENTS, NOW_US, &err), &err);
    ok(srv_store_commit(t, &err), &err);
    free(payload);
    assert_true(file_size(f, "cairn.db-wal") > (int64_t)EVENTS * PAYLOAD);

    ok(srv_sqlite_checkpoint(f->st, &err), &err);
    insert_run(f, "run-2"); /* the next write starts the WAL over */
    int64_t wal = file_size(f, "cairn.db-wal");
    assert_true(wal >= 0);
    if (wal > SRV_SQLITE_WAL_LIMIT)
        fail_msg("cairn.db-wal is %lld bytes, over the %d limit", (long long)wal,
                 SRV_SQLITE_WAL_LIMIT);
    assert_true(run_found(f, "run-1") && run_found(f, "run-2"));
}

/* ---- a data dir it does not trust ---- */

static void write_file(const char *path, const char *text)
{
    FILE *fp = fopen(path, "w");
    assert_non_null(fp);
    fputs(text, fp);
    fclose(fp);
}

static void assert_file_is(const char *path, const char *text)
{
    char buf[256] = "";
    FILE *fp = fopen(path, "r");
    assert_non_null(fp);
    size_t n = fread(buf, 1, sizeof buf - 1, fp);
    fclose(fp);
    buf[n] = '\0';
    assert_string_equal(buf, text);
}

/* f->dir/victim: a directory of files the store must never touch. */
static void make_victim_dir(const fx *f, char out[600])
{
    snprintf(out, 600, "%s/victim", f->dir);
    assert_int_equal(mkdir(out, 0700), 0);
    const char *names[] = {"a", "b", "0123"};
    for (size_t i = 0; i < 3; i++) {
        char p[700];
        snprintf(p, sizeof p, "%s/%s", out, names[i]);
        write_file(p, "precious\n");
    }
}

static void assert_victim_dir_intact(const char *victim)
{
    assert_int_equal(ct_count_entries(victim), 3);
    char p[700];
    snprintf(p, sizeof p, "%s/a", victim);
    assert_file_is(p, "precious\n");
}

/* Tries to open data as the store; one that opens all the same is left
 * in f->st for teardown. */
static srv_code try_open(fx *f, const char *data, srv_error *err)
{
    memset(err, 0, sizeof *err);
    return open_dir(data, &f->st, err);
}

/* Expects rc and err from try_open to be a refusal naming what (a path
 * under data, or "" for data itself) and saying why, on one line. */
static void check_refused(fx *f, srv_code rc, const srv_error *err, const char *data,
                          const char *what, const char *why)
{
    char want[700];
    snprintf(want, sizeof want, "%s%s%s", data, *what ? "/" : "", what);
    if (rc == SRV_OK)
        fail_msg("the store opened %s in spite of %s", data, want);
    assert_int_equal(rc, SRV_FAILED_PRECONDITION);
    assert_null(f->st);
    if (!strstr(err->msg, want) || !strstr(err->msg, why))
        fail_msg("message should name %s and say \"%s\": %s", want, why, err->msg);
    assert_null(strchr(err->msg, '\n'));
}

static void expect_refused(fx *f, const char *data, const char *what, const char *why)
{
    srv_error err;
    srv_code rc = try_open(f, data, &err);
    check_refused(f, rc, &err, data, what, why);
}

static void open_data(fx *f, const char *data)
{
    srv_error err;
    ok(open_dir(data, &f->st, &err), &err);
}

static void data_dir(const fx *f, char out[600])
{
    snprintf(out, 600, "%s/data", f->dir);
    assert_int_equal(mkdir(out, 0700), 0);
}

/* Before: the store opened LOCK through the link and truncated the
 * victim to write its pid. */
static void lock_that_is_a_symlink_is_refused_and_its_target_left_untouched(void **state)
{
    fx *f = *state;
    char data[600], victim[600], lock[700];
    data_dir(f, data);
    snprintf(victim, sizeof victim, "%s/victim-file", f->dir);
    write_file(victim, "precious\n");
    snprintf(lock, sizeof lock, "%s/LOCK", data);
    assert_int_equal(symlink(victim, lock), 0);
    srv_error err;
    srv_code rc = try_open(f, data, &err);
    assert_file_is(victim, "precious\n");
    check_refused(f, rc, &err, data, "LOCK", "symbolic link");

    /* a dangling link: nothing is created at its target either */
    char missing[700];
    snprintf(missing, sizeof missing, "%s/not-there", f->dir);
    assert_int_equal(unlink(lock), 0);
    assert_int_equal(symlink(missing, lock), 0);
    expect_refused(f, data, "LOCK", "symbolic link");
    assert_int_equal(access(missing, F_OK), -1);
}

/* Before: the sweep of staged uploads at open followed the link and
 * deleted every file in the victim directory. */
static void staging_dir_that_is_a_symlink_is_refused_and_the_target_files_kept(void **state)
{
    fx *f = *state;
    char data[600], victim[600], blobs[700], staging[800];
    data_dir(f, data);
    make_victim_dir(f, victim);
    snprintf(blobs, sizeof blobs, "%s/blobs", data);
    assert_int_equal(mkdir(blobs, 0700), 0);
    snprintf(staging, sizeof staging, "%s/staging", blobs);
    assert_int_equal(symlink(victim, staging), 0);
    srv_error err;
    srv_code rc = try_open(f, data, &err);
    assert_victim_dir_intact(victim);
    check_refused(f, rc, &err, data, "blobs/staging", "symbolic link");
}

static void data_dir_that_is_a_symlink_is_refused(void **state)
{
    fx *f = *state;
    char real[600], link[600];
    data_dir(f, real);
    snprintf(link, sizeof link, "%s/link", f->dir);
    assert_int_equal(symlink(real, link), 0);
    expect_refused(f, link, "", "symbolic link");
    assert_int_equal(ct_count_entries(real), 0);
}

/* Before: any mode was accepted. chmod, not mkdir's mode, so the umask
 * cannot hide the bits. */
static void group_or_other_writable_data_dir_is_refused_naming_it(void **state)
{
    fx *f = *state;
    char data[600], blobs[700];
    data_dir(f, data);
    assert_int_equal(chmod(data, 0770), 0);
    expect_refused(f, data, "", "writable by group or others");
    assert_int_equal(chmod(data, 0703), 0);
    expect_refused(f, data, "", "writable by group or others");
    assert_int_equal(ct_count_entries(data), 0); /* refused before anything was made */

    /* the same for a directory beneath */
    assert_int_equal(chmod(data, 0700), 0);
    snprintf(blobs, sizeof blobs, "%s/blobs", data);
    assert_int_equal(mkdir(blobs, 0700), 0);
    assert_int_equal(chmod(blobs, 0775), 0);
    expect_refused(f, data, "blobs", "writable by group or others");

    /* a mode that only reads is fine (a data dir of an older cairnd) */
    assert_int_equal(chmod(blobs, 0755), 0);
    assert_int_equal(chmod(data, 0755), 0);
    open_data(f, data);
}

/* Before: SQLite opened cairn.db through a link (or failed on a WAL link
 * with an unrelated error). */
static void database_files_that_are_symlinks_are_refused(void **state)
{
    fx *f = *state;
    static const char *const names[] = {"cairn.db", "cairn.db-wal", "cairn.db-shm",
                                        "pins.db", "pins.db-wal"};
    char data[600], victim[600];
    data_dir(f, data);
    snprintf(victim, sizeof victim, "%s/victim-file", f->dir);
    write_file(victim, "precious\n");
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        char link[700];
        snprintf(link, sizeof link, "%s/%s", data, names[i]);
        assert_int_equal(symlink(victim, link), 0);
        srv_error err;
        srv_code rc = try_open(f, data, &err);
        assert_file_is(victim, "precious\n");
        check_refused(f, rc, &err, data, names[i], "symbolic link");
        assert_int_equal(unlink(link), 0);
    }
}

/* Stages, links and commits data as the upload of a checkpoint would;
 * writes its SHA-256 into sha. */
static void store_blob(fx *f, const char *data, char sha[65])
{
    srv_sha256 *h = srv_sha256_new();
    assert_non_null(h);
    srv_sha256_update(h, data, strlen(data));
    srv_sha256_final_hex(h, sha);
    srv_sha256_free(h);
    srv_error err;
    srv_blob_stage *b = NULL;
    ok(srv_store_stage_begin(f->st, &b, &err), &err);
    ok(srv_store_stage_write(b, (const uint8_t *)data, strlen(data), &err), &err);
    ok(srv_store_stage_finish(b, sha, &err), &err);
    srv_txn *t;
    ok(srv_store_begin(f->st, &t, &err), &err);
    srv_code rc = srv_store_blob_link(t, b, strlen(data), &err);
    if (rc) {
        srv_store_rollback(t);
        srv_store_stage_free(b);
        fail_msg("linking a snapshot: %s", err.msg);
    }
    ok(srv_store_commit(t, &err), &err);
    srv_store_stage_free(b);
}

/* Checks every entry below path (itself included): directories 0700,
 * regular files 0600, nothing else. Returns how many it saw. */
static int check_modes(const char *path)
{
    struct stat st;
    assert_int_equal(lstat(path, &st), 0);
    if (S_ISREG(st.st_mode)) {
        if ((st.st_mode & 07777) != 0600)
            fail_msg("%s has mode 0%o, want 0600", path, st.st_mode & 07777);
        return 1;
    }
    if (!S_ISDIR(st.st_mode))
        fail_msg("%s is neither a file nor a directory", path);
    if ((st.st_mode & 07777) != 0700)
        fail_msg("%s has mode 0%o, want 0700", path, st.st_mode & 07777);
    int n = 1;
    DIR *d = opendir(path);
    assert_non_null(d);
    struct dirent *e;
    while ((e = readdir(d))) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        char child[1024];
        snprintf(child, sizeof child, "%s/%s", path, e->d_name);
        n += check_modes(child);
    }
    closedir(d);
    return n;
}

/* Before: 0644 files and 0755 directories (whatever the umask let
 * through). The umask here lets everything through, so the modes are the
 * store's own. */
static void files_are_created_0600_and_directories_0700(void **state)
{
    fx *f = *state;
    mode_t old = umask(0);
    char data[600];
    snprintf(data, sizeof data, "%s/new/data", f->dir); /* parents made too */
    srv_error err;
    ok(open_dir(data, &f->st, &err), &err);
    char sha[65];
    store_blob(f, "checkpoint bytes", sha);
    insert_run(f, "run-1");
    int64_t pin;
    ok(srv_store_pin_add(f->st, "run-1", "cp", NOW_US, &pin, &err), &err);

    static const char *const expected[] = {"LOCK",    "cairn.db",    "cairn.db-wal",
                                           "cairn.db-shm", "pins.db", "pins.db-wal",
                                           "pins.db-shm",  "blobs",   "blobs/staging"};
    for (size_t i = 0; i < sizeof expected / sizeof expected[0]; i++) {
        char p[700];
        snprintf(p, sizeof p, "%s/%s", data, expected[i]);
        if (access(p, F_OK) != 0)
            fail_msg("%s missing", p);
    }
    char blob[800];
    snprintf(blob, sizeof blob, "%s/blobs/%.2s/%s", data, sha, sha);
    assert_int_equal(access(blob, F_OK), 0);
    char parent[700];
    snprintf(parent, sizeof parent, "%s/new", f->dir);
    assert_true(check_modes(parent) >= 13);
    umask(old);
}

/* Before: the sweep at open followed the link and deleted the victim's
 * files, which no snapshot row names. */
static void fan_out_dir_that_is_a_symlink_is_refused_at_open_and_the_target_files_kept(
    void **state)
{
    fx *f = *state;
    char data[600], victim[600], sha[65];
    data_dir(f, data);
    make_victim_dir(f, victim);
    open_data(f, data);
    store_blob(f, "checkpoint bytes", sha);
    close_store(f);

    char fan[700], sub[16];
    snprintf(sub, sizeof sub, "blobs/%.2s", sha);
    snprintf(fan, sizeof fan, "%s/%s", data, sub);
    assert_int_equal(ct_rmrf(fan), 0);
    assert_int_equal(symlink(victim, fan), 0);
    srv_error err;
    srv_code rc = try_open(f, data, &err);
    assert_victim_dir_intact(victim);
    check_refused(f, rc, &err, data, sub, "symbolic link");
}

/* Before: the snapshot was renamed through the link into the victim. */
static void link_into_a_fan_out_dir_that_is_a_symlink_is_refused(void **state)
{
    fx *f = *state;
    char data[600], victim[600], sha[65];
    data_dir(f, data);
    make_victim_dir(f, victim);
    open_data(f, data);
    const char *bytes = "other checkpoint bytes";
    srv_sha256 *h = srv_sha256_new();
    srv_sha256_update(h, bytes, strlen(bytes));
    srv_sha256_final_hex(h, sha);
    srv_sha256_free(h);
    char fan[700];
    snprintf(fan, sizeof fan, "%s/blobs/%.2s", data, sha);
    assert_int_equal(symlink(victim, fan), 0);

    srv_error err;
    srv_blob_stage *b = NULL;
    ok(srv_store_stage_begin(f->st, &b, &err), &err);
    ok(srv_store_stage_write(b, (const uint8_t *)bytes, strlen(bytes), &err), &err);
    ok(srv_store_stage_finish(b, sha, &err), &err);
    srv_txn *t;
    ok(srv_store_begin(f->st, &t, &err), &err);
    srv_code rc = srv_store_blob_link(t, b, strlen(bytes), &err);
    srv_store_rollback(t);
    srv_store_stage_free(b);
    assert_victim_dir_intact(victim);
    assert_int_equal(rc, SRV_FAILED_PRECONDITION);
    if (!strstr(err.msg, fan) || !strstr(err.msg, "symbolic link"))
        fail_msg("message should name %s: %s", fan, err.msg);
}

#define T_DIR(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)

int main(void)
{
    const struct CMUnitTest tests[] = {
        T_DIR(fresh_database_has_the_current_schema_version),
        T_DIR(newer_schema_is_refused_and_its_data_left_untouched),
        T_DIR(migrate_from_version_0_creates_the_tables),
        T_DIR(migrate_to_target_0_changes_nothing),
        T_DIR(migrate_stops_at_its_target_version),
        T_DIR(migrate_refuses_a_newer_database),
        T_DIR(open_migrates_a_version_0_database_keeping_its_data),
        T_DIR(open_migrates_a_version_2_database_keeping_its_runs),
        T_DIR(open_migrates_a_version_3_database_dating_completed_runs_and_reclaiming_space),
        T_DIR(open_migrates_a_version_5_database_keeping_every_event),
        T_DIR(a_damaged_row_of_the_log_is_data_loss),
        T_DIR(deleted_runs_give_their_space_back_cycle_after_cycle),
        T_DIR(open_fails_cleanly_when_cairn_db_cannot_be_opened),
        T_DIR(open_of_a_file_that_is_not_a_database_is_data_loss),
        T_DIR(wal_is_cut_back_after_a_large_batch_is_checkpointed),
        T_DIR(lock_that_is_a_symlink_is_refused_and_its_target_left_untouched),
        T_DIR(staging_dir_that_is_a_symlink_is_refused_and_the_target_files_kept),
        T_DIR(data_dir_that_is_a_symlink_is_refused),
        T_DIR(group_or_other_writable_data_dir_is_refused_naming_it),
        T_DIR(database_files_that_are_symlinks_are_refused),
        T_DIR(files_are_created_0600_and_directories_0700),
        T_DIR(fan_out_dir_that_is_a_symlink_is_refused_at_open_and_the_target_files_kept),
        T_DIR(link_into_a_fan_out_dir_that_is_a_symlink_is_refused),
    };
    return cmocka_run_group_tests_name("store_sqlite", tests, NULL, NULL);
}
