-- icpml demo: what `test/run demo` shows.  Loads generated reference data,
-- scores accounts with the rules, trains and deploys a model, scores again,
-- recommends accounts to a sales user and learns from what the user does,
-- runs an A/B experiment between two policies, watches the model for drift,
-- schedules retraining when it is needed, lists what a backup keeps and
-- exports the model as plain SQL for hosted Supabase.
\set ON_ERROR_STOP 1
\pset footer off
SET client_min_messages = warning;
\set ECHO none

\echo
\echo '== 1. Phase 1 data: the reference schema and 20,000 generated accounts'
\i reference/icpml_reference_schema.sql
\i reference/icpml_generate.sql
SELECT * FROM icpml_ref.generate(accounts => 20000, users => 12, interactions => 150000, seed => 42);
CREATE EXTENSION icpml;
SET icpml.nthread = 1;

\echo
\echo '== 2. Rule-based ICP scores (no model yet): select * from icpml.icp_score(account_id)'
SELECT account_id, score, priority, round(probability::numeric, 3) AS probability, model,
       (SELECT string_agg(format('%s %s', f->>'factor', to_char((f->>'contribution')::numeric, 'SG0.00')), ', ')
        FROM jsonb_array_elements(factors) f) AS top_factors
FROM icpml.icp_score_batch(ARRAY[1, 2, 3, 4, 5, 6, 7, 8]);

\echo
\echo '== 3. The whole table, materialised: icpml.score_all()'
\timing on
SELECT icpml.score_all() AS accounts_scored;
\timing off
SELECT priority, count(*) AS accounts, round(avg(probability)::numeric, 3) AS mean_probability,
       round(avg(icpml_ref.true_fit_probability(account_id))::numeric, 3) AS hidden_true_fit_rate
FROM icpml.account_scores GROUP BY priority ORDER BY min(score) DESC;

\echo
\echo '== 4. Train an XGBoost model: 5-fold stratified CV against the rules on the same folds'
SELECT version, deployed, deploy_reason, n_rows AS labelled_rows,
       round(cv_roc_auc::numeric, 3) AS model_cv_auc, round(rules_cv_roc_auc::numeric, 3) AS rules_cv_auc,
       round(cv_pr_auc::numeric, 3) AS model_pr_auc, round(cv_lift_at_10::numeric, 2) AS lift_top_decile,
       round(seconds::numeric, 1) AS seconds
FROM icpml.train_icp_model();
SELECT feature, round(gain::numeric, 1) AS gain FROM icpml.model_feature_importance() LIMIT 5;

\echo
\echo '== 5. The same accounts, scored by the deployed model (native tree walk, Saabas factors)'
SELECT account_id, score, priority, round(probability::numeric, 3) AS probability, model, model_version,
       (SELECT string_agg(format('%s %s', f->>'factor', to_char((f->>'contribution')::numeric, 'SG0.00')), ', ')
        FROM jsonb_array_elements(factors) f) AS top_factors
FROM icpml.icp_score_batch(ARRAY[1, 2, 3, 4, 5, 6, 7, 8]);
\echo 'exact TreeSHAP on demand (sums to the logit of the probability):'
SELECT feature, value, round(contribution::numeric, 3) AS shap
FROM icpml.explain_icp_score(3) ORDER BY abs(contribution) DESC LIMIT 5;
\echo 'the native evaluator agrees with XGBoost on real rows:'
SELECT n_rows, n_trees, max_abs_margin_diff, max_abs_probability_diff FROM icpml.verify_model();
SELECT icpml.score_all() AS accounts_rescored;
SELECT priority, count(*) AS accounts, round(avg(probability)::numeric, 3) AS mean_probability,
       round(avg(icpml_ref.true_fit_probability(account_id))::numeric, 3) AS hidden_true_fit_rate
