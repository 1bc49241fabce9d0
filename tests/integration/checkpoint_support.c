/* Fixtures and helpers shared by the checkpoint integration tests. */
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

int setup(void **state)
{
    /* Retention high enough that no test here loses a checkpoint to it
     * unless it asks for that (the default keeps 5). */
    static const char *const args[] = {"--checkpoint-retention", "1000", NULL};
    return ct_fixture_start(state, args);
}

int teardown(void **state)
{
    return ct_fixture_teardown(state);
}

/* A server of one test's own, for flags the group's server lacks. Started
 * and stopped by per-test setup and teardown, so a failing test still
 * stops it and removes its directory. */

int start_own(void **state, const char *const *args)
{
    return ct_fixture_start(state, args);
}

int setup_own(void **state)
{
    return start_own(state, NULL);
}

int setup_own_max_snapshot_1000(void **state)
{
    static const char *const args[] = {"--max-snapshot-bytes", "1000", NULL};
    return start_own(state, args);
}

int setup_own_retention_2(void **state)
{
    static const char *const args[] = {"--checkpoint-retention", "2", NULL};
    return start_own(state, args);
}

/* Fails (after cleaning up) unless a server still running exits cleanly. */
int teardown_own(void **state)
{
    return ct_fixture_teardown(state);
}

/* ---- helpers ---- */

void create_run(cairn_client *c, const char *run_id)
{
    const char *workers[] = {"w1", "w2", "w3"};
    assert_int_equal(ct_create_run(c, run_id, workers, 3), CAIRN_OK);
}

/* Appends n run-level events; returns the last seq. */
uint64_t append_n(cairn_client *c, const char *run_id, size_t n)
{
    static cairn_event evs[1000];
    uint64_t last = 0;
    while (n) {
        size_t k = n < 1000 ? n : 1000;
        for (size_t i = 0; i < k; i++)
            evs[i] = (cairn_event){.type = "step", .payload = "p", .payload_len = 1};
        cairn_append_request req = {.run_id = run_id, .events = evs, .events_count = k};
        cairn_append_result res;
        cairn_error err;
        assert_int_equal(cairn_append_events(c, &req, &res, &err), CAIRN_OK);
        last = res.last_seq;
        n -= k;
    }
    return last;
}

void complete(cairn_client *c, const char *run_id, const char *worker)
{
    cairn_complete_request req = {.run_id = run_id, .worker_id = worker};
    cairn_complete_result res;
    cairn_error err;
    assert_int_equal(cairn_complete_worker(c, &req, &res, &err), CAIRN_OK);
}

/* Creates a checkpoint of data; asserts success. */
void checkpoint(cairn_client *c, const char *run_id, const char *run_state,
                       uint64_t events_count, const void *data, size_t len, cairn_checkpoint *out)
{
    cairn_checkpoint_request req = {.run_id = run_id, .run_state = run_state,
                                    .events_count = events_count};
    cairn_error err;
    cairn_status rc = cairn_create_checkpoint(c, &req, data, len, out, &err);
    if (rc != CAIRN_OK)
        fprintf(stderr, "create_checkpoint: %s\n", err.message);
    assert_int_equal(rc, CAIRN_OK);
}

/* Creates a checkpoint of a short text and returns its id in id. */
void checkpoint_id_of(cairn_client *c, const char *run_id, const char *text,
                             char id[CAIRN_ID_MAX + 1])
{
    cairn_checkpoint cp;
    checkpoint(c, run_id, "s", 0, text, strlen(text), &cp);
    memcpy(id, cp.checkpoint_id, CAIRN_ID_MAX + 1);
    cairn_checkpoint_free(&cp);
}

/* Loads a checkpoint (NULL id = the latest) into memory; asserts success. */
void *load(cairn_client *c, const char *run_id, const char *checkpoint_id,
                  cairn_checkpoint *meta, size_t *len)
{
    cairn_load_request req = {.run_id = run_id, .checkpoint_id = checkpoint_id};
    void *data;
    cairn_error err;
    cairn_status rc = cairn_load_checkpoint(c, &req, meta, &data, len, &err);
    if (rc != CAIRN_OK)
        fprintf(stderr, "load_checkpoint: %s\n", err.message);
    assert_int_equal(rc, CAIRN_OK);
    assert_non_null(data);
    return data;
}

size_t list_count(cairn_client *c, const char *run_id)
{
    cairn_checkpoint_list list;
    cairn_error err;
    assert_int_equal(cairn_list_checkpoints(c, run_id, &list, &err), CAIRN_OK);
    size_t n = list.count;
    cairn_checkpoint_list_free(&list);
    return n;
}

cairn_status cleanup(cairn_client *c, const char *key, const char *run_id, uint32_t keep_last_n,
                     cairn_cleanup_result *out, cairn_error *err)
{
    cairn_cleanup_request req = {.idempotency_key = key, .run_id = run_id,
                                 .keep_last_n = keep_last_n};
    return cairn_cleanup_checkpoints(c, &req, out, err);
}

/* Deterministic pseudo-random bytes (xorshift64*). */
void fill_random(uint8_t *buf, size_t len, uint64_t seed)
{
    uint64_t x = seed ? seed : 1;
    for (size_t i = 0; i < len; i++) {
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        buf[i] = (uint8_t)((x * 0x2545F4914F6CDD1DULL) >> 56);
    }
}

