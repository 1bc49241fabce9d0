#include "base/pool.h"

#include <pthread.h>
#include <stdlib.h>

struct srv_pool {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    srv_job *head, *tail;         /* under mu: FIFO */
    bool stopping;                /* under mu */
    int n_threads;
    pthread_t threads[];
};

static void *worker(void *arg)
{
    srv_pool *p = arg;
    pthread_mutex_lock(&p->mu);
    for (;;) {
        while (!p->head && !p->stopping)
            pthread_cond_wait(&p->cv, &p->mu);
        srv_job *job = p->head;
        if (!job)
            break; /* stopping and drained */
        p->head = job->next;
        if (!p->head)
            p->tail = NULL;
        pthread_mutex_unlock(&p->mu);
        job->fn(job);
        pthread_mutex_lock(&p->mu);
    }
    pthread_mutex_unlock(&p->mu);
    return NULL;
}

srv_pool *srv_pool_start(int threads)
{
    srv_pool *p = calloc(1, sizeof *p + (size_t)threads * sizeof(pthread_t));
    if (!p)
        return NULL;
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->cv, NULL);
    for (int i = 0; i < threads; i++) {
        if (pthread_create(&p->threads[i], NULL, worker, p) != 0)
            break;
        p->n_threads++;
    }
    if (p->n_threads == 0) {
        srv_pool_stop(p);
        return NULL;
    }
    return p;
}

void srv_pool_run(srv_pool *p, srv_job *job, void (*fn)(srv_job *job))
{
    job->fn = fn;
    job->next = NULL;
    pthread_mutex_lock(&p->mu);
    if (p->tail)
        p->tail->next = job;
    else
        p->head = job;
    p->tail = job;
    pthread_cond_signal(&p->cv);
    pthread_mutex_unlock(&p->mu);
}

void srv_pool_stop(srv_pool *p)
{
    if (!p)
        return;
    pthread_mutex_lock(&p->mu);
    p->stopping = true;
    pthread_cond_broadcast(&p->cv);
    pthread_mutex_unlock(&p->mu);
    for (int i = 0; i < p->n_threads; i++)
        pthread_join(p->threads[i], NULL);
    pthread_cond_destroy(&p->cv);
    pthread_mutex_destroy(&p->mu);
    free(p);
}
