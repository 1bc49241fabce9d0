#include "cairn_test.h"
#include "pg.h"

#include <ctype.h>
#include <libpq-fe.h>
#include <pthread.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <poll.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* In a forked child: a test that fails midway (cmocka jumps past its
 * cleanup) must not leave its servers running. */
static void die_with_parent(void)
{
    prctl(PR_SET_PDEATHSIG, SIGKILL);
}

/* ---- the store (CAIRN_TEST_STORE) ---- */

/* ctest's SKIP_RETURN_CODE. */
enum { CT_SKIPPED = 77 };

const char *ct_store(void)
{
    const char *name = getenv("CAIRN_TEST_STORE");
    return name && *name ? name : "sqlite";
}

bool ct_store_is_sqlite(void)
{
    return strcmp(ct_store(), "sqlite") == 0;
}

/* postgres: one cluster per test process, started by the first server
 * and stopped at exit (the postmaster also dies with the process: pg.c).
 * Guarded, as a test may make servers from several threads. */
static struct {
    pthread_mutex_t mu;
    bool started;
    ct_pg pg;
    char admin[sizeof ((ct_pg *)0)->dsn]; /* the superuser's DSN */
    int dbs;         /* databases made so far */
} cluster = {.mu = PTHREAD_MUTEX_INITIALIZER};

static void cluster_stop(void)
{
    ct_pg_stop(&cluster.pg);
}

/* Starts the cluster once (or takes CAIRN_TEST_PG_DSN's). Exits 77 when
 * PostgreSQL cannot run here, 1 when it failed: a suite that was asked
 * for postgres never runs on anything else. Call with cluster.mu held. */
static void cluster_start(void)
{
    if (cluster.started)
        return;
    const char *dsn = getenv("CAIRN_TEST_PG_DSN");
    if (dsn && *dsn) {
        snprintf(cluster.admin, sizeof cluster.admin, "%s", dsn);
    } else {
        int rc = ct_pg_start(&cluster.pg);
        if (rc != 0) {
            fprintf(stderr, "%s: PostgreSQL: %s\n", rc > 0 ? "SKIPPED" : "FAILED",
                    cluster.pg.why);
            fflush(NULL);
            _exit(rc > 0 ? CT_SKIPPED : 1);
        }
        snprintf(cluster.admin, sizeof cluster.admin, "%s", cluster.pg.dsn);
        atexit(cluster_stop);
    }
    cluster.started = true;
}

/* A fresh database for s: its name holds the pid, so test processes
 * sharing one CAIRN_TEST_PG_DSN do not collide. */
static int make_database(ct_server *s)
{
    pthread_mutex_lock(&cluster.mu);
    cluster_start();
    snprintf(s->pg_db, sizeof s->pg_db, "cairn_t%ld_%d", (long)getpid(), ++cluster.dbs);
    char dsn[sizeof s->pg_env - sizeof "CAIRN_PG_DSN="];
    int rc = ct_pg_create_db(cluster.admin, s->pg_db, dsn, sizeof dsn);
    pthread_mutex_unlock(&cluster.mu);
    if (rc < 0) {
        s->pg_db[0] = '\0';
        return -1;
    }
    snprintf(s->pg_env, sizeof s->pg_env, "CAIRN_PG_DSN=%s", dsn);
    return 0;
}

long long ct_pg_query_int(const ct_server *s, const char *sql)
{
    if (!s->pg_db[0]) {
        fprintf(stderr, "ct_pg_query_int: %s has no database\n", s->dir);
        return -1;
    }
    PGconn *c = PQconnectdb(s->pg_env + strlen("CAIRN_PG_DSN="));
    long long v = -1;
    if (PQstatus(c) != CONNECTION_OK) {
        fprintf(stderr, "ct_pg_query_int: cannot connect: %s", PQerrorMessage(c));
    } else {
        PGresult *r = PQexec(c, sql);
        if (PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1 && PQnfields(r) == 1)
            v = strtoll(PQgetvalue(r, 0, 0), NULL, 10);
        else
            fprintf(stderr, "ct_pg_query_int: %s: %s", sql, PQresultErrorMessage(r));
        PQclear(r);
    }
    PQfinish(c);
    return v;
}

