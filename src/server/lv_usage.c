/* lv_usage.c - the usage journal and its mover into the database, and the per-tenant counters of
 * /metrics (lv_usage.h; docs/internals/accounts.md "Usage"). */
#include "lv_usage.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "lv_app.h"
#include "lv_common.h"
#include "lv_db.h"
#include "lv_hmap.h"
#include "lv_log.h"
#include "lv_metrics.h"

/* ---------- one record ----------
 *
 * 512 bytes: "LVU1 " + 8 hex of FNV-1a-32 over bytes [14, 511) + " " + the payload (12 fields,
 * each followed by a tab) padded with spaces + "\n". Text so `cat usage.journal` is readable; fixed
 * size so a torn record (a crash inside a write, power loss) shows as a short or bad last one. */

#define REC LV_USAGE_RECORD_BYTES
#define PAYLOAD_AT 14
#define N_FIELDS 12

/* Copy s into the payload at *at as one field: at most max bytes, tabs and line ends as spaces. */
static void put_field(char *rec, size_t *at, const char *s, size_t max)
{
    size_t n = strnlen(s, max);
    for (size_t i = 0; i < n && *at < REC - 2; i++) {
        char ch = s[i];
        rec[(*at)++] = ch == '\t' || ch == '\n' || ch == '\r' ? ' ' : ch;
    }
    if (*at < REC - 1)
        rec[(*at)++] = '\t';
}

static void put_int(char *rec, size_t *at, int64_t v)
{
    char num[24];
    snprintf(num, sizeof(num), "%" PRId64, v);
    put_field(rec, at, num, sizeof(num));
}

void lv_usage_encode(const lv_usage_t *u, char rec[LV_USAGE_RECORD_BYTES])
{
    size_t at = PAYLOAD_AT;
    memset(rec, ' ', REC);
    put_field(rec, &at, u->answer_id, sizeof(u->answer_id) - 1);
    put_int(rec, &at, u->t_ms);
    put_field(rec, &at, u->tenant, sizeof(u->tenant) - 1);
    put_field(rec, &at, u->user_id, sizeof(u->user_id) - 1);
    put_field(rec, &at, u->session_id, sizeof(u->session_id) - 1);
    put_field(rec, &at, u->backend, sizeof(u->backend) - 1);
    put_field(rec, &at, u->model, sizeof(u->model) - 1);
    put_int(rec, &at, u->image_bytes);
    put_int(rec, &at, u->prompt_tokens);
    put_int(rec, &at, u->completion_tokens);
    put_int(rec, &at, u->backend_ms);
    put_field(rec, &at, u->outcome, sizeof(u->outcome) - 1);
    rec[REC - 1] = '\n';
    char head[16];
    snprintf(head, sizeof(head), "LVU1 %08x ", (unsigned)lv_fnv1a(rec + PAYLOAD_AT, REC - 1 - PAYLOAD_AT));
    memcpy(rec, head, PAYLOAD_AT);
}

static int get_str(const char *f, size_t len, char *out, size_t size)
{
    if (len >= size)
        return LV_EPARSE;
    memcpy(out, f, len);
    out[len] = '\0';
    return 0;
}

static int get_int(const char *f, size_t len, int64_t *out)
{
    char num[24];
    char *end;
    if (len == 0 || get_str(f, len, num, sizeof(num)) != 0)
        return LV_EPARSE;
    errno = 0;
    long long v = strtoll(num, &end, 10);
    if (errno || *end)
        return LV_EPARSE;
    *out = v;
    return 0;
}

