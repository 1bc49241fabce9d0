/* Snapshot bytes through a checkpoint's life: an upload hashes and stages
 * them (the checksum and size rules live here), a download pins its
 * checkpoint, streams the bytes and checks them against their SHA-256.
 * Both run on any thread; one object per stream, used by one thread at a
 * time. */
#ifndef CAIRN_SERVER_CORE_SNAPSHOTS_H
#define CAIRN_SERVER_CORE_SNAPSHOTS_H

#include "store/store.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

typedef struct srv_upload srv_upload;

/* How long a refused upload is told to wait (grpc-retry-pushback-ms). */
#define SRV_UPLOAD_PUSHBACK_MS 1000

/* The uploads in progress, all of them: at most max_uploads at once, and
 * at most max_staged_bytes of declared snapshot_size among those staging.
 * An upload is counted from srv_upload_begin to srv_upload_free. */
typedef struct srv_upload_gate {
    pthread_mutex_t mu;
    int max_uploads;
    uint64_t max_staged_bytes;
    int uploads;                  /* under mu */
    uint64_t staged_bytes;        /* under mu: declared sizes */
} srv_upload_gate;

void srv_upload_gate_init(srv_upload_gate *g, int max_uploads, uint64_t max_staged_bytes);
void srv_upload_gate_destroy(srv_upload_gate *g);
/* The declared snapshot sizes of the uploads staging now, and (when not
 * NULL) the uploads in progress. Any thread. */
uint64_t srv_upload_gate_staged(srv_upload_gate *g, int *uploads);

/* Starts receiving exactly size bytes. With stage false the bytes are
 * only hashed, not stored (the idempotency key was used already: they are
 * needed only to tell a retry from a reuse). With a gate (may be NULL),
 * RESOURCE_EXHAUSTED with a SRV_UPLOAD_PUSHBACK_MS pushback when it is
 * full; srv_upload_free gives the place back. */
srv_code srv_upload_begin(srv_store *st, srv_upload_gate *gate, uint64_t size, bool stage,
                          srv_upload **out, srv_error *err);
/* Takes the next bytes; INVALID_ARGUMENT when they pass size. */
srv_code srv_upload_write(srv_upload *u, const uint8_t *data, size_t len, srv_error *err);
uint64_t srv_upload_received(const srv_upload *u);
/* After the last byte: the digest must equal expected_sha256 unless that
 * is ""; staged bytes are made durable. */
srv_code srv_upload_finish(srv_upload *u, const char *expected_sha256, srv_error *err);
/* After finish: the bytes' digest as 64 hex digits (lives with u). */
const char *srv_upload_sha256(const srv_upload *u);
/* The staged bytes for srv_checkpoint_create; NULL when not staging. */
srv_blob_stage *srv_upload_stage(const srv_upload *u);
/* Discards bytes no commit linked, and frees. NULL is a no-op. */
void srv_upload_free(srv_upload *u);

/* A CreateCheckpoint's idempotency fingerprint: the request is the header
 * and the content, so a key names both. */
void srv_checkpoint_fingerprint(const uint8_t header_fp[32], const char *sha256_hex,
                                uint8_t out[32]);

typedef struct srv_download srv_download;

/* Pins the checkpoint (the latest when checkpoint_id is ""), so no cleanup
 * deletes it while it streams, fills *meta (in arena a) and opens its
 * bytes. NOT_FOUND for an unknown run or checkpoint (or one deleted just
 * before the pin); DATA_LOSS when the checkpoint is there but its bytes
 * are not. */
srv_code srv_download_open(srv_store *st, srv_arena *a, const char *run_id,
                           const char *checkpoint_id, Cairn__V1__Checkpoint *meta,
                           srv_download **out, srv_error *err);
/* Reads the next bytes (at most cap); *n == 0 at the end, once the bytes
 * matched their size and SHA-256 (DATA_LOSS otherwise, or NOT_FOUND when
 * the checkpoint was deleted meanwhile: DeleteRun, completed-run
 * retention). */
srv_code srv_download_read(srv_download *d, uint8_t *buf, size_t cap, size_t *n,
                           srv_error *err);
/* Unpins and frees. NULL is a no-op. */
void srv_download_close(srv_download *d);

#endif
