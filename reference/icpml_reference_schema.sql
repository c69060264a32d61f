-- icpml reference Phase 1 schema
--
-- The tables a Phase 1 B2B sales app collects and icpml reads. Load with
--
--     psql -v ON_ERROR_STOP=1 -f reference/icpml_reference_schema.sql
--
-- Safe to run again: it creates what is missing and replaces the view and
-- the comments; it never drops data. Everything lives in schema public.
--
-- If your tables differ, you do not need these: create a view with the
-- column names of public.account_features over your own tables and point
-- icpml.feature_relation at it.
--
-- Supabase: public.sales_users stands in for auth.users (user ids are uuids,
-- the JWT subject). On Supabase, skip that table and let
-- user_interactions.user_id reference auth.users(id) instead.
-- Row level security is not enabled here; enable it on the base tables as your
-- app requires. The view is security_invoker, so those policies apply to
-- whoever queries it.

begin;

set local client_min_messages = warning;

create table if not exists public.account_signals (
	account_id bigint primary key,
	account_name text,
	industry text,
	engineering_role_count integer,
	has_open_engineering_roles boolean,
	total_open_roles integer,
	has_engineering_blog boolean,
	updated_at timestamptz not null default now()
);

comment on table public.account_signals is
	'One row per target account: intent signals collected by Phase 1 (job boards, web).';
comment on column public.account_signals.account_id is
	'Account key (bigint), referenced by research_runs and user_interactions.';
comment on column public.account_signals.account_name is
	'Company display name.';
comment on column public.account_signals.industry is
	'Industry label (categorical, e.g. saas, fintech, devtools); NULL when unknown.';
comment on column public.account_signals.engineering_role_count is
	'Number of open engineering job postings; NULL when unknown.';
comment on column public.account_signals.has_open_engineering_roles is
	'Whether the account is hiring engineers right now; NULL when unknown.';
comment on column public.account_signals.total_open_roles is
	'Number of open job postings of any kind (>= engineering_role_count); NULL when unknown.';
comment on column public.account_signals.has_engineering_blog is
	'Whether the account publishes an engineering blog; NULL when unknown.';
comment on column public.account_signals.updated_at is
	'When these signals were last refreshed.';

create table if not exists public.research_runs (
	research_run_id bigint generated always as identity primary key,
	account_id bigint not null references public.account_signals on delete cascade,
	company_size integer,
	funding_amount_usd numeric(14, 0),
	funding_date date,
	tech_stack text[],
	fit_verdict text check (fit_verdict in ('fit', 'not_fit', 'unsure')),
	created_at timestamptz not null default now()
);

-- Serves "latest research run of an account" (the view below); the id breaks
-- ties between runs created at the same instant.
create index if not exists research_runs_account_id_created_at_idx
	on public.research_runs (account_id, created_at desc, research_run_id desc);

comment on table public.research_runs is
	'One row per research of an account (by a person or an agent); the latest run per account is current. Source of ICP training labels.';
comment on column public.research_runs.research_run_id is
	'Research run key (identity).';
comment on column public.research_runs.account_id is
	'The account researched.';
comment on column public.research_runs.company_size is
	'Employee count found by this research; NULL when not found.';
comment on column public.research_runs.funding_amount_usd is
	'Amount of the most recent funding round in USD; NULL when none known or undisclosed.';
comment on column public.research_runs.funding_date is
	'Date of the most recent funding round; NULL when none known.';
comment on column public.research_runs.tech_stack is
	'Technologies the account uses, lower-case names (e.g. {postgresql,python,aws}); NULL when not found.';
comment on column public.research_runs.fit_verdict is
	'Researcher''s ICP verdict: fit, not_fit or unsure (NULL: no verdict); the ICP training label.';
comment on column public.research_runs.created_at is
	'When the research was done.';

create table if not exists public.sales_users (
	user_id uuid primary key,
	display_name text not null,
	created_at timestamptz not null default now()
);

