/* cairnd under a service manager: the sd_notify protocol read from a
 * NOTIFY_SOCKET of the test's own (READY=1 once it serves, RELOADING=1 and
 * READY=1 around a SIGHUP, STOPPING=1 on SIGTERM), SIGHUP reloading
 * instead of killing, and --version naming the git revision.
 *
 * Synchronisation is the protocol itself: each wait is a blocking
 * receive bounded by RECV_TIMEOUT_MS, never a sleep. */
#include "cairn_test.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <errno.h>
#include <poll.h>
#include <regex.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

/* A bound, not a pause: a datagram that has not come by then never will. */
enum { RECV_TIMEOUT_MS = 10000 };

/* The service manager's end: a datagram socket bound where NOTIFY_SOCKET
 * (env, for ct_server.env) points. */
typedef struct notify_sock {
    int fd;
    char name[108];   /* a path, or "@name" for an abstract socket */
    char env[140];    /* "NOTIFY_SOCKET=name" */
} notify_sock;

static void notify_open(notify_sock *n, const ct_server *s, bool abstract)
{
    static int counter;
    if (abstract)
        snprintf(n->name, sizeof n->name, "@cairn-test-notify-%ld-%d", (long)getpid(),
                 ++counter);
    else
        assert_true((size_t)snprintf(n->name, sizeof n->name, "%s/notify.sock", s->dir) <
                    sizeof n->name);
    snprintf(n->env, sizeof n->env, "NOTIFY_SOCKET=%s", n->name);
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    size_t len = strlen(n->name);
    memcpy(sa.sun_path, n->name, len);
    if (abstract)
        sa.sun_path[0] = '\0';
    n->fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    assert_true(n->fd >= 0);
    assert_int_equal(bind(n->fd, (struct sockaddr *)&sa,
                          (socklen_t)(offsetof(struct sockaddr_un, sun_path) + len)),
                     0);
}

static void notify_close(notify_sock *n)
{
    close(n->fd);
}

/* The next datagram from s's cairnd, NUL-terminated in buf; fails the
 * test when none came within RECV_TIMEOUT_MS, saying whether cairnd is
 * gone and how. */
static void notify_recv(notify_sock *n, ct_server *s, char *buf, size_t cap)
{
    struct pollfd p = {.fd = n->fd, .events = POLLIN};
    int rc;
    while ((rc = poll(&p, 1, RECV_TIMEOUT_MS)) < 0 && errno == EINTR)
        ;
    if (rc != 1) {
        int status;
        if (waitpid(s->pid, &status, WNOHANG) == s->pid) {
            s->pid = 0;
            if (WIFSIGNALED(status))
                fail_msg("no datagram on %s: cairnd was killed by signal %d", n->name,
                         WTERMSIG(status));
            fail_msg("no datagram on %s: cairnd exited %d", n->name, WEXITSTATUS(status));
        }
        fail_msg("no datagram on %s within %d ms", n->name, RECV_TIMEOUT_MS);
    }
    ssize_t r = recv(n->fd, buf, cap - 1, 0);
    assert_true(r > 0);
    buf[r] = '\0';
}

/* Whether state holds the whole line `line`. */
static bool has_line(const char *state, const char *line)
{
    size_t n = strlen(line);
    for (const char *p = state; (p = strstr(p, line)) != NULL; p++)
        if ((p == state || p[-1] == '\n') && (p[n] == '\n' || p[n] == '\0'))
            return true;
    return false;
}

/* A call that must succeed: health, then an append and its read. */
static void assert_serves(const ct_server *s, const char *run_id)
{
    cairn_client *c = ct_client(s, NULL);
    assert_non_null(c);
    cairn_serving serving;
    cairn_error err;
    assert_int_equal(cairn_health_check(c, NULL, &serving, &err), CAIRN_OK);
    assert_int_equal(serving, CAIRN_SERVING);
    const char *workers[] = {"w"};
    assert_int_equal(ct_create_run(c, run_id, workers, 1), CAIRN_OK);
    cairn_event ev = {.type = "step", .payload = "x", .payload_len = 1};
    cairn_append_request req = {.run_id = run_id, .events = &ev, .events_count = 1};
    cairn_append_result res;
    assert_int_equal(cairn_append_events(c, &req, &res, &err), CAIRN_OK);
    assert_int_equal(res.first_seq, 1);
    cairn_client_destroy(c);
}

