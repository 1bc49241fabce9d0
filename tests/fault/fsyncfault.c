/* LD_PRELOAD shim for tests: fsync and fdatasync that fail as on a disk
 * whose writeback failed, and a record of which directories were synced.
 * Read at each call (so a test that preloads the shim into itself can set
 * them as it goes):
 *   CAIRN_FAULT_FSYNC_EIO=PATTERN  fsync or fdatasync of a file or
 *       directory whose path (as /proc/self/fd shows it) matches the
 *       fnmatch(3) PATTERN ('*' matches '/' too) fails with EIO, without
 *       syncing;
 *   CAIRN_FAULT_FSYNC_ARM=FILE     with it, only while FILE exists, so a
 *       test can let start-up pass and arm the fault when it wants;
 *   CAIRN_FAULT_FSYNC_LOG=FILE     every fsync or fdatasync of a
 *       directory appends the directory's path and a newline to FILE,
 *       failed or not (one write with O_APPEND per line, so lines from
 *       threads do not mix). */
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <fnmatch.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fd_path.h"

/* Lets a test check that it runs with the shim preloaded. */
int cairn_fault_fsync_shim = 1;

static void log_dir(const char *log, int fd, const char *path)
{
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISDIR(st.st_mode))
        return;
    char line[4200];
    int n = snprintf(line, sizeof line, "%s\n", path);
    if (n <= 0 || (size_t)n >= sizeof line)
        return;
    int lfd = open(log, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
    if (lfd < 0)
        return;
    if (write(lfd, line, (size_t)n) != n) {
        /* the test will miss the line and say so */
    }
    close(lfd);
}

/* True when this sync of fd must fail. */
static int must_fail(int fd)
{
    const char *pattern = getenv("CAIRN_FAULT_FSYNC_EIO");
    const char *log = getenv("CAIRN_FAULT_FSYNC_LOG");
    if (!(pattern && *pattern) && !(log && *log))
        return 0;
    int saved = errno;
    char path[4096];
    int fail = 0;
    if (fd_path(fd, path, sizeof path) == 0) {
        if (log && *log)
            log_dir(log, fd, path);
        if (pattern && *pattern && fnmatch(pattern, path, 0) == 0) {
            const char *arm = getenv("CAIRN_FAULT_FSYNC_ARM");
            fail = !(arm && *arm) || access(arm, F_OK) == 0;
        }
    }
    errno = saved;
    return fail;
}

int fsync(int fd)
{
    static int (*real)(int);
    if (!real)
        real = (int (*)(int))dlsym(RTLD_NEXT, "fsync");
    if (must_fail(fd)) {
        errno = EIO;
        return -1;
    }
    return real(fd);
}

int fdatasync(int fd)
{
    static int (*real)(int);
    if (!real)
        real = (int (*)(int))dlsym(RTLD_NEXT, "fdatasync");
    if (must_fail(fd)) {
        errno = EIO;
        return -1;
    }
    return real(fd);
}
