/* lv_cli_accounts.c - `livevlm user|key|tenant|quota ...` (lv_cli_accounts.h): the operator's
 * command line for accounts, exactly as docs/internals/accounts.md "Command line" describes it. */
#include "lv_cli_accounts.h"

#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "lv_accounts.h"
#include "lv_acct.h"
#include "lv_acctreq.h"
#include "lv_auth.h"
#include "lv_common.h"
#include "lv_config.h"
#include "lv_db.h"
#include "lv_rand.h"

#define CLI_MAX_POSITIONAL 4
#define CLI_PASSWORD_MAX 1024
#define CLI_RANDOM_PW_BYTES 12 /* 96 bits, 24 hex digits */
#define CLI_MAX_EXPIRES_DAYS 36500
#define DAY_MS 86400000ll

/* The flags any command may take; each command says which of them it accepts. */
typedef struct {
    const char *config_dir, *db_url, *config_file;
    const char *pos[CLI_MAX_POSITIONAL];
    size_t n_pos;
    const char *role, *tenant, *scope, *label, *text_name, *backends, *models;
    const char *expires_days, *weight, *fpm, *answers_day, *tokens_day, *sessions;
    bool password_stdin, invite, help;
} cli_args_t;

typedef struct {
    const char *flag;
    size_t value_off; /* offsetof the const char * it fills, or SIZE_MAX for a boolean */
    size_t bool_off;
} cli_flag_t;

#define VAL(f, field) {f, offsetof(cli_args_t, field), 0}
#define BOOL(f, field) {f, SIZE_MAX, offsetof(cli_args_t, field)}

static const cli_flag_t flags[] = {
    VAL("--config-dir", config_dir), VAL("--db", db_url), VAL("--config", config_file),
    VAL("--role", role), VAL("--tenant", tenant), VAL("--scope", scope), VAL("--expires-days", expires_days),
    VAL("--weight", weight), VAL("--fpm", fpm), VAL("--answers-day", answers_day),
    VAL("--tokens-day", tokens_day), VAL("--sessions", sessions), VAL("--backends", backends),
    VAL("--models", models), BOOL("--password-stdin", password_stdin), BOOL("--invite", invite),
    BOOL("--help", help), BOOL("-h", help),
};

/* --name means a key's label for `key add` and a tenant's display name for `tenant add|set`. */
static const char *const common_flags = " --config-dir --db --config --help -h ";

/* ---------- help ---------- */

static void help_user(FILE *to, const char *prog)
{
    fprintf(to,
            "Usage:\n"
            "  %s user add NAME [--role admin|user|viewer] [--tenant ID] [--password-stdin] [--invite]\n"
            "      make a user; prints its id, then (unless --password-stdin) a random password or, with\n"
            "      --invite, an invite link path (/login?invite=CODE, valid 7 days) on the next line.\n"
            "      --password-stdin reads the password from the first line of standard input.\n"
            "      Default role user, tenant default.\n"
            "  %s user list              NAME ROLE TENANT STATE, one user per line\n"
            "  %s user disable NAME      sign-ins end, API keys stop working; `enable NAME` undoes it\n"
            "  %s user enable NAME\n"
            "  %s user passwd NAME [--password-stdin]   set a new password (random and printed without\n"
            "      --password-stdin)\n"
            "Every command takes --config-dir DIR and --db URL like `serve` (the database is\n"
            "CONFIG_DIR/livevlm.db by default) and works without a server; a running one sees the change\n"
            "within a second.\n",
            prog, prog, prog, prog, prog);
}

static void help_key(FILE *to, const char *prog)
{
    fprintf(to,
            "Usage:\n"
            "  %s key add USER [--scope stream|admin] [--expires-days N] [--name LABEL]\n"
            "      make an API key for user USER (its name) and print it once (lvk_...); use it as\n"
            "      Authorization: Bearer lvk_... Scope stream (default): the WebSocket and the stream API;\n"
            "      admin: also /api/v1/admin (admin users only). No expiry unless --expires-days.\n"
            "  %s key list [USER]        ID PREFIX USER SCOPE STATE EXPIRES LAST_USED LABEL, one key per line\n"
            "  %s key revoke KEY_ID      the key stops working at once (within a second on a server)\n"
            "Every command takes --config-dir DIR and --db URL like `serve`.\n",
            prog, prog, prog);
}

