-- Materialised scores with a deployed model: score_all() writes only what
-- changed (scored_at stays), fills an empty table in bulk, deletes accounts
-- that left; it reads the deployed model's own relation whatever
-- icpml.feature_relation says, and a failure to fill the recommender's
-- vocabulary never fails it; challenger sets (score_all(version => v))
-- and their adoption after a deploy; incremental scoring from the queue
-- that enable_score_queue() feeds.
\set VERBOSITY default
SET client_min_messages = warning;
\i sql/include/reference_generator.sql
SELECT count(*) > 0 AS generated
FROM icpml_ref.generate(accounts => 1500, users => 3, interactions => 300, seed => 36,
                        as_of => '2026-01-01 00:00+00');
RESET client_min_messages;
SET icpml.nthread = 1;
TRUNCATE icpml.account_scores, icpml.score_runs, icpml.score_queue, icpml.version_scores, icpml.account_candidates;
UPDATE icpml.bandit_settings SET industries = NULL, technologies = NULL;

-- no age features (days from a date to now()): scores do not drift between
-- the statements that compare them
SELECT version, deployed FROM icpml.train_icp_model(folds => 3, n_rounds => 30, deploy => 'always',
                                                    exclude_columns => ARRAY['funding_date', 'researched_at']);

-- what a set holds against what icp_score_batch says now
CREATE FUNCTION pg_temp.served_mismatches() RETURNS bigint LANGUAGE sql AS $$
  SELECT count(*) FROM icpml.account_scores a
  FULL JOIN (SELECT * FROM icpml.icp_score_batch(ARRAY(SELECT account_id FROM account_signals))) b
    USING (account_id)
  WHERE (a.score, a.priority, a.probability, a.model, a.model_version)
        IS DISTINCT FROM (b.score, b.priority, b.probability, b.model, b.model_version)
$$;
CREATE FUNCTION pg_temp.last_run() RETURNS TABLE(kind text, target text, set_version integer, model text,
                                                   model_version integer, relation text, rows_read bigint,
                                                   rows_written bigint, rows_deleted bigint)
LANGUAGE sql AS $$
  SELECT kind, target, set_version, model, model_version, relation, rows_read, rows_written, rows_deleted
  FROM icpml.score_runs ORDER BY run_id DESC LIMIT 1
$$;

-- 1. the first fill (an empty table: appended in bulk, the indexes rebuilt)
SELECT icpml.score_all();
SELECT * FROM pg_temp.last_run();
SELECT pg_temp.served_mismatches() AS mismatches;
-- the indexes hold every row: an index scan finds each account
SET enable_seqscan = off;
SET enable_bitmapscan = off;
SELECT count(*) AS found_by_primary_key
FROM generate_series(1, 1500) g WHERE EXISTS (SELECT FROM icpml.account_scores s WHERE s.account_id = g);
SELECT count(*) = 1500 AS found_by_probability
FROM (SELECT account_id FROM icpml.account_scores ORDER BY probability DESC, account_id) x;
RESET enable_seqscan;
RESET enable_bitmapscan;
-- the vocabulary came from the scored relation
SELECT cardinality(industries) > 0 AS industries_filled, cardinality(technologies) > 0 AS technologies_filled
FROM icpml.bandit_settings;
CREATE TEMP TABLE first_fill AS SELECT account_id, scored_at FROM icpml.account_scores;

-- 2. nothing changed: nothing written, scored_at kept
SELECT icpml.score_all();
SELECT * FROM pg_temp.last_run();
SELECT count(*) AS rewritten FROM icpml.account_scores a JOIN first_fill f USING (account_id)
WHERE a.scored_at <> f.scored_at;

-- 3. some accounts change, some go: only those are written or deleted
UPDATE account_signals SET engineering_role_count = 0, has_open_engineering_roles = false,
                           total_open_roles = 0, has_engineering_blog = false
WHERE account_id BETWEEN 1 AND 40;
DELETE FROM user_interactions WHERE account_id > 1490;
DELETE FROM research_runs WHERE account_id > 1490;
DELETE FROM account_signals WHERE account_id > 1490;
CREATE TEMP TABLE before_change AS SELECT * FROM icpml.account_scores;
SELECT icpml.score_all(batch_size => 100);
SELECT kind, rows_read, rows_written BETWEEN 1 AND 40 AS some_written, rows_deleted FROM pg_temp.last_run();
SELECT pg_temp.served_mismatches() AS mismatches;
-- exactly the rows whose score changed have a new scored_at
SELECT count(*) FILTER (WHERE a.probability IS DISTINCT FROM b.probability) > 0 AS some_changed,
       bool_and((a.probability IS DISTINCT FROM b.probability) = (a.scored_at <> b.scored_at)) AS rewritten_iff_changed
FROM icpml.account_scores a JOIN before_change b USING (account_id);

