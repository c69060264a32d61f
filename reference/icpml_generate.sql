-- icpml reference data generator
--
-- Load after reference/icpml_reference_schema.sql, then call
--
--     select * from icpml_ref.generate(accounts => 100000, users => 20,
--                                      interactions => 1000000, seed => 42);
--
-- generate() TRUNCATEs public.account_signals, research_runs, sales_users and
-- user_interactions (RESTART IDENTITY CASCADE: tables with foreign keys to
-- them are emptied too) and fills them with synthetic data, in one
-- transaction. Pure SQL and PL/pgSQL, no extension needed. Everything it
-- defines lives in schema icpml_ref; the hidden truth it generated stays
-- there for evaluation. For speed it drops the foreign keys and secondary
-- indexes of the four tables (when the caller owns them) and rebuilds them
-- after the load; user triggers on the tables do fire. Timings on 2 cores,
-- stock postgresql.conf: 100k accounts / 1M interactions ~6 s, 1M / 10M
-- ~70 s.
--
-- Determinism
--   No random()/setseed(). Every draw is icpml_ref.u(seed, stream, id): a
--   uniform in (0,1) from the 52 low bits of hashint8extended(id,
--   seed * 1000003 + stream); u2() chains a second key. The same (seed,
--   sizes, as_of) gives byte-identical tables whatever the plan, parallelism,
--   row order or TimeZone (ids are computed, not taken from a sequence) on
--   the same platform (float math comes from the C library). as_of, the
--   "now" all dates are relative to, defaults to today 00:00 UTC: pass it
--   explicitly to reproduce data on another day. Streams are fixed numbers
--   per attribute, so adding a draw never changes the others.
--
-- Accounts (account_id 1..accounts), hidden truth in icpml_ref.account_truth
--   industry      categorical, icpml_ref.industries.weight: saas 22%,
--                 ecommerce 12, fintech 10, healthcare 10, manufacturing 10,
--                 devtools 8, retail 8, media 7, education 5, logistics 5,
--                 gaming 3.
--   company_size  lognormal, median 50 * exp(industry shift), sigma 1.7,
--                 clamped to 1..100000 (median ~58, about 49% in the
--                 50..1000 band, 0.1% above 10000).
--   funding       a round with p = 0.30 * industry multiplier (~30% overall);
--                 date uniform over the last 4 years; amount lognormal,
--                 median 3M USD * (size/30)^0.45, sigma 1.0, rounded to 10k,
--                 100k..5B. "Recent" = within 18 months (548 days) of as_of.
--   hiring        actively hiring engineers with p = sigmoid(-0.3 + 1.0 *
--                 recent funding + 0.25 * (ln size - 4)); if so
--                 engineering_role_count = round(lognormal(ln(0.4 + 0.012 *
--                 size * tech_level), 0.6)), else 0. total_open_roles adds
--                 non-engineering roles (lognormal in size, none for 40%/20%
--                 of non-hiring/hiring accounts), so total >= engineering.
--                 has_open_engineering_roles = count > 0, flipped for 3%.
--   blog          p = sigmoid(-2.4 + 1.6 * tech_level + 0.35 * (ln size - 4)):
--                 tech industries (devtools, saas, fintech, gaming) blog more.
--   tech_stack    independent draws over a 22-term vocabulary (postgresql,
--                 mysql, mongodb, redis, python, go, rust, java, dotnet, ruby,
--                 php, nodejs, react, kubernetes, docker, terraform, aws, gcp,
--                 azure, kafka, snowflake, elasticsearch): p = base_p(term) *
--                 industry weight of the term's group (modern, enterprise, web,
--                 data, cloud) * (0.5 + 0.12 ln size), capped at 0.95.
--   hidden        hidden_quality ~ N(0,1), never visible in public tables.
--
-- Observed data (public tables) = truth with noise
--   account_signals  industry NULL for 3%, each of the four hiring/blog
--                    signals NULL for 5% (independently).
--   research_runs    ~67% of accounts researched (p = sigmoid(0.5 + 0.5 *
--                    hiring + 0.15 * (ln size - 4) + 0.2 * blog): a selection
--                    bias, as in life); 75% once, 18% twice, 7% three times,
--                    the latest within the last year, earlier runs 14..200
--                    days apart. Per run: company_size = size * lognormal
--                    noise (sd 0.08, 5% smaller per older run), NULL for 5%;
--                    funding only if the round predates the run, amount NULL
--                    (undisclosed) for 8% of rounds; tech_stack = true stack
--                    (older runs miss each term with p 0.2), NULL for 5%.
--   fit_verdict      per run: 'unsure' with prob. 0.3 * (1 - |2p - 1|)
--                    (~11%), else Bernoulli(p): 'fit' / 'not_fit', where p =
--                    icpml_ref.true_fit_probability(account) (~25% of latest
--                    fit/not_fit verdicts are 'fit'). Every run of an account
--                    draws its own verdict; the latest one counts.
--
-- Ground truth (icpml_ref.true_fit_logit, documented there)
--   logit = -3.4 + industry effect (devtools +0.9 .. manufacturing -0.8)
--         + 2.2 * exp(-((ln size - 5.4) / 1.5)^2)   size sweet spot 50..1000
--         + (0.15 + 0.40 * hiring) * min(overlap, 4) stack overlap with
--                                  {postgresql,python,kubernetes,aws,go},
--                                  worth much more while hiring engineers
--         + 0.8 * hiring * tanh(engineering roles / 8)
--         + recent funding: 0.9 + 0.3 * clamp(log10(amount) - 6.5, -1, 1.5);
--           older funding: 0.15
--         + 0.4 * blog - 0.5 * (more than 20 open roles, none engineering)
--   true_fit_probability(account) = sigmoid(true_fit_logit(true features)
--         + 0.5 * hidden_quality). A linear score over the signals misses the
--   size sweet spot, the hiring x stack interaction and the industry effect;
--   a tree model can learn them. On 100k accounts (seed 42), ROC AUC against
--   the latest verdicts: true probability 0.84, true_fit_logit over the
--   observed (noisy, incomplete) features 0.81, a hand-made linear score
--   over the same signals 0.75.
--
-- Users (sales_users, icpml_ref.user_taste)
--   user_id = md5('icpml-ref-user:' || seed || ':' || j)::uuid, j = 1..users.
--   Hidden taste per user: 2..3 preferred industries, a preferred size
--   (log-uniform 20..5000), 2 preferred stack terms, a weight on true fit
--   (0.4..1.2) and an activity level (0.5..1.5, share of interactions).
--   icpml_ref.user_affinity(user, account) = 1.2 * industry preferred
--         + 1.0 * exp(-((ln size - ln preferred size) / 1.2)^2)
--         + 0.5 * preferred stack terms present - 1.0.
--
-- Interactions (user_interactions)
--   Each user has a candidate pool: a random sample of accounts (pool size
--   a third of the user's interactions, at least 20, at most all) ranked by
--   affinity + fit_weight * true logit + Gumbel noise (a sample without
--   replacement proportional to exp(affinity + fit_weight * logit)). 85% of
--   a user's interactions go to the top quarter of the pool (skewed to the
--   top: rank = top_n * u^2), 15% uniformly over the whole pool
--   (exploration). Type from engagement m = sigmoid(affinity + fit_weight *
--   logit + 0.5): weights view 0.55, research 0.16(0.4+1.2m), save
--   0.10(0.2+1.6m), contact 0.06(0.1+1.8m), meeting 0.12 m^2, dismiss
--   0.20(1-m): view >> research > save > contact > meeting, and dismiss for
--   poor matches. created_at uniform over the 180 days before as_of.

