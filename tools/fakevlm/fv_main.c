/* fv_main.c - fakevlm's command line: parse and check every flag, then run the server. */
#include <arpa/inet.h>
#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "fv_server.h"
#include "lv_common.h"
#include "lv_log.h"

#define EXIT_USAGE 2

static const char usage_text[] =
    "fakevlm " FV_VERSION " - an OpenAI-compatible vision-language model backend that needs no GPU.\n"
    "It answers /v1/chat/completions with text that names what it received, paced by a latency and\n"
    "capacity model, and can inject faults. For livevlm's tests and benchmarks, and for trying the UI.\n"
    "\n"
    "Usage: fakevlm [options]\n"
    "\n"
    "Listening:\n"
    "  --host ADDR        address to bind (default 127.0.0.1); loopback only unless --allow-remote\n"
    "  --port N           TCP port (default 9100); 0 picks a free one (see --port-file)\n"
    "  --port-file PATH   write the bound port to PATH once listening (removed at exit)\n"
    "  --allow-remote     allow a non-loopback --host (fakevlm has no authentication)\n"
    "\n"
    "Models and answers:\n"
    "  --models A,B,...   model ids served (default fake-vlm-1,fake-vlm-2); letters, digits and ._:/@+-\n"
    "  --tokens N         words per answer (default 20, 1..100000; never fewer than the 7-word head)\n"
    "\n"
    "Latency and capacity (service time = ttft + tokens x token-ms; throughput = slots / service time):\n"
    "  --slots K          requests served at once (default 4); more wait in a FIFO queue\n"
    "  --ttft-ms MS       time from leaving the queue to the first token (default 150)\n"
    "  --token-ms MS      time per token after the first (default 20)\n"
    "  --jitter-ms MS     add a uniform 0..MS to each request's time to first token (default 0)\n"
    "  --queue-max Q      requests allowed to wait for a slot (default 256); more get HTTP 429\n"
    "\n"
    "Faults (kinds: error500 error429 stall stall-after-first slow malformed nostream drop):\n"
    "  --fault KIND       inject KIND into a fraction of the requests\n"
    "  --fault-rate P     that fraction, 0..1 (default 1 when --fault is given)\n"
    "  --seed S           seed for which requests get the fault and for jitter (default 1)\n"
    "  Per request instead: header \"X-Fake-Fault: KIND\" (or \"none\"), or \"[[fault:KIND]]\" in the prompt.\n"
    "\n"
    "Other:\n"
    "  --quiet            no log line per request (errors are still logged)\n"
    "  --help             this text\n"
    "  --version          print the version\n"
    "\n"
    "Endpoints: GET /v1/models, POST /v1/chat/completions, GET /healthz, GET /stats\n"
    "\n"
    "Examples:\n"
    "  fakevlm --port 9100                          # then: livevlm serve --backend fake=http://127.0.0.1:9100/v1\n"
    "  fakevlm --port 0 --port-file /tmp/fv.port --quiet --ttft-ms 0 --token-ms 0 --slots 64\n"
    "  fakevlm --slots 1 --ttft-ms 500 --token-ms 50 --queue-max 2   # a small, slow GPU that says 429\n"
    "  fakevlm --fault drop --fault-rate 0.1 --seed 7                 # 10% of answers cut mid-stream\n"
    "  curl -s localhost:9100/v1/chat/completions -H 'X-Fake-Fault: error500' \\\n"
    "       -d '{\"model\":\"fake-vlm-1\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}'\n"
    "\n"
    "Full documentation: docs/fakevlm.md\n";

static void usage_error(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));

static void usage_error(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("fakevlm: ", stderr);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputs("\nTry 'fakevlm --help'.\n", stderr);
    exit(EXIT_USAGE);
}

static unsigned long parse_ulong(const char *flag, const char *s, unsigned long min, unsigned long max)
{
    char *end = NULL;
    errno = 0;
    if (!s || *s < '0' || *s > '9')
        usage_error("%s needs a whole number", flag);
    unsigned long v = strtoul(s, &end, 10);
    if (errno || *end != '\0' || v < min || v > max)
        usage_error("%s must be a whole number from %lu to %lu (got \"%s\")", flag, min, max, s);
    return v;
}

static bool model_char_ok(char ch)
{
    return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
           (ch != '\0' && strchr("._:/@+-", ch) != NULL);
}