static void help_tenant(FILE *to, const char *prog)
{
    fprintf(to,
            "Usage:\n"
            "  %s tenant add ID [--name TEXT] [--weight W] [--fpm N] [--answers-day N] [--tokens-day N]\n"
            "      [--sessions N] [--backends a,b] [--models m1,m2]\n"
            "      make a tenant (an organisation): W is its share of the backends among tenants\n"
            "      (1..1000, default 1); the quotas are per tenant, 0 = no limit (the default): frames\n"
            "      per minute, answers and tokens per UTC day, live sessions; --backends and --models\n"
            "      limit what its users may use (comma lists; empty = all).\n"
            "  %s tenant set ID ...      change a tenant, same flags (those not given stay)\n"
            "  %s tenant list            one tenant per line\n"
            "Every command takes --config-dir DIR and --db URL like `serve`.\n",
            prog, prog, prog);
}

static void help_quota(FILE *to, const char *prog)
{
    fprintf(to,
            "Usage:\n"
            "  %s quota set USER [--fpm N] [--answers-day N] [--tokens-day N] [--sessions N] [--weight W]\n"
            "      a user's own quotas (0 = no limit at the user's level; the tenant's still apply) and its\n"
            "      share among its tenant's users (1..1000). Flags not given stay.\n"
            "Every command takes --config-dir DIR and --db URL like `serve`.\n",
            prog);
}

static void help_for(const char *cmd, FILE *to, const char *prog)
{
    if (strcmp(cmd, "user") == 0)
        help_user(to, prog);
    else if (strcmp(cmd, "key") == 0)
        help_key(to, prog);
    else if (strcmp(cmd, "tenant") == 0)
        help_tenant(to, prog);
    else
        help_quota(to, prog);
}

/* ---------- arguments ---------- */

/* Parse argv[from..] into a; only common_flags and allowed (" --role --tenant ") are accepted.
 * 0, or 2 with a sentence on stderr. */
static int parse_args(int argc, char **argv, int from, const char *what, const char *allowed, cli_args_t *a)
{
    for (int i = from; i < argc; i++) {
        const char *arg = argv[i];
        if (arg[0] != '-' || arg[1] == '\0') {
            if (a->n_pos == CLI_MAX_POSITIONAL) {
                fprintf(stderr, "livevlm %s: too many arguments ('%s')\n", what, arg);
                return 2;
            }
            a->pos[a->n_pos++] = arg;
            continue;
        }
        char padded[64];
        snprintf(padded, sizeof(padded), " %s ", arg);
        bool ok = strstr(common_flags, padded) || strstr(allowed, padded);
        const cli_flag_t *f = NULL;
        for (size_t k = 0; ok && k < LV_ARRAY_LEN(flags) && !f; k++)
            if (strcmp(flags[k].flag, arg) == 0)
                f = &flags[k];
        if (strcmp(arg, "--name") == 0 && ok) {
            if (i + 1 >= argc) {
                fprintf(stderr, "livevlm %s: --name needs a value\n", what);
                return 2;
            }
            a->label = a->text_name = argv[++i];
            continue;
        }
        if (!f) {
            fprintf(stderr, "livevlm %s: unknown option '%s' (see `livevlm %s --help`)\n", what, arg, what);
            return 2;
        }
        if (f->value_off == SIZE_MAX) {
            *(bool *)((char *)a + f->bool_off) = true;
            continue;
        }
        if (i + 1 >= argc) {
            fprintf(stderr, "livevlm %s: %s needs a value\n", what, arg);
            return 2;
        }
        *(const char **)((char *)a + f->value_off) = argv[++i];
    }
    return 0;
}

/* An integer flag in [min, max]; 0 when absent (value untouched), 2 with a sentence when bad. */
static int parse_int(const char *what, const char *flag, const char *text, int64_t min, int64_t max, int64_t *out)
{
    if (!text)
        return 0;
    char *end = NULL;
    errno = 0;
    long long v = strtoll(text, &end, 10);
    if (errno || end == text || *end || v < min || v > max) {
        fprintf(stderr, "livevlm %s: %s takes a whole number from %lld to %lld, not '%s'\n", what, flag,
                (long long)min, (long long)max, text);
        return 2;
    }
    *out = v;
    return 0;
}

