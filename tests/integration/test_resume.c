/* Resume and worker completion end to end: libcairn against a real cairnd
 * on 127.0.0.1. Each test carries a behaviour of the original resilience
 * module's resume tests (fresh start, partial, all complete, order,
 * duplicates, empty set, run id, complex snapshot), now answered by the
 * server from the latest checkpoint and the event log, plus
 * CompleteWorker, which feeds that log. */
#include "cairn_test.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef ct_fixture fixture;

/* ---- helpers ---- */

static const char *const FOUR[] = {"w1", "w2", "w3", "w4"};

static void create_run(cairn_client *c, const char *run_id, const char *const *workers, size_t n)
{
    assert_int_equal(ct_create_run(c, run_id, workers, n), CAIRN_OK);
}

/* Appends n events whose payloads are "e<seq>"; first is the seq the
 * first of them gets. Returns the last seq. */
static uint64_t append_numbered(cairn_client *c, const char *run_id, uint64_t first, size_t n)
{
    static cairn_event evs[1000];
    static char payloads[1000][24];
    uint64_t seq = first;
    while (n) {
        size_t k = n < 1000 ? n : 1000;
        for (size_t i = 0; i < k; i++) {
            int len = snprintf(payloads[i], sizeof payloads[i], "e%llu",
                               (unsigned long long)(seq + i));
            evs[i] = (cairn_event){.type = "step", .payload = payloads[i],
                                   .payload_len = (size_t)len};
        }
        cairn_append_request req = {.run_id = run_id, .events = evs, .events_count = k,
                                    .expected_next_seq = seq};
        cairn_append_result res;
        cairn_error err;
        assert_int_equal(cairn_append_events(c, &req, &res, &err), CAIRN_OK);
        assert_int_equal(res.first_seq, seq);
        seq += k;
        n -= k;
    }
    return seq - 1;
}

static uint64_t complete(cairn_client *c, const char *run_id, const char *worker)
{
    cairn_complete_request req = {.run_id = run_id, .worker_id = worker};
    cairn_complete_result res;
    cairn_error err;
    cairn_status rc = cairn_complete_worker(c, &req, &res, &err);
    if (rc != CAIRN_OK)
        fprintf(stderr, "complete_worker: %s\n", err.message);
    assert_int_equal(rc, CAIRN_OK);
    return res.seq;
}

/* Checkpoints a short snapshot recording the given completed workers. */
static void checkpoint(cairn_client *c, const char *run_id, const char *run_state,
                       uint64_t events_count, const char *const *done, size_t n_done,
                       char id[CAIRN_ID_MAX + 1])
{
    cairn_checkpoint_request req = {.run_id = run_id, .run_state = run_state,
                                    .completed_workers = done, .completed_workers_count = n_done,
                                    .events_count = events_count};
    cairn_checkpoint cp;
    cairn_error err;
    cairn_status rc = cairn_create_checkpoint(c, &req, "{}", 2, &cp, &err);
    if (rc != CAIRN_OK)
        fprintf(stderr, "create_checkpoint: %s\n", err.message);
    assert_int_equal(rc, CAIRN_OK);
    memcpy(id, cp.checkpoint_id, CAIRN_ID_MAX + 1);
    cairn_checkpoint_free(&cp);
}

static void resume(cairn_client *c, const char *run_id, const char *const *all, size_t n,
                   cairn_resume_plan *plan)
{
    cairn_error err;
    cairn_status rc = cairn_resume_run(c, run_id, all, n, plan, &err);
    if (rc != CAIRN_OK)
        fprintf(stderr, "resume_run: %s\n", err.message);
    assert_int_equal(rc, CAIRN_OK);
}

