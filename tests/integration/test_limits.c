/* Responses at the message limit, end to end: libcairn against a real
 * cairnd on 127.0.0.1. Every read must answer within the 4 MiB message
 * limit (docs/api.md, "Limits"): ListRuns pages by bytes as well as by
 * count, and the largest run, resume plan and checkpoint the request
 * limits allow each fit one message. */
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

/* The contract's limits (docs/api.md), restated: the test speaks for the
 * client. */
enum {
    ID_MAX = 128,
    WORKERS_MAX = 10000,
    LABELS_MAX = 64,
    LABEL_KEY_MAX = 128,
    LABEL_VALUE_MAX = 1024,
    RUN_STATE_MAX = 64 * 1024,
};

/* ---- helpers ---- */

/* n ids of exactly len characters: "<prefix><i>-xxx...", so each is
 * distinct and as long as asked. The caller frees with free_ids. */
static char **make_ids(const char *prefix, size_t n, size_t len)
{
    char **v = calloc(n, sizeof *v);
    assert_non_null(v);
    for (size_t i = 0; i < n; i++) {
        v[i] = malloc(len + 1);
        assert_non_null(v[i]);
        int k = snprintf(v[i], len + 1, "%s%05zu-", prefix, i);
        assert_true(k > 0 && (size_t)k < len);
        memset(v[i] + k, 'x', len - (size_t)k);
        v[i][len] = '\0';
    }
    return v;
}

static void free_ids(char **v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(v[i]);
    free(v);
}

static void create_run(cairn_client *c, const char *run_id, char **workers, size_t n,
                       const cairn_label *labels, size_t n_labels)
{
    cairn_create_run_request req = {.run_id = run_id, .workers = (const char *const *)workers,
                                     .workers_count = n, .labels = labels,
                                     .labels_count = n_labels};
    cairn_run run;
    cairn_error err;
    cairn_status rc = cairn_create_run(c, &req, &run, &err);
    if (rc != CAIRN_OK)
        fprintf(stderr, "create_run %s: %s\n", run_id, err.message);
    assert_int_equal(rc, CAIRN_OK);
    cairn_run_free(&run);
}

/* 64 labels at their limits: 128-byte keys, 1024-byte values. */
typedef struct big_labels {
    cairn_label labels[LABELS_MAX];
    char keys[LABELS_MAX][LABEL_KEY_MAX + 1];
    char values[LABELS_MAX][LABEL_VALUE_MAX + 1];
} big_labels;

static big_labels *make_labels(void)
{
    big_labels *b = calloc(1, sizeof *b);
    assert_non_null(b);
    for (int i = 0; i < LABELS_MAX; i++) {
        int k = snprintf(b->keys[i], sizeof b->keys[i], "key-%02d-", i);
        memset(b->keys[i] + k, 'k', LABEL_KEY_MAX - (size_t)k);
        k = snprintf(b->values[i], sizeof b->values[i], "value-%02d-", i);
        memset(b->values[i] + k, 'v', LABEL_VALUE_MAX - (size_t)k);
        b->labels[i] = (cairn_label){.key = b->keys[i], .value = b->values[i]};
    }
    return b;
}

/* Lists every run with page_size, asserting each page is within what a
 * message holds and not empty, that a token comes with every page but the
 * last, and that the runs come in creation order: run i is
 * "<prefix><i>" with `workers` workers. Returns the number of pages. */
static size_t list_all(cairn_client *c, uint32_t page_size, const char *prefix, size_t n_runs,
                       size_t workers)
{
    char token[64] = "";
    size_t seen = 0, pages = 0;
    do {
        cairn_run_page page;
        cairn_error err;
        cairn_status rc = cairn_list_runs(c, page_size, token, &page, &err);
        if (rc != CAIRN_OK)
            fprintf(stderr, "list_runs page %zu (page_size %u): %s\n", pages, page_size,
                    err.message);
        assert_int_equal(rc, CAIRN_OK);
        assert_true(page.runs_count > 0);
        pages++;
        for (size_t i = 0; i < page.runs_count; i++, seen++) {
            char want[64];
            snprintf(want, sizeof want, "%s%03zu", prefix, seen);
            assert_true(seen < n_runs);
            assert_string_equal(page.runs[i].run_id, want); /* each once, in order */
            assert_int_equal(page.runs[i].workers_count, workers);
        }
        memcpy(token, page.next_page_token, sizeof token);
        cairn_run_page_free(&page);
        if (seen < n_runs)
            assert_true(*token);
    } while (*token);
    assert_int_equal(seen, n_runs);
    return pages;
}

