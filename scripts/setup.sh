#!/usr/bin/env bash
# Installs everything ewgw needs to build and test on a fresh Debian 12 machine:
# Debian packages (only those missing) and the pinned official xDS protos from npm.
# Safe to run repeatedly; does nothing when all is present.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/.." && pwd)"

packages=(
  build-essential cmake ninja-build ccache pkg-config git
  libboost-dev libssl-dev openssl
  libgrpc++-dev libgrpc-dev protobuf-compiler protobuf-compiler-grpc libprotobuf-dev libabsl-dev
  prometheus-cpp-dev libyaml-cpp-dev zlib1g-dev
  libgtest-dev libgmock-dev libbenchmark-dev
  nodejs npm
  # Real peers used by the tests: GnuTLS client, curl, and a Prometheus server (with promtool)
  # that scrapes the gateway.
  gnutls-bin curl prometheus
)

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    # A package may be satisfied by a different provider (e.g. npm bundled with nodejs).
    if [[ "$p" == npm ]] && command -v npm >/dev/null; then continue; fi
    if [[ "$p" == nodejs ]] && command -v node >/dev/null; then continue; fi
    missing+=("$p")
  fi
done

if ((${#missing[@]})); then
  echo "setup: installing Debian packages: ${missing[*]}"
  SUDO=""
  if [[ $(id -u) -ne 0 ]]; then SUDO="sudo"; fi
  export DEBIAN_FRONTEND=noninteractive
  # Packages with services (prometheus) must not start them: the tests run their own instances
  # on loopback. A policy-rc.d that denies starts is the Debian way; keep one that exists.
  created_policy=0
  if [[ ! -e /usr/sbin/policy-rc.d ]]; then
    printf '#!/bin/sh\nexit 101\n' | $SUDO tee /usr/sbin/policy-rc.d >/dev/null
    $SUDO chmod +x /usr/sbin/policy-rc.d
    created_policy=1
  fi
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
  if ((created_policy)); then $SUDO rm -f /usr/sbin/policy-rc.d; fi
fi

"$here/fetch-xds-protos.sh"
