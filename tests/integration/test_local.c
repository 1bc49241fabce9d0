/* libcairn's local helpers, carried over from the original resilience
 * module: cairn_content_hash (its content_hash tests) and
 * cairn_write_if_changed (its write_if_changed tests). No server: these
 * run on the local file system in a fresh temporary directory. */
#include "cairn_test.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* Known SHA-256 values, computed independently (sha256sum, hashlib). */
#define SHA_EMPTY "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
#define SHA_ABC "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
#define SHA_HELLO_WORLD "b94d27b9934d3e08a52e52d7da7dabfac484efe37a5380ee9088f7ace2efcde9"
#define SHA_BYTES_0_255 "40aff2e9d2d8922e47afd4648e6967497158785fbd1da870e7110266bf944880"
#define SHA_A_NUL_B_NUL "8fb20ef63ced4145fc2e983ffe597d1dcff39154c3bf21f0fa9dde6a0c50fdc9"
#define UNICODE_TEXT                                                                             \
    "h\xc3\xa9llo w\xc3\xb6rld \xe2\x80\x94 \xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e \xf0\x9f\x9a\x80"
#define SHA_UNICODE "3c159d058e8c31e25111bb11c9ee509f80746dccc86a8a2f377d40aeb9338f2b"

typedef struct fixture {
    char dir[256];
    int next;                     /* per-test subdirectory counter */
} fixture;

static int setup(void **state)
{
    fixture *f = calloc(1, sizeof *f);
    if (!f)
        return -1;
    if (ct_temp_dir(f->dir, sizeof f->dir, "cairn-local") < 0)
        return -1;
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;
    /* Directories a test made read-only must be writable again to go. */
    char ro[300];
    snprintf(ro, sizeof ro, "%s/readonly", f->dir);
    chmod(ro, 0755);
    ct_rmrf(f->dir);
    free(f);
    return 0;
}

/* A fresh empty directory for one test. */
static void test_dir(fixture *f, const char *name, char *out, size_t cap)
{
    snprintf(out, cap, "%s/%02d-%s", f->dir, f->next++, name);
    assert_int_equal(mkdir(out, 0755), 0);
}

static void assert_file_holds(const char *path, const void *data, size_t len)
{
    size_t n;
    char *got = ct_read_file(path, &n);
    assert_non_null(got);
    assert_int_equal(n, len);
    if (len)
        assert_memory_equal(got, data, len);
    free(got);
}

/* Asserts dir holds exactly the given names (no temporary files). */
static void assert_dir_holds(const char *dir, const char *const *names, size_t n)
{
    DIR *d = opendir(dir);
    assert_non_null(d);
    size_t seen = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        bool known = false;
        for (size_t i = 0; i < n; i++)
            known = known || strcmp(e->d_name, names[i]) == 0;
        if (!known)
            fprintf(stderr, "unexpected entry in %s: %s\n", dir, e->d_name);
        assert_true(known);
        seen++;
    }
    closedir(d);
    assert_int_equal(seen, n);
}

/* ---- content hash ---- */

/* content_hash_string: a text's hash is its SHA-256 as 64 lowercase hex digits. */
static void content_hash_string(void **state)
{
    (void)state;
    char out[65];
    cairn_content_hash("hello world", 11, out);
    assert_string_equal(out, SHA_HELLO_WORLD);
    assert_int_equal(strlen(out), 64);
    for (int i = 0; i < 64; i++)
        assert_non_null(strchr("0123456789abcdef", out[i]));
    cairn_content_hash(UNICODE_TEXT, strlen(UNICODE_TEXT), out);
    assert_string_equal(out, SHA_UNICODE); /* UTF-8 bytes as they are */
}

/* content_hash_bytes: arbitrary bytes, NULs included, are hashed whole. */
static void content_hash_bytes(void **state)
{
    (void)state;
    unsigned char all[256];
    for (int i = 0; i < 256; i++)
        all[i] = (unsigned char)i;
    char out[65];
    cairn_content_hash(all, sizeof all, out);
    assert_string_equal(out, SHA_BYTES_0_255);
    cairn_content_hash("a\0b\0", 4, out);
    assert_string_equal(out, SHA_A_NUL_B_NUL); /* not cut at the first NUL */
    char cut[65];
    cairn_content_hash("a", 1, cut);
    assert_string_not_equal(out, cut);
}

/* content_hash_empty: no bytes (even a NULL pointer) hash to SHA-256 of "". */
static void content_hash_empty(void **state)
{
    (void)state;
    char out[65];
    cairn_content_hash("", 0, out);
    assert_string_equal(out, SHA_EMPTY);
    cairn_content_hash(NULL, 0, out);
    assert_string_equal(out, SHA_EMPTY);
}

