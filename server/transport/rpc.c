/* gRPC core transport. Every completion-queue event carries a srv_tag whose
 * function handles it: slots waiting for new calls, and calls waiting for
 * their reply batch. Shutdown order follows GRPC_CORE_NOTES: shutdown and
 * notify, cancel what outlives the grace period, destroy, drain queues. */
#include "transport/rpc.h"
#include "transport/auth.h"
#include "transport/tls.h"
#include "base/clock.h"
#include "base/log.h"

#include <grpc/byte_buffer_reader.h>
#include <grpc/grpc.h>
#include <grpc/grpc_security.h>
#include <grpc/support/alloc.h>
#include <grpc/support/log.h>
#include <grpc/support/time.h>

#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

/* Calls waiting to be accepted, per method and per queue; one is re-posted
 * as each arrives, so this bounds only bursts within one poll. */
enum { SLOTS_PER_METHOD = 8, CATCH_ALL_SLOTS = 2 };
#define CATCH_ALL SIZE_MAX

typedef struct srv_tag {
    void (*fn)(struct srv_tag *t, bool ok);
} srv_tag;

#define container_of(p, type, member) ((type *)((char *)(p)-offsetof(type, member)))

typedef struct slot {
    srv_tag tag;
    srv_rpc *rpc;
    int cq;
    size_t method;
    grpc_call *call;
    gpr_timespec deadline;
    grpc_metadata_array md;
    grpc_byte_buffer *payload;
    grpc_call_details details;
} slot;

struct srv_call {
    srv_tag tag;                  /* the batch that ends the call */
    srv_rpc *rpc;
    grpc_call *call;
    size_t method;                /* index in rpc->methods; n_methods: unknown */
    int64_t arrived_us;           /* monotonic, for the outcome's duration */
    const char *run_id;           /* for the outcome, srv_call_set_run_id */
    gpr_timespec deadline;
    srv_arena *arena;
    uint8_t *req;
    size_t req_len;
    char *authorization;          /* the authorization header, or NULL */
    size_t authorization_len;
    bool streaming;               /* RECV_CLOSE_ON_SERVER is its own batch */
    bool initial_sent;            /* initial metadata went with a message */
    atomic_int refs;              /* the end batch + every batch in flight */
    int cancelled;
    grpc_byte_buffer *reply;
    grpc_metadata trailers[2];
    char pushback[24];
    /* streams */
    pthread_mutex_t mu;           /* guards the close state */
    srv_tag close_tag;
    bool closed;
    srv_close_fn close_fn;
    void *close_arg;
    srv_tag recv_tag;
    grpc_byte_buffer *recv_buf;
    srv_recv_fn recv_fn;
    void *recv_arg;
    srv_tag send_tag;
    grpc_byte_buffer *send_buf;
    srv_sent_fn send_fn;
    void *send_arg;
    /* the idle watchdog (srv_call_idle_timeout): in rpc's list while set */
    int idle_ms;                  /* 0: not watched */
    atomic_llong progress_ms;     /* monotonic ms of the last message in or out */
    struct srv_call *wd_prev, *wd_next; /* under rpc->wd_mu */
    bool idle_cancelled;          /* under rpc->wd_mu */
};

struct srv_rpc {
    grpc_server *server;
    grpc_completion_queue **cqs;
    pthread_t *threads;
    int n_cqs;
    int n_threads;
    const srv_rpc_method *methods;
    size_t n_methods;
    void **handles;
    srv_rpc_on_call on_call;
    srv_rpc_on_end on_end;
    void *app;
    atomic_bool stopping;
    srv_tag shutdown_tag;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool shutdown_done;
    long live_calls;              /* adopted and not yet destroyed (under mu) */
    /* The idle watchdog: one thread over the calls with an idle timeout. */
    pthread_mutex_t wd_mu;
    pthread_cond_t wd_cv;
    srv_call *wd_head;            /* under wd_mu */
    bool wd_stop;                 /* under wd_mu */
    bool wd_started;
    pthread_t wd_thread;
    grpc_resource_quota *quota;   /* ours while the server runs; NULL: none */
    srv_tls *tls;                 /* NULL: plaintext */
};

/* gRPC core's log lines, as cairnd's own records. */
static void route_grpc_log(gpr_log_func_args *args)
{
    srv_log_level level = args->severity == GPR_LOG_SEVERITY_ERROR  ? SRV_LOG_ERROR
                          : args->severity == GPR_LOG_SEVERITY_INFO ? SRV_LOG_INFO
                                                                    : SRV_LOG_DEBUG;
    srv_log(level, "grpc: %s (%s:%d)", args->message, args->file, args->line);
}

/* Debian builds abseil without NDEBUG, so every absl::Mutex lock in gRPC
 * core also feeds abseil's deadlock detector, a lock-order graph: 5-7% of
 * cairnd's CPU under load (perf, docs/benchmarks.md). Its off switch,
 * absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore), is
 * C++ only: reached by its mangled name (debian3 is Debian's inline
 * namespace of abseil 20220623), the enum passed as its int, 0. */
