/* gRPC core transport of libcairn: one channel, registered methods, and a
 * blocking unary call per attempt on its own pluck queue, so concurrent
 * calls from many threads never wait on each other's events. */
#include "internal.h"

#include <grpc/byte_buffer_reader.h>
#include <grpc/grpc.h>
#include <grpc/grpc_security.h>
#include <grpc/support/alloc.h>
#include <grpc/support/time.h>

#include <stdlib.h>
#include <string.h>

static const char *const paths[CAIRN__METHOD_COUNT] = {
    [CAIRN__CREATE_RUN] = "/cairn.v1.Coordinator/CreateRun",
    [CAIRN__GET_RUN] = "/cairn.v1.Coordinator/GetRun",
    [CAIRN__LIST_RUNS] = "/cairn.v1.Coordinator/ListRuns",
    [CAIRN__APPEND_EVENTS] = "/cairn.v1.Coordinator/AppendEvents",
    [CAIRN__READ_EVENTS] = "/cairn.v1.Coordinator/ReadEvents",
    [CAIRN__HEALTH_CHECK] = "/grpc.health.v1.Health/Check",
    [CAIRN__COMPLETE_WORKER] = "/cairn.v1.Coordinator/CompleteWorker",
    [CAIRN__CREATE_CHECKPOINT] = "/cairn.v1.Coordinator/CreateCheckpoint",
    [CAIRN__LIST_CHECKPOINTS] = "/cairn.v1.Coordinator/ListCheckpoints",
    [CAIRN__GET_LATEST_CHECKPOINT] = "/cairn.v1.Coordinator/GetLatestCheckpoint",
    [CAIRN__LOAD_CHECKPOINT] = "/cairn.v1.Coordinator/LoadCheckpoint",
    [CAIRN__CLEANUP_CHECKPOINTS] = "/cairn.v1.Coordinator/CleanupCheckpoints",
    [CAIRN__DELETE_RUN] = "/cairn.v1.Coordinator/DeleteRun",
    [CAIRN__RESUME_RUN] = "/cairn.v1.Coordinator/ResumeRun",
    [CAIRN__ACQUIRE_WORKER] = "/cairn.v1.Coordinator/AcquireWorker",
    [CAIRN__RENEW_LEASE] = "/cairn.v1.Coordinator/RenewLease",
    [CAIRN__RELEASE_WORKER] = "/cairn.v1.Coordinator/ReleaseWorker",
    [CAIRN__WATCH_EVENTS] = "/cairn.v1.Coordinator/WatchEvents",
};

const char *cairn__method_name(cairn__method m)
{
    return strrchr(paths[m], '/') + 1;
}

/* Reconnect quickly after a server restart: the backoff between attempts
 * starts at 100 ms and stays under 1 s (GRPC_CORE_NOTES). MIN is each
 * attempt's connect timeout (TCP, TLS and the server's first SETTINGS):
 * at 100 ms a busy machine failed loopback TLS handshakes ("timed out
 * before receiving SETTINGS frame"), which fails a call that has one
 * attempt; 1 s still bounds an attempt on a server that accepts and
 * never answers. */
enum { RECONNECT_MIN_MS = 1000, RECONNECT_INITIAL_MS = 100, RECONNECT_MAX_MS = 1000 };

struct cairn__transport {
    grpc_channel *channel;
    void *handles[CAIRN__METHOD_COUNT];
    /* "authorization: Bearer TOKEN" when there is a token: every call's
     * initial metadata, copied into the attempt (gRPC writes into a
     * grpc_metadata it sends, so calls on other threads share none). */
    grpc_metadata auth;
    size_t n_auth;
};

static grpc_channel_credentials *channel_credentials(const cairn__tls *tls)
{
    if (!tls)
        return grpc_insecure_credentials_create();
    grpc_ssl_pem_key_cert_pair pair = {tls->key_pem, tls->cert_pem};
    return grpc_ssl_credentials_create(tls->ca_pem, tls->cert_pem ? &pair : NULL, NULL, NULL);
}

