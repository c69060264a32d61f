-- A caller's search_path never reaches the extension owner's rights.
--
-- icpml switches to the extension owner (a superuser here) to read and
-- write its own tables.  A role that may call icpml and create objects in
-- some schema shadows pg_catalog's operators (=, <>, <, <=, >, >=, +, -, *)
-- and a few functions for every type icpml compares, puts that schema
-- first on its search_path, and calls every entry point that runs anything
-- as the owner, each from a fresh session (cold backend caches).  Every
-- shadowing object checks who runs it: as the caller it just does its job,
-- run as anyone else it raises "hostile ... ran as <role>".  On icpml 0.3.0
-- the owner ran the caller's = (icp_score, icp_score_batch,
-- explain_icp_score, prewarm: the model cache's status = 'deployed'), <>
-- (score_all, rebuild_bandit_state), - * + (recommend_accounts' log), and
-- = (deploy, rollback, undeploy, delete, apply_deploy_policy,
-- train_icp_model, run_training, verify_model, process_feedback,
-- experiment_variant): a superuser's rights for anyone with CREATE on a
-- schema.  Now every statement run as the owner has search_path pinned to
-- pg_catalog, pg_temp and qualified operators, and none of these raise.
\set VERBOSITY terse
SET icpml.nthread = 1;
\i sql/include/reference_generator.sql
SET client_min_messages = warning;
TRUNCATE icpml.models, icpml.deployments, icpml.training_runs, icpml.recommendations,
         icpml.bandit_state, icpml.account_feedback, icpml.account_scores RESTART IDENTITY;
RESET client_min_messages;
SELECT sum(row_count) > 0 AS generated
FROM icpml_ref.generate(accounts => 600, users => 3, interactions => 3000, seed => 11,
                        as_of => '2026-01-01 00:00+00');

-- state for every path to have rows to compare: two models (one deployed),
-- scores, a running experiment, served lists, learned state, online feedback
SELECT version FROM icpml.train_icp_model(n_rounds => 10, folds => 3, deploy => 'always');
SELECT version FROM icpml.train_icp_model(n_rounds => 12, folds => 3, deploy => 'never');
SELECT icpml.score_all() > 0 AS scored;
SET client_min_messages = warning;
SELECT icpml.enable_online_feedback();
RESET client_min_messages;
SELECT name FROM icpml.start_experiment('sp-check', ARRAY['linucb', 'greedy']);
SELECT count(*) AS listed
FROM (SELECT user_id FROM sales_users ORDER BY user_id LIMIT 1) AS u,
     LATERAL icpml.recommend_accounts(u.user_id, 5, seed => 1);
SELECT rewarded + expired >= 0 AS processed FROM icpml.process_feedback(now() + interval '30 days');

-- the attacker: an administrator of icpml (EXECUTE on everything), not a
-- superuser, with its own schema
CREATE ROLE icpml_hostile;
SELECT icpml.grant_admin('icpml_hostile');
GRANT SELECT ON account_signals, research_runs, account_features, sales_users TO icpml_hostile;
GRANT SELECT, INSERT ON user_interactions TO icpml_hostile;
GRANT USAGE ON SEQUENCE user_interactions_interaction_id_seq TO icpml_hostile;
CREATE SCHEMA hostile AUTHORIZATION icpml_hostile;

SET ROLE icpml_hostile;
CREATE FUNCTION hostile.spy(what text) RETURNS void LANGUAGE plpgsql
SET search_path = pg_catalog AS $$
BEGIN
  IF current_user <> 'icpml_hostile' THEN
    RAISE EXCEPTION 'hostile % ran as %', what, current_user;
  ELSIF current_setting('hostile.loud', true) = 'on' THEN
    RAISE NOTICE 'hostile % ran as the caller', what;
  END IF;
END
$$;
-- every binary operator of pg_catalog named like this, on these types
DO $$
DECLARE
  o record;
  n int := 0;
BEGIN
  FOR o IN
    SELECT op.oprname, op.oprleft::regtype AS l, op.oprright::regtype AS r, op.oprresult::regtype AS res
    FROM pg_catalog.pg_operator AS op
    WHERE op.oprnamespace = 'pg_catalog'::regnamespace AND op.oprkind = 'b'
      AND op.oprname IN ('=', '<>', '<', '<=', '>', '>=', '+', '-', '*', '/')
      AND op.oprleft IN ('text'::regtype, 'integer'::regtype, 'bigint'::regtype, 'uuid'::regtype,
                         'timestamp with time zone'::regtype, 'double precision'::regtype,
                         'boolean'::regtype, 'interval'::regtype, 'name'::regtype)
      AND op.oprright IN ('text'::regtype, 'integer'::regtype, 'bigint'::regtype, 'uuid'::regtype,
                          'timestamp with time zone'::regtype, 'double precision'::regtype,
                          'boolean'::regtype, 'interval'::regtype, 'name'::regtype)
  LOOP
    n := n + 1;
    EXECUTE format('CREATE FUNCTION hostile.op%s(%s, %s) RETURNS %s LANGUAGE plpgsql AS $f$ '
                   'BEGIN PERFORM hostile.spy(%L); RETURN $1 OPERATOR(pg_catalog.%s) $2; END $f$',
                   n, o.l, o.r, o.res, format('%s %s %s', o.l, o.oprname, o.r), o.oprname);
    EXECUTE format('CREATE OPERATOR hostile.%s (LEFTARG = %s, RIGHTARG = %s, FUNCTION = hostile.op%s)',
                   o.oprname, o.l, o.r, n);
  END LOOP;
  RAISE NOTICE 'shadowed % operators', n;
END
$$;
CREATE FUNCTION hostile.now() RETURNS timestamptz LANGUAGE plpgsql AS
  $$ BEGIN PERFORM hostile.spy('now()'); RETURN pg_catalog.now(); END $$;
CREATE FUNCTION hostile.cardinality(anyarray) RETURNS integer LANGUAGE plpgsql AS
  $$ BEGIN PERFORM hostile.spy('cardinality()'); RETURN pg_catalog.cardinality($1); END $$;
CREATE FUNCTION hostile.unnest(anyarray) RETURNS SETOF anyelement LANGUAGE plpgsql AS
  $$ BEGIN PERFORM hostile.spy('unnest()'); RETURN QUERY SELECT pg_catalog.unnest($1); END $$;
CREATE FUNCTION hostile.nextval(regclass) RETURNS bigint LANGUAGE plpgsql AS
  $$ BEGIN PERFORM hostile.spy('nextval()'); RETURN pg_catalog.nextval($1); END $$;
CREATE FUNCTION hostile.array_position(anyarray, anyelement) RETURNS integer LANGUAGE plpgsql AS
  $$ BEGIN PERFORM hostile.spy('array_position()'); RETURN pg_catalog.array_position($1, $2); END $$;
CREATE FUNCTION hostile.hashtext(text) RETURNS integer LANGUAGE plpgsql AS
  $$ BEGIN PERFORM hostile.spy('hashtext()'); RETURN pg_catalog.hashtext($1); END $$;
RESET ROLE;

-- each call from a new session, as the attacker, hostile schema first
\set attack 'SET ROLE icpml_hostile; SET search_path = hostile, pg_catalog, public;'
-- (the attacker's own = really is the one its own queries use)
\c -
:attack
SET hostile.loud = on;
SELECT count(*) AS own_operator FROM sales_users WHERE user_id = user_id;
RESET hostile.loud;
\c -
:attack
SELECT model, model_version FROM icpml.icp_score(5);
\c -
:attack
SELECT count(model) AS scored FROM icpml.icp_score_batch(ARRAY[1, 2, 3]);
\c -
:attack
SELECT count(*) > 1 AS explained FROM icpml.explain_icp_score(5);
\c -
:attack
SELECT icpml.prewarm();
\c -
:attack
SELECT icpml.score_all() > 0 AS scored_all;
\c -
:attack
SELECT set_config('request.jwt.claims', json_build_object('sub', user_id)::text, false) IS NOT NULL AS claims
FROM sales_users ORDER BY user_id LIMIT 1;
SELECT count(*) AS listed
FROM (SELECT user_id FROM sales_users ORDER BY user_id LIMIT 1) AS u,
     LATERAL icpml.recommend_accounts(u.user_id, 5, seed => 2);
\c -
:attack
SELECT icpml.experiment_variant('sp-check', '00000000-0000-0000-0000-000000000001') IS NOT NULL AS variant;
\c -
:attack
INSERT INTO user_interactions (user_id, account_id, interaction_type)
SELECT r.user_id, r.account_id, 'contact' FROM icpml.recommendations AS r
WHERE r.status OPERATOR(pg_catalog.=) 'pending' ORDER BY r.recommendation_id LIMIT 1;
\c -
:attack
SELECT rewarded + expired >= 0 AS processed FROM icpml.process_feedback();
\c -
:attack
SELECT icpml.rebuild_bandit_state() >= 0 AS rebuilt;
\c -
:attack
SELECT version, action FROM icpml.deploy_model(version => 2);
\c -
:attack
SELECT version, action FROM icpml.rollback_model();
\c -
:attack
SELECT action FROM icpml.undeploy_model();
\c -
:attack
SELECT deployed FROM icpml.apply_deploy_policy(version => 1, policy => 'always');
\c -
:attack
SELECT icpml.delete_model(version => 2);
\c -
:attack
SELECT n_trees > 0 AS verified FROM icpml.verify_model(rows => 50);
\c -
:attack
SELECT count(*) > 0 AS folds FROM icpml.cv_folds(folds => 3);
\c -
:attack
SELECT version, deployed FROM icpml.train_icp_model(n_rounds => 5, folds => 3, deploy => 'never');
\c -
:attack
CALL icpml.run_training(deploy => 'never', triggered_by => 'manual');
\c -
:attack
SELECT count(*) AS rows FROM icpml.experiment_results('sp-check');
SELECT (icpml.stop_experiment('sp-check')).status;
\c -
:attack
SELECT count(*) AS versions FROM icpml.list_models();
SELECT icpml.describe_model(version => 1) ? 'spec' AS described;
\c -

-- the attacker's objects ran only as the attacker; nothing else changed hands
SELECT status, count(*) FROM icpml.training_runs GROUP BY 1 ORDER BY 1;
SELECT version, status FROM icpml.models ORDER BY version;

SET client_min_messages = warning;
SELECT icpml.disable_online_feedback();
DROP SCHEMA hostile CASCADE;
REVOKE ALL ON ALL TABLES IN SCHEMA icpml FROM icpml_hostile;
REVOKE ALL ON ALL SEQUENCES IN SCHEMA icpml FROM icpml_hostile;
REVOKE ALL ON ALL ROUTINES IN SCHEMA icpml FROM icpml_hostile;
REVOKE ALL ON SCHEMA icpml FROM icpml_hostile;
DROP OWNED BY icpml_hostile;
DROP ROLE icpml_hostile;
TRUNCATE icpml.models, icpml.deployments, icpml.training_runs, icpml.recommendations,
         icpml.bandit_state, icpml.account_feedback, icpml.account_scores RESTART IDENTITY;
DELETE FROM icpml.experiments;
UPDATE icpml.bandit_settings SET industries = NULL, technologies = NULL;
DROP SCHEMA icpml_ref CASCADE;
DROP VIEW account_features;
DROP TABLE user_interactions, research_runs, sales_users, account_signals CASCADE;
RESET client_min_messages;
