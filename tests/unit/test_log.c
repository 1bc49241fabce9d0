/* The logger's records: fields as top-level JSON keys or key=value text,
 * and a JSON record that stays one valid object on one line whatever its
 * message holds (newlines, quotes, bytes that are not UTF-8, length). */
#include "base/log.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

/* Runs one srv_log_fields with stderr into a temporary file; returns what
 * was written, past the timestamp (malloc'ed). */
static char *record(srv_log_format format, const srv_log_field *fields, size_t n,
                    const char *msg)
{
    FILE *tmp = tmpfile();
    assert_non_null(tmp);
    int saved = dup(STDERR_FILENO);
    dup2(fileno(tmp), STDERR_FILENO);
    srv_log_setup(SRV_LOG_DEBUG, format);
    srv_log_fields(SRV_LOG_INFO, fields, n, "%s", msg);
    dup2(saved, STDERR_FILENO);
    close(saved);
    long len = ftell(tmp);
    assert_true(len > 0);
    char *out = calloc(1, (size_t)len + 1);
    rewind(tmp);
    assert_int_equal(fread(out, 1, (size_t)len, tmp), (size_t)len);
    fclose(tmp);
    /* the timestamp is 27 characters: drop it, keep what follows */
    const char *ts_end = format == SRV_LOG_JSON ? strstr(out, "Z\",") + 3 : strchr(out, ' ') + 1;
    memmove(out, ts_end, strlen(ts_end) + 1);
    return out;
}

static const srv_log_field call_fields[] = {
    {"method", "GetRun", false},
    {"code", "NOT_FOUND", false},
    {"duration_ms", "1.250", true},
    {"replayed", "false", true},
    {"run_id", "a b", false},
};

static void json_fields_are_top_level_keys_with_numbers_and_bools_unquoted(void **state)
{
    (void)state;
    char *line = record(SRV_LOG_JSON, call_fields, 5, "call failed");
    assert_string_equal(line, "\"level\":\"info\",\"msg\":\"call failed\",\"method\":\"GetRun\","
                              "\"code\":\"NOT_FOUND\",\"duration_ms\":1.250,\"replayed\":false,"
                              "\"run_id\":\"a b\"}\n");
    free(line);
}

static void text_fields_are_key_value_quoted_only_when_needed(void **state)
{
    (void)state;
    char *line = record(SRV_LOG_TEXT, call_fields, 5, "call failed");
    assert_string_equal(line, "info  call failed method=GetRun code=NOT_FOUND duration_ms=1.250 "
                              "replayed=false run_id=\"a b\"\n");
    free(line);
}

static void json_escapes_controls_quotes_and_bytes_that_are_not_utf8(void **state)
{
    (void)state;
    const srv_log_field f = {"peer", "x\"\n\xff", false};
    char *line = record(SRV_LOG_JSON, &f, 1, "two\nlines \\ caf\xc3\xa9 \xc3");
    assert_string_equal(line, "\"level\":\"info\",\"msg\":\"two\\u000alines \\\\ caf\xc3\xa9 "
                              "\\ufffd\",\"peer\":\"x\\\"\\u000a\\ufffd\"}\n");
    free(line);
}

static void json_record_of_a_huge_message_stays_one_closed_line(void **state)
{
    (void)state;
    char msg[5000];
    memset(msg, '\n', sizeof msg - 1); /* each escapes to 6 bytes */
    msg[sizeof msg - 1] = '\0';
    char *line = record(SRV_LOG_JSON, call_fields, 5, msg);
    size_t len = strlen(line);
    assert_string_equal(line + len - 16, "\"run_id\":\"a b\"}\n");
    assert_ptr_equal(strchr(line, '\n'), line + len - 1);
    free(line);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(json_fields_are_top_level_keys_with_numbers_and_bools_unquoted),
        cmocka_unit_test(text_fields_are_key_value_quoted_only_when_needed),
        cmocka_unit_test(json_escapes_controls_quotes_and_bytes_that_are_not_utf8),
        cmocka_unit_test(json_record_of_a_huge_message_stays_one_closed_line),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
