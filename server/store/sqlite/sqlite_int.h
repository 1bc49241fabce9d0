/* Internals shared by the files of the SQLite store (store_sqlite*.c):
 * connections with their prepared statements, row helpers, and the
 * operations each file implements for the ops table. */
#ifndef CAIRN_SERVER_SQLITE_INT_H
#define CAIRN_SERVER_SQLITE_INT_H

#include "store/store.h"

#include <pthread.h>
#include <sqlite3.h>
#include <stdbool.h>
#include <stdint.h>

/* Paths under the data dir (itself at most 4095 bytes) fit in this. */
#define SQ_PATH_MAX 8192

typedef enum stmt_id {
    ST_BEGIN,
    ST_COMMIT,
    ST_ROLLBACK,
    ST_SAVEPOINT,
    ST_RELEASE,
    ST_ROLLBACK_TO,
    ST_READ_BEGIN,
    ST_READ_END,
    ST_RUN_BY_NAME,
    ST_RUNS_AFTER,
    ST_RUN_INSERT,
    ST_RUN_SET_NEXT,
    ST_RUN_COMPLETED,
    ST_RUN_SET_CHECKPOINT,
    ST_WORKERS,
    ST_COMPLETED,
    ST_COMPLETED_UNTIL,
    ST_COMPLETIONS,
    ST_WORKER_SEQ,
    ST_WORKER_SET_COMPLETED,
    ST_WORKER_INSERT,
    ST_LABELS,
    ST_LABEL_INSERT,
    ST_EVENT_INSERT,
    ST_EVENTS_FROM,
    ST_DEDUP_GET,
    ST_DEDUP_PUT,
    ST_CKPT_INSERT,
    ST_CKPT_WORKER_INSERT,
    ST_CKPT_WORKERS,
    ST_CKPT_LIST,
    ST_CKPT_BY_ID,
    ST_CKPT_LATEST,
    ST_CKPT_NEWEST_FIRST,
    ST_CKPT_DELETE_WORKERS,
    ST_CKPT_DELETE,
    ST_BLOB_REFS,
    ST_BLOB_INSERT,
    ST_BLOB_ADD_REF,
    ST_BLOB_DELETE,
    ST_BLOB_EXISTS,
    ST_LEASE_GET,
    ST_LEASE_PUT,
    ST_LEASE_END,
    N_STMT
} stmt_id;

typedef struct conn {
    sqlite3 *db;
    sqlite3_stmt *st[N_STMT];
    struct conn *next_free;
} conn;

typedef struct sqlite_store {
    srv_store base;
    char *dir;                    /* the data dir */
    conn writer;
    conn *readers;
    int n_readers;
    conn *free_readers;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    /* Snapshot files whose last reference the open transaction dropped:
     * removed after it commits (if still unreferenced then). Writer only. */
    char (*unlink_after_commit)[65];
    size_t n_unlink, cap_unlink;
    /* Runs whose log the open transaction grew (writer only): told to the
     * observer after COMMIT; a rolled-back savepoint drops its own. */
    struct log_note {
        char run_id[129];
        uint64_t last_seq;
    } *notes;
    size_t n_notes, cap_notes, notes_mark;
    srv_commit_observer observer;
    void *observer_ctx;
} sqlite_store;

/* A runs row. */
typedef struct run_row {
    int64_t id;
    const char *run_id;
    int64_t created_us;
    uint64_t next_seq;
    int64_t worker_count;
    int64_t completed_count;
    const char *latest_checkpoint_id;
    uint64_t checkpoint_events;
    int64_t latest_checkpoint_us;
} run_row;

static inline sqlite_store *sq_from(srv_store *st)
{
    return (sqlite_store *)st;
}

/* ---- store_sqlite.c ---- */

/* Maps a SQLite result code to a cairn error naming what was being done. */
srv_code sq_db_fail(sqlite3 *db, int rc, const char *what, srv_error *err);
/* The connection's prepared statement id, reset and unbound; NULL with
 * *err filled when it cannot be prepared. */
sqlite3_stmt *sq_stmt(conn *c, stmt_id id, srv_error *err);
/* Runs a statement that returns no rows. */
srv_code sq_exec(conn *c, stmt_id id, const char *what, srv_error *err);
/* Steps a statement to its end (binding done by the caller), then resets it. */
srv_code sq_step_done(conn *c, sqlite3_stmt *s, const char *what, srv_error *err);
void sq_bind_text(sqlite3_stmt *s, int i, const char *v);
const char *sq_column_text(srv_arena *a, sqlite3_stmt *s, int i);
char *sq_format_time(srv_arena *a, int64_t us);
/* A reader connection inside a read transaction, so that several SELECTs
 * see one state; sq_reader_put ends the transaction. */
conn *sq_reader_get(sqlite_store *s);
void sq_reader_put(sqlite_store *s, conn *c);
/* Reads a row selected with RUN_COLUMNS. */
void sq_read_run_row(srv_arena *a, sqlite3_stmt *s, run_row *r);
/* Finds a run by name: SRV_OK, or NOT_FOUND naming run_id. */
srv_code sq_find_run(conn *c, srv_arena *a, const char *run_id, run_row *r, srv_error *err);
/* One text column of every row of a statement taking one integer, or
 * two (key2 is bound only when the statement has a second parameter). */
srv_code sq_read_strings(conn *c, srv_arena *a, stmt_id id, int64_t key, int64_t key2,
                         char ***out, size_t *n, srv_error *err);
