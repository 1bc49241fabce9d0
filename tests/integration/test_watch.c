/* WatchEvents through cairn_watch against a real cairnd: catch-up then
 * live with no gap or duplicate, under concurrent appends, 1,000 watchers,
 * a slow watcher, cancel, a restart in the middle, shutdown, and a stop
 * while the server is down and the watch waits to reconnect. */
#include "cairn_test.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

enum { WAIT_S = 60 };

typedef ct_fixture fixture;

static void create_run(cairn_client *c, const char *run_id)
{
    const char *workers[] = {"w"};
    assert_int_equal(ct_create_run(c, run_id, workers, 1), CAIRN_OK);
}

/* Appends n events in batches of up to 1,000. Thread-safe: appender
 * threads call it too, so the batch is the caller's own and failures are
 * returned (a cmocka assert may only fail on the test's own thread). */
static cairn_status append_status(cairn_client *c, const char *run, int n)
{
    enum { BATCH = 1000 };
    cairn_event *evs = calloc(BATCH, sizeof *evs);
    if (!evs)
        return CAIRN_NO_MEMORY;
    cairn_status rc = CAIRN_OK;
    while (n > 0 && rc == CAIRN_OK) {
        int k = n < BATCH ? n : BATCH;
        for (int i = 0; i < k; i++)
            evs[i] = (cairn_event){.type = "e", .payload = "p", .payload_len = 1};
        cairn_append_request req = {.run_id = run, .events = evs, .events_count = (size_t)k};
        cairn_append_result res;
        cairn_error err;
        if ((rc = cairn_append_events(c, &req, &res, &err)) != CAIRN_OK)
            fprintf(stderr, "append to %s: %s\n", run, err.message);
        n -= k;
    }
    free(evs);
    return rc;
}

static void append(cairn_client *c, const char *run, int n)
{
    assert_int_equal(append_status(c, run, n), CAIRN_OK);
}

/* What a watcher saw: seqs must arrive as from, from + 1, ... */
typedef struct seen {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    uint64_t next;                /* the seq expected next */
    uint64_t stop_after;          /* stop once this seq arrived (0: never) */
    int errors;                   /* out-of-order or repeated seqs */
    uint64_t hold_until;          /* the slow watcher: block at its first event... */
    bool released;                /* ...until released */
    int *done_count;              /* shared by many watchers */
    pthread_cond_t *done_cv;
    pthread_mutex_t *done_mu;
} seen;

static void seen_init(seen *s, uint64_t from, uint64_t stop_after)
{
    memset(s, 0, sizeof *s);
    pthread_mutex_init(&s->mu, NULL);
    pthread_cond_init(&s->cv, NULL);
    s->next = from;
    s->stop_after = stop_after;
}

static int on_event(void *user, const cairn_event *ev)
{
    seen *s = user;
    pthread_mutex_lock(&s->mu);
    if (ev->seq != s->next)
        s->errors++;
    s->next = ev->seq + 1;
    pthread_cond_broadcast(&s->cv);
    while (s->hold_until && !s->released)
        pthread_cond_wait(&s->cv, &s->mu); /* a slow reader */
    bool stop = s->stop_after && ev->seq >= s->stop_after;
    pthread_mutex_unlock(&s->mu);
    if (stop && s->done_count) {
        pthread_mutex_lock(s->done_mu);
        (*s->done_count)++;
        pthread_cond_broadcast(s->done_cv);
        pthread_mutex_unlock(s->done_mu);
    }
    return stop;
}

/* Waits (bounded) until the watcher expects seq `next`. */
static bool wait_next(seen *s, uint64_t next)
{
    struct timespec deadline;
    clock_gettime(CLOCK_REALTIME, &deadline);
    deadline.tv_sec += WAIT_S * ct_time_scale();
    pthread_mutex_lock(&s->mu);
    while (s->next < next && pthread_cond_timedwait(&s->cv, &s->mu, &deadline) != ETIMEDOUT)
        ;
    bool ok = s->next >= next;
    pthread_mutex_unlock(&s->mu);
    return ok;
}

static cairn_watcher *watch(cairn_client *c, const char *run, uint64_t from, seen *s)
{
    cairn_watch_request req = {.run_id = run, .from_seq = from, .on_event = on_event, .user = s};
    cairn_watcher *w;
    cairn_error err;
    assert_int_equal(cairn_watch_start(c, &req, &w, &err), CAIRN_OK);
    return w;
}

