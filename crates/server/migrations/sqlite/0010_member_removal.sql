-- Removing an organization from a collaboration (`DELETE /api/collaborations/{id}/members/{org}`)
-- marks its membership removed instead of deleting the row: runs and nodes reference the
-- membership by foreign key, and their history stays. Unix microseconds; null: a member.
-- Adding the organization again clears it.
ALTER TABLE collaboration_members ADD COLUMN removed_at INTEGER;
