/* The command table: one row per command. Adding a command is adding a
 * row and its handler; help, completion, flag checks and the retry
 * policy all come from the row. */
#include "cli.h"

#define F(id) FLAG_BIT(FLAG_##id)

const command commands[] = {
    {"health", "[SERVICE]", 0, 1, 0, CALL_READ,
     "is the server serving? exit 0 when SERVING, 1 when not", cmd_health},
    {"create-run", "RUN WORKER...", 2, -1, F(KEY) | F(LABEL), CALL_WRITE,
     "create a run; the same definition again returns it", cmd_create_run},
    {"get-run", "RUN", 1, 1, 0, CALL_READ, "a run: state, workers, next seq", cmd_get_run},
    {"list-runs", "", 0, 0, F(PAGE_SIZE) | F(PAGE_TOKEN) | F(ALL), CALL_READ,
     "runs in creation order, a page at a time (--all: every page)", cmd_list_runs},
    {"delete-run", "RUN", 1, 1, F(KEY), CALL_WRITE,
     "delete a run and all it holds (admin); no such run is no error", cmd_delete_run},
    {"append", "RUN TYPE [PAYLOAD|-]", 2, 3, F(KEY) | F(WORKER) | F(EXPECT) | F(FENCING_TOKEN),
     CALL_WRITE, "append an event; PAYLOAD '-' reads it from stdin", cmd_append},
    {"read", "RUN", 1, 1, F(FROM) | F(MAX) | F(ALL), CALL_READ,
     "a page of events from --from (--all: every page)", cmd_read},
    {"events tail", "RUN", 1, 1, F(FOLLOW) | F(LINES) | F(FROM), CALL_READ,
     "the last events, one line each; -f follows new ones across restarts", cmd_events_tail},
    {"watch", "RUN", 1, 1, F(FROM), CALL_FOLLOW,
     "every event from --from, then new ones as they commit (Ctrl-C stops)", cmd_watch},
    {"complete", "RUN WORKER", 2, 2, F(KEY) | F(FENCING_TOKEN), CALL_WRITE,
     "mark a worker completed", cmd_complete},
    {"acquire", "RUN WORKER", 2, 2, F(KEY) | F(HOLDER) | F(TTL), CALL_WRITE,
     "lease a worker: prints lease_id and fencing_token", cmd_acquire},
    {"renew", "RUN WORKER LEASE_ID", 3, 3, F(KEY) | F(TTL), CALL_WRITE,
     "extend a live lease to --ttl from now", cmd_renew},
    {"release", "RUN WORKER LEASE_ID", 3, 3, F(KEY), CALL_WRITE, "give a lease up", cmd_release},
    {"checkpoint", "RUN FILE", 2, 2,
     F(KEY) | F(STATE) | F(EVENTS) | F(COMPLETED) | F(NO_PROGRESS), CALL_WRITE,
     "upload FILE as the run's new checkpoint", cmd_checkpoint},
    {"checkpoints", "RUN", 1, 1, 0, CALL_READ, "the run's checkpoints, oldest first",
     cmd_checkpoints},
    {"load", "RUN [CHECKPOINT_ID]", 1, 2, F(OUT) | F(NO_PROGRESS), CALL_WRITE,
     "download a snapshot (the latest when no id) to --out, or stdout", cmd_load},
    {"cleanup", "RUN KEEP_LAST_N", 2, 2, F(KEY), CALL_WRITE,
     "delete all but the newest KEEP_LAST_N checkpoints", cmd_cleanup},
    {"resume", "RUN [WORKER...]", 1, -1, 0, CALL_READ,
     "which workers to rerun, and from which seq to replay", cmd_resume},
    {"completion", "bash", 1, 1, 0, CALL_LOCAL, "print the bash completion script",
     cmd_completion},
};

const size_t commands_count = sizeof commands / sizeof commands[0];
