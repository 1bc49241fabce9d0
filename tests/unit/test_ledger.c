/* The ledger over a real SQLite store, with faults injected through the
 * store wrappers: what every caller of a batch is told when its commit
 * fails, how a unique-key conflict is retried, replays, the commit
 * observer, and a store that stops after a failed fsync. The writer is
 * held on a gate inside a first mutation so the next ones queue up and
 * form one batch (no sleeps). */
#include "core/domain.h"
#include "service/handlers/handlers.h"
#include "core/ledger.h"
#include "base/pbc.h"
#include "dirs.h"
#include "store/backend.h" /* to play a backend whose fsync failed */
#include "store/store.h"

#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

enum { MAX_CALLS = 8 };

typedef struct fx fx;

typedef struct call {
    fx *f;
    srv_arena *arena;
    Cairn__V1__AppendEventsRequest req;
    Cairn__V1__Event ev, *evs[1];
    char key[32];
    char payload[256];
    srv_mutation m;
    /* Filled by done. */
    bool finished;
    srv_code code;
    char msg[SRV_ERROR_MSG_MAX];
    bool replayed;
    Cairn__V1__AppendEventsResponse *resp;
} call;

struct fx {
    char dir[512];                    /* the data dir */
    srv_store *st;
    srv_ledger *ledger;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int finished;
    bool gate_open, holding;          /* the blocker's gate */
    call calls[MAX_CALLS];
    int n_grew;
    uint64_t grew_last_seq;
    int n_failed;                     /* the store's on_failed calls */
    int n_deleted;                    /* the deletion observer's calls */
    bool deleted_after_commit;        /* the run was gone when it was told */
    bool overtaken;                   /* calls[1] finished while calls[0]'s done waited */
};

static void ok(srv_code rc, const srv_error *err)
{
    if (rc != SRV_OK)
        fail_msg("expected OK, got %s: %s", srv_code_name(rc), err->msg);
}

static void observed(void *ctx, const char *run_id, uint64_t last_seq)
{
    fx *f = ctx;
    assert_string_equal(run_id, "run-1");
    pthread_mutex_lock(&f->mu);
    f->n_grew++;
    f->grew_last_seq = last_seq;
    pthread_mutex_unlock(&f->mu);
}

static int setup(void **state)
{
    fx *f = calloc(1, sizeof *f);
    if (ct_temp_dir(f->dir, sizeof f->dir, "cairn-unit-ledger") < 0)
        return -1;
    pthread_mutex_init(&f->mu, NULL);
    pthread_cond_init(&f->cv, NULL);
    srv_error err;
    srv_store_config cfg = {.data_dir = f->dir, .readers = 2};
    ok(srv_store_open("sqlite", &cfg, &f->st, &err), &err);

    /* The run every test appends to. */
    srv_arena *a = srv_arena_create();
    char *workers[] = {"w1"};
    Cairn__V1__CreateRunRequest req = CAIRN__V1__CREATE_RUN_REQUEST__INIT;
    req.run_id = "run-1";
    req.workers = workers;
    req.n_workers = 1;
    Cairn__V1__Run run;
    srv_txn *t;
    ok(srv_store_begin(f->st, &t, &err), &err);
    srv_apply ap = {t, a, 1000, NULL, NULL, 0, NULL};
    ok(srv_run_create(&ap, &req, &run, &err), &err);
    ok(srv_store_commit(t, &err), &err);
    srv_arena_destroy(a);

    ok(srv_ledger_start(f->st, 100, &f->ledger, &err), &err);
    srv_ledger_observe(f->ledger, observed, f);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fx *f = *state;
    srv_ledger_free(f->ledger);
    srv_store_close(f->st);
    for (int i = 0; i < MAX_CALLS; i++) {
        if (f->calls[i].resp)
            cairn__v1__append_events_response__free_unpacked(f->calls[i].resp, NULL);
        srv_arena_destroy(f->calls[i].arena);
    }
    ct_rmrf(f->dir);
    pthread_cond_destroy(&f->cv);
    pthread_mutex_destroy(&f->mu);
    free(f);
    return 0;
}

