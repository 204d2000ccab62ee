/* lv_http.c - libcurl multi socket API glued to a uv_loop_t (deps-measured section 2): one uv_poll_t
 * per curl socket, freed in its close callback; one uv_timer_t for curl's timeout; finished
 * transfers collected after every curl_multi_socket_action().
 *
 * Why the poll handles outlive transfers. curl says CURL_POLL_REMOVE for a connection's socket
 * each time a transfer on it ends, even when the connection stays open in its cache for the next
 * request, and asks again (with no socketp) when the next transfer reuses it. Closing the uv_poll
 * on REMOVE and making a new one on reuse cost 6 to 7 epoll_ctl calls per backend request (libuv
 * 1.44: uv_poll_init probes with ADD+DEL, every uv_poll_start does DEL then ADD, stop and close one
 * DEL each): 5.7 per frame at 500 sessions. So a socket curl opened for a connection
 * (CURLOPT_OPENSOCKETFUNCTION) keeps its sock_t, found again by descriptor, from open to close
 * (CURLOPT_CLOSESOCKETFUNCTION, which curl calls for exactly those sockets), and stays armed for
 * READABLE while it idles in the cache: a reused connection whose next request fits in the send
 * buffer then costs no epoll_ctl at all. The mask changes only when curl asks for something else
 * (uv_poll_start is never called with the mask already set). A socket curl did not open through
 * the callback (the threaded resolver's socketpair, which curl closes itself) keeps the old rule:
 * closed on REMOVE, since a poll left on a descriptor closed behind our back would watch whatever
 * later gets that number. */
#include "lv_http.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "lv_common.h"
#include "lv_hmap.h"
#include "lv_h1c.h"
#include "lv_log.h"

struct lv_http {
    uv_loop_t *loop;
    CURLM *multi;
    uv_timer_t timer;     /* curl's single timeout; its close callback frees the lv_http_t */
    lv_queue_t transfers; /* xfer_t, every easy handle currently in the multi */
    size_t n_transfers;   /* in transfers */
    size_t peak_transfers; /* most ever in transfers at once: CURLMOPT_MAXCONNECTS */
    lv_queue_t sockets;   /* sock_t not yet closed */
    lv_hmap_t conn_socks; /* sock_t that curl opened for a connection, by descriptor; bounded by
                           * curl's open connections (its cache and the transfers in flight) */
    int in_curl;          /* > 0 while a curl_multi_socket_action() runs */
    int destroying;
};

/* One transfer; found again through CURLOPT_PRIVATE. */
typedef struct {
    lv_queue_t link;
    lv_http_t *h;
    CURL *easy;
    lv_http_done_cb done;
    void *ud;
} xfer_t;

/* One socket curl asked us to watch (curl_multi_assign points at it while curl watches it). */
typedef struct {
    lv_queue_t link;       /* h->sockets */
    lv_hmap_node_t node;   /* in h->conn_socks when conn_sock; keyed by fd's bytes */
    uv_poll_t poll;
    curl_socket_t fd;
    lv_http_t *h;
    int conn_sock;         /* opened by on_curl_open: lives until on_curl_close */
    int poll_inited;       /* poll needs uv_close (its close callback frees the sock_t) */
    int want;              /* uv events curl asked for; 0 after REMOVE (idle in curl's cache) */
    int armed;             /* uv events poll is started with (0: stopped) */
} sock_t;

static xfer_t *xfer_of(CURL *easy)
{
    char *p = NULL;
    if (curl_easy_getinfo(easy, CURLINFO_PRIVATE, &p) != CURLE_OK)
        return NULL;
    return (xfer_t *)(void *)p;
}

static void on_sock_closed(uv_handle_t *hd) { free(hd->data); }

/* Stop watching for good: unassign first so curl never hands us the stale pointer, then close;
 * the memory goes in the close callback (libuv still owns the handle until then). uv_close takes
 * the descriptor out of epoll at once, so the caller may close(fd) right after. */
static void sock_close(lv_http_t *h, sock_t *s)
{
    if (!h->destroying)
        curl_multi_assign(h->multi, s->fd, NULL);
    lv_queue_remove(&s->link);
    if (s->conn_sock)
        lv_hmap_remove(&h->conn_socks, &s->node);
    if (!s->poll_inited) {
        free(s);
        return;
    }
    uv_close((uv_handle_t *)&s->poll, on_sock_closed);
}

static void on_poll(uv_poll_t *p, int status, int events);

