/* A response page filled under a count and a byte budget, for the reads
 * that list (ListRuns, ListCheckpoints): at least one item, then items
 * while both hold, so a page always fits one message and always moves on.
 * Reads fill it a few store rows at a time (SRV_PAGE_READ_BATCH), so a
 * call holds its page and at most one batch beyond it. */
#ifndef CAIRN_SERVER_CORE_PAGE_H
#define CAIRN_SERVER_CORE_PAGE_H

#include <protobuf-c/protobuf-c.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Store rows read at a time; one can be large (a run about 2.6 MiB
 * encoded: SRV_RUN_WIRE_MAX in service/contract.h). */
#define SRV_PAGE_READ_BATCH 4

typedef struct srv_page {
    size_t count, max_count;
    size_t bytes, max_bytes;
    bool full;                /* an item was refused: more follow */
} srv_page;

/* Counts msg into the page, or refuses it (and sets full) when the page
 * already holds max_count items or msg would pass max_bytes after the
 * first item. */
bool srv_page_admit(srv_page *p, const ProtobufCMessage *msg);

/* How many rows to read next: at most a batch, and one past the page so
 * a full page knows whether another follows. */
uint32_t srv_page_want(const srv_page *p);

#endif
