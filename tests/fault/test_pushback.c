/* libcairn against a server that pushes back too far: pushback_server.py
 * (Python grpcio on 127.0.0.1, an ephemeral port) answers every call with
 * UNAVAILABLE and grpc-retry-pushback-ms set to what the test asks for.
 * A call must still end within its deadline, and a watch or a lease
 * keeper waiting out a pushback must stop at once when told to.
 *
 * Anything that could hang runs on a thread of its own, bounded by
 * HANG_MS: a hang fails the test instead of blocking it (what it holds
 * is then left behind). */
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

enum {
    HANG_MS = 10000,     /* past this, an operation counts as hung */
    STOP_BOUND_MS = 1000, /* a stop should take well under 100 ms; 1 s for a loaded machine */
    WAIT_MS = 30000,     /* a bound on waiting for the fake server or a retry report */
    QUIET_MS = 500,      /* how long a keeper must leave a pushing-back server alone */
};

#define INT64_MAX_TEXT "9223372036854775807"

static int64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void start_fake(ct_helper *h, const char *pushback)
{
    const char *argv[] = {CT_PYTHON, CT_PUSHBACK_SERVER, "--pushback-ms", pushback, NULL};
    assert_int_equal(ct_helper_start(h, argv), 0);
}

/* ---- running something with a bound ---- */

typedef struct bounded {
    void (*fn)(void *arg);
    void *arg;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool done;
} bounded;

static void *bounded_thread(void *p)
{
    bounded *b = p;
    b->fn(b->arg);
    pthread_mutex_lock(&b->mu);
    b->done = true;
    pthread_cond_signal(&b->cv);
    pthread_mutex_unlock(&b->mu);
    return NULL;
}

/* Runs fn(arg) on a thread; true with *elapsed_ms when it returned within
 * HANG_MS. When it did not, its thread (and the bounded block) is left
 * behind, still running. */
static bool run_bounded(void (*fn)(void *), void *arg, int64_t *elapsed_ms)
{
    bounded *b = calloc(1, sizeof *b);
    assert_non_null(b);
    b->fn = fn;
    b->arg = arg;
    pthread_mutex_init(&b->mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&b->cv, &ca);
    pthread_condattr_destroy(&ca);
    int64_t start = mono_ms();
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, bounded_thread, b), 0);
    struct timespec until;
    clock_gettime(CLOCK_MONOTONIC, &until);
    until.tv_sec += HANG_MS / 1000;
    pthread_mutex_lock(&b->mu);
    while (!b->done && pthread_cond_timedwait(&b->cv, &b->mu, &until) != ETIMEDOUT)
        ;
    bool done = b->done;
    pthread_mutex_unlock(&b->mu);
    *elapsed_ms = mono_ms() - start;
    if (!done) {
        pthread_detach(t);
        return false;
    }
    pthread_join(t, NULL);
    pthread_cond_destroy(&b->cv);
    pthread_mutex_destroy(&b->mu);
    free(b);
    return true;
}

/* ---- what on_retry reported ---- */

typedef struct retries {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int count;
    cairn_retry_info last;
} retries;

static void observe(void *user, const cairn_retry_info *info)
{
    retries *r = user;
    pthread_mutex_lock(&r->mu);
    r->count++;
    r->last = *info;
    r->last.method = NULL; /* its strings live during the call only */
    r->last.message = NULL;
    pthread_cond_broadcast(&r->cv);
    pthread_mutex_unlock(&r->mu);
}

/* Waits (bounded) for on_retry's first report: the waiting starts then. */
static bool wait_retry(retries *r)
{
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += WAIT_MS / 1000;
    pthread_mutex_lock(&r->mu);
    while (r->count == 0 && pthread_cond_timedwait(&r->cv, &r->mu, &until) != ETIMEDOUT)
        ;
    bool seen = r->count > 0;
    pthread_mutex_unlock(&r->mu);
    return seen;
}

static cairn_client *client_for(const ct_helper *h, uint32_t call_deadline_ms, retries *r)
{
    cairn_client_options opts;
    cairn_client_options_init(&opts);
    opts.target = h->target;
    if (call_deadline_ms)
        opts.retry.call_deadline_ms = call_deadline_ms;
    opts.on_retry = observe;
    opts.on_retry_user = r;
    cairn_client *c = NULL;
    cairn_error err;
    assert_int_equal(cairn_client_create(&opts, &c, &err), CAIRN_OK);
    return c;
}

