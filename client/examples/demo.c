/* cairn-demo: a run of 8 workers executed by 3 node processes, with a node
 * dying midway and another paused until its lease is taken over. It
 * starts cairnd (embedded store) on 127.0.0.1, prints the timeline as the
 * watch stream delivers it, and ends by verifying from the log that every
 * worker completed exactly once and no fenced write got in. Exit status 0
 * only if that holds.
 *
 * With --pg-dsn it starts --replicas cairnd processes (default 3) on that
 * PostgreSQL instead (`make demo-cluster`), and every client spreads its
 * calls over all of them round-robin.
 *
 * usage: cairn-demo --cairnd PATH --node PATH [--workers 8] [--nodes 3]
 *                   [--ttl-ms 1000] [--step-ms 150] [--steps 4]
 *                   [--pg-dsn DSN [--replicas 3]] */
#include <cairn/cairn.h>

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <getopt.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

enum { MAX_WORKERS = 64, MAX_NODES = 8, MAX_REPLICAS = 8, WAIT_S = 120 };

typedef struct demo {
    const char *cairnd, *node_bin;
    int workers, nodes, steps, step_ms, replicas;
    unsigned ttl_ms;
    const char *pg_dsn;                   /* NULL: one cairnd, embedded store */
    char data_dir[256], target[256], run[32];
    pid_t server[MAX_REPLICAS], node_pid[MAX_NODES];
    cairn_client *client;
    double t0;
    /* what the watch stream told so far, under mu */
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int completed;
    char started_by[MAX_WORKERS][16];     /* holder of the latest worker.started */
    uint64_t started_token[MAX_WORKERS];
    /* the latest worker.step: which node, which worker, which step */
    char step_holder[16];
    int step_worker, step;
} demo;

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

__attribute__((format(printf, 2, 3))) static void timeline(const demo *d, const char *fmt, ...)
{
    char line[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    printf("%7.3fs  %s\n", now_s() - d->t0, line);
    fflush(stdout);
}

static int worker_index(const demo *d, const char *id)
{
    int i;
    if (sscanf(id, "w%d", &i) == 1 && i >= 1 && i <= d->workers)
        return i - 1;
    return -1;
}

/* The live view: every event as it commits. */
static int on_event(void *user, const cairn_event *ev)
{
    demo *d = user;
    char payload[200];
    size_t n = ev->payload_len < sizeof payload - 1 ? ev->payload_len : sizeof payload - 1;
    memcpy(payload, ev->payload, n);
    payload[n] = '\0';
    timeline(d, "#%-4llu %-17s %-4s %s", (unsigned long long)ev->seq, ev->type,
             *ev->worker_id ? ev->worker_id : "-", payload);
    pthread_mutex_lock(&d->mu);
    int w = worker_index(d, ev->worker_id);
    char holder[16];
    unsigned long long token;
    if (w >= 0 && strcmp(ev->type, "worker.started") == 0 &&
        sscanf(payload, "holder=%15s token=%llu", holder, &token) == 2) {
        snprintf(d->started_by[w], sizeof d->started_by[w], "%s", holder);
        d->started_token[w] = token;
    } else if (w >= 0 && strcmp(ev->type, "worker.step") == 0 &&
               sscanf(payload, "holder=%15s token=%llu step=%d", holder, &token, &d->step) == 3) {
        snprintf(d->step_holder, sizeof d->step_holder, "%s", holder);
        d->step_worker = w;
    } else if (strcmp(ev->type, "worker.completed") == 0) {
        d->completed++;
    }
    pthread_cond_broadcast(&d->cv);
    pthread_mutex_unlock(&d->mu);
    return 0;
}

/* Waits (bounded) until pred holds; d->mu held. */
static bool wait_until(demo *d, bool (*pred)(demo *, void *), void *arg)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += WAIT_S;
    while (!pred(d, arg))
        if (pthread_cond_timedwait(&d->cv, &d->mu, &ts) == ETIMEDOUT)
            return false;
    return true;
}

static bool all_done(demo *d, void *arg)
{
    (void)arg;
    return d->completed == d->workers;
}

typedef struct midway {
    const char *node;
    int step;
} midway;

