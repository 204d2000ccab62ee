/* redis_fixture.h - a redis-server of the test's own for the unit tests that need a real one
 * (test_redis.c, test_cluster_queue.c, test_worker.c, test_dispatch_redis.c): a temp dir, a free
 * loopback port, fork/exec /usr/bin/redis-server with its output in <dir>/redis.log, ready once it
 * answers PING; kill, restart on the same port, remove the dir. Also the loop under a deadline the
 * tests wait with (a one-shot timer bounds every uv_run), and the small helpers they share.
 *
 * Test-only and header-only: every function is static (the unit rule in the Makefile builds one .c
 * per test binary, so a shared .c would need a new rule); unused ones are marked so, as each test
 * needs a different subset.
 *
 * Lifetimes: rfx_init makes the dir; rfx_start / rfx_kill may then alternate (a restart keeps the
 * port and the dir, so a client reconnects to "the same server"; it starts empty unless extra_args
 * asks for persistence); a test may SIGSTOP / SIGCONT s->pid itself, and rfx_kill works on a
 * stopped server too; rfx_cleanup kills the server and removes the dir with whatever is in it
 * (redis.log, a socket, an rdb, appendonlydir/, files the test put there). The test kills its
 * servers: from its teardown or group teardown, which cmocka runs after a failed assert too. If the
 * test process itself dies (a crash, SIGKILL, a timeout), each child gets SIGKILL from the kernel
 * (PR_SET_PDEATHSIG), so no redis-server outlives a test; only the temp dir is then left behind. */
#ifndef REDIS_FIXTURE_H
#define REDIS_FIXTURE_H

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <uv.h>

#include "lv_common.h"

#define RFX_REDIS_SERVER "/usr/bin/redis-server"
#define RFX_START_MS 10000 /* how long a start may take before it counts as failed */
#define RFX_EXTRA_MAX 16   /* extra_args entries at most */

#define RFX_UNUSED __attribute__((unused))

/** One redis-server, set up by rfx_init. */
typedef struct {
    pid_t pid;    /* the running server; 0 when none */
    int port;     /* 0 until the first rfx_start picks a free one; set it before to choose */
    char dir[64]; /* the server's --dir and cwd, made by rfx_init; "" once removed */
    /* Optional, NULL-terminated: more redis-server arguments after the defaults (--port, --bind
     * 127.0.0.1, --save "", --appendonly no, --dir), so that they win when they name the same
     * option ("--appendonly", "yes"). Read at every rfx_start: keep the array and its strings
     * alive until the last one (string literals, a static array). Paths relative to dir work:
     * the server runs there ("--unixsocket", "redis.sock"). */
    const char *const *extra_args;
} rfx_server_t;

static RFX_UNUSED void rfx_sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* A loopback port nothing listens on right now (the kernel's pick); -1 on error. Another process
 * may take it before the test binds it: fine on a test box, where nothing else picks this way. */
static RFX_UNUSED int rfx_free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof(a);
    int port = -1;
    if (fd < 0)
        return -1;
    if (bind(fd, (struct sockaddr *)&a, sizeof(a)) == 0 && getsockname(fd, (struct sockaddr *)&a, &len) == 0)
        port = ntohs(a.sin_port);
    close(fd);
    return port;
}

/* fork + exec path with argv, stdout and stderr appended to <dir>/<log_name>, cwd dir when
 * chdir_dir. The child dies with the test (PR_SET_PDEATHSIG; a parent already gone between fork
 * and prctl is caught by the getppid check). The caller reaps it (rfx_kill_wait). -1 when fork
 * failed; an exec that fails shows as an exit 127. */
static RFX_UNUSED pid_t rfx_spawn(const char *dir, const char *log_name, bool chdir_dir, const char *path,
                                  char *const argv[])
{
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid != 0)
        return pid;
    if (prctl(PR_SET_PDEATHSIG, SIGKILL) != 0 || getppid() != parent)
        _exit(127);
    char log[256];
    snprintf(log, sizeof(log), "%s/%s", dir, log_name);
    int fd = open(log, O_WRONLY | O_CREAT | O_APPEND, 0600);
    if (fd >= 0) {
        dup2(fd, 1);
        dup2(fd, 2);
        close(fd);
    }
    if (chdir_dir && chdir(dir) != 0)
        _exit(127);
    execv(path, argv);
    _exit(127);
}

