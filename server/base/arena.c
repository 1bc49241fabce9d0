#include "base/arena.h"

#include <stdalign.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* Blocks grow geometrically up to BLOCK_MAX; an allocation larger than half
 * a block gets a block of its own, so big payloads waste nothing. */
enum { BLOCK_MIN = 4096, BLOCK_MAX = 256 * 1024 };

typedef struct block {
    struct block *next;
    size_t size;
    size_t used;
    alignas(max_align_t) unsigned char data[];
} block;

struct srv_arena {
    block *head;
    size_t next_size;
};

srv_arena *srv_arena_create(void)
{
    srv_arena *a = calloc(1, sizeof *a);
    if (a)
        a->next_size = BLOCK_MIN;
    return a;
}

void srv_arena_destroy(srv_arena *a)
{
    if (!a)
        return;
    for (block *b = a->head, *next; b; b = next) {
        next = b->next;
        free(b);
    }
    free(a);
}

static block *new_block(size_t size)
{
    block *b = malloc(sizeof *b + size);
    if (b) {
        b->size = size;
        b->used = 0;
    }
    return b;
}

void *srv_arena_alloc(srv_arena *a, size_t n)
{
    const size_t align = alignof(max_align_t);
    size_t need = (n + align - 1) & ~(align - 1);
    if (need < n)
        return NULL;
    if (need == 0)
        need = align;

    block *b = a->head;
    if (b && b->size - b->used >= need) {
        void *p = b->data + b->used;
        b->used += need;
        return p;
    }
    if (need > a->next_size / 2) {
        /* Big: its own block, linked behind the current one so the
         * current block keeps serving small allocations. */
        block *big = new_block(need);
        if (!big)
            return NULL;
        big->used = need;
        if (b) {
            big->next = b->next;
            b->next = big;
        } else {
            big->next = NULL;
            a->head = big;
        }
        return big->data;
    }
    block *fresh = new_block(a->next_size);
    if (!fresh)
        return NULL;
    if (a->next_size < BLOCK_MAX)
        a->next_size *= 2;
    fresh->next = a->head;
    a->head = fresh;
    fresh->used = need;
    return fresh->data;
}

char *srv_arena_strndup(srv_arena *a, const char *s, size_t n)
{
    char *p = srv_arena_alloc(a, n + 1);
    if (p) {
        if (n)
            memcpy(p, s, n);
        p[n] = '\0';
    }
    return p;
}

char *srv_arena_strdup(srv_arena *a, const char *s)
{
    return srv_arena_strndup(a, s, strlen(s));
}

void *srv_arena_memdup(srv_arena *a, const void *p, size_t n)
{
    void *q = srv_arena_alloc(a, n);
    if (q && n)
        memcpy(q, p, n);
    return q;
}

void *srv_arena_grow(srv_arena *a, void *v, size_t n, size_t *cap, size_t size)
{
    if (n < *cap)
        return v;
    size_t ncap = *cap ? *cap * 2 : 8;
    void *nv = srv_arena_alloc(a, ncap * size);
    if (!nv)
        return NULL;
    if (n)
        memcpy(nv, v, n * size);
    *cap = ncap;
    return nv;
}

static void *pbc_alloc(void *data, size_t size)
{
    return srv_arena_alloc(data, size);
}

static void pbc_free(void *data, void *p)
{
    (void)data;
    (void)p;
}

ProtobufCAllocator srv_arena_allocator(srv_arena *a)
{
    ProtobufCAllocator alloc = {pbc_alloc, pbc_free, a};
    return alloc;
}
