/* Completed-run retention and the dedup window: the sweep (a mutation on
 * the ledger's writer thread) and the timer thread that submits it. */
#include "core/lifecycle.h"
#include "core/domain.h"
#include "base/log.h"

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <time.h>

enum { US_PER_S = 1000000 };

srv_code srv_sweep_apply(srv_apply *ap, const ProtobufCMessage *req, ProtobufCMessage *resp,
                         srv_error *err)
{
    (void)req;
    (void)resp;
    srv_sweep *sw = ap->ctx;
    sw->runs_deleted = sw->keys_forgotten = 0;
    if (sw->retention_s) {
        char **ids = NULL;
        size_t n = 0;
        if (srv_store_runs_completed_before(ap->txn, ap->arena,
                                            ap->now_us - sw->retention_s * US_PER_S,
                                            SRV_SWEEP_BATCH, &ids, &n, err))
            return err->code;
        for (size_t i = 0; i < n; i++) {
            bool existed = false;
            if (srv_run_delete(ap, ids[i], &existed, err))
                return err->code;
            sw->runs_deleted += existed;
        }
    }
    if (sw->window_s &&
        srv_store_dedup_expire(ap->txn, ap->now_us - sw->window_s * US_PER_S, SRV_SWEEP_BATCH,
                               &sw->keys_forgotten, err))
        return err->code;
    return SRV_OK;
}

struct srv_lifecycle {
    srv_ledger *ledger;
    srv_sweep sweep;
    int64_t period_s;
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cv;            /* CLOCK_MONOTONIC */
    bool quit;
    bool in_flight;               /* a sweep submitted, its done not yet called */
    srv_code last_code;
};

static void sweep_done(void *ctx, srv_code code, const srv_error *err, const uint8_t *resp,
                       size_t len, bool replayed)
{
    (void)resp;
    (void)len;
    (void)replayed;
    srv_lifecycle *lc = ctx;
    if (code)
        srv_warn("lifecycle: a sweep failed (the next one tries again): %s", err->msg);
    else if (lc->sweep.runs_deleted || lc->sweep.keys_forgotten)
        srv_info("lifecycle: deleted %zu completed runs, forgot %zu idempotency keys",
                 lc->sweep.runs_deleted, lc->sweep.keys_forgotten);
    pthread_mutex_lock(&lc->mu);
    lc->in_flight = false;
    lc->last_code = code;
    pthread_cond_signal(&lc->cv);
    pthread_mutex_unlock(&lc->mu);
}

/* lc->mu held: submits one sweep and waits for its end. True when it
 * filled a batch, so more may be due right away. */
static bool sweep_once(srv_lifecycle *lc)
{
    srv_arena *a = srv_arena_create();
    if (!a) {
        srv_warn("lifecycle: out of memory; the next sweep tries again");
        return false;
    }
    srv_mutation m = {.method = "Sweep", .apply = srv_sweep_apply, .apply_ctx = &lc->sweep,
                      .arena = a, .done = sweep_done, .ctx = lc};
    srv_error err;
    lc->in_flight = true;
    pthread_mutex_unlock(&lc->mu);
    srv_code rc = srv_ledger_submit(lc->ledger, &m, &err);
    pthread_mutex_lock(&lc->mu);
    if (rc) {
        lc->in_flight = false;
        srv_debug("lifecycle: sweep not taken: %s", err.msg);
    }
    while (lc->in_flight)
        pthread_cond_wait(&lc->cv, &lc->mu);
    srv_arena_destroy(a);
    return !rc && !lc->last_code &&
           (lc->sweep.runs_deleted >= SRV_SWEEP_BATCH || lc->sweep.keys_forgotten >= SRV_SWEEP_BATCH);
}

static void *lifecycle_main(void *arg)
{
    srv_lifecycle *lc = arg;
    pthread_mutex_lock(&lc->mu);
    while (!lc->quit) {
        if (sweep_once(lc))
            continue;
        struct timespec until;
        clock_gettime(CLOCK_MONOTONIC, &until);
        until.tv_sec += lc->period_s;
        while (!lc->quit && pthread_cond_timedwait(&lc->cv, &lc->mu, &until) != ETIMEDOUT)
            ;
    }
    pthread_mutex_unlock(&lc->mu);
    return NULL;
}

static int64_t sweep_period(int64_t retention_s, int64_t window_s)
{
    int64_t p = SRV_SWEEP_PERIOD_MAX_S;
    if (retention_s && retention_s < p)
        p = retention_s;
    if (window_s && window_s < p)
        p = window_s;
    return p < 1 ? 1 : p;
}

srv_code srv_lifecycle_start(srv_ledger *l, int64_t retention_s, int64_t window_s,
                             srv_lifecycle **out, srv_error *err)
{
    *out = NULL;
    if (!retention_s && !window_s)
        return SRV_OK;
    srv_lifecycle *lc = calloc(1, sizeof *lc);
    if (!lc)
        return srv_fail(err, SRV_RESOURCE_EXHAUSTED, "out of memory");
    lc->ledger = l;
    lc->sweep = (srv_sweep){.retention_s = retention_s, .window_s = window_s};
    lc->period_s = sweep_period(retention_s, window_s);
    pthread_mutex_init(&lc->mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&lc->cv, &ca);
    pthread_condattr_destroy(&ca);
    if (pthread_create(&lc->thread, NULL, lifecycle_main, lc) != 0) {
        pthread_cond_destroy(&lc->cv);
        pthread_mutex_destroy(&lc->mu);
        free(lc);
        return srv_fail(err, SRV_RESOURCE_EXHAUSTED, "cannot start the lifecycle thread");
    }
    *out = lc;
    return SRV_OK;
}

void srv_lifecycle_stop(srv_lifecycle *lc)
{
    if (!lc)
        return;
    pthread_mutex_lock(&lc->mu);
    lc->quit = true;
    pthread_cond_broadcast(&lc->cv);
    pthread_mutex_unlock(&lc->mu);
    pthread_join(lc->thread, NULL);
    pthread_cond_destroy(&lc->cv);
    pthread_mutex_destroy(&lc->mu);
    free(lc);
}
