-- The user on whose behalf a task runs: its creator, or for a subtask created by a run the
-- creator of the root task of the chain. Set once at insertion (the parent's value is copied),
-- so that reading a task's requesting user name is one primary-key join, never a walk.
ALTER TABLE tasks ADD COLUMN requester_user_id INTEGER REFERENCES users(id);

WITH RECURSIVE chain(id, root_user) AS (
    SELECT id, creator_user_id FROM tasks WHERE creator_user_id IS NOT NULL
    UNION ALL
    SELECT tasks.id, chain.root_user FROM tasks JOIN chain ON tasks.parent_task_id = chain.id
    WHERE tasks.creator_user_id IS NULL
)
UPDATE tasks SET requester_user_id = (SELECT root_user FROM chain WHERE chain.id = tasks.id);
