-- icpml install script, assembled by the Makefile from src/sql/NN_*.sql.
\echo Use "CREATE EXTENSION icpml" to load this file. \quit

-- ---------------------------------------------------------------------------
-- Core
-- ---------------------------------------------------------------------------

CREATE FUNCTION icpml.xgboost_version()
RETURNS text
AS 'MODULE_PATHNAME', 'xgboost_version'
LANGUAGE C STABLE STRICT PARALLEL SAFE;

COMMENT ON FUNCTION icpml.xgboost_version() IS
  'Version of the XGBoost library icpml is linked against, as loaded at run time';

-- Statement trigger on icpml's tables: backends drop their caches after the
-- writing transaction commits (relcache invalidation).
CREATE FUNCTION icpml.invalidate_cache()
RETURNS trigger
AS 'MODULE_PATHNAME', 'invalidate_cache'
LANGUAGE C;
