#include "config/config.h"
#include "cairn_revision.h" /* generated: CAIRN_GIT_REVISION */

#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#ifndef CAIRN_VERSION_STRING
#define CAIRN_VERSION_STRING "unknown"
#endif

enum {
    OPT_LISTEN = 1000,
    OPT_DATA_DIR,
    OPT_STORE,
    OPT_THREADS,
    OPT_IO_THREADS,
    OPT_LOG_LEVEL,
    OPT_LOG_FORMAT,
    OPT_SHUTDOWN_GRACE,
    OPT_INSECURE,
    OPT_RETENTION,
    OPT_MAX_SNAPSHOT,
    OPT_MAX_STREAMS,
    OPT_KEEPALIVE_TIME,
    OPT_KEEPALIVE_TIMEOUT,
    OPT_MAX_IDLE,
    OPT_MAX_UPLOADS,
    OPT_MAX_STAGED,
    OPT_TRANSFER_IDLE,
    OPT_LEDGER_QUEUE_BYTES,
    OPT_MAX_WATCHERS,
    OPT_PG_DSN,
    OPT_PG_POOL_SIZE,
    OPT_GRPC_MEMORY,
    OPT_WATCH_RING_BYTES,
    OPT_TLS_CERT,
    OPT_TLS_KEY,
    OPT_TLS_CLIENT_CA,
    OPT_AUTH_TOKENS,
    OPT_METRICS_LISTEN,
    OPT_SLOW_CALL_MS,
    OPT_COMPLETED_RUN_RETENTION,
    OPT_DEDUP_WINDOW,
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
     "address to serve gRPC on, or unix:PATH for a socket file made 0600 (default "
     SRV_DEFAULT_LISTEN "; port 0 picks a free port)"},
    {OPT_DATA_DIR, "data-dir", "CAIRN_DATA_DIR", "DIR",
     "where the embedded store lives (default " SRV_DEFAULT_DATA_DIR ", created if missing)"},
    {OPT_STORE, "store", "CAIRN_STORE", "NAME",
     "storage backend: sqlite, the embedded store in --data-dir, or postgres, shared by "
     "several cairnd replicas (--pg-dsn) (default " SRV_DEFAULT_STORE ")"},
    {OPT_PG_DSN, "pg-dsn", "CAIRN_PG_DSN", "DSN",
     "with --store postgres: the libpq connection string or URI (host=db1 dbname=cairn "
     "user=cairn); a password goes in libpq's PGPASSFILE (~/.pgpass), never on the command "
     "line, where ps shows it"},
    {OPT_PG_POOL_SIZE, "pg-pool-size", "CAIRN_PG_POOL_SIZE", "N",
     "with --store postgres: connections for reads, pins and snapshot transfers, besides the "
     "writer's one, 2..1000 (default 8)"},
    {OPT_THREADS, "threads", "CAIRN_THREADS", "N",
     "completion-queue threads, 1..64 (default: the number of cores)"},
    {OPT_IO_THREADS, "io-threads", "CAIRN_IO_THREADS", "N",
     "threads for disk work off the completion queues (reads, snapshot transfers), 1..64 "
     "(default 4)"},
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
    {OPT_MAX_STREAMS, "max-concurrent-streams", "CAIRN_MAX_CONCURRENT_STREAMS", "N",
     "calls open at once on one client connection, 1..1000000; more wait for one to end "
     "(default 1000)"},
    {OPT_KEEPALIVE_TIME, "keepalive-time-ms", "CAIRN_KEEPALIVE_TIME_MS", "MS",
     "ping each connection after this long without reads, 100..86400000 (default 60000)"},
    {OPT_KEEPALIVE_TIMEOUT, "keepalive-timeout-ms", "CAIRN_KEEPALIVE_TIMEOUT_MS", "MS",
     "close a connection (ending its calls, watches and pins) when a ping goes "
     "unanswered this long, 100..86400000 (default 20000)"},
    {OPT_MAX_IDLE, "max-connection-idle-ms", "CAIRN_MAX_CONNECTION_IDLE_MS", "MS",
     "send GOAWAY to a connection without calls for this long, 0 (never) or "
     "100..86400000 (default 300000)"},
    {OPT_MAX_UPLOADS, "max-uploads", "CAIRN_MAX_UPLOADS", "N",
     "CreateCheckpoint uploads in progress at once, 1..100000; more get RESOURCE_EXHAUSTED "
     "with a pushback (default 16)"},
    {OPT_MAX_STAGED, "max-staged-bytes", "CAIRN_MAX_STAGED_BYTES", "BYTES",
     "snapshot bytes (declared sizes) staged by uploads in progress, all together, 0..2^62; "
     "past it RESOURCE_EXHAUSTED with a pushback (default 8589934592)"},
    {OPT_TRANSFER_IDLE, "transfer-idle-ms", "CAIRN_TRANSFER_IDLE_MS", "MS",
     "cancel a CreateCheckpoint or LoadCheckpoint stream after this long without a message "
     "in or out, 100..86400000; its staged bytes or pin go with it (default 30000)"},
    {OPT_MAX_WATCHERS, "max-watchers", "CAIRN_MAX_WATCHERS", "N",
     "WatchEvents streams open at once, 1..1000000; more get RESOURCE_EXHAUSTED with a "
     "pushback (default 10000)"},
    {OPT_WATCH_RING_BYTES, "watch-ring-bytes", "CAIRN_WATCH_RING_BYTES", "BYTES",
     "recent events kept in memory for WatchEvents, all watched runs together, 0..2^40; "
     "a watcher behind them reads the store (default 67108864)"},
    {OPT_GRPC_MEMORY, "grpc-memory-bytes", "CAIRN_GRPC_MEMORY_BYTES", "BYTES",
     "gRPC resource quota: memory the transport may buffer for all connections and calls, "
     "0 (gRPC's own: no limit) or 16777216..2^50; past it gRPC closes idle connections and "
     "cancels calls with RESOURCE_EXHAUSTED (default 1073741824)"},
    {OPT_LEDGER_QUEUE_BYTES, "max-queued-write-bytes", "CAIRN_MAX_QUEUED_WRITE_BYTES", "BYTES",
     "writes waiting for the writer, by their requests' size, 1..2^40; past it "
     "RESOURCE_EXHAUSTED with a pushback (default 268435456)"},
    {OPT_TLS_CERT, "tls-cert", "CAIRN_TLS_CERT", "FILE",
     "serve TLS with this PEM certificate chain (with --tls-key); read again on SIGHUP "
     "(default: none, plaintext)"},
    {OPT_TLS_KEY, "tls-key", "CAIRN_TLS_KEY", "FILE",
     "the PEM private key of --tls-cert; read again on SIGHUP (default: none)"},
    {OPT_TLS_CLIENT_CA, "tls-client-ca", "CAIRN_TLS_CLIENT_CA", "FILE",
     "mutual TLS: clients must present a certificate that verifies against these PEM CA "
     "certificates, else the handshake fails; needs --tls-cert (default: none)"},
    {OPT_AUTH_TOKENS, "auth-tokens", "CAIRN_AUTH_TOKENS", "FILE",
     "require a bearer token on every call but Health: lines \"name token-sha256 role "
     "run-prefix\" (role read, write or admin; prefix * or a run id prefix); the file must "
     "not be readable by group or others; read again on SIGHUP (default: none, no tokens)"},
    {OPT_INSECURE, "insecure", "CAIRN_INSECURE", "true|false",
     "serve a --listen address other than 127.0.0.0/8, [::1], localhost or unix:PATH "
     "without both TLS and tokens (default false)"},
    {OPT_METRICS_LISTEN, "metrics-listen", "CAIRN_METRICS_LISTEN", "HOST:PORT",
     "serve Prometheus metrics at /metrics and /healthz over HTTP, or off (default "
     SRV_DEFAULT_METRICS_LISTEN ")"},
    {OPT_SLOW_CALL_MS, "slow-call-ms", "CAIRN_SLOW_CALL_MS", "MS",
     "log a call that took longer than this at info, as failed calls are, 0..86400000; 0 "
     "logs every call (default 1000)"},
    {OPT_COMPLETED_RUN_RETENTION, "completed-run-retention", "CAIRN_COMPLETED_RUN_RETENTION",
     "DURATION",
     "delete runs completed longer ago than this, with their events and checkpoints: N, Ns, "
     "Nm, Nh or Nd, 0 keeps them (default 0)"},
    {OPT_DEDUP_WINDOW, "dedup-window", "CAIRN_DEDUP_WINDOW", "DURATION",
     "forget idempotency keys older than this, so a retry sent later applies again: N, Ns, "
     "Nm, Nh or Nd, 0 keeps them as long as their run (default 0)"},
};
enum { N_SETTINGS = sizeof settings / sizeof settings[0] };
_Static_assert(N_SETTINGS == SRV_CONFIG_SETTINGS, "SRV_CONFIG_SETTINGS is the table's rows");