FROM icpml.account_scores GROUP BY priority ORDER BY min(score) DESC;
\echo 'each run writes only the rows whose score changed (icpml.score_runs):'
SELECT kind, model, model_version, rows_read, rows_written, rows_deleted
FROM icpml.score_runs ORDER BY run_id DESC LIMIT 3;
\echo 'incremental scoring: triggers queue changed accounts, score_changed() (pg_cron, every minute) rescores them'
SELECT table_name, queued FROM icpml.enable_score_queue();
INSERT INTO account_signals (account_id, account_name, industry, engineering_role_count,
                             has_open_engineering_roles, total_open_roles, has_engineering_blog)
VALUES (20001, 'Newco', 'devtools', 30, true, 60, true);
SELECT icpml.score_changed() - 'run_id' AS score_changed;
SELECT account_id, score, priority, round(probability::numeric, 3) AS probability, model_version
FROM icpml.account_scores WHERE account_id = 20001;

\echo
\echo '== 6. Recommendations for a sales user (LinUCB over ICP fit, intent and the user''s own history)'
SELECT user_id AS demo_user FROM sales_users ORDER BY user_id LIMIT 1 \gset
SELECT icpml.enable_online_feedback() AS feedback_trigger_on;
CREATE TEMP TABLE first_list AS SELECT * FROM icpml.recommend_accounts(:'demo_user', 8, seed => 1);
SELECT l.rank, l.account_id, round(l.ranking_score::numeric, 3) AS ranking_score,
       round(l.exploration::numeric, 3) AS exploration, l.icp_score, l.priority, r.source,
       l.reason->>'summary' AS why
FROM first_list AS l JOIN icpml.recommendations AS r USING (recommendation_id) ORDER BY l.rank;
\echo 'where the candidates came from (icp top, the user''s own segments, fresh accounts, an exploration sample):'
SELECT source, count(*) AS candidates FROM icpml.retrieve_candidates(:'demo_user', seed => 1)
GROUP BY source ORDER BY min(probability) DESC;

\echo
\echo '== 7. The user acts on some of them; the bandit learns (trigger on user_interactions)'
INSERT INTO user_interactions (user_id, account_id, interaction_type)
SELECT r.user_id, r.account_id, CASE WHEN r.rank <= 2 THEN 'meeting' WHEN r.rank <= 4 THEN 'contact' ELSE 'dismiss' END
FROM icpml.recommendations r
WHERE r.user_id = :'demo_user' AND r.status = 'pending';
SELECT status, count(*), round(avg(reward)::numeric, 2) AS mean_reward
FROM icpml.recommendations GROUP BY status ORDER BY status;
SELECT scope, n AS updates, version FROM icpml.bandit_state ORDER BY scope LIMIT 3;
\echo 'the next list (contacted/met accounts are excluded, dismissed ones too):'
CREATE TEMP TABLE next_list AS SELECT * FROM icpml.recommend_accounts(:'demo_user', 8, seed => 2);
SELECT rank, account_id, round(ranking_score::numeric, 3) AS ranking_score, icp_score, priority,
       reason->>'summary' AS why
