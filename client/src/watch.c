/* cairn_watch: a WatchEvents stream that survives restarts. After a
 * transient failure it reconnects (backoff per the client's policy, the
 * attempt count starting over whenever events flowed) from the seq after
 * the last event delivered, so the caller sees every event once, in
 * order. */
#include "internal.h"
#include "cairn/v1/coordinator.pb.h"

#include <pb_decode.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct watch_state {
    const cairn_watch_request *req;
    uint64_t next_seq;
    bool progressed;              /* events arrived in this attempt */
    bool stopped;                 /* on_event asked to stop */
} watch_state;

static int on_msg(void *ctx, const uint8_t *msg, size_t len, cairn__reply *out)
{
    watch_state *w = ctx;
    cairn_event ev;
    pb_istream_t is = pb_istream_from_buffer(msg, len);
    if (!cairn__decode_event(&is, &ev)) {
        out->local = CAIRN_INTERNAL;
        out->details = strdup("a WatchEvents message cannot be decoded");
        return -1;
    }
    int stop = 0;
    if (ev.seq >= w->next_seq) { /* never twice, even if a server sent it twice */
        w->next_seq = ev.seq + 1;
        w->progressed = true;
        stop = w->req->on_event(w->req->user, &ev);
    }
    free((void *)ev.type); /* the event's block */
    if (stop) {
        w->stopped = true;
        return -1;
    }
    return 0;
}

static cairn_status watch_loop(cairn_client *c, const cairn_watch_request *req,
                               cairn__cancel *slot, cairn_error *errp)
{
    cairn_error local;
    cairn_error *err = errp ? errp : &local;
    cairn__error_clear(err);
    const cairn_retry_policy *p = &c->retry;
    const cairn__clock *clk = &c->clock;
    watch_state w = {req, req->from_seq ? req->from_seq : 1, false, false};
    cairn_v1_WatchEventsRequest m = cairn_v1_WatchEventsRequest_init_zero;
    cairn_status rc = CAIRN__CHECK_RESERVED(req, NULL, CAIRN__NO_INDEX, err);
    if (!rc)
        rc = cairn__copy_str(m.run_id, sizeof m.run_id, req->run_id, "run_id", err);
    if (rc)
        return rc;
    for (int attempt = 1;; attempt++) {
        m.from_seq = w.next_seq;
        uint8_t *enc;
        size_t len;
        if ((rc = cairn__encode(cairn_v1_WatchEventsRequest_fields, &m, &enc, &len, err)))
            return rc;
        w.progressed = false;
        cairn__reply r;
        /* No deadline: a watch lasts until it is stopped. */
        cairn__transport_download(c->transport, CAIRN__WATCH_EVENTS, enc, len, on_msg, &w,
                                  UINT32_MAX, attempt > 1, slot, &r);
        free(enc);
        if (w.stopped || (slot && cairn__cancel_fired(slot))) {
            cairn__reply_free(&r);
            cairn__error_clear(err);
            return CAIRN_OK;
        }
        cairn__record(err, &r, attempt);
        cairn__reply_free(&r);
        if (err->status == CAIRN_OK) /* the server ended the stream: watch on */
            cairn__fail(err, CAIRN_UNAVAILABLE, "WatchEvents: the server ended the stream");
        else if (r.local || cairn_classify(err->status, err) != CAIRN_CLASS_TRANSIENT)
            return err->status;
        if (w.progressed)
            attempt = 1; /* events flowed: this is a fresh failure */
        if (attempt >= p->max_attempts)
            return err->status;
        /* A watch has no deadline to hold a pushback to: it waits as long
         * as the server asks; cairn_watch_stop ends the wait at once. */
        int64_t delay = err->has_retry_pushback ? err->retry_pushback_ms
                                                : cairn_backoff_delay_ms(p, attempt - 1, req->run_id);
        if (c->on_retry) {
            cairn_retry_info info = {.method = "WatchEvents", .attempt = attempt,
                                     .status = err->status, .message = err->message,
                                     .delay_ms = delay < UINT32_MAX ? (uint32_t)delay : UINT32_MAX};
            c->on_retry(c->on_retry_user, &info);
        }
        if (clk->sleep_ms(clk->ctx, delay, slot)) { /* stopped while waiting to reconnect */
            cairn__error_clear(err);
            return CAIRN_OK;
        }
    }
}

cairn_status cairn_watch(cairn_client *c, const cairn_watch_request *req, cairn_error *err)
{
    return watch_loop(c, req, NULL, err);
}

struct cairn_watcher {
    cairn_client *client;
    cairn_watch_request req;
    char run_id[CAIRN_ID_MAX + 1];
    cairn__cancel slot;
    pthread_t thread;
    cairn_status result;
    cairn_error err;
};

static void *watch_thread(void *arg)
{
    cairn_watcher *w = arg;
    w->result = watch_loop(w->client, &w->req, &w->slot, &w->err);
    return NULL;
}

cairn_status cairn_watch_start(cairn_client *c, const cairn_watch_request *req,
                               cairn_watcher **out, cairn_error *err)
{
    cairn__error_clear(err);
    cairn_status rc = CAIRN__CHECK_RESERVED(req, NULL, CAIRN__NO_INDEX, err);
    if (rc)
        return rc;
    cairn_watcher *w = calloc(1, sizeof *w);
    if (!w)
        return cairn__fail(err, CAIRN_NO_MEMORY, "out of memory");
    rc = cairn__copy_str(w->run_id, sizeof w->run_id, req->run_id, "run_id", err);
    if (rc) {
        free(w);
        return rc;
    }
    w->client = c;
    w->req = *req;
    w->req.run_id = w->run_id;
    cairn__cancel_init(&w->slot);
    if (pthread_create(&w->thread, NULL, watch_thread, w) != 0) {
        cairn__cancel_destroy(&w->slot);
        free(w);
        return cairn__fail(err, CAIRN_NO_MEMORY, "cannot start the watch thread");
    }
    *out = w;
    return CAIRN_OK;
}

cairn_status cairn_watch_stop(cairn_watcher *w, cairn_error *err)
{
    if (!w) {
        cairn__error_clear(err);
        return CAIRN_OK;
    }
    cairn__cancel_fire(&w->slot);
    pthread_join(w->thread, NULL);
    cairn_status rc = w->result;
    if (err)
        *err = w->err;
    cairn__cancel_destroy(&w->slot);
    free(w);
    return rc;
}
