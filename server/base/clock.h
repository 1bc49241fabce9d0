/* Wall-clock time as cairn stores and shows it. */
#ifndef CAIRN_SERVER_CLOCK_H
#define CAIRN_SERVER_CLOCK_H

#include <stdint.h>

/* Microseconds since the Unix epoch (CLOCK_REALTIME). */
int64_t srv_now_us(void);

/* Milliseconds of CLOCK_MONOTONIC, for timeouts. */
int64_t srv_monotonic_ms(void);

/* Microseconds of CLOCK_MONOTONIC, for timing. */
int64_t srv_mono_us(void);

/* Formats us as ISO 8601 UTC with microseconds, "2026-01-28T10:15:30.123456Z"
 * (27 characters). out must hold 32 bytes. Returns out. */
char *srv_format_time(char out[32], int64_t us);

/* The same, copied into the arena (NULL when out of memory). */
struct srv_arena;
char *srv_time_text(struct srv_arena *a, int64_t us);

#endif
