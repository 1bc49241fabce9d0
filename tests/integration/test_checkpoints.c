/* Checkpoints end to end, part one: libcairn against a real cairnd on
 * 127.0.0.1. Each test carries a behaviour of the original resilience
 * module's checkpoint tests: create, list, latest, cleanup. */
#include "checkpoint_support.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <ctype.h>
#include <dirent.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* ---- create ---- */

/* checkpoint_create_basic: the checkpoint records id, time, state, events, size and SHA-256. */
static void checkpoint_create_basic(void **state)
{
    fixture *f = *state;
    create_run(f->client, "cp-basic");
    append_n(f->client, "cp-basic", 3);
    const char snap[] = "{\"step\": 3, \"items\": [1, 2, 3]}";
    cairn_checkpoint cp;
    checkpoint(f->client, "cp-basic", "processing", 3, snap, sizeof snap - 1, &cp);
    assert_checkpoint_id_format(cp.checkpoint_id);
    assert_timestamp_format(cp.created_at);
    assert_id_matches_time(cp.checkpoint_id, cp.created_at);
    assert_string_equal(cp.run_id, "cp-basic");
    assert_string_equal(cp.run_state, "processing");
    assert_int_equal(cp.events_count, 3);
    assert_int_equal(cp.snapshot_size, sizeof snap - 1);
    char sha[65];
    cairn_content_hash(snap, sizeof snap - 1, sha);
    assert_string_equal(cp.snapshot_sha256, sha);
    assert_int_equal(cp.completed_workers_count, 0);
    assert_false(cp.replayed);

    cairn_run run;
    cairn_error err;
    assert_int_equal(cairn_get_run(f->client, "cp-basic", &run, &err), CAIRN_OK);
    assert_string_equal(run.latest_checkpoint_id, cp.checkpoint_id);
    cairn_run_free(&run);
    cairn_checkpoint_free(&cp);
}

/* checkpoint_create_no_events: a run with no events checkpoints with events_count 0. */
static void checkpoint_create_no_events(void **state)
{
    fixture *f = *state;
    create_run(f->client, "cp-noevents");
    cairn_checkpoint cp;
    checkpoint(f->client, "cp-noevents", "initial", 0, "{}", 2, &cp);
    assert_int_equal(cp.events_count, 0);
    assert_string_equal(cp.run_state, "initial");
    cairn_checkpoint_free(&cp);
    /* run_state NULL is "". */
    cairn_checkpoint_request req = {.run_id = "cp-noevents"};
    cairn_error err;
    assert_int_equal(cairn_create_checkpoint(f->client, &req, "x", 1, &cp, &err), CAIRN_OK);
    assert_string_equal(cp.run_state, "");
    cairn_checkpoint_free(&cp);
}

/* checkpoint_events_count_past_last_seq_is_invalid: a checkpoint cannot cover events the log
 * lacks. */
static void checkpoint_events_count_past_last_seq_is_invalid(void **state)
{
    fixture *f = *state;
    create_run(f->client, "cp-past");
    append_n(f->client, "cp-past", 2);
    cairn_checkpoint_request req = {.run_id = "cp-past", .events_count = 3};
    cairn_checkpoint cp;
    cairn_error err;
    assert_int_equal(cairn_create_checkpoint(f->client, &req, "x", 1, &cp, &err),
                     CAIRN_INVALID_ARGUMENT);
    assert_non_null(strstr(err.message, "events_count"));
    assert_int_equal(err.attempts, 1);
    assert_int_equal(list_count(f->client, "cp-past"), 0);
    req.events_count = 2;
    assert_int_equal(cairn_create_checkpoint(f->client, &req, "x", 1, &cp, &err), CAIRN_OK);
    cairn_checkpoint_free(&cp);
}

/* checkpoint_create_missing_snapshot: no snapshot bytes (NULL buffer, missing file) is an error,
 * nothing stored. */
