/* LD_PRELOAD shim for tests: a power cut, as a SIGKILL plus an undo log.
 *
 * The model: what a process wrote is durable only once it was synced; a
 * power cut takes away everything else. File data counts once the file
 * was fsynced (or fdatasynced) after it was written; a name made or
 * removed in a directory (create, mkdir, link, unlink, rmdir) counts once
 * that directory was fsynced afterwards, a rename once its destination
 * directory was (a journaling file system commits both halves of a
 * rename together).
 *
 * The mechanism: every change under the data dir is made for real, so the
 * running process sees its own writes as it would through the page cache,
 * and before it is made the shim appends its undo to a log outside the
 * data dir: for a write or truncation the bytes it overwrites (its
 * preimage) and the file's size before; for a name, what to put back.
 * Files that are unlinked or replaced are first hard-linked into a
 * graveyard beside the log, so they can be put back. A successful fsync
 * appends a sync record naming the file or directory and how many records
 * it covers (those logged before it began). The power cut is a SIGKILL of
 * the process: the kernel keeps every page, log included, so afterwards
 * powercut_revert.py undoes, newest first, every record that no later
 * sync covered. What is left is what a disk that honours fsync would hold.
 * Records are logged before the change under one lock, so a kill between
 * the two undoes a change that never happened, which is harmless.
 *
 * Not modelled: torn writes inside a sector, and synced writes persisted
 * out of order or unsynced ones persisted in part (a real disk may keep
 * any subset of what was not synced; this one keeps none of it, which is
 * the hardest case for acknowledged data and the easiest for recovery).
 * Only the calls cairnd and SQLite make are hooked (open/openat and their
 * 64-bit and fortified names, creat, write, pwrite, ftruncate, fsync,
 * fdatasync, close, unlink/unlinkat, rename/renameat/renameat2,
 * link/linkat, mkdir/mkdirat, rmdir); writes through mmap are not seen,
 * so SQLite's -shm (rebuilt by recovery) is left out of the data records.
 *
 * Environment, read at start-up:
 *   CAIRN_POWERCUT_DIR=DIR  the data dir (must exist); nothing else is
 *       touched;
 *   CAIRN_POWERCUT_LOG=DIR  where undo.log, preimages and graveyard/ go,
 *       on the same file system as the data dir; undo.log must not exist
 *       yet (an unreverted log is never appended to).
 * Without them the shim only does what powercut_sql.c says. */
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

#include "fd_path.h"

enum { FD_MAX = 65536 };

/* Regular files under the data dir opened through a hook: their writes
 * are recorded. */
static struct tracked {
    atomic_int on;
    dev_t dev;
    ino_t ino;
} g_fds[FD_MAX];

static struct {
    int on;
    char dir[PATH_MAX];
    size_t dir_len;
    char grave[PATH_MAX];
    int log_fd, pre_fd;
    long long seq;     /* records logged so far */
    long long pre_off; /* bytes in preimages */
    pthread_mutex_t mu;
} g = {.log_fd = -1, .pre_fd = -1, .mu = PTHREAD_MUTEX_INITIALIZER};

/* Lets a test check that it runs with the shim preloaded. */
int cairn_powercut_shim = 1;

#define REAL(fn)                                                                   \
    static __typeof__(&fn) real_##fn;                                              \
    if (!real_##fn)                                                                \
        real_##fn = (__typeof__(&fn))dlsym(RTLD_NEXT, #fn)

static void die(const char *what)
{
    char line[512];
    int n = snprintf(line, sizeof line, "powercut: %s: %s; aborting\n", what, strerror(errno));
    if (n > 0 && write(2, line, (size_t)n) < 0) {
        /* nothing more to say */
    }
    abort();
}

/* ---- the log ---- */

static void put_all(int fd, const void *buf, size_t n)
{
    REAL(write);
    const char *p = buf;
    while (n) {
        ssize_t k = real_write(fd, p, n);
        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0)
            die("writing the undo log");
        p += k;
        n -= (size_t)k;
    }
}

/* Appends one record (the caller holds g.mu). */
__attribute__((format(printf, 1, 2))) static void record(const char *fmt, ...)
{
    char line[3 * PATH_MAX];
    int n = snprintf(line, sizeof line, "%lld ", g.seq);
    va_list ap;
    va_start(ap, fmt);
    n += vsnprintf(line + n, sizeof line - (size_t)n, fmt, ap);
    va_end(ap);
    if (n <= 0 || (size_t)n >= sizeof line - 1) {
        errno = ENAMETOOLONG;
        die("a record too long");
    }
    line[n++] = '\n';
    put_all(g.log_fd, line, (size_t)n);
    g.seq++;
}

