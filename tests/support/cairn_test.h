/* Test support: real cairnd processes on 127.0.0.1 with ephemeral ports
 * and temporary data dirs, stopped by PID. The temp dir helpers are in
 * dirs.h, included here.
 *
 * The store: CAIRN_TEST_STORE names it, "sqlite" (unset) or "postgres".
 * With postgres, the first ct_server_init of the process starts a private
 * PostgreSQL cluster (pg.h; or uses the superuser DSN in
 * CAIRN_TEST_PG_DSN), stopped at exit, and every ct_server gets a database
 * of its own, made at init and kept for its life: its "data dir", which a
 * restart of the same ct_server finds again. cairnd then runs with
 * --store postgres and CAIRN_PG_DSN in its environment. When PostgreSQL
 * cannot run here, ct_server_init prints why and exits 77 (ctest:
 * skipped).
 *
 * Checkers: CAIRN_TEST_WRAP holds a command (words split at spaces, the
 * first looked up in PATH) that every cairnd these helpers start runs
 * under, e.g. "valgrind --error-exitcode=99 --log-file=DIR/%p.log" (make
 * valgrind). The wrapper must keep its own output off cairnd's stdout and
 * stderr (tests read both) and exit CT_WRAP_ERROR_EXIT when it found
 * errors: ct_server_stop and ct_server_wait then return that status, and
 * the test process exits 1 at its end even where the test ignored it. A
 * cairnd stopped with SIGKILL is not checked (valgrind gets no chance to).
 * CAIRN_TEST_TIME_SCALE (an integer, default 1) is what a wrapper slows
 * things down by: ct_time_scale() stretches the tests' own waits, and
 * clients connect before a test uses them (ct_client_connect).
 * CAIRN_TEST_CAIRND names
 * another cairnd binary to start (make tsan: the plain build's, as
 * gRPC's server threads cannot be checked by TSan). */
#ifndef CAIRN_TEST_H
#define CAIRN_TEST_H

#include "dirs.h" /* ct_temp_dir, ct_rmrf, ct_count_entries */

#include <cairn/cairn.h>

#include <stdbool.h>
#include <sys/types.h>

/* A wrapper's exit status for the errors it found (valgrind's
 * --error-exitcode); cairnd itself never exits with it. */
enum { CT_WRAP_ERROR_EXIT = 99 };

/* CAIRN_TEST_TIME_SCALE, at least 1: multiply a test's own waits by it. */
int ct_time_scale(void);

typedef struct ct_server {
    pid_t pid;                 /* 0 when not running */
    int port;
    char target[300];          /* "127.0.0.1:PORT", or "unix:PATH" */
    char listen[300];          /* "unix:PATH" to listen there; "" = 127.0.0.1:port */
    char dir[256];             /* temp dir: holds data/ and cairnd.log */
    char data_dir[300];        /* dir/data */
    char log_path[300];        /* dir/cairnd.log, appended by every start */
    const char *env[8];        /* "KEY=VALUE" added to cairnd's environment, NULL-ended */
    char pg_db[64];            /* postgres: its database ("" with sqlite) */
    char pg_env[1400];         /* postgres: "CAIRN_PG_DSN=..." for cairnd */
    int exit_status;           /* when ct_server_start returned -1: cairnd's, or 128+signal */
} ct_server;

/* The store the servers of this test run on: "sqlite" or "postgres"
 * (CAIRN_TEST_STORE). */
const char *ct_store(void);
/* True when that is SQLite, whose files a test may look at. */
bool ct_store_is_sqlite(void);

/* In a cmocka test about SQLite's own files (the data dir, blob files,
 * file modes, the LOCK): on another store, prints the reason and skips
 * the test (cmocka reports it SKIPPED, never passed). */
#define CT_SQLITE_ONLY(reason)                                                              \
    do {                                                                                    \
        if (!ct_store_is_sqlite()) {                                                        \
            fprintf(stderr, "SKIPPED on %s (SQLite only): %s\n", ct_store(), reason);      \
            skip();                                                                         \
        }                                                                                   \
    } while (0)

/* Creates a fresh temp dir for s (not started yet), and with postgres its
 * database. Returns 0 or -1. */
int ct_server_init(ct_server *s);

/* Starts cairnd on s->data_dir, on 127.0.0.1:port (0 = any free port)
 * or on s->listen when set,
 * with extra flags (NULL-terminated, may be NULL). Waits until cairnd
 * prints its address, so the server accepts calls on return. Returns 0, or
 * -1 when cairnd exited first (its log says why). */
int ct_server_start(ct_server *s, int port, const char *const *extra_args);

