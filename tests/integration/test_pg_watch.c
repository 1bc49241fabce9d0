/* Live watches across replicas (issue 10 item 3): two cairnd replicas,
 * A and B, on one private PostgreSQL (tests/support/pg.h), a libcairn
 * watcher on B and appends through A.
 *
 * - latency: 1,000 appends through A, one every 5 ms, each carrying its
 *   index and CLOCK_MONOTONIC send time; B's watcher gets every one once,
 *   in order, and the time from A's acknowledgement to B's delivery is
 *   under 100 ms at p99 (the bound the issue states; p50/p99/max printed);
 * - a commit announced while B was not listening (B stopped with SIGSTOP
 *   across a restart of PostgreSQL, so its listener cannot be back before
 *   the append) reaches B's watcher with no further append, and a later
 *   one arrives within 1 s (B listens again);
 * - PostgreSQL restarted with B running: an append through A right after
 *   the restart reaches B's watcher (the time printed), and a later one
 *   within 1 s;
 * - B loses the database while its watcher catches up from the log (page
 *   reads fail): the stream ends UNAVAILABLE, libcairn reconnects and
 *   resumes from its next seq once PostgreSQL is back, and every event
 *   arrives exactly once, in order.
 *
 * Exits 77 (ctest: skipped, with the reason) when PostgreSQL cannot run
 * here. Registered RUN_SERIAL: it bounds a latency. */
#include "cairn_test.h"
#include "pg.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

enum { SKIPPED = 77, WAIT_S = 60 };
/* The bound, at p99, from A's acknowledgement to B's delivery. */
enum { LATENCY_P99_BOUND_MS = 100, APPENDS = 1000, PACE_MS = 5 };
/* A replica listening again: LISTEN_RETRY_MAX_MS (server/store/pg/pg.c)
 * plus slack. */
enum { RELISTEN_BOUND_MS = 2000, LIVE_BOUND_MS = 1000 };

static ct_pg pg;

static int64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static double ms(int64_t ns)
{
    return (double)ns / 1e6;
}

/* ---- two replicas on a database of their own ---- */

typedef struct fixture {
    char db[32];
    char dsn[1400];
    ct_server a, b;
    cairn_client *ca, *cb;
    int retries;                  /* B's client: WatchEvents retries */
    cairn_status retry_status;    /* the last one's status */
    pthread_mutex_t mu;
    pthread_cond_t cv;
} fixture;

static void on_retry(void *user, const cairn_retry_info *info)
{
    fixture *f = user;
    if (strcmp(info->method, "WatchEvents") != 0)
        return;
    pthread_mutex_lock(&f->mu);
    f->retries++;
    f->retry_status = info->status;
    fprintf(stderr, "  B's watch: attempt %d failed: %s: %s\n", info->attempt,
            cairn_strerror(info->status), info->message);
    pthread_cond_broadcast(&f->cv);
    pthread_mutex_unlock(&f->mu);
}

static int start_replica(fixture *f, ct_server *s)
{
    return ct_server_init(s) < 0 ? -1 : ct_server_start_postgres(s, f->dsn);
}

static int setup(void **state)
{
    static int n;
    fixture *f = calloc(1, sizeof *f);
    if (!f)
        return -1;
    pthread_mutex_init(&f->mu, NULL);
    pthread_cond_init(&f->cv, NULL);
    snprintf(f->db, sizeof f->db, "watch_%d", ++n);
    if (ct_pg_create_db(pg.dsn, f->db, f->dsn, sizeof f->dsn) < 0 ||
        start_replica(f, &f->a) < 0 || start_replica(f, &f->b) < 0)
        return -1;
    f->ca = ct_client(&f->a, NULL);
    cairn_client_options o;
    cairn_client_options_init(&o);
    o.target = f->b.target;
    o.on_retry = on_retry;
    o.on_retry_user = f;
    cairn_error err;
    if (!f->ca || cairn_client_create(&o, &f->cb, &err) != CAIRN_OK)
        return -1;
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;
    if (!f)
        return 0;
    cairn_client_destroy(f->ca);
    cairn_client_destroy(f->cb);
    int rc = 0;
    ct_server *s[] = {&f->a, &f->b};
    for (int i = 0; i < 2; i++) {
        if (s[i]->pid) {
            kill(s[i]->pid, SIGCONT); /* a test that failed midway may have left it stopped */
            if (ct_server_stop(s[i]) != 0)
                rc = -1;
        }
        ct_server_cleanup(s[i]);
    }
    ct_pg_drop_db(pg.dsn, f->db);
    pthread_cond_destroy(&f->cv);
    pthread_mutex_destroy(&f->mu);
    free(f);
    return rc;
}