begin;

set local client_min_messages = warning;

create schema if not exists icpml_ref;
comment on schema icpml_ref is
	'icpml reference data generator: functions and the hidden ground truth of the synthetic data.';

--
-- Deterministic random numbers
--

-- Uniform in (0,1) from (seed, stream, id): 52 hash bits, never 0 or 1.
create or replace function icpml_ref.u(seed integer, stream integer, id bigint)
returns float8
language sql immutable parallel safe
as $$
	select ((hashint8extended(id, seed::bigint * 1000003 + stream)
			 & 4503599627370495)::float8 + 0.5) / 4503599627370496.0
$$;

-- Uniform in (0,1) from (seed, stream, id, sub): a second key for 2-d draws.
create or replace function icpml_ref.u2(seed integer, stream integer, id bigint, sub bigint)
returns float8
language sql immutable parallel safe
as $$
	select ((hashint8extended(sub, hashint8extended(id, seed::bigint * 1000003 + stream))
			 & 4503599627370495)::float8 + 0.5) / 4503599627370496.0
$$;

-- Standard normal (Box-Muller over u2(..., 1) and u2(..., 2)).
create or replace function icpml_ref.normal(seed integer, stream integer, id bigint)
returns float8
language sql immutable parallel safe
as $$
	select sqrt(-2.0 * ln(icpml_ref.u2(seed, stream, id, 1)))
		   * cos(6.283185307179586 * icpml_ref.u2(seed, stream, id, 2))
$$;

-- exp(N(mu, sigma^2)).
create or replace function icpml_ref.lognormal(seed integer, stream integer, id bigint,
											   mu float8, sigma float8)
returns float8
language sql immutable parallel safe
as $$
	select exp(mu + sigma * icpml_ref.normal(seed, stream, id))
$$;

-- true with probability p.
create or replace function icpml_ref.bernoulli(seed integer, stream integer, id bigint, p float8)
returns boolean
language sql immutable parallel safe
as $$
	select icpml_ref.u(seed, stream, id) < p
$$;

-- Logistic function, safe for any finite x.
create or replace function icpml_ref.sigmoid(x float8)
returns float8
language sql immutable parallel safe
as $$
	select 1.0 / (1.0 + exp(-least(greatest(x, -700.0), 700.0)))
$$;

--
-- Vocabularies
--

create table if not exists icpml_ref.industries (
	industry text primary key,
	idx integer not null unique,
	weight float8 not null,
	size_shift float8 not null,
	tech_level float8 not null,
	funding_mult float8 not null,
	w_modern float8 not null,
	w_enterprise float8 not null,
	w_web float8 not null,
	w_data float8 not null,
	w_cloud float8 not null
);
comment on table icpml_ref.industries is
	'Industry profiles of the generator: share of accounts (weight), shift of ln(company size), tech_level (engineering hiring and blog propensity), funding multiplier and tech-stack group weights.';

insert into icpml_ref.industries as i
	(industry, idx, weight, size_shift, tech_level, funding_mult,
	 w_modern, w_enterprise, w_web, w_data, w_cloud)
values
	('saas',          1, 0.22,  0.0, 1.2, 1.4, 1.3, 0.8, 1.1, 1.0, 1.2),
	('ecommerce',     2, 0.12,  0.0, 0.8, 0.9, 0.9, 0.7, 1.5, 0.9, 1.0),
	('fintech',       3, 0.10,  0.2, 1.0, 1.5, 1.1, 1.3, 0.7, 1.3, 1.1),
	('healthcare',    4, 0.10,  0.4, 0.4, 0.8, 0.6, 1.4, 0.7, 0.8, 0.9),
	('manufacturing', 5, 0.10,  0.6, 0.3, 0.4, 0.4, 1.5, 0.6, 0.6, 0.8),
	('devtools',      6, 0.08, -0.3, 1.5, 1.6, 1.7, 0.5, 1.0, 1.1, 1.3),
	('retail',        7, 0.08,  0.5, 0.4, 0.5, 0.5, 1.1, 1.2, 0.7, 0.8),
	('media',         8, 0.07,  0.0, 0.7, 0.7, 0.8, 0.7, 1.4, 0.8, 1.0),
	('education',     9, 0.05,  0.1, 0.5, 0.6, 0.6, 1.0, 1.2, 0.5, 0.8),
	('logistics',    10, 0.05,  0.3, 0.4, 0.7, 0.7, 1.2, 0.8, 0.9, 0.9),
	('gaming',       11, 0.03, -0.2, 1.0, 1.1, 1.1, 0.9, 0.9, 0.9, 1.0)
