/* Errors inside cairnd: a gRPC status code, an optional retry pushback, and
 * a message that names the field and the limit. */
#ifndef CAIRN_SERVER_ERROR_H
#define CAIRN_SERVER_ERROR_H

#include <stddef.h>

/* The gRPC status codes (numbers fixed by the gRPC protocol), so that code
 * outside server/rpc.c need not include gRPC headers. */
typedef enum srv_code {
    SRV_OK = 0,
    SRV_CANCELLED = 1,
    SRV_UNKNOWN = 2,
    SRV_INVALID_ARGUMENT = 3,
    SRV_DEADLINE_EXCEEDED = 4,
    SRV_NOT_FOUND = 5,
    SRV_ALREADY_EXISTS = 6,
    SRV_PERMISSION_DENIED = 7,
    SRV_RESOURCE_EXHAUSTED = 8,
    SRV_FAILED_PRECONDITION = 9,
    SRV_ABORTED = 10,
    SRV_OUT_OF_RANGE = 11,
    SRV_UNIMPLEMENTED = 12,
    SRV_INTERNAL = 13,
    SRV_UNAVAILABLE = 14,
    SRV_DATA_LOSS = 15,
    SRV_UNAUTHENTICATED = 16,
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
