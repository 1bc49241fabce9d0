/* libcairn's decoding of server answers: byte 0 of the input picks a
 * public call, the rest is the script of what the "server" answers
 * (fake_transport.h): response messages, streamed messages, statuses.
 * Every call is made with a valid request and one attempt (no retry
 * waits). Besides what the sanitizers catch, it aborts when a call
 * returns a status without a message, or returns strings that are not
 * terminated within their fields. */
#include "cairn/cairn.h"
#include "fake_transport.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define TERMINATED(field) (memchr((field), '\0', sizeof(field)) != NULL)

static void expect(bool ok, const char *what)
{
    if (!ok) {
        fprintf(stderr, "fuzz_client: %s\n", what);
        abort();
    }
}

static const char *const workers[] = {"w0", "w1"};

static cairn_status create_run(cairn_client *c, cairn_error *err)
{
    cairn_create_run_request req = {.run_id = "run-1", .workers = workers, .workers_count = 2};
    cairn_run run;
    cairn_status rc = cairn_create_run(c, &req, &run, err);
    if (!rc) {
        expect(TERMINATED(run.run_id) && TERMINATED(run.state) && TERMINATED(run.created_at),
               "CreateRun: a run's strings");
        cairn_run_free(&run);
    }
    return rc;
}

static cairn_status get_run(cairn_client *c, cairn_error *err)
{
    cairn_run run;
    cairn_status rc = cairn_get_run(c, "run-1", &run, err);
    if (!rc) {
        for (size_t i = 0; i < run.workers_count; i++)
            expect(run.workers[i] != NULL, "GetRun: a NULL worker");
        cairn_run_free(&run);
    }
    return rc;
}

static cairn_status list_runs(cairn_client *c, cairn_error *err)
{
    cairn_run_page page;
    cairn_status rc = cairn_list_runs(c, 10, "", &page, err);
    if (!rc) {
        expect(TERMINATED(page.next_page_token), "ListRuns: next_page_token");
        cairn_run_page_free(&page);
    }
    return rc;
}

static cairn_status append_events(cairn_client *c, cairn_error *err)
{
    cairn_event ev = {.type = "step", .payload = "p", .payload_len = 1};
    cairn_append_request req = {.run_id = "run-1", .events = &ev, .events_count = 1};
    cairn_append_result out;
    return cairn_append_events(c, &req, &out, err);
}

static cairn_status read_events(cairn_client *c, cairn_error *err)
{
    cairn_event_page page;
    cairn_status rc = cairn_read_events(c, "run-1", 1, 100, &page, err);
    if (!rc) {
        for (size_t i = 0; i < page.events_count; i++)
            expect(page.events[i].type && page.events[i].worker_id &&
                       (page.events[i].payload || !page.events[i].payload_len),
                   "ReadEvents: an event's fields");
        cairn_event_page_free(&page);
    }
    return rc;
}

static cairn_status complete_worker(cairn_client *c, cairn_error *err)
{
    cairn_complete_request req = {.run_id = "run-1", .worker_id = "w0"};
    cairn_complete_result out;
    cairn_status rc = cairn_complete_worker(c, &req, &out, err);
    if (!rc)
        expect(TERMINATED(out.run_state), "CompleteWorker: run_state");
    return rc;
}

static const cairn_lease a_lease = {.lease_id = "0123456789abcdef", .run_id = "run-1",
                                    .worker_id = "w0", .holder = "h", .fencing_token = 1,
                                    .ttl_ms = 5000};

static bool lease_terminated(const cairn_lease *l)
{
    return TERMINATED(l->lease_id) && TERMINATED(l->run_id) && TERMINATED(l->worker_id) &&
           TERMINATED(l->holder) && TERMINATED(l->expires_at);
}

static cairn_status acquire_worker(cairn_client *c, cairn_error *err)
{
    cairn_acquire_request req = {.run_id = "run-1", .worker_id = "w0", .holder = "h",
                                 .ttl_ms = 5000};
    cairn_lease out;
    cairn_status rc = cairn_acquire_worker(c, &req, &out, err);
    if (!rc)
        expect(lease_terminated(&out), "AcquireWorker: a lease's strings");
    return rc;
}

static cairn_status renew_lease(cairn_client *c, cairn_error *err)
{
    cairn_renew_request req = {.lease = &a_lease, .ttl_ms = 5000};
    cairn_lease out;
    cairn_status rc = cairn_renew_lease(c, &req, &out, err);
    if (!rc)
        expect(lease_terminated(&out), "RenewLease: a lease's strings");
    return rc;
}

static cairn_status release_worker(cairn_client *c, cairn_error *err)
{
    cairn_release_request req = {.lease = &a_lease};
    return cairn_release_worker(c, &req, err);
}

static bool checkpoint_terminated(const cairn_checkpoint *cp)
{
    return TERMINATED(cp->checkpoint_id) && TERMINATED(cp->run_id) &&
           TERMINATED(cp->created_at) && TERMINATED(cp->snapshot_sha256) && cp->run_state;
}