/* An append that first holds the writer until the test opens the gate. */
static srv_code apply_held(srv_apply *ap, const ProtobufCMessage *req, ProtobufCMessage *resp,
                           srv_error *err)
{
    fx *f = ap->ctx;
    pthread_mutex_lock(&f->mu);
    f->holding = true;
    pthread_cond_broadcast(&f->cv);
    while (!f->gate_open)
        pthread_cond_wait(&f->cv, &f->mu);
    pthread_mutex_unlock(&f->mu);
    return srv_apply_append_events(ap, req, resp, err);
}

/* On the replier thread, or the writer's. */
static void done(void *ctx, srv_code code, const srv_error *err, const uint8_t *resp, size_t len,
                 bool replayed)
{
    call *c = ctx;
    pthread_mutex_lock(&c->f->mu);
    c->code = code;
    c->replayed = replayed;
    if (code)
        snprintf(c->msg, sizeof c->msg, "%s", err->msg);
    else
        c->resp = cairn__v1__append_events_response__unpack(NULL, len, resp);
    c->finished = true;
    pthread_cond_broadcast(&c->f->cv);
    pthread_mutex_unlock(&c->f->mu);
}

/* calls[0]'s done: waits (10 s at most) for calls[1] to be answered. */
static void done_after_the_next(void *ctx, srv_code code, const srv_error *err,
                                const uint8_t *resp, size_t len, bool replayed)
{
    call *c = ctx;
    fx *f = c->f;
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += 10;
    pthread_mutex_lock(&f->mu);
    int rc = 0;
    while (!f->calls[1].finished && rc == 0)
        rc = pthread_cond_timedwait(&f->cv, &f->mu, &until);
    f->overtaken = f->calls[1].finished;
    pthread_mutex_unlock(&f->mu);
    done(ctx, code, err, resp, len, replayed);
}

/* Fills calls[i] as an append of payload under key, ready to submit. */
static call *prepare(fx *f, int i, const char *key, const char *payload, srv_apply_fn apply)
{
    call *c = &f->calls[i];
    if (c->resp)
        cairn__v1__append_events_response__free_unpacked(c->resp, NULL);
    srv_arena_destroy(c->arena);
    memset(c, 0, sizeof *c);
    c->f = f;
    c->arena = srv_arena_create();
    snprintf(c->key, sizeof c->key, "%s", key);
    cairn__v1__event__init(&c->ev);
    c->ev.type = "step";
    c->ev.worker_id = "";
    snprintf(c->payload, sizeof c->payload, "%s", payload);
    c->ev.payload.data = (uint8_t *)c->payload;
    c->ev.payload.len = strlen(c->payload);
    c->evs[0] = &c->ev;
    cairn__v1__append_events_request__init(&c->req);
    c->req.run_id = "run-1";
    c->req.idempotency_key = c->key;
    c->req.events = c->evs;
    c->req.n_events = 1;
    srv_error err;
    ok(srv_fingerprint(c->arena, &c->req.base, c->m.fingerprint, &err), &err);
    c->m.method = "AppendEvents";
    c->m.run_id = "run-1";
    c->m.key = c->key;
    c->m.request = &c->req.base;
    c->m.response = &cairn__v1__append_events_response__descriptor;
    c->m.apply = apply;
    c->m.apply_ctx = f;
    c->m.arena = c->arena;
    c->m.done = done;
    c->m.ctx = c;
    return c;
}

static void await(fx *f, call *c)
{
    pthread_mutex_lock(&f->mu);
    while (!c->finished)
        pthread_cond_wait(&f->cv, &f->mu);
    pthread_mutex_unlock(&f->mu);
}

static void submit(fx *f, call *c)
{
    srv_error err;
    ok(srv_ledger_submit(f->ledger, &c->m, &err), &err);
}


/* Submits calls[0] as a held append and waits until the writer holds. */
static void hold_writer(fx *f)
{
    submit(f, prepare(f, 0, "held", "held", apply_held));
    pthread_mutex_lock(&f->mu);
    while (!f->holding)
        pthread_cond_wait(&f->cv, &f->mu);
    pthread_mutex_unlock(&f->mu);
}

static void open_gate(fx *f)
{
    pthread_mutex_lock(&f->mu);
    f->gate_open = true;
    pthread_cond_broadcast(&f->cv);
    pthread_mutex_unlock(&f->mu);
}

/* Events in run-1's log, read through core. */
static size_t log_length(fx *f)
{
    srv_arena *a = srv_arena_create();
    Cairn__V1__ReadEventsResponse page = CAIRN__V1__READ_EVENTS_RESPONSE__INIT;
    srv_error err;
    ok(srv_events_read(f->st, a, "run-1", 1, 1000, 1 << 20, &page, &err), &err);
    size_t n = page.n_events;
    srv_arena_destroy(a);
    return n;
}