extern void absl_set_mutex_deadlock_detection_mode(int mode) __asm__(
    "_ZN4absl7debian329SetMutexDeadlockDetectionModeENS0_15OnDeadlockCycleE");
enum { ABSL_ON_DEADLOCK_CYCLE_IGNORE = 0 };

void srv_rpc_global_init(void)
{
    absl_set_mutex_deadlock_detection_mode(ABSL_ON_DEADLOCK_CYCLE_IGNORE);
    gpr_set_log_function(route_grpc_log);
    grpc_init();
}

void srv_rpc_global_shutdown(void)
{
    grpc_shutdown();
}

/* ---- calls ---- */

static void call_destroy(srv_call *c)
{
    srv_rpc *rpc = c->rpc;
    if (c->idle_ms) { /* out of the watchdog's list before the call goes */
        pthread_mutex_lock(&rpc->wd_mu);
        if (c->wd_prev)
            c->wd_prev->wd_next = c->wd_next;
        else
            rpc->wd_head = c->wd_next;
        if (c->wd_next)
            c->wd_next->wd_prev = c->wd_prev;
        pthread_mutex_unlock(&rpc->wd_mu);
    }
    pthread_mutex_lock(&rpc->mu);
    if (--rpc->live_calls == 0)
        pthread_cond_broadcast(&rpc->cv);
    pthread_mutex_unlock(&rpc->mu);
    if (c->call)
        grpc_call_unref(c->call);
    if (c->reply)
        grpc_byte_buffer_destroy(c->reply);
    if (c->streaming)
        pthread_mutex_destroy(&c->mu);
    srv_arena_destroy(c->arena);
    free(c);
}

static void call_unref(srv_call *c)
{
    if (atomic_fetch_sub(&c->refs, 1) == 1)
        call_destroy(c);
}

static void on_ended(srv_tag *t, bool ok)
{
    (void)ok; /* a failed send means the client went away: nothing to do */
    call_unref(container_of(t, srv_call, tag));
}

srv_arena *srv_call_arena(srv_call *c)
{
    return c->arena;
}

const uint8_t *srv_call_request(srv_call *c, size_t *len)
{
    *len = c->req_len;
    return c->req;
}

const char *srv_call_authorization(const srv_call *c, size_t *len)
{
    *len = c->authorization_len;
    return c->authorization;
}

void srv_call_set_run_id(srv_call *c, const char *run_id)
{
    c->run_id = run_id;
}

char *srv_call_peer(srv_call *c, char *out, size_t cap)
{
    char *peer = grpc_call_get_peer(c->call);
    snprintf(out, cap, "%s", peer ? peer : "");
    gpr_free(peer);
    return out;
}

int64_t srv_call_remaining_ms(const srv_call *c)
{
    if (c->deadline.tv_sec == INT64_MAX)
        return INT64_MAX;
    gpr_timespec left = gpr_time_sub(c->deadline, gpr_now(c->deadline.clock_type));
    return left.tv_sec * 1000 + left.tv_nsec / 1000000;
}

static grpc_byte_buffer *buffer_from(const uint8_t *msg, size_t len)
{
    grpc_slice s = grpc_slice_from_copied_buffer((const char *)msg, len);
    grpc_byte_buffer *b = grpc_raw_byte_buffer_create(&s, 1);
    grpc_slice_unref(s);
    return b;
}

/* Adds SEND_INITIAL_METADATA to ops unless it already went out. */
static size_t initial_metadata_op(srv_call *c, grpc_op *ops)
{
    if (c->initial_sent)
        return 0;
    c->initial_sent = true;
    ops[0].op = GRPC_OP_SEND_INITIAL_METADATA;
    return 1;
}

/* The batch that ends a call: headers unless sent, the message if any,
 * status with trailers, and for unary calls the close. */