/* Asserts the plan's workers_to_rerun are exactly want, in order. */
static void assert_rerun(const cairn_resume_plan *plan, const char *const *want, size_t n)
{
    if (plan->workers_to_rerun_count != n) {
        fprintf(stderr, "workers_to_rerun:");
        for (size_t i = 0; i < plan->workers_to_rerun_count; i++)
            fprintf(stderr, " %s", plan->workers_to_rerun[i]);
        fprintf(stderr, "\n");
    }
    assert_int_equal(plan->workers_to_rerun_count, n);
    for (size_t i = 0; i < n; i++)
        assert_string_equal(plan->workers_to_rerun[i], want[i]);
}

/* ---- resume ---- */

/* resume_no_checkpoint: without a checkpoint it is a fresh start: every worker, from seq 1, no
 * state. */
static void resume_no_checkpoint(void **state)
{
    fixture *f = *state;
    create_run(f->client, "rs-fresh", FOUR, 4);
    cairn_resume_plan plan;
    resume(f->client, "rs-fresh", NULL, 0, &plan);
    assert_string_equal(plan.run_id, "rs-fresh");
    assert_string_equal(plan.checkpoint_id, "");
    assert_string_equal(plan.resumed_from_state, "");
    assert_int_equal(plan.resume_from_seq, 1);
    assert_true(plan.success);
    assert_rerun(&plan, FOUR, 4);
    cairn_resume_plan_free(&plan);

    /* Events without completions change nothing: still from seq 1. */
    append_numbered(f->client, "rs-fresh", 1, 5);
    resume(f->client, "rs-fresh", FOUR, 4, &plan);
    assert_int_equal(plan.resume_from_seq, 1);
    assert_string_equal(plan.checkpoint_id, "");
    assert_rerun(&plan, FOUR, 4);
    cairn_resume_plan_free(&plan);
}

/* resume_no_checkpoint_subtracts_log_completions: a fresh start still skips workers the log shows
 * completed. */
static void resume_no_checkpoint_subtracts_log_completions(void **state)
{
    fixture *f = *state;
    create_run(f->client, "rs-fresh-log", FOUR, 4);
    append_numbered(f->client, "rs-fresh-log", 1, 2);
    complete(f->client, "rs-fresh-log", "w3");
    complete(f->client, "rs-fresh-log", "w1");
    cairn_resume_plan plan;
    resume(f->client, "rs-fresh-log", NULL, 0, &plan);
    const char *want[] = {"w2", "w4"};
    assert_rerun(&plan, want, 2);
    assert_int_equal(plan.resume_from_seq, 1);
    assert_string_equal(plan.checkpoint_id, "");
    cairn_resume_plan_free(&plan);
}

/* resume_partial: workers a checkpoint records as completed are skipped; the rest rerun from after
 * it. */
static void resume_partial(void **state)
{
    fixture *f = *state;
    create_run(f->client, "rs-partial", FOUR, 4);
    append_numbered(f->client, "rs-partial", 1, 5);
    const char *done[] = {"w1", "w3"};
    char id[CAIRN_ID_MAX + 1];
    checkpoint(f->client, "rs-partial", "phase-2", 5, done, 2, id);
    cairn_resume_plan plan;
    resume(f->client, "rs-partial", FOUR, 4, &plan);
    const char *want[] = {"w2", "w4"};
    assert_rerun(&plan, want, 2);
    assert_string_equal(plan.checkpoint_id, id);
    assert_string_equal(plan.resumed_from_state, "phase-2");
    assert_int_equal(plan.resume_from_seq, 6);
    assert_true(plan.success);
    cairn_resume_plan_free(&plan);
}

