/* One fuzz target per RPC of the dispatch table: CMakeLists.txt builds
 * this file once per method, FUZZ_METHOD naming it (fuzz_AppendEvents,
 * ...). The input goes through what a gRPC call would go through:
 * decode -> validate -> handler -> ledger -> store, on the shared fixture.
 * A unary or server-streaming call takes the input as its request; a
 * client stream (CreateCheckpoint) takes it as framed messages
 * (frames.h). An answer no input may cause (fz_expect_sane) aborts. */
#include "frames.h"
#include "server_fixture.h"
#include "service/dispatch.h"

#ifndef FUZZ_METHOD
#error "FUZZ_METHOD names the RPC this target fuzzes"
#endif

/* Messages of one client stream at most. */
enum { MAX_STREAM_MESSAGES = 64 };

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    srv_app *app = fz_app();
    size_t index = fz_method(FUZZ_METHOD), n_methods;
    const srv_rpc_method *methods = srv_dispatch_methods(&n_methods);
    fz_msg msgs[MAX_STREAM_MESSAGES];
    size_t n = 1;
    if (methods[index].shape == SRV_RPC_CLIENT_STREAM)
        n = fz_frames(data, size, msgs, MAX_STREAM_MESSAGES);
    else
        msgs[0] = (fz_msg){data, size};
    fz_reply r;
    fz_call_run(app, index, msgs, n, &r);
    fz_expect_sane(FUZZ_METHOD, &r);
    fz_reply_free(&r);
    return 0;
}
