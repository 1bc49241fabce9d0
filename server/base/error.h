/* Errors inside cairnd: a gRPC status code, an optional retry pushback, and
 * a message that names the field and the limit. */
#ifndef CAIRN_SERVER_ERROR_H
#define CAIRN_SERVER_ERROR_H

#include <stddef.h>

/* The gRPC status codes (numbers fixed by the gRPC protocol), so that code
 * outside server/transport/ need not include gRPC headers. One list makes
 * both the enum and srv_code_name's table. */
#define SRV_CODE_MAP(XX)                                                             \
    XX(OK, 0) XX(CANCELLED, 1) XX(UNKNOWN, 2) XX(INVALID_ARGUMENT, 3)                \
    XX(DEADLINE_EXCEEDED, 4) XX(NOT_FOUND, 5) XX(ALREADY_EXISTS, 6)                  \
    XX(PERMISSION_DENIED, 7) XX(RESOURCE_EXHAUSTED, 8) XX(FAILED_PRECONDITION, 9)    \
    XX(ABORTED, 10) XX(OUT_OF_RANGE, 11) XX(UNIMPLEMENTED, 12) XX(INTERNAL, 13)      \
    XX(UNAVAILABLE, 14) XX(DATA_LOSS, 15) XX(UNAUTHENTICATED, 16)

typedef enum srv_code {
#define XX(name, number) SRV_##name = number,
    SRV_CODE_MAP(XX)
#undef XX
} srv_code;

#define SRV_ERROR_MSG_MAX 512

typedef struct srv_error {
    srv_code code;
    int pushback_ms;                 /* >= 0: send grpc-retry-pushback-ms */
    char msg[SRV_ERROR_MSG_MAX];
} srv_error;

/* Fills *err (when not NULL) and returns code, so callers can write
 * `return srv_fail(err, SRV_NOT_FOUND, "run_id: no run %s", q);`. */
srv_code srv_fail(srv_error *err, srv_code code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Like srv_fail, with a retry pushback (overload, disk full). */
srv_code srv_fail_pushback(srv_error *err, srv_code code, int pushback_ms,
                           const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* Writes s (n bytes) into out as a double-quoted C-style literal for error
 * messages: non-printable bytes as \xNN, cut with "..." past 48 bytes.
 * Returns out. out must hold SRV_QUOTE_MAX bytes. */
#define SRV_QUOTE_MAX 208
char *srv_quote(char out[SRV_QUOTE_MAX], const char *s, size_t n);

/* Static text for a code ("NOT_FOUND"); never NULL. */
const char *srv_code_name(srv_code code);

#endif
