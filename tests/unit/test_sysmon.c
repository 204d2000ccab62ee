/* test_sysmon.c - system monitor: /proc parsing on a fake root, JSON shape, history cap, Jetson
 * sysfs, NVML through a fake symbol table, and a real run on a uv loop. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <ftw.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>
#include <jansson.h>
#include <uv.h>

#include "lv_common.h"
#include "lv_nvml.h"
#include "lv_sysmon.h"

static const char *const all_keys[] = {
    "hostname",     "cpu_model",     "cpu_percent",  "ram_used_gb", "ram_total_gb", "ram_percent",
    "platform",     "gpu_name",      "gpu_count",    "gpu_percent", "vram_used_gb", "vram_total_gb",
    "vram_percent", "temp_c",        "power_w",      "product_name", "history",
};
static const char *const gpu_keys[] = {"gpu_name",      "gpu_count",    "gpu_percent", "vram_used_gb",
                                       "vram_total_gb", "vram_percent", "temp_c",      "power_w"};
static const char *const hist_keys[] = {"cpu_util", "ram_used", "gpu_util", "vram_used"};

/* ---- fixture: a temp dir holding fake /proc and /sys trees ---- */

typedef struct {
    char root[64];
    char proc[96];
    char sysfs[96];
    uv_loop_t loop;
} fixture_t;

static void write_file(const char *base, const char *rel, const char *text, size_t len)
{
    char path[512];
    snprintf(path, sizeof(path), "%s%s", base, rel);
    for (char *p = path + strlen(base) + 1; *p; p++) {
        if (*p == '/') {
            *p = '\0';
            assert_true(mkdir(path, 0700) == 0 || errno == EEXIST);
            *p = '/';
        }
    }
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    assert_int_equal(fwrite(text, 1, len, f), len);
    fclose(f);
}

static void put(const char *base, const char *rel, const char *text) { write_file(base, rel, text, strlen(text)); }

static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st, (void)flag, (void)ftw;
    return remove(path);
}

static int setup(void **state)
{
    fixture_t *f = calloc(1, sizeof(*f));
    if (!f)
        return -1;
    snprintf(f->root, sizeof(f->root), "/tmp/lv_sysmon_XXXXXX");
    if (!mkdtemp(f->root))
        return -1;
    snprintf(f->proc, sizeof(f->proc), "%s/proc_root", f->root);
    snprintf(f->sysfs, sizeof(f->sysfs), "%s/sys_root", f->root);
    mkdir(f->proc, 0700);
    mkdir(f->sysfs, 0700);
    if (uv_loop_init(&f->loop) != 0)
        return -1;
    setenv("LIVEVLM_PROC_ROOT", f->proc, 1);
    setenv("LIVEVLM_SYSFS_ROOT", f->sysfs, 1);
    setenv("LIVEVLM_NVML_LIB", "/nonexistent/libnvidia-ml.so.1", 1);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture_t *f = *state;
    uv_run(&f->loop, UV_RUN_DEFAULT);
    int rc = uv_loop_close(&f->loop);
    nftw(f->root, rm_one, 16, FTW_DEPTH | FTW_PHYS);
    unsetenv("LIVEVLM_PROC_ROOT");
    unsetenv("LIVEVLM_SYSFS_ROOT");
    unsetenv("LIVEVLM_NVML_LIB");
    free(f);
    return rc == 0 ? 0 : -1; /* a handle left open fails the test */
}

static json_t *stats_json(const lv_sysmon_t *m)
{
    size_t len = 0;
    const char *text = lv_sysmon_json(m, &len);
    assert_non_null(text);
    assert_int_equal(strlen(text), len);
    json_error_t err;
    json_t *j = json_loadb(text, len, 0, &err);
    if (!j)
        fail_msg("bad JSON (%s): %s", err.text, text);
    assert_true(json_is_object(j));
    for (size_t i = 0; i < LV_ARRAY_LEN(all_keys); i++)
        if (!json_object_get(j, all_keys[i]))
            fail_msg("key %s missing: %s", all_keys[i], text);
    json_t *h = json_object_get(j, "history");
    for (size_t i = 0; i < LV_ARRAY_LEN(hist_keys); i++)
        assert_true(json_is_array(json_object_get(h, hist_keys[i])));
    return j;
}

