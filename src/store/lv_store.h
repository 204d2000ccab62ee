/* lv_store.h - where session state that must survive a socket lives: an interface with one
 * in-memory implementation now and a Redis one with the cluster work. Callers never assume the
 * state is local: they load and save records through these calls. */
#ifndef LV_STORE_H
#define LV_STORE_H

#include <stdbool.h>
#include <stdint.h>

#include "lv_settings.h"

#define LV_SESSION_ID_LEN 32      /* hex chars */
#define LV_SECRET_HASH_LEN 64     /* hex chars of SHA-256 */

/* The durable part of a session. The resume secret itself is never stored, only its hash. */
typedef struct {
    char id[LV_SESSION_ID_LEN + 1];
    char secret_hash[LV_SECRET_HASH_LEN + 1];
    char owner[64];               /* client address that created it (per-address caps) */
    lv_settings_t settings;
    bool started;
    uint64_t created_ms;          /* wall clock */
    uint64_t total_inferences;
    double avg_latency_ms;
} lv_session_rec_t;

typedef struct lv_store lv_store_t;

/* Every call completes before it returns in the memory store; a networked store may later make
 * these asynchronous, which is why callers keep records in their own memory. */
typedef struct {
    /** Insert a new record; LV_EEXIST if the id is taken. */
    int (*create)(lv_store_t *st, const lv_session_rec_t *rec);
    /** Copy the record with this id into *out; LV_ENOTFOUND. */
    int (*load)(lv_store_t *st, const char *id, lv_session_rec_t *out);
    /** Replace an existing record; LV_ENOTFOUND. */
    int (*save)(lv_store_t *st, const lv_session_rec_t *rec);
    /** Delete; LV_ENOTFOUND. */
    int (*remove)(lv_store_t *st, const char *id);
    /** Number of records. */
    size_t (*count)(lv_store_t *st);
    void (*destroy)(lv_store_t *st);
} lv_store_ops_t;

struct lv_store {
    const lv_store_ops_t *ops;
};

/** The embedded default: records in a hash table in this process, capped at max_records. */
int lv_store_mem_create(size_t max_records, lv_store_t **out);

/** Hash a resume secret for storage/comparison (SHA-256, lowercase hex, out >= 65 bytes). */
void lv_store_hash_secret(const char *secret, char out[LV_SECRET_HASH_LEN + 1]);

#endif
