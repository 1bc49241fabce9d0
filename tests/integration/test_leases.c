/* Worker leases and fencing, through libcairn against a real cairnd.
 * Lease expiry is wall-clock time by definition: where a test needs a
 * lease to lapse it waits for the clock (1 s leases), not for a thread. */
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

typedef ct_fixture fixture;

static void create_run(cairn_client *c, const char *run_id)
{
    const char *workers[] = {"a", "b"};
    assert_int_equal(ct_create_run(c, run_id, workers, 2), CAIRN_OK);
}

static cairn_status acquire(cairn_client *c, const char *run, const char *worker,
                            const char *holder, uint32_t ttl, cairn_lease *out, cairn_error *err)
{
    cairn_acquire_request req = {.run_id = run, .worker_id = worker, .holder = holder,
                                 .ttl_ms = ttl};
    return cairn_acquire_worker(c, &req, out, err);
}

/* Renews *lease in place, as a holder does. */
static cairn_status renew(cairn_client *c, cairn_lease *lease, uint32_t ttl, cairn_error *err)
{
    cairn_renew_request req = {.lease = lease, .ttl_ms = ttl};
    return cairn_renew_lease(c, &req, lease, err);
}

static cairn_status release(cairn_client *c, const cairn_lease *lease, cairn_error *err)
{
    cairn_release_request req = {.lease = lease};
    return cairn_release_worker(c, &req, err);
}

static cairn_status fenced_append(cairn_client *c, const char *run, const char *worker,
                                  uint64_t token, cairn_error *err)
{
    cairn_event ev = {.type = "step", .worker_id = worker};
    cairn_append_request req = {.run_id = run, .events = &ev, .events_count = 1,
                                .fencing_token = token};
    cairn_append_result res;
    return cairn_append_events(c, &req, &res, err);
}

/* Waits for the monotonic clock to reach at_ms. */
static void wait_until(int64_t at_ms)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    int64_t left = at_ms - ((int64_t)now.tv_sec * 1000 + now.tv_nsec / 1000000);
    if (left > 0) {
        struct timespec ts = {(time_t)(left / 1000), (long)(left % 1000) * 1000000};
        while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
            ;
    }
}

/* Waits until the lease has lapsed on our clock (its ttl from when it was
 * sent, plus a margin for the two clocks). */
static void wait_for_expiry(const cairn_lease *l)
{
    wait_until(l->local_expiry_ms_ + 50);
}

static void acquire_gives_a_live_lease_with_token_1(void **state)
{
    fixture *f = *state;
    create_run(f->client, "l-basic");
    cairn_lease l;
    cairn_error err;
    assert_int_equal(acquire(f->client, "l-basic", "a", "node-1", 5000, &l, &err), CAIRN_OK);
    assert_string_equal(l.holder, "node-1");
    assert_string_equal(l.worker_id, "a");
    assert_int_equal(l.fencing_token, 1);
    assert_int_equal(strlen(l.expires_at), 27);
    assert_int_equal(l.ttl_ms, 5000);
    assert_true(strlen(l.lease_id) > 0);
}

static void a_live_lease_conflicts_naming_its_holder(void **state)
{
    fixture *f = *state;
    create_run(f->client, "l-conflict");
    cairn_lease l, other;
    cairn_error err;
    assert_int_equal(acquire(f->client, "l-conflict", "a", "node-1", 5000, &l, &err), CAIRN_OK);
    assert_int_equal(acquire(f->client, "l-conflict", "a", "node-2", 5000, &other, &err),
                     CAIRN_FAILED_PRECONDITION);
    assert_non_null(strstr(err.message, "node-1"));
    assert_non_null(strstr(err.message, l.expires_at));
    /* Even its own holder: renewing is the way to extend it. */
    assert_int_equal(acquire(f->client, "l-conflict", "a", "node-1", 5000, &other, &err),
                     CAIRN_FAILED_PRECONDITION);
    /* Another worker is free. */
    assert_int_equal(acquire(f->client, "l-conflict", "b", "node-2", 5000, &other, &err), CAIRN_OK);
}

