/* The retry loop of libcairn (cairn__invoke) against scripted attempts and
 * a fake clock: no network, no real sleeping, exact arithmetic. */
#include "internal.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

enum { MAX_SCRIPT = 64 };

/* One scripted attempt: how it ends and how long it takes. */
typedef struct step {
    int grpc_status;
    int64_t pushback_ms;        /* -1: none */
    int64_t takes_ms;           /* -1: the whole timeout (a deadline) */
    cairn_status local;         /* a local failure instead */
} step;

/* A step's pushback_ms that stands for the script's pushback_text. */
#define PUSHBACK_TEXT INT64_MIN

typedef struct script {
    step steps[MAX_SCRIPT];
    const char *details[MAX_SCRIPT]; /* each step's status message; NULL: "scripted" */
    int n;                      /* scripted; later attempts repeat the last */
    int made;                   /* attempts made */
    uint32_t timeouts[MAX_SCRIPT];
    bool wait_for_ready[MAX_SCRIPT];
    int64_t now;                /* the fake clock */
    int64_t sleeps[MAX_SCRIPT];
    int n_sleeps;
    cairn_retry_info infos[MAX_SCRIPT];
    int n_infos;
    const char *pushback_text;  /* a raw grpc-retry-pushback-ms value */
    cairn__cancel *stop;        /* fired... */
    int stop_in_attempt;        /* ...during this attempt (from 1), or */
    int stop_in_retry_info;     /* ...when on_retry reports this attempt (0: never) */
} script;

static int64_t fake_now(void *ctx)
{
    return ((script *)ctx)->now;
}

static bool fake_sleep(void *ctx, int64_t ms, cairn__cancel *stop)
{
    script *s = ctx;
    s->sleeps[s->n_sleeps++] = ms;
    s->now += ms;
    return stop && cairn__cancel_fired(stop);
}

static void scripted_attempt(void *ctx, cairn__transport *t, uint32_t timeout_ms,
                             bool wait_for_ready, cairn__reply *out)
{
    (void)t;
    script *s = ctx;
    int i = s->made < s->n ? s->made : s->n - 1;
    const step *st = &s->steps[i];
    s->timeouts[s->made] = timeout_ms;
    s->wait_for_ready[s->made] = wait_for_ready;
    s->made++;
    if (s->stop && s->stop_in_attempt == s->made)
        cairn__cancel_fire(s->stop);
    memset(out, 0, sizeof *out);
    out->grpc_status = st->grpc_status;
    out->has_pushback = st->pushback_ms != -1;
    out->pushback_ms = st->pushback_ms;
    if (st->pushback_ms == PUSHBACK_TEXT) /* read as transport.c reads the trailer */
        out->has_pushback = cairn__parse_pushback(s->pushback_text, strlen(s->pushback_text),
                                                  &out->pushback_ms);
    out->details = strdup(s->details[i] ? s->details[i] : "scripted");
    out->local = st->local;
    if (st->grpc_status == 0) {
        out->body = malloc(1);
        out->body_len = 0;
    }
    s->now += st->takes_ms < 0 ? timeout_ms : st->takes_ms;
}

static void observe(void *user, const cairn_retry_info *info)
{
    script *s = user;
    s->infos[s->n_infos++] = *info;
    if (s->stop && s->stop_in_retry_info == info->attempt)
        cairn__cancel_fire(s->stop);
}

typedef struct fixture {
    cairn_client *client;
    script s;
} fixture;

static cairn_client *make_client(script *s, void (*tune)(cairn_client_options *))
{
    cairn_client_options opts;
    cairn_client_options_init(&opts);
    opts.target = "127.0.0.1:1"; /* never dialed: attempts are scripted */
    opts.on_retry = observe;
    opts.on_retry_user = s;
    if (tune)
        tune(&opts);
    cairn_client *c = NULL;
    cairn_error err;
    assert_int_equal(cairn_client_create(&opts, &c, &err), CAIRN_OK);
    c->clock = (cairn__clock){fake_now, fake_sleep, s};
    return c;
}

