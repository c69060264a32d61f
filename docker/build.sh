#!/bin/sh
# Every step of building an icpml image, so that the Dockerfile and `test/run image`
# run the same commands.  Usage (as root, inside the image being built):
#
#   docker/build.sh builder-deps            compiler, PostgreSQL 15 server headers,
#                                           libxgboost-dev, patchelf
#   docker/build.sh build SRC STAGE DIST    make; make install into STAGE (copied into
#                                           the final image); the portable tarball into DIST
#   docker/build.sh runtime-deps            the server (when absent), libxgboost0 and
#                                           pg_cron: no compiler in the final image
#
# Works on both kinds of Debian 12 base:
# - the official postgres:15-bookworm image: PostgreSQL 15 from PGDG is already there,
#   and PGDG's apt source (component "15") provides postgresql-server-dev-15 and
#   postgresql-15-cron under the same names as Debian;
# - a plain Debian 12 (test/run image debootstraps one): PostgreSQL 15 comes from
#   Debian, installed without the "main" cluster postgresql-common would create.
# libxgboost comes from Debian in both cases.
set -eu

PG_MAJOR=15
PGBIN=/usr/lib/postgresql/$PG_MAJOR/bin
export DEBIAN_FRONTEND=noninteractive

apt_install() {
	apt-get install -y -q --no-install-recommends "$@"
}

# the official image has its PGDG server; a plain Debian gets Debian's, with no cluster
server_if_absent() {
	if [ -x "$PGBIN/postgres" ]; then
		echo "build.sh: using the PostgreSQL $PG_MAJOR already in the base image ($("$PGBIN/postgres" --version))"
		return 0
	fi
	apt_install postgresql-common
	sed -ri 's/^#? *create_main_cluster *=.*$/create_main_cluster = false/' \
		/etc/postgresql-common/createcluster.conf
	apt_install "postgresql-$PG_MAJOR"
	echo "build.sh: installed $("$PGBIN/postgres" --version) from Debian"
}

case "${1:-}" in
builder-deps)
	apt-get update -q
	apt_install ca-certificates make gcc libc6-dev binutils patchelf \
		"postgresql-server-dev-$PG_MAJOR" libxgboost-dev
	apt-get clean
	rm -rf /var/lib/apt/lists/*
	;;
build)
	src=$2 stage=$3 dist=$4
	make -C "$src" -s PG_CONFIG="$PGBIN/pg_config" clean
	make -C "$src" -s -j"$(nproc)" PG_CONFIG="$PGBIN/pg_config"
	make -C "$src" -s PG_CONFIG="$PGBIN/pg_config" install DESTDIR="$stage"
	sh "$src/packaging/dist-portable.sh" --pg-config "$PGBIN/pg_config" --src "$src" --out "$dist"
	;;
runtime-deps)
	apt-get update -q
	server_if_absent
	apt_install libxgboost0 "postgresql-$PG_MAJOR-cron"
	apt-get clean
	rm -rf /var/lib/apt/lists/*
	;;
*)
	echo "usage: $0 builder-deps | build SRC STAGE DIST | runtime-deps" >&2
	exit 2
	;;
esac
