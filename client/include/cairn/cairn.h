/* libcairn: the C client of cairnd.
 *
 * One client per process, shared by all its threads: every function here
 * is thread-safe unless its comment says otherwise. A call either returns
 * CAIRN_OK or a failure status, and fills the optional cairn_error with
 * the detail (gRPC status, server message, attempts made).
 *
 * Mutations carry an idempotency key. Pass your own, or leave it NULL and
 * the library draws a random one per logical call; either way every retry
 * of that call reuses it, so the server applies the call exactly once.
 * Transient failures (UNAVAILABLE, ABORTED, DEADLINE_EXCEEDED, ...) are
 * retried with capped exponential backoff and jitter; permanent ones
 * (INVALID_ARGUMENT, NOT_FOUND, ...) fail at once.
 *
 * Ownership: inputs are copied or used only during the call. Outputs are
 * written into caller-supplied structs; a struct that holds memory (a run,
 * a page, a list, a checkpoint, a plan) owns it, and the *_free function
 * named in the comment above the call releases it; the struct itself stays
 * the caller's. On failure such an output is zeroed and holds nothing
 * (cairn_renew_lease alone leaves its *out as it was).
 * Every function that frees (the *_free functions, cairn_client_destroy,
 * cairn_lease_keeper_stop, cairn_watch_stop) is a no-op on NULL; a *_free
 * function is also harmless on a zeroed struct and leaves the struct
 * zeroed, so freeing twice does no harm.
 *
 * ABI: every public struct ends with `uint64_t reserved[...]`, room for the
 * fields a later minor version adds there, so that within a major version
 * no struct changes size and no field moves (docs/api.md, "libcairn
 * ABI"). In a struct you pass in (options, requests, events, labels) the
 * reserved space must be zero: start it from `= {0}`, a designated
 * initializer or its _init function, never from uninitialized memory. A
 * call refuses non-zero reserved space with INVALID_ARGUMENT, so that a
 * field added later can give zero its old meaning. In a struct the
 * library fills, it writes zeros there. Handles (cairn_client,
 * cairn_lease_keeper, cairn_watcher) are opaque and allocated by the
 * library. */
#ifndef CAIRN_CAIRN_H
#define CAIRN_CAIRN_H

#include <cairn/version.h>

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(CAIRN_BUILDING) && defined(__GNUC__)
#define CAIRN_API __attribute__((visibility("default")))
#else
#define CAIRN_API
#endif

/* The reserved space each public struct was given: 4 slots of 8 bytes.
 * A field added later takes a slot's place (within a union with a slot,
 * so that size and alignment stay), and the array shrinks by one. */
#define CAIRN_RESERVED_SLOTS 4

/* Returns the version of the library running, "MAJOR.MINOR.PATCH", as
 * static text: the CAIRN_VERSION_STRING it was built with. The macros in
 * cairn/version.h (CAIRN_VERSION_*, CAIRN_AT_LEAST_VERSION) are those of
 * the headers the caller was compiled against. */
CAIRN_API const char *cairn_version(void);

/* ---- status codes ---- */

/* The first 17 codes are gRPC's, with gRPC's numbers; local failures
 * follow. Codes are only ever appended. */
#define CAIRN_STATUS_MAP(XX)                                                      \
    XX(OK, 0, "ok")                                                               \
    XX(CANCELLED, 1, "the call was cancelled")                                    \
    XX(UNKNOWN, 2, "unknown server error")                                        \
    XX(INVALID_ARGUMENT, 3, "invalid argument")                                   \
    XX(DEADLINE_EXCEEDED, 4, "deadline exceeded")                                 \
    XX(NOT_FOUND, 5, "not found")                                                 \
    XX(ALREADY_EXISTS, 6, "already exists")                                       \
    XX(PERMISSION_DENIED, 7, "permission denied")                                 \
    XX(RESOURCE_EXHAUSTED, 8, "resource exhausted")                               \
    XX(FAILED_PRECONDITION, 9, "failed precondition")                             \
    XX(ABORTED, 10, "aborted")                                                    \
    XX(OUT_OF_RANGE, 11, "out of range")                                          \
    XX(UNIMPLEMENTED, 12, "not implemented by the server")                        \
    XX(INTERNAL, 13, "internal server error")                                     \
    XX(UNAVAILABLE, 14, "server unavailable")                                     \
    XX(DATA_LOSS, 15, "stored data failed its checksum")                          \
    XX(UNAUTHENTICATED, 16, "unauthenticated")                                    \
    XX(NO_MEMORY, 100, "out of memory")                                           \
    XX(IO, 101, "local file error")                                               \
    XX(CIRCUIT_OPEN, 102, "circuit breaker open: calls fail fast until a probe succeeds")

typedef enum cairn_status {
#define CAIRN_XX(name, value, text) CAIRN_##name = value,
    CAIRN_STATUS_MAP(CAIRN_XX)
#undef CAIRN_XX
} cairn_status;

/* Returns static text for a status; never NULL (unknown codes too). */
CAIRN_API const char *cairn_strerror(cairn_status status);

#define CAIRN_ERROR_MESSAGE_MAX 512