enum { OPT_CONFIG = 'c', OPT_PRINT_CONFIG = 'p' };

static void usage(FILE *out)
{
    fprintf(out,
            "usage: cairnd [flags]\n"
            "cairnd holds runs' event logs, checkpoints and worker leases.\n"
            "Settings come from the flags, over their CAIRN_* environment twins, over a\n"
            "config file, over the defaults.\n\n");
    fprintf(out, "  %-28s %s [env %s]\n", "--config FILE",
            "read settings from FILE: lines \"key = value\", the keys the flag names "
            "without --, # comments; flags and environment override it; read again on SIGHUP",
            "CAIRN_CONFIG");
    for (int i = 0; i < N_SETTINGS; i++) {
        char left[64];
        snprintf(left, sizeof left, "--%s %s", settings[i].flag, settings[i].arg);
        fprintf(out, "  %-28s %s [env %s]\n", left, settings[i].help, settings[i].env);
    }
    fprintf(out, "  %-28s %s\n  %-28s %s\n  %-28s %s\n", "--print-config",
            "print the effective settings as a config file, each with where it came from "
            "(a pg-dsn password shown as ***), and exit",
            "--help", "show this help", "--version", "show the version");
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

/* A duration in seconds: N or N followed by s, m, h or d; at most 100 years. */
static int parse_duration(const char *s, int64_t *out)
{
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno || end == s || v < 0 || (*end && end[1]))
        return -1;
    long long unit = *end == '\0' || *end == 's' ? 1 : *end == 'm' ? 60 : *end == 'h' ? 3600
                     : *end == 'd' ? 86400 : 0;
    if (unit == 0 || v > 100LL * 365 * 86400 / unit)
        return -1;
    *out = v * unit;
    return 0;
}

