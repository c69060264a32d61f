#!/usr/bin/perl
# Lint: operators and functions named without a schema in what icpml runs
# with elevated rights (docs/security.md, "Qualified names"; the rules are in
# QualifiedNames.pm).  Prints one line per finding; exits 1 if there is one.
#
#   perl test/lint/qualified_names.pl          the install sources, the update
#        script to the version in development and src/*.c; no database needed
#   perl test/lint/qualified_names.pl --db 'host=/tmp port=5432 dbname=x'
#        the SQL and PL/pgSQL functions of the installed extension (psql)
#   perl test/lint/qualified_names.pl FILE.sql FILE.c ...   those files
#
# test/t/060_qualified_names.pl runs it over a fresh install and src/*.c in
# `test/run test`.  test/lint/qualify.pl rewrites what it finds.
use strict;
use warnings;
use FindBin;
use lib $FindBin::Bin;
use QualifiedNames qw(lint_sql catalog_query file_bodies lint_c);
use JSON::PP;

my $root = "$FindBin::Bin/../..";
my @findings;

sub slurp
{
	my ($f) = @_;
	open(my $fh, '<', $f) or die "$f: $!";
	local $/;
	return scalar <$fh>;
}

sub lint_bodies
{
	for my $b (@_)
	{
		my ($name, $pinned, $sql) = @$b;
		push @findings, map { "$name: $_" } lint_sql($sql, !$pinned, 0);
	}
}

if (@ARGV && $ARGV[0] eq '--db')
{
	open(my $ph, '-|', 'psql', '-X', '-A', '-t', '-q', '-v', 'ON_ERROR_STOP=1', '-d', $ARGV[1], '-c', catalog_query())
	  or die "psql: $!";
	my $json = do { local $/; <$ph> };
	close $ph or die "psql failed\n";
	lint_bodies(map { [ $_->{name}, $_->{pinned} ? 1 : 0, $_->{src} ] } @{ decode_json($json) });
}
else
{
	my @files = @ARGV;
	unless (@files)
	{
		my ($version) = slurp("$root/icpml.control") =~ /default_version\s*=\s*'([^']+)'/;
		@files = (glob("$root/src/sql/[0-9]*.sql"), glob("$root/src/sql/updates/icpml--*--$version.sql"),
				  glob("$root/src/*.c"));
	}
	for my $f (@files)
	{
		(my $short = $f) =~ s{^\Q$root\E/}{};
		if ($f =~ /\.c$/) { push @findings, lint_c(slurp($f), $short); }
		else { lint_bodies(file_bodies(slurp($f), $short)); }
	}
}
print "$_\n" for @findings;
printf STDERR "%d operators or functions without a schema\n", scalar @findings;
exit(@findings ? 1 : 0);
