/* Contract: idempotency records and transactions. */
#include "contract.h"

#include <string.h>

/* ---- idempotency records ---- */

void dedup_put_in_a_transaction_is_visible_after_commit(void **state)
{
    fx *f = *state;
    insert_run(f, "run-1", 1);
    srv_error err;
    srv_dedup_key k = {"run-1", "AppendEvents", "key-1"};
    srv_dedup_record rec = record_of("\x08\x01\x10\x03 response"), got;
    rec.response_len += 1; /* with its NUL: binary, not text */
    assert_false(dedup_found(f, &k, &got));

    srv_txn *t = wbegin(f);
    ok(srv_store_dedup_put(t, &k, &rec, NOW_US, &err), &err);
    bool found = false;
    ok(srv_store_dedup_get(t, f->a, &k, &got, &found, &err), &err);
    assert_true(found); /* the writer sees its own */
    assert_false(dedup_found(f, &k, &got)); /* readers do not, yet */
    wcommit(t);

    assert_true(dedup_found(f, &k, &got));
    assert_memory_equal(got.fingerprint, rec.fingerprint, 32);
    assert_int_equal(got.response_len, rec.response_len);
    assert_memory_equal(got.response, rec.response, rec.response_len);
}

void dedup_records_are_scoped_by_run_method_and_key(void **state)
{
    fx *f = *state;
    insert_run(f, "run-1", 1);
    insert_run(f, "run-2", 1);
    srv_error err;
    srv_dedup_key k = {"run-1", "AppendEvents", "key-1"};
    srv_dedup_record rec = record_of("r"), got;
    srv_txn *t = wbegin(f);
    ok(srv_store_dedup_put(t, &k, &rec, NOW_US, &err), &err);
    wcommit(t);
    srv_dedup_key other_run = {"run-2", "AppendEvents", "key-1"},
                  other_method = {"run-1", "CreateRun", "key-1"},
                  other_key = {"run-1", "AppendEvents", "key-2"};
    assert_false(dedup_found(f, &other_run, &got));
    assert_false(dedup_found(f, &other_method, &got));
    assert_false(dedup_found(f, &other_key, &got));
    assert_true(dedup_found(f, &k, &got));

    /* the same key in another scope is a record of its own */
    srv_dedup_record rec2 = record_of("second");
    t = wbegin(f);
    ok(srv_store_dedup_put(t, &other_run, &rec2, NOW_US, &err), &err);
    ok(srv_store_dedup_put(t, &other_method, &rec2, NOW_US, &err), &err);
    wcommit(t);
    assert_true(dedup_found(f, &other_method, &got));
    assert_memory_equal(got.response, "second", 6);
    assert_true(dedup_found(f, &k, &got));
    assert_int_equal(got.response_len, 1);
    assert_memory_equal(got.response, "r", 1);
}

void dedup_record_with_empty_response_round_trips(void **state)
{
    fx *f = *state;
    insert_run(f, "run-1", 1);
    srv_error err;
    srv_dedup_key k = {"run-1", "ReleaseWorker", "key-1"};
    srv_dedup_record rec = record_of(""), got;
    rec.response = NULL;
    srv_txn *t = wbegin(f);
    ok(srv_store_dedup_put(t, &k, &rec, NOW_US, &err), &err);
    wcommit(t);
    assert_true(dedup_found(f, &k, &got));
    assert_int_equal(got.response_len, 0);
    assert_memory_equal(got.fingerprint, rec.fingerprint, 32);
}

void dedup_put_of_an_existing_key_is_aborted(void **state)
{
    fx *f = *state;
    insert_run(f, "run-1", 1);
    srv_error err;
    srv_dedup_key k = {"run-1", "AppendEvents", "key-1"};
    srv_dedup_record first = record_of("first"), second = record_of("second"), got;
    second.fingerprint[0] ^= 1;
    srv_txn *t = wbegin(f);
    ok(srv_store_dedup_put(t, &k, &first, NOW_US, &err), &err);
    wcommit(t);

    t = wbegin(f);
    ok(srv_store_savepoint(t, &err), &err);
    fails_with(srv_store_dedup_put(t, &k, &second, NOW_US + 1, &err), &err, SRV_ABORTED);
    srv_store_rollback_to(t);
    wcommit(t);
    assert_true(dedup_found(f, &k, &got));
    assert_memory_equal(got.fingerprint, first.fingerprint, 32);
    assert_int_equal(got.response_len, 5);
    assert_memory_equal(got.response, "first", 5);
}

