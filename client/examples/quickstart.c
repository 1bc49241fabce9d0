/* The README's libcairn example: create a run, append one event with a
 * derived idempotency key. Usage: quickstart [HOST:PORT] */
#include <cairn/cairn.h>
#include <stdio.h>
#include <string.h>

int main(int argc, char **argv)
{
    cairn_client_options opts;
    cairn_client_options_init(&opts);          /* 127.0.0.1:7070, default retry policy */
    if (argc > 1)
        opts.target = argv[1];
    cairn_client *c;
    cairn_error err;
    if (cairn_client_create(&opts, &c, &err) != CAIRN_OK)
        return 1;

    const char *workers[] = {"extract", "transform", "load"};
    cairn_create_run_request run_req = {.run_id = "nightly", .workers = workers,
                                        .workers_count = 3};
    cairn_run run;
    if (cairn_create_run(c, &run_req, &run, &err) == CAIRN_OK)
        cairn_run_free(&run);

    /* A key derived from what the call means: if this process crashes and
     * a restarted one sends the same append, it is applied once. */
    char key[65];
    const char *parts[] = {"nightly", "extract", "started"};
    cairn_idempotency_key(key, parts, 3);

    cairn_event ev = {.type = "started", .worker_id = "extract",
                      .payload = "{}", .payload_len = 2};
    cairn_append_request req = {.idempotency_key = key, .run_id = "nightly",
                                .events = &ev, .events_count = 1};
    cairn_append_result res;
    cairn_status st = cairn_append_events(c, &req, &res, &err);
    if (st != CAIRN_OK)
        fprintf(stderr, "append: %s: %s (after %d attempts)\n",
                cairn_strerror(st), err.message, err.attempts);
    else
        printf("seq %llu%s\n", (unsigned long long)res.first_seq,
               res.replayed ? " (replayed)" : "");
    cairn_client_destroy(c);
    return st == CAIRN_OK ? 0 : 1;
}
