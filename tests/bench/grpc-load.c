/* grpc-load: a unary-call load generator written directly on gRPC core's C
 * API, so that cairn can be measured beside etcd by one client that owes
 * nothing to libcairn. One insecure channel (one connection), one
 * completion queue driven by one thread, --inflight calls outstanding:
 * each completion starts the next call at once. Every request is distinct
 * (its own idempotency key, key and payload prefix), so no append is
 * answered from the dedup table. Prints ops/s, events/s and latency
 * percentiles over the window after --warmup; exits non-zero if any call
 * failed. Encodes cairn's messages with the protobuf-c code cairnd itself
 * is built with, and etcd's PutRequest (two fields) by hand. */
#include "cairn/v1/coordinator.pb-c.h"
#include "grpc/health/v1/health.pb-c.h"

#include <grpc/byte_buffer_reader.h>
#include <grpc/grpc.h>
#include <grpc/grpc_security.h>
#include <grpc/support/alloc.h>
#include <grpc/support/time.h>

#include <getopt.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

enum {
    CALL_TIMEOUT_S = 30,
    CONNECT_TIMEOUT_S = 10,
    MAX_INFLIGHT = 1024,
    MAX_BATCH = 1000,
    MAX_PAYLOAD = 1024 * 1024,
    TAG_MAX = 96, /* room for a key, or a payload's unique prefix */
};

typedef enum load_mode { MODE_CAIRN_APPEND, MODE_CAIRN_HEALTH, MODE_ETCD_PUT } load_mode;

static const struct mode_info {
    const char *name;
    const char *path;
} modes[] = {
    [MODE_CAIRN_APPEND] = {"cairn-append", "/cairn.v1.Coordinator/AppendEvents"},
    [MODE_CAIRN_HEALTH] = {"cairn-health", "/grpc.health.v1.Health/Check"},
    [MODE_ETCD_PUT] = {"etcd-put", "/etcdserverpb.KV/Put"},
};

typedef struct config {
    load_mode mode;
    const char *target;
    char run_id[129];
    int inflight, batch, payload_bytes;
    double duration_s, warmup_s;
    bool json;
    bool random_keys;             /* cairn-append: keys in no order, like hashes */
} config;

/* One outstanding call and everything its batch writes into. */
typedef struct slot {
    grpc_call *call;
    grpc_byte_buffer *request, *reply;
    grpc_metadata_array initial, trailing;
    grpc_status_code status;
    grpc_slice details;
    const char *error_string;
    uint64_t started_ns;
} slot;

typedef struct load {
    const config *cfg;
    grpc_channel *channel;
    grpc_completion_queue *cq;
    void *method;
    char nonce[48];             /* this process: pid and start time */
    uint64_t next_id;           /* with the nonce, makes every request distinct */
    Cairn__V1__Event *events;   /* cairn-append: the batch, re-tagged per request */
    Cairn__V1__Event **event_ptrs;
    uint8_t *payloads;          /* batch * (payload_bytes + TAG_MAX) */
    uint64_t *lat_ns;           /* calls completed OK inside the window */
    long window_calls, lat_cap;
    long total_ok, errors;
    char first_error[512];
} load;

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static double cpu_s(int who)
{
    struct rusage ru;
    getrusage(who, &ru);
    return (double)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
           (double)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}

static int usage(void)
{
    fprintf(stderr,
            "usage: grpc-load --mode cairn-append|cairn-health|etcd-put --target HOST:PORT\n"
            "                 [--inflight N] [--duration S] [--warmup S] [--batch B]\n"
            "                 [--payload-bytes P] [--run ID] [--keys ordered|random] [--json]\n"
            "  --inflight       unary calls kept outstanding on one connection (default 1)\n"
            "  --duration       seconds measured (default 10), after --warmup (default 0)\n"
            "  --batch          cairn-append: events per request (default 1)\n"
            "  --payload-bytes  bytes per event payload or etcd value (default 200)\n"
            "  --run            cairn-append: the run, created first (default load-<pid>)\n"
            "  --keys           cairn-append: idempotency keys that sort in the order sent\n"
            "                   (default, like libcairn's) or in none (like hashes)\n"
            "  --json           one JSON object instead of text\n");
    return 2;
}