/* What went wrong, for a failed call. */
typedef struct cairn_error {
    cairn_status status;          /* as returned */
    int grpc_status;              /* gRPC code of the last attempt; -1 if none was made */
    int attempts;                 /* attempts made, including the first */
    bool needs_attention;         /* INTERNAL/UNKNOWN: a server bug; retried, but flag it */
    bool has_retry_pushback;      /* the server sent grpc-retry-pushback-ms */
    int64_t retry_pushback_ms;    /* its value, saturated to int64; negative: do not retry */
    char message[CAIRN_ERROR_MESSAGE_MAX]; /* server's message, or the local reason */
    uint64_t reserved[CAIRN_RESERVED_SLOTS]; /* zero; room for later fields */
} cairn_error;

/* How a status should be treated. */
typedef enum cairn_class {
    CAIRN_CLASS_OK,               /* success */
    CAIRN_CLASS_TRANSIENT,        /* retry later with the same key */
    CAIRN_CLASS_PERMANENT,        /* retrying cannot help */
} cairn_class;

/* Classifies a failure per the contract: UNAVAILABLE, ABORTED,
 * DEADLINE_EXCEEDED, INTERNAL and UNKNOWN are transient (the last two also
 * set needs_attention), and so is CANCELLED, since libcairn never cancels
 * its own calls; RESOURCE_EXHAUSTED is transient only with a pushback
 * (overload, disk full); a negative pushback makes any failure permanent;
 * everything else is permanent. err may carry a pushback; pass NULL for
 * none. */
CAIRN_API cairn_class cairn_classify(cairn_status status, const cairn_error *err);

/* ---- retry policy ---- */

typedef enum cairn_jitter {
    CAIRN_JITTER_NONE,            /* exactly d */
    CAIRN_JITTER_FULL,            /* random in [0, d] */
    CAIRN_JITTER_EQUAL,           /* d/2 + random in [0, d/2]: never collapses to 0 */
} cairn_jitter;

typedef struct cairn_retry_policy {
    int max_attempts;             /* attempts per logical call, >= 1 (10) */
    uint32_t base_delay_ms;       /* delay before the first retry (100) */
    double multiplier;            /* growth per retry, >= 1 (2.0) */
    uint32_t max_delay_ms;        /* cap on any delay (5000) */
    cairn_jitter jitter;          /* (CAIRN_JITTER_EQUAL) */
    uint64_t jitter_seed;         /* 0: seed from the idempotency key */
    uint32_t call_deadline_ms;    /* whole logical call, retries included (60000); a
                                   * server pushback longer than what is left ends
                                   * the call at once with the status it came with */
    uint32_t attempt_deadline_ms; /* one attempt (10000) */
    uint64_t reserved[CAIRN_RESERVED_SLOTS]; /* must be zero */
} cairn_retry_policy;

/* Fills the defaults above. */
CAIRN_API void cairn_retry_policy_init(cairn_retry_policy *policy);

/* Returns the delay before retry number `retry` (0 = the first retry) of a
 * call with idempotency key `key` (may be NULL): d = min(max_delay,
 * base * multiplier^retry), then jittered. Deterministic: the randomness
 * comes from (jitter_seed, retry), or from (key, retry) when the seed is 0. */
CAIRN_API uint32_t cairn_backoff_delay_ms(const cairn_retry_policy *policy, int retry,
                                          const char *key);

/* Retry throttling per client (gRPC's A6 design): a bucket of tokens; an
 * attempt that fails transiently costs one, a success returns token_ratio;
 * no retries while the bucket holds max_tokens / 2 or less. It protects an
 * overloaded server from every client's retries at once, at the price of
 * failing calls that retries would have carried: off by default. */
typedef struct cairn_retry_budget {
    bool enabled;                 /* (false) */
    double max_tokens;            /* (10) */
    double token_ratio;           /* (0.1) */
    uint64_t reserved[CAIRN_RESERVED_SLOTS]; /* must be zero */
} cairn_retry_budget;

/* A circuit breaker per client: after failure_threshold transient failures
 * in a row it opens, and calls fail at once with CAIRN_CIRCUIT_OPEN; after
 * cooldown_ms one call goes through as a probe (half-open): its success
 * closes the breaker, its failure opens it again. Any answer from the
 * server other than a transient failure counts as success. Off by default. */
typedef struct cairn_circuit_breaker {
    bool enabled;                 /* (false) */
    int failure_threshold;        /* (5) */
    uint32_t cooldown_ms;         /* (5000) */
    uint64_t reserved[CAIRN_RESERVED_SLOTS]; /* must be zero */
} cairn_circuit_breaker;

/* What cairn_client_options.on_retry reports, before each retry's wait.
 * It and its strings live during the call. */
typedef struct cairn_retry_info {
    const char *method;           /* "AppendEvents" */
    int attempt;                  /* the attempt that failed, from 1 */
    cairn_status status;          /* how it failed */
    const char *message;
    uint32_t delay_ms;            /* the wait before the next attempt */
    uint64_t reserved[CAIRN_RESERVED_SLOTS]; /* zero; room for later fields */
} cairn_retry_info;

