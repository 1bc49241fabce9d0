/* Contract: a batch read ahead (srv_store_prefetch). Whatever a backend
 * reads ahead or holds back, the batch sees what it would have seen
 * without: the records there before it, its own records, nothing of a
 * mutation rolled back to its savepoint; and a replica's record written
 * before the batch's runs were locked. */
#include "contract.h"

#include <pthread.h>
#include <stdio.h>
#include <string.h>

/* One append mutation as the ledger applies it: savepoint, the key not
 * there, the run's head, n events, the record; then release, or roll
 * back to the savepoint when undo. */
static void apply_append(fx *f, srv_txn *t, const srv_dedup_key *k, size_t n, uint8_t tag,
                         bool undo)
{
    srv_error err;
    srv_dedup_record rec = record_of(k->key), got;
    bool found = true;
    ok(srv_store_savepoint(t, &err), &err);
    ok(srv_store_dedup_get(t, f->a, k, &got, &found, &err), &err);
    assert_false(found);
    srv_run_head h = head_in(f, t, k->run_id);
    ok(srv_store_events_insert(t, &h, make_events(f, n, 4, tag), n, NOW_US, &err), &err);
    ok(srv_store_dedup_put(t, k, &rec, NOW_US, &err), &err);
    if (undo)
        srv_store_rollback_to(t);
    else
        ok(srv_store_release(t, &err), &err);
}

void a_batch_read_ahead_sees_old_records_its_own_and_none_rolled_back(void **state)
{
    fx *f = *state;
    insert_run(f, "run-1", 1);
    insert_run(f, "run-2", 1);
    const srv_dedup_key old = {"run-1", "AppendEvents", "old"},
                        new1 = {"run-1", "AppendEvents", "new-1"},
                        new2 = {"run-2", "AppendEvents", "new-2"},
                        undone = {"run-1", "AppendEvents", "undone"},
                        again = {"run-1", "AppendEvents", "again"};
    srv_error err;
    srv_dedup_record rec = record_of("old response"), got;
    srv_txn *t = wbegin(f);
    ok(srv_store_dedup_put(t, &old, &rec, NOW_US, &err), &err);
    wcommit(t);

    const srv_dedup_key keys[] = {new2, old, new1, undone, again,
                                  {"no-such-run", "CreateRun", "c"},
                                  {"run-2", "Sweep", NULL},
                                  {NULL, "Sweep", NULL}};
    t = wbegin(f);
    ok(srv_store_prefetch(t, keys, sizeof keys / sizeof keys[0], &err), &err);
    bool found = false;
    ok(srv_store_dedup_get(t, f->a, &old, &got, &found, &err), &err);
    assert_true(found);
    assert_int_equal(got.response_len, rec.response_len);
    assert_memory_equal(got.response, rec.response, rec.response_len);

    apply_append(f, t, &new1, 2, 10, false);
    apply_append(f, t, &new2, 3, 20, false);
    apply_append(f, t, &undone, 1, 30, true);
    apply_append(f, t, &again, 1, 40, false);
    ok(srv_store_dedup_get(t, f->a, &new1, &got, &found, &err), &err);
    assert_true(found); /* its own, not sent yet maybe */
    assert_memory_equal(got.response, "new-1", 5);
    ok(srv_store_dedup_get(t, f->a, &undone, &got, &found, &err), &err);
    assert_false(found);
    assert_int_equal(head_in(f, t, "run-1").next_seq, 4);
    wcommit(t);

    size_t n;
    Cairn__V1__Event **v = read_events(f, "run-1", 1, 100, SIZE_MAX, &n);
    assert_int_equal(n, 3); /* new-1's two, again's one; undone's none */
    assert_int_equal(v[0]->payload.data[1], 10);
    assert_int_equal(v[1]->payload.data[1], 11);
    assert_int_equal(v[2]->payload.data[1], 40);
    assert_int_equal(head_of(f, "run-1").next_seq, 4);
    v = read_events(f, "run-2", 1, 100, SIZE_MAX, &n);
    assert_int_equal(n, 3);
    assert_int_equal(v[2]->seq, 3);
    assert_int_equal(head_of(f, "run-2").next_seq, 4);
    assert_true(dedup_found(f, &new1, &got));
    assert_true(dedup_found(f, &new2, &got));
    assert_true(dedup_found(f, &again, &got));
    assert_false(dedup_found(f, &undone, &got));
}

/* ---- with another replica ---- */

typedef struct second_batch {
    srv_store *st;
    const srv_dedup_key *key;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool started;
    bool found;               /* its prefetched batch found the first's record */
    char response[16];        /* the record's response found */
    srv_code rc;
    char msg[700];
} second_batch;

static void *run_second(void *arg)
{
    second_batch *b = arg;
    srv_arena *a = srv_arena_create();
    srv_error err;
    srv_txn *t = NULL;
    srv_dedup_record got;
    pthread_mutex_lock(&b->mu);
    b->started = true;
    pthread_cond_signal(&b->cv);
    pthread_mutex_unlock(&b->mu);
    srv_code rc = srv_store_begin(b->st, &t, &err);
    if (!rc) /* waits for the first batch's locks */
        rc = srv_store_prefetch(t, b->key, 1, &err);
    if (!rc)
        rc = srv_store_dedup_get(t, a, b->key, &got, &b->found, &err);
    if (b->found && got.response_len < sizeof b->response)
        memcpy(b->response, got.response, got.response_len);
    if (!rc)
        rc = srv_store_commit(t, &err);
    else if (t)
        srv_store_rollback(t);
    if ((b->rc = rc) != SRV_OK)
        snprintf(b->msg, sizeof b->msg, "%s", err.msg);
    srv_arena_destroy(a);
    return NULL;
}

void a_batch_read_ahead_on_a_run_another_replica_writes_sees_its_committed_record(
    void **state)
{
    fx *f = *state;
    srv_store *second = open_replica(f);
    insert_run(f, "run-1", 1);
    const srv_dedup_key k = {"run-1", "AppendEvents", "the-key"};
    srv_error err;

    srv_txn *t = wbegin(f);
    ok(srv_store_prefetch(t, &k, 1, &err), &err);
    apply_append(f, t, &k, 1, 1, false);

    second_batch b = {.st = second, .key = &k};
    pthread_mutex_init(&b.mu, NULL);
    pthread_cond_init(&b.cv, NULL);
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, run_second, &b), 0);
    pthread_mutex_lock(&b.mu);
    while (!b.started)
        pthread_cond_wait(&b.cv, &b.mu);
    pthread_mutex_unlock(&b.mu);
    /* Before or after the second batch reads ahead, it must find this. */
    wcommit(t);
    pthread_join(th, NULL);
    pthread_cond_destroy(&b.cv);
    pthread_mutex_destroy(&b.mu);
    srv_store_close(second);

    if (b.rc)
        fail_msg("the second batch failed: %s: %s", srv_code_name(b.rc), b.msg);
    assert_true(b.found);
    assert_string_equal(b.response, "the-key"); /* the first batch's record */
    assert_int_equal(head_of(f, "run-1").next_seq, 2);
}
