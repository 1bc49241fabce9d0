/* Checkpoints: uploads from memory, a descriptor or a path (a client
 * stream of one header, then 1 MiB chunks), downloads to the same (a
 * server stream), listing and cleanup. Every retry restarts the transfer
 * from its first byte under the same idempotency key. */
#include "internal.h"
#include "cairn/v1/coordinator.pb.h"

#include <errno.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <pb_decode.h>
#include <pb_encode.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define CHUNK_MAX (1024 * 1024) /* the server's limit per message */

/* ---- metadata ---- */

static void fill_checkpoint(cairn_checkpoint *out, cairn_v1_Checkpoint *msg, bool owns)
{
    memset(out, 0, sizeof *out);
    memcpy(out->checkpoint_id, msg->checkpoint_id, sizeof out->checkpoint_id);
    memcpy(out->run_id, msg->run_id, sizeof out->run_id);
    memcpy(out->created_at, msg->created_at, sizeof out->created_at);
    out->run_state = msg->run_state ? msg->run_state : "";
    out->completed_workers = (const char *const *)msg->completed_workers;
    out->completed_workers_count = msg->completed_workers_count;
    out->events_count = msg->events_count;
    out->snapshot_size = msg->snapshot_size;
    memcpy(out->snapshot_sha256, msg->snapshot_sha256, sizeof out->snapshot_sha256);
    out->replayed = msg->replayed;
    out->internal_ = owns ? msg : NULL;
}

void cairn_checkpoint_free(cairn_checkpoint *checkpoint)
{
    if (!checkpoint)
        return;
    cairn__release(cairn_v1_Checkpoint_fields, checkpoint->internal_);
    memset(checkpoint, 0, sizeof *checkpoint);
}

/* Decodes a Checkpoint response into *out (which then owns it). */
static cairn_status take_checkpoint(const cairn__reply *r, cairn_checkpoint *out, cairn_error *err)
{
    cairn_v1_Checkpoint *msg = calloc(1, sizeof *msg);
    if (!msg)
        return cairn__fail(err, CAIRN_NO_MEMORY, "out of memory");
    cairn_status rc = cairn__decode(cairn_v1_Checkpoint_fields, r->body, r->body_len, msg, err);
    if (rc) {
        free(msg);
        return rc;
    }
    fill_checkpoint(out, msg, true);
    return CAIRN_OK;
}

cairn_status cairn_get_latest_checkpoint(cairn_client *c, const char *run_id,
                                         cairn_checkpoint *out, cairn_error *err)
{
    memset(out, 0, sizeof *out);
    cairn__error_clear(err);
    cairn_v1_GetLatestCheckpointRequest m = cairn_v1_GetLatestCheckpointRequest_init_zero;
    cairn_status rc = cairn__copy_str(m.run_id, sizeof m.run_id, run_id, "run_id", err);
    if (rc)
        return rc;
    cairn_v1_Checkpoint *msg = calloc(1, sizeof *msg);
    if (!msg)
        return cairn__fail(err, CAIRN_NO_MEMORY, "out of memory");
    rc = cairn__unary(c, CAIRN__GET_LATEST_CHECKPOINT, cairn_v1_GetLatestCheckpointRequest_fields,
                      &m, NULL, cairn_v1_Checkpoint_fields, msg, err);
    if (rc) {
        free(msg);
        return rc;
    }
    fill_checkpoint(out, msg, true);
    return CAIRN_OK;
}

/* The pages a cairn_checkpoint_list's entries point into. */
typedef struct list_pages {
    size_t n;
    cairn_v1_ListCheckpointsResponse *pages[];
} list_pages;

