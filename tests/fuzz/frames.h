/* How a fuzz input holds several messages (a client stream's): each is a
 * 16-bit little-endian length and that many bytes; a length running past
 * the end takes what is left. make_seeds.py writes the same framing. */
#ifndef CAIRN_FUZZ_FRAMES_H
#define CAIRN_FUZZ_FRAMES_H

#include <stddef.h>
#include <stdint.h>

/* One message: bytes of the input, not a copy. */
typedef struct fz_msg {
    const uint8_t *data;
    size_t len;
} fz_msg;

/* Splits data into at most cap messages that point into it; returns how
 * many. Bytes past the cap-th message are ignored. */
size_t fz_frames(const uint8_t *data, size_t size, fz_msg *msgs, size_t cap);

#endif
