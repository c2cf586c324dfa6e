#!/usr/bin/env python3
"""Generates HOURS of the series in a plain-text /metrics scrape at INTERVAL seconds as
OpenMetrics with timestamps (series one after the other, each in time order, `# EOF`
last), ending now. Values are synthetic but shaped like the real ones: counters
(`_total`, `_count`, `_sum`, `_bucket`, `_seconds_total`) grow by random steps (often 0),
most gauges hold still, the others walk in small steps. Deterministic (seeded).

Usage: gen_openmetrics.py SCRAPE HOURS INTERVAL > day.om
"""
import random
import sys
import time


def main():
    scrape, hours, interval = sys.argv[1], float(sys.argv[2]), int(sys.argv[3])
    series = []
    for line in open(scrape, encoding="utf-8"):
        if not line.strip() or line.startswith("#"):
            continue
        if "}" in line:
            i = line.rindex("}")
            name_labels, rest = line[: i + 1], line[i + 1 :].split()
        else:
            parts = line.split()
            name_labels, rest = parts[0], parts[1:]
        try:
            v = float(rest[0])
        except (ValueError, IndexError):
            continue
        series.append((name_labels, v))
    rnd = random.Random(11)
    end = int(time.time()) // interval * interval - interval
    n = int(hours * 3600 / interval)
    start = end - (n - 1) * interval
    out = sys.stdout
    for name_labels, v in series:
        name = name_labels.split("{", 1)[0]
        counter = name.endswith(("_total", "_count", "_sum", "_bucket"))
        moving = counter or rnd.random() < 0.3
        step = max(abs(v) * 0.01, 1.0)
        lines = []
        for k in range(n):
            if moving:
                if counter:
                    if rnd.random() < 0.5:
                        v += rnd.randint(1, 100)
                else:
                    v += rnd.choice((-1, 0, 0, 1)) * step
            lines.append(f"{name_labels} {v!r} {start + k * interval}\n")
        out.write("".join(lines))
    out.write("# EOF\n")


if __name__ == "__main__":
    main()
