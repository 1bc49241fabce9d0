/* server/wire.c: strict UTF-8, strict decoding of every string field
 * (nested ones too), request fingerprints and the replay marker. */
#include "base/arena.h"
#include "cairn/v1/coordinator.pb-c.h"
#include "base/pbc.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

/* ---- helpers ---- */

static int setup_arena(void **state)
{
    *state = srv_arena_create();
    return *state ? 0 : -1;
}

static int teardown_arena(void **state)
{
    srv_arena_destroy(*state);
    return 0;
}

static int utf8(const char *s, size_t n)
{
    return srv_utf8_valid((const uint8_t *)s, n);
}
#define UTF8(lit) utf8((lit), sizeof(lit) - 1)

/* A hand-made protobuf encoding, so tests can put bytes into string fields
 * that protobuf-c's packer (which uses strlen) never would. */
typedef struct wbuf {
    uint8_t b[4096];
    size_t n;
} wbuf;

static void put_varint(wbuf *w, uint64_t v)
{
    while (v >= 0x80) {
        w->b[w->n++] = (uint8_t)(v | 0x80);
        v >>= 7;
    }
    w->b[w->n++] = (uint8_t)v;
}

static void put_len(wbuf *w, uint32_t field, const void *p, size_t n)
{
    put_varint(w, (uint64_t)field << 3 | 2);
    put_varint(w, n);
    memcpy(w->b + w->n, p, n);
    w->n += n;
}
#define PUT_STR(w, field, lit) put_len((w), (field), (lit), sizeof(lit) - 1)

static void put_msg(wbuf *w, uint32_t field, const wbuf *sub)
{
    put_len(w, field, sub->b, sub->n);
}

static void put_uint(wbuf *w, uint32_t field, uint64_t v)
{
    put_varint(w, (uint64_t)field << 3);
    put_varint(w, v);
}

static srv_code unpack(srv_arena *a, const ProtobufCMessageDescriptor *d, const wbuf *w,
                       ProtobufCMessage **out, srv_error *err)
{
    memset(err, 0, sizeof *err);
    return srv_unpack(d, a, w->b, w->n, out, err);
}

static void assert_rejected_naming(srv_code rc, const srv_error *err, const char *field)
{
    if (rc != SRV_INVALID_ARGUMENT)
        fail_msg("expected INVALID_ARGUMENT, got %d: %s", rc, err->msg);
    char want[128];
    snprintf(want, sizeof want, "%s: ", field);
    if (strncmp(err->msg, want, strlen(want)) != 0)
        fail_msg("message should start with \"%s\": %s", want, err->msg);
    assert_non_null(strstr(err->msg, "UTF-8"));
    assert_non_null(strstr(err->msg, "NUL"));
}

/* An AppendEventsRequest: run "run-1", one valid event, then one event
 * whose field `field` holds the n bytes s. */
static void append_with_event_field(wbuf *w, uint32_t field, const char *s, size_t n)
{
    memset(w, 0, sizeof *w);
    PUT_STR(w, 1, "key-1");
    PUT_STR(w, 2, "run-1");
    wbuf ok = {0}, bad = {0};
    PUT_STR(&ok, 3, "step.done");
    put_msg(w, 3, &ok);
    PUT_STR(&bad, 3, "step.done");
    put_len(&bad, field, s, n);
    put_msg(w, 3, &bad);
}

/* ---- UTF-8 ---- */

static void utf8_accepts_empty_and_ascii(void **state)
{
    (void)state;
    assert_true(utf8("", 0));
    assert_true(UTF8("run-1 hello ~!"));
    char all[127];
    for (int c = 1; c < 128; c++)
        all[c - 1] = (char)c;
    assert_true(utf8(all, sizeof all));
}

static void utf8_accepts_2_3_and_4_byte_sequences_up_to_10ffff(void **state)
{
    (void)state;
    assert_true(UTF8("caf\xc3\xa9"));           /* é */
    assert_true(UTF8("\xc2\x80"));              /* U+0080, smallest 2-byte */
    assert_true(UTF8("\xdf\xbf"));              /* U+07FF */
    assert_true(UTF8("\xe0\xa0\x80"));          /* U+0800, smallest 3-byte */
    assert_true(UTF8("\xe2\x82\xac"));          /* € */
    assert_true(UTF8("\xed\x9f\xbf"));          /* U+D7FF, just below surrogates */
    assert_true(UTF8("\xee\x80\x80"));          /* U+E000, just above */
    assert_true(UTF8("\xef\xbf\xbf"));          /* U+FFFF */
    assert_true(UTF8("\xf0\x90\x80\x80"));      /* U+10000, smallest 4-byte */
    assert_true(UTF8("\xf0\x9f\x98\x80"));      /* 😀 */
    assert_true(UTF8("\xf4\x8f\xbf\xbf"));      /* U+10FFFF */
    assert_true(UTF8("a\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80z"));
}

