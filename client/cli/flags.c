/* Every flag cairnctl knows, its CAIRN_* twin, and the parsing of its
 * value: one place, so that a flag and its variable accept the same
 * values and their errors name the same limits. */
#include "cli.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define MAX_LABELS 64            /* the server's limit per run */
#define MAX_ATTEMPTS 100
#define MAX_EVENT_PAGE 1000      /* ReadEvents' max_events */
#define MAX_RUN_PAGE 1000        /* ListRuns' page_size */
#define TTL_MIN_MS 1000          /* AcquireWorker's ttl_ms range */
#define TTL_MAX_MS 600000
#define TOKEN_MAX 4096

const flag_def flag_defs[] = {
    {FLAG_TARGET, "target", 0, "HOST:PORT", "CAIRN_TARGET",
     "server(s) to call (default 127.0.0.1:7070; several: ipv4:A:P,B:P)"},
    {FLAG_TIMEOUT, "timeout", 0, "DURATION", "CAIRN_TIMEOUT",
     "bound on each call, retries included: 500ms, 3s, 1m (reads: 3s; writes: 60s)"},
    {FLAG_ATTEMPTS, "attempts", 0, "N", "CAIRN_ATTEMPTS",
     "attempts per call, 1..100 (reads: 1; writes and follows: 10)"},
    {FLAG_OUTPUT, "output", 'o', "FORMAT", "CAIRN_OUTPUT", "text, json, jsonl or table"},
    {FLAG_CA_FILE, "ca-file", 0, "PATH", "CAIRN_CA_FILE",
     "TLS: PEM CAs to verify the server with (default: the system's)"},
    {FLAG_CERT_FILE, "cert-file", 0, "PATH", "CAIRN_CERT_FILE",
     "mutual TLS: PEM client certificate (with --key-file)"},
    {FLAG_KEY_FILE, "key-file", 0, "PATH", "CAIRN_KEY_FILE", "mutual TLS: PEM private key"},
    {FLAG_SERVER_NAME, "server-name", 0, "NAME", "CAIRN_SERVER_NAME",
     "TLS: name to verify the server's certificate against"},
    {FLAG_TOKEN_FILE, "token-file", 0, "PATH", "CAIRN_TOKEN_FILE",
     "bearer token: the file's first line (the file must be 0600 or stricter)"},
    {FLAG_HELP, "help", 'h', NULL, NULL, "this help; COMMAND --help: the command's"},
    {FLAG_VERSION, "version", 0, NULL, NULL, "libcairn's version and cairnctl's commit"},

    {FLAG_KEY, "key", 0, "KEY", NULL, "idempotency key (default: random per call)"},
    {FLAG_LABEL, "label", 0, "K=V", NULL, "a label; repeat for more (at most 64)"},
    {FLAG_WORKER, "worker", 0, "ID", NULL, "the worker the event is about"},
    {FLAG_EXPECT, "expect", 0, "SEQ", NULL, "fail (exit 4) unless the run's next seq is SEQ"},
    {FLAG_FENCING_TOKEN, "fencing-token", 0, "N", NULL,
     "the worker's lease token: fail (exit 4) once a newer lease exists"},
    {FLAG_FROM, "from", 0, "SEQ", NULL, "the first seq (read, watch: default 1)"},
    {FLAG_MAX, "max", 0, "N", NULL, "events per page, 1..1000 (default 100)"},
    {FLAG_ALL, "all", 0, NULL, NULL, "every page, not just the first"},
    {FLAG_PAGE_SIZE, "page-size", 0, "N", NULL, "runs per page, 1..1000 (default 100)"},
    {FLAG_PAGE_TOKEN, "page-token", 0, "TOKEN", NULL, "the page after a previous one"},
    {FLAG_STATE, "state", 0, "TEXT", NULL, "the run state the snapshot stands for"},
    {FLAG_EVENTS, "events", 0, "N", NULL, "events the snapshot covers (seqs 1..N)"},
    {FLAG_COMPLETED, "completed", 0, "WORKER", NULL,
     "a worker the snapshot completed; repeat for more"},
    {FLAG_OUT, "out", 0, "PATH", NULL, "write the snapshot there, atomically ('-': stdout)"},
    {FLAG_FOLLOW, "follow", 'f', NULL, NULL, "keep following new events (Ctrl-C stops)"},
    {FLAG_LINES, "lines", 'n', "N", NULL, "the last N events (default 10)"},
    {FLAG_HOLDER, "holder", 0, "ID", NULL, "who holds the lease (default: this host's name)"},
    {FLAG_TTL, "ttl", 0, "DURATION", NULL, "lease time to live, 1s..10m (default 30s)"},
    {FLAG_NO_PROGRESS, "no-progress", 0, NULL, NULL, "no progress bar or lines on stderr"},
    {FLAG_END, NULL, 0, NULL, NULL, NULL},
};

