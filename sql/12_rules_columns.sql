-- The rules over the columns a team has: only the key is required; a rule
-- column the relation lacks is reported once (a NOTICE when the reader is
-- built) and its factors contribute nothing; explain_icp_score lists them
-- as unavailable; training's rules baseline works on such a relation too.
\set VERBOSITY default

-- a CRM with two of the seed's eight columns, under its own key name
CREATE TABLE crm_accounts (
  company_id bigint PRIMARY KEY,
  engineering_role_count integer,
  has_engineering_blog boolean,
  won boolean
);
INSERT INTO crm_accounts
SELECT g, (g * 7) % 41, g % 3 = 0,
       CASE WHEN g % 9 <> 0 THEN ((g * 7) % 41 > 15 AND g % 2 = 0) <> (g % 13 = 0) END
FROM generate_series(1, 240) g;
SET icpml.feature_relation = 'crm_accounts';
SET icpml.feature_key = 'company_id';

-- the first score reports the missing columns, the next ones do not
SELECT account_id, score, priority, round(probability::numeric, 4) AS probability, model
FROM icpml.icp_score(30);
SELECT account_id, score, priority, round(probability::numeric, 4) AS probability
FROM icpml.icp_score_batch(ARRAY[1, 2, 3]);
SELECT f->>'factor' AS factor, f->'value' AS value, round((f->>'contribution')::numeric, 4) AS contribution
FROM icpml.icp_score(30), jsonb_array_elements(factors) AS f;

-- every factor, the unavailable ones said so
SELECT feature, value, round(contribution::numeric, 4) AS contribution, method
FROM icpml.explain_icp_score(30);

-- the same scores as a relation that has every column, NULL where this one has none
CREATE VIEW crm_full AS
SELECT company_id, engineering_role_count, NULL::boolean AS has_open_engineering_roles,
       NULL::integer AS total_open_roles, has_engineering_blog, NULL::integer AS company_size,
       NULL::numeric AS funding_amount_usd, NULL::date AS funding_date, NULL::text[] AS tech_stack
FROM crm_accounts;
CREATE TEMP TABLE two AS SELECT * FROM icpml.icp_score_batch(ARRAY(SELECT company_id FROM crm_accounts));
SET icpml.feature_relation = 'crm_full';
SELECT count(*) AS same_scores
FROM two JOIN icpml.icp_score_batch(ARRAY(SELECT company_id FROM crm_accounts)) AS f USING (account_id)
WHERE f.probability = two.probability AND f.factors = two.factors;
SET icpml.feature_relation = 'crm_accounts';   -- rebuilt: reported again
SELECT score FROM icpml.icp_score(1);

-- the key is still required, and a rule column of a type the rules cannot read is an error
SET icpml.feature_key = 'no_such_key';
SELECT score FROM icpml.icp_score(1);
SET icpml.feature_key = 'company_id';
ALTER TABLE crm_accounts ADD COLUMN tech_stack point;
SET icpml.feature_relation = 'public.crm_accounts';
SELECT score FROM icpml.icp_score(1);
ALTER TABLE crm_accounts DROP COLUMN tech_stack;

-- a relation with none of the rule columns: every factor unavailable, the bias alone
CREATE TABLE bare (company_id bigint PRIMARY KEY);
INSERT INTO bare VALUES (1);
SET icpml.feature_relation = 'bare';
SELECT score, priority, round(probability::numeric, 4) AS probability, factors FROM icpml.icp_score(1);
SELECT count(*) FILTER (WHERE method = 'unavailable') AS unavailable FROM icpml.explain_icp_score(1);

-- training's rules baseline on the same folds works with the two columns
SET icpml.nthread = 1;
SELECT n_rows, rules_cv_roc_auc IS NOT NULL AS has_rules_baseline,
       round(rules_cv_roc_auc::numeric, 4) AS rules_cv_roc_auc
FROM icpml.train_icp_model(relation => 'crm_accounts', key_column => 'company_id',
                           label_column => 'won', folds => 3, n_rounds => 10, deploy => 'never');
-- ... and is what the rules score on those rows: the same AUC per fold, averaged
SET icpml.feature_relation = 'crm_accounts';
SELECT round(avg(m.roc_auc)::numeric, 4) AS rules_auc_by_fold
FROM (SELECT k.fold, (icpml.binary_metrics(array_agg(c.won ORDER BY c.company_id),
                                           array_agg(s.probability ORDER BY c.company_id))).roc_auc
      FROM icpml.cv_folds(relation => 'crm_accounts', key_column => 'company_id', label_column => 'won',
                          folds => 3) AS k
      JOIN crm_accounts AS c ON c.company_id = k.key
      JOIN icpml.icp_score_batch(ARRAY(SELECT company_id FROM crm_accounts)) AS s ON s.account_id = c.company_id
      GROUP BY k.fold) AS m;

-- the exported rule scorer reads NULL for the missing columns
SELECT count(*) AS missing_in_export
FROM regexp_matches(icpml.export_scorer_sql(rules => true), 'not in the relation', 'g');

RESET icpml.feature_relation;
RESET icpml.feature_key;
DROP VIEW crm_full;
DROP TABLE crm_accounts, bare;
SELECT icpml.delete_model(version) FROM icpml.models;
-- the tests after this one number their model versions from 1
SELECT setval('icpml.models_version_seq', 1, false);
