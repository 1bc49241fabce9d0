/* An in-memory srv_call for the fuzz targets: the seam between the
 * dispatch table and gRPC. fake_call.c defines every srv_call_* function
 * of transport/rpc.h, so a target linked with cairnd_core never pulls
 * transport/rpc.c out of the archive (a function missing here shows as a
 * duplicate symbol at link time, not as a silent mix of the two).
 *
 * The fake client behind a call sends the given messages, takes every
 * streamed message at once, never stalls (idle timeouts never fire) and
 * leaves a WatchEvents stream as soon as the stream registers its close
 * callback (a watch otherwise parks until the next commit, which a fuzz
 * input would wait for forever). */
#ifndef CAIRN_FUZZ_FAKE_CALL_H
#define CAIRN_FUZZ_FAKE_CALL_H

#include "base/error.h"
#include "frames.h"
#include "service/app.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* A message the server sent, malloc'd. */
typedef struct fz_sent {
    uint8_t *data;
    size_t len;
} fz_sent;

/* How a call ended: body is the reply of a unary or client-streaming
 * call, sent the messages of a server stream. All of it malloc'd: free
 * with fz_reply_free. */
typedef struct fz_reply {
    srv_code code;
    srv_error err;            /* when code is not SRV_OK */
    uint8_t *body;
    size_t len;
    bool replayed;
    fz_sent *sent;
    size_t n_sent;
} fz_reply;

/* Runs one call of the dispatch table's row `index` and returns once the
 * call ended: msgs[0] is the request of a unary or server-streaming call;
 * a client stream gets msgs[0..n-1], then its end. n may be 0 (an empty
 * request). Any thread; the call's handlers run on the app's threads. */
void fz_call_run(srv_app *app, size_t index, const fz_msg *msgs, size_t n, fz_reply *out);

void fz_reply_free(fz_reply *r);

#endif