cairn_status cairn_list_checkpoints(cairn_client *c, const char *run_id, cairn_checkpoint_list *out,
                                    cairn_error *err)
{
    memset(out, 0, sizeof *out);
    cairn__error_clear(err);
    cairn_v1_ListCheckpointsRequest m = cairn_v1_ListCheckpointsRequest_init_zero;
    cairn_status rc = cairn__copy_str(m.run_id, sizeof m.run_id, run_id, "run_id", err);
    if (rc)
        return rc;
    /* Page by page (each under the message limit) into one list. */
    do {
        list_pages *lp = out->internal_;
        size_t np = lp ? lp->n : 0;
        cairn_v1_ListCheckpointsResponse *msg = calloc(1, sizeof *msg);
        list_pages *grown = msg ? realloc(lp, sizeof *lp + (np + 1) * sizeof lp->pages[0]) : NULL;
        if (!grown) {
            free(msg);
            rc = cairn__fail(err, CAIRN_NO_MEMORY, "out of memory");
            break;
        }
        grown->n = np;
        out->internal_ = grown;
        rc = cairn__unary(c, CAIRN__LIST_CHECKPOINTS, cairn_v1_ListCheckpointsRequest_fields, &m,
                          NULL, cairn_v1_ListCheckpointsResponse_fields, msg, err);
        if (rc) {
            free(msg);
            break;
        }
        grown->pages[grown->n++] = msg;
        cairn_checkpoint *v = msg->checkpoints_count
                                  ? realloc(out->checkpoints,
                                            (out->count + msg->checkpoints_count) * sizeof *v)
                                  : out->checkpoints;
        if (msg->checkpoints_count && !v) {
            rc = cairn__fail(err, CAIRN_NO_MEMORY, "out of memory");
            break;
        }
        out->checkpoints = v;
        for (pb_size_t i = 0; i < msg->checkpoints_count; i++)
            fill_checkpoint(&out->checkpoints[out->count++], &msg->checkpoints[i], false);
        /* A server that answers a page with the token it was asked for
         * would be asked for that page forever. */
        if (*msg->next_page_token && strcmp(msg->next_page_token, m.page_token) == 0) {
            rc = cairn__fail(err, CAIRN_INTERNAL,
                             "ListCheckpoints: the server answered page_token \"%s\" with the "
                             "same next_page_token",
                             m.page_token);
            break;
        }
        memcpy(m.page_token, msg->next_page_token, sizeof m.page_token);
    } while (*m.page_token);
    if (rc)
        cairn_checkpoint_list_free(out);
    return rc;
}

void cairn_checkpoint_list_free(cairn_checkpoint_list *list)
{
    if (!list)
        return;
    free(list->checkpoints);
    list_pages *lp = list->internal_;
    for (size_t i = 0; lp && i < lp->n; i++)
        cairn__release(cairn_v1_ListCheckpointsResponse_fields, lp->pages[i]);
    free(lp);
    memset(list, 0, sizeof *list);
}

cairn_status cairn_cleanup_checkpoints(cairn_client *c, const cairn_cleanup_request *req,
                                       cairn_cleanup_result *out, cairn_error *err)
{
    memset(out, 0, sizeof *out);
    cairn__error_clear(err);
    cairn_v1_CleanupCheckpointsRequest m = cairn_v1_CleanupCheckpointsRequest_init_zero;
    cairn_status rc = CAIRN__CHECK_RESERVED(req, NULL, CAIRN__NO_INDEX, err);
    if (!rc)
        rc = cairn__pick_key(m.idempotency_key, req->idempotency_key, err);
    if (!rc)
        rc = cairn__copy_str(m.run_id, sizeof m.run_id, req->run_id, "run_id", err);
    if (rc)
        return rc;
    m.keep_last_n = req->keep_last_n;
    cairn_v1_CleanupCheckpointsResponse *msg = calloc(1, sizeof *msg);
    if (!msg)
        return cairn__fail(err, CAIRN_NO_MEMORY, "out of memory");
    rc = cairn__unary(c, CAIRN__CLEANUP_CHECKPOINTS, cairn_v1_CleanupCheckpointsRequest_fields, &m,
                      m.idempotency_key, cairn_v1_CleanupCheckpointsResponse_fields, msg, err);
    if (rc) {
        free(msg);
        return rc;
    }
    out->deleted = msg->deleted;
    out->deleted_ids = (const char *const *)msg->deleted_ids;
    out->deleted_ids_count = msg->deleted_ids_count;
    out->replayed = msg->replayed;
    out->internal_ = msg;
    return CAIRN_OK;
}

void cairn_cleanup_result_free(cairn_cleanup_result *result)
{
    if (!result)
        return;
    cairn__release(cairn_v1_CleanupCheckpointsResponse_fields, result->internal_);
    memset(result, 0, sizeof *result);
}

/* ---- uploads ---- */

/* Where snapshot bytes come from: memory, or a descriptor read with
 * pread from offset 0. */
typedef struct source {
    const uint8_t *buf;
    int fd;
    uint64_t size;
} source;

