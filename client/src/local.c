/* Local file helpers from the original resilience module, and the atomic
 * file writes libcairn's downloads use. */
#include "internal.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

void cairn_content_hash(const void *data, size_t len, char out[65])
{
    unsigned char md[32];
    unsigned int n = 0;
    if (!EVP_Digest(len ? data : "", len, md, &n, EVP_sha256(), NULL)) {
        out[0] = '\0';
        return;
    }
    cairn__hex(out, md, 32);
}

static cairn_status io_fail(cairn_error *err, const char *what, const char *path, int e)
{
    return cairn__fail(err, CAIRN_IO, "%s %s: %s", what, path, strerror(e));
}

/* fsync of the directory dir; an error names it. */
static cairn_status sync_dir(const char *dir, cairn_error *err)
{
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return io_fail(err, "cannot open directory", dir, errno);
    cairn_status rc = fsync(fd) < 0 ? io_fail(err, "cannot sync directory", dir, errno) : CAIRN_OK;
    close(fd);
    return rc;
}

/* Makes directory dir if missing; a new one is synced into its parent,
 * so that it outlives a power cut with the file written into it. */
static cairn_status make_dir(char *dir, cairn_error *err)
{
    if (mkdir(dir, 0755) < 0)
        return errno == EEXIST ? CAIRN_OK : io_fail(err, "cannot create directory", dir, errno);
    char *slash = strrchr(dir, '/');
    if (!slash)
        return sync_dir(".", err);
    if (slash == dir)
        return sync_dir("/", err);
    *slash = '\0';
    cairn_status rc = sync_dir(dir, err);
    *slash = '/';
    return rc;
}

/* mkdir -p of path's parent directory. */
static cairn_status make_parents(const char *path, cairn_error *err)
{
    char *copy = strdup(path);
    if (!copy)
        return cairn__fail(err, CAIRN_NO_MEMORY, "out of memory");
    char *dir = dirname(copy);
    cairn_status rc = CAIRN_OK;
    for (char *p = dir + 1; *p && !rc; p++) {
        if (*p != '/')
            continue;
        *p = '\0';
        rc = make_dir(dir, err);
        *p = '/';
    }
    if (!rc)
        rc = make_dir(dir, err);
    free(copy);
    return rc;
}

cairn_status cairn__atomic_open(const char *path, char **tmp, int *fd, cairn_error *err)
{
    cairn_status rc = make_parents(path, err);
    if (rc)
        return rc;
    char r[33];
    cairn_random_key(r);
    size_t n = strlen(path) + 32;
    *tmp = malloc(n);
    if (!*tmp)
        return cairn__fail(err, CAIRN_NO_MEMORY, "out of memory");
    snprintf(*tmp, n, "%s.tmp-%.12s", path, r + 20); /* the random part */
    *fd = open(*tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (*fd < 0) {
        rc = io_fail(err, "cannot create", *tmp, errno);
        free(*tmp);
        *tmp = NULL;
        return rc;
    }
    /* Replacing a file keeps its permissions: a 0600 file stays 0600. */
    struct stat st;
    if (stat(path, &st) == 0 && S_ISREG(st.st_mode))
        (void)fchmod(*fd, st.st_mode & 07777);
    return rc;
}

cairn_status cairn__atomic_commit(const char *path, char *tmp, int fd, cairn_error *err)
{
    cairn_status rc = CAIRN_OK;
    if (fsync(fd) < 0)
        rc = io_fail(err, "cannot sync", tmp, errno);
    if (close(fd) < 0 && !rc)
        rc = io_fail(err, "cannot close", tmp, errno);
    if (!rc && rename(tmp, path) < 0)
        rc = io_fail(err, "cannot rename into", path, errno);
    if (rc) {
        unlink(tmp);
    } else {
        /* The rename is durable once the directory is: until then the
         * write is not done, and a failed sync is reported (the new
         * content may already be in place, but not known to last). */
        char *copy = strdup(path);
        rc = copy ? sync_dir(dirname(copy), err)
                  : cairn__fail(err, CAIRN_NO_MEMORY, "out of memory");
        free(copy);
    }
    free(tmp);
    return rc;
}

void cairn__atomic_abort(char *tmp, int fd)
{
    if (fd >= 0)
        close(fd);
    if (tmp)
        unlink(tmp);
    free(tmp);
}

/* True when path holds exactly data. */
static bool same_content(const char *path, const void *data, size_t len)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return false;
    struct stat st;
    bool same = fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && (uint64_t)st.st_size == len;
    const unsigned char *want = data;
    unsigned char buf[65536];
    size_t off = 0;
    while (same && off < len) {
        ssize_t n = read(fd, buf, len - off < sizeof buf ? len - off : sizeof buf);
        if (n <= 0 || memcmp(buf, want + off, (size_t)n) != 0)
            same = false;
        else
            off += (size_t)n;
    }
    close(fd);
    return same;
}

cairn_status cairn__write_all(int fd, const void *data, size_t len, const char *path,
                              cairn_error *err)
{
    const char *p = data;
    while (len) {
        ssize_t n = write(fd, p, len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return io_fail(err, "cannot write", path, n < 0 ? errno : ENOSPC);
        p += n;
        len -= (size_t)n;
    }
    return CAIRN_OK;
}

cairn_status cairn_write_if_changed(const char *path, const void *data, size_t len, bool *written,
                                    cairn_error *err)
{
    cairn__error_clear(err);
    if (written)
        *written = false;
    if (!path || !*path)
        return cairn__fail(err, CAIRN_INVALID_ARGUMENT, "path: must not be empty");
    if (len && !data)
        return cairn__fail(err, CAIRN_INVALID_ARGUMENT, "data: NULL with a length of %zu", len);
    if (same_content(path, data, len))
        return CAIRN_OK;
    char *tmp;
    int fd;
    cairn_status rc = cairn__atomic_open(path, &tmp, &fd, err);
    if (rc)
        return rc;
    if ((rc = cairn__write_all(fd, data, len, tmp, err))) {
        cairn__atomic_abort(tmp, fd);
        return rc;
    }
    rc = cairn__atomic_commit(path, tmp, fd, err);
    if (!rc && written)
        *written = true;
    return rc;
}
