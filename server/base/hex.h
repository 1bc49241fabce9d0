/* Hex encoding for digests and random ids. */
#ifndef CAIRN_SERVER_HEX_H
#define CAIRN_SERVER_HEX_H

#include <stddef.h>

/* Writes n bytes as 2n lowercase hex digits and a NUL. */
void srv_hex(char *out, const unsigned char *bytes, size_t n);

/* Writes n random bytes (the OS's CSPRNG) as 2n hex digits and a NUL. */
void srv_random_hex(char *out, size_t n);

#endif
