/* Contract: runs, the event log and workers. */
#include "contract.h"
#include "base/limits.h"

#include <stdio.h>
#include <string.h>

/* ---- runs ---- */

void run_insert_then_find_and_get_return_the_definition_with_labels_sorted(void **state)
{
    fx *f = *state;
    int64_t ref = insert_run(f, "run-1", 3);

    srv_error err;
    srv_run_rec rec;
    bool found = false;
    srv_txn *t = rbegin(f);
    ok(srv_store_run_get(t, f->a, "run-1", &rec, &found, &err), &err);
    srv_run_head h = head_in(f, t, "run-1");
    srv_store_read_end(t);
    assert_true(found);

    const srv_run_head *heads[] = {&rec.head, &h};
    for (size_t i = 0; i < 2; i++) {
        assert_int_equal(heads[i]->ref, ref);
        assert_string_equal(heads[i]->run_id, "run-1");
        assert_int_equal(heads[i]->created_us, NOW_US);
        assert_int_equal(heads[i]->next_seq, 1);
        assert_int_equal(heads[i]->n_workers, 3);
        assert_int_equal(heads[i]->n_completed, 0);
        assert_string_equal(heads[i]->latest_checkpoint_id, "");
        assert_int_equal(heads[i]->latest_checkpoint_us, 0);
        assert_int_equal(heads[i]->checkpoint_events, 0);
    }
    assert_int_equal(rec.n_workers, 3);
    assert_string_equal(rec.workers[0], "w0");
    assert_string_equal(rec.workers[1], "w1");
    assert_string_equal(rec.workers[2], "w2");
    assert_int_equal(rec.n_completed, 0);
    /* inserted as env, app, zone */
    assert_int_equal(rec.n_labels, 3);
    assert_string_equal(rec.labels[0].key, "app");
    assert_string_equal(rec.labels[0].value, "etl");
    assert_string_equal(rec.labels[1].key, "env");
    assert_string_equal(rec.labels[1].value, "prod");
    assert_string_equal(rec.labels[2].key, "zone");
    assert_string_equal(rec.labels[2].value, "");
}

void find_and_get_of_an_unknown_run_report_not_found_without_an_error(void **state)
{
    fx *f = *state;
    insert_run(f, "run-1", 1);
    srv_error err;
    srv_run_head h;
    srv_run_rec rec;
    bool found = true;
    srv_txn *t = rbegin(f);
    ok(srv_store_run_find(t, f->a, "nope", &h, &found, &err), &err);
    assert_false(found);
    found = true;
    ok(srv_store_run_get(t, f->a, "nope", &rec, &found, &err), &err);
    assert_false(found);
    found = true;
    ok(srv_store_run_find(t, f->a, "run-", &h, &found, &err), &err); /* no prefix match */
    assert_false(found);
    srv_store_read_end(t);
}

void runs_list_pages_by_ref_in_creation_order(void **state)
{
    fx *f = *state;
    static const char *const ids[] = {"r-c", "r-a", "r-g", "r-b", "r-f", "r-e", "r-d"};
    int64_t refs[7];
    for (size_t i = 0; i < 7; i++) {
        refs[i] = insert_run(f, ids[i], i + 1);
        if (i > 0)
            assert_true(refs[i] > refs[i - 1]);
    }
    srv_error err;
    srv_txn *t = rbegin(f);
    int64_t after = 0;
    size_t seen = 0;
    static const size_t want[] = {3, 3, 1, 0};
    for (size_t page = 0; page < 4; page++) {
        srv_run_rec *recs = NULL;
        size_t n = 99;
        ok(srv_store_runs_list(t, f->a, after, "", 3, &recs, &n, &err), &err);
        assert_int_equal(n, want[page]);
        for (size_t i = 0; i < n; i++, seen++) {
            assert_int_equal(recs[i].head.ref, refs[seen]);
            assert_string_equal(recs[i].head.run_id, ids[seen]);
            assert_int_equal(recs[i].n_workers, seen + 1);
            char last[32];
            snprintf(last, sizeof last, "w%zu", seen);
            assert_string_equal(recs[i].workers[seen], last);
            assert_int_equal(recs[i].n_labels, 3);
            assert_string_equal(recs[i].labels[0].key, "app");
            after = recs[i].head.ref;
        }
    }
    assert_int_equal(seen, 7);

    /* after a ref in the middle: the runs created later */
    srv_run_rec *recs = NULL;
    size_t n = 0;
    ok(srv_store_runs_list(t, f->a, refs[4], "", 100, &recs, &n, &err), &err);
    assert_int_equal(n, 2);
    assert_string_equal(recs[0].head.run_id, "r-e");
    assert_string_equal(recs[1].head.run_id, "r-d");
    srv_store_read_end(t);
}

