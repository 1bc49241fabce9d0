/* core/: DeleteRun (srv_run_delete), a download whose run is deleted under
 * it, and the lifecycle sweep (srv_sweep_apply) with the batch clock set
 * by the test, so expiry needs no waiting. */
#include "core_fixture.h"
#include "core/snapshots.h"

#include <stdio.h>
#include <string.h>
#include <unistd.h>

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

static bool delete_at(fx *f, int64_t now_us, const char *run_id, const char **told)
{
    srv_error err;
    bool existed = false;
    srv_apply *ap = mut(f, now_us);
    ok(done(f, srv_run_delete(ap, run_id, &existed, &err)), &err);
    *told = ap->deleted ? ap->deleted->run_id : NULL;
    return existed;
}

static bool run_exists(fx *f, const char *run_id)
{
    srv_error err;
    Cairn__V1__Run run;
    srv_code rc = srv_run_read(f->st, f->a, run_id, &run, &err);
    if (rc && rc != SRV_NOT_FOUND)
        fail_msg("get run: %s", err.msg);
    return rc == SRV_OK;
}

void delete_run_takes_its_log_and_snapshots_and_says_whether_it_existed(void **state)
{
    fx *f = *state;
    srv_error err;
    create_run(f, "run-1", 2);
    Cairn__V1__AppendEventsResponse out;
    ok(append_tx(f, events_req(f, "run-1", 3, 8, 1), &out, &err), &err);
    Cairn__V1__Checkpoint cp;
    ok(checkpoint(f, NOW_US, 3, 7, 5, &cp, &err), &err);
    assert_true(snapshot_readable(f, cp.snapshot_sha256));

    const char *told = NULL;
    assert_true(delete_at(f, NOW_US, "run-1", &told));
    assert_string_equal(told, "run-1"); /* for the watch hub, after the commit */
    assert_false(run_exists(f, "run-1"));
    assert_false(snapshot_readable(f, cp.snapshot_sha256));
    Cairn__V1__ReadEventsResponse page;
    cairn__v1__read_events_response__init(&page);
    fails(srv_events_read(f->st, f->a, "run-1", 1, 10, 1 << 20, &page, &err), &err,
          SRV_NOT_FOUND, "run-1");

    assert_false(delete_at(f, NOW_US, "run-1", &told));
    assert_null(told);
}

/* A LoadCheckpoint already streaming when its run is deleted: it opened
 * the snapshot before, and reads it whole (the file's bytes stay while it
 * is open), checksum and all. */
void a_download_open_when_its_run_is_deleted_reads_to_the_end(void **state)
{
    fx *f = *state;
    srv_error err;
    create_run(f, "run-1", 1);
    Cairn__V1__AppendEventsResponse out;
    ok(append_tx(f, events_req(f, "run-1", 1, 8, 1), &out, &err), &err);
    Cairn__V1__Checkpoint cp;
    ok(checkpoint(f, NOW_US, 1, 9, 5, &cp, &err), &err);
    Cairn__V1__Checkpoint meta;
    srv_download *d = NULL;
    ok(srv_download_open(f->st, f->a, "run-1", "", &meta, &d, &err), &err);

    const char *told;
    assert_true(delete_at(f, NOW_US, "run-1", &told));
    assert_false(snapshot_readable(f, cp.snapshot_sha256));
    uint8_t buf[32];
    size_t n, total = 0;
    do {
        ok(srv_download_read(d, buf, sizeof buf, &n, &err), &err);
        for (size_t i = 0; i < n; i++)
            assert_int_equal(buf[i], 9);
        total += n;
    } while (n > 0);
    assert_int_equal(total, meta.snapshot_size);
    srv_download_close(d);
}

/* Where reading does not keep the bytes (PostgreSQL's chunk rows), a
 * deletion under a download cuts it short: that is NOT_FOUND, saying so,
 * not DATA_LOSS. Made here by cutting the open file, then deleting. */
