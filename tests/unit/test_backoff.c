/* cairn_backoff_delay_ms: capped exponential delays, the three jitter
 * modes, and deterministic randomness from the seed or the key. */
#include "cairn/cairn.h"

#include <limits.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include <cmocka.h>

enum { KEYS = 500, RETRIES = 16 };

static cairn_retry_policy policy(cairn_jitter jitter, uint64_t seed)
{
    cairn_retry_policy p;
    cairn_retry_policy_init(&p);
    p.jitter = jitter;
    p.jitter_seed = seed;
    return p;
}

static const char *key_of(int i, char buf[32])
{
    snprintf(buf, 32, "key-%d", i);
    return buf;
}

/* The un-jittered delay of the default policy. */
static uint32_t nominal(int retry)
{
    cairn_retry_policy p = policy(CAIRN_JITTER_NONE, 0);
    return cairn_backoff_delay_ms(&p, retry, NULL);
}

static void retry_policy_defaults_match_the_contract(void **state)
{
    (void)state;
    cairn_retry_policy p;
    cairn_retry_policy_init(&p);
    assert_int_equal(p.max_attempts, 10);
    assert_int_equal(p.base_delay_ms, 100);
    assert_true(p.multiplier == 2.0);
    assert_int_equal(p.max_delay_ms, 5000);
    assert_int_equal(p.jitter, CAIRN_JITTER_EQUAL);
    assert_int_equal(p.jitter_seed, 0);
    assert_int_equal(p.call_deadline_ms, 60000);
    assert_int_equal(p.attempt_deadline_ms, 10000);
}

static void no_jitter_doubles_from_base_and_caps_at_max(void **state)
{
    (void)state;
    static const uint32_t want[] = {100, 200, 400, 800, 1600, 3200, 5000, 5000, 5000};
    cairn_retry_policy p = policy(CAIRN_JITTER_NONE, 0);
    for (int i = 0; i < (int)(sizeof want / sizeof want[0]); i++) {
        assert_int_equal(cairn_backoff_delay_ms(&p, i, "k"), want[i]);
        assert_int_equal(cairn_backoff_delay_ms(&p, i, NULL), want[i]);
    }
}

static void no_jitter_follows_other_bases_and_multipliers(void **state)
{
    (void)state;
    cairn_retry_policy p = policy(CAIRN_JITTER_NONE, 0);
    p.base_delay_ms = 10;
    p.multiplier = 3.0;
    p.max_delay_ms = 1000;
    static const uint32_t want[] = {10, 30, 90, 270, 810, 1000, 1000};
    for (int i = 0; i < (int)(sizeof want / sizeof want[0]); i++)
        assert_int_equal(cairn_backoff_delay_ms(&p, i, "k"), want[i]);
}

static void multiplier_below_1_keeps_the_base_delay(void **state)
{
    (void)state;
    cairn_retry_policy p = policy(CAIRN_JITTER_NONE, 0);
    p.multiplier = 0.5;
    for (int i = 0; i < 10; i++)
        assert_int_equal(cairn_backoff_delay_ms(&p, i, "k"), 100);
    p.multiplier = 1.0;
    assert_int_equal(cairn_backoff_delay_ms(&p, 9, "k"), 100);
}

static void max_below_base_caps_every_delay(void **state)
{
    (void)state;
    cairn_retry_policy p = policy(CAIRN_JITTER_NONE, 0);
    p.base_delay_ms = 1000;
    p.max_delay_ms = 300;
    assert_int_equal(cairn_backoff_delay_ms(&p, 0, "k"), 300);
    assert_int_equal(cairn_backoff_delay_ms(&p, 5, "k"), 300);
}

static void full_jitter_stays_within_0_and_d_and_spreads(void **state)
{
    (void)state;
    cairn_retry_policy p = policy(CAIRN_JITTER_FULL, 0);
    int below_half = 0, total = 0;
    char buf[32];
    for (int k = 0; k < KEYS; k++)
        for (int r = 0; r < RETRIES; r++) {
            uint32_t d = nominal(r);
            uint32_t got = cairn_backoff_delay_ms(&p, r, key_of(k, buf));
            if (got > d)
                fail_msg("key %d retry %d: %u > %u", k, r, got, d);
            below_half += got < d / 2;
            total++;
        }
    /* Full jitter is uniform on [0, d]: about half fall below d/2. */
    assert_in_range(below_half, total / 3, 2 * total / 3);
}

