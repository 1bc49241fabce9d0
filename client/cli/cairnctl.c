/* cairnctl: the operator CLI, built on libcairn's public API only. */
#include <cairn/cairn.h>
#include "cairn_revision.h" /* generated: CAIRN_GIT_REVISION */

#include <ctype.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_LABELS 64

static const char usage_text[] =
    "usage: cairnctl [--target HOST:PORT] [--deadline-ms MS] COMMAND [ARGS]\n"
    "\n"
    "  health                              is the server serving?\n"
    "  create-run RUN WORKER... [--label K=V]... [--key KEY]\n"
    "  get-run RUN\n"
    "  delete-run RUN [--key KEY]          the run and all it holds; no run is no error\n"
    "  list-runs [--page-size N] [--all]\n"
    "  append RUN TYPE [PAYLOAD] [--worker ID] [--key KEY] [--expect SEQ]\n"
    "  read RUN [--from SEQ] [--max N] [--all]\n"
    "  complete RUN WORKER [--key KEY]\n"
    "  checkpoint RUN FILE [--state S] [--events N] [--completed W]... [--key KEY]\n"
    "  checkpoints RUN                     list, oldest first\n"
    "  load RUN [CHECKPOINT_ID] [--out PATH]   the latest when no id; stdout when no --out\n"
    "  cleanup RUN KEEP_LAST_N [--key KEY]\n"
    "  resume RUN [WORKER...]              what to rerun, from which seq\n"
    "  watch RUN [--from SEQ]              follow the log as it grows (Ctrl-C stops)\n"
    "\n"
    "--target defaults to $CAIRN_TARGET, else 127.0.0.1:7070.\n"
    "--deadline-ms bounds each call, retries included (default 60000); a health\n"
    "check run by a supervisor wants a few seconds: cairnctl --deadline-ms 3000 health\n"
    "health exits 0 when SERVING, 1 otherwise (NOT_SERVING, or no answer in time).\n";

static int usage(void)
{
    fputs(usage_text, stderr);
    return 2;
}

static int fail(cairn_status st, const cairn_error *err)
{
    fprintf(stderr, "cairnctl: %s: %s\n", cairn_strerror(st), err->message);
    return 1;
}

static int parse_u64(const char *s, uint64_t *out)
{
    char *end;
    if (!*s || !isdigit((unsigned char)*s))
        return -1;
    *out = strtoull(s, &end, 10);
    return *end ? -1 : 0;
}

static void print_list(const char *name, const char *const *v, size_t n)
{
    printf("%s:", name);
    for (size_t i = 0; i < n; i++)
        printf(" %s", v[i]);
    printf("\n");
}

static void print_run(const cairn_run *r)
{
    printf("run_id: %s\nstate: %s\n", r->run_id, r->state);
    print_list("workers", r->workers, r->workers_count);
    print_list("completed_workers", r->completed_workers, r->completed_workers_count);
    printf("labels:");
    for (size_t i = 0; i < r->labels_count; i++)
        printf(" %s=%s", r->labels[i].key, r->labels[i].value);
    printf("\nnext_seq: %llu\nlatest_checkpoint_id: %s\ncreated_at: %s\n",
           (unsigned long long)r->next_seq, r->latest_checkpoint_id, r->created_at);
}

/* Prints bytes as text, escaping what is not printable ASCII. */
static void print_bytes(const unsigned char *p, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (p[i] >= 0x20 && p[i] < 0x7f && p[i] != '\\')
            putchar(p[i]);
        else
            printf("\\x%02x", p[i]);
    }
}

static int cmd_health(cairn_client *c, int argc, char **argv)
{
    if (argc > 2)
        return usage();
    cairn_serving s;
    cairn_error err;
    cairn_status st = cairn_health_check(c, argc == 2 ? argv[1] : "", &s, &err);
    if (st)
        return fail(st, &err);
    printf("%s\n", s == CAIRN_SERVING ? "SERVING" : s == CAIRN_NOT_SERVING ? "NOT_SERVING" : "UNKNOWN");
    return s == CAIRN_SERVING ? 0 : 1;
}

