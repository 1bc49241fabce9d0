/* What the store-level tests (tests/store's contract suite and
 * tests/unit's test_core) build alike, over cairnd_core. */
#ifndef CAIRN_TEST_STORE_SUPPORT_H
#define CAIRN_TEST_STORE_SUPPORT_H

#include "base/arena.h"
#include "cairn/v1/coordinator.pb-c.h"

#include <stddef.h>
#include <stdint.h>

/* n events (and a NULL after them) in the arena. Event i has type
 * step.started (even i) or step.done (odd i), worker_id "" (i a multiple
 * of 3) or w1, and a payload of len bytes of (tag + i), except that it
 * starts with NUL and ends with 0xff when len >= 2, so binary data is
 * exercised. */
Cairn__V1__Event **ct_make_events(srv_arena *a, size_t n, size_t len, uint8_t tag);

/* The SHA-256 of data as 64 lowercase hex digits and a NUL. Fails the
 * test when no hasher can be made. */
void ct_sha256_hex(const uint8_t *data, size_t len, char out[65]);

#endif
