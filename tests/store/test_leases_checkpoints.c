/* Contract: leases, checkpoints and pins. */
#include "contract.h"
#include "base/clock.h"

#include <stdio.h>
#include <string.h>

/* ---- leases ---- */

void lease_get_of_a_never_leased_worker_is_not_found(void **state)
{
    fx *f = *state;
    insert_run(f, "run-1", 2);
    srv_error err;
    srv_lease_rec l;
    memset(&l, 0xa5, sizeof l);
    srv_txn *t = rbegin(f);
    srv_run_head h = head_in(f, t, "run-1");
    ok(srv_store_lease_get(t, f->a, &h, "w0", &l, &err), &err);
    srv_store_read_end(t);
    assert_false(l.found);
}

static srv_lease_rec lease_in(fx *f, srv_txn *t, const char *run_id, const char *worker_id)
{
    srv_error err;
    srv_lease_rec l;
    srv_run_head h = head_in(f, t, run_id);
    ok(srv_store_lease_get(t, f->a, &h, worker_id, &l, &err), &err);
    return l;
}

static srv_lease_rec lease_of(fx *f, const char *run_id, const char *worker_id)
{
    srv_txn *t = rbegin(f);
    srv_lease_rec l = lease_in(f, t, run_id, worker_id);
    srv_store_read_end(t);
    return l;
}

static void put_lease(fx *f, const char *run_id, const char *worker_id, const srv_lease_rec *l)
{
    srv_error err;
    srv_txn *t = wbegin(f);
    srv_run_head h = head_in(f, t, run_id);
    ok(srv_store_lease_put(t, &h, worker_id, l, &err), &err);
    wcommit(t);
}

void lease_put_then_get_round_trips_and_a_second_put_replaces_it(void **state)
{
    fx *f = *state;
    insert_run(f, "run-1", 2);
    insert_run(f, "run-2", 2);
    const srv_lease_rec first = {true, "lease-a", "host-1/pid-7", 1, NOW_US + 30000000};
    put_lease(f, "run-1", "w0", &first);

    srv_lease_rec l = lease_of(f, "run-1", "w0");
    assert_true(l.found);
    assert_string_equal(l.lease_id, "lease-a");
    assert_string_equal(l.holder, "host-1/pid-7");
    assert_int_equal(l.fencing_token, 1);
    assert_int_equal(l.expires_us, NOW_US + 30000000);
    /* one row per (run, worker) */
    assert_false(lease_of(f, "run-1", "w1").found);
    assert_false(lease_of(f, "run-2", "w0").found);

    const srv_lease_rec second = {true, "lease-b", "host-2", (uint64_t)INT64_MAX, 0};
    put_lease(f, "run-1", "w0", &second);
    l = lease_of(f, "run-1", "w0");
    assert_true(l.found);
    assert_string_equal(l.lease_id, "lease-b");
    assert_string_equal(l.holder, "host-2");
    assert_int_equal(l.fencing_token, INT64_MAX);
    assert_int_equal(l.expires_us, 0);

    /* the writer sees its own put before the commit; readers after */
    const srv_lease_rec third = {true, "lease-c", "host-3", 9, NOW_US};
    srv_error err;
    srv_txn *t = wbegin(f);
    srv_run_head h = head_in(f, t, "run-1");
    ok(srv_store_lease_put(t, &h, "w0", &third, &err), &err);
    assert_string_equal(lease_in(f, t, "run-1", "w0").lease_id, "lease-c");
    assert_string_equal(lease_of(f, "run-1", "w0").lease_id, "lease-b");
    wcommit(t);
    assert_string_equal(lease_of(f, "run-1", "w0").lease_id, "lease-c");
}

void usage_counts_leases_live_by_the_store_clock_and_the_bytes_stored(void **state)
{
    fx *f = *state;
    insert_run(f, "run-1", 4);
    /* srv_store_usage_get reads the store's own clock: this machine's
     * (SQLite) or the database server's on it (postgres). */
    int64_t now = srv_now_us(), hour = 3600ll * 1000000;
    const srv_lease_rec live = {true, "lease-a", "h", 1, now + hour};
    const srv_lease_rec expired = {true, "lease-b", "h", 2, now - hour};
    const srv_lease_rec released = {true, "lease-c", "h", 3, 0};
    put_lease(f, "run-1", "w0", &live);
    put_lease(f, "run-1", "w1", &expired);
    put_lease(f, "run-1", "w2", &released);
    srv_store_usage u;
    srv_error err;
    ok(srv_store_usage_get(f->st, &u, &err), &err);
    assert_int_equal(u.live_leases, 1);
    assert_true(u.bytes > 0);

    put_lease(f, "run-1", "w1", &live);
    ok(srv_store_usage_get(f->st, &u, &err), &err);
    assert_int_equal(u.live_leases, 2);
}

