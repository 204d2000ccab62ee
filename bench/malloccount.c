/* bench/malloccount.c - an LD_PRELOAD shim that counts heap calls (malloc, calloc, realloc, free,
 * the aligned allocators) of the process it is loaded into, so a benchmark can divide them by the
 * frames the server handled (bench/scenarios/allocs.sh). Built as $(BUILD)/malloccount.so.
 *
 *   MALLOCCOUNT_OUT=/tmp/counts LD_PRELOAD=build/malloccount.so build/livevlm serve ...
 *   kill -USR2 PID        # appends one line of totals to MALLOCCOUNT_OUT (or stderr)
 *
 * Each line is "tag=N ..." with the process totals and, apart, those of the main thread (the one
 * whose id is the process id, which runs livevlm's loop): "main_" counters. A line is also written at
 * exit. MALLOCCOUNT_SIGNAL picks another signal number than SIGUSR2.
 *
 * It forwards to the next malloc (glibc's) found with dlsym(RTLD_NEXT); dlsym itself may call
 * calloc before that is known, so the first calls are served from a small static arena (never
 * freed back to glibc). Counters are relaxed atomics: the totals are exact, their order is not.
 * The signal handler only formats integers and write(2)s them: it is async-signal-safe. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <malloc.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

enum { C_MALLOC, C_CALLOC, C_REALLOC, C_FREE, C_ALIGNED, C_BYTES, C_N };
static const char *const names[C_N] = {"malloc", "calloc", "realloc", "free", "aligned", "bytes"};

static _Atomic uint64_t all[C_N];
static _Atomic uint64_t main_thr[C_N];
static __thread int8_t on_main = -1; /* -1: not asked yet */

static void *(*next_malloc)(size_t);
static void *(*next_calloc)(size_t, size_t);
static void *(*next_realloc)(void *, size_t);
static void (*next_free)(void *);
static int (*next_memalign)(void **, size_t, size_t);
static void *(*next_aligned_alloc)(size_t, size_t);

/* dlsym's own allocations before the real functions are known */
static _Alignas(16) unsigned char boot[8192];
static size_t boot_used;
static int resolving;

static bool from_boot(const void *p)
{
    return (const unsigned char *)p >= boot && (const unsigned char *)p < boot + sizeof(boot);
}

static void *boot_alloc(size_t n)
{
    n = (n + 15) & ~(size_t)15;
    if (boot_used + n > sizeof(boot))
        return NULL;
    void *p = boot + boot_used;
    boot_used += n;
    return p;
}

static void count(int what, uint64_t bytes)
{
    if (on_main < 0)
        on_main = (pid_t)syscall(SYS_gettid) == getpid(); /* the main thread's id is the pid */
    atomic_fetch_add_explicit(&all[what], 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&all[C_BYTES], bytes, memory_order_relaxed);
    if (on_main) {
        atomic_fetch_add_explicit(&main_thr[what], 1, memory_order_relaxed);
        atomic_fetch_add_explicit(&main_thr[C_BYTES], bytes, memory_order_relaxed);
    }
}

static void resolve(void)
{
    if (next_malloc || resolving)
        return;
    resolving = 1;
    next_calloc = (void *(*)(size_t, size_t))dlsym(RTLD_NEXT, "calloc");
    next_malloc = (void *(*)(size_t))dlsym(RTLD_NEXT, "malloc");
    next_realloc = (void *(*)(void *, size_t))dlsym(RTLD_NEXT, "realloc");
    next_free = (void (*)(void *))dlsym(RTLD_NEXT, "free");
    next_memalign = (int (*)(void **, size_t, size_t))dlsym(RTLD_NEXT, "posix_memalign");
    next_aligned_alloc = (void *(*)(size_t, size_t))dlsym(RTLD_NEXT, "aligned_alloc");
    resolving = 0;
}

