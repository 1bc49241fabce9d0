/* The socket is bound here rather than by libmicrohttpd, so that a bind
 * failure says why and port 0 can be read back with getsockname; the
 * daemon takes the socket over (MHD_OPTION_LISTEN_SOCKET) and closes it
 * when it stops. */
#include "metrics/http.h"

#include <microhttpd.h>

#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

/* Scrapers are few: Prometheus, a probe, an operator's curl. */
enum { MAX_CONNECTIONS = 16, CONNECTION_TIMEOUT_S = 10, LISTEN_BACKLOG = 16 };

struct srv_metrics_http {
    struct MHD_Daemon *daemon;
    srv_metrics_http_config cfg;
};

static enum MHD_Result reply(struct MHD_Connection *conn, unsigned status, char *body,
                             size_t len, enum MHD_ResponseMemoryMode mode,
                             const char *content_type)
{
    struct MHD_Response *r = MHD_create_response_from_buffer(len, body, mode);
    if (!r) {
        if (mode == MHD_RESPMEM_MUST_FREE)
            free(body);
        return MHD_NO;
    }
    MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, content_type);
    enum MHD_Result rc = MHD_queue_response(conn, status, r);
    MHD_destroy_response(r);
    return rc;
}

static enum MHD_Result reply_text(struct MHD_Connection *conn, unsigned status,
                                  const char *text)
{
    return reply(conn, status, (char *)text, strlen(text), MHD_RESPMEM_PERSISTENT,
                 "text/plain; charset=utf-8");
}

static enum MHD_Result on_request(void *arg, struct MHD_Connection *conn, const char *url,
                                  const char *method, const char *version,
                                  const char *upload_data, size_t *upload_data_size,
                                  void **state)
{
    (void)version;
    (void)upload_data;
    (void)upload_data_size;
    (void)state; /* no request body is read: answered on the first call */
    srv_metrics_http *h = arg;
    if (strcmp(method, MHD_HTTP_METHOD_GET) != 0 && strcmp(method, MHD_HTTP_METHOD_HEAD) != 0)
        return reply_text(conn, MHD_HTTP_METHOD_NOT_ALLOWED, "only GET\n");
    if (strcmp(url, "/healthz") == 0)
        return h->cfg.serving(h->cfg.ctx)
                   ? reply_text(conn, MHD_HTTP_OK, "ok\n")
                   : reply_text(conn, MHD_HTTP_SERVICE_UNAVAILABLE, "shutting down\n");
    if (strcmp(url, "/metrics") != 0)
        return reply_text(conn, MHD_HTTP_NOT_FOUND, "not found: try /metrics or /healthz\n");
    srv_expo page = {0};
    h->cfg.render(h->cfg.ctx, &page);
    if (page.failed) {
        free(page.buf);
        return reply_text(conn, MHD_HTTP_INTERNAL_SERVER_ERROR, "out of memory\n");
    }
    return reply(conn, MHD_HTTP_OK, page.buf, page.len, MHD_RESPMEM_MUST_FREE,
                 SRV_EXPO_CONTENT_TYPE);
}

/* Binds and listens on "host:port" ("[v6]:port" too); returns the socket,
 * or -1 with err filled. */
static int listen_on(const char *addr, char *bound, size_t bound_cap, srv_error *err)
{
    char host[256];
    const char *colon = strrchr(addr, ':');
    size_t host_len = colon ? (size_t)(colon - addr) : 0;
    if (!colon || host_len >= sizeof host || !colon[1]) {
        srv_fail(err, SRV_INVALID_ARGUMENT, "--metrics-listen: expected HOST:PORT or off, got %s",
                 addr);
        return -1;
    }
    memcpy(host, addr, host_len);
    host[host_len] = '\0';
    char *h = host;
    if (host_len >= 2 && host[0] == '[' && host[host_len - 1] == ']') {
        host[host_len - 1] = '\0';
        h++;
    }
    struct addrinfo hints = {.ai_flags = AI_PASSIVE | AI_NUMERICSERV,
                             .ai_socktype = SOCK_STREAM};
    struct addrinfo *ai = NULL;
    int gai = getaddrinfo(h, colon + 1, &hints, &ai);
    if (gai) {
        srv_fail(err, SRV_UNAVAILABLE, "--metrics-listen: cannot resolve %s: %s", addr,
                 gai_strerror(gai));
        return -1;
    }
    int fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol);
    int one = 1;
    if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) != 0 ||
        bind(fd, ai->ai_addr, ai->ai_addrlen) != 0 || listen(fd, LISTEN_BACKLOG) != 0) {
        srv_fail(err, SRV_UNAVAILABLE, "--metrics-listen: cannot listen on %s: %s", addr,
                 strerror(errno));
        if (fd >= 0)
            close(fd);
        freeaddrinfo(ai);
        return -1;
    }
    freeaddrinfo(ai);
    struct sockaddr_storage ss;
    socklen_t len = sizeof ss;
    int port = 0;
    if (getsockname(fd, (struct sockaddr *)&ss, &len) == 0)
        port = ntohs(ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
                                              : ((struct sockaddr_in *)&ss)->sin_port);
    snprintf(bound, bound_cap, "%.*s:%d", (int)host_len, addr, port);
    return fd;
}

srv_code srv_metrics_http_start(const srv_metrics_http_config *cfg, srv_metrics_http **out,
                                char *bound, size_t bound_cap, srv_error *err)
{
    srv_metrics_http *h = calloc(1, sizeof *h);
    if (!h)
        return srv_fail(err, SRV_RESOURCE_EXHAUSTED, "out of memory");
    h->cfg = *cfg;
    int fd = listen_on(cfg->listen, bound, bound_cap, err);
    if (fd < 0) {
        free(h);
        return err->code;
    }
    h->daemon = MHD_start_daemon(
        MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_AUTO, 0, NULL, NULL, on_request, h,
        MHD_OPTION_LISTEN_SOCKET, fd, MHD_OPTION_CONNECTION_LIMIT, (unsigned)MAX_CONNECTIONS,
        MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)CONNECTION_TIMEOUT_S, MHD_OPTION_END);
    if (!h->daemon) {
        close(fd);
        free(h);
        return srv_fail(err, SRV_UNAVAILABLE, "--metrics-listen: cannot serve on %s", bound);
    }
    *out = h;
    return SRV_OK;
}

void srv_metrics_http_stop(srv_metrics_http *h)
{
    if (!h)
        return;
    MHD_stop_daemon(h->daemon);
    free(h);
}