static void checkpoint_create_missing_snapshot(void **state)
{
    fixture *f = *state;
    create_run(f->client, "cp-missing");
    cairn_checkpoint_request req = {.run_id = "cp-missing", .run_state = "s"};
    cairn_checkpoint cp;
    cairn_error err;
    assert_int_equal(cairn_create_checkpoint(f->client, &req, NULL, 10, &cp, &err),
                     CAIRN_INVALID_ARGUMENT);
    assert_non_null(strstr(err.message, "snapshot"));

    char path[400];
    snprintf(path, sizeof path, "%s/no-such-snapshot.json", f->server.dir);
    assert_int_equal(cairn_create_checkpoint_path(f->client, &req, path, &cp, &err), CAIRN_IO);
    assert_int_equal(err.status, CAIRN_IO);
    assert_non_null(strstr(err.message, path));
    assert_int_equal(list_count(f->client, "cp-missing"), 0);

    /* An unknown run is NOT_FOUND, not retried. */
    req.run_id = "cp-no-such-run";
    assert_int_equal(cairn_create_checkpoint(f->client, &req, "x", 1, &cp, &err), CAIRN_NOT_FOUND);
    assert_int_equal(err.attempts, 1);
}

/* checkpoint_create_from_fd: a descriptor's bytes from offset 0 are the snapshot; its offset is
 * untouched. */
static void checkpoint_create_from_fd(void **state)
{
    fixture *f = *state;
    create_run(f->client, "cp-fd");
    size_t len = MIB + 12345; /* more than one chunk */
    uint8_t *data = malloc(len);
    fill_random(data, len, 7);
    char path[400];
    snprintf(path, sizeof path, "%s/snap-fd.bin", f->server.dir);
    write_file(path, data, len);
    int fd = open(path, O_RDONLY);
    assert_true(fd >= 0);
    assert_int_equal(lseek(fd, 100, SEEK_SET), 100);

    cairn_checkpoint_request req = {.run_id = "cp-fd", .run_state = "from-fd"};
    cairn_checkpoint cp;
    cairn_error err;
    assert_int_equal(cairn_create_checkpoint_fd(f->client, &req, fd, &cp, &err), CAIRN_OK);
    assert_int_equal(lseek(fd, 0, SEEK_CUR), 100);
    close(fd);
    assert_int_equal(cp.snapshot_size, len);
    char sha[65];
    cairn_content_hash(data, len, sha);
    assert_string_equal(cp.snapshot_sha256, sha);

    cairn_checkpoint meta;
    size_t got_len;
    void *got = load(f->client, "cp-fd", cp.checkpoint_id, &meta, &got_len);
    assert_int_equal(got_len, len);
    assert_memory_equal(got, data, len);
    cairn_buffer_free(got);
    cairn_checkpoint_free(&meta);
    cairn_checkpoint_free(&cp);

    /* A descriptor that is not open is IO. */
    assert_int_equal(cairn_create_checkpoint_fd(f->client, &req, -1, &cp, &err), CAIRN_IO);
    assert_int_equal(list_count(f->client, "cp-fd"), 1);
    free(data);
}

/* checkpoint_create_from_fd_refuses_a_pipe: a descriptor without a size (a pipe) is an error, never
 * an empty checkpoint. */
static void checkpoint_create_from_fd_refuses_a_pipe(void **state)
{
    fixture *f = *state;
    create_run(f->client, "cp-pipe");
    int p[2];
    assert_int_equal(pipe(p), 0);
    assert_int_equal(write(p[1], "important state", 15), 15);
    close(p[1]);
    cairn_checkpoint_request req = {.run_id = "cp-pipe", .run_state = "from a pipe"};
    cairn_checkpoint cp;
    cairn_error err;
    cairn_status rc = cairn_create_checkpoint_fd(f->client, &req, p[0], &cp, &err);
    close(p[0]);
    if (rc == CAIRN_OK)
        fprintf(stderr, "BUG: a pipe became a checkpoint of %llu bytes (%s)\n",
                (unsigned long long)cp.snapshot_size, cp.checkpoint_id);
    cairn_checkpoint_free(&cp);
    /* libcairn cannot know a pipe's size up front; it must say so (a bad
     * argument or a local I/O error), not upload zero bytes. */
    assert_true(rc == CAIRN_INVALID_ARGUMENT || rc == CAIRN_IO);
    assert_int_equal(list_count(f->client, "cp-pipe"), 0);
    /* A directory given as the snapshot path is IO as well. */
    assert_int_equal(cairn_create_checkpoint_path(f->client, &req, f->server.dir, &cp, &err),
                     CAIRN_IO);
    assert_int_equal(list_count(f->client, "cp-pipe"), 0);
}