cairn_status cairn__transport_create(const char *target, uint32_t max_message_bytes,
                                     const cairn__tls *tls, const char *token,
                                     cairn__transport **out,
                                     cairn_error *err)
{
    cairn__transport *t = calloc(1, sizeof *t);
    if (!t)
        return cairn__fail(err, CAIRN_NO_MEMORY, "out of memory");
    grpc_init();

    grpc_arg args[8];
    int n = 0;
#define INT_ARG(k, v) \
    args[n].type = GRPC_ARG_INTEGER, args[n].key = (char *)(k), args[n++].value.integer = (int)(v)
    INT_ARG(GRPC_ARG_ENABLE_RETRIES, 0); /* libcairn retries; never both */
    INT_ARG(GRPC_ARG_MAX_RECEIVE_MESSAGE_LENGTH, max_message_bytes);
    INT_ARG(GRPC_ARG_MAX_SEND_MESSAGE_LENGTH, max_message_bytes);
    INT_ARG(GRPC_ARG_MIN_RECONNECT_BACKOFF_MS, RECONNECT_MIN_MS);
    INT_ARG(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, RECONNECT_INITIAL_MS);
    INT_ARG(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, RECONNECT_MAX_MS);
#undef INT_ARG
    args[n].type = GRPC_ARG_STRING;
    args[n].key = (char *)GRPC_ARG_LB_POLICY_NAME;
    args[n++].value.string = (char *)"round_robin";
    if (tls && tls->server_name) { /* the name the certificate must carry */
        args[n].type = GRPC_ARG_STRING;
        args[n].key = (char *)GRPC_SSL_TARGET_NAME_OVERRIDE_ARG;
        args[n++].value.string = tls->server_name;
    }
    grpc_channel_args cargs = {(size_t)n, args};

    grpc_channel_credentials *creds = channel_credentials(tls);
    t->channel = grpc_channel_create(target, creds, &cargs);
    grpc_channel_credentials_release(creds);
    if (!t->channel) {
        free(t);
        grpc_shutdown();
        return cairn__fail(err, CAIRN_INVALID_ARGUMENT, "target: cannot use \"%s\"", target);
    }
    for (int m = 0; m < CAIRN__METHOD_COUNT; m++)
        t->handles[m] = grpc_channel_register_call(t->channel, paths[m], NULL, NULL);
    if (token) {
        static const char scheme[] = "Bearer ";
        size_t len = strlen(token);
        t->auth.key = grpc_slice_from_static_string("authorization");
        t->auth.value = grpc_slice_malloc(sizeof scheme - 1 + len);
        memcpy(GRPC_SLICE_START_PTR(t->auth.value), scheme, sizeof scheme - 1);
        memcpy(GRPC_SLICE_START_PTR(t->auth.value) + sizeof scheme - 1, token, len);
        t->n_auth = 1;
    }
    *out = t;
    return CAIRN_OK;
}

void cairn__transport_destroy(cairn__transport *t)
{
    if (!t)
        return;
    grpc_channel_destroy(t->channel);
    if (t->n_auth) {
        /* the token is a secret: not left in freed memory */
        memset(GRPC_SLICE_START_PTR(t->auth.value), 0, GRPC_SLICE_LENGTH(t->auth.value));
        grpc_slice_unref(t->auth.value);
    }
    free(t);
    grpc_shutdown();
}

void cairn__reply_free(cairn__reply *r)
{
    free(r->details);
    free(r->body);
    r->details = NULL;
    r->body = NULL;
}

static char *slice_strdup(grpc_slice s)
{
    size_t n = GRPC_SLICE_LENGTH(s);
    char *p = malloc(n + 1);
    if (p) {
        memcpy(p, GRPC_SLICE_START_PTR(s), n);
        p[n] = '\0';
    }
    return p;
}

static bool slice_is(grpc_slice s, const char *text)
{
    size_t n = strlen(text);
    return GRPC_SLICE_LENGTH(s) == n && memcmp(GRPC_SLICE_START_PTR(s), text, n) == 0;
}

static void read_trailers(const grpc_metadata_array *md, cairn__reply *out)
{
    for (size_t i = 0; i < md->count; i++) {
        const grpc_metadata *m = &md->metadata[i];
        if (slice_is(m->key, "grpc-retry-pushback-ms") &&
            cairn__parse_pushback((const char *)GRPC_SLICE_START_PTR(m->value),
                                  GRPC_SLICE_LENGTH(m->value), &out->pushback_ms))
            out->has_pushback = true;
    }
}

