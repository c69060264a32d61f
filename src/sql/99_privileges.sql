-- ---------------------------------------------------------------------------
-- Privileges (kept last: it covers every object above)
--
--   PUBLIC          nothing
--   anon            nothing
--   authenticated   USAGE on the schema, EXECUTE on scoring and recommend_accounts
--   service_role    everything (administration, training, internal tables)
--   icpml_admin     everything: its members are icpml's administrators
--                   (icpml.grant_admin() makes a role one)
--   icpml_jobs      an administrator that is not a superuser: pg_cron jobs
--                   that schedule_retraining() and schedule_maintenance()
--                   create run as it
--
-- Roles that do not exist (plain PostgreSQL) are skipped; grant the same to
-- your own roles with icpml.grant_scoring(role) and icpml.grant_admin(role).
-- Every table has row-level security enabled, with one policy for
-- icpml_admin: a table granted by mistake to anyone else shows no rows.  The
-- extension owner (icpml's C code) bypasses it; so do superusers and
-- BYPASSRLS roles such as Supabase's service_role.  docs/security.md.
-- ---------------------------------------------------------------------------

REVOKE ALL ON ALL ROUTINES IN SCHEMA icpml FROM PUBLIC;
REVOKE ALL ON ALL TABLES IN SCHEMA icpml FROM PUBLIC;
REVOKE ALL ON SCHEMA icpml FROM PUBLIC;

-- icpml's roles are cluster-wide: created by the first database that
-- installs icpml, kept by DROP EXTENSION.
DO $$
BEGIN
  IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles AS r WHERE r.rolname OPERATOR(pg_catalog.=) 'icpml_admin') THEN
    CREATE ROLE icpml_admin NOLOGIN;
    COMMENT ON ROLE icpml_admin IS 'icpml administrators: its members may train, deploy, schedule and read icpml''s tables (icpml.grant_admin())';
  END IF;
  IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles AS r WHERE r.rolname OPERATOR(pg_catalog.=) 'icpml_jobs') THEN
    -- LOGIN: pg_cron connects as the job's role (no password: see docs/security.md)
    CREATE ROLE icpml_jobs LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS;
    COMMENT ON ROLE icpml_jobs IS 'The role icpml''s pg_cron jobs run as: an icpml administrator, not a superuser';
  END IF;
END
$$;

-- Administrators that inherit icpml_admin's privileges (and superusers)
-- may raise the resource settings for their session; for a role without
-- INHERIT (Supabase's service_role) a superuser grants SET on them itself.
GRANT SET ON PARAMETER icpml.nthread, icpml.max_batch_size TO icpml_admin;
-- The relations icpml reads on a caller's behalf are chosen by
-- administrators, not by the caller: recommend_accounts checks which
-- accounts a caller may see by reading icpml.feature_relation's key as the
-- caller, so a caller that pointed it at a table of its own would "see"
-- every account (docs/security.md).
GRANT SET ON PARAMETER icpml.feature_relation, icpml.feature_key, icpml.interactions_relation TO icpml_admin;

-- Scoring entry points: the set grant_scoring() hands out.
CREATE FUNCTION icpml.grant_scoring(role_name name)
RETURNS void
LANGUAGE plpgsql VOLATILE STRICT
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
  IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles AS r WHERE r.rolname OPERATOR(pg_catalog.=) role_name) THEN
    RAISE EXCEPTION 'role "%" does not exist', role_name
      USING ERRCODE = 'undefined_object',
            HINT = 'Create the role first, or check its spelling.';
  END IF;
  EXECUTE pg_catalog.format('GRANT USAGE ON SCHEMA icpml TO %I', role_name);
  EXECUTE pg_catalog.format('GRANT EXECUTE ON FUNCTION icpml.icp_score(bigint), icpml.icp_score_batch(bigint[]),'
                            ' icpml.explain_icp_score(bigint), icpml.prewarm(), icpml.xgboost_version(),'
                            ' icpml.recommend_accounts(uuid, integer, text, integer, bigint) TO %I', role_name);
