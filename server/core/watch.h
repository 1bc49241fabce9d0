/* WatchEvents: many streams on few threads. Each watched run has a feed:
 * its last committed seq and a bounded ring of its newest events, filled
 * once per commit by one dispatcher thread (the store's commit observer
 * wakes it; the writer never waits for a watcher). A watcher sends one
 * event at a time, from the ring when it has it, else from the log (a
 * slow or late watcher reads pages from the store and catches up), and
 * parks when it is caught up. No thread per watcher; a slow watcher costs
 * one message in flight and one page. */
#ifndef CAIRN_SERVER_WATCH_H
#define CAIRN_SERVER_WATCH_H

#include "base/error.h"
#include "transport/rpc.h"
#include "core/ledger.h"
#include "store/store.h"

#include <stdint.h>

typedef struct srv_watch srv_watch;

/* Starts the dispatcher over st and becomes l's commit observer. */
srv_code srv_watch_start(srv_store *st, srv_ledger *l, srv_watch **out, srv_error *err);

/* Serves one WatchEvents call: events from from_seq (>= 1) on, then live
 * ones, until the client cancels or shutdown. Owns the call from here. */
void srv_watch_serve(srv_watch *w, srv_call *call, const char *run_id, uint64_t from_seq);

/* Ends every stream with UNAVAILABLE and refuses new ones; call before the
 * transport stops, so parked streams do not hold shutdown up. */
void srv_watch_close_all(srv_watch *w);

/* Stops the dispatcher and frees the hub, once no stream remains (after
 * the transport stopped) and the ledger stopped. NULL is a no-op. */
void srv_watch_stop(srv_watch *w);

#endif
