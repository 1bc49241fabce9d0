/* The domain rules of core/ (domain.h) over a real SQLite store: each
 * mutation runs as the ledger runs it (the write transaction, a
 * savepoint, released on success and rolled back to on error, then the
 * commit), with an explicit now_us, so lease and pin expiry need no
 * waiting. This file: runs, the event log, resume, and the one test
 * list; test_core_leases.c: leases, completion, checkpoints. */
#include "core_fixture.h"

#include <stdio.h>
#include <string.h>

/* ---- runs ---- */

static void create_run_then_get_run_returns_the_definition(void **state)
{
    fx *f = *state;
    Cairn__V1__Run *created = create_run(f, "run-1", 3);
    assert_string_equal(created->run_id, "run-1");
    assert_string_equal(created->state, "created");
    assert_string_equal(created->created_at, NOW_TEXT);
    Cairn__V1__Run run = get_run(f, "run-1");
    assert_string_equal(run.run_id, "run-1");
    assert_int_equal(run.n_workers, 3);
    assert_string_equal(run.workers[0], "w0");
    assert_string_equal(run.workers[2], "w2");
    assert_int_equal(run.n_labels, 2);
    assert_string_equal(run.labels[0]->key, "app");
    assert_string_equal(run.labels[0]->value, "etl");
    assert_string_equal(run.labels[1]->key, "env");
    assert_string_equal(run.labels[1]->value, "prod");
    assert_string_equal(run.state, "created");
    assert_int_equal(run.n_completed_workers, 0);
    assert_int_equal(run.next_seq, 1);
    assert_string_equal(run.latest_checkpoint_id, "");
    assert_string_equal(run.created_at, NOW_TEXT);
    assert_false(run.replayed);
}

static void create_run_again_returns_it_or_already_exists_when_different(void **state)
{
    fx *f = *state;
    create_run(f, "run-1", 3);
    Cairn__V1__Run *again = create_run(f, "run-1", 3);
    assert_int_equal(again->n_workers, 3);
    assert_string_equal(again->created_at, NOW_TEXT); /* the first creation's */

    srv_error err;
    Cairn__V1__Run run;
    srv_code rc = done(f, srv_run_create(mut(f, NOW_US), run_req(f, "run-1", 4), &run, &err));
    fails(rc, &err, SRV_ALREADY_EXISTS, "run_id");
    fails(rc, &err, SRV_ALREADY_EXISTS, "already exists with different workers or labels");
    /* other labels are another definition too */
    Cairn__V1__CreateRunRequest *req = run_req(f, "run-1", 3);
    req->labels[1]->value = "dev";
    rc = done(f, srv_run_create(mut(f, NOW_US), req, &run, &err));
    fails(rc, &err, SRV_ALREADY_EXISTS, "\"run-1\"");
    assert_int_equal(get_run(f, "run-1").n_workers, 3);
    assert_string_equal(get_run(f, "run-1").labels[1]->value, "prod");
}

static void get_run_of_an_unknown_run_is_not_found(void **state)
{
    fx *f = *state;
    srv_error err;
    Cairn__V1__Run run;
    srv_code rc = srv_run_read(f->st, f->a, "nope", &run, &err);
    fails(rc, &err, SRV_NOT_FOUND, "run_id");
    fails(rc, &err, SRV_NOT_FOUND, "\"nope\"");
}

static void list_runs_pages_in_creation_order(void **state)
{
    fx *f = *state;
    static const char *const ids[] = {"r-c", "r-a", "r-g", "r-b", "r-f", "r-e", "r-d"};
    for (size_t i = 0; i < 7; i++)
        create_run(f, ids[i], i + 1);
    srv_error err;
    uint64_t after = 0, next = 0;
    size_t seen = 0;
    for (int page = 0; page < 3; page++) {
        Cairn__V1__ListRunsResponse out;
        cairn__v1__list_runs_response__init(&out);
        ok(srv_runs_read(f->st, f->a, after, "", 3, SIZE_MAX, &out, &next, &err), &err);
        assert_int_equal(out.n_runs, page < 2 ? 3 : 1);
        for (size_t i = 0; i < out.n_runs; i++, seen++) {
            assert_string_equal(out.runs[i]->run_id, ids[seen]);
            assert_int_equal(out.runs[i]->n_workers, seen + 1);
            assert_int_equal(out.runs[i]->n_labels, 2);
            assert_string_equal(out.runs[i]->state, "created");
        }
        if (page < 2)
            assert_true(next != 0);
        else
            assert_int_equal(next, 0);
        after = next;
    }
    assert_int_equal(seen, 7);
}

