/* The PostgreSQL store's error handling, through real cairnd processes
 * on a private cluster (tests/support/pg.h):
 *
 * - a schema newer than the build: cairnd exits 1 with one line saying
 *   so, and leaves the schema as it found it;
 * - PostgreSQL down: a call is UNAVAILABLE, and once it is back the same
 *   call with the same key applies once (a second retry replays it);
 * - right after PostgreSQL restarted, or after pg_terminate_backend of
 *   every cairnd session, calls succeed at their first attempt: the
 *   sessions the server closed are made again before use, not failed
 *   once each;
 * - a session terminated mid-transaction (the writer waiting on a row
 *   lock the test holds): UNAVAILABLE, and the retry with the key
 *   applies once;
 * - password authentication (scram-sha-256) with the password in a 0600
 *   libpq password file named by PGPASSFILE: cairnd serves; without the
 *   file it exits 1 naming the failed authentication.
 *
 * Calls go through a client with one attempt, so each status is the
 * server's own. Exits 77 (ctest: skipped, with the reason) when
 * PostgreSQL cannot run here. */
#include "cairn_test.h"
#include "pg.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <libpq-fe.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

enum { SKIPPED = 77 };
/* Bounds on waits that end on their own (polling PostgreSQL). */
enum { LOCK_WAIT_LIMIT_MS = 30000, TERMINATE_WAIT_MS = 10000 };

static ct_pg pg;

typedef struct fixture {
    char db[32];
    char dsn[1400];
    ct_server s;
    cairn_client *c;              /* one attempt per call */
} fixture;

static cairn_client *one_attempt_client(const ct_server *s)
{
    cairn_retry_policy p;
    cairn_retry_policy_init(&p);
    p.max_attempts = 1;
    p.attempt_deadline_ms = 20000;
    return ct_client(s, &p);
}

static int setup(void **state)
{
    static int n;
    fixture *f = calloc(1, sizeof *f);
    if (!f)
        return -1;
    *state = f;
    snprintf(f->db, sizeof f->db, "errors_%d", ++n);
    if (ct_pg_create_db(pg.dsn, f->db, f->dsn, sizeof f->dsn) < 0 || ct_server_init(&f->s) < 0)
        return -1;
    return 0;
}

/* setup, and cairnd started with its client. */
static int setup_serving(void **state)
{
    if (setup(state) < 0)
        return -1;
    fixture *f = *state;
    if (ct_server_start_postgres(&f->s, f->dsn) < 0 || !(f->c = one_attempt_client(&f->s)))
        return -1;
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;
    if (!f)
        return 0;
    cairn_client_destroy(f->c);
    int rc = f->s.pid && ct_server_stop(&f->s) != 0 ? -1 : 0;
    ct_server_cleanup(&f->s);
    ct_pg_drop_db(pg.dsn, f->db);
    free(f);
    return rc;
}

/* The first column of the first row of a query, as text, into out ("" if
 * none). */
static void create_run(cairn_client *c, const char *run)
{
    const char *workers[] = {"w"};
    assert_int_equal(ct_create_run(c, run, workers, 1), CAIRN_OK);
}

/* One event "payload" with key; returns the status, *res filled on OK. */
static cairn_status append_key(cairn_client *c, const char *run, const char *key,
                               cairn_append_result *res, cairn_error *err)
{
    cairn_event ev = {.type = "e", .payload = "payload", .payload_len = 7};
    cairn_append_request req = {.idempotency_key = key, .run_id = run, .events = &ev,
                                .events_count = 1};
    return cairn_append_events(c, &req, res, err);
}

static void append_ok(cairn_client *c, const char *run, const char *key, uint64_t seq,
                      bool replayed)
{
    cairn_append_result res;
    cairn_error err;
    cairn_status rc = append_key(c, run, key, &res, &err);
    if (rc != CAIRN_OK)
        fail_msg("append %s: %s: %s", key, cairn_strerror(rc), err.message);
    assert_int_equal(res.first_seq, seq);
    assert_int_equal(res.replayed, replayed);
}

static void assert_events(cairn_client *c, const char *run, size_t n)
{
    cairn_event_page page;
    cairn_error err;
    cairn_status rc = cairn_read_events(c, run, 1, 1000, &page, &err);
    if (rc != CAIRN_OK)
        fail_msg("read %s: %s: %s", run, cairn_strerror(rc), err.message);
    assert_int_equal(page.events_count, n);
    for (size_t i = 0; i < n; i++)
        assert_int_equal(page.events[i].seq, i + 1);
    cairn_event_page_free(&page);
}

/* ---- schema ---- */

