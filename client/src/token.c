/* The bearer token option: its format, and where it may be sent in
 * plaintext. A token read off the network is as good as a stolen one, so
 * without TLS it goes only to servers on this machine. */
#include "internal.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

/* host (n bytes, no brackets, no port): 127.0.0.0/8, ::1 or localhost. */
static bool host_is_loopback(const char *host, size_t n)
{
    char h[64];
    if (n == 0 || n >= sizeof h)
        return false;
    memcpy(h, host, n);
    h[n] = '\0';
    struct in_addr v4;
    struct in6_addr v6;
    if (inet_pton(AF_INET, h, &v4) == 1)
        return (ntohl(v4.s_addr) >> 24) == 127;
    if (inet_pton(AF_INET6, h, &v6) == 1)
        return IN6_IS_ADDR_LOOPBACK(&v6);
    return strcasecmp(h, "localhost") == 0;
}

/* One address, n bytes: "HOST:PORT", "[V6]:PORT" or "HOST"; without
 * brackets, more than one ':' makes the whole an IPv6 host, as gRPC
 * reads it. */
static bool address_is_loopback(const char *addr, size_t n)
{
    if (n > 0 && addr[0] == '[') {
        const char *close = memchr(addr, ']', n);
        if (!close)
            return false;
        size_t host_len = (size_t)(close - addr - 1), rest = n - host_len - 2;
        return (rest == 0 || close[1] == ':') && host_is_loopback(addr + 1, host_len);
    }
    const char *colon = NULL;
    int colons = 0;
    for (const char *p = addr; p < addr + n; p++)
        if (*p == ':') {
            colon = p;
            colons++;
        }
    return host_is_loopback(addr, colons == 1 ? (size_t)(colon - addr) : n);
}

static bool starts_with(const char *s, const char *prefix)
{
    return strncmp(s, prefix, strlen(prefix)) == 0;
}

bool cairn__target_is_loopback(const char *target)
{
    if (starts_with(target, "unix:") || starts_with(target, "unix-abstract:"))
        return true;
    if (starts_with(target, "ipv4:") || starts_with(target, "ipv6:")) {
        /* a list, "ipv4:127.0.0.1:7001,127.0.0.1:7002": every one */
        const char *p = target + 5;
        for (;;) {
            size_t n = strcspn(p, ",");
            if (!address_is_loopback(p, n))
                return false;
            if (!p[n])
                return true;
            p += n + 1;
        }
    }
    const char *addr = target;
    if (starts_with(target, "dns:")) {
        addr = target + 4;
        if (starts_with(addr, "//")) { /* dns://[AUTHORITY]/HOST:PORT */
            const char *slash = strchr(addr + 2, '/');
            if (!slash)
                return false;
            addr = slash + 1;
        }
    }
    /* Any other scheme ends up here whole, and is no loopback address. */
    return address_is_loopback(addr, strlen(addr));
}

cairn_status cairn__check_token(const char *token, const char *target, bool tls,
                                cairn_error *err)
{
    if (!token)
        return CAIRN_OK;
    size_t n = strlen(token);
    if (n == 0 || n > CAIRN_TOKEN_MAX)
        return cairn__fail(err, CAIRN_INVALID_ARGUMENT,
                           "token: must be 1..%d printable ASCII characters without spaces, "
                           "got %zu bytes", CAIRN_TOKEN_MAX, n);
    for (size_t i = 0; i < n; i++)
        if (token[i] <= 0x20 || token[i] >= 0x7f)
            return cairn__fail(err, CAIRN_INVALID_ARGUMENT,
                               "token: must be 1..%d printable ASCII characters without "
                               "spaces, byte %zu is not one", CAIRN_TOKEN_MAX, i);
    if (!tls && !cairn__target_is_loopback(target))
        return cairn__fail(err, CAIRN_INVALID_ARGUMENT,
                           "token: not sent in plaintext to target \"%.200s\", which is not "
                           "loopback (127.0.0.0/8, [::1], localhost or unix:): anyone on the "
                           "path could read it; set tls", target);
    return CAIRN_OK;
}