static void end_call(srv_call *c, srv_code code, const char *details, const uint8_t *msg,
                     size_t len, bool has_msg, bool replayed, int pushback_ms)
{
    srv_rpc *rpc = c->rpc;
    if (rpc->on_end) {
        const srv_call_outcome o = {c->method, code, details, replayed,
                                    srv_mono_us() - c->arrived_us, c->run_id};
        rpc->on_end(rpc->app, c, &o);
    }
    grpc_op ops[4];
    memset(ops, 0, sizeof ops);
    size_t n = initial_metadata_op(c, ops);
    if (has_msg) {
        c->reply = buffer_from(msg, len);
        ops[n].op = GRPC_OP_SEND_MESSAGE;
        ops[n++].data.send_message.send_message = c->reply;
    }

    size_t nt = 0;
    if (replayed) {
        c->trailers[nt].key = grpc_slice_from_static_string("cairn-replayed");
        c->trailers[nt++].value = grpc_slice_from_static_string("true");
    }
    if (pushback_ms >= 0) {
        snprintf(c->pushback, sizeof c->pushback, "%d", pushback_ms);
        c->trailers[nt].key = grpc_slice_from_static_string("grpc-retry-pushback-ms");
        c->trailers[nt++].value = grpc_slice_from_static_string(c->pushback);
    }
    grpc_slice text = grpc_slice_from_copied_string(details ? details : "");
    ops[n].op = GRPC_OP_SEND_STATUS_FROM_SERVER;
    ops[n].data.send_status_from_server.trailing_metadata_count = nt;
    ops[n].data.send_status_from_server.trailing_metadata = nt ? c->trailers : NULL;
    ops[n].data.send_status_from_server.status = (grpc_status_code)code;
    ops[n++].data.send_status_from_server.status_details = details ? &text : NULL;
    if (!c->streaming) {
        ops[n].op = GRPC_OP_RECV_CLOSE_ON_SERVER;
        ops[n++].data.recv_close_on_server.cancelled = &c->cancelled;
    }

    c->tag.fn = on_ended;
    grpc_call_error e = grpc_call_start_batch(c->call, ops, n, &c->tag, NULL);
    grpc_slice_unref(text);
    if (e != GRPC_CALL_OK) {
        srv_error_log("rpc: ending batch refused (%d)", (int)e);
        call_unref(c);
    }
}

void srv_call_reply(srv_call *c, const uint8_t *msg, size_t len, bool replayed)
{
    end_call(c, SRV_OK, NULL, msg, len, true, replayed, -1);
}

void srv_call_fail(srv_call *c, const srv_error *err)
{
    end_call(c, err->code, err->msg, NULL, 0, false, false, err->pushback_ms);
}

void srv_call_finish(srv_call *c)
{
    end_call(c, SRV_OK, NULL, NULL, 0, false, false, -1);
}

/* Starts a batch that holds a reference until it completes. */
static void start_ref_batch(srv_call *c, grpc_op *ops, size_t n, srv_tag *tag)
{
    atomic_fetch_add(&c->refs, 1);
    grpc_call_error e = grpc_call_start_batch(c->call, ops, n, tag, NULL);
    if (e != GRPC_CALL_OK) {
        srv_error_log("rpc: stream batch refused (%d)", (int)e);
        c->cancelled = 1;
        tag->fn(tag, false); /* report the failure through the usual path */
    }
}

static void on_close(srv_tag *t, bool ok)
{
    (void)ok;
    srv_call *c = container_of(t, srv_call, close_tag);
    pthread_mutex_lock(&c->mu);
    c->closed = true;
    srv_close_fn fn = c->close_fn;
    pthread_mutex_unlock(&c->mu);
    if (fn)
        fn(c, c->close_arg, c->cancelled != 0);
    call_unref(c);
}

void srv_call_on_close(srv_call *c, srv_close_fn fn, void *arg)
{
    pthread_mutex_lock(&c->mu);
    bool closed = c->closed;
    if (!closed) {
        c->close_fn = fn;
        c->close_arg = arg;
    }
    pthread_mutex_unlock(&c->mu);
    if (closed)
        fn(c, arg, c->cancelled != 0);
}

static void progressed(srv_call *c)
{
    if (c->idle_ms)
        atomic_store(&c->progress_ms, srv_monotonic_ms());
}

void srv_call_idle_timeout(srv_call *c, int ms)
{
    if (ms <= 0 || c->idle_ms)
        return;
    srv_rpc *rpc = c->rpc;
    atomic_store(&c->progress_ms, srv_monotonic_ms());
    pthread_mutex_lock(&rpc->wd_mu);
    c->idle_ms = ms;
    c->wd_prev = NULL;
    c->wd_next = rpc->wd_head;
    if (rpc->wd_head)
        rpc->wd_head->wd_prev = c;
    rpc->wd_head = c;
    pthread_cond_signal(&rpc->wd_cv);
    pthread_mutex_unlock(&rpc->wd_mu);
}

/* Cancels each watched call that made no progress for its idle time, and
 * waits until the next one could be due. A call stays in the list until
 * it is destroyed (call_destroy takes wd_mu), so c->call is valid here;
 * the cancel only queues completions for the cq threads. */
