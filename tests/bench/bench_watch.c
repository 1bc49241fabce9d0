/* cairn-bench --watchers: the watch fan-out. W watchers (cairn_watch_start,
 * a thread each) on one new run, spread over K clients with connections
 * of their own (a server lets one connection carry a bounded number of
 * streams, --max-concurrent-streams), and one appender on a client of its
 * own sending single-event appends at a paced rate, each payload carrying
 * its CLOCK_MONOTONIC send time. Each watcher notes when each seq reached
 * it; afterwards every delivery is measured from the append's
 * acknowledgement (the commit as the appender saw it; a delivery that
 * came first counts as 0) and from its send. */
#include "bench.h"

#include <inttypes.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct watch_slot {
    uint64_t base_ns;             /* times below are µs after this */
    uint32_t *delivered_us;       /* by seq - 1; 0 = not delivered */
    long cap;                     /* seqs it can note */
    atomic_long received;
    uint64_t next_seq;
    long out_of_order, bad_payload;
} watch_slot;

static int on_event(void *user, const cairn_event *ev)
{
    watch_slot *w = user;
    uint64_t now = bench_now_ns();
    if (ev->seq != w->next_seq)
        w->out_of_order++;
    w->next_seq = ev->seq + 1;
    if (ev->payload_len < 6 || memcmp(ev->payload, "watch:", 6) != 0)
        w->bad_payload++;
    if (ev->seq >= 1 && (long)ev->seq <= w->cap)
        w->delivered_us[ev->seq - 1] = (uint32_t)((now - w->base_ns) / 1000 + 1);
    atomic_fetch_add(&w->received, 1);
    return 0;
}

/* One single-event append carrying send_ns; its seq, or 0 on failure. */
static uint64_t append_one(cairn_client *c, const char *run_id, uint64_t send_ns)
{
    char payload[48];
    int len = snprintf(payload, sizeof payload, "watch:%" PRIu64, send_ns);
    cairn_event ev = {.type = "bench", .payload = payload, .payload_len = (size_t)len};
    cairn_append_request req = {.run_id = run_id, .events = &ev, .events_count = 1};
    cairn_append_result res;
    cairn_error err;
    cairn_status st = cairn_append_events(c, &req, &res, &err);
    if (st) {
        fprintf(stderr, "cairn-bench: append: %s: %s\n", cairn_strerror(st), err.message);
        return 0;
    }
    return res.first_seq;
}

/* Waits until every watcher has received `want` events or `timeout_s`
 * passes; returns how many have. */
static int wait_all(watch_slot *ws, int n, long want, double timeout_s)
{
    double deadline = bench_now_s() + timeout_s;
    for (;;) {
        int done = 0;
        for (int i = 0; i < n; i++)
            done += atomic_load(&ws[i].received) >= want;
        if (done == n || bench_now_s() > deadline)
            return done;
        bench_sleep_until_ns(bench_now_ns() + 10 * 1000 * 1000); /* poll every 10 ms */
    }
}

static void print_dist(const char *what, uint64_t *v, long n)
{
    qsort(v, (size_t)n, sizeof *v, bench_cmp_u64);
    printf("%s ms  p50 %.3f  p90 %.3f  p99 %.3f  p99.9 %.3f  max %.3f\n", what,
           bench_pct_ms(v, n, 0.5), bench_pct_ms(v, n, 0.9), bench_pct_ms(v, n, 0.99),
           bench_pct_ms(v, n, 0.999), n ? (double)v[n - 1] / 1e6 : 0);
}

