/* lv_sysmon.c - system monitor: a loop timer queues one sample at a time on the thread pool; the
 * loop thread keeps the history and the rendered JSON. See docs/internals/sysmon.md. */
#include "lv_sysmon.h"

#include <ctype.h>
#include <dirent.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/utsname.h>
#include <unistd.h>

#include "lv_buf.h"
#include "lv_common.h"
#include "lv_json_str.h"
#include "lv_log.h"
#include "lv_nvml.h"

#define SYSMON_HISTORY_LEN 60
#define SYSMON_JSON_MAX_BYTES (16 * 1024)
#define SYSMON_ROOT_MAX 256
#define SYSMON_PATH_MAX 640
#define SYSMON_GIB (1024.0 * 1024.0 * 1024.0)

enum { HIST_CPU, HIST_RAM, HIST_GPU, HIST_VRAM, HIST_SERIES };
static const char *const hist_names[HIST_SERIES] = {"cpu_util", "ram_used", "gpu_util", "vram_used"};

enum { NVML_NOT_TRIED, NVML_OPEN, NVML_OFF };

/* One sample, filled on the pool thread and read on the loop thread (never both at once).
 * Numbers are NAN and strings "" when unknown; both render as null. */
typedef struct {
    char hostname[256];
    char cpu_model[256];
    char product_name[256];
    char platform[64];
    char gpu_name[96];
    int gpu_count; /* -1: unknown */
    double cpu_percent, ram_used_gb, ram_total_gb, ram_percent;
    double gpu_percent, vram_used_gb, vram_total_gb, vram_percent, temp_c, power_w;
    lv_log_level_t note_level;
    char note[320]; /* a state change to log from the loop thread, "" when none */
} sysmon_sample_t;

struct lv_sysmon {
    uv_loop_t *loop;
    uv_timer_t timer;
    uv_work_t work;
    int in_flight;    /* a sample is queued or running on the pool */
    int stopping;     /* lv_sysmon_stop() was called */
    int timer_closed; /* the timer's close callback ran */

    /* Sampler state: touched only by sample_take(), which never runs twice at once (one work
     * request in flight, or lv_sysmon__sample_now() on the loop when none is). libuv hands a work
     * request between threads under its queue mutex, which orders these accesses. */
    char proc_root[SYSMON_ROOT_MAX];
    char sysfs_root[SYSMON_ROOT_MAX];
    char nvml_lib[SYSMON_ROOT_MAX];
    int fixed_read;      /* hostname, cpu model, product, Jetson probe done (once) */
    char hostname[256];
    char cpu_model[256];
    char product_name[256];
    int is_jetson;
    char jetson_load_path[SYSMON_PATH_MAX]; /* "" when none */
    unsigned long long prev_total, prev_idle;
    int have_prev;
    int nvml_state;
    lv_nvml_t *nvml;
    sysmon_sample_t sample;

    /* Loop thread only. */
    double history[HIST_SERIES][SYSMON_HISTORY_LEN]; /* ring, NAN = missing */
    size_t hist_next, hist_count;
    lv_buf_t json[2]; /* rendered text; json[cur] is what lv_sysmon_json() hands out */
    int cur;
};

/* ---- small readers (pool thread) ---- */

