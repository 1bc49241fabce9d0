/* cairnd's settings (config/config.c): the config file (--config), its
 * errors, precedence (flags > env > file > defaults) and --print-config;
 * the SIGHUP reload; and which --listen addresses need
 * --insecure: without both TLS and tokens only loopback is served without
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
    unsetenv("CAIRN_CONFIG");
    unsetenv("CAIRN_THREADS");
    unsetenv("CAIRN_LOG_LEVEL");
    unsetenv("CAIRN_DATA_DIR");
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
        !strstr(why, "--insecure true"))
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

/* argv, NULL-terminated, must be refused with a message containing want. */
static void assert_argv_refused(char **argv, const char *want)
{
    srv_config cfg;
    char out[1024];
    if (parse_argv(argv, out, sizeof out, &cfg) != SRV_CONFIG_EXIT_USAGE)
        fail_msg("%s %s should be refused", argv[1], argv[2]);
    if (!strstr(out, want))
        fail_msg("refusing %s %s: expected \"%s\", got: %s", argv[1], argv[2], want, out);
}

static void tls_cert_and_key_go_together_and_a_client_ca_needs_them(void **state)
{
    (void)state;
    char *cert_only[] = {"cairnd", "--tls-cert", "c.pem", NULL};
    assert_argv_refused(cert_only, "--tls-cert and --tls-key go together");
    char *key_only[] = {"cairnd", "--tls-key", "k.pem", NULL};
    assert_argv_refused(key_only, "--tls-cert and --tls-key go together");
    char *ca_only[] = {"cairnd", "--tls-client-ca", "ca.pem", NULL};
    assert_argv_refused(ca_only, "--tls-client-ca needs --tls-cert and --tls-key");
    char *all[] = {"cairnd", "--tls-cert", "c.pem", "--tls-key", "k.pem", "--tls-client-ca",
                   "ca.pem", NULL};
    srv_config cfg;
    char out[1024];
    assert_int_equal(parse_argv(all, out, sizeof out, &cfg), SRV_CONFIG_RUN);
    assert_string_equal(cfg.tls_cert, "c.pem");
    assert_string_equal(cfg.tls_key, "k.pem");
    assert_string_equal(cfg.tls_client_ca, "ca.pem");
}

/* Off loopback, TLS and tokens together stand in for --insecure; either
 * alone does not. */
static void a_public_address_is_served_with_tls_and_tokens_but_not_with_one_of_them(
    void **state)
{
    (void)state;
    char *both[] = {"cairnd", "--listen", "0.0.0.0:7070", "--tls-cert", "c.pem", "--tls-key",
                    "k.pem", "--auth-tokens", "tokens", NULL};
    srv_config cfg;
    char out[1024];
    assert_int_equal(parse_argv(both, out, sizeof out, &cfg), SRV_CONFIG_RUN);
    char *tls_only[] = {"cairnd", "--listen", "0.0.0.0:7070", "--tls-cert", "c.pem",
                        "--tls-key", "k.pem", NULL};
    assert_argv_refused(tls_only, "needs TLS and tokens (--tls-cert, --tls-key, --auth-tokens)");
    char *tokens_only[] = {"cairnd", "--listen", "0.0.0.0:7070", "--auth-tokens", "tokens",
                           NULL};
    assert_argv_refused(tokens_only, "or --insecure true");
}

