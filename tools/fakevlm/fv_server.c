/* fv_server.c - fakevlm's event loop: listening, connections (reading, writing, keep-alive,
 * lingering close, idle sweep), routing, and a clean stop on SIGINT/SIGTERM. One thread; libuv
 * timers for every delay; nothing here blocks. The slot model and the answers are in fv_job.c. */
#include "fv_server.h"

#include <arpa/inet.h>
#include <jansson.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fv_conn.h"
#include "lv_common.h"
#include "lv_log.h"

#define IN_MAX (FV_HTTP_HEAD_MAX + FV_HTTP_BODY_MAX)
#define LINGER_MS 2000
#define SWEEP_MS 1000

typedef struct {
    uv_write_t req;         /* first: the callback casts back */
    char *data;
} write_req_t;

/* ---------- writing ---------- */

static void on_write(uv_write_t *req, int status)
{
    write_req_t *w = (write_req_t *)req;
    fv_conn_t *c = req->data; /* still allocated: libuv runs write callbacks before close callbacks */
    free(w->data);
    free(w);
    if (status < 0 && status != UV_ECANCELED)
        fv_conn_close(c);
}

/* Queue out's bytes for sending; takes its memory (out is left empty, same cap). */
int fv_conn_send(fv_conn_t *c, lv_buf_t *out)
{
    if (c->closing || out->len == 0) {
        lv_buf_free(out);
        return c->closing ? LV_ECLOSED : 0;
    }
    write_req_t *w = malloc(sizeof(*w));
    if (!w) {
        lv_buf_free(out);
        fv_conn_close(c);
        return LV_ENOMEM;
    }
    uv_buf_t b = uv_buf_init(out->data, (unsigned)out->len);
    w->data = out->data;
    w->req.data = c;
    lv_buf_init(out, out->max);
    int rc = uv_write(&w->req, (uv_stream_t *)&c->tcp, &b, 1, on_write);
    if (rc) {
        free(w->data);
        free(w);
        fv_conn_close(c);
        return LV_EIO;
    }
    c->last_active_ms = uv_now(c->srv->loop);
    return 0;
}

static void on_shutdown(uv_shutdown_t *req, int status)
{
    fv_conn_t *c = req->data;
    if (status < 0 && status != UV_ECANCELED)
        fv_conn_close(c);
}

/* Send FIN once queued writes drain, then wait for the peer to close (or LINGER_MS): closing at
 * once could turn unread request bytes into an RST that destroys the response we just sent. */
void fv_conn_linger(fv_conn_t *c)
{
    if (c->closing || c->state == FV_CONN_LINGER)
        return;
    c->state = FV_CONN_LINGER;
    c->linger_since_ms = uv_now(c->srv->loop);
    lv_buf_free(&c->in);
    c->shutdown_req.data = c;
    if (uv_shutdown(&c->shutdown_req, (uv_stream_t *)&c->tcp, on_shutdown))
        fv_conn_close(c);
}

int fv_conn_append_head(lv_buf_t *o, const fv_conn_t *c, int status, const char *content_type,
                       long long content_length, const char *extra)
{
    int rc = lv_buf_printf(o, "HTTP/1.1 %d %s\r\nServer: fakevlm/" FV_VERSION "\r\n", status,
                           fv_http_status_text(status));
    if (!rc && content_type)
        rc = lv_buf_printf(o, "Content-Type: %s\r\n", content_type);
    if (!rc && content_length >= 0)
        rc = lv_buf_printf(o, "Content-Length: %lld\r\n", content_length);
    else if (!rc && content_length == -1)
        rc = lv_buf_append_str(o, "Transfer-Encoding: chunked\r\n");
    if (!rc)
        rc = lv_buf_printf(o, "Connection: %s\r\n%s\r\n", c->keep_alive ? "keep-alive" : "close", extra ? extra : "");
    return rc;
}

/* A complete response; the connection lingers afterwards unless it is kept alive. */
static void send_response(fv_conn_t *c, int status, const char *content_type, const char *body, size_t body_len,
                          const char *extra)
{
    lv_buf_t o;
    lv_buf_init(&o, FV_OUT_MAX);
    bool head_only = strcmp(c->parser.req.method, "HEAD") == 0;
    if (fv_conn_append_head(&o, c, status, content_type, (long long)body_len, extra) ||
        (!head_only && lv_buf_append(&o, body, body_len))) {
        lv_buf_free(&o);
        fv_conn_close(c);
        return;
    }
    if (fv_conn_send(c, &o) == 0 && !c->keep_alive)
        fv_conn_linger(c);
}

