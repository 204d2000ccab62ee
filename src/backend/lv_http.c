/* lv_http.c - libcurl multi socket API glued to a uv_loop_t (deps-measured section 2): one uv_poll_t
 * per curl socket, freed in its close callback; one uv_timer_t for curl's timeout; finished
 * transfers collected after every curl_multi_socket_action(). */
#include "lv_http.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lv_common.h"
#include "lv_log.h"

struct lv_http {
    uv_loop_t *loop;
    CURLM *multi;
    uv_timer_t timer;     /* curl's single timeout; its close callback frees the lv_http_t */
    lv_queue_t transfers; /* xfer_t, every easy handle currently in the multi */
    lv_queue_t sockets;   /* sock_t with a live (not closing) poll handle */
    lv_queue_t deferred;  /* lv_http_defer_t to run after the current curl call */
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

/* One socket curl asked us to watch (curl_multi_assign points at it). */
typedef struct {
    lv_queue_t link;
    uv_poll_t poll;
    curl_socket_t fd;
    lv_http_t *h;
} sock_t;

static xfer_t *xfer_of(CURL *easy)
{
    char *p = NULL;
    if (curl_easy_getinfo(easy, CURLINFO_PRIVATE, &p) != CURLE_OK)
        return NULL;
    return (xfer_t *)(void *)p;
}

static void on_sock_closed(uv_handle_t *hd) { free(hd->data); }

/* Stop watching: unassign first so curl never hands us the stale pointer, then close; the
 * memory goes in the close callback (libuv still owns the handle until then). */
static void sock_close(lv_http_t *h, sock_t *s)
{
    if (!h->destroying)
        curl_multi_assign(h->multi, s->fd, NULL);
    lv_queue_remove(&s->link);
    uv_poll_stop(&s->poll);
    uv_close((uv_handle_t *)&s->poll, on_sock_closed);
}

static void run_deferred(lv_http_t *h)
{
    while (!lv_queue_empty(&h->deferred)) {
        lv_queue_t *q = lv_queue_head(&h->deferred);
        lv_queue_remove(q);
        lv_http_defer_t *d = LV_CONTAINER_OF(q, lv_http_defer_t, link);
        d->fn(d); /* may free d's owner: d is not touched afterwards */
    }
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
    run_deferred(h);
    drain_done(h);
}

static void on_poll(uv_poll_t *p, int status, int events)
{
    sock_t *s = p->data;
    int flags = 0;
    if (status < 0)
        flags = CURL_CSELECT_ERR;
    else {
        if (events & UV_READABLE)
            flags |= CURL_CSELECT_IN;
        if (events & UV_WRITABLE)
            flags |= CURL_CSELECT_OUT;
    }
    /* s may be closed during the call (CURL_POLL_REMOVE); it is not used afterwards. */
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
        if (s)
            sock_close(h, s);
        return 0;
    }
    if (h->destroying)
        return 0;
    if (!s) {
        s = calloc(1, sizeof *s);
        if (!s)
            return -1;
        if (uv_poll_init_socket(h->loop, &s->poll, fd) != 0) {
            free(s);
            return -1;
        }
        s->poll.data = s;
        s->fd = fd;
        s->h = h;
        lv_queue_insert_tail(&h->sockets, &s->link);
        curl_multi_assign(h->multi, fd, s);
    }
    int events = 0;
    if (what & CURL_POLL_IN)
        events |= UV_READABLE;
    if (what & CURL_POLL_OUT)
        events |= UV_WRITABLE;
    if (events)
        uv_poll_start(&s->poll, events, on_poll);
    else
        uv_poll_stop(&s->poll);
    return 0;
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
    lv_queue_init(&h->deferred);
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
        free(h);
    }
    return rc;
}

static void on_timer_closed(uv_handle_t *hd) { free(hd->data); }

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
        free(x);
    }
    while (!lv_queue_empty(&h->deferred))
        lv_queue_remove(lv_queue_head(&h->deferred));
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
    rc = LV_EIO;
    if (curl_multi_add_handle(h->multi, easy) != CURLM_OK) {
        curl_easy_setopt(easy, CURLOPT_PRIVATE, NULL);
        goto out;
    }
    lv_queue_insert_tail(&h->transfers, &x->link);
    x = NULL;
    rc = 0;
out:
    free(x);
    return rc;
}

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
    free(x);
    return 0;
}

void lv_http_defer_init(lv_http_defer_t *d, void (*fn)(lv_http_defer_t *d))
{
    lv_queue_init(&d->link);
    d->fn = fn;
}

void lv_http_defer(lv_http_t *h, lv_http_defer_t *d)
{
    if (!lv_queue_linked(&d->link))
        lv_queue_insert_tail(&h->deferred, &d->link);
}

void lv_http_defer_cancel(lv_http_defer_t *d)
{
    if (lv_queue_linked(&d->link))
        lv_queue_remove(&d->link);
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
        if (os_errno == ECONNREFUSED)
            snprintf(out, out_size, "connection refused");
        else if (os_errno == ETIMEDOUT)
            snprintf(out, out_size, "connect timed out");
        else if (os_errno == EHOSTUNREACH || os_errno == ENETUNREACH)
            snprintf(out, out_size, "no route to host");
        else if (os_errno)
            snprintf(out, out_size, "cannot connect: %s", strerror((int)os_errno));
        else
            snprintf(out, out_size, "cannot connect");
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
