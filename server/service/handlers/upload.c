/* CreateCheckpoint: a client stream of one header, then snapshot chunks.
 * The bytes go to a store stage as they arrive (never all in memory),
 * hashed on the way; only when exactly snapshot_size bytes arrived and the
 * hash matches does the checkpoint go to the ledger, which commits it
 * atomically with its idempotency record. A stream that ends early or
 * carries too much leaves nothing behind. */
#include "service/handlers/handlers.h"
#include "service/contract.h"
#include "base/hex.h"
#include "service/validate.h"
#include "base/pbc.h"

#include <openssl/evp.h>
#include <stdio.h>
#include <string.h>

typedef struct upload {
    srv_app *app;
    srv_call *call;
    Cairn__V1__CheckpointHeader *header;
    srv_blob_stage *stage;
    EVP_MD_CTX *sha;
    uint64_t received;
    char sha_hex[65];
    srv_new_checkpoint cp;
    srv_mutation m;
} upload;

static void release(upload *u)
{
    if (u->stage)
        u->app->store->ops->stage_free(u->stage);
    u->stage = NULL;
    EVP_MD_CTX_free(u->sha);
    u->sha = NULL;
}

static void fail(upload *u, const srv_error *err)
{
    release(u);
    srv_call_fail(u->call, err);
}

static srv_code apply_create_checkpoint(srv_store *st, srv_arena *a, const ProtobufCMessage *req,
                                        void *ctx, int64_t now_us, ProtobufCMessage *resp,
                                        srv_error *err)
{
    (void)req;
    upload *u = ctx;
    Cairn__V1__Checkpoint *out = (Cairn__V1__Checkpoint *)resp;
    u->cp = (srv_new_checkpoint){u->header, u->sha_hex, u->stage,
                                 u->app->cfg->checkpoint_retention, u->app->pins};
    return st->ops->create_checkpoint(st, a, &u->cp, now_us, out, err);
}

static void committed(void *ctx, srv_code code, const srv_error *err, const uint8_t *resp,
                      size_t len, bool replayed)
{
    upload *u = ctx;
    release(u);
    if (code)
        srv_call_fail(u->call, err);
    else
        srv_call_reply(u->call, resp, len, replayed);
}

/* The stream ended with every byte: check, make durable, commit. */
static srv_code submit(upload *u, srv_error *err)
{
    const Cairn__V1__CheckpointHeader *h = u->header;
    unsigned char md[32];
    unsigned int n = 0;
    EVP_DigestFinal_ex(u->sha, md, &n);
    srv_hex(u->sha_hex, md, 32);
    if (*h->snapshot_sha256 && strcmp(h->snapshot_sha256, u->sha_hex) != 0)
        return srv_fail(err, SRV_INVALID_ARGUMENT,
                        "snapshot_sha256: the header says %s but the %llu bytes received hash "
                        "to %s",
                        h->snapshot_sha256, (unsigned long long)u->received, u->sha_hex);
    srv_store *st = u->app->store;
    if (st->ops->stage_finish(u->stage, u->sha_hex, err))
        return err->code;

    /* The request is the header and the content: a key names both. */
    srv_arena *a = srv_call_arena(u->call);
    uint8_t header_fp[32];
    if (srv_fingerprint(a, &u->header->base, header_fp, err))
        return err->code;
    EVP_MD_CTX *fp = EVP_MD_CTX_new();
    if (!fp)
        return srv_fail(err, SRV_RESOURCE_EXHAUSTED, "out of memory");
    EVP_DigestInit_ex(fp, EVP_sha256(), NULL);
    EVP_DigestUpdate(fp, header_fp, sizeof header_fp);
    EVP_DigestUpdate(fp, u->sha_hex, 64);
    EVP_DigestFinal_ex(fp, u->m.fingerprint, &n);
    EVP_MD_CTX_free(fp);

    u->m.method = "CreateCheckpoint";
    u->m.run_id = h->run_id;
    u->m.key = h->idempotency_key;
    u->m.request = &u->header->base;
    u->m.response = &cairn__v1__checkpoint__descriptor;
    u->m.apply = apply_create_checkpoint;
    u->m.apply_ctx = u;
    u->m.arena = a;
    u->m.done = committed;
    u->m.ctx = u;
    return srv_ledger_submit(u->app->ledger, &u->m, err);
}

