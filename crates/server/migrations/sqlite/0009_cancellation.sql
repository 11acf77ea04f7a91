-- Cancellation (`POST /api/tasks/{id}/cancel`): the task records who cancelled it and when;
-- its runs that had not ended become `cancelled`, a final state. SQLite cannot change a CHECK
-- constraint in place, so the runs table is rebuilt as migration 0006 did (foreign key checks
-- deferred to the commit, the rows put back, the id sequence kept).
ALTER TABLE tasks ADD COLUMN cancelled_at INTEGER;
ALTER TABLE tasks ADD COLUMN cancelled_by_user_id INTEGER REFERENCES users(id);
ALTER TABLE tasks ADD COLUMN cancelled_by_username TEXT;
PRAGMA defer_foreign_keys = ON;
CREATE TEMP TABLE runs_kept AS SELECT id, task_id, collaboration_id, organization_id, state,
    reason, digest, has_result, created_at, admitted_at, started_at, finished_at, acked_at
    FROM runs;
CREATE TEMP TABLE runs_seq_kept AS SELECT seq FROM sqlite_sequence WHERE name = 'runs';
CREATE TABLE runs_new (
    id               INTEGER PRIMARY KEY AUTOINCREMENT,
    task_id          INTEGER NOT NULL REFERENCES tasks(id),
    collaboration_id INTEGER NOT NULL,
    organization_id  INTEGER NOT NULL,
    state            TEXT NOT NULL CHECK (state IN ('pending', 'admitted', 'running',
                         'awaiting_approval', 'awaiting_release', 'completed', 'failed',
                         'rejected', 'cancelled')),
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
DROP TABLE runs;
ALTER TABLE runs_new RENAME TO runs;
INSERT INTO runs (id, task_id, collaboration_id, organization_id, state, reason, digest,
                  has_result, created_at, admitted_at, started_at, finished_at, acked_at)
    SELECT id, task_id, collaboration_id, organization_id, state, reason, digest, has_result,
           created_at, admitted_at, started_at, finished_at, acked_at FROM runs_kept;
-- Run ids are never reused: the new table continues the old one's sequence.
DELETE FROM sqlite_sequence WHERE name = 'runs';
INSERT INTO sqlite_sequence (name, seq)
    SELECT 'runs', MAX(seq) FROM (SELECT seq FROM runs_seq_kept UNION ALL SELECT MAX(id) FROM runs)
    HAVING MAX(seq) IS NOT NULL;
CREATE INDEX runs_by_node ON runs(collaboration_id, organization_id, id);
DROP TABLE runs_kept;
DROP TABLE runs_seq_kept;
