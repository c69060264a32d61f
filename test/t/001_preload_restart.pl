# icpml preloaded into the postmaster: _PG_init must stay fork-safe (GUCs
# only), backends score normally, and the configuration survives a restart.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $node = PostgreSQL::Test::Cluster->new('preload');
$node->init;
$node->append_conf('postgresql.conf', "shared_preload_libraries = 'icpml'\nicpml.nthread = 1\nrestart_after_crash = on\n");
$node->start;

$node->safe_psql('postgres', q{
  CREATE EXTENSION icpml;
  CREATE TABLE f (account_id bigint PRIMARY KEY, engineering_role_count int,
    has_open_engineering_roles bool, total_open_roles int, has_engineering_blog bool,
    company_size int, funding_amount_usd numeric, funding_date date, tech_stack text[]);
  INSERT INTO f SELECT g, g % 40, g % 3 = 0, g % 90, g % 2 = 0, 10 * g, NULL, NULL, '{python}'
  FROM generate_series(1, 200) g;
  ALTER DATABASE postgres SET icpml.feature_relation = 'public.f';
});

like($node->safe_psql('postgres', 'SELECT icpml.xgboost_version()'),
	qr/^\d+\.\d+\.\d+$/, 'XGBoost answers in a backend forked from a postmaster that preloaded icpml');

my $before = $node->safe_psql('postgres',
	'SELECT string_agg(score::text, \',\' ORDER BY account_id) FROM icpml.icp_score_batch(ARRAY(SELECT generate_series(1, 200)::bigint))');

# several backends at once, each loading its own cache
my @h = map { $node->background_psql('postgres') } 1 .. 3;
for my $i (0 .. 2)
{
	my $out = $h[$i]->query_safe('SELECT score FROM icpml.icp_score(' . (50 + $i) . ')');
	like($out, qr/^\d+$/, "concurrent backend $i scores");
}
$h[0]->query_safe("UPDATE icpml.rule_weights SET weight = 4 WHERE factor = 'engineering_blog'");
# another backend sees the committed change on its next call
my $changed = $h[1]->query_safe('SELECT score FROM icpml.icp_score(2)');
my $fresh = $node->safe_psql('postgres', 'SELECT score FROM icpml.icp_score(2)');
is($changed, $fresh, 'a cached backend sees another session\'s committed weight change');
$_->quit for @h;

$node->restart;
my $after = $node->safe_psql('postgres',
	'SELECT string_agg(score::text, \',\' ORDER BY account_id) FROM icpml.icp_score_batch(ARRAY(SELECT generate_series(1, 200)::bigint))');
isnt($after, $before, 'the weight change persisted across the restart');
is($node->safe_psql('postgres', "SELECT weight FROM icpml.rule_weights WHERE factor = 'engineering_blog'"),
	'4', 'configuration survives a restart');

# a backend that used XGBoost crashes: the postmaster (which never touched
# XGBoost) resets and forks healthy backends again
my $bg = $node->background_psql('postgres');
my $pid = $bg->query_safe('SELECT pg_backend_pid() FROM (SELECT icpml.xgboost_version()) v');
kill 'KILL', $pid;
eval { $bg->quit };
ok($node->poll_query_until('postgres', 'SELECT score IS NOT NULL FROM icpml.icp_score(7)'),
	'scoring works after crash recovery');

$node->stop;
done_testing();