/* Read up to cap-1 bytes of root+path into buf, NUL-terminated. Returns bytes read or -1. */
static long read_file(const char *root, const char *path, char *buf, size_t cap)
{
    char full[SYSMON_PATH_MAX];
    int n = snprintf(full, sizeof(full), "%s%s", root, path);
    if (n < 0 || (size_t)n >= sizeof(full) || cap == 0)
        return -1;
    int fd = open(full, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    size_t got = 0;
    while (got < cap - 1) {
        ssize_t r = read(fd, buf + got, cap - 1 - got);
        if (r < 0) {
            close(fd);
            return -1;
        }
        if (r == 0)
            break;
        got += (size_t)r;
    }
    close(fd);
    buf[got] = '\0';
    return (long)got;
}

static int path_exists(const char *root, const char *path)
{
    char full[SYSMON_PATH_MAX];
    int n = snprintf(full, sizeof(full), "%s%s", root, path);
    return n > 0 && (size_t)n < sizeof(full) && access(full, F_OK) == 0;
}

/* Trim ASCII whitespace (and NULs inside len, as devicetree strings end in one) in place. */
static void trim(char *s)
{
    size_t len = strlen(s);
    while (len > 0 && isspace((unsigned char)s[len - 1]))
        s[--len] = '\0';
    size_t start = 0;
    while (s[start] && isspace((unsigned char)s[start]))
        start++;
    if (start)
        memmove(s, s + start, len - start + 1);
}

static void copy_str(char *dst, size_t cap, const char *src)
{
    size_t n = strnlen(src, cap - 1);
    memcpy(dst, src, n);
    dst[n] = '\0';
}

/* "Intel(R) Xeon(R) CPU E5-2680 v4 @ 2.40GHz" -> "Intel(R) Xeon(R) CPU E5-2680 v4"; runs of
 * spaces collapse to one (some vendors pad the brand string). */
static void strip_cpu_frequency(char *s)
{
    char *at = strstr(s, " @ ");
    if (at) {
        const char *p = at + 3;
        int digits = 0;
        while (isdigit((unsigned char)*p) || *p == '.') {
            digits |= isdigit((unsigned char)*p);
            p++;
        }
        while (*p == ' ')
            p++;
        if (digits && (strncasecmp(p, "GHz", 3) == 0 || strncasecmp(p, "MHz", 3) == 0))
            *at = '\0';
    }
    char *w = s;
    for (const char *r = s; *r; r++) {
        if (*r == ' ' && (w == s || w[-1] == ' '))
            continue;
        *w++ = *r;
    }
    *w = '\0';
    trim(s);
}

static void read_cpu_model(const lv_sysmon_t *m, char *out, size_t cap)
{
    out[0] = '\0';
    char path[SYSMON_PATH_MAX];
    int n = snprintf(path, sizeof(path), "%s/proc/cpuinfo", m->proc_root);
    FILE *f = (n > 0 && (size_t)n < sizeof(path)) ? fopen(path, "re") : NULL;
    if (f) {
        char line[512];
        while (fgets(line, sizeof(line), f)) {
            if (strncmp(line, "model name", 10) != 0)
                continue;
            char *colon = strchr(line, ':');
            if (colon) {
                copy_str(out, cap, colon + 1);
                strip_cpu_frequency(out);
            }
            break;
        }
        fclose(f);
    }
    if (!out[0]) {
        /* ARM kernels (Jetson, Grace) have no "model name": name the architecture instead. */
        struct utsname u;
        if (uname(&u) == 0)
            copy_str(out, cap, u.machine);
    }
}

static int is_placeholder_product(const char *s)
{
    static const char *const junk[] = {"To Be Filled By O.E.M.", "To be filled by O.E.M.", "System Product Name",
                                       "Default string", "Not Applicable", "None"};
    for (size_t i = 0; i < LV_ARRAY_LEN(junk); i++)
        if (strcasecmp(s, junk[i]) == 0)
            return 1;
    return 0;
}

/* DGX OS names itself in /etc/dgx-release; PCs in DMI; Jetsons in the devicetree. */
static void read_product_name(const lv_sysmon_t *m, char *out, size_t cap)
{
    char buf[2048];
    out[0] = '\0';
    if (read_file(m->sysfs_root, "/etc/dgx-release", buf, sizeof(buf)) > 0) {
        char *p = strstr(buf, "DGX_PRETTY_NAME=");
        if (p) {
            p += strlen("DGX_PRETTY_NAME=");
            p[strcspn(p, "\n")] = '\0';
            size_t len = strlen(p);
            if (len >= 2 && p[0] == '"' && p[len - 1] == '"') {
                p[len - 1] = '\0';
                p++;
            }
            copy_str(out, cap, p);
            trim(out);
            if (out[0])
                return;
        }
    }
    if (read_file(m->sysfs_root, "/sys/class/dmi/id/product_name", buf, sizeof(buf)) > 0) {
        copy_str(out, cap, buf);
        trim(out);
        if (out[0] && !is_placeholder_product(out))
            return;
        out[0] = '\0';
    }
    if (read_file(m->sysfs_root, "/sys/firmware/devicetree/base/model", buf, sizeof(buf)) > 0) {
        copy_str(out, cap, buf); /* stops at the devicetree string's NUL */
        trim(out);
    }
}

/* Jetson GPU load file: the classic paths, else a devfreq device whose of_node names an
 * integrated NVIDIA GPU (what jetson-stats looks for). Best-effort; probed once. */
static void probe_jetson(lv_sysmon_t *m)
{
    static const char *const fixed[] = {"/sys/devices/platform/gpu.0/load", "/sys/devices/gpu.0/load"};
    static const char *const gpu_nodes[] = {"gv11b", "gp10b", "ga10b", "gb10b", "gpu"};
    char buf[64];
    m->is_jetson = path_exists(m->sysfs_root, "/etc/nv_tegra_release");
    m->jetson_load_path[0] = '\0';
    for (size_t i = 0; i < LV_ARRAY_LEN(fixed); i++) {
        if (read_file(m->sysfs_root, fixed[i], buf, sizeof(buf)) > 0) {
            copy_str(m->jetson_load_path, sizeof(m->jetson_load_path), fixed[i]);
            return;
        }
    }
    char dir_path[SYSMON_PATH_MAX];
    int n = snprintf(dir_path, sizeof(dir_path), "%s/sys/class/devfreq", m->sysfs_root);
    DIR *d = (n > 0 && (size_t)n < sizeof(dir_path)) ? opendir(dir_path) : NULL;
    if (!d)
        return;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.')
            continue;
        char rel[SYSMON_PATH_MAX];
        n = snprintf(rel, sizeof(rel), "/sys/class/devfreq/%s/device/of_node/name", e->d_name);
        if (n < 0 || (size_t)n >= sizeof(rel) || read_file(m->sysfs_root, rel, buf, sizeof(buf)) <= 0)
            continue;
        trim(buf);
        int match = 0;
        for (size_t i = 0; i < LV_ARRAY_LEN(gpu_nodes); i++)
            match |= strcmp(buf, gpu_nodes[i]) == 0;
        n = snprintf(rel, sizeof(rel), "/sys/class/devfreq/%s/device/load", e->d_name);
        if (match && n > 0 && (size_t)n < sizeof(rel) && read_file(m->sysfs_root, rel, buf, sizeof(buf)) > 0) {
            copy_str(m->jetson_load_path, sizeof(m->jetson_load_path), rel);
            break;
        }
    }
    closedir(d);
}