int lv_usage_decode(const char rec[LV_USAGE_RECORD_BYTES], lv_usage_t *out)
{
    char want[16];
    memset(out, 0, sizeof(*out));
    snprintf(want, sizeof(want), "LVU1 %08x ", (unsigned)lv_fnv1a(rec + PAYLOAD_AT, REC - 1 - PAYLOAD_AT));
    if (memcmp(rec, want, PAYLOAD_AT) != 0 || rec[REC - 1] != '\n')
        return LV_EPARSE;
    const char *f[N_FIELDS];
    size_t len[N_FIELDS];
    size_t at = PAYLOAD_AT;
    for (int i = 0; i < N_FIELDS; i++) {
        const char *tab = memchr(rec + at, '\t', REC - 1 - at);
        if (!tab)
            return LV_EPARSE;
        f[i] = rec + at;
        len[i] = (size_t)(tab - f[i]);
        at = (size_t)(tab - rec) + 1;
    }
    int rc = 0;
    rc |= get_str(f[0], len[0], out->answer_id, sizeof(out->answer_id));
    rc |= get_int(f[1], len[1], &out->t_ms);
    rc |= get_str(f[2], len[2], out->tenant, sizeof(out->tenant));
    rc |= get_str(f[3], len[3], out->user_id, sizeof(out->user_id));
    rc |= get_str(f[4], len[4], out->session_id, sizeof(out->session_id));
    rc |= get_str(f[5], len[5], out->backend, sizeof(out->backend));
    rc |= get_str(f[6], len[6], out->model, sizeof(out->model));
    rc |= get_int(f[7], len[7], &out->image_bytes);
    rc |= get_int(f[8], len[8], &out->prompt_tokens);
    rc |= get_int(f[9], len[9], &out->completion_tokens);
    rc |= get_int(f[10], len[10], &out->backend_ms);
    rc |= get_str(f[11], len[11], out->outcome, sizeof(out->outcome));
    return rc || !out->answer_id[0] ? LV_EPARSE : 0;
}

/* ---------- the file ---------- */

struct lv_usage_journal {
    int fd;
    uint64_t size, cap;
};