static cairn_status source_read(const source *s, uint64_t off, uint8_t *dst, size_t n,
                                cairn_status *local, char **details)
{
    if (s->buf) {
        memcpy(dst, s->buf + off, n);
        return CAIRN_OK;
    }
    while (n) {
        ssize_t k = pread(s->fd, dst, n, (off_t)off);
        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0) {
            *local = CAIRN_IO;
            *details = strdup(k < 0 ? strerror(errno) : "the snapshot file shrank while uploading");
            return CAIRN_IO;
        }
        dst += k;
        off += (uint64_t)k;
        n -= (size_t)k;
    }
    return CAIRN_OK;
}

static cairn_status source_hash(const source *s, char hex[65], cairn_error *err)
{
    if (s->buf) {
        cairn_content_hash(s->buf, (size_t)s->size, hex);
        return CAIRN_OK;
    }
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    uint8_t *buf = malloc(CHUNK_MAX);
    cairn_status rc = md && buf ? CAIRN_OK : cairn__fail(err, CAIRN_NO_MEMORY, "out of memory");
    if (!rc)
        EVP_DigestInit_ex(md, EVP_sha256(), NULL);
    for (uint64_t off = 0; !rc && off < s->size;) {
        size_t n = s->size - off < CHUNK_MAX ? (size_t)(s->size - off) : CHUNK_MAX;
        cairn_status local = CAIRN_OK;
        char *why = NULL;
        if (source_read(s, off, buf, n, &local, &why)) {
            rc = cairn__fail(err, local, "snapshot: cannot read: %s", why ? why : "");
            free(why);
            break;
        }
        EVP_DigestUpdate(md, buf, n);
        off += n;
    }
    if (!rc) {
        unsigned char d[32];
        unsigned int len = 0;
        EVP_DigestFinal_ex(md, d, &len);
        cairn__hex(hex, d, 32);
    }
    EVP_MD_CTX_free(md);
    free(buf);
    return rc;
}

typedef struct upload {
    const cairn_checkpoint_request *req;
    source src;
    uint8_t *header;              /* encoded once */
    size_t header_len;
    bool header_sent;
    uint64_t offset;
    uint8_t *chunk;               /* fd sources read into it */
} upload;

typedef struct bytes_arg {
    const uint8_t *p;
    size_t n;
} bytes_arg;

static bool encode_bytes(pb_ostream_t *s, const pb_field_t *f, void *const *arg)
{
    const bytes_arg *b = *arg;
    return pb_encode_tag_for_field(s, f) && pb_encode_string(s, b->p, b->n);
}

static int next_message(void *ctx, uint8_t **msg, size_t *len, cairn__reply *out)
{
    upload *u = ctx;
    if (!u->header_sent) {
        if (!(*msg = malloc(u->header_len ? u->header_len : 1))) {
            out->local = CAIRN_NO_MEMORY;
            return -1;
        }
        memcpy(*msg, u->header, u->header_len);
        *len = u->header_len;
        u->header_sent = true;
        return 1;
    }
    uint64_t size = u->src.size;
    if (u->offset >= size)
        return 0;
    size_t n = size - u->offset < CHUNK_MAX ? (size_t)(size - u->offset) : CHUNK_MAX;
    bytes_arg b = {u->src.buf ? u->src.buf + u->offset : u->chunk, n};
    if (!u->src.buf && source_read(&u->src, u->offset, u->chunk, n, &out->local, &out->details))
        return -1;
    cairn_v1_CreateCheckpointRequest m = cairn_v1_CreateCheckpointRequest_init_zero;
    m.which_part = cairn_v1_CreateCheckpointRequest_chunk_tag;
    m.part.chunk.funcs.encode = encode_bytes;
    m.part.chunk.arg = &b;
    if (cairn__encode(cairn_v1_CreateCheckpointRequest_fields, &m, msg, len, NULL)) {
        out->local = CAIRN_NO_MEMORY;
        return -1;
    }
    u->offset += n;
    if (u->req->progress)
        u->req->progress(u->req->progress_user, u->offset, size);
    return 1;
}

static void attempt_upload(void *ctx, cairn__transport *t, uint32_t timeout_ms,
                           bool wait_for_ready, cairn__reply *out)
{
    upload *u = ctx;
    u->header_sent = false;
    u->offset = 0;
    cairn__transport_upload(t, CAIRN__CREATE_CHECKPOINT, next_message, u, timeout_ms,
                            wait_for_ready, out);
}