/* resume_all_complete: when every worker completed nothing reruns and the resume succeeds. */
static void resume_all_complete(void **state)
{
    fixture *f = *state;
    /* Completed according to a checkpoint. */
    create_run(f->client, "rs-all-cp", FOUR, 4);
    char id[CAIRN_ID_MAX + 1];
    checkpoint(f->client, "rs-all-cp", "done", 0, FOUR, 4, id);
    cairn_resume_plan plan;
    resume(f->client, "rs-all-cp", NULL, 0, &plan);
    assert_int_equal(plan.workers_to_rerun_count, 0);
    assert_true(plan.success);
    assert_string_equal(plan.checkpoint_id, id);
    cairn_resume_plan_free(&plan);

    /* Completed according to the log (and the run says so). */
    create_run(f->client, "rs-all-log", FOUR, 4);
    for (int i = 0; i < 4; i++)
        complete(f->client, "rs-all-log", FOUR[i]);
    resume(f->client, "rs-all-log", NULL, 0, &plan);
    assert_int_equal(plan.workers_to_rerun_count, 0);
    assert_true(plan.success);
    assert_int_equal(plan.resume_from_seq, 1);
    cairn_resume_plan_free(&plan);
    cairn_run run;
    cairn_error err;
    assert_int_equal(cairn_get_run(f->client, "rs-all-log", &run, &err), CAIRN_OK);
    assert_string_equal(run.state, "completed");
    cairn_run_free(&run);
}

/* resume_order_preserved: workers to rerun come in the order all_workers gives them. */
static void resume_order_preserved(void **state)
{
    fixture *f = *state;
    create_run(f->client, "rs-order", FOUR, 4);
    const char *done[] = {"w3"};
    char id[CAIRN_ID_MAX + 1];
    checkpoint(f->client, "rs-order", "s", 0, done, 1, id);
    const char *custom[] = {"w4", "w1", "w3", "w2"};
    cairn_resume_plan plan;
    resume(f->client, "rs-order", custom, 4, &plan);
    const char *want[] = {"w4", "w1", "w2"};
    assert_rerun(&plan, want, 3);
    cairn_resume_plan_free(&plan);
    /* Without all_workers, the run's own order. */
    resume(f->client, "rs-order", NULL, 0, &plan);
    const char *own[] = {"w1", "w2", "w4"};
    assert_rerun(&plan, own, 3);
    cairn_resume_plan_free(&plan);
    /* A subset asks about those only. */
    const char *subset[] = {"w2", "w3"};
    resume(f->client, "rs-order", subset, 2, &plan);
    const char *only[] = {"w2"};
    assert_rerun(&plan, only, 1);
    cairn_resume_plan_free(&plan);
}

/* resume_duplicate_workers_dropped: a worker listed twice in all_workers is rerun once, at its
 * first place. */
static void resume_duplicate_workers_dropped(void **state)
{
    fixture *f = *state;
    create_run(f->client, "rs-dups", FOUR, 4);
    const char *done[] = {"w4"};
    char id[CAIRN_ID_MAX + 1];
    checkpoint(f->client, "rs-dups", "s", 0, done, 1, id);
    const char *all[] = {"w2", "w1", "w2", "w4", "w1", "w3", "w4"};
    cairn_resume_plan plan;
    resume(f->client, "rs-dups", all, 7, &plan);
    const char *want[] = {"w2", "w1", "w3"};
    assert_rerun(&plan, want, 3);
    cairn_resume_plan_free(&plan);
}

/* resume_empty_completed: a checkpoint with no completed workers reruns every worker, from after
 * it. */
static void resume_empty_completed(void **state)
{
    fixture *f = *state;
    create_run(f->client, "rs-empty", FOUR, 4);
    append_numbered(f->client, "rs-empty", 1, 3);
    char id[CAIRN_ID_MAX + 1];
    checkpoint(f->client, "rs-empty", "early", 3, NULL, 0, id);
    cairn_resume_plan plan;
    resume(f->client, "rs-empty", FOUR, 4, &plan);
    assert_rerun(&plan, FOUR, 4);
    assert_string_equal(plan.checkpoint_id, id);
    assert_string_equal(plan.resumed_from_state, "early");
    assert_int_equal(plan.resume_from_seq, 4);
    assert_true(plan.success);
    cairn_resume_plan_free(&plan);
}