static int setup(void **state)
{
    fixture *f = calloc(1, sizeof *f);
    f->client = make_client(&f->s, NULL);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;
    cairn_client_destroy(f->client);
    free(f);
    return 0;
}

static void set_script(script *s, int n, const step *steps)
{
    memset(s, 0, sizeof *s);
    s->n = n;
    memcpy(s->steps, steps, (size_t)n * sizeof *steps);
}

static cairn_status invoke(cairn_client *c, script *s, const char *key, cairn_error *err)
{
    cairn__call call = {"Test", scripted_attempt, s, key, false, s->stop};
    cairn__reply reply;
    cairn_status rc = cairn__invoke(c, &call, &reply, err);
    if (rc == CAIRN_OK)
        cairn__reply_free(&reply);
    return rc;
}

#define FAIL(code) {code, -1, 1, CAIRN_OK}
#define OK_STEP {0, -1, 1, CAIRN_OK}

static void eventual_success_after_transient_failures(void **state)
{
    fixture *f = *state;
    step steps[] = {FAIL(14), FAIL(10), FAIL(4), OK_STEP};
    set_script(&f->s, 4, steps);
    cairn_error err;
    assert_int_equal(invoke(f->client, &f->s, "k", &err), CAIRN_OK);
    assert_int_equal(f->s.made, 4);
    assert_int_equal(err.attempts, 4);
    assert_int_equal(f->s.n_infos, 3);
    assert_int_equal(f->s.infos[0].attempt, 1);
    assert_int_equal(f->s.infos[0].status, CAIRN_UNAVAILABLE);
    assert_int_equal(f->s.infos[1].status, CAIRN_ABORTED);
    assert_string_equal(f->s.infos[2].method, "Test");
}

static void permanent_errors_are_never_retried(void **state)
{
    fixture *f = *state;
    const int permanent[] = {3, 5, 6, 7, 9, 11, 12, 15, 16, 8 /* no pushback */};
    for (size_t i = 0; i < sizeof permanent / sizeof permanent[0]; i++) {
        step steps[] = {FAIL(permanent[i]), OK_STEP};
        set_script(&f->s, 2, steps);
        cairn_error err;
        assert_int_equal(invoke(f->client, &f->s, "k", &err), permanent[i]);
        assert_int_equal(f->s.made, 1);
        assert_int_equal(err.attempts, 1);
        assert_int_equal(f->s.n_sleeps, 0);
    }
}

static void every_transient_code_is_retried(void **state)
{
    fixture *f = *state;
    const int transient[] = {14, 10, 4, 13, 2, 1};
    for (size_t i = 0; i < sizeof transient / sizeof transient[0]; i++) {
        step steps[] = {FAIL(transient[i]), OK_STEP};
        set_script(&f->s, 2, steps);
        cairn_error err;
        assert_int_equal(invoke(f->client, &f->s, "k", &err), CAIRN_OK);
        assert_int_equal(f->s.made, 2);
    }
}

static void internal_errors_are_retried_and_flagged(void **state)
{
    fixture *f = *state;
    step steps[] = {FAIL(13)};
    set_script(&f->s, 1, steps);
    cairn_error err;
    assert_int_equal(invoke(f->client, &f->s, "k", &err), CAIRN_INTERNAL);
    assert_true(err.needs_attention);
    assert_int_equal(f->s.made, 10);
}

static void exhaustion_after_max_attempts(void **state)
{
    fixture *f = *state;
    step steps[] = {FAIL(14)};
    set_script(&f->s, 1, steps);
    cairn_error err;
    assert_int_equal(invoke(f->client, &f->s, "k", &err), CAIRN_UNAVAILABLE);
    assert_int_equal(f->s.made, 10); /* the default max_attempts */
    assert_int_equal(err.attempts, 10);
    assert_int_equal(err.grpc_status, 14);
}

static void no_jitter(cairn_client_options *o)
{
    o->retry.jitter = CAIRN_JITTER_NONE;
    o->retry.max_attempts = 8;
}

