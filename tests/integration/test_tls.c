/* TLS and mutual TLS between libcairn and a real cairnd, with
 * certificates made at test time (tests/support/certs.h): a valid server
 * certificate serves; an expired one, one from another CA and one for
 * another name fail the client's handshake (UNAVAILABLE with gRPC's
 * reason) while cairnd serves on; mutual TLS refuses clients without a
 * certificate of its CA; SIGHUP rotates the certificate without touching
 * open connections, and a bad new file keeps the old one; bad files at
 * start stop cairnd with the flag, the path and the reason. */
#include "cairn_test.h"
#include "certs.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

enum { WAIT_MS = 10000, DAY_S = 24 * 3600 };

/* In gRPC's reason for a client that refused the server's certificate. */
#define HANDSHAKE "Ssl handshake failed"

/* Made once for the group. */
typedef struct certs {
    char dir[256];
    ct_cert ca, foreign_ca;        /* the one the servers use, and another */
    ct_cert server;                /* localhost and 127.0.0.1, by ca */
    ct_cert expired;               /* the same names, by ca, ended yesterday */
    ct_cert foreign_server;        /* the same names, by foreign_ca */
    ct_cert other_name;            /* only other.example, by ca */
    ct_cert client, foreign_client; /* client certificates by ca and foreign_ca */
    char garbage[512];             /* a file with no PEM in it */
} certs;

static int group_setup(void **state)
{
    certs *k = calloc(1, sizeof *k);
    if (!k || ct_temp_dir(k->dir, sizeof k->dir, "cairn-tls-certs") != 0)
        return -1;
    *state = k;
    const char *local = "DNS:localhost,IP:127.0.0.1";
    const ct_cert_spec ca = {.common_name = "cairn test CA", .valid_to_s = DAY_S, .ca = true};
    const ct_cert_spec foreign_ca = {.common_name = "foreign CA", .valid_to_s = DAY_S, .ca = true};
    const ct_cert_spec server = {.common_name = "localhost", .alt_names = local,
                                 .valid_to_s = DAY_S};
    const ct_cert_spec expired = {.common_name = "localhost", .alt_names = local,
                                  .valid_from_s = -2 * DAY_S, .valid_to_s = -DAY_S};
    const ct_cert_spec other = {.common_name = "other.example",
                                .alt_names = "DNS:other.example", .valid_to_s = DAY_S};
    const ct_cert_spec client = {.common_name = "worker-1", .valid_to_s = DAY_S};
    snprintf(k->garbage, sizeof k->garbage, "%s/garbage.pem", k->dir);
    return ct_cert_make(k->dir, "ca", &ca, NULL, &k->ca) ||
                   ct_cert_make(k->dir, "foreign-ca", &foreign_ca, NULL, &k->foreign_ca) ||
                   ct_cert_make(k->dir, "server", &server, &k->ca, &k->server) ||
                   ct_cert_make(k->dir, "expired", &expired, &k->ca, &k->expired) ||
                   ct_cert_make(k->dir, "foreign-server", &server, &k->foreign_ca,
                                &k->foreign_server) ||
                   ct_cert_make(k->dir, "other-name", &other, &k->ca, &k->other_name) ||
                   ct_cert_make(k->dir, "client", &client, &k->ca, &k->client) ||
                   ct_cert_make(k->dir, "foreign-client", &client, &k->foreign_ca,
                                &k->foreign_client) ||
                   ct_write_text(k->garbage, "-----BEGIN CERTIFICATE-----\nnot base64!\n"
                                             "-----END CERTIFICATE-----\n")
               ? -1
               : 0;
}

static int group_teardown(void **state)
{
    certs *k = *state;
    if (!k)
        return 0;
    ct_cert *all[] = {&k->ca, &k->foreign_ca, &k->server, &k->expired, &k->foreign_server,
                      &k->other_name, &k->client, &k->foreign_client};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
        ct_cert_free(all[i]);
    ct_rmrf(k->dir);
    free(k);
    return 0;
}

/* The files a server reads, in its own temp dir, so a test can replace
 * them before a SIGHUP. */
typedef struct live {
    char cert[600], key[600];
} live;

/* Starts cairnd on copies of cert's files (live, in s's dir), with
 * client_ca (NULL: no mutual TLS). */
