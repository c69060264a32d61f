-- The extension installs into schema icpml, links XGBoost, and defines its GUCs.
SELECT extname, extversion, extrelocatable, extnamespace::regnamespace
FROM pg_extension WHERE extname = 'icpml';

-- linked against libxgboost: the runtime library reports a version
SELECT icpml.xgboost_version() ~ '^[0-9]+\.[0-9]+\.[0-9]+$' AS xgboost_linked;

SHOW icpml.nthread;
SHOW icpml.feature_relation;
SHOW icpml.feature_key;
SHOW icpml.top_factors;

-- GUC bounds are enforced
SET icpml.nthread = 0;
SET icpml.top_factors = 33;

-- unknown icpml.* settings are rejected (prefix reserved)
SET icpml.no_such_setting = 1;

-- every object lives in schema icpml
SELECT pg_describe_object(classid, objid, 0) AS object
FROM pg_depend
WHERE refclassid = 'pg_extension'::regclass
  AND refobjid = (SELECT oid FROM pg_extension WHERE extname = 'icpml')
  AND deptype = 'e'
ORDER BY 1;
