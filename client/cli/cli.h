/* cairnctl's modules share these: the command table, the flags every
 * command may take, and the verbs of output, progress and exit codes.
 * cairnctl is built on libcairn's public API only. */
#ifndef CAIRNCTL_CLI_H
#define CAIRNCTL_CLI_H

#include <cairn/cairn.h>

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

/* ---- exit codes (exitcodes.c) ---- */

#define EXIT_REFUSED 1      /* the server refused the request */
#define EXIT_USAGE 2        /* bad flags or arguments */
#define EXIT_NOT_FOUND 3
#define EXIT_CONFLICT 4     /* precondition failed or conflict */
#define EXIT_UNAVAILABLE 5  /* no answer, after the retries */
#define EXIT_LOCAL_IO 6     /* a local file cannot be read or written */

/* Returns the exit code for a libcairn status (the one table). */
int exit_code_of(cairn_status status);
/* Prints "cairnctl: <status text>: <detail>" to stderr and returns the
 * status's exit code. */
int fail(cairn_status status, const cairn_error *err);
/* Prints "cairnctl: <message>" to stderr and returns EXIT_USAGE. */
int usage_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Prints the exit code table, as --help and docs/cli.md show it. */
void print_exit_codes(FILE *out);

/* ---- output (output.c) ---- */

typedef enum output_format { OUT_TEXT, OUT_JSON, OUT_JSONL, OUT_TABLE } output_format;

/* Returns 0 and *out for "text", "json", "jsonl" or "table"; -1 otherwise. */
int output_format_parse(const char *name, output_format *out);

/* Prints a result on stdout and takes the reference to doc. items, when
 * not NULL, is the array inside doc that lists are made of: jsonl writes
 * one line per item, table and text one row each. Returns 0, or
 * EXIT_LOCAL_IO when stdout cannot be written. */
int output_print(output_format format, json_t *doc, json_t *items);

/* The same for one item of a stream (watch, events tail): json and jsonl
 * write one line; table writes the header before the first item. */
int output_stream_item(output_format format, json_t *item, bool first);

/* JSON strings: base64 of bytes (payloads), a list of strings. New
 * references (NULL only when out of memory). */
json_t *json_base64(const void *data, size_t len);
json_t *json_strings(const char *const *values, size_t count);

/* ---- progress (progress.c) ---- */

/* Transfer progress on stderr: a bar redrawn in place (bytes, rate, ETA)
 * when stderr is a terminal, else a line at the start and one at the end;
 * nothing when disabled. */
typedef struct progress {
    const char *what;             /* "upload", "download" */
    bool enabled, tty, started;
    int64_t start_ms, drawn_ms;
    uint64_t done, total;
} progress;

void progress_init(progress *p, const char *what, bool enabled);
/* A cairn_progress_fn: user is the progress. */
void progress_update(void *user, uint64_t done, uint64_t total);
/* Ends the bar (its last state and a newline) or prints the end line. */
void progress_finish(progress *p, bool ok);

/* ---- flags (flags.c) ---- */

typedef enum flag_id {
    /* global, with env twins */
    FLAG_TARGET = 256, FLAG_TIMEOUT, FLAG_ATTEMPTS, FLAG_OUTPUT, FLAG_CA_FILE, FLAG_CERT_FILE,
    FLAG_KEY_FILE, FLAG_SERVER_NAME, FLAG_TOKEN_FILE, FLAG_HELP, FLAG_VERSION,
    /* per command */
    FLAG_KEY, FLAG_LABEL, FLAG_WORKER, FLAG_EXPECT, FLAG_FENCING_TOKEN, FLAG_FROM, FLAG_MAX,
    FLAG_ALL, FLAG_PAGE_SIZE, FLAG_PAGE_TOKEN, FLAG_STATE, FLAG_EVENTS, FLAG_COMPLETED, FLAG_OUT,
    FLAG_FOLLOW, FLAG_LINES, FLAG_HOLDER, FLAG_TTL, FLAG_NO_PROGRESS,
    FLAG_END
} flag_id;

#define FLAG_BIT(id) (UINT64_C(1) << ((id) - FLAG_TARGET))
#define GLOBAL_FLAGS                                                                      \
    (FLAG_BIT(FLAG_TARGET) | FLAG_BIT(FLAG_TIMEOUT) | FLAG_BIT(FLAG_ATTEMPTS) |           \
     FLAG_BIT(FLAG_OUTPUT) | FLAG_BIT(FLAG_CA_FILE) | FLAG_BIT(FLAG_CERT_FILE) |          \
     FLAG_BIT(FLAG_KEY_FILE) | FLAG_BIT(FLAG_SERVER_NAME) | FLAG_BIT(FLAG_TOKEN_FILE) |   \
     FLAG_BIT(FLAG_HELP) | FLAG_BIT(FLAG_VERSION))

