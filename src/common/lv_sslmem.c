/* lv_sslmem.c - OpenSSL's allocator with a bounded per-thread LIFO cache of TLS record buffers
 * (why, which sizes and the memory bound: lv_sslmem.h). */
#include "lv_sslmem.h"

#include <openssl/crypto.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lv_common.h"

#if defined(__SANITIZE_ADDRESS__)
#define LV_SSLMEM_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define LV_SSLMEM_ASAN 1
#endif
#endif
#ifndef LV_SSLMEM_ASAN
#define LV_SSLMEM_ASAN 0
#endif

#define NO_CLASS UINT32_MAX
#define MAGIC_LIVE 0x6c76736dU   /* a block OpenSSL holds */
#define MAGIC_CACHED 0x6c766663U /* a block on a free list: freeing it again is a double free */

/* A class takes requests in (min_size, block_size] and always allocates block_size, so any block
 * on its list fits any request of the class. */
static const struct {
    size_t min_size; /* exclusive */
    size_t block_size;
} classes[LV_SSLMEM_CLASSES] = {
    {16 * 1024, 17 * 1024}, /* write buffers (16584) and default-size read buffers (16712) */
    {48 * 1024, 64 * 1024}, /* read buffers with the front door's 64 KiB read-ahead (65536) */
};

/* In front of every block. HDR_SIZE keeps what OpenSSL gets aligned as malloc's own result. */
typedef struct {
    uint32_t magic;
    uint32_t cls; /* index into classes, or NO_CLASS */
    size_t size;  /* bytes the caller asked for (a class block has classes[cls].block_size) */
} block_hdr_t;
#define HDR_SIZE ((sizeof(block_hdr_t) + _Alignof(max_align_t) - 1) / _Alignof(max_align_t) * _Alignof(max_align_t))

typedef struct {
    void *head[LV_SSLMEM_CLASSES]; /* LIFO of block_hdr_t, linked through the first bytes after it */
    lv_sslmem_stats_t stats;       /* freed_at_thread_exit unused here (it is process-wide) */
    bool registered;               /* the pthread key holds this thread's cache: dropped at exit */
    bool closed;                   /* the exit destructor ran: free straight away from now on */
} thread_cache_t;

static _Thread_local thread_cache_t tcache;
/* Set once by lv_sslmem_install, before any thread starts. */
static bool installed;
static const char *install_text = "OpenSSL buffer cache not installed";
static pthread_once_t key_once = PTHREAD_ONCE_INIT;
static pthread_key_t exit_key;
static bool exit_key_ok;
static atomic_uint_fast64_t freed_at_exit;

static uint32_t class_of(size_t size)
{
    for (uint32_t i = 0; i < LV_SSLMEM_CLASSES; i++)
        if (size > classes[i].min_size && size <= classes[i].block_size)
            return i;
    return NO_CLASS;
}

static block_hdr_t *hdr_of(void *ptr, const char *what)
{
    block_hdr_t *h = (block_hdr_t *)(void *)((char *)ptr - HDR_SIZE);
    if (h->magic != MAGIC_LIVE) {
        /* a double free, a pointer from libc's malloc, or an overwritten header: going on would
         * corrupt the heap further */
        fprintf(stderr, "lv_sslmem: %s of a block it does not hold (%p, %s)\n", what, ptr,
                h->magic == MAGIC_CACHED ? "already freed" : "bad header");
        abort();
    }
    return h;
}

static void *user_of(block_hdr_t *h)
{
    return (char *)h + HDR_SIZE;
}

static void **link_of(block_hdr_t *h)
{
    return (void **)user_of(h);
}

static void cache_flush(thread_cache_t *c, bool at_exit)
{
    for (uint32_t i = 0; i < LV_SSLMEM_CLASSES; i++) {
        while (c->head[i]) {
            block_hdr_t *h = c->head[i];
            c->head[i] = *link_of(h);
            c->stats.held[i]--;
            h->magic = 0;
            free(h);
            if (at_exit)
                atomic_fetch_add_explicit(&freed_at_exit, 1, memory_order_relaxed);
        }
    }
}

/* Runs at thread exit (not for the main thread, whose cache ends with the process). Frees that
 * arrive later (another library's exit destructor) go straight to free. */
static void cache_drop_at_exit(void *arg)
{
    thread_cache_t *c = arg;
    c->closed = true;
    cache_flush(c, true);
}

static void exit_key_create(void)
{
    exit_key_ok = pthread_key_create(&exit_key, cache_drop_at_exit) == 0;
}