/* ---- checkpoints ---- */

/* A checkpoint id as core/ makes them: they sort like their time. */
static const char *cp_id(fx *f, int i)
{
    char id[32];
    snprintf(id, sizeof id, "20260128_101530_%06d", 123456 + i);
    return srv_arena_strdup(f->a, id);
}

/* Stores checkpoint i of run_id (snapshot: 64 + i bytes of i) in a
 * transaction of its own; returns its sha256 in the arena. */
static const char *insert_checkpoint(fx *f, const char *run_id, int i, uint64_t events_count,
                                     char **completed, size_t n_completed)
{
    uint8_t data[128];
    memset(data, i, sizeof data);
    char sha[65];
    srv_error err;
    srv_txn *t = wbegin(f);
    srv_blob_stage *b = link_bytes(f, t, data, 64 + (size_t)i, sha);
    srv_run_head h = head_in(f, t, run_id);
    srv_checkpoint_rec c = {
        .checkpoint_id = cp_id(f, i),
        .created_us = NOW_US + i,
        .run_state = i % 2 ? "running" : "created",
        .events_count = events_count,
        .snapshot_size = 64 + (uint64_t)i,
        .sha256 = sha,
        .completed = completed,
        .n_completed = n_completed,
    };
    ok(srv_store_checkpoint_insert(t, &h, &c, &err), &err);
    wcommit(t);
    srv_store_stage_free(b);
    return srv_arena_strdup(f->a, sha);
}

void checkpoint_insert_makes_it_the_latest_in_the_runs_head(void **state)
{
    fx *f = *state;
    insert_run(f, "run-1", 2);
    append(f, "run-1", make_events(f, 9, 4, 0), 9);
    insert_checkpoint(f, "run-1", 0, 4, NULL, 0);
    srv_run_head h = head_of(f, "run-1");
    assert_string_equal(h.latest_checkpoint_id, cp_id(f, 0));
    assert_int_equal(h.latest_checkpoint_us, NOW_US);
    assert_int_equal(h.checkpoint_events, 4);
    assert_int_equal(h.next_seq, 10); /* the log is not touched */

    insert_checkpoint(f, "run-1", 1, 9, NULL, 0);
    h = head_of(f, "run-1");
    assert_string_equal(h.latest_checkpoint_id, cp_id(f, 1));
    assert_int_equal(h.latest_checkpoint_us, NOW_US + 1);
    assert_int_equal(h.checkpoint_events, 9);
}

static void expect_checkpoint(fx *f, const srv_checkpoint_rec *c, int i, uint64_t events_count,
                              const char *sha)
{
    assert_string_equal(c->checkpoint_id, cp_id(f, i));
    assert_int_equal(c->created_us, NOW_US + i);
    assert_string_equal(c->run_state, i % 2 ? "running" : "created");
    assert_int_equal(c->events_count, events_count);
    assert_int_equal(c->snapshot_size, 64 + i);
    assert_string_equal(c->sha256, sha);
}

void checkpoint_get_by_id_and_latest_with_an_empty_id_round_trip_every_field(void **state)
{
    fx *f = *state;
    insert_run(f, "run-1", 3);
    insert_run(f, "run-2", 1);
    append(f, "run-1", make_events(f, 5, 4, 0), 5);
    char *done[] = {"w2", "w0"};
    const char *sha0 = insert_checkpoint(f, "run-1", 0, 3, done, 2);
    const char *sha1 = insert_checkpoint(f, "run-1", 1, 5, NULL, 0);

    srv_error err;
    srv_checkpoint_rec c;
    bool found = false;
    srv_txn *t = rbegin(f);
    srv_run_head h = head_in(f, t, "run-1");
    ok(srv_store_checkpoint_get(t, f->a, &h, cp_id(f, 0), &c, &found, &err), &err);
    assert_true(found);
    expect_checkpoint(f, &c, 0, 3, sha0);
    assert_int_equal(c.n_completed, 2);
    assert_string_equal(c.completed[0], "w2"); /* in the order given */
    assert_string_equal(c.completed[1], "w0");

    ok(srv_store_checkpoint_get(t, f->a, &h, "", &c, &found, &err), &err);
    assert_true(found);
    expect_checkpoint(f, &c, 1, 5, sha1);
    assert_int_equal(c.n_completed, 0);

    found = true;
    ok(srv_store_checkpoint_get(t, f->a, &h, cp_id(f, 7), &c, &found, &err), &err);
    assert_false(found);

    /* another run: neither its own latest nor run-1's by id */
    srv_run_head other = head_in(f, t, "run-2");
    found = true;
    ok(srv_store_checkpoint_get(t, f->a, &other, "", &c, &found, &err), &err);
    assert_false(found);
    found = true;
    ok(srv_store_checkpoint_get(t, f->a, &other, cp_id(f, 0), &c, &found, &err), &err);
    assert_false(found);
    srv_store_read_end(t);
}