/* checkpoint_create_from_path: a file's contents are the snapshot. */
static void checkpoint_create_from_path(void **state)
{
    fixture *f = *state;
    create_run(f->client, "cp-path");
    const char text[] = "{\"from\": \"path\", \"n\": 42}\n";
    char path[400];
    snprintf(path, sizeof path, "%s/snap-path.json", f->server.dir);
    write_file(path, text, sizeof text - 1);
    cairn_checkpoint_request req = {.run_id = "cp-path", .run_state = "from-path"};
    cairn_checkpoint cp;
    cairn_error err;
    assert_int_equal(cairn_create_checkpoint_path(f->client, &req, path, &cp, &err), CAIRN_OK);
    assert_int_equal(cp.snapshot_size, sizeof text - 1);
    cairn_checkpoint meta;
    size_t len;
    char *got = load(f->client, "cp-path", cp.checkpoint_id, &meta, &len);
    assert_int_equal(len, sizeof text - 1);
    assert_memory_equal(got, text, len);
    assert_string_equal(meta.run_state, "from-path");
    cairn_buffer_free(got);
    cairn_checkpoint_free(&meta);
    cairn_checkpoint_free(&cp);
}

typedef struct progress_log {
    int calls;
    uint64_t last_done, total;
    bool monotonic, same_total;
} progress_log;

static void record_progress(void *user, uint64_t done, uint64_t total)
{
    progress_log *p = user;
    if (p->calls > 0) {
        p->monotonic = p->monotonic && done >= p->last_done;
        p->same_total = p->same_total && total == p->total;
    }
    p->calls++;
    p->last_done = done;
    p->total = total;
}

/* checkpoint_progress_reaches_total: upload and download progress climb to the snapshot size. */
static void checkpoint_progress_reaches_total(void **state)
{
    fixture *f = *state;
    create_run(f->client, "cp-progress");
    size_t len = 2 * MIB + MIB / 2 + 1; /* three chunks */
    uint8_t *data = malloc(len);
    fill_random(data, len, 11);
    progress_log up = {.monotonic = true, .same_total = true};
    cairn_checkpoint_request req = {.run_id = "cp-progress", .progress = record_progress,
                                    .progress_user = &up};
    cairn_checkpoint cp;
    cairn_error err;
    assert_int_equal(cairn_create_checkpoint(f->client, &req, data, len, &cp, &err), CAIRN_OK);
    assert_true(up.calls >= 3);
    assert_true(up.monotonic && up.same_total);
    assert_int_equal(up.last_done, len);
    assert_int_equal(up.total, len);

    progress_log down = {.monotonic = true, .same_total = true};
    cairn_load_request lreq = {.run_id = "cp-progress", .checkpoint_id = cp.checkpoint_id,
                               .progress = record_progress, .progress_user = &down};
    cairn_checkpoint meta;
    void *got;
    size_t got_len;
    assert_int_equal(cairn_load_checkpoint(f->client, &lreq, &meta, &got, &got_len, &err),
                     CAIRN_OK);
    assert_true(down.calls >= 3);
    assert_true(down.monotonic && down.same_total);
    assert_int_equal(down.last_done, len);
    assert_int_equal(down.total, len);
    assert_memory_equal(got, data, len);
    cairn_buffer_free(got);
    cairn_checkpoint_free(&meta);
    cairn_checkpoint_free(&cp);
    free(data);
}

/* checkpoint_records_given_completed_workers: completed_workers given are recorded as given. */
static void checkpoint_records_given_completed_workers(void **state)
{
    fixture *f = *state;
    create_run(f->client, "cp-given");
    const char *done[] = {"w3", "w1", "w3"};
    cairn_checkpoint_request req = {.run_id = "cp-given", .completed_workers = done,
                                    .completed_workers_count = 3};
    cairn_checkpoint cp;
    cairn_error err;
    assert_int_equal(cairn_create_checkpoint(f->client, &req, "s", 1, &cp, &err), CAIRN_OK);
    assert_int_equal(cp.completed_workers_count, 2); /* duplicates dropped, order kept */
    assert_string_equal(cp.completed_workers[0], "w3");
    assert_string_equal(cp.completed_workers[1], "w1");
    cairn_checkpoint latest;
    assert_int_equal(cairn_get_latest_checkpoint(f->client, "cp-given", &latest, &err), CAIRN_OK);
    assert_int_equal(latest.completed_workers_count, 2);
    assert_string_equal(latest.completed_workers[0], "w3");
    assert_string_equal(latest.completed_workers[1], "w1");
    cairn_checkpoint_free(&latest);
    cairn_checkpoint_free(&cp);

    /* A worker that is not the run's is refused, naming it. */
    const char *bad[] = {"w1", "stranger"};
    req.completed_workers = bad;
    req.completed_workers_count = 2;
    assert_int_equal(cairn_create_checkpoint(f->client, &req, "s", 1, &cp, &err),
                     CAIRN_INVALID_ARGUMENT);
    assert_non_null(strstr(err.message, "completed_workers[1]"));
    assert_int_equal(list_count(f->client, "cp-given"), 1);
}

