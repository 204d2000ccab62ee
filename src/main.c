/* main.c - the livevlm binary: `serve` (default), `worker`, `token`, `fakevlm`, and the accounts
 * commands `user`, `key`, `tenant`, `quota` (lv_cli_accounts.c); flags, start-up and shutdown. */
#include <arpa/inet.h>
#include <ifaddrs.h>
#include <libgen.h>
#include <limits.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>
#include <uv.h>

#include "lv_accounts.h"
#include "lv_app.h"
#include "lv_auth.h"
#include "lv_backend.h"
#include "lv_cli_accounts.h"
#include "lv_cluster.h"
#include "lv_common.h"
#include "lv_config.h"
#include "lv_drr.h"
#include "lv_engine.h"
#include "lv_http.h"
#include "lv_iptable.h"
#include "lv_log.h"
#include "lv_oidc.h"
#include "lv_pipeline.h"
#include "lv_poolcfg.h"
#include "lv_server.h"
#include "lv_session.h"
#include "lv_sslmem.h"
#include "lv_stat.h"
#include "lv_state.h"
#include "lv_store.h"
#include "lv_store_mem.h"
#include "lv_sysmon.h"
#include "lv_tls.h"
#include "lv_worker.h"

#define LIVEVLM_VERSION "0.1.0"
#define HEALTH_PERIOD_MS 10000
#define SHUTDOWN_FLUSH_MS 1000 /* how long WebSockets get to take their close frame */

#if defined(__SANITIZE_ADDRESS__)
/* The sanitizer build's leak check (LeakSanitizer reads this hook from the binary). GLib's quark
 * table starts with a block allocated by GLib's own constructor; when gst_init's quarks outgrow
 * it, GLib copies it and keeps the old block unreferenced on purpose (lock-free readers may still
 * hold it). The same growth happens later from whichever call makes a new quark or interned
 * string (the registry's element names, a WebRTC offer's first use of webrtcbin). Only those
 * GLib entry points and allocations made while shared libraries initialise match: none of ours.
 * The stacks need a full unwind to show them (ASAN_OPTIONS=fast_unwind_on_malloc=0; the test
 * harness sets it for servers that run GStreamer). */
const char *__lsan_default_suppressions(void);
const char *__lsan_default_suppressions(void)
{
    return "leak:_dl_init\n"
           "leak:g_quark_from_string\n"
           "leak:g_quark_from_static_string\n"
           "leak:g_intern_string\n"
           "leak:g_intern_static_string\n";
}
#endif

static void usage(FILE *to, const char *prog)
{
    fprintf(to,
            "livevlm %s - live camera analysis with vision-language models, for many users at once\n"
            "\n"
            "Usage:\n"
            "  %s [serve] [OPTIONS]      run the server (the default command; see `%s serve --help`)\n"
            "  %s token [show|rotate]    print the access token, or replace it (old links stop working);\n"
            "                            --config-dir DIR or --config FILE say where it is kept\n"
            "  %s fakevlm [OPTIONS]      a stand-in model backend for trying livevlm without a GPU\n"
            "  %s worker [OPTIONS]       a cluster worker: takes jobs from Redis and calls the backends\n"
            "                            (see `%s worker --help`; frontends are `serve --redis URL`)\n"
            "  %s user|key|tenant|quota ...  accounts, API keys, tenants and quotas in the database\n"
            "                            (`%s user --help` etc.; a running server sees changes within 1 s)\n"
            "  %s --version | --help\n"
            "\n"
            "Docs: README.md, docs/protocol.md (the WebSocket/HTTP API), docs/fakevlm.md,\n"
            "docs/operations.md (running it; \"Cluster\" for several processes behind haproxy).\n",
            LIVEVLM_VERSION, prog, prog, prog, prog, prog, prog, prog, prog, prog);
}

/* Many sockets per process is the point; lift the soft descriptor limit to the hard one. */
static void raise_fd_limit(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
}

/* The URL with the token goes to standard output only, and only where the operator reads it: a
 * terminal, or when --print-token-url asks for it. stdout under a service manager usually ends up
 * in the same journal as the log, which never carries the token (docs/operations.md, "Access"). */
static bool token_url_wanted(const lv_app_t *app)
{
    return app->cfg.auth_mode == LV_AUTH_TOKEN && (app->cfg.print_token_url || isatty(STDOUT_FILENO));
}

