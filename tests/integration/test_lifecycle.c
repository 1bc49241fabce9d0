/* cairnd as a process: crash and restart durability, clean shutdown under
 * load, the data-dir lock, flags. */
#include "cairn_test.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

enum { LOAD_THREADS = 8, MAX_BATCHES = 400, BATCH = 3, ACKS_BEFORE_STOP = 300 };

typedef struct load {
    cairn_client *client;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int acked;                     /* batches acknowledged, all threads */
    struct thread_log {
        int id;
        struct load *load;
        int n;                     /* batches acknowledged by this thread */
        uint64_t first_seq[MAX_BATCHES];
    } threads[LOAD_THREADS];
} load;

static void batch_events(int tid, int i, char payloads[BATCH][32], cairn_event evs[BATCH])
{
    for (int j = 0; j < BATCH; j++) {
        snprintf(payloads[j], 32, "t%d-%d-%d", tid, i, j);
        evs[j] = (cairn_event){.type = "load", .payload = payloads[j],
                               .payload_len = strlen(payloads[j])};
    }
}

static cairn_status append_batch(cairn_client *c, int tid, int i, cairn_append_result *res,
                                 cairn_error *err)
{
    char key[32], payloads[BATCH][32];
    cairn_event evs[BATCH];
    snprintf(key, sizeof key, "t%d-%d", tid, i);
    batch_events(tid, i, payloads, evs);
    cairn_append_request req = {.idempotency_key = key, .run_id = "durable", .events = evs,
                                .events_count = BATCH};
    return cairn_append_events(c, &req, res, err);
}

/* Appends until a call fails (the server went away) or MAX_BATCHES. */
static void *load_thread(void *p)
{
    struct thread_log *t = p;
    for (int i = 0; i < MAX_BATCHES; i++) {
        cairn_append_result res;
        cairn_error err;
        if (append_batch(t->load->client, t->id, i, &res, &err) != CAIRN_OK)
            break;
        t->first_seq[t->n++] = res.first_seq;
        pthread_mutex_lock(&t->load->mu);
        t->load->acked++;
        pthread_cond_broadcast(&t->load->cv);
        pthread_mutex_unlock(&t->load->mu);
    }
    return NULL;
}

static cairn_client *fail_fast_client(const ct_server *s)
{
    cairn_retry_policy p;
    cairn_retry_policy_init(&p);
    p.max_attempts = 1;
    p.attempt_deadline_ms = 5000;
    return ct_client(s, &p);
}

/* Runs the load, and stops the server with `sig` once ACKS_BEFORE_STOP
 * batches are acknowledged. Returns cairnd's exit status. */
static int load_then_stop(ct_server *s, load *l, int sig)
{
    l->client = fail_fast_client(s);
    assert_non_null(l->client);
    const char *workers[] = {"w"};
    cairn_create_run_request cr = {.run_id = "durable", .workers = workers, .workers_count = 1};
    cairn_run run;
    cairn_error err;
    assert_int_equal(cairn_create_run(l->client, &cr, &run, &err), CAIRN_OK);
    cairn_run_free(&run);

    pthread_mutex_init(&l->mu, NULL);
    pthread_cond_init(&l->cv, NULL);
    pthread_t t[LOAD_THREADS];
    for (int i = 0; i < LOAD_THREADS; i++) {
        l->threads[i] = (struct thread_log){.id = i, .load = l};
        pthread_create(&t[i], NULL, load_thread, &l->threads[i]);
    }
    pthread_mutex_lock(&l->mu);
    while (l->acked < ACKS_BEFORE_STOP)
        pthread_cond_wait(&l->cv, &l->mu);
    pthread_mutex_unlock(&l->mu);

    int status = 0;
    if (sig == SIGKILL)
        ct_server_kill(s);
    else
        status = ct_server_stop(s);
    for (int i = 0; i < LOAD_THREADS; i++)
        pthread_join(t[i], NULL);
    cairn_client_destroy(l->client);
    return status;
}

/* After a restart: the log is dense, every batch in it is whole and in
 * place, every acknowledged batch is there at its acknowledged seqs, and
 * every acknowledged key replays its first answer. */
