-- ---------------------------------------------------------------------------
-- Account recommendations: a contextual bandit whose state lives in tables
--
--   recommend_accounts()   retrieval of M candidates (account_scores, RLS as
--                          the caller) -> context vectors -> bandit ranking ->
--                          every served item logged in icpml.recommendations
--   feedback               user_interactions -> reward_map -> the impression
--                          that showed the account (within reward_window) ->
--                          one update of the bandit state per impression
--   rebuild                the state recomputed from the finalized log
-- ---------------------------------------------------------------------------

CREATE TABLE icpml.bandit_settings (
  singleton              boolean PRIMARY KEY DEFAULT true CHECK (singleton),
  default_policy         text NOT NULL DEFAULT 'linucb'
                           CHECK (default_policy IN ('linucb', 'thompson', 'greedy',
                                                     'epsilon_greedy', 'icp', 'random')),
  alpha                  double precision NOT NULL DEFAULT 0.25
                           CHECK (alpha >= 0 AND alpha <= 100),
  v                      double precision NOT NULL DEFAULT 0.1
                           CHECK (v >= 0 AND v <= 100),
  epsilon                double precision NOT NULL DEFAULT 0.1
                           CHECK (epsilon BETWEEN 0 AND 1),
  lambda                 double precision NOT NULL DEFAULT 1.0
                           CHECK (lambda >= 1e-6 AND lambda <= 1e9),
  icp_prior              double precision NOT NULL DEFAULT 0.3
                           CHECK (icp_prior >= -100 AND icp_prior <= 100),
  candidates             integer NOT NULL DEFAULT 1000 CHECK (candidates BETWEEN 1 AND 5000),
  reward_window          interval NOT NULL DEFAULT '7 days' CHECK (reward_window > '0'),
  gamma                  double precision NOT NULL DEFAULT 1.0 CHECK (gamma >= 1e-6 AND gamma <= 1),
  refactor_every         integer NOT NULL DEFAULT 100 CHECK (refactor_every >= 1),
  personalization        boolean NOT NULL DEFAULT true,
  personalization_weight double precision NOT NULL DEFAULT 1.0
                           CHECK (personalization_weight BETWEEN 0 AND 1),
  exclude_dismissed      boolean NOT NULL DEFAULT true,
  exclude_worked_types   text[] NOT NULL DEFAULT '{contact,meeting}',
  history_limit          integer NOT NULL DEFAULT 200 CHECK (history_limit BETWEEN 0 AND 100000),
  fatigue_decay          double precision NOT NULL DEFAULT 0.9
                           CHECK (fatigue_decay >= 0 AND fatigue_decay < 1),
  position_bias          double precision NOT NULL DEFAULT 1.0
                           CHECK (position_bias BETWEEN 0 AND 4),
  industries             text[] CHECK (pg_catalog.cardinality(industries) <= 12),
  technologies           text[] CHECK (pg_catalog.cardinality(technologies) <= 24),
  personalization_prior  double precision NOT NULL DEFAULT 300.0
                           CHECK (personalization_prior >= 1e-6 AND personalization_prior <= 1e9),
  reward_aggregate       text NOT NULL DEFAULT 'max' CHECK (reward_aggregate IN ('max', 'sum', 'first')),
  reward_cap             double precision NOT NULL DEFAULT 1.0
                           CHECK (reward_cap > 0 AND reward_cap <= 1000),
  state_updates          text NOT NULL DEFAULT 'queued' CHECK (state_updates IN ('queued', 'immediate')),
  attribution_wait       interval NOT NULL DEFAULT '5 seconds'
                           CHECK (attribution_wait >= '0' AND attribution_wait <= '1 minute'),
  affinity_share         double precision NOT NULL DEFAULT 0.3
                           CHECK (affinity_share BETWEEN 0 AND 1),
  fresh_share            double precision NOT NULL DEFAULT 0.05
                           CHECK (fresh_share BETWEEN 0 AND 1),
  explore_share          double precision NOT NULL DEFAULT 0.05
                           CHECK (explore_share BETWEEN 0 AND 1),
  fresh_window           interval NOT NULL DEFAULT '30 days' CHECK (fresh_window >= '0'),
  exclude_recent         interval NOT NULL DEFAULT '7 days' CHECK (exclude_recent >= '0'),
  exploit_slots          integer NOT NULL DEFAULT 2 CHECK (exploit_slots BETWEEN 0 AND 100),
  warm_start             integer NOT NULL DEFAULT 0 CHECK (warm_start >= 0),
  attribution            text NOT NULL DEFAULT 'funnel' CHECK (attribution IN ('funnel', 'latest')),
  CONSTRAINT bandit_settings_source_shares_check
    CHECK (affinity_share + fresh_share + explore_share <= 1)
);

