/* Handler functions named by the dispatch table. Each is one step of
 * decode -> validate -> store -> encode; the table's generic code does
 * the rest.
 *
 * validate: checks a decoded request before the store is touched and may
 *   normalize it in place (allocating from the arena). Returns SRV_OK or
 *   INVALID_ARGUMENT naming the field and the limit.
 * read: answers a read-only request; *resp is allocated in the arena.
 * apply: a mutation, run by the ledger inside the batch transaction. */
#ifndef CAIRN_SERVER_HANDLERS_H
#define CAIRN_SERVER_HANDLERS_H

#include "service/app.h"
#include "base/arena.h"
#include "base/error.h"
#include "core/domain.h"
#include "core/ledger.h"
#include "transport/rpc.h"

#include <protobuf-c/protobuf-c.h>

typedef srv_code (*srv_validate_fn)(ProtobufCMessage *req, srv_arena *a, srv_error *err);
/* Answers a read by filling resp, an empty message of the method's
 * response type in the call's arena. */
typedef srv_code (*srv_read_fn)(srv_app *app, srv_arena *a, const ProtobufCMessage *req,
                                ProtobufCMessage *resp, srv_error *err);

/* A read whose answer is limited to the runs whose id starts with
 * prefix ("" for every run): the caller's scope. */
typedef srv_code (*srv_scoped_read_fn)(srv_app *app, srv_arena *a, const char *prefix,
                                       const ProtobufCMessage *req, ProtobufCMessage *resp,
                                       srv_error *err);

/* runs.c */
srv_code srv_validate_create_run(ProtobufCMessage *req, srv_arena *a, srv_error *err);
srv_code srv_apply_create_run(srv_apply *ap, const ProtobufCMessage *req, ProtobufCMessage *resp,
                 srv_error *err);
srv_code srv_apply_delete_run(srv_apply *ap, const ProtobufCMessage *req, ProtobufCMessage *resp,
                              srv_error *err);
srv_code srv_read_get_run(srv_app *app, srv_arena *a, const ProtobufCMessage *req,
                          ProtobufCMessage *resp, srv_error *err);
srv_code srv_validate_list_runs(ProtobufCMessage *req, srv_arena *a, srv_error *err);
srv_code srv_read_list_runs(srv_app *app, srv_arena *a, const char *prefix,
                            const ProtobufCMessage *req, ProtobufCMessage *resp, srv_error *err);

/* events.c */
srv_code srv_validate_append_events(ProtobufCMessage *req, srv_arena *a, srv_error *err);
srv_code srv_apply_append_events(srv_apply *ap, const ProtobufCMessage *req, ProtobufCMessage *resp,
                 srv_error *err);
srv_code srv_validate_read_events(ProtobufCMessage *req, srv_arena *a, srv_error *err);
srv_code srv_read_read_events(srv_app *app, srv_arena *a, const ProtobufCMessage *req,
                              ProtobufCMessage *resp, srv_error *err);

/* workers.c */
srv_code srv_validate_complete_worker(ProtobufCMessage *req, srv_arena *a, srv_error *err);
srv_code srv_apply_complete_worker(srv_apply *ap, const ProtobufCMessage *req, ProtobufCMessage *resp,
                 srv_error *err);

/* leases.c */
srv_code srv_validate_acquire_worker(ProtobufCMessage *req, srv_arena *a, srv_error *err);
srv_code srv_validate_renew_lease(ProtobufCMessage *req, srv_arena *a, srv_error *err);
srv_code srv_validate_release_worker(ProtobufCMessage *req, srv_arena *a, srv_error *err);
srv_code srv_apply_acquire_worker(srv_apply *ap, const ProtobufCMessage *req, ProtobufCMessage *resp,
                 srv_error *err);
srv_code srv_apply_renew_lease(srv_apply *ap, const ProtobufCMessage *req, ProtobufCMessage *resp,
                 srv_error *err);
srv_code srv_apply_release_worker(srv_apply *ap, const ProtobufCMessage *req, ProtobufCMessage *resp,
                 srv_error *err);

/* watch.c: WatchEvents, a server stream served by the watch hub. */
srv_code srv_validate_watch_events(ProtobufCMessage *req, srv_arena *a, srv_error *err);
void srv_start_watch_events(srv_app *app, srv_call *call, ProtobufCMessage *req);

/* checkpoints.c */
/* For requests whose only field to check is run_id. */
srv_code srv_validate_run_id_only(ProtobufCMessage *req, srv_arena *a, srv_error *err);
srv_code srv_validate_list_checkpoints(ProtobufCMessage *req, srv_arena *a, srv_error *err);
srv_code srv_read_list_checkpoints(srv_app *app, srv_arena *a, const ProtobufCMessage *req,
                                   ProtobufCMessage *resp, srv_error *err);
srv_code srv_read_get_latest_checkpoint(srv_app *app, srv_arena *a, const ProtobufCMessage *req,
                                        ProtobufCMessage *resp, srv_error *err);
srv_code srv_validate_cleanup_checkpoints(ProtobufCMessage *req, srv_arena *a, srv_error *err);
srv_code srv_apply_cleanup_checkpoints(srv_apply *ap, const ProtobufCMessage *req, ProtobufCMessage *resp,
                 srv_error *err);
/* Checks a CreateCheckpoint header and deduplicates its completed workers. */
srv_code srv_validate_checkpoint_header(Cairn__V1__CheckpointHeader *h, srv_arena *a,
                                        int64_t max_snapshot_bytes, srv_error *err);
srv_code srv_validate_load_checkpoint(ProtobufCMessage *req, srv_arena *a, srv_error *err);

/* upload.c: CreateCheckpoint, a client stream; the handler reads it and
 * submits the mutation `m` prepared from its table row (method, response
 * type, apply) once the header and the bytes are in, failing the call
 * when the header's run is outside who's scope. ap->ctx of the apply is
 * the upload's srv_new_checkpoint. */
void srv_start_create_checkpoint(srv_app *app, srv_call *call, const srv_identity *who,
                                 srv_mutation *m);
srv_code srv_apply_create_checkpoint(srv_apply *ap, const ProtobufCMessage *req,
                                     ProtobufCMessage *resp, srv_error *err);

/* download.c: LoadCheckpoint, a server stream. */
void srv_start_load_checkpoint(srv_app *app, srv_call *call, ProtobufCMessage *req);

/* resume.c */
srv_code srv_validate_resume_run(ProtobufCMessage *req, srv_arena *a, srv_error *err);
srv_code srv_read_resume_run(srv_app *app, srv_arena *a, const ProtobufCMessage *req,
                             ProtobufCMessage *resp, srv_error *err);

/* health.c */
srv_code srv_read_health_check(srv_app *app, srv_arena *a, const ProtobufCMessage *req,
                               ProtobufCMessage *resp, srv_error *err);

#endif
