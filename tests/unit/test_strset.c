/* The string set behind id deduplication and resume: its keyed hash, and
 * that ids crafted to collide under an unkeyed hash do not make it
 * quadratic. */
#include "base/arena.h"
#include "base/strset.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

static void siphash_gives_the_reference_vector(void **state)
{
    (void)state;
    /* The SipHash paper's example: key 00..0f, message 00..0e. */
    uint8_t m[15];
    for (int i = 0; i < 15; i++)
        m[i] = (uint8_t)i;
    uint64_t k0 = 0x0706050403020100ull, k1 = 0x0f0e0d0c0b0a0908ull;
    assert_int_equal(srv_siphash24(k0, k1, m, sizeof m), 0xa129ca6149be45e5ull);
}

/* The unkeyed hash the set used before: 64-bit FNV-1a. */
static uint64_t fnv1a(const char *s)
{
    uint64_t h = 1469598103934665603ull;
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211ull;
    return h;
}

enum { N = 2000, MASK = 4095 }; /* a set sized for N has 4096 slots */

static void ids_crafted_to_collide_do_not_make_the_set_quadratic(void **state)
{
    (void)state;
    srv_arena *a = srv_arena_create();
    char **ids = srv_arena_alloc(a, N * sizeof *ids);
    size_t n = 0;
    /* What an attacker could send: ids all in one bucket of the old hash. */
    for (unsigned long i = 0; n < N; i++) {
        char id[24];
        snprintf(id, sizeof id, "w%lu", i);
        if ((fnv1a(id) & MASK) == 0)
            ids[n++] = srv_arena_strdup(a, id);
    }
    srv_strset *set = srv_strset_create(a, N);
    for (size_t i = 0; i < N; i++)
        assert_true(srv_strset_add(set, ids[i]));
    for (size_t i = 0; i < N; i++)
        assert_true(srv_strset_has(set, ids[i]));
    assert_false(srv_strset_has(set, "w-none"));
    size_t probes = srv_strset_probes(set);
    print_message("%zu probes for %d adds and %d lookups\n", probes, N, N);
    /* Spread: about one a string. All in one bucket: about N * N / 2. */
    if (probes > 20 * N)
        fail_msg("%zu probes for %d strings: the set went quadratic", probes, N);
    srv_arena_destroy(a);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(siphash_gives_the_reference_vector),
        cmocka_unit_test(ids_crafted_to_collide_do_not_make_the_set_quadratic),
    };
    return cmocka_run_group_tests_name("strset", tests, NULL, NULL);
}
