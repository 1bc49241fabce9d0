/* The watch hub. Locks: a watcher's mutex before the hub's, never the
 * other way round. A watcher is always in exactly one of these states:
 * sending (one message in flight; its completion pumps it on), parked (on
 * its feed's list; a wake or a close takes it off), being pumped by one
 * thread, or done. Whoever takes it off the parked list owns its next
 * step. A finished watcher's stream is failed last, after every unlock:
 * the writer may free its side right after.
 *
 * A watcher lives on the heap with two references: the hub's, dropped
 * after it failed the stream, and the close callback's, dropped when that
 * ran. The callback can come after the end (a transport reports the
 * client side closed once the call is over), so freeing the watcher when
 * it finishes would hand it a dangling pointer; whoever drops the last
 * reference frees it. A writer's arena would do too, but only by leaning
 * on how long that transport keeps its memory. */
#include "core/watch.h"
#include "core/domain.h"
#include "base/arena.h"
#include "base/limits.h"
#include "base/log.h"
#include "base/pbc.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* A feed keeps at most this much of its newest log in memory (and all
 * feeds together at most the hub's ring budget). Its ring of slots grows
 * by doubling from RING_MIN_SLOTS and shrinks by half once a quarter
 * full, so a watched run that holds few events costs few slots. */
enum {
    RING_EVENTS = 4096,
    RING_MIN_SLOTS = 16,
    RING_BYTES = 8 * 1024 * 1024,
    PAGE_EVENTS = 256,
    BUCKETS = 256,
};
#define PAGE_BYTES (1024 * 1024)

typedef struct entry {
    uint64_t seq;
    uint8_t *msg;                 /* an encoded Event */
    size_t len;
} entry;

typedef struct watcher watcher;

typedef struct feed {
    struct feed *next;            /* hash chain */
    struct feed *qnext;           /* dispatcher queue */
    char run_id[SRV_ID_MAX + 1];
    int refs;                     /* watchers, plus one while queued */
    bool queued;
    bool deleted;                 /* the run was deleted: its watchers end */
    uint64_t last_seq;            /* committed and readable */
    uint64_t target;              /* the highest seq announced by a commit */
    entry *ring;                  /* slots entries: seqs ring[head].seq .. + count - 1 */
    size_t slots, head, count;
    size_t bytes;                 /* charged to the budget: RING_CHARGE of each event */
    struct feed *lru_prev, *lru_next; /* on the hub's list while count > 0 */
    watcher *parked;
} feed;

/* What one held event counts against the budgets: its bytes and its slot. */
#define RING_CHARGE(len) ((len) + sizeof(entry))

struct watcher {
    srv_job job;                  /* a page read, on the hub's I/O pool */
    srv_watch *hub;
    srv_watch_stream stream;
    feed *feed;
    atomic_int refs;              /* the hub's until it failed the stream, the close callback's */
    pthread_mutex_t mu;
    uint64_t next_seq;
    bool in_flight, parked, closed, done; /* in_flight: a send, or a page read queued */
    srv_arena *page_arena;        /* events read from the store */
    Cairn__V1__ReadEventsResponse page;
    size_t page_idx;
    watcher *pnext;               /* parked list */
    watcher *anext, *aprev;       /* every watcher, for close_all */
};

struct srv_watch {
    srv_store *store;
    srv_pool *io;                 /* page reads; NULL: on the caller's thread */
    pthread_mutex_t mu;
    pthread_cond_t cv;
    feed *buckets[BUCKETS];
    feed *qhead, *qtail;
    watcher *all;
    int watchers;                 /* served or being set up (under mu) */
    int max_watchers;             /* 0: no cap */
    size_t ring_budget;           /* all rings together; SIZE_MAX: none */
    size_t ring_held, ring_peak;  /* charged now, and the most at once */
    size_t ring_feeds;            /* feeds holding events: the list below */
    feed *lru_head, *lru_tail;    /* least recently filled first */
    atomic_bool stopping;
    bool quit;
    bool resync;                  /* re-read every watched run's head */
    bool resync_later;            /* the last re-read failed: again at resync_at */
    struct timespec resync_at;    /* CLOCK_REALTIME, as cv waits */
    pthread_t thread;
};