/* The load file holds tenths of a percent (0..1000). NAN when unreadable. */
static double read_jetson_load(const lv_sysmon_t *m)
{
    char buf[64];
    if (!m->jetson_load_path[0] || read_file(m->sysfs_root, m->jetson_load_path, buf, sizeof(buf)) <= 0)
        return NAN;
    char *end;
    long v = strtol(buf, &end, 10);
    if (end == buf || v < 0)
        return NAN;
    return v > 1000 ? 100.0 : (double)v / 10.0;
}

static void read_fixed_info(lv_sysmon_t *m)
{
    if (gethostname(m->hostname, sizeof(m->hostname)) != 0)
        m->hostname[0] = '\0';
    m->hostname[sizeof(m->hostname) - 1] = '\0';
    read_cpu_model(m, m->cpu_model, sizeof(m->cpu_model));
    read_product_name(m, m->product_name, sizeof(m->product_name));
    probe_jetson(m);
    m->fixed_read = 1;
}

/* CPU busy share between this /proc/stat reading and the previous one, as psutil computes it:
 * idle = idle + iowait; total = user..steal (guest time is already inside user). */
static void read_cpu(lv_sysmon_t *m, sysmon_sample_t *s)
{
    char buf[1024]; /* the aggregate "cpu " line comes first */
    if (read_file(m->proc_root, "/proc/stat", buf, sizeof(buf)) <= 0 || strncmp(buf, "cpu ", 4) != 0) {
        m->have_prev = 0;
        return;
    }
    unsigned long long v[8] = {0};
    char *p = buf + 4;
    size_t fields = 0;
    for (; fields < LV_ARRAY_LEN(v); fields++) {
        char *end;
        v[fields] = strtoull(p, &end, 10);
        if (end == p)
            break;
        p = end;
    }
    if (fields < 4) {
        m->have_prev = 0;
        return;
    }
    unsigned long long total = 0;
    for (size_t i = 0; i < fields; i++)
        total += v[i];
    unsigned long long idle = v[3] + v[4];
    if (m->have_prev && total > m->prev_total && idle >= m->prev_idle) {
        unsigned long long dtotal = total - m->prev_total, didle = idle - m->prev_idle;
        if (didle > dtotal)
            didle = dtotal;
        s->cpu_percent = 100.0 * (double)(dtotal - didle) / (double)dtotal;
    }
    /* Counters that went backwards (CPU hot-unplug) just start a new baseline. */
    m->prev_total = total;
    m->prev_idle = idle;
    m->have_prev = 1;
}