/* SIGKILL *pid (if any) and reap it; *pid = 0. Works on a stopped (SIGSTOP) process too. */
static RFX_UNUSED void rfx_kill_wait(pid_t *pid)
{
    if (*pid > 0) {
        kill(*pid, SIGKILL);
        waitpid(*pid, NULL, 0);
        *pid = 0;
    }
}

/* Whether a server on 127.0.0.1:port answers PING: +PONG, or -NOAUTH from one that wants a
 * password (a -LOADING server is not ready). 200 ms at most for the answer. */
static RFX_UNUSED bool rfx_answers(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0)
        return false;
    struct timeval tv = {0, 200000};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    struct sockaddr_in a = {
        .sin_family = AF_INET, .sin_port = htons((uint16_t)port), .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    char buf[64];
    bool ok = false;
    /* MSG_NOSIGNAL: a server that closes at once must not kill a test that keeps SIGPIPE */
    if (connect(fd, (struct sockaddr *)&a, sizeof(a)) == 0 && send(fd, "PING\r\n", 6, MSG_NOSIGNAL) == 6) {
        ssize_t n = read(fd, buf, sizeof(buf));
        ok = (n >= 5 && memcmp(buf, "+PONG", 5) == 0) || (n >= 7 && memcmp(buf, "-NOAUTH", 7) == 0);
    }
    close(fd);
    return ok;
}

/* Zero s and make its dir, /tmp/lv-test-<name>.XXXXXX. 0, or -1 (said on stderr). */
static RFX_UNUSED int rfx_init(rfx_server_t *s, const char *name)
{
    memset(s, 0, sizeof(*s));
    int n = snprintf(s->dir, sizeof(s->dir), "/tmp/lv-test-%s.XXXXXX", name);
    if (n < 0 || (size_t)n >= sizeof(s->dir) || !mkdtemp(s->dir)) {
        fprintf(stderr, "redis fixture: no temp dir for %s: %s\n", name, strerror(errno));
        s->dir[0] = '\0';
        return -1;
    }
    return 0;
}

/* Start the server (s->port, or a free port kept for later starts) and wait until it answers,
 * RFX_START_MS at most. 0, or -1 with the reason on stderr and no server left running. */
static RFX_UNUSED int rfx_start(rfx_server_t *s)
{
    if (!s->dir[0] || s->pid > 0) {
        fprintf(stderr, "redis fixture: start without rfx_init, or while running\n");
        return -1;
    }
    if (!s->port && (s->port = rfx_free_port()) <= 0) {
        s->port = 0;
        fprintf(stderr, "redis fixture: no free port\n");
        return -1;
    }
    char port[16];
    snprintf(port, sizeof(port), "%d", s->port);
    const char *argv[11 + RFX_EXTRA_MAX + 1] = {
        RFX_REDIS_SERVER, "--port", port, "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", s->dir};
    size_t argc = 11;
    for (size_t i = 0; s->extra_args && s->extra_args[i]; i++) {
        if (i == RFX_EXTRA_MAX) {
            fprintf(stderr, "redis fixture: more than %d extra arguments\n", RFX_EXTRA_MAX);
            return -1;
        }
        argv[argc++] = s->extra_args[i];
    }
    argv[argc] = NULL;
    s->pid = rfx_spawn(s->dir, "redis.log", true, RFX_REDIS_SERVER, (char *const *)argv);
    if (s->pid < 0) {
        s->pid = 0;
        fprintf(stderr, "redis fixture: fork: %s\n", strerror(errno));
        return -1;
    }
    uint64_t deadline = lv_now_ms() + RFX_START_MS;
    while (!rfx_answers(s->port)) {
        if (waitpid(s->pid, NULL, WNOHANG) == s->pid) {
            s->pid = 0;
            fprintf(stderr, "redis fixture: redis-server exited at start (see %s/redis.log)\n", s->dir);
            return -1;
        }
        if (lv_now_ms() > deadline) {
            rfx_kill_wait(&s->pid);
            fprintf(stderr, "redis fixture: redis-server on port %d did not answer within %d ms (see %s/redis.log)\n",
                    s->port, RFX_START_MS, s->dir);
            return -1;
        }
        rfx_sleep_ms(20);
    }
    return 0;
}