static void utf8_rejects_overlong_forms(void **state)
{
    (void)state;
    assert_false(UTF8("\xc0\x80"));             /* NUL, 2 bytes */
    assert_false(UTF8("\xc0\xaf"));             /* '/', 2 bytes */
    assert_false(UTF8("\xc1\xbf"));
    assert_false(UTF8("\xe0\x80\xaf"));         /* '/', 3 bytes */
    assert_false(UTF8("\xe0\x9f\xbf"));         /* U+07FF, 3 bytes */
    assert_false(UTF8("\xf0\x80\x80\xaf"));     /* '/', 4 bytes */
    assert_false(UTF8("\xf0\x8f\xbf\xbf"));     /* U+FFFF, 4 bytes */
}

static void utf8_rejects_surrogates(void **state)
{
    (void)state;
    assert_false(UTF8("\xed\xa0\x80"));         /* U+D800 */
    assert_false(UTF8("\xed\xbf\xbf"));         /* U+DFFF */
    assert_false(UTF8("\xed\xa0\xbd\xed\xb8\x80")); /* CESU-8 pair */
}

static void utf8_rejects_values_past_10ffff_and_invalid_lead_bytes(void **state)
{
    (void)state;
    assert_false(UTF8("\xf4\x90\x80\x80"));     /* U+110000 */
    assert_false(UTF8("\xf5\x80\x80\x80"));
    assert_false(UTF8("\xf8\x88\x80\x80\x80"));
    assert_false(UTF8("\xfe"));
    assert_false(UTF8("\xff"));
    assert_false(UTF8("\x80"));                 /* lone continuation */
    assert_false(UTF8("a\xbf"));
}

static void utf8_rejects_truncated_and_interrupted_sequences(void **state)
{
    (void)state;
    assert_false(UTF8("\xc3"));
    assert_false(UTF8("\xe2\x82"));
    assert_false(UTF8("\xf0\x9f\x98"));
    assert_false(utf8("caf\xc3\xa9", 4));       /* é cut by the length */
    assert_false(UTF8("\xe2\x28\xa1"));         /* ASCII where a continuation belongs */
    assert_false(UTF8("\xc3\xc3\xa9"));
}

static void utf8_rejects_nul_anywhere(void **state)
{
    (void)state;
    assert_false(utf8("\0", 1));
    assert_false(utf8("a\0b", 3));
    assert_false(utf8("ab\0", 3));
    assert_true(utf8("ab\0", 2)); /* only the n bytes count */
}

/* ---- strict decoding ---- */

static void unpack_rejects_nul_in_a_top_level_string_naming_it(void **state)
{
    wbuf w = {0};
    PUT_STR(&w, 1, "key-1");
    PUT_STR(&w, 2, "run\0-1");
    ProtobufCMessage *m = NULL;
    srv_error err;
    assert_rejected_naming(unpack(*state, &cairn__v1__append_events_request__descriptor, &w, &m,
                                  &err),
                           &err, "run_id");
}

static void unpack_rejects_nul_in_nested_event_type_naming_the_field(void **state)
{
    wbuf w;
    append_with_event_field(&w, 3, "step\0.done", 10);
    ProtobufCMessage *m = NULL;
    srv_error err;
    assert_rejected_naming(unpack(*state, &cairn__v1__append_events_request__descriptor, &w, &m,
                                  &err),
                           &err, "events[1].type");
}

static void unpack_rejects_invalid_utf8_in_nested_fields_naming_them(void **state)
{
    wbuf w;
    ProtobufCMessage *m = NULL;
    srv_error err;
    append_with_event_field(&w, 3, "step\xc0\xaf", 6);
    assert_rejected_naming(unpack(*state, &cairn__v1__append_events_request__descriptor, &w, &m,
                                  &err),
                           &err, "events[1].type");
    append_with_event_field(&w, 4, "w\xed\xa0\x80", 4);
    assert_rejected_naming(unpack(*state, &cairn__v1__append_events_request__descriptor, &w, &m,
                                  &err),
                           &err, "events[1].worker_id");
}

