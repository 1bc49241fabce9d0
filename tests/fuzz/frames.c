#include "frames.h"

size_t fz_frames(const uint8_t *data, size_t size, fz_msg *msgs, size_t cap)
{
    size_t n = 0, at = 0;
    while (n < cap && size - at >= 2) {
        size_t len = (size_t)data[at] | (size_t)data[at + 1] << 8;
        at += 2;
        if (len > size - at)
            len = size - at;
        msgs[n++] = (fz_msg){data + at, len};
        at += len;
    }
    return n;
}