static size_t bucket(const char *run_id)
{
    uint64_t h = 1469598103934665603ull;
    for (; *run_id; run_id++)
        h = (h ^ (unsigned char)*run_id) * 1099511628211ull;
    return (size_t)(h % BUCKETS);
}

/* hub->mu held */
static feed *find_feed(srv_watch *h, const char *run_id)
{
    feed *f = h->buckets[bucket(run_id)];
    while (f && strcmp(f->run_id, run_id) != 0)
        f = f->next;
    return f;
}

/* hub->mu held: takes f off the list of feeds holding events. */
static void lru_remove(srv_watch *h, feed *f)
{
    if (f->lru_prev)
        f->lru_prev->lru_next = f->lru_next;
    else if (h->lru_head == f)
        h->lru_head = f->lru_next;
    else
        return; /* not on it */
    if (f->lru_next)
        f->lru_next->lru_prev = f->lru_prev;
    else
        h->lru_tail = f->lru_prev;
    f->lru_prev = f->lru_next = NULL;
    h->ring_feeds--;
}

/* hub->mu held: puts f last on the list, as the feed filled most recently. */
static void lru_touch(srv_watch *h, feed *f)
{
    lru_remove(h, f);
    f->lru_prev = h->lru_tail;
    if (h->lru_tail)
        h->lru_tail->lru_next = f;
    else
        h->lru_head = f;
    h->lru_tail = f;
    h->ring_feeds++;
}

/* hub->mu held: frees every event of f's ring and the ring itself. */
static void ring_clear(srv_watch *h, feed *f)
{
    for (size_t i = 0; i < f->count; i++)
        free(f->ring[(f->head + i) % f->slots].msg);
    h->ring_held -= f->bytes;
    lru_remove(h, f);
    free(f->ring);
    f->ring = NULL;
    f->slots = f->head = f->count = f->bytes = 0;
}

/* Moves f's events into a ring of n (>= count) slots; false when out of
 * memory (the ring is unchanged). */
static bool ring_resize(feed *f, size_t n)
{
    entry *ring = malloc(n * sizeof *ring);
    if (!ring)
        return false;
    for (size_t i = 0; i < f->count; i++)
        ring[i] = f->ring[(f->head + i) % f->slots];
    free(f->ring);
    f->ring = ring;
    f->slots = n;
    f->head = 0;
    return true;
}

/* hub->mu held: drops f's oldest event (f->count > 0). */
static void ring_pop(srv_watch *h, feed *f)
{
    entry *old = &f->ring[f->head];
    f->bytes -= RING_CHARGE(old->len);
    h->ring_held -= RING_CHARGE(old->len);
    free(old->msg);
    f->head = (f->head + 1) % f->slots;
    if (--f->count == 0)
        ring_clear(h, f);
    else if (f->slots > RING_MIN_SLOTS && f->count <= f->slots / 4)
        ring_resize(f, f->slots / 2); /* on failure it just stays larger */
}

/* hub->mu held: makes room for need more bytes in the budget of all rings,
 * f about to take them (need <= the budget). Fair and cheap: f gives up
 * its own oldest events while it holds more than its share (the budget
 * divided among the feeds holding events, f included), else the feed
 * filled least recently gives up its oldest: its watchers have had the
 * longest to read them, and a run no longer written does not keep memory
 * that a busy run needs. */
static void ring_make_room(srv_watch *h, feed *f, size_t need)
{
    while (h->ring_held + need > h->ring_budget) {
        size_t feeds = h->ring_feeds + (f->count ? 0 : 1);
        feed *victim = h->lru_head == f ? f->lru_next : h->lru_head;
        if (!victim || (f->count && f->bytes + need > h->ring_budget / feeds))
            victim = f;
        ring_pop(h, victim);
    }
}

/* hub->mu held: appends an encoded event (taking msg), keeping the ring
 * contiguous and within its bounds and the hub's budget. An event that
 * cannot be kept is freed: watchers then read it from the store. */
