-- Upgrades 0.1.0 -> 0.2.0 (src/sql/updates/icpml--0.1.0--0.2.0.sql: the data
-- migration of the recommender) -> 0.3.0 (icpml--0.2.0--0.3.0.sql: what
-- pg_dump keeps) -> 0.4.0 (icpml--0.3.0--0.4.0.sql), and an upgraded schema
-- that equals a fresh install, without Supabase's roles (plain PostgreSQL)
-- and with them.  Then every released version, installed from its frozen
-- script (src/sql/released/) and updated to the default version, found in
-- pg_available_extension_versions (a new release is covered without editing
-- this test).  Ends with a
-- fresh CREATE EXTENSION icpml, as pg_regress's --load-extension left it.
\set VERBOSITY default
SET icpml.nthread = 1;
SET client_min_messages = warning;
DROP EXTENSION icpml CASCADE;
DROP SCHEMA IF EXISTS icpml CASCADE;
RESET client_min_messages;

-- Everything a fresh install defines in schema icpml, one line per catalog
-- fact, by name (never by OID): the schema, relations, columns, constraints,
-- indexes, triggers, policies, views, types, sequences, functions (full
-- definition), comments, ACLs and initial privileges, extension members and
-- configuration tables, and the rows the install script inserts.  plpgsql,
-- so it survives DROP EXTENSION and re-reads the catalog at every call.
CREATE FUNCTION pg_temp.icpml_catalog()
RETURNS SETOF text
LANGUAGE plpgsql
AS $$
BEGIN
  RETURN QUERY
  SELECT pg_catalog.format('schema %s owner=%s acl=%s', n.nspname, n.nspowner::regrole, n.nspacl)
  FROM pg_catalog.pg_namespace AS n WHERE n.nspname = 'icpml'
  UNION ALL
  SELECT pg_catalog.format('relation %s kind=%s persistence=%s owner=%s acl=%s options=%s rls=%s/%s',
                           c.relname, c.relkind, c.relpersistence, c.relowner::regrole, c.relacl,
                           c.reloptions, c.relrowsecurity, c.relforcerowsecurity)
  FROM pg_catalog.pg_class AS c JOIN pg_catalog.pg_namespace AS n ON n.oid = c.relnamespace
  WHERE n.nspname = 'icpml'
  UNION ALL
  SELECT pg_catalog.format('column %s.%s #%s type=%s notnull=%s default=%s identity=%s generated=%s collation=%s acl=%s',
                           c.relname, a.attname, a.attnum, pg_catalog.format_type(a.atttypid, a.atttypmod),
                           a.attnotnull, pg_catalog.pg_get_expr(d.adbin, d.adrelid), a.attidentity,
                           a.attgenerated, co.collname, a.attacl)
  FROM pg_catalog.pg_attribute AS a
  JOIN pg_catalog.pg_class AS c ON c.oid = a.attrelid
  JOIN pg_catalog.pg_namespace AS n ON n.oid = c.relnamespace
  LEFT JOIN pg_catalog.pg_attrdef AS d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
  LEFT JOIN pg_catalog.pg_collation AS co ON co.oid = a.attcollation
  WHERE n.nspname = 'icpml' AND a.attnum > 0 AND NOT a.attisdropped
  UNION ALL
  SELECT pg_catalog.format('constraint %s on %s type=%s: %s', k.conname, k.conrelid::regclass,
                           k.contypid::regtype, pg_catalog.pg_get_constraintdef(k.oid))
  FROM pg_catalog.pg_constraint AS k JOIN pg_catalog.pg_namespace AS n ON n.oid = k.connamespace
  WHERE n.nspname = 'icpml'
  UNION ALL
  SELECT 'index ' || pg_catalog.pg_get_indexdef(i.indexrelid)
  FROM pg_catalog.pg_index AS i
  JOIN pg_catalog.pg_class AS c ON c.oid = i.indexrelid
  JOIN pg_catalog.pg_namespace AS n ON n.oid = c.relnamespace
  WHERE n.nspname = 'icpml'
  UNION ALL
  SELECT pg_catalog.format('trigger %s enabled=%s', pg_catalog.pg_get_triggerdef(t.oid), t.tgenabled)
  FROM pg_catalog.pg_trigger AS t
  JOIN pg_catalog.pg_class AS c ON c.oid = t.tgrelid
  JOIN pg_catalog.pg_namespace AS n ON n.oid = c.relnamespace
  WHERE n.nspname = 'icpml' AND NOT t.tgisinternal
  UNION ALL
  SELECT pg_catalog.format('policy %s on %s cmd=%s permissive=%s roles=%s using=%s check=%s',
                           p.polname, p.polrelid::regclass, p.polcmd, p.polpermissive, p.polroles::regrole[],
                           pg_catalog.pg_get_expr(p.polqual, p.polrelid), pg_catalog.pg_get_expr(p.polwithcheck, p.polrelid))
  FROM pg_catalog.pg_policy AS p
  JOIN pg_catalog.pg_class AS c ON c.oid = p.polrelid
  JOIN pg_catalog.pg_namespace AS n ON n.oid = c.relnamespace
  WHERE n.nspname = 'icpml'
  UNION ALL
  SELECT pg_catalog.format('view %s: %s', c.relname, pg_catalog.pg_get_viewdef(c.oid))
  FROM pg_catalog.pg_class AS c JOIN pg_catalog.pg_namespace AS n ON n.oid = c.relnamespace
  WHERE n.nspname = 'icpml' AND c.relkind IN ('v', 'm')
  UNION ALL
  SELECT pg_catalog.format('type %s kind=%s owner=%s acl=%s', t.typname, t.typtype, t.typowner::regrole, t.typacl)
  FROM pg_catalog.pg_type AS t JOIN pg_catalog.pg_namespace AS n ON n.oid = t.typnamespace
  WHERE n.nspname = 'icpml'
  UNION ALL
  SELECT pg_catalog.format('sequence %s type=%s start=%s increment=%s min=%s max=%s cache=%s cycle=%s owned_by=%s',
                           c.relname, s.seqtypid::regtype, s.seqstart, s.seqincrement, s.seqmin, s.seqmax,
                           s.seqcache, s.seqcycle,
                           (SELECT pg_catalog.format('%s.%s', dep.refobjid::regclass, a.attname)
                            FROM pg_catalog.pg_depend AS dep
                            JOIN pg_catalog.pg_attribute AS a ON a.attrelid = dep.refobjid AND a.attnum = dep.refobjsubid
                            WHERE dep.classid = 'pg_catalog.pg_class'::regclass AND dep.objid = c.oid
                              AND dep.refclassid = 'pg_catalog.pg_class'::regclass AND dep.deptype IN ('a', 'i')))
  FROM pg_catalog.pg_sequence AS s
  JOIN pg_catalog.pg_class AS c ON c.oid = s.seqrelid
  JOIN pg_catalog.pg_namespace AS n ON n.oid = c.relnamespace
  WHERE n.nspname = 'icpml'
  UNION ALL
  SELECT pg_catalog.format('function %s kind=%s owner=%s acl=%s%s', p.oid::regprocedure, p.prokind,
                           p.proowner::regrole, p.proacl,
                           CASE WHEN p.prokind IN ('f', 'p') THEN E'\n' || pg_catalog.pg_get_functiondef(p.oid) END)
  FROM pg_catalog.pg_proc AS p JOIN pg_catalog.pg_namespace AS n ON n.oid = p.pronamespace
  WHERE n.nspname = 'icpml'
  UNION ALL
  SELECT pg_catalog.format('comment on %s %s: %s', o.type, o.identity, d.description)
  FROM pg_catalog.pg_description AS d,
       LATERAL pg_catalog.pg_identify_object(d.classoid, d.objoid, d.objsubid) AS o
  WHERE o.schema = 'icpml' OR (o.type = 'schema' AND o.identity = 'icpml')
  UNION ALL
  SELECT pg_catalog.format('initprivs %s %s (%s): %s', o.type, o.identity, ip.privtype, ip.initprivs)
  FROM pg_catalog.pg_init_privs AS ip,
       LATERAL pg_catalog.pg_identify_object(ip.classoid, ip.objoid, ip.objsubid) AS o
  WHERE o.schema = 'icpml' OR (o.type = 'schema' AND o.identity = 'icpml')
  UNION ALL
  SELECT 'member ' || pg_catalog.pg_describe_object(dep.classid, dep.objid, dep.objsubid)
  FROM pg_catalog.pg_depend AS dep JOIN pg_catalog.pg_extension AS e ON e.oid = dep.refobjid
  WHERE dep.refclassid = 'pg_catalog.pg_extension'::regclass AND dep.deptype = 'e' AND e.extname = 'icpml'
  UNION ALL
  SELECT pg_catalog.format('extension %s relocatable=%s config=%s condition=%s', e.extname, e.extrelocatable,
                           e.extconfig::regclass[], e.extcondition)
  FROM pg_catalog.pg_extension AS e WHERE e.extname = 'icpml'
  UNION ALL
  SELECT 'data rule_weights ' || pg_catalog.row_to_json(r)::text FROM icpml.rule_weights AS r
  UNION ALL
  SELECT 'data rule_settings ' || pg_catalog.row_to_json(r)::text FROM icpml.rule_settings AS r
  UNION ALL
  SELECT 'data bandit_settings ' || pg_catalog.row_to_json(r)::text FROM icpml.bandit_settings AS r
  UNION ALL
  SELECT 'data reward_map ' || pg_catalog.row_to_json(r)::text FROM icpml.reward_map AS r;