/* Called on the calling thread; must not call back into the client. */
typedef void (*cairn_retry_observer)(void *user, const cairn_retry_info *info);

/* ---- client ---- */

typedef struct cairn_client cairn_client;

typedef struct cairn_client_options {
    /* gRPC target: "127.0.0.1:7070" (the default), or several servers,
     * "ipv4:127.0.0.1:7001,127.0.0.1:7002", spread round-robin. Copied. */
    const char *target;
    cairn_retry_policy retry;
    /* Largest message sent or received; the server's limit is 4 MiB. */
    uint32_t max_message_bytes;
    cairn_retry_budget retry_budget;
    cairn_circuit_breaker breaker;
    cairn_retry_observer on_retry;  /* optional */
    void *on_retry_user;
    /* TLS to the server; NULL for plaintext. Its files are read and
     * checked when the client is created (cairn_client_create), not
     * again: a client made before a certificate rotation keeps what it
     * read. */
    const struct cairn_tls_options *tls;
    /* Bearer token sent as "authorization: Bearer TOKEN" on every call
     * (streams and Health too); NULL for none. 1..CAIRN_TOKEN_MAX
     * printable ASCII without spaces. Refused over plaintext (tls NULL)
     * unless every address of target is on this machine (127.0.0.0/8,
     * [::1], localhost, unix:), where anyone on the path could read it.
     * Copied. */
    const char *token;
    uint64_t reserved[CAIRN_RESERVED_SLOTS - 2]; /* must be zero */
} cairn_client_options;

#define CAIRN_TOKEN_MAX 4096

/* TLS settings of a client (cairn_client_options.tls). A NULL or empty
 * string leaves a field unset. Each file is at most 1 MiB. A handshake
 * that fails (a certificate that does not verify, is expired or names
 * another host; a server that wants a client certificate) fails the
 * call UNAVAILABLE, transient, with gRPC's reason in the message (after
 * retries, which wait for a connection, DEADLINE_EXCEEDED with that
 * reason added). */
typedef struct cairn_tls_options {
    const char *ca_file;          /* PEM CAs the server's certificate must verify against;
                                     NULL: gRPC's default roots (the file
                                     $GRPC_DEFAULT_SSL_ROOTS_FILE_PATH names, else the
                                     roots.pem installed with gRPC) */
    const char *cert_file;        /* mutual TLS: PEM client certificate chain, or NULL */
    const char *key_file;         /* and its unencrypted PEM private key; with cert_file,
                                     both or neither */
    const char *server_name;      /* name to verify the server's certificate against instead
                                     of the target's host (at most 253 bytes); NULL: the
                                     target's */
    uint64_t reserved[CAIRN_RESERVED_SLOTS]; /* must be zero */
} cairn_tls_options;

/* Fills the defaults. Call before setting fields, so fields added later
 * get their defaults too. */
CAIRN_API void cairn_client_options_init(cairn_client_options *opts);

/* Creates a client. No connection is made until the first call. Returns
 * CAIRN_OK and *out, or INVALID_ARGUMENT for bad options (named in err),
 * a token in plaintext to a server off loopback among them; with tls,
 * also a file that cannot be read or does not hold what its field says (a
 * PEM certificate; a key that matches cert_file), named with its path.
 * Ownership: opts is copied (target too); *out is the caller's, to close
 * with cairn_client_destroy. */
CAIRN_API cairn_status cairn_client_create(const cairn_client_options *opts,
                                           cairn_client **out, cairn_error *err);

/* Closes the client and frees it. No call may be in progress, no keeper
 * or watcher may still use it. NULL is a no-op. */
CAIRN_API void cairn_client_destroy(cairn_client *client);

/* ---- idempotency keys ---- */

#define CAIRN_KEY_MAX 128
#define CAIRN_ID_MAX 128
#define CAIRN_TIMESTAMP_MAX 31

/* Writes a key derived from components: the SHA-256 hex (64 characters and
 * a NUL) of the components joined by 0x1F. Use it to make a retry after a
 * crash of the caller itself reuse the same key. */
CAIRN_API void cairn_idempotency_key(char out[65], const char *const *components, size_t n);

/* Writes a new key (32 hex characters and a NUL): the time in milliseconds
 * (12 hex digits, so keys made later sort after) and 80 bits from the OS's
 * CSPRNG. Keys that sort by time keep the server's index of keys cheap to
 * grow (docs/benchmarks.md); every call without a key of its own gets one. */
CAIRN_API void cairn_random_key(char out[33]);

/* ---- runs ---- */

typedef struct cairn_label {
    const char *key;
    const char *value;
    uint64_t reserved[CAIRN_RESERVED_SLOTS]; /* must be zero; zero in a run's labels */
} cairn_label;

typedef struct cairn_create_run_request {
    const char *idempotency_key;  /* NULL: random per call */
    const char *run_id;
    const char *const *workers;   /* ordered; duplicates dropped by the server */
    size_t workers_count;
    const cairn_label *labels;
    size_t labels_count;
    uint64_t reserved[CAIRN_RESERVED_SLOTS]; /* must be zero */
} cairn_create_run_request;

