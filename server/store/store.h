/* The store interface: what cairnd needs from durable storage, as a
 * versioned table of functions that a backend (store_sqlite.c, later
 * store_pg.c) fills in. Methods are only ever appended.
 *
 * Outputs are protobuf-c messages allocated in the caller's arena, so a
 * handler can encode them as they are; the store never frees them.
 *
 * Threads: the write functions (begin .. rollback_to, dedup_*, and the
 * mutations) are called only from the ledger's writer thread, always
 * inside begin/commit. The read functions may be called from any thread,
 * concurrently with each other and with the writer; they see committed
 * data only. Every function may block on I/O.
 *
 * Errors: functions return SRV_OK or a code with *err filled: NOT_FOUND
 * for an unknown run, FAILED_PRECONDITION / ALREADY_EXISTS for a request
 * the current state refuses, RESOURCE_EXHAUSTED (with pushback) when the
 * disk is full, UNAVAILABLE when storage fails. */
#ifndef CAIRN_SERVER_STORE_H
#define CAIRN_SERVER_STORE_H

#include "base/arena.h"
#include "cairn/v1/coordinator.pb-c.h"
#include "base/error.h"

#include <stdbool.h>
#include <stdint.h>

#define SRV_STORE_OPS_VERSION 3

typedef struct srv_store srv_store;
typedef struct srv_pins srv_pins;

/* Snapshot bytes on their way in: staged while the stream arrives, then
 * linked to a checkpoint by create_checkpoint (content-addressed by
 * SHA-256, stored once however many checkpoints share it). */
typedef struct srv_blob_stage srv_blob_stage;
/* Snapshot bytes on their way out. */
typedef struct srv_blob_reader srv_blob_reader;

/* Told after each commit which runs' logs grew, and to which seq (a run
 * may be told more than once per commit, in increasing order); called on
 * the writer thread. Must not block. */
typedef void (*srv_commit_observer)(void *ctx, const char *run_id, uint64_t last_seq);

/* What ResumeRun needs, read in one consistent snapshot. */
typedef struct srv_completion {
    const char *worker_id;
    uint64_t seq;             /* of its worker.completed event */
} srv_completion;

typedef struct srv_resume_state {
    Cairn__V1__Run run;
    bool has_checkpoint;
    Cairn__V1__Checkpoint checkpoint;  /* the latest, when has_checkpoint */
    srv_completion *completions;       /* in seq order */
    size_t n_completions;
} srv_resume_state;

/* The checkpoint fields a CreateCheckpoint stream established. */
typedef struct srv_new_checkpoint {
    const Cairn__V1__CheckpointHeader *header;  /* validated */
    const char *sha256;                         /* of the bytes received */
    srv_blob_stage *stage;                      /* finished */
    int retention;                              /* keep this many; older go */
    srv_pins *pins;                             /* never delete these */
} srv_new_checkpoint;

/* The scope of an idempotency key: (run, method, key). */
typedef struct srv_dedup_key {
    const char *run_id;
    const char *method;       /* short RPC name, "AppendEvents" */
    const char *key;
} srv_dedup_key;

typedef struct srv_dedup_record {
    uint8_t fingerprint[32];  /* SHA-256 of the request without its key */
    const uint8_t *response;  /* the encoded response as first sent */
    size_t response_len;
} srv_dedup_record;

struct srv_store_ops {
    unsigned version;         /* SRV_STORE_OPS_VERSION */
    const char *name;         /* "sqlite" */

    /* Closes the store; a transaction still open is rolled back. */
    void (*close)(srv_store *st);
    /* Registers the one observer of log growth (before writes start). */
    void (*set_commit_observer)(srv_store *st, srv_commit_observer fn, void *ctx);

    /* ---- write transactions (writer thread only) ---- */

    srv_code (*begin)(srv_store *st, srv_error *err);
    /* Makes everything since begin durable (fsync) or fails as a whole. */
    srv_code (*commit)(srv_store *st, srv_error *err);
    void (*rollback)(srv_store *st);
    /* A nested scope for one mutation of a batch: release keeps its
     * effects, rollback_to undoes them and ends the scope. */
    srv_code (*savepoint)(srv_store *st, srv_error *err);
    srv_code (*release)(srv_store *st, srv_error *err);
    void (*rollback_to)(srv_store *st);

    /* Looks up a key; *found tells whether a record exists. The record's
     * response is copied into the arena. */
    srv_code (*dedup_get)(srv_store *st, srv_arena *a, const srv_dedup_key *k,
                          srv_dedup_record *out, bool *found, srv_error *err);
    /* Records a key; the run must exist. */
    srv_code (*dedup_put)(srv_store *st, const srv_dedup_key *k,
                          const srv_dedup_record *rec, int64_t now_us, srv_error *err);

    /* Creates the run, or, when a run with that id and the same workers and
     * labels exists, returns it; a different definition is ALREADY_EXISTS.
     * req is validated and normalized (workers deduplicated, labels sorted). */
    srv_code (*create_run)(srv_store *st, srv_arena *a,
                           const Cairn__V1__CreateRunRequest *req, int64_t now_us,
                           Cairn__V1__Run *out, srv_error *err);
    /* Appends req->events as seqs next_seq.., all or nothing, after the
     * expected_next_seq check. Fills first_seq, last_seq and
     * events_since_checkpoint. */
    srv_code (*append_events)(srv_store *st, const Cairn__V1__AppendEventsRequest *req,
                              int64_t now_us, Cairn__V1__AppendEventsResponse *out,
                              srv_error *err);