/* checkpoint_without_completed_workers_records_the_log: none given, the server records those
 * completed up to events_count. */
static void checkpoint_without_completed_workers_records_the_log(void **state)
{
    fixture *f = *state;
    create_run(f->client, "cp-own");
    complete(f->client, "cp-own", "w2");   /* seq 1 */
    append_n(f->client, "cp-own", 1);      /* seq 2 */
    complete(f->client, "cp-own", "w1");   /* seq 3 */
    cairn_checkpoint cp;
    checkpoint(f->client, "cp-own", "s", 3, "s", 1, &cp);
    assert_int_equal(cp.completed_workers_count, 2);
    assert_string_equal(cp.completed_workers[0], "w2"); /* completion order */
    assert_string_equal(cp.completed_workers[1], "w1");
    cairn_checkpoint_free(&cp);
    /* Only completions the checkpoint covers count. */
    checkpoint(f->client, "cp-own", "s", 2, "s", 1, &cp);
    assert_int_equal(cp.completed_workers_count, 1);
    assert_string_equal(cp.completed_workers[0], "w2");
    cairn_checkpoint_free(&cp);
    checkpoint(f->client, "cp-own", "s", 0, "s", 1, &cp);
    assert_int_equal(cp.completed_workers_count, 0);
    cairn_checkpoint_free(&cp);
}

/* checkpoint_header_limits_are_enforced: run_state over 64 KiB or not UTF-8 is INVALID_ARGUMENT
 * naming it; nothing stored. */
static void checkpoint_header_limits_are_enforced(void **state)
{
    fixture *f = *state;
    create_run(f->client, "cp-header");
    size_t max = 64 * 1024;
    char *big = malloc(max + 2);
    memset(big, 's', max + 1);
    big[max + 1] = '\0';
    cairn_checkpoint_request req = {.run_id = "cp-header", .run_state = big};
    cairn_checkpoint cp;
    cairn_error err;
    assert_int_equal(cairn_create_checkpoint(f->client, &req, "x", 1, &cp, &err),
                     CAIRN_INVALID_ARGUMENT);
    assert_non_null(strstr(err.message, "run_state"));
    assert_int_equal(err.attempts, 1);
    big[max] = '\0'; /* exactly the limit is fine */
    assert_int_equal(cairn_create_checkpoint(f->client, &req, "x", 1, &cp, &err), CAIRN_OK);
    assert_int_equal(strlen(cp.run_state), max);
    cairn_checkpoint_free(&cp);
    free(big);

    req.run_state = "bad \xff\xfe utf-8";
    assert_int_equal(cairn_create_checkpoint(f->client, &req, "x", 1, &cp, &err),
                     CAIRN_INVALID_ARGUMENT);
    assert_non_null(strstr(err.message, "run_state"));
    req.run_state = "s";
    const char *bad[] = {"../w1"};
    req.completed_workers = bad;
    req.completed_workers_count = 1;
    assert_int_equal(cairn_create_checkpoint(f->client, &req, "x", 1, &cp, &err),
                     CAIRN_INVALID_ARGUMENT);
    assert_non_null(strstr(err.message, "completed_workers[0]"));
    assert_int_equal(list_count(f->client, "cp-header"), 1);
    assert_int_equal(staging_entries(&f->server), 0);
}

/* checkpoint_resets_events_since_checkpoint: appends report the events after the latest
 * checkpoint's events_count. */
