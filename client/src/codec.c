/* nanopb encoding and decoding, and the encode -> invoke -> decode path
 * every unary function shares. */
#include "internal.h"

#include <pb_decode.h>
#include <pb_encode.h>
#include <stdlib.h>
#include <string.h>

cairn_status cairn__encode(const pb_msgdesc_t *fields, const void *msg, uint8_t **out,
                           size_t *len, cairn_error *err)
{
    size_t n = 0;
    if (!pb_get_encoded_size(&n, fields, msg))
        return cairn__fail(err, CAIRN_INVALID_ARGUMENT, "request: cannot be encoded");
    uint8_t *buf = malloc(n ? n : 1);
    if (!buf)
        return cairn__fail(err, CAIRN_NO_MEMORY, "out of memory encoding the request");
    pb_ostream_t os = pb_ostream_from_buffer(buf, n);
    if (!pb_encode(&os, fields, msg)) {
        free(buf);
        return cairn__fail(err, CAIRN_INVALID_ARGUMENT, "request: %s", PB_GET_ERROR(&os));
    }
    *out = buf;
    *len = os.bytes_written;
    return CAIRN_OK;
}

cairn_status cairn__decode(const pb_msgdesc_t *fields, const uint8_t *buf, size_t len,
                           void *msg, cairn_error *err)
{
    pb_istream_t is = pb_istream_from_buffer(buf, len);
    if (!pb_decode(&is, fields, msg)) {
        pb_release(fields, msg);
        return cairn__fail(err, CAIRN_INTERNAL, "response: cannot be decoded: %s",
                           PB_GET_ERROR(&is));
    }
    return CAIRN_OK;
}

void cairn__release(const pb_msgdesc_t *fields, void *msg)
{
    if (!msg)
        return;
    pb_release(fields, msg);
    free(msg);
}

cairn_status cairn__copy_str(char *dst, size_t cap, const char *s, const char *field,
                             cairn_error *err)
{
    if (!s)
        s = "";
    size_t n = strlen(s);
    if (n >= cap)
        return cairn__fail(err, CAIRN_INVALID_ARGUMENT, "%s: must be at most %zu bytes, got %zu",
                           field, cap - 1, n);
    memcpy(dst, s, n + 1);
    return CAIRN_OK;
}

typedef struct unary_attempt {
    cairn__method method;
    const uint8_t *req;
    size_t len;
    cairn__cancel *stop;
} unary_attempt;

static void attempt_unary(void *ctx, cairn__transport *t, uint32_t timeout_ms,
                          bool wait_for_ready, cairn__reply *out)
{
    const unary_attempt *u = ctx;
    cairn__transport_unary(t, u->method, u->req, u->len, timeout_ms, wait_for_ready, u->stop,
                           out);
}

cairn_status cairn__unary(cairn_client *c, cairn__method m, const pb_msgdesc_t *req_fields,
                          const void *req, const char *key, const pb_msgdesc_t *resp_fields,
                          void *resp, cairn_error *err)
{
    return cairn__unary_with(c, NULL, NULL, m, req_fields, req, key, resp_fields, resp, err);
}

cairn_status cairn__unary_with(cairn_client *c, const cairn_retry_policy *p,
                               cairn__cancel *stop, cairn__method m,
                               const pb_msgdesc_t *req_fields, const void *req, const char *key,
                               const pb_msgdesc_t *resp_fields, void *resp, cairn_error *err)
{
    uint8_t *buf;
    size_t len;
    cairn__error_clear(err);
    cairn_status rc = cairn__encode(req_fields, req, &buf, &len, err);
    if (rc)
        return rc;
    unary_attempt u = {m, buf, len, stop};
    cairn__call call = {cairn__method_name(m), attempt_unary, &u, key, false, stop};
    cairn__reply reply;
    rc = cairn__invoke_with(c, p ? p : &c->retry, &call, &reply, err);
    free(buf);
    if (rc)
        return rc;
    rc = cairn__decode(resp_fields, reply.body, reply.body_len, resp, err);
    cairn__reply_free(&reply);
    return rc;
}
