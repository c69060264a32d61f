-- ---------------------------------------------------------------------------
-- Retrieval: what recommend_accounts reads to find its M candidates without
-- probing the user's tables row by row (docs/recommender.md, "Retrieval").
--
--   account_candidates  every scored account with its probability and the
--                       raw signals of the recommender's context, written by
--                       the scoring functions as they score (candidates.c);
--                       one index per retrieval source
--   user_profiles       one compact row per sales user: the accounts the user
--                       excluded (dismissed, worked) and the user's most
--                       recent interactions with those accounts' attributes,
--                       kept current by a trigger on the interactions relation
--                       (profile.c; enable_online_feedback() installs it)
-- ---------------------------------------------------------------------------

CREATE TABLE icpml.account_candidates (
  account_id        bigint PRIMARY KEY,
  probability       double precision NOT NULL,
  score             integer NOT NULL CHECK (score BETWEEN 1 AND 10),
  priority          text NOT NULL CHECK (priority IN ('high', 'medium', 'low')),
  industry          text,
  size_band         smallint CHECK (size_band BETWEEN 0 AND 4),
  engineering_roles real,
  hiring            boolean,
  open_roles        real,
  blog              boolean,
  funding_date      date,
  researched_at     timestamptz,
  tech_stack        text[],
  signature         bigint NOT NULL,
  explore_key       integer NOT NULL,
  first_scored_at   timestamptz NOT NULL,
  updated_at        timestamptz NOT NULL,
  fresh_at          timestamptz GENERATED ALWAYS AS (GREATEST(first_scored_at, researched_at)) STORED
);

CREATE INDEX account_candidates_probability_idx
  ON icpml.account_candidates (probability DESC, account_id);
CREATE INDEX account_candidates_segment_idx
  ON icpml.account_candidates (industry, size_band, probability DESC, account_id);
CREATE INDEX account_candidates_fresh_idx
  ON icpml.account_candidates (fresh_at DESC, account_id);
CREATE INDEX account_candidates_explore_idx
  ON icpml.account_candidates (explore_key, account_id);

COMMENT ON TABLE icpml.account_candidates IS
  'What recommend_accounts retrieves from: every scored account with its probability, score and priority and the raw signals of the recommender''s context, as of its last scoring (the scoring functions write it; icpml.refresh_candidates() re-reads it)';
COMMENT ON COLUMN icpml.account_candidates.size_band IS
  'Company size band 0..4 (under 50, 50-199, 200-999, 1000-4999, 5000 and more); NULL when unknown';
COMMENT ON COLUMN icpml.account_candidates.signature IS
  'A hash of the row''s values: a rescore that changes nothing does not rewrite the row';
COMMENT ON COLUMN icpml.account_candidates.explore_key IS
  'A fixed hash of the account id: the "explore" source reads a random run of accounts in this order';
COMMENT ON COLUMN icpml.account_candidates.first_scored_at IS
  'When the account was first scored (with fresh_at, the "fresh" source); -infinity for the accounts of the table''s first fill';
COMMENT ON COLUMN icpml.account_candidates.updated_at IS
  'When the row''s values last changed';
COMMENT ON COLUMN icpml.account_candidates.fresh_at IS
  'The later of first_scored_at and researched_at: new accounts and fresh research come first in the "fresh" source';

CREATE FUNCTION icpml.refresh_candidates()
RETURNS bigint
AS 'MODULE_PATHNAME', 'refresh_candidates'
LANGUAGE C VOLATILE;

COMMENT ON FUNCTION icpml.refresh_candidates() IS
  'Re-read the recommender''s signals of every account in icpml.account_scores from icpml.feature_relation (as the caller) into icpml.account_candidates, without rescoring; returns the rows written';

CREATE TABLE icpml.user_profiles (
  user_id           uuid PRIMARY KEY,
  valid             boolean NOT NULL DEFAULT true,
  types             text[] NOT NULL DEFAULT '{}',
  sticky_types      text[] NOT NULL DEFAULT '{}',
  sticky_accounts   bigint[] NOT NULL DEFAULT '{}',
  sticky_masks      integer[] NOT NULL DEFAULT '{}',
  industries        text[] NOT NULL DEFAULT '{}',
  technologies      text[] NOT NULL DEFAULT '{}',
  recent_accounts   bigint[] NOT NULL DEFAULT '{}',
  recent_types      smallint[] NOT NULL DEFAULT '{}',
  recent_at         timestamptz[] NOT NULL DEFAULT '{}',
  recent_industries smallint[] NOT NULL DEFAULT '{}',
  recent_size_bands smallint[] NOT NULL DEFAULT '{}',
  recent_techs      bigint[] NOT NULL DEFAULT '{}',
  updated_at        timestamptz NOT NULL DEFAULT now()
);

ALTER TABLE icpml.user_profiles
  ALTER COLUMN sticky_accounts SET STORAGE EXTERNAL,
  ALTER COLUMN sticky_masks SET STORAGE EXTERNAL,
  ALTER COLUMN recent_accounts SET STORAGE EXTERNAL,
  ALTER COLUMN recent_at SET STORAGE EXTERNAL,
  ALTER COLUMN recent_techs SET STORAGE EXTERNAL;

COMMENT ON TABLE icpml.user_profiles IS
  'One row per sales user, what recommend_accounts needs to know about the user in one read: the accounts the user dismissed or worked (sticky_*, all time) and the user''s most recent interactions with the attributes of those accounts (recent_*); kept current by the icpml_profile trigger on the interactions relation (enable_online_feedback() installs it and builds the rows)';