COMMENT ON TABLE icpml.bandit_settings IS
  'One row: the recommender''s policy and its parameters (see the column comments); every number is finite and in a sane range (CHECK constraints, checked again by the recommender)';
COMMENT ON COLUMN icpml.bandit_settings.default_policy IS
  'Policy recommend_accounts uses when called with policy => NULL: linucb, thompson, greedy, epsilon_greedy, icp (rank by ICP probability) or random';
COMMENT ON COLUMN icpml.bandit_settings.alpha IS
  'LinUCB: score = expected reward + alpha * sqrt(x'' A^-1 x)';
COMMENT ON COLUMN icpml.bandit_settings.v IS
  'Thompson sampling: theta is drawn from N(theta_hat, v^2 A^-1)';
COMMENT ON COLUMN icpml.bandit_settings.epsilon IS
  'epsilon_greedy: each slot is a uniformly random remaining candidate with probability epsilon';
COMMENT ON COLUMN icpml.bandit_settings.lambda IS
  'Ridge prior of the shared model: its state starts at A = lambda * I (changing it needs rebuild_bandit_state())';
COMMENT ON COLUMN icpml.bandit_settings.icp_prior IS
  'Prior mean of the shared model''s weight on the ICP probability: before any feedback the expected reward is icp_prior * probability (changing it needs rebuild_bandit_state())';
COMMENT ON COLUMN icpml.bandit_settings.candidates IS
  'Default number M of candidates retrieved before ranking (1..5000; recommend_accounts accepts k..5000)';
COMMENT ON COLUMN icpml.bandit_settings.reward_window IS
  'An interaction rewards an impression of the same (user, account) served at most this long before it; unrewarded impressions expire with reward 0 after it';
COMMENT ON COLUMN icpml.bandit_settings.gamma IS
  'Forgetting factor: each update does A <- gamma * A + (1 - gamma) * lambda * I + x x'', b <- gamma * b + r x (1 = no forgetting; the prior is never forgotten)';
COMMENT ON COLUMN icpml.bandit_settings.refactor_every IS
  'The Cholesky factor gets rank-1 updates and is recomputed from A every this many updates (every update when gamma < 1)';
COMMENT ON COLUMN icpml.bandit_settings.personalization IS
  'Blend a per-user model (prior centred on the shared model) into the shared model';
COMMENT ON COLUMN icpml.bandit_settings.personalization_weight IS
  'Weight w of the per-user model: theta = (1 - w) * theta_global + w * theta_user';
COMMENT ON COLUMN icpml.bandit_settings.personalization_prior IS
  'Ridge strength of a user''s model around the shared model: theta_user = (personalization_prior I + sum x x'')^-1 (personalization_prior theta_global + sum r x); larger = more data before a user departs from the shared model (changing it needs rebuild_bandit_state())';
COMMENT ON COLUMN icpml.bandit_settings.exclude_dismissed IS
  'Never recommend an account the user dismissed';
COMMENT ON COLUMN icpml.bandit_settings.exclude_worked_types IS
  'Never recommend an account the user already has an interaction of one of these types with';
