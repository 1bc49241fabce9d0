/* libcairn's TLS options (cairn_client_options.tls), checked when the
 * client is created: the key pair goes together, every file is read
 * then and must hold what its field says, and each refusal is
 * INVALID_ARGUMENT naming the field (and the path). No server is
 * involved: a client that passes makes no connection until its first
 * call. */
#include "cairn/cairn.h"
#include "certs.h"
#include "dirs.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

/* A CA, a client certificate it signed, and another key pair. */
typedef struct files {
    char dir[256];
    ct_cert ca, client, other;
    char garbage[512];
} files;

static int setup(void **state)
{
    files *f = calloc(1, sizeof *f);
    if (!f || ct_temp_dir(f->dir, sizeof f->dir, "cairn-tls-options") != 0)
        return -1;
    const ct_cert_spec ca = {.common_name = "options CA", .valid_to_s = 3600, .ca = true};
    const ct_cert_spec leaf = {.common_name = "client", .valid_to_s = 3600};
    snprintf(f->garbage, sizeof f->garbage, "%s/garbage.pem", f->dir);
    if (ct_cert_make(f->dir, "ca", &ca, NULL, &f->ca) != 0 ||
        ct_cert_make(f->dir, "client", &leaf, &f->ca, &f->client) != 0 ||
        ct_cert_make(f->dir, "other", &leaf, &f->ca, &f->other) != 0 ||
        ct_write_text(f->garbage, "not a certificate\n") != 0)
        return -1;
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    files *f = *state;
    ct_cert_free(&f->ca);
    ct_cert_free(&f->client);
    ct_cert_free(&f->other);
    ct_rmrf(f->dir);
    free(f);
    return 0;
}

/* Creates a client with tls; returns the status, and destroys a client
 * that was made. */
static cairn_status create_with(const cairn_tls_options *tls, cairn_error *err)
{
    cairn_client_options opts;
    cairn_client_options_init(&opts);
    opts.target = "127.0.0.1:1";
    opts.tls = tls;
    cairn_client *c = NULL;
    cairn_status rc = cairn_client_create(&opts, &c, err);
    if (rc == CAIRN_OK)
        assert_non_null(c);
    else
        assert_null(c);
    cairn_client_destroy(c);
    return rc;
}

/* Refused by cairn_client_create with every text in the message. */
static void expect_refused(const cairn_tls_options *tls, const char *text1, const char *text2)
{
    cairn_error err;
    assert_int_equal(create_with(tls, &err), CAIRN_INVALID_ARGUMENT);
    assert_int_equal(err.attempts, 0);
    if (!strstr(err.message, text1) || (text2 && !strstr(err.message, text2)))
        fail_msg("want \"%s\" and \"%s\" in: %s", text1, text2 ? text2 : "", err.message);
}

static void valid_ca_and_key_pair_create_a_client(void **state)
{
    files *f = *state;
    cairn_error err;
    const cairn_tls_options tls = {.ca_file = f->ca.cert_path, .cert_file = f->client.cert_path,
                                   .key_file = f->client.key_path, .server_name = "cairn.test"};
    assert_int_equal(create_with(&tls, &err), CAIRN_OK);
    const cairn_tls_options ca_only = {.ca_file = f->ca.cert_path};
    assert_int_equal(create_with(&ca_only, &err), CAIRN_OK);
    const cairn_tls_options system_roots = {0};
    assert_int_equal(create_with(&system_roots, &err), CAIRN_OK);
}

static void cert_file_without_key_file_is_refused_naming_both(void **state)
{
    files *f = *state;
    const cairn_tls_options tls = {.cert_file = f->client.cert_path};
    expect_refused(&tls, "tls.cert_file and tls.key_file go together", "only tls.cert_file");
}

static void key_file_without_cert_file_is_refused_naming_both(void **state)
{
    files *f = *state;
    const cairn_tls_options tls = {.key_file = f->client.key_path};
    expect_refused(&tls, "tls.cert_file and tls.key_file go together", "only tls.key_file");
}

static void missing_ca_file_is_refused_naming_field_and_path(void **state)
{
    files *f = *state;
    char path[600];
    snprintf(path, sizeof path, "%s/absent.pem", f->dir);
    const cairn_tls_options tls = {.ca_file = path};
    expect_refused(&tls, "tls.ca_file: cannot open", path);
}

static void missing_key_file_is_refused_naming_field_and_path(void **state)
{
    files *f = *state;
    char path[600];
    snprintf(path, sizeof path, "%s/absent.key", f->dir);
    const cairn_tls_options tls = {.cert_file = f->client.cert_path, .key_file = path};
    expect_refused(&tls, "tls.key_file: cannot open", path);
}

static void ca_file_without_a_certificate_is_refused(void **state)
{
    files *f = *state;
    const cairn_tls_options tls = {.ca_file = f->garbage};
    expect_refused(&tls, "tls.ca_file", "holds no PEM certificate");
}

static void cert_file_without_a_certificate_is_refused(void **state)
{
    files *f = *state;
    const cairn_tls_options tls = {.cert_file = f->garbage, .key_file = f->client.key_path};
    expect_refused(&tls, "tls.cert_file", "holds no PEM certificate");
}

static void key_file_without_a_key_is_refused(void **state)
{
    files *f = *state;
    /* A certificate is PEM, but not a key. */
    const cairn_tls_options tls = {.cert_file = f->client.cert_path,
                                   .key_file = f->client.cert_path};
    expect_refused(&tls, "tls.key_file", "holds no unencrypted PEM private key");
}

static void key_of_another_certificate_is_refused(void **state)
{
    files *f = *state;
    const cairn_tls_options tls = {.cert_file = f->client.cert_path,
                                   .key_file = f->other.key_path};
    expect_refused(&tls, "tls.key_file", "does not match the certificate in tls.cert_file");
}

static void overlong_server_name_is_refused_with_the_limit(void **state)
{
    (void)state;
    char name[300];
    memset(name, 'a', sizeof name - 1);
    name[sizeof name - 1] = '\0';
    const cairn_tls_options tls = {.server_name = name};
    expect_refused(&tls, "tls.server_name: at most 253 bytes", "got 299");
}

static void tls_reserved_space_must_be_zero(void **state)
{
    files *f = *state;
    cairn_tls_options tls = {.ca_file = f->ca.cert_path};
    tls.reserved[CAIRN_RESERVED_SLOTS - 1] = 1;
    expect_refused(&tls, "tls.reserved", "must be zero");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(valid_ca_and_key_pair_create_a_client),
        cmocka_unit_test(cert_file_without_key_file_is_refused_naming_both),
        cmocka_unit_test(key_file_without_cert_file_is_refused_naming_both),
        cmocka_unit_test(missing_ca_file_is_refused_naming_field_and_path),
        cmocka_unit_test(missing_key_file_is_refused_naming_field_and_path),
        cmocka_unit_test(ca_file_without_a_certificate_is_refused),
        cmocka_unit_test(cert_file_without_a_certificate_is_refused),
        cmocka_unit_test(key_file_without_a_key_is_refused),
        cmocka_unit_test(key_of_another_certificate_is_refused),
        cmocka_unit_test(overlong_server_name_is_refused_with_the_limit),
        cmocka_unit_test(tls_reserved_space_must_be_zero),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
