/* Contract: the data lifecycle (ops version 3): deleting a run, the
 * completion time retention sweeps by, and expiring idempotency records,
 * those of a run that is gone included. */
#include "contract.h"

#include <string.h>

/* As core/ deletes a run: its checkpoints with their snapshot references
 * first, then the run. */
static void delete_run_in(fx *f, srv_txn *t, const char *run_id)
{
    srv_error err;
    srv_run_head h = head_in(f, t, run_id);
    srv_checkpoint_rec *c;
    size_t n;
    ok(srv_store_checkpoints_list(t, f->a, &h, "", 100, false, &c, &n, &err), &err);
    for (size_t i = 0; i < n; i++) {
        ok(srv_store_checkpoint_delete(t, &h, c[i].checkpoint_id, &err), &err);
        ok(srv_store_blob_unlink(t, c[i].sha256, &err), &err);
    }
    ok(srv_store_run_delete(t, &h, &err), &err);
}

/* A checkpoint of run_id whose snapshot is `data` (a stored copy of the
 * same content gains a reference), in a transaction of its own; its sha256
 * goes to sha. */
static void checkpoint_with(fx *f, const char *run_id, const char *checkpoint_id,
                            const char *data, char sha[65])
{
    srv_error err;
    srv_txn *t = wbegin(f);
    srv_blob_stage *b = link_bytes(f, t, (const uint8_t *)data, strlen(data), sha);
    srv_run_head h = head_in(f, t, run_id);
    srv_checkpoint_rec c = {.checkpoint_id = checkpoint_id, .created_us = NOW_US,
                            .run_state = "running", .events_count = 1,
                            .snapshot_size = strlen(data), .sha256 = sha};
    ok(srv_store_checkpoint_insert(t, &h, &c, &err), &err);
    wcommit(t);
    srv_store_stage_free(b);
}

/* Everything a run can hold: events, a completed worker, a lease, an
 * idempotency record, a checkpoint. */
static void fill_run(fx *f, const char *run_id, const char *snapshot, char sha[65])
{
    srv_error err;
    insert_run(f, run_id, 2);
    append(f, run_id, make_events(f, 3, 8, 1), 3);
    srv_txn *t = wbegin(f);
    srv_run_head h = head_in(f, t, run_id);
    const srv_lease_rec l = {true, "lease-a", "host-1", 1, NOW_US + 1000};
    ok(srv_store_lease_put(t, &h, "w1", &l, &err), &err);
    ok(srv_store_worker_complete(t, &h, "w0", 2, &err), &err);
    srv_dedup_key k = {run_id, "AppendEvents", "key-1"};
    srv_dedup_record rec = record_of("r");
    ok(srv_store_dedup_put(t, &k, &rec, NOW_US, &err), &err);
    wcommit(t);
    checkpoint_with(f, run_id, "20260128_101530_123456", snapshot, sha);
}

void run_delete_leaves_no_row_of_the_run_and_other_runs_whole(void **state)
{
    fx *f = *state;
    srv_error err;
    char sha1[65], sha2[65];
    fill_run(f, "run-1", "the same bytes", sha1);
    fill_run(f, "run-2", "the same bytes", sha2);
    assert_string_equal(sha1, sha2); /* one content, two references */

    srv_txn *t = wbegin(f);
    delete_run_in(f, t, "run-1");
    bool found = true;
    srv_run_head gone;
    ok(srv_store_run_find(t, f->a, "run-1", &gone, &found, &err), &err);
    assert_false(found); /* the writer sees its own deletion */
    wcommit(t);

    srv_dedup_record got;
    srv_dedup_key k1 = {"run-1", "AppendEvents", "key-1"}, k2 = {"run-2", "AppendEvents", "key-1"};
    assert_false(dedup_found(f, &k1, &got));
    assert_true(dedup_found(f, &k2, &got));
    uint8_t *bytes;
    size_t len;
    ok(read_blob(f, sha2, 4, &bytes, &len, &err), &err); /* run-2 still references it */
    assert_int_equal(len, strlen("the same bytes"));

    /* run-2 is whole */
    size_t n;
    read_events(f, "run-2", 1, 10, 1 << 20, &n);
    assert_int_equal(n, 3);
    t = rbegin(f);
    srv_run_head h2 = head_in(f, t, "run-2");
    srv_checkpoint_rec c;
    ok(srv_store_checkpoint_get(t, f->a, &h2, "", &c, &found, &err), &err);
    assert_true(found);
    srv_lease_rec l;
    ok(srv_store_lease_get(t, f->a, &h2, "w1", &l, &err), &err);
    assert_true(l.found);
    srv_store_read_end(t);
    assert_int_equal(h2.n_completed, 1);

    /* run-1 made again starts from nothing */
    insert_run(f, "run-1", 2);
    t = rbegin(f);
    srv_run_head h = head_in(f, t, "run-1");
    assert_int_equal(h.next_seq, 1);
    assert_int_equal(h.n_completed, 0);
    assert_string_equal(h.latest_checkpoint_id, "");
    ok(srv_store_checkpoint_get(t, f->a, &h, "", &c, &found, &err), &err);
    assert_false(found);
    ok(srv_store_lease_get(t, f->a, &h, "w1", &l, &err), &err);
    assert_false(l.found);
    srv_completion *done;
    ok(srv_store_completions(t, f->a, &h, &done, &n, &err), &err);
    assert_int_equal(n, 0);
    srv_store_read_end(t);
    read_events(f, "run-1", 1, 10, 1 << 20, &n);
    assert_int_equal(n, 0);
    assert_false(dedup_found(f, &k1, &got));
}

