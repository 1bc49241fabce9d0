#include "base/pbc.h"
#include "base/sha256.h"

#include <stdbool.h>
#include <stdint.h>
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

int srv_read_varint(const uint8_t **p, const uint8_t *end, uint64_t *v)
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

static const char *const wire_names[8] = {
    "0 (varint)", "1 (64-bit)", "2 (length-delimited)", "3 (group start)",
    "4 (group end)", "5 (32-bit)", "6 (not a wire type)", "7 (not a wire type)",
};

/* The wire type a field of this type is encoded with; repeated numbers
 * may also come packed (2). */
static unsigned wire_type_of(ProtobufCType t)
{
    switch (t) {
    case PROTOBUF_C_TYPE_SFIXED64:
    case PROTOBUF_C_TYPE_FIXED64:
    case PROTOBUF_C_TYPE_DOUBLE:
        return 1;
    case PROTOBUF_C_TYPE_SFIXED32:
    case PROTOBUF_C_TYPE_FIXED32:
    case PROTOBUF_C_TYPE_FLOAT:
        return 5;
    case PROTOBUF_C_TYPE_STRING:
    case PROTOBUF_C_TYPE_BYTES:
    case PROTOBUF_C_TYPE_MESSAGE:
        return 2;
    default:
        return 0;
    }
}

/* Whether a varint fits a 32-bit field: protobuf would truncate it, so a
 * negative number or a 64-bit one in a uint32 field would silently become
 * another value. int32 and enum take their sign-extended negatives. */
static bool varint_fits(ProtobufCType t, uint64_t v)
{
    switch (t) {
    case PROTOBUF_C_TYPE_UINT32:
    case PROTOBUF_C_TYPE_SINT32:
        return v <= UINT32_MAX;
    case PROTOBUF_C_TYPE_INT32:
    case PROTOBUF_C_TYPE_ENUM:
        return v <= INT32_MAX || v >= (uint64_t)INT32_MIN;
    default:
        return true;
    }
}

#define WIRE_DEPTH_MAX 8       /* deeper messages are left to protobuf-c */
#define WIRE_NAME_MAX 160
#define WIRE_COUNTED_FIELDS 64 /* repeated fields get an index up to this many fields */
#define WIRE_FIELD_NUMBER_MAX 536870911u /* 2^29 - 1, protobuf's largest */

/* A field as errors name it ("events[2].type", "request: unknown field
 * 9"), written out only when an error needs it: most requests have none,
 * and a batch of events has hundreds of fields. */
typedef struct wire_name {
    const struct wire_name *parent; /* the message field it is inside; NULL at the top */
    const ProtobufCFieldDescriptor *f; /* NULL: an unknown field */
    unsigned index;                 /* of a counted repeated field, else NO_INDEX */
    unsigned long long number;      /* an unknown field's number */
} wire_name;

enum { NO_INDEX = ~0u };

/* Appends the path of n (a known field) to buf at len; returns the new length. */
static size_t path_text(const wire_name *n, char *buf, size_t cap, size_t len)
{
    if (n->parent)
        len = path_text(n->parent, buf, cap, len);
    if (len >= cap)
        return len;
    int w = n->index == NO_INDEX
                ? snprintf(buf + len, cap - len, "%s%s", len ? "." : "", n->f->name)
                : snprintf(buf + len, cap - len, "%s%s[%u]", len ? "." : "", n->f->name,
                           n->index);
    return w < 0 ? len : len + (size_t)w;
}

/* The path of n (a known field) in buf. */
static const char *path_of(const wire_name *n, char *buf, size_t cap)
{
    buf[0] = '\0';
    path_text(n, buf, cap, 0);
    return buf;
}

/* The message a field is inside, as errors name it: "request" at the top. */
static const char *message_text(const wire_name *parent, char *buf, size_t cap)
{
    return parent ? path_of(parent, buf, cap) : "request";
}

static const char *name_text(const wire_name *n, char *buf, size_t cap)
{
    if (n->f)
        return path_of(n, buf, cap);
    char whole[WIRE_NAME_MAX];
    snprintf(buf, cap, "%s: unknown field %llu", message_text(n->parent, whole, sizeof whole),
             n->number);
    return buf;
}

static srv_code check_wire(const ProtobufCMessageDescriptor *desc, const uint8_t *start,
                           const uint8_t *end, const wire_name *parent, int depth,
                           srv_error *err);

/* Checks one field's value at *p (wire type wt; name->f NULL for an
 * unknown field) and moves *p past it. */
