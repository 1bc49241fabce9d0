/* SQLite store: the data dir, trusted only as far as it is cairnd's own.
 * The data dir and every directory beneath it (blobs/, blobs/staging,
 * blobs/<xx>) must be a directory, not a symbolic link, owned by the
 * effective user and writable by nobody else; a file of the store is made,
 * found and removed relative to the fd of its directory, and opened with
 * O_NOFOLLOW. Because no other user may write these directories, nobody
 * else can swap an entry between a check and its use: the checks guard
 * against a data dir set up wrong (a link left where LOCK or staging/
 * was), which would otherwise have cairnd truncate or sweep files that
 * are not its own. New directories are 0700 and files 0600 whatever the
 * umask, and a new directory is synced into its parent before it is used,
 * so that a power cut cannot take away the entry of a file acknowledged
 * in it. */
#include "store/sqlite/sqlite_int.h"
#include "base/error.h"
#include "base/log.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

/* A disk that cannot take more comes back later: retry after this. */
enum { DISK_FULL_PUSHBACK_MS = 1000 };

srv_code sq_io_fail(int e, const char *what, const char *path, srv_error *err)
{
    if (e == ENOSPC || e == EDQUOT || e == EFBIG)
        return srv_fail_pushback(err, SRV_RESOURCE_EXHAUSTED, DISK_FULL_PUSHBACK_MS,
                                 "store: disk full while %s %s; retry later", what, path);
    return srv_fail(err, SRV_UNAVAILABLE, "store: %s %s failed: %s", what, path, strerror(e));
}

srv_code sq_sync(sqlite_store *s, int fd, const char *path, srv_error *err)
{
    if (fsync(fd) == 0)
        return SRV_OK;
    srv_fail(err, SRV_UNAVAILABLE, "store: syncing %s failed: %s", path, strerror(errno));
    if (s->opened)
        srv_store_fail_stop(&s->base, err);
    return err->code;
}

static srv_code refuse(srv_error *err, const char *path, const char *why)
{
    return srv_fail(err, SRV_FAILED_PRECONDITION, "--data-dir: refusing %s: %s", path, why);
}

/* Refuses what the effective user does not own; a directory also when
 * its group or others may write it. */
static srv_code check_owner(const struct stat *st, const char *path, srv_error *err)
{
    if (st->st_uid != geteuid())
        return srv_fail(err, SRV_FAILED_PRECONDITION,
                        "--data-dir: refusing %s: it is owned by uid %u, and cairnd runs as "
                        "uid %u",
                        path, (unsigned)st->st_uid, (unsigned)geteuid());
    if (S_ISDIR(st->st_mode) && (st->st_mode & (S_IWGRP | S_IWOTH)))
        return srv_fail(err, SRV_FAILED_PRECONDITION,
                        "--data-dir: refusing %s: it is writable by group or others "
                        "(mode 0%o); make it the user's alone (chmod go-w)",
                        path, (unsigned)(st->st_mode & 07777));
    return SRV_OK;
}

/* Says why name in at (path) could not be opened as a directory:
 * NOT_FOUND when it is missing. */
static srv_code open_dir_failed(int e, int at, const char *name, const char *path,
                                srv_error *err)
{
    if (e == ENOENT)
        return srv_fail(err, SRV_NOT_FOUND, "store: %s is missing", path);
    struct stat st;
    if (fstatat(at, name, &st, AT_SYMLINK_NOFOLLOW) == 0) {
        if (S_ISLNK(st.st_mode))
            return refuse(err, path, "it is a symbolic link");
        if (!S_ISDIR(st.st_mode))
            return refuse(err, path, "it is not a directory");
    }
    return sq_io_fail(e, "opening", path, err);
}

srv_code sq_open_dir(sqlite_store *s, int at, const char *at_path, const char *name,
                     bool create, int *out, srv_error *err)
{
    char path[SQ_PATH_MAX];
    snprintf(path, sizeof path, "%s/%s", at_path, name);
    if (create) {
        if (mkdirat(at, name, 0700) == 0) {
            if (sq_sync(s, at, at_path, err))
                return err->code;
        } else if (errno != EEXIST) {
            return sq_io_fail(errno, "creating", path, err);
        }
    }
    int fd = openat(at, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0)
        return open_dir_failed(errno, at, name, path, err);
    struct stat st;
    srv_code rc = fstat(fd, &st) < 0 ? sq_io_fail(errno, "reading", path, err)
                                     : check_owner(&st, path, err);
    if (rc) {
        close(fd);
        return rc;
    }
    *out = fd;
    return SRV_OK;
}

