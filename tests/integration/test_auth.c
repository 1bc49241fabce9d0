/* Bearer tokens with scopes (--auth-tokens): who may call what, against
 * a real cairnd, through libcairn's token option. Every refusal is
 * checked for its code, its message (naming the authorization header, or
 * the method with the role or run prefix, never the token) and for
 * changing nothing stored; then the tokens file's checks at start and
 * its rotation on SIGHUP with connections and a watch kept open.
 *
 * Waiting for a SIGHUP to take effect polls cairnd's log for its report
 * line, with a deadline. */
#include "cairn_test.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

enum { LOG_WAIT_MS = 10000 };

#define ADMIN "admin-3c1f0e2d9b8a7f6e"
#define WRITER "writer-5d4c3b2a1f0e9d8c"
#define READER "reader-8e7d6c5b4a3f2e1d"
#define TEAM_A "team-a-1a2b3c4d5e6f7a8b" /* write, run prefix team-a */
#define UNKNOWN "never-issued-0f1e2d3c4b"

/* Writes a tokens file line for token: "name sha256(token) role prefix". */
static int token_line(char *out, size_t cap, const char *name, const char *token,
                      const char *role, const char *prefix)
{
    char digest[65];
    cairn_content_hash(token, strlen(token), digest);
    return snprintf(out, cap, "%s %s %s %s\n", name, digest, role, prefix);
}

static void write_file(const char *path, const char *text, mode_t mode)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    assert_int_equal(fchmod(fd, mode), 0);
    assert_int_equal(close(fd), 0);
}

/* The four tokens of the fixture, with a comment and a blank line. */
static void write_tokens(const char *path)
{
    char text[2048];
    size_t n = (size_t)snprintf(text, sizeof text, "# name sha256 role prefix\n\n");
    n += (size_t)token_line(text + n, sizeof text - n, "admin", ADMIN, "admin", "*");
    n += (size_t)token_line(text + n, sizeof text - n, "writer", WRITER, "write", "*");
    n += (size_t)token_line(text + n, sizeof text - n, "reader", READER, "read", "*");
    token_line(text + n, sizeof text - n, "team-a", TEAM_A, "write", "team-a");
    write_file(path, text, 0600);
}

typedef struct fixture {
    ct_server server;
    char tokens[400];
    cairn_client *admin;
} fixture;

static cairn_client *client_with(const ct_server *s, const char *token)
{
    cairn_client_options opts;
    cairn_client_options_init(&opts);
    opts.target = s->target;
    opts.token = token;
    cairn_client *c = NULL;
    cairn_error err;
    if (cairn_client_create(&opts, &c, &err) != CAIRN_OK)
        fail_msg("client: %s", err.message);
    return c;
}

static int start_with_tokens(fixture *f)
{
    if (ct_server_init(&f->server) < 0)
        return -1;
    snprintf(f->tokens, sizeof f->tokens, "%s/tokens", f->server.dir);
    write_tokens(f->tokens);
    const char *args[] = {"--auth-tokens", f->tokens, NULL};
    if (ct_server_start(&f->server, 0, args) < 0)
        return -1;
    f->admin = client_with(&f->server, ADMIN);
    return 0;
}

static int setup(void **state)
{
    fixture *f = calloc(1, sizeof *f);
    *state = f;
    return f ? start_with_tokens(f) : -1;
}

static int teardown(void **state)
{
    fixture *f = *state;
    cairn_client_destroy(f->admin);
    int rc = f->server.pid ? ct_server_stop(&f->server) : 0;
    ct_server_cleanup(&f->server);
    free(f);
    return rc == 0 ? 0 : -1;
}

static void create_run(cairn_client *c, const char *run_id)
{
    static const char *const workers[] = {"w1", "w2"};
    assert_int_equal(ct_create_run(c, run_id, workers, 2), CAIRN_OK);
}

static cairn_status append_one(cairn_client *c, const char *run_id, cairn_error *err)
{
    cairn_event ev = {.type = "step", .payload = "x", .payload_len = 1};
    cairn_append_request req = {.run_id = run_id, .events = &ev, .events_count = 1};
    cairn_append_result res;
    return cairn_append_events(c, &req, &res, err);
}