int ct_server_init(ct_server *s)
{
    memset(s, 0, sizeof *s);
    if (ct_temp_dir(s->dir, sizeof s->dir, "cairn-test") < 0)
        return -1;
    snprintf(s->data_dir, sizeof s->data_dir, "%s/data", s->dir);
    snprintf(s->log_path, sizeof s->log_path, "%s/cairnd.log", s->dir);
    if (!ct_store_is_sqlite() && make_database(s) < 0) {
        ct_rmrf(s->dir);
        s->dir[0] = '\0';
        return -1;
    }
    return 0;
}

/* Reads one line (up to cap - 1 bytes, without its '\n') a byte at a
 * time, so what follows stays in the pipe. -1 at the end of the pipe. */
static ssize_t read_line(int fd, char *buf, size_t cap)
{
    size_t n = 0;
    while (n < cap - 1) {
        char c;
        ssize_t r = read(fd, &c, 1);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            return n ? (ssize_t)n : -1;
        if (c == '\n')
            break;
        buf[n++] = c;
    }
    buf[n] = '\0';
    return (ssize_t)n;
}

/* The address after "listening on " in a child's first line, or NULL. */
static const char *listening_on(int fd, char *buf, size_t cap)
{
    if (read_line(fd, buf, cap) < 0)
        return NULL;
    const char *p = strstr(buf, "listening on ");
    return p ? p + 13 : NULL;
}

/* Reads a child's stdout until "listening on HOST:PORT": the port, or -1. */
static int read_port(int fd)
{
    char buf[400];
    const char *addr = listening_on(fd, buf, sizeof buf);
    const char *colon = addr ? strrchr(addr, ':') : NULL;
    int port = colon ? atoi(colon + 1) : 0;
    return port > 0 ? port : -1;
}

/* cairnd's address: HOST:PORT (then s->port), or unix:PATH (port 0). */
static int read_address(int fd, ct_server *s)
{
    char buf[400];
    const char *addr = listening_on(fd, buf, sizeof buf);
    if (addr && strncmp(addr, "unix:", 5) == 0) {
        snprintf(s->target, sizeof s->target, "%s", addr);
        s->port = 0;
        return 0;
    }
    const char *colon = addr ? strrchr(addr, ':') : NULL;
    s->port = colon ? atoi(colon + 1) : -1;
    snprintf(s->target, sizeof s->target, "127.0.0.1:%d", s->port);
    return s->port > 0 ? 0 : -1;
}

/* What spawn does with the child's stderr when log_path is this: it
 * keeps the test's. */
static const char inherit_stderr[] = "";

/* At most this many "KEY=VALUE" strings for a child's environment: a
 * ct_server's 8 and its store's. */
enum { ENV_MAX = 9 };

/* Forks argv (NULL-ended; argv[0] a path, or a name looked up in PATH)
 * with the "KEY=VALUE" strings of `env` (NULL-ended, at most ENV_MAX;
 * may be NULL). Its stdout goes to the pipe
 * whose read end lands in *out; its stderr to `log_path`, to the same
 * pipe when NULL, or stays the test's with inherit_stderr. Returns the
 * pid, or -1. */