static void backoff_doubles_and_caps_between_attempts(void **state)
{
    (void)state;
    script s;
    cairn_client *c = make_client(&s, no_jitter);
    step steps[] = {FAIL(14)};
    set_script(&s, 1, steps);
    cairn_error err;
    assert_int_equal(invoke(c, &s, "k", &err), CAIRN_UNAVAILABLE);
    const int64_t want[] = {100, 200, 400, 800, 1600, 3200, 5000};
    assert_int_equal(s.n_sleeps, 7);
    for (int i = 0; i < 7; i++) {
        assert_int_equal(s.sleeps[i], want[i]);
        assert_int_equal(s.infos[i].delay_ms, want[i]);
    }
    cairn_client_destroy(c);
}

static void jittered_delays_follow_the_public_function(void **state)
{
    fixture *f = *state;
    step steps[] = {FAIL(14)};
    set_script(&f->s, 1, steps);
    cairn_error err;
    invoke(f->client, &f->s, "the-key", &err);
    cairn_retry_policy p;
    cairn_retry_policy_init(&p);
    for (int i = 0; i < f->s.n_sleeps; i++) {
        assert_int_equal(f->s.sleeps[i], cairn_backoff_delay_ms(&p, i, "the-key"));
        uint32_t d = 100u << i;
        if (d > 5000)
            d = 5000;
        assert_in_range(f->s.sleeps[i], d / 2, d); /* EQUAL jitter */
    }
}

static void retries_wait_for_ready_and_the_first_attempt_fails_fast(void **state)
{
    fixture *f = *state;
    step steps[] = {FAIL(14), FAIL(14), OK_STEP};
    set_script(&f->s, 3, steps);
    cairn_error err;
    assert_int_equal(invoke(f->client, &f->s, "k", &err), CAIRN_OK);
    assert_false(f->s.wait_for_ready[0]);
    assert_true(f->s.wait_for_ready[1]);
    assert_true(f->s.wait_for_ready[2]);
}

/* gRPC ends a wait-for-ready retry that never connected with a bare
 * "Deadline Exceeded"; the handshake error of the first attempt is what
 * tells the user why. */
static void a_deadline_after_unavailable_tells_the_unavailable_reason(void **state)
{
    fixture *f = *state;
    step steps[] = {FAIL(14), {4, -1, -1, CAIRN_OK}};
    set_script(&f->s, 2, steps);
    f->s.details[0] = "Ssl handshake failed: certificate verify failed";
    f->s.details[1] = "Deadline Exceeded";
    f->client->retry.max_attempts = 3;
    cairn_error err;
    assert_int_equal(invoke(f->client, &f->s, "k", &err), CAIRN_DEADLINE_EXCEEDED);
    assert_int_equal(f->s.made, 3);
    assert_string_equal(err.message, "Deadline Exceeded (an earlier attempt failed UNAVAILABLE: "
                                     "Ssl handshake failed: certificate verify failed)");
    /* The observer saw the same text for the second attempt. */
    assert_int_equal(f->s.n_infos, 2);
    assert_int_equal(f->s.infos[1].status, CAIRN_DEADLINE_EXCEEDED);
}

static void a_deadline_without_an_earlier_unavailable_is_told_as_it_came(void **state)
{
    fixture *f = *state;
    step steps[] = {{4, -1, -1, CAIRN_OK}};
    set_script(&f->s, 1, steps);
    f->s.details[0] = "Deadline Exceeded";
    f->client->retry.max_attempts = 2;
    cairn_error err;
    assert_int_equal(invoke(f->client, &f->s, "k", &err), CAIRN_DEADLINE_EXCEEDED);
    assert_string_equal(err.message, "Deadline Exceeded");
}

static void pushback_replaces_the_backoff(void **state)
{
    fixture *f = *state;
    step steps[] = {{8, 250, 1, CAIRN_OK}, {14, 1234, 1, CAIRN_OK}, OK_STEP};
    set_script(&f->s, 3, steps);
    cairn_error err;
    assert_int_equal(invoke(f->client, &f->s, "k", &err), CAIRN_OK);
    assert_int_equal(f->s.n_sleeps, 2);
    assert_int_equal(f->s.sleeps[0], 250);
    assert_int_equal(f->s.sleeps[1], 1234);
}

