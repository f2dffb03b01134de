#!/usr/bin/env bash
# Runs every test: installs what is missing, builds the release preset and runs its tests
# (unit, integration, benchmark smoke runs), then does the same under AddressSanitizer and
# UndefinedBehaviorSanitizer.
#
#   scripts/test.sh             everything
#   scripts/test.sh --no-asan   release build only (quicker local loop)
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
asan=1
for a in "$@"; do
  case "$a" in
    --no-asan) asan=0 ;;
    *) echo "usage: $0 [--no-asan]" >&2; exit 2 ;;
  esac
done

scripts/setup.sh

# ccache keys on the working directory when compiling with -g; a fresh clone (as CI uses) would
# miss every entry. Relative paths make the cache shareable between clones.
export CCACHE_BASEDIR="${CCACHE_BASEDIR:-$root}"
export CCACHE_NOHASHDIR="${CCACHE_NOHASHDIR:-1}"

run_preset() {
  local preset="$1"
  echo "== $(date -u +%T) $preset: configure and build"
  cmake --preset "$preset" >/dev/null
  cmake --build --preset "$preset"
  echo "== $(date -u +%T) $preset: test"
  ctest --preset "$preset"
  echo "== $(date -u +%T) $preset: done"
}

run_preset release
if ((asan)); then
  run_preset asan
fi