static pid_t spawn(const char *const *argv, const char *const *env, const char *log_path,
                   int *out)
{
    int p[2];
    if (pipe2(p, O_CLOEXEC) < 0)
        return -1;
    pid_t pid = fork();
    if (pid < 0) {
        close(p[0]);
        close(p[1]);
        return -1;
    }
    if (pid == 0) {
        die_with_parent();
        for (int i = 0; env && i < ENV_MAX && env[i]; i++)
            putenv((char *)env[i]);
        dup2(p[1], STDOUT_FILENO);
        if (log_path != inherit_stderr) {
            int err = log_path ? open(log_path, O_WRONLY | O_CREAT | O_APPEND, 0644) : p[1];
            if (err >= 0)
                dup2(err, STDERR_FILENO);
        }
        execvp(argv[0], (char *const *)argv); /* a path, or a wrapper's name */
        _exit(127);
    }
    close(p[1]);
    *out = p[0];
    return pid;
}

/* ---- CAIRN_TEST_WRAP: cairnd under a checker (valgrind) ---- */

/* The wrapper's words, split once; guarded, as a test may start servers
 * from several threads. */
enum { WRAP_MAX = 32 };
static struct {
    pthread_once_t once;
    char *copy;                 /* the words point into it; kept for the process */
    const char *words[WRAP_MAX + 1];
    int n;
    pthread_mutex_t mu;
    int failed;                 /* cairnd exits with CT_WRAP_ERROR_EXIT seen */
} wrap = {.once = PTHREAD_ONCE_INIT, .mu = PTHREAD_MUTEX_INITIALIZER};

/* A failed check must fail the test even where it ignores how cairnd
 * stopped (kill-and-restart tests, cleanup paths). */
static void wrap_check_at_exit(void)
{
    if (wrap.failed) {
        fprintf(stderr, "FAILED: %d cairnd process(es) exited %d under CAIRN_TEST_WRAP (%s): "
                        "see the wrapper's log\n", wrap.failed, CT_WRAP_ERROR_EXIT, wrap.copy);
        fflush(NULL);
        _exit(1);
    }
}

static void wrap_parse(void)
{
    const char *env = getenv("CAIRN_TEST_WRAP");
    if (!env || !*env || !(wrap.copy = strdup(env)))
        return;
    char *save = NULL;
    for (char *w = strtok_r(wrap.copy, " \t", &save); w && wrap.n < WRAP_MAX;
         w = strtok_r(NULL, " \t", &save))
        wrap.words[wrap.n++] = w;
    if (wrap.n)
        atexit(wrap_check_at_exit);
}

int ct_time_scale(void)
{
    const char *env = getenv("CAIRN_TEST_TIME_SCALE");
    int k = env ? atoi(env) : 1;
    return k > 1 ? k : 1;
}

/* spawn for cairnd with `args` (NULL-ended, at most 62), behind the
 * CAIRN_TEST_WRAP words when set. */
static pid_t spawn_cairnd(const char *const *args, const char *const *env, const char *log_path,
                          int *out)
{
    pthread_once(&wrap.once, wrap_parse);
    const char *argv[WRAP_MAX + 64];
    int argc = 0;
    for (int i = 0; i < wrap.n; i++)
        argv[argc++] = wrap.words[i];
    const char *cairnd = getenv("CAIRN_TEST_CAIRND");
    argv[argc++] = cairnd && *cairnd ? cairnd : CT_CAIRND_PATH;
    for (int i = 0; args && args[i] && i < 62; i++)
        argv[argc++] = args[i];
    argv[argc] = NULL;
    return spawn(argv, env, log_path, out);
}

static int wait_exit(pid_t pid)
{
    int status;
    while (waitpid(pid, &status, 0) < 0)
        if (errno != EINTR)
            return -1;
    if (WIFEXITED(status))
        return WEXITSTATUS(status);
    return 128 + WTERMSIG(status);
}

/* wait_exit for a cairnd: notes an exit that is the wrapper's verdict. */
static int wait_cairnd(pid_t pid)
{
    int rc = wait_exit(pid);
    if (rc == CT_WRAP_ERROR_EXIT && wrap.n) {
        pthread_mutex_lock(&wrap.mu);
        wrap.failed++;
        pthread_mutex_unlock(&wrap.mu);
        fprintf(stderr, "cairnd %ld: exit %d: CAIRN_TEST_WRAP found errors\n", (long)pid, rc);
    }
    return rc;
}