static void verify_after_restart(ct_server *s, load *l)
{
    cairn_client *c = ct_client(s, NULL);
    assert_non_null(c);
    cairn_run run;
    cairn_error err;
    assert_int_equal(cairn_get_run(c, "durable", &run, &err), CAIRN_OK);
    uint64_t next = run.next_seq;
    cairn_run_free(&run);

    uint64_t seq = 1;
    while (seq < next) {
        cairn_event_page page;
        assert_int_equal(cairn_read_events(c, "durable", seq, 999, &page, &err), CAIRN_OK);
        assert_true(page.events_count > 0 && page.events_count % BATCH == 0);
        for (size_t i = 0; i < page.events_count; i += BATCH) {
            int tid, k, j;
            assert_int_equal(page.events[i].seq, seq + i);
            char want[32], got[32];
            /* A payload is bytes, not a string: no NUL after it. */
            snprintf(got, sizeof got, "%.*s", (int)page.events[i].payload_len,
                     (const char *)page.events[i].payload);
            assert_int_equal(sscanf(got, "t%d-%d-%d", &tid, &k, &j), 3);
            for (int b = 0; b < BATCH; b++) { /* all or nothing, contiguous */
                snprintf(want, sizeof want, "t%d-%d-%d", tid, k, b);
                assert_int_equal(page.events[i + b].payload_len, strlen(want));
                assert_memory_equal(page.events[i + b].payload, want, strlen(want));
            }
        }
        seq = page.next_seq;
        cairn_event_page_free(&page);
    }
    assert_int_equal(seq, next);

    int acked = 0;
    for (int t = 0; t < LOAD_THREADS; t++) {
        for (int i = 0; i < l->threads[t].n; i++) {
            cairn_append_result res;
            assert_int_equal(append_batch(c, t, i, &res, &err), CAIRN_OK);
            assert_true(res.replayed);
            assert_int_equal(res.first_seq, l->threads[t].first_seq[i]);
            acked++;
        }
    }
    assert_true(acked >= ACKS_BEFORE_STOP);
    cairn_client_destroy(c);
}

/* Load, stop with sig, restart on the same data dir, verify. */
static void stop_under_load_then_verify(int sig)
{
    ct_server s;
    static load l;
    memset(&l, 0, sizeof l);
    assert_int_equal(ct_server_init(&s), 0);
    assert_int_equal(ct_server_start(&s, 0, NULL), 0);
    int status = load_then_stop(&s, &l, sig);
    if (sig == SIGTERM)
        assert_int_equal(status, 0); /* a clean exit, even mid-load */
    assert_int_equal(ct_server_start(&s, 0, NULL), 0);
    verify_after_restart(&s, &l);
    assert_int_equal(ct_server_stop(&s), 0);
    ct_server_cleanup(&s);
}

static void kill_9_then_restart_keeps_acknowledged_events_and_keys(void **state)
{
    (void)state;
    stop_under_load_then_verify(SIGKILL);
}

static void sigterm_during_load_exits_cleanly(void **state)
{
    (void)state;
    stop_under_load_then_verify(SIGTERM);
}

static void second_cairnd_on_the_same_data_dir_refuses_to_start(void **state)
{
    (void)state;
    CT_SQLITE_ONLY("the data dir's LOCK: replicas share a PostgreSQL database on purpose");
    ct_server s;
    assert_int_equal(ct_server_init(&s), 0);
    assert_int_equal(ct_server_start(&s, 0, NULL), 0);
    const char *args[] = {"--listen", "127.0.0.1:0", "--data-dir", s.data_dir, NULL};
    char out[2048];
    assert_int_equal(ct_run_cairnd(args, out, sizeof out), 1);
    assert_non_null(strstr(out, "in use by another cairnd"));
    assert_int_equal(ct_server_stop(&s), 0);
    ct_server_cleanup(&s);
}

/* A data dir its group may write is refused before anything is made in
 * it: cairnd exits 1 with one line naming the directory and the reason. */
static void group_writable_data_dir_makes_cairnd_exit_1_with_one_line_naming_it(void **state)
{
    (void)state;
    CT_SQLITE_ONLY("the data dir's mode: the PostgreSQL store keeps nothing in it");
    ct_server s;
    assert_int_equal(ct_server_init(&s), 0);
    assert_int_equal(mkdir(s.data_dir, 0700), 0);
    assert_int_equal(chmod(s.data_dir, 0770), 0); /* chmod: the umask cannot hide it */
    if (ct_server_start(&s, 0, NULL) == 0) {
        ct_server_stop(&s);
        ct_server_cleanup(&s);
        fail_msg("cairnd served the group-writable data dir %s", s.data_dir);
    }
    assert_int_equal(s.exit_status, 1);
    char *log = ct_read_file(s.log_path, NULL);
    assert_non_null(log);
    const char *nl = strchr(log, '\n');
    if (!nl || nl[1] != '\0')
        fail_msg("want exactly one line, got: %s", log);
    assert_non_null(strstr(log, "error"));
    assert_non_null(strstr(log, s.data_dir));
    assert_non_null(strstr(log, "writable by group or others"));
    free(log);
    assert_int_equal(ct_count_entries(s.data_dir), 0);
    ct_server_cleanup(&s);
}

