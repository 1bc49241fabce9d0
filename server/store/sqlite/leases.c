/* SQLite backend: worker leases, one row per (run, worker) holding its
 * latest lease; and the store's usage, whose one costly part is counting
 * the live ones. */
#include "store/sqlite/sqlite_int.h"

#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>

srv_code sq_lease_get(srv_txn *t, srv_arena *a, const srv_run_head *run, const char *worker_id,
                      srv_lease_rec *out, srv_error *err)
{
    conn *c = sq_conn(t);
    memset(out, 0, sizeof *out);
    sqlite3_stmt *s = sq_stmt(c, ST_LEASE_GET, err);
    if (!s)
        return err->code;
    sqlite3_bind_int64(s, 1, run->ref);
    sq_bind_text(s, 2, worker_id);
    int rc = sqlite3_step(s);
    if (rc == SQLITE_ROW) {
        out->found = true;
        out->lease_id = sq_column_text(a, s, 0);
        out->holder = sq_column_text(a, s, 1);
        out->fencing_token = (uint64_t)sqlite3_column_int64(s, 2);
        out->expires_us = sqlite3_column_int64(s, 3);
    }
    sqlite3_reset(s);
    if (rc != SQLITE_ROW && rc != SQLITE_DONE)
        return sq_db_fail(c->db, rc, "reading a lease", err);
    return SRV_OK;
}

srv_code sq_lease_put(srv_txn *t, const srv_run_head *run, const char *worker_id,
                      const srv_lease_rec *l, srv_error *err)
{
    conn *w = sq_conn(t);
    sqlite3_stmt *s = sq_stmt(w, ST_LEASE_PUT, err);
    if (!s)
        return err->code;
    sqlite3_bind_int64(s, 1, run->ref);
    sq_bind_text(s, 2, worker_id);
    sq_bind_text(s, 3, l->lease_id);
    sq_bind_text(s, 4, l->holder);
    sqlite3_bind_int64(s, 5, (int64_t)l->fencing_token);
    sqlite3_bind_int64(s, 6, l->expires_us);
    return sq_step_done(w, s, "storing a lease", err);
}

/* The size of name in the data dir; 0 when it is not there (no WAL). */
static uint64_t file_bytes(const sqlite_store *s, const char *name)
{
    struct stat st;
    return fstatat(s->dir_fd, name, &st, AT_SYMLINK_NOFOLLOW) == 0 ? (uint64_t)st.st_size : 0;
}

/* Snapshot files are counted by the sizes recorded for them, not by
 * walking blobs/ at every scrape. */
srv_code sq_usage(srv_txn *t, int64_t now_us, srv_store_usage *out, srv_error *err)
{
    conn *c = sq_conn(t);
    sqlite3_stmt *s = sq_stmt(c, ST_USAGE, err);
    if (!s)
        return err->code;
    sqlite3_bind_int64(s, 1, now_us);
    int rc = sqlite3_step(s);
    if (rc == SQLITE_ROW) {
        out->live_leases = (uint64_t)sqlite3_column_int64(s, 0);
        out->bytes = (uint64_t)sqlite3_column_int64(s, 1) + file_bytes(sq_of(t), "cairn.db") +
                     file_bytes(sq_of(t), "cairn.db-wal");
    }
    sqlite3_reset(s);
    if (rc != SQLITE_ROW)
        return sq_db_fail(c->db, rc, "reading the store's usage", err);
    return SRV_OK;
}
