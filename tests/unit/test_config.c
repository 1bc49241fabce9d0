/* cairnd's settings (config/config.c): which --listen addresses need
 * --insecure. No TLS or tokens yet, so only loopback is served without
 * it: 127.0.0.0/8 and ::1 written as addresses, or localhost names whose
 * every address is loopback. Names are never looked up in DNS here:
 * "localhost" resolves from /etc/hosts, and any other name is refused
 * before a lookup. */
#include "config/config.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <unistd.h>

#include <cmocka.h>

/* ---- helpers ---- */

/* srv_config_parse of "cairnd --listen listen [--insecure true]", with
 * what it printed on stderr in out. */
static srv_config_result parse_listen(const char *listen, bool insecure, char *out, size_t cap)
{
    char *argv[] = {"cairnd", "--listen", (char *)listen, "--insecure", "true", NULL};
    int argc = insecure ? 5 : 3;
    argv[argc] = NULL;
    FILE *tmp = tmpfile();
    assert_non_null(tmp);
    fflush(stderr);
    int saved = dup(STDERR_FILENO);
    dup2(fileno(tmp), STDERR_FILENO);
    srv_config cfg;
    srv_config_result rc = srv_config_parse(&cfg, argc, argv);
    fflush(stderr);
    dup2(saved, STDERR_FILENO);
    close(saved);
    rewind(tmp);
    size_t n = fread(out, 1, cap - 1, tmp);
    out[n] = '\0';
    fclose(tmp);
    if (rc == SRV_CONFIG_RUN)
        assert_string_equal(cfg.listen, listen);
    return rc;
}

static const char *const LOOPBACK[] = {
    "127.0.0.1:1", "127.1.2.3:1", "127.255.255.254:7070", "[::1]:1", "localhost:1",
};

/* Not loopback, or not known to be: names other than localhost are
 * refused without a lookup (127.example, 127.0.0.1.nip.io), whatever
 * DNS would say. */
static const char *const EXPOSED[] = {
    "127.example:1", "127.0.0.1.nip.io:1", "0.0.0.0:1",  "[::]:1",        "10.0.0.1:1",
    "128.0.0.1:1",   "[::ffff:10.0.0.1]:1", ":1",         "[::1:1",        "localhost.example:1",
    "example.com:1", "1.127.0.0:1", "127.0.0.1x:1",
};

enum { N_LOOPBACK = sizeof LOOPBACK / sizeof LOOPBACK[0] };
enum { N_EXPOSED = sizeof EXPOSED / sizeof EXPOSED[0] };

static int setup(void **state)
{
    (void)state;
    unsetenv("CAIRN_LISTEN");
    unsetenv("CAIRN_INSECURE");
    unsetenv("CAIRN_GRPC_MEMORY_BYTES");
    unsetenv("CAIRN_WATCH_RING_BYTES");
    unsetenv("CAIRN_PG_DSN");
    unsetenv("CAIRN_STORE");
    return 0;
}

/* srv_config_parse of argv, with what it printed on stderr in out. */
static srv_config_result parse_argv(char **argv, char *out, size_t cap, srv_config *cfg)
{
    int argc = 0;
    while (argv[argc])
        argc++;
    FILE *tmp = tmpfile();
    assert_non_null(tmp);
    fflush(stderr);
    int saved = dup(STDERR_FILENO);
    dup2(fileno(tmp), STDERR_FILENO);
    srv_config_result rc = srv_config_parse(cfg, argc, argv);
    fflush(stderr);
    dup2(saved, STDERR_FILENO);
    close(saved);
    rewind(tmp);
    size_t n = fread(out, 1, cap - 1, tmp);
    out[n] = '\0';
    fclose(tmp);
    return rc;
}

/* parse_argv of "cairnd <flag> <value>" (or no flag when flag is NULL). */
static srv_config_result parse_flag(const char *flag, const char *value, srv_config *cfg,
                                    char *out, size_t cap)
{
    char *argv[] = {"cairnd", (char *)flag, (char *)value, NULL};
    if (!flag)
        argv[1] = NULL;
    return parse_argv(argv, out, cap, cfg);
}

/* value must be refused with a message naming flag and the limit. */
static void assert_flag_refused(const char *flag, const char *value, const char *limit)
{
    srv_config cfg;
    char out[1024];
    if (parse_flag(flag, value, &cfg, out, sizeof out) != SRV_CONFIG_EXIT_USAGE)
        fail_msg("%s %s should be refused", flag, value);
    if (!strstr(out, flag) || !strstr(out, limit) || !strstr(out, value))
        fail_msg("refusing %s %s: expected the flag, the value and %s, got: %s", flag, value,
                 limit, out);
}