static void ring_push(srv_watch *h, feed *f, uint64_t seq, uint8_t *msg, size_t len)
{
    size_t need = RING_CHARGE(len);
    if (f->count && f->ring[(f->head + f->count - 1) % f->slots].seq + 1 != seq)
        ring_clear(h, f); /* a gap: start over from here */
    while (f->count && (f->count == RING_EVENTS || f->bytes + need > RING_BYTES))
        ring_pop(h, f);
    if (need > h->ring_budget) { /* not even alone: keep none, so no gap */
        ring_clear(h, f);
        free(msg);
        return;
    }
    ring_make_room(h, f, need);
    if (f->count == f->slots &&
        !ring_resize(f, f->slots ? f->slots * 2 : RING_MIN_SLOTS)) {
        ring_clear(h, f);
        free(msg);
        return;
    }
    f->ring[(f->head + f->count) % f->slots] = (entry){seq, msg, len};
    f->count++;
    f->bytes += need;
    h->ring_held += need;
    if (h->ring_held > h->ring_peak)
        h->ring_peak = h->ring_held;
    lru_touch(h, f);
}

/* hub->mu held: drops a reference, freeing the feed at the last. */
static void feed_unref(srv_watch *h, feed *f)
{
    if (--f->refs > 0)
        return;
    feed **at = &h->buckets[bucket(f->run_id)];
    while (*at != f)
        at = &(*at)->next;
    *at = f->next;
    ring_clear(h, f);
    free(f);
}

/* hub->mu held: a copy of the encoded event seq, or NULL if not held. */
static uint8_t *ring_copy(const feed *f, uint64_t seq, size_t *len)
{
    if (!f->count)
        return NULL;
    uint64_t first = f->ring[f->head].seq;
    if (seq < first || seq >= first + f->count)
        return NULL;
    const entry *e = &f->ring[(f->head + (seq - first)) % f->slots];
    uint8_t *copy = malloc(e->len ? e->len : 1);
    if (copy) {
        memcpy(copy, e->msg, e->len);
        *len = e->len;
    }
    return copy;
}

/* ---- watchers ---- */

static void pump(watcher *w);
static void pump_on(watcher *w, bool on_io);

/* w->mu held: marks w done and detaches it from the hub. The caller ends
 * the call after unlocking. */
static void finish_locked(watcher *w)
{
    srv_watch *h = w->hub;
    w->done = true;
    srv_arena_destroy(w->page_arena);
    w->page_arena = NULL;
    pthread_mutex_lock(&h->mu);
    if (w->aprev)
        w->aprev->anext = w->anext;
    else
        h->all = w->anext;
    if (w->anext)
        w->anext->aprev = w->aprev;
    feed_unref(h, w->feed);
    pthread_mutex_unlock(&h->mu);
}

/* Gives a watcher's place back, after its stream was ended: a stream no
 * longer counted open has had its call counted (srv_watch_open_streams
 * against the transport's on_end). */
static void give_back_place(srv_watch *h)
{
    pthread_mutex_lock(&h->mu);
    h->watchers--;
    pthread_mutex_unlock(&h->mu);
}

static void end_stream(const srv_watch_stream *stream, srv_code code, const char *why)
{
    srv_error err;
    srv_fail(&err, code, "%s", why);
    stream->fail(stream->ctx, &err);
}

/* Drops one of w's references, freeing it at the last. No lock held. */
static void watcher_unref(watcher *w)
{
    if (atomic_fetch_sub(&w->refs, 1) != 1)
        return;
    pthread_mutex_destroy(&w->mu);
    free(w);
}

static void on_sent(void *arg, bool ok)
{
    watcher *w = arg;
    pthread_mutex_lock(&w->mu);
    w->in_flight = false;
    if (!ok)
        w->closed = true;
    pthread_mutex_unlock(&w->mu);
    pump(w);
}

/* w->mu held, no page left: reads the next page from the log. */
static srv_code read_page(watcher *w, srv_error *err)
{
    srv_arena_destroy(w->page_arena);
    w->page_idx = 0;
    cairn__v1__read_events_response__init(&w->page);
    if (!(w->page_arena = srv_arena_create()))
        return srv_fail(err, SRV_RESOURCE_EXHAUSTED, "out of memory");
    return srv_events_read(w->hub->store, w->page_arena, w->feed->run_id, w->next_seq,
                           PAGE_EVENTS, PAGE_BYTES, &w->page, err);
}

/* A page read queued by pump_on, now on a pool thread. */
static void pump_io(srv_job *job)
{
    watcher *w = (watcher *)job; /* the job is the first member */
    pthread_mutex_lock(&w->mu);
    w->in_flight = false;
    pthread_mutex_unlock(&w->mu);
    pump_on(w, true);
}

static void pump(watcher *w)
{
    pump_on(w, false);
}

