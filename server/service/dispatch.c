#include "service/dispatch.h"
#include "grpc/health/v1/health.pb-c.h"
#include "service/contract.h"
#include "service/handlers/handlers.h"
#include "service/scope.h"
#include "service/validate.h"
#include "base/pbc.h"

#include <string.h>

typedef enum kind {
    KIND_READ,          /* unary: read (the store, on the I/O pool) */
    KIND_LOCAL,         /* unary: answered from memory, on the gRPC thread */
    KIND_MUTATION,      /* unary: apply through the ledger */
    KIND_SERVER_STREAM, /* one request, then the handler streams */
    KIND_CLIENT_STREAM, /* a mutation whose request the handler reads as a stream */
} kind;

/* Which run a call touches, to check against its token's run prefix
 * (service/scope.h). */
typedef enum scope {
    SCOPE_RUN,          /* the request's run_id, once decoded and validated */
    SCOPE_LISTED,       /* none named: the read lists only runs in scope */
    SCOPE_HEADER,       /* the upload's header names it: checked by its handler */
    SCOPE_OPEN,         /* no token needed (Health) */
} scope;

typedef struct row {
    const char *path;
    const char *name;                          /* also the dedup scope */
    kind kind;
    srv_role role;                             /* the least role that may call it */
    scope scope;
    const ProtobufCMessageDescriptor *request;
    const ProtobufCMessageDescriptor *response;
    srv_validate_fn validate;                  /* NULL: nothing to check */
    srv_read_fn read;                          /* KIND_READ, KIND_LOCAL */
    srv_scoped_read_fn scoped_read;            /* KIND_READ of SCOPE_LISTED */
    srv_apply_fn apply;                        /* KIND_MUTATION, KIND_CLIENT_STREAM */
    void (*serve)(srv_app *, srv_call *, ProtobufCMessage *); /* KIND_SERVER_STREAM */
    /* KIND_CLIENT_STREAM: reads the stream, fills and submits m, checking
     * the run it names against who's scope. */
    void (*accept)(srv_app *, srv_call *, const srv_identity *who, srv_mutation *m);
} row;

/* A method's path and its name (the dedup scope), from one token. */
#define COORD(name) "/cairn.v1.Coordinator/" #name, #name
#define MSG(x) &cairn__v1__##x##__descriptor
/* A row's least role and its scope, for the rows naming a run_id. */
#define READS_RUN SRV_ROLE_READ, SCOPE_RUN
#define WRITES_RUN SRV_ROLE_WRITE, SCOPE_RUN

/* Methods not listed here get UNIMPLEMENTED from the transport's
 * catch-all. */
