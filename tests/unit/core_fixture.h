/* What the test_core files share: a real SQLite store in a mkdtemp data
 * dir (removed afterwards), core/'s mutations applied as the ledger
 * applies them (the write transaction, a savepoint released on success
 * and rolled back to on error, the commit), and request builders. Times
 * are explicit now_us values, so expiry needs no waiting. */
#ifndef CAIRN_TESTS_UNIT_CORE_FIXTURE_H
#define CAIRN_TESTS_UNIT_CORE_FIXTURE_H

#include "base/arena.h"
#include "core/domain.h"
#include "store/store.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

/* 2026-01-28T10:15:30.123456Z */
#define NOW_US (1769595330ll * 1000000 + 123456)
#define NOW_TEXT "2026-01-28T10:15:30.123456Z"
#define SEC 1000000ll

typedef struct fx {
    char dir[512];
    srv_store *st;
    srv_arena *a;
    srv_txn *t;
    srv_apply ap;     /* the last mutation's, grew_* included */
} fx;

/* ---- fixture: setup opens the store ---- */

void ok(srv_code rc, const srv_error *err);
/* rc must be want and the message must contain text. */
void fails(srv_code rc, const srv_error *err, srv_code want, const char *text);
void open_store(fx *f);
void close_store(fx *f);
int setup(void **state);
int teardown(void **state);

/* ---- mutations ---- */

/* Opens a mutation at now_us: the write transaction and its savepoint. */
srv_apply *mut(fx *f, int64_t now_us);
/* Ends it: kept on success, undone to its savepoint on error; then the
 * commit. Returns the mutation's code. Use as
 * done(f, srv_xxx(mut(f, now), req, out, &err)). */
srv_code done(fx *f, srv_code rc);

/* ---- runs and events (run_id "run-1" unless given) ---- */

/* A normalized CreateRunRequest: workers w0..w<n-1>, labels app=etl,
 * env=prod. */
Cairn__V1__CreateRunRequest *run_req(fx *f, const char *run_id, size_t workers);
Cairn__V1__Run *create_run(fx *f, const char *run_id, size_t workers);
Cairn__V1__Run get_run(fx *f, const char *run_id);
/* n events; the payload of event i is `len` bytes of (tag + i), except
 * that it starts with NUL and ends with 0xff. */
Cairn__V1__AppendEventsRequest *events_req(fx *f, const char *run_id, size_t n, size_t len,
                                           uint8_t tag);
/* One event of worker_id, fenced with token. */
Cairn__V1__AppendEventsRequest *fenced_req(fx *f, const char *run_id, const char *worker_id,
                                           uint64_t token);
srv_code append_at(fx *f, int64_t now_us, Cairn__V1__AppendEventsRequest *req,
                   Cairn__V1__AppendEventsResponse *out, srv_error *err);
/* append_at NOW_US */
srv_code append_tx(fx *f, Cairn__V1__AppendEventsRequest *req,
                   Cairn__V1__AppendEventsResponse *out, srv_error *err);
Cairn__V1__ReadEventsResponse read_events(fx *f, const char *run_id, uint64_t from,
                                          uint32_t max, size_t max_bytes);

/* ---- completion and checkpoints of run-1 ---- */

srv_code complete(fx *f, int64_t now_us, const char *worker_id, uint64_t token,
                  Cairn__V1__CompleteWorkerResponse *out, srv_error *err);
/* CreateCheckpoint at now_us: events_count, a snapshot of 100 bytes of
 * `fill` (staged through the store), keep `retention`, run_state
 * "step-3-done". */
srv_code checkpoint(fx *f, int64_t now_us, uint64_t events_count, uint8_t fill, int retention,
                    Cairn__V1__Checkpoint *out, srv_error *err);

/* ---- the tests of test_core_leases.c ---- */

void acquire_twice_is_failed_precondition_while_the_lease_is_live(void **state);
void fencing_tokens_increase_across_acquisitions(void **state);
void renew_with_a_wrong_lease_id_fails(void **state);
void release_of_a_lapsed_lease_is_ok(void **state);
void a_fenced_append_with_a_stale_token_fails_fenced(void **state);
void complete_worker_of_a_non_worker_is_invalid_argument(void **state);
void complete_worker_twice_is_failed_precondition(void **state);
void complete_worker_appends_worker_completed_ends_the_lease_and_reports_growth(void **state);
void checkpoint_create_with_retention_2_keeps_only_the_newest_2(void **state);
void a_pinned_checkpoint_survives_cleanup_until_unpinned(void **state);
void cleanup_returns_deleted_ids_oldest_first(void **state);
void download_of_the_latest_survives_it_being_replaced_before_the_pin(void **state);
void list_checkpoints_pages_by_bytes_with_at_least_one_checkpoint(void **state);

/* ---- the tests of test_core_lifecycle.c ---- */

void delete_run_takes_its_log_and_snapshots_and_says_whether_it_existed(void **state);
void a_download_open_when_its_run_is_deleted_reads_to_the_end(void **state);
void a_download_cut_short_by_its_runs_deletion_is_not_found_not_data_loss(void **state);
void sweep_deletes_runs_completed_longer_ago_than_the_retention_only(void **state);
void sweep_deletes_at_most_a_batch_of_runs_at_a_time(void **state);

#endif