static void unpack_rejects_bad_strings_in_map_entries_and_repeated_strings(void **state)
{
    ProtobufCMessage *m = NULL;
    srv_error err;
    wbuf w = {0}, entry = {0};
    PUT_STR(&w, 2, "run-1");
    PUT_STR(&w, 3, "w1");
    PUT_STR(&entry, 1, "zone");
    PUT_STR(&entry, 2, "eu\xff");
    put_msg(&w, 4, &entry);
    assert_rejected_naming(unpack(*state, &cairn__v1__create_run_request__descriptor, &w, &m,
                                  &err),
                           &err, "labels[0].value");

    memset(&w, 0, sizeof w);
    memset(&entry, 0, sizeof entry);
    PUT_STR(&w, 2, "run-1");
    PUT_STR(&entry, 1, "zo\0ne");
    put_msg(&w, 4, &entry);
    assert_rejected_naming(unpack(*state, &cairn__v1__create_run_request__descriptor, &w, &m,
                                  &err),
                           &err, "labels[0].key");

    memset(&w, 0, sizeof w);
    PUT_STR(&w, 2, "run-1");
    PUT_STR(&w, 3, "w1");
    PUT_STR(&w, 3, "w\0002");
    assert_rejected_naming(unpack(*state, &cairn__v1__create_run_request__descriptor, &w, &m,
                                  &err),
                           &err, "workers[1]");
}

static void unpack_rejects_bad_strings_inside_a_oneof_message(void **state)
{
    wbuf w = {0}, header = {0};
    PUT_STR(&header, 2, "run-1");
    PUT_STR(&header, 3, "sta\0te");
    put_msg(&w, 1, &header);
    ProtobufCMessage *m = NULL;
    srv_error err;
    assert_rejected_naming(unpack(*state, &cairn__v1__create_checkpoint_request__descriptor, &w,
                                  &m, &err),
                           &err, "header.run_state");
}

static void unpack_accepts_any_bytes_in_bytes_fields(void **state)
{
    wbuf w;
    static const char payload[] = "\0\xff\xc0\xaf\xed\xa0\x80";
    append_with_event_field(&w, 5, payload, sizeof payload - 1);
    ProtobufCMessage *m = NULL;
    srv_error err;
    assert_int_equal(unpack(*state, &cairn__v1__append_events_request__descriptor, &w, &m, &err),
                     SRV_OK);
    Cairn__V1__AppendEventsRequest *r = (Cairn__V1__AppendEventsRequest *)m;
    assert_int_equal(r->n_events, 2);
    assert_int_equal(r->events[1]->payload.len, sizeof payload - 1);
    assert_memory_equal(r->events[1]->payload.data, payload, sizeof payload - 1);
}

static void unpack_accepts_valid_utf8_and_decodes_every_field(void **state)
{
    wbuf w;
    append_with_event_field(&w, 4, "w-\xc3\xa9\xf0\x9f\x98\x80", 8);
    put_uint(&w, 4, 7);
    put_uint(&w, 5, 1ull << 40);
    ProtobufCMessage *m = NULL;
    srv_error err;
    assert_int_equal(unpack(*state, &cairn__v1__append_events_request__descriptor, &w, &m, &err),
                     SRV_OK);
    Cairn__V1__AppendEventsRequest *r = (Cairn__V1__AppendEventsRequest *)m;
    assert_string_equal(r->idempotency_key, "key-1");
    assert_string_equal(r->run_id, "run-1");
    assert_int_equal(r->n_events, 2);
    assert_string_equal(r->events[0]->type, "step.done");
    assert_string_equal(r->events[1]->worker_id, "w-\xc3\xa9\xf0\x9f\x98\x80");
    assert_int_equal(r->expected_next_seq, 7);
    assert_int_equal(r->fencing_token, 1ull << 40);
}

static void unpack_rejects_malformed_input_naming_the_message_type(void **state)
{
    wbuf w = {0};
    PUT_STR(&w, 2, "run-1");
    w.b[w.n++] = 0x1a; /* field 3, length-delimited ... */
    w.b[w.n++] = 0x7f; /* ... 127 bytes that are not there */
    ProtobufCMessage *m = NULL;
    srv_error err;
    assert_int_equal(unpack(*state, &cairn__v1__append_events_request__descriptor, &w, &m, &err),
                     SRV_INVALID_ARGUMENT);
    assert_non_null(strstr(err.msg, "cairn.v1.AppendEventsRequest"));
}

/* Unpacks w as an AppendEventsRequest; the call must fail with
 * INVALID_ARGUMENT and a message starting with field and holding what. */