/* Completes workers[0..n) of run_id from THREADS threads at once, so
 * the ledger commits them in groups: 10,000 take about a second. */
enum { THREADS = 16 };

typedef struct completer {
    cairn_client *client;
    const char *run_id;
    char **workers;
    size_t n, first;
    cairn_status rc;
    char message[600];
} completer;

static void *complete_share(void *arg)
{
    completer *c = arg;
    for (size_t i = c->first; i < c->n && c->rc == CAIRN_OK; i += THREADS) {
        cairn_complete_request req = {.run_id = c->run_id, .worker_id = c->workers[i]};
        cairn_complete_result res;
        cairn_error err;
        if ((c->rc = cairn_complete_worker(c->client, &req, &res, &err)) != CAIRN_OK)
            snprintf(c->message, sizeof c->message, "%s", err.message);
    }
    return NULL;
}

static void complete_all(cairn_client *client, const char *run_id, char **workers, size_t n)
{
    completer c[THREADS];
    pthread_t t[THREADS];
    for (size_t i = 0; i < THREADS; i++) {
        c[i] = (completer){.client = client, .run_id = run_id, .workers = workers, .n = n,
                           .first = i};
        assert_int_equal(pthread_create(&t[i], NULL, complete_share, &c[i]), 0);
    }
    for (size_t i = 0; i < THREADS; i++) {
        pthread_join(t[i], NULL);
        if (c[i].rc != CAIRN_OK)
            fprintf(stderr, "complete_worker: %s\n", c[i].message);
        assert_int_equal(c[i].rc, CAIRN_OK);
    }
}

/* ---- ListRuns ---- */

/* The reporter's case: 100 runs of 1,200 workers of 50 characters are
 * about 6.3 MB of Run messages, more than one message holds. */
static void list_runs_of_100_runs_of_1200_long_worker_ids_lists_each_run_once(void **state)
{
    fixture *f = *state;
    enum { RUNS = 100, WORKERS = 1200, WORKER_LEN = 50 };
    char **workers = make_ids("worker-", WORKERS, WORKER_LEN);
    for (size_t i = 0; i < RUNS; i++) {
        char id[32];
        snprintf(id, sizeof id, "big-%03zu", i);
        create_run(f->client, id, workers, WORKERS, NULL, 0);
    }
    free_ids(workers, WORKERS);

    /* The default page (100) holds them all by count, not by bytes. */
    size_t pages = list_all(f->client, 0, "big-", RUNS, WORKERS);
    assert_true(pages >= 2);
    assert_int_equal(list_all(f->client, 1000, "big-", RUNS, WORKERS), pages);
    /* A page size under the byte budget still decides. */
    assert_int_equal(list_all(f->client, 7, "big-", RUNS, WORKERS), (RUNS + 6) / 7);

    /* A worker id comes back whole. */
    cairn_run_page page;
    cairn_error err;
    assert_int_equal(cairn_list_runs(f->client, 1, NULL, &page, &err), CAIRN_OK);
    assert_int_equal(page.runs_count, 1);
    assert_int_equal(strlen(page.runs[0].workers[WORKERS - 1]), WORKER_LEN);
    assert_memory_equal(page.runs[0].workers[WORKERS - 1], "worker-01199-xx", 15);
    cairn_run_page_free(&page);
}

/* ---- the largest run: GetRun and ListRuns ---- */

/* Three runs at every limit of CreateRun: 10,000 workers of 128
 * characters and 64 labels of 128 + 1024 bytes; the first has every
 * worker completed too. It is the largest Run there is, 2,694,478 bytes
 * (docs/api.md, "Limits"); the others are about 1.4 MB each. ListRuns
 * gives the first a page of its own (it and the next are past the page
 * budget) and the other two the next page; before pages had a byte
 * budget, the three were one 5.4 MB message and the call failed. */
