-- Indexes for the task list filters that had none: `creator_user_id` (since 0001) and the
-- `organization_id` and `image` filters added with this migration. Each ends in `id` so that a
-- filtered, keyset-paginated page (`WHERE col = $1 AND id < $2 ORDER BY id DESC LIMIT n`) is
-- one index range scan. The organization and collaboration name filters use the UNIQUE
-- indexes of 0001; the collaboration member filter uses `collaboration_members_by_org`.
CREATE INDEX tasks_by_creator_user ON tasks(creator_user_id, id);
CREATE INDEX tasks_by_organization ON tasks(organization_id, id);
CREATE INDEX tasks_by_image ON tasks(image, id);
