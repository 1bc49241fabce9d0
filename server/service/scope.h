/* What a caller may do: who it is (its bearer token's identity, from
 * config/tokens.h), then each method's least role and the run it names
 * against the token's run prefix. Without --auth-tokens everyone is
 * srv_identity_anyone (admin of every run). */
#ifndef CAIRN_SERVER_SCOPE_H
#define CAIRN_SERVER_SCOPE_H

#include "service/app.h"
#include "transport/rpc.h"

/* The transport's authenticate hook (srv_rpc_config) for app: NULL when
 * cairnd runs without tokens. The hook lets Health through whatever
 * the call carries and refuses any other call without exactly one
 * authorization header holding a known token (UNAUTHENTICATED naming
 * the authorization header). */
srv_rpc_auth_fn srv_scope_authenticator(const srv_app *app);

/* Who the call is, from its authorization header; *who lives in the
 * call's arena for the call's life, whatever reloads meanwhile.
 * UNAUTHENTICATED when the token is no longer known (replaced after the
 * hook admitted the call). */
srv_code srv_scope_identify(srv_app *app, srv_call *call, const srv_identity **who,
                            srv_error *err);

/* SRV_OK, or PERMISSION_DENIED naming method, the token and its role
 * when who's role is below need. */
srv_code srv_scope_role(const srv_identity *who, srv_role need, const char *method,
                        srv_error *err);

/* SRV_OK, or PERMISSION_DENIED naming method, the run, the token and
 * its run prefix when run_id lies outside it. */
srv_code srv_scope_run(const srv_identity *who, const char *method, const char *run_id,
                       srv_error *err);

#endif
