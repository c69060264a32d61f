# icpml.export_scorer_sql(): a deployed model, and the rules, exported as
# plain SQL, installed with one psql -f into a database that does not have
# the extension, score every account exactly as the C path does (the same
# probabilities to the last bit, scores, priorities and factors), keep
# icp_score/icp_score_batch's names, arguments, columns and errors, and read
# as the caller (row-level security applies).  Prints the speed of both.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time);

my $node = PostgreSQL::Test::Cluster->new('export');
$node->init;
$node->start;
$node->safe_psql('postgres', 'CREATE DATABASE app');
$node->safe_psql('postgres', 'CREATE DATABASE hosted');

# The reference data, as of a fixed day.  Dates become ages relative to
# now() in the views, so that what the scorers see does not move between
# the two databases' transactions: the model reads timestamps now() - age
# (its age_days features are the ages, exactly), the rules read dates
# current_date - days (their recency counts whole days).
$node->safe_psql('app', 'SET client_min_messages = warning; '
	. slurp_file('reference/icpml_reference_schema.sql'));
$node->safe_psql('app', 'SET client_min_messages = warning; '
	. slurp_file('reference/icpml_generate.sql'));
$node->safe_psql('app', q{
  SELECT count(*) FROM icpml_ref.generate(accounts => 2500, users => 5, interactions => 100,
                                          seed => 7, as_of => '2025-06-01 00:00+00');
  CREATE TABLE feat AS
  SELECT account_id, industry, engineering_role_count, has_open_engineering_roles, total_open_roles,
         has_engineering_blog, company_size, funding_amount_usd,
         extract(epoch FROM '2025-06-01 00:00+00'::timestamptz - funding_date) AS funding_age_s,
         '2025-06-01'::date - funding_date AS funding_age_days,
         tech_stack,
         extract(epoch FROM '2025-06-01 00:00+00'::timestamptz - researched_at) AS researched_age_s,
         is_fit
  FROM account_features;
  ALTER TABLE feat ADD PRIMARY KEY (account_id);
  CREATE VIEW features WITH (security_invoker = true) AS
  SELECT account_id, industry, engineering_role_count, has_open_engineering_roles, total_open_roles,
         has_engineering_blog, company_size, funding_amount_usd,
         now() - funding_age_s * interval '1 second' AS funding_at, tech_stack,
         now() - researched_age_s * interval '1 second' AS researched_at, is_fit
  FROM feat;
  -- text as people type it, for a model trained with fold_text
  CREATE TABLE messy (lead_id bigint PRIMARY KEY, won boolean, industry text, stack text[],
                      employees integer);
  INSERT INTO messy
  SELECT g, CASE WHEN g <= 600 THEN (g % 3 = 0 AND g % 7 <> 0) OR (g % 3 = 1 AND g % 5 = 0) END,
         CASE g % 4 WHEN 0 THEN b.industry WHEN 1 THEN upper(b.industry)
                    WHEN 2 THEN '  ' || lower(b.industry) || ' ' ELSE replace(b.industry, ' ', E'  \t ') END,
         ARRAY[CASE g % 2 WHEN 0 THEN b.tech ELSE ' ' || upper(b.tech) END, 'SQL', NULL],
         10 + (g * 37) % 900
  FROM generate_series(1, 700) g,
       LATERAL (SELECT (ARRAY['Health Care', 'Fintech', 'Retail Goods', 'Big  Data'])[1 + g % 4] AS industry,
                       (ARRAY['Google Cloud', 'AWS', 'Azure'])[1 + g % 3] AS tech) b;
  CREATE VIEW rules_features WITH (security_invoker = true) AS
  SELECT account_id, engineering_role_count, has_open_engineering_roles, total_open_roles,
         has_engineering_blog, company_size, funding_amount_usd,
         current_date - funding_age_days AS funding_date, tech_stack
  FROM feat;
});

# the same tables and views in the database without icpml
my $dump = $node->basedir . '/public.sql';
$node->run_log([ 'pg_dump', '-d', $node->connstr('app'), '-n', 'public', '-f', $dump ]);
$node->safe_psql('hosted', 'DROP SCHEMA public');
$node->psql('hosted', undef, extra_params => [ '-q', '-v', 'ON_ERROR_STOP=1', '-f', $dump ]);
is($node->safe_psql('hosted', 'SELECT count(*) FROM features'), '2500', 'hosted database has the data');

$node->safe_psql('app', q{
  SET icpml.nthread = 1;
  CREATE EXTENSION icpml;
  SELECT version FROM icpml.train_icp_model(relation => 'public.features', key_column => 'account_id',
    label_column => 'is_fit', folds => 3, n_rounds => 60, params => '{"max_depth": 4}',
    seed => 3, deploy => 'always');
});
my $spec = $node->safe_psql('app', q{
  SELECT string_agg(c->>'kind', ',' ORDER BY c->>'kind')
  FROM icpml.models, jsonb_array_elements(spec->'columns') AS c WHERE status = 'deployed'});
