-- icpml 0.2.0 -> 0.3.0
--
-- Everything the 0.3.0 install script (sql/parts/*.sql) has that 0.2.0's
-- (sql/frozen/icpml--0.2.0.sql) lacks, copied from the part it mirrors
-- (sql/parts/90_dump.sql): pg_dump keeps the settings, the materialised
-- scores and the recommender's state and log.  No data changes.
-- sql/95_upgrade.sql checks that the upgraded catalog equals a fresh install.
\echo Use "ALTER EXTENSION icpml UPDATE TO '0.3.0'" to load this file. \quit

CREATE FUNCTION icpml.replace_settings_row()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
  CASE TG_TABLE_NAME
    WHEN 'rule_weights' THEN
      DELETE FROM icpml.rule_weights AS t WHERE t.factor = NEW.factor;
    WHEN 'rule_settings' THEN
      DELETE FROM icpml.rule_settings AS t WHERE t.singleton = NEW.singleton;
    WHEN 'bandit_settings' THEN
      DELETE FROM icpml.bandit_settings AS t WHERE t.singleton = NEW.singleton;
    WHEN 'reward_map' THEN
      DELETE FROM icpml.reward_map AS t WHERE t.interaction_type = NEW.interaction_type;
  END CASE;
  RETURN NEW;
END
$$;

COMMENT ON FUNCTION icpml.replace_settings_row() IS
  'Trigger on the settings tables: an INSERT whose key exists replaces that row (so restoring a pg_dump brings back customised settings over the defaults)';

CREATE TRIGGER rule_weights_replace BEFORE INSERT ON icpml.rule_weights
  FOR EACH ROW EXECUTE FUNCTION icpml.replace_settings_row();
CREATE TRIGGER rule_settings_replace BEFORE INSERT ON icpml.rule_settings
  FOR EACH ROW EXECUTE FUNCTION icpml.replace_settings_row();
CREATE TRIGGER bandit_settings_replace BEFORE INSERT ON icpml.bandit_settings
  FOR EACH ROW EXECUTE FUNCTION icpml.replace_settings_row();
CREATE TRIGGER reward_map_replace BEFORE INSERT ON icpml.reward_map
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

-- Privileges as a fresh install has them: not executable by PUBLIC; Supabase's
-- service_role gets it from grant_admin().  Roles you gave grant_admin()
-- yourself: run it again after the update.
REVOKE ALL ON FUNCTION icpml.replace_settings_row() FROM PUBLIC;

DO $$
BEGIN
  IF EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = 'service_role') THEN
    GRANT EXECUTE ON FUNCTION icpml.replace_settings_row() TO service_role;
  END IF;
END
$$;
