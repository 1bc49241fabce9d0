/* Certificates by libcrypto rather than the openssl CLI: the validity
 * period can start and end in the past (OpenSSL 3.0's `x509` cannot
 * backdate), and no process is spawned per certificate. */
#include "certs.h"

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int fail(const char *what)
{
    unsigned long e = ERR_get_error();
    fprintf(stderr, "ct_cert_make: %s: %s\n", what, e ? ERR_reason_error_string(e) : "failed");
    ERR_clear_error();
    return -1;
}

static int add_ext(X509 *x, X509 *issuer, int nid, const char *value)
{
    X509V3_CTX ctx;
    X509V3_set_ctx_nodb(&ctx);
    X509V3_set_ctx(&ctx, issuer, x, NULL, NULL, 0);
    X509_EXTENSION *ext = X509V3_EXT_conf_nid(NULL, &ctx, nid, value);
    if (!ext)
        return fail(value);
    int ok = X509_add_ext(x, ext, -1);
    X509_EXTENSION_free(ext);
    return ok ? 0 : fail(value);
}

/* Opens path for writing, 0600, replacing what was there. */
static FILE *create_private(const char *path)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    FILE *f = fd >= 0 ? fdopen(fd, "w") : NULL;
    if (fd >= 0 && !f)
        close(fd);
    if (!f)
        perror(path);
    return f;
}

static int write_pems(const ct_cert *c, X509 *x, EVP_PKEY *key)
{
    FILE *f = create_private(c->cert_path);
    int ok = f && PEM_write_X509(f, x);
    if (f && fclose(f) != 0)
        ok = 0;
    FILE *k = ok ? create_private(c->key_path) : NULL;
    ok = k && PEM_write_PrivateKey(k, key, NULL, NULL, 0, NULL, NULL);
    if (k && fclose(k) != 0)
        ok = 0;
    return ok ? 0 : fail("writing the PEM files");
}

static int fill(X509 *x, EVP_PKEY *key, const ct_cert_spec *spec, const ct_cert *issuer)
{
    static long serial = 1;
    X509 *signer = issuer ? issuer->x509_ : x;
    EVP_PKEY *signer_key = issuer ? issuer->key_ : key;
    X509_NAME *name = X509_get_subject_name(x);
    if (!X509_set_version(x, 2) || !ASN1_INTEGER_set(X509_get_serialNumber(x), serial++) ||
        !X509_gmtime_adj(X509_getm_notBefore(x), spec->valid_from_s) ||
        !X509_gmtime_adj(X509_getm_notAfter(x), spec->valid_to_s) ||
        !X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_UTF8,
                                    (const unsigned char *)spec->common_name, -1, -1, 0) ||
        !X509_set_issuer_name(x, X509_get_subject_name(signer)) || !X509_set_pubkey(x, key))
        return fail("filling the certificate");
    int rc = add_ext(x, signer, NID_basic_constraints, spec->ca ? "critical,CA:TRUE" : "CA:FALSE");
    if (!rc)
        rc = add_ext(x, signer, NID_key_usage,
                     spec->ca ? "critical,keyCertSign,cRLSign" : "critical,digitalSignature");
    if (!rc && !spec->ca)
        rc = add_ext(x, signer, NID_ext_key_usage, "serverAuth,clientAuth");
    if (!rc)
        rc = add_ext(x, signer, NID_subject_key_identifier, "hash");
    if (!rc && spec->alt_names)
        rc = add_ext(x, signer, NID_subject_alt_name, spec->alt_names);
    if (!rc && !X509_sign(x, signer_key, EVP_sha256()))
        rc = fail("signing");
    return rc;
}

int ct_cert_make(const char *dir, const char *name, const ct_cert_spec *spec,
                 const ct_cert *issuer, ct_cert *out)
{
    memset(out, 0, sizeof *out);
    snprintf(out->cert_path, sizeof out->cert_path, "%s/%s.crt", dir, name);
    snprintf(out->key_path, sizeof out->key_path, "%s/%s.key", dir, name);
    EVP_PKEY *key = EVP_EC_gen("P-256");
    X509 *x = X509_new();
    int rc = key && x ? fill(x, key, spec, issuer) : fail("making a key");
    if (!rc)
        rc = write_pems(out, x, key);
    if (rc) {
        X509_free(x);
        EVP_PKEY_free(key);
        return -1;
    }
    out->x509_ = x;
    out->key_ = key;
    return 0;
}

void ct_cert_free(ct_cert *c)
{
    if (!c)
        return;
    X509_free(c->x509_);
    EVP_PKEY_free(c->key_);
    c->x509_ = NULL;
    c->key_ = NULL;
}

int ct_write_text(const char *path, const char *text)
{
    FILE *f = create_private(path);
    if (!f)
        return -1;
    int ok = fputs(text, f) >= 0;
    return fclose(f) == 0 && ok ? 0 : -1;
}

int ct_copy_file(const char *from, const char *to)
{
    FILE *in = fopen(from, "rbe");
    if (!in) {
        perror(from);
        return -1;
    }
    FILE *out = create_private(to);
    int ok = out != NULL;
    char buf[4096];
    size_t n;
    while (ok && (n = fread(buf, 1, sizeof buf, in)) > 0)
        ok = fwrite(buf, 1, n, out) == n;
    ok = ok && !ferror(in);
    fclose(in);
    if (out && fclose(out) != 0)
        ok = 0;
    return ok ? 0 : -1;
}