static void bad_lease_requests_are_refused(void **state)
{
    fixture *f = *state;
    create_run(f->client, "l-bad");
    cairn_lease l;
    cairn_error err;
    assert_int_equal(acquire(f->client, "l-bad", "zz", "n", 5000, &l, &err), CAIRN_INVALID_ARGUMENT);
    assert_non_null(strstr(err.message, "worker_id"));
    assert_int_equal(acquire(f->client, "l-bad", "a", "n", 999, &l, &err), CAIRN_INVALID_ARGUMENT);
    assert_non_null(strstr(err.message, "ttl_ms: must be 1000..600000"));
    assert_int_equal(acquire(f->client, "l-bad", "a", "n", 600001, &l, &err),
                     CAIRN_INVALID_ARGUMENT);
    assert_int_equal(acquire(f->client, "l-bad", "a", "../x", 5000, &l, &err),
                     CAIRN_INVALID_ARGUMENT);
    assert_non_null(strstr(err.message, "holder"));
    assert_int_equal(acquire(f->client, "no-run", "a", "n", 5000, &l, &err), CAIRN_NOT_FOUND);
}

static void an_expired_lease_is_free_and_fenced(void **state)
{
    fixture *f = *state;
    create_run(f->client, "l-expiry");
    cairn_lease first, second;
    cairn_error err;
    assert_int_equal(acquire(f->client, "l-expiry", "a", "node-1", 1000, &first, &err), CAIRN_OK);
    wait_for_expiry(&first);
    assert_int_equal(acquire(f->client, "l-expiry", "a", "node-2", 1000, &second, &err), CAIRN_OK);
    assert_true(second.fencing_token > first.fencing_token);
    /* The old holder can neither renew nor write. */
    cairn_lease stale = first;
    assert_int_equal(renew(f->client, &stale, 1000, &err), CAIRN_FAILED_PRECONDITION);
    assert_int_equal(fenced_append(f->client, "l-expiry", "a", first.fencing_token, &err),
                     CAIRN_FAILED_PRECONDITION);
    assert_non_null(strstr(err.message, "fenced"));
    assert_int_equal(fenced_append(f->client, "l-expiry", "a", second.fencing_token, &err),
                     CAIRN_OK);
}

static void renewal_extends_the_lease(void **state)
{
    fixture *f = *state;
    create_run(f->client, "l-renew");
    cairn_lease l;
    cairn_error err;
    assert_int_equal(acquire(f->client, "l-renew", "a", "node-1", 1000, &l, &err), CAIRN_OK);
    int64_t first_expiry = l.local_expiry_ms_;
    char before[32];
    snprintf(before, sizeof before, "%s", l.expires_at);
    assert_int_equal(renew(f->client, &l, 600000, &err), CAIRN_OK);
    assert_true(strcmp(l.expires_at, before) > 0);
    assert_int_equal(l.fencing_token, 1); /* renewing keeps the token */
    wait_until(first_expiry + 100); /* past the first ttl */
    cairn_lease other;
    assert_int_equal(acquire(f->client, "l-renew", "a", "node-2", 1000, &other, &err),
                     CAIRN_FAILED_PRECONDITION); /* still held */
    cairn_lease wrong = l;
    snprintf(wrong.lease_id, sizeof wrong.lease_id, "not-the-lease");
    assert_int_equal(renew(f->client, &wrong, 1000, &err), CAIRN_FAILED_PRECONDITION);
    assert_non_null(strstr(err.message, "lease_id"));
}

static void release_frees_the_worker_at_once(void **state)
{
    fixture *f = *state;
    create_run(f->client, "l-release");
    cairn_lease l, next, third;
    cairn_error err;
    assert_int_equal(acquire(f->client, "l-release", "a", "node-1", 600000, &l, &err), CAIRN_OK);
    assert_int_equal(release(f->client, &l, &err), CAIRN_OK);
    assert_int_equal(acquire(f->client, "l-release", "a", "node-2", 600000, &next, &err),
                     CAIRN_OK);
    assert_int_equal(next.fencing_token, l.fencing_token + 1);
    /* Releasing a lease that was taken over is refused... */
    assert_int_equal(release(f->client, &l, &err), CAIRN_FAILED_PRECONDITION);
    /* ...releasing one's own twice is done already. */
    assert_int_equal(release(f->client, &next, &err), CAIRN_OK);
    assert_int_equal(release(f->client, &next, &err), CAIRN_OK);
    assert_int_equal(acquire(f->client, "l-release", "a", "node-3", 1000, &third, &err), CAIRN_OK);
    assert_int_equal(third.fencing_token, next.fencing_token + 1);
}

