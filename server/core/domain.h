/* The domain: every rule of cairn and every error text about a request,
 * once, on top of the store's primitive operations (store/store.h).
 *
 * Mutations run on the ledger's writer thread inside the batch
 * transaction (ap->txn), each inside its own savepoint; on an error the
 * ledger undoes the mutation's writes. They fill *out, an empty message
 * of the RPC's response type in ap->arena, and set ap->grew when they
 * appended to a run's log.
 *
 * Reads run on any thread in a read snapshot of their own, and fill *out
 * in the arena a.
 *
 * Requests arrive validated (service/): ids well-formed, sizes within the
 * contract, workers deduplicated, labels sorted. */
#ifndef CAIRN_SERVER_CORE_DOMAIN_H
#define CAIRN_SERVER_CORE_DOMAIN_H

#include "core/ledger.h"
#include "store/store.h"

/* Written by CompleteWorker only, so the log's completions are the
 * server's own. */
#define SRV_COMPLETED_EVENT_TYPE "worker.completed"

/* ---- runs (runs.c) ---- */

/* Creates the run; the same definition again returns it; another one is
 * ALREADY_EXISTS. */
srv_code srv_run_create(srv_apply *ap, const Cairn__V1__CreateRunRequest *req,
                        Cairn__V1__Run *out, srv_error *err);
/* Deletes the run with everything it holds (events, workers, leases,
 * checkpoints and their snapshot references, idempotency records); an
 * unknown run is no error, *existed says which. Pins do not hold a
 * deletion back: a download already streaming keeps what it opened
 * (store.h, backend.h). Watchers hear of it after the commit. */
srv_code srv_run_delete(srv_apply *ap, const char *run_id, bool *existed, srv_error *err);
/* NOT_FOUND for an unknown run. */
srv_code srv_run_read(srv_store *st, srv_arena *a, const char *run_id, Cairn__V1__Run *out,
                      srv_error *err);
/* Runs in creation order after position after (0: the first) whose id
 * starts with prefix ("" for every run), at most limit (>= 1) and about
 * max_bytes encoded (at least one); *next is the position to go on from,
 * 0 at the end. Reads the store a few runs at a time and stops once the
 * page is full, so memory stays near max_bytes. The store filters by
 * prefix, so pages stay full and a token's position stays valid. */
srv_code srv_runs_read(srv_store *st, srv_arena *a, uint64_t after, const char *prefix,
                       uint32_t limit,
                       size_t max_bytes, Cairn__V1__ListRunsResponse *out, uint64_t *next,
                       srv_error *err);
/* "created" before the first event, "completed" once every worker
 * completed, "running" between. */
const char *srv_run_state(const srv_run_head *run);
/* The run's head in the transaction; NOT_FOUND naming run_id. */
srv_code srv_run_require(srv_txn *t, srv_arena *a, const char *run_id, srv_run_head *out,
                         srv_error *err);

/* ---- the event log and completions (events.c) ---- */

/* Appends the batch after the expected_next_seq and fencing checks. */
srv_code srv_events_append(srv_apply *ap, const Cairn__V1__AppendEventsRequest *req,
                           Cairn__V1__AppendEventsResponse *out, srv_error *err);
/* Events from from_seq (>= 1), at most max_events and about max_bytes
 * (at least one); next_seq is the seq after the last one returned, or
 * from_seq. NOT_FOUND for an unknown run. */
srv_code srv_events_read(srv_store *st, srv_arena *a, const char *run_id, uint64_t from_seq,
                         uint32_t max_events, size_t max_bytes,
                         Cairn__V1__ReadEventsResponse *out, srv_error *err);
/* Marks the worker completed and appends its worker.completed event. */
srv_code srv_worker_complete(srv_apply *ap, const Cairn__V1__CompleteWorkerRequest *req,
                             Cairn__V1__CompleteWorkerResponse *out, srv_error *err);

/* ---- leases and fencing (leases.c) ---- */

srv_code srv_lease_acquire(srv_apply *ap, const Cairn__V1__AcquireWorkerRequest *req,
                           Cairn__V1__Lease *out, srv_error *err);
