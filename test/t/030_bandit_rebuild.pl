# Many sessions at once recommend accounts and insert interactions with what
# they were shown (online feedback by trigger), then a later, better one for
# the first account (a funnel): every impression is finalized once and ends
# with its best reward, the state counts each exactly once (the shared state's
# updates queued and folded by whichever writer holds its row), the state
# rebuilt from the log equals the online state, and all of it survives a
# restart.
use strict;
use warnings;
use IPC::Run;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $node = PostgreSQL::Test::Cluster->new('bandit');
$node->init;
$node->append_conf('postgresql.conf', "max_connections = 20\n");
$node->start;

$node->safe_psql('postgres', q{
  CREATE EXTENSION icpml;
  CREATE TABLE accounts (account_id bigint PRIMARY KEY, industry text,
    engineering_role_count int, has_open_engineering_roles bool, total_open_roles int,
    has_engineering_blog bool, company_size int, funding_amount_usd numeric,
    funding_date date, tech_stack text[], researched_at timestamptz);
  INSERT INTO accounts
  SELECT g, (ARRAY['saas', 'fintech', 'devtools', 'retail'])[1 + g % 4], g % 37, g % 3 <> 0,
         (g * 7) % 90, g % 2 = 0, 10 + (g * 37) % 3000, NULL,
         CASE WHEN g % 5 = 0 THEN current_date - g % 600 END, '{python,aws}',
         CASE WHEN g % 4 <> 0 THEN now() - (g % 90) * interval '1 day' END
  FROM generate_series(1, 300) g;
  CREATE TABLE interactions (interaction_id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    user_id uuid NOT NULL, account_id bigint NOT NULL, interaction_type text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now());
  CREATE INDEX ON interactions (user_id, created_at DESC);
  CREATE INDEX ON interactions (user_id, account_id);
  ALTER DATABASE postgres SET icpml.feature_relation = 'public.accounts';
  ALTER DATABASE postgres SET icpml.interactions_relation = 'public.interactions';
  -- accounts acted on may be listed again (re-shows: exclude_recent 0)
  UPDATE icpml.bandit_settings SET refactor_every = 7, exclude_recent = '0';
});
$node->safe_psql('postgres', 'SELECT icpml.score_all(); SELECT icpml.enable_online_feedback();');

# six sessions, 30 rounds each: a list of 5, then (one statement) interactions
# with the first three (re-shows among them); a user per session, so rounds of the same user
# overlap with other users' feedback on the shared state
my $rounds = 30;
my @runs;
for my $s (1 .. 6)
{
	my $sql = qq{
	  DO \$\$
	  DECLARE i int;
	  BEGIN
	    FOR i IN 1..$rounds LOOP
	      CREATE TEMP TABLE list AS
	      SELECT r.rank, r.account_id
	      FROM icpml.recommend_accounts('00000000-0000-0000-0000-00000000000$s', 5,
	                                    policy => (ARRAY['linucb', 'thompson', 'epsilon_greedy'])[1 + i % 3],
	                                    seed => $s * 1000 + i) r;
	      COMMIT;
	      INSERT INTO interactions (user_id, account_id, interaction_type)
	      SELECT '00000000-0000-0000-0000-00000000000$s', account_id,
	             (ARRAY['view', 'save', 'research', 'dismiss'])[1 + (account_id + i) % 4]
	      FROM list WHERE rank <= 3;
	      COMMIT;
	      INSERT INTO interactions (user_id, account_id, interaction_type)
	      SELECT '00000000-0000-0000-0000-00000000000$s', account_id, 'meeting' FROM list WHERE rank = 1;
	      DROP TABLE list;
	      COMMIT;
	    END LOOP;
	  END
	  \$\$;
	};
	my ($out, $err) = ('', '');
	my $h = IPC::Run::start(
		[ 'psql', '-X', '-q', '-v', 'ON_ERROR_STOP=1', '-d', $node->connstr('postgres'), '-c', $sql ],
		'>', \$out, '2>', \$err);
	push @runs, [ $h, \$out, \$err, $s ];
}
for my $r (@runs)
{
	my ($h, $out, $err, $s) = @$r;
	$h->finish;
	is($h->result(0), 0, "session $s ran its $rounds rounds") or diag($$err);
}