/* SIGTERM, then STOPPING=1 on n, then exit 0. */
static void stop_and_hear_stopping(ct_server *s, notify_sock *n)
{
    char state[1024];
    assert_int_equal(kill(s->pid, SIGTERM), 0);
    notify_recv(n, s, state, sizeof state);
    if (!has_line(state, "STOPPING=1"))
        fail_msg("want STOPPING=1 after SIGTERM, got: %s", state);
    assert_non_null(strstr(state, "STATUS=shutting down (SIGTERM)"));
    assert_int_equal(ct_server_wait(s), 0);
}

static void ready_once_serving_then_stopping_on_sigterm(bool abstract)
{
    ct_server s;
    assert_int_equal(ct_server_init(&s), 0);
    notify_sock n;
    notify_open(&n, &s, abstract);
    s.env[0] = n.env;
    assert_int_equal(ct_server_start(&s, 0, NULL), 0);

    char state[1024], want[400];
    notify_recv(&n, &s, state, sizeof state);
    if (!has_line(state, "READY=1"))
        fail_msg("want READY=1 first, got: %s", state);
    snprintf(want, sizeof want, "STATUS=serving on %s", s.target);
    if (!has_line(state, want))
        fail_msg("want %s, got: %s", want, state);
    snprintf(want, sizeof want, "MAINPID=%ld", (long)s.pid);
    if (!has_line(state, want))
        fail_msg("want %s, got: %s", want, state);
    /* READY means serving: a call right after it succeeds. */
    assert_serves(&s, "after-ready");

    stop_and_hear_stopping(&s, &n);
    notify_close(&n);
    ct_server_cleanup(&s);
}

static void ready_on_a_socket_path_once_serving_and_stopping_on_sigterm(void **state)
{
    (void)state;
    ready_once_serving_then_stopping_on_sigterm(false);
}

static void ready_on_an_abstract_socket_once_serving_and_stopping_on_sigterm(void **state)
{
    (void)state;
    ready_once_serving_then_stopping_on_sigterm(true);
}

/* Lines of the log holding text. */
static int count_log_lines(const ct_server *s, const char *text)
{
    char *log = ct_read_file(s->log_path, NULL);
    assert_non_null(log);
    int n = 0;
    for (const char *p = log; (p = strstr(p, text)) != NULL; p += strlen(text))
        n++;
    free(log);
    return n;
}

/* Before: SIGHUP's default action killed cairnd (no RELOADING=1 came;
 * the wait saw 128 + SIGHUP). The log level comes from the environment
 * here: the reload reads it again and keeps it, not the default. */
static void sighup_reloads_logs_one_line_and_keeps_serving(void **state)
{
    (void)state;
    ct_server s;
    assert_int_equal(ct_server_init(&s), 0);
    notify_sock n;
    notify_open(&n, &s, false);
    s.env[0] = n.env;
    s.env[1] = "CAIRN_LOG_LEVEL=debug";
    assert_int_equal(ct_server_start(&s, 0, NULL), 0);
    pid_t pid = s.pid;
    char st[1024];
    notify_recv(&n, &s, st, sizeof st);
    assert_true(has_line(st, "READY=1"));

    for (int round = 1; round <= 2; round++) {
        assert_int_equal(kill(s.pid, SIGHUP), 0);
        notify_recv(&n, &s, st, sizeof st);
        if (!has_line(st, "RELOADING=1"))
            fail_msg("want RELOADING=1 after SIGHUP, got: %s", st);
        assert_non_null(strstr(st, "MONOTONIC_USEC="));
        notify_recv(&n, &s, st, sizeof st);
        if (!has_line(st, "READY=1"))
            fail_msg("want READY=1 after the reload, got: %s", st);
        /* The same process: not exited, not restarted. */
        int status;
        assert_int_equal(waitpid(pid, &status, WNOHANG), 0);
        assert_int_equal(s.pid, pid);
        /* One line per SIGHUP, written before READY=1. */
        assert_int_equal(count_log_lines(&s, "received SIGHUP; reloaded: "), round);
        assert_int_equal(count_log_lines(&s, "reloaded: log level debug (unchanged); "
                                             "not reloadable: "),
                         round);
    }
    assert_serves(&s, "after-sighup");
    stop_and_hear_stopping(&s, &n);
    notify_close(&n);
    ct_server_cleanup(&s);
}