static void on_chunk(srv_call *c, void *arg, const uint8_t *msg, size_t len, bool ok)
{
    upload *u = arg;
    srv_error err;
    uint64_t size = u->header->snapshot_size;

    if (!msg) {
        if (!ok)
            srv_fail(&err, SRV_CANCELLED, "chunk: the request stream broke after %llu bytes",
                     (unsigned long long)u->received);
        else if (u->received != size)
            srv_fail(&err, SRV_INVALID_ARGUMENT,
                     "snapshot_size: the header declared %llu bytes but the stream ended after %llu; "
                     "nothing was stored",
                     (unsigned long long)size, (unsigned long long)u->received);
        else if (!submit(u, &err))
            return; /* the ledger answers */
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
                      (unsigned long long)u->received);
    else if (req->part_case != CAIRN__V1__CREATE_CHECKPOINT_REQUEST__PART_CHUNK)
        rc = srv_fail(&err, SRV_INVALID_ARGUMENT, "part: a message with neither header nor chunk");
    else if (req->chunk.len > SRV_CHUNK_MAX)
        rc = srv_fail(&err, SRV_INVALID_ARGUMENT, "chunk: must be at most %d bytes, got %zu",
                      SRV_CHUNK_MAX, req->chunk.len);
    else if (req->chunk.len > size - u->received)
        rc = srv_fail(&err, SRV_INVALID_ARGUMENT,
                      "chunk: the stream carries more than the %llu bytes snapshot_size declared",
                      (unsigned long long)size);
    else if (!(rc = u->app->store->ops->stage_write(u->stage, req->chunk.data, req->chunk.len,
                                                    &err))) {
        EVP_DigestUpdate(u->sha, req->chunk.data, req->chunk.len);
        u->received += req->chunk.len;
    }
    protobuf_c_message_free_unpacked(m, NULL);
    if (rc)
        fail(u, &err);
    else
        srv_call_recv(c, on_chunk, u);
}

static void on_header(srv_call *c, void *arg, const uint8_t *msg, size_t len, bool ok)
{
    upload *u = arg;
    srv_error err;
    ProtobufCMessage *m;
    if (!msg) {
        srv_fail(&err, ok ? SRV_INVALID_ARGUMENT : SRV_CANCELLED,
                 "header: the stream ended before its first message");
        fail(u, &err);
        return;
    }
    if (srv_unpack(&cairn__v1__create_checkpoint_request__descriptor, srv_call_arena(c), msg, len,
                   &m, &err)) {
        fail(u, &err);
        return;
    }
    Cairn__V1__CreateCheckpointRequest *req = (Cairn__V1__CreateCheckpointRequest *)m;
    if (req->part_case != CAIRN__V1__CREATE_CHECKPOINT_REQUEST__PART_HEADER) {
        srv_fail(&err, SRV_INVALID_ARGUMENT, "header: the first message must be the header%s",
                 req->part_case == CAIRN__V1__CREATE_CHECKPOINT_REQUEST__PART_CHUNK
                     ? ", got a snapshot chunk"
                     : ", got a message with neither header nor chunk");
        fail(u, &err);
        return;
    }
    u->header = req->header;
    srv_store *st = u->app->store;
    if (srv_validate_checkpoint_header(u->header, srv_call_arena(c),
                                       u->app->cfg->max_snapshot_bytes, &err) ||
        st->ops->stage_begin(st, &u->stage, &err)) {
        fail(u, &err);
        return;
    }
    if (!(u->sha = EVP_MD_CTX_new()) || !EVP_DigestInit_ex(u->sha, EVP_sha256(), NULL)) {
        srv_fail(&err, SRV_RESOURCE_EXHAUSTED, "out of memory");
        fail(u, &err);
        return;
    }
    srv_call_recv(c, on_chunk, u);
}

void srv_start_create_checkpoint(srv_app *app, srv_call *call)
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
    srv_call_recv(call, on_header, u);
}
