/* The gRPC transport of cairnd: the only part of the server that includes
 * gRPC core headers. It listens, runs the completion-queue threads, hands
 * each incoming call to the application as bytes, and sends replies.
 *
 * Threads: callbacks run on completion-queue threads. Every srv_call_*
 * function may be called from any thread (gRPC core's batch start is
 * thread-safe), but each call must get exactly one reply. */
#ifndef CAIRN_SERVER_RPC_H
#define CAIRN_SERVER_RPC_H

#include "base/arena.h"
#include "base/error.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct srv_rpc srv_rpc;
typedef struct srv_call srv_call;

typedef enum srv_rpc_shape {
    SRV_RPC_UNARY,            /* one request, one reply (srv_call_reply/fail) */
    SRV_RPC_SERVER_STREAM,    /* one request, srv_call_send..., srv_call_finish */
    SRV_RPC_CLIENT_STREAM,    /* srv_call_recv..., then srv_call_reply/fail */
} srv_rpc_shape;

/* A method the server accepts; anything else gets UNIMPLEMENTED. */
typedef struct srv_rpc_method {
    const char *path;         /* "/cairn.v1.Coordinator/AppendEvents" */
    srv_rpc_shape shape;
} srv_rpc_method;

/* Called on a completion-queue thread for each new call to methods[index].
 * The callee owns the call until it replies. */
typedef void (*srv_rpc_on_call)(void *app, srv_call *call, size_t index);

/* Admits or refuses a call before it is accepted: path is its method
 * ("/pkg.Svc/Method"; "" if it has none), header the value of its first
 * authorization metadata (header_len bytes, not NUL-terminated; NULL
 * when it has none), repeated true when it has more than one. Returns
 * SRV_OK to let it through, or a code (UNAUTHENTICATED) with err's
 * message, which is the client's answer. Runs on gRPC's threads for
 * every call, methods not served included; must not block. */
typedef srv_code (*srv_rpc_auth_fn)(void *app, const char *path, const char *header,
                                    size_t header_len, bool repeated, srv_error *err);
/* How a call ended, told once per call as its end is sent. */
typedef struct srv_call_outcome {
    size_t method;                /* index in methods; n_methods: a method not served */
    srv_code code;
    const char *message;          /* the status message; NULL with OK */
    bool replayed;                /* answered with "cairn-replayed: true" */
    int64_t duration_us;          /* from the call's arrival to its end */
    const char *run_id;           /* srv_call_set_run_id's, or NULL */
} srv_call_outcome;

/* Called on the thread that ends the call, before the call may go: the
 * callee may ask srv_call_peer. Must not block. */
typedef void (*srv_rpc_on_end)(void *app, srv_call *call, const srv_call_outcome *o);

typedef struct srv_rpc_config {
    const char *listen;           /* "127.0.0.1:7070" (port 0 = any free port) or
                                   * "unix:PATH" (a socket file, made 0600) */
    int threads;                  /* completion queues, one thread each */
    size_t max_message_bytes;     /* receive and send limit per message */
    int max_concurrent_streams;   /* calls open at once per connection (> 0) */
    int keepalive_time_ms;        /* ping a connection after this long without reads */
    int keepalive_timeout_ms;     /* close it when the ping is unanswered this long */
    int max_connection_idle_ms;   /* GOAWAY a connection without calls; 0 never */
    size_t memory_bytes;          /* gRPC resource quota over what the transport
                                   * buffers (reads, frames, call arenas);
                                   * 0: gRPC's own (unlimited) */
    const char *tls_cert;         /* PEM certificate chain to serve TLS with (with
                                   * tls_key); NULL or "": plaintext */
    const char *tls_key;          /* its PEM private key */
    const char *tls_client_ca;    /* mutual TLS: PEM CAs a client certificate must
                                   * verify against; NULL or "": none asked for */
    const srv_rpc_method *methods;
    size_t n_methods;
    srv_rpc_on_call on_call;
    srv_rpc_auth_fn authenticate; /* NULL: every call goes through */
    srv_rpc_on_end on_end;        /* NULL: not told */
    void *app;                    /* on_call's, authenticate's and on_end's */
} srv_rpc_config;

/* Creates and starts the server. On success *out serves and bound (at
 * least 64 bytes) holds the listening address as HOST:PORT with the real
 * port, or unix:PATH as given; with TLS, one line logged says which
 * certificate it serves. A TLS file that cannot be read or does not pass
 * its checks (transport/tls.h) fails it before anything listens, with
 * err naming the flag, the path and why. Requires grpc_init to have been
 * called by srv_rpc_global_init. */
srv_code srv_rpc_start(const srv_rpc_config *cfg, srv_rpc **out,
                       char *bound, size_t bound_cap, srv_error *err);

