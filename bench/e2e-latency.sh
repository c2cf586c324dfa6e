#!/usr/bin/env bash
# End-to-end alert latency, side by side in one run, on this machine (loopback only):
#   event POSTed to comfy-sentinel's /api/v1/events  →  first webhook carrying the alert
# for two stacks fed by the same event:
#   ours:   comfy-sentinel alone (ingest → /metrics snapshot → rule engine → notifier →
#           outbox fsync → signed webhook)
#   theirs: Prometheus scraping comfy-sentinel's /metrics → Prometheus rule → Alertmanager →
#           webhook
# Both use the same expression, `for: 0s`, 1 s scrape/evaluation intervals, group_wait 0s,
# group_interval 1s, one group per alert instance. Each trial reports a failure of a new
# heartbeat name, so each trial is a new series and a new alert in both stacks. Trials
# start at a random phase and do not overlap. One python process serves the webhook
# receiver and drives the trials, so t0 and arrival times come from one clock.
# Prints p50/p90/max for both and the ratio, and checks our Standard Webhooks headers.
# Needs: cargo, prometheus, prometheus-alertmanager, python3 (stdlib only).
# Each run restarts the three processes in a new directory, so their tick phases are drawn
# anew (comfy-sentinel's from its start time; Prometheus's rule group offset from a hash of
# the group's name and file path, its scrape offset from the target and the host); the
# last table pools every run.
# Usage: bench/e2e-latency.sh [trials=20] [runs=5]   (about 70 s per run)
# SENTINEL_BIN=path runs that binary instead of building the release one; SENTINEL_LOG
# sets RUST_LOG (by default the debug lines the per-stage breakdown reads).
set -euo pipefail
cd "$(dirname "$0")/.."
TRIALS=${1:-20}
RUNS=${2:-5}
S_PORT=${S_PORT:-19388}
P_PORT=${P_PORT:-19390}
A_PORT=${A_PORT:-19393}
H_PORT=${H_PORT:-19395}

command -v prometheus >/dev/null || { echo "needs prometheus" >&2; exit 2; }
command -v prometheus-alertmanager >/dev/null || { echo "needs prometheus-alertmanager" >&2; exit 2; }
TARGET_DIR=${CARGO_TARGET_DIR:-target}
if [ -n "${SENTINEL_BIN:-}" ]; then
  BIN=$SENTINEL_BIN   # a binary built elsewhere (e.g. an earlier commit, for before/after)
else
  cargo build --release --quiet --bin comfy-sentinel
  BIN="$TARGET_DIR/release/comfy-sentinel"
fi

work=$(mktemp -d)
PIDS=()
stop() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
  PIDS=()
}
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
SECRET="whsec_$(head -c 24 /dev/urandom | base64)"
# Debug lines of the pipeline stages (older builds simply print none of them).
SENTINEL_LOG=${SENTINEL_LOG:-warn,sentinel_notify::notifier=debug,comfy_sentinel::app=debug}
stages() {
  python3 - "$@" <<'PY'
import re, sys
vals = {}
for path in sys.argv[1:]:
    for line in open(path, errors="replace"):
        line = re.sub(r"\x1b\[[0-9;]*m", "", line)
        if "notify:" not in line and "pushed events:" not in line:
            continue
        for k, v in re.findall(r"\b(\w+_us)=(\d+)", line):
            vals.setdefault(k, []).append(int(v))
if not vals:
    print("per-stage (sentinel debug log): no stage lines (a build without them)")
    sys.exit(0)
desc = {
    "refresh_us": "pushed event: snapshot refresh (feeds the rule store)",
    "eval_us": "pushed event: immediate evaluation of the groups reading it",
    "elapsed_us": "dispatcher takes the alert batch",
    "commit_us": "flush → outbox committed (fsync) → delivery woken",
    "attempt_us": "webhook POST (request → 2xx)",
    "since_flush_us": "flush → webhook answered (commit + wake-up + POST)",
}
print("per-stage p50 / p90 / max (sentinel debug log, microseconds):")
for k in ("refresh_us", "eval_us", "elapsed_us", "commit_us", "attempt_us", "since_flush_us"):
    xs = sorted(vals.get(k, []))
    if xs:
        q = lambda p: xs[min(len(xs) - 1, int(round(p * (len(xs) - 1))))]
        print(f"  {desc[k]:58s} {q(.5):8d} {q(.9):8d} {xs[-1]:8d}  (n={len(xs)})")
PY
}
EXPR='sentinel_heartbeat_last_failure_timestamp_seconds > 0'

# Rules: the same expression for both stacks.
cat > "$work/rules.yaml" <<YAML
groups:
  - name: bench
    rules:
      - alert: BenchThreshold
        expr: $EXPR
        for: 0s
YAML

cat > "$work/sentinel.yaml" <<YAML
data_dir: $work/data
log: { level: warn }
collectors:
  system: { enabled: false }
  gpu: { enabled: false }
  comfyui: { enabled: false }
rules:
  files: [$work/rules.yaml]
  evaluation_interval: 1s