static void *watchdog_thread(void *arg)
{
    srv_rpc *rpc = arg;
    pthread_mutex_lock(&rpc->wd_mu);
    while (!rpc->wd_stop) {
        int64_t now = srv_monotonic_ms(), next = -1;
        for (srv_call *c = rpc->wd_head; c; c = c->wd_next) {
            if (c->idle_cancelled)
                continue;
            int64_t due = atomic_load(&c->progress_ms) + c->idle_ms;
            if (due <= now) {
                c->idle_cancelled = true;
                srv_info("rpc: a transfer made no progress for %d ms; cancelling it", c->idle_ms);
                char msg[96];
                snprintf(msg, sizeof msg, "cairnd: no progress for %d ms", c->idle_ms);
                grpc_call_cancel_with_status(c->call, GRPC_STATUS_DEADLINE_EXCEEDED, msg, NULL);
            } else if (next < 0 || due < next) {
                next = due;
            }
        }
        if (next < 0) {
            pthread_cond_wait(&rpc->wd_cv, &rpc->wd_mu);
        } else {
            struct timespec ts = {(time_t)(next / 1000), (long)(next % 1000) * 1000000};
            pthread_cond_timedwait(&rpc->wd_cv, &rpc->wd_mu, &ts);
        }
    }
    pthread_mutex_unlock(&rpc->wd_mu);
    return NULL;
}

static void on_recv(srv_tag *t, bool ok)
{
    srv_call *c = container_of(t, srv_call, recv_tag);
    if (ok)
        progressed(c);
    grpc_byte_buffer *b = c->recv_buf;
    c->recv_buf = NULL;
    uint8_t *msg = NULL;
    size_t len = 0;
    if (ok && b) {
        grpc_byte_buffer_reader r;
        if (grpc_byte_buffer_reader_init(&r, b)) {
            grpc_slice all = grpc_byte_buffer_reader_readall(&r);
            len = GRPC_SLICE_LENGTH(all);
            msg = malloc(len ? len : 1);
            if (msg)
                memcpy(msg, GRPC_SLICE_START_PTR(all), len);
            grpc_slice_unref(all);
            grpc_byte_buffer_reader_destroy(&r);
        }
        ok = msg != NULL;
    }
    if (b)
        grpc_byte_buffer_destroy(b);
    c->recv_fn(c, c->recv_arg, msg, len, ok);
    free(msg);
    call_unref(c);
}

void srv_call_recv(srv_call *c, srv_recv_fn fn, void *arg)
{
    c->recv_fn = fn;
    c->recv_arg = arg;
    c->recv_tag.fn = on_recv;
    grpc_op op;
    memset(&op, 0, sizeof op);
    op.op = GRPC_OP_RECV_MESSAGE;
    op.data.recv_message.recv_message = &c->recv_buf;
    start_ref_batch(c, &op, 1, &c->recv_tag);
}

static void on_sent(srv_tag *t, bool ok)
{
    srv_call *c = container_of(t, srv_call, send_tag);
    if (ok)
        progressed(c);
    if (c->send_buf)
        grpc_byte_buffer_destroy(c->send_buf);
    c->send_buf = NULL;
    c->send_fn(c, c->send_arg, ok);
    call_unref(c);
}

void srv_call_send(srv_call *c, const uint8_t *msg, size_t len, srv_sent_fn fn, void *arg)
{
    c->send_fn = fn;
    c->send_arg = arg;
    c->send_tag.fn = on_sent;
    grpc_op ops[2];
    memset(ops, 0, sizeof ops);
    size_t n = initial_metadata_op(c, ops);
    c->send_buf = buffer_from(msg, len);
    ops[n].op = GRPC_OP_SEND_MESSAGE;
    ops[n++].data.send_message.send_message = c->send_buf;
    start_ref_batch(c, ops, n, &c->send_tag);
}

/* Streaming calls learn of cancels from their own RECV_CLOSE_ON_SERVER. */
static void watch_close(srv_call *c)
{
    c->streaming = true;
    pthread_mutex_init(&c->mu, NULL);
    c->close_tag.fn = on_close;
    grpc_op op;
    memset(&op, 0, sizeof op);
    op.op = GRPC_OP_RECV_CLOSE_ON_SERVER;
    op.data.recv_close_on_server.cancelled = &c->cancelled;
    start_ref_batch(c, &op, 1, &c->close_tag);
}

/* ---- accepting calls ---- */

static void on_slot(srv_tag *t, bool ok);

static void post_slot(slot *s)
{
    srv_rpc *rpc = s->rpc;
    grpc_completion_queue *cq = rpc->cqs[s->cq];
    grpc_call_error e;

    s->tag.fn = on_slot;
    s->call = NULL;
    s->payload = NULL;
    grpc_metadata_array_init(&s->md);
    if (s->method == CATCH_ALL) {
        grpc_call_details_init(&s->details);
        e = grpc_server_request_call(rpc->server, &s->call, &s->details, &s->md,
                                     cq, cq, &s->tag);
    } else {
        bool streaming = rpc->methods[s->method].shape == SRV_RPC_CLIENT_STREAM;
        e = grpc_server_request_registered_call(
            rpc->server, rpc->handles[s->method], &s->call, &s->deadline, &s->md,
            streaming ? NULL : &s->payload, cq, cq, &s->tag);
    }
    if (e != GRPC_CALL_OK) {
        srv_error_log("rpc: cannot wait for calls (%d)", (int)e);
        grpc_metadata_array_destroy(&s->md);
        if (s->method == CATCH_ALL)
            grpc_call_details_destroy(&s->details);
        free(s);
    }
}