END
$$;

CREATE TEMP TABLE catalogs (state text, item text);

-- ---------------------------------------------------------------------------
-- 1. Plain PostgreSQL (no Supabase roles), a recommender with 0.1.0 state
-- ---------------------------------------------------------------------------
SELECT count(*) AS supabase_roles FROM pg_roles WHERE rolname IN ('anon', 'authenticated', 'service_role');

CREATE EXTENSION icpml VERSION '0.1.0';
SELECT extversion FROM pg_extension WHERE extname = 'icpml';
SELECT to_regprocedure('icpml.set_bandit_vocabulary(text[],text[],boolean)') IS NULL AS no_vocabulary_function,
       personalization_weight
FROM icpml.bandit_settings;
SELECT source, target, path FROM pg_extension_update_paths('icpml')
WHERE path IS NOT NULL AND source IN ('0.1.0', '0.2.0', '0.3.0') AND target IN ('0.2.0', '0.3.0', '0.4.0')
ORDER BY 1, 2;
-- the update scripts chain: 0.1.0 -> 0.2.0 -> 0.3.0 -> 0.4.0 (section 3 covers
-- the releases after 0.3.0)

-- 0.1.0 state: a 23-dimensional model, a rewarded impression and two pending ones
INSERT INTO icpml.bandit_state (scope, dim, a, b, chol, n, version)
VALUES ('global', 23, array_fill(1::float8, ARRAY[23 * 23]), array_fill(0.5::float8, ARRAY[23]),
        array_fill(1::float8, ARRAY[23 * 23]), 3, nextval('icpml.bandit_state_version_seq'));