/* Read the password from standard input's first line. 0, or 1 with a sentence. */
static int read_password(const char *what, char *out, size_t size)
{
    if (!fgets(out, (int)size, stdin)) {
        fprintf(stderr, "livevlm %s: no password on standard input (--password-stdin reads its first line)\n", what);
        return 1;
    }
    size_t n = strcspn(out, "\r\n");
    if (out[n] == '\0' && n == size - 1) {
        fprintf(stderr, "livevlm %s: the password is longer than %d characters\n", what, CLI_PASSWORD_MAX - 1);
        return 1;
    }
    out[n] = '\0';
    lv_acctreq_err_t why; /* the one rule for new passwords, as the sign-in page applies it */
    if (lv_acctreq_password_ok(out, &why) != 0) {
        fprintf(stderr, "livevlm %s: %s\n", what, why.message);
        return 1;
    }
    return 0;
}

static int random_password(char *out, size_t size)
{
    if (lv_rand_hex(out, size, CLI_RANDOM_PW_BYTES) != 0) {
        fprintf(stderr, "livevlm: the kernel gave no random bytes for a password\n");
        return 1;
    }
    return 0;
}

/* ---------- the database ---------- */

/* Open the database serve would use: flag > environment > config file, as `token` does. */
static int open_db(const char *what, const cli_args_t *a, lv_db_t **db)
{
    lv_config_t *cfg = calloc(1, sizeof(*cfg));
    char err[512] = "";
    int rc = 1;
    if (!cfg) {
        fprintf(stderr, "livevlm %s: out of memory\n", what);
        return 1;
    }
    lv_config_defaults(cfg);
    if ((a->config_file && lv_config_load_file(cfg, a->config_file, err, sizeof(err)) != 0) ||
        lv_config_apply_env(cfg, err, sizeof(err)) != 0) {
        fprintf(stderr, "livevlm %s: %s\n", what, err);
        rc = 2;
        goto out;
    }
    if (a->config_dir)
        snprintf(cfg->config_dir, sizeof(cfg->config_dir), "%s", a->config_dir);
    if (a->db_url)
        snprintf(cfg->db_url, sizeof(cfg->db_url), "%s", a->db_url);
    if (!cfg->db_url[0] && lv_auth_ensure_dir(cfg->config_dir) != 0) {
        fprintf(stderr, "livevlm %s: cannot make the config directory %s\n", what, cfg->config_dir);
        goto out;
    }
    if (lv_db_open(NULL, cfg->db_url, cfg->config_dir, db, err, sizeof(err)) != 0) {
        fprintf(stderr, "livevlm %s: %s\n", what, err);
        goto out;
    }
    if (lv_accounts_ensure_default_tenant(*db) != 0) {
        fprintf(stderr, "livevlm %s: %s\n", what, lv_db_error(*db));
        lv_db_close(*db);
        *db = NULL;
        goto out;
    }
    rc = 0;
out:
    free(cfg);
    return rc;
}

/* The database's sentence for a failed statement, or the code's. */
static int db_fail(const char *what, lv_db_t *db, int rc)
{
    const char *e = lv_db_error(db);
    fprintf(stderr, "livevlm %s: %s\n", what, e && e[0] ? e : lv_strerror(rc));
    return 1;
}

static void audit(lv_db_t *db, const char *action, const char *target, const char *detail)
{
    lv_audit_t a;
    memset(&a, 0, sizeof(a));
    a.t_ms = (int64_t)lv_wall_ms();
    snprintf(a.actor, sizeof(a.actor), "cli");
    snprintf(a.action, sizeof(a.action), "%s", action);
    snprintf(a.target, sizeof(a.target), "%s", target);
    snprintf(a.detail, sizeof(a.detail), "%s", detail ? detail : "");
    if (lv_acct_db_audit_add(db, &a) != 0)
        fprintf(stderr, "livevlm: warning: the audit record for %s %s was not written\n", action, target);
}

/* The user called name into *out. 0, or 1 with a sentence. */
static int find_user(const char *what, lv_db_t *db, const char *name, lv_user_t *out)
{
    lv_user_t *users = NULL;
    size_t n = 0;
    int rc = lv_acct_db_user_list(db, &users, &n);
    if (rc)
        return db_fail(what, db, rc);
    rc = 1;
    for (size_t i = 0; i < n; i++)
        if (strcmp(users[i].name, name) == 0) {
            *out = users[i];
            rc = 0;
            break;
        }
    free(users);
    if (rc)
        fprintf(stderr, "livevlm %s: there is no user named '%s' (`livevlm user list` shows them)\n", what, name);
    return rc;
}