/* An optional path: "" turns the setting off. */
static int copy_path(char *dst, size_t cap, const char *s)
{
    size_t n = strlen(s);
    if (n >= cap)
        return -1;
    memcpy(dst, s, n + 1);
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

/* Whether a libpq DSN carries a password: a password= keyword (any case,
 * spaces around '=') in the key/value form, or user:password@ in a
 * postgres:// or postgresql:// URI (or ?password= in its query). */
static bool dsn_has_password(const char *dsn)
{
    if (strncmp(dsn, "postgresql://", 13) == 0 || strncmp(dsn, "postgres://", 11) == 0) {
        const char *auth = strstr(dsn, "://") + 3;
        const char *end = auth + strcspn(auth, "/?#");
        const char *at = memchr(auth, '@', (size_t)(end - auth));
        if (at && memchr(auth, ':', (size_t)(at - auth)))
            return true;
        return strcasestr(dsn, "password=") != NULL;
    }
    for (const char *p = dsn; (p = strcasestr(p, "password")) != NULL; p += 8) {
        bool starts = p == dsn || p[-1] == ' ' || p[-1] == '\t';
        const char *q = p + 8;
        while (*q == ' ' || *q == '\t')
            q++;
        if (starts && *q == '=')
            return true;
    }
    return false;
}

/* Applies one setting; returns 0, or -1 after printing what is wrong,
 * naming origin. A password is refused in a flag only: ps shows argv to
 * every user, not the environment or a file. */
static int apply(srv_config *cfg, const struct setting *st, const char *v,
                 const char *origin, bool from_flag)
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
    case OPT_IO_THREADS:
        ok = parse_int(v, 1, SRV_THREADS_MAX, &cfg->io_threads) == 0;
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
    case OPT_MAX_STREAMS:
        ok = parse_int(v, 1, 1000000, &cfg->max_concurrent_streams) == 0;
        break;
    case OPT_KEEPALIVE_TIME:
        ok = parse_int(v, 100, 86400000, &cfg->keepalive_time_ms) == 0;
        break;
    case OPT_KEEPALIVE_TIMEOUT:
        ok = parse_int(v, 100, 86400000, &cfg->keepalive_timeout_ms) == 0;
        break;
    case OPT_MAX_IDLE:
        ok = parse_int(v, 0, 86400000, &cfg->max_connection_idle_ms) == 0 &&
             (cfg->max_connection_idle_ms == 0 || cfg->max_connection_idle_ms >= 100);
        break;
    case OPT_MAX_UPLOADS:
        ok = parse_int(v, 1, 100000, &cfg->max_uploads) == 0;
        break;
    case OPT_MAX_STAGED:
        ok = parse_i64(v, 0, 1LL << 62, &cfg->max_staged_bytes) == 0;
        break;
    case OPT_TRANSFER_IDLE:
        ok = parse_int(v, 100, 86400000, &cfg->transfer_idle_ms) == 0;
        break;
    case OPT_MAX_WATCHERS:
        ok = parse_int(v, 1, 1000000, &cfg->max_watchers) == 0;
        break;
    case OPT_WATCH_RING_BYTES:
        ok = parse_i64(v, 0, 1LL << 40, &cfg->watch_ring_bytes) == 0;
        break;
    case OPT_GRPC_MEMORY:
        ok = parse_i64(v, 0, 1LL << 50, &cfg->grpc_memory_bytes) == 0 &&
             (cfg->grpc_memory_bytes == 0 || cfg->grpc_memory_bytes >= SRV_GRPC_MEMORY_MIN);
        break;
    case OPT_LEDGER_QUEUE_BYTES:
        ok = parse_i64(v, 1, 1LL << 40, &cfg->ledger_max_queue_bytes) == 0;
        break;
    case OPT_PG_DSN:
        if (from_flag && dsn_has_password(v)) {
            fprintf(stderr,
                    "cairnd: --pg-dsn: refusing a password on the command line, where ps shows "
                    "it to every user; put it in libpq's password file (PGPASSFILE, default "
                    "~/.pgpass, mode 0600) and leave it out of the DSN\n");
            return -1;
        }
        ok = copy_str(cfg->pg_dsn, sizeof cfg->pg_dsn, v) == 0;
        break;
    case OPT_PG_POOL_SIZE:
        ok = parse_int(v, 2, SRV_PG_POOL_MAX, &cfg->pg_pool_size) == 0;
        break;
    case OPT_INSECURE:
        ok = strcmp(v, "true") == 0 || strcmp(v, "false") == 0;
        cfg->insecure = strcmp(v, "true") == 0;
        break;
    case OPT_TLS_CERT:
        ok = copy_path(cfg->tls_cert, sizeof cfg->tls_cert, v) == 0;
        break;
    case OPT_TLS_KEY:
        ok = copy_path(cfg->tls_key, sizeof cfg->tls_key, v) == 0;
        break;
    case OPT_TLS_CLIENT_CA:
        ok = copy_path(cfg->tls_client_ca, sizeof cfg->tls_client_ca, v) == 0;
        break;
    case OPT_AUTH_TOKENS:
        ok = copy_path(cfg->auth_tokens, sizeof cfg->auth_tokens, v) == 0;
        break;
    case OPT_METRICS_LISTEN:
        ok = copy_str(cfg->metrics_listen, sizeof cfg->metrics_listen, v) == 0;
        break;
    case OPT_SLOW_CALL_MS:
        ok = parse_int(v, 0, 86400000, &cfg->slow_call_ms) == 0;
        break;
    case OPT_COMPLETED_RUN_RETENTION:
        ok = parse_duration(v, &cfg->completed_run_retention_s) == 0;
        break;
    case OPT_DEDUP_WINDOW:
        ok = parse_duration(v, &cfg->dedup_window_s) == 0;
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
    cfg->io_threads = SRV_DEFAULT_IO_THREADS;
    cfg->log_level = SRV_LOG_INFO;
    cfg->log_format = SRV_LOG_TEXT;
    cfg->shutdown_grace_ms = SRV_DEFAULT_SHUTDOWN_GRACE_MS;
    cfg->checkpoint_retention = SRV_DEFAULT_RETENTION;
    cfg->max_snapshot_bytes = SRV_DEFAULT_MAX_SNAPSHOT;
    cfg->max_concurrent_streams = SRV_DEFAULT_MAX_CONCURRENT_STREAMS;
    cfg->keepalive_time_ms = SRV_DEFAULT_KEEPALIVE_TIME_MS;
    cfg->keepalive_timeout_ms = SRV_DEFAULT_KEEPALIVE_TIMEOUT_MS;
    cfg->max_connection_idle_ms = SRV_DEFAULT_MAX_CONNECTION_IDLE_MS;
    cfg->max_uploads = SRV_DEFAULT_MAX_UPLOADS;
    cfg->ledger_max_queue_bytes = SRV_DEFAULT_LEDGER_MAX_QUEUE_BYTES;
    cfg->max_watchers = SRV_DEFAULT_MAX_WATCHERS;
    cfg->transfer_idle_ms = SRV_DEFAULT_TRANSFER_IDLE_MS;
    cfg->max_staged_bytes = SRV_DEFAULT_MAX_STAGED_BYTES;
    cfg->pg_pool_size = SRV_DEFAULT_PG_POOL_SIZE;
    cfg->grpc_memory_bytes = SRV_DEFAULT_GRPC_MEMORY_BYTES;
    cfg->watch_ring_bytes = SRV_DEFAULT_WATCH_RING_BYTES;
    strcpy(cfg->metrics_listen, SRV_DEFAULT_METRICS_LISTEN);
    cfg->slow_call_ms = SRV_DEFAULT_SLOW_CALL_MS;
}

