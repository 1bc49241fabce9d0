/* cairn-demo-node: one node of the demo, using libcairn's public API only.
 * It loops: ask the server what still needs to run (ResumeRun), lease one
 * of those workers (AcquireWorker, kept alive by a lease keeper), run it
 * (a few steps, each an event written with the lease's fencing token),
 * complete it (fenced too), checkpoint the run, and ask again, until
 * nothing is left. A write refused as fenced means the lease was lost
 * (this node was paused or cut off and another took over): the node drops
 * that worker at once.
 *
 * usage: cairn-demo-node --target HOST:PORT --run RUN --node NAME
 *                        [--ttl-ms 1000] [--step-ms 150] [--steps 4] */
#include <cairn/cairn.h>

#include <errno.h>
#include <getopt.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef struct node {
    cairn_client *client;
    const char *run;
    const char *name;
    uint32_t ttl_ms;
    int step_ms;
    int steps;
    atomic_bool lost;
    int fenced;                   /* writes the server refused as fenced */
} node;

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000};
    while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
        ;
}

__attribute__((format(printf, 2, 3))) static void say(const node *n, const char *fmt, ...)
{
    char line[768];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    printf("           [%s] %s\n", n->name, line);
    fflush(stdout);
}

static void on_lost(void *user, const cairn_lease *lease, const cairn_error *why)
{
    node *n = user;
    atomic_store(&n->lost, true);
    say(n, "lost the lease on %s: %s", lease->worker_id, why->message);
}

/* A fenced append of one event of the worker; false when refused. */
static bool write_event(node *n, const cairn_lease *l, const char *type, int step)
{
    char payload[160];
    snprintf(payload, sizeof payload, "holder=%s token=%llu step=%d", n->name,
             (unsigned long long)l->fencing_token, step);
    cairn_event ev = {.type = type, .worker_id = l->worker_id, .payload = payload,
                      .payload_len = strlen(payload)};
    cairn_append_request req = {.run_id = n->run, .events = &ev, .events_count = 1,
                                .fencing_token = l->fencing_token};
    cairn_append_result res;
    cairn_error err;
    cairn_status st = cairn_append_events(n->client, &req, &res, &err);
    if (st == CAIRN_FAILED_PRECONDITION && strstr(err.message, "fenced")) {
        n->fenced++;
        say(n, "write refused, fenced: %s (%s)", l->worker_id, err.message);
        return false;
    }
    if (st) {
        say(n, "write failed: %s (%s)", cairn_strerror(st), err.message);
        return false;
    }
    return true;
}

/* Runs one leased worker to completion; false when the lease was lost. */
static bool run_worker(node *n, const cairn_lease *l)
{
    if (!write_event(n, l, "worker.started", 0))
        return false;
    for (int step = 1; step <= n->steps; step++) {
        sleep_ms(n->step_ms); /* the work itself */
        if (!write_event(n, l, "worker.step", step))
            return false;
    }
    cairn_complete_request req = {.run_id = n->run, .worker_id = l->worker_id,
                                  .fencing_token = l->fencing_token};
    cairn_complete_result res;
    cairn_error err;
    cairn_status st = cairn_complete_worker(n->client, &req, &res, &err);
    if (st) {
        if (strstr(err.message, "fenced"))
            n->fenced++;
        say(n, "completion refused: %s (%s)", cairn_strerror(st), err.message);
        return false;
    }
    say(n, "completed %s", l->worker_id);

    /* Checkpoint as we go: the server records the completed set. */
    cairn_run run;
    if (cairn_get_run(n->client, n->run, &run, &err) == CAIRN_OK) {
        char state[300];
        snprintf(state, sizeof state, "%s done by %s", l->worker_id, n->name);
        cairn_checkpoint_request ck = {.run_id = n->run, .run_state = state,
                                       .events_count = run.next_seq - 1};
        cairn_checkpoint cp;
        if (cairn_create_checkpoint(n->client, &ck, state, strlen(state), &cp, &err) == CAIRN_OK) {
            say(n, "checkpoint %s covers %llu events, %zu workers completed", cp.checkpoint_id,
                (unsigned long long)cp.events_count, cp.completed_workers_count);
            cairn_checkpoint_free(&cp);
        }
        cairn_run_free(&run);
    }
    return true;
}

/* One pass: lease the first worker still to run that nobody holds. Returns
 * 1 when a worker was run (or lost), 0 when all are held by others, -1
 * when nothing is left to run. */
static int pass(node *n)
{
    cairn_resume_plan plan;
    cairn_error err;
    cairn_status st = cairn_resume_run(n->client, n->run, NULL, 0, &plan, &err);
    if (st) {
        say(n, "resume failed: %s (%s)", cairn_strerror(st), err.message);
        return 0;
    }
    int result = plan.workers_to_rerun_count ? 0 : -1;
    for (size_t i = 0; i < plan.workers_to_rerun_count && result == 0; i++) {
        cairn_acquire_request req = {.run_id = n->run, .worker_id = plan.workers_to_rerun[i],
                                     .holder = n->name, .ttl_ms = n->ttl_ms};
        cairn_lease lease;
        if (cairn_acquire_worker(n->client, &req, &lease, &err) != CAIRN_OK)
            continue; /* held by another node, or completed meanwhile */
        say(n, "leased %s, fencing token %llu", lease.worker_id,
            (unsigned long long)lease.fencing_token);
        atomic_store(&n->lost, false);
        cairn_lease_keeper *keeper = NULL;
        cairn_lease_keeper_start(n->client, &lease, on_lost, n, &keeper, &err);
        run_worker(n, &lease);
        cairn_lease_keeper_stop(keeper);
        result = 1;
    }
    cairn_resume_plan_free(&plan);
    return result;
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {{"target", required_argument, NULL, 't'},
                                         {"run", required_argument, NULL, 'r'},
                                         {"node", required_argument, NULL, 'n'},
                                         {"ttl-ms", required_argument, NULL, 'l'},
                                         {"step-ms", required_argument, NULL, 's'},
                                         {"steps", required_argument, NULL, 'k'},
                                         {0}};
    node n = {.ttl_ms = 1000, .step_ms = 150, .steps = 4};
    const char *target = NULL;
    int o;
    while ((o = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (o) {
        case 't': target = optarg; break;
        case 'r': n.run = optarg; break;
        case 'n': n.name = optarg; break;
        case 'l': n.ttl_ms = (uint32_t)atoi(optarg); break;
        case 's': n.step_ms = atoi(optarg); break;
        case 'k': n.steps = atoi(optarg); break;
        default: return 2;
        }
    }
    if (!target || !n.run || !n.name) {
        fprintf(stderr, "usage: cairn-demo-node --target HOST:PORT --run RUN --node NAME\n");
        return 2;
    }
    cairn_client_options opts_c;
    cairn_client_options_init(&opts_c);
    opts_c.target = target;
    cairn_error err;
    if (cairn_client_create(&opts_c, &n.client, &err)) {
        fprintf(stderr, "%s\n", err.message);
        return 1;
    }
    int r;
    while ((r = pass(&n)) >= 0)
        if (r == 0)
            sleep_ms((int)n.ttl_ms / 4); /* all held by others: look again soon */
    say(&n, "nothing left to run; %d write(s) refused as fenced", n.fenced);
    cairn_client_destroy(n.client);
    return 0;
}
