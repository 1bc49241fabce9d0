/* The watch hub without gRPC: a real SQLite store in a mkdtemp directory,
 * the hub over it, and a fake srv_watch_stream that records what the hub
 * sends and how it ends each stream. Sends are completed by the test
 * thread (ack) or, in sync mode, inside send itself; live events arrive
 * on the hub's dispatcher thread. The test thread waits for them on a
 * condition variable, never with sleeps. The fake never asserts off the
 * test thread: it counts contract breaches, which the tests check. */
#include "base/arena.h"
#include "base/error.h"
#include "cairn/v1/coordinator.pb-c.h"
#include "base/pbc.h"
#include "core/domain.h"
#include "service/handlers/handlers.h"
#include "core/watch.h"
#include "dirs.h"
#include "store/store.h"

#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#define NOW_US (1769595330ll * 1000000 + 123456)
#define RUN "run-1"
#define MAX_SENT 1024
/* Only a guard against a hung test: every wait ends on a signal. */
#define WAIT_LIMIT_S 30

/* ---- the fake stream ---- */

typedef struct fake {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool sync_acks;               /* complete each send inside send */
    uint8_t *msgs[MAX_SENT];      /* every message sent, copied */
    size_t lens[MAX_SENT];
    size_t n_sent;
    bool in_flight;               /* a send whose completion has not run */
    srv_watch_sent_fn sent_fn;
    void *sent_arg;
    int fails;
    srv_error fail_err;
    int on_closes;
    srv_watch_closed_fn closed_fn;
    void *closed_arg;
    bool client_gone;             /* the close callback ran or is due */
    int breaches;                 /* calls the contract forbids */
    srv_watch *hub;               /* when set: */
    int open_when_ended;          /* its open streams as fail ran (the transport counts
                                   * the call there) */
} fake;

static void fake_init(fake *f)
{
    memset(f, 0, sizeof *f);
    pthread_mutex_init(&f->mu, NULL);
    pthread_cond_init(&f->cv, NULL);
}

static void fake_destroy(fake *f)
{
    for (size_t i = 0; i < f->n_sent; i++)
        free(f->msgs[i]);
    pthread_cond_destroy(&f->cv);
    pthread_mutex_destroy(&f->mu);
}

/* Completes the send in flight, as a transport does once the message is
 * on its way (ok) or the client is gone (!ok). */
static void ack(fake *f, bool ok)
{
    pthread_mutex_lock(&f->mu);
    bool was = f->in_flight;
    f->in_flight = false;
    srv_watch_sent_fn fn = f->sent_fn;
    void *arg = f->sent_arg;
    if (!was)
        f->breaches++;
    pthread_mutex_unlock(&f->mu);
    if (was)
        fn(arg, ok);
}

static void fake_send(void *ctx, const uint8_t *msg, size_t len, srv_watch_sent_fn fn, void *arg)
{
    fake *f = ctx;
    pthread_mutex_lock(&f->mu);
    if (f->in_flight || f->fails || f->n_sent == MAX_SENT) {
        f->breaches++;
        pthread_mutex_unlock(&f->mu);
        return;
    }
    uint8_t *copy = malloc(len ? len : 1);
    memcpy(copy, msg, len);
    f->msgs[f->n_sent] = copy;
    f->lens[f->n_sent++] = len;
    f->in_flight = true;
    f->sent_fn = fn;
    f->sent_arg = arg;
    bool sync = f->sync_acks;
    pthread_cond_broadcast(&f->cv);
    pthread_mutex_unlock(&f->mu);
    if (sync)
        ack(f, true);
}

static void fake_fail(void *ctx, const srv_error *err)
{
    fake *f = ctx;
    int open = f->hub ? srv_watch_open_streams(f->hub) : 0; /* (not under f->mu) */
    pthread_mutex_lock(&f->mu);
    if (f->in_flight || f->fails)
        f->breaches++;
    f->fails++;
    f->fail_err = *err;
    f->open_when_ended = open;
    pthread_cond_broadcast(&f->cv);
    pthread_mutex_unlock(&f->mu);
}