COMMENT ON COLUMN icpml.bandit_settings.history_limit IS
  'How many of the user''s most recent interactions feed the user-level context features';
COMMENT ON COLUMN icpml.bandit_settings.fatigue_decay IS
  'Fatigue: an impression the user did not act on counts fatigue_decay ^ (lists served to the user since) towards the fatigue feature of that account';
COMMENT ON COLUMN icpml.bandit_settings.position_bias IS
  'Position-based model: rank r is examined with probability (1 / log2(r + 1)) ^ position_bias, and an impression updates the bandit with its context scaled by that (0 = no correction; changing it needs rebuild_bandit_state())';
COMMENT ON COLUMN icpml.bandit_settings.industries IS
  'Industry vocabulary: context slot i is 1 for accounts of industries[i] (at most 12; NULL until set_bandit_vocabulary() or score_all() fills it)';
COMMENT ON COLUMN icpml.bandit_settings.affinity_share IS
  'Retrieval: share of the candidates from the user''s own segments (industries and size bands of the accounts in the user''s recent history); the icp source (top by ICP probability) takes what the three shares leave';
COMMENT ON COLUMN icpml.bandit_settings.fresh_share IS
  'Retrieval: share of the candidates from the newest accounts (first scored or researched within fresh_window), outside the ICP top';
COMMENT ON COLUMN icpml.bandit_settings.explore_share IS
  'Retrieval: share of the candidates drawn at random from outside the ICP top';
COMMENT ON COLUMN icpml.bandit_settings.fresh_window IS
  'Retrieval: an account counts as fresh this long after its first scoring or its latest research run';
COMMENT ON COLUMN icpml.bandit_settings.exclude_recent IS
  'Retrieval: an account the user had any interaction with this recently is not recommended (it is in the user''s pipeline already; 0: no such exclusion)';
COMMENT ON COLUMN icpml.bandit_settings.exploit_slots IS
  'Safe exploration: the first this many slots of a list go by the expected reward (posterior mean) under linucb, thompson and epsilon_greedy; they explore below';
COMMENT ON COLUMN icpml.bandit_settings.warm_start IS
  'Warm start: below exploit_slots, the share warm_start / (n + warm_start) of the slots also goes by the expected reward, n the impressions the shared model learnt from (0: off)';
COMMENT ON COLUMN icpml.bandit_settings.technologies IS
  'Technology vocabulary: context slot i is 1 when the account''s tech_stack holds technologies[i] (at most 24)';
COMMENT ON COLUMN icpml.bandit_settings.reward_aggregate IS
  'Reward of an impression from the interactions attributed to it within reward_window: max (the best one), sum (capped at reward_cap) or first (the first one only); a later interaction that changes it updates the bandit by the difference, the impression still counts once';
COMMENT ON COLUMN icpml.bandit_settings.reward_cap IS
  'reward_aggregate sum: an impression''s reward is at most this';
COMMENT ON COLUMN icpml.bandit_settings.state_updates IS
  'How feedback updates the shared model: queued (writers append to icpml.bandit_queue, whoever holds the shared row folds it; no writer waits for another) or immediate (each writer updates it under its row lock, in order); forgetting (gamma < 1) is always immediate';
COMMENT ON COLUMN icpml.bandit_settings.attribution IS
  'Which impression of the (user, account) in the window an interaction credits: funnel (the most recent one an interaction rewarded already -- a later step of a funnel follows the impression it started from, and a re-show meanwhile expires with 0 --, else the most recent one) or latest (always the most recent one)';
COMMENT ON COLUMN icpml.bandit_settings.attribution_wait IS
  'Longest an interaction waits for a list being served to the same user to commit before it is attributed (0: never wait; the list''s impressions are then not seen by it)';

INSERT INTO icpml.bandit_settings DEFAULT VALUES;

CREATE TABLE icpml.reward_map (
  interaction_type text PRIMARY KEY,
  reward           double precision NOT NULL
                     CHECK (reward >= -1000 AND reward <= 1000)
);

