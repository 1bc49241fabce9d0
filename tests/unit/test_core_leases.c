/* core/'s leases and fencing, worker completion, and checkpoints with
 * their retention and pins (test list and fixture: test_core.c,
 * core_fixture.h). */
#include "core_fixture.h"
#include "base/clock.h"
#include "core/snapshots.h"

#include <stdio.h>
#include <string.h>

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

void acquire_twice_is_failed_precondition_while_the_lease_is_live(void **state)
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

void fencing_tokens_increase_across_acquisitions(void **state)
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

void renew_with_a_wrong_lease_id_fails(void **state)
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

void release_of_a_lapsed_lease_is_ok(void **state)
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

void a_fenced_append_with_a_stale_token_fails_fenced(void **state)
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

void complete_worker_of_a_non_worker_is_invalid_argument(void **state)
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

void complete_worker_twice_is_failed_precondition(void **state)
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

void complete_worker_appends_worker_completed_ends_the_lease_and_reports_growth(void **state)
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

void checkpoint_create_with_retention_2_keeps_only_the_newest_2(void **state)
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

void a_pinned_checkpoint_survives_cleanup_until_unpinned(void **state)
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

void cleanup_returns_deleted_ids_oldest_first(void **state)
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

/* Retention deletes "the latest" between a download's read and its pin. */
typedef struct replaced {
    fx *f;
    Cairn__V1__Checkpoint newer;
} replaced;

static void replace_the_latest(void *arg)
{
    replaced *r = arg;
    r->newer = made(r->f, NOW_US + SEC, 2, 1); /* keeps itself only */
}

void download_of_the_latest_survives_it_being_replaced_before_the_pin(void **state)
{
    fx *f = *state;
    create_run(f, "run-1", 1);
    Cairn__V1__Checkpoint first = made(f, NOW_US, 1, 10);
    replaced r = {.f = f};
    srv_store_inject_hook(f->st, SRV_STORE_OP_PIN_ADD, 1, replace_the_latest, &r);

    srv_error err;
    Cairn__V1__Checkpoint meta;
    srv_download *d = NULL;
    ok(srv_download_open(f->st, f->a, "run-1", "", &meta, &d, &err), &err);
    assert_false(snapshot_readable(f, first.snapshot_sha256)); /* it did go */
    assert_string_equal(meta.checkpoint_id, r.newer.checkpoint_id);
    uint8_t buf[256];
    size_t n, total = 0;
    do {
        ok(srv_download_read(d, buf, sizeof buf, &n, &err), &err);
        for (size_t i = 0; i < n; i++)
            assert_int_equal(buf[i], 2);
        total += n;
    } while (n > 0);
    assert_int_equal(total, meta.snapshot_size);
    srv_download_close(d);
}

/* Pages of checkpoints read with max_bytes: their ids in order, one
 * string a page, "|" between pages. */
static void list_pages(fx *f, size_t max_bytes, char *out, size_t cap)
{
    const char *after = "";
    size_t len = 0;
    out[0] = '\0';
    do {
        srv_error err;
        Cairn__V1__ListCheckpointsResponse page;
        cairn__v1__list_checkpoints_response__init(&page);
        ok(srv_checkpoints_read(f->st, f->a, "run-1", after, max_bytes, &page, &err), &err);
        assert_true(page.n_checkpoints >= 1);
        for (size_t i = 0; i < page.n_checkpoints; i++)
            len += (size_t)snprintf(out + len, cap - len, "%s%c", page.checkpoints[i]->checkpoint_id,
                                    i + 1 < page.n_checkpoints ? ',' : '|');
        after = page.next_page_token;
    } while (*after);
}

void list_checkpoints_pages_by_bytes_with_at_least_one_checkpoint(void **state)
{
    fx *f = *state;
    create_run(f, "run-1", 1);
    Cairn__V1__Checkpoint cps[5];
    for (int i = 0; i < 5; i++)
        cps[i] = made(f, NOW_US + i * SEC, (uint8_t)i, 10);
    size_t size = protobuf_c_message_get_packed_size(&cps[0].base);
    char want[512], got[512];
    const char *ids[5];
    for (int i = 0; i < 5; i++)
        ids[i] = cps[i].checkpoint_id;

    snprintf(want, sizeof want, "%s|%s|%s|%s|%s|", ids[0], ids[1], ids[2], ids[3], ids[4]);
    list_pages(f, 1, got, sizeof got); /* under one: one a page */
    assert_string_equal(got, want);
    snprintf(want, sizeof want, "%s,%s|%s,%s|%s|", ids[0], ids[1], ids[2], ids[3], ids[4]);
    list_pages(f, 2 * size + size / 2, got, sizeof got);
    assert_string_equal(got, want);
    snprintf(want, sizeof want, "%s,%s,%s,%s,%s|", ids[0], ids[1], ids[2], ids[3], ids[4]);
    list_pages(f, SIZE_MAX, got, sizeof got);
    assert_string_equal(got, want);
}