static void create_run(cairn_client *c, const char *run)
{
    const char *workers[] = {"w"};
    assert_int_equal(ct_create_run(c, run, workers, 1), CAIRN_OK);
}

/* Appends one event "i <index> <send ns>" through c, retrying with the
 * client's policy. Returns its seq; *ack_ns when acknowledged. */
static uint64_t append_one(cairn_client *c, const char *run, size_t index, int64_t *ack_ns)
{
    char payload[64];
    int len = snprintf(payload, sizeof payload, "i %zu %" PRId64, index, now_ns());
    cairn_event ev = {.type = "e", .payload = payload, .payload_len = (size_t)len};
    cairn_append_request req = {.run_id = run, .events = &ev, .events_count = 1};
    cairn_append_result res;
    cairn_error err;
    cairn_status rc = cairn_append_events(c, &req, &res, &err);
    if (ack_ns)
        *ack_ns = now_ns();
    if (rc != CAIRN_OK)
        fail_msg("append through A: %s: %s", cairn_strerror(rc), err.message);
    return res.first_seq;
}

/* ---- B's watcher ---- */

typedef struct seen {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    uint64_t next;                /* the seq expected next */
    int errors;                   /* out of order, repeated, or a payload not its seq's */
    uint64_t base;                /* payload index i is seq base + i */
    int64_t *at_ns;               /* delivery time by seq, seqs below cap */
    int64_t *sent_ns;             /* the send time its payload carried */
    size_t cap;
    bool hold, released;          /* a slow reader: blocks at its first event */
    bool holding;
} seen;

static void seen_init(seen *s, uint64_t base, size_t cap)
{
    memset(s, 0, sizeof *s);
    pthread_mutex_init(&s->mu, NULL);
    pthread_cond_init(&s->cv, NULL);
    s->next = 1;
    s->base = base;
    s->cap = cap;
    s->at_ns = calloc(cap, sizeof *s->at_ns);
    s->sent_ns = calloc(cap, sizeof *s->sent_ns);
    assert_non_null(s->at_ns);
    assert_non_null(s->sent_ns);
}

static void seen_destroy(seen *s)
{
    free(s->at_ns);
    free(s->sent_ns);
    pthread_cond_destroy(&s->cv);
    pthread_mutex_destroy(&s->mu);
}

static int on_event(void *user, const cairn_event *ev)
{
    int64_t t = now_ns();
    seen *s = user;
    pthread_mutex_lock(&s->mu);
    if (ev->seq != s->next)
        s->errors++;
    s->next = ev->seq + 1;
    size_t index;
    int64_t sent;
    char text[64] = {0};
    memcpy(text, ev->payload, ev->payload_len < 63 ? ev->payload_len : 63);
    if (sscanf(text, "i %zu %" SCNd64, &index, &sent) == 2) {
        if (s->base + index != ev->seq)
            s->errors++;
        if (ev->seq < s->cap) {
            s->at_ns[ev->seq] = t;
            s->sent_ns[ev->seq] = sent;
        }
    }
    pthread_cond_broadcast(&s->cv);
    while (s->hold && !s->released) {
        s->holding = true;
        pthread_cond_broadcast(&s->cv);
        pthread_cond_wait(&s->cv, &s->mu);
    }
    pthread_mutex_unlock(&s->mu);
    return 0;
}

/* Waits until the watcher expects seq next, at most limit_ms. */
static bool wait_next(seen *s, uint64_t next, int limit_ms)
{
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += limit_ms / 1000;
    until.tv_nsec += (long)(limit_ms % 1000) * 1000000L;
    if (until.tv_nsec >= 1000000000L) {
        until.tv_sec++;
        until.tv_nsec -= 1000000000L;
    }
    pthread_mutex_lock(&s->mu);
    while (s->next < next && pthread_cond_timedwait(&s->cv, &s->mu, &until) != ETIMEDOUT)
        ;
    bool ok = s->next >= next;
    pthread_mutex_unlock(&s->mu);
    return ok;
}

static int64_t delivered_at(seen *s, uint64_t seq)
{
    pthread_mutex_lock(&s->mu);
    int64_t t = s->at_ns[seq];
    pthread_mutex_unlock(&s->mu);
    return t;
}

static cairn_watcher *watch(cairn_client *c, const char *run, seen *s)
{
    cairn_watch_request req = {.run_id = run, .from_seq = 1, .on_event = on_event, .user = s};
    cairn_watcher *w;
    cairn_error err;
    assert_int_equal(cairn_watch_start(c, &req, &w, &err), CAIRN_OK);
    return w;
}