/* Sends w's next event, or parks it, or ends it. Any thread; reading the
 * store moves to the I/O pool unless on_io says it is there already, as
 * this may be a gRPC thread (a sent callback) or the dispatcher. */
static void pump_on(watcher *w, bool on_io)
{
    srv_watch *h = w->hub;
    pthread_mutex_lock(&w->mu);
    if (w->done || w->in_flight) {
        pthread_mutex_unlock(&w->mu);
        return;
    }
    srv_code code = SRV_OK;
    const char *why = NULL;
    srv_error err;
    uint8_t *msg = NULL;
    size_t len = 0;
    uint64_t seq = 0;
    while (!msg) {
        if (w->closed) {
            code = SRV_CANCELLED, why = "the client went away";
            break;
        }
        if (atomic_load(&h->stopping)) {
            code = SRV_UNAVAILABLE, why = "cairnd is shutting down; watch again from the next seq";
            break;
        }
        if (w->page_idx < w->page.n_events) {
            const Cairn__V1__Event *ev = w->page.events[w->page_idx++];
            seq = ev->seq;
            if (!(msg = srv_pack_heap(&ev->base, &len))) {
                code = SRV_RESOURCE_EXHAUSTED, why = "out of memory";
                break;
            }
            continue;
        }
        pthread_mutex_lock(&h->mu);
        if (w->feed->deleted) {
            pthread_mutex_unlock(&h->mu);
            code = SRV_NOT_FOUND, why = "run_id: the run was deleted";
            break;
        }
        if (w->next_seq > w->feed->last_seq) { /* caught up: wait for a commit */
            w->parked = true;
            w->pnext = w->feed->parked;
            w->feed->parked = w;
            pthread_mutex_unlock(&h->mu);
            pthread_mutex_unlock(&w->mu);
            return;
        }
        msg = ring_copy(w->feed, w->next_seq, &len);
        pthread_mutex_unlock(&h->mu);
        if (msg) {
            seq = w->next_seq;
        } else if (h->io && !on_io) {
            w->in_flight = true; /* no other step until pump_io's */
            pthread_mutex_unlock(&w->mu);
            srv_pool_run(h->io, &w->job, pump_io);
            return;
        } else if (read_page(w, &err)) {
            code = err.code, why = err.msg;
            break;
        } else if (w->page.n_events == 0) {
            code = SRV_INTERNAL, why = "the log ended before its last committed seq";
            break;
        }
    }
    srv_watch_stream stream = w->stream;
    if (code) {
        char text[SRV_ERROR_MSG_MAX];
        snprintf(text, sizeof text, "%s", why);
        srv_watch *hub = w->hub;
        finish_locked(w);
        pthread_mutex_unlock(&w->mu);
        end_stream(&stream, code, text);
        give_back_place(hub);
        watcher_unref(w);
        return;
    }
    w->next_seq = seq + 1;
    w->in_flight = true;
    pthread_mutex_unlock(&w->mu);
    /* w may be freed once send returns: its completion may already have
     * run and ended the stream. */
    stream.send(stream.ctx, msg, len, on_sent, w);
    free(msg);
}

/* The stream's close callback: runs once, possibly after the end. */
static void on_close(void *arg)
{
    watcher *w = arg;
    pthread_mutex_lock(&w->mu);
    if (w->done) {
        pthread_mutex_unlock(&w->mu);
        watcher_unref(w);
        return;
    }
    w->closed = true;
    srv_watch *h = w->hub;
    pthread_mutex_lock(&h->mu);
    bool was_parked = w->parked;
    if (was_parked) { /* off the list: this thread owns its last step */
        watcher **at = &w->feed->parked;
        while (*at != w)
            at = &(*at)->pnext;
        *at = w->pnext;
        w->parked = false;
    }
    pthread_mutex_unlock(&h->mu);
    pthread_mutex_unlock(&w->mu);
    if (was_parked)
        pump(w); /* sees closed, ends the stream */
    watcher_unref(w);
}

/* Takes every parked watcher off f's list (hub->mu held). */
static watcher *unpark_all(feed *f)
{
    watcher *list = f->parked;
    for (watcher *w = list; w; w = w->pnext)
        w->parked = false;
    f->parked = NULL;
    return list;
}