static void negative_pushback_stops_retrying(void **state)
{
    fixture *f = *state;
    step steps[] = {{14, -5, 1, CAIRN_OK}, OK_STEP};
    set_script(&f->s, 2, steps);
    cairn_error err;
    assert_int_equal(invoke(f->client, &f->s, "k", &err), CAIRN_UNAVAILABLE);
    assert_int_equal(f->s.made, 1);
    assert_true(err.has_retry_pushback);
    assert_int_equal(err.retry_pushback_ms, -5);
}

static void resource_exhausted_without_pushback_is_not_retried(void **state)
{
    fixture *f = *state;
    step steps[] = {FAIL(8), OK_STEP};
    set_script(&f->s, 2, steps);
    cairn_error err;
    assert_int_equal(invoke(f->client, &f->s, "k", &err), CAIRN_RESOURCE_EXHAUSTED);
    assert_int_equal(f->s.made, 1);
}

/* What the server may send as grpc-retry-pushback-ms: INT64_MAX, one past
 * it, UINT64_MAX, and more digits than any integer type holds. */
static const char *const huge_pushbacks[] = {
    "9223372036854775807", "9223372036854775808", "18446744073709551615",
    "99999999999999999999", "9223372036854775806",
};

static void huge_pushback_fails_at_once_with_the_last_status_inside_the_deadline(void **state)
{
    fixture *f = *state;
    int wrong = 0;
    for (size_t i = 0; i < sizeof huge_pushbacks / sizeof huge_pushbacks[0]; i++) {
        step steps[] = {{14, PUSHBACK_TEXT, 1, CAIRN_OK}, OK_STEP};
        set_script(&f->s, 2, steps);
        f->s.pushback_text = huge_pushbacks[i];
        cairn_error err;
        cairn_status rc = invoke(f->client, &f->s, "k", &err);
        /* The last status at once: no retry, no wait, well inside the
         * default 60 s call deadline. */
        bool right = rc == CAIRN_UNAVAILABLE && f->s.made == 1 && f->s.n_sleeps == 0 &&
                     f->s.n_infos == 0 && f->s.now >= 0 && f->s.now <= 60000 &&
                     err.grpc_status == 14 && err.has_retry_pushback &&
                     err.retry_pushback_ms > 60000 && strstr(err.message, "pushback");
        print_message("%s pushback %s: %s after %d attempt(s), %d sleep(s), fake clock at %lld ms:"
                      " %s\n", right ? "ok  " : "FAIL", huge_pushbacks[i], cairn_strerror(rc),
                      f->s.made, f->s.n_sleeps, (long long)f->s.now, err.message);
        wrong += !right;
    }
    assert_int_equal(wrong, 0);
}

static void huge_int64_pushback_after_a_slow_attempt_does_not_overflow(void **state)
{
    /* The clock far from 0 when the pushback arrives: now + pushback would
     * overflow int64. */
    fixture *f = *state;
    step steps[] = {{14, INT64_MAX, 1, CAIRN_OK}, OK_STEP};
    set_script(&f->s, 2, steps);
    f->s.now = INT64_MAX / 2;
    cairn_error err;
    assert_int_equal(invoke(f->client, &f->s, "k", &err), CAIRN_UNAVAILABLE);
    assert_int_equal(f->s.made, 1);
    assert_int_equal(f->s.n_sleeps, 0);
    assert_true(f->s.now <= INT64_MAX / 2 + 60000);
}

