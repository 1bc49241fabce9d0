#include "base/clock.h"
#include "base/arena.h"

#include <stdio.h>
#include <string.h>
#include <time.h>

int64_t srv_now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

int64_t srv_monotonic_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t srv_mono_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* Writes v as n decimal digits, zero-padded, at out. */
static char *put_digits(char *out, long v, int n)
{
    for (int i = n - 1; i >= 0; i--, v /= 10)
        out[i] = (char)('0' + v % 10);
    return out + n;
}

/* Years 1000-9999, where %Y is four digits: the date from days since the
 * epoch by the proleptic Gregorian calendar's 400-year eras, without
 * gmtime_r and strftime, which cost about 2,000 instructions a call and
 * were a third of a ReadEvents page's server time. */
#define FAST_MIN_S (-30610224000LL) /* 1000-01-01T00:00:00Z */
#define FAST_MAX_S 253402300799LL   /* 9999-12-31T23:59:59Z */

/* Writes "YYYY-MM-DDTHH:MM:SS" (19 characters) for secs. */
static void format_date_time(char *out, int64_t secs)
{
    int64_t days = (secs >= 0 ? secs : secs - 86399) / 86400;
    long sod = (long)(secs - days * 86400);
    int64_t z = days + 719468; /* days since 0000-03-01 */
    int64_t era = (z >= 0 ? z : z - 146096) / 146097;
    long doe = (long)(z - era * 146097);                               /* [0, 146096] */
    long yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365; /* [0, 399] */
    long doy = doe - (365 * yoe + yoe / 4 - yoe / 100);                /* [0, 365] */
    long mp = (5 * doy + 2) / 153;                                     /* March = 0 */
    long day = doy - (153 * mp + 2) / 5 + 1;
    long month = mp < 10 ? mp + 3 : mp - 9;
    long year = (long)(yoe + era * 400) + (month <= 2);
    char *p = put_digits(out, year, 4);
    *p++ = '-';
    p = put_digits(p, month, 2);
    *p++ = '-';
    p = put_digits(p, day, 2);
    *p++ = 'T';
    p = put_digits(p, sod / 3600, 2);
    *p++ = ':';
    p = put_digits(p, sod / 60 % 60, 2);
    *p++ = ':';
    put_digits(p, sod % 60, 2);
}

/* Events read in a page mostly share their second: each thread keeps the
 * last one it formatted. */
static _Thread_local int64_t last_secs = INT64_MIN;
static _Thread_local char last_text[20];

static void format_fast(char out[32], int64_t secs, long frac)
{
    if (secs != last_secs) {
        format_date_time(last_text, secs);
        last_secs = secs;
    }
    memcpy(out, last_text, 19);
    out[19] = '.';
    put_digits(out + 20, frac, 6);
    out[26] = 'Z';
    out[27] = '\0';
}

char *srv_format_time(char out[32], int64_t us)
{
    time_t secs = (time_t)(us / 1000000);
    long frac = (long)(us % 1000000);
    if (frac < 0) {
        frac += 1000000;
        secs -= 1;
    }
    if (secs >= FAST_MIN_S && secs <= FAST_MAX_S) {
        format_fast(out, secs, frac);
        return out;
    }
    struct tm tm;
    gmtime_r(&secs, &tm);
    size_t n = strftime(out, 32, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(out + n, 32 - n, ".%06ldZ", frac);
    return out;
}

char *srv_time_text(srv_arena *a, int64_t us)
{
    char buf[32];
    return srv_arena_strdup(a, srv_format_time(buf, us));
}