/* The scope of a token's run prefix (ListRuns): by bytes, case and all,
 * with pages by ref as without one. */
void runs_list_with_a_prefix_keeps_only_runs_starting_with_it(void **state)
{
    fx *f = *state;
    static const char *const ids[] = {"team-a.1", "team-b.1", "team-a.2", "Team-a.3",
                                      "team-a",   "team-",    "team-a.4"};
    for (size_t i = 0; i < 7; i++)
        insert_run(f, ids[i], 1);
    srv_error err;
    srv_txn *t = rbegin(f);
    static const char *const want[] = {"team-a.1", "team-a.2", "team-a", "team-a.4"};
    int64_t after = 0;
    size_t seen = 0;
    for (int page = 0; page < 3; page++) {
        srv_run_rec *recs = NULL;
        size_t n = 99;
        ok(srv_store_runs_list(t, f->a, after, "team-a", 2, &recs, &n, &err), &err);
        assert_int_equal(n, page < 2 ? 2 : 0);
        for (size_t i = 0; i < n; i++, seen++) {
            assert_string_equal(recs[i].head.run_id, want[seen]);
            after = recs[i].head.ref;
        }
    }
    assert_int_equal(seen, 4);
    srv_run_rec *recs = NULL;
    size_t n = 99;
    ok(srv_store_runs_list(t, f->a, 0, "nobody", 10, &recs, &n, &err), &err);
    assert_int_equal(n, 0);
    srv_store_read_end(t);
}

void run_insert_of_an_existing_id_is_aborted_and_leaves_the_first_intact(void **state)
{
    fx *f = *state;
    int64_t ref = insert_run(f, "run-1", 2);

    /* as the ledger does: the failing mutation inside its savepoint */
    srv_error err;
    char *workers[] = {"x", "y", "z"};
    int64_t ref2 = 0;
    srv_txn *t = wbegin(f);
    ok(srv_store_savepoint(t, &err), &err);
    fails_with(srv_store_run_insert(t, "run-1", workers, 3, NULL, 0, NOW_US + 1, &ref2, &err),
               &err, SRV_ABORTED);
    srv_store_rollback_to(t);
    wcommit(t);

    srv_run_rec rec;
    bool found = false;
    t = rbegin(f);
    ok(srv_store_run_get(t, f->a, "run-1", &rec, &found, &err), &err);
    srv_store_read_end(t);
    assert_true(found);
    assert_int_equal(rec.head.ref, ref);
    assert_int_equal(rec.head.created_us, NOW_US);
    assert_int_equal(rec.n_workers, 2);
    assert_string_equal(rec.workers[1], "w1");
    assert_int_equal(rec.n_labels, 3);
}

/* ---- the event log ---- */

void events_insert_gives_dense_seqs_across_batches_and_moves_next_seq(void **state)
{
    fx *f = *state;
    insert_run(f, "run-1", 2);
    static const size_t sizes[] = {1, 5, 3, 1000};
    uint64_t next = 1;
    for (size_t b = 0; b < sizeof sizes / sizeof sizes[0]; b++) {
        append(f, "run-1", make_events(f, sizes[b], 8, (uint8_t)b), sizes[b]);
        next += sizes[b];
        assert_int_equal(head_of(f, "run-1").next_seq, next);
    }
    uint64_t seq = 1;
    for (;;) {
        size_t n;
        Cairn__V1__Event **page = read_events(f, "run-1", seq, 1000, SIZE_MAX, &n);
        if (n == 0)
            break;
        for (size_t i = 0; i < n; i++)
            assert_int_equal(page[i]->seq, seq++);
    }
    assert_int_equal(seq, next);
}

