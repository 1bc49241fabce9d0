/* cairn-bench: an AppendEvents load generator on libcairn (its default
 * retry policy unless told otherwise). Each event's payload starts with a
 * unique tag "bench:<thread>:<request>:<event>", so --verify can read the
 * logs back and prove every acknowledged event is there exactly once.
 * --runs spreads the threads over several runs; --health sends Health
 * checks instead, the transport's own ceiling with no store behind it.
 * --read and --watchers are the read and watch-fan-out benchmarks
 * (bench_read.c, bench_watch.c).
 * Exit status 0 only if every call was acknowledged (and, with --verify,
 * the logs check out). */
#include "bench.h"

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

typedef struct thread_state {
    int id;
    const config *cfg;
    cairn_client *client;
    long quota;                 /* requests, or -1 until the deadline */
    double deadline;
    uint64_t *lat_ns;           /* per acknowledged request */
    long acked, failed, cap;
    bool *acked_map;            /* by request index, for --verify */
    long map_cap;
    char first_error[700];
} thread_state;

static atomic_long g_retries;
static atomic_long g_acked;

double bench_now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

uint64_t bench_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

void bench_sleep_until_ns(uint64_t ns)
{
    struct timespec ts = {.tv_sec = (time_t)(ns / 1000000000u),
                          .tv_nsec = (long)(ns % 1000000000u)};
    while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR)
        ;
}

static void on_retry(void *user, const cairn_retry_info *info)
{
    (void)user;
    (void)info;
    atomic_fetch_add(&g_retries, 1);
}

static int usage(void)
{
    fprintf(stderr,
            "usage: cairn-bench --target HOST:PORT[,HOST:PORT...] [--run ID] [--runs N]\n"
            "                   [--requests N | --duration S] [--concurrency C] [--batch B]\n"
            "                   [--payload-bytes P] [--retry-budget] [--breaker] [--json]\n"
            "                   [--verify] [--progress N] [--health] [--rate R]\n"
            "       cairn-bench --target HOST:PORT --read [--events N] [--repeat R] [--run ID]\n"
            "       cairn-bench --target HOST:PORT --watchers W [--watch-clients K] [--rate R]\n"
            "                   [--duration S]\n"
            "  --target      one server, or several (IPv4) spread round-robin\n"
            "  --run         run to append to (created if missing; default bench-<pid>)\n"
            "  --runs        spread the appends over N runs, ID-0..ID-<N-1>, round-robin\n"
            "                (default 1: ID)\n"
            "  --health      send Health checks instead of appends (no store involved)\n"
            "  --requests    appends in all (default 10000), or --duration seconds\n"
            "  --concurrency threads, one blocking call each (default 8)\n"
            "  --batch       events per append (default 1)\n"
            "  --payload-bytes  bytes per event payload, at least the tag (default 64)\n"
            "  --retry-budget / --breaker  turn libcairn's protections on\n"
            "  --verify      read the log back: every acknowledged event exactly once\n"
            "  --progress N  print 'progress <acked>' to stderr every N acknowledged appends\n"
            "  --rate R      at most R appends/s over all threads (paced; default unlimited)\n"
            "  --read        fill the run with --events events (default 1000000; 200-byte\n"
            "                payloads, batches of 100, unless --payload-bytes/--batch say\n"
            "                otherwise) if it is empty, then read it all --repeat times\n"
            "                (default 3) in pages of 1000\n"
            "  --watchers W  W watchers on one new run, one appender at --rate appends/s\n"
            "                (default 1000) for --duration s (default 10); latency from\n"
            "                acknowledgement and from send to each delivery\n"
            "  --watch-clients K  spread the watchers over K connections (default W/500 up)\n");
    return 2;
}

