/* The sequence target: an input is a program of operations on one fresh
 * run (workers w0..w3), two bytes each: an opcode and an argument. A model
 * of the run predicts every answer, and any difference aborts:
 * - seqs are dense from 1: each append and completion gets the next seqs,
 *   and a read of the whole log returns exactly 1..next_seq-1;
 * - a retry (the same key, the same request) returns the stored response
 *   byte for byte, followed by the replayed flag, and changes nothing;
 *   the same key with another request is ALREADY_EXISTS;
 * - leases are exclusive: acquiring a live lease fails, every grant has a
 *   larger fencing token than the last of that worker, a released or
 *   completed worker's lease is gone, and fenced writes pass only with
 *   the current token of a live lease;
 * - checkpoint ids increase; retention and CleanupCheckpoints keep the
 *   newest ones and delete the oldest (ListCheckpoints agrees); every
 *   kept checkpoint loads with its own snapshot bytes, also when several
 *   share identical content (stored once);
 * - events_since_checkpoint, GetRun's state and completed workers, and
 *   ResumeRun's workers_to_rerun and resume_from_seq agree with the
 *   model.
 * Leases last 10 minutes: none lapses while an input runs. */
#include "server_fixture.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum {
    WORKERS = 4,
    MAX_OPS = 64,
    MAX_RECORDED = 16,          /* mutations kept for retries */
    LEASE_TTL_MS = 600000,
    MAX_SNAPSHOT = 24,
    MAX_KEPT = 16,              /* checkpoints the model follows, >= the retention */
};

static const char *const worker_ids[WORKERS] = {"w0", "w1", "w2", "w3"};

/* A mutation that succeeded: what a retry sends again and expects back,
 * and a request with the same key that differs (a reused key). */
typedef struct recorded {
    const char *method;
    uint8_t *request, *variant, *response;
    size_t request_len, variant_len, response_len;
} recorded;

typedef struct worker {
    bool acquired;              /* a lease record exists */
    bool live;
    bool completed;
    uint64_t token;             /* of the last grant */
    char lease_id[32];
} worker;

/* A checkpoint retention or cleanup has not deleted yet; its snapshot is
 * len bytes of fill. */
typedef struct kept {
    char id[32];
    uint8_t fill;
    size_t len;
} kept;

typedef struct model {
    char run_id[32];
    uint64_t next_seq;
    bool has_checkpoint;
    uint64_t checkpoint_events; /* the latest checkpoint's events_count */
    char checkpoint_id[32];     /* the latest */
    kept cps[MAX_KEPT];         /* oldest first */
    size_t n_cps;
    worker w[WORKERS];
    recorded rec[MAX_RECORDED];
    size_t n_rec;
    unsigned op;                /* the operation in hand, for keys and messages */
} model;

__attribute__((format(printf, 2, 3), noreturn))
static void violation(const model *m, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "invariant broken in run %s at operation %u: ", m->run_id, m->op);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    abort();
}

static void expect_code(const model *m, const char *what, const fz_reply *r, srv_code want)
{
    fz_expect_sane(what, r);
    if (r->code != want)
        violation(m, "%s: expected %s, got %s: %s", what, srv_code_name(want),
                  srv_code_name(r->code), r->code ? r->err.msg : "");
}

static ProtobufCMessage *decode(const model *m, const ProtobufCMessageDescriptor *d,
                                const fz_reply *r)
{
    ProtobufCMessage *msg = protobuf_c_message_unpack(d, NULL, r->len, r->body);
    if (!msg)
        violation(m, "%s: the reply does not decode", d->name);
    return msg;
}

static uint8_t *pack(const ProtobufCMessage *msg, size_t *len)
{
    *len = protobuf_c_message_get_packed_size(msg);
    uint8_t *buf = malloc(*len ? *len : 1);
    if (!buf)
        abort();
    protobuf_c_message_pack(msg, buf);
    return buf;
}

static void call(const char *method, const uint8_t *req, size_t len, fz_reply *out)
{
    fz_msg msg = {req, len};
    fz_call_run(fz_app(), fz_method(method), &msg, 1, out);
}

/* Sends req; when it succeeds, keeps it with variant (req with the same
 * key and another field changed) for RETRY and REUSE. */