static void catch_up_then_live_without_gap(void **state)
{
    fixture *f = *state;
    create_run(f->client, "w-basic");
    append(f->client, "w-basic", 5);
    seen s;
    seen_init(&s, 1, 0);
    cairn_watcher *w = watch(f->client, "w-basic", 0 /* = 1 */, &s);
    assert_true(wait_next(&s, 6));
    append(f->client, "w-basic", 5);
    assert_true(wait_next(&s, 11));
    cairn_error err;
    assert_int_equal(cairn_watch_stop(w, &err), CAIRN_OK);
    assert_int_equal(s.errors, 0);
    assert_int_equal(s.next, 11);

    /* From the middle, and from past the end (waits for new events). */
    seen mid, ahead;
    seen_init(&mid, 4, 0);
    seen_init(&ahead, 11, 0);
    cairn_watcher *a = watch(f->client, "w-basic", 4, &mid);
    cairn_watcher *b = watch(f->client, "w-basic", 11, &ahead);
    assert_true(wait_next(&mid, 11));
    append(f->client, "w-basic", 1);
    assert_true(wait_next(&ahead, 12));
    assert_int_equal(cairn_watch_stop(a, NULL), CAIRN_OK);
    assert_int_equal(cairn_watch_stop(b, NULL), CAIRN_OK);
    assert_int_equal(mid.errors + ahead.errors, 0);
}

typedef struct appender {
    cairn_client *client;
    const char *run;
    int count;
    cairn_status rc; /* the first failure, checked after the join */
} appender;

static void *append_thread(void *arg)
{
    appender *a = arg;
    for (int i = 0; i < a->count && a->rc == CAIRN_OK; i += 10)
        a->rc = append_status(a->client, a->run, 10);
    return NULL;
}

static void boundary_under_concurrent_appends_has_no_gap_or_duplicate(void **state)
{
    fixture *f = *state;
    create_run(f->client, "w-race");
    enum { THREADS = 4, EACH = 2500, TOTAL = THREADS * EACH };
    pthread_t t[THREADS];
    appender a[THREADS];
    for (int i = 0; i < THREADS; i++) {
        a[i] = (appender){f->client, "w-race", EACH, CAIRN_OK};
        assert_int_equal(pthread_create(&t[i], NULL, append_thread, &a[i]), 0);
    }
    /* Started while appends flow: catch-up and live meet mid-stream. */
    seen s;
    seen_init(&s, 1, 0);
    cairn_watcher *w = watch(f->client, "w-race", 1, &s);
    for (int i = 0; i < THREADS; i++) {
        assert_int_equal(pthread_join(t[i], NULL), 0);
        assert_int_equal(a[i].rc, CAIRN_OK);
    }
    assert_true(wait_next(&s, TOTAL + 1));
    assert_int_equal(cairn_watch_stop(w, NULL), CAIRN_OK);
    assert_int_equal(s.errors, 0);
    assert_int_equal(s.next, TOTAL + 1);
}

static void a_thousand_watchers_see_every_event(void **state)
{
    fixture *f = *state;
    create_run(f->client, "w-many");
    /* 999 watchers and the append: the 1,000 calls the server lets one
     * connection hold at once (--max-concurrent-streams). With 1,000
     * watchers the append had a slot only when it got in before the last
     * watchers' streams did, and under load it waited out its deadline
     * (seen with both stores). */
    enum { WATCHERS = 999, EVENTS = 50 };
    static seen s[WATCHERS];
    static cairn_watcher *w[WATCHERS];
    int done = 0;
    pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
    pthread_cond_t cv = PTHREAD_COND_INITIALIZER;
    for (int i = 0; i < WATCHERS; i++) {
        seen_init(&s[i], 1, EVENTS);
        s[i].done_count = &done;
        s[i].done_mu = &mu;
        s[i].done_cv = &cv;
        w[i] = watch(f->client, "w-many", 1, &s[i]);
    }
    append(f->client, "w-many", EVENTS);
    struct timespec deadline;
    clock_gettime(CLOCK_REALTIME, &deadline);
    deadline.tv_sec += WAIT_S * ct_time_scale();
    pthread_mutex_lock(&mu);
    while (done < WATCHERS && pthread_cond_timedwait(&cv, &mu, &deadline) != ETIMEDOUT)
        ;
    pthread_mutex_unlock(&mu);
    assert_int_equal(done, WATCHERS);
    int errors = 0;
    for (int i = 0; i < WATCHERS; i++) {
        assert_int_equal(cairn_watch_stop(w[i], NULL), CAIRN_OK);
        errors += s[i].errors;
        assert_int_equal(s[i].next, EVENTS + 1);
    }
    assert_int_equal(errors, 0);
    /* The server still serves. */
    cairn_serving serving;
    cairn_error err;
    assert_int_equal(cairn_health_check(f->client, NULL, &serving, &err), CAIRN_OK);
}