static cairn_status upload(cairn_client *c, const char *run_id, cairn_error *err)
{
    cairn_checkpoint_request req = {.run_id = run_id, .run_state = "s"};
    cairn_checkpoint cp;
    cairn_status st = cairn_create_checkpoint(c, &req, "snapshot", 8, &cp, err);
    if (st == CAIRN_OK)
        cairn_checkpoint_free(&cp);
    return st;
}

static cairn_status download(cairn_client *c, const char *run_id, cairn_error *err)
{
    cairn_load_request req = {.run_id = run_id};
    cairn_checkpoint meta;
    void *data = NULL;
    size_t len = 0;
    cairn_status st = cairn_load_checkpoint(c, &req, &meta, &data, &len, err);
    if (st == CAIRN_OK) {
        assert_int_equal(len, 8);
        assert_memory_equal(data, "snapshot", 8);
        cairn_buffer_free(data);
        cairn_checkpoint_free(&meta);
    }
    return st;
}

static int stop_at_first(void *user, const cairn_event *ev)
{
    (void)ev;
    atomic_fetch_add((atomic_int *)user, 1);
    return 1;
}

/* A watch from seq 1 that stops at the first event. */
static cairn_status watch_first(cairn_client *c, const char *run_id, cairn_error *err)
{
    atomic_int seen = 0;
    cairn_watch_request req = {.run_id = run_id, .on_event = stop_at_first, .user = &seen};
    cairn_status st = cairn_watch(c, &req, err);
    if (st == CAIRN_OK)
        assert_int_equal(atomic_load(&seen), 1);
    return st;
}

static uint64_t next_seq(cairn_client *c, const char *run_id)
{
    cairn_run run;
    cairn_error err;
    if (cairn_get_run(c, run_id, &run, &err) != CAIRN_OK)
        fail_msg("GetRun %s: %s", run_id, err.message);
    uint64_t seq = run.next_seq;
    cairn_run_free(&run);
    return seq;
}

/* A refusal: the status, one attempt (permanent), a message holding want
 * and no token. */
static void assert_refused(cairn_status st, const cairn_error *err, cairn_status code,
                           const char *want)
{
    if (st != code)
        fail_msg("want %s, got %s: %s", cairn_strerror(code), cairn_strerror(st), err->message);
    assert_int_equal(err->grpc_status, (int)code);
    assert_int_equal(err->attempts, 1);
    if (!strstr(err->message, want))
        fail_msg("the message lacks \"%s\": %s", want, err->message);
    const char *const secrets[] = {ADMIN, WRITER, READER, TEAM_A, UNKNOWN};
    for (size_t i = 0; i < sizeof secrets / sizeof secrets[0]; i++)
        assert_null(strstr(err->message, secrets[i]));
}

static void no_token_or_unknown_token_is_unauthenticated_naming_the_header(void **state)
{
    fixture *f = *state;
    create_run(f->admin, "auth-run-1");
    cairn_client *none = client_with(&f->server, NULL);
    cairn_client *unknown = client_with(&f->server, UNKNOWN);
    cairn_error err;
    cairn_run run;
    assert_refused(cairn_get_run(none, "auth-run-1", &run, &err), &err, CAIRN_UNAUTHENTICATED,
                   "authorization header: missing");
    assert_refused(append_one(none, "auth-run-1", &err), &err, CAIRN_UNAUTHENTICATED,
                   "authorization header: missing");
    assert_refused(cairn_get_run(unknown, "auth-run-1", &run, &err), &err,
                   CAIRN_UNAUTHENTICATED, "authorization header: the token is not one of");
    assert_refused(watch_first(unknown, "auth-run-1", &err), &err, CAIRN_UNAUTHENTICATED,
                   "authorization header: the token is not one of");
    assert_refused(upload(unknown, "auth-run-1", &err), &err, CAIRN_UNAUTHENTICATED,
                   "authorization header: the token is not one of");
    /* and nothing of it reached the store */
    assert_int_equal(next_seq(f->admin, "auth-run-1"), 1);
    cairn_checkpoint cp;
    assert_int_equal(cairn_get_latest_checkpoint(f->admin, "auth-run-1", &cp, &err),
                     CAIRN_NOT_FOUND);
    cairn_client_destroy(none);
    cairn_client_destroy(unknown);
}

