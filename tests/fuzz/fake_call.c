/* The in-memory srv_call (fake_call.h). The handlers call srv_call_* from
 * the ledger's writer and the I/O pool; fz_call_run's thread plays the
 * client: it waits on the call's condition variable for the next thing to
 * do (deliver a message a recv asked for, acknowledge a send) until the
 * call ends. */
#include "fake_call.h"
#include "service/dispatch.h"
#include "transport/rpc.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct srv_call {
    srv_arena *arena;
    const uint8_t *request;
    size_t request_len;
    pthread_mutex_t mu;
    pthread_cond_t cv;        /* a recv or send is pending, or the call ended */
    srv_recv_fn recv;         /* pending recv */
    void *recv_arg;
    srv_sent_fn sent;         /* pending send acknowledgement */
    void *sent_arg;
    bool ended;
    fz_reply *out;
};

srv_arena *srv_call_arena(srv_call *c)
{
    return c->arena;
}

const uint8_t *srv_call_request(srv_call *c, size_t *len)
{
    *len = c->request_len;
    return c->request;
}

/* No token: the fixture's cairnd has no --auth-tokens, so the scope
 * check lets every call through, as it does for a real one. */
const char *srv_call_authorization(const srv_call *c, size_t *len)
{
    (void)c;
    *len = 0;
    return NULL;
}

void srv_call_set_run_id(srv_call *c, const char *run_id)
{
    (void)c, (void)run_id;
}

char *srv_call_peer(srv_call *c, char *out, size_t cap)
{
    (void)c;
    snprintf(out, cap, "fuzz");
    return out;
}

int64_t srv_call_remaining_ms(const srv_call *c)
{
    (void)c;
    return INT64_MAX;
}

static uint8_t *copy(const uint8_t *msg, size_t len)
{
    uint8_t *buf = malloc(len ? len : 1);
    if (!buf)
        abort();
    memcpy(buf, msg, len);
    return buf;
}

/* Records the end and wakes the client; the caller must not touch c
 * afterwards (fz_call_run frees it), as with the real transport. */
static void end_call(srv_call *c, srv_code code, const srv_error *err, const uint8_t *msg,
                     size_t len, bool replayed)
{
    pthread_mutex_lock(&c->mu);
    if (c->ended) {
        fprintf(stderr, "fake_call: a call was ended twice\n");
        abort();
    }
    fz_reply *out = c->out;
    out->code = code;
    if (err)
        out->err = *err;
    if (msg) {
        out->body = copy(msg, len);
        out->len = len;
    }
    out->replayed = replayed;
    c->ended = true;
    pthread_cond_broadcast(&c->cv);
    pthread_mutex_unlock(&c->mu);
}

void srv_call_reply(srv_call *c, const uint8_t *msg, size_t len, bool replayed)
{
    end_call(c, SRV_OK, NULL, msg, len, replayed);
}

void srv_call_fail(srv_call *c, const srv_error *err)
{
    end_call(c, err->code, err, NULL, 0, false);
}

void srv_call_finish(srv_call *c)
{
    end_call(c, SRV_OK, NULL, NULL, 0, false);
}

void srv_call_recv(srv_call *c, srv_recv_fn fn, void *arg)
{
    pthread_mutex_lock(&c->mu);
    c->recv = fn;
    c->recv_arg = arg;
    pthread_cond_broadcast(&c->cv);
    pthread_mutex_unlock(&c->mu);
}

void srv_call_send(srv_call *c, const uint8_t *msg, size_t len, srv_sent_fn fn, void *arg)
{
    pthread_mutex_lock(&c->mu);
    fz_reply *out = c->out;
    fz_sent *more = realloc(out->sent, (out->n_sent + 1) * sizeof *more);
    if (!more)
        abort();
    out->sent = more;
    out->sent[out->n_sent++] = (fz_sent){copy(msg, len), len};
    c->sent = fn;
    c->sent_arg = arg;
    pthread_cond_broadcast(&c->cv);
    pthread_mutex_unlock(&c->mu);
}

void srv_call_idle_timeout(srv_call *c, int ms)
{
    (void)c, (void)ms; /* the fake client never stalls */
}

/* Only WatchEvents registers one: its client has left already. */
void srv_call_on_close(srv_call *c, srv_close_fn fn, void *arg)
{
    fn(c, arg, true);
}

/* Plays the client until the call ends: c->mu held on entry and exit. */
static void play_client(srv_call *c, const fz_msg *msgs, size_t n)
{
    size_t next = 0;
    for (;;) {
        while (!c->ended && !c->recv && !c->sent)
            pthread_cond_wait(&c->cv, &c->mu);
        if (c->ended)
            return;
        if (c->recv) {
            srv_recv_fn fn = c->recv;
            c->recv = NULL;
            pthread_mutex_unlock(&c->mu);
            if (next < n) {
                fn(c, c->recv_arg, msgs[next].data, msgs[next].len, true);
                next++;
            } else {
                fn(c, c->recv_arg, NULL, 0, true); /* a clean half-close */
            }
        } else {
            srv_sent_fn fn = c->sent;
            c->sent = NULL;
            pthread_mutex_unlock(&c->mu);
            fn(c, c->sent_arg, true);
        }
        pthread_mutex_lock(&c->mu);
    }
}

void fz_call_run(srv_app *app, size_t index, const fz_msg *msgs, size_t n, fz_reply *out)
{
    memset(out, 0, sizeof *out);
    srv_call c = {.out = out};
    if (!(c.arena = srv_arena_create()))
        abort();
    if (n > 0) { /* the transport's copy lives in the call's arena */
        uint8_t *req = srv_arena_alloc(c.arena, msgs[0].len ? msgs[0].len : 1);
        if (!req)
            abort();
        memcpy(req, msgs[0].data, msgs[0].len);
        c.request = req;
        c.request_len = msgs[0].len;
    }
    pthread_mutex_init(&c.mu, NULL);
    pthread_cond_init(&c.cv, NULL);
    srv_dispatch_call(app, &c, index);
    pthread_mutex_lock(&c.mu);
    play_client(&c, msgs, n);
    pthread_mutex_unlock(&c.mu);
    pthread_cond_destroy(&c.cv);
    pthread_mutex_destroy(&c.mu);
    srv_arena_destroy(c.arena);
}

void fz_reply_free(fz_reply *r)
{
    free(r->body);
    r->body = NULL;
    for (size_t i = 0; i < r->n_sent; i++)
        free(r->sent[i].data);
    free(r->sent);
    r->sent = NULL;
    r->n_sent = 0;
}
