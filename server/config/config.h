/* cairnd's settings: defaults, then a config file (--config FILE, lines
 * "key = value" with the flag names as keys), then CAIRN_* environment
 * variables, then command-line flags (each flag has an env twin: --data-dir,
 * CAIRN_DATA_DIR). Each setting remembers which of these it came from. */
#ifndef CAIRN_SERVER_CONFIG_H
#define CAIRN_SERVER_CONFIG_H

#include "base/log.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#define SRV_DEFAULT_LISTEN "127.0.0.1:7070"
#define SRV_DEFAULT_DATA_DIR "./cairn-data"
#define SRV_DEFAULT_STORE "sqlite"
#define SRV_DEFAULT_SHUTDOWN_GRACE_MS 5000
#define SRV_THREADS_MAX 64
#define SRV_DEFAULT_IO_THREADS 4
#define SRV_DEFAULT_RETENTION 5
#define SRV_RETENTION_MIN 2          /* a bad latest checkpoint can be rolled back */
#define SRV_RETENTION_MAX 100000     /* so a cleanup's deleted_ids fit one message */
#define SRV_DEFAULT_MAX_SNAPSHOT (1024LL * 1024 * 1024)
#define SRV_DEFAULT_MAX_CONCURRENT_STREAMS 1000
#define SRV_DEFAULT_MAX_UPLOADS 16
#define SRV_DEFAULT_LEDGER_MAX_QUEUE_BYTES (256LL * 1024 * 1024)
#define SRV_DEFAULT_MAX_WATCHERS 10000
#define SRV_DEFAULT_TRANSFER_IDLE_MS 30000
#define SRV_DEFAULT_MAX_STAGED_BYTES (8LL * 1024 * 1024 * 1024)
#define SRV_DEFAULT_KEEPALIVE_TIME_MS 60000
#define SRV_DEFAULT_KEEPALIVE_TIMEOUT_MS 20000
#define SRV_DEFAULT_MAX_CONNECTION_IDLE_MS 300000
#define SRV_DEFAULT_PG_POOL_SIZE 8
#define SRV_PG_POOL_MAX 1000
/* A quarter of a 4 GiB server; 256 requests at the 4 MiB message limit. */
#define SRV_DEFAULT_GRPC_MEMORY_BYTES (1024LL * 1024 * 1024)
/* Four messages at the limit (4 MiB): a call at the limit takes two to
 * three times its size of the quota while it is read; under a 4 MiB quota
 * every such call was cut, under 8 MiB 2 in 20, one at a time. */
#define SRV_GRPC_MEMORY_MIN (16LL * 1024 * 1024)
/* Eight runs' worth of the per-run ring (8 MiB), shared by every watched run. */
#define SRV_DEFAULT_WATCH_RING_BYTES (64LL * 1024 * 1024)
#define SRV_DEFAULT_METRICS_LISTEN "127.0.0.1:9464"
#define SRV_DEFAULT_SLOW_CALL_MS 1000

/* True when cairnd may serve on listen without --insecure, because only
 * this machine can reach it:
 * - HOST:PORT with an IPv4 address in 127.0.0.0/8 ("127.1.2.3:7070");
 * - [::1]:PORT;
 * - localhost (or a name under .localhost) when every address it
 *   resolves to (getaddrinfo) is one of those;
 * - unix:PATH (the transport creates the socket file 0600).
 * Other names are refused without being looked up, whatever DNS would
 * say ("127.example", "127.0.0.1.nip.io"). Otherwise false, with a
 * one-line message in why (cap bytes, NUL-terminated) that names --listen,
 * the reason and --insecure. Blocks while localhost resolves. */
bool srv_listen_is_loopback(const char *listen, char *why, size_t cap);

/* Settings in the table (config.c), each with an origin. */
#define SRV_CONFIG_SETTINGS 32

/* Where a setting's value came from; a later source overrides an earlier. */
typedef enum srv_config_from {
    SRV_FROM_DEFAULT,
    SRV_FROM_FILE,                 /* line from_line of config_file */
    SRV_FROM_ENV,                  /* its CAIRN_* twin */
    SRV_FROM_FLAG,                 /* its --flag */
} srv_config_from;

