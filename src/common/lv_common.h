/* lv_common.h - return codes, small macros and clocks shared by every layer. */
#ifndef LV_COMMON_H
#define LV_COMMON_H

#include <stddef.h>
#include <stdint.h>

/* Return codes: 0 is success, failures are negative. LV_EAGAIN is normal on I/O paths. */
enum {
    LV_OK = 0,
    LV_EAGAIN = -1,   /* not now; try again later (would block, no credit, no slot) */
    LV_EINVAL = -2,   /* malformed or out-of-range input */
    LV_ENOMEM = -3,   /* allocation failed */
    LV_ELIMIT = -4,   /* a configured cap was hit (bytes, count, rate) */
    LV_ECLOSED = -5,  /* the peer or object is closing or gone */
    LV_ENOTFOUND = -6,/* no such session, backend, model, route */
    LV_EIO = -7,      /* system or library I/O failure */
    LV_ETIMEDOUT = -8,/* a deadline passed */
    LV_EAUTH = -9,    /* missing or wrong credential */
    LV_EEXIST = -10,  /* already exists */
    LV_EBACKEND = -11,/* the model backend answered with an error */
    LV_EPARSE = -12,  /* a peer sent bytes that do not parse */
};

/** Human-readable text for an LV_E* code (static string, never NULL). */
const char *lv_strerror(int code);

#define LV_ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))
#define LV_MIN(a, b) ((a) < (b) ? (a) : (b))
#define LV_MAX(a, b) ((a) > (b) ? (a) : (b))
/* Intrusive containers: the owner embeds the link and gets back to itself from it. */
#define LV_CONTAINER_OF(ptr, type, member) ((type *)(void *)((char *)(ptr) - offsetof(type, member)))

/** Monotonic clock in milliseconds / microseconds (CLOCK_MONOTONIC); for deadlines and durations. */
uint64_t lv_now_ms(void);
uint64_t lv_now_us(void);
/** Wall clock in milliseconds since the epoch; only for timestamps shown to people. */
uint64_t lv_wall_ms(void);

/** FNV-1a, 32 bits, of p[0..n): a checksum or an in-process cache key, never a key peers choose
 * (those go through lv_hmap's SipHash). */
uint32_t lv_fnv1a(const void *p, size_t n);
/** The value of a hexadecimal digit ('0'-'9', 'a'-'f', 'A'-'F'), or -1 for any other byte. */
int lv_hex_digit(unsigned char c);

/** A read-only view of bytes owned by someone else. */
typedef struct {
    const char *ptr;
    size_t len;
} lv_view_t;

#endif