int ct_server_start_postgres(ct_server *s, const char *dsn)
{
    const char *args[] = {"--store", "postgres", "--pg-dsn", dsn, NULL};
    if (ct_server_start(s, 0, args) < 0) {
        fprintf(stderr, "cairnd did not start; its log: %s\n", s->log_path);
        return -1;
    }
    return 0;
}

int ct_server_start(ct_server *s, int port, const char *const *extra_args)
{
    char listen[sizeof s->listen];
    if (s->listen[0])
        snprintf(listen, sizeof listen, "%s", s->listen);
    else
        snprintf(listen, sizeof listen, "127.0.0.1:%d", port);
    /* Metrics on a free port too, so servers (and other suites) running
     * at once never contend for 9464; a test's own flag comes later and wins. */
    const char *args[63] = {"--listen", listen, "--data-dir", s->data_dir, "--threads", "2",
                            "--metrics-listen", "127.0.0.1:0"};
    int argc = 8;
    /* The DSN goes in the environment (as a deployment's Secret does),
     * the store on the command line, where a test's flags may follow. */
    const char *env[ENV_MAX + 1] = {NULL};
    int envc = 0;
    for (int i = 0; i < 8 && s->env[i]; i++)
        env[envc++] = s->env[i];
    if (s->pg_db[0]) {
        args[argc++] = "--store";
        args[argc++] = "postgres";
        env[envc++] = s->pg_env;
    }
    for (int i = 0; extra_args && extra_args[i] && argc < 62; i++)
        args[argc++] = extra_args[i];
    args[argc] = NULL;

    int out;
    pid_t pid = spawn_cairnd(args, env, s->log_path, &out);
    if (pid < 0)
        return -1;
    s->pid = pid;
    int rc = read_address(out, s);
    close(out);
    if (rc < 0) {
        s->exit_status = wait_cairnd(pid);
        s->pid = 0;
        return -1;
    }
    return 0;
}

int ct_server_stop(ct_server *s)
{
    if (!s->pid)
        return -1;
    kill(s->pid, SIGTERM);
    int rc = wait_cairnd(s->pid);
    s->pid = 0;
    return rc;
}

int ct_helper_start(ct_helper *h, const char *const *argv)
{
    memset(h, 0, sizeof *h);
    h->out = -1;
    /* Not into a pipe nobody reads (a chatty helper would block): its
     * stderr is the test's. */
    int out;
    pid_t pid = spawn(argv, NULL, inherit_stderr, &out);
    if (pid < 0)
        return -1;
    h->pid = pid;
    h->out = out;
    h->port = read_port(out);
    if (h->port < 0) {
        ct_helper_stop(h);
        return -1;
    }
    snprintf(h->target, sizeof h->target, "127.0.0.1:%d", h->port);
    return 0;
}

int ct_helper_read_line(ct_helper *h, char *buf, size_t cap, int timeout_ms)
{
    struct pollfd pfd = {h->out, POLLIN, 0};
    int r;
    while ((r = poll(&pfd, 1, timeout_ms)) < 0 && errno == EINTR)
        ;
    if (r <= 0)
        return -1;
    return (int)read_line(h->out, buf, cap);
}

int ct_helper_stop(ct_helper *h)
{
    int rc = -1;
    if (h->pid) {
        kill(h->pid, SIGTERM);
        rc = wait_exit(h->pid);
        h->pid = 0;
    }
    if (h->out >= 0)
        close(h->out);
    h->out = -1;
    return rc;
}

int ct_server_wait(ct_server *s)
{
    if (!s->pid)
        return -1;
    int rc = wait_cairnd(s->pid);
    s->pid = 0;
    return rc;
}