static void start_tls(ct_server *s, live *files, const ct_cert *cert, const char *client_ca)
{
    assert_int_equal(ct_server_init(s), 0);
    snprintf(files->cert, sizeof files->cert, "%s/live.crt", s->dir);
    snprintf(files->key, sizeof files->key, "%s/live.key", s->dir);
    assert_int_equal(ct_copy_file(cert->cert_path, files->cert), 0);
    assert_int_equal(ct_copy_file(cert->key_path, files->key), 0);
    const char *args[] = {"--tls-cert", files->cert, "--tls-key", files->key,
                          client_ca ? "--tls-client-ca" : NULL, client_ca, NULL};
    if (ct_server_start(s, 0, args) != 0)
        fail_msg("cairnd did not start (exit %d); see %s", s->exit_status, s->log_path);
}

/* A client of s over TLS (tls NULL: plaintext) making one attempt per
 * call: the first attempt fails fast, with gRPC's reason. */
static cairn_client *client_for(const ct_server *s, const cairn_tls_options *tls)
{
    cairn_client_options opts;
    cairn_client_options_init(&opts);
    opts.target = s->target;
    opts.tls = tls;
    opts.retry.max_attempts = 1;
    opts.retry.attempt_deadline_ms = WAIT_MS;
    opts.retry.call_deadline_ms = WAIT_MS;
    cairn_client *c = NULL;
    cairn_error err;
    if (cairn_client_create(&opts, &c, &err) != CAIRN_OK)
        fail_msg("cairn_client_create: %s", err.message);
    return c;
}

/* One unary call (GetRun of a run that does not exist: NOT_FOUND means
 * the call went through the TLS connection to the service). */
static cairn_status probe(cairn_client *c, cairn_error *err)
{
    cairn_run run;
    cairn_status rc = cairn_get_run(c, "absent", &run, err);
    if (rc == CAIRN_OK)
        cairn_run_free(&run);
    return rc;
}

static void expect_served(cairn_client *c)
{
    cairn_error err;
    cairn_status rc = probe(c, &err);
    if (rc != CAIRN_NOT_FOUND)
        fail_msg("want the call served (NOT_FOUND), got %s: %s", cairn_strerror(rc), err.message);
}

/* A new client with tls is served, and destroyed. */
/* client_for, for a client the test expects to be served. Under a slow
 * checker (CAIRN_TEST_TIME_SCALE > 1) a handshake can outlast libcairn's
 * connect timeout, so it probes until one attempt gets through (or the
 * scaled bound passes); ct_client_connect's plaintext warm-up cannot
 * share a TLS connection. */
static cairn_client *served_client_for(const ct_server *s, const cairn_tls_options *tls)
{
    cairn_client *c = client_for(s, tls);
    if (ct_time_scale() == 1)
        return c;
    struct timespec t0, t;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    cairn_error err;
    do
        clock_gettime(CLOCK_MONOTONIC, &t);
    while (probe(c, &err) == CAIRN_UNAVAILABLE && t.tv_sec - t0.tv_sec < 10 * ct_time_scale());
    return c;
}

static void expect_new_client_served(const ct_server *s, const cairn_tls_options *tls)
{
    cairn_client *c = served_client_for(s, tls);
    expect_served(c);
    cairn_client_destroy(c);
}

/* A new client with tls fails UNAVAILABLE, and the message carries
 * gRPC's reason, which contains want (NULL: anything). */
static void expect_new_client_refused(const ct_server *s, const cairn_tls_options *tls,
                                      const char *want)
{
    cairn_client *c = client_for(s, tls);
    cairn_error err;
    cairn_status rc = probe(c, &err);
    if (rc != CAIRN_UNAVAILABLE || (want && !strstr(err.message, want)))
        fail_msg("want UNAVAILABLE with \"%s\", got %s: %s", want ? want : "", cairn_strerror(rc),
                 err.message);
    assert_int_equal(err.grpc_status, 14);
    cairn_client_destroy(c);
}

/* Retries wait for a connection and end DEADLINE_EXCEEDED; the
 * message still says why the first attempt could not connect. */
static void expect_retries_tell_the_handshake_failure(const ct_server *s,
                                                      const cairn_tls_options *tls)
{
    cairn_client_options opts;
    cairn_client_options_init(&opts);
    opts.target = s->target;
    opts.tls = tls;
    opts.retry.max_attempts = 2;
    opts.retry.attempt_deadline_ms = 300;
    cairn_client *c = NULL;
    cairn_error err;
    assert_int_equal(cairn_client_create(&opts, &c, &err), CAIRN_OK);
    cairn_status rc = probe(c, &err);
    if (rc != CAIRN_DEADLINE_EXCEEDED || err.attempts != 2 || !strstr(err.message, HANDSHAKE))
        fail_msg("want DEADLINE_EXCEEDED after 2 attempts telling \"%s\", got %s after %d: %s",
                 HANDSHAKE, cairn_strerror(rc), err.attempts, err.message);
    cairn_client_destroy(c);
}

