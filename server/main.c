/* cairnd: wiring only. Parse settings, open the store (the backend locks
 * its data), start the I/O pool, the ledger, the watch hub, the metrics
 * endpoint and the gRPC transport, then wait for SIGTERM/SIGINT and shut
 * down in reverse order.
 * SIGHUP reloads what can be reloaded (srv_config_reload, the tokens file,
 * then the TLS files: srv_rpc_reload_tls) and serves on.
 * The service manager hears of each step (base/notify.h, a no-op outside
 * systemd's Type=notify): READY=1 once the transport serves, RELOADING=1
 * then READY=1 around a reload, STOPPING=1 when shutdown begins.
 *
 * A failed fsync stops the store (store.h, "Fail-stop"): the write in hand
 * and every later one fail UNAVAILABLE, and cairnd shuts down as on
 * SIGTERM (calls in flight get the grace period) and exits 1. It does not
 * go on serving: after a failed fsync the page cache may hold what the disk
 * lost, and only a new process, started by the supervisor, reads the
 * store again from what is really on disk (SQLite's WAL recovery, the
 * sweep of stranded files). */
#include "service/app.h"
#include "config/config.h"
#include "service/dispatch.h"
#include "service/contract.h"
#include "service/scope.h"
#include "service/observe.h"
#include "base/log.h"
#include "metrics/http.h"
#include "base/notify.h"
#include "core/lifecycle.h"
#include "store/sqlite/sqlite.h"
#include "transport/rpc.h"

#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* Writes waiting for the writer at most; past it, callers get
 * RESOURCE_EXHAUSTED with a pushback. */
enum { LEDGER_MAX_QUEUE = 10000 };

/* The store's on_failed: stop as on SIGTERM, taken by main's sigwait
 * (the signal is blocked in every thread, so it waits for it if main has
 * not got there yet), and exit 1. */
static void store_failed(void *ctx, const srv_error *why)
{
    (void)why; /* the store logged it */
    srv_app *app = ctx;
    atomic_store(&app->store_failed, true);
    kill(getpid(), SIGTERM);
}

/* The store's on_committed (another replica's commit, LISTEN/NOTIFY):
 * to the watch hub once it runs and until it stops. */
static void store_committed(void *ctx, const char *run_id, uint64_t last_seq)
{
    srv_app *app = ctx;
    pthread_mutex_lock(&app->commits_mu);
    if (app->commits_to)
        srv_watch_committed(app->commits_to, run_id, last_seq);
    pthread_mutex_unlock(&app->commits_mu);
}

/* The store's on_resync (its listener lost announcements and listens
 * again): the watch hub re-reads what it watches. */
static void store_resync(void *ctx)
{
    srv_app *app = ctx;
    pthread_mutex_lock(&app->commits_mu);
    if (app->commits_to)
        srv_watch_resync(app->commits_to);
    pthread_mutex_unlock(&app->commits_mu);
}

/* The store's on_deleted (a run deleted by any replica, LISTEN/NOTIFY):
 * the watch hub ends the run's watchers. */
static void store_deleted(void *ctx, const char *run_id)
{
    srv_app *app = ctx;
    pthread_mutex_lock(&app->commits_mu);
    if (app->commits_to)
        srv_watch_deleted(app->commits_to, run_id);
    pthread_mutex_unlock(&app->commits_mu);
}

static void commits_to(srv_app *app, srv_watch *w)
{
    pthread_mutex_lock(&app->commits_mu);
    app->commits_to = w;
    pthread_mutex_unlock(&app->commits_mu);
}

/* SIGHUP: re-reads the settings and applies the reloadable ones, the
 * tokens file (tokens may be NULL: none) and the TLS files (each logs its
 * own line); the service manager sees RELOADING=1 (with the monotonic
 * time that systemd's Type=notify-reload asks for) until READY=1 again.
 * cfg is the settings at start; the report compares with what is in
 * effect now. */
static void reload(const srv_config *cfg, srv_tokens *tokens, srv_rpc *rpc, int argc, char **argv,
                   const char *bound)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    srv_notify("RELOADING=1\nMONOTONIC_USEC=%lld",
               (long long)ts.tv_sec * 1000000 + ts.tv_nsec / 1000);
    srv_config running = *cfg, next;
    running.log_level = srv_log_get_level();
    char report[512];
    if (srv_config_reload(&running, &next, argc, argv, report, sizeof report) == 0)
        srv_log_set_level(next.log_level);
    srv_info("received SIGHUP; reloaded: %s", report);
    if (tokens)
        srv_tokens_reload(tokens);
    srv_rpc_reload_tls(rpc);
    srv_notify("READY=1\nSTATUS=serving on %s", bound);
}

static void print_problem(void *ctx, const char *line)
{
    (void)ctx;
    printf("%s\n", line);
}

/* `cairnd backup --data-dir D DEST` and `cairnd verify --data-dir D`
 * (SQLite data dirs; docs/operations.md, "Backup"): exit 0 done or no
 * problem, 1 failed or problems (one line each), 2 bad usage. */
