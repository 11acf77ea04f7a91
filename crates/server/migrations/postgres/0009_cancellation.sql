-- Cancellation (`POST /api/tasks/{id}/cancel`): the task records who cancelled it and when;
-- its runs that had not ended become `cancelled`, a final state.
ALTER TABLE tasks ADD COLUMN cancelled_at BIGINT;
ALTER TABLE tasks ADD COLUMN cancelled_by_user_id BIGINT REFERENCES users(id);
ALTER TABLE tasks ADD COLUMN cancelled_by_username TEXT;
ALTER TABLE runs DROP CONSTRAINT runs_state_check;
ALTER TABLE runs ADD CONSTRAINT runs_state_check CHECK (state IN ('pending', 'admitted',
    'running', 'awaiting_approval', 'awaiting_release', 'completed', 'failed', 'rejected',
    'cancelled'));
