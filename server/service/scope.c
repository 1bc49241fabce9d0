#include "service/scope.h"
#include "base/log.h"

#include <string.h>

#define HEALTH_PATH "/grpc.health.v1.Health/Check"

/* Probes are open: a load balancer or kubelet carries no token. */
static srv_code authenticate(void *appv, const char *path, const char *header,
                             size_t header_len, bool repeated, srv_error *err)
{
    srv_app *app = appv;
    if (strcmp(path, HEALTH_PATH) == 0)
        return SRV_OK;
    srv_identity who;
    srv_code rc = repeated ? srv_fail(err, SRV_UNAUTHENTICATED,
                                      "authorization header: sent more than once; send one")
                           : srv_tokens_identify(app->tokens, header, header_len, &who, err);
    if (rc)
        srv_debug("auth: refused a call to %s: %s", path, err->msg);
    return rc;
}

srv_rpc_auth_fn srv_scope_authenticator(const srv_app *app)
{
    return app->tokens ? authenticate : NULL;
}

srv_code srv_scope_identify(srv_app *app, srv_call *call, const srv_identity **who,
                            srv_error *err)
{
    if (!app->tokens) {
        *who = &srv_identity_anyone;
        return SRV_OK;
    }
    srv_identity *id = srv_arena_alloc(srv_call_arena(call), sizeof *id);
    if (!id)
        return srv_fail(err, SRV_RESOURCE_EXHAUSTED, "out of memory");
    size_t len;
    const char *header = srv_call_authorization(call, &len);
    if (srv_tokens_identify(app->tokens, header, len, id, err))
        return err->code;
    *who = id;
    return SRV_OK;
}

srv_code srv_scope_role(const srv_identity *who, srv_role need, const char *method,
                        srv_error *err)
{
    if (who->role >= need)
        return SRV_OK;
    return srv_fail(err, SRV_PERMISSION_DENIED,
                    "%s: token %s has role %s; %s needs role %s or above", method, who->name,
                    srv_role_name(who->role), method, srv_role_name(need));
}

srv_code srv_scope_run(const srv_identity *who, const char *method, const char *run_id,
                       srv_error *err)
{
    if (srv_identity_covers(who, run_id))
        return SRV_OK;
    char q[SRV_QUOTE_MAX];
    return srv_fail(err, SRV_PERMISSION_DENIED,
                    "%s: run_id %s is outside the run prefix \"%s\" of token %s", method,
                    srv_quote(q, run_id, strlen(run_id)), who->prefix, who->name);
}
