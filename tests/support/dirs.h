/* Temporary directories for tests, with nothing but libc (no libcairn,
 * no server code), so unit, store and integration tests all use the
 * same ones. */
#ifndef CAIRN_TEST_DIRS_H
#define CAIRN_TEST_DIRS_H

#include <stddef.h>

/* Makes a fresh, empty directory $TMPDIR/<prefix>-XXXXXX (under /tmp when
 * TMPDIR is unset or empty) and writes its path into out. Returns 0, or -1
 * (nothing made) when the path does not fit in cap or mkdtemp fails. */
int ct_temp_dir(char *out, size_t cap, const char *prefix);

/* Removes a directory tree; symbolic links are removed, never followed.
 * Goes on past what it cannot remove. Returns 0, or -1 when anything
 * (path itself included) is left. */
int ct_rmrf(const char *path);

/* Returns how many directory entries path holds (recursively). */
int ct_count_entries(const char *path);

#endif