/* Model ids go into answers and JSON verbatim, hence the small alphabet. */
static void parse_models(fv_config_t *cfg, const char *list)
{
    cfg->n_models = 0;
    const char *p = list;
    for (;;) {
        const char *comma = strchr(p, ',');
        size_t n = comma ? (size_t)(comma - p) : strlen(p);
        if (n == 0)
            usage_error("--models: empty model id in \"%s\"", list);
        if (n > FV_MODEL_MAX)
            usage_error("--models: a model id is over 256 bytes in \"%s\"", list);
        if (cfg->n_models == FV_MODELS_MAX)
            usage_error("--models: more than 64 models in \"%s\"", list);
        for (size_t i = 0; i < n; i++) {
            if (!model_char_ok(p[i]))
                usage_error("--models: model ids may hold only letters, digits and ._:/@+- (got \"%s\")", list);
        }
        char *dst = cfg->models[cfg->n_models];
        memcpy(dst, p, n);
        dst[n] = '\0';
        for (size_t i = 0; i < cfg->n_models; i++) {
            if (strcmp(cfg->models[i], dst) == 0)
                usage_error("--models: model id listed twice in \"%s\"", list);
        }
        cfg->n_models++;
        if (!comma)
            break;
        p = comma + 1;
    }
}

/* fakevlm has no authentication, so it listens on loopback unless told otherwise. */
static void check_host(fv_config_t *cfg, bool allow_remote)
{
    if (strcmp(cfg->host, "localhost") == 0)
        snprintf(cfg->host, sizeof(cfg->host), "127.0.0.1");
    unsigned char a[16];
    bool loopback;
    if (inet_pton(AF_INET, cfg->host, a) == 1) {
        loopback = a[0] == 127;
    } else if (inet_pton(AF_INET6, cfg->host, a) == 1) {
        static const unsigned char v6_loop[16] = {[15] = 1};
        static const unsigned char v4_mapped[12] = {[10] = 0xff, [11] = 0xff};
        loopback = memcmp(a, v6_loop, 16) == 0 || (memcmp(a, v4_mapped, 12) == 0 && a[12] == 127);
    } else {
        usage_error("--host must be a numeric IPv4 or IPv6 address or localhost (got \"%s\")", cfg->host);
    }
    if (!loopback && !allow_remote)
        usage_error("refusing to listen on %s: fakevlm is a test tool without authentication; "
                    "add --allow-remote if you mean it",
                    cfg->host);
}

/* Connections are capped at FV_CONNS_MAX; make sure the descriptor limit is not the lower cap. */
static void raise_fd_limit(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
        return;
    rlim_t want = FV_CONNS_MAX + 64;
    if (rl.rlim_cur >= want)
        return;
    rl.rlim_cur = rl.rlim_max == RLIM_INFINITY || rl.rlim_max >= want ? want : rl.rlim_max;
    if (setrlimit(RLIMIT_NOFILE, &rl) != 0 || rl.rlim_cur < want)
        LV_WARN("open file limit is %llu, below the %d connections fakevlm allows", (unsigned long long)rl.rlim_cur,
                FV_CONNS_MAX);
}

