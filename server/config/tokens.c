#include "config/tokens.h"
#include "base/log.h"
#include "base/sha256.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

enum { DIGEST = 32 };

static const char *const role_names[] = {
    [SRV_ROLE_READ] = "read", [SRV_ROLE_WRITE] = "write", [SRV_ROLE_ADMIN] = "admin"};

const char *srv_role_name(srv_role role)
{
    return role_names[role];
}

const srv_identity srv_identity_anyone = {.name = "", .role = SRV_ROLE_ADMIN, .prefix = ""};

bool srv_identity_covers(const srv_identity *who, const char *run_id)
{
    return strncmp(run_id, who->prefix, strlen(who->prefix)) == 0;
}

typedef struct entry {
    uint8_t digest[DIGEST];
    int line;
    srv_identity who;
} entry;

/* One file's tokens; never changed once read. */
typedef struct token_set {
    size_t n;
    entry *entries;
} token_set;

struct srv_tokens {
    char path[4096];
    pthread_rwlock_t lock;        /* readers identify; a reload swaps `set` */
    token_set *set;
};

static void set_free(token_set *s)
{
    if (!s)
        return;
    /* Digests are secrets too: not left in freed memory. */
    if (s->entries)
        memset(s->entries, 0, s->n * sizeof *s->entries);
    free(s->entries);
    free(s);
}

/* ---- the file ---- */

