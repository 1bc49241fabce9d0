#include "core/snapshots.h"
#include "core/domain.h"
#include "base/clock.h"
#include "base/log.h"
#include "base/sha256.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A download's pin lapses after this unless renewed; it is renewed while
 * bytes flow, so only a reader that died (or stalled this long) loses it. */
#define PIN_TTL_US (10 * 60 * 1000000LL)
/* Each try of "the latest" loses only to a checkpoint committed between
 * its read and its pin; a few cover any realistic rate of checkpoints. */
enum { LATEST_TRIES = 3 };

struct srv_upload {
    srv_upload_gate *gate;        /* holds a place in it when set */
    srv_blob_stage *stage;
    srv_sha256 *sha;
    uint64_t size, received;
    bool staging;                 /* counted in the gate's staged bytes */
    char sha_hex[65];
};

void srv_upload_gate_init(srv_upload_gate *g, int max_uploads, uint64_t max_staged_bytes)
{
    memset(g, 0, sizeof *g);
    pthread_mutex_init(&g->mu, NULL);
    g->max_uploads = max_uploads;
    g->max_staged_bytes = max_staged_bytes;
}

void srv_upload_gate_destroy(srv_upload_gate *g)
{
    pthread_mutex_destroy(&g->mu);
}

uint64_t srv_upload_gate_staged(srv_upload_gate *g, int *uploads)
{
    pthread_mutex_lock(&g->mu);
    uint64_t staged = g->staged_bytes;
    if (uploads)
        *uploads = g->uploads;
    pthread_mutex_unlock(&g->mu);
    return staged;
}

static srv_code gate_enter(srv_upload_gate *g, uint64_t staged, srv_error *err)
{
    srv_code rc = SRV_OK;
    pthread_mutex_lock(&g->mu);
    if (g->uploads >= g->max_uploads)
        rc = srv_fail_pushback(err, SRV_RESOURCE_EXHAUSTED, SRV_UPLOAD_PUSHBACK_MS,
                               "CreateCheckpoint: %d uploads are in progress, the most "
                               "--max-uploads allows; retry later",
                               g->uploads);
    else if (staged > g->max_staged_bytes - g->staged_bytes)
        rc = srv_fail_pushback(err, SRV_RESOURCE_EXHAUSTED, SRV_UPLOAD_PUSHBACK_MS,
                               "CreateCheckpoint: %llu bytes more would pass the "
                               "%llu staged bytes --max-staged-bytes allows (%llu in use); "
                               "retry later",
                               (unsigned long long)staged,
                               (unsigned long long)g->max_staged_bytes,
                               (unsigned long long)g->staged_bytes);
    else {
        g->uploads++;
        g->staged_bytes += staged;
    }
    pthread_mutex_unlock(&g->mu);
    return rc;
}

static void gate_leave(srv_upload_gate *g, uint64_t staged)
{
    pthread_mutex_lock(&g->mu);
    g->uploads--;
    g->staged_bytes -= staged;
    pthread_mutex_unlock(&g->mu);
}

srv_code srv_upload_begin(srv_store *st, srv_upload_gate *gate, uint64_t size, bool stage,
                          srv_upload **out, srv_error *err)
{
    if (gate && gate_enter(gate, stage ? size : 0, err))
        return err->code;
    srv_upload *u = calloc(1, sizeof *u);
    if (!u || !(u->sha = srv_sha256_new())) {
        free(u);
        if (gate)
            gate_leave(gate, stage ? size : 0);
        return srv_fail(err, SRV_RESOURCE_EXHAUSTED, "out of memory");
    }
    u->gate = gate;
    u->staging = stage;
    u->size = size;
    if (stage && srv_store_stage_begin(st, &u->stage, err)) {
        srv_upload_free(u);
        return err->code;
    }
    *out = u;
    return SRV_OK;
}

srv_code srv_upload_write(srv_upload *u, const uint8_t *data, size_t len, srv_error *err)
{
    if (len > u->size - u->received)
        return srv_fail(err, SRV_INVALID_ARGUMENT,
                        "chunk: the stream carries more than the %llu bytes snapshot_size declared",
                        (unsigned long long)u->size);
    if (u->stage && srv_store_stage_write(u->stage, data, len, err))
        return err->code;
    srv_sha256_update(u->sha, data, len);
    u->received += len;
    return SRV_OK;
}

