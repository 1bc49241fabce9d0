/* Commands on runs, events, workers and leases. Each builds the JSON
 * document of its result and hands it to output_print. */
#include "cli.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define PAYLOAD_MAX (1024 * 1024) /* the server's limit per event */

json_t *json_run(const cairn_run *r)
{
    json_t *labels = json_object();
    for (size_t i = 0; labels && i < r->labels_count; i++)
        json_object_set_new(labels, r->labels[i].key, json_string(r->labels[i].value));
    return json_pack("{s:s, s:s, s:o, s:o, s:o, s:I, s:s, s:s}", "run_id", r->run_id, "state",
                     r->state, "workers", json_strings(r->workers, r->workers_count),
                     "completed_workers",
                     json_strings(r->completed_workers, r->completed_workers_count), "labels",
                     labels, "next_seq", (json_int_t)r->next_seq, "latest_checkpoint_id",
                     r->latest_checkpoint_id, "created_at", r->created_at);
}

json_t *json_event(const cairn_event *e)
{
    return json_pack("{s:I, s:s, s:s, s:o, s:s}", "seq", (json_int_t)e->seq, "type", e->type,
                     "worker_id", e->worker_id ? e->worker_id : "", "payload",
                     json_base64(e->payload, e->payload_len), "created_at",
                     e->created_at ? e->created_at : "");
}

int cmd_health(const cli_ctx *cli, char **args, int nargs)
{
    cairn_serving s;
    cairn_error err;
    cairn_status st = cairn_health_check(cli->client, nargs ? args[0] : "", &s, &err);
    if (st)
        return fail(st, &err);
    const char *name = s == CAIRN_SERVING       ? "SERVING"
                       : s == CAIRN_NOT_SERVING ? "NOT_SERVING"
                                                : "UNKNOWN";
    int rc = output_print(cli->output, json_pack("{s:s}", "status", name), NULL);
    return rc ? rc : s == CAIRN_SERVING ? 0 : EXIT_REFUSED;
}

int cmd_create_run(const cli_ctx *cli, char **args, int nargs)
{
    const flags *f = cli->flags;
    cairn_create_run_request req = {
        .idempotency_key = f->key,
        .run_id = args[0],
        .workers = (const char *const *)&args[1],
        .workers_count = (size_t)(nargs - 1),
        .labels = f->labels,
        .labels_count = f->labels_count,
    };
    cairn_run run;
    cairn_error err;
    cairn_status st = cairn_create_run(cli->client, &req, &run, &err);
    if (st)
        return fail(st, &err);
    json_t *doc = json_run(&run);
    json_object_set_new(doc, "replayed", json_boolean(run.replayed));
    cairn_run_free(&run);
    return output_print(cli->output, doc, NULL);
}

int cmd_get_run(const cli_ctx *cli, char **args, int nargs)
{
    (void)nargs;
    cairn_run run;
    cairn_error err;
    cairn_status st = cairn_get_run(cli->client, args[0], &run, &err);
    if (st)
        return fail(st, &err);
    json_t *doc = json_run(&run);
    cairn_run_free(&run);
    return output_print(cli->output, doc, NULL);
}

int cmd_delete_run(const cli_ctx *cli, char **args, int nargs)
{
    (void)nargs;
    cairn_delete_run_request req = {.idempotency_key = cli->flags->key, .run_id = args[0]};
    cairn_delete_run_result res;
    cairn_error err;
    cairn_status st = cairn_delete_run(cli->client, &req, &res, &err);
    if (st)
        return fail(st, &err);
    return output_print(cli->output,
                        json_pack("{s:s, s:b, s:b}", "run_id", args[0], "existed", res.existed,
                                  "replayed", res.replayed),
                        NULL);
}

int cmd_list_runs(const cli_ctx *cli, char **args, int nargs)
{
    (void)args, (void)nargs;
    const flags *f = cli->flags;
    json_t *runs = json_array();
    char token[sizeof ((cairn_run_page *)0)->next_page_token] = "";
    if (f->page_token && snprintf(token, sizeof token, "%s", f->page_token) >= (int)sizeof token)
        return usage_error("--page-token: at most %zu characters", sizeof token - 1);
    do {
        cairn_run_page page;
        cairn_error err;
        cairn_status st = cairn_list_runs(cli->client, f->page_size, token, &page, &err);
        if (st) {
            json_decref(runs);
            return fail(st, &err);
        }
        for (size_t i = 0; i < page.runs_count; i++)
            json_array_append_new(runs, json_run(&page.runs[i]));
        memcpy(token, page.next_page_token, sizeof token);
        cairn_run_page_free(&page);
    } while (f->all && *token);
    /* Only json has room for the token beside the runs: other formats
     * name it on stderr, where it does not break a row. */
    if (*token && cli->output != OUT_JSON)
        fprintf(stderr, "cairnctl: more runs: --page-token %s\n", token);
    return output_print(cli->output,
                        json_pack("{s:o, s:s}", "runs", runs, "next_page_token", token), runs);
}

