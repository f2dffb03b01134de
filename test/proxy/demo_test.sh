#!/usr/bin/env bash
# Runs scripts/demo.sh (with --xds when EWGW_DEMO_XDS=1) against the already-built binaries
# and checks that both backend versions answered through the gateway.
set -euo pipefail
# The xDS demo's cluster is LEAST_REQUEST, as istiod sends it: with one request at a time every
# pick is a fair coin between the two backends, so 6 requests all went to one version about
# once in 32 runs (seen in CI). 12 requests make that about once in 2,000.
args=(-n 12)
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
