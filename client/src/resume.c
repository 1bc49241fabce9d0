/* ResumeRun, and cairn_resume: the plan plus the events to replay. */
#include "internal.h"
#include "cairn/v1/coordinator.pb.h"

#include <stdlib.h>
#include <string.h>

cairn_status cairn_resume_run(cairn_client *c, const char *run_id, const char *const *all_workers,
                              size_t all_workers_count, cairn_resume_plan *out, cairn_error *err)
{
    memset(out, 0, sizeof *out);
    cairn__error_clear(err);
    if (all_workers_count > 65535)
        return cairn__fail(err, CAIRN_INVALID_ARGUMENT, "all_workers: at most 65535 items");
    cairn_v1_ResumeRunRequest m = cairn_v1_ResumeRunRequest_init_zero;
    cairn_status rc = cairn__copy_str(m.run_id, sizeof m.run_id, run_id, "run_id", err);
    if (rc)
        return rc;
    m.all_workers = (char **)all_workers;
    m.all_workers_count = (pb_size_t)all_workers_count;
    cairn_v1_ResumeResult *msg = calloc(1, sizeof *msg);
    if (!msg)
        return cairn__fail(err, CAIRN_NO_MEMORY, "out of memory");
    rc = cairn__unary(c, CAIRN__RESUME_RUN, cairn_v1_ResumeRunRequest_fields, &m, NULL,
                      cairn_v1_ResumeResult_fields, msg, err);
    if (rc) {
        free(msg);
        return rc;
    }
    memcpy(out->run_id, msg->run_id, sizeof out->run_id);
    memcpy(out->checkpoint_id, msg->checkpoint_id, sizeof out->checkpoint_id);
    out->resumed_from_state = msg->resumed_from_state ? msg->resumed_from_state : "";
    out->workers_to_rerun = (const char *const *)msg->workers_to_rerun;
    out->workers_to_rerun_count = msg->workers_to_rerun_count;
    out->resume_from_seq = msg->resume_from_seq;
    out->success = msg->success;
    out->internal_ = msg;
    return CAIRN_OK;
}

void cairn_resume_plan_free(cairn_resume_plan *plan)
{
    if (!plan)
        return;
    cairn__release(cairn_v1_ResumeResult_fields, plan->internal_);
    memset(plan, 0, sizeof *plan);
}

cairn_status cairn_resume(cairn_client *c, const char *run_id, const char *const *all_workers,
                          size_t all_workers_count, cairn_resume_state *out, cairn_error *err)
{
    memset(out, 0, sizeof *out);
    cairn_status rc = cairn_resume_run(c, run_id, all_workers, all_workers_count, &out->plan, err);
    if (rc)
        return rc;
    /* Pages are merged into one array; each event keeps its own block. */
    size_t cap = 0;
    for (uint64_t from = out->plan.resume_from_seq;;) {
        cairn_event_page page;
        if ((rc = cairn_read_events(c, run_id, from, 1000, &page, err)))
            break;
        if (page.events_count == 0) {
            cairn_event_page_free(&page);
            break;
        }
        /* A page that does not move the reader on would be asked for
         * again forever (the events piling up in memory). */
        if (page.next_seq <= from) {
            cairn_event_page_free(&page);
            rc = cairn__fail(err, CAIRN_INTERNAL,
                             "ReadEvents: the server answered %zu events from seq %llu with "
                             "next_seq %llu, which does not advance",
                             page.events_count, (unsigned long long)from,
                             (unsigned long long)page.next_seq);
            break;
        }
        if (out->events_count + page.events_count > cap) {
            size_t ncap = cap ? cap : 1024;
            while (ncap < out->events_count + page.events_count)
                ncap *= 2;
            cairn_event *v = realloc(out->events, ncap * sizeof *v);
            if (!v) {
                cairn_event_page_free(&page);
                rc = cairn__fail(err, CAIRN_NO_MEMORY, "out of memory");
                break;
            }
            out->events = v;
            cap = ncap;
        }
        memcpy(out->events + out->events_count, page.events,
               page.events_count * sizeof *page.events);
        out->events_count += page.events_count;
        from = page.next_seq;
        free(page.events); /* the events' blocks now belong to out */
    }
    if (rc)
        cairn_resume_state_free(out);
    return rc;
}

void cairn_resume_state_free(cairn_resume_state *state)
{
    if (!state)
        return;
    cairn_event_page page = {.events = state->events, .events_count = state->events_count};
    cairn_event_page_free(&page);
    cairn_resume_plan_free(&state->plan);
    memset(state, 0, sizeof *state);
}
