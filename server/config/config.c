#include "config/config.h"

#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#ifndef CAIRN_VERSION_STRING
#define CAIRN_VERSION_STRING "unknown"
#endif

enum {
    OPT_LISTEN = 1000,
    OPT_DATA_DIR,
    OPT_STORE,
    OPT_THREADS,
    OPT_LOG_LEVEL,
    OPT_LOG_FORMAT,
    OPT_SHUTDOWN_GRACE,
    OPT_INSECURE,
    OPT_RETENTION,
    OPT_MAX_SNAPSHOT,
};

/* One row per setting: flag, env twin, help. The table drives getopt, the
 * environment and --help alike. */
static const struct setting {
    int id;
    const char *flag;
    const char *env;
    const char *arg;
    const char *help;
} settings[] = {
    {OPT_LISTEN, "listen", "CAIRN_LISTEN", "HOST:PORT",
     "address to serve gRPC on (default " SRV_DEFAULT_LISTEN "; port 0 picks a free port)"},
    {OPT_DATA_DIR, "data-dir", "CAIRN_DATA_DIR", "DIR",
     "where the embedded store lives (default " SRV_DEFAULT_DATA_DIR ", created if missing)"},
    {OPT_STORE, "store", "CAIRN_STORE", "NAME",
     "storage backend: sqlite, the embedded store in --data-dir (default " SRV_DEFAULT_STORE ")"},
    {OPT_THREADS, "threads", "CAIRN_THREADS", "N",
     "completion-queue threads, 1..64 (default: the number of cores)"},
    {OPT_LOG_LEVEL, "log-level", "CAIRN_LOG_LEVEL", "LEVEL",
     "debug, info, warn or error (default info)"},
    {OPT_LOG_FORMAT, "log-format", "CAIRN_LOG_FORMAT", "FORMAT",
     "text or json (default text)"},
    {OPT_SHUTDOWN_GRACE, "shutdown-grace-ms", "CAIRN_SHUTDOWN_GRACE_MS", "MS",
     "how long in-flight calls may finish after SIGTERM, 0..600000 (default 5000)"},
    {OPT_RETENTION, "checkpoint-retention", "CAIRN_CHECKPOINT_RETENTION", "N",
     "checkpoints kept per run, newest first, 2..100000 (default 5)"},
    {OPT_MAX_SNAPSHOT, "max-snapshot-bytes", "CAIRN_MAX_SNAPSHOT_BYTES", "BYTES",
     "largest checkpoint snapshot accepted, 0..2^62 (default 1073741824)"},
    {OPT_INSECURE, "insecure", "CAIRN_INSECURE", "true|false",
     "allow --listen off loopback without TLS or tokens (default false)"},
};
enum { N_SETTINGS = sizeof settings / sizeof settings[0] };

static void usage(FILE *out)
{
    fprintf(out,
            "usage: cairnd [flags]\n"
            "cairnd holds runs' event logs, checkpoints and worker leases.\n\n");
    for (int i = 0; i < N_SETTINGS; i++) {
        char left[64];
        snprintf(left, sizeof left, "--%s %s", settings[i].flag, settings[i].arg);
        fprintf(out, "  %-28s %s [env %s]\n", left, settings[i].help, settings[i].env);
    }
    fprintf(out, "  %-28s %s\n  %-28s %s\n", "--help", "show this help",
            "--version", "show the version");
}

static int parse_int(const char *s, long lo, long hi, int *out)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < lo || v > hi)
        return -1;
    *out = (int)v;
    return 0;
}

static int parse_i64(const char *s, long long lo, long long hi, int64_t *out)
{
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno || end == s || *end || v < lo || v > hi)
        return -1;
    *out = v;
    return 0;
}

static int copy_str(char *dst, size_t cap, const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n >= cap)
        return -1;
    memcpy(dst, s, n + 1);
    return 0;
}

