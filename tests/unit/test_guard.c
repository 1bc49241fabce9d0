/* The retry budget and the circuit breaker (guard.c) shared by several
 * threads, as one cairn_client is: every record counts, exactly one racing
 * caller becomes the half-open probe, and the retry loop of a shared
 * client keeps both consistent. Run under ThreadSanitizer by make tsan. */
#include "internal.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

enum { THREADS = 8, ROUNDS = 2000 };

/* Starts n threads on fn(arg) behind a barrier, so they race, and joins
 * them. */
typedef struct racer {
    pthread_barrier_t *go;
    void *(*fn)(void *);
    void *arg;
} racer;

static void *race_start(void *p)
{
    racer *r = p;
    pthread_barrier_wait(r->go);
    return r->fn(r->arg);
}

static void race(int n, void *(*fn)(void *), void *args, size_t arg_size)
{
    pthread_barrier_t go;
    pthread_barrier_init(&go, NULL, (unsigned)n);
    pthread_t t[THREADS];
    racer r[THREADS];
    assert_true(n <= THREADS);
    for (int i = 0; i < n; i++) {
        r[i] = (racer){&go, fn, (char *)args + (size_t)i * arg_size};
        assert_int_equal(pthread_create(&t[i], NULL, race_start, &r[i]), 0);
    }
    for (int i = 0; i < n; i++)
        pthread_join(t[i], NULL);
    pthread_barrier_destroy(&go);
}

/* ---- the budget ---- */

typedef struct budget_job {
    cairn__budget *b;
    bool failure;
} budget_job;

/* Records, and reads as the retry loop does between records (what it
 * answers depends on the interleaving: only the final count is checked). */
static void *budget_work(void *p)
{
    budget_job *j = p;
    for (int i = 0; i < ROUNDS; i++) {
        cairn__budget_record(j->b, j->failure);
        (void)cairn__budget_allows_retry(j->b);
    }
    return NULL;
}

static void budget_records_from_many_threads_all_count(void **state)
{
    (void)state;
    cairn__budget b;
    cairn_retry_budget cfg = {.enabled = true, .max_tokens = 1000, .token_ratio = 0.5};
    cairn__budget_init(&b, &cfg);

    /* 16,000 failures drain 1,000 tokens. */
    budget_job jobs[THREADS];
    for (int i = 0; i < THREADS; i++)
        jobs[i] = (budget_job){&b, true};
    race(THREADS, budget_work, jobs, sizeof jobs[0]);
    assert_true(b.tokens == 0);
    assert_false(cairn__budget_allows_retry(&b));

    /* Then 16,000 successes at 0.5 each (8,000 tokens) fill it to its cap. */
    for (int i = 0; i < THREADS; i++)
        jobs[i] = (budget_job){&b, false};
    race(THREADS, budget_work, jobs, sizeof jobs[0]);
    assert_true(b.tokens == 1000);
    assert_true(cairn__budget_allows_retry(&b));
    cairn__budget_destroy(&b);
}

static void *budget_one_success_each(void *p)
{
    budget_job *j = p;
    for (int i = 0; i < 100; i++)
        cairn__budget_record(j->b, false);
    return NULL;
}

static void budget_refills_by_exactly_the_successes_of_all_threads(void **state)
{
    (void)state;
    cairn__budget b;
    cairn_retry_budget cfg = {.enabled = true, .max_tokens = 1000, .token_ratio = 0.5};
    cairn__budget_init(&b, &cfg);
    for (int i = 0; i < 1000; i++)
        cairn__budget_record(&b, true);
    assert_true(b.tokens == 0);
    budget_job jobs[THREADS];
    for (int i = 0; i < THREADS; i++)
        jobs[i] = (budget_job){&b, false};
    race(THREADS, budget_one_success_each, jobs, sizeof jobs[0]);
    /* Halves add exactly in a double whatever the order: a lost update
     * would show. */
    assert_true(b.tokens == THREADS * 100 * 0.5);
    cairn__budget_destroy(&b);
}

