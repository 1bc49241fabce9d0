/* Checkpoints end to end, part two: load, content byte for byte, ids,
 * whole uploads only, end-to-end SHA-256, retention that spares a
 * checkpoint being loaded, content stored once, idempotency. */
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

/* ---- load ---- */

/* checkpoint_load_success: loading returns the metadata it was created with and the bytes. */
static void checkpoint_load_success(void **state)
{
    fixture *f = *state;
    create_run(f->client, "cp-load");
    append_n(f->client, "cp-load", 4);
    const char *done[] = {"w2"};
    cairn_checkpoint_request req = {.run_id = "cp-load", .run_state = "halfway",
                                    .completed_workers = done, .completed_workers_count = 1,
                                    .events_count = 4};
    const char snap[] = "snapshot bytes \x01\x02\x03";
    cairn_checkpoint cp;
    cairn_error err;
    assert_int_equal(cairn_create_checkpoint(f->client, &req, snap, sizeof snap, &cp, &err),
                     CAIRN_OK);
    cairn_checkpoint meta;
    size_t len;
    char *got = load(f->client, "cp-load", cp.checkpoint_id, &meta, &len);
    assert_int_equal(len, sizeof snap);
    assert_memory_equal(got, snap, sizeof snap);
    assert_string_equal(meta.checkpoint_id, cp.checkpoint_id);
    assert_string_equal(meta.run_id, "cp-load");
    assert_string_equal(meta.created_at, cp.created_at);
    assert_string_equal(meta.run_state, "halfway");
    assert_int_equal(meta.events_count, 4);
    assert_int_equal(meta.snapshot_size, sizeof snap);
    assert_string_equal(meta.snapshot_sha256, cp.snapshot_sha256);
    assert_int_equal(meta.completed_workers_count, 1);
    assert_string_equal(meta.completed_workers[0], "w2");
    cairn_buffer_free(got);
    cairn_checkpoint_free(&meta);
    cairn_checkpoint_free(&cp);
}

/* checkpoint_load_not_found: an unknown checkpoint or run is NOT_FOUND and returns no buffer. */
static void checkpoint_load_not_found(void **state)
{
    fixture *f = *state;
    create_run(f->client, "cp-load-nf");
    char id[CAIRN_ID_MAX + 1];
    checkpoint_id_of(f->client, "cp-load-nf", "x", id);
    cairn_load_request req = {.run_id = "cp-load-nf", .checkpoint_id = "20000101_000000_000000"};
    cairn_checkpoint meta;
    void *data = (void *)1;
    size_t len = 99;
    cairn_error err;
    assert_int_equal(cairn_load_checkpoint(f->client, &req, &meta, &data, &len, &err),
                     CAIRN_NOT_FOUND);
    assert_non_null(strstr(err.message, "20000101_000000_000000"));
    assert_null(data);
    assert_int_equal(len, 0);
    assert_int_equal(err.attempts, 1);

    req.run_id = "cp-no-such-run";
    req.checkpoint_id = id;
    assert_int_equal(cairn_load_checkpoint(f->client, &req, &meta, &data, &len, &err),
                     CAIRN_NOT_FOUND);
    assert_null(data);
    /* Another run's checkpoint id is not this run's. */
    create_run(f->client, "cp-load-other");
    req.run_id = "cp-load-other";
    assert_int_equal(cairn_load_checkpoint(f->client, &req, &meta, &data, &len, &err),
                     CAIRN_NOT_FOUND);
    /* The latest of a run without checkpoints is NOT_FOUND too. */
    create_run(f->client, "cp-load-none");
    req.run_id = "cp-load-none";
    req.checkpoint_id = NULL;
    assert_int_equal(cairn_load_checkpoint(f->client, &req, &meta, &data, &len, &err),
                     CAIRN_NOT_FOUND);
    /* A malformed id is INVALID_ARGUMENT, naming the field. */
    req.checkpoint_id = "../etc/passwd";
    assert_int_equal(cairn_load_checkpoint(f->client, &req, &meta, &data, &len, &err),
                     CAIRN_INVALID_ARGUMENT);
    assert_non_null(strstr(err.message, "checkpoint_id"));
}

/* checkpoint_load_to_fd: the snapshot is written into a descriptor from offset 0, truncating what
 * was there. */
