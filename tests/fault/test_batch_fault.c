/* A write error in the middle of a batch: cairnd runs with the enospc.c
 * shim preloaded, and concurrent callers (threads, one append call each
 * of 3 MiB, so that a transaction outgrows SQLite's page cache and spills
 * pages to the WAL before COMMIT) append while the fault is armed. Which
 * callers share a batch is up to cairnd's timing; the rounds go on until
 * the fault hits. SQLite rolls the whole transaction back on such an error, and
 * the ledger must then fail every caller of the batch with the first
 * error and commit nothing of it (ledger.c, run_batch). Checked for the
 * callers the fault hit, whatever batches cairnd formed:
 *   - every caller of a failed batch gets the same code and message, the
 *     batch's first error (cairnd logs each failed batch with its size);
 *   - none of their events is in the log (read back);
 *   - cairnd keeps serving (an I/O error on a write is no failed fsync,
 *     so the store does not stop);
 *   - a retry with the same key applies once, and a second one replays. */
#include "cairn_test.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Each caller appends EVENTS events of PAYLOAD bytes (the largest
 * payload): 3 MiB, some 770 pages of 4 KiB, where SQLite's default page
 * cache holds about 480. So a transaction of one caller writes some 780
 * WAL frames in all, and one of two or more callers has spilled some
 * 1,070 before its second caller's statements end: the EIO scenario's
 * 930th uncommitted frame since the last commit is a spill while the
 * second caller of a batch (or a later one) runs. */
enum { CALLERS = 16, EVENTS = 3, PAYLOAD = 1024 * 1024, WARM = 3, MAX_ROUNDS = 5 };

typedef struct caller {
    cairn_client *client;
    pthread_barrier_t *start;
    char key[32];
    const char *payload;
    cairn_status st;
    cairn_error err;
    cairn_append_result res;
} caller;

/* The event's type is its key (or type), so the log read back tells whose
 * it is. */
static cairn_status append_typed(cairn_client *c, const char *key, const char *type, int n,
                                 const char *payload, size_t len, cairn_append_result *res,
                                 cairn_error *err)
{
    cairn_event ev[EVENTS];
    for (int i = 0; i < n; i++)
        ev[i] = (cairn_event){.type = type, .payload = payload, .payload_len = len};
    cairn_append_request req = {.idempotency_key = key, .run_id = "r", .events = ev,
                                .events_count = (size_t)n};
    return cairn_append_events(c, &req, res, err);
}

static cairn_status append(cairn_client *c, const char *key, const char *payload, size_t len,
                           cairn_append_result *res, cairn_error *err)
{
    return append_typed(c, key, key, EVENTS, payload, len, res, err);
}

static void *caller_main(void *arg)
{
    caller *k = arg;
    pthread_barrier_wait(k->start);
    k->st = append(k->client, k->key, k->payload, PAYLOAD, &k->res, &k->err);
    return NULL;
}

static cairn_client *client_once(const ct_server *s)
{
    cairn_retry_policy once;
    cairn_retry_policy_init(&once);
    once.max_attempts = 1; /* see each answer as it is */
    return ct_client(s, &once);
}

/* Reads run "r" back (checking its seqs are dense) and counts, for each
 * caller, the events whose type is its key; returns the "warm" ones. */
static int count_events(cairn_client *c, const caller *callers, int n_callers, int *counts)
{
    cairn_event_page page;
    cairn_error err;
    uint64_t from = 1, seq = 0;
    int warm = 0;
    memset(counts, 0, (size_t)n_callers * sizeof *counts);
    for (;;) {
        assert_int_equal(cairn_read_events(c, "r", from, 1000, &page, &err), CAIRN_OK);
        for (size_t i = 0; i < page.events_count; i++) {
            assert_int_equal(page.events[i].seq, ++seq);
            warm += strcmp(page.events[i].type, "warm") == 0;
            for (int j = 0; j < n_callers; j++)
                counts[j] += strcmp(page.events[i].type, callers[j].key) == 0;
        }
        from = page.next_seq;
        size_t got = page.events_count;
        cairn_event_page_free(&page);
        if (!got)
            return warm;
    }
}

/* Reads the failed batches cairnd logged past offset *from (and moves it
 * to the end): each batch's size is added to sizes[i] for the first
 * failed caller i with the batch's message. Returns how many it read. */
