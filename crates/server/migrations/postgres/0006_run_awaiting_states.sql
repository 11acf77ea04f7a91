-- The node's airlock (issue 9): a run waits at its node for the data owner's approval of its
-- image digest (`awaiting_approval`) or release of its result (`awaiting_release`).
ALTER TABLE runs DROP CONSTRAINT runs_state_check;
ALTER TABLE runs ADD CONSTRAINT runs_state_check CHECK (state IN ('pending', 'admitted',
    'running', 'awaiting_approval', 'awaiting_release', 'completed', 'failed', 'rejected'));