static int cmd_create_run(cairn_client *c, int argc, char **argv)
{
    static const struct option opts[] = {
        {"label", required_argument, NULL, 'l'}, {"key", required_argument, NULL, 'k'}, {0}};
    cairn_label labels[MAX_LABELS];
    size_t n_labels = 0;
    const char *key = NULL;
    int o;
    while ((o = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        if (o == 'k') {
            key = optarg;
        } else if (o == 'l') {
            char *eq = strchr(optarg, '=');
            if (!eq || n_labels == MAX_LABELS) {
                fprintf(stderr, "cairnctl: --label: expected KEY=VALUE, at most %d\n", MAX_LABELS);
                return 2;
            }
            *eq = '\0';
            labels[n_labels++] = (cairn_label){.key = optarg, .value = eq + 1};
        } else {
            return usage();
        }
    }
    if (argc - optind < 2)
        return usage();
    cairn_create_run_request req = {
        .idempotency_key = key,
        .run_id = argv[optind],
        .workers = (const char *const *)&argv[optind + 1],
        .workers_count = (size_t)(argc - optind - 1),
        .labels = labels,
        .labels_count = n_labels,
    };
    cairn_run run;
    cairn_error err;
    cairn_status st = cairn_create_run(c, &req, &run, &err);
    if (st)
        return fail(st, &err);
    print_run(&run);
    cairn_run_free(&run);
    return 0;
}

static int cmd_get_run(cairn_client *c, int argc, char **argv)
{
    if (argc != 2)
        return usage();
    cairn_run run;
    cairn_error err;
    cairn_status st = cairn_get_run(c, argv[1], &run, &err);
    if (st)
        return fail(st, &err);
    print_run(&run);
    cairn_run_free(&run);
    return 0;
}

static int cmd_list_runs(cairn_client *c, int argc, char **argv)
{
    static const struct option opts[] = {
        {"page-size", required_argument, NULL, 'n'}, {"all", no_argument, NULL, 'a'}, {0}};
    uint64_t page_size = 0;
    int all = 0, o;
    while ((o = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        if (o == 'n' && parse_u64(optarg, &page_size) == 0 && page_size <= UINT32_MAX)
            continue;
        if (o == 'a') {
            all = 1;
            continue;
        }
        return usage();
    }
    if (optind != argc)
        return usage();
    char token[64] = "";
    do {
        cairn_run_page page;
        cairn_error err;
        cairn_status st = cairn_list_runs(c, (uint32_t)page_size, token, &page, &err);
        if (st)
            return fail(st, &err);
        for (size_t i = 0; i < page.runs_count; i++)
            printf("%s\t%s\tnext_seq=%llu\tworkers=%zu\tcompleted=%zu\t%s\n", page.runs[i].run_id,
                   page.runs[i].state, (unsigned long long)page.runs[i].next_seq,
                   page.runs[i].workers_count, page.runs[i].completed_workers_count,
                   page.runs[i].created_at);
        memcpy(token, page.next_page_token, sizeof token);
        cairn_run_page_free(&page);
        if (!all && *token)
            printf("next_page_token: %s\n", token);
    } while (all && *token);
    return 0;
}

static int cmd_append(cairn_client *c, int argc, char **argv)
{
    static const struct option opts[] = {{"worker", required_argument, NULL, 'w'},
                                         {"key", required_argument, NULL, 'k'},
                                         {"expect", required_argument, NULL, 'e'},
                                         {0}};
    cairn_append_request req = {0};
    cairn_event ev = {0};
    int o;
    while ((o = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        if (o == 'w')
            ev.worker_id = optarg;
        else if (o == 'k')
            req.idempotency_key = optarg;
        else if (o == 'e' && parse_u64(optarg, &req.expected_next_seq) == 0)
            continue;
        else
            return usage();
    }
    if (argc - optind < 2 || argc - optind > 3)
        return usage();
    req.run_id = argv[optind];
    ev.type = argv[optind + 1];
    if (argc - optind == 3) {
        ev.payload = argv[optind + 2];
        ev.payload_len = strlen(argv[optind + 2]);
    }
    req.events = &ev;
    req.events_count = 1;
    cairn_append_result res;
    cairn_error err;
    cairn_status st = cairn_append_events(c, &req, &res, &err);
    if (st)
        return fail(st, &err);
    printf("seq: %llu%s\nevents_since_checkpoint: %llu\n", (unsigned long long)res.first_seq,
           res.replayed ? " (replayed)" : "", (unsigned long long)res.events_since_checkpoint);
    return 0;
}

static int cmd_read(cairn_client *c, int argc, char **argv)
{
    static const struct option opts[] = {{"from", required_argument, NULL, 'f'},
                                         {"max", required_argument, NULL, 'm'},
                                         {"all", no_argument, NULL, 'a'},
                                         {0}};
    uint64_t from = 1, max = 0;
    int all = 0, o;
    while ((o = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        if ((o == 'f' && parse_u64(optarg, &from) == 0) ||
            (o == 'm' && parse_u64(optarg, &max) == 0 && max <= UINT32_MAX))
            continue;
        if (o == 'a') {
            all = 1;
            continue;
        }
        return usage();
    }
    if (argc - optind != 1)
        return usage();
    for (;;) {
        cairn_event_page page;
        cairn_error err;
        cairn_status st = cairn_read_events(c, argv[optind], from, (uint32_t)max, &page, &err);
        if (st)
            return fail(st, &err);
        for (size_t i = 0; i < page.events_count; i++) {
            const cairn_event *e = &page.events[i];
            printf("%llu\t%s\t%s\t%s\t", (unsigned long long)e->seq, e->type,
                   *e->worker_id ? e->worker_id : "-", e->created_at);
            print_bytes(e->payload, e->payload_len);
            printf("\n");
        }
        size_t n = page.events_count;
        from = page.next_seq;
        cairn_event_page_free(&page);
        if (!all || n == 0)
            break;
    }
    return 0;
}

static int cmd_complete(cairn_client *c, int argc, char **argv)
{
    static const struct option opts[] = {{"key", required_argument, NULL, 'k'}, {0}};
    cairn_complete_request req = {0};
    int o;
    while ((o = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        if (o != 'k')
            return usage();
        req.idempotency_key = optarg;
    }
    if (argc - optind != 2)
        return usage();
    req.run_id = argv[optind];
    req.worker_id = argv[optind + 1];
    cairn_complete_result res;
    cairn_error err;
    cairn_status st = cairn_complete_worker(c, &req, &res, &err);
    if (st)
        return fail(st, &err);
    printf("seq: %llu%s\nrun_state: %s\n", (unsigned long long)res.seq,
           res.replayed ? " (replayed)" : "", res.run_state);
    return 0;
}

static void print_checkpoint(const cairn_checkpoint *cp)
{
    printf("%s\t%s\tevents=%llu\tbytes=%llu\tsha256=%s\tstate=%s\tcompleted=", cp->checkpoint_id,
           cp->created_at, (unsigned long long)cp->events_count,
           (unsigned long long)cp->snapshot_size, cp->snapshot_sha256, cp->run_state);
    for (size_t i = 0; i < cp->completed_workers_count; i++)
        printf("%s%s", i ? "," : "", cp->completed_workers[i]);
    printf("%s\n", cp->replayed ? "\t(replayed)" : "");
}

static int cmd_checkpoint(cairn_client *c, int argc, char **argv)
{
    static const struct option opts[] = {{"state", required_argument, NULL, 's'},
                                         {"events", required_argument, NULL, 'e'},
                                         {"completed", required_argument, NULL, 'w'},
                                         {"key", required_argument, NULL, 'k'},
                                         {0}};
    const char *completed[64];
    cairn_checkpoint_request req = {.completed_workers = completed};
    int o;
    while ((o = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        if (o == 's')
            req.run_state = optarg;
        else if (o == 'k')
            req.idempotency_key = optarg;
        else if (o == 'w' && req.completed_workers_count < 64)
            completed[req.completed_workers_count++] = optarg;
        else if (!(o == 'e' && parse_u64(optarg, &req.events_count) == 0))
            return usage();
    }
    if (argc - optind != 2)
        return usage();
    req.run_id = argv[optind];
    cairn_checkpoint cp;
    cairn_error err;
    cairn_status st = cairn_create_checkpoint_path(c, &req, argv[optind + 1], &cp, &err);
    if (st)
        return fail(st, &err);
    print_checkpoint(&cp);
    cairn_checkpoint_free(&cp);
    return 0;
}

static int cmd_checkpoints(cairn_client *c, int argc, char **argv)
{
    if (argc != 2)
        return usage();
    cairn_checkpoint_list list;
    cairn_error err;
    cairn_status st = cairn_list_checkpoints(c, argv[1], &list, &err);
    if (st)
        return fail(st, &err);
    for (size_t i = 0; i < list.count; i++)
        print_checkpoint(&list.checkpoints[i]);
    cairn_checkpoint_list_free(&list);
    return 0;
}

static int cmd_load(cairn_client *c, int argc, char **argv)
{
    static const struct option opts[] = {{"out", required_argument, NULL, 'o'}, {0}};
    const char *out = NULL;
    int o;
    while ((o = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        if (o != 'o')
            return usage();
        out = optarg;
    }
    if (argc - optind < 1 || argc - optind > 2)
        return usage();
    cairn_load_request req = {.run_id = argv[optind],
                              .checkpoint_id = argc - optind == 2 ? argv[optind + 1] : NULL};
    cairn_checkpoint meta;
    cairn_error err;
    cairn_status st;
    if (out) {
        st = cairn_load_checkpoint_path(c, &req, out, &meta, &err);
    } else {
        void *data;
        size_t len;
        st = cairn_load_checkpoint(c, &req, &meta, &data, &len, &err);
        if (!st && fwrite(data, 1, len, stdout) != len)
            st = CAIRN_IO;
        if (!st)
            cairn_buffer_free(data);
    }
    if (st)
        return fail(st, &err);
    if (out)
        print_checkpoint(&meta);
    cairn_checkpoint_free(&meta);
    return 0;
}

static int cmd_cleanup(cairn_client *c, int argc, char **argv)
{
    static const struct option opts[] = {{"key", required_argument, NULL, 'k'}, {0}};
    const char *key = NULL;
    int o;
    while ((o = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        if (o != 'k')
            return usage();
        key = optarg;
    }
    uint64_t keep;
    if (argc - optind != 2 || parse_u64(argv[optind + 1], &keep) || keep > UINT32_MAX)
        return usage();
    cairn_cleanup_request req = {.idempotency_key = key, .run_id = argv[optind],
                                 .keep_last_n = (uint32_t)keep};
    cairn_cleanup_result res;
    cairn_error err;
    cairn_status st = cairn_cleanup_checkpoints(c, &req, &res, &err);
    if (st)
        return fail(st, &err);
    printf("deleted: %u%s\n", res.deleted, res.replayed ? " (replayed)" : "");
    for (size_t i = 0; i < res.deleted_ids_count; i++)
        printf("%s\n", res.deleted_ids[i]);
    cairn_cleanup_result_free(&res);
    return 0;
}

static int cmd_delete_run(cairn_client *c, int argc, char **argv)
{
    static const struct option opts[] = {{"key", required_argument, NULL, 'k'}, {0}};
    const char *key = NULL;
    int o;
    while ((o = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        if (o != 'k')
            return usage();
        key = optarg;
    }
    if (argc - optind != 1)
        return usage();
    cairn_delete_run_request req = {.idempotency_key = key, .run_id = argv[optind]};
    cairn_delete_run_result res;
    cairn_error err;
    cairn_status st = cairn_delete_run(c, &req, &res, &err);
    if (st)
        return fail(st, &err);
    printf("%s %s%s\n", res.existed ? "deleted" : "no run", argv[optind],
           res.replayed ? " (replayed)" : "");
    return 0;
}

static int cmd_resume(cairn_client *c, int argc, char **argv)
{
    if (argc < 2)
        return usage();
    cairn_resume_plan plan;
    cairn_error err;
    cairn_status st = cairn_resume_run(c, argv[1], (const char *const *)argv + 2,
                                       (size_t)(argc - 2), &plan, &err);
    if (st)
        return fail(st, &err);
    printf("run_id: %s\ncheckpoint_id: %s\nresumed_from_state: %s\nresume_from_seq: %llu\n",
           plan.run_id, plan.checkpoint_id, plan.resumed_from_state,
           (unsigned long long)plan.resume_from_seq);
    print_list("workers_to_rerun", plan.workers_to_rerun, plan.workers_to_rerun_count);
    cairn_resume_plan_free(&plan);
    return 0;
}

static int print_event(void *user, const cairn_event *e)
{
    (void)user;
    printf("%llu\t%s\t%s\t%s\t", (unsigned long long)e->seq, e->type,
           *e->worker_id ? e->worker_id : "-", e->created_at);
    print_bytes(e->payload, e->payload_len);
    printf("\n");
    fflush(stdout);
    return 0;
}

static int cmd_watch(cairn_client *c, int argc, char **argv)
{
    static const struct option opts[] = {{"from", required_argument, NULL, 'f'}, {0}};
    uint64_t from = 1;
    int o;
    while ((o = getopt_long(argc, argv, "", opts, NULL)) != -1)
        if (o != 'f' || parse_u64(optarg, &from))
            return usage();
    if (argc - optind != 1)
        return usage();
    cairn_watch_request req = {.run_id = argv[optind], .from_seq = from, .on_event = print_event};
    cairn_error err;
    cairn_status st = cairn_watch(c, &req, &err);
    return st ? fail(st, &err) : 0;
}

static const struct command {
    const char *name;
    int (*run)(cairn_client *c, int argc, char **argv);
} commands[] = {
    {"health", cmd_health},   {"create-run", cmd_create_run}, {"get-run", cmd_get_run},
    {"list-runs", cmd_list_runs}, {"append", cmd_append},     {"read", cmd_read},
    {"complete", cmd_complete}, {"checkpoint", cmd_checkpoint},   {"checkpoints", cmd_checkpoints},
    {"load", cmd_load},         {"cleanup", cmd_cleanup},         {"resume", cmd_resume},
    {"watch", cmd_watch},     {"delete-run", cmd_delete_run},
};

int main(int argc, char **argv)
{
    cairn_client_options opts;
    cairn_client_options_init(&opts);
    if (getenv("CAIRN_TARGET") && *getenv("CAIRN_TARGET"))
        opts.target = getenv("CAIRN_TARGET");

    int i = 1;
    for (; i < argc && argv[i][0] == '-'; i++) {
        if (strcmp(argv[i], "--target") == 0 && i + 1 < argc) {
            opts.target = argv[++i];
        } else if (strcmp(argv[i], "--deadline-ms") == 0 && i + 1 < argc) {
            /* One bound for the whole call, retries included, so a probe of a
             * server that is down ends when its supervisor expects it to. */
            uint64_t ms;
            if (parse_u64(argv[++i], &ms) || ms < 1 || ms > UINT32_MAX) {
                fprintf(stderr, "cairnctl: --deadline-ms: expected 1..%u, got \"%s\"\n",
                        UINT32_MAX, argv[i]);
                return 2;
            }
            opts.retry.call_deadline_ms = (uint32_t)ms;
            if (opts.retry.attempt_deadline_ms > ms)
                opts.retry.attempt_deadline_ms = (uint32_t)ms;
        } else if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            fputs(usage_text, stdout);
            return 0;
        } else if (strcmp(argv[i], "--version") == 0) {
            /* The library's version (it may be a newer libcairn.so.1), and
             * the commit cairnctl itself was built from. */
            printf("cairnctl %s (git %s)\n", cairn_version(), CAIRN_GIT_REVISION);
            return 0;
        } else {
            return usage();
        }
    }
    if (i >= argc)
        return usage();

    for (size_t k = 0; k < sizeof commands / sizeof commands[0]; k++) {
        if (strcmp(argv[i], commands[k].name) != 0)
            continue;
        cairn_client *c;
        cairn_error err;
        cairn_status st = cairn_client_create(&opts, &c, &err);
        if (st)
            return fail(st, &err);
        optind = 1;
        int rc = commands[k].run(c, argc - i, argv + i);
        cairn_client_destroy(c);
        return rc;
    }
    fprintf(stderr, "cairnctl: unknown command \"%s\"\n", argv[i]);
    return usage();
}
