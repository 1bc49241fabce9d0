/* Internals shared by the files of the SQLite backend: connections with
 * their prepared statements, row helpers, and the operations each file
 * implements for the ops table in sqlite.c. */
#ifndef CAIRN_SERVER_STORE_SQLITE_INT_H
#define CAIRN_SERVER_STORE_SQLITE_INT_H

#include "store/backend.h"

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
    ST_READ_SNAPSHOT,
    ST_READ_END,
    ST_RUN_BY_NAME,
    ST_RUNS_AFTER,
    ST_RUN_INSERT,
    ST_RUN_DELETE_EVENTS,       /* run_delete: children first, in this order */
    ST_RUN_DELETE_WORKERS,
    ST_RUN_DELETE_LABELS,
    ST_RUN_DELETE_LEASES,
    ST_RUN_DELETE_DEDUP,
    ST_RUN_DELETE,
    ST_RUN_SET_COMPLETED,
    ST_RUNS_COMPLETED_BEFORE,
    ST_RUN_SET_NEXT,
    ST_RUN_COMPLETED,
    ST_RUN_SET_CHECKPOINT,
    ST_WORKERS,
    ST_COMPLETED,
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
    ST_DEDUP_PUT_GONE,
    ST_DEDUP_EXPIRE,
    ST_DEDUP_EXPIRE_GONE,
    ST_CKPT_INSERT,
    ST_CKPT_WORKER_INSERT,
    ST_CKPT_WORKERS,
    ST_CKPT_LIST,
    ST_CKPT_BY_ID,
    ST_CKPT_LATEST,
    ST_CKPT_DELETE_WORKERS,
    ST_CKPT_DELETE,
    ST_BLOB_REFS,
    ST_BLOB_INSERT,
    ST_BLOB_ADD_REF,
    ST_BLOB_DELETE,
    ST_BLOB_EXISTS,
    ST_LEASE_GET,
    ST_LEASE_PUT,
    ST_USAGE,
    ST_PIN_INSERT,
    ST_PIN_DELETE,
    ST_PINNED,
    N_STMT
} stmt_id;

/* A connection; its txn is what callers hold while it is in use. */
typedef struct conn {
    srv_txn txn;
    sqlite3 *db;
    sqlite3_stmt *st[N_STMT];
    struct conn *next_free;
    uint8_t *scratch;             /* the writer's: an append's records (events.c) */
    size_t scratch_cap;
} conn;

typedef struct sqlite_store {
    srv_store base;
    char *dir;                    /* the data dir, without a trailing '/' */
    int dir_fd;                   /* the data dir, blobs/, blobs/staging: every */
    int blobs_fd;                 /* file is made, found and removed relative */
    int staging_fd;               /* to these, never through a symbolic link */
    bool opened;                  /* open finished: a failed fsync now stops the store */
    int lock_fd;                  /* flock on dir/LOCK while open */
    conn writer;
    conn *readers;
    int n_readers;
    conn *free_readers;
    pthread_mutex_t mu;           /* the reader pool */
    pthread_cond_t cv;
    conn pinner;                  /* pin_add / pin_remove, under pin_mu */
    pthread_mutex_t pin_mu;
    /* Snapshot files the open transaction moved into place or dropped the
     * last reference to: removed when it ends (commit or rollback) if no
     * row references them then. Writer only. */
    char (*recheck)[65];
    size_t n_recheck, cap_recheck;
    /* WAL checkpoints run on a thread of their own, so the writer never
     * copies the WAL into cairn.db itself (see sqlite.c). */
    conn checkpointer;
    pthread_t ckpt_thread;
    bool ckpt_started;
    pthread_mutex_t ckpt_mu;
    pthread_cond_t ckpt_cv;
    bool ckpt_wanted, ckpt_quit;
} sqlite_store;

static inline sqlite_store *sq_from(srv_store *st)
{
    return (sqlite_store *)st;
}

static inline conn *sq_conn(srv_txn *t)
{
    return (conn *)t;
}

static inline sqlite_store *sq_of(srv_txn *t)
{
    return sq_from(t->store);
}

