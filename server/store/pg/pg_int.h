/* PostgreSQL backend internals shared by its files: connections and the
 * pool, statements with their parameters, row helpers, and the
 * operations each file implements for the ops table in pg.c. */
#ifndef CAIRN_SERVER_STORE_PG_INT_H
#define CAIRN_SERVER_STORE_PG_INT_H

#include "store/backend.h"

#include <libpq-fe.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

/* Snapshot bytes live in blob_chunks rows of this many bytes (the last
 * one shorter): a stage buffers one chunk, a reader holds one. */
#define PG_CHUNK_BYTES (256 * 1024)
/* Parameters of one prepared statement at most. */
#define PG_MAX_PARAMS 12
/* Rows per multi-row INSERT (events, workers, labels): 4 parameters a row
 * stays far below PostgreSQL's 65535. */
#define PG_ROWS_PER_INSERT 1000

typedef enum pg_stmt_id {
    PS_NOW,
    PS_RUN_BY_NAME,
    PS_RUN_BY_NAME_LOCKED,
    PS_RUNS_AFTER,
    PS_RUN_INSERT,
    PS_WORKERS,
    PS_COMPLETED,
    PS_COMPLETIONS,
    PS_WORKER_SEQ,
    PS_WORKER_SET_COMPLETED,
    PS_LABELS,
    PS_EVENTS_FROM,
    PS_EVENTS_APPEND,
    PS_RUNS_LOCK,
    PS_DEDUP_GET,
    PS_DEDUP_GET_MANY,
    PS_DEDUP_PUT,
    PS_DEDUP_PUT_ROWS,
    PS_DEDUP_PUT_GONE,
    PS_DEDUP_EXPIRE,
    PS_DEDUP_EXPIRE_GONE,
    PS_RUN_DELETE,
    PS_RUN_SET_COMPLETED,
    PS_RUNS_COMPLETED_BEFORE,
    PS_CKPT_INSERT,
    PS_CKPT_WORKERS,
    PS_CKPT_LIST,
    PS_CKPT_BY_ID,
    PS_CKPT_LATEST,
    PS_CKPT_DELETE,
    PS_LEASE_GET,
    PS_LEASE_PUT,
    PS_USAGE,
    PS_PIN_INSERT,
    PS_PIN_DELETE,
    PS_PINNED,
    PS_CKPT_LOCK,
    PS_STAGE_NEW,
    PS_STAGE_CHUNK,
    PS_STAGE_DROP,
    PS_BLOB_LINK,
    PS_BLOB_MOVE_STAGE,
    PS_BLOB_DROP_CHUNKS,
    PS_BLOB_UNREF,
    PS_BLOB_DROP,
    PS_BLOB_SIZE,
    PS_BLOB_CHUNK,
    PG_N_STMT
} pg_stmt_id;

/* A growing byte buffer (pending.c). */
typedef struct pg_buf {
    uint8_t *p;
    size_t len, cap;
} pg_buf;

/* A statement the writer holds back until its next round trip
 * (pending.c): a control statement (BEGIN, SAVEPOINT, ...), or a write
 * whose outcome no caller waits for (events, idempotency records), kept
 * as the elements of the arrays it will send so that the writes of a
 * batch go out merged, a statement for many mutations. */
typedef enum pg_pending_kind { PG_PENDING_SQL, PG_PENDING_EVENTS, PG_PENDING_DEDUP } pg_pending_kind;
typedef struct pg_pending {
    pg_pending_kind kind;
    const char *sql;              /* SQL: static text */
    int64_t run_ref;              /* EVENTS, DEDUP */
    uint64_t first_seq;           /* EVENTS */
    size_t n;                     /* EVENTS: how many */
    int64_t now_us;               /* created_us */
    /* EVENTS: types, workers, payloads; DEDUP: method, key,
     * fingerprint, response; each array elements (4-byte length, bytes) */
    pg_buf cols[4];
} pg_pending;

/* A run's head as the writer last read or wrote it in this transaction,
 * its row locked by it; strings malloc'ed. */
typedef struct pg_head {
    srv_run_head head;
    char *run_id;
    char *latest_checkpoint_id;
} pg_head;

/* An idempotency record the writer read ahead (prefetch) or wrote in
 * this transaction; strings and response malloc'ed. */
typedef struct pg_known_key {
    char *run_id, *method, *key;
    bool found;
    uint8_t fingerprint[32];
    uint8_t *response;
    size_t response_len;
} pg_known_key;

