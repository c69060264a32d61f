-- ---------------------------------------------------------------------------
-- Privileges (kept last: it covers every object above)
--
--   PUBLIC          nothing
--   anon            nothing
--   authenticated   USAGE on the schema, EXECUTE on scoring and recommend_accounts
--   service_role    everything (administration, training, internal tables)
--
-- Roles that do not exist (plain PostgreSQL) are skipped; grant the same to
-- your own roles with icpml.grant_scoring(role).
-- ---------------------------------------------------------------------------

REVOKE ALL ON ALL ROUTINES IN SCHEMA icpml FROM PUBLIC;
REVOKE ALL ON ALL TABLES IN SCHEMA icpml FROM PUBLIC;
REVOKE ALL ON SCHEMA icpml FROM PUBLIC;

-- Scoring entry points: the set grant_scoring() hands out.
CREATE FUNCTION icpml.grant_scoring(role_name name)
RETURNS void
LANGUAGE plpgsql VOLATILE STRICT
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
  IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = role_name) THEN
    RAISE EXCEPTION 'role "%" does not exist', role_name
      USING ERRCODE = 'undefined_object',
            HINT = 'Create the role first, or check its spelling.';
  END IF;
  EXECUTE format('GRANT USAGE ON SCHEMA icpml TO %I', role_name);
  EXECUTE format('GRANT EXECUTE ON FUNCTION icpml.icp_score(bigint), icpml.icp_score_batch(bigint[]),'
                 ' icpml.explain_icp_score(bigint), icpml.prewarm(), icpml.xgboost_version(),'
                 ' icpml.recommend_accounts(uuid, integer, text, integer, bigint) TO %I', role_name);
END
$$;
REVOKE ALL ON FUNCTION icpml.grant_scoring(name) FROM PUBLIC;

COMMENT ON FUNCTION icpml.grant_scoring(name) IS
  'Let a role score accounts (USAGE on icpml, EXECUTE on the scoring functions); nothing else';

-- Full administration for a role: every function and internal table.
CREATE FUNCTION icpml.grant_admin(role_name name)
RETURNS void
LANGUAGE plpgsql VOLATILE STRICT
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
  IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = role_name) THEN
    RAISE EXCEPTION 'role "%" does not exist', role_name
      USING ERRCODE = 'undefined_object',
            HINT = 'Create the role first, or check its spelling.';
  END IF;
  EXECUTE format('GRANT USAGE ON SCHEMA icpml TO %I', role_name);
  EXECUTE format('GRANT EXECUTE ON ALL ROUTINES IN SCHEMA icpml TO %I', role_name);
  EXECUTE format('GRANT ALL ON ALL TABLES IN SCHEMA icpml TO %I', role_name);
  EXECUTE format('GRANT ALL ON ALL SEQUENCES IN SCHEMA icpml TO %I', role_name);
END
$$;
REVOKE ALL ON FUNCTION icpml.grant_admin(name) FROM PUBLIC;

COMMENT ON FUNCTION icpml.grant_admin(name) IS
  'Let a role administer icpml (training, deploys, configuration, internal tables)';

-- Supabase's roles, when present.
DO $$
BEGIN
  IF EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = 'authenticated') THEN
    PERFORM icpml.grant_scoring('authenticated');
  END IF;
  IF EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = 'service_role') THEN
    PERFORM icpml.grant_admin('service_role');
  END IF;
END
$$;
