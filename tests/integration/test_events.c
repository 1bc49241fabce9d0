/* The event log end to end: libcairn against a real cairnd on 127.0.0.1. */
#include "cairn_test.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef ct_fixture fixture;

static void create_run(cairn_client *c, const char *run_id)
{
    const char *workers[] = {"w1", "w2"};
    assert_int_equal(ct_create_run(c, run_id, workers, 2), CAIRN_OK);
}

static cairn_status append_one(cairn_client *c, const char *run_id, const char *key,
                               const char *payload, cairn_append_result *res, cairn_error *err)
{
    cairn_event ev = {.type = "step", .payload = payload, .payload_len = strlen(payload)};
    cairn_append_request req = {.idempotency_key = key, .run_id = run_id, .events = &ev,
                                .events_count = 1};
    return cairn_append_events(c, &req, res, err);
}

/* Reads the whole log into page-sized chunks and checks seqs are 1..n. */
static size_t read_all(cairn_client *c, const char *run_id, char ***payloads)
{
    size_t n = 0, cap = 0;
    char **v = NULL;
    uint64_t from = 1;
    for (;;) {
        cairn_event_page page;
        cairn_error err;
        assert_int_equal(cairn_read_events(c, run_id, from, 1000, &page, &err), CAIRN_OK);
        if (page.events_count == 0) {
            assert_int_equal(page.next_seq, from);
            cairn_event_page_free(&page);
            break;
        }
        for (size_t i = 0; i < page.events_count; i++) {
            assert_int_equal(page.events[i].seq, n + 1);
            if (n == cap) {
                cap = cap ? cap * 2 : 256;
                v = realloc(v, cap * sizeof *v);
            }
            v[n++] = strndup(page.events[i].payload, page.events[i].payload_len);
        }
        from = page.next_seq;
        cairn_event_page_free(&page);
    }
    *payloads = v;
    return n;
}

static void free_strings(char **v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(v[i]);
    free(v);
}

static void append_then_read_returns_events_in_order(void **state)
{
    fixture *f = *state;
    create_run(f->client, "order");
    cairn_event evs[3] = {
        {.type = "a", .payload = "one", .payload_len = 3},
        {.type = "b", .worker_id = "w1", .payload = "", .payload_len = 0},
        {.type = "c", .payload = "three", .payload_len = 5},
    };
    cairn_append_request req = {.run_id = "order", .events = evs, .events_count = 3};
    cairn_append_result res;
    cairn_error err;
    assert_int_equal(cairn_append_events(f->client, &req, &res, &err), CAIRN_OK);
    assert_int_equal(res.first_seq, 1);
    assert_int_equal(res.last_seq, 3);
    assert_int_equal(res.events_since_checkpoint, 3);
    assert_false(res.replayed);

    cairn_event_page page;
    assert_int_equal(cairn_read_events(f->client, "order", 0, 0, &page, &err), CAIRN_OK);
    assert_int_equal(page.events_count, 3);
    assert_int_equal(page.next_seq, 4);
    assert_string_equal(page.events[0].type, "a");
    assert_string_equal(page.events[1].worker_id, "w1");
    assert_string_equal(page.events[1].type, "b");
    assert_int_equal(page.events[1].payload_len, 0);
    assert_memory_equal(page.events[2].payload, "three", 5);
    assert_int_equal(strlen(page.events[0].created_at), 27);
    cairn_event_page_free(&page);

    assert_int_equal(cairn_read_events(f->client, "order", 4, 10, &page, &err), CAIRN_OK);
    assert_int_equal(page.events_count, 0);
    assert_int_equal(page.next_seq, 4);
    cairn_event_page_free(&page);

    cairn_run run;
    assert_int_equal(cairn_get_run(f->client, "order", &run, &err), CAIRN_OK);
    assert_string_equal(run.state, "running");
    assert_int_equal(run.next_seq, 4);
    cairn_run_free(&run);
}

static void append_same_key_twice_returns_first_result(void **state)
{
    fixture *f = *state;
    create_run(f->client, "replay");
    cairn_append_result first, second;
    cairn_error err;
    assert_int_equal(append_one(f->client, "replay", "key-1", "x", &first, &err), CAIRN_OK);
    assert_int_equal(append_one(f->client, "replay", "key-1", "x", &second, &err), CAIRN_OK);
    assert_false(first.replayed);
    assert_true(second.replayed);
    assert_int_equal(second.first_seq, first.first_seq);
    assert_int_equal(second.last_seq, first.last_seq);

    char **payloads;
    size_t n = read_all(f->client, "replay", &payloads);
    assert_int_equal(n, 1);
    free_strings(payloads, n);
}