/* ---- through srv_config_parse ---- */

static void loopback_addresses_and_localhost_are_served_without_insecure(void **state)
{
    (void)state;
    for (size_t i = 0; i < N_LOOPBACK; i++) {
        char out[512];
        srv_config_result rc = parse_listen(LOOPBACK[i], false, out, sizeof out);
        if (rc != SRV_CONFIG_RUN)
            fail_msg("--listen %s should be accepted: %s", LOOPBACK[i], out);
        assert_string_equal(out, "");
    }
}

static void other_addresses_and_names_are_refused_without_insecure(void **state)
{
    (void)state;
    for (size_t i = 0; i < N_EXPOSED; i++) {
        char out[512];
        srv_config_result rc = parse_listen(EXPOSED[i], false, out, sizeof out);
        if (rc != SRV_CONFIG_EXIT_USAGE)
            fail_msg("--listen %s should be refused without --insecure", EXPOSED[i]);
        if (!strstr(out, "--insecure") || !strstr(out, "--listen"))
            fail_msg("the refusal of %s should name --listen and --insecure: %s", EXPOSED[i],
                     out);
        /* --insecure serves them (gRPC decides then whether it can). */
        assert_int_equal(parse_listen(EXPOSED[i], true, out, sizeof out), SRV_CONFIG_RUN);
    }
}

/* ---- srv_listen_is_loopback's reasons ---- */

/* listen must be refused with a message that starts with "--listen: ",
 * contains text, and ends naming --insecure. */
static void assert_refused(const char *listen, const char *text)
{
    char why[512] = "";
    if (srv_listen_is_loopback(listen, why, sizeof why))
        fail_msg("%s should not count as loopback", listen);
    if (strncmp(why, "--listen: ", 10) != 0 || !strstr(why, text) ||
        !strstr(why, "pass --insecure true"))
        fail_msg("refusing %s: expected \"--listen: ...%s...--insecure\", got: %s", listen,
                 text, why);
}

static void each_refusal_says_why_and_names_insecure(void **state)
{
    (void)state;
    assert_refused("0.0.0.0:1", "0.0.0.0:1 is not a loopback address (127.0.0.0/8)");
    assert_refused("10.0.0.1:1", "not a loopback address");
    assert_refused("[::]:1", "[::]:1 is not the loopback address [::1]");
    assert_refused("[localhost]:1", "not the loopback address [::1]");
    assert_refused("127.example:1", "127.example:1 names a host other than localhost");
    assert_refused("127.0.0.1.nip.io:1", "other than localhost");
    assert_refused("::1:1", "is not HOST:PORT, [IPv6]:PORT or unix:PATH");
    assert_refused(":1", "is not HOST:PORT");
    assert_refused("unix:", "unix: names a host other than localhost"); /* no path */
}

/* A localhost name that does not resolve is refused, not assumed to be
 * loopback. A label over 63 bytes fails inside the resolver, before any
 * query leaves the machine. */
static void a_localhost_name_that_does_not_resolve_is_refused(void **state)
{
    (void)state;
    char listen[128];
    memset(listen, 'a', 64);
    strcpy(listen + 64, ".localhost:1");
    assert_refused(listen, "cannot resolve aaaa");
    assert_refused(listen, ".localhost to check that it is loopback (");
}

static void localhost_and_unix_sockets_count_as_loopback(void **state)
{
    (void)state;
    char why[512];
    assert_true(srv_listen_is_loopback("localhost:7070", why, sizeof why));
    assert_true(srv_listen_is_loopback("LocalHost:7070", why, sizeof why));
    assert_true(srv_listen_is_loopback("127.0.0.1", why, sizeof why)); /* gRPC's default port */
    assert_true(srv_listen_is_loopback("unix:/run/cairn/cairnd.sock", why, sizeof why));
    assert_true(srv_listen_is_loopback("unix:cairnd.sock", why, sizeof why));
}

/* ---- memory limits ---- */

