/* The data lifecycle against a real cairnd: DeleteRun (idempotent, a
 * missing run is existed = false, watchers end NOT_FOUND, snapshot bytes
 * go), completed-run retention and the dedup window (a forgotten key
 * applies again), `cairnd verify` (SQLite). Time-based expiry is polled with a deadline against a
 * server whose settings are one second. */
#include "cairn_test.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

enum { POLL_DEADLINE_MS = 20000, POLL_EVERY_MS = 50 };

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void pause_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000};
    nanosleep(&ts, NULL);
}

static void must(cairn_status rc, const cairn_error *err)
{
    if (rc != CAIRN_OK)
        fail_msg("expected OK, got %s: %s", cairn_strerror(rc), err->message);
}

static cairn_append_result append_one(cairn_client *c, const char *run_id, const char *key)
{
    cairn_event ev = {.type = "step", .payload = "x", .payload_len = 1};
    cairn_append_request req = {.idempotency_key = key, .run_id = run_id, .events = &ev,
                                .events_count = 1};
    cairn_append_result res;
    cairn_error err;
    must(cairn_append_events(c, &req, &res, &err), &err);
    return res;
}

static cairn_status get_run(cairn_client *c, const char *run_id)
{
    cairn_run run;
    cairn_error err;
    cairn_status rc = cairn_get_run(c, run_id, &run, &err);
    cairn_run_free(&run);
    return rc;
}

static cairn_delete_run_result delete_run(cairn_client *c, const char *run_id, const char *key)
{
    cairn_delete_run_request req = {.idempotency_key = key, .run_id = run_id};
    cairn_delete_run_result res;
    cairn_error err;
    must(cairn_delete_run(c, &req, &res, &err), &err);
    return res;
}

static void complete(cairn_client *c, const char *run_id, const char *worker_id)
{
    cairn_complete_request req = {.run_id = run_id, .worker_id = worker_id};
    cairn_complete_result res;
    cairn_error err;
    must(cairn_complete_worker(c, &req, &res, &err), &err);
}

static void delete_run_takes_everything_and_a_retry_with_its_key_answers_the_same(void **state)
{
    ct_fixture *f = *state;
    const char *workers[] = {"w0"};
    assert_int_equal(ct_create_run(f->client, "doomed", workers, 1), CAIRN_OK);
    assert_int_equal(ct_create_run(f->client, "kept", workers, 1), CAIRN_OK);
    append_one(f->client, "doomed", NULL);
    append_one(f->client, "kept", NULL);
    cairn_checkpoint_request cr = {.run_id = "doomed", .events_count = 1};
    cairn_checkpoint cp;
    cairn_error err;
    must(cairn_create_checkpoint(f->client, &cr, "snapshot of doomed", 18, &cp, &err), &err);
    cairn_checkpoint_free(&cp);
    assert_int_equal(ct_count_blob_files(&f->server), 1);

    cairn_delete_run_result first = delete_run(f->client, "doomed", "delete-1");
    assert_true(first.existed);
    assert_false(first.replayed);
    assert_int_equal(get_run(f->client, "doomed"), CAIRN_NOT_FOUND);
    cairn_event_page page;
    assert_int_equal(cairn_read_events(f->client, "doomed", 1, 10, &page, &err), CAIRN_NOT_FOUND);
    assert_int_equal(ct_count_blob_files(&f->server), 0);
    assert_int_equal(get_run(f->client, "kept"), CAIRN_OK);

    /* The retry of the same call: the first answer, though the run is gone. */
    cairn_delete_run_result again = delete_run(f->client, "doomed", "delete-1");
    assert_true(again.existed);
    assert_true(again.replayed);
    /* A new call: nothing to delete, and no error (scripts may repeat it). */
    cairn_delete_run_result other = delete_run(f->client, "doomed", "delete-2");
    assert_false(other.existed);
    assert_false(other.replayed);
    assert_false(delete_run(f->client, "never-made", NULL).existed);

    /* The id can be used again, from scratch. */
    assert_int_equal(ct_create_run(f->client, "doomed", workers, 1), CAIRN_OK);
    assert_int_equal(append_one(f->client, "doomed", NULL).first_seq, 1);
}

typedef struct watch_ctx {
    cairn_client *client;
    pthread_mutex_t mu;
    int events;
    cairn_status status;
    cairn_error err;
} watch_ctx;

