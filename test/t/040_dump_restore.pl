# pg_dump of a database using icpml, restored into another cluster, brings
# back what the extension learned and what its administrators set: the
# settings (over the defaults CREATE EXTENSION inserts), the deployed model,
# the materialised scores, the bandit state, account feedback and the
# recommendation log, with sequences that continue where they stopped.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $src = PostgreSQL::Test::Cluster->new('dump_src');
$src->init;
$src->start;
$src->safe_psql('postgres', 'CREATE DATABASE app');

$src->safe_psql('app', q{
  SET icpml.nthread = 1;
  CREATE EXTENSION icpml;
  CREATE TABLE accounts (account_id bigint PRIMARY KEY, industry text,
    engineering_role_count int, has_open_engineering_roles bool, total_open_roles int,
    has_engineering_blog bool, company_size int, funding_amount_usd numeric,
    funding_date date, tech_stack text[], researched_at timestamptz, is_fit bool);
  INSERT INTO accounts
  SELECT g, (ARRAY['saas', 'fintech', 'devtools', 'retail'])[1 + g % 4], g % 37, g % 3 <> 0,
         (g * 7) % 90, g % 2 = 0, 10 + (g * 37) % 3000, NULL,
         CASE WHEN g % 5 = 0 THEN current_date - g % 600 END, '{python,aws}',
         CASE WHEN g % 4 <> 0 THEN now() - (g % 90) * interval '1 day' END,
         CASE WHEN g % 7 <> 0 THEN (g % 37 > 12 AND g % 2 = 0) <> (g % 11 = 0) END
  FROM generate_series(1, 300) g;
  CREATE TABLE interactions (interaction_id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    user_id uuid NOT NULL, account_id bigint NOT NULL, interaction_type text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now());
  CREATE INDEX ON interactions (user_id, created_at DESC);
  CREATE INDEX ON interactions (user_id, account_id);
  ALTER DATABASE app SET icpml.feature_relation = 'public.accounts';
  ALTER DATABASE app SET icpml.interactions_relation = 'public.interactions';
});

# customised settings: changed rows, a new reward type
$src->safe_psql('app', q{
  UPDATE icpml.rule_weights SET weight = 2.5 WHERE factor = 'engineering_blog';
  UPDATE icpml.rule_settings SET size_min = 20, target_stack = '{python,go}';
  UPDATE icpml.bandit_settings SET alpha = 0.4, default_policy = 'thompson', candidates = 200;
  UPDATE icpml.candidate_log_settings SET sample_rate = 1, retention = '90 days';
  UPDATE icpml.reward_map SET reward = 0.9 WHERE interaction_type = 'contact';
  INSERT INTO icpml.reward_map (interaction_type, reward) VALUES ('demo_booked', 1.0);
});

# a deployed model, scores, and a recommender that has learned something
$src->safe_psql('app', q{
  SET icpml.nthread = 1;
  SELECT version FROM icpml.train_icp_model(deploy => 'always', seed => 7, folds => 3);
  SELECT icpml.score_all();
  SELECT icpml.enable_online_feedback();
  DO $$
  DECLARE i int;
  BEGIN
    FOR i IN 1..12 LOOP
      INSERT INTO interactions (user_id, account_id, interaction_type)
      SELECT ('00000000-0000-0000-0000-00000000000' || (1 + i % 3))::uuid, r.account_id,
             (ARRAY['view', 'save', 'contact', 'demo_booked'])[1 + (r.account_id + i) % 4]
      FROM icpml.recommend_accounts(('00000000-0000-0000-0000-00000000000' || (1 + i % 3))::uuid, 5,
                                    policy => 'linucb', seed => i) r
      WHERE r.rank <= 2;
    END LOOP;
  END
  $$;
  SELECT icpml.start_experiment('dump-test', ARRAY['linucb', 'greedy']);
  SELECT count(*) FROM icpml.recommend_accounts('00000000-0000-0000-0000-000000000001', 3, seed => 1);
  SELECT count(*) FROM icpml.recommend_accounts('00000000-0000-0000-0000-000000000002', 3, seed => 2);
  SELECT icpml.stop_experiment('dump-test');
  SELECT icpml.process_feedback(now() + interval '30 days');
});

