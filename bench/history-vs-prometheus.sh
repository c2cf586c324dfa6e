#!/usr/bin/env bash
# History storage side by side with Prometheus's TSDB blocks, in one run, same samples:
#   1. scrape the release binary at its default config once: that is the default series
#      set of this host (plain text exposition, one line per series);
#   2. generate HOURS (default 24) of those series at INTERVAL (default 5 s, the default
#      collector interval) as OpenMetrics with timestamps (bench/gen_openmetrics.py);
#   3. `comfy-sentinel history import` and `promtool tsdb create-blocks-from openmetrics`
#      on the same file, each timed (hyperfine when installed, RUNS runs, else once);
#   4. bytes per sample on disk (du -sb of data_dir/history and of the block directory,
#      over the sample count) and the ratios;
#   5. RSS holding the day: the sidecar started on the imported data_dir, Prometheus on
#      the blocks (no scrape targets), each measured (VmRSS) once loaded and again after
#      the same query touching every sample (absent_over_time({__name__=~".+"}[1d])).
# Needs: cargo, promtool, prometheus, curl, python3 (hyperfine optional).
# Usage: bench/history-vs-prometheus.sh   (HOURS=24 INTERVAL=5 RUNS=3 to change)
set -euo pipefail
cd "$(dirname "$0")/.."
HOURS=${HOURS:-24}
INTERVAL=${INTERVAL:-5}
RUNS=${RUNS:-3}
PORT=${PORT:-19288}
command -v promtool >/dev/null || { echo "needs promtool" >&2; exit 2; }
TARGET_DIR=${CARGO_TARGET_DIR:-target}
cargo build --release --quiet --bin comfy-sentinel
BIN=$(realpath "$TARGET_DIR/release/comfy-sentinel")
work=$(mktemp -d)
S_PID=; P_PID=
trap 'kill $S_PID $P_PID 2>/dev/null || true; rm -rf "$work"' EXIT

# 1. The default series set: the default config, its data_dir in the work dir.
cat > "$work/run.yaml" <<YAML
data_dir: $work/run-data
YAML
"$BIN" run --config "$work/run.yaml" --listen 127.0.0.1:$PORT 2>"$work/run.log" &
S_PID=$!
for _ in $(seq 1 100); do curl -fsS -o /dev/null "http://127.0.0.1:$PORT/readyz" 2>/dev/null && break; sleep 0.1; done
sleep 6
curl -fsS "http://127.0.0.1:$PORT/metrics" > "$work/scrape.txt"
kill $S_PID; wait $S_PID 2>/dev/null || true

# 2. The day, as OpenMetrics.
python3 bench/gen_openmetrics.py "$work/scrape.txt" "$HOURS" "$INTERVAL" > "$work/day.om"
SAMPLES=$(grep -vc '^#' "$work/day.om")
SERIES=$(grep -v '^#' "$work/scrape.txt" | grep -c . )
echo "series: $SERIES  samples: $SAMPLES  file: $(du -h "$work/day.om" | cut -f1)"

# 3. Import into both, timed.
cat > "$work/imp.yaml" <<YAML
data_dir: $work/imp-data
history:
  retention: $((HOURS + 1))h
  max_bytes: 17179869184
YAML
ours="rm -rf $work/imp-data && $BIN history import --config $work/imp.yaml $work/day.om"
prom="rm -rf $work/blocks && promtool tsdb create-blocks-from openmetrics $work/day.om $work/blocks"
if command -v hyperfine >/dev/null; then
  hyperfine --runs "$RUNS" --export-json "$work/t.json" -n ours "$ours" -n promtool "$prom" >&2
  read -r T_OURS T_PROM < <(python3 -c 'import json,sys; r=json.load(open(sys.argv[1]))["results"]; print(r[0]["mean"], r[1]["mean"])' "$work/t.json")
else
  t0=$(date +%s.%N); bash -c "$ours" >/dev/null 2>&1; t1=$(date +%s.%N)
  bash -c "$prom" >/dev/null; t2=$(date +%s.%N)
  T_OURS=$(echo "$t1 - $t0" | bc); T_PROM=$(echo "$t2 - $t1" | bc)
