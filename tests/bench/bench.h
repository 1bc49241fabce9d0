/* cairn-bench's pieces: the settings every mode reads, and the helpers
 * the append, read and watch modes share. */
#ifndef CAIRN_BENCH_H
#define CAIRN_BENCH_H

#include <cairn/cairn.h>

#include <stdbool.h>
#include <stdint.h>

typedef struct config {
    char target[1024];
    char run_id[120];
    int runs;                   /* request i of thread t goes to run (t + i * C) % runs */
    bool health;                /* Health checks in place of appends */
    long requests;              /* 0 with duration */
    double duration_s;
    int concurrency;
    int batch;
    int payload_bytes;
    double rate;                /* appends/s over all threads; 0 = as fast as they go */
    bool retry_budget, breaker, json, verify;
    long progress_every;        /* 0 = silent */
    long read_events;           /* --read: log length to read back; 0 = append mode */
    int repeat;                 /* --read: passes over the log */
    int watchers;               /* --watchers: watch mode; 0 = append mode */
    int watch_clients;          /* clients (connections) the watchers are spread over */
} config;

/* CLOCK_MONOTONIC in seconds and in nanoseconds. */
double bench_now_s(void);
uint64_t bench_now_ns(void);
/* Sleeps until CLOCK_MONOTONIC reaches ns (at once when it has). */
void bench_sleep_until_ns(uint64_t ns);
/* qsort comparator for uint64_t. */
int bench_cmp_u64(const void *a, const void *b);
/* The p-quantile (0..1) of n sorted nanosecond values, in ms. */
double bench_pct_ms(const uint64_t *sorted_ns, long n, double p);
/* A client on cfg->target; distinct is folded into its options so that
 * clients made with different values get connections of their own (gRPC
 * shares one connection between channels whose settings are equal).
 * Prints the error and returns NULL on failure. */
cairn_client *bench_client(const config *cfg, uint32_t distinct);
/* Reads run_id from seq 1 to its end in pages of 1000 and calls
 * fn(ctx, e) on every event in order. 0 at the end; 1 when a read failed
 * (printed, as "cairn-bench: <what> <run_id> from <seq>: ...") or fn
 * returned false (fn printed why). */
int bench_each_event(cairn_client *c, const char *run_id, const char *what,
                     bool (*fn)(void *ctx, const cairn_event *e), void *ctx);
/* Creates run_id (or finds it) with one worker "bench". 0 on success. */
int bench_create_run(cairn_client *c, const char *run_id);
/* Appends the load of cfg (the append mode); prints its result and
 * returns the exit status. */
int bench_appends(const config *cfg, cairn_client *c);

/* --read: fills cfg->run_id to cfg->read_events events (200-byte payloads
 * in batches of 100 unless told otherwise) when it is empty, then reads
 * the whole log cfg->repeat times with pages of 1000. Exit status. */
int bench_read(const config *cfg, cairn_client *c);
/* --watchers: cfg->watchers watches on one fresh run while one appender
 * sends cfg->rate single-event appends/s for cfg->duration_s. Exit
 * status: 0 when every watcher got every event. */
int bench_watch(const config *cfg, cairn_client *c);

#endif