void a_deleted_runs_last_snapshot_reference_takes_its_content(void **state)
{
    fx *f = *state;
    srv_error err;
    char sha[65];
    int stored_before = count_stored(f);
    fill_run(f, "run-1", "only run-1 has these", sha);
    srv_txn *t = wbegin(f);
    delete_run_in(f, t, "run-1");
    wcommit(t);
    uint8_t *bytes;
    size_t len;
    fails_with(read_blob(f, sha, 4, &bytes, &len, &err), &err, SRV_NOT_FOUND);
    assert_int_equal(count_stored(f), stored_before);
}

void a_run_delete_rolled_back_to_its_savepoint_leaves_the_run_whole(void **state)
{
    fx *f = *state;
    srv_error err;
    char sha[65];
    fill_run(f, "run-1", "kept", sha);
    srv_txn *t = wbegin(f);
    ok(srv_store_savepoint(t, &err), &err);
    delete_run_in(f, t, "run-1");
    srv_store_rollback_to(t);
    wcommit(t);
    size_t n;
    read_events(f, "run-1", 1, 10, 1 << 20, &n);
    assert_int_equal(n, 3);
    uint8_t *bytes;
    size_t len;
    ok(read_blob(f, sha, 4, &bytes, &len, &err), &err);
    assert_int_equal(len, 4);
}

void runs_completed_before_lists_completed_runs_oldest_completion_first(void **state)
{
    fx *f = *state;
    srv_error err;
    insert_run(f, "run-a", 1);
    insert_run(f, "run-b", 1);
    insert_run(f, "run-c", 1); /* never completes */
    srv_txn *t = wbegin(f);
    srv_run_head a = head_in(f, t, "run-a"), b = head_in(f, t, "run-b");
    ok(srv_store_run_set_completed(t, &a, NOW_US - 10, &err), &err);
    ok(srv_store_run_set_completed(t, &b, NOW_US - 20, &err), &err);
    wcommit(t);

    char **ids;
    size_t n;
    t = rbegin(f);
    ok(srv_store_runs_completed_before(t, f->a, NOW_US - 5, 10, &ids, &n, &err), &err);
    assert_int_equal(n, 2);
    assert_string_equal(ids[0], "run-b");
    assert_string_equal(ids[1], "run-a");
    ok(srv_store_runs_completed_before(t, f->a, NOW_US - 5, 1, &ids, &n, &err), &err);
    assert_int_equal(n, 1);
    assert_string_equal(ids[0], "run-b");
    ok(srv_store_runs_completed_before(t, f->a, NOW_US - 15, 10, &ids, &n, &err), &err);
    assert_int_equal(n, 1);
    assert_string_equal(ids[0], "run-b");
    ok(srv_store_runs_completed_before(t, f->a, NOW_US - 20, 10, &ids, &n, &err), &err);
    assert_int_equal(n, 0); /* strictly before */
    srv_store_read_end(t);
}

void dedup_put_for_a_gone_run_is_kept_by_its_id_until_expired(void **state)
{
    fx *f = *state;
    srv_error err;
    srv_dedup_key k = {"ghost", "DeleteRun", "key-1"};
    srv_dedup_record rec = record_of("deleted"), got;
    srv_txn *t = wbegin(f);
    ok(srv_store_dedup_put(t, &k, &rec, NOW_US, &err), &err);
    ok(srv_store_savepoint(t, &err), &err); /* PostgreSQL: the failure ends only it */
    fails_with(srv_store_dedup_put(t, &k, &rec, NOW_US, &err), &err, SRV_ABORTED);
    srv_store_rollback_to(t);
    wcommit(t);
    assert_true(dedup_found(f, &k, &got));
    assert_int_equal(got.response_len, 7);
    assert_memory_equal(got.response, "deleted", 7);
    srv_dedup_key other = {"ghost", "DeleteRun", "key-2"};
    assert_false(dedup_found(f, &other, &got));

    size_t n = 99;
    t = wbegin(f);
    ok(srv_store_dedup_expire(t, NOW_US, 10, &n, &err), &err);
    assert_int_equal(n, 0); /* made at NOW_US: not before it */
    ok(srv_store_dedup_expire(t, NOW_US + 1, 10, &n, &err), &err);
    assert_int_equal(n, 1);
    wcommit(t);
    assert_false(dedup_found(f, &k, &got));
}

void dedup_expire_forgets_records_older_than_the_cutoff_at_most_limit_at_a_time(void **state)
{
    fx *f = *state;
    srv_error err;
    insert_run(f, "run-1", 1);
    srv_dedup_key keys[4] = {{"run-1", "AppendEvents", "k0"},
                             {"run-1", "AppendEvents", "k1"},
                             {"run-1", "AppendEvents", "k2"},
                             {"run-1", "AppendEvents", "k3"}};
    srv_dedup_record rec = record_of("r"), got;
    srv_txn *t = wbegin(f);
    for (int i = 0; i < 4; i++) /* made at NOW-3 .. NOW */
        ok(srv_store_dedup_put(t, &keys[i], &rec, NOW_US - 3 + i, &err), &err);
    wcommit(t);

    size_t n = 0;
    t = wbegin(f);
    ok(srv_store_dedup_expire(t, NOW_US, 2, &n, &err), &err);
    assert_int_equal(n, 2);
    wcommit(t);
    t = wbegin(f);
    ok(srv_store_dedup_expire(t, NOW_US, 2, &n, &err), &err);
    assert_int_equal(n, 1);
    wcommit(t);
    for (int i = 0; i < 3; i++)
        assert_false(dedup_found(f, &keys[i], &got));
    assert_true(dedup_found(f, &keys[3], &got));
    assert_true(head_of(f, "run-1").ref > 0); /* the run stays */
}
