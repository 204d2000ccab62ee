/* test_config.c - `serve` configuration: precedence (flags > environment > config file >
 * defaults, flags winning wherever --config stands), the --host check, cameras, cluster options and
 * trusted proxies. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "lv_common.h"
#include "lv_config.h"

static lv_config_t cfg; /* large: not on the stack */
static char err[512];
static char file[64];

static void write_file(const char *json)
{
    snprintf(file, sizeof(file), "/tmp/lv-test-config-XXXXXX");
    int fd = mkstemp(file);
    assert_true(fd >= 0);
    FILE *f = fdopen(fd, "w");
    assert_non_null(f);
    fputs(json, f);
    fclose(f);
}

static int setup(void **state)
{
    (void)state;
    unsetenv("LIVEVLM_HOST");
    unsetenv("LIVEVLM_PORT");
    unsetenv("LIVEVLM_LOG_LEVEL");
    unsetenv("LIVEVLM_BACKEND");
    unsetenv("LIVEVLM_TRUSTED_PROXY");
    lv_config_defaults(&cfg);
    err[0] = '\0';
    file[0] = '\0';
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    if (file[0])
        unlink(file);
    unsetenv("LIVEVLM_HOST");
    unsetenv("LIVEVLM_PORT");
    unsetenv("LIVEVLM_LOG_LEVEL");
    unsetenv("LIVEVLM_TRUSTED_PROXY");
    return 0;
}

static int load(int argc, const char **argv)
{
    return lv_config_load(&cfg, argc, (char **)argv, err, sizeof(err));
}

/* the attack report's case: the file says 0.0.0.0, the flag 127.0.0.1, in both orders */
static void flags_win_over_file_in_any_order(void **state)
{
    (void)state;
    write_file("{\"host\": \"0.0.0.0\", \"port\": 1111, \"log-level\": \"warn\"}");
    const char *before[] = {"--host", "127.0.0.1", "--config", file};
    assert_int_equal(load(4, before), 0);
    assert_string_equal(cfg.host, "127.0.0.1");
    assert_int_equal(cfg.port, 1111); /* what no flag sets still comes from the file */
    assert_string_equal(cfg.log_level, "warn");

    lv_config_defaults(&cfg);
    const char *after[] = {"--config", file, "--host", "127.0.0.1", "--port", "2222"};
    assert_int_equal(load(6, after), 0);
    assert_string_equal(cfg.host, "127.0.0.1");
    assert_int_equal(cfg.port, 2222);
}

static void environment_between_file_and_flags(void **state)
{
    (void)state;
    write_file("{\"host\": \"127.0.0.2\", \"port\": 1111, \"log-level\": \"warn\"}");
    setenv("LIVEVLM_HOST", "127.0.0.3", 1);
    setenv("LIVEVLM_PORT", "3333", 1);
    const char *args[] = {"--config", file, "--port", "4444"};
    assert_int_equal(load(4, args), 0);
    assert_string_equal(cfg.host, "127.0.0.3"); /* env over file */
    assert_int_equal(cfg.port, 4444);           /* flag over env */
    assert_string_equal(cfg.log_level, "warn"); /* file over default */

    lv_config_defaults(&cfg);
    const char *none[] = {"--no-tls"};
    assert_int_equal(load(1, none), 0);
    assert_string_equal(cfg.host, "127.0.0.3"); /* env over default */
    assert_int_equal(cfg.port, 3333);
}

/* a flag may refer to a backend that only the file defines, even before --config */
static void flag_on_backend_from_file(void **state)
{
    (void)state;
    write_file("{\"backends\": [{\"id\": \"gpu\", \"url\": \"http://127.0.0.1:9/v1\"}]}");
    const char *args[] = {"--backend-max", "gpu=7", "--config", file};
    assert_int_equal(load(4, args), 0);
    assert_int_equal(cfg.n_backends, 1);
    assert_int_equal(cfg.backends[0].max_concurrency, 7);
    /* without the file the backend is unknown: still an error */
    lv_config_defaults(&cfg);
    const char *alone[] = {"--backend-max", "gpu=7"};
    assert_int_equal(load(2, alone), LV_EINVAL);
    assert_non_null(strstr(err, "gpu"));
}