static void read_token_reads_but_its_writes_are_denied_and_change_nothing(void **state)
{
    fixture *f = *state;
    create_run(f->admin, "auth-run-2");
    cairn_error err;
    assert_int_equal(append_one(f->admin, "auth-run-2", &err), CAIRN_OK);
    assert_int_equal(upload(f->admin, "auth-run-2", &err), CAIRN_OK);
    cairn_client *reader = client_with(&f->server, READER);

    /* reads and the streams that read */
    cairn_run run;
    assert_int_equal(cairn_get_run(reader, "auth-run-2", &run, &err), CAIRN_OK);
    assert_string_equal(run.run_id, "auth-run-2");
    cairn_run_free(&run);
    cairn_event_page page;
    assert_int_equal(cairn_read_events(reader, "auth-run-2", 1, 10, &page, &err), CAIRN_OK);
    assert_int_equal(page.events_count, 1);
    cairn_event_page_free(&page);
    assert_int_equal(watch_first(reader, "auth-run-2", &err), CAIRN_OK);
    assert_int_equal(download(reader, "auth-run-2", &err), CAIRN_OK);

    /* writes: denied naming the method, the token and its role */
    assert_refused(append_one(reader, "auth-run-2", &err), &err, CAIRN_PERMISSION_DENIED,
                   "AppendEvents: token reader has role read; AppendEvents needs role write");
    assert_refused(upload(reader, "auth-run-2", &err), &err, CAIRN_PERMISSION_DENIED,
                   "CreateCheckpoint: token reader has role read");
    static const char *const workers[] = {"w1"};
    cairn_create_run_request cr = {.run_id = "auth-run-2-new", .workers = workers,
                                   .workers_count = 1};
    assert_refused(cairn_create_run(reader, &cr, &run, &err), &err, CAIRN_PERMISSION_DENIED,
                   "CreateRun: token reader has role read");
    cairn_acquire_request acq = {.run_id = "auth-run-2", .worker_id = "w1", .holder = "reader",
                                 .ttl_ms = 60000};
    cairn_lease lease;
    assert_refused(cairn_acquire_worker(reader, &acq, &lease, &err), &err,
                   CAIRN_PERMISSION_DENIED, "AcquireWorker: token reader has role read");

    /* the store is as before: one event, one checkpoint, no new run, no lease */
    assert_int_equal(next_seq(f->admin, "auth-run-2"), 2);
    cairn_checkpoint_list list;
    assert_int_equal(cairn_list_checkpoints(f->admin, "auth-run-2", &list, &err), CAIRN_OK);
    assert_int_equal(list.count, 1);
    cairn_checkpoint_list_free(&list);
    assert_int_equal(cairn_get_run(f->admin, "auth-run-2-new", &run, &err), CAIRN_NOT_FOUND);
    acq.holder = "admin";
    assert_int_equal(cairn_acquire_worker(f->admin, &acq, &lease, &err), CAIRN_OK);
    cairn_client_destroy(reader);
}