static int parse_args(int argc, char **argv, config *cfg)
{
    static const struct option opts[] = {
        {"target", required_argument, NULL, 't'},      {"run", required_argument, NULL, 'r'},
        {"requests", required_argument, NULL, 'n'},    {"duration", required_argument, NULL, 'd'},
        {"concurrency", required_argument, NULL, 'c'}, {"batch", required_argument, NULL, 'b'},
        {"payload-bytes", required_argument, NULL, 'p'}, {"retry-budget", no_argument, NULL, 'B'},
        {"breaker", no_argument, NULL, 'K'},           {"json", no_argument, NULL, 'j'},
        {"verify", no_argument, NULL, 'v'},            {"progress", required_argument, NULL, 'P'},
        {"runs", required_argument, NULL, 'R'},        {"health", no_argument, NULL, 'H'},
        {"rate", required_argument, NULL, 'a'},        {"read", no_argument, NULL, 'e'},
        {"events", required_argument, NULL, 'E'},      {"repeat", required_argument, NULL, 'x'},
        {"watchers", required_argument, NULL, 'w'},    {"watch-clients", required_argument, NULL, 'W'},
        {"help", no_argument, NULL, 'h'},              {0}};
    *cfg = (config){.requests = 10000, .concurrency = 8, .batch = 1, .payload_bytes = 64,
                    .runs = 1, .repeat = 3};
    bool read = false, batch_set = false, payload_set = false, rate_set = false,
         duration_set = false;
    long events = 1000000;
    snprintf(cfg->run_id, sizeof cfg->run_id, "bench-%ld", (long)getpid());
    int o;
    while ((o = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        char *end = NULL;
        switch (o) {
        case 't':
            if (strchr(optarg, ',') && strncmp(optarg, "ipv4:", 5) != 0)
                snprintf(cfg->target, sizeof cfg->target, "ipv4:%s", optarg);
            else
                snprintf(cfg->target, sizeof cfg->target, "%s", optarg);
            break;
        case 'r':
            snprintf(cfg->run_id, sizeof cfg->run_id, "%s", optarg);
            break;
        case 'n':
            cfg->requests = strtol(optarg, &end, 10);
            cfg->duration_s = 0;
            break;
        case 'd':
            cfg->duration_s = strtod(optarg, &end);
            cfg->requests = 0;
            duration_set = true;
            break;
        case 'c':
            cfg->concurrency = (int)strtol(optarg, &end, 10);
            break;
        case 'b':
            cfg->batch = (int)strtol(optarg, &end, 10);
            batch_set = true;
            break;
        case 'p':
            cfg->payload_bytes = (int)strtol(optarg, &end, 10);
            payload_set = true;
            break;
        case 'a':
            cfg->rate = strtod(optarg, &end);
            rate_set = true;
            break;
        case 'e':
            read = true;
            break;
        case 'E':
            events = strtol(optarg, &end, 10);
            break;
        case 'x':
            cfg->repeat = (int)strtol(optarg, &end, 10);
            break;
        case 'w':
            cfg->watchers = (int)strtol(optarg, &end, 10);
            break;
        case 'W':
            cfg->watch_clients = (int)strtol(optarg, &end, 10);
            break;
        case 'P':
            cfg->progress_every = strtol(optarg, &end, 10);
            break;
        case 'R':
            cfg->runs = (int)strtol(optarg, &end, 10);
            break;
        case 'H':
            cfg->health = true;
            break;
        case 'B':
            cfg->retry_budget = true;
            break;
        case 'K':
            cfg->breaker = true;
            break;
        case 'j':
            cfg->json = true;
            break;
        case 'v':
            cfg->verify = true;
            break;
        default:
            return usage();
        }
        if (end && *end) {
            fprintf(stderr, "cairn-bench: bad number \"%s\"\n", optarg);
            return 2;
        }
    }
    if (read) { /* the log to read: 200-byte events appended 100 at a time */
        cfg->read_events = events;
        cfg->batch = batch_set ? cfg->batch : 100;
        cfg->payload_bytes = payload_set ? cfg->payload_bytes : 200;
        cfg->requests = (events + cfg->batch - 1) / cfg->batch;
    }
    if (cfg->watchers) {
        cfg->rate = rate_set ? cfg->rate : 1000;
        cfg->duration_s = duration_set ? cfg->duration_s : 10;
        if (cfg->watch_clients == 0)
            cfg->watch_clients = (cfg->watchers + 499) / 500;
    }
    if (!cfg->target[0] || optind != argc || cfg->concurrency < 1 || cfg->concurrency > 1024 ||
        cfg->batch < 1 || cfg->batch > 1000 || cfg->payload_bytes < 0 || cfg->runs < 1 ||
        (cfg->health && cfg->verify) || cfg->rate < 0 || (read && cfg->watchers) ||
        (read && events < 1) || cfg->repeat < 1 || cfg->watchers < 0 ||
        (cfg->watchers && (cfg->watch_clients < 1 || cfg->watch_clients > cfg->watchers ||
                           cfg->rate <= 0 || cfg->duration_s <= 0)) ||
        cfg->payload_bytes > 1024 * 1024 || (cfg->requests <= 0 && cfg->duration_s <= 0))
        return usage();
    return 0;
}

/* The name of run r of cfg->runs. */
static void run_name(const config *cfg, long r, char *out, size_t cap)
{
    if (cfg->runs == 1)
        snprintf(out, cap, "%s", cfg->run_id);
    else
        snprintf(out, cap, "%s-%ld", cfg->run_id, r);
}

/* One call: an append of request i, or a Health check. */
static cairn_status call_once(thread_state *t, const char *run_id, long i, char **payloads,
                              cairn_event *evs, cairn_error *err)
{
    const config *cfg = t->cfg;
    if (cfg->health) {
        cairn_serving serving;
        cairn_status st = cairn_health_check(t->client, NULL, &serving, err);
        return st == CAIRN_OK && serving != CAIRN_SERVING ? CAIRN_UNAVAILABLE : st;
    }
    size_t len = (size_t)cfg->payload_bytes;
    for (int j = 0; j < cfg->batch; j++) {
        int tag = snprintf(payloads[j], len + 64, "bench:%d:%ld:%d", t->id, i, j);
        size_t n = len > (size_t)tag ? len : (size_t)tag;
        memset(payloads[j] + tag, 'x', n - (size_t)tag);
        evs[j] = (cairn_event){.type = "bench", .payload = payloads[j], .payload_len = n};
    }
    /* No key of our own: libcairn makes one per call (time-ordered) and
     * keeps it across that call's retries. */
    cairn_append_request req = {.run_id = run_id, .events = evs,
                                .events_count = (size_t)cfg->batch};
    cairn_append_result res;
    return cairn_append_events(t->client, &req, &res, err);
}

static bool record_ack(thread_state *t, long i, uint64_t ns)
{
    if (t->acked == t->cap) {
        long cap = t->cap ? t->cap * 2 : 1024;
        uint64_t *v = realloc(t->lat_ns, (size_t)cap * sizeof *v);
        if (!v)
            return false;
        t->lat_ns = v;
        t->cap = cap;
    }
    if (i >= t->map_cap) {
        long cap = t->map_cap ? t->map_cap * 2 : 1024;
        while (cap <= i)
            cap *= 2;
        bool *m = realloc(t->acked_map, (size_t)cap);
        if (!m)
            return false;
        memset(m + t->map_cap, 0, (size_t)(cap - t->map_cap));
        t->acked_map = m;
        t->map_cap = cap;
    }
    t->lat_ns[t->acked++] = ns;
    t->acked_map[i] = true;
    return true;
}

static void *worker(void *arg)
{
    thread_state *t = arg;
    const config *cfg = t->cfg;
    size_t len = (size_t)cfg->payload_bytes;
    char **payloads = calloc((size_t)cfg->batch, sizeof *payloads);
    cairn_event *evs = calloc((size_t)cfg->batch, sizeof *evs);
    for (int j = 0; payloads && j < cfg->batch; j++)
        payloads[j] = malloc(len + 64);
    char run_id[sizeof cfg->run_id + 24];
    /* Paced: request i of thread t is due at (i * C + t) / rate. */
    uint64_t start_ns = bench_now_ns();
    double gap_ns = cfg->rate > 0 ? 1e9 * cfg->concurrency / cfg->rate : 0;
    uint64_t offset_ns = cfg->rate > 0 ? (uint64_t)(1e9 * t->id / cfg->rate) : 0;
    for (long i = 0; t->quota < 0 ? bench_now_s() < t->deadline : i < t->quota; i++) {
        if (gap_ns > 0)
            bench_sleep_until_ns(start_ns + offset_ns + (uint64_t)(gap_ns * (double)i));
        run_name(cfg, (t->id + i * cfg->concurrency) % cfg->runs, run_id, sizeof run_id);
        cairn_error err;
        double t0 = bench_now_s();
        cairn_status st = call_once(t, run_id, i, payloads, evs, &err);
        if (st == CAIRN_OK && record_ack(t, i, (uint64_t)((bench_now_s() - t0) * 1e9))) {
            long total = atomic_fetch_add(&g_acked, 1) + 1;
            if (cfg->progress_every && total % cfg->progress_every == 0) {
                fprintf(stderr, "progress %ld\n", total);
                fflush(stderr);
            }
        } else {
            t->failed++;
            if (!t->first_error[0])
                snprintf(t->first_error, sizeof t->first_error, "%s: %s (after %d attempts)",
                         cairn_strerror(st), err.message, err.attempts);
        }
    }
    for (int j = 0; payloads && j < cfg->batch; j++)
        free(payloads[j]);
    free(payloads);
    free(evs);
    return NULL;
}

int bench_cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

double bench_pct_ms(const uint64_t *v, long n, double p)
{
    if (n == 0)
        return 0;
    long i = (long)(p * (double)(n - 1) + 0.5);
    return (double)v[i] / 1e6;
}

/* What verify counts as it reads the logs. */
typedef struct tally {
    const config *cfg;
    thread_state *ts;
    int **seen;                 /* seen[t][i] counts events of request i of thread t */
    long in_run;                /* events of the run being read so far */
    long dense_breaks, dups, foreign, unacked, n;
} tally;

static bool tally_event(void *ctx, const cairn_event *e)
{
    tally *y = ctx;
    if (e->seq != (uint64_t)y->in_run + 1)
        y->dense_breaks++;
    y->in_run++;
    y->n++;
    int tid, j;
    long i;
    char tag[64];
    size_t l = e->payload_len < sizeof tag - 1 ? e->payload_len : sizeof tag - 1;
    memcpy(tag, e->payload, l);
    tag[l] = '\0';
    if (sscanf(tag, "bench:%d:%ld:%d", &tid, &i, &j) != 3 || tid < 0 ||
        tid >= y->cfg->concurrency || i < 0) {
        y->foreign++;
        return true;
    }
    if (i >= y->ts[tid].map_cap || !y->ts[tid].acked_map[i]) {
        y->unacked++; /* committed, but its caller gave up */
        return true;
    }
    if (++y->seen[tid][i] > y->cfg->batch)
        y->dups++;
    return true;
}

/* Reads every run's whole log: seqs dense from 1 in each, every
 * acknowledged tag exactly once. Returns 0 when they check out. */
static int verify(cairn_client *c, const config *cfg, thread_state *ts, long *events_out)
{
    long missing = 0;
    size_t threads = cfg->concurrency > 0 ? (size_t)cfg->concurrency : 1; /* parse_args */
    tally y = {.cfg = cfg, .ts = ts, .seen = calloc(threads, sizeof *y.seen)};
    int **seen = y.seen;
    for (int t = 0; t < cfg->concurrency; t++)
        seen[t] = calloc((size_t)(ts[t].map_cap + 1), sizeof **seen);
    for (int r = 0; r < cfg->runs; r++) {
        char run_id[sizeof cfg->run_id + 24];
        run_name(cfg, r, run_id, sizeof run_id);
        y.in_run = 0;
        if (bench_each_event(c, run_id, "verify", tally_event, &y))
            return 1;
    }
    for (int t = 0; t < cfg->concurrency; t++) {
        for (long i = 0; i < ts[t].map_cap; i++) {
            if (!ts[t].acked_map[i])
                continue;
            if (seen[t][i] < cfg->batch)
                missing += cfg->batch - seen[t][i];
        }
        free(seen[t]);
    }
    free(seen);
    *events_out = y.n;
    if (cfg->runs == 1)
        printf("verify: %ld events, seqs 1..%ld %s, ", y.n, y.n,
               y.dense_breaks ? "NOT dense" : "dense");
    else
        printf("verify: %ld events in %d runs, seqs %s in each, ", y.n, cfg->runs,
               y.dense_breaks ? "NOT dense" : "dense");
    printf("%ld duplicates, %ld missing, %ld committed but unacknowledged, %ld foreign\n", y.dups,
           missing, y.unacked, y.foreign);
    return y.dense_breaks || y.dups || missing ? 1 : 0;
}

cairn_client *bench_client(const config *cfg, uint32_t distinct)
{
    cairn_client_options opts;
    cairn_client_options_init(&opts);
    opts.target = cfg->target;
    opts.retry_budget.enabled = cfg->retry_budget;
    opts.breaker.enabled = cfg->breaker;
    opts.on_retry = on_retry;
    opts.max_message_bytes -= distinct; /* a setting of the channel: see bench.h */
    cairn_client *client;
    cairn_error err;
    if (cairn_client_create(&opts, &client, &err)) {
        fprintf(stderr, "cairn-bench: %s\n", err.message);
        return NULL;
    }
    return client;
}

int bench_each_event(cairn_client *c, const char *run_id, const char *what,
                     bool (*fn)(void *ctx, const cairn_event *e), void *ctx)
{
    uint64_t from = 1;
    for (;;) {
        cairn_event_page page;
        cairn_error err;
        cairn_status st = cairn_read_events(c, run_id, from, 1000, &page, &err);
        if (st) {
            fprintf(stderr, "cairn-bench: %s %s from %llu: %s: %s\n", what, run_id,
                    (unsigned long long)from, cairn_strerror(st), err.message);
            return 1;
        }
        size_t n = page.events_count;
        bool go_on = true;
        for (size_t k = 0; go_on && k < n; k++)
            go_on = fn(ctx, &page.events[k]);
        from = page.next_seq;
        cairn_event_page_free(&page);
        if (!go_on)
            return 1;
        if (n == 0)
            return 0;
    }
}

int bench_create_run(cairn_client *c, const char *run_id)
{
    const char *workers[] = {"bench"};
    cairn_create_run_request cr = {.run_id = run_id, .workers = workers, .workers_count = 1};
    cairn_run run;
    cairn_error err;
    cairn_status st = cairn_create_run(c, &cr, &run, &err);
    if (st) {
        fprintf(stderr, "cairn-bench: create run %s: %s: %s\n", run_id, cairn_strerror(st),
                err.message);
        return 1;
    }
    cairn_run_free(&run);
    return 0;
}

int bench_appends(const config *cfgp, cairn_client *client)
{
    const config cfg = *cfgp;
    for (long r = 0; !cfg.health && r < cfg.runs; r++) {
        char run_id[sizeof cfg.run_id + 24];
        run_name(&cfg, r, run_id, sizeof run_id);
        if (bench_create_run(client, run_id))
            return 1;
    }

    thread_state *ts = calloc((size_t)cfg.concurrency, sizeof *ts);
    pthread_t *th = calloc((size_t)cfg.concurrency, sizeof *th);
    double start = bench_now_s();
    for (int t = 0; t < cfg.concurrency; t++) {
        ts[t] = (thread_state){.id = t, .cfg = &cfg, .client = client};
        ts[t].quota = cfg.requests ? cfg.requests / cfg.concurrency + (t < cfg.requests % cfg.concurrency)
                                   : -1;
        ts[t].deadline = start + cfg.duration_s;
        pthread_create(&th[t], NULL, worker, &ts[t]);
    }
    for (int t = 0; t < cfg.concurrency; t++)
        pthread_join(th[t], NULL);
    double elapsed = bench_now_s() - start;

    long acked = 0, failed = 0;
    for (int t = 0; t < cfg.concurrency; t++) {
        acked += ts[t].acked;
        failed += ts[t].failed;
    }
    uint64_t *all = malloc((size_t)(acked ? acked : 1) * sizeof *all);
    long k = 0;
    for (int t = 0; t < cfg.concurrency; t++)
        for (long i = 0; i < ts[t].acked; i++)
            all[k++] = ts[t].lat_ns[i];
    qsort(all, (size_t)acked, sizeof *all, bench_cmp_u64);
    double rps = (double)acked / elapsed, eps = cfg.health ? 0 : rps * cfg.batch;
    double p50 = bench_pct_ms(all, acked, 0.50), p99 = bench_pct_ms(all, acked, 0.99),
           p999 = bench_pct_ms(all, acked, 0.999);
    long retries = atomic_load(&g_retries);

    if (cfg.json)
        printf("{\"target\":\"%s\",\"run\":\"%s\",\"runs\":%d,\"method\":\"%s\","
               "\"concurrency\":%d,\"batch\":%d,"
               "\"payload_bytes\":%d,\"acknowledged\":%ld,\"failed\":%ld,\"retries\":%ld,"
               "\"seconds\":%.3f,\"requests_per_s\":%.1f,\"events_per_s\":%.1f,"
               "\"p50_ms\":%.3f,\"p99_ms\":%.3f,\"p999_ms\":%.3f}\n",
               cfg.target, cfg.run_id, cfg.runs, cfg.health ? "Health" : "AppendEvents",
               cfg.concurrency, cfg.batch, cfg.payload_bytes, acked, failed, retries, elapsed, rps,
               eps, p50, p99, p999);
    else
        printf("target %s run %s (%d runs): %d threads, %d events/append, %d-byte payloads\n"
               "acknowledged %ld %s (%ld events) in %.3f s, failed %ld, retries %ld\n"
               "requests/s %.1f  events/s %.1f\n"
               "latency ms  p50 %.3f  p99 %.3f  p99.9 %.3f\n",
               cfg.target, cfg.run_id, cfg.runs, cfg.concurrency, cfg.batch, cfg.payload_bytes,
               acked, cfg.health ? "Health checks" : "appends",
               cfg.health ? 0 : acked * cfg.batch, elapsed, failed, retries, rps,
               eps, p50, p99, p999);
    for (int t = 0; t < cfg.concurrency; t++)
        if (ts[t].first_error[0])
            fprintf(stderr, "cairn-bench: thread %d: %s\n", t, ts[t].first_error);

    int status = failed ? 1 : 0;
    if (cfg.verify) {
        long events;
        if (verify(client, &cfg, ts, &events))
            status = 1;
    }
    fflush(stdout);
    for (int t = 0; t < cfg.concurrency; t++) {
        free(ts[t].lat_ns);
        free(ts[t].acked_map);
    }
    free(ts);
    free(th);
    free(all);
    return status;
}

int main(int argc, char **argv)
{
    config cfg;
    int rc = parse_args(argc, argv, &cfg);
    if (rc)
        return rc;
    cairn_client *client = bench_client(&cfg, 0);
    if (!client)
        return 1;
    rc = cfg.read_events ? bench_read(&cfg, client)
         : cfg.watchers  ? bench_watch(&cfg, client)
                         : bench_appends(&cfg, client);
    cairn_client_destroy(client);
    return rc;
}