static void mutate(model *m, const char *method, const ProtobufCMessage *req,
                   const ProtobufCMessage *variant, fz_reply *out)
{
    size_t len;
    uint8_t *bytes = pack(req, &len);
    call(method, bytes, len, out);
    if (out->code || m->n_rec == MAX_RECORDED || out->replayed) {
        free(bytes);
        return;
    }
    recorded *rec = &m->rec[m->n_rec++];
    rec->method = method;
    rec->request = bytes;
    rec->request_len = len;
    rec->variant = pack(variant, &rec->variant_len);
    rec->response = malloc(out->len ? out->len : 1);
    if (!rec->response)
        abort();
    memcpy(rec->response, out->body, out->len);
    rec->response_len = out->len;
}

static void key_of(const model *m, char *key, size_t cap)
{
    snprintf(key, cap, "op-%u", m->op);
}

/* Appends 1..3 events, maybe of one worker, maybe fenced with its last
 * token, maybe with a right or a wrong expected_next_seq. */
static void op_append(model *m, uint8_t arg)
{
    size_t count = 1 + arg % 3u;
    unsigned who = (arg >> 2) % (WORKERS + 1u); /* WORKERS: a run-level event */
    uint64_t token = (arg & 0x20) && who < WORKERS ? m->w[who].token : 0;
    unsigned expect = arg >> 6;                 /* 0 none, 2 wrong, else right */
    char key[16];
    key_of(m, key, sizeof key);
    Cairn__V1__Event ev = CAIRN__V1__EVENT__INIT, *evs[] = {&ev, &ev, &ev};
    ev.type = "step";
    ev.worker_id = who < WORKERS ? (char *)worker_ids[who] : "";
    ev.payload.data = (uint8_t *)"p";
    ev.payload.len = 1;
    Cairn__V1__AppendEventsRequest req = CAIRN__V1__APPEND_EVENTS_REQUEST__INIT;
    req.idempotency_key = key;
    req.run_id = m->run_id;
    req.n_events = count;
    req.events = evs;
    req.expected_next_seq = expect == 0 ? 0 : expect == 2 ? m->next_seq + 1 : m->next_seq;
    req.fencing_token = token;
    Cairn__V1__AppendEventsRequest variant = req;
    Cairn__V1__Event other = ev, *others[] = {&other, &other, &other};
    other.payload.data = (uint8_t *)"q";
    variant.events = others;

    fz_reply r;
    mutate(m, "AppendEvents", &req.base, &variant.base, &r);
    bool fenced_out = token && !m->w[who].live;
    expect_code(m, "AppendEvents", &r, expect == 2 || fenced_out ? SRV_FAILED_PRECONDITION : SRV_OK);
    if (!r.code) {
        Cairn__V1__AppendEventsResponse *resp = (Cairn__V1__AppendEventsResponse *)decode(
            m, &cairn__v1__append_events_response__descriptor, &r);
        uint64_t last = m->next_seq + count - 1;
        if (resp->first_seq != m->next_seq || resp->last_seq != last || resp->replayed)
            violation(m, "AppendEvents: seqs %llu..%llu, expected %llu..%llu",
                      (unsigned long long)resp->first_seq, (unsigned long long)resp->last_seq,
                      (unsigned long long)m->next_seq, (unsigned long long)last);
        if (resp->events_since_checkpoint != last - m->checkpoint_events)
            violation(m, "AppendEvents: events_since_checkpoint %llu, expected %llu",
                      (unsigned long long)resp->events_since_checkpoint,
                      (unsigned long long)(last - m->checkpoint_events));
        m->next_seq = last + 1;
        protobuf_c_message_free_unpacked(&resp->base, NULL);
    }
    fz_reply_free(&r);
}

