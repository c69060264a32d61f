# Qualified names (DESIGN.md, docs/security.md): every SQL and PL/pgSQL
# function of a fresh install, and every SQL string of src/*.c, names its
# operators as OPERATOR(pg_catalog.=) and its functions as pg_catalog.now();
# the bodies that do not pin search_path use none of the constructs that
# look an operator up by name (IN lists, BETWEEN, IS DISTINCT FROM, CASE x
# WHEN, NULLIF, LIKE, JOIN USING).  The lint is test/lint/QualifiedNames.pm
# (test/lint/qualified_names.pl runs it alone); first, that it sees what it
# must and nothing else, and that its rewriter (test/lint/qualify.pl) keeps
# every value.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/../lint";
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use JSON::PP;
use QualifiedNames qw(lint_sql qualify_sql catalog_query lint_c);

my $root = "$FindBin::Bin/../..";

# --- the lint itself ------------------------------------------------------
my %bad = (
	'SELECT a = b'                                  => 'operator = without',
	'SELECT x FROM t WHERE t.a <> $1'                => 'operator <> without',
	"SELECT s.a->>'k'"                               => 'operator ->> without',
	'SELECT a || b'                                  => 'operator || without',
	'SELECT - x'                                     => 'operator - without',
	'SELECT a * b'                                   => 'operator * without',
	'SELECT now()'                                   => 'function now() without',
	'SELECT count(*) FROM t'                         => 'function count() without',
	'SELECT a OPERATOR(=) b'                         => 'OPERATOR(=) without',
	"BEGIN EXECUTE 'SELECT a = 1'; END"              => 'in a string run as SQL',
	"BEGIN EXECUTE pg_catalog.format('SELECT %I < 1', c); END" => 'in a string run as SQL',
	"BEGIN EXECUTE 'SELECT 1'\n  ' WHERE a = 1'; END"   => 'in a string run as SQL',
	'BEGIN x = 1; END'                               => 'operator = without',
	'SELECT 1 -- a = b' . "\n" . ', c + d'          => 'operator + without',
);
for my $sql (sort keys %bad)
{
	my @f = lint_sql($sql, 0, 0);
	ok((grep { index($_, $bad{$sql}) >= 0 } @f), "the lint finds: $sql");
}
my @good = (
	'SELECT a OPERATOR(pg_catalog.=) b, pg_catalog.now(), pg_catalog.count(*), t.*',
	"SELECT 'a = b', \$q\$ x < y \$q\$, \"a=b\" -- c = d\n /* e = f */",
	'SELECT x::numeric(10, 2), -1, 1e-6, ARRAY[1, 2], COALESCE(a, b), GREATEST(a, b), EXISTS (SELECT)',
	"BEGIN v := 1; RAISE EXCEPTION 'x' USING ERRCODE = 'data_exception', HINT = 'y'; END",
	'BEGIN GET DIAGNOSTICS n = ROW_COUNT; UPDATE t SET a = 1, b = 2 WHERE t.c OPERATOR(pg_catalog.=) 3; END',
	'DECLARE r t%ROWTYPE; v t.c%TYPE; BEGIN <<l>> FOR i IN 1..3 LOOP END LOOP; END',
	'SELECT icpml.f(a => 1), u.x FROM pg_catalog.unnest($1) WITH ORDINALITY AS u(x, n)',
	'WITH w (a) AS (SELECT 1) INSERT INTO tmp (a) SELECT w.a FROM w',
);
is_deeply([ map { lint_sql($_, 0, 0) } @good ], [], 'the lint accepts qualified names, literals, comments, casts, assignments');
is_deeply([ lint_sql('SELECT a IN (1, 2), NULLIF(a, b), a IS DISTINCT FROM b, CASE a WHEN 1 THEN 2 END', 0, 0) ], [],
	'a pinned body may use IN lists, NULLIF, IS DISTINCT FROM and CASE x WHEN');
is(scalar(lint_sql(q{SELECT a IN (1, 2), NULLIF(a, b), a IS DISTINCT FROM b, CASE a WHEN 1 THEN 2 END,
                     x BETWEEN 1 AND 2, y LIKE 'z%', t JOIN u USING (k)}, 1, 0)), 7,
	'a body that does not pin search_path may not');
is_deeply([ lint_c(q{ereport(ERROR, (errmsg("a = b"), errhint("Run SELECT f(1) = 2.")));
	x = SPI_execute("SELECT a FROM icpml.t AS t WHERE t.a OPERATOR(pg_catalog.=) %d", true, 0);}, 'x.c') ], [],
	'the C lint skips messages and reads printf conversions as values');
ok((grep { /x\.c:2: operator = without/ } lint_c(qq{int x;\nSPI_execute("SELECT a FROM t"\n " WHERE a = 1", true, 0);}, 'x.c')),
	'the C lint joins adjacent literals and finds an operator');

# --- a fresh install -------------------------------------------------------
my $node = PostgreSQL::Test::Cluster->new('qualified');
$node->init;
$node->start;
$node->safe_psql('postgres', 'SET client_min_messages = warning; CREATE EXTENSION icpml CASCADE');

# the rewriter keeps each value (OPERATOR() has one precedence for all)
my @exprs = ('2 + 3 * 4', '2 * 3 + 4', '10 - 3 - 2', '2 ^ 3 ^ 2', '-GREATEST(2, 3) * 2 + 1', '7 / 2 * 2 % 5',
	"'a' || 'b' = 'ab'", '1 + 2 = 3 AND NOT 4 - 1 <> 3', "(2 + 1)::text || 'x' = '3x'",
	"CASE WHEN 1 + 1 = 2 THEN 5 - 1 * 2 ELSE 0 END * 3", "3 = ANY (ARRAY[1 + 2, 4])",
	"'{\"k\": 2}'::jsonb ->> 'k' = '2'", "interval '1 day' * 2 + interval '1 hour' > interval '47 hours'");
for my $e (@exprs)
{
	my ($q, $manual, $left) = qualify_sql("SELECT $e");
	is_deeply([ @$manual, @$left ], [], "rewritten completely: $e");
	is($node->safe_psql('postgres', $q), $node->safe_psql('postgres', "SELECT $e"), "same value: $q");
}

my $bodies = decode_json($node->safe_psql('postgres', catalog_query()));
cmp_ok(scalar(@$bodies), '>', 20, 'the install has SQL and PL/pgSQL functions to read');
my @findings;
for my $b (@$bodies)
{
	push @findings, map { "$b->{name}: $_" } lint_sql($b->{src}, !$b->{pinned}, 0);
}
is_deeply(\@findings, [], 'every SQL and PL/pgSQL function of icpml names its operators and functions with their schema')
  or diag("run test/lint/qualify.pl on the install sources and the update script");
is_deeply([ map { $_->{name} } grep { $_->{secdef} && !$_->{pinned} } @$bodies ], [],
	'no SECURITY DEFINER function leaves search_path unpinned');

# --- the C code -------------------------------------------------------------
my @c = map { (my $f = $_) =~ s{^\Q$root\E/}{}; lint_c(slurp_file($_), $f) } glob("$root/src/*.c");
is_deeply(\@c, [], 'every SQL string of src/*.c names its operators and functions with their schema');

$node->stop;
done_testing();