on conflict (industry) do update set
	idx = excluded.idx, weight = excluded.weight, size_shift = excluded.size_shift,
	tech_level = excluded.tech_level, funding_mult = excluded.funding_mult,
	w_modern = excluded.w_modern, w_enterprise = excluded.w_enterprise,
	w_web = excluded.w_web, w_data = excluded.w_data, w_cloud = excluded.w_cloud;

-- The tech-stack vocabulary, in the order draw_tech_stack() draws it.
create or replace function icpml_ref.tech_vocabulary()
returns text[]
language sql immutable parallel safe
as $$
	select '{postgresql,mysql,mongodb,redis,python,go,rust,java,dotnet,ruby,php,nodejs,react,kubernetes,docker,terraform,aws,gcp,azure,kafka,snowflake,elasticsearch}'::text[]
$$;

-- The stack the ground truth rewards (see true_fit_logit).
create or replace function icpml_ref.target_stack()
returns text[]
language sql immutable parallel safe
as $$
	select '{postgresql,python,kubernetes,aws,go}'::text[]
$$;

-- One account's tech stack: each term independently with p = base_p *
-- (industry weight of its group) * size_factor, capped at 0.95.
create or replace function icpml_ref.draw_tech_stack(seed integer, id bigint,
	w_modern float8, w_enterprise float8, w_web float8, w_data float8,
	w_cloud float8, size_factor float8)
returns text[]
language sql immutable parallel safe
as $$
	select array_remove(array[
		case when icpml_ref.u2(seed, 60, id, 1)  < least(0.95, 0.40 * w_modern * size_factor)     then 'postgresql' end,
		case when icpml_ref.u2(seed, 60, id, 2)  < least(0.95, 0.35 * w_web * size_factor)        then 'mysql' end,
		case when icpml_ref.u2(seed, 60, id, 3)  < least(0.95, 0.15 * w_web * size_factor)        then 'mongodb' end,
		case when icpml_ref.u2(seed, 60, id, 4)  < least(0.95, 0.30 * w_modern * size_factor)     then 'redis' end,
		case when icpml_ref.u2(seed, 60, id, 5)  < least(0.95, 0.45 * w_data * size_factor)       then 'python' end,
		case when icpml_ref.u2(seed, 60, id, 6)  < least(0.95, 0.15 * w_modern * size_factor)     then 'go' end,
		case when icpml_ref.u2(seed, 60, id, 7)  < least(0.95, 0.05 * w_modern * size_factor)     then 'rust' end,
		case when icpml_ref.u2(seed, 60, id, 8)  < least(0.95, 0.35 * w_enterprise * size_factor) then 'java' end,
		case when icpml_ref.u2(seed, 60, id, 9)  < least(0.95, 0.25 * w_enterprise * size_factor) then 'dotnet' end,
		case when icpml_ref.u2(seed, 60, id, 10) < least(0.95, 0.12 * w_web * size_factor)        then 'ruby' end,
		case when icpml_ref.u2(seed, 60, id, 11) < least(0.95, 0.20 * w_web * size_factor)        then 'php' end,
		case when icpml_ref.u2(seed, 60, id, 12) < least(0.95, 0.35 * w_web * size_factor)        then 'nodejs' end,
		case when icpml_ref.u2(seed, 60, id, 13) < least(0.95, 0.40 * w_web * size_factor)        then 'react' end,
		case when icpml_ref.u2(seed, 60, id, 14) < least(0.95, 0.25 * w_modern * size_factor)     then 'kubernetes' end,
		case when icpml_ref.u2(seed, 60, id, 15) < least(0.95, 0.40 * w_modern * size_factor)     then 'docker' end,
		case when icpml_ref.u2(seed, 60, id, 16) < least(0.95, 0.18 * w_modern * size_factor)     then 'terraform' end,
		case when icpml_ref.u2(seed, 60, id, 17) < least(0.95, 0.50 * w_cloud * size_factor)      then 'aws' end,
		case when icpml_ref.u2(seed, 60, id, 18) < least(0.95, 0.16 * w_cloud * size_factor)      then 'gcp' end,
		case when icpml_ref.u2(seed, 60, id, 19) < least(0.95, 0.22 * w_enterprise * size_factor) then 'azure' end,
		case when icpml_ref.u2(seed, 60, id, 20) < least(0.95, 0.10 * w_data * size_factor)       then 'kafka' end,
		case when icpml_ref.u2(seed, 60, id, 21) < least(0.95, 0.10 * w_data * size_factor)       then 'snowflake' end,
		case when icpml_ref.u2(seed, 60, id, 22) < least(0.95, 0.12 * w_data * size_factor)       then 'elasticsearch' end
	], null)
$$;

--
-- Ground truth
--

-- The feature-explainable part of an account's true ICP fit, on the logit
-- scale. NULL inputs count as absent (0 / false / no funding / empty stack).
--   -3.4
--   + industry: devtools 0.9, saas 0.6, fintech 0.4, gaming 0.2,
--     ecommerce 0.1, media 0, logistics -0.2, healthcare -0.3,
--     education -0.4, retail -0.5, manufacturing -0.8, other/NULL 0
--   + 2.2 * exp(-((ln size - 5.4) / 1.5)^2)        size sweet spot 50..1000
--   + (0.15 + 0.40 * h) * least(k, 4)              k = terms of the stack in
--                                                  target_stack(), h = hiring
--                                                  engineers (the flag, else
--                                                  role count > 0)
--   + 0.8 * h * tanh(engineering_role_count / 8)
--   + funding in the 18 months (548 days) before as_of:
--       0.9 + 0.3 * clamp(log10(amount, default 5M) - 6.5, -1, 1.5);
--     older funding: 0.15
--   + 0.4 * has_engineering_blog
--   - 0.5 when more than 20 open roles and none in engineering
create or replace function icpml_ref.true_fit_logit(
	industry text,
	engineering_role_count integer,
	has_open_engineering_roles boolean,
	total_open_roles integer,
	has_engineering_blog boolean,
	company_size integer,
	funding_amount_usd numeric,
	funding_date date,
	tech_stack text[],
	as_of date)