static int hex_value(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* The fields of one line ("name token-sha256 role run-prefix"), or an
 * error naming the field. The line is cut at '#' and split in place. */
static srv_code parse_line(char *line, const char *where, entry *e, srv_error *err)
{
    char *hash = strchr(line, '#');
    if (hash)
        *hash = '\0';
    char *field[4];
    int n = 0;
    for (char *save = NULL, *f = strtok_r(line, " \t\r", &save); f;
         f = strtok_r(NULL, " \t\r", &save), n++)
        if (n < 4)
            field[n] = f;
    if (n != 4)
        return srv_fail(err, SRV_INVALID_ARGUMENT,
                        "%s: expected 4 fields \"name token-sha256 role run-prefix\", got %d",
                        where, n);
    char q[SRV_QUOTE_MAX];
    if (!srv_id_valid(field[0]))
        return srv_fail(err, SRV_INVALID_ARGUMENT, "%s: name: must match " SRV_ID_PATTERN
                        ", got %s", where, srv_quote(q, field[0], strlen(field[0])));
    size_t hex_len = strlen(field[1]);
    bool hex_ok = hex_len == 2 * DIGEST;
    for (size_t i = 0; hex_ok && i < DIGEST; i++) {
        int hi = hex_value(field[1][2 * i]), lo = hex_value(field[1][2 * i + 1]);
        hex_ok = hi >= 0 && lo >= 0;
        e->digest[i] = (uint8_t)(hi << 4 | lo);
    }
    if (!hex_ok) /* the digest is not repeated: it is the file's secret */
        return srv_fail(err, SRV_INVALID_ARGUMENT,
                        "%s: token-sha256: must be 64 hex digits (sha256sum's output), got %zu "
                        "characters%s",
                        where, hex_len, hex_len == 2 * DIGEST ? " not all hex" : "");
    int role = -1;
    for (int r = SRV_ROLE_READ; r <= SRV_ROLE_ADMIN; r++)
        if (strcmp(field[2], role_names[r]) == 0)
            role = r;
    if (role < 0)
        return srv_fail(err, SRV_INVALID_ARGUMENT,
                        "%s: role: must be read, write or admin, got %s", where,
                        srv_quote(q, field[2], strlen(field[2])));
    bool every_run = strcmp(field[3], "*") == 0;
    if (!every_run && !srv_id_valid(field[3]))
        return srv_fail(err, SRV_INVALID_ARGUMENT,
                        "%s: run-prefix: must be * or the start of run ids (" SRV_ID_PATTERN
                        "), got %s", where, srv_quote(q, field[3], strlen(field[3])));
    snprintf(e->who.name, sizeof e->who.name, "%s", field[0]);
    e->who.role = (srv_role)role;
    snprintf(e->who.prefix, sizeof e->who.prefix, "%s", every_run ? "" : field[3]);
    return SRV_OK;
}

/* A name or a digest already in s: an error naming the earlier line. */
static srv_code check_unique(const token_set *s, const entry *e, const char *where,
                             srv_error *err)
{
    for (size_t i = 0; i < s->n; i++) {
        if (strcmp(s->entries[i].who.name, e->who.name) == 0)
            return srv_fail(err, SRV_INVALID_ARGUMENT, "%s: name %s is already used on line %d",
                            where, e->who.name, s->entries[i].line);
        if (memcmp(s->entries[i].digest, e->digest, DIGEST) == 0)
            return srv_fail(err, SRV_INVALID_ARGUMENT,
                            "%s: token-sha256 is the same as line %d's (%s): one token, one name",
                            where, s->entries[i].line, s->entries[i].who.name);
    }
    return SRV_OK;
}

/* The file may be readable by its owner alone: tokens grant access. */
static srv_code check_file(int fd, const char *path, srv_error *err)
{
    struct stat st;
    if (fstat(fd, &st) < 0)
        return srv_fail(err, SRV_INVALID_ARGUMENT, "%s: cannot stat: %s", path, strerror(errno));
    if (!S_ISREG(st.st_mode))
        return srv_fail(err, SRV_INVALID_ARGUMENT, "%s: not a regular file", path);
    if (st.st_mode & (S_IRGRP | S_IWGRP | S_IROTH | S_IWOTH))
        return srv_fail(err, SRV_INVALID_ARGUMENT,
                        "%s: readable or writable by group or others (mode %04o); the tokens "
                        "file must be the owner's alone: chmod 600 %s",
                        path, (unsigned)(st.st_mode & 07777), path);
    return SRV_OK;
}

static srv_code read_lines(FILE *f, const char *path, token_set *s, srv_error *err)
{
    char *line = NULL;
    size_t cap = 0, alloc = 0;
    ssize_t len;
    srv_code rc = SRV_OK;
    for (int no = 1; !rc && (len = getline(&line, &cap, f)) >= 0; no++) {
        char where[4200];
        snprintf(where, sizeof where, "%s:%d", path, no);
        if ((size_t)len > SRV_TOKENS_LINE_MAX) {
            rc = srv_fail(err, SRV_INVALID_ARGUMENT, "%s: longer than %d bytes", where,
                          SRV_TOKENS_LINE_MAX);
            break;
        }
        if ((size_t)len != strlen(line)) {
            rc = srv_fail(err, SRV_INVALID_ARGUMENT, "%s: holds a NUL byte", where);
            break;
        }
        line[strcspn(line, "\n")] = '\0';
        char first = line[strspn(line, " \t\r")];
        if (first == '\0' || first == '#')
            continue;
        entry e = {.line = no};
        if ((rc = parse_line(line, where, &e, err)) || (rc = check_unique(s, &e, where, err)))
            break;
        if (s->n == alloc) {
            size_t more = alloc ? 2 * alloc : 8;
            entry *grown = realloc(s->entries, more * sizeof *grown);
            if (!grown) {
                rc = srv_fail(err, SRV_RESOURCE_EXHAUSTED, "%s: out of memory", path);
                break;
            }
            s->entries = grown;
            alloc = more;
        }
        s->entries[s->n++] = e;
    }
    if (!rc && ferror(f))
        rc = srv_fail(err, SRV_INVALID_ARGUMENT, "%s: cannot read: %s", path, strerror(errno));
    if (line)
        memset(line, 0, cap);
    free(line);
    return rc;
}

static token_set *load(const char *path, srv_error *err)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        srv_fail(err, SRV_INVALID_ARGUMENT, "%s: cannot open: %s", path, strerror(errno));
        return NULL;
    }
    FILE *f = NULL;
    if (!check_file(fd, path, err) && !(f = fdopen(fd, "r")))
        srv_fail(err, SRV_RESOURCE_EXHAUSTED, "%s: cannot read: %s", path, strerror(errno));
    token_set *s = f ? calloc(1, sizeof *s) : NULL;
    if (f && !s)
        srv_fail(err, SRV_RESOURCE_EXHAUSTED, "%s: out of memory", path);
    if (s && read_lines(f, path, s, err)) {
        set_free(s);
        s = NULL;
    }
    if (f)
        fclose(f);
    else
        close(fd);
    return s;
}

srv_tokens *srv_tokens_open(const char *path, srv_error *err)
{
    srv_tokens *t = calloc(1, sizeof *t);
    if (!t) {
        srv_fail(err, SRV_RESOURCE_EXHAUSTED, "out of memory");
        return NULL;
    }
    snprintf(t->path, sizeof t->path, "%s", path);
    if (!(t->set = load(path, err))) {
        free(t);
        return NULL;
    }
    pthread_rwlock_init(&t->lock, NULL);
    return t;
}