static void grpc_memory_bytes_defaults_to_1_gib_takes_0_or_16_mib_up(void **state)
{
    (void)state;
    srv_config cfg;
    char out[1024];
    assert_int_equal(parse_flag(NULL, NULL, &cfg, out, sizeof out), SRV_CONFIG_RUN);
    assert_int_equal(cfg.grpc_memory_bytes, 1073741824);
    assert_int_equal(parse_flag("--grpc-memory-bytes", "0", &cfg, out, sizeof out),
                     SRV_CONFIG_RUN);
    assert_int_equal(cfg.grpc_memory_bytes, 0);
    assert_int_equal(parse_flag("--grpc-memory-bytes", "16777216", &cfg, out, sizeof out),
                     SRV_CONFIG_RUN);
    assert_int_equal(cfg.grpc_memory_bytes, 16777216);
    setenv("CAIRN_GRPC_MEMORY_BYTES", "33554432", 1);
    assert_int_equal(parse_flag(NULL, NULL, &cfg, out, sizeof out), SRV_CONFIG_RUN);
    assert_int_equal(cfg.grpc_memory_bytes, 33554432);
    unsetenv("CAIRN_GRPC_MEMORY_BYTES");
    assert_flag_refused("--grpc-memory-bytes", "16777215", "16777216..2^50");
    assert_flag_refused("--grpc-memory-bytes", "1", "16777216..2^50");
    assert_flag_refused("--grpc-memory-bytes", "-1", "16777216..2^50");
    assert_flag_refused("--grpc-memory-bytes", "1125899906842625", "16777216..2^50");
    assert_flag_refused("--grpc-memory-bytes", "1GiB", "16777216..2^50");
}

static void watch_ring_bytes_defaults_to_64_mib_takes_0_to_2_40(void **state)
{
    (void)state;
    srv_config cfg;
    char out[1024];
    assert_int_equal(parse_flag(NULL, NULL, &cfg, out, sizeof out), SRV_CONFIG_RUN);
    assert_int_equal(cfg.watch_ring_bytes, 67108864);
    assert_int_equal(parse_flag("--watch-ring-bytes", "0", &cfg, out, sizeof out),
                     SRV_CONFIG_RUN);
    assert_int_equal(cfg.watch_ring_bytes, 0);
    assert_int_equal(parse_flag("--watch-ring-bytes", "1099511627776", &cfg, out, sizeof out),
                     SRV_CONFIG_RUN);
    assert_int_equal(cfg.watch_ring_bytes, 1099511627776LL);
    setenv("CAIRN_WATCH_RING_BYTES", "1048576", 1);
    assert_int_equal(parse_flag(NULL, NULL, &cfg, out, sizeof out), SRV_CONFIG_RUN);
    assert_int_equal(cfg.watch_ring_bytes, 1048576);
    unsetenv("CAIRN_WATCH_RING_BYTES");
    assert_flag_refused("--watch-ring-bytes", "1099511627777", "0..2^40");
    assert_flag_refused("--watch-ring-bytes", "-1", "0..2^40");
}

/* ---- --pg-dsn and passwords ---- */


static const char *const DSN_WITH_PASSWORD[] = {
    "host=db1 user=cairn password=secret",
    "password=secret host=db1",
    "host=db1 PASSWORD = 'secret'",
    "host=db1\tPassword=secret",
    "postgresql://cairn:secret@db1/cairn",
    "postgres://cairn:@db1:5432/cairn",
    "postgresql://cairn@db1/cairn?sslmode=require&password=secret",
};

static const char *const DSN_WITHOUT_PASSWORD[] = {
    "host=db1 user=cairn dbname=cairn",
    "host=db1 user=cairn passfile=/run/cairn/pgpass",
    "postgresql://cairn@db1:5432/cairn?sslmode=require",
    "postgresql://db1/cairn",
};

static void a_pg_dsn_with_a_password_on_the_command_line_is_refused_naming_pgpassfile(
    void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof DSN_WITH_PASSWORD / sizeof *DSN_WITH_PASSWORD; i++) {
        char arg[300], out[1024];
        srv_config cfg;
        snprintf(arg, sizeof arg, "--pg-dsn=%s", DSN_WITH_PASSWORD[i]);
        /* --pg-dsn=DSN and --pg-dsn DSN alike */
        char *forms[2][5] = {{"cairnd", "--store", "postgres", arg, NULL},
                             {"cairnd", "--pg-dsn", (char *)DSN_WITH_PASSWORD[i], NULL}};
        for (int form = 0; form < 2; form++) {
            srv_config_result rc = parse_argv(forms[form], out, sizeof out, &cfg);
            if (rc != SRV_CONFIG_EXIT_USAGE)
                fail_msg("accepted a password on the command line: %s", DSN_WITH_PASSWORD[i]);
            assert_non_null(strstr(out, "--pg-dsn"));
            assert_non_null(strstr(out, "PGPASSFILE"));
            assert_null(strstr(out, "secret")); /* not echoed either */
        }
    }
}