static bool key_recorded(fx *f, const char *key)
{
    srv_arena *a = srv_arena_create();
    srv_txn *t;
    srv_error err;
    ok(srv_store_read_begin(f->st, &t, &err), &err);
    srv_dedup_key k = {"run-1", "AppendEvents", key};
    srv_dedup_record rec;
    bool found = false;
    ok(srv_store_dedup_get(t, a, &k, &rec, &found, &err), &err);
    srv_store_read_end(t);
    srv_arena_destroy(a);
    return found;
}

static void failed_commit_fails_every_caller_of_the_batch_and_keeps_none_of_their_effects(
    void **state)
{
    fx *f = *state;
    hold_writer(f);
    /* The held append commits first; the three queued behind it form
     * the next batch, whose commit fails. */
    srv_store_inject_fault(f->st, SRV_STORE_OP_COMMIT, 2, SRV_UNAVAILABLE);
    for (int i = 1; i <= 3; i++) {
        char key[16], payload[16];
        snprintf(key, sizeof key, "k%d", i);
        snprintf(payload, sizeof payload, "p%d", i);
        submit(f, prepare(f, i, key, payload, srv_apply_append_events));
    }
    open_gate(f);
    for (int i = 0; i <= 3; i++)
        await(f, &f->calls[i]);

    assert_int_equal(f->calls[0].code, SRV_OK);
    for (int i = 1; i <= 3; i++) {
        assert_int_equal(f->calls[i].code, SRV_UNAVAILABLE);
        assert_non_null(strstr(f->calls[i].msg, "COMMIT failed (injected fault)"));
        assert_false(key_recorded(f, f->calls[i].key));
    }
    assert_int_equal(log_length(f), 1);
    assert_int_equal(f->n_grew, 1); /* the failed batch told no watcher */

    /* Each retried with its key applies once. */
    for (int i = 1; i <= 3; i++) {
        char key[16], payload[16];
        snprintf(key, sizeof key, "k%d", i);
        snprintf(payload, sizeof payload, "p%d", i);
        call *c = prepare(f, i, key, payload, srv_apply_append_events);
        submit(f, c);
        await(f, c);
        assert_int_equal(c->code, SRV_OK);
        assert_false(c->replayed);
        submit(f, prepare(f, i, key, payload, srv_apply_append_events));
        await(f, c);
        assert_true(c->replayed);
    }
    assert_int_equal(log_length(f), 4);
}

static void failed_statement_fails_only_its_mutation(void **state)
{
    fx *f = *state;
    hold_writer(f);
    /* In the next batch, the second append's insert fails. */
    srv_store_inject_fault(f->st, SRV_STORE_OP_EVENTS_INSERT, 3, SRV_UNAVAILABLE);
    for (int i = 1; i <= 3; i++) {
        char key[16];
        snprintf(key, sizeof key, "k%d", i);
        submit(f, prepare(f, i, key, key, srv_apply_append_events));
    }
    open_gate(f);
    for (int i = 0; i <= 3; i++)
        await(f, &f->calls[i]);
    assert_int_equal(f->calls[1].code, SRV_OK);
    assert_int_equal(f->calls[2].code, SRV_UNAVAILABLE);
    assert_int_equal(f->calls[3].code, SRV_OK);
    assert_false(key_recorded(f, "k2"));
    assert_true(key_recorded(f, "k3"));
    assert_int_equal(log_length(f), 3);
    /* Dense seqs: k3 took the seq k2 did not. */
    assert_int_equal(f->calls[3].resp->first_seq, 3);
}

/* An append whose statement fails and takes the whole transaction with
 * it, as SQLite does on an I/O error or a full disk. */
static srv_code apply_losing_the_transaction(srv_apply *ap, const ProtobufCMessage *req,
                                             ProtobufCMessage *resp, srv_error *err)
{
    (void)req;
    (void)resp;
    srv_store_rollback(ap->txn);
    return srv_fail_pushback(err, SRV_RESOURCE_EXHAUSTED, 1000,
                             "store: disk full while appending events; retry later");
}

