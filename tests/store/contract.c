/* The contract suite's fixture, helpers and main(). */
#include "contract.h"
#include "dirs.h"
#include "pg.h"
#include "store_support.h"

#include <fcntl.h>
#include <ftw.h>
#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* Read snapshots a test may hold at once. */
enum { READERS = 4 };
/* The exit status ctest counts as skipped (SKIP_RETURN_CODE). */
enum { SKIPPED = 77 };

static const char *backend_name(void)
{
    const char *name = getenv("CAIRN_TEST_STORE");
    return name && *name ? name : "sqlite";
}

void ok(srv_code rc, const srv_error *err)
{
    if (rc != SRV_OK)
        fail_msg("expected OK, got %s: %s", srv_code_name(rc), err->msg);
}

void fails_with(srv_code rc, const srv_error *err, srv_code want)
{
    if (rc != want)
        fail_msg("expected %s, got %s: %s", srv_code_name(want), srv_code_name(rc),
                 rc ? err->msg : "");
}

void open_store(fx *f)
{
    srv_error err;
    const srv_store_config cfg = {.data_dir = f->dir, .readers = READERS, .pg_dsn = f->dsn};
    ok(srv_store_open(f->backend, &cfg, &f->st, &err), &err);
}

srv_store *open_replica(fx *f)
{
    if (strcmp(f->backend, "sqlite") == 0)
        skip(); /* one process owns an embedded store */
    srv_error err;
    srv_store *st = NULL;
    const srv_store_config cfg = {.data_dir = f->dir, .readers = READERS, .pg_dsn = f->dsn};
    ok(srv_store_open(f->backend, &cfg, &st, &err), &err);
    return st;
}

/* postgres: the cluster's superuser DSN, for a database per test. */
static char pg_admin[1200];
static int pg_dbs;

void close_store(fx *f)
{
    srv_store_close(f->st);
    f->st = NULL;
}

static int files;

static int count_file(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)path;
    (void)sb;
    (void)ftw;
    if (flag == FTW_F)
        files++;
    return 0;
}

int count_files(const fx *f)
{
    files = 0;
    assert_int_equal(nftw(f->dir, count_file, 16, FTW_PHYS), 0);
    return files;
}

/* postgres: sql (one row, one integer column; a data-changing CTE may
 * count its rows) on the test's database. */
static long long pg_int(const fx *f, const char *sql)
{
    PGconn *c = PQconnectdb(f->dsn);
    if (PQstatus(c) != CONNECTION_OK) {
        PQfinish(c);
        fail_msg("cannot connect to %s", f->db);
    }
    PGresult *r = PQexec(c, sql);
    bool good = PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1;
    long long v = good ? strtoll(PQgetvalue(r, 0, 0), NULL, 10) : -1;
    if (!good)
        print_error("%s: %s", sql, PQresultErrorMessage(r));
    PQclear(r);
    PQfinish(c);
    assert_true(good);
    return v;
}

int count_stored(const fx *f)
{
    if (strcmp(f->backend, "postgres") == 0)
        return (int)pg_int(f, "SELECT (SELECT count(*) FROM stages) + "
                              "(SELECT count(*) FROM blob_chunks) + (SELECT count(*) FROM blobs)");
    return count_files(f);
}

void damage_content(fx *f, const char *sha, size_t at, bool cut)
{
    if (strcmp(f->backend, "postgres") == 0) {
        /* Chunk rows of 256 KiB (server/store/pg/README.md). */
        const long long chunk = 256 * 1024, n = (long long)at / chunk, off = (long long)at % chunk;
        char sql[700];
        if (cut)
            snprintf(sql, sizeof sql,
                     "WITH d AS (DELETE FROM blob_chunks WHERE owner = '%s' AND n > %lld), "
                     "u AS (UPDATE blob_chunks SET data = substr(data, 1, %lld) "
                     "WHERE owner = '%s' AND n = %lld RETURNING 1) SELECT count(*) FROM u",
                     sha, n, off, sha, n);
        else
            snprintf(sql, sizeof sql,
                     "WITH u AS (UPDATE blob_chunks SET data = set_byte(data, %lld, "
                     "get_byte(data, %lld) # 64) WHERE owner = '%s' AND n = %lld RETURNING 1) "
                     "SELECT count(*) FROM u",
                     off, off, sha, n);
        assert_int_equal(pg_int(f, sql), 1);
        return;
    }
    char path[700];
    snprintf(path, sizeof path, "%s/blobs/%.2s/%s", f->dir, sha, sha);
    if (cut) {
        assert_int_equal(truncate(path, (off_t)at), 0);
        return;
    }
    int fd = open(path, O_RDWR);
    assert_true(fd >= 0);
    uint8_t byte;
    assert_int_equal(pread(fd, &byte, 1, (off_t)at), 1);
    byte ^= 0x40;
    assert_int_equal(pwrite(fd, &byte, 1, (off_t)at), 1);
    close(fd);
}

