/* The fuzz targets' cairnd (server_fixture.h): wired as server/main.c
 * wires it, minus the transport, whose place the fake calls take. */
#include "server_fixture.h"
#include "base/log.h"
#include "base/pbc.h"
#include "dirs.h"
#include "service/dispatch.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Writes the ledger queues before it refuses more: far more than one
 * fuzzing thread ever has in flight. */
enum { LEDGER_QUEUE = 64 };

static struct fixture {
    char dir[512];
    srv_config cfg;
    srv_app app;
    bool made;
} fx;

static void die(const char *what, const srv_error *err)
{
    fprintf(stderr, "fuzz fixture: %s: %s\n", what, err ? err->msg : "failed");
    abort();
}

static void check(const char *what, const fz_reply *r)
{
    if (r->code)
        die(what, &r->err);
}

static void teardown(void)
{
    srv_app *app = &fx.app;
    srv_ledger_stop(app->ledger);
    srv_pool_stop(app->io);
    srv_ledger_free(app->ledger);
    srv_watch_stop(app->watch);
    srv_store_close(app->store);
    srv_upload_gate_destroy(&app->uploads);
    ct_rmrf(fx.dir);
}

/* The settings of a cairnd with no flags but the data dir, quiet, and a
 * snapshot limit small enough that a fuzzed header cannot make it stage
 * a gigabyte. */
static void configure(void)
{
    char *argv[] = {"cairnd", "--data-dir", fx.dir, "--log-level", "error",
                    "--max-snapshot-bytes", "65536", "--io-threads", "2", NULL};
    if (srv_config_parse(&fx.cfg, (int)(sizeof argv / sizeof argv[0]) - 1, argv) !=
        SRV_CONFIG_RUN)
        die("the settings", NULL);
    srv_log_setup(fx.cfg.log_level, fx.cfg.log_format);
}

static void start(void)
{
    srv_error err;
    srv_app *app = &fx.app;
    *app = (srv_app){.cfg = &fx.cfg, .commits_mu = PTHREAD_MUTEX_INITIALIZER};
    srv_upload_gate_init(&app->uploads, fx.cfg.max_uploads, (uint64_t)fx.cfg.max_staged_bytes);
    const srv_store_config store_cfg = {.data_dir = fx.dir, .readers = fx.cfg.io_threads + 1};
    if (srv_store_open("sqlite", &store_cfg, &app->store, &err))
        die("the store", &err);
    if (!(app->io = srv_pool_start(fx.cfg.io_threads)))
        die("the I/O pool", NULL);
    if (srv_ledger_start(app->store, LEDGER_QUEUE, &app->ledger, &err))
        die("the ledger", &err);
    if (srv_watch_start(app->store, &app->watch, &err))
        die("the watch hub", &err);
    srv_ledger_observe(app->ledger, srv_watch_committed, app->watch);
    srv_watch_use_pool(app->watch, app->io);
    atomic_store(&app->serving, true);
}

/* run-1 with workers w0..w2, events 1..3 and a checkpoint of them. */
static void populate(void)
{
    fz_reply r;
    char *workers[] = {"w0", "w1", "w2"};
    Cairn__V1__CreateRunRequest run = CAIRN__V1__CREATE_RUN_REQUEST__INIT;
    run.idempotency_key = "fixture-run";
    run.run_id = "run-1";
    run.n_workers = 3;
    run.workers = workers;
    fz_call_message("CreateRun", &run.base, &r);
    check("CreateRun", &r);
    fz_reply_free(&r);

    Cairn__V1__Event ev = CAIRN__V1__EVENT__INIT, *evs[] = {&ev, &ev, &ev};
    ev.type = "step";
    ev.payload.data = (uint8_t *)"data";
    ev.payload.len = 4;
    Cairn__V1__AppendEventsRequest app = CAIRN__V1__APPEND_EVENTS_REQUEST__INIT;
    app.idempotency_key = "fixture-events";
    app.run_id = "run-1";
    app.n_events = 3;
    app.events = evs;
    fz_call_message("AppendEvents", &app.base, &r);
    check("AppendEvents", &r);
    fz_reply_free(&r);

    Cairn__V1__CheckpointHeader h = CAIRN__V1__CHECKPOINT_HEADER__INIT;
    h.idempotency_key = "fixture-checkpoint";
    h.run_id = "run-1";
    h.run_state = "step-3";
    h.events_count = 3;
    h.snapshot_size = 10;
    fz_upload(&h, (const uint8_t *)"0123456789", 10, 4, &r);
    check("CreateCheckpoint", &r);
    fz_reply_free(&r);
}

