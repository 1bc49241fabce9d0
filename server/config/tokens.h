/* Bearer tokens (--auth-tokens FILE): the file, the set of tokens in
 * force, and the identity a call's authorization header maps to.
 *
 * The file holds one token a line, "name token-sha256 role run-prefix",
 * with # comments and blank lines; it must not be readable or writable by
 * group or others. Only SHA-256 digests are kept: a presented token is
 * hashed and compared with every entry in constant time, so neither the
 * time taken nor anything logged tells how close a guess came. */
#ifndef CAIRN_SERVER_CONFIG_TOKENS_H
#define CAIRN_SERVER_CONFIG_TOKENS_H

#include "base/error.h"
#include "base/id.h"

#include <stddef.h>

#define SRV_TOKEN_MAX 4096          /* bytes of a bearer token */
#define SRV_TOKENS_LINE_MAX 8192    /* bytes of a line of the file */

/* Ordered: each role may do what the ones before it may. */
typedef enum srv_role {
    SRV_ROLE_READ,                  /* reads and streams that read */
    SRV_ROLE_WRITE,                 /* and mutations, checkpoint uploads */
    SRV_ROLE_ADMIN,                 /* and admin-only methods */
} srv_role;

/* "read", "write" or "admin": static text. */
const char *srv_role_name(srv_role role);

/* Who a call is: copied out of the token set, so a call keeps it when
 * the set is replaced. */
typedef struct srv_identity {
    char name[SRV_ID_MAX + 1];
    srv_role role;
    char prefix[SRV_ID_MAX + 1];    /* runs it may touch; "" for "*", every run */
} srv_identity;

/* The identity of a caller when cairnd runs without --auth-tokens. */
extern const srv_identity srv_identity_anyone;

/* True when run_id lies within who's run prefix. */
bool srv_identity_covers(const srv_identity *who, const char *run_id);

typedef struct srv_tokens srv_tokens;

/* Reads the tokens file at path. Returns the set, or NULL with one line
 * in err (INVALID_ARGUMENT): "PATH: why" (unreadable, open to group or
 * others, not a regular file) or "PATH:LINE: why" (a field missing or
 * extra, a digest not 64 hex digits, an unknown role, a bad name or
 * prefix, a name or digest used twice, a line too long). The message
 * never holds a digest. */
srv_tokens *srv_tokens_open(const char *path, srv_error *err);

/* Reads the file again (SIGHUP) and logs one line: a good file replaces
 * the set at once (calls already identified keep their identity), a bad
 * one leaves the set as it was and the line says why. Thread-safe. */
void srv_tokens_reload(srv_tokens *t);

/* Tokens in the set now. Thread-safe. */
size_t srv_tokens_count(srv_tokens *t);

/* Maps header, the value of a call's authorization metadata (len bytes,
 * NULL when the call had none), to an identity. Returns SRV_OK with
 * *who, or UNAUTHENTICATED with a message that names the authorization
 * header and never the token: none, not "Bearer TOKEN" (TOKEN 1..
 * SRV_TOKEN_MAX printable ASCII without spaces), or a token not in the
 * set. Thread-safe; does not block on the file (a reload swaps the set
 * under a short lock). */
srv_code srv_tokens_identify(srv_tokens *t, const char *header, size_t len, srv_identity *who,
                             srv_error *err);

/* NULL is a no-op. */
void srv_tokens_close(srv_tokens *t);

#endif
