#include "internal.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

const char *cairn_strerror(cairn_status status)
{
    switch (status) {
#define CAIRN_XX(name, value, text) \
    case CAIRN_##name:              \
        return text;
        CAIRN_STATUS_MAP(CAIRN_XX)
#undef CAIRN_XX
    }
    return "unknown status";
}

cairn_status cairn__status_from_grpc(int code)
{
    if (code >= CAIRN_OK && code <= CAIRN_UNAUTHENTICATED)
        return (cairn_status)code; /* same numbers by construction */
    return CAIRN_UNKNOWN;
}

cairn_class cairn_classify(cairn_status status, const cairn_error *err)
{
    if (status == CAIRN_OK)
        return CAIRN_CLASS_OK;
    if (err && err->has_retry_pushback && err->retry_pushback_ms < 0)
        return CAIRN_CLASS_PERMANENT;
    switch (status) {
    case CAIRN_UNAVAILABLE:
    case CAIRN_ABORTED:
    case CAIRN_DEADLINE_EXCEEDED:
    case CAIRN_INTERNAL:
    case CAIRN_UNKNOWN:
    case CAIRN_CANCELLED:
        return CAIRN_CLASS_TRANSIENT;
    case CAIRN_RESOURCE_EXHAUSTED:
        return err && err->has_retry_pushback ? CAIRN_CLASS_TRANSIENT : CAIRN_CLASS_PERMANENT;
    default:
        return CAIRN_CLASS_PERMANENT;
    }
}

void cairn__error_clear(cairn_error *err)
{
    if (!err)
        return;
    memset(err, 0, sizeof *err);
    err->grpc_status = -1;
    err->retry_pushback_ms = -1;
}

cairn_status cairn__fail(cairn_error *err, cairn_status status, const char *fmt, ...)
{
    if (err) {
        err->status = status;
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err->message, sizeof err->message, fmt, ap);
        va_end(ap);
    }
    return status;
}

cairn_status cairn__check_reserved(const void *reserved, size_t size, const char *field,
                                   size_t index, cairn_error *err)
{
    static const char how[] = "must be zero (start the struct from {0}, a designated "
                              "initializer or its _init function)";
    const unsigned char *p = reserved;
    for (size_t i = 0; i < size; i++) {
        if (!p[i])
            continue;
        if (!field)
            return cairn__fail(err, CAIRN_INVALID_ARGUMENT, "reserved: %s", how);
        if (index == CAIRN__NO_INDEX)
            return cairn__fail(err, CAIRN_INVALID_ARGUMENT, "%s.reserved: %s", field, how);
        return cairn__fail(err, CAIRN_INVALID_ARGUMENT, "%s[%zu].reserved: %s", field, index, how);
    }
    return CAIRN_OK;
}
