# Shared by test/deploy/image.sh and test/deploy/portable.sh (sourced, not run).
#
# Everything these tests keep between runs lives under one cache directory,
# $ICPML_IMAGE_CACHE (default /var/cache/icpml-test):
#   bookworm-minbase.tar   the debootstrapped Debian 12 root (minbase), as a tar
#   storage/, runroot/     buildah's image store (base images, layer cache)
# Remove the directory to start cold; nothing else on the machine is touched
# (buildah runs with its own --root, so the machine's own image store is not).
set -euo pipefail

cache=${ICPML_IMAGE_CACHE:-/var/cache/icpml-test}
mirror=${ICPML_DEBIAN_MIRROR:-http://deb.debian.org/debian}
base_image=localhost/icpml-test-base:bookworm

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
bah() { buildah --root "$cache/storage" --runroot "$cache/runroot" "$@"; }

# need_tools: install debootstrap and buildah from Debian if they are missing
need_tools() {
  local missing=() p
  for p in debootstrap buildah patchelf rsync git; do
    command -v "$p" >/dev/null 2>&1 || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  if [ "$(id -u)" -ne 0 ]; then
    echo "missing tools; run as root: apt-get install -y ${missing[*]}" >&2
    exit 1
  fi
  say "installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

# image_exists NAME: true when buildah's store under $cache has the image
image_exists() { bah inspect --type image "$1" >/dev/null 2>&1; }

# ensure_base: a Debian 12 minbase image made by debootstrap, no registry pull
ensure_base() {
  mkdir -p "$cache"
  # one run at a time makes the base; a second waits and then finds it
  exec 9>"$cache/.lock"
  flock 9
  if image_exists "$base_image"; then flock -u 9; return 0; fi
  if [ ! -f "$cache/bookworm-minbase.tar" ]; then
    say "debootstrap --variant=minbase bookworm (cached in $cache)"
    local root="$cache/rootfs.tmp"
    rm -rf "$root"
    debootstrap --variant=minbase bookworm "$root" "$mirror" >"$cache/debootstrap.log" 2>&1 \
      || { tail -20 "$cache/debootstrap.log"; exit 1; }
    # the same suites as the official postgres:15-bookworm image
    rm -f "$root/etc/apt/sources.list"
    cat >"$root/etc/apt/sources.list.d/debian.sources" <<SOURCES
Types: deb
URIs: $mirror
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: ${mirror%/debian}/debian-security
Suites: bookworm-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SOURCES
    rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/*
    tar -C "$root" --numeric-owner -cf "$cache/bookworm-minbase.tar.tmp" .
    mv "$cache/bookworm-minbase.tar.tmp" "$cache/bookworm-minbase.tar"
    rm -rf "$root"
  fi
  say "importing the Debian 12 base into buildah ($base_image)"
  local ctr mnt
  ctr=$(bah from scratch)
  mnt=$(bah mount "$ctr")
  tar -C "$mnt" --numeric-owner -xf "$cache/bookworm-minbase.tar"
  bah umount "$ctr" >/dev/null
  bah config --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    --cmd /bin/bash "$ctr"
  bah commit --quiet "$ctr" "$base_image" >/dev/null
  bah rm "$ctr" >/dev/null
  flock -u 9
}

# clean_context DIR: the tracked (and new, unignored) files of the tree, no build products
clean_context() {
  local here=$1 dest=$2
  rm -rf "$dest"; mkdir -p "$dest"
  (cd "$here" && git ls-files -z --cached --others --exclude-standard |
     while IFS= read -r -d '' f; do [ -e "$f" ] && printf '%s\0' "$f"; done |
     tar --null -T - -cf -) | tar -C "$dest" -xf -
}