/* Start the poll with events unless it already is: every uv_poll_start costs two epoll_ctl. */
static int sock_arm(sock_t *s, int events)
{
    if (events == s->armed)
        return 0;
    if (!s->poll_inited) {
        if (uv_poll_init_socket(s->h->loop, &s->poll, s->fd) != 0)
            return LV_EIO;
        s->poll.data = s;
        s->poll_inited = 1;
    }
    int rc = events ? uv_poll_start(&s->poll, events, on_poll) : uv_poll_stop(&s->poll);
    s->armed = rc == 0 ? events : 0;
    return rc == 0 ? 0 : LV_EIO;
}

static sock_t *sock_new(lv_http_t *h, curl_socket_t fd)
{
    sock_t *s = calloc(1, sizeof *s);
    if (!s)
        return NULL;
    s->fd = fd;
    s->h = h;
    lv_queue_insert_tail(&h->sockets, &s->link);
    return s;
}

static sock_t *conn_sock_find(lv_http_t *h, curl_socket_t fd)
{
    lv_hmap_node_t *n = lv_hmap_find(&h->conn_socks, &fd, sizeof fd);
    return n ? LV_CONTAINER_OF(n, sock_t, node) : NULL;
}

/* Hand out every finished transfer. Runs outside curl, after each socket_action. */
static void drain_done(lv_http_t *h)
{
    CURLMsg *m;
    int left;
    while ((m = curl_multi_info_read(h->multi, &left)) != NULL) {
        if (m->msg != CURLMSG_DONE)
            continue;
        /* m is invalid once the handle is removed: copy what we need first. */
        CURL *easy = m->easy_handle;
        CURLcode rc = m->data.result;
        xfer_t *x = xfer_of(easy);
        curl_multi_remove_handle(h->multi, easy);
        curl_easy_setopt(easy, CURLOPT_PRIVATE, NULL);
        if (!x)
            continue;
        lv_http_done_cb done = x->done;
        void *ud = x->ud;
        lv_queue_remove(&x->link);
        h->n_transfers--;
        free(x);
        done(ud, easy, rc);
    }
}

static void socket_action(lv_http_t *h, curl_socket_t fd, int flags)
{
    int running = 0;
    h->in_curl++;
    CURLMcode mc = curl_multi_socket_action(h->multi, fd, flags, &running);
    h->in_curl--;
    if (mc != CURLM_OK)
        LV_WARN("http: curl_multi_socket_action: %s", curl_multi_strerror(mc));
    drain_done(h);
}

static void on_poll(uv_poll_t *p, int status, int events)
{
    sock_t *s = p->data;
    if (!s->want) {
        /* idle in curl's cache, yet readable: the backend closed it (or sent what it should not).
         * curl finds that out itself when it next looks at the connection; until then, no more
         * wake-ups from this level-triggered descriptor. */
        sock_arm(s, 0);
        return;
    }
    int flags = 0;
    if (status < 0)
        flags = CURL_CSELECT_ERR;
    else {
        if (events & UV_READABLE)
            flags |= CURL_CSELECT_IN;
        if (events & UV_WRITABLE)
            flags |= CURL_CSELECT_OUT;
    }
    /* s may be closed during the call (CURL_POLL_REMOVE, a closed socket); it is not used
     * afterwards. */
    socket_action(s->h, s->fd, flags);
}

static void on_uv_timer(uv_timer_t *t)
{
    lv_http_t *h = t->data;
    socket_action(h, CURL_SOCKET_TIMEOUT, 0);
}

/* CURLMOPT_TIMERFUNCTION: only (re)arm the uv timer. Calling socket_action from here would
 * recurse into curl (deps-measured pitfall #1). */
static int on_curl_timer(CURLM *multi, long timeout_ms, void *userp)
{
    (void)multi;
    lv_http_t *h = userp;
    if (h->destroying)
        return 0;
    if (timeout_ms < 0)
        uv_timer_stop(&h->timer);
    else
        uv_timer_start(&h->timer, on_uv_timer, (uint64_t)timeout_ms, 0);
    return 0;
}

/* CURLMOPT_SOCKETFUNCTION */
static int on_curl_socket(CURL *easy, curl_socket_t fd, int what, void *userp, void *socketp)
{
    (void)easy;
    lv_http_t *h = userp;
    sock_t *s = socketp;

    if (what == CURL_POLL_REMOVE) {
        if (s && s->conn_sock) {
            /* the transfer ended, the connection may be reused: stay armed for READABLE (a
             * closed connection wakes us once, see on_poll) but never for WRITABLE, which an idle
             * socket always is */
            s->want = 0;
            sock_arm(s, s->armed & UV_READABLE);
        } else if (s) {
            sock_close(h, s);
        }
        return 0;
    }
    if (h->destroying)
        return 0;
    if (!s) {
        s = conn_sock_find(h, fd);
        if (!s && !(s = sock_new(h, fd)))
            return -1;
        curl_multi_assign(h->multi, fd, s);
    }
    int events = 0;
    if (what & CURL_POLL_IN)
        events |= UV_READABLE;
    if (what & CURL_POLL_OUT)
        events |= UV_WRITABLE;
    s->want = events;
    return sock_arm(s, events) == 0 ? 0 : -1;
}

