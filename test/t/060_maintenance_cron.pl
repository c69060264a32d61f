# Maintenance that runs itself: one call of icpml.schedule_maintenance() as
# a superuser, and pg_cron runs the jobs as icpml_jobs (never a superuser):
# the feedback job expires the impressions past their window and folds the
# shared state's queued updates, the scoring job scores an account inserted
# meanwhile (queued by the triggers schedule_maintenance() put on the
# feature tables) so that it is a candidate, the retraining job trains, every run is
# logged; unschedule_maintenance() removes the jobs.  pg_cron schedules by
# the minute: the test waits (polls) for the runs, it asserts no times.
use strict;
use warnings;
use IPC::Run;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $node = PostgreSQL::Test::Cluster->new('cron');
$node->init;
$node->append_conf('postgresql.conf', qq{
shared_preload_libraries = 'pg_cron'
cron.database_name = 'postgres'
cron.use_background_workers = on
max_worker_processes = 16
});
$node->start;

$node->safe_psql('postgres', 'CREATE EXTENSION pg_cron; CREATE EXTENSION icpml;');
for my $f ('reference/icpml_reference_schema.sql', 'reference/icpml_generate.sql')
{
	$node->safe_psql('postgres', slurp_file($f));
}
$node->safe_psql('postgres', q{
  SET icpml.nthread = 1;
  SELECT * FROM icpml_ref.generate(accounts => 800, users => 3, interactions => 3000, seed => 5);
  SELECT icpml.score_all();
  SELECT icpml.enable_online_feedback();
  -- the jobs' role reads what training reads (docs/security.md)
  GRANT SELECT ON account_features, account_signals, research_runs TO icpml_jobs;
});

# a list served nine days ago (past its window) and one served now
my $user = $node->safe_psql('postgres', 'SELECT user_id FROM sales_users ORDER BY user_id LIMIT 1');
$node->safe_psql('postgres', qq{
  SELECT count(*) FROM icpml.recommend_accounts('$user', 5, policy => 'icp');
  UPDATE icpml.recommendations SET served_at = served_at - interval '9 days';
  SELECT count(*) FROM icpml.recommend_accounts('$user', 5, policy => 'icp');
  SELECT icpml.rebuild_bandit_state();
});

# an interaction while another session holds the shared state row: its
# update of the shared state is queued, not waited for
my ($out, $err) = ('', '');
my $holder = IPC::Run::start(
	[ 'psql', '-X', '-q', '-v', 'ON_ERROR_STOP=1', '-d', $node->connstr('postgres'),
	  '-c', "BEGIN; SELECT 1 FROM icpml.bandit_state WHERE scope = 'global' FOR UPDATE; SELECT pg_sleep(600)" ],
	'>', \$out, '2>', \$err);
$node->poll_query_until('postgres', q{
  SELECT count(*) > 0 FROM pg_stat_activity WHERE query LIKE '%pg_sleep(600)%' AND wait_event = 'PgSleep'})
  or die 'the session holding the shared state row did not start';
$node->safe_psql('postgres', qq{
  INSERT INTO user_interactions (user_id, account_id, interaction_type)
  SELECT '$user', account_id, 'save' FROM icpml.recommendations
  WHERE served_at > now() - interval '1 day' ORDER BY rank LIMIT 1});
is($node->safe_psql('postgres', 'SELECT count(*) FROM icpml.bandit_queue'), 1,
	'the update of the shared state was queued while its row was held');
$node->safe_psql('postgres', q{
  SELECT pg_terminate_backend(pid) FROM pg_stat_activity
  WHERE query LIKE '%pg_sleep(600)%' AND pid <> pg_backend_pid()});
$holder->finish;

# one call schedules everything; as a superuser, the jobs run as icpml_jobs
$node->safe_psql('postgres', q{
  SELECT * FROM icpml.schedule_maintenance(retrain_cron => '* * * * *', deploy => 'never')});
is($node->safe_psql('postgres', q{
  SELECT string_agg(jobname || ' ' || username, ', ' ORDER BY jobname) FROM cron.job
  WHERE jobname IN ('icpml-feedback', 'icpml-retrain')}),
	'icpml-feedback icpml_jobs, icpml-retrain icpml_jobs', 'the feedback and retraining jobs run as icpml_jobs');

is($node->safe_psql('postgres', q{
  SELECT jobname || ' ' || username FROM cron.job WHERE jobname = 'icpml-scoring'}),
	'icpml-scoring icpml_jobs', 'the scoring job runs as icpml_jobs');
