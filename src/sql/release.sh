#!/usr/bin/env bash
# The two release steps of CONTRIBUTING.md ("Releasing"), run by make:
#
#   make release VERSION=x.y.z        freeze the version in development
#   make open-version VERSION=x.y.z   start the next one
#
# release: VERSION must be icpml.control's default_version, newer than every
# released version and not released yet; the update script from the previous
# release must exist and hold SQL (or say "no SQL changes" when the install
# script did not change); CHANGELOG.md must have a "## VERSION" heading.  Then
# the built install script is copied to src/sql/released/ and the CHANGELOG
# heading gets today's date.  Nothing is written when a check fails.
#
# open-version: the current default_version must be released; VERSION must be
# newer.  Sets default_version, writes the update script header
# src/sql/updates/icpml--CURRENT--VERSION.sql and a "## VERSION (unreleased)"
# CHANGELOG heading.
#
# Usage (from the top of the tree): src/sql/release.sh release|open-version VERSION BUILT_SCRIPT
set -euo pipefail

ext=icpml
released_dir=src/sql/released
updates_dir=src/sql/updates
control=$ext.control

die() {
  echo "make $action: $1" >&2
  [ -n "${2:-}" ] && echo "  $2" >&2
  exit 1
}

action=${1:-}
version=${2:-}
built=${3:-}
case "$action" in release|open-version) ;; *)
  echo "usage: $0 release|open-version VERSION [BUILT_SCRIPT]" >&2; exit 2 ;;
esac
[ -n "$version" ] || die "no version given" "Run: make $action VERSION=x.y.z"
[[ "$version" =~ ^[0-9]+\.[0-9]+\.[0-9]+$ ]] ||
  die "version \"$version\" is not of the form x.y.z" "Use three numbers, e.g. make $action VERSION=0.5.0"

current=$(sed -n "s/^default_version = '\(.*\)'$/\1/p" "$control")
[ -n "$current" ] || die "no default_version line in $control" "It must read: default_version = 'x.y.z'"

# released versions, oldest first
mapfile -t released < <(ls "$released_dir" 2>/dev/null |
  sed -n "s/^$ext--\([0-9][0-9.]*\)\.sql$/\1/p" | sort -V)
latest=${released[${#released[@]}-1]:-}

newer() { # is $1 strictly newer than $2?
  [ "$1" != "$2" ] && [ "$(printf '%s\n%s\n' "$1" "$2" | sort -V | tail -1)" = "$1" ]
}
is_released() { [ -f "$released_dir/$ext--$1.sql" ]; }

# statements of an SQL script: what is left without comments, blank lines and
# the \echo guard
statements() { grep -v -e '^[[:space:]]*--' -e '^[[:space:]]*$' -e '^\\echo ' "$1" || true; }

if [ "$action" = release ]; then
  ! is_released "$version" ||
    die "$version is already released ($released_dir/$ext--$version.sql exists)" \
        "Start the next version: make open-version VERSION=x.y.z"
  [ -z "$latest" ] || newer "$version" "$latest" ||
    die "$version is not newer than the latest release, $latest" "Versions only go up."
  [ "$version" = "$current" ] ||
    die "$control says default_version = '$current', not '$version'" \
        "Release the version in development (make release VERSION=$current), or open $version first (make open-version VERSION=$version)."
  [ -n "$built" ] && [ -f "$built" ] || die "the install script $built was not built" "Run make first."

  if [ -n "$latest" ]; then
    update="$updates_dir/$ext--$latest--$version.sql"
    [ -f "$update" ] ||
      die "no update script from the previous release: $update is missing" \
          "Write it: every change since $latest, as ALTER EXTENSION icpml UPDATE must apply it (CONTRIBUTING.md, Changing the SQL)."
    if [ -z "$(statements "$update")" ]; then
      # an empty update is right only when the install script did not change
      if ! diff -q <(statements "$released_dir/$ext--$latest.sql") <(statements "$built") >/dev/null; then
        die "$update holds no SQL, but the install script changed since $latest" \
            "Add the changes to it (diff: make update-diff)."
      fi
      grep -qi 'no SQL changes' "$update" ||
        die "$update is the empty placeholder" \
            "The install script did not change since $latest: say so with a line \"-- no SQL changes\" in it."
    fi
  fi

  if [ -f CHANGELOG.md ]; then
    grep -qE "^## $(printf '%s' "$version" | sed 's/\./\\./g')( |$)" CHANGELOG.md ||
      die "CHANGELOG.md has no \"## $version\" heading" "Say what $version changes first."
  fi

  if git rev-parse --git-dir >/dev/null 2>&1; then
    dirty=$(git status --porcelain -- src/sql "$control")
    [ -z "$dirty" ] ||
      die "uncommitted changes in src/sql or $control:" "$(printf '%s\n  ' "$dirty")Commit them first: a release freezes what is committed."
    ! git rev-parse -q --verify "refs/tags/v$version" >/dev/null ||
      die "tag v$version already exists" "Pick the next version."
  fi

  cp "$built" "$released_dir/$ext--$version.sql"
  if [ -f CHANGELOG.md ]; then
    sed -i "s/^## $(printf '%s' "$version" | sed 's/\./\\./g') (unreleased)$/## $version ($(date -u +%Y-%m-%d))/" CHANGELOG.md
  fi
  cat <<EOF
Froze $released_dir/$ext--$version.sql.
Next:
  test/run test
  git add $released_dir/$ext--$version.sql CHANGELOG.md
  git commit -m "Release $version"
  git tag -a v$version -m "icpml $version"
  make open-version VERSION=x.y.z   # when the next change to the SQL comes
EOF
else
  is_released "$current" ||
    die "$current (default_version in $control) is not released yet" \
        "Keep developing $current, or release it first: make release VERSION=$current"
  newer "$version" "$current" ||
    die "$version is not newer than $current" "Versions only go up."
  update="$updates_dir/$ext--$current--$version.sql"
  [ ! -e "$update" ] || die "$update already exists" "Nothing to do, or remove it first."
  sed -i "s/^default_version = '$current'$/default_version = '$version'/" "$control"
  printf '%s\n' "-- icpml $current -> $version" \
    "\\echo Use \"ALTER EXTENSION icpml UPDATE TO '$version'\" to load this file. \\quit" > "$update"
  if [ -f CHANGELOG.md ] && ! grep -qE "^## $(printf '%s' "$version" | sed 's/\./\\./g')( |$)" CHANGELOG.md; then
    sed -i "0,/^## /s//## $version (unreleased)\n\n## /" CHANGELOG.md
  fi
  cat <<EOF
Opened $version: $control says default_version = '$version'; $update is the
(empty) update script every SQL change goes into. expected/00_install.out shows
the version: update it and run test/run test (the upgrade test now also starts
from $current, installed from its frozen script), then commit.
EOF
fi
