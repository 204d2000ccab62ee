/* lv_nvml.h - NVIDIA GPU readings through NVML, loaded with dlopen at run time (never linked). */
#ifndef LV_NVML_H
#define LV_NVML_H

#include <stddef.h>

/* Consecutive failed reads after which lv_nvml_read() stops calling NVML for good. */
#define LV_NVML_MAX_ERRORS 20

typedef struct lv_nvml lv_nvml_t;

/* One reading of one GPU. Each *_ok flag says whether the field beside it holds a value; a query
 * the GPU does not support (NVML_ERROR_NOT_SUPPORTED, e.g. memory on GB10 / DGX Spark) leaves its
 * flag 0 while the others keep theirs. */
typedef struct {
    unsigned gpu_count;               /* devices NVML sees (0 when the count query failed) */
    char name[96];                    /* "" when unknown */
    int util_ok;
    unsigned util_gpu_pct;            /* 0..100 */
    int mem_ok;
    unsigned long long mem_total_bytes;
    unsigned long long mem_used_bytes;
    int temp_ok;
    unsigned temp_c;
    int power_ok;
    unsigned power_mw;                /* milliwatts, as NVML reports it */
} lv_nvml_reading_t;

/** Resolves one NVML symbol name to its address, or NULL; ctx is passed through. */
typedef void *(*lv_nvml_resolve_fn)(void *ctx, const char *symbol);

/**
 * dlopen() lib_name (NULL: "libnvidia-ml.so.1") with RTLD_NOW|RTLD_LOCAL and resolve the NVML
 * entry points. Does not call nvmlInit (the first lv_nvml_read() does), so it is cheap and never
 * touches the GPU. On failure returns LV_EIO (library or a symbol missing) or LV_ENOMEM, sets *out
 * to NULL and writes a one-line reason into why (if non-NULL). On success the caller owns *out and
 * frees it with lv_nvml_close().
 */
int lv_nvml_open(const char *lib_name, lv_nvml_t **out, char *why, size_t why_len);

/** As lv_nvml_open(), but symbols come from resolve(ctx, name) and nothing is dlopen'ed (tests). */
int lv_nvml_open_with(lv_nvml_resolve_fn resolve, void *ctx, lv_nvml_t **out, char *why, size_t why_len);

/**
 * Read GPU `index` (the monitor uses 0). Initialises NVML on first use and again after a failed
 * read (WSL2 answers "Unknown Error" until re-initialised). Blocking: NVML calls can take
 * milliseconds, and the first nvmlInit much longer, so never call it on the loop thread.
 * Returns 0 when at least one field was read (r filled, unread fields flagged 0), LV_EIO when
 * nothing could be read (r zeroed; see lv_nvml_why()), LV_ECLOSED once LV_NVML_MAX_ERRORS reads
 * in a row failed: from then on NVML is shut down and never called again.
 * Not thread-safe: one caller at a time per handle.
 */
int lv_nvml_read(lv_nvml_t *n, unsigned index, lv_nvml_reading_t *r);

/** The last failure as one line ("" when none); valid until the next call on n. */
const char *lv_nvml_why(const lv_nvml_t *n);

/** Shut NVML down if it was initialised, dlclose the library, free n. NULL is a no-op. */
void lv_nvml_close(lv_nvml_t *n);

#endif