static void checkpoint_load_to_fd(void **state)
{
    fixture *f = *state;
    create_run(f->client, "cp-load-fd");
    size_t len = MIB + 777;
    uint8_t *data = malloc(len);
    fill_random(data, len, 23);
    cairn_checkpoint cp;
    checkpoint(f->client, "cp-load-fd", "s", 0, data, len, &cp);

    char path[400];
    snprintf(path, sizeof path, "%s/load-fd.bin", f->server.dir);
    size_t junk_len = 2 * MIB; /* longer than the snapshot: must be cut */
    uint8_t *junk = malloc(junk_len);
    memset(junk, 'j', junk_len);
    write_file(path, junk, junk_len);
    free(junk);
    int fd = open(path, O_RDWR);
    assert_true(fd >= 0);
    assert_int_equal(lseek(fd, 5000, SEEK_SET), 5000);
    cairn_load_request req = {.run_id = "cp-load-fd", .checkpoint_id = cp.checkpoint_id};
    cairn_checkpoint meta;
    cairn_error err;
    assert_int_equal(cairn_load_checkpoint_fd(f->client, &req, fd, &meta, &err), CAIRN_OK);
    close(fd);
    assert_string_equal(meta.checkpoint_id, cp.checkpoint_id);
    size_t got_len;
    char *got = ct_read_file(path, &got_len);
    assert_non_null(got);
    assert_int_equal(got_len, len);
    assert_memory_equal(got, data, len);
    free(got);
    cairn_checkpoint_free(&meta);
    cairn_checkpoint_free(&cp);
    free(data);
}

/* checkpoint_load_to_path_is_atomic: parent dirs are created, the file replaced whole, no temp file
 * left. */
static void checkpoint_load_to_path_is_atomic(void **state)
{
    fixture *f = *state;
    create_run(f->client, "cp-load-path");
    const char text[] = "restored state\n";
    cairn_checkpoint cp;
    checkpoint(f->client, "cp-load-path", "s", 0, text, sizeof text - 1, &cp);

    char dir[400], path[500];
    snprintf(dir, sizeof dir, "%s/restore/a/b", f->server.dir);
    snprintf(path, sizeof path, "%s/state.json", dir);
    cairn_load_request req = {.run_id = "cp-load-path", .checkpoint_id = cp.checkpoint_id};
    cairn_checkpoint meta;
    cairn_error err;
    assert_int_equal(cairn_load_checkpoint_path(f->client, &req, path, &meta, &err), CAIRN_OK);
    assert_string_equal(meta.checkpoint_id, cp.checkpoint_id);
    cairn_checkpoint_free(&meta);
    size_t len;
    char *got = ct_read_file(path, &len);
    assert_non_null(got);
    assert_int_equal(len, sizeof text - 1);
    assert_memory_equal(got, text, len);
    free(got);
    assert_int_equal(ct_count_entries(dir), 1);

    /* An existing file is replaced (a new inode: renamed over, not rewritten in place). */
    struct stat before, after;
    write_file(path, "old content that is longer than the snapshot", 45);
    assert_int_equal(stat(path, &before), 0);
    assert_int_equal(cairn_load_checkpoint_path(f->client, &req, path, &meta, &err), CAIRN_OK);
    cairn_checkpoint_free(&meta);
    assert_int_equal(stat(path, &after), 0);
    assert_int_not_equal(before.st_ino, after.st_ino);
    got = ct_read_file(path, &len);
    assert_non_null(got);
    assert_int_equal(len, sizeof text - 1);
    assert_memory_equal(got, text, len);
    free(got);
    assert_int_equal(ct_count_entries(dir), 1);

    /* A failed load leaves the file as it was, and no temporary file. */
    req.checkpoint_id = "20000101_000000_000000";
    assert_int_equal(cairn_load_checkpoint_path(f->client, &req, path, &meta, &err),
                     CAIRN_NOT_FOUND);
    got = ct_read_file(path, &len);
    assert_non_null(got);
    assert_int_equal(len, sizeof text - 1);
    assert_memory_equal(got, text, len);
    free(got);
    assert_int_equal(ct_count_entries(dir), 1);
    cairn_checkpoint_free(&cp);
}

/* ---- content preserved ---- */

/* checkpoint_content_unicode: a UTF-8 snapshot with multibyte characters loads back byte for
 * byte. */
static void checkpoint_content_unicode(void **state)
{
    fixture *f = *state;
    create_run(f->client, "cp-unicode");
    const char text[] = "{\"name\": \"caf\xc3\xa9 \xe2\x98\x95\", "
                        "\"city\": \"\xe6\x9d\xb1\xe4\xba\xac\", "
                        "\"emoji\": \"\xf0\x9f\x9a\x80\xf0\x9f\x8c\x8d\", "
                        "\"math\": \"\xe2\x88\x91\xe2\x88\x9e\"}";
    cairn_checkpoint cp;
    checkpoint(f->client, "cp-unicode", "\xc3\xa9tat: \xe2\x9c\x93", 0, text, sizeof text - 1, &cp);
    cairn_checkpoint meta;
    size_t len;
    char *got = load(f->client, "cp-unicode", cp.checkpoint_id, &meta, &len);
    assert_int_equal(len, sizeof text - 1);
    assert_memory_equal(got, text, len);
    assert_string_equal(meta.run_state, "\xc3\xa9tat: \xe2\x9c\x93");
    cairn_buffer_free(got);
    cairn_checkpoint_free(&meta);
    cairn_checkpoint_free(&cp);
}

