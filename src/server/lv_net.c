/* lv_net.c - listeners and connections for the front door, on uv_poll_t (one socket's I/O is in
 * lv_sock.c).
 *
 * Why uv_poll and not uv_tcp: TLS. OpenSSL reads and writes the descriptor itself (SSL_read /
 * SSL_write on a socket BIO), and a non-blocking SSL object wants to be told "readable" or
 * "writable", which is what uv_poll gives; uv_tcp would need memory BIOs and a second copy of
 * every byte. It also lets us writev() several queued messages in one call and keep exactly one
 * write in progress per socket, with no uv_write_t per message. (libwebsockets did the same.)
 *
 * Shape of the work: accept() is bounded per wake-up and costs the same whatever other sockets of
 * the same address are doing, so one address's half-open sockets cannot delay another's accept;
 * reads are bounded per wake-up; output is written on a later loop turn (the "posted" list), so
 * messages queued in one turn leave in one writev; time boxes live in one list per duration,
 * checked from one timer. */
#include "lv_net.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include "lv_common.h"
#include "lv_httputil.h"
#include "lv_log.h"
#include "lv_net_int.h"
#include "lv_tlsio.h"

#define IN_CAP_DEFAULT 16384
#define ACCEPTS_PER_WAKEUP 64
#define TICK_MS 250
#define ACCEPT_PAUSE_MS 100          /* after EMFILE: the listener stays readable, so wait */
#define REFUSE_LOG_MS 10000

static void on_idle(uv_idle_t *h);

void lv_net_limits_defaults(lv_net_limits_t *l)
{
    memset(l, 0, sizeof(*l));
    l->timeout_ms[LV_TMO_HANDSHAKE] = LV_NET_HANDSHAKE_TIMEOUT_MS;
    l->timeout_ms[LV_TMO_HEAD] = LV_NET_HEADER_TIMEOUT_MS;
    l->timeout_ms[LV_TMO_BODY] = LV_NET_BODY_TIMEOUT_MS;
    l->timeout_ms[LV_TMO_KEEPALIVE] = LV_NET_KEEPALIVE_TIMEOUT_MS;
    l->timeout_ms[LV_TMO_WS_IDLE] = LV_NET_WS_PING_MS;
    l->timeout_ms[LV_TMO_WS_PONG] = LV_NET_WS_HANGUP_MS;
    l->timeout_ms[LV_TMO_LINGER] = LV_NET_LINGER_MS;
    l->write_stall_ms = LV_NET_WRITE_STALL_MS;
    l->max_pending_per_ip = LV_NET_MAX_PENDING_PER_IP;
}

/* ---------- handles and freeing ---------- */

static void net_maybe_free(lv_net_t *net)
{
    if (!net->destroyed || net->handles_open > 0)
        return;
    if (net->ssl_ctx)
        lv_tlsio_ctx_free(net->ssl_ctx);
    free(net);
}

static void on_net_handle_closed(uv_handle_t *h)
{
    lv_net_t *net = h->data;
    net->handles_open--;
    net_maybe_free(net);
}

void lv__net_post(lv_sock_t *s)
{
    lv_net_t *net = s->net;
    if (!lv_queue_linked(&s->posted_link))
        lv_queue_insert_tail(&net->posted, &s->posted_link);
    if (!uv_is_active((uv_handle_t *)&net->idle) && !net->destroyed)
        uv_idle_start(&net->idle, on_idle);
}


void lv__net_sock_gone(lv_net_t *net)
{
    net->n_socks--;
    if (net->shutting_down && net->n_socks == 0 && net->done && !net->destroyed) {
        net->done_due = true;
        uv_idle_start(&net->idle, on_idle);
    }
    net->handles_open--;
    net_maybe_free(net);
}

/* ---------- accepting ---------- */

/* The peer as text, written by lv_ip_text: an IPv4 peer on a dual-stack socket (IPv4-mapped) reads
 * as plain IPv4, so one address is one counter whichever socket it came through, written the
 * same way as an address forwarded by a trusted proxy (lv_forwarded_for_client). */
static void addr_text(const struct sockaddr_storage *ss, char *out, size_t size)
{
    unsigned char a[16] = {0};
    if (ss->ss_family == AF_INET) {
        a[10] = a[11] = 0xff; /* ::ffff:a.b.c.d, lv_ip_parse's form of an IPv4 address */
        memcpy(a + 12, &((const struct sockaddr_in *)(const void *)ss)->sin_addr, 4);
    } else if (ss->ss_family == AF_INET6) {
        memcpy(a, &((const struct sockaddr_in6 *)(const void *)ss)->sin6_addr, 16);
    } else {
        snprintf(out, size, "?");
        return;
    }
    lv_ip_text(a, out, size);
}