static void list_runs_last_full_page_has_no_next(void **state)
{
    fx *f = *state;
    srv_error err;
    uint64_t next = 99;
    Cairn__V1__ListRunsResponse out;
    cairn__v1__list_runs_response__init(&out);
    ok(srv_runs_read(f->st, f->a, 0, "", 10, SIZE_MAX, &out, &next, &err), &err);
    assert_int_equal(out.n_runs, 0);
    assert_int_equal(next, 0);
    for (int i = 0; i < 4; i++) {
        char id[16];
        snprintf(id, sizeof id, "run-%d", i);
        create_run(f, id, 1);
    }
    cairn__v1__list_runs_response__init(&out);
    ok(srv_runs_read(f->st, f->a, 0, "", 2, SIZE_MAX, &out, &next, &err), &err);
    assert_int_equal(out.n_runs, 2);
    assert_true(next != 0);
    cairn__v1__list_runs_response__init(&out);
    ok(srv_runs_read(f->st, f->a, next, "", 2, SIZE_MAX, &out, &next, &err), &err);
    assert_int_equal(out.n_runs, 2);
    assert_string_equal(out.runs[1]->run_id, "run-3");
    assert_int_equal(next, 0);
}

/* Runs r-0..r-(n-1), each listed with max_bytes and limit, page after
 * page; returns the number of pages and checks each run came once, in
 * order, and that only the last page has no next position. */
static size_t list_runs_by(fx *f, size_t n, uint32_t limit, size_t max_bytes, size_t *largest)
{
    srv_error err;
    uint64_t after = 0, next = 0;
    size_t seen = 0, pages = 0;
    *largest = 0;
    do {
        Cairn__V1__ListRunsResponse out;
        cairn__v1__list_runs_response__init(&out);
        ok(srv_runs_read(f->st, f->a, after, "", limit, max_bytes, &out, &next, &err), &err);
        assert_true(out.n_runs >= 1);
        assert_true(out.n_runs <= limit);
        for (size_t i = 0; i < out.n_runs; i++, seen++) {
            char id[16];
            snprintf(id, sizeof id, "r-%zu", seen);
            assert_string_equal(out.runs[i]->run_id, id);
        }
        size_t size = protobuf_c_message_get_packed_size(&out.base);
        if (size > *largest)
            *largest = size;
        pages++;
        assert_true(seen == n ? next == 0 : next != 0);
        after = next;
    } while (next);
    assert_int_equal(seen, n);
    return pages;
}

static void list_runs_stops_at_the_byte_budget_with_at_least_one_run(void **state)
{
    fx *f = *state;
    for (size_t i = 0; i < 9; i++) {
        char id[16];
        snprintf(id, sizeof id, "r-%zu", i);
        create_run(f, id, 50);
    }
    Cairn__V1__Run one = get_run(f, "r-0");
    size_t run_size = protobuf_c_message_get_packed_size(&one.base), largest;
    /* A budget under one run still gives one a page. */
    assert_int_equal(list_runs_by(f, 9, 1000, 1, &largest), 9);
    /* Room for two runs and a half: pages of two. */
    assert_int_equal(list_runs_by(f, 9, 1000, 2 * run_size + run_size / 2, &largest), 5);
    assert_true(largest < 3 * run_size);
    /* The count decides when it comes first. */
    assert_int_equal(list_runs_by(f, 9, 4, SIZE_MAX, &largest), 3);
    assert_int_equal(list_runs_by(f, 9, 9, SIZE_MAX, &largest), 1);
    assert_int_equal(list_runs_by(f, 9, 1000, SIZE_MAX, &largest), 1);
}