/* ct_server_start on any free port with --store postgres --pg-dsn dsn;
 * prints the path of cairnd's log when it did not start. */
int ct_server_start_postgres(ct_server *s, const char *dsn);

/* SIGTERM, then waits. Returns cairnd's exit status, or 128+signal. */
int ct_server_stop(ct_server *s);

/* Waits, without a signal, for a cairnd that is to exit by itself.
 * Returns its exit status, or 128+signal. */
int ct_server_wait(ct_server *s);

/* SIGKILL, then waits. */
void ct_server_kill(ct_server *s);

/* Stops s if it runs and removes its temp dir. */
void ct_server_cleanup(ct_server *s);

/* A helper process of a test, a fake server: it listens on 127.0.0.1
 * and prints "listening on 127.0.0.1:PORT" as its first line. */
typedef struct ct_helper {
    pid_t pid;                 /* 0 when not running */
    int out;                   /* its stdout past that line; -1 once closed */
    int port;
    char target[64];           /* "127.0.0.1:PORT" */
} ct_helper;

/* Starts argv (NULL-ended; argv[0] a path, run with execv; it dies with
 * the test) and waits for its listening line; its stderr is the test's.
 * Returns 0, or -1 when it exited or printed something else first. */
int ct_helper_start(ct_helper *h, const char *const *argv);

/* Reads its next stdout line (without '\n', cut at cap - 1 bytes),
 * waiting at most timeout_ms. Returns the length, or -1 at its end or
 * when nothing came in time. */
int ct_helper_read_line(ct_helper *h, char *buf, size_t cap, int timeout_ms);

/* SIGTERM, then waits; closes its stdout. Returns its exit status (or
 * 128+signal), -1 when it was not running. */
int ct_helper_stop(ct_helper *h);

/* A cmocka fixture: one cairnd (started with extra flags args, may be
 * NULL) and a client for it. */
typedef struct ct_fixture {
    ct_server server;
    cairn_client *client;
} ct_fixture;

/* Starts a fixture into *state. Returns 0, or -1 when it cannot. */
int ct_fixture_start(void **state, const char *const *args);
/* cmocka setup: ct_fixture_start with no flags. */
int ct_fixture_setup(void **state);
/* cmocka teardown: stops the fixture (cairnd must exit 0) and frees it.
 * Returns 0, or -1 when cairnd did not stop cleanly. */
int ct_fixture_teardown(void **state);

/* Creates run_id with n workers. Returns the status. */
cairn_status ct_create_run(cairn_client *c, const char *run_id, const char *const *workers,
                           size_t n);

/* A client for s with default options (or the given retry policy), its
 * deadlines stretched by ct_time_scale(); connected (ct_client_connect). */
cairn_client *ct_client(const ct_server *s, const cairn_retry_policy *retry);

/* Under CAIRN_TEST_TIME_SCALE > 1 (a slow wrapper), returns once a health
 * check through c (a client for target) got an answer, or after 10 s times
 * the scale; at once otherwise. libcairn abandons a connection attempt
 * that has no answer after 1 s, which a cairnd under valgrind often
 * misses on a new channel: a test's first call would fail UNAVAILABLE, or
 * take two attempts. Call it on a client a test made itself. */
void ct_client_connect(cairn_client *c, const char *target);

/* Runs cairnd with args to completion (not a server: --help, bad flags,
 * a locked data dir). Captures up to cap-1 bytes of stdout+stderr into
 * out. Returns the exit status. */
int ct_run_cairnd(const char *const *args, char *out, size_t cap);

/* Reads the whole file at path into a NUL-terminated malloc'd buffer and
 * sets *len (when len is not NULL). NULL when it cannot be read. */
char *ct_read_file(const char *path, size_t *len);

/* Snapshots the server stores: files <data>/blobs/<2 hex>/<sha256> with
 * SQLite, rows of its blobs table with postgres; -1 when they cannot be
 * read. */
int ct_count_blob_files(const ct_server *s);

/* Uploads staged and not yet linked or dropped: files in
 * <data>/blobs/staging with SQLite; rows of stages plus chunks owned by a
 * stage with postgres. -1 when they cannot be read. */
int ct_count_staged(const ct_server *s);

/* postgres: runs sql (one row, one integer column) on s's database.
 * Returns the value, or -1 after printing why. */
long long ct_pg_query_int(const ct_server *s, const char *sql);

/* True when dir holds nothing but cairnd's own files (LOCK, cairn.db and
 * its -wal/-shm, the blobs/ snapshot store), so no request made a file of
 * its own; with postgres, when it is absent or empty. */
bool ct_only_store_files(const char *dir);

#endif