static void key_reused_with_another_request_is_already_exists(void **state)
{
    fixture *f = *state;
    create_run(f->client, "reuse");
    cairn_append_result res;
    cairn_error err;
    assert_int_equal(append_one(f->client, "reuse", "key-r", "x", &res, &err), CAIRN_OK);
    assert_int_equal(append_one(f->client, "reuse", "key-r", "y", &res, &err), CAIRN_ALREADY_EXISTS);
    assert_int_equal(err.attempts, 1); /* permanent: not retried */
    assert_non_null(strstr(err.message, "idempotency_key"));
    /* The same key in another run is another scope. */
    create_run(f->client, "reuse2");
    assert_int_equal(append_one(f->client, "reuse2", "key-r", "y", &res, &err), CAIRN_OK);
}

static void expected_next_seq_guards_the_append(void **state)
{
    fixture *f = *state;
    create_run(f->client, "guard");
    cairn_event ev = {.type = "t"};
    cairn_append_request req = {.run_id = "guard", .events = &ev, .events_count = 1,
                                .expected_next_seq = 1};
    cairn_append_result res;
    cairn_error err;
    assert_int_equal(cairn_append_events(f->client, &req, &res, &err), CAIRN_OK);
    assert_int_equal(cairn_append_events(f->client, &req, &res, &err), CAIRN_FAILED_PRECONDITION);
    assert_non_null(strstr(err.message, "expected_next_seq"));
    req.expected_next_seq = 2;
    assert_int_equal(cairn_append_events(f->client, &req, &res, &err), CAIRN_OK);
    assert_int_equal(res.first_seq, 2);
}

static void dedup_is_checked_before_expected_next_seq(void **state)
{
    fixture *f = *state;
    create_run(f->client, "dedup-first");
    cairn_event ev = {.type = "t"};
    cairn_append_request req = {.idempotency_key = "k", .run_id = "dedup-first", .events = &ev,
                                .events_count = 1, .expected_next_seq = 1};
    cairn_append_result res;
    cairn_error err;
    assert_int_equal(cairn_append_events(f->client, &req, &res, &err), CAIRN_OK);
    /* The run moved on, but a retry of the same request is a replay. */
    assert_int_equal(cairn_append_events(f->client, &req, &res, &err), CAIRN_OK);
    assert_true(res.replayed);
    assert_int_equal(res.first_seq, 1);
}

static void unknown_run_is_not_found(void **state)
{
    fixture *f = *state;
    cairn_append_result res;
    cairn_error err;
    assert_int_equal(append_one(f->client, "no-such-run", NULL, "x", &res, &err), CAIRN_NOT_FOUND);
    assert_non_null(strstr(err.message, "run_id"));
    cairn_run run;
    assert_int_equal(cairn_get_run(f->client, "no-such-run", &run, &err), CAIRN_NOT_FOUND);
    cairn_event_page page;
    assert_int_equal(cairn_read_events(f->client, "no-such-run", 1, 1, &page, &err), CAIRN_NOT_FOUND);
}

static void bad_ids_are_rejected_and_touch_no_files(void **state)
{
    fixture *f = *state;
    char long_id[130];
    memset(long_id, 'a', 129);
    long_id[129] = '\0';
    const char *bad[] = {"../etc", "a/b", "", long_id, "/abs", ".hidden", "a b", "x\x01"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        const char *workers[] = {"w"};
        cairn_create_run_request req = {.run_id = bad[i], .workers = workers, .workers_count = 1};
        cairn_run run;
        cairn_error err;
        assert_int_equal(cairn_create_run(f->client, &req, &run, &err), CAIRN_INVALID_ARGUMENT);
        assert_int_equal(strncmp(err.message, "run_id: must", 12), 0);
        assert_true(err.attempts <= 1); /* never retried */
        cairn_append_result res;
        assert_int_equal(append_one(f->client, bad[i], NULL, "x", &res, &err),
                         CAIRN_INVALID_ARGUMENT);
        assert_int_equal(cairn_get_run(f->client, bad[i], &run, &err), CAIRN_INVALID_ARGUMENT);
    }
    /* A worker id is checked the same way. */
    const char *workers[] = {"ok", "../etc"};
    cairn_create_run_request req = {.run_id = "fine", .workers = workers, .workers_count = 2};
    cairn_run run;
    cairn_error err;
    assert_int_equal(cairn_create_run(f->client, &req, &run, &err), CAIRN_INVALID_ARGUMENT);
    assert_non_null(strstr(err.message, "workers[1]"));
    /* No id ever becomes a path: the data dir holds only the store. */
    assert_true(ct_only_store_files(f->server.data_dir));
}

