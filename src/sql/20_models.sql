-- ---------------------------------------------------------------------------
-- Model store: versioned ICP models, deployments and their history
--
-- Written only through icpml's own functions (train_icp_model, deploy_model,
-- rollback_model, undeploy_model, delete_model; C code in model_store.c,
-- running as the extension owner).  Not granted to any application role;
-- icpml.grant_admin(role) opens them to administrators.
-- ---------------------------------------------------------------------------

CREATE TABLE icpml.models (
  version           serial PRIMARY KEY CHECK (version > 0),
  created_at        timestamptz NOT NULL DEFAULT pg_catalog.now(),
  created_by        name NOT NULL DEFAULT CURRENT_USER,
  status            text NOT NULL DEFAULT 'trained'
                      CHECK (status IN ('trained', 'deployed', 'retired')),
  relation          text,
  key_column        text,
  label_column      text,
  model             bytea NOT NULL,
  spec              jsonb NOT NULL,
  params            jsonb,
  metrics           jsonb,
  n_rows            bigint CHECK (n_rows >= 0),
  n_positive        bigint CHECK (n_positive >= 0),
  seed              integer,
  data_fingerprint  text,
  xgboost_version   text,
  score_cutoffs     double precision[] NOT NULL
                      CHECK (pg_catalog.cardinality(score_cutoffs) = 9
                             AND pg_catalog.array_position(score_cutoffs, NULL) IS NULL),
  high_min_score    integer NOT NULL DEFAULT 8 CHECK (high_min_score BETWEEN 1 AND 10),
  medium_min_score  integer NOT NULL DEFAULT 5,
  cv_roc_auc        double precision,
  rules_cv_roc_auc  double precision,
  dataset           text,
  spec_fingerprint  text,
  training_stats    jsonb,
  training_labels   bytea,
  CHECK (medium_min_score BETWEEN 1 AND high_min_score)
);

-- At most one deployed model: the one scoring uses.
CREATE UNIQUE INDEX models_one_deployed ON icpml.models ((true)) WHERE status = 'deployed';

COMMENT ON TABLE icpml.models IS
  'Versioned ICP models: XGBoost UBJSON blob, feature spec, params, cross-validated metrics and score cut-offs; at most one is deployed';
COMMENT ON COLUMN icpml.models.status IS
  'trained (never deployed), deployed (scoring uses it; at most one), retired (was deployed)';
COMMENT ON COLUMN icpml.models.model IS
  'The booster as XGBoost UBJSON (XGBoosterSaveModelToBuffer), loaded from memory: no temporary files';
COMMENT ON COLUMN icpml.models.spec IS
  'Feature spec: relation, key, columns with their kinds and category levels, feature names and types';
COMMENT ON COLUMN icpml.models.metrics IS
  'Cross-validation of the model and of the rules on the same folds, ROC points, calibration bins, feature importance';
COMMENT ON COLUMN icpml.models.score_cutoffs IS
  'Nine increasing probabilities: score = 1 + number of cut-offs at or below the probability';
COMMENT ON COLUMN icpml.models.cv_roc_auc IS
  'Mean cross-validated ROC AUC: the yardstick of the deploy policy best';
COMMENT ON COLUMN icpml.models.dataset IS
  'What the model was trained on: md5 of its relation, key, label and spec_fingerprint (set by a trigger); deploy policy best compares only models of one dataset';
COMMENT ON COLUMN icpml.models.spec_fingerprint IS
  'md5 of the feature columns the model reads, name:kind in spec order (levels left out); set by a trigger';
COMMENT ON COLUMN icpml.models.rules_cv_roc_auc IS
  'ROC AUC of the rule-based score on the same folds; NULL when the relation lacks the rules'' signals';

CREATE TABLE icpml.deployments (
  id                bigserial PRIMARY KEY,
  version           integer,
  action            text NOT NULL CHECK (action IN ('deploy', 'rollback', 'undeploy')),
  previous_version  integer,
  reason            text,
  at                timestamptz NOT NULL DEFAULT pg_catalog.now(),
  by                name NOT NULL DEFAULT CURRENT_USER,
  CHECK ((action = 'undeploy') = (version IS NULL))
);

