-- Reserved for the lead's migration 0004, developed on another branch.
-- When that branch is merged, its 0004 file replaces this one (delete this
-- file; LoadMigrations refuses two files numbered 0004). It does nothing.
SELECT 1;