-- 4. a key listed twice is an error (the rules over a relation with a
-- duplicated row here), nothing written
CREATE VIEW dup_view AS SELECT * FROM account_features UNION ALL SELECT * FROM account_features WHERE account_id = 7;
BEGIN;
SELECT action FROM icpml.undeploy_model();
SET LOCAL icpml.feature_relation = 'public.dup_view';
SELECT icpml.score_all();
ROLLBACK;

-- 5. scoring does not depend on the recommender's settings (#14): the
-- model's own relation is read whatever icpml.feature_relation names ...
SET icpml.feature_relation = 'public.no_such_relation';
SELECT icpml.score_all() AS scored_with_the_model_relation;
RESET icpml.feature_relation;
-- ... and a vocabulary that cannot be filled is a warning, the scores are
-- written (here: a role allowed to score but not to set the vocabulary)
CREATE ROLE icpml_test_scorer;
GRANT USAGE ON SCHEMA icpml TO icpml_test_scorer;
GRANT EXECUTE ON FUNCTION icpml.score_all(integer, integer) TO icpml_test_scorer;
GRANT SELECT ON account_features, account_signals, research_runs TO icpml_test_scorer;
UPDATE icpml.bandit_settings SET industries = NULL, technologies = NULL;
TRUNCATE icpml.account_scores;
SET ROLE icpml_test_scorer;
SELECT icpml.score_all() AS scored_by_a_plain_role;
RESET ROLE;
SELECT count(*) AS rows, min(model_version) AS version FROM icpml.account_scores;
SELECT industries IS NULL AND technologies IS NULL AS vocabulary_left_unset FROM icpml.bandit_settings;
SELECT icpml.set_bandit_vocabulary() IS NOT NULL AS vocabulary_set;
REVOKE ALL ON account_features, account_signals, research_runs FROM icpml_test_scorer;
REVOKE ALL ON FUNCTION icpml.score_all(integer, integer) FROM icpml_test_scorer;
REVOKE ALL ON SCHEMA icpml FROM icpml_test_scorer;
DROP ROLE icpml_test_scorer;

-- 6. a challenger set: another version's scores, the served set untouched
SELECT version, deployed FROM icpml.train_icp_model(folds => 3, n_rounds => 10, deploy => 'never',
                                                    exclude_columns => ARRAY['industry', 'funding_date', 'researched_at']);
CREATE TEMP TABLE served_before AS SELECT * FROM icpml.account_scores;
SELECT icpml.score_all(version => 2);
SELECT * FROM pg_temp.last_run();
SELECT count(*) AS served_rows_changed FROM icpml.account_scores a JOIN served_before b USING (account_id)
WHERE (a.*) IS DISTINCT FROM (b.*);
SELECT model_version, count(*), min(score) >= 1 AND max(score) <= 10 AS scores_in_range
FROM icpml.version_scores GROUP BY 1;
-- a version that does not exist
SELECT icpml.score_all(version => 99);
SELECT icpml.score_all(version => 0);

-- 7. incremental scoring: queue triggers on the tables behind the relation
SELECT * FROM icpml.enable_score_queue();
-- again, naming the relation: the triggers are replaced, not doubled
SELECT count(*) AS tables FROM icpml.enable_score_queue('public.account_features', 'account_id');
SELECT tgrelid::regclass AS table_name, tgname FROM pg_trigger
WHERE tgfoid = 'icpml.score_queue_trigger()'::regprocedure ORDER BY 1, 2;
-- a new account, a changed one (through its research), a deleted one
INSERT INTO account_signals (account_id, account_name, industry, engineering_role_count,
                             has_open_engineering_roles, total_open_roles, has_engineering_blog)
VALUES (5001, 'new account', 'saas', 12, true, 40, true);
INSERT INTO research_runs (account_id, company_size, tech_stack, fit_verdict)
VALUES (41, 400, '{postgresql,python,kubernetes}', 'fit');
DELETE FROM user_interactions WHERE account_id = 1400;
DELETE FROM research_runs WHERE account_id = 1400;
DELETE FROM account_signals WHERE account_id = 1400;
SELECT account_id FROM icpml.score_queue ORDER BY 1;
SELECT icpml.score_changed() - 'run_id' AS changed;
SELECT * FROM pg_temp.last_run();
SELECT pg_temp.served_mismatches() AS mismatches;
SELECT count(*) AS challenger_rows_of_new_account FROM icpml.version_scores WHERE account_id = 5001;
SELECT count(*) AS queued FROM icpml.score_queue;
-- the recommender's candidates follow: the new account is there, the
-- deleted one gone, every candidate has the served score
SELECT count(*) FILTER (WHERE account_id = 5001) AS new_candidate,
       count(*) FILTER (WHERE account_id = 1400) AS deleted_candidate,
       bool_and(s.probability = c.probability AND s.score = c.score AND s.priority = c.priority)
         AS same_scores,
       count(*) = (SELECT count(*) FROM icpml.account_scores) AS same_accounts