static void fake_on_close(void *ctx, srv_watch_closed_fn fn, void *arg)
{
    fake *f = ctx;
    pthread_mutex_lock(&f->mu);
    if (f->on_closes++ || f->n_sent || f->fails)
        f->breaches++;
    f->closed_fn = fn;
    f->closed_arg = arg;
    bool gone = f->client_gone;
    pthread_mutex_unlock(&f->mu);
    if (gone) /* the client already left: the callback runs at once */
        fn(arg);
}

/* The client side closes (a cancel, or the end after fail): runs the
 * close callback once, now if registered, else at registration. */
static void client_close(fake *f)
{
    pthread_mutex_lock(&f->mu);
    if (f->client_gone)
        f->breaches++;
    f->client_gone = true;
    srv_watch_closed_fn fn = f->closed_fn;
    void *arg = f->closed_arg;
    pthread_mutex_unlock(&f->mu);
    if (fn)
        fn(arg);
}

static srv_watch_stream fake_stream(fake *f)
{
    return (srv_watch_stream){
        .ctx = f, .send = fake_send, .fail = fake_fail, .on_close = fake_on_close};
}

/* Waits until n messages were sent (or the stream failed first). */
static void wait_sent(fake *f, size_t n)
{
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += WAIT_LIMIT_S;
    pthread_mutex_lock(&f->mu);
    int rc = 0;
    while (f->n_sent < n && !f->fails && rc != ETIMEDOUT)
        rc = pthread_cond_timedwait(&f->cv, &f->mu, &until);
    size_t got = f->n_sent;
    pthread_mutex_unlock(&f->mu);
    if (got < n)
        fail_msg("waited for %zu messages, got %zu", n, got);
}

/* Waits until the hub ended the stream. */
static void wait_ended(fake *f)
{
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += WAIT_LIMIT_S;
    pthread_mutex_lock(&f->mu);
    int rc = 0;
    while (!f->fails && rc != ETIMEDOUT)
        rc = pthread_cond_timedwait(&f->cv, &f->mu, &until);
    int n = f->fails;
    pthread_mutex_unlock(&f->mu);
    if (!n)
        fail_msg("waited for the end of the stream");
}

static size_t n_sent(fake *f)
{
    pthread_mutex_lock(&f->mu);
    size_t n = f->n_sent;
    pthread_mutex_unlock(&f->mu);
    return n;
}

static bool in_flight(fake *f)
{
    pthread_mutex_lock(&f->mu);
    bool b = f->in_flight;
    pthread_mutex_unlock(&f->mu);
    return b;
}

static int fails(fake *f)
{
    pthread_mutex_lock(&f->mu);
    int n = f->fails;
    pthread_mutex_unlock(&f->mu);
    return n;
}

/* The payload of event seq as append_to() writes it: "payload <seq>",
 * padded with a filler that depends on seq to pad bytes when pad is
 * larger. Returns its length; out holds at least max(pad, 32) bytes. */
static size_t payload_of(uint64_t seq, size_t pad, uint8_t *out)
{
    int n = snprintf((char *)out, 32, "payload %llu", (unsigned long long)seq);
    size_t len = (size_t)n;
    for (; len < pad; len++)
        out[len] = (uint8_t)('a' + (seq + len) % 26);
    return len;
}

/* Message i is event seq of run, as appended by append_to() with pad. */
static void assert_event_of(fake *f, size_t i, const char *run, uint64_t seq, size_t pad)
{
    pthread_mutex_lock(&f->mu);
    Cairn__V1__Event *ev = cairn__v1__event__unpack(NULL, f->lens[i], f->msgs[i]);
    pthread_mutex_unlock(&f->mu);
    assert_non_null(ev);
    assert_int_equal(ev->seq, seq);
    assert_string_equal(ev->run_id, run);
    assert_string_equal(ev->type, seq % 2 ? "step.started" : "step.done");
    uint8_t *want = malloc(pad > 32 ? pad : 32);
    assert_non_null(want);
    size_t n = payload_of(seq, pad, want);
    assert_int_equal(ev->payload.len, n);
    assert_memory_equal(ev->payload.data, want, n);
    free(want);
    cairn__v1__event__free_unpacked(ev, NULL);
}

