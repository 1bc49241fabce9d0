/* cairn-test-certs DIR: a CA and, signed by it, a server certificate for
 * localhost and 127.0.0.1 and a client certificate, as DIR/ca.crt,
 * DIR/server.{crt,key} and DIR/client.{crt,key}, made now with libcrypto
 * (certs.h) for the Python suites, so no private key is committed. */
#include "certs.h"

#include <stdio.h>

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: cairn-test-certs DIR\n");
        return 2;
    }
    const long day = 86400;
    ct_cert_spec ca_spec = {.common_name = "cairn test CA", .valid_from_s = -day,
                            .valid_to_s = day, .ca = true};
    ct_cert_spec server_spec = {.common_name = "localhost",
                                .alt_names = "DNS:localhost,IP:127.0.0.1",
                                .valid_from_s = -day, .valid_to_s = day};
    ct_cert_spec client_spec = {.common_name = "cairn test client", .valid_from_s = -day,
                                .valid_to_s = day};
    ct_cert ca, server, client;
    int rc = ct_cert_make(argv[1], "ca", &ca_spec, NULL, &ca);
    if (rc == 0)
        rc = ct_cert_make(argv[1], "server", &server_spec, &ca, &server);
    if (rc == 0) {
        ct_cert_free(&server);
        rc = ct_cert_make(argv[1], "client", &client_spec, &ca, &client);
    }
    if (rc == 0)
        ct_cert_free(&client);
    ct_cert_free(&ca);
    return rc == 0 ? 0 : 1;
}