static double num(json_t *j, const char *key)
{
    json_t *v = json_object_get(j, key);
    if (!json_is_number(v))
        fail_msg("%s is not a number", key);
    return json_number_value(v);
}

static const char *str(json_t *j, const char *key)
{
    json_t *v = json_object_get(j, key);
    if (!json_is_string(v))
        fail_msg("%s is not a string", key);
    return json_string_value(v);
}

static json_t *hist(json_t *j, const char *series) { return json_object_get(json_object_get(j, "history"), series); }

static void put_default_proc(const fixture_t *f)
{
    put(f->proc, "/proc/stat", "cpu  100 0 100 700 100 0 0 0 0 0\ncpu0 100 0 100 700 100 0 0 0 0 0\nintr 1 2 3\n");
    put(f->proc, "/proc/meminfo", "MemTotal:       16000000 kB\nMemFree:         1000000 kB\n"
                                  "MemAvailable:    4000000 kB\nBuffers:          100 kB\n");
}

/* ---- lifecycle and shape ---- */

static void test_start_rejects_bad_args(void **state)
{
    fixture_t *f = *state;
    static char sentinel;
    lv_sysmon_t *m = (lv_sysmon_t *)(void *)&sentinel;
    assert_int_equal(lv_sysmon_start(&f->loop, 249, &m), LV_EINVAL);
    assert_null(m);
    assert_int_equal(lv_sysmon_start(&f->loop, 60001, &m), LV_EINVAL);
    assert_int_equal(lv_sysmon_start(NULL, 1000, &m), LV_EINVAL);
    assert_int_equal(lv_sysmon_start(&f->loop, 1000, NULL), LV_EINVAL);
    lv_sysmon_stop(NULL);
}

static void test_json_before_first_sample_is_all_null(void **state)
{
    fixture_t *f = *state;
    lv_sysmon_t *m = NULL;
    assert_int_equal(lv_sysmon_start(&f->loop, 1000, &m), 0);
    json_t *j = stats_json(m);
    for (size_t i = 0; i < LV_ARRAY_LEN(all_keys); i++)
        if (strcmp(all_keys[i], "history") != 0)
            assert_true(json_is_null(json_object_get(j, all_keys[i])));
    for (size_t i = 0; i < LV_ARRAY_LEN(hist_keys); i++)
        assert_int_equal(json_array_size(hist(j, hist_keys[i])), 0);
    json_decref(j);
    lv_sysmon_stop(m);
}

/* ---- /proc parsing ---- */

static void test_cpu_percent_from_two_snapshots(void **state)
{
    fixture_t *f = *state;
    put_default_proc(f); /* total 1000, idle+iowait 800 */
    lv_sysmon_t *m = NULL;
    assert_int_equal(lv_sysmon_start(&f->loop, 60000, &m), 0);
    assert_int_equal(lv_sysmon__sample_now(m), 0);
    json_t *j = stats_json(m);
    assert_true(json_is_null(json_object_get(j, "cpu_percent"))); /* no delta yet */
    json_decref(j);

    /* +150 user +50 system +300 idle +50 iowait: busy 200 of 550 = 36.36 % */
    put(f->proc, "/proc/stat", "cpu  250 0 150 1000 150 0 0 0 0 0\ncpu0 250 0 150 1000 150 0 0 0 0 0\n");
    assert_int_equal(lv_sysmon__sample_now(m), 0);
    j = stats_json(m);
    assert_float_equal(num(j, "cpu_percent"), 36.4, 1e-9);
    json_t *h = hist(j, "cpu_util");
    assert_int_equal(json_array_size(h), 2);
    assert_true(json_is_null(json_array_get(h, 0)));
    assert_float_equal(json_number_value(json_array_get(h, 1)), 36.4, 1e-9);
    json_decref(j);

    /* Same counters again: no time passed, so no percentage rather than a made-up 0. */
    assert_int_equal(lv_sysmon__sample_now(m), 0);
    j = stats_json(m);
    assert_true(json_is_null(json_object_get(j, "cpu_percent")));
    json_decref(j);

    /* Fully busy interval, steal counted as busy. */
    put(f->proc, "/proc/stat", "cpu  350 0 150 1000 150 0 0 100 0 0\n");
    assert_int_equal(lv_sysmon__sample_now(m), 0);
    j = stats_json(m);
    assert_float_equal(num(j, "cpu_percent"), 100.0, 1e-9);
    json_decref(j);
    lv_sysmon_stop(m);
}