INSERT INTO icpml.recommendations (user_id, account_id, rank, policy, context, score, expected_reward,
                                   propensity, state_version, status, reward, reward_interaction_id,
                                   finalized_at, finalize_seq)
VALUES ('00000000-0000-0000-0000-00000000000a', 1, 1, 'linucb', array_fill(0.5::real, ARRAY[23]), 0.4, 0.3,
        1, 1, 'rewarded', 0.7, 42, now(), nextval('icpml.recommendations_finalize_seq'));
INSERT INTO icpml.recommendations (user_id, account_id, rank, policy, context, score, expected_reward,
                                   propensity, state_version)
VALUES ('00000000-0000-0000-0000-00000000000a', 2, 2, 'linucb', array_fill(0.5::real, ARRAY[23]), 0.3, 0.2, 1, 1),
       ('00000000-0000-0000-0000-00000000000b', 3, 1, 'thompson', array_fill(0.25::real, ARRAY[23]), 0.2, 0.1, 1, 1);

ALTER EXTENSION icpml UPDATE TO '0.2.0';
SELECT extversion FROM pg_extension WHERE extname = 'icpml';

-- the new columns and defaults, and the existing row (0.5 was the old default: now 1.0)
SELECT attname, format_type(atttypid, atttypmod) AS type, attnotnull,
       pg_get_expr(d.adbin, d.adrelid) AS default
