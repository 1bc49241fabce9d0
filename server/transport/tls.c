/* TLS files -> checked PEM text -> gRPC's certificate-config fetcher.
 *
 * gRPC 1.51 makes one security connector per listening port; it asks the
 * fetcher once when the port is added (an answer other than a new
 * configuration there fails the start) and again before every handshake.
 * A configuration handed over is gRPC's: it copies the PEM text into a
 * new SSL context and destroys it. So the fetcher gives the pending
 * configuration once and answers "unchanged" until a reload leaves
 * another. The key's text is wiped as soon as gRPC has its copy. */
#include "transport/tls.h"

#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define FLAG_CERT "--tls-cert"
#define FLAG_KEY "--tls-key"
#define FLAG_CLIENT_CA "--tls-client-ca"

/* The served certificate, for the log. */
typedef struct tls_about {
    char subject[256];             /* of the first certificate, RFC 2253 */
    char not_after[32];            /* ISO 8601 UTC */
    bool expired;
} tls_about;

/* What one read of the files gave. */
typedef struct tls_pems {
    char *cert;                    /* PEM text, NUL-terminated */
    char *key;                     /* wiped before it is freed */
    size_t key_len;
    char *client_ca;               /* NULL without mutual TLS */
    tls_about about;
} tls_pems;

struct srv_tls {
    char *cert_path, *key_path, *ca_path; /* ca_path NULL: no client certificates */
    pthread_mutex_t mu;            /* guards pending: the fetcher takes, a reload leaves */
    grpc_ssl_server_certificate_config *pending; /* for the next handshake; NULL: none */
    tls_about about;               /* of the last files read successfully */
};

static void pems_clear(tls_pems *p)
{
    free(p->cert);
    if (p->key) {
        OPENSSL_cleanse(p->key, p->key_len);
        free(p->key);
    }
    free(p->client_ca);
    memset(p, 0, sizeof *p);
}

/* The newest reason on OpenSSL's error queue, which it then empties. */
static const char *openssl_reason(void)
{
    unsigned long e = ERR_peek_last_error();
    const char *r = e ? ERR_reason_error_string(e) : NULL;
    ERR_clear_error();
    return r ? r : "no reason given";
}

/* Reads a whole regular file of at most SRV_TLS_FILE_MAX bytes into a
 * NUL-terminated malloc'd buffer. */
static srv_code read_file(const char *flag, const char *path, char **out, size_t *len,
                          srv_error *err)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return srv_fail(err, SRV_INVALID_ARGUMENT, "%s %s: cannot open: %s", flag, path,
                        strerror(errno));
    struct stat st;
    srv_code rc = SRV_OK;
    if (fstat(fd, &st) != 0)
        rc = srv_fail(err, SRV_INVALID_ARGUMENT, "%s %s: cannot stat: %s", flag, path,
                      strerror(errno));
    else if (!S_ISREG(st.st_mode))
        rc = srv_fail(err, SRV_INVALID_ARGUMENT, "%s %s: not a regular file", flag, path);
    else if (st.st_size > SRV_TLS_FILE_MAX)
        rc = srv_fail(err, SRV_INVALID_ARGUMENT, "%s %s: %lld bytes, over the limit of %d",
                      flag, path, (long long)st.st_size, SRV_TLS_FILE_MAX);
    char *buf = rc ? NULL : malloc((size_t)st.st_size + 1);
    if (!rc && !buf)
        rc = srv_fail(err, SRV_RESOURCE_EXHAUSTED, "%s %s: out of memory", flag, path);
    size_t n = 0;
    while (!rc && n < (size_t)st.st_size) {
        ssize_t r = read(fd, buf + n, (size_t)st.st_size - n);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            rc = srv_fail(err, SRV_INVALID_ARGUMENT, "%s %s: cannot read: %s", flag, path,
                          strerror(errno));
        if (r <= 0)
            break; /* an error, or the file shrank meanwhile: parse what came */
        n += (size_t)r;
    }
    close(fd);
    if (rc) {
        free(buf);
        return rc;
    }
    buf[n] = '\0';
    *out = buf;
    *len = n;
    return SRV_OK;
}

/* Parses every PEM certificate in pem (other PEM blocks are skipped);
 * *first, when not NULL, gets the first one. At least one is required. */