int bench_watch(const config *cfg, cairn_client *c)
{
    long total = (long)(cfg->rate * cfg->duration_s); /* timed appends; seq 1 is the warm-up */
    int nw = cfg->watchers, nc = cfg->watch_clients;
    if (bench_create_run(c, cfg->run_id))
        return 1;
    cairn_client **clients = calloc((size_t)nc + 1, sizeof *clients);
    watch_slot *ws = calloc((size_t)nw, sizeof *ws);
    cairn_watcher **watchers = calloc((size_t)nw, sizeof *watchers);
    uint64_t *send_ns = calloc((size_t)total + 2, sizeof *send_ns);
    uint64_t *ack_ns = calloc((size_t)total + 2, sizeof *ack_ns);
    int status = 1;
    uint64_t base = bench_now_ns();
    for (int k = 0; k <= nc; k++) /* clients[nc] is the appender's */
        if (!(clients[k] = bench_client(cfg, (uint32_t)k + 1)))
            goto out;
    for (int i = 0; i < nw; i++) {
        ws[i] = (watch_slot){.base_ns = base, .cap = total + 1, .next_seq = 1};
        ws[i].delivered_us = calloc((size_t)total + 1, sizeof *ws[i].delivered_us);
        cairn_watch_request req = {.run_id = cfg->run_id, .from_seq = 1, .on_event = on_event,
                                   .user = &ws[i]};
        cairn_error err;
        cairn_status st = cairn_watch_start(clients[i % nc], &req, &watchers[i], &err);
        if (st) {
            fprintf(stderr, "cairn-bench: watcher %d: %s: %s\n", i, cairn_strerror(st),
                    err.message);
            goto out;
        }
    }
    /* Seq 1, once every watcher has it, shows every stream is open. */
    cairn_client *app = clients[nc];
    if (append_one(app, cfg->run_id, bench_now_ns()) != 1) {
        fprintf(stderr, "cairn-bench: run %s is not new\n", cfg->run_id);
        goto out;
    }
    int ready = wait_all(ws, nw, 1, 120);
    if (ready < nw) {
        fprintf(stderr, "cairn-bench: %d of %d watchers got the warm-up event in 120 s\n", ready,
                nw);
        goto out;
    }
    uint64_t start = bench_now_ns();
    double gap = 1e9 / cfg->rate;
    long sent = 0;
    for (long i = 0; i < total; i++) {
        bench_sleep_until_ns(start + (uint64_t)(gap * (double)i));
        uint64_t t = bench_now_ns();
        uint64_t seq = append_one(app, cfg->run_id, t);
        if (seq != (uint64_t)i + 2) {
            fprintf(stderr, "cairn-bench: append %ld got seq %" PRIu64 "\n", i, seq);
            goto out;
        }
        send_ns[seq] = t;
        ack_ns[seq] = bench_now_ns();
        sent++;
    }
    double append_s = (double)(bench_now_ns() - start) / 1e9;
    int complete = wait_all(ws, nw, total + 1, 60);
    for (int i = 0; i < nw; i++) {
        cairn_watch_stop(watchers[i], NULL);
        watchers[i] = NULL;
    }

    uint64_t *from_ack = malloc((size_t)(nw * total + 1) * sizeof *from_ack);
    uint64_t *from_send = malloc((size_t)(nw * total + 1) * sizeof *from_send);
    long n = 0, early = 0, disorder = 0, bad = 0;
    for (int i = 0; i < nw; i++) {
        disorder += ws[i].out_of_order;
        bad += ws[i].bad_payload;
        for (long seq = 2; seq <= total + 1; seq++) {
            uint32_t d = ws[i].delivered_us[seq - 1];
            if (!d)
                continue;
            uint64_t at = base + (uint64_t)(d - 1) * 1000;
            early += at < ack_ns[seq];
            from_ack[n] = at > ack_ns[seq] ? at - ack_ns[seq] : 0;
            from_send[n++] = at > send_ns[seq] ? at - send_ns[seq] : 0;
        }
    }
    printf("watch: %d watchers on %d connections, run %s, 1 appender\n", nw, nc, cfg->run_id);
    printf("appended %ld single-event appends in %.3f s: %.1f appends/s (asked %.0f)\n", sent,
           append_s, (double)sent / append_s, cfg->rate);
    printf("delivered %ld of %ld (%d of %d watchers got every event), %ld out of order, "
           "%ld bad payloads, %ld before the appender saw the acknowledgement\n",
           n, (long)nw * total, complete, nw, disorder, bad, early);
    print_dist("ack -> delivery ", from_ack, n);
    print_dist("send -> delivery", from_send, n);
    free(from_ack);
    free(from_send);
    status = complete == nw && n == (long)nw * total && !disorder && !bad ? 0 : 1;
    if (status)
        printf("NOT every watcher got every event once, in order\n");
out:
    for (int i = 0; i < nw; i++) {
        cairn_watch_stop(watchers[i], NULL);
        free(ws[i].delivered_us);
    }
    for (int k = 0; k <= nc; k++)
        cairn_client_destroy(clients[k]);
    free(clients);
    free(ws);
    free(watchers);
    free(send_ns);
    free(ack_ns);
    return status;
}
