/* The metrics endpoint: HTTP/1.1 over libmicrohttpd on a thread of its
 * own, serving GET /metrics (the text a render callback writes) and GET
 * /healthz (200 "ok" while the process serves, 503 while it shuts down).
 *
 * Shutdown order: stop it before freeing whatever render reads. */
#ifndef CAIRN_SERVER_METRICS_HTTP_H
#define CAIRN_SERVER_METRICS_HTTP_H

#include "base/error.h"
#include "metrics/expo.h"

#include <stdbool.h>
#include <stddef.h>

typedef struct srv_metrics_http srv_metrics_http;

typedef struct srv_metrics_http_config {
    const char *listen;           /* "127.0.0.1:9464", "[::1]:9464"; port 0 picks one */
    /* Writes the /metrics page; on the endpoint's thread, one scrape at a time. */
    void (*render)(void *ctx, srv_expo *out);
    bool (*serving)(void *ctx);   /* /healthz: true 200, false 503; any thread */
    void *ctx;
} srv_metrics_http_config;

/* Binds cfg->listen and starts serving. On success *out runs and bound
 * (at least 64 bytes) holds HOST:PORT with the real port. Fails with
 * UNAVAILABLE naming --metrics-listen when the address cannot be bound. */
srv_code srv_metrics_http_start(const srv_metrics_http_config *cfg, srv_metrics_http **out,
                                char *bound, size_t bound_cap, srv_error *err);

/* Stops serving (a scrape in progress finishes first) and frees. NULL is a
 * no-op. */
void srv_metrics_http_stop(srv_metrics_http *h);

#endif
