/* `cairnd backup` and `cairnd verify` of an SQLite data dir, from outside
 * the store: they open cairn.db (and pins.db) by path with a connection of
 * their own, so they run while a cairnd serves the same data dir.
 *
 * Why a backup is consistent. The copy of cairn.db comes from one read
 * transaction (SQLite's online backup API, run inside it), and the
 * snapshot files copied are exactly those that transaction's blobs table
 * lists. A file can still vanish while it is copied: the server removes a
 * file after the commit that dropped its last reference, and that commit
 * may come after the backup's snapshot. So first every checkpoint there
 * is gets a pin in pins.db, the rows cleanup and retention honour (see
 * core/checkpoints.c): none of them is deleted by retention or
 * CleanupCheckpoints while the copy runs. What pins cannot hold back (a
 * checkpoint made after the pins and already rotated out, a DeleteRun, a
 * completed run's retention) shows up as a file missing from the
 * snapshot's list; the backup then starts over with a new snapshot, which
 * no longer lists it, up to BACKUP_TRIES times. */
#include "store/sqlite/sqlite.h"
#include "base/clock.h"
#include "base/sha256.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

enum {
    BACKUP_TRIES = 5,
    COPY_CHUNK = 1 << 20,
    PATH_CAP = 8192,
    BUSY_TIMEOUT_MS = 10000,
};
/* Long enough for any copy; a backup that dies leaves pins that lapse. */
#define BACKUP_PIN_US (3600LL * 1000000)

/* Snapshot files are named by their digest; nothing else is looked up. */
static bool is_sha256_hex(const char *s)
{
    return s && strlen(s) == 64 && strspn(s, "0123456789abcdef") == 64;
}

static srv_code db_fail(sqlite3 *db, const char *what, const char *path, srv_error *err)
{
    return srv_fail(err, SRV_UNAVAILABLE, "%s %s: %s", what, path,
                    db ? sqlite3_errmsg(db) : "out of memory");
}

static srv_code io_fail(const char *what, const char *path, srv_error *err)
{
    return srv_fail(err, errno == ENOSPC ? SRV_RESOURCE_EXHAUSTED : SRV_UNAVAILABLE, "%s %s: %s",
                    what, path, strerror(errno));
}

/* Opens an existing database of the data dir (never creating one). */
static srv_code open_db(const char *path, sqlite3 **db, srv_error *err)
{
    int rc = sqlite3_open_v2(path, db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOFOLLOW, NULL);
    if (rc != SQLITE_OK) {
        srv_code code = db_fail(*db, "cannot open", path, err);
        sqlite3_close(*db);
        *db = NULL;
        return code;
    }
    sqlite3_busy_timeout(*db, BUSY_TIMEOUT_MS);
    return SRV_OK;
}

static srv_code sync_path(const char *path, srv_error *err)
{
    int fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0)
        return io_fail("cannot open", path, err);
    int rc = fsync(fd);
    close(fd);
    return rc == 0 ? SRV_OK : io_fail("cannot sync", path, err);
}

/* ---- pins: what retention and cleanup leave alone while the copy runs ---- */

typedef struct pins {
    sqlite3 *db;                  /* NULL: no pins.db (no cairnd ever ran here) */
    int64_t first, last;          /* the ids this backup added */
} pins;

static srv_code pin_all(sqlite3 *src, const char *pins_path, pins *p, srv_error *err)
{
    memset(p, 0, sizeof *p);
    if (access(pins_path, F_OK) != 0)
        return SRV_OK;
    if (open_db(pins_path, &p->db, err))
        return err->code;
    char sql[256];
    snprintf(sql, sizeof sql,
             "INSERT INTO pins (run_id, checkpoint_id, expires_us) SELECT r.run_id, "
             "c.checkpoint_id, %lld FROM src.checkpoints c JOIN src.runs r ON r.id = c.run",
             (long long)(srv_now_us() + BACKUP_PIN_US));
    char *attach = sqlite3_mprintf("ATTACH %Q AS src", sqlite3_db_filename(src, "main"));
    int rc = attach ? sqlite3_exec(p->db, attach, NULL, NULL, NULL) : SQLITE_NOMEM;
    sqlite3_free(attach);
    if (rc == SQLITE_OK)
        rc = sqlite3_exec(p->db, "BEGIN IMMEDIATE", NULL, NULL, NULL);
    if (rc == SQLITE_OK) {
        p->first = sqlite3_last_insert_rowid(p->db);
        rc = sqlite3_exec(p->db, sql, NULL, NULL, NULL);
        p->last = sqlite3_last_insert_rowid(p->db);
    }
    if (rc == SQLITE_OK)
        rc = sqlite3_exec(p->db, "COMMIT", NULL, NULL, NULL);
    if (rc == SQLITE_OK)
        rc = sqlite3_exec(p->db, "DETACH src", NULL, NULL, NULL);
    return rc == SQLITE_OK ? SRV_OK : db_fail(p->db, "cannot pin the checkpoints in", pins_path, err);
}

