#include "base/pbc.h"
#include "base/sha256.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int srv_utf8_valid(const uint8_t *s, size_t n)
{
    size_t i = 0;
    while (i < n) {
        uint8_t c = s[i];
        if (c == 0)
            return 0;
        if (c < 0x80) {
            i++;
            continue;
        }
        size_t len;
        uint32_t cp;
        if ((c & 0xe0) == 0xc0)
            len = 2, cp = c & 0x1f;
        else if ((c & 0xf0) == 0xe0)
            len = 3, cp = c & 0x0f;
        else if ((c & 0xf8) == 0xf0)
            len = 4, cp = c & 0x07;
        else
            return 0;
        if (i + len > n)
            return 0;
        for (size_t k = 1; k < len; k++) {
            if ((s[i + k] & 0xc0) != 0x80)
                return 0;
            cp = (cp << 6) | (s[i + k] & 0x3f);
        }
        /* overlong forms, surrogates and values past U+10FFFF */
        if ((len == 2 && cp < 0x80) || (len == 3 && cp < 0x800) ||
            (len == 4 && cp < 0x10000) || cp > 0x10ffff ||
            (cp >= 0xd800 && cp <= 0xdfff))
            return 0;
        i += len;
    }
    return 1;
}

static int read_varint(const uint8_t **p, const uint8_t *end, uint64_t *v)
{
    uint64_t x = 0;
    for (int shift = 0; shift < 64 && *p < end; shift += 7) {
        uint8_t b = *(*p)++;
        x |= (uint64_t)(b & 0x7f) << shift;
        if (!(b & 0x80)) {
            *v = x;
            return 0;
        }
    }
    return -1;
}

/* Walks the wire format checking string fields. Malformed input is left
 * for protobuf-c to reject; this only reports bad strings. */
static srv_code check_strings(const ProtobufCMessageDescriptor *desc,
                              const uint8_t *p, const uint8_t *end,
                              const char *prefix, int depth, srv_error *err)
{
    while (p < end) {
        uint64_t key, len;
        if (read_varint(&p, end, &key) < 0)
            return SRV_OK;
        switch (key & 7) {
        case 0:
            if (read_varint(&p, end, &len) < 0)
                return SRV_OK;
            break;
        case 1:
        case 5: {
            size_t width = (key & 7) == 1 ? 8 : 4;
            if ((size_t)(end - p) < width)
                return SRV_OK;
            p += width;
            break;
        }
        case 2: {
            if (read_varint(&p, end, &len) < 0 || len > (uint64_t)(end - p))
                return SRV_OK;
            const ProtobufCFieldDescriptor *f =
                protobuf_c_message_descriptor_get_field(desc, (unsigned)(key >> 3));
            if (f && f->type == PROTOBUF_C_TYPE_STRING && !srv_utf8_valid(p, len))
                return srv_fail(err, SRV_INVALID_ARGUMENT,
                                "%s%s: must be UTF-8 without NUL bytes", prefix, f->name);
            if (f && f->type == PROTOBUF_C_TYPE_MESSAGE && depth < 8) {
                char sub[128];
                snprintf(sub, sizeof sub, "%s%s.", prefix, f->name);
                srv_code rc = check_strings(f->descriptor, p, p + len, sub, depth + 1, err);
                if (rc)
                    return rc;
            }
            p += len;
            break;
        }
        default:
            return SRV_OK;
        }
    }
    return SRV_OK;
}

srv_code srv_unpack(const ProtobufCMessageDescriptor *desc, srv_arena *a,
                    const uint8_t *data, size_t len, ProtobufCMessage **out,
                    srv_error *err)
{
    srv_code rc = check_strings(desc, data, data + len, "", 0, err);
    if (rc)
        return rc;
    ProtobufCAllocator alloc;
    if (a)
        alloc = srv_arena_allocator(a);
    *out = protobuf_c_message_unpack(desc, a ? &alloc : NULL, len, data);
    if (!*out)
        return srv_fail(err, SRV_INVALID_ARGUMENT, "request: not a valid %s message",
                        desc->name);
    return SRV_OK;
}

ProtobufCMessage *srv_new_message(srv_arena *a, const ProtobufCMessageDescriptor *desc)
{
    ProtobufCMessage *msg = srv_arena_alloc(a, desc->sizeof_message);
    if (msg)
        protobuf_c_message_init(desc, msg);
    return msg;
}

srv_code srv_pack(srv_arena *a, const ProtobufCMessage *msg, uint8_t **out,
                  size_t *len, srv_error *err)
{
    size_t n = protobuf_c_message_get_packed_size(msg);
    uint8_t *buf = srv_arena_alloc(a, n ? n : 1);
    if (!buf)
        return srv_fail(err, SRV_RESOURCE_EXHAUSTED, "out of memory encoding the response");
    *len = protobuf_c_message_pack(msg, buf);
    *out = buf;
    return SRV_OK;
}

uint8_t *srv_pack_heap(const ProtobufCMessage *msg, size_t *len)
{
    *len = protobuf_c_message_get_packed_size(msg);
    uint8_t *buf = malloc(*len ? *len : 1);
    if (buf)
        protobuf_c_message_pack(msg, buf);
    return buf;
}

srv_code srv_fingerprint(srv_arena *a, ProtobufCMessage *msg, uint8_t out[32],
                         srv_error *err)
{
    const ProtobufCFieldDescriptor *f =
        protobuf_c_message_descriptor_get_field_by_name(msg->descriptor, "idempotency_key");
    char **key = f ? (char **)((char *)msg + f->offset) : NULL;
    char *saved_key = key ? *key : NULL;
    unsigned saved_n_unknown = msg->n_unknown_fields;

    if (key)
        *key = (char *)"";
    msg->n_unknown_fields = 0;
    uint8_t *buf = NULL;
    size_t len = 0;
    srv_code rc = srv_pack(a, msg, &buf, &len, err);
    if (key)
        *key = saved_key;
    msg->n_unknown_fields = saved_n_unknown;
    if (rc)
        return rc;

    if (srv_sha256_of(buf, len, out) < 0)
        return srv_fail(err, SRV_INTERNAL, "sha-256 failed");
    return SRV_OK;
}

const char *srv_msg_string(const ProtobufCMessage *msg, const char *name)
{
    const ProtobufCFieldDescriptor *f =
        protobuf_c_message_descriptor_get_field_by_name(msg->descriptor, name);
    if (!f || f->type != PROTOBUF_C_TYPE_STRING || f->label == PROTOBUF_C_LABEL_REPEATED)
        return "";
    const char *s = *(const char *const *)((const char *)msg + f->offset);
    return s ? s : "";
}

size_t srv_replayed_suffix(const ProtobufCMessageDescriptor *desc, uint8_t out[8])
{
    const ProtobufCFieldDescriptor *f =
        protobuf_c_message_descriptor_get_field_by_name(desc, "replayed");
    if (!f)
        return 0;
    uint64_t key = (uint64_t)f->id << 3; /* wire type 0: varint */
    size_t n = 0;
    while (key >= 0x80) {
        out[n++] = (uint8_t)(key | 0x80);
        key >>= 7;
    }
    out[n++] = (uint8_t)key;
    out[n++] = 1;
    return n;
}