like($spec, qr/age_days.*boolean.*categorical.*numeric.*tags/,
	'the model reads every kind of column (numbers, booleans, categories, ages, tags)');

# export, install with one psql -f (a single transaction)
sub install
{
	my ($sql, $name) = @_;
	my $file = $node->basedir . "/$name.sql";
	open(my $fh, '>', $file) or die "$file: $!";
	print $fh $sql;
	close $fh;
	my ($rc, $out, $err) = $node->psql('hosted', undef,
		extra_params => [ '-1', '-q', '-v', 'ON_ERROR_STOP=1', '-f', $file ]);
	is($rc, 0, "$name installs with psql -1 -f") or diag($err);
	return $file;
}
my $model_sql = $node->safe_psql('app', 'SELECT icpml.export_scorer_sql()');
my $model_file = install($model_sql, 'model_scorer');
is($node->safe_psql('hosted', q{SELECT count(*) FROM pg_extension WHERE extname = 'icpml'}), '0',
	'the scoring database has no icpml extension');
is($node->safe_psql('hosted', q{SELECT icpml.scorer_info()->>'model_version'}),
	$node->safe_psql('app', q{SELECT version FROM icpml.models WHERE status = 'deployed'}),
	'scorer_info names the exported version');

# the script refuses a database where icpml is installed
my ($rc, $out, $err) = $node->psql('app', undef,
	extra_params => [ '-1', '-q', '-v', 'ON_ERROR_STOP=1', '-f', $model_file ]);
like($err, qr/the icpml extension is installed in this database/, 'the script refuses a database with icpml');

# the same result type, column for column
my $type_q = q{SELECT string_agg(attname || ' ' || format_type(atttypid, atttypmod), ', ' ORDER BY attnum)
  FROM pg_attribute WHERE attrelid = 'icpml.icp_score_result'::regclass AND attnum > 0};
is($node->safe_psql('hosted', $type_q), $node->safe_psql('app', $type_q), 'icp_score_result has the same columns');
my $sig_q = q{SELECT string_agg(p.oid::regprocedure::text || ' -> ' || pg_get_function_result(p.oid), '; ' ORDER BY 1)
  FROM pg_proc p WHERE p.proname IN ('icp_score', 'icp_score_batch') AND p.pronamespace = 'icpml'::regnamespace};
is($node->safe_psql('hosted', $sig_q), $node->safe_psql('app', $sig_q), 'icp_score and icp_score_batch have the same signatures');

# every account (and an unknown id and a NULL), C path against exported SQL
my $batch_q = q{
  SET extra_float_digits = 3;
  SELECT string_agg(concat_ws('|', s.account_id, s.score, s.priority, s.probability, s.model,
                              s.model_version, s.factors, s.factor_method), E'\n' ORDER BY s.o)
  FROM icpml.icp_score_batch((SELECT array_agg(%s ORDER BY %s) FROM %s)
                             || ARRAY[-1, NULL]::bigint[])
       WITH ORDINALITY AS s(account_id, score, priority, probability, model, model_version,
                            factors, factor_method, o)};