static void durations_take_seconds_minutes_hours_and_days(void **state)
{
    (void)state;
    srv_config cfg;
    char out[1024];
    assert_int_equal(parse_flag(NULL, NULL, &cfg, out, sizeof out), SRV_CONFIG_RUN);
    assert_int_equal(cfg.completed_run_retention_s, 0);
    assert_int_equal(cfg.dedup_window_s, 0);
    assert_int_equal(cfg.slow_call_ms, 1000);
    assert_string_equal(cfg.metrics_listen, "127.0.0.1:9464");
    static const struct { const char *text; int64_t seconds; } ok[] = {
        {"0", 0}, {"90", 90}, {"90s", 90}, {"30m", 1800}, {"24h", 86400}, {"7d", 604800},
    };
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
        assert_int_equal(parse_flag("--dedup-window", ok[i].text, &cfg, out, sizeof out),
                         SRV_CONFIG_RUN);
        assert_int_equal(cfg.dedup_window_s, ok[i].seconds);
        assert_int_equal(parse_flag("--completed-run-retention", ok[i].text, &cfg, out,
                                    sizeof out),
                         SRV_CONFIG_RUN);
        assert_int_equal(cfg.completed_run_retention_s, ok[i].seconds);
    }
    assert_flag_refused("--dedup-window", "7w", "Nd");
    assert_flag_refused("--dedup-window", "-1d", "Nd");
    assert_flag_refused("--completed-run-retention", "36501d", "Nd");
    assert_flag_refused("--completed-run-retention", "1dd", "Nd");
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
    assert_non_null(strstr(report, "--auth-tokens name are read again"));
    assert_null(strstr(report, "config file"));

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


/* ---- the config file (--config) ---- */

/* A file holding text, its path in path (a template under /tmp). */
static void write_conf(char *path, size_t cap, const char *text)
{
    snprintf(path, cap, "/tmp/cairn-test-config-XXXXXX");
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    close(fd);
}

/* parse_argv of "cairnd --config <a file holding text> extra...". */
static srv_config_result parse_conf(const char *text, char **extra, srv_config *cfg, char *out,
                                    size_t cap, char *path, size_t path_cap)
{
    write_conf(path, path_cap, text);
    char *argv[16] = {"cairnd", "--config", path};
    int n = 3;
    for (int i = 0; extra && extra[i]; i++)
        argv[n++] = extra[i];
    argv[n] = NULL;
    return parse_argv(argv, out, cap, cfg);
}

/* The text of the origin comment of name's line in srv_config_print. */
static void printed(const srv_config *cfg, char *out, size_t cap)
{
    FILE *tmp = tmpfile();
    assert_non_null(tmp);
    srv_config_print(cfg, tmp);
    rewind(tmp);
    size_t n = fread(out, 1, cap - 1, tmp);
    out[n] = '\0';
    fclose(tmp);
}

/* Each index into cfg->from by flag name: the table's order, as printed. */
static int index_of(const srv_config *cfg, const char *name)
{
    char text[16384];
    printed(cfg, text, sizeof text);
    int i = 0;
    for (char *line = strtok(text, "\n"); line; line = strtok(NULL, "\n")) {
        if (line[0] == '#')
            continue;
        if (strncmp(line, name, strlen(name)) == 0 && line[strlen(name)] == ' ')
            return i;
        i++;
    }
    fail_msg("%s not printed", name);
    return -1;
}

static void a_config_file_sets_keys_named_like_the_flags_with_comments_blanks_and_quotes(
    void **state)
{
    (void)state;
    srv_config cfg;
    char out[1024], path[64];
    assert_int_equal(parse_conf("# cairnd settings\n"
                                "\n"
                                "   \t\n"
                                "  data-dir   =   /srv/cairn data  \n"
                                "threads=3 # a comment after the value\n"
                                "log-level = \"debug\"   # quoted\n"
                                "listen = \" 127.0.0.1:7071\"\n"
                                "   # an indented comment\n"
                                "pg-dsn = \"host=db # not a comment\"\n",
                                NULL, &cfg, out, sizeof out, path, sizeof path),
                     SRV_CONFIG_EXIT_USAGE); /* " 127..." keeps its space: not HOST:PORT */
    assert_non_null(strstr(out, "--listen:  127.0.0.1:7071 "));

    assert_int_equal(parse_conf("# cairnd settings\n"
                                "\n"
                                "  data-dir   =   /srv/cairn data  \n"
                                "threads=3 # a comment after the value\n"
                                "log-level = \"debug\"   # quoted\n"
                                "pg-dsn = \"host=db # not a comment\"\n",
                                NULL, &cfg, out, sizeof out, path, sizeof path),
                     SRV_CONFIG_RUN);
    unlink(path);
    assert_string_equal(cfg.data_dir, "/srv/cairn data");
    assert_int_equal(cfg.threads, 3);
    assert_int_equal(cfg.log_level, SRV_LOG_DEBUG);
    assert_string_equal(cfg.pg_dsn, "host=db # not a comment");
    assert_string_equal(cfg.config_file, path);
    assert_int_equal(cfg.from[index_of(&cfg, "data-dir")], SRV_FROM_FILE);
    assert_int_equal(cfg.from_line[index_of(&cfg, "data-dir")], 3);
    assert_int_equal(cfg.from_line[index_of(&cfg, "pg-dsn")], 6);
    assert_int_equal(cfg.from[index_of(&cfg, "store")], SRV_FROM_DEFAULT);
}

