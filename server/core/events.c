/* The event log: appends with expected_next_seq and fencing, reads, and
 * worker completion (a log event of its own). */
#include "core/domain.h"

#include <string.h>

srv_code srv_events_append(srv_apply *ap, const Cairn__V1__AppendEventsRequest *req,
                           Cairn__V1__AppendEventsResponse *out, srv_error *err)
{
    srv_run_head run;
    if (srv_run_require(ap->txn, ap->arena, req->run_id, &run, err))
        return err->code;
    if (req->expected_next_seq && req->expected_next_seq != run.next_seq)
        return srv_fail(err, SRV_FAILED_PRECONDITION,
                        "expected_next_seq: the run is at next_seq %llu, the request expected %llu",
                        (unsigned long long)run.next_seq,
                        (unsigned long long)req->expected_next_seq);
    /* A fenced batch names one worker (checked by validation). */
    if (req->fencing_token &&
        srv_fencing_check(ap, &run, req->events[0]->worker_id, req->fencing_token, err))
        return err->code;
    if (srv_store_events_insert(ap->txn, &run, req->events, req->n_events, ap->now_us, err))
        return err->code;
    out->first_seq = run.next_seq;
    out->last_seq = run.next_seq + req->n_events - 1;
    out->events_since_checkpoint = out->last_seq - run.checkpoint_events;
    ap->grew_run_id = req->run_id;
    ap->grew_last_seq = out->last_seq;
    return SRV_OK;
}

srv_code srv_events_read(srv_store *st, srv_arena *a, const char *run_id, uint64_t from_seq,
                         uint32_t max_events, size_t max_bytes,
                         Cairn__V1__ReadEventsResponse *out, srv_error *err)
{
    srv_txn *t;
    if (srv_store_read_begin(st, &t, err))
        return err->code;
    srv_run_head run;
    srv_code rc = srv_run_require(t, a, run_id, &run, err);
    if (!rc)
        rc = srv_store_events_read(t, a, &run, from_seq, max_events, max_bytes, &out->events,
                                   &out->n_events, err);
    srv_store_read_end(t);
    if (rc)
        return rc;
    out->next_seq = out->n_events ? out->events[out->n_events - 1]->seq + 1 : from_seq;
    return SRV_OK;
}

srv_code srv_worker_complete(srv_apply *ap, const Cairn__V1__CompleteWorkerRequest *req,
                             Cairn__V1__CompleteWorkerResponse *out, srv_error *err)
{
    srv_run_head run;
    bool is_worker = false;
    uint64_t done_seq = 0;
    if (srv_run_require(ap->txn, ap->arena, req->run_id, &run, err) ||
        srv_store_worker_get(ap->txn, &run, req->worker_id, &is_worker, &done_seq, err))
        return err->code;
    char q[SRV_QUOTE_MAX];
    if (!is_worker)
        return srv_fail(err, SRV_INVALID_ARGUMENT, "worker_id: %s is not a worker of run %s",
                        srv_quote(q, req->worker_id, strlen(req->worker_id)), req->run_id);
    if (req->fencing_token && srv_fencing_check(ap, &run, req->worker_id, req->fencing_token, err))
        return err->code;
    if (done_seq)
        return srv_fail(err, SRV_FAILED_PRECONDITION,
                        "worker_id: %s already completed (its worker.completed event is seq %llu)",
                        srv_quote(q, req->worker_id, strlen(req->worker_id)),
                        (unsigned long long)done_seq);

    Cairn__V1__Event ev = CAIRN__V1__EVENT__INIT;
    ev.type = (char *)SRV_COMPLETED_EVENT_TYPE;
    ev.worker_id = req->worker_id;
    Cairn__V1__Event *events[] = {&ev};
    uint64_t seq = run.next_seq;
    if (srv_store_events_insert(ap->txn, &run, events, 1, ap->now_us, err) ||
        srv_store_worker_complete(ap->txn, &run, req->worker_id, seq, err) ||
        srv_lease_end(ap, &run, req->worker_id, err))
        return err->code;
    run.next_seq = seq + 1;
    run.n_completed++;
    /* Completed-run retention counts from here. */
    if (strcmp(srv_run_state(&run), "completed") == 0 &&
        srv_store_run_set_completed(ap->txn, &run, ap->now_us, err))
        return err->code;
    out->seq = seq;
    out->run_state = (char *)srv_run_state(&run);
    ap->grew_run_id = req->run_id;
    ap->grew_last_seq = seq;
    return SRV_OK;
}