static void wake(watcher *list)
{
    while (list) {
        watcher *next = list->pnext; /* read before pump can end it */
        pump(list);
        list = next;
    }
}

void srv_watch_serve(srv_watch *h, const srv_watch_stream *stream, const char *run_id,
                     uint64_t from_seq)
{
    srv_error err;
    Cairn__V1__Run run;
    if (atomic_load(&h->stopping)) {
        end_stream(stream, SRV_UNAVAILABLE, "cairnd is shutting down");
        return;
    }
    /* A place among the watchers, given back (give_back_place) once its
     * stream ended. */
    pthread_mutex_lock(&h->mu);
    bool full = h->max_watchers > 0 && h->watchers >= h->max_watchers;
    if (!full)
        h->watchers++;
    pthread_mutex_unlock(&h->mu);
    if (full) {
        srv_fail_pushback(&err, SRV_RESOURCE_EXHAUSTED, SRV_WATCH_PUSHBACK_MS,
                          "WatchEvents: %d watches are open, the most --max-watchers allows; "
                          "retry later",
                          h->max_watchers);
        stream->fail(stream->ctx, &err);
        return;
    }
    watcher *w = calloc(1, sizeof *w);
    srv_arena *a = srv_arena_create(); /* the run read below, until serve returns */
    if (!w || !a) {
        free(w);
        srv_arena_destroy(a);
        end_stream(stream, SRV_RESOURCE_EXHAUSTED, "out of memory");
        give_back_place(h);
        return;
    }

    /* The feed first, so no commit after the read below goes unseen. */
    pthread_mutex_lock(&h->mu);
    feed *f = find_feed(h, run_id);
    if (!f)
        f = calloc(1, sizeof *f); /* its ring comes with its first event */
    if (f && !f->refs) {
        snprintf(f->run_id, sizeof f->run_id, "%s", run_id);
        size_t b = bucket(run_id);
        f->next = h->buckets[b];
        h->buckets[b] = f;
    }
    if (f)
        f->refs++;
    pthread_mutex_unlock(&h->mu);
    if (!f) {
        free(w);
        srv_arena_destroy(a);
        end_stream(stream, SRV_RESOURCE_EXHAUSTED, "out of memory");
        give_back_place(h);
        return;
    }
    if (srv_run_read(h->store, a, run_id, &run, &err)) {
        pthread_mutex_lock(&h->mu);
        feed_unref(h, f);
        pthread_mutex_unlock(&h->mu);
        free(w);
        srv_arena_destroy(a);
        stream->fail(stream->ctx, &err);
        give_back_place(h);
        return;
    }

    pthread_mutex_init(&w->mu, NULL);
    atomic_init(&w->refs, 2); /* the hub's and the close callback's */
    w->hub = h;
    w->stream = *stream;
    w->feed = f;
    w->next_seq = from_seq;
    pthread_mutex_lock(&h->mu);
    if (run.next_seq - 1 > f->last_seq)
        f->last_seq = run.next_seq - 1;
    w->anext = h->all;
    if (h->all)
        h->all->aprev = w;
    h->all = w;
    pthread_mutex_unlock(&h->mu);
    srv_arena_destroy(a);
    w->stream.on_close(w->stream.ctx, on_close, w);
    pump(w);
}

/* ---- the dispatcher ---- */

/* Reads the events a commit announced into the feed's ring. */
static void fill(srv_watch *h, feed *f, uint64_t from, uint64_t to)
{
    if (to >= RING_EVENTS && from < to - RING_EVENTS + 1)
        from = to - RING_EVENTS + 1; /* older ones would be evicted at once */
    while (from <= to) {
        srv_arena *a = srv_arena_create();
        Cairn__V1__ReadEventsResponse page = CAIRN__V1__READ_EVENTS_RESPONSE__INIT;
        srv_error err;
        if (!a || srv_events_read(h->store, a, f->run_id, from, PAGE_EVENTS, PAGE_BYTES, &page,
                                  &err)) {
            srv_arena_destroy(a);
            return; /* watchers fall back to reading the log themselves */
        }
        pthread_mutex_lock(&h->mu);
        for (size_t i = 0; i < page.n_events && page.events[i]->seq <= to; i++) {
            size_t len;
            uint8_t *msg = srv_pack_heap(&page.events[i]->base, &len);
            if (msg)
                ring_push(h, f, page.events[i]->seq, msg, len);
        }
        pthread_mutex_unlock(&h->mu);
        uint64_t next = page.next_seq;
        srv_arena_destroy(a);
        if (next <= from)
            return;
        from = next;
    }
}

