/* dbwait.c - the loop never waits on the database (docs/internals/accounts.md): a real uv loop and
 * a real SQLite database (lv_db_open with a loop, in a temp dir). On the loop thread, every 1 ms
 * timer tick, it times the two things the frame path does that touch the database: the usage
 * journal append of one record (lv_usage_journal_append: the write() lv_usage_record does) and,
 * every 10th tick, lv_db_submit of a small insert job (what the periodic flush does). It also times
 * how late each 1 ms tick fires (the loop's own lag). Two phases of S seconds each: (1) the
 * database thread idle but for those inserts; (2) the database thread kept busy back to back by
 * real argon2id password checks (lv_acct_db_check_password), usage queries of 20,000 rows and
 * flush-sized usage inserts (2048 rows in one transaction). The loop-side cost must not grow by a
 * password check's duration: the check below fails (exit 1) when phase 2's p99 of submit or append
 * reaches a tenth of the password check's median.
 * Usage: dbwait [seconds per phase (1..60, default 5)] */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>
#include <uv.h>

#include "lv_acct.h"
#include "lv_common.h"
#include "lv_db.h"
#include "lv_usage.h"

#define MAX_SAMPLES 100000 /* per series: 60 s of 1 ms ticks fits */
#define SEED_ROWS 20000
#define BUSY_INFLIGHT 2   /* busy jobs kept queued, so the thread never idles between a done and a submit */
#define DRAIN_MS 15000    /* a phase's leftover jobs must finish within this */

enum { S_LAG, S_SUBMIT, S_APPEND, S_INS_DONE, S_PW, S_QUERY, S_FLUSH, N_SERIES };
static const char *const SERIES_NAME[N_SERIES] = {
    "loop lag (1 ms timer)", "lv_db_submit (insert job)", "journal append (1 record)",
    "insert submit->done", "[db thread] password check", "[db thread] usage query", "[db thread] usage insert 2048"};

typedef struct {
    double *v;
    size_t n;
    size_t blocked, preempted; /* calls in which the loop thread slept (voluntary switch) / was preempted */
} series_t;

static struct {
    uv_loop_t loop;
    uv_timer_t tick;
    lv_db_t *db;
    lv_usage_journal_t *j;
    series_t s[2][N_SERIES];
    int phase;          /* 0 idle, 1 busy */
    uint64_t phase_end_ns, last_arm_ns, ticks, drain_end_ns;
    bool busy_on, draining;
    int busy_inflight, busy_next;
    int64_t next_id;
    unsigned submit_fail, append_fail, job_fail;
    char tmp[256];
} g;

static void sample(int series, double us)
{
    series_t *s = &g.s[g.phase][series];
    if (s->n < MAX_SAMPLES)
        s->v[s->n++] = us;
}

/* The loop thread's context switches: a voluntary one during a call means the call WAITED (a
 * futex, a disk); an involuntary one is the scheduler handing the core to another thread (this
 * machine's other load), which inflates the time but is no wait on the database. */
static void csw(long *vol, long *invol)
{
    struct rusage ru;
    getrusage(RUSAGE_THREAD, &ru);
    *vol = ru.ru_nvcsw;
    *invol = ru.ru_nivcsw;
}

static void count_csw(int series, long v0, long i0)
{
    long v1, i1;
    csw(&v1, &i1);
    g.s[g.phase][series].blocked += v1 != v0;
    g.s[g.phase][series].preempted += i1 != i0;
}

