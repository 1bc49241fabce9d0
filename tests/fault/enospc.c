/* LD_PRELOAD shim for tests: a disk that fails writes. Sockets and pipes
 * are untouched. Two ways, chosen by the environment (read at start-up):
 *
 *   CAIRN_FAULT_ENOSPC_AFTER=N     a disk that fills up: once the process
 *       has written N bytes to regular files, every further write to a
 *       regular file fails with ENOSPC, until the process exits.
 *
 *   CAIRN_FAULT_WRITE=MODE         writes to chosen files fail, in MODE:
 *       eio-once     the first one fails with EIO, and no other;
 *       enospc-grow  every one that would grow its file (offset + length
 *                    past the file's size) fails with ENOSPC, as on a full
 *                    disk; writes inside the file succeed.
 *     with
 *   CAIRN_FAULT_WRITE_PATHS=P[:P]  the chosen files: paths (as
 *       /proc/self/fd shows them) matching one of the fnmatch(3) patterns
 *       ('*' matches '/' too);
 *   CAIRN_FAULT_WRITE_ARM=FILE     only while FILE exists, so that start-up
 *       passes and a test arms (and disarms) the fault when it wants;
 *   CAIRN_FAULT_WRITE_SPILL=T      only the header of a SQLite WAL frame
 *       (a 24-byte write) that is not a commit frame (its bytes 4..7 are
 *       zero) and is at least the T-th frame header written to the chosen
 *       files since the last commit frame. SQLite writes such frames on
 *       COMMIT (all but the last) and when a transaction's dirty pages
 *       outgrow its page cache and it spills them while still open. With T
 *       above the frames a transaction of one caller writes in all, the
 *       fault lands in a spill: in a statement, in the middle of a
 *       transaction of more than one caller. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <dlfcn.h>
#include <errno.h>
#include <fnmatch.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

enum { MODE_NONE, MODE_EIO_ONCE, MODE_ENOSPC_GROW };

static long long g_limit = -1;
static atomic_llong g_used;
static int g_mode = MODE_NONE;
static const char *g_paths, *g_arm;
static long g_spill;          /* 0: any write */
static atomic_long g_frames;  /* frame headers since the last commit frame */
static atomic_int g_fired; /* eio-once: the one failure happened */

__attribute__((constructor)) static void init(void)
{
    const char *v = getenv("CAIRN_FAULT_ENOSPC_AFTER");
    if (v && *v)
        g_limit = atoll(v);
    const char *mode = getenv("CAIRN_FAULT_WRITE");
    if (mode && strcmp(mode, "eio-once") == 0)
        g_mode = MODE_EIO_ONCE;
    else if (mode && strcmp(mode, "enospc-grow") == 0)
        g_mode = MODE_ENOSPC_GROW;
    g_paths = getenv("CAIRN_FAULT_WRITE_PATHS");
    g_arm = getenv("CAIRN_FAULT_WRITE_ARM");
    const char *spill = getenv("CAIRN_FAULT_WRITE_SPILL");
    g_spill = spill && *spill ? atol(spill) : 0;
}

/* True when path matches one of the ':'-separated patterns. */
static int chosen(const char *path)
{
    if (!g_paths || !*g_paths)
        return 0;
    char pat[1024];
    for (const char *p = g_paths; *p;) {
        size_t n = strcspn(p, ":");
        if (n < sizeof pat) {
            memcpy(pat, p, n);
            pat[n] = '\0';
            if (fnmatch(pat, path, 0) == 0)
                return 1;
        }
        p += n;
        if (*p == ':')
            p++;
    }
    return 0;
}

/* The errno a write of n bytes at off (-1: the file offset) to fd must
 * fail with, or 0. */
static int fault(int fd, const void *buf, size_t n, off_t off)
{
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode))
        return 0;
    if (g_limit >= 0 && atomic_fetch_add(&g_used, (long long)n) + (long long)n > g_limit)
        return ENOSPC;
    if (g_mode == MODE_NONE || (g_mode == MODE_EIO_ONCE && atomic_load(&g_fired)))
        return 0;
    const unsigned char *h = buf;
    if (g_spill && n != 24)
        return 0;
    char link[64], path[4096];
    snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
    ssize_t len = readlink(link, path, sizeof path - 1);
    if (len < 0)
        return 0;
    path[len] = '\0';
    if (!chosen(path))
        return 0;
    if (g_spill) {
        if (h[4] || h[5] || h[6] || h[7]) {
            atomic_store(&g_frames, 0);
            return 0;
        }
        if (atomic_fetch_add(&g_frames, 1) + 1 < g_spill)
            return 0;
    }
    if (g_arm && *g_arm && access(g_arm, F_OK) != 0)
        return 0;
    if (g_mode == MODE_EIO_ONCE) {
        int no = 0;
        return atomic_compare_exchange_strong(&g_fired, &no, 1) ? EIO : 0;
    }
    if (off < 0)
        off = lseek(fd, 0, SEEK_CUR);
    return off >= 0 && (long long)off + (long long)n > (long long)st.st_size ? ENOSPC : 0;
}

ssize_t write(int fd, const void *buf, size_t n)
{
    static ssize_t (*real)(int, const void *, size_t);
    if (!real)
        real = (ssize_t(*)(int, const void *, size_t))dlsym(RTLD_NEXT, "write");
    int saved = errno, e = fault(fd, buf, n, -1);
    errno = e ? e : saved;
    return e ? -1 : real(fd, buf, n);
}

ssize_t pwrite(int fd, const void *buf, size_t n, off_t off)
{
    static ssize_t (*real)(int, const void *, size_t, off_t);
    if (!real)
        real = (ssize_t(*)(int, const void *, size_t, off_t))dlsym(RTLD_NEXT, "pwrite");
    int saved = errno, e = fault(fd, buf, n, off);
    errno = e ? e : saved;
    return e ? -1 : real(fd, buf, n, off);
}

ssize_t pwrite64(int fd, const void *buf, size_t n, off64_t off)
{
    static ssize_t (*real)(int, const void *, size_t, off64_t);
    if (!real)
        real = (ssize_t(*)(int, const void *, size_t, off64_t))dlsym(RTLD_NEXT, "pwrite64");
    int saved = errno, e = fault(fd, buf, n, (off_t)off);
    errno = e ? e : saved;
    return e ? -1 : real(fd, buf, n, off);
}