static void oversized_message_is_resource_exhausted_and_server_keeps_serving(void **state)
{
    fixture *f = *state;
    create_run(f->client, "big");
    cairn_client_options opts;
    cairn_client_options_init(&opts);
    opts.target = f->server.target;
    opts.max_message_bytes = 16u << 20; /* let the client send what the server refuses */
    cairn_client *big;
    cairn_error err;
    assert_int_equal(cairn_client_create(&opts, &big, &err), CAIRN_OK);
    /* Under valgrind: so that the attempt counted below is the first. */
    ct_client_connect(big, f->server.target);

    size_t mib = 1u << 20;
    char *payload = malloc(mib);
    memset(payload, 'p', mib);
    cairn_event evs[5];
    for (int i = 0; i < 5; i++)
        evs[i] = (cairn_event){.type = "big", .payload = payload, .payload_len = mib};
    cairn_append_request req = {.run_id = "big", .events = evs, .events_count = 5};
    cairn_append_result res;
    assert_int_equal(cairn_append_events(big, &req, &res, &err), CAIRN_RESOURCE_EXHAUSTED);
    assert_int_equal(err.attempts, 1);

    /* One payload over 1 MiB is a validation error naming the field. */
    evs[0].payload_len = mib + 1;
    char *over = malloc(mib + 1);
    memset(over, 'o', mib + 1);
    evs[0].payload = over;
    req.events_count = 1;
    assert_int_equal(cairn_append_events(big, &req, &res, &err), CAIRN_INVALID_ARGUMENT);
    assert_non_null(strstr(err.message, "events[0].payload"));
    /* Exactly 1 MiB is fine. */
    evs[0].payload = payload;
    evs[0].payload_len = mib;
    assert_int_equal(cairn_append_events(big, &req, &res, &err), CAIRN_OK);
    free(over);
    free(payload);
    cairn_client_destroy(big);

    cairn_serving s;
    assert_int_equal(cairn_health_check(f->client, NULL, &s, &err), CAIRN_OK);
    assert_int_equal(s, CAIRN_SERVING);
}

static void event_count_limits_are_enforced(void **state)
{
    fixture *f = *state;
    create_run(f->client, "counts");
    static cairn_event evs[1001];
    for (int i = 0; i < 1001; i++)
        evs[i] = (cairn_event){.type = "t"};
    cairn_append_request req = {.run_id = "counts", .events = evs, .events_count = 0};
    cairn_append_result res;
    cairn_error err;
    assert_int_equal(cairn_append_events(f->client, &req, &res, &err), CAIRN_INVALID_ARGUMENT);
    assert_non_null(strstr(err.message, "events: must hold 1..1000"));
    req.events_count = 1001;
    assert_int_equal(cairn_append_events(f->client, &req, &res, &err), CAIRN_INVALID_ARGUMENT);
    req.events_count = 1000;
    assert_int_equal(cairn_append_events(f->client, &req, &res, &err), CAIRN_OK);
    assert_int_equal(res.last_seq, 1000);
}

static void mutation_without_key_gets_a_generated_one(void **state)
{
    /* libcairn always sends a key: a NULL key becomes a random one. */
    fixture *f = *state;
    create_run(f->client, "nokey");
    cairn_append_result a, b;
    cairn_error err;
    assert_int_equal(append_one(f->client, "nokey", NULL, "x", &a, &err), CAIRN_OK);
    assert_int_equal(append_one(f->client, "nokey", NULL, "x", &b, &err), CAIRN_OK);
    assert_int_equal(b.first_seq, a.first_seq + 1); /* two calls, two effects */
}

static void create_run_is_idempotent_by_definition(void **state)
{
    fixture *f = *state;
    const char *workers[] = {"a", "b", "a", "c"};
    cairn_label labels[] = {{.key = "team", .value = "x"}, {.key = "env", .value = "prod"}};
    cairn_create_run_request req = {.idempotency_key = "cr-1", .run_id = "def", .workers = workers,
                                    .workers_count = 4, .labels = labels, .labels_count = 2};
    cairn_run run;
    cairn_error err;
    assert_int_equal(cairn_create_run(f->client, &req, &run, &err), CAIRN_OK);
    assert_int_equal(run.workers_count, 3); /* duplicates dropped, order kept */
    assert_string_equal(run.workers[0], "a");
    assert_string_equal(run.workers[2], "c");
    assert_int_equal(run.labels_count, 2);
    assert_string_equal(run.labels[0].key, "env"); /* sorted */
    assert_string_equal(run.state, "created");
    assert_false(run.replayed);
    cairn_run_free(&run);

    assert_int_equal(cairn_create_run(f->client, &req, &run, &err), CAIRN_OK);
    assert_true(run.replayed);
    cairn_run_free(&run);

    req.idempotency_key = "cr-2"; /* same definition, new key: the run */
    assert_int_equal(cairn_create_run(f->client, &req, &run, &err), CAIRN_OK);
    assert_false(run.replayed);
    assert_string_equal(run.run_id, "def");
    cairn_run_free(&run);

    req.idempotency_key = "cr-3";
    req.workers_count = 2; /* a different definition */
    assert_int_equal(cairn_create_run(f->client, &req, &run, &err), CAIRN_ALREADY_EXISTS);
    assert_non_null(strstr(err.message, "already exists"));
}

