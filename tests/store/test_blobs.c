/* Contract: snapshot bytes, from stage to link to read to unlink. */
#include "contract.h"

#include <stdlib.h>
#include <string.h>

/* len bytes that are not all alike, with NUL and 0xff among them. */
static uint8_t *pattern(fx *f, size_t len, uint32_t seed)
{
    uint8_t *p = srv_arena_alloc(f->a, len ? len : 1);
    uint32_t x = seed * 2654435761u + 1;
    for (size_t i = 0; i < len; i++) {
        x = x * 1103515245u + 12345u;
        p[i] = (uint8_t)(x >> 16);
    }
    if (len >= 2) {
        p[0] = 0;
        p[len - 1] = 0xff;
    }
    return p;
}

static void expect_content(fx *f, const char *sha, const uint8_t *data, size_t len)
{
    static const size_t chunks[] = {1 << 16, 1000, 7};
    for (size_t i = 0; i < sizeof chunks / sizeof chunks[0]; i++) {
        if (chunks[i] == 7 && len > 100000)
            continue; /* byte-sized reads of a big file only slow the test */
        srv_error err;
        uint8_t *got = NULL;
        size_t n = 0;
        ok(read_blob(f, sha, chunks[i], &got, &n, &err), &err);
        assert_int_equal(n, len);
        assert_memory_equal(got, data, len);
    }
}

static void expect_gone(fx *f, const char *sha)
{
    srv_error err;
    srv_blob_reader *r = NULL;
    fails_with(srv_store_blob_open(f->st, sha, &r, &err), &err, SRV_NOT_FOUND);
    assert_null(r);
}

static void unlink_in_txn(fx *f, const char *sha)
{
    srv_error err;
    srv_txn *t = wbegin(f);
    ok(srv_store_blob_unlink(t, sha, &err), &err);
    wcommit(t);
}

void a_linked_stage_reads_back_its_bytes(void **state)
{
    fx *f = *state;
    static const size_t sizes[] = {300001, 1, 0};
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        const uint8_t *data = pattern(f, sizes[i], (uint32_t)i);
        char sha[65];
        srv_txn *t = wbegin(f);
        srv_blob_stage *b = link_bytes(f, t, data, sizes[i], sha);
        wcommit(t);
        srv_store_stage_free(b);
        expect_content(f, sha, data, sizes[i]);
    }
}

void identical_content_linked_twice_stays_after_one_unlink_and_goes_after_two(void **state)
{
    fx *f = *state;
    const uint8_t *data = pattern(f, 5000, 1);
    char sha[65], sha2[65];
    for (int i = 0; i < 2; i++) {
        srv_txn *t = wbegin(f);
        srv_blob_stage *b = link_bytes(f, t, data, 5000, i ? sha2 : sha);
        wcommit(t);
        srv_store_stage_free(b);
    }
    assert_string_equal(sha, sha2);

    unlink_in_txn(f, sha);
    expect_content(f, sha, data, 5000);

    srv_error err;
    srv_txn *t = wbegin(f);
    ok(srv_store_blob_unlink(t, sha, &err), &err);
    /* removed only after the transaction commits: it could still roll back */
    expect_content(f, sha, data, 5000);
    wcommit(t);
    expect_gone(f, sha);
}

void an_unlink_rolled_back_keeps_the_content(void **state)
{
    fx *f = *state;
    const uint8_t *data = pattern(f, 777, 2), *other = pattern(f, 10, 3);
    char sha[65], other_sha[65];
    srv_txn *t = wbegin(f);
    srv_blob_stage *b = link_bytes(f, t, data, 777, sha);
    wcommit(t);
    srv_store_stage_free(b);

    srv_error err;
    t = wbegin(f);
    ok(srv_store_blob_unlink(t, sha, &err), &err);
    srv_store_rollback(t);
    expect_content(f, sha, data, 777);

    /* nor does a later commit remove what the rolled back one dropped */
    t = wbegin(f);
    b = link_bytes(f, t, other, 10, other_sha);
    wcommit(t);
    srv_store_stage_free(b);
    expect_content(f, sha, data, 777);

    /* and one reference is still there to drop */
    unlink_in_txn(f, sha);
    expect_gone(f, sha);
    expect_content(f, other_sha, other, 10);
}

void a_stage_freed_without_link_leaves_nothing(void **state)
{
    fx *f = *state;
    const int before = count_stored(f);
    const uint8_t *data = pattern(f, 70000, 4);
    char sha[65];

    /* finished, never linked */
    srv_blob_stage *b = stage_bytes(f, data, 70000, sha);
    srv_store_stage_free(b);
    expect_gone(f, sha);
    assert_int_equal(count_stored(f), before);

    /* written, never finished */
    srv_error err;
    b = NULL;
    ok(srv_store_stage_begin(f->st, &b, &err), &err);
    ok(srv_store_stage_write(b, data, 70000, &err), &err);
    srv_store_stage_free(b);
    assert_int_equal(count_stored(f), before);

    /* linked in a transaction that failed and rolled back, then freed */
    srv_txn *t = wbegin(f);
    b = link_bytes(f, t, data, 70000, sha);
    srv_store_rollback(t);
    srv_store_stage_free(b);
    expect_gone(f, sha);
    assert_int_equal(count_stored(f), before);
}

