-- Taking access away. A disabled user cannot log in and holds no working token. Every token
-- carries the generation of its owner (the user's `token_generation`, the node's
-- `key_generation`) at issue time; disabling a user, changing or resetting a password, and
-- rotating a node's API key increase the owner's generation, so every token issued before is
-- refused at its next use, even one a concurrent login or refresh was issuing meanwhile.
-- The revoking transaction also deletes the owner's tokens (indexes below). Existing rows get
-- generation 0 on both sides, so sessions and node tokens alive at the upgrade stay valid.
ALTER TABLE users ADD COLUMN disabled BOOLEAN NOT NULL DEFAULT FALSE;
ALTER TABLE users ADD COLUMN token_generation INTEGER NOT NULL DEFAULT 0;
ALTER TABLE nodes ADD COLUMN key_generation INTEGER NOT NULL DEFAULT 0;
ALTER TABLE tokens ADD COLUMN generation INTEGER NOT NULL DEFAULT 0;
CREATE INDEX tokens_by_user ON tokens(user_id) WHERE user_id IS NOT NULL;
CREATE INDEX tokens_by_node ON tokens(node_id) WHERE node_id IS NOT NULL;