static void send_json(fv_conn_t *c, int status, json_t *doc, const char *extra)
{
    char *s = doc ? json_dumps(doc, JSON_COMPACT) : NULL;
    json_decref(doc);
    if (!s) {
        fv_conn_close(c);
        return;
    }
    size_t n = strlen(s);
    char *body = realloc(s, n + 2); /* one more byte for a final newline, kinder to curl users */
    if (!body) {
        free(s);
        fv_conn_close(c);
        return;
    }
    body[n] = '\n';
    send_response(c, status, "application/json", body, n + 1, extra);
    free(body);
}

static json_t *nullable_string(const char *s) { return s ? json_string(s) : json_null(); }

/* OpenAI's error shape: {"error":{"message","type","param","code"}}. */
void fv_conn_send_error(fv_conn_t *c, const fv_error_t *e, const char *extra)
{
    json_t *inner = json_object();
    json_t *doc = json_object();
    if (!inner || !doc) {
        json_decref(inner);
        json_decref(doc);
        fv_conn_close(c);
        return;
    }
    json_object_set_new(inner, "message", json_string(e->message));
    json_object_set_new(inner, "type", nullable_string(e->type));
    json_object_set_new(inner, "param", nullable_string(e->param));
    json_object_set_new(inner, "code", nullable_string(e->code));
    json_object_set_new(doc, "error", inner);
    send_json(c, e->status, doc, extra);
}

void fv_conn_send_simple_error(fv_conn_t *c, int status, const char *type, const char *code, const char *message)
{
    fv_error_t e = {.status = status, .type = type, .code = code};
    snprintf(e.message, sizeof(e.message), "%s", message);
    fv_conn_send_error(c, &e, NULL);
}

/* ---------- routes ---------- */

static void handle_models(fv_conn_t *c, const char *only)
{
    fv_server_t *srv = c->srv;
    json_t *list = json_array();
    json_t *found = NULL;
    for (size_t i = 0; list && i < srv->cfg->n_models; i++) {
        json_t *m = json_pack("{s:s,s:s,s:I,s:s}", "id", srv->cfg->models[i], "object", "model", "created",
                              (json_int_t)srv->start_wall_s, "owned_by", "fakevlm");
        if (only && m && strcmp(only, srv->cfg->models[i]) == 0)
            found = json_incref(m);
        json_array_append_new(list, m);
    }
    if (only) {
        json_decref(list);
        if (!found) {
            fv_conn_send_simple_error(c, 404, "invalid_request_error", "model_not_found", "The model does not exist.");
            return;
        }
        send_json(c, 200, found, NULL);
        return;
    }
    send_json(c, 200, json_pack("{s:s,s:o}", "object", "list", "data", list), NULL);
}

static void set_count(json_t *o, const char *key, uint64_t v)
{
    json_object_set_new(o, key, json_integer((json_int_t)v));
}

static void handle_stats(fv_conn_t *c)
{
    fv_server_t *srv = c->srv;
    const fv_stats_t *st = &srv->st;
    const fv_config_t *cfg = srv->cfg;
    json_t *doc = json_object();
    json_t *faults = json_object();
    json_t *wait = json_object();
    if (!doc || !faults || !wait) {
        json_decref(doc);
        json_decref(faults);
        json_decref(wait);
        fv_conn_close(c);
        return;
    }
    set_count(doc, "requests", st->requests);           /* chat completions received */
    set_count(doc, "active", srv->busy);                 /* holding a slot now */
    set_count(doc, "queued", srv->n_waiting);            /* waiting for a slot now */
    set_count(doc, "started", st->started);
    set_count(doc, "completed", st->completed);
    set_count(doc, "errors_injected", st->errors_injected);
    set_count(doc, "max_concurrent", st->max_concurrent);
    set_count(doc, "max_queued", st->max_queued);
    set_count(doc, "rejected_queue_full", st->rejected_queue_full);
    set_count(doc, "bad_requests", st->bad_requests);
    set_count(doc, "client_aborts", st->client_aborts);
    set_count(doc, "http_requests", st->http_requests);
    set_count(doc, "connections", srv->n_conns);
    set_count(doc, "connections_total", st->conns_total);
    set_count(doc, "connections_refused", st->conns_refused);
    for (size_t f = 1; f < FV_FAULT_COUNT; f++)
        set_count(faults, fv_fault_name((fv_fault_t)f), st->faults[f]);
    json_object_set_new(doc, "faults", faults);
    set_count(wait, "total", st->queue_wait_ms_total);
    set_count(wait, "max", st->queue_wait_ms_max);
    double avg = st->started ? (double)st->queue_wait_ms_total / (double)st->started : 0.0;
    json_object_set_new(wait, "avg", json_real(avg));
    json_object_set_new(doc, "queue_wait_ms", wait);
    fv_job_account(srv);
    set_count(doc, "busy_slot_ms", srv->st.busy_slot_ms); /* slot-milliseconds held by requests */
    set_count(doc, "slots", cfg->slots);
    set_count(doc, "queue_max", cfg->queue_max);
    set_count(doc, "ttft_ms", cfg->ttft_ms);
    set_count(doc, "token_ms", cfg->token_ms);
    set_count(doc, "tokens", LV_MAX(cfg->tokens, (unsigned)FV_HEADER_WORDS));
    set_count(doc, "uptime_ms", uv_now(srv->loop) - srv->start_ms);
    set_count(doc, "traced", st->traced);
    json_t *tps = json_array(); /* the last FV_TRACEPARENTS_KEPT chat requests', oldest first */
    for (size_t i = 0; tps && i < srv->tp_count; i++)
        json_array_append_new(tps, json_string(srv->traceparents[(srv->tp_head + i) % FV_TRACEPARENTS_KEPT]));
    json_object_set_new(doc, "traceparents", tps ? tps : json_null());
    send_json(c, 200, doc, NULL);
}