typedef struct srv_config {
    char listen[256];
    char data_dir[4096];
    char store[32];                /* a backend in the store registry */
    int threads;                   /* completion-queue threads */
    int io_threads;                /* the I/O pool's (base/pool.h) */
    srv_log_level log_level;
    srv_log_format log_format;
    int shutdown_grace_ms;         /* in-flight calls get this long on SIGTERM */
    bool insecure;                 /* allow a non-loopback --listen without TLS */
    int checkpoint_retention;      /* newest checkpoints kept per run */
    int64_t max_snapshot_bytes;    /* largest snapshot CreateCheckpoint takes */
    int max_concurrent_streams;    /* calls open at once on one connection */
    int keepalive_time_ms;         /* ping an idle connection this often */
    int keepalive_timeout_ms;      /* and close it when a ping goes unanswered this long */
    int max_uploads;               /* CreateCheckpoint streams at once */
    int64_t max_staged_bytes;      /* their declared snapshot sizes, summed */
    int transfer_idle_ms;          /* cancel an upload or download without progress */
    int max_watchers;              /* WatchEvents streams at once */
    int64_t ledger_max_queue_bytes; /* writes waiting for the writer, by size */
    int max_connection_idle_ms;    /* GOAWAY a connection without calls this long; 0 never */
    char pg_dsn[4096];             /* --store postgres: libpq DSN (no password on the command line) */
    int pg_pool_size;              /* --store postgres: pool connections besides the writer's */
    int64_t grpc_memory_bytes;     /* gRPC resource quota; 0: gRPC's own (no limit) */
    int64_t watch_ring_bytes;      /* watch rings of all runs together */
    char tls_cert[4096];           /* PEM chain; "" serves plaintext */
    char tls_key[4096];            /* its private key; set with tls_cert */
    char tls_client_ca[4096];      /* mutual TLS: CAs client certificates must verify against */
    char auth_tokens[4096];        /* tokens file; "" lets every call through */
    char metrics_listen[256];      /* HOST:PORT of /metrics, or "off" */
    int slow_call_ms;              /* log calls slower than this; 0 logs all */
    int64_t completed_run_retention_s; /* delete runs completed this long ago; 0 never */
    int64_t dedup_window_s;        /* forget keys older than this; 0 as long as the run */
    char config_file[4096];        /* --config or CAIRN_CONFIG; "" when none */
    srv_config_from from[SRV_CONFIG_SETTINGS]; /* per setting, in --help's order */
    int from_line[SRV_CONFIG_SETTINGS];        /* SRV_FROM_FILE: its line */
} srv_config;

typedef enum srv_config_result {
    SRV_CONFIG_RUN,                /* start the server */
    SRV_CONFIG_EXIT_OK,            /* --help, --version or --print-config was printed */
    SRV_CONFIG_EXIT_USAGE,         /* a bad flag or value; message printed */
} srv_config_result;

/* Fills *cfg from defaults, the config file (--config, else CAIRN_CONFIG),
 * the environment and argv, later over earlier. Prints help, version,
 * the effective settings (--print-config, srv_config_print) or a usage
 * error (naming the flag, variable or FILE:LINE and the accepted values)
 * itself. A config file's errors: an unreadable file, a line without '=',
 * an unknown key, a key given twice, a bad value. Refuses --tls-cert
 * without --tls-key or the reverse, --tls-client-ca without them, and a
 * --listen address off loopback unless cairnd has both TLS and tokens or
 * --insecure is given. */
srv_config_result srv_config_parse(srv_config *cfg, int argc, char **argv);

/* cairnd's version ("0.3.0") and git revision, as --version prints them:
 * static text. */
const char *srv_config_version(void);
const char *srv_config_revision(void);

/* Writes every setting to out, one line each, "name = value  # from
 * ORIGIN", in --help's order, as a config file that reads back to the same
 * settings; a password in pg-dsn is written as ***. */
void srv_config_print(const srv_config *cfg, FILE *out);

/* The reload hook (SIGHUP): reads the settings again, from the sources
 * srv_config_parse read at start (the config file, read again now, then
 * the environment and argv, fixed for the life of the process), into
 * *next, without --listen's loopback check (the address is not
 * reloaded). Writes one line to report (cap bytes, NUL-terminated): the
 * settings a reload applies, with their value (today the log level: the
 * caller applies next->log_level), the settings the file now changes but
 * a running cairnd keeps, and what it cannot reload. Returns 0,
 * or -1 when the settings no longer parse: *next is then unusable and
 * report says so. Prints nothing (help, version) on success. Not
 * thread-safe (getopt): call from one thread. */
int srv_config_reload(const srv_config *running, srv_config *next, int argc, char **argv,
                      char *report, size_t cap);

#endif
