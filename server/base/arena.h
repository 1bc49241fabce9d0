/* A bump allocator for everything one call needs: the decoded request, the
 * store's answers and the encoded response are freed together when the call
 * ends. Not thread-safe: one arena belongs to one call at a time. */
#ifndef CAIRN_SERVER_ARENA_H
#define CAIRN_SERVER_ARENA_H

#include <protobuf-c/protobuf-c.h>
#include <stddef.h>

typedef struct srv_arena srv_arena;

/* Returns a new empty arena, or NULL when out of memory. */
srv_arena *srv_arena_create(void);
/* Frees the arena and everything allocated from it. NULL is a no-op. */
void srv_arena_destroy(srv_arena *a);

/* Returns n bytes aligned for any type, or NULL when out of memory. The
 * memory lives until srv_arena_destroy. */
void *srv_arena_alloc(srv_arena *a, size_t n);
/* Returns a NUL-terminated copy of s[0..n), or NULL when out of memory. */
char *srv_arena_strndup(srv_arena *a, const char *s, size_t n);
char *srv_arena_strdup(srv_arena *a, const char *s);
/* Returns a copy of n bytes, or NULL when out of memory. */
void *srv_arena_memdup(srv_arena *a, const void *p, size_t n);

/* Makes room for one more element in an arena array v holding n elements
 * of size bytes with capacity *cap: returns v when it has room, else a
 * copy with twice the capacity (the old one stays in the arena until the
 * arena goes), or NULL when out of memory. Start with v NULL, *cap 0. */
void *srv_arena_grow(srv_arena *a, void *v, size_t n, size_t *cap, size_t size);

/* A protobuf-c allocator drawing from the arena (free is a no-op), for
 * protobuf_c_message_unpack. */
ProtobufCAllocator srv_arena_allocator(srv_arena *a);

#endif
