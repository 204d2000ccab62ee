/* lv_nvml.c - the few NVML calls the system monitor needs, resolved with dlsym so that machines
 * without the NVIDIA driver run the same binary. Types and constants are declared here from the
 * public NVML API (nvml.h) instead of including it: only the ABI of these calls matters. */
#include "lv_nvml.h"

#include <dlfcn.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lv_common.h"

#define NVML_DEFAULT_LIB "libnvidia-ml.so.1"

/* From nvml.h: nvmlReturn_t and nvmlTemperatureSensors_t are C enums (int-sized). */
typedef int nvml_return_t;
enum { NVML_SUCCESS = 0, NVML_ERROR_NOT_SUPPORTED = 3 };
enum { NVML_TEMPERATURE_GPU = 0 };
typedef struct nvml_device *nvml_device_t; /* nvmlDevice_t: an opaque pointer */
typedef struct {
    unsigned int gpu;    /* percent of time a kernel ran over the last sample period */
    unsigned int memory; /* percent of time device memory was read or written */
} nvml_utilization_t;
typedef struct {
    unsigned long long total, free, used; /* bytes */
} nvml_memory_t;

typedef struct {
    nvml_return_t (*init_v2)(void);
    nvml_return_t (*shutdown)(void);
    nvml_return_t (*get_count_v2)(unsigned int *count);
    nvml_return_t (*get_handle_by_index_v2)(unsigned int index, nvml_device_t *dev);
    nvml_return_t (*get_name)(nvml_device_t dev, char *name, unsigned int length);
    nvml_return_t (*get_utilization)(nvml_device_t dev, nvml_utilization_t *util);
    nvml_return_t (*get_memory)(nvml_device_t dev, nvml_memory_t *mem);
    nvml_return_t (*get_temperature)(nvml_device_t dev, int sensor, unsigned int *temp);
    nvml_return_t (*get_power)(nvml_device_t dev, unsigned int *milliwatts);
    const char *(*error_string)(nvml_return_t rc); /* optional: only used for messages */
} nvml_api_t;

struct lv_nvml {
    void *lib;          /* dlopen handle, NULL when symbols came from a resolver */
    nvml_api_t api;
    int initialised;    /* nvmlInit_v2 succeeded and no nvmlShutdown since */
    int errors;         /* consecutive failed reads */
    int disabled;       /* gave up after LV_NVML_MAX_ERRORS */
    char why[256];
};

/* dlsym hands back object pointers; POSIX guarantees they convert to function pointers. */
_Static_assert(sizeof(void *) == sizeof(void (*)(void)), "function pointers must fit a void *");

static const struct {
    const char *name;
    size_t offset;
    int required;
} nvml_symbols[] = {
    {"nvmlInit_v2", offsetof(nvml_api_t, init_v2), 1},
    {"nvmlShutdown", offsetof(nvml_api_t, shutdown), 1},
    {"nvmlDeviceGetCount_v2", offsetof(nvml_api_t, get_count_v2), 1},
    {"nvmlDeviceGetHandleByIndex_v2", offsetof(nvml_api_t, get_handle_by_index_v2), 1},
    {"nvmlDeviceGetName", offsetof(nvml_api_t, get_name), 1},
    {"nvmlDeviceGetUtilizationRates", offsetof(nvml_api_t, get_utilization), 1},
    {"nvmlDeviceGetMemoryInfo", offsetof(nvml_api_t, get_memory), 1},
    {"nvmlDeviceGetTemperature", offsetof(nvml_api_t, get_temperature), 1},
    {"nvmlDeviceGetPowerUsage", offsetof(nvml_api_t, get_power), 1},
    {"nvmlErrorString", offsetof(nvml_api_t, error_string), 0},
};

static void set_why(char *why, size_t why_len, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void set_why(char *why, size_t why_len, const char *fmt, ...)
{
    if (!why || !why_len)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, why_len, fmt, ap);
    va_end(ap);
}

static void *dl_resolve(void *ctx, const char *symbol) { return dlsym(ctx, symbol); }

static int open_common(void *lib, lv_nvml_resolve_fn resolve, void *ctx, lv_nvml_t **out, char *why,
                       size_t why_len)
{
    lv_nvml_t *n = calloc(1, sizeof(*n));
    if (!n) {
        set_why(why, why_len, "out of memory");
        return LV_ENOMEM;
    }
    for (size_t i = 0; i < LV_ARRAY_LEN(nvml_symbols); i++) {
        void *p = resolve(ctx, nvml_symbols[i].name);
        if (!p && nvml_symbols[i].required) {
            set_why(why, why_len, "symbol %s missing", nvml_symbols[i].name);
            free(n);
            return LV_EIO;
        }
        memcpy((char *)&n->api + nvml_symbols[i].offset, &p, sizeof(p));
    }
    n->lib = lib;
    *out = n;
    if (why && why_len)
        why[0] = '\0';
    return 0;
}

int lv_nvml_open(const char *lib_name, lv_nvml_t **out, char *why, size_t why_len)
{
    *out = NULL;
    if (!lib_name || !*lib_name)
        lib_name = NVML_DEFAULT_LIB;
    void *lib = dlopen(lib_name, RTLD_NOW | RTLD_LOCAL);
    if (!lib) {
        const char *err = dlerror();
        /* dlerror() names the file already */
        set_why(why, why_len, "dlopen: %s", err ? err : lib_name);
        return LV_EIO;
    }
    int rc = open_common(lib, dl_resolve, lib, out, why, why_len);
    if (rc)
        dlclose(lib);
    return rc;
}