is($node->safe_psql('postgres', q{
  SELECT string_agg(DISTINCT tgrelid::regclass::text, ', ' ORDER BY tgrelid::regclass::text) FROM pg_trigger
  WHERE tgfoid = 'icpml.score_queue_trigger()'::regprocedure}),
	'account_signals, research_runs', 'the tables behind the feature relation queue their changed accounts');

# a new account, inserted once the jobs are scheduled, is scored by the
# scoring job and is then a candidate the recommender can serve
$node->safe_psql('postgres', q{
  INSERT INTO account_signals (account_id, account_name, industry, engineering_role_count,
                               has_open_engineering_roles, total_open_roles, has_engineering_blog)
  VALUES (900001, 'arrived', 'saas', 25, true, 40, true)});
ok($node->poll_query_until('postgres', q{
  SELECT count(*) > 0 FROM icpml.account_scores WHERE account_id = 900001}),
	'pg_cron\'s scoring job scored the new account');
is($node->safe_psql('postgres', q{
  SELECT status || ' ' || run_by || ' ' || (result ->> 'kind') FROM icpml.maintenance_runs
  WHERE job = 'scoring' AND status <> 'running' AND (result ->> 'written')::int > 0 ORDER BY run_id LIMIT 1}),
	'succeeded icpml_jobs changed', 'the scoring run that wrote it was incremental, as icpml_jobs');
is($node->safe_psql('postgres', qq{
  SELECT count(*) FROM icpml.retrieve_candidates('$user', 1000, 1) WHERE account_id = 900001}),
	1, 'the new account is a candidate of the next list');

ok($node->poll_query_until('postgres', q{
  SELECT count(*) > 0 FROM icpml.maintenance_runs WHERE job = 'feedback' AND status <> 'running'}),
	'pg_cron ran the feedback job');
ok($node->poll_query_until('postgres', q{
  SELECT count(*) > 0 FROM icpml.training_runs WHERE status <> 'running'}),
	'pg_cron ran the retraining job');

is($node->safe_psql('postgres', q{
  SELECT string_agg(DISTINCT status || ' ' || run_by, ', ') FROM icpml.maintenance_runs WHERE job = 'feedback'}),
	'succeeded icpml_jobs', 'the feedback job succeeded as icpml_jobs');
is($node->safe_psql('postgres', q{
  SELECT status || ' ' || run_by || ' ' || (version IS NOT NULL) FROM icpml.training_runs ORDER BY run_id LIMIT 1}),
	'succeeded icpml_jobs true', 'the retraining job trained a version as icpml_jobs');
is($node->safe_psql('postgres', q{
  SELECT string_agg(status || ':' || count, ' ' ORDER BY status) FROM (
    SELECT status, count(*) FROM icpml.recommendations GROUP BY status) s}),
	'expired:5 pending:4 rewarded:1', 'the impressions past their window expired, the others wait');
is($node->safe_psql('postgres', 'SELECT count(*) FROM icpml.bandit_queue'), 0,
	'the queued update was folded');
is($node->safe_psql('postgres', q{
  SELECT n = (SELECT count(*) FROM icpml.recommendations WHERE status <> 'pending')
  FROM icpml.bandit_state WHERE scope = 'global'}),
	't', 'the shared state counts every finalized impression once');
is($node->safe_psql('postgres', q{
  SELECT count(*) FROM cron.job_run_details AS d JOIN cron.job AS j USING (jobid)
  WHERE j.jobname IN ('icpml-feedback', 'icpml-scoring', 'icpml-retrain') AND d.status = 'failed'}),
	0, 'no run failed in pg_cron');

# a second feedback run finds nothing to do
$node->poll_query_until('postgres', q{
  SELECT count(*) > 1 FROM icpml.maintenance_runs WHERE job = 'feedback' AND status <> 'running'})
  or die 'no second run of the feedback job';
is($node->safe_psql('postgres', q{
  SELECT result ->> 'expired' FROM icpml.maintenance_runs WHERE job = 'feedback' AND status = 'succeeded'
  ORDER BY run_id DESC LIMIT 1}),
	'0', 'the next run finds nothing left to expire');

$node->safe_psql('postgres', 'SELECT * FROM icpml.unschedule_maintenance()');
is($node->safe_psql('postgres', q{SELECT count(*) FROM cron.job WHERE jobname LIKE 'icpml-%'}), 0,
	'unschedule_maintenance() removes the jobs');

$node->stop;
done_testing();