/* Applies one setting; returns 0, or -1 after printing what is wrong. */
static int apply(srv_config *cfg, const struct setting *st, const char *v,
                 const char *origin)
{
    int ok = 0;
    switch (st->id) {
    case OPT_LISTEN:
        ok = copy_str(cfg->listen, sizeof cfg->listen, v) == 0;
        break;
    case OPT_DATA_DIR:
        ok = copy_str(cfg->data_dir, sizeof cfg->data_dir, v) == 0;
        break;
    case OPT_STORE:
        ok = *v && copy_str(cfg->store, sizeof cfg->store, v) == 0;
        break;
    case OPT_THREADS:
        ok = parse_int(v, 1, SRV_THREADS_MAX, &cfg->threads) == 0;
        break;
    case OPT_LOG_LEVEL:
        ok = srv_log_level_parse(v, &cfg->log_level) == 0;
        break;
    case OPT_LOG_FORMAT:
        if (strcmp(v, "text") == 0)
            cfg->log_format = SRV_LOG_TEXT, ok = 1;
        else if (strcmp(v, "json") == 0)
            cfg->log_format = SRV_LOG_JSON, ok = 1;
        break;
    case OPT_SHUTDOWN_GRACE:
        ok = parse_int(v, 0, 600000, &cfg->shutdown_grace_ms) == 0;
        break;
    case OPT_RETENTION:
        ok = parse_int(v, SRV_RETENTION_MIN, SRV_RETENTION_MAX, &cfg->checkpoint_retention) == 0;
        break;
    case OPT_MAX_SNAPSHOT:
        ok = parse_i64(v, 0, 1LL << 62, &cfg->max_snapshot_bytes) == 0;
        break;
    case OPT_INSECURE:
        ok = strcmp(v, "true") == 0 || strcmp(v, "false") == 0;
        cfg->insecure = strcmp(v, "true") == 0;
        break;
    }
    if (!ok) {
        fprintf(stderr, "cairnd: %s: %s, got \"%s\"\n", origin, st->help, v);
        return -1;
    }
    return 0;
}

static void defaults(srv_config *cfg)
{
    memset(cfg, 0, sizeof *cfg);
    strcpy(cfg->listen, SRV_DEFAULT_LISTEN);
    strcpy(cfg->data_dir, SRV_DEFAULT_DATA_DIR);
    strcpy(cfg->store, SRV_DEFAULT_STORE);
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    cfg->threads = cores < 1 ? 1 : cores > SRV_THREADS_MAX ? SRV_THREADS_MAX : (int)cores;
    cfg->log_level = SRV_LOG_INFO;
    cfg->log_format = SRV_LOG_TEXT;
    cfg->shutdown_grace_ms = SRV_DEFAULT_SHUTDOWN_GRACE_MS;
    cfg->checkpoint_retention = SRV_DEFAULT_RETENTION;
    cfg->max_snapshot_bytes = SRV_DEFAULT_MAX_SNAPSHOT;
}

srv_config_result srv_config_parse(srv_config *cfg, int argc, char **argv)
{
    defaults(cfg);
    for (int i = 0; i < N_SETTINGS; i++) {
        const char *v = getenv(settings[i].env);
        if (v && *v && apply(cfg, &settings[i], v, settings[i].env) < 0)
            return SRV_CONFIG_EXIT_USAGE;
    }

    struct option opts[N_SETTINGS + 3];
    for (int i = 0; i < N_SETTINGS; i++)
        opts[i] = (struct option){settings[i].flag, required_argument, NULL, settings[i].id};
    opts[N_SETTINGS] = (struct option){"help", no_argument, NULL, 'h'};
    opts[N_SETTINGS + 1] = (struct option){"version", no_argument, NULL, 'V'};
    opts[N_SETTINGS + 2] = (struct option){NULL, 0, NULL, 0};

    optind = 1;
    int c;
    while ((c = getopt_long(argc, argv, "hV", opts, NULL)) != -1) {
        if (c == 'h') {
            usage(stdout);
            return SRV_CONFIG_EXIT_OK;
        }
        if (c == 'V') {
            printf("cairnd %s\n", CAIRN_VERSION_STRING);
            return SRV_CONFIG_EXIT_OK;
        }
        const struct setting *st = NULL;
        for (int i = 0; i < N_SETTINGS; i++)
            if (settings[i].id == c)
                st = &settings[i];
        if (!st) {
            fprintf(stderr, "cairnd: unknown flag (see cairnd --help)\n");
            return SRV_CONFIG_EXIT_USAGE;
        }
        char origin[64];
        snprintf(origin, sizeof origin, "--%s", st->flag);
        if (apply(cfg, st, optarg, origin) < 0)
            return SRV_CONFIG_EXIT_USAGE;
    }
    if (optind < argc) {
        fprintf(stderr, "cairnd: unexpected argument \"%s\" (see cairnd --help)\n", argv[optind]);
        return SRV_CONFIG_EXIT_USAGE;
    }
    if (!cfg->insecure && !srv_listen_is_loopback(cfg->listen)) {
        fprintf(stderr,
                "cairnd: --listen: %s is not a loopback address, and cairnd has no TLS or "
                "tokens yet; pass --insecure true to serve it anyway\n",
                cfg->listen);
        return SRV_CONFIG_EXIT_USAGE;
    }
    return SRV_CONFIG_RUN;
}

bool srv_listen_is_loopback(const char *listen)
{
    const char *colon = strrchr(listen, ':');
    size_t n = colon ? (size_t)(colon - listen) : strlen(listen);
    char host[256];
    if (n >= sizeof host)
        return false;
    memcpy(host, listen, n);
    host[n] = '\0';
    return strncmp(host, "127.", 4) == 0 || strcmp(host, "localhost") == 0 ||
           strcmp(host, "[::1]") == 0;
}
