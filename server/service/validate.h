/* Input checks done before the store is touched. Each returns SRV_OK or
 * INVALID_ARGUMENT with a message naming the field and the limit, e.g.
 * run_id: must match [A-Za-z0-9][A-Za-z0-9._:-]{0,127}, got "../etc" */
#ifndef CAIRN_SERVER_VALIDATE_H
#define CAIRN_SERVER_VALIDATE_H

#include "base/arena.h"
#include "base/error.h"
#include "base/id.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* field: an id (run_id, worker_id, holder, checkpoint_id). */
srv_code srv_check_id(const char *field, const char *s, srv_error *err);
/* Like srv_check_id, but the empty string is allowed. */
srv_code srv_check_optional_id(const char *field, const char *s, srv_error *err);
/* idempotency_key: 1..128 printable ASCII. */
srv_code srv_check_key(const char *s, srv_error *err);
/* A string of 1..max bytes. */
srv_code srv_check_length(const char *field, const char *s, size_t max, srv_error *err);
/* A count within lo..hi. */
srv_code srv_check_count(const char *field, size_t n, size_t lo, size_t hi, srv_error *err);
/* A page size: 0 means def, otherwise at most max; *out gets the size. */
srv_code srv_check_page(const char *field, uint32_t v, uint32_t def, uint32_t max,
                        uint32_t *out, srv_error *err);

/* Drops repeated strings from v[0..*n), keeping each first occurrence in
 * order; *n becomes the new count. Linear time (a hash set in the arena).
 * Returns SRV_OK or RESOURCE_EXHAUSTED. */
srv_code srv_dedup_strings(srv_arena *a, char **v, size_t *n, srv_error *err);

#endif