/* Message i is event seq of RUN, as appended by append() below. */
static void assert_event(fake *f, size_t i, uint64_t seq)
{
    assert_event_of(f, i, RUN, seq, 0);
}

static void assert_ended_once(fake *f, srv_code code)
{
    pthread_mutex_lock(&f->mu);
    int n = f->fails, breaches = f->breaches;
    srv_error err = f->fail_err;
    pthread_mutex_unlock(&f->mu);
    assert_int_equal(n, 1);
    assert_int_equal(err.code, code);
    assert_int_equal(breaches, 0);
}

/* ---- the store ---- */

typedef struct fx {
    char dir[512];
    srv_store *st;
    srv_arena *a;
    srv_watch *hub;
    srv_ledger *ledger;           /* appends go through it, as in cairnd */
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool appended;
    srv_code append_code;
    uint64_t next_seq;            /* of RUN */
} fx;

static void ok(srv_code rc, const srv_error *err)
{
    if (rc != SRV_OK)
        fail_msg("expected OK, got %d: %s", rc, err->msg);
}

static void create_run_named(fx *f, const char *run_id)
{
    srv_error err;
    Cairn__V1__CreateRunRequest req = CAIRN__V1__CREATE_RUN_REQUEST__INIT;
    char *workers[] = {"w0", "w1"};
    req.idempotency_key = "k";
    req.run_id = (char *)run_id;
    req.workers = workers;
    req.n_workers = 2;
    Cairn__V1__Run run;
    srv_txn *t;
    ok(srv_store_begin(f->st, &t, &err), &err);
    srv_apply ap = {t, f->a, NOW_US, NULL, NULL, 0, NULL};
    ok(srv_run_create(&ap, &req, &run, &err), &err);
    ok(srv_store_commit(t, &err), &err);
}

static void create_run(fx *f)
{
    create_run_named(f, RUN);
    f->next_seq = 1;
}

/* On the ledger's writer thread, after the commit told the hub. */
static void appended(void *ctx, srv_code code, const srv_error *err, const uint8_t *resp,
                     size_t len, bool replayed)
{
    (void)err;
    (void)resp;
    (void)len;
    (void)replayed;
    fx *f = ctx;
    pthread_mutex_lock(&f->mu);
    f->append_code = code;
    f->appended = true;
    pthread_cond_broadcast(&f->cv);
    pthread_mutex_unlock(&f->mu);
}

/* Appends events first_seq .. first_seq + n - 1 to run through the
 * ledger, which tells the hub: event seq has type step.started (odd) or
 * step.done (even) and payload_of(seq, pad). */
static void append_to(fx *f, const char *run, uint64_t first_seq, size_t n, size_t pad)
{
    srv_error err;
    Cairn__V1__AppendEventsRequest req = CAIRN__V1__APPEND_EVENTS_REQUEST__INIT;
    req.run_id = (char *)run;
    req.expected_next_seq = first_seq;
    req.n_events = n;
    req.events = srv_arena_alloc(f->a, n * sizeof *req.events);
    for (size_t i = 0; i < n; i++) {
        uint64_t seq = first_seq + i;
        Cairn__V1__Event *e = srv_arena_alloc(f->a, sizeof *e);
        cairn__v1__event__init(e);
        e->type = seq % 2 ? "step.started" : "step.done";
        uint8_t *payload = srv_arena_alloc(f->a, pad > 32 ? pad : 32);
        e->payload.len = payload_of(seq, pad, payload);
        e->payload.data = payload;
        req.events[i] = e;
    }
    char key[32];
    snprintf(key, sizeof key, "k%llu", (unsigned long long)first_seq);
    req.idempotency_key = key;
    srv_mutation m = {.method = "AppendEvents", .run_id = run, .key = key,
                      .request = &req.base,
                      .response = &cairn__v1__append_events_response__descriptor,
                      .apply = srv_apply_append_events, .arena = f->a, .done = appended, .ctx = f};
    ok(srv_fingerprint(f->a, &req.base, m.fingerprint, &err), &err);
    f->appended = false;
    ok(srv_ledger_submit(f->ledger, &m, &err), &err);
    pthread_mutex_lock(&f->mu);
    while (!f->appended)
        pthread_cond_wait(&f->cv, &f->mu);
    pthread_mutex_unlock(&f->mu);
    assert_int_equal(f->append_code, SRV_OK);
}