static int setup_dir(void **state)
{
    fx *f = calloc(1, sizeof *f);
    if (!f)
        return -1;
    f->backend = backend_name();
    f->a = srv_arena_create();
    if (ct_temp_dir(f->dir, sizeof f->dir, "cairn-store-contract") < 0 || !f->a) {
        srv_arena_destroy(f->a);
        free(f);
        return -1;
    }
    if (strcmp(f->backend, "postgres") == 0) {
        snprintf(f->db, sizeof f->db, "cairn_contract_%d", ++pg_dbs);
        if (ct_pg_create_db(pg_admin, f->db, f->dsn, sizeof f->dsn) < 0) {
            srv_arena_destroy(f->a);
            ct_rmrf(f->dir);
            free(f);
            return -1;
        }
    }
    *state = f;
    return 0;
}

static int setup_open(void **state)
{
    if (setup_dir(state))
        return -1;
    open_store(*state);
    return 0;
}

static int teardown(void **state)
{
    fx *f = *state;
    close_store(f);
    srv_arena_destroy(f->a);
    int rc = ct_rmrf(f->dir);
    if (f->db[0] && ct_pg_drop_db(pg_admin, f->db) < 0)
        rc = -1;
    free(f);
    return rc;
}

/* ---- transactions ---- */

srv_txn *wbegin(fx *f)
{
    srv_error err;
    srv_txn *t = NULL;
    ok(srv_store_begin(f->st, &t, &err), &err);
    return t;
}

void wcommit(srv_txn *t)
{
    srv_error err;
    ok(srv_store_commit(t, &err), &err);
}

srv_txn *rbegin(fx *f)
{
    srv_error err;
    srv_txn *t = NULL;
    ok(srv_store_read_begin(f->st, &t, &err), &err);
    return t;
}

/* ---- runs and events ---- */

int64_t insert_run(fx *f, const char *run_id, size_t n_workers)
{
    char **workers = srv_arena_alloc(f->a, (n_workers + 1) * sizeof *workers);
    for (size_t i = 0; i < n_workers; i++) {
        char id[32];
        snprintf(id, sizeof id, "w%zu", i);
        workers[i] = srv_arena_strdup(f->a, id);
    }
    static const srv_label labels[] = {{"env", "prod"}, {"app", "etl"}, {"zone", ""}};
    srv_error err;
    int64_t ref = 0;
    srv_txn *t = wbegin(f);
    ok(srv_store_run_insert(t, run_id, workers, n_workers, labels, 3, NOW_US, &ref, &err), &err);
    wcommit(t);
    return ref;
}

srv_run_head head_in(fx *f, srv_txn *t, const char *run_id)
{
    srv_error err;
    srv_run_head h;
    bool found = false;
    ok(srv_store_run_find(t, f->a, run_id, &h, &found, &err), &err);
    if (!found)
        fail_msg("run %s not found", run_id);
    return h;
}

srv_run_head head_of(fx *f, const char *run_id)
{
    srv_txn *t = rbegin(f);
    srv_run_head h = head_in(f, t, run_id);
    srv_store_read_end(t);
    return h;
}

Cairn__V1__Event **make_events(fx *f, size_t n, size_t len, uint8_t tag)
{
    return ct_make_events(f->a, n, len, tag);
}

void append(fx *f, const char *run_id, Cairn__V1__Event **events, size_t n)
{
    srv_error err;
    srv_txn *t = wbegin(f);
    srv_run_head h = head_in(f, t, run_id);
    ok(srv_store_events_insert(t, &h, events, n, NOW_US, &err), &err);
    wcommit(t);
}