FROM next_list ORDER BY rank;
\echo 'why the first one: the largest terms of its expected reward (64-entry context: ICP, signals,'
\echo 'intent, fatigue, the user''s history, industry/technology slots, what all users did with it):'
SELECT s->>'signal' AS signal, s->>'value' AS value, s->>'contribution' AS contribution
FROM next_list, jsonb_array_elements(reason->'top_signals') s WHERE rank = 1;
\echo 'a funnel (view, research, contact) on the top account of a rank-by-ICP list, listed again after'
\echo 'the view (re-shows allowed here: exclude_recent = 0; by default an account the user works on is'
\echo 'not listed again): the impression the funnel started from takes the best interaction''s reward and'
\echo 'still counts once in the bandit (later ones change b only); the re-show is not credited'
UPDATE icpml.bandit_settings SET exclude_recent = '0';
CREATE TEMP TABLE icp_list AS SELECT * FROM icpml.recommend_accounts(:'demo_user', 3, policy => 'icp');
INSERT INTO user_interactions (user_id, account_id, interaction_type)
SELECT :'demo_user', account_id, 'view' FROM icp_list WHERE rank = 1;
SELECT count(*) AS listed_again FROM icpml.recommend_accounts(:'demo_user', 3, policy => 'icp') AS r
JOIN icp_list AS l ON l.rank = 1 AND l.account_id = r.account_id;
INSERT INTO user_interactions (user_id, account_id, interaction_type)
SELECT :'demo_user', account_id, t FROM icp_list, unnest(ARRAY['research', 'contact']) AS t WHERE rank = 1;
SELECT r.recommendation_id AS impression, r.status, r.reward AS impression_reward,
       e.interaction_type, e.reward, round(e.delta::numeric, 2) AS change
FROM icp_list l JOIN icpml.recommendations r ON r.user_id = :'demo_user' AND r.account_id = l.account_id
LEFT JOIN icpml.feedback_events e ON e.recommendation_id = r.recommendation_id
WHERE l.rank = 1 ORDER BY r.recommendation_id, e.interaction_id;
UPDATE icpml.bandit_settings SET exclude_recent = DEFAULT;
\echo 'the vocabulary of the industry and technology slots (filled by the first score_all()):'
SELECT array_to_string(industries, ', ') AS industries, array_to_string(technologies[1:8], ', ') || ', ...' AS technologies
FROM icpml.bandit_settings;

\echo
\echo '== 8. An A/B experiment: rank-by-ICP (control) against LinUCB, users split by a hash,'
\echo '   each variant learning in its own state, 10 % of users held out on rank-by-ICP'
SELECT name, variants, weights, separate_state, holdout, status
FROM icpml.start_experiment('icp-vs-linucb', ARRAY['icp', 'linucb'], holdout => 0.1);
SELECT icpml.experiment_variant('icp-vs-linucb', user_id) AS variant, count(*) AS users
FROM sales_users GROUP BY 1 ORDER BY 1;
\echo '40 rounds: each user gets 5 accounts, looks at rank r with probability 0.95 x 0.72^(r-1) and saves'
\echo 'what was looked at with the probability the hidden truth gives this user: 0.6 sigmoid(-2 + the'
\echo 'user''s weight on fit x the true fit logit + 0.8 x the user''s taste for the account); after each'
\echo 'round, what was not saved expires with reward 0 (process_feedback), so both arms learn every round'
DO $$
DECLARE i int;
BEGIN
  FOR i IN 1..40 LOOP
    INSERT INTO user_interactions (user_id, account_id, interaction_type)
    SELECT l.user_id, l.account_id, 'save'
    FROM (SELECT u.user_id, r.account_id, r.rank
          FROM sales_users u, icpml.recommend_accounts(u.user_id, 5, seed => i) r) AS l
    JOIN icpml_ref.user_taste AS t USING (user_id)
    JOIN icpml_ref.account_truth AS a USING (account_id)
    WHERE icpml_ref.u2(i, hashtext(l.user_id::text), l.account_id, 7)
          < 0.95 * 0.72 ^ (l.rank - 1) * 0.6
            * icpml_ref.sigmoid(-2 + t.fit_weight * a.fit_logit + 0.8 * icpml_ref.user_affinity(l.user_id, l.account_id));
    PERFORM icpml.process_feedback(as_of => now() + interval '8 days');
  END LOOP;
END
$$;
\echo 'what it measures: reward per finalized impression (a save 0.5, else 0) per arm, its 95 % interval,'
\echo 'the relative lift of linucb over icp and its p-value; with 12 users (split above) one user''s taste'
\echo 'weighs in (docs/benchmarks.md compares the policies over 20,000 rounds in a simulated world)'
SELECT variant, users, finalized, round(reward_per_impression::numeric, 3) AS reward_rate,
       round(ci_low::numeric, 3) AS ci_low, round(ci_high::numeric, 3) AS ci_high,
       round(lift::numeric, 3) AS lift, round(p_value::numeric, 4) AS p_value,
       round(srm_p_value::numeric, 3) AS srm_p_value, round(seq_p_value::numeric, 4) AS seq_p_value