/* checkpoint_content_large: a 6 MiB pseudo-random snapshot (several chunks) loads back intact. */
static void checkpoint_content_large(void **state)
{
    fixture *f = *state;
    create_run(f->client, "cp-large");
    size_t len = 6 * MIB + 3;
    uint8_t *data = malloc(len);
    fill_random(data, len, 42);
    cairn_checkpoint cp;
    checkpoint(f->client, "cp-large", "big", 0, data, len, &cp);
    assert_int_equal(cp.snapshot_size, len);
    cairn_checkpoint meta;
    size_t got_len;
    uint8_t *got = load(f->client, "cp-large", cp.checkpoint_id, &meta, &got_len);
    assert_int_equal(got_len, len);
    assert_memory_equal(got, data, len);
    char sha[65];
    cairn_content_hash(got, got_len, sha);
    assert_string_equal(sha, cp.snapshot_sha256);
    cairn_buffer_free(got);
    cairn_checkpoint_free(&meta);
    cairn_checkpoint_free(&cp);
    free(data);
}

/* checkpoint_content_empty: an empty snapshot is a checkpoint of size 0 that loads back empty. */
static void checkpoint_content_empty(void **state)
{
    fixture *f = *state;
    create_run(f->client, "cp-empty");
    cairn_checkpoint cp;
    checkpoint(f->client, "cp-empty", "nothing yet", 0, NULL, 0, &cp);
    assert_int_equal(cp.snapshot_size, 0);
    char sha[65];
    cairn_content_hash("", 0, sha);
    assert_string_equal(cp.snapshot_sha256, sha);
    cairn_checkpoint meta;
    size_t len = 99;
    void *got = load(f->client, "cp-empty", cp.checkpoint_id, &meta, &len);
    assert_int_equal(len, 0);
    assert_int_equal(meta.snapshot_size, 0);
    cairn_buffer_free(got);
    cairn_checkpoint_free(&meta);
    /* And into a path: an empty file. */
    char path[400];
    snprintf(path, sizeof path, "%s/empty-restore.bin", f->server.dir);
    cairn_load_request req = {.run_id = "cp-empty", .checkpoint_id = cp.checkpoint_id};
    cairn_error err;
    assert_int_equal(cairn_load_checkpoint_path(f->client, &req, path, &meta, &err), CAIRN_OK);
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_size, 0);
    cairn_checkpoint_free(&meta);
    cairn_checkpoint_free(&cp);
}

/* ---- ids ---- */

/* checkpoint_timestamp_format: ids are YYYYMMDD_HHMMSS_ffffff, times ISO 8601 UTC with
 * microseconds, the same instant. */
static void checkpoint_timestamp_format(void **state)
{
    fixture *f = *state;
    create_run(f->client, "cp-times");
    for (int i = 0; i < 3; i++) {
        cairn_checkpoint cp;
        checkpoint(f->client, "cp-times", "s", 0, "t", 1, &cp);
        assert_checkpoint_id_format(cp.checkpoint_id);
        assert_timestamp_format(cp.created_at);
        assert_id_matches_time(cp.checkpoint_id, cp.created_at);
        cairn_checkpoint_free(&cp);
    }
    cairn_checkpoint_list list;
    cairn_error err;
    assert_int_equal(cairn_list_checkpoints(f->client, "cp-times", &list, &err), CAIRN_OK);
    for (size_t i = 0; i < list.count; i++)
        assert_id_matches_time(list.checkpoints[i].checkpoint_id, list.checkpoints[i].created_at);
    cairn_checkpoint_list_free(&list);
}

/* checkpoint_microsecond_uniqueness: 50 checkpoints in a tight loop get 50 distinct, increasing
 * ids. */
static void checkpoint_microsecond_uniqueness(void **state)
{
    fixture *f = *state;
    enum { N = 50 };
    create_run(f->client, "cp-rapid");
    static char ids[N][CAIRN_ID_MAX + 1];
    for (int i = 0; i < N; i++) {
        checkpoint_id_of(f->client, "cp-rapid", "same bytes each time", ids[i]);
        assert_checkpoint_id_format(ids[i]);
        if (i > 0)
            assert_true(strcmp(ids[i - 1], ids[i]) < 0);
    }
    cairn_checkpoint_list list;
    cairn_error err;
    assert_int_equal(cairn_list_checkpoints(f->client, "cp-rapid", &list, &err), CAIRN_OK);
    assert_int_equal(list.count, N);
    for (int i = 0; i < N; i++)
        assert_string_equal(list.checkpoints[i].checkpoint_id, ids[i]);
    cairn_checkpoint_list_free(&list);
}

/* ---- whole uploads only ---- */

/* checkpoint_over_max_snapshot_bytes_leaves_nothing: a snapshot over --max-snapshot-bytes is
 * refused, nothing stored or staged. */