srv_code srv_lease_renew(srv_apply *ap, const Cairn__V1__RenewLeaseRequest *req,
                         Cairn__V1__Lease *out, srv_error *err);
srv_code srv_lease_release(srv_apply *ap, const Cairn__V1__ReleaseWorkerRequest *req,
                           srv_error *err);
/* A fenced write: SRV_OK when token is the current token of the worker's
 * live lease, FAILED_PRECONDITION ("fenced") otherwise. */
srv_code srv_fencing_check(srv_apply *ap, const srv_run_head *run, const char *worker_id,
                           uint64_t token, srv_error *err);
/* Ends the worker's lease, if it has a live one (its worker completed). */
srv_code srv_lease_end(srv_apply *ap, const srv_run_head *run, const char *worker_id,
                       srv_error *err);

/* ---- checkpoints and retention (checkpoints.c) ---- */

/* What a CreateCheckpoint stream established. */
typedef struct srv_new_checkpoint {
    const Cairn__V1__CheckpointHeader *header;  /* validated */
    const char *sha256;                         /* of the bytes received */
    srv_blob_stage *stage;                      /* finished; the caller frees it */
    int retention;                              /* keep this many; older go */
} srv_new_checkpoint;

/* Links the staged snapshot, stores the checkpoint (id after the run's
 * previous one) and applies retention. INVALID_ARGUMENT when events_count
 * passes the run's last seq or a completed worker is not the run's. */
srv_code srv_checkpoint_create(srv_apply *ap, const srv_new_checkpoint *cp,
                               Cairn__V1__Checkpoint *out, srv_error *err);
/* Deletes every checkpoint of the run with its snapshot reference, pinned
 * or not (the run is being deleted). */
srv_code srv_checkpoints_drop_all(srv_apply *ap, const srv_run_head *run, srv_error *err);
/* Deletes all but the newest keep_last_n checkpoints, except pinned ones. */
srv_code srv_checkpoints_cleanup(srv_apply *ap, const char *run_id, uint32_t keep_last_n,
                                 Cairn__V1__CleanupCheckpointsResponse *out, srv_error *err);
/* Checkpoints after checkpoint_id `after` ("" = from the first), oldest
 * first, at most 1000 and about max_bytes encoded (at least one);
 * next_page_token set when more follow. Reads the store a few at a time
 * and stops once the page is full, so memory stays near max_bytes. */
srv_code srv_checkpoints_read(srv_store *st, srv_arena *a, const char *run_id,
                              const char *after, size_t max_bytes,
                              Cairn__V1__ListCheckpointsResponse *out, srv_error *err);
/* One checkpoint, or the latest when checkpoint_id is ""; NOT_FOUND for
 * an unknown run or checkpoint. */
srv_code srv_checkpoint_read(srv_store *st, srv_arena *a, const char *run_id,
                             const char *checkpoint_id, Cairn__V1__Checkpoint *out,
                             srv_error *err);

/* ---- the data lifecycle (lifecycle.c) ---- */

/* Runs and idempotency records deleted per sweep at most: bounds the
 * time one sweep holds the writer (the next sweep goes on). */
#define SRV_SWEEP_BATCH 100

/* One sweep, a mutation of cairnd's own (key NULL; ap->ctx a
 * srv_sweep): deletes up to SRV_SWEEP_BATCH runs completed more than
 * retention_s ago (0: none) and forgets up to SRV_SWEEP_BATCH
 * idempotency keys recorded more than window_s ago (0: none), by the
 * store's clock (ap->now_us). Fills the counts. */
typedef struct srv_sweep {
    int64_t retention_s;
    int64_t window_s;
    size_t runs_deleted;
    size_t keys_forgotten;
} srv_sweep;
srv_code srv_sweep_apply(srv_apply *ap, const ProtobufCMessage *req, ProtobufCMessage *resp,
                         srv_error *err);

/* ---- resume (resume.c) ---- */

/* Which workers still need to run, and from which event. */
srv_code srv_resume(srv_store *st, srv_arena *a, const Cairn__V1__ResumeRunRequest *req,
                    Cairn__V1__ResumeResult *out, srv_error *err);

#endif
