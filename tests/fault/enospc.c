/* LD_PRELOAD shim for tests: a disk that fills up. Once the process has
 * written CAIRN_FAULT_ENOSPC_AFTER bytes to regular files, every further
 * write to a regular file fails with ENOSPC, as on a full disk, until the
 * process exits. Sockets and pipes are untouched. */
#include <dlfcn.h>
#include <errno.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

static long long g_limit = -1;
static atomic_llong g_used;

__attribute__((constructor)) static void init(void)
{
    const char *v = getenv("CAIRN_FAULT_ENOSPC_AFTER");
    if (v && *v)
        g_limit = atoll(v);
}

/* True when a write of n bytes to fd must fail. */
static int full(int fd, size_t n)
{
    struct stat st;
    if (g_limit < 0 || fstat(fd, &st) != 0 || !S_ISREG(st.st_mode))
        return 0;
    if (atomic_fetch_add(&g_used, (long long)n) + (long long)n <= g_limit)
        return 0;
    errno = ENOSPC;
    return 1;
}

ssize_t write(int fd, const void *buf, size_t n)
{
    static ssize_t (*real)(int, const void *, size_t);
    if (!real)
        real = (ssize_t(*)(int, const void *, size_t))dlsym(RTLD_NEXT, "write");
    return full(fd, n) ? -1 : real(fd, buf, n);
}

ssize_t pwrite(int fd, const void *buf, size_t n, off_t off)
{
    static ssize_t (*real)(int, const void *, size_t, off_t);
    if (!real)
        real = (ssize_t(*)(int, const void *, size_t, off_t))dlsym(RTLD_NEXT, "pwrite");
    return full(fd, n) ? -1 : real(fd, buf, n, off);
}

ssize_t pwrite64(int fd, const void *buf, size_t n, off64_t off)
{
    static ssize_t (*real)(int, const void *, size_t, off64_t);
    if (!real)
        real = (ssize_t(*)(int, const void *, size_t, off64_t))dlsym(RTLD_NEXT, "pwrite64");
    return full(fd, n) ? -1 : real(fd, buf, n, off);
}
