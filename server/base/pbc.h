/* protobuf-c helpers shared by every handler: strict decoding into a call's
 * arena, encoding, request fingerprints and replay marking. */
#ifndef CAIRN_SERVER_WIRE_H
#define CAIRN_SERVER_WIRE_H

#include "base/arena.h"
#include "base/error.h"

#include <protobuf-c/protobuf-c.h>
#include <stdint.h>

/* Decodes data into a message allocated in the arena (or on the heap when
 * a is NULL: free it with protobuf_c_message_free_unpacked(msg, NULL)).
 * Before decoding it walks the wire format (recursively) and refuses,
 * naming the field ("events[2].type: ..."), or "request" with the byte
 * offset where no field can be named: a tag cut short or field number 0;
 * a known field sent with another wire type than its type's; a varint,
 * length or fixed-width value running past the end; a 32-bit number field
 * holding a value that does not fit (protobuf would truncate it, so a
 * negative page_size would become another number); wire types 3, 4, 6
 * and 7; and a string that is not UTF-8 or holds a NUL byte (protobuf-c
 * would silently cut it at the NUL). Unknown fields that are well formed
 * are accepted and ignored, as protobuf says. Returns SRV_OK, or
 * INVALID_ARGUMENT naming the field. */
srv_code srv_unpack(const ProtobufCMessageDescriptor *desc, srv_arena *a,
                    const uint8_t *data, size_t len, ProtobufCMessage **out,
                    srv_error *err);

/* An empty (initialized) message of type desc in the arena, or NULL when
 * out of memory. */
ProtobufCMessage *srv_new_message(srv_arena *a, const ProtobufCMessageDescriptor *desc);

/* Encodes msg into the arena. Returns SRV_OK or RESOURCE_EXHAUSTED. */
srv_code srv_pack(srv_arena *a, const ProtobufCMessage *msg, uint8_t **out,
                  size_t *len, srv_error *err);

/* Encodes msg into a malloc'd buffer (for streams, whose messages must
 * not pile up in the call's arena). Returns NULL when out of memory. */
uint8_t *srv_pack_heap(const ProtobufCMessage *msg, size_t *len);

/* SHA-256 of the canonical encoding of msg without its idempotency_key
 * field and without unknown fields, at any depth (those of nested
 * messages too). msg is restored before returning. */
srv_code srv_fingerprint(srv_arena *a, ProtobufCMessage *msg, uint8_t out[32],
                         srv_error *err);

/* Returns the value of msg's top-level string field `name`, or "" when
 * msg has no such field. */
const char *srv_msg_string(const ProtobufCMessage *msg, const char *name);

/* Writes the encoding of "replayed = true" for a response type into out
 * (at most 8 bytes) and returns its length, or 0 when the type has no
 * `replayed` field. Appended to a stored response it overrides the field,
 * since a later occurrence of a scalar field wins in protobuf. */
size_t srv_replayed_suffix(const ProtobufCMessageDescriptor *desc, uint8_t out[8]);

/* Returns 1 when s[0..n) is valid UTF-8 without NUL bytes. */
int srv_utf8_valid(const uint8_t *s, size_t n);

/* Reads a protobuf varint at *p (before end) into *v and moves *p past
 * it; -1 when it runs past end or past 10 bytes. */
int srv_read_varint(const uint8_t **p, const uint8_t *end, uint64_t *v);

#endif
