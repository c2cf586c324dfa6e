#!/usr/bin/env bash
# Writes link/steady-state.order: the functions of the binary that run at steady state,
# most instructions first, for the linker to place together (build.rs; docs/benchmarks.md,
# "Footprint"). Runs the sidecar under callgrind with instrumentation off through
# start-up, switches it on SETTLE seconds after /readyz answers, then for SECS seconds
# scrapes it every second (3 plain, 1 gzip), sends it an ingest batch and health probes,
# while its collectors and rule evaluations run at their default intervals; every
# function of the binary that executed in that window is listed.
# Needs: valgrind (callgrind_control), curl, python3, nm.
# Usage: bench/code-order.sh     (SECS=70 SETTLE=5; BIN=path to skip the build)
set -euo pipefail
cd "$(dirname "$0")/.."
SECS=${SECS:-70}
SETTLE=${SETTLE:-5}
PORT=${PORT:-19488}
for t in valgrind callgrind_control curl python3 nm; do
  command -v $t >/dev/null || { echo "needs $t" >&2; exit 2; }
done
if [ -z "${BIN:-}" ]; then
  cargo build --release --quiet --bin comfy-sentinel
  BIN=${CARGO_TARGET_DIR:-target}/release/comfy-sentinel
fi
BIN=$(readlink -f "$BIN")
work=$(mktemp -d)
trap 'kill -9 ${S_PID:-} 2>/dev/null || true; rm -rf "$work"' EXIT
echo "data_dir: $work/data" > "$work/sentinel.yaml"
valgrind --tool=callgrind --demangle=no --instr-atstart=no \
  --callgrind-out-file="$work/cg.out" \
  "$BIN" run --config "$work/sentinel.yaml" --listen 127.0.0.1:$PORT 2>"$work/sentinel.log" &
S_PID=$!
for _ in $(seq 1 120); do
  curl -fsS -m 5 -o /dev/null "http://127.0.0.1:$PORT/readyz" 2>/dev/null && break
  sleep 1
done
sleep "$SETTLE"
callgrind_control -i on $S_PID >/dev/null
events='[{"type":"operation","operation":"load_model","duration_seconds":1.2,"overhead_seconds":0.01,"attempts":2,"outcome":"recovered","recovery_seconds":0.3,"persistence_seconds":0.002,"error_class":"transient"},{"type":"heartbeat","name":"nightly-backup","status":"success"}]'
end=$((SECONDS + SECS))
while [ $SECONDS -lt $end ]; do
  for _ in 1 2 3; do curl -sS -m 10 -o /dev/null "http://127.0.0.1:$PORT/metrics" || true; done
  curl -sS -m 10 -o /dev/null -H 'Accept-Encoding: gzip' "http://127.0.0.1:$PORT/metrics" || true
  curl -sS -m 10 -o /dev/null -H 'Content-Type: application/json' -d "$events" \
    "http://127.0.0.1:$PORT/api/v1/events" || true
  curl -sS -m 10 -o /dev/null "http://127.0.0.1:$PORT/healthz" || true
  curl -sS -m 10 -o /dev/null "http://127.0.0.1:$PORT/readyz" || true
  sleep 1
done
callgrind_control -d $S_PID >/dev/null
sleep 1
python3 - "$BIN" "$work"/cg.out.1 > link/steady-state.order <<'PY'
import collections, re, subprocess, sys
binp, path = sys.argv[1], sys.argv[2]
names = {"fn": {}, "ob": {}}
cur_ob = cur_fn = None
cost, obj_of = collections.Counter(), {}
head = re.compile(r"^(c?)(fn|ob)=\((\d+)\)(?: (.*))?$")
for line in open(path):
    m = head.match(line.rstrip("\n"))
    if m:
        called, kind, i, name = m.groups()
        if name:
            names[kind][i] = name
        if not called:
            if kind == "ob":
                cur_ob = names["ob"][i]
            else:
                cur_fn = names["fn"][i]
                obj_of[cur_fn] = cur_ob
        continue
    parts = line.split()
    if cur_fn and len(parts) >= 2 and (line[:1].isdigit() or line[:1] in "+-*"):
        try:
            cost[cur_fn] += int(parts[1])
        except ValueError:
            pass
size = {}
for l in subprocess.run(["nm", "-S", binp], capture_output=True, text=True, check=True).stdout.splitlines():
    a = l.split()
    if len(a) == 4 and a[2] in "tT":
        size[a[3]] = int(a[1], 16)
ran = [f for f, o in obj_of.items() if o == binp and f in size]
ran.sort(key=lambda f: -cost[f])
print("\n".join(ran))
print(f"{len(ran)} functions, {sum(size[f] for f in ran)} bytes", file=sys.stderr)
PY
echo "wrote link/steady-state.order" >&2