FROM icpml.experiment_results('icp-vs-linucb');
\echo 'each variant trained its own shared state; the holdout trained none'
SELECT scope, n AS updates FROM icpml.bandit_state WHERE scope NOT LIKE 'user:%' ORDER BY scope;
\echo 'promote the winner (the best reward rate) in one call: the experiment stops, its policy'
\echo 'becomes the default, the global state takes what it learned'
SELECT name, status, promoted
FROM icpml.promote_variant('icp-vs-linucb', (SELECT variant FROM icpml.experiment_results('icp-vs-linucb')
                                             WHERE weight IS NOT NULL
                                             ORDER BY reward_per_impression DESC LIMIT 1));
SELECT default_policy FROM icpml.bandit_settings;
\echo 'the recommender''s health (icpml.bandit_health: docs/experiments.md lists every check)'
SELECT metric, scope, round(value::numeric, 3) AS value, impressions, status, note
FROM icpml.bandit_health()
WHERE metric IN ('served', 'exploration', 'propensity_ess', 'reward_slope', 'stale_pending')
   OR (metric = 'reward_by_rank' AND scope IN ('1', '5'));
\echo 'champion against challenger: a second model version, its scores materialised next to the'
\echo 'served ones (score_all(version => v)), gives the challenger''s users its candidates and scores'
SELECT version AS challenger FROM icpml.train_icp_model(n_rounds => 20, deploy => 'never') \gset
SELECT icpml.score_all(version => :challenger) AS challenger_scores;
SELECT name, variants, model_versions
FROM icpml.start_experiment('champion-vs-challenger', ARRAY['champion', 'challenger'],
                            policies => ARRAY['linucb', 'linucb'], model_versions => ARRAY[NULL, :challenger]);
SELECT r.reason->>'variant' AS variant, r.account_id, r.icp_score, r.priority,
       r.reason->>'model_version' AS model_version
FROM (SELECT user_id FROM sales_users ORDER BY user_id LIMIT 4) AS u,
     LATERAL icpml.recommend_accounts(u.user_id, 1, seed => 1) AS r;
SELECT name, status FROM icpml.stop_experiment('champion-vs-challenger');
\echo 'off-policy evaluation: log the candidates of exploring (epsilon-greedy) lists, then estimate'
\echo 'what other rankings would have earned on the same requests (icpml.evaluate_policy, per list of 5)'
UPDATE icpml.candidate_log_settings SET sample_rate = 1;
DO $$
DECLARE i int;
BEGIN
  FOR i IN 11..20 LOOP
    INSERT INTO user_interactions (user_id, account_id, interaction_type)
    SELECT u.user_id, r.account_id, 'save'
    FROM sales_users u, icpml.recommend_accounts(u.user_id, 5, policy => 'epsilon_greedy', seed => i) r
    WHERE (hashtext(u.user_id::text || r.account_id || i) & 1023) / 1024.0
          < icpml_ref.true_fit_probability(r.account_id);
  END LOOP;
  PERFORM icpml.process_feedback(as_of => now() + interval '8 days');
END
$$;
SELECT p.policy, e.estimator, round(e.value::numeric, 3) AS value, round(e.ci_low::numeric, 3) AS ci_low,
       round(e.ci_high::numeric, 3) AS ci_high, e.lists, round(e.effective_sample_size::numeric) AS ess
