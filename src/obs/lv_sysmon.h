/* lv_sysmon.h - periodic CPU / RAM / GPU sampling off the loop thread; the latest stats as ready JSON. */
#ifndef LV_SYSMON_H
#define LV_SYSMON_H

#include <stddef.h>
#include <uv.h>

/*
 * A uv_timer_t on the loop queues one sample on the libuv thread pool every period (never more
 * than one in flight; a tick that finds one still running is skipped). The pool thread reads
 * /proc/stat, /proc/meminfo, NVML (dlopen'ed on first use) and Jetson sysfs into a plain struct;
 * back on the loop thread the sample is appended to a 60-entry history and rendered to JSON once,
 * so handing it to many sessions costs no re-rendering.
 *
 * JSON object (the protocol's gpu_stats.stats; docs/protocol.md "System stats"):
 *   hostname, cpu_model, cpu_percent, ram_used_gb, ram_total_gb, ram_percent, platform, gpu_name,
 *   gpu_count, gpu_percent, vram_used_gb, vram_total_gb, vram_percent, temp_c, power_w,
 *   product_name, history {cpu_util, ram_used, gpu_util, vram_used} (up to 60 each, oldest first,
 *   null where a reading was missing). Any unknown value is null. Percent values have 1 decimal,
 *   sizes are GiB (1024^3 bytes, named "gb" as the protocol does) with 2 decimals.
 *
 * Environment, read once in lv_sysmon_start() (for tests and odd machines):
 *   LIVEVLM_PROC_ROOT   prefix for /proc files (default "")
 *   LIVEVLM_SYSFS_ROOT  prefix for /sys and /etc files (default "")
 *   LIVEVLM_NVML_LIB    NVML library name or path (default "libnvidia-ml.so.1")
 *
 * Threading: every function here runs on the loop thread only.
 */

typedef struct lv_sysmon lv_sysmon_t;

/**
 * Start sampling on loop every period_ms (250..60000, else LV_EINVAL). The first sample is taken
 * on the first loop iteration after this call; until it lands lv_sysmon_json() returns an object of
 * nulls with empty histories. On success *out is owned by the caller until lv_sysmon_stop().
 * Returns 0, LV_EINVAL, LV_ENOMEM, or LV_EIO (timer could not be started).
 */
int lv_sysmon_start(uv_loop_t *loop, int period_ms, lv_sysmon_t **out);

/**
 * The latest stats as compact JSON text (NUL-terminated; *len set when len is non-NULL). Never
 * NULL. The pointer stays valid until the next sample lands, which only happens inside a loop
 * callback: use it or copy it before returning to the loop. The CPU percentage of the very first
 * sample is null (it is a delta between two readings).
 */
const char *lv_sysmon_json(const lv_sysmon_t *m, size_t *len);

/**
 * Stop sampling. m must not be used afterwards. The timer is closed and m is freed from a loop
 * callback once any in-flight sample work has returned (a sample already on the pool finishes;
 * NVML is shut down then), so the loop must run afterwards (uv_run until it has nothing left).
 * NULL is a no-op.
 */
void lv_sysmon_stop(lv_sysmon_t *m);

/**
 * For unit tests and tools only, not for the server: take one sample synchronously on the
 * calling (loop) thread, exactly as the timer would, and land it. Blocks for the duration of a
 * sample (sub-millisecond without NVML; the first NVML read can take seconds). Returns 0, or
 * LV_EAGAIN while a timer sample is in flight.
 */
int lv_sysmon__sample_now(lv_sysmon_t *m);

#endif