/* Waits until s's log holds text n times. */
static void wait_log(const ct_server *s, const char *text, int n)
{
    int count = 0;
    for (int waited = 0; waited < WAIT_MS; waited += 10) {
        char *log = ct_read_file(s->log_path, NULL);
        count = 0;
        for (const char *p = log; p && (p = strstr(p, text)); p += strlen(text))
            count++;
        free(log);
        if (count >= n)
            return;
        nanosleep(&(struct timespec){0, 10 * 1000 * 1000}, NULL);
    }
    fail_msg("want \"%s\" %d times in %s, found it %d times", text, n, s->log_path, count);
}

static bool log_has(const ct_server *s, const char *text)
{
    char *log = ct_read_file(s->log_path, NULL);
    bool has = log && strstr(log, text);
    free(log);
    return has;
}

static void stop_clean(ct_server *s)
{
    assert_int_equal(ct_server_stop(s), 0); /* it was still running, and exits 0 */
    ct_server_cleanup(s);
}

static void a_client_trusting_the_ca_is_served_and_a_plaintext_one_is_not(void **state)
{
    certs *k = *state;
    ct_server s;
    live files;
    start_tls(&s, &files, &k->server, NULL);
    assert_true(log_has(&s, "TLS: --tls-cert"));
    assert_true(log_has(&s, "CN=localhost, valid until"));

    const cairn_tls_options tls = {.ca_file = k->ca.cert_path};
    cairn_client *c = served_client_for(&s, &tls);
    const char *workers[] = {"w"};
    assert_int_equal(ct_create_run(c, "over-tls", workers, 1), CAIRN_OK);
    cairn_run run;
    cairn_error err;
    assert_int_equal(cairn_get_run(c, "over-tls", &run, &err), CAIRN_OK);
    assert_string_equal(run.run_id, "over-tls");
    cairn_run_free(&run);
    cairn_client_destroy(c);

    expect_new_client_refused(&s, NULL, NULL);
    expect_new_client_served(&s, &tls);
    stop_clean(&s);
}

static void an_expired_server_certificate_fails_the_handshake_and_cairnd_serves_on(void **state)
{
    certs *k = *state;
    ct_server s;
    live files;
    start_tls(&s, &files, &k->expired, NULL);
    assert_true(log_has(&s, "EXPIRED since"));

    const cairn_tls_options tls = {.ca_file = k->ca.cert_path};
    expect_new_client_refused(&s, &tls, HANDSHAKE);
    expect_retries_tell_the_handshake_failure(&s, &tls);
    /* Still serving: a valid certificate put in place is served at once. */
    assert_int_equal(ct_copy_file(k->server.cert_path, files.cert), 0);
    assert_int_equal(ct_copy_file(k->server.key_path, files.key), 0);
    assert_int_equal(kill(s.pid, SIGHUP), 0);
    wait_log(&s, "TLS reloaded", 1);
    expect_new_client_served(&s, &tls);
    stop_clean(&s);
}

static void a_server_certificate_from_another_ca_fails_the_handshake(void **state)
{
    certs *k = *state;
    ct_server s;
    live files;
    start_tls(&s, &files, &k->foreign_server, NULL);
    const cairn_tls_options ours = {.ca_file = k->ca.cert_path};
    expect_new_client_refused(&s, &ours, HANDSHAKE);
    const cairn_tls_options theirs = {.ca_file = k->foreign_ca.cert_path};
    expect_new_client_served(&s, &theirs);
    stop_clean(&s);
}

static void a_certificate_for_another_name_fails_unless_server_name_is_that_name(void **state)
{
    certs *k = *state;
    ct_server s;
    live files;
    start_tls(&s, &files, &k->other_name, NULL);
    const cairn_tls_options by_target = {.ca_file = k->ca.cert_path};
    expect_new_client_refused(&s, &by_target, "Peer name 127.0.0.1 is not in peer certificate");
    const cairn_tls_options wrong = {.ca_file = k->ca.cert_path, .server_name = "third.example"};
    expect_new_client_refused(&s, &wrong, "Peer name third.example is not in peer certificate");
    const cairn_tls_options named = {.ca_file = k->ca.cert_path, .server_name = "other.example"};
    expect_new_client_served(&s, &named);
    stop_clean(&s);
}

