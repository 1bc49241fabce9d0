/* cairn_classify per the contract's error table, and cairn_strerror. */
#include "cairn/cairn.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

/* Every status, from the one list that defines them. */
static const struct {
    cairn_status status;
    const char *name;
    const char *text;
} all[] = {
#define CAIRN_XX(name, value, text) {CAIRN_##name, #name, text},
    CAIRN_STATUS_MAP(CAIRN_XX)
#undef CAIRN_XX
};
#define N_ALL (sizeof all / sizeof all[0])

static const cairn_status transient[] = {
    CAIRN_UNAVAILABLE, CAIRN_ABORTED, CAIRN_DEADLINE_EXCEEDED,
    CAIRN_INTERNAL,    CAIRN_UNKNOWN, CAIRN_CANCELLED,
};
#define N_TRANSIENT (sizeof transient / sizeof transient[0])

static bool is_transient(cairn_status s)
{
    for (size_t i = 0; i < N_TRANSIENT; i++)
        if (transient[i] == s)
            return true;
    return false;
}

/* An error as libcairn records one: no pushback unless given. */
static cairn_error error_with(cairn_status s, bool has_pushback, int64_t pushback_ms)
{
    cairn_error e;
    memset(&e, 0, sizeof e);
    e.status = s;
    e.grpc_status = (int)s;
    e.attempts = 1;
    e.has_retry_pushback = has_pushback;
    e.retry_pushback_ms = pushback_ms;
    return e;
}

static void ok_is_class_ok(void **state)
{
    (void)state;
    cairn_error e = error_with(CAIRN_OK, true, -1);
    assert_int_equal(cairn_classify(CAIRN_OK, NULL), CAIRN_CLASS_OK);
    assert_int_equal(cairn_classify(CAIRN_OK, &e), CAIRN_CLASS_OK);
}

static void unavailable_aborted_deadline_internal_unknown_cancelled_are_transient(void **state)
{
    (void)state;
    for (size_t i = 0; i < N_TRANSIENT; i++) {
        cairn_error none = error_with(transient[i], false, -1);
        cairn_error pushback = error_with(transient[i], true, 250);
        assert_int_equal(cairn_classify(transient[i], NULL), CAIRN_CLASS_TRANSIENT);
        assert_int_equal(cairn_classify(transient[i], &none), CAIRN_CLASS_TRANSIENT);
        assert_int_equal(cairn_classify(transient[i], &pushback), CAIRN_CLASS_TRANSIENT);
    }
}

static void resource_exhausted_without_pushback_is_permanent(void **state)
{
    (void)state;
    cairn_error none = error_with(CAIRN_RESOURCE_EXHAUSTED, false, -1);
    cairn_error stale = error_with(CAIRN_RESOURCE_EXHAUSTED, false, 500); /* flag wins */
    assert_int_equal(cairn_classify(CAIRN_RESOURCE_EXHAUSTED, NULL), CAIRN_CLASS_PERMANENT);
    assert_int_equal(cairn_classify(CAIRN_RESOURCE_EXHAUSTED, &none), CAIRN_CLASS_PERMANENT);
    assert_int_equal(cairn_classify(CAIRN_RESOURCE_EXHAUSTED, &stale), CAIRN_CLASS_PERMANENT);
}

static void resource_exhausted_with_pushback_of_0_or_more_is_transient(void **state)
{
    (void)state;
    static const int64_t ms[] = {0, 1, 1000, INT64_MAX};
    for (size_t i = 0; i < sizeof ms / sizeof ms[0]; i++) {
        cairn_error e = error_with(CAIRN_RESOURCE_EXHAUSTED, true, ms[i]);
        assert_int_equal(cairn_classify(CAIRN_RESOURCE_EXHAUSTED, &e), CAIRN_CLASS_TRANSIENT);
    }
}

static void negative_pushback_makes_every_failure_permanent(void **state)
{
    (void)state;
    for (size_t i = 0; i < N_ALL; i++) {
        if (all[i].status == CAIRN_OK)
            continue;
        cairn_error e = error_with(all[i].status, true, -1);
        if (cairn_classify(all[i].status, &e) != CAIRN_CLASS_PERMANENT)
            fail_msg("%s with pushback -1 should be permanent", all[i].name);
        e.retry_pushback_ms = INT64_MIN;
        assert_int_equal(cairn_classify(all[i].status, &e), CAIRN_CLASS_PERMANENT);
    }
}

static void negative_pushback_value_without_the_flag_is_ignored(void **state)
{
    (void)state;
    /* cairn_error's "no pushback" state carries -1 in retry_pushback_ms. */
    cairn_error e = error_with(CAIRN_UNAVAILABLE, false, -1);
    assert_int_equal(cairn_classify(CAIRN_UNAVAILABLE, &e), CAIRN_CLASS_TRANSIENT);
}

