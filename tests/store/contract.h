/* The store contract suite: every operation of store/store.h, as a
 * backend must answer it, through the public wrappers only (no backend
 * header, no core/). One executable runs against the backend named by
 * CAIRN_TEST_STORE (default "sqlite"); ctest registers it once per
 * backend (store_contract_<name>). Each test gets its own mkdtemp data
 * dir, removed afterwards, and with postgres its own database in a
 * private cluster the suite starts (tests/support/pg.h), or in the
 * server CAIRN_TEST_PG_DSN names (a key/value DSN of a superuser).
 *
 * Tests live in test_<area>.c and are registered in CONTRACT_TESTS
 * below, the one list main() runs. */
#ifndef CAIRN_TESTS_STORE_CONTRACT_H
#define CAIRN_TESTS_STORE_CONTRACT_H

#include "base/arena.h"
#include "base/error.h"
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

typedef struct fx {
    char dir[512];            /* the data dir */
    char db[64];              /* postgres: this test's database */
    char dsn[1400];           /* postgres: its DSN */
    const char *backend;      /* CAIRN_TEST_STORE */
    srv_store *st;            /* NULL until open_store */
    srv_arena *a;
} fx;

/* ---- fixture (contract.c) ---- */

/* Fails the test unless rc is SRV_OK, printing err's message. */
void ok(srv_code rc, const srv_error *err);
/* Fails the test unless rc is want; the message then says what came. */
void fails_with(srv_code rc, const srv_error *err, srv_code want);
void open_store(fx *f);
/* Another store on the same data (a second replica), or NULL after
 * skipping the test when the backend allows one process only. */
srv_store *open_replica(fx *f);
void close_store(fx *f);
/* Files (not directories) under the data dir, recursively. */
int count_files(const fx *f);
/* What holds snapshot bytes, staged or stored: files under the data dir
 * with SQLite, rows of stages, blob_chunks and blobs with postgres. */
int count_stored(const fx *f);
/* Damages stored content as a disk might (a test of the backend's own
 * files or rows): flips a bit of the byte at offset `at`, or with cut
 * makes the content end there. */
void damage_content(fx *f, const char *sha, size_t at, bool cut);

/* ---- transactions ---- */

srv_txn *wbegin(fx *f);
void wcommit(srv_txn *t);
srv_txn *rbegin(fx *f);

/* ---- runs and events ---- */

/* Inserts run_id with workers w0..w<n-1> and the labels env=prod,
 * app=etl, zone="" (given unsorted), in a transaction of its own. */
int64_t insert_run(fx *f, const char *run_id, size_t n_workers);
/* The run's head in a read snapshot; fails the test when it is missing. */
srv_run_head head_of(fx *f, const char *run_id);
/* The run's head inside t. */
srv_run_head head_in(fx *f, srv_txn *t, const char *run_id);
/* n events in the arena, by ct_make_events (tests/support/
 * store_support.h): payload i is len bytes of (tag + i), starting
 * with NUL and ending with 0xff when len >= 2; type alternates between
 * step.started and step.done, worker_id between "" and w1. */
Cairn__V1__Event **make_events(fx *f, size_t n, size_t len, uint8_t tag);
/* Inserts the events after the run's last in a transaction of its own. */
void append(fx *f, const char *run_id, Cairn__V1__Event **events, size_t n);
/* Events from from_seq in a read snapshot. */
Cairn__V1__Event **read_events(fx *f, const char *run_id, uint64_t from_seq,
                               uint32_t max_events, size_t max_bytes, size_t *n);

/* ---- snapshot bytes ---- */

/* A finished stage holding data, and its digest in sha (65 bytes). */
srv_blob_stage *stage_bytes(fx *f, const uint8_t *data, size_t len, char sha[65]);
/* Stages data, links it inside t; the stage is freed after t ends, so
 * the caller gets it back to free. */