static int admin_command(int argc, char **argv)
{
    bool backup = strcmp(argv[1], "backup") == 0;
    int want = backup ? 5 : 4;
    if (argc != want || strcmp(argv[2], "--data-dir") != 0) {
        fprintf(stderr, "usage: cairnd backup --data-dir DIR DEST\n"
                        "       cairnd verify --data-dir DIR\n");
        return 2;
    }
    srv_error err;
    if (backup) {
        if (srv_sqlite_backup(argv[3], argv[4], &err)) {
            fprintf(stderr, "cairnd backup: %s\n", err.msg);
            return 1;
        }
        printf("backed up %s into %s\n", argv[3], argv[4]);
        return 0;
    }
    size_t checked, problems;
    if (srv_sqlite_verify(argv[3], print_problem, NULL, &checked, &problems, &err)) {
        fprintf(stderr, "cairnd verify: %s\n", err.msg);
        return 1;
    }
    if (problems)
        return 1;
    printf("ok: %s: cairn.db intact, %zu checkpoints and their snapshots checked\n", argv[3],
           checked);
    return 0;
}

/* Closes what main opened before the transport, when it cannot go on;
 * each part may be NULL. */
static void close_core(srv_app *app)
{
    srv_ledger_free(app->ledger);
    srv_watch_stop(app->watch);
    srv_pool_stop(app->io);
    srv_store_close(app->store);
    srv_tokens_close(app->tokens);
}

