/* libcairn's ABI contract as a caller sees it: one version, told the same
 * way by the headers (cairn/version.h) and the library (cairn_version);
 * every public struct ends with reserved space, which the _init functions
 * zero and which calls refuse when it is not zero; every free is a no-op
 * on NULL. */
#include "cairn/cairn.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

/* The macros work in the preprocessor, where callers use them. */
#if !CAIRN_AT_LEAST_VERSION(0, 0, 0)
#error "CAIRN_AT_LEAST_VERSION(0, 0, 0) must hold for every version"
#endif
#if CAIRN_AT_LEAST_VERSION(CAIRN_VERSION_MAJOR + 1, 0, 0)
#error "CAIRN_AT_LEAST_VERSION must be false for the next major"
#endif
#if CAIRN_VERSION_NUM != ((CAIRN_VERSION_MAJOR << 16) | (CAIRN_VERSION_MINOR << 8) | CAIRN_VERSION_PATCH)
#error "CAIRN_VERSION_NUM must be 0xMMmmpp"
#endif

/* Every public struct in cairn.h and its size on LP64 (x86_64, aarch64).
 * Within a major version a size never changes: a new field takes the place
 * of a reserved slot (docs/api.md, "libcairn ABI"). A change here is an
 * ABI break, which bumps the major version and the soname. */
#define PUBLIC_STRUCTS(XX)                                                     \
    XX(cairn_error, 568)                                                       \
    XX(cairn_retry_policy, 72)                                                 \
    XX(cairn_retry_budget, 56)                                                 \
    XX(cairn_circuit_breaker, 48)                                              \
    XX(cairn_retry_info, 64)                                                   \
    XX(cairn_client_options, 240)                                              \
    XX(cairn_tls_options, 64)                                                  \
    XX(cairn_label, 48)                                                        \
    XX(cairn_create_run_request, 80)                                           \
    XX(cairn_run, 416)                                                         \
    XX(cairn_delete_run_request, 48)                                           \
    XX(cairn_delete_run_result, 40)                                            \
    XX(cairn_run_page, 120)                                                    \
    XX(cairn_event, 80)                                                        \
    XX(cairn_append_request, 80)                                               \
    XX(cairn_append_result, 64)                                                \
    XX(cairn_event_page, 64)                                                   \
    XX(cairn_complete_request, 64)                                             \
    XX(cairn_complete_result, 64)                                              \
    XX(cairn_lease, 608)                                                       \
    XX(cairn_acquire_request, 72)                                              \
    XX(cairn_renew_request, 56)                                                \
    XX(cairn_release_request, 48)                                              \
    XX(cairn_watch_request, 64)                                                \
    XX(cairn_checkpoint, 448)                                                  \
    XX(cairn_checkpoint_request, 96)                                           \
    XX(cairn_checkpoint_list, 56)                                              \
    XX(cairn_load_request, 64)                                                 \
    XX(cairn_cleanup_request, 56)                                              \
    XX(cairn_cleanup_result, 72)                                               \
    XX(cairn_resume_plan, 344)                                                 \
    XX(cairn_resume_state, 400)

