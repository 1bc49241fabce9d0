/* AppendEvents and ReadEvents. */
#include "service/handlers/handlers.h"
#include "service/contract.h"
#include "service/validate.h"

#include <stdio.h>
#include <string.h>


/* Names the event in err's message, made for its bare field ("type:
 * ..." becomes "events[2].type: ..."): field names are written out only
 * for an error, not for each of a batch's events. */
static srv_code in_event(srv_error *err, size_t i)
{
    char head[32];
    int n = snprintf(head, sizeof head, "events[%zu].", i);
    size_t len = strlen(err->msg), room = sizeof err->msg - 1 - (size_t)n;
    memmove(err->msg + n, err->msg, len < room ? len + 1 : room);
    err->msg[sizeof err->msg - 1] = '\0';
    memcpy(err->msg, head, (size_t)n);
    return err->code;
}

static srv_code check_event(Cairn__V1__Event *ev, size_t i, srv_error *err)
{
    if (srv_check_length("type", ev->type, SRV_EVENT_TYPE_MAX, err))
        return in_event(err, i);
    if (strcmp(ev->type, SRV_COMPLETED_EVENT_TYPE) == 0)
        return srv_fail(err, SRV_INVALID_ARGUMENT,
                        "events[%zu].type: \"" SRV_COMPLETED_EVENT_TYPE
                        "\" is reserved for CompleteWorker",
                        i);
    if (srv_check_optional_id("worker_id", ev->worker_id, err))
        return in_event(err, i);
    if (ev->payload.len > SRV_PAYLOAD_MAX)
        return srv_fail(err, SRV_INVALID_ARGUMENT,
                        "events[%zu].payload: must be at most %d bytes, got %zu", i,
                        SRV_PAYLOAD_MAX, ev->payload.len);
    /* Assigned by the server: ignored, and left out of the fingerprint. */
    ev->seq = 0;
    ev->run_id = (char *)"";
    ev->created_at = (char *)"";
    return SRV_OK;
}

srv_code srv_validate_append_events(ProtobufCMessage *msg, srv_arena *a, srv_error *err)
{
    (void)a;
    Cairn__V1__AppendEventsRequest *req = (Cairn__V1__AppendEventsRequest *)msg;
    if (srv_check_id("run_id", req->run_id, err) ||
        srv_check_count("events", req->n_events, 1, SRV_EVENTS_PER_APPEND_MAX, err))
        return err->code;
    for (size_t i = 0; i < req->n_events; i++)
        if (check_event(req->events[i], i, err))
            return err->code;
    /* A fenced append speaks for one worker: the one whose lease the
     * token belongs to. */
    if (req->fencing_token) {
        const char *w = req->events[0]->worker_id;
        for (size_t i = 0; i < req->n_events; i++) {
            if (!*req->events[i]->worker_id || strcmp(req->events[i]->worker_id, w) != 0)
                return srv_fail(err, SRV_INVALID_ARGUMENT,
                                "events[%zu].worker_id: with a fencing_token every event must "
                                "name the same worker, the lease holder's",
                                i);
        }
    }
    return SRV_OK;
}

srv_code srv_apply_append_events(srv_apply *ap, const ProtobufCMessage *req,
                                 ProtobufCMessage *resp, srv_error *err)
{
    return srv_events_append(ap, (const Cairn__V1__AppendEventsRequest *)req,
                             (Cairn__V1__AppendEventsResponse *)resp, err);
}

srv_code srv_validate_read_events(ProtobufCMessage *msg, srv_arena *a, srv_error *err)
{
    (void)a;
    Cairn__V1__ReadEventsRequest *req = (Cairn__V1__ReadEventsRequest *)msg;
    if (srv_check_id("run_id", req->run_id, err) ||
        srv_check_page("max_events", req->max_events, SRV_PAGE_DEFAULT, SRV_PAGE_MAX,
                       &req->max_events, err))
        return err->code;
    if (req->from_seq == 0)
        req->from_seq = 1;
    return SRV_OK;
}

srv_code srv_read_read_events(srv_app *app, srv_arena *a, const ProtobufCMessage *msg,
                              ProtobufCMessage *resp, srv_error *err)
{
    const Cairn__V1__ReadEventsRequest *req = (const Cairn__V1__ReadEventsRequest *)msg;
    Cairn__V1__ReadEventsResponse *out = (Cairn__V1__ReadEventsResponse *)resp;
    return srv_events_read(app->store, a, req->run_id, req->from_seq, req->max_events,
                           SRV_READ_PAGE_BYTES, out, err);
}
