-- Warden server schema, SQLite. Times are unix microseconds (UTC) in INTEGER columns.
-- Large blobs (inputs, results) live in their own tables so that listing tasks and runs
-- never reads them.

CREATE TABLE organizations (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    name        TEXT NOT NULL UNIQUE,
    public_key  TEXT NOT NULL,
    created_at  INTEGER NOT NULL
);

CREATE TABLE collaborations (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    name        TEXT NOT NULL UNIQUE,
    encrypted   BOOLEAN NOT NULL,
    created_at  INTEGER NOT NULL
);

CREATE TABLE collaboration_members (
    collaboration_id INTEGER NOT NULL REFERENCES collaborations(id),
    organization_id  INTEGER NOT NULL REFERENCES organizations(id),
    PRIMARY KEY (collaboration_id, organization_id)
);
CREATE INDEX collaboration_members_by_org ON collaboration_members(organization_id, collaboration_id);

CREATE TABLE users (
    id               INTEGER PRIMARY KEY AUTOINCREMENT,
    username         TEXT NOT NULL UNIQUE,
    organization_id  INTEGER REFERENCES organizations(id),
    role             TEXT NOT NULL CHECK (role IN ('root', 'org_admin', 'researcher', 'viewer')),
    password_hash    TEXT NOT NULL,
    failed_logins    INTEGER NOT NULL DEFAULT 0,
    locked_until     INTEGER,
    created_at       INTEGER NOT NULL,
    CHECK ((role = 'root') = (organization_id IS NULL))
);
CREATE INDEX users_by_org ON users(organization_id, id);

CREATE TABLE nodes (
    id               INTEGER PRIMARY KEY AUTOINCREMENT,
    organization_id  INTEGER NOT NULL,
    collaboration_id INTEGER NOT NULL,
    api_key_hash     TEXT NOT NULL,
    created_at       INTEGER NOT NULL,
    last_seen_at     INTEGER,
    UNIQUE (organization_id, collaboration_id),
    FOREIGN KEY (collaboration_id, organization_id)
        REFERENCES collaboration_members(collaboration_id, organization_id)
);
CREATE INDEX nodes_by_collaboration ON nodes(collaboration_id, id);

CREATE TABLE tasks (
    id               INTEGER PRIMARY KEY AUTOINCREMENT,
    collaboration_id INTEGER NOT NULL REFERENCES collaborations(id),
    name             TEXT NOT NULL,
    image            TEXT NOT NULL,
    organization_id  INTEGER NOT NULL REFERENCES organizations(id),
    creator_user_id  INTEGER REFERENCES users(id),
    creator_run_id   INTEGER,
    parent_task_id   INTEGER REFERENCES tasks(id),
    created_at       INTEGER NOT NULL
);
CREATE INDEX tasks_by_collaboration ON tasks(collaboration_id, id);
CREATE INDEX tasks_by_parent ON tasks(parent_task_id, id);
CREATE INDEX tasks_by_creator_run ON tasks(creator_run_id, id);

CREATE TABLE runs (
    id               INTEGER PRIMARY KEY AUTOINCREMENT,
    task_id          INTEGER NOT NULL REFERENCES tasks(id),
    collaboration_id INTEGER NOT NULL,
    organization_id  INTEGER NOT NULL,
    state            TEXT NOT NULL CHECK (state IN ('pending', 'admitted', 'running', 'completed', 'failed', 'rejected')),
    reason           TEXT,
    digest           TEXT,
    has_result       BOOLEAN NOT NULL DEFAULT FALSE,
    created_at       INTEGER NOT NULL,
    admitted_at      INTEGER,
    started_at       INTEGER,
    finished_at      INTEGER,
    acked_at         INTEGER,
    UNIQUE (task_id, organization_id),
    FOREIGN KEY (collaboration_id, organization_id)
        REFERENCES collaboration_members(collaboration_id, organization_id)
);
CREATE INDEX runs_by_node ON runs(collaboration_id, organization_id, id);

CREATE TABLE run_inputs (
    run_id  INTEGER PRIMARY KEY REFERENCES runs(id),
    input   BLOB NOT NULL
);

CREATE TABLE results (
    run_id      INTEGER PRIMARY KEY REFERENCES runs(id),
    data        BLOB NOT NULL,
    created_at  INTEGER NOT NULL
);

CREATE TABLE events (
    id               INTEGER PRIMARY KEY AUTOINCREMENT,
    collaboration_id INTEGER NOT NULL,
    organization_id  INTEGER NOT NULL,
    kind             TEXT NOT NULL,
    run_id           INTEGER NOT NULL REFERENCES runs(id),
    created_at       INTEGER NOT NULL
);
CREATE INDEX events_by_node ON events(collaboration_id, organization_id, id);

CREATE TABLE tokens (
    hash        TEXT PRIMARY KEY,
    kind        TEXT NOT NULL CHECK (kind IN ('access', 'refresh', 'node', 'run')),
    user_id     INTEGER REFERENCES users(id),
    node_id     INTEGER REFERENCES nodes(id),
    run_id      INTEGER REFERENCES runs(id),
    family      TEXT,
    consumed    BOOLEAN NOT NULL DEFAULT FALSE,
    expires_at  INTEGER NOT NULL
);
CREATE INDEX tokens_by_family ON tokens(family);
CREATE INDEX tokens_by_expiry ON tokens(expires_at);