END
$$;
REVOKE ALL ON FUNCTION icpml.grant_scoring(name) FROM PUBLIC;

COMMENT ON FUNCTION icpml.grant_scoring(name) IS
  'Let a role score accounts (USAGE on icpml, EXECUTE on the scoring functions); nothing else';

-- Full administration for a role: every function and internal table, and
-- membership in icpml_admin (what makes it an administrator: row-level
-- security policies, the identity check of recommend_accounts, the
-- resource settings).
CREATE FUNCTION icpml.grant_admin(role_name name)
RETURNS void
LANGUAGE plpgsql VOLATILE STRICT
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
  IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles AS r WHERE r.rolname OPERATOR(pg_catalog.=) role_name) THEN
    RAISE EXCEPTION 'role "%" does not exist', role_name
      USING ERRCODE = 'undefined_object',
            HINT = 'Create the role first, or check its spelling.';
  END IF;
  EXECUTE pg_catalog.format('GRANT USAGE ON SCHEMA icpml TO %I', role_name);
  EXECUTE pg_catalog.format('GRANT EXECUTE ON ALL ROUTINES IN SCHEMA icpml TO %I', role_name);
  EXECUTE pg_catalog.format('GRANT ALL ON ALL TABLES IN SCHEMA icpml TO %I', role_name);
  EXECUTE pg_catalog.format('GRANT ALL ON ALL SEQUENCES IN SCHEMA icpml TO %I', role_name);
  IF role_name OPERATOR(pg_catalog.<>) 'icpml_admin' THEN
    IF pg_catalog.pg_has_role('icpml_admin', 'MEMBER WITH ADMIN OPTION') THEN
      EXECUTE pg_catalog.format('GRANT icpml_admin TO %I', role_name);
    ELSE
      RAISE NOTICE 'role "%" was granted icpml''s objects but not membership in icpml_admin', role_name
        USING HINT = 'A superuser runs: GRANT icpml_admin TO ' OPERATOR(pg_catalog.||) pg_catalog.quote_ident(role_name) OPERATOR(pg_catalog.||) ';';
    END IF;
  END IF;
END
$$;
REVOKE ALL ON FUNCTION icpml.grant_admin(name) FROM PUBLIC;

COMMENT ON FUNCTION icpml.grant_admin(name) IS
  'Let a role administer icpml (training, deploys, configuration, internal tables): every privilege and membership in icpml_admin';