static void assert_same_lease(const cairn_lease *a, const cairn_lease *b)
{
    assert_string_equal(a->lease_id, b->lease_id);
    assert_string_equal(a->holder, b->holder);
    assert_string_equal(a->expires_at, b->expires_at);
    assert_int_equal(a->fencing_token, b->fencing_token);
    assert_int_equal(a->ttl_ms, b->ttl_ms);
    assert_int_equal(a->replayed, b->replayed);
    assert_int_equal(a->local_expiry_ms_, b->local_expiry_ms_);
}

static void renew_and_release_requests_carry_their_key_and_lease(void **state)
{
    fixture *f = *state;
    create_run(f->client, "l-requests");
    cairn_lease l;
    cairn_error err;
    assert_int_equal(acquire(f->client, "l-requests", "a", "node-1", 5000, &l, &err), CAIRN_OK);

    /* Renewed into another struct: the request's lease stays as it was. */
    cairn_lease before = l, renewed, again;
    cairn_renew_request rr = {.idempotency_key = "renew-1", .lease = &l, .ttl_ms = 600000};
    assert_int_equal(cairn_renew_lease(f->client, &rr, &renewed, &err), CAIRN_OK);
    assert_same_lease(&l, &before);
    assert_false(renewed.replayed);
    assert_string_equal(renewed.lease_id, l.lease_id);
    assert_int_equal(renewed.fencing_token, l.fencing_token);
    assert_int_equal(renewed.ttl_ms, 600000);
    assert_true(strcmp(renewed.expires_at, l.expires_at) > 0);
    /* The same request under the same key is answered from the first. */
    assert_int_equal(cairn_renew_lease(f->client, &rr, &again, &err), CAIRN_OK);
    assert_true(again.replayed);
    assert_string_equal(again.expires_at, renewed.expires_at);

    /* A request without a lease fails before any attempt, *out untouched. */
    cairn_renew_request no_lease = {.ttl_ms = 1000};
    cairn_lease kept = renewed;
    assert_int_equal(cairn_renew_lease(f->client, &no_lease, &kept, &err), CAIRN_INVALID_ARGUMENT);
    assert_non_null(strstr(err.message, "lease"));
    assert_int_equal(err.attempts, 0);
    assert_same_lease(&kept, &renewed);
    cairn_release_request release_none = {.idempotency_key = "release-0"};
    assert_int_equal(cairn_release_worker(f->client, &release_none, &err), CAIRN_INVALID_ARGUMENT);
    assert_int_equal(err.attempts, 0);

    /* Released under a key; its retry is a replay, even once the worker
     * has been taken by another holder... */
    cairn_release_request rel = {.idempotency_key = "release-1", .lease = &renewed};
    assert_int_equal(cairn_release_worker(f->client, &rel, &err), CAIRN_OK);
    cairn_lease next;
    assert_int_equal(acquire(f->client, "l-requests", "a", "node-2", 5000, &next, &err), CAIRN_OK);
    assert_int_equal(cairn_release_worker(f->client, &rel, &err), CAIRN_OK);
    /* ...while a new key is a new release, of a lease taken over. */
    rel.idempotency_key = "release-2";
    assert_int_equal(cairn_release_worker(f->client, &rel, &err), CAIRN_FAILED_PRECONDITION);
    /* A renewal the server refuses leaves the lease renewed in place as it was. */
    kept = renewed;
    cairn_renew_request stale = {.idempotency_key = "renew-2", .lease = &kept, .ttl_ms = 1000};
    assert_int_equal(cairn_renew_lease(f->client, &stale, &kept, &err), CAIRN_FAILED_PRECONDITION);
    assert_same_lease(&kept, &renewed);
}