/* Kill the server (SIGKILL: no shutdown save, as a crash); port and dir stay for a restart. */
static RFX_UNUSED void rfx_kill(rfx_server_t *s)
{
    rfx_kill_wait(&s->pid);
}

/* Remove path's entries, down to depth levels of subdirectories (appendonlydir/ is one). */
static RFX_UNUSED void rfx__empty_dir(const char *path, int depth)
{
    DIR *d = opendir(path);
    if (!d)
        return;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        char p[512];
        int n = snprintf(p, sizeof(p), "%s/%s", path, e->d_name);
        if (n < 0 || (size_t)n >= sizeof(p))
            continue;
        if (unlink(p) != 0 && (errno == EISDIR || errno == EPERM) && depth > 0) {
            rfx__empty_dir(p, depth - 1);
            rmdir(p);
        }
    }
    closedir(d);
}

/* Kill the server and remove its dir with everything in it. Safe on a zeroed s and twice. */
static RFX_UNUSED void rfx_cleanup(rfx_server_t *s)
{
    rfx_kill(s);
    if (s->dir[0]) {
        rfx__empty_dir(s->dir, 2);
        if (rmdir(s->dir) != 0)
            fprintf(stderr, "redis fixture: %s left behind: %s\n", s->dir, strerror(errno));
        s->dir[0] = '\0';
    }
}

/* ---------- the loop under a deadline ---------- */

/** A one-shot timer that ends a wait. Embedded in the test's state: rfx_deadline_init once per
 * loop, closed by rfx_loop_close (or uv_close on .timer) before uv_loop_close. Stopped between
 * waits, so it keeps nothing alive. */
typedef struct {
    uv_timer_t timer;
    bool expired;
} rfx_deadline_t;

static RFX_UNUSED void rfx_deadline_init(rfx_deadline_t *d, uv_loop_t *loop)
{
    uv_timer_init(loop, &d->timer);
    d->timer.data = d;
    d->expired = false;
}

static RFX_UNUSED void rfx__deadline_cb(uv_timer_t *t)
{
    ((rfx_deadline_t *)t->data)->expired = true;
}

/* Run the loop until cond(arg) holds; false when ms passed first. Not reentrant: a callback
 * must not wait with the same deadline. */
static RFX_UNUSED bool rfx_run_until(rfx_deadline_t *d, bool (*cond)(void *), void *arg, int ms)
{
    d->expired = false;
    uv_timer_start(&d->timer, rfx__deadline_cb, (uint64_t)ms, 0);
    while (!cond(arg) && !d->expired)
        uv_run(d->timer.loop, UV_RUN_ONCE);
    uv_timer_stop(&d->timer);
    return cond(arg);
}

static RFX_UNUSED bool rfx_never(void *arg)
{
    (void)arg;
    return false;
}

/* cond for a bool the callbacks set */
static RFX_UNUSED bool rfx_is_set(void *flag)
{
    return *(bool *)flag;
}

/* Run the loop for ms, whatever happens. */
static RFX_UNUSED void rfx_run_for(rfx_deadline_t *d, int ms)
{
    rfx_run_until(d, rfx_never, NULL, ms);
}

static RFX_UNUSED void rfx__closed_cb(uv_handle_t *h)
{
    (void)h;
}

/* Close d's timer (d may be NULL), run the loop until its handles are gone, ms at most, and
 * return uv_loop_close's result (UV_EBUSY when something is still open). */
static RFX_UNUSED int rfx_loop_close(uv_loop_t *loop, rfx_deadline_t *d, int ms)
{
    if (d)
        uv_close((uv_handle_t *)&d->timer, rfx__closed_cb);
    uint64_t deadline = lv_now_ms() + (uint64_t)ms;
    while (uv_run(loop, UV_RUN_NOWAIT) != 0 && lv_now_ms() < deadline)
        rfx_sleep_ms(1);
    return uv_loop_close(loop);
}

#endif