static void stop_watch(cairn_watcher *w, seen *s)
{
    cairn_error err;
    cairn_status rc = cairn_watch_stop(w, &err);
    if (rc != CAIRN_OK)
        fail_msg("B's watch ended by itself: %s: %s", cairn_strerror(rc), err.message);
    assert_int_equal(s->errors, 0);
}

/* ---- latency ---- */

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

/* Nearest-rank percentile of n sorted values. */
static int64_t pct(const int64_t *v, size_t n, int p)
{
    size_t rank = (n * (size_t)p + 99) / 100;
    return v[rank ? rank - 1 : 0];
}

static void a_watcher_on_b_gets_appends_through_a_once_in_order_within_100ms_at_p99(
    void **state)
{
    fixture *f = *state;
    create_run(f->ca, "lat");
    seen s;
    seen_init(&s, 1, APPENDS + 2);
    cairn_watcher *w = watch(f->cb, "lat", &s);
    /* The first event proves the stream is up before the clock runs. */
    append_one(f->ca, "lat", 0, NULL);
    assert_true(wait_next(&s, 2, WAIT_S * 1000));

    int64_t *ack = calloc(APPENDS + 2, sizeof *ack);
    assert_non_null(ack);
    struct timespec tick;
    clock_gettime(CLOCK_MONOTONIC, &tick);
    for (size_t i = 1; i <= APPENDS; i++) {
        tick.tv_nsec += PACE_MS * 1000000L;
        if (tick.tv_nsec >= 1000000000L) {
            tick.tv_sec++;
            tick.tv_nsec -= 1000000000L;
        }
        while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &tick, NULL) == EINTR)
            ;
        uint64_t seq = append_one(f->ca, "lat", i, NULL);
        ack[seq < APPENDS + 2 ? seq : 0] = now_ns();
        assert_int_equal(seq, i + 1);
    }
    assert_true(wait_next(&s, APPENDS + 2, WAIT_S * 1000));
    stop_watch(w, &s);
    assert_int_equal(s.next, APPENDS + 2);

    int64_t *acked = calloc(APPENDS, sizeof *acked), *sent = calloc(APPENDS, sizeof *sent);
    assert_non_null(acked);
    assert_non_null(sent);
    size_t early = 0;
    for (size_t i = 0; i < APPENDS; i++) {
        uint64_t seq = i + 2;
        assert_true(s.at_ns[seq] > 0);
        int64_t d = s.at_ns[seq] - ack[seq];
        if (d < 0) /* B delivered it before A's answer reached the test */
            early++, d = 0;
        acked[i] = d;
        sent[i] = s.at_ns[seq] - s.sent_ns[seq];
    }
    qsort(acked, APPENDS, sizeof *acked, cmp_i64);
    qsort(sent, APPENDS, sizeof *sent, cmp_i64);
    printf("cross-replica watch latency, %d appends through A every %d ms, watcher on B:\n"
           "  A's ack -> B's delivery: p50 %.2f ms, p99 %.2f ms, max %.2f ms (%zu delivered "
           "before the ack)\n"
           "  send -> B's delivery:    p50 %.2f ms, p99 %.2f ms, max %.2f ms\n",
           APPENDS, PACE_MS, ms(pct(acked, APPENDS, 50)), ms(pct(acked, APPENDS, 99)),
           ms(acked[APPENDS - 1]), early, ms(pct(sent, APPENDS, 50)), ms(pct(sent, APPENDS, 99)),
           ms(sent[APPENDS - 1]));
    assert_true(pct(acked, APPENDS, 99) < (int64_t)LATENCY_P99_BOUND_MS * 1000000);
    free(acked);
    free(sent);
    free(ack);
    seen_destroy(&s);
}

/* ---- missed notifications ---- */