COMMENT ON TABLE icpml.reward_map IS
  'Reward of an impression by the interaction that followed it; types not listed here reward nothing (the impression stays pending and expires with 0)';

INSERT INTO icpml.reward_map (interaction_type, reward) VALUES
  ('view', 0.1), ('research', 0.3), ('save', 0.5), ('contact', 0.7), ('meeting', 1.0),
  ('dismiss', 0.0);

CREATE TRIGGER bandit_settings_invalidate
  AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON icpml.bandit_settings
  FOR EACH STATEMENT EXECUTE FUNCTION icpml.invalidate_cache();
CREATE TRIGGER reward_map_invalidate
  AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON icpml.reward_map
  FOR EACH STATEMENT EXECUTE FUNCTION icpml.invalidate_cache();

-- Every write of a state row takes a new version from this sequence.
CREATE SEQUENCE icpml.bandit_state_version_seq;

CREATE TABLE icpml.bandit_state (
  scope                  text PRIMARY KEY
                           CHECK (scope = 'global' OR scope ~ '^user:[0-9a-f-]{36}$'
                                  OR scope ~ '^variant:[a-z0-9][a-z0-9_-]{0,62}/[a-z0-9][a-z0-9_-]{0,62}$'),
  dim                    integer NOT NULL CHECK (dim BETWEEN 1 AND 64),
  a                      double precision[] NOT NULL,
  b                      double precision[] NOT NULL,
  chol                   double precision[] NOT NULL,
  n                      bigint NOT NULL DEFAULT 0,
  updates_since_refactor integer NOT NULL DEFAULT 0,
  version                bigint NOT NULL,
  updated_at             timestamptz NOT NULL DEFAULT now()
);

COMMENT ON TABLE icpml.bandit_state IS
  'Sufficient statistics of the ridge-regression bandit: A = lambda I + sum x x'' (dim x dim), b = sum r x, chol = lower Cholesky factor of A, n = updates; scope global (shared model), variant:<experiment>/<variant> (an experiment variant''s own shared model) or user:<uuid> (personalisation)';

CREATE TABLE icpml.account_feedback (
  account_id  bigint PRIMARY KEY,
  impressions bigint NOT NULL CHECK (impressions >= 0),
  examined    double precision NOT NULL CHECK (examined >= 0),
  reward      double precision NOT NULL
);

COMMENT ON TABLE icpml.account_feedback IS
  'What every user did with an account when it was recommended, summed over its finalized impressions: impressions, examined (each weighted by the examination probability of its rank) and reward; feeds the context''s account_engagement (rebuild_bandit_state() recomputes it)';

CREATE SEQUENCE icpml.recommendations_finalize_seq;

CREATE TABLE icpml.recommendations (
  recommendation_id     bigserial PRIMARY KEY,
  served_at             timestamptz NOT NULL DEFAULT now(),
  user_id               uuid NOT NULL,
  account_id            bigint NOT NULL,
  rank                  integer NOT NULL,
  policy                text NOT NULL,
  context               real[] NOT NULL,
  score                 double precision NOT NULL,
  expected_reward       double precision NOT NULL,
  propensity            double precision NOT NULL CHECK (propensity > 0 AND propensity <= 1),
  state_version         bigint NOT NULL,
  status                text NOT NULL DEFAULT 'pending'
                          CHECK (status IN ('pending', 'rewarded', 'expired')),
  reward                double precision,
  reward_interaction_id bigint,
  finalized_at          timestamptz,
  finalize_seq          bigint UNIQUE,
  experiment            text,
  variant               text,
  source                text,
  state_scope           text,
  CHECK ((status = 'pending') = (finalize_seq IS NULL)),
  CHECK ((experiment IS NULL) = (variant IS NULL))
);

COMMENT ON TABLE icpml.recommendations IS
  'Every served recommendation (one row per listed account) with its context vector and propensity; status pending -> rewarded (an interaction within reward_window) or expired (reward 0); finalize_seq orders the state updates';
