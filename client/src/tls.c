/* The files of cairn_tls_options, read and checked when a client is
 * created, so that a wrong path or a key that does not match its
 * certificate is INVALID_ARGUMENT there, naming the field and the path,
 * rather than a handshake failing on every call later. */
#include "internal.h"

#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Longest file read; PEM bundles of every public CA are about 200 KiB. */
#define TLS_FILE_MAX (1024 * 1024)
/* A DNS name (RFC 1035). */
#define SERVER_NAME_MAX 253

static bool is_set(const char *s)
{
    return s && *s;
}

/* Reads a whole file of at most TLS_FILE_MAX bytes, NUL-terminated. */
static cairn_status read_pem(const char *field, const char *path, char **out, size_t *len,
                             cairn_error *err)
{
    FILE *f = fopen(path, "rbe");
    if (!f)
        return cairn__fail(err, CAIRN_INVALID_ARGUMENT, "%s: cannot open %s: %s", field, path,
                           strerror(errno));
    char *buf = malloc(TLS_FILE_MAX + 1);
    size_t n = buf ? fread(buf, 1, TLS_FILE_MAX + 1, f) : 0;
    bool failed = buf && ferror(f);
    fclose(f);
    if (!buf)
        return cairn__fail(err, CAIRN_NO_MEMORY, "%s: out of memory", field);
    if (failed || n > TLS_FILE_MAX) {
        OPENSSL_cleanse(buf, n); /* it may have been a key */
        free(buf);
        return failed ? cairn__fail(err, CAIRN_INVALID_ARGUMENT, "%s: cannot read %s", field, path)
                      : cairn__fail(err, CAIRN_INVALID_ARGUMENT,
                                    "%s: %s is over the limit of %d bytes", field, path,
                                    TLS_FILE_MAX);
    }
    buf[n] = '\0';
    *out = buf;
    *len = n;
    return CAIRN_OK;
}

/* The first PEM certificate in pem (other blocks are skipped), or NULL. */
static X509 *first_cert(const char *pem, size_t len)
{
    BIO *bio = BIO_new_mem_buf(pem, (int)len);
    X509 *x = bio ? PEM_read_bio_X509(bio, NULL, NULL, NULL) : NULL;
    BIO_free(bio);
    ERR_clear_error();
    return x;
}

/* An encrypted key would make OpenSSL prompt on the terminal: refuse. */
static int no_passphrase(char *buf, int size, int rwflag, void *u)
{
    (void)buf, (void)size, (void)rwflag, (void)u;
    return -1;
}

static EVP_PKEY *read_key(const char *pem, size_t len)
{
    BIO *bio = BIO_new_mem_buf(pem, (int)len);
    EVP_PKEY *key = bio ? PEM_read_bio_PrivateKey(bio, NULL, no_passphrase, NULL) : NULL;
    BIO_free(bio);
    ERR_clear_error();
    return key;
}

/* Reads a file that must hold a PEM certificate; *cert gets the first
 * when cert is not NULL. */
static cairn_status read_certs(const char *field, const char *path, char **pem, X509 **cert,
                               cairn_error *err)
{
    size_t len;
    cairn_status rc = read_pem(field, path, pem, &len, err);
    if (rc)
        return rc;
    X509 *x = first_cert(*pem, len);
    if (!x)
        return cairn__fail(err, CAIRN_INVALID_ARGUMENT,
                           "%s: %s holds no PEM certificate (\"-----BEGIN CERTIFICATE-----\")",
                           field, path);
    if (cert)
        *cert = x;
    else
        X509_free(x);
    return CAIRN_OK;
}

/* The client's key pair: a certificate and the key that matches it. */
static cairn_status read_key_pair(const cairn_tls_options *o, cairn__tls *out, cairn_error *err)
{
    X509 *cert = NULL;
    cairn_status rc = read_certs("tls.cert_file", o->cert_file, &out->cert_pem, &cert, err);
    size_t len = 0;
    if (!rc)
        rc = read_pem("tls.key_file", o->key_file, &out->key_pem, &len, err);
    out->key_len = len;
    EVP_PKEY *key = rc ? NULL : read_key(out->key_pem, len);
    if (!rc && !key)
        rc = cairn__fail(err, CAIRN_INVALID_ARGUMENT,
                         "tls.key_file: %s holds no unencrypted PEM private key", o->key_file);
    if (!rc && X509_check_private_key(cert, key) != 1)
        rc = cairn__fail(err, CAIRN_INVALID_ARGUMENT,
                         "tls.key_file: %s does not match the certificate in tls.cert_file %s",
                         o->key_file, o->cert_file);
    ERR_clear_error();
    EVP_PKEY_free(key);
    X509_free(cert);
    return rc;
}

cairn_status cairn__tls_load(const cairn_tls_options *o, cairn__tls *out, cairn_error *err)
{
    memset(out, 0, sizeof *out);
    if (is_set(o->cert_file) != is_set(o->key_file))
        return cairn__fail(err, CAIRN_INVALID_ARGUMENT,
                           "tls.cert_file and tls.key_file go together: set both or neither "
                           "(only %s is set)",
                           is_set(o->cert_file) ? "tls.cert_file" : "tls.key_file");
    if (is_set(o->server_name) && strlen(o->server_name) > SERVER_NAME_MAX)
        return cairn__fail(err, CAIRN_INVALID_ARGUMENT,
                           "tls.server_name: at most %d bytes, got %zu", SERVER_NAME_MAX,
                           strlen(o->server_name));
    cairn_status rc = CAIRN_OK;
    if (is_set(o->ca_file))
        rc = read_certs("tls.ca_file", o->ca_file, &out->ca_pem, NULL, err);
    if (!rc && is_set(o->cert_file))
        rc = read_key_pair(o, out, err);
    if (!rc && is_set(o->server_name) && !(out->server_name = strdup(o->server_name)))
        rc = cairn__fail(err, CAIRN_NO_MEMORY, "tls.server_name: out of memory");
    if (rc)
        cairn__tls_free(out);
    return rc;
}

void cairn__tls_free(cairn__tls *t)
{
    free(t->ca_pem);
    free(t->cert_pem);
    if (t->key_pem)
        OPENSSL_cleanse(t->key_pem, t->key_len);
    free(t->key_pem);
    free(t->server_name);
    memset(t, 0, sizeof *t);
}