void events_read_returns_every_field_as_inserted_with_binary_and_empty_payloads(void **state)
{
    fx *f = *state;
    insert_run(f, "run-1", 2);
    Cairn__V1__Event **in = make_events(f, 4, 300, 0x41);
    in[3]->payload.len = 0; /* an empty payload */
    in[3]->payload.data = NULL;
    append(f, "run-1", in, 4);

    size_t n;
    Cairn__V1__Event **out = read_events(f, "run-1", 0, 100, SIZE_MAX, &n);
    assert_int_equal(n, 4);
    for (size_t i = 0; i < 4; i++) {
        const Cairn__V1__Event *e = out[i];
        assert_int_equal(e->seq, i + 1);
        assert_string_equal(e->run_id, "run-1");
        assert_string_equal(e->type, in[i]->type);
        assert_string_equal(e->worker_id, in[i]->worker_id);
        assert_int_equal(e->payload.len, in[i]->payload.len);
        if (in[i]->payload.len)
            assert_memory_equal(e->payload.data, in[i]->payload.data, in[i]->payload.len);
        assert_string_equal(e->created_at, NOW_TEXT);
    }
    assert_int_equal(out[0]->payload.data[0], 0);
    assert_int_equal(out[0]->payload.data[299], 0xff);
}

void events_read_pages_by_max_events_until_an_empty_page(void **state)
{
    fx *f = *state;
    insert_run(f, "run-1", 1);
    append(f, "run-1", make_events(f, 25, 16, 0), 25);
    static const size_t want[] = {10, 10, 5, 0};
    uint64_t from = 1;
    for (size_t p = 0; p < 4; p++) {
        size_t n;
        Cairn__V1__Event **page = read_events(f, "run-1", from, 10, SIZE_MAX, &n);
        assert_int_equal(n, want[p]);
        for (size_t i = 0; i < n; i++)
            assert_int_equal(page[i]->seq, from + i);
        from += n;
    }
    size_t n = 99;
    read_events(f, "run-1", 1000, 10, SIZE_MAX, &n);
    assert_int_equal(n, 0);
    read_events(f, "run-1", 26, 10, SIZE_MAX, &n);
    assert_int_equal(n, 0);
    read_events(f, "run-1", 25, 10, SIZE_MAX, &n);
    assert_int_equal(n, 1);
}

/* Integers a backend stores may be signed; a from_seq past INT64_MAX is
 * past every event, not a negative number that would match them all. */
void events_read_from_past_int64_max_reads_nothing(void **state)
{
    fx *f = *state;
    insert_run(f, "run-1", 1);
    append(f, "run-1", make_events(f, 3, 4, 0), 3);
    static const uint64_t from[] = {(uint64_t)INT64_MAX, (uint64_t)INT64_MAX + 1, UINT64_MAX};
    for (size_t i = 0; i < sizeof from / sizeof from[0]; i++) {
        size_t n = 99;
        read_events(f, "run-1", from[i], 10, SIZE_MAX, &n);
        assert_int_equal(n, 0);
    }
}

void events_read_byte_budget_gives_fewer_events_but_at_least_one(void **state)
{
    fx *f = *state;
    insert_run(f, "run-1", 1);
    append(f, "run-1", make_events(f, 10, 1000, 0), 10);

    size_t n;
    Cairn__V1__Event **page = read_events(f, "run-1", 1, 100, 1, &n);
    assert_int_equal(n, 1); /* even over budget: progress */
    assert_int_equal(page[0]->seq, 1);

    page = read_events(f, "run-1", 1, 100, 3500, &n);
    assert_in_range(n, 1, 3);
    size_t bytes = 0;
    for (size_t i = 0; i < n; i++)
        bytes += page[i]->payload.len;
    assert_true(bytes <= 3500);

    /* the cost of an event is its payload plus SRV_EVENT_COST */
    const size_t cost = 1000 + SRV_EVENT_COST;
    read_events(f, "run-1", 1, 100, 3 * cost, &n);
    assert_int_equal(n, 3);
    read_events(f, "run-1", 1, 100, 3 * cost - 1, &n);
    assert_int_equal(n, 2);

    /* paging with the small budget still reads everything, in order */
    uint64_t from = 1;
    size_t pages = 0;
    for (;; pages++) {
        page = read_events(f, "run-1", from, 100, 3500, &n);
        if (!n)
            break;
        for (size_t i = 0; i < n; i++)
            assert_int_equal(page[i]->seq, from + i);
        from += n;
    }
    assert_int_equal(from, 11);
    assert_true(pages >= 4);

    read_events(f, "run-1", 1, 100, SIZE_MAX, &n);
    assert_int_equal(n, 10);
}