/* CURLOPT_OPENSOCKETFUNCTION: the socket of a connection (curl's default socket() call), noted so
 * that its sock_t can outlive each transfer's REMOVE. */
static curl_socket_t on_curl_open(void *clientp, curlsocktype purpose, struct curl_sockaddr *addr)
{
    lv_http_t *h = clientp;
    (void)purpose;
    curl_socket_t fd = socket(addr->family, addr->socktype, addr->protocol);
    if (fd == CURL_SOCKET_BAD)
        return fd;
    sock_t *s = sock_new(h, fd);
    if (!s)
        goto fail;
    s->conn_sock = 1;
    if (lv_hmap_insert(&h->conn_socks, &s->node, &s->fd, sizeof s->fd) != 0) {
        /* a descriptor number is never in the table twice (on_curl_close takes it out before
         * the close), so this is only out of memory */
        lv_queue_remove(&s->link);
        free(s);
        goto fail;
    }
    return fd;
fail:
    close(fd);
    return CURL_SOCKET_BAD;
}

/* CURLOPT_CLOSESOCKETFUNCTION: curl calls it instead of close() for every socket on_curl_open
 * made, after any CURL_POLL_REMOVE, also from curl_multi_cleanup(). */
static int on_curl_close(void *clientp, curl_socket_t fd)
{
    lv_http_t *h = clientp;
    sock_t *s = conn_sock_find(h, fd);
    if (s)
        sock_close(h, s);
    return close(fd);
}

int lv_http_create(uv_loop_t *loop, lv_http_t **out)
{
    int rc = LV_ENOMEM;
    lv_http_t *h = calloc(1, sizeof *h);
    if (!h)
        goto out;
    h->loop = loop;
    lv_queue_init(&h->transfers);
    lv_queue_init(&h->sockets);
    if ((rc = lv_hmap_init(&h->conn_socks, 0)) != 0)
        goto out;
    /* Process-wide init; a no-op after the first call. The lead may also call it in main. */
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
        rc = LV_EIO;
        goto out;
    }
    h->multi = curl_multi_init();
    if (!h->multi) {
        rc = LV_EIO;
        goto out;
    }
    if (uv_timer_init(loop, &h->timer) != 0) {
        rc = LV_EIO;
        goto out;
    }
    h->timer.data = h;
    curl_multi_setopt(h->multi, CURLMOPT_SOCKETFUNCTION, on_curl_socket);
    curl_multi_setopt(h->multi, CURLMOPT_SOCKETDATA, h);
    curl_multi_setopt(h->multi, CURLMOPT_TIMERFUNCTION, on_curl_timer);
    curl_multi_setopt(h->multi, CURLMOPT_TIMERDATA, h);
    *out = h;
    h = NULL;
    rc = 0;
out:
    if (h) {
        if (h->multi)
            curl_multi_cleanup(h->multi);
        lv_hmap_free(&h->conn_socks);
        free(h);
    }
    return rc;
}

static void on_timer_closed(uv_handle_t *hd)
{
    lv_http_t *h = hd->data;
    lv_hmap_free(&h->conn_socks);
    free(h);
}

void lv_http_destroy(lv_http_t *h)
{
    if (!h)
        return;
    h->destroying = 1;
    while (!lv_queue_empty(&h->transfers)) {
        xfer_t *x = LV_CONTAINER_OF(lv_queue_head(&h->transfers), xfer_t, link);
        curl_multi_remove_handle(h->multi, x->easy);
        curl_easy_setopt(x->easy, CURLOPT_PRIVATE, NULL);
        lv_queue_remove(&x->link);
        h->n_transfers--;
        free(x);
    }
    /* Cached connections are closed here; curl may or may not report them as CURL_POLL_REMOVE,
     * so whatever is still watched afterwards is closed by us. */
    curl_multi_cleanup(h->multi);
    h->multi = NULL;
    while (!lv_queue_empty(&h->sockets))
        sock_close(h, LV_CONTAINER_OF(lv_queue_head(&h->sockets), sock_t, link));
    uv_timer_stop(&h->timer);
    uv_close((uv_handle_t *)&h->timer, on_timer_closed);
}