/* resume_run_id_preserved: the plan names the run exactly as given, punctuation included. */
static void resume_run_id_preserved(void **state)
{
    fixture *f = *state;
    const char *run_id = "Job-2026.01:batch_7-retry.2";
    create_run(f->client, run_id, FOUR, 2);
    char id[CAIRN_ID_MAX + 1];
    checkpoint(f->client, run_id, "s", 0, NULL, 0, id);
    cairn_resume_plan plan;
    resume(f->client, run_id, NULL, 0, &plan);
    assert_string_equal(plan.run_id, run_id);
    assert_string_equal(plan.checkpoint_id, id);
    cairn_resume_plan_free(&plan);
}

/* resume_complex_snapshot: a nested JSON snapshot and state come back intact, and the plan names
 * its checkpoint. */
static void resume_complex_snapshot(void **state)
{
    fixture *f = *state;
    create_run(f->client, "rs-complex", FOUR, 4);
    append_numbered(f->client, "rs-complex", 1, 2);
    const char snapshot[] =
        "{\n"
        "  \"version\": 3,\n"
        "  \"progress\": {\"w1\": {\"done\": true, \"items\": [1, 2, 3]},\n"
        "               \"w2\": {\"done\": false, \"cursor\": \"k\\u00e9y-\\\"42\\\"\"}},\n"
        "  \"metrics\": {\"rate\": 0.125, \"errors\": null,\n"
        "              \"tags\": [\"a\", \"\xc3\xa9t\xc3\xa9\"]},\n"
        "  \"blob\": \"\\u0000\\t\\n\",\n"
        "  \"empty\": {}, \"list\": [[], [[]], {\"x\": [{}]}]\n"
        "}\n";
    const char run_state[] = "{\"phase\": \"merge\", \"attempt\": 2}";
    const char *done[] = {"w1"};
    cairn_checkpoint_request req = {.run_id = "rs-complex", .run_state = run_state,
                                    .completed_workers = done, .completed_workers_count = 1,
                                    .events_count = 2};
    cairn_checkpoint cp;
    cairn_error err;
    assert_int_equal(
        cairn_create_checkpoint(f->client, &req, snapshot, sizeof snapshot - 1, &cp, &err),
        CAIRN_OK);

    cairn_resume_plan plan;
    resume(f->client, "rs-complex", NULL, 0, &plan);
    assert_string_equal(plan.checkpoint_id, cp.checkpoint_id);
    assert_string_equal(plan.resumed_from_state, run_state);
    assert_int_equal(plan.resume_from_seq, 3);
    const char *want[] = {"w2", "w3", "w4"};
    assert_rerun(&plan, want, 3);

    /* The plan's checkpoint loads back byte for byte. */
    cairn_load_request lreq = {.run_id = "rs-complex", .checkpoint_id = plan.checkpoint_id};
    cairn_checkpoint meta;
    void *data;
    size_t len;
    assert_int_equal(cairn_load_checkpoint(f->client, &lreq, &meta, &data, &len, &err), CAIRN_OK);
    assert_int_equal(len, sizeof snapshot - 1);
    assert_memory_equal(data, snapshot, len);
    assert_string_equal(meta.run_state, run_state);
    cairn_buffer_free(data);
    cairn_checkpoint_free(&meta);
    cairn_resume_plan_free(&plan);
    cairn_checkpoint_free(&cp);
}

/* resume_uses_latest_checkpoint: with several checkpoints the newest decides state, workers and
 * seq. */
static void resume_uses_latest_checkpoint(void **state)
{
    fixture *f = *state;
    create_run(f->client, "rs-latest", FOUR, 4);
    append_numbered(f->client, "rs-latest", 1, 2);
    const char *first_done[] = {"w1"};
    char first[CAIRN_ID_MAX + 1], second[CAIRN_ID_MAX + 1];
    checkpoint(f->client, "rs-latest", "one", 2, first_done, 1, first);
    append_numbered(f->client, "rs-latest", 3, 3);
    const char *second_done[] = {"w1", "w2"};
    checkpoint(f->client, "rs-latest", "two", 5, second_done, 2, second);
    cairn_resume_plan plan;
    resume(f->client, "rs-latest", NULL, 0, &plan);
    assert_string_equal(plan.checkpoint_id, second);
    assert_string_equal(plan.resumed_from_state, "two");
    assert_int_equal(plan.resume_from_seq, 6);
    const char *want[] = {"w3", "w4"};
    assert_rerun(&plan, want, 2);
    cairn_resume_plan_free(&plan);
}