notify:
  route:
    receiver: hook
    group_by: [alertname, name]
    group_wait: 0s
    group_interval: 1s
  receivers:
    - name: hook
      webhooks:
        - url: "http://127.0.0.1:$H_PORT/sentinel"
          secret: "$SECRET"
YAML

cat > "$work/prometheus.yml" <<YAML
global:
  scrape_interval: 1s
  evaluation_interval: 1s
rule_files: [$work/rules.yaml]
scrape_configs:
  - job_name: sentinel
    static_configs: [{ targets: ["127.0.0.1:$S_PORT"] }]
alerting:
  alertmanagers:
    - static_configs: [{ targets: ["127.0.0.1:$A_PORT"] }]
YAML

cat > "$work/alertmanager.yml" <<YAML
route:
  receiver: hook
  group_by: [alertname, name]
  group_wait: 0s
  group_interval: 1s
  repeat_interval: 4h
receivers:
  - name: hook
    webhook_configs:
      - url: "http://127.0.0.1:$H_PORT/alertmanager"
YAML

cat > "$work/drive.py" <<'PY'
import datetime, http.server, json, os, random, sys, threading, time, urllib.request

def q(xs, p):
    xs = sorted(x for x in xs if x == x)
    if not xs:
        return float("nan")
    return xs[min(len(xs) - 1, int(round(p * (len(xs) - 1))))]

def summarize(recs, title):
    ours = [r["ours"] for r in recs]; theirs = [r["theirs"] for r in recs]
    missing = sum(1 for x in ours + theirs if x != x)
    print()
    print(f"{title:28s} {'p50':>8s} {'p90':>8s} {'max':>8s}   (n={len(recs)}, missing={missing})")
    for label, xs in (("comfy-sentinel", ours), ("prometheus+alertmanager", theirs)):
        print(f"{label:28s} {q(xs,.5)*1000:6.0f}ms {q(xs,.9)*1000:6.0f}ms {q(xs,1)*1000:6.0f}ms")
    print(f"{'ratio ours/theirs':28s} {q(ours,.5)/q(theirs,.5):8.2f} {q(ours,.9)/q(theirs,.9):8.2f} {q(ours,1)/q(theirs,1):8.2f}")
    print("breakdown, p50 (startsAt = the evaluation timestamp the alert was first active at):")
    for label, k in (("comfy-sentinel", "o"), ("prometheus+alertmanager", "t")):
        print(f"  {label:26s} event → startsAt {q([r[k+'_eval'] for r in recs],.5)*1000:6.0f} ms"
              f"   startsAt → webhook {q([r[k+'_deliver'] for r in recs],.5)*1000:6.0f} ms")
    return missing

if sys.argv[1:2] == ["summary"]:
    with open(sys.argv[2]) as f:
        recs = [json.loads(l) for l in f if l.strip()]
    runs = len({r["run"] for r in recs})
    summarize(recs, f"all {runs} runs, event → webhook")
    sys.exit(0)

S, P, A, H = (int(os.environ[k]) for k in ("S_PORT", "P_PORT", "A_PORT", "H_PORT"))
TRIALS = int(os.environ["TRIALS"])

arrivals = {}          # (path, name) -> first arrival time
starts = {}            # (path, name) -> the alert's startsAt (its rule evaluation timestamp)
headers_seen = {}      # name -> our webhook's headers
cond = threading.Condition()

def rfc3339(v):
    # Go writes up to 9 fraction digits; datetime reads 6.
    try:
        head, _, frac = v.rstrip("Z").partition(".")
        d = datetime.datetime.strptime(head, "%Y-%m-%dT%H:%M:%S").replace(tzinfo=datetime.timezone.utc)
        return d.timestamp() + (float("0." + frac) if frac else 0.0)
    except ValueError:
        return float("nan")