/* A granted or renewed lease must be the worker's current one. */
static void check_lease(model *m, const char *what, const fz_reply *r, unsigned who)
{
    Cairn__V1__Lease *l = (Cairn__V1__Lease *)decode(m, &cairn__v1__lease__descriptor, r);
    worker *w = &m->w[who];
    if (strcmp(l->worker_id, worker_ids[who]) != 0 || strcmp(l->run_id, m->run_id) != 0)
        violation(m, "%s: a lease of %s/%s, expected %s/%s", what, l->run_id, l->worker_id,
                  m->run_id, worker_ids[who]);
    bool renewal = strcmp(what, "RenewLease") == 0;
    if (renewal ? l->fencing_token != w->token || strcmp(l->lease_id, w->lease_id) != 0
                : l->fencing_token <= w->token || !l->lease_id[0] ||
                      strcmp(l->lease_id, w->lease_id) == 0)
        violation(m, "%s: lease %s token %llu after lease %s token %llu", what, l->lease_id,
                  (unsigned long long)l->fencing_token, w->lease_id,
                  (unsigned long long)w->token);
    w->token = l->fencing_token;
    snprintf(w->lease_id, sizeof w->lease_id, "%s", l->lease_id);
    w->acquired = w->live = true;
    protobuf_c_message_free_unpacked(&l->base, NULL);
}

static void op_acquire(model *m, uint8_t arg)
{
    unsigned who = arg % WORKERS;
    char key[16], holder[8];
    key_of(m, key, sizeof key);
    snprintf(holder, sizeof holder, "h%u", (arg >> 2) % 3u);
    Cairn__V1__AcquireWorkerRequest req = CAIRN__V1__ACQUIRE_WORKER_REQUEST__INIT;
    req.idempotency_key = key;
    req.run_id = m->run_id;
    req.worker_id = (char *)worker_ids[who];
    req.holder = holder;
    req.ttl_ms = LEASE_TTL_MS;
    Cairn__V1__AcquireWorkerRequest variant = req;
    variant.holder = "other";
    fz_reply r;
    mutate(m, "AcquireWorker", &req.base, &variant.base, &r);
    const worker *w = &m->w[who];
    expect_code(m, "AcquireWorker", &r,
                w->completed || w->live ? SRV_FAILED_PRECONDITION : SRV_OK);
    if (!r.code)
        check_lease(m, "AcquireWorker", &r, who);
    fz_reply_free(&r);
}

/* The worker's lease id, or a made-up one (arg bit 4, or none yet). */
static const char *lease_id_for(const model *m, unsigned who, uint8_t arg, bool *right)
{
    *right = m->w[who].acquired && !(arg & 0x10);
    return *right ? m->w[who].lease_id : "0123456789abcdef";
}

static void op_renew(model *m, uint8_t arg)
{
    unsigned who = arg % WORKERS;
    bool right;
    char key[16];
    key_of(m, key, sizeof key);
    Cairn__V1__RenewLeaseRequest req = CAIRN__V1__RENEW_LEASE_REQUEST__INIT;
    req.idempotency_key = key;
    req.run_id = m->run_id;
    req.worker_id = (char *)worker_ids[who];
    req.lease_id = (char *)lease_id_for(m, who, arg, &right);
    req.ttl_ms = LEASE_TTL_MS;
    Cairn__V1__RenewLeaseRequest variant = req;
    variant.ttl_ms = LEASE_TTL_MS - 1;
    fz_reply r;
    mutate(m, "RenewLease", &req.base, &variant.base, &r);
    expect_code(m, "RenewLease", &r,
                right && m->w[who].live ? SRV_OK : SRV_FAILED_PRECONDITION);
    if (!r.code)
        check_lease(m, "RenewLease", &r, who);
    fz_reply_free(&r);
}

/* Releasing the current lease succeeds, also once it is released. */
static void op_release(model *m, uint8_t arg)
{
    unsigned who = arg % WORKERS;
    bool right;
    char key[16];
    key_of(m, key, sizeof key);
    Cairn__V1__ReleaseWorkerRequest req = CAIRN__V1__RELEASE_WORKER_REQUEST__INIT;
    req.idempotency_key = key;
    req.run_id = m->run_id;
    req.worker_id = (char *)worker_ids[who];
    req.lease_id = (char *)lease_id_for(m, who, arg, &right);
    Cairn__V1__ReleaseWorkerRequest variant = req;
    variant.lease_id = "fedcba9876543210";
    fz_reply r;
    mutate(m, "ReleaseWorker", &req.base, &variant.base, &r);
    expect_code(m, "ReleaseWorker", &r, right ? SRV_OK : SRV_FAILED_PRECONDITION);
    if (!r.code)
        m->w[who].live = false;
    fz_reply_free(&r);
}

