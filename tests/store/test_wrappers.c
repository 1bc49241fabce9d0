/* Contract: what the wrappers add to every backend (counters, fault
 * injection, the registry) and the lock an embedded backend holds on its
 * data dir. */
#include "contract.h"

#include <string.h>

static srv_store_stats stats_of(fx *f)
{
    srv_store_stats s;
    memset(&s, 0xa5, sizeof s);
    srv_store_get_stats(f->st, &s);
    return s;
}

void get_stats_counts_calls_and_failures_per_op(void **state)
{
    fx *f = *state;
    insert_run(f, "run-1", 1);
    srv_store_stats before = stats_of(f);
    assert_int_equal(before.calls[SRV_STORE_OP_RUN_INSERT], 1);
    assert_int_equal(before.failures[SRV_STORE_OP_RUN_INSERT], 0);

    srv_error err;
    srv_run_head h;
    bool found;
    srv_txn *t = rbegin(f);
    for (int i = 0; i < 3; i++)
        ok(srv_store_run_find(t, f->a, i ? "run-1" : "nope", &h, &found, &err), &err);
    srv_store_read_end(t);
    t = wbegin(f);
    char *workers[] = {"w0"};
    int64_t ref;
    ok(srv_store_savepoint(t, &err), &err); /* PostgreSQL: the failure ends only it */
    fails_with(srv_store_run_insert(t, "run-1", workers, 1, NULL, 0, NOW_US, &ref, &err), &err,
               SRV_ABORTED);
    srv_store_rollback_to(t);
    wcommit(t);

    srv_store_stats after = stats_of(f);
    for (int op = 0; op < SRV_STORE_N_OPS; op++) {
        uint64_t calls = after.calls[op] - before.calls[op];
        uint64_t failures = after.failures[op] - before.failures[op];
        uint64_t want_calls = op == SRV_STORE_OP_RUN_FIND                           ? 3
                              : op == SRV_STORE_OP_READ_BEGIN || op == SRV_STORE_OP_BEGIN ||
                                        op == SRV_STORE_OP_COMMIT || op == SRV_STORE_OP_RUN_INSERT ||
                                        op == SRV_STORE_OP_SAVEPOINT
                                  ? 1
                                  : 0;
        uint64_t want_failures = op == SRV_STORE_OP_RUN_INSERT ? 1 : 0;
        if (calls != want_calls || failures != want_failures)
            fail_msg("%s: %llu calls, %llu failures; expected %llu and %llu",
                     srv_store_op_name((srv_store_op)op), (unsigned long long)calls,
                     (unsigned long long)failures, (unsigned long long)want_calls,
                     (unsigned long long)want_failures);
    }
    /* "not found" is no failure; commits are timed */
    assert_true(after.commit_us_total >= before.commit_us_total);
    assert_true(after.commit_us_total >= after.commit_us_max);
}

void inject_fault_fails_exactly_the_nth_call_with_its_code_then_disarms(void **state)
{
    fx *f = *state;
    insert_run(f, "run-1", 1);
    srv_store_inject_fault(f->st, SRV_STORE_OP_RUN_FIND, 3, SRV_UNAVAILABLE);
    srv_store_stats before = stats_of(f);

    srv_error err;
    srv_run_head h;
    bool found;
    srv_txn *t = rbegin(f);
    for (int call = 1; call <= 6; call++) {
        memset(&err, 0, sizeof err);
        srv_code rc = srv_store_run_find(t, f->a, "run-1", &h, &found, &err);
        if (call != 3) {
            ok(rc, &err);
            assert_true(found);
            continue;
        }
        fails_with(rc, &err, SRV_UNAVAILABLE);
        assert_int_equal(err.code, SRV_UNAVAILABLE);
        assert_non_null(strstr(err.msg, "RUN_FIND"));
        assert_non_null(strstr(err.msg, "injected"));
    }
    /* other operations were never armed */
    Cairn__V1__Event **v;
    size_t n;
    ok(srv_store_events_read(t, f->a, &h, 1, 10, SIZE_MAX, &v, &n, &err), &err);
    srv_store_read_end(t);

    srv_store_stats after = stats_of(f);
    assert_int_equal(after.calls[SRV_STORE_OP_RUN_FIND] - before.calls[SRV_STORE_OP_RUN_FIND], 6);
    assert_int_equal(after.failures[SRV_STORE_OP_RUN_FIND] - before.failures[SRV_STORE_OP_RUN_FIND],
                     1);

    /* armed again, for the next call, with another code */
    srv_store_inject_fault(f->st, SRV_STORE_OP_READ_BEGIN, 1, SRV_RESOURCE_EXHAUSTED);
    t = NULL;
    fails_with(srv_store_read_begin(f->st, &t, &err), &err, SRV_RESOURCE_EXHAUSTED);
    assert_null(t);
    t = rbegin(f);
    srv_store_read_end(t);
}

