#!/usr/bin/env bash
# Cross-checks comfy-sentinel's GPU collector against nvidia-smi on a host with NVIDIA
# GPUs: starts the sidecar, scrapes /metrics, queries nvidia-smi, and compares every
# value within a tolerance. Exit 0: all match; 1: a mismatch; 2: setup problem.
#
# usage: scripts/gpu-vs-nvidia-smi.sh [path/to/comfy-sentinel]
#   The binary defaults to $SENTINEL_BIN, then target/release, then target/debug.
# Tolerances (environment, defaults in brackets): UTIL_TOL_PCT [10] percentage points,
# MEM_USED_TOL_MIB [64], MEM_TOTAL_TOL_MIB [1], TEMP_TOL_C [2], POWER_TOL_W [10] or
# POWER_TOL_PCT [10] of the reading (the larger), POWER_LIMIT_TOL_W [1],
# SM_CLOCK_TOL_PCT [10] (at least 50 MHz), MEM_CLOCK_TOL_PCT [5] (at least 20 MHz).
# ALLOW_EXTRA=1 accepts values the sidecar reports where nvidia-smi prints [N/A].
#
# nvidia-smi's output, per `nvidia-smi --help-query-gpu` and --format=csv,noheader,nounits:
# one line per GPU, fields separated by ", ", no units; memory in MiB, power in W with
# two decimals, clocks in MHz, temperature in degrees C, utilization in percent.
# Unavailable fields print as a bracketed token such as [N/A] or [Not Supported].
# Utilization, power draw and clocks move between two reads: compare on an idle or
# steadily loaded GPU.

set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
bin=${1:-${SENTINEL_BIN:-}}
if [[ -z "$bin" ]]; then
  for c in "$here/target/release/comfy-sentinel" "$here/target/debug/comfy-sentinel"; do
    if [[ -x "$c" ]]; then bin=$c; break; fi
  done
fi
if [[ -z "$bin" || ! -x "$bin" ]]; then
  echo "no comfy-sentinel binary: build it (cargo build --release) or pass its path" >&2
  exit 2
fi
for tool in nvidia-smi curl awk; do
  command -v "$tool" >/dev/null || { echo "$tool is required" >&2; exit 2; }
done

port=${PORT:-19188}
tmp=$(mktemp -d)
pid=""
cleanup() {
  if [[ -n "$pid" ]]; then kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; fi
  rm -rf "$tmp"
}
trap cleanup EXIT

cat >"$tmp/config.yaml" <<EOF
data_dir: $tmp/data
collectors:
  gpu:
    enabled: true
    interval: 1s
    timeout: 1s
EOF

"$bin" run --listen "127.0.0.1:$port" --config "$tmp/config.yaml" >"$tmp/log" 2>&1 &
pid=$!

url="http://127.0.0.1:$port/metrics"
up=""
for _ in $(seq 1 60); do
  if body=$(curl -fsS "$url" 2>/dev/null); then
    up=$(printf '%s\n' "$body" | awk '$1 == "gpu_nvml_up" { print $2 }')
    [[ "$up" == "1" ]] && break
  fi
  sleep 0.5
done
if [[ "$up" != "1" ]]; then
  echo "comfy-sentinel did not load NVML (gpu_nvml_up=${up:-missing}); log:" >&2
  cat "$tmp/log" >&2
  exit 2
fi
# One more collection so the values are at most one interval old.
sleep 1.2

nvidia-smi --query-gpu=index,uuid,name,utilization.gpu,memory.used,memory.total,temperature.gpu,power.draw,power.limit,clocks.sm,clocks.mem \
  --format=csv,noheader,nounits >"$tmp/smi.csv"
curl -fsS "$url" >"$tmp/metrics"

