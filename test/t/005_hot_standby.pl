# Scoring writes nothing, so it works on a hot standby: icp_score,
# icp_score_batch, explain_icp_score and prewarm on a streaming replica.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $primary = PostgreSQL::Test::Cluster->new('primary');
$primary->init(allows_streaming => 1);
$primary->start;
$primary->safe_psql('postgres', q{
  CREATE EXTENSION icpml;
  CREATE TABLE f (account_id bigint PRIMARY KEY, engineering_role_count int,
    has_open_engineering_roles bool, total_open_roles int, has_engineering_blog bool,
    company_size int, funding_amount_usd numeric, funding_date date, tech_stack text[]);
  INSERT INTO f SELECT g, g % 40, g % 3 = 0, g % 90, g % 2 = 0, 10 * g, NULL, NULL, ARRAY['python']
  FROM generate_series(1, 500) g;
  ALTER DATABASE postgres SET icpml.feature_relation = 'public.f';
});

$primary->backup('bk');
my $standby = PostgreSQL::Test::Cluster->new('standby');
$standby->init_from_backup($primary, 'bk', has_streaming => 1);
$standby->start;
$primary->wait_for_catchup($standby);

is($standby->safe_psql('postgres', 'SELECT pg_is_in_recovery()'), 't', 'standby is in recovery');
my $q = 'SELECT string_agg(format(\'%s:%s:%s\', account_id, score, priority), \',\' ORDER BY account_id) '
  . 'FROM icpml.icp_score_batch(ARRAY(SELECT generate_series(1, 500)::bigint))';
is($standby->safe_psql('postgres', $q), $primary->safe_psql('postgres', $q),
	'the standby scores every account exactly as the primary');
is($standby->safe_psql('postgres', 'SELECT icpml.prewarm()'),
	$primary->safe_psql('postgres', 'SELECT icpml.prewarm()'), 'prewarm works on the standby');
is($standby->safe_psql('postgres', 'SELECT count(*) FROM icpml.explain_icp_score(7)'),
	'9', 'explain works on the standby');

# a configuration change on the primary reaches a standby backend's warm
# cache: invalidations are replayed with the commit record
my $bg = $standby->background_psql('postgres');
my $old = $bg->query_safe($q);
$primary->safe_psql('postgres', "UPDATE icpml.rule_weights SET weight = 3 WHERE factor = 'bias'");
$primary->wait_for_catchup($standby);
my $new = $bg->query_safe($q);
isnt($new, $old, 'the warm standby backend rescored after the replayed change');
is($new, $primary->safe_psql('postgres', $q), 'and agrees with the primary');
$bg->quit;

$standby->stop;
$primary->stop;
done_testing();
