/* For the LD_PRELOAD shims (each a module of its own, hence static): the
 * path an open file descriptor names, from /proc/self/fd. */
#ifndef CAIRN_FAULT_FD_PATH_H
#define CAIRN_FAULT_FD_PATH_H

#include <stdio.h>
#include <unistd.h>

/* The path of fd into out (cap bytes); 0, or -1 when it cannot be read. */
static int fd_path(int fd, char *out, size_t cap)
{
    char link[64];
    snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
    ssize_t n = readlink(link, out, cap - 1);
    if (n < 0)
        return -1;
    out[n] = '\0';
    return 0;
}

#endif