/* ---------- user ---------- */

static int user_add(lv_db_t *db, const cli_args_t *a)
{
    const char *what = "user add";
    lv_role_t role = LV_ROLE_USER;
    char pw[CLI_PASSWORD_MAX] = "";
    lv_user_t u;
    const char *name = a->pos[1];
    if (a->role && lv_role_parse(a->role, &role) != 0) {
        fprintf(stderr, "livevlm %s: --role takes admin, user or viewer, not '%s'\n", what, a->role);
        return 2;
    }
    if (a->invite && a->password_stdin) {
        fprintf(stderr, "livevlm %s: --invite and --password-stdin exclude each other\n", what);
        return 2;
    }
    if (lv_acct_check_name(name) != 0) {
        fprintf(stderr, "livevlm %s: '%s' is not a valid user name (1 to 64 of a-z A-Z 0-9 . _ @ + -)\n", what, name);
        return 2;
    }
    if (a->password_stdin ? read_password(what, pw, sizeof(pw)) : !a->invite ? random_password(pw, sizeof(pw)) : 0)
        return 1;
    const char *tenant = a->tenant ? a->tenant : LV_ACCT_DEFAULT_TENANT;
    int rc = lv_acct_db_user_add(db, name, a->invite ? NULL : pw, role, tenant, &u);
    if (rc == LV_EEXIST) {
        fprintf(stderr, "livevlm %s: a user named '%s' already exists\n", what, name);
        return 1;
    }
    if (rc)
        return db_fail(what, db, rc);
    char code[LV_ACCT_SECRET_HEX];
    if (a->invite && (rc = lv_acct_db_invite(db, u.id, code)) != 0)
        return db_fail(what, db, rc);
    audit(db, "user.add", name, lv_role_name(role));
    printf("%s\n", u.id);
    if (a->invite)
        printf("/login?invite=%s\n", code);
    else if (!a->password_stdin)
        printf("%s\n", pw);
    return 0;
}

static int print_user(const lv_user_t *u)
{
    return printf("%s %s %s %s\n", u->name, lv_role_name(u->role), u->tenant, u->disabled ? "disabled" : "active") < 0;
}

static int user_list(lv_db_t *db)
{
    lv_user_t *users = NULL;
    size_t n = 0;
    int rc = lv_acct_db_user_list(db, &users, &n);
    if (rc)
        return db_fail("user list", db, rc);
    for (size_t i = 0; i < n; i++)
        print_user(&users[i]);
    free(users);
    return 0;
}

static int user_set_disabled(lv_db_t *db, const char *name, bool disabled)
{
    const char *what = disabled ? "user disable" : "user enable";
    lv_user_t u;
    int rc = find_user(what, db, name, &u);
    if (rc)
        return rc;
    if ((rc = lv_acct_db_user_set_disabled(db, u.id, disabled)) != 0)
        return db_fail(what, db, rc);
    audit(db, disabled ? "user.disable" : "user.enable", name, NULL);
    return 0;
}

static int user_passwd(lv_db_t *db, const cli_args_t *a)
{
    const char *what = "user passwd";
    char pw[CLI_PASSWORD_MAX];
    lv_user_t u;
    int rc = find_user(what, db, a->pos[1], &u);
    if (rc)
        return rc;
    if (a->password_stdin ? read_password(what, pw, sizeof(pw)) : random_password(pw, sizeof(pw)))
        return 1;
    if ((rc = lv_acct_db_user_set_password(db, u.id, pw)) != 0)
        return db_fail(what, db, rc);
    audit(db, "user.passwd", u.name, NULL);
    if (!a->password_stdin)
        printf("%s\n", pw);
    return 0;
}

static int user_cmd(lv_db_t *db, const cli_args_t *a)
{
    const char *action = a->pos[0];
    if (strcmp(action, "list") == 0)
        return user_list(db);
    if (strcmp(action, "add") == 0)
        return user_add(db, a);
    if (strcmp(action, "disable") == 0 || strcmp(action, "enable") == 0)
        return user_set_disabled(db, a->pos[1], strcmp(action, "disable") == 0);
    return user_passwd(db, a);
}

/* ---------- key ---------- */

