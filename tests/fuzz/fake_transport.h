/* A scripted libcairn transport for fuzz_client: fake_transport.c
 * defines every function of client/src/internal.h's transport section,
 * so libcairn's static library serves calls from a script instead of
 * gRPC (transport.o is never linked; see CMakeLists.txt).
 *
 * The script is a list of frames (frames.h), consumed in order:
 * - a unary attempt, and an upload once it has read every message, takes
 *   one frame as its reply: byte 0 is the gRPC status (mod 17), the rest
 *   the response message (status 0) or the status details;
 * - a server stream takes frames while byte 0 is 0 (or the frame is
 *   empty) as its messages, the rest of each frame being the message,
 *   then one frame with a non-zero byte 0 as its final status;
 * - once the script is used up, a unary call gets its last frame again
 *   (a server that repeats itself: a client loop must still end), or
 *   UNAVAILABLE when the script was empty; a stream ends OK. */
#ifndef CAIRN_FUZZ_FAKE_TRANSPORT_H
#define CAIRN_FUZZ_FAKE_TRANSPORT_H

#include <stddef.h>
#include <stdint.h>

/* Sets the script; data must live until the calls are done. One thread. */
void fz_transport_script(const uint8_t *data, size_t size);

#endif
