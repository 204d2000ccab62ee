/* lg_opts.c - the load generator's command line: flags, their ranges, --help. */
#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lg.h"
#include "lv_common.h"

static const char HELP[] =
    "loadgen - drive a running livevlm with N simulated camera pages and measure what users see\n"
    "\n"
    "Usage: loadgen [options]\n"
    "\n"
    "Each session opens a WebSocket to /ws, sends hello (with the settings below) and start, then\n"
    "answers every credit with one LVF1 frame (a JPEG from --jpeg), like the page does. It measures\n"
    "the time from sending a frame to the first delta (TTFT) and to vlm_response, reads the server's\n"
    "queue_wait_ms and frame_age_ms, counts errors by code, and prints a summary (and --out JSON).\n"
    "\n"
    "Target:\n"
    "  --url URL            ws://HOST:PORT/PATH or wss://... (default ws://127.0.0.1:8090/ws; with no\n"
    "                       path, /ws). wss does not verify the certificate (self-signed servers).\n"
    "  --token T            access token (Authorization: Bearer T on the upgrade); other users of\n"
    "                       the machine can read it in the process list, --token-file cannot\n"
    "  --token-file F       read the token from F (e.g. <config dir>/token)\n"
    "\n"
    "Sessions and users:\n"
    "  --sessions N         sessions (sockets) to open (default 10)\n"
    "  --users U            group the sessions into U users (default 1): session i belongs to user\n"
    "                       i % U; answers, frames and errors are also counted per user and Jain's\n"
    "                       fairness index is computed over the users' answer counts\n"
    "  --heavy-user K:M     the first K users open M times as many sessions as each other user\n"
    "                       (sessions are dealt by weight; K < U)\n"
    "  --per-ip N           sessions per source address (default 20; the server's\n"
    "                       --max-sessions-per-ip/--max-sockets-per-ip must allow it). Each user gets\n"
    "                       its own addresses, starting at --src-base. The server keeps sessions\n"
    "                       for --session-idle seconds after their socket closes, and they count\n"
    "                       against its per-address cap: back-to-back runs may need another\n"
    "                       --src-base (e.g. 127.1.0.2) or a larger cap\n"
    "  --src-base ADDR      first source address (default 127.0.0.2 when the target is a 127.x\n"
    "                       address: Linux answers on all of 127/8 without setup); \"none\" lets the\n"
    "                       kernel choose (every session then comes from one address)\n"
    "\n"
    "What each session sends (the hello settings):\n"
    "  --jpeg F[,F...]      JPEG files sent round-robin (default tests/data/frame-640x480.jpg); each\n"
    "                       is read once\n"
    "  --interval-ms MS     interval_ms: how often the server asks for a frame (default 1000)\n"
    "  --prompt TEXT        prompt (default \"Describe the scene in one sentence.\"); \" [lg uU sS]\"\n"
    "                       is appended so every session's prompt differs and answers can be\n"
    "                       checked (fakevlm names the prompt's hash in its answer)\n"
    "  --same-prompt        send --prompt as it is: every session asks the same question (sessions\n"
    "                       watching one camera then share one inference per frame)\n"
    "  --source S           the `source` setting: \"camera:ID\" watches an admin-defined camera (the\n"
    "                       server sends no credits and the session sends no frames: answers are\n"
    "                       counted, latency from frame send is not measured); default: page\n"
    "  --max-tokens N       max_tokens (default: the server's)\n"
    "  --model M            model (default: the server's)\n"
    "  --backend B          backend id (default: any)\n"
    "  --stats-interval-ms MS  stats_interval_ms (default 0: no gpu_stats; a page uses 1000)\n"
    "  --push-fps F         push mode: send F frames a second per session without waiting for\n"
    "                       credits (credits are ignored; each answer_start is matched to the\n"
    "                       newest frame the server can have received by then: docs/loadgen.md)\n"
    "  --ping-ms MS         each session also sends {\"type\":\"ping\"} every MS ms and times the\n"
    "                       pong: the server's round trip on the text path, without a model\n"
    "                       (default 0: off; the server allows 50 text messages/s per socket)\n"
    "\n"
    "Timing (the run is bounded: it ends by ramp + warmup + duration + 10 s whatever happens):\n"
    "  --ramp-s S           spread connection setup over S seconds (default 2). Sessions keep the\n"
    "                       phase they connected at, so S >= interval spreads frames evenly\n"
    "  --warmup-s S         run S seconds more before measuring (default 2)\n"
    "  --duration-s S       the measured window (default 10); then every socket is closed\n"
    "                       (WebSocket close 1000) and loadgen exits\n"
    "\n"
    "Output:\n"
    "  --out FILE           also write the numbers as JSON to FILE\n"
    "  --quiet              no progress lines on stderr\n"
    "  --seed S             seed for mask keys and sampling (default 1)\n"
    "  --coalesce-us US     let at least US microseconds pass between two loop wake-ups, so that\n"
    "                       at high message rates one wake-up handles many messages (default\n"
    "                       1000; client-side times can be up to US late; 0: wake per event)\n"
    "  --help               this text\n"
    "\n"
    "The summary counts frames, answers, deltas, latencies and CPU inside the measured window only;\n"
    "connection results, error codes and close codes cover the whole run. Latency percentiles keep\n"
    "at most 1,000,000 samples each (uniform reservoir past that). CPU is loadgen's own user+system\n"
    "time (getrusage) over the window, divided by the frames sent in it.\n"
    "\n"
    "Exit status: 0 the run completed (errors are reported, not fatal); 1 no session could connect;\n"
    "2 bad flags or unreadable files.\n"
    "\n"
    "Examples:\n"
    "  loadgen --token-file /tmp/lvcfg/token --sessions 10 --duration-s 5\n"
    "  loadgen --url wss://127.0.0.1:8090/ws --token-file ~/.config/livevlm/token \\\n"
    "          --sessions 1000 --ramp-s 5 --duration-s 20 --out run.json\n"
    "  loadgen --token T --sessions 100 --users 10 --heavy-user 1:5 --interval-ms 500\n";

