/* The regression runner: a main() for a fuzz target built without
 * libFuzzer (the gcc and ASan builds). It runs LLVMFuzzerTestOneInput
 * once over every file of the directories given (seed corpus,
 * regressions), in name order, so every seed and every kept crash runs in
 * `make test` and `make asan`. A crash aborts, as under libFuzzer; a
 * missing directory counts as empty. Fails when no input ran at all. */
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Runs the file at path; returns 0, or -1 when it cannot be read. */
static int run_file(const char *path)
{
    struct stat st;
    FILE *f = fopen(path, "rb");
    if (!f || fstat(fileno(f), &st) != 0 || st.st_size < 0) {
        if (f)
            fclose(f);
        return -1;
    }
    size_t len = (size_t)st.st_size;
    uint8_t *buf = malloc(len ? len : 1);
    int rc = buf && fread(buf, 1, len, f) == len ? 0 : -1;
    fclose(f);
    if (rc == 0)
        LLVMFuzzerTestOneInput(buf, len);
    free(buf);
    return rc;
}

static int by_name(const struct dirent **a, const struct dirent **b)
{
    return strcmp((*a)->d_name, (*b)->d_name);
}

static int not_hidden(const struct dirent *e)
{
    return e->d_name[0] != '.';
}

/* Runs every file of dir; returns how many, or -1 on a read error. */
static long run_dir(const char *dir)
{
    struct dirent **names;
    int n = scandir(dir, &names, not_hidden, by_name);
    if (n < 0)
        return 0;
    long ran = 0;
    for (int i = 0; i < n; i++) {
        char path[4096];
        snprintf(path, sizeof path, "%s/%s", dir, names[i]->d_name);
        if (ran >= 0 && run_file(path) != 0) {
            fprintf(stderr, "%s: cannot read\n", path);
            ran = -1;
        } else if (ran >= 0) {
            ran++;
        }
        free(names[i]);
    }
    free(names);
    return ran;
}

int main(int argc, char **argv)
{
    long total = 0;
    for (int i = 1; i < argc; i++) {
        long ran = run_dir(argv[i]);
        if (ran < 0)
            return 1;
        printf("%s: %ld inputs\n", argv[i], ran);
        total += ran;
    }
    if (total == 0) {
        fprintf(stderr, "no inputs ran: the seed corpus is missing\n");
        return 1;
    }
    return 0;
}