static void fencing_guards_appends_and_completions(void **state)
{
    fixture *f = *state;
    create_run(f->client, "l-fence");
    cairn_lease old, cur;
    cairn_error err;
    assert_int_equal(acquire(f->client, "l-fence", "a", "node-1", 600000, &old, &err), CAIRN_OK);
    assert_int_equal(release(f->client, &old, &err), CAIRN_OK);
    assert_int_equal(acquire(f->client, "l-fence", "a", "node-2", 600000, &cur, &err), CAIRN_OK);

    assert_int_equal(fenced_append(f->client, "l-fence", "a", old.fencing_token, &err),
                     CAIRN_FAILED_PRECONDITION);
    assert_non_null(strstr(err.message, "fenced"));
    assert_int_equal(fenced_append(f->client, "l-fence", "a", cur.fencing_token, &err), CAIRN_OK);
    /* A fenced append speaks for one worker only. */
    cairn_event evs[2] = {{.type = "x", .worker_id = "a"}, {.type = "x", .worker_id = "b"}};
    cairn_append_request mixed = {.run_id = "l-fence", .events = evs, .events_count = 2,
                                  .fencing_token = cur.fencing_token};
    cairn_append_result res;
    assert_int_equal(cairn_append_events(f->client, &mixed, &res, &err), CAIRN_INVALID_ARGUMENT);

    cairn_complete_request done = {.run_id = "l-fence", .worker_id = "a",
                                   .fencing_token = old.fencing_token};
    cairn_complete_result cres;
    assert_int_equal(cairn_complete_worker(f->client, &done, &cres, &err),
                     CAIRN_FAILED_PRECONDITION);
    assert_non_null(strstr(err.message, "fenced"));
    done.fencing_token = cur.fencing_token;
    assert_int_equal(cairn_complete_worker(f->client, &done, &cres, &err), CAIRN_OK);
    /* Completion ends the lease; a completed worker cannot be leased. */
    assert_int_equal(fenced_append(f->client, "l-fence", "a", cur.fencing_token, &err),
                     CAIRN_FAILED_PRECONDITION);
    cairn_lease again;
    assert_int_equal(acquire(f->client, "l-fence", "a", "node-3", 1000, &again, &err),
                     CAIRN_FAILED_PRECONDITION);
    assert_non_null(strstr(err.message, "completed"));
}

static void a_replay_comes_before_fencing(void **state)
{
    fixture *f = *state;
    create_run(f->client, "l-replay");
    cairn_lease l, next;
    cairn_error err;
    assert_int_equal(acquire(f->client, "l-replay", "a", "node-1", 600000, &l, &err), CAIRN_OK);
    cairn_event ev = {.type = "x", .worker_id = "a"};
    cairn_append_request req = {.idempotency_key = "fenced-1", .run_id = "l-replay", .events = &ev,
                                .events_count = 1, .fencing_token = l.fencing_token};
    cairn_append_result res;
    assert_int_equal(cairn_append_events(f->client, &req, &res, &err), CAIRN_OK);
    assert_int_equal(release(f->client, &l, &err), CAIRN_OK);
    assert_int_equal(acquire(f->client, "l-replay", "a", "node-2", 600000, &next, &err), CAIRN_OK);
    /* The token is stale now, but this exact request already succeeded. */
    assert_int_equal(cairn_append_events(f->client, &req, &res, &err), CAIRN_OK);
    assert_true(res.replayed);
}

static void tokens_keep_growing_across_restarts(void **state)
{
    (void)state;
    ct_server s;
    assert_int_equal(ct_server_init(&s), 0);
    assert_int_equal(ct_server_start(&s, 0, NULL), 0);
    cairn_client *c = ct_client(&s, NULL);
    create_run(c, "l-restart");
    cairn_lease l;
    cairn_error err;
    for (int i = 1; i <= 3; i++) {
        assert_int_equal(acquire(c, "l-restart", "a", "node-1", 600000, &l, &err), CAIRN_OK);
        assert_int_equal(l.fencing_token, (uint64_t)i);
        assert_int_equal(release(c, &l, &err), CAIRN_OK);
    }
    cairn_client_destroy(c);
    ct_server_kill(&s); /* even without a clean stop */
    assert_int_equal(ct_server_start(&s, 0, NULL), 0);
    c = ct_client(&s, NULL);
    assert_int_equal(acquire(c, "l-restart", "a", "node-2", 600000, &l, &err), CAIRN_OK);
    assert_int_equal(l.fencing_token, 4);
    cairn_client_destroy(c);
    assert_int_equal(ct_server_stop(&s), 0);
    ct_server_cleanup(&s);
}

