/* SQLite backend: worker leases, one row per (run, worker) holding its
 * latest lease. */
#include "store/sqlite/sqlite_int.h"

#include <string.h>

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