/* ---- sqlite.c: statements, rows, errors ---- */

/* Maps a SQLite result code to a cairn error naming what was being done:
 * a unique key taken is ABORTED (see backend.h), disk full is
 * RESOURCE_EXHAUSTED with a pushback, corruption DATA_LOSS, the rest
 * UNAVAILABLE. */
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
/* One text column of every row of a statement taking one integer. */
srv_code sq_read_strings(conn *c, srv_arena *a, stmt_id id, int64_t key, char ***out,
                         size_t *n, srv_error *err);
/* The same of a statement the caller bound; what names it in an error. */
srv_code sq_step_strings(conn *c, srv_arena *a, sqlite3_stmt *s, const char *what, char ***out,
                         size_t *n, srv_error *err);

/* Gives the pages deletes freed back to the file system (auto_vacuum is
 * INCREMENTAL), inside the write transaction. */
srv_code sq_reclaim(conn *w, srv_error *err);

/* ---- events.c: the event log, one row per append ---- */

srv_code sq_events_insert(srv_txn *t, const srv_run_head *run, Cairn__V1__Event *const *events,
                          size_t n, int64_t now_us, srv_error *err);
srv_code sq_events_read(srv_txn *t, srv_arena *a, const srv_run_head *run, uint64_t from_seq,
                        uint32_t max_events, size_t max_bytes, Cairn__V1__Event ***out,
                        size_t *n, srv_error *err);
/* Adds the SQL function cairn_event_record(type, worker_id, payload) to
 * db, which the migration to schema 6 uses; a SQLite result code. */
int sq_register_event_record(sqlite3 *db);

/* ---- runs.c: runs, workers ---- */

srv_code sq_run_find(srv_txn *t, srv_arena *a, const char *run_id, srv_run_head *out,
                     bool *found, srv_error *err);
srv_code sq_run_get(srv_txn *t, srv_arena *a, const char *run_id, srv_run_rec *out,
                    bool *found, srv_error *err);
srv_code sq_runs_list(srv_txn *t, srv_arena *a, int64_t after, const char *prefix,
                      uint32_t limit,
                      srv_run_rec **out, size_t *n, srv_error *err);
srv_code sq_run_insert(srv_txn *t, const char *run_id, char *const *workers, size_t n_workers,
                       const srv_label *labels, size_t n_labels,
                       int64_t now_us, int64_t *ref, srv_error *err);
srv_code sq_run_delete(srv_txn *t, const srv_run_head *run, srv_error *err);
srv_code sq_run_set_completed(srv_txn *t, const srv_run_head *run, int64_t now_us,
                              srv_error *err);
srv_code sq_runs_completed_before(srv_txn *t, srv_arena *a, int64_t before_us, uint32_t limit,
                                  char ***out, size_t *n, srv_error *err);
srv_code sq_worker_get(srv_txn *t, const srv_run_head *run, const char *worker_id,
                       bool *is_worker, uint64_t *completed_seq, srv_error *err);
srv_code sq_worker_complete(srv_txn *t, const srv_run_head *run, const char *worker_id,
                            uint64_t seq, srv_error *err);
srv_code sq_completions(srv_txn *t, srv_arena *a, const srv_run_head *run,
                        srv_completion **out, size_t *n, srv_error *err);

/* ---- leases.c ---- */

srv_code sq_lease_get(srv_txn *t, srv_arena *a, const srv_run_head *run, const char *worker_id,
                      srv_lease_rec *out, srv_error *err);
srv_code sq_lease_put(srv_txn *t, const srv_run_head *run, const char *worker_id,
                      const srv_lease_rec *l, srv_error *err);
/* The leases live at now_us, and the database, its WAL and the snapshot
 * files' sizes. */
srv_code sq_usage(srv_txn *t, int64_t now_us, srv_store_usage *out, srv_error *err);

/* ---- checkpoints.c: checkpoints and pins ---- */

srv_code sq_checkpoint_insert(srv_txn *t, const srv_run_head *run, const srv_checkpoint_rec *c,
                              srv_error *err);
srv_code sq_checkpoint_delete(srv_txn *t, const srv_run_head *run, const char *checkpoint_id,
                              srv_error *err);
