/* srv_format_time (base/clock.h): its arithmetic path for years 1000-9999
 * writes exactly what gmtime_r and strftime write, at the era, century,
 * leap-day and year boundaries and at many pseudo-random instants, and
 * times outside that range still format through the C library. */
#include "base/clock.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <time.h>

#include <cmocka.h>

/* The C library's rendering, the reference. */
static void reference(char out[32], int64_t us)
{
    time_t secs = (time_t)(us / 1000000);
    long frac = (long)(us % 1000000);
    if (frac < 0) {
        frac += 1000000;
        secs -= 1;
    }
    struct tm tm;
    gmtime_r(&secs, &tm);
    size_t n = strftime(out, 32, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(out + n, 32 - n, ".%06ldZ", frac);
}

static void check(int64_t us)
{
    char want[32], got[32];
    reference(want, us);
    assert_ptr_equal(srv_format_time(got, us), got);
    assert_string_equal(got, want);
}

static void known_instants_format_as_iso_8601(void **state)
{
    (void)state;
    char out[32];
    assert_string_equal(srv_format_time(out, 0), "1970-01-01T00:00:00.000000Z");
    assert_string_equal(srv_format_time(out, -1), "1969-12-31T23:59:59.999999Z");
    assert_string_equal(srv_format_time(out, 1769595330123456LL), "2026-01-28T10:15:30.123456Z");
    assert_string_equal(srv_format_time(out, 951782400000000LL), "2000-02-29T00:00:00.000000Z");
    assert_string_equal(srv_format_time(out, 253402300799999999LL),
                        "9999-12-31T23:59:59.999999Z");
    assert_string_equal(srv_format_time(out, -30610224000000000LL),
                        "1000-01-01T00:00:00.000000Z");
}

static void boundaries_match_the_c_library(void **state)
{
    (void)state;
    /* Each year's first and last second from 1000 to 9999 covers every
     * leap rule and era edge; the days around each 1 March too. */
    for (int year = 999; year <= 10000; year++) {
        struct tm tm = {.tm_year = year - 1900, .tm_mon = 0, .tm_mday = 1};
        int64_t jan1 = (int64_t)timegm(&tm);
        tm = (struct tm){.tm_year = year - 1900, .tm_mon = 2, .tm_mday = 1};
        int64_t mar1 = (int64_t)timegm(&tm);
        for (int64_t d = -1; d <= 1; d++) {
            check((jan1 + d) * 1000000);
            check((mar1 + d * 86400) * 1000000 - 1);
            check((mar1 + d * 86400) * 1000000);
        }
    }
}

static void random_instants_match_the_c_library(void **state)
{
    (void)state;
    uint64_t x = 0x9e3779b97f4a7c15ull;
    for (int i = 0; i < 200000; i++) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17; /* xorshift64 */
        /* microseconds within +-10,000 years of the epoch */
        int64_t us = (int64_t)(x % 631152000000000000ull) - 315576000000000000LL;
        check(us);
    }
}

static void times_outside_the_fast_range_still_format(void **state)
{
    (void)state;
    check(-30610224000000001LL); /* 0999-12-31T23:59:59.999999 */
    check(253402300800000000LL); /* 10000-01-01 */
    check(-62135596800000000LL); /* 0001-01-01 */
    check(INT64_MAX);
    check(INT64_MIN);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(known_instants_format_as_iso_8601),
        cmocka_unit_test(boundaries_match_the_c_library),
        cmocka_unit_test(random_instants_match_the_c_library),
        cmocka_unit_test(times_outside_the_fast_range_still_format),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