/* Appends n events to RUN (see append_to), after those appended so far. */
static void append(fx *f, size_t n)
{
    append_to(f, RUN, f->next_seq, n, 0);
    f->next_seq += n;
}

static void start_hub(fx *f)
{
    srv_error err;
    ok(srv_watch_start(f->st, &f->hub, &err), &err);
    srv_ledger_observe(f->ledger, srv_watch_committed, f->hub);
}

static int setup(void **state)
{
    fx *f = calloc(1, sizeof *f);
    if (ct_temp_dir(f->dir, sizeof f->dir, "cairn-unit-watch") < 0)
        return -1;
    srv_error err;
    srv_store_config cfg = {.data_dir = f->dir, .readers = 2};
    if (srv_store_open("sqlite", &cfg, &f->st, &err) ||
        srv_ledger_start(f->st, 100, &f->ledger, &err))
        return -1;
    pthread_mutex_init(&f->mu, NULL);
    pthread_cond_init(&f->cv, NULL);
    f->a = srv_arena_create();
    create_run(f);
    *state = f;
    return 0;
}

/* Every stream has ended by now: the hub can stop. */
static int teardown(void **state)
{
    fx *f = *state;
    srv_ledger_free(f->ledger);
    srv_watch_stop(f->hub);
    srv_store_close(f->st);
    srv_arena_destroy(f->a);
    pthread_cond_destroy(&f->cv);
    pthread_mutex_destroy(&f->mu);
    int rc = ct_rmrf(f->dir);
    free(f);
    return rc;
}

/* Acks messages [from, to) after checking each is event first_seq + k. */
static void receive(fake *s, size_t from, size_t to, uint64_t first_seq)
{
    for (size_t i = from; i < to; i++) {
        wait_sent(s, i + 1);
        assert_event(s, i, first_seq + (i - from));
        ack(s, true);
    }
}

/* ---- tests ---- */

static void catches_up_from_the_log_gets_a_live_append_and_close_all_ends_it_unavailable(
    void **state)
{
    fx *f = *state;
    append(f, 200);
    append(f, 150); /* more than one page of the log (256 events) */
    start_hub(f);
    fake s;
    fake_init(&s);
    srv_watch_stream stream = fake_stream(&s);
    srv_watch_serve(f->hub, &stream, RUN, 1);

    receive(&s, 0, 350, 1);
    /* The last ack pumped the watcher on this thread: with nothing in
     * flight and no end, it is parked. */
    assert_false(in_flight(&s));
    assert_int_equal(n_sent(&s), 350);
    assert_int_equal(fails(&s), 0);

    append(f, 3); /* the dispatcher wakes it */
    receive(&s, 350, 353, 351);
    assert_false(in_flight(&s));

    srv_watch_close_all(f->hub);
    assert_ended_once(&s, SRV_UNAVAILABLE);
    assert_non_null(strstr(s.fail_err.msg, "shutting down"));
    client_close(&s); /* the transport reports the end: the watcher is freed */
    srv_watch_close_all(f->hub);
    assert_ended_once(&s, SRV_UNAVAILABLE);
    assert_int_equal(n_sent(&s), 353);
    fake_destroy(&s);
}

static void sends_completed_inside_send_deliver_every_event_from_from_seq(void **state)
{
    fx *f = *state;
    append(f, 20);
    start_hub(f);
    fake s;
    fake_init(&s);
    s.sync_acks = true;
    srv_watch_stream stream = fake_stream(&s);
    srv_watch_serve(f->hub, &stream, RUN, 5);
    /* Each completion pumped the next send on this thread. */
    assert_int_equal(n_sent(&s), 16);
    for (size_t i = 0; i < 16; i++)
        assert_event(&s, i, 5 + i);

    append(f, 2); /* sent and completed on the dispatcher thread */
    wait_sent(&s, 18);
    assert_event(&s, 16, 21);
    assert_event(&s, 17, 22);

    client_close(&s);
    /* The watcher may still be sending seq 22 when the cancel lands, so
     * wait for the end rather than expect it at once. */
    wait_ended(&s);
    assert_ended_once(&s, SRV_CANCELLED);
    assert_int_equal(n_sent(&s), 18);
    fake_destroy(&s);
}

