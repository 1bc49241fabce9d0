#include "internal.h"

#include <stdlib.h>
#include <string.h>

#define DEFAULT_TARGET "127.0.0.1:7070"
#define DEFAULT_MAX_MESSAGE (4u * 1024 * 1024)

const char *cairn_version(void)
{
    return CAIRN_VERSION_STRING;
}

void cairn_client_options_init(cairn_client_options *opts)
{
    memset(opts, 0, sizeof *opts);
    opts->target = DEFAULT_TARGET;
    cairn_retry_policy_init(&opts->retry);
    opts->max_message_bytes = DEFAULT_MAX_MESSAGE;
    opts->retry_budget = (cairn_retry_budget){.enabled = false, .max_tokens = 10,
                                              .token_ratio = 0.1};
    opts->breaker = (cairn_circuit_breaker){.enabled = false, .failure_threshold = 5,
                                            .cooldown_ms = 5000};
}

static cairn_status check_reserved(const cairn_client_options *o, cairn_error *err)
{
    cairn_status rc = CAIRN__CHECK_RESERVED(o, "options", CAIRN__NO_INDEX, err);
    if (!rc)
        rc = CAIRN__CHECK_RESERVED(&o->retry, "retry", CAIRN__NO_INDEX, err);
    if (!rc)
        rc = CAIRN__CHECK_RESERVED(&o->retry_budget, "retry_budget", CAIRN__NO_INDEX, err);
    if (!rc)
        rc = CAIRN__CHECK_RESERVED(&o->breaker, "breaker", CAIRN__NO_INDEX, err);
    if (!rc && o->tls)
        rc = CAIRN__CHECK_RESERVED(o->tls, "tls", CAIRN__NO_INDEX, err);
    return rc;
}

static cairn_status check_policy(const cairn_retry_policy *p, cairn_error *err)
{
    if (p->max_attempts < 1)
        return cairn__fail(err, CAIRN_INVALID_ARGUMENT, "retry.max_attempts: must be >= 1, got %d",
                           p->max_attempts);
    if (!(p->multiplier >= 1.0))
        return cairn__fail(err, CAIRN_INVALID_ARGUMENT, "retry.multiplier: must be >= 1, got %g",
                           p->multiplier);
    if (p->jitter != CAIRN_JITTER_NONE && p->jitter != CAIRN_JITTER_FULL &&
        p->jitter != CAIRN_JITTER_EQUAL)
        return cairn__fail(err, CAIRN_INVALID_ARGUMENT, "retry.jitter: must be NONE, FULL or EQUAL");
    if (p->attempt_deadline_ms == 0 || p->call_deadline_ms == 0)
        return cairn__fail(err, CAIRN_INVALID_ARGUMENT,
                           "retry: call_deadline_ms and attempt_deadline_ms must be > 0");
    return CAIRN_OK;
}

cairn_status cairn_client_create(const cairn_client_options *opts, cairn_client **out,
                                 cairn_error *err)
{
    cairn__error_clear(err);
    cairn_client_options defaults;
    if (!opts) {
        cairn_client_options_init(&defaults);
        opts = &defaults;
    }
    const char *target = opts->target && *opts->target ? opts->target : DEFAULT_TARGET;
    cairn_status rc = check_reserved(opts, err);
    if (!rc)
        rc = check_policy(&opts->retry, err);
    if (!rc)
        rc = cairn__check_token(opts->token, target, opts->tls != NULL, err);
    if (rc)
        return rc;
    cairn__tls tls = {0};
    if (opts->tls && (rc = cairn__tls_load(opts->tls, &tls, err)))
        return rc;
    cairn_client *c = calloc(1, sizeof *c);
    if (!c) {
        cairn__tls_free(&tls);
        return cairn__fail(err, CAIRN_NO_MEMORY, "out of memory");
    }
    c->retry = opts->retry;
    c->clock = cairn__real_clock();
    c->on_retry = opts->on_retry;
    c->on_retry_user = opts->on_retry_user;
    cairn__budget_init(&c->budget, &opts->retry_budget);
    cairn__breaker_init(&c->breaker, &opts->breaker);
    rc = cairn__transport_create(target,
                                 opts->max_message_bytes ? opts->max_message_bytes
                                                         : DEFAULT_MAX_MESSAGE,
                                 opts->tls ? &tls : NULL, opts->token, &c->transport, err);
    cairn__tls_free(&tls); /* gRPC has its own copy */
    if (rc) {
        cairn__budget_destroy(&c->budget);
        cairn__breaker_destroy(&c->breaker);
        free(c);
        return rc;
    }
    *out = c;
    return CAIRN_OK;
}

void cairn_client_destroy(cairn_client *c)
{
    if (!c)
        return;
    cairn__transport_destroy(c->transport);
    cairn__budget_destroy(&c->budget);
    cairn__breaker_destroy(&c->breaker);
    free(c);
}
