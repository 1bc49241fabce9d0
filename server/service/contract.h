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
/* A ReadEvents page stops before this many payload bytes so the response
 * stays under SRV_MESSAGE_MAX with room for ids and framing. */
#define SRV_READ_PAGE_BYTES (SRV_MESSAGE_MAX - 512 * 1024)
#define SRV_RUN_STATE_MAX (64 * 1024)     /* CheckpointHeader.run_state, bytes */
#define SRV_CHUNK_MAX (1024 * 1024)       /* snapshot bytes per stream message */
#define SRV_LEASE_TTL_MIN_MS 1000
#define SRV_LEASE_TTL_MAX_MS 600000

#endif