/* A connection; its txn is what callers hold while it is in use. */
typedef struct pg_conn {
    srv_txn txn;
    PGconn *pg;
    bool prepared[PG_N_STMT];     /* on this session; cleared by a reconnect */
    bool in_txn;                  /* BEGIN issued (maybe still pending), no COMMIT/ROLLBACK yet */
    /* The writer's statements not sent yet, in order (pending.c); they go
     * out in front of its next statement, in one round trip. */
    pg_pending *pending;
    int n_pending, cap_pending;
    size_t pending_bytes;
    bool begin_queued;            /* nothing of this transaction sent yet */
    int savepoint_at;             /* the open SAVEPOINT's index in pending; -1: sent or none */
    pg_head *heads;               /* the writer's locked runs (runs.c) */
    int n_heads, cap_heads;
    pg_known_key *known;          /* the writer's idempotency records (pg.c) */
    int n_known, cap_known;
    int64_t now_us;               /* the clock read ahead (prefetch); 0: not read */
    struct pg_conn *next_free;
} pg_conn;

typedef struct pg_store {
    srv_store base;
    char *dsn;
    pg_conn writer;               /* the ledger's transaction */
    pg_conn *pool;                /* read snapshots, pins, stages, blob reads */
    int n_pool;
    pg_conn *free_pool;
    pthread_mutex_t mu;           /* the pool */
    pthread_cond_t cv;
    /* LISTEN cairn_events on a connection of its own, on a thread of its
     * own, when the config asks to be told of commits (pg.c). */
    void (*on_committed)(void *ctx, const char *run_id, uint64_t last_seq);
    void (*on_resync)(void *ctx);
    void (*on_deleted)(void *ctx, const char *run_id);
    void *on_committed_ctx;
    pg_conn listener;
    pthread_t listen_thread;
    bool listening;
    int wake[2];                  /* a byte in wake[1] stops the listener */
} pg_store;

/* The channel every replica's commits of events are announced on:
 * payload "<last_seq> <run_id>". */
#define PG_CHANNEL "cairn_events"
/* A notification on PG_CHANNEL is "<last_seq> <run_id>" for an append, or
 * this prefix and the run id for a deleted run. */
#define PG_DELETED "deleted "

static inline pg_store *pg_from(srv_store *st)
{
    return (pg_store *)st;
}

static inline pg_conn *pg_conn_of(srv_txn *t)
{
    return (pg_conn *)t;
}

/* Parameters of a statement: text, or binary for bytea. */
typedef struct pg_params {
    int n;
    const char *v[PG_MAX_PARAMS];
    int len[PG_MAX_PARAMS];
    int fmt[PG_MAX_PARAMS];
    char num[PG_MAX_PARAMS][24];
} pg_params;

void pg_text(pg_params *p, const char *s);
void pg_i64(pg_params *p, int64_t v);
void pg_bytes(pg_params *p, const void *data, size_t len);

/* ---- pg.c: schema, connections, transactions ---- */

/* The text of every prepared statement, by id. */
extern const char *const pg_sql_text[PG_N_STMT];
/* Settings of a new (or remade) session; forgets what the old one had
 * prepared, queued and locked. */
srv_code pg_conn_setup(pg_conn *c, srv_error *err);
/* Forgets the idempotency records the writer read ahead or wrote. */
void pg_known_clear(pg_conn *c);

/* ---- exec.c: statements, errors ---- */

/* Maps a failed statement (r may be NULL: the connection's error) to a
 * cairn error naming what was being done: connection lost or the server
 * shutting down UNAVAILABLE, a unique key taken ABORTED (backend.h),
 * serialization failure or deadlock ABORTED, disk full
 * RESOURCE_EXHAUSTED with a pushback, corruption DATA_LOSS, the rest
 * UNAVAILABLE. */
srv_code pg_fail(pg_conn *c, const PGresult *r, const char *what, srv_error *err);
/* Runs prepared statement id (preparing it on first use on this session)
 * with results in binary. Returns the result, which the caller PQclears,
 * or NULL with *err filled. */
PGresult *pg_run(pg_conn *c, pg_stmt_id id, const pg_params *p, const char *what,
                 srv_error *err);
/* The same, dropping the result; *rows gets the rows it touched when not
 * NULL. */
srv_code pg_do(pg_conn *c, pg_stmt_id id, const pg_params *p, const char *what, int64_t *rows,
               srv_error *err);
/* Runs SQL text with n parameters (not prepared; for multi-row inserts
 * whose shape depends on their row count). */
srv_code pg_do_sql(pg_conn *c, const char *sql, int n, const char *const *v, const int *len,
                   const int *fmt, const char *what, srv_error *err);
/* SQL without parameters, possibly several statements. */
srv_code pg_exec(pg_conn *c, const char *sql, const char *what, srv_error *err);

/* One statement of SQL text without parameters: its result (the caller
 * PQclears it) or NULL with *err filled. */
