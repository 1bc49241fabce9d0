/* SHA-256, the one digest cairnd uses: snapshot checksums, request
 * fingerprints. A thin wrapper over OpenSSL's EVP, so no other file
 * includes it. */
#ifndef CAIRN_SERVER_BASE_SHA256_H
#define CAIRN_SERVER_BASE_SHA256_H

#include <stddef.h>
#include <stdint.h>

/* A running digest; NULL when out of memory. */
typedef struct srv_sha256 srv_sha256;
srv_sha256 *srv_sha256_new(void);
void srv_sha256_update(srv_sha256 *h, const void *data, size_t len);
/* Writes the digest (32 bytes) and resets h for another message. */
void srv_sha256_final(srv_sha256 *h, uint8_t out[32]);
/* The same as 64 lowercase hex digits and a NUL. */
void srv_sha256_final_hex(srv_sha256 *h, char out[65]);
/* NULL is a no-op. */
void srv_sha256_free(srv_sha256 *h);

/* The digest of one buffer; returns 0, or -1 when OpenSSL fails. */
int srv_sha256_of(const void *data, size_t len, uint8_t out[32]);

#endif
