#!/usr/bin/env bash
# test/run image: builds docker/Dockerfile with buildah over a Debian 12 made by
# debootstrap (no registry pulls, no daemon), from a clean copy of the tree, then
# starts PostgreSQL inside the image and runs the smoke test (test/deploy/smoke.sql).
# test/run portable: installs the portable tarball (made by the same build's builder
# stage) into a Debian 12 root with Debian's postgresql-15 and pg_cron but no
# libxgboost, and runs the same smoke test there.
# Cache: $ICPML_IMAGE_CACHE (default /var/cache/icpml-test), see lib.sh.
set -euo pipefail
mode=$1
here=$(cd "$(dirname "$0")/../.." && pwd)
source "$here/test/deploy/lib.sh"

t0=$(date +%s)
need_tools
ensure_base

work=$(mktemp -d /tmp/icpml-image.XXXXXX)
ctrs=()
cleanup() {
  local c
  for c in "${ctrs[@]}"; do bah rm "$c" >/dev/null 2>&1 || true; done
  rm -rf "$work"
}
trap cleanup EXIT

# build: the builder stage (it also writes the portable tarball), then the image;
# both are tagged so that pruning leaves their cached layers alone
say "buildah bud docker/Dockerfile over $base_image (clean copy of the tree)"
clean_context "$here" "$work/context"
builder_tag=localhost/icpml-test-builder:latest
tag=localhost/icpml-test:latest
bud() {
  bah bud --isolation chroot --layers --quiet --build-arg BASE_IMAGE="$base_image" \
    -f "$work/context/docker/Dockerfile" "$@" "$work/context" >>"$work/build.log" 2>&1 \
    || { tail -40 "$work/build.log"; echo "image build failed" >&2; exit 1; }
}
bud --target builder -t "$builder_tag"
if [ "$mode" = image ]; then bud -t "$tag"; fi
t_build=$(date +%s)

case "$mode" in
image)
  say "PostgreSQL inside the image: create pg_cron and icpml, score, train, recommend"
  ctr=$(bah from --quiet "$tag"); ctrs+=("$ctr")
  bah copy "$ctr" "$here/test/deploy/smoke.sh" "$here/test/deploy/smoke.sql" /opt/icpml-smoke/ >/dev/null
  bah run --isolation chroot "$ctr" -- sh /opt/icpml-smoke/smoke.sh
  say "image $tag: $(bah images --format '{{.Size}}' "$tag" | head -1)"
  ;;
portable)
  pg_image=localhost/icpml-test-pg15:bookworm
  exec 9>"$cache/.lock"; flock 9
  if ! image_exists "$pg_image"; then
    say "Debian 12 root with Debian's postgresql-15 and pg_cron, no libxgboost ($pg_image, cached)"
    ctr=$(bah from --quiet "$base_image"); ctrs+=("$ctr")
    bah run --isolation chroot "$ctr" -- sh -c '
      set -e; export DEBIAN_FRONTEND=noninteractive
      apt-get update -q >/dev/null
      apt-get install -y -q --no-install-recommends postgresql-common >/dev/null
      sed -ri "s/^#? *create_main_cluster *=.*$/create_main_cluster = false/" /etc/postgresql-common/createcluster.conf
      apt-get install -y -q --no-install-recommends postgresql-15 postgresql-15-cron >/dev/null
      apt-get clean; rm -rf /var/lib/apt/lists/*' >"$work/pg-root.log" 2>&1 || { tail -20 "$work/pg-root.log"; exit 1; }
    bah commit --quiet "$ctr" "$pg_image" >/dev/null
  fi
  flock -u 9

  say "the portable tarball from the builder stage"
  bctr=$(bah from --quiet "$builder_tag"); ctrs+=("$bctr")
  bmnt=$(bah mount "$bctr")
  tarball=$(ls "$bmnt"/dist/icpml-*.tar.gz)
  mkdir -p "$here/dist"
  cp "$tarball" "$here/dist/"
  tarball=$here/dist/$(basename "$tarball")
  bah umount "$bctr" >/dev/null
  echo "$tarball ($(du -k "$tarball" | cut -f1) KiB)"
  tar -xzOf "$tarball" --wildcards '*/MANIFEST' | sed -n '1,7p'

  say "install it into the root without libxgboost, then the smoke test"
  ctr=$(bah from --quiet "$pg_image"); ctrs+=("$ctr")
  bah copy "$ctr" "$tarball" "$here/test/deploy/smoke.sh" "$here/test/deploy/smoke.sql" \
    "$here/test/deploy/nix_layout.sh" /opt/icpml-smoke/ >/dev/null
  bah run --isolation chroot "$ctr" -- sh -c '
    set -e
    if ls /usr/lib/*/libxgboost* /usr/lib/*/libdmlc* /usr/lib/*/libgomp* 2>/dev/null; then
      echo "the root under test has an XGBoost runtime of its own" >&2; exit 1
    fi
    cd /opt/icpml-smoke && tar -xzf icpml-*.tar.gz && rm icpml-*.tar.gz
    sh nix_layout.sh "$(echo /opt/icpml-smoke/icpml-*/)"
    PATH=/usr/lib/postgresql/15/bin:$PATH sh icpml-*/install.sh
    ICPML_SMOKE_MAPS=1 sh /opt/icpml-smoke/smoke.sh /tmp/icpml-smoke
    pkglibdir=$(/usr/lib/postgresql/15/bin/pg_config --pkglibdir)
    echo "libraries the backend mapped (from /proc/PID/maps):"
    grep -oE "/[^ ]*lib(xgboost|dmlc|gomp|stdc\+\+|gcc_s)[^ ]*" /tmp/icpml-smoke/maps | sort -u | sed "s/^/  /"
    for lib in libxgboost.so.0 libdmlc.so.0 libgomp.so.1; do
      grep -q "$pkglibdir/icpml-runtime/$lib" /tmp/icpml-smoke/maps ||
        { echo "$lib was not loaded from $pkglibdir/icpml-runtime" >&2; exit 1; }
    done
    echo "smoke: XGBoost, dmlc and libgomp came from the tarball"'

  say "docker/supabase/Dockerfile with stand-ins: Debian 12 builder, the root above for supabase/postgres"
  sb_tag=localhost/icpml-test-supabase-standin:latest
  bah bud --isolation chroot --layers --quiet --build-arg BUILDER_BASE="$base_image" \
    --build-arg SUPABASE_POSTGRES="$pg_image" -f "$work/context/docker/supabase/Dockerfile" \
    -t "$sb_tag" "$work/context" >>"$work/build.log" 2>&1 \
    || { tail -40 "$work/build.log"; echo "docker/supabase/Dockerfile build failed" >&2; exit 1; }
  ctr=$(bah from --quiet "$sb_tag"); ctrs+=("$ctr")
  bah copy "$ctr" "$here/test/deploy/smoke.sh" "$here/test/deploy/smoke.sql" /opt/icpml-smoke/ >/dev/null
  bah run --isolation chroot "$ctr" -- sh /opt/icpml-smoke/smoke.sh >"$work/smoke-standin.log" 2>&1 \
    || { cat "$work/smoke-standin.log"; exit 1; }
  tail -n 1 "$work/smoke-standin.log"
  ;;
esac
# older builds of these tags, no longer referenced: keeps the cache from growing per run
bah rmi --prune >/dev/null 2>&1 || true
t_end=$(date +%s)
say "$mode: build $((t_build - t0)) s, test $((t_end - t_build)) s, total $((t_end - t0)) s"
