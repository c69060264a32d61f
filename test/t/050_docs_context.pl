# The context vector is defined once, in src/context.c (its entries' names,
# in order); the table of docs/recommender.md must list exactly those
# entries, in that order, at those positions.  No cluster: this reads files.
use strict;
use utf8;
use warnings;
use FindBin;
use Test::More;

binmode(Test::More->builder->$_, ":encoding(UTF-8)") for qw(output failure_output todo_output);

my $root = "$FindBin::Bin/../..";

sub slurp
{
	my ($path) = @_;
	open(my $fh, '<:encoding(UTF-8)', $path) or die "cannot read $path: $!";
	local $/;
	return <$fh>;
}

# the C definition: static const char *const ContextEntryNames[] = { "...", ... };
my $c = slurp("$root/src/context.c");
my ($body) = $c =~ /ContextEntryNames\[\]\s*=\s*\{(.*?)\};/s
  or BAIL_OUT('ContextEntryNames not found in src/context.c');
my @names = $body =~ /"([^"]+)"/g;
my ($dim) = slurp("$root/src/bandit.h") =~ /#define BANDIT_DIM (\d+)/;
is(scalar(@names), $dim, "src/context.c names every one of the $dim entries");

# the documentation: rows "| N | `name` | ... |" or "| N–M | `a` `b` ... | ... |",
# where "`x_1` … `x_12`" stands for x_1, x_2, ..., x_12
my $md = slurp("$root/docs/recommender.md");
my ($table) = $md =~ /^\| # \| entry \| value \|\n\|[-|]+\|\n((?:\|.*\|\n)+)/m
  or BAIL_OUT('the context table ("| # | entry | value |") not found in docs/recommender.md');
my (@documented, @problems);
for my $row (split /\n/, $table)
{
	my (undef, $pos, $entry) = split /\s*\|\s*/, $row;
	my ($first, $last) = $pos =~ /^(\d+)(?:\s*[–-]\s*(\d+))?$/
	  or do { push @problems, "row \"$row\": position \"$pos\""; next };
	$last //= $first;
	my @cell = $entry =~ /`([^`]+)`/g;
	my @row_names;
	if ($entry =~ /…/)
	{
		my ($stem, $from) = $cell[0] =~ /^(.*_)(\d+)$/;
		my ($stem2, $to) = $cell[1] =~ /^(.*_)(\d+)$/;
		if (!defined $stem || !defined $stem2 || $stem ne $stem2)
		{
			push @problems, "row \"$row\": cannot expand \"$entry\"";
			next;
		}
		@row_names = map { "$stem$_" } $from .. $to;
	}
	else
	{
		@row_names = @cell;
	}
	push @problems,
	  sprintf('row %s lists %d entries for %d positions', $pos, scalar(@row_names),
		$last - $first + 1)
	  if @row_names != $last - $first + 1;
	push @problems, sprintf('row %s starts at entry %d', $pos, scalar(@documented) + 1)
	  if $first != @documented + 1;
	push @documented, @row_names;
}
is_deeply(\@problems, [], 'every row of the documented table is well formed and in place');
is_deeply(\@documented, \@names,
	'docs/recommender.md lists the context entries of src/context.c, in order');

done_testing();