enum {
    OPT_URL = 1000, OPT_TOKEN, OPT_TOKEN_FILE, OPT_SESSIONS, OPT_USERS, OPT_HEAVY, OPT_PER_IP, OPT_SRC_BASE,
    OPT_JPEG, OPT_INTERVAL, OPT_PROMPT, OPT_MAX_TOKENS, OPT_MODEL, OPT_BACKEND, OPT_STATS, OPT_RAMP,
    OPT_WARMUP, OPT_DURATION, OPT_PUSH, OPT_PING, OPT_COALESCE, OPT_OUT, OPT_QUIET, OPT_SEED, OPT_HELP,
    OPT_SOURCE, OPT_SAME_PROMPT,
};

static const struct option LONGOPTS[] = {
    {"url", required_argument, NULL, OPT_URL},
    {"token", required_argument, NULL, OPT_TOKEN},
    {"token-file", required_argument, NULL, OPT_TOKEN_FILE},
    {"sessions", required_argument, NULL, OPT_SESSIONS},
    {"users", required_argument, NULL, OPT_USERS},
    {"heavy-user", required_argument, NULL, OPT_HEAVY},
    {"per-ip", required_argument, NULL, OPT_PER_IP},
    {"src-base", required_argument, NULL, OPT_SRC_BASE},
    {"jpeg", required_argument, NULL, OPT_JPEG},
    {"interval-ms", required_argument, NULL, OPT_INTERVAL},
    {"prompt", required_argument, NULL, OPT_PROMPT},
    {"same-prompt", no_argument, NULL, OPT_SAME_PROMPT},
    {"source", required_argument, NULL, OPT_SOURCE},
    {"max-tokens", required_argument, NULL, OPT_MAX_TOKENS},
    {"model", required_argument, NULL, OPT_MODEL},
    {"backend", required_argument, NULL, OPT_BACKEND},
    {"stats-interval-ms", required_argument, NULL, OPT_STATS},
    {"ramp-s", required_argument, NULL, OPT_RAMP},
    {"warmup-s", required_argument, NULL, OPT_WARMUP},
    {"duration-s", required_argument, NULL, OPT_DURATION},
    {"push-fps", required_argument, NULL, OPT_PUSH},
    {"ping-ms", required_argument, NULL, OPT_PING},
    {"coalesce-us", required_argument, NULL, OPT_COALESCE},
    {"out", required_argument, NULL, OPT_OUT},
    {"quiet", no_argument, NULL, OPT_QUIET},
    {"seed", required_argument, NULL, OPT_SEED},
    {"help", no_argument, NULL, OPT_HELP},
    {NULL, 0, NULL, 0},
};

