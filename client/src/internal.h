/* libcairn internals: cairn__ names are private to the library. */
#ifndef CAIRN_CLIENT_INTERNAL_H
#define CAIRN_CLIENT_INTERNAL_H

#include "cairn/cairn.h"

#include <pb.h>
#include <pthread.h>

/* The RPCs libcairn calls; transport.c maps them to method paths. */
typedef enum cairn__method {
    CAIRN__CREATE_RUN,
    CAIRN__GET_RUN,
    CAIRN__LIST_RUNS,
    CAIRN__APPEND_EVENTS,
    CAIRN__READ_EVENTS,
    CAIRN__HEALTH_CHECK,
    CAIRN__COMPLETE_WORKER,
    CAIRN__CREATE_CHECKPOINT,
    CAIRN__LIST_CHECKPOINTS,
    CAIRN__GET_LATEST_CHECKPOINT,
    CAIRN__LOAD_CHECKPOINT,
    CAIRN__CLEANUP_CHECKPOINTS,
    CAIRN__RESUME_RUN,
    CAIRN__ACQUIRE_WORKER,
    CAIRN__RENEW_LEASE,
    CAIRN__RELEASE_WORKER,
    CAIRN__WATCH_EVENTS,
    CAIRN__DELETE_RUN,
    CAIRN__METHOD_COUNT
} cairn__method;

/* ---- transport.c: the only file that includes gRPC headers ---- */

typedef struct cairn__transport cairn__transport;

/* What cairn_tls_options' files hold, read at create (tls.c). */
typedef struct cairn__tls {
    char *ca_pem;                 /* NULL: gRPC's default roots */
    char *cert_pem, *key_pem;     /* the client's key pair, both or neither */
    size_t key_len;
    char *server_name;            /* NULL: the target's host */
} cairn__tls;

/* Creates the channel to target: TLS with tls's PEM text (which gRPC
 * copies), or plaintext when tls is NULL. token (NULL for none, checked
 * by cairn__check_token) goes with every call as "authorization: Bearer
 * TOKEN". */
cairn_status cairn__transport_create(const char *target, uint32_t max_message_bytes,
                                     const cairn__tls *tls, const char *token,
                                     cairn__transport **out,
                                     cairn_error *err);
void cairn__transport_destroy(cairn__transport *t);
/* The RPC's short name, "AppendEvents". */
const char *cairn__method_name(cairn__method m);

/* The outcome of one attempt. body and details are malloc'd. */
typedef struct cairn__reply {
    int grpc_status;
    cairn_status local;           /* a local failure that ended the attempt (not retried) */
    char *details;
    bool has_pushback;
    int64_t pushback_ms;
    uint8_t *body;
    size_t body_len;
} cairn__reply;

void cairn__reply_free(cairn__reply *r);

/* Lets another thread stop a watch or a lease keeper: it cancels the
 * call in progress and wakes any wait on the slot (cairn__cancel_wait). */
typedef struct cairn__cancel {
    pthread_mutex_t mu;
    pthread_cond_t cv;            /* on CLOCK_MONOTONIC; broadcast when fired */
    void *call;                   /* the attempt's grpc_call, while it runs */
    bool cancelled;
} cairn__cancel;

/* Initializes and destroys a slot (retry.c). */
void cairn__cancel_init(cairn__cancel *slot);
void cairn__cancel_destroy(cairn__cancel *slot);
/* Marks the slot cancelled, cancels its call if one runs and wakes its
 * waiters. Thread-safe; may be called more than once. */
void cairn__cancel_fire(cairn__cancel *slot);
/* True once the slot was fired (retry.c). */
bool cairn__cancel_fired(cairn__cancel *slot);
/* Waits ms (any value: <= 0 does not wait; huge ones do not overflow), or
 * less when the slot is fired. Returns true when it was (retry.c). */
bool cairn__cancel_wait(cairn__cancel *slot, int64_t ms);

/* Makes one unary attempt bounded by timeout_ms. wait_for_ready makes the
 * call wait for a connection (up to the timeout) instead of failing fast.
 * slot (may be NULL) lets another thread cancel it.
 * Always fills *out; local failures come back as UNAVAILABLE. */
void cairn__transport_unary(cairn__transport *t, cairn__method m, const uint8_t *req,
                            size_t len, uint32_t timeout_ms, bool wait_for_ready,
                            cairn__cancel *slot, cairn__reply *out);

/* Gives the next message of a client stream: 1 with *msg (malloc'd; the
 * transport frees it), 0 at the end, or -1 after a local failure, which
 * it records in out->local and out->details. */
typedef int (*cairn__next_fn)(void *ctx, uint8_t **msg, size_t *len, cairn__reply *out);

/* One client-streaming attempt: messages from next, one in flight at a
 * time, then the single response. */
void cairn__transport_upload(cairn__transport *t, cairn__method m, cairn__next_fn next, void *ctx,
                             uint32_t timeout_ms, bool wait_for_ready, cairn__reply *out);

/* Takes one message of a server stream: 0 to go on, -1 after a local
 * failure (recorded in out), which cancels the call. */