void a_download_cut_short_by_its_runs_deletion_is_not_found_not_data_loss(void **state)
{
    fx *f = *state;
    srv_error err;
    create_run(f, "run-1", 1);
    Cairn__V1__AppendEventsResponse out;
    ok(append_tx(f, events_req(f, "run-1", 1, 8, 1), &out, &err), &err);
    Cairn__V1__Checkpoint cp;
    ok(checkpoint(f, NOW_US, 1, 9, 5, &cp, &err), &err);
    Cairn__V1__Checkpoint meta;
    srv_download *d = NULL;
    ok(srv_download_open(f->st, f->a, "run-1", "", &meta, &d, &err), &err);
    char path[700];
    snprintf(path, sizeof path, "%s/blobs/%.2s/%s", f->dir, cp.snapshot_sha256,
             cp.snapshot_sha256);
    assert_int_equal(truncate(path, 10), 0);
    const char *told;
    assert_true(delete_at(f, NOW_US, "run-1", &told));
    uint8_t buf[256];
    size_t n;
    srv_code rc;
    while ((rc = srv_download_read(d, buf, sizeof buf, &n, &err)) == SRV_OK && n > 0)
        ;
    fails(rc, &err, SRV_NOT_FOUND, "was deleted while it was read");
    srv_download_close(d);
}

static void complete_run(fx *f, int64_t now_us, const char *run_id)
{
    srv_error err;
    Cairn__V1__CompleteWorkerRequest req;
    cairn__v1__complete_worker_request__init(&req);
    req.run_id = (char *)run_id;
    req.worker_id = "w0";
    Cairn__V1__CompleteWorkerResponse out;
    cairn__v1__complete_worker_response__init(&out);
    ok(done(f, srv_worker_complete(mut(f, now_us), &req, &out, &err)), &err);
    assert_string_equal(out.run_state, "completed");
}

static srv_sweep sweep_at(fx *f, int64_t now_us, int64_t retention_s, int64_t window_s)
{
    srv_error err;
    srv_sweep sw = {.retention_s = retention_s, .window_s = window_s};
    srv_apply *ap = mut(f, now_us);
    ap->ctx = &sw;
    ok(done(f, srv_sweep_apply(ap, NULL, NULL, &err)), &err);
    return sw;
}

void sweep_deletes_runs_completed_longer_ago_than_the_retention_only(void **state)
{
    fx *f = *state;
    const int64_t s = 1000000;
    create_run(f, "old", 1);
    create_run(f, "recent", 1);
    create_run(f, "open", 1);
    complete_run(f, NOW_US, "old");
    complete_run(f, NOW_US + 10 * s, "recent");

    srv_sweep sw = sweep_at(f, NOW_US + 15 * s, 10, 0);
    assert_int_equal(sw.runs_deleted, 1);
    assert_false(run_exists(f, "old"));
    assert_true(run_exists(f, "recent"));
    assert_true(run_exists(f, "open"));
    /* Without a retention the sweep deletes nothing, however old. */
    sw = sweep_at(f, NOW_US + 1000 * s, 0, 0);
    assert_int_equal(sw.runs_deleted, 0);
    assert_true(run_exists(f, "recent"));
    sw = sweep_at(f, NOW_US + 21 * s, 10, 0);
    assert_int_equal(sw.runs_deleted, 1);
    assert_false(run_exists(f, "recent"));
    assert_true(run_exists(f, "open"));
}

void sweep_deletes_at_most_a_batch_of_runs_at_a_time(void **state)
{
    fx *f = *state;
    for (int i = 0; i < SRV_SWEEP_BATCH + 5; i++) {
        char id[32];
        snprintf(id, sizeof id, "run-%03d", i);
        create_run(f, id, 1);
        complete_run(f, NOW_US, id);
    }
    assert_int_equal(sweep_at(f, NOW_US + 2000000, 1, 0).runs_deleted, SRV_SWEEP_BATCH);
    assert_int_equal(sweep_at(f, NOW_US + 2000000, 1, 0).runs_deleted, 5);
    assert_int_equal(sweep_at(f, NOW_US + 2000000, 1, 0).runs_deleted, 0);
}
