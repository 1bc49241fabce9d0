/* TLS credentials of cairnd's listener. The certificate chain, its key
 * and (for mutual TLS) the client CAs are read from files and checked
 * with libcrypto before gRPC sees them, and handed to gRPC through its
 * certificate-config fetcher, which gRPC asks at every new handshake: a
 * reload swaps what the next handshakes use, while connections already
 * made keep the certificate they were made with.
 *
 * Error messages name the flag (--tls-cert, --tls-key, --tls-client-ca),
 * the path and the reason. Nothing logs or returns key material; the
 * key's bytes are wiped once gRPC has its copy.
 *
 * Threads: srv_tls_reload and srv_tls_describe from one thread at a time
 * (cairnd's signal loop); gRPC calls the fetcher on its own threads. */
#ifndef CAIRN_SERVER_TLS_H
#define CAIRN_SERVER_TLS_H

#include "base/error.h"

#include <grpc/grpc_security.h>

#include <stdbool.h>
#include <stddef.h>

typedef struct srv_tls_files {
    const char *cert;              /* PEM certificate chain, the server's first */
    const char *key;               /* its PEM private key (unencrypted) */
    const char *client_ca;         /* PEM CAs for client certificates; NULL or "":
                                    * no client certificate is asked for */
} srv_tls_files;

typedef struct srv_tls srv_tls;

/* Reads and checks the files (copied paths): each must be a readable
 * regular file of at most SRV_TLS_FILE_MAX bytes; the certificate file
 * holds at least one PEM certificate and every block in it parses; the
 * key parses and matches the first certificate; the CA file holds at
 * least one PEM certificate. Returns SRV_OK and *out, or
 * SRV_INVALID_ARGUMENT with err naming the flag, the path and why. */
#define SRV_TLS_FILE_MAX (1024 * 1024)
srv_code srv_tls_open(const srv_tls_files *files, srv_tls **out, srv_error *err);

/* Server credentials that serve t's files, with the client certificate
 * required and verified when a client CA was given. The caller releases
 * them; t must outlive the server they are used by. */
grpc_server_credentials *srv_tls_credentials(srv_tls *t);

/* Reads and checks the same paths again. When they pass, the next
 * handshakes use them; otherwise nothing changes and err says which file
 * and why (SRV_INVALID_ARGUMENT). */
srv_code srv_tls_reload(srv_tls *t, srv_error *err);

/* Writes one line (cap bytes, NUL-terminated) about what the last
 * successful open or reload read: the paths, the certificate's subject
 * and end of validity ("EXPIRED" once past), whether clients need a
 * certificate. Returns whether the certificate has expired. */
bool srv_tls_describe(const srv_tls *t, char *out, size_t cap);

/* Frees t; NULL is a no-op. Only once no server uses its credentials. */
void srv_tls_free(srv_tls *t);

#endif
