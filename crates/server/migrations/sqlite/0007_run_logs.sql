-- Released logs (issue 9): what a run's algorithm printed, sealed at its node for the requester
-- (sealed format v2, kind "logs", bound to the run) when the node's policy releases them
-- (`logs = "release"`). The server never holds them in plaintext.
CREATE TABLE run_logs (
    run_id      INTEGER PRIMARY KEY REFERENCES runs(id),
    data        BLOB NOT NULL,
    created_at  INTEGER NOT NULL
);