static void file_errors_name_the_file(void **state)
{
    (void)state;
    write_file("{\"host\": \"127.1\"}");
    const char *args[] = {"--config", file};
    assert_int_equal(load(2, args), LV_EINVAL);
    assert_non_null(strstr(err, file));
    assert_non_null(strstr(err, "127.1"));
    /* --help is answered before the file is read: a broken file does not hide the help */
    const char *help[] = {"--config", file, "--help"};
    assert_int_equal(load(3, help), 1);
}

static void bad_host_in_environment(void **state)
{
    (void)state;
    setenv("LIVEVLM_HOST", "127.0.0.1:80", 1);
    const char *none[] = {"--no-tls"};
    assert_int_equal(load(1, none), LV_EINVAL);
    assert_non_null(strstr(err, "LIVEVLM_HOST"));
    assert_non_null(strstr(err, "--port"));
}

static void host_check(void **state)
{
    (void)state;
    static const struct {
        const char *in, *out;
    } good[] = {{"0.0.0.0", "0.0.0.0"}, {"127.0.0.1", "127.0.0.1"}, {"::", "::"},           {"::1", "::1"},
                {"[::1]", "::1"},       {"localhost", "localhost"}, {"fe80::1", "fe80::1"}, {"[::]", "::"}};
    static const struct {
        const char *in, *needle;
    } bad[] = {{"127.1", "four numbers"},  {"127.0.0.1:80", "--port"},    {"[::1]:8090", "--port"},
               {"localhost:80", "--port"}, {"1.2.3.256", "four numbers"}, {"example.com", "expected"},
               {"", "expected"},           {"[::1", "expected"},          {"[127.0.0.1]", "expected"},
               {"127.0.0.1 ", "expected"}, {"0x7f.0.0.1", "expected"},    {"::1%lo", "expected"}};
    char out[256];
    for (size_t i = 0; i < LV_ARRAY_LEN(good); i++) {
        err[0] = '\0';
        assert_int_equal(lv_config_check_host("--host", good[i].in, out, sizeof(out), err, sizeof(err)), 0);
        assert_string_equal(out, good[i].out);
    }
    for (size_t i = 0; i < LV_ARRAY_LEN(bad); i++) {
        err[0] = '\0';
        assert_int_equal(lv_config_check_host("--host", bad[i].in, out, sizeof(out), err, sizeof(err)), LV_EINVAL);
        if (!strstr(err, bad[i].needle) || !strstr(err, "--host"))
            fail_msg("'%s' -> '%s' (expected it to mention '%s' and --host)", bad[i].in, err, bad[i].needle);
    }
    /* the flag itself */
    const char *args[] = {"--host", "127.1"};
    assert_int_equal(load(2, args), LV_EINVAL);
    assert_non_null(strstr(err, "--host"));
    lv_config_defaults(&cfg);
    const char *v6[] = {"--host", "[::1]"};
    assert_int_equal(load(2, v6), 0);
    assert_string_equal(cfg.host, "::1");
    assert_true(lv_host_is_loopback(cfg.host));
}

static void print_token_url_flag(void **state)
{
    (void)state;
    assert_false(cfg.print_token_url);
    const char *args[] = {"--print-token-url"};
    assert_int_equal(load(1, args), 0);
    assert_true(cfg.print_token_url);
}

/* --backend-client: auto by default, curl from a flag or the file, anything else refused with a
 * message that names the flag and the choices */
static void backend_client(void **state)
{
    (void)state;
    assert_false(cfg.backend_client_curl);
    const char *curl[] = {"--backend-client", "curl"};
    assert_int_equal(load(2, curl), 0);
    assert_true(cfg.backend_client_curl);
    const char *back[] = {"--backend-client", "auto"};
    assert_int_equal(load(2, back), 0);
    assert_false(cfg.backend_client_curl);
    lv_config_defaults(&cfg);
    write_file("{\"backend-client\": \"curl\"}");
    const char *from_file[] = {"--config", file};
    assert_int_equal(load(2, from_file), 0);
    assert_true(cfg.backend_client_curl);
    lv_config_defaults(&cfg);
    const char *bad[] = {"--backend-client", "libcurl"};
    assert_int_equal(load(2, bad), LV_EINVAL);
    assert_non_null(strstr(err, "--backend-client: expected auto or curl, got 'libcurl'"));
}