static cairn_status upload_from(cairn_client *c, const cairn_checkpoint_request *req, source src,
                                cairn_checkpoint *out, cairn_error *err)
{
    cairn_v1_CreateCheckpointRequest m = cairn_v1_CreateCheckpointRequest_init_zero;
    m.which_part = cairn_v1_CreateCheckpointRequest_header_tag;
    cairn_v1_CheckpointHeader *h = &m.part.header;
    cairn_status rc = CAIRN__CHECK_RESERVED(req, NULL, CAIRN__NO_INDEX, err);
    if (rc)
        return rc;
    if (req->completed_workers_count > 65535)
        return cairn__fail(err, CAIRN_INVALID_ARGUMENT, "completed_workers: at most 65535 items");
    rc = cairn__pick_key(h->idempotency_key, req->idempotency_key, err);
    if (!rc)
        rc = cairn__copy_str(h->run_id, sizeof h->run_id, req->run_id, "run_id", err);
    if (!rc)
        rc = source_hash(&src, h->snapshot_sha256, err);
    if (rc)
        return rc;
    h->run_state = (char *)(req->run_state ? req->run_state : "");
    h->completed_workers = (char **)req->completed_workers;
    h->completed_workers_count = (pb_size_t)req->completed_workers_count;
    h->events_count = req->events_count;
    h->snapshot_size = src.size;

    upload u = {.req = req, .src = src};
    if ((rc = cairn__encode(cairn_v1_CreateCheckpointRequest_fields, &m, &u.header, &u.header_len,
                            err)))
        return rc;
    if (!src.buf && !(u.chunk = malloc(CHUNK_MAX))) {
        free(u.header);
        return cairn__fail(err, CAIRN_NO_MEMORY, "out of memory");
    }
    cairn__call call = {"CreateCheckpoint", attempt_upload, &u, h->idempotency_key, true, NULL};
    cairn__reply reply;
    rc = cairn__invoke(c, &call, &reply, err);
    free(u.header);
    free(u.chunk);
    if (rc)
        return rc;
    rc = take_checkpoint(&reply, out, err);
    cairn__reply_free(&reply);
    return rc;
}

cairn_status cairn_create_checkpoint(cairn_client *c, const cairn_checkpoint_request *req,
                                     const void *snapshot, size_t len, cairn_checkpoint *out,
                                     cairn_error *err)
{
    memset(out, 0, sizeof *out);
    cairn__error_clear(err);
    if (len && !snapshot)
        return cairn__fail(err, CAIRN_INVALID_ARGUMENT, "snapshot: NULL with a length of %zu", len);
    source src = {snapshot ? snapshot : (const void *)"", -1, len};
    return upload_from(c, req, src, out, err);
}

cairn_status cairn_create_checkpoint_fd(cairn_client *c, const cairn_checkpoint_request *req,
                                        int fd, cairn_checkpoint *out, cairn_error *err)
{
    memset(out, 0, sizeof *out);
    cairn__error_clear(err);
    struct stat st;
    if (fstat(fd, &st) < 0)
        return cairn__fail(err, CAIRN_IO, "snapshot: cannot stat descriptor %d: %s", fd,
                           strerror(errno));
    if (!S_ISREG(st.st_mode)) /* a pipe's size is unknown: it would upload nothing */
        return cairn__fail(err, CAIRN_IO,
                           "snapshot: descriptor %d is not a regular file, so its size is "
                           "unknown; read it into memory and use cairn_create_checkpoint",
                           fd);
    source src = {NULL, fd, (uint64_t)st.st_size};
    return upload_from(c, req, src, out, err);
}

cairn_status cairn_create_checkpoint_path(cairn_client *c, const cairn_checkpoint_request *req,
                                          const char *path, cairn_checkpoint *out,
                                          cairn_error *err)
{
    memset(out, 0, sizeof *out);
    cairn__error_clear(err);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return cairn__fail(err, CAIRN_IO, "snapshot: cannot open %s: %s", path, strerror(errno));
    cairn_status rc = cairn_create_checkpoint_fd(c, req, fd, out, err);
    close(fd);
    return rc;
}

/* ---- downloads ---- */

typedef struct download {
    const cairn_load_request *req;
    int fd;                       /* the sink, or -1 for memory */
    const char *path;             /* for messages */
    uint8_t *buf;                 /* memory sink */
    size_t len, cap;
    uint64_t received;
    EVP_MD_CTX *md;
    cairn_v1_Checkpoint *meta;    /* from the first message */
} download;