/* A run as the server reports it. Its workers, completed_workers and
 * labels point into memory the struct owns: they live until
 * cairn_run_free (or, for the runs of a page, cairn_run_page_free). */
typedef struct cairn_run {
    char run_id[CAIRN_ID_MAX + 1];
    char state[16];               /* "created", "running" or "completed" */
    const char *const *workers;
    size_t workers_count;
    const char *const *completed_workers;
    size_t completed_workers_count;
    const cairn_label *labels;
    size_t labels_count;
    uint64_t next_seq;
    char latest_checkpoint_id[CAIRN_ID_MAX + 1];
    char created_at[CAIRN_TIMESTAMP_MAX + 1];
    bool replayed;                /* answered from an earlier call with the same key */
    void *internal_;
    uint64_t reserved[CAIRN_RESERVED_SLOTS]; /* zero; room for later fields */
} cairn_run;

/* Creates a run, or returns it when it exists with the same workers and
 * labels (ALREADY_EXISTS when different).
 * Ownership: on success the caller frees *out with cairn_run_free. */
CAIRN_API cairn_status cairn_create_run(cairn_client *client, const cairn_create_run_request *req,
                                        cairn_run *out, cairn_error *err);

/* Fetches a run; NOT_FOUND when there is none.
 * Ownership: on success the caller frees *out with cairn_run_free. */
CAIRN_API cairn_status cairn_get_run(cairn_client *client, const char *run_id, cairn_run *out,
                                     cairn_error *err);

/* Releases what a cairn_run from cairn_create_run or cairn_get_run holds
 * (not a run of a page: its page owns it) and zeroes it; the struct itself
 * is the caller's. NULL and a zeroed struct are no-ops. */
CAIRN_API void cairn_run_free(cairn_run *run);

typedef struct cairn_delete_run_request {
    const char *idempotency_key;  /* NULL: random per call */
    const char *run_id;
    uint64_t reserved[CAIRN_RESERVED_SLOTS]; /* must be zero */
} cairn_delete_run_request;

typedef struct cairn_delete_run_result {
    bool existed;                 /* false: there was no such run (gone already, or never made) */
    bool replayed;                /* answered from an earlier call with the same key */
    uint64_t reserved[CAIRN_RESERVED_SLOTS]; /* zero; room for later fields */
} cairn_delete_run_result;

/* Deletes a run with its events, leases, checkpoints (their snapshot bytes
 * too, unless another checkpoint shares them) and idempotency keys. A run
 * that does not exist is no error: out->existed is false, so a script may
 * delete twice. A retry with the same key answers as the first call did
 * (existed = true, replayed = true), also after the run is gone, until
 * the server's --dedup-window forgets the key. Watchers of the run end
 * with CAIRN_NOT_FOUND. Needs an admin token once the server checks
 * tokens. Nothing to free. */
CAIRN_API cairn_status cairn_delete_run(cairn_client *client, const cairn_delete_run_request *req,
                                        cairn_delete_run_result *out, cairn_error *err);

typedef struct cairn_run_page {
    cairn_run *runs;
    size_t runs_count;
    char next_page_token[64];     /* "" on the last page */
    void *internal_;
    uint64_t reserved[CAIRN_RESERVED_SLOTS]; /* zero; room for later fields */
} cairn_run_page;

/* Lists runs in creation order. page_size 0 = 100 (at most 1000);
 * page_token NULL or "" for the first page.
 * Ownership: on success the caller frees *out with cairn_run_page_free,
 * which frees its runs too (do not cairn_run_free them one by one). */
CAIRN_API cairn_status cairn_list_runs(cairn_client *client, uint32_t page_size,
                                       const char *page_token, cairn_run_page *out,
                                       cairn_error *err);
/* Releases a page and every run in it, and zeroes it. NULL and a zeroed
 * page are no-ops. */
CAIRN_API void cairn_run_page_free(cairn_run_page *page);

/* ---- events ---- */

/* An event. For appends, set type, worker_id (NULL or "" = run-level) and
 * payload; the server assigns the rest. */
typedef struct cairn_event {
    uint64_t seq;
    const char *type;
    const char *worker_id;
    const void *payload;
    size_t payload_len;
    const char *created_at;
    uint64_t reserved[CAIRN_RESERVED_SLOTS]; /* must be zero; zero in events read */
} cairn_event;

typedef struct cairn_append_request {
    const char *idempotency_key;  /* NULL: random per call */
    const char *run_id;
    const cairn_event *events;    /* 1..1000, appended atomically in order */
    size_t events_count;
    uint64_t expected_next_seq;   /* 0 = no check */
    uint64_t fencing_token;       /* 0 = none */
    uint64_t reserved[CAIRN_RESERVED_SLOTS]; /* must be zero */
} cairn_append_request;

typedef struct cairn_append_result {
    uint64_t first_seq;
    uint64_t last_seq;
    uint64_t events_since_checkpoint;
    bool replayed;
    uint64_t reserved[CAIRN_RESERVED_SLOTS]; /* zero; room for later fields */
} cairn_append_result;

