-- ---------------------------------------------------------------------------
-- Materialised scores (score_store.c, docs/scoring.md "Materialised scores")
--
--   account_scores   the served set: one row per account of the deployed
--                    model's relation (the rules' when none is deployed);
--                    recommend_accounts retrieves from it
--   version_scores   challenger sets: other stored versions' scores, for
--                    experiments between model versions
--   score_runs       the run log: when each set was last brought up to date
--   score_queue      accounts changed since the last run, fed by triggers
--                    that enable_score_queue() puts on the user's tables
--
-- score_all() rewrites only rows whose score changed: scored_at is when a
-- row's score last changed; the last run in score_runs says when the set
-- was checked.  score_changed() rescores the queued accounts (pg_cron, every
-- minute: the feedback lane's schedule_maintenance()).
-- ---------------------------------------------------------------------------

CREATE TABLE icpml.account_scores (
  account_id    bigint PRIMARY KEY,
  score         integer NOT NULL CHECK (score BETWEEN 1 AND 10),
  priority      text NOT NULL CHECK (priority IN ('high', 'medium', 'low')),
  probability   double precision NOT NULL,
  model         text NOT NULL,
  model_version integer,
  scored_at     timestamptz NOT NULL
);

-- retrieval's index (top M by probability); no other: every index costs
-- each write of a changed score
CREATE INDEX account_scores_probability_idx
  ON icpml.account_scores (probability DESC, account_id);

COMMENT ON TABLE icpml.account_scores IS
  'The served scores: one row per account of the deployed model''s relation (or the rules''), kept by score_all() and score_changed(); read by dashboards and by recommend_accounts retrieval';
COMMENT ON COLUMN icpml.account_scores.scored_at IS
  'When this row''s score last changed (runs that find it unchanged do not rewrite it; icpml.score_runs says when the set was last checked)';

CREATE TABLE icpml.version_scores (
  model_version integer NOT NULL,
  account_id    bigint NOT NULL,
  score         integer NOT NULL CHECK (score BETWEEN 1 AND 10),
  priority      text NOT NULL CHECK (priority IN ('high', 'medium', 'low')),
  probability   double precision NOT NULL,
  scored_at     timestamptz NOT NULL,
  PRIMARY KEY (model_version, account_id)
);

CREATE INDEX version_scores_probability_idx
  ON icpml.version_scores (model_version, probability DESC, account_id);

COMMENT ON TABLE icpml.version_scores IS
  'Challenger scores: stored model versions other than the deployed one, filled by score_all(version => v) and kept current by score_changed(); a deploy of v adopts its rows as the served set';

CREATE TABLE icpml.score_runs (
  run_id        bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  kind          text NOT NULL CHECK (kind IN ('all', 'changed', 'adopt')),
  target        text NOT NULL CHECK (target IN ('served', 'version')),
  set_version   integer,
  model         text NOT NULL,
  model_version integer,
  relation      text,
  started_at    timestamptz NOT NULL,
  finished_at   timestamptz NOT NULL,
  rows_read     bigint NOT NULL,
  rows_written  bigint NOT NULL,
  rows_deleted  bigint NOT NULL,
  run_by        name NOT NULL DEFAULT CURRENT_USER,
  CHECK ((target = 'version') = (set_version IS NOT NULL))
);

COMMENT ON TABLE icpml.score_runs IS
  'Runs of score_all() (kind all), score_changed() (changed) and adoptions of a challenger set after a deploy (adopt): which set, model and relation, rows read, written (changed) and deleted; the last 1000 are kept';

CREATE TABLE icpml.score_queue (
  account_id bigint PRIMARY KEY,
  queued_at  timestamptz NOT NULL DEFAULT pg_catalog.now()
);

COMMENT ON TABLE icpml.score_queue IS
  'Accounts changed since score_changed() last ran, queued by the triggers icpml.enable_score_queue() puts on the tables behind the feature relation';

CREATE FUNCTION icpml.score_all(batch_size integer DEFAULT 10000, version integer DEFAULT NULL)
RETURNS bigint
AS 'MODULE_PATHNAME', 'score_all'
LANGUAGE C VOLATILE;

COMMENT ON FUNCTION icpml.score_all(integer, integer) IS
  'Score every account of the deployed model''s relation (or the rules'', as the caller) and make icpml.account_scores hold exactly those scores, writing only what changed; version => v fills version v''s challenger set in icpml.version_scores instead; returns the number of accounts scored';

CREATE FUNCTION icpml.score_changed(max_rows integer DEFAULT 100000)
RETURNS jsonb
AS 'MODULE_PATHNAME', 'score_changed'
LANGUAGE C VOLATILE;

COMMENT ON FUNCTION icpml.score_changed(integer) IS
  'Incremental scoring (schedule it every minute): rescore the accounts in icpml.score_queue (at most max_rows) in the served and challenger sets; after a deploy, adopt or rescore the served set; returns what it did as jsonb';

CREATE FUNCTION icpml.drop_version_scores(version integer)
RETURNS bigint
LANGUAGE sql VOLATILE STRICT
SET search_path = pg_catalog, pg_temp
AS $$
  WITH d AS (DELETE FROM icpml.version_scores AS s
             WHERE s.model_version OPERATOR(pg_catalog.=) drop_version_scores.version RETURNING 1)
  SELECT pg_catalog.count(*) FROM d
$$;

COMMENT ON FUNCTION icpml.drop_version_scores(integer) IS
  'Delete a version''s challenger scores (icpml.version_scores) when its experiment is over; returns the rows deleted';

-- The queue trigger: statement-level, with transition tables, on each table
-- behind the feature relation that carries the account key (TG_ARGV[0]
-- names that column).  Owner's rights (it writes icpml.score_queue), so its
-- search_path is pinned and every name qualified; the column name comes
-- from the trigger's definition (enable_score_queue), quoted.  An upsert,
-- not DO NOTHING: a queued row being popped by score_changed() is locked,
-- so a change committed meanwhile waits and queues the account again.
CREATE FUNCTION icpml.score_queue_trigger()
RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  v_base pg_catalog.oid;
  v_next pg_catalog.oid;
BEGIN
  IF TG_LEVEL OPERATOR(pg_catalog.<>) 'STATEMENT' OR TG_NARGS OPERATOR(pg_catalog.<>) 1 THEN
    RAISE EXCEPTION 'icpml.score_queue_trigger() must be a statement trigger with the key column as its argument'
      USING ERRCODE = 'triggered_action_exception';
  END IF;
  -- The key column is read with the owner's rights: a cast, operator or
  -- function of a type the table's owner defined would run as the owner.
  -- Only a column of a built-in type (a domain followed to its base) is
  -- read, checked at every firing (the column may change type after the
  -- trigger was put there), as the feedback and profile triggers do.
  IF TG_OP OPERATOR(pg_catalog.<>) 'TRUNCATE' THEN
    SELECT a.atttypid INTO v_base FROM pg_catalog.pg_attribute AS a
    WHERE a.attrelid OPERATOR(pg_catalog.=) TG_RELID AND a.attname OPERATOR(pg_catalog.=) TG_ARGV[0]
      AND a.attnum OPERATOR(pg_catalog.>) 0 AND NOT a.attisdropped;
    -- a domain of the user's: down to its base type
    WHILE v_base OPERATOR(pg_catalog.>=) 16384::pg_catalog.oid LOOP
      SELECT t.typbasetype INTO v_next FROM pg_catalog.pg_type AS t
      WHERE t.oid OPERATOR(pg_catalog.=) v_base AND t.typtype OPERATOR(pg_catalog.=) 'd';
      EXIT WHEN NOT FOUND;
      v_base := v_next;
    END LOOP;
    IF v_base IS NULL THEN
      RAISE EXCEPTION 'column "%" of "%" does not exist: the score queue trigger cannot queue its accounts',
                      TG_ARGV[0], TG_RELID::pg_catalog.regclass
        USING ERRCODE = 'undefined_column',
              HINT = 'Put the triggers there again for the new key column with icpml.enable_score_queue(), or remove them with icpml.disable_score_queue().';
    END IF;
    IF v_base OPERATOR(pg_catalog.>=) 16384::pg_catalog.oid THEN
      RAISE EXCEPTION 'column "%" of "%" has a user-defined type', TG_ARGV[0], TG_RELID::pg_catalog.regclass
        USING ERRCODE = 'datatype_mismatch',
              HINT = 'The score queue trigger reads the key with the extension owner''s rights; use a bigint key (or a domain over one), or remove the triggers with icpml.disable_score_queue().';
    END IF;
  END IF;
  IF TG_OP OPERATOR(pg_catalog.=) 'TRUNCATE' THEN
    -- every account scored so far: score_changed() deletes those that are gone
    INSERT INTO icpml.score_queue AS q (account_id)
    SELECT s.account_id FROM icpml.account_scores AS s
    ON CONFLICT (account_id) DO UPDATE SET queued_at = excluded.queued_at;
  ELSIF TG_OP OPERATOR(pg_catalog.=) 'INSERT' THEN
    EXECUTE pg_catalog.format(
      'INSERT INTO icpml.score_queue AS q (account_id)'
      ' SELECT DISTINCT n.%1$I::pg_catalog.int8 FROM new_rows AS n WHERE n.%1$I IS NOT NULL'
      ' ON CONFLICT (account_id) DO UPDATE SET queued_at = excluded.queued_at', TG_ARGV[0]);
  ELSIF TG_OP OPERATOR(pg_catalog.=) 'DELETE' THEN
    EXECUTE pg_catalog.format(
      'INSERT INTO icpml.score_queue AS q (account_id)'
      ' SELECT DISTINCT o.%1$I::pg_catalog.int8 FROM old_rows AS o WHERE o.%1$I IS NOT NULL'
      ' ON CONFLICT (account_id) DO UPDATE SET queued_at = excluded.queued_at', TG_ARGV[0]);
  ELSE
    -- an update may move a row from one account to another: both change
    EXECUTE pg_catalog.format(
      'INSERT INTO icpml.score_queue AS q (account_id)'
      ' SELECT DISTINCT k.a FROM (SELECT n.%1$I::pg_catalog.int8 FROM new_rows AS n'
      '   UNION ALL SELECT o.%1$I::pg_catalog.int8 FROM old_rows AS o) AS k(a) WHERE k.a IS NOT NULL'
      ' ON CONFLICT (account_id) DO UPDATE SET queued_at = excluded.queued_at', TG_ARGV[0]);
  END IF;
  RETURN NULL;
END
$$;

COMMENT ON FUNCTION icpml.score_queue_trigger() IS
  'Statement trigger that enable_score_queue() puts on the tables behind the feature relation: queues the accounts a statement inserted, updated, deleted or truncated for score_changed()';

-- The tables whose rows feed a relation, following views down to tables
-- (pg_depend of the views' rewrite rules), with the key column's name.
CREATE FUNCTION icpml.score_queue_tables(relation regclass, key_column name)
RETURNS TABLE(table_name regclass, has_key boolean)
LANGUAGE sql STABLE STRICT
SET search_path = pg_catalog, pg_temp
AS $$
  WITH RECURSIVE r(oid, depth) AS (
    SELECT score_queue_tables.relation::pg_catalog.oid, 0
    UNION
    SELECT d.refobjid, r.depth OPERATOR(pg_catalog.+) 1
    FROM r
    JOIN pg_catalog.pg_class AS c ON c.oid OPERATOR(pg_catalog.=) r.oid
    JOIN pg_catalog.pg_rewrite AS w ON w.ev_class OPERATOR(pg_catalog.=) r.oid
    JOIN pg_catalog.pg_depend AS d ON d.classid OPERATOR(pg_catalog.=) 'pg_catalog.pg_rewrite'::pg_catalog.regclass
                                   AND d.objid OPERATOR(pg_catalog.=) w.oid
                                   AND d.refclassid OPERATOR(pg_catalog.=) 'pg_catalog.pg_class'::pg_catalog.regclass
                                   AND d.refobjid OPERATOR(pg_catalog.<>) r.oid
    WHERE c.relkind OPERATOR(pg_catalog.=) ANY ('{v,m}') AND r.depth OPERATOR(pg_catalog.<) 16
  )
  SELECT DISTINCT c.oid::pg_catalog.regclass,
         EXISTS (SELECT FROM pg_catalog.pg_attribute AS a
                 WHERE a.attrelid OPERATOR(pg_catalog.=) c.oid
                   AND a.attname OPERATOR(pg_catalog.=) score_queue_tables.key_column
                   AND a.attnum OPERATOR(pg_catalog.>) 0 AND NOT a.attisdropped)
  FROM r JOIN pg_catalog.pg_class AS c ON c.oid OPERATOR(pg_catalog.=) r.oid
  WHERE c.relkind OPERATOR(pg_catalog.=) ANY ('{r,p}')
$$;

COMMENT ON FUNCTION icpml.score_queue_tables(regclass, name) IS
  'The tables a relation reads (through views), and whether each has the key column: where enable_score_queue() puts its triggers';

-- Put the queue triggers on the tables behind the scored relation (default:
-- the deployed model's relation and key, else icpml.feature_relation and
-- icpml.feature_key).  Runs as the caller, who must own those tables (or
-- hold TRIGGER on them).  Tables without the key column are reported and
-- skipped: their changes reach the scores at the next score_all().
CREATE FUNCTION icpml.enable_score_queue(relation regclass DEFAULT NULL, key_column name DEFAULT NULL)
RETURNS TABLE(table_name regclass, queued boolean, note text)
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
#variable_conflict use_variable
DECLARE
  v_rel pg_catalog.regclass := relation;
  v_key pg_catalog.name := key_column;
  t record;
  tg record;
  op pg_catalog.text;
BEGIN
  IF v_rel IS NULL THEN
    SELECT m.relation::pg_catalog.regclass, m.key_column INTO v_rel, v_key
    FROM icpml.models AS m WHERE m.status OPERATOR(pg_catalog.=) 'deployed';
    IF v_rel IS NULL THEN
      -- (resolved with the pinned search_path: a schema-qualified name)
      -- (missing_ok and the built-in defaults: icpml's library may not be loaded yet)
      v_rel := pg_catalog.to_regclass(COALESCE(NULLIF(pg_catalog.current_setting('icpml.feature_relation', true), ''),
                                               'public.account_features'));
      IF v_rel IS NULL THEN
        RAISE EXCEPTION 'relation "%" (icpml.feature_relation) was not found',
          COALESCE(NULLIF(pg_catalog.current_setting('icpml.feature_relation', true), ''), 'public.account_features')
          USING ERRCODE = 'undefined_table',
                HINT = 'Pass the relation: SELECT * FROM icpml.enable_score_queue(''myschema.my_features'').';
      END IF;
    END IF;
  END IF;
  v_key := COALESCE(key_column, v_key, NULLIF(pg_catalog.current_setting('icpml.feature_key', true), ''), 'account_id');
  FOR t IN SELECT * FROM icpml.score_queue_tables(v_rel, v_key) AS q ORDER BY q.table_name::pg_catalog.text LOOP
    IF NOT t.has_key THEN
      RETURN QUERY SELECT t.table_name, false,
        pg_catalog.format('no column %I: changes here reach the scores at the next score_all()', v_key);
      CONTINUE;
    END IF;
    -- again: replace this function's own triggers (an earlier key column)
    FOR tg IN SELECT g.tgname FROM pg_catalog.pg_trigger AS g
              WHERE g.tgrelid OPERATOR(pg_catalog.=) t.table_name
                AND g.tgfoid OPERATOR(pg_catalog.=) 'icpml.score_queue_trigger()'::pg_catalog.regprocedure LOOP
      EXECUTE pg_catalog.format('DROP TRIGGER %I ON %s', tg.tgname, t.table_name);
    END LOOP;
    FOREACH op IN ARRAY ARRAY['insert', 'update', 'delete'] LOOP
      EXECUTE pg_catalog.format(
        'CREATE TRIGGER %I AFTER %s ON %s REFERENCING %s TABLE AS %s FOR EACH STATEMENT'
        ' EXECUTE FUNCTION icpml.score_queue_trigger(%L)',
        'icpml_score_queue_' OPERATOR(pg_catalog.||) op, op, t.table_name,
        CASE op WHEN 'delete' THEN 'OLD' WHEN 'insert' THEN 'NEW' ELSE 'OLD TABLE AS old_rows NEW' END,
        CASE op WHEN 'delete' THEN 'old_rows' ELSE 'new_rows' END, v_key);
    END LOOP;
    EXECUTE pg_catalog.format('CREATE TRIGGER icpml_score_queue_truncate AFTER TRUNCATE ON %s'
                              ' FOR EACH STATEMENT EXECUTE FUNCTION icpml.score_queue_trigger(%L)',
                              t.table_name, v_key);
    RETURN QUERY SELECT t.table_name, true, NULL::pg_catalog.text;
  END LOOP;
END
$$;

COMMENT ON FUNCTION icpml.enable_score_queue(regclass, name) IS
  'Queue changed accounts for score_changed(): statement triggers on every table behind the relation (default: the deployed model''s) that has the key column; returns each table and whether it is queued';

CREATE FUNCTION icpml.disable_score_queue(relation regclass DEFAULT NULL)
RETURNS TABLE(table_name regclass)
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
#variable_conflict use_variable
DECLARE
  t record;
  tg record;
BEGIN
  FOR t IN SELECT DISTINCT g.tgrelid::pg_catalog.regclass AS rel
           FROM pg_catalog.pg_trigger AS g
           WHERE g.tgfoid OPERATOR(pg_catalog.=) 'icpml.score_queue_trigger()'::pg_catalog.regprocedure
             AND (relation IS NULL OR g.tgrelid OPERATOR(pg_catalog.=) relation
                  OR g.tgrelid OPERATOR(pg_catalog.=) ANY (SELECT q.table_name FROM icpml.score_queue_tables(relation, 'account_id') AS q))
           ORDER BY 1 LOOP
    FOR tg IN SELECT g.tgname FROM pg_catalog.pg_trigger AS g
              WHERE g.tgrelid OPERATOR(pg_catalog.=) t.rel
                AND g.tgfoid OPERATOR(pg_catalog.=) 'icpml.score_queue_trigger()'::pg_catalog.regprocedure LOOP
      EXECUTE pg_catalog.format('DROP TRIGGER %I ON %s', tg.tgname, t.rel);
    END LOOP;
    RETURN QUERY SELECT t.rel;
  END LOOP;
END
$$;

COMMENT ON FUNCTION icpml.disable_score_queue(regclass) IS
  'Remove the score queue triggers (from every table, or from those behind one relation); returns the tables';

CREATE FUNCTION icpml.explain_icp_score(account_id bigint)
RETURNS TABLE(feature text, value text, contribution double precision, method text)
AS 'MODULE_PATHNAME', 'explain_icp_score'
LANGUAGE C STABLE STRICT PARALLEL SAFE
ROWS 32;

COMMENT ON FUNCTION icpml.explain_icp_score(bigint) IS
  'Every feature''s contribution to an account''s score plus a (bias) row, summing to the logit of its probability: exact TreeSHAP with a deployed model, rule weights otherwise';

CREATE FUNCTION icpml.prewarm()
RETURNS text
AS 'MODULE_PATHNAME', 'prewarm'
LANGUAGE C VOLATILE;

COMMENT ON FUNCTION icpml.prewarm() IS
  'Load the deployed model (or the rules) into this backend now, for pooled connections; returns what scores';

CREATE FUNCTION icpml.verify_model(
  version integer DEFAULT NULL,
  rows    integer DEFAULT 10000,
  OUT model_version integer,
  OUT n_rows bigint,
  OUT n_trees integer,
  OUT max_abs_margin_diff double precision,
  OUT max_abs_contrib_diff double precision,
  OUT max_abs_probability_diff double precision,
  OUT max_abs_shap_sum_diff double precision)
AS 'MODULE_PATHNAME', 'verify_model'
LANGUAGE C VOLATILE;

COMMENT ON FUNCTION icpml.verify_model(integer, integer) IS
  'Compare icp_score''s native tree evaluation of a stored model (default: the deployed one) with XGBoost on rows of its relation: largest differences of margin, Saabas contributions and probability, and of exact SHAP sums against the margin';
