/* lv_iptable.h - counters per client address (lv_iptable.c): open WebSockets, sockets still in
 * their TLS handshake or request head, failed credentials, and frames per minute. An address is
 * only an address (the frame budget is keyed by the principal's key, lv_principal.h, which today is
 * the address of the token holder). Loop thread only. main creates the table before the server
 * starts and destroys it after the loop has ended; entries come and go with what they count. */
#ifndef LV_IPTABLE_H
#define LV_IPTABLE_H

#include <stddef.h>
#include <stdint.h>

struct lv_iptable;

/** An empty table; NULL when out of memory. */
struct lv_iptable *lv_iptable_create(void);
/** Free the table and every entry; NULL is fine. */
void lv_iptable_destroy(struct lv_iptable *t);
/** Adjust the socket count of ip; returns the new count. */
size_t lv_iptable_sockets(struct lv_iptable *t, const char *ip, int delta);
/** Adjust the count of ip's sockets still in their TLS handshake or request head; returns it. */
size_t lv_iptable_pending(struct lv_iptable *t, const char *ip, int delta);
/** Record a failed login; returns 1 when ip is over its failures for the current minute. */
int lv_iptable_login_failed(struct lv_iptable *t, const char *ip, uint64_t now_ms);
/** 1 when ip is over its failed logins for the current minute (nothing is counted). */
int lv_iptable_login_blocked(struct lv_iptable *t, const char *ip, uint64_t now_ms);
/** Count a frame against ip's per-minute budget; 0 when over fpm (the frame is not counted). */
int lv_iptable_frame_allowed(struct lv_iptable *t, const char *ip, int fpm, uint64_t now_ms);
/** 1 when a frame from ip would be allowed now (nothing is counted). */
int lv_iptable_frame_would_allow(struct lv_iptable *t, const char *ip, int fpm, uint64_t now_ms);
/** Milliseconds until ip's frame budget renews. */
uint64_t lv_iptable_frame_retry_ms(struct lv_iptable *t, const char *ip, uint64_t now_ms);

#endif
