# QualifiedNames — finds operators and functions that a statement names
# without a schema (docs/security.md, "Qualified names").
#
# Statements icpml runs with elevated rights (a function with a pinned
# search_path or SECURITY DEFINER, the C code after CatalogSwitchToOwner)
# name their operators as OPERATOR(pg_catalog.=) and their functions as
# pg_catalog.now(): besides the pinned path, a second defence.  This module
# tokenises SQL and PL/pgSQL as PostgreSQL's lexer does (comments, string
# literals, dollar quotes and quoted identifiers skipped; the string given
# to EXECUTE, or as format()'s first argument, linted as SQL too) and reports
#
#   - every operator that is not inside OPERATOR(schema.op): =, <>, <, ||,
#     ->>, @>, unary minus on anything but a number, ... (not :=, =>, ::, the
#     * of count(*) or SELECT *, PL/pgSQL's assignment = , the = of UPDATE's
#     SET, of SET LOCAL and of RAISE ... USING, nor %TYPE/%ROWTYPE);
#   - every call name( not preceded by schema. and not an SQL construct
#     (COALESCE, NULLIF, EXISTS, IN, ARRAY, ROW, CAST, EXTRACT, VALUES, OVER,
#     FILTER, a column list after INTO or a CTE's name, a type's modifier...);
#   - with strict => 1 (a body that does not pin search_path), also the
#     constructs that look an operator up by name and cannot be qualified:
#     IN (...), BETWEEN, IS [NOT] DISTINCT FROM, CASE x WHEN, NULLIF, LIKE,
#     ILIKE, SIMILAR TO, JOIN ... USING, NATURAL JOIN.  They are allowed in
#     pinned bodies only: there the path is pg_catalog, pg_temp, and
#     PostgreSQL never looks functions or operators up in pg_temp.
#
# lint_sql(text, strict, c_format) returns a list of findings, each
# "line N: what (context)"; c_strings(file text) returns the SQL of a C file's
# string literals (adjacent literals joined, messages and hints left out).
package QualifiedNames;

use strict;
use warnings;
use Exporter 'import';

our @EXPORT_OK = qw(lint_sql c_strings tokens qualify_sql catalog_query file_bodies lint_c);

# The SQL and PL/pgSQL functions of the installed extension, as one JSON
# array of {name, pinned, secdef, src}.
sub catalog_query
{
	return q{
	  SELECT coalesce(json_agg(json_build_object(
	           'name', p.oid::regprocedure::text, 'secdef', p.prosecdef,
	           'pinned', coalesce(p.proconfig @> ARRAY['search_path=pg_catalog, pg_temp'], false),
	           'src', p.prosrc) ORDER BY p.oid::regprocedure::text), '[]')
	  FROM pg_proc AS p
	  JOIN pg_depend AS d ON d.classid = 'pg_proc'::regclass AND d.objid = p.oid
	   AND d.refclassid = 'pg_extension'::regclass AND d.deptype = 'e'
	  JOIN pg_extension AS e ON e.oid = d.refobjid AND e.extname = 'icpml'
	  JOIN pg_language AS l ON l.oid = p.prolang
	  WHERE l.lanname IN ('sql', 'plpgsql')};
}

