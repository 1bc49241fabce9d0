/* WatchEvents: many streams on few threads. Each watched run has a feed:
 * its last committed seq and a bounded ring of its newest events, filled
 * once per commit by one dispatcher thread (the store's commit observer
 * wakes it; the writer never waits for a watcher). A watcher sends one
 * event at a time, from the ring when it has it, else from the log (a
 * slow or late watcher reads pages from the store and catches up), and
 * parks when it is caught up. No thread per watcher; a slow watcher costs
 * one message in flight and one page.
 *
 * The hub knows no transport: it writes each stream through a
 * srv_watch_stream, which service/ fills in for a gRPC call (and a test
 * fills in with a fake). */
#ifndef CAIRN_SERVER_WATCH_H
#define CAIRN_SERVER_WATCH_H

#include "base/error.h"
#include "base/pool.h"
#include "store/store.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct srv_watch srv_watch;

/* The hub's callbacks, arg being the hub's own (a watcher). */
typedef void (*srv_watch_sent_fn)(void *arg, bool ok);
typedef void (*srv_watch_closed_fn)(void *arg);

/* One outgoing stream of encoded Event messages, as the hub sees it. The
 * writer (whoever fills this in) owns ctx; srv_watch_serve copies the
 * struct, so it may live on the caller's stack.
 *
 * send: sends one message (copied before send returns). The hub has at
 *   most one send in flight per stream: it calls send again only after
 *   the previous one's fn ran, and never once it called fail. fn(arg, ok)
 *   runs exactly once per send, on any thread, possibly before send
 *   returns; ok false means the client is gone (the hub then ends the
 *   stream with CANCELLED).
 * fail: ends the stream with err's code, message and pushback (a watch
 *   never ends OK). Called exactly once per srv_watch_serve, never while
 *   a send is in flight, and last: after fail returns the hub does not
 *   touch ctx again, so the writer may free it (and the transport may
 *   free the call) right away.
 * on_close: registers fn(arg), which the writer must run exactly once,
 *   on any thread, when the client side of the stream closes: a cancel,
 *   a deadline, a lost connection, or the end after fail. It may run
 *   before on_close returns (the client already left) and may run after
 *   fail. The hub calls on_close at most once, before its first send;
 *   when srv_watch_serve fails the stream at once (shutdown, out of
 *   memory, unknown run) it does not call on_close at all.
 *
 * Memory: the hub allocates each watcher on the heap (not in a call's
 * arena, so it needs to know nothing of how long a transport keeps its
 * memory) and frees it once both have happened: the hub called fail, and
 * the on_close callback ran. Hence a writer must run that callback even
 * after fail, or the watcher leaks.
 *
 * Threads: send, fail and on_close are called from whatever thread
 * drives the watcher (the caller of srv_watch_serve, a sent or close
 * callback, the dispatcher, srv_watch_close_all), never with a hub lock
 * held, so the writer may run the hub's callbacks from inside them. One
 * stream's calls are ordered by the sent callbacks; the only overlap:
 * when fn runs on another thread before send returns, the next send or
 * fail may come while that send is still returning, so send must not
 * touch its state after it set the message on its way. */
typedef struct srv_watch_stream {
    void *ctx;
    void (*send)(void *ctx, const uint8_t *msg, size_t len, srv_watch_sent_fn fn, void *arg);
    void (*fail)(void *ctx, const srv_error *err);
    void (*on_close)(void *ctx, srv_watch_closed_fn fn, void *arg);
} srv_watch_stream;

/* Starts the dispatcher over st. */
srv_code srv_watch_start(srv_store *st, srv_watch **out, srv_error *err);

/* Tells the hub that run_id's log holds everything up to last_seq,
 * committed: a srv_commit_observer with ctx the hub. The ledger calls it
 * after each commit (main wires them); another commit source (another
 * replica's notifications) may call it too, from any thread. Must not
 * block: it only queues the feed for the dispatcher. */
void srv_watch_committed(void *hub, const char *run_id, uint64_t last_seq);

/* Tells the hub that run_id was deleted (committed): its watchers end
 * with NOT_FOUND "run_id: the run was deleted", after the events they
 * already hold. A srv_deletion_observer with ctx the hub (the ledger
 * calls it after the commit). Must not block: any thread. */
void srv_watch_deleted(void *hub, const char *run_id);

/* Tells the hub that commits may have gone unannounced (another
 * replica's notifications were lost with the connection that carried
 * them): the dispatcher re-reads the head of every watched run from the
 * store and wakes the watchers behind it, retrying every
 * SRV_WATCH_RESYNC_RETRY_MS while the store cannot be read. Call it once
 * announcements flow again, so whatever the re-read misses is announced.
 * A srv_store_config on_resync with ctx the hub. Must not block: any
 * thread. */
void srv_watch_resync(void *hub);
#define SRV_WATCH_RESYNC_RETRY_MS 250

/* Serves one WatchEvents stream: events from from_seq (>= 1) on, then
 * live ones, until the client goes away or shutdown. run_id is copied.
 * Owns the stream from here: it ends it with stream->fail exactly once
 * (see srv_watch_stream). Any thread. */
void srv_watch_serve(srv_watch *w, const srv_watch_stream *stream, const char *run_id,
                     uint64_t from_seq);

/* How long a watch refused by the cap is told to wait. */
#define SRV_WATCH_PUSHBACK_MS 1000

/* Caps the streams served at once: past max_watchers (> 0; 0, the
 * default, is no cap) srv_watch_serve fails a new one with
 * RESOURCE_EXHAUSTED and a SRV_WATCH_PUSHBACK_MS pushback. */
void srv_watch_limit(srv_watch *w, int max_watchers);

/* Reads the store (a watcher behind the ring) on io's threads rather than
 * on whichever thread found it behind (a gRPC thread, the dispatcher).
 * Without it (tests), reads run on that thread. Call before serving. */
void srv_watch_use_pool(srv_watch *w, srv_pool *io);

/* Caps the memory all feeds' rings hold together (the encoded events plus
 * their ring slots) at bytes; SIZE_MAX, the default, leaves only each
 * feed's own cap. When an event would pass the budget, the hub makes room:
 * first from the feed being filled while it holds more than its share
 * (the budget divided among the feeds holding events), then from the feed
 * filled least recently, oldest events first; an event that cannot fit
 * even then is not kept. A watcher that needs an event no longer held
 * reads it from the store, so what it receives does not change. Any
 * thread; applies from the next event kept. */
void srv_watch_ring_budget(srv_watch *w, size_t bytes);

/* What the rings of all feeds hold now, as counted against the budget;
 * *peak (if not NULL) gets the most they ever held at once. Any thread. */
size_t srv_watch_ring_bytes(srv_watch *w, size_t *peak);

/* The streams served now (those being set up included). Any thread. */
int srv_watch_open_streams(srv_watch *w);

/* Ends every stream with UNAVAILABLE and refuses new ones; call before the
 * transport stops, so parked streams do not hold shutdown up. */
void srv_watch_close_all(srv_watch *w);

/* Stops the dispatcher and frees the hub, once no stream remains (after
 * the transport stopped) and the ledger stopped. NULL is a no-op. */
void srv_watch_stop(srv_watch *w);

#endif
