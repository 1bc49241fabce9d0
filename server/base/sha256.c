#include "base/sha256.h"
#include "base/hex.h"

#include <openssl/evp.h>

struct srv_sha256 {
    EVP_MD_CTX *md;
};

srv_sha256 *srv_sha256_new(void)
{
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    if (md && EVP_DigestInit_ex(md, EVP_sha256(), NULL))
        return (srv_sha256 *)md;
    EVP_MD_CTX_free(md);
    return NULL;
}

void srv_sha256_update(srv_sha256 *h, const void *data, size_t len)
{
    EVP_DigestUpdate((EVP_MD_CTX *)h, data, len);
}

void srv_sha256_final(srv_sha256 *h, uint8_t out[32])
{
    unsigned int n = 0;
    EVP_DigestFinal_ex((EVP_MD_CTX *)h, out, &n);
    EVP_DigestInit_ex((EVP_MD_CTX *)h, EVP_sha256(), NULL);
}

void srv_sha256_final_hex(srv_sha256 *h, char out[65])
{
    uint8_t md[32];
    srv_sha256_final(h, md);
    srv_hex(out, md, sizeof md);
}

void srv_sha256_free(srv_sha256 *h)
{
    EVP_MD_CTX_free((EVP_MD_CTX *)h);
}

int srv_sha256_of(const void *data, size_t len, uint8_t out[32])
{
    unsigned int n = 0;
    return EVP_Digest(data, len, out, &n, EVP_sha256(), NULL) ? 0 : -1;
}