int main(int argc, char **argv)
{
    /* The data dir is cairnd's alone: whatever is created in it (SQLite's
     * files included) is 0600, directories 0700. */
    umask(077);
    if (argc >= 2 && (strcmp(argv[1], "backup") == 0 || strcmp(argv[1], "verify") == 0))
        return admin_command(argc, argv);
    srv_config cfg;
    switch (srv_config_parse(&cfg, argc, argv)) {
    case SRV_CONFIG_EXIT_OK:
        return 0;
    case SRV_CONFIG_EXIT_USAGE:
        return 2;
    case SRV_CONFIG_RUN:
        break;
    }
    srv_log_setup(cfg.log_level, cfg.log_format);

    /* Blocked before any thread exists, so every thread inherits the mask
     * and only sigwait below sees these signals. A SIGHUP that comes while
     * cairnd starts or stops waits, blocked, and kills nothing. */
    sigset_t signals;
    sigemptyset(&signals);
    sigaddset(&signals, SIGTERM);
    sigaddset(&signals, SIGINT);
    sigaddset(&signals, SIGHUP);
    pthread_sigmask(SIG_BLOCK, &signals, NULL);
    signal(SIGPIPE, SIG_IGN);
    /* Past a file-size limit, writes fail with EFBIG instead of killing
     * the server. */
    signal(SIGXFSZ, SIG_IGN);

    srv_error err;
    srv_app app = {.cfg = &cfg, .commits_mu = PTHREAD_MUTEX_INITIALIZER};
    /* Before the store: a bad file stops cairnd before it takes the data. */
    if (cfg.auth_tokens[0]) {
        if (!(app.tokens = srv_tokens_open(cfg.auth_tokens, &err))) {
            fprintf(stderr, "cairnd: --auth-tokens: %s\n", err.msg);
            return 2;
        }
        srv_info("auth tokens: %zu tokens from %s; every call but Health needs one",
                 srv_tokens_count(app.tokens), cfg.auth_tokens);
    }
    srv_upload_gate_init(&app.uploads, cfg.max_uploads, (uint64_t)cfg.max_staged_bytes);
    const srv_store_config store_cfg = {.data_dir = cfg.data_dir,
                                        /* the I/O pool's and the watch hub's */
                                        .readers = cfg.io_threads + 1,
                                        .pg_dsn = cfg.pg_dsn,
                                        .pg_pool_size = cfg.pg_pool_size,
                                        .on_failed = store_failed,
                                        .on_failed_ctx = &app,
                                        .on_committed = store_committed,
                                        .on_resync = store_resync,
                                        .on_deleted = store_deleted,
                                        .on_committed_ctx = &app};
    if (srv_store_open(cfg.store, &store_cfg, &app.store, &err)) {
        srv_error_log("%s", err.msg);
        srv_tokens_close(app.tokens);
        return 1;
    }
    if (!(app.io = srv_pool_start(cfg.io_threads)))
        srv_fail(&err, SRV_RESOURCE_EXHAUSTED, "cannot start the I/O threads");
    if (!app.io || srv_ledger_start(app.store, LEDGER_MAX_QUEUE, &app.ledger, &err) ||
        srv_watch_start(app.store, &app.watch, &err)) {
        srv_error_log("%s", err.msg);
        close_core(&app);
        return 1;
    }
    srv_ledger_observe(app.ledger, srv_watch_committed, app.watch);
    srv_ledger_observe_deletions(app.ledger, srv_watch_deleted, app.watch);
    commits_to(&app, app.watch);
    srv_ledger_limit_bytes(app.ledger, (size_t)cfg.ledger_max_queue_bytes);
    srv_watch_limit(app.watch, cfg.max_watchers);
    srv_watch_use_pool(app.watch, app.io);
    srv_watch_ring_budget(app.watch, (size_t)cfg.watch_ring_bytes);

    srv_lifecycle *lifecycle = NULL;
    if (srv_lifecycle_start(app.ledger, cfg.completed_run_retention_s, cfg.dedup_window_s,
                            &lifecycle, &err)) {
        srv_error_log("%s", err.msg);
        close_core(&app);
        return 1;
    }

    srv_rpc_global_init();
    size_t n_methods;
    const srv_rpc_method *methods = srv_dispatch_methods(&n_methods);
    app.observe = srv_observe_create(methods, n_methods, cfg.slow_call_ms);
    srv_rpc_config rc = {
        .listen = cfg.listen,
        .threads = cfg.threads,
        .max_message_bytes = SRV_MESSAGE_MAX,
        .max_concurrent_streams = cfg.max_concurrent_streams,
        .keepalive_time_ms = cfg.keepalive_time_ms,
        .keepalive_timeout_ms = cfg.keepalive_timeout_ms,
        .max_connection_idle_ms = cfg.max_connection_idle_ms,
        .memory_bytes = (size_t)cfg.grpc_memory_bytes,
        .tls_cert = cfg.tls_cert,
        .tls_key = cfg.tls_key,
        .tls_client_ca = cfg.tls_client_ca,
        .methods = methods,
        .n_methods = n_methods,
        .on_call = srv_dispatch_call,
        .authenticate = srv_scope_authenticator(&app),
        .on_end = srv_observe_call,
        .app = &app,
    };
    const srv_metrics_http_config mc = {.listen = cfg.metrics_listen,
                                        .render = srv_observe_render,
                                        .serving = srv_observe_serving,
                                        .ctx = &app};
    bool metrics_on = strcmp(cfg.metrics_listen, "off") != 0;
    srv_metrics_http *metrics = NULL;
    srv_rpc *rpc = NULL;
    char bound[300], metrics_bound[300] = "off";
    int status = 0;
    /* The endpoint comes first, so that a bad --metrics-listen stops
     * cairnd before it takes a call; /healthz says 503 until serving. */
    if (!app.observe) {
        srv_error_log("out of memory");
        status = 1;
    } else if (metrics_on && srv_metrics_http_start(&mc, &metrics, metrics_bound,
                                                    sizeof metrics_bound, &err)) {
        srv_error_log("%s", err.msg);
        status = 1;
    } else if (srv_rpc_start(&rc, &rpc, bound, sizeof bound, &err)) {
        srv_error_log("%s", err.msg);
        status = 1;
    } else {
        atomic_store(&app.serving, true);
        printf("listening on %s\n", bound);
        fflush(stdout);
        srv_info("cairnd serving on %s, metrics on %s, store %s%s%s, %d threads", bound,
                 metrics_bound, cfg.store, strcmp(cfg.store, "sqlite") == 0 ? " in " : "",
                 strcmp(cfg.store, "sqlite") == 0 ? cfg.data_dir : "", cfg.threads);
        /* Only now: the listening socket takes calls, so whatever systemd
         * starts After= cairnd finds it serving. */
        srv_notify("READY=1\nSTATUS=serving on %s\nMAINPID=%ld", bound, (long)getpid());

        int sig = 0;
        while (sigwait(&signals, &sig) == 0 && sig == SIGHUP)
            reload(&cfg, app.tokens, rpc, argc, argv, bound);
        const char *why = atomic_load(&app.store_failed) ? "the store failed"
                          : sig == SIGINT                ? "SIGINT"
                                                         : "SIGTERM";
        srv_notify("STOPPING=1\nSTATUS=shutting down (%s)", why);
        if (atomic_load(&app.store_failed))
            srv_error_log("the store takes no more writes; shutting down to exit 1");
        else
            srv_info("received %s; shutting down", why);
        atomic_store(&app.serving, false);
        srv_watch_close_all(app.watch); /* parked streams would hold shutdown up */
        srv_rpc_shutdown(rpc, cfg.shutdown_grace_ms);
    }
    /* In this order: no new calls (above); no more sweeps; the ledger
     * answers every call it holds; then the transport, which waits for every call to be
     * released (the I/O pool runs on meanwhile: its jobs end calls); the
     * metrics endpoint, which answered 503 on /healthz since shutdown
     * began and reads all of them; only then may the pool and the ledger,
     * which both submit to, go. */
    srv_lifecycle_stop(lifecycle);
    srv_ledger_stop(app.ledger);
    srv_rpc_stop(rpc);
    srv_metrics_http_stop(metrics);
    srv_pool_stop(app.io);
    srv_ledger_free(app.ledger);
    commits_to(&app, NULL);
    srv_watch_stop(app.watch);
    srv_store_close(app.store);
    srv_upload_gate_destroy(&app.uploads);
    srv_tokens_close(app.tokens); /* the transport, which asked it, is gone */
    srv_observe_free(app.observe);
    srv_rpc_global_shutdown();
    if (atomic_load(&app.store_failed))
        status = 1;
    if (!status)
        srv_info("cairnd stopped cleanly");
    return status;
}
