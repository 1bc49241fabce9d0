#include "metrics/metrics.h"

/* From a fast cache hit to a stalled disk: 100 us, 250 us, ... 10 s. */
const uint64_t srv_duration_bounds_us[] = {
    100,    250,    500,     1000,    2500,    5000,    10000,   25000,
    50000,  100000, 250000,  500000,  1000000, 2500000, 5000000, 10000000,
};
const size_t srv_duration_bounds_n = sizeof srv_duration_bounds_us / sizeof(uint64_t);

void srv_histogram_init(srv_histogram *h, const uint64_t *bounds, size_t n)
{
    h->bounds = bounds;
    h->n_bounds = n < SRV_HISTOGRAM_MAX_BOUNDS ? n : SRV_HISTOGRAM_MAX_BOUNDS;
    for (size_t i = 0; i <= SRV_HISTOGRAM_MAX_BOUNDS; i++)
        atomic_init(&h->buckets[i], 0);
    atomic_init(&h->sum, 0);
}

void srv_histogram_observe(srv_histogram *h, uint64_t value)
{
    /* A linear scan: 16 bounds at most, cheaper than anything cleverer. */
    size_t i = 0;
    while (i < h->n_bounds && value > h->bounds[i])
        i++;
    srv_counter_add(&h->buckets[i], 1);
    srv_counter_add(&h->sum, value);
}

uint64_t srv_histogram_count(srv_histogram *h)
{
    uint64_t n = 0;
    for (size_t i = 0; i <= h->n_bounds; i++)
        n += srv_counter_get(&h->buckets[i]);
    return n;
}
