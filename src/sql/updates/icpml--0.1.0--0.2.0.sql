-- icpml 0.1.0 -> 0.2.0
--
-- Everything the 0.2.0 install script (sql/parts/*.sql) has that 0.1.0's
-- (sql/frozen/icpml--0.1.0.sql) lacks, block by block, each copied from the
-- part it mirrors, then the data migration of the recommender: the context
-- vector grew from 23 entries to BANDIT_DIM (src/bandit.h), so old states and
-- pending impressions cannot be used by the 0.2.0 bandit.
-- sql/95_upgrade.sql checks that the upgraded catalog equals a fresh install.
\echo Use "ALTER EXTENSION icpml UPDATE TO '0.2.0'" to load this file. \quit

-- ---------------------------------------------------------------------------
-- 1. sql/parts/40_bandit.sql: icpml.bandit_settings, new columns (fatigue,
--    position bias, vocabularies of the one-hot context slots), with their
--    CHECKs (column constraints: same names as CREATE TABLE gives them) and
--    comments.  The existing row gets the defaults.
-- ---------------------------------------------------------------------------

ALTER TABLE icpml.bandit_settings
  ADD COLUMN fatigue_decay          double precision NOT NULL DEFAULT 0.9
                                      CHECK (fatigue_decay >= 0 AND fatigue_decay < 1),
  ADD COLUMN position_bias          double precision NOT NULL DEFAULT 1.0
                                      CHECK (position_bias BETWEEN 0 AND 4),
  ADD COLUMN industries             text[] CHECK (pg_catalog.cardinality(industries) <= 12),
  ADD COLUMN technologies           text[] CHECK (pg_catalog.cardinality(technologies) <= 24),
  ADD COLUMN personalization_prior  double precision NOT NULL DEFAULT 300.0
                                      CHECK (personalization_prior > 0 AND personalization_prior < 'Infinity');

COMMENT ON COLUMN icpml.bandit_settings.fatigue_decay IS
  'Fatigue: an impression the user did not act on counts fatigue_decay ^ (lists served to the user since) towards the fatigue feature of that account';
COMMENT ON COLUMN icpml.bandit_settings.position_bias IS
  'Position-based model: rank r is examined with probability (1 / log2(r + 1)) ^ position_bias, and an impression updates the bandit with its context scaled by that (0 = no correction; changing it needs rebuild_bandit_state())';
COMMENT ON COLUMN icpml.bandit_settings.industries IS
  'Industry vocabulary: context slot i is 1 for accounts of industries[i] (at most 12; NULL until set_bandit_vocabulary() or score_all() fills it)';
COMMENT ON COLUMN icpml.bandit_settings.technologies IS
  'Technology vocabulary: context slot i is 1 when the account''s tech_stack holds technologies[i] (at most 24)';
COMMENT ON COLUMN icpml.bandit_settings.personalization_prior IS
  'Ridge strength of a user''s model around the shared model: theta_user = (personalization_prior I + sum x x'')^-1 (personalization_prior theta_global + sum r x); larger = more data before a user departs from the shared model (changing it needs rebuild_bandit_state())';
COMMENT ON COLUMN icpml.bandit_settings.lambda IS
  'Ridge prior of the shared model: its state starts at A = lambda * I (changing it needs rebuild_bandit_state())';

-- ---------------------------------------------------------------------------
-- 2. sql/parts/40_bandit.sql: personalization_weight defaults to 1.0 (was 0.5).
--    The row takes the new default only where it still holds the old one: a
--    value someone chose is kept.
-- ---------------------------------------------------------------------------

ALTER TABLE icpml.bandit_settings ALTER COLUMN personalization_weight SET DEFAULT 1.0;

UPDATE icpml.bandit_settings SET personalization_weight = 1.0
WHERE personalization_weight = 0.5;

-- ---------------------------------------------------------------------------
-- 3. sql/parts/40_bandit.sql: icpml.set_bandit_vocabulary() and its comment,
--    verbatim.
-- ---------------------------------------------------------------------------

-- The industry and technology vocabularies of the context's one-hot slots.
-- Reads the feature relation as the caller; a column the relation does not
-- have gives an empty vocabulary.  Changing a vocabulary the bandit has
-- already learned with changes what its weights mean, so it needs reset.
CREATE FUNCTION icpml.set_bandit_vocabulary(
  industries text[] DEFAULT NULL,
  technologies text[] DEFAULT NULL,
  reset boolean DEFAULT false)
RETURNS TABLE(industry_slots text[], technology_slots text[])
LANGUAGE plpgsql VOLATILE
AS $$
#variable_conflict use_variable
DECLARE
  rel regclass;
  v_ind text[] := industries;
  v_tech text[] := technologies;
  old_ind text[];
  old_tech text[];
  learned boolean;
BEGIN
  IF v_ind IS NULL OR v_tech IS NULL THEN
    rel := pg_catalog.current_setting('icpml.feature_relation')::regclass;
  END IF;
  IF v_ind IS NULL THEN
    v_ind := '{}';
    IF EXISTS (SELECT FROM pg_catalog.pg_attribute
               WHERE attrelid = rel AND attname = 'industry' AND attnum > 0 AND NOT attisdropped) THEN
      EXECUTE pg_catalog.format(
        'SELECT pg_catalog.array_agg(v ORDER BY n DESC, v) FROM (SELECT f.industry::pg_catalog.text AS v,'
        ' pg_catalog.count(*) AS n FROM %s AS f WHERE f.industry IS NOT NULL GROUP BY 1'
        ' ORDER BY 2 DESC, 1 LIMIT 12) AS s', rel) INTO v_ind;
    END IF;
  END IF;
  IF v_tech IS NULL THEN
    v_tech := '{}';
    IF EXISTS (SELECT FROM pg_catalog.pg_attribute
               WHERE attrelid = rel AND attname = 'tech_stack' AND attnum > 0 AND NOT attisdropped) THEN
      EXECUTE pg_catalog.format(
        'SELECT pg_catalog.array_agg(v ORDER BY n DESC, v) FROM (SELECT t.v, pg_catalog.count(*) AS n'
        ' FROM %s AS f, pg_catalog.unnest(f.tech_stack::pg_catalog.text[]) AS t(v)'
        ' WHERE t.v IS NOT NULL GROUP BY 1 ORDER BY 2 DESC, 1 LIMIT 24) AS s', rel) INTO v_tech;
    END IF;
  END IF;
  v_ind := COALESCE(v_ind, '{}');
  v_tech := COALESCE(v_tech, '{}');
  IF pg_catalog.cardinality(v_ind) > 12 OR pg_catalog.cardinality(v_tech) > 24 THEN
    RAISE EXCEPTION 'too many vocabulary entries: % industries, % technologies',
        pg_catalog.cardinality(v_ind), pg_catalog.cardinality(v_tech)
      USING ERRCODE = 'invalid_parameter_value',
            HINT = 'The context has 12 industry slots and 24 technology slots; pass the most common ones.';
  END IF;
  IF pg_catalog.array_position(v_ind, NULL) IS NOT NULL OR pg_catalog.array_position(v_tech, NULL) IS NOT NULL
     OR (SELECT pg_catalog.count(DISTINCT e) <> pg_catalog.cardinality(v_ind) FROM pg_catalog.unnest(v_ind) AS e)
     OR (SELECT pg_catalog.count(DISTINCT e) <> pg_catalog.cardinality(v_tech) FROM pg_catalog.unnest(v_tech) AS e) THEN
    RAISE EXCEPTION 'vocabulary entries must be distinct and not NULL'
      USING ERRCODE = 'invalid_parameter_value';
  END IF;

  SELECT s.industries, s.technologies INTO old_ind, old_tech
  FROM icpml.bandit_settings AS s FOR UPDATE;
  IF old_ind IS DISTINCT FROM v_ind OR old_tech IS DISTINCT FROM v_tech THEN
    learned := EXISTS (SELECT FROM icpml.bandit_state AS st WHERE st.n > 0);
    IF learned AND (old_ind IS NOT NULL OR old_tech IS NOT NULL) AND NOT reset THEN
      RAISE EXCEPTION 'the bandit has learned with another vocabulary'
        USING ERRCODE = 'object_not_in_prerequisite_state',
              HINT = 'Pass reset => true to restart the bandit from its prior (icpml.recommendations is kept), or keep the current vocabulary.';
    END IF;
    IF reset THEN
      DELETE FROM icpml.bandit_state;
    END IF;
    UPDATE icpml.bandit_settings AS s SET industries = v_ind, technologies = v_tech;
  END IF;
  RETURN QUERY SELECT v_ind, v_tech;
END
$$;

COMMENT ON FUNCTION icpml.set_bandit_vocabulary(text[], text[], boolean) IS
  'Set the industry (<= 12) and technology (<= 24) vocabularies of the recommender''s context; NULL derives the most frequent from icpml.feature_relation; reset => true clears the bandit state when the vocabulary changes';

-- ---------------------------------------------------------------------------
-- 3b. sql/parts/40_bandit.sql: icpml.account_feedback (per-account sums of
--     finalized impressions, the context's account_engagement).
-- ---------------------------------------------------------------------------

CREATE TABLE icpml.account_feedback (
  account_id  bigint PRIMARY KEY,
  impressions bigint NOT NULL CHECK (impressions >= 0),
  examined    double precision NOT NULL CHECK (examined >= 0),
  reward      double precision NOT NULL
);

COMMENT ON TABLE icpml.account_feedback IS
  'What every user did with an account when it was recommended, summed over its finalized impressions: impressions, examined (each weighted by the examination probability of its rank) and reward; feeds the context''s account_engagement (rebuild_bandit_state() recomputes it)';

-- ---------------------------------------------------------------------------
-- 4. sql/parts/99_privileges.sql, as a fresh install applies it to the new
--    function: not executable by PUBLIC; service_role (Supabase) gets it from
--    grant_admin(); it is not one of grant_scoring()'s functions.  Roles you
--    gave icpml.grant_admin() yourself: run it again after the update.
-- ---------------------------------------------------------------------------

REVOKE ALL ON FUNCTION icpml.set_bandit_vocabulary(text[], text[], boolean) FROM PUBLIC;
REVOKE ALL ON TABLE icpml.account_feedback FROM PUBLIC;

DO $$
BEGIN
  IF EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = 'service_role') THEN
    GRANT EXECUTE ON FUNCTION icpml.set_bandit_vocabulary(text[], text[], boolean) TO service_role;
    GRANT ALL ON TABLE icpml.account_feedback TO service_role;
  END IF;
END
$$;

-- ---------------------------------------------------------------------------
-- 5. Data: the context vector has BANDIT_DIM entries in 0.2.0 (src/bandit.h),
--    23 in 0.1.0.  Every state row is a 23-dimensional model: delete them, the
--    bandit restarts from its prior.  A pending impression logged with a
--    23-entry context would update a BANDIT_DIM state when rewarded or
--    expired, so finalize each one now as expired with reward 0 (in
--    recommendation_id order, like process_feedback() expires them), which no
--    feedback path touches again.  The log is kept: rebuild_bandit_state()
--    skips contexts of another dimension.
-- ---------------------------------------------------------------------------

DELETE FROM icpml.bandit_state;

UPDATE icpml.recommendations AS r
SET status = 'expired', reward = 0, finalized_at = pg_catalog.now(), finalize_seq = o.seq
FROM (SELECT p.recommendation_id, pg_catalog.nextval('icpml.recommendations_finalize_seq') AS seq
      FROM (SELECT q.recommendation_id FROM icpml.recommendations AS q
            WHERE q.status = 'pending' AND pg_catalog.cardinality(q.context) = 23
            ORDER BY q.recommendation_id) AS p) AS o
WHERE r.recommendation_id = o.recommendation_id;

-- account_feedback from every finalized impression, as rebuild_bandit_state()
-- computes it (examination weight (1 / log2(rank + 1)) ^ position_bias).
INSERT INTO icpml.account_feedback (account_id, impressions, examined, reward)
SELECT r.account_id, pg_catalog.count(*),
       pg_catalog.sum(CASE WHEN r.rank <= 1 OR s.position_bias <= 0 THEN 1.0::pg_catalog.float8
                      ELSE pg_catalog.power(pg_catalog.ln(2.0::pg_catalog.float8)
                           / pg_catalog.ln(r.rank + 1.0::pg_catalog.float8), s.position_bias) END),
       pg_catalog.sum(COALESCE(r.reward, 0))
FROM icpml.recommendations AS r CROSS JOIN icpml.bandit_settings AS s
WHERE r.finalize_seq IS NOT NULL
GROUP BY r.account_id ORDER BY r.account_id;