static int logged_batches(const ct_server *s, size_t *from, caller *const *failed, int n_failed,
                          int *sizes)
{
    size_t len;
    char *log = ct_read_file(s->log_path, &len);
    assert_non_null(log);
    int batches = 0;
    const char *tag = "ledger: a batch of ";
    for (char *p = strstr(log + *from, tag); p; p = strstr(p, tag)) {
        p += strlen(tag);
        int n = 0, used = 0;
        assert_int_equal(sscanf(p, "%d failed: %n", &n, &used), 1);
        char *msg = p + used, *eol = strchr(msg, '\n');
        if (eol)
            *eol = '\0';
        print_message("cairnd: a batch of %d failed: %s\n", n, msg);
        batches++;
        for (int i = 0; i < n_failed; i++)
            if (strcmp(failed[i]->err.message, msg) == 0) {
                sizes[i] += n;
                break; /* the first caller with this message keeps the count */
            }
        p = eol ? eol + 1 : msg + strlen(msg);
    }
    *from = len;
    free(log);
    return batches;
}

typedef struct scenario {
    const char *mode;           /* CAIRN_FAULT_WRITE */
    const char *paths;          /* CAIRN_FAULT_WRITE_PATHS */
    const char *spill;          /* CAIRN_FAULT_WRITE_SPILL, or NULL */
    cairn_status want;          /* what the callers of a failed batch get */
    const char *want_msg;       /* in their message */
    bool pushback;              /* with grpc-retry-pushback-ms */
    bool armed_until_disarmed;  /* the fault stays (retries fail until disarmed) */
    bool mid_transaction;       /* it must hit a statement of a batch of 2 or more */
} scenario;