COMMENT ON COLUMN icpml.recommendations.reward IS
  'The impression''s reward: the aggregate (bandit_settings.reward_aggregate) of the interactions attributed to it so far (icpml.feedback_events); 0 when it expired, NULL while pending';
COMMENT ON COLUMN icpml.recommendations.reward_interaction_id IS
  'The interaction that last changed the reward';
COMMENT ON COLUMN icpml.recommendations.finalized_at IS
  'When the impression was first rewarded or expired (its reward may still rise within reward_window)';
COMMENT ON COLUMN icpml.recommendations.experiment IS
  'The experiment (icpml.experiments) that chose the policy of this row; NULL outside experiments';
COMMENT ON COLUMN icpml.recommendations.variant IS
  'The experiment''s variant the user is assigned to (holdout for a held-out user); NULL outside experiments';
COMMENT ON COLUMN icpml.recommendations.source IS
  'The retrieval source the account came from (e.g. icp, affinity, fresh, explore); NULL when not logged (rows served before sources existed)';
COMMENT ON COLUMN icpml.recommendations.state_scope IS
  'The shared bandit state this impression''s feedback trains: NULL the global one, variant:<experiment>/<variant> an experiment variant''s own, none a holdout impression (trains no state at all)';

-- attribution: the open impressions of (user, account), newest first
CREATE INDEX recommendations_open_idx ON icpml.recommendations
  (user_id, account_id, recommendation_id DESC) WHERE status <> 'expired';
CREATE INDEX recommendations_pending_served_idx ON icpml.recommendations
  (served_at) WHERE status = 'pending';
CREATE INDEX recommendations_rewarded_served_idx ON icpml.recommendations
  (served_at) WHERE status = 'rewarded';
CREATE INDEX recommendations_reward_interaction_idx ON icpml.recommendations
  (reward_interaction_id) WHERE reward_interaction_id IS NOT NULL;
CREATE INDEX recommendations_user_finalized_idx ON icpml.recommendations
  (user_id, finalize_seq) WHERE finalize_seq IS NOT NULL;
CREATE INDEX recommendations_user_served_idx ON icpml.recommendations
  (user_id, served_at DESC);

CREATE FUNCTION icpml.recommend_accounts(
  user_id uuid,
  k integer DEFAULT 10,
  policy text DEFAULT NULL,
  candidates integer DEFAULT NULL,
  seed bigint DEFAULT NULL)
RETURNS TABLE(rank integer, account_id bigint, ranking_score double precision,
              expected_reward double precision, exploration double precision,
              icp_score integer, priority text, reason jsonb, recommendation_id bigint,
              score double precision)
AS 'MODULE_PATHNAME', 'recommend_accounts'
LANGUAGE C VOLATILE
ROWS 10;

COMMENT ON FUNCTION icpml.recommend_accounts(uuid, integer, text, integer, bigint) IS
  'The k (1..100) accounts this user should work next, ranked by the bandit policy over M (k..5000) candidates the caller may see; every row is logged for feedback. ranking_score is the value the policy ranked by (not the ICP score: that is icp_score); score is the same value under its 0.3 name, deprecated, removed in 0.5';

-- Statement trigger on the interactions relation (installed by
-- enable_online_feedback): attributes new interactions to pending impressions.
CREATE FUNCTION icpml.feedback_trigger()
RETURNS trigger
AS 'MODULE_PATHNAME', 'feedback_trigger'
LANGUAGE C
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp;

COMMENT ON FUNCTION icpml.feedback_trigger() IS
  'AFTER INSERT statement trigger on the interactions relation: rewards pending recommendations and updates the bandit once per impression';

CREATE FUNCTION icpml.process_feedback(as_of timestamptz DEFAULT now(),
                                       attribute boolean DEFAULT true)
RETURNS TABLE(rewarded bigint, expired bigint, improved bigint, folded bigint)
AS 'MODULE_PATHNAME', 'process_feedback'
LANGUAGE C VOLATILE STRICT;