/* --delta-rate: 2500 by default, 0 turns the stretching off, a negative rate is refused */
static void delta_rate(void **state)
{
    (void)state;
    lv_config_defaults(&cfg);
    assert_int_equal(cfg.delta_rate, 2500);
    const char *off[] = {"--delta-rate", "0"};
    assert_int_equal(load(2, off), 0);
    assert_int_equal(cfg.delta_rate, 0);
    const char *more[] = {"--delta-rate", "10000"};
    assert_int_equal(load(2, more), 0);
    assert_int_equal(cfg.delta_rate, 10000);
    const char *bad[] = {"--delta-rate", "-1"};
    assert_int_equal(load(2, bad), LV_EINVAL);
    assert_non_null(strstr(err, "--delta-rate"));
    lv_config_defaults(&cfg);
}

/* --camera: repeatable, the file's "camera" (a string or a list), a flag replacing the file's
 * definition of the same ID; refusals never quote the URL (it may hold a password) */
static void cameras(void **state)
{
    (void)state;
    write_file("{\"camera\": [\"lobby=rtsp://u:filepw@10.0.0.5/s1\", \"dock=rtsp://10.0.0.6:8554/h264\"]}");
    const char *args[] = {"--config", file, "--camera", "lobby=rtsp://viewer:flagpw@10.0.0.7/s2", "--camera",
                          "gate=rtsps://10.0.0.8/x"};
    assert_int_equal(load(6, args), 0);
    assert_int_equal(cfg.n_cameras, 3);
    assert_string_equal(cfg.cameras[0].id, "lobby");
    assert_string_equal(cfg.cameras[0].url_clean, "rtsp://10.0.0.7:554/s2");
    assert_string_equal(cfg.cameras[0].user, "viewer");
    assert_string_equal(cfg.cameras[0].password, "flagpw");
    assert_string_equal(cfg.cameras[1].id, "dock");
    assert_string_equal(cfg.cameras[2].url_clean, "rtsps://10.0.0.8:322/x");

    unlink(file);
    write_file("{\"camera\": \"one=rtsp://h/p\"}");
    lv_config_defaults(&cfg);
    const char *one[] = {"--config", file};
    assert_int_equal(load(2, one), 0);
    assert_int_equal(cfg.n_cameras, 1);

    static const char *const bad[] = {"x=file:///etc/passwd", "x=http://h/p", "Lobby=rtsp://h/p", "=rtsp://h/p",
                                      "x=rtsp://u:s3cretpw@", "nourl"};
    for (size_t i = 0; i < LV_ARRAY_LEN(bad); i++) {
        lv_config_defaults(&cfg);
        const char *b[] = {"--camera", bad[i]};
        err[0] = '\0';
        assert_int_equal(load(2, b), LV_EINVAL);
        if (!strstr(err, "--camera") || strstr(err, "s3cretpw"))
            fail_msg("'%s' -> '%s'", bad[i], err);
    }
    unlink(file);
    write_file("{\"camera\": [\"ok=rtsp://h/p\", 3]}");
    lv_config_defaults(&cfg);
    assert_int_equal(load(2, one), LV_EINVAL);
    assert_non_null(strstr(err, "camera[1]"));
}

/* cluster options: from flags, the environment and the file (where _ may stand for -); the URL
 * and the node id are checked by lv_config_validate, and the password never reaches the error */
static void cluster_options(void **state)
{
    (void)state;
    write_file("{\"redis\": \"redis://:pw@10.0.0.5:6380/2\", \"node_id\": \"fe-1\", \"workers_inline\": true}");
    const char *argv[] = {"--config", file};
    assert_int_equal(load(2, argv), 0);
    assert_string_equal(cfg.redis_url, "redis://:pw@10.0.0.5:6380/2");
    assert_string_equal(cfg.node_id, "fe-1");
    assert_true(cfg.workers_inline);
    assert_int_equal(lv_config_validate(&cfg, err, sizeof(err)), 0);

    lv_config_defaults(&cfg);
    setenv("LIVEVLM_REDIS", "unix:///run/redis.sock", 1);
    const char *none[] = {"--node-id", "w2"};
    assert_int_equal(load(2, none), 0);
    unsetenv("LIVEVLM_REDIS");
    assert_string_equal(cfg.redis_url, "unix:///run/redis.sock");
    assert_int_equal(lv_config_validate(&cfg, err, sizeof(err)), 0);

    static const char *bad[][2] = {
        {"--redis", "http://h:1"},            /* not Redis */
        {"--redis", "rediss://:s3cretpw@h"},  /* TLS: not in this hiredis */
        {"--redis", "redis://:s3cretpw@h:0"}, /* port 0 */
        {"--node-id", "fe 1"},                /* a space */
        {"--workers-inline", NULL},           /* without --redis */
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        lv_config_defaults(&cfg);
        const char *b[] = {bad[i][0], bad[i][1]};
        assert_int_equal(load(bad[i][1] ? 2 : 1, b), 0);
        assert_int_equal(lv_config_validate(&cfg, err, sizeof(err)), LV_EINVAL);
        if (strstr(err, "s3cretpw"))
            fail_msg("'%s' -> '%s' shows the password", bad[i][1], err);
    }
}