static void lost_transaction_fails_every_caller_of_the_batch_and_nothing_commits_by_itself(
    void **state)
{
    fx *f = *state;
    hold_writer(f);
    submit(f, prepare(f, 1, "k1", "p1", srv_apply_append_events));
    submit(f, prepare(f, 2, "k2", "p2", apply_losing_the_transaction));
    submit(f, prepare(f, 3, "k3", "p3", srv_apply_append_events));
    open_gate(f);
    for (int i = 0; i <= 3; i++)
        await(f, &f->calls[i]);

    assert_int_equal(f->calls[0].code, SRV_OK);
    for (int i = 1; i <= 3; i++) {
        assert_int_equal(f->calls[i].code, SRV_RESOURCE_EXHAUSTED);
        assert_non_null(strstr(f->calls[i].msg, "disk full"));
        assert_false(key_recorded(f, f->calls[i].key));
    }
    assert_int_equal(log_length(f), 1); /* k3 did not commit on its own */
    assert_int_equal(f->n_grew, 1);

    /* Each retried with its key applies once. */
    for (int i = 1; i <= 3; i += 2) {
        char key[8];
        snprintf(key, sizeof key, "k%d", i);
        call *c = prepare(f, i, key, "again", srv_apply_append_events);
        submit(f, c);
        await(f, c);
        assert_int_equal(c->code, SRV_OK);
        assert_false(c->replayed);
    }
    assert_int_equal(log_length(f), 3);
}

static void conflict_with_another_process_is_retried_once(void **state)
{
    fx *f = *state;
    srv_store_stats before, after;
    srv_store_get_stats(f->st, &before);
    srv_store_inject_fault(f->st, SRV_STORE_OP_EVENTS_INSERT, 1, SRV_ABORTED);
    call *c = prepare(f, 1, "k1", "p1", srv_apply_append_events);
    submit(f, c);
    await(f, c);
    assert_int_equal(c->code, SRV_OK);
    assert_int_equal(c->resp->first_seq, 1);
    assert_int_equal(log_length(f), 1);
    srv_store_get_stats(f->st, &after);
    assert_int_equal(after.calls[SRV_STORE_OP_EVENTS_INSERT] -
                         before.calls[SRV_STORE_OP_EVENTS_INSERT], 2);
    assert_int_equal(after.calls[SRV_STORE_OP_SAVEPOINT] - before.calls[SRV_STORE_OP_SAVEPOINT],
                     2);
}

static void second_conflict_is_not_retried_again(void **state)
{
    fx *f = *state;
    /* The first attempt conflicts on the insert, the second on its
     * idempotency record. */
    srv_store_inject_fault(f->st, SRV_STORE_OP_EVENTS_INSERT, 1, SRV_ABORTED);
    srv_store_inject_fault(f->st, SRV_STORE_OP_DEDUP_PUT, 1, SRV_ABORTED);
    call *c = prepare(f, 1, "k1", "p1", srv_apply_append_events);
    submit(f, c);
    await(f, c);
    assert_int_equal(c->code, SRV_ABORTED);
    assert_int_equal(log_length(f), 0);
    assert_false(key_recorded(f, "k1"));
}

static void same_key_replays_and_another_request_under_it_is_already_exists(void **state)
{
    fx *f = *state;
    call *c = prepare(f, 1, "k1", "p1", srv_apply_append_events);
    submit(f, c);
    await(f, c);
    assert_int_equal(c->code, SRV_OK);
    assert_false(c->replayed);
    assert_int_equal(f->n_grew, 1);
    assert_int_equal(f->grew_last_seq, 1);

    submit(f, prepare(f, 1, "k1", "p1", srv_apply_append_events));
    await(f, c);
    assert_int_equal(c->code, SRV_OK);
    assert_true(c->replayed);
    assert_true(c->resp->replayed);
    assert_int_equal(c->resp->first_seq, 1);
    assert_int_equal(f->n_grew, 1); /* a replay grows no log */

    submit(f, prepare(f, 1, "k1", "another payload", srv_apply_append_events));
    await(f, c);
    assert_int_equal(c->code, SRV_ALREADY_EXISTS);
    assert_non_null(strstr(c->msg, "idempotency_key: reused with a different AppendEvents request"));
    assert_int_equal(log_length(f), 1);
}

/* Plays a backend whose fsync failed while this mutation wrote; told
 * twice, as a backend may be. */
