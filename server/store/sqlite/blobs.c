/* SQLite store: snapshot bytes as files, content-addressed by SHA-256:
 * dir/blobs/<first two hex digits>/<sha256>, reference-counted in the
 * blobs table; every file is reached through the fd of its directory,
 * checked as files.c says. An upload is staged in dir/blobs/staging/
 * while it streams in, fsynced, then moved into place (a new fan-out
 * directory synced into blobs/ first) inside the transaction that commits
 * its checkpoint (before the commit, so a committed row always has its
 * file). A file whose last reference is dropped is removed after that
 * transaction commits; one moved into place by a link that rolled back
 * (the transaction, or the mutation's savepoint) is removed when the
 * transaction ends. What a crash strands (staged uploads, files without
 * a row) is swept when the store opens. */
#include "store/sqlite/sqlite_int.h"
#include "base/error.h"
#include "base/hex.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* Staged bytes are pushed to the disk every STAGE_FLUSH_BYTES, so that the
 * fsync at the end has little left to write: one large fsync would hold up
 * every commit's fsync behind it (ext4 orders the journal after the data
 * it allocated), and a lease renewal waits for a commit. */
enum { STAGE_FLUSH_BYTES = 8 * 1024 * 1024 };

typedef struct sq_stage {
    srv_blob_stage base;
    int fd;
    uint64_t written;         /* bytes so far */
    uint64_t flushed;         /* of them, handed to writeback */
    bool linked;              /* moved into place: nothing to remove */
    char sha256[65];
    char name[17];            /* in blobs/staging */
    char path[SQ_PATH_MAX];   /* for messages */
} sq_stage;

typedef struct sq_reader {
    srv_blob_reader base;
    int fd;
} sq_reader;

/* Opens the fan-out directory blobs/<first two hex digits of sha> (checked
 * as every directory of the data dir; with create, made when missing and
 * synced into blobs/). */
static srv_code open_fan(sqlite_store *s, const char *sha, bool create, int *fd, srv_error *err)
{
    char blobs[SQ_PATH_MAX], name[3];
    snprintf(blobs, sizeof blobs, "%s/blobs", s->dir);
    snprintf(name, sizeof name, "%.2s", sha);
    return sq_open_dir(s, s->blobs_fd, blobs, name, create, fd, err);
}

static bool blob_row_exists(sqlite_store *s, const char *sha)
{
    srv_error ignored;
    sqlite3_stmt *st = sq_stmt(&s->writer, ST_BLOB_EXISTS, &ignored);
    if (!st)
        return true; /* unsure: keep the file */
    sq_bind_text(st, 1, sha);
    int rc = sqlite3_step(st);
    sqlite3_reset(st);
    return rc != SQLITE_DONE;
}

/* Removes every entry of the directory fd for which keep() says no
 * (unlinkat removes a symbolic link itself, never what it points to). */
static void sweep(sqlite_store *s, int fd, bool (*keep)(sqlite_store *, const char *))
{
    int own = dup(fd);
    DIR *d = own >= 0 ? fdopendir(own) : NULL;
    if (!d) {
        if (own >= 0)
            close(own);
        return;
    }
    rewinddir(d); /* a dup shares the offset */
    struct dirent *e;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.' || (keep && keep(s, e->d_name)))
            continue;
        unlinkat(fd, e->d_name, 0);
    }
    closedir(d);
}

srv_code sq_blobs_open(sqlite_store *s, srv_error *err)
{
    char blobs[SQ_PATH_MAX];
    snprintf(blobs, sizeof blobs, "%s/blobs", s->dir);
    if (sq_open_dir(s, s->dir_fd, s->dir, "blobs", true, &s->blobs_fd, err) ||
        sq_open_dir(s, s->blobs_fd, blobs, "staging", true, &s->staging_fd, err))
        return err->code;
    sweep(s, s->staging_fd, NULL);

    int own = dup(s->blobs_fd);
    DIR *d = own >= 0 ? fdopendir(own) : NULL;
    if (!d) {
        srv_code rc = sq_io_fail(errno, "reading", blobs, err);
        if (own >= 0)
            close(own);
        return rc;
    }
    srv_code rc = SRV_OK;
    struct dirent *e;
    while (!rc && (e = readdir(d))) {
        /* Only the two-hex-digit fan-out directories: never "..". */
        const char *n = e->d_name;
        if (strlen(n) != 2 || !isxdigit((unsigned char)n[0]) || !isxdigit((unsigned char)n[1]))
            continue;
        int fan;
        if (!(rc = sq_open_dir(s, s->blobs_fd, blobs, n, false, &fan, err))) {
            sweep(s, fan, blob_row_exists);
            close(fan);
        }
    }
    closedir(d);
    return rc;
}

/* ---- staging ---- */