srv_app *fz_app(void)
{
    if (fx.made)
        return &fx.app;
    fx.made = true;
    if (ct_temp_dir(fx.dir, sizeof fx.dir, "cairn-fuzz") < 0)
        die("the temporary directory", NULL);
    configure();
    start();
    atexit(teardown);
    populate();
    return &fx.app;
}

size_t fz_method(const char *name)
{
    size_t n;
    const srv_rpc_method *methods = srv_dispatch_methods(&n);
    size_t name_len = strlen(name);
    for (size_t i = 0; i < n; i++) {
        const char *slash = strrchr(methods[i].path, '/');
        if (slash && strlen(slash + 1) == name_len && memcmp(slash + 1, name, name_len) == 0)
            return i;
    }
    fprintf(stderr, "fuzz fixture: no method %s in the dispatch table\n", name);
    abort();
}

/* Encodes msg on the heap; aborts when out of memory. */
static uint8_t *pack(const ProtobufCMessage *msg, size_t *len)
{
    uint8_t *buf = srv_pack_heap(msg, len);
    if (!buf)
        abort();
    return buf;
}

void fz_call_message(const char *name, const ProtobufCMessage *req, fz_reply *out)
{
    fz_msg m;
    uint8_t *buf = pack(req, &m.len);
    m.data = buf;
    fz_call_run(fz_app(), fz_method(name), &m, 1, out);
    free(buf);
}

void fz_upload(const Cairn__V1__CheckpointHeader *header, const uint8_t *snapshot, size_t len,
               size_t chunk, fz_reply *out)
{
    size_t n = 1 + (len + chunk - 1) / chunk;
    fz_msg *msgs = calloc(n, sizeof *msgs);
    if (!msgs)
        abort();
    Cairn__V1__CreateCheckpointRequest part = CAIRN__V1__CREATE_CHECKPOINT_REQUEST__INIT;
    part.part_case = CAIRN__V1__CREATE_CHECKPOINT_REQUEST__PART_HEADER;
    part.header = (Cairn__V1__CheckpointHeader *)header;
    msgs[0].data = pack(&part.base, &msgs[0].len);
    part.part_case = CAIRN__V1__CREATE_CHECKPOINT_REQUEST__PART_CHUNK;
    for (size_t i = 1, at = 0; i < n; i++, at += chunk) {
        part.chunk.data = (uint8_t *)snapshot + at;
        part.chunk.len = len - at < chunk ? len - at : chunk;
        msgs[i].data = pack(&part.base, &msgs[i].len);
    }
    fz_call_run(fz_app(), fz_method("CreateCheckpoint"), msgs, n, out);
    for (size_t i = 0; i < n; i++)
        free((void *)msgs[i].data);
    free(msgs);
}

void fz_expect_sane(const char *name, const fz_reply *r)
{
    switch (r->code) {
    case SRV_UNKNOWN:
    case SRV_INTERNAL:
    case SRV_DATA_LOSS:
    case SRV_UNAVAILABLE:
        fprintf(stderr, "%s: %s: %s\n", name, srv_code_name(r->code), r->err.msg);
        abort();
    default:
        break;
    }
    if (r->code && !r->err.msg[0]) {
        fprintf(stderr, "%s: %s without a message\n", name, srv_code_name(r->code));
        abort();
    }
}
