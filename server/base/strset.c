#include "base/strset.h"

#include <pthread.h>
#include <stdint.h>
#include <string.h>
#include <sys/random.h>

struct srv_strset {
    const char **slots;
    size_t mask;
    size_t probes;
};

/* The ids hashed come from clients, so the hash is keyed with a secret
 * drawn once per process: crafted ids cannot all land in one bucket and
 * make a set quadratic (an unkeyed FNV let them). */
static uint64_t key0, key1;
static pthread_once_t key_once = PTHREAD_ONCE_INIT;

static void draw_key(void)
{
    uint64_t k[2] = {0x736f6d6570736575ull, 0x646f72616e646f6dull};
    size_t got = 0;
    while (got < sizeof k) {
        ssize_t n = getrandom((uint8_t *)k + got, sizeof k - got, 0);
        if (n <= 0)
            break; /* keeps a fixed key: correct, only not hardened */
        got += (size_t)n;
    }
    key0 = k[0];
    key1 = k[1];
}

#define ROTL(x, b) (uint64_t)(((x) << (b)) | ((x) >> (64 - (b))))
#define SIPROUND                                                                         \
    do {                                                                                 \
        v0 += v1, v1 = ROTL(v1, 13), v1 ^= v0, v0 = ROTL(v0, 32);                        \
        v2 += v3, v3 = ROTL(v3, 16), v3 ^= v2;                                           \
        v0 += v3, v3 = ROTL(v3, 21), v3 ^= v0;                                           \
        v2 += v1, v1 = ROTL(v1, 17), v1 ^= v2, v2 = ROTL(v2, 32);                        \
    } while (0)

uint64_t srv_siphash24(uint64_t k0, uint64_t k1, const void *data, size_t len)
{
    uint64_t v0 = k0 ^ 0x736f6d6570736575ull, v1 = k1 ^ 0x646f72616e646f6dull;
    uint64_t v2 = k0 ^ 0x6c7967656e657261ull, v3 = k1 ^ 0x7465646279746573ull;
    const uint8_t *p = data;
    size_t left = len;
    for (; left >= 8; p += 8, left -= 8) {
        uint64_t m = 0;
        for (int i = 0; i < 8; i++) /* little-endian words, as the spec reads them */
            m |= (uint64_t)p[i] << (8 * i);
        v3 ^= m;
        SIPROUND;
        SIPROUND;
        v0 ^= m;
    }
    uint64_t b = (uint64_t)len << 56;
    for (size_t i = 0; i < left; i++)
        b |= (uint64_t)p[i] << (8 * i);
    v3 ^= b;
    SIPROUND;
    SIPROUND;
    v0 ^= b;
    v2 ^= 0xff;
    SIPROUND;
    SIPROUND;
    SIPROUND;
    SIPROUND;
    return v0 ^ v1 ^ v2 ^ v3;
}

static uint64_t hash_str(const char *s)
{
    pthread_once(&key_once, draw_key);
    return srv_siphash24(key0, key1, s, strlen(s));
}

srv_strset *srv_strset_create(srv_arena *a, size_t max)
{
    size_t cap = 16;
    while (cap < max * 2) /* at most half full */
        cap *= 2;
    srv_strset *set = srv_arena_alloc(a, sizeof *set);
    const char **slots = srv_arena_alloc(a, cap * sizeof *slots);
    if (!set || !slots)
        return NULL;
    memset(slots, 0, cap * sizeof *slots);
    set->slots = slots;
    set->mask = cap - 1;
    set->probes = 0;
    return set;
}

static size_t find(srv_strset *set, const char *s)
{
    size_t i = (size_t)hash_str(s) & set->mask;
    while (set->slots[i] && strcmp(set->slots[i], s) != 0) {
        i = (i + 1) & set->mask;
        set->probes++;
    }
    return i;
}

bool srv_strset_add(srv_strset *set, const char *s)
{
    size_t i = find(set, s);
    if (set->slots[i])
        return false;
    set->slots[i] = s;
    return true;
}

bool srv_strset_has(srv_strset *set, const char *s)
{
    return set->slots[find(set, s)] != NULL;
}

size_t srv_strset_probes(const srv_strset *set)
{
    return set->probes;
}