static void local_failure(cairn__reply *out, const char *why)
{
    out->grpc_status = GRPC_STATUS_UNAVAILABLE;
    out->details = strdup(why);
}

static char *buffer_bytes(grpc_byte_buffer *b, size_t *len)
{
    grpc_byte_buffer_reader reader;
    if (!grpc_byte_buffer_reader_init(&reader, b))
        return NULL;
    grpc_slice all = grpc_byte_buffer_reader_readall(&reader);
    *len = GRPC_SLICE_LENGTH(all);
    char *p = malloc(*len ? *len : 1);
    if (p)
        memcpy(p, GRPC_SLICE_START_PTR(all), *len);
    grpc_slice_unref(all);
    grpc_byte_buffer_reader_destroy(&reader);
    return p;
}

static grpc_byte_buffer *buffer_from(const uint8_t *msg, size_t len)
{
    grpc_slice s = grpc_slice_from_copied_buffer((const char *)msg, len);
    grpc_byte_buffer *b = grpc_raw_byte_buffer_create(&s, 1);
    grpc_slice_unref(s);
    return b;
}

/* One call in flight: its queue, and what the status batch fills in. */
typedef struct attempt {
    grpc_completion_queue *cq;
    grpc_call *call;
    grpc_metadata_array initial, trailing;
    grpc_status_code status;
    grpc_slice details;
    const char *error_string;
    int status_tag;
    grpc_metadata auth;           /* the transport's, for this call alone */
} attempt;

static bool attempt_start(attempt *a, cairn__transport *t, cairn__method m, uint32_t timeout_ms,
                          cairn__reply *out)
{
    memset(out, 0, sizeof *out);
    out->pushback_ms = -1;
    memset(a, 0, sizeof *a);
    a->cq = grpc_completion_queue_create_for_pluck(NULL);
    gpr_timespec deadline = gpr_time_add(gpr_now(GPR_CLOCK_MONOTONIC),
                                         gpr_time_from_millis(timeout_ms, GPR_TIMESPAN));
    a->call = grpc_channel_create_registered_call(t->channel, NULL, GRPC_PROPAGATE_DEFAULTS, a->cq,
                                                  t->handles[m], deadline, NULL);
    grpc_metadata_array_init(&a->initial);
    grpc_metadata_array_init(&a->trailing);
    a->status = GRPC_STATUS_UNKNOWN;
    a->details = grpc_empty_slice();
    if (!a->call) {
        local_failure(out, "cannot create a gRPC call");
        return false;
    }
    return true;
}

