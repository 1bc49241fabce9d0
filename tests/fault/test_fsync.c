/* A disk whose writeback fails, through the fsyncfault.c shim: a failed
 * fsync of what the store writes (a snapshot's directory, a staged
 * upload, the WAL) fails the write in hand unacknowledged, every later
 * write too, and cairnd exits 1 by itself; after a restart on a healthy
 * disk nothing unacknowledged is half there and retries apply. The shim's
 * record of synced directories shows that a new directory's parent is
 * synced. libcairn's atomic write is checked in this process, which runs
 * with the shim preloaded (main re-executes itself so). */
#include "cairn_test.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <dirent.h>
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define SHIM_PRELOAD "LD_PRELOAD=" CT_FSYNC_SHIM
#define ASAN_ORDER "ASAN_OPTIONS=verify_asan_link_order=0"

/* ---- helpers ---- */

static cairn_client *client_once(const ct_server *s)
{
    cairn_retry_policy once;
    cairn_retry_policy_init(&once);
    once.max_attempts = 1; /* see each answer as it is */
    cairn_client *c = ct_client(s, &once);
    assert_non_null(c);
    return c;
}

static cairn_status upload(cairn_client *c, const char *key, const char *text, cairn_error *err)
{
    cairn_checkpoint_request req = {.idempotency_key = key, .run_id = "r", .run_state = "s"};
    cairn_checkpoint cp;
    cairn_status st = cairn_create_checkpoint(c, &req, text, strlen(text), &cp, err);
    if (st == CAIRN_OK)
        cairn_checkpoint_free(&cp);
    return st;
}

static cairn_status append(cairn_client *c, const char *key, cairn_append_result *res,
                           cairn_error *err)
{
    cairn_event ev = {.type = "step", .payload = key, .payload_len = strlen(key)};
    cairn_append_request req = {.idempotency_key = key, .run_id = "r", .events = &ev,
                                .events_count = 1};
    return cairn_append_events(c, &req, res, err);
}

static void create_run(cairn_client *c)
{
    const char *workers[] = {"w"};
    assert_int_equal(ct_create_run(c, "r", workers, 1), CAIRN_OK);
}

static size_t list_count(cairn_client *c)
{
    cairn_checkpoint_list list;
    cairn_error err;
    assert_int_equal(cairn_list_checkpoints(c, "r", &list, &err), CAIRN_OK);
    size_t n = list.count;
    cairn_checkpoint_list_free(&list);
    return n;
}

/* Path of the shim's arm file for s (armed while it exists). */
static void arm_path(const ct_server *s, char out[400])
{
    snprintf(out, 400, "%s/arm", s->dir);
}