static void unpin_all(pins *p)
{
    if (p->db && p->last > p->first) {
        char sql[128];
        snprintf(sql, sizeof sql, "DELETE FROM pins WHERE id > %lld AND id <= %lld",
                 (long long)p->first, (long long)p->last);
        sqlite3_exec(p->db, sql, NULL, NULL, NULL); /* else they lapse by themselves */
    }
    sqlite3_close(p->db);
    p->db = NULL;
}

/* ---- copying ---- */

static srv_code make_dir(const char *path, srv_error *err)
{
    if (mkdir(path, 0700) != 0 && errno != EEXIST)
        return io_fail("cannot create", path, err);
    return SRV_OK;
}

/* Copies src to a new file dst (0600) and syncs it. *missing when src is
 * gone (ENOENT), which is no error. */
static srv_code copy_file(const char *src, const char *dst, bool *missing, srv_error *err)
{
    int in = open(src, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    if (in < 0 && errno == ENOENT) {
        *missing = true;
        return SRV_OK;
    }
    if (in < 0)
        return io_fail("cannot open", src, err);
    int out = open(dst, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (out < 0) {
        close(in);
        return io_fail("cannot create", dst, err);
    }
    char *buf = malloc(COPY_CHUNK);
    srv_code rc = buf ? SRV_OK : srv_fail(err, SRV_RESOURCE_EXHAUSTED, "out of memory");
    while (!rc) {
        ssize_t n = read(in, buf, COPY_CHUNK);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            rc = io_fail("cannot read", src, err);
            break;
        }
        if (n == 0)
            break;
        for (ssize_t off = 0; off < n && !rc;) {
            ssize_t w = write(out, buf + off, (size_t)(n - off));
            if (w < 0 && errno != EINTR)
                rc = io_fail("cannot write", dst, err);
            off += w > 0 ? w : 0;
        }
    }
    if (!rc && fsync(out) != 0)
        rc = io_fail("cannot sync", dst, err);
    free(buf);
    close(in);
    close(out);
    return rc;
}

/* Copies the snapshot files src's read transaction lists into dest/blobs;
 * counts those that were gone. */
static srv_code copy_blobs(sqlite3 *src, const char *data_dir, const char *dest, int *missing,
                           srv_error *err)
{
    char from[PATH_CAP], to[PATH_CAP];
    snprintf(to, sizeof to, "%s/blobs", dest);
    if (make_dir(to, err))
        return err->code;
    sqlite3_stmt *q;
    if (sqlite3_prepare_v2(src, "SELECT sha256 FROM blobs ORDER BY sha256", -1, &q, NULL) != SQLITE_OK)
        return db_fail(src, "cannot list the snapshots of", data_dir, err);
    srv_code rc = SRV_OK;
    int step;
    char fan[3] = "";
    while (!rc && (step = sqlite3_step(q)) == SQLITE_ROW) {
        const char *sha = (const char *)sqlite3_column_text(q, 0);
        if (!is_sha256_hex(sha))
            continue; /* not a name cairnd makes: verify reports it */
        if (strncmp(fan, sha, 2) != 0) {
            if (fan[0]) {
                snprintf(to, sizeof to, "%s/blobs/%s", dest, fan);
                rc = sync_path(to, err);
            }
            memcpy(fan, sha, 2);
            snprintf(to, sizeof to, "%s/blobs/%s", dest, fan);
            if (!rc)
                rc = make_dir(to, err);
        }
        snprintf(from, sizeof from, "%s/blobs/%.2s/%s", data_dir, sha, sha);
        snprintf(to, sizeof to, "%s/blobs/%.2s/%s", dest, sha, sha);
        bool gone = false;
        if (!rc)
            rc = copy_file(from, to, &gone, err);
        *missing += gone;
    }
    if (!rc && step != SQLITE_DONE)
        rc = db_fail(src, "cannot list the snapshots of", data_dir, err);
    sqlite3_finalize(q);
    if (!rc && fan[0]) {
        snprintf(to, sizeof to, "%s/blobs/%s", dest, fan);
        rc = sync_path(to, err);
    }
    snprintf(to, sizeof to, "%s/blobs", dest);
    return rc ? rc : sync_path(to, err);
}

/* cairn.db as of one read transaction of src, and the files it lists. */
static srv_code copy_once(sqlite3 *src, const char *data_dir, const char *dest, int *missing,
                          srv_error *err)
{
    char path[PATH_CAP];
    snprintf(path, sizeof path, "%s/cairn.db", dest);
    sqlite3 *dst = NULL;
    int rc = sqlite3_exec(src, "BEGIN; SELECT count(*) FROM blobs;", NULL, NULL, NULL);
    if (rc != SQLITE_OK)
        return db_fail(src, "cannot read", data_dir, err);
    srv_code code = SRV_OK;
    /* The backup runs inside src's open read transaction: the snapshot
     * the blob list below is read from. */
    if (sqlite3_open_v2(path, &dst, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE |
                                        SQLITE_OPEN_NOFOLLOW, NULL) != SQLITE_OK) {
        code = db_fail(dst, "cannot create", path, err);
    } else {
        sqlite3_backup *b = sqlite3_backup_init(dst, "main", src, "main");
        if (!b || sqlite3_backup_step(b, -1) != SQLITE_DONE)
            code = db_fail(dst, "cannot copy cairn.db into", path, err);
        sqlite3_backup_finish(b);
    }
    if (sqlite3_close(dst) != SQLITE_OK && !code)
        code = srv_fail(err, SRV_UNAVAILABLE, "cannot close %s", path);
    if (!code)
        code = sync_path(path, err);
    if (!code)
        code = copy_blobs(src, data_dir, dest, missing, err);
    sqlite3_exec(src, "COMMIT", NULL, NULL, NULL);
    return code;
}

static int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

/* Empties dest (made by this backup) for another try. */
static srv_code empty_dir(const char *dest, srv_error *err)
{
    char blobs[PATH_CAP], db[PATH_CAP];
    snprintf(blobs, sizeof blobs, "%s/blobs", dest);
    snprintf(db, sizeof db, "%s/cairn.db", dest);
    if ((nftw(blobs, remove_entry, 16, FTW_DEPTH | FTW_PHYS) != 0 && errno != ENOENT) ||
        (unlink(db) != 0 && errno != ENOENT))
        return io_fail("cannot empty", dest, err);
    return SRV_OK;
}

srv_code srv_sqlite_backup(const char *data_dir, const char *dest, srv_error *err)
{
    char db_path[PATH_CAP], pins_path[PATH_CAP], parent[PATH_CAP];
    snprintf(db_path, sizeof db_path, "%s/cairn.db", data_dir);
    snprintf(pins_path, sizeof pins_path, "%s/pins.db", data_dir);
    if (access(db_path, F_OK) != 0)
        return srv_fail(err, SRV_NOT_FOUND, "--data-dir: no cairn.db in %s", data_dir);
    if (mkdir(dest, 0700) != 0)
        return errno == EEXIST ? srv_fail(err, SRV_ALREADY_EXISTS,
                                          "DEST: %s exists; a backup goes into a new directory",
                                          dest)
                               : io_fail("cannot create", dest, err);
    snprintf(parent, sizeof parent, "%s", dest);
    char *slash = strrchr(parent, '/');
    if (slash == parent)
        slash[1] = '\0';
    else if (slash)
        *slash = '\0';
    else
        snprintf(parent, sizeof parent, ".");
    sqlite3 *src = NULL;
    srv_code rc = open_db(db_path, &src, err);
    int missing = -1;
    for (int tries = 0; !rc && missing && tries < BACKUP_TRIES; tries++) {
        pins p;
        missing = 0;
        rc = (tries ? empty_dir(dest, err) : SRV_OK);
        if (!rc)
            rc = pin_all(src, pins_path, &p, err);
        if (!rc)
            rc = copy_once(src, data_dir, dest, &missing, err);
        unpin_all(&p);
    }
    sqlite3_close(src);
    if (!rc && missing)
        rc = srv_fail(err, SRV_ABORTED,
                      "snapshot files kept vanishing while they were copied (%d tries); "
                      "try again",
                      BACKUP_TRIES);
    if (!rc)
        rc = sync_path(dest, err);
    if (!rc)
        rc = sync_path(parent, err);
    return rc;
}

/* ---- verify ---- */

/* What one snapshot file holds: its size and digest, or that it is gone. */
typedef struct blob_state {
    char sha[65];
    bool missing;
    int64_t size;
    char digest[65];
} blob_state;

static srv_code read_blob_state(const char *data_dir, const char *sha, blob_state *b,
                                srv_error *err)
{
    char path[PATH_CAP];
    snprintf(path, sizeof path, "%s/blobs/%.2s/%s", data_dir, sha, sha);
    snprintf(b->sha, sizeof b->sha, "%s", sha);
    b->missing = false;
    b->size = 0;
    int fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0 && errno == ENOENT) {
        b->missing = true;
        return SRV_OK;
    }
    if (fd < 0)
        return io_fail("cannot open", path, err);
    srv_sha256 *h = srv_sha256_new();
    uint8_t *buf = malloc(COPY_CHUNK);
    srv_code rc = h && buf ? SRV_OK : srv_fail(err, SRV_RESOURCE_EXHAUSTED, "out of memory");
    ssize_t n;
    while (!rc && (n = read(fd, buf, COPY_CHUNK)) != 0) {
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            rc = io_fail("cannot read", path, err);
            break;
        }
        srv_sha256_update(h, buf, (size_t)n);
        b->size += n;
    }
    if (!rc)
        srv_sha256_final_hex(h, b->digest);
    srv_sha256_free(h);
    free(buf);
    close(fd);
    return rc;
}