static void read_mem(const lv_sysmon_t *m, sysmon_sample_t *s)
{
    char buf[8192];
    if (read_file(m->proc_root, "/proc/meminfo", buf, sizeof(buf)) <= 0)
        return;
    static const char *const keys[] = {"MemTotal:", "MemAvailable:", "MemFree:", "Buffers:", "Cached:"};
    long long kb[LV_ARRAY_LEN(keys)];
    for (size_t i = 0; i < LV_ARRAY_LEN(keys); i++) {
        kb[i] = -1;
        for (char *line = buf; line && *line; line = strchr(line, '\n'), line = line ? line + 1 : NULL) {
            size_t klen = strlen(keys[i]);
            if (strncmp(line, keys[i], klen) == 0) {
                char *end;
                long long v = strtoll(line + klen, &end, 10);
                if (end != line + klen && v >= 0)
                    kb[i] = v;
                break;
            }
        }
    }
    long long total = kb[0], avail = kb[1];
    if (avail < 0 && kb[2] >= 0) /* kernels before 3.14 lack MemAvailable */
        avail = kb[2] + LV_MAX(kb[3], 0) + LV_MAX(kb[4], 0);
    if (total <= 0 || avail < 0)
        return;
    if (avail > total)
        avail = total;
    s->ram_total_gb = (double)total * 1024.0 / SYSMON_GIB;
    s->ram_used_gb = (double)(total - avail) * 1024.0 / SYSMON_GIB;
    s->ram_percent = 100.0 * (double)(total - avail) / (double)total;
}