static int on_event(void *user, const cairn_event *ev)
{
    (void)ev;
    watch_ctx *w = user;
    pthread_mutex_lock(&w->mu);
    w->events++;
    pthread_mutex_unlock(&w->mu);
    return 0;
}

static void *watch_main(void *arg)
{
    watch_ctx *w = arg;
    cairn_watch_request req = {.run_id = "watched", .from_seq = 1, .on_event = on_event,
                               .user = w};
    w->status = cairn_watch(w->client, &req, &w->err);
    return NULL;
}

static void a_watcher_of_a_deleted_run_ends_not_found(void **state)
{
    ct_fixture *f = *state;
    const char *workers[] = {"w0"};
    assert_int_equal(ct_create_run(f->client, "watched", workers, 1), CAIRN_OK);
    append_one(f->client, "watched", NULL);
    watch_ctx w = {.client = f->client, .mu = PTHREAD_MUTEX_INITIALIZER};
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, watch_main, &w), 0);
    int64_t deadline = now_ms() + POLL_DEADLINE_MS;
    for (;;) { /* the watcher has caught up and parks */
        pthread_mutex_lock(&w.mu);
        int seen = w.events;
        pthread_mutex_unlock(&w.mu);
        if (seen == 1)
            break;
        assert_true(now_ms() < deadline);
        pause_ms(POLL_EVERY_MS);
    }
    assert_true(delete_run(f->client, "watched", NULL).existed);
    pthread_join(th, NULL);
    assert_int_equal(w.status, CAIRN_NOT_FOUND);
    assert_non_null(strstr(w.err.message, "deleted"));
}

/* Polls GetRun until the run is gone; false at the deadline. */
static bool gone_within_deadline(cairn_client *c, const char *run_id)
{
    int64_t deadline = now_ms() + POLL_DEADLINE_MS;
    while (get_run(c, run_id) == CAIRN_OK) {
        if (now_ms() >= deadline)
            return false;
        pause_ms(POLL_EVERY_MS);
    }
    return true;
}

static int start_with(void **state, const char *flag)
{
    const char *args[] = {flag, "1s", NULL};
    return ct_fixture_start(state, args);
}

static int retention_setup(void **state)
{
    return start_with(state, "--completed-run-retention");
}

static int window_setup(void **state)
{
    return start_with(state, "--dedup-window");
}

static void completed_runs_go_after_the_retention_and_unfinished_ones_stay(void **state)
{
    ct_fixture *f = *state;
    const char *one[] = {"w0"}, *two[] = {"w0", "w1"};
    assert_int_equal(ct_create_run(f->client, "done", one, 1), CAIRN_OK);
    assert_int_equal(ct_create_run(f->client, "half", two, 2), CAIRN_OK);
    assert_int_equal(ct_create_run(f->client, "idle", one, 1), CAIRN_OK);
    complete(f->client, "done", "w0");
    complete(f->client, "half", "w0");
    assert_true(gone_within_deadline(f->client, "done"));
    /* The sweep that took "done" saw the others and kept them. */
    assert_int_equal(get_run(f->client, "half"), CAIRN_OK);
    assert_int_equal(get_run(f->client, "idle"), CAIRN_OK);
    complete(f->client, "half", "w1");
    assert_true(gone_within_deadline(f->client, "half"));
    assert_int_equal(get_run(f->client, "idle"), CAIRN_OK);
}

static void a_retry_after_the_dedup_window_applies_again(void **state)
{
    ct_fixture *f = *state;
    const char *workers[] = {"w0"};
    assert_int_equal(ct_create_run(f->client, "run-1", workers, 1), CAIRN_OK);
    cairn_append_result first = append_one(f->client, "run-1", "append-1");
    assert_int_equal(first.first_seq, 1);
    assert_false(first.replayed);
    /* Within the window the key is known ... */
    cairn_append_result retry = append_one(f->client, "run-1", "append-1");
    assert_true(retry.replayed);
    assert_int_equal(retry.first_seq, 1);
    /* ... past it, forgotten: the same request applies once more. */
    int64_t deadline = now_ms() + POLL_DEADLINE_MS;
    while ((retry = append_one(f->client, "run-1", "append-1")).replayed) {
        assert_true(now_ms() < deadline);
        pause_ms(POLL_EVERY_MS);
    }
    assert_int_equal(retry.first_seq, 2);
    cairn_event_page page;
    cairn_error err;
    must(cairn_read_events(f->client, "run-1", 1, 10, &page, &err), &err);
    assert_int_equal(page.events_count, 2);
    cairn_event_page_free(&page);
}