COMMENT ON FUNCTION icpml.process_feedback(timestamptz, boolean) IS
  'Batch feedback (pg_cron): attribute interactions up to as_of not yet attributed (unless attribute => false), expire impressions older than reward_window with reward 0, fold the queued updates into the shared model; returns impressions rewarded, expired, rewards improved, queued updates folded';

CREATE FUNCTION icpml.rebuild_bandit_state()
RETURNS bigint
AS 'MODULE_PATHNAME', 'rebuild_bandit_state'
LANGUAGE C VOLATILE;

COMMENT ON FUNCTION icpml.rebuild_bandit_state() IS
  'Recompute every bandit state row from the finalized recommendations, in finalization order; returns the number of impressions replayed';

-- enable_online_feedback, disable_online_feedback and set_bandit_vocabulary
-- resolve icpml.interactions_relation / icpml.feature_relation with the
-- caller's search_path (as recommend_accounts and icp_score do), so they
-- cannot pin one: they run as the caller (SECURITY INVOKER), and every
-- function, operator and type they name is schema-qualified, so the
-- caller's path only chooses the relation.  The settings are read with
-- current_setting(name, true) and the built-in default: a new session that
-- has not loaded icpml's library yet has no such parameters defined.
CREATE FUNCTION icpml.enable_online_feedback()
RETURNS regclass
LANGUAGE plpgsql VOLATILE
AS $$
DECLARE
  rel pg_catalog.regclass;
  col pg_catalog.text;
  typ pg_catalog.oid;
  base pg_catalog.oid;
  kind pg_catalog."char";
BEGIN
  rel := COALESCE(pg_catalog.current_setting('icpml.interactions_relation', true),
                  'public.user_interactions')::pg_catalog.regclass;
  FOREACH col IN ARRAY ARRAY['interaction_id', 'user_id', 'account_id', 'interaction_type', 'created_at']::pg_catalog.text[] LOOP
    SELECT a.atttypid INTO typ FROM pg_catalog.pg_attribute AS a
    WHERE a.attrelid OPERATOR(pg_catalog.=) rel AND a.attname OPERATOR(pg_catalog.=) col
      AND a.attnum OPERATOR(pg_catalog.>) 0 AND NOT a.attisdropped;
    IF NOT FOUND THEN
      RAISE EXCEPTION 'column "%" does not exist in interactions relation %', col, rel
        USING ERRCODE = 'undefined_column',
              HINT = 'The interactions relation needs interaction_id, user_id, account_id, interaction_type and created_at.';
    END IF;
    -- the trigger reads these columns as the extension owner: built-in
    -- types (or domains over them) only
    LOOP
      SELECT t.typtype, t.typbasetype INTO kind, base FROM pg_catalog.pg_type AS t
      WHERE t.oid OPERATOR(pg_catalog.=) typ;
      EXIT WHEN kind OPERATOR(pg_catalog.<>) 'd';
      typ := base;
    END LOOP;
    IF typ OPERATOR(pg_catalog.>=) 16384::pg_catalog.oid THEN
      RAISE EXCEPTION 'column "%" of interactions relation % has a user-defined type', col, rel
        USING ERRCODE = 'datatype_mismatch',
              HINT = 'The online feedback trigger reads these columns as the extension owner; use built-in types (uuid, bigint, text, timestamptz).';
    END IF;
  END LOOP;
  EXECUTE pg_catalog.format('DROP TRIGGER IF EXISTS icpml_feedback ON %I.%I',
                            (SELECT n.nspname FROM pg_catalog.pg_class AS c
                             JOIN pg_catalog.pg_namespace AS n ON n.oid OPERATOR(pg_catalog.=) c.relnamespace
                             WHERE c.oid OPERATOR(pg_catalog.=) rel),
                            (SELECT c.relname FROM pg_catalog.pg_class AS c WHERE c.oid OPERATOR(pg_catalog.=) rel));
  EXECUTE pg_catalog.format(
    'CREATE TRIGGER icpml_feedback AFTER INSERT ON %I.%I REFERENCING NEW TABLE AS icpml_new '
    'FOR EACH STATEMENT EXECUTE FUNCTION icpml.feedback_trigger()',
    (SELECT n.nspname FROM pg_catalog.pg_class AS c
     JOIN pg_catalog.pg_namespace AS n ON n.oid OPERATOR(pg_catalog.=) c.relnamespace
     WHERE c.oid OPERATOR(pg_catalog.=) rel),
    (SELECT c.relname FROM pg_catalog.pg_class AS c WHERE c.oid OPERATOR(pg_catalog.=) rel));
  -- and the recommender's per-user profiles (42_retrieval.sql): the
  -- triggers that keep them current, then every row built
  PERFORM icpml.set_profile_triggers(rel, true);
  PERFORM icpml.rebuild_user_profiles();
  RETURN rel;
