/* Fixtures and helpers shared by the checkpoint integration tests
 * (test_checkpoints.c, test_checkpoint_transfer.c). */
#ifndef CAIRN_CHECKPOINT_SUPPORT_H
#define CAIRN_CHECKPOINT_SUPPORT_H

#include "cairn_test.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define MIB (1024u * 1024u)

/* The group's server, and one test's own server (for flags the group's
 * lacks): both are a ct_fixture. */
typedef ct_fixture fixture;
typedef ct_fixture own;

int setup(void **state);
int teardown(void **state);
int start_own(void **state, const char *const *args);
int setup_own(void **state);
int setup_own_max_snapshot_1000(void **state);
int setup_own_retention_2(void **state);
int teardown_own(void **state);
void create_run(cairn_client *c, const char *run_id);
uint64_t append_n(cairn_client *c, const char *run_id, size_t n);
void complete(cairn_client *c, const char *run_id, const char *worker);
void checkpoint(cairn_client *c, const char *run_id, const char *run_state, uint64_t events_count, const void *data, size_t len, cairn_checkpoint *out);
void checkpoint_id_of(cairn_client *c, const char *run_id, const char *text, char id[CAIRN_ID_MAX + 1]);
void *load(cairn_client *c, const char *run_id, const char *checkpoint_id, cairn_checkpoint *meta, size_t *len);
size_t list_count(cairn_client *c, const char *run_id);
/* cairn_cleanup_checkpoints with a request of these fields (key may be NULL). */
cairn_status cleanup(cairn_client *c, const char *key, const char *run_id, uint32_t keep_last_n, cairn_cleanup_result *out, cairn_error *err);
void fill_random(uint8_t *buf, size_t len, uint64_t seed);
void assert_digits(const char *s, size_t from, size_t to);
void assert_checkpoint_id_format(const char *id);
void assert_timestamp_format(const char *ts);
void assert_id_matches_time(const char *id, const char *ts);
/* The bytes stored for content sha (its file with SQLite, its chunks with
 * PostgreSQL), or -1 when the store holds no such content. */
long long blob_stored_size(const ct_server *s, const char *sha);
/* Damages stored content sha as a disk might: flips a bit of the byte at
 * offset `at`, or cuts the content there. */
void damage_blob(const ct_server *s, const char *sha, long long at, bool truncate_there);
/* Uploads staged and not yet stored or dropped (ct_count_staged). */
int staging_entries(const ct_server *s);
void write_file(const char *path, const void *data, size_t len);

#endif
