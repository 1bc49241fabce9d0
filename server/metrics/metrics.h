/* Metric primitives for the hot path: a counter is one atomic, a
 * histogram a fixed array of atomic bucket counts. Recording is lock-free
 * and allocates nothing; readers (a scrape) see each number as it was at
 * some moment, not all of them at one moment, which Prometheus allows. */
#ifndef CAIRN_SERVER_METRICS_H
#define CAIRN_SERVER_METRICS_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

typedef _Atomic uint64_t srv_counter;

static inline void srv_counter_add(srv_counter *c, uint64_t n)
{
    atomic_fetch_add_explicit(c, n, memory_order_relaxed);
}

static inline uint64_t srv_counter_get(srv_counter *c)
{
    return atomic_load_explicit(c, memory_order_relaxed);
}

/* Most upper bounds a histogram has (besides +Inf). */
enum { SRV_HISTOGRAM_MAX_BOUNDS = 16 };

/* Upper bounds for durations, in microseconds: 100 us to 10 s. */
extern const uint64_t srv_duration_bounds_us[];
extern const size_t srv_duration_bounds_n;

typedef struct srv_histogram {
    const uint64_t *bounds;       /* increasing upper bounds, in the observed unit */
    size_t n_bounds;              /* <= SRV_HISTOGRAM_MAX_BOUNDS */
    /* Per bucket, not cumulative (one increment per observation); the
     * last is +Inf. The count is their sum. */
    srv_counter buckets[SRV_HISTOGRAM_MAX_BOUNDS + 1];
    srv_counter sum;
} srv_histogram;

/* Zeroes h over bounds (n of them, increasing; bounds must outlive h). */
void srv_histogram_init(srv_histogram *h, const uint64_t *bounds, size_t n);

/* Counts one value. Any thread, lock-free. */
void srv_histogram_observe(srv_histogram *h, uint64_t value);

/* The number of values observed so far. Any thread. */
uint64_t srv_histogram_count(srv_histogram *h);

#endif