/* resume_subtracts_completions_after_checkpoint: workers completed after the checkpoint are
 * skipped; replay starts after it. */
static void resume_subtracts_completions_after_checkpoint(void **state)
{
    fixture *f = *state;
    create_run(f->client, "rs-after", FOUR, 4);
    append_numbered(f->client, "rs-after", 1, 3);
    const char *done[] = {"w1"};
    char id[CAIRN_ID_MAX + 1];
    checkpoint(f->client, "rs-after", "s", 3, done, 1, id);
    assert_int_equal(complete(f->client, "rs-after", "w4"), 4);
    append_numbered(f->client, "rs-after", 5, 2);
    assert_int_equal(complete(f->client, "rs-after", "w2"), 7);
    cairn_resume_plan plan;
    resume(f->client, "rs-after", NULL, 0, &plan);
    const char *want[] = {"w3"};
    assert_rerun(&plan, want, 1);
    assert_int_equal(plan.resume_from_seq, 4); /* events_count + 1 */
    assert_string_equal(plan.checkpoint_id, id);
    cairn_resume_plan_free(&plan);
}

/* resume_checkpoint_decides_for_the_events_it_covers: a completion the checkpoint covers but does
 * not list is rerun (the checkpoint is authoritative up to events_count). */
static void resume_checkpoint_decides_for_the_events_it_covers(void **state)
{
    fixture *f = *state;
    create_run(f->client, "rs-covered", FOUR, 4);
    assert_int_equal(complete(f->client, "rs-covered", "w1"), 1);
    append_numbered(f->client, "rs-covered", 2, 1);
    const char *done[] = {"w3"};
    char id[CAIRN_ID_MAX + 1];
    checkpoint(f->client, "rs-covered", "s", 2, done, 1, id);
    cairn_resume_plan plan;
    resume(f->client, "rs-covered", NULL, 0, &plan);
    const char *want[] = {"w1", "w2", "w4"};
    assert_rerun(&plan, want, 3);
    assert_int_equal(plan.resume_from_seq, 3);
    cairn_resume_plan_free(&plan);
}

/* resume_is_a_read: resuming changes nothing and answers the same each time. */
static void resume_is_a_read(void **state)
{
    fixture *f = *state;
    create_run(f->client, "rs-read", FOUR, 4);
    append_numbered(f->client, "rs-read", 1, 2);
    complete(f->client, "rs-read", "w2");
    for (int i = 0; i < 3; i++) {
        cairn_resume_plan plan;
        resume(f->client, "rs-read", NULL, 0, &plan);
        const char *want[] = {"w1", "w3", "w4"};
        assert_rerun(&plan, want, 3);
        cairn_resume_plan_free(&plan);
    }
    cairn_run run;
    cairn_error err;
    assert_int_equal(cairn_get_run(f->client, "rs-read", &run, &err), CAIRN_OK);
    assert_int_equal(run.next_seq, 4);
    assert_string_equal(run.latest_checkpoint_id, "");
    cairn_run_free(&run);
}

/* resume_rejects_unknown_run_and_bad_workers: an unknown run is NOT_FOUND; a bad worker id
 * INVALID_ARGUMENT naming it. */
static void resume_rejects_unknown_run_and_bad_workers(void **state)
{
    fixture *f = *state;
    cairn_resume_plan plan;
    cairn_error err;
    assert_int_equal(cairn_resume_run(f->client, "rs-no-such-run", NULL, 0, &plan, &err),
                     CAIRN_NOT_FOUND);
    assert_int_equal(err.attempts, 1);
    cairn_resume_state st;
    assert_int_equal(cairn_resume(f->client, "rs-no-such-run", NULL, 0, &st, &err),
                     CAIRN_NOT_FOUND);
    create_run(f->client, "rs-bad", FOUR, 4);
    const char *bad[] = {"w1", "../w2"};
    assert_int_equal(cairn_resume_run(f->client, "rs-bad", bad, 2, &plan, &err),
                     CAIRN_INVALID_ARGUMENT);
    assert_non_null(strstr(err.message, "all_workers[1]"));
}

