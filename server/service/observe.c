#include "service/observe.h"
#include "service/app.h"
#include "base/clock.h"
#include "base/log.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* The gRPC status codes, 0..16: every label set is known at start. */
enum { N_CODES = SRV_UNAUTHENTICATED + 1 };

typedef struct method_stats {
    const char *name;             /* "GetRun": the path's last part */
    bool server_stream;           /* its duration is the client's to choose */
    srv_counter requests[N_CODES];
    srv_counter replays;
    srv_histogram duration_us;
} method_stats;

struct srv_observe {
    int slow_call_ms;
    int64_t started_us;           /* wall clock, for process_start_time_seconds */
    size_t n;                     /* methods[n] counts calls to methods not served */
    method_stats methods[];
};

srv_observe *srv_observe_create(const srv_rpc_method *methods, size_t n, int slow_call_ms)
{
    srv_observe *obs = calloc(1, sizeof *obs + (n + 1) * sizeof obs->methods[0]);
    if (!obs)
        return NULL;
    obs->slow_call_ms = slow_call_ms;
    obs->started_us = srv_now_us();
    obs->n = n;
    for (size_t i = 0; i <= n; i++) {
        method_stats *m = &obs->methods[i];
        const char *slash = i < n ? strrchr(methods[i].path, '/') : NULL;
        m->name = i == n ? "unknown" : slash ? slash + 1 : methods[i].path;
        m->server_stream = i < n && methods[i].shape == SRV_RPC_SERVER_STREAM;
        srv_histogram_init(&m->duration_us, srv_duration_bounds_us, srv_duration_bounds_n);
    }
    return obs;
}

void srv_observe_free(srv_observe *obs)
{
    free(obs);
}

/* One line per failed or slow call, and per call at debug. A server
 * stream lasts as long as its client keeps it open, so it is never slow. */
static void log_call(const srv_observe *obs, const method_stats *m, srv_call *call,
                     const srv_call_outcome *o)
{
    bool slow = obs->slow_call_ms == 0 ||
                (!m->server_stream && o->duration_us >= (int64_t)obs->slow_call_ms * 1000);
    srv_log_level level = o->code != SRV_OK || slow ? SRV_LOG_INFO : SRV_LOG_DEBUG;
    if (!srv_log_enabled(level))
        return;
    char duration[32], peer[128];
    snprintf(duration, sizeof duration, "%.3f", (double)o->duration_us / 1000.0);
    srv_log_field fields[7] = {
        {"method", m->name, false},
        {"code", srv_code_name(o->code), false},
        {"duration_ms", duration, true},
        {"peer", srv_call_peer(call, peer, sizeof peer), false},
        {"replayed", o->replayed ? "true" : "false", true},
    };
    size_t n = 5;
    if (o->run_id)
        fields[n++] = (srv_log_field){"run_id", o->run_id, false};
    if (o->code != SRV_OK && o->message)
        fields[n++] = (srv_log_field){"error", o->message, false};
    srv_log_fields(level, fields, n, "%s",
                   o->code != SRV_OK ? "call failed" : slow ? "slow call" : "call");
}

void srv_observe_call(void *appv, srv_call *call, const srv_call_outcome *o)
{
    srv_observe *obs = ((srv_app *)appv)->observe;
    method_stats *m = &obs->methods[o->method <= obs->n ? o->method : obs->n];
    srv_counter_add(&m->requests[(unsigned)o->code < N_CODES ? o->code : SRV_UNKNOWN], 1);
    srv_histogram_observe(&m->duration_us, (uint64_t)(o->duration_us > 0 ? o->duration_us : 0));
    if (o->replayed)
        srv_counter_add(&m->replays, 1);
    log_call(obs, m, call, o);
}

bool srv_observe_serving(void *appv)
{
    return atomic_load(&((srv_app *)appv)->serving);
}