static int key_add(lv_db_t *db, const cli_args_t *a)
{
    const char *what = "key add";
    int64_t days = 0;
    int scope = LV_SCOPE_STREAM;
    lv_user_t u;
    if (a->scope && strcmp(a->scope, "admin") == 0)
        scope = LV_SCOPE_STREAM | LV_SCOPE_ADMIN;
    else if (a->scope && strcmp(a->scope, "stream") != 0) {
        fprintf(stderr, "livevlm %s: --scope takes stream or admin, not '%s'\n", what, a->scope);
        return 2;
    }
    if (parse_int(what, "--expires-days", a->expires_days, 1, CLI_MAX_EXPIRES_DAYS, &days))
        return 2;
    if (a->label && strlen(a->label) >= LV_ACCT_TEXT_MAX) {
        fprintf(stderr, "livevlm %s: --name is longer than %d characters\n", what, LV_ACCT_TEXT_MAX - 1);
        return 2;
    }
    int rc = find_user(what, db, a->pos[1], &u);
    if (rc)
        return rc;
    if ((scope & LV_SCOPE_ADMIN) && u.role != LV_ROLE_ADMIN) {
        fprintf(stderr, "livevlm %s: only an admin user's key may have the admin scope ('%s' is %s)\n", what, u.name,
                lv_role_name(u.role));
        return 1;
    }
    char secret[LV_ACCT_SECRET_HEX + 8];
    lv_apikey_t k;
    int64_t expires = days ? (int64_t)lv_wall_ms() + days * DAY_MS : 0;
    if ((rc = lv_acct_db_key_add(db, u.id, a->label ? a->label : "", scope, expires, secret, &k)) != 0)
        return db_fail(what, db, rc);
    audit(db, "key.add", k.id, u.name);
    printf("%s\n", secret);
    return 0;
}

static int key_list(lv_db_t *db, const cli_args_t *a)
{
    const char *what = "key list";
    lv_user_t u, *users = NULL;
    lv_apikey_t *keys = NULL;
    size_t n_users = 0, n_keys = 0;
    int rc;
    if (a->pos[1] && (rc = find_user(what, db, a->pos[1], &u)) != 0)
        return rc;
    if ((rc = lv_acct_db_user_list(db, &users, &n_users)) != 0 ||
        (rc = lv_acct_db_key_list(db, a->pos[1] ? u.id : NULL, &keys, &n_keys)) != 0) {
        free(users);
        return db_fail(what, db, rc);
    }
    int64_t now = (int64_t)lv_wall_ms();
    for (size_t i = 0; i < n_keys; i++) {
        const lv_apikey_t *k = &keys[i];
        const char *owner = k->user_id;
        for (size_t j = 0; j < n_users; j++)
            if (strcmp(users[j].id, k->user_id) == 0)
                owner = users[j].name;
        const char *state = k->revoked ? "revoked" : k->expires_ms && k->expires_ms <= now ? "expired" : "active";
        char expires[32] = "never";
        if (k->expires_ms)
            snprintf(expires, sizeof(expires), "%lld", (long long)((k->expires_ms - now) / DAY_MS));
        /* last use: UTC to the second, written by a server at most a minute after it (lv_auth.h) */
        char used[32] = "never";
        time_t used_s = (time_t)(k->last_used_ms / 1000);
        struct tm tm;
        if (k->last_used_ms > 0 && gmtime_r(&used_s, &tm))
            strftime(used, sizeof(used), "%Y-%m-%dT%H:%M:%SZ", &tm);
        printf("%s %s %s %s %s %s%s %s %s\n", k->id, k->prefix, owner, (k->scope & LV_SCOPE_ADMIN) ? "admin" : "stream",
               state, expires, k->expires_ms ? "d" : "", used, k->name);
    }
    free(keys);
    free(users);
    return 0;
}

static int key_revoke(lv_db_t *db, const char *id)
{
    int rc = lv_acct_db_key_revoke(db, id);
    if (rc == LV_ENOTFOUND) {
        fprintf(stderr, "livevlm key revoke: there is no API key with id '%s' (`livevlm key list` shows them)\n", id);
        return 1;
    }
    if (rc)
        return db_fail("key revoke", db, rc);
    audit(db, "key.revoke", id, NULL);
    return 0;
}

static int key_cmd(lv_db_t *db, const cli_args_t *a)
{
    if (strcmp(a->pos[0], "add") == 0)
        return key_add(db, a);
    if (strcmp(a->pos[0], "list") == 0)
        return key_list(db, a);
    return key_revoke(db, a->pos[1]);
}

