/* Contract: several processes on one store (the cluster backend's
 * replicas), as two store handles. Skipped by a backend that one process
 * owns (open_replica). */
#include "contract.h"
#include "base/clock.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

enum { BATCHES = 25, PER_BATCH = 4 };

typedef struct appender {
    srv_store *st;
    uint8_t tag;              /* payload[1] of its events: who and which batch */
    int aborted;              /* batches retried */
    srv_code failed;
    char msg[700];
} appender;

/* What the ledger does for each batch: lock the run's head, append after
 * it, commit; an ABORTED batch is tried again. */
static void *append_batches(void *arg)
{
    appender *ap = arg;
    srv_arena *a = srv_arena_create();
    for (int b = 0; b < BATCHES && !ap->failed; b++) {
        for (;;) {
            srv_error err;
            srv_txn *t = NULL;
            srv_run_head h;
            bool found = false;
            Cairn__V1__Event **ev = make_events(&(fx){.a = a}, PER_BATCH, 4,
                                                (uint8_t)(ap->tag + b));
            srv_code rc = srv_store_begin(ap->st, &t, &err);
            if (!rc)
                rc = srv_store_run_find(t, a, "run-1", &h, &found, &err);
            if (!rc)
                rc = srv_store_events_insert(t, &h, ev, PER_BATCH, NOW_US, &err);
            if (!rc) {
                rc = srv_store_commit(t, &err);
                t = NULL;
            }
            if (t)
                srv_store_rollback(t);
            if (rc == SRV_ABORTED) {
                ap->aborted++;
                continue;
            }
            if (rc) {
                ap->failed = rc;
                snprintf(ap->msg, sizeof ap->msg, "%s", err.msg);
            }
            break;
        }
    }
    srv_arena_destroy(a);
    return NULL;
}

void two_replicas_appending_to_one_run_at_once_give_dense_seqs(void **state)
{
    fx *f = *state;
    srv_store *second = open_replica(f);
    insert_run(f, "run-1", 1);
    appender aps[2] = {{.st = f->st, .tag = 0}, {.st = second, .tag = 100}};
    pthread_t th[2];
    for (int i = 0; i < 2; i++)
        assert_int_equal(pthread_create(&th[i], NULL, append_batches, &aps[i]), 0);
    for (int i = 0; i < 2; i++)
        pthread_join(th[i], NULL);
    srv_store_close(second);
    for (int i = 0; i < 2; i++)
        if (aps[i].failed)
            fail_msg("replica %d: %s: %s", i, srv_code_name(aps[i].failed), aps[i].msg);

    size_t n;
    Cairn__V1__Event **v = read_events(f, "run-1", 1, 1000, SIZE_MAX, &n);
    assert_int_equal(n, 2 * BATCHES * PER_BATCH);
    for (size_t i = 0; i < n; i++) {
        assert_int_equal(v[i]->seq, i + 1); /* dense: no gap, no duplicate */
        if (i % PER_BATCH) /* a batch's events stay together */
            assert_int_equal(v[i]->payload.data[1] - (i % PER_BATCH),
                             v[i - i % PER_BATCH]->payload.data[1]);
    }
    assert_int_equal(head_of(f, "run-1").next_seq, n + 1);
}

/* ---- one key, two replicas ---- */

typedef struct racer {
    srv_store *st;
    const srv_dedup_key *key;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool looked;              /* its first dedup_get found nothing */
    srv_code first_put;       /* its dedup_put's code */
    bool replayed;            /* the second attempt found the winner's record */
    uint8_t got_fp0;
    char msg[700];
} racer;

/* The ledger's apply_one for the losing replica: savepoint, look the key
 * up (not there yet), apply (lock the run, append), record the key; on
 * ABORTED roll back to the savepoint and try once more, which now
 * replays. */
static void *race(void *arg)
{
    racer *r = arg;
    srv_arena *a = srv_arena_create();
    srv_error err;
    srv_txn *t = NULL;
    srv_dedup_record rec = record_of("loser"), got;
    rec.fingerprint[0] = 0xee;
    bool found = true;
    srv_run_head h;
    srv_code rc = srv_store_begin(r->st, &t, &err);
    if (!rc)
        rc = srv_store_savepoint(t, &err);
    if (!rc)
        rc = srv_store_dedup_get(t, a, r->key, &got, &found, &err);
    pthread_mutex_lock(&r->mu);
    r->looked = true;
    pthread_cond_signal(&r->cv);
    pthread_mutex_unlock(&r->mu);
    if (!rc && !found) {
        bool run_found = false;
        rc = srv_store_run_find(t, a, "run-1", &h, &run_found, &err); /* waits for the winner */
        if (!rc)
            rc = srv_store_events_insert(t, &h, make_events(&(fx){.a = a}, 1, 4, 9), 1, NOW_US,
                                         &err);
        if (!rc)
            rc = srv_store_dedup_put(t, r->key, &rec, NOW_US, &err);
        r->first_put = rc;
        if (rc == SRV_ABORTED && srv_store_txn_active(t)) {
            srv_store_rollback_to(t);
            rc = srv_store_savepoint(t, &err);
            if (!rc)
                rc = srv_store_dedup_get(t, a, r->key, &got, &found, &err);
            r->replayed = !rc && found;
            r->got_fp0 = found ? got.fingerprint[0] : 0;
            if (!rc)
                rc = srv_store_release(t, &err);
        }
    }
    if (rc)
        snprintf(r->msg, sizeof r->msg, "%s: %s", srv_code_name(rc), err.msg);
    if (t && !rc)
        rc = srv_store_commit(t, &err);
    else if (t)
        srv_store_rollback(t);
    srv_arena_destroy(a);
    return NULL;
}

