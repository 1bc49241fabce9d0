/* A set of strings in an arena (open addressing), for deduplicating ids
 * and subtracting one list from another in linear time. The set keeps the
 * pointers it is given; they must outlive it. */
#ifndef CAIRN_SERVER_STRSET_H
#define CAIRN_SERVER_STRSET_H

#include "base/arena.h"

#include <stdbool.h>
#include <stddef.h>

typedef struct srv_strset srv_strset;

/* Returns a set sized for up to max strings, or NULL when out of memory. */
srv_strset *srv_strset_create(srv_arena *a, size_t max);
/* Adds s; returns false when it was there already. At most max strings. */
bool srv_strset_add(srv_strset *set, const char *s);
bool srv_strset_has(const srv_strset *set, const char *s);

#endif
