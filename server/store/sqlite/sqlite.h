/* SQLite backend internals that tests reach for: the schema version and
 * the migration step, so a test can build an older database and check
 * that the store carries it forward. */
#ifndef CAIRN_SERVER_STORE_SQLITE_H
#define CAIRN_SERVER_STORE_SQLITE_H

#include "base/error.h"

#include <sqlite3.h>

/* The schema version this build writes (PRAGMA user_version). */
int srv_sqlite_schema_version(void);

/* Copies what the WAL holds into cairn.db now (a PASSIVE checkpoint: it
 * never waits for the writer), as the store's checkpoint thread does once
 * the WAL passes SRV_SQLITE_CHECKPOINT_FRAMES pages. The next write then
 * starts the WAL over and cuts its file to SRV_SQLITE_WAL_LIMIT bytes. */
struct srv_store;
srv_code srv_sqlite_checkpoint(struct srv_store *st, srv_error *err);
#define SRV_SQLITE_CHECKPOINT_FRAMES 1000
#define SRV_SQLITE_WAL_LIMIT 67108864 /* 64 MiB; a literal, for PRAGMA text */

/* Runs the migrations that take db from its user_version up to target,
 * each in its own transaction. Refuses a database newer than this build
 * (FAILED_PRECONDITION). */
srv_code srv_sqlite_migrate(sqlite3 *db, int target, srv_error *err);

#endif
