#!/usr/bin/env bash
# SNI-passthrough benchmark: ewgw vs HAProxy vs nginx (stream + ssl_preread), same machine, same
# run, same routing, one worker each. Reports ratios; see bench/passthrough/README.md.
#
#   bench/passthrough/run.sh [--quick] [--rounds N] [--proxies "ewgw haproxy nginx"] [--no-pin]
#                            [--no-build] [--no-install] [--settle SEC]
#
# Raw RESULT lines go to bench/passthrough/results/last-run.txt, the table to last-table.txt.
set -euo pipefail

usage() {
  sed -n '2,8p' "$0" | sed 's/^# \{0,1\}//'
  cat <<'EOF'

  --quick          smoke run: ~3 s per mode, small concurrency, 1000 idle connections (< 2 min)
  --rounds N       repeat everything N times, rotating the proxy order each round; the table
                   shows the median over rounds (default: 1)
  --proxies LIST   subset/order of proxies to run (default: "ewgw haproxy nginx")
  --no-pin         do not pin the proxy to CPU 1 and loadgen+backend to CPU 0
  --no-build       use the existing build/release binaries
  --no-install     fail instead of installing haproxy/nginx with apt-get
  --settle SEC     before each proxy's rate runs, wait up to SEC s until fewer than 2000
                   TIME_WAIT sockets are left from earlier runs (default: 0 = do not wait)
EOF
}

QUICK=0
ROUNDS=1
PROXIES="ewgw haproxy nginx"
PIN=1
BUILD=1
INSTALL=1
SETTLE=0
while (($#)); do
  case "$1" in
    --quick) QUICK=1 ;;
    --rounds) ROUNDS="$2"; shift ;;
    --proxies) PROXIES="$2"; shift ;;
    --no-pin) PIN=0 ;;
    --no-build) BUILD=0 ;;
    --no-install) INSTALL=0 ;;
    --settle) SETTLE="$2"; shift ;;
    -h|--help) usage; exit 0 ;;
    *) echo "run.sh: unknown argument '$1'" >&2; usage >&2; exit 2 ;;
  esac
  shift
done

[[ "$ROUNDS" =~ ^[1-9][0-9]*$ ]] || { echo "run.sh: --rounds needs a positive integer" >&2; exit 2; }

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
BIN="$ROOT/build/release"
EWGW="$BIN/proxy/ewgw"
LOADGEN="$BIN/bench/passthrough/ewgw-loadgen"
BACKEND="$BIN/bench/passthrough/ewgw-bench-backend"
RESULTS="$ROOT/bench/passthrough/results"
RAW="$RESULTS/last-run.txt"
TABLE="$RESULTS/last-table.txt"

SNI="outbound_.8080_._.echo.bench.svc.cluster.local"
UNKNOWN_SNI="outbound_.8080_._.unknown.bench.svc.cluster.local"
ALPN="istio"

if ((QUICK)); then
  RATE_C=16; RATE_S=3; LAT_S=2; TPUT_K=4; TPUT_S=3; IDLE_K=1000; IDLE_HOLD=3; REQ_BYTES=1024
else
  RATE_C=50; RATE_S=10; LAT_S=5; TPUT_K=8; TPUT_S=10; IDLE_K=5000; IDLE_HOLD=6; REQ_BYTES=1024
fi