static void handle_request(fv_conn_t *c, const char *body, size_t body_len)
{
    fv_server_t *srv = c->srv;
    const fv_http_request_t *r = &c->parser.req;
    srv->st.http_requests++;
    c->keep_alive = r->keep_alive;
    bool post = strcmp(r->method, "POST") == 0;
    bool get = strcmp(r->method, "GET") == 0 || strcmp(r->method, "HEAD") == 0;
    const char *path = r->path;
    int status = 200;
    if (strcmp(path, "/v1/chat/completions") == 0) {
        if (post) {
            fv_job_handle_chat(c, body, body_len);
            return; /* logs its own line */
        }
        status = 405;
    } else if (strcmp(path, "/v1/models") == 0 || strncmp(path, "/v1/models/", 11) == 0) {
        if (get)
            handle_models(c, path[10] == '/' ? path + 11 : NULL);
        else
            status = 405;
    } else if (strcmp(path, "/healthz") == 0) {
        if (get)
            send_response(c, 200, "text/plain; charset=utf-8", "ok\n", 3, NULL);
        else
            status = 405;
    } else if (strcmp(path, "/stats") == 0) {
        if (get)
            handle_stats(c);
        else
            status = 405;
    } else if (strcmp(path, "/") == 0 && get) {
        static const char hello[] = "fakevlm " FV_VERSION ": an OpenAI-compatible fake vision-language model.\n"
                                    "GET /v1/models, POST /v1/chat/completions, GET /healthz, GET /stats\n";
        send_response(c, 200, "text/plain; charset=utf-8", hello, sizeof(hello) - 1, NULL);
    } else {
        status = 404;
    }
    if (status == 405) {
        fv_error_t e = {.status = 405, .type = "invalid_request_error", .code = "method_not_allowed"};
        snprintf(e.message, sizeof(e.message), "%s is not allowed on %.200s", r->method, path);
        bool chat = strcmp(path, "/v1/chat/completions") == 0;
        fv_conn_send_error(c, &e, chat ? "Allow: POST\r\n" : "Allow: GET, HEAD\r\n");
    } else if (status == 404) {
        fv_conn_send_simple_error(c, 404, "invalid_request_error", "not_found", "unknown path");
    }
    LV_INFO("%s %s %s %d", c->peer, r->method, path, status);
}

/* ---------- reading ---------- */