void ct_server_kill(ct_server *s)
{
    if (!s->pid)
        return;
    kill(s->pid, SIGKILL);
    wait_exit(s->pid);
    s->pid = 0;
}

void ct_server_cleanup(ct_server *s)
{
    ct_server_kill(s);
    if (getenv("CAIRN_TEST_KEEP"))
        return;
    if (s->dir[0])
        ct_rmrf(s->dir);
    /* The cluster's own directory goes at exit; one shared through
     * CAIRN_TEST_PG_DSN keeps nothing of ours. */
    if (s->pg_db[0] && !cluster.pg.pid)
        ct_pg_drop_db(cluster.admin, s->pg_db);
}

/* ms stretched by CAIRN_TEST_TIME_SCALE, at most UINT32_MAX. */
static uint32_t scale_ms(uint32_t ms)
{
    uint64_t v = (uint64_t)ms * (uint64_t)ct_time_scale();
    return v < UINT32_MAX ? (uint32_t)v : UINT32_MAX;
}

/* First a client of default policy connects: its retries wait for the
 * connection (wait-for-ready) instead of failing at once, and gRPC shares
 * the connection (one subchannel for the same address and channel
 * arguments) with c while it lives, so c's health check then gets in at
 * its first attempt. Health checks through c are retried within a bound
 * in case it did not. */
void ct_client_connect(cairn_client *c, const char *target)
{
    if (ct_time_scale() == 1)
        return;
    cairn_client_options opts;
    cairn_client_options_init(&opts);
    opts.target = target;
    opts.retry.call_deadline_ms = scale_ms(opts.retry.call_deadline_ms);
    opts.retry.attempt_deadline_ms = scale_ms(opts.retry.attempt_deadline_ms);
    cairn_client *warm = NULL;
    cairn_error err;
    cairn_serving serving;
    if (cairn_client_create(&opts, &warm, &err) == CAIRN_OK)
        cairn_health_check(warm, "", &serving, &err);
    struct timespec t0, t;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (;;) {
        if (cairn_health_check(c, "", &serving, &err) == CAIRN_OK) {
            cairn_client_destroy(warm);
            return;
        }
        clock_gettime(CLOCK_MONOTONIC, &t);
        if (t.tv_sec - t0.tv_sec > 10 * ct_time_scale()) {
            fprintf(stderr, "ct_client_connect: no connection: %s\n", err.message);
            cairn_client_destroy(warm);
            return;
        }
    }
}

cairn_client *ct_client(const ct_server *s, const cairn_retry_policy *retry)
{
    cairn_client_options opts;
    cairn_client_options_init(&opts);
    opts.target = s->target;
    if (retry)
        opts.retry = *retry;
    opts.retry.attempt_deadline_ms = scale_ms(opts.retry.attempt_deadline_ms);
    opts.retry.call_deadline_ms = scale_ms(opts.retry.call_deadline_ms);
    cairn_client *c = NULL;
    cairn_error err;
    if (cairn_client_create(&opts, &c, &err) != CAIRN_OK) {
        fprintf(stderr, "ct_client: %s\n", err.message);
        return NULL;
    }
    ct_client_connect(c, s->target);
    return c;
}

int ct_fixture_start(void **state, const char *const *args)
{
    ct_fixture *f = calloc(1, sizeof *f);
    if (!f)
        return -1;
    *state = f;
    if (ct_server_init(&f->server) < 0 || ct_server_start(&f->server, 0, args) < 0)
        return -1;
    f->client = ct_client(&f->server, NULL);
    return f->client ? 0 : -1;
}

int ct_fixture_setup(void **state)
{
    return ct_fixture_start(state, NULL);
}

int ct_fixture_teardown(void **state)
{
    ct_fixture *f = *state;
    if (!f)
        return 0;
    cairn_client_destroy(f->client);
    int rc = f->server.pid ? ct_server_stop(&f->server) : 0;
    ct_server_cleanup(&f->server);
    free(f);
    *state = NULL;
    return rc == 0 ? 0 : -1;
}