typedef int (*cairn__msg_fn)(void *ctx, const uint8_t *msg, size_t len, cairn__reply *out);

/* One server-streaming attempt: sends req, hands each message to on_msg.
 * slot (may be NULL) lets another thread cancel it. */
void cairn__transport_download(cairn__transport *t, cairn__method m, const uint8_t *req,
                               size_t len, cairn__msg_fn on_msg, void *ctx, uint32_t timeout_ms,
                               bool wait_for_ready, cairn__cancel *slot, cairn__reply *out);

/* ---- guard.c ---- */

typedef struct cairn__budget {
    bool on;
    double tokens, max_tokens, ratio;
    pthread_mutex_t mu;
} cairn__budget;

void cairn__budget_init(cairn__budget *b, const cairn_retry_budget *cfg);
void cairn__budget_destroy(cairn__budget *b);
/* After each attempt: a transient failure costs a token, else ratio back. */
void cairn__budget_record(cairn__budget *b, bool transient_failure);
bool cairn__budget_allows_retry(cairn__budget *b);

typedef enum { CAIRN__CLOSED, CAIRN__OPEN, CAIRN__HALF_OPEN } cairn__breaker_state;

typedef struct cairn__breaker {
    bool on;
    int threshold;
    int64_t cooldown_ms;
    cairn__breaker_state state;
    int failures;                 /* transient failures in a row */
    int64_t opened_at;
    pthread_mutex_t mu;
} cairn__breaker;

void cairn__breaker_init(cairn__breaker *br, const cairn_circuit_breaker *cfg);
void cairn__breaker_destroy(cairn__breaker *br);
/* Before each attempt: CAIRN_OK (with *probe when this attempt is the
 * half-open probe) or CAIRN_CIRCUIT_OPEN. */
cairn_status cairn__breaker_admit(cairn__breaker *br, int64_t now, bool *probe, cairn_error *err);
/* After each admitted attempt. */
void cairn__breaker_record(cairn__breaker *br, bool transient_failure, bool probe, int64_t now);

/* ---- client.c ---- */

/* Time as the retry loop and the watch see it; tests replace it with a
 * fake clock. */
typedef struct cairn__clock {
    int64_t (*now_ms)(void *ctx);  /* monotonic */
    /* Waits ms, or less once stop (may be NULL) fires: true when it did. */
    bool (*sleep_ms)(void *ctx, int64_t ms, cairn__cancel *stop);
    void *ctx;
} cairn__clock;

struct cairn_client {
    cairn__transport *transport;
    cairn_retry_policy retry;
    cairn__budget budget;
    cairn__breaker breaker;
    cairn_retry_observer on_retry;
    void *on_retry_user;
    cairn__clock clock;
};

/* The real clock: CLOCK_MONOTONIC; a sleep with a stop slot is a timed
 * wait on the slot, one without is nanosleep. */
cairn__clock cairn__real_clock(void);
/* CLOCK_MONOTONIC in milliseconds: the real clock's now_ms, and the lease
 * keeper's (its condvar waits on CLOCK_MONOTONIC, so no fake clock). */
int64_t cairn__mono_ms(void);

/* ---- status.c ---- */