static void read_gpu(lv_sysmon_t *m, sysmon_sample_t *s)
{
    char why[256] = "";
    if (m->nvml_state == NVML_NOT_TRIED) {
        if (lv_nvml_open(m->nvml_lib[0] ? m->nvml_lib : NULL, &m->nvml, why, sizeof(why)) == 0) {
            m->nvml_state = NVML_OPEN;
        } else {
            m->nvml_state = NVML_OFF;
            s->note_level = LV_LOG_INFO;
            snprintf(s->note, sizeof(s->note), "sysmon: NVML unavailable (%s); no NVIDIA GPU stats", why);
        }
    }
    lv_nvml_reading_t r;
    memset(&r, 0, sizeof(r));
    int nvml_ok = 0;
    if (m->nvml_state == NVML_OPEN) {
        int rc = lv_nvml_read(m->nvml, 0, &r);
        if (rc == 0) {
            nvml_ok = 1;
        } else if (rc == LV_ECLOSED) {
            s->note_level = LV_LOG_WARN;
            snprintf(s->note, sizeof(s->note), "sysmon: NVML disabled: %s", lv_nvml_why(m->nvml));
            lv_nvml_close(m->nvml);
            m->nvml = NULL;
            m->nvml_state = NVML_OFF;
        }
    }
    if (nvml_ok) {
        s->gpu_count = (int)r.gpu_count;
        copy_str(s->gpu_name, sizeof(s->gpu_name), r.name);
        trim(s->gpu_name);
        if (r.util_ok)
            s->gpu_percent = (double)r.util_gpu_pct;
        if (r.mem_ok) {
            s->vram_total_gb = (double)r.mem_total_bytes / SYSMON_GIB;
            s->vram_used_gb = (double)r.mem_used_bytes / SYSMON_GIB;
            s->vram_percent = 100.0 * (double)r.mem_used_bytes / (double)r.mem_total_bytes;
        }
        if (r.temp_ok)
            s->temp_c = (double)r.temp_c;
        if (r.power_ok)
            s->power_w = (double)r.power_mw / 1000.0;
    }
    if (isnan(s->gpu_percent))
        s->gpu_percent = read_jetson_load(m);
    int jetson = m->is_jetson || m->jetson_load_path[0];
    const char *platform = "NVIDIA (NVML unavailable)";
    if (nvml_ok && r.util_ok)
        platform = "NVIDIA (NVML)";
    else if (jetson)
        platform = "Jetson (sysfs)";
    else if (nvml_ok)
        platform = "NVIDIA (NVML)";
    copy_str(s->platform, sizeof(s->platform), platform);
}

/* The work itself: everything a sample needs, no subprocesses, no allocation beyond NVML's own. */
static void sample_take(lv_sysmon_t *m)
{
    sysmon_sample_t *s = &m->sample;
    memset(s, 0, sizeof(*s));
    s->gpu_count = -1;
    s->cpu_percent = s->ram_used_gb = s->ram_total_gb = s->ram_percent = NAN;
    s->gpu_percent = s->vram_used_gb = s->vram_total_gb = s->vram_percent = s->temp_c = s->power_w = NAN;
    if (!m->fixed_read)
        read_fixed_info(m);
    copy_str(s->hostname, sizeof(s->hostname), m->hostname);
    copy_str(s->cpu_model, sizeof(s->cpu_model), m->cpu_model);
    copy_str(s->product_name, sizeof(s->product_name), m->product_name);
    read_cpu(m, s);
    read_mem(m, s);
    read_gpu(m, s);
}

/* ---- rendering (loop thread) ---- */

/* A JSON string, or null for "". Invalid UTF-8 becomes U+FFFD: the text goes out in WebSocket
 * text frames, where invalid UTF-8 makes browsers drop the connection (RFC 6455 8.1). */
static int put_str(lv_buf_t *b, const char *s)
{
    if (!s[0])
        return lv_buf_append_str(b, "null");
    return lv_json_str_append_lossy(b, s, strlen(s));
}

/* Every value rendered here is a non-negative measure; NAN and infinities are null. */
static int put_num(lv_buf_t *b, double v, int decimals)
{
    if (!isfinite(v))
        return lv_buf_append_str(b, "null");
    return lv_buf_printf(b, "%.*f", decimals, v < 0 ? 0.0 : v);
}

static const int hist_decimals[HIST_SERIES] = {1, 2, 1, 2};