srv_code sq_stage_begin(srv_store *st, srv_blob_stage **out, srv_error *err)
{
    sqlite_store *s = sq_from(st);
    sq_stage *b = calloc(1, sizeof *b);
    if (!b)
        return srv_fail(err, SRV_RESOURCE_EXHAUSTED, "out of memory");
    srv_random_hex(b->name, 8);
    snprintf(b->path, sizeof b->path, "%s/blobs/staging/%s", s->dir, b->name);
    b->base.store = st;
    b->fd = openat(s->staging_fd, b->name, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC,
                   0600);
    if (b->fd < 0) {
        srv_code rc = sq_io_fail(errno, "staging", b->path, err);
        free(b);
        return rc;
    }
    *out = &b->base;
    return SRV_OK;
}

srv_code sq_stage_write(srv_blob_stage *stage, const uint8_t *data, size_t len, srv_error *err)
{
    sq_stage *b = (sq_stage *)stage;
    while (len) {
        ssize_t n = write(b->fd, data, len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return sq_io_fail(n < 0 ? errno : ENOSPC, "writing", b->path, err);
        data += n;
        len -= (size_t)n;
        b->written += (uint64_t)n;
    }
    if (b->written - b->flushed >= STAGE_FLUSH_BYTES) {
        /* Wait for the earlier windows' writeback, start this one's: at
         * most two windows are dirty. Only a hint (durability is the
         * fsync's), so a failure here is left to that fsync to report. */
        if (b->flushed)
            sync_file_range(b->fd, 0, (off_t)b->flushed,
                            SYNC_FILE_RANGE_WAIT_BEFORE | SYNC_FILE_RANGE_WRITE |
                                SYNC_FILE_RANGE_WAIT_AFTER);
        sync_file_range(b->fd, (off_t)b->flushed, (off_t)(b->written - b->flushed),
                        SYNC_FILE_RANGE_WRITE);
        b->flushed = b->written;
    }
    return SRV_OK;
}

srv_code sq_stage_finish(srv_blob_stage *stage, const char *sha256, srv_error *err)
{
    sq_stage *b = (sq_stage *)stage;
    if (sq_sync(sq_from(b->base.store), b->fd, b->path, err))
        return err->code;
    int rc = close(b->fd);
    b->fd = -1;
    if (rc < 0)
        return sq_io_fail(errno, "closing", b->path, err);
    snprintf(b->sha256, sizeof b->sha256, "%s", sha256);
    return SRV_OK;
}

void sq_stage_free(srv_blob_stage *stage)
{
    sq_stage *b = (sq_stage *)stage;
    if (!b)
        return;
    if (b->fd >= 0)
        close(b->fd);
    if (!b->linked)
        unlinkat(sq_from(b->base.store)->staging_fd, b->name, 0);
    free(b);
}

/* ---- references (writer thread, inside the transaction) ---- */

/* Remembers content whose file may be left without a row when the open
 * transaction ends. */
static srv_code recheck_at_end(sqlite_store *s, const char *sha256, srv_error *err)
{
    if (s->n_recheck == s->cap_recheck) {
        size_t cap = s->cap_recheck ? s->cap_recheck * 2 : 16;
        char(*v)[65] = realloc(s->recheck, cap * sizeof *v);
        if (!v)
            return srv_fail(err, SRV_RESOURCE_EXHAUSTED, "out of memory");
        s->recheck = v;
        s->cap_recheck = cap;
    }
    snprintf(s->recheck[s->n_recheck++], 65, "%s", sha256);
    return SRV_OK;
}

srv_code sq_blob_link(srv_txn *t, srv_blob_stage *stage, uint64_t size, srv_error *err)
{
    sqlite_store *s = sq_of(t);
    sq_stage *b = (sq_stage *)stage;
    /* The staged copy always goes into place, even when the content is
     * stored already: it was just received, hashed and fsynced, while the
     * stored file may have rotted since (same content, so replacing it is
     * always safe; open readers keep the file they opened). */
    char dir[SQ_PATH_MAX];
    snprintf(dir, sizeof dir, "%s/blobs/%.2s", s->dir, b->sha256);
    /* If the row below does not survive (an error, a rollback), the file
     * must not either: checked when the transaction ends. */
    if (recheck_at_end(s, b->sha256, err))
        return err->code;
    /* A new fan-out directory is synced into blobs/ (open_fan), and the
     * file's entry into it, before the row commits. */
    int fan;
    if (open_fan(s, b->sha256, true, &fan, err))
        return err->code;
    srv_code code = SRV_OK;
    if (renameat(s->staging_fd, b->name, fan, b->sha256) < 0) {
        char path[SQ_PATH_MAX];
        snprintf(path, sizeof path, "%s/blobs/%.2s/%s", s->dir, b->sha256, b->sha256);
        code = sq_io_fail(errno, "storing", path, err);
    }
    else
        b->linked = true;
    if (!code)
        code = sq_sync(s, fan, dir, err);
    close(fan);
    if (code)
        return code;

    conn *w = &s->writer;
    sqlite3_stmt *st = sq_stmt(w, ST_BLOB_REFS, err);
    if (!st)
        return err->code;
    sq_bind_text(st, 1, b->sha256);
    int rc = sqlite3_step(st);
    sqlite3_reset(st);
    if (rc == SQLITE_ROW) {
        if (!(st = sq_stmt(w, ST_BLOB_ADD_REF, err)))
            return err->code;
        sq_bind_text(st, 1, b->sha256);
        sqlite3_bind_int(st, 2, 1);
        return sq_step_done(w, st, "referencing a snapshot", err);
    }
    if (rc != SQLITE_DONE)
        return sq_db_fail(w->db, rc, "reading snapshot references", err);
    if (!(st = sq_stmt(w, ST_BLOB_INSERT, err)))
        return err->code;
    sq_bind_text(st, 1, b->sha256);
    sqlite3_bind_int64(st, 2, (int64_t)size);
    return sq_step_done(w, st, "storing a snapshot", err);
}

srv_code sq_blob_unlink(srv_txn *t, const char *sha256, srv_error *err)
{
    sqlite_store *s = sq_of(t);
    conn *w = &s->writer;
    sqlite3_stmt *st = sq_stmt(w, ST_BLOB_ADD_REF, err);
    if (!st)
        return err->code;
    sq_bind_text(st, 1, sha256);
    sqlite3_bind_int(st, 2, -1);
    if (sq_step_done(w, st, "releasing a snapshot", err))
        return err->code;
    if (!(st = sq_stmt(w, ST_BLOB_REFS, err)))
        return err->code;
    sq_bind_text(st, 1, sha256);
    int rc = sqlite3_step(st);
    int64_t refs = rc == SQLITE_ROW ? sqlite3_column_int64(st, 0) : 0;
    sqlite3_reset(st);
    if (refs > 0)
        return SRV_OK;
    if (!(st = sq_stmt(w, ST_BLOB_DELETE, err)))
        return err->code;
    sq_bind_text(st, 1, sha256);
    if (sq_step_done(w, st, "releasing a snapshot", err))
        return err->code;
    return recheck_at_end(s, sha256, err);
}

/* After the transaction ended, committed or not, the rows say which
 * content is referenced: a later mutation may have stored content again
 * that an earlier one dropped, a rollback may have restored a dropped
 * row or undone a new one. Only files without a row go. */
static void remove_unreferenced(sqlite_store *s)
{
    for (size_t i = 0; i < s->n_recheck; i++) {
        int fan;
        srv_error ignored;
        if (blob_row_exists(s, s->recheck[i]) || open_fan(s, s->recheck[i], false, &fan, &ignored))
            continue;
        unlinkat(fan, s->recheck[i], 0);
        close(fan);
    }
    s->n_recheck = 0;
}

void sq_blobs_after_commit(sqlite_store *s)
{
    remove_unreferenced(s);
}

void sq_blobs_after_rollback(sqlite_store *s)
{
    remove_unreferenced(s);
}

/* ---- reading ---- */

srv_code sq_blob_open(srv_store *st, const char *sha256, srv_blob_reader **out, srv_error *err)
{
    sqlite_store *s = sq_from(st);
    char path[SQ_PATH_MAX];
    snprintf(path, sizeof path, "%s/blobs/%.2s/%s", s->dir, sha256, sha256);
    int fan, fd = -1;
    srv_code rc = open_fan(s, sha256, false, &fan, err);
    if (!rc) {
        fd = openat(fan, sha256, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
        if (fd < 0)
            rc = errno == ENOENT ? SRV_NOT_FOUND : sq_io_fail(errno, "opening", path, err);
        close(fan);
    }
    if (rc == SRV_NOT_FOUND)
        return srv_fail(err, SRV_NOT_FOUND, "snapshot %.16s...: deleted", sha256);
    if (rc)
        return rc;
    sq_reader *r = malloc(sizeof *r);
    if (!r) {
        close(fd);
        return srv_fail(err, SRV_RESOURCE_EXHAUSTED, "out of memory");
    }
    r->base.store = st;
    r->fd = fd;
    *out = &r->base;
    return SRV_OK;
}

srv_code sq_blob_read(srv_blob_reader *reader, uint8_t *buf, size_t cap, size_t *n,
                      srv_error *err)
{
    sq_reader *r = (sq_reader *)reader;
    size_t got = 0;
    while (got < cap) {
        ssize_t k = read(r->fd, buf + got, cap - got);
        if (k < 0 && errno == EINTR)
            continue;
        if (k < 0)
            return srv_fail(err, SRV_UNAVAILABLE, "store: reading a snapshot failed: %s",
                            strerror(errno));
        if (k == 0)
            break;
        got += (size_t)k;
    }
    *n = got;
    return SRV_OK;
}

void sq_blob_close(srv_blob_reader *reader)
{
    sq_reader *r = (sq_reader *)reader;
    if (!r)
        return;
    close(r->fd);
    free(r);
}