static void assert_malformed(void **state, const wbuf *w, const char *field, const char *what)
{
    ProtobufCMessage *m = NULL;
    srv_error err;
    srv_code rc = unpack(*state, &cairn__v1__append_events_request__descriptor, w, &m, &err);
    if (rc != SRV_INVALID_ARGUMENT)
        fail_msg("expected INVALID_ARGUMENT, got %d: %s", rc, err.msg);
    char want[128];
    snprintf(want, sizeof want, "%s: ", field);
    if (strncmp(err.msg, want, strlen(want)) != 0)
        fail_msg("message should start with \"%s\": %s", want, err.msg);
    if (!strstr(err.msg, what))
        fail_msg("message should say \"%s\": %s", what, err.msg);
}

static void unpack_rejects_a_wrong_wire_type_naming_the_field(void **state)
{
    wbuf w = {0};
    put_uint(&w, 2, 7); /* run_id as a varint */
    assert_malformed(state, &w, "run_id", "wire type 0 (varint)");
    memset(&w, 0, sizeof w);
    PUT_STR(&w, 2, "run-1");
    PUT_STR(&w, 4, "7"); /* expected_next_seq as a string */
    assert_malformed(state, &w, "expected_next_seq", "wire type 2 (length-delimited)");
    memset(&w, 0, sizeof w);
    wbuf ev = {0};
    put_uint(&ev, 3, 1); /* events[0].type as a varint */
    put_msg(&w, 3, &ev);
    assert_malformed(state, &w, "events[0].type", "needs wire type 2");
}

static void unpack_rejects_cut_short_fields_naming_them(void **state)
{
    wbuf w = {0};
    PUT_STR(&w, 2, "run-1");
    put_varint(&w, 2 << 3 | 2);
    put_varint(&w, 50); /* 50 bytes that are not there */
    w.b[w.n++] = 'x';
    assert_malformed(state, &w, "run_id", "declares 50 bytes but only 1 remain");
    memset(&w, 0, sizeof w);
    put_varint(&w, 4 << 3);
    w.b[w.n++] = 0x80; /* a varint that never ends */
    assert_malformed(state, &w, "expected_next_seq", "cut short");
    memset(&w, 0, sizeof w);
    w.b[w.n++] = 0x80; /* a tag that never ends */
    assert_malformed(state, &w, "request", "field tag");
}

static void unpack_rejects_field_zero_bad_wire_types_and_bad_unknown_fields(void **state)
{
    wbuf w = {0};
    put_uint(&w, 0, 1);
    assert_malformed(state, &w, "request", "field number 0");
    memset(&w, 0, sizeof w);
    put_varint(&w, 99 << 3 | 7);
    assert_malformed(state, &w, "request: unknown field 99", "7 (not a wire type)");
    memset(&w, 0, sizeof w);
    put_varint(&w, 99 << 3 | 2);
    put_varint(&w, 9);
    assert_malformed(state, &w, "request: unknown field 99", "declares 9 bytes");
}

static void unpack_rejects_32_bit_fields_out_of_range_and_accepts_well_formed_unknowns(
    void **state)
{
    ProtobufCMessage *m = NULL;
    srv_error err;
    wbuf w = {0};
    put_uint(&w, 1, UINT64_MAX); /* ListRunsRequest.page_size = int32 -1 */
    assert_int_equal(unpack(*state, &cairn__v1__list_runs_request__descriptor, &w, &m, &err),
                     SRV_INVALID_ARGUMENT);
    assert_non_null(strstr(err.msg, "page_size: 18446744073709551615 does not fit"));
    memset(&w, 0, sizeof w);
    put_uint(&w, 1, UINT32_MAX);
    put_uint(&w, 99, 5);        /* unknown varint */
    PUT_STR(&w, 100, "\xff\0"); /* unknown bytes: not checked as a string */
    assert_int_equal(unpack(*state, &cairn__v1__list_runs_request__descriptor, &w, &m, &err),
                     SRV_OK);
    assert_int_equal(((Cairn__V1__ListRunsRequest *)m)->page_size, UINT32_MAX);
}

/* ---- fingerprints ---- */

typedef struct append_fixture {
    Cairn__V1__AppendEventsRequest req;
    Cairn__V1__Event ev[2];
    Cairn__V1__Event *evp[2];
    uint8_t payload[2][4];
} append_fixture;