/* Appends a batch. FAILED_PRECONDITION when expected_next_seq does not
 * match; a retry with the same key returns the first result (replayed). */
CAIRN_API cairn_status cairn_append_events(cairn_client *client, const cairn_append_request *req,
                                           cairn_append_result *out, cairn_error *err);

typedef struct cairn_event_page {
    cairn_event *events;
    size_t events_count;
    uint64_t next_seq;            /* read on from here; the page was empty when == from_seq */
    void *internal_;
    uint64_t reserved[CAIRN_RESERVED_SLOTS]; /* zero; room for later fields */
} cairn_event_page;

/* Reads events with seq >= from_seq (0 = 1), at most max_events (0 = 100,
 * at most 1000; a page may hold fewer to stay under the message limit).
 * Ownership: on success the caller frees *out with cairn_event_page_free;
 * the events, their strings and payloads live until then. */
CAIRN_API cairn_status cairn_read_events(cairn_client *client, const char *run_id,
                                         uint64_t from_seq, uint32_t max_events,
                                         cairn_event_page *out, cairn_error *err);
/* Releases a page and its events (strings and payloads too), and zeroes
 * it. NULL and a zeroed page are no-ops. */
CAIRN_API void cairn_event_page_free(cairn_event_page *page);

/* ---- workers ---- */

typedef struct cairn_complete_request {
    const char *idempotency_key;  /* NULL: random per call */
    const char *run_id;
    const char *worker_id;        /* one of the run's workers */
    uint64_t fencing_token;       /* 0 = none */
    uint64_t reserved[CAIRN_RESERVED_SLOTS]; /* must be zero */
} cairn_complete_request;

typedef struct cairn_complete_result {
    uint64_t seq;                 /* of the worker.completed event */
    char run_state[16];           /* the run's state after this completion */
    bool replayed;
    uint64_t reserved[CAIRN_RESERVED_SLOTS]; /* zero; room for later fields */
} cairn_complete_result;

/* Marks a worker completed and appends its "worker.completed" event.
 * INVALID_ARGUMENT when the worker is not the run's; FAILED_PRECONDITION
 * when it already completed (under another key). */
CAIRN_API cairn_status cairn_complete_worker(cairn_client *client, const cairn_complete_request *req,
                                             cairn_complete_result *out, cairn_error *err);

/* ---- leases ---- */

/* A worker lease. expires_at is the server's clock; the lease is live
 * until then. The fencing token grows with every acquisition of the
 * worker: pass it with the holder's writes so that a holder that lost the
 * lease (paused, partitioned) cannot write any more. */
typedef struct cairn_lease {
    char lease_id[CAIRN_ID_MAX + 1];
    char run_id[CAIRN_ID_MAX + 1];
    char worker_id[CAIRN_ID_MAX + 1];
    char holder[CAIRN_ID_MAX + 1];
    uint64_t fencing_token;
    char expires_at[CAIRN_TIMESTAMP_MAX + 1];
    uint32_t ttl_ms;              /* as last granted */
    bool replayed;
    int64_t local_expiry_ms_;     /* private: a safe local bound (CLOCK_MONOTONIC) */
    uint64_t reserved[CAIRN_RESERVED_SLOTS]; /* zero; room for later fields */
} cairn_lease;

typedef struct cairn_acquire_request {
    const char *idempotency_key;  /* NULL: random per call */
    const char *run_id;
    const char *worker_id;        /* one of the run's workers, not completed */
    const char *holder;           /* who holds it, an id: "node-3" */
    uint32_t ttl_ms;              /* 1000..600000 */
    uint64_t reserved[CAIRN_RESERVED_SLOTS]; /* must be zero */
} cairn_acquire_request;

/* Leases a worker. FAILED_PRECONDITION (naming the holder and the expiry)
 * while another lease is live, also the caller's own (renew it instead),
 * or when the worker completed. */
CAIRN_API cairn_status cairn_acquire_worker(cairn_client *client, const cairn_acquire_request *req,
                                            cairn_lease *out, cairn_error *err);

typedef struct cairn_renew_request {
    const char *idempotency_key;  /* NULL: random per call */
    const cairn_lease *lease;     /* as acquired or last renewed */
    uint32_t ttl_ms;              /* from now, 1000..600000 */
    uint64_t reserved[CAIRN_RESERVED_SLOTS]; /* must be zero */
} cairn_renew_request;

/* Extends a live lease by ttl_ms from now and writes the renewed lease to
 * *out, which may be req->lease itself (renewing in place); on failure
 * *out is left as it was. FAILED_PRECONDITION when the lease is no longer
 * live (expired, released, taken over). */
CAIRN_API cairn_status cairn_renew_lease(cairn_client *client, const cairn_renew_request *req,
                                         cairn_lease *out, cairn_error *err);

typedef struct cairn_release_request {
    const char *idempotency_key;  /* NULL: random per call */
    const cairn_lease *lease;     /* as acquired or last renewed */
    uint64_t reserved[CAIRN_RESERVED_SLOTS]; /* must be zero */
} cairn_release_request;

/* Gives a lease up, so another holder can take the worker at once. A lease
 * that already lapsed is released already; one taken over is
 * FAILED_PRECONDITION. */