/* Put a class block on this thread's list; false when it must be freed instead. */
static bool cache_put(block_hdr_t *h)
{
    thread_cache_t *c = &tcache;
    if (LV_SSLMEM_ASAN || c->closed || c->stats.held[h->cls] >= LV_SSLMEM_PER_CLASS)
        return false;
    if (!c->registered) {
        /* a thread whose list could not be freed at its exit does not cache at all */
        pthread_once(&key_once, exit_key_create);
        if (!exit_key_ok || pthread_setspecific(exit_key, c) != 0)
            return false;
        c->registered = true;
    }
    h->magic = MAGIC_CACHED;
    *link_of(h) = c->head[h->cls];
    c->head[h->cls] = h;
    c->stats.held[h->cls]++;
    c->stats.kept++;
    return true;
}

static block_hdr_t *cache_take(uint32_t cls)
{
    thread_cache_t *c = &tcache;
    block_hdr_t *h = c->head[cls];
    if (!h)
        return NULL;
    c->head[cls] = *link_of(h);
    c->stats.held[cls]--;
    c->stats.reused++;
    return h;
}

void *lv_sslmem_malloc(size_t size, const char *file, int line)
{
    (void)file;
    (void)line;
    if (size == 0 || size > SIZE_MAX - HDR_SIZE - 1)
        return NULL;
    uint32_t cls = class_of(size);
    block_hdr_t *h = cls == NO_CLASS ? NULL : cache_take(cls);
    if (!h) {
        h = malloc(HDR_SIZE + (cls == NO_CLASS ? size : classes[cls].block_size));
        if (!h)
            return NULL;
    }
    h->magic = MAGIC_LIVE;
    h->cls = cls;
    h->size = size;
    return user_of(h);
}

void lv_sslmem_free(void *ptr, const char *file, int line)
{
    (void)file;
    (void)line;
    if (!ptr)
        return;
    block_hdr_t *h = hdr_of(ptr, "free");
    if (h->cls != NO_CLASS) {
        if (cache_put(h))
            return;
        tcache.stats.released++;
    }
    h->magic = 0;
    free(h);
}

void *lv_sslmem_realloc(void *ptr, size_t size, const char *file, int line)
{
    if (!ptr)
        return lv_sslmem_malloc(size, file, line);
    if (size == 0) {
        lv_sslmem_free(ptr, file, line);
        return NULL;
    }
    if (size > SIZE_MAX - HDR_SIZE - 1)
        return NULL;
    block_hdr_t *h = hdr_of(ptr, "realloc");
    uint32_t cls = class_of(size);
    if (cls != NO_CLASS && cls == h->cls) { /* the block is already as big as its class */
        h->size = size;
        return ptr;
    }
    if (cls == NO_CLASS && h->cls == NO_CLASS) { /* neither end is cached: libc may grow in place */
        block_hdr_t *n = realloc(h, HDR_SIZE + size);
        if (!n)
            return NULL;
        n->size = size;
        return user_of(n);
    }
    /* into or out of a class: a block of the new kind, the bytes copied, the old one freed */
    void *out = lv_sslmem_malloc(size, file, line);
    if (!out)
        return NULL; /* ptr stays valid, as with realloc */
    memcpy(out, ptr, LV_MIN(h->size, size));
    lv_sslmem_free(ptr, file, line);
    return out;
}

int lv_sslmem_install(void)
{
    if (installed)
        return 0; /* OpenSSL would refuse it now: its first allocation went through us */
    if (LV_SSLMEM_ASAN) {
        install_text = "OpenSSL buffer cache off: AddressSanitizer build (it must see OpenSSL's frees)";
        return LV_EINVAL;
    }
    if (!CRYPTO_set_mem_functions(lv_sslmem_malloc, lv_sslmem_realloc, lv_sslmem_free)) {
        install_text = "OpenSSL buffer cache off: OpenSSL had allocated before it could be installed";
        return LV_EINVAL;
    }
    installed = true;
    install_text = "OpenSSL buffer cache on";
    return 0;
}

const char *lv_sslmem_describe(void)
{
    return install_text;
}

bool lv_sslmem_installed(void)
{
    return installed;
}

bool lv_sslmem_caching(void)
{
    return !LV_SSLMEM_ASAN;
}

void lv_sslmem_stats(lv_sslmem_stats_t *out)
{
    *out = tcache.stats;
    out->freed_at_thread_exit = atomic_load_explicit(&freed_at_exit, memory_order_relaxed);
}

void lv_sslmem_thread_flush(void)
{
    cache_flush(&tcache, false);
}