static void pushback_values_parse_defensively(void **state)
{
    (void)state;
    static const struct {
        const char *text;
        size_t len;               /* 0: strlen */
        bool ok;
        int64_t ms;
    } cases[] = {
        {"250", 0, true, 250},
        {"0", 0, true, 0},
        {"-5", 0, true, -5},
        {"-1", 0, true, -1},
        {"9223372036854775807", 0, true, INT64_MAX},
        {"9223372036854775808", 0, true, INT64_MAX},
        {"18446744073709551615", 0, true, INT64_MAX},
        {"99999999999999999999", 0, true, INT64_MAX},
        {"000000000000000000000000000042", 0, true, 42},
        {"-9223372036854775808", 0, true, INT64_MIN},
        {"-99999999999999999999", 0, true, INT64_MIN}, /* still negative: do not retry */
        {"", 0, false, 0},
        {"-", 0, false, 0},
        {"abc", 0, false, 0},
        {"5ms", 0, false, 0},
        {" 5", 0, false, 0},
        {"+5", 0, false, 0},
        {"0x10", 0, false, 0},
        {"1e3", 0, false, 0},
        {"5\0" "7", 3, false, 0}, /* a NUL inside the value */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        int64_t ms = 12345;
        size_t len = cases[i].len ? cases[i].len : strlen(cases[i].text);
        bool ok = cairn__parse_pushback(cases[i].text, len, &ms);
        if (ok != cases[i].ok || (ok && ms != cases[i].ms))
            fail_msg("\"%s\": got %s %lld, want %s %lld", cases[i].text, ok ? "ok" : "rejected",
                     (long long)ms, cases[i].ok ? "ok" : "rejected", (long long)cases[i].ms);
        if (!ok)
            assert_int_equal(ms, 12345); /* left alone */
    }
}

static void short_deadlines(cairn_client_options *o)
{
    o->retry.call_deadline_ms = 3000;
    o->retry.attempt_deadline_ms = 1000;
    o->retry.max_attempts = 100;
}

static void attempts_respect_the_attempt_and_call_deadlines(void **state)
{
    (void)state;
    script s;
    cairn_client *c = make_client(&s, short_deadlines);
    step steps[] = {{4, -1, -1, CAIRN_OK}}; /* every attempt runs into its deadline */
    set_script(&s, 1, steps);
    cairn_error err;
    assert_int_equal(invoke(c, &s, "k", &err), CAIRN_DEADLINE_EXCEEDED);
    for (int i = 0; i < s.made; i++)
        assert_true(s.timeouts[i] <= 1000);
    /* Everything, waits included, within the deadline plus one attempt. */
    assert_true(s.now <= 3000 + 1000);
    assert_true(s.made >= 2);
    assert_non_null(strstr(err.message, "deadline"));
    cairn_client_destroy(c);
}

static void the_last_attempt_gets_only_what_is_left_of_the_call(void **state)
{
    (void)state;
    script s;
    cairn_client *c = make_client(&s, short_deadlines);
    step steps[] = {{14, -1, 2500, CAIRN_OK}, OK_STEP}; /* a slow failure, then success */
    set_script(&s, 2, steps);
    cairn_error err;
    assert_int_equal(invoke(c, &s, "k", &err), CAIRN_OK);
    assert_int_equal(s.timeouts[0], 1000);
    assert_true(s.timeouts[1] < 1000); /* 3000 - 2500 - the backoff */
    assert_true(s.now <= 3000 + 1000);
    cairn_client_destroy(c);
}

static void pushback_is_honoured_only_while_it_fits_the_deadline(void **state)
{
    (void)state;
    script s;
    cairn_client *c = make_client(&s, short_deadlines);
    /* The attempt takes 1 ms of the 3000: 2999 are left. */
    step fits[] = {{14, 2998, 1, CAIRN_OK}, OK_STEP};
    set_script(&s, 2, fits);
    cairn_error err;
    assert_int_equal(invoke(c, &s, "k", &err), CAIRN_OK);
    assert_int_equal(s.n_sleeps, 1);
    assert_int_equal(s.sleeps[0], 2998);
    assert_true(s.now <= 3000);

    step too_long[] = {{14, 2999, 1, CAIRN_OK}, OK_STEP};
    set_script(&s, 2, too_long);
    assert_int_equal(invoke(c, &s, "k", &err), CAIRN_UNAVAILABLE);
    assert_int_equal(s.made, 1);
    assert_int_equal(s.n_sleeps, 0);
    assert_non_null(strstr(err.message, "deadline"));
    cairn_client_destroy(c);
}