PGresult *pg_query(pg_conn *c, const char *sql, const char *what, srv_error *err);
/* Sends the pending statements, if any, alone. */
srv_code pg_flush(pg_conn *c, const char *what, srv_error *err);
/* Runs statements ids[0..n) with their parameters in one round trip,
 * after whatever is pending; out[i] gets each result (the caller
 * PQclears them), or NULL for all with *err filled. */
srv_code pg_run_many(pg_conn *c, const pg_stmt_id *ids, const pg_params *const *p, int n,
                     PGresult **out, const char *what, srv_error *err);

/* ---- pending.c: what the writer holds back ---- */

/* Holds a control statement of the writer (a static string, no result
 * wanted) back until its next statement, which carries it in the same
 * round trip; an error of it comes back from that statement. */
srv_code pg_queue(pg_conn *c, const char *sql, srv_error *err);
/* Holds back the INSERT of events [0, n) at seqs first_seq.. of run ref
 * and the run's next_seq after them; an error comes back from the
 * statement that sends it (the transaction fails with it). */
srv_code pg_defer_events(pg_conn *c, int64_t ref, uint64_t first_seq,
                         Cairn__V1__Event *const *events, size_t n, int64_t now_us,
                         srv_error *err);
/* Holds back the INSERT of an idempotency record of run ref. */
srv_code pg_defer_dedup(pg_conn *c, int64_t ref, const srv_dedup_key *k,
                        const srv_dedup_record *rec, int64_t now_us, srv_error *err);
/* Makes room for one more element in a malloc'ed array v of n elements
 * of size bytes with capacity *cap: v when it has room, else v moved to
 * twice the capacity; NULL when out of memory (v stays as it was). */
void *pg_grow(void *v, int n, int *cap, size_t size);
/* The strings v[0..n) as a text[] parameter (binary) added to p, its
 * bytes in b (the caller frees b->p once the statement ran). */
bool pg_text_array(pg_buf *b, const char *const *v, size_t n, pg_params *p);
/* Forgets the pending statements from index from on. */
void pg_pending_drop(pg_conn *c, int from);
/* Takes out pending statement i (a SAVEPOINT never sent). */
void pg_pending_remove(pg_conn *c, int i);
/* Whether anything pending writes (more than control statements). */
bool pg_pending_writes(const pg_conn *c);

/* One statement as the pipeline sends it: prepared statement id, or SQL
 * text (id < 0), its parameters, results in binary; owned buffers are
 * freed with it. */
typedef struct pg_stmt {
    int id;
    const char *sql;
    pg_params p;
    const char *what;
    uint8_t *owned[6];
} pg_stmt;
/* The pending statements as the pipeline sends them, merged: the events
 * and the idempotency records between two control statements one
 * statement each. Empties the
 * pending list. *out malloc'ed (pg_stmts_free). */
srv_code pg_pending_take(pg_conn *c, pg_stmt **out, int *n, srv_error *err);
void pg_stmts_free(pg_stmt *s, int n);

int64_t pg_col_i64(const PGresult *r, int row, int col);
/* A text column copied into the arena ("" when NULL). */
const char *pg_col_text(srv_arena *a, const PGresult *r, int row, int col);
/* One text column of every row of a statement taking one integer. */
srv_code pg_read_strings(pg_conn *c, srv_arena *a, pg_stmt_id id, int64_t key, char ***out,
                         size_t *n, srv_error *err);
/* Column 0 of every row of r into the arena, then clears r. */
srv_code pg_result_strings(srv_arena *a, PGresult *r, char ***out, size_t *n, srv_error *err);

/* A pool connection, waiting for one to be free; reconnects a lost one.
 * NULL with *err filled when the database cannot be reached. */
pg_conn *pg_take(pg_store *s, srv_error *err);
void pg_give(pg_store *s, pg_conn *c);

