# Deploys and the per-backend model cache across sessions: a backend that
# cached the deployed booster sees another session's deploy / undeploy on
# its next call, never an uncommitted or rolled-back one, with no query of
# icpml's tables per call; the deployed model survives a restart; and
# run_training never overlaps another training.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $node = PostgreSQL::Test::Cluster->new('deploy_cache');
$node->init;
$node->append_conf('postgresql.conf', "icpml.nthread = 1\ntrack_counts = on\n");
$node->start;

$node->safe_psql('postgres', 'CREATE EXTENSION icpml');
for my $f ('reference/icpml_reference_schema.sql', 'reference/icpml_generate.sql')
{
	$node->safe_psql('postgres', slurp_file($f));
}
$node->safe_psql('postgres', q{
  SELECT * FROM icpml_ref.generate(accounts => 2000, users => 5, interactions => 5000, seed => 42,
                                   as_of => '2026-01-01 00:00+00');
});

# two versions: 1 deployed, 2 stored
my ($v1, $d1) = split /\|/, $node->safe_psql('postgres',
	"SELECT version, deployed FROM icpml.train_icp_model(deploy => 'always', n_rounds => 30)");
my ($v2, $d2) = split /\|/, $node->safe_psql('postgres',
	"SELECT version, deployed FROM icpml.train_icp_model(deploy => 'never', n_rounds => 10, seed => 7)");
is("$v1 $d1 $v2 $d2", '1 t 2 f', 'version 1 deployed, version 2 stored');

my $a = $node->background_psql('postgres');
my $b = $node->background_psql('postgres');

# Scans of icpml.models / icpml.deployments by this backend not yet
# flushed to the statistics collector (pg_stat_xact_*); nothing is flushed
# inside a transaction block, so a difference within one counts exactly.
my $scans = q{SELECT coalesce(sum(seq_scan + coalesce(idx_scan, 0)), 0)
  FROM pg_stat_xact_user_tables
  WHERE relid IN ('icpml.models'::regclass, 'icpml.deployments'::regclass)};

# icpml-table scans made by running $sql in session $s (in one transaction)
sub scans_during
{
	my ($s, $sql) = @_;
	$s->query_safe('BEGIN');
	my $before = $s->query_safe($scans);
	my $out = $s->query_safe($sql);
	my $after = $s->query_safe($scans);
	$s->query_safe('COMMIT');
	return ($after - $before, $out);
}
my $score = q{SELECT model || ':' || coalesce(model_version, 0) FROM icpml.icp_score(5)};

# A's first call loads and caches the booster
is($a->query_safe($score), "xgboost:$v1", 'session A scores with the deployed version');

# a warm cache reads none of icpml's tables, however many calls
my ($n, $out) = scans_during($a,
	q{SELECT count(*) FROM generate_series(1, 500) g, icpml.icp_score(g) WHERE model = 'xgboost'});
is("$n $out", '0 500', '500 calls with a warm cache: no query of icpml.models or icpml.deployments');

# B deploys version 2: A's next call uses it, after one reload
$b->query_safe("SELECT icpml.deploy_model(version => $v2)");
($n, $out) = scans_during($a,
	qq{SELECT string_agg(DISTINCT model || ':' || model_version, ',')
	   FROM generate_series(1, 500) g, icpml.icp_score(g)});
is($out, "xgboost:$v2", 'A sees the version B deployed on its next call');
is($n, 1, 'the change costs A exactly one read of icpml.models, then none per call');

# an uncommitted deploy is invisible; a rolled-back one changes nothing
$b->query_safe('BEGIN');
$b->query_safe("SELECT icpml.deploy_model(version => $v1)");
is($a->query_safe($score), "xgboost:$v2", 'an uncommitted deploy in B is not seen by A');
$b->query_safe('ROLLBACK');
is($a->query_safe($score), "xgboost:$v2", 'a rolled-back deploy changed nothing');

# undeploy: back to the rules; rollback: back to version 2
$b->query_safe('SELECT icpml.undeploy_model()');
is($a->query_safe($score), 'rules:0', 'A scores with the rules after B undeploys');
$b->query_safe('SELECT icpml.rollback_model()');
is($a->query_safe($score), "xgboost:$v2", 'A sees the rolled-back-to version');
$b->query_safe('SELECT icpml.rollback_model()');
is($a->query_safe($score), "xgboost:$v1", 'and the one before it');

# a write to the rules reloads the cache but keeps the deployed model
$b->query_safe("UPDATE icpml.rule_weights SET weight = weight WHERE factor = 'bias'");
is($a->query_safe($score), "xgboost:$v1", 'a rules write leaves the deployed model in use');

# the scores themselves follow the version
my $p_a = $a->query_safe('SELECT probability FROM icpml.icp_score(5)');
my $p_fresh = $node->safe_psql('postgres', 'SELECT probability FROM icpml.icp_score(5)');
is($p_a, $p_fresh, 'A\'s cached booster scores exactly like a fresh backend');

# overlapping trainings are refused while one holds the training lock
$b->query_safe('BEGIN');
$b->query_safe('SELECT pg_advisory_xact_lock(icpml.training_lock_key())');
my ($ret, $err);
($ret, $out, $err) = $node->psql('postgres', 'CALL icpml.run_training()');
like($err, qr/a model is being trained in another session/, 'run_training refuses while a training runs');
($ret, $out, $err) = $node->psql('postgres', 'SELECT * FROM icpml.train_icp_model()');
like($err, qr/another icpml training is running/, 'train_icp_model refuses too');
$b->query_safe('COMMIT');
$b->query_safe("SELECT pg_advisory_lock(hashtext('icpml.run_training')::bigint)");
($ret, $out, $err) = $node->psql('postgres', 'CALL icpml.run_training()');
like($err, qr/another icpml.run_training\(\) is in progress/, 'run_training refuses while another run_training runs');
$b->query_safe("SELECT pg_advisory_unlock(hashtext('icpml.run_training')::bigint)");
is($node->safe_psql('postgres', 'SELECT count(*) FROM icpml.training_runs'), '0',
	'refused runs record nothing');

$a->quit;
$b->quit;

# restart: the deployed model is still deployed and scores the same
my $before = $node->safe_psql('postgres',
	q{SELECT string_agg(model_version || ':' || probability, ',' ORDER BY account_id)
	  FROM icpml.icp_score_batch(ARRAY(SELECT generate_series(1, 200)::bigint))});
$node->restart;
my $after = $node->safe_psql('postgres',
	q{SELECT string_agg(model_version || ':' || probability, ',' ORDER BY account_id)
	  FROM icpml.icp_score_batch(ARRAY(SELECT generate_series(1, 200)::bigint))});
is($after, $before, 'after a restart the same version scores the same');
is($node->safe_psql('postgres', "SELECT version FROM icpml.list_models() WHERE status = 'deployed'"),
	$v1, 'the deployed version survives the restart');

$node->stop;
done_testing();