static void prefix_token_is_denied_every_kind_of_call_outside_its_prefix(void **state)
{
    fixture *f = *state;
    create_run(f->admin, "other-run-3");
    cairn_error err;
    assert_int_equal(append_one(f->admin, "other-run-3", &err), CAIRN_OK);
    assert_int_equal(upload(f->admin, "other-run-3", &err), CAIRN_OK);
    cairn_client *team = client_with(&f->server, TEAM_A);
    const char *want =
        "run_id \"other-run-3\" is outside the run prefix \"team-a\" of token team-a";

    cairn_run run;
    assert_refused(cairn_get_run(team, "other-run-3", &run, &err), &err,
                   CAIRN_PERMISSION_DENIED, want);
    assert_true(strncmp(err.message, "GetRun: ", 8) == 0);
    assert_refused(append_one(team, "other-run-3", &err), &err, CAIRN_PERMISSION_DENIED, want);
    assert_true(strncmp(err.message, "AppendEvents: ", 14) == 0);
    assert_refused(watch_first(team, "other-run-3", &err), &err, CAIRN_PERMISSION_DENIED, want);
    assert_true(strncmp(err.message, "WatchEvents: ", 13) == 0);
    assert_refused(upload(team, "other-run-3", &err), &err, CAIRN_PERMISSION_DENIED, want);
    assert_true(strncmp(err.message, "CreateCheckpoint: ", 18) == 0);
    assert_refused(download(team, "other-run-3", &err), &err, CAIRN_PERMISSION_DENIED, want);
    assert_true(strncmp(err.message, "LoadCheckpoint: ", 16) == 0);
    assert_int_equal(next_seq(f->admin, "other-run-3"), 2); /* nothing appended */

    /* inside its prefix the same token does all of it */
    create_run(f->admin, "team-a.run-3");
    assert_int_equal(append_one(team, "team-a.run-3", &err), CAIRN_OK);
    assert_int_equal(cairn_get_run(team, "team-a.run-3", &run, &err), CAIRN_OK);
    cairn_run_free(&run);
    assert_int_equal(watch_first(team, "team-a.run-3", &err), CAIRN_OK);
    assert_int_equal(upload(team, "team-a.run-3", &err), CAIRN_OK);
    assert_int_equal(download(team, "team-a.run-3", &err), CAIRN_OK);
    cairn_client_destroy(team);
}

static void admin_token_may_do_everything(void **state)
{
    fixture *f = *state;
    cairn_client *admin = f->admin;
    cairn_error err;
    create_run(admin, "any-run-4");
    assert_int_equal(append_one(admin, "any-run-4", &err), CAIRN_OK);
    assert_int_equal(watch_first(admin, "any-run-4", &err), CAIRN_OK);
    assert_int_equal(upload(admin, "any-run-4", &err), CAIRN_OK);
    assert_int_equal(download(admin, "any-run-4", &err), CAIRN_OK);
    cairn_acquire_request acq = {.run_id = "any-run-4", .worker_id = "w2", .holder = "admin",
                                 .ttl_ms = 60000};
    cairn_lease lease;
    assert_int_equal(cairn_acquire_worker(admin, &acq, &lease, &err), CAIRN_OK);
    cairn_release_request rel = {.lease = &lease};
    assert_int_equal(cairn_release_worker(admin, &rel, &err), CAIRN_OK);
    cairn_complete_request done = {.run_id = "any-run-4", .worker_id = "w1"};
    cairn_complete_result completed;
    assert_int_equal(cairn_complete_worker(admin, &done, &completed, &err), CAIRN_OK);
    cairn_cleanup_request clean = {.run_id = "any-run-4", .keep_last_n = 1};
    cairn_cleanup_result cleaned;
    assert_int_equal(cairn_cleanup_checkpoints(admin, &clean, &cleaned, &err), CAIRN_OK);
    cairn_cleanup_result_free(&cleaned);
    cairn_resume_plan plan;
    assert_int_equal(cairn_resume_run(admin, "any-run-4", NULL, 0, &plan, &err), CAIRN_OK);
    cairn_resume_plan_free(&plan);
    cairn_run_page page;
    assert_int_equal(cairn_list_runs(admin, 0, NULL, &page, &err), CAIRN_OK);
    assert_true(page.runs_count >= 1);
    cairn_run_page_free(&page);
    cairn_delete_run_request del = {.run_id = "any-run-4"};
    cairn_delete_run_result deleted;
    assert_int_equal(cairn_delete_run(admin, &del, &deleted, &err), CAIRN_OK);
    assert_true(deleted.existed);
}

/* DeleteRun is the one admin-only method: a write token, even one whose
 * prefix holds the run, is denied, and the run stays. */