/* Shutdown is two steps, so that whoever holds calls (the ledger, streams)
 * can answer them in between, while the queues still run:
 *
 * srv_rpc_shutdown stops accepting calls, lets in-flight calls reply for
 * up to grace_ms, then cancels what remains. A cancelled call must still
 * be ended (srv_call_reply, srv_call_fail, srv_call_finish) by its holder;
 * the client sees the cancellation. NULL is a no-op.
 *
 * srv_rpc_stop waits until every call has been ended and released (so
 * call it once every holder has let go: the ledger drained, the streams
 * ended), then stops the threads and frees the server. NULL is a no-op. */
void srv_rpc_shutdown(srv_rpc *rpc, int grace_ms);
void srv_rpc_stop(srv_rpc *rpc);

/* Reads the TLS files again (SIGHUP) and logs one line: that they were
 * reloaded, or which file failed and why, the previous ones serving on.
 * New connections use what a reload read; connections already open keep
 * theirs, calls and streams untouched. A no-op without TLS. Call from
 * one thread at a time. */
void srv_rpc_reload_tls(srv_rpc *rpc);

/* Process-wide gRPC setup and teardown (grpc_init / grpc_shutdown). Setup
 * also routes gRPC core's own log lines through base/log.h, at the level
 * gRPC gives them (GRPC_VERBOSITY still chooses which gRPC writes). */
void srv_rpc_global_init(void);
void srv_rpc_global_shutdown(void);

/* ---- calls ---- */

/* The arena that lives as long as the call. */
srv_arena *srv_call_arena(srv_call *c);

/* The request message of a unary or server-streaming call. Lives in the
 * call's arena. */
const uint8_t *srv_call_request(srv_call *c, size_t *len);

/* The value of the call's authorization metadata (NUL-terminated, *len
 * bytes; in the call's arena), or NULL when it has none. */
const char *srv_call_authorization(const srv_call *c, size_t *len);
/* Names the run the call is about, for srv_call_outcome (its log line).
 * run_id must live as long as the call (the call's arena). */
void srv_call_set_run_id(srv_call *c, const char *run_id);

/* The client's address as gRPC names it ("ipv4:127.0.0.1:51234"), cut to
 * fit out (cap bytes). Costs an allocation inside gRPC: for log lines,
 * not for every call. Returns out. */
char *srv_call_peer(srv_call *c, char *out, size_t cap);

/* Milliseconds until the client's deadline; INT64_MAX without one. */
int64_t srv_call_remaining_ms(const srv_call *c);

/* Replies OK with msg (copied) and ends a unary or client-streaming call.
 * replayed adds the trailer "cairn-replayed: true". */
void srv_call_reply(srv_call *c, const uint8_t *msg, size_t len, bool replayed);

/* Ends any call with err's code and message (and grpc-retry-pushback-ms
 * when err->pushback_ms >= 0); a server stream may have sent messages. */
void srv_call_fail(srv_call *c, const srv_error *err);

/* ---- streams ----
 * At most one srv_call_recv and one srv_call_send in flight per call, and
 * none when the call is ended (srv_call_reply, srv_call_fail,
 * srv_call_finish): the callbacks below are the only ones that may end it
 * while a stream is open. */

/* Called with the next message of a client stream: msg (valid during the
 * call only) and len; or msg NULL at the end of the stream, with ok false
 * when reading failed (message over the size limit, connection lost). A
 * clean half-close and a client that vanished both end with msg NULL and
 * ok true: only srv_call_on_close tells them apart. */
typedef void (*srv_recv_fn)(srv_call *c, void *arg, const uint8_t *msg, size_t len, bool ok);
void srv_call_recv(srv_call *c, srv_recv_fn fn, void *arg);

/* Sends one message of a server stream (copied). fn runs once gRPC has
 * taken it under flow control; ok false means the client is gone. */
typedef void (*srv_sent_fn)(srv_call *c, void *arg, bool ok);
void srv_call_send(srv_call *c, const uint8_t *msg, size_t len, srv_sent_fn fn, void *arg);

/* Ends a server stream with OK. */
void srv_call_finish(srv_call *c);

/* Cancels the call with DEADLINE_EXCEEDED once no message went in or out
 * for ms (> 0) milliseconds: its pending recv or send then fails, and its
 * holder ends it as for a lost client. Once per call; any thread. */
void srv_call_idle_timeout(srv_call *c, int ms);

/* Registers fn to run once the client side of a streaming call is closed:
 * cancelled is true for a cancel, a deadline or a lost connection, false
 * after the call ended normally. Runs at once if that already happened.
 * Only for streaming calls; fn may run on any thread. */
typedef void (*srv_close_fn)(srv_call *c, void *arg, bool cancelled);
void srv_call_on_close(srv_call *c, srv_close_fn fn, void *arg);

#endif
