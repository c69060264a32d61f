-- Runs once when the container's database is created (the official image's
-- entrypoint runs /docker-entrypoint-initdb.d/*.sql in POSTGRES_DB).
-- pg_cron can only be created in cron.database_name (default 'postgres'); in another
-- database icpml works without it and schedule_retraining() says what to do.
DO $$
BEGIN
  IF current_database() = current_setting('cron.database_name', true) THEN
    CREATE EXTENSION IF NOT EXISTS pg_cron;
  ELSE
    RAISE NOTICE 'pg_cron not created: it lives in database "%" (cron.database_name)',
      current_setting('cron.database_name', true);
  END IF;
END
$$;
CREATE EXTENSION IF NOT EXISTS icpml;
