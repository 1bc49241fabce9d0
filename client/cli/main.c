/* cairnctl: the operator CLI, built on libcairn's public API only.
 *
 * main finds the command, parses the global flags and the command's in
 * one getopt_long pass (so both may stand anywhere on the line), picks
 * the retry policy of the command's kind, creates the client and runs
 * the command's row. */
#include "cli.h"
#include "cairn_revision.h" /* generated: CAIRN_GIT_REVISION */

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define READ_TIMEOUT_MS 3000      /* a dead server is reported within about this */

/* The flag a word names, when it takes its value as the next word
 * ("--target X", "-o json"), so that finding the command can skip it. */
static bool takes_next_word(const char *word)
{
    for (const flag_def *d = flag_defs; d->name; d++) {
        if (!d->metavar)
            continue;
        if ((word[1] == '-' && strcmp(word + 2, d->name) == 0) ||
            (d->short_name && word[1] == d->short_name && word[2] == '\0'))
            return true;
    }
    return false;
}

/* The command the line names, its words skipped past the flags; NULL
 * with *name the first word when it names none (NULL: no word), and
 * *group true when that word is a group ("events") without a known
 * subcommand. */
static const command *find_command(int argc, char **argv, const char **name, bool *group)
{
    const char *words[2] = {NULL, NULL};
    int n = 0;
    bool positional = false; /* after "--" */
    for (int i = 1; i < argc && n < 2; i++) {
        if (!positional && strcmp(argv[i], "--") == 0)
            positional = true;
        else if (!positional && argv[i][0] == '-' && argv[i][1])
            i += takes_next_word(argv[i]);
        else
            words[n++] = argv[i];
    }
    *name = words[0];
    for (size_t k = 0; words[0] && k < commands_count; k++) {
        const char *row = commands[k].name;
        size_t len = strlen(words[0]);
        if (strncmp(row, words[0], len) != 0)
            continue;
        if (row[len] == '\0')
            return &commands[k];
        if (row[len] != ' ')
            continue; /* a longer name: "get" is not "get-run" */
        if (words[1] && strcmp(row + len + 1, words[1]) == 0)
            return &commands[k];
        *group = true;
    }
    return NULL;
}

/* getopt_long's table for the global flags and the command's (bits). */
static void build_options(uint64_t bits, struct option *longs, char *shorts)
{
    size_t n = 0, s = 0;
    shorts[s++] = ':'; /* report a missing value as ':' */
    for (const flag_def *d = flag_defs; d->name; d++) {
        if (!(bits & FLAG_BIT(d->id)))
            continue;
        longs[n++] = (struct option){d->name, d->metavar ? required_argument : no_argument, NULL,
                                     (int)d->id};
        if (d->short_name) {
            shorts[s++] = d->short_name;
            if (d->metavar)
                shorts[s++] = ':';
        }
    }
    longs[n] = (struct option){0};
    shorts[s] = '\0';
}

static flag_id flag_of_short(int c)
{
    for (const flag_def *d = flag_defs; d->name; d++)
        if (d->short_name == c)
            return d->id;
    return FLAG_END;
}

/* Parses every flag of the line into f; leaves the positional words at
 * argv[optind..argc). */
static int parse_flags(int argc, char **argv, uint64_t bits, flags *f, const char *cmd_name)
{
    struct option longs[FLAG_END - FLAG_TARGET + 1];
    char shorts[2 * (FLAG_END - FLAG_TARGET) + 2];
    build_options(bits, longs, shorts);
    opterr = 0;
    optind = 1;
    int c, rc = 0;
    while (!rc && (optopt = 0, c = getopt_long(argc, argv, shorts, longs, NULL)) != -1) {
        if (c == '?' || c == ':') {
            const char *word = argv[optind - 1];
            char shown[64];
            if (optopt > 0 && optopt < FLAG_TARGET)
                snprintf(shown, sizeof shown, "-%c", optopt);
            else
                snprintf(shown, sizeof shown, "%.*s", (int)strcspn(word, "="), word);
            if (c == ':')
                return usage_error("%s needs a value", shown);
            return usage_error("%s is not a flag of %s (see cairnctl %s%s--help)", shown,
                               cmd_name ? cmd_name : "cairnctl", cmd_name ? cmd_name : "",
                               cmd_name ? " " : "");
        }
        flag_id id = c >= FLAG_TARGET ? (flag_id)c : flag_of_short(c);
        char source[64];
        snprintf(source, sizeof source, "--%s", flag_def_of(id)->name);
        rc = flag_apply(f, id, optarg, source);
    }
    return rc;
}