srv_blob_stage *link_bytes(fx *f, srv_txn *t, const uint8_t *data, size_t len, char sha[65]);
/* The content stored as sha, read in chunks of `chunk` bytes, in the
 * arena; SRV_OK or blob_open's code. */
srv_code read_blob(fx *f, const char *sha, size_t chunk, uint8_t **out, size_t *len,
                   srv_error *err);

/* ---- dedup ---- */

srv_dedup_record record_of(const char *response);
/* dedup_get in a read snapshot of its own. */
bool dedup_found(fx *f, const srv_dedup_key *k, srv_dedup_record *out);

/* ---- the list: XX(name, fixture) with fixture OPEN (store opened) or
 * DIR (an empty data dir, nothing opened) ---- */
#define CONTRACT_TESTS(XX)                                                                   \
    /* test_runs.c */                                                                        \
    XX(run_insert_then_find_and_get_return_the_definition_with_labels_sorted, OPEN)          \
    XX(find_and_get_of_an_unknown_run_report_not_found_without_an_error, OPEN)               \
    XX(runs_list_pages_by_ref_in_creation_order, OPEN)                                       \
    XX(runs_list_with_a_prefix_keeps_only_runs_starting_with_it, OPEN)                       \
    XX(run_insert_of_an_existing_id_is_aborted_and_leaves_the_first_intact, OPEN)            \
    XX(events_insert_gives_dense_seqs_across_batches_and_moves_next_seq, OPEN)               \
    XX(events_read_returns_every_field_as_inserted_with_binary_and_empty_payloads, OPEN)     \
    XX(events_read_pages_by_max_events_until_an_empty_page, OPEN)                            \
    XX(events_read_from_past_int64_max_reads_nothing, OPEN)                                  \
    XX(events_read_byte_budget_gives_fewer_events_but_at_least_one, OPEN)                    \
    XX(events_insert_over_an_existing_seq_is_aborted, OPEN)                                  \
    XX(worker_get_tells_workers_of_the_run_from_everyone_else, OPEN)                         \
    XX(worker_complete_then_completions_are_in_seq_order_and_counted, OPEN)                  \
    /* test_leases_checkpoints.c */                                                          \
    XX(lease_get_of_a_never_leased_worker_is_not_found, OPEN)                                \
    XX(lease_put_then_get_round_trips_and_a_second_put_replaces_it, OPEN)                    \
    XX(usage_counts_leases_live_by_the_store_clock_and_the_bytes_stored, OPEN)               \
    XX(checkpoint_insert_makes_it_the_latest_in_the_runs_head, OPEN)                         \
    XX(checkpoint_get_by_id_and_latest_with_an_empty_id_round_trip_every_field, OPEN)        \
    XX(checkpoints_list_is_oldest_first_with_after_and_limit, OPEN)                          \
    XX(checkpoints_list_without_full_leaves_completed_empty, OPEN)                           \
    XX(checkpoint_delete_removes_that_checkpoint_only, OPEN)                                 \
    XX(checkpoint_insert_of_an_existing_id_is_aborted, OPEN)                                 \
    XX(pinned_is_true_only_while_a_pin_is_live, OPEN)                                        \
    XX(pin_remove_leaves_other_pins_of_the_same_checkpoint, OPEN)                            \
    /* test_blobs.c */                                                                       \
    XX(a_linked_stage_reads_back_its_bytes, OPEN)                                            \
    XX(identical_content_linked_twice_stays_after_one_unlink_and_goes_after_two, OPEN)       \
    XX(an_unlink_rolled_back_keeps_the_content, OPEN)                                        \
    XX(a_stage_freed_without_link_leaves_nothing, OPEN)                                      \
    XX(a_rolled_back_link_leaves_no_content_readable, OPEN)                                  \
    XX(a_link_rolled_back_to_its_savepoint_leaves_no_content_readable, OPEN)                 \
    XX(a_freed_stage_leaves_nothing_staged_whether_its_content_was_new_or_stored, OPEN)      \
    XX(a_new_link_of_stored_content_replaces_a_damaged_copy, OPEN)                           \
    XX(content_cut_short_reads_short_and_is_not_reported_gone, OPEN)                         \
    /* test_transactions.c */                                                                \
    XX(dedup_put_in_a_transaction_is_visible_after_commit, OPEN)                             \
    XX(dedup_records_are_scoped_by_run_method_and_key, OPEN)                                 \
    XX(dedup_record_with_empty_response_round_trips, OPEN)                                   \
    XX(dedup_put_of_an_existing_key_is_aborted, OPEN)                                        \
    XX(reads_see_committed_data_only, OPEN)                                                  \
    XX(a_read_snapshot_opened_before_a_commit_does_not_see_it, OPEN)                         \
    XX(rollback_to_savepoint_drops_event_and_dedup_record_of_that_mutation_only, OPEN)       \
    XX(a_head_read_again_in_a_transaction_shows_its_own_appends_and_completions, OPEN)        \
    XX(rollback_of_a_whole_transaction_leaves_nothing, OPEN)                                 \
    XX(close_rolls_back_a_write_transaction_left_open, OPEN)                                 \
    XX(data_survives_close_and_reopen, OPEN)                                                 \
    XX(a_write_operation_on_a_read_snapshot_fails_internal_and_writes_nothing, OPEN)         \
    /* test_lifecycle.c */                                                                   \
    XX(run_delete_leaves_no_row_of_the_run_and_other_runs_whole, OPEN)                       \
    XX(a_deleted_runs_last_snapshot_reference_takes_its_content, OPEN)                       \
    XX(a_run_delete_rolled_back_to_its_savepoint_leaves_the_run_whole, OPEN)                 \
    XX(runs_completed_before_lists_completed_runs_oldest_completion_first, OPEN)             \
    XX(dedup_put_for_a_gone_run_is_kept_by_its_id_until_expired, OPEN)                       \
    XX(dedup_expire_forgets_records_older_than_the_cutoff_at_most_limit_at_a_time, OPEN)    \
    /* test_wrappers.c */                                                                    \
    XX(get_stats_counts_calls_and_failures_per_op, OPEN)                                     \
    XX(inject_fault_fails_exactly_the_nth_call_with_its_code_then_disarms, OPEN)             \
    XX(an_injected_fault_on_a_write_never_reaches_the_backend, OPEN)                         \
    XX(inject_fault_with_code_ok_disarms, OPEN)                                              \
    XX(txn_active_holds_through_a_failed_operation_that_keeps_the_transaction, OPEN)        \
    XX(inject_hook_runs_before_the_nth_call_which_then_goes_on, OPEN)                       \
    XX(store_open_of_an_unknown_backend_is_invalid_argument_naming_store, DIR)               \
    XX(store_names_and_op_names_name_the_backend_and_each_op, DIR)                           \
    XX(destroying_null_is_a_no_op, DIR)                                                      \
    XX(a_second_open_of_the_same_data_dir_fails_in_use, OPEN)                                \
    /* test_prefetch.c */                                                                    \
    XX(a_batch_read_ahead_sees_old_records_its_own_and_none_rolled_back, OPEN)               \
    XX(a_batch_read_ahead_on_a_run_another_replica_writes_sees_its_committed_record, OPEN)   \
    /* test_replicas.c */                                                                    \
    XX(two_replicas_appending_to_one_run_at_once_give_dense_seqs, OPEN)                      \
    XX(two_replicas_racing_on_one_idempotency_key_one_applies_the_other_replays, OPEN)      \
    XX(store_now_is_close_to_this_machines_clock, OPEN)                                     \
    XX(a_replica_is_told_of_another_replicas_commits_and_not_of_rolled_back_ones, OPEN)

#define XX(name, fixture) void name(void **state);
CONTRACT_TESTS(XX)
#undef XX

#endif