static void checkpoint_over_max_snapshot_bytes_leaves_nothing(void **state)
{
    own *o = *state;
    cairn_client *c = o->client;
    ct_server *s = &o->server;
    create_run(c, "cp-max");
    uint8_t data[5000];
    fill_random(data, sizeof data, 5);
    cairn_checkpoint cp;
    checkpoint(c, "cp-max", "ok", 0, data, 1000, &cp); /* the limit itself is allowed */
    char kept[CAIRN_ID_MAX + 1];
    memcpy(kept, cp.checkpoint_id, sizeof kept);
    cairn_checkpoint_free(&cp);

    cairn_checkpoint_request req = {.run_id = "cp-max", .run_state = "too big"};
    cairn_error err;
    assert_int_equal(cairn_create_checkpoint(c, &req, data, sizeof data, &cp, &err),
                     CAIRN_INVALID_ARGUMENT);
    assert_int_equal(strncmp(err.message, "snapshot_size", 13), 0);
    assert_non_null(strstr(err.message, "1000"));
    assert_int_equal(err.attempts, 1);

    cairn_checkpoint_list list;
    assert_int_equal(cairn_list_checkpoints(c, "cp-max", &list, &err), CAIRN_OK);
    assert_int_equal(list.count, 1);
    assert_string_equal(list.checkpoints[0].checkpoint_id, kept);
    cairn_checkpoint_list_free(&list);
    assert_int_equal(staging_entries(s), 0);
    assert_int_equal(ct_count_blob_files(s), 1);

}

typedef struct shrinker {
    int fd;
    off_t keep;
    int calls;
} shrinker;

/* At the first chunk, cut the file short: the next read finds it shrunk. */
static void shrink_file(void *user, uint64_t done, uint64_t total)
{
    (void)done;
    (void)total;
    shrinker *s = user;
    if (s->calls++ == 0)
        assert_int_equal(ftruncate(s->fd, s->keep), 0);
}

/* checkpoint_cut_upload_leaves_no_checkpoint: a stream cut after its first chunk commits nothing
 * and leaves no staged bytes. */
static void checkpoint_cut_upload_leaves_no_checkpoint(void **state)
{
    own *o = *state;
    cairn_client *c = o->client;
    ct_server *s = &o->server;
    create_run(c, "cp-cut");
    cairn_checkpoint cp;
    checkpoint(c, "cp-cut", "before", 0, "before", 6, &cp);
    char kept[CAIRN_ID_MAX + 1];
    memcpy(kept, cp.checkpoint_id, sizeof kept);
    cairn_checkpoint_free(&cp);

    /* A 3 MiB snapshot file that shrinks to 1 MiB once the first chunk is
     * on its way: libcairn hashes all 3 MiB, announces 3 MiB, sends the
     * header and the first chunk, then cannot read on and cancels. */
    size_t len = 3 * MIB;
    uint8_t *data = malloc(len);
    fill_random(data, len, 99);
    char path[400];
    snprintf(path, sizeof path, "%s/shrinking.bin", s->dir);
    write_file(path, data, len);
    free(data);
    shrinker sh = {.fd = open(path, O_RDWR), .keep = MIB};
    assert_true(sh.fd >= 0);
    cairn_checkpoint_request req = {.run_id = "cp-cut", .run_state = "cut",
                                    .progress = shrink_file, .progress_user = &sh};
    cairn_error err;
    assert_int_equal(cairn_create_checkpoint_fd(c, &req, sh.fd, &cp, &err), CAIRN_IO);
    assert_non_null(strstr(err.message, "shrank"));
    assert_int_equal(err.attempts, 1);
    assert_int_equal(sh.calls, 1);
    close(sh.fd);

    cairn_checkpoint_list list;
    assert_int_equal(cairn_list_checkpoints(c, "cp-cut", &list, &err), CAIRN_OK);
    assert_int_equal(list.count, 1);
    assert_string_equal(list.checkpoints[0].checkpoint_id, kept);
    cairn_checkpoint_list_free(&list);
    cairn_checkpoint latest;
    assert_int_equal(cairn_get_latest_checkpoint(c, "cp-cut", &latest, &err), CAIRN_OK);
    assert_string_equal(latest.checkpoint_id, kept);
    cairn_checkpoint_free(&latest);
    cairn_client_destroy(c);
    o->client = NULL;

    /* A clean stop lets the server finish the cancelled call: its staged
     * bytes are gone, not left for the next start's sweep. */
    assert_int_equal(ct_server_stop(s), 0);
    assert_int_equal(staging_entries(s), 0);
    assert_int_equal(ct_count_blob_files(s), 1);
}

/* ---- checksum ---- */

/* checkpoint_checksum_mismatch_is_data_loss: a corrupted stored snapshot loads as DATA_LOSS;
 * nothing is returned or written. */