/* ---- the config file ---- */

static const struct setting *find_setting(const char *flag)
{
    for (int i = 0; i < N_SETTINGS; i++)
        if (strcmp(settings[i].flag, flag) == 0)
            return &settings[i];
    return NULL;
}

static char *trim(char *s)
{
    while (*s == ' ' || *s == '\t')
        s++;
    size_t n = strlen(s);
    while (n && (s[n - 1] == ' ' || s[n - 1] == '\t' || s[n - 1] == '\n' || s[n - 1] == '\r'))
        s[--n] = '\0';
    return s;
}

/* Splits "key = value  # comment" in place: the value is either "quoted"
 * (anything but a double quote) or runs to the first '#', trimmed.
 * Returns NULL, or the problem. */
static const char *split_line(char *line, char **key, char **value)
{
    char *eq = strchr(line, '=');
    if (!eq)
        return "expected \"key = value\"";
    *eq = '\0';
    *key = trim(line);
    char *v = trim(eq + 1);
    if (*v == '"') {
        char *close = strchr(v + 1, '"');
        if (!close)
            return "a value opens a double quote and does not close it";
        char *rest = trim(close + 1);
        if (*rest && *rest != '#')
            return "text after the closing double quote";
        *close = '\0';
        *value = v + 1;
    } else {
        char *hash = strchr(v, '#');
        if (hash)
            *hash = '\0';
        *value = trim(v);
    }
    return **key ? NULL : "no key before '='";
}

/* Applies cfg->config_file's lines; returns 0, or -1 after printing
 * "FILE:LINE: problem" (or why the file cannot be read). */