void checkpoints_list_is_oldest_first_with_after_and_limit(void **state)
{
    fx *f = *state;
    insert_run(f, "run-1", 2);
    insert_run(f, "run-2", 2);
    append(f, "run-1", make_events(f, 5, 4, 0), 5);
    char *done[] = {"w1"};
    const char *shas[5];
    for (int i = 0; i < 5; i++)
        shas[i] = insert_checkpoint(f, "run-1", i, (uint64_t)i, done, 1);
    insert_checkpoint(f, "run-2", 9, 0, NULL, 0);

    srv_error err;
    srv_checkpoint_rec *v = NULL;
    size_t n = 0;
    srv_txn *t = rbegin(f);
    srv_run_head h = head_in(f, t, "run-1");
    ok(srv_store_checkpoints_list(t, f->a, &h, "", 100, true, &v, &n, &err), &err);
    assert_int_equal(n, 5);
    for (int i = 0; i < 5; i++) {
        expect_checkpoint(f, &v[i], i, (uint64_t)i, shas[i]);
        assert_int_equal(v[i].n_completed, 1);
        assert_string_equal(v[i].completed[0], "w1");
    }

    ok(srv_store_checkpoints_list(t, f->a, &h, cp_id(f, 1), 2, true, &v, &n, &err), &err);
    assert_int_equal(n, 2);
    assert_string_equal(v[0].checkpoint_id, cp_id(f, 2));
    assert_string_equal(v[1].checkpoint_id, cp_id(f, 3));

    ok(srv_store_checkpoints_list(t, f->a, &h, "", 1, true, &v, &n, &err), &err);
    assert_int_equal(n, 1);
    assert_string_equal(v[0].checkpoint_id, cp_id(f, 0));

    ok(srv_store_checkpoints_list(t, f->a, &h, cp_id(f, 4), 100, true, &v, &n, &err), &err);
    assert_int_equal(n, 0);
    srv_store_read_end(t);
}

void checkpoints_list_without_full_leaves_completed_empty(void **state)
{
    fx *f = *state;
    insert_run(f, "run-1", 3);
    append(f, "run-1", make_events(f, 3, 4, 0), 3);
    char *done[] = {"w0", "w1", "w2"};
    const char *sha = insert_checkpoint(f, "run-1", 0, 3, done, 3);

    srv_error err;
    srv_checkpoint_rec *v = NULL;
    size_t n = 0;
    srv_txn *t = rbegin(f);
    srv_run_head h = head_in(f, t, "run-1");
    ok(srv_store_checkpoints_list(t, f->a, &h, "", 100, false, &v, &n, &err), &err);
    srv_store_read_end(t);
    assert_int_equal(n, 1);
    assert_string_equal(v[0].checkpoint_id, cp_id(f, 0));
    assert_int_equal(v[0].created_us, NOW_US);
    assert_string_equal(v[0].sha256, sha);
    assert_int_equal(v[0].n_completed, 0);
}

void checkpoint_delete_removes_that_checkpoint_only(void **state)
{
    fx *f = *state;
    insert_run(f, "run-1", 2);
    char *done[] = {"w0"};
    for (int i = 0; i < 3; i++)
        insert_checkpoint(f, "run-1", i, 0, done, 1);

    srv_error err;
    srv_txn *t = wbegin(f);
    srv_run_head h = head_in(f, t, "run-1");
    ok(srv_store_checkpoint_delete(t, &h, cp_id(f, 1), &err), &err);
    wcommit(t);

    srv_checkpoint_rec c, *v = NULL;
    size_t n = 0;
    bool found = true;
    t = rbegin(f);
    h = head_in(f, t, "run-1");
    ok(srv_store_checkpoint_get(t, f->a, &h, cp_id(f, 1), &c, &found, &err), &err);
    assert_false(found);
    ok(srv_store_checkpoints_list(t, f->a, &h, "", 100, true, &v, &n, &err), &err);
    assert_int_equal(n, 2);
    assert_string_equal(v[0].checkpoint_id, cp_id(f, 0));
    assert_string_equal(v[1].checkpoint_id, cp_id(f, 2));
    assert_int_equal(v[0].n_completed, 1);
    assert_int_equal(v[1].n_completed, 1);
    srv_store_read_end(t);

    /* the id is free again */
    insert_checkpoint(f, "run-1", 1, 0, NULL, 0);
    t = rbegin(f);
    h = head_in(f, t, "run-1");
    ok(srv_store_checkpoint_get(t, f->a, &h, cp_id(f, 1), &c, &found, &err), &err);
    assert_true(found);
    assert_int_equal(c.n_completed, 0);
    srv_store_read_end(t);
}