/* resume_returns_events_to_replay: cairn_resume gives the plan and every event from resume_from_seq
 * on, across pages. */
static void resume_returns_events_to_replay(void **state)
{
    fixture *f = *state;
    create_run(f->client, "rs-replay", FOUR, 2);
    append_numbered(f->client, "rs-replay", 1, 10);
    char id[CAIRN_ID_MAX + 1];
    checkpoint(f->client, "rs-replay", "s", 10, NULL, 0, id);
    append_numbered(f->client, "rs-replay", 11, 700);
    assert_int_equal(complete(f->client, "rs-replay", "w1"), 711);
    assert_int_equal(append_numbered(f->client, "rs-replay", 712, 800), 1511);

    cairn_resume_state st;
    cairn_error err;
    assert_int_equal(cairn_resume(f->client, "rs-replay", NULL, 0, &st, &err), CAIRN_OK);
    assert_string_equal(st.plan.checkpoint_id, id);
    assert_int_equal(st.plan.resume_from_seq, 11);
    const char *want[] = {"w2"};
    assert_rerun(&st.plan, want, 1);
    assert_int_equal(st.events_count, 1501); /* more than one ReadEvents page (1000) */
    for (size_t i = 0; i < st.events_count; i++) {
        const cairn_event *e = &st.events[i];
        uint64_t seq = 11 + i;
        assert_int_equal(e->seq, seq);
        if (seq == 711) {
            assert_string_equal(e->type, "worker.completed");
            assert_string_equal(e->worker_id, "w1");
            assert_int_equal(e->payload_len, 0);
            continue;
        }
        char p[24];
        int n = snprintf(p, sizeof p, "e%llu", (unsigned long long)seq);
        assert_string_equal(e->type, "step");
        assert_int_equal(e->payload_len, (size_t)n);
        assert_memory_equal(e->payload, p, (size_t)n);
        assert_int_equal(strlen(e->created_at), 27);
    }
    cairn_resume_state_free(&st);
}

/* resume_without_checkpoint_replays_the_whole_log: with no checkpoint cairn_resume returns every
 * event from seq 1. */
static void resume_without_checkpoint_replays_the_whole_log(void **state)
{
    fixture *f = *state;
    create_run(f->client, "rs-replay-all", FOUR, 4);
    append_numbered(f->client, "rs-replay-all", 1, 5);
    cairn_resume_state st;
    cairn_error err;
    assert_int_equal(cairn_resume(f->client, "rs-replay-all", NULL, 0, &st, &err), CAIRN_OK);
    assert_int_equal(st.plan.resume_from_seq, 1);
    assert_int_equal(st.events_count, 5);
    for (size_t i = 0; i < 5; i++) {
        char p[8];
        snprintf(p, sizeof p, "e%zu", i + 1);
        assert_int_equal(st.events[i].seq, i + 1);
        assert_memory_equal(st.events[i].payload, p, strlen(p));
    }
    cairn_resume_state_free(&st);
    /* A checkpoint covering the whole log leaves nothing to replay. */
    char id[CAIRN_ID_MAX + 1];
    checkpoint(f->client, "rs-replay-all", "s", 5, NULL, 0, id);
    assert_int_equal(cairn_resume(f->client, "rs-replay-all", NULL, 0, &st, &err), CAIRN_OK);
    assert_int_equal(st.plan.resume_from_seq, 6);
    assert_int_equal(st.events_count, 0);
    cairn_resume_state_free(&st);
}

/* ---- CompleteWorker ---- */

/* complete_worker_appends_event_and_completes_run: each completion is a worker.completed event; the
 * last completes the run. */
