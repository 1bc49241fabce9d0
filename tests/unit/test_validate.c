/* The validation table of the wire contract: every limit of
 * server/validate.c and of the handlers' validate functions, checked on
 * both sides. Every rejection must be INVALID_ARGUMENT with a message that
 * starts with the field name and mentions the limit. */
#include "base/arena.h"
#include "cairn/v1/coordinator.pb-c.h"
#include "service/contract.h"
#include "service/handlers/handlers.h"
#include "service/validate.h"
#include "base/pbc.h"

#ifdef __GLIBC__
#include <malloc.h>
#endif
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

/* ---- helpers ---- */

/* rc must be INVALID_ARGUMENT, err->msg must start with field and contain
 * every further (NULL-terminated) substring. */
static void assert_invalid_(srv_code rc, const srv_error *err, const char *field, ...)
{
    if (rc != SRV_INVALID_ARGUMENT)
        fail_msg("expected INVALID_ARGUMENT (3), got %d: %s", rc, err->msg);
    assert_int_equal(err->code, SRV_INVALID_ARGUMENT);
    if (strncmp(err->msg, field, strlen(field)) != 0)
        fail_msg("message should start with \"%s\": %s", field, err->msg);
    va_list ap;
    va_start(ap, field);
    for (const char *want; (want = va_arg(ap, const char *));)
        if (!strstr(err->msg, want))
            fail_msg("message should mention \"%s\": %s", want, err->msg);
    va_end(ap);
}
#define assert_invalid(rc, err, ...) assert_invalid_((rc), (err), __VA_ARGS__, (const char *)NULL)

static void assert_ok(srv_code rc, const srv_error *err)
{
    if (rc != SRV_OK)
        fail_msg("expected OK, got %d: %s", rc, err->msg);
}

/* A string of n copies of c in the arena. */
static char *rep(srv_arena *a, size_t n, char c)
{
    char *s = srv_arena_alloc(a, n + 1);
    memset(s, c, n);
    s[n] = '\0';
    return s;
}

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

#define ID_LIMIT "{0,127}"

/* ---- ids ---- */

static void id_of_1_and_128_chars_is_accepted(void **state)
{
    srv_error err;
    assert_ok(srv_check_id("run_id", "a", &err), &err);
    assert_ok(srv_check_id("run_id", "7", &err), &err);
    assert_ok(srv_check_id("run_id", rep(*state, SRV_ID_MAX, 'Z'), &err), &err);
}

static void empty_id_is_rejected_naming_the_pattern(void **state)
{
    (void)state;
    srv_error err;
    assert_invalid(srv_check_id("run_id", "", &err), &err, "run_id: ", SRV_ID_PATTERN,
                   "got \"\"");
}

static void id_of_129_chars_is_rejected_naming_the_limit(void **state)
{
    srv_error err;
    assert_invalid(srv_check_id("worker_id", rep(*state, SRV_ID_MAX + 1, 'b'), &err), &err,
                   "worker_id: ", ID_LIMIT);
}