static void get_run_and_list_runs_of_the_largest_runs_fit_the_message_limit(void **state)
{
    fixture *f = *state;
    enum { RUNS = 3 };
    char **workers = make_ids("w-", WORKERS_MAX, ID_MAX);
    big_labels *labels = make_labels();
    char run_ids[RUNS][ID_MAX + 1];
    for (int r = 0; r < RUNS; r++) {
        memset(run_ids[r], 'r', ID_MAX);
        run_ids[r][ID_MAX] = '\0';
        char prefix[16];
        snprintf(prefix, sizeof prefix, "max-%03d-", r);
        memcpy(run_ids[r], prefix, strlen(prefix));
        create_run(f->client, run_ids[r], workers, WORKERS_MAX, labels->labels, LABELS_MAX);
    }
    complete_all(f->client, run_ids[0], workers, WORKERS_MAX);

    cairn_run run;
    cairn_error err;
    cairn_status rc = cairn_get_run(f->client, run_ids[0], &run, &err);
    if (rc != CAIRN_OK)
        fprintf(stderr, "get_run: %s\n", err.message);
    assert_int_equal(rc, CAIRN_OK);
    assert_string_equal(run.state, "completed");
    assert_int_equal(run.workers_count, WORKERS_MAX);
    assert_string_equal(run.workers[WORKERS_MAX - 1], workers[WORKERS_MAX - 1]);
    assert_int_equal(run.completed_workers_count, WORKERS_MAX);
    assert_int_equal(strlen(run.completed_workers[0]), ID_MAX);
    assert_int_equal(run.labels_count, LABELS_MAX);
    assert_string_equal(run.labels[LABELS_MAX - 1].key, labels->keys[LABELS_MAX - 1]);
    assert_string_equal(run.labels[LABELS_MAX - 1].value, labels->values[LABELS_MAX - 1]);
    cairn_run_free(&run);

    static const size_t page_runs[] = {1, 2};
    char token[64] = "";
    size_t seen = 0;
    for (int i = 0; i < 2; i++) {
        cairn_run_page page;
        rc = cairn_list_runs(f->client, 1000, token, &page, &err);
        if (rc != CAIRN_OK)
            fprintf(stderr, "list_runs: %s\n", err.message);
        assert_int_equal(rc, CAIRN_OK);
        assert_int_equal(page.runs_count, page_runs[i]);
        for (size_t k = 0; k < page.runs_count; k++, seen++) {
            assert_string_equal(page.runs[k].run_id, run_ids[seen]);
            assert_int_equal(page.runs[k].workers_count, WORKERS_MAX);
            assert_int_equal(page.runs[k].completed_workers_count, seen == 0 ? WORKERS_MAX : 0);
            assert_int_equal(page.runs[k].labels_count, LABELS_MAX);
        }
        memcpy(token, page.next_page_token, sizeof token);
        cairn_run_page_free(&page);
        assert_true(i == 0 ? *token != '\0' : *token == '\0');
    }
    assert_int_equal(seen, RUNS);
    free(labels);
    free_ids(workers, WORKERS_MAX);
}

/* ---- ResumeRun ---- */

/* The largest plan: 10,000 given workers of 128 characters, none of
 * them done, and a checkpoint whose run_state is 64 KiB. */
static void resume_run_of_10000_given_workers_and_a_64k_state_returns_them_all(void **state)
{
    fixture *f = *state;
    char **workers = make_ids("w-", WORKERS_MAX, ID_MAX);
    create_run(f->client, "resume-max", workers, WORKERS_MAX, NULL, 0);
    char *run_state = malloc(RUN_STATE_MAX + 1);
    assert_non_null(run_state);
    memset(run_state, 's', RUN_STATE_MAX);
    run_state[RUN_STATE_MAX] = '\0';
    cairn_checkpoint_request req = {.run_id = "resume-max", .run_state = run_state};
    cairn_checkpoint cp;
    cairn_error err;
    assert_int_equal(cairn_create_checkpoint(f->client, &req, "{}", 2, &cp, &err), CAIRN_OK);

    /* Given in reverse: the plan keeps the given order. */
    char **given = malloc(WORKERS_MAX * sizeof *given);
    assert_non_null(given);
    for (size_t i = 0; i < WORKERS_MAX; i++)
        given[i] = workers[WORKERS_MAX - 1 - i];
    cairn_resume_plan plan;
    cairn_status rc = cairn_resume_run(f->client, "resume-max", (const char *const *)given,
                                       WORKERS_MAX, &plan, &err);
    if (rc != CAIRN_OK)
        fprintf(stderr, "resume_run: %s\n", err.message);
    assert_int_equal(rc, CAIRN_OK);
    assert_string_equal(plan.checkpoint_id, cp.checkpoint_id);
    assert_string_equal(plan.resumed_from_state, run_state);
    assert_int_equal(plan.workers_to_rerun_count, WORKERS_MAX);
    for (size_t i = 0; i < WORKERS_MAX; i++)
        assert_string_equal(plan.workers_to_rerun[i], given[i]);
    cairn_resume_plan_free(&plan);
    cairn_checkpoint_free(&cp);
    free(given);
    free(run_state);
    free_ids(workers, WORKERS_MAX);
}

