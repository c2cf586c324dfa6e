#!/usr/bin/env bash
# Chaos cases against a release build, on this machine (loopback only). Each case starts
# a fresh sidecar whose rule fires one alert per heartbeat name; the script reports a
# failure of a new heartbeat name every second or so (POST /api/v1/events) and watches
# what arrives at the receivers and what /metrics says.
#
#   disk-full   data_dir on a small tmpfs that is then filled (FULL_ALERTS=20 new alerts
#               while full): notifications that cannot be written are counted
#               (sentinel_notifications_not_persisted_total), alerts are still delivered
#               from memory, and writing resumes once space is freed
#               (sentinel_outbox_persistent).
#   read-only   data_dir on a read-only tmpfs from the start: the sidecar runs, delivers
#               from memory and says so.
#   smtp-stall  an SMTP server that accepts connections and never answers, beside a
#               webhook receiver on another route: the webhook still gets every alert,
#               email attempts time out and are retried, /metrics stays fast, and
#               connections to the staller do not pile up.
#   am-500      an Alertmanager that answers 500: attempts are retried and kept in the
#               outbox; once it answers 200 again everything is delivered.
#
# The tmpfs cases need root (mount). Needs: cargo, curl, python3 (stdlib only).
# Usage: bench/chaos.sh [case ...]   (default: all four; about 4 minutes)
#   env: PORT (19588; the next two ports serve the receivers and the SMTP staller),
#        BIN (a prebuilt binary instead of cargo build), KEEP=1 keeps the work directory.
set -euo pipefail
cd "$(dirname "$0")/.."
CASES=("$@")
[ ${#CASES[@]} -gt 0 ] || CASES=(disk-full read-only smtp-stall am-500)
PORT=${PORT:-19588}
HUB_PORT=$((PORT + 1))
SMTP_PORT=$((PORT + 2))
for t in curl python3; do
  command -v "$t" >/dev/null || { echo "chaos: needs $t" >&2; exit 2; }
done
if [ -z "${BIN:-}" ]; then
  cargo build --release --quiet --bin comfy-sentinel
  BIN=${CARGO_TARGET_DIR:-target}/release/comfy-sentinel
fi
WORK=$(mktemp -d /tmp/sentinel-chaos.XXXXXX)
URL="http://127.0.0.1:$PORT"
HUB="http://127.0.0.1:$HUB_PORT"
PIDS=()
SENTINEL=
MOUNTS=()
cleanup() {
  [ -n "$SENTINEL" ] && kill "$SENTINEL" 2>/dev/null || true
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  for m in "${MOUNTS[@]}"; do umount "$m" 2>/dev/null || true; done
  if [ "${KEEP:-0}" != 1 ]; then rm -rf "$WORK"; else echo "chaos: kept $WORK"; fi
}
trap cleanup EXIT

# One python process: webhook receiver (/hook), fake Alertmanager (/api/v2/alerts, its
# answer set by /control?am=CODE), SMTP staller (accepts, never answers), state at /state.
cat > "$WORK/hub.py" <<'PY'
import http.server, json, socket, sys, threading
hub_port, smtp_port = int(sys.argv[1]), int(sys.argv[2])
lock = threading.Lock()
state = {"hook": [], "am": [], "am_code": 500, "am_requests": 0,
         "smtp_accepted": 0, "smtp_open": 0}
def names(body):
    try:
        doc = json.loads(body)
    except Exception:
        return []
    alerts = doc.get("alerts", []) if isinstance(doc, dict) else doc
    return [a.get("labels", {}).get("name", "") for a in alerts]
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def reply(self, code, body=b""):
        self.send_response(code)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(body)
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        with lock:
            if self.path.startswith("/hook"):
                state["hook"] += names(body)
                code = 200
            elif self.path.startswith("/api/v2/alerts"):
                state["am_requests"] += 1
                code = state["am_code"]
                if code == 200:
                    state["am"] += names(body)
            else:
                code = 404
        self.reply(code)
    def do_GET(self):
        with lock:
            if self.path.startswith("/control?am="):
                state["am_code"] = int(self.path.split("=", 1)[1])
            if self.path.startswith("/reset"):
                state.update({"hook": [], "am": [], "am_requests": 0, "smtp_accepted": 0})
            body = json.dumps(state).encode()
        self.reply(200, body)
    def log_message(self, *a):
        pass
def smtp():
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("127.0.0.1", smtp_port))
    s.listen(128)
    while True:
        c, _ = s.accept()
        with lock:
            state["smtp_accepted"] += 1
            state["smtp_open"] += 1
        def hold(c=c):
            try:
                while c.recv(4096):
                    pass  # read what the client sends, answer nothing
            except Exception:
                pass
            with lock:
                state["smtp_open"] -= 1
            c.close()
        threading.Thread(target=hold, daemon=True).start()
threading.Thread(target=smtp, daemon=True).start()
http.server.ThreadingHTTPServer(("127.0.0.1", hub_port), H).serve_forever()
PY
python3 "$WORK/hub.py" "$HUB_PORT" "$SMTP_PORT" & PIDS+=($!)
for _ in $(seq 50); do curl -fsS "$HUB/state" >/dev/null 2>&1 && break; sleep 0.1; done

cat > "$WORK/rules.yaml" <<'YAML'
groups:
  - name: chaos
    rules:
      - alert: ChaosHeartbeatFailed
        expr: sentinel_heartbeat_last_failure_timestamp_seconds > 0
YAML

# config DATA_DIR RECEIVERS_YAML ROUTES_YAML ROOT_RECEIVER
config() {
  cat > "$WORK/config.yaml" <<YAML
listen: "127.0.0.1:$PORT"
data_dir: "$1"
log: { level: warn }
collectors:
  system: { enabled: false }
  gpu: { enabled: false }
  comfyui: { enabled: false }
rules:
  files: ["$WORK/rules.yaml"]
  evaluation_interval: 1s
notify:
  route:
    receiver: $4
    group_by: [alertname, name]
    group_wait: 0s
    group_interval: 1s
    repeat_interval: 1h
$3
  receivers:
$2
  outbox:
    initial_backoff: 1s
    max_backoff: 4s
YAML
}
HOOK_RECEIVER="    - name: hook
      webhooks: [{ url: \"$HUB/hook\", timeout: 2s }]"

start() {
  "$BIN" run --config "$WORK/config.yaml" > "$WORK/$1.log" 2>&1 &
  SENTINEL=$!
  for _ in $(seq 100); do
    curl -fsS "$URL/healthz" >/dev/null 2>&1 && return 0
    kill -0 "$SENTINEL" 2>/dev/null || break
    sleep 0.1
  done
  echo "chaos: the sidecar did not start:" >&2
  cat "$WORK/$1.log" >&2
  SENTINEL=
  return 1
}
stop() {
  [ -n "$SENTINEL" ] && kill "$SENTINEL" 2>/dev/null && wait "$SENTINEL" 2>/dev/null || true
  SENTINEL=
}
fail_heartbeat() {
  curl -fsS -o /dev/null -X POST -H 'Content-Type: application/json' "$URL/api/v1/events" \
    -d "[{\"type\":\"heartbeat\",\"name\":\"$1\",\"status\":\"failure\"}]" || echo "chaos: ingest of $1 failed" >&2
}
# metric PREFIX: the sum of the series whose line starts with PREFIX
metric() {
  curl -fsS "$URL/metrics" | awk -v p="$1" 'index($0, p) == 1 {s += $NF} END {printf "%g\n", s + 0}'
}
# got KEY PREFIX: how many distinct names starting with PREFIX the hub got on KEY
got() {
  curl -fsS "$HUB/state" | python3 -c "import json,sys; d=json.load(sys.stdin); print(len({n for n in d['$1'] if n.startswith('$2')}))"
}
hub() { curl -fsS "$HUB/state" | python3 -c "import json,sys; print(json.load(sys.stdin)['$1'])"; }
# post PREFIX N: N new heartbeat failures, one a second
post() { for i in $(seq "$2"); do fail_heartbeat "$1$i"; sleep 1; done; }
wait_for() { # wait_for SECONDS CMD...: until CMD succeeds
  local end=$((SECONDS + $1)); shift
  until "$@"; do [ $SECONDS -ge $end ] && return 1; sleep 0.5; done
}
ok() { [ "$(got "$1" "$2")" -ge "$3" ]; }
ms() { curl -s -o /dev/null -w '%{time_total}' "$URL/$1" | awk '{printf "%.0f ms", $1 * 1000}'; }
mount_tmpfs() { # mount_tmpfs DIR SIZE [ro]
  mkdir -p "$1"
  mount -t tmpfs -o "size=$2${3:+,$3}" tmpfs "$1"
  MOUNTS+=("$1")
}
report() { printf '  %-58s %s\n' "$1" "$2"; }

case_disk_full() {
  echo "== disk-full: data_dir on an 8 MiB tmpfs, filled, then freed"
  local d="$WORK/full"
  mount_tmpfs "$d" 8m
  config "$d/data" "$HOOK_RECEIVER" "" hook
  start disk-full
  post full_before_ 3
  wait_for 20 ok hook full_before_ 3 || true
  report "delivered before the disk filled (of 3)" "$(got hook full_before_)"
  report "outbox persistent before" "$(metric sentinel_outbox_persistent)"
  dd if=/dev/zero of="$d/filler" bs=64k >/dev/null 2>&1 || true
  report "free space after filling" "$(df --output=avail -B1 "$d" | tail -1 | tr -d ' ') bytes"
  local np0 errs0 n=${FULL_ALERTS:-20}
  np0=$(metric sentinel_notifications_not_persisted_total)
  errs0=$(grep -c 'outbox cannot persist' "$WORK/disk-full.log" || true)
  post full_during_ "$n"
  wait_for 30 ok hook full_during_ "$n" || true
  report "delivered while full (of $n)" "$(got hook full_during_)"
  report "outbox write failures logged while full" "$(($(grep -c 'outbox cannot persist' "$WORK/disk-full.log" || true) - errs0))"
  report "not persisted while full (counter delta)" "$(awk -v a="$(metric sentinel_notifications_not_persisted_total)" -v b="$np0" 'BEGIN {print a - b}')"
  report "outbox persistent while full" "$(metric sentinel_outbox_persistent)"
  report "/metrics answers in" "$(ms metrics)"
  rm -f "$d/filler"
  local np1; np1=$(metric sentinel_notifications_not_persisted_total)
  post full_after_ 3
  wait_for 30 ok hook full_after_ 3 || true
  sleep 2
  report "delivered after space was freed (of 3)" "$(got hook full_after_)"
  report "not persisted after freeing (counter delta)" "$(awk -v a="$(metric sentinel_notifications_not_persisted_total)" -v b="$np1" 'BEGIN {print a - b}')"
  report "outbox persistent after freeing" "$(metric sentinel_outbox_persistent)"
  report "outbox depth at the end" "$(metric sentinel_outbox_depth)"
  report "sidecar still running" "$(kill -0 "$SENTINEL" 2>/dev/null && echo yes || echo NO)"
  report "log lines WARN/ERROR" "$(grep -cE 'WARN|ERROR' "$WORK/disk-full.log" || true)"
  grep -E 'WARN|ERROR' "$WORK/disk-full.log" | sed 's/^[^ ]* *//' | sort | uniq -c | sort -rn | head -5 | sed 's/^/      /'
  stop
  umount "$d" && MOUNTS=("${MOUNTS[@]/$d}")
}

case_read_only() {
  echo "== read-only: data_dir on a tmpfs mounted read-only"
  local d="$WORK/ro"
  mount_tmpfs "$d" 8m
  mkdir -p "$d/data"
  mount -o remount,ro "$d"
  config "$d/data" "$HOOK_RECEIVER" "" hook
  if start read-only; then
    post ro_ 3
    wait_for 20 ok hook ro_ 3 || true
    report "delivered (of 3)" "$(got hook ro_)"
    report "outbox persistent" "$(metric sentinel_outbox_persistent)"
    report "not persisted (counter)" "$(metric sentinel_notifications_not_persisted_total)"
    report "readyz" "$(curl -s -o /dev/null -w '%{http_code}' "$URL/readyz")"
    report "log lines WARN/ERROR" "$(grep -cE 'WARN|ERROR' "$WORK/read-only.log" || true)"
    grep -E 'WARN|ERROR' "$WORK/read-only.log" | sed 's/^[^ ]* *//' | sort | uniq -c | sort -rn | head -5 | sed 's/^/      /'
    stop
  else
    report "sidecar started" "NO"
  fi
  umount "$d" && MOUNTS=("${MOUNTS[@]/$d}")
}

case_smtp_stall() {
  echo "== smtp-stall: an SMTP server that accepts and never answers, beside a webhook"
  local routes="    routes:
      - { matchers: ['alertname=~\".+\"'], receiver: mail, continue: true }
      - { matchers: ['alertname=~\".+\"'], receiver: hook }"
  local receivers="$HOOK_RECEIVER
    - name: mail
      emails:
        - { to: [oncall@example.com], from: sentinel@example.com, smarthost: \"127.0.0.1:$SMTP_PORT\", require_tls: false, timeout: 5s }"
  mkdir -p "$WORK/smtp"
  config "$WORK/smtp/data" "$receivers" "$routes" hook
  curl -fsS "$HUB/reset" >/dev/null
  start smtp-stall
  post stall_ 5
  wait_for 20 ok hook stall_ 5 || true
  report "webhook deliveries while SMTP stalls (of 5)" "$(got hook stall_)"
  sleep 20
  report "email attempts retried / failed / succeeded" "$(metric 'sentinel_notifications_total{receiver="mail",result="retry"}') / $(metric 'sentinel_notifications_total{receiver="mail",result="failed"}') / $(metric 'sentinel_notifications_total{receiver="mail",result="success"}')"
  report "SMTP connections accepted / still open after 25 s" "$(hub smtp_accepted) / $(hub smtp_open)"
  report "outbox depth" "$(metric sentinel_outbox_depth)"
  report "/metrics answers in" "$(ms metrics)"
  report "/healthz answers in" "$(ms healthz)"
  report "sidecar threads / open fds" "$(awk '/^Threads:/ {print $2}' "/proc/$SENTINEL/status") / $(ls "/proc/$SENTINEL/fd" | wc -l)"
  # More stalled attempts than outbox.concurrency (16) allows in flight at once.
  post stall_more_ 20
  wait_for 30 ok hook stall_more_ 20 || true
  report "then 20 more alerts: webhook deliveries (of 20)" "$(got hook stall_more_)"
  report "SMTP connections accepted / still open" "$(hub smtp_accepted) / $(hub smtp_open)"
  report "email attempts retried / failed" "$(metric 'sentinel_notifications_total{receiver="mail",result="retry"}') / $(metric 'sentinel_notifications_total{receiver="mail",result="failed"}')"
  report "outbox depth" "$(metric sentinel_outbox_depth)"
  report "sidecar open fds" "$(ls "/proc/$SENTINEL/fd" | wc -l)"
  stop
}

case_am_500() {
  echo "== am-500: an Alertmanager answering 500, then 200"
  local receivers="    - name: am
      alertmanagers: [{ urls: [\"$HUB\"], timeout: 2s }]"
  mkdir -p "$WORK/am"
  config "$WORK/am/data" "$receivers" "" am
  curl -fsS "$HUB/reset" >/dev/null
  curl -fsS "$HUB/control?am=500" >/dev/null
  start am-500
  post am_ 3
  sleep 15
  report "requests answered 500 in 15 s" "$(hub am_requests)"
  report "attempts retried / failed / dead" "$(metric 'sentinel_notifications_total{receiver="am",result="retry"}') / $(metric 'sentinel_notifications_total{receiver="am",result="failed"}') / $(metric 'sentinel_notifications_dead_total{receiver="am"}')"
  report "outbox depth while failing" "$(metric sentinel_outbox_depth)"
  curl -fsS "$HUB/control?am=200" >/dev/null
  wait_for 30 ok am am_ 3 || true
  sleep 2
  report "delivered once it answers 200 (of 3)" "$(got am am_)"
  report "outbox depth after recovery" "$(metric sentinel_outbox_depth)"
  report "attempts succeeded" "$(metric 'sentinel_notifications_total{receiver="am",result="success"}')"
  stop
}

for c in "${CASES[@]}"; do
  case "$c" in
    disk-full) case_disk_full ;;
    read-only) case_read_only ;;
    smtp-stall) case_smtp_stall ;;
    am-500) case_am_500 ;;
    *) echo "chaos: unknown case $c (disk-full, read-only, smtp-stall, am-500)" >&2; exit 2 ;;
  esac
  echo
done