static void checkpoint_checksum_mismatch_is_data_loss(void **state)
{
    fixture *f = *state;
    create_run(f->client, "cp-corrupt");
    size_t len = 3000;
    uint8_t data[3000];
    fill_random(data, len, 3);
    cairn_checkpoint cp;
    checkpoint(f->client, "cp-corrupt", "s", 0, data, len, &cp);

    damage_blob(&f->server, cp.snapshot_sha256, 1234, false);

    cairn_load_request req = {.run_id = "cp-corrupt", .checkpoint_id = cp.checkpoint_id};
    cairn_checkpoint meta;
    void *got = (void *)1;
    size_t got_len = 99;
    cairn_error err;
    assert_int_equal(cairn_load_checkpoint(f->client, &req, &meta, &got, &got_len, &err),
                     CAIRN_DATA_LOSS);
    assert_null(got);
    assert_int_equal(got_len, 0);
    assert_string_equal(meta.checkpoint_id, ""); /* no metadata either */
    assert_int_equal(err.attempts, 1);           /* permanent */
    assert_non_null(strstr(err.message, cp.checkpoint_id));

    char dir[400], path[500];
    snprintf(dir, sizeof dir, "%s/corrupt-restore", f->server.dir);
    assert_int_equal(mkdir(dir, 0755), 0);
    snprintf(path, sizeof path, "%s/state.bin", dir);
    write_file(path, "previous good state", 19);
    assert_int_equal(cairn_load_checkpoint_path(f->client, &req, path, &meta, &err),
                     CAIRN_DATA_LOSS);
    size_t n;
    char *kept = ct_read_file(path, &n);
    assert_non_null(kept);
    assert_int_equal(n, 19);
    assert_memory_equal(kept, "previous good state", 19);
    free(kept);
    assert_int_equal(ct_count_entries(dir), 1);

    /* A truncated file is DATA_LOSS as well. */
    damage_blob(&f->server, cp.snapshot_sha256, 100, true);
    assert_int_equal(cairn_load_checkpoint(f->client, &req, &meta, &got, &got_len, &err),
                     CAIRN_DATA_LOSS);
    assert_null(got);

    /* Uploading the same bytes again stores a good copy: both load. */
    cairn_checkpoint again;
    checkpoint(f->client, "cp-corrupt", "again", 0, data, len, &again);
    assert_string_equal(again.snapshot_sha256, cp.snapshot_sha256);
    got = load(f->client, "cp-corrupt", cp.checkpoint_id, &meta, &got_len);
    assert_int_equal(got_len, len);
    assert_memory_equal(got, data, len);
    cairn_buffer_free(got);
    cairn_checkpoint_free(&meta);
    cairn_checkpoint_free(&again);
    cairn_checkpoint_free(&cp);
}

/* ---- retention ---- */

typedef struct gate {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int calls;
    bool blocked, released;
} gate;

/* The first progress report parks the download until released. */
static void park_download(void *user, uint64_t done, uint64_t total)
{
    (void)done;
    (void)total;
    gate *g = user;
    pthread_mutex_lock(&g->mu);
    if (g->calls++ == 0) {
        g->blocked = true;
        pthread_cond_broadcast(&g->cv);
        while (!g->released)
            pthread_cond_wait(&g->cv, &g->mu);
    }
    pthread_mutex_unlock(&g->mu);
}

typedef struct load_job {
    cairn_client *client;
    const char *run_id;
    const char *checkpoint_id;
    gate *gate;
    cairn_status rc;
    cairn_checkpoint meta;
    void *data;
    size_t len;
    cairn_error err;
} load_job;

static void *load_thread(void *p)
{
    load_job *j = p;
    cairn_load_request req = {.run_id = j->run_id, .checkpoint_id = j->checkpoint_id,
                              .progress = park_download, .progress_user = j->gate};
    j->rc = cairn_load_checkpoint(j->client, &req, &j->meta, &j->data, &j->len, &j->err);
    return NULL;
}

static bool contains(const char *const *v, size_t n, const char *s)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(v[i], s) == 0)
            return true;
    return false;
}

/* checkpoint_retention_spares_an_open_load: neither automatic retention nor cleanup deletes a
 * checkpoint being loaded. */