COMMENT ON COLUMN icpml.user_profiles.valid IS
  'false after an UPDATE or DELETE of the user''s interactions: recommend_accounts reads the interactions themselves until icpml.rebuild_user_profiles() rebuilds the row';
COMMENT ON COLUMN icpml.user_profiles.types IS
  'The interaction types of recent_types (recent_types[i] indexes this array, 0-based)';
COMMENT ON COLUMN icpml.user_profiles.sticky_types IS
  'The interaction types that exclude an account (dismiss and bandit_settings.exclude_worked_types when the row was built): bit i of sticky_masks is sticky_types[i + 1]';
COMMENT ON COLUMN icpml.user_profiles.sticky_accounts IS
  'Every account the user ever had an interaction of a sticky type with, sorted; sticky_masks says which types';
COMMENT ON COLUMN icpml.user_profiles.recent_accounts IS
  'The user''s most recent interactions (at least 1000, or bandit_settings.history_limit), newest first: account, type, time, and the account''s industry (index into industries, -1 unknown), size band (-1 unknown) and technologies (bits of technologies) when the interaction was recorded';

CREATE FUNCTION icpml.profile_trigger()
RETURNS trigger
AS 'MODULE_PATHNAME', 'profile_trigger'
LANGUAGE C
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp;

COMMENT ON FUNCTION icpml.profile_trigger() IS
  'Statement triggers on the interactions relation (enable_online_feedback() installs them): new interactions update their users'' rows of icpml.user_profiles; an UPDATE or DELETE marks the users'' rows for a rebuild; TRUNCATE empties the table';

-- Install or drop the four profile triggers on the interactions relation;
-- enable_online_feedback() (which then builds every profile with
-- rebuild_user_profiles()) and disable_online_feedback() call it.  The
-- caller must own the relation.
CREATE FUNCTION icpml.set_profile_triggers(rel regclass, enabled boolean)
RETURNS void
LANGUAGE plpgsql VOLATILE STRICT
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  nsp pg_catalog.name;
  tab pg_catalog.name;
  trg pg_catalog.name;
BEGIN
  SELECT n.nspname, c.relname INTO nsp, tab FROM pg_catalog.pg_class AS c
  JOIN pg_catalog.pg_namespace AS n ON n.oid OPERATOR(pg_catalog.=) c.relnamespace
  WHERE c.oid OPERATOR(pg_catalog.=) rel;
  FOR trg IN SELECT t.tgname FROM pg_catalog.pg_trigger AS t
             WHERE t.tgrelid OPERATOR(pg_catalog.=) rel
               AND t.tgname OPERATOR(pg_catalog.=) ANY (ARRAY['icpml_profile_insert', 'icpml_profile_update',
                                                             'icpml_profile_delete', 'icpml_profile_truncate'])
  LOOP
    EXECUTE pg_catalog.format('DROP TRIGGER %I ON %I.%I', trg, nsp, tab);
  END LOOP;
  IF NOT enabled THEN
    RETURN;
  END IF;
  EXECUTE pg_catalog.format('CREATE TRIGGER icpml_profile_insert AFTER INSERT ON %I.%I'
    ' REFERENCING NEW TABLE AS icpml_new FOR EACH STATEMENT EXECUTE FUNCTION icpml.profile_trigger()', nsp, tab);
  EXECUTE pg_catalog.format('CREATE TRIGGER icpml_profile_update AFTER UPDATE ON %I.%I'
    ' REFERENCING OLD TABLE AS icpml_old NEW TABLE AS icpml_new FOR EACH STATEMENT'
    ' EXECUTE FUNCTION icpml.profile_trigger()', nsp, tab);
  EXECUTE pg_catalog.format('CREATE TRIGGER icpml_profile_delete AFTER DELETE ON %I.%I'
    ' REFERENCING OLD TABLE AS icpml_old FOR EACH STATEMENT EXECUTE FUNCTION icpml.profile_trigger()', nsp, tab);
  EXECUTE pg_catalog.format('CREATE TRIGGER icpml_profile_truncate AFTER TRUNCATE ON %I.%I'
    ' FOR EACH STATEMENT EXECUTE FUNCTION icpml.profile_trigger()', nsp, tab);
END
$$;

COMMENT ON FUNCTION icpml.set_profile_triggers(regclass, boolean) IS
  'Install (enabled => true) or drop the triggers that keep icpml.user_profiles current on an interactions relation; enable_online_feedback() and disable_online_feedback() call it (after installing, rebuild_user_profiles() builds the rows)';

CREATE FUNCTION icpml.rebuild_user_profiles(only_invalid boolean DEFAULT false)
RETURNS bigint
AS 'MODULE_PATHNAME', 'rebuild_user_profiles'
LANGUAGE C VOLATILE STRICT;

COMMENT ON FUNCTION icpml.rebuild_user_profiles(boolean) IS
  'Rebuild icpml.user_profiles from the interactions relation (read as the caller: run it as a role that sees every interaction); only_invalid => true rebuilds only the rows an UPDATE or DELETE invalidated; returns the users rebuilt';

CREATE FUNCTION icpml.retrieve_candidates(
  user_id uuid,
  candidates integer DEFAULT NULL,
  seed bigint DEFAULT NULL)
RETURNS TABLE(account_id bigint, source text, probability double precision)
AS 'MODULE_PATHNAME', 'retrieve_candidates'
LANGUAGE C VOLATILE;

COMMENT ON FUNCTION icpml.retrieve_candidates(uuid, integer, bigint) IS
  'The candidates recommend_accounts(user_id, candidates => M, seed => s) would rank, with the source that admitted each, without ranking or logging anything: what retrieval does for a user';