END
$$;

COMMENT ON FUNCTION icpml.enable_online_feedback() IS
  'Install the feedback trigger on icpml.interactions_relation: new interactions reward recommendations at once; also builds icpml.user_profiles and installs the triggers that keep it current';

CREATE FUNCTION icpml.disable_online_feedback()
RETURNS regclass
LANGUAGE plpgsql VOLATILE
AS $$
DECLARE
  rel pg_catalog.regclass;
BEGIN
  rel := COALESCE(pg_catalog.current_setting('icpml.interactions_relation', true),
                  'public.user_interactions')::pg_catalog.regclass;
  EXECUTE pg_catalog.format('DROP TRIGGER IF EXISTS icpml_feedback ON %I.%I',
                            (SELECT n.nspname FROM pg_catalog.pg_class AS c
                             JOIN pg_catalog.pg_namespace AS n ON n.oid OPERATOR(pg_catalog.=) c.relnamespace
                             WHERE c.oid OPERATOR(pg_catalog.=) rel),
                            (SELECT c.relname FROM pg_catalog.pg_class AS c WHERE c.oid OPERATOR(pg_catalog.=) rel));
  PERFORM icpml.set_profile_triggers(rel, false);
  RETURN rel;
END
$$;

COMMENT ON FUNCTION icpml.disable_online_feedback() IS
  'Remove the feedback trigger from icpml.interactions_relation (use process_feedback() from pg_cron instead)';

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
  rel pg_catalog.regclass;
  v_ind pg_catalog.text[] := industries;
  v_tech pg_catalog.text[] := technologies;
  old_ind pg_catalog.text[];
  old_tech pg_catalog.text[];
  learned boolean;