/* ---- ListCheckpoints and GetLatestCheckpoint ---- */

/* The largest checkpoints: 10,000 completed workers of 128 characters
 * and a 64 KiB run_state, about 1.4 MB each; a page holds two. */
static void list_checkpoints_of_the_largest_checkpoints_pages_them_within_the_limit(void **state)
{
    fixture *f = *state;
    enum { CHECKPOINTS = 3 };
    char **workers = make_ids("w-", WORKERS_MAX, ID_MAX);
    create_run(f->client, "ckpt-max", workers, WORKERS_MAX, NULL, 0);
    char *run_state = malloc(RUN_STATE_MAX + 1);
    assert_non_null(run_state);
    char ids[CHECKPOINTS][CAIRN_ID_MAX + 1];
    for (int i = 0; i < CHECKPOINTS; i++) {
        memset(run_state, 'a' + i, RUN_STATE_MAX);
        run_state[RUN_STATE_MAX] = '\0';
        cairn_checkpoint_request req = {
            .run_id = "ckpt-max", .run_state = run_state,
            .completed_workers = (const char *const *)workers,
            .completed_workers_count = WORKERS_MAX};
        cairn_checkpoint cp;
        cairn_error err;
        cairn_status rc = cairn_create_checkpoint(f->client, &req, "{}", 2, &cp, &err);
        if (rc != CAIRN_OK)
            fprintf(stderr, "create_checkpoint: %s\n", err.message);
        assert_int_equal(rc, CAIRN_OK);
        assert_int_equal(cp.completed_workers_count, WORKERS_MAX);
        memcpy(ids[i], cp.checkpoint_id, sizeof ids[i]);
        cairn_checkpoint_free(&cp);
    }

    cairn_checkpoint_list list;
    cairn_error err;
    cairn_status rc = cairn_list_checkpoints(f->client, "ckpt-max", &list, &err);
    if (rc != CAIRN_OK)
        fprintf(stderr, "list_checkpoints: %s\n", err.message);
    assert_int_equal(rc, CAIRN_OK);
    assert_int_equal(list.count, CHECKPOINTS);
    for (int i = 0; i < CHECKPOINTS; i++) {
        assert_string_equal(list.checkpoints[i].checkpoint_id, ids[i]);
        assert_int_equal(strlen(list.checkpoints[i].run_state), RUN_STATE_MAX);
        assert_int_equal(list.checkpoints[i].run_state[0], 'a' + i);
        assert_int_equal(list.checkpoints[i].completed_workers_count, WORKERS_MAX);
        assert_string_equal(list.checkpoints[i].completed_workers[WORKERS_MAX - 1],
                            workers[WORKERS_MAX - 1]);
    }
    cairn_checkpoint_list_free(&list);

    cairn_checkpoint latest;
    assert_int_equal(cairn_get_latest_checkpoint(f->client, "ckpt-max", &latest, &err), CAIRN_OK);
    assert_string_equal(latest.checkpoint_id, ids[CHECKPOINTS - 1]);
    assert_int_equal(latest.completed_workers_count, WORKERS_MAX);
    cairn_checkpoint_free(&latest);
    free(run_state);
    free_ids(workers, WORKERS_MAX);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(
            list_runs_of_100_runs_of_1200_long_worker_ids_lists_each_run_once,
            ct_fixture_setup, ct_fixture_teardown),
        cmocka_unit_test_setup_teardown(
            get_run_and_list_runs_of_the_largest_runs_fit_the_message_limit, ct_fixture_setup,
            ct_fixture_teardown),
        cmocka_unit_test_setup_teardown(
            resume_run_of_10000_given_workers_and_a_64k_state_returns_them_all,
            ct_fixture_setup, ct_fixture_teardown),
        cmocka_unit_test_setup_teardown(
            list_checkpoints_of_the_largest_checkpoints_pages_them_within_the_limit,
            ct_fixture_setup, ct_fixture_teardown),
    };
    return cmocka_run_group_tests_name("limits", tests, NULL, NULL);
}
