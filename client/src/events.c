/* AppendEvents and ReadEvents. Events are encoded straight from the
 * caller's array and payloads (nanopb callbacks, no copies of payloads);
 * each decoded event lives in one malloc'd block: strings, then payload. */
#include "internal.h"
#include "cairn/v1/coordinator.pb.h"

#include <pb_decode.h>
#include <pb_encode.h>
#include <stdlib.h>
#include <string.h>

typedef struct event_list {
    const cairn_event *v;
    size_t n;
} event_list;

static bool encode_payload(pb_ostream_t *s, const pb_field_t *f, void *const *arg)
{
    const cairn_event *e = *arg;
    return pb_encode_tag_for_field(s, f) &&
           pb_encode_string(s, (const pb_byte_t *)e->payload, e->payload_len);
}

static bool encode_events(pb_ostream_t *s, const pb_field_t *f, void *const *arg)
{
    const event_list *list = *arg;
    for (size_t i = 0; i < list->n; i++) {
        const cairn_event *e = &list->v[i];
        cairn_v1_Event m = cairn_v1_Event_init_zero;
        strcpy(m.type, e->type ? e->type : ""); /* lengths checked before encoding */
        strcpy(m.worker_id, e->worker_id ? e->worker_id : "");
        if (e->payload_len) {
            m.payload.funcs.encode = encode_payload;
            m.payload.arg = (void *)e;
        }
        if (!pb_encode_tag_for_field(s, f) || !pb_encode_submessage(s, cairn_v1_Event_fields, &m))
            return false;
    }
    return true;
}

static cairn_status check_events(const cairn_append_request *req, cairn_error *err)
{
    cairn_status rc = CAIRN__CHECK_RESERVED(req, NULL, CAIRN__NO_INDEX, err);
    if (rc)
        return rc;
    if (req->events_count > 0 && !req->events)
        return cairn__fail(err, CAIRN_INVALID_ARGUMENT, "events: NULL with a count of %zu",
                           req->events_count);
    for (size_t i = 0; i < req->events_count; i++) {
        const cairn_event *e = &req->events[i];
        if ((rc = CAIRN__CHECK_RESERVED(e, "events", i, err)))
            return rc;
        if (e->type && strlen(e->type) > CAIRN_ID_MAX)
            return cairn__fail(err, CAIRN_INVALID_ARGUMENT,
                               "events[%zu].type: must be 1..128 bytes, got %zu", i, strlen(e->type));
        if (e->worker_id && strlen(e->worker_id) > CAIRN_ID_MAX)
            return cairn__fail(err, CAIRN_INVALID_ARGUMENT,
                               "events[%zu].worker_id: must be at most 128 bytes, got %zu", i,
                               strlen(e->worker_id));
        if (e->payload_len && !e->payload)
            return cairn__fail(err, CAIRN_INVALID_ARGUMENT,
                               "events[%zu].payload: NULL with a length of %zu", i, e->payload_len);
    }
    return CAIRN_OK;
}

cairn_status cairn_append_events(cairn_client *c, const cairn_append_request *req,
                                 cairn_append_result *out, cairn_error *err)
{
    memset(out, 0, sizeof *out);
    cairn__error_clear(err);
    cairn_v1_AppendEventsRequest m = cairn_v1_AppendEventsRequest_init_zero;
    cairn_status rc = check_events(req, err);
    if (!rc)
        rc = cairn__pick_key(m.idempotency_key, req->idempotency_key, err);
    if (!rc)
        rc = cairn__copy_str(m.run_id, sizeof m.run_id, req->run_id, "run_id", err);
    if (rc)
        return rc;
    event_list list = {req->events, req->events_count};
    m.events.funcs.encode = encode_events;
    m.events.arg = &list;
    m.expected_next_seq = req->expected_next_seq;
    m.fencing_token = req->fencing_token;

    cairn_v1_AppendEventsResponse resp = cairn_v1_AppendEventsResponse_init_zero;
    rc = cairn__unary(c, CAIRN__APPEND_EVENTS, cairn_v1_AppendEventsRequest_fields, &m,
                      m.idempotency_key, cairn_v1_AppendEventsResponse_fields, &resp, err);
    if (rc)
        return rc;
    out->first_seq = resp.first_seq;
    out->last_seq = resp.last_seq;
    out->events_since_checkpoint = resp.events_since_checkpoint;
    out->replayed = resp.replayed;
    return CAIRN_OK;
}

