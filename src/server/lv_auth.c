/* lv_auth.c - the access token (a file in the config dir), credential checks, and per-address
 * counters (open sockets, sockets still in their head, failed credentials). */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "lv_app.h"
#include "lv_common.h"
#include "lv_hmap.h"
#include "lv_httputil.h"
#include "lv_log.h"
#include "lv_rand.h"

#define LOGIN_FAILS_PER_MIN 10

int lv_auth_ensure_dir(const char *dir)
{
    char tmp[512];
    snprintf(tmp, sizeof(tmp), "%s", dir);
    for (char *p = tmp + 1; *p; p++) {
        if (*p == '/') {
            *p = '\0';
            if (mkdir(tmp, 0700) && errno != EEXIST)
                return LV_EIO;
            *p = '/';
        }
    }
    if (mkdir(tmp, 0700) && errno != EEXIST)
        return LV_EIO;
    return 0;
}

static int write_token(const char *path, const char *token)
{
    char tmp[700];
    snprintf(tmp, sizeof(tmp), "%s.tmp", path);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    if (fd < 0)
        return LV_EIO;
    size_t n = strlen(token);
    int ok = write(fd, token, n) == (ssize_t)n && write(fd, "\n", 1) == 1;
    ok = (close(fd) == 0) && ok;
    if (!ok || rename(tmp, path) != 0) {
        unlink(tmp);
        return LV_EIO;
    }
    return 0;
}

int lv_auth_rotate_token(const char *config_dir, char out[65])
{
    char path[600];
    int rc = lv_auth_ensure_dir(config_dir);
    if (rc)
        return rc;
    snprintf(path, sizeof(path), "%s/token", config_dir);
    if ((rc = lv_rand_hex(out, 65, 32)) != 0)
        return rc;
    return write_token(path, out);
}

int lv_auth_load_token(const char *config_dir, char out[65], bool *created)
{
    char path[600];
    *created = false;
    snprintf(path, sizeof(path), "%s/token", config_dir);
    FILE *f = fopen(path, "r");
    if (f) {
        char line[128] = {0};
        char *got = fgets(line, sizeof(line), f);
        fclose(f);
        size_t n = got ? strcspn(line, "\r\n") : 0;
        line[n] = '\0';
        int hex = n == 64;
        for (size_t i = 0; hex && i < n; i++)
            hex = (line[i] >= '0' && line[i] <= '9') || (line[i] >= 'a' && line[i] <= 'f');
        if (hex) {
            memcpy(out, line, 65);
            return 0;
        }
        LV_WARN("%s does not hold a 64-hex-digit token; writing a new one", path);
    }
    *created = true;
    return lv_auth_rotate_token(config_dir, out);
}

lv_cred_t lv_auth_request_ok(lv_app_t *app, const lv_http1_req_t *req)
{
    char hdr[1024], tok[128];
    bool presented = false;
    if (app->cfg.auth_none)
        return LV_CRED_OK;
    int rc = lv_http1_header_copy(req, "authorization", hdr, sizeof(hdr));
    if (rc != LV_ENOTFOUND) {
        presented = true;
        if (rc == 0 && lv_bearer_get(hdr, tok, sizeof(tok)) == 0 && lv_secure_equal(tok, strlen(tok), app->token, 64))
            return LV_CRED_OK;
    }
    rc = lv_http1_header_copy(req, "cookie", hdr, sizeof(hdr));
    if (rc == 0 && (rc = lv_cookie_get(hdr, "livevlm_auth", tok, sizeof(tok))) != LV_ENOTFOUND) {
        if (rc == 0 && lv_secure_equal(tok, strlen(tok), app->token, 64))
            return LV_CRED_OK;
        if (rc != 0 || tok[0]) /* an emptied cookie (after logout) is no credential */
            presented = true;
    } else if (rc == LV_ELIMIT) {
        presented = true; /* a Cookie header over 1 KiB: nothing of ours is that long */
    }
    return presented ? LV_CRED_BAD : LV_CRED_NONE;
}

/* Every failed credential counts the same, wherever it was presented (Bearer header on the API or
 * the WebSocket upgrade, cookie, login form, ?token= link): after LOGIN_FAILS_PER_MIN in a minute
 * the address gets 429 for its failures. A request with the right credential still passes: the
 * token is 256 random bits, so the limit is not what stops guessing (2^256 tries do); it keeps
 * noise out of the log and the CPU spent on hopeless tries bounded, and it must not let anyone
 * lock a legitimate user out by failing on purpose from the same (NAT) address. */
int lv_auth_failed(lv_app_t *app, const char *ip)
{
    uint64_t now = lv_now_ms();
    if (lv_iptable_login_blocked(app->ips, ip, now))
        return 429;
    lv_iptable_login_failed(app->ips, ip, now);
    return 401;
}

void lv_auth_principal(lv_app_t *app, const lv_http1_req_t *req, const char *ip, lv_principal_t *out)
{
    (void)app;
    (void)req;
    snprintf(out->key, sizeof(out->key), "%s", ip);
}

int lv_auth_check(lv_app_t *app, const lv_http1_req_t *req, const char *ip)
{
    switch (lv_auth_request_ok(app, req)) {
    case LV_CRED_OK:
        return 0;
    case LV_CRED_BAD:
        return lv_auth_failed(app, ip);
    default:
        return 401;
    }
}

/* ---- per-address table ---- */

#define IP_TEXT_MAX 64 /* inet_ntop writes at most 46 bytes (INET6_ADDRSTRLEN) */

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
