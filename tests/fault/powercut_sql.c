/* The power-cut shim's negative controls: cairnd made wrong on purpose,
 * from outside, so that the checker in test_powercut.py can be seen to
 * fail. Nothing in cairnd knows of them; they rewrite the SQL cairnd hands
 * to SQLite (sqlite3_exec, sqlite3_prepare_v2/v3 are interposed, cairnd
 * links the shared libsqlite3). Each says on stderr (cairnd's log) when it
 * rewrote something, so a test can tell a control that took effect from
 * one whose SQL no longer matches.
 *
 *   CAIRN_POWERCUT_SYNC_OFF=1   every "PRAGMA synchronous = FULL" cairnd
 *       runs becomes "PRAGMA synchronous = OFF": a real synchronous=OFF,
 *       so SQLite syncs nothing and commits are acknowledged unsynced;
 *   CAIRN_POWERCUT_NO_DEDUP=1   the idempotency lookup (a SELECT from
 *       dedup) finds nothing, and the record insert replaces the earlier
 *       record instead of failing on its key: a retried request is applied
 *       again, as by a server without deduplication. */
#include <sqlite3.h>

#include <dlfcn.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char SYNC_FULL[] = "synchronous = FULL";
static const char SYNC_OFF[] = "synchronous = OFF";
static const char DEDUP_PUT[] = "INSERT INTO dedup ";
static const char DEDUP_PUT_ANEW[] = "INSERT OR REPLACE INTO dedup ";

static atomic_int g_said_sync, g_said_get, g_said_put;

static int env_on(const char *name)
{
    const char *v = getenv(name);
    return v && strcmp(v, "1") == 0;
}

static void say_once(atomic_int *said, const char *line)
{
    int no = 0;
    if (atomic_compare_exchange_strong(said, &no, 1) && write(2, line, strlen(line)) < 0) {
        /* the test will miss the line and say so */
    }
}

/* sql with every "synchronous = FULL" made OFF, in a new string; NULL
 * when there is none (or no memory). */
static char *sync_off(const char *sql)
{
    if (!env_on("CAIRN_POWERCUT_SYNC_OFF") || !sql || !strstr(sql, SYNC_FULL))
        return NULL;
    char *out = malloc(strlen(sql) + 1);
    if (!out)
        return NULL;
    char *o = out;
    for (const char *p = sql, *hit; *p; p = hit + sizeof SYNC_FULL - 1) {
        if (!(hit = strstr(p, SYNC_FULL))) {
            strcpy(o, p);
            o += strlen(p);
            break;
        }
        memcpy(o, p, (size_t)(hit - p));
        o += hit - p;
        memcpy(o, SYNC_OFF, sizeof SYNC_OFF - 1);
        o += sizeof SYNC_OFF - 1;
    }
    *o = '\0';
    say_once(&g_said_sync, "powercut: control: PRAGMA synchronous = FULL rewritten to OFF\n");
    return out;
}

/* A dedup statement rewritten, in a new string; NULL for any other. */
static char *no_dedup(const char *sql, int n)
{
    if (!env_on("CAIRN_POWERCUT_NO_DEDUP") || !sql || n >= 0)
        return NULL;
    char *out = NULL;
    if (strncmp(sql, "SELECT ", 7) == 0 && strstr(sql, " FROM dedup ")) {
        /* No rows, the same columns and parameters. */
        if ((out = malloc(strlen(sql) + 40)))
            sprintf(out, "SELECT * FROM (%s) WHERE 0", sql);
        say_once(&g_said_get, "powercut: control: idempotency lookups find nothing\n");
    } else if (strncmp(sql, DEDUP_PUT, sizeof DEDUP_PUT - 1) == 0) {
        if ((out = malloc(strlen(sql) + 16)))
            sprintf(out, "%s%s", DEDUP_PUT_ANEW, sql + sizeof DEDUP_PUT - 1);
        say_once(&g_said_put, "powercut: control: idempotency records replace earlier ones\n");
    }
    return out;
}

int sqlite3_exec(sqlite3 *db, const char *sql, int (*cb)(void *, int, char **, char **),
                 void *arg, char **errmsg)
{
    static __typeof__(&sqlite3_exec) real;
    if (!real)
        real = (__typeof__(&sqlite3_exec))dlsym(RTLD_NEXT, "sqlite3_exec");
    char *mine = sync_off(sql);
    int rc = real(db, mine ? mine : sql, cb, arg, errmsg);
    free(mine);
    return rc;
}

/* Only statements prepared whole (no tail wanted) are rewritten: a tail
 * would point into the rewritten copy. SQLite keeps its own copy of the
 * text, so the rewritten one is freed at once. */
int sqlite3_prepare_v2(sqlite3 *db, const char *sql, int n, sqlite3_stmt **out,
                       const char **tail)
{
    static __typeof__(&sqlite3_prepare_v2) real;
    if (!real)
        real = (__typeof__(&sqlite3_prepare_v2))dlsym(RTLD_NEXT, "sqlite3_prepare_v2");
    char *mine = tail ? NULL : no_dedup(sql, n);
    int rc = real(db, mine ? mine : sql, mine ? -1 : n, out, tail);
    free(mine);
    return rc;
}

int sqlite3_prepare_v3(sqlite3 *db, const char *sql, int n, unsigned flags, sqlite3_stmt **out,
                       const char **tail)
{
    static __typeof__(&sqlite3_prepare_v3) real;
    if (!real)
        real = (__typeof__(&sqlite3_prepare_v3))dlsym(RTLD_NEXT, "sqlite3_prepare_v3");
    char *mine = tail ? NULL : no_dedup(sql, n);
    int rc = real(db, mine ? mine : sql, mine ? -1 : n, flags, out, tail);
    free(mine);
    return rc;
}