returns float8
language sql immutable parallel safe
as $$
	select -3.4
		+ case industry
			when 'devtools' then 0.9 when 'saas' then 0.6 when 'fintech' then 0.4
			when 'gaming' then 0.2 when 'ecommerce' then 0.1 when 'media' then 0.0
			when 'logistics' then -0.2 when 'healthcare' then -0.3
			when 'education' then -0.4 when 'retail' then -0.5
			when 'manufacturing' then -0.8 else 0.0 end
		+ 2.2 * exp(-(((ln(greatest(coalesce(company_size, 1), 1)::float8) - 5.4) / 1.5) ^ 2))
		+ (0.15 + 0.40 * coalesce(has_open_engineering_roles,
								  coalesce(engineering_role_count, 0) > 0)::int)
		  * least(4,
				  coalesce('postgresql' = any (tech_stack), false)::int
				  + coalesce('python' = any (tech_stack), false)::int
				  + coalesce('kubernetes' = any (tech_stack), false)::int
				  + coalesce('aws' = any (tech_stack), false)::int
				  + coalesce('go' = any (tech_stack), false)::int)
		+ 0.8 * coalesce(has_open_engineering_roles,
						 coalesce(engineering_role_count, 0) > 0)::int
		  * tanh(coalesce(engineering_role_count, 0) / 8.0)
		+ case
			when funding_date is null then 0.0
			when funding_date >= as_of - 548 then
				0.9 + 0.3 * greatest(-1.0, least(1.5,
					log(greatest(coalesce(funding_amount_usd, 5000000), 1)::float8) - 6.5))
			else 0.15 end
		+ 0.4 * coalesce(has_engineering_blog, false)::int
		- case when coalesce(total_open_roles, 0) > 20
				and coalesce(engineering_role_count, 0) = 0 then 0.5 else 0.0 end
$$;

create table if not exists icpml_ref.generation_info (
	singleton boolean primary key default true check (singleton),
	gen_seed integer not null,
	gen_accounts integer not null,
	gen_users integer not null,
	gen_interactions bigint not null,
	as_of timestamptz not null,
	generated_at timestamptz not null
);
comment on table icpml_ref.generation_info is
	'Parameters of the last icpml_ref.generate() call (one row).';

create table if not exists icpml_ref.account_truth (
	account_id bigint primary key,
	industry text not null,
	engineering_role_count integer not null,
	has_open_engineering_roles boolean not null,
	total_open_roles integer not null,
	has_engineering_blog boolean not null,
	company_size integer not null,
	funding_amount_usd numeric(14, 0),
	funding_date date,
	tech_stack text[] not null,
	hidden_quality float8 not null,
	fit_logit float8 not null
);
comment on table icpml_ref.account_truth is
	'Hidden true attributes of each generated account (no missing values, no research noise) and its true fit logit = true_fit_logit(these) + 0.5 * hidden_quality.';

create table if not exists icpml_ref.user_taste (
	user_idx integer primary key,
	user_id uuid not null unique,
	display_name text not null,
	pref_industries text[] not null,
	size_center float8 not null,
	pref_tech text[] not null,
	fit_weight float8 not null,
	activity float8 not null,
	int_lo bigint not null,
	int_hi bigint not null,
	cand_n bigint not null,
	top_n bigint not null,
	pool_lo bigint not null
);
comment on table icpml_ref.user_taste is
	'Hidden taste of each generated sales user: preferred industries, preferred ln(company size), preferred stack terms, weight on true fit, activity; and the interaction ids (int_lo, int_hi], candidate pool size (cand_n), top of the pool (top_n) and pool offset the generator gave the user.';

-- A user's taste for an account, on a logit-like scale (about -1 .. 2.7):
-- 1.2 * (industry preferred) + 1.0 * exp(-((ln size - size_center) / 1.2)^2)
-- + 0.5 * (preferred stack terms present) - 1.0.
create or replace function icpml_ref.affinity_score(
	pref_industries text[], size_center float8, pref_tech text[],
	industry text, company_size integer, tech_stack text[])
returns float8
language sql immutable parallel safe
as $$
	select 1.2 * coalesce(industry = any (pref_industries), false)::int
		+ 1.0 * exp(-(((ln(greatest(coalesce(company_size, 1), 1)::float8) - size_center) / 1.2) ^ 2))
		+ 0.5 * (coalesce(pref_tech[1] = any (tech_stack), false)::int
				 + coalesce(pref_tech[2] = any (tech_stack), false)::int)
		- 1.0
$$;

-- An interaction type given engagement m in (0,1) and a uniform draw:
-- weights view 0.55, research 0.16(0.4+1.2m), save 0.10(0.2+1.6m),
-- contact 0.06(0.1+1.8m), meeting 0.12 m^2, dismiss 0.20(1-m).
create or replace function icpml_ref.pick_interaction_type(m float8, u float8)
returns text
language sql immutable parallel safe
as $$
	select ('{view,research,save,contact,meeting,dismiss}'::text[])[
		width_bucket(u * (0.55 + 0.16 * (0.4 + 1.2 * m) + 0.10 * (0.2 + 1.6 * m)
						  + 0.06 * (0.1 + 1.8 * m) + 0.12 * m * m + 0.20 * (1.0 - m)),
			array[0.0,
				  0.55,
				  0.55 + 0.16 * (0.4 + 1.2 * m),
				  0.55 + 0.16 * (0.4 + 1.2 * m) + 0.10 * (0.2 + 1.6 * m),
				  0.55 + 0.16 * (0.4 + 1.2 * m) + 0.10 * (0.2 + 1.6 * m) + 0.06 * (0.1 + 1.8 * m),
				  0.55 + 0.16 * (0.4 + 1.2 * m) + 0.10 * (0.2 + 1.6 * m) + 0.06 * (0.1 + 1.8 * m)
				  + 0.12 * m * m])]
$$;

