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
};

/* Reconnect quickly after a server restart (GRPC_CORE_NOTES: 100/1000/100
 * made a restarted server usable in 29-69 ms). */
enum { RECONNECT_MIN_MS = 100, RECONNECT_INITIAL_MS = 100, RECONNECT_MAX_MS = 1000 };

struct cairn__transport {
    grpc_channel *channel;
    void *handles[CAIRN__METHOD_COUNT];
};

cairn_status cairn__transport_create(const char *target, uint32_t max_message_bytes,
                                     cairn__transport **out, cairn_error *err)
{
    cairn__transport *t = calloc(1, sizeof *t);
    if (!t)
        return cairn__fail(err, CAIRN_NO_MEMORY, "out of memory");
    grpc_init();

    grpc_arg args[7];
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
    grpc_channel_args cargs = {(size_t)n, args};

    grpc_channel_credentials *creds = grpc_insecure_credentials_create();
    t->channel = grpc_channel_create(target, creds, &cargs);
    grpc_channel_credentials_release(creds);
    if (!t->channel) {
        free(t);
        grpc_shutdown();
        return cairn__fail(err, CAIRN_INVALID_ARGUMENT, "target: cannot use \"%s\"", target);
    }
    for (int m = 0; m < CAIRN__METHOD_COUNT; m++)
        t->handles[m] = grpc_channel_register_call(t->channel, paths[m], NULL, NULL);
    *out = t;
    return CAIRN_OK;
}

void cairn__transport_destroy(cairn__transport *t)
{
    if (!t)
        return;
    grpc_channel_destroy(t->channel);
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
        if (slice_is(m->key, "grpc-retry-pushback-ms")) {
            char *v = slice_strdup(m->value);
            if (v) {
                char *end;
                long long ms = strtoll(v, &end, 10);
                if (end != v && !*end) {
                    out->has_pushback = true;
                    out->pushback_ms = ms;
                }
                free(v);
            }
        }
    }
}

static void local_failure(cairn__reply *out, const char *why)
{
    out->grpc_status = GRPC_STATUS_UNAVAILABLE;
    out->details = strdup(why);
}

void cairn__transport_unary(cairn__transport *t, cairn__method m, const uint8_t *req,
                            size_t len, uint32_t timeout_ms, bool wait_for_ready,
                            cairn__reply *out)
{
    memset(out, 0, sizeof *out);
    out->pushback_ms = -1;

    grpc_completion_queue *cq = grpc_completion_queue_create_for_pluck(NULL);
    gpr_timespec deadline = gpr_time_add(gpr_now(GPR_CLOCK_MONOTONIC),
                                         gpr_time_from_millis(timeout_ms, GPR_TIMESPAN));
    grpc_call *call = grpc_channel_create_registered_call(t->channel, NULL, GRPC_PROPAGATE_DEFAULTS,
                                                          cq, t->handles[m], deadline, NULL);
    if (!call) {
        grpc_completion_queue_shutdown(cq);
        grpc_completion_queue_destroy(cq);
        local_failure(out, "cannot create a gRPC call");
        return;
    }

    grpc_slice req_slice = grpc_slice_from_copied_buffer((const char *)req, len);
    grpc_byte_buffer *send = grpc_raw_byte_buffer_create(&req_slice, 1);
    grpc_slice_unref(req_slice);
    grpc_byte_buffer *recv = NULL;
    grpc_metadata_array initial, trailing;
    grpc_metadata_array_init(&initial);
    grpc_metadata_array_init(&trailing);
    grpc_status_code status = GRPC_STATUS_UNKNOWN;
    grpc_slice details = grpc_empty_slice();
    const char *error_string = NULL;

    grpc_op ops[6];
    memset(ops, 0, sizeof ops);
    ops[0].op = GRPC_OP_SEND_INITIAL_METADATA;
    ops[0].flags = wait_for_ready ? GRPC_INITIAL_METADATA_WAIT_FOR_READY : 0;
    ops[1].op = GRPC_OP_SEND_MESSAGE;
    ops[1].data.send_message.send_message = send;
    ops[2].op = GRPC_OP_SEND_CLOSE_FROM_CLIENT;
    ops[3].op = GRPC_OP_RECV_INITIAL_METADATA;
    ops[3].data.recv_initial_metadata.recv_initial_metadata = &initial;
    ops[4].op = GRPC_OP_RECV_MESSAGE;
    ops[4].data.recv_message.recv_message = &recv;
    ops[5].op = GRPC_OP_RECV_STATUS_ON_CLIENT;
    ops[5].data.recv_status_on_client.trailing_metadata = &trailing;
    ops[5].data.recv_status_on_client.status = &status;
    ops[5].data.recv_status_on_client.status_details = &details;
    ops[5].data.recv_status_on_client.error_string = &error_string;

    int tag;
    if (grpc_call_start_batch(call, ops, 6, &tag, NULL) == GRPC_CALL_OK) {
        grpc_completion_queue_pluck(cq, &tag, gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
        out->grpc_status = (int)status;
        out->details = slice_strdup(details);
        read_trailers(&trailing, out);
        if (status == GRPC_STATUS_OK && recv) {
            grpc_byte_buffer_reader reader;
            if (grpc_byte_buffer_reader_init(&reader, recv)) {
                grpc_slice all = grpc_byte_buffer_reader_readall(&reader);
                out->body_len = GRPC_SLICE_LENGTH(all);
                out->body = malloc(out->body_len ? out->body_len : 1);
                if (out->body)
                    memcpy(out->body, GRPC_SLICE_START_PTR(all), out->body_len);
                grpc_slice_unref(all);
                grpc_byte_buffer_reader_destroy(&reader);
            }
            if (!out->body) {
                cairn__reply_free(out);
                local_failure(out, "out of memory reading the response");
            }
        } else if (status == GRPC_STATUS_OK) {
            cairn__reply_free(out);
            out->grpc_status = GRPC_STATUS_INTERNAL;
            out->details = strdup("the server answered OK without a message");
        }
    } else {
        local_failure(out, "cannot start a gRPC call");
    }

    if (recv)
        grpc_byte_buffer_destroy(recv);
    grpc_byte_buffer_destroy(send);
    grpc_metadata_array_destroy(&initial);
    grpc_metadata_array_destroy(&trailing);
    grpc_slice_unref(details);
    gpr_free((void *)error_string);
    grpc_call_unref(call);
    grpc_completion_queue_shutdown(cq);
    grpc_completion_queue_destroy(cq);
}
