-- Shared set-up of the pgTAP files (included with \ir inside their transaction):
-- pgTAP, Supabase's API roles when absent (plain PostgreSQL), then icpml, so
-- the install script's grants to those roles are what the tests see.
SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS pgtap;

DO $$
DECLARE r text;
BEGIN
  FOREACH r IN ARRAY ARRAY['anon', 'authenticated', 'service_role'] LOOP
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = r) THEN
      EXECUTE format('CREATE ROLE %I NOLOGIN', r);
    END IF;
  END LOOP;
END $$;

CREATE EXTENSION icpml;
RESET client_min_messages;