static void flags_are_checked_and_documented(void **state)
{
    (void)state;
    char out[4096];
    const char *help[] = {"--help", NULL};
    assert_int_equal(ct_run_cairnd(help, out, sizeof out), 0);
    assert_non_null(strstr(out, "--data-dir"));
    assert_non_null(strstr(out, "CAIRN_DATA_DIR"));
    const char *version[] = {"--version", NULL};
    assert_int_equal(ct_run_cairnd(version, out, sizeof out), 0);
    assert_non_null(strstr(out, "cairnd "));
    const char *threads[] = {"--threads", "0", NULL};
    assert_int_equal(ct_run_cairnd(threads, out, sizeof out), 2);
    assert_non_null(strstr(out, "--threads"));
    assert_non_null(strstr(out, "1..64"));
    const char *unknown[] = {"--frobnicate", NULL};
    assert_int_equal(ct_run_cairnd(unknown, out, sizeof out), 2);
    const char *level[] = {"--log-level", "loud", NULL};
    assert_int_equal(ct_run_cairnd(level, out, sizeof out), 2);
    assert_non_null(strstr(out, "--log-level"));
    /* No TLS yet: serving off loopback needs an explicit --insecure. */
    const char *exposed[] = {"--listen", "0.0.0.0:0", NULL};
    assert_int_equal(ct_run_cairnd(exposed, out, sizeof out), 2);
    assert_non_null(strstr(out, "--insecure"));
}

static void restart_on_the_same_port_serves_again(void **state)
{
    (void)state;
    ct_server s;
    assert_int_equal(ct_server_init(&s), 0);
    assert_int_equal(ct_server_start(&s, 0, NULL), 0);
    int port = s.port;
    ct_server_kill(&s);
    assert_int_equal(ct_server_start(&s, port, NULL), 0);
    assert_int_equal(s.port, port);
    cairn_client *c = ct_client(&s, NULL);
    cairn_serving serving;
    cairn_error err;
    assert_int_equal(cairn_health_check(c, NULL, &serving, &err), CAIRN_OK);
    assert_int_equal(serving, CAIRN_SERVING);
    cairn_client_destroy(c);
    assert_int_equal(ct_server_stop(&s), 0);
    ct_server_cleanup(&s);
}

/* --listen unix:PATH needs no --insecure: the socket file is made 0600
 * whatever the umask, so only this user can connect; libcairn talks to
 * it with a unix:PATH target. */
static void a_unix_socket_is_served_without_insecure_and_made_0600(void **state)
{
    (void)state;
    ct_server s;
    assert_int_equal(ct_server_init(&s), 0);
    snprintf(s.listen, sizeof s.listen, "unix:%s/cairnd.sock", s.dir); /* dir: 255 at most */
    const char *path = s.listen + 5;
    mode_t old = umask(022);
    int started = ct_server_start(&s, 0, NULL);
    umask(old);
    assert_int_equal(started, 0);
    assert_string_equal(s.target, s.listen);

    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    assert_true(S_ISSOCK(st.st_mode));
    assert_int_equal(st.st_mode & 0777, 0600);

    cairn_client *c = ct_client(&s, NULL);
    assert_non_null(c);
    const char *workers[] = {"w1"};
    assert_int_equal(ct_create_run(c, "over-unix", workers, 1), CAIRN_OK);
    cairn_event ev = {.type = "step", .payload = "hello", .payload_len = 5};
    cairn_append_request req = {.run_id = "over-unix", .events = &ev, .events_count = 1};
    cairn_append_result res;
    cairn_error err;
    assert_int_equal(cairn_append_events(c, &req, &res, &err), CAIRN_OK);
    assert_int_equal(res.first_seq, 1);
    cairn_event_page page;
    assert_int_equal(cairn_read_events(c, "over-unix", 1, 0, &page, &err), CAIRN_OK);
    assert_int_equal(page.events_count, 1);
    assert_memory_equal(page.events[0].payload, "hello", 5);
    cairn_event_page_free(&page);
    cairn_client_destroy(c);
    assert_int_equal(ct_server_stop(&s), 0);
    ct_server_cleanup(&s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(kill_9_then_restart_keeps_acknowledged_events_and_keys),
        cmocka_unit_test(sigterm_during_load_exits_cleanly),
        cmocka_unit_test(second_cairnd_on_the_same_data_dir_refuses_to_start),
        cmocka_unit_test(group_writable_data_dir_makes_cairnd_exit_1_with_one_line_naming_it),
        cmocka_unit_test(flags_are_checked_and_documented),
        cmocka_unit_test(restart_on_the_same_port_serves_again),
        cmocka_unit_test(a_unix_socket_is_served_without_insecure_and_made_0600),
    };
    return cmocka_run_group_tests_name("lifecycle", tests, NULL, NULL);
}
