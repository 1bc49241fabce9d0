/* SQLite store: worker leases and fencing. One row per (run, worker)
 * holds the latest lease; it outlives the lease (expired or released) so
 * that the next acquisition's fencing token is larger than every earlier
 * one, also across restarts. A lease is live while now < expires_us, on
 * the server's clock, checked when a request arrives (no sweeper). */
#include "store/sqlite/sqlite_int.h"
#include "base/clock.h"
#include "base/hex.h"

#include <stdio.h>
#include <string.h>

typedef struct lease_row {
    bool found;
    char lease_id[129];
    char holder[129];
    uint64_t token;
    int64_t expires_us;           /* 0 once released */
} lease_row;

static srv_code get_lease(conn *w, int64_t run, const char *worker_id, lease_row *l,
                          srv_error *err)
{
    memset(l, 0, sizeof *l);
    sqlite3_stmt *s = sq_stmt(w, ST_LEASE_GET, err);
    if (!s)
        return err->code;
    sqlite3_bind_int64(s, 1, run);
    sq_bind_text(s, 2, worker_id);
    int rc = sqlite3_step(s);
    if (rc == SQLITE_ROW) {
        l->found = true;
        snprintf(l->lease_id, sizeof l->lease_id, "%s", (const char *)sqlite3_column_text(s, 0));
        snprintf(l->holder, sizeof l->holder, "%s", (const char *)sqlite3_column_text(s, 1));
        l->token = (uint64_t)sqlite3_column_int64(s, 2);
        l->expires_us = sqlite3_column_int64(s, 3);
    }
    sqlite3_reset(s);
    if (rc != SQLITE_ROW && rc != SQLITE_DONE)
        return sq_db_fail(w->db, rc, "reading a lease", err);
    return SRV_OK;
}

static srv_code put_lease(conn *w, int64_t run, const char *worker_id, const lease_row *l,
                          srv_error *err)
{
    sqlite3_stmt *s = sq_stmt(w, ST_LEASE_PUT, err);
    if (!s)
        return err->code;
    sqlite3_bind_int64(s, 1, run);
    sq_bind_text(s, 2, worker_id);
    sq_bind_text(s, 3, l->lease_id);
    sq_bind_text(s, 4, l->holder);
    sqlite3_bind_int64(s, 5, (int64_t)l->token);
    sqlite3_bind_int64(s, 6, l->expires_us);
    return sq_step_done(w, s, "storing a lease", err);
}

static bool live(const lease_row *l, int64_t now_us)
{
    return l->found && now_us < l->expires_us;
}

static void fill_lease(srv_arena *a, const char *run_id, const char *worker_id,
                       const lease_row *l, Cairn__V1__Lease *out)
{
    cairn__v1__lease__init(out);
    out->lease_id = srv_arena_strdup(a, l->lease_id);
    out->run_id = (char *)run_id;
    out->worker_id = (char *)worker_id;
    out->holder = srv_arena_strdup(a, l->holder);
    out->fencing_token = l->token;
    out->expires_at = sq_format_time(a, l->expires_us);
}

/* The run's numbers, and whether worker_id is one of its workers (and
 * its completion seq, 0 if not completed). */
static srv_code find_worker(conn *w, const char *run_id, const char *worker_id, run_row *r,
                            uint64_t *completed_seq, srv_error *err)
{
    srv_arena *scratch = srv_arena_create();
    if (!scratch)
        return srv_fail(err, SRV_RESOURCE_EXHAUSTED, "out of memory");
    srv_code rc = sq_find_run(w, scratch, run_id, r, err);
    srv_arena_destroy(scratch);
    if (rc)
        return rc;
    sqlite3_stmt *s = sq_stmt(w, ST_WORKER_SEQ, err);
    if (!s)
        return err->code;
    sqlite3_bind_int64(s, 1, r->id);
    sq_bind_text(s, 2, worker_id);
    int sqrc = sqlite3_step(s);
    *completed_seq = sqrc == SQLITE_ROW ? (uint64_t)sqlite3_column_int64(s, 0) : 0;
    sqlite3_reset(s);
    if (sqrc == SQLITE_DONE) {
        char q[SRV_QUOTE_MAX];
        return srv_fail(err, SRV_INVALID_ARGUMENT, "worker_id: %s is not a worker of run %s",
                        srv_quote(q, worker_id, strlen(worker_id)), run_id);
    }
    return sqrc == SQLITE_ROW ? SRV_OK : sq_db_fail(w->db, sqrc, "reading a worker", err);
}

/* The run, the worker's completion seq and its lease row. */
static srv_code load(conn *w, const char *run_id, const char *worker_id, run_row *r,
                     uint64_t *completed, lease_row *l, srv_error *err)
{
    srv_code rc = find_worker(w, run_id, worker_id, r, completed, err);
    return rc ? rc : get_lease(w, r->id, worker_id, l, err);
}

