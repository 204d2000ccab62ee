/* lv_db_engine.h - private to lv_db*.c: the struct behind lv_db_t, the two engines' entry points,
 * the rows builder they share and the embedded migrations. Nothing outside src/store/lv_db*.c and
 * the tests includes it. */
#ifndef LV_DB_ENGINE_H
#define LV_DB_ENGINE_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "lv_db.h"

#define LV_DB_ERR_MAX 512
#define LV_DB_SQL_MAX (1u << 20)           /* one statement or migration script */
#define LV_DB_ROWS_MAX_BYTES (256u << 20)  /* all cells of one result */

typedef struct {
    int (*exec)(lv_db_t *db, const char *sql, size_t n, const char *const *params, lv_db_rows_t *rows);
    /* Several statements, no parameters, no rows (a migration file). */
    int (*script)(lv_db_t *db, const char *sql);
    const char *begin_sql; /* SQLite takes the write lock at BEGIN: see lv_db_sqlite.c */
    void (*close)(lv_db_t *db);
} lv_db_engine_t;

typedef struct {
    lv_db_work_fn work;
    lv_db_done_fn done;
    void *ud;
    int rc;
    uint64_t submit_ms;
} lv_db_job_t;

struct lv_db {
    lv_db_kind_t kind;
    const lv_db_engine_t *eng;
    void *conn; /* the engine's: PGconn *, or lv_db_sqlite.c's connection and statement cache */
    bool in_tx; /* the PostgreSQL engine does not reconnect inside a transaction */
    char url_clean[LV_DB_URL_MAX];
    char err[LV_DB_ERR_MAX];

    /* The thread and its queue: a ring of LV_DB_MAX_QUEUED jobs. head (next done to call) and tail
     * (next free slot) move on the loop thread; run (next job to run) on the database thread;
     * head <= run <= tail, all under mu. */
    uv_loop_t *loop;
    uv_async_t async;
    pthread_t thread;
    bool thread_started;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool stop, closing;
    uint64_t head, run, tail;
    lv_db_job_t *ring;
};


/** Engine openers: fill db->conn and db->eng; a sentence in err on failure. */
int lv_db_sqlite_open(lv_db_t *db, const char *path, char *err, size_t err_size);
int lv_db_pg_open(lv_db_t *db, const char *url, char *err, size_t err_size);

/* The SQLite engine's prepared-statement cache, for tests: prepare calls (failed ones too), hits,
 * statements held now and at most. All zero for PostgreSQL. Read it on the thread that runs the
 * statements (or with no loop, where lv_db_open ran). */
typedef struct {
    uint64_t prepares, hits;
    size_t cached, capacity;
} lv_db_stmt_stats_t;
void lv_db_sqlite_stmt_stats(const lv_db_t *db, lv_db_stmt_stats_t *out);

/* Building a result row by row (cells copied into one arena). begin zeroes rows; on any error the
 * caller calls lv_db_rows_free. */
typedef struct {
    lv_db_rows_t *rows;
    size_t ncells, cells_cap, arena_len, arena_cap;
} lv_db_rows_build_t;
int lv_db_rows_begin(lv_db_rows_build_t *b, lv_db_rows_t *rows, size_t cols);
/** One cell (NULL = SQL NULL) of the current row; after cols cells the row is complete. */
int lv_db_rows_cell(lv_db_rows_build_t *b, const char *s, size_t len);
int lv_db_rows_end(lv_db_rows_build_t *b);

/* The embedded db/migrations/NNN_name.sql files, by version (generated: $(BUILD)/gen/migrations.c). */
typedef struct {
    int version;
    const char *name;
    const char *sql;
} lv_db_migration_t;
extern const lv_db_migration_t lv_db_migrations[];
extern const size_t lv_db_migrations_count;

#endif
