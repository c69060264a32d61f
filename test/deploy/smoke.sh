#!/bin/sh
# Runs inside the image or root under test (buildah run): a throwaway cluster as the
# postgres user with pg_cron preloaded, then smoke.sql.  Exit status is the test's.
set -eu
PGBIN=/usr/lib/postgresql/15/bin
dir=${1:-/tmp/icpml-smoke}
here=$(cd "$(dirname "$0")" && pwd)
extdir=$("$PGBIN/pg_config" --sharedir)/extension

rm -rf "$dir"
mkdir -p "$dir"
cp "$here/smoke.sql" "$dir/"
chown -R postgres "$dir"
as_pg() { runuser -u postgres -- env PGHOST="$dir" PGPORT=5432 PGUSER=postgres "$@"; }

as_pg "$PGBIN/initdb" -D "$dir/data" -U postgres -A trust -E UTF8 --no-locale >/dev/null
cat >>"$dir/data/postgresql.conf" <<CONF
listen_addresses = ''
unix_socket_directories = '$dir'
shared_preload_libraries = 'pg_cron'
cron.database_name = 'smoke'
fsync = off
CONF
as_pg "$PGBIN/pg_ctl" -D "$dir/data" -l "$dir/postgres.log" -w start >/dev/null
status=0
init=/docker-entrypoint-initdb.d/initdb-icpml.sql
if [ -f "$init" ]; then
	# the image's init script, as the official entrypoint would run it: in the
	# cron.database_name database it creates both extensions, elsewhere icpml only
	cp "$init" "$dir/"
	as_pg "$PGBIN/createdb" smoke && as_pg "$PGBIN/createdb" other &&
		as_pg "$PGBIN/psql" -X -q -v ON_ERROR_STOP=1 -d smoke -f "$dir/initdb-icpml.sql" &&
		as_pg "$PGBIN/psql" -X -q -v ON_ERROR_STOP=1 -d other -f "$dir/initdb-icpml.sql" 2>/dev/null &&
		[ "$(as_pg "$PGBIN/psql" -X -At -d other -c "SELECT string_agg(extname, ',' ORDER BY extname) FROM pg_extension WHERE extname IN ('icpml', 'pg_cron')")" = icpml ] &&
		echo "init script: icpml and pg_cron in smoke, icpml alone in other" || status=1
else
	as_pg "$PGBIN/createdb" smoke || status=$?
fi
[ $status -eq 0 ] &&
	as_pg "$PGBIN/psql" -X -q -d smoke -v extdir="$extdir" -f "$dir/smoke.sql" || status=$?
if [ -n "${ICPML_SMOKE_MAPS:-}" ] && [ $status -eq 0 ]; then
	# which files the backend that trained and scored loaded its libraries from
	as_pg "$PGBIN/psql" -X -q -At -d smoke -c "SELECT icpml.xgboost_version()" \
		-c "SELECT pg_read_file('/proc/' || pg_backend_pid() || '/maps')" >"$dir/maps" || status=$?
fi
as_pg "$PGBIN/pg_ctl" -D "$dir/data" -m fast stop >/dev/null || true
if [ $status -ne 0 ]; then
	echo "--- server log"; tail -30 "$dir/postgres.log"
fi
exit $status
