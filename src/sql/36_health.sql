-- ---------------------------------------------------------------------------
-- Watching a deployed model (C, health.c): icpml.model_health() compares the
-- population a model scores now with what it scored at training (per-feature
-- drift, score distribution by tier) and checks it on the labels that arrived
-- after training (ROC AUC, Brier, calibration per tier); the thresholds live
-- in icpml.health_settings; icpml.retraining_needed() is its verdict, which
-- run_training(retrain => 'needed') follows.  Administrative.
-- ---------------------------------------------------------------------------

COMMENT ON COLUMN icpml.models.training_stats IS
  'The population the model scored at training (every row of its relation): per feature column its distribution (bins at the labelled rows'' deciles, level and token shares, missing share) and data window, the share of each score and tier, row and label counts; model_health compares with it';
COMMENT ON COLUMN icpml.models.training_labels IS
  'The (key, label) pairs the model was trained on (8-byte big-endian key, one byte 0/1, in key order), so that model_health tells new labels apart';

CREATE TABLE icpml.health_settings (
  singleton        boolean PRIMARY KEY DEFAULT true CHECK (singleton),
  psi_watch        double precision NOT NULL DEFAULT 0.1 CHECK (psi_watch > 0 AND psi_watch <= 10),
  psi_alert        double precision NOT NULL DEFAULT 0.25 CHECK (psi_alert > 0 AND psi_alert <= 10),
  auc_drop         double precision NOT NULL DEFAULT 0.05 CHECK (auc_drop >= 0 AND auc_drop <= 1),
  brier_rise       double precision NOT NULL DEFAULT 0.03 CHECK (brier_rise >= 0 AND brier_rise <= 1),
  calibration_gap  double precision NOT NULL DEFAULT 0.15 CHECK (calibration_gap > 0 AND calibration_gap <= 1),
  min_new_labels   integer NOT NULL DEFAULT 50 CHECK (min_new_labels > 0),
  max_model_age    interval DEFAULT '30 days' CHECK (max_model_age >= '0'),
  CHECK (psi_alert >= psi_watch)
);

COMMENT ON TABLE icpml.health_settings IS
  'One row: the thresholds of model_health (PSI watch and alert, AUC drop, Brier rise, calibration gap, new labels needed) and the age after which retraining is due anyway (NULL: never); every number finite and in range (NaN would silence every alert)';

INSERT INTO icpml.health_settings DEFAULT VALUES;

CREATE FUNCTION icpml.model_health(version integer DEFAULT NULL, relation text DEFAULT NULL)
RETURNS TABLE (check_name text, item text, training double precision,
               current double precision, statistic double precision, n bigint,
               status text, detail text)
AS 'MODULE_PATHNAME', 'model_health'
LANGUAGE C STABLE;

COMMENT ON FUNCTION icpml.model_health(integer, text) IS
  'How a model (the deployed one by default) fares on its relation now (or another with its columns), read as the caller: drift of every feature (PSI) and of the score tiers against training, ROC AUC, Brier and calibration per tier on labels that arrived after training, and whether retraining is needed (the summary row); thresholds in icpml.health_settings';

CREATE FUNCTION icpml.retraining_needed(version integer DEFAULT NULL,
                                        OUT needed boolean, OUT reason text)
RETURNS record
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
  SELECT h.status OPERATOR(pg_catalog.=) 'needed', h.detail
  FROM icpml.model_health(retraining_needed.version) AS h
  WHERE h.check_name OPERATOR(pg_catalog.=) 'summary'
$$;

COMMENT ON FUNCTION icpml.retraining_needed(integer) IS
  'model_health''s verdict for a model (the deployed one by default): whether retraining is needed (a feature drifted, new labels show decay, or the model is older than health_settings.max_model_age) and why';
