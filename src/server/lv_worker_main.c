/* lv_worker_main.c - `livevlm worker` (lv_worker.h, lv_worker_main): its own loop, backend pool
 * and worker, and a small plain-HTTP listener for /metrics, /healthz and /readyz; SIGINT/SIGTERM
 * stop it within 5 s. */
#include "lv_worker.h"

#include <arpa/inet.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lv_backend.h"
#include "lv_common.h"
#include "lv_http.h"
#include "lv_http1.h"
#include "lv_log.h"
#include "lv_poolcfg.h"
#include "lv_buf.h"
#include "lv_queue.h"
#include "lv_redis.h"

#define HEALTH_PERIOD_MS 10000
#define HTTP_HEAD_MAX 8192       /* one request head; longer: 431 */
#define HTTP_TIMEOUT_MS 5000     /* a connection's whole life */
#define HTTP_CONNS_MAX 32        /* at once; more are closed unanswered */
#define HTTP_BODY_MAX (256u << 10)
#define EXIT_DEADLINE_MS 4500    /* SIGTERM -> exit, whatever is still open */

typedef struct wmain wmain_t;

/* One metrics connection: one request, one answer, closed. */
typedef struct {
    uv_tcp_t tcp;
    uv_timer_t timer;
    uv_write_t wr;
    wmain_t *m;
    lv_queue_t link;
    int handles_open;
    bool closing;
    size_t in_len;
    char in[HTTP_HEAD_MAX];
    lv_buf_t out;
} mconn_t;

struct wmain {
    uv_loop_t loop;
    lv_config_t cfg;
    lv_http_t *http;
    lv_pool_t *pool;
    lv_worker_t *worker;
    uv_tcp_t listener;
    bool listener_open;
    int bound_port;
    uv_signal_t sigint, sigterm;
    uv_timer_t exit_timer;
    lv_queue_t conns;
    size_t n_conns;
    bool stopping;
};

static void mconn_handle_closed(uv_handle_t *h)
{
    mconn_t *c = h->data;
    if (--c->handles_open == 0) {
        lv_buf_free(&c->out);
        free(c);
    }
}

static void mconn_close(mconn_t *c)
{
    if (c->closing)
        return;
    c->closing = true;
    lv_queue_remove(&c->link);
    c->m->n_conns--;
    uv_timer_stop(&c->timer);
    uv_close((uv_handle_t *)&c->tcp, mconn_handle_closed);
    uv_close((uv_handle_t *)&c->timer, mconn_handle_closed);
}

static void on_mconn_timeout(uv_timer_t *t) { mconn_close(t->data); }

static void on_written(uv_write_t *wr, int status) { mconn_close(wr->data); }

static void respond(mconn_t *c, int status, const char *ctype, const char *body, size_t len, bool head_only,
                    const char *extra)
{
    uv_read_stop((uv_stream_t *)&c->tcp);
    lv_buf_reset(&c->out);
    if (lv_buf_printf(&c->out,
                      "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\nCache-Control: no-store\r\n"
                      "Connection: close\r\n%s\r\n",
                      status, lv_http1_reason(status), ctype, len, extra ? extra : "") != 0 ||
        (!head_only && lv_buf_append(&c->out, body, len) != 0)) {
        mconn_close(c);
        return;
    }
    uv_buf_t b = uv_buf_init(c->out.data, (unsigned)c->out.len);
    c->wr.data = c;
    if (uv_write(&c->wr, (uv_stream_t *)&c->tcp, &b, 1, on_written) != 0)
        mconn_close(c);
}

static void respond_text(mconn_t *c, int status, const char *text, bool head_only)
{
    respond(c, status, "text/plain; charset=utf-8", text, strlen(text), head_only, NULL);
}

static bool any_backend_healthy(lv_pool_t *pool)
{
    for (size_t i = 0; i < lv_pool_count(pool); i++)
        if (lv_pool_at(pool, i)->healthy)
            return true;
    return false;
}