static void every_other_status_is_permanent(void **state)
{
    (void)state;
    size_t permanent = 0;
    for (size_t i = 0; i < N_ALL; i++) {
        cairn_status s = all[i].status;
        if (s == CAIRN_OK || is_transient(s))
            continue;
        cairn_error none = error_with(s, false, -1);
        if (cairn_classify(s, NULL) != CAIRN_CLASS_PERMANENT ||
            cairn_classify(s, &none) != CAIRN_CLASS_PERMANENT)
            fail_msg("%s should be permanent", all[i].name);
        permanent++;
    }
    /* INVALID_ARGUMENT .. UNAUTHENTICATED, RESOURCE_EXHAUSTED, and the
     * local NO_MEMORY, IO, CIRCUIT_OPEN */
    assert_int_equal(permanent, N_ALL - 1 - N_TRANSIENT);
    assert_int_equal(cairn_classify(CAIRN_INVALID_ARGUMENT, NULL), CAIRN_CLASS_PERMANENT);
    assert_int_equal(cairn_classify(CAIRN_DATA_LOSS, NULL), CAIRN_CLASS_PERMANENT);
    assert_int_equal(cairn_classify(CAIRN_CIRCUIT_OPEN, NULL), CAIRN_CLASS_PERMANENT);
}

static void pushback_does_not_make_a_permanent_status_transient(void **state)
{
    (void)state;
    static const cairn_status s[] = {CAIRN_INVALID_ARGUMENT, CAIRN_NOT_FOUND,
                                     CAIRN_ALREADY_EXISTS, CAIRN_FAILED_PRECONDITION,
                                     CAIRN_PERMISSION_DENIED, CAIRN_UNAUTHENTICATED,
                                     CAIRN_DATA_LOSS};
    for (size_t i = 0; i < sizeof s / sizeof s[0]; i++) {
        cairn_error e = error_with(s[i], true, 100);
        assert_int_equal(cairn_classify(s[i], &e), CAIRN_CLASS_PERMANENT);
    }
}

static void out_of_range_status_is_permanent(void **state)
{
    (void)state;
    assert_int_equal(cairn_classify((cairn_status)17, NULL), CAIRN_CLASS_PERMANENT);
    assert_int_equal(cairn_classify((cairn_status)999, NULL), CAIRN_CLASS_PERMANENT);
    assert_int_equal(cairn_classify((cairn_status)-1, NULL), CAIRN_CLASS_PERMANENT);
}

static void strerror_gives_the_listed_text_for_every_status(void **state)
{
    (void)state;
    for (size_t i = 0; i < N_ALL; i++) {
        const char *t = cairn_strerror(all[i].status);
        assert_non_null(t);
        assert_string_equal(t, all[i].text);
        assert_true(strlen(t) > 0);
        for (size_t j = 0; j < i; j++)
            if (strcmp(t, cairn_strerror(all[j].status)) == 0)
                fail_msg("%s and %s share the text \"%s\"", all[i].name, all[j].name, t);
    }
    assert_string_equal(cairn_strerror(CAIRN_NOT_FOUND), "not found");
}

static void strerror_never_returns_null_for_unknown_values(void **state)
{
    (void)state;
    static const int bad[] = {-1, 17, 99, 103, 1000, INT32_MIN, INT32_MAX};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        const char *t = cairn_strerror((cairn_status)bad[i]);
        assert_non_null(t);
        assert_true(strlen(t) > 0);
    }
}

static void status_numbers_match_grpc(void **state)
{
    (void)state;
    assert_int_equal(CAIRN_OK, 0);
    assert_int_equal(CAIRN_INVALID_ARGUMENT, 3);
    assert_int_equal(CAIRN_RESOURCE_EXHAUSTED, 8);
    assert_int_equal(CAIRN_FAILED_PRECONDITION, 9);
    assert_int_equal(CAIRN_UNAVAILABLE, 14);
    assert_int_equal(CAIRN_UNAUTHENTICATED, 16);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(ok_is_class_ok),
        cmocka_unit_test(unavailable_aborted_deadline_internal_unknown_cancelled_are_transient),
        cmocka_unit_test(resource_exhausted_without_pushback_is_permanent),
        cmocka_unit_test(resource_exhausted_with_pushback_of_0_or_more_is_transient),
        cmocka_unit_test(negative_pushback_makes_every_failure_permanent),
        cmocka_unit_test(negative_pushback_value_without_the_flag_is_ignored),
        cmocka_unit_test(every_other_status_is_permanent),
        cmocka_unit_test(pushback_does_not_make_a_permanent_status_transient),
        cmocka_unit_test(out_of_range_status_is_permanent),
        cmocka_unit_test(strerror_gives_the_listed_text_for_every_status),
        cmocka_unit_test(strerror_never_returns_null_for_unknown_values),
        cmocka_unit_test(status_numbers_match_grpc),
    };
    return cmocka_run_group_tests_name("classify", tests, NULL, NULL);
}
