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

#include "arena.h"
#include "cairn/v1/coordinator.pb-c.h"
#include "error.h"

#include <stdbool.h>
#include <stdint.h>

#define SRV_STORE_OPS_VERSION 1

typedef struct srv_store srv_store;

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
};

/* Every backend's handle starts with this. */
struct srv_store {
    const struct srv_store_ops *ops;
};

/* Opens (creating if needed) the SQLite store in dir/cairn.db with readers
 * reader connections. Migrates the schema forward; refuses a schema newer
 * than this build. */
srv_code srv_store_sqlite_open(const char *dir, int readers, srv_store **out,
                               srv_error *err);

static inline void srv_store_close(srv_store *st)
{
    if (st)
        st->ops->close(st);
}

#endif
