#!/usr/bin/env bash
# Query latency over the history, side by side with Prometheus 2.42 on the same samples:
#   1. the default series set of this host (a scrape of the release binary at its default
#      config), plus one series per metric the shipped dashboards select that this host
#      does not export (no GPU, no ComfyUI here; histograms with six buckets), so that
#      every panel has data; all with instance="bench:9188";
#   2. HOURS (default 24) of them at INTERVAL (default 5 s) as OpenMetrics
#      (bench/gen_openmetrics.py, seeded), imported into both: `comfy-sentinel history
#      import` and `promtool tsdb create-blocks-from openmetrics`;
#   3. a real `prometheus` on the blocks and `comfy-sentinel run` on its data_dir;
#   4. for every distinct panel query of dashboards/*.json ($instance, $gpu, $workflow
#      -> .*, $__rate_interval -> 75s): `query_range` over the whole HOURS at a 60 s step
#      on both, RUNS times each alternately (curl -w time_total), median per side, and the
#      ratio ours/prometheus (< 1: the sidecar is faster). The answers' result counts are
#      printed too, so a panel that selects nothing on one side shows.
# No timing is asserted anywhere. Needs: cargo, promtool, prometheus, python3, curl.
# Usage: bench/history-query-vs-prometheus.sh   (HOURS=24 INTERVAL=5 RUNS=5 to change;
#   BIN=path uses that binary instead of building one; KEEP=dir keeps the generated day
#   (day.om), the queries (queries.txt) and the rows (rows.txt) there, for the engine's
#   own example: cargo run --release -p sentinel-rules --example range_bench)
set -euo pipefail
cd "$(dirname "$0")/.."
HOURS=${HOURS:-24}
INTERVAL=${INTERVAL:-5}
RUNS=${RUNS:-5}
PORT=${PORT:-19289}
PPORT=${PPORT:-19290}
for t in promtool prometheus python3 curl; do
  command -v $t >/dev/null || { echo "needs $t" >&2; exit 2; }
done
TARGET_DIR=${CARGO_TARGET_DIR:-target}
if [ -z "${BIN:-}" ]; then
  cargo build --release --quiet --bin comfy-sentinel
  BIN=$TARGET_DIR/release/comfy-sentinel
fi
BIN=$(realpath "$BIN")
KEEP=${KEEP:-}
work=$(mktemp -d)
S_PID=; P_PID=
trap 'kill $S_PID $P_PID 2>/dev/null || true; rm -rf "$work"' EXIT
wait_url() { for _ in $(seq 1 600); do curl -fsS -o /dev/null "$1" 2>/dev/null && return 0; sleep 0.2; done; echo "not ready: $1" >&2; exit 1; }

# 1. The default series set, then the dashboards' metrics this host lacks.
cat > "$work/run.yaml" <<YAML
data_dir: $work/run-data
YAML
"$BIN" run --config "$work/run.yaml" --listen 127.0.0.1:$PORT 2>"$work/run.log" &
S_PID=$!
wait_url "http://127.0.0.1:$PORT/readyz"
sleep 6
curl -fsS "http://127.0.0.1:$PORT/metrics" | grep -v '^#' | sed -E \
  -e 's/^([a-zA-Z_:][a-zA-Z0-9_:]*)\{/\1{instance="bench:9188",/' \
  -e 's/^([a-zA-Z_:][a-zA-Z0-9_:]*) /\1{instance="bench:9188"} /' > "$work/scrape.txt"