static void test_meminfo_math(void **state)
{
    fixture_t *f = *state;
    put_default_proc(f);
    lv_sysmon_t *m = NULL;
    assert_int_equal(lv_sysmon_start(&f->loop, 1000, &m), 0);
    assert_int_equal(lv_sysmon__sample_now(m), 0);
    json_t *j = stats_json(m);
    /* used = total - available = 12000000 kB = 11.444 GiB; total 15.259 GiB; 75 % */
    assert_float_equal(num(j, "ram_used_gb"), 11.44, 1e-9);
    assert_float_equal(num(j, "ram_total_gb"), 15.26, 1e-9);
    assert_float_equal(num(j, "ram_percent"), 75.0, 1e-9);
    assert_float_equal(json_number_value(json_array_get(hist(j, "ram_used"), 0)), 11.44, 1e-9);
    json_decref(j);

    /* No MemAvailable (kernels < 3.14): free + buffers + cached. */
    put(f->proc, "/proc/meminfo", "MemTotal: 16000000 kB\nMemFree: 1000000 kB\nBuffers: 500000 kB\nCached: 500000 kB\n");
    assert_int_equal(lv_sysmon__sample_now(m), 0);
    j = stats_json(m);
    assert_float_equal(num(j, "ram_used_gb"), 13.35, 1e-9);
    assert_float_equal(num(j, "ram_percent"), 87.5, 1e-9);
    json_decref(j);

    /* Unreadable meminfo: nulls, not zeros. */
    char path[256];
    snprintf(path, sizeof(path), "%s/proc/meminfo", f->proc);
    assert_int_equal(unlink(path), 0);
    assert_int_equal(lv_sysmon__sample_now(m), 0);
    j = stats_json(m);
    assert_true(json_is_null(json_object_get(j, "ram_used_gb")));
    assert_true(json_is_null(json_object_get(j, "ram_percent")));
    json_decref(j);
    lv_sysmon_stop(m);
}

static void check_no_gpu(json_t *j)
{
    assert_string_equal(str(j, "platform"), "NVIDIA (NVML unavailable)");
    for (size_t i = 0; i < LV_ARRAY_LEN(gpu_keys); i++)
        if (!json_is_null(json_object_get(j, gpu_keys[i])))
            fail_msg("%s should be null without NVML", gpu_keys[i]);
    assert_true(json_is_null(json_array_get(hist(j, "gpu_util"), 0)));
    assert_true(json_is_null(json_array_get(hist(j, "vram_used"), 0)));
}

static void test_json_without_nvml(void **state)
{
    fixture_t *f = *state;
    put_default_proc(f);
    put(f->proc, "/proc/cpuinfo", "processor\t: 0\nvendor_id\t: GenuineIntel\n"
                                  "model name\t: Intel(R) Xeon(R) CPU E5-2680 v4 @ 2.40GHz\n\nprocessor\t: 1\n");
    put(f->sysfs, "/sys/class/dmi/id/product_name", "PowerEdge R740\n");
    lv_sysmon_t *m = NULL;
    assert_int_equal(lv_sysmon_start(&f->loop, 1000, &m), 0);
    assert_int_equal(lv_sysmon__sample_now(m), 0);
    json_t *j = stats_json(m);
    check_no_gpu(j);
    assert_string_equal(str(j, "cpu_model"), "Intel(R) Xeon(R) CPU E5-2680 v4");
    assert_string_equal(str(j, "product_name"), "PowerEdge R740");
    char host[256] = "";
    gethostname(host, sizeof(host));
    assert_string_equal(str(j, "hostname"), host);
    json_decref(j);
    lv_sysmon_stop(m);
}