#define ENDS_WITH_RESERVED(T, lp64_size)                                       \
    _Static_assert(offsetof(T, reserved) + sizeof(((T *)0)->reserved) == sizeof(T), \
                   #T ": the reserved space must come last");
PUBLIC_STRUCTS(ENDS_WITH_RESERVED)
#if defined(__LP64__)
#define HAS_LP64_SIZE(T, lp64_size) \
    _Static_assert(sizeof(T) == (lp64_size), #T ": its size is part of the ABI");
PUBLIC_STRUCTS(HAS_LP64_SIZE)
#endif

static void cairn_version_returns_the_headers_version_string(void **state)
{
    (void)state;
    assert_string_equal(cairn_version(), CAIRN_VERSION_STRING);
}

static void version_string_is_major_dot_minor_dot_patch(void **state)
{
    (void)state;
    char want[32];
    snprintf(want, sizeof want, "%d.%d.%d", CAIRN_VERSION_MAJOR, CAIRN_VERSION_MINOR,
             CAIRN_VERSION_PATCH);
    assert_string_equal(CAIRN_VERSION_STRING, want);
}

static void version_num_gives_each_part_a_byte(void **state)
{
    (void)state;
    assert_int_equal(CAIRN_VERSION_ENCODE(1, 2, 3), 0x010203);
    assert_int_equal(CAIRN_VERSION_ENCODE(0, 1, 0), 0x000100);
    assert_int_equal(CAIRN_VERSION_NUM >> 16, CAIRN_VERSION_MAJOR);
    assert_int_equal((CAIRN_VERSION_NUM >> 8) & 0xff, CAIRN_VERSION_MINOR);
    assert_int_equal(CAIRN_VERSION_NUM & 0xff, CAIRN_VERSION_PATCH);
}

static void at_least_version_holds_for_the_same_version(void **state)
{
    (void)state;
    assert_true(CAIRN_AT_LEAST_VERSION(CAIRN_VERSION_MAJOR, CAIRN_VERSION_MINOR,
                                       CAIRN_VERSION_PATCH));
}

static void at_least_version_holds_for_lower_versions(void **state)
{
    (void)state;
    assert_true(CAIRN_AT_LEAST_VERSION(0, 0, 0));
#if CAIRN_VERSION_PATCH > 0
    assert_true(CAIRN_AT_LEAST_VERSION(CAIRN_VERSION_MAJOR, CAIRN_VERSION_MINOR,
                                       CAIRN_VERSION_PATCH - 1));
#endif
    /* A lower minor is lower whatever its patch; a lower major whatever
     * its minor. */
#if CAIRN_VERSION_MINOR > 0
    assert_true(CAIRN_AT_LEAST_VERSION(CAIRN_VERSION_MAJOR, CAIRN_VERSION_MINOR - 1, 255));
#endif
#if CAIRN_VERSION_MAJOR > 0
    assert_true(CAIRN_AT_LEAST_VERSION(CAIRN_VERSION_MAJOR - 1, 255, 255));
#endif
}

static void at_least_version_fails_for_higher_versions(void **state)
{
    (void)state;
    const int ma = CAIRN_VERSION_MAJOR, mi = CAIRN_VERSION_MINOR, pa = CAIRN_VERSION_PATCH;
    assert_false(CAIRN_AT_LEAST_VERSION(ma, mi, pa + 1));
    /* A higher minor is higher whatever its patch; a higher major
     * whatever its minor. */
    assert_false(CAIRN_AT_LEAST_VERSION(ma, mi + 1, 0));
    assert_false(CAIRN_AT_LEAST_VERSION(ma + 1, 0, 0));
}

/* The same against a version with every part non-zero, so that each
 * comparison above is exercised whatever this release's numbers are. */
static void at_least_version_orders_by_major_then_minor_then_patch(void **state)
{
    (void)state;
#pragma push_macro("CAIRN_VERSION_NUM")
#undef CAIRN_VERSION_NUM
#define CAIRN_VERSION_NUM CAIRN_VERSION_ENCODE(2, 5, 7)
    assert_true(CAIRN_AT_LEAST_VERSION(2, 5, 7));
    assert_true(CAIRN_AT_LEAST_VERSION(2, 5, 6));
    assert_true(CAIRN_AT_LEAST_VERSION(2, 4, 255));
    assert_true(CAIRN_AT_LEAST_VERSION(1, 255, 255));
    assert_true(CAIRN_AT_LEAST_VERSION(0, 0, 0));
    assert_false(CAIRN_AT_LEAST_VERSION(2, 5, 8));
    assert_false(CAIRN_AT_LEAST_VERSION(2, 6, 0));
    assert_false(CAIRN_AT_LEAST_VERSION(3, 0, 0));
#pragma pop_macro("CAIRN_VERSION_NUM")
}

static void assert_all_zero(const void *p, size_t n)
{
    const unsigned char *b = p;
    for (size_t i = 0; i < n; i++)
        assert_int_equal(b[i], 0);
}

static void options_init_zeroes_every_reserved_space_even_over_garbage(void **state)
{
    (void)state;
    cairn_client_options opts;
    memset(&opts, 0xa5, sizeof opts);
    cairn_client_options_init(&opts);
    assert_all_zero(opts.reserved, sizeof opts.reserved);
    assert_all_zero(opts.retry.reserved, sizeof opts.retry.reserved);
    assert_all_zero(opts.retry_budget.reserved, sizeof opts.retry_budget.reserved);
    assert_all_zero(opts.breaker.reserved, sizeof opts.breaker.reserved);

    cairn_retry_policy p;
    memset(&p, 0xa5, sizeof p);
    cairn_retry_policy_init(&p);
    assert_all_zero(p.reserved, sizeof p.reserved);
}

/* Options for a client that no call below may reach: one short attempt,
 * so that a check that failed to refuse would show as a quick UNAVAILABLE
 * after an attempt rather than as a hang. */
static void unreachable_options(cairn_client_options *opts)
{
    cairn_client_options_init(opts);
    opts->target = "127.0.0.1:1";
    opts->retry.max_attempts = 1;
    opts->retry.attempt_deadline_ms = 200;
    opts->retry.call_deadline_ms = 200;
}

static void expect_refused(cairn_status got, const cairn_error *err, const char *field)
{
    assert_int_equal(got, CAIRN_INVALID_ARGUMENT);
    assert_int_equal(err->attempts, 0); /* refused here, not by a server */
    assert_non_null(strstr(err->message, field));
    assert_non_null(strstr(err->message, "must be zero"));
}

static void client_create_refuses_options_with_reserved_space_set(void **state)
{
    (void)state;
    cairn_client_options opts;
    cairn_client *c = NULL;
    cairn_error err;

    unreachable_options(&opts);
    opts.reserved[0] = 1;
    expect_refused(cairn_client_create(&opts, &c, &err), &err, "options.reserved");
    unreachable_options(&opts);
    opts.retry.reserved[CAIRN_RESERVED_SLOTS - 1] = 1;
    expect_refused(cairn_client_create(&opts, &c, &err), &err, "retry.reserved");
    unreachable_options(&opts);
    opts.retry_budget.reserved[1] = 1;
    expect_refused(cairn_client_create(&opts, &c, &err), &err, "retry_budget.reserved");
    unreachable_options(&opts);
    opts.breaker.reserved[2] = 1;
    expect_refused(cairn_client_create(&opts, &c, &err), &err, "breaker.reserved");
    assert_null(c);

    unreachable_options(&opts);
    assert_int_equal(cairn_client_create(&opts, &c, &err), CAIRN_OK);
    cairn_client_destroy(c);
}

static int never_called(void *user, const cairn_event *event)
{
    (void)user;
    (void)event;
    fail_msg("on_event called for a refused watch");
    return 1;
}

static void calls_refuse_requests_with_reserved_space_set(void **state)
{
    (void)state;
    cairn_client_options opts;
    unreachable_options(&opts);
    cairn_client *c;
    cairn_error err;
    assert_int_equal(cairn_client_create(&opts, &c, &err), CAIRN_OK);

    const char *workers[] = {"w"};
    cairn_label labels[2] = {{.key = "a", .value = "1"}, {.key = "b", .value = "2"}};
    cairn_create_run_request cr = {.run_id = "r", .workers = workers, .workers_count = 1,
                                   .labels = labels, .labels_count = 2};
    cairn_run run;
    cr.reserved[0] = 1;
    expect_refused(cairn_create_run(c, &cr, &run, &err), &err, "reserved");
    cr.reserved[0] = 0;
    labels[1].reserved[3] = 1;
    expect_refused(cairn_create_run(c, &cr, &run, &err), &err, "labels[1].reserved");

    cairn_delete_run_request dr = {.run_id = "r", .reserved = {0, 0, 0, 1}};
    cairn_delete_run_result dres;
    expect_refused(cairn_delete_run(c, &dr, &dres, &err), &err, "reserved");

    cairn_event evs[2] = {{.type = "t"}, {.type = "t"}};
    cairn_append_request ar = {.run_id = "r", .events = evs, .events_count = 2};
    cairn_append_result ares;
    ar.reserved[1] = 1;
    expect_refused(cairn_append_events(c, &ar, &ares, &err), &err, "reserved");
    ar.reserved[1] = 0;
    evs[1].reserved[0] = 1;
    expect_refused(cairn_append_events(c, &ar, &ares, &err), &err, "events[1].reserved");

    cairn_complete_request comp = {.run_id = "r", .worker_id = "w", .reserved = {1}};
    cairn_complete_result cres;
    expect_refused(cairn_complete_worker(c, &comp, &cres, &err), &err, "reserved");

    cairn_acquire_request acq = {.run_id = "r", .worker_id = "w", .holder = "h", .ttl_ms = 1000,
                                 .reserved = {1}};
    cairn_lease lease = {0};
    expect_refused(cairn_acquire_worker(c, &acq, &lease, &err), &err, "reserved");
    cairn_renew_request ren = {.lease = &lease, .ttl_ms = 1000, .reserved = {1}};
    expect_refused(cairn_renew_lease(c, &ren, &lease, &err), &err, "reserved");
    cairn_release_request rel = {.lease = &lease, .reserved = {1}};
    expect_refused(cairn_release_worker(c, &rel, &err), &err, "reserved");

    cairn_watch_request wr = {.run_id = "r", .on_event = never_called, .reserved = {1}};
    expect_refused(cairn_watch(c, &wr, &err), &err, "reserved");
    cairn_watcher *w = NULL;
    expect_refused(cairn_watch_start(c, &wr, &w, &err), &err, "reserved");
    assert_null(w);

    cairn_checkpoint_request cpr = {.run_id = "r", .reserved = {1}};
    cairn_checkpoint cp;
    expect_refused(cairn_create_checkpoint(c, &cpr, "x", 1, &cp, &err), &err, "reserved");
    cairn_load_request lr = {.run_id = "r", .reserved = {1}};
    void *data;
    size_t len;
    expect_refused(cairn_load_checkpoint(c, &lr, &cp, &data, &len, &err), &err, "reserved");
    assert_null(data);
    cairn_cleanup_request clr = {.run_id = "r", .keep_last_n = 1, .reserved = {1}};
    cairn_cleanup_result clres;
    expect_refused(cairn_cleanup_checkpoints(c, &clr, &clres, &err), &err, "reserved");
    cairn_client_destroy(c);
}

/* Each *_free on NULL, then on a zeroed struct, which it leaves zeroed. */
#define FREE_NULL_AND_ZEROED(T, free_fn)                                       \
    do {                                                                       \
        free_fn(NULL);                                                         \
        T v_;                                                                  \
        memset(&v_, 0, sizeof v_);                                             \
        free_fn(&v_);                                                          \
        assert_all_zero(&v_, sizeof v_);                                       \
    } while (0)

static void frees_are_no_ops_on_null_and_on_zeroed_structs(void **state)
{
    (void)state;
    FREE_NULL_AND_ZEROED(cairn_run, cairn_run_free);
    FREE_NULL_AND_ZEROED(cairn_run_page, cairn_run_page_free);
    FREE_NULL_AND_ZEROED(cairn_event_page, cairn_event_page_free);
    FREE_NULL_AND_ZEROED(cairn_checkpoint, cairn_checkpoint_free);
    FREE_NULL_AND_ZEROED(cairn_checkpoint_list, cairn_checkpoint_list_free);
    FREE_NULL_AND_ZEROED(cairn_cleanup_result, cairn_cleanup_result_free);
    FREE_NULL_AND_ZEROED(cairn_resume_plan, cairn_resume_plan_free);
    FREE_NULL_AND_ZEROED(cairn_resume_state, cairn_resume_state_free);
    cairn_buffer_free(NULL);
    cairn_client_destroy(NULL);
    cairn_lease_keeper_stop(NULL);
    cairn_error err;
    memset(&err, 0xa5, sizeof err);
    assert_int_equal(cairn_watch_stop(NULL, &err), CAIRN_OK);
    assert_int_equal(err.status, CAIRN_OK);
    assert_int_equal(cairn_watch_stop(NULL, NULL), CAIRN_OK);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(cairn_version_returns_the_headers_version_string),
        cmocka_unit_test(version_string_is_major_dot_minor_dot_patch),
        cmocka_unit_test(version_num_gives_each_part_a_byte),
        cmocka_unit_test(at_least_version_holds_for_the_same_version),
        cmocka_unit_test(at_least_version_holds_for_lower_versions),
        cmocka_unit_test(at_least_version_fails_for_higher_versions),
        cmocka_unit_test(at_least_version_orders_by_major_then_minor_then_patch),
        cmocka_unit_test(options_init_zeroes_every_reserved_space_even_over_garbage),
        cmocka_unit_test(client_create_refuses_options_with_reserved_space_set),
        cmocka_unit_test(calls_refuse_requests_with_reserved_space_set),
        cmocka_unit_test(frees_are_no_ops_on_null_and_on_zeroed_structs),
    };
    return cmocka_run_group_tests_name("abi", tests, NULL, NULL);
}
