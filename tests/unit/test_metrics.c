/* The metric primitives and the Prometheus text writer: which bucket a
 * value lands in, cumulative buckets, _sum in the exposed unit, and the
 * exact text of a family. */
#include "metrics/expo.h"
#include "metrics/metrics.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

static const uint64_t bounds[] = {10, 100, 1000};

static void value_on_a_bound_counts_in_that_bucket_and_larger_ones_in_inf(void **state)
{
    (void)state;
    srv_histogram h;
    srv_histogram_init(&h, bounds, 3);
    srv_histogram_observe(&h, 0);
    srv_histogram_observe(&h, 10);   /* le="10": bounds are inclusive */
    srv_histogram_observe(&h, 11);
    srv_histogram_observe(&h, 1000);
    srv_histogram_observe(&h, 1001); /* +Inf */
    assert_int_equal(srv_counter_get(&h.buckets[0]), 2);
    assert_int_equal(srv_counter_get(&h.buckets[1]), 1);
    assert_int_equal(srv_counter_get(&h.buckets[2]), 1);
    assert_int_equal(srv_counter_get(&h.buckets[3]), 1);
    assert_int_equal(srv_histogram_count(&h), 5);
    assert_int_equal(srv_counter_get(&h.sum), 0 + 10 + 11 + 1000 + 1001);
}

static void duration_bounds_increase_and_fit_a_histogram(void **state)
{
    (void)state;
    assert_true(srv_duration_bounds_n <= SRV_HISTOGRAM_MAX_BOUNDS);
    for (size_t i = 1; i < srv_duration_bounds_n; i++)
        assert_true(srv_duration_bounds_us[i - 1] < srv_duration_bounds_us[i]);
    assert_int_equal(srv_duration_bounds_us[0], 100);
    assert_int_equal(srv_duration_bounds_us[srv_duration_bounds_n - 1], 10000000);
}

static void histogram_text_is_cumulative_with_sum_and_count_in_seconds(void **state)
{
    (void)state;
    srv_histogram h;
    srv_histogram_init(&h, bounds, 3);
    srv_histogram_observe(&h, 5);
    srv_histogram_observe(&h, 50);
    srv_histogram_observe(&h, 5000);
    srv_expo e = {0};
    srv_expo_family(&e, "t_seconds", "histogram", "Test.");
    srv_expo_histogram(&e, "t_seconds", "method=\"M\"", &h, 1e-6);
    assert_false(e.failed);
    assert_string_equal(e.buf,
                        "# HELP t_seconds Test.\n"
                        "# TYPE t_seconds histogram\n"
                        "t_seconds_bucket{method=\"M\",le=\"1e-05\"} 1\n"
                        "t_seconds_bucket{method=\"M\",le=\"0.0001\"} 2\n"
                        "t_seconds_bucket{method=\"M\",le=\"0.001\"} 2\n"
                        "t_seconds_bucket{method=\"M\",le=\"+Inf\"} 3\n"
                        "t_seconds_sum{method=\"M\"} 0.005055\n"
                        "t_seconds_count{method=\"M\"} 3\n");
    free(e.buf);
}

static void samples_without_labels_have_no_braces_and_counts_print_whole(void **state)
{
    (void)state;
    srv_expo e = {0};
    srv_expo_sample(&e, "a_total", "", 12345678901.0);
    srv_expo_sample(&e, "b", "k=\"v\"", 1.5);
    srv_expo_sample(&e, "c_seconds", "", 1796562517.125);
    assert_string_equal(e.buf, "a_total 12345678901\nb{k=\"v\"} 1.5\n"
                               "c_seconds 1796562517.125\n");
    free(e.buf);
}

static void a_page_larger_than_the_first_buffer_grows_intact(void **state)
{
    (void)state;
    srv_expo e = {0};
    char labels[32];
    for (int i = 0; i < 2000; i++) {
        snprintf(labels, sizeof labels, "i=\"%d\"", i);
        srv_expo_sample(&e, "many", labels, i);
    }
    assert_false(e.failed);
    assert_int_equal(e.len, strlen(e.buf));
    assert_non_null(strstr(e.buf, "many{i=\"0\"} 0\nmany{i=\"1\"} 1\n"));
    assert_non_null(strstr(e.buf, "many{i=\"1999\"} 1999\n"));
    free(e.buf);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(value_on_a_bound_counts_in_that_bucket_and_larger_ones_in_inf),
        cmocka_unit_test(duration_bounds_increase_and_fit_a_histogram),
        cmocka_unit_test(histogram_text_is_cumulative_with_sum_and_count_in_seconds),
        cmocka_unit_test(samples_without_labels_have_no_braces_and_counts_print_whole),
        cmocka_unit_test(a_page_larger_than_the_first_buffer_grows_intact),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
