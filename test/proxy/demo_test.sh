#!/usr/bin/env bash
# Runs scripts/demo.sh against the already-built binaries and checks that both backend
# versions answered through the gateway.
set -euo pipefail
out="$("$1/scripts/demo.sh" -n 6)"
echo "$out"
grep -q "Hello version: v1, instance: helloworld-v1" <<<"$out"
grep -q "Hello version: v2, instance: helloworld-v2" <<<"$out"
if grep -q "request failed" <<<"$out"; then
  echo "demo_test: a request failed" >&2
  exit 1
fi
echo "demo_test: passed"