static void mutual_tls_refuses_a_client_without_a_certificate(void **state)
{
    certs *k = *state;
    ct_server s;
    live files;
    start_tls(&s, &files, &k->server, k->ca.cert_path);
    assert_true(log_has(&s, "clients must present a certificate that verifies against"));
    const cairn_tls_options anonymous = {.ca_file = k->ca.cert_path};
    /* TLS 1.3: the client hears only that the socket closed; cairnd's log
     * has gRPC's reason. */
    expect_new_client_refused(&s, &anonymous, NULL);
    wait_log(&s, "peer did not return a certificate", 1);
    const cairn_tls_options with_cert = {.ca_file = k->ca.cert_path,
                                         .cert_file = k->client.cert_path,
                                         .key_file = k->client.key_path};
    expect_new_client_served(&s, &with_cert);
    stop_clean(&s);
}

static void mutual_tls_refuses_a_client_certificate_from_a_foreign_ca(void **state)
{
    certs *k = *state;
    ct_server s;
    live files;
    start_tls(&s, &files, &k->server, k->ca.cert_path);
    const cairn_tls_options foreign = {.ca_file = k->ca.cert_path,
                                       .cert_file = k->foreign_client.cert_path,
                                       .key_file = k->foreign_client.key_path};
    expect_new_client_refused(&s, &foreign, NULL);
    wait_log(&s, "certificate verify failed", 1);
    const cairn_tls_options ours = {.ca_file = k->ca.cert_path, .cert_file = k->client.cert_path,
                                    .key_file = k->client.key_path};
    expect_new_client_served(&s, &ours);
    stop_clean(&s);
}

/* Counts the events a watch delivered. */
typedef struct watched {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    uint64_t last_seq;
} watched;

static int on_event(void *user, const cairn_event *ev)
{
    watched *w = user;
    pthread_mutex_lock(&w->mu);
    w->last_seq = ev->seq;
    pthread_cond_broadcast(&w->cv);
    pthread_mutex_unlock(&w->mu);
    return 0;
}

static void wait_seq(watched *w, uint64_t seq)
{
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += WAIT_MS / 1000;
    pthread_mutex_lock(&w->mu);
    while (w->last_seq < seq && pthread_cond_timedwait(&w->cv, &w->mu, &until) == 0)
        ;
    uint64_t got = w->last_seq;
    pthread_mutex_unlock(&w->mu);
    if (got < seq)
        fail_msg("the watch opened before the rotation got to seq %llu, want %llu",
                 (unsigned long long)got, (unsigned long long)seq);
}

static void append_one(cairn_client *c)
{
    cairn_event ev = {.type = "tick"};
    cairn_append_request req = {.run_id = "rotation", .events = &ev, .events_count = 1};
    cairn_append_result res;
    cairn_error err;
    if (cairn_append_events(c, &req, &res, &err) != CAIRN_OK)
        fail_msg("append on the connection made before the rotation: %s", err.message);
}

/* The old client's connection was made with the old certificate, which
 * only its CA verifies: had it reconnected after the rotation, its calls
 * would fail. They go on, and so does its watch. */
static void sighup_rotation_keeps_open_connections_and_serves_new_ones_the_new_certificate(
    void **state)
{
    certs *k = *state;
    ct_server s;
    live files;
    start_tls(&s, &files, &k->server, NULL);
    const cairn_tls_options old_ca = {.ca_file = k->ca.cert_path};
    const cairn_tls_options new_ca = {.ca_file = k->foreign_ca.cert_path};
    cairn_client *before = served_client_for(&s, &old_ca);
    const char *workers[] = {"w"};
    assert_int_equal(ct_create_run(before, "rotation", workers, 1), CAIRN_OK);
    watched w = {.mu = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER};
    cairn_watch_request req = {.run_id = "rotation", .on_event = on_event, .user = &w};
    cairn_watcher *watcher = NULL;
    cairn_error err;
    assert_int_equal(cairn_watch_start(before, &req, &watcher, &err), CAIRN_OK);
    append_one(before);
    wait_seq(&w, 1);
    expect_new_client_refused(&s, &new_ca, HANDSHAKE);

    assert_int_equal(ct_copy_file(k->foreign_server.cert_path, files.cert), 0);
    assert_int_equal(ct_copy_file(k->foreign_server.key_path, files.key), 0);
    assert_int_equal(kill(s.pid, SIGHUP), 0);
    wait_log(&s, "received SIGHUP; TLS reloaded: --tls-cert", 1);

    expect_new_client_served(&s, &new_ca);
    expect_new_client_refused(&s, &old_ca, HANDSHAKE);
    for (uint64_t seq = 2; seq <= 4; seq++) {
        append_one(before);
        wait_seq(&w, seq);
    }
    expect_served(before);
    assert_int_equal(cairn_watch_stop(watcher, &err), CAIRN_OK);
    cairn_client_destroy(before);
    stop_clean(&s);
}