static void checkpoint_resets_events_since_checkpoint(void **state)
{
    fixture *f = *state;
    create_run(f->client, "cp-since");
    append_n(f->client, "cp-since", 5);
    cairn_checkpoint cp;
    checkpoint(f->client, "cp-since", "s", 3, "s", 1, &cp);
    cairn_checkpoint_free(&cp);
    cairn_event ev = {.type = "step"};
    cairn_append_request req = {.run_id = "cp-since", .events = &ev, .events_count = 1};
    cairn_append_result res;
    cairn_error err;
    assert_int_equal(cairn_append_events(f->client, &req, &res, &err), CAIRN_OK);
    assert_int_equal(res.last_seq, 6);
    assert_int_equal(res.events_since_checkpoint, 3); /* seqs 4, 5, 6 */
    checkpoint(f->client, "cp-since", "s", 6, "s", 1, &cp);
    cairn_checkpoint_free(&cp);
    assert_int_equal(cairn_append_events(f->client, &req, &res, &err), CAIRN_OK);
    assert_int_equal(res.events_since_checkpoint, 1);
}

/* ---- list, latest ---- */

/* checkpoint_list_empty: a run without checkpoints lists none; an unknown run is NOT_FOUND. */
static void checkpoint_list_empty(void **state)
{
    fixture *f = *state;
    create_run(f->client, "cp-list-empty");
    cairn_checkpoint_list list;
    cairn_error err;
    assert_int_equal(cairn_list_checkpoints(f->client, "cp-list-empty", &list, &err), CAIRN_OK);
    assert_int_equal(list.count, 0);
    cairn_checkpoint_list_free(&list);
    assert_int_equal(cairn_list_checkpoints(f->client, "cp-no-such-run", &list, &err),
                     CAIRN_NOT_FOUND);
    assert_non_null(strstr(err.message, "run_id"));
}

/* checkpoint_list_sorted_by_time: checkpoints made rapidly list oldest first, ids and times
 * increasing. */
static void checkpoint_list_sorted_by_time(void **state)
{
    fixture *f = *state;
    create_run(f->client, "cp-sorted");
    char ids[5][CAIRN_ID_MAX + 1];
    for (int i = 0; i < 5; i++) {
        char text[16];
        snprintf(text, sizeof text, "state-%d", i);
        checkpoint_id_of(f->client, "cp-sorted", text, ids[i]);
    }
    cairn_checkpoint_list list;
    cairn_error err;
    assert_int_equal(cairn_list_checkpoints(f->client, "cp-sorted", &list, &err), CAIRN_OK);
    assert_int_equal(list.count, 5);
    for (size_t i = 0; i < 5; i++) {
        assert_string_equal(list.checkpoints[i].checkpoint_id, ids[i]);
        assert_string_equal(list.checkpoints[i].run_id, "cp-sorted");
        if (i > 0) {
            assert_true(strcmp(list.checkpoints[i - 1].checkpoint_id,
                               list.checkpoints[i].checkpoint_id) < 0);
            assert_true(strcmp(list.checkpoints[i - 1].created_at, list.checkpoints[i].created_at) <
                        0);
        }
    }
    cairn_checkpoint_list_free(&list);
}

/* checkpoint_list_stays_listable_with_large_states: 70 checkpoints with a 64 KiB run_state (each
 * within every limit) still list, oldest first. */
static void checkpoint_list_stays_listable_with_large_states(void **state)
{
    fixture *f = *state;
    enum { N = 70 };
    create_run(f->client, "cp-list-large");
    size_t max = 64 * 1024; /* the run_state limit */
    char *big = malloc(max + 1);
    memset(big, 'r', max);
    big[max] = '\0';
    static char ids[N][CAIRN_ID_MAX + 1];
    for (int i = 0; i < N; i++) {
        cairn_checkpoint cp;
        checkpoint(f->client, "cp-list-large", big, 0, "x", 1, &cp);
        memcpy(ids[i], cp.checkpoint_id, sizeof ids[i]);
        cairn_checkpoint_free(&cp);
    }
    free(big);
    cairn_checkpoint_list list;
    cairn_error err;
    cairn_status rc = cairn_list_checkpoints(f->client, "cp-list-large", &list, &err);
    if (rc != CAIRN_OK)
        fprintf(stderr, "BUG: %d checkpoints with %zu-byte states cannot be listed: %s\n", N, max,
                err.message);
    assert_int_equal(rc, CAIRN_OK);
    assert_int_equal(list.count, N);
    for (int i = 0; i < N; i++) {
        assert_string_equal(list.checkpoints[i].checkpoint_id, ids[i]);
        assert_int_equal(strlen(list.checkpoints[i].run_state), max);
    }
    cairn_checkpoint_list_free(&list);
}

