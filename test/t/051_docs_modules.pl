# src/README.md is the module map: it names every C source and header of
# src/, and every file it names exists.  No cluster: this reads files.
use strict;
use warnings;
use FindBin;
use Test::More;

my $root = "$FindBin::Bin/../..";

open(my $fh, '<', "$root/src/README.md") or die "cannot read src/README.md: $!";
my $map = do { local $/; <$fh> };
close $fh;

my %named = map { $_ => 1 } $map =~ /`([a-z_]+\.[ch])`/g;
my %present = map { s{.*/}{}r => 1 } glob("$root/src/*.c"), glob("$root/src/*.h");

is_deeply([ sort grep { !$named{$_} } keys %present ], [],
	'src/README.md names every .c and .h file of src/');
is_deeply([ sort grep { !$present{$_} } keys %named ], [],
	'every file src/README.md names exists');

done_testing();