FROM unnest(ARRAY['epsilon_greedy', 'greedy', 'icp']) AS p(policy), icpml.evaluate_policy(p.policy) AS e
WHERE e.estimator IN ('ips', 'dr', 'logged') AND (e.estimator <> 'logged' OR p.policy = 'epsilon_greedy');
UPDATE icpml.candidate_log_settings SET sample_rate = 0;

\echo
\echo '== 9. Watching the model after deployment'
\echo 'icpml.model_health(): the accounts as they are now, against what the model saw at training'
SELECT check_name, item, round(statistic::numeric, 3) AS psi_or_change, status, detail
FROM icpml.model_health() WHERE check_name IN ('drift', 'summary') AND (status <> 'ok' OR item = 'company_size');
\echo 'a copy of the accounts where companies grew sixfold and a third moved to a new industry: drift'
CREATE VIEW demo_shifted AS
SELECT account_id, CASE WHEN account_id % 3 = 0 THEN 'crypto' ELSE industry END AS industry,
       engineering_role_count, has_open_engineering_roles, total_open_roles, has_engineering_blog,
       company_size * 6 AS company_size, funding_amount_usd, funding_date, tech_stack, researched_at, is_fit
FROM account_features;
SELECT check_name, item, round(statistic::numeric, 2) AS psi, status, detail
FROM icpml.model_health(relation => 'demo_shifted') WHERE status NOT IN ('ok', 'too few');
DROP VIEW demo_shifted;
\echo 'the model card a reviewer reads before a deploy (icpml.describe_model()->card):'
SELECT c->'dataset'->>'relation' AS relation, c->'rows' AS rows, round((c->>'label_rate')::numeric, 3) AS label_rate,
       round((c->'cv'->'model'->>'roc_auc')::numeric, 3) AS cv_auc, c->'top_features'->0->>'feature' AS top_feature,
       c->'data_window'->'dates'->'researched_at' AS research_window
FROM (SELECT icpml.describe_model()->'card' AS c) AS x;
\echo
\echo '== 10. Maintenance that runs itself: one call schedules the jobs with pg_cron'
CREATE EXTENSION IF NOT EXISTS pg_cron;
SELECT job_name, schedule, command FROM icpml.schedule_maintenance();
SELECT jobname, username AS runs_as FROM cron.job ORDER BY jobname;
\echo 'a run of the feedback job by hand, as pg_cron does it every minute (expiry, the queued updates)'
CALL icpml.run_maintenance(job => 'feedback', triggered_by => 'manual');
SELECT job, status, result FROM icpml.maintenance_history LIMIT 1;
\echo 'retrain only when model_health says so (drift, decay on new labels, or age): the same job, replaced'
SELECT icpml.schedule_retraining(cron => '0 3 * * *', retrain => 'needed') AS cron_job_id;
SELECT jobname, schedule, command FROM cron.job WHERE jobname = 'icpml-retrain';

\echo
\echo '== 11. Backups: pg_dump keeps what icpml knows (extension configuration tables)'
SELECT c.relname AS "table",
       (xpath('/table/row/n/text()', query_to_xml(format('SELECT count(*) AS n FROM %s', c.oid::regclass), false, false, '')))[1]::text::bigint AS "rows"
FROM pg_extension e, unnest(e.extconfig) AS cfg(oid) JOIN pg_class c ON c.oid = cfg.oid
WHERE e.extname = 'icpml' AND c.relkind = 'r' ORDER BY 1;
\echo
\echo '== 12. Hosted Supabase: the deployed model as plain SQL (icpml.export_scorer_sql())'
SELECT pg_size_pretty(octet_length(icpml.export_scorer_sql())::bigint) AS script,
       (SELECT count(*) FROM regexp_matches(icpml.export_scorer_sql(), 'CREATE OR REPLACE FUNCTION', 'g')) AS functions;
\echo 'apply it to a database without icpml (a Supabase migration): icp_score there gives these probabilities to the last bit'
\echo
\echo 'Done. Everything above ran inside PostgreSQL: see README.md for the reference.'
