/* The data lifecycle's timer: completed-run retention and the dedup
 * window (DESIGN.md, docs/operations.md "Data lifecycle"). A thread of its
 * own wakes every period and hands the ledger one sweep (srv_sweep_apply,
 * a mutation of cairnd's own), so deletions go through the single writer
 * in bounded batches and never race a client's mutation. A sweep that
 * found a full batch is followed by the next at once. */
#ifndef CAIRN_SERVER_CORE_LIFECYCLE_H
#define CAIRN_SERVER_CORE_LIFECYCLE_H

#include "base/error.h"
#include "core/ledger.h"

#include <stdint.h>

typedef struct srv_lifecycle srv_lifecycle;

/* The longest pause between sweeps; shorter settings sweep more often
 * (every min(retention, window) seconds, at least every second). */
#define SRV_SWEEP_PERIOD_MAX_S 60

/* Starts sweeping runs completed more than retention_s ago and keys
 * older than window_s (either 0: never). *out is NULL when both are 0:
 * there is nothing to sweep. */
srv_code srv_lifecycle_start(srv_ledger *l, int64_t retention_s, int64_t window_s,
                             srv_lifecycle **out, srv_error *err);

/* Waits for a sweep in progress, stops the thread and frees. Call before
 * the ledger stops. NULL is a no-op. */
void srv_lifecycle_stop(srv_lifecycle *lc);

#endif
