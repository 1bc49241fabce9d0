/* CreateCheckpoint: a client stream of one header, then snapshot chunks.
 * The bytes go to a store stage as they arrive (never all in memory),
 * hashed on the way (core/snapshots.c); only when exactly snapshot_size
 * bytes arrived and the hash matches does the checkpoint go to the ledger,
 * which commits it atomically with its idempotency record. A stream that
 * ends early or carries too much leaves nothing behind.
 *
 * The key is looked up (read-only) as soon as the header arrives: a
 * retried upload that committed already is answered at once when the
 * header names the content's SHA-256 (libcairn's always does), else its
 * bytes are hashed but not stored, to tell a retry from a reused key.
 *
 * What touches the disk (the key's lookup, opening the stage, hashing and
 * writing each chunk, the final fsync) runs on the I/O pool; the gRPC
 * threads only receive and decode. One step at a time per upload: the next
 * message is asked for once the pool is done with this one. */
#include "service/handlers/handlers.h"
#include "service/contract.h"
#include "service/scope.h"
#include "service/validate.h"
#include "core/snapshots.h"
#include "base/pbc.h"

#include <stdio.h>
#include <string.h>

typedef struct upload {
    srv_job job;                     /* the step in hand, on the I/O pool */
    srv_app *app;
    srv_call *call;
    const srv_identity *who;         /* the caller, whose scope the header's run must be in */
    srv_mutation *m;                 /* from the table row */
    Cairn__V1__CheckpointHeader *header;
    uint8_t header_fp[32];
    bool seen;                       /* the key has a record already */
    srv_dedup_record record;
    srv_upload *bytes;
    Cairn__V1__CreateCheckpointRequest *chunk; /* for write_chunk, on the heap */
    srv_new_checkpoint cp;
} upload;

#define UPLOAD_OF(j) ((upload *)(j)) /* the job is the upload's first member */

static void fail(upload *u, const srv_error *err)
{
    srv_upload_free(u->bytes);
    u->bytes = NULL;
    srv_call_fail(u->call, err);
}

srv_code srv_apply_create_checkpoint(srv_apply *ap, const ProtobufCMessage *req,
                                     ProtobufCMessage *resp, srv_error *err)
{
    (void)req; /* the header, in ap->ctx with the bytes */
    return srv_checkpoint_create(ap, ap->ctx, (Cairn__V1__Checkpoint *)resp, err);
}

static void committed(void *ctx, srv_code code, const srv_error *err, const uint8_t *resp,
                      size_t len, bool replayed)
{
    upload *u = ctx;
    srv_upload_free(u->bytes); /* after the batch: the stage is linked or dropped */
    u->bytes = NULL;
    if (code)
        srv_call_fail(u->call, err);
    else
        srv_call_reply(u->call, resp, len, replayed);
}

/* Answers from the key's record (the fingerprint known). */
static srv_code replay(upload *u, srv_error *err)
{
    const uint8_t *resp;
    size_t len;
    if (srv_ledger_replay(u->m, &u->record, srv_call_arena(u->call), &resp, &len, err))
        return err->code;
    srv_upload_free(u->bytes);
    u->bytes = NULL;
    srv_call_reply(u->call, resp, len, true);
    return SRV_OK;
}

/* The stream ended with every byte: check, make durable, commit. */
static srv_code submit(upload *u, srv_error *err)
{
    if (srv_upload_finish(u->bytes, u->header->snapshot_sha256, err))
        return err->code;
    srv_checkpoint_fingerprint(u->header_fp, srv_upload_sha256(u->bytes), u->m->fingerprint);
    if (u->seen)
        return replay(u, err);
    u->cp = (srv_new_checkpoint){u->header, srv_upload_sha256(u->bytes),
                                 srv_upload_stage(u->bytes),
                                 u->app->cfg->checkpoint_retention};
    u->m->apply_ctx = &u->cp;
    u->m->done = committed;
    u->m->ctx = u;
    return srv_ledger_submit(u->app->ledger, u->m, err);
}

static void on_chunk(srv_call *c, void *arg, const uint8_t *msg, size_t len, bool ok);

static void finish_upload(srv_job *job)
{
    upload *u = UPLOAD_OF(job);
    srv_error err;
    if (submit(u, &err))
        fail(u, &err);
}

static void write_chunk(srv_job *job)
{
    upload *u = UPLOAD_OF(job);
    srv_error err;
    srv_code rc = srv_upload_write(u->bytes, u->chunk->chunk.data, u->chunk->chunk.len, &err);
    protobuf_c_message_free_unpacked(&u->chunk->base, NULL);
    u->chunk = NULL;
    if (rc)
        fail(u, &err);
    else
        srv_call_recv(u->call, on_chunk, u);
}