srv_code sq_checkpoint_get(srv_txn *t, srv_arena *a, const srv_run_head *run,
                           const char *checkpoint_id, srv_checkpoint_rec *out, bool *found,
                           srv_error *err);
srv_code sq_checkpoints_list(srv_txn *t, srv_arena *a, const srv_run_head *run,
                             const char *after, uint32_t limit, bool full,
                             srv_checkpoint_rec **out, size_t *n, srv_error *err);
srv_code sq_pin_add(srv_store *st, const char *run_id, const char *checkpoint_id,
                    int64_t expires_us, int64_t *pin, srv_error *err);
srv_code sq_pin_remove(srv_store *st, int64_t pin, srv_error *err);
srv_code sq_pinned(srv_txn *t, const char *run_id, const char *checkpoint_id, int64_t now_us,
                   bool *pinned, srv_error *err);

/* ---- files.c: the data dir, trusted only as cairnd's own ---- */

/* Creates the data dir when missing (mkdir -p, 0700, each new directory
 * synced into its parent), opens it into s->dir_fd and checks it
 * (sq_open_dir). */
srv_code sq_data_dir_open(sqlite_store *s, srv_error *err);
/* Opens directory name of the directory fd at (whose path is at_path, for
 * messages) into *out, without following a symbolic link: refused
 * (FAILED_PRECONDITION, one line naming the path and why) when it is a
 * symbolic link, not a directory, not owned by the effective user, or
 * writable by group or others; NOT_FOUND when missing. With create, a
 * missing one is made 0700 and synced into at first. */
srv_code sq_open_dir(sqlite_store *s, int at, const char *at_path, const char *name,
                     bool create, int *out, srv_error *err);
/* Takes the exclusive lock on dir/LOCK (opened without following a link)
 * and writes the pid into it. */
srv_code sq_lock_data_dir(sqlite_store *s, srv_error *err);
/* Before SQLite opens name (cairn.db, pins.db) by path: refuses when it
 * or its -wal, -shm or -journal is a symbolic link or not owned by the
 * effective user, and creates a missing name 0600, which its -wal and
 * -shm then take from it whatever the umask. */
srv_code sq_db_files_prepare(sqlite_store *s, const char *name, srv_error *err);
/* fsync of fd (path for messages). Once the store is open a failure
 * stops it (srv_store_fail_stop): see store.h. */
srv_code sq_sync(sqlite_store *s, int fd, const char *path, srv_error *err);
/* A failed I/O call as an error: disk full is RESOURCE_EXHAUSTED with a
 * pushback, the rest UNAVAILABLE naming what and path. */
srv_code sq_io_fail(int e, const char *what, const char *path, srv_error *err);

/* ---- blobs.c: snapshot files ---- */

/* Creates dir/blobs and its staging area, and removes what a crash left:
 * staged uploads and snapshot files that no row references. */
srv_code sq_blobs_open(sqlite_store *s, srv_error *err);
/* After COMMIT or ROLLBACK: removes the files the transaction touched
 * that no row references (dropped, or linked by work that rolled back). */
void sq_blobs_after_commit(sqlite_store *s);
void sq_blobs_after_rollback(sqlite_store *s);

srv_code sq_stage_begin(srv_store *st, srv_blob_stage **out, srv_error *err);
srv_code sq_stage_write(srv_blob_stage *b, const uint8_t *data, size_t len, srv_error *err);
srv_code sq_stage_finish(srv_blob_stage *b, const char *sha256, srv_error *err);
void sq_stage_free(srv_blob_stage *b);
srv_code sq_blob_link(srv_txn *t, srv_blob_stage *b, uint64_t size, srv_error *err);
srv_code sq_blob_unlink(srv_txn *t, const char *sha256, srv_error *err);
srv_code sq_blob_open(srv_store *st, const char *sha256, srv_blob_reader **out, srv_error *err);
srv_code sq_blob_read(srv_blob_reader *r, uint8_t *buf, size_t cap, size_t *n, srv_error *err);
void sq_blob_close(srv_blob_reader *r);

#endif
