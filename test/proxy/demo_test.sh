#!/usr/bin/env bash
# Runs scripts/demo.sh (with --xds when EWGW_DEMO_XDS=1) against the already-built binaries
# and checks that both backend versions answered through the gateway.
set -euo pipefail
args=(-n 6)
if [[ "${EWGW_DEMO_XDS:-0}" == 1 ]]; then args+=(--xds); fi
out="$("$1/scripts/demo.sh" "${args[@]}")"
echo "$out"
grep -q "Hello version: v1, instance: helloworld-v1" <<<"$out"
grep -q "Hello version: v2, instance: helloworld-v2" <<<"$out"
if grep -q "request failed" <<<"$out"; then
  echo "demo_test: a request failed" >&2
  exit 1
fi
echo "demo_test: passed"