static srv_code check_value(const ProtobufCMessageDescriptor *desc, const wire_name *name,
                            unsigned wt, const uint8_t **p, const uint8_t *end, int depth,
                            srv_error *err)
{
    const ProtobufCFieldDescriptor *f = name->f;
    char nb[WIRE_NAME_MAX];
    uint64_t v;
    switch (wt) {
    case 0:
        if (srv_read_varint(p, end, &v) < 0)
            return srv_fail(err, SRV_INVALID_ARGUMENT,
                            "%s: its varint is cut short or over 10 bytes",
                            name_text(name, nb, sizeof nb));
        if (f && !varint_fits(f->type, v))
            return srv_fail(err, SRV_INVALID_ARGUMENT,
                            "%s: %llu does not fit its 32-bit type (a negative or 64-bit "
                            "number?)",
                            name_text(name, nb, sizeof nb), (unsigned long long)v);
        return SRV_OK;
    case 1:
    case 5: {
        size_t width = wt == 1 ? 8 : 4;
        if ((size_t)(end - *p) < width)
            return srv_fail(err, SRV_INVALID_ARGUMENT,
                            "%s: needs %zu bytes but only %zu remain in the %s",
                            name_text(name, nb, sizeof nb), width, (size_t)(end - *p),
                            desc->name);
        *p += width;
        return SRV_OK;
    }
    case 2:
        if (srv_read_varint(p, end, &v) < 0)
            return srv_fail(err, SRV_INVALID_ARGUMENT,
                            "%s: its length is cut short or over 10 bytes",
                            name_text(name, nb, sizeof nb));
        if (v > (uint64_t)(end - *p))
            return srv_fail(err, SRV_INVALID_ARGUMENT,
                            "%s: declares %llu bytes but only %zu remain in the %s",
                            name_text(name, nb, sizeof nb), (unsigned long long)v,
                            (size_t)(end - *p), desc->name);
        if (f && f->type == PROTOBUF_C_TYPE_STRING && !srv_utf8_valid(*p, (size_t)v))
            return srv_fail(err, SRV_INVALID_ARGUMENT, "%s: must be UTF-8 without NUL bytes",
                            name_text(name, nb, sizeof nb));
        if (f && f->type == PROTOBUF_C_TYPE_MESSAGE && depth < WIRE_DEPTH_MAX &&
            check_wire(f->descriptor, *p, *p + v, name, depth + 1, err))
            return err->code;
        *p += v;
        return SRV_OK;
    default:
        /* Groups are gone from proto3 and protobuf-c does not read them;
         * 6 and 7 are no wire type at all. */
        return srv_fail(err, SRV_INVALID_ARGUMENT, "%s: wire type %s is not accepted",
                        name_text(name, nb, sizeof nb), wire_names[wt]);
    }
}

/* Walks the wire format of one message (desc) and reports the first
 * malformed or unacceptable field by name: parent is the field the
 * message is in (NULL at the top; e.g. events[2] below it). Checks tags,
 * wire types against the field's declared type, lengths and varints
 * against the bytes left, 32-bit numbers against their range, and strings
 * for UTF-8 without NUL bytes. Unknown fields are only checked for being
 * well formed: protobuf ignores them, and so does cairnd. */
static srv_code check_wire(const ProtobufCMessageDescriptor *desc, const uint8_t *start,
                           const uint8_t *end, const wire_name *parent, int depth,
                           srv_error *err)
{
    char whole[WIRE_NAME_MAX];
    unsigned counts[WIRE_COUNTED_FIELDS] = {0};
    const uint8_t *p = start;
    while (p < end) {
        size_t at = (size_t)(p - start);
        uint64_t key;
        if (srv_read_varint(&p, end, &key) < 0)
            return srv_fail(err, SRV_INVALID_ARGUMENT,
                            "%s: byte %zu of the %s starts a field tag that is cut short or "
                            "over 10 bytes",
                            message_text(parent, whole, sizeof whole), at, desc->name);
        uint64_t number = key >> 3;
        unsigned wt = (unsigned)(key & 7);
        if (number == 0 || number > WIRE_FIELD_NUMBER_MAX)
            return srv_fail(err, SRV_INVALID_ARGUMENT,
                            "%s: byte %zu of the %s holds field number %llu, not a valid one",
                            message_text(parent, whole, sizeof whole), at, desc->name,
                            (unsigned long long)number);
        wire_name name = {parent, protobuf_c_message_descriptor_get_field(desc, (unsigned)number),
                          NO_INDEX, (unsigned long long)number};
        if (name.f) {
            size_t idx = (size_t)(name.f - desc->fields);
            if (name.f->label == PROTOBUF_C_LABEL_REPEATED && idx < WIRE_COUNTED_FIELDS)
                name.index = counts[idx]++;
            unsigned want = wire_type_of(name.f->type);
            bool packed = name.f->label == PROTOBUF_C_LABEL_REPEATED && want != 2 && wt == 2;
            if (wt != want && !packed)
                return srv_fail(err, SRV_INVALID_ARGUMENT,
                                "%s: sent with wire type %s, but its type needs wire type %s",
                                name_text(&name, whole, sizeof whole), wire_names[wt],
                                wire_names[want]);
        }
        if (check_value(desc, &name, wt, &p, end, depth, err))
            return err->code;
    }
    return SRV_OK;
}