sub compare
{
	my ($relation, $what, $exact, $key) = @_;
	$key //= 'account_id';
	my $q = sprintf($batch_q, $key, $key, $relation);
	my $t0 = time;
	my @c = split /\n/, $node->safe_psql('app', $q);
	my $tc = time - $t0;
	$t0 = time;
	my @s = split /\n/, $node->safe_psql('hosted', $q);
	my $ts = time - $t0;
	is(scalar(@s), scalar(@c), "$what: as many rows");
	my ($same, $maxdiff, $other) = (0, 0, 0);
	for my $i (0 .. $#c)
	{
		$same++ if defined $s[$i] && $s[$i] eq $c[$i];
		my @a = split /\|/, $c[$i], -1;
		my @b = split /\|/, ($s[$i] // ''), -1;
		if (@a > 3 && $a[3] ne '' && @b > 3 && $b[3] ne '')
		{
			my $d = abs($a[3] - $b[3]);
			$maxdiff = $d if $d > $maxdiff;
		}
		# everything but the probability
		splice(@a, 3, 1);
		splice(@b, 3, 1) if @b > 3;
		$other++ if join('|', @a) ne join('|', @b);
	}
	cmp_ok($maxdiff, '<=', 1e-9, "$what: probabilities within 1e-9 on every account (largest difference $maxdiff)");
	is($other, 0, "$what: the same scores, priorities, factors, model and method on every account");
	is($same, scalar(@c), "$what: every row identical to the last digit") if $exact;
	note(sprintf('%s: icp_score_batch of %d ids: C %.1f ms (%.1f us/row), exported SQL %.1f ms (%.1f us/row)',
		$what, scalar(@c), $tc * 1000, $tc * 1e6 / @c, $ts * 1000, $ts * 1e6 / @c));
}
compare('features', 'model', 1);

# single accounts, unknown ones, hidden ones
my $one_q = q{SET extra_float_digits = 3; SELECT s::text FROM icpml.icp_score(42) AS s};
is($node->safe_psql('hosted', $one_q), $node->safe_psql('app', $one_q), 'icp_score(42) is the same row');
for my $db ('app', 'hosted')
{
	($rc, $out, $err) = $node->psql($db, 'SELECT icpml.icp_score(999999)');
	like($err, qr/account 999999 not found in public\.features/, "$db: an unknown account is an error naming the relation");
}
is($node->safe_psql('hosted', 'SELECT icpml.icp_score(NULL) IS NULL'), 't', 'icp_score(NULL) is NULL (STRICT)');
($rc, $out, $err) = $node->psql('hosted', q{SELECT * FROM icpml.icp_score_batch('{{1,2},{3,4}}')});
like($err, qr/one-dimensional/, 'a two-dimensional array is refused');

# timing of single calls (figures only)
for my $db ('app', 'hosted')
{
	# after a first call (which loads the model or plans the query)
	my ($r, $o, $e) = $node->psql($db, q{SELECT count(*) FROM icpml.icp_score(1);
		DO $$ DECLARE r record; t0 timestamptz := clock_timestamp(); BEGIN
		  FOR i IN 1..500 LOOP SELECT * INTO r FROM icpml.icp_score(1 + (i * 37) % 2500); END LOOP;
		  RAISE NOTICE 'us=%', round(extract(epoch FROM clock_timestamp() - t0) * 1e6 / 500);
		END $$});
	note(sprintf('%s: icp_score, 500 single calls in one session after a first: %s us/call', $db,
		$e =~ /us=(\d+)/ ? $1 : '?'));
}

# row-level security: the exported scorer reads as the caller
$node->safe_psql('hosted', q{
  CREATE ROLE reader;
  GRANT USAGE ON SCHEMA public TO reader;
  GRANT USAGE ON SCHEMA icpml TO reader;
  GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA icpml TO reader;
  GRANT SELECT ON feat, features TO reader;
  ALTER TABLE feat ENABLE ROW LEVEL SECURITY;
  CREATE POLICY low_ids ON feat TO reader USING (account_id <= 1000);
});
($rc, $out, $err) = $node->psql('hosted', 'SET ROLE reader; SELECT icpml.icp_score(1500)');
like($err, qr/account 1500 not found/, 'an account row-level security hides is not found');
is($node->safe_psql('hosted', q{SET ROLE reader;
  SELECT string_agg(concat_ws(':', account_id, score IS NOT NULL), ',') FROM icpml.icp_score_batch(ARRAY[5, 1500])}),
	'5:t,1500:f', 'a hidden account gets a NULL score in a batch');
($rc, $out, $err) = $node->psql('hosted', 'SET ROLE reader; SELECT count(*) FROM icpml.icp_score_batch(ARRAY[1])');
is($rc, 0, 'a role with EXECUTE and SELECT scores') or diag($err);

# the rules: undeploy, export the rule-based score of another relation
$node->safe_psql('app', q{
  SELECT icpml.undeploy_model();
  ALTER DATABASE app SET icpml.feature_relation = 'public.rules_features';
  UPDATE icpml.rule_settings SET target_stack = '{Python,go,AWS}', size_max = 2000;
  UPDATE icpml.rule_weights SET weight = 1.7 WHERE factor = 'engineering_blog';
});
my $rules_sql = $node->safe_psql('app', 'SELECT icpml.export_scorer_sql()');
like($rules_sql, qr/the rule-based score/, 'with no model deployed the rules are exported');
install($rules_sql, 'rules_scorer');
compare('rules_features', 'rules', 0);
is($node->safe_psql('hosted', q{SELECT icpml.scorer_info()->>'model'}), 'rules', 'scorer_info says rules');

# exporting the rules while a model is deployed, or a version that does not exist
($rc, $out, $err) = $node->psql('app', 'SELECT icpml.export_scorer_sql(version => 999)');
like($err, qr/model version 999 does not exist/, 'an unknown version is an error');
($rc, $out, $err) = $node->psql('app', q{SELECT icpml.export_scorer_sql(relation => 'x; DROP TABLE feat')});
like($err, qr/is not a table or view name/, 'a relation that is not a name is refused');

# a model trained with fold_text: the exported scorer folds text as the C path does
$node->safe_psql('app', q{
  SET icpml.nthread = 1;
  SELECT version FROM icpml.train_icp_model(relation => 'public.messy', key_column => 'lead_id',
    label_column => 'won', folds => 3, n_rounds => 30, encoding => '{"fold_text": true}',
    deploy => 'always');
});
is($node->safe_psql('app', q{SELECT spec->'encoding'->>'fold_text' FROM icpml.models WHERE status = 'deployed'}),
	'true', 'the deployed model folds text');
install($node->safe_psql('app', 'SELECT icpml.export_scorer_sql()'), 'folded_scorer');
compare('messy', 'fold_text', 1, 'lead_id');

$node->stop;
done_testing();
