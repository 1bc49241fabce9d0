/* Limits of the wire contract (docs/api.md, "Limits"). One name per limit,
 * so validation, tests and docs agree. */
#ifndef CAIRN_SERVER_CONTRACT_H
#define CAIRN_SERVER_CONTRACT_H

#include "base/limits.h"

#define SRV_KEY_MAX 128                   /* idempotency_key, printable ASCII */
#define SRV_EVENTS_PER_APPEND_MAX 1000
#define SRV_PAYLOAD_MAX (1024 * 1024)     /* Event.payload, bytes */
#define SRV_MESSAGE_MAX (4 * 1024 * 1024) /* one gRPC message, either way */
#define SRV_WORKERS_MAX 10000             /* CreateRunRequest.workers */
#define SRV_LABELS_MAX 64
#define SRV_LABEL_KEY_MAX 128
#define SRV_LABEL_VALUE_MAX 1024
#define SRV_PAGE_DEFAULT 100              /* ListRuns page_size, ReadEvents max_events */
#define SRV_PAGE_MAX 1000
/* A page of ReadEvents, ListRuns or ListCheckpoints stops before this
 * many encoded bytes (always holding at least one item), so the response
 * stays under SRV_MESSAGE_MAX with room for framing and the page token. */
#define SRV_READ_PAGE_BYTES (SRV_MESSAGE_MAX - 512 * 1024)
#define SRV_RUN_STATE_MAX (64 * 1024)     /* CheckpointHeader.run_state, bytes */
#define SRV_CHUNK_MAX (1024 * 1024)       /* snapshot bytes per stream message */
#define SRV_LEASE_TTL_MIN_MS 1000
#define SRV_LEASE_TTL_MAX_MS 600000

/* The largest messages the limits above allow, as upper bounds of their
 * protobuf encoding: a string field of n bytes (n < 2^21) costs at most a
 * tag byte, three length bytes and n. Each must fit a page alone, which
 * also makes GetRun, ResumeRun, GetLatestCheckpoint and a LoadCheckpoint
 * header fit one message; raising a limit that breaks this fails the
 * build here instead of the call on the wire. */
#define SRV_PB_STRING_MAX(n) (4 + (n))
#define SRV_PB_SMALL_FIELDS 256 /* numbers, state, timestamps, checkpoint id, sha256 */
/* Run: run_id, every worker also completed, every label at its limits
 * (a map entry is a message of two strings); about 2.6 MiB. */
#define SRV_RUN_WIRE_MAX                                                          \
    (SRV_PB_STRING_MAX(SRV_ID_MAX) + 2 * SRV_WORKERS_MAX * SRV_PB_STRING_MAX(SRV_ID_MAX) + \
     SRV_LABELS_MAX * SRV_PB_STRING_MAX(SRV_PB_STRING_MAX(SRV_LABEL_KEY_MAX) +            \
                                        SRV_PB_STRING_MAX(SRV_LABEL_VALUE_MAX)) +         \
     SRV_PB_SMALL_FIELDS)
/* Checkpoint: run_id, run_state, completed_workers; about 1.3 MiB. */
#define SRV_CHECKPOINT_WIRE_MAX                                                          \
    (SRV_PB_STRING_MAX(SRV_ID_MAX) + SRV_PB_STRING_MAX(SRV_RUN_STATE_MAX) +               \
     SRV_WORKERS_MAX * SRV_PB_STRING_MAX(SRV_ID_MAX) + SRV_PB_STRING_MAX(SRV_SHA256_HEX) + \
     SRV_PB_SMALL_FIELDS)
/* ResumeResult: workers_to_rerun are some of the given workers (at most
 * SRV_WORKERS_MAX), resumed_from_state a run_state; about 1.3 MiB. */
#define SRV_RESUME_WIRE_MAX                                                            \
    (SRV_PB_STRING_MAX(SRV_ID_MAX) + SRV_WORKERS_MAX * SRV_PB_STRING_MAX(SRV_ID_MAX) + \
     SRV_PB_STRING_MAX(SRV_RUN_STATE_MAX) + SRV_PB_SMALL_FIELDS)

_Static_assert(SRV_RUN_WIRE_MAX <= SRV_READ_PAGE_BYTES, "the largest Run must fit a page");
_Static_assert(SRV_CHECKPOINT_WIRE_MAX <= SRV_READ_PAGE_BYTES,
               "the largest Checkpoint must fit a page");
_Static_assert(SRV_RESUME_WIRE_MAX <= SRV_MESSAGE_MAX, "the largest ResumeResult must fit");

#endif
