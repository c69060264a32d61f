-- The database the browser tests run against (test/run creates it as a
-- superuser): generated reference data, icpml with a trained model, materialised
-- scores, online feedback, an experiment with results, then dev/setup.sql
-- (Supabase roles, auth.uid(), grants, territories and row-level security).
\set ON_ERROR_STOP 1
SET client_min_messages = warning;
\ir ../../reference/icpml_reference_schema.sql
\ir ../../reference/icpml_generate.sql
SELECT count(*) AS accounts FROM icpml_ref.generate(accounts => 3000, users => 10, interactions => 30000, seed => 7) \gset
CREATE EXTENSION icpml;
SET icpml.nthread = 1;
SELECT version AS model_version FROM icpml.train_icp_model() \gset
SELECT icpml.score_all() AS scored \gset
SELECT icpml.enable_online_feedback() AS feedback \gset
-- an experiment with results: every user gets 5 accounts three times and saves those that truly fit
SELECT name AS experiment FROM icpml.start_experiment('ui-icp-vs-linucb', ARRAY['icp', 'linucb']) \gset
DO $$
DECLARE i int;
BEGIN
  FOR i IN 1..3 LOOP
    INSERT INTO user_interactions (user_id, account_id, interaction_type)
    SELECT u.user_id, r.account_id, 'save'
    FROM sales_users u, icpml.recommend_accounts(u.user_id, 5, seed => i) r
    WHERE (hashtext(u.user_id::text || r.account_id || i) & 1023) / 1024.0
          < icpml_ref.true_fit_probability(r.account_id);
  END LOOP;
END
$$;
SELECT * FROM icpml.process_feedback(as_of => now() + interval '8 days') \gset
SELECT name AS stopped FROM icpml.stop_experiment('ui-icp-vs-linucb') \gset
\ir ../dev/setup.sql