/* ---- events ---- */

static void append_gives_dense_seqs_across_batches(void **state)
{
    fx *f = *state;
    create_run(f, "run-1", 2);
    static const size_t sizes[] = {1, 5, 3, 1000};
    uint64_t want_first = 1;
    for (size_t b = 0; b < sizeof sizes / sizeof sizes[0]; b++) {
        srv_error err;
        Cairn__V1__AppendEventsResponse out;
        ok(append_tx(f, events_req(f, "run-1", sizes[b], 8, (uint8_t)b), &out, &err), &err);
        assert_int_equal(out.first_seq, want_first);
        assert_int_equal(out.last_seq, want_first + sizes[b] - 1);
        assert_int_equal(out.events_since_checkpoint, out.last_seq);
        assert_string_equal(f->ap.grew_run_id, "run-1");
        assert_int_equal(f->ap.grew_last_seq, out.last_seq);
        want_first += sizes[b];
    }
    uint64_t seq = 1;
    for (;;) {
        Cairn__V1__ReadEventsResponse page = read_events(f, "run-1", seq, 1000, SIZE_MAX);
        if (page.n_events == 0)
            break;
        for (size_t i = 0; i < page.n_events; i++)
            assert_int_equal(page.events[i]->seq, seq++);
        assert_int_equal(page.next_seq, seq);
    }
    assert_int_equal(seq, want_first);
    Cairn__V1__Run run = get_run(f, "run-1");
    assert_int_equal(run.next_seq, want_first);
    assert_string_equal(run.state, "running");
}

static void append_with_wrong_expected_next_seq_fails_and_stores_nothing(void **state)
{
    fx *f = *state;
    create_run(f, "run-1", 1);
    srv_error err;
    Cairn__V1__AppendEventsResponse out;
    ok(append_tx(f, events_req(f, "run-1", 2, 4, 0), &out, &err), &err); /* seqs 1..2 */

    static const uint64_t wrong[] = {1, 2, 4, 1000};
    for (size_t i = 0; i < sizeof wrong / sizeof wrong[0]; i++) {
        Cairn__V1__AppendEventsRequest *req = events_req(f, "run-1", 3, 4, 9);
        req->expected_next_seq = wrong[i];
        srv_code rc = append_tx(f, req, &out, &err);
        fails(rc, &err, SRV_FAILED_PRECONDITION, "expected_next_seq");
        fails(rc, &err, SRV_FAILED_PRECONDITION, "3"); /* the run's next_seq */
        assert_null(f->ap.grew_run_id);
    }
    assert_int_equal(get_run(f, "run-1").next_seq, 3);
    assert_int_equal(read_events(f, "run-1", 1, 100, SIZE_MAX).n_events, 2);

    Cairn__V1__AppendEventsRequest *req = events_req(f, "run-1", 1, 4, 9);
    req->expected_next_seq = 3;
    ok(append_tx(f, req, &out, &err), &err);
    assert_int_equal(out.first_seq, 3);
}

static void append_to_an_unknown_run_is_not_found(void **state)
{
    fx *f = *state;
    srv_error err;
    Cairn__V1__AppendEventsResponse out;
    fails(append_tx(f, events_req(f, "ghost", 1, 4, 0), &out, &err), &err, SRV_NOT_FOUND,
          "run_id");
}

static void read_events_returns_every_field_as_appended(void **state)
{
    fx *f = *state;
    create_run(f, "run-1", 2);
    srv_error err;
    Cairn__V1__AppendEventsResponse out;
    Cairn__V1__AppendEventsRequest *req = events_req(f, "run-1", 3, 300, 0x41);
    ok(append_tx(f, req, &out, &err), &err);
    Cairn__V1__ReadEventsResponse page = read_events(f, "run-1", 0, 100, SIZE_MAX);
    assert_int_equal(page.n_events, 3);
    for (size_t i = 0; i < 3; i++) {
        const Cairn__V1__Event *e = page.events[i];
        assert_int_equal(e->seq, i + 1);
        assert_string_equal(e->run_id, "run-1");
        assert_string_equal(e->type, req->events[i]->type);
        assert_string_equal(e->worker_id, req->events[i]->worker_id);
        assert_int_equal(e->payload.len, 300);
        assert_memory_equal(e->payload.data, req->events[i]->payload.data, 300);
        assert_string_equal(e->created_at, NOW_TEXT);
    }
    assert_int_equal(page.next_seq, 4);
}