/* A growing string for SQL text built at run time. */
typedef struct pg_sql {
    char *p;
    size_t len, cap;
    bool failed;
} pg_sql;
void pg_sql_add(pg_sql *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* ---- runs.c: runs, the event log, workers ---- */

/* Forgets the run heads the writer remembered (its locks are gone, or
 * may be: commit, rollback, rollback to a savepoint, reconnect). */
void pg_heads_clear(pg_conn *c);
/* Remembers the heads of every row of r (selected with the run columns,
 * locked by the writer). */
void pg_heads_keep(pg_conn *c, const PGresult *r);
/* Run ref of run_id when the writer holds its head, else 0. */
int64_t pg_head_ref(pg_conn *c, const char *run_id);
/* Forgets the head of run ref (a statement changed its row). */
void pg_head_forget(pg_conn *c, int64_t ref);

srv_code pg_run_find(srv_txn *t, srv_arena *a, const char *run_id, srv_run_head *out,
                     bool *found, srv_error *err);
srv_code pg_run_get(srv_txn *t, srv_arena *a, const char *run_id, srv_run_rec *out,
                    bool *found, srv_error *err);
srv_code pg_runs_list(srv_txn *t, srv_arena *a, int64_t after, const char *prefix,
                      uint32_t limit,
                      srv_run_rec **out, size_t *n, srv_error *err);
srv_code pg_run_insert(srv_txn *t, const char *run_id, char *const *workers, size_t n_workers,
                       const srv_label *labels, size_t n_labels, int64_t now_us, int64_t *ref,
                       srv_error *err);
srv_code pg_run_delete(srv_txn *t, const srv_run_head *run, srv_error *err);
srv_code pg_run_set_completed(srv_txn *t, const srv_run_head *run, int64_t now_us,
                              srv_error *err);
srv_code pg_runs_completed_before(srv_txn *t, srv_arena *a, int64_t before_us, uint32_t limit,
                                  char ***out, size_t *n, srv_error *err);
srv_code pg_events_insert(srv_txn *t, const srv_run_head *run, Cairn__V1__Event *const *events,
                          size_t n, int64_t now_us, srv_error *err);
srv_code pg_events_read(srv_txn *t, srv_arena *a, const srv_run_head *run, uint64_t from_seq,
                        uint32_t max_events, size_t max_bytes, Cairn__V1__Event ***out,
                        size_t *n, srv_error *err);
srv_code pg_worker_get(srv_txn *t, const srv_run_head *run, const char *worker_id,
                       bool *is_worker, uint64_t *completed_seq, srv_error *err);
srv_code pg_worker_complete(srv_txn *t, const srv_run_head *run, const char *worker_id,
                            uint64_t seq, srv_error *err);
srv_code pg_completions(srv_txn *t, srv_arena *a, const srv_run_head *run,
                        srv_completion **out, size_t *n, srv_error *err);

/* ---- leases.c ---- */

srv_code pg_lease_get(srv_txn *t, srv_arena *a, const srv_run_head *run, const char *worker_id,
                      srv_lease_rec *out, srv_error *err);
srv_code pg_lease_put(srv_txn *t, const srv_run_head *run, const char *worker_id,
                      const srv_lease_rec *l, srv_error *err);
/* The leases live at now_us, and the database's size. */
srv_code pg_usage(srv_txn *t, int64_t now_us, srv_store_usage *out, srv_error *err);

/* ---- checkpoints.c: checkpoints and pins ---- */

srv_code pg_checkpoint_insert(srv_txn *t, const srv_run_head *run, const srv_checkpoint_rec *c,
                              srv_error *err);
srv_code pg_checkpoint_delete(srv_txn *t, const srv_run_head *run, const char *checkpoint_id,
                              srv_error *err);
srv_code pg_checkpoint_get(srv_txn *t, srv_arena *a, const srv_run_head *run,
                           const char *checkpoint_id, srv_checkpoint_rec *out, bool *found,
                           srv_error *err);
srv_code pg_checkpoints_list(srv_txn *t, srv_arena *a, const srv_run_head *run,
                             const char *after, uint32_t limit, bool full,
                             srv_checkpoint_rec **out, size_t *n, srv_error *err);
srv_code pg_pin_add(srv_store *st, const char *run_id, const char *checkpoint_id,
                    int64_t expires_us, int64_t *pin, srv_error *err);
srv_code pg_pin_remove(srv_store *st, int64_t pin, srv_error *err);
srv_code pg_pinned(srv_txn *t, const char *run_id, const char *checkpoint_id, int64_t now_us,
                   bool *pinned, srv_error *err);

/* ---- blobs.c: snapshot bytes as chunk rows ---- */

/* Removes stages that no process has written to for PG_STAGE_ABANDONED_S
 * (their uploader died), with their chunks. */
srv_code pg_blobs_sweep(pg_store *s, srv_error *err);
#define PG_STAGE_ABANDONED_S 3600

srv_code pg_stage_begin(srv_store *st, srv_blob_stage **out, srv_error *err);
srv_code pg_stage_write(srv_blob_stage *b, const uint8_t *data, size_t len, srv_error *err);
srv_code pg_stage_finish(srv_blob_stage *b, const char *sha256, srv_error *err);
void pg_stage_free(srv_blob_stage *b);
srv_code pg_blob_link(srv_txn *t, srv_blob_stage *b, uint64_t size, srv_error *err);
srv_code pg_blob_unlink(srv_txn *t, const char *sha256, srv_error *err);
srv_code pg_blob_open(srv_store *st, const char *sha256, srv_blob_reader **out, srv_error *err);
srv_code pg_blob_read(srv_blob_reader *r, uint8_t *buf, size_t cap, size_t *n, srv_error *err);
void pg_blob_close(srv_blob_reader *r);

#endif