BEGIN
  IF v_ind IS NULL OR v_tech IS NULL THEN
    rel := COALESCE(pg_catalog.current_setting('icpml.feature_relation', true),
                    'public.account_features')::pg_catalog.regclass;
  END IF;
  IF v_ind IS NULL THEN
    v_ind := '{}';
    IF EXISTS (SELECT FROM pg_catalog.pg_attribute AS a
               WHERE a.attrelid OPERATOR(pg_catalog.=) rel AND a.attname OPERATOR(pg_catalog.=) 'industry'
                 AND a.attnum OPERATOR(pg_catalog.>) 0 AND NOT a.attisdropped) THEN
      EXECUTE pg_catalog.format(
        'SELECT pg_catalog.array_agg(v ORDER BY n DESC, v) FROM (SELECT f.industry::pg_catalog.text AS v,'
        ' pg_catalog.count(*) AS n FROM %s AS f WHERE f.industry IS NOT NULL GROUP BY 1'
        ' ORDER BY 2 DESC, 1 LIMIT 12) AS s', rel) INTO v_ind;
    END IF;
  END IF;
  IF v_tech IS NULL THEN
    v_tech := '{}';
    IF EXISTS (SELECT FROM pg_catalog.pg_attribute AS a
               WHERE a.attrelid OPERATOR(pg_catalog.=) rel AND a.attname OPERATOR(pg_catalog.=) 'tech_stack'
                 AND a.attnum OPERATOR(pg_catalog.>) 0 AND NOT a.attisdropped) THEN
      EXECUTE pg_catalog.format(
        'SELECT pg_catalog.array_agg(v ORDER BY n DESC, v) FROM (SELECT t.v, pg_catalog.count(*) AS n'
        ' FROM %s AS f, pg_catalog.unnest(f.tech_stack::pg_catalog.text[]) AS t(v)'
        ' WHERE t.v IS NOT NULL GROUP BY 1 ORDER BY 2 DESC, 1 LIMIT 24) AS s', rel) INTO v_tech;
    END IF;
  END IF;
  v_ind := COALESCE(v_ind, '{}');
  v_tech := COALESCE(v_tech, '{}');
  IF pg_catalog.cardinality(v_ind) OPERATOR(pg_catalog.>) 12
     OR pg_catalog.cardinality(v_tech) OPERATOR(pg_catalog.>) 24 THEN
    RAISE EXCEPTION 'too many vocabulary entries: % industries, % technologies',
        pg_catalog.cardinality(v_ind), pg_catalog.cardinality(v_tech)
      USING ERRCODE = 'invalid_parameter_value',
            HINT = 'The context has 12 industry slots and 24 technology slots; pass the most common ones.';
  END IF;
  IF pg_catalog.array_position(v_ind, NULL) IS NOT NULL OR pg_catalog.array_position(v_tech, NULL) IS NOT NULL
     OR (SELECT pg_catalog.count(DISTINCT e) OPERATOR(pg_catalog.<>) pg_catalog.cardinality(v_ind)
         FROM pg_catalog.unnest(v_ind) AS e)
     OR (SELECT pg_catalog.count(DISTINCT e) OPERATOR(pg_catalog.<>) pg_catalog.cardinality(v_tech)
         FROM pg_catalog.unnest(v_tech) AS e) THEN
    RAISE EXCEPTION 'vocabulary entries must be distinct and not NULL'
      USING ERRCODE = 'invalid_parameter_value';
  END IF;

  SELECT s.industries, s.technologies INTO old_ind, old_tech
  FROM icpml.bandit_settings AS s FOR UPDATE;
  -- "IS DISTINCT FROM", spelt with the qualified operator
  IF (old_ind IS NULL) OPERATOR(pg_catalog.<>) (v_ind IS NULL)
     OR (old_tech IS NULL) OPERATOR(pg_catalog.<>) (v_tech IS NULL)
     OR old_ind OPERATOR(pg_catalog.<>) v_ind OR old_tech OPERATOR(pg_catalog.<>) v_tech THEN
    learned := EXISTS (SELECT FROM icpml.bandit_state AS st WHERE st.n OPERATOR(pg_catalog.>) 0);
    IF learned AND (old_ind IS NOT NULL OR old_tech IS NOT NULL) AND NOT reset THEN
      RAISE EXCEPTION 'the bandit has learned with another vocabulary'
        USING ERRCODE = 'object_not_in_prerequisite_state',
              HINT = 'Pass reset => true to restart the bandit from its prior (icpml.recommendations is kept), or keep the current vocabulary.';
    END IF;
    IF reset THEN
      DELETE FROM icpml.bandit_state;
      DELETE FROM icpml.bandit_queue;
    END IF;
    UPDATE icpml.bandit_settings AS s SET industries = v_ind, technologies = v_tech;
  END IF;
  RETURN QUERY SELECT v_ind, v_tech;
END
$$;

COMMENT ON FUNCTION icpml.set_bandit_vocabulary(text[], text[], boolean) IS
  'Set the industry (<= 12) and technology (<= 24) vocabularies of the recommender''s context; NULL derives the most frequent from icpml.feature_relation; reset => true clears the bandit state when the vocabulary changes';
