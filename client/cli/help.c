/* Help and bash completion, both generated from the command and flag
 * tables, so that neither can miss a command or a flag. */
#include "cli.h"

#include <stdio.h>
#include <string.h>

#define FLAG_COLUMN 30

static void print_flag(FILE *out, const flag_def *d)
{
    char left[64], shorthand[8] = "    ";
    if (d->short_name)
        snprintf(shorthand, sizeof shorthand, "-%c, ", d->short_name);
    int n = snprintf(left, sizeof left, "  %s--%s%s%s", shorthand, d->name, d->metavar ? " " : "",
                     d->metavar ? d->metavar : "");
    fprintf(out, "%s%*s %s", left, n < FLAG_COLUMN ? FLAG_COLUMN - n : 0, "", d->help);
    if (d->env)
        fprintf(out, " [$%s]", d->env);
    fputc('\n', out);
}

static void print_flags(FILE *out, uint64_t bits)
{
    for (const flag_def *d = flag_defs; d->name; d++)
        if (bits & FLAG_BIT(d->id))
            print_flag(out, d);
}

void print_usage(FILE *out)
{
    fputs("usage: cairnctl [FLAGS] COMMAND [ARGS] [FLAGS]\n\nCommands:\n", out);
    for (size_t i = 0; i < commands_count; i++) {
        char left[64];
        int n = snprintf(left, sizeof left, "  %s %s", commands[i].name, commands[i].args);
        fprintf(out, "%s%*s %s\n", left, n < 34 ? 34 - n : 0, "", commands[i].summary);
    }
    fputs("\nGlobal flags, anywhere on the line, as --flag VALUE or --flag=VALUE; a flag\n"
          "overrides its $CAIRN_* twin:\n", out);
    print_flags(out, GLOBAL_FLAGS);
    fputs("\nReads and health make one attempt of at most 3s, so a dead server is\n"
          "reported in about 3s; writes, transfers and follows retry with libcairn's\n"
          "policy (10 attempts within 60s). --timeout and --attempts override both.\n"
          "\nExit codes:\n", out);
    print_exit_codes(out);
    fputs("\ncairnctl COMMAND --help shows a command's flags; cairnctl completion bash\n"
          "prints a completion script (docs/cli.md).\n", out);
}

void print_command_help(FILE *out, const command *cmd)
{
    fprintf(out, "usage: cairnctl %s %s%s\n\n%s\n", cmd->name, cmd->args,
            cmd->flags ? " [FLAGS]" : "", cmd->summary);
    if (cmd->flags) {
        fputs("\nFlags:\n", out);
        print_flags(out, cmd->flags);
    }
    fputs("\nGlobal flags (cairnctl --help): --target, --timeout, --attempts, -o/--output,\n"
          "--ca-file, --cert-file, --key-file, --server-name, --token-file.\n", out);
}

/* The words of the flags in bits: "--key --label -o ...". */
static void put_flag_words(FILE *out, uint64_t bits, bool with_value_only)
{
    for (const flag_def *d = flag_defs; d->name; d++) {
        if (!(bits & FLAG_BIT(d->id)) || (with_value_only && !d->metavar))
            continue;
        fprintf(out, " --%s", d->name);
        if (d->short_name)
            fprintf(out, " -%c", d->short_name);
    }
}

/* "events tail" is the group "events" and its subcommand "tail". */
static size_t group_len(const char *name)
{
    const char *space = strchr(name, ' ');
    return space ? (size_t)(space - name) : 0;
}

/* Whether row i starts a group or stands alone (a group's rows are
 * adjacent in the table). */
static bool first_of_group(size_t i)
{
    size_t g = group_len(commands[i].name);
    return !g || i == 0 || strncmp(commands[i - 1].name, commands[i].name, g + 1) != 0;
}

static void print_bash(FILE *out)
{
    uint64_t all_flags = 0;
    for (const flag_def *d = flag_defs; d->name; d++)
        all_flags |= FLAG_BIT(d->id);
    fputs("# bash completion for cairnctl: source <(cairnctl completion bash)\n"
          "_cairnctl() {\n"
          "    local cur=${COMP_WORDS[COMP_CWORD]} prev=${COMP_WORDS[COMP_CWORD-1]}\n"
          "    local value_flags=\"", out);
    put_flag_words(out, all_flags, true);
    fputs(" \"\n    local groups=\"", out);
    for (size_t i = 0; i < commands_count; i++)
        if (group_len(commands[i].name))
            fprintf(out, " %.*s", (int)group_len(commands[i].name), commands[i].name);
    fputs(" \"\n"
          "    local i w cmd= sub=\n"
          "    for ((i = 1; i < COMP_CWORD; i++)); do\n"
          "        w=${COMP_WORDS[i]}\n"
          "        if [[ $w == -* ]]; then\n"
          "            [[ $value_flags == *\" $w \"* ]] && ((i++))\n"
          "        elif [[ -z $cmd ]]; then cmd=$w\n"
          "        elif [[ -z $sub && $groups == *\" $cmd \"* ]]; then sub=$w\n"
          "        fi\n"
          "    done\n"
          "    case $prev in\n"
          "    -o|--output)\n"
          "        COMPREPLY=($(compgen -W \"text json jsonl table\" -- \"$cur\")); return ;;\n"
          "    --ca-file|--cert-file|--key-file|--token-file|--out)\n"
          "        COMPREPLY=($(compgen -f -- \"$cur\")); return ;;\n"
          "    esac\n"
          "    local words=\"", out);
    put_flag_words(out, GLOBAL_FLAGS, false);
    fputs("\"\n    case \"$cmd${sub:+ $sub}\" in\n    \"\")\n        words+=\"", out);
    for (size_t i = 0; i < commands_count; i++) {
        size_t g = group_len(commands[i].name);
        if (first_of_group(i))
            fprintf(out, " %.*s", g ? (int)g : (int)strlen(commands[i].name), commands[i].name);
    }
    fputs("\" ;;\n", out);
    for (size_t i = 0; i < commands_count; i++) {
        size_t g = group_len(commands[i].name);
        if (g && first_of_group(i)) { /* the group alone: complete its subcommands */
            fprintf(out, "    %.*s) words=\"", (int)g, commands[i].name);
            for (size_t j = i; j < commands_count; j++)
                if (strncmp(commands[j].name, commands[i].name, g + 1) == 0)
                    fprintf(out, " %s", commands[j].name + g + 1);
            fputs("\" ;;\n", out);
        }
        fprintf(out, "    \"%s\") words+=\"", commands[i].name);
        put_flag_words(out, commands[i].flags, false);
        fputs("\" ;;\n", out);
    }
    fputs("    esac\n"
          "    COMPREPLY=($(compgen -W \"$words\" -- \"$cur\"))\n"
          "}\n"
          "complete -o default -F _cairnctl cairnctl\n", out);
}

int cmd_completion(const cli_ctx *cli, char **args, int nargs)
{
    (void)cli, (void)nargs;
    if (strcmp(args[0], "bash") != 0)
        return usage_error("completion: SHELL: only bash is supported, got \"%s\"", args[0]);
    print_bash(stdout);
    return fflush(stdout) == 0 ? 0 : EXIT_LOCAL_IO;
}