void srv_tokens_reload(srv_tokens *t)
{
    srv_error err;
    token_set *next = load(t->path, &err);
    if (!next) {
        srv_error_log("auth tokens: kept the %zu tokens in force; %s", srv_tokens_count(t),
                      err.msg);
        return;
    }
    pthread_rwlock_wrlock(&t->lock);
    token_set *old = t->set;
    t->set = next;
    pthread_rwlock_unlock(&t->lock);
    srv_info("auth tokens: read %s again: %zu tokens in force (were %zu)", t->path, next->n,
             old->n);
    set_free(old);
}

size_t srv_tokens_count(srv_tokens *t)
{
    pthread_rwlock_rdlock(&t->lock);
    size_t n = t->set->n;
    pthread_rwlock_unlock(&t->lock);
    return n;
}

void srv_tokens_close(srv_tokens *t)
{
    if (!t)
        return;
    set_free(t->set);
    pthread_rwlock_destroy(&t->lock);
    free(t);
}

/* ---- identifying a caller ---- */

#define HEADER "authorization header"
#define HEADER_FORM "\"authorization: Bearer TOKEN\""

/* The token of "Bearer TOKEN" (the scheme in any case, RFC 7235), or an
 * error that says what is wrong without repeating any of it. */
static srv_code bearer_token(const char *header, size_t len, const char **token,
                             size_t *token_len, srv_error *err)
{
    static const char scheme[] = "Bearer ";
    const size_t k = sizeof scheme - 1;
    if (!header)
        return srv_fail(err, SRV_UNAUTHENTICATED,
                        HEADER ": missing; cairnd requires a token: send " HEADER_FORM);
    if (len < k || strncasecmp(header, scheme, k) != 0)
        return srv_fail(err, SRV_UNAUTHENTICATED,
                        HEADER ": must be " HEADER_FORM " (the Bearer scheme)");
    *token = header + k;
    *token_len = len - k;
    if (*token_len == 0 || *token_len > SRV_TOKEN_MAX)
        return srv_fail(err, SRV_UNAUTHENTICATED,
                        HEADER ": the token must be 1..%d bytes, got %zu", SRV_TOKEN_MAX,
                        *token_len);
    for (size_t i = 0; i < *token_len; i++)
        if ((*token)[i] <= 0x20 || (*token)[i] >= 0x7f)
            return srv_fail(err, SRV_UNAUTHENTICATED,
                            HEADER ": the token must be printable ASCII without spaces "
                            "(a space or control byte at offset %zu)", i);
    return SRV_OK;
}

/* 1 when the digests are equal, else 0, in the same time either way. */
static unsigned digest_equal(const uint8_t *a, const uint8_t *b)
{
    unsigned diff = 0;
    for (size_t i = 0; i < DIGEST; i++)
        diff |= (unsigned)(a[i] ^ b[i]);
    return 1u & ((diff - 1u) >> 8); /* diff 0..255: only 0 borrows */
}

srv_code srv_tokens_identify(srv_tokens *t, const char *header, size_t len, srv_identity *who,
                             srv_error *err)
{
    const char *token = NULL;
    size_t token_len = 0;
    uint8_t digest[DIGEST];
    if (bearer_token(header, len, &token, &token_len, err))
        return err->code;
    if (srv_sha256_of(token, token_len, digest) < 0)
        return srv_fail(err, SRV_INTERNAL, HEADER ": cannot hash the token (OpenSSL failed)");
    /* Every entry is compared, whatever matched before: the time tells
     * nothing of which entry matched, or how close a guess came. Digests
     * are unique (read_lines), so at most one matches. */
    pthread_rwlock_rdlock(&t->lock);
    const token_set *s = t->set;
    size_t found = 0;
    unsigned any = 0;
    for (size_t i = 0; i < s->n; i++) {
        unsigned eq = digest_equal(digest, s->entries[i].digest);
        size_t mask = (size_t)0 - eq;
        found = (found & ~mask) | (i & mask);
        any |= eq;
    }
    if (any)
        *who = s->entries[found].who;
    pthread_rwlock_unlock(&t->lock);
    memset(digest, 0, sizeof digest);
    if (!any)
        return srv_fail(err, SRV_UNAUTHENTICATED,
                        HEADER ": the token is not one of cairnd's (--auth-tokens)");
    return SRV_OK;
}