static const row table[] = {
    {COORD(CreateRun), KIND_MUTATION, WRITES_RUN, MSG(create_run_request), MSG(run),
     srv_validate_create_run, .apply = srv_apply_create_run},
    {COORD(GetRun), KIND_READ, READS_RUN, MSG(get_run_request), MSG(run),
     srv_validate_run_id_only, .read = srv_read_get_run},
    {COORD(ListRuns), KIND_READ, SRV_ROLE_READ, SCOPE_LISTED, MSG(list_runs_request),
     MSG(list_runs_response), srv_validate_list_runs, .scoped_read = srv_read_list_runs},
    {COORD(DeleteRun), KIND_MUTATION, SRV_ROLE_ADMIN, SCOPE_RUN, MSG(delete_run_request),
     MSG(delete_run_response), srv_validate_run_id_only, .apply = srv_apply_delete_run},
    {COORD(AppendEvents), KIND_MUTATION, WRITES_RUN, MSG(append_events_request),
     MSG(append_events_response), srv_validate_append_events, .apply = srv_apply_append_events},
    {COORD(ReadEvents), KIND_READ, READS_RUN, MSG(read_events_request),
     MSG(read_events_response), srv_validate_read_events, .read = srv_read_read_events},
    {COORD(WatchEvents), KIND_SERVER_STREAM, READS_RUN, MSG(watch_events_request), MSG(event),
     srv_validate_watch_events, .serve = srv_start_watch_events},
    {COORD(AcquireWorker), KIND_MUTATION, WRITES_RUN, MSG(acquire_worker_request), MSG(lease),
     srv_validate_acquire_worker, .apply = srv_apply_acquire_worker},
    {COORD(RenewLease), KIND_MUTATION, WRITES_RUN, MSG(renew_lease_request), MSG(lease),
     srv_validate_renew_lease, .apply = srv_apply_renew_lease},
    {COORD(ReleaseWorker), KIND_MUTATION, WRITES_RUN, MSG(release_worker_request),
     MSG(release_worker_response), srv_validate_release_worker, .apply = srv_apply_release_worker},
    {COORD(CompleteWorker), KIND_MUTATION, WRITES_RUN, MSG(complete_worker_request),
     MSG(complete_worker_response), srv_validate_complete_worker,
     .apply = srv_apply_complete_worker},
    {COORD(CreateCheckpoint), KIND_CLIENT_STREAM, SRV_ROLE_WRITE, SCOPE_HEADER,
     MSG(create_checkpoint_request), MSG(checkpoint), NULL,
     .apply = srv_apply_create_checkpoint, .accept = srv_start_create_checkpoint},
    {COORD(ListCheckpoints), KIND_READ, READS_RUN, MSG(list_checkpoints_request),
     MSG(list_checkpoints_response), srv_validate_list_checkpoints,
     .read = srv_read_list_checkpoints},
    {COORD(GetLatestCheckpoint), KIND_READ, READS_RUN,
     MSG(get_latest_checkpoint_request), MSG(checkpoint), srv_validate_run_id_only,
     .read = srv_read_get_latest_checkpoint},
    {COORD(LoadCheckpoint), KIND_SERVER_STREAM, READS_RUN, MSG(load_checkpoint_request),
     MSG(checkpoint_chunk), srv_validate_load_checkpoint, .serve = srv_start_load_checkpoint},
    {COORD(CleanupCheckpoints), KIND_MUTATION, WRITES_RUN,
     MSG(cleanup_checkpoints_request), MSG(cleanup_checkpoints_response),
     srv_validate_cleanup_checkpoints, .apply = srv_apply_cleanup_checkpoints},
    {COORD(ResumeRun), KIND_READ, READS_RUN, MSG(resume_run_request), MSG(resume_result),
     srv_validate_resume_run, .read = srv_read_resume_run},
    /* A probe is answered even while every I/O thread waits for the disk,
     * and carries no token. */
    {"/grpc.health.v1.Health/Check", "Check", KIND_LOCAL, SRV_ROLE_READ, SCOPE_OPEN,
     &grpc__health__v1__health_check_request__descriptor,
     &grpc__health__v1__health_check_response__descriptor, NULL, .read = srv_read_health_check},
};
enum { N_ROWS = sizeof table / sizeof table[0] };

static srv_rpc_method methods[N_ROWS];

const srv_rpc_method *srv_dispatch_methods(size_t *n)
{
    for (size_t i = 0; i < N_ROWS; i++) {
        srv_rpc_shape shape = table[i].kind == KIND_SERVER_STREAM   ? SRV_RPC_SERVER_STREAM
                              : table[i].kind == KIND_CLIENT_STREAM ? SRV_RPC_CLIENT_STREAM
                                                                    : SRV_RPC_UNARY;
        methods[i] = (srv_rpc_method){table[i].path, shape};
    }
    *n = N_ROWS;
    return methods;
}

static void mutation_done(void *ctx, srv_code code, const srv_error *err,
                          const uint8_t *resp, size_t len, bool replayed)
{
    srv_call *call = ctx;
    if (code)
        srv_call_fail(call, err);
    else
        srv_call_reply(call, resp, len, replayed);
}

/* A mutation of row r, answered through mutation_done; the request,
 * run, key and fingerprint are the caller's to fill. NULL when out of
 * memory. */
static srv_mutation *new_mutation(srv_app *app, srv_call *call, const row *r)
{
    srv_mutation *m = srv_arena_alloc(srv_call_arena(call), sizeof *m);
    if (!m)
        return NULL;
    memset(m, 0, sizeof *m);
    m->method = r->name;
    m->response = r->response;
    m->apply = r->apply;
    m->apply_ctx = app;
    m->arena = srv_call_arena(call);
    m->done = mutation_done;
    m->ctx = call;
    return m;
}

/* Fingerprint, then the ledger answers through mutation_done. */
static srv_code submit(srv_app *app, srv_call *call, const row *r, ProtobufCMessage *req,
                       srv_error *err)
{
    srv_mutation *m = new_mutation(app, call, r);
    if (!m)
        return srv_fail(err, SRV_RESOURCE_EXHAUSTED, "out of memory");
    m->run_id = srv_msg_string(req, "run_id");
    m->key = srv_msg_string(req, "idempotency_key");
    m->request = req;
    if (srv_fingerprint(m->arena, req, m->fingerprint, err))
        return err->code;
    return srv_ledger_submit(app->ledger, m, err);
}