void checkpoint_insert_of_an_existing_id_is_aborted(void **state)
{
    fx *f = *state;
    insert_run(f, "run-1", 2);
    insert_run(f, "run-2", 2);
    const char *sha = insert_checkpoint(f, "run-1", 0, 0, NULL, 0);

    srv_error err;
    srv_txn *t = wbegin(f);
    ok(srv_store_savepoint(t, &err), &err);
    srv_run_head h = head_in(f, t, "run-1");
    srv_checkpoint_rec c = {.checkpoint_id = cp_id(f, 0), .created_us = NOW_US + 5,
                            .run_state = "again", .sha256 = sha, .snapshot_size = 64};
    fails_with(srv_store_checkpoint_insert(t, &h, &c, &err), &err, SRV_ABORTED);
    srv_store_rollback_to(t);
    /* the same id in another run is another checkpoint */
    h = head_in(f, t, "run-2");
    char sha2[65];
    uint8_t data[64];
    memset(data, 0, sizeof data);
    srv_blob_stage *b = link_bytes(f, t, data, sizeof data, sha2);
    c.sha256 = sha2;
    ok(srv_store_checkpoint_insert(t, &h, &c, &err), &err);
    wcommit(t);
    srv_store_stage_free(b);

    srv_checkpoint_rec got;
    bool found = false;
    t = rbegin(f);
    h = head_in(f, t, "run-1");
    ok(srv_store_checkpoint_get(t, f->a, &h, cp_id(f, 0), &got, &found, &err), &err);
    assert_true(found);
    assert_string_equal(got.run_state, "created"); /* the first one's */
    assert_int_equal(got.created_us, NOW_US);
    srv_store_read_end(t);
}

/* ---- pins ---- */

static bool pinned_at(fx *f, const char *run_id, const char *checkpoint_id, int64_t now_us)
{
    srv_error err;
    bool pinned = true;
    srv_txn *t = rbegin(f);
    ok(srv_store_pinned(t, run_id, checkpoint_id, now_us, &pinned, &err), &err);
    srv_store_read_end(t);
    return pinned;
}

void pinned_is_true_only_while_a_pin_is_live(void **state)
{
    fx *f = *state;
    const int64_t expires = NOW_US + 60000000;
    assert_false(pinned_at(f, "run-1", "cp-1", NOW_US));

    srv_error err;
    int64_t pin = 0;
    ok(srv_store_pin_add(f->st, "run-1", "cp-1", expires, &pin, &err), &err);
    assert_true(pinned_at(f, "run-1", "cp-1", NOW_US));
    assert_true(pinned_at(f, "run-1", "cp-1", expires - 1));
    assert_false(pinned_at(f, "run-1", "cp-1", expires)); /* lapsed: not honoured */
    assert_false(pinned_at(f, "run-1", "cp-1", expires + 1000000));
    assert_false(pinned_at(f, "run-1", "cp-2", NOW_US));
    assert_false(pinned_at(f, "run-2", "cp-1", NOW_US));

    /* the write transaction sees it too */
    bool pinned = false;
    srv_txn *t = wbegin(f);
    ok(srv_store_pinned(t, "run-1", "cp-1", NOW_US, &pinned, &err), &err);
    srv_store_rollback(t);
    assert_true(pinned);

    ok(srv_store_pin_remove(f->st, pin, &err), &err);
    assert_false(pinned_at(f, "run-1", "cp-1", NOW_US));
    /* removing it again is harmless */
    ok(srv_store_pin_remove(f->st, pin, &err), &err);
}

void pin_remove_leaves_other_pins_of_the_same_checkpoint(void **state)
{
    fx *f = *state;
    srv_error err;
    int64_t a = 0, b = 0, lapsed = 0;
    ok(srv_store_pin_add(f->st, "run-1", "cp-1", NOW_US + 1000, &a, &err), &err);
    ok(srv_store_pin_add(f->st, "run-1", "cp-1", NOW_US + 2000, &b, &err), &err);
    ok(srv_store_pin_add(f->st, "run-1", "cp-1", NOW_US - 1, &lapsed, &err), &err);
    assert_true(a != b && b != lapsed && a != lapsed);
    ok(srv_store_pin_remove(f->st, a, &err), &err);
    assert_true(pinned_at(f, "run-1", "cp-1", NOW_US + 1500)); /* b's */
    ok(srv_store_pin_remove(f->st, b, &err), &err);
    assert_false(pinned_at(f, "run-1", "cp-1", NOW_US)); /* only the lapsed one is left */
}