/* next_seq is the seq after the last event returned, or from_seq itself
 * when none is: a reader goes on from it either way. */
static void read_events_next_seq_follows_the_last_event_or_stays_at_from_seq(void **state)
{
    fx *f = *state;
    create_run(f, "run-1", 1);
    srv_error err;
    Cairn__V1__AppendEventsResponse out;
    ok(append_tx(f, events_req(f, "run-1", 25, 1000, 0), &out, &err), &err);

    static const size_t want[] = {10, 10, 5, 0};
    uint64_t from = 1;
    for (size_t p = 0; p < 4; p++) {
        Cairn__V1__ReadEventsResponse page = read_events(f, "run-1", from, 10, SIZE_MAX);
        assert_int_equal(page.n_events, want[p]);
        if (want[p])
            assert_int_equal(page.events[0]->seq, from);
        assert_int_equal(page.next_seq, from + want[p]); /* from_seq itself when empty */
        from = page.next_seq;
    }
    static const uint64_t past[] = {1000, (uint64_t)INT64_MAX, (uint64_t)INT64_MAX + 1,
                                    UINT64_MAX};
    for (size_t i = 0; i < sizeof past / sizeof past[0]; i++) {
        Cairn__V1__ReadEventsResponse page = read_events(f, "run-1", past[i], 10, SIZE_MAX);
        assert_int_equal(page.n_events, 0);
        assert_int_equal(page.next_seq, past[i]);
    }
    /* a budget smaller than one event still moves on by one */
    Cairn__V1__ReadEventsResponse page = read_events(f, "run-1", 7, 100, 1);
    assert_int_equal(page.n_events, 1);
    assert_int_equal(page.next_seq, 8);
}

static void read_events_of_an_unknown_run_is_not_found(void **state)
{
    fx *f = *state;
    srv_error err;
    Cairn__V1__ReadEventsResponse out;
    cairn__v1__read_events_response__init(&out);
    fails(srv_events_read(f->st, f->a, "ghost", 1, 10, SIZE_MAX, &out, &err), &err,
          SRV_NOT_FOUND, "\"ghost\"");
}

/* ---- resume ---- */

static Cairn__V1__ResumeResult resume(fx *f, char **all_workers, size_t n)
{
    srv_error err;
    Cairn__V1__ResumeRunRequest req;
    cairn__v1__resume_run_request__init(&req);
    req.run_id = "run-1";
    req.all_workers = all_workers;
    req.n_all_workers = n;
    Cairn__V1__ResumeResult out;
    cairn__v1__resume_result__init(&out);
    ok(srv_resume(f->st, f->a, &req, &out, &err), &err);
    return out;
}

static void resume_without_a_checkpoint_reruns_all_but_the_completed_from_seq_1(void **state)
{
    fx *f = *state;
    create_run(f, "run-1", 3);
    srv_error err;
    Cairn__V1__AppendEventsResponse appended;
    ok(append_tx(f, events_req(f, "run-1", 2, 4, 0), &appended, &err), &err);
    Cairn__V1__CompleteWorkerResponse done_w1;
    ok(complete(f, NOW_US, "w1", 0, &done_w1, &err), &err);

    Cairn__V1__ResumeResult r = resume(f, NULL, 0);
    assert_string_equal(r.run_id, "run-1");
    assert_int_equal(r.resume_from_seq, 1);
    assert_string_equal(r.checkpoint_id, "");
    assert_int_equal(r.n_workers_to_rerun, 2);
    assert_string_equal(r.workers_to_rerun[0], "w0");
    assert_string_equal(r.workers_to_rerun[1], "w2");
    assert_true(r.success);

    char *given[] = {"w1", "w3"}; /* the caller's list replaces the run's */
    r = resume(f, given, 2);
    assert_int_equal(r.n_workers_to_rerun, 1);
    assert_string_equal(r.workers_to_rerun[0], "w3");
}