/* ---------- tenant and quota ---------- */

/* The quota flags onto q (those given). 0 or 2. */
static int apply_quota(const char *what, const cli_args_t *a, lv_quota_t *q)
{
    return parse_int(what, "--fpm", a->fpm, 0, INT32_MAX, &q->fpm) ||
                   parse_int(what, "--answers-day", a->answers_day, 0, INT64_MAX / 2, &q->answers_day) ||
                   parse_int(what, "--tokens-day", a->tokens_day, 0, INT64_MAX / 2, &q->tokens_day) ||
                   parse_int(what, "--sessions", a->sessions, 0, INT32_MAX, &q->sessions)
               ? 2
               : 0;
}

static int apply_weight(const char *what, const cli_args_t *a, int *weight)
{
    int64_t w = *weight;
    if (parse_int(what, "--weight", a->weight, 1, 1000, &w))
        return 2;
    *weight = (int)w;
    return 0;
}

static int copy_list(const char *what, const char *flag, const char *v, char *out, size_t size)
{
    if (!v)
        return 0;
    if (strlen(v) >= size) {
        fprintf(stderr, "livevlm %s: %s is longer than %zu characters\n", what, flag, size - 1);
        return 2;
    }
    for (const char *p = v; *p; p++)
        if (*p == ' ' || *p == '\t' || (unsigned char)*p < 0x20) {
            fprintf(stderr, "livevlm %s: %s is a comma list without blanks\n", what, flag);
            return 2;
        }
    snprintf(out, size, "%s", v);
    return 0;
}

static int tenant_put(lv_db_t *db, const cli_args_t *a, bool add)
{
    const char *what = add ? "tenant add" : "tenant set";
    const char *id = a->pos[1];
    lv_tenant_t *list = NULL, t;
    size_t n = 0;
    if (lv_acct_check_id(id) != 0) {
        fprintf(stderr, "livevlm %s: '%s' is not a valid tenant id (1 to 32 of a-z 0-9 _ -)\n", what, id);
        return 2;
    }
    int rc = lv_acct_db_tenant_list(db, &list, &n);
    if (rc)
        return db_fail(what, db, rc);
    bool found = false;
    for (size_t i = 0; i < n && !found; i++)
        if (strcmp(list[i].id, id) == 0) {
            t = list[i];
            found = true;
        }
    free(list);
    if (add && found) {
        fprintf(stderr, "livevlm %s: tenant '%s' already exists (`livevlm tenant set` changes it)\n", what, id);
        return 1;
    }
    if (!add && !found) {
        fprintf(stderr, "livevlm %s: there is no tenant '%s' (`livevlm tenant add` makes one)\n", what, id);
        return 1;
    }
    if (add) {
        memset(&t, 0, sizeof(t));
        snprintf(t.id, sizeof(t.id), "%s", id);
        snprintf(t.name, sizeof(t.name), "%s", id);
        t.weight = 1;
        t.created_ms = (int64_t)lv_wall_ms();
    }
    if (a->text_name && strlen(a->text_name) >= sizeof(t.name)) {
        fprintf(stderr, "livevlm %s: --name is longer than %zu characters\n", what, sizeof(t.name) - 1);
        return 2;
    }
    if (a->text_name)
        snprintf(t.name, sizeof(t.name), "%s", a->text_name);
    if (apply_weight(what, a, &t.weight) || apply_quota(what, a, &t.quota) ||
        copy_list(what, "--backends", a->backends, t.backends, sizeof(t.backends)) ||
        copy_list(what, "--models", a->models, t.models, sizeof(t.models)))
        return 2;
    if ((rc = lv_acct_db_tenant_put(db, &t)) != 0)
        return db_fail(what, db, rc);
    audit(db, "tenant.put", id, add ? "add" : "set");
    return 0;
}

static int tenant_list(lv_db_t *db)
{
    lv_tenant_t *list = NULL;
    size_t n = 0;
    int rc = lv_acct_db_tenant_list(db, &list, &n);
    if (rc)
        return db_fail("tenant list", db, rc);
    for (size_t i = 0; i < n; i++) {
        const lv_tenant_t *t = &list[i];
        printf("%s weight=%d fpm=%lld answers_day=%lld tokens_day=%lld sessions=%lld backends=%s models=%s name=%s\n",
               t->id, t->weight, (long long)t->quota.fpm, (long long)t->quota.answers_day,
               (long long)t->quota.tokens_day, (long long)t->quota.sessions, t->backends[0] ? t->backends : "*",
               t->models[0] ? t->models : "*", t->name);
    }
    free(list);
    return 0;
}