static void delete_run_needs_the_admin_role(void **state)
{
    fixture *f = *state;
    create_run(f->admin, "team-a.doomed");
    cairn_error err;
    cairn_delete_run_request del = {.run_id = "team-a.doomed"};
    cairn_delete_run_result deleted;
    const char *const tokens[] = {WRITER, TEAM_A, READER};
    for (size_t i = 0; i < sizeof tokens / sizeof tokens[0]; i++) {
        cairn_client *c = client_with(&f->server, tokens[i]);
        assert_refused(cairn_delete_run(c, &del, &deleted, &err), &err,
                       CAIRN_PERMISSION_DENIED, "DeleteRun needs role admin");
        cairn_client_destroy(c);
    }
    assert_int_equal(next_seq(f->admin, "team-a.doomed"), 1);
    assert_int_equal(cairn_delete_run(f->admin, &del, &deleted, &err), CAIRN_OK);
    assert_true(deleted.existed);
}

static void list_runs_with_a_prefix_token_lists_only_its_runs_across_pages(void **state)
{
    fixture *f = *state;
    /* interleaved with runs of other prefixes, so a page filtered after
     * the read would come back short or empty */
    char want[7][32];
    for (int i = 0; i < 7; i++) {
        char other[32];
        snprintf(want[i], sizeof want[i], "team-a.list-%d", i);
        snprintf(other, sizeof other, "team-b.list-%d", i);
        create_run(f->admin, other);
        create_run(f->admin, want[i]);
        snprintf(other, sizeof other, "Team-a.list-%d", i); /* prefixes are case-sensitive */
        create_run(f->admin, other);
    }
    cairn_client *team = client_with(&f->server, TEAM_A);
    cairn_error err;
    char token[64] = "";
    int pages = 0;
    size_t seen = 0;
    bool more = true;
    while (more) {
        cairn_run_page page;
        assert_int_equal(cairn_list_runs(team, 2, token, &page, &err), CAIRN_OK);
        pages++;
        for (size_t i = 0; i < page.runs_count; i++) {
            assert_true(seen < 7);
            assert_string_equal(page.runs[i].run_id, want[seen++]);
        }
        more = page.next_page_token[0] != '\0';
        if (more)
            assert_int_equal(page.runs_count, 2); /* full pages */
        snprintf(token, sizeof token, "%s", page.next_page_token);
        cairn_run_page_free(&page);
    }
    assert_int_equal(seen, 7);
    assert_true(pages >= 4);
    cairn_client_destroy(team);
}

static void health_is_open_without_a_token_and_with_an_unknown_one(void **state)
{
    fixture *f = *state;
    const char *const tokens[] = {NULL, UNKNOWN};
    for (size_t i = 0; i < 2; i++) {
        cairn_client *c = client_with(&f->server, tokens[i]);
        cairn_serving serving = CAIRN_SERVING_UNKNOWN;
        cairn_error err;
        assert_int_equal(cairn_health_check(c, NULL, &serving, &err), CAIRN_OK);
        assert_int_equal(serving, CAIRN_SERVING);
        cairn_client_destroy(c);
    }
}

/* ---- the file at start ---- */

/* cairnd with --auth-tokens path must refuse to start with one line
 * holding want. */
static void assert_refuses_to_start(const char *dir, const char *path, const char *want)
{
    char data[400], out[4096];
    snprintf(data, sizeof data, "%s/data", dir);
    const char *args[] = {"--listen", "127.0.0.1:0", "--data-dir", data, "--auth-tokens", path,
                          NULL};
    int rc = ct_run_cairnd(args, out, sizeof out);
    if (rc != 2 || !strstr(out, want))
        fail_msg("want exit 2 with \"%s\", got %d: %s", want, rc, out);
    char *nl = strchr(out, '\n');
    assert_non_null(nl);
    assert_string_equal(nl + 1, ""); /* one line */
    assert_null(strstr(out, "listening on"));
}

static void group_or_world_readable_tokens_file_refuses_to_start_with_one_line(void **state)
{
    (void)state;
    char dir[256], path[300], text[256], want[400];
    assert_int_equal(ct_temp_dir(dir, sizeof dir, "cairn-auth"), 0);
    snprintf(path, sizeof path, "%s/tokens", dir);
    token_line(text, sizeof text, "admin", ADMIN, "admin", "*");
    const mode_t modes[] = {0640, 0620, 0604, 0602};
    for (size_t i = 0; i < sizeof modes / sizeof modes[0]; i++) {
        write_file(path, text, modes[i]);
        snprintf(want, sizeof want,
                 "cairnd: --auth-tokens: %s: readable or writable by group or others (mode %04o)",
                 path, (unsigned)modes[i]);
        assert_refuses_to_start(dir, path, want);
    }
    ct_rmrf(dir);
}

