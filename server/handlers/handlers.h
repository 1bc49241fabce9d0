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

#include "../app.h"
#include "../arena.h"
#include "../error.h"
#include "../ledger.h"

#include <protobuf-c/protobuf-c.h>

typedef srv_code (*srv_validate_fn)(ProtobufCMessage *req, srv_arena *a, srv_error *err);
typedef srv_code (*srv_read_fn)(srv_app *app, srv_arena *a, const ProtobufCMessage *req,
                                ProtobufCMessage **resp, srv_error *err);

/* runs.c */
srv_code srv_validate_create_run(ProtobufCMessage *req, srv_arena *a, srv_error *err);
srv_code srv_apply_create_run(srv_store *st, srv_arena *a, const ProtobufCMessage *req,
                              int64_t now_us, ProtobufCMessage **resp, srv_error *err);
srv_code srv_validate_get_run(ProtobufCMessage *req, srv_arena *a, srv_error *err);
srv_code srv_read_get_run(srv_app *app, srv_arena *a, const ProtobufCMessage *req,
                          ProtobufCMessage **resp, srv_error *err);
srv_code srv_validate_list_runs(ProtobufCMessage *req, srv_arena *a, srv_error *err);
srv_code srv_read_list_runs(srv_app *app, srv_arena *a, const ProtobufCMessage *req,
                            ProtobufCMessage **resp, srv_error *err);

/* events.c */
srv_code srv_validate_append_events(ProtobufCMessage *req, srv_arena *a, srv_error *err);
srv_code srv_apply_append_events(srv_store *st, srv_arena *a, const ProtobufCMessage *req,
                                 int64_t now_us, ProtobufCMessage **resp, srv_error *err);
srv_code srv_validate_read_events(ProtobufCMessage *req, srv_arena *a, srv_error *err);
srv_code srv_read_read_events(srv_app *app, srv_arena *a, const ProtobufCMessage *req,
                              ProtobufCMessage **resp, srv_error *err);

/* health.c */
srv_code srv_read_health_check(srv_app *app, srv_arena *a, const ProtobufCMessage *req,
                               ProtobufCMessage **resp, srv_error *err);

#endif
