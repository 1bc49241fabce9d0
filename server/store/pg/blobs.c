/* PostgreSQL backend: snapshot bytes as rows of blob_chunks, of
 * PG_CHUNK_BYTES each, content-addressed by SHA-256 and reference-counted
 * in blobs.
 *
 * An upload is staged under the owner 'stage:<id>' (a row of stages),
 * one chunk per INSERT committed on a pool connection as the stream
 * arrives, so no more than one chunk is ever in cairnd's memory. Linking
 * it inside the write transaction adds a reference and renames the staged
 * chunks' owner to the sha256 (an UPDATE of the key: the bytes themselves
 * are not copied): atomic with the checkpoint's row, as SQLite's rename
 * is. Content stored already has its chunks replaced by the new ones, as
 * SQLite's rename replaces the file: they were just received and hashed,
 * the stored ones may have gone bad since (docs/api.md: uploading good
 * bytes again repairs them). A rolled back link gives the chunks back to
 * the stage; stage_free removes whatever the stage still owns. Dropping the last reference deletes the content's rows in
 * the same transaction, so nothing needs re-checking after it. A reader
 * fetches one chunk at a time on a pool connection, holding none between
 * calls, and reads chunks until there is none, as a file is read to its
 * end: content that lost chunks reads short (core/snapshots.c then
 * reports DATA_LOSS), never NOT_FOUND unless its blobs row is gone.
 * Stages whose uploader died are swept when a store opens
 * (PG_STAGE_ABANDONED_S after their last chunk). */
#include "store/pg/pg_int.h"

#include "base/log.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct pg_stage {
    srv_blob_stage base;
    int64_t id;
    int64_t next_chunk;
    size_t fill;              /* bytes in buf */
    bool failed;
    char sha256[65];
    uint8_t *buf;             /* PG_CHUNK_BYTES */
} pg_stage;

typedef struct pg_reader {
    srv_blob_reader base;
    char sha256[65];
    int64_t next_chunk;
    size_t pos, fill;
    bool end;                 /* no chunk past the last one read */
    uint8_t *buf;             /* the current chunk */
} pg_reader;

srv_code pg_blobs_sweep(pg_store *s, srv_error *err)
{
    pg_conn *c = pg_take(s, err);
    if (!c)
        return err->code;
    char sql[256];
    snprintf(sql, sizeof sql,
             "WITH old AS (DELETE FROM stages WHERE touched_at < now() - interval '%d seconds' "
             "RETURNING id) DELETE FROM blob_chunks WHERE owner IN "
             "(SELECT 'stage:' || id::text FROM old)",
             PG_STAGE_ABANDONED_S);
    srv_code rc = pg_exec(c, sql, "removing abandoned uploads", err);
    pg_give(s, c);
    return rc;
}

/* ---- staging ---- */

srv_code pg_stage_begin(srv_store *st, srv_blob_stage **out, srv_error *err)
{
    pg_store *s = pg_from(st);
    pg_stage *b = calloc(1, sizeof *b);
    if (b)
        b->buf = malloc(PG_CHUNK_BYTES);
    if (!b || !b->buf) {
        if (b)
            free(b);
        return srv_fail(err, SRV_RESOURCE_EXHAUSTED, "out of memory");
    }
    b->base.store = st;
    pg_conn *c = pg_take(s, err);
    PGresult *r = c ? pg_run(c, PS_STAGE_NEW, NULL, "staging a snapshot", err) : NULL;
    if (r) {
        b->id = pg_col_i64(r, 0, 0);
        PQclear(r);
    }
    if (c)
        pg_give(s, c);
    if (!r) {
        free(b->buf);
        free(b);
        return err->code;
    }
    *out = &b->base;
    return SRV_OK;
}

/* Stores the buffered chunk (committed at once: a stage is not part of
 * any transaction until it is linked). */
static srv_code flush_chunk(pg_stage *b, srv_error *err)
{
    if (b->fill == 0)
        return SRV_OK;
    pg_store *s = pg_from(b->base.store);
    pg_conn *c = pg_take(s, err);
    if (!c)
        return err->code;
    pg_params p = {0};
    pg_i64(&p, b->id);
    pg_i64(&p, b->next_chunk);
    pg_bytes(&p, b->buf, b->fill);
    srv_code rc = pg_do(c, PS_STAGE_CHUNK, &p, "staging a snapshot", NULL, err);
    pg_give(s, c);
    if (!rc) {
        b->next_chunk++;
        b->fill = 0;
    }
    return rc;
}

