/* A full disk: cairnd runs with the enospc.c shim preloaded, so after a
 * few MiB every file write fails with ENOSPC. Appends must fail with
 * RESOURCE_EXHAUSTED and a retry pushback, the server must keep serving
 * reads, and nothing acknowledged may be lost once the disk has room. */
#include "cairn_test.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { PAYLOAD = 64 * 1024, MAX_BATCHES = 1000 };

static cairn_status append_batch(cairn_client *c, int i, const char *payload, cairn_append_result *res,
                                 cairn_error *err)
{
    char key[32];
    snprintf(key, sizeof key, "batch-%d", i);
    cairn_event evs[4];
    for (int j = 0; j < 4; j++)
        evs[j] = (cairn_event){.type = "fill", .payload = payload, .payload_len = PAYLOAD};
    cairn_append_request req = {.idempotency_key = key, .run_id = "full", .events = evs,
                                .events_count = 4};
    return cairn_append_events(c, &req, res, err);
}

static void full_disk_refuses_writes_with_pushback_and_loses_nothing(void **state)
{
    (void)state;
    ct_server s;
    assert_int_equal(ct_server_init(&s), 0);
    s.env[0] = "LD_PRELOAD=" CT_ENOSPC_SHIM;
    s.env[1] = "CAIRN_FAULT_ENOSPC_AFTER=3000000";
    s.env[2] = "ASAN_OPTIONS=verify_asan_link_order=0";
    assert_int_equal(ct_server_start(&s, 0, NULL), 0);

    cairn_retry_policy once;
    cairn_retry_policy_init(&once);
    once.max_attempts = 1; /* see each answer as it is */
    cairn_client *c = ct_client(&s, &once);
    const char *workers[] = {"w"};
    cairn_create_run_request cr = {.run_id = "full", .workers = workers, .workers_count = 1};
    cairn_run run;
    cairn_error err;
    assert_int_equal(cairn_create_run(c, &cr, &run, &err), CAIRN_OK);
    cairn_run_free(&run);

    char *payload = malloc(PAYLOAD);
    memset(payload, 'f', PAYLOAD);
    int acked = 0;
    cairn_status st = CAIRN_OK;
    cairn_append_result res;
    while (acked < MAX_BATCHES && (st = append_batch(c, acked, payload, &res, &err)) == CAIRN_OK)
        acked++;
    assert_int_equal(st, CAIRN_RESOURCE_EXHAUSTED);
    assert_true(err.has_retry_pushback);
    assert_true(err.retry_pushback_ms > 0);
    assert_non_null(strstr(err.message, "disk full"));
    assert_int_equal(cairn_classify(st, &err), CAIRN_CLASS_TRANSIENT);
    assert_true(acked > 0);

    /* Still serving: health and reads answer, and the acknowledged log is intact. */
    cairn_serving serving;
    assert_int_equal(cairn_health_check(c, NULL, &serving, &err), CAIRN_OK);
    assert_int_equal(serving, CAIRN_SERVING);
    cairn_run now;
    assert_int_equal(cairn_get_run(c, "full", &now, &err), CAIRN_OK);
    assert_int_equal(now.next_seq, (uint64_t)acked * 4 + 1);
    cairn_run_free(&now);
    cairn_client_destroy(c);
    assert_int_equal(ct_server_stop(&s), 0);

    /* Room again: everything acknowledged is there, retries replay, and
     * the failed batch can now be applied. */
    memset(s.env, 0, sizeof s.env);
    assert_int_equal(ct_server_start(&s, 0, NULL), 0);
    c = ct_client(&s, &once);
    for (int i = 0; i < acked; i++) {
        assert_int_equal(append_batch(c, i, payload, &res, &err), CAIRN_OK);
        assert_true(res.replayed);
        assert_int_equal(res.first_seq, (uint64_t)i * 4 + 1);
    }
    assert_int_equal(append_batch(c, acked, payload, &res, &err), CAIRN_OK);
    assert_false(res.replayed);
    assert_int_equal(res.first_seq, (uint64_t)acked * 4 + 1);
    cairn_event_page page;
    uint64_t from = 1, n = 0;
    do {
        assert_int_equal(cairn_read_events(c, "full", from, 1000, &page, &err), CAIRN_OK);
        for (size_t i = 0; i < page.events_count; i++)
            assert_int_equal(page.events[i].seq, ++n);
        from = page.next_seq;
        size_t got = page.events_count;
        cairn_event_page_free(&page);
        if (!got)
            break;
    } while (1);
    assert_int_equal(n, (uint64_t)(acked + 1) * 4);
    free(payload);
    cairn_client_destroy(c);
    assert_int_equal(ct_server_stop(&s), 0);
    ct_server_cleanup(&s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(full_disk_refuses_writes_with_pushback_and_loses_nothing),
    };
    return cmocka_run_group_tests_name("disk_full", tests, NULL, NULL);
}
