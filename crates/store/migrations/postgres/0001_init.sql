-- The algorithm store, PostgreSQL. Times are Unix seconds.
CREATE TABLE organizations (
    id BIGSERIAL PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    created_at BIGINT NOT NULL
);
CREATE TABLE accounts (
    id BIGSERIAL PRIMARY KEY,
    username TEXT NOT NULL UNIQUE,
    organization_id BIGINT NOT NULL REFERENCES organizations(id),
    roles TEXT NOT NULL,
    password_hash TEXT NOT NULL,
    failed_logins BIGINT NOT NULL DEFAULT 0,
    locked_until BIGINT,
    public_key TEXT,
    key_id TEXT UNIQUE,
    created_at BIGINT NOT NULL
);
CREATE TABLE tokens (
    hash TEXT PRIMARY KEY,
    account_id BIGINT NOT NULL REFERENCES accounts(id),
    kind TEXT NOT NULL,
    family TEXT NOT NULL,
    expires_at BIGINT NOT NULL
);
CREATE INDEX tokens_family ON tokens(family);
CREATE TABLE algorithms (
    id BIGSERIAL PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    description TEXT NOT NULL,
    source TEXT NOT NULL,
    organization_id BIGINT NOT NULL REFERENCES organizations(id),
    created_at BIGINT NOT NULL
);
CREATE TABLE versions (
    id BIGSERIAL PRIMARY KEY,
    algorithm_id BIGINT NOT NULL REFERENCES algorithms(id),
    version TEXT NOT NULL,
    repository TEXT NOT NULL,
    digest TEXT NOT NULL,
    tag TEXT,
    commit_sha TEXT NOT NULL,
    functions TEXT NOT NULL,
    state TEXT NOT NULL,
    submitter_id BIGINT NOT NULL REFERENCES accounts(id),
    reason TEXT,
    leaf_index BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    UNIQUE (algorithm_id, version)
);
CREATE INDEX versions_digest ON versions(digest);
CREATE TABLE assignments (
    version_id BIGINT NOT NULL REFERENCES versions(id),
    reviewer_id BIGINT NOT NULL REFERENCES accounts(id),
    PRIMARY KEY (version_id, reviewer_id)
);
CREATE TABLE reviews (
    id BIGSERIAL PRIMARY KEY,
    version_id BIGINT NOT NULL REFERENCES versions(id),
    reviewer_id BIGINT NOT NULL REFERENCES accounts(id),
    decision TEXT NOT NULL,
    comment TEXT,
    leaf_index BIGINT NOT NULL,
    UNIQUE (version_id, reviewer_id, decision)
);
-- The transparency log: one row per leaf, the exact leaf bytes and their RFC 6962 leaf hash.
CREATE TABLE log_entries (
    idx BIGINT PRIMARY KEY,
    kind TEXT NOT NULL,
    version_id BIGINT NOT NULL REFERENCES versions(id),
    digest TEXT NOT NULL,
    leaf BYTEA NOT NULL,
    leaf_hash BYTEA NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE INDEX log_entries_digest ON log_entries(digest);