static int cmp_d(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double pct(series_t *s, double p) /* s sorted */
{
    if (!s->n)
        return 0;
    size_t i = (size_t)(p * (double)(s->n - 1) + 0.5);
    return s->v[i];
}

/* ---------- jobs ---------- */

typedef struct {
    int kind; /* S_INS_DONE, S_PW, S_QUERY, S_FLUSH */
    int phase;
    uint64_t submit_ns;
    double work_us;
    int64_t id;
} job_t;

static int work_insert(lv_db_t *db, void *ud)
{
    job_t *jb = ud;
    char id[32], t[32];
    snprintf(id, sizeof(id), "%" PRId64, jb->id);
    snprintf(t, sizeof(t), "%" PRIu64, lv_now_ms());
    const char *p[2] = {id, t};
    return lv_db_exec(db, "INSERT INTO bench_ins (id, t) VALUES ($1, $2)", 2, p, NULL);
}

static void fill_usage(lv_usage_t *u, int64_t id)
{
    memset(u, 0, sizeof(*u));
    snprintf(u->answer_id, sizeof(u->answer_id), "bench-%" PRId64, id);
    u->t_ms = (int64_t)lv_now_ms();
    snprintf(u->tenant, sizeof(u->tenant), "%s", LV_ACCT_DEFAULT_TENANT);
    snprintf(u->user_id, sizeof(u->user_id), "u-bench");
    snprintf(u->session_id, sizeof(u->session_id), "s-%" PRId64, id % 64);
    snprintf(u->backend, sizeof(u->backend), "fakevlm-1");
    snprintf(u->model, sizeof(u->model), "bench-model");
    u->image_bytes = 48000;
    u->prompt_tokens = 300;
    u->completion_tokens = 40;
    u->backend_ms = 250;
    snprintf(u->outcome, sizeof(u->outcome), "ok");
}

static int usage_batch(lv_db_t *db, int64_t first, size_t n)
{
    lv_usage_t *u = calloc(n, sizeof(*u));
    if (!u)
        return LV_ENOMEM;
    for (size_t i = 0; i < n; i++)
        fill_usage(&u[i], first + (int64_t)i);
    int rc = lv_acct_db_usage_add(db, u, n);
    free(u);
    return rc;
}

static int work_busy(lv_db_t *db, void *ud)
{
    job_t *jb = ud;
    uint64_t t0 = uv_hrtime();
    int rc = 0;
    if (jb->kind == S_PW) {
        lv_user_t out;
        rc = lv_acct_db_check_password(db, "bench", "bench-password-1", &out);
    } else if (jb->kind == S_QUERY) {
        lv_usage_filter_t f;
        memset(&f, 0, sizeof(f));
        f.limit = LV_DB_MAX_ROWS;
        lv_usage_t *rows = NULL;
        size_t n = 0;
        rc = lv_acct_db_usage_query(db, &f, &rows, &n);
        free(rows);
        if (!rc && n < SEED_ROWS)
            rc = lv_db_fail(db, LV_EIO, "usage query returned %zu rows, want >= %d", n, SEED_ROWS);
    } else {
        rc = usage_batch(db, jb->id, LV_USAGE_FLUSH_BATCH);
    }
    jb->work_us = (double)(uv_hrtime() - t0) / 1e3;
    if (rc)
        fprintf(stderr, "dbwait: busy job failed: %s\n", lv_db_error(db));
    return rc;
}

static void busy_more(void);

static void done_job(int rc, void *ud)
{
    job_t *jb = ud;
    int keep = g.phase;
    g.phase = jb->phase;
    if (rc)
        g.job_fail++;
    else if (jb->kind == S_INS_DONE)
        sample(S_INS_DONE, (double)(uv_hrtime() - jb->submit_ns) / 1e3);
    else
        sample(jb->kind, jb->work_us);
    g.phase = keep;
    if (jb->kind != S_INS_DONE) {
        g.busy_inflight--;
        busy_more();
    }
    free(jb);
}

/* Keep BUSY_INFLIGHT busy jobs queued while phase 2 runs: password, password, query, flush batch. */
static void busy_more(void)
{
    static const int MIX[4] = {S_PW, S_PW, S_QUERY, S_FLUSH};
    while (g.busy_on && g.busy_inflight < BUSY_INFLIGHT) {
        job_t *jb = calloc(1, sizeof(*jb));
        if (!jb)
            return;
        jb->kind = MIX[g.busy_next++ % 4];
        jb->phase = g.phase;
        jb->id = g.next_id;
        g.next_id += LV_USAGE_FLUSH_BATCH;
        if (lv_db_submit(g.db, work_busy, done_job, jb)) {
            free(jb);
            g.submit_fail++;
            return;
        }
        g.busy_inflight++;
    }
}

/* ---------- the loop side ---------- */

static void on_tick(uv_timer_t *t)
{
    uint64_t now = uv_hrtime();
    if (g.draining) {
        if ((!lv_db_queued(g.db) && !g.busy_inflight) || now > g.drain_end_ns)
            uv_stop(&g.loop);
        else
            uv_timer_start(t, on_tick, 1, 0);
        return;
    }
    /* how late this tick is: armed for 1 ms after the last one (libuv's clock is in ms, so about
     * ±1 ms of this is the timer's own granularity) */
    double late = (double)(now - g.last_arm_ns) / 1e3 - 1000.0;
    sample(S_LAG, late > 0 ? late : 0);
    g.ticks++;

    lv_usage_t u;
    fill_usage(&u, 1000000000 + (int64_t)g.ticks);
    long v0, i0;
    csw(&v0, &i0);
    uint64_t a0 = uv_hrtime();
    int rc = lv_usage_journal_append(g.j, &u);
    sample(S_APPEND, (double)(uv_hrtime() - a0) / 1e3);
    count_csw(S_APPEND, v0, i0);
    if (rc)
        g.append_fail++;

    if (g.ticks % 10 == 0) {
        job_t *jb = calloc(1, sizeof(*jb));
        if (jb) {
            jb->kind = S_INS_DONE;
            jb->phase = g.phase;
            jb->id = g.next_id++;
            csw(&v0, &i0);
            jb->submit_ns = uv_hrtime();
            rc = lv_db_submit(g.db, work_insert, done_job, jb);
            sample(S_SUBMIT, (double)(uv_hrtime() - jb->submit_ns) / 1e3);
            count_csw(S_SUBMIT, v0, i0);
            if (rc) {
                free(jb);
                g.submit_fail++;
            }
        }
    }
    if (now >= g.phase_end_ns) {
        g.busy_on = false;
        g.draining = true;
        g.drain_end_ns = now + (uint64_t)DRAIN_MS * 1000000u;
    }
    g.last_arm_ns = uv_hrtime();
    uv_timer_start(t, on_tick, 1, 0);
}

static void run_phase(int phase, int secs)
{
    g.phase = phase;
    g.draining = false;
    g.busy_on = phase == 1;
    busy_more();
    uv_update_time(&g.loop);
    g.phase_end_ns = uv_hrtime() + (uint64_t)secs * 1000000000u;
    g.last_arm_ns = uv_hrtime();
    uv_timer_start(&g.tick, on_tick, 1, 0);
    uv_run(&g.loop, UV_RUN_DEFAULT);
    uv_timer_stop(&g.tick);
}

/* ---------- setup ---------- */

static int g_setup_rc = 1;

static int work_setup(lv_db_t *db, void *ud)
{
    int rc = lv_db_exec(db, "CREATE TABLE IF NOT EXISTS bench_ins (id BIGINT, t BIGINT)", 0, NULL, NULL);
    if (!rc)
        rc = lv_acct_db_user_add(db, "bench", "bench-password-1", LV_ROLE_USER, NULL, NULL);
    for (int64_t i = 0; !rc && i < SEED_ROWS; i += LV_USAGE_FLUSH_BATCH) {
        size_t n = SEED_ROWS - i < LV_USAGE_FLUSH_BATCH ? (size_t)(SEED_ROWS - i) : LV_USAGE_FLUSH_BATCH;
        rc = usage_batch(db, 2000000000 + i, n);
    }
    if (rc)
        fprintf(stderr, "dbwait: setup: %s\n", lv_db_error(db));
    return rc;
}

static void done_setup(int rc, void *ud)
{
    g_setup_rc = rc;
    uv_stop(&g.loop); /* the database's own handle keeps the loop alive */
}

int main(int argc, char **argv)
{
    int secs = argc > 1 ? atoi(argv[1]) : 5;
    int status = 1;
    char err[256] = "", path[300];
    if (secs < 1 || secs > 60) {
        fprintf(stderr, "usage: dbwait [seconds per phase, 1..60]\n");
        return 2;
    }
    for (int p = 0; p < 2; p++)
        for (int k = 0; k < N_SERIES; k++)
            if (!(g.s[p][k].v = malloc(MAX_SAMPLES * sizeof(double)))) {
                fprintf(stderr, "dbwait: out of memory\n");
                return 1;
            }
    const char *base = getenv("TMPDIR") && *getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
    snprintf(g.tmp, sizeof(g.tmp), "%s/dbwait.XXXXXX", base);
    if (!mkdtemp(g.tmp)) {
        fprintf(stderr, "dbwait: cannot make a temp dir under %s\n", base);
        return 1;
    }
    uv_loop_init(&g.loop);
    uv_timer_init(&g.loop, &g.tick);
    snprintf(path, sizeof(path), "sqlite:%s/livevlm.db", g.tmp);
    if (lv_db_open(&g.loop, path, g.tmp, &g.db, err, sizeof(err))) {
        fprintf(stderr, "dbwait: lv_db_open: %s\n", err);
        goto out;
    }
    snprintf(path, sizeof(path), "%s/usage.journal", g.tmp);
    if (lv_usage_journal_open(path, LV_USAGE_JOURNAL_CAP, &g.j, NULL, NULL)) {
        fprintf(stderr, "dbwait: cannot open the journal %s\n", path);
        goto out;
    }
    g.next_id = 1;
    if (lv_db_submit(g.db, work_setup, done_setup, NULL) == 0)
        uv_run(&g.loop, UV_RUN_DEFAULT);
    if (g_setup_rc) {
        fprintf(stderr, "dbwait: setup failed\n");
        goto out;
    }

    run_phase(0, secs);
    run_phase(1, secs);

    printf("dbwait: SQLite (WAL) in %s, %d s per phase, 1 ms loop timer, journal append every tick,\n", g.tmp, secs);
    printf("lv_db_submit of an insert job every 10th tick; phase busy: %d jobs always queued (password check x2,\n",
           BUSY_INFLIGHT);
    printf("usage query of %d+ rows, usage insert of %u rows), all in microseconds\n", SEED_ROWS, LV_USAGE_FLUSH_BATCH);
    printf("(slept: calls in which the loop thread blocked, a voluntary context switch = a real wait;\n"
           " preempted: calls during which the scheduler gave its core away, this machine's other load)\n");
    printf("%-32s %-5s %7s %10s %10s %10s %7s %9s\n", "operation", "phase", "n", "p50_us", "p99_us", "max_us", "slept",
           "preempted");
    double res[2][N_SERIES][3];
    for (int k = 0; k < N_SERIES; k++)
        for (int p = 0; p < 2; p++) {
            series_t *s = &g.s[p][k];
            qsort(s->v, s->n, sizeof(double), cmp_d);
            res[p][k][0] = pct(s, 0.5);
            res[p][k][1] = pct(s, 0.99);
            res[p][k][2] = s->n ? s->v[s->n - 1] : 0;
            if (!s->n)
                continue;
            bool loop_op = k == S_SUBMIT || k == S_APPEND;
            printf("%-32s %-5s %7zu %10.1f %10.1f %10.1f", SERIES_NAME[k], p ? "busy" : "idle", s->n, res[p][k][0],
                   res[p][k][1], res[p][k][2]);
            if (loop_op)
                printf(" %7zu %9zu", s->blocked, s->preempted);
            printf("\n");
        }
    size_t pw_n = g.s[1][S_PW].n;
    double pw = res[1][S_PW][0];
    printf("password checks run in phase busy: %zu (median %.0f ms); failures: submit %u, append %u, job %u\n", pw_n,
           pw / 1e3, g.submit_fail, g.append_fail, g.job_fail);
    bool ok = pw_n > 0 && res[1][S_SUBMIT][1] < pw / 10 && res[1][S_APPEND][1] < pw / 10 && !g.submit_fail &&
              !g.append_fail && !g.job_fail;
    printf("RESULT submit_p99_idle %.1f submit_p99_busy %.1f append_p99_idle %.1f append_p99_busy %.1f "
           "lag_p99_idle %.1f lag_p99_busy %.1f pw_checks %zu pw_ms %.0f verdict %s\n",
           res[0][S_SUBMIT][1], res[1][S_SUBMIT][1], res[0][S_APPEND][1], res[1][S_APPEND][1], res[0][S_LAG][1],
           res[1][S_LAG][1], pw_n, pw / 1e3, ok ? "met" : "missed");
    printf("RESULT2 submit_slept_busy %zu/%zu append_slept_busy %zu/%zu\n", g.s[1][S_SUBMIT].blocked, g.s[1][S_SUBMIT].n,
           g.s[1][S_APPEND].blocked, g.s[1][S_APPEND].n);
    status = ok ? 0 : 1;
out:
    if (g.db)
        lv_db_close(g.db); /* runs the done callbacks of what is left */
    uv_run(&g.loop, UV_RUN_NOWAIT);
    lv_usage_journal_close(g.j);
    uv_close((uv_handle_t *)&g.tick, NULL);
    for (int i = 0; i < 100 && uv_run(&g.loop, UV_RUN_NOWAIT); i++)
        ;
    uv_loop_close(&g.loop);
    char cmd[340];
    snprintf(path, sizeof(path), "%s", g.tmp);
    /* the temp dir holds only the files made here: remove them by name */
    const char *const files[] = {"livevlm.db", "livevlm.db-wal", "livevlm.db-shm", "usage.journal"};
    for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
        snprintf(cmd, sizeof(cmd), "%s/%s", path, files[i]);
        unlink(cmd);
    }
    rmdir(path);
    for (int p = 0; p < 2; p++)
        for (int k = 0; k < N_SERIES; k++)
            free(g.s[p][k].v);
    return status;
}
