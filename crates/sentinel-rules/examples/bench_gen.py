"""Generates the rule-evaluation benchmark inputs: metrics.prom (10,000 counter series in
10 families) and rules.yml (1,000 rules in 10 groups: recording and alerting, rate,
sum/avg/max by, avg_over_time, topk, templates). Serve metrics.prom to Prometheus
(scrape_interval = evaluation_interval = 5s) and read prometheus_rule_group_last_duration_seconds;
run `cargo run --release -p sentinel-rules --example bench -- metrics.prom rules.yml 10`."""
import random

random.seed(1)
lines = []
for f in range(10):
    name = f"bench_ops_{f}_total"
    lines.append(f"# TYPE {name} counter")
    for i in range(1000):
        lines.append(f'{name}{{instance="host-{i % 50}",job="job-{i % 10}",shard="{i}"}} {random.randint(0, 100000)}')
open("metrics.prom", "w").write("\n".join(lines) + "\n")
rules = ["groups:"]
for g in range(10):
    rules.append(f"  - name: bench{g}")
    rules.append("    rules:")
    for r in range(100):
        f = (g * 100 + r) % 10
        kind = r % 5
        if kind == 0:
            rules.append(f"      - record: job:bench_ops_{f}:rate5m_{g}_{r}\n        expr: sum by (job) (rate(bench_ops_{f}_total[5m]))")
        elif kind == 1:
            rules.append(f"      - alert: High_{g}_{r}\n        expr: rate(bench_ops_{f}_total{{job=\"job-{r % 10}\"}}[5m]) > 1000\n        for: 1m")
        elif kind == 2:
            rules.append(f"      - alert: Any_{g}_{r}\n        expr: max by (instance) (bench_ops_{f}_total) > 50000\n        labels: {{ severity: warning }}\n        annotations: {{ summary: \"{{{{ $labels.instance }}}} at {{{{ $value | humanize }}}}\" }}")
        elif kind == 3:
            rules.append(f"      - record: instance:bench_ops_{f}:avg_{g}_{r}\n        expr: avg by (instance) (avg_over_time(bench_ops_{f}_total[2m]))")
        else:
            rules.append(f"      - alert: Top_{g}_{r}\n        expr: topk(5, bench_ops_{f}_total) > 99000")
open("rules.yml", "w").write("\n".join(rules) + "\n")