/* whether cfg's trusted proxies hold ip */
static int trusts(const char *ip)
{
    unsigned char a[16];
    assert_int_equal(lv_ip_parse(ip, strlen(ip), a), 0);
    return lv_ipnet_contains(cfg.trusted_proxies, cfg.n_trusted_proxies, a);
}

/* --trusted-proxy: none by default; repeatable flags; the file's string or list; the environment's
 * comma-separated list; the highest source that gives any replaces the others' (flags wherever
 * --config stands); bad values refused naming the option; a network of every address refused */
static void trusted_proxies(void **state)
{
    (void)state;
    const char *none[] = {"--port", "1"};
    assert_int_equal(load(2, none), 0);
    assert_int_equal(cfg.n_trusted_proxies, 0);

    const char *flags[] = {"--trusted-proxy", "127.0.0.1", "--trusted-proxy", "fd00::/8", "--trusted-proxy",
                           "10.1.2.3/16"};
    assert_int_equal(load(6, flags), 0);
    assert_int_equal(cfg.n_trusted_proxies, 3);
    assert_true(trusts("127.0.0.1"));
    assert_true(trusts("::ffff:127.0.0.1"));
    assert_false(trusts("127.0.0.2"));
    assert_true(trusts("fdab::1"));
    assert_true(trusts("10.1.200.1"));
    assert_false(trusts("10.2.0.1"));
    assert_int_equal(lv_config_validate(&cfg, err, sizeof(err)), 0);

    write_file("{\"trusted-proxy\": [\"10.0.0.0/8\", \"192.168.1.5\"]}");
    lv_config_defaults(&cfg);
    const char *file_only[] = {"--config", file};
    assert_int_equal(load(2, file_only), 0);
    assert_int_equal(cfg.n_trusted_proxies, 2);
    assert_true(trusts("10.9.9.9"));
    assert_true(trusts("192.168.1.5"));
    /* the environment replaces the file's list, the flags replace both, wherever --config stands */
    setenv("LIVEVLM_TRUSTED_PROXY", " 172.16.0.0/12 ,::1,", 1);
    lv_config_defaults(&cfg);
    assert_int_equal(load(2, file_only), 0);
    assert_int_equal(cfg.n_trusted_proxies, 2);
    assert_false(trusts("10.9.9.9"));
    assert_true(trusts("172.20.0.1"));
    assert_true(trusts("::1"));
    const char *both[] = {"--trusted-proxy", "127.0.0.1", "--config", file, "--trusted-proxy", "127.0.0.3"};
    lv_config_defaults(&cfg);
    assert_int_equal(load(6, both), 0);
    assert_int_equal(cfg.n_trusted_proxies, 2);
    assert_true(trusts("127.0.0.1"));
    assert_true(trusts("127.0.0.3"));
    assert_false(trusts("172.20.0.1"));
    assert_false(trusts("10.9.9.9"));
    unsetenv("LIVEVLM_TRUSTED_PROXY");
    unlink(file);
    write_file("{\"trusted_proxy\": \"::ffff:10.0.0.1\"}");
    lv_config_defaults(&cfg);
    assert_int_equal(load(2, file_only), 0);
    assert_int_equal(cfg.n_trusted_proxies, 1);
    assert_true(trusts("10.0.0.1"));

    static const char *const bad[] = {"", "10.0.0.0/33", "[::1]", "10.0.0.1:8080", "proxy.example", "10.0.0.1 ",
                                      "127.1", "::1/129", "10.0.0.0/8,10.1.0.0/16"};
    for (size_t i = 0; i < LV_ARRAY_LEN(bad); i++) {
        lv_config_defaults(&cfg);
        const char *b[] = {"--trusted-proxy", bad[i]};
        err[0] = '\0';
        if (load(2, b) != LV_EINVAL || !strstr(err, "--trusted-proxy"))
            fail_msg("'%s' -> '%s'", bad[i], err);
    }
    lv_config_defaults(&cfg);
    setenv("LIVEVLM_TRUSTED_PROXY", "10.0.0.1,nope", 1);
    assert_int_equal(load(2, none), LV_EINVAL);
    assert_non_null(strstr(err, "LIVEVLM_TRUSTED_PROXY 'nope'"));
    unsetenv("LIVEVLM_TRUSTED_PROXY");
    unlink(file);
    write_file("{\"trusted-proxy\": [\"10.0.0.1\", 5]}");
    lv_config_defaults(&cfg);
    assert_int_equal(load(2, file_only), LV_EINVAL);
    assert_non_null(strstr(err, "trusted-proxy"));

    /* more than the cap */
    const char *many[2 * (LV_CONFIG_MAX_TRUSTED_PROXIES + 1)];
    char addrs[LV_CONFIG_MAX_TRUSTED_PROXIES + 1][20];
    for (int i = 0; i <= LV_CONFIG_MAX_TRUSTED_PROXIES; i++) {
        snprintf(addrs[i], sizeof(addrs[i]), "10.0.0.%d", i + 1);
        many[2 * i] = "--trusted-proxy";
        many[2 * i + 1] = addrs[i];
    }
    lv_config_defaults(&cfg);
    assert_int_equal(load(2 * LV_CONFIG_MAX_TRUSTED_PROXIES, many), 0);
    lv_config_defaults(&cfg);
    assert_int_equal(load(2 * (LV_CONFIG_MAX_TRUSTED_PROXIES + 1), many), LV_EINVAL);
    assert_non_null(strstr(err, "at most"));

    /* trusting everyone is refused; so is what holds every IPv4 address */
    static const char *const all[] = {"0.0.0.0/0", "::/0", "::ffff:0.0.0.0/96", "255.0.0.0/0"};
    for (size_t i = 0; i < LV_ARRAY_LEN(all); i++) {
        lv_config_defaults(&cfg);
        const char *b[] = {"--trusted-proxy", all[i]};
        assert_int_equal(load(2, b), 0);
        if (lv_config_validate(&cfg, err, sizeof(err)) != LV_EINVAL || !strstr(err, "every"))
            fail_msg("'%s' -> '%s'", all[i], err);
    }
    lv_config_defaults(&cfg);
    const char *half[] = {"--trusted-proxy", "0.0.0.0/1"};
    assert_int_equal(load(2, half), 0);
    assert_int_equal(lv_config_validate(&cfg, err, sizeof(err)), 0);

    /* --auth none is about the bind address; a trusted proxy changes nothing there */
    lv_config_defaults(&cfg);
    const char *open_bind[] = {"--auth", "none", "--host", "0.0.0.0", "--trusted-proxy", "127.0.0.1"};
    assert_int_equal(load(6, open_bind), 0);
    assert_int_equal(lv_config_validate(&cfg, err, sizeof(err)), LV_EINVAL);
    assert_non_null(strstr(err, "--auth none"));
    lv_config_defaults(&cfg);
    const char *loop_bind[] = {"--auth", "none", "--host", "127.0.0.1", "--trusted-proxy", "127.0.0.1"};
    assert_int_equal(load(6, loop_bind), 0);
    assert_int_equal(lv_config_validate(&cfg, err, sizeof(err)), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(flags_win_over_file_in_any_order, setup, teardown),
        cmocka_unit_test_setup_teardown(environment_between_file_and_flags, setup, teardown),
        cmocka_unit_test_setup_teardown(flag_on_backend_from_file, setup, teardown),
        cmocka_unit_test_setup_teardown(file_errors_name_the_file, setup, teardown),
        cmocka_unit_test_setup_teardown(bad_host_in_environment, setup, teardown),
        cmocka_unit_test_setup_teardown(host_check, setup, teardown),
        cmocka_unit_test_setup_teardown(print_token_url_flag, setup, teardown),
        cmocka_unit_test_setup_teardown(cameras, setup, teardown),
        cmocka_unit_test_setup_teardown(cluster_options, setup, teardown),
        cmocka_unit_test_setup_teardown(trusted_proxies, setup, teardown),
        cmocka_unit_test_setup_teardown(backend_client, setup, teardown),
        cmocka_unit_test_setup_teardown(delta_rate, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
