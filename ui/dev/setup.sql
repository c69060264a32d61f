-- Development and test set-up for icpml's UI: run as a superuser in a
-- database that has the reference schema (reference/icpml_reference_schema.sql),
-- generated data and CREATE EXTENSION icpml. NOT part of the extension.
--
-- It makes the database look like a Supabase project to the development
-- endpoint (dev/server.mjs) and to the UI:
--   * Supabase's API roles anon, authenticated, service_role (BYPASSRLS), and
--     authenticator, the LOGIN role the endpoint connects as (NOINHERIT: it
--     gets a role's rights only by SET ROLE, as PostgREST does);
--   * auth.uid(), as Supabase defines it (the JWT subject);
--   * icpml's grants (grant_scoring / grant_admin) and the app's grants on
--     the reference tables;
--   * sales territories and row-level security: an authenticated user sees
--     only the accounts of the industries in their territory, the research and
--     interactions of those accounts, and inserts only their own interactions.
-- Safe to run again.
\set ON_ERROR_STOP 1
SET client_min_messages = warning;

DO $$
DECLARE r text;
BEGIN
  FOREACH r IN ARRAY ARRAY['anon', 'authenticated', 'service_role'] LOOP
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = r) THEN
      EXECUTE format('CREATE ROLE %I NOLOGIN', r);
    END IF;
  END LOOP;
  ALTER ROLE service_role BYPASSRLS;
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'authenticator') THEN
    CREATE ROLE authenticator LOGIN NOINHERIT;
  END IF;
END $$;
GRANT anon, authenticated, service_role TO authenticator;

CREATE SCHEMA IF NOT EXISTS auth;
CREATE OR REPLACE FUNCTION auth.uid() RETURNS uuid
LANGUAGE sql STABLE
AS $$
  SELECT nullif(coalesce(current_setting('request.jwt.claim.sub', true),
                         current_setting('request.jwt.claims', true)::jsonb ->> 'sub'), '')::uuid
$$;
GRANT USAGE ON SCHEMA auth TO anon, authenticated, service_role;
GRANT EXECUTE ON FUNCTION auth.uid() TO anon, authenticated, service_role;

DO $$ BEGIN PERFORM icpml.grant_scoring('authenticated'); PERFORM icpml.grant_admin('service_role'); END $$;

-- the app's tables
GRANT USAGE ON SCHEMA public TO anon, authenticated, service_role;
GRANT SELECT ON public.account_signals, public.research_runs, public.account_features,
                public.sales_users TO authenticated;
GRANT SELECT, INSERT ON public.user_interactions TO authenticated;
GRANT ALL ON ALL TABLES IN SCHEMA public TO service_role;

-- Sales territories: the industries each user works. Every user gets the
-- industries whose rank (by name) plus the user's rank is not a multiple of 3,
-- about two thirds of them.
CREATE TABLE IF NOT EXISTS public.user_territories (
  user_id uuid NOT NULL,
  industry text NOT NULL,
  PRIMARY KEY (user_id, industry)
);
COMMENT ON TABLE public.user_territories IS
  'Demo/test only: the industries a sales user works; row-level security shows a user only these accounts.';
GRANT SELECT ON public.user_territories TO authenticated;
GRANT ALL ON public.user_territories TO service_role;
INSERT INTO public.user_territories (user_id, industry)
SELECT u.user_id, i.industry
FROM (SELECT user_id, row_number() OVER (ORDER BY user_id) AS n FROM public.sales_users) u,
     (SELECT industry, row_number() OVER (ORDER BY industry) AS n
      FROM (SELECT DISTINCT industry FROM public.account_signals WHERE industry IS NOT NULL) d) i
WHERE (u.n + i.n) % 3 <> 0
ON CONFLICT DO NOTHING;

ALTER TABLE public.account_signals ENABLE ROW LEVEL SECURITY;
ALTER TABLE public.research_runs ENABLE ROW LEVEL SECURITY;
ALTER TABLE public.user_interactions ENABLE ROW LEVEL SECURITY;
ALTER TABLE public.sales_users ENABLE ROW LEVEL SECURITY;
ALTER TABLE public.user_territories ENABLE ROW LEVEL SECURITY;

DROP POLICY IF EXISTS territory ON public.account_signals;
CREATE POLICY territory ON public.account_signals FOR SELECT TO authenticated
  USING (industry IN (SELECT t.industry FROM public.user_territories t WHERE t.user_id = auth.uid()));

-- research and interactions of the accounts the user sees (the subqueries
-- read account_signals under its own policy)
DROP POLICY IF EXISTS visible_account ON public.research_runs;
CREATE POLICY visible_account ON public.research_runs FOR SELECT TO authenticated
  USING (EXISTS (SELECT FROM public.account_signals s WHERE s.account_id = research_runs.account_id));
DROP POLICY IF EXISTS visible_account ON public.user_interactions;
CREATE POLICY visible_account ON public.user_interactions FOR SELECT TO authenticated
  USING (EXISTS (SELECT FROM public.account_signals s WHERE s.account_id = user_interactions.account_id));
DROP POLICY IF EXISTS own_interactions ON public.user_interactions;
CREATE POLICY own_interactions ON public.user_interactions FOR INSERT TO authenticated
  WITH CHECK (user_id = auth.uid()
              AND EXISTS (SELECT FROM public.account_signals s WHERE s.account_id = user_interactions.account_id));

DROP POLICY IF EXISTS everyone ON public.sales_users;
CREATE POLICY everyone ON public.sales_users FOR SELECT TO authenticated USING (true);
DROP POLICY IF EXISTS own_territory ON public.user_territories;
CREATE POLICY own_territory ON public.user_territories FOR SELECT TO authenticated
  USING (user_id = auth.uid());