awk -F ', ' \
  -v util_tol="${UTIL_TOL_PCT:-10}" \
  -v mem_used_tol="${MEM_USED_TOL_MIB:-64}" \
  -v mem_total_tol="${MEM_TOTAL_TOL_MIB:-1}" \
  -v temp_tol="${TEMP_TOL_C:-2}" \
  -v power_tol="${POWER_TOL_W:-10}" \
  -v power_pct="${POWER_TOL_PCT:-10}" \
  -v limit_tol="${POWER_LIMIT_TOL_W:-1}" \
  -v sm_pct="${SM_CLOCK_TOL_PCT:-10}" \
  -v mem_pct="${MEM_CLOCK_TOL_PCT:-5}" \
  -v allow_extra="${ALLOW_EXTRA:-0}" '
  function label(labels, key,    re, s) {
    re = "(^|,)" key "=\"[^\"]*\""
    if (!match(labels, re)) return ""
    s = substr(labels, RSTART, RLENGTH)
    sub(/^,/, "", s)
    sub("^" key "=\"", "", s)
    sub(/"$/, "", s)
    return s
  }
  function abs(x) { return x < 0 ? -x : x }
  function max(a, b) { return a > b ? a : b }
  function na(v) { return v ~ /^\[.*\]$/ || v == "N/A" || v == "" }
  # Compares one field: s is the nvidia-smi text, key the scraped series, scale turns
  # the scraped base unit into the nvidia-smi unit, tol the allowed difference.
  function check(gpu, field, s, key, scale, tol,    have, o) {
    have = (key in val)
    if (na(s)) {
      if (have && !allow_extra) {
        printf "MISMATCH gpu %s %s: nvidia-smi %s, sidecar %s\n", gpu, field, s, val[key] * scale
        bad++
      } else {
        printf "ok       gpu %s %s: nvidia-smi %s, sidecar %s\n", gpu, field, s, have ? val[key] * scale : "absent"
      }
      return
    }
    if (!have) {
      printf "MISMATCH gpu %s %s: nvidia-smi %s, sidecar absent\n", gpu, field, s
      bad++
      return
    }
    o = val[key] * scale
    if (abs(o - s) > tol) {
      printf "MISMATCH gpu %s %s: nvidia-smi %s, sidecar %.2f (tolerance %.2f)\n", gpu, field, s, o, tol
      bad++
    } else {
      printf "ok       gpu %s %s: nvidia-smi %s, sidecar %.2f\n", gpu, field, s, o
    }
  }
  # First file: the scrape.
  FNR == NR {
    if ($0 ~ /^#/ || $0 == "") next
    line = $0
    brace = index(line, "{")
    if (brace == 0) {
      split(line, kv, " ")
      if (kv[1] == "gpu_devices") devices = kv[2]
      next
    }
    name = substr(line, 1, brace - 1)
    close_at = index(line, "} ")
    labels = substr(line, brace + 1, close_at - brace - 1)
    value = substr(line, close_at + 2)
    gpu = label(labels, "gpu")
    if (name == "gpu_info") {
      uuid[gpu] = label(labels, "uuid")
      gname[gpu] = label(labels, "name")
    }
    val[name "|" gpu] = value + 0
    next
  }
  # Second file: nvidia-smi, one GPU per line.
  {
    n++
    gpu = $1
    if (!(gpu in uuid)) {
      printf "MISMATCH gpu %s: nvidia-smi lists it, the sidecar has no gpu_info for it\n", gpu
      bad++
      next
    }
    if (uuid[gpu] != $2) { printf "MISMATCH gpu %s uuid: nvidia-smi %s, sidecar %s\n", gpu, $2, uuid[gpu]; bad++ }
    else printf "ok       gpu %s uuid %s\n", gpu, $2
    if (gname[gpu] != $3) { printf "MISMATCH gpu %s name: nvidia-smi %s, sidecar %s\n", gpu, $3, gname[gpu]; bad++ }
    else printf "ok       gpu %s name %s\n", gpu, $3
    check(gpu, "utilization.gpu [%]", $4, "gpu_utilization_ratio|" gpu, 100, util_tol)
    check(gpu, "memory.used [MiB]", $5, "gpu_memory_used_bytes|" gpu, 1 / 1048576, mem_used_tol)
    check(gpu, "memory.total [MiB]", $6, "gpu_memory_total_bytes|" gpu, 1 / 1048576, mem_total_tol)
    check(gpu, "temperature.gpu [C]", $7, "gpu_temperature_celsius|" gpu, 1, temp_tol)
    check(gpu, "power.draw [W]", $8, "gpu_power_usage_watts|" gpu, 1, na($8) ? 0 : max(power_tol, $8 * power_pct / 100))
    check(gpu, "power.limit [W]", $9, "gpu_power_limit_watts|" gpu, 1, limit_tol)
    check(gpu, "clocks.sm [MHz]", $10, "gpu_sm_clock_hertz|" gpu, 1e-6, na($10) ? 0 : max(50, $10 * sm_pct / 100))
    check(gpu, "clocks.mem [MHz]", $11, "gpu_memory_clock_hertz|" gpu, 1e-6, na($11) ? 0 : max(20, $11 * mem_pct / 100))
  }
  END {
    if (devices != n) {
      printf "MISMATCH device count: nvidia-smi %d, sidecar gpu_devices %s\n", n, devices
      bad++
    }
    if (bad) { printf "%d mismatch(es)\n", bad; exit 1 }
    printf "all values of %d GPU(s) match\n", n
  }
' "$tmp/metrics" "$tmp/smi.csv"