static srv_code answer_read(srv_app *app, srv_call *call, const row *r,
                            const srv_identity *who, const ProtobufCMessage *req, srv_error *err)
{
    srv_arena *a = srv_call_arena(call);
    ProtobufCMessage *resp = srv_new_message(a, r->response);
    uint8_t *buf;
    size_t len;
    if (!resp)
        return srv_fail(err, SRV_RESOURCE_EXHAUSTED, "out of memory");
    if ((r->scoped_read ? r->scoped_read(app, a, who->prefix, req, resp, err)
                        : r->read(app, a, req, resp, err)) ||
        srv_pack(a, resp, &buf, &len, err))
        return err->code;
    /* Pages stop under the limit and the largest single answers fit it
     * (contract.h); should one ever not, the caller learns which limit,
     * not gRPC's "Sent message larger than max". Without a pushback the
     * client does not retry it. */
    if (len > SRV_MESSAGE_MAX)
        return srv_fail(err, SRV_RESOURCE_EXHAUSTED,
                        "%s: the response would be %zu bytes, over the %d-byte message limit",
                        r->name, len, SRV_MESSAGE_MAX);
    srv_call_reply(call, buf, len, false);
    return SRV_OK;
}

/* Decodes and checks the request (its run against who's scope last),
 * then reads, submits or starts the stream. */
static void serve(srv_app *app, srv_call *call, const row *r, const srv_identity *who)
{
    srv_arena *a = srv_call_arena(call);
    srv_error err;
    size_t len;
    const uint8_t *data = srv_call_request(call, &len);
    ProtobufCMessage *req;

    srv_code rc = srv_unpack(r->request, a, data, len, &req, &err);
    const char *run_id = rc ? "" : srv_msg_string(req, "run_id");
    if (*run_id) /* for the call's log line */
        srv_call_set_run_id(call, run_id);
    if (!rc && r->kind == KIND_MUTATION)
        rc = srv_check_key(srv_msg_string(req, "idempotency_key"), &err);
    if (!rc && r->validate)
        rc = r->validate(req, a, &err);
    if (!rc && r->scope == SCOPE_RUN)
        rc = srv_scope_run(who, r->name, srv_msg_string(req, "run_id"), &err);
    if (!rc && r->kind == KIND_SERVER_STREAM) {
        r->serve(app, call, req);
        return;
    }
    if (!rc)
        rc = r->kind == KIND_MUTATION ? submit(app, call, r, req, &err)
                                      : answer_read(app, call, r, who, req, &err);
    if (rc)
        srv_call_fail(call, &err);
}

/* A call whose handling reads the store, served on the I/O pool. */
typedef struct io_call {
    srv_job job;                  /* first: the job is the io_call */
    srv_app *app;
    srv_call *call;
    const row *r;
    const srv_identity *who;
} io_call;

static void serve_io_call(srv_job *job)
{
    io_call *ic = (io_call *)job;
    serve(ic->app, ic->call, ic->r, ic->who);
}

void srv_dispatch_call(void *appv, srv_call *call, size_t index)
{
    srv_app *app = appv;
    const row *r = &table[index];
    srv_error err;
    const srv_identity *who = &srv_identity_anyone;
    /* The role needs no request; the run is checked once it is decoded. */
    if (r->scope != SCOPE_OPEN && (srv_scope_identify(app, call, &who, &err) ||
                                   srv_scope_role(who, r->role, r->name, &err))) {
        srv_call_fail(call, &err);
        return;
    }
    if (r->kind == KIND_CLIENT_STREAM) {
        srv_mutation *m = new_mutation(app, call, r);
        if (m) {
            r->accept(app, call, who, m);
            return;
        }
    } else if (r->kind == KIND_MUTATION || r->kind == KIND_LOCAL) {
        /* Decoding, queueing for the writer, answering from memory: none
         * waits for the disk. */
        serve(app, call, r, who);
        return;
    } else {
        /* Reads and streams start with the store: off this thread, which
         * polls the connections of every other call. */
        io_call *ic = srv_arena_alloc(srv_call_arena(call), sizeof *ic);
        if (ic) {
            *ic = (io_call){.app = app, .call = call, .r = r, .who = who};
            srv_pool_run(app->io, &ic->job, serve_io_call);
            return;
        }
    }
    srv_fail(&err, SRV_RESOURCE_EXHAUSTED, "out of memory");
    srv_call_fail(call, &err);
}
