/* grpc.health.v1.Health/Check: SERVING for the whole server ("") and for
 * cairn.v1.Coordinator until shutdown begins. */
#include "service/handlers/handlers.h"
#include "grpc/health/v1/health.pb-c.h"

#include <string.h>

srv_code srv_read_health_check(srv_app *app, srv_arena *a, const ProtobufCMessage *msg,
                               ProtobufCMessage *resp, srv_error *err)
{
    (void)a;
    const Grpc__Health__V1__HealthCheckRequest *req =
        (const Grpc__Health__V1__HealthCheckRequest *)msg;
    if (req->service[0] && strcmp(req->service, "cairn.v1.Coordinator") != 0)
        return srv_fail(err, SRV_NOT_FOUND, "service: unknown service \"%.64s\"", req->service);
    Grpc__Health__V1__HealthCheckResponse *out = (Grpc__Health__V1__HealthCheckResponse *)resp;
    out->status = atomic_load(&app->serving)
                      ? GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVING
                      : GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__NOT_SERVING;
    return SRV_OK;
}
