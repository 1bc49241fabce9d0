/* The I/O pool (base/pool.h): jobs run in the order queued, on its
 * threads, and srv_pool_stop runs every job queued before it returns,
 * including jobs that running jobs queue. */
#include "base/pool.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <pthread.h>
#include <stdatomic.h>

#include <cmocka.h>

enum { JOBS = 1000 };

typedef struct counted {
    srv_job job;                  /* first */
    int index;
    int *order;                   /* where each job recorded its turn */
    atomic_int *turn;
    pthread_t *ran_on;
    srv_pool *pool;
    int requeue;                  /* times it queues itself again */
} counted;

static void count(srv_job *job)
{
    counted *c = (counted *)job;
    c->order[c->index] = atomic_fetch_add(c->turn, 1);
    *c->ran_on = pthread_self();
    if (c->requeue-- > 0)
        srv_pool_run(c->pool, &c->job, count);
}

static void one_thread_runs_jobs_in_the_order_queued(void **state)
{
    (void)state;
    srv_pool *p = srv_pool_start(1);
    assert_non_null(p);
    static counted jobs[JOBS];
    static int order[JOBS];
    static pthread_t ran_on[JOBS];
    atomic_int turn = 0;
    for (int i = 0; i < JOBS; i++) {
        jobs[i] = (counted){.index = i, .order = order, .turn = &turn, .ran_on = &ran_on[i]};
        srv_pool_run(p, &jobs[i].job, count);
    }
    srv_pool_stop(p);
    assert_int_equal(atomic_load(&turn), JOBS);
    for (int i = 0; i < JOBS; i++) {
        assert_int_equal(order[i], i);
        assert_false(pthread_equal(ran_on[i], pthread_self()));
    }
}

static void stop_runs_every_job_also_those_queued_by_jobs(void **state)
{
    (void)state;
    srv_pool *p = srv_pool_start(4);
    assert_non_null(p);
    static counted jobs[JOBS];
    static int order[JOBS];
    static pthread_t ran_on[JOBS];
    atomic_int turn = 0;
    for (int i = 0; i < JOBS; i++) {
        jobs[i] = (counted){.index = i, .order = order, .turn = &turn, .ran_on = &ran_on[i],
                            .pool = p, .requeue = 3};
        srv_pool_run(p, &jobs[i].job, count);
    }
    srv_pool_stop(p); /* returns only when all 4 * JOBS runs are done */
    assert_int_equal(atomic_load(&turn), 4 * JOBS);
    for (int i = 0; i < JOBS; i++)
        assert_int_equal(jobs[i].requeue, -1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(one_thread_runs_jobs_in_the_order_queued),
        cmocka_unit_test(stop_runs_every_job_also_those_queued_by_jobs),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
