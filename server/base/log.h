/* Structured logging to stderr: one line per record, text or JSON. A
 * JSON record is always one whole object on one line: messages and field
 * values are escaped (control characters, invalid UTF-8) and cut to fit,
 * never the line. */
#ifndef CAIRN_SERVER_LOG_H
#define CAIRN_SERVER_LOG_H

#include <stdbool.h>
#include <stddef.h>

typedef enum srv_log_level {
    SRV_LOG_DEBUG,
    SRV_LOG_INFO,
    SRV_LOG_WARN,
    SRV_LOG_ERROR,
} srv_log_level;

typedef enum srv_log_format { SRV_LOG_TEXT, SRV_LOG_JSON } srv_log_format;

/* Sets the threshold and format; call before starting threads. */
void srv_log_setup(srv_log_level level, srv_log_format format);

/* Sets the threshold alone (a reload); thread-safe: records being logged
 * meanwhile go by the old or the new one. */
void srv_log_set_level(srv_log_level level);

/* The threshold now. Thread-safe. */
srv_log_level srv_log_get_level(void);

/* "debug", "info", "warn" or "error": static text. */
const char *srv_log_level_name(srv_log_level level);

/* Parses "debug", "info", "warn", "error"; returns 0, or -1 if unknown. */
int srv_log_level_parse(const char *s, srv_log_level *out);

/* Logs one record; thread-safe (one write(2) per line). */
void srv_log(srv_log_level level, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* A record's own field: "key":value in JSON (top level, beside ts, level
 * and msg), key=value in text. literal: value is a JSON number or
 * true/false, written unquoted; otherwise a string (quoted in text too
 * when it holds a space, a quote, '=' or an unprintable byte). */
typedef struct srv_log_field {
    const char *key;
    const char *value;
    bool literal;
} srv_log_field;

/* Whether a record at level would be written now, to skip building one
 * that would not. Thread-safe. */
bool srv_log_enabled(srv_log_level level);

/* Logs one record with n fields (8 at most; each value cut at 512
 * bytes); thread-safe, as srv_log. */
void srv_log_fields(srv_log_level level, const srv_log_field *fields, size_t n,
                    const char *fmt, ...) __attribute__((format(printf, 4, 5)));

#define srv_debug(...) srv_log(SRV_LOG_DEBUG, __VA_ARGS__)
#define srv_info(...) srv_log(SRV_LOG_INFO, __VA_ARGS__)
#define srv_warn(...) srv_log(SRV_LOG_WARN, __VA_ARGS__)
#define srv_error_log(...) srv_log(SRV_LOG_ERROR, __VA_ARGS__)

#endif
