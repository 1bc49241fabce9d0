/* What every handler can reach: the settings, the store, the ledger, the
 * watch hub, the I/O pool and what cairnd observes of its calls. */
#ifndef CAIRN_SERVER_APP_H
#define CAIRN_SERVER_APP_H

#include "base/pool.h"
#include "config/config.h"
#include "config/tokens.h"
#include "core/ledger.h"
#include "store/store.h"
#include "core/watch.h"
#include "core/snapshots.h"
#include "service/observe.h"

#include <pthread.h>
#include <stdatomic.h>

typedef struct srv_app {
    const srv_config *cfg;
    srv_store *store;
    srv_ledger *ledger;
    srv_watch *watch;         /* WatchEvents streams */
    srv_pool *io;             /* disk work, off the completion-queue threads */
    srv_upload_gate uploads;  /* CreateCheckpoint streams in progress */
    srv_tokens *tokens;       /* --auth-tokens; NULL: every call goes through */
    srv_observe *observe;     /* call counts, durations, log lines; /metrics */
    atomic_bool serving;      /* false once shutdown begins (health) */
    atomic_bool store_failed; /* the store stopped taking writes: exit 1 */
    /* Commits the store announces (other replicas'), for the watch hub
     * while it lives: main sets and clears commits_to under commits_mu. */
    pthread_mutex_t commits_mu;
    srv_watch *commits_to;
} srv_app;

#endif