void two_replicas_racing_on_one_idempotency_key_one_applies_the_other_replays(void **state)
{
    fx *f = *state;
    srv_store *second = open_replica(f);
    insert_run(f, "run-1", 1);
    const srv_dedup_key k = {"run-1", "AppendEvents", "the-key"};
    srv_dedup_record winner = record_of("winner"), got;
    srv_error err;

    /* The winner applies first but has not committed yet. */
    srv_txn *t = wbegin(f);
    ok(srv_store_savepoint(t, &err), &err);
    bool found = true;
    ok(srv_store_dedup_get(t, f->a, &k, &got, &found, &err), &err);
    assert_false(found);
    srv_run_head h = head_in(f, t, "run-1");
    ok(srv_store_events_insert(t, &h, make_events(f, 1, 4, 1), 1, NOW_US, &err), &err);
    ok(srv_store_dedup_put(t, &k, &winner, NOW_US, &err), &err);
    ok(srv_store_release(t, &err), &err);

    /* The loser looks the key up meanwhile: not there. */
    racer r = {.st = second, .key = &k, .first_put = SRV_OK};
    pthread_mutex_init(&r.mu, NULL);
    pthread_cond_init(&r.cv, NULL);
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, race, &r), 0);
    pthread_mutex_lock(&r.mu);
    while (!r.looked)
        pthread_cond_wait(&r.cv, &r.mu);
    pthread_mutex_unlock(&r.mu);
    wcommit(t);
    pthread_join(th, NULL);
    pthread_cond_destroy(&r.cv);
    pthread_mutex_destroy(&r.mu);
    srv_store_close(second);

    if (r.msg[0])
        fail_msg("the loser failed: %s", r.msg);
    fails_with(r.first_put, &(srv_error){.msg = "the loser's dedup_put"}, SRV_ABORTED);
    assert_true(r.replayed);
    assert_int_equal(r.got_fp0, winner.fingerprint[0]);
    /* one effect: the winner's event only */
    size_t n;
    Cairn__V1__Event **v = read_events(f, "run-1", 1, 100, SIZE_MAX, &n);
    assert_int_equal(n, 1);
    assert_int_equal(v[0]->payload.data[1], 1);
    assert_true(dedup_found(f, &k, &got));
    assert_memory_equal(got.response, "winner", 6);
}

void store_now_is_close_to_this_machines_clock(void **state)
{
    fx *f = *state;
    srv_error err;
    int64_t now = 0;
    ok(srv_store_now(f->st, NULL, &now, &err), &err);
    int64_t local = srv_now_us();
    /* the same machine in the tests: within a minute either way */
    assert_true(now > local - 60000000 && now < local + 60000000);
    srv_txn *t = wbegin(f);
    int64_t in_txn = 0;
    ok(srv_store_now(f->st, t, &in_txn, &err), &err);
    assert_true(in_txn >= now);
    wcommit(t);
}

/* ---- commits announced to other replicas (on_committed) ---- */

typedef struct heard {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    char run_id[64];
    uint64_t last_seq;
    int count;
} heard;

static void on_committed(void *ctx, const char *run_id, uint64_t last_seq)
{
    heard *h = ctx;
    pthread_mutex_lock(&h->mu);
    snprintf(h->run_id, sizeof h->run_id, "%s", run_id);
    h->last_seq = last_seq;
    h->count++;
    pthread_cond_signal(&h->cv);
    pthread_mutex_unlock(&h->mu);
}

/* Waits (on the condition variable, up to a deadline) until last_seq
 * reached seq. */
static bool heard_of(heard *h, uint64_t seq)
{
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += 10;
    pthread_mutex_lock(&h->mu);
    while (h->last_seq < seq && pthread_cond_timedwait(&h->cv, &h->mu, &until) == 0)
        ;
    bool got = h->last_seq >= seq;
    pthread_mutex_unlock(&h->mu);
    return got;
}

void a_replica_is_told_of_another_replicas_commits_and_not_of_rolled_back_ones(void **state)
{
    fx *f = *state;
    srv_store_close(open_replica(f)); /* skips a backend of one process */
    heard h = {.last_seq = 0};
    pthread_mutex_init(&h.mu, NULL);
    pthread_cond_init(&h.cv, NULL);
    srv_error err;
    srv_store *second = NULL;
    const srv_store_config cfg = {.data_dir = f->dir, .readers = 2, .pg_dsn = f->dsn,
                                  .on_committed = on_committed, .on_committed_ctx = &h};
    ok(srv_store_open(f->backend, &cfg, &second, &err), &err);
    insert_run(f, "run-1", 1);

    /* rolled back: never announced */
    srv_txn *t = wbegin(f);
    srv_run_head head = head_in(f, t, "run-1");
    ok(srv_store_events_insert(t, &head, make_events(f, 5, 4, 0), 5, NOW_US, &err), &err);
    srv_store_rollback(t);

    append(f, "run-1", make_events(f, 3, 4, 0), 3);
    assert_true(heard_of(&h, 3));
    pthread_mutex_lock(&h.mu);
    assert_string_equal(h.run_id, "run-1");
    assert_int_equal(h.last_seq, 3); /* not 5: the rolled back batch said nothing */
    pthread_mutex_unlock(&h.mu);
    append(f, "run-1", make_events(f, 2, 4, 0), 2);
    assert_true(heard_of(&h, 5));
    srv_store_close(second);
    pthread_cond_destroy(&h.cv);
    pthread_mutex_destroy(&h.mu);
}