/* A name in hex, so that any byte survives a line of text. */
static const char *hex(const char *name, char *out, size_t cap)
{
    size_t i = 0;
    for (; name[i] && 2 * i + 2 < cap; i++)
        snprintf(out + 2 * i, 3, "%02x", (unsigned char)name[i]);
    out[2 * i] = '\0';
    return out;
}

__attribute__((constructor)) static void init(void)
{
    const char *dir = getenv("CAIRN_POWERCUT_DIR");
    const char *log = getenv("CAIRN_POWERCUT_LOG");
    if (!dir || !*dir || !log || !*log)
        return;
    if (!realpath(dir, g.dir))
        die("CAIRN_POWERCUT_DIR");
    g.dir_len = strlen(g.dir);
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/undo.log", log);
    REAL(open);
    g.log_fd = real_open(path, O_WRONLY | O_CREAT | O_EXCL | O_APPEND | O_CLOEXEC, 0600);
    if (g.log_fd < 0)
        die("creating CAIRN_POWERCUT_LOG/undo.log (an old log must be reverted first)");
    snprintf(path, sizeof path, "%s/preimages", log);
    g.pre_fd = real_open(path, O_WRONLY | O_CREAT | O_EXCL | O_APPEND | O_CLOEXEC, 0600);
    if (g.pre_fd < 0)
        die("creating CAIRN_POWERCUT_LOG/preimages");
    snprintf(g.grave, sizeof g.grave, "%s/graveyard", log);
    REAL(mkdir);
    if (real_mkdir(g.grave, 0700) < 0 && errno != EEXIST)
        die("creating CAIRN_POWERCUT_LOG/graveyard");
    char head[PATH_MAX + 64];
    int n = snprintf(head, sizeof head, "# powercut pid %ld dir %s\n", (long)getpid(), g.dir);
    put_all(g.log_fd, head, (size_t)n);
    g.on = 1;
}

/* ---- paths ---- */

static int under(const char *full)
{
    return strncmp(full, g.dir, g.dir_len) == 0 &&
           (full[g.dir_len] == '/' || full[g.dir_len] == '\0');
}

/* The absolute path of (at, path) in out; 0 when it is under the data dir. */
static int resolve(int at, const char *path, char *out)
{
    if (!g.on || !path)
        return -1;
    char base[PATH_MAX];
    if (path[0] == '/')
        snprintf(out, PATH_MAX, "%s", path);
    else if (at == AT_FDCWD ? !getcwd(base, sizeof base) : fd_path(at, base, sizeof base) < 0)
        return -1;
    else if ((size_t)snprintf(out, PATH_MAX, "%s/%s", base, path) >= PATH_MAX)
        return -1;
    return under(out) ? 0 : -1;
}

/* Splits full into its directory's identity and its last name. */
static int parent_of(const char *full, struct stat *dir, const char **name)
{
    char buf[PATH_MAX];
    snprintf(buf, sizeof buf, "%s", full);
    char *slash = strrchr(buf, '/');
    if (!slash || slash == buf)
        return -1;
    *slash = '\0';
    *name = full + (slash - buf) + 1;
    return stat(buf, dir);
}

/* Hard-links what full names into the graveyard, so it can come back. */
static void bury(const char *full, const struct stat *st)
{
    char to[PATH_MAX + 64];
    snprintf(to, sizeof to, "%s/%llu_%llu", g.grave, (unsigned long long)st->st_dev,
             (unsigned long long)st->st_ino);
    REAL(link);
    if (real_link(full, to) < 0 && errno != EEXIST)
        die("keeping a removed file in the graveyard");
}

/* Logs the undo of a change to the name full: kind C (create), L (link),
 * M (mkdir) when it does not exist yet; U (unlink) and X (rmdir) when it
 * does. Returns 0 when a record was written. */
static int name_change(char kind, const char *full)
{
    struct stat dir, st;
    const char *name;
    char h[2 * NAME_MAX + 3];
    if (parent_of(full, &dir, &name) < 0)
        return -1;
    int exists = lstat(full, &st) == 0;
    if ((kind == 'U' || kind == 'X') != exists)
        return -1; /* the call will fail, or changes nothing */
    if (kind == 'U' && !S_ISDIR(st.st_mode))
        bury(full, &st);
    record("%c %llu %llu %s %llu %llu", kind, (unsigned long long)dir.st_dev,
           (unsigned long long)dir.st_ino, hex(name, h, sizeof h),
           exists ? (unsigned long long)st.st_dev : 0ULL,
           exists ? (unsigned long long)st.st_ino : 0ULL);
    return 0;
}

