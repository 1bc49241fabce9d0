/* The Prometheus text exposition format (version 0.0.4), written into a
 * growing buffer: a family's HELP and TYPE lines, then its samples. Label
 * text is passed preformatted ('method="GetRun",code="OK"'); values are
 * the caller's own constants, which need no escaping. One writer per
 * scrape, one thread. */
#ifndef CAIRN_SERVER_METRICS_EXPO_H
#define CAIRN_SERVER_METRICS_EXPO_H

#include "metrics/metrics.h"

#include <stdbool.h>
#include <stddef.h>

typedef struct srv_expo {
    char *buf;                    /* malloc'ed, NUL-terminated; the caller frees */
    size_t len;
    size_t cap;
    bool failed;                  /* out of memory: the text is incomplete */
} srv_expo;

/* The content type of the text. */
#define SRV_EXPO_CONTENT_TYPE "text/plain; version=0.0.4; charset=utf-8"

/* "# HELP name help" and "# TYPE name type" (counter, gauge, histogram). */
void srv_expo_family(srv_expo *e, const char *name, const char *type, const char *help);

/* "name{labels} value"; labels may be "" (no braces then). */
void srv_expo_sample(srv_expo *e, const char *name, const char *labels, double value);

/* A histogram's _bucket lines (cumulative, le in units of unit: 1e-6 turns
 * microseconds into seconds), _sum and _count. */
void srv_expo_histogram(srv_expo *e, const char *name, const char *labels,
                        srv_histogram *h, double unit);

#endif