static void op_complete(model *m, uint8_t arg)
{
    unsigned who = arg % WORKERS;
    worker *w = &m->w[who];
    char key[16];
    key_of(m, key, sizeof key);
    Cairn__V1__CompleteWorkerRequest req = CAIRN__V1__COMPLETE_WORKER_REQUEST__INIT;
    req.idempotency_key = key;
    req.run_id = m->run_id;
    req.worker_id = (char *)worker_ids[who];
    req.fencing_token = arg & 0x10 ? w->token : 0;
    Cairn__V1__CompleteWorkerRequest variant = req;
    variant.fencing_token = req.fencing_token + 1000;
    fz_reply r;
    mutate(m, "CompleteWorker", &req.base, &variant.base, &r);
    bool fenced_out = req.fencing_token && !w->live;
    expect_code(m, "CompleteWorker", &r,
                fenced_out || w->completed ? SRV_FAILED_PRECONDITION : SRV_OK);
    if (!r.code) {
        Cairn__V1__CompleteWorkerResponse *resp = (Cairn__V1__CompleteWorkerResponse *)decode(
            m, &cairn__v1__complete_worker_response__descriptor, &r);
        if (resp->seq != m->next_seq)
            violation(m, "CompleteWorker: seq %llu, expected %llu",
                      (unsigned long long)resp->seq, (unsigned long long)m->next_seq);
        m->next_seq++;
        w->completed = true;
        w->live = false;
        protobuf_c_message_free_unpacked(&resp->base, NULL);
    }
    fz_reply_free(&r);
}

/* The model's completed workers, in run order; returns how many. */
static size_t completed_ids(const model *m, char **ids)
{
    size_t n = 0;
    for (unsigned i = 0; i < WORKERS; i++)
        if (m->w[i].completed)
            ids[n++] = (char *)worker_ids[i];
    return n;
}

/* Drops the oldest kept checkpoints until n remain. */
static void drop_oldest(model *m, size_t n)
{
    if (m->n_cps <= n)
        return;
    size_t gone = m->n_cps - n;
    memmove(m->cps, m->cps + gone, n * sizeof *m->cps);
    m->n_cps = n;
}

/* A new checkpoint, then what retention keeps. */
static void keep_checkpoint(model *m, const char *id, uint8_t fill, size_t len)
{
    size_t retention = (size_t)fz_app()->cfg->checkpoint_retention;
    if (retention >= MAX_KEPT)
        violation(m, "the fixture's retention %zu is over the model's %d", retention, MAX_KEPT);
    kept *k = &m->cps[m->n_cps++];
    snprintf(k->id, sizeof k->id, "%s", id);
    k->fill = fill;
    k->len = len;
    drop_oldest(m, retention);
}

/* A checkpoint of the first arg % next_seq events, a snapshot of 1..24
 * bytes in chunks of 1..7, naming the completed workers. */
static void op_checkpoint(model *m, uint8_t arg)
{
    uint8_t snapshot[MAX_SNAPSHOT];
    size_t len = 1 + arg % (unsigned)MAX_SNAPSHOT;
    memset(snapshot, arg, len);
    char key[16], *done[WORKERS];
    key_of(m, key, sizeof key);
    Cairn__V1__CheckpointHeader h = CAIRN__V1__CHECKPOINT_HEADER__INIT;
    h.idempotency_key = key;
    h.run_id = m->run_id;
    h.run_state = "state";
    h.n_completed_workers = completed_ids(m, done);
    h.completed_workers = done;
    h.events_count = arg % m->next_seq;
    h.snapshot_size = len;
    fz_reply r;
    fz_upload(&h, snapshot, len, 1 + arg % 7u, &r);
    expect_code(m, "CreateCheckpoint", &r, SRV_OK);
    Cairn__V1__Checkpoint *cp =
        (Cairn__V1__Checkpoint *)decode(m, &cairn__v1__checkpoint__descriptor, &r);
    if (cp->events_count != h.events_count || cp->snapshot_size != len)
        violation(m, "CreateCheckpoint: events_count %llu size %llu, sent %llu and %zu",
                  (unsigned long long)cp->events_count, (unsigned long long)cp->snapshot_size,
                  (unsigned long long)h.events_count, len);
    if (strcmp(cp->checkpoint_id, m->checkpoint_id) <= 0)
        violation(m, "CreateCheckpoint: id %s does not follow %s", cp->checkpoint_id,
                  m->checkpoint_id);
    snprintf(m->checkpoint_id, sizeof m->checkpoint_id, "%s", cp->checkpoint_id);
    m->has_checkpoint = true;
    keep_checkpoint(m, cp->checkpoint_id, arg, len);
    m->checkpoint_events = h.events_count;
    protobuf_c_message_free_unpacked(&cp->base, NULL);
    fz_reply_free(&r);
}

