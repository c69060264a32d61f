-- Scoring reads as the caller: grants and row-level security apply.
\i sql/include/reference_schema.sql
INSERT INTO account_signals (account_id, account_name, engineering_role_count, has_open_engineering_roles,
                             total_open_roles, has_engineering_blog)
VALUES (1, 'mine', 10, true, 20, true), (2, 'theirs', 30, true, 60, true);

CREATE ROLE icpml_test_rep;
-- no grant yet: the scoring functions are not executable by PUBLIC
SET ROLE icpml_test_rep;
SELECT score FROM icpml.icp_score(1);
RESET ROLE;

SELECT icpml.grant_scoring('icpml_test_rep');
SELECT icpml.grant_scoring('no_such_role');
-- EXECUTE alone is not enough: the caller must be able to read the features
SET ROLE icpml_test_rep;
SELECT score FROM icpml.icp_score(1);
RESET ROLE;

GRANT SELECT ON account_signals, research_runs, account_features TO icpml_test_rep;
ALTER TABLE account_signals ENABLE ROW LEVEL SECURITY;
CREATE POLICY only_mine ON account_signals FOR SELECT TO icpml_test_rep
  USING (account_name = 'mine');

SET ROLE icpml_test_rep;
SELECT account_id, score FROM icpml.icp_score(1);
-- hidden by RLS: indistinguishable from an unknown account
SELECT account_id, score FROM icpml.icp_score(2);
SELECT account_id, score FROM icpml.icp_score_batch(ARRAY[1, 2]);
-- icpml's own tables stay closed
SELECT count(*) FROM icpml.rule_weights;
UPDATE icpml.rule_weights SET weight = 10 WHERE factor = 'bias';
RESET ROLE;

DROP POLICY only_mine ON account_signals;
ALTER TABLE account_signals DISABLE ROW LEVEL SECURITY;
REVOKE ALL ON account_signals, research_runs, account_features FROM icpml_test_rep;
REVOKE ALL ON SCHEMA icpml FROM icpml_test_rep;
REVOKE ALL ON ALL ROUTINES IN SCHEMA icpml FROM icpml_test_rep;
DROP ROLE icpml_test_rep;

SET client_min_messages = warning;
DROP VIEW account_features;
DROP TABLE user_interactions, research_runs, sales_users, account_signals CASCADE;