fi
IMPORT_MSG=$(bash -c "$ours" 2>&1 | tail -1)
echo "$IMPORT_MSG"
MEM_BYTES=$(echo "$IMPORT_MSG" | sed -n 's/.*(\([0-9]*\) bytes of it in memory).*/\1/p')
bash -c "$prom" > "$work/blocks.txt"
# promtool's own count of what it wrote (column 5 of its table).
PSAMPLES=$(awk 'NR>1 {s+=$5} END {print s}' "$work/blocks.txt")

# 4. Bytes per sample on disk.
B_OURS=$(du -sb "$work/imp-data/history" | cut -f1)
B_PROM=$(du -sb "$work/blocks" | cut -f1)
python3 - "$SAMPLES" "$PSAMPLES" "$B_OURS" "$B_PROM" "$T_OURS" "$T_PROM" "$MEM_BYTES" <<'PY'
import sys
n, pn, bo, bp, to, tp, mem = sys.argv[1:]
n, pn, bo, bp, to, tp, mem = int(n), int(pn), int(bo), int(bp), float(to), float(tp), int(mem)
print(f"{'':24}{'comfy-sentinel':>16}{'prometheus':>16}{'ratio':>10}")
print(f"{'samples':24}{n:>16}{pn:>16}")
print(f"{'bytes on disk':24}{bo:>16}{bp:>16}{bo/bp:>10.2f}")
print(f"{'bytes/sample':24}{bo/n:>16.3f}{bp/pn:>16.3f}{(bo/n)/(bp/pn):>10.2f}")
print(f"{'bytes/sample in memory':24}{mem/n:>16.3f}{'-':>16}")
print(f"{'import seconds':24}{to:>16.2f}{tp:>16.2f}{to/tp:>10.2f}")
print(f"{'import samples/s':24}{n/to:>16.0f}{pn/tp:>16.0f}{(n/to)/(pn/tp):>10.2f}")
PY

# 5. RSS holding the day.
command -v prometheus >/dev/null || { echo "no prometheus: RSS not measured" >&2; exit 0; }
cat >> "$work/imp.yaml" <<YAML
query:
  max_samples: 50000000
  timeout: 2m
YAML
rss() { awk '/VmRSS/ {print $2 * 1024}' "/proc/$1/status"; }
Q='absent_over_time({__name__=~".+"}[1d])'
# measure BASE READY PID: once BASE answers on READY (and 5 s more), the RSS of PID
# before and after the query Q and its answer, as IDLE, QUERY and ANS; then stops PID.
measure() {
  for _ in $(seq 1 300); do curl -fsS -o /dev/null "$1$2" 2>/dev/null && break; sleep 0.2; done
  sleep 5
  IDLE=$(rss "$3")
  ANS=$(curl -fsS --get --data-urlencode "query=$Q" "$1/api/v1/query" || echo failed)
  QUERY=$(rss "$3")
  kill "$3"; wait "$3" 2>/dev/null || true
}
"$BIN" run --config "$work/imp.yaml" --listen 127.0.0.1:$PORT 2>"$work/run2.log" &
S_PID=$!
measure "http://127.0.0.1:$PORT" /readyz $S_PID; S_PID=
S_IDLE=$IDLE S_ANS=$ANS S_QUERY=$QUERY
printf 'global: {}\n' > "$work/prom.yml"
prometheus --config.file="$work/prom.yml" --storage.tsdb.path="$work/blocks" \
  --storage.tsdb.retention.time=30d --web.listen-address=127.0.0.1:$((PORT + 1)) \
  >"$work/prom.log" 2>&1 &
P_PID=$!
measure "http://127.0.0.1:$((PORT + 1))" /-/ready $P_PID; P_PID=
P_IDLE=$IDLE P_ANS=$ANS P_QUERY=$QUERY
echo "answers: sidecar $S_ANS"
echo "         prometheus $P_ANS"
python3 - "$S_IDLE" "$P_IDLE" "$S_QUERY" "$P_QUERY" <<'PY'
import sys
si, pi, sq, pq = map(int, sys.argv[1:])
m = 1 << 20
print(f"{'RSS loaded (MiB)':24}{si/m:>16.1f}{pi/m:>16.1f}{si/pi:>10.2f}")
print(f"{'RSS after query (MiB)':24}{sq/m:>16.1f}{pq/m:>16.1f}{sq/pq:>10.2f}")
PY