static int read_file(srv_config *cfg)
{
    const char *path = cfg->config_file;
    FILE *f = fopen(path, "r");
    if (!f) {
        fprintf(stderr, "cairnd: --config %s: cannot read it: %s\n", path, strerror(errno));
        return -1;
    }
    int seen[N_SETTINGS] = {0};
    char *line = NULL;
    size_t cap = 0;
    int lineno = 0, rc = 0;
    while (rc == 0 && getline(&line, &cap, f) != -1) {
        lineno++;
        char *s = trim(line), *key, *value;
        if (*s == '\0' || *s == '#')
            continue;
        const char *problem = split_line(s, &key, &value);
        const struct setting *st = problem ? NULL : find_setting(key);
        rc = -1;
        if (problem)
            fprintf(stderr, "cairnd: %s:%d: %s\n", path, lineno, problem);
        else if (!st)
            fprintf(stderr,
                    "cairnd: %s:%d: unknown key \"%s\" (the keys are the flag names without "
                    "--: see cairnd --help)\n",
                    path, lineno, key);
        else if (seen[st - settings])
            fprintf(stderr, "cairnd: %s:%d: %s given twice (first on line %d)\n", path,
                    lineno, key, seen[st - settings]);
        else {
            char origin[4200];
            snprintf(origin, sizeof origin, "%s:%d: %s", path, lineno, key);
            rc = apply(cfg, st, value, origin, false);
            seen[st - settings] = lineno;
            cfg->from[st - settings] = SRV_FROM_FILE;
            cfg->from_line[st - settings] = lineno;
        }
    }
    if (rc == 0 && ferror(f)) {
        fprintf(stderr, "cairnd: --config %s: cannot read it: %s\n", path, strerror(errno));
        rc = -1;
    }
    free(line);
    fclose(f);
    return rc;
}

/* ---- --print-config ---- */

/* s with the password of a libpq DSN replaced by ***: the value of each
 * password= keyword (to the next blank, or its 'quotes'), and the
 * password of a URI's user:password@. */
static void mask_dsn(const char *s, char *out, size_t cap)
{
    snprintf(out, cap, "%s", s);
    bool uri = strncmp(out, "postgresql://", 13) == 0 || strncmp(out, "postgres://", 11) == 0;
    if (uri) {
        char *auth = strstr(out, "://") + 3;
        char *end = auth + strcspn(auth, "/?#");
        char *at = memchr(auth, '@', (size_t)(end - auth));
        char *colon = at ? memchr(auth, ':', (size_t)(at - auth)) : NULL;
        if (colon) {
            char tail[4096];
            snprintf(tail, sizeof tail, "***%s", at);
            snprintf(colon + 1, cap - (size_t)(colon + 1 - out), "%s", tail);
        }
    }
    for (char *p = out; (p = strcasestr(p, "password")) != NULL; p += 8) {
        char *q = p + 8;
        while (*q == ' ' || *q == '\t')
            q++;
        bool starts = p == out || p[-1] == ' ' || p[-1] == '\t' || (uri && (p[-1] == '?' ||
                                                                            p[-1] == '&'));
        if (!starts || *q != '=')
            continue;
        q++;
        while (!uri && (*q == ' ' || *q == '\t'))
            q++;
        char *end = q;
        if (!uri && *q == '\'') {
            for (end = q + 1; *end && *end != '\''; end += end[0] == '\\' && end[1] ? 2 : 1)
                ;
            if (*end)
                end++;
        } else {
            end = q + strcspn(q, uri ? "&#" : " \t");
        }
        char tail[4096];
        snprintf(tail, sizeof tail, "***%s", end);
        snprintf(q, cap - (size_t)(q - out), "%s", tail);
    }
}