static int metrics_text(wmain_t *m, lv_buf_t *b)
{
    int rc = lv_worker_metrics(m->worker, b);
    static const struct {
        const char *name, *type, *help;
    } fams[] = {
        {"livevlm_backend_inflight", "gauge", "Requests in flight per backend."},
        {"livevlm_backend_window", "gauge", "Concurrency window per backend (adaptive or fixed)."},
        {"livevlm_backend_healthy", "gauge", "1 when the backend is in rotation."},
        {"livevlm_backend_circuit_state", "gauge", "Circuit breaker: 0 closed, 1 half-open, 2 open."},
        {"livevlm_backend_latency_seconds", "gauge", "Smoothed time to first token per backend."},
        {"livevlm_backend_requests_total", "counter", "Requests finished per backend."},
        {"livevlm_backend_errors_total", "counter", "Failed requests per backend."},
        {"livevlm_backend_timeouts_total", "counter", "Timed-out requests per backend."},
    };
    size_t n = lv_pool_count(m->pool);
    for (size_t f = 0; f < LV_ARRAY_LEN(fams) && rc == 0 && n > 0; f++) {
        rc = lv_buf_printf(b, "# HELP %s %s\n# TYPE %s %s\n", fams[f].name, fams[f].help, fams[f].name, fams[f].type);
        for (size_t i = 0; i < n && rc == 0; i++) {
            const lv_backend_t *be = lv_pool_at(m->pool, i);
            const char *state = lv_backend_state_name(be);
            double v = 0;
            switch (f) {
            case 0: v = be->inflight; break;
            case 1: v = lv_backend_limit(be); break;
            case 2: v = be->healthy ? 1 : 0; break;
            case 3: v = strcmp(state, "open") == 0 ? 2 : strcmp(state, "half_open") == 0 ? 1 : 0; break;
            case 4: v = be->lat_ewma_ms / 1000.0; break;
            case 5: v = (double)be->requests_total; break;
            case 6: v = (double)be->errors_total; break;
            default: v = (double)be->timeouts_total; break;
            }
            /* backend ids are [A-Za-z0-9._-]: nothing to escape in the label */
            rc = lv_buf_printf(b, "%s{backend=\"%s\"} %.17g\n", fams[f].name, be->id, v);
        }
    }
    return rc;
}

static void route(mconn_t *c, const lv_http1_req_t *req)
{
    wmain_t *m = c->m;
    bool head = req->method.len == 4 && memcmp(req->method.ptr, "HEAD", 4) == 0;
    bool get = req->method.len == 3 && memcmp(req->method.ptr, "GET", 3) == 0;
    const lv_view_t *p = &req->path;
#define PATH_IS(s) (p->len == sizeof(s) - 1 && memcmp(p->ptr, s, sizeof(s) - 1) == 0)
    if (!PATH_IS("/metrics") && !PATH_IS("/healthz") && !PATH_IS("/readyz")) {
        respond_text(c, 404, "not found: this worker answers GET /metrics, /healthz and /readyz\n", head);
        return;
    }
    if (!get && !head) {
        respond(c, 405, "text/plain; charset=utf-8", "method not allowed\n", 19, false, "Allow: GET, HEAD\r\n");
        return;
    }
    if (PATH_IS("/healthz")) {
        respond_text(c, 200, "ok\n", head);
    } else if (PATH_IS("/readyz")) {
        if (m->stopping)
            respond_text(c, 503, "the worker is stopping\n", head);
        else if (!lv_worker_redis_up(m->worker))
            respond_text(c, 503, "redis unreachable: no jobs can be taken until it is back\n", head);
        else if (!any_backend_healthy(m->pool))
            respond_text(c, 503, "no backend is healthy: no job could be answered\n", head);
        else
            respond_text(c, 200, "ready\n", head);
    } else {
        lv_buf_t body;
        lv_buf_init(&body, HTTP_BODY_MAX);
        if (metrics_text(m, &body) != 0)
            respond_text(c, 500, "metrics did not fit\n", head);
        else
            respond(c, 200, "text/plain; version=0.0.4; charset=utf-8", body.data, body.len, head, NULL);
        lv_buf_free(&body);
    }
#undef PATH_IS
}

static void on_mconn_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    mconn_t *c = h->data;
    *buf = uv_buf_init(c->in + c->in_len, (unsigned)(sizeof(c->in) - c->in_len));
}

static void on_mconn_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    mconn_t *c = s->data;
    if (nread < 0 && nread != UV_ENOBUFS) {
        mconn_close(c);
        return;
    }
    if (nread > 0)
        c->in_len += (size_t)nread;
    lv_http1_req_t req;
    int status = 400;
    int rc = lv_http1_parse_request(c->in, c->in_len, sizeof(c->in), &req, &status);
    if (rc == LV_EAGAIN && c->in_len < sizeof(c->in))
        return;
    if (rc == LV_EAGAIN)
        status = 431;
    if (rc != 0) {
        char text[64];
        snprintf(text, sizeof(text), "%s\n", lv_http1_reason(status));
        respond_text(c, status, text, false);
        return;
    }
    route(c, &req);
}