comment on table public.sales_users is
	'Sales users of the app. Stand-in for Supabase auth.users: on Supabase use auth.users(id) instead.';
comment on column public.sales_users.user_id is
	'User key (uuid, the JWT subject on Supabase).';
comment on column public.sales_users.display_name is
	'Name shown in the app.';
comment on column public.sales_users.created_at is
	'When the user signed up.';

create table if not exists public.user_interactions (
	interaction_id bigint generated always as identity primary key,
	user_id uuid not null,
	account_id bigint not null references public.account_signals on delete cascade,
	interaction_type text not null
		check (interaction_type in ('view', 'research', 'save', 'contact', 'meeting', 'dismiss')),
	created_at timestamptz not null default now()
);

create index if not exists user_interactions_user_id_created_at_idx
	on public.user_interactions (user_id, created_at desc);
create index if not exists user_interactions_account_id_idx
	on public.user_interactions (account_id);
-- Serves "this user's interactions with these accounts" (recommend_accounts).
create index if not exists user_interactions_user_id_account_id_idx
	on public.user_interactions (user_id, account_id);

comment on table public.user_interactions is
	'Event log of what sales users do with accounts; the recommender''s feedback (rewards).';
comment on column public.user_interactions.interaction_id is
	'Event key (identity).';
comment on column public.user_interactions.user_id is
	'The acting user (sales_users / auth.users id); no foreign key so the same table works on Supabase.';
comment on column public.user_interactions.account_id is
	'The account acted on.';
comment on column public.user_interactions.interaction_type is
	'Funnel step: view, research, save, contact, meeting (positive outcomes, in increasing value) or dismiss (negative).';
comment on column public.user_interactions.created_at is
	'When it happened.';

-- One row per account: its signals plus the findings and verdict of its
-- latest research run (NULL when never researched). security_invoker makes
-- row level security of the base tables apply to the querying role.
create or replace view public.account_features with (security_invoker = true) as
select
	s.account_id,
	s.industry,
	s.engineering_role_count,
	s.has_open_engineering_roles,
	s.total_open_roles,
	s.has_engineering_blog,
	r.company_size,
	r.funding_amount_usd,
	r.funding_date,
	r.tech_stack,
	r.created_at as researched_at,
	case r.fit_verdict when 'fit' then true when 'not_fit' then false end as is_fit
from public.account_signals s
left join lateral (
	select rr.company_size, rr.funding_amount_usd, rr.funding_date, rr.tech_stack,
		   rr.created_at, rr.fit_verdict
	from public.research_runs rr
	where rr.account_id = s.account_id
	order by rr.created_at desc, rr.research_run_id desc
	limit 1
) r on true;

comment on view public.account_features is
	'ICP feature relation: one row per account, signals plus its latest research run. Point icpml.feature_relation at this view (or at your own view with these column names).';
comment on column public.account_features.account_id is 'Account key.';
comment on column public.account_features.industry is 'Industry label (categorical).';
comment on column public.account_features.engineering_role_count is 'Open engineering roles.';
comment on column public.account_features.has_open_engineering_roles is 'Hiring engineers now.';
comment on column public.account_features.total_open_roles is 'Open roles of any kind.';
comment on column public.account_features.has_engineering_blog is 'Has an engineering blog.';
comment on column public.account_features.company_size is 'Employee count from the latest research run.';
comment on column public.account_features.funding_amount_usd is 'Latest funding round amount (USD) from the latest research run.';
comment on column public.account_features.funding_date is 'Latest funding round date from the latest research run.';
comment on column public.account_features.tech_stack is 'Tech stack from the latest research run.';
comment on column public.account_features.researched_at is 'When the latest research run was done; NULL when never researched.';
comment on column public.account_features.is_fit is 'Label: latest verdict fit = true, not_fit = false, unsure or never researched = NULL.';

commit;