/* One decoded event: its strings, then its payload. cairn_event.type
 * points at the start of the block, which is how it is freed. */
typedef struct event_block {
    char type[129];
    char worker_id[129];
    char created_at[32];
    size_t payload_len;
    unsigned char payload[];
} event_block;

typedef struct event_sink {
    cairn_event *v;
    size_t n, cap;
} event_sink;

static bool decode_payload(pb_istream_t *s, const pb_field_t *f, void **arg)
{
    (void)f;
    event_block **slot = (event_block **)*arg;
    size_t len = s->bytes_left;
    event_block *b = malloc(sizeof *b + len);
    if (!b)
        return false;
    free(*slot); /* a repeated field: the last one wins */
    b->payload_len = len;
    *slot = b;
    return pb_read(s, b->payload, len);
}

bool cairn__decode_event(pb_istream_t *s, cairn_event *out)
{
    event_block *b = NULL;
    cairn_v1_Event m = cairn_v1_Event_init_zero;
    m.payload.funcs.decode = decode_payload;
    m.payload.arg = &b;
    /* m is zeroed above: pb_decode would zero its fixed-size strings again,
     * a sixth of a ReadEvents page's client instructions. */
    if (!pb_decode_ex(s, cairn_v1_Event_fields, &m, PB_DECODE_NOINIT)) {
        free(b);
        return false;
    }
    if (!b && !(b = calloc(1, sizeof *b)))
        return false;
    memcpy(b->type, m.type, sizeof b->type);
    memcpy(b->worker_id, m.worker_id, sizeof b->worker_id);
    memcpy(b->created_at, m.created_at, sizeof b->created_at);
    *out = (cairn_event){
        .seq = m.seq,
        .type = b->type,
        .worker_id = b->worker_id,
        .payload = b->payload,
        .payload_len = b->payload_len,
        .created_at = b->created_at,
    };
    return true;
}

static bool decode_event(pb_istream_t *s, const pb_field_t *f, void **arg)
{
    (void)f;
    event_sink *sink = *arg;
    if (sink->n == sink->cap) {
        size_t cap = sink->cap ? sink->cap * 2 : 64;
        cairn_event *v = realloc(sink->v, cap * sizeof *v);
        if (!v)
            return false;
        sink->v = v;
        sink->cap = cap;
    }
    if (!cairn__decode_event(s, &sink->v[sink->n]))
        return false;
    sink->n++;
    return true;
}

void cairn_event_page_free(cairn_event_page *page)
{
    if (!page)
        return;
    for (size_t i = 0; i < page->events_count; i++)
        free((void *)page->events[i].type);
    free(page->events);
    memset(page, 0, sizeof *page);
}

cairn_status cairn_read_events(cairn_client *c, const char *run_id, uint64_t from_seq,
                               uint32_t max_events, cairn_event_page *out, cairn_error *err)
{
    memset(out, 0, sizeof *out);
    cairn__error_clear(err);
    cairn_v1_ReadEventsRequest m = cairn_v1_ReadEventsRequest_init_zero;
    cairn_status rc = cairn__copy_str(m.run_id, sizeof m.run_id, run_id, "run_id", err);
    if (rc)
        return rc;
    m.from_seq = from_seq;
    m.max_events = max_events;

    event_sink sink = {0};
    cairn_v1_ReadEventsResponse resp = cairn_v1_ReadEventsResponse_init_zero;
    resp.events.funcs.decode = decode_event;
    resp.events.arg = &sink;
    rc = cairn__unary(c, CAIRN__READ_EVENTS, cairn_v1_ReadEventsRequest_fields, &m, NULL,
                      cairn_v1_ReadEventsResponse_fields, &resp, err);
    out->events = sink.v;
    out->events_count = sink.n;
    if (rc) {
        cairn_event_page_free(out);
        return rc;
    }
    out->next_seq = resp.next_seq;
    return CAIRN_OK;
}