/* text must be refused with a message holding FILE:LINE and want. */
static void assert_conf_refused(const char *text, int line, const char *want)
{
    srv_config cfg;
    char out[2048], path[64], where[96];
    if (parse_conf(text, NULL, &cfg, out, sizeof out, path, sizeof path) !=
        SRV_CONFIG_EXIT_USAGE)
        fail_msg("should be refused: %s", text);
    unlink(path);
    snprintf(where, sizeof where, "cairnd: %s:%d: ", path, line);
    if (!strstr(out, where) || !strstr(out, want))
        fail_msg("refusing %s: expected \"%s\" and \"%s\", got: %s", text, where, want, out);
    if (strchr(out, '\n') != out + strlen(out) - 1)
        fail_msg("want one line, got: %s", out);
}

static void config_file_errors_name_the_file_and_line(void **state)
{
    (void)state;
    assert_conf_refused("threads = 2\n\nverbose = true\n", 3, "unknown key \"verbose\"");
    assert_conf_refused("# x\nthreads 2\n", 2, "expected \"key = value\"");
    assert_conf_refused("threads = 2\nlog-level = info\nthreads = 3\n", 3,
                        "threads given twice (first on line 1)");
    assert_conf_refused("threads = 65\n", 1, "threads: completion-queue threads, 1..64");
    assert_conf_refused("log-level = loud\n", 1, "got \"loud\"");
    assert_conf_refused("listen = \"127.0.0.1:1\n", 1, "does not close");
    assert_conf_refused("listen = \"127.0.0.1:1\" x\n", 1, "after the closing double quote");
    assert_conf_refused(" = 3\n", 1, "no key before '='");
    /* config names the file; inside one it is no setting. */
    assert_conf_refused("config = /etc/other.conf\n", 1, "unknown key \"config\"");
    /* --flag spelling is not a key either. */
    assert_conf_refused("--threads = 2\n", 1, "unknown key \"--threads\"");
}

static void an_unreadable_config_file_is_refused_naming_it(void **state)
{
    (void)state;
    char *argv[] = {"cairnd", "--config", "/nonexistent/cairn.conf", NULL};
    srv_config cfg;
    char out[1024];
    assert_int_equal(parse_argv(argv, out, sizeof out, &cfg), SRV_CONFIG_EXIT_USAGE);
    assert_non_null(strstr(out, "--config /nonexistent/cairn.conf: cannot read it: "));

    setenv("CAIRN_CONFIG", "/nonexistent/env.conf", 1);
    char *none[] = {"cairnd", NULL};
    assert_int_equal(parse_argv(none, out, sizeof out, &cfg), SRV_CONFIG_EXIT_USAGE);
    unsetenv("CAIRN_CONFIG");
    assert_non_null(strstr(out, "/nonexistent/env.conf: cannot read it"));
}