# The function bodies of an SQL script: [label, pinned, body].  A body
# pins its path when its header says SET search_path = pg_catalog, pg_temp.
sub file_bodies
{
	my ($s, $file) = @_;
	my @out;
	while ($s =~ /\bCREATE\s+(?:OR\s+REPLACE\s+)?(?:FUNCTION|PROCEDURE)\s+([\w."]+)\s*\(/gi)
	{
		my ($name, $from) = ($1, pos($s));
		my $rest = substr($s, $from);
		next unless $rest =~ /^(.*?)\bAS\s+(\$[A-Za-z_]*\$)/s;    # a C function has AS 'MODULE_PATHNAME'
		my ($header, $tag) = ($1, $2);
		next if $header =~ /\bCREATE\b/i;    # that AS belongs to a later function
		my $start = $from + $+[0];
		my $end = index($s, $tag, $start);
		next if $end < 0;
		my $pinned = $header =~ /SET\s+search_path\s*(?:=|TO)\s*pg_catalog\s*,\s*pg_temp\b/i ? 1 : 0;
		my $line = 1 + (substr($s, 0, $start) =~ tr/\n//);
		push @out, [ "$file:$line $name", $pinned, substr($s, $start, $end - $start) ];
	}
	return @out;
}

# The findings in a C file's SQL, "file:line: what".  export.c writes a
# scorer out (run in another database, as its caller): only the statements
# it runs itself count there.
sub lint_c
{
	my ($c, $file) = @_;
	my @found;
	for my $s (c_strings($c, $file =~ m{(?:^|/)export\.c$}))
	{
		my ($line, $sql) = @$s;
		push @found, map { s/^line (\d+)/"$file:" . ($line + $1 - 1)/er } lint_sql($sql, 0, 1);
	}
	return @found;
}

# Words that may be followed by '(' without being a function call.
my %not_a_call = map { $_ => 1 } qw(
  all and any array as between by case cast coalesce collate cross
  current_date current_time current_timestamp default distinct do else elsif
  end except exists extract filter for foreach from greatest group grouping
  having if in inner insert intersect into is join lateral least left_join
  like limit localtime localtimestamp loop not null nullif offset on or order
  over overlay partition position query raise range recursive return returning
  returns row rows select set similar some substring table then trim union
  update using values when where while window with within perform execute
  elseif exit continue strict conflict constraint check primary unique
  references key nulls first last asc desc both leading trailing
  interval numeric decimal varchar char character bit time timestamp
  float double precision
);

# Reserved words that cannot be an operand (so a following '(' is not a call,
# and a following '*' or '-' is not binary).
my %keyword = map { $_ => 1 } qw(
  all and any array as asc between by case cast coalesce collate cross desc
  distinct do else elsif end except exists extract filter for foreach from
  greatest group having if in inner insert intersect into is join lateral least
  like limit loop not nullif offset on or order over partition query raise
  return returning returns row rows select set similar some table then
  union update using values when where while window with within perform
  execute elseif exit continue strict conflict delete nulls first last
  begin declare constant
);

# PostgreSQL's lexer: operator characters, and the trailing +/- rule.
my $opchars = qr{[-+*/<>=~!@#%^&|`?]};

# Tokenise SQL: a list of [type, text, line, offset], type one of ident, qident,
# number, string, param, op, punct.  Comments are dropped.
sub tokens
{
	my ($s, $c_format) = @_;
	my @t;
	my $line = 1;
	my $i = 0;
	my $n = length $s;
	while ($i < $n)
	{
		my $rest = substr($s, $i);
		my ($type, $text);
		if ($rest =~ /^(\s+)/)
		{
			$line += ($1 =~ tr/\n//);
			$i += length $1;
			next;
		}
		if ($rest =~ /^(--[^\n]*)/)
		{
			$i += length $1;
			next;
		}
		if ($rest =~ m{^/\*})
		{
			my ($depth, $j) = (0, $i);
			while ($j < $n)
			{
				if (substr($s, $j, 2) eq '/*') { $depth++; $j += 2; next; }
				if (substr($s, $j, 2) eq '*/') { $depth--; $j += 2; last if $depth == 0; next; }
				$line++ if substr($s, $j, 1) eq "\n";
				$j++;
			}
			$i = $j;
			next;
		}
		if ($c_format && $rest =~ /^(%%|%[-+ #0]*(?:\d+|\*)?(?:\.(?:\d+|\*))?(?:hh|h|ll|l|z|j|t|L)?[sdiuxXfgeEcp])/)
		{
			# a printf conversion: a value pasted in (%% is a literal %)
			($type, $text) = ($1 eq '%%' ? ('op', '%') : ('param', $1));
		}
		elsif ($rest =~ /^([eE]'(?:[^'\\]|\\.|'')*')/s
			|| $rest =~ /^('(?:[^']|'')*')/s)
		{
			($type, $text) = ('string', $1);
			# 'a'<newline>'b' is one literal, 'ab'
			while (substr($s, $i + length $text) =~ /^([ \t]*\n\s*'(?:[^']|'')*')/s)
			{
				$text .= $1;
			}
		}
		elsif ($rest =~ /^(\$([A-Za-z_][A-Za-z_0-9]*)?\$)/)
		{
			my $tag = $1;
			my $end = index($s, $tag, $i + length $tag);
			$end = $n - length $tag if $end < 0;
			$text = substr($s, $i, $end + length($tag) - $i);
			$type = 'string';
		}
		elsif ($rest =~ /^("(?:[^"]|"")*")/)
		{
			($type, $text) = ('qident', $1);
		}
		elsif ($rest =~ /^(\$\d+)/)
		{
			($type, $text) = ('param', $1);
		}
		elsif ($rest =~ /^(\d+(?:\.\d*)?(?:[eE][-+]?\d+)?)(?!\.)/ || $rest =~ /^(\d+)(?=\.\.)/
			|| $rest =~ /^(\.\d+(?:[eE][-+]?\d+)?)/)
		{
			($type, $text) = ('number', $1);
		}
		elsif ($rest =~ /^([A-Za-z_\x80-\xff][A-Za-z_0-9\$\x80-\xff]*)/)
		{
			($type, $text) = ('ident', $1);
		}
		elsif ($rest =~ /^(::|:=|\.\.|[(),;\[\].:])/)
		{
			($type, $text) = ('punct', $1);
		}
		elsif ($rest =~ /^($opchars+)/)
		{
			my $op = $1;
			# a comment starts inside an operator: it ends there
			$op = $1 if $op =~ m{^(.*?)(?:--|/\*)} && length $1;
			# a multi-character operator ends in + or - only if it has one of ~!@#%^&|`?
			if (length $op > 1 && $op !~ /[~!@#%^&|`?]/)
			{
				$op =~ s/[-+]+$// while length $op > 1 && $op =~ /[-+]$/;
			}
			($type, $text) = ('op', $op);
		}
		else
		{
			($type, $text) = ('punct', substr($s, $i, 1));
		}
		push @t, [ $type, $text, $line, $i ];
		$line += ($text =~ tr/\n//);
		$i += length $text;
	}
	return @t;
}

# The text of a string token, unquoted.
sub string_value
{
	my ($tok) = @_;
	my $v = $tok->[1];
	if ($v =~ /^\$([A-Za-z_0-9]*)\$/)
	{
		my $tag = $1;
		$v =~ s/^\$\Q$tag\E\$//;
		$v =~ s/\$\Q$tag\E\$$//;
		return $v;
	}
	# the pieces of a literal continued over lines
	my @pieces = $v =~ /[eE]?'((?:[^']|'')*)'/gs;
	return join('', map { s/''/'/gr } @pieces);
}

sub is_operand_end
{
	my ($tok) = @_;
	return 0 unless $tok;
	my ($type, $text) = @$tok;
	return 1 if $type eq 'number' || $type eq 'string' || $type eq 'qident' || $type eq 'param';
	return 1 if $type eq 'punct' && ($text eq ')' || $text eq ']');
	return 1 if $type eq 'ident' && !$keyword{ lc $text } || ($type eq 'ident' && lc $text eq 'end');
	return 0;
}

sub is_operand_start
{
	my ($tok) = @_;
	return 0 unless $tok;
	my ($type, $text) = @$tok;
	return 1 if $type eq 'number' || $type eq 'string' || $type eq 'qident' || $type eq 'param';
	return 1 if $type eq 'punct' && $text eq '(';
	return 1 if $type eq 'ident' && (!$keyword{ lc $text } || $text =~ /^(case|array|row|cast|coalesce|exists|not)$/i);
	return 0;
}

# The findings for one body (SQL or PL/pgSQL).
sub lint_sql
{
	my ($sql, $strict, $c_format) = @_;
	my ($t, $found) = scan($sql, $strict, $c_format);
	return map { $_->{text} } @$found;
}

# The tokens of a body and its findings: ([tokens], [{k => token index or
# undef, what, text}]).
sub scan
{
	my ($sql, $strict, $c_format) = @_;
	my @t = tokens($sql, $c_format);
	my @found;
	my $ctx = sub {
		my ($k) = @_;
		my $lo = $k - 3 < 0 ? 0 : $k - 3;
		my $hi = $k + 3 > $#t ? $#t : $k + 3;
		return join(' ', map { my $x = $_->[1]; $x =~ s/\s+/ /g; length $x > 20 ? substr($x, 0, 17) . '...' : $x } @t[ $lo .. $hi ]);
	};
	my $report = sub {
		my ($k, $what) = @_;
		push @found, { k => $k, what => $what, text => "line $t[$k][2]: $what (" . $ctx->($k) . ")" };
	};

	my $depth = 0;
	my %set_at;            # paren depth => 1 while in a SET clause's target
	my %set_expr;          # paren depth => 1 while in a SET clause's value
	my $stmt = '';         # first word of the statement (raise, get, ...)
	my $stmt_start = 1;
	my $after_using = 0;   # RAISE ... USING
	my $label = 0;
	for (my $k = 0; $k <= $#t; $k++)
	{
		my ($type, $text) = @{ $t[$k] };
		my $lc = lc $text;
		my $prev = $k > 0 ? $t[ $k - 1 ] : undef;
		my $next = $k < $#t ? $t[ $k + 1 ] : undef;
		my $prevlc = $prev ? lc $prev->[1] : '';
		my $nextlc = $next ? lc $next->[1] : '';

		if ($stmt_start && $type eq 'ident')
		{
			$stmt = $lc;
			$stmt_start = 0;
			$after_using = 0;
		}
		if ($type eq 'punct' && $text eq ';')
		{
			$stmt_start = 1;
			$stmt = '';
			%set_at = ();
			%set_expr = ();
			next;
		}
		# PL/pgSQL: a statement also starts after these words
		if ($type eq 'ident' && $lc =~ /^(begin|then|else|loop|declare|exception)$/ && $depth == 0
			&& $prevlc ne 'raise')
		{
			$stmt_start = 1 unless $lc eq 'else' && $stmt eq 'case';
			next;
		}
		# #variable_conflict and the like, at the start of a body
		if ($type eq 'op' && $text eq '#' && $next && $next->[0] eq 'ident'
			&& $nextlc =~ /^(variable_conflict|print_strict_params|option)$/)
		{
			my $l = $t[$k][2];
			$k++ while $k < $#t && $t[ $k + 1 ][2] == $l;
			next;
		}

		if ($type eq 'punct' && $text eq '(') { $depth++; next; }
		if ($type eq 'punct' && $text eq ')')
		{
			delete $set_at{$depth};
			delete $set_expr{$depth};
			$depth--;
			next;
		}

		if ($type eq 'ident' && $lc eq 'set' && $prevlc ne 'is')
		{
			$set_at{$depth} = 1;
			delete $set_expr{$depth};
			next;
		}
		if ($set_expr{$depth} && $type eq 'punct' && $text eq ',')
		{
			delete $set_expr{$depth};
			$set_at{$depth} = 1;
			next;
		}
		if (($set_at{$depth} || $set_expr{$depth}) && $type eq 'ident'
			&& $lc =~ /^(where|from|returning|on|do|select|values)$/)
		{
			delete $set_at{$depth};
			delete $set_expr{$depth};
		}
		if ($type eq 'ident' && $lc eq 'using' && $stmt eq 'raise')
		{
			$after_using = 1;
			next;
		}

		# OPERATOR(schema.op): qualified; OPERATOR(op): not
		if ($type eq 'ident' && $lc eq 'operator' && $next && $next->[1] eq '(')
		{
			my $j = $k + 2;
			my @inner;
			push @inner, $t[ $j++ ] while $j <= $#t && $t[$j][1] ne ')';
			$report->($k, "OPERATOR($inner[-1][1]) without a schema")
			  unless @inner >= 3 && $inner[-2][1] eq '.';
			$k = $j;
			next;
		}

		if ($type eq 'op')
		{
			next if $text eq '=>';
			# PL/pgSQL labels <<name>>
			if ($text eq '<<' && $next && $next->[0] eq 'ident' && $t[ $k + 2 ] && $t[ $k + 2 ][1] eq '>>')
			{
				$k += 2;
				next;
			}
			# %TYPE, %ROWTYPE
			next if $text eq '%' && $nextlc =~ /^(type|rowtype)$/;
			if ($text eq '=')
			{
				# UPDATE ... SET col = value, SET LOCAL name = value
				if ($set_at{$depth})
				{
					delete $set_at{$depth};
					$set_expr{$depth} = 1;
					next;
				}
				# RAISE ... USING ERRCODE = ..., GET DIAGNOSTICS v = ROW_COUNT
				next if $after_using && $prevlc =~ /^(errcode|message|detail|hint|column|constraint|datatype|table|schema)$/;
				next if $stmt eq 'get';
			}
			if ($text eq '*')
			{
				# count(*), SELECT *, t.*, RETURNING *
				next unless is_operand_end($prev) && $prevlc ne '.' && is_operand_start($next);
			}
			if ($text eq '-' || $text eq '+')
			{
				# a signed number is a constant, not an operator call
				next if !is_operand_end($prev) && $next && $next->[0] eq 'number';
			}
			$report->($k, "operator $text without a schema");
			next;
		}

		if ($type eq 'ident')
		{
			if ($next && $next->[1] eq '(')
			{
				my $qualified = $prev && $prev->[1] eq '.';
				# a type's modifier (x::numeric(10, 2)), an alias's column list (AS u(a, b))
				my $after_type = $prev && ($prev->[1] eq '::' || $prevlc eq 'as');
				my $into = $prevlc eq 'into' || $prevlc eq 'table' || $prevlc eq 'recursive'
				  || ($prev && $prev->[1] eq ',' && 0);
				# WITH name (cols) AS (, a CTE's name after a comma
				my $cte = 0;
				if (!$qualified && !$not_a_call{$lc})
				{
					my $j = $k + 1;
					my $d = 0;
					for (; $j <= $#t; $j++)
					{
						$d++ if $t[$j][1] eq '(';
						$d-- if $t[$j][1] eq ')';
						last if $d == 0;
					}
					$cte = 1 if $j < $#t && lc $t[ $j + 1 ][1] eq 'as' && $t[ $j + 2 ]
					  && ($t[ $j + 2 ][1] eq '(' || lc $t[ $j + 2 ][1] =~ /^(not|materialized)$/);
				}
				# a declared variable's type: v numeric(10, 2)
				my $decl_type = $prev && $prev->[0] eq 'ident' && !$keyword{$prevlc} && !$qualified
				  && $lc =~ /^(numeric|decimal|varchar|char|character|bit|varbit|time|timestamp|timestamptz|interval|float)$/;
				unless ($qualified || $after_type || $into || $cte || $decl_type || $not_a_call{$lc})
				{
					$report->($k, "function $text() without a schema");
				}
				if ($strict && $lc eq 'nullif')
				{
					$report->($k, "NULLIF looks = up by name");
				}
			}
			# EXECUTE 'sql', EXECUTE [pg_catalog.]format('sql', ...)
			my $fmt = $next && $next->[0] eq 'ident' && lc $next->[1] eq 'pg_catalog' ? $k + 3 : $k + 1;
			if ($lc eq 'execute'
				&& ($next && $next->[0] eq 'string'
					|| ($t[$fmt] && lc $t[$fmt][1] eq 'format' && $t[ $fmt + 1 ] && $t[ $fmt + 1 ][1] eq '('
						&& $t[ $fmt + 2 ] && $t[ $fmt + 2 ][0] eq 'string')))
			{
				my $str = $next->[0] eq 'string' ? $next : $t[ $fmt + 2 ];
				my $inner = string_value($str);
				# format()'s conversions are values pasted in
				(my $sqltext = $inner) =~ s/%(?:\d+\$)?-?\d*[ILs]/x/g;
				$sqltext =~ s/%%/%/g;
				push @found, map { { k => undef, what => 'in a string run as SQL',
									 text => s/^line (\d+)/"line " . ($str->[2] + $1 - 1) . " (in a string run as SQL)"/er } }
				  lint_sql($sqltext, $strict, 0);
			}
			if ($strict)
			{
				if ($lc eq 'in' && $next && $next->[1] eq '(' && $stmt ne 'for' && $stmt ne 'foreach')
				{
					$report->($k, "IN (...) looks = up by name");
				}
				elsif ($lc eq 'between')
				{
					$report->($k, "BETWEEN looks <= and >= up by name");
				}
				elsif ($lc eq 'distinct' && $prevlc =~ /^(is|not)$/)
				{
					$report->($k, "IS DISTINCT FROM looks = up by name");
				}
				elsif ($lc eq 'case' && $next && lc $next->[1] ne 'when')
				{
					$report->($k, "CASE x WHEN looks = up by name");
				}
				elsif ($lc =~ /^(like|ilike|similar)$/)
				{
					$report->($k, uc($lc) . " looks its operator up by name");
				}
				elsif ($lc eq 'using' && $next && $next->[1] eq '(' && $stmt ne 'raise' && $stmt ne 'execute' && $stmt ne 'return')
				{
					$report->($k, "JOIN ... USING looks = up by name");
				}
				elsif ($lc eq 'natural')
				{
					$report->($k, "NATURAL JOIN looks = up by name");
				}
			}
		}
	}
	return (\@t, \@found);
}

# The SQL in a C file: its string literals, adjacent ones joined, those
# passed to ereport's errmsg/errdetail/errhint/errcontext, elog or
# DefineCustom*Variable left out, and only those that read as SQL (an
# upper-case SELECT, INSERT, UPDATE, DELETE, WITH or LOCK, FROM, WHERE, AND,
# SET, ORDER BY, ON CONFLICT, VALUES or RETURNING).  Returns [line, sql].
sub c_strings
{
	my ($c, $emitted) = @_;
	# comments out, keeping lines
	$c =~ s{/\*.*?\*/}{ my $x = $&; $x =~ tr/\n//cd; $x }gse;
	$c =~ s{//[^\n]*}{}g;
	my @out;
	while ($c =~ /"((?:[^"\\\n]|\\.)*)"/g)
	{
		my $start = $-[0];
		my $text = $1;
		# join the literals that follow (C concatenation), across macros
		# like CppAsString2(X) and whitespace
		while ($c =~ /\G(?:\s|\\\n)*(?:"((?:[^"\\\n]|\\.)*)")/gc)
		{
			$text .= $1;
		}
		my $before = substr($c, $start > 400 ? $start - 400 : 0, $start > 400 ? 400 : $start);
		next if $before =~ /\b(?:errmsg|errmsg_internal|errdetail|errdetail_internal|errhint|errcontext|errmsg_plural|errdetail_plural|elog\s*\(\s*\w+\s*,|DefineCustom\w+Variable\s*\(\s*"[^"]*"\s*,)\s*\(?\s*$/s;
		next if $before =~ /\b(?:errmsg|errdetail|errhint|errcontext|gettext_noop|_)\s*\(\s*$/s;
		# a GUC's descriptions
		next if $before =~ /DefineCustom\w+Variable\s*\(\s*"[^"]*"\s*,\s*(?:"(?:[^"\\]|\\.)*"\s*,\s*)?$/s;
		next if $before =~ /#\s*include\s*$/;
		# a file that writes SQL out (export.c's scorer, run elsewhere as its
		# caller): only what it runs itself
		next if $emitted && $before !~ /\b(?:SPI_execute\w*|SPI_prepare\w*|SPI_cursor_open\w*|CatalogKeepPlan)\s*\(\s*$/s;
		next unless $text =~ /\b(?:SELECT|INSERT INTO|UPDATE|DELETE FROM|WITH|LOCK|FROM|WHERE|AND|OR|SET|ORDER BY|ON CONFLICT|VALUES|RETURNING|JOIN)\b/;
		# C escapes
		$text =~ s/\\n/\n/g;
		$text =~ s/\\t/\t/g;
		$text =~ s/\\"/"/g;
		$text =~ s/\\\\/\\/g;
		my $line = 1 + (substr($c, 0, $start) =~ tr/\n//);
		push @out, [ $line, $text ];
	}
	return @out;
}

# ---------------------------------------------------------------------------
# qualify_sql(body): the body with every operator the lint reports written
# as OPERATOR(pg_catalog.op), and parentheses added where that would change
# the grouping.  OPERATOR(...) has the precedence of a generic operator
# (PostgreSQL's Op: above comparisons, IS, BETWEEN, IN and LIKE, below + - *
# / % ^), so a + b * c must become a OPERATOR(+) (b OPERATOR(*) c): each
# expression between keywords is parsed with the original precedences and
# written back with the grouping explicit.  Returns (text, [manual]), the
# second the findings it left alone because the expression around them is
# not one it parses with certainty (they are listed for a human).
my %sep_kw = map { $_ => 1 } qw(
  and or not is isnull notnull in between like ilike similar escape when then
  else end select from where group by having order limit offset as on join
  using distinct asc desc nulls first last return returns if elsif into
  values set update insert delete returning with union intersect except all
  loop for foreach while exit continue perform raise using do conflict
  begin declare exception window partition rows range over filter within
  inner left right full outer cross lateral natural into strict query execute
  at collate default
);

my %cmp = map { $_ => 1 } ('=', '<', '>', '<=', '>=', '<>', '!=');

sub op_level
{
	my ($item) = @_;
	return 2 if $item->{qualified};
	my $o = $item->{op};
	return 1 if $cmp{$o};
	return 3 if $o eq '+' || $o eq '-';
	return 4 if $o eq '*' || $o eq '/' || $o eq '%';
	return 5 if $o eq '^';
	return 2;
}

sub qualify_sql
{
	my ($sql) = @_;
	my ($t, $found) = scan($sql, 0, 0);
	my @t = @$t;
	my %flagged = map { $_->{k} => 1 } grep { defined $_->{k} && $_->{what} =~ /^operator / } @$found;
	my @manual = map { $_->{text} } grep { !defined $_->{k} || $_->{what} !~ /^operator / } @$found;
	my (%repl, %pre, %post);    # token index => text replacing it / put before / after it

	my $match = sub {
		my ($i, $open, $close) = @_;
		my $d = 0;
		for (my $j = $i; $j <= $#t; $j++)
		{
			$d++ if $t[$j][1] eq $open;
			$d-- if $t[$j][1] eq $close;
			return $j if $d == 0;
		}
		return $#t;
	};
	my $match_case = sub {
		my ($i) = @_;
		my $d = 0;
		for (my $j = $i; $j <= $#t; $j++)
		{
			next unless $t[$j][0] eq 'ident';
			my $w = lc $t[$j][1];
			$d++ if $w eq 'case';
			# END IF / END LOOP / END CASE close statements, not an expression
			if ($w eq 'end' && !($j < $#t && $t[ $j + 1 ][1] =~ /^(if|loop|case)$/i && $d > 0 && 0))
			{
				$d--;
				return $j if $d == 0;
			}
		}
		return $#t;
	};

	my $seq;
	$seq = sub {
		my ($lo, $hi) = @_;
		my @items;
		my $i = $lo;
		while ($i <= $hi)
		{
			my ($type, $text) = @{ $t[$i] };
			my $lc = lc $text;
			my $next = $i < $hi ? $t[ $i + 1 ] : undef;
			if ($type eq 'punct' && $text eq '(')
			{
				my $j = $match->($i, '(', ')');
				$seq->($i + 1, $j - 1);
				push @items, { kind => 'atom', lo => $i, hi => $j };
				$i = $j + 1;
			}
			elsif ($type eq 'punct' && $text eq '[')
			{
				my $j = $match->($i, '[', ']');
				$seq->($i + 1, $j - 1);
				push @items, { kind => 'atom', lo => $i, hi => $j };
				$i = $j + 1;
			}
			elsif ($type eq 'ident' && $lc eq 'operator' && $next && $next->[1] eq '(')
			{
				my $j = $match->($i + 1, '(', ')');
				push @items, { kind => 'op', lo => $i, hi => $j, qualified => 1, op => 'OPERATOR' };
				$i = $j + 1;
			}
			elsif ($type eq 'ident' && $lc eq 'case')
			{
				my $j = $match_case->($i);
				$seq->($i + 1, $j - 1);
				push @items, { kind => 'atom', lo => $i, hi => $j };
				$i = $j + 1;
			}
			elsif ($type eq 'ident' && $lc =~ /^(any|all|some|exists|array|row)$/ && $next && $next->[1] =~ /^[(\[]$/)
			{
				my $j = $next->[1] eq '(' ? $match->($i + 1, '(', ')') : $match->($i + 1, '[', ']');
				$seq->($i + 2, $j - 1);
				push @items, { kind => 'atom', lo => $i, hi => $j };
				$i = $j + 1;
			}
			elsif ($type eq 'ident' && $sep_kw{$lc})
			{
				push @items, { kind => 'sep', lo => $i, hi => $i, word => $lc };
				$i++;
			}
			elsif ($type eq 'op' && $flagged{$i})
			{
				push @items, { kind => 'op', lo => $i, hi => $i, op => $text };
				$i++;
			}
			elsif ($type eq 'op' && ($text eq '-' || $text eq '+') && $next && $next->[0] eq 'number')
			{
				# a signed number: one atom
				push @items, { kind => 'atom', lo => $i, hi => $i + 1 };
				$i += 2;
			}
			elsif ($type eq 'op' || $type eq 'punct' && $text =~ /^(,|;|:=|\.\.|:)$/)
			{
				push @items, { kind => 'sep', lo => $i, hi => $i, word => $text };
				$i++;
			}
			elsif ($type eq 'punct' && ($text eq '::' || $text eq '.') && @items && $items[-1]{kind} eq 'atom')
			{
				# postfix: ::type, .field of a parenthesised row
				my $j = $i + 1;
				if ($text eq '::')
				{
					$j++ while $j < $hi && $t[ $j + 1 ][1] eq '.' && ($j += 1);
					if (lc $t[$j][1] eq 'double' && $j < $hi && lc $t[ $j + 1 ][1] eq 'precision') { $j++; }
					elsif (lc $t[$j][1] =~ /^(timestamp|time)$/ && $j + 2 <= $hi && lc $t[ $j + 1 ][1] =~ /^(with|without)$/) { $j += 3; }
					elsif (lc $t[$j][1] eq 'character' && $j < $hi && lc $t[ $j + 1 ][1] eq 'varying') { $j++; }
					$j = $match->($j + 1, '(', ')') if $j < $hi && $t[ $j + 1 ][1] eq '(';
					$j += 2 while $j + 2 <= $hi && $t[ $j + 1 ][1] eq '[' && $t[ $j + 2 ][1] eq ']';
				}
				$items[-1]{hi} = $j;
				$i = $j + 1;
			}
			else
			{
				# an operand: a name (a.b.c, a call with FILTER/OVER/WITHIN
				# GROUP), a literal, a parameter, a typed literal
				my $j = $i;
				$j += 2 while $j + 2 <= $hi && $t[ $j + 1 ][1] eq '.' && $t[ $j + 2 ][0] =~ /^(ident|qident)$/;
				if ($t[$j][0] =~ /^(ident|qident)$/ && $j < $hi && $t[ $j + 1 ][1] eq '(')
				{
					my $k = $match->($j + 1, '(', ')');
					$seq->($j + 2, $k - 1);
					$j = $k;
					while ($j + 2 <= $hi && lc $t[ $j + 1 ][1] =~ /^(filter|over|within)$/)
					{
						my $w = lc $t[ $j + 1 ][1];
						my $open = $j + 2;
						$open++ if $w eq 'within' && lc $t[$open][1] eq 'group';
						if ($t[$open][1] eq '(')
						{
							my $k2 = $match->($open, '(', ')');
							$seq->($open + 1, $k2 - 1);
							$j = $k2;
						}
						else { $j = $open; }
					}
				}
				elsif ($t[$j][0] eq 'ident' && $j < $hi && $t[ $j + 1 ][0] eq 'string')
				{
					$j++;    # interval '1 day'
				}
				push @items, { kind => 'atom', lo => $i, hi => $j };
				$i = $j + 1;
			}
			# subscripts and casts after an atom
			while ($i <= $hi && @items && $items[-1]{kind} eq 'atom' && $t[$i][1] eq '[')
			{
				my $j = $match->($i, '[', ']');
				$seq->($i + 1, $j - 1);
				$items[-1]{hi} = $j;
				$i = $j + 1;
			}
		}

		# runs of atoms and operators between separators
		my @run;
		my $flush = sub {
			my ($before, $after) = @_;
			my @r = @run;
			@run = ();
			return unless grep { $_->{kind} eq 'op' && !$_->{qualified} } @r;
			my $where = sub { "line $t[ $r[0]{lo} ][2]: " . $_[0] . " (" . join(' ', map { $_->[1] } @t[ $r[0]{lo} .. $r[-1]{hi} ]) . ")" };
			# operand (op operand)*, prefix operators allowed before an operand
			my @operands;
			my @ops;
			my $want = 'operand';
			my @prefix;
			for my $it (@r)
			{
				if ($want eq 'operand')
				{
					if ($it->{kind} eq 'op') { push @prefix, $it; next; }
					push @operands, { atom => $it, prefix => [@prefix] };
					@prefix = ();
					$want = 'op';
				}
				else
				{
					if ($it->{kind} ne 'op') { push @manual, $where->('two operands in a row'); return; }
					push @ops, $it;
					$want = 'operand';
				}
			}
			if ($want eq 'operand') { push @manual, $where->('an operator without its operand'); return; }
			for my $o (@operands)
			{
				for my $p (@{ $o->{prefix} })
				{
					if ($p->{qualified} && @ops) { push @manual, $where->('a qualified prefix operator in an expression'); return; }
				}
			}
			my $has_cmp = grep { !$_->{qualified} && $cmp{ $_->{op} } } @ops;
			for my $b ($before, $after)
			{
				next unless $b;
				# AT TIME ZONE and COLLATE bind tighter than OPERATOR(); BETWEEN,
				# IN, LIKE, SIMILAR (and NOT before them) tighter than a comparison
				if ($b =~ /^(at|collate)$/
					|| ($has_cmp && $b eq ($after // '') && $b =~ /^(between|in|like|ilike|similar|escape|not)$/))
				{
					push @manual, $where->("next to $b");
					return;
				}
				# PL/pgSQL's assignment with =
				if ($b =~ /^(;|begin|then|else|loop|declare)$/ && @ops && !$ops[0]{qualified} && $ops[0]{op} eq '='
					&& $b eq $before)
				{
					push @manual, $where->('an assignment with =');
					return;
				}
			}
			# prefix operators: OPERATOR(pg_catalog.-) x, in parentheses
			for my $o (@operands)
			{
				for my $p (reverse @{ $o->{prefix} })
				{
					next if $p->{qualified};
					$repl{ $p->{lo} } = "OPERATOR(pg_catalog.$p->{op})";
					$pre{ $p->{lo} } .= '(';
					$post{ $o->{atom}{hi} } = ')' . ($post{ $o->{atom}{hi} } // '');
				}
			}
			# precedence climbing over the original levels
			my $pos = 0;
			my $leaf = sub {
				my $o = $operands[ $_[0] ];
				my $lo = @{ $o->{prefix} } ? $o->{prefix}[0]{lo} : $o->{atom}{lo};
				return { lo => $lo, hi => $o->{atom}{hi} };
			};
			my $parse;
			$parse = sub {
				my ($min) = @_;
				my $left = $leaf->($pos);
				while ($pos < @ops && op_level($ops[$pos]) >= $min)
				{
					my $op = $ops[$pos];
					my $lvl = op_level($op);
					$pos++;
					my $right = $parse->($lvl + 1);
					$left = { lo => $left->{lo}, hi => $right->{hi}, op => $op, l => $left, r => $right };
				}
				return $left;
			};
			my $tree = $parse->(0);
			if ($pos < @ops) { push @manual, $where->('could not parse'); return; }
			my $emit;
			$emit = sub {
				my ($n) = @_;
				return unless $n->{op};
				my $lvl = op_level($n->{op});
				$repl{ $n->{op}{lo} } = "OPERATOR(pg_catalog.$n->{op}{op})" unless $n->{op}{qualified};
				for my $side ('l', 'r')
				{
					my $c = $n->{$side};
					next unless $c->{op};
					if ($side eq 'r' || op_level($c->{op}) != $lvl)
					{
						$pre{ $c->{lo} } = '(' . ($pre{ $c->{lo} } // '');
						$post{ $c->{hi} } = ($post{ $c->{hi} } // '') . ')';
					}
					$emit->($c);
				}
			};
			$emit->($tree);
		};
		my $last_sep;
		for my $it (@items)
		{
			if ($it->{kind} eq 'sep')
			{
				$flush->($last_sep, $it->{word});
				$last_sep = $it->{word};
				next;
			}
			push @run, $it;
		}
		$flush->($last_sep, undef);
	};
	$seq->(0, $#t);

	# apply, from the end
	my $out = $sql;
	for my $k (sort { $b <=> $a } 0 .. $#t)
	{
		my ($off, $len) = ($t[$k][3], length $t[$k][1]);
		my $r = $repl{$k};
		if (defined $r)
		{
			# keep the operator apart from its operands: s.a->>'k'
			my $c0 = $off > 0 ? substr($sql, $off - 1, 1) : ' ';
			my $c1 = $off + $len < length $sql ? substr($sql, $off + $len, 1) : ' ';
			$r = ' ' . $r if $c0 !~ /[\s(]/ && !defined $pre{$k};
			$r .= ' ' if $c1 !~ /\s/;
		}
		my $new = ($pre{$k} // '') . ($r // $t[$k][1]) . ($post{$k} // '');
		substr($out, $off, $len) = $new if $new ne $t[$k][1];
	}
	# what is still unqualified after the rewrite (parsed with certainty or not)
	my %left = map { $_ => 1 } lint_sql($out, 0, 0);
	return ($out, [ @manual ], [ sort keys %left ]);
}

1;
