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

run_preset() {
  local preset="$1"
  echo "== $preset: configure and build"
  cmake --preset "$preset" >/dev/null
  cmake --build --preset "$preset"
  echo "== $preset: test"
  ctest --preset "$preset"
}

run_preset release
if ((asan)); then
  run_preset asan
fi
