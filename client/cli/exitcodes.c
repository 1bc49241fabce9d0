/* Exit codes: what a script can branch on. One table maps libcairn's
 * statuses to them; every status it does not name is a refusal (1). */
#include "cli.h"

#include <stdarg.h>
#include <stdio.h>

static const struct {
    cairn_status status;
    int code;
} status_exits[] = {
    {CAIRN_OK, 0},
    {CAIRN_NOT_FOUND, EXIT_NOT_FOUND},
    {CAIRN_FAILED_PRECONDITION, EXIT_CONFLICT},
    {CAIRN_ALREADY_EXISTS, EXIT_CONFLICT},
    /* transient: libcairn retried them as long as it was allowed to */
    {CAIRN_UNAVAILABLE, EXIT_UNAVAILABLE},
    {CAIRN_DEADLINE_EXCEEDED, EXIT_UNAVAILABLE},
    {CAIRN_ABORTED, EXIT_UNAVAILABLE},
    {CAIRN_CANCELLED, EXIT_UNAVAILABLE},
    {CAIRN_CIRCUIT_OPEN, EXIT_UNAVAILABLE},
    {CAIRN_IO, EXIT_LOCAL_IO},
    {CAIRN_NO_MEMORY, EXIT_LOCAL_IO},
};

static const struct {
    int code;
    const char *meaning;
} exit_meanings[] = {
    {0, "ok"},
    {EXIT_REFUSED, "the server refused the request (invalid argument, permission, data loss, "
                   "...), or health: not serving"},
    {EXIT_USAGE, "usage: a bad flag, argument or CAIRN_* variable"},
    {EXIT_NOT_FOUND, "not found: no such run or checkpoint"},
    {EXIT_CONFLICT, "precondition failed or conflict: --expect, a lease held, a run or key "
                    "reused differently"},
    {EXIT_UNAVAILABLE, "unavailable: no answer in time, after the retries"},
    {EXIT_LOCAL_IO, "local I/O: a file (snapshot, --out, --token-file, TLS) cannot be read or "
                    "written"},
};

int exit_code_of(cairn_status status)
{
    for (size_t i = 0; i < sizeof status_exits / sizeof status_exits[0]; i++)
        if (status_exits[i].status == status)
            return status_exits[i].code;
    return EXIT_REFUSED;
}

int fail(cairn_status status, const cairn_error *err)
{
    fprintf(stderr, "cairnctl: %s: %s\n", cairn_strerror(status), err ? err->message : "");
    return exit_code_of(status);
}

int usage_error(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("cairnctl: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    return EXIT_USAGE;
}

void print_exit_codes(FILE *out)
{
    for (size_t i = 0; i < sizeof exit_meanings / sizeof exit_meanings[0]; i++)
        fprintf(out, "  %d  %s\n", exit_meanings[i].code, exit_meanings[i].meaning);
}