static void on_mconn(uv_stream_t *server, int status)
{
    wmain_t *m = server->data;
    if (status < 0)
        return;
    mconn_t *c = calloc(1, sizeof(*c));
    if (!c)
        return; /* the connection waits in the backlog; the next accept takes it */
    c->m = m;
    lv_buf_init(&c->out, HTTP_BODY_MAX + 512);
    uv_tcp_init(&m->loop, &c->tcp);
    uv_timer_init(&m->loop, &c->timer);
    c->tcp.data = c->timer.data = c;
    c->handles_open = 2;
    lv_queue_insert_tail(&m->conns, &c->link);
    m->n_conns++;
    if (uv_accept(server, (uv_stream_t *)&c->tcp) != 0 || m->n_conns > HTTP_CONNS_MAX || m->stopping) {
        mconn_close(c);
        return;
    }
    uv_timer_start(&c->timer, on_mconn_timeout, HTTP_TIMEOUT_MS, 0);
    if (uv_read_start((uv_stream_t *)&c->tcp, on_mconn_alloc, on_mconn_read) != 0)
        mconn_close(c);
}

static int listen_metrics(wmain_t *m, char *err, size_t err_size)
{
    struct sockaddr_storage ss;
    const char *host = strcmp(m->cfg.host, "localhost") == 0 ? "127.0.0.1" : m->cfg.host;
    int rc = strchr(host, ':') ? uv_ip6_addr(host, m->cfg.port, (struct sockaddr_in6 *)(void *)&ss)
                               : uv_ip4_addr(host, m->cfg.port, (struct sockaddr_in *)(void *)&ss);
    if (rc != 0) {
        snprintf(err, err_size, "--host %s: not an address to listen on", m->cfg.host);
        return LV_EINVAL;
    }
    uv_tcp_init(&m->loop, &m->listener);
    m->listener.data = m;
    m->listener_open = true;
    if ((rc = uv_tcp_bind(&m->listener, (const struct sockaddr *)&ss, 0)) != 0 ||
        (rc = uv_listen((uv_stream_t *)&m->listener, 64, on_mconn)) != 0) {
        snprintf(err, err_size, "cannot listen on %s:%d: %s", m->cfg.host, m->cfg.port, uv_strerror(rc));
        return LV_EIO;
    }
    int len = sizeof(ss);
    if (uv_tcp_getsockname(&m->listener, (struct sockaddr *)&ss, &len) == 0)
        m->bound_port = ss.ss_family == AF_INET6 ? ntohs(((struct sockaddr_in6 *)(void *)&ss)->sin6_port)
                                                  : ntohs(((struct sockaddr_in *)(void *)&ss)->sin_port);
    return 0;
}

static void write_port_file(const wmain_t *m)
{
    if (!m->cfg.port_file[0])
        return;
    char tmp[sizeof(m->cfg.port_file) + 8];
    snprintf(tmp, sizeof(tmp), "%s.tmp", m->cfg.port_file);
    FILE *f = fopen(tmp, "w");
    if (!f || fprintf(f, "%d\n", m->bound_port) < 0 || fclose(f) != 0 || rename(tmp, m->cfg.port_file) != 0)
        LV_ERROR("could not write the port file %s", m->cfg.port_file);
}

static void on_exit_deadline(uv_timer_t *t)
{
    wmain_t *m = t->data;
    LV_WARN("worker: still closing after %d ms; exiting anyway", EXIT_DEADLINE_MS);
    uv_stop(&m->loop);
}

static void shutdown_worker(wmain_t *m)
{
    if (m->stopping)
        return;
    m->stopping = true;
    LV_INFO("worker: shutting down");
    lv_worker_stop(m->worker); /* cancels its backend requests: before the pool goes */
    m->worker = NULL;
    while (!lv_queue_empty(&m->conns))
        mconn_close(LV_CONTAINER_OF(lv_queue_head(&m->conns), mconn_t, link));
    if (m->listener_open)
        uv_close((uv_handle_t *)&m->listener, NULL);
    m->listener_open = false;
    lv_pool_destroy(m->pool);
    m->pool = NULL;
    lv_http_destroy(m->http);
    m->http = NULL;
    uv_signal_stop(&m->sigint);
    uv_signal_stop(&m->sigterm);
    uv_close((uv_handle_t *)&m->sigint, NULL);
    uv_close((uv_handle_t *)&m->sigterm, NULL);
    /* the worker's last events and heartbeat removal take up to 2 s; the loop ends when they are
     * done, or here */
    uv_timer_init(&m->loop, &m->exit_timer);
    m->exit_timer.data = m;
    uv_timer_start(&m->exit_timer, on_exit_deadline, EXIT_DEADLINE_MS, 0);
    uv_unref((uv_handle_t *)&m->exit_timer);
}

static void on_signal(uv_signal_t *h, int signum) { shutdown_worker(h->data); }

