/* The SQLite store through its vtable, as the ledger drives it: writes
 * between begin and commit (one savepoint per mutation), reads at any
 * time. Each test gets its own mkdtemp directory, removed afterwards. */
#include "base/arena.h"
#include "cairn/v1/coordinator.pb-c.h"
#include "store/store.h"
#include "store/sqlite/sqlite.h"

#include <ftw.h>
#include <setjmp.h>
#include <sqlite3.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

/* 2026-01-28T10:15:30.123456Z */
#define NOW_US (1769595330ll * 1000000 + 123456)
#define NOW_TEXT "2026-01-28T10:15:30.123456Z"

typedef struct fx {
    char dir[512];
    srv_store *st;
    srv_arena *a;
} fx;

/* ---- fixture ---- */

static void ok(srv_code rc, const srv_error *err)
{
    if (rc != SRV_OK)
        fail_msg("expected OK, got %d: %s", rc, err->msg);
}

static void open_store(fx *f)
{
    srv_error err;
    ok(srv_store_sqlite_open(f->dir, 2, &f->st, &err), &err);
}

static void close_store(fx *f)
{
    srv_store_close(f->st);
    f->st = NULL;
}

static int rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    return remove(path);
}

static int setup(void **state)
{
    fx *f = calloc(1, sizeof *f);
    const char *tmp = getenv("TMPDIR");
    snprintf(f->dir, sizeof f->dir, "%s/cairn-unit-store-XXXXXX", tmp && *tmp ? tmp : "/tmp");
    if (!mkdtemp(f->dir))
        return -1;
    f->a = srv_arena_create();
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fx *f = *state;
    close_store(f);
    srv_arena_destroy(f->a);
    int rc = nftw(f->dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
    free(f);
    return rc;
}

static int setup_open(void **state)
{
    if (setup(state))
        return -1;
    open_store(*state);
    return 0;
}

static void db_path(const fx *f, char out[600])
{
    snprintf(out, 600, "%s/cairn.db", f->dir);
}

/* ---- transactions and requests ---- */

static void begin(fx *f)
{
    srv_error err;
    ok(f->st->ops->begin(f->st, &err), &err);
}

static void commit(fx *f)
{
    srv_error err;
    ok(f->st->ops->commit(f->st, &err), &err);
}

/* A normalized CreateRunRequest: workers w0..w<n-1>, labels sorted. */
static Cairn__V1__CreateRunRequest *run_req(fx *f, const char *run_id, size_t workers)
{
    Cairn__V1__CreateRunRequest *r = srv_arena_alloc(f->a, sizeof *r);
    cairn__v1__create_run_request__init(r);
    r->idempotency_key = "k";
    r->run_id = srv_arena_strdup(f->a, run_id);
    r->n_workers = workers;
    r->workers = srv_arena_alloc(f->a, (workers + 1) * sizeof *r->workers);
    for (size_t i = 0; i < workers; i++) {
        char id[32];
        snprintf(id, sizeof id, "w%zu", i);
        r->workers[i] = srv_arena_strdup(f->a, id);
    }
    static const char *const keys[] = {"app", "env"}, *const values[] = {"etl", "prod"};
    r->n_labels = 2;
    r->labels = srv_arena_alloc(f->a, 2 * sizeof *r->labels);
    for (size_t i = 0; i < 2; i++) {
        r->labels[i] = srv_arena_alloc(f->a, sizeof *r->labels[i]);
        cairn__v1__create_run_request__labels_entry__init(r->labels[i]);
        r->labels[i]->key = (char *)keys[i];
        r->labels[i]->value = (char *)values[i];
    }
    return r;
}

static Cairn__V1__Run *create_run(fx *f, const char *run_id, size_t workers)
{
    srv_error err;
    Cairn__V1__Run *run = srv_arena_alloc(f->a, sizeof *run);
    begin(f);
    ok(f->st->ops->create_run(f->st, f->a, run_req(f, run_id, workers), NOW_US, run, &err), &err);
    commit(f);
    return run;
}

/* n events; the payload of event i is `len` bytes of (tag + i), except
 * that it starts with NUL and ends with 0xff, so binary data is exercised. */
static Cairn__V1__AppendEventsRequest *events_req(fx *f, const char *run_id, size_t n,
                                                  size_t len, uint8_t tag)
{
    Cairn__V1__AppendEventsRequest *r = srv_arena_alloc(f->a, sizeof *r);
    cairn__v1__append_events_request__init(r);
    r->idempotency_key = "k";
    r->run_id = srv_arena_strdup(f->a, run_id);
    r->n_events = n;
    r->events = srv_arena_alloc(f->a, n * sizeof *r->events);
    for (size_t i = 0; i < n; i++) {
        Cairn__V1__Event *e = srv_arena_alloc(f->a, sizeof *e);
        cairn__v1__event__init(e);
        e->type = i % 2 ? "step.done" : "step.started";
        e->worker_id = i % 3 ? "w1" : "";
        uint8_t *p = srv_arena_alloc(f->a, len + 2);
        memset(p, (uint8_t)(tag + i), len);
        if (len >= 2) {
            p[0] = 0;
            p[len - 1] = 0xff;
        }
        e->payload.data = p;
        e->payload.len = len;
        r->events[i] = e;
    }
    return r;
}

/* Appends in its own transaction; returns the store's code. */
static srv_code append_tx(fx *f, Cairn__V1__AppendEventsRequest *req,
                          Cairn__V1__AppendEventsResponse *out, srv_error *err)
{
    cairn__v1__append_events_response__init(out);
    begin(f);
    srv_code rc = f->st->ops->append_events(f->st, req, NOW_US, out, err);
    commit(f);
    return rc;
}

static Cairn__V1__ReadEventsResponse read_events(fx *f, const char *run_id, uint64_t from,
                                                 uint32_t max, size_t max_bytes)
{
    srv_error err;
    Cairn__V1__ReadEventsResponse out;
    cairn__v1__read_events_response__init(&out);
    ok(f->st->ops->read_events(f->st, f->a, run_id, from, max, max_bytes, &out, &err), &err);
    return out;
}

static Cairn__V1__Run get_run(fx *f, const char *run_id)
{
    srv_error err;
    Cairn__V1__Run run;
    ok(f->st->ops->get_run(f->st, f->a, run_id, &run, &err), &err);
    return run;
}

static srv_dedup_record record_of(const char *response)
{
    srv_dedup_record rec;
    for (int i = 0; i < 32; i++)
        rec.fingerprint[i] = (uint8_t)(i * 7 + 1);
    rec.response = (const uint8_t *)response;
    rec.response_len = strlen(response);
    return rec;
}

/* dedup_get in a transaction of its own (it runs on the writer). */
static bool dedup_found(fx *f, const srv_dedup_key *k, srv_dedup_record *out)
{
    srv_error err;
    bool found = false;
    begin(f);
    ok(f->st->ops->dedup_get(f->st, f->a, k, out, &found, &err), &err);
    commit(f);
    return found;
}

/* ---- runs ---- */

static void create_run_then_get_run_returns_the_definition(void **state)
{
    fx *f = *state;
    Cairn__V1__Run *created = create_run(f, "run-1", 3);
    assert_string_equal(created->run_id, "run-1");
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

    srv_error err;
    Cairn__V1__Run run;
    begin(f);
    srv_code rc = f->st->ops->create_run(f->st, f->a, run_req(f, "run-1", 4), NOW_US, &run, &err);
    commit(f);
    assert_int_equal(rc, SRV_ALREADY_EXISTS);
    assert_non_null(strstr(err.msg, "run_id"));
    assert_int_equal(get_run(f, "run-1").n_workers, 3);
}

static void get_run_of_an_unknown_run_is_not_found(void **state)
{
    fx *f = *state;
    srv_error err;
    Cairn__V1__Run run;
    assert_int_equal(f->st->ops->get_run(f->st, f->a, "nope", &run, &err), SRV_NOT_FOUND);
    assert_non_null(strstr(err.msg, "run_id"));
    assert_non_null(strstr(err.msg, "\"nope\""));
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
        ok(f->st->ops->list_runs(f->st, f->a, after, 3, &out, &next, &err), &err);
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
    ok(f->st->ops->list_runs(f->st, f->a, 0, 10, &out, &next, &err), &err);
    assert_int_equal(out.n_runs, 0);
    assert_int_equal(next, 0);
    for (int i = 0; i < 4; i++) {
        char id[16];
        snprintf(id, sizeof id, "run-%d", i);
        create_run(f, id, 1);
    }
    ok(f->st->ops->list_runs(f->st, f->a, 0, 2, &out, &next, &err), &err);
    assert_int_equal(out.n_runs, 2);
    assert_true(next != 0);
    ok(f->st->ops->list_runs(f->st, f->a, next, 2, &out, &next, &err), &err);
    assert_int_equal(out.n_runs, 2);
    assert_string_equal(out.runs[1]->run_id, "run-3");
    assert_int_equal(next, 0);
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
        assert_int_equal(append_tx(f, req, &out, &err), SRV_FAILED_PRECONDITION);
        assert_non_null(strstr(err.msg, "expected_next_seq"));
        assert_non_null(strstr(err.msg, "3")); /* the run's next_seq */
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
    assert_int_equal(append_tx(f, events_req(f, "ghost", 1, 4, 0), &out, &err), SRV_NOT_FOUND);
    assert_non_null(strstr(err.msg, "run_id"));
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

static void read_events_pages_by_max_events_until_an_empty_page(void **state)
{
    fx *f = *state;
    create_run(f, "run-1", 1);
    srv_error err;
    Cairn__V1__AppendEventsResponse out;
    ok(append_tx(f, events_req(f, "run-1", 25, 16, 0), &out, &err), &err);
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
    Cairn__V1__ReadEventsResponse past = read_events(f, "run-1", 1000, 10, SIZE_MAX);
    assert_int_equal(past.n_events, 0);
    assert_int_equal(past.next_seq, 1000);
}

/* SQLite integers are signed; a from_seq past INT64_MAX is past every
 * event, not a negative number that would match them all. */
static void read_events_from_past_int64_max_reads_nothing(void **state)
{
    fx *f = *state;
    create_run(f, "run-1", 1);
    srv_error err;
    Cairn__V1__AppendEventsResponse out;
    ok(append_tx(f, events_req(f, "run-1", 3, 4, 0), &out, &err), &err);
    static const uint64_t from[] = {(uint64_t)INT64_MAX, (uint64_t)INT64_MAX + 1, UINT64_MAX};
    for (size_t i = 0; i < sizeof from / sizeof from[0]; i++) {
        Cairn__V1__ReadEventsResponse page = read_events(f, "run-1", from[i], 10, SIZE_MAX);
        assert_int_equal(page.n_events, 0);
        assert_int_equal(page.next_seq, from[i]);
    }
}

static void read_events_byte_budget_gives_fewer_events_but_at_least_one(void **state)
{
    fx *f = *state;
    create_run(f, "run-1", 1);
    srv_error err;
    Cairn__V1__AppendEventsResponse out;
    ok(append_tx(f, events_req(f, "run-1", 10, 1000, 0), &out, &err), &err);

    Cairn__V1__ReadEventsResponse page = read_events(f, "run-1", 1, 100, 1);
    assert_int_equal(page.n_events, 1); /* even over budget: progress */
    assert_int_equal(page.next_seq, 2);

    page = read_events(f, "run-1", 1, 100, 3500);
    assert_in_range(page.n_events, 1, 3);
    size_t bytes = 0;
    for (size_t i = 0; i < page.n_events; i++)
        bytes += page.events[i]->payload.len;
    assert_true(bytes <= 3500);

    /* paging with the small budget still reads everything, in order */
    uint64_t from = 1;
    size_t pages = 0;
    for (;; pages++) {
        page = read_events(f, "run-1", from, 100, 3500);
        if (!page.n_events)
            break;
        for (size_t i = 0; i < page.n_events; i++)
            assert_int_equal(page.events[i]->seq, from + i);
        from = page.next_seq;
    }
    assert_int_equal(from, 11);
    assert_true(pages >= 4);

    page = read_events(f, "run-1", 1, 100, SIZE_MAX);
    assert_int_equal(page.n_events, 10);
}

static void reads_see_committed_data_only(void **state)
{
    fx *f = *state;
    create_run(f, "run-1", 1);
    srv_error err;
    Cairn__V1__AppendEventsResponse out;
    cairn__v1__append_events_response__init(&out);
    begin(f);
    ok(f->st->ops->append_events(f->st, events_req(f, "run-1", 2, 4, 0), NOW_US, &out, &err),
       &err);
    assert_int_equal(read_events(f, "run-1", 1, 100, SIZE_MAX).n_events, 0);
    assert_int_equal(get_run(f, "run-1").next_seq, 1);
    commit(f);
    assert_int_equal(read_events(f, "run-1", 1, 100, SIZE_MAX).n_events, 2);
    assert_int_equal(get_run(f, "run-1").next_seq, 3);
}

/* ---- idempotency records and transactions ---- */

static void dedup_put_in_a_transaction_is_visible_after_commit(void **state)
{
    fx *f = *state;
    create_run(f, "run-1", 1);
    srv_error err;
    srv_dedup_key k = {"run-1", "AppendEvents", "key-1"};
    srv_dedup_record rec = record_of("\x08\x01\x10\x03 response"), got;
    assert_false(dedup_found(f, &k, &got));
    begin(f);
    ok(f->st->ops->dedup_put(f->st, &k, &rec, NOW_US, &err), &err);
    commit(f);
    assert_true(dedup_found(f, &k, &got));
    assert_memory_equal(got.fingerprint, rec.fingerprint, 32);
    assert_int_equal(got.response_len, rec.response_len);
    assert_memory_equal(got.response, rec.response, rec.response_len);
}

static void dedup_records_are_scoped_by_run_method_and_key(void **state)
{
    fx *f = *state;
    create_run(f, "run-1", 1);
    create_run(f, "run-2", 1);
    srv_error err;
    srv_dedup_key k = {"run-1", "AppendEvents", "key-1"};
    srv_dedup_record rec = record_of("r"), got;
    begin(f);
    ok(f->st->ops->dedup_put(f->st, &k, &rec, NOW_US, &err), &err);
    commit(f);
    srv_dedup_key other_run = {"run-2", "AppendEvents", "key-1"},
                  other_method = {"run-1", "CreateRun", "key-1"},
                  other_key = {"run-1", "AppendEvents", "key-2"};
    assert_false(dedup_found(f, &other_run, &got));
    assert_false(dedup_found(f, &other_method, &got));
    assert_false(dedup_found(f, &other_key, &got));
    assert_true(dedup_found(f, &k, &got));
}

static void dedup_record_with_empty_response_round_trips(void **state)
{
    fx *f = *state;
    create_run(f, "run-1", 1);
    srv_error err;
    srv_dedup_key k = {"run-1", "ReleaseWorker", "key-1"};
    srv_dedup_record rec = record_of(""), got;
    begin(f);
    ok(f->st->ops->dedup_put(f->st, &k, &rec, NOW_US, &err), &err);
    commit(f);
    assert_true(dedup_found(f, &k, &got));
    assert_int_equal(got.response_len, 0);
    assert_memory_equal(got.fingerprint, rec.fingerprint, 32);
}

static void dedup_put_for_a_missing_run_fails(void **state)
{
    fx *f = *state;
    srv_error err;
    srv_dedup_key k = {"ghost", "AppendEvents", "key-1"};
    srv_dedup_record rec = record_of("r");
    begin(f);
    assert_int_not_equal(f->st->ops->dedup_put(f->st, &k, &rec, NOW_US, &err), SRV_OK);
    f->st->ops->rollback(f->st);
}

/* The ledger's path for a failing mutation of a batch: its event and its
 * idempotency record go, the batch's other mutations stay. */
static void rollback_to_savepoint_drops_event_and_dedup_record_of_that_mutation_only(void **state)
{
    fx *f = *state;
    create_run(f, "run-1", 1);
    srv_error err;
    Cairn__V1__AppendEventsResponse out;
    srv_dedup_key dropped = {"run-1", "AppendEvents", "dropped"};
    srv_dedup_key kept = {"run-1", "AppendEvents", "kept"};
    srv_dedup_record rec = record_of("resp"), got;

    begin(f);
    ok(f->st->ops->savepoint(f->st, &err), &err);
    ok(f->st->ops->append_events(f->st, events_req(f, "run-1", 3, 4, 1), NOW_US, &out, &err),
       &err);
    ok(f->st->ops->dedup_put(f->st, &dropped, &rec, NOW_US, &err), &err);
    f->st->ops->rollback_to(f->st);

    ok(f->st->ops->savepoint(f->st, &err), &err);
    ok(f->st->ops->append_events(f->st, events_req(f, "run-1", 2, 4, 2), NOW_US, &out, &err),
       &err);
    assert_int_equal(out.first_seq, 1); /* the dropped seqs are reused: no gap */
    ok(f->st->ops->dedup_put(f->st, &kept, &rec, NOW_US, &err), &err);
    ok(f->st->ops->release(f->st, &err), &err);
    commit(f);

    assert_false(dedup_found(f, &dropped, &got));
    assert_true(dedup_found(f, &kept, &got));
    Cairn__V1__ReadEventsResponse page = read_events(f, "run-1", 1, 100, SIZE_MAX);
    assert_int_equal(page.n_events, 2);
    assert_int_equal(page.events[0]->seq, 1);
    assert_int_equal(page.events[0]->payload.data[1], 2); /* from the kept batch */
    assert_int_equal(page.events[1]->seq, 2);
    assert_int_equal(get_run(f, "run-1").next_seq, 3);
}

static void rollback_of_a_whole_transaction_leaves_nothing(void **state)
{
    fx *f = *state;
    srv_error err;
    Cairn__V1__Run run;
    Cairn__V1__AppendEventsResponse out;
    srv_dedup_key k = {"run-1", "CreateRun", "key-1"};
    srv_dedup_record rec = record_of("resp"), got;
    begin(f);
    ok(f->st->ops->create_run(f->st, f->a, run_req(f, "run-1", 2), NOW_US, &run, &err), &err);
    ok(f->st->ops->append_events(f->st, events_req(f, "run-1", 3, 4, 0), NOW_US, &out, &err),
       &err);
    ok(f->st->ops->dedup_put(f->st, &k, &rec, NOW_US, &err), &err);
    f->st->ops->rollback(f->st);

    assert_int_equal(f->st->ops->get_run(f->st, f->a, "run-1", &run, &err), SRV_NOT_FOUND);
    assert_false(dedup_found(f, &k, &got));
    Cairn__V1__ListRunsResponse list;
    uint64_t next;
    cairn__v1__list_runs_response__init(&list);
    ok(f->st->ops->list_runs(f->st, f->a, 0, 10, &list, &next, &err), &err);
    assert_int_equal(list.n_runs, 0);

    /* and the store is usable afterwards: the same run can be created */
    create_run(f, "run-1", 2);
    assert_int_equal(get_run(f, "run-1").next_seq, 1);
}

static void data_survives_close_and_reopen(void **state)
{
    fx *f = *state;
    create_run(f, "run-1", 2);
    srv_error err;
    Cairn__V1__AppendEventsResponse out;
    ok(append_tx(f, events_req(f, "run-1", 4, 64, 3), &out, &err), &err);
    srv_dedup_key k = {"run-1", "AppendEvents", "key-1"};
    srv_dedup_record rec = record_of("resp"), got;
    begin(f);
    ok(f->st->ops->dedup_put(f->st, &k, &rec, NOW_US, &err), &err);
    commit(f);
    close_store(f);

    open_store(f);
    Cairn__V1__Run run = get_run(f, "run-1");
    assert_int_equal(run.n_workers, 2);
    assert_int_equal(run.n_labels, 2);
    assert_int_equal(run.next_seq, 5);
    assert_string_equal(run.created_at, NOW_TEXT);
    Cairn__V1__ReadEventsResponse page = read_events(f, "run-1", 1, 100, SIZE_MAX);
    assert_int_equal(page.n_events, 4);
    assert_int_equal(page.events[3]->payload.len, 64);
    assert_true(dedup_found(f, &k, &got));
    assert_memory_equal(got.response, "resp", 4);
    ok(append_tx(f, events_req(f, "run-1", 1, 4, 0), &out, &err), &err);
    assert_int_equal(out.first_seq, 5);
}

/* ---- schema versions and migrations ---- */

static int query_int(sqlite3 *db, const char *sql)
{
    sqlite3_stmt *s;
    assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &s, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_step(s), SQLITE_ROW);
    int v = sqlite3_column_int(s, 0);
    sqlite3_finalize(s);
    return v;
}

static bool has_table(sqlite3 *db, const char *name)
{
    sqlite3_stmt *s;
    assert_int_equal(sqlite3_prepare_v2(db, "SELECT count(*) FROM sqlite_master WHERE "
                                            "type = 'table' AND name = ?1",
                                        -1, &s, NULL),
                     SQLITE_OK);
    sqlite3_bind_text(s, 1, name, -1, SQLITE_STATIC);
    assert_int_equal(sqlite3_step(s), SQLITE_ROW);
    bool found = sqlite3_column_int(s, 0) == 1;
    sqlite3_finalize(s);
    return found;
}

static void exec(sqlite3 *db, const char *sql)
{
    char *msg = NULL;
    if (sqlite3_exec(db, sql, NULL, NULL, &msg) != SQLITE_OK)
        fail_msg("%s: %s", sql, msg);
}

static void fresh_database_has_the_current_schema_version(void **state)
{
    fx *f = *state;
    open_store(f);
    close_store(f);
    char path[600];
    db_path(f, path);
    sqlite3 *db;
    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    assert_true(srv_sqlite_schema_version() >= 1);
    assert_int_equal(query_int(db, "PRAGMA user_version"), srv_sqlite_schema_version());
    sqlite3_close(db);
}

static void newer_schema_is_refused_and_its_data_left_untouched(void **state)
{
    fx *f = *state;
    char path[600], sql[128];
    db_path(f, path);
    const int newer = srv_sqlite_schema_version() + 1;
    sqlite3 *db;
    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    exec(db, "CREATE TABLE keep (x TEXT); INSERT INTO keep VALUES ('precious');");
    snprintf(sql, sizeof sql, "PRAGMA user_version = %d", newer);
    exec(db, sql);
    sqlite3_close(db);

    srv_error err;
    srv_store *st = NULL;
    assert_int_equal(srv_store_sqlite_open(f->dir, 2, &st, &err), SRV_FAILED_PRECONDITION);
    assert_null(st);
    char want[16];
    snprintf(want, sizeof want, "%d", newer);
    if (!strstr(err.msg, want) || !strstr(err.msg, "version"))
        fail_msg("message should name version %d: %s", newer, err.msg);

    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    assert_int_equal(query_int(db, "PRAGMA user_version"), newer);
    assert_int_equal(query_int(db, "SELECT count(*) FROM keep WHERE x = 'precious'"), 1);
    assert_false(has_table(db, "runs"));
    sqlite3_close(db);
}

static void migrate_from_version_0_creates_the_tables(void **state)
{
    (void)state;
    sqlite3 *db;
    assert_int_equal(sqlite3_open(":memory:", &db), SQLITE_OK);
    assert_int_equal(query_int(db, "PRAGMA user_version"), 0);
    srv_error err;
    ok(srv_sqlite_migrate(db, srv_sqlite_schema_version(), &err), &err);
    assert_int_equal(query_int(db, "PRAGMA user_version"), srv_sqlite_schema_version());
    static const char *const tables[] = {"runs", "run_workers", "run_labels", "events", "dedup"};
    for (size_t i = 0; i < sizeof tables / sizeof tables[0]; i++)
        if (!has_table(db, tables[i]))
            fail_msg("table %s missing after migration", tables[i]);
    /* a second run is a no-op */
    ok(srv_sqlite_migrate(db, srv_sqlite_schema_version(), &err), &err);
    assert_int_equal(query_int(db, "PRAGMA user_version"), srv_sqlite_schema_version());
    sqlite3_close(db);
}

static void migrate_to_target_0_changes_nothing(void **state)
{
    (void)state;
    sqlite3 *db;
    assert_int_equal(sqlite3_open(":memory:", &db), SQLITE_OK);
    srv_error err;
    ok(srv_sqlite_migrate(db, 0, &err), &err);
    assert_int_equal(query_int(db, "PRAGMA user_version"), 0);
    assert_false(has_table(db, "runs"));
    sqlite3_close(db);
}

static void migrate_refuses_a_newer_database(void **state)
{
    (void)state;
    sqlite3 *db;
    assert_int_equal(sqlite3_open(":memory:", &db), SQLITE_OK);
    exec(db, "PRAGMA user_version = 99");
    srv_error err;
    assert_int_equal(srv_sqlite_migrate(db, srv_sqlite_schema_version(), &err),
                     SRV_FAILED_PRECONDITION);
    assert_non_null(strstr(err.msg, "99"));
    assert_int_equal(query_int(db, "PRAGMA user_version"), 99);
    sqlite3_close(db);
}

static void open_migrates_a_version_0_database_keeping_its_data(void **state)
{
    fx *f = *state;
    char path[600];
    db_path(f, path);
    sqlite3 *db;
    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    exec(db, "CREATE TABLE keep (x TEXT); INSERT INTO keep VALUES ('precious');");
    sqlite3_close(db);

    open_store(f);
    create_run(f, "run-1", 1);
    close_store(f);

    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    assert_int_equal(query_int(db, "PRAGMA user_version"), srv_sqlite_schema_version());
    assert_int_equal(query_int(db, "SELECT count(*) FROM keep"), 1);
    assert_int_equal(query_int(db, "SELECT count(*) FROM runs"), 1);
    sqlite3_close(db);
}

/* A store that cannot open its file reports it; it must not crash while
 * cleaning up the half-opened store. */
static void open_fails_cleanly_when_cairn_db_cannot_be_opened(void **state)
{
    fx *f = *state;
    char missing[600], path[600];
    snprintf(missing, sizeof missing, "%s/no/such/dir", f->dir);
    srv_error err;
    srv_store *st = NULL;
    memset(&err, 0, sizeof err);
    assert_int_equal(srv_store_sqlite_open(missing, 2, &st, &err), SRV_UNAVAILABLE);
    assert_null(st);
    assert_non_null(strstr(err.msg, "cairn.db"));

    db_path(f, path);
    assert_int_equal(mkdir(path, 0700), 0); /* cairn.db is a directory */
    assert_int_equal(srv_store_sqlite_open(f->dir, 2, &st, &err), SRV_UNAVAILABLE);
    assert_null(st);
}

static void open_of_a_file_that_is_not_a_database_is_data_loss(void **state)
{
    fx *f = *state;
    char path[600];
    db_path(f, path);
    FILE *fp = fopen(path, "w");
    assert_non_null(fp);
    for (int i = 0; i < 64; i++)
        fputs("this is not an sqlite database. ", fp);
    fclose(fp);
    srv_error err;
    srv_store *st = NULL;
    assert_int_equal(srv_store_sqlite_open(f->dir, 2, &st, &err), SRV_DATA_LOSS);
    assert_null(st);
}

#define T_OPEN(fn) cmocka_unit_test_setup_teardown(fn, setup_open, teardown)
#define T_DIR(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)

int main(void)
{
    const struct CMUnitTest tests[] = {
        T_OPEN(create_run_then_get_run_returns_the_definition),
        T_OPEN(create_run_again_returns_it_or_already_exists_when_different),
        T_OPEN(get_run_of_an_unknown_run_is_not_found),
        T_OPEN(list_runs_pages_in_creation_order),
        T_OPEN(list_runs_last_full_page_has_no_next),
        T_OPEN(append_gives_dense_seqs_across_batches),
        T_OPEN(append_with_wrong_expected_next_seq_fails_and_stores_nothing),
        T_OPEN(append_to_an_unknown_run_is_not_found),
        T_OPEN(read_events_returns_every_field_as_appended),
        T_OPEN(read_events_pages_by_max_events_until_an_empty_page),
        T_OPEN(read_events_from_past_int64_max_reads_nothing),
        T_OPEN(read_events_byte_budget_gives_fewer_events_but_at_least_one),
        T_OPEN(reads_see_committed_data_only),
        T_OPEN(dedup_put_in_a_transaction_is_visible_after_commit),
        T_OPEN(dedup_records_are_scoped_by_run_method_and_key),
        T_OPEN(dedup_record_with_empty_response_round_trips),
        T_OPEN(dedup_put_for_a_missing_run_fails),
        T_OPEN(rollback_to_savepoint_drops_event_and_dedup_record_of_that_mutation_only),
        T_OPEN(rollback_of_a_whole_transaction_leaves_nothing),
        T_OPEN(data_survives_close_and_reopen),
        T_DIR(fresh_database_has_the_current_schema_version),
        T_DIR(newer_schema_is_refused_and_its_data_left_untouched),
        T_DIR(migrate_from_version_0_creates_the_tables),
        T_DIR(migrate_to_target_0_changes_nothing),
        T_DIR(migrate_refuses_a_newer_database),
        T_DIR(open_migrates_a_version_0_database_keeping_its_data),
        T_DIR(open_fails_cleanly_when_cairn_db_cannot_be_opened),
        T_DIR(open_of_a_file_that_is_not_a_database_is_data_loss),
    };
    return cmocka_run_group_tests_name("store_sqlite", tests, NULL, NULL);
}