typedef struct flag_def {
    flag_id id;
    const char *name;             /* long form, without "--" */
    char short_name;              /* 0: none */
    const char *metavar;          /* NULL: takes no value */
    const char *env;              /* the CAIRN_* twin, or NULL */
    const char *help;
} flag_def;

extern const flag_def flag_defs[];
const flag_def *flag_def_of(flag_id id);

/* The values of every flag, global and per command, once parsed. */
typedef struct flags {
    const char *target;
    uint32_t timeout_ms;          /* 0: the command kind's default */
    int attempts;                 /* 0: the command kind's default */
    output_format output;
    cairn_tls_options tls;
    bool tls_set;
    char *token;                  /* from --token-file; malloc'd */
    bool help, version;

    const char *key, *worker, *page_token, *state, *out, *holder;
    cairn_label *labels;          /* sized for argc */
    size_t labels_count;
    const char **completed;       /* sized for argc */
    size_t completed_count;
    uint64_t expect, fencing_token, from, events, lines;
    bool has_from, has_lines, all, follow, no_progress;
    uint32_t max, page_size, ttl_ms;
} flags;

/* Fills defaults and sizes the repeatable flags for argc values; then
 * applies the CAIRN_* env twins. Returns 0 or an exit code (after a
 * message naming the variable). */
int flags_init(flags *f, int argc);
/* Parses one flag's value; source names it in messages ("--timeout" or
 * "CAIRN_TIMEOUT"). Returns 0 or an exit code after a message naming the
 * source and the limit. */
int flag_apply(flags *f, flag_id id, const char *value, const char *source);
/* Returns 0 and *out for a decimal in lo..hi; -1 otherwise. */
int parse_uint(const char *s, uint64_t lo, uint64_t hi, uint64_t *out);
/* Releases what flags_init and flag_apply allocated. */
void flags_free(flags *f);

/* ---- commands (commands_*.c) ---- */

/* How a command's calls are retried unless --attempts/--timeout say
 * otherwise (a local command makes none): a read, or health, answers or fails within seconds; a
 * mutation or a transfer takes libcairn's retry policy; a follow
 * reconnects with that policy and never ends by a deadline. */
typedef enum call_kind { CALL_LOCAL, CALL_READ, CALL_WRITE, CALL_FOLLOW } call_kind;

typedef struct cli_ctx {
    cairn_client *client;
    const flags *flags;
    output_format output;
} cli_ctx;

typedef struct command {
    const char *name;             /* "get-run"; a group adds a word: "events tail" */
    const char *args;             /* positional arguments, for usage */
    int min_args, max_args;       /* max -1: any number */
    uint64_t flags;               /* FLAG_BITs it takes besides the global ones */
    call_kind kind;
    const char *summary;
    int (*run)(const cli_ctx *cli, char **args, int nargs);
} command;

extern const command commands[];
extern const size_t commands_count;

/* Handlers, by area. Each returns an exit code. */
int cmd_health(const cli_ctx *cli, char **args, int nargs);
int cmd_create_run(const cli_ctx *cli, char **args, int nargs);
int cmd_get_run(const cli_ctx *cli, char **args, int nargs);
int cmd_delete_run(const cli_ctx *cli, char **args, int nargs);
int cmd_list_runs(const cli_ctx *cli, char **args, int nargs);
int cmd_append(const cli_ctx *cli, char **args, int nargs);
int cmd_read(const cli_ctx *cli, char **args, int nargs);
int cmd_complete(const cli_ctx *cli, char **args, int nargs);
int cmd_watch(const cli_ctx *cli, char **args, int nargs);
int cmd_events_tail(const cli_ctx *cli, char **args, int nargs);
int cmd_acquire(const cli_ctx *cli, char **args, int nargs);
int cmd_renew(const cli_ctx *cli, char **args, int nargs);
int cmd_release(const cli_ctx *cli, char **args, int nargs);
int cmd_checkpoint(const cli_ctx *cli, char **args, int nargs);
int cmd_checkpoints(const cli_ctx *cli, char **args, int nargs);
int cmd_load(const cli_ctx *cli, char **args, int nargs);
int cmd_cleanup(const cli_ctx *cli, char **args, int nargs);
int cmd_resume(const cli_ctx *cli, char **args, int nargs);

/* JSON of libcairn's results, shared by the handlers. New references. */
json_t *json_run(const cairn_run *run);
json_t *json_event(const cairn_event *event);
json_t *json_checkpoint(const cairn_checkpoint *checkpoint);

/* ---- help and completion (help.c) ---- */

void print_usage(FILE *out);
void print_command_help(FILE *out, const command *cmd);
/* completion SHELL: prints the bash completion script, generated from
 * the tables (cli->client is NULL: a local command). */
int cmd_completion(const cli_ctx *cli, char **args, int nargs);

#endif