/* content_hash_deterministic: the same bytes give the same hash every time. */
static void content_hash_deterministic(void **state)
{
    (void)state;
    char a[65], b[65];
    for (int i = 0; i < 100; i++) {
        cairn_content_hash("same content", 12, a);
        cairn_content_hash("same content", 12, b);
        assert_string_equal(a, b);
    }
    char *copy = strdup("same content"); /* another buffer, same bytes */
    cairn_content_hash(copy, 12, b);
    assert_string_equal(a, b);
    free(copy);
}

/* content_hash_different: distinct inputs give distinct hashes (one bit, one byte longer). */
static void content_hash_different(void **state)
{
    (void)state;
    char a[65], b[65], c[65];
    cairn_content_hash("content-a", 9, a);
    cairn_content_hash("content-b", 9, b);
    cairn_content_hash("content-a ", 10, c);
    assert_string_not_equal(a, b);
    assert_string_not_equal(a, c);
    assert_string_not_equal(b, c);
    char x[65], y[65];
    cairn_content_hash("\x00", 1, x);
    cairn_content_hash("\x01", 1, y);
    assert_string_not_equal(x, y);
}

/* content_hash_known_vector: "abc" hashes to the FIPS 180-2 test vector. */
static void content_hash_known_vector(void **state)
{
    (void)state;
    char out[65];
    cairn_content_hash("abc", 3, out);
    assert_string_equal(out, SHA_ABC);
}

/* ---- write_if_changed ---- */

/* write_if_changed_new_file: a missing file is written with the exact bytes. */
static void write_if_changed_new_file(void **state)
{
    fixture *f = *state;
    char dir[300], path[400];
    test_dir(f, "new", dir, sizeof dir);
    snprintf(path, sizeof path, "%s/out.txt", dir);
    bool written = false;
    cairn_error err;
    assert_int_equal(cairn_write_if_changed(path, "first\n", 6, &written, &err), CAIRN_OK);
    assert_true(written);
    assert_file_holds(path, "first\n", 6);
    const char *names[] = {"out.txt"};
    assert_dir_holds(dir, names, 1);
}

/* write_if_changed_skips_identical: the same content again is not written (inode, mtime kept). */
static void write_if_changed_skips_identical(void **state)
{
    fixture *f = *state;
    char dir[300], path[400];
    test_dir(f, "same", dir, sizeof dir);
    snprintf(path, sizeof path, "%s/out.txt", dir);
    bool written = false;
    cairn_error err;
    assert_int_equal(cairn_write_if_changed(path, "stable", 6, &written, &err), CAIRN_OK);
    assert_true(written);
    /* Put the mtime in the past so any rewrite would visibly move it. */
    struct timespec past[2] = {{.tv_sec = 1000000000}, {.tv_sec = 1000000000}};
    assert_int_equal(utimensat(AT_FDCWD, path, past, 0), 0);
    struct stat before, after;
    assert_int_equal(stat(path, &before), 0);

    written = true;
    assert_int_equal(cairn_write_if_changed(path, "stable", 6, &written, &err), CAIRN_OK);
    assert_false(written);
    assert_int_equal(stat(path, &after), 0);
    assert_int_equal(after.st_ino, before.st_ino);
    assert_int_equal(after.st_mtim.tv_sec, before.st_mtim.tv_sec);
    assert_int_equal(after.st_mtim.tv_nsec, before.st_mtim.tv_nsec);
    assert_file_holds(path, "stable", 6);
    /* written may be NULL. */
    assert_int_equal(cairn_write_if_changed(path, "stable", 6, NULL, &err), CAIRN_OK);
    const char *names[] = {"out.txt"};
    assert_dir_holds(dir, names, 1);
}

/* write_if_changed_updates_different: other content (longer, shorter, same length) replaces the
 * old. */
static void write_if_changed_updates_different(void **state)
{
    fixture *f = *state;
    char dir[300], path[400];
    test_dir(f, "diff", dir, sizeof dir);
    snprintf(path, sizeof path, "%s/out.txt", dir);
    const char *versions[] = {"version one", "version two", "v3", "version four is longest", ""};
    cairn_error err;
    for (size_t i = 0; i < sizeof versions / sizeof versions[0]; i++) {
        bool written = false;
        size_t len = strlen(versions[i]);
        assert_int_equal(cairn_write_if_changed(path, versions[i], len, &written, &err), CAIRN_OK);
        assert_true(written);
        assert_file_holds(path, versions[i], len);
    }
    /* The empty file again is unchanged. */
    bool written = true;
    assert_int_equal(cairn_write_if_changed(path, "", 0, &written, &err), CAIRN_OK);
    assert_false(written);
    const char *names[] = {"out.txt"};
    assert_dir_holds(dir, names, 1);
}

/* write_if_changed_update_keeps_file_mode: updating content keeps the file's permissions (a 0600
 * file is not widened to 0644). */