static void a_commit_announced_while_b_was_not_listening_reaches_its_watcher_without_another_append(
    void **state)
{
    fixture *f = *state;
    create_run(f->ca, "miss");
    seen s;
    seen_init(&s, 0, 16);
    cairn_watcher *w = watch(f->cb, "miss", &s);
    append_one(f->ca, "miss", 1, NULL);
    assert_true(wait_next(&s, 2, WAIT_S * 1000));

    /* B cannot listen again before the append: it is stopped while
     * PostgreSQL restarts (dropping B's listener) and A appends. */
    assert_int_equal(kill(f->b.pid, SIGSTOP), 0);
    ct_pg_halt(&pg);
    if (ct_pg_resume(&pg) < 0)
        fail_msg("PostgreSQL did not start again: %s", pg.why);
    assert_int_equal(append_one(f->ca, "miss", 2, NULL), 2);
    int64_t cont = now_ns();
    assert_int_equal(kill(f->b.pid, SIGCONT), 0);
    if (!wait_next(&s, 3, WAIT_S * 1000))
        fail_msg("the commit made while B was not listening never reached B's watcher");
    printf("missed notification: delivered %.1f ms after B resumed\n",
           ms(delivered_at(&s, 2) - cont));
    assert_true(delivered_at(&s, 2) - cont < (int64_t)RELISTEN_BOUND_MS * 1000000);

    /* B listens again: the next append is live. */
    int64_t ack;
    assert_int_equal(append_one(f->ca, "miss", 3, &ack), 3);
    assert_true(wait_next(&s, 4, LIVE_BOUND_MS));
    printf("  the next append: %.1f ms from A's ack to B's delivery\n",
           ms(delivered_at(&s, 3) - ack));
    stop_watch(w, &s);
    assert_int_equal(s.next, 4);
    seen_destroy(&s);
}

static void after_postgres_restarts_appends_through_a_reach_bs_watcher_promptly(void **state)
{
    fixture *f = *state;
    create_run(f->ca, "restart");
    seen s;
    seen_init(&s, 0, 16);
    cairn_watcher *w = watch(f->cb, "restart", &s);
    append_one(f->ca, "restart", 1, NULL);
    assert_true(wait_next(&s, 2, WAIT_S * 1000));

    int64_t down = now_ns();
    ct_pg_halt(&pg);
    if (ct_pg_resume(&pg) < 0)
        fail_msg("PostgreSQL did not start again: %s", pg.why);
    int64_t up = now_ns();
    int64_t ack;
    assert_int_equal(append_one(f->ca, "restart", 2, &ack), 2);
    if (!wait_next(&s, 3, WAIT_S * 1000))
        fail_msg("the first append after the restart never reached B's watcher");
    printf("PostgreSQL restart: down %.0f ms; first append through A acknowledged %.1f ms "
           "after it was back, delivered on B %.1f ms after the ack\n",
           ms(up - down), ms(ack - up), ms(delivered_at(&s, 2) - ack));
    assert_true(delivered_at(&s, 2) - ack < (int64_t)RELISTEN_BOUND_MS * 1000000);

    int64_t ack3;
    assert_int_equal(append_one(f->ca, "restart", 3, &ack3), 3);
    assert_true(wait_next(&s, 4, LIVE_BOUND_MS));
    printf("  the next append: %.1f ms from A's ack to B's delivery\n",
           ms(delivered_at(&s, 3) - ack3));
    stop_watch(w, &s);
    assert_int_equal(s.next, 4);
    seen_destroy(&s);
}

/* ---- B loses the database mid catch-up ---- */