/* defaults < file < env < flags, each pair. */
static void precedence_is_flags_over_env_over_file_over_defaults(void **state)
{
    (void)state;
    srv_config cfg;
    char out[1024], path[64];
    const char *conf = "threads = 3\nlog-level = warn\ndata-dir = /from/file\n";

    /* file over default */
    assert_int_equal(parse_conf(conf, NULL, &cfg, out, sizeof out, path, sizeof path),
                     SRV_CONFIG_RUN);
    unlink(path);
    assert_int_equal(cfg.threads, 3);
    assert_int_equal(cfg.checkpoint_retention, SRV_DEFAULT_RETENTION);
    assert_int_equal(cfg.from[index_of(&cfg, "threads")], SRV_FROM_FILE);
    assert_int_equal(cfg.from[index_of(&cfg, "checkpoint-retention")], SRV_FROM_DEFAULT);

    /* env over file (and over default) */
    setenv("CAIRN_THREADS", "5", 1);
    setenv("CAIRN_DATA_DIR", "/from/env", 1);
    assert_int_equal(parse_conf(conf, NULL, &cfg, out, sizeof out, path, sizeof path),
                     SRV_CONFIG_RUN);
    unlink(path);
    assert_int_equal(cfg.threads, 5);
    assert_string_equal(cfg.data_dir, "/from/env");
    assert_int_equal(cfg.log_level, SRV_LOG_WARN);
    assert_int_equal(cfg.from[index_of(&cfg, "threads")], SRV_FROM_ENV);
    assert_int_equal(cfg.from[index_of(&cfg, "log-level")], SRV_FROM_FILE);

    /* flag over env over file; the file may come after the flag */
    char *argv[] = {"cairnd", "--threads", "7", "--log-level", "error", "--config", NULL, NULL};
    write_conf(path, sizeof path, conf);
    argv[6] = path;
    assert_int_equal(parse_argv(argv, out, sizeof out, &cfg), SRV_CONFIG_RUN);
    unlink(path);
    unsetenv("CAIRN_THREADS");
    unsetenv("CAIRN_DATA_DIR");
    assert_int_equal(cfg.threads, 7);
    assert_int_equal(cfg.log_level, SRV_LOG_ERROR);
    assert_string_equal(cfg.data_dir, "/from/env");
    assert_int_equal(cfg.from[index_of(&cfg, "threads")], SRV_FROM_FLAG);
    assert_int_equal(cfg.from[index_of(&cfg, "log-level")], SRV_FROM_FLAG);
    assert_int_equal(cfg.from[index_of(&cfg, "data-dir")], SRV_FROM_ENV);

    /* flag over default, no file */
    char *flag_only[] = {"cairnd", "--threads", "2", NULL};
    assert_int_equal(parse_argv(flag_only, out, sizeof out, &cfg), SRV_CONFIG_RUN);
    assert_int_equal(cfg.from[index_of(&cfg, "threads")], SRV_FROM_FLAG);
    assert_string_equal(cfg.config_file, "");

    /* --config over CAIRN_CONFIG */
    setenv("CAIRN_CONFIG", "/nonexistent/env.conf", 1);
    assert_int_equal(parse_conf(conf, NULL, &cfg, out, sizeof out, path, sizeof path),
                     SRV_CONFIG_RUN);
    unlink(path);
    unsetenv("CAIRN_CONFIG");
    assert_string_equal(cfg.config_file, path);
}

/* A file is read like the environment: no ps shows it. */
static void a_pg_dsn_password_is_taken_from_a_config_file(void **state)
{
    (void)state;
    srv_config cfg;
    char out[1024], path[64];
    assert_int_equal(parse_conf("pg-dsn = host=db user=u password=s3cret\n", NULL, &cfg, out,
                                sizeof out, path, sizeof path),
                     SRV_CONFIG_RUN);
    unlink(path);
    assert_string_equal(cfg.pg_dsn, "host=db user=u password=s3cret");
}

static void print_config_shows_each_setting_with_its_origin(void **state)
{
    (void)state;
    srv_config cfg;
    char out[1024], path[64], text[16384], want[256];
    setenv("CAIRN_LOG_LEVEL", "warn", 1);
    char *extra[] = {"--threads", "6", NULL};
    assert_int_equal(parse_conf("\ndata-dir = \"/a dir/#1\"\n", extra, &cfg, out, sizeof out,
                                path, sizeof path),
                     SRV_CONFIG_RUN);
    unlink(path);
    unsetenv("CAIRN_LOG_LEVEL");
    printed(&cfg, text, sizeof text);
    snprintf(want, sizeof want, "data-dir = \"/a dir/#1\"  # from %s:2\n", path);
    assert_non_null(strstr(text, want));
    assert_non_null(strstr(text, "threads = 6  # from flag --threads\n"));
    assert_non_null(strstr(text, "log-level = warn  # from env CAIRN_LOG_LEVEL\n"));
    assert_non_null(strstr(text, "listen = 127.0.0.1:7070  # from default\n"));
    assert_non_null(strstr(text, "insecure = false  # from default\n"));
    assert_non_null(strstr(text, "pg-dsn = \"\"  # from default\n"));
    int lines = 0;
    for (const char *p = text; (p = strchr(p, '\n')) != NULL; p++)
        lines++;
    assert_int_equal(lines, SRV_CONFIG_SETTINGS + 1); /* and "# config file: PATH" */
}