/* A keeper being stopped: its renewal makes no further attempt and does
 * not wait out its backoff. */
static void a_stopped_call_makes_no_further_attempt_and_no_further_wait(void **state)
{
    fixture *f = *state;
    step steps[] = {FAIL(14)};
    cairn__cancel stop;
    cairn_error err;
    struct {
        int in_attempt, in_retry_info, made, sleeps;
    } cases[] = {
        {1, 0, 1, 0}, /* during the first attempt: its failure is not retried */
        {2, 0, 2, 1},
        {0, 1, 1, 1}, /* just before the first wait: the wait ends at once */
        {0, 3, 3, 3},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        cairn__cancel_init(&stop);
        set_script(&f->s, 1, steps);
        f->s.stop = &stop;
        f->s.stop_in_attempt = cases[i].in_attempt;
        f->s.stop_in_retry_info = cases[i].in_retry_info;
        assert_int_equal(invoke(f->client, &f->s, "k", &err), CAIRN_CANCELLED);
        assert_int_equal(f->s.made, cases[i].made);
        assert_int_equal(err.attempts, cases[i].made);
        assert_int_equal(f->s.n_sleeps, cases[i].sleeps);
        assert_string_equal(err.message, "stopped");
        cairn__cancel_destroy(&stop);
    }
    /* Fired before the call: no attempt at all. */
    cairn__cancel_init(&stop);
    cairn__cancel_fire(&stop);
    set_script(&f->s, 1, steps);
    f->s.stop = &stop;
    assert_int_equal(invoke(f->client, &f->s, "k", &err), CAIRN_CANCELLED);
    assert_int_equal(f->s.made, 0);
    cairn__cancel_destroy(&stop);
}

/* The real wait behind a stoppable sleep: it ends when fired, not when
 * its time is up, whatever that time (INT64_MAX included). */
typedef struct firer {
    cairn__cancel *slot;
    int64_t fired_at;
} firer;

static void *fire(void *arg)
{
    firer *x = arg;
    x->fired_at = cairn__mono_ms();
    cairn__cancel_fire(x->slot);
    return NULL;
}

static void cancel_wait_ends_when_fired_even_for_an_int64_max_wait(void **state)
{
    (void)state;
    cairn__cancel slot;
    cairn__cancel_init(&slot);
    assert_false(cairn__cancel_wait(&slot, 0));
    assert_false(cairn__cancel_wait(&slot, -5));
    assert_false(cairn__cancel_wait(&slot, INT64_MIN));
    int64_t t0 = cairn__mono_ms();
    assert_false(cairn__cancel_wait(&slot, 30));
    assert_true(cairn__mono_ms() - t0 >= 29);

    /* Fired before or during the wait (either order): it ends at once. */
    firer x = {&slot, 0};
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, fire, &x), 0);
    assert_true(cairn__cancel_wait(&slot, INT64_MAX));
    int64_t woke = cairn__mono_ms();
    pthread_join(th, NULL);
    print_message("woke %lld ms after the fire\n", (long long)(woke - x.fired_at));
    assert_true(woke - x.fired_at < 1000);
    assert_true(cairn__cancel_fired(&slot));
    assert_true(cairn__cancel_wait(&slot, INT64_MAX)); /* fired stays fired */
    cairn__cancel_destroy(&slot);
}

static void with_budget(cairn_client_options *o)
{
    o->retry_budget.enabled = true; /* max_tokens 10, ratio 0.1 */
    o->retry.max_attempts = 100;
}

