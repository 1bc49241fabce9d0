#include "base/hex.h"

#include <string.h>
#include <sys/random.h>

void srv_hex(char *out, const unsigned char *bytes, size_t n)
{
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = digits[bytes[i] >> 4];
        out[2 * i + 1] = digits[bytes[i] & 15];
    }
    out[2 * n] = '\0';
}

void srv_random_hex(char *out, size_t n)
{
    unsigned char b[32];
    if (n > sizeof b)
        n = sizeof b;
    size_t got = 0;
    while (got < n) {
        ssize_t k = getrandom(b + got, n - got, 0);
        if (k <= 0)
            break;
        got += (size_t)k;
    }
    if (got < n)
        memset(b + got, 0, n - got);
    srv_hex(out, b, n);
}
