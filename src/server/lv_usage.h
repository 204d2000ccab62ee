/* lv_usage.h - the usage journal (docs/internals/accounts.md "Usage"): one fixed-size record per
 * answer, appended with write() on the loop BEFORE the answer's vlm_response is queued to the page,
 * so an answer a client received is on disk even after a kill -9. A database job every
 * LV_USAGE_FLUSH_MS moves the unflushed tail into the usage table (idempotent per answer id) and
 * the journal is emptied once everything in it is there. At start the journal is scanned (a torn
 * last record cut off) and all of it is moved again before any later database job runs.
 * Also the per-tenant Prometheus counters (bounded label cardinality).
 *
 * Two halves: lv_usage_journal_* work on a file alone (no loop, no database: the unit test's
 * reach); lv_usage_* are the serving process's, loop thread only. */
#ifndef LV_USAGE_H
#define LV_USAGE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "lv_acct.h"
#include "lv_buf.h"

#define LV_USAGE_RECORD_BYTES 512u                   /* every record, so a torn one is found by size */
#define LV_USAGE_JOURNAL_CAP ((uint64_t)256 << 20)  /* ~500,000 answers waiting for the database */
#define LV_USAGE_FLUSH_MS 200
#define LV_USAGE_FLUSH_BATCH 2048                    /* records per database transaction */
#define LV_USAGE_PEND_MAX 64                         /* records of one loop turn written together */
#define LV_USAGE_TENANT_LABELS 100                   /* tenants named in /metrics; the rest "_other" */

/* ---------- the journal file (any thread; one writer) ---------- */

typedef struct lv_usage_journal lv_usage_journal_t;

/** Encode u into one record (fields are cut to their sizes; tabs and newlines in strings become
 * spaces). Always LV_USAGE_RECORD_BYTES. */
void lv_usage_encode(const lv_usage_t *u, char rec[LV_USAGE_RECORD_BYTES]);
/** Decode a record: 0, or LV_EPARSE when it is torn or corrupt (magic, checksum or fields). */
int lv_usage_decode(const char rec[LV_USAGE_RECORD_BYTES], lv_usage_t *out);

/** Open (create) the journal at path, capped at cap_bytes. The file is scanned: a torn tail (a
 * partial record, or bad records at the end) is cut off, so the next append starts on a record
 * boundary; *records gets the good records in it, *cut the bytes cut off (both may be NULL). */
int lv_usage_journal_open(const char *path, uint64_t cap_bytes, lv_usage_journal_t **out, size_t *records,
                          uint64_t *cut);
/** Append one record with one write(). LV_ELIMIT at the cap (nothing written), LV_EIO on a write
 * error (a short write is cut back off, so the file stays aligned). */
int lv_usage_journal_append(lv_usage_journal_t *j, const lv_usage_t *u);
/** Append n records already encoded (lv_usage_encode), recs[0..n * LV_USAGE_RECORD_BYTES), with
 * one write(). *written gets how many went in: as many as fit under the cap (then LV_ELIMIT), all
 * (0), or none (LV_EIO; a short write is cut back off). */
int lv_usage_journal_append_encoded(lv_usage_journal_t *j, const char *recs, size_t n, size_t *written);
/** Bytes in the file (a multiple of LV_USAGE_RECORD_BYTES). */
uint64_t lv_usage_journal_size(const lv_usage_journal_t *j);
/** Read the records in [from, to) (byte offsets on record boundaries) with pread: safe on another
 * thread while the owner appends past `to`. Corrupt records are skipped and counted in *bad.
 * *out (malloc'd, the caller frees) gets *n records. */
int lv_usage_journal_read(const lv_usage_journal_t *j, uint64_t from, uint64_t to, lv_usage_t **out, size_t *n,
                          size_t *bad);
/** Empty the file (everything in it is in the database). Only while no read is running. */
int lv_usage_journal_truncate(lv_usage_journal_t *j);
/** Close and free (safe on NULL). */
void lv_usage_journal_close(lv_usage_journal_t *j);

/* ---------- the serving process (loop thread) ---------- */

struct lv_app;

/** Open <config_dir>/usage.journal, queue the replay of what is in it (before any other database
 * job this process submits later) and start the flush timer; sets app->usage. The database
 * (app->db) may come later: the timer looks for it. 0 or an LV_E* code (logged). */
int lv_usage_start(struct lv_app *app);
/** Queue a last flush and stop the timer; the state is freed when the last job is done (call while
 * the loop still runs, before the database closes). Safe when not started. */
void lv_usage_stop(struct lv_app *app);
/** Journal one answer's record (the caller then delivers the answer): it is written at the end
 * of this loop turn, with every other record of the turn, in one write() (at once when
 * LV_USAGE_PEND_MAX records wait). Counts the tenant's answers and tokens for /metrics. 0, or
 * LV_ECLOSED when usage is not started. A record that cannot be written (the journal full or
 * unwritable) is logged loudly and counted in livevlm_usage_lost_total; the answer is still
 * delivered. */
int lv_usage_record(struct lv_app *app, const lv_usage_t *u);
/** Queue a database job that moves the unflushed tail now (quota seeding calls it first, so the
 * sums it reads include every answer journaled before). */
void lv_usage_flush(struct lv_app *app);
/** Count for /metrics: a frame sent to a model for tenant; a quota refusal. */
void lv_usage_count_frame(struct lv_app *app, const char *tenant);
void lv_usage_count_refusal(struct lv_app *app, const char *scope, const char *quota);
/** Append the per-tenant and usage series in Prometheus text form. */
int lv_usage_metrics(struct lv_app *app, lv_buf_t *out);

#endif
