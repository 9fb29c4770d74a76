# A Perl program that allocates the way Perl programs do: the "real program"
# workload bench/run.py runs under perl with and without a heap profiler.
#
# usage: perl bench/pl_workload.pl N
#
# It builds a hash of N keys to small arrays of strings, joins and splits
# them, counts words in a second hash, sorts, and deletes about a third of
# the keys. perl takes every SV body, string buffer, array and hash from
# malloc, so it is a malloc-heavy program no one here wrote. Prints a
# checksum so the work cannot be skipped.
use strict;
use warnings;

my $n = shift @ARGV or die "usage: perl pl_workload.pl N\n";
my %table;
for my $i (1 .. $n) {
    my $key = "key-$i-" . ("x" x ($i % 17));
    $table{$key} = [map { $i * $_ } 1 .. ($i % 9 + 1)];
}
my %counts;
for my $key (keys %table) {
    my $text = join(" ", @{$table{$key}}) . " " . $key;
    $counts{$_}++ for split / /, $text;
}
my @ordered = sort { $counts{$b} <=> $counts{$a} || $a cmp $b } keys %counts;
my $sum = 0;
for my $i (0 .. $#ordered) {
    $sum += length($ordered[$i]) * ($i % 7);
    delete $table{$ordered[$i]} if $i % 3 == 0;
}
print "checksum=", ($sum + scalar(keys %table)) % 1000003, "\n";