static void log_refusals(lv_net_t *net)
{
    uint64_t now = uv_now(net->loop);
    if (now - net->last_refuse_log_ms < REFUSE_LOG_MS)
        return;
    net->last_refuse_log_ms = now;
    LV_WARN("connections refused so far: %llu over the total cap (%zu), %llu over %zu per address still in "
            "handshake or head",
            (unsigned long long)net->refused_full, net->max_conns, (unsigned long long)net->refused_pending,
            net->lim.max_pending_per_ip);
}

static void sock_accept(lv_net_t *net, int fd, const struct sockaddr_storage *ss)
{
    char ip[48];
    if (net->n_socks >= net->max_conns) {
        net->refused_full++;
        log_refusals(net);
        close(fd);
        return;
    }
    addr_text(ss, ip, sizeof(ip));
    if (net->cfg.count_pending) {
        /* over the cap: the newest one goes, at once; the address's older sockets keep their
         * time boxes and nobody else waits */
        if (net->cfg.count_pending(net->cfg.ud, ip, +1) > net->lim.max_pending_per_ip) {
            net->cfg.count_pending(net->cfg.ud, ip, -1);
            net->refused_pending++;
            log_refusals(net);
            close(fd);
            return;
        }
    }
    lv_sock_t *s = calloc(1, sizeof(*s));
    if (!s || uv_poll_init_socket(net->loop, &s->poll, fd) != 0) {
        if (net->cfg.count_pending)
            net->cfg.count_pending(net->cfg.ud, ip, -1);
        free(s);
        close(fd);
        return;
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    s->net = net;
    s->fd = fd;
    s->poll.data = s;
    s->pending = net->cfg.count_pending != NULL;
    snprintf(s->ip, sizeof(s->ip), "%s", ip);
    snprintf(s->client_ip, sizeof(s->client_ip), "%s", ip);
    s->in_max = IN_CAP_DEFAULT;
    lv_buf_init(&s->in, s->in_max);
    lv_tlist_entry_init(&s->phase_tmo);
    lv_tlist_entry_init(&s->write_tmo);
    lv_queue_init(&s->posted_link);
    lv_queue_insert_tail(&net->socks, &s->link);
    net->n_socks++;
    net->handles_open++;
    if (net->ssl_ctx) {
        s->ssl = lv_tlsio_new(net->ssl_ctx, fd, &s->tls_drained);
        if (!s->ssl) {
            lv_sock_close(s);
            return;
        }
        s->tls = s->handshaking = true;
        lv_sock_arm(s, LV_TMO_HANDSHAKE);
    }
    net->cfg.on_accept(s);
    if (!s->tls && !s->closed)
        s->ops->on_ready(s);
    if (!s->closed)
        lv__sock_update_poll(s);
}

static void on_listen(uv_poll_t *h, int status, int events)
{
    lv_net_t *net = h->data;
    for (int i = 0; i < ACCEPTS_PER_WAKEUP && net->listening; i++) {
        struct sockaddr_storage ss;
        socklen_t sl = sizeof(ss);
        int fd = accept4(net->listen_fd, (struct sockaddr *)&ss, &sl, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd >= 0) {
            sock_accept(net, fd, &ss);
            continue;
        }
        if (errno == EINTR || errno == ECONNABORTED)
            continue;
        if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
            /* the listener stays readable while the backlog holds connections: do not spin */
            LV_WARN("accept: %s; pausing accepts for %d ms", strerror(errno), ACCEPT_PAUSE_MS);
            uv_poll_stop(&net->listen_poll);
            net->accept_resume_ms = uv_now(net->loop) + ACCEPT_PAUSE_MS;
        }
        break;
    }
}

/* ---------- the periodic check and posted work ---------- */

static void on_tick(uv_timer_t *t)
{
    lv_net_t *net = t->data;
    uint64_t now = uv_now(net->loop);
    for (int k = LV_TMO_NONE + 1; k < LV_TMO__COUNT; k++) {
        lv_tlist_entry_t *e;
        while ((e = lv_tlist_pop_expired(&net->lists[k], now)) != NULL) {
            lv_sock_t *s = LV_CONTAINER_OF(e, lv_sock_t, phase_tmo);
            s->phase_kind = LV_TMO_NONE;
            if (k == LV_TMO_HANDSHAKE || k == LV_TMO_LINGER || !s->ops->on_timeout) {
                if (k == LV_TMO_HANDSHAKE)
                    LV_DEBUG("TLS handshake from %s timed out", s->ip);
                lv_sock_close(s);
            } else {
                s->ops->on_timeout(s, (lv_tmo_kind_t)k);
            }
        }
    }
    lv_tlist_entry_t *e;
    while ((e = lv_tlist_pop_expired(&net->write_list, now)) != NULL) {
        lv_sock_t *s = LV_CONTAINER_OF(e, lv_sock_t, write_tmo);
        LV_DEBUG("closing a connection from %s whose output stalled (%zu bytes queued)", s->ip,
                 lv_sock_queued_bytes(s));
        lv_sock_close(s);
    }
    if (net->accept_resume_ms && now >= net->accept_resume_ms) {
        net->accept_resume_ms = 0;
        if (net->listening)
            uv_poll_start(&net->listen_poll, UV_READABLE, on_listen);
    }
    if (net->shutting_down && now >= net->shutdown_deadline_ms) {
        lv_queue_t *n;
        LV_QUEUE_FOREACH(n, &net->socks)
        lv_sock_close(LV_CONTAINER_OF(n, lv_sock_t, link));
    }
}