my $served = 6 * $rounds * 5;
is($node->safe_psql('postgres', 'SELECT count(*) FROM icpml.recommendations'),
	$served, 'every served item was logged');
# a re-show of an account the user acted on earlier (in the window) is not
# credited: later interactions follow the impression the funnel started from
# (attribution 'funnel'), so each (user, account) acted on has exactly one
# rewarded impression
is($node->safe_psql('postgres',
		"SELECT count(*) FROM icpml.recommendations WHERE status = 'rewarded'"),
	$node->safe_psql('postgres',
		'SELECT count(DISTINCT (user_id, account_id)) FROM icpml.recommendations WHERE rank <= 3'),
	'each (user, account) shown and acted on has one rewarded impression');
cmp_ok($node->safe_psql('postgres',
		"SELECT count(*) FROM icpml.recommendations WHERE rank <= 3 AND status = 'pending'"),
	'>', 0, 're-shows of accounts acted on were not rewarded');
is($node->safe_psql('postgres',
		'SELECT count(*) - count(DISTINCT interaction_id) FROM icpml.feedback_events'),
	0, 'no interaction rewarded two impressions');
is($node->safe_psql('postgres',
		"SELECT count(*) FROM (SELECT FROM icpml.recommendations GROUP BY user_id, account_id
		 HAVING bool_or(rank = 1) AND max(reward) IS DISTINCT FROM 1) AS p"),
	0, 'every first account ends with its best reward (the meeting)');
cmp_ok($node->safe_psql('postgres',
		"SELECT count(*) FROM icpml.feedback_events AS e JOIN icpml.recommendations AS r USING (recommendation_id)
		 WHERE e.update_seq <> r.finalize_seq"),
	'>', 0, 'later interactions raised rewards');

# expire the rest in batch; the trigger and the batch agree on the counts
$node->safe_psql('postgres', "SELECT icpml.process_feedback(now() + interval '8 days')");
is($node->safe_psql('postgres',
		"SELECT count(*) FROM icpml.recommendations WHERE status = 'pending'"),
	0, 'nothing pending after the window');
is($node->safe_psql('postgres', 'SELECT count(*) FROM icpml.bandit_queue'),
	0, 'every queued update of the shared state was folded');
is($node->safe_psql('postgres', "SELECT n FROM icpml.bandit_state WHERE scope = 'global'"),
	$served, 'the global state counts every impression exactly once');
is($node->safe_psql('postgres',
		"SELECT sum(n) FROM icpml.bandit_state WHERE scope <> 'global'"),
	$served, 'the user states together count every impression exactly once');

# online == rebuild, to 1e-9
$node->safe_psql('postgres', 'CREATE TABLE online AS SELECT * FROM icpml.bandit_state');
is($node->safe_psql('postgres', 'SELECT icpml.rebuild_bandit_state()'), $served,
	'the rebuild replays every finalized impression');
my $cmp = q{
  SELECT count(*) FILTER (WHERE o.scope IS NULL OR r.scope IS NULL OR o.n <> r.n
         OR (SELECT max(abs(x - y)) FROM unnest(o.a, r.a) u(x, y)) > 1e-9
         OR (SELECT max(abs(x - y)) FROM unnest(o.b, r.b) u(x, y)) > 1e-9)
  FROM online o FULL JOIN icpml.bandit_state r USING (scope)
};
is($node->safe_psql('postgres', $cmp), 0, 'the rebuilt state equals the online state');

# everything survives a restart, and a new session serves from the state
my $version = $node->safe_psql('postgres', "SELECT version FROM icpml.bandit_state WHERE scope = 'global'");
$node->restart;
is($node->safe_psql('postgres', "SELECT version FROM icpml.bandit_state WHERE scope = 'global'"),
	$version, 'the state survives a restart');
is($node->safe_psql('postgres',
		"SELECT count(*) FROM icpml.recommend_accounts('00000000-0000-0000-0000-000000000001', 10)"),
	10, 'recommendations after the restart');
is($node->safe_psql('postgres',
		"SELECT state_version FROM icpml.recommendations ORDER BY recommendation_id DESC LIMIT 1"),
	$version, 'served from the current state version');

$node->stop;
done_testing();