/* Sends a kept mutation again: the stored response, byte for byte, then
 * replayed = true. */
static void op_retry(model *m, uint8_t arg)
{
    if (m->n_rec == 0)
        return;
    const recorded *rec = &m->rec[arg % m->n_rec];
    fz_reply r;
    call(rec->method, rec->request, rec->request_len, &r);
    expect_code(m, rec->method, &r, SRV_OK);
    if (!r.replayed || r.len <= rec->response_len ||
        memcmp(r.body, rec->response, rec->response_len) != 0)
        violation(m, "%s: a retry got %zu bytes (replayed %d), not the "
                  "%zu stored ones and the replayed flag",
                  rec->method, r.len, r.replayed, rec->response_len);
    fz_reply_free(&r);
}

/* A kept mutation's key with another request. */
static void op_reuse(model *m, uint8_t arg)
{
    if (m->n_rec == 0)
        return;
    const recorded *rec = &m->rec[arg % m->n_rec];
    fz_reply r;
    call(rec->method, rec->variant, rec->variant_len, &r);
    expect_code(m, rec->method, &r, SRV_ALREADY_EXISTS);
    fz_reply_free(&r);
}

/* Runs a read of method with req; aborts unless it succeeds. */
static ProtobufCMessage *read_call(model *m, const char *method, const ProtobufCMessage *req,
                                   const ProtobufCMessageDescriptor *resp)
{
    size_t len;
    uint8_t *bytes = pack(req, &len);
    fz_reply r;
    call(method, bytes, len, &r);
    free(bytes);
    expect_code(m, method, &r, SRV_OK);
    ProtobufCMessage *msg = decode(m, resp, &r);
    fz_reply_free(&r);
    return msg;
}

/* The whole log is 1..next_seq-1, without a gap. */
static void check_log(model *m)
{
    Cairn__V1__ReadEventsRequest req = CAIRN__V1__READ_EVENTS_REQUEST__INIT;
    req.run_id = m->run_id;
    req.from_seq = 1;
    req.max_events = 1000;
    Cairn__V1__ReadEventsResponse *page = (Cairn__V1__ReadEventsResponse *)read_call(
        m, "ReadEvents", &req.base, &cairn__v1__read_events_response__descriptor);
    if (page->n_events != m->next_seq - 1 || page->next_seq != m->next_seq)
        violation(m, "ReadEvents: %zu events and next_seq %llu, expected %llu and %llu",
                  page->n_events, (unsigned long long)page->next_seq,
                  (unsigned long long)(m->next_seq - 1), (unsigned long long)m->next_seq);
    for (size_t i = 0; i < page->n_events; i++)
        if (page->events[i]->seq != i + 1)
            violation(m, "ReadEvents: event %zu has seq %llu", i,
                      (unsigned long long)page->events[i]->seq);
    protobuf_c_message_free_unpacked(&page->base, NULL);
}

/* ids[0..n) and the model's completed workers hold the same names. */
static bool same_completed(const model *m, char **ids, size_t n)
{
    char *done[WORKERS];
    size_t n_done = completed_ids(m, done);
    if (n != n_done)
        return false;
    for (size_t i = 0; i < n; i++) {
        bool found = false;
        for (size_t j = 0; j < n; j++)
            found = found || strcmp(ids[i], done[j]) == 0;
        if (!found)
            return false;
    }
    return true;
}