void assert_digits(const char *s, size_t from, size_t to)
{
    for (size_t i = from; i < to; i++)
        assert_true(isdigit((unsigned char)s[i]));
}

/* checkpoint_id: YYYYMMDD_HHMMSS_ffffff. */
void assert_checkpoint_id_format(const char *id)
{
    assert_int_equal(strlen(id), 22);
    assert_digits(id, 0, 8);
    assert_int_equal(id[8], '_');
    assert_digits(id, 9, 15);
    assert_int_equal(id[15], '_');
    assert_digits(id, 16, 22);
}

/* created_at: YYYY-MM-DDTHH:MM:SS.ffffffZ, a plausible UTC time of now. */
void assert_timestamp_format(const char *ts)
{
    assert_int_equal(strlen(ts), 27);
    assert_digits(ts, 0, 4);
    assert_int_equal(ts[4], '-');
    assert_digits(ts, 5, 7);
    assert_int_equal(ts[7], '-');
    assert_digits(ts, 8, 10);
    assert_int_equal(ts[10], 'T');
    assert_digits(ts, 11, 13);
    assert_int_equal(ts[13], ':');
    assert_digits(ts, 14, 16);
    assert_int_equal(ts[16], ':');
    assert_digits(ts, 17, 19);
    assert_int_equal(ts[19], '.');
    assert_digits(ts, 20, 26);
    assert_int_equal(ts[26], 'Z');
    struct tm tm = {0};
    assert_non_null(strptime(ts, "%Y-%m-%dT%H:%M:%S", &tm));
    time_t t = timegm(&tm);
    time_t now = time(NULL);
    assert_true(t > now - 3600 && t < now + 3600); /* the server's clock is this machine's */
}

/* The id and created_at of one checkpoint name the same microsecond. */
void assert_id_matches_time(const char *id, const char *ts)
{
    char want[23];
    snprintf(want, sizeof want, "%.4s%.2s%.2s_%.2s%.2s%.2s_%.6s", ts, ts + 5, ts + 8, ts + 11,
             ts + 14, ts + 17, ts + 20);
    assert_string_equal(id, want);
}

/* A query's one integer on s's PostgreSQL database; fails the test when
 * it cannot be read. */
static long long pg_int(const ct_server *s, const char *sql)
{
    long long v = ct_pg_query_int(s, sql);
    assert_true(v >= 0);
    return v;
}

static void blob_path(const ct_server *s, const char *sha, char *out, size_t cap)
{
    snprintf(out, cap, "%s/blobs/%.2s/%s", s->data_dir, sha, sha);
}

long long blob_stored_size(const ct_server *s, const char *sha)
{
    if (ct_store_is_sqlite()) {
        char blob[700];
        blob_path(s, sha, blob, sizeof blob);
        struct stat st;
        return stat(blob, &st) == 0 ? (long long)st.st_size : -1;
    }
    /* 0 when absent, else 1 + the size: pg_int's answers are >= 0. */
    char sql[400];
    snprintf(sql, sizeof sql,
             "SELECT CASE WHEN EXISTS (SELECT 1 FROM blobs WHERE sha256 = '%s') "
             "THEN 1 + (SELECT coalesce(sum(length(data)), 0) FROM blob_chunks WHERE owner = '%s') "
             "ELSE 0 END",
             sha, sha);
    return pg_int(s, sql) - 1;
}

void damage_blob(const ct_server *s, const char *sha, long long at, bool truncate_there)
{
    if (ct_store_is_sqlite()) {
        char blob[700];
        blob_path(s, sha, blob, sizeof blob);
        if (truncate_there) {
            assert_int_equal(truncate(blob, at), 0);
            return;
        }
        int fd = open(blob, O_RDWR);
        assert_true(fd >= 0);
        uint8_t byte;
        assert_int_equal(pread(fd, &byte, 1, at), 1);
        byte ^= 0x40;
        assert_int_equal(pwrite(fd, &byte, 1, at), 1);
        close(fd);
        return;
    }
    /* Chunks of 256 KiB (server/store/pg/README.md); the tests damage the
     * first. */
    assert_true(at < 256 * 1024);
    char sql[600];
    if (truncate_there)
        snprintf(sql, sizeof sql,
                 "WITH d AS (DELETE FROM blob_chunks WHERE owner = '%s' AND n > 0), "
                 "u AS (UPDATE blob_chunks SET data = substr(data, 1, %lld) "
                 "WHERE owner = '%s' AND n = 0 RETURNING 1) SELECT count(*) FROM u",
                 sha, at, sha);
    else
        snprintf(sql, sizeof sql,
                 "WITH u AS (UPDATE blob_chunks SET data = set_byte(data, %lld, "
                 "get_byte(data, %lld) # 64) WHERE owner = '%s' AND n = 0 RETURNING 1) "
                 "SELECT count(*) FROM u",
                 at, at, sha);
    assert_int_equal(pg_int(s, sql), 1);
}

int staging_entries(const ct_server *s)
{
    int n = ct_count_staged(s);
    assert_true(n >= 0);
    return n;
}

void write_file(const char *path, const void *data, size_t len)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, data, len), (ssize_t)len);
    close(fd);
}