static void complete_worker_appends_event_and_completes_run(void **state)
{
    fixture *f = *state;
    const char *workers[] = {"alpha", "beta"};
    create_run(f->client, "cw-basic", workers, 2);
    append_numbered(f->client, "cw-basic", 1, 1);
    cairn_complete_request req = {.run_id = "cw-basic", .worker_id = "beta"};
    cairn_complete_result res;
    cairn_error err;
    assert_int_equal(cairn_complete_worker(f->client, &req, &res, &err), CAIRN_OK);
    assert_int_equal(res.seq, 2);
    assert_string_equal(res.run_state, "running");
    assert_false(res.replayed);

    cairn_run run;
    assert_int_equal(cairn_get_run(f->client, "cw-basic", &run, &err), CAIRN_OK);
    assert_string_equal(run.state, "running");
    assert_int_equal(run.completed_workers_count, 1);
    assert_string_equal(run.completed_workers[0], "beta");
    assert_int_equal(run.next_seq, 3);
    cairn_run_free(&run);

    cairn_event_page page;
    assert_int_equal(cairn_read_events(f->client, "cw-basic", 2, 10, &page, &err), CAIRN_OK);
    assert_int_equal(page.events_count, 1);
    assert_int_equal(page.events[0].seq, 2);
    assert_string_equal(page.events[0].type, "worker.completed");
    assert_string_equal(page.events[0].worker_id, "beta");
    assert_int_equal(page.events[0].payload_len, 0);
    cairn_event_page_free(&page);

    req.worker_id = "alpha";
    assert_int_equal(cairn_complete_worker(f->client, &req, &res, &err), CAIRN_OK);
    assert_int_equal(res.seq, 3);
    assert_string_equal(res.run_state, "completed");
    assert_int_equal(cairn_get_run(f->client, "cw-basic", &run, &err), CAIRN_OK);
    assert_string_equal(run.state, "completed");
    assert_int_equal(run.completed_workers_count, 2);
    assert_string_equal(run.completed_workers[0], "beta"); /* completion order */
    assert_string_equal(run.completed_workers[1], "alpha");
    assert_int_equal(run.next_seq, 4);
    cairn_run_free(&run);

    /* worker.completed is reserved: AppendEvents cannot forge one. */
    cairn_event ev = {.type = "worker.completed", .worker_id = "alpha"};
    cairn_append_request areq = {.run_id = "cw-basic", .events = &ev, .events_count = 1};
    cairn_append_result ares;
    assert_int_equal(cairn_append_events(f->client, &areq, &ares, &err), CAIRN_INVALID_ARGUMENT);
}

/* complete_worker_same_key_replays: a retry with the key returns the first seq and appends
 * nothing. */
static void complete_worker_same_key_replays(void **state)
{
    fixture *f = *state;
    create_run(f->client, "cw-replay", FOUR, 4);
    cairn_complete_request req = {.idempotency_key = "done-w2", .run_id = "cw-replay",
                                  .worker_id = "w2"};
    cairn_complete_result first, again;
    cairn_error err;
    assert_int_equal(cairn_complete_worker(f->client, &req, &first, &err), CAIRN_OK);
    assert_false(first.replayed);
    append_numbered(f->client, "cw-replay", 2, 3); /* the run moves on */
    assert_int_equal(cairn_complete_worker(f->client, &req, &again, &err), CAIRN_OK);
    assert_true(again.replayed);
    assert_int_equal(again.seq, first.seq);
    assert_string_equal(again.run_state, first.run_state);
    cairn_run run;
    assert_int_equal(cairn_get_run(f->client, "cw-replay", &run, &err), CAIRN_OK);
    assert_int_equal(run.next_seq, 5);
    assert_int_equal(run.completed_workers_count, 1);
    cairn_run_free(&run);
    /* The same key for another worker is a reuse. */
    req.worker_id = "w3";
    assert_int_equal(cairn_complete_worker(f->client, &req, &again, &err), CAIRN_ALREADY_EXISTS);
    assert_non_null(strstr(err.message, "idempotency_key"));
}