static void check_run(model *m)
{
    Cairn__V1__GetRunRequest req = CAIRN__V1__GET_RUN_REQUEST__INIT;
    req.run_id = m->run_id;
    Cairn__V1__Run *run =
        (Cairn__V1__Run *)read_call(m, "GetRun", &req.base, &cairn__v1__run__descriptor);
    char *done[WORKERS];
    size_t n_done = completed_ids(m, done);
    const char *state = n_done == WORKERS ? "completed" : m->next_seq > 1 ? "running" : "created";
    if (run->next_seq != m->next_seq || strcmp(run->state, state) != 0 ||
        !same_completed(m, run->completed_workers, run->n_completed_workers))
        violation(m, "GetRun: next_seq %llu state %s with %zu completed, expected %llu %s %zu",
                  (unsigned long long)run->next_seq, run->state, run->n_completed_workers,
                  (unsigned long long)m->next_seq, state, n_done);
    protobuf_c_message_free_unpacked(&run->base, NULL);
}

/* Every worker not completed reruns, in order, from the checkpoint on. */
static void check_resume(model *m)
{
    Cairn__V1__ResumeRunRequest req = CAIRN__V1__RESUME_RUN_REQUEST__INIT;
    req.run_id = m->run_id;
    Cairn__V1__ResumeResult *res = (Cairn__V1__ResumeResult *)read_call(
        m, "ResumeRun", &req.base, &cairn__v1__resume_result__descriptor);
    size_t k = 0;
    bool same = true;
    for (unsigned i = 0; i < WORKERS; i++)
        if (!m->w[i].completed)
            same = same && k < res->n_workers_to_rerun &&
                   strcmp(res->workers_to_rerun[k++], worker_ids[i]) == 0;
    uint64_t from = m->has_checkpoint ? m->checkpoint_events + 1 : 1;
    if (!same || k != res->n_workers_to_rerun || res->resume_from_seq != from ||
        strcmp(res->checkpoint_id, m->checkpoint_id) != 0)
        violation(m, "ResumeRun: %zu workers to rerun from seq %llu after checkpoint '%s', "
                  "expected from %llu after '%s'",
                  res->n_workers_to_rerun, (unsigned long long)res->resume_from_seq,
                  res->checkpoint_id, (unsigned long long)from, m->checkpoint_id);
    protobuf_c_message_free_unpacked(&res->base, NULL);
}

/* ListCheckpoints: the kept ones, oldest first. */
static void check_checkpoints(model *m)
{
    Cairn__V1__ListCheckpointsRequest req = CAIRN__V1__LIST_CHECKPOINTS_REQUEST__INIT;
    req.run_id = m->run_id;
    Cairn__V1__ListCheckpointsResponse *list = (Cairn__V1__ListCheckpointsResponse *)read_call(
        m, "ListCheckpoints", &req.base, &cairn__v1__list_checkpoints_response__descriptor);
    bool same = list->n_checkpoints == m->n_cps;
    for (size_t i = 0; same && i < m->n_cps; i++)
        same = strcmp(list->checkpoints[i]->checkpoint_id, m->cps[i].id) == 0;
    if (!same)
        violation(m, "ListCheckpoints: %zu checkpoints (first %s), expected %zu (first %s)",
                  list->n_checkpoints,
                  list->n_checkpoints ? list->checkpoints[0]->checkpoint_id : "none", m->n_cps,
                  m->n_cps ? m->cps[0].id : "none");
    protobuf_c_message_free_unpacked(&list->base, NULL);
}

static void op_check(model *m, uint8_t arg)
{
    (void)arg;
    check_log(m);
    check_run(m);
    check_resume(m);
    check_checkpoints(m);
}

/* Keeps the newest 1..3 checkpoints; the oldest go, reported in order. */
static void op_cleanup(model *m, uint8_t arg)
{
    char key[16];
    key_of(m, key, sizeof key);
    Cairn__V1__CleanupCheckpointsRequest req = CAIRN__V1__CLEANUP_CHECKPOINTS_REQUEST__INIT;
    req.idempotency_key = key;
    req.run_id = m->run_id;
    req.keep_last_n = 1 + arg % 3u;
    Cairn__V1__CleanupCheckpointsRequest variant = req;
    variant.keep_last_n += 10;
    fz_reply r;
    mutate(m, "CleanupCheckpoints", &req.base, &variant.base, &r);
    expect_code(m, "CleanupCheckpoints", &r, SRV_OK);
    Cairn__V1__CleanupCheckpointsResponse *resp = (Cairn__V1__CleanupCheckpointsResponse *)decode(
        m, &cairn__v1__cleanup_checkpoints_response__descriptor, &r);
    size_t gone = m->n_cps > req.keep_last_n ? m->n_cps - req.keep_last_n : 0;
    bool same = resp->deleted == gone && resp->n_deleted_ids == gone;
    for (size_t i = 0; same && i < gone; i++)
        same = strcmp(resp->deleted_ids[i], m->cps[i].id) == 0;
    if (!same)
        violation(m, "CleanupCheckpoints: deleted %u (%zu ids), expected the oldest %zu of %zu",
                  resp->deleted, resp->n_deleted_ids, gone, m->n_cps);
    drop_oldest(m, req.keep_last_n);
    protobuf_c_message_free_unpacked(&resp->base, NULL);
    fz_reply_free(&r);
}

