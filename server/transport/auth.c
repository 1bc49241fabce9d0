/* gRPC core's auth metadata processor runs on each call after its
 * headers arrive and before the server matches it to a waiting slot, so a
 * refused call costs no handler and reaches no application code.
 *
 * Its grpc_auth_context is the connection's, not the call's (gRPC core
 * 1.51's server auth filter; grpc/grpc#28809): a property added there
 * shows on every later call of the connection, grows with each call, and
 * may be read by one call while another adds to it. So nothing is kept
 * there: the processor only admits or refuses, and the application reads
 * the call's own authorization header (srv_call_authorization) to know
 * who it is. */
#include "transport/auth.h"

#include <stdlib.h>
#include <string.h>

typedef struct processor {
    srv_rpc_auth_fn fn;
    void *app;
} processor;

static bool key_is(grpc_slice key, const char *name)
{
    size_t n = strlen(name);
    return GRPC_SLICE_LENGTH(key) == n && memcmp(GRPC_SLICE_START_PTR(key), name, n) == 0;
}

static void process(void *state, grpc_auth_context *ctx, const grpc_metadata *md, size_t n,
                    grpc_process_auth_metadata_done_cb done, void *user_data)
{
    (void)ctx; /* the connection's: see above */
    const processor *p = state;
    char path[256] = "";
    const char *header = NULL;
    size_t header_len = 0;
    int headers = 0;
    for (size_t i = 0; i < n; i++) {
        if (key_is(md[i].key, ":path")) {
            size_t len = GRPC_SLICE_LENGTH(md[i].value);
            if (len < sizeof path) {
                memcpy(path, GRPC_SLICE_START_PTR(md[i].value), len);
                path[len] = '\0';
            }
        } else if (key_is(md[i].key, "authorization") && headers++ == 0) {
            header = (const char *)GRPC_SLICE_START_PTR(md[i].value);
            header_len = GRPC_SLICE_LENGTH(md[i].value);
        }
    }
    srv_error err;
    srv_code code = p->fn(p->app, path, header, header_len, headers > 1, &err);
    done(user_data, NULL, 0, NULL, 0, (grpc_status_code)code, code ? err.msg : NULL);
}

static void destroy(void *state)
{
    free(state);
}

int srv_rpc_auth_attach(grpc_server_credentials *creds, const srv_rpc_config *cfg)
{
    if (!cfg->authenticate)
        return 0;
    processor *p = malloc(sizeof *p);
    if (!p)
        return -1;
    *p = (processor){cfg->authenticate, cfg->app};
    /* The credentials own p from here: gRPC calls destroy when they go. */
    grpc_server_credentials_set_auth_metadata_processor(
        creds, (grpc_auth_metadata_processor){process, destroy, p});
    return 0;
}