-- Row-level security on every table: administrators see and write every
-- row, anyone else who was granted a table by mistake sees none.
ALTER TABLE icpml.rule_weights ENABLE ROW LEVEL SECURITY;
ALTER TABLE icpml.rule_settings ENABLE ROW LEVEL SECURITY;
ALTER TABLE icpml.health_settings ENABLE ROW LEVEL SECURITY;
ALTER TABLE icpml.models ENABLE ROW LEVEL SECURITY;
ALTER TABLE icpml.deployments ENABLE ROW LEVEL SECURITY;
ALTER TABLE icpml.training_runs ENABLE ROW LEVEL SECURITY;
ALTER TABLE icpml.account_scores ENABLE ROW LEVEL SECURITY;
ALTER TABLE icpml.version_scores ENABLE ROW LEVEL SECURITY;
ALTER TABLE icpml.score_runs ENABLE ROW LEVEL SECURITY;
ALTER TABLE icpml.score_queue ENABLE ROW LEVEL SECURITY;
ALTER TABLE icpml.bandit_settings ENABLE ROW LEVEL SECURITY;
ALTER TABLE icpml.reward_map ENABLE ROW LEVEL SECURITY;
ALTER TABLE icpml.bandit_state ENABLE ROW LEVEL SECURITY;
ALTER TABLE icpml.account_feedback ENABLE ROW LEVEL SECURITY;
ALTER TABLE icpml.recommendations ENABLE ROW LEVEL SECURITY;
ALTER TABLE icpml.experiments ENABLE ROW LEVEL SECURITY;
ALTER TABLE icpml.feedback_events ENABLE ROW LEVEL SECURITY;
ALTER TABLE icpml.bandit_queue ENABLE ROW LEVEL SECURITY;
ALTER TABLE icpml.account_candidates ENABLE ROW LEVEL SECURITY;
ALTER TABLE icpml.user_profiles ENABLE ROW LEVEL SECURITY;
ALTER TABLE icpml.maintenance_runs ENABLE ROW LEVEL SECURITY;
ALTER TABLE icpml.candidate_log_settings ENABLE ROW LEVEL SECURITY;
ALTER TABLE icpml.recommendation_candidates ENABLE ROW LEVEL SECURITY;
CREATE POLICY administrators ON icpml.rule_weights TO icpml_admin USING (true) WITH CHECK (true);
CREATE POLICY administrators ON icpml.rule_settings TO icpml_admin USING (true) WITH CHECK (true);
CREATE POLICY administrators ON icpml.health_settings TO icpml_admin USING (true) WITH CHECK (true);
CREATE POLICY administrators ON icpml.models TO icpml_admin USING (true) WITH CHECK (true);
CREATE POLICY administrators ON icpml.deployments TO icpml_admin USING (true) WITH CHECK (true);
CREATE POLICY administrators ON icpml.training_runs TO icpml_admin USING (true) WITH CHECK (true);
CREATE POLICY administrators ON icpml.account_scores TO icpml_admin USING (true) WITH CHECK (true);
CREATE POLICY administrators ON icpml.version_scores TO icpml_admin USING (true) WITH CHECK (true);
CREATE POLICY administrators ON icpml.score_runs TO icpml_admin USING (true) WITH CHECK (true);
CREATE POLICY administrators ON icpml.score_queue TO icpml_admin USING (true) WITH CHECK (true);
CREATE POLICY administrators ON icpml.bandit_settings TO icpml_admin USING (true) WITH CHECK (true);
CREATE POLICY administrators ON icpml.reward_map TO icpml_admin USING (true) WITH CHECK (true);
CREATE POLICY administrators ON icpml.bandit_state TO icpml_admin USING (true) WITH CHECK (true);
CREATE POLICY administrators ON icpml.account_feedback TO icpml_admin USING (true) WITH CHECK (true);
CREATE POLICY administrators ON icpml.recommendations TO icpml_admin USING (true) WITH CHECK (true);
CREATE POLICY administrators ON icpml.experiments TO icpml_admin USING (true) WITH CHECK (true);
CREATE POLICY administrators ON icpml.feedback_events TO icpml_admin USING (true) WITH CHECK (true);
CREATE POLICY administrators ON icpml.bandit_queue TO icpml_admin USING (true) WITH CHECK (true);
CREATE POLICY administrators ON icpml.account_candidates TO icpml_admin USING (true) WITH CHECK (true);
CREATE POLICY administrators ON icpml.user_profiles TO icpml_admin USING (true) WITH CHECK (true);
CREATE POLICY administrators ON icpml.maintenance_runs TO icpml_admin USING (true) WITH CHECK (true);
CREATE POLICY administrators ON icpml.candidate_log_settings TO icpml_admin USING (true) WITH CHECK (true);
CREATE POLICY administrators ON icpml.recommendation_candidates TO icpml_admin USING (true) WITH CHECK (true);

-- Supabase's roles when present, then icpml's own (in this order: an
-- update appends the same grants in the same order to existing objects).
DO $$
BEGIN
  IF EXISTS (SELECT FROM pg_catalog.pg_roles AS r WHERE r.rolname OPERATOR(pg_catalog.=) 'authenticated') THEN
    PERFORM icpml.grant_scoring('authenticated');
  END IF;
  IF EXISTS (SELECT FROM pg_catalog.pg_roles AS r WHERE r.rolname OPERATOR(pg_catalog.=) 'service_role') THEN
    PERFORM icpml.grant_admin('service_role');
  END IF;
END
$$;
SELECT icpml.grant_admin('icpml_admin');
SELECT icpml.grant_admin('icpml_jobs');