/* The payload of `append RUN TYPE -`: stdin, at most PAYLOAD_MAX bytes. */
static int read_stdin_payload(char **out, size_t *len)
{
    char *buf = malloc(PAYLOAD_MAX + 1);
    size_t n = buf ? fread(buf, 1, PAYLOAD_MAX + 1, stdin) : 0;
    if (!buf || ferror(stdin)) {
        free(buf);
        fputs("cairnctl: PAYLOAD -: cannot read stdin\n", stderr);
        return EXIT_LOCAL_IO;
    }
    if (n > PAYLOAD_MAX) {
        free(buf);
        return usage_error("PAYLOAD -: stdin holds more than %d bytes, the limit of an event",
                           PAYLOAD_MAX);
    }
    *out = buf;
    *len = n;
    return 0;
}

int cmd_append(const cli_ctx *cli, char **args, int nargs)
{
    const flags *f = cli->flags;
    cairn_event ev = {.type = args[1], .worker_id = f->worker};
    char *from_stdin = NULL;
    if (nargs == 3 && strcmp(args[2], "-") == 0) {
        size_t len = 0;
        int rc = read_stdin_payload(&from_stdin, &len);
        if (rc)
            return rc;
        ev.payload = from_stdin;
        ev.payload_len = len;
    } else if (nargs == 3) {
        ev.payload = args[2];
        ev.payload_len = strlen(args[2]);
    }
    cairn_append_request req = {.idempotency_key = f->key, .run_id = args[0], .events = &ev,
                                .events_count = 1, .expected_next_seq = f->expect,
                                .fencing_token = f->fencing_token};
    cairn_append_result res;
    cairn_error err;
    cairn_status st = cairn_append_events(cli->client, &req, &res, &err);
    free(from_stdin);
    if (st)
        return fail(st, &err);
    return output_print(cli->output,
                        json_pack("{s:I, s:I, s:I, s:b}", "first_seq", (json_int_t)res.first_seq,
                                  "last_seq", (json_int_t)res.last_seq, "events_since_checkpoint",
                                  (json_int_t)res.events_since_checkpoint, "replayed",
                                  res.replayed),
                        NULL);
}

int cmd_read(const cli_ctx *cli, char **args, int nargs)
{
    (void)nargs;
    const flags *f = cli->flags;
    uint64_t from = f->has_from ? f->from : 1;
    json_t *events = json_array();
    for (;;) {
        cairn_event_page page;
        cairn_error err;
        cairn_status st = cairn_read_events(cli->client, args[0], from, f->max, &page, &err);
        if (st) {
            json_decref(events);
            return fail(st, &err);
        }
        for (size_t i = 0; i < page.events_count; i++)
            json_array_append_new(events, json_event(&page.events[i]));
        size_t n = page.events_count;
        from = page.next_seq;
        cairn_event_page_free(&page);
        if (!f->all || n == 0)
            break;
    }
    return output_print(cli->output,
                        json_pack("{s:o, s:I}", "events", events, "next_seq", (json_int_t)from),
                        events);
}

int cmd_complete(const cli_ctx *cli, char **args, int nargs)
{
    (void)nargs;
    cairn_complete_request req = {.idempotency_key = cli->flags->key, .run_id = args[0],
                                  .worker_id = args[1],
                                  .fencing_token = cli->flags->fencing_token};
    cairn_complete_result res;
    cairn_error err;
    cairn_status st = cairn_complete_worker(cli->client, &req, &res, &err);
    if (st)
        return fail(st, &err);
    return output_print(cli->output,
                        json_pack("{s:I, s:s, s:b}", "seq", (json_int_t)res.seq, "run_state",
                                  res.run_state, "replayed", res.replayed),
                        NULL);
}

/* ---- streams: watch and events tail ---- */

typedef struct stream {
    const cli_ctx *cli;
    bool printed;                 /* an item went out: table's header is written */
    int rc;
} stream;

static int stream_event(void *user, const cairn_event *e)
{
    stream *s = user;
    s->rc = output_stream_item(s->cli->output, json_event(e), !s->printed);
    s->printed = true;
    return s->rc; /* stdout gone: stop */
}

/* Streams the events from `from` up to the end of the log. */
static cairn_status read_to_end(const cli_ctx *cli, const char *run_id, uint64_t from, stream *s,
                                cairn_error *err)
{
    for (;;) {
        cairn_event_page page;
        cairn_status st = cairn_read_events(cli->client, run_id, from, 0, &page, err);
        if (st)
            return st;
        for (size_t i = 0; i < page.events_count && !s->rc; i++)
            stream_event(s, &page.events[i]);
        bool last = page.events_count == 0 || s->rc;
        from = page.next_seq;
        cairn_event_page_free(&page);
        if (last)
            return CAIRN_OK;
    }
}