static void budget_exhaustion_stops_retries_and_successes_refill_it(void **state)
{
    (void)state;
    script s;
    cairn_client *c = make_client(&s, with_budget);
    step fail[] = {FAIL(14)};
    set_script(&s, 1, fail);
    cairn_error err;
    /* 10 tokens: attempts cost one each; retries stop at 5 or less. */
    assert_int_equal(invoke(c, &s, "k", &err), CAIRN_UNAVAILABLE);
    assert_int_equal(s.made, 5);
    assert_non_null(strstr(err.message, "retry budget"));
    set_script(&s, 1, fail);
    assert_int_equal(invoke(c, &s, "k", &err), CAIRN_UNAVAILABLE);
    assert_int_equal(s.made, 1); /* 4 tokens: no retry at all */

    step ok[] = {OK_STEP};
    /* A failure costs its token before the retry is weighed (A6), so a
     * retry needs more than 6 tokens: 4 + 21 x 0.1 = 6.1. */
    for (int i = 0; i < 21; i++) {
        set_script(&s, 1, ok);
        assert_int_equal(invoke(c, &s, "k", &err), CAIRN_OK);
    }
    step one_failure[] = {FAIL(14), OK_STEP};
    set_script(&s, 2, one_failure);
    assert_int_equal(invoke(c, &s, "k", &err), CAIRN_OK);
    assert_int_equal(s.made, 2); /* retried again */
    cairn_client_destroy(c);
}

static void budget_is_off_by_default(void **state)
{
    fixture *f = *state;
    step fail[] = {FAIL(14)};
    for (int round = 0; round < 3; round++) {
        set_script(&f->s, 1, fail);
        cairn_error err;
        invoke(f->client, &f->s, "k", &err);
        assert_int_equal(f->s.made, 10);
    }
}

static void with_breaker(cairn_client_options *o)
{
    o->breaker.enabled = true;
    o->breaker.failure_threshold = 3;
    o->breaker.cooldown_ms = 1000;
    o->retry.max_attempts = 3;
}

static void breaker_opens_half_opens_and_closes(void **state)
{
    (void)state;
    script s;
    cairn_client *c = make_client(&s, with_breaker);
    step fail[] = {FAIL(14)};
    set_script(&s, 1, fail);
    cairn_error err;
    assert_int_equal(invoke(c, &s, "k", &err), CAIRN_UNAVAILABLE);
    assert_int_equal(s.made, 3);

    /* Open: fail fast, no attempt. */
    int64_t opened = s.now;
    set_script(&s, 1, fail);
    s.now = opened;
    assert_int_equal(invoke(c, &s, "k", &err), CAIRN_CIRCUIT_OPEN);
    assert_int_equal(s.made, 0);
    assert_int_equal(err.attempts, 0);
    assert_non_null(strstr(err.message, "circuit breaker"));

    /* After the cooldown one probe goes; it fails: open again. */
    set_script(&s, 1, fail);
    s.now = opened + 1000;
    assert_int_equal(invoke(c, &s, "k", &err), CAIRN_CIRCUIT_OPEN);
    assert_int_equal(s.made, 1);
    int64_t reopened = s.now;

    /* The next probe succeeds: closed, calls flow again. */
    step ok[] = {OK_STEP};
    set_script(&s, 1, ok);
    s.now = reopened + 1000;
    assert_int_equal(invoke(c, &s, "k", &err), CAIRN_OK);
    assert_int_equal(s.made, 1);
    set_script(&s, 1, ok);
    s.now = reopened + 1001;
    assert_int_equal(invoke(c, &s, "k", &err), CAIRN_OK);
    cairn_client_destroy(c);
}

static void half_open_breaker_lets_one_probe_through(void **state)
{
    (void)state;
    cairn__breaker br;
    cairn_circuit_breaker cfg = {.enabled = true, .failure_threshold = 2, .cooldown_ms = 500};
    cairn__breaker_init(&br, &cfg);
    bool probe;
    cairn_error err;
    cairn__breaker_record(&br, true, false, 0);
    cairn__breaker_record(&br, true, false, 0);
    assert_int_equal(cairn__breaker_admit(&br, 100, &probe, &err), CAIRN_CIRCUIT_OPEN);
    assert_int_equal(cairn__breaker_admit(&br, 500, &probe, &err), CAIRN_OK);
    assert_true(probe);
    assert_int_equal(cairn__breaker_admit(&br, 501, &probe, &err), CAIRN_CIRCUIT_OPEN);
    assert_non_null(strstr(err.message, "probe"));
    cairn__breaker_record(&br, false, true, 502);
    assert_int_equal(cairn__breaker_admit(&br, 503, &probe, &err), CAIRN_OK);
    assert_false(probe);
    cairn__breaker_destroy(&br);
}