static srv_call *adopt_call(slot *s, grpc_byte_buffer *payload)
{
    srv_call *c = calloc(1, sizeof *c);
    srv_arena *arena = srv_arena_create();
    if (!c || !arena) {
        free(c);
        srv_arena_destroy(arena);
        return NULL;
    }
    c->rpc = s->rpc;
    c->call = s->call;
    c->method = s->method == CATCH_ALL ? s->rpc->n_methods : s->method;
    c->arrived_us = srv_mono_us();
    c->deadline = s->deadline;
    c->arena = arena;
    atomic_init(&c->refs, 1);
    pthread_mutex_lock(&s->rpc->mu);
    s->rpc->live_calls++;
    pthread_mutex_unlock(&s->rpc->mu);
    for (size_t i = 0; i < s->md.count && !c->authorization; i++) {
        grpc_slice key = s->md.metadata[i].key, value = s->md.metadata[i].value;
        if (GRPC_SLICE_LENGTH(key) == 13 &&
            memcmp(GRPC_SLICE_START_PTR(key), "authorization", 13) == 0) {
            c->authorization_len = GRPC_SLICE_LENGTH(value);
            /* memdup of len + 1 would read past the slice: copy, then end it */
            c->authorization = srv_arena_alloc(arena, c->authorization_len + 1);
            if (c->authorization) {
                memcpy(c->authorization, GRPC_SLICE_START_PTR(value), c->authorization_len);
                c->authorization[c->authorization_len] = '\0';
            }
        }
    }
    if (payload) {
        grpc_byte_buffer_reader r;
        if (grpc_byte_buffer_reader_init(&r, payload)) {
            grpc_slice all = grpc_byte_buffer_reader_readall(&r);
            c->req_len = GRPC_SLICE_LENGTH(all);
            c->req = srv_arena_memdup(arena, GRPC_SLICE_START_PTR(all), c->req_len);
            grpc_slice_unref(all);
            grpc_byte_buffer_reader_destroy(&r);
        }
    }
    return c;
}

static void on_slot(srv_tag *t, bool ok)
{
    slot *s = container_of(t, slot, tag);
    srv_rpc *rpc = s->rpc;

    if (!ok) { /* the server is shutting down */
        grpc_metadata_array_destroy(&s->md);
        if (s->method == CATCH_ALL)
            grpc_call_details_destroy(&s->details);
        free(s);
        return;
    }

    grpc_byte_buffer *payload = s->payload;
    srv_call *c = adopt_call(s, payload);
    if (payload)
        grpc_byte_buffer_destroy(payload);
    grpc_metadata_array_destroy(&s->md);

    char unknown[256] = "";
    if (s->method == CATCH_ALL) {
        snprintf(unknown, sizeof unknown, "%.*s",
                 (int)GRPC_SLICE_LENGTH(s->details.method),
                 (const char *)GRPC_SLICE_START_PTR(s->details.method));
        grpc_call_details_destroy(&s->details);
        c->deadline = gpr_inf_future(GPR_CLOCK_MONOTONIC);
    }
    size_t method = s->method;
    bool had_payload = payload != NULL;

    if (!c) {
        grpc_call_cancel_with_status(s->call, GRPC_STATUS_RESOURCE_EXHAUSTED,
                                     "cairnd is out of memory", NULL);
        grpc_call_unref(s->call);
    }
    /* Wait for the next call on this slot before handling this one. */
    if (atomic_load(&rpc->stopping))
        free(s);
    else
        post_slot(s);
    if (!c)
        return;

    if (method == CATCH_ALL) {
        srv_error err;
        srv_fail(&err, SRV_UNIMPLEMENTED, "method %s is not served by cairnd", unknown);
        srv_call_fail(c, &err);
    } else if (rpc->methods[method].shape != SRV_RPC_CLIENT_STREAM && !had_payload) {
        srv_error err;
        srv_fail(&err, SRV_INVALID_ARGUMENT, "request: the call carried no message");
        srv_call_fail(c, &err);
    } else {
        if (rpc->methods[method].shape != SRV_RPC_UNARY)
            watch_close(c);
        rpc->on_call(rpc->app, c, method);
    }
}

