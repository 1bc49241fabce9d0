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

/* Appends msg to out as the inside of a JSON string. */
static size_t json_escape(char *out, size_t cap, const char *msg)
{
    size_t o = 0;
    for (const unsigned char *p = (const unsigned char *)msg; *p && o + 7 < cap; p++) {
        if (*p == '"' || *p == '\\') {
            out[o++] = '\\';
            out[o++] = (char)*p;
        } else if (*p < 0x20) {
            o += (size_t)snprintf(out + o, cap - o, "\\u%04x", *p);
        } else {
            out[o++] = (char)*p;
        }
    }
    out[o] = '\0';
    return o;
}

void srv_log(srv_log_level level, const char *fmt, ...)
{
    if ((int)level < atomic_load_explicit(&g_level, memory_order_relaxed))
        return;
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);

    char ts[32];
    srv_format_time(ts, srv_now_us());
    char line[2560];
    int n;
    if (g_format == SRV_LOG_JSON) {
        char esc[2300];
        json_escape(esc, sizeof esc, msg);
        n = snprintf(line, sizeof line,
                     "{\"ts\":\"%s\",\"level\":\"%s\",\"msg\":\"%s\"}\n", ts,
                     level_names[level], esc);
    } else {
        n = snprintf(line, sizeof line, "%s %-5s %s\n", ts, level_names[level], msg);
    }
    if (n > (int)sizeof line - 1) {
        n = (int)sizeof line - 1;
        line[n - 1] = '\n';
    }
    if (write(STDERR_FILENO, line, (size_t)n) < 0) {
        /* Nowhere left to report it. */
    }
}
