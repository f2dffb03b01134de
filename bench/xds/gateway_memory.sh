#!/usr/bin/env bash
# gateway_memory.sh: resident memory per SNI cluster of the whole ewgw process, as deployed.
#
# xds_scale_bench measures the configuration structures alone; this measures what a user sees in
# `kubectl top`: the ewgw binary following the bundled test control plane over ADS (Delta by
# default), with its admin server (so the /config_dump store is included), the xDS client's
# counters, gRPC's buffers and the allocator's slack. It runs the gateway twice, against a
# control plane serving SMALL and then LARGE synthetic istiod-shaped services (3 endpoints and a
# 15443 chain each), waits until the gateway is ready and has applied the full state, lets it
# settle, and reports (RSS_large - RSS_small) / (LARGE - SMALL).
#
#   bench/xds/gateway_memory.sh [--clusters 10000] [--small 100] [--sotw] [--concurrency 2] [--no-build]
#                               [--bin BUILD_DIR] [--trace DIR]
#
# --trace DIR runs the large gateway under `heaptrack --raw` (its RSS is then heaptrack's, not
# comparable), stops it with SIGKILL so that its live blocks stay recorded, and prints which
# allocation sites leave free holes between live blocks (bench/xds/heap_holes.py). Needs the
# heaptrack package.
#
# Every port is chosen by the kernel (port 0) and read back from the processes' logs. ctest runs
# it small as a smoke test (label bench); its numbers come from running it directly.
set -euo pipefail

root="$(cd "$(dirname "$0")/../.." && pwd)"
large=10000
small=100
api=DELTA_GRPC
concurrency=2
build=1
bin="$root/build/release"
trace=""
while (($#)); do
  case "$1" in
    --clusters) large="$2"; shift 2 ;;
    --small) small="$2"; shift 2 ;;
    --sotw) api=GRPC; shift ;;
    --concurrency) concurrency="$2"; shift 2 ;;
    --no-build) build=0; shift ;;
    --bin) bin="$2"; build=0; shift 2 ;;
    --trace) trace="$2"; shift 2 ;;
    *) echo "usage: $0 [--clusters N] [--small N] [--sotw] [--concurrency N] [--no-build] [--bin DIR] [--trace DIR]" >&2; exit 2 ;;
  esac
done
if ((build)); then
  (cd "$root" && export CCACHE_BASEDIR="$root" CCACHE_NOHASHDIR=1 &&
    cmake --preset release >/dev/null && cmake --build --preset release --target ewgw ewgw-test-control-plane >/dev/null)
fi

work="$(mktemp -d)"
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

# Waits until `file` has a line matching the sed expression `capture` (which prints the port)
# and prints that port.
port_from_log() {
  local file="$1" capture="$2" port=""
  for _ in $(seq 1 600); do
    port="$(sed -n "$capture" "$file" 2>/dev/null | head -1)"
    [[ -n "$port" ]] && break
    sleep 0.1
  done
  [[ -n "$port" ]] || { echo "no port found in $file:" >&2; cat "$file" >&2; exit 1; }
  echo "$port"
}

# Starts a control plane with $1 services and a gateway following it; prints the gateway's RSS
# in KiB once it serves all of them.
measure() {
  local services="$1" cp_port admin_port cp_pid gw_pid
  "$bin/test/xds/ewgw-test-control-plane" --port 0 --listener-port 0 \
    --synthetic-services "$services" >"$work/cp-$services.log" 2>&1 &
  cp_pid=$!
  pids+=("$cp_pid")
  cp_port="$(port_from_log "$work/cp-$services.log" 's/.*listening on [^:]*:\([0-9]*\).*/\1/p')"
  cat >"$work/bootstrap-$services.yaml" <<EOF
node:
  id: router~127.0.0.1~ewgw-memory.istio-system~istio-system.svc.cluster.local
  cluster: istio-eastwestgateway.istio-system
  metadata: {CLUSTER_ID: cluster2, NETWORK: network2}
admin:
  address: {socket_address: {address: 127.0.0.1, port_value: 0}}
dynamic_resources:
  ads_config:
    api_type: $api
    transport_api_version: V3
    set_node_on_first_message_only: true
    grpc_services:
    - google_grpc: {target_uri: "127.0.0.1:$cp_port", stat_prefix: xds-grpc}
  cds_config: {ads: {}, resource_api_version: V3}
  lds_config: {ads: {}, resource_api_version: V3}
EOF
  local tracing=0
  if [[ -n "$trace" && "$services" == "$large" ]]; then
    tracing=1
    mkdir -p "$trace"
    rm -f "$trace"/ewgw.raw*
    heaptrack --raw -o "$trace/ewgw" "$bin/proxy/ewgw" --config "$work/bootstrap-$services.yaml" \
      --concurrency "$concurrency" >"$work/ewgw-$services.log" 2>&1 &
  else
    "$bin/proxy/ewgw" --config "$work/bootstrap-$services.yaml" --concurrency "$concurrency" \
      >"$work/ewgw-$services.log" 2>&1 &
  fi
  gw_pid=$!
  pids+=("$gw_pid")
  admin_port="$(port_from_log "$work/ewgw-$services.log" 's/.*endpoints=admin.* port=\([0-9]*\).*/\1/p')"
  local active=""
  for _ in $(seq 1 1200); do
    active="$(curl -s "http://127.0.0.1:$admin_port/stats?filter=^cluster_manager.active_clusters$" 2>/dev/null |
      sed -n 's/.*: //p')"
    if [[ -n "$active" ]] && ((active >= services)) &&
      curl -sf "http://127.0.0.1:$admin_port/ready" >/dev/null 2>&1; then
      break
    fi
    sleep 0.1
  done
  if [[ -z "$active" ]] || ((active < services)); then
    echo "the gateway did not apply $services clusters (active: ${active:-none}); see $work/ewgw-$services.log" >&2
    cat "$work/ewgw-$services.log" >&2
    exit 1
  fi
  sleep 3  # let the xDS thread finish acknowledging and the workers go idle
  if ((tracing)); then
    # heaptrack's script runs the gateway as its child: measure and stop the gateway itself.
    local traced
    traced="$(pgrep -f "^$bin/proxy/ewgw --config $work/bootstrap-$services.yaml" | head -1)"
    awk '/^VmRSS/ {print $2}' "/proc/$traced/status"
    kill -9 "$traced"
    wait "$gw_pid" 2>/dev/null || true
  else
    awk '/^VmRSS/ {print $2}' "/proc/$gw_pid/status"
  fi
  kill "$gw_pid" "$cp_pid" 2>/dev/null || true
  wait "$gw_pid" "$cp_pid" 2>/dev/null || true
}

rss_small="$(measure "$small")"
rss_large="$(measure "$large")"
echo "ewgw RSS: $rss_small KiB with $small clusters, $rss_large KiB with $large clusters ($api, $concurrency workers)"
awk -v a="$rss_small" -v b="$rss_large" -v n="$small" -v m="$large" \
  'BEGIN { printf "RSS per SNI cluster (3 endpoints, one chain, admin on): %.0f bytes\n", (b - a) * 1024 / (m - n) }'
if [[ -n "$trace" ]]; then
  echo "(the $large-cluster gateway ran under heaptrack: its RSS above includes heaptrack's own)"
  python3 "$root/bench/xds/heap_holes.py" "$(ls "$trace"/ewgw.raw*)" "$bin/proxy/ewgw" "$large"
fi