/* checkpoint_latest_none: a run without checkpoints has no latest (NOT_FOUND naming the run). */
static void checkpoint_latest_none(void **state)
{
    fixture *f = *state;
    create_run(f->client, "cp-latest-none");
    cairn_checkpoint cp;
    cairn_error err;
    assert_int_equal(cairn_get_latest_checkpoint(f->client, "cp-latest-none", &cp, &err),
                     CAIRN_NOT_FOUND);
    assert_non_null(strstr(err.message, "cp-latest-none"));
    assert_int_equal(err.attempts, 1);
    cairn_run run;
    assert_int_equal(cairn_get_run(f->client, "cp-latest-none", &run, &err), CAIRN_OK);
    assert_string_equal(run.latest_checkpoint_id, "");
    cairn_run_free(&run);
}

/* checkpoint_latest_returns_newest: with several checkpoints the latest is the last made. */
static void checkpoint_latest_returns_newest(void **state)
{
    fixture *f = *state;
    create_run(f->client, "cp-latest");
    char ids[3][CAIRN_ID_MAX + 1];
    for (int i = 0; i < 3; i++)
        checkpoint_id_of(f->client, "cp-latest", i == 2 ? "newest" : "older", ids[i]);
    cairn_checkpoint cp;
    cairn_error err;
    assert_int_equal(cairn_get_latest_checkpoint(f->client, "cp-latest", &cp, &err), CAIRN_OK);
    assert_string_equal(cp.checkpoint_id, ids[2]);
    assert_int_equal(cp.snapshot_size, 6);
    cairn_checkpoint_free(&cp);
    /* Loading with no id loads the latest. */
    size_t len;
    char *got = load(f->client, "cp-latest", NULL, &cp, &len);
    assert_string_equal(cp.checkpoint_id, ids[2]);
    assert_int_equal(len, 6);
    assert_memory_equal(got, "newest", 6);
    cairn_buffer_free(got);
    cairn_checkpoint_free(&cp);
}

/* ---- cleanup ---- */

/* checkpoint_cleanup_keep_all: keep_last_n equal to or above the count deletes nothing. */
static void checkpoint_cleanup_keep_all(void **state)
{
    fixture *f = *state;
    create_run(f->client, "cp-keep-all");
    char id[CAIRN_ID_MAX + 1];
    for (int i = 0; i < 3; i++)
        checkpoint_id_of(f->client, "cp-keep-all", "x", id);
    cairn_cleanup_result res;
    cairn_error err;
    assert_int_equal(cleanup(f->client, NULL, "cp-keep-all", 3, &res, &err), CAIRN_OK);
    assert_int_equal(res.deleted, 0);
    assert_int_equal(res.deleted_ids_count, 0);
    cairn_cleanup_result_free(&res);
    assert_int_equal(list_count(f->client, "cp-keep-all"), 3);
}

/* checkpoint_cleanup_keep_more_than_exist: keep_last_n larger than the count deletes nothing. */
static void checkpoint_cleanup_keep_more_than_exist(void **state)
{
    fixture *f = *state;
    create_run(f->client, "cp-keep-more");
    char id[CAIRN_ID_MAX + 1];
    checkpoint_id_of(f->client, "cp-keep-more", "a", id);
    checkpoint_id_of(f->client, "cp-keep-more", "b", id);
    cairn_cleanup_result res;
    cairn_error err;
    assert_int_equal(cleanup(f->client, NULL, "cp-keep-more", 10, &res, &err), CAIRN_OK);
    assert_int_equal(res.deleted, 0);
    cairn_cleanup_result_free(&res);
    assert_int_equal(list_count(f->client, "cp-keep-more"), 2);
    /* A run with no checkpoints at all is fine too. */
    create_run(f->client, "cp-keep-none");
    assert_int_equal(cleanup(f->client, NULL, "cp-keep-none", 1, &res, &err), CAIRN_OK);
    assert_int_equal(res.deleted, 0);
    cairn_cleanup_result_free(&res);
}

