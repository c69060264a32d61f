-- icpml in a self-hosted Supabase database (docs/supabase-self-hosted.md).
-- Mounted as /docker-entrypoint-initdb.d/migrations/99-icpml.sql: runs once, as the
-- supabase_admin superuser, after Supabase's own roles exist, so CREATE EXTENSION grants
-- scoring and recommend_accounts to authenticated and everything to service_role.
-- For a database that already exists, run it once yourself:
--   docker compose exec db psql -U supabase_admin -d postgres -f /docker-entrypoint-initdb.d/migrations/99-icpml.sql
CREATE EXTENSION IF NOT EXISTS pg_cron;   -- preloaded by supabase/postgres; cron.database_name = 'postgres'
CREATE EXTENSION IF NOT EXISTS icpml;
-- PostgREST caches the schema: let it see icpml's functions now
NOTIFY pgrst, 'reload schema';