static srv_code parse_certs(const char *flag, const char *path, const char *pem, size_t len,
                            X509 **first, srv_error *err)
{
    BIO *bio = BIO_new_mem_buf(pem, (int)len);
    if (!bio)
        return srv_fail(err, SRV_RESOURCE_EXHAUSTED, "%s %s: out of memory", flag, path);
    ERR_clear_error();
    int n = 0;
    X509 *x;
    while ((x = PEM_read_bio_X509(bio, NULL, NULL, NULL))) {
        if (n++ == 0 && first)
            *first = x;
        else
            X509_free(x);
    }
    BIO_free(bio);
    /* The loop ends at "no start line" once no block is left; any other
     * reason is a block that does not parse. */
    unsigned long e = ERR_peek_last_error();
    bool at_end = ERR_GET_LIB(e) == ERR_LIB_PEM && ERR_GET_REASON(e) == PEM_R_NO_START_LINE;
    srv_code rc = SRV_OK;
    if (!at_end)
        rc = srv_fail(err, SRV_INVALID_ARGUMENT, "%s %s: certificate %d does not parse (%s)",
                      flag, path, n + 1, openssl_reason());
    else if (n == 0)
        rc = srv_fail(err, SRV_INVALID_ARGUMENT,
                      "%s %s: no PEM certificate in it (\"-----BEGIN CERTIFICATE-----\")", flag,
                      path);
    ERR_clear_error();
    if (rc && first && n > 0) {
        X509_free(*first);
        *first = NULL;
    }
    return rc;
}

/* An encrypted key would make OpenSSL prompt on the terminal: refuse. */
static int no_passphrase(char *buf, int size, int rwflag, void *u)
{
    (void)buf, (void)size, (void)rwflag, (void)u;
    return -1;
}

/* Checks that pem holds a private key matching cert. */
static srv_code check_key(const char *path, const char *pem, size_t len, X509 *cert,
                          const char *cert_path, srv_error *err)
{
    BIO *bio = BIO_new_mem_buf(pem, (int)len);
    if (!bio)
        return srv_fail(err, SRV_RESOURCE_EXHAUSTED, FLAG_KEY " %s: out of memory", path);
    ERR_clear_error();
    EVP_PKEY *key = PEM_read_bio_PrivateKey(bio, NULL, no_passphrase, NULL);
    BIO_free(bio);
    srv_code rc = SRV_OK;
    if (!key)
        rc = srv_fail(err, SRV_INVALID_ARGUMENT,
                      FLAG_KEY " %s: no unencrypted PEM private key in it (%s)", path,
                      openssl_reason());
    else if (X509_check_private_key(cert, key) != 1)
        rc = srv_fail(err, SRV_INVALID_ARGUMENT,
                      FLAG_KEY " %s: does not match the certificate in " FLAG_CERT " %s", path,
                      cert_path);
    EVP_PKEY_free(key);
    ERR_clear_error();
    return rc;
}

static void describe_cert(X509 *cert, tls_about *p)
{
    BIO *bio = BIO_new(BIO_s_mem());
    if (bio && X509_NAME_print_ex(bio, X509_get_subject_name(cert), 0, XN_FLAG_RFC2253) >= 0) {
        int n = BIO_read(bio, p->subject, (int)sizeof p->subject - 1);
        p->subject[n > 0 ? n : 0] = '\0';
    }
    BIO_free(bio);
    const ASN1_TIME *end = X509_get0_notAfter(cert);
    struct tm tm;
    if (ASN1_TIME_to_tm(end, &tm) == 1)
        strftime(p->not_after, sizeof p->not_after, "%Y-%m-%dT%H:%M:%SZ", &tm);
    p->expired = X509_cmp_current_time(end) < 0;
    ERR_clear_error();
}

/* Reads and checks the three files into *out (all or nothing). */
static srv_code load(const srv_tls *t, tls_pems *out, srv_error *err)
{
    tls_pems p;
    memset(&p, 0, sizeof p);
    size_t cert_len = 0, ca_len = 0;
    X509 *leaf = NULL;
    srv_code rc = read_file(FLAG_CERT, t->cert_path, &p.cert, &cert_len, err);
    if (!rc)
        rc = parse_certs(FLAG_CERT, t->cert_path, p.cert, cert_len, &leaf, err);
    if (!rc)
        rc = read_file(FLAG_KEY, t->key_path, &p.key, &p.key_len, err);
    if (!rc)
        rc = check_key(t->key_path, p.key, p.key_len, leaf, t->cert_path, err);
    if (!rc && t->ca_path)
        rc = read_file(FLAG_CLIENT_CA, t->ca_path, &p.client_ca, &ca_len, err);
    if (!rc && t->ca_path)
        rc = parse_certs(FLAG_CLIENT_CA, t->ca_path, p.client_ca, ca_len, NULL, err);
    if (!rc)
        describe_cert(leaf, &p.about);
    X509_free(leaf);
    if (rc) {
        pems_clear(&p);
        return rc;
    }
    *out = p;
    return SRV_OK;
}