/* Each row of a check query (its first column) that is not "ok" is a
 * problem. */
static srv_code check_rows(sqlite3 *db, const char *sql, const char *what, srv_problem_fn problem,
                           void *ctx, size_t *problems, srv_error *err)
{
    sqlite3_stmt *q;
    if (sqlite3_prepare_v2(db, sql, -1, &q, NULL) != SQLITE_OK)
        return db_fail(db, "cannot run", what, err);
    int step;
    while ((step = sqlite3_step(q)) == SQLITE_ROW) {
        const char *text = (const char *)sqlite3_column_text(q, 0);
        if (text && strcmp(text, "ok") == 0)
            continue;
        char line[512];
        snprintf(line, sizeof line, "cairn.db: %s: %s", what, text ? text : "(null)");
        problem(ctx, line);
        (*problems)++;
    }
    sqlite3_finalize(q);
    return step == SQLITE_DONE ? SRV_OK : db_fail(db, "cannot run", what, err);
}

srv_code srv_sqlite_verify(const char *data_dir, srv_problem_fn problem, void *ctx,
                           size_t *checked, size_t *problems, srv_error *err)
{
    char db_path[PATH_CAP];
    snprintf(db_path, sizeof db_path, "%s/cairn.db", data_dir);
    *checked = *problems = 0;
    if (access(db_path, F_OK) != 0)
        return srv_fail(err, SRV_NOT_FOUND, "--data-dir: no cairn.db in %s", data_dir);
    sqlite3 *db = NULL;
    if (open_db(db_path, &db, err))
        return err->code;
    srv_code rc = check_rows(db, "PRAGMA integrity_check", "integrity_check", problem, ctx,
                             problems, err);
    if (!rc)
        rc = check_rows(db, "SELECT \"table\" || ' row ' || rowid || ' references a missing ' "
                            "|| parent FROM pragma_foreign_key_check",
                        "foreign_key_check", problem, ctx, problems, err);
    sqlite3_stmt *q = NULL;
    if (!rc && sqlite3_prepare_v2(db,
                                  "SELECT r.run_id, c.checkpoint_id, c.snapshot_sha256, "
                                  "c.snapshot_size FROM checkpoints c JOIN runs r ON r.id = c.run "
                                  "ORDER BY c.snapshot_sha256, r.run_id, c.checkpoint_id",
                                  -1, &q, NULL) != SQLITE_OK)
        rc = db_fail(db, "cannot list the checkpoints of", data_dir, err);
    blob_state b = {.sha = ""};
    int step = SQLITE_DONE;
    while (!rc && (step = sqlite3_step(q)) == SQLITE_ROW) {
        const char *run = (const char *)sqlite3_column_text(q, 0);
        const char *cp = (const char *)sqlite3_column_text(q, 1);
        const char *sha = (const char *)sqlite3_column_text(q, 2);
        int64_t size = sqlite3_column_int64(q, 3);
        char line[1024];
        line[0] = '\0';
        (*checked)++;
        bool named = is_sha256_hex(sha);
        /* Rows come by digest: each file is read once. */
        if (named && strcmp(b.sha, sha) != 0 && (rc = read_blob_state(data_dir, sha, &b, err)))
            break;
        if (!named)
            snprintf(line, sizeof line, "run %s checkpoint %s: snapshot_sha256 %.80s is not "
                     "64 hex digits", run, cp, sha ? sha : "(null)");
        else if (b.missing)
            snprintf(line, sizeof line, "run %s checkpoint %s: snapshot blobs/%.2s/%s is missing",
                     run, cp, sha, sha);
        else if (b.size != size)
            snprintf(line, sizeof line, "run %s checkpoint %s: snapshot blobs/%.2s/%s has %lld "
                     "bytes, the checkpoint says %lld", run, cp, sha, sha, (long long)b.size,
                     (long long)size);
        else if (strcmp(b.digest, sha) != 0)
            snprintf(line, sizeof line, "run %s checkpoint %s: snapshot blobs/%.2s/%s does not "
                     "match its SHA-256 (its bytes hash to %s)", run, cp, sha, sha, b.digest);
        if (line[0]) {
            problem(ctx, line);
            (*problems)++;
        }
    }
    if (!rc && step != SQLITE_DONE)
        rc = db_fail(db, "cannot list the checkpoints of", data_dir, err);
    sqlite3_finalize(q);
    sqlite3_close(db);
    return rc;
}