static void checkpoint_retention_spares_an_open_load(void **state)
{
    own *o = *state;
    cairn_client *c = o->client;
    ct_server *s = &o->server;
    create_run(c, "cp-pinned");

    /* 16 MiB: far more than gRPC buffers ahead of a reader that stopped
     * (about 4 MB), so the server's stream stays open while parked. */
    size_t len = 16 * MIB;
    uint8_t *data = malloc(len);
    fill_random(data, len, 1234);
    cairn_checkpoint a;
    checkpoint(c, "cp-pinned", "A", 0, data, len, &a);

    gate g = {.mu = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER};
    load_job job = {.client = c, .run_id = "cp-pinned", .checkpoint_id = a.checkpoint_id,
                    .gate = &g};
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, load_thread, &job), 0);
    pthread_mutex_lock(&g.mu);
    while (!g.blocked)
        pthread_cond_wait(&g.cv, &g.mu);
    pthread_mutex_unlock(&g.mu);

    /* The download has its metadata and is parked. Three more checkpoints
     * (retention 2 would drop A after the second), then cleanup to 1.
     * Results are checked after the download is released. */
    char ids[3][CAIRN_ID_MAX + 1] = {{0}};
    cairn_status made[3];
    for (int i = 0; i < 3; i++) {
        cairn_checkpoint_request req = {.run_id = "cp-pinned", .run_state = "later"};
        cairn_checkpoint cp;
        cairn_error err;
        char text[8];
        snprintf(text, sizeof text, "n%d", i);
        made[i] = cairn_create_checkpoint(c, &req, text, strlen(text), &cp, &err);
        memcpy(ids[i], cp.checkpoint_id, sizeof ids[i]);
        cairn_checkpoint_free(&cp);
    }
    cairn_checkpoint_list during;
    cairn_error list_err;
    cairn_status listed = cairn_list_checkpoints(c, "cp-pinned", &during, &list_err);
    cairn_cleanup_result cleaned;
    cairn_error clean_err;
    cairn_status cleanup_rc = cleanup(c, NULL, "cp-pinned", 1, &cleaned, &clean_err);

    pthread_mutex_lock(&g.mu);
    g.released = true;
    pthread_cond_broadcast(&g.cv);
    pthread_mutex_unlock(&g.mu);
    assert_int_equal(pthread_join(t, NULL), 0);

    for (int i = 0; i < 3; i++)
        assert_int_equal(made[i], CAIRN_OK);
    /* While loading: A survived retention (the oldest of the other two went). */
    assert_int_equal(listed, CAIRN_OK);
    assert_int_equal(during.count, 3);
    assert_string_equal(during.checkpoints[0].checkpoint_id, a.checkpoint_id);
    assert_string_equal(during.checkpoints[1].checkpoint_id, ids[1]);
    assert_string_equal(during.checkpoints[2].checkpoint_id, ids[2]);
    cairn_checkpoint_list_free(&during);
    /* ... and cleanup to 1 deleted the other old one, not A. */
    assert_int_equal(cleanup_rc, CAIRN_OK);
    assert_false(contains(cleaned.deleted_ids, cleaned.deleted_ids_count, a.checkpoint_id));
    assert_int_equal(cleaned.deleted_ids_count, 1);
    assert_string_equal(cleaned.deleted_ids[0], ids[1]);
    cairn_cleanup_result_free(&cleaned);

    /* The parked download finishes with the exact bytes. */
    if (job.rc != CAIRN_OK)
        fprintf(stderr, "parked load: %s\n", job.err.message);
    assert_int_equal(job.rc, CAIRN_OK);
    assert_int_equal(job.len, len);
    assert_memory_equal(job.data, data, len);
    assert_string_equal(job.meta.checkpoint_id, a.checkpoint_id);
    cairn_buffer_free(job.data);
    cairn_checkpoint_free(&job.meta);

    /* No longer loading: the next cleanup deletes A. */
    cairn_error err;
    assert_int_equal(cleanup(c, NULL, "cp-pinned", 1, &cleaned, &err), CAIRN_OK);
    assert_int_equal(cleaned.deleted_ids_count, 1);
    assert_string_equal(cleaned.deleted_ids[0], a.checkpoint_id);
    cairn_cleanup_result_free(&cleaned);
    cairn_checkpoint_list list;
    assert_int_equal(cairn_list_checkpoints(c, "cp-pinned", &list, &err), CAIRN_OK);
    assert_int_equal(list.count, 1);
    assert_string_equal(list.checkpoints[0].checkpoint_id, ids[2]);
    cairn_checkpoint_list_free(&list);
    assert_int_equal(ct_count_blob_files(s), 1); /* A's 16 MiB are gone from disk */

    cairn_checkpoint_free(&a);
    free(data);
}

/* checkpoint_retention_keeps_newest_n: --checkpoint-retention N keeps the newest N of each run
 * automatically. */
static void checkpoint_retention_keeps_newest_n(void **state)
{
    own *o = *state;
    cairn_client *c = o->client;
    ct_server *s = &o->server;
    create_run(c, "cp-ret-a");
    create_run(c, "cp-ret-b");
    char ids[4][CAIRN_ID_MAX + 1], other[CAIRN_ID_MAX + 1];
    checkpoint_id_of(c, "cp-ret-b", "b", other);
    for (int i = 0; i < 4; i++) {
        char text[8];
        snprintf(text, sizeof text, "a%d", i);
        checkpoint_id_of(c, "cp-ret-a", text, ids[i]);
    }
    cairn_checkpoint_list list;
    cairn_error err;
    assert_int_equal(cairn_list_checkpoints(c, "cp-ret-a", &list, &err), CAIRN_OK);
    assert_int_equal(list.count, 2);
    assert_string_equal(list.checkpoints[0].checkpoint_id, ids[2]);
    assert_string_equal(list.checkpoints[1].checkpoint_id, ids[3]);
    cairn_checkpoint_list_free(&list);
    assert_int_equal(list_count(c, "cp-ret-b"), 1); /* per run */
    assert_int_equal(ct_count_blob_files(s), 3);
}