/* Prints the events from `from` on: up to the end, or following new ones
 * (libcairn's watch reconnects after a restart without a gap or a
 * duplicate). */
static int print_events(const cli_ctx *cli, const char *run_id, uint64_t from, bool follow)
{
    stream s = {.cli = cli};
    cairn_error err;
    cairn_watch_request req = {.run_id = run_id, .from_seq = from, .on_event = stream_event,
                               .user = &s};
    cairn_status st = follow ? cairn_watch(cli->client, &req, &err)
                             : read_to_end(cli, run_id, from, &s, &err);
    return st ? fail(st, &err) : s.rc;
}

int cmd_watch(const cli_ctx *cli, char **args, int nargs)
{
    (void)nargs;
    return print_events(cli, args[0], cli->flags->has_from ? cli->flags->from : 1, true);
}

int cmd_events_tail(const cli_ctx *cli, char **args, int nargs)
{
    (void)nargs;
    const flags *f = cli->flags;
    if (f->has_from && f->has_lines)
        return usage_error("events tail: --from and --lines exclude each other");
    uint64_t from = f->from;
    if (!f->has_from) { /* the last --lines events: where the log ends now */
        cairn_run run;
        cairn_error err;
        cairn_status st = cairn_get_run(cli->client, args[0], &run, &err);
        if (st)
            return fail(st, &err);
        from = run.next_seq > f->lines ? run.next_seq - f->lines : 1;
        cairn_run_free(&run);
    }
    return print_events(cli, args[0], from, f->follow);
}

/* ---- leases ---- */

static json_t *json_lease(const cairn_lease *l)
{
    return json_pack("{s:s, s:s, s:s, s:s, s:I, s:s, s:I, s:b}", "lease_id", l->lease_id,
                     "run_id", l->run_id, "worker_id", l->worker_id, "holder", l->holder,
                     "fencing_token", (json_int_t)l->fencing_token, "expires_at", l->expires_at,
                     "ttl_ms", (json_int_t)l->ttl_ms, "replayed", l->replayed);
}

/* The lease RUN WORKER LEASE_ID names, as renew and release need it. */
static int lease_of(char **args, cairn_lease *out)
{
    static const char *const names[] = {"RUN", "WORKER", "LEASE_ID"};
    char *fields[] = {out->run_id, out->worker_id, out->lease_id};
    *out = (cairn_lease){0};
    for (int i = 0; i < 3; i++)
        if (snprintf(fields[i], CAIRN_ID_MAX + 1, "%s", args[i]) > CAIRN_ID_MAX)
            return usage_error("%s: at most %d characters", names[i], CAIRN_ID_MAX);
    return 0;
}

int cmd_acquire(const cli_ctx *cli, char **args, int nargs)
{
    (void)nargs;
    const flags *f = cli->flags;
    char host[CAIRN_ID_MAX + 1] = "";
    if (!f->holder && gethostname(host, sizeof host - 1) != 0)
        return usage_error("acquire: no host name to hold the lease as; pass --holder");
    cairn_acquire_request req = {.idempotency_key = f->key, .run_id = args[0],
                                 .worker_id = args[1], .holder = f->holder ? f->holder : host,
                                 .ttl_ms = f->ttl_ms};
    cairn_lease lease;
    cairn_error err;
    cairn_status st = cairn_acquire_worker(cli->client, &req, &lease, &err);
    return st ? fail(st, &err) : output_print(cli->output, json_lease(&lease), NULL);
}

int cmd_renew(const cli_ctx *cli, char **args, int nargs)
{
    (void)nargs;
    cairn_lease lease;
    int rc = lease_of(args, &lease);
    if (rc)
        return rc;
    cairn_renew_request req = {.idempotency_key = cli->flags->key, .lease = &lease,
                               .ttl_ms = cli->flags->ttl_ms};
    cairn_error err;
    cairn_status st = cairn_renew_lease(cli->client, &req, &lease, &err);
    return st ? fail(st, &err) : output_print(cli->output, json_lease(&lease), NULL);
}

int cmd_release(const cli_ctx *cli, char **args, int nargs)
{
    (void)nargs;
    cairn_lease lease;
    int rc = lease_of(args, &lease);
    if (rc)
        return rc;
    cairn_release_request req = {.idempotency_key = cli->flags->key, .lease = &lease};
    cairn_error err;
    cairn_status st = cairn_release_worker(cli->client, &req, &err);
    if (st)
        return fail(st, &err);
    return output_print(cli->output,
                        json_pack("{s:s, s:s, s:s, s:b}", "run_id", lease.run_id, "worker_id",
                                  lease.worker_id, "lease_id", lease.lease_id, "released", 1),
                        NULL);
}
