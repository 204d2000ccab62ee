/* gpucheck.c - print what livevlm's system monitor reads from NVML on this machine (a manual check
 * for GPU hosts; not part of the server).
 *
 * Build (from the repo root; the Makefile does not build it):
 *   cc -std=c11 -D_GNU_SOURCE -O2 -Wall -Wextra -Isrc/common -Isrc/obs tools/gpucheck.c \
 *      src/obs/lv_nvml.c src/obs/lv_sysmon.c src/common/lv_buf.c src/common/lv_common.c \
 *      src/common/lv_log.c -luv -ldl -lm -o build/gpucheck
 * (use -l:libuv_a.a instead of -luv for a binary that runs where libuv is not installed).
 *
 * Usage: gpucheck [--lib NAME] [--reads N] [--sysmon]
 *   --lib NAME  NVML library to dlopen (default libnvidia-ml.so.1; also sets LIVEVLM_NVML_LIB)
 *   --reads N   NVML reads, 250 ms apart (default 3)
 *   --sysmon    then run lv_sysmon on a uv loop at 250 ms for 3 samples and print its JSON
 * Exit status: 0 NVML read, 1 NVML unavailable or failing, 2 usage or sysmon failure.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <uv.h>

#include "lv_common.h"
#include "lv_nvml.h"
#include "lv_sysmon.h"

static void print_reading(int i, const lv_nvml_reading_t *r)
{
    printf("read %d: gpu_count=%u name=\"%s\"", i, r->gpu_count, r->name);
    if (r->util_ok)
        printf(" util=%u%%", r->util_gpu_pct);
    else
        printf(" util=n/a");
    if (r->mem_ok)
        printf(" vram=%.2f/%.2f GiB", (double)r->mem_used_bytes / (1024.0 * 1024.0 * 1024.0),
               (double)r->mem_total_bytes / (1024.0 * 1024.0 * 1024.0));
    else
        printf(" vram=n/a");
    if (r->temp_ok)
        printf(" temp=%u C", r->temp_c);
    else
        printf(" temp=n/a");
    if (r->power_ok)
        printf(" power=%.1f W", (double)r->power_mw / 1000.0);
    else
        printf(" power=n/a");
    printf("\n");
}

static int check_nvml(const char *lib, int reads)
{
    lv_nvml_t *n = NULL;
    char why[256];
    if (lv_nvml_open(lib, &n, why, sizeof(why)) != 0) {
        printf("NVML unavailable: %s\n", why);
        return 1;
    }
    int ok = 0;
    for (int i = 0; i < reads; i++) {
        lv_nvml_reading_t r;
        uint64_t t0 = lv_now_us();
        int rc = lv_nvml_read(n, 0, &r);
        uint64_t us = lv_now_us() - t0;
        if (rc == 0) {
            print_reading(i, &r);
            ok = 1;
        } else {
            printf("read %d: NVML unavailable: %s\n", i, lv_nvml_why(n));
        }
        printf("read %d took %llu us%s\n", i, (unsigned long long)us, i == 0 ? " (includes nvmlInit)" : "");
        if (rc == LV_ECLOSED)
            break;
        if (i + 1 < reads) {
            struct timespec ts = {0, 250 * 1000 * 1000};
            nanosleep(&ts, NULL);
        }
    }
    lv_nvml_close(n);
    return ok ? 0 : 1;
}

typedef struct {
    lv_sysmon_t *m;
    uv_timer_t poll;
    int polls;
} sysmon_run_t;

/* Samples in the history so far: entries of the ram_used array (never empty once sampled). */
static int history_len(const char *json)
{
    const char *p = strstr(json, "\"ram_used\":[");
    if (!p)
        return 0;
    p += strlen("\"ram_used\":[");
    if (*p == ']')
        return 0;
    int n = 1;
    for (; *p && *p != ']'; p++)
        n += *p == ',';
    return n;
}

/* Print the text once three samples landed (about 500 ms, more when nvmlInit is slow); 30 s cap. */
static void on_poll(uv_timer_t *t)
{
    sysmon_run_t *s = t->data;
    const char *json = lv_sysmon_json(s->m, NULL);
    if (history_len(json) < 3 && ++s->polls < 600)
        return;
    printf("sysmon: %s\n", json);
    lv_sysmon_stop(s->m);
    uv_close((uv_handle_t *)&s->poll, NULL);
}

static int run_sysmon(void)
{
    uv_loop_t loop;
    sysmon_run_t s;
    memset(&s, 0, sizeof(s));
    if (uv_loop_init(&loop) != 0)
        return 2;
    int rc = lv_sysmon_start(&loop, 250, &s.m);
    if (rc) {
        fprintf(stderr, "lv_sysmon_start: %s\n", lv_strerror(rc));
        uv_loop_close(&loop);
        return 2;
    }
    uv_timer_init(&loop, &s.poll);
    s.poll.data = &s;
    uv_timer_start(&s.poll, on_poll, 50, 50);
    uv_run(&loop, UV_RUN_DEFAULT);
    rc = uv_loop_close(&loop);
    if (rc) {
        fprintf(stderr, "uv_loop_close: %s\n", uv_strerror(rc));
        return 2;
    }
    return 0;
}

int main(int argc, char **argv)
{
    const char *lib = NULL;
    int reads = 3, sysmon = 0;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--lib") == 0 && i + 1 < argc) {
            lib = argv[++i];
        } else if (strcmp(argv[i], "--reads") == 0 && i + 1 < argc) {
            char *end;
            long v = strtol(argv[++i], &end, 10);
            if (*end || v < 1 || v > 1000) {
                fprintf(stderr, "--reads takes 1..1000\n");
                return 2;
            }
            reads = (int)v;
        } else if (strcmp(argv[i], "--sysmon") == 0) {
            sysmon = 1;
        } else {
            fprintf(stderr, "usage: %s [--lib NAME] [--reads N] [--sysmon]\n", argv[0]);
            return 2;
        }
    }
    if (lib)
        setenv("LIVEVLM_NVML_LIB", lib, 1);
    int rc = check_nvml(lib, reads);
    fflush(stdout);
    if (sysmon) {
        int src = run_sysmon();
        if (src)
            rc = src;
    }
    return rc;
}