static int sink_write(download *d, const uint8_t *p, size_t n, cairn__reply *out)
{
    if (d->fd < 0) {
        if (d->len + n > d->cap) {
            size_t cap = d->cap ? d->cap : 65536;
            while (cap < d->len + n)
                cap *= 2;
            uint8_t *nb = realloc(d->buf, cap);
            if (!nb) {
                out->local = CAIRN_NO_MEMORY;
                out->details = strdup("out of memory receiving the snapshot");
                return -1;
            }
            d->buf = nb;
            d->cap = cap;
        }
        memcpy(d->buf + d->len, p, n);
        d->len += n;
        return 0;
    }
    cairn_error e;
    if (cairn__write_all(d->fd, p, n, d->path, &e)) {
        out->local = CAIRN_IO;
        out->details = strdup(e.message);
        return -1;
    }
    return 0;
}

typedef struct data_arg {
    download *d;
    cairn__reply *out;
} data_arg;

static bool decode_data(pb_istream_t *s, const pb_field_t *f, void **arg)
{
    (void)f;
    data_arg *a = *arg;
    uint8_t buf[65536];
    while (s->bytes_left) {
        size_t n = s->bytes_left < sizeof buf ? s->bytes_left : sizeof buf;
        if (!pb_read(s, buf, n) || sink_write(a->d, buf, n, a->out) < 0)
            return false;
        EVP_DigestUpdate(a->d->md, buf, n);
        a->d->received += n;
    }
    return true;
}

static int on_chunk(void *ctx, const uint8_t *msg, size_t len, cairn__reply *out)
{
    download *d = ctx;
    data_arg arg = {d, out};
    cairn_v1_CheckpointChunk m = cairn_v1_CheckpointChunk_init_zero;
    m.data.funcs.decode = decode_data;
    m.data.arg = &arg;
    pb_istream_t is = pb_istream_from_buffer(msg, len);
    if (!pb_decode(&is, cairn_v1_CheckpointChunk_fields, &m)) {
        pb_release(cairn_v1_CheckpointChunk_fields, &m);
        if (!out->local) {
            out->local = CAIRN_INTERNAL;
            out->details = strdup("a LoadCheckpoint message cannot be decoded");
        }
        return -1;
    }
    if (m.has_checkpoint && !d->meta) {
        if (!(d->meta = malloc(sizeof *d->meta))) {
            pb_release(cairn_v1_CheckpointChunk_fields, &m);
            out->local = CAIRN_NO_MEMORY;
            return -1;
        }
        *d->meta = m.checkpoint; /* moved: the chunk is not released */
    } else {
        pb_release(cairn_v1_CheckpointChunk_fields, &m);
    }
    if (d->req->progress && d->meta)
        d->req->progress(d->req->progress_user, d->received, d->meta->snapshot_size);
    return 0;
}

static void reset_download(download *d)
{
    cairn__release(cairn_v1_Checkpoint_fields, d->meta);
    d->meta = NULL;
    d->len = 0;
    d->received = 0;
    EVP_DigestInit_ex(d->md, EVP_sha256(), NULL);
}

typedef struct load_attempt {
    download *d;
    const uint8_t *req;
    size_t len;
} load_attempt;

static void attempt_download(void *ctx, cairn__transport *t, uint32_t timeout_ms,
                             bool wait_for_ready, cairn__reply *out)
{
    load_attempt *la = ctx;
    download *d = la->d;
    reset_download(d);
    if (d->fd >= 0 && (ftruncate(d->fd, 0) < 0 || lseek(d->fd, 0, SEEK_SET) < 0)) {
        memset(out, 0, sizeof *out);
        out->local = CAIRN_IO;
        out->details = strdup("the destination must be a regular file (it is truncated on a retry)");
        return;
    }
    cairn__transport_download(t, CAIRN__LOAD_CHECKPOINT, la->req, la->len, on_chunk, d, timeout_ms,
                              wait_for_ready, NULL, out);
}