/* ---- transactions ---- */

void reads_see_committed_data_only(void **state)
{
    fx *f = *state;
    insert_run(f, "run-1", 1);
    srv_error err;
    srv_txn *t = wbegin(f);
    srv_run_head h = head_in(f, t, "run-1");
    ok(srv_store_events_insert(t, &h, make_events(f, 2, 4, 0), 2, NOW_US, &err), &err);
    assert_int_equal(head_in(f, t, "run-1").next_seq, 3); /* the writer sees its own */

    size_t n = 99;
    read_events(f, "run-1", 1, 100, SIZE_MAX, &n);
    assert_int_equal(n, 0);
    assert_int_equal(head_of(f, "run-1").next_seq, 1);
    wcommit(t);
    read_events(f, "run-1", 1, 100, SIZE_MAX, &n);
    assert_int_equal(n, 2);
    assert_int_equal(head_of(f, "run-1").next_seq, 3);
}

/* One consistent state for the snapshot's whole life, from the moment it
 * was opened: a commit after that stays invisible to it, whether or not
 * it had read anything yet. */
void a_read_snapshot_opened_before_a_commit_does_not_see_it(void **state)
{
    fx *f = *state;
    insert_run(f, "run-1", 1);
    srv_txn *untouched = rbegin(f); /* nothing read before the commit */
    srv_txn *reading = rbegin(f);
    assert_int_equal(head_in(f, reading, "run-1").next_seq, 1);

    append(f, "run-1", make_events(f, 2, 4, 0), 2);
    insert_run(f, "run-2", 1);

    srv_txn *snaps[] = {untouched, reading};
    for (size_t i = 0; i < 2; i++) {
        srv_error err;
        srv_run_head h = head_in(f, snaps[i], "run-1");
        if (h.next_seq != 1)
            fail_msg("snapshot %zu sees the later commit: next_seq %llu", i,
                     (unsigned long long)h.next_seq);
        Cairn__V1__Event **v;
        size_t n = 99;
        ok(srv_store_events_read(snaps[i], f->a, &h, 1, 100, SIZE_MAX, &v, &n, &err), &err);
        assert_int_equal(n, 0);
        bool found = true;
        ok(srv_store_run_find(snaps[i], f->a, "run-2", &h, &found, &err), &err);
        assert_false(found);
        srv_store_read_end(snaps[i]);
    }
    assert_int_equal(head_of(f, "run-1").next_seq, 3);
}

/* The ledger's path for a failing mutation of a batch: its event and its
 * idempotency record go, the batch's other mutations stay. */
void rollback_to_savepoint_drops_event_and_dedup_record_of_that_mutation_only(void **state)
{
    fx *f = *state;
    insert_run(f, "run-1", 1);
    srv_error err;
    srv_dedup_key dropped = {"run-1", "AppendEvents", "dropped"};
    srv_dedup_key kept = {"run-1", "AppendEvents", "kept"};
    srv_dedup_record rec = record_of("resp"), got;

    srv_txn *t = wbegin(f);
    ok(srv_store_savepoint(t, &err), &err);
    srv_run_head h = head_in(f, t, "run-1");
    ok(srv_store_events_insert(t, &h, make_events(f, 3, 4, 1), 3, NOW_US, &err), &err);
    ok(srv_store_dedup_put(t, &dropped, &rec, NOW_US, &err), &err);
    srv_store_rollback_to(t);

    ok(srv_store_savepoint(t, &err), &err);
    h = head_in(f, t, "run-1");
    assert_int_equal(h.next_seq, 1); /* the dropped seqs are reused: no gap */
    ok(srv_store_events_insert(t, &h, make_events(f, 2, 4, 2), 2, NOW_US, &err), &err);
    ok(srv_store_dedup_put(t, &kept, &rec, NOW_US, &err), &err);
    ok(srv_store_release(t, &err), &err);
    wcommit(t);

    assert_false(dedup_found(f, &dropped, &got));
    assert_true(dedup_found(f, &kept, &got));
    size_t n;
    Cairn__V1__Event **v = read_events(f, "run-1", 1, 100, SIZE_MAX, &n);
    assert_int_equal(n, 2);
    assert_int_equal(v[0]->seq, 1);
    assert_int_equal(v[0]->payload.data[1], 2); /* from the kept batch */
    assert_int_equal(v[1]->seq, 2);
    assert_int_equal(head_of(f, "run-1").next_seq, 3);
}