COMMENT ON TABLE icpml.deployments IS
  'Deployment history: which version was deployed (NULL after undeploy), which one it replaced, why, when and by whom';

CREATE TABLE icpml.training_runs (
  run_id         bigserial PRIMARY KEY,
  started_at     timestamptz NOT NULL DEFAULT pg_catalog.clock_timestamp(),
  finished_at    timestamptz,
  status         text NOT NULL DEFAULT 'running'
                   CHECK (status IN ('running', 'succeeded', 'failed', 'abandoned', 'skipped')),
  triggered_by   text NOT NULL CHECK (triggered_by IN ('manual', 'schedule')),
  deploy_policy  text NOT NULL,
  run_by         name NOT NULL DEFAULT CURRENT_USER,
  pid            integer NOT NULL DEFAULT pg_catalog.pg_backend_pid(),
  version        integer,
  deployed       boolean,
  deploy_reason  text,
  metrics        jsonb,
  error          text,
  reason         text,
  CHECK ((status = 'running') = (finished_at IS NULL))
);

COMMENT ON TABLE icpml.training_runs IS
  'One row per icpml.run_training() call (scheduled or manual): start, end, outcome, model version, metrics, error, and why it trained or was skipped';
COMMENT ON COLUMN icpml.training_runs.reason IS
  'Why the run trained (retrain => always, or model_health''s verdict with retrain => needed) or was skipped (status skipped)';

