/* LoadCheckpoint: a server stream of the checkpoint's metadata, then its
 * snapshot in chunks, read from the store one at a time (one message in
 * flight, so a slow reader holds one chunk of memory). The bytes are
 * hashed as they go out; if they do not match the stored SHA-256 the
 * stream ends with DATA_LOSS. The checkpoint is pinned while it streams,
 * so retention and CleanupCheckpoints leave it alone. */
#include "service/handlers/handlers.h"
#include "service/contract.h"
#include "base/hex.h"
#include "base/pbc.h"
#include "core/pins.h"

#include <openssl/evp.h>
#include <stdlib.h>
#include <string.h>

typedef struct download {
    srv_app *app;
    srv_call *call;
    const char *run_id;
    Cairn__V1__Checkpoint meta;
    bool pinned;
    const char *pinned_id;        /* meta may be overwritten by a failed read */
    srv_blob_reader *reader;
    EVP_MD_CTX *sha;
    uint64_t sent;
    uint8_t *buf;
} download;

static void release(download *d)
{
    d->app->store->ops->blob_close(d->reader);
    d->reader = NULL;
    EVP_MD_CTX_free(d->sha);
    d->sha = NULL;
    free(d->buf);
    d->buf = NULL;
    if (d->pinned)
        srv_pins_remove(d->app->pins, d->run_id, d->pinned_id);
    d->pinned = false;
}

static void fail(download *d, const srv_error *err)
{
    release(d);
    srv_call_fail(d->call, err);
}

static void on_sent(srv_call *c, void *arg, bool ok);

/* Sends one CheckpointChunk: the metadata (first) or data. */
static srv_code send_chunk(download *d, const Cairn__V1__Checkpoint *meta, const uint8_t *data,
                           size_t len, srv_error *err)
{
    Cairn__V1__CheckpointChunk chunk = CAIRN__V1__CHECKPOINT_CHUNK__INIT;
    chunk.checkpoint = (Cairn__V1__Checkpoint *)meta;
    chunk.data.data = (uint8_t *)data;
    chunk.data.len = len;
    size_t n;
    uint8_t *msg = srv_pack_heap(&chunk.base, &n);
    if (!msg)
        return srv_fail(err, SRV_RESOURCE_EXHAUSTED, "out of memory");
    srv_call_send(d->call, msg, n, on_sent, d);
    free(msg);
    return SRV_OK;
}

static void on_sent(srv_call *c, void *arg, bool ok)
{
    (void)c;
    download *d = arg;
    srv_error err;
    if (!ok) {
        srv_fail(&err, SRV_CANCELLED, "the client stopped reading");
        fail(d, &err);
        return;
    }
    size_t n = 0;
    if (d->app->store->ops->blob_read(d->reader, d->buf, SRV_CHUNK_MAX, &n, &err)) {
        fail(d, &err);
        return;
    }
    if (n > 0) {
        d->sent += n;
        EVP_DigestUpdate(d->sha, d->buf, n);
        if (d->sent > d->meta.snapshot_size)
            srv_fail(&err, SRV_DATA_LOSS, "checkpoint %s: stored snapshot is longer than its %llu bytes",
                     d->meta.checkpoint_id, (unsigned long long)d->meta.snapshot_size);
        else if (!send_chunk(d, NULL, d->buf, n, &err))
            return;
        fail(d, &err);
        return;
    }

    unsigned char md[32];
    unsigned int len = 0;
    EVP_DigestFinal_ex(d->sha, md, &len);
    char hex[65];
    srv_hex(hex, md, 32);
    if (d->sent != d->meta.snapshot_size || strcmp(hex, d->meta.snapshot_sha256) != 0) {
        srv_fail(&err, SRV_DATA_LOSS,
                 "checkpoint %s: the stored snapshot fails its SHA-256 (%llu bytes hashing to %s, "
                 "expected %llu bytes hashing to %s); discard what was received",
                 d->meta.checkpoint_id, (unsigned long long)d->sent, hex,
                 (unsigned long long)d->meta.snapshot_size, d->meta.snapshot_sha256);
        fail(d, &err);
        return;
    }
    release(d);
    srv_call_finish(d->call);
}

void srv_start_load_checkpoint(srv_app *app, srv_call *call, ProtobufCMessage *msg)
{
    const Cairn__V1__LoadCheckpointRequest *req = (const Cairn__V1__LoadCheckpointRequest *)msg;
    srv_arena *a = srv_call_arena(call);
    srv_store *st = app->store;
    srv_error err;
    download *d = srv_arena_alloc(a, sizeof *d);
    if (!d) {
        srv_fail(&err, SRV_RESOURCE_EXHAUSTED, "out of memory");
        srv_call_fail(call, &err);
        return;
    }
    memset(d, 0, sizeof *d);
    d->app = app;
    d->call = call;
    d->run_id = req->run_id;

    if (st->ops->get_checkpoint(st, a, req->run_id, req->checkpoint_id, &d->meta, &err)) {
        fail(d, &err);
        return;
    }
    if (!srv_pins_add(app->pins, req->run_id, d->meta.checkpoint_id)) {
        srv_fail(&err, SRV_RESOURCE_EXHAUSTED, "out of memory");
        fail(d, &err);
        return;
    }
    d->pinned = true;
    d->pinned_id = d->meta.checkpoint_id;
    /* Pinned now, but a cleanup may have deleted it just before. */
    if (st->ops->get_checkpoint(st, a, req->run_id, d->pinned_id, &d->meta, &err)) {
        fail(d, &err);
        return;
    }
    if (st->ops->blob_open(st, d->meta.snapshot_sha256, &d->reader, &err)) {
        /* Gone with its checkpoint, or lost under it. */
        Cairn__V1__Checkpoint again;
        srv_error again_err;
        if (err.code == SRV_NOT_FOUND &&
            !st->ops->get_checkpoint(st, a, req->run_id, d->pinned_id, &again, &again_err))
            srv_fail(&err, SRV_DATA_LOSS, "checkpoint %s: its snapshot bytes are missing",
                     d->meta.checkpoint_id);
        fail(d, &err);
        return;
    }
    d->buf = malloc(SRV_CHUNK_MAX);
    d->sha = EVP_MD_CTX_new();
    if (!d->buf || !d->sha || !EVP_DigestInit_ex(d->sha, EVP_sha256(), NULL)) {
        srv_fail(&err, SRV_RESOURCE_EXHAUSTED, "out of memory");
        fail(d, &err);
        return;
    }
    if (send_chunk(d, &d->meta, NULL, 0, &err))
        fail(d, &err);
}