static cairn_status create_checkpoint(cairn_client *c, cairn_error *err)
{
    cairn_checkpoint_request req = {.run_id = "run-1", .run_state = "s", .events_count = 1};
    cairn_checkpoint out;
    cairn_status rc = cairn_create_checkpoint(c, &req, "snapshot", 8, &out, err);
    if (!rc) {
        expect(checkpoint_terminated(&out), "CreateCheckpoint: a checkpoint's strings");
        cairn_checkpoint_free(&out);
    }
    return rc;
}

static cairn_status list_checkpoints(cairn_client *c, cairn_error *err)
{
    cairn_checkpoint_list list;
    cairn_status rc = cairn_list_checkpoints(c, "run-1", &list, err);
    if (!rc) {
        for (size_t i = 0; i < list.count; i++)
            expect(checkpoint_terminated(&list.checkpoints[i]),
                   "ListCheckpoints: a checkpoint's strings");
        cairn_checkpoint_list_free(&list);
    }
    return rc;
}

static cairn_status get_latest_checkpoint(cairn_client *c, cairn_error *err)
{
    cairn_checkpoint out;
    cairn_status rc = cairn_get_latest_checkpoint(c, "run-1", &out, err);
    if (!rc) {
        expect(checkpoint_terminated(&out), "GetLatestCheckpoint: a checkpoint's strings");
        cairn_checkpoint_free(&out);
    }
    return rc;
}

static cairn_status load_checkpoint(cairn_client *c, cairn_error *err)
{
    cairn_load_request req = {.run_id = "run-1"};
    cairn_checkpoint meta;
    void *bytes = NULL;
    size_t len = 0;
    cairn_status rc = cairn_load_checkpoint(c, &req, &meta, &bytes, &len, err);
    if (!rc) {
        expect(checkpoint_terminated(&meta) && len == meta.snapshot_size,
               "LoadCheckpoint: the snapshot and its metadata");
        cairn_checkpoint_free(&meta);
        cairn_buffer_free(bytes);
    }
    return rc;
}

static cairn_status cleanup_checkpoints(cairn_client *c, cairn_error *err)
{
    cairn_cleanup_request req = {.run_id = "run-1", .keep_last_n = 2};
    cairn_cleanup_result out;
    cairn_status rc = cairn_cleanup_checkpoints(c, &req, &out, err);
    if (!rc)
        cairn_cleanup_result_free(&out);
    return rc;
}

static cairn_status resume_run(cairn_client *c, cairn_error *err)
{
    cairn_resume_plan plan;
    cairn_status rc = cairn_resume_run(c, "run-1", workers, 2, &plan, err);
    if (!rc) {
        expect(TERMINATED(plan.run_id) && TERMINATED(plan.checkpoint_id) &&
                   plan.resumed_from_state,
               "ResumeRun: a plan's strings");
        cairn_resume_plan_free(&plan);
    }
    return rc;
}

static cairn_status resume(cairn_client *c, cairn_error *err)
{
    cairn_resume_state state;
    cairn_status rc = cairn_resume(c, "run-1", NULL, 0, &state, err);
    if (!rc)
        cairn_resume_state_free(&state);
    return rc;
}

static cairn_status health_check(cairn_client *c, cairn_error *err)
{
    cairn_serving serving;
    return cairn_health_check(c, "", &serving, err);
}

/* Stops the watch after a few events, as a caller may. */
static int on_event(void *user, const cairn_event *ev)
{
    size_t *seen = user;
    expect(ev->type && ev->worker_id, "WatchEvents: an event's fields");
    return ++*seen == 8;
}

static cairn_status watch(cairn_client *c, cairn_error *err)
{
    size_t seen = 0;
    cairn_watch_request req = {.run_id = "run-1", .on_event = on_event, .user = &seen};
    return cairn_watch(c, &req, err);
}

static cairn_status delete_run(cairn_client *c, cairn_error *err)
{
    cairn_delete_run_request req = {.idempotency_key = "d1", .run_id = "run-1"};
    cairn_delete_run_result res;
    return cairn_delete_run(c, &req, &res, err);
}

/* New calls go at the end: byte 0 of the kept inputs picks by index. */
static cairn_status (*const calls[])(cairn_client *, cairn_error *) = {
    create_run,      get_run,          list_runs,        append_events,
    read_events,     complete_worker,  acquire_worker,   renew_lease,
    release_worker,  create_checkpoint, list_checkpoints, get_latest_checkpoint,
    load_checkpoint, cleanup_checkpoints, resume_run,   resume,
    health_check,    watch,            delete_run,
};
enum { N_CALLS = sizeof calls / sizeof calls[0] };

static cairn_client *client(void)
{
    static cairn_client *c;
    if (c)
        return c;
    cairn_client_options opts;
    cairn_client_options_init(&opts);
    opts.retry.max_attempts = 1;
    cairn_error err;
    if (cairn_client_create(&opts, &c, &err) != CAIRN_OK) {
        fprintf(stderr, "fuzz_client: %s\n", err.message);
        abort();
    }
    return c;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0)
        return 0;
    fz_transport_script(data + 1, size - 1);
    cairn_error err;
    cairn_status rc = calls[data[0] % N_CALLS](client(), &err);
    expect(cairn_strerror(rc) != NULL && err.status == rc, "a status and its error");
    expect(rc == CAIRN_OK || (TERMINATED(err.message) && err.message[0]),
           "an error without a message");
    return 0;
}