static void write_text(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    assert_int_equal(fclose(f), 0);
}

/* Before the config file, nothing a SIGHUP read could change while
 * cairnd ran: here the file's log level goes from info to debug and the
 * reload applies it. */
static void sighup_reads_the_config_file_again_and_applies_its_log_level(void **state)
{
    (void)state;
    ct_server s;
    assert_int_equal(ct_server_init(&s), 0);
    notify_sock n;
    notify_open(&n, &s, false);
    char conf[300];
    snprintf(conf, sizeof conf, "%s/cairn.conf", s.dir);
    write_text(conf, "# cairnd\nlog-level = info\n");
    s.env[0] = n.env;
    const char *const args[] = {"--config", conf, NULL};
    assert_int_equal(ct_server_start(&s, 0, args), 0);
    char st[1024];
    notify_recv(&n, &s, st, sizeof st);
    assert_true(has_line(st, "READY=1"));

    write_text(conf, "# cairnd\nlog-level = debug\n");
    assert_int_equal(kill(s.pid, SIGHUP), 0);
    notify_recv(&n, &s, st, sizeof st);
    assert_true(has_line(st, "RELOADING=1"));
    notify_recv(&n, &s, st, sizeof st);
    assert_true(has_line(st, "READY=1"));
    assert_int_equal(count_log_lines(&s, "received SIGHUP; reloaded: log level debug (was info)"),
                     1);
    assert_serves(&s, "after-config-reload");
    stop_and_hear_stopping(&s, &n);
    notify_close(&n);
    ct_server_cleanup(&s);
}

/* Errors are logged, never fatal: a NOTIFY_SOCKET nobody binds. */
static void a_notify_socket_nobody_reads_is_logged_and_cairnd_serves_on(void **state)
{
    (void)state;
    ct_server s;
    assert_int_equal(ct_server_init(&s), 0);
    char env[400];
    snprintf(env, sizeof env, "NOTIFY_SOCKET=%s/nobody.sock", s.dir);
    s.env[0] = env;
    assert_int_equal(ct_server_start(&s, 0, NULL), 0);
    assert_serves(&s, "no-manager");
    assert_int_equal(ct_server_stop(&s), 0);
    /* READY=1 and STOPPING=1 each failed, each with a warning. */
    assert_int_equal(count_log_lines(&s, "sd_notify: sending to "), 2);
    ct_server_cleanup(&s);
}

/* "NAME X.Y.Z (git REVISION)": the commit (7+ hex digits, "+dirty" from a
 * checkout with changes), or "unknown" outside a git checkout. */
static void assert_version_line(const char *out, const char *name)
{
    char pattern[200];
    snprintf(pattern, sizeof pattern,
             "^%s [0-9]+\\.[0-9]+\\.[0-9]+ \\(git ([0-9a-f]{7,}(\\+dirty)?|unknown)\\)\n$", name);
    regex_t re;
    assert_int_equal(regcomp(&re, pattern, REG_EXTENDED | REG_NOSUB), 0);
    int rc = regexec(&re, out, 0, NULL, 0);
    regfree(&re);
    if (rc != 0)
        fail_msg("%s --version printed \"%s\", want /%s/", name, out, pattern);
}

static void version_names_the_release_and_the_git_revision(void **state)
{
    (void)state;
    char out[512];
    const char *args[] = {"--version", NULL};
    assert_int_equal(ct_run_cairnd(args, out, sizeof out), 0);
    assert_version_line(out, "cairnd");

    FILE *p = popen(CT_CAIRNCTL_PATH " --version", "r");
    assert_non_null(p);
    size_t n = fread(out, 1, sizeof out - 1, p);
    out[n] = '\0';
    assert_int_equal(pclose(p), 0);
    assert_version_line(out, "cairnctl");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(ready_on_a_socket_path_once_serving_and_stopping_on_sigterm),
        cmocka_unit_test(ready_on_an_abstract_socket_once_serving_and_stopping_on_sigterm),
        cmocka_unit_test(sighup_reloads_logs_one_line_and_keeps_serving),
        cmocka_unit_test(sighup_reads_the_config_file_again_and_applies_its_log_level),
        cmocka_unit_test(a_notify_socket_nobody_reads_is_logged_and_cairnd_serves_on),
        cmocka_unit_test(version_names_the_release_and_the_git_revision),
    };
    return cmocka_run_group_tests_name("service", tests, NULL, NULL);
}