uint64_t srv_upload_received(const srv_upload *u)
{
    return u->received;
}

srv_code srv_upload_finish(srv_upload *u, const char *expected_sha256, srv_error *err)
{
    srv_sha256_final_hex(u->sha, u->sha_hex);
    if (*expected_sha256 && strcmp(expected_sha256, u->sha_hex) != 0)
        return srv_fail(err, SRV_INVALID_ARGUMENT,
                        "snapshot_sha256: the header says %s but the %llu bytes received hash "
                        "to %s",
                        expected_sha256, (unsigned long long)u->received, u->sha_hex);
    if (u->stage && srv_store_stage_finish(u->stage, u->sha_hex, err))
        return err->code;
    return SRV_OK;
}

const char *srv_upload_sha256(const srv_upload *u)
{
    return u->sha_hex;
}

srv_blob_stage *srv_upload_stage(const srv_upload *u)
{
    return u->stage;
}

void srv_upload_free(srv_upload *u)
{
    if (!u)
        return;
    srv_store_stage_free(u->stage);
    srv_sha256_free(u->sha);
    if (u->gate)
        gate_leave(u->gate, u->staging ? u->size : 0);
    free(u);
}

void srv_checkpoint_fingerprint(const uint8_t header_fp[32], const char *sha256_hex,
                                uint8_t out[32])
{
    uint8_t buf[32 + 64];
    memcpy(buf, header_fp, 32);
    memcpy(buf + 32, sha256_hex, 64);
    srv_sha256_of(buf, sizeof buf, out);
}

/* ---- downloads ---- */

struct srv_download {
    srv_store *store;
    char *run_id;
    char *checkpoint_id;
    int64_t pin;
    int64_t pin_renew_ms;         /* monotonic: pin again from then on */
    bool pinned;
    srv_blob_reader *reader;
    srv_sha256 *sha;
    uint64_t size, sent;
    char expected_sha[65];
};

static srv_code pin(srv_download *d, srv_error *err)
{
    /* By the store's clock, which every replica's cleanup compares pins
     * with (srv_store_now); renewed by this machine's monotonic clock. */
    int64_t now_us, id;
    if (srv_store_now(d->store, NULL, &now_us, err))
        return err->code;
    int64_t expires = now_us + PIN_TTL_US;
    if (srv_store_pin_add(d->store, d->run_id, d->checkpoint_id, expires, &id, err))
        return err->code;
    if (d->pinned) {
        srv_error ignored;
        srv_store_pin_remove(d->store, d->pin, &ignored);
    }
    d->pin = id;
    d->pin_renew_ms = srv_monotonic_ms() + PIN_TTL_US / 2000;
    d->pinned = true;
    return SRV_OK;
}

/* Reads the checkpoint and pins it. Pinned now, but a cleanup may have
 * deleted it just before: read it again under the pin. */
static srv_code pin_checkpoint(srv_download *d, srv_arena *a, const char *checkpoint_id,
                               Cairn__V1__Checkpoint *meta, srv_error *err)
{
    if (srv_checkpoint_read(d->store, a, d->run_id, checkpoint_id, meta, err))
        return err->code;
    free(d->checkpoint_id);
    if (!(d->checkpoint_id = strdup(meta->checkpoint_id)))
        return srv_fail(err, SRV_RESOURCE_EXHAUSTED, "out of memory");
    if (pin(d, err))
        return err->code;
    return srv_checkpoint_read(d->store, a, d->run_id, d->checkpoint_id, meta, err);
}

