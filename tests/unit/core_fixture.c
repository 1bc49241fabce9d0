/* The fixture of test_core: a real SQLite store in a mkdtemp data dir
 * (removed afterwards), and core/'s mutations applied as the ledger
 * applies them. */
#include "core_fixture.h"
#include "dirs.h"
#include "store_support.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void ok(srv_code rc, const srv_error *err)
{
    if (rc != SRV_OK)
        fail_msg("expected OK, got %s: %s", srv_code_name(rc), err->msg);
}

/* rc must be want and the message must contain text. */
void fails(srv_code rc, const srv_error *err, srv_code want, const char *text)
{
    if (rc != want)
        fail_msg("expected %s, got %s: %s", srv_code_name(want), srv_code_name(rc),
                 rc ? err->msg : "");
    if (!strstr(err->msg, text))
        fail_msg("the message should contain \"%s\": %s", text, err->msg);
}

void open_store(fx *f)
{
    srv_error err;
    const srv_store_config cfg = {.data_dir = f->dir, .readers = 2};
    ok(srv_store_open("sqlite", &cfg, &f->st, &err), &err);
}

void close_store(fx *f)
{
    srv_store_close(f->st);
    f->st = NULL;
}

int setup(void **state)
{
    fx *f = calloc(1, sizeof *f);
    if (ct_temp_dir(f->dir, sizeof f->dir, "cairn-unit-core") < 0)
        return -1;
    f->a = srv_arena_create();
    open_store(f);
    *state = f;
    return 0;
}

int teardown(void **state)
{
    fx *f = *state;
    close_store(f);
    srv_arena_destroy(f->a);
    int rc = ct_rmrf(f->dir);
    free(f);
    return rc;
}

/* ---- mutations, as the ledger applies them ---- */

/* Opens a mutation at now_us: the write transaction and its savepoint. */
srv_apply *mut(fx *f, int64_t now_us)
{
    srv_error err;
    ok(srv_store_begin(f->st, &f->t, &err), &err);
    ok(srv_store_savepoint(f->t, &err), &err);
    f->ap = (srv_apply){f->t, f->a, now_us, NULL, NULL, 0, NULL};
    return &f->ap;
}

/* Ends it: kept on success, undone to its savepoint on error; then the
 * commit. Returns the mutation's code. */
srv_code done(fx *f, srv_code rc)
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
Cairn__V1__CreateRunRequest *run_req(fx *f, const char *run_id, size_t workers)
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

Cairn__V1__Run *create_run(fx *f, const char *run_id, size_t workers)
{
    srv_error err;
    Cairn__V1__Run *run = srv_arena_alloc(f->a, sizeof *run);
    ok(done(f, srv_run_create(mut(f, NOW_US), run_req(f, run_id, workers), run, &err)), &err);
    return run;
}

Cairn__V1__Run get_run(fx *f, const char *run_id)
{
    srv_error err;
    Cairn__V1__Run run;
    ok(srv_run_read(f->st, f->a, run_id, &run, &err), &err);
    return run;
}

/* n events, made by ct_make_events (store_support.h): the payload of
 * event i is `len` bytes of (tag + i), except that it starts with NUL and
 * ends with 0xff, so binary data is exercised. */
Cairn__V1__AppendEventsRequest *events_req(fx *f, const char *run_id, size_t n,
                                           size_t len, uint8_t tag)
{
    Cairn__V1__AppendEventsRequest *r = srv_arena_alloc(f->a, sizeof *r);
    cairn__v1__append_events_request__init(r);
    r->idempotency_key = "k";
    r->run_id = srv_arena_strdup(f->a, run_id);
    r->n_events = n;
    r->events = ct_make_events(f->a, n, len, tag);
    return r;
}

/* One event of worker_id, fenced with token. */
Cairn__V1__AppendEventsRequest *fenced_req(fx *f, const char *run_id,
                                           const char *worker_id, uint64_t token)
{
    Cairn__V1__AppendEventsRequest *r = events_req(f, run_id, 1, 4, 0);
    r->events[0]->worker_id = (char *)worker_id;
    r->fencing_token = token;
    return r;
}

srv_code append_at(fx *f, int64_t now_us, Cairn__V1__AppendEventsRequest *req,
                   Cairn__V1__AppendEventsResponse *out, srv_error *err)
{
    cairn__v1__append_events_response__init(out);
    return done(f, srv_events_append(mut(f, now_us), req, out, err));
}

srv_code append_tx(fx *f, Cairn__V1__AppendEventsRequest *req,
                   Cairn__V1__AppendEventsResponse *out, srv_error *err)
{
    return append_at(f, NOW_US, req, out, err);
}

Cairn__V1__ReadEventsResponse read_events(fx *f, const char *run_id, uint64_t from,
                                          uint32_t max, size_t max_bytes)
{
    srv_error err;
    Cairn__V1__ReadEventsResponse out;
    cairn__v1__read_events_response__init(&out);
    ok(srv_events_read(f->st, f->a, run_id, from, max, max_bytes, &out, &err), &err);
    return out;
}

/* ---- mutations the resume tests share ---- */

srv_code complete(fx *f, int64_t now_us, const char *worker_id, uint64_t token,
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

/* CreateCheckpoint of run-1 at now_us: events_count, a snapshot of 100
 * bytes of `fill`, keep `retention`. Returns the code; *out its id. */
srv_code checkpoint(fx *f, int64_t now_us, uint64_t events_count, uint8_t fill,
                    int retention, Cairn__V1__Checkpoint *out, srv_error *err)
{
    uint8_t data[100];
    memset(data, fill, sizeof data);
    char sha[65];
    ct_sha256_hex(data, sizeof data, sha);
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