static void a_slow_watcher_catches_up_from_the_log(void **state)
{
    fixture *f = *state;
    create_run(f->client, "w-slow");
    seen s;
    seen_init(&s, 1, 0);
    s.hold_until = 1; /* blocks at its first event */
    cairn_watcher *w = watch(f->client, "w-slow", 1, &s);
    append(f->client, "w-slow", 1);
    assert_true(wait_next(&s, 2)); /* it holds event 1 */
    /* Appends go on regardless, past the server's in-memory ring. */
    append(f->client, "w-slow", 6000);
    pthread_mutex_lock(&s.mu);
    s.released = true;
    pthread_cond_broadcast(&s.cv);
    pthread_mutex_unlock(&s.mu);
    assert_true(wait_next(&s, 6002));
    assert_int_equal(cairn_watch_stop(w, NULL), CAIRN_OK);
    assert_int_equal(s.errors, 0);
}

static void stopping_a_parked_watch_is_prompt(void **state)
{
    fixture *f = *state;
    create_run(f->client, "w-cancel");
    append(f->client, "w-cancel", 3);
    seen s;
    seen_init(&s, 1, 0);
    cairn_watcher *w = watch(f->client, "w-cancel", 1, &s);
    assert_true(wait_next(&s, 4)); /* caught up: parked on the server */
    cairn_error err;
    assert_int_equal(cairn_watch_stop(w, &err), CAIRN_OK);
    cairn_serving serving;
    assert_int_equal(cairn_health_check(f->client, NULL, &serving, &err), CAIRN_OK);
    /* An unknown run ends the watch at once, permanently. */
    cairn_watch_request bad = {.run_id = "no-such-run", .on_event = on_event, .user = &s};
    assert_int_equal(cairn_watch(f->client, &bad, &err), CAIRN_NOT_FOUND);
}

static void a_watch_rides_through_a_server_restart(void **state)
{
    (void)state;
    ct_server srv;
    assert_int_equal(ct_server_init(&srv), 0);
    assert_int_equal(ct_server_start(&srv, 0, NULL), 0);
    cairn_client *c = ct_client(&srv, NULL);
    create_run(c, "w-restart");
    append(c, "w-restart", 100);
    seen s;
    seen_init(&s, 1, 0);
    cairn_watcher *w = watch(c, "w-restart", 1, &s);
    assert_true(wait_next(&s, 101));
    int port = srv.port;
    ct_server_kill(&srv);
    assert_int_equal(ct_server_start(&srv, port, NULL), 0);
    append(c, "w-restart", 100);
    assert_true(wait_next(&s, 201));
    assert_int_equal(cairn_watch_stop(w, NULL), CAIRN_OK);
    assert_int_equal(s.errors, 0); /* resumed from seq 101: no gap, no repeat */
    cairn_client_destroy(c);
    assert_int_equal(ct_server_stop(&srv), 0);
    ct_server_cleanup(&srv);
}

/* What on_retry reported: the watch is about to wait to reconnect. */
typedef struct backoff_seen {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int count;
    uint32_t delay_ms;
} backoff_seen;

static void on_retry(void *user, const cairn_retry_info *info)
{
    backoff_seen *b = user;
    /* The watch's own: under valgrind a first call may be retried too,
     * its first connection attempt abandoned (ct_client_connect). */
    if (strcmp(info->method, "WatchEvents") != 0)
        return;
    pthread_mutex_lock(&b->mu);
    b->count++;
    b->delay_ms = info->delay_ms;
    pthread_cond_broadcast(&b->cv);
    pthread_mutex_unlock(&b->mu);
}