static void arm(const char *path, int on)
{
    if (on) {
        int fd = open(path, O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
        assert_true(fd >= 0);
        close(fd);
    } else {
        assert_int_equal(unlink(path), 0);
    }
}

/* Starts s with the shim failing fsync of paths matching pattern while
 * the arm file exists (not at start). */
static void start_with_fault(ct_server *s, char pattern_env[600], char arm_env[500],
                             const char *pattern)
{
    char armp[400];
    arm_path(s, armp);
    snprintf(pattern_env, 600, "CAIRN_FAULT_FSYNC_EIO=%s", pattern);
    snprintf(arm_env, 500, "CAIRN_FAULT_FSYNC_ARM=%s", armp);
    s->env[0] = SHIM_PRELOAD;
    s->env[1] = ASAN_ORDER;
    s->env[2] = pattern_env;
    s->env[3] = arm_env;
    assert_int_equal(ct_server_start(s, 0, NULL), 0);
}

/* After a failed fsync: a later write is refused too, cairnd exits 1 by
 * itself, and its log says at error level that syncing what failed and
 * why. */
static void expect_fail_stop(ct_server *s, cairn_client *c, const char *what, const char *why)
{
    cairn_append_result res;
    cairn_error err;
    cairn_status st = append(c, "after-the-fault", &res, &err);
    if (st == CAIRN_OK)
        fail_msg("a write after the failed fsync of %s was acknowledged", what);
    cairn_client_destroy(c);
    assert_int_equal(ct_server_wait(s), 1);
    char *log = ct_read_file(s->log_path, NULL);
    assert_non_null(log);
    bool found = false;
    for (char *line = strtok(log, "\n"); line && !found; line = strtok(NULL, "\n"))
        found = strstr(line, " error ") && strstr(line, "syncing") && strstr(line, what) &&
                strstr(line, why);
    if (!found)
        fail_msg("the log should say at error level that syncing %s failed (%s)", what, why);
    free(log);
}

/* ---- the store ---- */

/* Before: the upload failed, but cairnd kept acknowledging writes. */
static void failed_fsync_of_a_snapshot_directory_fails_the_upload_and_stops_cairnd(void **state)
{
    (void)state;
    ct_server s;
    assert_int_equal(ct_server_init(&s), 0);
    char pattern_env[600], arm_env[500], armp[400], pattern[400];
    snprintf(pattern, sizeof pattern, "%s/blobs/??", s.data_dir);
    start_with_fault(&s, pattern_env, arm_env, pattern);
    cairn_client *c = client_once(&s);
    create_run(c);
    arm_path(&s, armp);
    arm(armp, 1);
    cairn_error err;
    assert_int_not_equal(upload(c, "ck-1", "snapshot one", &err), CAIRN_OK);
    assert_int_equal(err.status, CAIRN_UNAVAILABLE);
    assert_non_null(strstr(err.message, "Input/output error"));
    arm(armp, 0);
    char fan[420];
    snprintf(fan, sizeof fan, "%s/blobs/", s.data_dir);
    expect_fail_stop(&s, c, fan, "Input/output error");

    /* A healthy disk: nothing of it was kept, and its retry applies. */
    memset(s.env, 0, sizeof s.env);
    assert_int_equal(ct_server_start(&s, 0, NULL), 0);
    c = client_once(&s);
    assert_int_equal(list_count(c), 0);
    assert_int_equal(ct_count_blob_files(&s), 0);
    assert_int_equal(upload(c, "ck-1", "snapshot one", &err), CAIRN_OK);
    assert_int_equal(list_count(c), 1);
    cairn_client_destroy(c);
    assert_int_equal(ct_server_stop(&s), 0);
    ct_server_cleanup(&s);
}

/* Before: the upload failed, but cairnd kept acknowledging writes. */
static void failed_fsync_of_a_staged_upload_fails_it_and_stops_cairnd(void **state)
{
    (void)state;
    ct_server s;
    assert_int_equal(ct_server_init(&s), 0);
    char pattern_env[600], arm_env[500], armp[400], pattern[400];
    snprintf(pattern, sizeof pattern, "%s/blobs/staging/*", s.data_dir);
    start_with_fault(&s, pattern_env, arm_env, pattern);
    cairn_client *c = client_once(&s);
    create_run(c);
    arm_path(&s, armp);
    arm(armp, 1);
    cairn_error err;
    assert_int_not_equal(upload(c, "ck-1", "snapshot one", &err), CAIRN_OK);
    assert_int_equal(err.status, CAIRN_UNAVAILABLE);
    arm(armp, 0);
    char staging[420];
    snprintf(staging, sizeof staging, "%s/blobs/staging/", s.data_dir);
    expect_fail_stop(&s, c, staging, "Input/output error");

    memset(s.env, 0, sizeof s.env);
    assert_int_equal(ct_server_start(&s, 0, NULL), 0);
    c = client_once(&s);
    assert_int_equal(list_count(c), 0);
    assert_int_equal(upload(c, "ck-1", "snapshot one", &err), CAIRN_OK);
    cairn_client_destroy(c);
    assert_int_equal(ct_server_stop(&s), 0);
    ct_server_cleanup(&s);
}

/* SQLite's own fsync: a failed commit is not acknowledged (it may or may
 * not be on disk: the retry with its key tells, once). Before: cairnd
 * kept acknowledging writes. */
static void failed_fsync_of_the_wal_fails_the_append_and_stops_cairnd(void **state)
{
    (void)state;
    ct_server s;
    assert_int_equal(ct_server_init(&s), 0);
    char pattern_env[600], arm_env[500], armp[400], pattern[400];
    snprintf(pattern, sizeof pattern, "%s/cairn.db-wal", s.data_dir);
    start_with_fault(&s, pattern_env, arm_env, pattern);
    cairn_client *c = client_once(&s);
    create_run(c);
    arm_path(&s, armp);
    arm(armp, 1);
    cairn_append_result res;
    cairn_error err;
    assert_int_not_equal(append(c, "a-1", &res, &err), CAIRN_OK);
    assert_int_equal(err.status, CAIRN_UNAVAILABLE);
    arm(armp, 0);
    expect_fail_stop(&s, c, "cairn.db", "disk I/O error"); /* SQLite's words */

    memset(s.env, 0, sizeof s.env);
    assert_int_equal(ct_server_start(&s, 0, NULL), 0);
    c = client_once(&s);
    assert_int_equal(append(c, "a-1", &res, &err), CAIRN_OK);
    assert_int_equal(res.first_seq, 1);
    assert_int_equal(append(c, "a-2", &res, &err), CAIRN_OK);
    assert_int_equal(res.first_seq, 2);
    cairn_client_destroy(c);
    assert_int_equal(ct_server_stop(&s), 0);
    ct_server_cleanup(&s);
}

/* Reads the shim's directory log from offset from; "" when none. */
static char *log_from(const char *path, size_t from)
{
    size_t n = 0;
    char *all = ct_read_file(path, &n);
    if (!all)
        return strdup("");
    char *tail = strdup(from < n ? all + from : "");
    free(all);
    return tail;
}

/* Where line (a whole line) first is in text, or NULL. */
static const char *find_line(const char *text, const char *line)
{
    size_t n = strlen(line);
    for (const char *p = text; (p = strstr(p, line)); p++)
        if ((p == text || p[-1] == '\n') && p[n] == '\n')
            return p;
    return NULL;
}

static void expect_line(const char *text, const char *line, const char *why)
{
    if (!find_line(text, line))
        fail_msg("no fsync of %s (%s); directories synced:\n%s", line, why, text);
}

/* Before: only the snapshot's own directory was synced, so its entry in
 * blobs/ (and blobs/ and staging/ in the data dir, and the data dir in its
 * parent) could vanish in a power cut. */
static void new_directories_are_made_durable_by_syncing_their_parents(void **state)
{
    (void)state;
    ct_server s;
    assert_int_equal(ct_server_init(&s), 0);
    char log_env[400], log_path[350];
    snprintf(log_path, sizeof log_path, "%s/synced-dirs", s.dir);
    snprintf(log_env, sizeof log_env, "CAIRN_FAULT_FSYNC_LOG=%s", log_path);
    s.env[0] = SHIM_PRELOAD;
    s.env[1] = ASAN_ORDER;
    s.env[2] = log_env;
    assert_int_equal(ct_server_start(&s, 0, NULL), 0);
    char *startup = log_from(log_path, 0);
    size_t mark = strlen(startup);

    cairn_client *c = client_once(&s);
    create_run(c);
    const char *text = "snapshot bytes";
    cairn_error err;
    assert_int_equal(upload(c, "ck-1", text, &err), CAIRN_OK);
    char sha[65];
    cairn_content_hash(text, strlen(text), sha);
    char *upload_log = log_from(log_path, mark);

    char blobs[400], fan[420];
    snprintf(blobs, sizeof blobs, "%s/blobs", s.data_dir);
    snprintf(fan, sizeof fan, "%s/%.2s", blobs, sha);
    expect_line(upload_log, blobs, "the parent of the new snapshot directory");
    expect_line(upload_log, fan, "the directory of the new snapshot");

    /* The same content again: its directory exists, so only it is synced. */
    size_t mark2 = mark + strlen(upload_log);
    assert_int_equal(upload(c, "ck-2", text, &err), CAIRN_OK);
    char *again = log_from(log_path, mark2);
    expect_line(again, fan, "the directory of the snapshot moved in");
    assert_null(find_line(again, blobs));

    /* At start, each directory made had its parent synced. */
    char staging[450];
    snprintf(staging, sizeof staging, "%s/staging", blobs);
    expect_line(startup, s.dir, "the parent of the new data dir");
    expect_line(startup, s.data_dir, "the parent of the new blobs/");
    expect_line(startup, blobs, "the parent of the new blobs/staging");
    free(startup);
    free(upload_log);
    free(again);
    cairn_client_destroy(c);
    assert_int_equal(ct_server_stop(&s), 0);
    ct_server_cleanup(&s);
}

/* ---- libcairn's atomic write, in this process ---- */

typedef struct local {
    char dir[256];
} local;

static int local_setup(void **state)
{
    local *l = calloc(1, sizeof *l);
    if (!l || ct_temp_dir(l->dir, sizeof l->dir, "cairn-fsync") < 0)
        return -1;
    *state = l;
    return 0;
}

static int local_teardown(void **state)
{
    local *l = *state;
    unsetenv("CAIRN_FAULT_FSYNC_EIO");
    unsetenv("CAIRN_FAULT_FSYNC_LOG");
    int rc = ct_rmrf(l->dir);
    free(l);
    return rc;
}

static void assert_holds(const char *path, const char *text)
{
    size_t n;
    char *got = ct_read_file(path, &n);
    assert_non_null(got);
    assert_int_equal(n, strlen(text));
    assert_memory_equal(got, text, n);
    free(got);
}

/* Before: the result of the directory's fsync was ignored, so a rename
 * that may not survive a power cut was reported as written. */
static void write_if_changed_fails_when_fsync_of_its_directory_fails(void **state)
{
    local *l = *state;
    char path[400];
    snprintf(path, sizeof path, "%s/out.txt", l->dir);
    cairn_error err;
    bool written = false;
    assert_int_equal(cairn_write_if_changed(path, "old", 3, &written, &err), CAIRN_OK);
    assert_true(written);
    setenv("CAIRN_FAULT_FSYNC_EIO", l->dir, 1);
    written = true;
    cairn_status st = cairn_write_if_changed(path, "new", 3, &written, &err);
    unsetenv("CAIRN_FAULT_FSYNC_EIO");
    assert_int_equal(st, CAIRN_IO);
    assert_false(written);
    assert_non_null(strstr(err.message, l->dir));
    assert_non_null(strstr(err.message, strerror(EIO)));
    assert_int_equal(ct_count_entries(l->dir), 1); /* no temporary file left */
}

static void write_if_changed_fails_when_fsync_of_the_file_fails(void **state)
{
    local *l = *state;
    char path[400];
    snprintf(path, sizeof path, "%s/out.txt", l->dir);
    cairn_error err;
    assert_int_equal(cairn_write_if_changed(path, "old", 3, NULL, &err), CAIRN_OK);
    setenv("CAIRN_FAULT_FSYNC_EIO", "*/out.txt.tmp-*", 1);
    bool written = true;
    cairn_status st = cairn_write_if_changed(path, "new", 3, &written, &err);
    unsetenv("CAIRN_FAULT_FSYNC_EIO");
    assert_int_equal(st, CAIRN_IO);
    assert_false(written);
    assert_non_null(strstr(err.message, strerror(EIO)));
    assert_holds(path, "old");
    assert_int_equal(ct_count_entries(l->dir), 1);
}

/* Before: the directories made for the file were not synced into their
 * parents. */
static void write_if_changed_syncs_the_parents_of_directories_it_makes(void **state)
{
    local *l = *state;
    char path[400], log[300], a[300], b[320];
    snprintf(path, sizeof path, "%s/a/b/out.txt", l->dir);
    snprintf(log, sizeof log, "%s.synced", l->dir);
    snprintf(a, sizeof a, "%s/a", l->dir);
    snprintf(b, sizeof b, "%s/a/b", l->dir);
    setenv("CAIRN_FAULT_FSYNC_LOG", log, 1);
    cairn_error err;
    cairn_status st = cairn_write_if_changed(path, "deep", 4, NULL, &err);
    unsetenv("CAIRN_FAULT_FSYNC_LOG");
    assert_int_equal(st, CAIRN_OK);
    char *synced = log_from(log, 0);
    unlink(log);
    expect_line(synced, l->dir, "the parent of the new a/");
    expect_line(synced, a, "the parent of the new a/b/");
    expect_line(synced, b, "the directory of the file");
    free(synced);
}

int main(int argc, char **argv)
{
    (void)argc;
    /* The libcairn tests need the shim in this very process. */
    if (!dlsym(RTLD_DEFAULT, "cairn_fault_fsync_shim")) {
        if (getenv("CAIRN_FSYNC_TEST_REEXEC")) {
            fprintf(stderr, "the shim %s did not load\n", CT_FSYNC_SHIM);
            return 1;
        }
        setenv("CAIRN_FSYNC_TEST_REEXEC", "1", 1);
        setenv("LD_PRELOAD", CT_FSYNC_SHIM, 1);
        setenv("ASAN_OPTIONS", "verify_asan_link_order=0", 1);
        execv("/proc/self/exe", argv);
        perror("re-executing with the shim");
        return 1;
    }
    unsetenv("LD_PRELOAD"); /* each cairnd says for itself whether it wants the shim */
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(failed_fsync_of_a_snapshot_directory_fails_the_upload_and_stops_cairnd),
        cmocka_unit_test(failed_fsync_of_a_staged_upload_fails_it_and_stops_cairnd),
        cmocka_unit_test(failed_fsync_of_the_wal_fails_the_append_and_stops_cairnd),
        cmocka_unit_test(new_directories_are_made_durable_by_syncing_their_parents),
        cmocka_unit_test_setup_teardown(write_if_changed_fails_when_fsync_of_its_directory_fails,
                                        local_setup, local_teardown),
        cmocka_unit_test_setup_teardown(write_if_changed_fails_when_fsync_of_the_file_fails,
                                        local_setup, local_teardown),
        cmocka_unit_test_setup_teardown(
            write_if_changed_syncs_the_parents_of_directories_it_makes, local_setup,
            local_teardown),
    };
    return cmocka_run_group_tests_name("fsync", tests, NULL, NULL);
}
