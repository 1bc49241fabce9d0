/* WatchEvents: validation here, the streaming in watch.c. */
#include "service/handlers/handlers.h"
#include "service/validate.h"
#include "core/watch.h"

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

void srv_start_watch_events(srv_app *app, srv_call *call, ProtobufCMessage *msg)
{
    const Cairn__V1__WatchEventsRequest *req = (const Cairn__V1__WatchEventsRequest *)msg;
    srv_watch_serve(app->watch, call, req->run_id, req->from_seq);
}
