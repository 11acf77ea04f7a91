-- The user on whose behalf a task runs: its creator, or for a subtask created by a run the
-- creator of the root task of the chain. Set once at insertion (a subtask copies its parent's
-- values), id and name both (user names never change), so that listing tasks reads no other
-- table and never walks parents.
ALTER TABLE tasks ADD COLUMN requester_user_id INTEGER REFERENCES users(id);
ALTER TABLE tasks ADD COLUMN requester_username TEXT;

WITH RECURSIVE chain(id, root_user) AS (
    SELECT id, creator_user_id FROM tasks WHERE creator_user_id IS NOT NULL
    UNION ALL
    SELECT tasks.id, chain.root_user FROM tasks JOIN chain ON tasks.parent_task_id = chain.id
    WHERE tasks.creator_user_id IS NULL
)
UPDATE tasks SET requester_user_id = (SELECT root_user FROM chain WHERE chain.id = tasks.id);

UPDATE tasks SET requester_username = (SELECT username FROM users WHERE users.id = tasks.requester_user_id)
WHERE requester_user_id IS NOT NULL;
