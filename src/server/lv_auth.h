/* lv_auth.h - who may use the server (lv_auth.c): the access token (a file in the config dir), the
 * credential a request carries (Bearer header or the login cookie), and the principal it acts for.
 * Failed credentials are counted per address in the iptable (lv_iptable.h). Loop thread only,
 * except the token files, which main reads before the loop runs. */
#ifndef LV_AUTH_H
#define LV_AUTH_H

#include <stdbool.h>

#include "lv_http1.h"
#include "lv_principal.h"

struct lv_app;

/** Create the config directory (and parents) with mode 0700 if missing. */
int lv_auth_ensure_dir(const char *dir);
/** Read the access token (64 hex digits) from config_dir/token into out; when the file is missing
 * or holds anything else, write a new one (lv_auth_rotate_token) and set *created. 0 or an LV_E*
 * code. */
int lv_auth_load_token(const char *config_dir, char out[65], bool *created);
/** Write a new random token to config_dir/token (mode 0600, replaced whole; the directory is made
 * when missing) and into out. 0 or an LV_E* code. */
int lv_auth_rotate_token(const char *config_dir, char out[65]);
/** Who the holder of req's (already checked) credential is: the principal its sessions and fair
 * share are charged to (lv_principal.h). Today the access token is shared, so the holder at this
 * client address; with accounts, the account. ip here and below is the request's client address
 * (lv_req_t.ip): the TCP peer, or behind a --trusted-proxy the client it forwarded (lv_httpd.c),
 * never a header from anyone else. */
void lv_auth_principal(struct lv_app *app, const lv_http1_req_t *req, const char *ip, lv_principal_t *out);
/** 0 when req carries the right credential; else the status to answer: 401, or 429 when it
 * carries a wrong one and ip is over its failed credentials for the minute (wrong ones count). */
int lv_auth_check(struct lv_app *app, const lv_http1_req_t *req, const char *ip);
/** Count a failed credential from ip (any kind: header, cookie, login form, ?token= link);
 * returns 429 when ip was already over LOGIN_FAILS_PER_MIN (lv_iptable.c) this minute, else 401. */
int lv_auth_failed(struct lv_app *app, const char *ip);

#endif
