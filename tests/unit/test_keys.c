/* cairn_idempotency_key (SHA-256 hex of the components joined by 0x1F)
 * and cairn_random_key. The expected digests were computed independently
 * with coreutils, e.g. `printf 'a\x1fb' | sha256sum`. */
#include "cairn/cairn.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#define SHA_EMPTY "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
#define SHA_A_US_B "f04cdced9736a69da6103f08a4daaf8c485dd481217d218a1b4993c8c3968e13"
#define SHA_AB "fb8e20fc2e4c3f248c60c39bd652f3c1347298bb977b8b4d5903b85055620603"
#define SHA_ABC "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
/* printf 'run-1\x1fAppendEvents\x1f42' | sha256sum */
#define SHA_RUN_APPEND_42 "b7585f85179128b8a777613815dd0d177e06dfa23cfd385e038f760982b7d142"

static void key_of(char out[65], const char *const *c, size_t n)
{
    memset(out, 'X', 65);
    cairn_idempotency_key(out, c, n);
}

static bool lower_hex(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
            return false;
    return s[n] == '\0';
}

static void derived_key_is_sha256_hex_of_components_joined_by_0x1f(void **state)
{
    (void)state;
    char out[65];
    const char *ab[] = {"a", "b"};
    key_of(out, ab, 2);
    assert_string_equal(out, SHA_A_US_B);
    const char *three[] = {"run-1", "AppendEvents", "42"};
    key_of(out, three, 3);
    assert_string_equal(out, SHA_RUN_APPEND_42);
}

static void one_component_is_its_plain_sha256(void **state)
{
    (void)state;
    char out[65];
    const char *abc[] = {"abc"};
    key_of(out, abc, 1);
    assert_string_equal(out, SHA_ABC);
    const char *empty[] = {""};
    key_of(out, empty, 1);
    assert_string_equal(out, SHA_EMPTY);
}

static void no_components_is_the_sha256_of_nothing(void **state)
{
    (void)state;
    char out[65];
    key_of(out, NULL, 0);
    assert_string_equal(out, SHA_EMPTY);
}

static void derived_key_is_64_lowercase_hex_and_a_valid_idempotency_key(void **state)
{
    (void)state;
    char out[65];
    const char *c[] = {"run-\xc3\xa9", "", "x\ty"};
    key_of(out, c, 3);
    assert_int_equal(strlen(out), 64);
    assert_true(lower_hex(out, 64));
    assert_true(strlen(out) <= CAIRN_KEY_MAX);
}

static void derived_key_is_deterministic(void **state)
{
    (void)state;
    char a[65], b[65];
    const char *c[] = {"run-1", "CreateRun", "attempt-anything"};
    key_of(a, c, 3);
    for (int i = 0; i < 100; i++) {
        key_of(b, c, 3);
        assert_string_equal(a, b);
    }
}

static void derived_key_differs_when_a_component_differs(void **state)
{
    (void)state;
    char a[65], b[65];
    const char *x[] = {"run-1", "step", "1"}, *y[] = {"run-1", "step", "2"},
               *z[] = {"run-2", "step", "1"}, *order[] = {"step", "run-1", "1"};
    key_of(a, x, 3);
    key_of(b, y, 3);
    assert_string_not_equal(a, b);
    key_of(b, z, 3);
    assert_string_not_equal(a, b);
    key_of(b, order, 3);
    assert_string_not_equal(a, b);
    key_of(b, x, 2);
    assert_string_not_equal(a, b);
}

static void derived_key_differs_when_components_are_split_differently(void **state)
{
    (void)state;
    char joined[65], split[65], trailing[65];
    const char *ab[] = {"ab"}, *a_b[] = {"a", "b"}, *ab_[] = {"ab", ""};
    key_of(joined, ab, 1);
    key_of(split, a_b, 2);
    key_of(trailing, ab_, 2);
    assert_string_equal(joined, SHA_AB);
    assert_string_equal(split, SHA_A_US_B);
    assert_string_not_equal(joined, split);
    assert_string_not_equal(joined, trailing);
    assert_string_not_equal(split, trailing);
}

static void random_key_is_32_lowercase_hex_chars(void **state)
{
    (void)state;
    char out[33];
    for (int i = 0; i < 100; i++) {
        memset(out, 'X', sizeof out);
        cairn_random_key(out);
        assert_int_equal(strlen(out), 32);
        assert_true(lower_hex(out, 32));
    }
}

static void random_keys_differ_between_draws(void **state)
{
    (void)state;
    enum { N = 200 };
    static char keys[N][33];
    for (int i = 0; i < N; i++) {
        cairn_random_key(keys[i]);
        for (int j = 0; j < i; j++)
            assert_string_not_equal(keys[i], keys[j]);
    }
}

static unsigned long long ms_of(const struct timespec *t)
{
    return (unsigned long long)t->tv_sec * 1000 + (unsigned long long)t->tv_nsec / 1000000;
}

/* Keys sort by the time they were made (their first 12 hex digits are
 * milliseconds since 1970), so the server's index grows at one end. */
static void random_keys_start_with_the_time_and_sort_by_it(void **state)
{
    (void)state;
    struct timespec t0, t1, pause = {0, 2 * 1000 * 1000};
    char first[33], later[33], head[13] = {0};
    clock_gettime(CLOCK_REALTIME, &t0);
    cairn_random_key(first);
    nanosleep(&pause, NULL); /* a later millisecond, not synchronisation */
    cairn_random_key(later);
    clock_gettime(CLOCK_REALTIME, &t1);
    memcpy(head, first, 12);
    assert_in_range(strtoull(head, NULL, 16), ms_of(&t0), ms_of(&t1));
    assert_true(memcmp(first, later, 12) < 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(derived_key_is_sha256_hex_of_components_joined_by_0x1f),
        cmocka_unit_test(one_component_is_its_plain_sha256),
        cmocka_unit_test(no_components_is_the_sha256_of_nothing),
        cmocka_unit_test(derived_key_is_64_lowercase_hex_and_a_valid_idempotency_key),
        cmocka_unit_test(derived_key_is_deterministic),
        cmocka_unit_test(derived_key_differs_when_a_component_differs),
        cmocka_unit_test(derived_key_differs_when_components_are_split_differently),
        cmocka_unit_test(random_key_is_32_lowercase_hex_chars),
        cmocka_unit_test(random_keys_differ_between_draws),
        cmocka_unit_test(random_keys_start_with_the_time_and_sort_by_it),
    };
    return cmocka_run_group_tests_name("keys", tests, NULL, NULL);
}