static void list_runs_pages_through_every_run_once(void **state)
{
    fixture *f = *state;
    for (int i = 0; i < 7; i++) {
        char id[32];
        snprintf(id, sizeof id, "list-%d", i);
        create_run(f->client, id);
    }
    int seen = 0, pages = 0;
    char token[64] = "";
    do {
        cairn_run_page page;
        cairn_error err;
        assert_int_equal(cairn_list_runs(f->client, 3, token, &page, &err), CAIRN_OK);
        assert_true(page.runs_count <= 3);
        for (size_t i = 0; i < page.runs_count; i++)
            if (strncmp(page.runs[i].run_id, "list-", 5) == 0)
                seen++;
        memcpy(token, page.next_page_token, sizeof token);
        cairn_run_page_free(&page);
        pages++;
    } while (*token && pages < 100);
    assert_int_equal(seen, 7);

    cairn_run_page page;
    cairn_error err;
    assert_int_equal(cairn_list_runs(f->client, 0, "garbage", &page, &err), CAIRN_INVALID_ARGUMENT);
    assert_non_null(strstr(err.message, "page_token"));
    assert_int_equal(cairn_list_runs(f->client, 1001, NULL, &page, &err), CAIRN_INVALID_ARGUMENT);
    assert_non_null(strstr(err.message, "page_size"));
}

static void read_events_pages_by_max_events(void **state)
{
    fixture *f = *state;
    create_run(f->client, "pages");
    static cairn_event evs[250];
    char tags[250][8];
    for (int i = 0; i < 250; i++) {
        snprintf(tags[i], sizeof tags[i], "%d", i + 1);
        evs[i] = (cairn_event){.type = "t", .payload = tags[i], .payload_len = strlen(tags[i])};
    }
    cairn_append_request req = {.run_id = "pages", .events = evs, .events_count = 250};
    cairn_append_result res;
    cairn_error err;
    assert_int_equal(cairn_append_events(f->client, &req, &res, &err), CAIRN_OK);

    uint64_t from = 1;
    int pages = 0;
    for (;;) {
        cairn_event_page page;
        assert_int_equal(cairn_read_events(f->client, "pages", from, 100, &page, &err), CAIRN_OK);
        if (!page.events_count) {
            cairn_event_page_free(&page);
            break;
        }
        assert_true(page.events_count <= 100);
        for (size_t i = 0; i < page.events_count; i++) {
            char want[8];
            snprintf(want, sizeof want, "%llu", (unsigned long long)page.events[i].seq);
            assert_int_equal(page.events[i].seq, from + i);
            assert_memory_equal(page.events[i].payload, want, strlen(want));
        }
        from = page.next_seq;
        pages++;
        cairn_event_page_free(&page);
    }
    assert_int_equal(from, 251);
    assert_int_equal(pages, 3);

    cairn_event_page page;
    assert_int_equal(cairn_read_events(f->client, "pages", 1, 1001, &page, &err),
                     CAIRN_INVALID_ARGUMENT);
    assert_non_null(strstr(err.message, "max_events"));
}

static void large_pages_stay_under_the_message_limit(void **state)
{
    fixture *f = *state;
    create_run(f->client, "heavy");
    size_t len = 900 * 1024;
    char *payload = malloc(len);
    memset(payload, 'h', len);
    cairn_event evs[3];
    for (int i = 0; i < 3; i++)
        evs[i] = (cairn_event){.type = "h", .payload = payload, .payload_len = len};
    cairn_error err;
    cairn_append_result res;
    for (int round = 0; round < 3; round++) { /* 9 events of 900 KiB: 8 MiB */
        cairn_append_request req = {.run_id = "heavy", .events = evs, .events_count = 3};
        assert_int_equal(cairn_append_events(f->client, &req, &res, &err), CAIRN_OK);
    }
    free(payload);
    uint64_t from = 1;
    int pages = 0;
    while (from <= 9) {
        cairn_event_page page;
        assert_int_equal(cairn_read_events(f->client, "heavy", from, 1000, &page, &err), CAIRN_OK);
        assert_true(page.events_count >= 1 && page.events_count <= 4);
        from = page.next_seq;
        pages++;
        cairn_event_page_free(&page);
    }
    assert_true(pages >= 3);
}