static void print_urls(lv_app_t *app)
{
    const char *scheme = app->cfg.tls ? "https" : "http";
    char q[80] = "";
    if (token_url_wanted(app))
        snprintf(q, sizeof(q), "?token=%s", app->token);
    bool any = strcmp(app->cfg.host, "0.0.0.0") == 0 || strcmp(app->cfg.host, "::") == 0;
    bool v6 = strchr(app->cfg.host, ':') != NULL;
    printf("\nlivevlm %s is serving. Open in a browser:\n\n", LIVEVLM_VERSION);
    if (any || lv_host_is_loopback(app->cfg.host))
        printf("    %s://localhost:%d/%s\n", scheme, app->bound_port, q);
    else
        printf("    %s://%s%s%s:%d/%s\n", scheme, v6 ? "[" : "", app->cfg.host, v6 ? "]" : "", app->bound_port, q);
    if (any) {
        struct ifaddrs *ifs = NULL;
        if (getifaddrs(&ifs) == 0) {
            for (struct ifaddrs *i = ifs; i; i = i->ifa_next) {
                char addr[INET_ADDRSTRLEN];
                if (!i->ifa_addr || i->ifa_addr->sa_family != AF_INET)
                    continue;
                inet_ntop(AF_INET, &((struct sockaddr_in *)(void *)i->ifa_addr)->sin_addr, addr, sizeof(addr));
                if (strncmp(addr, "127.", 4) != 0)
                    printf("    %s://%s:%d/%s\n", scheme, addr, app->bound_port, q);
            }
            freeifaddrs(ifs);
        }
    }
    if (app->cfg.tls && !app->cfg.tls_cert[0])
        printf("\n(The certificate is self-signed: the browser asks once to accept it.)\n");
    if (app->cfg.auth_mode == LV_AUTH_ACCOUNTS || app->cfg.auth_mode == LV_AUTH_PROXY)
        printf("\nPeople sign in at /login; `livevlm user add NAME` makes accounts, `livevlm key add USER` API keys.\n");
    if (app->cfg.auth_mode == LV_AUTH_TOKEN && !q[0])
        printf("\nThe access token is left out because standard output is not a terminal: the page asks for\n"
               "it, `livevlm token show --config-dir %s` prints it (--print-token-url prints the URL with it).\n",
               app->cfg.config_dir);
    if (app->cfg.auth_mode == LV_AUTH_TOKEN)
        printf("The token is kept in %s/token; `livevlm token rotate` replaces it.\n", app->cfg.config_dir);
    printf("\n");
    fflush(stdout);
}

static void write_port_file(lv_app_t *app)
{
    if (!app->cfg.port_file[0])
        return;
    char tmp[700];
    snprintf(tmp, sizeof(tmp), "%s.tmp", app->cfg.port_file);
    FILE *f = fopen(tmp, "w");
    if (!f || fprintf(f, "%d\n", app->bound_port) < 0 || fclose(f) != 0 || rename(tmp, app->cfg.port_file) != 0)
        LV_ERROR("could not write the port file %s", app->cfg.port_file);
}

static void describe_backends(lv_app_t *app)
{
    size_t n = lv_pool_count(app->pool);
    for (size_t i = 0; i < n; i++) {
        lv_backend_t *b = lv_pool_at(app->pool, i);
        LV_INFO("backend %s: %s, %zu model(s)%s%s, up to %d concurrent", b->id, b->healthy ? "healthy" : "DOWN",
                b->n_models, b->last_error[0] ? ", " : "", b->last_error, b->max_concurrency);
    }
    if (n == 0) {
        snprintf(app->no_backend_help, sizeof(app->no_backend_help),
                 "No model backend is configured and none was found on this machine (looked for Ollama :11434, "
                 "vLLM :8000, SGLang :30000, llama.cpp :8080, LM Studio :1234). Start one, or restart livevlm with "
                 "--backend NAME=URL (for example --backend ollama=http://127.0.0.1:11434/v1); "
                 "`livevlm fakevlm` gives a stand-in for trying the UI.");
        LV_WARN("%s", app->no_backend_help);
    }
}

static void on_detected(void *ud, int found)
{
    lv_app_t *app = ud;
    LV_INFO("backend detection found %d local server(s)", found);
    describe_backends(app);
}

