/* What cairnd tells its operators. Per call (srv_observe_call, the
 * transport's on_end): a count by method and status code, a duration
 * histogram, idempotent replays, and a log line, at info for a failed or
 * slow call and at debug for the rest. Per scrape (srv_observe_render):
 * the /metrics page over those and what the ledger, the watch hub, the
 * store and the upload gate report. docs/operations.md lists every metric
 * and field. */
#ifndef CAIRN_SERVER_OBSERVE_H
#define CAIRN_SERVER_OBSERVE_H

#include "metrics/expo.h"
#include "transport/rpc.h"

#include <stdbool.h>

typedef struct srv_observe srv_observe;

/* Counters for methods (n of them, as given to srv_rpc_start) and one row
 * more for calls to methods cairnd does not serve. A call is slow from
 * slow_call_ms on (0: every call is logged at info). NULL when out of
 * memory. */
srv_observe *srv_observe_create(const srv_rpc_method *methods, size_t n, int slow_call_ms);
/* NULL is a no-op. */
void srv_observe_free(srv_observe *obs);

/* srv_rpc_on_end; app is a srv_app whose observe is set. Lock-free
 * counting; builds a log line only when one will be written. */
void srv_observe_call(void *app, srv_call *call, const srv_call_outcome *o);

/* The /metrics page (srv_metrics_http_config.render); app is a srv_app.
 * Reads the store (leases, size) in a read snapshot. */
void srv_observe_render(void *app, srv_expo *out);

/* /healthz (srv_metrics_http_config.serving): false once shutdown began. */
bool srv_observe_serving(void *app);

#endif
