#!/usr/bin/env bash
# Soak test: mixed load against a release build for a configurable time, on this machine
# (loopback only), while the sidecar's RSS, open fds and threads are sampled every 10 s.
#
# Load, all at once for the whole run:
#   - scrapes of /metrics at ~10/s                      (wrk, 1 connection, 100 ms apart)
#   - ingest at ~500 requests/s, 5 events each, labels rotating over 1000 operations,
#     300 workflows, 500 heartbeats and 50 breakers     (wrk, INGEST_CONNECTIONS=10
#     connections, 10 ms between requests on each; the achieved rate is printed)
#   - PromQL queries at ~2/s, rotating over a few shapes (wrk)
#   - a silence created every 20 s and expired 10 s later (curl)
#   - a config reload every 30 s (POST /-/reload, SIGHUP when that is refused)
#   - a flaky webhook receiver that answers 500 to 30 % of requests (python3)
#   - a fake ComfyUI whose /history grows by 2 entries a second (python3)
#   - rules that keep alerts firing, flapping, and following the rotating labels
#
# Verdict: samples before WARMUP seconds are warm-up; the rest is split in halves. RSS is
# flat when the mean of the last half is at most 5 % + 4 MiB above the mean of the first
# half; open fds are flat when the last half's mean is at most 4 above the first half's.
# The exit status is 1 when either grows (2 when a tool is missing or the sidecar died).
# Warm-up must cover the rule store's retention: it keeps what the loaded rules can see
# (longest range + 5 m lookback + 1 m resend delay) of every series, so memory rises until
# then. With the soak's own rules (windows <= 1 m, the default) that is about 6 minutes:
# WARMUP defaults to 420 s, or a third of a run shorter than 600 s (then the verdict is only
# indicative). SOAK_RULES=all also loads the repository's rules (windows up to 1 h): use
# WARMUP=4200 and a run of 2 hours or more.
#
# Needs: cargo, wrk, curl, python3 (stdlib only).
# Usage: bench/soak.sh [seconds=600]
#   a 1-hour run:  bench/soak.sh 3600   (verdict on minutes 7-60)
#   env: WARMUP (420), SOAK_RULES (soak | all), INGEST_CONNECTIONS (10),
#        PORT (19488; the next two serve the webhook receiver and the fake ComfyUI),
#        CSV (where the samples go; default /tmp/sentinel-soak-<date>.csv),
#        BIN (a prebuilt binary instead of cargo build), KEEP=1 keeps the work directory.
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${1:-600}
PORT=${PORT:-19488}
HOOK_PORT=$((PORT + 1))
COMFY_PORT=$((PORT + 2))
for t in wrk curl python3; do
  command -v "$t" >/dev/null || { echo "soak: needs $t" >&2; exit 2; }
done
if [ -z "${BIN:-}" ]; then
  cargo build --release --quiet --bin comfy-sentinel
  BIN=${CARGO_TARGET_DIR:-target}/release/comfy-sentinel
fi
REPO=$(pwd)
WARMUP=${WARMUP:-$((DURATION >= 600 ? 420 : DURATION / 3))}
WORK=$(mktemp -d /tmp/sentinel-soak.XXXXXX)
CSV=${CSV:-/tmp/sentinel-soak-$(date -u +%Y%m%dT%H%M%SZ).csv}
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  if [ "${KEEP:-0}" != 1 ]; then rm -rf "$WORK"; else echo "soak: kept $WORK"; fi
}
trap cleanup EXIT
URL="http://127.0.0.1:$PORT"

# ---------------------------------------------------------------- helpers (python3)
cat > "$WORK/flaky_hook.py" <<'PY'
# A webhook receiver that fails a share of requests with 500.
import http.server, json, random, sys, threading
port, fail_rate, stats_path = int(sys.argv[1]), float(sys.argv[2]), sys.argv[3]
stats = {"ok": 0, "failed": 0, "alerts": 0}
lock = threading.Lock()
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_POST(self):
        n = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(n)
        fail = random.random() < fail_rate
        with lock:
            stats["failed" if fail else "ok"] += 1
            if not fail:
                try:
                    stats["alerts"] += len(json.loads(body).get("alerts", []))
                except Exception:
                    pass
            with open(stats_path, "w") as f:
                json.dump(stats, f)
        code = 500 if fail else 200
        self.send_response(code)
        self.send_header("Content-Length", "0")
        self.end_headers()
    def log_message(self, *a):
        pass