static void on_refreshed(void *ud) { describe_backends(ud); }

/* Second half of the shutdown, once every client socket is closed (or SHUTDOWN_FLUSH_MS passed):
 * stop everything else; the loop ends when the last handle has closed. */
static void shutdown_finish(void *ud)
{
    lv_app_t *app = ud;
    lv_engine_stop(app); /* the pipeline's jobs are cancelled here (in a cluster, taken back from Redis) */
    lv_cluster_stop(app); /* before the pool goes: an inline worker uses it */
    lv_server_stop(app);
    lv_oidc_stop(app);
    lv_accounts_stop(app); /* after every request: their database jobs finish here */
    if (app->sysmon)
        lv_sysmon_stop(app->sysmon);
    app->sysmon = NULL;
    lv_pool_destroy(app->pool);
    app->pool = NULL;
    lv_http_destroy(app->http);
    app->http = NULL;
    uv_signal_stop(&app->sigint);
    uv_signal_stop(&app->sigterm);
    uv_close((uv_handle_t *)&app->sigint, NULL);
    uv_close((uv_handle_t *)&app->sigterm, NULL);
}

/* The one shutdown path (SIGTERM, SIGINT): save state, stop accepting, send every WebSocket
 * close 1001 "server restarting" and give the sockets SHUTDOWN_FLUSH_MS to take it, then
 * shutdown_finish. */
static void shutdown_app(lv_app_t *app)
{
    if (app->stopping)
        return;
    app->stopping = true;
    LV_INFO("shutting down (%zu sockets, %zu sessions, %llu frames, %llu answers)", app->n_conns,
            lv_registry_count(app->reg), (unsigned long long)app->frames_total,
            (unsigned long long)app->answers_total);
    lv_state_save_final(app); /* first, while every session is still as its users left it */
    lv_server_drain(app, SHUTDOWN_FLUSH_MS, shutdown_finish, app);
}

static void on_signal(uv_signal_t *h, int signum) { shutdown_app(h->data); }

