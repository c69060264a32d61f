# docs/reference.md is the reference, and it is in step with the SQL: every
# function and procedure of the installed extension is named there with
# every one of its input parameters (in one table row or line), every
# function the reference's tables name exists, and every table, view and
# GUC of icpml is named.  A function added, renamed or given a new
# parameter without its reference line fails here.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;


my $node = PostgreSQL::Test::Cluster->new('reference');
$node->init;
$node->start;
$node->safe_psql('postgres', 'SET client_min_messages = warning; CREATE EXTENSION icpml');

open(my $fh, '<:encoding(UTF-8)', 'docs/reference.md') or die "cannot read docs/reference.md: $!";
my $md = do { local $/; <$fh> };
close $fh;
my @lines = split /\n/, $md;

# functions and procedures that belong to the extension: name|arg,arg,...
my @funcs = split /\n/, $node->safe_psql('postgres', q{
  SELECT p.proname || '|' || coalesce(pg_catalog.array_to_string(ARRAY(
           SELECT n FROM unnest(p.proargnames, p.proargmodes::text[]) WITH ORDINALITY AS a(n, m, i)
            WHERE a.m IS NULL OR a.m IN ('i', 'b', 'v') ORDER BY a.i), ','), '')
    FROM pg_catalog.pg_proc p
    JOIN pg_catalog.pg_depend d ON d.classid = 'pg_catalog.pg_proc'::pg_catalog.regclass
     AND d.objid = p.oid AND d.deptype = 'e'
    JOIN pg_catalog.pg_extension e ON e.oid = d.refobjid AND e.extname = 'icpml'
   ORDER BY 1});
ok(@funcs > 50, scalar(@funcs) . ' functions and procedures in the extension');

my (@missing, @params);
my %exists;
for my $f (@funcs)
{
	my ($name, $args) = split /\|/, $f, 2;
	$exists{$name} = 1;
	my @where = grep { /\b\Q$name\E\(/ } @lines;
	if (!@where)
	{
		push @missing, $name;
		next;
	}
	for my $arg (grep { $_ ne '' } split /,/, $args)
	{
		push @params, "$name($arg)" unless grep { /\b\Q$arg\E\b/ } @where;
	}
}
is_deeply(\@missing, [], 'docs/reference.md names every function and procedure');
is_deeply(\@params, [], 'docs/reference.md names every input parameter with its function');

# the other way: a name in the first column of a function table exists
my @stale;
for my $l (@lines)
{
	next unless $l =~ /^\| `(?:CALL )?([a-z_0-9]+)\(/;
	push @stale, $1 unless $exists{$1};
}
is_deeply(\@stale, [], 'every function a reference table names exists');

my @rels = split /\n/, $node->safe_psql('postgres', q{
  SELECT c.relname FROM pg_catalog.pg_class c
   WHERE c.relnamespace = 'icpml'::pg_catalog.regnamespace AND c.relkind IN ('r', 'v', 'p', 'm')
   ORDER BY 1});
is_deeply([ grep { $md !~ /\bicpml\.\Q$_\E\b/ } @rels ], [],
	'docs/reference.md names every table and view as icpml.<name>');

my @gucs = split /\n/, $node->safe_psql('postgres', q{
  LOAD 'icpml';
  SELECT name FROM pg_catalog.pg_settings WHERE name LIKE 'icpml.%' ORDER BY 1});
ok(@gucs >= 5, scalar(@gucs) . ' settings');
is_deeply([ grep { $md !~ /`\Q$_\E`/ } @gucs ], [], 'docs/reference.md names every setting');

$node->stop;
done_testing();