static void render_calls(srv_observe *obs, srv_expo *e)
{
    char labels[160];
    srv_expo_family(e, "cairn_rpc_requests_total", "counter",
                    "Calls ended, by method and gRPC status code.");
    for (size_t i = 0; i <= obs->n; i++) {
        for (int c = 0; c < N_CODES; c++) {
            snprintf(labels, sizeof labels, "method=\"%s\",code=\"%s\"", obs->methods[i].name,
                     srv_code_name((srv_code)c));
            srv_expo_sample(e, "cairn_rpc_requests_total", labels,
                            (double)srv_counter_get(&obs->methods[i].requests[c]));
        }
    }
    srv_expo_family(e, "cairn_rpc_duration_seconds", "histogram",
                    "Time from a call's arrival to its end being sent, by method.");
    for (size_t i = 0; i <= obs->n; i++) {
        snprintf(labels, sizeof labels, "method=\"%s\"", obs->methods[i].name);
        srv_expo_histogram(e, "cairn_rpc_duration_seconds", labels,
                           &obs->methods[i].duration_us, 1e-6);
    }
    srv_expo_family(e, "cairn_idempotent_replays_total", "counter",
                    "Calls answered from an idempotency record (cairn-replayed: true), by method.");
    for (size_t i = 0; i <= obs->n; i++) {
        snprintf(labels, sizeof labels, "method=\"%s\"", obs->methods[i].name);
        srv_expo_sample(e, "cairn_idempotent_replays_total", labels,
                        (double)srv_counter_get(&obs->methods[i].replays));
    }
}

static void gauge(srv_expo *e, const char *name, const char *help, double value)
{
    srv_expo_family(e, name, "gauge", help);
    srv_expo_sample(e, name, "", value);
}

static void render_writes(srv_app *app, srv_expo *e)
{
    gauge(e, "cairn_ledger_queue_depth", "Writes waiting for the ledger's writer thread.",
          srv_ledger_queued(app->ledger));
    srv_ledger_metrics *lm = srv_ledger_metrics_of(app->ledger);
    srv_expo_family(e, "cairn_ledger_batch_size", "histogram",
                    "Mutations per group-commit transaction.");
    srv_expo_histogram(e, "cairn_ledger_batch_size", "", &lm->batch_size, 1);
    srv_expo_family(e, "cairn_store_commit_seconds", "histogram",
                    "Time the store's commit took per transaction, its fsync included.");
    srv_expo_histogram(e, "cairn_store_commit_seconds", "", &lm->commit_us, 1e-6);
}

static void render_state(srv_app *app, srv_expo *e)
{
    gauge(e, "cairn_watch_streams", "WatchEvents streams open.",
          srv_watch_open_streams(app->watch));
    int uploads;
    uint64_t staged = srv_upload_gate_staged(&app->uploads, &uploads);
    gauge(e, "cairn_upload_staged_bytes",
          "Declared snapshot sizes of the CreateCheckpoint uploads staging now.",
          (double)staged);
    gauge(e, "cairn_uploads_in_progress", "CreateCheckpoint uploads in progress.", uploads);
    srv_store_usage usage;
    srv_error err;
    if (srv_store_usage_get(app->store, &usage, &err)) {
        /* Left out of this scrape: a gap shows, a made-up zero would not. */
        srv_debug("metrics: cannot read the store's usage: %s", err.msg);
        return;
    }
    gauge(e, "cairn_leases_live", "Worker leases held and not expired.",
          (double)usage.live_leases);
    gauge(e, "cairn_store_bytes",
          "Bytes the store takes on disk (SQLite: database, WAL and snapshot files; "
          "PostgreSQL: pg_database_size).",
          (double)usage.bytes);
}

/* Resident memory from /proc/self/statm (pages); -1 when unreadable. */
static double resident_bytes(void)
{
    FILE *f = fopen("/proc/self/statm", "r");
    unsigned long long size, resident;
    int got = f ? fscanf(f, "%llu %llu", &size, &resident) : 0;
    if (f)
        fclose(f);
    return got == 2 ? (double)resident * (double)sysconf(_SC_PAGESIZE) : -1;
}

static void render_process(srv_observe *obs, srv_expo *e)
{
    char labels[160];
    snprintf(labels, sizeof labels, "version=\"%s\",revision=\"%s\"", srv_config_version(),
             srv_config_revision());
    srv_expo_family(e, "cairn_build_info", "gauge",
                    "1, labelled with cairnd's version and git revision.");
    srv_expo_sample(e, "cairn_build_info", labels, 1);
    gauge(e, "process_start_time_seconds", "Start time of the process since the Unix epoch.",
          (double)obs->started_us / 1e6);
    double rss = resident_bytes();
    if (rss >= 0)
        gauge(e, "process_resident_memory_bytes", "Resident memory size in bytes.", rss);
}

void srv_observe_render(void *appv, srv_expo *out)
{
    srv_app *app = appv;
    render_process(app->observe, out);
    render_calls(app->observe, out);
    render_writes(app, out);
    render_state(app, out);
}
