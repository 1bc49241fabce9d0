/* The ledger: the single writer. Mutations from all calls queue here; one
 * thread takes whatever has queued, applies it as one transaction (one
 * fsync for the batch: group commit), each mutation inside its own
 * savepoint together with its idempotency record, and then answers every
 * caller. A key seen before is answered from its record, before any other
 * precondition is looked at. */
#ifndef CAIRN_SERVER_LEDGER_H
#define CAIRN_SERVER_LEDGER_H

#include "base/arena.h"
#include "base/error.h"
#include "store/store.h"

#include <protobuf-c/protobuf-c.h>
#include <stdbool.h>
#include <stdint.h>

typedef struct srv_ledger srv_ledger;

/* Applies one mutation inside the batch transaction and fills resp, an
 * empty message of the mutation's response type in its arena. ctx is the
 * mutation's apply_ctx. Runs on the writer thread. */
typedef srv_code (*srv_apply_fn)(srv_store *st, srv_arena *a, const ProtobufCMessage *req,
                                 void *ctx, int64_t now_us, ProtobufCMessage *resp,
                                 srv_error *err);

/* Called once per mutation on the writer thread after its batch ended:
 * code SRV_OK with the encoded response (in the mutation's arena), or an
 * error. replayed: the response came from an idempotency record. */
typedef void (*srv_mutation_done)(void *ctx, srv_code code, const srv_error *err,
                                  const uint8_t *resp, size_t len, bool replayed);

typedef struct srv_mutation {
    /* Filled by the submitter; must stay valid until done is called. */
    const char *method;                          /* dedup scope, "AppendEvents" */
    const char *run_id;
    const char *key;
    uint8_t fingerprint[32];
    const ProtobufCMessage *request;
    const ProtobufCMessageDescriptor *response;  /* apply fills one; marks replays */
    srv_apply_fn apply;
    void *apply_ctx;
    srv_arena *arena;
    srv_mutation_done done;
    void *ctx;
    /* Owned by the ledger. */
    struct srv_mutation *next;
} srv_mutation;

/* Starts the writer thread over st. max_queue bounds waiting mutations;
 * past it, submissions fail with RESOURCE_EXHAUSTED and a pushback. */
srv_code srv_ledger_start(srv_store *st, int max_queue, srv_ledger **out, srv_error *err);

/* Queues m. On SRV_OK, m->done will be called exactly once (on the writer
 * thread); on failure it is not called and *err says why (overload,
 * stopping). Thread-safe. */
srv_code srv_ledger_submit(srv_ledger *l, srv_mutation *m, srv_error *err);

/* Finishes every queued mutation, stops the thread and frees the ledger.
 * Submissions after this starts fail with UNAVAILABLE. NULL is a no-op. */
void srv_ledger_stop(srv_ledger *l);

#endif