void events_insert_over_an_existing_seq_is_aborted(void **state)
{
    fx *f = *state;
    insert_run(f, "run-1", 1);
    srv_run_head stale = head_of(f, "run-1"); /* next_seq 1 */
    append(f, "run-1", make_events(f, 2, 4, 0), 2);

    srv_error err;
    srv_txn *t = wbegin(f);
    ok(srv_store_savepoint(t, &err), &err);
    fails_with(srv_store_events_insert(t, &stale, make_events(f, 1, 4, 9), 1, NOW_US, &err),
               &err, SRV_ABORTED);
    srv_store_rollback_to(t);
    wcommit(t);

    size_t n;
    Cairn__V1__Event **v = read_events(f, "run-1", 1, 100, SIZE_MAX, &n);
    assert_int_equal(n, 2);
    assert_int_equal(v[0]->payload.data[1], 0); /* the first batch's */
    assert_int_equal(head_of(f, "run-1").next_seq, 3);
}

/* ---- workers ---- */

void worker_get_tells_workers_of_the_run_from_everyone_else(void **state)
{
    fx *f = *state;
    insert_run(f, "run-1", 2);
    insert_run(f, "run-2", 5);
    srv_error err;
    srv_txn *t = rbegin(f);
    srv_run_head h = head_in(f, t, "run-1");
    static const struct {
        const char *id;
        bool is_worker;
    } cases[] = {{"w0", true}, {"w1", true}, {"w2", false} /* run-2's */, {"", false},
                 {"W0", false}, {"w", false}};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        bool is_worker = !cases[i].is_worker;
        uint64_t seq = 77;
        ok(srv_store_worker_get(t, &h, cases[i].id, &is_worker, &seq, &err), &err);
        if (is_worker != cases[i].is_worker)
            fail_msg("worker_get(%s): is_worker %d", cases[i].id, is_worker);
        assert_int_equal(seq, 0);
    }
    srv_store_read_end(t);
}

void worker_complete_then_completions_are_in_seq_order_and_counted(void **state)
{
    fx *f = *state;
    insert_run(f, "run-1", 3);
    append(f, "run-1", make_events(f, 6, 4, 0), 6);
    srv_error err;
    srv_txn *t = wbegin(f);
    srv_run_head h = head_in(f, t, "run-1");
    ok(srv_store_worker_complete(t, &h, "w2", 3, &err), &err);
    ok(srv_store_worker_complete(t, &h, "w0", 5, &err), &err);
    /* one the run does not have is refused and not counted */
    fails_with(srv_store_worker_complete(t, &h, "stranger", 6, &err), &err, SRV_INTERNAL);
    assert_int_equal(head_in(f, t, "run-1").n_completed, 2); /* the transaction sees its writes */
    wcommit(t);

    t = rbegin(f);
    h = head_in(f, t, "run-1");
    assert_int_equal(h.n_completed, 2);
    assert_int_equal(h.n_workers, 3);
    srv_completion *c = NULL;
    size_t n = 0;
    ok(srv_store_completions(t, f->a, &h, &c, &n, &err), &err);
    assert_int_equal(n, 2);
    assert_string_equal(c[0].worker_id, "w2");
    assert_int_equal(c[0].seq, 3);
    assert_string_equal(c[1].worker_id, "w0");
    assert_int_equal(c[1].seq, 5);

    bool is_worker = false;
    uint64_t seq = 0;
    ok(srv_store_worker_get(t, &h, "w0", &is_worker, &seq, &err), &err);
    assert_true(is_worker);
    assert_int_equal(seq, 5);
    ok(srv_store_worker_get(t, &h, "w1", &is_worker, &seq, &err), &err);
    assert_true(is_worker);
    assert_int_equal(seq, 0);

    srv_run_rec rec;
    bool found = false;
    ok(srv_store_run_get(t, f->a, "run-1", &rec, &found, &err), &err);
    assert_int_equal(rec.n_completed, 2); /* in completion order */
    assert_string_equal(rec.completed[0], "w2");
    assert_string_equal(rec.completed[1], "w0");
    assert_string_equal(rec.workers[0], "w0"); /* the definition keeps its order */
    srv_store_read_end(t);

    /* another run has none */
    insert_run(f, "run-2", 1);
    t = rbegin(f);
    h = head_in(f, t, "run-2");
    ok(srv_store_completions(t, f->a, &h, &c, &n, &err), &err);
    assert_int_equal(n, 0);
    srv_store_read_end(t);
}
