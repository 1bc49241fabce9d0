/* cairnd: parse settings, lock the data dir, open the store, start the
 * ledger and the gRPC transport, then wait for SIGTERM/SIGINT and shut
 * down in reverse order. */
#include "service/app.h"
#include "config/config.h"
#include "service/dispatch.h"
#include "service/contract.h"
#include "base/log.h"
#include "transport/rpc.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

/* Writes waiting for the writer at most; past it, callers get
 * RESOURCE_EXHAUSTED with a pushback. */
enum { LEDGER_MAX_QUEUE = 10000 };

/* mkdir -p */
static int make_dirs(const char *path)
{
    char buf[4096];
    size_t n = strlen(path);
    if (n >= sizeof buf)
        return -1;
    memcpy(buf, path, n + 1);
    for (char *p = buf + 1; *p; p++) {
        if (*p != '/')
            continue;
        *p = '\0';
        if (mkdir(buf, 0755) < 0 && errno != EEXIST)
            return -1;
        *p = '/';
    }
    return mkdir(buf, 0755) < 0 && errno != EEXIST ? -1 : 0;
}

/* Holds an exclusive lock on data_dir/LOCK for the life of the process,
 * so two cairnd never share one store. Returns the fd, or -1. */
static int lock_data_dir(const char *dir)
{
    char path[4200];
    snprintf(path, sizeof path, "%s/LOCK", dir);
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0) {
        srv_error_log("cannot open %s: %s", path, strerror(errno));
        return -1;
    }
    if (flock(fd, LOCK_EX | LOCK_NB) < 0) {
        char pid[32] = "";
        ssize_t n = pread(fd, pid, sizeof pid - 1, 0);
        pid[n > 0 ? n : 0] = '\0';
        pid[strcspn(pid, "\n")] = '\0';
        srv_error_log("data dir %s is in use by another cairnd%s%s%s; "
                      "stop it or choose another --data-dir",
                      dir, *pid ? " (pid " : "", pid, *pid ? ")" : "");
        close(fd);
        return -1;
    }
    char pid[32];
    int n = snprintf(pid, sizeof pid, "%ld\n", (long)getpid());
    if (ftruncate(fd, 0) < 0 || pwrite(fd, pid, (size_t)n, 0) < 0)
        srv_warn("cannot write the pid into %s: %s", path, strerror(errno));
    return fd;
}

int main(int argc, char **argv)
{
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
     * and only sigwait below sees these signals. */
    sigset_t stop_signals;
    sigemptyset(&stop_signals);
    sigaddset(&stop_signals, SIGTERM);
    sigaddset(&stop_signals, SIGINT);
    pthread_sigmask(SIG_BLOCK, &stop_signals, NULL);
    signal(SIGPIPE, SIG_IGN);
    /* Past a file-size limit, writes fail with EFBIG instead of killing
     * the server. */
    signal(SIGXFSZ, SIG_IGN);

    if (make_dirs(cfg.data_dir) < 0) {
        srv_error_log("--data-dir: cannot create %s: %s", cfg.data_dir, strerror(errno));
        return 1;
    }
    int lock_fd = lock_data_dir(cfg.data_dir);
    if (lock_fd < 0)
        return 1;

    srv_error err;
    srv_app app = {.cfg = &cfg, .pins = srv_pins_create()};
    if (!app.pins) {
        srv_error_log("out of memory");
        return 1;
    }
    if (srv_store_sqlite_open(cfg.data_dir, cfg.threads, &app.store, &err)) {
        srv_error_log("%s", err.msg);
        return 1;
    }
    if (srv_watch_start(app.store, &app.watch, &err) ||
        srv_ledger_start(app.store, LEDGER_MAX_QUEUE, &app.ledger, &err)) {
        srv_error_log("%s", err.msg);
        srv_watch_stop(app.watch);
        srv_store_close(app.store);
        return 1;
    }

    srv_rpc_global_init();
    size_t n_methods;
    srv_rpc_config rc = {
        .listen = cfg.listen,
        .threads = cfg.threads,
        .max_message_bytes = SRV_MESSAGE_MAX,
        .methods = srv_dispatch_methods(&n_methods),
        .on_call = srv_dispatch_call,
        .app = &app,
    };
    rc.n_methods = n_methods;
    srv_rpc *rpc = NULL;
    char bound[300];
    int status = 0;
    if (srv_rpc_start(&rc, &rpc, bound, sizeof bound, &err)) {
        srv_error_log("%s", err.msg);
        status = 1;
    } else {
        atomic_store(&app.serving, true);
        printf("listening on %s\n", bound);
        fflush(stdout);
        srv_info("cairnd serving on %s, data dir %s, %d threads", bound, cfg.data_dir,
                 cfg.threads);

        int sig = 0;
        sigwait(&stop_signals, &sig);
        srv_info("received %s; shutting down", sig == SIGINT ? "SIGINT" : "SIGTERM");
        atomic_store(&app.serving, false);
        srv_watch_close_all(app.watch); /* parked streams would hold shutdown up */
        srv_rpc_stop(rpc, cfg.shutdown_grace_ms);
    }
    srv_ledger_stop(app.ledger);
    srv_watch_stop(app.watch);
    srv_store_close(app.store);
    srv_pins_destroy(app.pins);
    srv_rpc_global_shutdown();
    close(lock_fd);
    if (!status)
        srv_info("cairnd stopped cleanly");
    return status;
}