static void write_if_changed_update_keeps_file_mode(void **state)
{
    fixture *f = *state;
    char dir[300], path[400];
    test_dir(f, "mode", dir, sizeof dir);
    snprintf(path, sizeof path, "%s/secret.conf", dir);
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL, 0600);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, "token=old\n", 10), 10);
    close(fd);
    assert_int_equal(chmod(path, 0600), 0);
    bool written = false;
    cairn_error err;
    assert_int_equal(cairn_write_if_changed(path, "token=new\n", 10, &written, &err), CAIRN_OK);
    assert_true(written);
    assert_file_holds(path, "token=new\n", 10);
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    if ((st.st_mode & 07777) != 0600)
        fprintf(stderr, "BUG: %s went from mode 0600 to 0%o\n", path, st.st_mode & 07777);
    assert_int_equal(st.st_mode & 07777, 0600);
}

/* write_if_changed_creates_parent_dirs: missing parent directories are created. */
static void write_if_changed_creates_parent_dirs(void **state)
{
    fixture *f = *state;
    char dir[300], path[400];
    test_dir(f, "parents", dir, sizeof dir);
    snprintf(path, sizeof path, "%s/a/b/c/deep.txt", dir);
    bool written = false;
    cairn_error err;
    assert_int_equal(cairn_write_if_changed(path, "deep", 4, &written, &err), CAIRN_OK);
    assert_true(written);
    assert_file_holds(path, "deep", 4);
    char sub[400];
    snprintf(sub, sizeof sub, "%s/a/b/c", dir);
    struct stat st;
    assert_int_equal(stat(sub, &st), 0);
    assert_true(S_ISDIR(st.st_mode));
    const char *names[] = {"deep.txt"};
    assert_dir_holds(sub, names, 1);
}

/* write_if_changed_permission_error: an unwritable target is IO naming the path and the reason. */
static void write_if_changed_permission_error(void **state)
{
    fixture *f = *state;
    char dir[300], path[400];
    int want_errno;
    if (geteuid() == 0) {
        /* root ignores permission bits: a path under a regular file is
         * unwritable for everyone (ENOTDIR). */
        test_dir(f, "notdir", dir, sizeof dir);
        char file[350];
        snprintf(file, sizeof file, "%s/file", dir);
        int fd = open(file, O_WRONLY | O_CREAT | O_EXCL, 0644);
        assert_true(fd >= 0);
        close(fd);
        snprintf(path, sizeof path, "%s/child.txt", file);
        want_errno = ENOTDIR;
    } else {
        snprintf(dir, sizeof dir, "%s/readonly", f->dir);
        assert_int_equal(mkdir(dir, 0755), 0);
        assert_int_equal(chmod(dir, 0500), 0);
        snprintf(path, sizeof path, "%s/child.txt", dir);
        want_errno = EACCES;
    }
    bool written = true;
    cairn_error err;
    assert_int_equal(cairn_write_if_changed(path, "nope", 4, &written, &err), CAIRN_IO);
    assert_false(written);
    assert_int_equal(err.status, CAIRN_IO);
    assert_non_null(strstr(err.message, path));
    assert_non_null(strstr(err.message, strerror(want_errno)));
    assert_int_equal(access(path, F_OK), -1);
    /* Nothing was left behind in the directory. */
    if (want_errno == ENOTDIR) {
        const char *names[] = {"file"};
        assert_dir_holds(dir, names, 1);
        char file[350];
        snprintf(file, sizeof file, "%s/file", dir);
        assert_file_holds(file, "", 0); /* the file in the way is untouched */
    } else {
        assert_dir_holds(dir, NULL, 0);
        chmod(dir, 0755);
    }
}

/* write_if_changed_unicode_content: UTF-8 text is stored byte for byte. */
static void write_if_changed_unicode_content(void **state)
{
    fixture *f = *state;
    char dir[300], path[400];
    test_dir(f, "unicode", dir, sizeof dir);
    snprintf(path, sizeof path, "%s/\xc3\xbcnic\xc3\xb6" "de-\xe6\x97\xa5.txt", dir);
    bool written = false;
    cairn_error err;
    size_t len = strlen(UNICODE_TEXT);
    assert_int_equal(cairn_write_if_changed(path, UNICODE_TEXT, len, &written, &err), CAIRN_OK);
    assert_true(written);
    assert_file_holds(path, UNICODE_TEXT, len);
    char hash[65];
    size_t n;
    char *got = ct_read_file(path, &n);
    assert_non_null(got);
    cairn_content_hash(got, n, hash);
    assert_string_equal(hash, SHA_UNICODE);
    free(got);
    assert_int_equal(cairn_write_if_changed(path, UNICODE_TEXT, len, &written, &err), CAIRN_OK);
    assert_false(written);
}