static void on_chunk(srv_call *c, void *arg, const uint8_t *msg, size_t len, bool ok)
{
    (void)c;
    upload *u = arg;
    srv_error err;
    uint64_t size = u->header->snapshot_size, received = srv_upload_received(u->bytes);

    if (!msg) {
        if (!ok)
            srv_fail(&err, SRV_CANCELLED, "chunk: the request stream broke after %llu bytes",
                     (unsigned long long)received);
        else if (received != size)
            srv_fail(&err, SRV_INVALID_ARGUMENT,
                     "snapshot_size: the header declared %llu bytes but the stream ended after %llu; "
                     "nothing was stored",
                     (unsigned long long)size, (unsigned long long)received);
        else {
            srv_pool_run(u->app->io, &u->job, finish_upload); /* it answers */
            return;
        }
        fail(u, &err);
        return;
    }

    /* Chunks are decoded on the heap, not into the call's arena, which
     * would otherwise grow with the whole snapshot. */
    ProtobufCMessage *m;
    if (srv_unpack(&cairn__v1__create_checkpoint_request__descriptor, NULL, msg, len, &m, &err)) {
        fail(u, &err);
        return;
    }
    Cairn__V1__CreateCheckpointRequest *req = (Cairn__V1__CreateCheckpointRequest *)m;
    srv_code rc = SRV_OK;
    if (req->part_case == CAIRN__V1__CREATE_CHECKPOINT_REQUEST__PART_HEADER)
        rc = srv_fail(&err, SRV_INVALID_ARGUMENT, "header: a second header after %llu bytes",
                      (unsigned long long)received);
    else if (req->part_case != CAIRN__V1__CREATE_CHECKPOINT_REQUEST__PART_CHUNK)
        rc = srv_fail(&err, SRV_INVALID_ARGUMENT, "part: a message with neither header nor chunk");
    else if (req->chunk.len > SRV_CHUNK_MAX)
        rc = srv_fail(&err, SRV_INVALID_ARGUMENT, "chunk: must be at most %d bytes, got %zu",
                      SRV_CHUNK_MAX, req->chunk.len);
    if (rc) {
        protobuf_c_message_free_unpacked(m, NULL);
        fail(u, &err);
        return;
    }
    u->chunk = req;
    srv_pool_run(u->app->io, &u->job, write_chunk);
}

/* Decodes and checks the header. */
static srv_code take_header(upload *u, const uint8_t *msg, size_t len, srv_error *err)
{
    srv_arena *a = srv_call_arena(u->call);
    ProtobufCMessage *m;
    if (srv_unpack(&cairn__v1__create_checkpoint_request__descriptor, a, msg, len, &m, err))
        return err->code;
    Cairn__V1__CreateCheckpointRequest *req = (Cairn__V1__CreateCheckpointRequest *)m;
    if (req->part_case != CAIRN__V1__CREATE_CHECKPOINT_REQUEST__PART_HEADER)
        return srv_fail(err, SRV_INVALID_ARGUMENT, "header: the first message must be the header%s",
                        req->part_case == CAIRN__V1__CREATE_CHECKPOINT_REQUEST__PART_CHUNK
                            ? ", got a snapshot chunk"
                            : ", got a message with neither header nor chunk");
    Cairn__V1__CheckpointHeader *h = u->header = req->header;
    srv_call_set_run_id(u->call, h->run_id);
    if (srv_validate_checkpoint_header(h, a, u->app->cfg->max_snapshot_bytes, err) ||
        srv_scope_run(u->who, u->m->method, h->run_id, err) ||
        srv_fingerprint(a, &h->base, u->header_fp, err))
        return err->code;
    u->m->run_id = h->run_id;
    u->m->key = h->idempotency_key;
    u->m->request = &h->base;
    return SRV_OK;
}

/* Looks the key up, then answers a known retry or opens the stage. */
static srv_code open_upload(upload *u, srv_error *err)
{
    if (srv_ledger_lookup(u->app->store, u->m, srv_call_arena(u->call), &u->record, &u->seen,
                          err))
        return err->code;
    const char *sha = u->header->snapshot_sha256;
    if (u->seen && *sha) {
        /* A retry (or a reused key) is known without the bytes. */
        srv_checkpoint_fingerprint(u->header_fp, sha, u->m->fingerprint);
        return replay(u, err);
    }
    if (srv_upload_begin(u->app->store, &u->app->uploads, u->header->snapshot_size, !u->seen,
                         &u->bytes, err))
        return err->code;
    srv_call_recv(u->call, on_chunk, u);
    return SRV_OK;
}

static void run_open_upload(srv_job *job)
{
    upload *u = UPLOAD_OF(job);
    srv_error err;
    if (open_upload(u, &err))
        fail(u, &err);
}

static void on_header(srv_call *c, void *arg, const uint8_t *msg, size_t len, bool ok)
{
    (void)c;
    upload *u = arg;
    srv_error err;
    if (!msg) {
        srv_fail(&err, ok ? SRV_INVALID_ARGUMENT : SRV_CANCELLED,
                 "header: the stream ended before its first message");
        fail(u, &err);
        return;
    }
    if (take_header(u, msg, len, &err)) {
        fail(u, &err);
        return;
    }
    srv_pool_run(u->app->io, &u->job, run_open_upload);
}

void srv_start_create_checkpoint(srv_app *app, srv_call *call, const srv_identity *who,
                                 srv_mutation *m)
{
    upload *u = srv_arena_alloc(srv_call_arena(call), sizeof *u);
    if (!u) {
        srv_error err;
        srv_fail(&err, SRV_RESOURCE_EXHAUSTED, "out of memory");
        srv_call_fail(call, &err);
        return;
    }
    memset(u, 0, sizeof *u);
    u->app = app;
    u->call = call;
    u->who = who;
    u->m = m;
    /* A stalled upload is cancelled: its stage goes with it (fail). */
    srv_call_idle_timeout(call, app->cfg->transfer_idle_ms);
    srv_call_recv(call, on_header, u);
}
