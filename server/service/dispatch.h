/* The dispatch table: one row per RPC, {path, kind, message types,
 * validate, read or apply}. Adding an RPC is adding a row and its
 * handler functions. The generic paths here do the parts every handler
 * shares: decode, validate, fingerprint, submit, encode, reply. */
#ifndef CAIRN_SERVER_DISPATCH_H
#define CAIRN_SERVER_DISPATCH_H

#include "service/app.h"
#include "transport/rpc.h"

#include <protobuf-c/protobuf-c.h>

/* The methods cairnd serves, in table order, for srv_rpc_start. */
const srv_rpc_method *srv_dispatch_methods(size_t *n);

/* srv_rpc_on_call for the table; app is a srv_app. */
void srv_dispatch_call(void *app, srv_call *call, size_t index);

#endif
