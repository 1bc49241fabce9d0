/* ListCheckpoints, GetLatestCheckpoint, CleanupCheckpoints, and the
 * header checks CreateCheckpoint shares (upload.c, download.c stream). */
#include "service/handlers/handlers.h"
#include "service/contract.h"
#include "service/validate.h"
#include "base/pbc.h"

#include <stdio.h>
#include <string.h>

srv_code srv_validate_run_id_only(ProtobufCMessage *msg, srv_arena *a, srv_error *err)
{
    (void)a;
    return srv_check_id("run_id", srv_msg_string(msg, "run_id"), err);
}

srv_code srv_validate_list_checkpoints(ProtobufCMessage *msg, srv_arena *a, srv_error *err)
{
    (void)a;
    Cairn__V1__ListCheckpointsRequest *req = (Cairn__V1__ListCheckpointsRequest *)msg;
    if (srv_check_id("run_id", req->run_id, err) ||
        srv_check_optional_id("page_token", req->page_token, err))
        return err->code;
    return SRV_OK;
}

srv_code srv_read_list_checkpoints(srv_app *app, srv_arena *a, const ProtobufCMessage *msg,
                                   ProtobufCMessage *resp, srv_error *err)
{
    const Cairn__V1__ListCheckpointsRequest *req = (const Cairn__V1__ListCheckpointsRequest *)msg;
    Cairn__V1__ListCheckpointsResponse *out = (Cairn__V1__ListCheckpointsResponse *)resp;
    return srv_checkpoints_read(app->store, a, req->run_id, req->page_token, SRV_READ_PAGE_BYTES,
                                out, err);
}

srv_code srv_read_get_latest_checkpoint(srv_app *app, srv_arena *a, const ProtobufCMessage *msg,
                                        ProtobufCMessage *resp, srv_error *err)
{
    Cairn__V1__Checkpoint *out = (Cairn__V1__Checkpoint *)resp;
    return srv_checkpoint_read(app->store, a,
                               ((const Cairn__V1__GetLatestCheckpointRequest *)msg)->run_id, "",
                               out, err);
}

srv_code srv_validate_cleanup_checkpoints(ProtobufCMessage *msg, srv_arena *a, srv_error *err)
{
    (void)a;
    Cairn__V1__CleanupCheckpointsRequest *req = (Cairn__V1__CleanupCheckpointsRequest *)msg;
    if (srv_check_id("run_id", req->run_id, err))
        return err->code;
    if (req->keep_last_n < 1)
        return srv_fail(err, SRV_INVALID_ARGUMENT,
                        "keep_last_n: must be at least 1 (the latest checkpoint is always kept), got 0");
    return SRV_OK;
}

srv_code srv_apply_cleanup_checkpoints(srv_apply *ap, const ProtobufCMessage *msg,
                                       ProtobufCMessage *resp, srv_error *err)
{
    const Cairn__V1__CleanupCheckpointsRequest *req =
        (const Cairn__V1__CleanupCheckpointsRequest *)msg;
    return srv_checkpoints_cleanup(ap, req->run_id, req->keep_last_n,
                                   (Cairn__V1__CleanupCheckpointsResponse *)resp, err);
}

static bool is_sha256_hex(const char *s)
{
    if (strlen(s) != SRV_SHA256_HEX)
        return false;
    for (; *s; s++)
        if (!((*s >= '0' && *s <= '9') || (*s >= 'a' && *s <= 'f')))
            return false;
    return true;
}

srv_code srv_validate_checkpoint_header(Cairn__V1__CheckpointHeader *h, srv_arena *a,
                                        int64_t max_snapshot_bytes, srv_error *err)
{
    if (srv_check_key(h->idempotency_key, err) || srv_check_id("run_id", h->run_id, err))
        return err->code;
    if (strlen(h->run_state) > SRV_RUN_STATE_MAX)
        return srv_fail(err, SRV_INVALID_ARGUMENT, "run_state: must be at most %d bytes, got %zu",
                        SRV_RUN_STATE_MAX, strlen(h->run_state));
    if (srv_check_count("completed_workers", h->n_completed_workers, 0, SRV_WORKERS_MAX, err))
        return err->code;
    for (size_t i = 0; i < h->n_completed_workers; i++) {
        char field[40];
        snprintf(field, sizeof field, "completed_workers[%zu]", i);
        if (srv_check_id(field, h->completed_workers[i], err))
            return err->code;
    }
    if (h->snapshot_size > (uint64_t)max_snapshot_bytes)
        return srv_fail(err, SRV_INVALID_ARGUMENT,
                        "snapshot_size: must be at most %lld bytes (--max-snapshot-bytes), got %llu",
                        (long long)max_snapshot_bytes, (unsigned long long)h->snapshot_size);
    if (*h->snapshot_sha256 && !is_sha256_hex(h->snapshot_sha256)) {
        char q[SRV_QUOTE_MAX];
        return srv_fail(err, SRV_INVALID_ARGUMENT,
                        "snapshot_sha256: must be empty or 64 lowercase hex digits, got %s",
                        srv_quote(q, h->snapshot_sha256, strlen(h->snapshot_sha256)));
    }
    return srv_dedup_strings(a, h->completed_workers, &h->n_completed_workers, err);
}

srv_code srv_validate_load_checkpoint(ProtobufCMessage *msg, srv_arena *a, srv_error *err)
{
    (void)a;
    Cairn__V1__LoadCheckpointRequest *req = (Cairn__V1__LoadCheckpointRequest *)msg;
    if (srv_check_id("run_id", req->run_id, err) ||
        srv_check_optional_id("checkpoint_id", req->checkpoint_id, err))
        return err->code;
    return SRV_OK;
}