static int serve(int argc, char **argv, const char *prog)
{
    static lv_app_t app_storage; /* large; lives for the whole process */
    lv_app_t *app = &app_storage;
    char err[512] = "";
    uv_loop_t loop;
    int rc;
    lv_config_defaults(&app->cfg);
    if ((rc = lv_config_load(&app->cfg, argc, argv, err, sizeof(err))) < 0 ||
        (rc == 0 && lv_config_validate(&app->cfg, err, sizeof(err)) != 0)) {
        fprintf(stderr, "livevlm: %s\n", err);
        return 2;
    }
    if (rc == 1) {
        lv_config_print_help(prog);
        return 0;
    }
    lv_log_level_t level;
    if (lv_log_parse_level(app->cfg.log_level, &level) != 0) {
        fprintf(stderr, "livevlm: --log-level: expected debug, info, warn or error\n");
        return 2;
    }
    lv_log_set_level(level);
    lv_log_set_json(app->cfg.log_json); /* --log-format json: one JSON object per line */
    LV_DEBUG("%s", lv_sslmem_describe());
    raise_fd_limit();
    signal(SIGPIPE, SIG_IGN);

    if (app->cfg.auth_mode == LV_AUTH_TOKEN) { /* accounts need no shared token */
        bool created;
        if (lv_auth_load_token(app->cfg.config_dir, app->token, &created) != 0) {
            fprintf(stderr, "livevlm: cannot write the access token in %s (set --config-dir)\n", app->cfg.config_dir);
            return 1;
        }
        if (created)
            LV_INFO("created a new access token in %s/token", app->cfg.config_dir);
    }
    if (app->cfg.tls && !app->cfg.tls_cert[0]) {
        bool generated;
        if (lv_auth_ensure_dir(app->cfg.config_dir) != 0 ||
            lv_tls_ensure_cert(app->cfg.config_dir, app->cfg.tls_cert, sizeof(app->cfg.tls_cert), app->cfg.tls_key,
                               sizeof(app->cfg.tls_key), &generated) != 0) {
            fprintf(stderr, "livevlm: could not create a TLS certificate in %s\n", app->cfg.config_dir);
            return 1;
        }
    }

    uv_loop_init(&loop);
    app->loop = &loop;
    lv_store_mem_create(app->cfg.max_sessions, &app->store);
    lv_registry_caps_t caps = {app->cfg.max_sessions, app->cfg.max_sessions_per_ip};
    app->ips = lv_iptable_create();
    if (!app->store || !app->ips || lv_registry_create(app->store, &caps, &app->reg) != 0 ||
        lv_http_create(&loop, &app->http) != 0 || lv_pool_create(&loop, app->http, &app->pool) != 0) {
        fprintf(stderr, "livevlm: out of memory at start\n");
        return 1;
    }
    if (lv_poolcfg_thread(app->pool, &app->cfg, !app->cfg.redis_url[0] || app->cfg.workers_inline) != 0)
        return 1;
    /* in a cluster the frontend keeps its pool too: the model catalogue the page picks from and
     * is checked against, with the backends' health; inference goes to the workers */
    if (lv_poolcfg_add(app->pool, &app->cfg) != 0)
        return 2;
    if (lv_cluster_start(app) != 0) /* before the state and the engine: both ask app->cluster */
        return 1;
    if (app->cluster)
        LV_INFO("cluster frontend %s on %s%s", lv_cluster_node_id(app->cluster), lv_cluster_url(app->cluster),
                app->cfg.workers_inline ? ", with a worker in this process" : "");
    /* the database, the first admin and the accounts snapshot, before anyone can connect */
    if (lv_accounts_start(app) != 0) {
        fprintf(stderr, "livevlm: could not open the accounts database (see the log; --db sets another)\n");
        return 1;
    }
    if (lv_oidc_start(app) != 0) {
        fprintf(stderr, "livevlm: single sign-on is misconfigured (see the log)\n");
        return 2;
    }
    lv_state_start(app); /* sessions saved by the last run (single node), before anyone can connect */
    if (lv_sysmon_start(&loop, app->cfg.stats_period_ms, &app->sysmon) != 0)
        LV_WARN("system stats are unavailable");
    if (lv_server_start(app) != 0)
        return 1;
    if (lv_engine_start(app) != 0) {
        fprintf(stderr, "livevlm: out of memory at start\n");
        return 1;
    }
    uv_signal_init(&loop, &app->sigint);
    uv_signal_init(&loop, &app->sigterm);
    app->sigint.data = app->sigterm.data = app;
    uv_signal_start(&app->sigint, on_signal, SIGINT);
    uv_signal_start(&app->sigterm, on_signal, SIGTERM);

    if (lv_pool_count(app->pool) > 0)
        lv_pool_refresh(app->pool, on_refreshed, app);
    else if (app->cfg.detect)
        lv_pool_detect_local(app->pool, on_detected, app);
    else
        describe_backends(app);
    lv_pool_start_health(app->pool, HEALTH_PERIOD_MS);

    LV_INFO("listening on %s:%d (%s, auth %s)", app->cfg.host, app->bound_port, app->cfg.tls ? "TLS" : "no TLS",
            lv_config_auth_name(app->cfg.auth_mode));
    if (app->cfg.auth_mode == LV_AUTH_TOKEN)
        LV_INFO("the address to open is printed on standard output%s; the log never shows the access token "
                "(`livevlm token show --config-dir %s` prints it)",
                token_url_wanted(app) ? ", with the access token" : " without the access token", app->cfg.config_dir);
    write_port_file(app);
    print_urls(app);

    uv_run(&loop, UV_RUN_DEFAULT);

    /* the scheduler detaches its nodes, which live in the sessions: free it first */
    lv_drr_free(&app->drr);
    lv_pipeline_free(&app->pipe);
    lv_cluster_free(app);
    lv_state_destroy(app);
    lv_registry_destroy(app->reg);
    lv_stat_destroy(app);
    app->store->ops->destroy(app->store);
    lv_iptable_destroy(app->ips);
    rc = uv_loop_close(&loop);
    if (rc != 0)
        LV_WARN("event loop closed with handles still open");
    LV_INFO("stopped");
    return 0;
}

