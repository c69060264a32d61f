-- Experiments between ICP model versions (#13 item 3): a variant names a
-- model version; its users get the candidates and the scores of that
-- version's materialised scores (icpml.version_scores), the others the
-- deployed model's; promote_variant() deploys the winner's version.
\set VERBOSITY default
SET client_min_messages = warning;
\i sql/include/reference_generator.sql
SELECT count(*) > 0 AS generated
FROM icpml_ref.generate(accounts => 1500, users => 4, interactions => 300, seed => 11,
                        as_of => '2026-01-01 00:00+00');
RESET client_min_messages;
SET icpml.nthread = 1;
TRUNCATE icpml.recommendations, icpml.bandit_state, icpml.account_feedback, icpml.feedback_events;
DELETE FROM icpml.experiments;
UPDATE icpml.bandit_settings SET default_policy = 'linucb', affinity_share = 0, fresh_share = 0,
                                 explore_share = 0.1;

-- the champion (deployed) and a challenger trained differently; their
-- probabilities differ, so do their top accounts
CREATE TEMP TABLE v AS
SELECT (SELECT version FROM icpml.train_icp_model(folds => 3, n_rounds => 30, deploy => 'always')) AS champion,
       (SELECT version FROM icpml.train_icp_model(folds => 3, n_rounds => 4, deploy => 'never',
                                                  params => '{"max_depth": 2, "eta": 0.5}')) AS challenger,
       (SELECT version FROM icpml.train_icp_model(folds => 3, n_rounds => 4, deploy => 'never')) AS unscored;
SELECT icpml.score_all() > 0 AS served_set;
SELECT icpml.score_all(version => (SELECT challenger FROM v)) > 0 AS challenger_set;
SELECT count(*) FILTER (WHERE c.probability <> s.probability) > 0 AS probabilities_differ
FROM icpml.account_scores AS s JOIN icpml.version_scores AS c USING (account_id)
WHERE c.model_version = (SELECT challenger FROM v);

-- bad input: a version that does not exist, one with no materialised
-- scores, the wrong number of versions
\set VERBOSITY terse
SELECT * FROM icpml.start_experiment('models', ARRAY['champion', 'challenger'], policies => ARRAY['icp', 'icp'],
                                     model_versions => ARRAY[NULL, 999]);
SELECT * FROM icpml.start_experiment('models', ARRAY['champion', 'challenger'], policies => ARRAY['icp', 'icp'],
                                     model_versions => ARRAY[NULL, (SELECT unscored FROM v)]);
SELECT * FROM icpml.start_experiment('models', ARRAY['champion', 'challenger'], policies => ARRAY['icp', 'icp'],
                                     model_versions => ARRAY[(SELECT challenger FROM v)]);
\set VERBOSITY default

-- champion (the deployed model: NULL) against the challenger, both ranking
-- by the ICP probability
SELECT name, variants, policies, model_versions = ARRAY[NULL, (SELECT challenger FROM v)] AS versions_stored
FROM icpml.start_experiment('models', ARRAY['champion', 'challenger'], policies => ARRAY['icp', 'icp'],
                            model_versions => ARRAY[NULL, (SELECT challenger FROM v)]);
-- users without history in each variant (no exclusions: every account may come)
CREATE TEMP TABLE u AS
SELECT DISTINCT ON (variant) variant, user_id
FROM (SELECT g, md5('fresh' || g)::uuid AS user_id, icpml.experiment_variant('models', md5('fresh' || g)::uuid) AS variant
      FROM generate_series(1, 40) g) AS x
WHERE variant <> 'holdout'
ORDER BY variant, g;
SELECT variant FROM u ORDER BY 1;

-- candidates from the variant's version: the icp source is exactly the top
-- of that version's scores, and every candidate carries its probability
CREATE TEMP TABLE cand AS
SELECT u.variant, c.*
FROM u, LATERAL icpml.retrieve_candidates(u.user_id, 100, seed => 1) AS c;
SELECT c.variant, c.source, count(*) AS candidates,
       bool_and(c.probability = CASE WHEN c.variant = 'challenger' THEN vs.probability ELSE s.probability END)
         AS probability_of_its_version
FROM cand AS c
JOIN icpml.account_scores AS s USING (account_id)
LEFT JOIN icpml.version_scores AS vs ON vs.account_id = c.account_id AND vs.model_version = (SELECT challenger FROM v)
GROUP BY 1, 2 ORDER BY 1, 2;
WITH top_c AS (
  SELECT account_id FROM icpml.version_scores WHERE model_version = (SELECT challenger FROM v)
  ORDER BY probability DESC, account_id LIMIT (SELECT count(*) FROM cand WHERE variant = 'challenger' AND source = 'icp')
), top_s AS (
  SELECT account_id FROM icpml.account_scores
  ORDER BY probability DESC, account_id LIMIT (SELECT count(*) FROM cand WHERE variant = 'champion' AND source = 'icp')
)
SELECT (SELECT array_agg(account_id ORDER BY account_id) FROM cand WHERE variant = 'challenger' AND source = 'icp')
         = (SELECT array_agg(account_id ORDER BY account_id) FROM top_c) AS challenger_top_of_its_version,
       (SELECT array_agg(account_id ORDER BY account_id) FROM cand WHERE variant = 'champion' AND source = 'icp')
         = (SELECT array_agg(account_id ORDER BY account_id) FROM top_s) AS champion_top_of_deployed,
       (SELECT array_agg(account_id ORDER BY account_id) FROM top_c)
         <> (SELECT array_agg(account_id ORDER BY account_id) FROM top_s) AS the_tops_differ;

-- served lists: each row's ICP score and priority are its version's, the
-- reason names the challenger's version
CREATE TEMP TABLE served AS
SELECT u.variant, l.*
FROM u, LATERAL icpml.recommend_accounts(u.user_id, 10, seed => 2) AS l;
SELECT l.variant, count(*) AS listed,
       bool_and(l.icp_score = CASE WHEN l.variant = 'challenger' THEN vs.score ELSE s.score END) AS score_of_its_version,
       bool_and(l.priority = CASE WHEN l.variant = 'challenger' THEN vs.priority ELSE s.priority END) AS priority_of_its_version,
       bool_and(COALESCE((l.reason->>'model_version')::int, 0)
                = CASE WHEN l.variant = 'challenger' THEN (SELECT challenger FROM v) ELSE 0 END) AS reason_names_version,
       bool_and(r.variant = l.variant) AS logged_variant
FROM served AS l
JOIN icpml.recommendations AS r ON r.recommendation_id = l.recommendation_id
JOIN icpml.account_scores AS s ON s.account_id = l.account_id
LEFT JOIN icpml.version_scores AS vs ON vs.account_id = l.account_id AND vs.model_version = (SELECT challenger FROM v)
GROUP BY 1 ORDER BY 1;

-- a challenger whose materialised scores were dropped is an error for its
-- users, not a silent switch to the deployed model's scores
BEGIN;
SELECT icpml.drop_version_scores((SELECT challenger FROM v)) > 0 AS dropped;
\set VERBOSITY terse
SELECT count(*) FROM icpml.recommend_accounts((SELECT user_id FROM u WHERE variant = 'challenger'), 3);
\set VERBOSITY default
ROLLBACK;

-- promote the challenger: its version is deployed and its materialised
-- scores become the served set at once; the experiment stops
SELECT name, status, promoted FROM icpml.promote_variant('models', 'challenger');
SELECT version = (SELECT challenger FROM v) AS challenger_deployed, reason
FROM icpml.deployments ORDER BY id DESC LIMIT 1;
SELECT bool_and(s.model_version = (SELECT challenger FROM v)) AS served_set_is_challenger,
       (SELECT count(*) FROM icpml.version_scores WHERE model_version = (SELECT challenger FROM v))
         AS challenger_rows_left
FROM icpml.account_scores AS s;
SELECT default_policy FROM icpml.bandit_settings;

UPDATE icpml.bandit_settings SET default_policy = 'linucb', affinity_share = DEFAULT, fresh_share = DEFAULT,
                                 explore_share = DEFAULT;
DELETE FROM icpml.experiments;
TRUNCATE icpml.recommendations, icpml.bandit_state, icpml.account_feedback, icpml.feedback_events;