static void test_nvml_lib_without_symbols(void **state)
{
    fixture_t *f = *state;
    put_default_proc(f);
    setenv("LIVEVLM_NVML_LIB", "libc.so.6", 1); /* loads, but has no nvml* symbols */
    lv_sysmon_t *m = NULL;
    assert_int_equal(lv_sysmon_start(&f->loop, 1000, &m), 0);
    for (int i = 0; i < 3; i++)
        assert_int_equal(lv_sysmon__sample_now(m), 0);
    json_t *j = stats_json(m);
    check_no_gpu(j);
    json_decref(j);
    lv_sysmon_stop(m);
}

static void test_strings_are_escaped_and_utf8_safe(void **state)
{
    fixture_t *f = *state;
    put_default_proc(f);
    put(f->proc, "/proc/cpuinfo", "model name\t: AMD  Ryzen 9   7950X 16-Core Processor\n");
    /* quote, backslash, control byte, a stray 0xFF, and a valid two-byte e-acute */
    put(f->sysfs, "/sys/class/dmi/id/product_name", "Bad \"Box\"\\ \x01 \xff \xc3\xa9\n");
    lv_sysmon_t *m = NULL;
    assert_int_equal(lv_sysmon_start(&f->loop, 1000, &m), 0);
    assert_int_equal(lv_sysmon__sample_now(m), 0);
    json_t *j = stats_json(m); /* jansson rejects invalid UTF-8, so parsing proves it is clean */
    assert_string_equal(str(j, "product_name"), "Bad \"Box\"\\ \x01 \xef\xbf\xbd \xc3\xa9");
    assert_string_equal(str(j, "cpu_model"), "AMD Ryzen 9 7950X 16-Core Processor");
    json_decref(j);
    lv_sysmon_stop(m);
}

static void test_placeholder_product_name_is_null(void **state)
{
    fixture_t *f = *state;
    put_default_proc(f);
    put(f->sysfs, "/sys/class/dmi/id/product_name", "To Be Filled By O.E.M.\n");
    lv_sysmon_t *m = NULL;
    assert_int_equal(lv_sysmon_start(&f->loop, 1000, &m), 0);
    assert_int_equal(lv_sysmon__sample_now(m), 0);
    json_t *j = stats_json(m);
    assert_true(json_is_null(json_object_get(j, "product_name")));
    json_decref(j);
    lv_sysmon_stop(m);

    put(f->sysfs, "/etc/dgx-release", "DGX_NAME=\"DGX Server\"\nDGX_PRETTY_NAME=\"NVIDIA DGX Spark\"\n");
    assert_int_equal(lv_sysmon_start(&f->loop, 1000, &m), 0);
    assert_int_equal(lv_sysmon__sample_now(m), 0);
    j = stats_json(m);
    assert_string_equal(str(j, "product_name"), "NVIDIA DGX Spark");
    json_decref(j);
    lv_sysmon_stop(m);
}

/* ---- history ---- */

static void test_history_grows_to_60_and_stays(void **state)
{
    fixture_t *f = *state;
    put_default_proc(f);
    lv_sysmon_t *m = NULL;
    assert_int_equal(lv_sysmon_start(&f->loop, 1000, &m), 0);
    for (int i = 0; i < 75; i++) {
        /* used = i GiB of 100 GiB, so each sample is identifiable in the history */
        char meminfo[128];
        snprintf(meminfo, sizeof(meminfo), "MemTotal: %d kB\nMemAvailable: %d kB\n", 100 * 1048576,
                 (100 - i) * 1048576);
        put(f->proc, "/proc/meminfo", meminfo);
        assert_int_equal(lv_sysmon__sample_now(m), 0);
        json_t *j = stats_json(m);
        size_t want = i + 1 < 60 ? (size_t)i + 1 : 60;
        for (size_t k = 0; k < LV_ARRAY_LEN(hist_keys); k++)
            assert_int_equal(json_array_size(hist(j, hist_keys[k])), want);
        json_t *ram = hist(j, "ram_used");
        assert_float_equal(json_number_value(json_array_get(ram, 0)), (double)(i + 1 - (int)want), 1e-9);
        assert_float_equal(json_number_value(json_array_get(ram, want - 1)), (double)i, 1e-9);
        json_decref(j);
    }
    lv_sysmon_stop(m);
}

