/* Commands on checkpoints and resume. Uploads and downloads report their
 * progress on stderr (progress.c). */
#include "cli.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define COPY_CHUNK 65536

json_t *json_checkpoint(const cairn_checkpoint *cp)
{
    return json_pack("{s:s, s:s, s:s, s:s, s:o, s:I, s:I, s:s, s:b}", "checkpoint_id",
                     cp->checkpoint_id, "run_id", cp->run_id, "created_at", cp->created_at,
                     "run_state", cp->run_state ? cp->run_state : "", "completed_workers",
                     json_strings(cp->completed_workers, cp->completed_workers_count),
                     "events_count", (json_int_t)cp->events_count, "snapshot_size",
                     (json_int_t)cp->snapshot_size, "snapshot_sha256", cp->snapshot_sha256,
                     "replayed", cp->replayed);
}

int cmd_checkpoint(const cli_ctx *cli, char **args, int nargs)
{
    (void)nargs;
    const flags *f = cli->flags;
    progress bar;
    progress_init(&bar, "upload", !f->no_progress);
    cairn_checkpoint_request req = {.idempotency_key = f->key, .run_id = args[0],
                                    .run_state = f->state, .completed_workers = f->completed,
                                    .completed_workers_count = f->completed_count,
                                    .events_count = f->events, .progress = progress_update,
                                    .progress_user = &bar};
    cairn_checkpoint cp;
    cairn_error err;
    cairn_status st = cairn_create_checkpoint_path(cli->client, &req, args[1], &cp, &err);
    progress_finish(&bar, st == CAIRN_OK);
    if (st)
        return fail(st, &err);
    json_t *doc = json_checkpoint(&cp);
    cairn_checkpoint_free(&cp);
    return output_print(cli->output, doc, NULL);
}

int cmd_checkpoints(const cli_ctx *cli, char **args, int nargs)
{
    (void)nargs;
    cairn_checkpoint_list list;
    cairn_error err;
    cairn_status st = cairn_list_checkpoints(cli->client, args[0], &list, &err);
    if (st)
        return fail(st, &err);
    json_t *items = json_array();
    for (size_t i = 0; i < list.count; i++)
        json_array_append_new(items, json_checkpoint(&list.checkpoints[i]));
    cairn_checkpoint_list_free(&list);
    return output_print(cli->output, json_pack("{s:o}", "checkpoints", items), items);
}

/* Copies fd from its start to stdout, COPY_CHUNK bytes at a time. */
static int copy_to_stdout(int fd)
{
    char buf[COPY_CHUNK];
    ssize_t n;
    if (lseek(fd, 0, SEEK_SET) < 0)
        return -1;
    while ((n = read(fd, buf, sizeof buf)) > 0) {
        for (ssize_t off = 0; off < n;) {
            ssize_t w = write(STDOUT_FILENO, buf + off, (size_t)(n - off));
            if (w < 0 && errno != EINTR)
                return -1;
            off += w > 0 ? w : 0;
        }
    }
    return n < 0 ? -1 : 0;
}

/* `load --out -`: libcairn writes only into a regular file (it truncates
 * it on a retry), so the snapshot lands in an unlinked temporary file,
 * checked against its SHA-256, and is then copied to stdout: memory stays
 * bounded, and a pipe never sees bytes that fail the checksum. */
static int load_to_stdout(const cli_ctx *cli, const cairn_load_request *req)
{
    const char *dir = getenv("TMPDIR") && *getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/cairnctl-load-XXXXXX", dir);
    int fd = mkstemp(path);
    if (fd < 0) {
        fprintf(stderr, "cairnctl: --out -: cannot create a temporary file in %s: %s\n", dir,
                strerror(errno));
        return EXIT_LOCAL_IO;
    }
    unlink(path);
    cairn_checkpoint meta;
    cairn_error err;
    cairn_status st = cairn_load_checkpoint_fd(cli->client, req, fd, &meta, &err);
    progress_finish(req->progress_user, st == CAIRN_OK);
    cairn_checkpoint_free(&meta);
    int rc = st ? fail(st, &err) : 0;
    if (!rc && copy_to_stdout(fd) < 0) {
        fprintf(stderr, "cairnctl: --out -: cannot write the snapshot to stdout: %s\n",
                strerror(errno));
        rc = EXIT_LOCAL_IO;
    }
    close(fd);
    return rc;
}

int cmd_load(const cli_ctx *cli, char **args, int nargs)
{
    const char *out = cli->flags->out;
    progress bar;
    progress_init(&bar, "download", !cli->flags->no_progress);
    cairn_load_request req = {.run_id = args[0], .checkpoint_id = nargs == 2 ? args[1] : NULL,
                              .progress = progress_update, .progress_user = &bar};
    if (!out || strcmp(out, "-") == 0)
        return load_to_stdout(cli, &req);
    cairn_checkpoint meta;
    cairn_error err;
    cairn_status st = cairn_load_checkpoint_path(cli->client, &req, out, &meta, &err);
    progress_finish(&bar, st == CAIRN_OK);
    if (st)
        return fail(st, &err);
    json_t *doc = json_checkpoint(&meta);
    cairn_checkpoint_free(&meta);
    return output_print(cli->output, doc, NULL);
}

int cmd_cleanup(const cli_ctx *cli, char **args, int nargs)
{
    (void)nargs;
    uint64_t keep;
    if (parse_uint(args[1], 1, UINT32_MAX, &keep))
        return usage_error("KEEP_LAST_N: expected 1..%u, got \"%s\"", UINT32_MAX, args[1]);
    cairn_cleanup_request req = {.idempotency_key = cli->flags->key, .run_id = args[0],
                                 .keep_last_n = (uint32_t)keep};
    cairn_cleanup_result res;
    cairn_error err;
    cairn_status st = cairn_cleanup_checkpoints(cli->client, &req, &res, &err);
    if (st)
        return fail(st, &err);
    json_t *doc = json_pack("{s:I, s:o, s:b}", "deleted", (json_int_t)res.deleted, "deleted_ids",
                            json_strings(res.deleted_ids, res.deleted_ids_count), "replayed",
                            res.replayed);
    cairn_cleanup_result_free(&res);
    return output_print(cli->output, doc, NULL);
}

int cmd_resume(const cli_ctx *cli, char **args, int nargs)
{
    cairn_resume_plan plan;
    cairn_error err;
    cairn_status st = cairn_resume_run(cli->client, args[0], (const char *const *)args + 1,
                                       (size_t)(nargs - 1), &plan, &err);
    if (st)
        return fail(st, &err);
    json_t *doc = json_pack("{s:s, s:s, s:s, s:I, s:o, s:b}", "run_id", plan.run_id,
                            "checkpoint_id", plan.checkpoint_id, "resumed_from_state",
                            plan.resumed_from_state ? plan.resumed_from_state : "",
                            "resume_from_seq", (json_int_t)plan.resume_from_seq,
                            "workers_to_rerun",
                            json_strings(plan.workers_to_rerun, plan.workers_to_rerun_count),
                            "success", plan.success);
    cairn_resume_plan_free(&plan);
    return output_print(cli->output, doc, NULL);
}