static srv_code apply_fsync_failed(srv_apply *ap, const ProtobufCMessage *req,
                                   ProtobufCMessage *resp, srv_error *err)
{
    (void)req;
    (void)resp;
    srv_fail(err, SRV_UNAVAILABLE, "store: syncing /data/blobs/ab failed: Input/output error");
    srv_store_fail_stop(ap->txn->store, err);
    srv_store_fail_stop(ap->txn->store, err);
    return err->code;
}

static void store_failed(void *ctx, const srv_error *why)
{
    fx *f = ctx;
    assert_non_null(strstr(why->msg, "/data/blobs/ab"));
    pthread_mutex_lock(&f->mu);
    f->n_failed++;
    pthread_mutex_unlock(&f->mu);
}

static void store_stopped_by_a_failed_fsync_fails_its_whole_batch_and_every_later_write(
    void **state)
{
    fx *f = *state;
    f->st->on_failed = store_failed; /* as srv_store_open sets it from the config */
    f->st->on_failed_ctx = f;
    hold_writer(f);
    submit(f, prepare(f, 1, "k1", "p1", srv_apply_append_events));
    submit(f, prepare(f, 2, "k2", "p2", apply_fsync_failed));
    submit(f, prepare(f, 3, "k3", "p3", srv_apply_append_events));
    open_gate(f);
    for (int i = 0; i <= 3; i++)
        await(f, &f->calls[i]);

    assert_int_equal(f->calls[0].code, SRV_OK); /* its batch committed before */
    for (int i = 1; i <= 3; i++) {
        assert_int_equal(f->calls[i].code, SRV_UNAVAILABLE);
        assert_non_null(strstr(f->calls[i].msg, "no more writes after a failed fsync"));
        assert_false(key_recorded(f, f->calls[i].key));
    }
    assert_int_equal(log_length(f), 1);
    assert_int_equal(f->n_grew, 1);
    assert_int_equal(f->n_failed, 1);

    /* Later writes are refused; reads go on. */
    call *c = prepare(f, 1, "k1", "p1", srv_apply_append_events);
    submit(f, c);
    await(f, c);
    assert_int_equal(c->code, SRV_UNAVAILABLE);
    assert_non_null(strstr(c->msg, "/data/blobs/ab"));
    srv_error err;
    srv_blob_stage *b = NULL;
    assert_int_equal(srv_store_stage_begin(f->st, &b, &err), SRV_UNAVAILABLE);
    assert_null(b);
    assert_int_equal(log_length(f), 1);
    assert_int_equal(f->n_failed, 1);
}

static void queue_bounded_by_bytes_refuses_a_write_past_it_while_the_writer_is_held(
    void **state)
{
    fx *f = *state;
    hold_writer(f); /* the held one is the writer's, no longer queued */
    char big[200];
    memset(big, 'b', sizeof big - 1);
    big[sizeof big - 1] = 0;
    call *small = prepare(f, 1, "small", "s", srv_apply_append_events);
    size_t small_bytes = protobuf_c_message_get_packed_size(small->m.request);
    /* Room for the small one and a bit, not for the big one as well. */
    srv_ledger_limit_bytes(f->ledger, small_bytes + 100);
    submit(f, small);
    call *over = prepare(f, 2, "big", big, srv_apply_append_events);
    srv_error err;
    srv_code rc = srv_ledger_submit(f->ledger, &over->m, &err);
    /* The writer goes on before any assert, so a failure cannot hang. */
    open_gate(f);
    await(f, &f->calls[0]);
    await(f, &f->calls[1]);
    if (rc == SRV_OK)
        await(f, over);
    /* Under the count bound (100) by far: the bytes refused it. */
    assert_int_equal(rc, SRV_RESOURCE_EXHAUSTED);
    assert_int_equal(err.pushback_ms, 100);
    assert_non_null(strstr(err.msg, "bytes of writes queued"));
    assert_int_equal(f->calls[1].code, SRV_OK);
    /* The queue drained: the same write is taken (alone in the queue,
     * though over the bound by itself). */
    submit(f, over);
    await(f, over);
    assert_int_equal(over->code, SRV_OK);
    assert_int_equal(log_length(f), 3);
}

static bool run_exists(fx *f)
{
    srv_arena *a = srv_arena_create();
    Cairn__V1__Run run;
    srv_error err;
    srv_code rc = srv_run_read(f->st, a, "run-1", &run, &err);
    srv_arena_destroy(a);
    return rc == SRV_OK;
}