/* ---- Jetson sysfs ---- */

static void test_jetson_load_file(void **state)
{
    fixture_t *f = *state;
    put_default_proc(f);
    put(f->sysfs, "/etc/nv_tegra_release", "# R36 (release), REVISION: 3.0\n");
    put(f->sysfs, "/sys/devices/gpu.0/load", "537\n");
    static const char model[] = "NVIDIA Jetson AGX Orin Developer Kit"; /* devicetree: NUL-terminated */
    write_file(f->sysfs, "/sys/firmware/devicetree/base/model", model, sizeof(model));
    lv_sysmon_t *m = NULL;
    assert_int_equal(lv_sysmon_start(&f->loop, 1000, &m), 0);
    assert_int_equal(lv_sysmon__sample_now(m), 0);
    json_t *j = stats_json(m);
    assert_string_equal(str(j, "platform"), "Jetson (sysfs)");
    assert_float_equal(num(j, "gpu_percent"), 53.7, 1e-9);
    assert_float_equal(json_number_value(json_array_get(hist(j, "gpu_util"), 0)), 53.7, 1e-9);
    assert_string_equal(str(j, "product_name"), model);
    assert_true(json_is_null(json_object_get(j, "vram_used_gb")));
    json_decref(j);

    put(f->sysfs, "/sys/devices/gpu.0/load", "0\n"); /* re-read every sample */
    assert_int_equal(lv_sysmon__sample_now(m), 0);
    j = stats_json(m);
    assert_float_equal(num(j, "gpu_percent"), 0.0, 1e-9);
    json_decref(j);
    lv_sysmon_stop(m);
}

static void test_jetson_devfreq_fallback(void **state)
{
    fixture_t *f = *state;
    put_default_proc(f);
    put(f->sysfs, "/sys/class/devfreq/15340000.vic/device/of_node/name", "vic\n");
    put(f->sysfs, "/sys/class/devfreq/15340000.vic/device/load", "999\n");
    static const char node[] = "ga10b";
    write_file(f->sysfs, "/sys/class/devfreq/17000000.ga10b/device/of_node/name", node, sizeof(node));
    put(f->sysfs, "/sys/class/devfreq/17000000.ga10b/device/load", "120\n");
    lv_sysmon_t *m = NULL;
    assert_int_equal(lv_sysmon_start(&f->loop, 1000, &m), 0);
    assert_int_equal(lv_sysmon__sample_now(m), 0);
    json_t *j = stats_json(m);
    assert_string_equal(str(j, "platform"), "Jetson (sysfs)");
    assert_float_equal(num(j, "gpu_percent"), 12.0, 1e-9);
    json_decref(j);
    lv_sysmon_stop(m);
}

/* ---- NVML through a fake symbol table ---- */

typedef struct {
    unsigned gpu, memory;
} fake_util_t;
typedef struct {
    unsigned long long total, free, used;
} fake_mem_t;

static struct {
    int init_rc, handle_rc, util_rc, mem_rc, temp_rc, power_rc;
    int inits, shutdowns, reads;
} fake;

static int fake_init(void) { fake.inits++; return fake.init_rc; }
static int fake_shutdown(void) { fake.shutdowns++; return 0; }
static int fake_count(unsigned *c) { *c = 2; return 0; }
static int fake_handle(unsigned i, void **dev)
{
    *dev = (void *)&fake;
    return i < 2 ? fake.handle_rc : 2;
}
static int fake_name(void *dev, char *name, unsigned len)
{
    (void)dev;
    snprintf(name, len, "NVIDIA Fake GB10");
    return 0;
}
static int fake_util(void *dev, fake_util_t *u)
{
    (void)dev;
    fake.reads++;
    u->gpu = 45;
    u->memory = 10;
    return fake.util_rc;
}
static int fake_mem(void *dev, fake_mem_t *mem)
{
    (void)dev;
    mem->total = 80ULL << 30;
    mem->used = 20ULL << 30;
    mem->free = 60ULL << 30;
    return fake.mem_rc;
}
static int fake_temp(void *dev, int sensor, unsigned *t)
{
    (void)dev;
    assert_int_equal(sensor, 0);
    *t = 61;
    return fake.temp_rc;
}
static int fake_power(void *dev, unsigned *mw)
{
    (void)dev;
    *mw = 123456;
    return fake.power_rc;
}