static void sighup_with_a_bad_file_keeps_the_old_certificate_and_logs_why(void **state)
{
    certs *k = *state;
    ct_server s;
    live files;
    start_tls(&s, &files, &k->server, NULL);
    const cairn_tls_options tls = {.ca_file = k->ca.cert_path};

    assert_int_equal(ct_copy_file(k->garbage, files.cert), 0);
    assert_int_equal(kill(s.pid, SIGHUP), 0);
    wait_log(&s, "TLS not reloaded", 1);
    char want[1400];
    snprintf(want, sizeof want, "--tls-cert %s: certificate 1 does not parse", files.cert);
    assert_true(log_has(&s, want));
    expect_new_client_served(&s, &tls);

    /* A certificate whose key was left behind: the key does not match. */
    assert_int_equal(ct_copy_file(k->foreign_server.cert_path, files.cert), 0);
    assert_int_equal(kill(s.pid, SIGHUP), 0);
    wait_log(&s, "TLS not reloaded", 2);
    snprintf(want, sizeof want, "--tls-key %s: does not match the certificate in --tls-cert %s",
             files.key, files.cert);
    assert_true(log_has(&s, want));
    expect_new_client_served(&s, &tls);

    assert_false(log_has(&s, "TLS reloaded"));
    assert_false(log_has(&s, "PRIVATE KEY")); /* no key material in the log */
    stop_clean(&s);
}

/* cairnd with these TLS files must exit 1 before it prints its address
 * (ct_server_start fails), with want in its log. */
static void expect_start_refused(const char *cert, const char *key, const char *ca,
                                 const char *want)
{
    ct_server s;
    assert_int_equal(ct_server_init(&s), 0);
    const char *args[] = {"--tls-cert", cert, "--tls-key", key,
                          ca ? "--tls-client-ca" : NULL, ca, NULL};
    assert_int_equal(ct_server_start(&s, 0, args), -1);
    assert_int_equal(s.exit_status, 1);
    if (!log_has(&s, want))
        fail_msg("want \"%s\" in %s", want, s.log_path);
    ct_server_cleanup(&s);
}

static void bad_tls_files_at_start_exit_1_naming_the_flag_the_path_and_why(void **state)
{
    certs *k = *state;
    char absent[600], want[1400];
    snprintf(absent, sizeof absent, "%s/absent.crt", k->dir);
    snprintf(want, sizeof want, "--tls-cert %s: cannot open: No such file or directory", absent);
    expect_start_refused(absent, k->server.key_path, NULL, want);
    snprintf(want, sizeof want, "--tls-cert %s: certificate 1 does not parse", k->garbage);
    expect_start_refused(k->garbage, k->server.key_path, NULL, want);
    snprintf(want, sizeof want, "--tls-key %s: no unencrypted PEM private key in it",
             k->server.cert_path);
    expect_start_refused(k->server.cert_path, k->server.cert_path, NULL, want);
    snprintf(want, sizeof want, "--tls-key %s: does not match the certificate in --tls-cert %s",
             k->client.key_path, k->server.cert_path);
    expect_start_refused(k->server.cert_path, k->client.key_path, NULL, want);
    snprintf(want, sizeof want, "--tls-client-ca %s: certificate 1 does not parse", k->garbage);
    expect_start_refused(k->server.cert_path, k->server.key_path, k->garbage, want);
    snprintf(want, sizeof want, "--tls-client-ca %s: no PEM certificate in it",
             k->server.key_path);
    expect_start_refused(k->server.cert_path, k->server.key_path, k->server.key_path, want);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(a_client_trusting_the_ca_is_served_and_a_plaintext_one_is_not),
        cmocka_unit_test(an_expired_server_certificate_fails_the_handshake_and_cairnd_serves_on),
        cmocka_unit_test(a_server_certificate_from_another_ca_fails_the_handshake),
        cmocka_unit_test(a_certificate_for_another_name_fails_unless_server_name_is_that_name),
        cmocka_unit_test(mutual_tls_refuses_a_client_without_a_certificate),
        cmocka_unit_test(mutual_tls_refuses_a_client_certificate_from_a_foreign_ca),
        cmocka_unit_test(
            sighup_rotation_keeps_open_connections_and_serves_new_ones_the_new_certificate),
        cmocka_unit_test(sighup_with_a_bad_file_keeps_the_old_certificate_and_logs_why),
        cmocka_unit_test(bad_tls_files_at_start_exit_1_naming_the_flag_the_path_and_why),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
