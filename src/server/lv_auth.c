/* lv_auth.c - the access token (a file in the config dir) and credential checks (lv_auth.h); the
 * per-address counters they use are lv_iptable.c's, keyed on the request's client address (behind a
 * trusted proxy the forwarded one, so one client's failures do not block the proxy's others). */
#include "lv_auth.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "lv_app.h"
#include "lv_common.h"
#include "lv_http1.h"
#include "lv_httputil.h"
#include "lv_iptable.h"
#include "lv_log.h"
#include "lv_principal.h"
#include "lv_rand.h"

/* What credential a request carries. */
typedef enum { CRED_NONE = 0, CRED_OK = 1, CRED_BAD = -1 } cred_t;

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

/* What credential req carries (Bearer header or the login cookie): the right one, a wrong one,
 * or none. Counts nothing. */
static cred_t request_cred(lv_app_t *app, const lv_http1_req_t *req)
{
    char hdr[1024], tok[128];
    bool presented = false;
    if (app->cfg.auth_none)
        return CRED_OK;
    int rc = lv_http1_header_copy(req, "authorization", hdr, sizeof(hdr));
    if (rc != LV_ENOTFOUND) {
        presented = true;
        if (rc == 0 && lv_bearer_get(hdr, tok, sizeof(tok)) == 0 && lv_secure_equal(tok, strlen(tok), app->token, 64))
            return CRED_OK;
    }
    rc = lv_http1_header_copy(req, "cookie", hdr, sizeof(hdr));
    if (rc == 0 && (rc = lv_cookie_get(hdr, "livevlm_auth", tok, sizeof(tok))) != LV_ENOTFOUND) {
        if (rc == 0 && lv_secure_equal(tok, strlen(tok), app->token, 64))
            return CRED_OK;
        if (rc != 0 || tok[0]) /* an emptied cookie (after logout) is no credential */
            presented = true;
    } else if (rc == LV_ELIMIT) {
        presented = true; /* a Cookie header over 1 KiB: nothing of ours is that long */
    }
    return presented ? CRED_BAD : CRED_NONE;
}

/* Every failed credential counts the same, wherever it was presented (Bearer header on the API or
 * the WebSocket upgrade, cookie, login form, ?token= link): after LOGIN_FAILS_PER_MIN
 * (lv_iptable.c) in a minute the address gets 429 for its failures. A request with the right
 * credential still passes: the token is 256 random bits, so the limit is not what stops guessing
 * (2^256 tries do); it keeps noise out of the log and the CPU spent on hopeless tries bounded, and
 * it must not let anyone lock a legitimate user out by failing on purpose from the same (NAT)
 * address. */
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
    switch (request_cred(app, req)) {
    case CRED_OK:
        return 0;
    case CRED_BAD:
        return lv_auth_failed(app, ip);
    default:
        return 401;
    }
}