/* ---- the breaker ---- */

typedef struct breaker_job {
    cairn__breaker *br;
    int64_t now;
    int admitted, probes, refused;
} breaker_job;

static void *breaker_fail(void *p)
{
    breaker_job *j = p;
    for (int i = 0; i < ROUNDS; i++)
        cairn__breaker_record(j->br, true, false, j->now);
    return NULL;
}

static void breaker_counts_every_failure_from_many_threads(void **state)
{
    (void)state;
    cairn__breaker br;
    cairn_circuit_breaker cfg = {.enabled = true, .failure_threshold = 5, .cooldown_ms = 100};
    cairn__breaker_init(&br, &cfg);
    breaker_job jobs[THREADS];
    for (int i = 0; i < THREADS; i++)
        jobs[i] = (breaker_job){.br = &br, .now = 7};
    race(THREADS, breaker_fail, jobs, sizeof jobs[0]);
    assert_int_equal(br.failures, THREADS * ROUNDS);
    assert_int_equal(br.state, CAIRN__OPEN);
    assert_int_equal(br.opened_at, 7);
    cairn__breaker_destroy(&br);
}

static void *breaker_admit_once(void *p)
{
    breaker_job *j = p;
    bool probe;
    cairn_error err;
    cairn_status rc = cairn__breaker_admit(j->br, j->now, &probe, &err);
    j->admitted += rc == CAIRN_OK;
    j->refused += rc == CAIRN_CIRCUIT_OPEN;
    j->probes += probe;
    return NULL;
}

static void half_open_breaker_admits_one_probe_among_racing_threads(void **state)
{
    (void)state;
    cairn__breaker br;
    cairn_circuit_breaker cfg = {.enabled = true, .failure_threshold = 2, .cooldown_ms = 100};
    cairn__breaker_init(&br, &cfg);
    cairn__breaker_record(&br, true, false, 0);
    cairn__breaker_record(&br, true, false, 0);
    assert_int_equal(br.state, CAIRN__OPEN);

    /* The cooldown is over for every thread at once: one probe only. */
    breaker_job jobs[THREADS];
    for (int i = 0; i < THREADS; i++)
        jobs[i] = (breaker_job){.br = &br, .now = 100};
    race(THREADS, breaker_admit_once, jobs, sizeof jobs[0]);
    int admitted = 0, probes = 0, refused = 0;
    for (int i = 0; i < THREADS; i++) {
        admitted += jobs[i].admitted;
        probes += jobs[i].probes;
        refused += jobs[i].refused;
        assert_int_equal(jobs[i].admitted, jobs[i].probes);
    }
    assert_int_equal(admitted, 1);
    assert_int_equal(probes, 1);
    assert_int_equal(refused, THREADS - 1);

    /* The probe's success closes it for all of them. */
    cairn__breaker_record(&br, false, true, 101);
    for (int i = 0; i < THREADS; i++)
        jobs[i] = (breaker_job){.br = &br, .now = 102};
    race(THREADS, breaker_admit_once, jobs, sizeof jobs[0]);
    for (int i = 0; i < THREADS; i++) {
        assert_int_equal(jobs[i].admitted, 1);
        assert_int_equal(jobs[i].probes, 0);
    }
    cairn__breaker_destroy(&br);
}

/* ---- the retry loop of one client shared by several threads ---- */

/* Attempts answer a script that every thread shares: failing (UNAVAILABLE)
 * or succeeding; time is a shared counter that waits advance. */
typedef struct shared {
    atomic_int attempts;
    atomic_bool failing;
    atomic_llong now;
} shared;

static int64_t shared_now(void *ctx)
{
    return atomic_load(&((shared *)ctx)->now);
}

static bool shared_sleep(void *ctx, int64_t ms, cairn__cancel *stop)
{
    (void)stop;
    atomic_fetch_add(&((shared *)ctx)->now, ms);
    return false;
}

