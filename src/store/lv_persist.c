/* lv_persist.c - the state file's writer and loader: snapshots on the loop, file writes on the
 * libuv thread pool, one final synchronous write at a clean shutdown. */
#include "lv_persist.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "lv_common.h"
#include "lv_log.h"

/* Re-encoding changed sessions happens on the loop: at most this many bytes of lines per period,
 * a few milliseconds of work (sessions past it are encoded in a later period). */
#define ENCODE_BUDGET_BYTES (4u << 20)
#define WRITE_BUF_BYTES (64u << 10)
/* header and checksum lines, with room to spare */
#define FRAME_BYTES 512

struct lv_persist {
    uv_loop_t *loop;
    char path[PATH_MAX];
    char tmp_path[PATH_MAX + 8];
    int lock_fd;
    int dir_fd;
    uv_timer_t timer;
    bool timer_on; /* initialised: needs a uv_close */
    bool stopped;  /* the final save ran: no more periodic writes */
    lv_persist_snapshot_fn snapshot;
    void *snapshot_ud;
    uint64_t period_ms, heartbeat_ms;
    uint64_t last_write_ms; /* monotonic, when the last write was queued */
    uint64_t seq;           /* numbers the writes in the order their snapshots were taken */
    /* guards the file and written_seq: a write whose snapshot is older than the file's is dropped,
     * so a slow thread-pool write can never put back what the final save replaced */
    uv_mutex_t write_mu;
    uint64_t written_seq;
    /* the one write on the thread pool */
    bool in_flight;
    uv_work_t work;
    lv_statefile_snap_t work_snap;
    uint64_t work_seq;
    int work_rc, work_errno;
    const char *work_step;
    bool failing; /* the last write failed: log only when this changes */
    size_t skipped_logged;
};

/* ---------- writing ---------- */

typedef struct {
    int fd;
    char *buf;
    size_t len;
} file_sink_t;

