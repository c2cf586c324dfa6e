#!/usr/bin/env bash
# Steady-state footprint of comfy-sentinel beside node_exporter, in one run
# (docs/benchmarks.md, "Footprint"): VmRSS, anonymous and file-backed RSS and threads, RUNS
# times. Each run waits SETTLE seconds after start, then for WARM seconds scrapes both
# every second (3 plain, 1 gzip) and sends the sidecar an ingest batch and health probes,
# so the code of a scrape, an ingest, collections and rule evaluations is resident, and
# reads /proc/PID/status 2 s later. Needs: cargo, curl, prometheus-node-exporter.
# Usage: bench/footprint.sh            (RUNS=3 SETTLE=15 WARM=10; BIN=path to skip the build)
# COMFY_SENTINEL_RELEASE_STARTUP_PAGES=0 in the environment measures without the release.
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${RUNS:-3}
SETTLE=${SETTLE:-15}
WARM=${WARM:-10}
S_PORT=${S_PORT:-19288}
N_PORT=${N_PORT:-19101}
command -v prometheus-node-exporter >/dev/null || { echo "needs prometheus-node-exporter" >&2; exit 2; }
if [ -z "${BIN:-}" ]; then
  cargo build --release --quiet --bin comfy-sentinel
  BIN=${CARGO_TARGET_DIR:-target}/release/comfy-sentinel
fi
work=$(mktemp -d)
trap 'kill ${S_PID:-} ${N_PID:-} 2>/dev/null || true; rm -rf "$work"' EXIT
echo "data_dir: $work/data" > "$work/sentinel.yaml"
events='[{"type":"operation","operation":"load_model","duration_seconds":1.2,"overhead_seconds":0.01,"attempts":2,"outcome":"recovered","recovery_seconds":0.3,"persistence_seconds":0.002,"error_class":"transient"},{"type":"heartbeat","name":"nightly-backup","status":"success"}]'
kb() { awk -v k="$2:" '$1 == k { print $2 }' "/proc/$1/status"; }
echo "binary: $(stat -c %s "$BIN") bytes"
printf '%-4s %12s %12s %12s %8s %14s %7s\n' run "VmRSS kB" "anon kB" "file kB" threads "node kB" ratio
for i in $(seq 1 "$RUNS"); do
  rm -rf "$work/data"
  "$BIN" run --config "$work/sentinel.yaml" --listen 127.0.0.1:$S_PORT 2>"$work/sentinel.log" &
  S_PID=$!
  prometheus-node-exporter --web.listen-address=127.0.0.1:$N_PORT >"$work/node.log" 2>&1 &
  N_PID=$!
  sleep "$SETTLE"
  for _ in $(seq 1 "$WARM"); do
    for port in $S_PORT $N_PORT; do
      for _ in 1 2 3; do curl -fsS -o /dev/null "http://127.0.0.1:$port/metrics"; done
      curl -fsS -o /dev/null -H 'Accept-Encoding: gzip' "http://127.0.0.1:$port/metrics"
    done
    curl -fsS -o /dev/null -H 'Content-Type: application/json' -d "$events" \
      "http://127.0.0.1:$S_PORT/api/v1/events"
    curl -fsS -o /dev/null "http://127.0.0.1:$S_PORT/healthz"
    curl -sS -o /dev/null "http://127.0.0.1:$S_PORT/readyz"
    sleep 1
  done
  sleep 2
  s=$(kb $S_PID VmRSS); n=$(kb $N_PID VmRSS)
  printf '%-4s %12s %12s %12s %8s %14s %7s\n' "$i" "$s" "$(kb $S_PID RssAnon)" "$(kb $S_PID RssFile)" \
    "$(kb $S_PID Threads)" "$n" "$(awk -v a="$s" -v b="$n" 'BEGIN { printf "%.2f", a / b }')"
  kill $S_PID $N_PID; wait $S_PID $N_PID 2>/dev/null || true
done