static void *cq_thread(void *arg)
{
    grpc_completion_queue *cq = arg;
    for (;;) {
        grpc_event ev = grpc_completion_queue_next(cq, gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
        if (ev.type == GRPC_QUEUE_SHUTDOWN)
            break;
        if (ev.type == GRPC_OP_COMPLETE) {
            srv_tag *t = ev.tag;
            t->fn(t, ev.success != 0);
        }
    }
    return NULL;
}

static void on_shutdown(srv_tag *t, bool ok)
{
    (void)ok;
    srv_rpc *rpc = container_of(t, srv_rpc, shutdown_tag);
    pthread_mutex_lock(&rpc->mu);
    rpc->shutdown_done = true;
    pthread_cond_broadcast(&rpc->cv);
    pthread_mutex_unlock(&rpc->mu);
}

/* "host:port" -> "host:<bound port>" */
static bool is_unix_socket(const char *listen)
{
    return strncmp(listen, "unix:", 5) == 0;
}

static void bound_address(const char *listen, int port, char *out, size_t cap)
{
    if (is_unix_socket(listen)) {
        snprintf(out, cap, "%s", listen);
        return;
    }
    const char *colon = strrchr(listen, ':');
    int host_len = colon ? (int)(colon - listen) : (int)strlen(listen);
    snprintf(out, cap, "%.*s:%d", host_len, listen, port);
}

static void free_rpc(srv_rpc *rpc)
{
    for (int i = 0; i < rpc->n_cqs; i++)
        grpc_completion_queue_destroy(rpc->cqs[i]);
    free(rpc->cqs);
    free(rpc->threads);
    free(rpc->handles);
    if (rpc->wd_started) {
        pthread_mutex_lock(&rpc->wd_mu);
        rpc->wd_stop = true;
        pthread_cond_signal(&rpc->wd_cv);
        pthread_mutex_unlock(&rpc->wd_mu);
        pthread_join(rpc->wd_thread, NULL);
    }
    pthread_cond_destroy(&rpc->wd_cv);
    pthread_mutex_destroy(&rpc->wd_mu);
    pthread_cond_destroy(&rpc->cv);
    pthread_mutex_destroy(&rpc->mu);
    if (rpc->quota) /* the server's channel args held their own reference */
        grpc_resource_quota_unref(rpc->quota);
    srv_tls_free(rpc->tls); /* the server, its only user, is gone */
    free(rpc);
}

/* Shuts down and drains the queues, then joins whatever threads run. */
static void stop_queues(srv_rpc *rpc)
{
    for (int i = 0; i < rpc->n_cqs; i++)
        grpc_completion_queue_shutdown(rpc->cqs[i]);
    for (int i = 0; i < rpc->n_threads; i++)
        pthread_join(rpc->threads[i], NULL);
    /* Queues no thread was started for are drained here. */
    for (int i = rpc->n_threads; i < rpc->n_cqs; i++)
        cq_thread(rpc->cqs[i]);
}

/* One line on the certificate served: a warning once it has expired,
 * since every client will then refuse it. */
static void log_tls(const srv_tls *tls, const char *before, const char *after)
{
    char line[900];
    bool expired = srv_tls_describe(tls, line, sizeof line);
    srv_log(expired ? SRV_LOG_WARN : SRV_LOG_INFO, "%s %s%s%s", before, line, after,
            expired ? "; clients refuse an expired certificate" : "");
}

void srv_rpc_reload_tls(srv_rpc *rpc)
{
    if (!rpc || !rpc->tls)
        return;
    srv_error err;
    if (srv_tls_reload(rpc->tls, &err)) {
        srv_error_log("received SIGHUP; TLS not reloaded, the old certificate serves on: %s",
                      err.msg);
        return;
    }
    log_tls(rpc->tls, "received SIGHUP; TLS reloaded:",
            "; new connections use it, open ones keep theirs");
}

srv_code srv_rpc_start(const srv_rpc_config *cfg, srv_rpc **out,
                       char *bound, size_t bound_cap, srv_error *err)
{
    srv_rpc *rpc = calloc(1, sizeof *rpc);
    if (!rpc)
        return srv_fail(err, SRV_RESOURCE_EXHAUSTED, "out of memory");
    pthread_mutex_init(&rpc->mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&rpc->cv, &ca);
    pthread_cond_init(&rpc->wd_cv, &ca);
    pthread_mutex_init(&rpc->wd_mu, NULL);
    pthread_condattr_destroy(&ca);
    rpc->methods = cfg->methods;
    rpc->n_methods = cfg->n_methods;
    rpc->on_call = cfg->on_call;
    rpc->on_end = cfg->on_end;
    rpc->app = cfg->app;
    rpc->shutdown_tag.fn = on_shutdown;
    rpc->cqs = calloc((size_t)cfg->threads, sizeof *rpc->cqs);
    rpc->threads = calloc((size_t)cfg->threads, sizeof *rpc->threads);
    rpc->handles = calloc(cfg->n_methods, sizeof *rpc->handles);
    if (!rpc->cqs || !rpc->threads || !rpc->handles) {
        free_rpc(rpc);
        return srv_fail(err, SRV_RESOURCE_EXHAUSTED, "out of memory");
    }
    /* Bad TLS files stop the start before anything listens. */
    if (cfg->tls_cert && *cfg->tls_cert) {
        const srv_tls_files files = {cfg->tls_cert, cfg->tls_key, cfg->tls_client_ca};
        srv_code rc = srv_tls_open(&files, &rpc->tls, err);
        if (rc) {
            free_rpc(rpc);
            return rc;
        }
    }

    /* Limits per connection. Keepalive: the server pings after
     * keepalive_time_ms without reads, whether or not calls are open and
     * however long no data flowed (MAX_PINGS_WITHOUT_DATA 0), and closes
     * the connection when a ping goes unanswered keepalive_timeout_ms:
     * a peer that vanished (a host gone, a process stopped) loses its
     * calls, hence its watches and pins, within about the two. Clients may
     * ping as often as every 10 s without being sent GOAWAY. */
    grpc_arg args[16];
    size_t na = 0;
#define INT_ARG(k, v)                                                                    \
    (args[na].type = GRPC_ARG_INTEGER, args[na].key = (char *)(k),                       \
     args[na].value.integer = (int)(v), na++)
    INT_ARG(GRPC_ARG_MAX_RECEIVE_MESSAGE_LENGTH, cfg->max_message_bytes);
    INT_ARG(GRPC_ARG_MAX_SEND_MESSAGE_LENGTH, cfg->max_message_bytes);
    if (cfg->max_concurrent_streams > 0)
        INT_ARG(GRPC_ARG_MAX_CONCURRENT_STREAMS, cfg->max_concurrent_streams);
    if (cfg->keepalive_time_ms > 0) {
        INT_ARG(GRPC_ARG_KEEPALIVE_TIME_MS, cfg->keepalive_time_ms);
        INT_ARG(GRPC_ARG_KEEPALIVE_TIMEOUT_MS, cfg->keepalive_timeout_ms);
        INT_ARG(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 1);
        INT_ARG(GRPC_ARG_HTTP2_MAX_PINGS_WITHOUT_DATA, 0);
        INT_ARG(GRPC_ARG_HTTP2_MIN_RECV_PING_INTERVAL_WITHOUT_DATA_MS, 10000);
        INT_ARG(GRPC_ARG_HTTP2_MAX_PING_STRIKES, 2);
    }
    if (cfg->max_connection_idle_ms > 0)
        INT_ARG(GRPC_ARG_MAX_CONNECTION_IDLE_MS, cfg->max_connection_idle_ms);
#undef INT_ARG
    /* One memory quota over the whole transport: the listener hands it to
     * every connection's reads and frames and to every call's arena. gRPC
     * 1.51 never fails an allocation against it: past the quota it asks
     * its reclaimers for memory, which GOAWAY connections without calls
     * and then cancel calls of busy connections (RST_STREAM
     * ENHANCE_YOUR_CALM, "Buffers full": RESOURCE_EXHAUSTED for the
     * client), and it shrinks the flow-control windows it announces as
     * the quota fills (docs/operations.md, "Overload"). */
    if (cfg->memory_bytes > 0) {
        rpc->quota = grpc_resource_quota_create("cairnd");
        grpc_resource_quota_resize(rpc->quota, cfg->memory_bytes);
        args[na].type = GRPC_ARG_POINTER;
        args[na].key = (char *)GRPC_ARG_RESOURCE_QUOTA;
        args[na].value.pointer.p = rpc->quota;
        args[na].value.pointer.vtable = grpc_resource_quota_arg_vtable();
        na++;
    }
    grpc_channel_args cargs = {na, args};
    rpc->server = grpc_server_create(&cargs, NULL);

    for (int i = 0; i < cfg->threads; i++) {
        rpc->cqs[i] = grpc_completion_queue_create_for_next(NULL);
        rpc->n_cqs++;
        grpc_server_register_completion_queue(rpc->server, rpc->cqs[i], NULL);
    }
    for (size_t m = 0; m < cfg->n_methods; m++) {
        rpc->handles[m] = grpc_server_register_method(
            rpc->server, cfg->methods[m].path, NULL,
            cfg->methods[m].shape == SRV_RPC_CLIENT_STREAM ? GRPC_SRM_PAYLOAD_NONE
                                             : GRPC_SRM_PAYLOAD_READ_INITIAL_BYTE_BUFFER,
            0);
    }

    grpc_server_credentials *creds = rpc->tls ? srv_tls_credentials(rpc->tls)
                                              : grpc_insecure_server_credentials_create();
    if (srv_rpc_auth_attach(creds, cfg) < 0) {
        grpc_server_credentials_release(creds);
        grpc_server_destroy(rpc->server);
        stop_queues(rpc);
        free_rpc(rpc);
        return srv_fail(err, SRV_RESOURCE_EXHAUSTED, "out of memory");
    }
    /* A unix socket file is created 0600, so only this user may connect
     * (config.c serves it without --insecure). gRPC binds within this
     * call, and no other thread creates files while cairnd starts, so the
     * process-wide umask is safe to narrow for it. */
    mode_t mask = is_unix_socket(cfg->listen) ? umask(0177) : 0;
    int port = grpc_server_add_http2_port(rpc->server, cfg->listen, creds);
    if (is_unix_socket(cfg->listen))
        umask(mask);
    grpc_server_credentials_release(creds);
    if (port == 0) {
        grpc_server_destroy(rpc->server);
        stop_queues(rpc);
        free_rpc(rpc);
        return srv_fail(err, SRV_UNAVAILABLE,
                        "--listen: cannot listen on %s (address in use or not local?)",
                        cfg->listen);
    }
    bound_address(cfg->listen, port, bound, bound_cap);
    if (rpc->tls)
        log_tls(rpc->tls, "TLS:", "");
    grpc_server_start(rpc->server);

    for (int q = 0; q < rpc->n_cqs; q++) {
        for (size_t m = 0; m <= cfg->n_methods; m++) {
            int n = m == cfg->n_methods ? CATCH_ALL_SLOTS : SLOTS_PER_METHOD;
            for (int k = 0; k < n; k++) {
                slot *s = calloc(1, sizeof *s);
                if (!s)
                    continue; /* fewer waiting slots; still serves */
                s->rpc = rpc;
                s->cq = q;
                s->method = m == cfg->n_methods ? CATCH_ALL : m;
                post_slot(s);
            }
        }
    }
    for (int i = 0; i < rpc->n_cqs; i++) {
        if (pthread_create(&rpc->threads[i], NULL, cq_thread, rpc->cqs[i]) != 0)
            break;
        rpc->n_threads++;
    }
    if (rpc->n_threads > 0 && pthread_create(&rpc->wd_thread, NULL, watchdog_thread, rpc) == 0)
        rpc->wd_started = true;
    if (rpc->n_threads == 0 || !rpc->wd_started) {
        srv_rpc_shutdown(rpc, 0);
        srv_rpc_stop(rpc);
        return srv_fail(err, SRV_RESOURCE_EXHAUSTED, "cannot start threads");
    }
    *out = rpc;
    return SRV_OK;
}

typedef enum until {
    UNTIL_NO_CALL_OR_SHUT_DOWN, /* the grace: in-flight calls done, or gRPC done */
    UNTIL_SHUT_DOWN,            /* gRPC's shutdown notification */
    UNTIL_SHUT_DOWN_AND_NO_CALL /* and every call released */
} until;

static bool reached(const srv_rpc *rpc, until u)
{
    switch (u) {
    case UNTIL_NO_CALL_OR_SHUT_DOWN:
        return rpc->shutdown_done || rpc->live_calls == 0;
    case UNTIL_SHUT_DOWN:
        return rpc->shutdown_done;
    case UNTIL_SHUT_DOWN_AND_NO_CALL:
        return rpc->shutdown_done && rpc->live_calls == 0;
    }
    return true;
}

/* Waits until u is reached, or until deadline_ms (monotonic; < 0: no
 * deadline). Returns whether it was reached. */
static bool wait_shutdown(srv_rpc *rpc, until u, int64_t deadline_ms)
{
    pthread_mutex_lock(&rpc->mu);
    while (!reached(rpc, u)) {
        if (deadline_ms < 0) {
            pthread_cond_wait(&rpc->cv, &rpc->mu);
            continue;
        }
        struct timespec ts = {(time_t)(deadline_ms / 1000), (long)(deadline_ms % 1000) * 1000000};
        if (pthread_cond_timedwait(&rpc->cv, &rpc->mu, &ts) != 0)
            break;
    }
    bool done = reached(rpc, u);
    pthread_mutex_unlock(&rpc->mu);
    return done;
}

void srv_rpc_shutdown(srv_rpc *rpc, int grace_ms)
{
    if (!rpc)
        return;
    atomic_store(&rpc->stopping, true);
    grpc_server_shutdown_and_notify(rpc->server, rpc->cqs[0], &rpc->shutdown_tag);
    /* In-flight calls get the grace period; idle client connections do
     * not (an idle client may not read its socket for seconds): once no
     * call is left, or the grace is over, everything is cut. */
    if (rpc->n_threads > 0 &&
        !wait_shutdown(rpc, UNTIL_NO_CALL_OR_SHUT_DOWN, srv_monotonic_ms() + grace_ms))
        srv_warn("shutdown: in-flight calls outlived the %d ms grace; cancelling them", grace_ms);
    grpc_server_cancel_all_calls(rpc->server);
}

void srv_rpc_stop(srv_rpc *rpc)
{
    if (!rpc)
        return;
    /* A cancelled call is still ours until its holder (the ledger, a
     * stream) ends it; its end batch needs the queues running. */
    if (rpc->n_threads > 0)
        wait_shutdown(rpc, UNTIL_SHUT_DOWN_AND_NO_CALL, -1);
    grpc_server_destroy(rpc->server);
    stop_queues(rpc);
    free_rpc(rpc);
}
