#!/usr/bin/env bash
# Load test of POST /api/v1/events against a release build on this machine (loopback only).
#   1. throughput: 1k-event batches back to back (wrk when installed, else ingest_load)
#   2. latency: 1k requests/s of 10-event batches, open loop, p50/p99
#   3. memory: the server's RSS sampled every 5 s during a 60 s run at that rate
# Usage: bench/ingest-load.sh [throughput_seconds=10] [rate_seconds=60]
set -euo pipefail
cd "$(dirname "$0")/.."
T_SECS=${1:-10}
R_SECS=${2:-60}
cargo build --release --quiet --bin comfy-sentinel --example ingest_load
BIN=target/release/comfy-sentinel
LOAD=target/release/examples/ingest_load
WORK=$(mktemp -d)
PORT=${PORT:-19188}
cat > "$WORK/config.yaml" <<YAML
listen: "127.0.0.1:$PORT"
data_dir: "$WORK/data"
log: { level: warn }
ingest:
  rate_limit: { requests_per_second: 0, events_per_second: 0 }
YAML
"$BIN" run --config "$WORK/config.yaml" &
SERVER=$!
# Wait for the sidecar's final flush before its data_dir goes.
trap 'kill $SERVER 2>/dev/null; wait $SERVER 2>/dev/null; rm -rf "$WORK"' EXIT
for _ in $(seq 50); do
  curl -fsS "http://127.0.0.1:$PORT/healthz" >/dev/null 2>&1 && break
  sleep 0.1
done
URL="http://127.0.0.1:$PORT"
"$LOAD" body --batch 1000 > "$WORK/body.json"
echo "== throughput, 1000-event batches, ${T_SECS}s"
if command -v wrk >/dev/null; then
  BODY_FILE="$WORK/body.json" wrk -t1 -c2 -d"${T_SECS}s" --latency -s bench/ingest.lua "$URL/api/v1/events" \
    | tee "$WORK/wrk.txt"
  awk '/Requests\/sec/ { printf "events/s (wrk): %.0f\n", $2 * 1000 }' "$WORK/wrk.txt"
else
  "$LOAD" throughput --url "$URL" --batch 1000 --connections 2 --seconds "$T_SECS"
fi
echo "== latency at 1000 requests/s, 10-event batches, ${R_SECS}s, server RSS every 5 s"
"$LOAD" rate --url "$URL" --batch 10 --rate 1000 --connections 4 --seconds "$R_SECS" --pid "$SERVER"