static void malformed_tokens_file_refuses_to_start_naming_file_and_line(void **state)
{
    (void)state;
    char dir[256], path[300], good[256], good2[256];
    assert_int_equal(ct_temp_dir(dir, sizeof dir, "cairn-auth"), 0);
    snprintf(path, sizeof path, "%s/tokens", dir);
    token_line(good, sizeof good, "admin", ADMIN, "admin", "*");
    token_line(good2, sizeof good2, "admin", WRITER, "write", "*"); /* the same name */
    char same_digest[256];
    token_line(same_digest, sizeof same_digest, "other", ADMIN, "read", "*");
    const struct {
        const char *line3;
        const char *want;
    } rows[] = {
        {"bob 0123abcd read *\n", ":3: token-sha256: must be 64 hex digits (sha256sum's "
                                  "output), got 8 characters"},
        {"bob 0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdeg read *\n",
         ":3: token-sha256: must be 64 hex digits (sha256sum's output), got 64 characters not "
         "all hex"},
        {"bob e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855 owner *\n",
         ":3: role: must be read, write or admin, got \"owner\""},
        {good2, ":3: name admin is already used on line 2"},
        {same_digest, ":3: token-sha256 is the same as line 2's (admin)"},
        {"bob e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855 read\n",
         ":3: expected 4 fields \"name token-sha256 role run-prefix\", got 3"},
        {"bob e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855 read * x\n",
         ":3: expected 4 fields \"name token-sha256 role run-prefix\", got 5"},
        {"bob e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855 read ../x\n",
         ":3: run-prefix: must be * or the start of run ids"},
        {"b/b e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855 read *\n",
         ":3: name: must match"},
    };
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
        char text[1024], want[600];
        snprintf(text, sizeof text, "# tokens\n%s%s", good, rows[i].line3);
        write_file(path, text, 0600);
        snprintf(want, sizeof want, "cairnd: --auth-tokens: %s%s", path, rows[i].want);
        assert_refuses_to_start(dir, path, want);
    }
    char missing[320];
    snprintf(missing, sizeof missing, "%s/absent", dir);
    assert_refuses_to_start(dir, missing, "cannot open: No such file or directory");
    ct_rmrf(dir);
}

/* ---- rotation ---- */

/* Polls s's log (deadline LOG_WAIT_MS) until text shows count times. */
static bool log_shows(const ct_server *s, const char *text, int count)
{
    for (int waited = 0; waited < LOG_WAIT_MS; waited += 20) {
        char *log = ct_read_file(s->log_path, NULL);
        int n = 0;
        for (const char *p = log; p && (p = strstr(p, text)); p += strlen(text))
            n++;
        free(log);
        if (n >= count)
            return true;
        poll(NULL, 0, 20); /* the log is the only signal a reload gives */
    }
    return false;
}

static int count_events(void *user, const cairn_event *ev)
{
    (void)ev;
    atomic_fetch_add((atomic_int *)user, 1);
    return 0;
}

static void wait_events(atomic_int *seen, int want)
{
    for (int waited = 0; atomic_load(seen) < want && waited < LOG_WAIT_MS; waited += 10)
        poll(NULL, 0, 10); /* the watch's callback runs on its own thread */
    assert_int_equal(atomic_load(seen), want);
}