srv_code srv_download_open(srv_store *st, srv_arena *a, const char *run_id,
                           const char *checkpoint_id, Cairn__V1__Checkpoint *meta,
                           srv_download **out, srv_error *err)
{
    srv_download *d = calloc(1, sizeof *d);
    if (!d)
        return srv_fail(err, SRV_RESOURCE_EXHAUSTED, "out of memory");
    d->store = st;
    d->run_id = strdup(run_id);
    d->sha = srv_sha256_new();
    if (!d->run_id || !d->sha) {
        srv_download_close(d);
        return srv_fail(err, SRV_RESOURCE_EXHAUSTED, "out of memory");
    }
    /* "The latest" deleted before the pin took hold was replaced by a newer
     * one (retention only deletes older ones): that one is the answer. */
    srv_code rc = pin_checkpoint(d, a, checkpoint_id, meta, err);
    for (int tries = 1; rc == SRV_NOT_FOUND && !*checkpoint_id && tries < LATEST_TRIES; tries++)
        rc = pin_checkpoint(d, a, "", meta, err);
    if (rc) {
        srv_download_close(d);
        return rc;
    }
    if (srv_store_blob_open(st, meta->snapshot_sha256, &d->reader, err)) {
        /* Gone with its checkpoint, or lost under it. */
        Cairn__V1__Checkpoint again;
        srv_error again_err;
        if (err->code == SRV_NOT_FOUND &&
            !srv_checkpoint_read(st, a, run_id, d->checkpoint_id, &again, &again_err))
            srv_fail(err, SRV_DATA_LOSS, "checkpoint %s: its snapshot bytes are missing",
                     d->checkpoint_id);
        srv_download_close(d);
        return err->code;
    }
    d->size = meta->snapshot_size;
    snprintf(d->expected_sha, sizeof d->expected_sha, "%s", meta->snapshot_sha256);
    *out = d;
    return SRV_OK;
}

/* Bytes that end short, long or wrong because their run was deleted
 * while they streamed (PostgreSQL reads chunk rows one at a time; a file
 * open on SQLite stays whole) are NOT_FOUND, not DATA_LOSS: nothing
 * stored is damaged, the checkpoint is just gone. */
static srv_code deleted_or(srv_download *d, srv_error *err)
{
    srv_arena *a = srv_arena_create();
    Cairn__V1__Checkpoint meta;
    srv_error again;
    bool gone = a && srv_checkpoint_read(d->store, a, d->run_id, d->checkpoint_id, &meta,
                                         &again) == SRV_NOT_FOUND;
    srv_arena_destroy(a);
    if (!gone)
        return err->code;
    return srv_fail(err, SRV_NOT_FOUND,
                    "checkpoint_id: checkpoint %s of run %s was deleted while it was read; "
                    "discard what was received",
                    d->checkpoint_id, d->run_id);
}

srv_code srv_download_read(srv_download *d, uint8_t *buf, size_t cap, size_t *n, srv_error *err)
{
    if (srv_monotonic_ms() >= d->pin_renew_ms && pin(d, err))
        return err->code;
    if (srv_store_blob_read(d->reader, buf, cap, n, err))
        return err->code;
    if (*n > 0) {
        d->sent += *n;
        srv_sha256_update(d->sha, buf, *n);
        if (d->sent > d->size) {
            srv_fail(err, SRV_DATA_LOSS,
                     "checkpoint %s: stored snapshot is longer than its %llu bytes",
                     d->checkpoint_id, (unsigned long long)d->size);
            return deleted_or(d, err);
        }
        return SRV_OK;
    }
    char hex[65];
    srv_sha256_final_hex(d->sha, hex);
    if (d->sent != d->size || strcmp(hex, d->expected_sha) != 0) {
        srv_fail(err, SRV_DATA_LOSS,
                 "checkpoint %s: the stored snapshot fails its SHA-256 (%llu bytes hashing "
                 "to %s, expected %llu bytes hashing to %s); discard what was received",
                 d->checkpoint_id, (unsigned long long)d->sent, hex,
                 (unsigned long long)d->size, d->expected_sha);
        return deleted_or(d, err);
    }
    return SRV_OK;
}

void srv_download_close(srv_download *d)
{
    if (!d)
        return;
    srv_store_blob_close(d->reader);
    if (d->pinned) {
        srv_error err;
        if (srv_store_pin_remove(d->store, d->pin, &err))
            srv_warn("checkpoint %s: unpinning failed (the pin lapses by itself): %s",
                     d->checkpoint_id, err.msg);
    }
    srv_sha256_free(d->sha);
    free(d->run_id);
    free(d->checkpoint_id);
    free(d);
}