-- True probability that an account is an ICP fit (NULL for unknown ids).
create or replace function icpml_ref.true_fit_probability(account_id bigint)
returns float8
language sql stable parallel safe
as $$
	select icpml_ref.sigmoid(t.fit_logit)
	from icpml_ref.account_truth t
	where t.account_id = true_fit_probability.account_id
$$;

-- A user's hidden affinity for an account (affinity_score over the user's
-- taste and the account's true attributes); NULL for unknown ids. Add
-- fit_weight * true logit for what drives the user's interactions.
create or replace function icpml_ref.user_affinity(user_id uuid, account_id bigint)
returns float8
language sql stable parallel safe
as $$
	select icpml_ref.affinity_score(u.pref_industries, u.size_center, u.pref_tech,
									a.industry, a.company_size, a.tech_stack)
	from icpml_ref.user_taste u, icpml_ref.account_truth a
	where u.user_id = user_affinity.user_id
	  and a.account_id = user_affinity.account_id
$$;

--
-- The generator
--

create or replace function icpml_ref.generate(
	accounts integer default 10000,
	users integer default 20,
	interactions bigint default 100000,
	seed integer default 42,
	as_of timestamptz default null)
returns table(what text, row_count bigint)
language plpgsql
set work_mem = '256MB'
set maintenance_work_mem = '512MB'
set client_min_messages = warning
set search_path = pg_catalog, pg_temp
as $fn$
declare
	v_seed		integer := generate.seed;
	v_n			bigint := generate.accounts;
	v_users		integer := generate.users;
	v_int		bigint := generate.interactions;
	v_as_of		timestamptz := coalesce(generate.as_of,
										(date_trunc('day', now() at time zone 'UTC') at time zone 'UTC'));
	v_day		date;
	v_ind_names text[];
	v_ind_cuts	float8[];
	v_vocab		text[] := icpml_ref.tech_vocabulary();
	v_first		bigint[];
	v_uid		uuid[];
	v_cand		bigint[];
	v_top		bigint[];
	v_pool_lo	bigint[];
	v_restore	text[] := '{}';
	v_ddl		record;
	v_sql		text;