CAIRN_API cairn_status cairn_release_worker(cairn_client *client, const cairn_release_request *req,
                                            cairn_error *err);

/* Keeps a lease alive from a background thread: renews it every ttl/3.
 * If it cannot (the lease was taken over, or renewals failed until the
 * lease would have expired), it calls on_lost once, on its thread, and
 * stops. From then on the holder must stop writing: its token is fenced.
 * on_lost's lease and why live during the call.
 * Ownership: the lease is copied; *out is the caller's, to stop and free
 * with cairn_lease_keeper_stop (also after on_lost). The client must
 * outlive the keeper. */
typedef struct cairn_lease_keeper cairn_lease_keeper;
typedef void (*cairn_lease_lost_fn)(void *user, const cairn_lease *lease, const cairn_error *why);

CAIRN_API cairn_status cairn_lease_keeper_start(cairn_client *client, const cairn_lease *lease,
                                                cairn_lease_lost_fn on_lost, void *user,
                                                cairn_lease_keeper **out, cairn_error *err);
/* True until the lease is lost. Thread-safe. */
CAIRN_API bool cairn_lease_keeper_alive(cairn_lease_keeper *keeper);
/* Stops renewing (it does not release the lease) and frees the keeper.
 * Returns at once, even while the keeper waits out a retry backoff or a
 * server pushback (a renewal in flight is cancelled). Must not be called
 * from on_lost. NULL is a no-op. */
CAIRN_API void cairn_lease_keeper_stop(cairn_lease_keeper *keeper);

/* ---- watch ---- */

/* Called for each event in seq order; the event lives during the call.
 * Return 0 to go on, anything else to stop the watch. */
typedef int (*cairn_watch_fn)(void *user, const cairn_event *event);

typedef struct cairn_watch_request {
    const char *run_id;
    uint64_t from_seq;            /* 0 = 1 */
    cairn_watch_fn on_event;
    void *user;
    uint64_t reserved[CAIRN_RESERVED_SLOTS]; /* must be zero */
} cairn_watch_request;

/* Streams the run's events from from_seq, then new ones as they commit,
 * until on_event stops it. After a transient failure (a restart, a broken
 * connection) it reconnects with the client's retry policy from the seq
 * after the last event delivered: no gap, no duplicate. The attempt count
 * starts over whenever events flow again. Returns CAIRN_OK when stopped,
 * or the error that ended it. Blocks the calling thread. */
CAIRN_API cairn_status cairn_watch(cairn_client *client, const cairn_watch_request *req,
                                   cairn_error *err);

/* The same on a thread of its own (on_event runs there).
 * Ownership: req is copied (run_id too; user is passed back as it is);
 * *out is the caller's, to end with cairn_watch_stop. The client must
 * outlive the watcher. */
typedef struct cairn_watcher cairn_watcher;
CAIRN_API cairn_status cairn_watch_start(cairn_client *client, const cairn_watch_request *req,
                                         cairn_watcher **out, cairn_error *err);
/* Stops the watch (if on_event has not), waits for its thread, frees the
 * watcher, and returns how it ended (CAIRN_OK when stopped). Returns at
 * once, even while the watch waits to reconnect (backoff or a server
 * pushback, however long). NULL is a no-op that returns CAIRN_OK. */
CAIRN_API cairn_status cairn_watch_stop(cairn_watcher *watcher, cairn_error *err);

/* ---- checkpoints ---- */

/* A checkpoint's metadata. Its run_state and completed_workers point into
 * memory the struct owns: they live until cairn_checkpoint_free (or, for
 * an entry of a list, cairn_checkpoint_list_free). */
typedef struct cairn_checkpoint {
    char checkpoint_id[CAIRN_ID_MAX + 1];   /* YYYYMMDD_HHMMSS_ffffff, increasing per run */
    char run_id[CAIRN_ID_MAX + 1];
    char created_at[CAIRN_TIMESTAMP_MAX + 1];
    const char *run_state;
    const char *const *completed_workers;
    size_t completed_workers_count;
    uint64_t events_count;                  /* the events it covers: seqs 1..events_count */
    uint64_t snapshot_size;
    char snapshot_sha256[65];
    bool replayed;
    void *internal_;
    uint64_t reserved[CAIRN_RESERVED_SLOTS]; /* zero; room for later fields */
} cairn_checkpoint;

/* Releases what a cairn_checkpoint returned by a create, get or load call
 * holds (not an entry of a cairn_checkpoint_list: its list owns it) and
 * zeroes it; the struct itself is the caller's. NULL and a zeroed struct
 * are no-ops. */
CAIRN_API void cairn_checkpoint_free(cairn_checkpoint *checkpoint);

/* Reports transfer progress: bytes done of total. Runs on the calling
 * thread; on a retry it starts again from 0. */
typedef void (*cairn_progress_fn)(void *user, uint64_t done, uint64_t total);

