/* libcairn's token option, checked by cairn_client_create before any
 * connection is made (no network): its format, and that it goes in
 * plaintext only to targets on this machine. */
#include "cairn/cairn.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

/* cairn_client_create with target, token and (when tls) TLS options
 * that name no file; *err holds the outcome. */
static cairn_status create(const char *target, const char *token, bool tls, cairn_error *err)
{
    cairn_client_options opts;
    cairn_client_options_init(&opts);
    cairn_tls_options tls_opts = {0};
    opts.target = target;
    opts.token = token;
    opts.tls = tls ? &tls_opts : NULL;
    cairn_client *c = NULL;
    cairn_status rc = cairn_client_create(&opts, &c, err);
    if (rc == CAIRN_OK)
        assert_non_null(c);
    else
        assert_null(c);
    cairn_client_destroy(c);
    return rc;
}

static void token_in_plaintext_to_loopback_targets_is_accepted(void **state)
{
    (void)state;
    static const char *const local[] = {
        "127.0.0.1:7070",
        "127.1.2.3:7070",
        "localhost:7070",
        "LocalHost:7070",
        "[::1]:7070",
        "::1",
        "ipv4:127.0.0.1:7001,127.0.0.1:7002",
        "ipv6:[::1]:7001,[::1]:7002",
        "dns:///localhost:7070",
        "dns:///127.0.0.1:7070",
        "dns:localhost:7070",
        "unix:/tmp/cairn.sock",
        "unix-abstract:cairn",
    };
    for (size_t i = 0; i < sizeof local / sizeof local[0]; i++) {
        cairn_error err;
        cairn_status rc = create(local[i], "s3cret-token", false, &err);
        if (rc != CAIRN_OK)
            fail_msg("%s: %s", local[i], err.message);
    }
}

static void token_in_plaintext_off_loopback_is_refused_naming_token_and_target(void **state)
{
    (void)state;
    static const char *const remote[] = {
        "10.0.0.1:7070",
        "ipv4:127.0.0.1:7001,10.0.0.2:7002", /* one address off loopback is enough */
        "dns:///cairn.example.com:7070",
        "dns://8.8.8.8/cairn.example.com:7070",
        "cairn.example.com:7070",
        "127.0.0.1.nip.io:7070",              /* a name, whatever it resolves to */
        "[2001:db8::1]:7070",
        "::1:7070",                           /* unbracketed: the IPv6 host ::1:7070 */
        "ipv6:[::1]:7001,[2001:db8::1]:7002",
        "xds:///cairn",                       /* schemes cairn does not use */
    };
    for (size_t i = 0; i < sizeof remote / sizeof remote[0]; i++) {
        cairn_error err;
        assert_int_equal(create(remote[i], "s3cret-token", false, &err), CAIRN_INVALID_ARGUMENT);
        assert_non_null(strstr(err.message, "token: "));
        assert_non_null(strstr(err.message, remote[i]));
        assert_non_null(strstr(err.message, "loopback"));
        assert_null(strstr(err.message, "s3cret-token"));
    }
}

static void token_off_loopback_with_tls_and_no_token_at_all_are_accepted(void **state)
{
    (void)state;
    cairn_error err;
    assert_int_equal(create("10.0.0.1:7070", "s3cret-token", true, &err), CAIRN_OK);
    assert_int_equal(create("10.0.0.1:7070", NULL, false, &err), CAIRN_OK);
}

static void token_in_the_wrong_format_is_refused_naming_token_and_the_limit(void **state)
{
    (void)state;
    char *long_token = malloc(CAIRN_TOKEN_MAX + 2);
    assert_non_null(long_token);
    memset(long_token, 'a', CAIRN_TOKEN_MAX + 1);
    long_token[CAIRN_TOKEN_MAX + 1] = '\0';
    const char *const bad[] = {"", "has space", "tab\there", "ctl\x01", "del\x7f", "caf\xc3\xa9",
                               long_token};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        cairn_error err;
        assert_int_equal(create("127.0.0.1:7070", bad[i], false, &err), CAIRN_INVALID_ARGUMENT);
        assert_non_null(strstr(err.message, "token: must be 1..4096 printable ASCII"));
    }
    /* exactly the limit is fine */
    long_token[CAIRN_TOKEN_MAX] = '\0';
    cairn_error err;
    assert_int_equal(create("127.0.0.1:7070", long_token, false, &err), CAIRN_OK);
    free(long_token);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(token_in_plaintext_to_loopback_targets_is_accepted),
        cmocka_unit_test(token_in_plaintext_off_loopback_is_refused_naming_token_and_target),
        cmocka_unit_test(token_off_loopback_with_tls_and_no_token_at_all_are_accepted),
        cmocka_unit_test(token_in_the_wrong_format_is_refused_naming_token_and_the_limit),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