/* write_if_changed_multiline_content: lines, CRLF, trailing blank lines and NULs survive intact. */
static void write_if_changed_multiline_content(void **state)
{
    fixture *f = *state;
    char dir[300], path[400];
    test_dir(f, "multiline", dir, sizeof dir);
    snprintf(path, sizeof path, "%s/lines.txt", dir);
    static const char text[] = "line 1\nline 2\r\n\n\tindented line 4\nbinary\0inside\n\n";
    size_t len = sizeof text - 1;
    bool written = false;
    cairn_error err;
    assert_int_equal(cairn_write_if_changed(path, text, len, &written, &err), CAIRN_OK);
    assert_true(written);
    assert_file_holds(path, text, len);
    /* Changing only the last line rewrites. */
    static const char text2[] = "line 1\nline 2\r\n\n\tindented line 4\nbinary\0inside\n\nend";
    assert_int_equal(cairn_write_if_changed(path, text2, sizeof text2 - 1, &written, &err),
                     CAIRN_OK);
    assert_true(written);
    assert_file_holds(path, text2, sizeof text2 - 1);
}

/* write_if_changed_no_temp_files_left: success and a failure after the temp file exists leave only
 * the target. */
static void write_if_changed_no_temp_files_left(void **state)
{
    fixture *f = *state;
    char dir[300], path[400];
    test_dir(f, "notemp", dir, sizeof dir);
    snprintf(path, sizeof path, "%s/out.bin", dir);
    cairn_error err;
    bool written;
    for (int i = 0; i < 20; i++) { /* many writes: no temporary piles up */
        char buf[32];
        int n = snprintf(buf, sizeof buf, "round %d", i);
        assert_int_equal(cairn_write_if_changed(path, buf, (size_t)n, &written, &err), CAIRN_OK);
        assert_true(written);
    }
    /* A directory in the way: the temporary file is written, the rename
     * fails (EISDIR), and the temporary file must go. */
    char blocked[400];
    snprintf(blocked, sizeof blocked, "%s/adir", dir);
    assert_int_equal(mkdir(blocked, 0755), 0);
    written = true;
    assert_int_equal(cairn_write_if_changed(blocked, "data", 4, &written, &err), CAIRN_IO);
    assert_false(written);
    assert_non_null(strstr(err.message, blocked));
    const char *names[] = {"out.bin", "adir"};
    assert_dir_holds(dir, names, 2);
    assert_dir_holds(blocked, NULL, 0);
    assert_file_holds(path, "round 19", 8);
}

/* write_if_changed_rejects_bad_arguments: no path, or NULL data with a length, is
 * INVALID_ARGUMENT. */
static void write_if_changed_rejects_bad_arguments(void **state)
{
    fixture *f = *state;
    char dir[300], path[400];
    test_dir(f, "args", dir, sizeof dir);
    snprintf(path, sizeof path, "%s/out.txt", dir);
    cairn_error err;
    bool written = true;
    assert_int_equal(cairn_write_if_changed(NULL, "x", 1, &written, &err), CAIRN_INVALID_ARGUMENT);
    assert_false(written);
    assert_int_equal(cairn_write_if_changed("", "x", 1, &written, &err), CAIRN_INVALID_ARGUMENT);
    assert_non_null(strstr(err.message, "path"));
    assert_int_equal(cairn_write_if_changed(path, NULL, 3, &written, &err),
                     CAIRN_INVALID_ARGUMENT);
    assert_non_null(strstr(err.message, "data"));
    assert_int_equal(access(path, F_OK), -1);
    /* NULL with length 0 is an empty file. */
    assert_int_equal(cairn_write_if_changed(path, NULL, 0, &written, &err), CAIRN_OK);
    assert_true(written);
    assert_file_holds(path, "", 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(content_hash_string),
        cmocka_unit_test(content_hash_bytes),
        cmocka_unit_test(content_hash_empty),
        cmocka_unit_test(content_hash_deterministic),
        cmocka_unit_test(content_hash_different),
        cmocka_unit_test(content_hash_known_vector),
        cmocka_unit_test(write_if_changed_new_file),
        cmocka_unit_test(write_if_changed_skips_identical),
        cmocka_unit_test(write_if_changed_updates_different),
        cmocka_unit_test(write_if_changed_update_keeps_file_mode),
        cmocka_unit_test(write_if_changed_creates_parent_dirs),
        cmocka_unit_test(write_if_changed_permission_error),
        cmocka_unit_test(write_if_changed_unicode_content),
        cmocka_unit_test(write_if_changed_multiline_content),
        cmocka_unit_test(write_if_changed_no_temp_files_left),
        cmocka_unit_test(write_if_changed_rejects_bad_arguments),
    };
    return cmocka_run_group_tests_name("local", tests, setup, teardown);
}