FROM icpml.account_candidates AS c LEFT JOIN icpml.account_scores AS s USING (account_id);
-- nothing queued: nothing done
SELECT icpml.score_changed() AS nothing;
-- an update that moves nothing still queues; the score is found unchanged
UPDATE account_signals SET account_name = 'renamed' WHERE account_id = 5;
SELECT icpml.score_changed() - 'run_id' AS unchanged;
-- a signal the model does not use (research date) reaches the candidates
-- although no score moved
SELECT min(account_id) AS researched FROM research_runs WHERE account_id > 100 \gset
UPDATE research_runs SET created_at = '2031-01-02'
WHERE ctid = (SELECT ctid FROM research_runs WHERE account_id = :researched ORDER BY created_at DESC LIMIT 1);
SELECT icpml.score_changed() ->> 'written' AS written;
SELECT researched_at::date AS candidate_researched_at FROM icpml.account_candidates WHERE account_id = :researched;
-- max_rows: a large change is taken in parts
UPDATE account_signals SET updated_at = updated_at WHERE account_id <= 30;
SELECT icpml.score_changed(max_rows => 20) - 'run_id' AS first_part;
SELECT icpml.score_changed(max_rows => 20) - 'run_id' AS second_part;
SELECT icpml.score_changed(max_rows => 0);

-- 8. a deploy: score_changed() adopts the challenger set of the new version
-- (no feature read), then drops it
SELECT version, action FROM icpml.deploy_model(version => 2, replace_dataset => true);
SELECT icpml.score_changed() - 'run_id' AS after_deploy;
SELECT * FROM pg_temp.last_run();
SELECT pg_temp.served_mismatches() AS mismatches;
SELECT count(*) AS challenger_rows_left FROM icpml.version_scores;
-- the candidates took the adopted scores, and hold the served accounts only
SELECT count(*) FILTER (WHERE s.account_id IS NULL OR c.account_id IS NULL) AS not_in_both,
       bool_and(c.probability = s.probability AND c.score = s.score) AS adopted_scores
FROM icpml.account_candidates AS c FULL JOIN icpml.account_scores AS s USING (account_id);
-- back to version 1, which has no challenger set: everything is rescored
SELECT version, action FROM icpml.rollback_model();
SELECT icpml.score_changed() - 'run_id' AS after_rollback;
SELECT pg_temp.served_mismatches() AS mismatches;
-- no model: the rules
SELECT action FROM icpml.undeploy_model();
SELECT icpml.score_changed() - 'run_id' AS rules;
SELECT * FROM pg_temp.last_run();
SELECT pg_temp.served_mismatches() AS mismatches;
SELECT version, action FROM icpml.rollback_model();
SELECT icpml.score_changed() ->> 'kind' AS rescored_for_version_1;

-- 9. a challenger set is kept current and dropped with its model
SELECT icpml.score_all(version => 2);
UPDATE account_signals SET engineering_role_count = 25, total_open_roles = 90 WHERE account_id = 5001;
UPDATE research_runs SET company_size = 5000 WHERE account_id BETWEEN 100 AND 120;
SELECT icpml.score_changed() -> 'versions' AS challengers_rescored;
-- what version 2 would score now, deployed for a moment
BEGIN;
SELECT version, action FROM icpml.deploy_model(version => 2, replace_dataset => true);
SELECT count(*) AS challenger_mismatches
FROM icpml.version_scores v
FULL JOIN (SELECT * FROM icpml.icp_score_batch(ARRAY(SELECT account_id FROM account_signals))) b
  USING (account_id)
WHERE (v.score, v.priority, v.probability, v.model_version) IS DISTINCT FROM (b.score, b.priority, b.probability, b.model_version);
ROLLBACK;
SELECT icpml.drop_version_scores(2) > 0 AS dropped;
SELECT count(*) AS challenger_rows FROM icpml.version_scores;

-- 10. TRUNCATE queues every scored account; those gone are deleted
SELECT icpml.score_changed() IS NOT NULL AS drained;
TRUNCATE user_interactions, research_runs, account_signals;
SELECT count(*) > 1000 AS all_queued FROM icpml.score_queue;
SELECT icpml.score_changed(max_rows => 100000) ->> 'deleted' AS deleted;
SELECT count(*) AS served_rows FROM icpml.account_scores;

-- 11. the triggers go
SELECT * FROM icpml.disable_score_queue();
SELECT count(*) AS queue_triggers FROM pg_trigger WHERE tgfoid = 'icpml.score_queue_trigger()'::regprocedure;

SET client_min_messages = warning;
DROP SCHEMA icpml_ref CASCADE;
DROP VIEW dup_view;
DROP VIEW account_features;
DROP TABLE user_interactions, research_runs, sales_users, account_signals CASCADE;
TRUNCATE icpml.models, icpml.deployments, icpml.training_runs RESTART IDENTITY;
TRUNCATE icpml.account_scores, icpml.score_runs, icpml.score_queue, icpml.version_scores, icpml.account_candidates;
UPDATE icpml.bandit_settings SET industries = NULL, technologies = NULL;
RESET client_min_messages;
