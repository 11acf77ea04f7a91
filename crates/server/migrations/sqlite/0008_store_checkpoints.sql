-- Split views (issue 10): the latest checkpoint of each algorithm store that each node
-- verified, per store name and checkpoint key, relayed to every node. The server cannot forge
-- one (every node verifies the note under the key it pins), only withhold them.
CREATE TABLE store_checkpoints (
    store       TEXT NOT NULL,
    note_key    TEXT NOT NULL,
    node_id     INTEGER NOT NULL REFERENCES nodes(id),
    size        INTEGER NOT NULL,
    checkpoint  TEXT NOT NULL,
    updated_at  INTEGER NOT NULL,
    PRIMARY KEY (store, note_key, node_id)
);