/* What --print-config writes reads back as a config file to the same
 * settings, all now from that file. */
static void print_config_output_parses_back_to_the_same_settings(void **state)
{
    (void)state;
    srv_config cfg, again;
    char out[1024], path[64], path2[64], text[16384];
    setenv("CAIRN_LOG_LEVEL", "debug", 1);
    char *extra[] = {"--max-uploads", "9", "--log-format", "json", "--pg-dsn",
                     "host=db dbname=cairn", NULL};
    assert_int_equal(parse_conf("data-dir = \" /odd dir# \"\nthreads = 2\ninsecure = true\n"
                                "listen = 0.0.0.0:7070\n",
                                extra, &cfg, out, sizeof out, path, sizeof path),
                     SRV_CONFIG_RUN);
    unsetenv("CAIRN_LOG_LEVEL");
    unlink(path);
    printed(&cfg, text, sizeof text);
    assert_int_equal(parse_conf(text, NULL, &again, out, sizeof out, path2, sizeof path2),
                     SRV_CONFIG_RUN);
    unlink(path2);
    assert_string_equal(again.data_dir, " /odd dir# ");
    assert_int_equal(again.max_uploads, 9);
    assert_int_equal(again.log_level, SRV_LOG_DEBUG);
    /* Equal but for where each came from. */
    assert_string_equal(again.config_file, path2);
    for (int i = 0; i < SRV_CONFIG_SETTINGS; i++) {
        assert_int_equal(again.from[i], SRV_FROM_FILE);
        again.from[i] = cfg.from[i];
        again.from_line[i] = cfg.from_line[i];
    }
    memcpy(again.config_file, cfg.config_file, sizeof again.config_file);
    assert_memory_equal(&again, &cfg, sizeof cfg);
}

