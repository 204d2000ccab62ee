/* lv_sslmem.h - OpenSSL's allocator, with a small per-thread cache of its TLS record buffers.
 *
 * Why it exists: the front door sets SSL_MODE_RELEASE_BUFFERS (lv_tlsio.c) so that an idle TLS
 * connection holds no record buffers (about 34 KB each; an idle session must stay under 64 KB).
 * The price is that OpenSSL mallocs and frees its write buffer on every SSL_write and its read
 * buffer on every read that drains it: 41 % and 8 % of the loop thread's heap calls, and several
 * per cent of the server's CPU per frame in glibc's large-chunk paths. These functions keep
 * RELEASE_BUFFERS (idle connections still hold nothing) but hand the freed buffers to the next
 * SSL_write or SSL_read on the same thread instead of to glibc.
 *
 * Which blocks: OpenSSL 3.0 asks for exactly these (measured with a print in these callbacks over
 * TLS 1.2 and 1.3): 16584 bytes for a write buffer (16 KB record + overheads), 16712 for a read
 * buffer of the default size (a client without read-ahead, such as curl's) and 65536 for a read
 * buffer with the front door's read-ahead (LV_TLSIO_READ_AHEAD). So there are two classes: requests in
 * (16 KiB, 17 KiB] get a 17 KiB block and requests in (48 KiB, 64 KiB] a 64 KiB block (at most a
 * quarter wasted on a size nobody asks for today). Every other size goes straight to malloc.
 *
 * Memory bound: each thread keeps at most LV_SSLMEM_PER_CLASS (16) free blocks per class, so at
 * most 16 x (17 + 64) KiB = 1296 KiB (plus 16 bytes of header each) per thread that frees TLS
 * buffers: the loop thread and whichever threads run curl over HTTPS. A block freed on another
 * thread than the one that allocated it goes to the freeing thread's list. A thread's cache is
 * freed by a pthread key destructor when the thread exits; the main thread's stays until the
 * process ends. Blocks are reused as they are, not cleared: the same as glibc's free and malloc,
 * and OpenSSL clears what it must (SSL_OP_CLEANSE_PLAINTEXT) before it frees.
 *
 * Under AddressSanitizer nothing is installed, so ASan still sees a use after free of an OpenSSL
 * buffer; the functions themselves then never cache (they keep their header, for the tests). */
#ifndef LV_SSLMEM_H
#define LV_SSLMEM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define LV_SSLMEM_CLASSES 2    /* size classes cached: 17 KiB and 64 KiB blocks */
#define LV_SSLMEM_PER_CLASS 16 /* free blocks kept per class per thread */

/** Install the functions below as OpenSSL's allocator (CRYPTO_set_mem_functions). Call it first
 * thing in main, before anything can allocate through OpenSSL (OpenSSL refuses a new allocator
 * after its first allocation). Returns 0 when installed, LV_EINVAL when not: OpenSSL had already
 * allocated, or an AddressSanitizer build. OpenSSL then uses malloc directly, which is correct,
 * only slower. Not thread-safe: call it once, before any thread starts. */
int lv_sslmem_install(void);
/** What lv_sslmem_install did, for a debug line once logging is set up (static string). */
const char *lv_sslmem_describe(void);
/** true when lv_sslmem_install succeeded. */
bool lv_sslmem_installed(void);
/** true when this build caches blocks (false under AddressSanitizer). */
bool lv_sslmem_caching(void);

/** OpenSSL's malloc, realloc and free (CRYPTO_malloc_fn & co.; file and line are OpenSSL's and
 * unused). As OpenSSL's own: malloc(0) gives NULL, realloc(NULL, n) is malloc(n), realloc(p, 0)
 * frees p and gives NULL, free(NULL) does nothing. A block from one of them must be freed or
 * reallocated by these, never by libc (each block has a header in front). Exposed for the
 * tests; the rest of the code allocates with malloc or OPENSSL_malloc. */
void *lv_sslmem_malloc(size_t size, const char *file, int line);
void *lv_sslmem_realloc(void *ptr, size_t size, const char *file, int line);
void lv_sslmem_free(void *ptr, const char *file, int line);

typedef struct {
    uint64_t reused;                  /* mallocs served from this thread's lists */
    uint64_t kept;                    /* frees of class blocks put on this thread's lists */
    uint64_t released;                /* frees of class blocks given to free(): list full or no cache */
    uint32_t held[LV_SSLMEM_CLASSES]; /* blocks on this thread's lists now */
    uint64_t freed_at_thread_exit;    /* process-wide: blocks freed by exiting threads' caches */
} lv_sslmem_stats_t;

/** The calling thread's counters (and the process-wide one), for the tests. */
void lv_sslmem_stats(lv_sslmem_stats_t *out);
/** Free every block on the calling thread's lists (its counters stay). */
void lv_sslmem_thread_flush(void);

#endif
