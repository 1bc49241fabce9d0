/* The scripted transport of fake_transport.h. */
#include "fake_transport.h"
#include "frames.h"
#include "internal.h"

#include <stdlib.h>
#include <string.h>

/* Frames of one script at most. */
enum { MAX_FRAMES = 256, GRPC_STATUSES = 17, GRPC_UNAVAILABLE = 14 };

static struct script {
    fz_msg frames[MAX_FRAMES];
    size_t n, next;
} script;

struct cairn__transport {
    int unused;
};

void fz_transport_script(const uint8_t *data, size_t size)
{
    script.n = fz_frames(data, size, script.frames, MAX_FRAMES);
    script.next = 0;
}

cairn_status cairn__transport_create(const char *target, uint32_t max_message_bytes,
                                     const cairn__tls *tls, const char *token,
                                     cairn__transport **out, cairn_error *err)
{
    (void)target, (void)max_message_bytes, (void)tls, (void)token;
    if (!(*out = calloc(1, sizeof **out)))
        return cairn__fail(err, CAIRN_NO_MEMORY, "out of memory");
    return CAIRN_OK;
}

void cairn__transport_destroy(cairn__transport *t)
{
    free(t);
}

const char *cairn__method_name(cairn__method m)
{
    (void)m;
    return "Scripted";
}

void cairn__reply_free(cairn__reply *r)
{
    free(r->details);
    free(r->body);
    r->details = NULL;
    r->body = NULL;
}

void cairn__cancel_fire(cairn__cancel *slot)
{
    pthread_mutex_lock(&slot->mu);
    slot->cancelled = true;
    pthread_cond_broadcast(&slot->cv);
    pthread_mutex_unlock(&slot->mu);
}

static char *copy_text(const uint8_t *data, size_t len)
{
    char *s = malloc(len + 1);
    if (!s)
        abort();
    memcpy(s, data, len);
    s[len] = '\0';
    return s;
}

/* Fills out from frame f: a status and either a body or details. */
static void reply_from(const fz_msg *f, cairn__reply *out)
{
    memset(out, 0, sizeof *out);
    out->grpc_status = f->len ? f->data[0] % GRPC_STATUSES : 0;
    const uint8_t *rest = f->len ? f->data + 1 : f->data;
    size_t rest_len = f->len ? f->len - 1 : 0;
    if (out->grpc_status) {
        out->details = copy_text(rest, rest_len);
        return;
    }
    out->body = malloc(rest_len ? rest_len : 1);
    if (!out->body)
        abort();
    memcpy(out->body, rest, rest_len);
    out->body_len = rest_len;
}

static void next_reply(cairn__reply *out)
{
    if (script.next < script.n) {
        reply_from(&script.frames[script.next++], out);
        return;
    }
    if (script.n > 0) { /* a server that repeats itself */
        reply_from(&script.frames[script.n - 1], out);
        return;
    }
    memset(out, 0, sizeof *out);
    out->grpc_status = GRPC_UNAVAILABLE;
    out->details = copy_text((const uint8_t *)"the script ended", 16);
}

void cairn__transport_unary(cairn__transport *t, cairn__method m, const uint8_t *req,
                            size_t len, uint32_t timeout_ms, bool wait_for_ready,
                            cairn__cancel *slot, cairn__reply *out)
{
    (void)t, (void)m, (void)req, (void)len, (void)timeout_ms, (void)wait_for_ready, (void)slot;
    next_reply(out);
}

void cairn__transport_upload(cairn__transport *t, cairn__method m, cairn__next_fn next, void *ctx,
                             uint32_t timeout_ms, bool wait_for_ready, cairn__reply *out)
{
    (void)t, (void)m, (void)timeout_ms, (void)wait_for_ready;
    memset(out, 0, sizeof *out);
    for (;;) {
        uint8_t *msg = NULL;
        size_t len = 0;
        int rc = next(ctx, &msg, &len, out);
        free(msg);
        if (rc < 0)
            return;
        if (rc == 0)
            break;
    }
    next_reply(out);
}

void cairn__transport_download(cairn__transport *t, cairn__method m, const uint8_t *req,
                               size_t len, cairn__msg_fn on_msg, void *ctx, uint32_t timeout_ms,
                               bool wait_for_ready, cairn__cancel *slot, cairn__reply *out)
{
    (void)t, (void)m, (void)req, (void)len, (void)timeout_ms, (void)wait_for_ready, (void)slot;
    memset(out, 0, sizeof *out);
    while (script.next < script.n) {
        const fz_msg *f = &script.frames[script.next++];
        if (f->len && f->data[0]) {
            reply_from(f, out);
            return;
        }
        const uint8_t *msg = f->len ? f->data + 1 : f->data;
        if (on_msg(ctx, msg, f->len ? f->len - 1 : 0, out) < 0)
            return;
    }
}