kill $S_PID; wait $S_PID 2>/dev/null || true; S_PID=
python3 - "$work/scrape.txt" dashboards/*.json >> "$work/scrape.txt" <<'PY'
import json, re, sys
have = {re.match(r"[a-zA-Z_:][a-zA-Z0-9_:]*", l).group(0) for l in open(sys.argv[1]) if l.strip()}
names = set()
def walk(v):
    if isinstance(v, dict):
        for k, x in v.items():
            if k == "expr" and isinstance(x, str):
                names.update(re.findall(r"([a-zA-Z_:][a-zA-Z0-9_:]*)\{", x))
            else:
                walk(x)
    elif isinstance(v, list):
        for x in v:
            walk(x)
for f in sys.argv[2:]:
    walk(json.load(open(f)))
for n in sorted(names - have):
    base = 'instance="bench:9188"' + (',gpu="0"' if n.startswith("gpu_") else "")
    if n.endswith("_bucket"):
        for le in ("0.1", "0.5", "1", "5", "30", "+Inf"):
            print(f'{n}{{{base},le="{le}"}} 1')
    else:
        print(f"{n}{{{base}}} 1")
PY
SERIES=$(grep -c . "$work/scrape.txt")

# 2. The day, into both.
python3 bench/gen_openmetrics.py "$work/scrape.txt" "$HOURS" "$INTERVAL" > "$work/day.om"
SAMPLES=$(grep -vc '^#' "$work/day.om")
echo "series: $SERIES  samples: $SAMPLES  file: $(du -h "$work/day.om" | cut -f1)" >&2
cat > "$work/imp.yaml" <<YAML
data_dir: $work/imp-data
collectors:
  system: { enabled: false }
  gpu: { enabled: false }
history:
  retention: $((HOURS + 1))h
  max_bytes: 17179869184
query:
  timeout: 120s
YAML
"$BIN" history import --config "$work/imp.yaml" "$work/day.om" >&2
promtool tsdb create-blocks-from openmetrics "$work/day.om" "$work/prom/data" > /dev/null
END=$(tail -2 "$work/day.om" | head -1 | awk '{print $NF}' | cut -d. -f1)
if [ -n "$KEEP" ]; then mkdir -p "$KEEP"; mv "$work/day.om" "$KEEP/day.om"; else rm -f "$work/day.om"; fi

# 3. Both servers.
printf 'global: {}\n' > "$work/prom/prometheus.yml"
prometheus --config.file="$work/prom/prometheus.yml" --storage.tsdb.path="$work/prom/data" \
  --storage.tsdb.retention.time=30d --web.listen-address=127.0.0.1:$PPORT 2>"$work/prom.log" &
P_PID=$!
"$BIN" run --config "$work/imp.yaml" --listen 127.0.0.1:$PORT 2>"$work/run2.log" &
S_PID=$!
wait_url "http://127.0.0.1:$PPORT/-/ready"
wait_url "http://127.0.0.1:$PORT/readyz"

# 4. Every panel query over the whole range at a 60 s step.
END=$((END / 60 * 60))
START=$((END - HOURS * 3600))
python3 - dashboards/*.json > "$work/queries.txt" <<'PY'
import json, sys
seen = []
def walk(v):
    if isinstance(v, dict):
        for k, x in v.items():
            if k == "expr" and isinstance(x, str):
                for a, b in (("$__rate_interval", "75s"), ("$instance", ".*"), ("$gpu", ".*"), ("$workflow", ".*")):
                    x = x.replace(a, b)
                if x not in seen:
                    seen.append(x)
            else:
                walk(x)
    elif isinstance(v, list):
        for x in v:
            walk(x)
for f in sys.argv[1:]:
    walk(json.load(open(f)))
print("\n".join(seen))
PY
time_one() { # URL QUERY -> seconds (curl time_total) and series count
  curl -sS -o "$work/ans.json" -w '%{time_total}' -G "$1/api/v1/query_range" \
    --data-urlencode "query=$2" -d start=$START -d end=$END -d step=60
}
count() { python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print(len(d["data"]["result"]) if d.get("status")=="success" else "E:"+d.get("errorType",""))' "$work/ans.json"; }
printf '%-10s %-10s %-7s %-6s %-6s %s\n' ours_ms prom_ms ratio n_ours n_prom query
: > "$work/rows.txt"
while IFS= read -r q; do
  [ -n "$q" ] || continue
  to=(); tp=()
  for _ in $(seq 1 "$RUNS"); do
    to+=("$(time_one "http://127.0.0.1:$PORT" "$q")"); no=$(count)
    tp+=("$(time_one "http://127.0.0.1:$PPORT" "$q")"); np=$(count)
  done
  python3 - "$q" "$no" "$np" "${to[*]}" "${tp[*]}" >> "$work/rows.txt" <<'PY'
import statistics, sys
q, no, np, to, tp = sys.argv[1:]
o = statistics.median(map(float, to.split())) * 1000
p = statistics.median(map(float, tp.split())) * 1000
print(f"{o:<10.2f} {p:<10.2f} {o / p:<7.2f} {no:<6} {np:<6} {q}")
PY
  tail -1 "$work/rows.txt"
done < "$work/queries.txt"
python3 - "$work/rows.txt" <<'PY'
import math, sys
rows = [l.split(None, 5) for l in open(sys.argv[1])]
o = [float(r[0]) for r in rows]; p = [float(r[1]) for r in rows]; ratio = [float(r[2]) for r in rows]
srt = sorted(ratio)
med = (srt[(len(srt) - 1) // 2] + srt[len(srt) // 2]) / 2
geo = math.exp(sum(math.log(max(x, 1e-9)) for x in ratio) / len(ratio))
print(f"queries: {len(rows)}  total ms ours {sum(o):.1f}  prometheus {sum(p):.1f}  "
      f"ratio of totals {sum(o) / sum(p):.2f}  geometric mean of ratios {geo:.2f}  "
      f"median ratio {med:.2f}  slower than prometheus: {sum(1 for x in ratio if x > 1)}  "
      f"worst ratio {max(ratio):.2f}")
PY
if [ -n "$KEEP" ]; then cp "$work/queries.txt" "$work/rows.txt" "$KEEP/"; echo "$START $END" > "$KEEP/range.txt"; fi