/* Re-reads the head of every watched run, in one read snapshot, and
 * announces it as a commit (srv_watch_resync). The dispatcher's thread,
 * no lock held. False when the store could not be read. */
static bool resync_feeds(srv_watch *h)
{
    pthread_mutex_lock(&h->mu);
    size_t n = 0;
    for (size_t b = 0; b < BUCKETS; b++)
        for (feed *f = h->buckets[b]; f; f = f->next)
            n++;
    feed **list = n ? malloc(n * sizeof *list) : NULL;
    if (n && !list) {
        pthread_mutex_unlock(&h->mu);
        return false;
    }
    n = 0;
    for (size_t b = 0; b < BUCKETS; b++)
        for (feed *f = h->buckets[b]; f; f = f->next) {
            f->refs++; /* kept while read below, unlocked */
            list[n++] = f;
        }
    pthread_mutex_unlock(&h->mu);

    srv_error err = {0};
    srv_txn *t = NULL;
    srv_arena *a = n ? srv_arena_create() : NULL;
    bool ok = !n || (a && !srv_store_read_begin(h->store, &t, &err));
    for (size_t i = 0; ok && i < n; i++) {
        srv_run_head head;
        bool found = false;
        if (srv_store_run_find(t, a, list[i]->run_id, &head, &found, &err))
            ok = false;
        else if (found && head.next_seq > 1)
            srv_watch_committed(h, list[i]->run_id, head.next_seq - 1);
    }
    srv_store_read_end(t);
    srv_arena_destroy(a);
    if (!ok)
        srv_warn("watch: re-reading the watched runs for commits not announced: %s; again in "
                 "%d ms",
                 a ? err.msg : "out of memory", SRV_WATCH_RESYNC_RETRY_MS);
    pthread_mutex_lock(&h->mu);
    for (size_t i = 0; i < n; i++)
        feed_unref(h, list[i]);
    pthread_mutex_unlock(&h->mu);
    free(list);
    return ok;
}

/* h->mu held: waits for a queued feed, a resync due, or quit. */
static void dispatcher_wait(srv_watch *h)
{
    while (!h->qhead && !h->resync && !h->quit) {
        if (!h->resync_later) {
            pthread_cond_wait(&h->cv, &h->mu);
        } else if (pthread_cond_timedwait(&h->cv, &h->mu, &h->resync_at) == ETIMEDOUT) {
            h->resync_later = false;
            h->resync = true;
        }
    }
}

static void *dispatcher(void *arg)
{
    srv_watch *h = arg;
    pthread_mutex_lock(&h->mu);
    for (;;) {
        dispatcher_wait(h);
        if (h->resync && !h->quit) {
            h->resync = false;
            pthread_mutex_unlock(&h->mu);
            bool ok = resync_feeds(h);
            pthread_mutex_lock(&h->mu);
            if (!ok && !h->resync) {
                clock_gettime(CLOCK_REALTIME, &h->resync_at);
                h->resync_at.tv_nsec += SRV_WATCH_RESYNC_RETRY_MS * 1000000L;
                h->resync_at.tv_sec += h->resync_at.tv_nsec / 1000000000L;
                h->resync_at.tv_nsec %= 1000000000L;
                h->resync_later = true;
            }
            continue;
        }
        if (!h->qhead)
            break;
        feed *f = h->qhead;
        h->qhead = f->qnext;
        if (!h->qhead)
            h->qtail = NULL;
        f->queued = false;
        uint64_t from = f->last_seq + 1, to = f->target;
        pthread_mutex_unlock(&h->mu);

        if (to >= from)
            fill(h, f, from, to);

        pthread_mutex_lock(&h->mu);
        if (to > f->last_seq)
            f->last_seq = to;
        watcher *woken = unpark_all(f);
        feed_unref(h, f); /* the queue's reference */
        pthread_mutex_unlock(&h->mu);
        wake(woken);
        pthread_mutex_lock(&h->mu);
    }
    pthread_mutex_unlock(&h->mu);
    return NULL;
}