int lv_http_add(lv_http_t *h, CURL *easy, lv_http_done_cb done, void *ud)
{
    int rc = LV_EINVAL;
    xfer_t *x = NULL;
    if (!h || !easy || !done || h->destroying || xfer_of(easy))
        goto out;
    rc = LV_EAGAIN;
    if (h->in_curl)
        goto out;
    rc = LV_ENOMEM;
    x = calloc(1, sizeof *x);
    if (!x)
        goto out;
    x->h = h;
    x->easy = easy;
    x->done = done;
    x->ud = ud;
    curl_easy_setopt(easy, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(easy, CURLOPT_PRIVATE, (void *)x);
    /* a connection keeps the callbacks of the transfer that opened it, for its whole life */
    curl_easy_setopt(easy, CURLOPT_OPENSOCKETFUNCTION, on_curl_open);
    curl_easy_setopt(easy, CURLOPT_OPENSOCKETDATA, (void *)h);
    curl_easy_setopt(easy, CURLOPT_CLOSESOCKETFUNCTION, on_curl_close);
    curl_easy_setopt(easy, CURLOPT_CLOSESOCKETDATA, (void *)h);
    rc = LV_EIO;
    if (curl_multi_add_handle(h->multi, easy) != CURLM_OK) {
        curl_easy_setopt(easy, CURLOPT_PRIVATE, NULL);
        goto out;
    }
    lv_queue_insert_tail(&h->transfers, &x->link);
    if (++h->n_transfers > h->peak_transfers) {
        /* curl's default cache holds 4 idle connections per transfer in the multi at the time one
         * ends, so a dip after a burst closed connections the next burst opened again (0.09
         * connects per frame at 500 sessions). Keep as many as were ever needed at once (the
         * backends' windows bound that); curl still drops those idle for 118 s
         * (CURLOPT_MAXAGE_CONN), and a backend may close them first. */
        h->peak_transfers = h->n_transfers;
        curl_multi_setopt(h->multi, CURLMOPT_MAXCONNECTS, (long)LV_MAX(h->peak_transfers, (size_t)4));
    }
    x = NULL;
    rc = 0;
out:
    free(x);
    return rc;
}

size_t lv_http_in_flight(const lv_http_t *h) { return h ? h->n_transfers : 0; }

int lv_http_remove(lv_http_t *h, CURL *easy)
{
    if (!h || !easy)
        return LV_EINVAL;
    if (h->in_curl)
        return LV_EAGAIN;
    xfer_t *x = xfer_of(easy);
    if (!x || x->h != h)
        return LV_ENOTFOUND;
    curl_multi_remove_handle(h->multi, easy);
    curl_easy_setopt(easy, CURLOPT_PRIVATE, NULL);
    lv_queue_remove(&x->link);
    h->n_transfers--;
    free(x);
    return 0;
}

const char *lv_http_describe(CURL *easy, CURLcode rc, const char *errbuf, char *out, size_t out_size)
{
    const char *eb = errbuf && errbuf[0] ? errbuf : NULL;
    long os_errno = 0;
    if (!out || out_size == 0)
        return out;
    switch (rc) {
    case CURLE_OK:
        snprintf(out, out_size, "ok");
        break;
    case CURLE_COULDNT_CONNECT:
        /* curl 7.88's text does not say why ("Couldn't connect to server"): ask for the errno */
        if (easy)
            curl_easy_getinfo(easy, CURLINFO_OS_ERRNO, &os_errno);
        {
            const char *why = lv_connect_why(os_errno ? -(int)os_errno : 0, out, out_size);
            if (why != out)
                snprintf(out, out_size, "%s", why);
        }
        break;
    case CURLE_OPERATION_TIMEDOUT:
        snprintf(out, out_size, "timed out");
        break;
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_COULDNT_RESOLVE_PROXY:
        snprintf(out, out_size, "cannot resolve host");
        break;
    case CURLE_SSL_CONNECT_ERROR:
    case CURLE_PEER_FAILED_VERIFICATION:
    case CURLE_SSL_CERTPROBLEM:
    case CURLE_SSL_CIPHER:
    case CURLE_SSL_CACERT_BADFILE:
        snprintf(out, out_size, "TLS error: %s", eb ? eb : curl_easy_strerror(rc));
        break;
    case CURLE_GOT_NOTHING:
        snprintf(out, out_size, "empty reply from server");
        break;
    default:
        snprintf(out, out_size, "%s", curl_easy_strerror(rc));
        break;
    }
    return out;
}

int lv_http_is_connect_failure(CURLcode rc)
{
    switch (rc) {
    case CURLE_COULDNT_CONNECT:
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_COULDNT_RESOLVE_PROXY:
    case CURLE_OPERATION_TIMEDOUT:
    case CURLE_SSL_CONNECT_ERROR:
    case CURLE_PEER_FAILED_VERIFICATION:
        return 1;
    default:
        return 0;
    }
}