/* ---- content stored once ---- */

/* checkpoint_identical_content_stored_once: two checkpoints of the same bytes share one file; it
 * goes with the last. */
static void checkpoint_identical_content_stored_once(void **state)
{
    fixture *f = *state;
    create_run(f->client, "cp-dedup");
    int before = ct_count_blob_files(&f->server);
    const char text[] = "identical snapshot content, stored once";
    size_t len = sizeof text - 1;
    cairn_checkpoint first, second, third;
    checkpoint(f->client, "cp-dedup", "first", 0, text, len, &first);
    checkpoint(f->client, "cp-dedup", "second", 0, text, len, &second);
    assert_string_not_equal(first.checkpoint_id, second.checkpoint_id);
    assert_string_equal(first.snapshot_sha256, second.snapshot_sha256);
    assert_int_equal(ct_count_blob_files(&f->server), before + 1);
    const char *sha = first.snapshot_sha256;
    assert_int_equal(blob_stored_size(&f->server, sha), len);

    checkpoint(f->client, "cp-dedup", "third", 0, "different", 9, &third);
    assert_int_equal(ct_count_blob_files(&f->server), before + 2);
    /* Another run with the same bytes shares the file too. */
    create_run(f->client, "cp-dedup-other");
    cairn_checkpoint other;
    checkpoint(f->client, "cp-dedup-other", "other", 0, text, len, &other);
    assert_int_equal(ct_count_blob_files(&f->server), before + 2);

    /* Deleting one keeps the other loadable. */
    cairn_cleanup_result res;
    cairn_error err;
    assert_int_equal(cleanup(f->client, NULL, "cp-dedup", 2, &res, &err), CAIRN_OK);
    assert_int_equal(res.deleted_ids_count, 1);
    assert_string_equal(res.deleted_ids[0], first.checkpoint_id);
    cairn_cleanup_result_free(&res);
    assert_int_equal(blob_stored_size(&f->server, sha), len);
    cairn_checkpoint meta;
    size_t got_len;
    char *got = load(f->client, "cp-dedup", second.checkpoint_id, &meta, &got_len);
    assert_int_equal(got_len, len);
    assert_memory_equal(got, text, len);
    assert_string_equal(meta.run_state, "second");
    cairn_buffer_free(got);
    cairn_checkpoint_free(&meta);

    /* Deleting this run's last reference keeps the file for the other run. */
    assert_int_equal(cleanup(f->client, NULL, "cp-dedup", 1, &res, &err), CAIRN_OK);
    assert_int_equal(res.deleted_ids_count, 1);
    assert_string_equal(res.deleted_ids[0], second.checkpoint_id);
    cairn_cleanup_result_free(&res);
    assert_int_equal(blob_stored_size(&f->server, sha), len);
    got = load(f->client, "cp-dedup-other", other.checkpoint_id, &meta, &got_len);
    assert_int_equal(got_len, len);
    assert_memory_equal(got, text, len);
    cairn_buffer_free(got);
    cairn_checkpoint_free(&meta);

    /* Deleting the last reference anywhere removes the file. */
    char newer[CAIRN_ID_MAX + 1];
    checkpoint_id_of(f->client, "cp-dedup-other", "newer in the other run", newer);
    assert_int_equal(cleanup(f->client, NULL, "cp-dedup-other", 1, &res, &err), CAIRN_OK);
    assert_int_equal(res.deleted_ids_count, 1);
    assert_string_equal(res.deleted_ids[0], other.checkpoint_id);
    cairn_cleanup_result_free(&res);
    assert_int_equal(blob_stored_size(&f->server, sha), -1);
    assert_int_equal(ct_count_blob_files(&f->server), before + 2); /* "different" and "newer..." */
    cairn_checkpoint_free(&other);
    cairn_checkpoint_free(&first);
    cairn_checkpoint_free(&second);
    cairn_checkpoint_free(&third);
}

/* ---- idempotency ---- */

/* checkpoint_create_same_key_replays: the same key and bytes again return the first checkpoint,
 * replayed. */
