/* SQLite backend internals that tests reach for: the schema version and
 * the migration step, so a test can build an older database and check
 * that the store carries it forward. */
#ifndef CAIRN_SERVER_STORE_SQLITE_H
#define CAIRN_SERVER_STORE_SQLITE_H

#include "base/error.h"

#include <sqlite3.h>

/* The schema version this build writes (PRAGMA user_version). */
int srv_sqlite_schema_version(void);

/* Runs the migrations that take db from its user_version up to target,
 * each in its own transaction. Refuses a database newer than this build
 * (FAILED_PRECONDITION). */
srv_code srv_sqlite_migrate(sqlite3 *db, int target, srv_error *err);

#endif
