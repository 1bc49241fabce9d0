/* Transport-internal: the auth metadata processor that runs a
 * srv_rpc_config's authenticate hook on every call. */
#ifndef CAIRN_SERVER_TRANSPORT_AUTH_H
#define CAIRN_SERVER_TRANSPORT_AUTH_H

#include "transport/rpc.h"

#include <grpc/grpc_security.h>

/* Installs cfg->authenticate (nothing when NULL) as the auth metadata
 * processor of creds, whichever kind they are (insecure or SSL). Call
 * before the credentials are added to a port. Returns 0, or -1 when out
 * of memory. */
int srv_rpc_auth_attach(grpc_server_credentials *creds, const srv_rpc_config *cfg);

#endif