static bool parse_long(const char *flag, const char *s, long lo, long hi, long *out)
{
    char *end;
    long v = strtol(s, &end, 10);
    if (*s == '\0' || *end != '\0' || v < lo || v > hi) {
        fprintf(stderr, "grpc-load: %s must be a whole number in %ld..%ld, not \"%s\"\n", flag,
                lo, hi, s);
        return false;
    }
    *out = v;
    return true;
}

static bool parse_seconds(const char *flag, const char *s, double lo, double *out)
{
    char *end;
    double v = strtod(s, &end);
    if (*s == '\0' || *end != '\0' || !(v >= lo) || v > 86400) {
        fprintf(stderr, "grpc-load: %s must be seconds in %g..86400, not \"%s\"\n", flag, lo, s);
        return false;
    }
    *out = v;
    return true;
}

static int parse_args(int argc, char **argv, config *cfg)
{
    static const struct option opts[] = {
        {"mode", required_argument, NULL, 'm'},     {"target", required_argument, NULL, 't'},
        {"inflight", required_argument, NULL, 'i'}, {"duration", required_argument, NULL, 'd'},
        {"warmup", required_argument, NULL, 'w'},   {"batch", required_argument, NULL, 'b'},
        {"payload-bytes", required_argument, NULL, 'p'}, {"run", required_argument, NULL, 'r'},
        {"json", no_argument, NULL, 'j'},           {"help", no_argument, NULL, 'h'},
        {"keys", required_argument, NULL, 'k'},
        {0}};
    *cfg = (config){.mode = MODE_CAIRN_APPEND, .inflight = 1, .batch = 1, .payload_bytes = 200,
                    .duration_s = 10};
    snprintf(cfg->run_id, sizeof cfg->run_id, "load-%ld", (long)getpid());
    bool have_mode = false;
    int o;
    long v;
    while ((o = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (o) {
        case 'm':
            have_mode = false;
            for (size_t m = 0; m < sizeof modes / sizeof modes[0]; m++)
                if (strcmp(optarg, modes[m].name) == 0) {
                    cfg->mode = (load_mode)m;
                    have_mode = true;
                }
            if (!have_mode) {
                fprintf(stderr, "grpc-load: --mode must be cairn-append, cairn-health or "
                                "etcd-put, not \"%s\"\n", optarg);
                return 2;
            }
            break;
        case 't':
            cfg->target = optarg;
            break;
        case 'i':
            if (!parse_long("--inflight", optarg, 1, MAX_INFLIGHT, &v))
                return 2;
            cfg->inflight = (int)v;
            break;
        case 'b':
            if (!parse_long("--batch", optarg, 1, MAX_BATCH, &v))
                return 2;
            cfg->batch = (int)v;
            break;
        case 'p':
            if (!parse_long("--payload-bytes", optarg, 0, MAX_PAYLOAD, &v))
                return 2;
            cfg->payload_bytes = (int)v;
            break;
        case 'd':
            if (!parse_seconds("--duration", optarg, 0.001, &cfg->duration_s))
                return 2;
            break;
        case 'w':
            if (!parse_seconds("--warmup", optarg, 0, &cfg->warmup_s))
                return 2;
            break;
        case 'r':
            if (strlen(optarg) >= sizeof cfg->run_id) {
                fprintf(stderr, "grpc-load: --run is at most 128 characters\n");
                return 2;
            }
            snprintf(cfg->run_id, sizeof cfg->run_id, "%s", optarg);
            break;
        case 'j':
            cfg->json = true;
            break;
        case 'k':
            if (strcmp(optarg, "ordered") != 0 && strcmp(optarg, "random") != 0) {
                fprintf(stderr, "grpc-load: --keys must be ordered or random, not \"%s\"\n",
                        optarg);
                return 2;
            }
            cfg->random_keys = strcmp(optarg, "random") == 0;
            break;
        default:
            return usage();
        }
    }
    if (optind != argc || !have_mode || !cfg->target)
        return usage();
    if (cfg->batch != 1 && cfg->mode != MODE_CAIRN_APPEND) {
        fprintf(stderr, "grpc-load: --batch is for --mode cairn-append only\n");
        return 2;
    }
    return 0;
}

/* Writes "<tag>" then 'x' up to len bytes (the tag alone if longer). */
static size_t fill_tagged(uint8_t *out, size_t len, const char *tag)
{
    size_t n = strlen(tag);
    memcpy(out, tag, n);
    if (len > n) {
        memset(out + n, 'x', len - n);
        n = len;
    }
    return n;
}

static grpc_byte_buffer *buffer_of_slice(grpc_slice s)
{
    grpc_byte_buffer *b = grpc_raw_byte_buffer_create(&s, 1);
    grpc_slice_unref(s);
    return b;
}

static grpc_byte_buffer *pack(const ProtobufCMessage *msg)
{
    grpc_slice s = grpc_slice_malloc(protobuf_c_message_get_packed_size(msg));
    protobuf_c_message_pack(msg, GRPC_SLICE_START_PTR(s));
    return buffer_of_slice(s);
}

static uint8_t *put_varint(uint8_t *p, uint64_t v)
{
    while (v >= 0x80) {
        *p++ = (uint8_t)(v | 0x80);
        v >>= 7;
    }
    *p++ = (uint8_t)v;
    return p;
}

/* etcd's PutRequest: field 1 key (bytes), field 2 value (bytes). */
static grpc_byte_buffer *etcd_put(const load *l, uint64_t id)
{
    char key[TAG_MAX], tag[TAG_MAX];
    snprintf(key, sizeof key, "load/%s/%llu", l->nonce, (unsigned long long)id);
    snprintf(tag, sizeof tag, "load:%s:%llu:", l->nonce, (unsigned long long)id);
    size_t klen = strlen(key), tlen = strlen(tag), want = (size_t)l->cfg->payload_bytes;
    size_t vlen = want > tlen ? want : tlen;
    grpc_slice s = grpc_slice_malloc(1 + 10 + klen + 1 + 10 + vlen);
    uint8_t *start = GRPC_SLICE_START_PTR(s), *p = start;
    *p++ = 0x0a;
    p = put_varint(p, klen);
    memcpy(p, key, klen);
    p += klen;
    *p++ = 0x12;
    p = put_varint(p, vlen);
    p += fill_tagged(p, want, tag);
    return buffer_of_slice(grpc_slice_sub_no_ref(s, 0, (size_t)(p - start)));
}

static grpc_byte_buffer *cairn_append(load *l, uint64_t id)
{
    const config *cfg = l->cfg;
    size_t len = (size_t)cfg->payload_bytes;
    for (int j = 0; j < cfg->batch; j++) {
        char tag[TAG_MAX];
        snprintf(tag, sizeof tag, "load:%s:%llu:%d:", l->nonce, (unsigned long long)id, j);
        uint8_t *out = l->payloads + (size_t)j * (len + TAG_MAX);
        l->events[j].payload.data = out;
        l->events[j].payload.len = fill_tagged(out, len, tag);
    }
    /* Ordered: the call's number, fixed width; random: a hash of it. */
    char key[TAG_MAX];
    uint64_t k = id;
    if (cfg->random_keys) { /* splitmix64: distinct inputs, distinct outputs */
        k += 0x9e3779b97f4a7c15ull;
        k = (k ^ (k >> 30)) * 0xbf58476d1ce4e5b9ull;
        k = (k ^ (k >> 27)) * 0x94d049bb133111ebull;
        k ^= k >> 31;
    }
    snprintf(key, sizeof key, "load-%s-%016llx", l->nonce, (unsigned long long)k);
    Cairn__V1__AppendEventsRequest req = CAIRN__V1__APPEND_EVENTS_REQUEST__INIT;
    req.idempotency_key = key;
    req.run_id = (char *)cfg->run_id;
    req.n_events = (size_t)cfg->batch;
    req.events = l->event_ptrs;
    return pack(&req.base);
}

static grpc_byte_buffer *next_request(load *l)
{
    uint64_t id = l->next_id++;
    switch (l->cfg->mode) {
    case MODE_CAIRN_APPEND:
        return cairn_append(l, id);
    case MODE_ETCD_PUT:
        return etcd_put(l, id);
    case MODE_CAIRN_HEALTH:
        break;
    }
    Grpc__Health__V1__HealthCheckRequest req = GRPC__HEALTH__V1__HEALTH_CHECK_REQUEST__INIT;
    return pack(&req.base);
}

static bool start_call(load *l, slot *s, void *method, grpc_byte_buffer *request)
{
    gpr_timespec deadline = gpr_time_add(gpr_now(GPR_CLOCK_MONOTONIC),
                                         gpr_time_from_seconds(CALL_TIMEOUT_S, GPR_TIMESPAN));
    *s = (slot){.request = request, .details = grpc_empty_slice()};
    s->call = grpc_channel_create_registered_call(l->channel, NULL, GRPC_PROPAGATE_DEFAULTS, l->cq,
                                                  method, deadline, NULL);
    grpc_metadata_array_init(&s->initial);
    grpc_metadata_array_init(&s->trailing);
    grpc_op ops[6];
    memset(ops, 0, sizeof ops);
    ops[0].op = GRPC_OP_SEND_INITIAL_METADATA;
    ops[1].op = GRPC_OP_SEND_MESSAGE;
    ops[1].data.send_message.send_message = request;
    ops[2].op = GRPC_OP_SEND_CLOSE_FROM_CLIENT;
    ops[3].op = GRPC_OP_RECV_INITIAL_METADATA;
    ops[3].data.recv_initial_metadata.recv_initial_metadata = &s->initial;
    ops[4].op = GRPC_OP_RECV_MESSAGE;
    ops[4].data.recv_message.recv_message = &s->reply;
    ops[5].op = GRPC_OP_RECV_STATUS_ON_CLIENT;
    ops[5].data.recv_status_on_client.trailing_metadata = &s->trailing;
    ops[5].data.recv_status_on_client.status = &s->status;
    ops[5].data.recv_status_on_client.status_details = &s->details;
    ops[5].data.recv_status_on_client.error_string = &s->error_string;
    s->started_ns = now_ns();
    grpc_call_error e = grpc_call_start_batch(s->call, ops, 6, s, NULL);
    if (e != GRPC_CALL_OK) {
        fprintf(stderr, "grpc-load: grpc_call_start_batch: error %d\n", (int)e);
        return false;
    }
    return true;
}

/* The reply's bytes, or NULL; free with gpr_free. */
static uint8_t *reply_bytes(grpc_byte_buffer *b, size_t *len)
{
    grpc_byte_buffer_reader reader;
    if (!b || !grpc_byte_buffer_reader_init(&reader, b))
        return NULL;
    grpc_slice all = grpc_byte_buffer_reader_readall(&reader);
    *len = GRPC_SLICE_LENGTH(all);
    uint8_t *out = gpr_malloc(*len + 1);
    memcpy(out, GRPC_SLICE_START_PTR(all), *len);
    grpc_slice_unref(all);
    grpc_byte_buffer_reader_destroy(&reader);
    return out;
}

/* Checks an OK reply: an append acknowledged fresh (not replayed) with
 * all its events, a Health check SERVING. Writes why not into why. */
static bool reply_ok(const load *l, const uint8_t *msg, size_t len, char *why, size_t cap)
{
    switch (l->cfg->mode) {
    case MODE_CAIRN_APPEND: {
        Cairn__V1__AppendEventsResponse *r =
            cairn__v1__append_events_response__unpack(NULL, len, msg);
        bool ok = r && !r->replayed &&
                  r->last_seq - r->first_seq + 1 == (uint64_t)l->cfg->batch;
        if (!ok)
            snprintf(why, cap, "AppendEventsResponse %s",
                     !r ? "undecodable" : r->replayed ? "replayed" : "with a wrong seq range");
        cairn__v1__append_events_response__free_unpacked(r, NULL);
        return ok;
    }
    case MODE_CAIRN_HEALTH: {
        Grpc__Health__V1__HealthCheckResponse *r =
            grpc__health__v1__health_check_response__unpack(NULL, len, msg);
        bool ok = r && r->status == GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVING;
        if (!ok)
            snprintf(why, cap, "Health check: not SERVING");
        grpc__health__v1__health_check_response__free_unpacked(r, NULL);
        return ok;
    }
    case MODE_ETCD_PUT:
        break;
    }
    return true;
}

/* Ends the slot's call: true if it succeeded; else why (status and
 * message) goes into why. Frees all the call held. */
static bool finish_call(slot *s, bool batch_ok, uint8_t **reply, size_t *reply_len,
                        char *why, size_t cap)
{
    bool ok = false;
    *reply = NULL;
    if (!batch_ok) {
        snprintf(why, cap, "the call's batch failed");
    } else if (s->status != GRPC_STATUS_OK) {
        snprintf(why, cap, "status %d: %.*s", (int)s->status, (int)GRPC_SLICE_LENGTH(s->details),
                 (const char *)GRPC_SLICE_START_PTR(s->details));
    } else if (!(*reply = reply_bytes(s->reply, reply_len))) {
        snprintf(why, cap, "status OK without a reply message");
    } else {
        ok = true;
    }
    grpc_metadata_array_destroy(&s->initial);
    grpc_metadata_array_destroy(&s->trailing);
    grpc_slice_unref(s->details);
    gpr_free((void *)s->error_string);
    grpc_byte_buffer_destroy(s->request);
    if (s->reply)
        grpc_byte_buffer_destroy(s->reply);
    grpc_call_unref(s->call);
    s->call = NULL;
    return ok;
}

/* Waits for the event of tag; false at the deadline. */
static bool wait_tag(load *l, void *tag, int timeout_s, bool *success)
{
    gpr_timespec deadline = gpr_time_add(gpr_now(GPR_CLOCK_MONOTONIC),
                                         gpr_time_from_seconds(timeout_s, GPR_TIMESPAN));
    for (;;) {
        grpc_event ev = grpc_completion_queue_next(l->cq, deadline, NULL);
        if (ev.type == GRPC_QUEUE_TIMEOUT)
            return false;
        if (ev.type == GRPC_OP_COMPLETE && ev.tag == tag) {
            *success = ev.success != 0;
            return true;
        }
    }
}

/* Waits until the channel is connected, so the window does not include
 * the handshake. */
static bool connect_channel(load *l)
{
    uint64_t until = now_ns() + (uint64_t)CONNECT_TIMEOUT_S * 1000000000u;
    int tag;
    for (;;) {
        grpc_connectivity_state st = grpc_channel_check_connectivity_state(l->channel, 1);
        if (st == GRPC_CHANNEL_READY)
            return true;
        if (now_ns() >= until)
            break;
        grpc_channel_watch_connectivity_state(
            l->channel, st,
            gpr_time_add(gpr_now(GPR_CLOCK_MONOTONIC), gpr_time_from_millis(500, GPR_TIMESPAN)),
            l->cq, &tag);
        bool changed;
        if (!wait_tag(l, &tag, 2, &changed))
            break;
    }
    fprintf(stderr, "grpc-load: could not connect to %s in %d s\n", l->cfg->target,
            CONNECT_TIMEOUT_S);
    return false;
}

/* cairn-append: CreateRun with one worker; the same definition again is
 * answered with the run, so a second invocation on one run is fine. */
static bool create_run(load *l)
{
    char key[TAG_MAX];
    snprintf(key, sizeof key, "load-create-%s", l->nonce);
    char worker[] = "load", *workers[] = {worker};
    Cairn__V1__CreateRunRequest req = CAIRN__V1__CREATE_RUN_REQUEST__INIT;
    req.idempotency_key = key;
    req.run_id = (char *)l->cfg->run_id;
    req.n_workers = 1;
    req.workers = workers;
    void *method = grpc_channel_register_call(l->channel, "/cairn.v1.Coordinator/CreateRun", NULL,
                                              NULL);
    slot s;
    bool batch_ok = false;
    if (!start_call(l, &s, method, pack(&req.base)) ||
        !wait_tag(l, &s, CALL_TIMEOUT_S + 5, &batch_ok))
        return false;
    uint8_t *reply;
    size_t len;
    char why[400];
    bool ok = finish_call(&s, batch_ok, &reply, &len, why, sizeof why);
    gpr_free(reply);
    if (!ok)
        fprintf(stderr, "grpc-load: CreateRun %s: %s\n", l->cfg->run_id, why);
    return ok;
}

static bool record_latency(load *l, uint64_t ns)
{
    if (l->window_calls == l->lat_cap) {
        long cap = l->lat_cap ? l->lat_cap * 2 : 65536;
        uint64_t *v = realloc(l->lat_ns, (size_t)cap * sizeof *v);
        if (!v)
            return false;
        l->lat_ns = v;
        l->lat_cap = cap;
    }
    l->lat_ns[l->window_calls++] = ns;
    return true;
}

/* Keeps cfg->inflight calls outstanding until the window ends, then
 * drains them. Latency counts for calls that complete inside the window. */
static bool drive(load *l, slot *slots, double *driver_cpu_s, double *wall_s)
{
    const config *cfg = l->cfg;
    uint64_t t0 = now_ns();
    uint64_t window_start = t0 + (uint64_t)(cfg->warmup_s * 1e9);
    uint64_t window_end = window_start + (uint64_t)(cfg->duration_s * 1e9);
    double cpu0 = cpu_s(RUSAGE_THREAD);
    int outstanding = 0;
    for (int i = 0; i < cfg->inflight; i++) {
        if (!start_call(l, &slots[i], l->method, next_request(l)))
            return false;
        outstanding++;
    }
    while (outstanding > 0) {
        grpc_event ev = grpc_completion_queue_next(
            l->cq,
            gpr_time_add(gpr_now(GPR_CLOCK_MONOTONIC),
                         gpr_time_from_seconds(CALL_TIMEOUT_S + 5, GPR_TIMESPAN)),
            NULL);
        if (ev.type != GRPC_OP_COMPLETE) {
            fprintf(stderr, "grpc-load: no completion in %d s\n", CALL_TIMEOUT_S + 5);
            return false;
        }
        slot *s = ev.tag;
        uint64_t done = now_ns(), started = s->started_ns;
        uint8_t *reply;
        size_t len = 0;
        char why[400];
        bool ok = finish_call(s, ev.success != 0, &reply, &len, why, sizeof why) &&
                  reply_ok(l, reply, len, why, sizeof why);
        gpr_free(reply);
        if (ok) {
            l->total_ok++;
            if (done >= window_start && done <= window_end &&
                !record_latency(l, done - started))
                return false;
        } else if (l->errors++ == 0) {
            snprintf(l->first_error, sizeof l->first_error, "%s", why);
        }
        if (done < window_end) {
            if (!start_call(l, s, l->method, next_request(l)))
                return false;
        } else {
            outstanding--;
        }
    }
    *driver_cpu_s = cpu_s(RUSAGE_THREAD) - cpu0;
    *wall_s = (double)(now_ns() - t0) / 1e9;
    return true;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static double pct_ms(const uint64_t *v, long n, double p)
{
    return n ? (double)v[(long)(p * (double)(n - 1) + 0.5)] / 1e6 : 0;
}

static void report(const load *l, double driver_cpu_s, double wall_s, double process_cpu_s)
{
    const config *cfg = l->cfg;
    long n = l->window_calls;
    if (n > 0)
        qsort(l->lat_ns, (size_t)n, sizeof *l->lat_ns, cmp_u64);
    double ops = (double)n / cfg->duration_s;
    double eps = cfg->mode == MODE_CAIRN_APPEND ? ops * cfg->batch : 0;
    double p50 = pct_ms(l->lat_ns, n, 0.50), p99 = pct_ms(l->lat_ns, n, 0.99),
           p999 = pct_ms(l->lat_ns, n, 0.999);
    long calls = l->total_ok + l->errors;
    /* Share of the run the driving thread was on a CPU: near 1, it, not
     * the server, limits the rate. */
    double busy = wall_s > 0 ? driver_cpu_s / wall_s : 0;
    double client_us = calls ? process_cpu_s * 1e6 / (double)calls : 0;
    if (cfg->json)
        printf("{\"mode\":\"%s\",\"target\":\"%s\",\"run\":\"%s\",\"inflight\":%d,\"batch\":%d,"
               "\"payload_bytes\":%d,\"seconds\":%.3f,\"warmup_s\":%.3f,\"calls\":%ld,"
               "\"calls_total\":%ld,\"errors\":%ld,\"ops_per_s\":%.1f,\"events_per_s\":%.1f,"
               "\"p50_ms\":%.3f,\"p99_ms\":%.3f,\"p999_ms\":%.3f,"
               "\"client_cpu_us_per_call\":%.2f,\"driver_busy\":%.3f}\n",
               modes[cfg->mode].name, cfg->target,
               cfg->mode == MODE_CAIRN_APPEND ? cfg->run_id : "", cfg->inflight, cfg->batch,
               cfg->payload_bytes, cfg->duration_s, cfg->warmup_s, n, l->total_ok, l->errors,
               ops, eps, p50, p99, p999, client_us, busy);
    else {
        char what[200] = "";
        if (cfg->mode == MODE_CAIRN_APPEND)
            snprintf(what, sizeof what, ", %d event(s) of %d bytes per call to run %s",
                     cfg->batch, cfg->payload_bytes, cfg->run_id);
        else if (cfg->mode == MODE_ETCD_PUT)
            snprintf(what, sizeof what, ", %d-byte values", cfg->payload_bytes);
        printf("%s %s: %d in flight on one connection%s\n"
               "%ld calls in %.3f s (%ld acknowledged in all, %ld errors)\n"
               "ops/s %.1f  events/s %.1f\n"
               "latency ms  p50 %.3f  p99 %.3f  p99.9 %.3f\n"
               "client CPU %.2f us/call, driving thread busy %.0f%%\n",
               modes[cfg->mode].name, cfg->target, cfg->inflight, what, n, cfg->duration_s,
               l->total_ok, l->errors, ops, eps, p50, p99, p999, client_us, busy * 100);
    }
    if (l->errors)
        fprintf(stderr, "grpc-load: %ld calls failed; the first: %s\n", l->errors,
                l->first_error);
}

static bool setup_batch(load *l)
{
    const config *cfg = l->cfg;
    size_t n = (size_t)cfg->batch;
    l->events = calloc(n, sizeof *l->events);
    l->event_ptrs = calloc(n, sizeof *l->event_ptrs);
    l->payloads = malloc(n * ((size_t)cfg->payload_bytes + TAG_MAX));
    if (!l->events || !l->event_ptrs || !l->payloads)
        return false;
    for (size_t j = 0; j < n; j++) {
        Cairn__V1__Event e = CAIRN__V1__EVENT__INIT;
        l->events[j] = e;
        l->events[j].type = (char *)"load";
        l->event_ptrs[j] = &l->events[j];
    }
    return true;
}

int main(int argc, char **argv)
{
    config cfg;
    int rc = parse_args(argc, argv, &cfg);
    if (rc)
        return rc;
    load l = {.cfg = &cfg};
    struct timespec rt;
    clock_gettime(CLOCK_REALTIME, &rt);
    snprintf(l.nonce, sizeof l.nonce, "%ld.%lld%09ld", (long)getpid(), (long long)rt.tv_sec,
             rt.tv_nsec);
    slot *slots = calloc((size_t)cfg.inflight, sizeof *slots);
    if (!slots || (cfg.mode == MODE_CAIRN_APPEND && !setup_batch(&l))) {
        fprintf(stderr, "grpc-load: out of memory\n");
        return 1;
    }

    grpc_init();
    /* No transparent retries: each call is sent once. */
    grpc_arg args[] = {{.type = GRPC_ARG_INTEGER, .key = GRPC_ARG_ENABLE_RETRIES,
                        .value.integer = 0}};
    grpc_channel_args cargs = {1, args};
    grpc_channel_credentials *creds = grpc_insecure_credentials_create();
    l.channel = grpc_channel_create(cfg.target, creds, &cargs);
    grpc_channel_credentials_release(creds);
    l.cq = grpc_completion_queue_create_for_next(NULL);
    l.method = grpc_channel_register_call(l.channel, modes[cfg.mode].path, NULL, NULL);

    double driver_cpu = 0, wall = 0;
    bool ok = connect_channel(&l) && (cfg.mode != MODE_CAIRN_APPEND || create_run(&l));
    double cpu0 = cpu_s(RUSAGE_SELF);
    ok = ok && drive(&l, slots, &driver_cpu, &wall);
    if (ok)
        report(&l, driver_cpu, wall, cpu_s(RUSAGE_SELF) - cpu0);

    grpc_channel_destroy(l.channel);
    grpc_completion_queue_shutdown(l.cq);
    while (grpc_completion_queue_next(l.cq, gpr_inf_future(GPR_CLOCK_MONOTONIC), NULL).type !=
           GRPC_QUEUE_SHUTDOWN)
        continue;
    grpc_completion_queue_destroy(l.cq);
    grpc_shutdown();
    free(slots);
    free(l.lat_ns);
    free(l.events);
    free(l.event_ptrs);
    free(l.payloads);
    return ok && l.errors == 0 ? 0 : 1;
}
