/* The per-client protections of the retry loop: the retry budget (A6
 * throttling) and the circuit breaker. Both are shared by every thread
 * using the client, so each has its own lock. */
#include "internal.h"

void cairn__budget_init(cairn__budget *b, const cairn_retry_budget *cfg)
{
    b->on = cfg->enabled;
    b->max_tokens = cfg->max_tokens > 0 ? cfg->max_tokens : 10;
    b->ratio = cfg->token_ratio > 0 ? cfg->token_ratio : 0.1;
    b->tokens = b->max_tokens;
    pthread_mutex_init(&b->mu, NULL);
}

void cairn__budget_destroy(cairn__budget *b)
{
    pthread_mutex_destroy(&b->mu);
}

void cairn__budget_record(cairn__budget *b, bool transient_failure)
{
    if (!b->on)
        return;
    pthread_mutex_lock(&b->mu);
    if (transient_failure)
        b->tokens = b->tokens > 1 ? b->tokens - 1 : 0;
    else
        b->tokens = b->tokens + b->ratio < b->max_tokens ? b->tokens + b->ratio : b->max_tokens;
    pthread_mutex_unlock(&b->mu);
}

bool cairn__budget_allows_retry(cairn__budget *b)
{
    if (!b->on)
        return true;
    pthread_mutex_lock(&b->mu);
    bool ok = b->tokens > b->max_tokens / 2;
    pthread_mutex_unlock(&b->mu);
    return ok;
}

void cairn__breaker_init(cairn__breaker *br, const cairn_circuit_breaker *cfg)
{
    br->on = cfg->enabled;
    br->threshold = cfg->failure_threshold > 0 ? cfg->failure_threshold : 5;
    br->cooldown_ms = cfg->cooldown_ms;
    br->state = CAIRN__CLOSED;
    br->failures = 0;
    br->opened_at = 0;
    pthread_mutex_init(&br->mu, NULL);
}

void cairn__breaker_destroy(cairn__breaker *br)
{
    pthread_mutex_destroy(&br->mu);
}

cairn_status cairn__breaker_admit(cairn__breaker *br, int64_t now, bool *probe, cairn_error *err)
{
    *probe = false;
    if (!br->on)
        return CAIRN_OK;
    pthread_mutex_lock(&br->mu);
    cairn_status rc = CAIRN_OK;
    if (br->state == CAIRN__OPEN && now - br->opened_at >= br->cooldown_ms) {
        br->state = CAIRN__HALF_OPEN; /* this call is the probe */
        *probe = true;
    } else if (br->state != CAIRN__CLOSED) {
        if (br->state == CAIRN__OPEN)
            rc = cairn__fail(err, CAIRN_CIRCUIT_OPEN,
                             "circuit breaker open after %d transient failures in a row; the next "
                             "probe goes in %lld ms",
                             br->failures, (long long)(br->cooldown_ms - (now - br->opened_at)));
        else
            rc = cairn__fail(err, CAIRN_CIRCUIT_OPEN,
                             "circuit breaker half-open: a probe call is in flight");
    }
    pthread_mutex_unlock(&br->mu);
    return rc;
}

void cairn__breaker_record(cairn__breaker *br, bool transient_failure, bool probe, int64_t now)
{
    if (!br->on)
        return;
    pthread_mutex_lock(&br->mu);
    if (!transient_failure) {
        br->failures = 0;
        br->state = CAIRN__CLOSED;
    } else {
        br->failures++;
        if (probe || br->failures >= br->threshold) {
            br->state = CAIRN__OPEN;
            br->opened_at = now;
        }
    }
    pthread_mutex_unlock(&br->mu);
}