static void on_idle(uv_idle_t *h)
{
    lv_net_t *net = h->data;
    /* only what was posted before this turn: work posted now waits for the next one */
    lv_queue_t batch;
    lv_queue_init(&batch);
    if (!lv_queue_empty(&net->posted)) {
        batch.next = net->posted.next;
        batch.prev = net->posted.prev;
        batch.next->prev = &batch;
        batch.prev->next = &batch;
        lv_queue_init(&net->posted);
    }
    while (!lv_queue_empty(&batch)) {
        lv_sock_t *s = LV_CONTAINER_OF(lv_queue_head(&batch), lv_sock_t, posted_link);
        lv_queue_remove(&s->posted_link);
        bool r = s->post_read, f = s->post_flush;
        s->post_read = s->post_flush = false;
        lv__sock_run_posted(s, r, f);
    }
    if (net->done_due) {
        net->done_due = false;
        void (*done)(void *) = net->done;
        net->done = NULL;
        if (done)
            done(net->done_ud);
    }
    if (lv_queue_empty(&net->posted) && !net->done_due && !net->destroyed)
        uv_idle_stop(&net->idle);
}

/* ---------- create, shutdown, destroy ---------- */

static int parse_host(const char *host, int port, struct sockaddr_storage *ss, socklen_t *len, char *err,
                      size_t err_size)
{
    char h[256];
    size_t n = strlen(host);
    if (strcmp(host, "localhost") == 0)
        snprintf(h, sizeof(h), "127.0.0.1");
    else if (n >= 2 && n < sizeof(h) && host[0] == '[' && host[n - 1] == ']')
        snprintf(h, sizeof(h), "%.*s", (int)(n - 2), host + 1);
    else
        snprintf(h, sizeof(h), "%s", host);
    memset(ss, 0, sizeof(*ss));
    struct sockaddr_in *a4 = (struct sockaddr_in *)(void *)ss;
    struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)(void *)ss;
    if (inet_pton(AF_INET, h, &a4->sin_addr) == 1) {
        a4->sin_family = AF_INET;
        a4->sin_port = htons((uint16_t)port);
        *len = sizeof(*a4);
        return 0;
    }
    if (inet_pton(AF_INET6, h, &a6->sin6_addr) == 1) {
        a6->sin6_family = AF_INET6;
        a6->sin6_port = htons((uint16_t)port);
        *len = sizeof(*a6);
        return 0;
    }
    snprintf(err, err_size,
             "--host %s: not an address this server can bind (give an IPv4 or IPv6 address such as 127.0.0.1, "
             "0.0.0.0, ::1 or ::, or localhost; the port goes in --port)",
             host);
    return LV_EINVAL;
}

static size_t default_max_conns(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0 || rl.rlim_cur == RLIM_INFINITY)
        return 65536;
    size_t cur = (size_t)rl.rlim_cur;
    return cur > 2 * LV_NET_FD_RESERVE ? cur - LV_NET_FD_RESERVE : LV_MAX(cur / 2, (size_t)16);
}