void srv_watch_committed(void *ctx, const char *run_id, uint64_t last_seq)
{
    srv_watch *h = ctx;
    pthread_mutex_lock(&h->mu);
    feed *f = find_feed(h, run_id);
    if (f) {
        if (last_seq > f->target)
            f->target = last_seq;
        if (!f->queued) {
            f->queued = true;
            f->refs++;
            f->qnext = NULL;
            if (h->qtail)
                h->qtail->qnext = f;
            else
                h->qhead = f;
            h->qtail = f;
            pthread_cond_signal(&h->cv);
        }
    }
    pthread_mutex_unlock(&h->mu);
}

void srv_watch_deleted(void *ctx, const char *run_id)
{
    srv_watch *h = ctx;
    watcher *woken = NULL;
    pthread_mutex_lock(&h->mu);
    feed *f = find_feed(h, run_id);
    if (f) {
        f->deleted = true;
        woken = unpark_all(f);
    }
    pthread_mutex_unlock(&h->mu);
    wake(woken); /* each sees deleted and ends; the others at their next step */
}

void srv_watch_resync(void *ctx)
{
    srv_watch *h = ctx;
    pthread_mutex_lock(&h->mu);
    h->resync = true;
    h->resync_later = false;
    pthread_cond_signal(&h->cv);
    pthread_mutex_unlock(&h->mu);
}

srv_code srv_watch_start(srv_store *st, srv_watch **out, srv_error *err)
{
    srv_watch *h = calloc(1, sizeof *h);
    if (!h)
        return srv_fail(err, SRV_RESOURCE_EXHAUSTED, "out of memory");
    h->store = st;
    h->ring_budget = SIZE_MAX;
    pthread_mutex_init(&h->mu, NULL);
    pthread_cond_init(&h->cv, NULL);
    if (pthread_create(&h->thread, NULL, dispatcher, h) != 0) {
        pthread_cond_destroy(&h->cv);
        pthread_mutex_destroy(&h->mu);
        free(h);
        return srv_fail(err, SRV_RESOURCE_EXHAUSTED, "cannot start the watch thread");
    }
    *out = h;
    return SRV_OK;
}

void srv_watch_use_pool(srv_watch *h, srv_pool *io)
{
    h->io = io;
}

void srv_watch_limit(srv_watch *h, int max_watchers)
{
    pthread_mutex_lock(&h->mu);
    h->max_watchers = max_watchers;
    pthread_mutex_unlock(&h->mu);
}

void srv_watch_ring_budget(srv_watch *h, size_t bytes)
{
    pthread_mutex_lock(&h->mu);
    h->ring_budget = bytes;
    pthread_mutex_unlock(&h->mu);
}

size_t srv_watch_ring_bytes(srv_watch *h, size_t *peak)
{
    pthread_mutex_lock(&h->mu);
    size_t held = h->ring_held;
    if (peak)
        *peak = h->ring_peak;
    pthread_mutex_unlock(&h->mu);
    return held;
}

int srv_watch_open_streams(srv_watch *h)
{
    pthread_mutex_lock(&h->mu);
    int n = h->watchers;
    pthread_mutex_unlock(&h->mu);
    return n;
}

void srv_watch_close_all(srv_watch *h)
{
    atomic_store(&h->stopping, true);
    /* Parked watchers are woken to end themselves; the others end at
     * their next step, which sees stopping. */
    watcher *woken = NULL;
    pthread_mutex_lock(&h->mu);
    for (size_t b = 0; b < BUCKETS; b++) {
        for (feed *f = h->buckets[b]; f; f = f->next) {
            watcher *list = unpark_all(f);
            while (list) {
                watcher *next = list->pnext;
                list->pnext = woken;
                woken = list;
                list = next;
            }
        }
    }
    pthread_mutex_unlock(&h->mu);
    wake(woken);
}

void srv_watch_stop(srv_watch *h)
{
    if (!h)
        return;
    pthread_mutex_lock(&h->mu);
    h->quit = true;
    pthread_cond_signal(&h->cv);
    pthread_mutex_unlock(&h->mu);
    pthread_join(h->thread, NULL);
    for (size_t b = 0; b < BUCKETS; b++) {
        for (feed *f = h->buckets[b], *next; f; f = next) {
            next = f->next;
            ring_clear(h, f);
            free(f);
        }
    }
    pthread_cond_destroy(&h->cv);
    pthread_mutex_destroy(&h->mu);
    free(h);
}
