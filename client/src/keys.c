#include "internal.h"

#include <openssl/evp.h>
#include <string.h>
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
    unsigned char b[16];
    size_t got = 0;
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