int lv_net_create(uv_loop_t *loop, const lv_net_config_t *cfg, lv_net_t **out, char *err, size_t err_size)
{
    struct sockaddr_storage ss;
    socklen_t sl;
    *out = NULL;
    int rc = parse_host(cfg->host, cfg->port, &ss, &sl, err, err_size);
    if (rc)
        return rc;
    int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        snprintf(err, err_size, "could not open a socket: %s", strerror(errno));
        return LV_EIO;
    }
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (ss.ss_family == AF_INET6) {
        /* "::" stays dual-stack (IPv4 clients too); a specific IPv6 address is only that */
        struct in6_addr any = IN6ADDR_ANY_INIT;
        int v6only = memcmp(&((struct sockaddr_in6 *)(void *)&ss)->sin6_addr, &any, sizeof(any)) != 0;
        setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &v6only, sizeof(v6only));
    }
    if (bind(fd, (struct sockaddr *)&ss, sl) != 0 || listen(fd, 1024) != 0) {
        int e = errno;
        snprintf(err, err_size, "could not listen on %s port %d: %s%s", cfg->host, cfg->port, strerror(e),
                 e == EADDRINUSE       ? " (another program uses that port; pick another with --port)"
                 : e == EADDRNOTAVAIL  ? " (not an address of this machine)"
                 : e == EACCES         ? " (ports below 1024 need privileges)"
                                       : "");
        close(fd);
        return LV_EIO;
    }
    sl = sizeof(ss);
    getsockname(fd, (struct sockaddr *)&ss, &sl);
    lv_net_t *net = calloc(1, sizeof(*net));
    if (!net) {
        close(fd);
        snprintf(err, err_size, "out of memory");
        return LV_ENOMEM;
    }
    net->loop = loop;
    net->cfg = *cfg;
    net->cfg.host = NULL;
    net->lim = cfg->limits;
    lv_net_limits_t def;
    lv_net_limits_defaults(&def);
    for (int k = 0; k < LV_TMO__COUNT; k++)
        if (!net->lim.timeout_ms[k])
            net->lim.timeout_ms[k] = def.timeout_ms[k];
    if (!net->lim.write_stall_ms)
        net->lim.write_stall_ms = def.write_stall_ms;
    if (!net->lim.max_pending_per_ip)
        net->lim.max_pending_per_ip = def.max_pending_per_ip;
    net->max_conns = net->lim.max_conns ? net->lim.max_conns : default_max_conns();
    net->ssl_ctx = cfg->ssl_ctx;
    net->listen_fd = fd;
    net->port = ntohs(ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)(void *)&ss)->sin6_port
                                               : ((struct sockaddr_in *)(void *)&ss)->sin_port);
    for (int k = 0; k < LV_TMO__COUNT; k++)
        lv_tlist_init(&net->lists[k], net->lim.timeout_ms[k]);
    lv_tlist_init(&net->write_list, net->lim.write_stall_ms);
    lv_queue_init(&net->socks);
    lv_queue_init(&net->posted);
    uv_poll_init_socket(loop, &net->listen_poll, fd);
    uv_timer_init(loop, &net->tick);
    uv_idle_init(loop, &net->idle);
    net->listen_poll.data = net->tick.data = net->idle.data = net;
    net->handles_open = 3;
    net->listening = true;
    uv_poll_start(&net->listen_poll, UV_READABLE, on_listen);
    uv_timer_start(&net->tick, on_tick, TICK_MS, TICK_MS);
    *out = net;
    return 0;
}

int lv_net_port(const lv_net_t *net) { return net->port; }
void *lv_net_user(const lv_net_t *net) { return net->cfg.ud; }
size_t lv_net_count(const lv_net_t *net) { return net->n_socks; }
void lv_net_forwarded_invalid_inc(lv_net_t *net) { net->forwarded_invalid++; }
uint64_t lv_net_forwarded_invalid(const lv_net_t *net) { return net->forwarded_invalid; }

static void stop_listening(lv_net_t *net)
{
    if (!net->listening)
        return;
    net->listening = false;
    uv_poll_stop(&net->listen_poll);
    close(net->listen_fd);
    net->listen_fd = -1;
}

void lv_net_shutdown(lv_net_t *net, unsigned deadline_ms, void (*done)(void *ud), void *ud)
{
    if (net->shutting_down)
        return;
    net->shutting_down = true;
    net->done = done;
    net->done_ud = ud;
    net->shutdown_deadline_ms = uv_now(net->loop) + deadline_ms;
    stop_listening(net);
    lv_queue_t *n;
    LV_QUEUE_FOREACH(n, &net->socks)
    {
        lv_sock_t *s = LV_CONTAINER_OF(n, lv_sock_t, link);
        if (s->closing)
            continue;
        if (s->ops && s->ops->on_shutdown)
            s->ops->on_shutdown(s);
        else
            lv_sock_close_after_flush(s);
    }
    if (net->n_socks == 0) {
        net->done_due = true;
        uv_idle_start(&net->idle, on_idle);
    }
}

void lv_net_destroy(lv_net_t *net)
{
    if (!net || net->destroyed)
        return;
    lv_queue_t *n;
    LV_QUEUE_FOREACH(n, &net->socks)
    lv_sock_close(LV_CONTAINER_OF(n, lv_sock_t, link));
    net->destroyed = true;
    net->done = NULL;
    stop_listening(net);
    uv_close((uv_handle_t *)&net->listen_poll, on_net_handle_closed);
    uv_close((uv_handle_t *)&net->tick, on_net_handle_closed);
    uv_close((uv_handle_t *)&net->idle, on_net_handle_closed);
}