/* Every mutation of a batch reads the run's head again (the PostgreSQL
 * backend answers from what it read and wrote in the transaction). */
void a_head_read_again_in_a_transaction_shows_its_own_appends_and_completions(void **state)
{
    fx *f = *state;
    insert_run(f, "run-1", 2);
    srv_error err;
    srv_txn *t = wbegin(f);
    ok(srv_store_savepoint(t, &err), &err);
    srv_run_head h = head_in(f, t, "run-1");
    ok(srv_store_events_insert(t, &h, make_events(f, 3, 4, 1), 3, NOW_US, &err), &err);
    ok(srv_store_release(t, &err), &err);

    ok(srv_store_savepoint(t, &err), &err);
    h = head_in(f, t, "run-1");
    assert_int_equal(h.next_seq, 4);
    ok(srv_store_events_insert(t, &h, make_events(f, 2, 4, 2), 2, NOW_US, &err), &err);
    ok(srv_store_worker_complete(t, &h, "w1", 5, &err), &err);
    ok(srv_store_release(t, &err), &err);

    ok(srv_store_savepoint(t, &err), &err);
    h = head_in(f, t, "run-1");
    assert_int_equal(h.next_seq, 6);
    assert_int_equal(h.n_completed, 1);
    assert_string_equal(h.run_id, "run-1");
    srv_store_rollback_to(t); /* nothing written since the savepoint */
    h = head_in(f, t, "run-1");
    assert_int_equal(h.next_seq, 6);
    wcommit(t);
    h = head_of(f, "run-1");
    assert_int_equal(h.next_seq, 6);
    assert_int_equal(h.n_completed, 1);
}

void rollback_of_a_whole_transaction_leaves_nothing(void **state)
{
    fx *f = *state;
    srv_error err;
    srv_dedup_key k = {"run-1", "CreateRun", "key-1"};
    srv_dedup_record rec = record_of("resp"), got;
    char *workers[] = {"w0", "w1"};
    int64_t ref;
    srv_txn *t = wbegin(f);
    ok(srv_store_run_insert(t, "run-1", workers, 2, NULL, 0, NOW_US, &ref, &err), &err);
    srv_run_head h = head_in(f, t, "run-1");
    ok(srv_store_events_insert(t, &h, make_events(f, 3, 4, 0), 3, NOW_US, &err), &err);
    ok(srv_store_dedup_put(t, &k, &rec, NOW_US, &err), &err);
    ok(srv_store_worker_complete(t, &h, "w0", 3, &err), &err);
    const srv_lease_rec l = {true, "lease", "holder", 1, NOW_US + 1};
    ok(srv_store_lease_put(t, &h, "w1", &l, &err), &err);
    srv_store_rollback(t);

    srv_run_rec run;
    bool found = true;
    srv_run_rec *list = NULL;
    size_t n = 99;
    t = rbegin(f);
    ok(srv_store_run_get(t, f->a, "run-1", &run, &found, &err), &err);
    assert_false(found);
    ok(srv_store_runs_list(t, f->a, 0, "", 10, &list, &n, &err), &err);
    assert_int_equal(n, 0);
    srv_store_read_end(t);
    assert_false(dedup_found(f, &k, &got));

    /* and the store is usable afterwards: the same run can be created */
    insert_run(f, "run-1", 2);
    h = head_of(f, "run-1");
    assert_int_equal(h.next_seq, 1);
    assert_int_equal(h.n_completed, 0);
    t = rbegin(f);
    srv_lease_rec got_lease;
    ok(srv_store_lease_get(t, f->a, &h, "w1", &got_lease, &err), &err);
    assert_false(got_lease.found);
    srv_store_read_end(t);
}