static void append_fixture_init(append_fixture *f, const char *key)
{
    memset(f, 0, sizeof *f);
    cairn__v1__append_events_request__init(&f->req);
    f->req.idempotency_key = (char *)key;
    f->req.run_id = "run-1";
    f->req.expected_next_seq = 3;
    for (int i = 0; i < 2; i++) {
        cairn__v1__event__init(&f->ev[i]);
        f->ev[i].type = i ? "b" : "a";
        f->ev[i].worker_id = "w1";
        memcpy(f->payload[i], i ? "\1\2\3\4" : "\0\0\0\1", 4);
        f->ev[i].payload.data = f->payload[i];
        f->ev[i].payload.len = 4;
        f->evp[i] = &f->ev[i];
    }
    f->req.events = f->evp;
    f->req.n_events = 2;
}

static void fingerprint(srv_arena *a, ProtobufCMessage *m, uint8_t out[32])
{
    srv_error err;
    if (srv_fingerprint(a, m, out, &err) != SRV_OK)
        fail_msg("fingerprint failed: %s", err.msg);
}

static void fingerprint_ignores_only_the_idempotency_key(void **state)
{
    append_fixture x, y;
    append_fixture_init(&x, "key-1");
    append_fixture_init(&y, "another-key-entirely");
    uint8_t fx[32], fy[32];
    fingerprint(*state, &x.req.base, fx);
    fingerprint(*state, &y.req.base, fy);
    assert_memory_equal(fx, fy, 32);
    y.req.idempotency_key = "";
    fingerprint(*state, &y.req.base, fy);
    assert_memory_equal(fx, fy, 32);
}

static void fingerprint_differs_when_any_other_field_differs(void **state)
{
    append_fixture base;
    append_fixture_init(&base, "k");
    uint8_t want[32], got[32];
    fingerprint(*state, &base.req.base, want);
    for (int change = 0; change < 10; change++) {
        append_fixture f;
        append_fixture_init(&f, "k");
        switch (change) {
        case 0: f.req.run_id = "run-2"; break;
        case 1: f.req.expected_next_seq = 0; break;
        case 2: f.req.fencing_token = 1; break;
        case 3: f.ev[1].type = "c"; break;
        case 4: f.ev[0].worker_id = ""; break;
        case 5: f.payload[1][3] = 5; break;
        case 6: f.ev[0].payload.len = 3; break;
        case 7: f.req.n_events = 1; break;
        case 8: f.evp[0] = &f.ev[1]; f.evp[1] = &f.ev[0]; break; /* order */
        case 9: f.ev[1].payload.len = 0; break;
        }
        fingerprint(*state, &f.req.base, got);
        if (memcmp(want, got, 32) == 0)
            fail_msg("change %d left the fingerprint unchanged", change);
    }
}

static void fingerprint_of_create_run_covers_workers_and_labels(void **state)
{
    char *w1[] = {"a", "b"}, *w2[] = {"b", "a"};
    Cairn__V1__CreateRunRequest__LabelsEntry l1, l2;
    cairn__v1__create_run_request__labels_entry__init(&l1);
    l1.key = "env";
    l1.value = "prod";
    l2 = l1;
    l2.value = "dev";
    Cairn__V1__CreateRunRequest__LabelsEntry *lp1[] = {&l1}, *lp2[] = {&l2};
    Cairn__V1__CreateRunRequest r;
    cairn__v1__create_run_request__init(&r);
    r.idempotency_key = "k1";
    r.run_id = "run-1";
    r.workers = w1;
    r.n_workers = 2;
    r.labels = lp1;
    r.n_labels = 1;
    uint8_t f0[32], f1[32];
    fingerprint(*state, &r.base, f0);
    r.idempotency_key = "k2";
    fingerprint(*state, &r.base, f1);
    assert_memory_equal(f0, f1, 32);
    r.workers = w2;
    fingerprint(*state, &r.base, f1);
    assert_memory_not_equal(f0, f1, 32);
    r.workers = w1;
    r.labels = lp2;
    fingerprint(*state, &r.base, f1);
    assert_memory_not_equal(f0, f1, 32);
    r.n_labels = 0;
    fingerprint(*state, &r.base, f1);
    assert_memory_not_equal(f0, f1, 32);
}

static void fingerprint_leaves_the_key_and_unknown_fields_intact(void **state)
{
    wbuf w = {0};
    PUT_STR(&w, 1, "key-1");
    PUT_STR(&w, 2, "run-1");
    PUT_STR(&w, 99, "from a newer client");
    ProtobufCMessage *m;
    srv_error err;
    assert_int_equal(unpack(*state, &cairn__v1__append_events_request__descriptor, &w, &m, &err),
                     SRV_OK);
    Cairn__V1__AppendEventsRequest *r = (Cairn__V1__AppendEventsRequest *)m;
    char *key = r->idempotency_key;
    assert_int_equal(m->n_unknown_fields, 1);
    uint8_t f[32];
    fingerprint(*state, m, f);
    assert_ptr_equal(r->idempotency_key, key);
    assert_string_equal(r->idempotency_key, "key-1");
    assert_int_equal(m->n_unknown_fields, 1);
}

