# Cancelling a training: pg_cancel_backend and statement_timeout stop
# train_icp_model between boosting rounds, nothing is stored, the backend
# stays healthy (no leftover memory context, lock or XGBoost state), and a
# second training never overlaps a running one.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $node = PostgreSQL::Test::Cluster->new('train_cancel');
$node->init;
$node->append_conf('postgresql.conf', "icpml.nthread = 1\n");
$node->start;

$node->safe_psql('postgres', 'CREATE EXTENSION icpml');
for my $f ('reference/icpml_reference_schema.sql', 'reference/icpml_generate.sql')
{
	$node->safe_psql('postgres', slurp_file($f));
}
$node->safe_psql('postgres', q{
  SELECT * FROM icpml_ref.generate(accounts => 3000, users => 0, interactions => 0, seed => 42);
});

# 10000 rounds x (5 folds + refit): minutes of boosting unless interrupted
my $long = "SELECT * FROM icpml.train_icp_model(n_rounds => 10000, deploy => 'always');\n";

my $bg = $node->background_psql('postgres', on_error_stop => 0);
my $pid = $bg->query_safe('SELECT pg_backend_pid()');

# --- 1. pg_cancel_backend while it boosts --------------------------------
$bg->query_until(qr/started/, "\\echo started\n$long");
ok( $node->poll_query_until('postgres',
		"SELECT count(*) = 1 FROM pg_stat_activity WHERE pid = $pid AND state = 'active' AND query LIKE '%train_icp_model%'"),
	'the training is running');
# reading 1.7k rows takes milliseconds; after a second it is boosting
sleep 1;

# --- 2. a second training does not overlap the running one ---------------
my ($ret, $out, $err) = $node->psql('postgres',
	"SELECT * FROM icpml.train_icp_model(n_rounds => 5, deploy => 'never')");
like($err, qr/another icpml training is running/, 'a concurrent training is refused');

ok($node->safe_psql('postgres', "SELECT pg_cancel_backend($pid)") eq 't', 'cancel sent');
my ($res) = $bg->query('SELECT 42');
like($bg->{stderr}, qr/canceling statement due to user request/, 'the training stopped on cancel');
is($res, '42', 'the same backend answers the next query');
$bg->{stderr} = '';

is($bg->query_safe(q{SELECT count(*) FROM pg_backend_memory_contexts WHERE name LIKE 'icpml training%'}),
	'0', 'no training memory context is left in the backend');
is($node->safe_psql('postgres', 'SELECT count(*) FROM icpml.models'), '0', 'no model was stored');
is($node->safe_psql('postgres', "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'"),
	'0', 'the training lock went with the transaction');

# --- 3. statement_timeout --------------------------------------------------
($ret, $out, $err) = $node->psql('postgres', "SET statement_timeout = '2s';\n$long");
like($err, qr/canceling statement due to statement timeout/, 'statement_timeout stops the training');
is($node->safe_psql('postgres', 'SELECT count(*) FROM icpml.models'), '0', 'still no model stored');

# --- 4. the cancelled backend trains normally afterwards ------------------
my $row = $bg->query_safe(
	"SELECT version || ':' || deployed FROM icpml.train_icp_model(n_rounds => 20, deploy => 'always')");
is($row, '1:true', 'the same backend then trains and deploys version 1');
is($bg->query_safe(q{SELECT count(*) FROM pg_backend_memory_contexts WHERE name LIKE 'icpml training%'}),
	'0', 'a finished training leaves no memory context behind either');
$bg->quit;

is($node->safe_psql('postgres', "SELECT string_agg(version || ':' || status, ',') FROM icpml.models"),
	'1:deployed', 'exactly one model, deployed');

$node->stop;
done_testing();