void an_injected_fault_on_a_write_never_reaches_the_backend(void **state)
{
    fx *f = *state;
    insert_run(f, "run-1", 1);
    srv_store_inject_fault(f->st, SRV_STORE_OP_EVENTS_INSERT, 1, SRV_DATA_LOSS);
    srv_error err;
    srv_txn *t = wbegin(f);
    srv_run_head h = head_in(f, t, "run-1");
    fails_with(srv_store_events_insert(t, &h, make_events(f, 2, 4, 0), 2, NOW_US, &err), &err,
               SRV_DATA_LOSS);
    wcommit(t);
    assert_int_equal(head_of(f, "run-1").next_seq, 1);

    /* a failing commit leaves the transaction over and nothing stored */
    srv_store_inject_fault(f->st, SRV_STORE_OP_COMMIT, 1, SRV_UNAVAILABLE);
    t = wbegin(f);
    h = head_in(f, t, "run-1");
    ok(srv_store_events_insert(t, &h, make_events(f, 2, 4, 0), 2, NOW_US, &err), &err);
    fails_with(srv_store_commit(t, &err), &err, SRV_UNAVAILABLE);
    /* no rollback needed: the next transaction begins at once */
    t = wbegin(f);
    wcommit(t);
    assert_int_equal(head_of(f, "run-1").next_seq, 1);
    append(f, "run-1", make_events(f, 1, 4, 0), 1);
    assert_int_equal(head_of(f, "run-1").next_seq, 2);
}

void inject_fault_with_code_ok_disarms(void **state)
{
    fx *f = *state;
    srv_store_inject_fault(f->st, SRV_STORE_OP_BEGIN, 1, SRV_ABORTED);
    srv_store_inject_fault(f->st, SRV_STORE_OP_BEGIN, 1, SRV_OK);
    srv_txn *t = wbegin(f);
    wcommit(t);
    assert_int_equal(stats_of(f).failures[SRV_STORE_OP_BEGIN], 0);

    /* rearming replaces the earlier fault of the op */
    srv_store_inject_fault(f->st, SRV_STORE_OP_BEGIN, 1, SRV_ABORTED);
    srv_store_inject_fault(f->st, SRV_STORE_OP_BEGIN, 2, SRV_UNAVAILABLE);
    t = wbegin(f);
    wcommit(t);
    srv_error err;
    fails_with(srv_store_begin(f->st, &t, &err), &err, SRV_UNAVAILABLE);
    t = wbegin(f);
    wcommit(t);
}

void store_open_of_an_unknown_backend_is_invalid_argument_naming_store(void **state)
{
    fx *f = *state;
    srv_error err;
    srv_store *st = NULL;
    const srv_store_config cfg = {.data_dir = f->dir, .readers = 1};
    static const char *const names[] = {"nosuch", "", "SQLITE", "sqlite "};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        memset(&err, 0, sizeof err);
        fails_with(srv_store_open(names[i], &cfg, &st, &err), &err, SRV_INVALID_ARGUMENT);
        assert_null(st);
        assert_non_null(strstr(err.msg, "--store"));
        if (!strstr(err.msg, srv_store_names()))
            fail_msg("the message should list the backends: %s", err.msg);
    }
    assert_int_equal(count_files(f), 0); /* nothing opened, nothing made */
}

void store_names_and_op_names_name_the_backend_and_each_op(void **state)
{
    fx *f = *state;
    assert_non_null(strstr(srv_store_names(), f->backend));
    assert_string_equal(srv_store_op_name(SRV_STORE_OP_EVENTS_INSERT), "EVENTS_INSERT");
    assert_string_equal(srv_store_op_name(SRV_STORE_OP_READ_BEGIN), "READ_BEGIN");
    assert_string_equal(srv_store_op_name(SRV_STORE_OP_DEDUP_PUT), "DEDUP_PUT");
    assert_string_equal(srv_store_op_name(SRV_STORE_N_OPS), "?");
    assert_string_equal(srv_store_op_name((srv_store_op)-1), "?");
}

void destroying_null_is_a_no_op(void **state)
{
    (void)state;
    srv_store_close(NULL);
    srv_store_read_end(NULL);
    srv_store_stage_free(NULL);
    srv_store_blob_close(NULL);
}

void a_second_open_of_the_same_data_dir_fails_in_use(void **state)
{
    fx *f = *state;
    if (strcmp(f->backend, "sqlite") != 0)
        skip(); /* an embedded backend's lock; a shared one allows many */
    srv_error err;
    srv_store *second = NULL;
    const srv_store_config cfg = {.data_dir = f->dir, .readers = 1};
    fails_with(srv_store_open(f->backend, &cfg, &second, &err), &err, SRV_FAILED_PRECONDITION);
    assert_null(second);
    assert_non_null(strstr(err.msg, "in use"));
    assert_non_null(strstr(err.msg, f->dir));

    /* the first store is unharmed; once it closes, the dir is free */
    insert_run(f, "run-1", 1);
    close_store(f);
    ok(srv_store_open(f->backend, &cfg, &second, &err), &err);
    srv_store_close(second);
    open_store(f);
    assert_int_equal(head_of(f, "run-1").next_seq, 1);
}

static void count_hook(void *ctx)
{
    (*(int *)ctx)++;
}

void inject_hook_runs_before_the_nth_call_which_then_goes_on(void **state)
{
    fx *f = *state;
    insert_run(f, "run-1", 1);
    int ran = 0;
    srv_store_inject_hook(f->st, SRV_STORE_OP_EVENTS_INSERT, 2, count_hook, &ran);
    append(f, "run-1", make_events(f, 1, 4, 0), 1);
    assert_int_equal(ran, 0);
    append(f, "run-1", make_events(f, 1, 4, 0), 1);
    assert_int_equal(ran, 1);
    append(f, "run-1", make_events(f, 1, 4, 0), 1);
    assert_int_equal(ran, 1); /* once, then disarmed */
    assert_int_equal(head_of(f, "run-1").next_seq, 4);
    assert_int_equal(stats_of(f).failures[SRV_STORE_OP_EVENTS_INSERT], 0);
}