static void a_watch_on_b_through_a_database_outage_mid_catch_up_misses_and_repeats_nothing(
    void **state)
{
    fixture *f = *state;
    /* More than gRPC's flow control lets B push ahead of a reader that
     * does not read (a few MiB), so B still reads pages when the database
     * goes. */
    enum { BATCHES = 16, PER_BATCH = 1000, TOTAL = BATCHES * PER_BATCH, PAYLOAD = 1000 };
    create_run(f->ca, "outage");
    cairn_event *evs = calloc(PER_BATCH, sizeof *evs);
    char *payload = malloc(PER_BATCH * (size_t)PAYLOAD);
    assert_non_null(evs);
    assert_non_null(payload);
    for (int b = 0; b < BATCHES; b++) {
        for (int i = 0; i < PER_BATCH; i++) {
            char *p = payload + (size_t)i * PAYLOAD;
            memset(p, 'x', PAYLOAD);
            int n = snprintf(p, PAYLOAD, "i %d 0", b * PER_BATCH + i);
            p[n] = ' ';
            evs[i] = (cairn_event){.type = "e", .payload = p, .payload_len = PAYLOAD};
        }
        cairn_append_request req = {.run_id = "outage", .events = evs, .events_count = PER_BATCH};
        cairn_append_result res;
        cairn_error err;
        if (cairn_append_events(f->ca, &req, &res, &err) != CAIRN_OK)
            fail_msg("append: %s", err.message);
    }
    free(evs);
    free(payload);

    seen s;
    seen_init(&s, 1, 1);
    s.hold = true;
    cairn_watcher *w = watch(f->cb, "outage", &s);
    pthread_mutex_lock(&s.mu);
    while (!s.holding)
        pthread_cond_wait(&s.cv, &s.mu);
    pthread_mutex_unlock(&s.mu);

    ct_pg_halt(&pg);
    pthread_mutex_lock(&s.mu);
    s.released = true;
    pthread_cond_broadcast(&s.cv);
    pthread_mutex_unlock(&s.mu);
    /* B's next page read fails: the stream ends UNAVAILABLE and libcairn
     * tries again (failing while the database is down). */
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += WAIT_S;
    pthread_mutex_lock(&f->mu);
    while (!f->retries && pthread_cond_timedwait(&f->cv, &f->mu, &until) != ETIMEDOUT)
        ;
    int retries = f->retries;
    cairn_status why = f->retry_status;
    pthread_mutex_unlock(&f->mu);
    uint64_t at_outage = 0;
    pthread_mutex_lock(&s.mu);
    at_outage = s.next - 1;
    pthread_mutex_unlock(&s.mu);
    if (!retries)
        fail_msg("B's watch never lost the database (all %d events already sent?)", TOTAL);
    assert_int_equal(why, CAIRN_UNAVAILABLE);
    assert_true(at_outage < TOTAL);

    if (ct_pg_resume(&pg) < 0)
        fail_msg("PostgreSQL did not start again: %s", pg.why);
    if (!wait_next(&s, TOTAL + 1, WAIT_S * 1000))
        fail_msg("B's watch stopped at seq %llu of %d", (unsigned long long)s.next - 1, TOTAL);
    printf("database outage mid catch-up: %llu of %d events delivered when B's page read "
           "failed; %d failed attempts; the rest after PostgreSQL returned, none twice\n",
           (unsigned long long)at_outage, TOTAL, retries);
    stop_watch(w, &s);
    assert_int_equal(s.next, TOTAL + 1);
    seen_destroy(&s);
}

/* ---- a deleted run ---- */

typedef struct blocking_watch {
    cairn_client *client;
    seen *seen;
    cairn_status status;
    cairn_error err;
} blocking_watch;

static void *watch_until_it_ends(void *arg)
{
    blocking_watch *bw = arg;
    cairn_watch_request req = {.run_id = "doomed", .from_seq = 1, .on_event = on_event,
                               .user = bw->seen};
    bw->status = cairn_watch(bw->client, &req, &bw->err);
    return NULL;
}

/* The deletion is announced like an append: B's watcher, caught up and
 * parked, ends NOT_FOUND though B deleted nothing. */
static void a_run_deleted_through_a_ends_bs_watcher_not_found(void **state)
{
    fixture *f = *state;
    create_run(f->ca, "doomed");
    seen s;
    seen_init(&s, 0, 16);
    blocking_watch bw = {.client = f->cb, .seen = &s};
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, watch_until_it_ends, &bw), 0);
    append_one(f->ca, "doomed", 1, NULL);
    assert_true(wait_next(&s, 2, WAIT_S * 1000)); /* B's watcher has it, then parks */

    cairn_delete_run_request req = {.run_id = "doomed"};
    cairn_delete_run_result res;
    cairn_error err;
    assert_int_equal(cairn_delete_run(f->ca, &req, &res, &err), CAIRN_OK);
    assert_true(res.existed);
    pthread_join(th, NULL); /* bounded by the test's timeout */
    assert_int_equal(bw.status, CAIRN_NOT_FOUND);
    assert_non_null(strstr(bw.err.message, "deleted"));
    seen_destroy(&s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(a_run_deleted_through_a_ends_bs_watcher_not_found, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(
            a_watcher_on_b_gets_appends_through_a_once_in_order_within_100ms_at_p99, setup,
            teardown),
        cmocka_unit_test_setup_teardown(
            a_commit_announced_while_b_was_not_listening_reaches_its_watcher_without_another_append,
            setup, teardown),
        cmocka_unit_test_setup_teardown(
            after_postgres_restarts_appends_through_a_reach_bs_watcher_promptly, setup, teardown),
        cmocka_unit_test_setup_teardown(
            a_watch_on_b_through_a_database_outage_mid_catch_up_misses_and_repeats_nothing, setup,
            teardown),
    };
    int rc = ct_pg_start(&pg);
    if (rc != 0) {
        fprintf(stderr, "integration_pg_watch: %s: %s\n", rc > 0 ? "skipped" : "failed", pg.why);
        return rc > 0 ? SKIPPED : 1;
    }
    int failed = cmocka_run_group_tests_name("integration_pg_watch", tests, NULL, NULL);
    ct_pg_stop(&pg);
    return failed;
}