log() { printf '[run.sh %(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
die() { log "error: $*"; exit 1; }

# --- processes and cleanup -------------------------------------------------------------------

WORK="$(mktemp -d /tmp/ewgw-bench.XXXXXX)"
STARTED_PIDS=()  # every process this script started and may still have to stop

stop_pid() {  # stop_pid PID...: TERM, up to 5 s, then KILL
  local pid left=()
  for pid in "$@"; do
    if kill -0 "$pid" 2>/dev/null; then kill -TERM "$pid" 2>/dev/null || true; left+=("$pid"); fi
  done
  local i
  for ((i = 0; i < 50 && ${#left[@]} > 0; i++)); do
    local still=()
    for pid in "${left[@]}"; do kill -0 "$pid" 2>/dev/null && still+=("$pid"); done
    left=("${still[@]+"${still[@]}"}")
    ((${#left[@]})) && sleep 0.1
  done
  for pid in "${left[@]+"${left[@]}"}"; do kill -KILL "$pid" 2>/dev/null || true; done
  for pid in "$@"; do wait "$pid" 2>/dev/null || true; done
}

cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  ((${#STARTED_PIDS[@]})) && stop_pid "${STARTED_PIDS[@]}"
  [[ -n "${POLICY_RC_CREATED:-}" ]] && rm -f /usr/sbin/policy-rc.d
  rm -rf "$WORK"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# --- build -----------------------------------------------------------------------------------

if ((BUILD)); then
  log "building ewgw, ewgw-loadgen, ewgw-bench-backend (release preset)"
  (cd "$ROOT" && cmake --preset release >"$WORK/cmake-configure.log" 2>&1) || { cat "$WORK/cmake-configure.log" >&2; die "cmake --preset release failed"; }
  (cd "$ROOT" && cmake --build --preset release --target ewgw ewgw-loadgen ewgw-bench-backend) >&2 || die "build failed"
fi
for b in "$EWGW" "$LOADGEN" "$BACKEND"; do [[ -x "$b" ]] || die "missing $b (run without --no-build)"; done

# --- HAProxy and nginx -----------------------------------------------------------------------

NGINX_STREAM_MODULE=""
find_nginx_stream() {
  NGINX_STREAM_MODULE=""
  command -v nginx >/dev/null 2>&1 || [[ -x /usr/sbin/nginx ]] || return 1
  local v; v="$( (nginx -V || /usr/sbin/nginx -V) 2>&1)"
  if grep -q -- '--with-stream\( \|$\)' <<<"$v" && grep -q -- 'stream_ssl_preread' <<<"$v"; then
    return 0  # built in
  fi
  local f
  for f in /usr/lib/nginx/modules/ngx_stream_module.so /usr/share/nginx/modules/ngx_stream_module.so \
           /usr/lib64/nginx/modules/ngx_stream_module.so; do
    [[ -f "$f" ]] && { NGINX_STREAM_MODULE="$f"; return 0; }
  done
  # Debian's modules-available/*.conf holds the load_module line.
  f="$(grep -ho 'load_module [^;]*ngx_stream_module.so' /usr/share/nginx/modules-available/*.conf 2>/dev/null | head -1 | awk '{print $2}')"
  [[ -n "$f" && -f "$f" ]] && { NGINX_STREAM_MODULE="$f"; return 0; }
  return 1
}

have_proxies() {
  local ok=0
  [[ " $PROXIES " == *" haproxy "* ]] && ! command -v haproxy >/dev/null 2>&1 && [[ ! -x /usr/sbin/haproxy ]] && ok=1
  [[ " $PROXIES " == *" nginx "* ]] && ! find_nginx_stream && ok=1
  return $ok
}

stop_packaged_service() {  # the packages' own services must not keep running
  local svc=$1
  if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet "$svc" 2>/dev/null; then
    log "stopping and disabling the packaged $svc service"
    systemctl stop "$svc" || true
    systemctl disable "$svc" >/dev/null 2>&1 || true
  elif command -v service >/dev/null 2>&1 && service "$svc" status >/dev/null 2>&1; then
    log "stopping the packaged $svc service"
    service "$svc" stop || true
  fi
}

install_proxies() {
  local pkgs=()
  [[ " $PROXIES " == *" haproxy "* ]] && pkgs+=(haproxy)
  [[ " $PROXIES " == *" nginx "* ]] && pkgs+=(nginx libnginx-mod-stream)
  ((${#pkgs[@]})) || return 0
  ((INSTALL)) || die "haproxy/nginx (with the stream module) missing and --no-install given"
  local sudo=()
  ((EUID == 0)) || sudo=(sudo)
  # Keep the packaged services from starting during installation.
  if [[ ! -e /usr/sbin/policy-rc.d ]]; then
    printf '#!/bin/sh\nexit 101\n' | "${sudo[@]}" tee /usr/sbin/policy-rc.d >/dev/null
    "${sudo[@]}" chmod 755 /usr/sbin/policy-rc.d
    POLICY_RC_CREATED=1
  fi
  log "installing ${pkgs[*]} with apt-get"
  if ! "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${pkgs[@]}" >"$WORK/apt.log" 2>&1; then
    log "apt-get install failed; running apt-get update once and retrying"
    "${sudo[@]}" apt-get update -q >>"$WORK/apt.log" 2>&1 || true
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${pkgs[@]}" >>"$WORK/apt.log" 2>&1 ||
      { tail -20 "$WORK/apt.log" >&2; die "apt-get install ${pkgs[*]} failed"; }
  fi
  if [[ -n "${POLICY_RC_CREATED:-}" ]]; then "${sudo[@]}" rm -f /usr/sbin/policy-rc.d; POLICY_RC_CREATED=""; fi
  stop_packaged_service haproxy
  stop_packaged_service nginx
}

if ! have_proxies; then install_proxies; fi
have_proxies || die "haproxy or nginx's stream module still missing after installation"
HAPROXY_BIN="$(command -v haproxy || echo /usr/sbin/haproxy)"
NGINX_BIN="$(command -v nginx || echo /usr/sbin/nginx)"

# --- machine setup ---------------------------------------------------------------------------

ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
FD_LIMIT="$(ulimit -n)"
if ((FD_LIMIT < 2 * IDLE_K + 1000)); then
  IDLE_K=$(((FD_LIMIT - 1000) / 2))
  log "open-file limit $FD_LIMIT: idle connections reduced to $IDLE_K"
fi

CLIENT_PIN=()
PROXY_PIN=()
if ((PIN)) && command -v taskset >/dev/null 2>&1 && (($(nproc) >= 2)); then
  CLIENT_PIN=(taskset -c 0)
  PROXY_PIN=(taskset -c 1)
  PIN_NOTE="proxy pinned to CPU 1; loadgen and backend pinned to CPU 0"
else
  PIN_NOTE="no CPU pinning"
fi
CLK_TCK="$(getconf CLK_TCK)"

free_port() {  # free_port START: first port >= START with no TCP listener
  local p=$1
  while ss -Hltn "sport = :$p" 2>/dev/null | grep -q .; do p=$((p + 1)); done
  echo "$p"
}

mkdir -p "$RESULTS"
: >"$RAW"
{
  echo "# ewgw passthrough benchmark $(date -u +%Y-%m-%dT%H:%M:%SZ) quick=$QUICK rounds=$ROUNDS"
  echo "# ewgw $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '?')$(git -C "$ROOT" diff --quiet HEAD 2>/dev/null || echo '+dirty')"
  [[ " $PROXIES " == *" haproxy "* ]] && echo "# $("$HAPROXY_BIN" -v 2>&1 | head -1)"
  [[ " $PROXIES " == *" nginx "* ]] && echo "# $("$NGINX_BIN" -v 2>&1 | head -1)"
  echo "# $(nproc) CPUs, $(uname -r), $PIN_NOTE, fd limit $FD_LIMIT"
  echo "# load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
} >>"$RAW"

# --- backend ---------------------------------------------------------------------------------

"${CLIENT_PIN[@]}" "$BACKEND" --port 0 >"$WORK/backend.out" 2>"$WORK/backend.err" &
BACKEND_PID=$!
STARTED_PIDS+=("$BACKEND_PID")
for _ in $(seq 50); do grep -q '^port ' "$WORK/backend.out" 2>/dev/null && break; sleep 0.1; done
BACKEND_PORT="$(awk '/^port /{print $2}' "$WORK/backend.out")"
[[ -n "$BACKEND_PORT" ]] || die "echo backend did not start: $(cat "$WORK/backend.err")"
log "echo backend on 127.0.0.1:$BACKEND_PORT"

# --- proxy configurations --------------------------------------------------------------------

write_ewgw_config() {  # PORT DIR
  cat >"$2/ewgw.yaml" <<EOF
# Istio east-west gateway shape (demo/bootstrap.yaml): tls_inspector, one filter chain matched
# by SNI and Istio's ALPNs, tcp_proxy to a STATIC cluster. Other SNIs match no chain: closed.
node: {id: ewgw-bench, cluster: ewgw-bench}
static_resources:
  listeners:
  - name: bench_passthrough
    address:
      socket_address: {address: 127.0.0.1, port_value: $1}
    listener_filters:
    - name: envoy.filters.listener.tls_inspector
      typed_config:
        "@type": type.googleapis.com/envoy.extensions.filters.listener.tls_inspector.v3.TlsInspector
    listener_filters_timeout: 5s
    filter_chains:
    - filter_chain_match:
        server_names: [$SNI]
        application_protocols: [istio, istio-peer-exchange, istio-http/1.0, istio-http/1.1, istio-h2]
      filters:
      - name: envoy.filters.network.tcp_proxy
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy
          stat_prefix: $SNI
          cluster: $SNI
          idle_timeout: 3600s
  clusters:
  - name: $SNI
    type: STATIC
    connect_timeout: 5s
    # Envoy's default of 1024 upstream connections would cut the idle test short.
    circuit_breakers:
      thresholds:
      - max_connections: 1000000
    load_assignment:
      cluster_name: $SNI
      endpoints:
      - lb_endpoints:
        - endpoint:
            address:
              socket_address: {address: 127.0.0.1, port_value: $BACKEND_PORT}
EOF
}

write_haproxy_config() {  # PORT DIR
  # Each proxied connection takes two sockets; stay inside the open-file limit.
  local maxconn=$(((FD_LIMIT - 200) / 2))
  cat >"$2/haproxy.cfg" <<EOF
global
  nbthread 1
  maxconn $maxconn
  # no "log" line: logging is off

defaults
  mode tcp
  timeout connect 5s
  timeout client 1h
  timeout server 1h

frontend passthrough
  bind 127.0.0.1:$1
  tcp-request inspect-delay 5s
  tcp-request content accept if { req_ssl_hello_type 1 }
  use_backend echo if { req_ssl_sni -i $SNI }
  # no default_backend: any other SNI is closed

backend echo
  server echo1 127.0.0.1:$BACKEND_PORT
EOF
}

write_nginx_config() {  # PORT DIR
  local load=""
  [[ -n "$NGINX_STREAM_MODULE" ]] && load="load_module $NGINX_STREAM_MODULE;"
  local conns=$((2 * IDLE_K + 1024))
  cat >"$2/nginx.conf" <<EOF
$load
daemon off;
master_process on;
worker_processes 1;
worker_rlimit_nofile $FD_LIMIT;
pid $2/nginx.pid;
error_log $2/nginx-error.log warn;

events {
  worker_connections $conns;
}

stream {
  upstream echo {
    server 127.0.0.1:$BACKEND_PORT;
  }
  # Unknown SNI -> empty upstream -> nginx closes the connection.
  map \$ssl_preread_server_name \$up {
    $SNI echo;
    default "";
  }
  server {
    listen 127.0.0.1:$1;
    ssl_preread on;
    preread_timeout 5s;
    proxy_connect_timeout 5s;
    proxy_timeout 1h;
    proxy_pass \$up;
  }
}
EOF
}

# --- measurement helpers ---------------------------------------------------------------------

PROXY_PIDS=()  # processes of the proxy under test (nginx: master and worker)

refresh_proxy_pids() {  # main PID plus its children (nginx workers)
  local main=$1
  PROXY_PIDS=("$main")
  local c
  for c in $(cat /proc/"$main"/task/*/children 2>/dev/null); do PROXY_PIDS+=("$c"); done
}

rss_kib() {  # sum of VmRSS over PROXY_PIDS
  local total=0 pid v
  for pid in "${PROXY_PIDS[@]}"; do
    v="$(awk '/^VmRSS:/{print $2}' /proc/"$pid"/status 2>/dev/null || true)"
    total=$((total + ${v:-0}))
  done
  echo "$total"
}

cpu_ticks() {  # utime+stime (all threads) summed over PROXY_PIDS
  local total=0 pid f
  for pid in "${PROXY_PIDS[@]}"; do
    # Fields after the ")" of the command name: utime and stime are the 12th and 13th.
    f="$(sed 's/.*) //' /proc/"$pid"/stat 2>/dev/null | awk '{print $12 + $13}' || true)"
    total=$((total + ${f:-0}))
  done
  echo "$total"
}

timewait_count() { ss -Htan state time-wait 2>/dev/null | wc -l; }

# record RUN LINE [extra fields]: RESULT line with the run name in front
record() {
  local run=$1 line=$2 extra=${3:-}
  if [[ "$line" != RESULT* ]]; then log "$NAME: no RESULT line for $run"; FAILED+=("$NAME: $run produced no result"); return 0; fi
  line="${line#RESULT }"
  echo "RESULT run=$run round=$ROUND $line${extra:+ $extra}" | tee -a "$RAW" >&2
}

loadgen() { "${CLIENT_PIN[@]}" "$LOADGEN" --port "$PORT" --sni "$SNI" --alpn "$ALPN" --label "$NAME" "$@"; }

# Runs one loadgen mode and records its RESULT line plus the proxy's CPU use while it ran.
measured_run() {  # RUN loadgen-args...
  local run=$1; shift
  local t0 c0 t1 c1 out rc=0 tw
  tw="$(timewait_count)"
  t0="$(date +%s.%N)"; c0="$(cpu_ticks)"
  out="$(loadgen "$@" 2>"$WORK/$NAME-$run.err")" || rc=$?
  t1="$(date +%s.%N)"; c1="$(cpu_ticks)"
  local line; line="$(grep '^RESULT' <<<"$out" | tail -1)"
  if [[ -z "$line" ]]; then
    log "$NAME: loadgen $run produced no result (exit $rc): $(tail -3 "$WORK/$NAME-$run.err")"
    return 0
  fi
  [[ -s "$WORK/$NAME-$run.err" ]] && log "$NAME $run: $(head -5 "$WORK/$NAME-$run.err" | tr '\n' ' ')"
  local cpu_s wall per=""
  cpu_s="$(awk -v a="$c0" -v b="$c1" -v t="$CLK_TCK" 'BEGIN{printf "%.2f", (b - a) / t}')"
  wall="$(awk -v a="$t0" -v b="$t1" 'BEGIN{printf "%.2f", b - a}')"
  # CPU per unit of work: per completed connection (rate), per 10^9 echoed bytes (throughput).
  # The CPU time covers the whole loadgen run, a few ms more than its measured window.
  local n b
  n="$(sed -n 's/.* completed=\([0-9]*\).*/\1/p' <<<"$line")"
  b="$(sed -n 's/.* echoed_bytes=\([0-9]*\).*/\1/p' <<<"$line")"
  [[ -n "$n" ]] && per="$(awk -v c="$cpu_s" -v n="$n" 'BEGIN{ if (n > 0) printf " proxy_cpu_us_per_conn=%.1f", c * 1e6 / n }')"
  [[ -n "$b" ]] && per="$(awk -v c="$cpu_s" -v b="$b" 'BEGIN{ if (b > 0) printf " proxy_cpu_ms_per_gb=%.0f", c * 1e3 / (b / 1e9) }')"
  record "$run" "$line" "timewait_at_start=$tw proxy_cpu_s=$cpu_s wall_s=$wall proxy_cpu_pct=$(awk -v c="$cpu_s" -v w="$wall" 'BEGIN{printf "%.0f", 100 * c / w}')$per"
}

idle_run() {
  local before out hold_line during established
  sleep 0.5
  before="$(rss_kib)"
  loadgen --mode idle --connections "$IDLE_K" --hold "$IDLE_HOLD" >"$WORK/$NAME-idle.out" 2>"$WORK/$NAME-idle.err" &
  local lg=$!
  STARTED_PIDS+=("$lg")
  # Wait for "holding" (every connection routed, upstream connected, hello echoed).
  local waited=0
  until grep -q '^holding' "$WORK/$NAME-idle.out" 2>/dev/null; do
    kill -0 "$lg" 2>/dev/null || break
    sleep 0.1
    waited=$((waited + 1))
    ((waited < 1500)) || break
  done
  sleep 1  # let the proxy finish any work queued behind the last echo
  during="$(rss_kib)"
  wait "$lg" || true
  hold_line="$(grep '^RESULT' "$WORK/$NAME-idle.out" | tail -1 || true)"
  [[ -s "$WORK/$NAME-idle.err" ]] && log "$NAME idle: $(head -5 "$WORK/$NAME-idle.err" | tr '\n' ' ')"
  if [[ -z "$hold_line" ]]; then log "$NAME: idle run produced no result"; return 0; fi
  established="$(sed -n 's/.* established=\([0-9]*\).*/\1/p' <<<"$hold_line")"
  local per="n/a"
  ((established > 0)) && per="$(awk -v b="$before" -v d="$during" -v n="$established" 'BEGIN{printf "%.2f", (d - b) / n}')"
  record idle "$hold_line" "rss_before_kib=$before rss_hold_kib=$during kib_per_conn=$per rss_before_mib=$(awk -v k="$before" 'BEGIN{printf "%.1f", k / 1024}')"
}

settle_timewait() {
  ((SETTLE > 0)) || return 0
  local start=$SECONDS n
  n="$(timewait_count)"
  while ((n > 2000 && SECONDS - start < SETTLE)); do sleep 2; n="$(timewait_count)"; done
  ((SECONDS - start > 0)) && log "waited $((SECONDS - start)) s for TIME_WAIT sockets to expire ($n left)"
  return 0
}

# --- the runs --------------------------------------------------------------------------------

FAILED=()
port_base=25443
read -r -a PROXY_LIST <<<"$PROXIES"
ORDER=()
for ((ROUND = 1; ROUND <= ROUNDS; ROUND++)); do
  for ((i = 0; i < ${#PROXY_LIST[@]}; i++)); do
    ORDER+=("$ROUND:${PROXY_LIST[$(((i + ROUND - 1) % ${#PROXY_LIST[@]}))]}")
  done
done
for entry in "${ORDER[@]}"; do
  ROUND="${entry%%:*}"
  NAME="${entry#*:}"
  ((ROUNDS > 1)) && log "round $ROUND of $ROUNDS: $NAME"
  PORT="$(free_port "$port_base")"
  port_base=$((PORT + 1))
  dir="$WORK/$NAME-$ROUND"
  mkdir -p "$dir"
  case "$NAME" in
    ewgw)
      write_ewgw_config "$PORT" "$dir"
      "${PROXY_PIN[@]}" "$EWGW" --config "$dir/ewgw.yaml" --concurrency 1 >"$dir/out.log" 2>&1 &
      ;;
    haproxy)
      write_haproxy_config "$PORT" "$dir"
      "$HAPROXY_BIN" -c -q -f "$dir/haproxy.cfg" >"$dir/check.log" 2>&1 || { cat "$dir/check.log" >&2; die "haproxy rejected its config"; }
      "${PROXY_PIN[@]}" "$HAPROXY_BIN" -db -f "$dir/haproxy.cfg" >"$dir/out.log" 2>&1 &
      ;;
    nginx)
      write_nginx_config "$PORT" "$dir"
      "${PROXY_PIN[@]}" "$NGINX_BIN" -p "$dir" -c "$dir/nginx.conf" -e "$dir/nginx-error.log" >"$dir/out.log" 2>&1 &
      ;;
    *) die "unknown proxy '$NAME' (ewgw, haproxy, nginx)" ;;
  esac
  MAIN_PID=$!
  STARTED_PIDS+=("$MAIN_PID")
  log "$NAME: started (pid $MAIN_PID) on 127.0.0.1:$PORT"

  # Ready when the configured SNI is echoed through it.
  ready=0
  for _ in $(seq 100); do
    kill -0 "$MAIN_PID" 2>/dev/null || break
    if loadgen --mode check --expect echo --connect-timeout 0.5 --io-timeout 1 >/dev/null 2>&1; then ready=1; break; fi
    sleep 0.1
  done
  if ((!ready)); then
    log "$NAME did not route the benchmark SNI; its output:"; tail -20 "$dir/out.log" >&2 || true
    [[ -f "$dir/nginx-error.log" ]] && tail -20 "$dir/nginx-error.log" >&2
    FAILED+=("$NAME: not ready"); stop_pid "$MAIN_PID"; continue
  fi
  refresh_proxy_pids "$MAIN_PID"
  log "$NAME: processes ${PROXY_PIDS[*]}"

  # Same routing everywhere: the benchmark SNI is echoed, any other SNI is closed.
  record check "$(loadgen --mode check --expect echo 2>/dev/null || true)"
  record check "$(loadgen --mode check --expect close --sni "$UNKNOWN_SNI" --io-timeout 8 2>/dev/null || true)"
  grep -q "^RESULT run=check round=$ROUND mode=check proxy=$NAME .*expect=close .*ok=1" "$RAW" || FAILED+=("$NAME: unknown SNI not closed")

  loadgen --mode rate --concurrency 4 --duration 1 --request-bytes "$REQ_BYTES" >/dev/null 2>&1 || true  # warm-up
  idle_run
  settle_timewait
  measured_run rate --mode rate --concurrency "$RATE_C" --duration "$RATE_S" --request-bytes "$REQ_BYTES"
  measured_run latency --mode rate --concurrency 1 --duration "$LAT_S" --request-bytes "$REQ_BYTES"
  measured_run throughput --mode throughput --connections "$TPUT_K" --duration "$TPUT_S"

  kill -0 "$MAIN_PID" 2>/dev/null || FAILED+=("$NAME: exited during the run")
  stop_pid "${PROXY_PIDS[@]}"
  log "$NAME: stopped"
done

# --- table -----------------------------------------------------------------------------------

val() {  # val RUN PROXY KEY [median|sum|list]: over the rounds (default: median)
  awk -v run="$1" -v proxy="$2" -v key="$3" -v how="${4:-median}" '
    $1 == "RESULT" && $2 == "run=" run {
      p = ""; v = ""
      for (i = 3; i <= NF; i++) {
        split($i, kv, "=")
        if (kv[1] == "proxy") p = kv[2]
        if (kv[1] == key) v = substr($i, length(key) + 2)
      }
      if (p == proxy && v != "" && v != "n/a") vals[n++] = v + 0
    }
    END {
      if (n == 0) exit
      if (how == "sum") { s = 0; for (i = 0; i < n; i++) s += vals[i]; print s; exit }
      if (how == "list") { for (i = 0; i < n; i++) printf "%s%s", (i ? " " : ""), vals[i]; print ""; exit }
      for (i = 1; i < n; i++) { x = vals[i]; for (j = i - 1; j >= 0 && vals[j] > x; j--) vals[j + 1] = vals[j]; vals[j + 1] = x }
      m = (n % 2) ? vals[(n - 1) / 2] : (vals[n / 2 - 1] + vals[n / 2]) / 2
      print m
    }' "$RAW"
}

fmt() {  # integers as they are; otherwise 3 significant digits or more
  awk -v v="$1" 'BEGIN{ if (v == "") exit; if (v == int(v)) printf "%d", v; else if (v >= 100) printf "%.0f", v; else if (v >= 10) printf "%.1f", v; else printf "%.2f", v }'
}

metric() {  # metric PROXY RUN:KEY BETTER: median over rounds; errors are summed
  local p=$1 spec=$2 better=$3
  if [[ "$better" == "0" ]]; then val "${spec%%:*}" "$p" "${spec#*:}" sum; else fmt "$(val "${spec%%:*}" "$p" "${spec#*:}")"; fi
}

ratio() { awk -v a="$1" -v b="$2" 'BEGIN{ if (a != "" && b != "" && b + 0 != 0 && a != "n/a" && b != "n/a") printf "%.2f", a / b; else printf "n/a" }'; }

print_table() {
  local rows=(
    "connections/s (C=$RATE_C)|rate:cps|higher"
    "latency p50 us (C=$RATE_C)|rate:p50_us|lower"
    "latency p99 us (C=$RATE_C)|rate:p99_us|lower"
    "latency p50 us (C=1)|latency:p50_us|lower"
    "latency p99 us (C=1)|latency:p99_us|lower"
    "proxy CPU us/connection|rate:proxy_cpu_us_per_conn|lower"
    "proxy CPU % (rate run)|rate:proxy_cpu_pct|-"
    "throughput MB/s (K=$TPUT_K)|throughput:mbps|higher"
    "proxy CPU ms/GB echoed|throughput:proxy_cpu_ms_per_gb|lower"
    "proxy CPU % (throughput)|throughput:proxy_cpu_pct|-"
    "KiB per idle conn (K=$IDLE_K)|idle:kib_per_conn|lower"
    "RSS before idle run MiB|idle:rss_before_mib|lower"
    "errors (rate C=$RATE_C)|rate:errors|0"
    "errors (rate C=1)|latency:errors|0"
    "errors (throughput)|throughput:errors|0"
    "errors (idle)|idle:errors|0"
  )
  local have_h=0 have_n=0
  [[ " $PROXIES " == *" haproxy "* ]] && have_h=1
  [[ " $PROXIES " == *" nginx "* ]] && have_n=1
  printf '%-32s %10s %10s %10s %14s %12s  %s\n' "metric" "ewgw" "haproxy" "nginx" "ewgw/haproxy" "ewgw/nginx" "better"
  printf '%-32s %10s %10s %10s %14s %12s  %s\n' "------" "----" "-------" "-----" "------------" "----------" "------"
  local row label spec better e h n
  for row in "${rows[@]}"; do
    IFS='|' read -r label spec better <<<"$row"
    e="$(metric ewgw "$spec" "$better")"; h="$(metric haproxy "$spec" "$better")"; n="$(metric nginx "$spec" "$better")"
    local rh="" rn=""
    if [[ "$better" != "0" ]]; then
      ((have_h)) && rh="$(ratio "$e" "$h")"
      ((have_n)) && rn="$(ratio "$e" "$n")"
    fi
    printf '%-32s %10s %10s %10s %14s %12s  %s\n' "$label" "${e:--}" "${h:--}" "${n:--}" "${rh:--}" "${rn:--}" "$better"
  done
  if ((ROUNDS > 1)); then
    echo
    echo "per round (round order rotates; values are ewgw / haproxy / nginx):"
    local key
    for key in "rate:cps" "rate:proxy_cpu_us_per_conn" "latency:p50_us" "throughput:mbps" "idle:kib_per_conn"; do
      printf '  %-28s' "$key"
      for p in ewgw haproxy nginx; do printf ' %-8s [%s]' "$p" "$(val "${key%%:*}" "$p" "${key#*:}" list)"; done
      echo
    done
  fi
  echo
  echo "ratios are ewgw divided by the other proxy: for 'higher' rows > 1 favours ewgw, for 'lower' rows < 1 does."
  echo "KiB per idle conn = (proxy RSS while holding $IDLE_K idle proxied connections - RSS before) / connections;"
  echo "it counts user-space memory only: kernel socket memory is excluded (it is the same for all three)."
  echo "one worker each, $PIN_NOTE; load average at end: $(cut -d' ' -f1-3 /proc/loadavg)."
  echo "compare ratios within one run; absolute numbers vary between runs on a shared VM."
}

{
  echo
  echo "== ewgw passthrough benchmark ($( ((QUICK)) && echo quick || echo default) run$( ((ROUNDS > 1)) && echo ", median of $ROUNDS rounds"); request $REQ_BYTES B + hello; raw: ${RAW#"$ROOT"/}) =="
  print_table
} | tee "$TABLE"

if ((${#FAILED[@]})); then
  printf 'FAILED: %s\n' "${FAILED[@]}" | tee -a "$TABLE" >&2
  exit 1
fi
errors="$(awk '$1 == "RESULT" { for (i = 2; i <= NF; i++) if ($i ~ /^errors=/ && $i != "errors=0") bad = 1 } END { print bad + 0 }' "$RAW")"
if ((errors)); then echo "some runs reported errors; see $RAW" >&2; exit 1; fi
