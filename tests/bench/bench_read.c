/* cairn-bench --read: one caller reads a whole log with ReadEvents pages
 * of 1000, timed, cfg->repeat times. The log is appended first (by the
 * append mode: several threads, batches) unless the run already holds it,
 * so repeated read runs against the same data dir do not refill. */
#include "bench.h"

#include <stdio.h>

/* Reads run_id from seq 1 to its end once; 0 on success. */
static int read_all(cairn_client *c, const char *run_id, long *events, double *bytes)
{
    *events = 0;
    *bytes = 0;
    uint64_t from = 1;
    for (;;) {
        cairn_event_page page;
        cairn_error err;
        cairn_status st = cairn_read_events(c, run_id, from, 1000, &page, &err);
        if (st) {
            fprintf(stderr, "cairn-bench: read %s from %llu: %s: %s\n", run_id,
                    (unsigned long long)from, cairn_strerror(st), err.message);
            return 1;
        }
        size_t n = page.events_count;
        for (size_t k = 0; k < n; k++) {
            if (page.events[k].seq != from + k) {
                fprintf(stderr, "cairn-bench: read %s: seq %llu where %llu was due\n", run_id,
                        (unsigned long long)page.events[k].seq, (unsigned long long)(from + k));
                cairn_event_page_free(&page);
                return 1;
            }
            *bytes += (double)page.events[k].payload_len;
        }
        *events += (long)n;
        from = page.next_seq;
        cairn_event_page_free(&page);
        if (n == 0)
            return 0;
    }
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
        long events;
        double bytes, t0 = bench_now_s();
        if (read_all(c, cfg->run_id, &events, &bytes))
            return 1;
        double s = bench_now_s() - t0;
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
