/* WatchEvents: validation here, the streaming in core/watch.c. This file
 * is the only one that knows both the hub and the transport: it lends the
 * hub a srv_call as a srv_watch_stream. */
#include "service/handlers/handlers.h"
#include "service/validate.h"
#include "core/watch.h"
#include "base/log.h"

#include <stdio.h>

/* The hub's callbacks for one call, kept in the call's arena: it lives
 * until the transport released the call, after its last callback. */
typedef struct call_stream {
    srv_call *call;
    srv_watch_sent_fn sent;   /* of the one send in flight */
    void *sent_arg;
    srv_watch_closed_fn closed;
    void *closed_arg;
    char run_id[132];         /* for the log */
} call_stream;

srv_code srv_validate_watch_events(ProtobufCMessage *msg, srv_arena *a, srv_error *err)
{
    (void)a;
    Cairn__V1__WatchEventsRequest *req = (Cairn__V1__WatchEventsRequest *)msg;
    if (srv_check_id("run_id", req->run_id, err))
        return err->code;
    if (req->from_seq == 0)
        req->from_seq = 1;
    return SRV_OK;
}

static void call_sent(srv_call *c, void *arg, bool ok)
{
    (void)c;
    call_stream *cs = arg;
    cs->sent(cs->sent_arg, ok);
}

static void stream_send(void *ctx, const uint8_t *msg, size_t len, srv_watch_sent_fn fn,
                        void *arg)
{
    call_stream *cs = ctx;
    cs->sent = fn;
    cs->sent_arg = arg;
    srv_call_send(cs->call, msg, len, call_sent, cs);
}

static void stream_fail(void *ctx, const srv_error *err)
{
    call_stream *cs = ctx;
    srv_call_fail(cs->call, err);
}

/* srv_call_on_close runs this exactly once, also after the call ended. */
static void call_closed(srv_call *c, void *arg, bool cancelled)
{
    (void)c;
    call_stream *cs = arg;
    if (cancelled)
        srv_debug("watch %s: the client left (cancel, deadline or lost connection)",
                  cs->run_id);
    cs->closed(cs->closed_arg);
}

static void stream_on_close(void *ctx, srv_watch_closed_fn fn, void *arg)
{
    call_stream *cs = ctx;
    cs->closed = fn;
    cs->closed_arg = arg;
    srv_call_on_close(cs->call, call_closed, cs);
}

void srv_start_watch_events(srv_app *app, srv_call *call, ProtobufCMessage *msg)
{
    const Cairn__V1__WatchEventsRequest *req = (const Cairn__V1__WatchEventsRequest *)msg;
    call_stream *cs = srv_arena_alloc(srv_call_arena(call), sizeof *cs);
    if (!cs) {
        srv_error err;
        srv_fail(&err, SRV_RESOURCE_EXHAUSTED, "out of memory");
        srv_call_fail(call, &err);
        return;
    }
    *cs = (call_stream){.call = call};
    snprintf(cs->run_id, sizeof cs->run_id, "%s", req->run_id);
    srv_watch_stream stream = {
        .ctx = cs,
        .send = stream_send,
        .fail = stream_fail,
        .on_close = stream_on_close,
    };
    srv_watch_serve(app->watch, &stream, req->run_id, req->from_seq);
}