void close_rolls_back_a_write_transaction_left_open(void **state)
{
    fx *f = *state;
    insert_run(f, "run-1", 1);
    srv_error err;
    srv_txn *t = wbegin(f);
    srv_run_head h = head_in(f, t, "run-1");
    ok(srv_store_events_insert(t, &h, make_events(f, 3, 4, 0), 3, NOW_US, &err), &err);
    close_store(f);

    open_store(f);
    assert_int_equal(head_of(f, "run-1").next_seq, 1);
    append(f, "run-1", make_events(f, 1, 4, 0), 1);
    assert_int_equal(head_of(f, "run-1").next_seq, 2);
}

void data_survives_close_and_reopen(void **state)
{
    fx *f = *state;
    int64_t ref = insert_run(f, "run-1", 2);
    append(f, "run-1", make_events(f, 4, 64, 3), 4);
    srv_dedup_key k = {"run-1", "AppendEvents", "key-1"};
    srv_dedup_record rec = record_of("resp"), got;
    srv_error err;
    uint8_t snapshot[300];
    memset(snapshot, 0x5a, sizeof snapshot);
    char sha[65];
    srv_txn *t = wbegin(f);
    srv_run_head h = head_in(f, t, "run-1");
    ok(srv_store_dedup_put(t, &k, &rec, NOW_US, &err), &err);
    ok(srv_store_worker_complete(t, &h, "w1", 4, &err), &err);
    const srv_lease_rec l = {true, "lease-1", "holder", 7, 0};
    ok(srv_store_lease_put(t, &h, "w0", &l, &err), &err);
    srv_blob_stage *b = link_bytes(f, t, snapshot, sizeof snapshot, sha);
    const srv_checkpoint_rec c = {"20260128_101530_123456", NOW_US, "running", 4,
                                  sizeof snapshot, sha, NULL, 0};
    ok(srv_store_checkpoint_insert(t, &h, &c, &err), &err);
    wcommit(t);
    srv_store_stage_free(b);
    close_store(f);

    open_store(f);
    srv_run_rec run;
    bool found = false;
    t = rbegin(f);
    ok(srv_store_run_get(t, f->a, "run-1", &run, &found, &err), &err);
    assert_true(found);
    assert_int_equal(run.head.ref, ref);
    assert_int_equal(run.n_workers, 2);
    assert_int_equal(run.n_labels, 3);
    assert_int_equal(run.head.next_seq, 5);
    assert_int_equal(run.head.created_us, NOW_US);
    assert_int_equal(run.head.n_completed, 1);
    assert_string_equal(run.head.latest_checkpoint_id, c.checkpoint_id);
    assert_int_equal(run.head.checkpoint_events, 4);
    srv_lease_rec got_lease;
    ok(srv_store_lease_get(t, f->a, &run.head, "w0", &got_lease, &err), &err);
    assert_true(got_lease.found);
    assert_int_equal(got_lease.fencing_token, 7);
    srv_store_read_end(t);

    size_t n;
    Cairn__V1__Event **v = read_events(f, "run-1", 1, 100, SIZE_MAX, &n);
    assert_int_equal(n, 4);
    assert_int_equal(v[3]->payload.len, 64);
    assert_true(dedup_found(f, &k, &got));
    assert_memory_equal(got.response, "resp", 4);
    uint8_t *bytes;
    size_t len;
    ok(read_blob(f, sha, 4096, &bytes, &len, &err), &err);
    assert_int_equal(len, sizeof snapshot);
    assert_memory_equal(bytes, snapshot, sizeof snapshot);

    append(f, "run-1", make_events(f, 1, 4, 0), 1);
    assert_int_equal(head_of(f, "run-1").next_seq, 6);
}

