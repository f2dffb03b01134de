#!/usr/bin/env bash
# Fetches the official Envoy xDS API protos (and what they import: cncf/xds, udpa, googleapis,
# protoc-gen-validate) from the npm registry package @grpc/grpc-js-xds, pinned by version and
# verified against its published sha512 integrity hash, into .deps/xds-protos.
#
# Why npm: it is the reachable registry that ships the upstream proto files unmodified under deps/.
# A user with their own checkout can skip this and pass -DEWGW_XDS_PROTO_ROOT=... to CMake
# (a folder containing envoy-api/, xds/, googleapis/, protoc-gen-validate/).
set -euo pipefail

readonly VERSION="1.14.1"
readonly INTEGRITY="sha512-F2mVXwEeMWw1znPUrp+8ykjsIOVnf7Rv+EyIvXOfz73w5tNolCnzokpLkE/d2Ehx30PJmZXqCQdMpx8DcBJohA=="

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
dest="$root/.deps/xds-protos"
stamp="$dest/.version"

if [[ -f "$stamp" && "$(cat "$stamp")" == "$VERSION $INTEGRITY" ]]; then
  exit 0
fi

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
echo "setup: fetching @grpc/grpc-js-xds@$VERSION (xDS protos) from the npm registry"
(cd "$work" && npm pack --silent "@grpc/grpc-js-xds@$VERSION" >/dev/null 2>"$work/npm.err") || {
  cat "$work/npm.err" >&2; echo "setup: npm pack failed" >&2; exit 1; }
tarball="$(ls "$work"/*.tgz)"

actual="sha512-$(openssl dgst -sha512 -binary "$tarball" | openssl base64 -A)"
if [[ "$actual" != "$INTEGRITY" ]]; then
  echo "setup: integrity mismatch for $tarball" >&2
  echo "  expected $INTEGRITY" >&2
  echo "  actual   $actual" >&2
  exit 1
fi

tar -xzf "$tarball" -C "$work"
rm -rf "$dest"
mkdir -p "$dest"
for d in envoy-api xds googleapis protoc-gen-validate; do
  if [[ ! -d "$work/package/deps/$d" ]]; then
    echo "setup: package has no deps/$d" >&2; exit 1
  fi
  cp -r "$work/package/deps/$d" "$dest/$d"
done
echo "$VERSION $INTEGRITY" > "$stamp"
echo "setup: xDS protos in $dest"