/* ---- file data ---- */

static int is_shm(const char *full)
{
    size_t n = strlen(full);
    return n > 4 && strcmp(full + n - 4, "-shm") == 0;
}

static void track(int fd, const char *full)
{
    struct stat st;
    if (fd < 0 || fd >= FD_MAX || is_shm(full) || fstat(fd, &st) < 0 || !S_ISREG(st.st_mode))
        return;
    g_fds[fd].dev = st.st_dev;
    g_fds[fd].ino = st.st_ino;
    atomic_store(&g_fds[fd].on, 1);
}

/* The file's identity when fd's writes are recorded (and still its). */
static int tracked(int fd, struct stat *st)
{
    if (!g.on || fd < 0 || fd >= FD_MAX || !atomic_load(&g_fds[fd].on))
        return 0;
    if (fstat(fd, st) < 0 || st->st_dev != g_fds[fd].dev || st->st_ino != g_fds[fd].ino) {
        atomic_store(&g_fds[fd].on, 0); /* closed behind the hooks' back */
        return 0;
    }
    return 1;
}

/* Reads len bytes at off from fd's file, also when fd is write-only. */
static void read_back(int fd, void *buf, size_t len, off_t off)
{
    REAL(pread);
    ssize_t n = real_pread(fd, buf, len, off);
    if (n < 0 && errno == EBADF) {
        char link[64];
        snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
        REAL(open);
        int rfd = real_open(link, O_RDONLY | O_CLOEXEC);
        if (rfd < 0)
            die("reopening a write-only file for its preimage");
        n = real_pread(rfd, buf, len, off);
        REAL(close);
        real_close(rfd);
    }
    if (n != (ssize_t)len)
        die("reading a preimage");
}

/* Logs the undo of a change to the bytes of fd's file from off on: its
 * size before, and the bytes in [off, off + len) that exist now. */
static void data_change(int fd, const struct stat *st, off_t off, size_t len)
{
    size_t keep = off < st->st_size ? (size_t)(st->st_size - off) : 0;
    if (keep > len)
        keep = len;
    long long at = g.pre_off;
    if (keep) {
        void *buf = malloc(keep);
        if (!buf)
            die("a preimage buffer");
        read_back(fd, buf, keep, off);
        put_all(g.pre_fd, buf, keep);
        free(buf);
        g.pre_off += (long long)keep;
    }
    record("D %llu %llu %lld %lld %lld %zu", (unsigned long long)st->st_dev,
           (unsigned long long)st->st_ino, (long long)off, (long long)st->st_size, at, keep);
}

/* ---- the hooks: opening ---- */