void a_write_operation_on_a_read_snapshot_fails_internal_and_writes_nothing(void **state)
{
    fx *f = *state;
    insert_run(f, "run-1", 2);
    srv_error err;
    srv_txn *t = rbegin(f);
    srv_run_head h = head_in(f, t, "run-1");
    char *workers[] = {"w0"};
    int64_t ref;
    srv_dedup_key k = {"run-1", "AppendEvents", "key-1"};
    srv_dedup_record rec = record_of("r");
    const srv_lease_rec l = {true, "lease", "holder", 1, NOW_US + 1};
    const srv_checkpoint_rec c = {"cp", NOW_US, "running", 0, 0, "00", NULL, 0};
    const srv_code got[] = {
        srv_store_savepoint(t, &err),
        srv_store_release(t, &err),
        srv_store_run_insert(t, "run-2", workers, 1, NULL, 0, NOW_US, &ref, &err),
        srv_store_events_insert(t, &h, make_events(f, 1, 4, 0), 1, NOW_US, &err),
        srv_store_worker_complete(t, &h, "w0", 1, &err),
        srv_store_lease_put(t, &h, "w0", &l, &err),
        srv_store_checkpoint_insert(t, &h, &c, &err),
        srv_store_checkpoint_delete(t, &h, "cp", &err),
        srv_store_blob_unlink(t, "00", &err),
        srv_store_dedup_put(t, &k, &rec, NOW_US, &err),
    };
    for (size_t i = 0; i < sizeof got / sizeof got[0]; i++)
        if (got[i] != SRV_INTERNAL)
            fail_msg("write operation %zu on a read snapshot gave %s", i, srv_code_name(got[i]));
    srv_blob_stage *b = stage_bytes(f, (const uint8_t *)"abc", 3, (char[65]){0});
    fails_with(srv_store_blob_link(t, b, 3, &err), &err, SRV_INTERNAL);
    /* counted like any failed call */
    srv_store_stats stats;
    srv_store_get_stats(f->st, &stats);
    assert_int_equal(stats.failures[SRV_STORE_OP_DEDUP_PUT], 1);
    assert_int_equal(stats.failures[SRV_STORE_OP_BLOB_LINK], 1);
    srv_store_stage_free(b);
    srv_store_read_end(t);

    srv_run_head after = head_of(f, "run-1");
    assert_int_equal(after.next_seq, 1);
    assert_int_equal(after.n_completed, 0);
    srv_run_rec *list;
    size_t n;
    t = rbegin(f);
    ok(srv_store_runs_list(t, f->a, 0, "", 10, &list, &n, &err), &err);
    assert_int_equal(n, 1);
    srv_lease_rec got_lease;
    ok(srv_store_lease_get(t, f->a, &after, "w0", &got_lease, &err), &err);
    assert_false(got_lease.found);
    srv_store_read_end(t);
    assert_false(dedup_found(f, &k, &rec));
}

void txn_active_holds_through_a_failed_operation_that_keeps_the_transaction(void **state)
{
    fx *f = *state;
    insert_run(f, "run-1", 1);
    srv_error err;
    srv_txn *t = wbegin(f);
    assert_true(srv_store_txn_active(t));
    srv_run_head h = head_in(f, t, "run-1");
    ok(srv_store_savepoint(t, &err), &err);
    int64_t ref;
    char *workers[] = {"w0"};
    /* a taken id: the statement fails, the transaction stays */
    fails_with(srv_store_run_insert(t, "run-1", workers, 1, NULL, 0, NOW_US, &ref, &err), &err,
               SRV_ABORTED);
    assert_true(srv_store_txn_active(t));
    srv_store_rollback_to(t);
    ok(srv_store_events_insert(t, &h, make_events(f, 1, 4, 0), 1, NOW_US, &err), &err);
    wcommit(t);
    assert_int_equal(head_of(f, "run-1").next_seq, 2);
}