const flag_def *flag_def_of(flag_id id)
{
    return &flag_defs[id - FLAG_TARGET];
}

/* "1s", "500ms", "2m", "1h" into milliseconds, 1..UINT32_MAX. */
static int parse_duration(const char *s, uint32_t *out_ms)
{
    static const struct { const char *unit; uint64_t ms; } units[] = {
        {"ms", 1}, {"s", 1000}, {"m", 60000}, {"h", 3600000}};
    char *end;
    errno = 0;
    if (*s < '0' || *s > '9')
        return -1;
    unsigned long long n = strtoull(s, &end, 10);
    if (errno)
        return -1;
    for (size_t i = 0; i < sizeof units / sizeof units[0]; i++) {
        if (strcmp(end, units[i].unit) != 0)
            continue;
        if (n == 0 || n > UINT32_MAX / units[i].ms)
            return -1;
        *out_ms = (uint32_t)(n * units[i].ms);
        return 0;
    }
    return -1;
}

int parse_uint(const char *s, uint64_t lo, uint64_t hi, uint64_t *out)
{
    char *end;
    errno = 0;
    if (*s < '0' || *s > '9')
        return -1;
    unsigned long long n = strtoull(s, &end, 10);
    if (errno || *end || n < lo || n > hi)
        return -1;
    *out = n;
    return 0;
}

/* The token is the file's first line. The file must not be readable by
 * group or others: a token is a password. */
static int read_token(flags *f, const char *path, const char *source)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) < 0) {
        fprintf(stderr, "cairnctl: %s: cannot read %s: %s\n", source, path, strerror(errno));
        if (fd >= 0)
            close(fd);
        return EXIT_LOCAL_IO;
    }
    if (st.st_mode & (S_IRWXG | S_IRWXO)) {
        fprintf(stderr, "cairnctl: %s: %s is accessible by group or others (mode %04o); "
                "chmod 600 it\n", source, path, (unsigned)(st.st_mode & 07777));
        close(fd);
        return EXIT_LOCAL_IO;
    }
    char buf[TOKEN_MAX + 2];
    ssize_t n = read(fd, buf, sizeof buf - 1);
    int saved = errno;
    close(fd);
    if (n < 0) {
        fprintf(stderr, "cairnctl: %s: cannot read %s: %s\n", source, path, strerror(saved));
        return EXIT_LOCAL_IO;
    }
    buf[n] = '\0';
    buf[strcspn(buf, "\r\n")] = '\0';
    if (!*buf || strlen(buf) > TOKEN_MAX) {
        fprintf(stderr, "cairnctl: %s: %s: the first line must hold the token, 1..%d bytes\n",
                source, path, TOKEN_MAX);
        return EXIT_LOCAL_IO;
    }
    free(f->token);
    f->token = strdup(buf);
    return f->token ? 0 : EXIT_LOCAL_IO;
}

/* A TLS file must be readable now: libcairn reads it when the client is
 * created, and a message naming the flag beats one naming the field. */
static int readable_file(const char *path, const char *source, const char **slot)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        fprintf(stderr, "cairnctl: %s: cannot read %s: %s\n", source, path, strerror(errno));
        return EXIT_LOCAL_IO;
    }
    close(fd);
    *slot = path;
    return 0;
}

static int bad_value(const char *source, const char *value, const char *expected)
{
    return usage_error("%s: expected %s, got \"%s\"", source, expected, value);
}

static int apply_global(flags *f, flag_id id, const char *v, const char *source)
{
    uint64_t n;
    switch (id) {
    case FLAG_TARGET:
        if (!*v)
            return bad_value(source, v, "HOST:PORT");
        f->target = v;
        return 0;
    case FLAG_TIMEOUT:
        return parse_duration(v, &f->timeout_ms)
                   ? bad_value(source, v, "a duration from 1ms to 49d: 500ms, 3s, 1m, 1h")
                   : 0;
    case FLAG_ATTEMPTS:
        if (parse_uint(v, 1, MAX_ATTEMPTS, &n))
            return bad_value(source, v, "1..100");
        f->attempts = (int)n;
        return 0;
    case FLAG_OUTPUT:
        if (output_format_parse(v, &f->output))
            return bad_value(source, v, "text, json, jsonl or table");
        return 0;
    case FLAG_CA_FILE:
        f->tls_set = true;
        return readable_file(v, source, &f->tls.ca_file);
    case FLAG_CERT_FILE:
        f->tls_set = true;
        return readable_file(v, source, &f->tls.cert_file);
    case FLAG_KEY_FILE:
        f->tls_set = true;
        return readable_file(v, source, &f->tls.key_file);
    case FLAG_SERVER_NAME:
        if (!*v)
            return bad_value(source, v, "a host name");
        f->tls_set = true;
        f->tls.server_name = v;
        return 0;
    case FLAG_TOKEN_FILE:
        return read_token(f, v, source);
    case FLAG_HELP:
        f->help = true;
        return 0;
    case FLAG_VERSION:
        f->version = true;
        return 0;
    default:
        break;
    }
    return usage_error("%s: not a flag", source);
}