/* ---- the lease keeper ---- */

typedef struct lost {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int calls;
    cairn_status why;
} lost;

static void on_lost(void *user, const cairn_lease *l, const cairn_error *why)
{
    (void)l;
    lost *x = user;
    pthread_mutex_lock(&x->mu);
    x->calls++;
    x->why = why->status;
    pthread_cond_broadcast(&x->cv);
    pthread_mutex_unlock(&x->mu);
}

static void keeper_holds_a_lease_past_its_ttl_and_reports_its_loss(void **state)
{
    fixture *f = *state;
    create_run(f->client, "l-keeper");
    cairn_lease l, other;
    cairn_error err;
    assert_int_equal(acquire(f->client, "l-keeper", "a", "node-1", 1000, &l, &err), CAIRN_OK);
    lost x = {.mu = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER};
    cairn_lease_keeper *k;
    assert_int_equal(cairn_lease_keeper_start(f->client, &l, on_lost, &x, &k, &err), CAIRN_OK);

    /* Two and a half ttls later the lease is still the holder's. */
    wait_until(l.local_expiry_ms_ + 1500);
    assert_true(cairn_lease_keeper_alive(k));
    assert_int_equal(acquire(f->client, "l-keeper", "a", "node-2", 1000, &other, &err),
                     CAIRN_FAILED_PRECONDITION);
    assert_int_equal(fenced_append(f->client, "l-keeper", "a", l.fencing_token, &err), CAIRN_OK);

    /* Taken away (released behind the keeper's back): the next renewal
     * fails and the keeper reports the loss once. */
    assert_int_equal(release(f->client, &l, &err), CAIRN_OK);
    pthread_mutex_lock(&x.mu);
    struct timespec deadline;
    clock_gettime(CLOCK_REALTIME, &deadline);
    deadline.tv_sec += 10 * ct_time_scale();
    while (x.calls == 0 && pthread_cond_timedwait(&x.cv, &x.mu, &deadline) != ETIMEDOUT)
        ;
    assert_int_equal(x.calls, 1);
    assert_int_equal(x.why, CAIRN_FAILED_PRECONDITION);
    pthread_mutex_unlock(&x.mu);
    assert_false(cairn_lease_keeper_alive(k));
    cairn_lease_keeper_stop(k);
}

static void keeper_stop_leaves_the_lease_to_expire(void **state)
{
    fixture *f = *state;
    create_run(f->client, "l-keeper-stop");
    cairn_lease l, other;
    cairn_error err;
    assert_int_equal(acquire(f->client, "l-keeper-stop", "a", "node-1", 1000, &l, &err), CAIRN_OK);
    lost x = {.mu = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER};
    cairn_lease_keeper *k;
    assert_int_equal(cairn_lease_keeper_start(f->client, &l, on_lost, &x, &k, &err), CAIRN_OK);
    cairn_lease_keeper_stop(k);
    wait_for_expiry(&l);
    assert_int_equal(acquire(f->client, "l-keeper-stop", "a", "node-2", 1000, &other, &err),
                     CAIRN_OK);
    assert_int_equal(x.calls, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(acquire_gives_a_live_lease_with_token_1),
        cmocka_unit_test(a_live_lease_conflicts_naming_its_holder),
        cmocka_unit_test(bad_lease_requests_are_refused),
        cmocka_unit_test(an_expired_lease_is_free_and_fenced),
        cmocka_unit_test(renewal_extends_the_lease),
        cmocka_unit_test(release_frees_the_worker_at_once),
        cmocka_unit_test(renew_and_release_requests_carry_their_key_and_lease),
        cmocka_unit_test(fencing_guards_appends_and_completions),
        cmocka_unit_test(a_replay_comes_before_fencing),
        cmocka_unit_test(tokens_keep_growing_across_restarts),
        cmocka_unit_test(keeper_holds_a_lease_past_its_ttl_and_reports_its_loss),
        cmocka_unit_test(keeper_stop_leaves_the_lease_to_expire),
    };
    return cmocka_run_group_tests_name("leases", tests, ct_fixture_setup, ct_fixture_teardown);
}