static int64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void stopping_a_watch_in_its_reconnect_backoff_is_prompt(void **state)
{
    (void)state;
    ct_server srv;
    assert_int_equal(ct_server_init(&srv), 0);
    assert_int_equal(ct_server_start(&srv, 0, NULL), 0);
    /* A 20 s backoff before the first reconnect: the stop must not wait
     * it out. */
    backoff_seen b = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0, 0};
    cairn_client_options opts;
    cairn_client_options_init(&opts);
    opts.target = srv.target;
    opts.retry.base_delay_ms = 20000;
    opts.retry.max_delay_ms = 20000;
    opts.retry.jitter = CAIRN_JITTER_NONE;
    opts.on_retry = on_retry;
    opts.on_retry_user = &b;
    cairn_client *c;
    cairn_error err;
    assert_int_equal(cairn_client_create(&opts, &c, &err), CAIRN_OK);
    create_run(c, "w-backoff");
    append(c, "w-backoff", 1);
    seen s;
    seen_init(&s, 1, 0);
    cairn_watcher *w = watch(c, "w-backoff", 1, &s);
    assert_true(wait_next(&s, 2)); /* connected and caught up */

    ct_server_kill(&srv); /* down, and it stays down */
    struct timespec deadline;
    clock_gettime(CLOCK_REALTIME, &deadline);
    deadline.tv_sec += WAIT_S * ct_time_scale();
    pthread_mutex_lock(&b.mu);
    while (b.count == 0 && pthread_cond_timedwait(&b.cv, &b.mu, &deadline) != ETIMEDOUT)
        ;
    int reported = b.count;
    uint32_t delay = b.delay_ms;
    pthread_mutex_unlock(&b.mu);
    assert_int_equal(reported, 1); /* on_retry: the backoff starts now */
    assert_int_equal(delay, 20000);

    int64_t start = mono_ms();
    assert_int_equal(cairn_watch_stop(w, &err), CAIRN_OK);
    int64_t ms = mono_ms() - start;
    print_message("cairn_watch_stop in a 20000 ms reconnect backoff returned after %lld ms\n",
                  (long long)ms);
    assert_true(ms < 1000); /* well under 100 ms; 1 s for a loaded machine */
    assert_int_equal(s.errors, 0);
    cairn_client_destroy(c);
    ct_server_cleanup(&srv);
}

typedef struct blocking_watch {
    cairn_client *client;
    cairn_watch_request req;
    cairn_status result;
} blocking_watch;

static void *run_watch(void *arg)
{
    blocking_watch *b = arg;
    cairn_error err;
    b->result = cairn_watch(b->client, &b->req, &err);
    return NULL;
}

static void shutdown_ends_watches_with_unavailable(void **state)
{
    (void)state;
    ct_server srv;
    assert_int_equal(ct_server_init(&srv), 0);
    /* A grace this long would hang the test if a parked stream held
     * shutdown up. */
    const char *args[] = {"--shutdown-grace-ms", "600000", NULL};
    assert_int_equal(ct_server_start(&srv, 0, args), 0);
    cairn_retry_policy once;
    cairn_retry_policy_init(&once);
    once.max_attempts = 1; /* see how the stream ended */
    cairn_client *c = ct_client(&srv, &once);
    create_run(c, "w-shutdown");
    append(c, "w-shutdown", 2);
    seen s;
    seen_init(&s, 1, 0);
    blocking_watch b = {c, {.run_id = "w-shutdown", .from_seq = 1, .on_event = on_event,
                            .user = &s}, CAIRN_OK};
    pthread_t t;
    pthread_create(&t, NULL, run_watch, &b);
    assert_true(wait_next(&s, 3)); /* caught up: parked */
    assert_int_equal(ct_server_stop(&srv), 0);
    pthread_join(t, NULL);
    assert_int_equal(b.result, CAIRN_UNAVAILABLE);
    cairn_client_destroy(c);
    ct_server_cleanup(&srv);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(catch_up_then_live_without_gap),
        cmocka_unit_test(boundary_under_concurrent_appends_has_no_gap_or_duplicate),
        cmocka_unit_test(a_thousand_watchers_see_every_event),
        cmocka_unit_test(a_slow_watcher_catches_up_from_the_log),
        cmocka_unit_test(stopping_a_parked_watch_is_prompt),
        cmocka_unit_test(a_watch_rides_through_a_server_restart),
        cmocka_unit_test(shutdown_ends_watches_with_unavailable),
        cmocka_unit_test(stopping_a_watch_in_its_reconnect_backoff_is_prompt),
    };
    return cmocka_run_group_tests_name("watch", tests, ct_fixture_setup, ct_fixture_teardown);
}