static void equal_jitter_never_goes_below_half_of_d(void **state)
{
    (void)state;
    cairn_retry_policy p = policy(CAIRN_JITTER_EQUAL, 0);
    int at_top = 0, total = 0;
    char buf[32];
    for (int k = 0; k < KEYS; k++)
        for (int r = 0; r < RETRIES; r++) {
            uint32_t d = nominal(r);
            uint32_t got = cairn_backoff_delay_ms(&p, r, key_of(k, buf));
            if (got < d / 2 || got > d)
                fail_msg("key %d retry %d: %u outside [%u, %u]", k, r, got, d / 2, d);
            at_top += got == d;
            total++;
        }
    assert_true(at_top < total / 10); /* jittered, not stuck at d */
}

static void equal_jitter_with_explicit_seeds_stays_in_range(void **state)
{
    (void)state;
    for (uint64_t seed = 1; seed <= 2000; seed++) {
        cairn_retry_policy p = policy(CAIRN_JITTER_EQUAL, seed * 0x9e3779b97f4a7c15ull);
        for (int r = 0; r < 8; r++) {
            uint32_t d = nominal(r), got = cairn_backoff_delay_ms(&p, r, NULL);
            assert_in_range(got, d / 2, d);
        }
    }
}

static void same_seed_and_retry_give_the_same_delay_whatever_the_key(void **state)
{
    (void)state;
    cairn_retry_policy p = policy(CAIRN_JITTER_FULL, 42);
    for (int r = 0; r < RETRIES; r++) {
        uint32_t d = cairn_backoff_delay_ms(&p, r, "key-a");
        assert_int_equal(cairn_backoff_delay_ms(&p, r, "key-a"), d);
        assert_int_equal(cairn_backoff_delay_ms(&p, r, "key-b"), d);
        assert_int_equal(cairn_backoff_delay_ms(&p, r, NULL), d);
    }
}

static void different_seeds_give_different_delays(void **state)
{
    (void)state;
    cairn_retry_policy a = policy(CAIRN_JITTER_FULL, 1), b = policy(CAIRN_JITTER_FULL, 2);
    int differ = 0;
    for (int r = 0; r < RETRIES; r++)
        differ += cairn_backoff_delay_ms(&a, r, "k") != cairn_backoff_delay_ms(&b, r, "k");
    assert_true(differ >= RETRIES - 2);
}

static void seed_0_derives_the_delays_from_the_key(void **state)
{
    (void)state;
    cairn_retry_policy p = policy(CAIRN_JITTER_FULL, 0);
    char buf[32];
    for (int k = 0; k < 50; k++)
        for (int r = 0; r < RETRIES; r++)
            assert_int_equal(cairn_backoff_delay_ms(&p, r, key_of(k, buf)),
                             cairn_backoff_delay_ms(&p, r, key_of(k, buf)));
    int differ = 0;
    for (int r = 0; r < RETRIES; r++)
        differ += cairn_backoff_delay_ms(&p, r, "key-a") != cairn_backoff_delay_ms(&p, r, "key-b");
    assert_true(differ >= RETRIES - 2);
    /* Callers spread apart: across many keys the first retry takes many
     * distinct values. */
    uint8_t seen[101] = {0};
    int distinct = 0;
    for (int k = 0; k < KEYS; k++) {
        uint32_t got = cairn_backoff_delay_ms(&p, 0, key_of(k, buf));
        if (!seen[got]++)
            distinct++;
    }
    assert_true(distinct > 50);
}

static void different_retries_of_one_key_are_drawn_independently(void **state)
{
    (void)state;
    cairn_retry_policy p = policy(CAIRN_JITTER_FULL, 0);
    p.multiplier = 1.0; /* same d for every retry */
    p.base_delay_ms = 1000;
    int distinct = 0;
    uint32_t prev = cairn_backoff_delay_ms(&p, 0, "k");
    for (int r = 1; r < 20; r++) {
        uint32_t got = cairn_backoff_delay_ms(&p, r, "k");
        distinct += got != prev;
        prev = got;
    }
    assert_true(distinct >= 17);
}