    /* Marks a worker of the run completed and appends its
     * "worker.completed" event. INVALID_ARGUMENT when the worker is not
     * the run's; FAILED_PRECONDITION when it already completed, or for a
     * fencing token that is not current. */
    srv_code (*complete_worker)(srv_store *st, const Cairn__V1__CompleteWorkerRequest *req,
                                int64_t now_us, Cairn__V1__CompleteWorkerResponse *out,
                                srv_error *err);
    /* Creates a checkpoint from a finished stage (the stage stays the
     * caller's: free it after the transaction ends), then applies
     * retention. INVALID_ARGUMENT when events_count passes the run's last
     * seq or a completed worker is not the run's. */
    srv_code (*create_checkpoint)(srv_store *st, srv_arena *a, const srv_new_checkpoint *cp,
                                  int64_t now_us, Cairn__V1__Checkpoint *out, srv_error *err);
    /* Leases (see docs/api.md): acquire fails FAILED_PRECONDITION while
     * another lease is live or the worker completed; renew needs the live
     * lease's id; release of a lease no longer live is a no-op, of one
     * taken over is FAILED_PRECONDITION. Each acquire's fencing token is
     * larger than every earlier one of that worker. */
    srv_code (*acquire_worker)(srv_store *st, srv_arena *a,
                               const Cairn__V1__AcquireWorkerRequest *req, int64_t now_us,
                               Cairn__V1__Lease *out, srv_error *err);
    srv_code (*renew_lease)(srv_store *st, srv_arena *a, const Cairn__V1__RenewLeaseRequest *req,
                            int64_t now_us, Cairn__V1__Lease *out, srv_error *err);
    srv_code (*release_worker)(srv_store *st, const Cairn__V1__ReleaseWorkerRequest *req,
                               int64_t now_us, srv_error *err);
    /* Deletes all but the newest keep_last_n checkpoints of the run,
     * skipping pinned ones; fills deleted and deleted_ids. */
    srv_code (*cleanup_checkpoints)(srv_store *st, srv_arena *a, const char *run_id,
                                    uint32_t keep_last_n, srv_pins *pins,
                                    Cairn__V1__CleanupCheckpointsResponse *out, srv_error *err);

    /* ---- snapshot staging (any thread; one stage per upload) ---- */

    srv_code (*stage_begin)(srv_store *st, srv_blob_stage **out, srv_error *err);
    srv_code (*stage_write)(srv_blob_stage *b, const uint8_t *data, size_t len, srv_error *err);
    /* Makes the staged bytes durable; sha256 is their hex digest. */
    srv_code (*stage_finish)(srv_blob_stage *b, const char *sha256, srv_error *err);
    /* Discards what no commit linked, and frees. NULL is a no-op. */
    void (*stage_free)(srv_blob_stage *b);

    /* ---- reads (any thread) ---- */

    srv_code (*get_run)(srv_store *st, srv_arena *a, const char *run_id,
                        Cairn__V1__Run *out, srv_error *err);
    /* Runs in creation order after the position `after` (0 = the start);
     * at most limit. *next is the position to continue from, 0 at the end. */
    srv_code (*list_runs)(srv_store *st, srv_arena *a, uint64_t after, uint32_t limit,
                          Cairn__V1__ListRunsResponse *out, uint64_t *next,
                          srv_error *err);
    /* Events with seq >= from_seq, at most max_events, and stopping before
     * the payloads would pass max_bytes (but always at least one event). */
    srv_code (*read_events)(srv_store *st, srv_arena *a, const char *run_id,
                            uint64_t from_seq, uint32_t max_events, size_t max_bytes,
                            Cairn__V1__ReadEventsResponse *out, srv_error *err);
    /* The run's checkpoints after checkpoint_id `after` ("" = from the
     * first), oldest first: at most 1000, stopping before their encoding
     * passes max_bytes (but at least one). Sets next_page_token when more
     * follow. */
    srv_code (*list_checkpoints)(srv_store *st, srv_arena *a, const char *run_id,
                                 const char *after, size_t max_bytes,
                                 Cairn__V1__ListCheckpointsResponse *out, srv_error *err);
    /* One checkpoint, or the latest when checkpoint_id is ""; NOT_FOUND
     * for an unknown run, or when there is no such checkpoint. */
    srv_code (*get_checkpoint)(srv_store *st, srv_arena *a, const char *run_id,
                               const char *checkpoint_id, Cairn__V1__Checkpoint *out,
                               srv_error *err);
    srv_code (*read_resume_state)(srv_store *st, srv_arena *a, const char *run_id,
                                  srv_resume_state *out, srv_error *err);
    /* Opens the bytes of a snapshot by its SHA-256; NOT_FOUND when they
     * are gone (deleted after the caller read the checkpoint). */
    srv_code (*blob_open)(srv_store *st, const char *sha256, srv_blob_reader **out,
                          srv_error *err);
    /* Reads up to cap bytes; *n == 0 at the end. */
    srv_code (*blob_read)(srv_blob_reader *r, uint8_t *buf, size_t cap, size_t *n,
                          srv_error *err);
    /* NULL is a no-op. */
    void (*blob_close)(srv_blob_reader *r);
};

/* Every backend's handle starts with this. */
struct srv_store {
    const struct srv_store_ops *ops;
};

/* Opens (creating if needed) the SQLite store in dir/cairn.db with readers
 * reader connections, snapshots in dir/blobs/. Migrates the schema
 * forward; refuses a schema newer than this build. Removes staged uploads
 * and snapshot files no checkpoint references (left by a crash). */
srv_code srv_store_sqlite_open(const char *dir, int readers, srv_store **out,
                               srv_error *err);

static inline void srv_store_close(srv_store *st)
{
    if (st)
        st->ops->close(st);
}

#endif