#define RETRIES_INIT {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0, {0}}

/* ---- a call ---- */

typedef struct get_run {
    cairn_client *client;
    cairn_status rc;
    cairn_error err;
} get_run;

static void do_get_run(void *arg)
{
    get_run *g = arg;
    cairn_run run;
    g->rc = cairn_get_run(g->client, "r", &run, &g->err);
    if (g->rc == CAIRN_OK)
        cairn_run_free(&run);
}

static void a_call_with_a_2s_deadline_returns_in_time_despite_an_int64_max_pushback(void **state)
{
    (void)state;
    ct_helper fake;
    start_fake(&fake, INT64_MAX_TEXT);
    retries r = RETRIES_INIT;
    get_run g = {client_for(&fake, 2000, &r), CAIRN_OK, {0}};
    int64_t ms;
    bool returned = run_bounded(do_get_run, &g, &ms);
    if (!returned)
        fail_msg("GetRun with a 2 s deadline still blocked after %lld ms "
                 "(pushback " INT64_MAX_TEXT " ms)", (long long)ms);
    print_message("GetRun returned %s after %lld ms, %d attempt(s): %s\n", cairn_strerror(g.rc),
                  (long long)ms, g.err.attempts, g.err.message);
    assert_true(g.rc == CAIRN_UNAVAILABLE || g.rc == CAIRN_DEADLINE_EXCEEDED);
    assert_true(ms < 3000); /* the 2 s deadline, with room for a loaded machine */
    assert_true(g.err.has_retry_pushback);
    assert_true(g.err.retry_pushback_ms == INT64_MAX);
    assert_int_equal(r.count, 0); /* it never waited */
    cairn_client_destroy(g.client);
    assert_int_equal(ct_helper_stop(&fake), 0);
}

/* ---- a watch ---- */

static int never_called(void *user, const cairn_event *ev)
{
    (void)user;
    (void)ev;
    return 1;
}

typedef struct watch_stop {
    cairn_watcher *w;
    cairn_status rc;
    cairn_error err;
} watch_stop;

static void do_watch_stop(void *arg)
{
    watch_stop *s = arg;
    s->rc = cairn_watch_stop(s->w, &s->err);
}

static void watch_stop_during_an_int64_max_pushback_returns_at_once(void **state)
{
    (void)state;
    ct_helper fake;
    start_fake(&fake, INT64_MAX_TEXT);
    retries r = RETRIES_INIT;
    cairn_client *c = client_for(&fake, 0, &r);
    cairn_watch_request req = {.run_id = "r", .on_event = never_called};
    watch_stop s = {NULL, CAIRN_OK, {0}};
    cairn_error err;
    assert_int_equal(cairn_watch_start(c, &req, &s.w, &err), CAIRN_OK);
    /* on_retry reports the wait just before it starts. */
    assert_true(wait_retry(&r));
    assert_int_equal(r.last.status, CAIRN_UNAVAILABLE);
    assert_true(r.last.delay_ms == UINT32_MAX); /* as much as it holds */
    int64_t ms;
    bool returned = run_bounded(do_watch_stop, &s, &ms);
    if (!returned)
        fail_msg("cairn_watch_stop still blocked after %lld ms in a pushback of "
                 INT64_MAX_TEXT " ms", (long long)ms);
    print_message("cairn_watch_stop returned after %lld ms\n", (long long)ms);
    assert_true(ms < STOP_BOUND_MS);
    assert_int_equal(s.rc, CAIRN_OK);
    cairn_client_destroy(c);
    assert_int_equal(ct_helper_stop(&fake), 0);
}

/* ---- a lease keeper ---- */

typedef struct lost {
    pthread_mutex_t mu;
    int calls;
} lost;

static void on_lost(void *user, const cairn_lease *l, const cairn_error *why)
{
    (void)l;
    (void)why;
    lost *x = user;
    pthread_mutex_lock(&x->mu);
    x->calls++;
    pthread_mutex_unlock(&x->mu);
}

/* A lease as if just granted for ttl_ms, with left_ms of it left on our
 * clock: renewal is due at once when left_ms <= 2/3 of ttl_ms. */
