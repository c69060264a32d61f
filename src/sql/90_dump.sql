-- ---------------------------------------------------------------------------
-- Backups: what pg_dump keeps.  Extension tables are not dumped unless they
-- are registered as configuration tables; these are, with their sequences:
--
--   settings     rule_weights, rule_settings, bandit_settings, reward_map,
--                health_settings
--   models       models, deployments, training_runs (20_models.sql)
--   scores       account_scores, version_scores, score_runs, score_queue
--                (score_all() can rebuild the scores), account_candidates
--   profiles     user_profiles (rebuild_user_profiles() can rebuild it)
--   ope          candidate_log_settings, recommendation_candidates (47_ope.sql)
--   recommender  bandit_state, account_feedback, recommendations and
--                feedback_events (the log the state is rebuilt from),
--                bandit_queue, experiments
--
-- CREATE EXTENSION inserts the default settings rows before a restore copies
-- the dumped rows in, so a row a COPY brings in replaces the row with its key
-- instead of failing: the restored settings win over the defaults.  (pg_dump
-- writes data as COPY unless told --inserts; plain INSERTs keep their
-- meaning.)
-- ---------------------------------------------------------------------------

CREATE FUNCTION icpml.replace_settings_row()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
  -- only a COPY (how pg_dump's data is restored); INSERT keeps its meaning
  -- (a duplicate key fails, ON CONFLICT works)
  IF pg_catalog.current_query() OPERATOR(pg_catalog.!~*) '^\s*copy\s' THEN
    RETURN NEW;
  END IF;
  IF TG_TABLE_NAME OPERATOR(pg_catalog.=) 'rule_weights' THEN
    DELETE FROM icpml.rule_weights AS t WHERE t.factor OPERATOR(pg_catalog.=) NEW.factor;
  ELSIF TG_TABLE_NAME OPERATOR(pg_catalog.=) 'rule_settings' THEN
    DELETE FROM icpml.rule_settings AS t WHERE t.singleton OPERATOR(pg_catalog.=) NEW.singleton;
  ELSIF TG_TABLE_NAME OPERATOR(pg_catalog.=) 'bandit_settings' THEN
    DELETE FROM icpml.bandit_settings AS t WHERE t.singleton OPERATOR(pg_catalog.=) NEW.singleton;
  ELSIF TG_TABLE_NAME OPERATOR(pg_catalog.=) 'reward_map' THEN
    DELETE FROM icpml.reward_map AS t WHERE t.interaction_type OPERATOR(pg_catalog.=) NEW.interaction_type;
  ELSIF TG_TABLE_NAME OPERATOR(pg_catalog.=) 'health_settings' THEN
    DELETE FROM icpml.health_settings AS t WHERE t.singleton OPERATOR(pg_catalog.=) NEW.singleton;
  ELSE
    RAISE EXCEPTION 'icpml.replace_settings_row() is not a trigger of %', TG_TABLE_NAME
      USING ERRCODE = 'triggered_action_exception';
  END IF;
  RETURN NEW;
END
$$;

COMMENT ON FUNCTION icpml.replace_settings_row() IS
  'Trigger on the settings tables: a row that a COPY brings in replaces the row with its key (so restoring a pg_dump brings back customised settings over the defaults); INSERT is unaffected';

CREATE TRIGGER rule_weights_replace BEFORE INSERT ON icpml.rule_weights
  FOR EACH ROW EXECUTE FUNCTION icpml.replace_settings_row();
CREATE TRIGGER rule_settings_replace BEFORE INSERT ON icpml.rule_settings
  FOR EACH ROW EXECUTE FUNCTION icpml.replace_settings_row();
CREATE TRIGGER bandit_settings_replace BEFORE INSERT ON icpml.bandit_settings
  FOR EACH ROW EXECUTE FUNCTION icpml.replace_settings_row();
CREATE TRIGGER reward_map_replace BEFORE INSERT ON icpml.reward_map
  FOR EACH ROW EXECUTE FUNCTION icpml.replace_settings_row();
CREATE TRIGGER health_settings_replace BEFORE INSERT ON icpml.health_settings
  FOR EACH ROW EXECUTE FUNCTION icpml.replace_settings_row();

SELECT pg_catalog.pg_extension_config_dump('icpml.rule_weights', '');
SELECT pg_catalog.pg_extension_config_dump('icpml.rule_settings', '');
SELECT pg_catalog.pg_extension_config_dump('icpml.bandit_settings', '');
SELECT pg_catalog.pg_extension_config_dump('icpml.reward_map', '');
SELECT pg_catalog.pg_extension_config_dump('icpml.account_scores', '');
SELECT pg_catalog.pg_extension_config_dump('icpml.bandit_state', '');
SELECT pg_catalog.pg_extension_config_dump('icpml.bandit_state_version_seq', '');
SELECT pg_catalog.pg_extension_config_dump('icpml.account_feedback', '');
SELECT pg_catalog.pg_extension_config_dump('icpml.recommendations', '');
SELECT pg_catalog.pg_extension_config_dump('icpml.recommendations_recommendation_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('icpml.recommendations_finalize_seq', '');
SELECT pg_catalog.pg_extension_config_dump('icpml.experiments', '');
SELECT pg_catalog.pg_extension_config_dump('icpml.feedback_events', '');
SELECT pg_catalog.pg_extension_config_dump('icpml.bandit_queue', '');
SELECT pg_catalog.pg_extension_config_dump('icpml.account_candidates', '');
SELECT pg_catalog.pg_extension_config_dump('icpml.user_profiles', '');
SELECT pg_catalog.pg_extension_config_dump('icpml.health_settings', '');
SELECT pg_catalog.pg_extension_config_dump('icpml.version_scores', '');
SELECT pg_catalog.pg_extension_config_dump('icpml.score_runs', '');
SELECT pg_catalog.pg_extension_config_dump('icpml.score_runs_run_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('icpml.score_queue', '');
SELECT pg_catalog.pg_extension_config_dump('icpml.candidate_log_settings', '');
SELECT pg_catalog.pg_extension_config_dump('icpml.recommendation_candidates', '');