static void a_schema_newer_than_the_build_makes_cairnd_exit_1_with_one_line(void **state)
{
    fixture *f = *state;
    assert_int_equal(ct_server_start_postgres(&f->s, f->dsn), 0); /* creates the schema */
    assert_int_equal(ct_server_stop(&f->s), 0);
    char v[32];
    assert_int_equal(
        ct_pg_query(f->dsn, "SELECT version FROM cairn_schema", v, sizeof v), 0);
    long built = strtol(v, NULL, 10);
    assert_true(built >= 1);
    assert_true(built < 99);
    assert_int_equal(ct_pg_exec(f->dsn, "UPDATE cairn_schema SET version = 99"), 0);

    assert_int_equal(truncate(f->s.log_path, 0), 0);
    assert_int_equal(ct_server_start_postgres(&f->s, f->dsn), -1);
    assert_int_equal(f->s.exit_status, 1);
    char *log = ct_read_file(f->s.log_path, NULL);
    assert_non_null(log);
    fprintf(stderr, "cairnd said: %s", log);
    char want[128];
    snprintf(want, sizeof want, "schema has version 99, newer than this cairnd understands (%ld)",
             built);
    assert_non_null(strstr(log, want));
    char *nl = strchr(log, '\n');
    assert_true(nl && nl[1] == '\0'); /* one line */
    free(log);
    assert_int_equal(
        ct_pg_query(f->dsn, "SELECT version FROM cairn_schema", v, sizeof v), 0);
    assert_string_equal(v, "99"); /* left as it was */
}

/* ---- PostgreSQL down, restarted, sessions terminated ---- */

static void a_call_while_postgres_is_down_is_unavailable_and_its_key_applies_once_after(
    void **state)
{
    fixture *f = *state;
    create_run(f->c, "down");
    append_ok(f->c, "down", "k-1", 1, false);

    ct_pg_halt(&pg);
    cairn_append_result res;
    cairn_error err;
    cairn_status rc = append_key(f->c, "down", "k-2", &res, &err);
    fprintf(stderr, "while PostgreSQL is down: %s: %s\n", cairn_strerror(rc), err.message);
    assert_int_equal(rc, CAIRN_UNAVAILABLE);
    assert_non_null(strstr(err.message, "PostgreSQL unavailable"));
    cairn_event_page page;
    assert_int_equal(cairn_read_events(f->c, "down", 1, 10, &page, &err), CAIRN_UNAVAILABLE);
    if (ct_pg_resume(&pg) < 0)
        fail_msg("PostgreSQL did not start again: %s", pg.why);

    append_ok(f->c, "down", "k-2", 2, false); /* applied now, once */
    append_ok(f->c, "down", "k-2", 2, true);  /* and replayed after */
    assert_events(f->c, "down", 2);
}

static void calls_right_after_postgres_restarted_succeed_at_their_first_attempt(void **state)
{
    fixture *f = *state;
    create_run(f->c, "restart");
    append_ok(f->c, "restart", "k-1", 1, false);
    assert_events(f->c, "restart", 1);

    ct_pg_halt(&pg);
    if (ct_pg_resume(&pg) < 0)
        fail_msg("PostgreSQL did not start again: %s", pg.why);
    /* Every session cairnd had was closed by the server while idle. */
    append_ok(f->c, "restart", "k-2", 2, false);
    assert_events(f->c, "restart", 2);
    cairn_run run;
    cairn_error err;
    assert_int_equal(cairn_get_run(f->c, "restart", &run, &err), CAIRN_OK);
    assert_int_equal(run.next_seq, 3);
    cairn_run_free(&run);
}

static void calls_after_every_cairnd_session_was_terminated_succeed_at_their_first_attempt(
    void **state)
{
    fixture *f = *state;
    create_run(f->c, "term");
    append_ok(f->c, "term", "k-1", 1, false);
    assert_events(f->c, "term", 1);
    char n[32];
    char sql[200];
    snprintf(sql, sizeof sql,
             "SELECT count(pg_terminate_backend(pid, %d)) FROM pg_stat_activity "
             "WHERE application_name = 'cairnd'",
             TERMINATE_WAIT_MS);
    assert_int_equal(ct_pg_query(pg.dsn, sql, n, sizeof n), 0);
    assert_true(atoi(n) >= 2); /* the writer and the pool, at least */
    append_ok(f->c, "term", "k-2", 2, false);
    assert_events(f->c, "term", 2);
}

typedef struct call {
    cairn_client *c;
    cairn_status rc;
    cairn_error err;
    cairn_append_result res;
} call;

static void *append_thread(void *arg)
{
    call *k = arg;
    k->rc = append_key(k->c, "locked", "k-2", &k->res, &k->err);
    return NULL;
}

/* Polls (PostgreSQL tells no one) until a cairnd session waits on a lock. */
static bool wait_for_lock_waiter(void)
{
    struct timespec pause = {0, 5000000};
    for (int waited = 0; waited < LOCK_WAIT_LIMIT_MS; waited += 5) {
        char n[32];
        assert_int_equal(ct_pg_query(pg.dsn,
                                     "SELECT count(*) FROM pg_stat_activity "
                                     "WHERE application_name = 'cairnd' "
                                     "AND wait_event_type = 'Lock'",
                                     n, sizeof n),
                         0);
        if (atoi(n) > 0)
            return true;
        nanosleep(&pause, NULL);
    }
    return false;
}