static void huge_retry_numbers_cap_at_max_without_overflow(void **state)
{
    (void)state;
    static const int retries[] = {31, 32, 63, 64, 1023, 1024, 1100, 100000, INT_MAX - 1, INT_MAX};
    cairn_retry_policy none = policy(CAIRN_JITTER_NONE, 0), full = policy(CAIRN_JITTER_FULL, 0),
                       equal = policy(CAIRN_JITTER_EQUAL, 0);
    for (size_t i = 0; i < sizeof retries / sizeof retries[0]; i++) {
        assert_int_equal(cairn_backoff_delay_ms(&none, retries[i], "k"), 5000);
        assert_in_range(cairn_backoff_delay_ms(&full, retries[i], "k"), 0, 5000);
        assert_in_range(cairn_backoff_delay_ms(&equal, retries[i], "k"), 2500, 5000);
    }
}

static void largest_delays_do_not_wrap(void **state)
{
    (void)state;
    cairn_retry_policy p = policy(CAIRN_JITTER_NONE, 0);
    p.base_delay_ms = UINT32_MAX;
    p.max_delay_ms = UINT32_MAX;
    p.multiplier = 10.0;
    assert_int_equal(cairn_backoff_delay_ms(&p, 0, "k"), UINT32_MAX);
    assert_int_equal(cairn_backoff_delay_ms(&p, 1000, "k"), UINT32_MAX);
    p.jitter = CAIRN_JITTER_EQUAL;
    assert_in_range(cairn_backoff_delay_ms(&p, 1000, "k"), UINT32_MAX / 2, UINT32_MAX);
}

static void negative_retry_counts_as_the_first(void **state)
{
    (void)state;
    cairn_retry_policy p = policy(CAIRN_JITTER_NONE, 0);
    assert_int_equal(cairn_backoff_delay_ms(&p, -1, "k"), 100);
    assert_int_equal(cairn_backoff_delay_ms(&p, INT_MIN, "k"), 100);
    p.jitter = CAIRN_JITTER_EQUAL;
    assert_int_equal(cairn_backoff_delay_ms(&p, -5, "k"), cairn_backoff_delay_ms(&p, 0, "k"));
}

static void zero_base_gives_zero_delays(void **state)
{
    (void)state;
    cairn_retry_policy p = policy(CAIRN_JITTER_EQUAL, 0);
    p.base_delay_ms = 0;
    for (int r = 0; r < 10; r++)
        assert_int_equal(cairn_backoff_delay_ms(&p, r, "k"), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(retry_policy_defaults_match_the_contract),
        cmocka_unit_test(no_jitter_doubles_from_base_and_caps_at_max),
        cmocka_unit_test(no_jitter_follows_other_bases_and_multipliers),
        cmocka_unit_test(multiplier_below_1_keeps_the_base_delay),
        cmocka_unit_test(max_below_base_caps_every_delay),
        cmocka_unit_test(full_jitter_stays_within_0_and_d_and_spreads),
        cmocka_unit_test(equal_jitter_never_goes_below_half_of_d),
        cmocka_unit_test(equal_jitter_with_explicit_seeds_stays_in_range),
        cmocka_unit_test(same_seed_and_retry_give_the_same_delay_whatever_the_key),
        cmocka_unit_test(different_seeds_give_different_delays),
        cmocka_unit_test(seed_0_derives_the_delays_from_the_key),
        cmocka_unit_test(different_retries_of_one_key_are_drawn_independently),
        cmocka_unit_test(huge_retry_numbers_cap_at_max_without_overflow),
        cmocka_unit_test(largest_delays_do_not_wrap),
        cmocka_unit_test(negative_retry_counts_as_the_first),
        cmocka_unit_test(zero_base_gives_zero_delays),
    };
    return cmocka_run_group_tests_name("backoff", tests, NULL, NULL);
}
