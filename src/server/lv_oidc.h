/* lv_oidc.h - single sign-on (docs/internals/accounts.md): OpenID Connect sign-in with the
 * authorization code flow and PKCE against --oidc-issuer (GET /auth/oidc/login starts it,
 * GET /auth/oidc/callback ends it with a sign-in cookie), and Authorization: Bearer JWTs from
 * --jwt-issuer verified against its JWKS (RS256, ES256; iss, aud, exp, nbf checked; keys refreshed
 * in the background). HTTP to the issuer never runs on the loop thread. Loop thread only. */
#ifndef LV_OIDC_H
#define LV_OIDC_H

#include <stdbool.h>

#include "lv_httpd.h"
#include "lv_principal.h"

struct lv_app;

/** Start when an issuer is configured (app->oidc stays NULL otherwise): discovery and the first
 * JWKS fetch begin in the background; sign-in answers 503 "single sign-on is starting" until they
 * are in. 0 or an LV_E* code (a bad configuration, logged). */
int lv_oidc_start(struct lv_app *app);
void lv_oidc_stop(struct lv_app *app);
/** True for /auth/oidc/... routes. */
bool lv_oidc_route(const char *path);
/** Answer r on one of them (no credential needed: this is how one gets one). */
int lv_oidc_handle(struct lv_app *app, lv_req_t *r);
/** A bearer credential that looks like a JWT (three base64url parts): 0 and *out when it verifies
 * and names an enabled user (created on first sight like an OIDC sign-in), LV_EAUTH when not
 * (why, a static sentence, for the 401), LV_EAGAIN while the keys are not fetched yet. */
int lv_oidc_verify_bearer(struct lv_app *app, const char *jwt, lv_principal_t *out, const char **why);
/** Whether sign-in with OIDC is offered (for the sign-in page). */
bool lv_oidc_enabled(const struct lv_app *app);

#endif
