/* A set of strings in an arena (open addressing, a keyed hash), for
 * deduplicating ids and subtracting one list from another in linear time,
 * whatever ids a client sends. The set keeps the
 * pointers it is given; they must outlive it. */
#ifndef CAIRN_SERVER_STRSET_H
#define CAIRN_SERVER_STRSET_H

#include "base/arena.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct srv_strset srv_strset;

/* Returns a set sized for up to max strings, or NULL when out of memory. */
srv_strset *srv_strset_create(srv_arena *a, size_t max);
/* Adds s; returns false when it was there already. At most max strings. */
bool srv_strset_add(srv_strset *set, const char *s);
bool srv_strset_has(srv_strset *set, const char *s);
/* Slots stepped over past the first, by every add and has so far: about
 * one per string when the hash spreads them, for tests. */
size_t srv_strset_probes(const srv_strset *set);

/* SipHash-2-4 of data under the 128-bit key (k0, k1), the set's hash
 * (keyed with a secret drawn once per process). */
uint64_t srv_siphash24(uint64_t k0, uint64_t k1, const void *data, size_t len);

#endif