/* Setting st's value in cfg, as its flag would take it. */
static void value_of(const srv_config *cfg, const struct setting *st, char *out, size_t cap)
{
    long long n = 0;
    switch (st->id) {
    case OPT_LISTEN: snprintf(out, cap, "%s", cfg->listen); return;
    case OPT_DATA_DIR: snprintf(out, cap, "%s", cfg->data_dir); return;
    case OPT_STORE: snprintf(out, cap, "%s", cfg->store); return;
    case OPT_PG_DSN: mask_dsn(cfg->pg_dsn, out, cap); return;
    case OPT_LOG_LEVEL: snprintf(out, cap, "%s", srv_log_level_name(cfg->log_level)); return;
    case OPT_LOG_FORMAT:
        snprintf(out, cap, "%s", cfg->log_format == SRV_LOG_JSON ? "json" : "text");
        return;
    case OPT_INSECURE: snprintf(out, cap, "%s", cfg->insecure ? "true" : "false"); return;
    case OPT_TLS_CERT: snprintf(out, cap, "%s", cfg->tls_cert); return;
    case OPT_TLS_KEY: snprintf(out, cap, "%s", cfg->tls_key); return;
    case OPT_TLS_CLIENT_CA: snprintf(out, cap, "%s", cfg->tls_client_ca); return;
    case OPT_AUTH_TOKENS: snprintf(out, cap, "%s", cfg->auth_tokens); return;
    case OPT_METRICS_LISTEN: snprintf(out, cap, "%s", cfg->metrics_listen); return;
    case OPT_SLOW_CALL_MS: n = cfg->slow_call_ms; break;
    case OPT_COMPLETED_RUN_RETENTION: n = cfg->completed_run_retention_s; break;
    case OPT_DEDUP_WINDOW: n = cfg->dedup_window_s; break;
    case OPT_THREADS: n = cfg->threads; break;
    case OPT_IO_THREADS: n = cfg->io_threads; break;
    case OPT_SHUTDOWN_GRACE: n = cfg->shutdown_grace_ms; break;
    case OPT_RETENTION: n = cfg->checkpoint_retention; break;
    case OPT_MAX_SNAPSHOT: n = cfg->max_snapshot_bytes; break;
    case OPT_MAX_STREAMS: n = cfg->max_concurrent_streams; break;
    case OPT_KEEPALIVE_TIME: n = cfg->keepalive_time_ms; break;
    case OPT_KEEPALIVE_TIMEOUT: n = cfg->keepalive_timeout_ms; break;
    case OPT_MAX_IDLE: n = cfg->max_connection_idle_ms; break;
    case OPT_MAX_UPLOADS: n = cfg->max_uploads; break;
    case OPT_MAX_STAGED: n = cfg->max_staged_bytes; break;
    case OPT_TRANSFER_IDLE: n = cfg->transfer_idle_ms; break;
    case OPT_MAX_WATCHERS: n = cfg->max_watchers; break;
    case OPT_WATCH_RING_BYTES: n = cfg->watch_ring_bytes; break;
    case OPT_GRPC_MEMORY: n = cfg->grpc_memory_bytes; break;
    case OPT_LEDGER_QUEUE_BYTES: n = cfg->ledger_max_queue_bytes; break;
    case OPT_PG_POOL_SIZE: n = cfg->pg_pool_size; break;
    }
    snprintf(out, cap, "%lld", n);
}

void srv_config_print(const srv_config *cfg, FILE *out)
{
    if (cfg->config_file[0])
        fprintf(out, "# config file: %s\n", cfg->config_file);
    for (int i = 0; i < N_SETTINGS; i++) {
        char v[4200], origin[4200];
        value_of(cfg, &settings[i], v, sizeof v);
        /* Quoted when the reader would otherwise trim or cut it. */
        bool quote = v[0] == '\0' || strpbrk(v, "#\"") || v[0] == ' ' || v[0] == '\t' ||
                     v[strlen(v) - 1] == ' ' || v[strlen(v) - 1] == '\t';
        switch (cfg->from[i]) {
        case SRV_FROM_DEFAULT: snprintf(origin, sizeof origin, "default"); break;
        case SRV_FROM_FILE:
            snprintf(origin, sizeof origin, "%s:%d", cfg->config_file, cfg->from_line[i]);
            break;
        case SRV_FROM_ENV: snprintf(origin, sizeof origin, "env %s", settings[i].env); break;
        case SRV_FROM_FLAG: snprintf(origin, sizeof origin, "flag --%s", settings[i].flag); break;
        }
        fprintf(out, "%s = %s%s%s  # from %s\n", settings[i].flag, quote ? "\"" : "", v,
                quote ? "\"" : "", origin);
    }
}

/* ---- parse ---- */

enum { MODE_START, MODE_RELOAD };

/* Reads argv into flags (the settings given, in order), config and
 * print; returns SRV_CONFIG_RUN, or after --help or --version or a usage
 * error what the caller returns. */
static srv_config_result read_argv(int argc, char **argv, int mode, const struct setting **st_of,
                                   char **val_of, int *n, const char **config, bool *print)
{
    struct option opts[N_SETTINGS + 5];
    for (int i = 0; i < N_SETTINGS; i++)
        opts[i] = (struct option){settings[i].flag, required_argument, NULL, settings[i].id};
    opts[N_SETTINGS] = (struct option){"help", no_argument, NULL, 'h'};
    opts[N_SETTINGS + 1] = (struct option){"version", no_argument, NULL, 'V'};
    opts[N_SETTINGS + 2] = (struct option){"config", required_argument, NULL, OPT_CONFIG};
    opts[N_SETTINGS + 3] = (struct option){"print-config", no_argument, NULL, OPT_PRINT_CONFIG};
    opts[N_SETTINGS + 4] = (struct option){NULL, 0, NULL, 0};

    optind = 1;
    *n = 0;
    int c;
    while ((c = getopt_long(argc, argv, "hV", opts, NULL)) != -1) {
        if (c == 'h' || c == 'V') {
            if (mode == MODE_START && c == 'h')
                usage(stdout);
            else if (mode == MODE_START)
                printf("cairnd %s (git %s)\n", CAIRN_VERSION_STRING, CAIRN_GIT_REVISION);
            return SRV_CONFIG_EXIT_OK;
        }
        if (c == OPT_CONFIG) {
            *config = optarg;
            continue;
        }
        if (c == OPT_PRINT_CONFIG) {
            *print = true;
            continue;
        }
        const struct setting *st = NULL;
        for (int i = 0; i < N_SETTINGS; i++)
            if (settings[i].id == c)
                st = &settings[i];
        if (!st) {
            fprintf(stderr, "cairnd: unknown flag (see cairnd --help)\n");
            return SRV_CONFIG_EXIT_USAGE;
        }
        st_of[*n] = st;
        val_of[(*n)++] = optarg;
    }
    if (optind < argc) {
        fprintf(stderr, "cairnd: unexpected argument \"%s\" (see cairnd --help)\n", argv[optind]);
        return SRV_CONFIG_EXIT_USAGE;
    }
    return SRV_CONFIG_RUN;
}

