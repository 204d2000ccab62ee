/* lv_iptable.c - counters per client address: open WebSockets, sockets still in their head,
 * failed credentials, frames per minute (lv_iptable.h). */
#include "lv_iptable.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "lv_common.h"
#include "lv_hmap.h"

#define LOGIN_FAILS_PER_MIN 10 /* failed credentials per address and minute (lv_auth_failed) */
#define IP_TEXT_MAX 64         /* inet_ntop writes at most 46 bytes (INET6_ADDRSTRLEN) */

/* Entries live while an address has sockets, sockets in their handshake or a one-minute window running,
 * so the table is bounded by the socket cap plus what one minute of new addresses can add; it is
 * not capped itself, because refusing new addresses when it is full would lock out everyone
 * else. Addresses are chosen by remote peers (an IPv6 client owns 2^64 of them): lv_hmap's keyed
 * hash is what keeps them from being lined up into one chain. */
typedef struct ip_entry {
    lv_hmap_node_t node;        /* keyed by ip[] */
    size_t sockets;
    size_t pending;             /* sockets still in TLS handshake or request head (lv_net) */
    unsigned frames;            /* frames accepted in the current minute */
    uint64_t frames_window_ms;
    unsigned login_fails;
    uint64_t login_window_ms;
    char ip[IP_TEXT_MAX];
} ip_entry_t;

struct lv_iptable {
    lv_hmap_t map;
};

struct lv_iptable *lv_iptable_create(void)
{
    struct lv_iptable *t = calloc(1, sizeof(*t));
    if (t && lv_hmap_init(&t->map, 0) != 0) {
        free(t);
        t = NULL;
    }
    return t;
}

void lv_iptable_destroy(struct lv_iptable *t)
{
    if (!t)
        return;
    lv_hmap_iter_t it;
    lv_hmap_iter_init(&t->map, &it);
    for (lv_hmap_node_t *n; (n = lv_hmap_iter_next(&t->map, &it)) != NULL;) {
        lv_hmap_remove(&t->map, n);
        free(LV_CONTAINER_OF(n, ip_entry_t, node));
    }
    lv_hmap_free(&t->map);
    free(t);
}

/* Anything longer than ip[] holds is keyed by the part that fits, the same way on every call. */
static size_t ip_key_len(const char *ip)
{
    return strnlen(ip, IP_TEXT_MAX - 1);
}

static ip_entry_t *ip_find(struct lv_iptable *t, const char *ip)
{
    lv_hmap_node_t *n = lv_hmap_find(&t->map, ip, ip_key_len(ip));
    return n ? LV_CONTAINER_OF(n, ip_entry_t, node) : NULL;
}

static ip_entry_t *ip_get(struct lv_iptable *t, const char *ip)
{
    ip_entry_t *e = ip_find(t, ip);
    if (e)
        return e;
    e = calloc(1, sizeof(*e));
    if (!e)
        return NULL;
    size_t len = ip_key_len(ip);
    memcpy(e->ip, ip, len); /* calloc left the NUL */
    if (lv_hmap_insert(&t->map, &e->node, e->ip, len) != 0) {
        free(e);
        return NULL;
    }
    return e;
}

/* entries with nothing to remember are dropped so the table stays as small as the live clients */
static void ip_maybe_drop(struct lv_iptable *t, const char *ip, uint64_t now_ms)
{
    ip_entry_t *e = ip_find(t, ip);
    if (e && e->sockets == 0 && e->pending == 0 && (e->login_fails == 0 || now_ms - e->login_window_ms >= 60000) &&
        (e->frames == 0 || now_ms - e->frames_window_ms >= 60000)) {
        lv_hmap_remove(&t->map, &e->node);
        free(e);
    }
}

size_t lv_iptable_sockets(struct lv_iptable *t, const char *ip, int delta)
{
    ip_entry_t *e = ip_get(t, ip);
    if (!e)
        return SIZE_MAX;
    if (delta > 0)
        e->sockets++;
    else if (delta < 0 && e->sockets > 0)
        e->sockets--;
    size_t n = e->sockets;
    ip_maybe_drop(t, ip, lv_now_ms());
    return n;
}

size_t lv_iptable_pending(struct lv_iptable *t, const char *ip, int delta)
{
    ip_entry_t *e = ip_get(t, ip);
    if (!e)
        return SIZE_MAX;
    if (delta > 0)
        e->pending++;
    else if (delta < 0 && e->pending > 0)
        e->pending--;
    size_t n = e->pending;
    ip_maybe_drop(t, ip, lv_now_ms());
    return n;
}

int lv_iptable_login_blocked(struct lv_iptable *t, const char *ip, uint64_t now_ms)
{
    ip_entry_t *e = ip_find(t, ip);
    if (!e)
        return 0;
    if (now_ms - e->login_window_ms >= 60000) {
        e->login_fails = 0;
        e->login_window_ms = now_ms;
    }
    return e->login_fails >= LOGIN_FAILS_PER_MIN;
}

int lv_iptable_login_failed(struct lv_iptable *t, const char *ip, uint64_t now_ms)
{
    ip_entry_t *e = ip_get(t, ip);
    if (!e)
        return 1;
    if (now_ms - e->login_window_ms >= 60000) {
        e->login_fails = 0;
        e->login_window_ms = now_ms;
    }
    e->login_fails++;
    return e->login_fails >= LOGIN_FAILS_PER_MIN;
}

/* A fixed one-minute window per user: simple, and the page is told when it renews. */
static void frames_roll(ip_entry_t *e, uint64_t now_ms)
{
    if (now_ms - e->frames_window_ms >= 60000) {
        e->frames = 0;
        e->frames_window_ms = now_ms;
    }
}

int lv_iptable_frame_would_allow(struct lv_iptable *t, const char *ip, int fpm, uint64_t now_ms)
{
    ip_entry_t *e = ip_find(t, ip);
    if (!e)
        return 1;
    frames_roll(e, now_ms);
    return e->frames < (unsigned)fpm;
}

int lv_iptable_frame_allowed(struct lv_iptable *t, const char *ip, int fpm, uint64_t now_ms)
{
    ip_entry_t *e = ip_get(t, ip);
    if (!e)
        return 0;
    frames_roll(e, now_ms);
    if (e->frames >= (unsigned)fpm)
        return 0;
    e->frames++;
    return 1;
}

uint64_t lv_iptable_frame_retry_ms(struct lv_iptable *t, const char *ip, uint64_t now_ms)
{
    ip_entry_t *e = ip_find(t, ip);
    if (!e || now_ms - e->frames_window_ms >= 60000)
        return 0;
    return 60000 - (now_ms - e->frames_window_ms);
}