-- pg_dump keeps the models, the history and the run log with the extension.
SELECT pg_catalog.pg_extension_config_dump('icpml.models', '');
SELECT pg_catalog.pg_extension_config_dump('icpml.models_version_seq', '');
SELECT pg_catalog.pg_extension_config_dump('icpml.deployments', '');
SELECT pg_catalog.pg_extension_config_dump('icpml.deployments_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('icpml.training_runs', '');
SELECT pg_catalog.pg_extension_config_dump('icpml.training_runs_run_id_seq', '');

-- A relation name as icpml stores it (1 to 3 dot-separated identifiers,
-- quoted where needed): a name, never SQL.
CREATE FUNCTION icpml.is_relation_name(name text)
RETURNS boolean
LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
  RETURN pg_catalog.cardinality(pg_catalog.parse_ident(is_relation_name.name)) OPERATOR(pg_catalog.<=) 3;
EXCEPTION WHEN invalid_parameter_value OR invalid_name THEN
  RETURN false;
END
$$;

COMMENT ON FUNCTION icpml.is_relation_name(text) IS
  'Whether text is a relation name (1 to 3 identifiers, quoted where needed) and nothing else: how icpml checks the names it stores';

-- What a row of icpml.models must look like, checked on every write (a
-- training, a restore, an administrator's UPDATE): the relation names are
-- names, never SQL; the spec has its shape; the cut-offs are increasing
-- probabilities.  Deploys check the rest against the blob (ModelValidate).
CREATE FUNCTION icpml.models_guard()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  spec pg_catalog.jsonb := NEW.spec;
  col pg_catalog.jsonb;
  kinds constant pg_catalog.text[] := ARRAY['numeric', 'boolean', 'categorical', 'age_days', 'tags'];
  problem pg_catalog.text;
  prev double precision;
  c double precision;
BEGIN
  IF pg_catalog.jsonb_typeof(spec) OPERATOR(pg_catalog.<>) 'object' THEN
    problem := 'the spec is not a JSON object';
  ELSIF COALESCE(pg_catalog.jsonb_typeof(spec OPERATOR(pg_catalog.->) 'relation'), '') OPERATOR(pg_catalog.<>) 'string'
        OR NOT icpml.is_relation_name(spec OPERATOR(pg_catalog.->>) 'relation') THEN
    problem := pg_catalog.format('the spec''s relation %s is not a table or view name',
                                 spec OPERATOR(pg_catalog.->) 'relation');
  ELSIF COALESCE(pg_catalog.jsonb_typeof(spec OPERATOR(pg_catalog.->) 'key'), '') OPERATOR(pg_catalog.<>) 'string'
        OR (spec OPERATOR(pg_catalog.->>) 'key') OPERATOR(pg_catalog.=) '' THEN
    problem := 'the spec has no key column';
  ELSIF COALESCE(pg_catalog.jsonb_typeof(spec OPERATOR(pg_catalog.->) 'columns'), '') OPERATOR(pg_catalog.<>) 'array'
        OR pg_catalog.jsonb_array_length(spec OPERATOR(pg_catalog.->) 'columns') OPERATOR(pg_catalog.=) 0 THEN
    problem := 'the spec has no columns';
  ELSIF NEW.relation IS NOT NULL AND NOT icpml.is_relation_name(NEW.relation) THEN
    problem := pg_catalog.format('relation %L is not a table or view name', NEW.relation);
  END IF;
  IF problem IS NULL THEN
    FOR col IN SELECT e FROM pg_catalog.jsonb_array_elements(spec OPERATOR(pg_catalog.->) 'columns') AS e LOOP
      IF COALESCE(pg_catalog.jsonb_typeof(col OPERATOR(pg_catalog.->) 'name'), '') OPERATOR(pg_catalog.<>) 'string'
         OR NOT (col OPERATOR(pg_catalog.->>) 'kind') OPERATOR(pg_catalog.=) ANY (kinds) THEN
        problem := pg_catalog.format('a column of the spec has no name or an unknown kind: %s', col);
        EXIT;
      END IF;
      IF (col OPERATOR(pg_catalog.->>) 'kind') OPERATOR(pg_catalog.=) ANY (ARRAY['categorical', 'tags'])
         AND (COALESCE(pg_catalog.jsonb_typeof(col OPERATOR(pg_catalog.->) 'levels'), '') OPERATOR(pg_catalog.<>) 'array'
              OR EXISTS (SELECT FROM pg_catalog.jsonb_array_elements(col OPERATOR(pg_catalog.->) 'levels') AS l
                         WHERE pg_catalog.jsonb_typeof(l) OPERATOR(pg_catalog.<>) 'string')) THEN
        problem := pg_catalog.format('column %s of the spec needs an array of text levels', col OPERATOR(pg_catalog.->) 'name');
        EXIT;
      END IF;
    END LOOP;
  END IF;
  IF problem IS NULL THEN
    FOREACH c IN ARRAY NEW.score_cutoffs LOOP
      IF c OPERATOR(pg_catalog.=) 'NaN'::double precision OR c OPERATOR(pg_catalog.=) '-Infinity'::double precision
         OR (c OPERATOR(pg_catalog.<>) 'Infinity'::double precision
             AND (c OPERATOR(pg_catalog.<) 0 OR c OPERATOR(pg_catalog.>) 1)) THEN
        problem := pg_catalog.format('score cut-off %s is not a probability (or Infinity)', c);
      ELSIF prev IS NOT NULL AND c OPERATOR(pg_catalog.<) prev THEN
        problem := pg_catalog.format('score cut-offs decrease (%s after %s)', c, prev);
      END IF;
      EXIT WHEN problem IS NOT NULL;
      prev := c;
    END LOOP;
  END IF;
  IF problem IS NOT NULL THEN
    RAISE EXCEPTION 'invalid model version %: %', NEW.version, problem
      USING ERRCODE = 'check_violation',
            HINT = 'Models are written by icpml.train_icp_model(); a spec names its relation, it is never SQL.';
  END IF;
  RETURN NEW;
END
$$;

COMMENT ON FUNCTION icpml.models_guard() IS
  'Trigger on icpml.models: relation names are names, the spec has its shape, the score cut-offs are non-decreasing probabilities (or Infinity)';

CREATE TRIGGER models_guard
  BEFORE INSERT OR UPDATE ON icpml.models
  FOR EACH ROW EXECUTE FUNCTION icpml.models_guard();

-- The dataset a model belongs to, from its own row (so training, restores and
-- hand-made rows agree): relation, key, label and the feature columns' names
-- and kinds.  After models_guard (triggers fire in name order).
CREATE FUNCTION icpml.models_dataset()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
  NEW.spec_fingerprint := pg_catalog.md5(COALESCE(
    (SELECT pg_catalog.string_agg((c.e OPERATOR(pg_catalog.->>) 'name') OPERATOR(pg_catalog.||) ':'
                                  OPERATOR(pg_catalog.||) (c.e OPERATOR(pg_catalog.->>) 'kind'), ',' ORDER BY c.i)
     FROM pg_catalog.jsonb_array_elements(NEW.spec OPERATOR(pg_catalog.->) 'columns') WITH ORDINALITY AS c(e, i)),
    ''));
  NEW.dataset := pg_catalog.md5(pg_catalog.concat_ws('|', NEW.spec OPERATOR(pg_catalog.->>) 'relation',
                                                     NEW.spec OPERATOR(pg_catalog.->>) 'key',
                                                     NEW.label_column, NEW.spec_fingerprint));
  RETURN NEW;
END
$$;

COMMENT ON FUNCTION icpml.models_dataset() IS
  'Trigger on icpml.models: sets dataset (md5 of relation, key, label and the feature columns) and spec_fingerprint (md5 of the columns'' names and kinds)';

CREATE TRIGGER models_guard_dataset
  BEFORE INSERT OR UPDATE ON icpml.models
  FOR EACH ROW EXECUTE FUNCTION icpml.models_dataset();

-- Backends drop their cached booster when a change commits (see catalog.c).
CREATE TRIGGER models_invalidate
  AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON icpml.models
  FOR EACH STATEMENT EXECUTE FUNCTION icpml.invalidate_cache();
CREATE TRIGGER deployments_invalidate
  AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON icpml.deployments
  FOR EACH STATEMENT EXECUTE FUNCTION icpml.invalidate_cache();

-- ---------------------------------------------------------------------------
-- Deploying (C, model_store.c: runs as the extension owner, records the caller)
-- ---------------------------------------------------------------------------

CREATE FUNCTION icpml.deploy_model(version integer, reason text DEFAULT NULL,
                                   replace_dataset boolean DEFAULT false)
RETURNS icpml.deployments
AS 'MODULE_PATHNAME', 'deploy_model'
LANGUAGE C VOLATILE;

COMMENT ON FUNCTION icpml.deploy_model(integer, text, boolean) IS
  'Deploy a stored model version (the deployed one is retired); a version of another dataset than the deployed one needs replace_dataset => true, and the logged reason says what it replaces; returns the history row, NULL when it was already deployed';

CREATE FUNCTION icpml.rollback_model(reason text DEFAULT NULL)
RETURNS icpml.deployments
AS 'MODULE_PATHNAME', 'rollback_model'
LANGUAGE C VOLATILE;

COMMENT ON FUNCTION icpml.rollback_model(text) IS
  'Undo the latest deploy or undeploy: re-deploy the version that was deployed before it (deleted versions are skipped)';

CREATE FUNCTION icpml.undeploy_model(reason text DEFAULT NULL)
RETURNS icpml.deployments
AS 'MODULE_PATHNAME', 'undeploy_model'
LANGUAGE C VOLATILE;

COMMENT ON FUNCTION icpml.undeploy_model(text) IS
  'Retire the deployed model: scoring goes back to the rules; NULL when nothing was deployed';

CREATE FUNCTION icpml.delete_model(version integer)
RETURNS void
AS 'MODULE_PATHNAME', 'delete_model'
LANGUAGE C VOLATILE;

COMMENT ON FUNCTION icpml.delete_model(integer) IS
  'Delete a stored model version that is not deployed (its deployment history stays)';

CREATE FUNCTION icpml.apply_deploy_policy(version integer, policy text DEFAULT 'best',
                                          OUT deployed boolean, OUT reason text)
RETURNS record
AS 'MODULE_PATHNAME', 'apply_deploy_policy'
LANGUAGE C VOLATILE;

COMMENT ON FUNCTION icpml.apply_deploy_policy(integer, text) IS
  'Apply a deploy policy to a stored version, as training does: best (deploy if its CV ROC AUC beats the deployed model''s, or the rules'' on the same folds when none is deployed), always, never; says what was compared';

-- ---------------------------------------------------------------------------
-- Reading the store (SQL, SECURITY DEFINER: EXECUTE is the gate)
-- ---------------------------------------------------------------------------

CREATE FUNCTION icpml.list_models()
RETURNS TABLE (version integer, created_at timestamptz, created_by name, status text,
               relation text, label_column text, n_rows bigint, n_positive bigint,
               cv_roc_auc double precision, rules_cv_roc_auc double precision,
               xgboost_version text, model_bytes integer, key_column text, dataset text)
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
  SELECT m.version, m.created_at, m.created_by, m.status, m.relation, m.label_column,
         m.n_rows, m.n_positive, m.cv_roc_auc, m.rules_cv_roc_auc, m.xgboost_version,
         pg_catalog.octet_length(m.model), m.key_column, pg_catalog.left(m.dataset, 8)
  FROM icpml.models AS m
  ORDER BY m.version
$$;

COMMENT ON FUNCTION icpml.list_models() IS
  'Stored model versions, oldest first, with status, data size, cross-validated ROC AUC (model and rules) and the dataset each belongs to (the first 8 characters of icpml.models.dataset)';

-- The version a reader means: the given one (which must exist) or the deployed one.
CREATE FUNCTION icpml.model_version_or_deployed(version integer)
RETURNS integer
LANGUAGE plpgsql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  v integer;
BEGIN
  IF model_version_or_deployed.version IS NULL THEN
    SELECT m.version INTO v FROM icpml.models AS m WHERE m.status OPERATOR(pg_catalog.=) 'deployed';
    IF NOT FOUND THEN
      RAISE EXCEPTION 'no model is deployed'
        USING ERRCODE = 'no_data_found',
              HINT = 'Pass a version (see icpml.list_models()), or deploy one with icpml.deploy_model(version => ...).';
    END IF;
    RETURN v;
  END IF;
  PERFORM FROM icpml.models AS m WHERE m.version OPERATOR(pg_catalog.=) model_version_or_deployed.version;
  IF NOT FOUND THEN
    RAISE EXCEPTION 'model version % does not exist', model_version_or_deployed.version
      USING ERRCODE = 'no_data_found',
            HINT = 'List the stored versions with SELECT * FROM icpml.list_models().';
  END IF;
  RETURN model_version_or_deployed.version;
END
$$;

COMMENT ON FUNCTION icpml.model_version_or_deployed(integer) IS
  'The given model version if it exists, the deployed one when NULL; an error otherwise';

-- The model card describe_model adds: what a reviewer reads before a deploy.
CREATE FUNCTION icpml.model_card(version integer)
RETURNS jsonb
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
  SELECT pg_catalog.jsonb_build_object(
    'dataset', pg_catalog.jsonb_build_object(
      'id', m.dataset, 'relation', m.spec OPERATOR(pg_catalog.->>) 'relation',
      'key', m.spec OPERATOR(pg_catalog.->>) 'key', 'label', m.label_column,
      'feature_columns', pg_catalog.jsonb_array_length(m.spec OPERATOR(pg_catalog.->) 'columns'),
      'features', pg_catalog.jsonb_array_length(m.spec OPERATOR(pg_catalog.->) 'features'),
      'encoding', COALESCE(m.spec OPERATOR(pg_catalog.->) 'encoding',
                           '{"fold_text": false, "max_levels": 64, "max_tags": 32, "min_count": 5}'::pg_catalog.jsonb)),
    'data_window', pg_catalog.jsonb_build_object(
      'trained_at', m.created_at,
      'population_as_of', m.training_stats OPERATOR(pg_catalog.->) 'as_of',
      'dates', (SELECT pg_catalog.jsonb_object_agg(c OPERATOR(pg_catalog.->>) 'name', c OPERATOR(pg_catalog.->) 'window')
                FROM pg_catalog.jsonb_array_elements(m.training_stats OPERATOR(pg_catalog.->) 'columns') AS c
                WHERE c OPERATOR(pg_catalog.?) 'window')),
    'rows', pg_catalog.jsonb_build_object(
      'labelled', m.n_rows, 'positive', m.n_positive,
      'population', m.training_stats OPERATOR(pg_catalog.->) 'rows'),
    'label_rate', m.n_positive::pg_catalog.float8 OPERATOR(pg_catalog./) NULLIF(m.n_rows, 0),
    'cv', (m.metrics OPERATOR(pg_catalog.->) 'cv')
          OPERATOR(pg_catalog.||) pg_catalog.jsonb_build_object('folds', m.metrics OPERATOR(pg_catalog.->) 'folds'),
    'top_features', (SELECT pg_catalog.jsonb_agg(f.e ORDER BY f.i)
                     FROM pg_catalog.jsonb_array_elements(
                            CASE WHEN pg_catalog.jsonb_typeof(m.metrics OPERATOR(pg_catalog.->) 'importance') OPERATOR(pg_catalog.=) 'array'
                                 THEN m.metrics OPERATOR(pg_catalog.->) 'importance' ELSE '[]'::pg_catalog.jsonb END)
                          WITH ORDINALITY AS f(e, i)
                     WHERE f.i OPERATOR(pg_catalog.<=) 10),
    'training_statistics', (
      SELECT pg_catalog.jsonb_agg(pg_catalog.jsonb_build_object(
               'column', c.e OPERATOR(pg_catalog.->>) 'name', 'kind', c.e OPERATOR(pg_catalog.->>) 'kind',
               'missing', c.e OPERATOR(pg_catalog.->) 'missing')
             OPERATOR(pg_catalog.||) CASE
               WHEN c.e OPERATOR(pg_catalog.->>) 'kind' OPERATOR(pg_catalog.=) ANY (ARRAY['numeric', 'age_days'])
                 THEN pg_catalog.jsonb_build_object('deciles', c.e OPERATOR(pg_catalog.->) 'edges')
               WHEN c.e OPERATOR(pg_catalog.->>) 'kind' OPERATOR(pg_catalog.=) 'boolean'
                 THEN pg_catalog.jsonb_build_object('true', (c.e OPERATOR(pg_catalog.->) 'shares') OPERATOR(pg_catalog.->) 0)
               ELSE pg_catalog.jsonb_build_object('top', (
                 SELECT pg_catalog.jsonb_agg(pg_catalog.jsonb_build_object('value', l.v, 'share', l.s) ORDER BY l.s DESC, l.i)
                 FROM (SELECT lv.v, (c.e OPERATOR(pg_catalog.->) 'shares' OPERATOR(pg_catalog.->>) (lv.i OPERATOR(pg_catalog.-) 1)::integer)::pg_catalog.float8 AS s, lv.i
                       FROM pg_catalog.jsonb_array_elements_text(s.sc OPERATOR(pg_catalog.->) 'levels') WITH ORDINALITY AS lv(v, i)
                       ORDER BY 2 DESC, lv.i LIMIT 5) AS l))
             END ORDER BY c.i)
      FROM pg_catalog.jsonb_array_elements(m.training_stats OPERATOR(pg_catalog.->) 'columns') WITH ORDINALITY AS c(e, i)
      LEFT JOIN pg_catalog.jsonb_array_elements(m.spec OPERATOR(pg_catalog.->) 'columns') WITH ORDINALITY AS s(sc, j)
             ON s.j OPERATOR(pg_catalog.=) c.i),
    'scores_at_training', m.training_stats OPERATOR(pg_catalog.->) 'scores',
    'score_cutoffs', pg_catalog.to_jsonb(m.score_cutoffs),
    'params', m.params,
    'xgboost_version', m.xgboost_version)
  FROM icpml.models AS m
  WHERE m.version OPERATOR(pg_catalog.=) model_card.version
$$;

COMMENT ON FUNCTION icpml.model_card(integer) IS
  'A model version''s card (describe_model''s "card"): dataset and text encoding, data window, row counts, label rate, cross-validated metrics (model, rules, deployed recipe), top features, training statistics per column, score distribution at training, parameters, XGBoost version';

CREATE FUNCTION icpml.describe_model(version integer DEFAULT NULL)
RETURNS jsonb
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
  SELECT (pg_catalog.to_jsonb(m) OPERATOR(pg_catalog.-) 'model' OPERATOR(pg_catalog.-) 'training_labels')
         OPERATOR(pg_catalog.||)
         pg_catalog.jsonb_build_object('model_bytes', pg_catalog.octet_length(m.model),
                                       'card', icpml.model_card(m.version))
  FROM icpml.models AS m
  WHERE m.version OPERATOR(pg_catalog.=) icpml.model_version_or_deployed(describe_model.version)
$$;

COMMENT ON FUNCTION icpml.describe_model(integer) IS
  'Everything stored about a model version (the deployed one by default) except the blob and the training labels, plus the blob size in model_bytes and its model card in card (icpml.model_card)';

CREATE FUNCTION icpml.model_roc_curve(version integer DEFAULT NULL)
RETURNS TABLE (threshold double precision, fpr double precision, tpr double precision)
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
  SELECT (p.e OPERATOR(pg_catalog.->>) 'threshold')::double precision,
         (p.e OPERATOR(pg_catalog.->>) 'fpr')::double precision,
         (p.e OPERATOR(pg_catalog.->>) 'tpr')::double precision
  FROM icpml.models AS m,
       LATERAL pg_catalog.jsonb_array_elements(
         CASE WHEN pg_catalog.jsonb_typeof(m.metrics OPERATOR(pg_catalog.->) 'roc') OPERATOR(pg_catalog.=) 'array'
              THEN m.metrics OPERATOR(pg_catalog.->) 'roc' ELSE '[]'::pg_catalog.jsonb END)
         WITH ORDINALITY AS p(e, i)
  WHERE m.version OPERATOR(pg_catalog.=) icpml.model_version_or_deployed(model_roc_curve.version)
  ORDER BY p.i
$$;

COMMENT ON FUNCTION icpml.model_roc_curve(integer) IS
  'ROC curve of a model version (deployed by default) from its out-of-fold predictions: one point per threshold';

CREATE FUNCTION icpml.model_calibration(version integer DEFAULT NULL)
RETURNS TABLE (bin integer, mean_predicted double precision, observed_rate double precision,
               n bigint)
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
  SELECT (c.e OPERATOR(pg_catalog.->>) 'bin')::integer,
         (c.e OPERATOR(pg_catalog.->>) 'mean_predicted')::double precision,
         (c.e OPERATOR(pg_catalog.->>) 'observed_rate')::double precision,
         (c.e OPERATOR(pg_catalog.->>) 'n')::bigint
  FROM icpml.models AS m,
       LATERAL pg_catalog.jsonb_array_elements(
         CASE WHEN pg_catalog.jsonb_typeof(m.metrics OPERATOR(pg_catalog.->) 'calibration') OPERATOR(pg_catalog.=) 'array'
              THEN m.metrics OPERATOR(pg_catalog.->) 'calibration' ELSE '[]'::pg_catalog.jsonb END)
         WITH ORDINALITY AS c(e, i)
  WHERE m.version OPERATOR(pg_catalog.=) icpml.model_version_or_deployed(model_calibration.version)
  ORDER BY c.i
$$;

COMMENT ON FUNCTION icpml.model_calibration(integer) IS
  'Calibration of a model version (deployed by default): out-of-fold predictions in bins, mean predicted vs observed rate';

CREATE FUNCTION icpml.model_feature_importance(version integer DEFAULT NULL)
RETURNS TABLE (feature text, gain double precision, weight double precision)
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
  SELECT f.e OPERATOR(pg_catalog.->>) 'feature',
         (f.e OPERATOR(pg_catalog.->>) 'gain')::double precision,
         (f.e OPERATOR(pg_catalog.->>) 'weight')::double precision
  FROM icpml.models AS m,
       LATERAL pg_catalog.jsonb_array_elements(
         CASE WHEN pg_catalog.jsonb_typeof(m.metrics OPERATOR(pg_catalog.->) 'importance') OPERATOR(pg_catalog.=) 'array'
              THEN m.metrics OPERATOR(pg_catalog.->) 'importance' ELSE '[]'::pg_catalog.jsonb END)
         WITH ORDINALITY AS f(e, i)
  WHERE m.version OPERATOR(pg_catalog.=) icpml.model_version_or_deployed(model_feature_importance.version)
  ORDER BY (f.e OPERATOR(pg_catalog.->>) 'gain')::double precision DESC NULLS LAST, f.i
$$;

COMMENT ON FUNCTION icpml.model_feature_importance(integer) IS
  'Feature importance of a model version (deployed by default): total gain and split count per feature, most important first';
