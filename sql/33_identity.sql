-- The identity check of recommend_accounts fails closed.  A caller that is
-- not an icpml administrator (superuser, the extension owner, a member of
-- service_role or icpml_admin) gets recommendations only for the user id
-- its JWT names: request.jwt.claims must be a JSON object whose "sub" is a
-- string equal to user_id (request.jwt.claim.sub, PostgREST's older form,
-- counts when request.jwt.claims is unset or empty).  Every other shape is
-- refused before anything is read or logged.  On icpml 0.3.0 the claims
-- without a string "sub" (missing, null, an array) served and logged
-- another user's list.
\set VERBOSITY terse
\i sql/include/reference_generator.sql
TRUNCATE icpml.recommendations, icpml.bandit_state, icpml.account_feedback, icpml.account_scores;
SELECT sum(row_count) > 0 AS generated
FROM icpml_ref.generate(accounts => 200, users => 2, interactions => 400, seed => 5,
                        as_of => '2026-01-01 00:00+00');
SELECT icpml.score_all() > 0 AS scored;

CREATE ROLE icpml_id_rep;
SELECT icpml.grant_scoring('icpml_id_rep');
GRANT SELECT ON account_signals, research_runs, account_features, user_interactions TO icpml_id_rep;

-- one call per shape: 'served' or the error, and how many rows were logged
CREATE FUNCTION pg_temp.try(claims text, claim_sub text DEFAULT NULL,
                            user_id uuid DEFAULT '00000000-0000-0000-0000-00000000000a')
RETURNS text LANGUAGE plpgsql AS $$
DECLARE
  n bigint;
  before bigint := (SELECT count(*) FROM icpml.recommendations);
BEGIN
  PERFORM set_config('request.jwt.claims', coalesce(claims, ''), true);
  PERFORM set_config('request.jwt.claim.sub', coalesce(claim_sub, ''), true);
  EXECUTE 'SET LOCAL ROLE icpml_id_rep';
  SELECT count(*) INTO n FROM icpml.recommend_accounts(user_id, 3, seed => 1);
  EXECUTE 'RESET ROLE';
  RETURN format('served %s, logged %s', n, (SELECT count(*) FROM icpml.recommendations) - before);
EXCEPTION WHEN OTHERS THEN
  RETURN SQLERRM;
END
$$;

SELECT shape, pg_temp.try(claims, claim_sub) AS outcome
FROM (VALUES
  ('no claims at all',              NULL, NULL),
  ('empty claims',                  '', NULL),
  ('not JSON',                      '{sub: 00000000', NULL),
  ('JSON null',                     'null', NULL),
  ('a JSON string',                 '"00000000-0000-0000-0000-00000000000a"', NULL),
  ('a JSON array',                  '["00000000-0000-0000-0000-00000000000a"]', NULL),
  ('an object without sub',         '{"role": "authenticated"}', NULL),
  ('sub is null',                   '{"sub": null, "role": "authenticated"}', NULL),
  ('sub is a number',               '{"sub": 10}', NULL),
  ('sub is an array',               '{"sub": ["00000000-0000-0000-0000-00000000000a"]}', NULL),
  ('sub is an object',              '{"sub": {"id": "00000000-0000-0000-0000-00000000000a"}}', NULL),
  ('sub is true',                   '{"sub": true}', NULL),
  ('sub is empty',                  '{"sub": ""}', NULL),
  ('sub is another user',           '{"sub": "00000000-0000-0000-0000-00000000000b"}', NULL),
  ('sub is not a uuid',             '{"sub": "alice"}', NULL),
  ('malformed claims, good claim.sub', '{"sub":', '00000000-0000-0000-0000-00000000000a'),
  ('claim.sub of another user',     NULL, '00000000-0000-0000-0000-00000000000b'),
  ('sub is the user',               '{"sub": "00000000-0000-0000-0000-00000000000a", "role": "authenticated"}', NULL),
  ('sub is the user, upper case',   '{"sub": "00000000-0000-0000-0000-00000000000A"}', NULL),
  ('claim.sub is the user',         NULL, '00000000-0000-0000-0000-00000000000a'),
  ('claims and claim.sub disagree', '{"sub": "00000000-0000-0000-0000-00000000000b"}', '00000000-0000-0000-0000-00000000000a')
) AS t(shape, claims, claim_sub);

-- administrators may ask for anyone, with any claims or none
SELECT count(*) AS served_to_superuser
FROM icpml.recommend_accounts('00000000-0000-0000-0000-00000000000b', 3, seed => 1);
SET request.jwt.claims = '{"sub": null}';
SELECT count(*) AS served_to_superuser_with_odd_claims
FROM icpml.recommend_accounts('00000000-0000-0000-0000-00000000000b', 3, seed => 1);
RESET request.jwt.claims;
CREATE ROLE icpml_id_admin;
SELECT icpml.grant_admin('icpml_id_admin');
GRANT SELECT ON account_signals, research_runs, account_features, user_interactions TO icpml_id_admin;
SET ROLE icpml_id_admin;
SET request.jwt.claims = '{"sub": "00000000-0000-0000-0000-00000000000a"}';
SELECT count(*) AS served_to_icpml_admin_member
FROM icpml.recommend_accounts('00000000-0000-0000-0000-00000000000b', 3, seed => 1);
RESET request.jwt.claims;
RESET ROLE;

SET client_min_messages = warning;
REVOKE ALL ON account_signals, research_runs, account_features, user_interactions FROM icpml_id_rep, icpml_id_admin;
REVOKE ALL ON ALL TABLES IN SCHEMA icpml FROM icpml_id_admin;
REVOKE ALL ON ALL SEQUENCES IN SCHEMA icpml FROM icpml_id_admin;
REVOKE ALL ON ALL ROUTINES IN SCHEMA icpml FROM icpml_id_rep, icpml_id_admin;
REVOKE ALL ON SCHEMA icpml FROM icpml_id_rep, icpml_id_admin;
DROP ROLE icpml_id_rep, icpml_id_admin;
TRUNCATE icpml.recommendations, icpml.bandit_state, icpml.account_feedback, icpml.account_scores;
UPDATE icpml.bandit_settings SET industries = NULL, technologies = NULL;
DROP SCHEMA icpml_ref CASCADE;
DROP VIEW account_features;
DROP TABLE user_interactions, research_runs, sales_users, account_signals CASCADE;
RESET client_min_messages;