int main(int argc, char **argv)
{
    static fv_config_t cfg; /* static: the model table is 16 KiB */
    snprintf(cfg.host, sizeof(cfg.host), "127.0.0.1");
    cfg.port = 9100;
    cfg.slots = 4;
    cfg.ttft_ms = 150;
    cfg.token_ms = 20;
    cfg.tokens = 20;
    cfg.queue_max = 256;
    cfg.seed = 1;
    cfg.fault_rate = -1;
    parse_models(&cfg, "fake-vlm-1,fake-vlm-2");
    bool allow_remote = false;

    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i];
        char name[64];
        const char *val = NULL;
        const char *eq = strchr(arg, '=');
        if (strncmp(arg, "--", 2) != 0)
            usage_error("unexpected argument \"%s\"", arg);
        size_t nlen = eq ? (size_t)(eq - arg) : strlen(arg);
        if (nlen >= sizeof(name))
            usage_error("unknown option \"%s\"", arg);
        memcpy(name, arg, nlen);
        name[nlen] = '\0';
        if (eq)
            val = eq + 1;

        /* flags without a value */
        if (strcmp(name, "--help") == 0 || strcmp(name, "--version") == 0 || strcmp(name, "--quiet") == 0 ||
            strcmp(name, "--allow-remote") == 0) {
            if (val)
                usage_error("%s takes no value", name);
            if (strcmp(name, "--help") == 0) {
                fputs(usage_text, stdout);
                return 0;
            }
            if (strcmp(name, "--version") == 0) {
                printf("fakevlm %s\n", FV_VERSION);
                return 0;
            }
            if (strcmp(name, "--quiet") == 0)
                cfg.quiet = true;
            else
                allow_remote = true;
            continue;
        }
        static const char *const with_value[] = {"--host", "--port", "--models", "--slots", "--ttft-ms",
                                                 "--token-ms", "--jitter-ms", "--tokens", "--queue-max", "--fault",
                                                 "--fault-rate", "--seed", "--port-file"};
        bool known = false;
        for (size_t k = 0; k < LV_ARRAY_LEN(with_value); k++)
            known = known || strcmp(name, with_value[k]) == 0;
        if (!known)
            usage_error("unknown option \"%s\"", name);
        if (!val) {
            if (i + 1 >= argc)
                usage_error("%s needs a value", name);
            val = argv[++i];
        }

        if (strcmp(name, "--host") == 0) {
            if (strlen(val) >= sizeof(cfg.host))
                usage_error("--host is too long: \"%s\"", val);
            snprintf(cfg.host, sizeof(cfg.host), "%s", val);
        } else if (strcmp(name, "--port") == 0) {
            cfg.port = (int)parse_ulong(name, val, 0, 65535);
        } else if (strcmp(name, "--models") == 0) {
            parse_models(&cfg, val);
        } else if (strcmp(name, "--slots") == 0) {
            cfg.slots = (unsigned)parse_ulong(name, val, 1, 100000);
        } else if (strcmp(name, "--ttft-ms") == 0) {
            cfg.ttft_ms = (unsigned)parse_ulong(name, val, 0, 3600000);
        } else if (strcmp(name, "--token-ms") == 0) {
            cfg.token_ms = (unsigned)parse_ulong(name, val, 0, 60000);
        } else if (strcmp(name, "--jitter-ms") == 0) {
            cfg.jitter_ms = (unsigned)parse_ulong(name, val, 0, 3600000);
        } else if (strcmp(name, "--tokens") == 0) {
            cfg.tokens = (unsigned)parse_ulong(name, val, 1, 100000);
        } else if (strcmp(name, "--queue-max") == 0) {
            cfg.queue_max = (unsigned)parse_ulong(name, val, 0, 1000000);
        } else if (strcmp(name, "--fault") == 0) {
            if (fv_fault_parse(val, strlen(val), &cfg.fault) || cfg.fault == FV_FAULT_NONE)
                usage_error("--fault must be one of: %s (got \"%s\")", fv_fault_list(), val);
        } else if (strcmp(name, "--fault-rate") == 0) {
            char *end = NULL;
            errno = 0;
            double p = strtod(val, &end);
            if (errno || end == val || *end != '\0' || !(p >= 0.0 && p <= 1.0))
                usage_error("--fault-rate must be a number from 0 to 1 (got \"%s\")", val);
            cfg.fault_rate = p;
        } else if (strcmp(name, "--seed") == 0) {
            char *end = NULL;
            errno = 0;
            if (*val < '0' || *val > '9')
                usage_error("--seed must be a whole number (got \"%s\")", val);
            cfg.seed = strtoull(val, &end, 10);
            if (errno || *end != '\0')
                usage_error("--seed must be a whole number below 2^64 (got \"%s\")", val);
        } else if (strcmp(name, "--port-file") == 0) {
            if (*val == '\0')
                usage_error("--port-file needs a path");
            cfg.port_file = val;
        }
    }
    if (cfg.fault_rate >= 0 && cfg.fault == FV_FAULT_NONE)
        usage_error("--fault-rate needs --fault KIND");
    if (cfg.fault_rate < 0)
        cfg.fault_rate = cfg.fault == FV_FAULT_NONE ? 0.0 : 1.0;
    check_host(&cfg, allow_remote);

    lv_log_set_level(cfg.quiet ? LV_LOG_WARN : LV_LOG_INFO);
    signal(SIGPIPE, SIG_IGN); /* a client gone mid-write is an error code, not a signal */
    raise_fd_limit();
    int rc = fv_server_run(&cfg);
    return rc == 0 ? 0 : 1;
}