static void shared_attempt(void *ctx, cairn__transport *t, uint32_t timeout_ms,
                           bool wait_for_ready, cairn__reply *out)
{
    (void)t;
    (void)timeout_ms;
    (void)wait_for_ready;
    shared *s = ctx;
    atomic_fetch_add(&s->attempts, 1);
    memset(out, 0, sizeof *out);
    out->details = strdup(atomic_load(&s->failing) ? "down" : "ok");
    if (atomic_load(&s->failing)) {
        out->grpc_status = 14; /* UNAVAILABLE */
    } else {
        out->body = malloc(1);
        out->body_len = 0;
    }
}

typedef struct call_job {
    cairn_client *c;
    shared *s;
    int ok, unavailable;
} call_job;

static void *make_calls(void *p)
{
    call_job *j = p;
    for (int i = 0; i < 200; i++) {
        cairn__call call = {.name = "Test", .attempt = shared_attempt, .ctx = j->s};
        cairn__reply r;
        cairn_error err;
        cairn_status rc = cairn__invoke(j->c, &call, &r, &err);
        if (rc == CAIRN_OK)
            cairn__reply_free(&r);
        j->ok += rc == CAIRN_OK;
        j->unavailable += rc == CAIRN_UNAVAILABLE;
    }
    return NULL;
}

static void shared_client_keeps_budget_and_breaker_consistent(void **state)
{
    (void)state;
    shared s = {0};
    cairn_client_options opts;
    cairn_client_options_init(&opts);
    opts.target = "127.0.0.1:1"; /* never dialed: attempts are scripted */
    opts.retry.max_attempts = 3;
    opts.retry_budget.enabled = true; /* 10 tokens, 0.1 back per success */
    opts.breaker.enabled = true;
    opts.breaker.failure_threshold = 1000000; /* counts, never opens here */
    cairn_client *c = NULL;
    cairn_error err;
    assert_int_equal(cairn_client_create(&opts, &c, &err), CAIRN_OK);
    c->clock = (cairn__clock){shared_now, shared_sleep, &s};

    /* Everything succeeds: one attempt per call. */
    call_job jobs[THREADS];
    for (int i = 0; i < THREADS; i++)
        jobs[i] = (call_job){.c = c, .s = &s};
    race(THREADS, make_calls, jobs, sizeof jobs[0]);
    for (int i = 0; i < THREADS; i++)
        assert_int_equal(jobs[i].ok, 200);
    assert_int_equal(atomic_load(&s.attempts), THREADS * 200);
    assert_true(c->budget.tokens == 10);
    assert_int_equal(c->breaker.failures, 0);

    /* Everything fails: every call fails UNAVAILABLE, the breaker counted
     * every attempt, and the drained budget stopped the retries (without
     * it there would be 3 attempts per call). */
    atomic_store(&s.failing, true);
    atomic_store(&s.attempts, 0);
    for (int i = 0; i < THREADS; i++)
        jobs[i] = (call_job){.c = c, .s = &s};
    race(THREADS, make_calls, jobs, sizeof jobs[0]);
    for (int i = 0; i < THREADS; i++)
        assert_int_equal(jobs[i].unavailable, 200);
    int attempts = atomic_load(&s.attempts);
    assert_int_equal(c->breaker.failures, attempts);
    assert_true(c->budget.tokens == 0);
    assert_in_range(attempts, THREADS * 200, THREADS * 200 + 3 * 2 * THREADS);
    cairn_client_destroy(c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(budget_records_from_many_threads_all_count),
        cmocka_unit_test(budget_refills_by_exactly_the_successes_of_all_threads),
        cmocka_unit_test(breaker_counts_every_failure_from_many_threads),
        cmocka_unit_test(half_open_breaker_admits_one_probe_among_racing_threads),
        cmocka_unit_test(shared_client_keeps_budget_and_breaker_consistent),
    };
    return cmocka_run_group_tests_name("guard", tests, NULL, NULL);
}