void fv_conn_process(fv_conn_t *c)
{
    fv_server_t *srv = c->srv;
    while (!c->closing && c->state == FV_CONN_READING && c->in.len > 0) {
        int rc = fv_http_feed(&c->parser, c->in.data, c->in.len);
        if (rc == LV_EAGAIN) {
            const fv_http_request_t *r = &c->parser.req;
            if (!c->parser.head_done)
                return;
            /* Make room for the whole body at once rather than doubling through it. */
            if (lv_buf_reserve(&c->in, r->head_len + r->content_length - c->in.len)) {
                fv_conn_close(c);
                return;
            }
            /* RFC 9110 §10.1.1: a server that will read the body sends 100 (Continue) first. */
            if (r->expect_continue && r->minor_version == 1 && !c->sent_continue) {
                c->sent_continue = true;
                lv_buf_t o;
                lv_buf_init(&o, 64);
                if (lv_buf_append_str(&o, "HTTP/1.1 100 Continue\r\n\r\n") == 0)
                    fv_conn_send(c, &o);
                else
                    lv_buf_free(&o);
            }
            return;
        }
        if (rc) {
            srv->st.http_requests++;
            srv->st.bad_requests++;
            c->keep_alive = false;
            LV_INFO("%s bad request: %d %s", c->peer, c->parser.status, c->parser.reason);
            const char *code = c->parser.status == 413 ? "request_too_large" : "bad_request";
            fv_conn_send_simple_error(c, c->parser.status, "invalid_request_error", code, c->parser.reason);
            if (!c->closing)
                fv_conn_linger(c);
            return;
        }
        size_t used = c->parser.req.head_len + c->parser.req.content_length;
        handle_request(c, c->in.data + c->parser.req.head_len, c->parser.req.content_length);
        if (c->closing)
            return;
        /* The body is not kept: what the answer needs was copied out by handle_request. */
        lv_buf_consume(&c->in, used);
        if (c->in.len == 0)
            lv_buf_free(&c->in);
        fv_http_parser_init(&c->parser);
        c->sent_continue = false;
    }
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    fv_conn_t *c = h->data;
    (void)suggested;
    if (c->state == FV_CONN_LINGER) {
        *buf = uv_buf_init(c->srv->discard, sizeof(c->srv->discard));
        return;
    }
    size_t room = c->in.max - c->in.len;
    size_t want = LV_MIN((size_t)FV_READ_CHUNK, room);
    if (want == 0 || lv_buf_reserve(&c->in, want)) {
        *buf = uv_buf_init(NULL, 0); /* read_cb gets UV_ENOBUFS */
        return;
    }
    *buf = uv_buf_init(c->in.data + c->in.len, (unsigned)LV_MIN(c->in.cap - c->in.len, (size_t)UINT32_MAX));
}

static void on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
    fv_conn_t *c = s->data;
    if (n == 0)
        return;
    if (n < 0) { /* EOF, a reset, or UV_ENOBUFS: input over its cap while an answer runs */
        fv_conn_close(c);
        return;
    }
    c->last_active_ms = uv_now(c->srv->loop);
    if (c->state == FV_CONN_LINGER || buf->base == c->srv->discard)
        return;
    c->in.len += (size_t)n;
    c->in.data[c->in.len] = '\0';
    fv_conn_process(c);
}

/* ---------- connections ---------- */

static void on_conn_closed(uv_handle_t *h)
{
    fv_conn_t *c = h->data;
    if (--c->open_handles == 0)
        free(c);
}

void fv_conn_close(fv_conn_t *c)
{
    if (c->closing)
        return;
    fv_server_t *srv = c->srv;
    c->closing = true;
    if (c->state == FV_CONN_WAITING || c->state == FV_CONN_RUNNING)
        fv_job_abandon(c);
    lv_buf_free(&c->in);
    lv_queue_remove(&c->link);
    srv->n_conns--;
    uv_close((uv_handle_t *)&c->tcp, on_conn_closed);
    uv_close((uv_handle_t *)&c->timer, on_conn_closed);
    fv_job_dispatch(srv); /* a slot may have been freed */
}

static void on_refused_closed(uv_handle_t *h) { free(h); }