static int write_all(int fd, const char *p, size_t n)
{
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return LV_EIO;
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

static int sink_flush(file_sink_t *s)
{
    int rc = write_all(s->fd, s->buf, s->len);
    s->len = 0;
    return rc;
}

static int sink_write(void *ud, const void *p, size_t n)
{
    file_sink_t *s = ud;
    if (s->len + n > WRITE_BUF_BYTES) {
        int rc = sink_flush(s);
        if (rc)
            return rc;
    }
    if (n > WRITE_BUF_BYTES)
        return write_all(s->fd, p, n);
    memcpy(s->buf + s->len, p, n);
    s->len += n;
    return 0;
}

/* Write snap as the new file: PATH.tmp, fsync, rename over PATH, fsync the directory. Any thread.
 * Returns 0, 1 when a newer snapshot was written already (nothing done), or LV_EIO with *err and
 * *step saying what failed. */
static int write_file(lv_persist_t *p, const lv_statefile_snap_t *snap, uint64_t seq, int *err, const char **step)
{
    int rc = LV_EIO, fd = -1;
    file_sink_t sink = {-1, NULL, 0};
    *err = 0;
    *step = NULL;
    uv_mutex_lock(&p->write_mu);
    if (seq <= p->written_seq) {
        uv_mutex_unlock(&p->write_mu);
        return 1;
    }
    /* a fresh file each time: O_EXCL with 0600 cannot inherit the mode of a stale one */
    unlink(p->tmp_path);
    *step = "create";
    fd = open(p->tmp_path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0)
        goto fail;
    sink.fd = fd;
    sink.buf = malloc(WRITE_BUF_BYTES);
    *step = "write";
    if (!sink.buf) {
        errno = ENOMEM;
        goto fail;
    }
    errno = 0;
    if (lv_statefile_emit(snap, sink_write, &sink) != 0 || sink_flush(&sink) != 0)
        goto fail;
    *step = "fsync";
    if (fsync(fd) != 0)
        goto fail;
    *step = "close";
    int cfd = fd;
    fd = -1;
    if (close(cfd) != 0)
        goto fail;
    *step = "rename";
    if (rename(p->tmp_path, p->path) != 0)
        goto fail;
    /* the rename itself is durable only once the directory is */
    *step = "fsync the directory of";
    if (p->dir_fd >= 0 && fsync(p->dir_fd) != 0)
        goto fail;
    p->written_seq = seq;
    rc = 0;
    goto out;
fail:
    *err = errno;
    if (fd >= 0)
        close(fd);
    unlink(p->tmp_path);
out:
    free(sink.buf);
    uv_mutex_unlock(&p->write_mu);
    return rc;
}

static void report_write(lv_persist_t *p, int rc, int err, const char *step)
{
    if (rc < 0 && !p->failing)
        LV_WARN("could not save the sessions to %s (%s: %s); they are kept in memory and saving is retried", p->path,
                step ? step : "write", err ? strerror(err) : lv_strerror(rc));
    else if (rc >= 0 && p->failing)
        LV_INFO("saving the sessions to %s works again", p->path);
    p->failing = rc < 0;
}

static void report_skipped(lv_persist_t *p, size_t skipped)
{
    if (skipped && skipped != p->skipped_logged)
        LV_WARN("the session file %s reached its cap of %u MiB: %zu session(s) are not saved", p->path,
                LV_STATEFILE_MAX_BYTES >> 20, skipped);
    p->skipped_logged = skipped;
}

static void work_cb(uv_work_t *w)
{
    lv_persist_t *p = w->data;
    p->work_rc = write_file(p, &p->work_snap, p->work_seq, &p->work_errno, &p->work_step);
}

static void after_work_cb(uv_work_t *w, int status)
{
    lv_persist_t *p = w->data;
    p->in_flight = false;
    lv_statefile_snap_clear(&p->work_snap);
    if (status == 0)
        report_write(p, p->work_rc, p->work_errno, p->work_step);
}

static void on_timer(uv_timer_t *t)
{
    lv_persist_t *p = t->data;
    if (p->in_flight || p->stopped)
        return; /* what changed meanwhile goes into the next write */
    uint64_t now = lv_now_ms();
    bool heartbeat = now - p->last_write_ms >= p->heartbeat_ms;
    lv_statefile_snap_t snap;
    memset(&snap, 0, sizeof(snap));
    int rc = p->snapshot(p->snapshot_ud, heartbeat, ENCODE_BUDGET_BYTES, LV_STATEFILE_MAX_BYTES - FRAME_BYTES, &snap);
    if (rc) {
        if (rc != LV_EAGAIN)
            LV_WARN("could not collect the sessions to save (%s)", lv_strerror(rc));
        lv_statefile_snap_clear(&snap);
        return;
    }
    report_skipped(p, snap.skipped);
    snap.saved_ms = lv_wall_ms();
    p->work_snap = snap;
    p->work_seq = ++p->seq;
    p->work.data = p;
    p->last_write_ms = now;
    p->in_flight = true;
    if (uv_queue_work(p->loop, &p->work, work_cb, after_work_cb) != 0) {
        p->in_flight = false;
        lv_statefile_snap_clear(&p->work_snap);
    }
}

/* ---------- API ---------- */

int lv_persist_open(uv_loop_t *loop, const char *path, lv_persist_t **out)
{
    char lock_path[PATH_MAX + 8], dir[PATH_MAX];
    *out = NULL;
    size_t n = strlen(path);
    if (n == 0 || n >= PATH_MAX)
        return LV_ELIMIT;
    lv_persist_t *p = calloc(1, sizeof(*p));
    if (!p)
        return LV_ENOMEM;
    p->loop = loop;
    p->lock_fd = p->dir_fd = -1;
    memcpy(p->path, path, n + 1);
    snprintf(p->tmp_path, sizeof(p->tmp_path), "%s.tmp", path);
    snprintf(lock_path, sizeof(lock_path), "%s.lock", path);
    memcpy(dir, path, n + 1);
    char *slash = strrchr(dir, '/');
    if (!slash)
        snprintf(dir, sizeof(dir), ".");
    else if (slash == dir)
        dir[1] = '\0';
    else
        *slash = '\0';
    if (uv_mutex_init(&p->write_mu) != 0) {
        free(p);
        return LV_ENOMEM;
    }
    int rc = LV_EIO;
    p->dir_fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    p->lock_fd = open(lock_path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (p->dir_fd < 0 || p->lock_fd < 0)
        goto fail;
    /* flock goes with the process: a killed server leaves no stale lock behind */
    if (flock(p->lock_fd, LOCK_EX | LOCK_NB) != 0) {
        rc = errno == EWOULDBLOCK ? LV_EAGAIN : LV_EIO;
        goto fail;
    }
    *out = p;
    return 0;
fail:
    lv_persist_destroy(p);
    return rc;
}

int lv_persist_load(lv_persist_t *p, const lv_statefile_limits_t *lim, uint64_t now_wall_ms, lv_statefile_cb_t cb,
                    void *ud, lv_statefile_stats_t *stats, const char **why)
{
    int rc = 0;
    char *buf = NULL;
    struct stat st;
    memset(stats, 0, sizeof(*stats));
    *why = NULL;
    int fd = open(p->path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0) {
        if (errno == ENOENT)
            return 0;
        *why = "it cannot be opened";
        LV_WARN("the session file %s cannot be opened (%s)", p->path, strerror(errno));
        return LV_EIO;
    }
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        *why = "it is not a regular file";
        LV_WARN("the session file %s is not a regular file", p->path);
        rc = LV_EIO;
        goto out; /* not ours to move */
    }
    if (st.st_mode & 077)
        LV_WARN("%s can be read by other users; the next save makes it private (mode 0600)", p->path);
    if ((uint64_t)st.st_size > lim->max_bytes) {
        *why = "the file is larger than the cap";
        rc = LV_ELIMIT;
        goto aside;
    }
    size_t size = (size_t)st.st_size, got = 0;
    buf = malloc(size ? size : 1);
    if (!buf) {
        *why = "out of memory";
        LV_WARN("the session file %s cannot be read (out of memory)", p->path);
        rc = LV_ENOMEM;
        goto out;
    }
    while (got < size) {
        ssize_t r = read(fd, buf + got, size - got);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            *why = "it cannot be read";
            LV_WARN("the session file %s cannot be read (%s)", p->path, strerror(errno));
            rc = LV_EIO;
            goto out;
        }
        if (r == 0)
            break;
        got += (size_t)r;
    }
    rc = lv_statefile_parse(buf, got, lim, now_wall_ms, cb, ud, stats, why);
    if (rc == 0)
        goto out;
    if (rc == LV_ENOMEM) {
        LV_WARN("the session file %s cannot be read (out of memory)", p->path);
        goto out;
    }
aside : {
    char aside_path[PATH_MAX + 16];
    snprintf(aside_path, sizeof(aside_path), "%s.corrupt", p->path);
    if (rename(p->path, aside_path) == 0)
        LV_WARN("the session file %s cannot be used (%s); it is kept as %s", p->path, *why, aside_path);
    else
        LV_WARN("the session file %s cannot be used (%s)", p->path, *why);
    goto out;
}
out:
    free(buf);
    close(fd);
    return rc;
}