FROM pg_attribute a LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
WHERE a.attrelid = 'icpml.bandit_settings'::regclass
  AND attname IN ('personalization_weight', 'fatigue_decay', 'position_bias', 'industries', 'technologies', 'personalization_prior')
ORDER BY attnum;
SELECT personalization_weight, fatigue_decay, position_bias, industries, technologies, personalization_prior FROM icpml.bandit_settings;
\set VERBOSITY terse
UPDATE icpml.bandit_settings SET industries = array_fill('x'::text, ARRAY[13]);
\set VERBOSITY default

-- no 23-dimensional state; every pending 23-entry impression expired with reward 0
-- (in recommendation_id order), the rewarded one untouched
SELECT count(*) AS state_rows FROM icpml.bandit_state;
SELECT recommendation_id, status, reward, reward_interaction_id, finalized_at IS NOT NULL AS finalized,
       finalize_seq, cardinality(context) AS dim
FROM icpml.recommendations ORDER BY recommendation_id;
SELECT count(*) AS pending_old_contexts FROM icpml.recommendations
WHERE status = 'pending' AND cardinality(context) = 23;

-- the new function, not executable by PUBLIC
SELECT p.oid::regprocedure AS function, pg_get_function_result(p.oid) AS result,
       NOT EXISTS (SELECT FROM aclexplode(p.proacl) WHERE grantee = 0) AS not_public,
       obj_description(p.oid, 'pg_proc') IS NOT NULL AS commented
FROM pg_proc p WHERE p.oid = 'icpml.set_bandit_vocabulary(text[],text[],boolean)'::regprocedure;

-- the library is newer than the installed SQL (0.3.0's library, 0.2.0's
-- objects): recommendations still work, logged without experiment columns
\i sql/include/reference_schema.sql
INSERT INTO account_signals (account_id, account_name, industry)
SELECT g, 'acct ' || g, 'saas' FROM generate_series(1, 12) g ON CONFLICT (account_id) DO NOTHING;
SELECT icpml.score_all() > 0 AS scored;
SELECT count(*) AS listed FROM icpml.recommend_accounts('00000000-0000-0000-0000-00000000000c', 3, seed => 1);
UPDATE icpml.bandit_settings SET industries = NULL, technologies = NULL;