static void on_refreshed(void *ud)
{
    wmain_t *m = ud;
    if (!m->pool)
        return;
    for (size_t i = 0; i < lv_pool_count(m->pool); i++) {
        const lv_backend_t *b = lv_pool_at(m->pool, i);
        LV_INFO("backend %s: %s, %zu model(s)%s%s, up to %d concurrent", b->id, b->healthy ? "healthy" : "DOWN",
                b->n_models, b->last_error[0] ? ", " : "", b->last_error, b->max_concurrency);
    }
    if (lv_pool_count(m->pool) == 0)
        LV_WARN("worker: no backend is configured and none was found on this machine: it takes no jobs. Restart it "
                "with --backend NAME=URL");
}

static void on_detected(void *ud, int found) { on_refreshed(ud); }

static void worker_help(const char *prog)
{
    printf("Usage: %s worker --redis URL [--backend ID=URL ...] [OPTIONS]\n"
           "\n"
           "Answer the jobs of a livevlm cluster: take frames queued in Redis by the frontends\n"
           "(`%s serve --redis URL`), send them to this worker's model backends and send the answers\n"
           "back through Redis. Jobs are taken only while a backend has a free slot, in the order the\n"
           "queue decides (fair across users, weighted by --user-weight on the frontends); a job whose\n"
           "deadline passed while it waited is dropped unsent. Run as many workers as the backends need;\n"
           "each announces its capacity in Redis every second, and the frontends stop sending to one\n"
           "that has been silent for 3 s. SIGINT/SIGTERM: stop taking jobs, end those in flight (their\n"
           "pages hear worker_stopping and the next frame goes to another worker), exit within 5 s.\n"
           "\n"
           "Cluster:\n"
           "  --redis URL              the cluster's Redis (required): redis://[user:pass@]host[:port][/db]\n"
           "                           or unix:///path.sock (LIVEVLM_REDIS_PASSWORD for a socket's\n"
           "                           password); also LIVEVLM_REDIS\n"
           "  --node-id ID             this worker's id, 1..32 of a-z A-Z 0-9 _ - (default: random)\n"
           "\n"
           "Model backends (as `serve --help` describes them):\n"
           "  --backend ID=URL         add a backend (repeatable)\n"
           "  --backend-key ID=ENVVAR  its API key from environment variable ENVVAR\n"
           "  --backend-max ID=N, --backend-min ID=N, --backend-adaptive ID=on|off,\n"
           "  --backend-models ID=a,b, --backend-max-side ID=N, --backend-jpeg-quality ID=Q\n"
           "  --no-detect              do not look for local backends when none is configured\n"
           "  --connect-timeout-ms N, --first-token-timeout-ms N, --total-timeout-ms N,\n"
           "  --stream-idle-timeout-ms N   backend request deadlines\n"
           "  --max-frame-bytes N      largest frame a job may carry (default 4194304)\n"
           "\n"
           "Metrics and health (plain HTTP, one request per connection):\n"
           "  --host ADDR              address of the listener (default 127.0.0.1)\n"
           "  --port N                 its port (default 0: any free one; see --port-file)\n"
           "  --port-file PATH         write the bound port to PATH once listening\n"
           "  GET /metrics             livevlm_worker_jobs_total{outcome=answered|failed|stale|cancelled},\n"
           "                           livevlm_worker_in_flight, livevlm_worker_capacity,\n"
           "                           livevlm_worker_redis_up, livevlm_backend_* per backend\n"
           "  GET /healthz             200 while the process runs\n"
           "  GET /readyz              200 when Redis is reachable and a backend is healthy, else 503\n"
           "\n"
           "Other:\n"
           "  --backend-thread auto|on|off  backend requests on a thread of their own (default auto:\n"
           "                           on when this machine has more than one CPU)\n"
           "  --backend-client auto|curl  auto (default): chats to plain http:// backends through\n"
           "                           livevlm's own HTTP/1.1 client, the rest through libcurl; curl: every\n"
           "                           chat through libcurl too\n"
           "  --config FILE            JSON file with any of these options (as serve's)\n"
           "  --log-level L            debug, info, warn or error (default info)\n"
           "  --log-format text|json   json: one JSON object per line (ts, level, msg, and session,\n"
           "                           user, answer, trace_id, backend, model when known)\n"
           "  -h, --help               this text\n"
           "\n"
           "Example: one Redis, two frontends behind haproxy, one worker per GPU server (the frontends\n"
           "share a --config-dir for the access token; docs/operations.md \"Cluster\"):\n"
           "  redis-server --appendonly yes --port 6379 &\n"
           "  R=redis://127.0.0.1:6379 B=vllm=http://gpu1:8000/v1\n"
           "  %s serve --redis $R --no-tls --host 127.0.0.1 --port 8091 --backend $B &\n"
           "  %s serve --redis $R --no-tls --host 127.0.0.1 --port 8092 --backend $B &\n"
           "  %s worker --redis $R --backend $B --backend-max vllm=32 --port 9101 &\n"
           "  LIVEVLM_HAPROXY_BIND=0.0.0.0:8090 LIVEVLM_FRONTEND_1=127.0.0.1:8091 \\\n"
           "    LIVEVLM_FRONTEND_2=127.0.0.1:8092 haproxy -f deploy/haproxy.cfg\n"
           "  curl -s 127.0.0.1:9101/metrics | grep livevlm_worker_\n",
           prog, prog, prog, prog, prog);
}