# one line per configuration table of icpml (what pg_dump keeps): its row
# count and a digest of every row
my $digest = q{
  SELECT string_agg(c.relname || ' ' || (xpath('/table/row/d/text()', query_to_xml(
           format('SELECT count(*) || '' '' || coalesce(md5(string_agg(x::text, ''|'' ORDER BY x::text)), ''-'') AS d'
                  ' FROM %s AS x', c.oid::regclass), false, false, '')))[1]::text,
         E'\n' ORDER BY c.relname)
  FROM pg_extension AS e, unnest(e.extconfig) AS cfg(oid) JOIN pg_class AS c ON c.oid = cfg.oid
  WHERE e.extname = 'icpml' AND c.relkind = 'r'
};
my $before = $src->safe_psql('app', $digest);
my $max_id = $src->safe_psql('app', 'SELECT max(recommendation_id) FROM icpml.recommendations');
my $max_version = $src->safe_psql('app', 'SELECT max(version) FROM icpml.bandit_state');
my $global_version = $src->safe_psql('app', "SELECT version FROM icpml.bandit_state WHERE scope = 'global'");
my $probe = q{SELECT round(probability::numeric, 6), model_version FROM icpml.icp_score(17)};
my $probability = $src->safe_psql('app', $probe);
my $src_results = $src->safe_psql('app', q{
  SELECT string_agg(variant || ':' || users, ',' ORDER BY variant) FROM icpml.experiment_results('dump-test')});
like($src_results, qr/^greedy:\d,linucb:\d$/, 'the source ran an experiment');
ok($max_id > 0 && $max_version > 0, 'the source has a recommendation log and a bandit state');
like($before, qr/^bandit_state [1-9]/m, 'the source has learned state rows');
is(scalar(() = $before =~ /\n/g) + 1, 22, 'every configuration table (twenty-two) is compared');

my $dump = $PostgreSQL::Test::Utils::tmp_check . '/app.dump';
$src->command_ok([ 'pg_dump', '-Fc', '-C', '-f', $dump, '-d', $src->connstr('app') ],
	'pg_dump of the database');
$src->stop;

my $dst = PostgreSQL::Test::Cluster->new('dump_dst');
$dst->init;
$dst->start;
$dst->command_ok([ 'pg_restore', '--exit-on-error', '-C', '-d', $dst->connstr('postgres'), $dump ],
	'pg_restore into a new cluster, without errors');

is($dst->safe_psql('app', $digest), $before,
	'settings, models, scores, bandit state, feedback and the log come back row for row');
is($dst->safe_psql('app', $probe), $probability, 'the deployed model scores as before');
is($dst->safe_psql('app', q{
  SELECT string_agg(variant || ':' || users, ',' ORDER BY variant) FROM icpml.experiment_results('dump-test')}),
	$src_results, 'experiment results come back');
is($dst->safe_psql('app', q{
  SELECT string_agg(interaction_type || '=' || reward, ',' ORDER BY interaction_type)
  FROM icpml.reward_map WHERE interaction_type IN ('contact', 'demo_booked')}),
	'contact=0.9,demo_booked=1', 'customised and added reward rows survive over the defaults');

# the restored recommender serves from the restored state and continues the sequences
is($dst->safe_psql('app', q{
  SELECT count(*) FROM icpml.recommend_accounts('00000000-0000-0000-0000-000000000001', 5, seed => 1)}),
	5, 'recommendations after the restore');
is($dst->safe_psql('app', qq{
  SELECT bool_and(recommendation_id > $max_id) AND bool_and(state_version = $global_version)
         AND bool_and(policy = 'thompson')
  FROM icpml.recommendations WHERE recommendation_id > $max_id}),
	't', 'new log rows continue the id sequence, use the restored global state and the restored default policy');
$dst->safe_psql('app', q{
  INSERT INTO interactions (user_id, account_id, interaction_type)
  SELECT '00000000-0000-0000-0000-000000000001', account_id, 'save'
  FROM icpml.recommendations ORDER BY recommendation_id DESC LIMIT 1});
cmp_ok($dst->safe_psql('app', "SELECT version FROM icpml.bandit_state WHERE scope = 'global'"),
	'>', $max_version, 'feedback after the restore advances the state version sequence');

# after the restore, INSERT keeps its meaning on the settings tables
is($dst->safe_psql('app', q{
  INSERT INTO icpml.reward_map (interaction_type, reward) VALUES ('contact', 0.1) ON CONFLICT DO NOTHING;
  SELECT reward FROM icpml.reward_map WHERE interaction_type = 'contact'}),
	'0.9', 'INSERT ... ON CONFLICT DO NOTHING keeps the restored row');
my ($ret, $stdout, $stderr) = $dst->psql('app',
	q{INSERT INTO icpml.rule_weights (factor, weight, description) VALUES ('bias', -2, 'again')});
like($stderr, qr/duplicate key value/, 'a plain INSERT of an existing settings key still fails');

$dst->stop;
done_testing();