static const char *missing_symbol;

static void *fake_resolve(void *ctx, const char *symbol)
{
    (void)ctx;
    static const struct {
        const char *name;
        void (*fn)(void);
    } table[] = {
        {"nvmlInit_v2", (void (*)(void))fake_init},
        {"nvmlShutdown", (void (*)(void))fake_shutdown},
        {"nvmlDeviceGetCount_v2", (void (*)(void))fake_count},
        {"nvmlDeviceGetHandleByIndex_v2", (void (*)(void))fake_handle},
        {"nvmlDeviceGetName", (void (*)(void))fake_name},
        {"nvmlDeviceGetUtilizationRates", (void (*)(void))fake_util},
        {"nvmlDeviceGetMemoryInfo", (void (*)(void))fake_mem},
        {"nvmlDeviceGetTemperature", (void (*)(void))fake_temp},
        {"nvmlDeviceGetPowerUsage", (void (*)(void))fake_power},
    };
    if (missing_symbol && strcmp(symbol, missing_symbol) == 0)
        return NULL;
    for (size_t i = 0; i < LV_ARRAY_LEN(table); i++) {
        if (strcmp(symbol, table[i].name) == 0) {
            void *p;
            memcpy(&p, &table[i].fn, sizeof(p));
            return p;
        }
    }
    return NULL; /* nvmlErrorString is optional */
}

static lv_nvml_t *fake_open(void)
{
    memset(&fake, 0, sizeof(fake));
    missing_symbol = NULL;
    lv_nvml_t *n = NULL;
    char why[128];
    assert_int_equal(lv_nvml_open_with(fake_resolve, NULL, &n, why, sizeof(why)), 0);
    assert_non_null(n);
    return n;
}

static void test_nvml_reading_and_not_supported_memory(void **state)
{
    (void)state;
    lv_nvml_t *n = fake_open();
    lv_nvml_reading_t r;
    assert_int_equal(lv_nvml_read(n, 0, &r), 0);
    assert_int_equal(fake.inits, 1);
    assert_int_equal(r.gpu_count, 2);
    assert_string_equal(r.name, "NVIDIA Fake GB10");
    assert_true(r.util_ok && r.mem_ok && r.temp_ok && r.power_ok);
    assert_int_equal(r.util_gpu_pct, 45);
    assert_true(r.mem_total_bytes == 80ULL << 30 && r.mem_used_bytes == 20ULL << 30);
    assert_int_equal(r.temp_c, 61);
    assert_int_equal(r.power_mw, 123456);

    fake.mem_rc = 3;   /* NVML_ERROR_NOT_SUPPORTED: GB10 / DGX Spark */
    fake.power_rc = 3;
    for (int i = 0; i < 2 * LV_NVML_MAX_ERRORS; i++) {
        assert_int_equal(lv_nvml_read(n, 0, &r), 0);
        assert_true(r.util_ok && r.temp_ok);
        assert_false(r.mem_ok || r.power_ok);
    }
    assert_int_equal(fake.inits, 1); /* no re-init: NOT_SUPPORTED is not a failure */
    assert_string_equal(lv_nvml_why(n), "");
    lv_nvml_close(n);
    assert_int_equal(fake.shutdowns, 1);
}