static void deletion_observed(void *ctx, const char *run_id)
{
    fx *f = ctx;
    assert_string_equal(run_id, "run-1");
    bool gone = !run_exists(f); /* read from a snapshot: committed */
    pthread_mutex_lock(&f->mu);
    f->n_deleted++;
    f->deleted_after_commit = gone;
    pthread_mutex_unlock(&f->mu);
}

static srv_code apply_delete(srv_apply *ap, const ProtobufCMessage *req, ProtobufCMessage *resp,
                             srv_error *err)
{
    (void)req;
    assert_null(resp);
    bool existed = false;
    srv_code rc = srv_run_delete(ap, "run-1", &existed, err);
    assert_true(rc || existed);
    return rc;
}

/* cairnd's own mutations (the lifecycle sweep): no key, no response, no
 * idempotency record; the runs they delete are told after the commit. */
static void a_mutation_without_a_key_records_nothing_and_its_deletions_are_told_after_commit(
    void **state)
{
    fx *f = *state;
    srv_ledger_observe_deletions(f->ledger, deletion_observed, f);
    call *c = prepare(f, 0, "unused", "unused", apply_delete);
    c->m.key = NULL;
    c->m.request = NULL;
    c->m.response = NULL;
    srv_store_stats before;
    srv_store_get_stats(f->st, &before);
    submit(f, c);
    await(f, c);
    assert_int_equal(c->code, SRV_OK);
    srv_store_stats after;
    srv_store_get_stats(f->st, &after);
    assert_int_equal(after.calls[SRV_STORE_OP_DEDUP_GET], before.calls[SRV_STORE_OP_DEDUP_GET]);
    assert_int_equal(after.calls[SRV_STORE_OP_DEDUP_PUT], before.calls[SRV_STORE_OP_DEDUP_PUT]);
    assert_int_equal(after.calls[SRV_STORE_OP_RUN_DELETE],
                     before.calls[SRV_STORE_OP_RUN_DELETE] + 1);
    assert_int_equal(f->n_deleted, 1);
    assert_true(f->deleted_after_commit);
    assert_false(run_exists(f));
}

/* Answering a batch's callers does not hold the writer: while the first
 * batch's caller is still being answered, the next batch commits and is
 * answered. */
static void a_slow_answer_does_not_hold_back_the_next_batch(void **state)
{
    fx *f = *state;
    hold_writer(f);
    f->calls[0].m.done = done_after_the_next; /* read once its batch ends */
    submit(f, prepare(f, 1, "next", "next", srv_apply_append_events));
    open_gate(f);
    await(f, &f->calls[0]);
    await(f, &f->calls[1]);
    assert_true(f->overtaken);
    assert_int_equal(f->calls[0].code, SRV_OK);
    assert_int_equal(f->calls[1].code, SRV_OK);
    assert_int_equal(f->calls[0].resp->first_seq, 1);
    assert_int_equal(f->calls[1].resp->first_seq, 2);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(
            a_mutation_without_a_key_records_nothing_and_its_deletions_are_told_after_commit,
            setup, teardown),
        cmocka_unit_test_setup_teardown(
            failed_commit_fails_every_caller_of_the_batch_and_keeps_none_of_their_effects, setup,
            teardown),
        cmocka_unit_test_setup_teardown(failed_statement_fails_only_its_mutation, setup, teardown),
        cmocka_unit_test_setup_teardown(a_slow_answer_does_not_hold_back_the_next_batch, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(
            lost_transaction_fails_every_caller_of_the_batch_and_nothing_commits_by_itself, setup,
            teardown),
        cmocka_unit_test_setup_teardown(conflict_with_another_process_is_retried_once, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(second_conflict_is_not_retried_again, setup, teardown),
        cmocka_unit_test_setup_teardown(
            same_key_replays_and_another_request_under_it_is_already_exists, setup, teardown),
        cmocka_unit_test_setup_teardown(
            store_stopped_by_a_failed_fsync_fails_its_whole_batch_and_every_later_write, setup,
            teardown),
        cmocka_unit_test_setup_teardown(
            queue_bounded_by_bytes_refuses_a_write_past_it_while_the_writer_is_held, setup,
            teardown),
    };
    return cmocka_run_group_tests_name("ledger", tests, NULL, NULL);
}
