/* The domain rules of core/ (domain.h) over a real SQLite store: each
 * mutation runs as the ledger runs it (the write transaction, a
 * savepoint, released on success and rolled back to on error, then the
 * commit), with an explicit now_us, so lease and pin expiry need no
 * waiting. Each test gets its own mkdtemp data dir, removed afterwards. */
#include "base/arena.h"
#include "base/clock.h"
#include "base/sha256.h"
#include "core/domain.h"
#include "store/store.h"

#include <ftw.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <cmocka.h>

/* 2026-01-28T10:15:30.123456Z */
#define NOW_US (1769595330ll * 1000000 + 123456)
#define NOW_TEXT "2026-01-28T10:15:30.123456Z"
#define SEC 1000000ll

typedef struct fx {
    char dir[512];
    srv_store *st;
    srv_arena *a;
    srv_txn *t;
    srv_apply ap;     /* the last mutation's, grew_* included */
} fx;

/* ---- fixture ---- */

static void ok(srv_code rc, const srv_error *err)
{
    if (rc != SRV_OK)
        fail_msg("expected OK, got %s: %s", srv_code_name(rc), err->msg);
}

/* rc must be want and the message must contain text. */
static void fails(srv_code rc, const srv_error *err, srv_code want, const char *text)
{
    if (rc != want)
        fail_msg("expected %s, got %s: %s", srv_code_name(want), srv_code_name(rc),
                 rc ? err->msg : "");
    if (!strstr(err->msg, text))
        fail_msg("the message should contain \"%s\": %s", text, err->msg);
}