int lv_persist_start(lv_persist_t *p, uint64_t period_ms, uint64_t heartbeat_ms, lv_persist_snapshot_fn snapshot,
                     void *ud)
{
    p->snapshot = snapshot;
    p->snapshot_ud = ud;
    p->period_ms = period_ms;
    p->heartbeat_ms = heartbeat_ms;
    p->last_write_ms = lv_now_ms();
    if (uv_timer_init(p->loop, &p->timer) != 0)
        return LV_EIO;
    p->timer_on = true;
    p->timer.data = p;
    /* unreferenced: saving never keeps a stopping loop alive, whatever shutdown path runs */
    uv_unref((uv_handle_t *)&p->timer);
    return uv_timer_start(&p->timer, on_timer, period_ms, period_ms) == 0 ? 0 : LV_EIO;
}

int lv_persist_save_now(lv_persist_t *p, size_t *n_sessions)
{
    int err = 0;
    const char *step = NULL;
    lv_statefile_snap_t snap;
    if (n_sessions)
        *n_sessions = 0;
    if (!p || p->stopped || !p->snapshot)
        return 0;
    p->stopped = true;
    if (p->timer_on && !uv_is_closing((uv_handle_t *)&p->timer)) {
        uv_timer_stop(&p->timer);
        uv_close((uv_handle_t *)&p->timer, NULL);
    }
    memset(&snap, 0, sizeof(snap));
    int rc = p->snapshot(p->snapshot_ud, true, SIZE_MAX, LV_STATEFILE_MAX_BYTES - FRAME_BYTES, &snap);
    if (rc == 0) {
        report_skipped(p, snap.skipped);
        snap.saved_ms = lv_wall_ms();
        rc = write_file(p, &snap, ++p->seq, &err, &step);
        p->failing = false; /* always say how the final save went */
        report_write(p, rc, err, step);
        if (rc == 0 && n_sessions)
            *n_sessions = snap.n;
    } else {
        LV_WARN("could not collect the sessions to save (%s)", lv_strerror(rc));
    }
    lv_statefile_snap_clear(&snap);
    return rc < 0 ? rc : 0;
}

void lv_persist_destroy(lv_persist_t *p)
{
    if (!p)
        return;
    if (p->in_flight) {
        /* the loop ended under a running write, which still uses p: leave it to the exit */
        LV_WARN("a session save was still running at exit");
        return;
    }
    if (p->timer_on && !uv_is_closing((uv_handle_t *)&p->timer)) {
        uv_close((uv_handle_t *)&p->timer, NULL);
        uv_run(p->loop, UV_RUN_NOWAIT); /* let the close complete so the loop can be closed */
    }
    lv_statefile_snap_clear(&p->work_snap);
    if (p->lock_fd >= 0)
        close(p->lock_fd);
    if (p->dir_fd >= 0)
        close(p->dir_fd);
    uv_mutex_destroy(&p->write_mu);
    free(p);
}
