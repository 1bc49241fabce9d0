/* PostgreSQL backend: worker leases, one row per (run, worker) holding
 * its latest lease. Expiry is decided by core/ against the batch's clock,
 * which for this backend is the database's (README.md, "Time"); the
 * writer holds the run's row lock while it reads and replaces a lease,
 * so two replicas never both grant one. */
#include "store/pg/pg_int.h"

#include <string.h>

srv_code pg_lease_get(srv_txn *t, srv_arena *a, const srv_run_head *run, const char *worker_id,
                      srv_lease_rec *out, srv_error *err)
{
    memset(out, 0, sizeof *out);
    pg_params p = {0};
    pg_i64(&p, run->ref);
    pg_text(&p, worker_id);
    PGresult *r = pg_run(pg_conn_of(t), PS_LEASE_GET, &p, "reading a lease", err);
    if (!r)
        return err->code;
    if (PQntuples(r) > 0) {
        out->found = true;
        out->lease_id = pg_col_text(a, r, 0, 0);
        out->holder = pg_col_text(a, r, 0, 1);
        out->fencing_token = (uint64_t)pg_col_i64(r, 0, 2);
        out->expires_us = pg_col_i64(r, 0, 3);
    }
    PQclear(r);
    return SRV_OK;
}

srv_code pg_lease_put(srv_txn *t, const srv_run_head *run, const char *worker_id,
                      const srv_lease_rec *l, srv_error *err)
{
    pg_params p = {0};
    pg_i64(&p, run->ref);
    pg_text(&p, worker_id);
    pg_text(&p, l->lease_id);
    pg_text(&p, l->holder);
    pg_i64(&p, (int64_t)l->fencing_token);
    pg_i64(&p, l->expires_us);
    return pg_do(pg_conn_of(t), PS_LEASE_PUT, &p, "storing a lease", NULL, err);
}

/* The whole database, as PostgreSQL counts it (tables, indexes, TOAST):
 * what an operator provisions disk for. */
srv_code pg_usage(srv_txn *t, int64_t now_us, srv_store_usage *out, srv_error *err)
{
    pg_params p = {0};
    pg_i64(&p, now_us);
    PGresult *r = pg_run(pg_conn_of(t), PS_USAGE, &p, "reading the store's usage", err);
    if (!r)
        return err->code;
    out->live_leases = (uint64_t)pg_col_i64(r, 0, 0);
    out->bytes = (uint64_t)pg_col_i64(r, 0, 1);
    PQclear(r);
    return SRV_OK;
}