srv_code srv_tls_reload(srv_tls *t, srv_error *err)
{
    tls_pems p;
    srv_code rc = load(t, &p, err);
    if (rc)
        return rc;
    grpc_ssl_pem_key_cert_pair pair = {p.key, p.cert};
    /* gRPC 1.51 asserts that a fetched configuration has client CAs even
     * when it asks no client for a certificate; without mutual TLS the
     * server's own chain stands in, unused. */
    grpc_ssl_server_certificate_config *next = grpc_ssl_server_certificate_config_create(
        p.client_ca ? p.client_ca : p.cert, &pair, 1);
    t->about = p.about;
    pems_clear(&p);
    pthread_mutex_lock(&t->mu);
    grpc_ssl_server_certificate_config *unused = t->pending;
    t->pending = next;
    pthread_mutex_unlock(&t->mu);
    if (unused) /* two reloads without a handshake between them */
        grpc_ssl_server_certificate_config_destroy(unused);
    return SRV_OK;
}

static char *dup_path(const char *path)
{
    return path && *path ? strdup(path) : NULL;
}

srv_code srv_tls_open(const srv_tls_files *files, srv_tls **out, srv_error *err)
{
    srv_tls *t = calloc(1, sizeof *t);
    if (!t)
        return srv_fail(err, SRV_RESOURCE_EXHAUSTED, "TLS: out of memory");
    pthread_mutex_init(&t->mu, NULL);
    t->cert_path = dup_path(files->cert);
    t->key_path = dup_path(files->key);
    t->ca_path = dup_path(files->client_ca);
    srv_code rc = SRV_OK;
    if (!t->cert_path || !t->key_path || (files->client_ca && *files->client_ca && !t->ca_path))
        rc = srv_fail(err, SRV_RESOURCE_EXHAUSTED, "TLS: out of memory");
    if (!rc)
        rc = srv_tls_reload(t, err); /* the first read */
    if (rc) {
        srv_tls_free(t);
        return rc;
    }
    *out = t;
    return SRV_OK;
}

static grpc_ssl_certificate_config_reload_status fetch(void *user,
                                                       grpc_ssl_server_certificate_config **config)
{
    srv_tls *t = user;
    pthread_mutex_lock(&t->mu);
    *config = t->pending;
    t->pending = NULL;
    pthread_mutex_unlock(&t->mu);
    return *config ? GRPC_SSL_CERTIFICATE_CONFIG_RELOAD_NEW
                   : GRPC_SSL_CERTIFICATE_CONFIG_RELOAD_UNCHANGED;
}

grpc_server_credentials *srv_tls_credentials(srv_tls *t)
{
    /* Only REQUEST_AND_REQUIRE rejects a client without a certificate. */
    grpc_ssl_client_certificate_request_type ask =
        t->ca_path ? GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY
                   : GRPC_SSL_DONT_REQUEST_CLIENT_CERTIFICATE;
    grpc_ssl_server_credentials_options *opts =
        grpc_ssl_server_credentials_create_options_using_config_fetcher(ask, fetch, t);
    return grpc_ssl_server_credentials_create_with_options(opts);
}

bool srv_tls_describe(const srv_tls *t, char *out, size_t cap)
{
    const tls_about *p = &t->about;
    char clients[4200] = "clients need no certificate";
    if (t->ca_path)
        snprintf(clients, sizeof clients,
                 "clients must present a certificate that verifies against " FLAG_CLIENT_CA
                 " %s",
                 t->ca_path);
    snprintf(out, cap, FLAG_CERT " %s (%s, %s %s), " FLAG_KEY " %s; %s", t->cert_path,
             p->subject, p->expired ? "EXPIRED since" : "valid until", p->not_after, t->key_path,
             clients);
    return p->expired;
}

void srv_tls_free(srv_tls *t)
{
    if (!t)
        return;
    if (t->pending)
        grpc_ssl_server_certificate_config_destroy(t->pending);
    free(t->cert_path);
    free(t->key_path);
    free(t->ca_path);
    pthread_mutex_destroy(&t->mu);
    free(t);
}