int lv_worker_main(const char *prog, int argc, char **argv)
{
    static wmain_t main_storage; /* large (the config); lives for the whole process */
    wmain_t *m = &main_storage;
    char err[512] = "";
    int rc;
    /* main passes the command's own argv: "worker" first */
    if (argc > 0 && argv[0][0] != '-') {
        argc--;
        argv++;
    }
    lv_config_defaults(&m->cfg);
    snprintf(m->cfg.host, sizeof(m->cfg.host), "127.0.0.1");
    m->cfg.port = 0;
    if ((rc = lv_config_load(&m->cfg, argc, argv, err, sizeof(err))) < 0 ||
        (rc == 0 && lv_config_validate(&m->cfg, err, sizeof(err)) != 0)) {
        fprintf(stderr, "livevlm worker: %s\n", err);
        return 2;
    }
    if (rc == 1) {
        worker_help(prog);
        return 0;
    }
    if (!m->cfg.redis_url[0]) {
        fprintf(stderr, "livevlm worker: --redis URL is required: the Redis the frontends queue their jobs in (for "
                        "example --redis redis://127.0.0.1:6379); see `%s worker --help`\n",
                prog);
        return 2;
    }
    lv_log_level_t level;
    if (lv_log_parse_level(m->cfg.log_level, &level) != 0) {
        fprintf(stderr, "livevlm worker: --log-level: expected debug, info, warn or error\n");
        return 2;
    }
    lv_log_set_level(level);
    lv_log_set_json(m->cfg.log_json); /* --log-format json */
    signal(SIGPIPE, SIG_IGN);

    uv_loop_init(&m->loop);
    lv_queue_init(&m->conns);
    if (lv_http_create(&m->loop, &m->http) != 0 || lv_pool_create(&m->loop, m->http, &m->pool) != 0) {
        fprintf(stderr, "livevlm worker: out of memory at start\n");
        return 1;
    }
    if (lv_poolcfg_add(m->pool, &m->cfg) != 0)
        return 2;
    if (lv_poolcfg_thread(m->pool, &m->cfg, true) != 0)
        return 1;
    if (listen_metrics(m, err, sizeof(err)) != 0) {
        fprintf(stderr, "livevlm worker: %s\n", err);
        return 1;
    }
    if (lv_worker_start(&m->loop, m->pool, &m->cfg, &m->worker) != 0) {
        fprintf(stderr, "livevlm worker: could not start (see the log above)\n");
        return 1;
    }
    uv_signal_init(&m->loop, &m->sigint);
    uv_signal_init(&m->loop, &m->sigterm);
    m->sigint.data = m->sigterm.data = m;
    uv_signal_start(&m->sigint, on_signal, SIGINT);
    uv_signal_start(&m->sigterm, on_signal, SIGTERM);
    if (lv_pool_count(m->pool) > 0)
        lv_pool_refresh(m->pool, on_refreshed, m);
    else if (m->cfg.detect)
        lv_pool_detect_local(m->pool, on_detected, m);
    else
        on_refreshed(m);
    lv_pool_start_health(m->pool, HEALTH_PERIOD_MS);
    LV_INFO("worker: metrics on http://%s:%d/metrics", m->cfg.host, m->bound_port);
    write_port_file(m);

    uv_run(&m->loop, UV_RUN_DEFAULT);
    if (m->stopping) {
        /* the deadline timer is unreferenced, so the run ended without it: close it too */
        uv_close((uv_handle_t *)&m->exit_timer, NULL);
        for (int i = 0; i < 16 && uv_run(&m->loop, UV_RUN_NOWAIT) != 0; i++)
            ;
    }
    if (uv_loop_close(&m->loop) != 0)
        LV_WARN("worker: event loop closed with handles still open");
    LV_INFO("worker: stopped");
    return 0;
}
