#!/usr/bin/env bash
# Side-by-side scrape benchmark: comfy-sentinel vs Debian's prometheus-node-exporter on the
# same machine, in one run, with the same method for both:
#   - 200 sequential scrapes (keep-alive) without and with gzip: p50/p99 latency
#   - CPU seconds per scrape (per-thread schedstat CPU time around those scrapes)
#   - throughput: wrk -t2 -c16 -d10s
#   - idle RSS (VmRSS) after warm-up
#   - comfy-sentinel's own CPU over an idle minute at its default intervals (IDLE_SECS)
# Prints a table and the ratios. Needs: cargo, prometheus-node-exporter, wrk, python3.
# Usage: bench/scrape-vs-node-exporter.sh   (IDLE_SECS=60 WRK_SECS=10 to change durations)
set -euo pipefail
cd "$(dirname "$0")/.."
IDLE_SECS=${IDLE_SECS:-60}
WRK_SECS=${WRK_SECS:-10}
SENTINEL_PORT=${SENTINEL_PORT:-19188}
NODE_PORT=${NODE_PORT:-19100}

command -v prometheus-node-exporter >/dev/null || { echo "needs prometheus-node-exporter" >&2; exit 2; }
command -v wrk >/dev/null || { echo "needs wrk" >&2; exit 2; }
TARGET_DIR=${CARGO_TARGET_DIR:-target}
cargo build --release --quiet --bin comfy-sentinel
work=$(mktemp -d)
trap 'kill $S_PID $N_PID 2>/dev/null || true; rm -rf "$work"' EXIT

cat > "$work/sentinel.yaml" <<YAML
data_dir: $work/data
YAML
"$TARGET_DIR"/release/comfy-sentinel run --config "$work/sentinel.yaml" --listen 127.0.0.1:$SENTINEL_PORT 2>"$work/sentinel.log" &
S_PID=$!
# node_exporter with its defaults, as users run it.
prometheus-node-exporter --web.listen-address=127.0.0.1:$NODE_PORT >"$work/node.log" 2>&1 &
N_PID=$!
for url in "http://127.0.0.1:$SENTINEL_PORT/readyz" "http://127.0.0.1:$NODE_PORT/metrics"; do
  for _ in $(seq 1 100); do curl -fsS -o /dev/null "$url" 2>/dev/null && break; sleep 0.1; done
done
sleep 6   # one full collection cycle at the default 5 s interval

python3 - "$S_PID" "$SENTINEL_PORT" "$N_PID" "$NODE_PORT" "$WRK_SECS" "$IDLE_SECS" <<'PY'
import http.client, os, re, subprocess, sys, time
s_pid, s_port, n_pid, n_port, wrk_secs, idle_secs = sys.argv[1:]
tck = os.sysconf("SC_CLK_TCK")

def cpu(pid):
    # Nanosecond CPU time summed over every thread (schedstat), finer than the 10 ms
    # ticks of /proc/PID/stat; falls back to stat's utime+stime.
    try:
        total = 0
        for t in os.listdir(f"/proc/{pid}/task"):
            total += int(open(f"/proc/{pid}/task/{t}/schedstat").read().split()[0])
        return total / 1e9
    except OSError:
        f = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
        return (int(f[11]) + int(f[12])) / tck

def rss(pid):
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024

def scrapes(port, pid, gzip, n=200):
    c = http.client.HTTPConnection("127.0.0.1", int(port))
    hdrs = {"Accept-Encoding": "gzip"} if gzip else {}
    lat, size = [], 0
    c0 = cpu(pid)
    for _ in range(n):
        t = time.perf_counter()
        c.request("GET", "/metrics", headers=hdrs)
        r = c.getresponse(); body = r.read()
        lat.append(time.perf_counter() - t)
        size = len(body)
        assert r.status == 200
    c1 = cpu(pid)
    lat.sort()
    return {"p50": lat[n // 2], "p99": lat[int(n * 0.99) - 1], "cpu": (c1 - c0) / n, "bytes": size}

def wrk(port):
    out = subprocess.run(["wrk", "-t2", "-c16", f"-d{wrk_secs}s", f"http://127.0.0.1:{port}/metrics"],
                         capture_output=True, text=True).stdout
    m = re.search(r"Requests/sec:\s+([\d.]+)", out)
    return float(m.group(1)) if m else float("nan")

res = {}
for name, port, pid in (("comfy-sentinel", s_port, s_pid), ("node_exporter", n_port, n_pid)):
    r = {"rss": rss(pid)}
    r["plain"] = scrapes(port, pid, False)
    r["gzip"] = scrapes(port, pid, True)
    r["rps"] = wrk(port)
    res[name] = r

s, n = res["comfy-sentinel"], res["node_exporter"]
ms = lambda v: f"{v*1e3:.3f} ms"
rows = [
    ("scrape p50 (plain)", ms(s["plain"]["p50"]), ms(n["plain"]["p50"]), n["plain"]["p50"] / s["plain"]["p50"]),
    ("scrape p99 (plain)", ms(s["plain"]["p99"]), ms(n["plain"]["p99"]), n["plain"]["p99"] / s["plain"]["p99"]),
    ("scrape p99 (gzip)", ms(s["gzip"]["p99"]), ms(n["gzip"]["p99"]), n["gzip"]["p99"] / s["gzip"]["p99"]),
    ("CPU per scrape (plain)", ms(s["plain"]["cpu"]), ms(n["plain"]["cpu"]), n["plain"]["cpu"] / max(s["plain"]["cpu"], 1e-9)),
    ("CPU per scrape (gzip)", ms(s["gzip"]["cpu"]), ms(n["gzip"]["cpu"]), n["gzip"]["cpu"] / max(s["gzip"]["cpu"], 1e-9)),
    ("throughput (wrk -t2 -c16)", f"{s['rps']:.0f} req/s", f"{n['rps']:.0f} req/s", s["rps"] / n["rps"]),
    ("idle RSS", f"{s['rss']/2**20:.1f} MiB", f"{n['rss']/2**20:.1f} MiB", n["rss"] / s["rss"]),
    ("body size (plain)", f"{s['plain']['bytes']} B", f"{n['plain']['bytes']} B", float("nan")),
]
print(f"{'measure':28} {'comfy-sentinel':>16} {'node_exporter':>16} {'advantage':>10}")
for r in rows:
    print(f"{r[0]:28} {r[1]:>16} {r[2]:>16} {r[3]:>9.1f}x")
print("(advantage: node_exporter / comfy-sentinel for costs, comfy-sentinel / node_exporter for throughput)")

# The sidecar's own CPU at its default intervals, nobody scraping.
c0, t0 = cpu(s_pid), time.time()
time.sleep(int(idle_secs))
c1, t1 = cpu(s_pid), time.time()
print(f"comfy-sentinel idle CPU over {int(t1-t0)} s at default intervals: {100*(c1-c0)/(t1-t0):.3f}% of one core")
PY