static cairn_lease made_up_lease(uint32_t ttl_ms, int64_t left_ms)
{
    cairn_lease l;
    memset(&l, 0, sizeof l);
    strcpy(l.lease_id, "lease-1");
    strcpy(l.run_id, "r");
    strcpy(l.worker_id, "w");
    strcpy(l.holder, "h");
    l.fencing_token = 1;
    l.ttl_ms = ttl_ms;
    l.local_expiry_ms_ = mono_ms() + left_ms;
    return l;
}

static void do_keeper_stop(void *arg)
{
    cairn_lease_keeper_stop(arg);
}

static void keeper_stop_during_a_renewal_backoff_returns_at_once(void **state)
{
    (void)state;
    /* 5 minutes: fits the 10 minutes left of the lease, so the renewal
     * waits it out in its retry loop. */
    ct_helper fake;
    start_fake(&fake, "300000");
    retries r = RETRIES_INIT;
    cairn_client *c = client_for(&fake, 0, &r);
    cairn_lease l = made_up_lease(900000, 600000);
    lost x = {PTHREAD_MUTEX_INITIALIZER, 0};
    cairn_lease_keeper *k;
    cairn_error err;
    assert_int_equal(cairn_lease_keeper_start(c, &l, on_lost, &x, &k, &err), CAIRN_OK);
    assert_true(wait_retry(&r));
    assert_int_equal(r.last.delay_ms, 300000);
    int64_t ms;
    if (!run_bounded(do_keeper_stop, k, &ms))
        fail_msg("cairn_lease_keeper_stop still blocked after %lld ms in a 300000 ms pushback",
                 (long long)ms);
    print_message("cairn_lease_keeper_stop returned after %lld ms\n", (long long)ms);
    assert_true(ms < STOP_BOUND_MS);
    assert_int_equal(x.calls, 0); /* stopped, not lost */
    cairn_client_destroy(c);
    assert_int_equal(ct_helper_stop(&fake), 0);
}

static void keeper_waits_out_a_pushback_longer_than_its_lease_quietly_and_stops_at_once(
    void **state)
{
    (void)state;
    ct_helper fake;
    start_fake(&fake, INT64_MAX_TEXT);
    retries r = RETRIES_INIT;
    cairn_client *c = client_for(&fake, 0, &r);
    cairn_lease l = made_up_lease(900000, 600000);
    lost x = {PTHREAD_MUTEX_INITIALIZER, 0};
    cairn_lease_keeper *k;
    cairn_error err;
    assert_int_equal(cairn_lease_keeper_start(c, &l, on_lost, &x, &k, &err), CAIRN_OK);
    /* The first renewal reaches the server... */
    char line[256];
    assert_true(ct_helper_read_line(&fake, line, sizeof line, WAIT_MS) > 0);
    assert_string_equal(line, "call /cairn.v1.Coordinator/RenewLease");
    /* ...and no other follows at once: the keeper waits as asked (here
     * until its lease would have lapsed) instead of renewing again and
     * again. A bound on an absence, not a synchronisation. */
    if (ct_helper_read_line(&fake, line, sizeof line, QUIET_MS) >= 0)
        fail_msg("another renewal within %d ms of the first: %s", QUIET_MS, line);
    int64_t ms;
    if (!run_bounded(do_keeper_stop, k, &ms))
        fail_msg("cairn_lease_keeper_stop still blocked after %lld ms in a pushback of "
                 INT64_MAX_TEXT " ms", (long long)ms);
    print_message("cairn_lease_keeper_stop returned after %lld ms\n", (long long)ms);
    assert_true(ms < STOP_BOUND_MS);
    assert_int_equal(r.count, 0); /* no wait inside the renewal: it did not fit */
    assert_int_equal(x.calls, 0);
    cairn_client_destroy(c);
    assert_int_equal(ct_helper_stop(&fake), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(a_call_with_a_2s_deadline_returns_in_time_despite_an_int64_max_pushback),
        cmocka_unit_test(watch_stop_during_an_int64_max_pushback_returns_at_once),
        cmocka_unit_test(keeper_stop_during_a_renewal_backoff_returns_at_once),
        cmocka_unit_test(
            keeper_waits_out_a_pushback_longer_than_its_lease_quietly_and_stops_at_once),
    };
    return cmocka_run_group_tests_name("pushback", tests, NULL, NULL);
}
