#include "base/error.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

/* The format attribute lets -Wformat=2 check the callers instead (clang
 * otherwise flags fmt as a non-literal format). */
__attribute__((format(printf, 4, 0)))
static srv_code vfail(srv_error *err, srv_code code, int pushback_ms,
                      const char *fmt, va_list ap)
{
    if (err) {
        err->code = code;
        err->pushback_ms = pushback_ms;
        vsnprintf(err->msg, sizeof err->msg, fmt, ap);
    }
    return code;
}

srv_code srv_fail(srv_error *err, srv_code code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vfail(err, code, -1, fmt, ap);
    va_end(ap);
    return code;
}

srv_code srv_fail_pushback(srv_error *err, srv_code code, int pushback_ms,
                           const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vfail(err, code, pushback_ms, fmt, ap);
    va_end(ap);
    return code;
}

char *srv_quote(char out[SRV_QUOTE_MAX], const char *s, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    const size_t shown = n > 48 ? 48 : n;
    size_t o = 0;

    out[o++] = '"';
    for (size_t i = 0; i < shown; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '"' || c == '\\') {
            out[o++] = '\\';
            out[o++] = (char)c;
        } else if (c >= 0x20 && c < 0x7f) {
            out[o++] = (char)c;
        } else {
            out[o++] = '\\';
            out[o++] = 'x';
            out[o++] = hex[c >> 4];
            out[o++] = hex[c & 15];
        }
    }
    out[o++] = '"';
    if (shown < n) {
        memcpy(out + o, "...", 3);
        o += 3;
    }
    out[o] = '\0';
    return out;
}

const char *srv_code_name(srv_code code)
{
    static const char *const names[] = {
#define XX(name, number) [number] = #name,
        SRV_CODE_MAP(XX)
#undef XX
    };
    if ((unsigned)code < sizeof names / sizeof names[0])
        return names[code];
    return "UNKNOWN";
}