void a_rolled_back_link_leaves_no_content_readable(void **state)
{
    fx *f = *state;
    const uint8_t *data = pattern(f, 4096, 5), *kept = pattern(f, 100, 6);
    char sha[65], kept_sha[65];

    srv_txn *t = wbegin(f);
    srv_blob_stage *b = link_bytes(f, t, data, 4096, sha);
    srv_store_rollback(t);
    srv_store_stage_free(b);
    expect_gone(f, sha);

    /* content stored before and linked again: a rollback keeps it */
    t = wbegin(f);
    b = link_bytes(f, t, kept, 100, kept_sha);
    wcommit(t);
    srv_store_stage_free(b);
    t = wbegin(f);
    b = link_bytes(f, t, kept, 100, kept_sha);
    srv_store_rollback(t);
    srv_store_stage_free(b);
    expect_content(f, kept_sha, kept, 100);
    unlink_in_txn(f, kept_sha); /* it had one reference, not two */
    expect_gone(f, kept_sha);
}

/* The ledger's path: the link belonged to a mutation that failed, the
 * batch commits without it. */
void a_link_rolled_back_to_its_savepoint_leaves_no_content_readable(void **state)
{
    fx *f = *state;
    const uint8_t *dropped = pattern(f, 2048, 7), *kept = pattern(f, 1024, 8);
    char dropped_sha[65], kept_sha[65];
    srv_error err;

    srv_txn *t = wbegin(f);
    ok(srv_store_savepoint(t, &err), &err);
    srv_blob_stage *b1 = link_bytes(f, t, dropped, 2048, dropped_sha);
    srv_store_rollback_to(t);
    ok(srv_store_savepoint(t, &err), &err);
    srv_blob_stage *b2 = link_bytes(f, t, kept, 1024, kept_sha);
    ok(srv_store_release(t, &err), &err);
    wcommit(t);
    srv_store_stage_free(b1);
    srv_store_stage_free(b2);

    expect_gone(f, dropped_sha);
    expect_content(f, kept_sha, kept, 1024);
}

/* Once the transaction that linked it ended, stage_free leaves nothing
 * of the upload: new content is stored once, and a second upload of
 * stored content keeps no copy of its own. */
void a_freed_stage_leaves_nothing_staged_whether_its_content_was_new_or_stored(void **state)
{
    fx *f = *state;
    const uint8_t *data = pattern(f, 300001, 9); /* more than one chunk of any backend's */
    char sha[65];
    srv_txn *t = wbegin(f);
    srv_blob_stage *b = link_bytes(f, t, data, 300001, sha);
    wcommit(t);
    srv_store_stage_free(b);
    const int once = count_stored(f);

    t = wbegin(f);
    b = link_bytes(f, t, data, 300001, sha);
    wcommit(t);
    srv_store_stage_free(b);
    assert_int_equal(count_stored(f), once);
    expect_content(f, sha, data, 300001);

    unlink_in_txn(f, sha);
    unlink_in_txn(f, sha);
    expect_gone(f, sha);
    const int empty = count_stored(f);

    /* A stage never linked, freed: nothing either. */
    b = stage_bytes(f, data, 300001, sha);
    srv_store_stage_free(b);
    assert_int_equal(count_stored(f), empty);
}

/* api.md: "uploading good bytes again repairs a copy that rotted": the
 * copy a link brings was just received and hashed, the stored one may
 * have gone bad since, so the new one is kept. */
void a_new_link_of_stored_content_replaces_a_damaged_copy(void **state)
{
    fx *f = *state;
    static const size_t sizes[] = {5000, 600000};
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        const size_t len = sizes[i];
        const uint8_t *data = pattern(f, len, 10 + (uint32_t)i);
        char sha[65];
        srv_txn *t = wbegin(f);
        srv_blob_stage *b = link_bytes(f, t, data, len, sha);
        wcommit(t);
        srv_store_stage_free(b);
        damage_content(f, sha, len - 1000, false);

        srv_error err;
        uint8_t *got;
        size_t n;
        ok(read_blob(f, sha, 1 << 16, &got, &n, &err), &err);
        assert_int_equal(n, len);
        assert_true(memcmp(got, data, len) != 0); /* damaged, and read as stored */

        t = wbegin(f);
        b = link_bytes(f, t, data, len, sha);
        wcommit(t);
        srv_store_stage_free(b);
        expect_content(f, sha, data, len);
        unlink_in_txn(f, sha); /* two references, one copy */
        expect_content(f, sha, data, len);
        unlink_in_txn(f, sha);
        expect_gone(f, sha);
    }
}

/* Content that lost its end under its reference reads as what is left:
 * the reader (core/snapshots.c) then finds fewer bytes than recorded,
 * and the checkpoint DATA_LOSS. NOT_FOUND would say the content is gone,
 * as if deleted, which it is not. */
void content_cut_short_reads_short_and_is_not_reported_gone(void **state)
{
    fx *f = *state;
    static const size_t sizes[] = {5000, 600000};
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        const size_t len = sizes[i], cut = len / 2;
        const uint8_t *data = pattern(f, len, 20 + (uint32_t)i);
        char sha[65];
        srv_txn *t = wbegin(f);
        srv_blob_stage *b = link_bytes(f, t, data, len, sha);
        wcommit(t);
        srv_store_stage_free(b);
        damage_content(f, sha, cut, true);
        srv_error err;
        uint8_t *got;
        size_t n;
        ok(read_blob(f, sha, 1000, &got, &n, &err), &err);
        assert_int_equal(n, cut);
        assert_memory_equal(got, data, cut);
    }
}