static void resume_with_a_checkpoint_starts_after_its_events(void **state)
{
    fx *f = *state;
    create_run(f, "run-1", 3);
    srv_error err;
    Cairn__V1__AppendEventsResponse appended;
    ok(append_tx(f, events_req(f, "run-1", 4, 4, 0), &appended, &err), &err);
    Cairn__V1__CompleteWorkerResponse c;
    ok(complete(f, NOW_US, "w0", 0, &c, &err), &err); /* seq 5 */
    Cairn__V1__Checkpoint cp;
    ok(checkpoint(f, NOW_US + SEC, 5, 1, 10, &cp, &err), &err);
    assert_int_equal(cp.n_completed_workers, 1); /* the run's own, up to seq 5 */
    assert_string_equal(cp.completed_workers[0], "w0");
    ok(complete(f, NOW_US + 2 * SEC, "w1", 0, &c, &err), &err); /* seq 6, after it */
    ok(append_tx(f, events_req(f, "run-1", 3, 4, 0), &appended, &err), &err);

    Cairn__V1__ResumeResult r = resume(f, NULL, 0);
    assert_int_equal(r.resume_from_seq, 6);
    assert_string_equal(r.checkpoint_id, cp.checkpoint_id);
    assert_string_equal(r.resumed_from_state, "step-3-done");
    assert_int_equal(r.n_workers_to_rerun, 1);
    assert_string_equal(r.workers_to_rerun[0], "w2");
}

#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)

int main(void)
{
    const struct CMUnitTest tests[] = {
        T(create_run_then_get_run_returns_the_definition),
        T(create_run_again_returns_it_or_already_exists_when_different),
        T(get_run_of_an_unknown_run_is_not_found),
        T(list_runs_pages_in_creation_order),
        T(list_runs_last_full_page_has_no_next),
        T(list_runs_stops_at_the_byte_budget_with_at_least_one_run),
        T(append_gives_dense_seqs_across_batches),
        T(append_with_wrong_expected_next_seq_fails_and_stores_nothing),
        T(append_to_an_unknown_run_is_not_found),
        T(read_events_returns_every_field_as_appended),
        T(read_events_next_seq_follows_the_last_event_or_stays_at_from_seq),
        T(read_events_of_an_unknown_run_is_not_found),
        T(acquire_twice_is_failed_precondition_while_the_lease_is_live),
        T(fencing_tokens_increase_across_acquisitions),
        T(renew_with_a_wrong_lease_id_fails),
        T(release_of_a_lapsed_lease_is_ok),
        T(a_fenced_append_with_a_stale_token_fails_fenced),
        T(complete_worker_of_a_non_worker_is_invalid_argument),
        T(complete_worker_twice_is_failed_precondition),
        T(complete_worker_appends_worker_completed_ends_the_lease_and_reports_growth),
        T(checkpoint_create_with_retention_2_keeps_only_the_newest_2),
        T(a_pinned_checkpoint_survives_cleanup_until_unpinned),
        T(cleanup_returns_deleted_ids_oldest_first),
        T(download_of_the_latest_survives_it_being_replaced_before_the_pin),
        T(list_checkpoints_pages_by_bytes_with_at_least_one_checkpoint),
        T(resume_without_a_checkpoint_reruns_all_but_the_completed_from_seq_1),
        T(resume_with_a_checkpoint_starts_after_its_events),
        T(delete_run_takes_its_log_and_snapshots_and_says_whether_it_existed),
        T(a_download_open_when_its_run_is_deleted_reads_to_the_end),
        T(a_download_cut_short_by_its_runs_deletion_is_not_found_not_data_loss),
        T(sweep_deletes_runs_completed_longer_ago_than_the_retention_only),
        T(sweep_deletes_at_most_a_batch_of_runs_at_a_time),
    };
    return cmocka_run_group_tests_name("core", tests, NULL, NULL);
}