int lv_usage_journal_open(const char *path, uint64_t cap_bytes, lv_usage_journal_t **out, size_t *records,
                          uint64_t *cut)
{
    int rc = 0;
    char rec[REC];
    lv_usage_journal_t *j = calloc(1, sizeof(*j));
    if (!j)
        return LV_ENOMEM;
    j->cap = cap_bytes;
    j->fd = open(path, O_RDWR | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
    if (j->fd < 0) {
        rc = LV_EIO;
        goto out;
    }
    struct stat st;
    if (fstat(j->fd, &st) != 0) {
        rc = LV_EIO;
        goto out;
    }
    /* the good end: after the last record that decodes (a bad one in the middle is skipped when
     * read; only a bad tail is cut, as only the last write can have been torn) */
    uint64_t whole = (uint64_t)st.st_size / REC * REC, good_end = 0;
    size_t n_good = 0;
    for (uint64_t off = 0; off < whole; off += REC) {
        lv_usage_t u;
        if (pread(j->fd, rec, REC, (off_t)off) != (ssize_t)REC) {
            rc = LV_EIO;
            goto out;
        }
        if (lv_usage_decode(rec, &u) == 0) {
            n_good++;
            good_end = off + REC;
        }
    }
    if (good_end < (uint64_t)st.st_size && ftruncate(j->fd, (off_t)good_end) != 0) {
        rc = LV_EIO;
        goto out;
    }
    j->size = good_end;
    if (records)
        *records = n_good;
    if (cut)
        *cut = (uint64_t)st.st_size - good_end;
out:
    if (rc) {
        lv_usage_journal_close(j);
        j = NULL;
    }
    *out = j;
    return rc;
}

int lv_usage_journal_append_encoded(lv_usage_journal_t *j, const char *recs, size_t n, size_t *written)
{
    *written = 0;
    size_t fit = j->size >= j->cap ? 0 : (size_t)LV_MIN((uint64_t)n, (j->cap - j->size) / REC);
    if (fit == 0)
        return n ? LV_ELIMIT : 0;
    size_t len = fit * REC;
    ssize_t w;
    do
        w = write(j->fd, recs, len);
    while (w < 0 && errno == EINTR);
    if (w == (ssize_t)len) {
        j->size += len;
        *written = fit;
        return fit < n ? LV_ELIMIT : 0;
    }
    int err = w < 0 ? errno : ENOSPC; /* a short write sets no errno: most likely a full disk */
    if (w > 0 && ftruncate(j->fd, (off_t)j->size) != 0) /* a short write (disk full): keep the file aligned */
        LV_ERROR("usage journal: could not cut a short write back off: %s", strerror(errno));
    errno = err; /* what the caller's message names */
    return LV_EIO;
}

int lv_usage_journal_append(lv_usage_journal_t *j, const lv_usage_t *u)
{
    char rec[REC];
    size_t written;
    lv_usage_encode(u, rec);
    return lv_usage_journal_append_encoded(j, rec, 1, &written);
}

uint64_t lv_usage_journal_size(const lv_usage_journal_t *j) { return j->size; }

int lv_usage_journal_read(const lv_usage_journal_t *j, uint64_t from, uint64_t to, lv_usage_t **out, size_t *n,
                          size_t *bad)
{
    *out = NULL;
    *n = 0;
    *bad = 0;
    if (from % REC || to % REC || to < from)
        return LV_EINVAL;
    size_t want = (size_t)((to - from) / REC);
    if (!want)
        return 0;
    /* a pread per READ_CHUNK records, not per record (a flush job reads up to 2,048) */
    enum { READ_CHUNK = 128 };
    lv_usage_t *v = malloc(want * sizeof(*v));
    char *chunk = malloc((size_t)LV_MIN(want, (size_t)READ_CHUNK) * REC);
    if (!v || !chunk) {
        free(v);
        free(chunk);
        return LV_ENOMEM;
    }
    for (uint64_t off = from; off < to;) {
        size_t len = (size_t)LV_MIN(to - off, (uint64_t)READ_CHUNK * REC);
        if (pread(j->fd, chunk, len, (off_t)off) != (ssize_t)len) {
            free(v);
            free(chunk);
            return LV_EIO;
        }
        for (size_t at = 0; at < len; at += REC) {
            if (lv_usage_decode(chunk + at, &v[*n]) == 0)
                (*n)++;
            else
                (*bad)++;
        }
        off += len;
    }
    free(chunk);
    *out = v;
    return 0;
}

int lv_usage_journal_truncate(lv_usage_journal_t *j)
{
    if (ftruncate(j->fd, 0) != 0)
        return LV_EIO;
    j->size = 0;
    return 0;
}

void lv_usage_journal_close(lv_usage_journal_t *j)
{
    if (!j)
        return;
    if (j->fd >= 0)
        close(j->fd);
    free(j);
}

/* ---------- the serving process ---------- */

/* Counts of one tenant for /metrics. */
typedef struct {
    lv_hmap_node_t node;
    char tenant[LV_ACCT_ID_MAX];
    uint64_t answers, prompt_tokens, completion_tokens, frames;
} tenant_count_t;

/* Refusals: scope x quota (2 x 4). */
static const char *const scopes[] = {"user", "tenant"};
static const char *const quotas[] = {"fpm", "answers_day", "tokens_day", "sessions"};

struct lv_usage {
    lv_app_t *app;
    lv_usage_journal_t *j;
    uv_timer_t timer;
    uv_check_t check;            /* active while records wait in pend: writes them this turn */
    char pend[LV_USAGE_PEND_MAX * REC]; /* encoded records of this loop turn, not yet written */
    size_t n_pend;
    uint64_t flushed;            /* bytes [0, flushed) are in the database */
    uint64_t submitted;          /* bytes [0, submitted) are in jobs queued or done */
    size_t jobs;                 /* flush jobs queued or running */
    bool stopping, timer_closed, check_closed;
    uint64_t lost, db_failures, corrupt;
    uint64_t last_loud_ms;       /* the journal-full error is logged at most once a minute */
    lv_hmap_t tenants;           /* tenant_count_t, at most LV_USAGE_TENANT_LABELS */
    tenant_count_t other;        /* every tenant past the cap */
    uint64_t refusals[2][4];
};

typedef struct {
    struct lv_usage *u;
    uint64_t from, to;
    size_t bad;
} flush_job_t;

static void usage_free(struct lv_usage *u)
{
    lv_hmap_iter_t it;
    lv_hmap_node_t *n;
    lv_hmap_iter_init(&u->tenants, &it);
    while ((n = lv_hmap_iter_next(&u->tenants, &it)) != NULL) {
        lv_hmap_remove(&u->tenants, n);
        free(LV_CONTAINER_OF(n, tenant_count_t, node));
    }
    lv_hmap_free(&u->tenants);
    lv_usage_journal_close(u->j);
    free(u);
}

static void maybe_free(struct lv_usage *u)
{
    if (u->stopping && u->timer_closed && u->check_closed && u->jobs == 0)
        usage_free(u);
}

/* Database thread: the records of [from, to) into the usage table, one transaction. */
static int flush_work(lv_db_t *db, void *ud)
{
    flush_job_t *fj = ud;
    lv_usage_t *v = NULL;
    size_t n = 0;
    int rc = lv_usage_journal_read(fj->u->j, fj->from, fj->to, &v, &n, &fj->bad);
    if (!rc && n)
        rc = lv_acct_db_usage_add(db, v, n);
    if (rc)
        LV_WARN("usage: %zu record(s) not moved into the database yet (%s%s%s); they stay in the journal", n,
                lv_strerror(rc), rc == LV_EIO && n ? ": " : "", rc == LV_EIO && n ? lv_db_error(db) : "");
    free(v);
    return rc;
}

static void flush_done(int rc, void *ud)
{
    flush_job_t *fj = ud;
    struct lv_usage *u = fj->u;
    u->jobs--;
    u->corrupt += fj->bad;
    if (rc == 0 && fj->from == u->flushed) {
        u->flushed = fj->to;
    } else if (rc != 0) {
        /* everything from the first failure is tried again: a later job that succeeded meanwhile
         * only inserted records again that are ignored (idempotent per answer id) */
        u->db_failures++;
        u->submitted = u->flushed;
    }
    /* everything in the file is in the database and nothing reads it: empty it (a crash before
     * this line only means the next start inserts them again, which changes nothing) */
    if (u->jobs == 0 && !u->stopping && u->flushed == lv_usage_journal_size(u->j) && u->flushed > 0) {
        if (lv_usage_journal_truncate(u->j) == 0)
            u->flushed = u->submitted = 0;
        else
            LV_ERROR("usage journal: could not empty it: %s", strerror(errno));
    }
    free(fj);
    maybe_free(u);
}

/* The records of this turn into the journal, with one write. A record that cannot be written is
 * lost (the answer was delivered all the same): counted, and logged loudly once a minute. */
static void write_pending(struct lv_usage *u)
{
    size_t n = u->n_pend, written = 0;
    if (!n)
        return;
    u->n_pend = 0;
    uv_check_stop(&u->check);
    int rc = lv_usage_journal_append_encoded(u->j, u->pend, n, &written);
    if (!rc)
        return;
    /* Decided: the answer is still delivered (a database outage must not stop the service), the
     * record is lost, counted and logged loudly; docs/internals/accounts.md says so. */
    int err = errno;
    u->lost += n - written;
    uint64_t now = lv_now_ms();
    if (!u->last_loud_ms || now - u->last_loud_ms >= 60000) {
        u->last_loud_ms = now;
        LV_ERROR("usage journal %s: answers are NOT being recorded (%" PRIu64 " lost so far): %s",
                 rc == LV_ELIMIT ? "full (256 MiB waiting for the database, which has been failing)" : "unwritable",
                 u->lost, rc == LV_ELIMIT ? "bring the database back" : strerror(err));
    }
}

static void on_check(uv_check_t *c) { write_pending(c->data); }

static void submit_flush(struct lv_usage *u)
{
    write_pending(u); /* the journal's size then counts every answer recorded so far */
    lv_app_t *app = u->app;
    uint64_t end = lv_usage_journal_size(u->j);
    while (app->db && u->submitted < end) {
        flush_job_t *fj = calloc(1, sizeof(*fj));
        if (!fj)
            return;
        fj->u = u;
        fj->from = u->submitted;
        fj->to = LV_MIN(end, fj->from + (uint64_t)LV_USAGE_FLUSH_BATCH * REC);
        if (lv_db_submit(app->db, flush_work, flush_done, fj) != 0) {
            free(fj); /* the queue is full or closing: the next tick tries again */
            return;
        }
        u->jobs++;
        u->submitted = fj->to;
    }
}

void lv_usage_flush(lv_app_t *app)
{
    if (app->usage && !app->usage->stopping)
        submit_flush(app->usage);
}

static void on_timer(uv_timer_t *t)
{
    struct lv_usage *u = t->data;
    /* one batch at a time is enough to keep up: 2,048 records per 200 ms */
    if (u->jobs == 0)
        submit_flush(u);
}

int lv_usage_start(lv_app_t *app)
{
    char path[600];
    size_t records = 0;
    uint64_t cut = 0;
    struct lv_usage *u = calloc(1, sizeof(*u));
    if (!u)
        return LV_ENOMEM;
    int rc = lv_hmap_init(&u->tenants, LV_USAGE_TENANT_LABELS);
    if (rc) {
        free(u);
        return rc;
    }
    u->app = app;
    snprintf(u->other.tenant, sizeof(u->other.tenant), "_other");
    snprintf(path, sizeof(path), "%s/usage.journal", app->cfg.config_dir);
    rc = lv_usage_journal_open(path, LV_USAGE_JOURNAL_CAP, &u->j, &records, &cut);
    if (rc) {
        LV_ERROR("usage journal %s: could not open it (%s): answers are not recorded", path, strerror(errno));
        usage_free(u);
        return rc;
    }
    if (cut)
        LV_WARN("usage journal: %" PRIu64 " byte(s) of a torn last record cut off (a crash while writing it)", cut);
    if (records)
        LV_INFO("usage journal: %zu record(s) from the last run are moved into the database", records);
    app->usage = u;
    submit_flush(u); /* the replay: queued before any job this process submits later */
    uv_timer_init(app->loop, &u->timer);
    u->timer.data = u;
    uv_check_init(app->loop, &u->check);
    u->check.data = u;
    uv_timer_start(&u->timer, on_timer, LV_USAGE_FLUSH_MS, LV_USAGE_FLUSH_MS);
    return 0;
}

static void on_timer_closed(uv_handle_t *h)
{
    struct lv_usage *u = h->data;
    u->timer_closed = true;
    maybe_free(u);
}

static void on_check_closed(uv_handle_t *h)
{
    struct lv_usage *u = h->data;
    u->check_closed = true;
    maybe_free(u);
}

void lv_usage_stop(lv_app_t *app)
{
    struct lv_usage *u = app->usage;
    if (!u)
        return;
    submit_flush(u); /* the last answers, before the database closes */
    u->stopping = true;
    app->usage = NULL;
    uv_timer_stop(&u->timer);
    uv_close((uv_handle_t *)&u->timer, on_timer_closed);
    uv_close((uv_handle_t *)&u->check, on_check_closed);
}

static tenant_count_t *tenant_count(struct lv_usage *u, const char *tenant)
{
    lv_hmap_node_t *n = lv_hmap_find_str(&u->tenants, tenant);
    if (n)
        return LV_CONTAINER_OF(n, tenant_count_t, node);
    if (lv_hmap_count(&u->tenants) >= LV_USAGE_TENANT_LABELS)
        return &u->other;
    tenant_count_t *t = calloc(1, sizeof(*t));
    if (!t)
        return &u->other;
    snprintf(t->tenant, sizeof(t->tenant), "%s", tenant);
    if (lv_hmap_insert_str(&u->tenants, &t->node, t->tenant) != 0) {
        free(t);
        return &u->other;
    }
    return t;
}

int lv_usage_record(lv_app_t *app, const lv_usage_t *rec)
{
    struct lv_usage *u = app->usage;
    if (!u)
        return LV_ECLOSED;
    if (strcmp(rec->outcome, "ok") == 0) {
        tenant_count_t *t = tenant_count(u, rec->tenant);
        t->answers++;
        t->prompt_tokens += (uint64_t)LV_MAX(rec->prompt_tokens, 0);
        t->completion_tokens += (uint64_t)LV_MAX(rec->completion_tokens, 0);
    }
    /* Written at the end of this loop turn, together with the other answers that ended in it (a
     * write per answer was a sixth of the loop's system calls at 1,000 sessions): a record is in
     * memory only as long as the answer it describes is still being handled in this turn. */
    lv_usage_encode(rec, u->pend + u->n_pend * REC);
    if (u->n_pend++ == 0)
        uv_check_start(&u->check, on_check);
    if (u->n_pend == LV_USAGE_PEND_MAX)
        write_pending(u);
    return 0;
}

void lv_usage_count_frame(lv_app_t *app, const char *tenant)
{
    if (app->usage)
        tenant_count(app->usage, tenant)->frames++;
}

void lv_usage_count_refusal(lv_app_t *app, const char *scope, const char *quota)
{
    if (!app->usage)
        return;
    for (int s = 0; s < 2; s++)
        for (int q = 0; q < 4; q++)
            if (strcmp(scope, scopes[s]) == 0 && strcmp(quota, quotas[q]) == 0)
                app->usage->refusals[s][q]++;
}

/* One series (0 answers, 1 prompt tokens, 2 completion tokens, 3 frames) of tenant t. */
static int tenant_line(lv_buf_t *out, const tenant_count_t *t, int series)
{
    static const char *const names[] = {"livevlm_tenant_answers_total{tenant=\"",
                                        "livevlm_tenant_tokens_total{kind=\"prompt\",tenant=\"",
                                        "livevlm_tenant_tokens_total{kind=\"completion\",tenant=\"",
                                        "livevlm_tenant_frames_total{tenant=\""};
    const uint64_t v[] = {t->answers, t->prompt_tokens, t->completion_tokens, t->frames};
    int rc = lv_buf_append_str(out, names[series]);
    if (!rc)
        rc = lv_metrics_label_value(out, t->tenant);
    if (!rc)
        rc = lv_buf_printf(out, "\"} %" PRIu64 "\n", v[series]);
    return rc;
}

int lv_usage_metrics(lv_app_t *app, lv_buf_t *out)
{
    struct lv_usage *u = app->usage;
    if (!u)
        return 0;
    static const char *const help[] = {
        "# HELP livevlm_tenant_answers_total Answers delivered, per tenant (at most 100 tenants named; the rest "
        "as _other).\n# TYPE livevlm_tenant_answers_total counter\n",
        "# HELP livevlm_tenant_tokens_total Tokens of delivered answers, per tenant and kind.\n"
        "# TYPE livevlm_tenant_tokens_total counter\n",
        NULL,
        "# HELP livevlm_tenant_frames_total Frames asked for (credits) and analyzed, per tenant.\n"
        "# TYPE livevlm_tenant_frames_total counter\n"};
    int rc = 0;
    /* a family's samples together (the text format wants them so): one walk per series */
    for (int series = 0; !rc && series < 4; series++) {
        lv_hmap_iter_t it;
        lv_hmap_node_t *n;
        if (help[series])
            rc = lv_buf_append_str(out, help[series]);
        lv_hmap_iter_init(&u->tenants, &it);
        while (!rc && (n = lv_hmap_iter_next(&u->tenants, &it)) != NULL)
            rc = tenant_line(out, LV_CONTAINER_OF(n, tenant_count_t, node), series);
        if (!rc && (u->other.answers || u->other.frames))
            rc = tenant_line(out, &u->other, series);
    }
    if (!rc)
        rc = lv_buf_append_str(out, "# HELP livevlm_quota_refusals_total Credits, analyze requests and sessions "
                                    "refused over a quota.\n# TYPE livevlm_quota_refusals_total counter\n");
    for (int s = 0; !rc && s < 2; s++)
        for (int q = 0; !rc && q < 4; q++)
            rc = lv_buf_printf(out, "livevlm_quota_refusals_total{quota=\"%s\",scope=\"%s\"} %" PRIu64 "\n", quotas[q],
                               scopes[s], u->refusals[s][q]);
    if (!rc)
        rc = lv_buf_printf(out,
                           "# HELP livevlm_usage_journal_bytes Usage records waiting in the journal for the "
                           "database.\n# TYPE livevlm_usage_journal_bytes gauge\nlivevlm_usage_journal_bytes %" PRIu64
                           "\n# HELP livevlm_usage_lost_total Answers whose usage record could not be journaled "
                           "(journal full or unwritable).\n# TYPE livevlm_usage_lost_total counter\n"
                           "livevlm_usage_lost_total %" PRIu64 "\n# HELP livevlm_usage_db_failures_total Journal "
                           "batches the database refused (retried).\n# TYPE livevlm_usage_db_failures_total counter\n"
                           "livevlm_usage_db_failures_total %" PRIu64 "\n",
                           lv_usage_journal_size(u->j) - u->flushed, u->lost, u->db_failures);
    return rc;
}