static void test_nvml_transient_errors_reinit(void **state)
{
    (void)state;
    lv_nvml_t *n = fake_open();
    lv_nvml_reading_t r;
    fake.util_rc = fake.mem_rc = fake.temp_rc = fake.power_rc = 999; /* "Unknown Error" (WSL2) */
    for (int i = 0; i < 3; i++)
        assert_int_equal(lv_nvml_read(n, 0, &r), LV_EIO);
    assert_non_null(strstr(lv_nvml_why(n), "nvmlDeviceGetUtilizationRates"));
    assert_int_equal(fake.shutdowns, 3);
    fake.util_rc = fake.mem_rc = fake.temp_rc = fake.power_rc = 0;
    assert_int_equal(lv_nvml_read(n, 0, &r), 0);
    assert_int_equal(fake.inits, 4);
    /* the error count started over: 19 more failures are still tolerated */
    fake.handle_rc = 999;
    for (int i = 0; i < LV_NVML_MAX_ERRORS - 1; i++)
        assert_int_equal(lv_nvml_read(n, 0, &r), LV_EIO);
    fake.handle_rc = 0;
    assert_int_equal(lv_nvml_read(n, 0, &r), 0);
    lv_nvml_close(n);
}

static void test_nvml_gives_up_after_20_errors(void **state)
{
    (void)state;
    lv_nvml_t *n = fake_open();
    lv_nvml_reading_t r;
    fake.init_rc = 9; /* NVML_ERROR_DRIVER_NOT_LOADED */
    for (int i = 1; i < LV_NVML_MAX_ERRORS; i++)
        assert_int_equal(lv_nvml_read(n, 0, &r), LV_EIO);
    assert_int_equal(lv_nvml_read(n, 0, &r), LV_ECLOSED);
    assert_non_null(strstr(lv_nvml_why(n), "nvmlInit_v2: NVML error 9"));
    assert_non_null(strstr(lv_nvml_why(n), "gave up"));
    fake.init_rc = 0;
    assert_int_equal(lv_nvml_read(n, 0, &r), LV_ECLOSED);
    assert_int_equal(fake.inits, LV_NVML_MAX_ERRORS); /* never called again */
    assert_false(r.util_ok);
    lv_nvml_close(n);
    assert_int_equal(fake.shutdowns, 0); /* init never succeeded, so nothing to shut down */
}

static void test_nvml_missing_library_or_symbol(void **state)
{
    (void)state;
    static char sentinel;
    lv_nvml_t *n = (lv_nvml_t *)(void *)&sentinel;
    char why[256];
    assert_int_equal(lv_nvml_open("/nonexistent/libnvidia-ml.so.1", &n, why, sizeof(why)), LV_EIO);
    assert_null(n);
    assert_non_null(strstr(why, "dlopen: /nonexistent/libnvidia-ml.so.1"));
    assert_int_equal(lv_nvml_open("libc.so.6", &n, why, sizeof(why)), LV_EIO);
    assert_string_equal(why, "symbol nvmlInit_v2 missing");
    memset(&fake, 0, sizeof(fake));
    missing_symbol = "nvmlDeviceGetPowerUsage";
    assert_int_equal(lv_nvml_open_with(fake_resolve, NULL, &n, why, sizeof(why)), LV_EIO);
    assert_string_equal(why, "symbol nvmlDeviceGetPowerUsage missing");
    missing_symbol = NULL;
    lv_nvml_close(NULL);
}

/* ---- the real thing on a loop ---- */

typedef struct {
    lv_sysmon_t *m;
    uv_timer_t poll;
    int samples;
    char last[8192];
} live_t;

static void on_poll(uv_timer_t *t)
{
    live_t *l = t->data;
    json_t *j = stats_json(l->m);
    l->samples = (int)json_array_size(hist(j, "ram_used"));
    json_decref(j);
    if (l->samples >= 3) {
        size_t len;
        const char *text = lv_sysmon_json(l->m, &len);
        snprintf(l->last, sizeof(l->last), "%s", text);
        lv_sysmon_stop(l->m);
        uv_close((uv_handle_t *)&l->poll, NULL);
    }
}

