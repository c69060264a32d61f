#!/bin/sh
# Builds the portable tarball: icpml.so with the XGBoost runtime it needs beside it,
# for a PostgreSQL 15 on x86_64 Linux with glibc that has no libxgboost installed
# (self-hosted Supabase's Nix-built image, another distribution).  See docs/portable.md.
#
#   packaging/dist-portable.sh [--pg-config PATH] [--src DIR] [--out DIR]
#   (or: make dist-portable)
#
# Needs a Debian 12 build machine with postgresql-server-dev-15, libxgboost-dev and
# patchelf (docker/build.sh builder-deps installs them).  Layout of the tarball:
#   icpml-VERSION-pg15-linux-x86_64/
#     install.sh            copies into the server's library and share directories
#     lib/icpml.so          RUNPATH $ORIGIN/icpml-runtime (where it opens libxgboost)
#     lib/icpml-runtime/    libxgboost.so.0 and every library it needs except glibc's
#                           own, each with RUNPATH $ORIGIN
#     share/extension/      icpml.control, install and upgrade scripts, reference SQL
#     MANIFEST              versions, the glibc it needs, sha256 of every file
set -eu

pg_config=pg_config
src=$(cd "$(dirname "$0")/.." && pwd)
out=$src/dist
while [ $# -gt 0 ]; do
	case "$1" in
	--pg-config) pg_config=$2; shift ;;
	--src) src=$2; shift ;;
	--out) out=$2; shift ;;
	*) echo "usage: $0 [--pg-config PATH] [--src DIR] [--out DIR]" >&2; exit 2 ;;
	esac
	shift
done
for tool in patchelf objdump ldd sha256sum; do
	command -v "$tool" >/dev/null 2>&1 || { echo "dist-portable: $tool not found (apt-get install patchelf binutils)" >&2; exit 1; }
done

pg_version=$("$pg_config" --version)
case "$pg_version" in
"PostgreSQL 15."*) ;;
*) echo "dist-portable: $pg_config is $pg_version; icpml needs PostgreSQL 15" >&2; exit 1 ;;
esac
version=$(sed -n "s/^default_version = '\(.*\)'/\1/p" "$src/icpml.control")
arch=$(uname -m)
name=icpml-$version-pg15-linux-$arch

# what `make install` would install, taken from a staging directory so that the
# Makefile stays the one list of files
make -C "$src" -s PG_CONFIG="$pg_config"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
make -C "$src" -s PG_CONFIG="$pg_config" install DESTDIR="$tmp/stage"
pkglibdir=$("$pg_config" --pkglibdir)
sharedir=$("$pg_config" --sharedir)

root=$tmp/$name
mkdir -p "$root/lib/icpml-runtime" "$root/share/extension"
cp "$tmp/stage$pkglibdir/icpml.so" "$root/lib/"
cp "$tmp/stage$sharedir/extension/"* "$root/share/extension/"
cp "$src/packaging/install.sh" "$root/"
chmod 755 "$root/install.sh"

# every shared library icpml.so needs, transitively, except glibc's: the server
# process already has its own glibc, and a second one cannot be loaded beside it.
# icpml.so opens libxgboost.so.0 at run time (src/xgb.c: a backend that only
# scores never loads it), through its RUNPATH: it is not in icpml.so's own
# ldd, so it is listed with what it needs itself
glibc_sonames=" linux-vdso.so.1 libc.so.6 libm.so.6 libpthread.so.0 libdl.so.2 librt.so.1 libresolv.so.2 libutil.so.1 ld-linux-x86-64.so.2 ld-linux-aarch64.so.1 "
xgboost=$(ldconfig -p | awk '$1 == "libxgboost.so.0" && $NF ~ /^\// { print $NF; exit }')
test -n "$xgboost" || { echo "dist-portable: libxgboost.so.0 not found (apt-get install libxgboost-dev)" >&2; exit 1; }
{ ldd "$root/lib/icpml.so"; echo "	libxgboost.so.0 => $xgboost (0)"; ldd "$xgboost"; } |
	awk '$2 == "=>" && $3 ~ /^\// && !seen[$1]++ { print $1, $3 }' |
while read -r soname path; do
	case "$glibc_sonames" in *" $soname "*) continue ;; esac
	cp -L "$path" "$root/lib/icpml-runtime/$soname"
	chmod 644 "$root/lib/icpml-runtime/$soname"
	patchelf --set-rpath '$ORIGIN' "$root/lib/icpml-runtime/$soname"
done
test -f "$root/lib/icpml-runtime/libxgboost.so.0" || { echo "dist-portable: libxgboost.so.0 was not bundled" >&2; exit 1; }
patchelf --set-rpath '$ORIGIN/icpml-runtime' "$root/lib/icpml.so"

# the newest glibc symbol version any of them needs: the server's glibc must be at least that
glibc_needed=$(for f in "$root/lib/icpml.so" "$root/lib/icpml-runtime/"*; do objdump -T "$f"; done |
	grep -oE 'GLIBC_[0-9]+\.[0-9]+' | sed 's/GLIBC_//' | sort -uV | tail -1)
{
	echo "name: $name"
	echo "icpml: $version"
	echo "built against: $pg_version"
	echo "built on: $(. /etc/os-release && echo "$PRETTY_NAME"), $(ldd --version | head -1)"
	echo "xgboost: Debian libxgboost-dev $(dpkg-query -W -f='${Version}' libxgboost-dev 2>/dev/null || echo unknown)"
	echo "needs: PostgreSQL 15 on $arch Linux, glibc >= $glibc_needed in the server process"
	echo "bundled: $(cd "$root/lib/icpml-runtime" && ls | tr '\n' ' ')"
	echo "sha256:"
	(cd "$root" && find . -type f ! -name MANIFEST | LC_ALL=C sort | xargs sha256sum | sed 's/^/  /')
} >"$root/MANIFEST"

mkdir -p "$out"
tar -C "$tmp" --owner=0 --group=0 --numeric-owner -czf "$out/$name.tar.gz.tmp" "$name"
mv "$out/$name.tar.gz.tmp" "$out/$name.tar.gz"
echo "dist-portable: $out/$name.tar.gz ($(du -k "$out/$name.tar.gz" | cut -f1) KiB; glibc >= $glibc_needed)"