static int tenant_cmd(lv_db_t *db, const cli_args_t *a)
{
    if (strcmp(a->pos[0], "list") == 0)
        return tenant_list(db);
    return tenant_put(db, a, strcmp(a->pos[0], "add") == 0);
}

static int quota_cmd(lv_db_t *db, const cli_args_t *a)
{
    const char *what = "quota set";
    lv_user_t u;
    int rc = find_user(what, db, a->pos[1], &u);
    if (rc)
        return rc;
    if (apply_quota(what, a, &u.quota) || apply_weight(what, a, &u.weight))
        return 2;
    if ((rc = lv_acct_db_user_update(db, &u)) != 0)
        return db_fail(what, db, rc);
    audit(db, "quota.set", u.name, NULL);
    return 0;
}

/* ---------- dispatch ---------- */

/* Each action: its command, name, positional arguments (min..max, the action included) and flags. */
static const struct {
    const char *cmd, *action;
    size_t min_pos, max_pos;
    const char *flags;
    int (*run)(lv_db_t *db, const cli_args_t *a);
} actions[] = {
    {"user", "add", 2, 2, " --role --tenant --password-stdin --invite ", user_cmd},
    {"user", "list", 1, 1, "", user_cmd},
    {"user", "disable", 2, 2, "", user_cmd},
    {"user", "enable", 2, 2, "", user_cmd},
    {"user", "passwd", 2, 2, " --password-stdin ", user_cmd},
    {"key", "add", 2, 2, " --scope --expires-days --name ", key_cmd},
    {"key", "list", 1, 2, "", key_cmd},
    {"key", "revoke", 2, 2, "", key_cmd},
    {"tenant", "add", 2, 2, " --name --weight --fpm --answers-day --tokens-day --sessions --backends --models ",
     tenant_cmd},
    {"tenant", "set", 2, 2, " --name --weight --fpm --answers-day --tokens-day --sessions --backends --models ",
     tenant_cmd},
    {"tenant", "list", 1, 1, "", tenant_cmd},
    {"quota", "set", 2, 2, " --fpm --answers-day --tokens-day --sessions --weight ", quota_cmd},
};

bool lv_cli_accounts_command(const char *name)
{
    return strcmp(name, "user") == 0 || strcmp(name, "key") == 0 || strcmp(name, "tenant") == 0 ||
           strcmp(name, "quota") == 0;
}

int lv_cli_accounts_main(const char *prog, int argc, char **argv)
{
    const char *cmd = argv[0];
    char what[64];
    cli_args_t a;
    memset(&a, 0, sizeof(a));
    if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "help") == 0) {
        help_for(cmd, argc < 2 ? stderr : stdout, prog);
        return argc < 2 ? 2 : 0;
    }
    size_t k = 0;
    while (k < LV_ARRAY_LEN(actions) && !(strcmp(actions[k].cmd, cmd) == 0 && strcmp(actions[k].action, argv[1]) == 0))
        k++;
    if (k == LV_ARRAY_LEN(actions)) {
        fprintf(stderr, "livevlm %s: unknown action '%s'\n\n", cmd, argv[1]);
        help_for(cmd, stderr, prog);
        return 2;
    }
    snprintf(what, sizeof(what), "%s %s", cmd, argv[1]);
    a.pos[a.n_pos++] = argv[1];
    int rc = parse_args(argc, argv, 2, what, actions[k].flags, &a);
    if (rc)
        return rc;
    if (a.help) {
        help_for(cmd, stdout, prog);
        return 0;
    }
    if (a.n_pos < actions[k].min_pos || a.n_pos > actions[k].max_pos) {
        fprintf(stderr, "livevlm %s: %s (see `livevlm %s --help`)\n", what,
                a.n_pos < actions[k].min_pos ? "an argument is missing" : "too many arguments", cmd);
        return 2;
    }
    lv_db_t *db = NULL;
    if ((rc = open_db(what, &a, &db)) != 0)
        return rc;
    rc = actions[k].run(db, &a);
    lv_db_close(db);
    fflush(stdout);
    return rc;
}
