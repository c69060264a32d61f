-- ---------------------------------------------------------------------------
-- The exported scorer (C, export.c): a deployed model, or the rules, written
-- out as plain SQL and PL/pgSQL for a database that cannot load icpml (hosted
-- Supabase).  Administrative: it reads icpml.models.  docs/supabase-hosted.md
-- ---------------------------------------------------------------------------

CREATE FUNCTION icpml.export_scorer_sql(version integer DEFAULT NULL,
                                        relation text DEFAULT NULL,
                                        rules boolean DEFAULT false)
RETURNS text
AS 'MODULE_PATHNAME', 'export_scorer_sql'
LANGUAGE C VOLATILE;

COMMENT ON FUNCTION icpml.export_scorer_sql(integer, text, boolean) IS
  'A SQL script that installs icpml.icp_score and icpml.icp_score_batch for a model version (default: the deployed one, else the rules; rules => true: the rules) into a database without the icpml extension, reading relation (default: the model''s own); the same probabilities as the C path';