static int bad(const char *flag, const char *why, const char *val)
{
    if (val)
        fprintf(stderr, "loadgen: %s: %s (got \"%s\"); see --help\n", flag, why, val);
    else
        fprintf(stderr, "loadgen: %s: %s; see --help\n", flag, why);
    return LG_EXIT_USAGE;
}

static int parse_long(const char *s, long lo, long hi, long *out)
{
    char *end = NULL;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < lo || v > hi)
        return LV_EINVAL;
    *out = v;
    return 0;
}

static int parse_double(const char *s, double lo, double hi, double *out)
{
    char *end = NULL;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || *end || !isfinite(v) || v < lo || v > hi)
        return LV_EINVAL;
    *out = v;
    return 0;
}

/* ws://host[:port][/path] or wss://...; IPv6 literals in brackets. */
static int parse_url(lg_opts_t *o, const char *url)
{
    const char *p;
    if (strlen(url) >= sizeof(o->url))
        return LV_EINVAL;
    snprintf(o->url, sizeof(o->url), "%s", url);
    if (strncmp(url, "ws://", 5) == 0) {
        o->tls = false;
        p = url + 5;
    } else if (strncmp(url, "wss://", 6) == 0) {
        o->tls = true;
        p = url + 6;
    } else {
        return LV_EINVAL;
    }
    const char *hs = p, *he;
    bool v6 = false;
    if (*p == '[') {
        hs = p + 1;
        he = strchr(hs, ']');
        if (!he)
            return LV_EINVAL;
        p = he + 1;
        v6 = true;
    } else {
        he = p + strcspn(p, ":/?#");
        p = he;
    }
    size_t hl = (size_t)(he - hs);
    if (hl == 0 || hl >= sizeof(o->host))
        return LV_EINVAL;
    memcpy(o->host, hs, hl);
    o->host[hl] = '\0';
    o->port = o->tls ? 443 : 80;
    if (*p == ':') {
        char portbuf[8];
        size_t pl = strcspn(p + 1, "/?#");
        long port;
        if (pl == 0 || pl >= sizeof(portbuf))
            return LV_EINVAL;
        memcpy(portbuf, p + 1, pl);
        portbuf[pl] = '\0';
        if (parse_long(portbuf, 1, 65535, &port))
            return LV_EINVAL;
        o->port = (int)port;
        p += 1 + pl;
    }
    if (*p && *p != '/')
        return LV_EINVAL;
    snprintf(o->path, sizeof(o->path), "%s", *p ? p : "/ws");
    if (strlen(p) >= sizeof(o->path) || strpbrk(o->path, " \r\n"))
        return LV_EINVAL;
    snprintf(o->host_hdr, sizeof(o->host_hdr), v6 ? "[%s]:%d" : "%s:%d", o->host, o->port);
    return 0;
}

static int set_token(lg_opts_t *o, const char *t, size_t n)
{
    while (n > 0 && (t[n - 1] == '\n' || t[n - 1] == '\r' || t[n - 1] == ' ' || t[n - 1] == '\t'))
        n--;
    while (n > 0 && (*t == ' ' || *t == '\t')) {
        t++;
        n--;
    }
    if (n == 0 || n >= sizeof(o->token))
        return LV_EINVAL;
    for (size_t i = 0; i < n; i++) {
        if ((unsigned char)t[i] < 0x21 || (unsigned char)t[i] > 0x7e)
            return LV_EINVAL; /* it goes into a header line */
    }
    memcpy(o->token, t, n);
    o->token[n] = '\0';
    o->have_token = true;
    return 0;
}