/* Whether a LoadCheckpoint stream carried checkpoint k: its metadata,
 * then exactly its snapshot bytes. */
static bool loaded(const fz_reply *r, const kept *k)
{
    if (r->n_sent == 0)
        return false;
    size_t at = 0;
    bool ok = true;
    for (size_t i = 0; ok && i < r->n_sent; i++) {
        Cairn__V1__CheckpointChunk *chunk = cairn__v1__checkpoint_chunk__unpack(
            NULL, r->sent[i].len, r->sent[i].data);
        if (!chunk)
            return false;
        if (i == 0)
            ok = chunk->checkpoint && strcmp(chunk->checkpoint->checkpoint_id, k->id) == 0;
        for (size_t j = 0; ok && j < chunk->data.len; j++, at++)
            ok = at < k->len && chunk->data.data[j] == k->fill;
        cairn__v1__checkpoint_chunk__free_unpacked(chunk, NULL);
    }
    return ok && at == k->len;
}

/* Loads a kept checkpoint by id, or the latest by default. */
static void op_load(model *m, uint8_t arg)
{
    Cairn__V1__LoadCheckpointRequest req = CAIRN__V1__LOAD_CHECKPOINT_REQUEST__INIT;
    req.run_id = m->run_id;
    size_t pick = arg % (m->n_cps + 1);
    const kept *k = m->n_cps ? &m->cps[pick < m->n_cps ? pick : m->n_cps - 1] : NULL;
    req.checkpoint_id = k && pick < m->n_cps ? (char *)k->id : "";
    size_t len;
    uint8_t *bytes = pack(&req.base, &len);
    fz_reply r;
    call("LoadCheckpoint", bytes, len, &r);
    free(bytes);
    expect_code(m, "LoadCheckpoint", &r, k ? SRV_OK : SRV_NOT_FOUND);
    if (k && !loaded(&r, k))
        violation(m, "LoadCheckpoint: %zu messages, not checkpoint %s with %zu bytes of %u",
                  r.n_sent, k->id, k->len, k->fill);
    fz_reply_free(&r);
}

static void (*const ops[])(model *, uint8_t) = {
    op_append,     op_acquire, op_renew, op_release, op_complete, op_checkpoint,
    op_retry,      op_reuse,   op_check, op_cleanup, op_load,
};
enum { N_OPS = sizeof ops / sizeof ops[0] };

/* A fresh run for each input, so each program starts from nothing. */
static void create_run(model *m)
{
    static unsigned long runs;
    snprintf(m->run_id, sizeof m->run_id, "seq-%lu", ++runs);
    Cairn__V1__CreateRunRequest req = CAIRN__V1__CREATE_RUN_REQUEST__INIT;
    req.idempotency_key = "create";
    req.run_id = m->run_id;
    req.n_workers = WORKERS;
    req.workers = (char **)worker_ids;
    fz_reply r;
    fz_call_message("CreateRun", &req.base, &r);
    expect_code(m, "CreateRun", &r, SRV_OK);
    fz_reply_free(&r);
    m->next_seq = 1;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    model *m = calloc(1, sizeof *m);
    if (!m)
        abort();
    create_run(m);
    for (size_t at = 0; at + 1 < size && m->op < MAX_OPS; at += 2) {
        m->op++;
        ops[data[at] % N_OPS](m, data[at + 1]);
    }
    m->op++;
    op_check(m, 0);
    for (size_t i = 0; i < m->n_rec; i++) {
        free(m->rec[i].request);
        free(m->rec[i].variant);
        free(m->rec[i].response);
    }
    free(m);
    return 0;
}
