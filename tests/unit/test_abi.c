/* libcairn's ABI contract as a caller sees it: one version, told the same
 * way by the headers (cairn/version.h) and the library (cairn_version). */
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
    };
    return cmocka_run_group_tests_name("abi", tests, NULL, NULL);
}