static void a_pg_dsn_without_a_password_is_taken_and_one_from_the_environment_too(
    void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof DSN_WITHOUT_PASSWORD / sizeof *DSN_WITHOUT_PASSWORD; i++) {
        char arg[300], out[1024];
        snprintf(arg, sizeof arg, "--pg-dsn=%s", DSN_WITHOUT_PASSWORD[i]);
        srv_config cfg;
        char *argv[] = {"cairnd", "--store", "postgres", arg, NULL};
        if (parse_argv(argv, out, sizeof out, &cfg) != SRV_CONFIG_RUN)
            fail_msg("refused %s: %s", DSN_WITHOUT_PASSWORD[i], out);
        assert_string_equal(cfg.pg_dsn, DSN_WITHOUT_PASSWORD[i]);
    }
    /* The environment is not what ps shows: a DSN there may carry one. */
    setenv("CAIRN_PG_DSN", DSN_WITH_PASSWORD[0], 1);
    char out[1024];
    srv_config cfg;
    char *argv[] = {"cairnd", "--store", "postgres", NULL};
    srv_config_result rc = parse_argv(argv, out, sizeof out, &cfg);
    unsetenv("CAIRN_PG_DSN");
    assert_int_equal(rc, SRV_CONFIG_RUN);
    assert_string_equal(cfg.pg_dsn, DSN_WITH_PASSWORD[0]);
}

/* ---- srv_config_reload (SIGHUP) ---- */

/* The log level comes again from the same sources, flag over environment,
 * and the report says what it was and what is not reloaded. */
static void reload_reads_the_log_level_again_from_the_flags_and_the_environment(void **state)
{
    (void)state;
    setenv("CAIRN_LOG_LEVEL", "warn", 1);
    char *argv[] = {"cairnd", "--log-level", "debug", NULL};
    char out[1024], report[512];
    srv_config running, next;
    assert_int_equal(parse_argv(argv, out, sizeof out, &running), SRV_CONFIG_RUN);
    assert_int_equal(running.log_level, SRV_LOG_DEBUG);
    assert_int_equal(srv_config_reload(&running, &next, 3, argv, report, sizeof report), 0);
    assert_int_equal(next.log_level, SRV_LOG_DEBUG);
    assert_non_null(strstr(report, "log level debug (unchanged); not reloadable: "));
    assert_non_null(strstr(report, "no config file, certificates or tokens yet"));

    char *env_only[] = {"cairnd", NULL};
    running.log_level = SRV_LOG_ERROR; /* as if its source had changed */
    assert_int_equal(srv_config_reload(&running, &next, 1, env_only, report, sizeof report), 0);
    unsetenv("CAIRN_LOG_LEVEL");
    assert_int_equal(next.log_level, SRV_LOG_WARN);
    assert_non_null(strstr(report, "log level warn (was error)"));
}

static void reload_of_settings_that_no_longer_parse_says_nothing_was_reloaded(void **state)
{
    (void)state;
    char *argv[] = {"cairnd", NULL};
    srv_config running, next;
    char out[1024], report[512];
    assert_int_equal(parse_argv(argv, out, sizeof out, &running), SRV_CONFIG_RUN);
    setenv("CAIRN_LOG_LEVEL", "loud", 1);
    fflush(stderr);
    int saved = dup(STDERR_FILENO), null = open("/dev/null", O_WRONLY);
    dup2(null, STDERR_FILENO); /* its usage message: cairnd's log */
    int rc = srv_config_reload(&running, &next, 1, argv, report, sizeof report);
    dup2(saved, STDERR_FILENO);
    close(saved);
    close(null);
    unsetenv("CAIRN_LOG_LEVEL");
    assert_int_equal(rc, -1);
    assert_non_null(strstr(report, "nothing: the settings no longer parse"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(loopback_addresses_and_localhost_are_served_without_insecure),
        cmocka_unit_test(other_addresses_and_names_are_refused_without_insecure),
        cmocka_unit_test(each_refusal_says_why_and_names_insecure),
        cmocka_unit_test(a_localhost_name_that_does_not_resolve_is_refused),
        cmocka_unit_test(localhost_and_unix_sockets_count_as_loopback),
        cmocka_unit_test(grpc_memory_bytes_defaults_to_1_gib_takes_0_or_16_mib_up),
        cmocka_unit_test(watch_ring_bytes_defaults_to_64_mib_takes_0_to_2_40),
        cmocka_unit_test(a_pg_dsn_with_a_password_on_the_command_line_is_refused_naming_pgpassfile),
        cmocka_unit_test(a_pg_dsn_without_a_password_is_taken_and_one_from_the_environment_too),
        cmocka_unit_test(reload_reads_the_log_level_again_from_the_flags_and_the_environment),
        cmocka_unit_test(reload_of_settings_that_no_longer_parse_says_nothing_was_reloaded),
    };
    return cmocka_run_group_tests_name("config", tests, setup, NULL);
}