/* complete_worker_not_in_run_is_invalid: a worker the run does not have is INVALID_ARGUMENT;
 * nothing is appended. */
static void complete_worker_not_in_run_is_invalid(void **state)
{
    fixture *f = *state;
    create_run(f->client, "cw-stranger", FOUR, 4);
    cairn_complete_request req = {.run_id = "cw-stranger", .worker_id = "w9"};
    cairn_complete_result res;
    cairn_error err;
    assert_int_equal(cairn_complete_worker(f->client, &req, &res, &err), CAIRN_INVALID_ARGUMENT);
    assert_int_equal(strncmp(err.message, "worker_id", 9), 0);
    assert_non_null(strstr(err.message, "w9"));
    assert_int_equal(err.attempts, 1);
    cairn_run run;
    assert_int_equal(cairn_get_run(f->client, "cw-stranger", &run, &err), CAIRN_OK);
    assert_int_equal(run.next_seq, 1);
    assert_string_equal(run.state, "created");
    cairn_run_free(&run);
    req.worker_id = "../w1";
    assert_int_equal(cairn_complete_worker(f->client, &req, &res, &err), CAIRN_INVALID_ARGUMENT);
    req.run_id = "cw-no-such-run";
    req.worker_id = "w1";
    assert_int_equal(cairn_complete_worker(f->client, &req, &res, &err), CAIRN_NOT_FOUND);
}

/* complete_worker_twice_is_failed_precondition: completing again under a new key is refused, naming
 * the first seq. */
static void complete_worker_twice_is_failed_precondition(void **state)
{
    fixture *f = *state;
    create_run(f->client, "cw-twice", FOUR, 4);
    uint64_t seq = complete(f->client, "cw-twice", "w1");
    cairn_complete_request req = {.idempotency_key = "another-key", .run_id = "cw-twice",
                                  .worker_id = "w1"};
    cairn_complete_result res;
    cairn_error err;
    assert_int_equal(cairn_complete_worker(f->client, &req, &res, &err),
                     CAIRN_FAILED_PRECONDITION);
    assert_int_equal(err.attempts, 1);
    assert_non_null(strstr(err.message, "already completed"));
    char seq_text[32];
    snprintf(seq_text, sizeof seq_text, "seq %llu", (unsigned long long)seq);
    assert_non_null(strstr(err.message, seq_text));
    cairn_run run;
    assert_int_equal(cairn_get_run(f->client, "cw-twice", &run, &err), CAIRN_OK);
    assert_int_equal(run.next_seq, 2);
    cairn_run_free(&run);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(resume_no_checkpoint),
        cmocka_unit_test(resume_no_checkpoint_subtracts_log_completions),
        cmocka_unit_test(resume_partial),
        cmocka_unit_test(resume_all_complete),
        cmocka_unit_test(resume_order_preserved),
        cmocka_unit_test(resume_duplicate_workers_dropped),
        cmocka_unit_test(resume_empty_completed),
        cmocka_unit_test(resume_run_id_preserved),
        cmocka_unit_test(resume_complex_snapshot),
        cmocka_unit_test(resume_uses_latest_checkpoint),
        cmocka_unit_test(resume_subtracts_completions_after_checkpoint),
        cmocka_unit_test(resume_checkpoint_decides_for_the_events_it_covers),
        cmocka_unit_test(resume_is_a_read),
        cmocka_unit_test(resume_rejects_unknown_run_and_bad_workers),
        cmocka_unit_test(resume_returns_events_to_replay),
        cmocka_unit_test(resume_without_checkpoint_replays_the_whole_log),
        cmocka_unit_test(complete_worker_appends_event_and_completes_run),
        cmocka_unit_test(complete_worker_same_key_replays),
        cmocka_unit_test(complete_worker_not_in_run_is_invalid),
        cmocka_unit_test(complete_worker_twice_is_failed_precondition),
    };
    return cmocka_run_group_tests_name("resume", tests, ct_fixture_setup, ct_fixture_teardown);
}
