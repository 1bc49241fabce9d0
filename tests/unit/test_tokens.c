/* The tokens module of cairnd (config/tokens.h) without a server: the
 * authorization header's forms (control bytes and other bytes no gRPC
 * client sends included), matching by digest, the identity's scope, and
 * a reload that replaces the set or, from a bad file, keeps it.
 * Digests were computed with coreutils: printf %s TOKEN | sha256sum. */
#include "config/tokens.h"
#include "dirs.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* printf %s alpha-token | sha256sum; printf %s beta-token | sha256sum */
#define ALPHA_SHA "a336d9b1d8b8647875238537ca5087b0ea335afd2032936aecdffc3e4b13f720"
#define BETA_SHA "863d63c0bd3a94bfca84ed2063a7355a226faff82ca50b90158bf183aa1a9e61"

typedef struct fx {
    char dir[256];
    char path[300];
} fx;

static void write_file(const char *path, const char *text)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    assert_int_equal(close(fd), 0);
}

static int setup(void **state)
{
    static fx f;
    memset(&f, 0, sizeof f);
    if (ct_temp_dir(f.dir, sizeof f.dir, "cairn-tokens") < 0)
        return -1;
    snprintf(f.path, sizeof f.path, "%s/tokens", f.dir);
    *state = &f;
    return 0;
}

static int teardown(void **state)
{
    fx *f = *state;
    return ct_rmrf(f->dir);
}

/* Identifies header (NUL-terminated); returns the code, *who filled on OK. */
static srv_code identify(srv_tokens *t, const char *header, srv_identity *who, srv_error *err)
{
    return srv_tokens_identify(t, header, header ? strlen(header) : 0, who, err);
}

static void header_forms_map_to_identities_or_unauthenticated_naming_the_header(void **state)
{
    fx *f = *state;
    write_file(f->path, "alpha " ALPHA_SHA " write team-a\n"
                        "beta  " BETA_SHA " admin *   # every run\n");
    srv_error err;
    srv_tokens *t = srv_tokens_open(f->path, &err);
    assert_non_null(t);
    assert_int_equal(srv_tokens_count(t), 2);
    srv_identity who;
    assert_int_equal(identify(t, "Bearer alpha-token", &who, &err), SRV_OK);
    assert_string_equal(who.name, "alpha");
    assert_int_equal(who.role, SRV_ROLE_WRITE);
    assert_string_equal(who.prefix, "team-a");
    assert_true(srv_identity_covers(&who, "team-a.7"));
    assert_false(srv_identity_covers(&who, "team-b"));
    assert_false(srv_identity_covers(&who, "Team-a.7"));
    assert_int_equal(identify(t, "bearer beta-token", &who, &err), SRV_OK); /* scheme: any case */
    assert_string_equal(who.name, "beta");
    assert_int_equal(who.role, SRV_ROLE_ADMIN);
    assert_string_equal(who.prefix, "");
    assert_true(srv_identity_covers(&who, "anything"));

    static const struct {
        const char *header;
        const char *want;
    } bad[] = {
        {NULL, "authorization header: missing"},
        {"", "authorization header: must be \"authorization: Bearer TOKEN\""},
        {"Basic x", "authorization header: must be \"authorization: Bearer TOKEN\""},
        {"Bearer", "authorization header: must be \"authorization: Bearer TOKEN\""},
        {"Bearer ", "authorization header: the token must be 1..4096 bytes, got 0"},
        {"Bearer alpha token", "authorization header: the token must be printable ASCII"},
        {"Bearer  alpha-token", "authorization header: the token must be printable ASCII"},
        {"Bearer alpha-token\x01", "a space or control byte at offset 11"},
        {"Bearer alpha\x7f", "authorization header: the token must be printable ASCII"},
        {"Bearer caf\xc3\xa9", "authorization header: the token must be printable ASCII"},
        {"Bearer alpha-token2", "authorization header: the token is not one of cairnd's"},
        {"Bearer ALPHA-TOKEN", "authorization header: the token is not one of cairnd's"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        assert_int_equal(identify(t, bad[i].header, &who, &err), SRV_UNAUTHENTICATED);
        if (!strstr(err.msg, bad[i].want))
            fail_msg("row %zu: want \"%s\", got \"%s\"", i, bad[i].want, err.msg);
        assert_null(strstr(err.msg, "alpha"));
    }
    /* a NUL inside the header (its length says more than strlen) */
    assert_int_equal(srv_tokens_identify(t, "Bearer alpha-token\0x", 20, &who, &err),
                     SRV_UNAUTHENTICATED);
    char big[SRV_TOKEN_MAX + 16];
    memcpy(big, "Bearer ", 7);
    memset(big + 7, 'a', SRV_TOKEN_MAX + 1);
    assert_int_equal(srv_tokens_identify(t, big, 7 + SRV_TOKEN_MAX + 1, &who, &err),
                     SRV_UNAUTHENTICATED);
    assert_non_null(strstr(err.msg, "the token must be 1..4096 bytes, got 4097"));
    srv_tokens_close(t);
}

static void reload_replaces_the_set_and_a_bad_file_keeps_it(void **state)
{
    fx *f = *state;
    write_file(f->path, "alpha " ALPHA_SHA " read *\n");
    srv_error err;
    srv_tokens *t = srv_tokens_open(f->path, &err);
    assert_non_null(t);
    srv_identity who;
    assert_int_equal(identify(t, "Bearer alpha-token", &who, &err), SRV_OK);

    write_file(f->path, "# rotated\n\nbeta " BETA_SHA " read *\n");
    srv_tokens_reload(t);
    assert_int_equal(identify(t, "Bearer alpha-token", &who, &err), SRV_UNAUTHENTICATED);
    assert_int_equal(identify(t, "Bearer beta-token", &who, &err), SRV_OK);
    assert_string_equal(who.name, "beta");

    write_file(f->path, "alpha " ALPHA_SHA " reader *\n"); /* bad role */
    srv_tokens_reload(t);
    assert_int_equal(identify(t, "Bearer beta-token", &who, &err), SRV_OK);
    assert_int_equal(identify(t, "Bearer alpha-token", &who, &err), SRV_UNAUTHENTICATED);

    chmod(f->path, 0644); /* good lines, open to others: refused too */
    write_file(f->path, "alpha " ALPHA_SHA " read *\n");
    srv_tokens_reload(t);
    assert_int_equal(identify(t, "Bearer alpha-token", &who, &err), SRV_UNAUTHENTICATED);
    srv_tokens_close(t);
}

static void a_file_without_tokens_is_read_and_admits_nobody(void **state)
{
    fx *f = *state;
    write_file(f->path, "# nobody yet\n\n   \n");
    srv_error err;
    srv_tokens *t = srv_tokens_open(f->path, &err);
    assert_non_null(t);
    assert_int_equal(srv_tokens_count(t), 0);
    srv_identity who;
    assert_int_equal(identify(t, "Bearer alpha-token", &who, &err), SRV_UNAUTHENTICATED);
    srv_tokens_close(t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(
            header_forms_map_to_identities_or_unauthenticated_naming_the_header, setup, teardown),
        cmocka_unit_test_setup_teardown(reload_replaces_the_set_and_a_bad_file_keeps_it, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(a_file_without_tokens_is_read_and_admits_nobody, setup,
                                        teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