static void fingerprint_ignores_unknown_fields(void **state)
{
    wbuf plain = {0}, extra = {0};
    PUT_STR(&plain, 1, "key-1");
    PUT_STR(&plain, 2, "run-1");
    PUT_STR(&extra, 1, "key-2");
    PUT_STR(&extra, 2, "run-1");
    PUT_STR(&extra, 99, "from a newer client");
    ProtobufCMessage *a, *b;
    srv_error err;
    assert_int_equal(unpack(*state, &cairn__v1__append_events_request__descriptor, &plain, &a,
                            &err),
                     SRV_OK);
    assert_int_equal(unpack(*state, &cairn__v1__append_events_request__descriptor, &extra, &b,
                            &err),
                     SRV_OK);
    uint8_t fa[32], fb[32];
    fingerprint(*state, a, fa);
    fingerprint(*state, b, fb);
    assert_memory_equal(fa, fb, 32);
}

static void fingerprint_ignores_unknown_fields_of_nested_messages_and_restores_them(
    void **state)
{
    wbuf plain = {0}, extra = {0}, ev = {0}, ev_extra = {0}, entry = {0};
    PUT_STR(&ev, 3, "step");
    PUT_STR(&ev_extra, 3, "step");
    PUT_STR(&ev_extra, 99, "inside an event");
    PUT_STR(&plain, 2, "run-1");
    put_msg(&plain, 3, &ev);
    PUT_STR(&extra, 2, "run-1");
    put_msg(&extra, 3, &ev_extra);
    ProtobufCMessage *a, *b;
    srv_error err;
    assert_int_equal(unpack(*state, &cairn__v1__append_events_request__descriptor, &plain, &a,
                            &err),
                     SRV_OK);
    assert_int_equal(unpack(*state, &cairn__v1__append_events_request__descriptor, &extra, &b,
                            &err),
                     SRV_OK);
    uint8_t fa[32], fb[32];
    fingerprint(*state, a, fa);
    fingerprint(*state, b, fb);
    assert_memory_equal(fa, fb, 32);
    assert_int_equal(((Cairn__V1__AppendEventsRequest *)b)->events[0]->base.n_unknown_fields, 1);

    /* A map entry's unknown field, and a oneof member's. */
    memset(&plain, 0, sizeof plain);
    memset(&extra, 0, sizeof extra);
    PUT_STR(&entry, 1, "k");
    put_msg(&plain, 4, &entry);
    PUT_STR(&entry, 77, "x");
    put_msg(&extra, 4, &entry);
    assert_int_equal(unpack(*state, &cairn__v1__create_run_request__descriptor, &plain, &a, &err),
                     SRV_OK);
    assert_int_equal(unpack(*state, &cairn__v1__create_run_request__descriptor, &extra, &b, &err),
                     SRV_OK);
    fingerprint(*state, a, fa);
    fingerprint(*state, b, fb);
    assert_memory_equal(fa, fb, 32);
}

static void fingerprint_works_for_a_message_without_a_key(void **state)
{
    Cairn__V1__ReadEventsRequest r;
    cairn__v1__read_events_request__init(&r);
    r.run_id = "run-1";
    uint8_t f0[32], f1[32];
    fingerprint(*state, &r.base, f0);
    fingerprint(*state, &r.base, f1);
    assert_memory_equal(f0, f1, 32);
    r.from_seq = 2;
    fingerprint(*state, &r.base, f1);
    assert_memory_not_equal(f0, f1, 32);
}

/* ---- replay marker ---- */

/* Packs m, appends the replay suffix, decodes: replayed must be true and,
 * with replayed cleared again, the message must pack to the same bytes. */
