-- Released logs (issue 9): what a run's algorithm printed, sealed at its node for the requester
-- (sealed format v2, kind "logs", bound to the run) when the node's policy releases them
-- (`logs = "release"`). The server never holds them in plaintext.
CREATE TABLE run_logs (
    run_id      BIGINT PRIMARY KEY REFERENCES runs(id),
    data        BYTEA NOT NULL,
    created_at  BIGINT NOT NULL
);