/* srv_config_parse, and in MODE_RELOAD srv_config_reload's: defaults,
 * the file, the environment, the flags, each over the one before. */
static srv_config_result parse(srv_config *cfg, int argc, char **argv, int mode)
{
    defaults(cfg);
    const struct setting **st_of = calloc((size_t)argc + 1, sizeof *st_of);
    char **val_of = calloc((size_t)argc + 1, sizeof *val_of);
    if (!st_of || !val_of) {
        free(st_of);
        free(val_of);
        fprintf(stderr, "cairnd: out of memory reading the flags\n");
        return SRV_CONFIG_EXIT_USAGE;
    }
    const char *config = getenv("CAIRN_CONFIG");
    bool print = false;
    int n = 0;
    srv_config_result rc = read_argv(argc, argv, mode, st_of, val_of, &n, &config, &print);
    if (rc == SRV_CONFIG_RUN && config && *config &&
        (copy_str(cfg->config_file, sizeof cfg->config_file, config) < 0 || read_file(cfg) < 0))
        rc = SRV_CONFIG_EXIT_USAGE;
    for (int i = 0; rc == SRV_CONFIG_RUN && i < N_SETTINGS; i++) {
        const char *v = getenv(settings[i].env);
        if (v && *v && apply(cfg, &settings[i], v, settings[i].env, false) < 0)
            rc = SRV_CONFIG_EXIT_USAGE;
        else if (v && *v)
            cfg->from[i] = SRV_FROM_ENV;
    }
    for (int i = 0; rc == SRV_CONFIG_RUN && i < n; i++) {
        char origin[64];
        snprintf(origin, sizeof origin, "--%s", st_of[i]->flag);
        if (apply(cfg, st_of[i], val_of[i], origin, true) < 0)
            rc = SRV_CONFIG_EXIT_USAGE;
        cfg->from[st_of[i] - settings] = SRV_FROM_FLAG;
    }
    free(st_of);
    free(val_of);
    if (rc != SRV_CONFIG_RUN)
        return rc;
    if (!cfg->tls_cert[0] != !cfg->tls_key[0]) {
        fprintf(stderr, "cairnd: --tls-cert and --tls-key go together: give both or neither\n");
        return SRV_CONFIG_EXIT_USAGE;
    }
    if (cfg->tls_client_ca[0] && !cfg->tls_cert[0]) {
        fprintf(stderr, "cairnd: --tls-client-ca needs --tls-cert and --tls-key: mutual TLS is "
                        "TLS with client certificates\n");
        return SRV_CONFIG_EXIT_USAGE;
    }
    char why[512];
    bool guarded = cfg->tls_cert[0] && cfg->auth_tokens[0];
    if (mode == MODE_START && !cfg->insecure && !guarded &&
        !srv_listen_is_loopback(cfg->listen, why, sizeof why)) {
        fprintf(stderr, "cairnd: %s\n", why);
        return SRV_CONFIG_EXIT_USAGE;
    }
    if (mode == MODE_START && print) {
        srv_config_print(cfg, stdout);
        return SRV_CONFIG_EXIT_OK;
    }
    return SRV_CONFIG_RUN;
}

srv_config_result srv_config_parse(srv_config *cfg, int argc, char **argv)
{
    return parse(cfg, argc, argv, MODE_START);
}

int srv_config_reload(const srv_config *running, srv_config *next, int argc, char **argv,
                      char *report, size_t cap)
{
    if (parse(next, argc, argv, MODE_RELOAD) != SRV_CONFIG_RUN) {
        snprintf(report, cap, "nothing: the settings no longer parse; the running ones stay");
        return -1;
    }
    const char *now = srv_log_level_name(next->log_level);
    char level[64], file[4200] = "";
    if (next->log_level == running->log_level)
        snprintf(level, sizeof level, "log level %s (unchanged)", now);
    else
        snprintf(level, sizeof level, "log level %s (was %s)", now,
                 srv_log_level_name(running->log_level));
    if (next->config_file[0])
        snprintf(file, sizeof file, " (config file %s read again)", next->config_file);
    /* What the file now says differently but a running cairnd keeps. */
    char kept[256] = "";
    size_t k = 0;
    for (int i = 0; i < N_SETTINGS; i++) {
        char was[4200], now_v[4200];
        value_of(running, &settings[i], was, sizeof was);
        value_of(next, &settings[i], now_v, sizeof now_v);
        if (settings[i].id != OPT_LOG_LEVEL && strcmp(was, now_v) != 0 && k < sizeof kept)
            k += (size_t)snprintf(kept + k, sizeof kept - k, "%s%s", k ? ", " : "; changed "
                                  "but kept until a restart: ", settings[i].flag);
    }
    snprintf(report, cap,
             "%s%s%s; not reloadable: the other settings (restart cairnd to change them); flags "
             "and environment are read once at start; the files --tls-cert, --tls-key, "
             "--tls-client-ca and --auth-tokens name are read again, each reported on its own "
             "line",
             level, file, kept);
    return 0;
}