void *malloc(size_t n)
{
    resolve();
    if (!next_malloc)
        return boot_alloc(n);
    count(C_MALLOC, n);
    return next_malloc(n);
}

void *calloc(size_t k, size_t n)
{
    resolve();
    if (!next_calloc) {
        if (n && k > SIZE_MAX / n)
            return NULL;
        return boot_alloc(k * n); /* static memory is zeroed */
    }
    count(C_CALLOC, (uint64_t)k * n);
    return next_calloc(k, n);
}

void *realloc(void *p, size_t n)
{
    resolve();
    if (from_boot(p)) { /* move it out of the arena; its old size is unknown, the arena's end bounds it */
        void *q = malloc(n);
        if (q) {
            size_t room = (size_t)(boot + sizeof(boot) - (unsigned char *)p);
            memcpy(q, p, n < room ? n : room);
        }
        return q;
    }
    count(C_REALLOC, n);
    return next_realloc(p, n);
}

void free(void *p)
{
    if (!p || from_boot(p))
        return;
    resolve();
    count(C_FREE, 0);
    next_free(p);
}

int posix_memalign(void **out, size_t align, size_t n)
{
    resolve();
    count(C_ALIGNED, n);
    return next_memalign(out, align, n);
}

void *aligned_alloc(size_t align, size_t n)
{
    resolve();
    count(C_ALIGNED, n);
    return next_aligned_alloc(align, n);
}

void *memalign(size_t align, size_t n)
{
    void *p = NULL;
    return posix_memalign(&p, align < sizeof(void *) ? sizeof(void *) : align, n) == 0 ? p : NULL;
}

/* ---------- output (async-signal-safe) ---------- */

static size_t put_str(char *b, size_t at, size_t cap, const char *s)
{
    while (*s && at < cap)
        b[at++] = *s++;
    return at;
}

static size_t put_u64(char *b, size_t at, size_t cap, uint64_t v)
{
    char d[24];
    int n = 0;
    do
        d[n++] = (char)('0' + v % 10);
    while ((v /= 10) && n < (int)sizeof(d));
    while (n && at < cap)
        b[at++] = d[--n];
    return at;
}

static void dump(const char *why)
{
    char line[512];
    size_t at = put_str(line, 0, sizeof(line), "malloccount ");
    at = put_str(line, at, sizeof(line), why);
    for (int i = 0; i < C_N; i++) {
        at = put_str(line, at, sizeof(line), " ");
        at = put_str(line, at, sizeof(line), names[i]);
        at = put_str(line, at, sizeof(line), "=");
        at = put_u64(line, at, sizeof(line), atomic_load_explicit(&all[i], memory_order_relaxed));
    }
    for (int i = 0; i < C_N; i++) {
        at = put_str(line, at, sizeof(line), " main_");
        at = put_str(line, at, sizeof(line), names[i]);
        at = put_str(line, at, sizeof(line), "=");
        at = put_u64(line, at, sizeof(line), atomic_load_explicit(&main_thr[i], memory_order_relaxed));
    }
    at = put_str(line, at, sizeof(line) - 1, "\n");
    const char *path = getenv("MALLOCCOUNT_OUT"); /* getenv allocates nothing */
    int fd = path ? open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644) : 2;
    if (fd < 0)
        return;
    ssize_t w = write(fd, line, at);
    (void)w;
    if (fd != 2)
        close(fd);
}

static void on_signal(int sig)
{
    int saved = errno;
    dump("signal");
    errno = saved;
}

__attribute__((constructor)) static void malloccount_init(void)
{
    resolve();
    const char *s = getenv("MALLOCCOUNT_SIGNAL");
    int sig = s && *s ? (int)strtol(s, NULL, 10) : SIGUSR2;
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_signal;
    sa.sa_flags = SA_RESTART;
    sigemptyset(&sa.sa_mask);
    sigaction(sig, &sa, NULL);
}

__attribute__((destructor)) static void malloccount_fini(void) { dump("exit"); }