/* fsync of the directory holding path's last component. */
static int sync_parent(const char *path)
{
    char buf[SQ_PATH_MAX];
    snprintf(buf, sizeof buf, "%s", path);
    char *slash = strrchr(buf, '/');
    const char *parent = !slash ? "." : slash == buf ? "/" : buf;
    if (slash && slash != buf)
        *slash = '\0';
    int fd = open(parent, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    int rc = fsync(fd);
    int e = errno;
    close(fd);
    errno = e;
    return rc;
}

/* mkdir -p, 0700; each directory made is synced into its parent. */
static srv_code make_dirs(const char *path, srv_error *err)
{
    char buf[SQ_PATH_MAX];
    size_t n = strlen(path);
    if (n == 0)
        return srv_fail(err, SRV_INVALID_ARGUMENT, "--data-dir: must not be empty");
    if (n >= sizeof buf)
        return srv_fail(err, SRV_INVALID_ARGUMENT, "--data-dir: longer than %d bytes",
                        SQ_PATH_MAX - 1);
    memcpy(buf, path, n + 1);
    for (char *p = buf + 1;; p++) {
        if (*p && *p != '/')
            continue;
        char c = *p;
        *p = '\0';
        if (mkdir(buf, 0700) == 0) {
            if (sync_parent(buf) < 0)
                return srv_fail(err, SRV_UNAVAILABLE,
                                "--data-dir: syncing the directory that holds %s failed: %s", buf,
                                strerror(errno));
        } else if (errno != EEXIST) {
            return srv_fail(err, SRV_UNAVAILABLE, "--data-dir: cannot create %s: %s", buf,
                            strerror(errno));
        }
        if (!c)
            return SRV_OK;
        *p = c;
    }
}

srv_code sq_data_dir_open(sqlite_store *s, srv_error *err)
{
    if (make_dirs(s->dir, err))
        return err->code;
    int fd = open(s->dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0)
        return open_dir_failed(errno, AT_FDCWD, s->dir, s->dir, err);
    struct stat st;
    srv_code rc = fstat(fd, &st) < 0 ? sq_io_fail(errno, "reading", s->dir, err)
                                     : check_owner(&st, s->dir, err);
    if (rc) {
        close(fd);
        return rc;
    }
    s->dir_fd = fd;
    return SRV_OK;
}

/* Checks a regular file of the store that open will not create (or that
 * SQLite opens by path): missing is fine; a symbolic link or another
 * user's file is refused. */
static srv_code check_file(sqlite_store *s, const char *name, srv_error *err)
{
    char path[SQ_PATH_MAX];
    snprintf(path, sizeof path, "%s/%s", s->dir, name);
    struct stat st;
    if (fstatat(s->dir_fd, name, &st, AT_SYMLINK_NOFOLLOW) < 0)
        return errno == ENOENT ? SRV_OK : sq_io_fail(errno, "reading", path, err);
    if (S_ISLNK(st.st_mode))
        return refuse(err, path, "it is a symbolic link");
    return check_owner(&st, path, err);
}

srv_code sq_lock_data_dir(sqlite_store *s, srv_error *err)
{
    char path[SQ_PATH_MAX];
    snprintf(path, sizeof path, "%s/LOCK", s->dir);
    /* Checked before it is truncated: never another file through a link. */
    int fd = openat(s->dir_fd, "LOCK", O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (fd < 0)
        return errno == ELOOP ? refuse(err, path, "it is a symbolic link")
                              : srv_fail(err, SRV_UNAVAILABLE, "--data-dir: cannot open %s: %s",
                                         path, strerror(errno));
    struct stat st;
    srv_code rc = fstat(fd, &st) < 0 ? sq_io_fail(errno, "reading", path, err)
                  : !S_ISREG(st.st_mode) ? refuse(err, path, "it is not a regular file")
                                         : check_owner(&st, path, err);
    if (rc) {
        close(fd);
        return rc;
    }
    if (flock(fd, LOCK_EX | LOCK_NB) < 0) {
        char pid[32] = "";
        ssize_t n = pread(fd, pid, sizeof pid - 1, 0);
        pid[n > 0 ? n : 0] = '\0';
        pid[strcspn(pid, "\n")] = '\0';
        close(fd);
        return srv_fail(err, SRV_FAILED_PRECONDITION,
                        "data dir %s is in use by another cairnd%s%s%s; "
                        "stop it or choose another --data-dir",
                        s->dir, *pid ? " (pid " : "", pid, *pid ? ")" : "");
    }
    char pid[32];
    int n = snprintf(pid, sizeof pid, "%ld\n", (long)getpid());
    if (ftruncate(fd, 0) < 0 || pwrite(fd, pid, (size_t)n, 0) < 0)
        srv_warn("cannot write the pid into %s: %s", path, strerror(errno));
    s->lock_fd = fd;
    return SRV_OK;
}

srv_code sq_db_files_prepare(sqlite_store *s, const char *name, srv_error *err)
{
    static const char *const suffixes[] = {"", "-wal", "-shm", "-journal"};
    char file[64];
    for (size_t i = 0; i < sizeof suffixes / sizeof suffixes[0]; i++) {
        snprintf(file, sizeof file, "%s%s", name, suffixes[i]);
        if (check_file(s, file, err))
            return err->code;
    }
    int fd = openat(s->dir_fd, name, O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (fd < 0 && errno != EEXIST)
        return srv_fail(err, SRV_UNAVAILABLE, "--data-dir: cannot create %s/%s: %s", s->dir, name,
                        strerror(errno));
    if (fd < 0)
        return SRV_OK;
    close(fd);
    /* An empty file is a new database to SQLite; its entry must last. */
    return sq_sync(s, s->dir_fd, s->dir, err);
}