/* the node reached the step of a worker, or everything is done */
static bool node_midway(demo *d, void *arg)
{
    const midway *m = arg;
    return all_done(d, NULL) || (strcmp(d->step_holder, m->node) == 0 && d->step == m->step);
}

typedef struct takeover {
    int worker;
    uint64_t token;
} takeover;

static bool taken_over(demo *d, void *arg)
{
    takeover *t = arg;
    return all_done(d, NULL) || d->started_token[t->worker] > t->token;
}

static pid_t spawn(char *const argv[], int out_fd)
{
    pid_t pid = fork();
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL); /* the demo's processes end with it */
        if (out_fd >= 0)
            dup2(out_fd, STDOUT_FILENO);
        execv(argv[0], argv);
        _exit(127);
    }
    return pid;
}

/* Starts cairnd number i and appends its address to d->target. */
static int start_server(demo *d, int i)
{
    int p[2];
    if (pipe(p) < 0)
        return -1;
    char dir[300];
    snprintf(dir, sizeof dir, "%s/replica%d", d->data_dir, i + 1);
    /* The DSN goes by the environment (CAIRN_PG_DSN), not by a flag that
     * shows in ps. */
    char *argv[] = {(char *)d->cairnd, "--listen", "127.0.0.1:0", "--data-dir",
                    d->pg_dsn ? dir : d->data_dir, "--log-level", "warn",
                    "--metrics-listen", "127.0.0.1:0", /* three at once: no fixed port */
                    d->pg_dsn ? "--store" : NULL /* ends argv here without */, "postgres",
                    NULL};
    d->server[i] = spawn(argv, p[1]);
    close(p[1]);
    char line[128];
    size_t n = 0;
    while (n < sizeof line - 1 && read(p[0], line + n, 1) == 1 && line[n] != '\n')
        n++;
    line[n] = '\0';
    close(p[0]);
    const char *colon = strrchr(line, ':');
    if (strncmp(line, "listening on ", 13) != 0 || !colon)
        return -1;
    size_t len = strlen(d->target);
    snprintf(d->target + len, sizeof d->target - len, "%s127.0.0.1:%s",
             d->replicas == 1 ? "" : i == 0 ? "ipv4:" : ",", colon + 1);
    return 0;
}

static int start_servers(demo *d)
{
    if (d->pg_dsn && setenv("CAIRN_PG_DSN", d->pg_dsn, 1) != 0)
        return -1;
    for (int i = 0; i < d->replicas; i++)
        if (start_server(d, i) < 0)
            return -1;
    return 0;
}

static void start_nodes(demo *d)
{
    char ttl[16], step_ms[16], steps[16];
    snprintf(ttl, sizeof ttl, "%u", d->ttl_ms);
    snprintf(step_ms, sizeof step_ms, "%d", d->step_ms);
    snprintf(steps, sizeof steps, "%d", d->steps);
    for (int i = 0; i < d->nodes; i++) {
        char name[16];
        snprintf(name, sizeof name, "node-%d", i + 1);
        char *argv[] = {(char *)d->node_bin, "--target", d->target, "--run", d->run, "--node",
                        name, "--ttl-ms", ttl, "--step-ms", step_ms, "--steps", steps, NULL};
        d->node_pid[i] = spawn(argv, -1);
    }
}

/* Reads the whole log and checks: every worker completed exactly once,
 * its last holder did every step under its token, and no event of a
 * worker carries a token older than one already seen for it. */
