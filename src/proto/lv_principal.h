/* lv_principal.h - who is acting. Every session, job and fair-queue entry is charged to a
 * principal, never to a network address: fairness, weights and per-principal caps key on it.
 * Authentication produces it when a WebSocket is upgraded (src/server/lv_auth.c,
 * lv_auth_principal); it rides on the connection and is copied into each session it creates.
 * Today a principal is "the access-token holder at this client address" (one token is shared, so
 * the address tells its holders apart) and its key is that address; later it is a user, tenant or
 * API key, and only lv_auth_principal changes. Per-address abuse limits (sockets, failed logins,
 * pending connections) are not about principals and stay in src/server/. */
#ifndef LV_PRINCIPAL_H
#define LV_PRINCIPAL_H

#define LV_PRINCIPAL_KEY_MAX 64 /* bytes, the NUL included */

#define LV_PRINCIPAL_ID_MAX 33  /* tenant and user ids (lv_acct.h LV_ACCT_ID_MAX) */
#define LV_PRINCIPAL_NAME_MAX 65 /* login names (lv_acct.h LV_ACCT_NAME_MAX): 64 bytes and the NUL */

/* What a principal may do: the role of its account, narrowed by its credential (an API key with
 * the stream scope only acts as a user even for an admin). With --auth token or none the token
 * holder is an admin (it could always do everything). */
enum { LV_PRINCIPAL_VIEWER = 0, LV_PRINCIPAL_USER = 1, LV_PRINCIPAL_ADMIN = 2 };

/* How the principal proved who it is. */
enum {
    LV_CRED_TOKEN = 0,   /* the shared access token (--auth token), or none (--auth none) */
    LV_CRED_COOKIE = 1,  /* a sign-in cookie (password or OpenID Connect) */
    LV_CRED_APIKEY = 2,  /* Authorization: Bearer lvk_... */
    LV_CRED_JWT = 3,     /* Authorization: Bearer <JWT from the configured issuer> */
    LV_CRED_PROXY = 4,   /* a trusted proxy's user header (--auth proxy) */
};

/* A value type: copy it freely. */
typedef struct {
    char key[LV_PRINCIPAL_KEY_MAX]; /* stable, printable, NUL-terminated; the fair queue's key:
                                     * "u:<user id>" with accounts, the client address otherwise */
    char tenant[LV_PRINCIPAL_ID_MAX]; /* the tenant charged ("default" without accounts) */
    char user_id[LV_PRINCIPAL_ID_MAX]; /* "" without accounts */
    char name[LV_PRINCIPAL_NAME_MAX];  /* the user's login name for logs and pages ("" without) */
    int role;                          /* LV_PRINCIPAL_* */
    int cred;                          /* LV_CRED_* */
    char csrf[65];                     /* cookie sign-ins: the token state changes must carry */
    char key_id[LV_PRINCIPAL_ID_MAX];  /* API keys: the key's id, so its revocation can end the
                                        * sockets it opened ("" for other credentials) */
    char login_hash[65];               /* cookie sign-ins: the SHA-256 of the sign-in, so its end
                                        * (sign-out here or everywhere) ends the sockets it opened */
} lv_principal_t;

#endif