-- 0.2.0 -> 0.3.0: the settings, the scores and the recommender's state and
-- log become configuration tables (pg_dump keeps them); a COPY of an
-- existing settings key replaces the row (how a restore brings settings
-- back), an INSERT does not
SELECT count(*) AS dumped_before FROM pg_extension, unnest(extconfig) WHERE extname = 'icpml';
ALTER EXTENSION icpml UPDATE TO '0.3.0';
SELECT extversion FROM pg_extension WHERE extname = 'icpml';
SELECT c::regclass AS dumped FROM pg_extension, unnest(extconfig) AS c WHERE extname = 'icpml' ORDER BY c::regclass::text;
BEGIN;
COPY icpml.reward_map (interaction_type, reward) FROM stdin;
contact	0.25
webinar	0.1
\.
COPY icpml.rule_settings (singleton, size_min) FROM stdin;
t	25
\.
SELECT interaction_type, reward FROM icpml.reward_map ORDER BY 1;
SELECT count(*) AS rows, min(size_min) AS size_min, min(size_max) AS size_max FROM icpml.rule_settings;
INSERT INTO icpml.reward_map (interaction_type, reward) VALUES ('view', 0.2) ON CONFLICT DO NOTHING;
SELECT reward AS view_reward_kept FROM icpml.reward_map WHERE interaction_type = 'view';
\set VERBOSITY terse
INSERT INTO icpml.reward_map (interaction_type, reward) VALUES ('view', 0.2);
\set VERBOSITY default
ROLLBACK;
-- the same session sees the new objects at once: an experiment chooses the policy
SELECT name FROM icpml.start_experiment('upgrade-check', ARRAY['greedy', 'icp']);
CREATE TEMP TABLE upgrade_list AS
SELECT * FROM icpml.recommend_accounts('00000000-0000-0000-0000-00000000000c', 1, seed => 1);
SELECT r.policy = icpml.experiment_variant('upgrade-check', r.user_id) AS variant_served,
       r.experiment, r.variant = r.policy AS variant_logged
FROM upgrade_list AS l JOIN icpml.recommendations AS r ON r.recommendation_id = l.recommendation_id;
DELETE FROM icpml.experiments;
UPDATE icpml.bandit_settings SET industries = NULL, technologies = NULL;
-- a 0.3.0 experiment (its variants are policies, they shared the global state)
SELECT name FROM icpml.start_experiment('old-ab', ARRAY['greedy', 'icp'], weights => ARRAY[2, 1]);
SELECT name, status FROM icpml.stop_experiment('old-ab');

-- 0.3.0 -> 0.4.0, and on to the default version
ALTER EXTENSION icpml UPDATE TO '0.4.0';
SELECT extversion FROM pg_extension WHERE extname = 'icpml';
-- the 0.3.0 experiment: each variant serves the policy it is named after, on
-- the shared state as it ran, no holdout, nothing promoted
SELECT name, variants, weights, policies, separate_state, holdout, holdout_policy, promoted, model_versions
FROM icpml.experiments;
DELETE FROM icpml.experiments;
SET client_min_messages = warning;   -- no "already installed" while 0.4.0 is the default
ALTER EXTENSION icpml UPDATE;
RESET client_min_messages;
SELECT extversion = default_version AS at_default_version
FROM pg_extension JOIN pg_available_extensions ON name = extname WHERE extname = 'icpml';

-- the upgraded schema equals a fresh install: no line only on one side
INSERT INTO catalogs SELECT 'upgraded', c FROM pg_temp.icpml_catalog() AS c;

-- the recommender works on the upgraded log: the 23-entry contexts are skipped,
-- the state restarts from the prior with the new dimension
SELECT icpml.rebuild_bandit_state() AS replayed;
SELECT scope, dim > 23 AS new_dim, n FROM icpml.bandit_state ORDER BY scope;
SELECT * FROM icpml.set_bandit_vocabulary(industries => ARRAY['saas', 'fintech'], technologies => ARRAY['postgres']);

SET client_min_messages = warning;
DROP EXTENSION icpml CASCADE;
DROP SCHEMA icpml CASCADE;
RESET client_min_messages;
CREATE EXTENSION icpml;
INSERT INTO catalogs SELECT 'fresh', c FROM pg_temp.icpml_catalog() AS c;

SELECT state, count(*) > 300 AS many_lines, array_agg(DISTINCT split_part(item, ' ', 1)) AS kinds
FROM catalogs GROUP BY state ORDER BY state;
(SELECT 'only after upgrade' AS side, item FROM catalogs WHERE state = 'upgraded'
 EXCEPT ALL SELECT 'only after upgrade', item FROM catalogs WHERE state = 'fresh')
UNION ALL
(SELECT 'only in a fresh install', item FROM catalogs WHERE state = 'fresh'
 EXCEPT ALL SELECT 'only in a fresh install', item FROM catalogs WHERE state = 'upgraded')