static void on_connection(uv_stream_t *listener, int status)
{
    fv_server_t *srv = listener->data;
    if (status < 0) {
        LV_WARN("accept: %s", uv_strerror(status));
        return;
    }
    if (srv->n_conns >= FV_CONNS_MAX) {
        /* Accept and close at once: leaving it in the backlog would wake us again and again. */
        uv_tcp_t *t = malloc(sizeof(*t));
        if (!t)
            return;
        uv_tcp_init(srv->loop, t);
        if (uv_accept(listener, (uv_stream_t *)t) == 0)
            srv->st.conns_refused++;
        uv_close((uv_handle_t *)t, on_refused_closed);
        return;
    }
    fv_conn_t *c = calloc(1, sizeof(*c));
    if (!c)
        return;
    c->srv = srv;
    uv_tcp_init(srv->loop, &c->tcp);
    c->tcp.data = c;
    c->open_handles = 1;
    if (uv_accept(listener, (uv_stream_t *)&c->tcp)) {
        uv_close((uv_handle_t *)&c->tcp, on_conn_closed);
        return;
    }
    uv_timer_init(srv->loop, &c->timer);
    c->timer.data = c;
    c->open_handles = 2;
    uv_tcp_nodelay(&c->tcp, 1); /* tokens go out as they are produced */
    lv_buf_init(&c->in, IN_MAX);
    lv_buf_init(&c->job.text, FV_TEXT_MAX);
    fv_http_parser_init(&c->parser);
    lv_queue_init(&c->wait_link);
    lv_queue_insert_tail(&srv->conns, &c->link);
    srv->n_conns++;
    srv->st.conns_total++;
    c->state = FV_CONN_READING;
    c->last_active_ms = uv_now(srv->loop);
    struct sockaddr_storage ss;
    int len = sizeof(ss);
    snprintf(c->peer, sizeof(c->peer), "?");
    if (uv_tcp_getpeername(&c->tcp, (struct sockaddr *)&ss, &len) == 0) {
        char ip[INET6_ADDRSTRLEN] = "";
        if (ss.ss_family == AF_INET6) {
            uv_ip6_name((struct sockaddr_in6 *)&ss, ip, sizeof(ip));
            snprintf(c->peer, sizeof(c->peer), "[%s]:%u", ip, ntohs(((struct sockaddr_in6 *)&ss)->sin6_port));
        } else {
            uv_ip4_name((struct sockaddr_in *)&ss, ip, sizeof(ip));
            snprintf(c->peer, sizeof(c->peer), "%s:%u", ip, ntohs(((struct sockaddr_in *)&ss)->sin_port));
        }
    }
    if (uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read))
        fv_conn_close(c);
}

/* Idle keep-alive connections and lingering ones are swept in one pass a second, rather than
 * holding a timer each. */
static void on_sweep(uv_timer_t *t)
{
    fv_server_t *srv = t->data;
    uint64_t now = uv_now(srv->loop);
    lv_queue_t *q = lv_queue_head(&srv->conns);
    while (q != &srv->conns) {
        fv_conn_t *c = LV_CONTAINER_OF(q, fv_conn_t, link);
        q = q->next; /* conn_close unlinks c */
        if (c->state == FV_CONN_READING && now - c->last_active_ms >= FV_IDLE_TIMEOUT_MS)
            fv_conn_close(c);
        else if (c->state == FV_CONN_LINGER && now - c->linger_since_ms >= LINGER_MS)
            fv_conn_close(c);
    }
}

static void on_signal(uv_signal_t *s, int signum)
{
    fv_server_t *srv = s->data;
    if (srv->stopping)
        return;
    srv->stopping = true;
    LV_INFO("signal %d: stopping (%zu connections, %u running, %zu waiting)", signum, srv->n_conns, srv->busy,
            srv->n_waiting);
    uv_close((uv_handle_t *)&srv->listener, NULL);
    uv_close((uv_handle_t *)&srv->sigint, NULL);
    uv_close((uv_handle_t *)&srv->sigterm, NULL);
    uv_close((uv_handle_t *)&srv->sweep, NULL);
    while (!lv_queue_empty(&srv->conns))
        fv_conn_close(LV_CONTAINER_OF(lv_queue_head(&srv->conns), fv_conn_t, link));
}

/* ---------- start and stop ---------- */

static int write_port_file(const char *path, int port)
{
    /* Written to a temporary name and renamed, so a test polling for it never reads half a number. */
    char tmp[4096];
    int n = snprintf(tmp, sizeof(tmp), "%s.tmp.%ld", path, (long)getpid());
    if (n < 0 || (size_t)n >= sizeof(tmp))
        return LV_EINVAL;
    FILE *f = fopen(tmp, "w");
    if (!f)
        return LV_EIO;
    int ok = fprintf(f, "%d\n", port) > 0;
    ok = (fclose(f) == 0) && ok;
    if (!ok || rename(tmp, path) != 0) {
        unlink(tmp);
        return LV_EIO;
    }
    return 0;
}