/* 16 threads x 50 appends: every seq from 1 to 800 exactly once. */
enum { THREADS = 16, PER_THREAD = 50 };

typedef struct worker_arg {
    cairn_client *client;
    int id;
    uint64_t seqs[PER_THREAD];
} worker_arg;

static void *append_worker(void *p)
{
    worker_arg *w = p;
    for (int i = 0; i < PER_THREAD; i++) {
        char payload[32];
        snprintf(payload, sizeof payload, "t%d-%d", w->id, i);
        cairn_append_result res;
        cairn_error err;
        if (append_one(w->client, "concurrent", NULL, payload, &res, &err) != CAIRN_OK)
            return NULL;
        w->seqs[i] = res.first_seq;
    }
    return w;
}

static void concurrent_appends_get_dense_unique_seqs(void **state)
{
    fixture *f = *state;
    create_run(f->client, "concurrent");
    static worker_arg args[THREADS];
    pthread_t t[THREADS];
    for (int i = 0; i < THREADS; i++) {
        args[i] = (worker_arg){.client = f->client, .id = i};
        pthread_create(&t[i], NULL, append_worker, &args[i]);
    }
    for (int i = 0; i < THREADS; i++) {
        void *ok;
        pthread_join(t[i], &ok);
        assert_non_null(ok);
    }
    static int hits[THREADS * PER_THREAD + 1];
    for (int i = 0; i < THREADS; i++)
        for (int k = 0; k < PER_THREAD; k++) {
            assert_in_range(args[i].seqs[k], 1, THREADS * PER_THREAD);
            hits[args[i].seqs[k]]++;
        }
    for (int s = 1; s <= THREADS * PER_THREAD; s++)
        assert_int_equal(hits[s], 1);

    char **payloads;
    size_t n = read_all(f->client, "concurrent", &payloads);
    assert_int_equal(n, THREADS * PER_THREAD);
    /* Each thread's payloads appear once, in that thread's order. */
    int next[THREADS] = {0};
    for (size_t i = 0; i < n; i++) {
        int tid, k;
        assert_int_equal(sscanf(payloads[i], "t%d-%d", &tid, &k), 2);
        assert_int_equal(k, next[tid]);
        next[tid]++;
    }
    free_strings(payloads, n);
}

static void health_answers_for_the_server_and_the_coordinator_only(void **state)
{
    /* (A made-up method answering UNIMPLEMENTED is tested in tests/interop,
     * which can call any method.) */
    fixture *f = *state;
    cairn_serving s;
    cairn_error err;
    assert_int_equal(cairn_health_check(f->client, "cairn.v1.Coordinator", &s, &err), CAIRN_OK);
    assert_int_equal(s, CAIRN_SERVING);
    assert_int_equal(cairn_health_check(f->client, "nope", &s, &err), CAIRN_NOT_FOUND);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(append_then_read_returns_events_in_order),
        cmocka_unit_test(append_same_key_twice_returns_first_result),
        cmocka_unit_test(key_reused_with_another_request_is_already_exists),
        cmocka_unit_test(expected_next_seq_guards_the_append),
        cmocka_unit_test(dedup_is_checked_before_expected_next_seq),
        cmocka_unit_test(unknown_run_is_not_found),
        cmocka_unit_test(bad_ids_are_rejected_and_touch_no_files),
        cmocka_unit_test(oversized_message_is_resource_exhausted_and_server_keeps_serving),
        cmocka_unit_test(event_count_limits_are_enforced),
        cmocka_unit_test(mutation_without_key_gets_a_generated_one),
        cmocka_unit_test(create_run_is_idempotent_by_definition),
        cmocka_unit_test(list_runs_pages_through_every_run_once),
        cmocka_unit_test(read_events_pages_by_max_events),
        cmocka_unit_test(large_pages_stay_under_the_message_limit),
        cmocka_unit_test(concurrent_appends_get_dense_unique_seqs),
        cmocka_unit_test(health_answers_for_the_server_and_the_coordinator_only),
    };
    return cmocka_run_group_tests_name("events", tests, ct_fixture_setup, ct_fixture_teardown);
}
