/* The two codecs generated from one .proto must agree: libcairn speaks
 * nanopb, cairnd protobuf-c. Every message of coordinator.proto and
 * health.proto is filled field by field (strings at nanopb's max_size,
 * 64-bit values, binary bytes, lists, maps, oneofs, callback fields),
 * encoded by one library, decoded by the other and compared field by field.
 *
 * Fill and compare walk the protobuf-c descriptor and find each field in
 * the nanopb descriptor by tag, so a field added to the .proto is covered
 * without touching this file. */
#include "base/arena.h"
#include "cairn/v1/coordinator.pb-c.h"
#include "cairn/v1/coordinator.pb.h"
#include "grpc/health/v1/health.pb-c.h"
#include "grpc/health/v1/health.pb.h"

#include <pb_common.h>
#include <pb_decode.h>
#include <pb_encode.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

/* ---- the messages ---- */

typedef struct pair {
    const char *name;
    const pb_msgdesc_t *nb;
    size_t nb_size;
    const ProtobufCMessageDescriptor *pbc;
    uint32_t oneof_tag; /* the member of the message's oneof to fill, if any */
    bool no_nb_decode;  /* see create_checkpoint_request_chunk below */
} pair;

#define PAIR(name, nb, pbc) {name, &nb##_msg, sizeof(nb), &pbc##__descriptor, 0, false}
#define PAIR_ONEOF(name, nb, pbc, tag) \
    {name, &nb##_msg, sizeof(nb), &pbc##__descriptor, tag, false}

static const pair pairs[] = {
    PAIR("create_run_request", cairn_v1_CreateRunRequest, cairn__v1__create_run_request),
    PAIR("get_run_request", cairn_v1_GetRunRequest, cairn__v1__get_run_request),
    PAIR("run", cairn_v1_Run, cairn__v1__run),
    PAIR("list_runs_request", cairn_v1_ListRunsRequest, cairn__v1__list_runs_request),
    PAIR("list_runs_response", cairn_v1_ListRunsResponse, cairn__v1__list_runs_response),
    PAIR("event", cairn_v1_Event, cairn__v1__event),
    PAIR("append_events_request", cairn_v1_AppendEventsRequest,
         cairn__v1__append_events_request),
    PAIR("append_events_response", cairn_v1_AppendEventsResponse,
         cairn__v1__append_events_response),
    PAIR("read_events_request", cairn_v1_ReadEventsRequest, cairn__v1__read_events_request),
    PAIR("read_events_response", cairn_v1_ReadEventsResponse, cairn__v1__read_events_response),
    PAIR("watch_events_request", cairn_v1_WatchEventsRequest, cairn__v1__watch_events_request),
    PAIR("acquire_worker_request", cairn_v1_AcquireWorkerRequest,
         cairn__v1__acquire_worker_request),
    PAIR("lease", cairn_v1_Lease, cairn__v1__lease),
    PAIR("renew_lease_request", cairn_v1_RenewLeaseRequest, cairn__v1__renew_lease_request),
    PAIR("release_worker_request", cairn_v1_ReleaseWorkerRequest,
         cairn__v1__release_worker_request),
    PAIR("release_worker_response", cairn_v1_ReleaseWorkerResponse,
         cairn__v1__release_worker_response),
    PAIR("complete_worker_request", cairn_v1_CompleteWorkerRequest,
         cairn__v1__complete_worker_request),
    PAIR("complete_worker_response", cairn_v1_CompleteWorkerResponse,
         cairn__v1__complete_worker_response),
    PAIR("checkpoint", cairn_v1_Checkpoint, cairn__v1__checkpoint),
    PAIR("checkpoint_header", cairn_v1_CheckpointHeader, cairn__v1__checkpoint_header),
    PAIR_ONEOF("create_checkpoint_request_header", cairn_v1_CreateCheckpointRequest,
               cairn__v1__create_checkpoint_request, 1),
    /* Only ever sent by libcairn. nanopb 0.4.7 hands a callback member of
     * a oneof to its callback but leaves which_part at 0, so decoding it
     * with nanopb is checked separately (oneof_callback_... below). */
    {"create_checkpoint_request_chunk", &cairn_v1_CreateCheckpointRequest_msg,
     sizeof(cairn_v1_CreateCheckpointRequest), &cairn__v1__create_checkpoint_request__descriptor,
     2, true},
    PAIR("list_checkpoints_request", cairn_v1_ListCheckpointsRequest,
         cairn__v1__list_checkpoints_request),
    PAIR("list_checkpoints_response", cairn_v1_ListCheckpointsResponse,
         cairn__v1__list_checkpoints_response),
    PAIR("get_latest_checkpoint_request", cairn_v1_GetLatestCheckpointRequest,
         cairn__v1__get_latest_checkpoint_request),
    PAIR("load_checkpoint_request", cairn_v1_LoadCheckpointRequest,
         cairn__v1__load_checkpoint_request),
    PAIR("checkpoint_chunk", cairn_v1_CheckpointChunk, cairn__v1__checkpoint_chunk),
    PAIR("delete_run_request", cairn_v1_DeleteRunRequest, cairn__v1__delete_run_request),
    PAIR("delete_run_response", cairn_v1_DeleteRunResponse, cairn__v1__delete_run_response),
    PAIR("cleanup_checkpoints_request", cairn_v1_CleanupCheckpointsRequest,
         cairn__v1__cleanup_checkpoints_request),
    PAIR("cleanup_checkpoints_response", cairn_v1_CleanupCheckpointsResponse,
         cairn__v1__cleanup_checkpoints_response),
    PAIR("resume_run_request", cairn_v1_ResumeRunRequest, cairn__v1__resume_run_request),
    PAIR("resume_result", cairn_v1_ResumeResult, cairn__v1__resume_result),
    PAIR("health_check_request", grpc_health_v1_HealthCheckRequest,
         grpc__health__v1__health_check_request),
    PAIR("health_check_response", grpc_health_v1_HealthCheckResponse,
         grpc__health__v1__health_check_response),
};
#define N_PAIRS (sizeof pairs / sizeof pairs[0])

/* ---- nanopb callbacks ---- */

/* What a callback field holds, both ways: the bytes or events to encode,
 * or the ones decoded. Allocated in the test's arena. */
typedef struct slot {
    srv_arena *a;
    uint8_t *bytes;
    size_t n_bytes;
    cairn_v1_Event *items;
    size_t n_items, cap;
} slot;

static slot *new_slot(srv_arena *a)
{
    slot *s = srv_arena_alloc(a, sizeof *s);
    memset(s, 0, sizeof *s);
    s->a = a;
    return s;
}

static bool enc_bytes(pb_ostream_t *os, const pb_field_t *f, void *const *arg)
{
    const slot *s = *arg;
    return pb_encode_tag_for_field(os, f) && pb_encode_string(os, s->bytes, s->n_bytes);
}

static bool dec_bytes(pb_istream_t *is, const pb_field_t *f, void **arg)
{
    (void)f;
    slot *s = *arg;
    s->n_bytes = is->bytes_left;
    s->bytes = srv_arena_alloc(s->a, s->n_bytes ? s->n_bytes : 1);
    return pb_read(is, s->bytes, s->n_bytes);
}

static bool enc_events(pb_ostream_t *os, const pb_field_t *f, void *const *arg)
{
    const slot *s = *arg;
    for (size_t i = 0; i < s->n_items; i++)
        if (!pb_encode_tag_for_field(os, f) ||
            !pb_encode_submessage(os, &cairn_v1_Event_msg, &s->items[i]))
            return false;
    return true;
}

static void arm(srv_arena *a, const pb_msgdesc_t *nd, void *nm);

static bool dec_events(pb_istream_t *is, const pb_field_t *f, void **arg)
{
    slot *s = *arg;
    if (f->submsg_desc != &cairn_v1_Event_msg)
        return false; /* the only repeated callback message of the schema */
    if (s->n_items == s->cap) {
        size_t cap = s->cap ? 2 * s->cap : 8;
        cairn_v1_Event *v = srv_arena_alloc(s->a, cap * sizeof *v);
        if (s->n_items)
            memcpy(v, s->items, s->n_items * sizeof *v);
        s->items = v;
        s->cap = cap;
    }
    cairn_v1_Event *e = &s->items[s->n_items++];
    memset(e, 0, sizeof *e);
    arm(s->a, &cairn_v1_Event_msg, e);
    return pb_decode(is, &cairn_v1_Event_msg, e);
}

/* Points every callback field of a nanopb message at a fresh slot, so
 * decoding captures it. */
static void arm(srv_arena *a, const pb_msgdesc_t *nd, void *nm)
{
    pb_field_iter_t it;
    if (!pb_field_iter_begin(&it, nd, nm))
        return;
    do {
        if (PB_ATYPE(it.type) != PB_ATYPE_CALLBACK)
            continue;
        pb_callback_t *cb = it.pData;
        cb->arg = new_slot(a);
        if (PB_LTYPE(it.type) == PB_LTYPE_SUBMESSAGE)
            cb->funcs.decode = dec_events;
        else
            cb->funcs.decode = dec_bytes;
    } while (pb_field_iter_next(&it));
}

/* ---- field lookup ---- */

static _Alignas(max_align_t) unsigned char nb_dummy[16384];

/* The nanopb field with tag `tag` of message nm (or of a zeroed dummy
 * when nm is NULL, to learn sizes and sub-descriptors). */
static pb_field_iter_t nb_field(const pb_msgdesc_t *nd, void *nm, uint32_t tag)
{
    pb_field_iter_t it;
    if (!pb_field_iter_begin(&it, nd, nm ? nm : nb_dummy) || !pb_field_iter_find(&it, tag))
        fail_msg("nanopb has no field %u", tag);
    return it;
}

#define AT(m, off, type) ((type *)((char *)(m) + (off)))

/* ---- test values ---- */

/* Every field gets its own value, so a swapped or dropped field shows. */
static uint32_t seed_of(uint32_t tag, int depth, size_t idx)
{
    return tag * 131u + (uint32_t)depth * 17u + (uint32_t)idx * 7u;
}

static size_t str_len(const pb_field_iter_t *it, uint32_t seed)
{
    if (PB_ATYPE(it->type) == PB_ATYPE_STATIC)
        return it->data_size - 1; /* nanopb's max_size */
    return 150 + seed % 100;      /* past 127: a two-byte length */
}

static char *gen_text(srv_arena *a, char *out, size_t len, uint32_t seed)
{
    static const char chars[] = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._:-";
    if (!out)
        out = srv_arena_alloc(a, len + 1);
    for (size_t i = 0; i < len; i++)
        out[i] = chars[(seed + i * i + i) % (sizeof chars - 1)];
    out[len] = '\0';
    return out;
}

static uint8_t *gen_bytes(srv_arena *a, size_t len, uint32_t seed)
{
    uint8_t *p = srv_arena_alloc(a, len ? len : 1);
    for (size_t i = 0; i < len; i++)
        p[i] = (uint8_t)(seed + i * 31); /* NUL and 0xff included */
    return p;
}

static size_t bytes_len(uint32_t seed)
{
    return 300 + seed % 100;
}

static uint64_t gen_u64(uint32_t seed)
{
    return 0x0123456789abcdefull + seed;
}

static uint32_t gen_u32(uint32_t seed)
{
    return 0xf0000000u | seed;
}

static int gen_enum(const ProtobufCFieldDescriptor *f)
{
    const ProtobufCEnumDescriptor *e = f->descriptor;
    return e->values[e->n_values - 1].value;
}

static size_t repeat_count(const ProtobufCFieldDescriptor *f)
{
    return f->type == PROTOBUF_C_TYPE_MESSAGE ? 2 : 3;
}

static bool in_oneof(const ProtobufCFieldDescriptor *f)
{
    return (f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF) != 0;
}

/* ---- filling a nanopb message ---- */

static void nb_fill(srv_arena *a, const ProtobufCMessageDescriptor *pd, const pb_msgdesc_t *nd,
                    void *nm, int depth, uint32_t oneof_tag);

static void nb_set_scalar(const pb_field_iter_t *it, const ProtobufCFieldDescriptor *f,
                          uint32_t seed)
{
    switch (f->type) {
    case PROTOBUF_C_TYPE_UINT64: *(uint64_t *)it->pData = gen_u64(seed); break;
    case PROTOBUF_C_TYPE_UINT32: *(uint32_t *)it->pData = gen_u32(seed); break;
    case PROTOBUF_C_TYPE_BOOL: *(bool *)it->pData = true; break;
    case PROTOBUF_C_TYPE_ENUM:
        assert_int_equal(it->data_size, sizeof(int));
        *(int *)it->pData = gen_enum(f);
        break;
    default: fail_msg("field %s: type %d not handled by this test", f->name, f->type);
    }
}

static void nb_fill_field(srv_arena *a, const ProtobufCFieldDescriptor *f, pb_field_iter_t *it,
                          int depth)
{
    const bool repeated = f->label == PROTOBUF_C_LABEL_REPEATED;
    const size_t n = repeated ? repeat_count(f) : 1;
    const uint32_t seed = seed_of(f->id, depth, 0);

    if (PB_ATYPE(it->type) == PB_ATYPE_CALLBACK) {
        pb_callback_t *cb = it->pData;
        slot *s = new_slot(a);
        cb->arg = s;
        if (f->type == PROTOBUF_C_TYPE_BYTES) {
            s->n_bytes = bytes_len(seed);
            s->bytes = gen_bytes(a, s->n_bytes, seed);
            cb->funcs.encode = enc_bytes;
        } else {
            s->n_items = n;
            s->items = srv_arena_alloc(a, n * sizeof *s->items);
            memset(s->items, 0, n * sizeof *s->items);
            for (size_t i = 0; i < n; i++)
                nb_fill(a, f->descriptor, &cairn_v1_Event_msg, &s->items[i], depth + 1 + (int)i, 0);
            cb->funcs.encode = enc_events;
        }
        return;
    }
    switch (f->type) {
    case PROTOBUF_C_TYPE_STRING:
        if (repeated) {
            char **v = srv_arena_alloc(a, n * sizeof *v);
            for (size_t i = 0; i < n; i++)
                v[i] = gen_text(a, NULL, str_len(it, seed_of(f->id, depth, i)),
                                seed_of(f->id, depth, i));
            *(char ***)it->pField = v;
            *(pb_size_t *)it->pSize = (pb_size_t)n;
        } else if (PB_ATYPE(it->type) == PB_ATYPE_POINTER) {
            *(char **)it->pField = gen_text(a, NULL, str_len(it, seed), seed);
        } else {
            gen_text(a, it->pData, str_len(it, seed), seed);
        }
        break;
    case PROTOBUF_C_TYPE_MESSAGE:
        if (repeated) {
            unsigned char *v = srv_arena_alloc(a, n * it->data_size);
            memset(v, 0, n * it->data_size);
            for (size_t i = 0; i < n; i++)
                nb_fill(a, f->descriptor, it->submsg_desc, v + i * it->data_size,
                        depth + 1 + (int)i, 0);
            *(void **)it->pField = v;
            *(pb_size_t *)it->pSize = (pb_size_t)n;
        } else {
            if (PB_HTYPE(it->type) == PB_HTYPE_OPTIONAL && it->pSize)
                *(bool *)it->pSize = true;
            nb_fill(a, f->descriptor, it->submsg_desc, it->pData, depth + 1, 0);
        }
        break;
    default:
        assert_false(repeated);
        nb_set_scalar(it, f, seed);
    }
}

static void nb_fill(srv_arena *a, const ProtobufCMessageDescriptor *pd, const pb_msgdesc_t *nd,
                    void *nm, int depth, uint32_t oneof_tag)
{
    for (unsigned i = 0; i < pd->n_fields; i++) {
        const ProtobufCFieldDescriptor *f = &pd->fields[i];
        pb_field_iter_t it = nb_field(nd, nm, f->id);
        if (in_oneof(f)) {
            if (f->id != oneof_tag)
                continue;
            *(pb_size_t *)it.pSize = (pb_size_t)f->id;
        }
        nb_fill_field(a, f, &it, depth);
    }
}

/* ---- filling a protobuf-c message ---- */

static ProtobufCMessage *pbc_new(srv_arena *a, const ProtobufCMessageDescriptor *pd)
{
    ProtobufCMessage *m = srv_arena_alloc(a, pd->sizeof_message);
    protobuf_c_message_init(pd, m);
    return m;
}

static void pbc_fill(srv_arena *a, const ProtobufCMessageDescriptor *pd, ProtobufCMessage *pm,
                     const pb_msgdesc_t *nd, int depth, uint32_t oneof_tag);

static void pbc_fill_field(srv_arena *a, const ProtobufCFieldDescriptor *f, ProtobufCMessage *pm,
                           const pb_field_iter_t *it, int depth)
{
    const bool repeated = f->label == PROTOBUF_C_LABEL_REPEATED;
    const size_t n = repeated ? repeat_count(f) : 1;
    const uint32_t seed = seed_of(f->id, depth, 0);
    const pb_msgdesc_t *sub_nd =
        f->type == PROTOBUF_C_TYPE_MESSAGE ? it->submsg_desc : NULL;

    if (repeated) {
        *AT(pm, f->quantifier_offset, size_t) = n;
        if (f->type == PROTOBUF_C_TYPE_STRING) {
            char **v = srv_arena_alloc(a, n * sizeof *v);
            for (size_t i = 0; i < n; i++)
                v[i] = gen_text(a, NULL, str_len(it, seed_of(f->id, depth, i)),
                                seed_of(f->id, depth, i));
            *AT(pm, f->offset, char **) = v;
        } else {
            assert_int_equal(f->type, PROTOBUF_C_TYPE_MESSAGE);
            ProtobufCMessage **v = srv_arena_alloc(a, n * sizeof *v);
            for (size_t i = 0; i < n; i++) {
                v[i] = pbc_new(a, f->descriptor);
                pbc_fill(a, f->descriptor, v[i], sub_nd, depth + 1 + (int)i, 0);
            }
            *AT(pm, f->offset, ProtobufCMessage **) = v;
        }
        return;
    }
    switch (f->type) {
    case PROTOBUF_C_TYPE_STRING:
        *AT(pm, f->offset, char *) = gen_text(a, NULL, str_len(it, seed), seed);
        break;
    case PROTOBUF_C_TYPE_BYTES: {
        ProtobufCBinaryData *b = AT(pm, f->offset, ProtobufCBinaryData);
        b->len = bytes_len(seed);
        b->data = gen_bytes(a, b->len, seed);
        break;
    }
    case PROTOBUF_C_TYPE_MESSAGE: {
        ProtobufCMessage *sub = pbc_new(a, f->descriptor);
        pbc_fill(a, f->descriptor, sub, sub_nd, depth + 1, 0);
        *AT(pm, f->offset, ProtobufCMessage *) = sub;
        break;
    }
    case PROTOBUF_C_TYPE_UINT64: *AT(pm, f->offset, uint64_t) = gen_u64(seed); break;
    case PROTOBUF_C_TYPE_UINT32: *AT(pm, f->offset, uint32_t) = gen_u32(seed); break;
    case PROTOBUF_C_TYPE_BOOL: *AT(pm, f->offset, protobuf_c_boolean) = 1; break;
    case PROTOBUF_C_TYPE_ENUM: *AT(pm, f->offset, int) = gen_enum(f); break;
    default: fail_msg("field %s: type %d not handled by this test", f->name, f->type);
    }
}

static void pbc_fill(srv_arena *a, const ProtobufCMessageDescriptor *pd, ProtobufCMessage *pm,
                     const pb_msgdesc_t *nd, int depth, uint32_t oneof_tag)
{
    for (unsigned i = 0; i < pd->n_fields; i++) {
        const ProtobufCFieldDescriptor *f = &pd->fields[i];
        if (in_oneof(f)) {
            if (f->id != oneof_tag)
                continue;
            *AT(pm, f->quantifier_offset, uint32_t) = f->id;
        }
        pb_field_iter_t it = nb_field(nd, NULL, f->id);
        pbc_fill_field(a, f, pm, &it, depth);
    }
}

/* ---- comparing ---- */

static void cmp_msg(const char *path, const ProtobufCMessageDescriptor *pd,
                    const ProtobufCMessage *pm, const pb_msgdesc_t *nd, void *nm);

static void cmp_str(const char *path, const char *p, const char *n)
{
    p = p ? p : "";
    n = n ? n : "";
    if (strcmp(p, n) != 0)
        fail_msg("%s: protobuf-c \"%.40s\"... (%zu bytes) != nanopb \"%.40s\"... (%zu bytes)",
                 path, p, strlen(p), n, strlen(n));
}

static uint64_t nb_uint(const pb_field_iter_t *it)
{
    switch (it->data_size) {
    case 1: return *(const uint8_t *)it->pData;
    case 4: return *(const uint32_t *)it->pData;
    case 8: return *(const uint64_t *)it->pData;
    default: fail_msg("scalar of %u bytes", it->data_size);
    }
    return 0;
}

static uint64_t pbc_uint(const ProtobufCFieldDescriptor *f, const ProtobufCMessage *pm)
{
    const char *m = (const char *)pm;
    switch (f->type) {
    case PROTOBUF_C_TYPE_UINT64: return *(const uint64_t *)(m + f->offset);
    case PROTOBUF_C_TYPE_UINT32: return *(const uint32_t *)(m + f->offset);
    case PROTOBUF_C_TYPE_BOOL: return (uint64_t)*(const protobuf_c_boolean *)(m + f->offset);
    case PROTOBUF_C_TYPE_ENUM: return (uint64_t)(unsigned)*(const int *)(m + f->offset);
    default: fail_msg("field %s: type %d not handled by this test", f->name, f->type);
    }
    return 0;
}

static void cmp_field(const char *path, const ProtobufCFieldDescriptor *f,
                      const ProtobufCMessage *pm, pb_field_iter_t *it)
{
    const char *m = (const char *)pm;
    char sub[300];
    if (f->label == PROTOBUF_C_LABEL_REPEATED) {
        size_t pn = *(const size_t *)(m + f->quantifier_offset);
        size_t nn;
        const slot *s = NULL;
        if (PB_ATYPE(it->type) == PB_ATYPE_CALLBACK) {
            s = ((pb_callback_t *)it->pData)->arg;
            nn = s ? s->n_items : 0;
        } else {
            nn = *(const pb_size_t *)it->pSize;
        }
        if (pn != nn)
            fail_msg("%s: protobuf-c has %zu items, nanopb %zu", path, pn, nn);
        for (size_t i = 0; i < pn; i++) {
            snprintf(sub, sizeof sub, "%.200s[%zu]", path, i);
            if (f->type == PROTOBUF_C_TYPE_STRING) {
                cmp_str(sub, (*(char **const *)(m + f->offset))[i], (*(char ***)it->pField)[i]);
            } else if (s) {
                cmp_msg(sub, f->descriptor, (*(ProtobufCMessage **const *)(m + f->offset))[i],
                        &cairn_v1_Event_msg, &s->items[i]);
            } else {
                cmp_msg(sub, f->descriptor, (*(ProtobufCMessage **const *)(m + f->offset))[i],
                        it->submsg_desc, (char *)*(void **)it->pField + i * it->data_size);
            }
        }
        return;
    }
    switch (f->type) {
    case PROTOBUF_C_TYPE_STRING:
        cmp_str(path, *(char *const *)(m + f->offset),
                PB_ATYPE(it->type) == PB_ATYPE_POINTER ? *(char **)it->pField
                                                       : (char *)it->pData);
        break;
    case PROTOBUF_C_TYPE_BYTES: {
        const ProtobufCBinaryData *b = (const ProtobufCBinaryData *)(m + f->offset);
        const slot *s = ((pb_callback_t *)it->pData)->arg;
        size_t nn = s ? s->n_bytes : 0;
        if (b->len != nn)
            fail_msg("%s: protobuf-c has %zu bytes, nanopb %zu", path, b->len, nn);
        if (nn && memcmp(b->data, s->bytes, nn) != 0)
            fail_msg("%s: the bytes differ", path);
        break;
    }
    case PROTOBUF_C_TYPE_MESSAGE: {
        const ProtobufCMessage *psub = *(ProtobufCMessage *const *)(m + f->offset);
        bool nb_has = true;
        if (PB_HTYPE(it->type) == PB_HTYPE_OPTIONAL && it->pSize)
            nb_has = *(bool *)it->pSize;
        if ((psub != NULL) != nb_has)
            fail_msg("%s: present in %s only", path, psub ? "protobuf-c" : "nanopb");
        if (psub)
            cmp_msg(path, f->descriptor, psub, it->submsg_desc, it->pData);
        break;
    }
    default: {
        uint64_t p = pbc_uint(f, pm), n = nb_uint(it);
        if (p != n)
            fail_msg("%s: protobuf-c %llu != nanopb %llu", path, (unsigned long long)p,
                     (unsigned long long)n);
    }
    }
}

static void cmp_msg(const char *path, const ProtobufCMessageDescriptor *pd,
                    const ProtobufCMessage *pm, const pb_msgdesc_t *nd, void *nm)
{
    assert_ptr_equal(pm->descriptor, pd);
    for (unsigned i = 0; i < pd->n_fields; i++) {
        const ProtobufCFieldDescriptor *f = &pd->fields[i];
        pb_field_iter_t it = nb_field(nd, nm, f->id);
        char sub[300];
        snprintf(sub, sizeof sub, "%.200s.%.60s", path, f->name);
        if (in_oneof(f)) {
            uint32_t pcase = *(const uint32_t *)((const char *)pm + f->quantifier_offset);
            pb_size_t which = *(const pb_size_t *)it.pSize;
            if ((pcase == f->id) != (which == f->id))
                fail_msg("%s: oneof case protobuf-c %u, nanopb %u", sub, pcase, which);
            if (pcase != f->id)
                continue;
        }
        cmp_field(sub, f, pm, &it);
    }
}

/* ---- the two directions ---- */

/* nanopb encodes m; protobuf-c decodes it into the arena. */
static ProtobufCMessage *nb_to_pbc(srv_arena *a, const pair *p, const void *nm)
{
    size_t len = 0;
    if (!pb_get_encoded_size(&len, p->nb, nm))
        fail_msg("%s: nanopb cannot size it", p->name);
    uint8_t *buf = srv_arena_alloc(a, len ? len : 1);
    pb_ostream_t os = pb_ostream_from_buffer(buf, len);
    if (!pb_encode(&os, p->nb, nm))
        fail_msg("%s: nanopb encode: %s", p->name, PB_GET_ERROR(&os));
    assert_int_equal(os.bytes_written, len);
    ProtobufCAllocator alloc = srv_arena_allocator(a);
    ProtobufCMessage *pm = protobuf_c_message_unpack(p->pbc, &alloc, len, buf);
    if (!pm)
        fail_msg("%s: protobuf-c cannot decode nanopb's %zu bytes", p->name, len);
    return pm;
}

/* protobuf-c packs pm; nanopb decodes it into nm (armed, caller releases). */
static bool pbc_to_nb(srv_arena *a, const pair *p, const ProtobufCMessage *pm, void *nm,
                      char *why, size_t why_len)
{
    size_t len = protobuf_c_message_get_packed_size(pm);
    uint8_t *buf = srv_arena_alloc(a, len ? len : 1);
    assert_int_equal(protobuf_c_message_pack(pm, buf), len);
    memset(nm, 0, p->nb_size);
    arm(a, p->nb, nm);
    pb_istream_t is = pb_istream_from_buffer(buf, len);
    bool ok = pb_decode(&is, p->nb, nm);
    if (!ok)
        snprintf(why, why_len, "%s", PB_GET_ERROR(&is));
    return ok;
}

static void round_trip_nanopb_to_protobuf_c(void **state)
{
    const pair *p = *state;
    srv_arena *a = srv_arena_create();
    void *nm = srv_arena_alloc(a, p->nb_size);
    memset(nm, 0, p->nb_size);
    nb_fill(a, p->pbc, p->nb, nm, 0, p->oneof_tag);
    ProtobufCMessage *pm = nb_to_pbc(a, p, nm);
    cmp_msg(p->name, p->pbc, pm, p->nb, nm);
    srv_arena_destroy(a);
}

static void round_trip_protobuf_c_to_nanopb(void **state)
{
    const pair *p = *state;
    srv_arena *a = srv_arena_create();
    ProtobufCMessage *pm = pbc_new(a, p->pbc);
    pbc_fill(a, p->pbc, pm, p->nb, 0, p->oneof_tag);
    void *nm = srv_arena_alloc(a, p->nb_size);
    char why[128];
    if (!pbc_to_nb(a, p, pm, nm, why, sizeof why))
        fail_msg("%s: nanopb decode: %s", p->name, why);
    cmp_msg(p->name, p->pbc, pm, p->nb, nm);
    pb_release(p->nb, nm);
    srv_arena_destroy(a);
}

/* ---- whole-schema and boundary tests ---- */

static const pair *pair_of(const ProtobufCMessageDescriptor *d)
{
    for (size_t i = 0; i < N_PAIRS; i++)
        if (pairs[i].pbc == d)
            return &pairs[i];
    return NULL;
}

static void every_rpc_message_of_both_services_is_in_the_table(void **state)
{
    (void)state;
    const ProtobufCServiceDescriptor *services[] = {&cairn__v1__coordinator__descriptor,
                                                    &grpc__health__v1__health__descriptor};
    for (size_t s = 0; s < 2; s++)
        for (unsigned m = 0; m < services[s]->n_methods; m++) {
            const ProtobufCMethodDescriptor *md = &services[s]->methods[m];
            if (!pair_of(md->input) || !pair_of(md->output))
                fail_msg("%s/%s: %s or %s is not round-tripped", services[s]->name, md->name,
                         md->input->name, md->output->name);
        }
}

static void empty_messages_decode_as_defaults_both_ways(void **state)
{
    (void)state;
    for (size_t i = 0; i < N_PAIRS; i++) {
        const pair *p = &pairs[i];
        srv_arena *a = srv_arena_create();
        void *nm = srv_arena_alloc(a, p->nb_size);
        memset(nm, 0, p->nb_size);
        ProtobufCMessage *pm = nb_to_pbc(a, p, nm);
        cmp_msg(p->name, p->pbc, pm, p->nb, nm);
        assert_int_equal(protobuf_c_message_get_packed_size(pm), 0);
        char why[128];
        if (!pbc_to_nb(a, p, pm, nm, why, sizeof why))
            fail_msg("%s: nanopb decode: %s", p->name, why);
        cmp_msg(p->name, p->pbc, pm, p->nb, nm);
        pb_release(p->nb, nm);
        srv_arena_destroy(a);
    }
}

static void run_with_10000_workers_and_64_labels_decodes_in_nanopb(void **state)
{
    (void)state;
    srv_arena *a = srv_arena_create();
    Cairn__V1__Run run;
    cairn__v1__run__init(&run);
    run.run_id = "run-1";
    run.state = "completed";
    run.n_workers = 10000;
    run.workers = srv_arena_alloc(a, run.n_workers * sizeof *run.workers);
    for (size_t i = 0; i < run.n_workers; i++)
        run.workers[i] = gen_text(a, NULL, 128, (uint32_t)i);
    run.n_labels = 64;
    run.labels = srv_arena_alloc(a, run.n_labels * sizeof *run.labels);
    for (size_t i = 0; i < run.n_labels; i++) {
        run.labels[i] = srv_arena_alloc(a, sizeof *run.labels[i]);
        cairn__v1__run__labels_entry__init(run.labels[i]);
        run.labels[i]->key = gen_text(a, NULL, 128, (uint32_t)i);
        run.labels[i]->value = gen_text(a, NULL, 1024, (uint32_t)i);
    }
    run.labels[0]->value = "caf\xc3\xa9 \xe2\x98\x95"; /* UTF-8 survives */
    run.completed_workers = run.workers;
    run.n_completed_workers = 9999;
    cairn_v1_Run nm;
    const pair *p = pair_of(&cairn__v1__run__descriptor);
    char why[128];
    if (!pbc_to_nb(a, p, &run.base, &nm, why, sizeof why))
        fail_msg("nanopb decode: %s", why);
    cmp_msg("run", p->pbc, &run.base, p->nb, &nm);
    assert_int_equal(nm.workers_count, 10000);
    assert_string_equal(nm.labels[0].value, "caf\xc3\xa9 \xe2\x98\x95");
    pb_release(p->nb, &nm);
    srv_arena_destroy(a);
}

static void append_of_1000_events_and_a_1_mib_payload_reaches_protobuf_c(void **state)
{
    (void)state;
    srv_arena *a = srv_arena_create();
    cairn_v1_AppendEventsRequest nm = cairn_v1_AppendEventsRequest_init_zero;
    strcpy(nm.idempotency_key, "key-1");
    strcpy(nm.run_id, "run-1");
    slot *events = new_slot(a);
    events->n_items = 1000;
    events->items = srv_arena_alloc(a, 1000 * sizeof *events->items);
    for (size_t i = 0; i < 1000; i++) {
        cairn_v1_Event e = cairn_v1_Event_init_zero;
        snprintf(e.type, sizeof e.type, "step.%zu", i);
        slot *payload = new_slot(a);
        payload->n_bytes = i == 999 ? 1024 * 1024 : i;
        payload->bytes = gen_bytes(a, payload->n_bytes, (uint32_t)i);
        e.payload.funcs.encode = enc_bytes;
        e.payload.arg = payload;
        events->items[i] = e;
    }
    nm.events.funcs.encode = enc_events;
    nm.events.arg = events;
    const pair *p = pair_of(&cairn__v1__append_events_request__descriptor);
    Cairn__V1__AppendEventsRequest *pm = (Cairn__V1__AppendEventsRequest *)nb_to_pbc(a, p, &nm);
    cmp_msg("append", p->pbc, &pm->base, p->nb, &nm);
    assert_int_equal(pm->n_events, 1000);
    assert_int_equal(pm->events[999]->payload.len, 1024 * 1024);
    srv_arena_destroy(a);
}

static void one_mib_payloads_and_chunks_decode_in_nanopb(void **state)
{
    (void)state;
    srv_arena *a = srv_arena_create();
    const size_t mib = 1024 * 1024;

    Cairn__V1__Event ev;
    cairn__v1__event__init(&ev);
    ev.seq = 1;
    ev.type = "big";
    ev.payload.len = mib;
    ev.payload.data = gen_bytes(a, mib, 7);
    Cairn__V1__Event *evs[] = {&ev, &ev, &ev};
    Cairn__V1__ReadEventsResponse page;
    cairn__v1__read_events_response__init(&page);
    page.events = evs;
    page.n_events = 3;
    page.next_seq = 2;
    cairn_v1_ReadEventsResponse nm;
    const pair *p = pair_of(&cairn__v1__read_events_response__descriptor);
    char why[128];
    if (!pbc_to_nb(a, p, &page.base, &nm, why, sizeof why))
        fail_msg("nanopb decode: %s", why);
    cmp_msg("page", p->pbc, &page.base, p->nb, &nm);
    pb_release(p->nb, &nm);

    Cairn__V1__CheckpointChunk chunk;
    cairn__v1__checkpoint_chunk__init(&chunk);
    chunk.data = ev.payload;
    cairn_v1_CheckpointChunk nc;
    p = pair_of(&cairn__v1__checkpoint_chunk__descriptor);
    if (!pbc_to_nb(a, p, &chunk.base, &nc, why, sizeof why))
        fail_msg("nanopb decode: %s", why);
    cmp_msg("chunk", p->pbc, &chunk.base, p->nb, &nc);
    assert_false(nc.has_checkpoint);
    pb_release(p->nb, &nc);
    srv_arena_destroy(a);
}

/* What a nanopb reader of a CreateCheckpointRequest chunk gets: the bytes
 * through the callback, but which_part stays 0 (nanopb 0.4.7), so it must
 * tell a chunk by its callback having run. libcairn only sends these. */
static void oneof_callback_chunk_reaches_nanopb_through_the_callback_only(void **state)
{
    (void)state;
    srv_arena *a = srv_arena_create();
    Cairn__V1__CreateCheckpointRequest req;
    cairn__v1__create_checkpoint_request__init(&req);
    req.part_case = CAIRN__V1__CREATE_CHECKPOINT_REQUEST__PART_CHUNK;
    req.chunk.len = 5000;
    req.chunk.data = gen_bytes(a, req.chunk.len, 3);
    const pair *p = pair_of(&cairn__v1__create_checkpoint_request__descriptor);
    cairn_v1_CreateCheckpointRequest nm;
    char why[128];
    if (!pbc_to_nb(a, p, &req.base, &nm, why, sizeof why))
        fail_msg("nanopb decode: %s", why);
    const slot *s = nm.part.chunk.arg;
    assert_int_equal(s->n_bytes, 5000);
    assert_memory_equal(s->bytes, req.chunk.data, 5000);
    assert_int_equal(nm.which_part, 0);
    pb_release(p->nb, &nm);
    srv_arena_destroy(a);
}

/* A string longer than its nanopb max_size must fail to decode, never be
 * silently cut. */
static void nanopb_refuses_a_string_over_its_max_size(void **state)
{
    (void)state;
    srv_arena *a = srv_arena_create();
    Cairn__V1__Run run;
    cairn__v1__run__init(&run);
    run.run_id = "run-1";
    run.state = "sixteen-chars-xx"; /* state has max_size 16, NUL included */
    cairn_v1_Run nm;
    char why[128];
    const pair *p = pair_of(&cairn__v1__run__descriptor);
    assert_false(pbc_to_nb(a, p, &run.base, &nm, why, sizeof why));
    pb_release(p->nb, &nm);
    run.state = "fifteen-chars-x";
    assert_true(pbc_to_nb(a, p, &run.base, &nm, why, sizeof why));
    assert_string_equal(nm.state, "fifteen-chars-x");
    pb_release(p->nb, &nm);
    srv_arena_destroy(a);
}

static const struct CMUnitTest fixed[] = {
    cmocka_unit_test(every_rpc_message_of_both_services_is_in_the_table),
    cmocka_unit_test(empty_messages_decode_as_defaults_both_ways),
    cmocka_unit_test(run_with_10000_workers_and_64_labels_decodes_in_nanopb),
    cmocka_unit_test(append_of_1000_events_and_a_1_mib_payload_reaches_protobuf_c),
    cmocka_unit_test(one_mib_payloads_and_chunks_decode_in_nanopb),
    cmocka_unit_test(nanopb_refuses_a_string_over_its_max_size),
    cmocka_unit_test(oneof_callback_chunk_reaches_nanopb_through_the_callback_only),
};
#define N_FIXED (sizeof fixed / sizeof fixed[0])

/* The fixed tests, then two per message, named after it:
 * <message>_round_trips_nanopb_to_protobuf_c and ..._protobuf_c_to_nanopb. */
int main(void)
{
    static struct CMUnitTest tests[N_FIXED + 2 * N_PAIRS];
    static char names[2 * N_PAIRS][96];
    size_t n = 0;
    for (size_t i = 0; i < N_FIXED; i++)
        tests[n++] = fixed[i];
    for (size_t i = 0; i < N_PAIRS; i++) {
        char *to_pbc = names[2 * i], *to_nb = names[2 * i + 1];
        snprintf(to_pbc, sizeof names[0], "%s_round_trips_nanopb_to_protobuf_c", pairs[i].name);
        snprintf(to_nb, sizeof names[0], "%s_round_trips_protobuf_c_to_nanopb", pairs[i].name);
        tests[n++] = (struct CMUnitTest){to_pbc, round_trip_nanopb_to_protobuf_c, NULL, NULL,
                                         (void *)&pairs[i]};
        if (!pairs[i].no_nb_decode)
            tests[n++] = (struct CMUnitTest){to_nb, round_trip_protobuf_c_to_nanopb, NULL, NULL,
                                             (void *)&pairs[i]};
    }
    return _cmocka_run_group_tests("codec", tests, n, NULL, NULL);
}
