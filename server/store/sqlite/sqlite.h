/* SQLite backend internals that tests reach for: the schema version and
 * the migration step, so a test can build an older database and check
 * that the store carries it forward. */
#ifndef CAIRN_SERVER_STORE_SQLITE_H
#define CAIRN_SERVER_STORE_SQLITE_H

#include "base/error.h"

#include <sqlite3.h>
#include <stddef.h>

/* The schema version this build writes (PRAGMA user_version). */
int srv_sqlite_schema_version(void);

/* Copies what the WAL holds into cairn.db now (a PASSIVE checkpoint: it
 * never waits for the writer), as the store's checkpoint thread does once
 * the WAL passes SRV_SQLITE_CHECKPOINT_FRAMES pages. The next write then
 * starts the WAL over and cuts its file to SRV_SQLITE_WAL_LIMIT bytes. */
struct srv_store;
srv_code srv_sqlite_checkpoint(struct srv_store *st, srv_error *err);
#define SRV_SQLITE_CHECKPOINT_FRAMES 8000
#define SRV_SQLITE_WAL_LIMIT 67108864 /* 64 MiB; a literal, for PRAGMA text */

/* Runs the migrations that take db from its user_version up to target,
 * each in its own transaction. Refuses a database newer than this build
 * (FAILED_PRECONDITION). */
srv_code srv_sqlite_migrate(sqlite3 *db, int target, srv_error *err);

/* `cairnd backup`: copies the data dir data_dir into dest, a directory
 * it creates (0700; ALREADY_EXISTS when it exists), while a cairnd may
 * serve data_dir: cairn.db as of one read transaction and every snapshot
 * file that transaction references, pinned while copied (backup.c says
 * why this is consistent). Everything is fsynced before it returns; dest
 * is then a data dir cairnd starts on. NOT_FOUND when data_dir holds no
 * cairn.db; ABORTED when files kept vanishing under the copy. */
srv_code srv_sqlite_backup(const char *data_dir, const char *dest, srv_error *err);

/* Told one line per problem srv_sqlite_verify finds. */
typedef void (*srv_problem_fn)(void *ctx, const char *line);

/* `cairnd verify`: PRAGMA integrity_check and foreign_key_check of
 * data_dir/cairn.db, then every checkpoint row against its snapshot file
 * (there, of the recorded size, of the recorded SHA-256). *checked counts
 * checkpoint rows, *problems the lines told. An error only when the
 * check itself could not run. */
srv_code srv_sqlite_verify(const char *data_dir, srv_problem_fn problem, void *ctx,
                           size_t *checked, size_t *problems, srv_error *err);

#endif