begin
	if v_n is null or v_n < 1 then
		raise exception 'accounts must be at least 1'
			using errcode = 'invalid_parameter_value';
	end if;
	if v_users is null or v_users < 0 or v_int is null or v_int < 0 or v_seed is null then
		raise exception 'users and interactions must be >= 0 and seed not NULL'
			using errcode = 'invalid_parameter_value';
	end if;
	if v_int > 0 and v_users = 0 then
		raise exception 'interactions need at least one user'
			using errcode = 'invalid_parameter_value';
	end if;
	if v_int > 4294967295 then
		raise exception 'at most 4294967295 interactions'
			using errcode = 'invalid_parameter_value';
	end if;

	-- dates are relative to as_of, taken in UTC so the time zone setting
	-- cannot change the data
	v_day := (v_as_of at time zone 'UTC')::date;

	-- cumulative industry weights in exact arithmetic: the cut points must
	-- not depend on summation order
	select array_agg(i.industry order by i.idx),
		   (array_agg((i.sum_w / i.tot)::float8 order by i.idx))[1:count(*) - 1]
	  into v_ind_names, v_ind_cuts
	  from (select i.*, sum(i.weight::numeric) over (order by i.idx) as sum_w,
				   sum(i.weight::numeric) over () as tot
			  from icpml_ref.industries i) i;

	-- RESTART IDENTITY needs ownership of the sequences; the ids are set
	-- explicitly below anyway, so a caller with only TRUNCATE, INSERT and
	-- sequence UPDATE rights gets the same data without it
	if (select bool_and(pg_catalog.pg_has_role(k.relowner, 'USAGE'))
		  from pg_catalog.pg_class k
		 where k.oid in ('public.research_runs'::regclass, 'public.user_interactions'::regclass)) then
		truncate public.user_interactions, public.research_runs, public.sales_users,
				 public.account_signals, icpml_ref.account_truth, icpml_ref.user_taste
			restart identity cascade;
	else
		truncate public.user_interactions, public.research_runs, public.sales_users,
				 public.account_signals, icpml_ref.account_truth, icpml_ref.user_taste
			cascade;
	end if;

	-- Bulk load: drop the foreign keys and the secondary indexes of the four
	-- tables (those we own and nothing depends on) and rebuild them at the
	-- end; much faster than maintaining them row by row. All in this
	-- transaction: an error restores everything.
	for v_ddl in
		select format('alter table %s drop constraint %I', c.conrelid::regclass, c.conname) as drop_sql,
			   format('alter table %s add constraint %I %s', c.conrelid::regclass, c.conname,
					  pg_catalog.pg_get_constraintdef(c.oid)) as restore_sql
		  from pg_catalog.pg_constraint c
		  join pg_catalog.pg_class k on k.oid = c.conrelid
		 where c.contype = 'f'
		   and c.conrelid in ('public.research_runs'::regclass, 'public.user_interactions'::regclass)
		   and pg_catalog.pg_has_role(k.relowner, 'USAGE')
		union all
		select format('drop index %s', i.indexrelid::regclass),
			   pg_catalog.pg_get_indexdef(i.indexrelid)
		  from pg_catalog.pg_index i
		  join pg_catalog.pg_class k on k.oid = i.indrelid
		 where i.indrelid in ('public.account_signals'::regclass, 'public.research_runs'::regclass,
							  'public.sales_users'::regclass, 'public.user_interactions'::regclass)
		   and pg_catalog.pg_has_role(k.relowner, 'USAGE')
		   and not exists (select 1 from pg_catalog.pg_constraint c where c.conindid = i.indexrelid)
		   and not exists (select 1 from pg_catalog.pg_depend d
							where d.refclassid = 'pg_catalog.pg_class'::regclass
							  and d.refobjid = i.indexrelid and d.deptype = 'n')
	loop
		execute v_ddl.drop_sql;
		v_restore := v_restore || v_ddl.restore_sql;
	end loop;

	delete from icpml_ref.generation_info;
	insert into icpml_ref.generation_info
		(gen_seed, gen_accounts, gen_users, gen_interactions, as_of, generated_at)
	values (v_seed, v_n, v_users, v_int, v_as_of, now());

	-- 1. hidden truth per account; nested OFFSET 0 subqueries keep each draw
	--	  evaluated once per row
	insert into icpml_ref.account_truth
		(account_id, industry, engineering_role_count, has_open_engineering_roles,
		 total_open_roles, has_engineering_blog, company_size, funding_amount_usd,
		 funding_date, tech_stack, hidden_quality, fit_logit)
	select c.account_id, c.industry, c.eng, c.eng > 0, c.eng + c.non_eng, c.blog,
		   c.size, c.amount, c.fdate, c.stack, c.hidden,
		   icpml_ref.true_fit_logit(c.industry, c.eng, c.eng > 0, c.eng + c.non_eng,
									c.blog, c.size, c.amount, c.fdate, c.stack, v_day)
		   + 0.5 * c.hidden
	from (
		select b.*,
			   case when b.hiring then
					least(5000, round(icpml_ref.lognormal(v_seed, 7, b.account_id,
						ln(0.4 + 0.012 * b.size * b.tech_level), 0.6)))::int
				else 0 end as eng,
			   case when icpml_ref.u(v_seed, 8, b.account_id)
						 < case when b.hiring then 0.8 else 0.6 end then
					least(20000, round(icpml_ref.lognormal(v_seed, 9, b.account_id,
						ln(0.3 + 0.015 * b.size), 0.8)))::int
				else 0 end as non_eng,
			   icpml_ref.u(v_seed, 11, b.account_id)
				 < icpml_ref.sigmoid(-2.4 + 1.6 * b.tech_level + 0.35 * (ln(b.size) - 4.0)) as blog,
			   icpml_ref.draw_tech_stack(v_seed, b.account_id, b.w_modern, b.w_enterprise,
										 b.w_web, b.w_data, b.w_cloud, 0.5 + 0.12 * ln(b.size)) as stack,
			   icpml_ref.normal(v_seed, 12, b.account_id) as hidden
		from (
			select a.*,
				   case when a.fdate is not null then
						(round(greatest(1e5, least(5e9, icpml_ref.lognormal(v_seed, 5, a.account_id,
							ln(3e6) + 0.45 * ln(a.size / 30.0), 1.0))) / 1e4) * 1e4)::numeric(14, 0)
					end as amount,
				   icpml_ref.u(v_seed, 6, a.account_id)
					 < icpml_ref.sigmoid(-0.3 + coalesce(a.fdate >= v_day - 548, false)::int
										 + 0.25 * (ln(a.size) - 4.0)) as hiring
			from (
				select g.account_id, i.industry, i.tech_level,
					   i.w_modern, i.w_enterprise, i.w_web, i.w_data, i.w_cloud,
					   greatest(1, least(100000, round(icpml_ref.lognormal(v_seed, 2, g.account_id,
							ln(50.0) + i.size_shift, 1.7))))::int as size,
					   case when icpml_ref.u(v_seed, 3, g.account_id) < 0.30 * i.funding_mult
						 then v_day - floor(icpml_ref.u(v_seed, 4, g.account_id) * 1461)::int end as fdate
				from (select g.account_id,
							 v_ind_names[width_bucket(icpml_ref.u(v_seed, 1, g.account_id), v_ind_cuts) + 1]
								as industry
						from generate_series(1::bigint, v_n) g(account_id)
					  offset 0) g
				join icpml_ref.industries i on i.industry = g.industry
				offset 0) a
			offset 0) b
		offset 0) c;

	-- 2. observed signals: the truth with missing values
	insert into public.account_signals
		(account_id, account_name, industry, engineering_role_count,
		 has_open_engineering_roles, total_open_roles, has_engineering_blog, updated_at)
	select t.account_id,
		   ('{Acme,Blue,Bright,Cloud,Core,Data,Delta,Echo,Flux,Fore,Green,Hyper,Iron,Nova,Open,Peak,Pine,Quant,Red,Sky,Stone,Swift,True,Vector,Wave,Zen,North,Silver,Atlas,Orbit}'::text[])
				[1 + floor(icpml_ref.u(v_seed, 20, t.account_id) * 30)::int]
		   || ('{bit,base,bridge,cast,dash,field,flow,forge,gate,grid,hub,layer,line,loop,mark,mind,path,point,scale,shift,sight,span,stack,sync,ware,works}'::text[])
				[1 + floor(icpml_ref.u(v_seed, 21, t.account_id) * 26)::int]
		   || ' '
		   || ('{Inc,Labs,Systems,Technologies,Group,Software,Health,Logistics,Media,AI,Co,Analytics}'::text[])
				[1 + floor(icpml_ref.u(v_seed, 22, t.account_id) * 12)::int],
		   case when icpml_ref.u(v_seed, 23, t.account_id) >= 0.03 then t.industry end,
		   case when icpml_ref.u(v_seed, 24, t.account_id) >= 0.05 then t.engineering_role_count end,
		   case when icpml_ref.u(v_seed, 25, t.account_id) >= 0.05 then
				t.has_open_engineering_roles <> (icpml_ref.u(v_seed, 10, t.account_id) < 0.03) end,
		   case when icpml_ref.u(v_seed, 26, t.account_id) >= 0.05 then t.total_open_roles end,
		   case when icpml_ref.u(v_seed, 27, t.account_id) >= 0.05 then t.has_engineering_blog end,
		   v_as_of - make_interval(secs => floor(icpml_ref.u(v_seed, 28, t.account_id) * 30 * 86400))
	from icpml_ref.account_truth t;

	-- 3. research runs: ~67% of accounts, 1..3 runs each (run 1 is the latest)
	insert into public.research_runs
		(research_run_id, account_id, company_size, funding_amount_usd, funding_date,
		 tech_stack, fit_verdict, created_at)
	overriding system value
	select row_number() over (order by r.account_id, r.run desc),
		   r.account_id,
		   case when icpml_ref.u2(v_seed, 35, r.account_id, r.run) >= 0.05 then
				greatest(1, round(r.company_size * exp(0.08 * icpml_ref.normal(v_seed, 35 + r.run, r.account_id)
													   - 0.05 * (r.run - 1))))::int end,
		   case when r.funding_date <= r.created_at::date
					 and icpml_ref.u(v_seed, 45, r.account_id) >= 0.08
				then r.funding_amount_usd end,
		   case when r.funding_date <= r.created_at::date then r.funding_date end,
		   case when icpml_ref.u2(v_seed, 46, r.account_id, r.run) < 0.05 then null
				when r.run = 1 then r.tech_stack
				else array(select s.term from unnest(r.tech_stack) with ordinality s(term, k)
							where icpml_ref.u2(v_seed, 46 + r.run, r.account_id, s.k) >= 0.2
							order by s.k) end,
		   case when icpml_ref.u(v_seed, 50 + r.run, r.account_id)
					 < 0.3 * (1.0 - abs(2.0 * r.p - 1.0)) then 'unsure'
				when icpml_ref.u(v_seed, 55 + r.run, r.account_id) < r.p then 'fit'
				else 'not_fit' end,
		   r.created_at
	from (
		select t.account_id, t.company_size, t.funding_amount_usd, t.funding_date,
			   t.tech_stack, icpml_ref.sigmoid(t.fit_logit) as p, g.run,
			   v_as_of - make_interval(secs => floor(
					icpml_ref.u(v_seed, 33, t.account_id) * 365 * 86400
					+ (g.run - 1) * (14 + 186 * icpml_ref.u(v_seed, 34, t.account_id)) * 86400))
				 as created_at
		from (select t.*, icpml_ref.u(v_seed, 31, t.account_id) as u_runs
				from icpml_ref.account_truth t
			   where icpml_ref.u(v_seed, 30, t.account_id)
					 < icpml_ref.sigmoid(0.5 + 0.5 * t.has_open_engineering_roles::int
										 + 0.15 * (ln(t.company_size) - 4.0)
										 + 0.2 * t.has_engineering_blog::int)
			  offset 0) t
		cross join lateral generate_series(1,
			case when t.u_runs < 0.07 then 3 when t.u_runs < 0.25 then 2 else 1 end) g(run)
		offset 0) r;

	perform setval(pg_get_serial_sequence('public.research_runs', 'research_run_id'),
				   greatest(1, (select count(*) from public.research_runs)),
				   (select count(*) > 0 from public.research_runs));

	-- 4. users and their hidden taste. Interaction ids (int_lo, int_hi] in
	--	  proportion to integer activity weights (exact arithmetic); pool
	--	  sizes cand_n ~ a third of the user's interactions.
	insert into icpml_ref.user_taste
		(user_idx, user_id, display_name, pref_industries, size_center, pref_tech,
		 fit_weight, activity, int_lo, int_hi, cand_n, top_n, pool_lo)
	select z.j, z.user_id, z.display_name, z.pref_industries, z.size_center, z.pref_tech,
		   z.fit_weight, z.act / 100.0, z.int_lo, z.int_hi, z.cand_n,
		   ceil(z.cand_n / 4.0)::bigint,
		   sum(z.cand_n) over (order by z.j) - z.cand_n
	from (
		select w.*,
			   least(v_n, greatest(20, ceil((w.int_hi - w.int_lo) / 3.0)))::bigint as cand_n
		from (
			select x.*, coalesce(lag(x.int_hi) over (order by x.j), 0) as int_lo
			from (
				select y.*,
					   floor(v_int::numeric * sum(y.act) over (order by y.j)
							 / sum(y.act) over ())::bigint as int_hi
				from (
					select g.j,
						   md5('icpml-ref-user:' || v_seed || ':' || g.j)::uuid as user_id,
						   ('{Ada,Ben,Chloe,Dan,Eva,Finn,Grace,Hugo,Iris,Jon,Kara,Liam,Maya,Noah,Olga,Paul,Rosa,Sam,Tara,Uma,Vic,Wes,Yara,Zoe}'::text[])
								[1 + floor(icpml_ref.u(v_seed, 70, g.j) * 24)::int]
						   || ' '
						   || ('{Adams,Baker,Chen,Diaz,Evans,Fischer,Garcia,Hughes,Ito,Jones,Kim,Lopez,Meyer,Nowak,Okafor,Patel,Rossi,Silva,Tanaka,Walsh}'::text[])
								[1 + floor(icpml_ref.u(v_seed, 71, g.j) * 20)::int] as display_name,
						   array(select distinct v_ind_names[width_bucket(icpml_ref.u2(v_seed, 72, g.j, k), v_ind_cuts) + 1]
								   from generate_series(1, case when icpml_ref.u(v_seed, 73, g.j) < 0.5 then 3 else 2 end) k
								  order by 1) as pref_industries,
						   ln(20.0) + icpml_ref.u(v_seed, 74, g.j) * (ln(5000.0) - ln(20.0)) as size_center,
						   array[v_vocab[1 + floor(icpml_ref.u(v_seed, 75, g.j) * cardinality(v_vocab))::int],
								 v_vocab[1 + floor(icpml_ref.u(v_seed, 76, g.j) * cardinality(v_vocab))::int]] as pref_tech,
						   0.4 + 0.8 * icpml_ref.u(v_seed, 77, g.j) as fit_weight,
						   50 + floor(icpml_ref.u(v_seed, 78, g.j) * 101)::int as act
					from generate_series(1, v_users) g(j)) y) x) w) z;

	insert into public.sales_users (user_id, display_name, created_at)
	select t.user_id, t.display_name,
		   v_as_of - make_interval(secs => floor((200 + 400 * icpml_ref.u(v_seed, 79, t.user_idx)) * 86400))
	from icpml_ref.user_taste t;

	-- 5. candidate pools: a random sample of accounts per user (a stride
	--	  permutation of 1..accounts from a per-user offset), ranked by
	--	  affinity + fit_weight * logit + Gumbel noise. Pool row pkey =
	--	  pool_lo of the user + rank.
	drop table if exists pg_temp.icpml_ref_pool;
	create temp table icpml_ref_pool on commit drop as
	select c.pool_lo
		   + row_number() over (partition by c.user_idx
								order by c.score - ln(-ln(icpml_ref.u2(v_seed, 80, c.user_idx, c.k))) desc,
										 c.account_id) as pkey,
		   c.account_id,
		   icpml_ref.sigmoid(c.score + 0.5) as engage
	from (
		select s.user_idx, s.pool_lo, s.k, a.account_id,
			   icpml_ref.affinity_score(s.pref_industries, s.size_center, s.pref_tech,
										a.industry, a.company_size, a.tech_stack)
			   + s.fit_weight * a.fit_logit as score
		from (
			select t.user_idx, t.pool_lo, t.pref_industries, t.size_center, t.pref_tech,
				   t.fit_weight, k.k,
				   (k.k * 2147483647
					+ floor(icpml_ref.u(v_seed, 81, t.user_idx) * v_n)::bigint) % v_n + 1 as account_id
			from icpml_ref.user_taste t
			cross join lateral generate_series(0::bigint, t.cand_n - 1) k(k)
			offset 0) s
		join icpml_ref.account_truth a on a.account_id = s.account_id
		offset 0) c;
	analyze pg_temp.icpml_ref_pool;

	-- 6. interactions: 85% from the top quarter of the user's pool, 15%
	--	  anywhere in it. Users are found by binary search over their first
	--	  ids; EXECUTE plans with the real sizes, so the pool is hashed and
	--	  rows arrive in interaction_id order.
	select coalesce(array_agg(t.int_lo + 1 order by t.user_idx), '{}'),
		   coalesce(array_agg(t.user_id order by t.user_idx), '{}'),
		   coalesce(array_agg(t.cand_n order by t.user_idx), '{}'),
		   coalesce(array_agg(t.top_n order by t.user_idx), '{}'),
		   coalesce(array_agg(t.pool_lo order by t.user_idx), '{}')
	  into v_first, v_uid, v_cand, v_top, v_pool_lo
	  from icpml_ref.user_taste t;

	execute $q$
	insert into public.user_interactions
		(interaction_id, user_id, account_id, interaction_type, created_at)
	overriding system value
	select x.i, ($3::uuid[])[x.j], p.account_id,
		   icpml_ref.pick_interaction_type(p.engage, icpml_ref.u($1, 93, x.i)),
		   $5 - make_interval(secs => floor(icpml_ref.u($1, 94, x.i) * 180 * 86400))
	from (
		select y.i, y.j,
			   ($7::bigint[])[y.j]
			   + case when icpml_ref.u($1, 90, y.i) < 0.15
					  then 1 + floor(($4::bigint[])[y.j] * icpml_ref.u($1, 91, y.i))::bigint
					  else 1 + floor(($6::bigint[])[y.j] * icpml_ref.u($1, 92, y.i) ^ 2)::bigint end
				 as pkey
		from (select g.i, width_bucket(g.i, $2::bigint[]) as j
				from generate_series(1::bigint, $8) g(i)
			  offset 0) y
		offset 0) x
	join pg_temp.icpml_ref_pool p on p.pkey = x.pkey
	$q$
	using v_seed, v_first, v_uid, v_cand, v_as_of, v_top, v_pool_lo, v_int;

	perform setval(pg_get_serial_sequence('public.user_interactions', 'interaction_id'),
				   greatest(1, v_int), v_int > 0);
	drop table pg_temp.icpml_ref_pool;

	-- rebuild what the bulk load dropped
	foreach v_sql in array v_restore loop
		execute v_sql;
	end loop;

	-- fresh statistics (ANALYZE needs ownership; others get autovacuum's)
	for v_sql in
		select format('analyze %s', k.oid::regclass)
		  from pg_catalog.pg_class k
		 where k.oid in ('public.account_signals'::regclass, 'public.research_runs'::regclass,
						 'public.sales_users'::regclass, 'public.user_interactions'::regclass,
						 'icpml_ref.account_truth'::regclass, 'icpml_ref.user_taste'::regclass)
		   and pg_catalog.pg_has_role(k.relowner, 'USAGE')
	loop
		execute v_sql;
	end loop;

	return query
		select 'account_signals'::text, (select count(*) from public.account_signals)
		union all
		select 'research_runs', (select count(*) from public.research_runs)
		union all
		select 'sales_users', (select count(*) from public.sales_users)
		union all
		select 'user_interactions', (select count(*) from public.user_interactions);
end
$fn$;

comment on function icpml_ref.generate(integer, integer, bigint, integer, timestamptz) is
	'Truncate and fill the reference Phase 1 tables with deterministic synthetic data (same arguments, same data); see the head of reference/icpml_generate.sql.';
comment on function icpml_ref.u(integer, integer, bigint) is
	'Deterministic uniform in (0,1): 52 bits of hashint8extended(id, seed * 1000003 + stream).';
comment on function icpml_ref.u2(integer, integer, bigint, bigint) is
	'Deterministic uniform in (0,1) keyed by (seed, stream, id, sub).';
comment on function icpml_ref.normal(integer, integer, bigint) is
	'Deterministic standard normal (Box-Muller).';
comment on function icpml_ref.lognormal(integer, integer, bigint, float8, float8) is
	'Deterministic exp(N(mu, sigma^2)).';
comment on function icpml_ref.bernoulli(integer, integer, bigint, float8) is
	'Deterministic Bernoulli(p).';
comment on function icpml_ref.true_fit_logit(text, integer, boolean, integer, boolean, integer, numeric, date, text[], date) is
	'Ground truth: the feature-explainable ICP fit logit of an account (formula in the function source).';
comment on function icpml_ref.true_fit_probability(bigint) is
	'Ground truth: sigmoid(true_fit_logit(true features) + 0.5 * hidden_quality) of a generated account.';
comment on function icpml_ref.user_affinity(uuid, bigint) is
	'Hidden taste of a generated user for an account (logit-like scale, about -1 .. 2.7).';

commit;
