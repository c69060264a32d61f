#!/usr/bin/perl
# Rewrites the function bodies of SQL scripts in place: every operator the
# lint (qualified_names.pl) reports becomes OPERATOR(pg_catalog.op), with
# parentheses where the generic operator precedence of OPERATOR() would
# change the grouping (QualifiedNames::qualify_sql).  Prints what it could
# not rewrite with certainty; review the diff and run the tests.
#   perl test/lint/qualify.pl src/sql/45_experiments.sql ...
use strict;
use warnings;
use FindBin;
use lib $FindBin::Bin;
use QualifiedNames qw(qualify_sql);

for my $file (@ARGV)
{
	open(my $fh, '<', $file) or die "$file: $!";
	my $s = do { local $/; <$fh> };
	close $fh;
	my $out = '';
	my $pos = 0;
	while ($s =~ /\bCREATE\s+(?:OR\s+REPLACE\s+)?(?:FUNCTION|PROCEDURE)\s+([\w."]+)\s*\(/gi)
	{
		my ($name, $from) = ($1, pos($s));
		my $rest = substr($s, $from);
		next unless $rest =~ /^(.*?)\bAS\s+(\$[A-Za-z_]*\$)/s;
		my ($header, $tag) = ($1, $2);
		next if $header =~ /\bCREATE\b/i;
		my $start = $from + $+[0];
		my $end = index($s, $tag, $start);
		next if $end < 0;
		my ($body, $manual, $left) = qualify_sql(substr($s, $start, $end - $start));
		my $line = 1 + (substr($s, 0, $start) =~ tr/\n//);
		print "$file:$line $name: left alone: $_\n" for @$manual;
		print "$file:$line $name: still: $_\n" for @$left;
		$out .= substr($s, $pos, $start - $pos) . $body;
		$pos = $end;
		pos($s) = $end + length $tag;
	}
	$out .= substr($s, $pos);
	if ($out ne $s)
	{
		open(my $oh, '>', $file) or die "$file: $!";
		print $oh $out;
		close $oh;
	}
}
