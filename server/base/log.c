#include "base/log.h"
#include "base/clock.h"

#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

/* The format is written once at start-up, before any other thread exists;
 * the level again on a reload (SIGHUP), hence atomic. */
static _Atomic int g_level = SRV_LOG_INFO;
static srv_log_format g_format = SRV_LOG_TEXT;

static const char *const level_names[] = {"debug", "info", "warn", "error"};

void srv_log_setup(srv_log_level level, srv_log_format format)
{
    atomic_store_explicit(&g_level, (int)level, memory_order_relaxed);
    g_format = format;
}

void srv_log_set_level(srv_log_level level)
{
    atomic_store_explicit(&g_level, (int)level, memory_order_relaxed);
}

srv_log_level srv_log_get_level(void)
{
    return (srv_log_level)atomic_load_explicit(&g_level, memory_order_relaxed);
}

const char *srv_log_level_name(srv_log_level level)
{
    return (unsigned)level < 4 ? level_names[level] : "unknown";
}

int srv_log_level_parse(const char *s, srv_log_level *out)
{
    for (int i = 0; i < 4; i++) {
        if (strcmp(s, level_names[i]) == 0) {
            *out = (srv_log_level)i;
            return 0;
        }
    }
    return -1;
}

bool srv_log_enabled(srv_log_level level)
{
    return (int)level >= atomic_load_explicit(&g_level, memory_order_relaxed);
}

/* The length of the valid UTF-8 sequence at p (1..4), or 0 when p starts
 * none: a JSON line must be valid UTF-8, and messages carry bytes from
 * clients (ids that failed validation) and from vsnprintf cuts. */
static size_t utf8_len(const unsigned char *p)
{
    size_t n = p[0] < 0x80 ? 1 : (p[0] & 0xe0) == 0xc0 ? 2 : (p[0] & 0xf0) == 0xe0 ? 3
                           : (p[0] & 0xf8) == 0xf0     ? 4 : 0;
    if (n == 2 && p[0] < 0xc2) /* overlong */
        return 0;
    for (size_t i = 1; i < n; i++)
        if ((p[i] & 0xc0) != 0x80)
            return 0;
    return n;
}

/* One line being built; every piece is bounded (below), so a record never
 * outgrows it and always ends as it began: one JSON object, one line. */
enum { RECORD_MAX = 8192, MSG_MAX = 1024, MSG_ESCAPED_MAX = 3000, VALUE_ESCAPED_MAX = 512,
       FIELDS_MAX = 8 };

typedef struct line {
    char buf[RECORD_MAX];
    size_t len;
} line;

static void put(line *l, const char *s, size_t n)
{
    if (n > RECORD_MAX - 1 - l->len)
        n = RECORD_MAX - 1 - l->len;
    memcpy(l->buf + l->len, s, n);
    l->len += n;
}

static void put_str(line *l, const char *s)
{
    put(l, s, strlen(s));
}

/* Appends s as the inside of a JSON string, at most max bytes of it:
 * quotes and backslashes escaped, control characters and bytes that are
 * not UTF-8 as \u escapes (a stray byte becomes U+FFFD). */
static void put_escaped(line *l, const char *s, size_t max)
{
    size_t used = 0;
    for (const unsigned char *p = (const unsigned char *)s; *p;) {
        char esc[8];
        const char *piece = esc;
        size_t n = utf8_len(p), step = n ? n : 1;
        if (*p == '"' || *p == '\\') {
            esc[0] = '\\';
            esc[1] = (char)*p;
            n = 2;
        } else if (*p < 0x20) {
            n = (size_t)snprintf(esc, sizeof esc, "\\u%04x", *p);
        } else if (!n) {
            piece = "\\ufffd";
            n = 6;
        } else {
            piece = (const char *)p;
        }
        if (used + n > max)
            return;
        put(l, piece, n);
        used += n;
        p += step;
    }
}

/* Whether a text value can go unquoted: nothing that would split or
 * confuse key=value parsing. */
static bool plain(const char *s)
{
    if (!*s)
        return false;
    for (const unsigned char *p = (const unsigned char *)s; *p; p++)
        if (*p <= ' ' || *p == '"' || *p == '=' || *p >= 0x7f)
            return false;
    return true;
}

static void put_field(line *l, const srv_log_field *f, bool json)
{
    put_str(l, json ? ",\"" : " ");
    put_str(l, f->key);
    put_str(l, json ? "\":" : "=");
    if (f->literal || (!json && plain(f->value))) {
        put(l, f->value, strnlen(f->value, VALUE_ESCAPED_MAX));
        return;
    }
    put_str(l, "\"");
    put_escaped(l, f->value, VALUE_ESCAPED_MAX);
    put_str(l, "\"");
}

__attribute__((format(printf, 4, 0))) static void vlog(srv_log_level level,
                                                       const srv_log_field *fields, size_t n,
                                                       const char *fmt, va_list ap)
{
    if (!srv_log_enabled(level))
        return;
    char msg[MSG_MAX];
    vsnprintf(msg, sizeof msg, fmt, ap);
    char ts[32];
    srv_format_time(ts, srv_now_us());
    bool json = g_format == SRV_LOG_JSON;
    line l = {.len = 0};
    if (n > FIELDS_MAX)
        n = FIELDS_MAX;
    if (json) {
        put_str(&l, "{\"ts\":\"");
        put_str(&l, ts);
        put_str(&l, "\",\"level\":\"");
        put_str(&l, level_names[level]);
        put_str(&l, "\",\"msg\":\"");
        put_escaped(&l, msg, MSG_ESCAPED_MAX);
        put_str(&l, "\"");
    } else {
        char head[48];
        snprintf(head, sizeof head, "%s %-5s ", ts, level_names[level]);
        put_str(&l, head);
        put_str(&l, msg);
    }
    for (size_t i = 0; i < n; i++)
        put_field(&l, &fields[i], json);
    put_str(&l, json ? "}\n" : "\n");
    if (write(STDERR_FILENO, l.buf, l.len) < 0) {
        /* Nowhere left to report it. */
    }
}

void srv_log(srv_log_level level, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vlog(level, NULL, 0, fmt, ap);
    va_end(ap);
}

void srv_log_fields(srv_log_level level, const srv_log_field *fields, size_t n,
                    const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vlog(level, fields, n, fmt, ap);
    va_end(ap);
}