static void test_live_proc_on_loop(void **state)
{
    fixture_t *f = *state;
    unsetenv("LIVEVLM_PROC_ROOT");
    unsetenv("LIVEVLM_SYSFS_ROOT");
    unsetenv("LIVEVLM_NVML_LIB"); /* the real libnvidia-ml.so.1 where there is one */
    live_t l;
    memset(&l, 0, sizeof(l));
    uint64_t t0 = uv_hrtime();
    assert_int_equal(lv_sysmon_start(&f->loop, 250, &l.m), 0);
    assert_int_equal(uv_timer_init(&f->loop, &l.poll), 0);
    l.poll.data = &l;
    assert_int_equal(uv_timer_start(&l.poll, on_poll, 20, 20), 0);
    assert_int_equal(uv_run(&f->loop, UV_RUN_DEFAULT), 0); /* returns once both are closed */
    uint64_t ms = (uv_hrtime() - t0) / 1000000;
    assert_true(l.samples >= 3);
    /* samples at ~0, 250, 500 ms; a GPU host's first nvmlInit can take seconds */
    assert_true(ms >= 450 && ms < 30000);
    json_error_t err;
    json_t *j = json_loads(l.last, 0, &err);
    assert_non_null(j);
    assert_true(num(j, "cpu_percent") >= 0.0 && num(j, "cpu_percent") <= 100.0);
    assert_true(num(j, "ram_total_gb") > 0.0);
    assert_true(num(j, "ram_used_gb") <= num(j, "ram_total_gb"));
    assert_true(strlen(str(j, "hostname")) > 0);
    assert_true(strlen(str(j, "cpu_model")) > 0);
    assert_true(json_is_null(json_array_get(hist(j, "cpu_util"), 0)));
    assert_true(json_is_number(json_array_get(hist(j, "cpu_util"), 2)));
    json_decref(j);
    if (getenv("LV_SYSMON_PRINT"))
        printf("%s\n", l.last);
}

/* Stopping while a sample is on the pool: m must outlive the work and be freed after it. */
static void test_stop_with_sample_in_flight(void **state)
{
    fixture_t *f = *state;
    put_default_proc(f);
    int in_flight = 0;
    for (int i = 0; i < 20; i++) {
        lv_sysmon_t *m = NULL;
        assert_int_equal(lv_sysmon_start(&f->loop, 250, &m), 0);
        uv_run(&f->loop, UV_RUN_NOWAIT); /* the timer fires at 0 and queues the first sample */
        /* Usually still on the pool; if it already landed, sample_now just takes another. */
        int rc = lv_sysmon__sample_now(m);
        assert_true(rc == LV_EAGAIN || rc == 0);
        in_flight += rc == LV_EAGAIN;
        lv_sysmon_stop(m);
        assert_int_equal(uv_run(&f->loop, UV_RUN_DEFAULT), 0);
    }
    assert_true(in_flight > 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_start_rejects_bad_args, setup, teardown),
        cmocka_unit_test_setup_teardown(test_json_before_first_sample_is_all_null, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cpu_percent_from_two_snapshots, setup, teardown),
        cmocka_unit_test_setup_teardown(test_meminfo_math, setup, teardown),
        cmocka_unit_test_setup_teardown(test_json_without_nvml, setup, teardown),
        cmocka_unit_test_setup_teardown(test_nvml_lib_without_symbols, setup, teardown),
        cmocka_unit_test_setup_teardown(test_strings_are_escaped_and_utf8_safe, setup, teardown),
        cmocka_unit_test_setup_teardown(test_placeholder_product_name_is_null, setup, teardown),
        cmocka_unit_test_setup_teardown(test_history_grows_to_60_and_stays, setup, teardown),
        cmocka_unit_test_setup_teardown(test_jetson_load_file, setup, teardown),
        cmocka_unit_test_setup_teardown(test_jetson_devfreq_fallback, setup, teardown),
        cmocka_unit_test(test_nvml_reading_and_not_supported_memory),
        cmocka_unit_test(test_nvml_transient_errors_reinit),
        cmocka_unit_test(test_nvml_gives_up_after_20_errors),
        cmocka_unit_test(test_nvml_missing_library_or_symbol),
        cmocka_unit_test_setup_teardown(test_live_proc_on_loop, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stop_with_sample_in_flight, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
