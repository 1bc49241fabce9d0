#include "internal.h"
#include "grpc/health/v1/health.pb.h"

#include <string.h>

cairn_status cairn_health_check(cairn_client *c, const char *service, cairn_serving *out,
                                cairn_error *err)
{
    *out = CAIRN_SERVING_UNKNOWN;
    cairn__error_clear(err);
    grpc_health_v1_HealthCheckRequest m = grpc_health_v1_HealthCheckRequest_init_zero;
    cairn_status rc = cairn__copy_str(m.service, sizeof m.service, service, "service", err);
    if (rc)
        return rc;
    grpc_health_v1_HealthCheckResponse resp = grpc_health_v1_HealthCheckResponse_init_zero;
    rc = cairn__unary(c, CAIRN__HEALTH_CHECK, grpc_health_v1_HealthCheckRequest_fields, &m, NULL,
                      grpc_health_v1_HealthCheckResponse_fields, &resp, err);
    if (rc)
        return rc;
    *out = resp.status == grpc_health_v1_HealthCheckResponse_ServingStatus_SERVING ? CAIRN_SERVING
           : resp.status == grpc_health_v1_HealthCheckResponse_ServingStatus_NOT_SERVING
               ? CAIRN_NOT_SERVING
               : CAIRN_SERVING_UNKNOWN;
    return CAIRN_OK;
}