ORDER BY 1, 2;

-- ---------------------------------------------------------------------------
-- 2. Supabase's roles (created here when absent, like test/pgtap's shim),
--    ALTER EXTENSION icpml UPDATE to the default version, a chosen
--    personalization_weight is kept
-- ---------------------------------------------------------------------------
TRUNCATE catalogs;
CREATE TEMP TABLE shim_roles (rolname name);
DO $$
DECLARE r text;
BEGIN
  FOREACH r IN ARRAY ARRAY['anon', 'authenticated', 'service_role'] LOOP
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = r) THEN
      EXECUTE format('CREATE ROLE %I NOLOGIN', r);
      INSERT INTO shim_roles VALUES (r);
    END IF;
  END LOOP;
END
$$;

SET client_min_messages = warning;
DROP EXTENSION icpml CASCADE;
DROP SCHEMA icpml CASCADE;
RESET client_min_messages;
CREATE EXTENSION icpml VERSION '0.1.0';
UPDATE icpml.bandit_settings SET personalization_weight = 0.7;
ALTER EXTENSION icpml UPDATE;
SELECT extversion = default_version AS at_default_version
FROM pg_extension JOIN pg_available_extensions ON name = extname WHERE extname = 'icpml';
SELECT personalization_weight FROM icpml.bandit_settings;

-- set_bandit_vocabulary is an administration function: service_role only
SELECT r AS role, has_function_privilege(r, 'icpml.set_bandit_vocabulary(text[],text[],boolean)', 'EXECUTE') AS execute
FROM unnest(ARRAY['anon', 'authenticated', 'service_role']) AS r ORDER BY 1;

-- as a fresh install (the row back at the default for the comparison)
UPDATE icpml.bandit_settings SET personalization_weight = 1.0;
INSERT INTO catalogs SELECT 'upgraded', c FROM pg_temp.icpml_catalog() AS c;
SET client_min_messages = warning;
DROP EXTENSION icpml CASCADE;
DROP SCHEMA icpml CASCADE;
RESET client_min_messages;
CREATE EXTENSION icpml;
INSERT INTO catalogs SELECT 'fresh', c FROM pg_temp.icpml_catalog() AS c;

SELECT state, count(*) > 300 AS many_lines, count(*) FILTER (WHERE item ~ 'service_role') > 0 AS grants_service_role
FROM catalogs GROUP BY state ORDER BY state;
(SELECT 'only after upgrade' AS side, item FROM catalogs WHERE state = 'upgraded'
 EXCEPT ALL SELECT 'only after upgrade', item FROM catalogs WHERE state = 'fresh')
UNION ALL
(SELECT 'only in a fresh install', item FROM catalogs WHERE state = 'fresh'
 EXCEPT ALL SELECT 'only in a fresh install', item FROM catalogs WHERE state = 'upgraded')
ORDER BY 1, 2;

-- ---------------------------------------------------------------------------
-- 3. Every released version, from its frozen install script, updated to the
--    default version: its catalog equals a fresh install's, with Supabase's
--    roles (still present here) and without them
-- ---------------------------------------------------------------------------
CREATE TEMP TABLE release_catalogs (setting text, state text, item text);
CREATE FUNCTION pg_temp.upgrade_every_release(setting text)
RETURNS void
LANGUAGE plpgsql
AS $$
DECLARE
  target text;
  v text;
