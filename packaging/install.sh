#!/bin/sh
# Installs the portable icpml build into a PostgreSQL 15 server (docs/portable.md).
#
#   ./install.sh [--pg-config PATH] [--pkglibdir DIR] [--sharedir DIR] [--uninstall]
#
# Copies lib/icpml.so and lib/icpml-runtime/ (XGBoost and the libraries it needs) into
# the server's library directory, and share/extension/* into its share directory's
# extension/.  The directories come from pg_config (on PATH, or --pg-config), except:
# - a Nix-built server (supabase/postgres) whose `postgres` is a wrapper script setting
#   NIX_PGLIBDIR: the server loads modules from there, not from pg_config --pkglibdir,
#   so the library directory is read from the wrapper;
# - --pkglibdir / --sharedir, which win over both.
# Then checks with ldd that every library icpml.so and libxgboost need resolves, and prints the next step.
set -eu

here=$(cd "$(dirname "$0")" && pwd)
pg_config=
pkglibdir=
sharedir=
uninstall=0
while [ $# -gt 0 ]; do
	case "$1" in
	--pg-config) pg_config=$2; shift ;;
	--pkglibdir) pkglibdir=$2; shift ;;
	--sharedir) sharedir=$2; shift ;;
	--uninstall) uninstall=1 ;;
	*) echo "usage: $0 [--pg-config PATH] [--pkglibdir DIR] [--sharedir DIR] [--uninstall]" >&2; exit 2 ;;
	esac
	shift
done

die() { echo "install.sh: $*" >&2; exit 1; }

if [ -z "$pg_config" ]; then
	pg_config=$(command -v pg_config || true)
fi
if [ -n "$pg_config" ]; then
	version=$("$pg_config" --version) || die "$pg_config does not run"
	case "$version" in
	"PostgreSQL 15."*) ;;
	*) die "$pg_config reports $version; this build is for PostgreSQL 15" ;;
	esac
	if [ -z "$pkglibdir" ]; then
		# a Nix wrapper script next to pg_config overrides the library directory
		wrapper=$(dirname "$pg_config")/postgres
		if [ -f "$wrapper" ] && head -c 2 "$wrapper" | grep -q '^#!' &&
			nix=$(sed -n "s/^export NIX_PGLIBDIR=['\"]\{0,1\}\([^'\"]*\)['\"]\{0,1\}\$/\1/p" "$wrapper") &&
			[ -n "$nix" ]; then
			echo "install.sh: $wrapper sets NIX_PGLIBDIR: installing the library into $nix"
			pkglibdir=$nix
		else
			pkglibdir=$("$pg_config" --pkglibdir)
		fi
	fi
	[ -n "$sharedir" ] || sharedir=$("$pg_config" --sharedir)
fi
[ -n "$pkglibdir" ] && [ -n "$sharedir" ] ||
	die "pg_config not found: put PostgreSQL 15's bin directory on PATH, or give --pg-config (or --pkglibdir and --sharedir)"
[ -d "$pkglibdir" ] || die "library directory $pkglibdir does not exist"
[ -d "$sharedir/extension" ] || die "extension directory $sharedir/extension does not exist"

if [ $uninstall -eq 1 ]; then
	rm -f "$pkglibdir/icpml.so"
	rm -rf "$pkglibdir/icpml-runtime"
	for f in "$here"/share/extension/*; do rm -f "$sharedir/extension/$(basename "$f")"; done
	echo "install.sh: removed icpml from $pkglibdir and $sharedir/extension"
	exit 0
fi

# the runtime directory first, so that icpml.so never sits there without what it needs
rm -rf "$pkglibdir/icpml-runtime.new"
mkdir -p "$pkglibdir/icpml-runtime.new"
cp "$here"/lib/icpml-runtime/* "$pkglibdir/icpml-runtime.new/"
chmod 755 "$pkglibdir/icpml-runtime.new"
chmod 644 "$pkglibdir"/icpml-runtime.new/*
rm -rf "$pkglibdir/icpml-runtime"
mv "$pkglibdir/icpml-runtime.new" "$pkglibdir/icpml-runtime"
cp "$here/lib/icpml.so" "$pkglibdir/icpml.so.new"
chmod 755 "$pkglibdir/icpml.so.new"
mv "$pkglibdir/icpml.so.new" "$pkglibdir/icpml.so"
for f in "$here"/share/extension/*; do
	cp "$f" "$sharedir/extension/"
	chmod 644 "$sharedir/extension/$(basename "$f")"
done
echo "install.sh: installed icpml.so and icpml-runtime/ into $pkglibdir, SQL files into $sharedir/extension"

if command -v ldd >/dev/null 2>&1; then
	# icpml.so opens icpml-runtime/libxgboost.so.0 when it first needs XGBoost
	for lib in "$pkglibdir/icpml.so" "$pkglibdir/icpml-runtime/libxgboost.so.0"; do
		if ldd "$lib" | grep -q 'not found'; then
			ldd "$lib" >&2
			die "some libraries $(basename "$lib") needs were not found (see above)"
		fi
		echo "install.sh: ldd resolves every library $(basename "$lib") needs:"
		ldd "$lib" | sed 's/^/  /'
	done
fi
grep '^needs:' "$here/MANIFEST" | sed 's/^/install.sh: /'
echo "install.sh: next, in your database: CREATE EXTENSION icpml;  (pg_cron, for scheduled retraining, is separate)"
