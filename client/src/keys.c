#include "internal.h"

#include <openssl/evp.h>
#include <stdint.h>
#include <string.h>
#include <time.h>
#include <sys/random.h>

void cairn__hex(char *out, const unsigned char *b, size_t n)
{
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = digits[b[i] >> 4];
        out[2 * i + 1] = digits[b[i] & 15];
    }
    out[2 * n] = '\0';
}

void cairn_idempotency_key(char out[65], const char *const *components, size_t n)
{
    unsigned char md[32];
    unsigned int len = 0;
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    if (!ctx) { /* out of memory: an empty key, which the server refuses */
        out[0] = '\0';
        return;
    }
    EVP_DigestInit_ex(ctx, EVP_sha256(), NULL);
    for (size_t i = 0; i < n; i++) {
        if (i)
            EVP_DigestUpdate(ctx, "\x1f", 1);
        if (components[i])
            EVP_DigestUpdate(ctx, components[i], strlen(components[i]));
    }
    EVP_DigestFinal_ex(ctx, md, &len);
    EVP_MD_CTX_free(ctx);
    cairn__hex(out, md, 32);
}

void cairn_random_key(char out[33])
{
    /* The time first (48 bits of milliseconds, as UUIDv7 does), so keys
     * made one after another sort together and the server's index of
     * keys grows at one end instead of at a random page per write. */
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    uint64_t ms = (uint64_t)now.tv_sec * 1000u + (uint64_t)now.tv_nsec / 1000000u;
    unsigned char b[16];
    for (int i = 0; i < 6; i++)
        b[i] = (unsigned char)(ms >> (40 - 8 * i));
    size_t got = 6;
    while (got < sizeof b) {
        ssize_t n = getrandom(b + got, sizeof b - got, 0);
        if (n > 0)
            got += (size_t)n;
    }
    cairn__hex(out, b, sizeof b);
}

cairn_status cairn__pick_key(char out[CAIRN_KEY_MAX + 1], const char *given, cairn_error *err)
{
    if (!given) {
        cairn_random_key(out);
        return CAIRN_OK;
    }
    return cairn__copy_str(out, CAIRN_KEY_MAX + 1, given, "idempotency_key", err);
}