static int render(const lv_sysmon_t *m, const sysmon_sample_t *s, lv_buf_t *b)
{
    int rc = 0;
    lv_buf_reset(b);
#define KEY(k) (rc = rc ? rc : lv_buf_append_str(b, k))
#define STR(v) (rc = rc ? rc : put_str(b, v))
#define NUM(v, d) (rc = rc ? rc : put_num(b, v, d))
    KEY("{\"hostname\":"), STR(s->hostname);
    KEY(",\"cpu_model\":"), STR(s->cpu_model);
    KEY(",\"cpu_percent\":"), NUM(s->cpu_percent, 1);
    KEY(",\"ram_used_gb\":"), NUM(s->ram_used_gb, 2);
    KEY(",\"ram_total_gb\":"), NUM(s->ram_total_gb, 2);
    KEY(",\"ram_percent\":"), NUM(s->ram_percent, 1);
    KEY(",\"platform\":"), STR(s->platform);
    KEY(",\"gpu_name\":"), STR(s->gpu_name);
    KEY(",\"gpu_count\":"), NUM(s->gpu_count < 0 ? NAN : (double)s->gpu_count, 0);
    KEY(",\"gpu_percent\":"), NUM(s->gpu_percent, 1);
    KEY(",\"vram_used_gb\":"), NUM(s->vram_used_gb, 2);
    KEY(",\"vram_total_gb\":"), NUM(s->vram_total_gb, 2);
    KEY(",\"vram_percent\":"), NUM(s->vram_percent, 1);
    KEY(",\"temp_c\":"), NUM(s->temp_c, 0);
    KEY(",\"power_w\":"), NUM(s->power_w, 1);
    KEY(",\"product_name\":"), STR(s->product_name);
    KEY(",\"history\":{");
    for (int h = 0; h < HIST_SERIES; h++) {
        if (h)
            KEY(",");
        KEY("\""), KEY(hist_names[h]), KEY("\":[");
        size_t first = (m->hist_next + SYSMON_HISTORY_LEN - m->hist_count) % SYSMON_HISTORY_LEN;
        for (size_t i = 0; i < m->hist_count; i++) {
            if (i)
                KEY(",");
            NUM(m->history[h][(first + i) % SYSMON_HISTORY_LEN], hist_decimals[h]);
        }
        KEY("]");
    }
    KEY("}}");
#undef KEY
#undef STR
#undef NUM
    return rc;
}

/* Render into the spare buffer and flip, so a failed render leaves the last good text in place. */
static void render_and_swap(lv_sysmon_t *m, const sysmon_sample_t *s)
{
    lv_buf_t *spare = &m->json[!m->cur];
    int rc = render(m, s, spare);
    if (rc) {
        LV_WARN("sysmon: rendering stats failed: %s", lv_strerror(rc));
        return;
    }
    m->cur = !m->cur;
}

static void sample_land(lv_sysmon_t *m)
{
    const sysmon_sample_t *s = &m->sample;
    if (s->note[0])
        lv_log(s->note_level, "%s", s->note);
    const double values[HIST_SERIES] = {s->cpu_percent, s->ram_used_gb, s->gpu_percent, s->vram_used_gb};
    for (int h = 0; h < HIST_SERIES; h++)
        m->history[h][m->hist_next] = values[h];
    m->hist_next = (m->hist_next + 1) % SYSMON_HISTORY_LEN;
    if (m->hist_count < SYSMON_HISTORY_LEN)
        m->hist_count++;
    render_and_swap(m, s);
}

/* ---- lifecycle (loop thread) ---- */

static void maybe_free(lv_sysmon_t *m)
{
    if (!m->timer_closed || m->in_flight)
        return;
    lv_nvml_close(m->nvml);
    lv_buf_free(&m->json[0]);
    lv_buf_free(&m->json[1]);
    free(m);
}

static void on_work(uv_work_t *req) { sample_take(LV_CONTAINER_OF(req, lv_sysmon_t, work)); }

static void on_work_done(uv_work_t *req, int status)
{
    lv_sysmon_t *m = LV_CONTAINER_OF(req, lv_sysmon_t, work);
    m->in_flight = 0;
    if (m->stopping) {
        maybe_free(m);
        return;
    }
    if (status == 0)
        sample_land(m);
}

