/* lv_common.c - error strings and clocks. */
#include "lv_common.h"

#include <time.h>

const char *lv_strerror(int code)
{
    switch (code) {
    case LV_OK: return "ok";
    case LV_EAGAIN: return "try again";
    case LV_EINVAL: return "invalid input";
    case LV_ENOMEM: return "out of memory";
    case LV_ELIMIT: return "limit exceeded";
    case LV_ECLOSED: return "closed";
    case LV_ENOTFOUND: return "not found";
    case LV_EIO: return "i/o error";
    case LV_ETIMEDOUT: return "timed out";
    case LV_EAUTH: return "unauthorized";
    case LV_EEXIST: return "already exists";
    case LV_EBACKEND: return "backend error";
    case LV_EPARSE: return "parse error";
    default: return "unknown error";
    }
}

static uint64_t clock_ns(clockid_t id)
{
    struct timespec ts;
    clock_gettime(id, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

uint64_t lv_now_ms(void) { return clock_ns(CLOCK_MONOTONIC) / 1000000u; }
uint64_t lv_now_us(void) { return clock_ns(CLOCK_MONOTONIC) / 1000u; }
uint64_t lv_wall_ms(void) { return clock_ns(CLOCK_REALTIME) / 1000000u; }

uint32_t lv_fnv1a(const void *p, size_t n)
{
    const unsigned char *b = p;
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < n; i++)
        h = (h ^ b[i]) * 16777619u;
    return h;
}

int lv_hex_digit(unsigned char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}