static void checkpoint_create_same_key_replays(void **state)
{
    fixture *f = *state;
    create_run(f->client, "cp-idem");
    cairn_checkpoint_request req = {.idempotency_key = "ckpt-key-1", .run_id = "cp-idem",
                                    .run_state = "s"};
    cairn_checkpoint a, b;
    cairn_error err;
    assert_int_equal(cairn_create_checkpoint(f->client, &req, "bytes", 5, &a, &err), CAIRN_OK);
    assert_false(a.replayed);
    assert_int_equal(cairn_create_checkpoint(f->client, &req, "bytes", 5, &b, &err), CAIRN_OK);
    assert_true(b.replayed);
    assert_string_equal(b.checkpoint_id, a.checkpoint_id);
    assert_string_equal(b.created_at, a.created_at);
    assert_string_equal(b.snapshot_sha256, a.snapshot_sha256);
    cairn_checkpoint_free(&b);
    assert_int_equal(list_count(f->client, "cp-idem"), 1);
    assert_int_equal(staging_entries(&f->server), 0); /* the replayed upload's bytes are dropped */

    /* The key names the header and the bytes: other bytes are a reuse. */
    assert_int_equal(cairn_create_checkpoint(f->client, &req, "BYTES", 5, &b, &err),
                     CAIRN_ALREADY_EXISTS);
    assert_non_null(strstr(err.message, "idempotency_key"));
    req.run_state = "other";
    assert_int_equal(cairn_create_checkpoint(f->client, &req, "bytes", 5, &b, &err),
                     CAIRN_ALREADY_EXISTS);
    assert_int_equal(list_count(f->client, "cp-idem"), 1);
    /* A new key is a new checkpoint. */
    req.idempotency_key = "ckpt-key-2";
    assert_int_equal(cairn_create_checkpoint(f->client, &req, "bytes", 5, &b, &err), CAIRN_OK);
    assert_false(b.replayed);
    assert_string_not_equal(b.checkpoint_id, a.checkpoint_id);
    cairn_checkpoint_free(&b);
    cairn_checkpoint_free(&a);
    assert_int_equal(list_count(f->client, "cp-idem"), 2);
}

/* checkpoint_cleanup_same_key_replays: a cleanup retried with its key returns the first answer and
 * deletes nothing more. */
static void checkpoint_cleanup_same_key_replays(void **state)
{
    fixture *f = *state;
    create_run(f->client, "cp-clean-idem");
    char ids[3][CAIRN_ID_MAX + 1];
    for (int i = 0; i < 3; i++)
        checkpoint_id_of(f->client, "cp-clean-idem", "x", ids[i]);
    cairn_cleanup_result first, again;
    cairn_error err;
    assert_int_equal(cleanup(f->client, "clean-1", "cp-clean-idem", 2, &first, &err), CAIRN_OK);
    assert_int_equal(first.deleted, 1);
    assert_string_equal(first.deleted_ids[0], ids[0]);
    assert_false(first.replayed);

    /* A new checkpoint arrives; the retry must not delete the next oldest. */
    char newer[CAIRN_ID_MAX + 1];
    checkpoint_id_of(f->client, "cp-clean-idem", "y", newer);
    assert_int_equal(cleanup(f->client, "clean-1", "cp-clean-idem", 2, &again, &err), CAIRN_OK);
    assert_true(again.replayed);
    assert_int_equal(again.deleted, 1);
    assert_string_equal(again.deleted_ids[0], ids[0]);
    cairn_cleanup_result_free(&again);
    cairn_cleanup_result_free(&first);
    assert_int_equal(list_count(f->client, "cp-clean-idem"), 3);

    /* The same key with another keep_last_n is a reuse. */
    assert_int_equal(cleanup(f->client, "clean-1", "cp-clean-idem", 1, &again, &err),
                     CAIRN_ALREADY_EXISTS);
    assert_int_equal(list_count(f->client, "cp-clean-idem"), 3);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(checkpoint_load_success),
        cmocka_unit_test(checkpoint_load_not_found),
        cmocka_unit_test(checkpoint_load_to_fd),
        cmocka_unit_test(checkpoint_load_to_path_is_atomic),
        cmocka_unit_test(checkpoint_content_unicode),
        cmocka_unit_test(checkpoint_content_large),
        cmocka_unit_test(checkpoint_content_empty),
        cmocka_unit_test(checkpoint_timestamp_format),
        cmocka_unit_test(checkpoint_microsecond_uniqueness),
        cmocka_unit_test_setup_teardown(checkpoint_over_max_snapshot_bytes_leaves_nothing, setup_own_max_snapshot_1000, teardown_own),
        cmocka_unit_test_setup_teardown(checkpoint_cut_upload_leaves_no_checkpoint, setup_own, teardown_own),
        cmocka_unit_test(checkpoint_checksum_mismatch_is_data_loss),
        cmocka_unit_test_setup_teardown(checkpoint_retention_spares_an_open_load, setup_own_retention_2, teardown_own),
        cmocka_unit_test_setup_teardown(checkpoint_retention_keeps_newest_n, setup_own_retention_2, teardown_own),
        cmocka_unit_test(checkpoint_identical_content_stored_once),
        cmocka_unit_test(checkpoint_create_same_key_replays),
        cmocka_unit_test(checkpoint_cleanup_same_key_replays),
    };
    return cmocka_run_group_tests_name("checkpoint_transfer", tests, setup, teardown);
}
