#include "metrics/expo.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

__attribute__((format(printf, 2, 3))) static void put(srv_expo *e, const char *fmt, ...)
{
    for (;;) {
        if (e->failed)
            return;
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(e->buf ? e->buf + e->len : NULL, e->cap - e->len, fmt, ap);
        va_end(ap);
        if (n < 0) {
            e->failed = true;
            return;
        }
        if ((size_t)n < e->cap - e->len) {
            e->len += (size_t)n;
            return;
        }
        size_t cap = e->cap ? e->cap * 2 : 16384;
        while (cap - e->len <= (size_t)n)
            cap *= 2;
        char *grown = realloc(e->buf, cap);
        if (!grown) {
            e->failed = true;
            return;
        }
        e->buf = grown;
        e->cap = cap;
    }
}

/* Whole numbers (counts) print as integers, others with enough digits. */
static void put_value(srv_expo *e, double v)
{
    if (v == floor(v) && fabs(v) < 9007199254740992.0)
        put(e, "%.0f\n", v);
    else
        put(e, "%.15g\n", v);
}

void srv_expo_family(srv_expo *e, const char *name, const char *type, const char *help)
{
    put(e, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

void srv_expo_sample(srv_expo *e, const char *name, const char *labels, double value)
{
    if (*labels)
        put(e, "%s{%s} ", name, labels);
    else
        put(e, "%s ", name);
    put_value(e, value);
}

void srv_expo_histogram(srv_expo *e, const char *name, const char *labels,
                        srv_histogram *h, double unit)
{
    const char *sep = *labels ? "," : "";
    uint64_t cumulative = 0;
    for (size_t i = 0; i <= h->n_bounds; i++) {
        cumulative += srv_counter_get(&h->buckets[i]);
        if (i < h->n_bounds)
            put(e, "%s_bucket{%s%sle=\"%g\"} %llu\n", name, labels, sep,
                (double)h->bounds[i] * unit, (unsigned long long)cumulative);
        else
            put(e, "%s_bucket{%s%sle=\"+Inf\"} %llu\n", name, labels, sep,
                (unsigned long long)cumulative);
    }
    char sample[128];
    snprintf(sample, sizeof sample, "%s_sum", name);
    srv_expo_sample(e, sample, labels, (double)srv_counter_get(&h->sum) * unit);
    snprintf(sample, sizeof sample, "%s_count", name);
    srv_expo_sample(e, sample, labels, (double)cumulative);
}
