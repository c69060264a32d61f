#!/bin/sh
# Runs inside the portable test's root: install.sh on a stand-in for supabase/postgres's
# Nix layout, where `postgres` next to pg_config is a wrapper script that exports
# NIX_PGLIBDIR (the server's real module directory) and pg_config --pkglibdir names
# another one.  Checks that the library goes to NIX_PGLIBDIR, the SQL files to
# pg_config --sharedir, that ldd resolves XGBoost's libraries there, and that --uninstall removes it.
# Only the path logic is tested: no Nix-built server runs here.
set -eu
pkg=$1
fake=/tmp/nix-layout
rm -rf "$fake"
mkdir -p "$fake/bin" "$fake/wrong-lib" "$fake/env/lib" "$fake/share/extension"
cat >"$fake/bin/pg_config" <<PGC
#!/bin/sh
case "\$1" in
--version) echo "PostgreSQL 15.8" ;;
--pkglibdir) echo "$fake/wrong-lib" ;;
--sharedir) echo "$fake/share" ;;
esac
PGC
cat >"$fake/bin/postgres" <<WRAP
#! /nix/store/xxxxxxxx-bash-5.2p32/bin/bash -e
export NIX_PGLIBDIR='$fake/env/lib'
exec -a "\$0" "$fake/bin/.postgres-wrapped"  "\$@"
WRAP
chmod +x "$fake/bin/pg_config" "$fake/bin/postgres"

sh "$pkg/install.sh" --pg-config "$fake/bin/pg_config" >"$fake/install.log"
grep -q "sets NIX_PGLIBDIR" "$fake/install.log"
test -f "$fake/env/lib/icpml.so"
test -f "$fake/env/lib/icpml-runtime/libxgboost.so.0"
test -f "$fake/share/extension/icpml.control"
test -z "$(ls -A "$fake/wrong-lib")"
# icpml.so opens libxgboost.so.0 at run time through its RUNPATH (src/xgb.c):
# what ldd resolves for it there, it finds there
ldd "$fake/env/lib/icpml-runtime/libxgboost.so.0" | grep -q "$fake/env/lib/icpml-runtime/libdmlc.so.0"
sh "$pkg/install.sh" --pg-config "$fake/bin/pg_config" --uninstall >/dev/null
test ! -e "$fake/env/lib/icpml.so"
test ! -e "$fake/env/lib/icpml-runtime"
test ! -e "$fake/share/extension/icpml.control"
rm -rf "$fake"
echo "nix layout: install.sh put the library into NIX_PGLIBDIR, ldd resolves XGBoost's libraries there, --uninstall removed it"