static void checkpoint_of(ct_fixture *f, const char *run_id, const char *bytes,
                          char id[CAIRN_ID_MAX + 1], char sha[65])
{
    cairn_checkpoint_request cr = {.run_id = run_id, .events_count = 1};
    cairn_checkpoint cp;
    cairn_error err;
    must(cairn_create_checkpoint(f->client, &cr, bytes, strlen(bytes), &cp, &err), &err);
    snprintf(id, CAIRN_ID_MAX + 1, "%s", cp.checkpoint_id);
    snprintf(sha, 65, "%s", cp.snapshot_sha256);
    cairn_checkpoint_free(&cp);
}

static int verify(const ct_fixture *f, char *out, size_t cap)
{
    const char *args[] = {"verify", "--data-dir", f->server.data_dir, NULL};
    return ct_run_cairnd(args, out, cap);
}

static void verify_names_a_damaged_and_a_missing_snapshot_and_exits_1(void **state)
{
    CT_SQLITE_ONLY("verify reads SQLite's cairn.db and blob files");
    ct_fixture *f = *state;
    const char *workers[] = {"w0"};
    assert_int_equal(ct_create_run(f->client, "run-1", workers, 1), CAIRN_OK);
    append_one(f->client, "run-1", NULL);
    char id_a[CAIRN_ID_MAX + 1], id_b[CAIRN_ID_MAX + 1], id_c[CAIRN_ID_MAX + 1];
    char sha_a[65], sha_b[65], sha_c[65];
    checkpoint_of(f, "run-1", "snapshot a", id_a, sha_a);
    checkpoint_of(f, "run-1", "snapshot b", id_b, sha_b);
    checkpoint_of(f, "run-1", "snapshot c", id_c, sha_c);
    char out[4096];
    assert_int_equal(verify(f, out, sizeof out), 0); /* while cairnd serves */
    assert_non_null(strstr(out, "ok: "));
    assert_non_null(strstr(out, "3 checkpoints"));

    char path[700];
    snprintf(path, sizeof path, "%s/blobs/%.2s/%s", f->server.data_dir, sha_a, sha_a);
    FILE *fp = fopen(path, "r+");
    assert_non_null(fp);
    fputc('X', fp); /* same size, other bytes */
    fclose(fp);
    snprintf(path, sizeof path, "%s/blobs/%.2s/%s", f->server.data_dir, sha_b, sha_b);
    assert_int_equal(unlink(path), 0);

    assert_int_equal(verify(f, out, sizeof out), 1);
    char want[400];
    snprintf(want, sizeof want, "run run-1 checkpoint %s: snapshot blobs/%.2s/%s does not match "
             "its SHA-256", id_a, sha_a, sha_a);
    if (!strstr(out, want))
        fail_msg("no line \"%s\" in:\n%s", want, out);
    snprintf(want, sizeof want, "run run-1 checkpoint %s: snapshot blobs/%.2s/%s is missing",
             id_b, sha_b, sha_b);
    if (!strstr(out, want))
        fail_msg("no line \"%s\" in:\n%s", want, out);
    assert_null(strstr(out, id_c)); /* the sound one is not named */
    int lines = 0;
    for (const char *p = out; (p = strchr(p, '\n')); p++)
        lines++;
    assert_int_equal(lines, 2);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(
            delete_run_takes_everything_and_a_retry_with_its_key_answers_the_same,
            ct_fixture_setup, ct_fixture_teardown),
        cmocka_unit_test_setup_teardown(a_watcher_of_a_deleted_run_ends_not_found,
                                        ct_fixture_setup, ct_fixture_teardown),
        cmocka_unit_test_setup_teardown(
            completed_runs_go_after_the_retention_and_unfinished_ones_stay, retention_setup,
            ct_fixture_teardown),
        cmocka_unit_test_setup_teardown(a_retry_after_the_dedup_window_applies_again,
                                        window_setup, ct_fixture_teardown),
        cmocka_unit_test_setup_teardown(verify_names_a_damaged_and_a_missing_snapshot_and_exits_1,
                                        ct_fixture_setup, ct_fixture_teardown),
    };
    return cmocka_run_group_tests_name("data_lifecycle", tests, NULL, NULL);
}