static int read_token_file(lg_opts_t *o, const char *path)
{
    char buf[512];
    FILE *f = fopen(path, "r");
    if (!f)
        return LV_EIO;
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = '\0';
    size_t line = strcspn(buf, "\n");
    return set_token(o, buf, line);
}

/* Split "a,b,c" in place into o->jpeg_paths. */
static int set_jpegs(lg_opts_t *o, char *list)
{
    o->n_jpegs = 0;
    char *p = list;
    while (p && *p) {
        char *comma = strchr(p, ',');
        if (comma)
            *comma = '\0';
        if (*p) {
            if (o->n_jpegs == LG_MAX_JPEGS)
                return LV_ELIMIT;
            o->jpeg_paths[o->n_jpegs++] = p;
        }
        p = comma ? comma + 1 : NULL;
    }
    return o->n_jpegs ? 0 : LV_EINVAL;
}

int lg_opts_parse(lg_opts_t *o, int argc, char **argv, bool *help_shown)
{
    long v;
    double d;
    const char *src_base = NULL;
    memset(o, 0, sizeof(*o));
    *help_shown = false;
    parse_url(o, "ws://127.0.0.1:8090/ws");
    o->sessions = 10;
    o->users = 1;
    o->per_ip = 20;
    o->jpeg_paths[0] = "tests/data/frame-640x480.jpg";
    o->n_jpegs = 1;
    o->interval_ms = 1000;
    o->prompt = "Describe the scene in one sentence.";
    o->ramp_s = 2;
    o->warmup_s = 2;
    o->duration_s = 10;
    o->seed = 1;
    o->coalesce_us = 1000;

    opterr = 0;
    optind = 1;
    int c;
    while ((c = getopt_long(argc, argv, ":h", LONGOPTS, NULL)) != -1) {
        switch (c) {
        case OPT_URL:
            if (parse_url(o, optarg))
                return bad("--url", "expected ws://HOST[:PORT][/PATH] or wss://...", optarg);
            break;
        case OPT_TOKEN:
            if (set_token(o, optarg, strlen(optarg)))
                return bad("--token", "expected printable text without spaces, under 256 bytes", NULL);
            break;
        case OPT_TOKEN_FILE:
            if (read_token_file(o, optarg))
                return bad("--token-file", "cannot read a token from this file", optarg);
            break;
        case OPT_SESSIONS:
            if (parse_long(optarg, 1, 1000000, &v))
                return bad("--sessions", "expected 1..1000000", optarg);
            o->sessions = (uint32_t)v;
            break;
        case OPT_USERS:
            if (parse_long(optarg, 1, 1000000, &v))
                return bad("--users", "expected 1..1000000", optarg);
            o->users = (uint32_t)v;
            break;
        case OPT_HEAVY: {
            char *end = NULL;
            errno = 0;
            long k = strtol(optarg, &end, 10);
            if (errno || end == optarg || *end != ':' || k < 1 || k > 1000000)
                return bad("--heavy-user", "expected K:M, e.g. 1:5", optarg);
            if (parse_long(end + 1, 1, 10000, &v))
                return bad("--heavy-user", "expected K:M with M in 1..10000", optarg);
            o->heavy_users = (uint32_t)k;
            o->heavy_factor = (uint32_t)v;
            break;
        }
        case OPT_PER_IP:
            if (parse_long(optarg, 1, 1000000, &v))
                return bad("--per-ip", "expected 1..1000000", optarg);
            o->per_ip = (uint32_t)v;
            break;
        case OPT_SRC_BASE:
            src_base = optarg;
            break;
        case OPT_JPEG:
            if (set_jpegs(o, optarg))
                return bad("--jpeg", "expected FILE[,FILE...] (at most 64 files)", optarg);
            break;
        case OPT_INTERVAL:
            if (parse_long(optarg, 100, 3600000, &v))
                return bad("--interval-ms", "expected 100..3600000", optarg);
            o->interval_ms = (int)v;
            break;
        case OPT_PROMPT:
            if (!*optarg || strlen(optarg) > 3900)
                return bad("--prompt", "expected 1..3900 bytes (the server takes 4000 with the suffix)", NULL);
            o->prompt = optarg;
            break;
        case OPT_SAME_PROMPT:
            o->same_prompt = true;
            break;
        case OPT_SOURCE:
            if (!*optarg || strlen(optarg) > 64)
                return bad("--source", "expected page, webrtc or camera:ID", optarg);
            o->source = optarg;
            break;
        case OPT_MAX_TOKENS:
            if (parse_long(optarg, 1, 4096, &v))
                return bad("--max-tokens", "expected 1..4096", optarg);
            o->max_tokens = (int)v;
            break;
        case OPT_MODEL:
            if (strlen(optarg) > 256)
                return bad("--model", "expected at most 256 bytes", optarg);
            o->model = optarg;
            break;
        case OPT_BACKEND:
            if (strlen(optarg) > 256)
                return bad("--backend", "expected at most 256 bytes", optarg);
            o->backend = optarg;
            break;
        case OPT_STATS:
            if (parse_long(optarg, 0, 60000, &v) || (v > 0 && v < 250))
                return bad("--stats-interval-ms", "expected 0 or 250..60000", optarg);
            o->stats_interval_ms = (int)v;
            break;
        case OPT_RAMP:
            if (parse_double(optarg, 0, 86400, &d))
                return bad("--ramp-s", "expected 0..86400", optarg);
            o->ramp_s = d;
            break;
        case OPT_WARMUP:
            if (parse_double(optarg, 0, 86400, &d))
                return bad("--warmup-s", "expected 0..86400", optarg);
            o->warmup_s = d;
            break;
        case OPT_DURATION:
            if (parse_double(optarg, 0.1, 86400, &d))
                return bad("--duration-s", "expected 0.1..86400", optarg);
            o->duration_s = d;
            break;
        case OPT_PUSH:
            if (parse_double(optarg, 0, 1000, &d))
                return bad("--push-fps", "expected 0..1000 (0: credit mode)", optarg);
            o->push_fps = d;
            break;
        case OPT_PING:
            if (parse_long(optarg, 0, 600000, &v) || (v > 0 && v < 100))
                return bad("--ping-ms", "expected 0 or 100..600000", optarg);
            o->ping_ms = (int)v;
            break;
        case OPT_COALESCE:
            if (parse_long(optarg, 0, 100000, &v))
                return bad("--coalesce-us", "expected 0..100000", optarg);
            o->coalesce_us = (int)v;
            break;
        case OPT_OUT:
            o->out_path = optarg;
            break;
        case OPT_QUIET:
            o->quiet = true;
            break;
        case OPT_SEED: {
            char *end = NULL;
            errno = 0;
            unsigned long long s = strtoull(optarg, &end, 10);
            if (errno || end == optarg || *end || optarg[0] == '-')
                return bad("--seed", "expected an unsigned integer", optarg);
            o->seed = s;
            break;
        }
        case OPT_HELP:
        case 'h':
            fputs(HELP, stdout);
            *help_shown = true;
            return LG_EXIT_USAGE;
        case ':':
            return bad(argv[optind - 1], "needs a value", NULL);
        default:
            return bad(argv[optind - 1], "unknown option", NULL);
        }
    }
    if (optind < argc)
        return bad(argv[optind], "unexpected argument (all options are --name VALUE)", NULL);
    if (o->users > o->sessions)
        return bad("--users", "more users than sessions", NULL);
    if (o->heavy_users && o->heavy_users >= o->users)
        return bad("--heavy-user", "K must be smaller than --users", NULL);

    /* Source addresses: the 127/8 trick only works towards a loopback target, which main()
     * knows once the host is resolved (src_auto). */
    inet_pton(AF_INET, "127.0.0.2", &o->src_base);
    if (!src_base) {
        o->src_auto = true;
    } else if (strcmp(src_base, "none") != 0) {
        if (inet_pton(AF_INET, src_base, &o->src_base) != 1)
            return bad("--src-base", "expected an IPv4 address or none", src_base);
        o->bind_src = true;
    }
    return 0;
}