/* The retry policy of a command kind, then --attempts and --timeout. */
static void set_policy(cairn_retry_policy *p, call_kind kind, const flags *f)
{
    if (kind == CALL_READ) {
        p->max_attempts = 1;
        p->call_deadline_ms = p->attempt_deadline_ms = READ_TIMEOUT_MS;
    }
    if (f->attempts)
        p->max_attempts = f->attempts;
    if (f->timeout_ms) {
        p->call_deadline_ms = f->timeout_ms;
        if (kind == CALL_READ || p->attempt_deadline_ms > f->timeout_ms)
            p->attempt_deadline_ms = f->timeout_ms;
    }
}

static int run_command(const command *cmd, char **args, int nargs, const flags *f)
{
    if (nargs < cmd->min_args || (cmd->max_args >= 0 && nargs > cmd->max_args))
        return usage_error("%s: expected %s, got %d argument%s (see cairnctl %s --help)",
                           cmd->name, cmd->args, nargs, nargs == 1 ? "" : "s", cmd->name);
    if (f->tls.cert_file && !f->tls.key_file)
        return usage_error("--cert-file needs --key-file (mutual TLS)");
    if (f->tls.key_file && !f->tls.cert_file)
        return usage_error("--key-file needs --cert-file (mutual TLS)");
    cli_ctx c = {.flags = f, .output = f->output};
    if (cmd->kind == CALL_LOCAL)
        return cmd->run(&c, args, nargs);
    cairn_client_options opts;
    cairn_client_options_init(&opts);
    if (f->target)
        opts.target = f->target;
    opts.tls = f->tls_set ? &f->tls : NULL;
    opts.token = f->token;
    bool follows = (cmd->flags & FLAG_BIT(FLAG_FOLLOW)) && f->follow; /* events tail -f */
    set_policy(&opts.retry, follows ? CALL_FOLLOW : cmd->kind, f);
    cairn_error err;
    cairn_status st = cairn_client_create(&opts, &c.client, &err);
    if (st == CAIRN_INVALID_ARGUMENT) /* the flags make no usable client */
        return usage_error("%s", err.message);
    if (st)
        return fail(st, &err);
    int rc = cmd->run(&c, args, nargs);
    cairn_client_destroy(c.client);
    return rc;
}

static int run(int argc, char **argv, flags *f)
{
    const char *name;
    bool group = false;
    const command *cmd = find_command(argc, argv, &name, &group);
    if (group && !cmd)
        return usage_error("%s: expected a subcommand (cairnctl --help lists them)", name);
    if (name && !cmd)
        return usage_error("unknown command \"%s\" (cairnctl --help lists them)", name);
    int rc = parse_flags(argc, argv, GLOBAL_FLAGS | (cmd ? cmd->flags : 0), f,
                         cmd ? cmd->name : NULL);
    if (rc)
        return rc;
    if (f->version) {
        /* The library's version (it may be a newer libcairn.so.1), and
         * the commit cairnctl itself was built from. */
        printf("cairnctl %s (git %s)\n", cairn_version(), CAIRN_GIT_REVISION);
        return 0;
    }
    if (f->help && cmd) {
        print_command_help(stdout, cmd);
        return 0;
    }
    if (f->help || !cmd) {
        print_usage(f->help ? stdout : stderr);
        return f->help ? 0 : EXIT_USAGE;
    }
    /* The command's own words come first among the positional ones. */
    int skip = strchr(cmd->name, ' ') ? 2 : 1;
    return run_command(cmd, argv + optind + skip, argc - optind - skip, f);
}

int main(int argc, char **argv)
{
    flags f;
    int rc = flags_init(&f, argc);
    if (!rc)
        rc = run(argc, argv, &f);
    flags_free(&f);
    return rc;
}
