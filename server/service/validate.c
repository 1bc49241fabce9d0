#include "service/validate.h"
#include "service/contract.h"
#include "base/id.h"
#include "base/strset.h"

#include <string.h>

srv_code srv_check_id(const char *field, const char *s, srv_error *err)
{
    if (srv_id_valid(s))
        return SRV_OK;
    char q[SRV_QUOTE_MAX];
    return srv_fail(err, SRV_INVALID_ARGUMENT, "%s: must match " SRV_ID_PATTERN ", got %s",
                    field, srv_quote(q, s, strlen(s)));
}

srv_code srv_check_optional_id(const char *field, const char *s, srv_error *err)
{
    return *s ? srv_check_id(field, s, err) : SRV_OK;
}

srv_code srv_check_key(const char *s, srv_error *err)
{
    size_t n = strlen(s);
    if (n == 0)
        return srv_fail(err, SRV_INVALID_ARGUMENT,
                        "idempotency_key: required on every mutation (1..%d printable ASCII)",
                        SRV_KEY_MAX);
    bool ok = n <= SRV_KEY_MAX;
    for (size_t i = 0; ok && i < n; i++)
        ok = s[i] >= 0x20 && s[i] < 0x7f;
    if (ok)
        return SRV_OK;
    char q[SRV_QUOTE_MAX];
    return srv_fail(err, SRV_INVALID_ARGUMENT,
                    "idempotency_key: must be 1..%d printable ASCII characters, got %s (%zu bytes)",
                    SRV_KEY_MAX, srv_quote(q, s, n), n);
}

srv_code srv_check_length(const char *field, const char *s, size_t max, srv_error *err)
{
    size_t n = strlen(s);
    if (n >= 1 && n <= max)
        return SRV_OK;
    return srv_fail(err, SRV_INVALID_ARGUMENT, "%s: must be 1..%zu bytes, got %zu", field,
                    max, n);
}

srv_code srv_check_count(const char *field, size_t n, size_t lo, size_t hi, srv_error *err)
{
    if (n >= lo && n <= hi)
        return SRV_OK;
    return srv_fail(err, SRV_INVALID_ARGUMENT, "%s: must hold %zu..%zu items, got %zu", field,
                    lo, hi, n);
}

srv_code srv_check_page(const char *field, uint32_t v, uint32_t def, uint32_t max,
                        uint32_t *out, srv_error *err)
{
    if (v > max)
        return srv_fail(err, SRV_INVALID_ARGUMENT, "%s: must be 0..%u (0 = %u), got %u",
                        field, max, def, v);
    *out = v ? v : def;
    return SRV_OK;
}

srv_code srv_dedup_strings(srv_arena *a, char **v, size_t *n, srv_error *err)
{
    srv_strset *seen = srv_strset_create(a, *n);
    if (!seen)
        return srv_fail(err, SRV_RESOURCE_EXHAUSTED, "out of memory");
    size_t out = 0;
    for (size_t i = 0; i < *n; i++)
        if (srv_strset_add(seen, v[i]))
            v[out++] = v[i];
    *n = out;
    return SRV_OK;
}