srv_code srv_unpack(const ProtobufCMessageDescriptor *desc, srv_arena *a,
                    const uint8_t *data, size_t len, ProtobufCMessage **out,
                    srv_error *err)
{
    srv_code rc = check_wire(desc, data, data + len, NULL, 0, err);
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

/* Calls fn on msg and on every message below it (message fields, set
 * oneof members, repeated messages and map entries). */
static void each_message(ProtobufCMessage *msg, int depth,
                         void (*fn)(ProtobufCMessage *, void *), void *ctx)
{
    fn(msg, ctx);
    if (depth >= 32) /* cairn's messages nest two deep; no schema here recurses */
        return;
    const ProtobufCMessageDescriptor *d = msg->descriptor;
    for (unsigned i = 0; i < d->n_fields; i++) {
        const ProtobufCFieldDescriptor *f = &d->fields[i];
        if (f->type != PROTOBUF_C_TYPE_MESSAGE)
            continue;
        char *at = (char *)msg + f->offset;
        if (f->label == PROTOBUF_C_LABEL_REPEATED) {
            size_t n = *(size_t *)((char *)msg + f->quantifier_offset);
            ProtobufCMessage **v = *(ProtobufCMessage ***)at;
            for (size_t k = 0; k < n; k++)
                if (v[k])
                    each_message(v[k], depth + 1, fn, ctx);
            continue;
        }
        if ((f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF) &&
            *(uint32_t *)((char *)msg + f->quantifier_offset) != f->id)
            continue;
        ProtobufCMessage *sub = *(ProtobufCMessage **)at;
        if (sub)
            each_message(sub, depth + 1, fn, ctx);
    }
}

/* Unknown fields hidden from the encoder while a fingerprint is taken. */
typedef struct hidden_unknowns {
    size_t n, cap;
    struct {
        ProtobufCMessage *msg;
        unsigned n_unknown;
    } *v;
} hidden_unknowns;

static void count_unknowns(ProtobufCMessage *m, void *ctx)
{
    if (m->n_unknown_fields)
        ((hidden_unknowns *)ctx)->cap++;
}

static void hide_unknowns(ProtobufCMessage *m, void *ctx)
{
    hidden_unknowns *h = ctx;
    if (!m->n_unknown_fields || h->n == h->cap)
        return;
    h->v[h->n].msg = m;
    h->v[h->n].n_unknown = m->n_unknown_fields;
    h->n++;
    m->n_unknown_fields = 0;
}

srv_code srv_fingerprint(srv_arena *a, ProtobufCMessage *msg, uint8_t out[32],
                         srv_error *err)
{
    const ProtobufCFieldDescriptor *f =
        protobuf_c_message_descriptor_get_field_by_name(msg->descriptor, "idempotency_key");
    char **key = f ? (char **)((char *)msg + f->offset) : NULL;
    char *saved_key = key ? *key : NULL;

    /* Unknown fields at any depth (an Event's too) are not part of the
     * request: a retry that adds or drops one is the same request. */
    hidden_unknowns h = {0};
    each_message(msg, 0, count_unknowns, &h);
    if (h.cap && !(h.v = srv_arena_alloc(a, h.cap * sizeof *h.v)))
        return srv_fail(err, SRV_RESOURCE_EXHAUSTED, "out of memory");
    each_message(msg, 0, hide_unknowns, &h);

    if (key)
        *key = (char *)"";
    uint8_t *buf = NULL;
    size_t len = 0;
    srv_code rc = srv_pack(a, msg, &buf, &len, err);
    if (key)
        *key = saved_key;
    for (size_t i = 0; i < h.n; i++)
        h.v[i].msg->n_unknown_fields = h.v[i].n_unknown;
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