static void check_replay(srv_arena *a, ProtobufCMessage *m, size_t replayed_offset)
{
    const ProtobufCMessageDescriptor *d = m->descriptor;
    uint8_t *packed;
    size_t len;
    srv_error err;
    assert_int_equal(srv_pack(a, m, &packed, &len, &err), SRV_OK);
    uint8_t suffix[8];
    size_t n = srv_replayed_suffix(d, suffix);
    assert_true(n >= 2 && n <= 8);
    uint8_t *buf = srv_arena_alloc(a, len + n);
    memcpy(buf, packed, len);
    memcpy(buf + len, suffix, n);

    ProtobufCMessage *back;
    assert_int_equal(srv_unpack(d, a, buf, len + n, &back, &err), SRV_OK);
    protobuf_c_boolean *replayed = (protobuf_c_boolean *)((char *)back + replayed_offset);
    if (!*replayed)
        fail_msg("%s: replayed is false after the suffix", d->name);
    *replayed = 0;
    uint8_t *again;
    size_t again_len;
    assert_int_equal(srv_pack(a, back, &again, &again_len, &err), SRV_OK);
    assert_int_equal(again_len, len);
    assert_memory_equal(again, packed, len);
}

static void replayed_suffix_marks_every_response_type_and_changes_nothing_else(void **state)
{
    srv_arena *a = *state;
    char *workers[] = {"w1", "w2", "w3"}, *done[] = {"w2"};
    Cairn__V1__Run__LabelsEntry le;
    cairn__v1__run__labels_entry__init(&le);
    le.key = "env";
    le.value = "prod";
    Cairn__V1__Run__LabelsEntry *lp[] = {&le};

    Cairn__V1__AppendEventsResponse ar;
    cairn__v1__append_events_response__init(&ar);
    ar.first_seq = 5;
    ar.last_seq = 9;
    ar.events_since_checkpoint = 4;
    check_replay(a, &ar.base, offsetof(Cairn__V1__AppendEventsResponse, replayed));

    Cairn__V1__Run run;
    cairn__v1__run__init(&run);
    run.run_id = "run-1";
    run.workers = workers;
    run.n_workers = 3;
    run.labels = lp;
    run.n_labels = 1;
    run.state = "running";
    run.completed_workers = done;
    run.n_completed_workers = 1;
    run.next_seq = 10;
    run.latest_checkpoint_id = "20260128_101530_123456";
    run.created_at = "2026-01-28T10:15:30.123456Z";
    check_replay(a, &run.base, offsetof(Cairn__V1__Run, replayed));

    Cairn__V1__Lease lease;
    cairn__v1__lease__init(&lease);
    lease.lease_id = "l1";
    lease.run_id = "run-1";
    lease.worker_id = "w1";
    lease.holder = "node-a";
    lease.fencing_token = 77;
    lease.expires_at = "2026-01-28T10:15:30.123456Z";
    check_replay(a, &lease.base, offsetof(Cairn__V1__Lease, replayed));

    Cairn__V1__ReleaseWorkerResponse rel;
    cairn__v1__release_worker_response__init(&rel);
    check_replay(a, &rel.base, offsetof(Cairn__V1__ReleaseWorkerResponse, replayed));

    Cairn__V1__CompleteWorkerResponse cw;
    cairn__v1__complete_worker_response__init(&cw);
    cw.seq = 12;
    cw.run_state = "completed";
    check_replay(a, &cw.base, offsetof(Cairn__V1__CompleteWorkerResponse, replayed));

    Cairn__V1__Checkpoint cp;
    cairn__v1__checkpoint__init(&cp);
    cp.checkpoint_id = "20260128_101530_123456";
    cp.run_id = "run-1";
    cp.created_at = "2026-01-28T10:15:30.123456Z";
    cp.run_state = "{\"x\":1}";
    cp.completed_workers = done;
    cp.n_completed_workers = 1;
    cp.events_count = 8;
    cp.snapshot_size = 1u << 20;
    cp.snapshot_sha256 = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
    check_replay(a, &cp.base, offsetof(Cairn__V1__Checkpoint, replayed));

    Cairn__V1__CleanupCheckpointsResponse cc;
    cairn__v1__cleanup_checkpoints_response__init(&cc);
    cc.deleted = 3;
    cc.deleted_ids = workers;
    cc.n_deleted_ids = 3;
    check_replay(a, &cc.base, offsetof(Cairn__V1__CleanupCheckpointsResponse, replayed));
}

static void replayed_suffix_is_empty_for_types_without_replayed(void **state)
{
    (void)state;
    uint8_t out[8];
    assert_int_equal(srv_replayed_suffix(&cairn__v1__list_runs_response__descriptor, out), 0);
    assert_int_equal(srv_replayed_suffix(&cairn__v1__read_events_response__descriptor, out), 0);
    assert_int_equal(srv_replayed_suffix(&cairn__v1__event__descriptor, out), 0);
    assert_int_equal(srv_replayed_suffix(&cairn__v1__resume_result__descriptor, out), 0);
}