static int apply_command(flags *f, flag_id id, const char *v, const char *source)
{
    uint64_t n;
    switch (id) {
    case FLAG_KEY:
        f->key = v;
        return 0;
    case FLAG_LABEL: {
        char *eq = strchr(v, '=');
        if (!eq || eq == v)
            return bad_value(source, v, "KEY=VALUE");
        if (f->labels_count == MAX_LABELS)
            return usage_error("%s: at most %d labels", source, MAX_LABELS);
        *eq = '\0'; /* argv is ours to cut */
        f->labels[f->labels_count++] = (cairn_label){.key = v, .value = eq + 1};
        return 0;
    }
    case FLAG_WORKER:
        f->worker = v;
        return 0;
    case FLAG_EXPECT:
        return parse_uint(v, 1, UINT64_MAX, &f->expect) ? bad_value(source, v, "a seq, 1 or more")
                                                         : 0;
    case FLAG_FENCING_TOKEN:
        return parse_uint(v, 1, UINT64_MAX, &f->fencing_token)
                   ? bad_value(source, v, "a fencing token, 1 or more")
                   : 0;
    case FLAG_FROM:
        f->has_from = true;
        return parse_uint(v, 1, UINT64_MAX, &f->from) ? bad_value(source, v, "a seq, 1 or more")
                                                       : 0;
    case FLAG_MAX:
        if (parse_uint(v, 1, MAX_EVENT_PAGE, &n))
            return bad_value(source, v, "1..1000");
        f->max = (uint32_t)n;
        return 0;
    case FLAG_ALL:
        f->all = true;
        return 0;
    case FLAG_PAGE_SIZE:
        if (parse_uint(v, 1, MAX_RUN_PAGE, &n))
            return bad_value(source, v, "1..1000");
        f->page_size = (uint32_t)n;
        return 0;
    case FLAG_PAGE_TOKEN:
        f->page_token = v;
        return 0;
    case FLAG_STATE:
        f->state = v;
        return 0;
    case FLAG_EVENTS:
        return parse_uint(v, 0, UINT64_MAX, &f->events) ? bad_value(source, v, "a count, 0 or more")
                                                         : 0;
    case FLAG_COMPLETED:
        f->completed[f->completed_count++] = v;
        return 0;
    case FLAG_OUT:
        f->out = v;
        return 0;
    case FLAG_FOLLOW:
        f->follow = true;
        return 0;
    case FLAG_LINES:
        f->has_lines = true;
        return parse_uint(v, 0, UINT64_MAX, &f->lines) ? bad_value(source, v, "a count, 0 or more")
                                                        : 0;
    case FLAG_HOLDER:
        f->holder = v;
        return 0;
    case FLAG_TTL:
        if (parse_duration(v, &f->ttl_ms) || f->ttl_ms < TTL_MIN_MS || f->ttl_ms > TTL_MAX_MS)
            return bad_value(source, v, "a duration from 1s to 10m");
        return 0;
    case FLAG_NO_PROGRESS:
        f->no_progress = true;
        return 0;
    default:
        break;
    }
    return usage_error("%s: not a flag", source);
}

int flag_apply(flags *f, flag_id id, const char *v, const char *source)
{
    return id < FLAG_KEY ? apply_global(f, id, v, source) : apply_command(f, id, v, source);
}

int flags_init(flags *f, int argc)
{
    *f = (flags){.output = OUT_TEXT, .ttl_ms = 30000, .lines = 10};
    f->labels = calloc((size_t)argc + 1, sizeof *f->labels);
    f->completed = calloc((size_t)argc + 1, sizeof *f->completed);
    if (!f->labels || !f->completed) {
        fputs("cairnctl: out of memory\n", stderr);
        return EXIT_LOCAL_IO;
    }
    for (const flag_def *d = flag_defs; d->name; d++) {
        const char *v = d->env ? getenv(d->env) : NULL;
        int rc = v && *v ? flag_apply(f, d->id, v, d->env) : 0;
        if (rc)
            return rc;
    }
    return 0;
}

void flags_free(flags *f)
{
    free(f->labels);
    free(f->completed);
    free(f->token);
}