static void client_cancel_of_a_parked_watcher_ends_it_cancelled_once(void **state)
{
    fx *f = *state;
    append(f, 2);
    start_hub(f);
    fake s;
    fake_init(&s);
    srv_watch_stream stream = fake_stream(&s);
    srv_watch_serve(f->hub, &stream, RUN, 1);
    receive(&s, 0, 2, 1);
    assert_false(in_flight(&s));

    client_close(&s); /* takes it off the parked list and ends it here */
    assert_ended_once(&s, SRV_CANCELLED);
    srv_watch_close_all(f->hub);
    append(f, 1);
    assert_ended_once(&s, SRV_CANCELLED);
    assert_int_equal(n_sent(&s), 2);
    fake_destroy(&s);
}

static void a_send_the_client_never_got_ends_the_stream_cancelled(void **state)
{
    fx *f = *state;
    append(f, 3);
    start_hub(f);
    fake s;
    fake_init(&s);
    srv_watch_stream stream = fake_stream(&s);
    srv_watch_serve(f->hub, &stream, RUN, 1);
    wait_sent(&s, 1);
    ack(&s, false);
    assert_ended_once(&s, SRV_CANCELLED);
    assert_int_equal(n_sent(&s), 1);
    client_close(&s);
    fake_destroy(&s);
}

static void a_client_gone_before_serve_ends_it_cancelled_without_a_send(void **state)
{
    fx *f = *state;
    append(f, 3);
    start_hub(f);
    fake s;
    fake_init(&s);
    s.client_gone = true; /* on_close runs its callback at once */
    srv_watch_stream stream = fake_stream(&s);
    srv_watch_serve(f->hub, &stream, RUN, 1);
    assert_ended_once(&s, SRV_CANCELLED);
    assert_int_equal(n_sent(&s), 0);
    fake_destroy(&s);
}

static void watch_of_an_unknown_run_fails_not_found_and_never_registers_on_close(void **state)
{
    fx *f = *state;
    start_hub(f);
    fake s;
    fake_init(&s);
    srv_watch_stream stream = fake_stream(&s);
    srv_watch_serve(f->hub, &stream, "no-such-run", 1);
    assert_ended_once(&s, SRV_NOT_FOUND);
    assert_int_equal(s.on_closes, 0);
    assert_int_equal(n_sent(&s), 0);
    fake_destroy(&s);
}

static void watch_after_close_all_is_unavailable_at_once(void **state)
{
    fx *f = *state;
    append(f, 1);
    start_hub(f);
    srv_watch_close_all(f->hub);
    fake s;
    fake_init(&s);
    srv_watch_stream stream = fake_stream(&s);
    srv_watch_serve(f->hub, &stream, RUN, 1);
    assert_ended_once(&s, SRV_UNAVAILABLE);
    assert_int_equal(s.on_closes, 0);
    assert_int_equal(n_sent(&s), 0);
    fake_destroy(&s);
}

/* ---- one memory budget for all rings ---- */

enum { BUDGET_RUNS = 16, BUDGET_ROUNDS = 4, BUDGET_EVENTS = 16, BUDGET_PAD = 16 * 1024 };
#define BUDGET_BYTES ((size_t)1024 * 1024)

/* Acks messages [from, to) of s after checking each is event
 * first_seq + k of run with a payload of pad bytes. */
static void receive_of(fake *s, const char *run, size_t from, size_t to, uint64_t first_seq,
                       size_t pad)
{
    for (size_t i = from; i < to; i++) {
        wait_sent(s, i + 1);
        assert_event_of(s, i, run, first_seq + (i - from), pad);
        ack(s, true);
    }
}

static void assert_within_budget(fx *f, size_t budget)
{
    size_t peak;
    size_t held = srv_watch_ring_bytes(f->hub, &peak);
    if (held > budget || peak > budget)
        fail_msg("the rings hold %zu bytes (at most %zu so far), over the %zu-byte budget", held,
                 peak, budget);
}