static void run_scenario(const scenario *sc)
{
    ct_server s;
    assert_int_equal(ct_server_init(&s), 0);
    char arm[320], arm_env[400], paths_env[200], mode_env[100], spill_env[100];
    snprintf(arm, sizeof arm, "%s/arm", s.dir);
    snprintf(arm_env, sizeof arm_env, "CAIRN_FAULT_WRITE_ARM=%s", arm);
    snprintf(paths_env, sizeof paths_env, "CAIRN_FAULT_WRITE_PATHS=%s", sc->paths);
    snprintf(mode_env, sizeof mode_env, "CAIRN_FAULT_WRITE=%s", sc->mode);
    s.env[0] = "LD_PRELOAD=" CT_ENOSPC_SHIM;
    s.env[1] = "ASAN_OPTIONS=verify_asan_link_order=0";
    s.env[2] = mode_env;
    s.env[3] = paths_env;
    s.env[4] = arm_env;
    snprintf(spill_env, sizeof spill_env, "CAIRN_FAULT_WRITE_SPILL=%s", sc->spill ? sc->spill : "");
    s.env[5] = spill_env;
    assert_int_equal(ct_server_start(&s, 0, NULL), 0);

    cairn_client *c = client_once(&s);
    const char *workers[] = {"w"};
    assert_int_equal(ct_create_run(c, "r", workers, 1), CAIRN_OK);
    char *payload = malloc(PAYLOAD);
    assert_non_null(payload);
    memset(payload, 'p', PAYLOAD);
    cairn_append_result res;
    cairn_error err;
    for (int i = 0; i < WARM; i++) { /* some appends go through before the fault is armed */
        char key[16];
        snprintf(key, sizeof key, "warm-%d", i);
        assert_int_equal(append_typed(c, key, "warm", 1, payload, 100, &res, &err), CAIRN_OK);
    }
    size_t log_from = 0;
    free(ct_read_file(s.log_path, &log_from));

    int fd = open(arm, O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
    assert_true(fd >= 0);
    close(fd);

    /* Rounds of concurrent callers until the fault hits one (with the
     * spill filter it waits for a batch that outgrows the page cache). */
    static caller callers[MAX_ROUNDS * CALLERS];
    caller *failed[MAX_ROUNDS * CALLERS];
    int n_callers = 0, n_failed = 0;
    for (int round = 0; round < MAX_ROUNDS && !n_failed; round++) {
        pthread_barrier_t start;
        pthread_barrier_init(&start, NULL, CALLERS);
        pthread_t th[CALLERS];
        caller *k = &callers[n_callers];
        for (int i = 0; i < CALLERS; i++) {
            k[i] = (caller){.client = client_once(&s), .start = &start, .payload = payload};
            snprintf(k[i].key, sizeof k[i].key, "k-%d-%d", round, i);
            assert_int_equal(pthread_create(&th[i], NULL, caller_main, &k[i]), 0);
        }
        for (int i = 0; i < CALLERS; i++) {
            pthread_join(th[i], NULL);
            cairn_client_destroy(k[i].client);
            if (k[i].st != CAIRN_OK)
                failed[n_failed++] = &k[i];
        }
        pthread_barrier_destroy(&start);
        n_callers += CALLERS;
    }
    assert_true(n_failed > 0);
    print_message("%d of %d callers failed: %d %s\n", n_failed, n_callers, (int)failed[0]->st,
                  failed[0]->err.message);
    /* Nothing of a failed batch is in the log; every other caller's event
     * is there once. */
    static int counts[MAX_ROUNDS * CALLERS];
    assert_int_equal(count_events(c, callers, n_callers, counts), WARM);
    for (int i = 0; i < n_callers; i++)
        assert_int_equal(counts[i], callers[i].st == CAIRN_OK ? EVENTS : 0);

    if (sc->mid_transaction) { /* a statement failed, not COMMIT, in a batch of several */
        assert_true(n_failed >= 2);
        assert_null(strstr(failed[0]->err.message, "committing"));
    }

    /* Every caller of a failed batch got its first error: the callers'
     * messages and the batches cairnd logged match one to one. */
    int sizes[MAX_ROUNDS * CALLERS] = {0};
    assert_true(logged_batches(&s, &log_from, failed, n_failed, sizes) > 0);
    for (int i = 0; i < n_failed; i++) {
        caller *k = failed[i];
        assert_int_equal(k->st, sc->want);
        assert_non_null(strstr(k->err.message, sc->want_msg));
        assert_int_equal(k->err.has_retry_pushback, sc->pushback);
        if (sc->pushback)
            assert_true(k->err.retry_pushback_ms > 0);
        int same = 0, first = -1;
        for (int j = 0; j < n_failed; j++)
            if (strcmp(failed[j]->err.message, k->err.message) == 0) {
                same++;
                if (first < 0)
                    first = j;
            }
        assert_int_equal(sizes[first], same);
    }

    /* Still serving, and the store did not stop. */
    cairn_serving serving;
    assert_int_equal(cairn_health_check(c, NULL, &serving, &err), CAIRN_OK);
    assert_int_equal(serving, CAIRN_SERVING);
    char *log = ct_read_file(s.log_path, NULL);
    assert_null(strstr(log, "takes no more writes"));
    free(log);
    if (sc->armed_until_disarmed) {
        assert_int_equal(append(c, failed[0]->key, payload, PAYLOAD, &res, &err), sc->want);
        assert_int_equal(count_events(c, callers, n_callers, counts), WARM);
        for (int i = 0; i < n_callers; i++)
            assert_int_equal(counts[i], callers[i].st == CAIRN_OK ? EVENTS : 0);
        assert_int_equal(unlink(arm), 0);
    }

    /* Each failed caller's retry applies once; a second one replays it. */
    for (int i = 0; i < n_failed; i++) {
        caller *k = failed[i];
        assert_int_equal(append(c, k->key, payload, PAYLOAD, &res, &err), CAIRN_OK);
        assert_false(res.replayed);
        uint64_t seq = res.first_seq;
        assert_int_equal(append(c, k->key, payload, PAYLOAD, &res, &err), CAIRN_OK);
        assert_true(res.replayed);
        assert_int_equal(res.first_seq, seq);
    }
    assert_int_equal(count_events(c, callers, n_callers, counts), WARM);
    for (int i = 0; i < n_callers; i++)
        assert_int_equal(counts[i], EVENTS);

    free(payload);
    cairn_client_destroy(c);
    assert_int_equal(ct_server_stop(&s), 0);
    ct_server_cleanup(&s);
}

/* EIO once on a write of cairn.db-wal: a page spilled in the middle of a
 * batch. SQLite reports SQLITE_IOERR_WRITE and rolls back. */
static void wal_write_eio_mid_batch_fails_the_whole_batch(void **state)
{
    (void)state;
    const scenario sc = {.mode = "eio-once", .paths = "*/cairn.db-wal", .spill = "930",
                         .want = CAIRN_UNAVAILABLE, .want_msg = "disk I/O error",
                         .mid_transaction = true};
    run_scenario(&sc);
}

/* ENOSPC on every write that grows cairn.db or cairn.db-wal until the
 * test disarms it: RESOURCE_EXHAUSTED with a pushback. */
static void full_disk_on_growth_fails_whole_batches_with_pushback(void **state)
{
    (void)state;
    const scenario sc = {.mode = "enospc-grow", .paths = "*/cairn.db:*/cairn.db-wal",
                         .want = CAIRN_RESOURCE_EXHAUSTED, .want_msg = "disk full",
                         .pushback = true, .armed_until_disarmed = true};
    run_scenario(&sc);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(wal_write_eio_mid_batch_fails_the_whole_batch),
        cmocka_unit_test(full_disk_on_growth_fails_whole_batches_with_pushback),
    };
    return cmocka_run_group_tests_name("batch_fault", tests, NULL, NULL);
}