class Hook(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_POST(self):
        t = time.time()
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()
        try:
            doc = json.loads(body)
        except ValueError:
            return
        with cond:
            for a in doc.get("alerts", []):
                lab = a.get("labels", {})
                if lab.get("alertname") != "BenchThreshold" or a.get("status") != "firing":
                    continue
                key = (self.path, lab.get("name"))
                if key not in arrivals:
                    arrivals[key] = t
                    starts[key] = rfc3339(a.get("startsAt", ""))
                    if self.path == "/sentinel":
                        headers_seen[lab.get("name")] = {k.lower(): v for k, v in self.headers.items()}
            cond.notify_all()
    def log_message(self, *a):
        pass

srv = http.server.ThreadingHTTPServer(("127.0.0.1", H), Hook)
threading.Thread(target=srv.serve_forever, daemon=True).start()

def get(url):
    with urllib.request.urlopen(url, timeout=2) as r:
        return r.read()

def wait_ready(url, check=lambda b: True, secs=60):
    end = time.time() + secs
    while time.time() < end:
        try:
            if check(get(url)):
                return
        except Exception:
            pass
        time.sleep(0.2)
    sys.exit(f"not ready: {url}")

wait_ready(f"http://127.0.0.1:{S}/healthz")
wait_ready(f"http://127.0.0.1:{A}/-/ready")
wait_ready(f"http://127.0.0.1:{P}/-/ready")
wait_ready(f"http://127.0.0.1:{P}/api/v1/targets",
           lambda b: '"health":"up"' in b.decode())

def post_failure(name):
    body = json.dumps([{"type": "heartbeat", "name": name, "status": "failure"}]).encode()
    req = urllib.request.Request(f"http://127.0.0.1:{S}/api/v1/events", data=body,
                                 headers={"Content-Type": "application/json"}, method="POST")
    t0 = time.time()
    with urllib.request.urlopen(req, timeout=5) as r:
        r.read()
    return t0

def trial(name, timeout=20):
    t0 = post_failure(name)
    end = t0 + timeout
    with cond:
        while not all((p, name) in arrivals for p in ("/sentinel", "/alertmanager")):
            left = end - time.time()
            if left <= 0:
                break
            cond.wait(left)
        return t0

run_id = os.environ["RUN"]
trial(f"warmup-{run_id}")     # not counted: first group, first scrape of the family
PATHS = ("/sentinel", "/alertmanager")
total = {p: [] for p in PATHS}    # t0 → webhook received
to_eval = {p: [] for p in PATHS}  # t0 → startsAt (evaluation timestamp that first saw it)
deliver = {p: [] for p in PATHS}  # startsAt → webhook received
for i in range(TRIALS):
    time.sleep(random.uniform(1.0, 2.0))   # random phase against scrape/evaluation ticks
    name = f"bench-{run_id}-{i}"
    t0 = trial(name)
    with cond:
        for p in PATHS:
            arr, st = arrivals.get((p, name), float("nan")), starts.get((p, name), float("nan"))
            total[p].append(arr - t0); to_eval[p].append(st - t0); deliver[p].append(arr - st)
    print(f"trial {i:2d}: comfy-sentinel {total['/sentinel'][-1]*1000:6.0f} ms"
          f"   prometheus+alertmanager {total['/alertmanager'][-1]*1000:6.0f} ms", flush=True)

recs = [dict(run=run_id, ours=total["/sentinel"][i], theirs=total["/alertmanager"][i],
             o_eval=to_eval["/sentinel"][i], o_deliver=deliver["/sentinel"][i],
             t_eval=to_eval["/alertmanager"][i], t_deliver=deliver["/alertmanager"][i])
        for i in range(TRIALS)]
with open(os.environ["RESULTS"], "a") as f:
    for r in recs:
        f.write(json.dumps(r) + "\n")
missing = summarize(recs, "this run, event → webhook")
need = ("webhook-id", "webhook-timestamp", "webhook-signature")
bad = [n for n, h in headers_seen.items() if not all(k in h for k in need)
       or not h["webhook-id"].startswith("msg_") or not h["webhook-signature"].startswith("v1,")]
print(f"Standard Webhooks headers on our webhooks: {len(headers_seen) - len(bad)}/{len(headers_seen)} present")
srv.shutdown()
sys.exit(1 if bad or missing else 0)
PY

start() {
  local dir=$1
  cp "$work/rules.yaml" "$dir/rules.yaml"
  sed "s|$work/|$dir/|g" "$work/sentinel.yaml" > "$dir/sentinel.yaml"
  sed "s|$work/|$dir/|g" "$work/prometheus.yml" > "$dir/prometheus.yml"
  "$BIN" check --config "$dir/sentinel.yaml" >/dev/null 2>"$dir/check.log" || { cat "$dir/check.log" >&2; exit 2; }
  NO_COLOR=1 RUST_LOG="$SENTINEL_LOG" "$BIN" run --config "$dir/sentinel.yaml" --listen "127.0.0.1:$S_PORT" 2>"$dir/sentinel.log" &
  PIDS+=($!)
  prometheus-alertmanager --config.file="$work/alertmanager.yml" --storage.path="$dir/am" \
    --web.listen-address="127.0.0.1:$A_PORT" --cluster.listen-address= >"$dir/am.log" 2>&1 &
  PIDS+=($!)
  prometheus --config.file="$dir/prometheus.yml" --storage.tsdb.path="$dir/prom" \
    --web.listen-address="127.0.0.1:$P_PORT" --rules.alert.resend-delay=1s >"$dir/prom.log" 2>&1 &
  PIDS+=($!)
}

: > "$work/results.jsonl"
for run in $(seq "$RUNS"); do
  echo "== run $run of $RUNS"
  mkdir -p "$work/run$run"
  start "$work/run$run"
  S_PORT=$S_PORT P_PORT=$P_PORT A_PORT=$A_PORT H_PORT=$H_PORT TRIALS=$TRIALS RUN=$run \
    RESULTS="$work/results.jsonl" python3 "$work/drive.py"
  stop
  stages "$work/run$run/sentinel.log"
done
python3 "$work/drive.py" summary "$work/results.jsonl"
stages "$work"/run*/sentinel.log