static int start_listening(fv_server_t *srv, int *bound_port)
{
    const fv_config_t *cfg = srv->cfg;
    struct sockaddr_storage addr;
    memset(&addr, 0, sizeof(addr));
    if (uv_ip4_addr(cfg->host, cfg->port, (struct sockaddr_in *)&addr) != 0 &&
        uv_ip6_addr(cfg->host, cfg->port, (struct sockaddr_in6 *)&addr) != 0) {
        LV_ERROR("cannot parse address %s", cfg->host);
        return LV_EINVAL;
    }
    uv_tcp_init(srv->loop, &srv->listener);
    srv->listener.data = srv;
    int rc = uv_tcp_bind(&srv->listener, (const struct sockaddr *)&addr, 0);
    if (!rc)
        rc = uv_listen((uv_stream_t *)&srv->listener, 1024, on_connection);
    if (rc) {
        LV_ERROR("cannot listen on %s port %d: %s", cfg->host, cfg->port, uv_strerror(rc));
        return LV_EIO;
    }
    int len = sizeof(addr);
    rc = uv_tcp_getsockname(&srv->listener, (struct sockaddr *)&addr, &len);
    if (rc) {
        LV_ERROR("getsockname: %s", uv_strerror(rc));
        return LV_EIO;
    }
    *bound_port = addr.ss_family == AF_INET6 ? ntohs(((struct sockaddr_in6 *)&addr)->sin6_port)
                                              : ntohs(((struct sockaddr_in *)&addr)->sin_port);
    return 0;
}

int fv_server_run(const fv_config_t *cfg)
{
    fv_server_t *srv = calloc(1, sizeof(*srv));
    if (!srv)
        return LV_ENOMEM;
    uv_loop_t loop;
    int rc = uv_loop_init(&loop);
    if (rc) {
        free(srv);
        LV_ERROR("uv_loop_init: %s", uv_strerror(rc));
        return LV_EIO;
    }
    srv->loop = &loop;
    srv->cfg = cfg;
    for (size_t i = 0; i < cfg->n_models; i++)
        srv->model_ptrs[i] = cfg->models[i];
    lv_queue_init(&srv->conns);
    lv_queue_init(&srv->waiting);
    lv_buf_init(&srv->scratch, FV_OUT_MAX);
    srv->start_ms = uv_now(&loop);
    srv->busy_mark_ms = srv->start_ms;
    srv->start_wall_s = lv_wall_ms() / 1000;
    bool wrote_port_file = false;
    int port = 0;
    rc = start_listening(srv, &port);
    bool listener_open = srv->listener.type == UV_TCP;
    if (rc)
        goto out;
    if (cfg->port_file) {
        rc = write_port_file(cfg->port_file, port);
        if (rc) {
            LV_ERROR("cannot write the port file %s", cfg->port_file);
            goto out;
        }
        wrote_port_file = true;
    }
    uv_signal_init(&loop, &srv->sigint);
    uv_signal_init(&loop, &srv->sigterm);
    srv->sigint.data = srv->sigterm.data = srv;
    uv_signal_start(&srv->sigint, on_signal, SIGINT);
    uv_signal_start(&srv->sigterm, on_signal, SIGTERM);
    uv_timer_init(&loop, &srv->sweep);
    srv->sweep.data = srv;
    uv_timer_start(&srv->sweep, on_sweep, SWEEP_MS, SWEEP_MS);

    char models[1024] = "";
    size_t off = 0;
    for (size_t i = 0; i < cfg->n_models && off < sizeof(models); i++) {
        int n = snprintf(models + off, sizeof(models) - off, "%s%s", i ? "," : "", cfg->models[i]);
        if (n < 0)
            break;
        off += (size_t)n;
    }
    bool v6 = strchr(cfg->host, ':') != NULL;
    LV_INFO("fakevlm " FV_VERSION " listening on http://%s%s%s:%d/v1 models=%s slots=%u ttft_ms=%u token_ms=%u "
            "jitter_ms=%u tokens=%u queue_max=%u fault=%s fault_rate=%g seed=%llu",
            v6 ? "[" : "", cfg->host, v6 ? "]" : "", port, models, cfg->slots, cfg->ttft_ms, cfg->token_ms,
            cfg->jitter_ms, cfg->tokens, cfg->queue_max, fv_fault_name(cfg->fault), cfg->fault_rate,
            (unsigned long long)cfg->seed);
    uv_run(&loop, UV_RUN_DEFAULT);
    rc = 0;
out:
    if (rc && listener_open) { /* a failed start: close what was opened */
        uv_close((uv_handle_t *)&srv->listener, NULL);
        uv_run(&loop, UV_RUN_DEFAULT);
    }
    if (wrote_port_file)
        unlink(cfg->port_file);
    if (uv_loop_close(&loop) != 0)
        LV_WARN("loop closed with handles still open");
    lv_buf_free(&srv->scratch);
    free(srv);
    return rc;
}