static int open_common(int at, const char *path, int flags, mode_t mode)
{
    REAL(openat);
    char full[PATH_MAX];
    if (resolve(at, path, full) < 0)
        return real_openat(at, path, flags, mode);
    pthread_mutex_lock(&g.mu);
    struct stat st;
    if (flags & O_CREAT)
        name_change('C', full);
    if ((flags & O_TRUNC) && !(flags & O_CREAT && flags & O_EXCL) && lstat(full, &st) == 0 &&
        S_ISREG(st.st_mode) && st.st_size > 0) {
        REAL(open);
        int rfd = real_open(full, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
        if (rfd >= 0) {
            data_change(rfd, &st, 0, (size_t)st.st_size);
            REAL(close);
            real_close(rfd);
        }
    }
    int fd = real_openat(at, path, flags, mode);
    int e = errno;
    if (fd >= 0)
        track(fd, full);
    pthread_mutex_unlock(&g.mu);
    errno = e;
    return fd;
}

static mode_t mode_arg(int flags, va_list ap)
{
    return (flags & O_CREAT) || (flags & O_TMPFILE) == O_TMPFILE ? (mode_t)va_arg(ap, int) : 0;
}

int open(const char *path, int flags, ...)
{
    va_list ap;
    va_start(ap, flags);
    mode_t mode = mode_arg(flags, ap);
    va_end(ap);
    return open_common(AT_FDCWD, path, flags, mode);
}

int open64(const char *path, int flags, ...)
{
    va_list ap;
    va_start(ap, flags);
    mode_t mode = mode_arg(flags, ap);
    va_end(ap);
    return open_common(AT_FDCWD, path, flags, mode);
}

int openat(int at, const char *path, int flags, ...)
{
    va_list ap;
    va_start(ap, flags);
    mode_t mode = mode_arg(flags, ap);
    va_end(ap);
    return open_common(at, path, flags, mode);
}

int openat64(int at, const char *path, int flags, ...)
{
    va_list ap;
    va_start(ap, flags);
    mode_t mode = mode_arg(flags, ap);
    va_end(ap);
    return open_common(at, path, flags, mode);
}

int __open_2(const char *path, int flags);
int __open_2(const char *path, int flags)
{
    return open_common(AT_FDCWD, path, flags, 0);
}

int __open64_2(const char *path, int flags);
int __open64_2(const char *path, int flags)
{
    return open_common(AT_FDCWD, path, flags, 0);
}

int __openat_2(int at, const char *path, int flags);
int __openat_2(int at, const char *path, int flags)
{
    return open_common(at, path, flags, 0);
}

int creat(const char *path, mode_t mode)
{
    return open_common(AT_FDCWD, path, O_CREAT | O_WRONLY | O_TRUNC, mode);
}

int close(int fd)
{
    REAL(close);
    if (fd >= 0 && fd < FD_MAX)
        atomic_store(&g_fds[fd].on, 0);
    return real_close(fd);
}

/* ---- the hooks: data ---- */

ssize_t write(int fd, const void *buf, size_t n)
{
    REAL(write);
    struct stat st;
    if (!tracked(fd, &st))
        return real_write(fd, buf, n);
    pthread_mutex_lock(&g.mu);
    ssize_t r = -1;
    int e;
    if (!tracked(fd, &st)) {
        r = real_write(fd, buf, n);
    } else {
        REAL(fcntl);
        off_t off = real_fcntl(fd, F_GETFL) & O_APPEND ? st.st_size : lseek(fd, 0, SEEK_CUR);
        if (off >= 0)
            data_change(fd, &st, off, n);
        r = real_write(fd, buf, n);
    }
    e = errno;
    pthread_mutex_unlock(&g.mu);
    errno = e;
    return r;
}

static ssize_t pwrite_common(int fd, const void *buf, size_t n, off_t off)
{
    REAL(pwrite);
    struct stat st;
    if (!tracked(fd, &st))
        return real_pwrite(fd, buf, n, off);
    pthread_mutex_lock(&g.mu);
    if (tracked(fd, &st) && off >= 0)
        data_change(fd, &st, off, n);
    ssize_t r = real_pwrite(fd, buf, n, off);
    int e = errno;
    pthread_mutex_unlock(&g.mu);
    errno = e;
    return r;
}

ssize_t pwrite(int fd, const void *buf, size_t n, off_t off)
{
    return pwrite_common(fd, buf, n, off);
}

ssize_t pwrite64(int fd, const void *buf, size_t n, off64_t off)
{
    return pwrite_common(fd, buf, n, (off_t)off);
}

static int truncate_common(int fd, off_t len)
{
    REAL(ftruncate);
    struct stat st;
    if (!tracked(fd, &st))
        return real_ftruncate(fd, len);
    pthread_mutex_lock(&g.mu);
    /* Growing needs only the size back; shrinking the bytes cut off too. */
    if (tracked(fd, &st) && len >= 0)
        data_change(fd, &st, len, len < st.st_size ? (size_t)(st.st_size - len) : 0);
    int r = real_ftruncate(fd, len);
    int e = errno;
    pthread_mutex_unlock(&g.mu);
    errno = e;
    return r;
}

int ftruncate(int fd, off_t len)
{
    return truncate_common(fd, len);
}

int ftruncate64(int fd, off64_t len)
{
    return truncate_common(fd, (off_t)len);
}

/* A successful sync of a file or directory under the data dir covers
 * every record logged before it began. */
static int sync_common(int fd, int data_only)
{
    REAL(fsync);
    REAL(fdatasync);
    char full[PATH_MAX];
    struct stat st;
    if (!g.on || fd_path(fd, full, sizeof full) < 0 || !under(full) || fstat(fd, &st) < 0)
        return data_only ? real_fdatasync(fd) : real_fsync(fd);
    pthread_mutex_lock(&g.mu);
    long long upto = g.seq;
    pthread_mutex_unlock(&g.mu);
    int r = data_only ? real_fdatasync(fd) : real_fsync(fd);
    int e = errno;
    if (r == 0) {
        pthread_mutex_lock(&g.mu);
        record("S %llu %llu %lld", (unsigned long long)st.st_dev, (unsigned long long)st.st_ino,
               upto);
        pthread_mutex_unlock(&g.mu);
    }
    errno = e;
    return r;
}

int fsync(int fd)
{
    return sync_common(fd, 0);
}

int fdatasync(int fd)
{
    return sync_common(fd, 1);
}

/* ---- the hooks: names ---- */

static int unlink_common(int at, const char *path, int flags)
{
    REAL(unlinkat);
    char full[PATH_MAX];
    if (resolve(at, path, full) < 0)
        return real_unlinkat(at, path, flags);
    pthread_mutex_lock(&g.mu);
    name_change(flags & AT_REMOVEDIR ? 'X' : 'U', full);
    int r = real_unlinkat(at, path, flags);
    int e = errno;
    pthread_mutex_unlock(&g.mu);
    errno = e;
    return r;
}

int unlink(const char *path)
{
    return unlink_common(AT_FDCWD, path, 0);
}

int unlinkat(int at, const char *path, int flags)
{
    return unlink_common(at, path, flags);
}

int rmdir(const char *path)
{
    return unlink_common(AT_FDCWD, path, AT_REMOVEDIR);
}

static int mkdir_common(int at, const char *path, mode_t mode)
{
    REAL(mkdirat);
    char full[PATH_MAX];
    if (resolve(at, path, full) < 0)
        return real_mkdirat(at, path, mode);
    pthread_mutex_lock(&g.mu);
    name_change('M', full);
    int r = real_mkdirat(at, path, mode);
    int e = errno;
    pthread_mutex_unlock(&g.mu);
    errno = e;
    return r;
}

int mkdir(const char *path, mode_t mode)
{
    return mkdir_common(AT_FDCWD, path, mode);
}

int mkdirat(int at, const char *path, mode_t mode)
{
    return mkdir_common(at, path, mode);
}

static int link_common(int from_at, const char *from, int to_at, const char *to, int flags)
{
    REAL(linkat);
    char full[PATH_MAX];
    if (resolve(to_at, to, full) < 0)
        return real_linkat(from_at, from, to_at, to, flags);
    pthread_mutex_lock(&g.mu);
    name_change('L', full);
    int r = real_linkat(from_at, from, to_at, to, flags);
    int e = errno;
    pthread_mutex_unlock(&g.mu);
    errno = e;
    return r;
}

int link(const char *from, const char *to)
{
    return link_common(AT_FDCWD, from, AT_FDCWD, to, 0);
}

int linkat(int from_at, const char *from, int to_at, const char *to, int flags)
{
    return link_common(from_at, from, to_at, to, flags);
}

/* A rename inside the data dir: its undo moves the file back and returns
 * what it replaced from the graveyard. (Across the data dir's border it
 * is not recorded; cairnd does not do that.) */
static int rename_common(int from_at, const char *from, int to_at, const char *to,
                         unsigned flags)
{
    REAL(renameat2);
    char src[PATH_MAX], dst[PATH_MAX];
    if (resolve(from_at, from, src) < 0 || resolve(to_at, to, dst) < 0)
        return real_renameat2(from_at, from, to_at, to, flags);
    pthread_mutex_lock(&g.mu);
    struct stat sdir, ddir, st, victim;
    const char *sname, *dname;
    char sh[2 * NAME_MAX + 3], dh[2 * NAME_MAX + 3];
    if (parent_of(src, &sdir, &sname) == 0 && parent_of(dst, &ddir, &dname) == 0 &&
        lstat(src, &st) == 0) {
        int replaces = lstat(dst, &victim) == 0;
        if (replaces && !S_ISDIR(victim.st_mode))
            bury(dst, &victim);
        record("R %llu %llu %s %llu %llu %s %llu %llu %llu %llu",
               (unsigned long long)sdir.st_dev, (unsigned long long)sdir.st_ino,
               hex(sname, sh, sizeof sh), (unsigned long long)ddir.st_dev,
               (unsigned long long)ddir.st_ino, hex(dname, dh, sizeof dh),
               (unsigned long long)st.st_dev, (unsigned long long)st.st_ino,
               replaces ? (unsigned long long)victim.st_dev : 0ULL,
               replaces ? (unsigned long long)victim.st_ino : 0ULL);
    }
    int r = real_renameat2(from_at, from, to_at, to, flags);
    int e = errno;
    pthread_mutex_unlock(&g.mu);
    errno = e;
    return r;
}

int rename(const char *from, const char *to)
{
    return rename_common(AT_FDCWD, from, AT_FDCWD, to, 0);
}

int renameat(int from_at, const char *from, int to_at, const char *to)
{
    return rename_common(from_at, from, to_at, to, 0);
}

int renameat2(int from_at, const char *from, int to_at, const char *to, unsigned flags)
{
    return rename_common(from_at, from, to_at, to, flags);
}
