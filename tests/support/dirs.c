#include "dirs.h"

#include <dirent.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int ct_temp_dir(char *out, size_t cap, const char *prefix)
{
    const char *tmp = getenv("TMPDIR");
    int n = snprintf(out, cap, "%s/%s-XXXXXX", tmp && *tmp ? tmp : "/tmp", prefix);
    if (n < 0 || (size_t)n >= cap)
        return -1;
    return mkdtemp(out) ? 0 : -1;
}

/* Counts the entries below path; with remove, also removes them, adding
 * what it could not remove to *left. */
static int walk(const char *path, bool remove, int *left)
{
    DIR *d = opendir(path);
    if (!d)
        return 0;
    int count = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        count++;
        char child[4096];
        int n = snprintf(child, sizeof child, "%s/%s", path, e->d_name);
        if (n < 0 || (size_t)n >= sizeof child) {
            ++*left;
            continue;
        }
        struct stat st;
        if (lstat(child, &st) == 0 && S_ISDIR(st.st_mode)) {
            count += walk(child, remove, left);
            if (remove && rmdir(child) != 0)
                ++*left;
        } else if (remove && unlink(child) != 0) {
            ++*left;
        }
    }
    closedir(d);
    return count;
}

int ct_rmrf(const char *path)
{
    int left = 0;
    walk(path, true, &left);
    if (rmdir(path) != 0)
        left++;
    return left ? -1 : 0;
}

int ct_count_entries(const char *path)
{
    int left = 0;
    return walk(path, false, &left);
}
