/* Transfer progress on stderr. On a terminal a bar redrawn in place (a
 * carriage return, no newline until the end); elsewhere, a log or a
 * pipe, a line at the start and one at the end, so that a log holds no
 * carriage returns and no hundred lines per snapshot. */
#include "cli.h"

#include <stdio.h>
#include <time.h>
#include <unistd.h>

#define REDRAW_MS 100             /* at most ten redraws a second */
#define BAR_WIDTH 24

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* "12.3 MiB" into buf. */
static const char *human_bytes(char *buf, size_t size, double bytes)
{
    static const char *const units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
    size_t u = 0;
    while (bytes >= 1024 && u + 1 < sizeof units / sizeof units[0]) {
        bytes /= 1024;
        u++;
    }
    snprintf(buf, size, u ? "%.1f %s" : "%.0f %s", bytes, units[u]);
    return buf;
}

void progress_init(progress *p, const char *what, bool enabled)
{
    *p = (progress){.what = what, .enabled = enabled, .tty = isatty(STDERR_FILENO) == 1,
                    .start_ms = now_ms()};
}

static void draw(progress *p, int64_t now)
{
    char done[32], total[32], rate[32];
    double secs = (double)(now - p->start_ms) / 1000.0;
    double bps = secs > 0 ? (double)p->done / secs : 0;
    int pct = p->total ? (int)(p->done * 100 / p->total) : 100;
    int filled = pct * BAR_WIDTH / 100;
    char eta[32] = "--";
    if (bps > 0 && p->total >= p->done)
        snprintf(eta, sizeof eta, "%.0fs", (double)(p->total - p->done) / bps);
    fprintf(stderr, "\r%s [%.*s%*s] %s / %s %3d%% %s/s ETA %s\033[K", p->what, filled,
            "########################", BAR_WIDTH - filled, "",
            human_bytes(done, sizeof done, (double)p->done),
            human_bytes(total, sizeof total, (double)p->total), pct,
            human_bytes(rate, sizeof rate, bps), eta);
    p->drawn_ms = now;
}

void progress_update(void *user, uint64_t done, uint64_t total)
{
    progress *p = user;
    if (!p->enabled)
        return;
    p->done = done;
    p->total = total;
    int64_t now = now_ms();
    if (!p->started) {
        char size[32];
        p->started = true;
        if (!p->tty)
            fprintf(stderr, "%s: %s (%llu bytes) started\n", p->what,
                    human_bytes(size, sizeof size, (double)total), (unsigned long long)total);
    }
    if (p->tty && (now - p->drawn_ms >= REDRAW_MS || done == total))
        draw(p, now);
}

void progress_finish(progress *p, bool ok)
{
    if (!p->enabled || !p->started)
        return;
    int64_t now = now_ms();
    if (p->tty) {
        draw(p, now);
        fputc('\n', stderr);
        return;
    }
    char size[32], rate[32];
    double secs = (double)(now - p->start_ms) / 1000.0;
    fprintf(stderr, "%s %s: %s in %.1fs (%s/s)\n", p->what, ok ? "done" : "failed",
            human_bytes(size, sizeof size, (double)p->done), secs,
            human_bytes(rate, sizeof rate, secs > 0 ? (double)p->done / secs : 0));
}