static void replayed_suffix_is_the_varint_true_of_the_field(void **state)
{
    (void)state;
    uint8_t out[8];
    /* Run.replayed is field 9: key (9 << 3 | 0) = 0x48, value 1 */
    assert_int_equal(srv_replayed_suffix(&cairn__v1__run__descriptor, out), 2);
    assert_int_equal(out[0], 0x48);
    assert_int_equal(out[1], 1);
    /* ReleaseWorkerResponse.replayed is field 1 */
    assert_int_equal(srv_replayed_suffix(&cairn__v1__release_worker_response__descriptor, out), 2);
    assert_int_equal(out[0], 0x08);
    assert_int_equal(out[1], 1);
}

static void msg_string_returns_top_level_strings_or_empty(void **state)
{
    (void)state;
    append_fixture f;
    append_fixture_init(&f, "key-1");
    assert_string_equal(srv_msg_string(&f.req.base, "run_id"), "run-1");
    assert_string_equal(srv_msg_string(&f.req.base, "idempotency_key"), "key-1");
    assert_string_equal(srv_msg_string(&f.req.base, "no_such_field"), "");
    assert_string_equal(srv_msg_string(&f.req.base, "expected_next_seq"), ""); /* not a string */
    char *w[] = {"w1"};
    Cairn__V1__CreateRunRequest r;
    cairn__v1__create_run_request__init(&r);
    r.workers = w;
    r.n_workers = 1;
    assert_string_equal(srv_msg_string(&r.base, "workers"), ""); /* repeated */
}

#define T(f) cmocka_unit_test_setup_teardown(f, setup_arena, teardown_arena)

static void code_names_come_from_the_one_list(void **state)
{
    (void)state;
    assert_string_equal(srv_code_name(SRV_OK), "OK");
    assert_string_equal(srv_code_name(SRV_NOT_FOUND), "NOT_FOUND");
    assert_string_equal(srv_code_name(SRV_UNAUTHENTICATED), "UNAUTHENTICATED");
    assert_int_equal(SRV_UNAVAILABLE, 14);
    assert_string_equal(srv_code_name((srv_code)17), "UNKNOWN");
    assert_string_equal(srv_code_name((srv_code)-1), "UNKNOWN");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        T(code_names_come_from_the_one_list),
        T(utf8_accepts_empty_and_ascii),
        T(utf8_accepts_2_3_and_4_byte_sequences_up_to_10ffff),
        T(utf8_rejects_overlong_forms),
        T(utf8_rejects_surrogates),
        T(utf8_rejects_values_past_10ffff_and_invalid_lead_bytes),
        T(utf8_rejects_truncated_and_interrupted_sequences),
        T(utf8_rejects_nul_anywhere),
        T(unpack_rejects_nul_in_a_top_level_string_naming_it),
        T(unpack_rejects_nul_in_nested_event_type_naming_the_field),
        T(unpack_rejects_invalid_utf8_in_nested_fields_naming_them),
        T(unpack_rejects_bad_strings_in_map_entries_and_repeated_strings),
        T(unpack_rejects_bad_strings_inside_a_oneof_message),
        T(unpack_accepts_any_bytes_in_bytes_fields),
        T(unpack_accepts_valid_utf8_and_decodes_every_field),
        T(unpack_rejects_malformed_input_naming_the_message_type),
        T(unpack_rejects_a_wrong_wire_type_naming_the_field),
        T(unpack_rejects_cut_short_fields_naming_them),
        T(unpack_rejects_field_zero_bad_wire_types_and_bad_unknown_fields),
        T(unpack_rejects_32_bit_fields_out_of_range_and_accepts_well_formed_unknowns),
        T(fingerprint_ignores_only_the_idempotency_key),
        T(fingerprint_differs_when_any_other_field_differs),
        T(fingerprint_of_create_run_covers_workers_and_labels),
        T(fingerprint_leaves_the_key_and_unknown_fields_intact),
        T(fingerprint_ignores_unknown_fields),
        T(fingerprint_ignores_unknown_fields_of_nested_messages_and_restores_them),
        T(fingerprint_works_for_a_message_without_a_key),
        T(replayed_suffix_marks_every_response_type_and_changes_nothing_else),
        T(replayed_suffix_is_empty_for_types_without_replayed),
        T(replayed_suffix_is_the_varint_true_of_the_field),
        T(msg_string_returns_top_level_strings_or_empty),
    };
    return cmocka_run_group_tests_name("wire", tests, NULL, NULL);
}