/* Starts a batch and waits for it; returns its success. */
static bool run_batch(attempt *a, grpc_op *ops, size_t n)
{
    int tag;
    if (grpc_call_start_batch(a->call, ops, n, &tag, NULL) != GRPC_CALL_OK)
        return false;
    grpc_event ev = grpc_completion_queue_pluck(a->cq, &tag, gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
    return ev.success != 0;
}

/* Posts the batch that learns how the call ended (streams). */
static bool start_status(attempt *a)
{
    grpc_op ops[2];
    memset(ops, 0, sizeof ops);
    ops[0].op = GRPC_OP_RECV_INITIAL_METADATA;
    ops[0].data.recv_initial_metadata.recv_initial_metadata = &a->initial;
    ops[1].op = GRPC_OP_RECV_STATUS_ON_CLIENT;
    ops[1].data.recv_status_on_client.trailing_metadata = &a->trailing;
    ops[1].data.recv_status_on_client.status = &a->status;
    ops[1].data.recv_status_on_client.status_details = &a->details;
    ops[1].data.recv_status_on_client.error_string = &a->error_string;
    return grpc_call_start_batch(a->call, ops, 2, &a->status_tag, NULL) == GRPC_CALL_OK;
}

static void wait_status(attempt *a)
{
    grpc_completion_queue_pluck(a->cq, &a->status_tag, gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
}

/* Records how the call ended (unless a local failure already did). */
static void attempt_status(attempt *a, cairn__reply *out)
{
    if (out->local || out->details)
        return;
    out->grpc_status = (int)a->status;
    out->details = slice_strdup(a->details);
    read_trailers(&a->trailing, out);
}

static void attempt_end(attempt *a)
{
    grpc_metadata_array_destroy(&a->initial);
    grpc_metadata_array_destroy(&a->trailing);
    grpc_slice_unref(a->details);
    gpr_free((void *)a->error_string);
    if (a->call)
        grpc_call_unref(a->call);
    grpc_completion_queue_shutdown(a->cq);
    grpc_completion_queue_destroy(a->cq);
}

static void send_initial(grpc_op *op, attempt *a, const cairn__transport *t,
                         bool wait_for_ready)
{
    op->op = GRPC_OP_SEND_INITIAL_METADATA;
    op->flags = wait_for_ready ? GRPC_INITIAL_METADATA_WAIT_FOR_READY : 0;
    if (t->n_auth) {
        a->auth = t->auth; /* gRPC takes its own references to the slices */
        op->data.send_initial_metadata.count = 1;
        op->data.send_initial_metadata.metadata = &a->auth;
    }
}

/* The body of an OK reply, or an INTERNAL failure without one. */
static void take_body(grpc_byte_buffer *recv, cairn__reply *out)
{
    if (out->grpc_status != GRPC_STATUS_OK)
        return;
    if (recv)
        out->body = (uint8_t *)buffer_bytes(recv, &out->body_len);
    if (!out->body) {
        cairn__reply_free(out);
        out->grpc_status = GRPC_STATUS_INTERNAL;
        out->details = strdup(recv ? "out of memory reading the response"
                                   : "the server answered OK without a message");
    }
}

void cairn__cancel_fire(cairn__cancel *slot)
{
    pthread_mutex_lock(&slot->mu);
    slot->cancelled = true;
    if (slot->call)
        grpc_call_cancel(slot->call, NULL);
    pthread_cond_broadcast(&slot->cv);
    pthread_mutex_unlock(&slot->mu);
}

/* Publishes (or, with NULL, withdraws) the call another thread may cancel;
 * false when the slot was cancelled already. */
static bool publish_call(cairn__cancel *slot, grpc_call *call)
{
    if (!slot)
        return true;
    pthread_mutex_lock(&slot->mu);
    slot->call = call;
    bool go = !slot->cancelled;
    pthread_mutex_unlock(&slot->mu);
    return go;
}

void cairn__transport_unary(cairn__transport *t, cairn__method m, const uint8_t *req,
                            size_t len, uint32_t timeout_ms, bool wait_for_ready,
                            cairn__cancel *slot, cairn__reply *out)
{
    attempt a;
    if (!attempt_start(&a, t, m, timeout_ms, out)) {
        attempt_end(&a);
        return;
    }
    if (!publish_call(slot, a.call))
        grpc_call_cancel(a.call, NULL);
    grpc_byte_buffer *send = buffer_from(req, len);
    grpc_byte_buffer *recv = NULL;
    grpc_op ops[6];
    memset(ops, 0, sizeof ops);
    send_initial(&ops[0], &a, t, wait_for_ready);
    ops[1].op = GRPC_OP_SEND_MESSAGE;
    ops[1].data.send_message.send_message = send;
    ops[2].op = GRPC_OP_SEND_CLOSE_FROM_CLIENT;
    ops[3].op = GRPC_OP_RECV_INITIAL_METADATA;
    ops[3].data.recv_initial_metadata.recv_initial_metadata = &a.initial;
    ops[4].op = GRPC_OP_RECV_MESSAGE;
    ops[4].data.recv_message.recv_message = &recv;
    ops[5].op = GRPC_OP_RECV_STATUS_ON_CLIENT;
    ops[5].data.recv_status_on_client.trailing_metadata = &a.trailing;
    ops[5].data.recv_status_on_client.status = &a.status;
    ops[5].data.recv_status_on_client.status_details = &a.details;
    ops[5].data.recv_status_on_client.error_string = &a.error_string;
    if (run_batch(&a, ops, 6) || a.status != GRPC_STATUS_UNKNOWN) {
        attempt_status(&a, out);
        take_body(recv, out);
    } else {
        local_failure(out, "cannot start a gRPC call");
    }
    publish_call(slot, NULL);
    if (recv)
        grpc_byte_buffer_destroy(recv);
    grpc_byte_buffer_destroy(send);
    attempt_end(&a);
}

void cairn__transport_upload(cairn__transport *t, cairn__method m, cairn__next_fn next, void *ctx,
                             uint32_t timeout_ms, bool wait_for_ready, cairn__reply *out)
{
    attempt a;
    if (!attempt_start(&a, t, m, timeout_ms, out) || !start_status(&a)) {
        if (!out->details)
            local_failure(out, "cannot start a gRPC call");
        attempt_end(&a);
        return;
    }
    grpc_op op;
    memset(&op, 0, sizeof op);
    send_initial(&op, &a, t, wait_for_ready);
    bool open = run_batch(&a, &op, 1);
    /* One message in flight: a send completes once flow control takes it. */
    while (open) {
        uint8_t *msg;
        size_t len;
        int r = next(ctx, &msg, &len, out);
        if (r <= 0) {
            if (r < 0)
                grpc_call_cancel(a.call, NULL);
            break;
        }
        grpc_byte_buffer *b = buffer_from(msg, len);
        free(msg);
        memset(&op, 0, sizeof op);
        op.op = GRPC_OP_SEND_MESSAGE;
        op.data.send_message.send_message = b;
        open = run_batch(&a, &op, 1);
        grpc_byte_buffer_destroy(b);
    }
    grpc_byte_buffer *recv = NULL;
    if (open && !out->local) {
        grpc_op ops[2];
        memset(ops, 0, sizeof ops);
        ops[0].op = GRPC_OP_SEND_CLOSE_FROM_CLIENT;
        ops[1].op = GRPC_OP_RECV_MESSAGE;
        ops[1].data.recv_message.recv_message = &recv;
        run_batch(&a, ops, 2);
    } else if (!out->local) {
        /* The server ended the call early (an error): read its status. */
        memset(&op, 0, sizeof op);
        op.op = GRPC_OP_RECV_MESSAGE;
        op.data.recv_message.recv_message = &recv;
        run_batch(&a, &op, 1);
    }
    wait_status(&a);
    attempt_status(&a, out);
    if (!out->local)
        take_body(recv, out);
    if (recv)
        grpc_byte_buffer_destroy(recv);
    attempt_end(&a);
}

void cairn__transport_download(cairn__transport *t, cairn__method m, const uint8_t *req,
                               size_t len, cairn__msg_fn on_msg, void *ctx, uint32_t timeout_ms,
                               bool wait_for_ready, cairn__cancel *slot, cairn__reply *out)
{
    attempt a;
    if (!attempt_start(&a, t, m, timeout_ms, out) || !start_status(&a)) {
        if (!out->details)
            local_failure(out, "cannot start a gRPC call");
        attempt_end(&a);
        return;
    }
    if (!publish_call(slot, a.call))
        grpc_call_cancel(a.call, NULL);
    grpc_byte_buffer *send = buffer_from(req, len);
    grpc_op ops[3];
    memset(ops, 0, sizeof ops);
    send_initial(&ops[0], &a, t, wait_for_ready);
    ops[1].op = GRPC_OP_SEND_MESSAGE;
    ops[1].data.send_message.send_message = send;
    ops[2].op = GRPC_OP_SEND_CLOSE_FROM_CLIENT;
    bool open = run_batch(&a, ops, 3);
    grpc_byte_buffer_destroy(send);
    while (open) {
        grpc_byte_buffer *recv = NULL;
        grpc_op op;
        memset(&op, 0, sizeof op);
        op.op = GRPC_OP_RECV_MESSAGE;
        op.data.recv_message.recv_message = &recv;
        if (!run_batch(&a, &op, 1) || !recv)
            break; /* the end of the stream, or the call failed */
        size_t n = 0;
        char *msg = buffer_bytes(recv, &n);
        grpc_byte_buffer_destroy(recv);
        if (!msg) {
            out->local = CAIRN_NO_MEMORY;
            out->details = strdup("out of memory reading the stream");
        }
        if (!msg || on_msg(ctx, (const uint8_t *)msg, n, out) < 0) {
            free(msg);
            grpc_call_cancel(a.call, NULL);
            break;
        }
        free(msg);
    }
    wait_status(&a);
    publish_call(slot, NULL);
    attempt_status(&a, out);
    attempt_end(&a);
}