srv_code pg_stage_write(srv_blob_stage *stage, const uint8_t *data, size_t len, srv_error *err)
{
    pg_stage *b = (pg_stage *)stage;
    if (b->failed)
        return srv_fail(err, SRV_UNAVAILABLE, "store: staging this snapshot failed earlier");
    while (len) {
        size_t room = PG_CHUNK_BYTES - b->fill, k = len < room ? len : room;
        memcpy(b->buf + b->fill, data, k);
        b->fill += k;
        data += k;
        len -= k;
        if (b->fill == PG_CHUNK_BYTES && flush_chunk(b, err)) {
            b->failed = true;
            return err->code;
        }
    }
    return SRV_OK;
}

srv_code pg_stage_finish(srv_blob_stage *stage, const char *sha256, srv_error *err)
{
    pg_stage *b = (pg_stage *)stage;
    if (b->failed)
        return srv_fail(err, SRV_UNAVAILABLE, "store: staging this snapshot failed earlier");
    if (flush_chunk(b, err)) {
        b->failed = true;
        return err->code;
    }
    snprintf(b->sha256, sizeof b->sha256, "%s", sha256);
    free(b->buf);
    b->buf = NULL;
    return SRV_OK;
}

void pg_stage_free(srv_blob_stage *stage)
{
    pg_stage *b = (pg_stage *)stage;
    if (!b)
        return;
    pg_store *s = pg_from(b->base.store);
    srv_error err;
    pg_conn *c = pg_take(s, &err);
    srv_code rc = c ? SRV_OK : err.code;
    if (c) {
        pg_params p = {0};
        pg_i64(&p, b->id);
        rc = pg_do(c, PS_STAGE_DROP, &p, "discarding a staged snapshot", NULL, &err);
        pg_give(s, c);
    }
    /* Not dropped (the database is away): the sweep takes it later. */
    if (rc)
        srv_warn("%s; the next start's sweep removes it", err.msg);
    free(b->buf);
    free(b);
}

/* ---- references (the writer, inside the transaction) ---- */

srv_code pg_blob_link(srv_txn *t, srv_blob_stage *stage, uint64_t size, srv_error *err)
{
    pg_stage *b = (pg_stage *)stage;
    pg_conn *w = pg_conn_of(t);
    pg_params p = {0};
    pg_text(&p, b->sha256);
    pg_i64(&p, (int64_t)size);
    PGresult *r = pg_run(w, PS_BLOB_LINK, &p, "storing a snapshot", err);
    if (!r)
        return err->code;
    int64_t refs = pg_col_i64(r, 0, 0);
    PQclear(r);
    /* Stored already: the copy in hand replaces it. Readers of the old
     * one read row by row and find the same bytes in the same chunks. */
    pg_params d = {0};
    pg_text(&d, b->sha256);
    if (refs != 1 && pg_do(w, PS_BLOB_DROP_CHUNKS, &d, "storing a snapshot", NULL, err))
        return err->code;
    pg_params m = {0};
    pg_text(&m, b->sha256);
    pg_i64(&m, b->id);
    return pg_do(w, PS_BLOB_MOVE_STAGE, &m, "storing a snapshot", NULL, err);
}

srv_code pg_blob_unlink(srv_txn *t, const char *sha256, srv_error *err)
{
    pg_conn *w = pg_conn_of(t);
    pg_params p = {0};
    pg_text(&p, sha256);
    PGresult *r = pg_run(w, PS_BLOB_UNREF, &p, "releasing a snapshot", err);
    if (!r)
        return err->code;
    bool last = PQntuples(r) > 0 && pg_col_i64(r, 0, 0) <= 0;
    PQclear(r);
    if (!last)
        return SRV_OK;
    return pg_do(w, PS_BLOB_DROP, &p, "releasing a snapshot", NULL, err);
}

/* ---- reading ---- */