/* Ends the n streams of s as at shutdown and frees them. */
static void end_watches(fx *f, fake *s, size_t n)
{
    srv_watch_close_all(f->hub);
    for (size_t i = 0; i < n; i++) {
        assert_ended_once(&s[i], SRV_UNAVAILABLE);
        client_close(&s[i]);
        fake_destroy(&s[i]);
    }
}

/* 16 watched runs of 16 KiB events: 4 MiB a round, 16 MiB in all, each
 * run well under its own ring's 8 MiB, against a budget of 1 MiB for all
 * rings together. Every watcher but the first takes its events as they
 * come; the first never acks until the end, so by then its events are
 * long gone from the rings and it reads them from the store. */
static void many_watched_runs_of_big_events_hold_at_most_the_budget_and_lose_no_event(
    void **state)
{
    fx *f = *state;
    start_hub(f);
    srv_watch_ring_budget(f->hub, BUDGET_BYTES);
    char runs[BUDGET_RUNS][32];
    fake *s = calloc(BUDGET_RUNS, sizeof *s);
    assert_non_null(s);
    for (int r = 0; r < BUDGET_RUNS; r++) {
        snprintf(runs[r], sizeof runs[r], "budget-%02d", r);
        create_run_named(f, runs[r]);
        fake_init(&s[r]);
        srv_watch_stream stream = fake_stream(&s[r]);
        srv_watch_serve(f->hub, &stream, runs[r], 1); /* no events yet: parks */
    }
    for (size_t round = 0; round < BUDGET_ROUNDS; round++) {
        size_t first = round * BUDGET_EVENTS;
        for (int r = 0; r < BUDGET_RUNS; r++)
            append_to(f, runs[r], first + 1, BUDGET_EVENTS, BUDGET_PAD);
        for (int r = 1; r < BUDGET_RUNS; r++)
            receive_of(&s[r], runs[r], first, first + BUDGET_EVENTS, first + 1, BUDGET_PAD);
        assert_within_budget(f, BUDGET_BYTES);
    }
    /* The laggard, one event in flight all along, catches up: every event
     * once, in order. */
    receive_of(&s[0], runs[0], 0, BUDGET_ROUNDS * BUDGET_EVENTS, 1, BUDGET_PAD);
    assert_within_budget(f, BUDGET_BYTES);
    assert_true(srv_watch_ring_bytes(f->hub, NULL) > 0); /* the rings still serve */
    for (int r = 0; r < BUDGET_RUNS; r++) {
        assert_false(in_flight(&s[r]));
        assert_int_equal(n_sent(&s[r]), BUDGET_ROUNDS * BUDGET_EVENTS);
        assert_int_equal(fails(&s[r]), 0);
    }
    end_watches(f, s, BUDGET_RUNS);
    free(s);
}

/* A budget of 0 keeps no event in memory: the watcher reads each one from
 * the store, live ones included. */
static void a_budget_of_zero_keeps_no_event_and_the_watcher_gets_each_from_the_store(
    void **state)
{
    fx *f = *state;
    append(f, 5);
    start_hub(f);
    srv_watch_ring_budget(f->hub, 0);
    fake s;
    fake_init(&s);
    srv_watch_stream stream = fake_stream(&s);
    srv_watch_serve(f->hub, &stream, RUN, 1);
    receive(&s, 0, 5, 1);
    for (size_t round = 0; round < 3; round++) {
        append(f, 4);
        receive(&s, 5 + round * 4, 9 + round * 4, 6 + round * 4);
    }
    assert_false(in_flight(&s));
    assert_int_equal(n_sent(&s), 17);
    assert_within_budget(f, 0);
    end_watches(f, &s, 1);
}

/* Commits the hub was never told of (another replica's, whose
 * notification was lost with the listener's connection): a resync finds
 * them in the store and wakes the parked watcher. */