cairn_status ct_create_run(cairn_client *c, const char *run_id, const char *const *workers,
                           size_t n)
{
    cairn_create_run_request req = {.run_id = run_id, .workers = workers, .workers_count = n};
    cairn_run run;
    cairn_error err;
    cairn_status st = cairn_create_run(c, &req, &run, &err);
    if (st == CAIRN_OK)
        cairn_run_free(&run);
    else
        fprintf(stderr, "ct_create_run %s: %s\n", run_id, err.message);
    return st;
}

int ct_run_cairnd(const char *const *args, char *out, size_t cap)
{
    int fd;
    pid_t pid = spawn_cairnd(args, NULL, NULL, &fd);
    if (pid < 0)
        return -1;
    size_t n = 0;
    for (;;) {
        char buf[512];
        ssize_t r = read(fd, buf, sizeof buf);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            break;
        size_t take = (size_t)r < cap - 1 - n ? (size_t)r : cap - 1 - n;
        memcpy(out + n, buf, take);
        n += take;
    }
    out[n] = '\0';
    close(fd);
    return wait_cairnd(pid);
}

char *ct_read_file(const char *path, size_t *len)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return NULL;
    struct stat st;
    char *buf = fstat(fd, &st) == 0 ? malloc((size_t)st.st_size + 1) : NULL;
    size_t n = 0;
    while (buf && n < (size_t)st.st_size) {
        ssize_t r = read(fd, buf + n, (size_t)st.st_size - n);
        if (r > 0) {
            n += (size_t)r;
        } else {
            free(buf);
            buf = NULL;
        }
    }
    close(fd);
    if (buf) {
        buf[n] = '\0';
        if (len)
            *len = n;
    }
    return buf;
}

bool ct_only_store_files(const char *dir)
{
    static const char *const known[] = {"LOCK",    "cairn.db",     "cairn.db-wal", "cairn.db-shm",
                                        "pins.db", "pins.db-wal", "pins.db-shm",  "blobs"};
    /* The PostgreSQL store keeps no file: the dir is absent or empty. */
    size_t n_known = ct_store_is_sqlite() ? sizeof known / sizeof known[0] : 0;
    DIR *d = opendir(dir);
    if (!d)
        return !ct_store_is_sqlite() && errno == ENOENT;
    bool ok = true;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        bool found = false;
        for (size_t i = 0; i < n_known; i++)
            found = found || strcmp(e->d_name, known[i]) == 0;
        if (!found) {
            fprintf(stderr, "unexpected file in %s: %s\n", dir, e->d_name);
            ok = false;
        }
    }
    closedir(d);
    return ok;
}

int ct_count_staged(const ct_server *s)
{
    if (s->pg_db[0])
        return (int)ct_pg_query_int(s, "SELECT (SELECT count(*) FROM stages) + "
                                       "(SELECT count(*) FROM blob_chunks WHERE owner LIKE 'stage:%')");
    char staging[400];
    snprintf(staging, sizeof staging, "%s/blobs/staging", s->data_dir);
    struct stat st;
    if (stat(staging, &st) < 0)
        return -1;
    return ct_count_entries(staging);
}

int ct_count_blob_files(const ct_server *s)
{
    if (s->pg_db[0])
        return (int)ct_pg_query_int(s, "SELECT count(*) FROM blobs");
    char blobs[400];
    snprintf(blobs, sizeof blobs, "%s/blobs", s->data_dir);
    DIR *d = opendir(blobs);
    if (!d)
        return -1;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (strlen(e->d_name) != 2 || !isxdigit((unsigned char)e->d_name[0]))
            continue;
        char sub[700];
        snprintf(sub, sizeof sub, "%s/%s", blobs, e->d_name);
        n += ct_count_entries(sub);
    }
    closedir(d);
    return n;
}