static void permanent_errors_do_not_trip_the_breaker(void **state)
{
    (void)state;
    script s;
    cairn_client *c = make_client(&s, with_breaker);
    step bad[] = {FAIL(3)};
    cairn_error err;
    for (int i = 0; i < 10; i++) {
        set_script(&s, 1, bad);
        assert_int_equal(invoke(c, &s, "k", &err), CAIRN_INVALID_ARGUMENT);
        assert_int_equal(s.made, 1);
    }
    cairn_client_destroy(c);
}

static void local_failures_end_the_call_at_once(void **state)
{
    /* A local failure (a download whose disk is full) is reported as it
     * is, without retrying: another attempt would fail the same way. */
    fixture *f = *state;
    step steps[] = {{0, -1, 1, CAIRN_IO}, OK_STEP};
    set_script(&f->s, 2, steps);
    cairn_error err;
    assert_int_equal(invoke(f->client, &f->s, "k", &err), CAIRN_IO);
    assert_int_equal(f->s.made, 1);
    assert_int_equal(err.grpc_status, -1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(eventual_success_after_transient_failures, setup, teardown),
        cmocka_unit_test_setup_teardown(permanent_errors_are_never_retried, setup, teardown),
        cmocka_unit_test_setup_teardown(every_transient_code_is_retried, setup, teardown),
        cmocka_unit_test_setup_teardown(internal_errors_are_retried_and_flagged, setup, teardown),
        cmocka_unit_test_setup_teardown(exhaustion_after_max_attempts, setup, teardown),
        cmocka_unit_test(backoff_doubles_and_caps_between_attempts),
        cmocka_unit_test_setup_teardown(jittered_delays_follow_the_public_function, setup, teardown),
        cmocka_unit_test_setup_teardown(retries_wait_for_ready_and_the_first_attempt_fails_fast,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(
            a_deadline_after_unavailable_tells_the_unavailable_reason, setup, teardown),
        cmocka_unit_test_setup_teardown(
            a_deadline_without_an_earlier_unavailable_is_told_as_it_came, setup, teardown),
        cmocka_unit_test_setup_teardown(pushback_replaces_the_backoff, setup, teardown),
        cmocka_unit_test_setup_teardown(negative_pushback_stops_retrying, setup, teardown),
        cmocka_unit_test_setup_teardown(resource_exhausted_without_pushback_is_not_retried, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(
            huge_pushback_fails_at_once_with_the_last_status_inside_the_deadline, setup, teardown),
        cmocka_unit_test_setup_teardown(huge_int64_pushback_after_a_slow_attempt_does_not_overflow,
                                        setup, teardown),
        cmocka_unit_test(pushback_values_parse_defensively),
        cmocka_unit_test(pushback_is_honoured_only_while_it_fits_the_deadline),
        cmocka_unit_test_setup_teardown(a_stopped_call_makes_no_further_attempt_and_no_further_wait,
                                        setup, teardown),
        cmocka_unit_test(cancel_wait_ends_when_fired_even_for_an_int64_max_wait),
        cmocka_unit_test(attempts_respect_the_attempt_and_call_deadlines),
        cmocka_unit_test(the_last_attempt_gets_only_what_is_left_of_the_call),
        cmocka_unit_test(budget_exhaustion_stops_retries_and_successes_refill_it),
        cmocka_unit_test_setup_teardown(budget_is_off_by_default, setup, teardown),
        cmocka_unit_test(breaker_opens_half_opens_and_closes),
        cmocka_unit_test(half_open_breaker_lets_one_probe_through),
        cmocka_unit_test(permanent_errors_do_not_trip_the_breaker),
        cmocka_unit_test_setup_teardown(local_failures_end_the_call_at_once, setup, teardown),
    };
    return cmocka_run_group_tests_name("retry", tests, NULL, NULL);
}
