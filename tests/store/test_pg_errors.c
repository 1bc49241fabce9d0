/* What is the PostgreSQL backend's own (the contract suite covers what
 * every backend shares): errors as store.h reports them, on a private
 * cluster (tests/support/pg.h), a database per test.
 *
 * - a schema newer than the build: srv_store_open fails
 *   FAILED_PRECONDITION naming both versions, and changes nothing;
 * - a deadlock between two replicas' write transactions (each holds one
 *   run's row and asks for the other's): PostgreSQL fails one with 40P01
 *   after deadlock_timeout, which is ABORTED; the other goes on and
 *   commits.
 *
 * Not constructed here: a serialization failure (40001) cannot happen to
 * this backend's transactions (the writer runs READ COMMITTED, the reads
 * are REPEATABLE READ READ ONLY, which PostgreSQL never fails with
 * 40001), so its mapping is the same branch as 40P01; disk full (53100)
 * would need PostgreSQL's own disk filled (fault_disk_full does that for
 * SQLite through an LD_PRELOAD shim, which cannot reach a postmaster we do
 * not exec under it). Exits 77 when PostgreSQL cannot run here. */
#include "base/arena.h"
#include "base/error.h"
#include "pg.h"
#include "store/store.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <libpq-fe.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { SKIPPED = 77 };

static ct_pg pg;

typedef struct fx {
    char db[32];
    char dsn[1400];
    char dir[16];
} fx;

static void ok(srv_code rc, const srv_error *err)
{
    if (rc != SRV_OK)
        fail_msg("expected OK, got %s: %s", srv_code_name(rc), err->msg);
}

static srv_store *open_store(fx *f)
{
    srv_store_config cfg = {.data_dir = f->dir, .readers = 2, .pg_dsn = f->dsn};
    srv_store *st = NULL;
    srv_error err;
    ok(srv_store_open("postgres", &cfg, &st, &err), &err);
    return st;
}

static int setup(void **state)
{
    static int n;
    fx *f = calloc(1, sizeof *f);
    if (!f)
        return -1;
    snprintf(f->db, sizeof f->db, "store_errors_%d", ++n);
    snprintf(f->dir, sizeof f->dir, "unused");
    *state = f;
    return ct_pg_create_db(pg.dsn, f->db, f->dsn, sizeof f->dsn);
}

static int teardown(void **state)
{
    fx *f = *state;
    int rc = ct_pg_drop_db(pg.dsn, f->db);
    free(f);
    return rc;
}

static void a_schema_newer_than_the_build_fails_open_failed_precondition_untouched(
    void **state)
{
    fx *f = *state;
    srv_store_close(open_store(f)); /* creates the schema */
    char built[32], v[32];
    assert_int_equal(
        ct_pg_query(f->dsn, "SELECT version FROM cairn_schema", built, sizeof built), 0);
    assert_int_equal(ct_pg_exec(f->dsn, "UPDATE cairn_schema SET version = version + 1"), 0);
    assert_int_equal(
        ct_pg_query(f->dsn, "SELECT version FROM cairn_schema", v, sizeof v), 0);

    srv_store_config cfg = {.data_dir = f->dir, .readers = 2, .pg_dsn = f->dsn};
    srv_store *st = NULL;
    srv_error err;
    assert_int_equal(srv_store_open("postgres", &cfg, &st, &err), SRV_FAILED_PRECONDITION);
    assert_null(st);
    char want[128];
    snprintf(want, sizeof want, "has version %s, newer than this cairnd understands (%s)", v,
             built);
    assert_non_null(strstr(err.msg, want));
    char after[32];
    assert_int_equal(
        ct_pg_query(f->dsn, "SELECT version FROM cairn_schema", after, sizeof after), 0);
    assert_string_equal(after, v);
}

/* ---- deadlock ---- */

typedef struct locker {
    srv_store *st;
    srv_txn *t;
    const char *second;           /* the run it asks for once it holds its first */
    srv_code rc;
    srv_error err;
} locker;

static void *take_second(void *arg)
{
    locker *l = arg;
    srv_arena *a = srv_arena_create();
    srv_run_head h;
    bool found = false;
    l->rc = srv_store_run_find(l->t, a, l->second, &h, &found, &l->err);
    if (l->rc) { /* as the ledger ends a failed batch: the other may go on */
        srv_store_rollback(l->t);
        l->t = NULL;
    }
    srv_arena_destroy(a);
    return NULL;
}

static void insert_run(srv_store *st, const char *run_id)
{
    srv_txn *t;
    srv_error err;
    ok(srv_store_begin(st, &t, &err), &err);
    char *workers[] = {"w"};
    int64_t ref;
    ok(srv_store_run_insert(t, run_id, workers, 1, NULL, 0, 1, &ref, &err), &err);
    ok(srv_store_commit(t, &err), &err);
}

static void lock_first(locker *l, const char *run_id)
{
    srv_arena *a = srv_arena_create();
    srv_run_head h;
    bool found = false;
    ok(srv_store_begin(l->st, &l->t, &l->err), &l->err);
    ok(srv_store_run_find(l->t, a, run_id, &h, &found, &l->err), &l->err); /* locks its row */
    assert_true(found);
    srv_arena_destroy(a);
}

static void two_replicas_locking_two_runs_in_opposite_orders_one_is_aborted_the_other_commits(
    void **state)
{
    fx *f = *state;
    locker x = {.st = open_store(f), .second = "run-b"};
    locker y = {.st = open_store(f), .second = "run-a"};
    insert_run(x.st, "run-a");
    insert_run(x.st, "run-b");
    lock_first(&x, "run-a");
    lock_first(&y, "run-b");
    pthread_t tx, ty;
    assert_int_equal(pthread_create(&tx, NULL, take_second, &x), 0);
    assert_int_equal(pthread_create(&ty, NULL, take_second, &y), 0);
    /* PostgreSQL fails one after deadlock_timeout (1 s); that one's
     * rollback lets the other through, so both threads end. */
    locker *victim = NULL, *winner = NULL;
    pthread_join(tx, NULL);
    pthread_join(ty, NULL);
    if (x.rc == SRV_ABORTED)
        victim = &x, winner = &y;
    else if (y.rc == SRV_ABORTED)
        victim = &y, winner = &x;
    if (!victim)
        fail_msg("no ABORTED: %s (%s), %s (%s)", srv_code_name(x.rc), x.err.msg,
                 srv_code_name(y.rc), y.err.msg);
    fprintf(stderr, "the deadlock's victim: %s: %s\n", srv_code_name(victim->rc),
            victim->err.msg);
    assert_non_null(strstr(victim->err.msg, "conflicted with a concurrent transaction"));
    ok(winner->rc, &winner->err);
    srv_error err;
    ok(srv_store_commit(winner->t, &err), &err);
    srv_store_close(x.st);
    srv_store_close(y.st);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(
            a_schema_newer_than_the_build_fails_open_failed_precondition_untouched, setup,
            teardown),
        cmocka_unit_test_setup_teardown(
            two_replicas_locking_two_runs_in_opposite_orders_one_is_aborted_the_other_commits,
            setup, teardown),
    };
    int rc = ct_pg_start(&pg);
    if (rc != 0) {
        fprintf(stderr, "store_pg_errors: %s: %s\n", rc > 0 ? "skipped" : "failed", pg.why);
        return rc > 0 ? SKIPPED : 1;
    }
    int failed = cmocka_run_group_tests_name("store_pg_errors", tests, NULL, NULL);
    ct_pg_stop(&pg);
    return failed;
}
