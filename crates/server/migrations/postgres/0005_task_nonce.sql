-- The task nonce: chosen by whoever seals the task's inputs and bound inside each sealed input,
-- so that a node can refuse an input replayed under another task. Null for tasks created
-- before this migration and for tasks created without one (plaintext collaborations).
-- One task per nonce in a collaboration: a replayed creation is refused (409), however the
-- requests race. The index is partial, so any number of tasks may have no nonce.
ALTER TABLE tasks ADD COLUMN nonce TEXT;
CREATE UNIQUE INDEX tasks_by_nonce ON tasks(collaboration_id, nonce) WHERE nonce IS NOT NULL;
