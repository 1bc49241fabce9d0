#include "store_support.h"
#include "base/sha256.h"

#include <setjmp.h>
#include <stdarg.h>
#include <string.h>

#include <cmocka.h>

Cairn__V1__Event **ct_make_events(srv_arena *a, size_t n, size_t len, uint8_t tag)
{
    Cairn__V1__Event **v = srv_arena_alloc(a, (n + 1) * sizeof *v);
    for (size_t i = 0; i < n; i++) {
        Cairn__V1__Event *e = srv_arena_alloc(a, sizeof *e);
        cairn__v1__event__init(e);
        e->type = i % 2 ? "step.done" : "step.started";
        e->worker_id = i % 3 ? "w1" : "";
        uint8_t *p = srv_arena_alloc(a, len + 2);
        memset(p, (uint8_t)(tag + i), len);
        if (len >= 2) {
            p[0] = 0;
            p[len - 1] = 0xff;
        }
        e->payload.data = p;
        e->payload.len = len;
        v[i] = e;
    }
    return v;
}

void ct_sha256_hex(const uint8_t *data, size_t len, char out[65])
{
    srv_sha256 *h = srv_sha256_new();
    assert_non_null(h);
    srv_sha256_update(h, data, len);
    srv_sha256_final_hex(h, out);
    srv_sha256_free(h);
}