/* Runs the download into d's sink and checks what arrived. */
static cairn_status load_into(cairn_client *c, const cairn_load_request *req, download *d,
                              cairn_checkpoint *meta, cairn_error *err)
{
    cairn_v1_LoadCheckpointRequest m = cairn_v1_LoadCheckpointRequest_init_zero;
    cairn_status rc = CAIRN__CHECK_RESERVED(req, NULL, CAIRN__NO_INDEX, err);
    if (!rc)
        rc = cairn__copy_str(m.run_id, sizeof m.run_id, req->run_id, "run_id", err);
    if (!rc)
        rc = cairn__copy_str(m.checkpoint_id, sizeof m.checkpoint_id, req->checkpoint_id,
                             "checkpoint_id", err);
    uint8_t *enc = NULL;
    size_t enc_len = 0;
    if (!rc)
        rc = cairn__encode(cairn_v1_LoadCheckpointRequest_fields, &m, &enc, &enc_len, err);
    if (rc)
        return rc;
    if (!(d->md = EVP_MD_CTX_new())) {
        free(enc);
        return cairn__fail(err, CAIRN_NO_MEMORY, "out of memory");
    }
    load_attempt la = {d, enc, enc_len};
    cairn__call call = {"LoadCheckpoint", attempt_download, &la, NULL, true, NULL};
    cairn__reply reply;
    rc = cairn__invoke(c, &call, &reply, err);
    free(enc);
    if (!rc) {
        cairn__reply_free(&reply);
        unsigned char digest[32];
        unsigned int n = 0;
        EVP_DigestFinal_ex(d->md, digest, &n);
        char hex[65];
        cairn__hex(hex, digest, 32);
        if (!d->meta)
            rc = cairn__fail(err, CAIRN_INTERNAL, "LoadCheckpoint: the stream carried no metadata");
        else if (d->received != d->meta->snapshot_size || strcmp(hex, d->meta->snapshot_sha256) != 0)
            rc = cairn__fail(err, CAIRN_DATA_LOSS,
                             "snapshot: %llu bytes hashing to %s arrived, the checkpoint says "
                             "%llu bytes hashing to %s",
                             (unsigned long long)d->received, hex,
                             (unsigned long long)d->meta->snapshot_size,
                             d->meta->snapshot_sha256);
    }
    EVP_MD_CTX_free(d->md);
    if (!rc) {
        fill_checkpoint(meta, d->meta, true);
        d->meta = NULL;
    } else {
        cairn__release(cairn_v1_Checkpoint_fields, d->meta);
        d->meta = NULL;
    }
    return rc;
}

cairn_status cairn_load_checkpoint(cairn_client *c, const cairn_load_request *req,
                                   cairn_checkpoint *meta, void **data, size_t *len,
                                   cairn_error *err)
{
    memset(meta, 0, sizeof *meta);
    *data = NULL;
    *len = 0;
    cairn__error_clear(err);
    download d = {.req = req, .fd = -1};
    cairn_status rc = load_into(c, req, &d, meta, err);
    if (rc) {
        free(d.buf);
        return rc;
    }
    *data = d.buf ? d.buf : malloc(1); /* an empty snapshot is still a buffer */
    *len = d.len;
    if (!*data) {
        cairn_checkpoint_free(meta);
        return cairn__fail(err, CAIRN_NO_MEMORY, "out of memory");
    }
    return CAIRN_OK;
}

cairn_status cairn_load_checkpoint_fd(cairn_client *c, const cairn_load_request *req, int fd,
                                      cairn_checkpoint *meta, cairn_error *err)
{
    memset(meta, 0, sizeof *meta);
    cairn__error_clear(err);
    download d = {.req = req, .fd = fd, .path = "the destination descriptor"};
    return load_into(c, req, &d, meta, err);
}

cairn_status cairn_load_checkpoint_path(cairn_client *c, const cairn_load_request *req,
                                        const char *path, cairn_checkpoint *meta,
                                        cairn_error *err)
{
    memset(meta, 0, sizeof *meta);
    cairn__error_clear(err);
    char *tmp;
    int fd;
    cairn_status rc = cairn__atomic_open(path, &tmp, &fd, err);
    if (rc)
        return rc;
    download d = {.req = req, .fd = fd, .path = tmp};
    rc = load_into(c, req, &d, meta, err);
    if (rc) {
        cairn__atomic_abort(tmp, fd);
        return rc;
    }
    if ((rc = cairn__atomic_commit(path, tmp, fd, err)))
        cairn_checkpoint_free(meta);
    return rc;
}

void cairn_buffer_free(void *data)
{
    free(data);
}
