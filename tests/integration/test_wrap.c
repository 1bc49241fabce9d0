/* The CAIRN_TEST_WRAP hook itself (make valgrind relies on it): a cairnd
 * whose checker found errors makes ct_server_stop return the checker's
 * status, and the test process fail at exit even when the test ignored
 * it. The checker is fake_checker.sh, which always reports errors. */
#include "cairn_test.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

static void a_checker_verdict_is_cairnd_status_and_fails_the_process(void **state)
{
    (void)state;
    int p[2];
    assert_int_equal(pipe(p), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        /* A process of its own: the hook reads the variable once. */
        close(p[0]);
        setenv("CAIRN_TEST_WRAP", CT_FAKE_CHECKER, 1);
        ct_server s;
        int rc = -1;
        if (ct_server_init(&s) == 0 && ct_server_start(&s, 0, NULL) == 0)
            rc = ct_server_stop(&s);
        ct_server_cleanup(&s);
        dprintf(p[1], "%d", rc);
        close(p[1]);
        exit(0); /* the hook turns this into 1 */
    }
    close(p[1]);
    char buf[16] = {0};
    ssize_t n = read(p[0], buf, sizeof buf - 1);
    close(p[0]);
    int status;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(n > 0);
    assert_int_equal(atoi(buf), CT_WRAP_ERROR_EXIT);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(a_checker_verdict_is_cairnd_status_and_fails_the_process),
    };
    return cmocka_run_group_tests_name("wrap", tests, NULL, NULL);
}