static void open_store(fx *f)
{
    srv_error err;
    const srv_store_config cfg = {.data_dir = f->dir, .readers = 2};
    ok(srv_store_open("sqlite", &cfg, &f->st, &err), &err);
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
    snprintf(f->dir, sizeof f->dir, "%s/cairn-unit-core-XXXXXX", tmp && *tmp ? tmp : "/tmp");
    if (!mkdtemp(f->dir))
        return -1;
    f->a = srv_arena_create();
    open_store(f);
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

/* ---- mutations, as the ledger applies them ---- */

/* Opens a mutation at now_us: the write transaction and its savepoint. */
static srv_apply *mut(fx *f, int64_t now_us)
{
    srv_error err;
    ok(srv_store_begin(f->st, &f->t, &err), &err);
    ok(srv_store_savepoint(f->t, &err), &err);
    f->ap = (srv_apply){f->t, f->a, now_us, NULL, NULL, 0};
    return &f->ap;
}

/* Ends it: kept on success, undone to its savepoint on error; then the
 * commit. Returns the mutation's code. */
static srv_code done(fx *f, srv_code rc)
{
    srv_error err;
    if (rc)
        srv_store_rollback_to(f->t);
    else
        ok(srv_store_release(f->t, &err), &err);
    ok(srv_store_commit(f->t, &err), &err);
    return rc;
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
    ok(done(f, srv_run_create(mut(f, NOW_US), run_req(f, run_id, workers), run, &err)), &err);
    return run;
}

static Cairn__V1__Run get_run(fx *f, const char *run_id)
{
    srv_error err;
    Cairn__V1__Run run;
    ok(srv_run_read(f->st, f->a, run_id, &run, &err), &err);
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

/* One event of worker_id, fenced with token. */
static Cairn__V1__AppendEventsRequest *fenced_req(fx *f, const char *run_id,
                                                  const char *worker_id, uint64_t token)
{
    Cairn__V1__AppendEventsRequest *r = events_req(f, run_id, 1, 4, 0);
    r->events[0]->worker_id = (char *)worker_id;
    r->fencing_token = token;
    return r;
}

static srv_code append_at(fx *f, int64_t now_us, Cairn__V1__AppendEventsRequest *req,
                          Cairn__V1__AppendEventsResponse *out, srv_error *err)
{
    cairn__v1__append_events_response__init(out);
    return done(f, srv_events_append(mut(f, now_us), req, out, err));
}

static srv_code append_tx(fx *f, Cairn__V1__AppendEventsRequest *req,
                          Cairn__V1__AppendEventsResponse *out, srv_error *err)
{
    return append_at(f, NOW_US, req, out, err);
}

static Cairn__V1__ReadEventsResponse read_events(fx *f, const char *run_id, uint64_t from,
                                                 uint32_t max, size_t max_bytes)
{
    srv_error err;
    Cairn__V1__ReadEventsResponse out;
    cairn__v1__read_events_response__init(&out);
    ok(srv_events_read(f->st, f->a, run_id, from, max, max_bytes, &out, &err), &err);
    return out;
}

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
        ok(srv_runs_read(f->st, f->a, after, 3, &out, &next, &err), &err);
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
    ok(srv_runs_read(f->st, f->a, 0, 10, &out, &next, &err), &err);
    assert_int_equal(out.n_runs, 0);
    assert_int_equal(next, 0);
    for (int i = 0; i < 4; i++) {
        char id[16];
        snprintf(id, sizeof id, "run-%d", i);
        create_run(f, id, 1);
    }
    cairn__v1__list_runs_response__init(&out);
    ok(srv_runs_read(f->st, f->a, 0, 2, &out, &next, &err), &err);
    assert_int_equal(out.n_runs, 2);
    assert_true(next != 0);
    cairn__v1__list_runs_response__init(&out);
    ok(srv_runs_read(f->st, f->a, next, 2, &out, &next, &err), &err);
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

/* ---- leases and fencing ---- */

static srv_code acquire(fx *f, int64_t now_us, const char *worker_id, const char *holder,
                        uint32_t ttl_ms, Cairn__V1__Lease *out, srv_error *err)
{
    Cairn__V1__AcquireWorkerRequest req;
    cairn__v1__acquire_worker_request__init(&req);
    req.idempotency_key = "k";
    req.run_id = "run-1";
    req.worker_id = (char *)worker_id;
    req.holder = (char *)holder;
    req.ttl_ms = ttl_ms;
    return done(f, srv_lease_acquire(mut(f, now_us), &req, out, err));
}

static Cairn__V1__Lease acquired(fx *f, int64_t now_us, const char *worker_id, uint32_t ttl_ms)
{
    srv_error err;
    Cairn__V1__Lease l;
    ok(acquire(f, now_us, worker_id, "holder-1", ttl_ms, &l, &err), &err);
    return l;
}

static srv_code renew(fx *f, int64_t now_us, const char *lease_id, uint32_t ttl_ms,
                      Cairn__V1__Lease *out, srv_error *err)
{
    Cairn__V1__RenewLeaseRequest req;
    cairn__v1__renew_lease_request__init(&req);
    req.run_id = "run-1";
    req.worker_id = "w0";
    req.lease_id = (char *)lease_id;
    req.ttl_ms = ttl_ms;
    return done(f, srv_lease_renew(mut(f, now_us), &req, out, err));
}

static srv_code release(fx *f, int64_t now_us, const char *lease_id, srv_error *err)
{
    Cairn__V1__ReleaseWorkerRequest req;
    cairn__v1__release_worker_request__init(&req);
    req.run_id = "run-1";
    req.worker_id = "w0";
    req.lease_id = (char *)lease_id;
    return done(f, srv_lease_release(mut(f, now_us), &req, err));
}

static void acquire_twice_is_failed_precondition_while_the_lease_is_live(void **state)
{
    fx *f = *state;
    create_run(f, "run-1", 2);
    Cairn__V1__Lease first = acquired(f, NOW_US, "w0", 10000);
    assert_int_equal(first.fencing_token, 1);
    assert_string_equal(first.holder, "holder-1");
    assert_string_equal(first.run_id, "run-1");
    assert_string_equal(first.worker_id, "w0");

    srv_error err;
    Cairn__V1__Lease l;
    static const int64_t during[] = {0, 1, 10 * SEC - 1};
    for (size_t i = 0; i < sizeof during / sizeof during[0]; i++)
        fails(acquire(f, NOW_US + during[i], "w0", "holder-2", 10000, &l, &err), &err,
              SRV_FAILED_PRECONDITION, "is leased to holder holder-1");
    /* another worker of the run is free */
    assert_int_equal(acquired(f, NOW_US + 1, "w1", 10000).fencing_token, 1);
    /* at its expiry the lease is over */
    ok(acquire(f, NOW_US + 10 * SEC, "w0", "holder-2", 10000, &l, &err), &err);
    assert_string_equal(l.holder, "holder-2");
    assert_int_equal(l.fencing_token, 2);
}

static void fencing_tokens_increase_across_acquisitions(void **state)
{
    fx *f = *state;
    create_run(f, "run-1", 1);
    srv_error err;
    Cairn__V1__Lease l = acquired(f, NOW_US, "w0", 1000);
    assert_int_equal(l.fencing_token, 1);
    ok(release(f, NOW_US + 1, l.lease_id, &err), &err);
    l = acquired(f, NOW_US + 2, "w0", 1000); /* after a release */
    assert_int_equal(l.fencing_token, 2);
    l = acquired(f, NOW_US + 10 * SEC, "w0", 1000); /* after a lapse */
    assert_int_equal(l.fencing_token, 3);
    close_store(f); /* and across a restart */
    open_store(f);
    l = acquired(f, NOW_US + 20 * SEC, "w0", 1000);
    assert_int_equal(l.fencing_token, 4);
}

static void renew_with_a_wrong_lease_id_fails(void **state)
{
    fx *f = *state;
    create_run(f, "run-1", 1);
    Cairn__V1__Lease l = acquired(f, NOW_US, "w0", 10000);
    srv_error err;
    Cairn__V1__Lease out;
    fails(renew(f, NOW_US + SEC, "0123456789abcdef", 10000, &out, &err), &err,
          SRV_FAILED_PRECONDITION, "lease_id: 0123456789abcdef is not the current lease");

    ok(renew(f, NOW_US + 5 * SEC, l.lease_id, 10000, &out, &err), &err);
    char when[32];
    assert_string_equal(out.expires_at, srv_format_time(when, NOW_US + 15 * SEC));
    assert_string_equal(out.lease_id, l.lease_id);
    assert_int_equal(out.fencing_token, l.fencing_token);
    /* a lapsed lease is not renewed */
    fails(renew(f, NOW_US + 15 * SEC, l.lease_id, 10000, &out, &err), &err,
          SRV_FAILED_PRECONDITION, "expired");
}

static void release_of_a_lapsed_lease_is_ok(void **state)
{
    fx *f = *state;
    create_run(f, "run-1", 1);
    Cairn__V1__Lease l = acquired(f, NOW_US, "w0", 1000);
    srv_error err;
    ok(release(f, NOW_US + 2 * SEC, l.lease_id, &err), &err);
    fails(release(f, NOW_US + 2 * SEC, "not-this-one", &err), &err, SRV_FAILED_PRECONDITION,
          "lease_id");
    assert_int_equal(acquired(f, NOW_US + 3 * SEC, "w0", 1000).fencing_token, 2);
}

static void a_fenced_append_with_a_stale_token_fails_fenced(void **state)
{
    fx *f = *state;
    create_run(f, "run-1", 1);
    srv_error err;
    Cairn__V1__AppendEventsResponse out;
    Cairn__V1__Lease first = acquired(f, NOW_US, "w0", 1000);
    ok(append_at(f, NOW_US + 1, fenced_req(f, "run-1", "w0", first.fencing_token), &out, &err),
       &err);
    /* the lease lapsed: its token no longer writes */
    fails(append_at(f, NOW_US + 2 * SEC, fenced_req(f, "run-1", "w0", first.fencing_token), &out,
                    &err),
          &err, SRV_FAILED_PRECONDITION, "(fenced)");
    Cairn__V1__Lease second = acquired(f, NOW_US + 3 * SEC, "w0", 1000);
    assert_int_equal(second.fencing_token, 2);
    fails(append_at(f, NOW_US + 3 * SEC, fenced_req(f, "run-1", "w0", first.fencing_token), &out,
                    &err),
          &err, SRV_FAILED_PRECONDITION, "fenced");
    assert_int_equal(get_run(f, "run-1").next_seq, 2); /* nothing stored */
    ok(append_at(f, NOW_US + 3 * SEC, fenced_req(f, "run-1", "w0", 2), &out, &err), &err);
    assert_int_equal(out.first_seq, 2);
}

/* ---- completing workers ---- */

static srv_code complete(fx *f, int64_t now_us, const char *worker_id, uint64_t token,
                         Cairn__V1__CompleteWorkerResponse *out, srv_error *err)
{
    Cairn__V1__CompleteWorkerRequest req;
    cairn__v1__complete_worker_request__init(&req);
    req.run_id = "run-1";
    req.worker_id = (char *)worker_id;
    req.fencing_token = token;
    cairn__v1__complete_worker_response__init(out);
    return done(f, srv_worker_complete(mut(f, now_us), &req, out, err));
}

static void complete_worker_of_a_non_worker_is_invalid_argument(void **state)
{
    fx *f = *state;
    create_run(f, "run-1", 2);
    srv_error err;
    Cairn__V1__CompleteWorkerResponse out;
    fails(complete(f, NOW_US, "w9", 0, &out, &err), &err, SRV_INVALID_ARGUMENT,
          "worker_id: \"w9\" is not a worker of run run-1");
    assert_null(f->ap.grew_run_id);
    assert_int_equal(get_run(f, "run-1").next_seq, 1);
}

static void complete_worker_twice_is_failed_precondition(void **state)
{
    fx *f = *state;
    create_run(f, "run-1", 2);
    srv_error err;
    Cairn__V1__CompleteWorkerResponse out;
    ok(complete(f, NOW_US, "w0", 0, &out, &err), &err);
    assert_int_equal(out.seq, 1);
    fails(complete(f, NOW_US, "w0", 0, &out, &err), &err, SRV_FAILED_PRECONDITION,
          "already completed (its worker.completed event is seq 1)");
    assert_null(f->ap.grew_run_id);
    Cairn__V1__Run run = get_run(f, "run-1");
    assert_int_equal(run.next_seq, 2);
    assert_int_equal(run.n_completed_workers, 1);
}

static void complete_worker_appends_worker_completed_ends_the_lease_and_reports_growth(
    void **state)
{
    fx *f = *state;
    create_run(f, "run-1", 2);
    srv_error err;
    Cairn__V1__AppendEventsResponse appended;
    ok(append_tx(f, events_req(f, "run-1", 2, 4, 0), &appended, &err), &err);
    Cairn__V1__Lease l = acquired(f, NOW_US, "w0", 60000);

    Cairn__V1__CompleteWorkerResponse out;
    ok(complete(f, NOW_US + 1, "w0", l.fencing_token, &out, &err), &err);
    assert_int_equal(out.seq, 3);
    assert_string_equal(out.run_state, "running");
    assert_string_equal(f->ap.grew_run_id, "run-1");
    assert_int_equal(f->ap.grew_last_seq, 3);

    Cairn__V1__ReadEventsResponse page = read_events(f, "run-1", 3, 10, SIZE_MAX);
    assert_int_equal(page.n_events, 1);
    assert_string_equal(page.events[0]->type, SRV_COMPLETED_EVENT_TYPE);
    assert_string_equal(page.events[0]->worker_id, "w0");
    assert_int_equal(page.events[0]->payload.len, 0);

    /* the lease ended with it: released, its token fenced, nothing to lease */
    srv_txn *t;
    srv_run_head h;
    srv_lease_rec rec;
    bool found;
    ok(srv_store_read_begin(f->st, &t, &err), &err);
    ok(srv_store_run_find(t, f->a, "run-1", &h, &found, &err), &err);
    ok(srv_store_lease_get(t, f->a, &h, "w0", &rec, &err), &err);
    srv_store_read_end(t);
    assert_true(rec.found);
    assert_int_equal(rec.expires_us, 0);
    Cairn__V1__AppendEventsResponse ignored;
    fails(append_at(f, NOW_US + 2, fenced_req(f, "run-1", "w0", l.fencing_token), &ignored, &err),
          &err, SRV_FAILED_PRECONDITION, "fenced");
    Cairn__V1__Lease again;
    fails(acquire(f, NOW_US + 2, "w0", "holder-2", 1000, &again, &err), &err,
          SRV_FAILED_PRECONDITION, "already completed");

    Cairn__V1__Run run = get_run(f, "run-1");
    assert_int_equal(run.n_completed_workers, 1);
    assert_string_equal(run.completed_workers[0], "w0");
    ok(complete(f, NOW_US + 3, "w1", 0, &out, &err), &err); /* no lease: nothing to end */
    assert_int_equal(out.seq, 4);
    assert_string_equal(out.run_state, "completed");
    assert_string_equal(get_run(f, "run-1").state, "completed");
}

/* ---- checkpoints and retention ---- */

/* CreateCheckpoint of run-1 at now_us: events_count, a snapshot of 100
 * bytes of `fill`, keep `retention`. Returns the code; *out its id. */
static srv_code checkpoint(fx *f, int64_t now_us, uint64_t events_count, uint8_t fill,
                           int retention, Cairn__V1__Checkpoint *out, srv_error *err)
{
    uint8_t data[100];
    memset(data, fill, sizeof data);
    char sha[65];
    srv_sha256 *h = srv_sha256_new();
    assert_non_null(h);
    srv_sha256_update(h, data, sizeof data);
    srv_sha256_final_hex(h, sha);
    srv_sha256_free(h);
    srv_blob_stage *b = NULL;
    ok(srv_store_stage_begin(f->st, &b, err), err);
    ok(srv_store_stage_write(b, data, sizeof data, err), err);
    ok(srv_store_stage_finish(b, sha, err), err);

    Cairn__V1__CheckpointHeader hd;
    cairn__v1__checkpoint_header__init(&hd);
    hd.run_id = "run-1";
    hd.run_state = "step-3-done";
    hd.events_count = events_count;
    hd.snapshot_size = sizeof data;
    hd.snapshot_sha256 = sha;
    const srv_new_checkpoint cp = {&hd, sha, b, retention};
    srv_code rc = done(f, srv_checkpoint_create(mut(f, now_us), &cp, out, err));
    srv_store_stage_free(b);
    if (!rc) /* the id and sha live in the arena past this call */
        out->snapshot_sha256 = srv_arena_strdup(f->a, sha);
    return rc;
}

static Cairn__V1__Checkpoint made(fx *f, int64_t now_us, uint8_t fill, int retention)
{
    srv_error err;
    Cairn__V1__Checkpoint cp;
    ok(checkpoint(f, now_us, 0, fill, retention, &cp, &err), &err);
    return cp;
}

static Cairn__V1__ListCheckpointsResponse list_checkpoints(fx *f)
{
    srv_error err;
    Cairn__V1__ListCheckpointsResponse out;
    cairn__v1__list_checkpoints_response__init(&out);
    ok(srv_checkpoints_read(f->st, f->a, "run-1", "", SIZE_MAX, &out, &err), &err);
    return out;
}

static srv_code cleanup(fx *f, int64_t now_us, uint32_t keep,
                        Cairn__V1__CleanupCheckpointsResponse *out, srv_error *err)
{
    cairn__v1__cleanup_checkpoints_response__init(out);
    return done(f, srv_checkpoints_cleanup(mut(f, now_us), "run-1", keep, out, err));
}

static bool snapshot_readable(fx *f, const char *sha)
{
    srv_error err;
    srv_blob_reader *r = NULL;
    srv_code rc = srv_store_blob_open(f->st, sha, &r, &err);
    srv_store_blob_close(r);
    if (rc && rc != SRV_NOT_FOUND)
        fail_msg("blob_open: %s", err.msg);
    return rc == SRV_OK;
}

static void checkpoint_create_with_retention_2_keeps_only_the_newest_2(void **state)
{
    fx *f = *state;
    create_run(f, "run-1", 1);
    Cairn__V1__Checkpoint cps[4];
    for (int i = 0; i < 4; i++) {
        cps[i] = made(f, NOW_US + i * SEC, (uint8_t)i, 2);
        assert_int_equal(list_checkpoints(f).n_checkpoints, i < 2 ? i + 1 : 2);
    }
    Cairn__V1__ListCheckpointsResponse list = list_checkpoints(f);
    assert_string_equal(list.checkpoints[0]->checkpoint_id, cps[2].checkpoint_id);
    assert_string_equal(list.checkpoints[1]->checkpoint_id, cps[3].checkpoint_id);
    assert_string_equal(get_run(f, "run-1").latest_checkpoint_id, cps[3].checkpoint_id);
    /* the deleted ones took their snapshots with them */
    assert_false(snapshot_readable(f, cps[0].snapshot_sha256));
    assert_false(snapshot_readable(f, cps[1].snapshot_sha256));
    assert_true(snapshot_readable(f, cps[2].snapshot_sha256));
    assert_true(snapshot_readable(f, cps[3].snapshot_sha256));
}

static void a_pinned_checkpoint_survives_cleanup_until_unpinned(void **state)
{
    fx *f = *state;
    create_run(f, "run-1", 1);
    Cairn__V1__Checkpoint cps[4];
    for (int i = 0; i < 4; i++)
        cps[i] = made(f, NOW_US + i * SEC, (uint8_t)i, 10);
    srv_error err;
    int64_t held = 0, lapsed = 0;
    ok(srv_store_pin_add(f->st, "run-1", cps[0].checkpoint_id, NOW_US + 3600 * SEC, &held, &err),
       &err);
    ok(srv_store_pin_add(f->st, "run-1", cps[1].checkpoint_id, NOW_US + 5 * SEC, &lapsed, &err),
       &err);

    Cairn__V1__CleanupCheckpointsResponse out;
    ok(cleanup(f, NOW_US + 10 * SEC, 1, &out, &err), &err); /* cps[1]'s pin has lapsed */
    assert_int_equal(out.n_deleted_ids, 2);
    assert_string_equal(out.deleted_ids[0], cps[1].checkpoint_id);
    assert_string_equal(out.deleted_ids[1], cps[2].checkpoint_id);
    Cairn__V1__ListCheckpointsResponse list = list_checkpoints(f);
    assert_int_equal(list.n_checkpoints, 2);
    assert_string_equal(list.checkpoints[0]->checkpoint_id, cps[0].checkpoint_id);
    assert_true(snapshot_readable(f, cps[0].snapshot_sha256));

    ok(cleanup(f, NOW_US + 11 * SEC, 1, &out, &err), &err);
    assert_int_equal(out.n_deleted_ids, 0);

    ok(srv_store_pin_remove(f->st, held, &err), &err);
    ok(cleanup(f, NOW_US + 12 * SEC, 1, &out, &err), &err);
    assert_int_equal(out.n_deleted_ids, 1);
    assert_string_equal(out.deleted_ids[0], cps[0].checkpoint_id);
    list = list_checkpoints(f);
    assert_int_equal(list.n_checkpoints, 1);
    assert_string_equal(list.checkpoints[0]->checkpoint_id, cps[3].checkpoint_id);
    assert_false(snapshot_readable(f, cps[0].snapshot_sha256));
}

static void cleanup_returns_deleted_ids_oldest_first(void **state)
{
    fx *f = *state;
    create_run(f, "run-1", 1);
    Cairn__V1__Checkpoint cps[4];
    for (int i = 0; i < 4; i++)
        cps[i] = made(f, NOW_US + i * SEC, (uint8_t)i, 10);
    srv_error err;
    Cairn__V1__CleanupCheckpointsResponse out;
    ok(cleanup(f, NOW_US + 10 * SEC, 1, &out, &err), &err);
    assert_int_equal(out.deleted, 3);
    assert_int_equal(out.n_deleted_ids, 3);
    for (int i = 0; i < 3; i++)
        assert_string_equal(out.deleted_ids[i], cps[i].checkpoint_id);
    ok(cleanup(f, NOW_US + 11 * SEC, 1, &out, &err), &err);
    assert_int_equal(out.deleted, 0);
    assert_int_equal(list_checkpoints(f).n_checkpoints, 1);

    cairn__v1__cleanup_checkpoints_response__init(&out);
    fails(done(f, srv_checkpoints_cleanup(mut(f, NOW_US), "ghost", 1, &out, &err)), &err,
          SRV_NOT_FOUND, "run_id");
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
        T(resume_without_a_checkpoint_reruns_all_but_the_completed_from_seq_1),
        T(resume_with_a_checkpoint_starts_after_its_events),
    };
    return cmocka_run_group_tests_name("core", tests, NULL, NULL);
}
