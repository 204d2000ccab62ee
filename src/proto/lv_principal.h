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

/* A value type: copy it freely. */
typedef struct {
    char key[LV_PRINCIPAL_KEY_MAX]; /* stable, printable, NUL-terminated; the fair queue's key */
} lv_principal_t;

#endif
