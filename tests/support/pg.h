/* A private PostgreSQL cluster for tests: initdb into a temporary
 * directory, a postmaster on 127.0.0.1 at a free port (its socket in that
 * directory too), stopped by its PID and removed. Never the machine's own
 * cluster: every connection names host 127.0.0.1 and the port picked here.
 *
 * As root (CI), initdb refuses to run: the directory is given to the
 * `postgres` system user (from the postgresql package) and initdb and
 * postgres run as it (fork, setgid, setuid); without that user the
 * cluster is skipped. As anyone else, they run as the current user.
 * Binaries come from CAIRN_PG_BINDIR, else the newest
 * /usr/lib/postgresql/<version>/bin. Needs libpq only.
 *
 * The postmaster dies with the test (PR_SET_PDEATHSIG, SIGQUIT: an
 * immediate shutdown) if the test ends without ct_pg_stop; the signal
 * comes when the thread that called ct_pg_start ends, so call it from
 * the main thread. */
#ifndef CAIRN_TEST_PG_H
#define CAIRN_TEST_PG_H

#include <stddef.h>
#include <sys/types.h>

typedef struct ct_pg {
    char dir[512];            /* temp dir: data/, the socket, logs */
    char bindir[256];
    int port;
    pid_t pid;                /* the postmaster; 0 when not running */
    char dsn[1200];           /* the superuser's, database postgres */
    char why[512];            /* why it was skipped or failed */
    char passfile[600];       /* ct_pg_start_password: dir/pgpass, mode 0600 */
} ct_pg;

/* Starts a cluster and waits until it answers. Returns 0 when it runs
 * (pg->dsn connects as superuser), 1 when it cannot here (pg->why says
 * why: no PostgreSQL binaries, root without a postgres user), -1 when it
 * failed (pg->why, with the end of its log). Nothing is left behind
 * unless it returns 0. */
int ct_pg_start(ct_pg *pg);

/* The same with password authentication: initdb --auth=scram-sha-256
 * with the superuser's password, a libpq password file for it at
 * pg->passfile (mode 0600), and pg->dsn naming that file (passfile=), so
 * the test's own connections need no password in a DSN. */
int ct_pg_start_password(ct_pg *pg, const char *password);

/* Stops the postmaster (fast shutdown, as ct_pg_stop; `pg_ctl stop -m
 * fast`) and keeps the cluster, to be started again by ct_pg_resume. */
void ct_pg_halt(ct_pg *pg);
/* Starts a halted cluster on the port it had and waits until it answers.
 * 0, or -1 with pg->why. ct_pg_halt then ct_pg_resume is `pg_ctl restart
 * -m fast`. */
int ct_pg_resume(ct_pg *pg);

/* Runs one SQL command (several, ;-separated) on conninfo dsn; 0, or -1
 * after printing why. */
int ct_pg_exec(const char *dsn, const char *sql);

/* ct_pg_exec, and the first column of the first row as text into out
 * (cap bytes; "" when no row). */
int ct_pg_query(const char *dsn, const char *sql, char *out, size_t cap);

/* Stops the postmaster (fast shutdown: SIGINT, then SIGQUIT and
 * SIGKILL past a deadline) and removes the directory. Safe to call on a
 * cluster that did not start. */
void ct_pg_stop(ct_pg *pg);

/* Creates database name (a plain identifier) in the cluster whose
 * superuser DSN is admin_dsn, and writes a DSN that connects to it into
 * dsn. 0, or -1 after printing why. */
int ct_pg_create_db(const char *admin_dsn, const char *name, char *dsn, size_t cap);
/* Drops it (WITH (FORCE)); 0 or -1. */
int ct_pg_drop_db(const char *admin_dsn, const char *name);

#endif
