#!/usr/bin/env bash
# Builds what is needed (first run: installs packages, fetches protos, compiles) and runs the
# demo: ewgw on demo/bootstrap.yaml (an Istio-shaped 15443 AUTO_PASSTHROUGH listener) in front
# of two TLS backends, helloworld v1 and v2, and a client loop that opens mTLS connections
# through the gateway the way a remote sidecar would (SNI outbound_.5000_._.helloworld...,
# ALPN istio-http/1.1) and prints which version answered.
#
#   scripts/demo.sh            10 requests, then stop
#   scripts/demo.sh -n 50      50 requests
#   scripts/demo.sh --forever  until Ctrl-C
#   scripts/demo.sh --xds      the same, but ewgw takes its configuration over xDS from the
#                              bundled test control plane (ewgw-test-control-plane on
#                              127.0.0.1:15010, istiod-shaped resources) instead of a file
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
count=10
xds=0
while (($#)); do
  case "$1" in
    -n) count="$2"; shift 2 ;;
    --forever) count=0; shift ;;
    --xds) xds=1; shift ;;
    *) echo "usage: $0 [-n COUNT | --forever] [--xds]" >&2; exit 2 ;;
  esac
done

if [[ "${EWGW_DEMO_SKIP_BUILD:-0}" != 1 ]]; then
  "$root/scripts/setup.sh"
  cmake --preset release -S "$root" >/dev/null
  cmake --build --preset release --target ewgw ewgw-demo-backend ewgw-demo-certs ewgw-test-control-plane
fi
bin="${EWGW_BUILD_DIR:-$root/build/release}"
run="$root/demo/run"
sni="outbound_.5000_._.helloworld.sample.svc.cluster.local"
mkdir -p "$run"

pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap cleanup EXIT INT TERM

"$bin/test/support/ewgw-demo-certs" "$run/certs" "$sni" "outbound_.5000_.v1_.helloworld.sample.svc.cluster.local" >/dev/null

"$bin/test/support/ewgw-demo-backend" --port 15101 --cert-dir "$run/certs" --name helloworld-v1 --version v1 \
  --require-client-cert >"$run/backend-v1.log" 2>&1 &
pids+=($!)
"$bin/test/support/ewgw-demo-backend" --port 15102 --cert-dir "$run/certs" --name helloworld-v2 --version v2 \
  --require-client-cert >"$run/backend-v2.log" 2>&1 &
pids+=($!)
if ((xds)); then
  # The control plane serves what istiod would send this gateway: an SNI-DNAT EDS cluster per
  # service (endpoints: the backends) and the 15443 listener with one chain per service.
  "$bin/test/xds/ewgw-test-control-plane" --port 15010 --listener-port 15443 \
    --service "$sni=15101,15102" --service "outbound_.5000_.v1_.helloworld.sample.svc.cluster.local=15101" \
    >"$run/control-plane.log" 2>&1 &
  pids+=($!)
  config="$root/demo/xds-bootstrap.yaml"
else
  config="$root/demo/bootstrap.yaml"
fi
"$bin/proxy/ewgw" --config "$config" --concurrency 2 >"$run/ewgw.log" 2>&1 &
pids+=($!)

# Wait until the gateway and both backends accept connections.
for port in 15443 15101 15102; do
  for _ in $(seq 1 100); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then break; fi
    sleep 0.05
  done
done
if ((xds)); then
  echo "ewgw is listening on 127.0.0.1:15443, configured over xDS by the test control plane on 127.0.0.1:15010 (logs: demo/run/)"
else
  echo "ewgw is listening on 127.0.0.1:15443 (log: demo/run/ewgw.log)"
fi
echo "client: openssl s_client, SNI $sni, ALPN istio-http/1.1, client certificate; backends verify it"

request() {
  printf 'GET /hello HTTP/1.1\r\nHost: helloworld.sample:5000\r\nConnection: close\r\n\r\n' |
    openssl s_client -quiet -connect 127.0.0.1:15443 -servername "$sni" -alpn istio-http/1.1 \
      -CAfile "$run/certs/root.crt" -cert "$run/certs/client.crt" -cert_chain "$run/certs/client.crt" -key "$run/certs/client.key" \
      -verify_return_error -verify_hostname "$sni" 2>/dev/null | grep -a "Hello version" || echo "request failed"
}

i=0
while ((count == 0 || i < count)); do
  request
  i=$((i + 1))
  sleep 0.2
done
