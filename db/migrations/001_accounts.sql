-- 001_accounts.sql - tenants, users, API keys, sign-ins, usage, audit and meta(version)
-- (docs/internals/accounts.md). Portable SQL: runs as written on SQLite and PostgreSQL.
-- Times are wall-clock milliseconds (BIGINT); booleans are INTEGER 0/1; ids are made in C.

CREATE TABLE tenants (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL DEFAULT '',
    weight INTEGER NOT NULL DEFAULT 1,
    backends TEXT NOT NULL DEFAULT '',
    models TEXT NOT NULL DEFAULT '',
    q_fpm BIGINT NOT NULL DEFAULT 0,
    q_answers_day BIGINT NOT NULL DEFAULT 0,
    q_tokens_day BIGINT NOT NULL DEFAULT 0,
    q_sessions BIGINT NOT NULL DEFAULT 0,
    created_ms BIGINT NOT NULL DEFAULT 0
);

CREATE TABLE users (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    tenant_id TEXT NOT NULL REFERENCES tenants (id),
    role INTEGER NOT NULL DEFAULT 1,
    disabled INTEGER NOT NULL DEFAULT 0,
    pw_hash TEXT,                 -- argon2id string; NULL: no password (SSO-only or invited)
    weight INTEGER NOT NULL DEFAULT 1,
    q_fpm BIGINT NOT NULL DEFAULT 0,
    q_answers_day BIGINT NOT NULL DEFAULT 0,
    q_tokens_day BIGINT NOT NULL DEFAULT 0,
    q_sessions BIGINT NOT NULL DEFAULT 0,
    oidc_iss TEXT,
    oidc_sub TEXT,
    invite_hash TEXT,             -- SHA-256 hex of the invite code
    invite_expires_ms BIGINT NOT NULL DEFAULT 0,
    created_ms BIGINT NOT NULL DEFAULT 0
);
CREATE UNIQUE INDEX users_oidc ON users (oidc_iss, oidc_sub);
CREATE UNIQUE INDEX users_invite ON users (invite_hash);
CREATE INDEX users_tenant ON users (tenant_id);

CREATE TABLE api_keys (
    id TEXT PRIMARY KEY,
    user_id TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    name TEXT NOT NULL DEFAULT '',
    prefix TEXT NOT NULL,
    hash TEXT NOT NULL UNIQUE,    -- SHA-256 hex of the whole key as sent ("lvk_" + 64 hex)
    scope INTEGER NOT NULL,
    expires_ms BIGINT NOT NULL DEFAULT 0,
    last_used_ms BIGINT NOT NULL DEFAULT 0,
    revoked_ms BIGINT NOT NULL DEFAULT 0,
    created_ms BIGINT NOT NULL DEFAULT 0
);
CREATE INDEX api_keys_user ON api_keys (user_id);

CREATE TABLE logins (
    hash TEXT PRIMARY KEY,        -- SHA-256 hex of the cookie's 64 hex
    user_id TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    csrf TEXT NOT NULL,
    ip TEXT NOT NULL DEFAULT '',
    created_ms BIGINT NOT NULL DEFAULT 0,
    expires_ms BIGINT NOT NULL
);
CREATE INDEX logins_user ON logins (user_id);

-- No foreign keys: usage outlives the users and tenants it was charged to.
CREATE TABLE usage (
    answer_id TEXT PRIMARY KEY,
    t_ms BIGINT NOT NULL,
    tenant_id TEXT NOT NULL,
    user_id TEXT NOT NULL,
    session_id TEXT NOT NULL DEFAULT '',
    backend TEXT NOT NULL DEFAULT '',
    model TEXT NOT NULL DEFAULT '',
    image_bytes BIGINT NOT NULL DEFAULT 0,
    prompt_tokens BIGINT NOT NULL DEFAULT 0,
    completion_tokens BIGINT NOT NULL DEFAULT 0,
    backend_ms BIGINT NOT NULL DEFAULT 0,
    outcome TEXT NOT NULL DEFAULT ''
);
CREATE INDEX usage_t ON usage (t_ms);
CREATE INDEX usage_tenant_t ON usage (tenant_id, t_ms);
CREATE INDEX usage_user_t ON usage (user_id, t_ms);

CREATE TABLE audit (
    id TEXT PRIMARY KEY,
    t_ms BIGINT NOT NULL,
    actor TEXT NOT NULL DEFAULT '',
    ip TEXT NOT NULL DEFAULT '',
    action TEXT NOT NULL DEFAULT '',
    target TEXT NOT NULL DEFAULT '',
    detail TEXT NOT NULL DEFAULT ''
);
CREATE INDEX audit_t ON audit (t_ms);

-- meta.version: bumped in the same transaction as every change to tenants, users, keys or
-- sign-ins; every frontend polls it and reloads its snapshot when it moved.
CREATE TABLE meta (
    k TEXT PRIMARY KEY,
    v BIGINT NOT NULL
);
INSERT INTO meta (k, v) VALUES ('version', 1);
INSERT INTO tenants (id, name, weight, created_ms) VALUES ('default', 'Default', 1, 0);