static void a_session_terminated_mid_transaction_fails_the_call_unavailable_and_its_key_applies_once(
    void **state)
{
    fixture *f = *state;
    create_run(f->c, "locked");
    append_ok(f->c, "locked", "k-1", 1, false);

    /* The test holds the run's row: cairnd's writer waits for it. */
    PGconn *holder = PQconnectdb(f->dsn);
    assert_int_equal(PQstatus(holder), CONNECTION_OK);
    PGresult *r = PQexec(holder, "BEGIN; SELECT 1 FROM runs WHERE run_id = 'locked' FOR UPDATE");
    assert_int_equal(PQresultStatus(r), PGRES_TUPLES_OK);
    PQclear(r);
    call k = {.c = f->c};
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, append_thread, &k), 0);
    assert_true(wait_for_lock_waiter());
    char n[32];
    char sql[200];
    snprintf(sql, sizeof sql,
             "SELECT count(pg_terminate_backend(pid, %d)) FROM pg_stat_activity "
             "WHERE application_name = 'cairnd' AND wait_event_type = 'Lock'",
             TERMINATE_WAIT_MS);
    assert_int_equal(ct_pg_query(pg.dsn, sql, n, sizeof n), 0);
    assert_int_equal(atoi(n), 1);
    pthread_join(t, NULL);
    fprintf(stderr, "terminated mid-transaction: %s: %s\n", cairn_strerror(k.rc), k.err.message);
    assert_int_equal(k.rc, CAIRN_UNAVAILABLE);
    r = PQexec(holder, "ROLLBACK");
    PQclear(r);
    PQfinish(holder);

    append_ok(f->c, "locked", "k-2", 2, false);
    append_ok(f->c, "locked", "k-2", 2, true);
    assert_events(f->c, "locked", 2);
}

/* ---- password authentication ---- */

static void with_password_auth_cairnd_serves_with_pgpassfile_and_exits_1_without(void **state)
{
    (void)state;
    ct_pg pw;
    int rc = ct_pg_start_password(&pw, "correct horse battery");
    if (rc != 0)
        fail_msg("a cluster with password authentication did not start: %s", pw.why);
    char dsn[1400], env[700];
    assert_int_equal(ct_pg_create_db(pw.dsn, "cairn", dsn, sizeof dsn), 0);
    /* cairnd's DSN names neither a password nor a password file. */
    snprintf(dsn, sizeof dsn, "host=127.0.0.1 port=%d user=postgres dbname=cairn connect_timeout=5",
             pw.port);

    ct_server s;
    assert_int_equal(ct_server_init(&s), 0);
    s.env[0] = "PGPASSFILE=/nonexistent/pgpass";
    assert_int_equal(ct_server_start_postgres(&s, dsn), -1);
    assert_int_equal(s.exit_status, 1);
    char *log = ct_read_file(s.log_path, NULL);
    assert_non_null(log);
    fprintf(stderr, "without the password file: %s", log);
    assert_true(strstr(log, "password") != NULL);
    free(log);

    snprintf(env, sizeof env, "PGPASSFILE=%s", pw.passfile);
    s.env[0] = env;
    if (ct_server_start_postgres(&s, dsn) < 0)
        fail_msg("cairnd with PGPASSFILE did not start");
    cairn_client *c = one_attempt_client(&s);
    create_run(c, "pw");
    append_ok(c, "pw", "k-1", 1, false);
    assert_events(c, "pw", 1);
    cairn_client_destroy(c);
    assert_int_equal(ct_server_stop(&s), 0);
    ct_server_cleanup(&s);
    ct_pg_stop(&pw);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(
            a_schema_newer_than_the_build_makes_cairnd_exit_1_with_one_line, setup, teardown),
        cmocka_unit_test_setup_teardown(
            a_call_while_postgres_is_down_is_unavailable_and_its_key_applies_once_after,
            setup_serving, teardown),
        cmocka_unit_test_setup_teardown(
            calls_right_after_postgres_restarted_succeed_at_their_first_attempt, setup_serving,
            teardown),
        cmocka_unit_test_setup_teardown(
            calls_after_every_cairnd_session_was_terminated_succeed_at_their_first_attempt,
            setup_serving, teardown),
        cmocka_unit_test_setup_teardown(
            a_session_terminated_mid_transaction_fails_the_call_unavailable_and_its_key_applies_once,
            setup_serving, teardown),
        cmocka_unit_test(with_password_auth_cairnd_serves_with_pgpassfile_and_exits_1_without),
    };
    int rc = ct_pg_start(&pg);
    if (rc != 0) {
        fprintf(stderr, "fault_pg_errors: %s: %s\n", rc > 0 ? "skipped" : "failed", pg.why);
        return rc > 0 ? SKIPPED : 1;
    }
    int failed = cmocka_run_group_tests_name("fault_pg_errors", tests, NULL, NULL);
    ct_pg_stop(&pg);
    return failed;
}