static void print_config_masks_a_pg_dsn_password(void **state)
{
    (void)state;
    static const char *const cases[][2] = {
        {"host=db password=s3cret user=u", "host=db password=*** user=u"},
        {"host=db PASSWORD = 's3 cr\\'et' user=u", "host=db PASSWORD = *** user=u"},
        {"password=s3cret", "password=***"},
        {"postgresql://u:s3cret@db/cairn", "postgresql://u:***@db/cairn"},
        {"postgres://u@db/cairn?password=s3cret&sslmode=require",
         "postgres://u@db/cairn?password=***&sslmode=require"},
        {"host=db user=u", "host=db user=u"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        srv_config cfg;
        char out[1024], path[64], text[16384], want[256], conf[256];
        snprintf(conf, sizeof conf, "pg-dsn = \"%s\"\n", cases[i][0]);
        assert_int_equal(parse_conf(conf, NULL, &cfg, out, sizeof out, path, sizeof path),
                         SRV_CONFIG_RUN);
        unlink(path);
        printed(&cfg, text, sizeof text);
        snprintf(want, sizeof want, "pg-dsn = %s  # from", cases[i][1]);
        if (!strstr(text, want))
            fail_msg("%s: want \"%s\", got:\n%s", cases[i][0], want, text);
        assert_null(strstr(text, "s3"));
    }
}

/* --print-config exits 0 after writing the settings to stdout. */
static void print_config_flag_prints_and_exits_ok(void **state)
{
    (void)state;
    char *argv[] = {"cairnd", "--print-config", "--threads", "4", NULL};
    srv_config cfg;
    char out[1024], text[16384];
    FILE *tmp = tmpfile();
    assert_non_null(tmp);
    fflush(stdout);
    int saved = dup(STDOUT_FILENO);
    dup2(fileno(tmp), STDOUT_FILENO);
    srv_config_result rc = parse_argv(argv, out, sizeof out, &cfg);
    fflush(stdout);
    dup2(saved, STDOUT_FILENO);
    close(saved);
    rewind(tmp);
    size_t n = fread(text, 1, sizeof text - 1, tmp);
    text[n] = '\0';
    fclose(tmp);
    assert_int_equal(rc, SRV_CONFIG_EXIT_OK);
    assert_non_null(strstr(text, "threads = 4  # from flag --threads\n"));
}

/* SIGHUP reads the file again: its log level takes effect. */
static void reload_reads_the_config_file_again(void **state)
{
    (void)state;
    srv_config running, next;
    char out[1024], path[64], report[512];
    assert_int_equal(parse_conf("log-level = info\n", NULL, &running, out, sizeof out, path,
                                sizeof path),
                     SRV_CONFIG_RUN);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs("# now louder\nlog-level = debug\n", f);
    fclose(f);
    char *argv[] = {"cairnd", "--config", path, NULL};
    assert_int_equal(srv_config_reload(&running, &next, 3, argv, report, sizeof report), 0);
    assert_int_equal(next.log_level, SRV_LOG_DEBUG);
    assert_int_equal(next.from_line[index_of(&next, "log-level")], 2);
    assert_non_null(strstr(report, "log level debug (was info) (config file "));
    assert_non_null(strstr(report, path));
    assert_non_null(strstr(report, "not reloadable: "));
    assert_null(strstr(report, "changed but kept"));

    /* A setting that needs a restart is read, named, and not applied. */
    f = fopen(path, "w");
    assert_non_null(f);
    fputs("log-level = debug\nio-threads = 7\nmax-uploads = 9\n", f);
    fclose(f);
    assert_int_equal(srv_config_reload(&running, &next, 3, argv, report, sizeof report), 0);
    assert_non_null(strstr(report, "read again); changed but kept until a restart: io-threads, "
                                   "max-uploads; not reloadable: "));

    /* A file that no longer parses reloads nothing. */
    f = fopen(path, "w");
    assert_non_null(f);
    fputs("log-level = debug\nlouder = yes\n", f);
    fclose(f);
    fflush(stderr);
    int saved = dup(STDERR_FILENO), null = open("/dev/null", O_WRONLY);
    dup2(null, STDERR_FILENO);
    int rc = srv_config_reload(&running, &next, 3, argv, report, sizeof report);
    dup2(saved, STDERR_FILENO);
    close(saved);
    close(null);
    unlink(path);
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
        cmocka_unit_test(tls_cert_and_key_go_together_and_a_client_ca_needs_them),
        cmocka_unit_test(a_public_address_is_served_with_tls_and_tokens_but_not_with_one_of_them),
        cmocka_unit_test(durations_take_seconds_minutes_hours_and_days),
        cmocka_unit_test(a_pg_dsn_with_a_password_on_the_command_line_is_refused_naming_pgpassfile),
        cmocka_unit_test(a_pg_dsn_without_a_password_is_taken_and_one_from_the_environment_too),
        cmocka_unit_test(reload_reads_the_log_level_again_from_the_flags_and_the_environment),
        cmocka_unit_test(reload_of_settings_that_no_longer_parse_says_nothing_was_reloaded),
        cmocka_unit_test(a_config_file_sets_keys_named_like_the_flags_with_comments_blanks_and_quotes),
        cmocka_unit_test(config_file_errors_name_the_file_and_line),
        cmocka_unit_test(an_unreadable_config_file_is_refused_naming_it),
        cmocka_unit_test(precedence_is_flags_over_env_over_file_over_defaults),
        cmocka_unit_test(a_pg_dsn_password_is_taken_from_a_config_file),
        cmocka_unit_test(print_config_shows_each_setting_with_its_origin),
        cmocka_unit_test(print_config_output_parses_back_to_the_same_settings),
        cmocka_unit_test(print_config_masks_a_pg_dsn_password),
        cmocka_unit_test(print_config_flag_prints_and_exits_ok),
        cmocka_unit_test(reload_reads_the_config_file_again),
    };
    return cmocka_run_group_tests_name("config", tests, setup, NULL);
}
