/* What only the SQLite backend has: its schema version, the migrations
 * that carry an older cairn.db forward, and how opening fails on a
 * database it cannot use. Everything a backend must do is in the contract
 * suite (tests/store/). Each test gets its own mkdtemp directory, removed
 * afterwards. */
#include "base/arena.h"
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

#define NOW_US (1769595330ll * 1000000 + 123456)

/* The schema this build writes: 1 runs and events, 2 checkpoints and
 * snapshots, 3 leases (pins live in pins.db, outside the schema). A new
 * migration updates this and the table list below. */
#define SCHEMA_VERSION 3

static const char *const tables[] = {
    "runs",  "run_workers", "run_labels",         "events", "dedup",
    "blobs", "checkpoints", "checkpoint_workers", "leases",
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
    db_path(f, path);
    sqlite3 *db;
    srv_error err;
    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    ok(srv_sqlite_migrate(db, 2, &err), &err);
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
    assert_int_equal(query_int(db, "PRAGMA user_version"), 3);
    sqlite3_close(db);
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
        T_DIR(open_fails_cleanly_when_cairn_db_cannot_be_opened),
        T_DIR(open_of_a_file_that_is_not_a_database_is_data_loss),
        T_DIR(wal_is_cut_back_after_a_large_batch_is_checkpointed),
    };
    return cmocka_run_group_tests_name("store_sqlite", tests, NULL, NULL);
}