static void sighup_rotates_tokens_keeping_connections_and_a_bad_file_keeps_the_set(void **state)
{
    fixture *f = *state;
    create_run(f->admin, "rotate-run-5");
    cairn_client *old_writer = client_with(&f->server, WRITER);
    cairn_error err;
    assert_int_equal(append_one(old_writer, "rotate-run-5", &err), CAIRN_OK);
    /* a watch opened with the old token, to live through the rotation */
    atomic_int seen = 0;
    cairn_watch_request wr = {.run_id = "rotate-run-5", .on_event = count_events, .user = &seen};
    cairn_watcher *watcher = NULL;
    assert_int_equal(cairn_watch_start(old_writer, &wr, &watcher, &err), CAIRN_OK);
    wait_events(&seen, 1);

    /* the writer's token replaced: same name, new secret */
    const char *new_writer_token = "writer-rotated-77aa88bb99cc";
    char text[1024];
    size_t n = (size_t)token_line(text, sizeof text, "admin", ADMIN, "admin", "*");
    token_line(text + n, sizeof text - n, "writer", new_writer_token, "write", "*");
    write_file(f->tokens, text, 0600);
    assert_int_equal(kill(f->server.pid, SIGHUP), 0);
    char want[600];
    snprintf(want, sizeof want, "auth tokens: read %s again: 2 tokens in force (were 4)",
             f->tokens);
    assert_true(log_shows(&f->server, want, 1));

    /* the same client, its connection kept: the old token no longer works */
    assert_refused(append_one(old_writer, "rotate-run-5", &err), &err, CAIRN_UNAUTHENTICATED,
                   "authorization header: the token is not one of");
    cairn_client *new_writer = client_with(&f->server, new_writer_token);
    assert_int_equal(append_one(new_writer, "rotate-run-5", &err), CAIRN_OK);
    /* the watch kept its stream and its identity: it sees that event */
    wait_events(&seen, 2);

    /* a bad file: the set stays, the log says where and why */
    snprintf(text + n, sizeof text - n, "writer 1234 write *\n");
    write_file(f->tokens, text, 0600);
    assert_int_equal(kill(f->server.pid, SIGHUP), 0);
    snprintf(want, sizeof want,
             "auth tokens: kept the 2 tokens in force; %s:2: token-sha256: must be 64 hex digits",
             f->tokens);
    assert_true(log_shows(&f->server, want, 1));
    assert_int_equal(append_one(new_writer, "rotate-run-5", &err), CAIRN_OK);
    wait_events(&seen, 3);
    assert_refused(append_one(old_writer, "rotate-run-5", &err), &err, CAIRN_UNAUTHENTICATED,
                   "authorization header: the token is not one of");
    assert_int_equal(cairn_watch_stop(watcher, &err), CAIRN_OK);

    /* no token, nor its digest, ever reached the log */
    char *log = ct_read_file(f->server.log_path, NULL);
    assert_non_null(log);
    const char *const secrets[] = {ADMIN, WRITER, READER, TEAM_A, new_writer_token};
    for (size_t i = 0; i < sizeof secrets / sizeof secrets[0]; i++) {
        char digest[65];
        cairn_content_hash(secrets[i], strlen(secrets[i]), digest);
        assert_null(strstr(log, secrets[i]));
        assert_null(strstr(log, digest));
    }
    free(log);
    cairn_client_destroy(new_writer);
    cairn_client_destroy(old_writer);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(
            no_token_or_unknown_token_is_unauthenticated_naming_the_header, setup, teardown),
        cmocka_unit_test_setup_teardown(
            read_token_reads_but_its_writes_are_denied_and_change_nothing, setup, teardown),
        cmocka_unit_test_setup_teardown(
            prefix_token_is_denied_every_kind_of_call_outside_its_prefix, setup, teardown),
        cmocka_unit_test_setup_teardown(admin_token_may_do_everything, setup, teardown),
        cmocka_unit_test_setup_teardown(delete_run_needs_the_admin_role, setup, teardown),
        cmocka_unit_test_setup_teardown(
            list_runs_with_a_prefix_token_lists_only_its_runs_across_pages, setup, teardown),
        cmocka_unit_test_setup_teardown(
            health_is_open_without_a_token_and_with_an_unknown_one, setup, teardown),
        cmocka_unit_test(group_or_world_readable_tokens_file_refuses_to_start_with_one_line),
        cmocka_unit_test(malformed_tokens_file_refuses_to_start_naming_file_and_line),
        cmocka_unit_test_setup_teardown(
            sighup_rotates_tokens_keeping_connections_and_a_bad_file_keeps_the_set, setup,
            teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