typedef struct cairn_checkpoint_request {
    const char *idempotency_key;  /* NULL: random per call */
    const char *run_id;
    const char *run_state;        /* at most 64 KiB; NULL = "" */
    /* The workers the snapshot has completed; none: the server records the
     * workers completed in the log up to events_count. */
    const char *const *completed_workers;
    size_t completed_workers_count;
    uint64_t events_count;        /* at most the run's last seq */
    cairn_progress_fn progress;   /* optional */
    void *progress_user;
    uint64_t reserved[CAIRN_RESERVED_SLOTS]; /* must be zero */
} cairn_checkpoint_request;

/* Uploads a snapshot from memory and creates a checkpoint of it, streamed
 * in 1 MiB chunks with its SHA-256 (computed here) so the server checks it
 * end to end. Every retry sends the same bytes under the same key. The
 * per-attempt deadline does not apply: an upload may take the whole call
 * deadline.
 * Ownership: snapshot is read during the call only. On success the caller
 * frees *out with cairn_checkpoint_free (so for the _fd and _path forms
 * too). */
CAIRN_API cairn_status cairn_create_checkpoint(cairn_client *client,
                                               const cairn_checkpoint_request *req,
                                               const void *snapshot, size_t len,
                                               cairn_checkpoint *out, cairn_error *err);
/* The same from a file descriptor: its bytes from offset 0 to its size
 * (pread, so fd's offset is untouched and retries reread from 0). */
CAIRN_API cairn_status cairn_create_checkpoint_fd(cairn_client *client,
                                                  const cairn_checkpoint_request *req, int fd,
                                                  cairn_checkpoint *out, cairn_error *err);
/* The same from a file. IO when it cannot be read. */
CAIRN_API cairn_status cairn_create_checkpoint_path(cairn_client *client,
                                                    const cairn_checkpoint_request *req,
                                                    const char *path, cairn_checkpoint *out,
                                                    cairn_error *err);

typedef struct cairn_checkpoint_list {
    cairn_checkpoint *checkpoints;  /* oldest first */
    size_t count;
    void *internal_;
    uint64_t reserved[CAIRN_RESERVED_SLOTS]; /* zero; room for later fields */
} cairn_checkpoint_list;

/* The run's checkpoints, oldest first (every page). Fails INTERNAL when
 * the server answers a page with the token it was asked for (a server
 * bug), rather than asking for that page forever.
 * Ownership: on success the caller frees *out with
 * cairn_checkpoint_list_free, which frees the entries too (do not
 * cairn_checkpoint_free them one by one). */
CAIRN_API cairn_status cairn_list_checkpoints(cairn_client *client, const char *run_id,
                                              cairn_checkpoint_list *out, cairn_error *err);
/* Releases a list and every entry in it, and zeroes it. NULL and a zeroed
 * list are no-ops. */
CAIRN_API void cairn_checkpoint_list_free(cairn_checkpoint_list *list);

/* The newest checkpoint; NOT_FOUND when the run has none.
 * Ownership: on success the caller frees *out with cairn_checkpoint_free. */
CAIRN_API cairn_status cairn_get_latest_checkpoint(cairn_client *client, const char *run_id,
                                                   cairn_checkpoint *out, cairn_error *err);

typedef struct cairn_load_request {
    const char *run_id;
    const char *checkpoint_id;    /* NULL or "" = the latest */
    cairn_progress_fn progress;   /* optional */
    void *progress_user;
    uint64_t reserved[CAIRN_RESERVED_SLOTS]; /* must be zero */
} cairn_load_request;

/* Downloads a checkpoint's snapshot into a new buffer (*data, *len) and
 * its metadata into *meta. DATA_LOSS when the stored bytes fail their
 * SHA-256: nothing is returned then.
 * Ownership: on success the caller frees *data with cairn_buffer_free and
 * *meta with cairn_checkpoint_free (for the _fd and _path forms, *meta
 * only); on failure *data is NULL and *meta zeroed. */
CAIRN_API cairn_status cairn_load_checkpoint(cairn_client *client, const cairn_load_request *req,
                                             cairn_checkpoint *meta, void **data, size_t *len,
                                             cairn_error *err);
/* The same into a file descriptor, which must be a regular file: it is
 * truncated and written from offset 0 (again on a retry). On failure its
 * contents are undefined. */
CAIRN_API cairn_status cairn_load_checkpoint_fd(cairn_client *client,
                                                const cairn_load_request *req, int fd,
                                                cairn_checkpoint *meta, cairn_error *err);
/* The same into a file, atomically: a temporary file beside it, fsync,
 * rename, fsync of the directory; parent directories are created. On
 * failure the file is as it was, unless only that last fsync failed (IO
 * naming the directory): then it may hold the new content, not known to
 * survive a power cut. */
CAIRN_API cairn_status cairn_load_checkpoint_path(cairn_client *client,
                                                  const cairn_load_request *req, const char *path,
                                                  cairn_checkpoint *meta, cairn_error *err);

/* Frees a buffer libcairn returned (cairn_load_checkpoint's *data). NULL
 * is a no-op. */
CAIRN_API void cairn_buffer_free(void *data);