http.server.ThreadingHTTPServer(("127.0.0.1", port), H).serve_forever()
PY

cat > "$WORK/fake_comfyui.py" <<'PY'
# A fake ComfyUI: /system_stats, /queue, /history?max_items=N growing by `rate` entries
# a second (success, error and interrupted runs), /view serving a tiny PNG.
import http.server, json, struct, sys, threading, time, uuid, zlib
from urllib.parse import urlparse, parse_qs
port, rate = int(sys.argv[1]), float(sys.argv[2])
MAX = 10000  # ComfyUI keeps at most this many history entries
entries, lock, start = [], threading.Lock(), time.time()
def png():
    def chunk(t, d):
        c = struct.pack(">I", len(d)) + t + d
        return c + struct.pack(">I", zlib.crc32(t + d) & 0xffffffff)
    raw = b"".join(b"\x00" + bytes([(x * 7 + y * 3) % 256 for x in range(3 * 16)]) for y in range(16))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 16, 16, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))
PNG = png()
def entry(i):
    pid = str(uuid.uuid4())
    t = int(time.time() * 1000)
    kind = ["execution_success"] * 8 + ["execution_error", "execution_interrupted"]
    kind = kind[i % len(kind)]
    data = {"prompt_id": pid, "timestamp": t}
    if kind == "execution_error":
        data.update({"node_id": "2", "node_type": "KSampler", "executed": ["1"],
                     "exception_type": "torch.OutOfMemoryError",
                     "exception_message": "CUDA out of memory. Tried to allocate 2.00 GiB"})
    graph = {"1": {"class_type": "EmptyImage", "inputs": {"width": 64, "height": 64}},
             "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "soak"}}}
    return pid, {
        "prompt": [i, pid, graph, {"client_id": "soak"}, ["2"]],
        "outputs": {"2": {"images": [{"filename": f"soak_{i:06}_.png", "subfolder": "", "type": "output"}]}}
                   if kind == "execution_success" else {},
        "status": {"status_str": "success" if kind == "execution_success" else "error",
                   "completed": kind == "execution_success",
                   "messages": [["execution_start", {"prompt_id": pid, "timestamp": t - 1500}], [kind, data]]},
        "meta": {},
    }
def grow():
    i = 0
    while True:
        want = int((time.time() - start) * rate)
        with lock:
            while i < want:
                entries.append(entry(i)); i += 1
            del entries[:-MAX]
        time.sleep(0.2)
threading.Thread(target=grow, daemon=True).start()
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def send(self, code, body, ctype="application/json"):
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def do_GET(self):
        u = urlparse(self.path)
        p = u.path[4:] if u.path.startswith("/api/") else u.path
        if p == "/system_stats":
            self.send(200, json.dumps({"system": {"os": "posix", "ram_total": 1 << 34, "ram_free": 1 << 33,
                "comfyui_version": "0.3.64", "python_version": "3.11", "pytorch_version": "2.5"},
                "devices": [{"name": "cpu", "type": "cpu", "index": None, "vram_total": 0, "vram_free": 0,
                             "torch_vram_total": 0, "torch_vram_free": 0}]}).encode())
        elif p == "/queue":
            self.send(200, b'{"queue_running": [], "queue_pending": []}')
        elif p == "/history":
            n = int(parse_qs(u.query).get("max_items", ["10000"])[0])
            with lock:
                page = entries[-n:] if n > 0 else []
                body = json.dumps(dict(page)).encode()
            self.send(200, body)
        elif p == "/view":
            self.send(200, PNG, "image/png")
        else:
            self.send(404, b"{}")
    def log_message(self, *a):
        pass
http.server.ThreadingHTTPServer(("127.0.0.1", port), H).serve_forever()
PY

# ---------------------------------------------------------------- wrk scripts (Lua)
cat > "$WORK/ingest.lua" <<'LUA'
-- 5 events a request, labels rotating; 10 ms between requests on each connection.
local n = 0
local outcomes = {"success", "success", "success", "recovered", "failed"}
local states = {"closed", "half_open", "open"}
request = function()
  n = n + 1
  local op = "op_" .. (n % 1000)
  local body = string.format(
    '[{"type":"operation","operation":"%s","duration_seconds":0.%03d,"overhead_seconds":0.00%d,"attempts":%d,"outcome":"%s","error_class":"transient"},' ..
    '{"type":"quality","workflow":"wf_%d","metric":"clip_score","value":0.%02d},' ..
    '{"type":"heartbeat","name":"job_%d","status":"%s"},' ..
    '{"type":"circuit_breaker","name":"br_%d","state":"%s"},' ..
    '{"type":"operation","operation":"load","duration_seconds":0.2,"outcome":"success"}]',
    op, n % 1000, n % 10, 1 + n % 3, outcomes[1 + n % 5],
    n % 300, n % 100, n % 500, (n % 7 == 0) and "failure" or "success",
    n % 50, states[1 + n % 3])
  return wrk.format("POST", "/api/v1/events", {["Content-Type"] = "application/json"}, body)
end
delay = function() return 10 end
LUA
cat > "$WORK/scrape.lua" <<'LUA'
wrk.headers["Accept-Encoding"] = "gzip"
delay = function() return 100 end
LUA
cat > "$WORK/query.lua" <<'LUA'
local qs = {
  "up",
  "sum(rate(recovery_operations_total[1m]))",
  "topk(5, sum by (operation) (rate(recovery_operations_total[5m])))",
  "max_over_time(sentinel_ingest_requests_total[2m:10s])",
  "count by (workflow) (quality_score_count)",
  "label_replace(sentinel_build_info, \"v\", \"$1\", \"version\", \"(.*)\")",
  "ALERTS",
  "histogram_quantile(0.9, sum by (le) (rate(quality_score_bucket[5m])))",
}
local n = 0
local function esc(s) return (s:gsub("[^%w]", function(c) return string.format("%%%02X", string.byte(c)) end)) end
request = function()
  n = n + 1
  return wrk.format("GET", "/api/v1/query?query=" .. esc(qs[1 + n % #qs]))
end
delay = function() return 500 end
LUA

# ---------------------------------------------------------------- config and rules
cat > "$WORK/soak_rules.yaml" <<'YAML'
groups:
  - name: soak
    interval: 5s
    rules:
      - alert: SoakAlways
        expr: vector(1)
        labels: { severity: warning }
        annotations: { summary: "always firing" }
      - alert: SoakFlap
        expr: vector(time() % 60) < 30
        labels: { severity: warning }
      - alert: SoakOperationFailing
        expr: sum by (operation) (rate(recovery_operations_total{outcome="failed"}[1m])) > 0
        labels: { severity: critical }
        annotations: { summary: "{{ $labels.operation }} fails at {{ $value | humanize }}/s" }
      - record: soak:ingest_requests:rate1m
        expr: sum(rate(sentinel_ingest_requests_total[1m]))
YAML
case "${SOAK_RULES:-soak}" in
  soak) RULE_FILES="\"$WORK/soak_rules.yaml\"" ;;
  all) RULE_FILES="\"$REPO/rules/*.yaml\", \"$WORK/soak_rules.yaml\"" ;;
  *) echo "soak: SOAK_RULES is soak or all" >&2; exit 2 ;;
esac
write_config() {
  cat > "$WORK/config.yaml" <<YAML
# soak config, generation $1
listen: "127.0.0.1:$PORT"
data_dir: "$WORK/data"
external_url: "http://127.0.0.1:$PORT"
log: { level: warn }
collectors:
  system: { enabled: true, interval: 5s }
  gpu: { enabled: false }
  comfyui: { url: "http://127.0.0.1:$COMFY_PORT", interval: 2s, timeout: 1s }
ingest:
  rate_limit: { requests_per_second: 0, events_per_second: 0 }
rules:
  files: [$RULE_FILES]
  evaluation_interval: 5s
notify:
  route:
    receiver: flaky
    group_by: [alertname, operation]
    group_wait: 1s
    group_interval: 5s
    repeat_interval: 1m
  receivers:
    - name: flaky
      webhooks:
        - url: "http://127.0.0.1:$HOOK_PORT/hook"
          timeout: 2s
  outbox:
    initial_backoff: 1s
    max_backoff: 10s
YAML
}
write_config 0

python3 "$WORK/flaky_hook.py" "$HOOK_PORT" 0.3 "$WORK/hook.json" & PIDS+=($!)
python3 "$WORK/fake_comfyui.py" "$COMFY_PORT" 2 & PIDS+=($!)
"$BIN" run --config "$WORK/config.yaml" > "$WORK/sentinel.log" 2>&1 & SENTINEL=$!
PIDS+=("$SENTINEL")
for _ in $(seq 100); do
  curl -fsS "$URL/healthz" >/dev/null 2>&1 && break
  sleep 0.1
done
curl -fsS "$URL/healthz" >/dev/null || { echo "soak: sidecar did not start" >&2; cat "$WORK/sentinel.log" >&2; exit 2; }
echo "soak: ${DURATION}s against $BIN (pid $SENTINEL), samples every 10 s into $CSV"

# ---------------------------------------------------------------- load
wrk -t1 -c"${INGEST_CONNECTIONS:-10}" -d"${DURATION}s" --latency -s "$WORK/ingest.lua" "$URL" > "$WORK/wrk-ingest.txt" 2>&1 & PIDS+=($!)
wrk -t1 -c1 -d"${DURATION}s" --latency -s "$WORK/scrape.lua" "$URL/metrics" > "$WORK/wrk-scrape.txt" 2>&1 & PIDS+=($!)
wrk -t1 -c1 -d"${DURATION}s" --latency -s "$WORK/query.lua" "$URL" > "$WORK/wrk-query.txt" 2>&1 & PIDS+=($!)

silences() {
  local made=0 expired=0 now end id
  while :; do
    now=$(date -u +%Y-%m-%dT%H:%M:%SZ)
    end=$(date -u -d "+1 hour" +%Y-%m-%dT%H:%M:%SZ)
    id=$(curl -sS -X POST -H 'Content-Type: application/json' "$URL/api/v2/silences" \
      -d "{\"matchers\":[{\"name\":\"alertname\",\"value\":\"SoakFlap\",\"isRegex\":false}],\"startsAt\":\"$now\",\"endsAt\":\"$end\",\"createdBy\":\"soak\",\"comment\":\"soak $made\"}" \
      | python3 -c 'import json,sys; print(json.load(sys.stdin).get("silenceID",""))' 2>/dev/null || true)
    [ -n "$id" ] && made=$((made + 1))
    sleep 10
    if [ -n "$id" ] && curl -fsS -X DELETE "$URL/api/v2/silence/$id" >/dev/null 2>&1; then
      expired=$((expired + 1))
    fi
    echo "$made $expired" > "$WORK/silences.txt"
    sleep 10
  done
}
silences & PIDS+=($!)

reloads() {
  local gen=0 ok=0 failed=0 code
  while :; do
    sleep 30
    gen=$((gen + 1))
    write_config "$gen"
    code=$(curl -s -o /dev/null -w '%{http_code}' -X POST "$URL/-/reload" || echo 000)
    if [ "$code" = 200 ]; then ok=$((ok + 1));
    elif kill -HUP "$SENTINEL" 2>/dev/null; then ok=$((ok + 1));
    else failed=$((failed + 1)); fi
    echo "$ok $failed" > "$WORK/reloads.txt"
  done
}
reloads & PIDS+=($!)

# ---------------------------------------------------------------- sampling
echo "t_s,rss_kib,fds,threads,cpu_s" > "$CSV"
CLK=$(getconf CLK_TCK)
T0=$(date +%s)
while :; do
  NOW=$(date +%s)
  ELAPSED=$((NOW - T0))
  [ -d "/proc/$SENTINEL" ] || { echo "soak: the sidecar died after ${ELAPSED}s" >&2; tail -20 "$WORK/sentinel.log" >&2; exit 2; }
  RSS=$(awk '/^VmRSS:/ {print $2}' "/proc/$SENTINEL/status")
  THR=$(awk '/^Threads:/ {print $2}' "/proc/$SENTINEL/status")
  FDS=$(ls "/proc/$SENTINEL/fd" | wc -l)
  CPU=$(awk -v clk="$CLK" '{printf "%.1f", ($14 + $15) / clk}' "/proc/$SENTINEL/stat")
  echo "$ELAPSED,$RSS,$FDS,$THR,$CPU" >> "$CSV"
  [ "$ELAPSED" -ge "$DURATION" ] && break
  sleep 10
done
sleep 2

# ---------------------------------------------------------------- report
echo
echo "== load achieved (wrk)"
for s in ingest scrape query; do
  awk -v s="$s" '/Requests\/sec/ {rps=$2} /^ +99%/ {p99=$2} /^ +50%/ {p50=$2}
    /requests in/ {n=$1} /Non-2xx/ {bad=$NF}
    END {printf "  %-7s %8s req/s  %8s requests  p50 %-8s p99 %-8s non-2xx %s\n", s, rps, n, p50, p99, (bad == "" ? 0 : bad)}' \
    "$WORK/wrk-$s.txt"
done
echo "  silences created/expired: $(cat "$WORK/silences.txt" 2>/dev/null || echo '0 0')"
echo "  reloads ok/failed:        $(cat "$WORK/reloads.txt" 2>/dev/null || echo '0 0')"
echo "  webhook receiver:         $(cat "$WORK/hook.json" 2>/dev/null || echo '{}')"
echo
echo "== sidecar metrics at the end"
curl -fsS "$URL/metrics" > "$WORK/final.prom" || true
grep -E '^(sentinel_ingest_requests_total|sentinel_ingest_events_total\{[^}]*result="accepted"|sentinel_ingest_label_overflow_total|sentinel_notifications_total|sentinel_notifications_dead_total|sentinel_outbox_depth|sentinel_notify_alerts_received_total|sentinel_config_last_reload_successful|comfyui_prompts_total|process_open_fds|process_resident_memory_bytes)' \
  "$WORK/final.prom" | grep -v ' 0$' | sed 's/^/  /' || true
echo
echo "== resources (samples: $CSV)"
python3 - "$CSV" "$WARMUP" <<'PY'
import csv, sys
all_rows = [r for r in csv.DictReader(open(sys.argv[1]))]
warmup = float(sys.argv[2])
rows = [r for r in all_rows if float(r["t_s"]) >= warmup]
if len(rows) < 4:
    print("  too few samples after warm-up for a verdict"); sys.exit(0)
if warmup < 420:
    print(f"  note: warm-up {warmup:.0f} s is shorter than the rule store's ~6 min retention;"
          " growth in this run is expected and the verdict only indicative")
n = len(rows); a, b = 0, n // 2
print(f"  {n} samples after {warmup:.0f} s of warm-up; first half vs last half")
def mean(k, lo, hi):
    xs = [float(r[k]) for r in rows[lo:hi]]
    return sum(xs) / len(xs)
ok = True
for k, unit, rel, absol in [("rss_kib", "MiB", 0.05, 4096.0), ("fds", "", 0.0, 4.0), ("threads", "", 0.0, 2.0)]:
    mid, last = mean(k, a, b), mean(k, b, n)
    lo, hi = min(float(r[k]) for r in all_rows), max(float(r[k]) for r in all_rows)
    flat = last <= mid * (1 + rel) + absol
    scale = 1024.0 if unit == "MiB" else 1.0
    print(f"  {k:8} min {lo/scale:7.1f}  max {hi/scale:7.1f}  mean first half {mid/scale:7.1f}  last half {last/scale:7.1f}  {'flat' if flat else 'GROWING'} {unit}")
    if k in ("rss_kib", "fds") and not flat:
        ok = False
cpu = float(all_rows[-1]["cpu_s"]) / max(float(all_rows[-1]["t_s"]), 1)
print(f"  cpu      {cpu * 100:.0f} % of one core on average")
print("  verdict:", "RSS and fds flat after warm-up" if ok else "GROWTH after warm-up")
sys.exit(0 if ok else 1)
PY