/* checkpoint_cleanup_deletes_oldest: keep 1 deletes the older ones, oldest first; only the newest
 * stays. */
static void checkpoint_cleanup_deletes_oldest(void **state)
{
    fixture *f = *state;
    create_run(f->client, "cp-oldest");
    char ids[4][CAIRN_ID_MAX + 1];
    for (int i = 0; i < 4; i++) {
        char text[8];
        snprintf(text, sizeof text, "v%d", i);
        checkpoint_id_of(f->client, "cp-oldest", text, ids[i]);
    }
    cairn_cleanup_result res;
    cairn_error err;
    assert_int_equal(cleanup(f->client, NULL, "cp-oldest", 1, &res, &err), CAIRN_OK);
    assert_int_equal(res.deleted, 3);
    assert_int_equal(res.deleted_ids_count, 3);
    for (int i = 0; i < 3; i++)
        assert_string_equal(res.deleted_ids[i], ids[i]);
    assert_false(res.replayed);
    cairn_cleanup_result_free(&res);

    cairn_checkpoint_list list;
    assert_int_equal(cairn_list_checkpoints(f->client, "cp-oldest", &list, &err), CAIRN_OK);
    assert_int_equal(list.count, 1);
    assert_string_equal(list.checkpoints[0].checkpoint_id, ids[3]);
    cairn_checkpoint_list_free(&list);
    /* A deleted checkpoint cannot be loaded any more. */
    cairn_load_request req = {.run_id = "cp-oldest", .checkpoint_id = ids[0]};
    cairn_checkpoint meta;
    void *data;
    size_t len;
    assert_int_equal(cairn_load_checkpoint(f->client, &req, &meta, &data, &len, &err),
                     CAIRN_NOT_FOUND);
}

/* checkpoint_cleanup_keep_zero_is_invalid: keep_last_n 0 would delete the latest:
 * INVALID_ARGUMENT. */
static void checkpoint_cleanup_keep_zero_is_invalid(void **state)
{
    fixture *f = *state;
    create_run(f->client, "cp-keep-zero");
    char id[CAIRN_ID_MAX + 1];
    checkpoint_id_of(f->client, "cp-keep-zero", "only", id);
    cairn_cleanup_result res;
    cairn_error err;
    assert_int_equal(cleanup(f->client, NULL, "cp-keep-zero", 0, &res, &err),
                     CAIRN_INVALID_ARGUMENT);
    assert_non_null(strstr(err.message, "keep_last_n"));
    assert_int_equal(err.attempts, 1);
    assert_int_equal(list_count(f->client, "cp-keep-zero"), 1);
    assert_int_equal(cleanup(f->client, NULL, "cp-no-such-run", 1, &res, &err), CAIRN_NOT_FOUND);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(checkpoint_create_basic),
        cmocka_unit_test(checkpoint_create_no_events),
        cmocka_unit_test(checkpoint_events_count_past_last_seq_is_invalid),
        cmocka_unit_test(checkpoint_create_missing_snapshot),
        cmocka_unit_test(checkpoint_create_from_fd),
        cmocka_unit_test(checkpoint_create_from_fd_refuses_a_pipe),
        cmocka_unit_test(checkpoint_create_from_path),
        cmocka_unit_test(checkpoint_progress_reaches_total),
        cmocka_unit_test(checkpoint_records_given_completed_workers),
        cmocka_unit_test(checkpoint_without_completed_workers_records_the_log),
        cmocka_unit_test(checkpoint_header_limits_are_enforced),
        cmocka_unit_test(checkpoint_resets_events_since_checkpoint),
        cmocka_unit_test(checkpoint_list_empty),
        cmocka_unit_test(checkpoint_list_sorted_by_time),
        cmocka_unit_test(checkpoint_list_stays_listable_with_large_states),
        cmocka_unit_test(checkpoint_latest_none),
        cmocka_unit_test(checkpoint_latest_returns_newest),
        cmocka_unit_test(checkpoint_cleanup_keep_all),
        cmocka_unit_test(checkpoint_cleanup_keep_more_than_exist),
        cmocka_unit_test(checkpoint_cleanup_deletes_oldest),
        cmocka_unit_test(checkpoint_cleanup_keep_zero_is_invalid),
    };
    return cmocka_run_group_tests_name("checkpoints", tests, setup, teardown);
}