BEGIN
  SELECT default_version INTO STRICT target FROM pg_catalog.pg_available_extensions WHERE name = 'icpml';
  DROP EXTENSION IF EXISTS icpml CASCADE;
  DROP SCHEMA IF EXISTS icpml CASCADE;
  CREATE EXTENSION icpml;
  INSERT INTO release_catalogs SELECT setting, 'fresh', c FROM pg_temp.icpml_catalog() AS c;
  -- older than the default version (a stale newer script in the installation is no release)
  FOR v IN SELECT version FROM pg_catalog.pg_available_extension_versions
           WHERE name = 'icpml'
             AND pg_catalog.string_to_array(version, '.')::int[] < pg_catalog.string_to_array(target, '.')::int[]
           ORDER BY pg_catalog.string_to_array(version, '.')::int[] LOOP
    DROP EXTENSION icpml CASCADE;
    DROP SCHEMA IF EXISTS icpml CASCADE;
    EXECUTE pg_catalog.format('CREATE EXTENSION icpml VERSION %L', v);
    IF (SELECT extversion FROM pg_catalog.pg_extension WHERE extname = 'icpml') <> v THEN
      RAISE EXCEPTION 'installed % instead of %', (SELECT extversion FROM pg_catalog.pg_extension WHERE extname = 'icpml'), v;
    END IF;
    ALTER EXTENSION icpml UPDATE;
    IF (SELECT extversion FROM pg_catalog.pg_extension WHERE extname = 'icpml') <> target THEN
      RAISE EXCEPTION 'ALTER EXTENSION icpml UPDATE from % stopped at %', v,
        (SELECT extversion FROM pg_catalog.pg_extension WHERE extname = 'icpml');
    END IF;
    INSERT INTO release_catalogs SELECT setting, v, c FROM pg_temp.icpml_catalog() AS c;
  END LOOP;
  DROP EXTENSION icpml CASCADE;
  DROP SCHEMA IF EXISTS icpml CASCADE;
END
$$;

SET client_min_messages = warning;
SELECT pg_temp.upgrade_every_release('supabase roles');
RESET client_min_messages;
DO $$
DECLARE r name;
BEGIN
  FOR r IN SELECT rolname FROM shim_roles LOOP
    EXECUTE format('DROP ROLE %I', r);
  END LOOP;
END
$$;
SET client_min_messages = warning;
SELECT pg_temp.upgrade_every_release('plain');
RESET client_min_messages;

-- every version PostgreSQL can install that is older than the default one was
-- updated (the three releases before 0.4.0 among them), each giving a full catalog
SELECT setting,
       count(DISTINCT state) - 1 = (SELECT count(*) FROM pg_available_extension_versions AS v
                                    JOIN pg_available_extensions AS e ON e.name = v.name
                                    WHERE v.name = 'icpml'
                                      AND string_to_array(v.version, '.')::int[]
                                          < string_to_array(e.default_version, '.')::int[]) AS every_release,
       ARRAY['0.1.0', '0.2.0', '0.3.0'] <@ array_agg(DISTINCT state) AS known_releases,
       bool_and(n > 300) AS full_catalogs
FROM (SELECT setting, state, count(*) AS n FROM release_catalogs GROUP BY setting, state) AS s
GROUP BY setting ORDER BY setting;
-- no line only on one side, for any release
SELECT p.setting, p.version, d.side, d.item
FROM (SELECT DISTINCT setting, state AS version FROM release_catalogs WHERE state <> 'fresh') AS p,
LATERAL ((SELECT 'only after upgrade' AS side, item FROM release_catalogs
          WHERE setting = p.setting AND state = p.version
          EXCEPT ALL SELECT 'only after upgrade', item FROM release_catalogs
          WHERE setting = p.setting AND state = 'fresh')
         UNION ALL
         (SELECT 'only in a fresh install', item FROM release_catalogs
          WHERE setting = p.setting AND state = 'fresh'
          EXCEPT ALL SELECT 'only in a fresh install', item FROM release_catalogs
          WHERE setting = p.setting AND state = p.version)) AS d
ORDER BY 1, 2, 3, 4;

-- back to what --load-extension gave the tests that follow: no shim roles,
-- a fresh install of the default version
CREATE EXTENSION icpml;
SELECT extversion = default_version AS at_default_version
FROM pg_extension JOIN pg_available_extensions ON name = extname WHERE extname = 'icpml';
DROP TABLE catalogs, shim_roles, release_catalogs;
