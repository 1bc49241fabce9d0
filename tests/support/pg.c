/* A private PostgreSQL cluster for tests (pg.h). */
#include "pg.h"
#include "dirs.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdbool.h>
#include <fcntl.h>
#include <glob.h>
#include <grp.h>
#include <libpq-fe.h>
#include <netinet/in.h>
#include <pwd.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* Waiting is polling with a deadline: PostgreSQL tells no one when it is
 * ready or gone, so the tests ask (PQping, waitpid WNOHANG) with a short,
 * growing pause between asks, and give up at the deadline. */
enum { READY_DEADLINE_MS = 60000, STOP_DEADLINE_MS = 30000, PORT_TRIES = 5 };

static void why(ct_pg *pg, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void why(ct_pg *pg, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(pg->why, sizeof pg->why, fmt, ap);
    va_end(ap);
}

static long long now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* One pause of a poll: 5 ms, doubling up to 200 ms. */
static void backoff(int *ms)
{
    struct timespec ts = {0, (long)*ms * 1000000L};
    nanosleep(&ts, NULL);
    *ms = *ms * 2 > 200 ? 200 : *ms * 2;
}

/* The newest /usr/lib/postgresql/<version>/bin with initdb, or
 * CAIRN_PG_BINDIR. */
static int find_bindir(ct_pg *pg)
{
    const char *env = getenv("CAIRN_PG_BINDIR");
    if (env && *env) {
        snprintf(pg->bindir, sizeof pg->bindir, "%s", env);
        return 0;
    }
    glob_t g;
    if (glob("/usr/lib/postgresql/*/bin/initdb", 0, NULL, &g) != 0)
        return -1;
    int best = -1;
    long best_v = -1;
    for (size_t i = 0; i < g.gl_pathc; i++) {
        long v = strtol(g.gl_pathv[i] + strlen("/usr/lib/postgresql/"), NULL, 10);
        if (v > best_v)
            best_v = v, best = (int)i;
    }
    if (best >= 0) {
        snprintf(pg->bindir, sizeof pg->bindir, "%s", g.gl_pathv[best]);
        *strrchr(pg->bindir, '/') = '\0';
    }
    globfree(&g);
    return best >= 0 ? 0 : -1;
}

typedef struct runas {
    bool drop;
    uid_t uid;
    gid_t gid;
} runas;

/* fork + (setgid, setuid) + exec argv with stdout and stderr to log.
 * Returns the child's pid, or -1. */
static pid_t spawn(const runas *as, const char *log, char *const argv[])
{
    pid_t test = getpid();
    pid_t pid = fork();
    if (pid != 0)
        return pid;
    setpgid(0, 0); /* the test's signals are not the cluster's */
    int fd = open(log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
    if (fd >= 0) {
        dup2(fd, 1);
        dup2(fd, 2);
    }
    int devnull = open("/dev/null", O_RDONLY);
    if (devnull >= 0)
        dup2(devnull, 0);
    if (as->drop && (setgroups(0, NULL) < 0 || setgid(as->gid) < 0 || setuid(as->uid) < 0)) {
        perror("dropping to the postgres user");
        _exit(127);
    }
    /* Dies with the test (a crash, a ctest timeout), after setuid, which
     * clears the setting. SIGQUIT: the postmaster's immediate shutdown,
     * which still ends its backends and frees its shared memory. The
     * signal comes when the thread that forked ends: start a cluster
     * from the test's main thread. */
    prctl(PR_SET_PDEATHSIG, SIGQUIT);
    if (getppid() != test)
        _exit(127); /* the test is gone already */
    execv(argv[0], argv);
    perror(argv[0]);
    _exit(127);
}

/* The last lines of a log, for a message. */
static void tail_of(const char *path, char *out, size_t cap)
{
    out[0] = '\0';
    FILE *f = fopen(path, "r");
    if (!f)
        return;
    fseek(f, 0, SEEK_END);
    long size = ftell(f);
    long from = size > (long)cap - 1 ? size - (long)cap + 1 : 0;
    fseek(f, from, SEEK_SET);
    size_t n = fread(out, 1, cap - 1, f);
    out[n] = '\0';
    fclose(f);
    for (char *p = out; *p; p++)
        if (*p == '\n')
            *p = ' ';
}

/* A port that was free a moment ago: bind port 0, read it, release it.
 * Another process may take it before the postmaster does: start()
 * retries with a new one then. */
static int free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof a;
    int port = -1;
    if (bind(fd, (struct sockaddr *)&a, sizeof a) == 0 &&
        getsockname(fd, (struct sockaddr *)&a, &len) == 0)
        port = ntohs(a.sin_port);
    close(fd);
    return port;
}

/* Starts the postmaster on port (0: a free one) and waits until it
 * answers. 0 when it runs, 1 when the port was taken (try another), -1 on
 * failure. */
static int start_postmaster(ct_pg *pg, const runas *as, const char *data, const char *log,
                            int port_wanted)
{
    pg->port = port_wanted ? port_wanted : free_port();
    if (pg->port < 0) {
        why(pg, "cannot find a free port: %s", strerror(errno));
        return -1;
    }
    char postgres[300], port[16], sockdir[600];
    snprintf(postgres, sizeof postgres, "%s/postgres", pg->bindir);
    snprintf(port, sizeof port, "%d", pg->port);
    snprintf(sockdir, sizeof sockdir, "unix_socket_directories=%s", pg->dir);
    char *const argv[] = {postgres, "-D", (char *)data, "-p", port,
                          "-c", "listen_addresses=127.0.0.1",
                          "-c", sockdir,
                          "-c", "fsync=on",
                          "-c", "synchronous_commit=on",
                          "-c", "max_connections=200",
                          "-c", "shared_buffers=32MB",
                          "-c", "log_min_messages=warning",
                          NULL};
    snprintf(pg->dsn, sizeof pg->dsn,
             "host=127.0.0.1 port=%d user=postgres dbname=postgres connect_timeout=5%s%s",
             pg->port, pg->passfile[0] ? " passfile=" : "", pg->passfile);
    pg->pid = spawn(as, log, argv);
    if (pg->pid < 0) {
        pg->pid = 0;
        why(pg, "fork: %s", strerror(errno));
        return -1;
    }
    int pause = 5;
    for (long long deadline = now_ms() + READY_DEADLINE_MS; now_ms() < deadline;
         backoff(&pause)) {
        if (PQping(pg->dsn) == PQPING_OK)
            return 0;
        int status;
        if (waitpid(pg->pid, &status, WNOHANG) == pg->pid) {
            pg->pid = 0;
            char t[400];
            tail_of(log, t, sizeof t);
            if (strstr(t, "already in use"))
                return 1;
            why(pg, "postgres exited at start: %s", t);
            return -1;
        }
    }
    why(pg, "postgres did not answer within %d ms", READY_DEADLINE_MS);
    return -1;
}

/* Who runs initdb and postgres: as root (initdb refuses root), the
 * postgres user. 0, or 1 (pg->why) when there is none. */
static int runas_for(ct_pg *pg, runas *as)
{
    *as = (runas){false, 0, 0};
    if (geteuid() != 0)
        return 0;
    struct passwd *pw = getpwnam("postgres");
    if (!pw) {
        why(pg, "running as root and there is no postgres user to run PostgreSQL as "
                "(install postgresql, or run the tests as another user)");
        return 1;
    }
    *as = (runas){true, pw->pw_uid, pw->pw_gid};
    return 0;
}

static int start_cluster(ct_pg *pg, const char *password);

int ct_pg_start(ct_pg *pg)
{
    return start_cluster(pg, NULL);
}

int ct_pg_start_password(ct_pg *pg, const char *password)
{
    return start_cluster(pg, password);
}

static int start_cluster(ct_pg *pg, const char *password)
{
    memset(pg, 0, sizeof *pg);
    if (find_bindir(pg) < 0) {
        why(pg, "no PostgreSQL server binaries in /usr/lib/postgresql/*/bin (install "
                "postgresql, or set CAIRN_PG_BINDIR)");
        return 1;
    }
    runas as;
    if (runas_for(pg, &as))
        return 1;
    if (ct_temp_dir(pg->dir, sizeof pg->dir, "cairn-pg") < 0) {
        why(pg, "cannot make a temp dir: %s", strerror(errno));
        return -1;
    }
    if (as.drop && chown(pg->dir, as.uid, as.gid) < 0) {
        why(pg, "chown %s: %s", pg->dir, strerror(errno));
        ct_rmrf(pg->dir);
        return -1;
    }
    char data[600], initdb[300], log[600], initlog[600];
    snprintf(data, sizeof data, "%s/data", pg->dir);
    snprintf(initdb, sizeof initdb, "%s/initdb", pg->bindir);
    snprintf(log, sizeof log, "%s/postgres.log", pg->dir);
    snprintf(initlog, sizeof initlog, "%s/initdb.log", pg->dir);
    /* -N: initdb's own fsyncs only slow the tests; the server runs with
     * fsync=on. */
    char pwfile[600], pwopt[620];
    char *argv[] = {initdb, "-D", data, "-U", "postgres", "--auth=trust", "-N",
                    "-E", "UTF8", "--locale=C", NULL, NULL};
    if (password) {
        /* initdb reads the password from a file (the postgres user's to
         * read), and the test's connections from a libpq password file,
         * which libpq ignores unless only its owner may read it. */
        snprintf(pwfile, sizeof pwfile, "%s/pwfile", pg->dir);
        snprintf(pg->passfile, sizeof pg->passfile, "%s/pgpass", pg->dir);
        FILE *f = fopen(pwfile, "w"), *p = fopen(pg->passfile, "w");
        if (f)
            fprintf(f, "%s\n", password);
        if (p)
            fprintf(p, "127.0.0.1:*:*:postgres:%s\n", password);
        bool written = f && p && fclose(f) == 0 && fclose(p) == 0;
        if (!written || chmod(pg->passfile, 0600) < 0 ||
            (as.drop && chown(pwfile, as.uid, as.gid) < 0)) {
            why(pg, "cannot write the password files in %s", pg->dir);
            ct_rmrf(pg->dir);
            return -1;
        }
        snprintf(pwopt, sizeof pwopt, "--pwfile=%s", pwfile);
        argv[5] = "--auth=scram-sha-256";
        argv[10] = pwopt;
    }
    pid_t pid = spawn(&as, initlog, argv);
    int status = 0;
    if (pid < 0 || waitpid(pid, &status, 0) != pid || !WIFEXITED(status) ||
        WEXITSTATUS(status) != 0) {
        char t[400];
        tail_of(initlog, t, sizeof t);
        why(pg, "initdb failed: %s", t);
        ct_rmrf(pg->dir);
        return -1;
    }
    int rc = 1;
    for (int i = 0; i < PORT_TRIES && rc == 1; i++)
        rc = start_postmaster(pg, &as, data, log, 0);
    if (rc != 0) {
        if (rc == 1)
            why(pg, "no free port after %d tries", PORT_TRIES);
        ct_pg_stop(pg);
        return -1;
    }
    return 0;
}

void ct_pg_halt(ct_pg *pg)
{
    if (pg->pid > 0) {
        kill(pg->pid, SIGINT); /* fast shutdown: clients cut, no waiting for them */
        int pause = 5, status, sig = SIGINT;
        long long deadline = now_ms() + STOP_DEADLINE_MS;
        while (waitpid(pg->pid, &status, WNOHANG) == 0) {
            if (now_ms() >= deadline && sig != SIGKILL) {
                sig = sig == SIGINT ? SIGQUIT : SIGKILL;
                kill(pg->pid, sig);
                deadline = now_ms() + STOP_DEADLINE_MS;
            }
            backoff(&pause);
        }
        pg->pid = 0;
    }
}

int ct_pg_resume(ct_pg *pg)
{
    runas as;
    if (runas_for(pg, &as))
        return -1;
    char data[600], log[600];
    snprintf(data, sizeof data, "%s/data", pg->dir);
    snprintf(log, sizeof log, "%s/postgres.log", pg->dir);
    int rc = start_postmaster(pg, &as, data, log, pg->port);
    if (rc == 1)
        why(pg, "port %d was taken while PostgreSQL was down", pg->port);
    return rc == 0 ? 0 : -1;
}

void ct_pg_stop(ct_pg *pg)
{
    ct_pg_halt(pg);
    if (pg->dir[0]) {
        ct_rmrf(pg->dir);
        pg->dir[0] = '\0';
    }
}

int ct_pg_query(const char *dsn, const char *sql, char *out, size_t cap)
{
    PGconn *c = PQconnectdb(dsn);
    int rc = -1;
    if (out && cap)
        out[0] = '\0';
    if (PQstatus(c) != CONNECTION_OK) {
        fprintf(stderr, "ct_pg: cannot connect: %s", PQerrorMessage(c));
    } else {
        PGresult *r = PQexec(c, sql);
        ExecStatusType st = PQresultStatus(r);
        if (st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK)
            rc = 0;
        else
            fprintf(stderr, "ct_pg: %s: %s", sql, PQresultErrorMessage(r));
        if (!rc && out && cap && PQntuples(r) > 0)
            snprintf(out, cap, "%s", PQgetvalue(r, 0, 0));
        PQclear(r);
    }
    PQfinish(c);
    return rc;
}

int ct_pg_exec(const char *dsn, const char *sql)
{
    return ct_pg_query(dsn, sql, NULL, 0);
}

int ct_pg_create_db(const char *admin_dsn, const char *name, char *dsn, size_t cap)
{
    char sql[256];
    snprintf(sql, sizeof sql, "CREATE DATABASE %s", name);
    if (ct_pg_exec(admin_dsn, sql) < 0)
        return -1;
    /* In a key/value DSN the last dbname wins. */
    int n = snprintf(dsn, cap, "%s dbname=%s", admin_dsn, name);
    return n < 0 || (size_t)n >= cap ? -1 : 0;
}

int ct_pg_drop_db(const char *admin_dsn, const char *name)
{
    char sql[256];
    snprintf(sql, sizeof sql, "DROP DATABASE IF EXISTS %s WITH (FORCE)", name);
    return ct_pg_exec(admin_dsn, sql);
}
