/* LoadCheckpoint: a server stream of the checkpoint's metadata, then its
 * snapshot in chunks, read one at a time (one message in flight, so a
 * slow reader holds one chunk of memory). core/snapshots.c pins the
 * checkpoint while it streams and checks the bytes against their SHA-256;
 * a mismatch ends the stream with DATA_LOSS. Opening and each read run on
 * the I/O pool (dispatch starts the call there; send_next goes back). */
#include "service/handlers/handlers.h"
#include "service/contract.h"
#include "core/snapshots.h"
#include "base/pbc.h"

#include <stdlib.h>
#include <string.h>

typedef struct download {
    srv_job job;                  /* the next read, on the I/O pool */
    srv_pool *io;
    srv_call *call;
    Cairn__V1__Checkpoint meta;
    srv_download *bytes;
    uint8_t *buf;
} download;

static void release(download *d)
{
    srv_download_close(d->bytes);
    d->bytes = NULL;
    free(d->buf);
    d->buf = NULL;
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

/* Reads the next chunk and sends it, or ends the stream. */
static void send_next(srv_job *job)
{
    download *d = (download *)job; /* the job is the first member */
    srv_error err;
    size_t n = 0;
    if (srv_download_read(d->bytes, d->buf, SRV_CHUNK_MAX, &n, &err)) {
        fail(d, &err);
    } else if (n == 0) { /* every byte sent, and they matched their SHA-256 */
        release(d);
        srv_call_finish(d->call);
    } else if (send_chunk(d, NULL, d->buf, n, &err)) {
        fail(d, &err);
    }
}

static void on_sent(srv_call *c, void *arg, bool ok)
{
    (void)c;
    download *d = arg;
    if (!ok) {
        srv_error err;
        srv_fail(&err, SRV_CANCELLED, "the client stopped reading");
        fail(d, &err);
        return;
    }
    srv_pool_run(d->io, &d->job, send_next);
}

void srv_start_load_checkpoint(srv_app *app, srv_call *call, ProtobufCMessage *msg)
{
    const Cairn__V1__LoadCheckpointRequest *req = (const Cairn__V1__LoadCheckpointRequest *)msg;
    srv_arena *a = srv_call_arena(call);
    srv_error err;
    download *d = srv_arena_alloc(a, sizeof *d);
    if (!d) {
        srv_fail(&err, SRV_RESOURCE_EXHAUSTED, "out of memory");
        srv_call_fail(call, &err);
        return;
    }
    memset(d, 0, sizeof *d);
    d->io = app->io;
    d->call = call;
    /* A reader that stalls is cancelled: the pin goes with it (fail). */
    srv_call_idle_timeout(call, app->cfg->transfer_idle_ms);
    if (srv_download_open(app->store, a, req->run_id, req->checkpoint_id, &d->meta, &d->bytes,
                          &err)) {
        fail(d, &err);
        return;
    }
    if (!(d->buf = malloc(SRV_CHUNK_MAX))) {
        srv_fail(&err, SRV_RESOURCE_EXHAUSTED, "out of memory");
        fail(d, &err);
        return;
    }
    if (send_chunk(d, &d->meta, NULL, 0, &err))
        fail(d, &err);
}