/* ---- is --listen loopback? ---- */

#define UNIX_PREFIX "unix:"

static bool is_loopback_v4(const struct in_addr *a)
{
    return (ntohl(a->s_addr) >> 24) == 127;
}

static bool is_loopback_sockaddr(const struct sockaddr *sa)
{
    if (sa->sa_family == AF_INET)
        return is_loopback_v4(&((const struct sockaddr_in *)sa)->sin_addr);
    if (sa->sa_family == AF_INET6)
        return IN6_IS_ADDR_LOOPBACK(&((const struct sockaddr_in6 *)sa)->sin6_addr);
    return false;
}

/* "localhost", or a name under it (RFC 6761 keeps them for loopback). */
static bool is_localhost_name(const char *host)
{
    size_t n = strlen(host), k = strlen(".localhost");
    return strcasecmp(host, "localhost") == 0 ||
           (n > k && strcasecmp(host + n - k, ".localhost") == 0);
}

/* The host of HOST:PORT, [V6]:PORT or HOST (brackets kept out; *bracketed
 * says they were there). -1 when it has none or is malformed. */
static int split_host(const char *listen, char *host, size_t cap, bool *bracketed)
{
    const char *start = listen, *end;
    *bracketed = *listen == '[';
    if (*bracketed) {
        start = listen + 1;
        end = strchr(start, ']');
        if (!end || (end[1] != '\0' && end[1] != ':'))
            return -1;
    } else {
        const char *colon = strrchr(listen, ':');
        end = colon ? colon : listen + strlen(listen);
        if (memchr(listen, ':', (size_t)(end - listen))) /* IPv6 needs brackets */
            return -1;
    }
    size_t n = (size_t)(end - start);
    if (n == 0 || n >= cap)
        return -1;
    memcpy(host, start, n);
    host[n] = '\0';
    return 0;
}

/* Returns false after writing why: the reason, and what --insecure does. */
__attribute__((format(printf, 3, 4))) static bool refuse(char *why, size_t cap,
                                                         const char *fmt, ...)
{
    char reason[400];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(reason, sizeof reason, fmt, ap);
    va_end(ap);
    snprintf(why, cap,
             "--listen: %s; off loopback cairnd needs TLS and tokens (--tls-cert, --tls-key, "
             "--auth-tokens), or --insecure true to serve it without them",
             reason);
    return false;
}

bool srv_listen_is_loopback(const char *listen, char *why, size_t cap)
{
    size_t unix_len = strlen(UNIX_PREFIX);
    if (strncmp(listen, UNIX_PREFIX, unix_len) == 0 && listen[unix_len])
        return true; /* a socket file only this user may open (transport/rpc.c) */
    char host[256];
    bool bracketed;
    if (split_host(listen, host, sizeof host, &bracketed) < 0)
        return refuse(why, cap, "%s is not HOST:PORT, [IPv6]:PORT or unix:PATH", listen);
    struct in_addr v4;
    struct in6_addr v6;
    if (bracketed) {
        if (inet_pton(AF_INET6, host, &v6) == 1 && IN6_IS_ADDR_LOOPBACK(&v6))
            return true;
        return refuse(why, cap, "%s is not the loopback address [::1]", listen);
    }
    if (inet_pton(AF_INET, host, &v4) == 1) {
        if (is_loopback_v4(&v4))
            return true;
        return refuse(why, cap, "%s is not a loopback address (127.0.0.0/8)", listen);
    }
    /* Other names are not looked up: DNS could answer anything, now or
     * when gRPC resolves the name again to bind. */
    if (!is_localhost_name(host))
        return refuse(why, cap,
                      "%s names a host other than localhost (only 127.0.0.0/8, [::1] and "
                      "localhost count as loopback)",
                      listen);
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM}, *res;
    int rc = getaddrinfo(host, NULL, &hints, &res);
    if (rc != 0)
        return refuse(why, cap, "cannot resolve %s to check that it is loopback (%s)", host,
                      gai_strerror(rc));
    bool all = true;
    for (const struct addrinfo *ai = res; ai && all; ai = ai->ai_next)
        all = is_loopback_sockaddr(ai->ai_addr);
    freeaddrinfo(res);
    if (!all)
        return refuse(why, cap, "%s resolves to an address off loopback", host);
    return true;
}

const char *srv_config_version(void)
{
    return CAIRN_VERSION_STRING;
}

const char *srv_config_revision(void)
{
    return CAIRN_GIT_REVISION;
}