static void a_resync_delivers_commits_that_were_never_announced(void **state)
{
    fx *f = *state;
    append(f, 2);
    srv_error err;
    ok(srv_watch_start(f->st, &f->hub, &err), &err); /* the ledger tells it nothing */
    fake s;
    fake_init(&s);
    srv_watch_stream stream = fake_stream(&s);
    srv_watch_serve(f->hub, &stream, RUN, 1);
    receive(&s, 0, 2, 1);
    append(f, 3); /* committed, not announced */
    assert_int_equal(n_sent(&s), 2);

    srv_watch_resync(f->hub);
    receive(&s, 2, 5, 3);
    srv_watch_resync(f->hub); /* nothing new: nothing sent, still parked */
    append(f, 1);
    srv_watch_resync(f->hub);
    receive(&s, 5, 6, 6);
    assert_false(in_flight(&s));

    srv_watch_close_all(f->hub);
    assert_ended_once(&s, SRV_UNAVAILABLE);
    client_close(&s);
    assert_int_equal(n_sent(&s), 6);
    fake_destroy(&s);
}

static void a_deleted_run_ends_its_parked_watchers_not_found_and_others_not(void **state)
{
    fx *f = *state;
    append(f, 2);
    start_hub(f);
    fake s;
    fake_init(&s);
    srv_watch_stream stream = fake_stream(&s);
    srv_watch_serve(f->hub, &stream, RUN, 1);
    receive(&s, 0, 2, 1);
    assert_false(in_flight(&s)); /* parked */

    srv_watch_deleted(f->hub, "another-run"); /* not watched: nothing happens */
    assert_int_equal(n_sent(&s), 2);
    assert_false(in_flight(&s));
    srv_watch_deleted(f->hub, RUN);
    assert_ended_once(&s, SRV_NOT_FOUND);
    assert_int_equal(n_sent(&s), 2);
    client_close(&s);
    fake_destroy(&s);
}

/* The gauge of open streams and the count of ended calls must agree for
 * a scraper: a stream is counted open until it has ended (the transport
 * counts its call as it ends it), then not. */
static void a_stream_is_counted_open_until_it_has_ended(void **state)
{
    fx *f = *state;
    append(f, 1);
    start_hub(f);
    fake s, u;
    fake_init(&s);
    fake_init(&u);
    s.hub = u.hub = f->hub;
    srv_watch_stream stream = fake_stream(&s), unknown = fake_stream(&u);
    srv_watch_serve(f->hub, &stream, RUN, 1);
    receive(&s, 0, 1, 1);
    assert_int_equal(srv_watch_open_streams(f->hub), 1);
    client_close(&s);
    assert_ended_once(&s, SRV_CANCELLED);
    assert_int_equal(s.open_when_ended, 1);
    assert_int_equal(srv_watch_open_streams(f->hub), 0);

    srv_watch_serve(f->hub, &unknown, "no-such-run", 1);
    assert_ended_once(&u, SRV_NOT_FOUND);
    assert_int_equal(u.open_when_ended, 1);
    assert_int_equal(srv_watch_open_streams(f->hub), 0);
    fake_destroy(&s);
    fake_destroy(&u);
}

#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)

int main(void)
{
    const struct CMUnitTest tests[] = {
        T(catches_up_from_the_log_gets_a_live_append_and_close_all_ends_it_unavailable),
        T(sends_completed_inside_send_deliver_every_event_from_from_seq),
        T(client_cancel_of_a_parked_watcher_ends_it_cancelled_once),
        T(a_send_the_client_never_got_ends_the_stream_cancelled),
        T(a_client_gone_before_serve_ends_it_cancelled_without_a_send),
        T(watch_of_an_unknown_run_fails_not_found_and_never_registers_on_close),
        T(watch_after_close_all_is_unavailable_at_once),
        T(a_resync_delivers_commits_that_were_never_announced),
        T(a_deleted_run_ends_its_parked_watchers_not_found_and_others_not),
        T(many_watched_runs_of_big_events_hold_at_most_the_budget_and_lose_no_event),
        T(a_budget_of_zero_keeps_no_event_and_the_watcher_gets_each_from_the_store),
        T(a_stream_is_counted_open_until_it_has_ended),
    };
    return cmocka_run_group_tests_name("watch_hub", tests, NULL, NULL);
}