static bool verify(demo *d)
{
    int completions[MAX_WORKERS] = {0};
    uint64_t max_token[MAX_WORKERS] = {0};
    int steps_under[MAX_WORKERS] = {0};   /* steps under the latest token */
    int stale = 0, events = 0;
    uint64_t from = 1;
    for (;;) {
        cairn_event_page page;
        cairn_error err;
        if (cairn_read_events(d->client, d->run, from, 1000, &page, &err)) {
            printf("verify: cannot read the log: %s\n", err.message);
            return false;
        }
        for (size_t i = 0; i < page.events_count; i++) {
            const cairn_event *e = &page.events[i];
            int w = worker_index(d, e->worker_id);
            events++;
            if (w < 0)
                continue;
            if (strcmp(e->type, "worker.completed") == 0) {
                completions[w]++;
                continue;
            }
            char text[200];
            size_t n = e->payload_len < sizeof text - 1 ? e->payload_len : sizeof text - 1;
            memcpy(text, e->payload, n);
            text[n] = '\0';
            char holder[16];
            unsigned long long token;
            int step;
            if (sscanf(text, "holder=%15s token=%llu step=%d", holder, &token, &step) != 3)
                continue;
            if (token < max_token[w]) {
                stale++;
                printf("verify: seq %llu of %s carries token %llu after token %llu\n",
                       (unsigned long long)e->seq, e->worker_id, token,
                       (unsigned long long)max_token[w]);
            } else if (token > max_token[w]) {
                max_token[w] = token;
                steps_under[w] = 0;
            }
            if (strcmp(e->type, "worker.step") == 0 && token == max_token[w])
                steps_under[w]++;
        }
        size_t got = page.events_count;
        from = page.next_seq;
        cairn_event_page_free(&page);
        if (!got)
            break;
    }
    bool ok = stale == 0;
    for (int w = 0; w < d->workers; w++) {
        if (completions[w] != 1 || steps_under[w] != d->steps) {
            printf("verify: w%d completed %d time(s), %d/%d steps under its final token %llu\n",
                   w + 1, completions[w], steps_under[w], d->steps,
                   (unsigned long long)max_token[w]);
            ok = false;
        }
    }
    printf("\nverify: %d events; %d workers, each completed exactly once: %s; "
           "writes under a superseded fencing token in the log: %d\n",
           events, d->workers, ok ? "yes" : "NO", stale);
    return ok;
}

static int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