/* Fills err (when not NULL) with a local failure and returns status. */
cairn_status cairn__fail(cairn_error *err, cairn_status status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Maps a gRPC status code to a cairn_status. */
cairn_status cairn__status_from_grpc(int code);
/* Resets err to success. */
void cairn__error_clear(cairn_error *err);
/* Checks that a struct the caller passed in left its reserved space zero
 * (cairn.h's ABI rule): INVALID_ARGUMENT naming it otherwise, as
 * "reserved", "<field>.reserved" or "<field>[<index>].reserved" (field
 * may be NULL; index CAIRN__NO_INDEX for none). */
#define CAIRN__NO_INDEX SIZE_MAX
cairn_status cairn__check_reserved(const void *reserved, size_t size, const char *field,
                                   size_t index, cairn_error *err);
#define CAIRN__CHECK_RESERVED(s, field, index, err) \
    cairn__check_reserved((s)->reserved, sizeof (s)->reserved, field, index, err)

/* ---- token.c ---- */

/* True when every address of a gRPC target is on this machine:
 * 127.0.0.0/8, [::1], localhost or a unix: socket ("127.0.0.1:7070",
 * "ipv4:127.0.0.1:7001,127.0.0.1:7002", "dns:///localhost:7070",
 * "unix:/path"); false for any other name or scheme. Resolves nothing. */
bool cairn__target_is_loopback(const char *target);
/* The token option: NULL, or 1..CAIRN_TOKEN_MAX printable ASCII without
 * spaces, sent in plaintext (tls false) only to a loopback target.
 * INVALID_ARGUMENT naming token (and the target) otherwise. */
cairn_status cairn__check_token(const char *token, const char *target, bool tls,
                                cairn_error *err);

/* ---- retry.c ---- */

/* Makes one attempt of a logical call (a unary call, an upload, a
 * download), starting over from scratch each time. */
typedef void (*cairn__attempt_fn)(void *ctx, cairn__transport *t, uint32_t timeout_ms,
                                  bool wait_for_ready, cairn__reply *out);

typedef struct cairn__call {
    const char *name;             /* the RPC, for on_retry: "AppendEvents" */
    cairn__attempt_fn attempt;
    void *ctx;
    const char *key;              /* the idempotency key (seeds jitter); NULL for reads */
    bool streaming;               /* an attempt may take the whole call deadline */
    cairn__cancel *stop;          /* may be NULL; the attempt must honour it too */
} cairn__call;

/* Runs a logical call: attempts, classification, backoff. On CAIRN_OK
 * *out holds the successful reply (free with cairn__reply_free). Once
 * call->stop fires, it makes no further attempt and does not wait: it
 * returns CAIRN_CANCELLED ("stopped"). */
cairn_status cairn__invoke(cairn_client *c, const cairn__call *call, cairn__reply *out,
                           cairn_error *err);
/* Parses a grpc-retry-pushback-ms value (n bytes at s, not
 * NUL-terminated): true with *ms, or false when it is not one. */
bool cairn__parse_pushback(const char *s, size_t n, int64_t *ms);
/* Copies one attempt's outcome into err. */
void cairn__record(cairn_error *err, const cairn__reply *r, int attempts);
/* The same under another policy (a lease renewal bounded by the lease). */
cairn_status cairn__invoke_with(cairn_client *c, const cairn_retry_policy *p,
                                const cairn__call *call, cairn__reply *out, cairn_error *err);

/* ---- codec.c: nanopb ---- */

/* Encodes msg into a malloc'd buffer. */
cairn_status cairn__encode(const pb_msgdesc_t *fields, const void *msg, uint8_t **out,
                           size_t *len, cairn_error *err);
/* Decodes into msg (which must be initialized, callbacks set). On failure
 * msg is released. */
cairn_status cairn__decode(const pb_msgdesc_t *fields, const uint8_t *buf, size_t len,
                           void *msg, cairn_error *err);
/* Releases and frees a malloc'd decoded message; NULL is a no-op. */
void cairn__release(const pb_msgdesc_t *fields, void *msg);
/* Copies s into a bounded char array, or fails with INVALID_ARGUMENT
 * naming field and the limit. NULL copies as "". */
cairn_status cairn__copy_str(char *dst, size_t cap, const char *s, const char *field,
                             cairn_error *err);

/* Encodes, invokes and decodes a unary call in one step: the request
 * message is encoded, the call made with retries (under policy p, or the
 * client's when NULL; stop may be NULL, see cairn__call), and the reply
 * decoded into resp (initialized by the caller). */
cairn_status cairn__unary_with(cairn_client *c, const cairn_retry_policy *p,
                               cairn__cancel *stop, cairn__method m,
                               const pb_msgdesc_t *req_fields, const void *req, const char *key,
                               const pb_msgdesc_t *resp_fields, void *resp, cairn_error *err);
cairn_status cairn__unary(cairn_client *c, cairn__method m, const pb_msgdesc_t *req_fields,
                          const void *req, const char *key, const pb_msgdesc_t *resp_fields,
                          void *resp, cairn_error *err);

/* Picks the idempotency key of a logical call: the caller's (checked) or a
 * fresh random one, written to out. */
cairn_status cairn__pick_key(char out[CAIRN_KEY_MAX + 1], const char *given, cairn_error *err);

/* ---- events.c ---- */

/* Decodes one Event from s into *out; the event's strings and payload
 * live in one malloc'd block that out->type points at (free it so). */
bool cairn__decode_event(pb_istream_t *s, cairn_event *out);

/* ---- tls.c ---- */

/* Checks o (cert_file and key_file both or neither; server_name at most
 * 253 bytes; NULL and "" mean unset) and reads its files into *out:
 * each must be readable and at most 1 MiB, ca_file and cert_file hold a
 * PEM certificate, key_file an unencrypted PEM key that matches
 * cert_file's first certificate. INVALID_ARGUMENT names the field and
 * the path. On failure *out holds nothing. */
cairn_status cairn__tls_load(const cairn_tls_options *o, cairn__tls *out, cairn_error *err);
/* Frees what *t holds, wiping the key's text first, and zeroes it. */
void cairn__tls_free(cairn__tls *t);

/* ---- keys.c ---- */

/* Writes n bytes as 2n lowercase hex digits and a NUL. */
void cairn__hex(char *out, const unsigned char *bytes, size_t n);

/* ---- local.c ---- */

/* Opens a new temporary file beside path (creating path's parents) for an
 * atomic replace: *tmp is its malloc'd name. */
cairn_status cairn__atomic_open(const char *path, char **tmp, int *fd, cairn_error *err);
/* fsync, close, rename over path, fsync the directory; frees tmp. */
cairn_status cairn__atomic_commit(const char *path, char *tmp, int fd, cairn_error *err);
/* Closes and removes the temporary file; frees tmp. */
void cairn__atomic_abort(char *tmp, int fd);
/* write(2) until done; IO naming path on failure. */
cairn_status cairn__write_all(int fd, const void *data, size_t len, const char *path,
                              cairn_error *err);

#endif
