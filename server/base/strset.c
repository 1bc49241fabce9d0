#include "base/strset.h"

#include <stdint.h>
#include <string.h>

struct srv_strset {
    const char **slots;
    size_t mask;
};

static uint64_t hash_str(const char *s)
{
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211ull;
    return h;
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
    return set;
}

static size_t find(const srv_strset *set, const char *s)
{
    size_t i = (size_t)hash_str(s) & set->mask;
    while (set->slots[i] && strcmp(set->slots[i], s) != 0)
        i = (i + 1) & set->mask;
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

bool srv_strset_has(const srv_strset *set, const char *s)
{
    return set->slots[find(set, s)] != NULL;
}