srv_code pg_blob_open(srv_store *st, const char *sha256, srv_blob_reader **out, srv_error *err)
{
    pg_store *s = pg_from(st);
    pg_conn *c = pg_take(s, err);
    if (!c)
        return err->code;
    pg_params p = {0};
    pg_text(&p, sha256);
    PGresult *r = pg_run(c, PS_BLOB_SIZE, &p, "opening a snapshot", err);
    pg_give(s, c);
    if (!r)
        return err->code;
    bool found = PQntuples(r) > 0;
    PQclear(r);
    if (!found)
        return srv_fail(err, SRV_NOT_FOUND, "snapshot %.16s...: deleted", sha256);
    pg_reader *rd = calloc(1, sizeof *rd);
    if (!rd)
        return srv_fail(err, SRV_RESOURCE_EXHAUSTED, "out of memory");
    rd->base.store = st;
    snprintf(rd->sha256, sizeof rd->sha256, "%s", sha256);
    *out = &rd->base;
    return SRV_OK;
}

/* No chunk rd->next_chunk: the end of the content while its blobs row
 * stands (however many bytes that row says: the caller compares), else
 * the content was deleted while being read. */
static srv_code end_or_gone(pg_reader *rd, srv_error *err)
{
    pg_store *s = pg_from(rd->base.store);
    pg_conn *c = pg_take(s, err);
    if (!c)
        return err->code;
    pg_params p = {0};
    pg_text(&p, rd->sha256);
    PGresult *r = pg_run(c, PS_BLOB_SIZE, &p, "reading a snapshot", err);
    pg_give(s, c);
    if (!r)
        return err->code;
    bool stored = PQntuples(r) > 0;
    PQclear(r);
    if (!stored)
        return srv_fail(err, SRV_NOT_FOUND, "snapshot %.16s...: deleted while being read",
                        rd->sha256);
    rd->end = true;
    rd->pos = rd->fill = 0;
    return SRV_OK;
}

/* The next chunk into the reader's buffer (none at the end). */
static srv_code fetch_chunk(pg_reader *rd, srv_error *err)
{
    pg_store *s = pg_from(rd->base.store);
    if (!rd->buf && !(rd->buf = malloc(PG_CHUNK_BYTES)))
        return srv_fail(err, SRV_RESOURCE_EXHAUSTED, "out of memory");
    pg_conn *c = pg_take(s, err);
    if (!c)
        return err->code;
    pg_params p = {0};
    pg_text(&p, rd->sha256);
    pg_i64(&p, rd->next_chunk);
    PGresult *r = pg_run(c, PS_BLOB_CHUNK, &p, "reading a snapshot", err);
    pg_give(s, c);
    if (!r)
        return err->code;
    srv_code rc = SRV_OK;
    if (PQntuples(r) == 0) {
        PQclear(r);
        return end_or_gone(rd, err);
    }
    if (PQgetlength(r, 0, 0) <= 0 || PQgetlength(r, 0, 0) > PG_CHUNK_BYTES)
        rc = srv_fail(err, SRV_DATA_LOSS, "snapshot %.16s...: chunk %lld has %d bytes",
                      rd->sha256, (long long)rd->next_chunk, PQgetlength(r, 0, 0));
    else {
        rd->fill = (size_t)PQgetlength(r, 0, 0);
        memcpy(rd->buf, PQgetvalue(r, 0, 0), rd->fill);
        rd->pos = 0;
        rd->next_chunk++;
    }
    PQclear(r);
    return rc;
}

srv_code pg_blob_read(srv_blob_reader *reader, uint8_t *buf, size_t cap, size_t *n,
                      srv_error *err)
{
    pg_reader *rd = (pg_reader *)reader;
    size_t got = 0;
    while (got < cap && !rd->end) {
        if (rd->pos == rd->fill && fetch_chunk(rd, err))
            return err->code;
        size_t k = rd->fill - rd->pos;
        if (k > cap - got)
            k = cap - got;
        memcpy(buf + got, rd->buf + rd->pos, k);
        rd->pos += k;
        got += k;
    }
    *n = got;
    return SRV_OK;
}

void pg_blob_close(srv_blob_reader *reader)
{
    pg_reader *rd = (pg_reader *)reader;
    if (!rd)
        return;
    free(rd->buf);
    free(rd);
}