static void stop_child(pid_t pid, int sig)
{
    if (pid > 0) {
        kill(pid, sig);
        waitpid(pid, NULL, 0);
    }
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {
        {"cairnd", required_argument, NULL, 'c'}, {"node", required_argument, NULL, 'n'},
        {"workers", required_argument, NULL, 'w'}, {"nodes", required_argument, NULL, 'N'},
        {"ttl-ms", required_argument, NULL, 't'}, {"step-ms", required_argument, NULL, 's'},
        {"steps", required_argument, NULL, 'k'}, {"pg-dsn", required_argument, NULL, 'p'},
        {"replicas", required_argument, NULL, 'r'}, {0}};
    static demo d = {.workers = 8, .nodes = 3, .ttl_ms = 1000, .step_ms = 150, .steps = 4};
    int replicas = 3;
    int o;
    while ((o = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (o) {
        case 'c': d.cairnd = optarg; break;
        case 'n': d.node_bin = optarg; break;
        case 'w': d.workers = atoi(optarg); break;
        case 'N': d.nodes = atoi(optarg); break;
        case 't': d.ttl_ms = (unsigned)atoi(optarg); break;
        case 's': d.step_ms = atoi(optarg); break;
        case 'k': d.steps = atoi(optarg); break;
        case 'p': d.pg_dsn = optarg; break;
        case 'r': replicas = atoi(optarg); break;
        default: return 2;
        }
    }
    d.replicas = d.pg_dsn ? replicas : 1;
    if (!d.cairnd || !d.node_bin || d.workers < 1 || d.workers > MAX_WORKERS || d.nodes < 3 ||
        d.nodes > MAX_NODES || d.replicas < 1 || d.replicas > MAX_REPLICAS) {
        fprintf(stderr, "usage: cairn-demo --cairnd PATH --node PATH [--workers 1..64] "
                        "[--nodes 3..8] [--ttl-ms MS] [--step-ms MS] [--steps N] "
                        "[--pg-dsn DSN [--replicas 1..8]]\n");
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    pthread_mutex_init(&d.mu, NULL);
    pthread_cond_init(&d.cv, NULL);
    snprintf(d.data_dir, sizeof d.data_dir, "%s/cairn-demo-XXXXXX",
             getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
    if (!mkdtemp(d.data_dir) || start_servers(&d) < 0) {
        fprintf(stderr, "cairn-demo: cannot start cairnd\n");
        for (int i = 0; i < d.replicas; i++)
            stop_child(d.server[i], SIGKILL);
        return 1;
    }
    snprintf(d.run, sizeof d.run, "demo-%ld", (long)getpid());
    d.t0 = now_s();
    if (d.pg_dsn)
        printf("%d cairnd replicas on PostgreSQL: %s; ", d.replicas, d.target);
    else
        printf("cairnd on %s (data dir %s); ", d.target, d.data_dir);
    printf("run %s: %d workers, %d nodes, lease ttl %u ms\n\n", d.run, d.workers, d.nodes,
           d.ttl_ms);

    cairn_client_options copts;
    cairn_client_options_init(&copts);
    copts.target = d.target;
    cairn_error err;
    if (cairn_client_create(&copts, &d.client, &err)) {
        fprintf(stderr, "cairn-demo: %s\n", err.message);
        return 1;
    }
    char names[MAX_WORKERS][16];
    const char *workers[MAX_WORKERS];
    for (int i = 0; i < d.workers; i++) {
        snprintf(names[i], sizeof names[i], "w%d", i + 1);
        workers[i] = names[i];
    }
    cairn_create_run_request cr = {.run_id = d.run, .workers = workers,
                                   .workers_count = (size_t)d.workers};
    cairn_run run;
    if (cairn_create_run(d.client, &cr, &run, &err)) {
        fprintf(stderr, "cairn-demo: create run: %s\n", err.message);
        return 1;
    }
    cairn_run_free(&run);
    cairn_watch_request wr = {.run_id = d.run, .from_seq = 1, .on_event = on_event, .user = &d};
    cairn_watcher *watcher;
    if (cairn_watch_start(d.client, &wr, &watcher, &err)) {
        fprintf(stderr, "cairn-demo: watch: %s\n", err.message);
        return 1;
    }
    start_nodes(&d);

    bool ok = true;
    pthread_mutex_lock(&d.mu);
    /* 1. node-1 dies halfway through a worker. */
    midway kill_at = {"node-1", d.steps / 2};
    ok = wait_until(&d, node_midway, &kill_at);
    if (ok && !all_done(&d, NULL)) {
        kill(d.node_pid[0], SIGKILL);
        waitpid(d.node_pid[0], NULL, 0);
        d.node_pid[0] = 0;
        timeline(&d, "!! node-1 killed (SIGKILL) halfway through w%d; its lease will expire",
                 d.step_worker + 1);
    }
    /* 2. node-2 freezes in the middle of its next worker, until another
     *    node took that worker over; then it thaws, and its next write is
     *    fenced. */
    midway pause_at = {"node-2", 1};
    if (ok) {
        d.step = 0;
        ok = wait_until(&d, node_midway, &pause_at);
    }
    if (ok && !all_done(&d, NULL)) {
        takeover t = {d.step_worker, d.started_token[d.step_worker]};
        kill(d.node_pid[1], SIGSTOP);
        timeline(&d, "!! node-2 paused (SIGSTOP) while holding w%d with token %llu",
                 t.worker + 1, (unsigned long long)t.token);
        ok = wait_until(&d, taken_over, &t);
        kill(d.node_pid[1], SIGCONT);
        timeline(&d, "!! node-2 resumed (SIGCONT): w%d is now held by %s with token %llu",
                 t.worker + 1, d.started_by[t.worker],
                 (unsigned long long)d.started_token[t.worker]);
    }
    /* 3. the survivors finish the run. */
    if (ok)
        ok = wait_until(&d, all_done, NULL);
    pthread_mutex_unlock(&d.mu);
    for (int i = 0; i < d.nodes; i++) { /* they leave once nothing is left */
        if (d.node_pid[i] > 0 && ok)
            waitpid(d.node_pid[i], NULL, 0);
        else
            stop_child(d.node_pid[i], SIGKILL);
    }
    cairn_watch_stop(watcher, NULL);
    if (!ok)
        printf("\ncairn-demo: the run did not finish within %d s\n", WAIT_S);
    ok = ok && verify(&d);

    cairn_client_destroy(d.client);
    for (int i = 0; i < d.replicas; i++) {
        kill(d.server[i], SIGTERM);
        int status = 0;
        waitpid(d.server[i], &status, 0);
        if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
            printf("cairn-demo: cairnd %d did not stop cleanly\n", i + 1);
            ok = false;
        }
    }
    printf("%s\n", ok ? "cairn-demo: OK" : "cairn-demo: FAILED");
    if (ok) /* keep the data dir of a failed demo for a post-mortem */
        nftw(d.data_dir, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
    return ok ? 0 : 1;
}
