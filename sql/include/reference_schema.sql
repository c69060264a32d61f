\set ECHO none
-- Regression fixture: the reference Phase 1 schema
-- (reference/icpml_reference_schema.sql: account_signals, research_runs,
-- sales_users, user_interactions, the view account_features), loaded
-- quietly.  A test pulls it with
--   \i sql/include/reference_schema.sql
-- (pg_regress runs psql in the top directory); client_min_messages is as the
-- test had it, and echo is back on (pg_regress runs psql with -a).
SELECT pg_catalog.current_setting('client_min_messages') AS fixture_client_min_messages \gset
SET client_min_messages = warning;
\i reference/icpml_reference_schema.sql
SET client_min_messages = :'fixture_client_min_messages';
\unset fixture_client_min_messages
\set ECHO all
