/* cairn-bench --read: one caller reads a whole log with ReadEvents pages
 * of 1000, timed, cfg->repeat times. The log is appended first (by the
 * append mode: several threads, batches) unless the run already holds it,
 * so repeated read runs against the same data dir do not refill. */
#include "bench.h"

#include <stdio.h>

/* What one pass over the log read. */
typedef struct pass {
    const char *run_id;
    long events;
    double bytes;
} pass;

static bool count_event(void *ctx, const cairn_event *e)
{
    pass *p = ctx;
    uint64_t due = (uint64_t)p->events + 1;
    if (e->seq != due) {
        fprintf(stderr, "cairn-bench: read %s: seq %llu where %llu was due\n", p->run_id,
                (unsigned long long)e->seq, (unsigned long long)due);
        return false;
    }
    p->events++;
    p->bytes += (double)e->payload_len;
    return true;
}

int bench_read(const config *cfg, cairn_client *c)
{
    if (bench_create_run(c, cfg->run_id))
        return 1;
    cairn_run run;
    cairn_error err;
    cairn_status st = cairn_get_run(c, cfg->run_id, &run, &err);
    if (st) {
        fprintf(stderr, "cairn-bench: get run %s: %s: %s\n", cfg->run_id, cairn_strerror(st),
                err.message);
        return 1;
    }
    long have = (long)run.next_seq - 1;
    cairn_run_free(&run);
    if (have == 0) {
        printf("fill: ");
        fflush(stdout);
        if (bench_appends(cfg, c))
            return 1;
    } else if (have < cfg->read_events) {
        fprintf(stderr, "cairn-bench: run %s holds %ld events, fewer than --events %ld: "
                        "name an empty run or a full one\n", cfg->run_id, have, cfg->read_events);
        return 1;
    } else {
        printf("run %s already holds %ld events: not refilled\n", cfg->run_id, have);
    }
    for (int r = 0; r < cfg->repeat; r++) {
        pass p = {cfg->run_id, 0, 0};
        double t0 = bench_now_s();
        if (bench_each_event(c, cfg->run_id, "read", count_event, &p))
            return 1;
        double s = bench_now_s() - t0;
        long events = p.events;
        double bytes = p.bytes;
        if (cfg->json)
            printf("{\"run\":\"%s\",\"pass\":%d,\"events\":%ld,\"payload_bytes\":%.0f,"
                   "\"seconds\":%.3f,\"events_per_s\":%.1f,\"payload_mb_per_s\":%.2f}\n",
                   cfg->run_id, r + 1, events, bytes, s, (double)events / s, bytes / s / 1e6);
        else
            printf("read %d: %ld events (%.1f MB of payload) in %.3f s: %.0f events/s, "
                   "%.1f MB/s\n",
                   r + 1, events, bytes / 1e6, s, (double)events / s, bytes / s / 1e6);
        fflush(stdout);
    }
    return 0;
}