static int token_cmd(int argc, char **argv)
{
    lv_config_t cfg;
    char err[256], token[65];
    bool created;
    const char *action = "show", *dir_flag = NULL, *file = NULL;
    for (int i = 0; i < argc; i++) {
        if (strcmp(argv[i], "--config-dir") == 0 && i + 1 < argc)
            dir_flag = argv[++i];
        else if (strcmp(argv[i], "--config") == 0 && i + 1 < argc)
            file = argv[++i];
        else if (strcmp(argv[i], "show") == 0 || strcmp(argv[i], "rotate") == 0)
            action = argv[i];
        else {
            fprintf(stderr, "usage: livevlm token [show|rotate] [--config-dir DIR] [--config FILE]\n");
            return 2;
        }
    }
    /* the same precedence as serve: flag > environment > config file */
    lv_config_defaults(&cfg);
    if ((file && lv_config_load_file(&cfg, file, err, sizeof(err)) != 0) ||
        lv_config_apply_env(&cfg, err, sizeof(err)) != 0) {
        fprintf(stderr, "livevlm: %s\n", err);
        return 2;
    }
    if (dir_flag)
        snprintf(cfg.config_dir, sizeof(cfg.config_dir), "%s", dir_flag);
    int rc = strcmp(action, "rotate") == 0 ? lv_auth_rotate_token(cfg.config_dir, token)
                                           : lv_auth_load_token(cfg.config_dir, token, &created);
    if (rc) {
        fprintf(stderr, "livevlm: cannot read or write %s/token\n", cfg.config_dir);
        return 1;
    }
    printf("%s\n", token);
    if (strcmp(action, "rotate") == 0)
        fprintf(stderr, "New token written to %s/token; restart the server for it to take effect.\n", cfg.config_dir);
    return 0;
}

/* `livevlm fakevlm` runs the fakevlm binary built next to this one. */
static int fakevlm_cmd(char **argv, const char *self)
{
    char path[PATH_MAX], dir[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", dir, sizeof(dir) - 1);
    if (n <= 0)
        snprintf(dir, sizeof(dir), "%s", self);
    else
        dir[n] = '\0';
    snprintf(path, sizeof(path), "%s/fakevlm", dirname(dir));
    argv[0] = path;
    execv(path, argv);
    fprintf(stderr, "livevlm: cannot run %s (build it with `make`)\n", path);
    return 1;
}

int main(int argc, char **argv)
{
    /* First, before anything can allocate through OpenSSL (libcurl, libpq and the TLS front door
     * all do, and OpenSSL takes a new allocator only before its first allocation; no constructor
     * of ours runs before main). If it fails, OpenSSL simply uses malloc; serve logs which. */
    (void)lv_sslmem_install();
    const char *prog = "livevlm";
    /* libuv's thread pool (4 threads by default) runs the JPEG encodes and frame shaping of every
     * user, and WebRTC's GStreamer start, negotiations (up to three 5 s promise waits each) and
     * teardowns. 8 threads, of which WebRTC jobs may hold at most half (lv_webrtc.c), keep the
     * default's 4 for pictures whatever the video streams do. libuv reads this once, at its first
     * pool use, so it is set before anything runs; a user's own setting wins. */
    if (!getenv("UV_THREADPOOL_SIZE"))
        setenv("UV_THREADPOOL_SIZE", "8", 0);
    if (argc > 1 && (strcmp(argv[1], "--version") == 0 || strcmp(argv[1], "-V") == 0)) {
        printf("livevlm %s\n", LIVEVLM_VERSION);
        return 0;
    }
    if (argc > 1 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "help") == 0)) {
        usage(stdout, prog);
        return 0;
    }
    if (argc > 1 && strcmp(argv[1], "serve") == 0)
        return serve(argc - 2, argv + 2, prog);
    if (argc > 1 && strcmp(argv[1], "worker") == 0)
        return lv_worker_main(prog, argc - 1, argv + 1);
    if (argc > 1 && strcmp(argv[1], "token") == 0)
        return token_cmd(argc - 2, argv + 2);
    if (argc > 1 && strcmp(argv[1], "fakevlm") == 0)
        return fakevlm_cmd(argv + 1, argv[0]);
    if (argc > 1 && lv_cli_accounts_command(argv[1]))
        return lv_cli_accounts_main(prog, argc - 1, argv + 1);
    if (argc > 1 && argv[1][0] != '-') {
        fprintf(stderr, "livevlm: unknown command '%s'\n\n", argv[1]);
        usage(stderr, prog);
        return 2;
    }
    return serve(argc - 1, argv + 1, prog);
}