typedef struct cairn_cleanup_result {
    uint32_t deleted;
    const char *const *deleted_ids;   /* oldest first */
    size_t deleted_ids_count;
    bool replayed;
    void *internal_;
    uint64_t reserved[CAIRN_RESERVED_SLOTS]; /* zero; room for later fields */
} cairn_cleanup_result;

typedef struct cairn_cleanup_request {
    const char *idempotency_key;  /* NULL: random per call */
    const char *run_id;
    uint32_t keep_last_n;         /* >= 1: the newest checkpoints to keep */
    uint64_t reserved[CAIRN_RESERVED_SLOTS]; /* must be zero */
} cairn_cleanup_request;

/* Deletes all but the newest keep_last_n checkpoints of the run. A
 * checkpoint being downloaded is kept until a later cleanup.
 * Ownership: on success the caller frees *out with
 * cairn_cleanup_result_free; its deleted_ids live until then. */
CAIRN_API cairn_status cairn_cleanup_checkpoints(cairn_client *client,
                                                 const cairn_cleanup_request *req,
                                                 cairn_cleanup_result *out, cairn_error *err);
/* Releases what a cleanup result holds and zeroes it. NULL and a zeroed
 * result are no-ops. */
CAIRN_API void cairn_cleanup_result_free(cairn_cleanup_result *result);

/* ---- resume ---- */

/* What a resuming process must do. Its resumed_from_state and
 * workers_to_rerun point into memory the struct owns: they live until
 * cairn_resume_plan_free (or, for a cairn_resume_state's plan,
 * cairn_resume_state_free). */
typedef struct cairn_resume_plan {
    char run_id[CAIRN_ID_MAX + 1];
    char checkpoint_id[CAIRN_ID_MAX + 1];   /* "" without a checkpoint */
    const char *resumed_from_state;         /* the checkpoint's run_state; "" without one */
    const char *const *workers_to_rerun;    /* in the given order */
    size_t workers_to_rerun_count;
    uint64_t resume_from_seq;               /* replay events from here */
    bool success;
    void *internal_;
    uint64_t reserved[CAIRN_RESERVED_SLOTS]; /* zero; room for later fields */
} cairn_resume_plan;

/* Asks the server which workers still need to run: all_workers (or the
 * run's own when all_workers_count is 0) minus those completed in the
 * latest checkpoint and after it, and from which seq to replay. A read:
 * no key, changes nothing.
 * Ownership: on success the caller frees *out with cairn_resume_plan_free. */
CAIRN_API cairn_status cairn_resume_run(cairn_client *client, const char *run_id,
                                        const char *const *all_workers, size_t all_workers_count,
                                        cairn_resume_plan *out, cairn_error *err);
/* Releases what a plan from cairn_resume_run holds and zeroes it. NULL and
 * a zeroed plan are no-ops. */
CAIRN_API void cairn_resume_plan_free(cairn_resume_plan *plan);

typedef struct cairn_resume_state {
    cairn_resume_plan plan;
    cairn_event *events;          /* every event from plan.resume_from_seq on */
    size_t events_count;
    void *internal_;
    uint64_t reserved[CAIRN_RESERVED_SLOTS]; /* zero; room for later fields */
} cairn_resume_state;

/* cairn_resume_run, then reads every event to replay (ReadEvents, page by
 * page). Fails INTERNAL when a page's next_seq does not advance (a
 * server bug), rather than asking for the same page forever.
 * Ownership: on success the caller frees *out with
 * cairn_resume_state_free, which frees its plan and its events (with
 * their strings and payloads) too. */
CAIRN_API cairn_status cairn_resume(cairn_client *client, const char *run_id,
                                    const char *const *all_workers, size_t all_workers_count,
                                    cairn_resume_state *out, cairn_error *err);
/* Releases a resume state, its plan and its events, and zeroes it. NULL
 * and a zeroed state are no-ops. */
CAIRN_API void cairn_resume_state_free(cairn_resume_state *state);

/* ---- local helpers ---- */

/* Writes the SHA-256 of data as 64 lowercase hex digits and a NUL. */
CAIRN_API void cairn_content_hash(const void *data, size_t len, char out[65]);

/* Writes data to path unless the file already holds exactly that: a
 * temporary file beside it, fsync, rename (so a reader sees the old or the
 * new content, never a mix), then fsync of the directory; parent
 * directories created, each synced into its own parent. *written (may be
 * NULL) says whether it wrote. IO with the path and the reason (e.g.
 * "permission denied") when it cannot; when only the last fsync of the
 * directory failed, the new content may be in place but is not known to
 * survive a power cut, and *written is false. */
CAIRN_API cairn_status cairn_write_if_changed(const char *path, const void *data, size_t len,
                                              bool *written, cairn_error *err);

/* ---- health ---- */

typedef enum cairn_serving {
    CAIRN_SERVING_UNKNOWN = 0,
    CAIRN_SERVING = 1,
    CAIRN_NOT_SERVING = 2,
} cairn_serving;

/* Asks grpc.health.v1.Health/Check for service ("" or NULL = the server). */
CAIRN_API cairn_status cairn_health_check(cairn_client *client, const char *service,
                                          cairn_serving *out, cairn_error *err);

#ifdef __cplusplus
}
#endif

#endif