Cairn__V1__Event **read_events(fx *f, const char *run_id, uint64_t from_seq,
                               uint32_t max_events, size_t max_bytes, size_t *n)
{
    srv_error err;
    Cairn__V1__Event **v = NULL;
    srv_txn *t = rbegin(f);
    srv_run_head h = head_in(f, t, run_id);
    ok(srv_store_events_read(t, f->a, &h, from_seq, max_events, max_bytes, &v, n, &err), &err);
    srv_store_read_end(t);
    return v;
}

/* ---- snapshot bytes ---- */

srv_blob_stage *stage_bytes(fx *f, const uint8_t *data, size_t len, char sha[65])
{
    ct_sha256_hex(data, len, sha);
    srv_error err;
    srv_blob_stage *b = NULL;
    ok(srv_store_stage_begin(f->st, &b, &err), &err);
    /* In pieces, as a stream arrives. */
    for (size_t off = 0; off < len;) {
        size_t piece = len - off < 4093 ? len - off : 4093;
        ok(srv_store_stage_write(b, data + off, piece, &err), &err);
        off += piece;
    }
    ok(srv_store_stage_finish(b, sha, &err), &err);
    return b;
}

srv_blob_stage *link_bytes(fx *f, srv_txn *t, const uint8_t *data, size_t len, char sha[65])
{
    srv_blob_stage *b = stage_bytes(f, data, len, sha);
    srv_error err;
    ok(srv_store_blob_link(t, b, len, &err), &err);
    return b;
}

srv_code read_blob(fx *f, const char *sha, size_t chunk, uint8_t **out, size_t *len,
                   srv_error *err)
{
    srv_blob_reader *r = NULL;
    srv_code rc = srv_store_blob_open(f->st, sha, &r, err);
    if (rc)
        return rc;
    size_t n = 0, cap = 0;
    uint8_t *v = NULL;
    for (;;) {
        while (cap - n < chunk) {
            size_t ncap = cap ? cap * 2 : chunk * 4;
            uint8_t *nv = srv_arena_alloc(f->a, ncap);
            assert_non_null(nv);
            if (n)
                memcpy(nv, v, n);
            v = nv;
            cap = ncap;
        }
        size_t got = 0;
        rc = srv_store_blob_read(r, v + n, chunk, &got, err);
        if (rc || got == 0)
            break;
        assert_true(got <= chunk);
        n += got;
    }
    srv_store_blob_close(r);
    *out = v;
    *len = n;
    return rc;
}

/* ---- dedup ---- */

srv_dedup_record record_of(const char *response)
{
    srv_dedup_record rec;
    for (int i = 0; i < 32; i++)
        rec.fingerprint[i] = (uint8_t)(i * 7 + 1);
    rec.response = (const uint8_t *)response;
    rec.response_len = strlen(response);
    return rec;
}

bool dedup_found(fx *f, const srv_dedup_key *k, srv_dedup_record *out)
{
    srv_error err;
    bool found = false;
    srv_txn *t = rbegin(f);
    ok(srv_store_dedup_get(t, f->a, k, out, &found, &err), &err);
    srv_store_read_end(t);
    return found;
}

/* ---- main ---- */

#define FIXTURE_OPEN setup_open
#define FIXTURE_DIR setup_dir

int main(void)
{
    const struct CMUnitTest tests[] = {
#define XX(name, fixture) cmocka_unit_test_setup_teardown(name, FIXTURE_##fixture, teardown),
        CONTRACT_TESTS(XX)
#undef XX
    };
    char group[64];
    snprintf(group, sizeof group, "store_contract_%s", backend_name());
    ct_pg pg = {0};
    if (strcmp(backend_name(), "postgres") == 0) {
        const char *dsn = getenv("CAIRN_TEST_PG_DSN");
        if (dsn && *dsn) {
            snprintf(pg_admin, sizeof pg_admin, "%s", dsn);
        } else {
            int rc = ct_pg_start(&pg);
            if (rc != 0) {
                fprintf(stderr, "%s: %s: %s\n", group, rc > 0 ? "skipped" : "failed", pg.why);
                return rc > 0 ? SKIPPED : 1;
            }
            snprintf(pg_admin, sizeof pg_admin, "%s", pg.dsn);
        }
    }
    int failed = cmocka_run_group_tests_name(group, tests, NULL, NULL);
    ct_pg_stop(&pg);
    return failed;
}
