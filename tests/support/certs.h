/* Test certificates, made at test time with libcrypto (no private key is
 * ever committed): a CA, and certificates it signs, for a server or a
 * client, valid now, expired, or for another name. Keys are EC P-256.
 * Files are written as DIR/NAME.crt and DIR/NAME.key (0600). */
#ifndef CAIRN_TEST_CERTS_H
#define CAIRN_TEST_CERTS_H

#include <stdbool.h>

typedef struct ct_cert_spec {
    const char *common_name;
    const char *alt_names;         /* "DNS:localhost,IP:127.0.0.1"; NULL: none */
    long valid_from_s;             /* seconds from now; negative: in the past */
    long valid_to_s;               /* past ones make an expired certificate */
    bool ca;                       /* may sign certificates */
} ct_cert_spec;

typedef struct ct_cert {
    char cert_path[512];
    char key_path[512];
    void *x509_;                   /* for signing others */
    void *key_;
} ct_cert;

/* Makes a certificate by spec, signed by issuer (NULL: self-signed) and
 * writes it and its key under dir. Returns 0, or -1 after printing why. */
int ct_cert_make(const char *dir, const char *name, const ct_cert_spec *spec,
                 const ct_cert *issuer, ct_cert *out);

/* Frees what ct_cert_make kept in memory (the files stay). NULL-safe. */
void ct_cert_free(ct_cert *c);

/* Writes text to path (0600), replacing it: for rotating files in place
 * and for garbage PEM. Returns 0 or -1. */
int ct_write_text(const char *path, const char *text);

/* Copies the file at from over to (0600). Returns 0 or -1. */
int ct_copy_file(const char *from, const char *to);

#endif
