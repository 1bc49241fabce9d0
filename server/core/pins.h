/* Checkpoints being streamed out by LoadCheckpoint. Retention and
 * CleanupCheckpoints skip a pinned checkpoint, so it is never deleted
 * under a reader; a later cleanup takes it once the reader is done.
 * In memory, per process. Thread-safe. */
#ifndef CAIRN_SERVER_PINS_H
#define CAIRN_SERVER_PINS_H

#include <stdbool.h>

typedef struct srv_pins srv_pins;

/* Returns an empty registry, or NULL when out of memory. */
srv_pins *srv_pins_create(void);
/* NULL is a no-op. */
void srv_pins_destroy(srv_pins *p);

/* Pins (run_id, checkpoint_id) once more; returns false when out of memory. */
bool srv_pins_add(srv_pins *p, const char *run_id, const char *checkpoint_id);
/* Drops one pin taken by srv_pins_add. */
void srv_pins_remove(srv_pins *p, const char *run_id, const char *checkpoint_id);
/* True while at least one pin is held. */
bool srv_pins_has(srv_pins *p, const char *run_id, const char *checkpoint_id);

#endif