int lv_nvml_open_with(lv_nvml_resolve_fn resolve, void *ctx, lv_nvml_t **out, char *why, size_t why_len)
{
    *out = NULL;
    if (!resolve) {
        set_why(why, why_len, "no resolver");
        return LV_EINVAL;
    }
    return open_common(NULL, resolve, ctx, out, why, why_len);
}

static const char *nvml_err(const lv_nvml_t *n, nvml_return_t rc, char *tmp, size_t tmp_len)
{
    const char *s = n->api.error_string ? n->api.error_string(rc) : NULL;
    if (s)
        return s;
    snprintf(tmp, tmp_len, "NVML error %d", rc);
    return tmp;
}

static void note_error(lv_nvml_t *n, const char *call, nvml_return_t rc)
{
    char tmp[32];
    snprintf(n->why, sizeof(n->why), "%s: %s", call, nvml_err(n, rc, tmp, sizeof(tmp)));
}

/* One attempt; 0 when any of utilisation, memory, temperature or power was read. */
static int read_once(lv_nvml_t *n, unsigned index, lv_nvml_reading_t *r)
{
    nvml_return_t rc;
    if (!n->initialised) {
        rc = n->api.init_v2();
        if (rc != NVML_SUCCESS) {
            note_error(n, "nvmlInit_v2", rc);
            return LV_EIO;
        }
        n->initialised = 1;
    }
    unsigned count = 0;
    rc = n->api.get_count_v2(&count);
    if (rc == NVML_SUCCESS)
        r->gpu_count = count;
    nvml_device_t dev = NULL;
    rc = n->api.get_handle_by_index_v2(index, &dev);
    if (rc != NVML_SUCCESS) {
        note_error(n, "nvmlDeviceGetHandleByIndex_v2", rc);
        return LV_EIO;
    }

    /* The first unexpected error is kept as the reason; NOT_SUPPORTED is an answer, not an error. */
    const char *failed_call = NULL;
    nvml_return_t failed_rc = NVML_SUCCESS;
#define LV_NVML_NOTE(call, result)                                                                 \
    do {                                                                                           \
        if ((result) != NVML_SUCCESS && (result) != NVML_ERROR_NOT_SUPPORTED && !failed_call) {    \
            failed_call = (call);                                                                  \
            failed_rc = (result);                                                                  \
        }                                                                                          \
    } while (0)

    char name[sizeof(r->name)] = {0};
    rc = n->api.get_name(dev, name, (unsigned)sizeof(name));
    if (rc == NVML_SUCCESS) {
        name[sizeof(name) - 1] = '\0';
        memcpy(r->name, name, sizeof(name));
    }
    LV_NVML_NOTE("nvmlDeviceGetName", rc);

    nvml_utilization_t util = {0, 0};
    rc = n->api.get_utilization(dev, &util);
    if (rc == NVML_SUCCESS) {
        r->util_ok = 1;
        r->util_gpu_pct = util.gpu > 100 ? 100 : util.gpu;
    }
    LV_NVML_NOTE("nvmlDeviceGetUtilizationRates", rc);

    nvml_memory_t mem = {0, 0, 0};
    rc = n->api.get_memory(dev, &mem);
    if (rc == NVML_SUCCESS && mem.total > 0) {
        r->mem_ok = 1;
        r->mem_total_bytes = mem.total;
        r->mem_used_bytes = mem.used > mem.total ? mem.total : mem.used;
    }
    LV_NVML_NOTE("nvmlDeviceGetMemoryInfo", rc);

    unsigned temp = 0;
    rc = n->api.get_temperature(dev, NVML_TEMPERATURE_GPU, &temp);
    if (rc == NVML_SUCCESS) {
        r->temp_ok = 1;
        r->temp_c = temp;
    }
    LV_NVML_NOTE("nvmlDeviceGetTemperature", rc);

    unsigned mw = 0;
    rc = n->api.get_power(dev, &mw);
    if (rc == NVML_SUCCESS) {
        r->power_ok = 1;
        r->power_mw = mw;
    }
    LV_NVML_NOTE("nvmlDeviceGetPowerUsage", rc);
#undef LV_NVML_NOTE

    if (failed_call)
        note_error(n, failed_call, failed_rc);
    else
        n->why[0] = '\0';
    if (r->util_ok || r->mem_ok || r->temp_ok || r->power_ok)
        return 0;
    if (!failed_call)
        snprintf(n->why, sizeof(n->why), "GPU %u reports no supported readings", index);
    return LV_EIO;
}

int lv_nvml_read(lv_nvml_t *n, unsigned index, lv_nvml_reading_t *r)
{
    memset(r, 0, sizeof(*r));
    if (n->disabled)
        return LV_ECLOSED;
    if (read_once(n, index, r) == 0) {
        n->errors = 0;
        return 0;
    }
    memset(r, 0, sizeof(*r));
    /* Re-initialise on the next read: after a driver hiccup (WSL2 "Unknown Error") old handles
     * stay broken until nvmlShutdown + nvmlInit. */
    if (n->initialised) {
        n->api.shutdown();
        n->initialised = 0;
    }
    if (++n->errors >= LV_NVML_MAX_ERRORS) {
        n->disabled = 1;
        size_t len = strlen(n->why);
        snprintf(n->why + len, sizeof(n->why) - len, " (gave up after %d failed reads)", n->errors);
        return LV_ECLOSED;
    }
    return LV_EIO;
}

const char *lv_nvml_why(const lv_nvml_t *n) { return n->why; }

void lv_nvml_close(lv_nvml_t *n)
{
    if (!n)
        return;
    if (n->initialised)
        n->api.shutdown();
    if (n->lib)
        dlclose(n->lib);
    free(n);
}