static void path_like_ids_are_rejected_quoting_the_value(void **state)
{
    (void)state;
    srv_error err;
    assert_int_equal(srv_check_id("run_id", "../etc", &err), SRV_INVALID_ARGUMENT);
    assert_string_equal(err.msg, "run_id: must match " SRV_ID_PATTERN ", got \"../etc\"");
    static const char *const bad[] = {"a/b", "/abs", "a\\b", "..", ".", "a b", "a\tb", "a*",
                                      "r\xc3\xa9sum\xc3\xa9"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        assert_invalid(srv_check_id("run_id", bad[i], &err), &err, "run_id: ", ID_LIMIT);
}

static void id_starting_with_punctuation_is_rejected(void **state)
{
    (void)state;
    srv_error err;
    static const char *const bad[] = {".hidden", "-rf", "_x", ":x", ".", "-", "_", ":"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        assert_invalid(srv_check_id("holder", bad[i], &err), &err, "holder: ", ID_LIMIT);
}

static void every_allowed_punctuation_inside_an_id_is_accepted(void **state)
{
    (void)state;
    srv_error err;
    static const char *const good[] = {"a.b", "a_b", "a:b", "a-b", "a.", "a-", "a_", "a:",
                                       "run-2026.01_28:x", "0.-_:", "A9z"};
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++)
        assert_ok(srv_check_id("run_id", good[i], &err), &err);
}

/* Every byte value, in first and in later position, against the pattern
 * [A-Za-z0-9][A-Za-z0-9._:-]*. */
static void every_byte_is_accepted_exactly_where_the_pattern_allows_it(void **state)
{
    (void)state;
    srv_error err;
    for (int c = 1; c < 256; c++) {
        bool alnum = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
        bool punct = c == '.' || c == '_' || c == ':' || c == '-';
        char first[2] = {(char)c, 0};
        char later[3] = {'a', (char)c, 0};
        if (alnum)
            assert_ok(srv_check_id("run_id", first, &err), &err);
        else
            assert_invalid(srv_check_id("run_id", first, &err), &err, "run_id: ");
        if (alnum || punct)
            assert_ok(srv_check_id("run_id", later, &err), &err);
        else
            assert_invalid(srv_check_id("run_id", later, &err), &err, "run_id: ");
    }
}

static void optional_id_accepts_empty_and_checks_the_rest(void **state)
{
    srv_error err;
    assert_ok(srv_check_optional_id("events[0].worker_id", "", &err), &err);
    assert_ok(srv_check_optional_id("events[0].worker_id", "w-1", &err), &err);
    assert_invalid(srv_check_optional_id("events[0].worker_id", "../w", &err), &err,
                   "events[0].worker_id: ", ID_LIMIT);
    assert_invalid(srv_check_optional_id("events[0].worker_id", rep(*state, 129, 'w'), &err),
                   &err, "events[0].worker_id: ", ID_LIMIT);
}

static void long_bad_id_is_quoted_cut_and_escaped(void **state)
{
    srv_error err;
    char *s = rep(*state, 300, '/');
    s[0] = '\x01';
    assert_invalid(srv_check_id("run_id", s, &err), &err, "run_id: ", "\\x01", "...");
    assert_true(strlen(err.msg) < 300);
}

/* ---- idempotency keys ---- */

static void key_of_1_and_128_printable_chars_is_accepted(void **state)
{
    srv_error err;
    assert_ok(srv_check_key("k", &err), &err);
    assert_ok(srv_check_key(rep(*state, SRV_KEY_MAX, '~'), &err), &err);
    char all[96];
    for (int c = 0x20; c < 0x7f; c++)
        all[c - 0x20] = (char)c;
    all[95] = '\0';
    assert_ok(srv_check_key(all, &err), &err); /* every printable char, space included */
}

static void empty_key_is_rejected_as_required(void **state)
{
    (void)state;
    srv_error err;
    assert_invalid(srv_check_key("", &err), &err, "idempotency_key: ", "required", "128");
}

static void key_of_129_chars_is_rejected_naming_the_limit(void **state)
{
    srv_error err;
    assert_invalid(srv_check_key(rep(*state, SRV_KEY_MAX + 1, 'k'), &err), &err,
                   "idempotency_key: ", "1..128", "129 bytes");
}

static void key_with_control_char_del_or_non_ascii_is_rejected(void **state)
{
    (void)state;
    srv_error err;
    static const char *const bad[] = {"a\tb", "a\nb", "\x01", "key\x1f", "a\x7f", "\x7f",
                                      "caf\xc3\xa9", "\x80", "\xff"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        assert_invalid(srv_check_key(bad[i], &err), &err, "idempotency_key: ", "1..128",
                       "printable ASCII");
}

/* ---- lengths, counts, pages ---- */

static void length_accepts_1_to_max_and_rejects_0_and_max_plus_1(void **state)
{
    srv_error err;
    assert_ok(srv_check_length("type", "x", 5, &err), &err);
    assert_ok(srv_check_length("type", "xxxxx", 5, &err), &err);
    assert_invalid(srv_check_length("type", "", 5, &err), &err, "type: ", "1..5", "got 0");
    assert_invalid(srv_check_length("type", "xxxxxx", 5, &err), &err, "type: ", "1..5",
                   "got 6");
    assert_ok(srv_check_length("type", rep(*state, SRV_EVENT_TYPE_MAX, 't'), SRV_EVENT_TYPE_MAX,
                               &err),
              &err);
}

static void count_accepts_lo_to_hi_and_rejects_outside(void **state)
{
    (void)state;
    srv_error err;
    assert_ok(srv_check_count("events", 1, 1, 1000, &err), &err);
    assert_ok(srv_check_count("events", 1000, 1, 1000, &err), &err);
    assert_invalid(srv_check_count("events", 0, 1, 1000, &err), &err, "events: ", "1..1000",
                   "got 0");
    assert_invalid(srv_check_count("events", 1001, 1, 1000, &err), &err, "events: ", "1..1000",
                   "got 1001");
    assert_ok(srv_check_count("labels", 0, 0, 64, &err), &err);
    assert_invalid(srv_check_count("labels", SIZE_MAX, 0, 64, &err), &err, "labels: ", "0..64");
}

static void page_of_0_gives_the_default_and_max_plus_1_is_rejected(void **state)
{
    (void)state;
    srv_error err;
    uint32_t out = 7;
    assert_ok(srv_check_page("page_size", 0, SRV_PAGE_DEFAULT, SRV_PAGE_MAX, &out, &err), &err);
    assert_int_equal(out, SRV_PAGE_DEFAULT);
    assert_ok(srv_check_page("page_size", 1, SRV_PAGE_DEFAULT, SRV_PAGE_MAX, &out, &err), &err);
    assert_int_equal(out, 1);
    assert_ok(srv_check_page("page_size", SRV_PAGE_MAX, SRV_PAGE_DEFAULT, SRV_PAGE_MAX, &out,
                             &err),
              &err);
    assert_int_equal(out, SRV_PAGE_MAX);
    out = 7;
    assert_invalid(srv_check_page("page_size", SRV_PAGE_MAX + 1, SRV_PAGE_DEFAULT, SRV_PAGE_MAX,
                                  &out, &err),
                   &err, "page_size: ", "0..1000", "got 1001");
    assert_int_equal(out, 7); /* untouched on failure */
    assert_invalid(srv_check_page("page_size", UINT32_MAX, SRV_PAGE_DEFAULT, SRV_PAGE_MAX, &out,
                                  &err),
                   &err, "page_size: ", "0..1000");
}

/* ---- dedup ---- */

static void dedup_keeps_first_occurrences_in_order(void **state)
{
    srv_error err;
    char *v[] = {"b", "a", "b", "c", "a", "a", "d", "c"};
    size_t n = sizeof v / sizeof v[0];
    char *first_b = v[0];
    assert_ok(srv_dedup_strings(*state, v, &n, &err), &err);
    assert_int_equal(n, 4);
    assert_string_equal(v[0], "b");
    assert_string_equal(v[1], "a");
    assert_string_equal(v[2], "c");
    assert_string_equal(v[3], "d");
    assert_ptr_equal(v[0], first_b);
}

static void dedup_of_empty_and_single_lists_is_a_no_op(void **state)
{
    srv_error err;
    size_t n = 0;
    char *one[] = {"x"};
    assert_ok(srv_dedup_strings(*state, one, &n, &err), &err);
    assert_int_equal(n, 0);
    n = 1;
    assert_ok(srv_dedup_strings(*state, one, &n, &err), &err);
    assert_int_equal(n, 1);
    assert_string_equal(one[0], "x");
}

/* Fills v with n strings: item i is "w<i % distinct>". */
static char **make_ids(srv_arena *a, size_t n, size_t distinct)
{
    char **v = srv_arena_alloc(a, n * sizeof *v);
    for (size_t i = 0; i < n; i++) {
        char buf[32];
        snprintf(buf, sizeof buf, "w%zu", i % distinct);
        v[i] = srv_arena_strdup(a, buf);
    }
    return v;
}

static void dedup_of_10000_items_keeps_order(void **state)
{
    srv_error err;
    size_t n = 10000;
    char **v = make_ids(*state, n, 7919);
    assert_ok(srv_dedup_strings(*state, v, &n, &err), &err);
    assert_int_equal(n, 7919);
    for (size_t i = 0; i < n; i++) {
        char buf[32];
        snprintf(buf, sizeof buf, "w%zu", i);
        assert_string_equal(v[i], buf);
    }
}

/* Linear, not quadratic: 200000 items (a quadratic scan would take tens of
 * seconds) finish well within a generous CPU budget. */
static void dedup_of_200000_items_with_repeats_keeps_each_once(void **state)
{
    srv_error err;
    size_t n = 200000;
    char **v = make_ids(*state, n, 100000);
    assert_ok(srv_dedup_strings(*state, v, &n, &err), &err);
    assert_int_equal(n, 100000);
}

/* ---- CreateRun ---- */

static Cairn__V1__CreateRunRequest *create_req(srv_arena *a, size_t workers, size_t labels)
{
    Cairn__V1__CreateRunRequest *r = srv_arena_alloc(a, sizeof *r);
    cairn__v1__create_run_request__init(r);
    r->idempotency_key = "key-1";
    r->run_id = "run-1";
    r->n_workers = workers;
    r->workers = make_ids(a, workers ? workers : 1, workers ? workers : 1);
    r->n_labels = labels;
    r->labels = srv_arena_alloc(a, (labels ? labels : 1) * sizeof *r->labels);
    for (size_t i = 0; i < labels; i++) {
        Cairn__V1__CreateRunRequest__LabelsEntry *e = srv_arena_alloc(a, sizeof *e);
        cairn__v1__create_run_request__labels_entry__init(e);
        char k[32];
        snprintf(k, sizeof k, "k%03zu", labels - i); /* reverse order */
        e->key = srv_arena_strdup(a, k);
        e->value = "v";
        r->labels[i] = e;
    }
    return r;
}

static void create_run_accepts_1_and_10000_workers(void **state)
{
    srv_error err;
    Cairn__V1__CreateRunRequest *r = create_req(*state, 1, 0);
    assert_ok(srv_validate_create_run(&r->base, *state, &err), &err);
    r = create_req(*state, SRV_WORKERS_MAX, 0);
    assert_ok(srv_validate_create_run(&r->base, *state, &err), &err);
    assert_int_equal(r->n_workers, SRV_WORKERS_MAX);
}

static void create_run_rejects_0_and_10001_workers_naming_the_limit(void **state)
{
    srv_error err;
    Cairn__V1__CreateRunRequest *r = create_req(*state, 0, 0);
    assert_invalid(srv_validate_create_run(&r->base, *state, &err), &err, "workers: ",
                   "1..10000", "got 0");
    r = create_req(*state, SRV_WORKERS_MAX + 1, 0);
    assert_invalid(srv_validate_create_run(&r->base, *state, &err), &err, "workers: ",
                   "1..10000", "got 10001");
}

static void create_run_rejects_bad_run_id_and_bad_worker_id_by_index(void **state)
{
    srv_error err;
    Cairn__V1__CreateRunRequest *r = create_req(*state, 5, 0);
    r->run_id = "../etc";
    assert_invalid(srv_validate_create_run(&r->base, *state, &err), &err, "run_id: ", ID_LIMIT);
    r->run_id = "";
    assert_invalid(srv_validate_create_run(&r->base, *state, &err), &err, "run_id: ", ID_LIMIT);
    r = create_req(*state, 5, 0);
    r->workers[3] = "-w";
    assert_invalid(srv_validate_create_run(&r->base, *state, &err), &err, "workers[3]: ",
                   ID_LIMIT, "\"-w\"");
    r->workers[3] = rep(*state, 129, 'w');
    assert_invalid(srv_validate_create_run(&r->base, *state, &err), &err, "workers[3]: ",
                   ID_LIMIT);
}

static void create_run_drops_duplicate_workers_keeping_first_in_order(void **state)
{
    srv_error err;
    Cairn__V1__CreateRunRequest *r = create_req(*state, 6, 0);
    char *w[] = {"w2", "w1", "w2", "w3", "w1", "w0"};
    r->workers = w;
    assert_ok(srv_validate_create_run(&r->base, *state, &err), &err);
    assert_int_equal(r->n_workers, 4);
    assert_string_equal(r->workers[0], "w2");
    assert_string_equal(r->workers[1], "w1");
    assert_string_equal(r->workers[2], "w3");
    assert_string_equal(r->workers[3], "w0");
}

static void create_run_accepts_64_labels_and_sorts_them(void **state)
{
    srv_error err;
    Cairn__V1__CreateRunRequest *r = create_req(*state, 1, SRV_LABELS_MAX);
    assert_ok(srv_validate_create_run(&r->base, *state, &err), &err);
    assert_int_equal(r->n_labels, SRV_LABELS_MAX);
    for (size_t i = 1; i < r->n_labels; i++)
        assert_true(strcmp(r->labels[i - 1]->key, r->labels[i]->key) < 0);
}

static void create_run_accepts_no_labels_as_decoded_from_the_wire(void **state)
{
    srv_error err;
    Cairn__V1__CreateRunRequest *r = create_req(*state, 2, 0);
    r->labels = NULL; /* what protobuf-c leaves for an empty map */
    r->n_labels = 0;
    assert_ok(srv_validate_create_run(&r->base, *state, &err), &err);
    assert_int_equal(r->n_labels, 0);
    assert_int_equal(r->n_workers, 2);
}

static void create_run_rejects_65_labels_naming_the_limit(void **state)
{
    srv_error err;
    Cairn__V1__CreateRunRequest *r = create_req(*state, 1, SRV_LABELS_MAX + 1);
    assert_invalid(srv_validate_create_run(&r->base, *state, &err), &err, "labels: ", "64",
                   "got 65");
}

static void create_run_checks_label_key_and_value_sizes(void **state)
{
    srv_error err;
    Cairn__V1__CreateRunRequest *r = create_req(*state, 1, 1);
    r->labels[0]->key = rep(*state, SRV_LABEL_KEY_MAX, 'k');
    r->labels[0]->value = rep(*state, SRV_LABEL_VALUE_MAX, 'v');
    assert_ok(srv_validate_create_run(&r->base, *state, &err), &err);
    r->labels[0]->value = "";
    assert_ok(srv_validate_create_run(&r->base, *state, &err), &err);
    r->labels[0]->key = "";
    assert_invalid(srv_validate_create_run(&r->base, *state, &err), &err, "labels", "1..128");
    r->labels[0]->key = rep(*state, SRV_LABEL_KEY_MAX + 1, 'k');
    assert_invalid(srv_validate_create_run(&r->base, *state, &err), &err, "labels", "1..128",
                   "got 129");
    r->labels[0]->key = "k";
    r->labels[0]->value = rep(*state, SRV_LABEL_VALUE_MAX + 1, 'v');
    assert_invalid(srv_validate_create_run(&r->base, *state, &err), &err, "labels", "1024",
                   "got 1025");
}

static Cairn__V1__CreateRunRequest__LabelsEntry *label(srv_arena *a, const char *k, const char *v)
{
    Cairn__V1__CreateRunRequest__LabelsEntry *e = srv_arena_alloc(a, sizeof *e);
    cairn__v1__create_run_request__labels_entry__init(e);
    e->key = (char *)k;
    e->value = (char *)v;
    return e;
}

static void create_run_duplicate_label_keys_last_wins_and_sorted(void **state)
{
    srv_error err;
    Cairn__V1__CreateRunRequest *r = create_req(*state, 1, 5);
    /* allocated in request order, as protobuf-c's unpack does */
    r->labels[0] = label(*state, "zone", "a");
    r->labels[1] = label(*state, "env", "dev");
    r->labels[2] = label(*state, "zone", "b");
    r->labels[3] = label(*state, "app", "x");
    r->labels[4] = label(*state, "zone", "c");
    assert_ok(srv_validate_create_run(&r->base, *state, &err), &err);
    assert_int_equal(r->n_labels, 3);
    assert_string_equal(r->labels[0]->key, "app");
    assert_string_equal(r->labels[1]->key, "env");
    assert_string_equal(r->labels[2]->key, "zone");
    assert_string_equal(r->labels[2]->value, "c");
}

/* "Last" means last in the request, not highest in memory: the entries of
 * a decoded map need not sit at increasing addresses (the arena links new
 * blocks wherever malloc puts them). */
static void create_run_duplicate_label_keys_last_wins_whatever_the_entry_addresses(void **state)
{
    srv_error err;
    Cairn__V1__CreateRunRequest *r = create_req(*state, 1, 2);
    Cairn__V1__CreateRunRequest__LabelsEntry e[2];
    cairn__v1__create_run_request__labels_entry__init(&e[0]);
    cairn__v1__create_run_request__labels_entry__init(&e[1]);
    e[1].key = "zone";
    e[1].value = "first";
    e[0].key = "zone";
    e[0].value = "last";
    r->labels[0] = &e[1]; /* the first entry lives at the higher address */
    r->labels[1] = &e[0];
    assert_ok(srv_validate_create_run(&r->base, *state, &err), &err);
    assert_int_equal(r->n_labels, 1);
    assert_string_equal(r->labels[0]->value, "last");
}

/* The same, end to end from the wire: a request with many workers makes the
 * arena move to new blocks while the map entries are decoded. With glibc's
 * fixed mmap threshold the big blocks come from mmap, top down, so some of
 * these sizes put an entry below its predecessor; whatever the allocator
 * does, the last "k" of the request must win. */
static void create_run_decoded_from_the_wire_keeps_the_last_duplicate_label(void **state)
{
    (void)state;
#ifdef __GLIBC__
    mallopt(M_MMAP_THRESHOLD, 128 * 1024); /* stop glibc from raising it as blocks are freed */
#endif
    char value[SRV_LABEL_VALUE_MAX + 1];
    for (size_t workers = 500; workers <= SRV_WORKERS_MAX; workers += 500) {
        srv_arena *src = srv_arena_create();
        Cairn__V1__CreateRunRequest *r = create_req(src, workers, SRV_LABELS_MAX);
        for (size_t i = 0; i < workers; i++) {
            char id[SRV_ID_MAX + 1];
            snprintf(id, sizeof id, "worker-%0100zu", i);
            r->workers[i] = srv_arena_strdup(src, id);
        }
        for (size_t i = 0; i < SRV_LABELS_MAX; i++) {
            memset(value, 'v', sizeof value - 1);
            snprintf(value + sizeof value - 8, 8, "%07zu", i);
            r->labels[i]->key = "k";
            r->labels[i]->value = srv_arena_strdup(src, value);
        }
        size_t len = cairn__v1__create_run_request__get_packed_size(r);
        uint8_t *buf = srv_arena_alloc(src, len);
        cairn__v1__create_run_request__pack(r, buf);

        srv_arena *a = srv_arena_create();
        ProtobufCMessage *m = NULL;
        srv_error err;
        srv_code rc = srv_unpack(&cairn__v1__create_run_request__descriptor, a, buf, len, &m, &err);
        if (!rc)
            rc = srv_validate_create_run(m, a, &err);
        Cairn__V1__CreateRunRequest *q = (Cairn__V1__CreateRunRequest *)m;
        size_t n_labels = rc ? 0 : q->n_labels;
        char got[8] = "";
        if (n_labels)
            memcpy(got, q->labels[0]->value + SRV_LABEL_VALUE_MAX - 7, 8);
        srv_arena_destroy(a);
        srv_arena_destroy(src);
        assert_ok(rc, &err);
        assert_int_equal(n_labels, 1);
        if (strcmp(got, "0000063") != 0)
            fail_msg("with %zu workers, label k = ...%s, want the last (...0000063)", workers,
                     got);
    }
}

/* ---- AppendEvents ---- */

static Cairn__V1__AppendEventsRequest *append_req(srv_arena *a, size_t events)
{
    Cairn__V1__AppendEventsRequest *r = srv_arena_alloc(a, sizeof *r);
    cairn__v1__append_events_request__init(r);
    r->idempotency_key = "key-1";
    r->run_id = "run-1";
    r->n_events = events;
    r->events = srv_arena_alloc(a, (events ? events : 1) * sizeof *r->events);
    for (size_t i = 0; i < events; i++) {
        Cairn__V1__Event *e = srv_arena_alloc(a, sizeof *e);
        cairn__v1__event__init(e);
        e->type = "step.done";
        r->events[i] = e;
    }
    return r;
}

static void append_accepts_1_and_1000_events(void **state)
{
    srv_error err;
    Cairn__V1__AppendEventsRequest *r = append_req(*state, 1);
    assert_ok(srv_validate_append_events(&r->base, *state, &err), &err);
    r = append_req(*state, SRV_EVENTS_PER_APPEND_MAX);
    assert_ok(srv_validate_append_events(&r->base, *state, &err), &err);
}

static void append_rejects_0_and_1001_events_naming_the_limit(void **state)
{
    srv_error err;
    Cairn__V1__AppendEventsRequest *r = append_req(*state, 0);
    assert_invalid(srv_validate_append_events(&r->base, *state, &err), &err, "events: ",
                   "1..1000", "got 0");
    r = append_req(*state, SRV_EVENTS_PER_APPEND_MAX + 1);
    assert_invalid(srv_validate_append_events(&r->base, *state, &err), &err, "events: ",
                   "1..1000", "got 1001");
}

static void append_rejects_a_bad_run_id(void **state)
{
    srv_error err;
    Cairn__V1__AppendEventsRequest *r = append_req(*state, 1);
    r->run_id = "a/b";
    assert_invalid(srv_validate_append_events(&r->base, *state, &err), &err, "run_id: ", ID_LIMIT);
}

static void event_type_of_1_and_128_bytes_is_accepted_0_and_129_rejected(void **state)
{
    srv_error err;
    Cairn__V1__AppendEventsRequest *r = append_req(*state, 3);
    r->events[2]->type = "x";
    assert_ok(srv_validate_append_events(&r->base, *state, &err), &err);
    r->events[2]->type = rep(*state, SRV_EVENT_TYPE_MAX, 't');
    assert_ok(srv_validate_append_events(&r->base, *state, &err), &err);
    r->events[2]->type = "";
    assert_invalid(srv_validate_append_events(&r->base, *state, &err), &err,
                   "events[2].type: ", "1..128", "got 0");
    r->events[2]->type = rep(*state, SRV_EVENT_TYPE_MAX + 1, 't');
    assert_invalid(srv_validate_append_events(&r->base, *state, &err), &err,
                   "events[2].type: ", "1..128", "got 129");
}

static void event_type_worker_completed_is_reserved(void **state)
{
    srv_error err;
    Cairn__V1__AppendEventsRequest *r = append_req(*state, 2);
    r->events[1]->type = "worker.completed";
    assert_invalid(srv_validate_append_events(&r->base, *state, &err), &err,
                   "events[1].type: ", "worker.completed", "reserved");
    r->events[1]->type = "worker.completed2";
    assert_ok(srv_validate_append_events(&r->base, *state, &err), &err);
}

static void event_payload_of_1_mib_is_accepted_and_1_mib_plus_1_rejected(void **state)
{
    srv_error err;
    Cairn__V1__AppendEventsRequest *r = append_req(*state, 2);
    uint8_t *buf = srv_arena_alloc(*state, SRV_PAYLOAD_MAX + 1);
    memset(buf, 0xab, SRV_PAYLOAD_MAX + 1);
    r->events[1]->payload.data = buf;
    r->events[1]->payload.len = SRV_PAYLOAD_MAX;
    assert_ok(srv_validate_append_events(&r->base, *state, &err), &err);
    r->events[1]->payload.len = SRV_PAYLOAD_MAX + 1;
    assert_invalid(srv_validate_append_events(&r->base, *state, &err), &err,
                   "events[1].payload: ", "1048576", "got 1048577");
}

static void event_worker_id_is_optional_but_must_be_an_id_when_set(void **state)
{
    srv_error err;
    Cairn__V1__AppendEventsRequest *r = append_req(*state, 1);
    r->events[0]->worker_id = "";
    assert_ok(srv_validate_append_events(&r->base, *state, &err), &err);
    r->events[0]->worker_id = "not-a-worker-of-the-run";
    assert_ok(srv_validate_append_events(&r->base, *state, &err), &err);
    r->events[0]->worker_id = rep(*state, SRV_ID_MAX, 'w');
    assert_ok(srv_validate_append_events(&r->base, *state, &err), &err);
    r->events[0]->worker_id = "../w";
    assert_invalid(srv_validate_append_events(&r->base, *state, &err), &err,
                   "events[0].worker_id: ", ID_LIMIT);
    r->events[0]->worker_id = rep(*state, SRV_ID_MAX + 1, 'w');
    assert_invalid(srv_validate_append_events(&r->base, *state, &err), &err,
                   "events[0].worker_id: ", ID_LIMIT);
}

static void append_clears_the_fields_the_server_assigns(void **state)
{
    srv_error err;
    Cairn__V1__AppendEventsRequest *r = append_req(*state, 1);
    r->events[0]->seq = 42;
    r->events[0]->run_id = "other-run";
    r->events[0]->created_at = "2026-01-28T10:15:30.123456Z";
    assert_ok(srv_validate_append_events(&r->base, *state, &err), &err);
    assert_int_equal(r->events[0]->seq, 0);
    assert_string_equal(r->events[0]->run_id, "");
    assert_string_equal(r->events[0]->created_at, "");
}

/* ---- ReadEvents, GetRun, ListRuns ---- */

static Cairn__V1__ReadEventsRequest *read_req(srv_arena *a, uint64_t from, uint32_t max)
{
    Cairn__V1__ReadEventsRequest *r = srv_arena_alloc(a, sizeof *r);
    cairn__v1__read_events_request__init(r);
    r->run_id = "run-1";
    r->from_seq = from;
    r->max_events = max;
    return r;
}

static void read_events_max_events_0_is_100_1000_ok_1001_rejected(void **state)
{
    srv_error err;
    Cairn__V1__ReadEventsRequest *r = read_req(*state, 5, 0);
    assert_ok(srv_validate_read_events(&r->base, *state, &err), &err);
    assert_int_equal(r->max_events, SRV_PAGE_DEFAULT);
    assert_int_equal(r->from_seq, 5);
    r = read_req(*state, 1, SRV_PAGE_MAX);
    assert_ok(srv_validate_read_events(&r->base, *state, &err), &err);
    assert_int_equal(r->max_events, SRV_PAGE_MAX);
    r = read_req(*state, 1, SRV_PAGE_MAX + 1);
    assert_invalid(srv_validate_read_events(&r->base, *state, &err), &err, "max_events: ",
                   "0..1000", "got 1001");
}

static void read_events_from_seq_0_means_the_first_event(void **state)
{
    srv_error err;
    Cairn__V1__ReadEventsRequest *r = read_req(*state, 0, 10);
    assert_ok(srv_validate_read_events(&r->base, *state, &err), &err);
    assert_int_equal(r->from_seq, 1);
    r->run_id = ".x";
    assert_invalid(srv_validate_read_events(&r->base, *state, &err), &err, "run_id: ", ID_LIMIT);
}

static void get_run_checks_the_run_id(void **state)
{
    srv_error err;
    Cairn__V1__GetRunRequest r;
    cairn__v1__get_run_request__init(&r);
    r.run_id = "run-1";
    assert_ok(srv_validate_run_id_only(&r.base, *state, &err), &err);
    r.run_id = "";
    assert_invalid(srv_validate_run_id_only(&r.base, *state, &err), &err, "run_id: ", ID_LIMIT);
}

static void list_runs_page_size_0_is_100_1000_ok_1001_rejected(void **state)
{
    srv_error err;
    Cairn__V1__ListRunsRequest r;
    cairn__v1__list_runs_request__init(&r);
    assert_ok(srv_validate_list_runs(&r.base, *state, &err), &err);
    assert_int_equal(r.page_size, SRV_PAGE_DEFAULT);
    r.page_size = SRV_PAGE_MAX;
    assert_ok(srv_validate_list_runs(&r.base, *state, &err), &err);
    assert_int_equal(r.page_size, SRV_PAGE_MAX);
    r.page_size = SRV_PAGE_MAX + 1;
    assert_invalid(srv_validate_list_runs(&r.base, *state, &err), &err, "page_size: ",
                   "0..1000", "got 1001");
}

static void list_runs_accepts_empty_or_numeric_tokens_and_rejects_garbage(void **state)
{
    srv_error err;
    Cairn__V1__ListRunsRequest r;
    cairn__v1__list_runs_request__init(&r);
    static const char *const good[] = {"", "0", "42", "9223372036854775807"}; /* INT64_MAX */
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
        r.page_token = (char *)good[i];
        assert_ok(srv_validate_list_runs(&r.base, *state, &err), &err);
    }
    static const char *const bad[] = {"abc", "-1", "12a", " 1", "1 ", "+1", "0x10",
                                      "9223372036854775808", "9999999999999999999",
                                      "99999999999999999999", "\xc3\xa9", "1.5"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        r.page_token = (char *)bad[i];
        assert_invalid(srv_validate_list_runs(&r.base, *state, &err), &err, "page_token: ",
                       "next_page_token");
    }
}

#define T(f) cmocka_unit_test_setup_teardown(f, setup_arena, teardown_arena)

int main(void)
{
    const struct CMUnitTest tests[] = {
        T(id_of_1_and_128_chars_is_accepted),
        T(empty_id_is_rejected_naming_the_pattern),
        T(id_of_129_chars_is_rejected_naming_the_limit),
        T(path_like_ids_are_rejected_quoting_the_value),
        T(id_starting_with_punctuation_is_rejected),
        T(every_allowed_punctuation_inside_an_id_is_accepted),
        T(every_byte_is_accepted_exactly_where_the_pattern_allows_it),
        T(optional_id_accepts_empty_and_checks_the_rest),
        T(long_bad_id_is_quoted_cut_and_escaped),
        T(key_of_1_and_128_printable_chars_is_accepted),
        T(empty_key_is_rejected_as_required),
        T(key_of_129_chars_is_rejected_naming_the_limit),
        T(key_with_control_char_del_or_non_ascii_is_rejected),
        T(length_accepts_1_to_max_and_rejects_0_and_max_plus_1),
        T(count_accepts_lo_to_hi_and_rejects_outside),
        T(page_of_0_gives_the_default_and_max_plus_1_is_rejected),
        T(dedup_keeps_first_occurrences_in_order),
        T(dedup_of_empty_and_single_lists_is_a_no_op),
        T(dedup_of_10000_items_keeps_order),
        T(dedup_of_200000_items_with_repeats_keeps_each_once),
        T(create_run_accepts_1_and_10000_workers),
        T(create_run_rejects_0_and_10001_workers_naming_the_limit),
        T(create_run_rejects_bad_run_id_and_bad_worker_id_by_index),
        T(create_run_drops_duplicate_workers_keeping_first_in_order),
        T(create_run_accepts_64_labels_and_sorts_them),
        T(create_run_accepts_no_labels_as_decoded_from_the_wire),
        T(create_run_rejects_65_labels_naming_the_limit),
        T(create_run_checks_label_key_and_value_sizes),
        T(create_run_duplicate_label_keys_last_wins_and_sorted),
        T(create_run_duplicate_label_keys_last_wins_whatever_the_entry_addresses),
        T(create_run_decoded_from_the_wire_keeps_the_last_duplicate_label),
        T(append_accepts_1_and_1000_events),
        T(append_rejects_0_and_1001_events_naming_the_limit),
        T(append_rejects_a_bad_run_id),
        T(event_type_of_1_and_128_bytes_is_accepted_0_and_129_rejected),
        T(event_type_worker_completed_is_reserved),
        T(event_payload_of_1_mib_is_accepted_and_1_mib_plus_1_rejected),
        T(event_worker_id_is_optional_but_must_be_an_id_when_set),
        T(append_clears_the_fields_the_server_assigns),
        T(read_events_max_events_0_is_100_1000_ok_1001_rejected),
        T(read_events_from_seq_0_means_the_first_event),
        T(get_run_checks_the_run_id),
        T(list_runs_page_size_0_is_100_1000_ok_1001_rejected),
        T(list_runs_accepts_empty_or_numeric_tokens_and_rejects_garbage),
    };
    return cmocka_run_group_tests_name("validate", tests, NULL, NULL);
}
