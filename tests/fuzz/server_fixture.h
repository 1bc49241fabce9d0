/* What the server fuzz targets share: one cairnd application (SQLite
 * store in a temporary directory, ledger, watch hub, I/O pool) per
 * process, made on first use and kept across inputs, so an input costs a
 * call, not a store; removed at exit. It starts with run "run-1" (workers
 * w0, w1, w2), three events and one checkpoint, so the seeds reach past
 * NOT_FOUND. Not thread-safe: one fuzzing thread. */
#ifndef CAIRN_FUZZ_SERVER_FIXTURE_H
#define CAIRN_FUZZ_SERVER_FIXTURE_H

#include "cairn/v1/coordinator.pb-c.h"
#include "fake_call.h"

#include <protobuf-c/protobuf-c.h>

/* The application, made on the first call. Aborts when it cannot be. */
srv_app *fz_app(void);

/* The dispatch table's row of method `name` ("AppendEvents", "Check").
 * Aborts for an unknown name. */
size_t fz_method(const char *name);

/* Encodes req and runs it as one call of method `name` (the only message
 * of a client stream too). */
void fz_call_message(const char *name, const ProtobufCMessage *req, fz_reply *out);

/* Runs CreateCheckpoint: the header, then `snapshot` in chunks of at most
 * chunk bytes (> 0). */
void fz_upload(const Cairn__V1__CheckpointHeader *header, const uint8_t *snapshot, size_t len,
               size_t chunk, fz_reply *out);

/* Aborts (a finding) when r ended in a way no input may cause here:
 * UNKNOWN, INTERNAL, DATA_LOSS, UNAVAILABLE (the store is healthy and
 * nothing shuts down), or an error without a message. */
void fz_expect_sane(const char *name, const fz_reply *r);

#endif