static void on_tick(uv_timer_t *t)
{
    lv_sysmon_t *m = t->data;
    if (m->in_flight || m->stopping)
        return; /* the previous sample is still out (slow NVML): skip this tick */
    m->in_flight = 1;
    int rc = uv_queue_work(m->loop, &m->work, on_work, on_work_done);
    if (rc) {
        m->in_flight = 0;
        LV_WARN("sysmon: uv_queue_work: %s", uv_strerror(rc));
    }
}

static void on_timer_closed(uv_handle_t *h)
{
    lv_sysmon_t *m = h->data;
    m->timer_closed = 1;
    maybe_free(m);
}

static int env_copy(const char *name, char *dst, size_t cap)
{
    const char *v = getenv(name);
    dst[0] = '\0';
    if (!v)
        return 0;
    if (strlen(v) >= cap) {
        LV_ERROR("sysmon: %s is longer than %zu bytes", name, cap - 1);
        return LV_EINVAL;
    }
    copy_str(dst, cap, v);
    return 0;
}

int lv_sysmon_start(uv_loop_t *loop, int period_ms, lv_sysmon_t **out)
{
    if (!out)
        return LV_EINVAL;
    *out = NULL;
    if (!loop || period_ms < 250 || period_ms > 60000)
        return LV_EINVAL;
    lv_sysmon_t *m = calloc(1, sizeof(*m));
    if (!m)
        return LV_ENOMEM;
    int rc = env_copy("LIVEVLM_PROC_ROOT", m->proc_root, sizeof(m->proc_root));
    if (!rc)
        rc = env_copy("LIVEVLM_SYSFS_ROOT", m->sysfs_root, sizeof(m->sysfs_root));
    if (!rc)
        rc = env_copy("LIVEVLM_NVML_LIB", m->nvml_lib, sizeof(m->nvml_lib));
    if (rc)
        goto out;
    m->loop = loop;
    lv_buf_init(&m->json[0], SYSMON_JSON_MAX_BYTES);
    lv_buf_init(&m->json[1], SYSMON_JSON_MAX_BYTES);
    /* The text before the first sample: the same keys, all null. */
    memset(&m->sample, 0, sizeof(m->sample));
    m->sample.gpu_count = -1;
    m->sample.cpu_percent = m->sample.ram_used_gb = m->sample.ram_total_gb = m->sample.ram_percent = NAN;
    m->sample.gpu_percent = m->sample.vram_used_gb = m->sample.vram_total_gb = NAN;
    m->sample.vram_percent = m->sample.temp_c = m->sample.power_w = NAN;
    rc = render(m, &m->sample, &m->json[0]);
    if (rc)
        goto out;
    rc = uv_timer_init(loop, &m->timer);
    if (rc) {
        rc = LV_EIO;
        goto out;
    }
    m->timer.data = m;
    rc = uv_timer_start(&m->timer, on_tick, 0, (uint64_t)period_ms);
    if (rc) {
        /* The handle is initialised, so it must be closed through the loop. */
        m->stopping = 1;
        uv_close((uv_handle_t *)&m->timer, on_timer_closed);
        return LV_EIO;
    }
    *out = m;
    return 0;
out:
    lv_buf_free(&m->json[0]);
    lv_buf_free(&m->json[1]);
    free(m);
    return rc;
}

const char *lv_sysmon_json(const lv_sysmon_t *m, size_t *len)
{
    const lv_buf_t *b = &m->json[m->cur];
    if (len)
        *len = b->len;
    return b->data;
}

void lv_sysmon_stop(lv_sysmon_t *m)
{
    if (!m || m->stopping)
        return;
    m->stopping = 1;
    uv_timer_stop(&m->timer);
    uv_close((uv_handle_t *)&m->timer, on_timer_closed);
    if (m->in_flight)
        uv_cancel((uv_req_t *)&m->work); /* fine if it already runs: its done callback frees m */
}

int lv_sysmon__sample_now(lv_sysmon_t *m)
{
    if (m->in_flight || m->stopping)
        return LV_EAGAIN;
    sample_take(m);
    sample_land(m);
    return 0;
}
