/* The retry loop of every logical call: capped exponential backoff with
 * deterministic jitter, retries only for transient failures, the same
 * request bytes (so the same idempotency key) on every attempt. */
#include "internal.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

void cairn_retry_policy_init(cairn_retry_policy *p)
{
    memset(p, 0, sizeof *p); /* reserved space too */
    p->max_attempts = 10;
    p->base_delay_ms = 100;
    p->multiplier = 2.0;
    p->max_delay_ms = 5000;
    p->jitter = CAIRN_JITTER_EQUAL;
    p->jitter_seed = 0;
    p->call_deadline_ms = 60000;
    p->attempt_deadline_ms = 10000;
}

static uint64_t splitmix64(uint64_t x)
{
    x += 0x9e3779b97f4a7c15ull;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

static uint64_t fnv1a(const char *s)
{
    uint64_t h = 1469598103934665603ull;
    for (; s && *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211ull;
    return h;
}

uint32_t cairn_backoff_delay_ms(const cairn_retry_policy *p, int retry, const char *key)
{
    if (retry < 0)
        retry = 0;
    double d = (double)p->base_delay_ms * pow(p->multiplier > 1.0 ? p->multiplier : 1.0, retry);
    if (!(d <= (double)p->max_delay_ms)) /* also catches inf */
        d = (double)p->max_delay_ms;

    uint64_t seed = p->jitter_seed ? p->jitter_seed : fnv1a(key);
    uint64_t r = splitmix64(seed ^ splitmix64((uint64_t)retry + 1));
    double u = (double)(r >> 11) * 0x1.0p-53; /* uniform in [0, 1) */
    switch (p->jitter) {
    case CAIRN_JITTER_FULL:
        d = u * d;
        break;
    case CAIRN_JITTER_EQUAL:
        d = d / 2 + u * (d / 2);
        break;
    case CAIRN_JITTER_NONE:
        break;
    }
    return (uint32_t)d;
}

int64_t cairn__mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int64_t real_now_ms(void *ctx)
{
    (void)ctx;
    return cairn__mono_ms();
}

static bool real_sleep_ms(void *ctx, int64_t ms, cairn__cancel *stop)
{
    (void)ctx;
    if (stop)
        return cairn__cancel_wait(stop, ms);
    if (ms <= 0)
        return false;
    struct timespec ts = {(time_t)(ms / 1000), (long)(ms % 1000) * 1000000};
    while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
        ;
    return false;
}

void cairn__cancel_init(cairn__cancel *slot)
{
    memset(slot, 0, sizeof *slot);
    pthread_mutex_init(&slot->mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC); /* as cairn__mono_ms */
    pthread_cond_init(&slot->cv, &ca);
    pthread_condattr_destroy(&ca);
}

void cairn__cancel_destroy(cairn__cancel *slot)
{
    pthread_cond_destroy(&slot->cv);
    pthread_mutex_destroy(&slot->mu);
}

bool cairn__cancel_fired(cairn__cancel *slot)
{
    pthread_mutex_lock(&slot->mu);
    bool fired = slot->cancelled;
    pthread_mutex_unlock(&slot->mu);
    return fired;
}

/* The longest single timed wait: a day keeps every absolute time far from
 * time_t's limits whatever ms is; the loop waits again for the rest. */
enum { LONGEST_WAIT_MS = 24 * 3600 * 1000 };

bool cairn__cancel_wait(cairn__cancel *slot, int64_t ms)
{
    int64_t start = cairn__mono_ms();
    pthread_mutex_lock(&slot->mu);
    for (;;) {
        int64_t waited = cairn__mono_ms() - start;
        if (slot->cancelled || waited >= ms)
            break;
        int64_t step = ms - waited < LONGEST_WAIT_MS ? ms - waited : LONGEST_WAIT_MS;
        int64_t until = cairn__mono_ms() + step;
        struct timespec ts = {(time_t)(until / 1000), (long)(until % 1000) * 1000000};
        pthread_cond_timedwait(&slot->cv, &slot->mu, &ts);
    }
    bool fired = slot->cancelled;
    pthread_mutex_unlock(&slot->mu);
    return fired;
}

cairn__clock cairn__real_clock(void)
{
    return (cairn__clock){real_now_ms, real_sleep_ms, NULL};
}

/* Digits only, with an optional '-': no whitespace, sign '+', hex or
 * suffix, which strtoll would let through. Magnitudes past int64 saturate
 * (a huge wait stays huge, a negative value stays negative). */
bool cairn__parse_pushback(const char *s, size_t n, int64_t *ms)
{
    bool negative = n > 0 && s[0] == '-';
    size_t i = negative ? 1 : 0;
    if (i == n)
        return false;
    uint64_t limit = negative ? (uint64_t)INT64_MAX + 1 : (uint64_t)INT64_MAX;
    uint64_t v = 0;
    for (; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return false;
        unsigned d = (unsigned)(s[i] - '0');
        v = v > (limit - d) / 10 ? limit : v * 10 + d;
    }
    *ms = negative ? (v > (uint64_t)INT64_MAX ? INT64_MIN : -(int64_t)v) : (int64_t)v;
    return true;
}

void cairn__record(cairn_error *err, const cairn__reply *r, int attempts)
{
    err->status = r->local ? r->local : cairn__status_from_grpc(r->grpc_status);
    err->grpc_status = r->local ? -1 : r->grpc_status;
    err->attempts = attempts;
    err->needs_attention = err->status == CAIRN_INTERNAL || err->status == CAIRN_UNKNOWN;
    err->has_retry_pushback = r->has_pushback;
    err->retry_pushback_ms = r->has_pushback ? r->pushback_ms : -1;
    /* A failure always says something, also when a server or a proxy
     * sent its status without details. */
    if (err->status && (!r->details || !r->details[0]))
        snprintf(err->message, sizeof err->message, "%s (the server sent no message)",
                 cairn_strerror(err->status));
    else
        snprintf(err->message, sizeof err->message, "%s", r->details ? r->details : "");
}

static cairn_status give_up(cairn_error *err, const char *why)
{
    size_t n = strlen(err->message);
    snprintf(err->message + n, sizeof err->message - n, " (%s)", why);
    return err->status;
}

/* The call's stop fired (a keeper being stopped): no further attempt. */
static cairn_status stopped(cairn_error *err, int attempts)
{
    cairn__fail(err, CAIRN_CANCELLED, "stopped");
    err->attempts = attempts;
    return CAIRN_CANCELLED;
}

static cairn_status give_up_pushback(cairn_error *err, int64_t left)
{
    char why[128];
    snprintf(why, sizeof why,
             "the server's retry pushback of %lld ms outlasts the %lld ms left of the call deadline",
             (long long)err->retry_pushback_ms, (long long)(left > 0 ? left : 0));
    return give_up(err, why);
}

/* Retries wait for the channel to connect (wait_for_ready), so when it
 * never does, gRPC ends them with a bare "Deadline Exceeded": why the
 * connection failed (refused, a handshake or certificate error) came
 * only with an earlier fail-fast UNAVAILABLE. reason keeps the last such
 * message, and a deadline after it is told with it. */
static void keep_connection_reason(cairn_error *err, char reason[CAIRN_ERROR_MESSAGE_MAX])
{
    if (err->status == CAIRN_UNAVAILABLE) {
        snprintf(reason, CAIRN_ERROR_MESSAGE_MAX, "%s", err->message);
    } else if (err->status == CAIRN_DEADLINE_EXCEEDED && reason[0]) {
        size_t n = strlen(err->message);
        snprintf(err->message + n, sizeof err->message - n,
                 " (an earlier attempt failed UNAVAILABLE: %s)", reason);
    }
}

cairn_status cairn__invoke(cairn_client *c, const cairn__call *call, cairn__reply *out,
                           cairn_error *errp)
{
    return cairn__invoke_with(c, &c->retry, call, out, errp);
}

cairn_status cairn__invoke_with(cairn_client *c, const cairn_retry_policy *p,
                                const cairn__call *call, cairn__reply *out, cairn_error *errp)
{
    const cairn__clock *clk = &c->clock;
    cairn_error local;
    cairn_error *err = errp ? errp : &local;
    cairn__error_clear(err);
    const int64_t deadline = clk->now_ms(clk->ctx) + p->call_deadline_ms;
    const int max_attempts = p->max_attempts > 0 ? p->max_attempts : 1;
    char unavailable[CAIRN_ERROR_MESSAGE_MAX] = "";

    for (int attempt = 1;; attempt++) {
        if (call->stop && cairn__cancel_fired(call->stop))
            return stopped(err, attempt - 1);
        bool probe;
        if (cairn__breaker_admit(&c->breaker, clk->now_ms(clk->ctx), &probe, err)) {
            err->attempts = attempt - 1;
            return err->status;
        }
        int64_t left = deadline - clk->now_ms(clk->ctx);
        if (left < 1)
            left = 1;
        /* A stream's attempt moves the whole snapshot: it may use the
         * whole call deadline. */
        uint32_t timeout = call->streaming || left < (int64_t)p->attempt_deadline_ms
                               ? (uint32_t)left
                               : p->attempt_deadline_ms;
        cairn__reply r;
        /* Retries wait for the channel to connect rather than failing at
         * once on a channel that is still reconnecting after a restart. */
        call->attempt(call->ctx, c->transport, timeout, attempt > 1, &r);
        cairn__record(err, &r, attempt);
        keep_connection_reason(err, unavailable);
        if (r.local) { /* a local failure: retrying cannot help */
            cairn__reply_free(&r);
            cairn__breaker_record(&c->breaker, false, probe, clk->now_ms(clk->ctx));
            return err->status;
        }
        bool transient = r.grpc_status != 0 &&
                         cairn_classify(err->status, err) == CAIRN_CLASS_TRANSIENT;
        cairn__budget_record(&c->budget, transient);
        cairn__breaker_record(&c->breaker, transient, probe, clk->now_ms(clk->ctx));
        if (r.grpc_status == 0) {
            *out = r;
            return CAIRN_OK;
        }
        cairn__reply_free(&r);
        if (call->stop && cairn__cancel_fired(call->stop))
            return stopped(err, attempt); /* the failure may be the cancel itself */

        if (!transient || attempt >= max_attempts)
            return err->status;
        if (!cairn__budget_allows_retry(&c->budget))
            return give_up(err, "retry budget exhausted: not retried");
        int64_t delay = err->has_retry_pushback ? err->retry_pushback_ms
                                                : cairn_backoff_delay_ms(p, attempt - 1, call->key);
        /* Compared with what is left, never as now + delay: a server's
         * pushback may be anything up to INT64_MAX. One that outlasts the
         * deadline ends the call now, with the status that came with it. */
        left = deadline - clk->now_ms(clk->ctx);
        if (delay >= left && err->has_retry_pushback)
            return give_up_pushback(err, left);
        if (delay >= left)
            return give_up(err, "the call deadline leaves no room for another attempt");
        if (c->on_retry) {
            cairn_retry_info info = {.method = call->name, .attempt = attempt,
                                     .status = err->status, .message = err->message,
                                     .delay_ms = (uint32_t)delay};
            c->on_retry(c->on_retry_user, &info);
        }
        if (clk->sleep_ms(clk->ctx, delay, call->stop))
            return stopped(err, attempt);
    }
}