/* Fills a Run message from its row and child tables. */
srv_code sq_fill_run(conn *c, srv_arena *a, const run_row *r, Cairn__V1__Run *out,
                     srv_error *err);
/* "created", "running" or "completed". */
const char *sq_run_state(const run_row *r);

/* Notes that the open transaction grew run_id's log to last_seq. */
srv_code sq_note_log(sqlite_store *s, const char *run_id, uint64_t last_seq, srv_error *err);

/* ---- store_sqlite_runs.c ---- */

srv_code sq_create_run(srv_store *st, srv_arena *a, const Cairn__V1__CreateRunRequest *req,
                       int64_t now_us, Cairn__V1__Run *out, srv_error *err);
srv_code sq_append_events(srv_store *st, const Cairn__V1__AppendEventsRequest *req,
                          int64_t now_us, Cairn__V1__AppendEventsResponse *out,
                          srv_error *err);
srv_code sq_complete_worker(srv_store *st, const Cairn__V1__CompleteWorkerRequest *req,
                            int64_t now_us, Cairn__V1__CompleteWorkerResponse *out,
                            srv_error *err);
srv_code sq_get_run(srv_store *st, srv_arena *a, const char *run_id, Cairn__V1__Run *out,
                    srv_error *err);

/* ---- store_sqlite_leases.c ---- */

srv_code sq_acquire_worker(srv_store *st, srv_arena *a, const Cairn__V1__AcquireWorkerRequest *req,
                           int64_t now_us, Cairn__V1__Lease *out, srv_error *err);
srv_code sq_renew_lease(srv_store *st, srv_arena *a, const Cairn__V1__RenewLeaseRequest *req,
                        int64_t now_us, Cairn__V1__Lease *out, srv_error *err);
srv_code sq_release_worker(srv_store *st, const Cairn__V1__ReleaseWorkerRequest *req,
                           int64_t now_us, srv_error *err);
/* A fenced write: SRV_OK when token is the current token of worker's live
 * lease; FAILED_PRECONDITION ("fenced") otherwise. Writer thread. */
srv_code sq_check_fencing(conn *w, int64_t run, const char *worker_id, uint64_t token,
                          int64_t now_us, srv_error *err);
/* Ends the worker's lease (its worker completed). Writer thread. */
srv_code sq_end_lease(conn *w, int64_t run, const char *worker_id, srv_error *err);
srv_code sq_list_runs(srv_store *st, srv_arena *a, uint64_t after, uint32_t limit,
                      Cairn__V1__ListRunsResponse *out, uint64_t *next, srv_error *err);
srv_code sq_read_events(srv_store *st, srv_arena *a, const char *run_id, uint64_t from_seq,
                        uint32_t max_events, size_t max_bytes,
                        Cairn__V1__ReadEventsResponse *out, srv_error *err);

/* ---- store_sqlite_checkpoints.c ---- */

srv_code sq_create_checkpoint(srv_store *st, srv_arena *a, const srv_new_checkpoint *cp,
                              int64_t now_us, Cairn__V1__Checkpoint *out, srv_error *err);
srv_code sq_cleanup_checkpoints(srv_store *st, srv_arena *a, const char *run_id,
                                uint32_t keep_last_n, srv_pins *pins,
                                Cairn__V1__CleanupCheckpointsResponse *out, srv_error *err);
srv_code sq_list_checkpoints(srv_store *st, srv_arena *a, const char *run_id,
                             const char *after, size_t max_bytes,
                             Cairn__V1__ListCheckpointsResponse *out, srv_error *err);
srv_code sq_get_checkpoint(srv_store *st, srv_arena *a, const char *run_id,
                           const char *checkpoint_id, Cairn__V1__Checkpoint *out,
                           srv_error *err);
srv_code sq_read_resume_state(srv_store *st, srv_arena *a, const char *run_id,
                              srv_resume_state *out, srv_error *err);

/* ---- store_sqlite_blobs.c ---- */

/* Creates dir/blobs and its staging area, and removes what a crash left:
 * staged uploads and snapshot files that no row references. */
srv_code sq_blobs_open(sqlite_store *s, srv_error *err);
/* Inside the write transaction: references the staged bytes (moving them
 * into place when they are new). */
srv_code sq_blob_link(sqlite_store *s, srv_blob_stage *b, uint64_t size, srv_error *err);
/* Inside the write transaction: drops one reference. */
srv_code sq_blob_unref(sqlite_store *s, const char *sha256, srv_error *err);
/* After COMMIT: removes files left unreferenced. After ROLLBACK: forgets. */
void sq_blobs_after_commit(sqlite_store *s);
void sq_blobs_after_rollback(sqlite_store *s);

srv_code sq_stage_begin(srv_store *st, srv_blob_stage **out, srv_error *err);
srv_code sq_stage_write(srv_blob_stage *b, const uint8_t *data, size_t len, srv_error *err);
srv_code sq_stage_finish(srv_blob_stage *b, const char *sha256, srv_error *err);
void sq_stage_free(srv_blob_stage *b);
srv_code sq_blob_open(srv_store *st, const char *sha256, srv_blob_reader **out, srv_error *err);
srv_code sq_blob_read(srv_blob_reader *r, uint8_t *buf, size_t cap, size_t *n, srv_error *err);
void sq_blob_close(srv_blob_reader *r);

#endif