static srv_code lease_not_current(const lease_row *l, const char *lease_id,
                                  const char *worker_id, srv_error *err)
{
    char when[32];
    if (!l->found || strcmp(l->lease_id, lease_id) != 0)
        return srv_fail(err, SRV_FAILED_PRECONDITION,
                        "lease_id: %s is not the current lease of worker %s (taken over, or never "
                        "granted); acquire the worker again",
                        lease_id, worker_id);
    if (l->expires_us == 0)
        return srv_fail(err, SRV_FAILED_PRECONDITION, "lease_id: %s was released", lease_id);
    return srv_fail(err, SRV_FAILED_PRECONDITION,
                    "lease_id: %s expired at %s; acquire the worker again", lease_id,
                    srv_format_time(when, l->expires_us));
}

srv_code sq_acquire_worker(srv_store *st, srv_arena *a, const Cairn__V1__AcquireWorkerRequest *req,
                           int64_t now_us, Cairn__V1__Lease *out, srv_error *err)
{
    conn *w = &sq_from(st)->writer;
    run_row r;
    uint64_t completed;
    lease_row l;
    srv_code rc = load(w, req->run_id, req->worker_id, &r, &completed, &l, err);
    if (rc)
        return rc;
    if (completed)
        return srv_fail(err, SRV_FAILED_PRECONDITION,
                        "worker_id: %s already completed (seq %llu); there is nothing to lease",
                        req->worker_id, (unsigned long long)completed);
    if (live(&l, now_us)) {
        char when[32];
        return srv_fail(err, SRV_FAILED_PRECONDITION,
                        "worker_id: %s is leased to holder %s until %s (renew a lease with "
                        "RenewLease)",
                        req->worker_id, l.holder, srv_format_time(when, l.expires_us));
    }
    srv_random_hex(l.lease_id, 8);
    snprintf(l.holder, sizeof l.holder, "%s", req->holder);
    l.token = l.found ? l.token + 1 : 1;
    l.expires_us = now_us + (int64_t)req->ttl_ms * 1000;
    l.found = true;
    if ((rc = put_lease(w, r.id, req->worker_id, &l, err)))
        return rc;
    fill_lease(a, req->run_id, req->worker_id, &l, out);
    return SRV_OK;
}

srv_code sq_renew_lease(srv_store *st, srv_arena *a, const Cairn__V1__RenewLeaseRequest *req,
                        int64_t now_us, Cairn__V1__Lease *out, srv_error *err)
{
    conn *w = &sq_from(st)->writer;
    run_row r;
    uint64_t completed;
    lease_row l;
    srv_code rc = load(w, req->run_id, req->worker_id, &r, &completed, &l, err);
    if (rc)
        return rc;
    if (!live(&l, now_us) || strcmp(l.lease_id, req->lease_id) != 0)
        return lease_not_current(&l, req->lease_id, req->worker_id, err);
    l.expires_us = now_us + (int64_t)req->ttl_ms * 1000;
    if ((rc = put_lease(w, r.id, req->worker_id, &l, err)))
        return rc;
    fill_lease(a, req->run_id, req->worker_id, &l, out);
    return SRV_OK;
}

srv_code sq_release_worker(srv_store *st, const Cairn__V1__ReleaseWorkerRequest *req,
                           int64_t now_us, srv_error *err)
{
    conn *w = &sq_from(st)->writer;
    run_row r;
    uint64_t completed;
    lease_row l;
    srv_code rc = load(w, req->run_id, req->worker_id, &r, &completed, &l, err);
    if (rc)
        return rc;
    if (!l.found || strcmp(l.lease_id, req->lease_id) != 0)
        return lease_not_current(&l, req->lease_id, req->worker_id, err);
    /* Giving up a lease that already lapsed is done already. */
    return live(&l, now_us) ? sq_end_lease(w, r.id, req->worker_id, err) : SRV_OK;
}

srv_code sq_check_fencing(conn *w, int64_t run, const char *worker_id, uint64_t token,
                          int64_t now_us, srv_error *err)
{
    lease_row l;
    srv_code rc = get_lease(w, run, worker_id, &l, err);
    if (rc)
        return rc;
    if (live(&l, now_us) && l.token == token)
        return SRV_OK;
    if (!l.found)
        return srv_fail(err, SRV_FAILED_PRECONDITION,
                        "fencing_token: %llu: worker %s has never been leased (fenced)",
                        (unsigned long long)token, worker_id);
    return srv_fail(err, SRV_FAILED_PRECONDITION,
                    "fencing_token: %llu is not the current token of a live lease of worker %s "
                    "(current token %llu, %s) (fenced)",
                    (unsigned long long)token, worker_id, (unsigned long long)l.token,
                    live(&l, now_us) ? "live" : "not live");
}

srv_code sq_end_lease(conn *w, int64_t run, const char *worker_id, srv_error *err)
{
    sqlite3_stmt *s = sq_stmt(w, ST_LEASE_END, err);
    if (!s)
        return err->code;
    sqlite3_bind_int64(s, 1, run);
    sq_bind_text(s, 2, worker_id);
    return sq_step_done(w, s, "ending a lease", err);
}
