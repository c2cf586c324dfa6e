//! Query limits through the real binary (issue: hostile queries exhausted memory, kept a
//! core busy after their 503, and freed their concurrency slot while still running).
//! Each attack from the issue must now end fast with Prometheus's error, leave the slot
//! free, and keep RSS growth under the documented 256 MB per-query budget.
//! The figures (RSS, timings) are printed; run with `--nocapture` to see them.

use crate::util::percent_encode as enc;
use crate::util::*;
use std::time::{Duration, Instant};

/// The documented budget: one query never raises RSS by more than this.
const RSS_BUDGET_KB: u64 = 256 * 1024;

/// `(VmRSS, VmHWM)` of a process, in kB.
fn rss_kb(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let field = |name: &str| -> u64 {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// User + system CPU time of a process, in clock ticks.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // Fields 14 and 15 of stat (utime, stime); `rest` starts at field 3.
    f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap()
}

/// POSTs a query; returns (status, parsed body, elapsed).
fn query(s: &Sentinel, q: &str) -> (u16, serde_json::Value, Duration) {
    query_at(&s.url("/api/v1/query"), q)
}

fn query_at(url: &str, q: &str) -> (u16, serde_json::Value, Duration) {
    let t0 = Instant::now();
    let body = format!("query={}&time=1700000000", enc(q));
    let (status, _, b) = http_request(
        "POST",
        url,
        &[("Content-Type", "application/x-www-form-urlencoded")],
        body.as_bytes(),
    )
    .expect("query answered");
    let v = serde_json::from_slice(&b)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&b)));
    (status, v, t0.elapsed())
}

fn doubling_label_replace(depth: usize) -> String {
    let mut q = format!(
        "label_replace(vector(1), \"a\", \"{}\", \"\", \"\")",
        "x".repeat(64)
    );
    for _ in 0..depth {
        q = format!("label_replace({q}, \"a\", \"$1$1\", \"a\", \"(.*)\")");
    }
    q
}

fn nested_max_over_time(depth: usize) -> String {
    let mut q = "vector(1)".to_string();
    for _ in 0..depth {
        q = format!("max_over_time({q}[1m:1m])");
    }
    q
}

fn start(config: &str) -> (Sentinel, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    (Sentinel::start_ready_in(dir.path(), config), dir)
}

fn mb(kb: u64) -> f64 {
    kb as f64 / 1024.0
}

#[test]
fn query_attacks_end_fast_with_prometheus_errors_and_rss_stays_in_budget() {
    let (s, _dir) = start("");
    let pid = s.child.id();
    // Warm up the query path so the baseline includes its threads and buffers.
    for _ in 0..3 {
        assert_eq!(query(&s, "sum(vector(1))").0, 200);
    }
    std::thread::sleep(Duration::from_millis(300));
    let (base, base_hwm) = rss_kb(pid);
    eprintln!(
        "baseline: VmRSS {:.1} MB, VmHWM {:.1} MB",
        mb(base),
        mb(base_hwm)
    );

    // 1. label_replace nested 27 deep, doubling a label value at each level.
    let q = doubling_label_replace(27);
    let (status, v, took) = query(&s, &q);
    let (rss, hwm) = rss_kb(pid);
    eprintln!(
        "nested label_replace ({} B): {status} in {took:?}; VmRSS {:.1} MB, VmHWM {:.1} MB",
        q.len(),
        mb(rss),
        mb(hwm)
    );
    assert_eq!(status, 422, "{v}");
    assert_eq!(v["errorType"], "execution", "{v}");
    assert!(
        v["error"].as_str().unwrap().contains("bytes of label sets"),
        "{v}"
    );
    assert!(took < Duration::from_secs(10), "{took:?}");

    // 2. Three parallel 100000d:1ms subqueries.
    let t0 = Instant::now();
    let url = s.url("/api/v1/query");
    let answers: Vec<_> = std::thread::scope(|sc| {
        let hs: Vec<_> = (0..3)
            .map(|_| sc.spawn(|| query_at(&url, "sum_over_time(vector(1)[100000d:1ms])")))
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let took = t0.elapsed();
    let (rss, hwm) = rss_kb(pid);
    eprintln!(
        "3 x sum_over_time(vector(1)[100000d:1ms]): {:?} in {took:?}; VmRSS {:.1} MB, VmHWM {:.1} MB",
        answers.iter().map(|a| a.0).collect::<Vec<_>>(),
        mb(rss),
        mb(hwm)
    );
    for (status, v, _) in &answers {
        assert_eq!(*status, 400, "{v}");
        assert_eq!(v["errorType"], "bad_data", "{v}");
        assert!(
            v["error"]
                .as_str()
                .unwrap()
                .starts_with("exceeded maximum resolution of 11,000 points per timeseries"),
            "{v}"
        );
    }
    assert!(took < Duration::from_secs(5), "{took:?}");

    // 3. max_over_time nested 150 deep over [1m:1m] subqueries.
    let (status, v, took) = query(&s, &nested_max_over_time(150));
    let (rss, hwm) = rss_kb(pid);
    eprintln!(
        "max_over_time nested 150 deep: {status} in {took:?}; VmRSS {:.1} MB, VmHWM {:.1} MB",
        mb(rss),
        mb(hwm)
    );
    assert_eq!(status, 400, "{v}");
    assert_eq!(v["errorType"], "bad_data", "{v}");
    assert!(
        v["error"]
            .as_str()
            .unwrap()
            .contains("nested more than 64 deep"),
        "{v}"
    );
    assert!(took < Duration::from_secs(5), "{took:?}");
    // 20 deep passes the nesting limit; the cumulative resolution refuses it.
    let (status, v, took) = query(&s, &nested_max_over_time(20));
    eprintln!("max_over_time nested 20 deep: {status} in {took:?}");
    assert_eq!(status, 400, "{v}");
    assert!(
        v["error"].as_str().unwrap().contains("nested subqueries"),
        "{v}"
    );
    // 300 nested calls (1.5 KB) overflowed the evaluation thread's stack before.
    let deep = format!("{}vector(1){}", "abs(".repeat(300), ")".repeat(300));
    let (status, v, _) = query(&s, &deep);
    assert_eq!(status, 400, "{v}");

    // Nothing keeps running afterwards: the process is idle and both slots are free.
    let cpu0 = cpu_ticks(pid);
    std::thread::sleep(Duration::from_secs(2));
    let idle = cpu_ticks(pid) - cpu0;
    eprintln!("CPU ticks in 2 s after the attacks: {idle}");
    assert!(idle < 100, "{idle} ticks of CPU in 2 s: work still running");
    let t0 = Instant::now();
    std::thread::scope(|sc| {
        let hs: Vec<_> = (0..2).map(|_| sc.spawn(|| query_at(&url, "1+1"))).collect();
        for h in hs {
            assert_eq!(h.join().unwrap().0, 200);
        }
    });
    assert!(t0.elapsed() < Duration::from_secs(2), "{:?}", t0.elapsed());

    let (rss, hwm) = rss_kb(pid);
    eprintln!(
        "after: VmRSS {:.1} MB (+{:.1} MB), VmHWM {:.1} MB (+{:.1} MB over the baseline RSS)",
        mb(rss),
        mb(rss.saturating_sub(base)),
        mb(hwm),
        mb(hwm.saturating_sub(base))
    );
    assert!(
        hwm.saturating_sub(base) < RSS_BUDGET_KB,
        "peak RSS grew by {:.1} MB",
        mb(hwm - base)
    );
    // Still serving.
    assert!(!scrape(&s).is_empty());
}

#[test]
fn timed_out_query_holds_its_slot_until_the_work_stops_and_then_frees_it() {
    // Without the resolution cap only the deadline can stop a 2^30 subquery nest.
    let (s, _dir) = start(
        "query:\n  timeout: 500ms\n  max_concurrent: 1\n  max_points_per_series: 1000000000000000000\n",
    );
    let pid = s.child.id();
    let attack = nested_max_over_time(30);
    // The attack and an ordinary query behind it on the single slot.
    let url = s.url("/api/v1/query");
    let (a, b) = std::thread::scope(|sc| {
        let a = sc.spawn(|| query_at(&url, &attack));
        std::thread::sleep(Duration::from_millis(100));
        let b = sc.spawn(|| {
            let r = query_at(&url, "1+1");
            (r, Instant::now())
        });
        (a.join().unwrap(), b.join().unwrap())
    });
    let (status, v, took) = a;
    eprintln!("deadline 500ms: {status} {v} in {took:?}");
    assert_eq!(status, 503, "{v}");
    assert_eq!(v["errorType"], "timeout");
    assert_eq!(v["error"], "query timed out in expression evaluation");
    assert!(took < Duration::from_secs(3), "{took:?}");
    // The second query waited for the slot, then ran.
    assert_eq!((b.0).0, 200, "{}", (b.0).1);
    // Repeats do not pile up stuck evaluations.
    for _ in 0..5 {
        assert_eq!(query(&s, &attack).0, 503);
    }
    let cpu0 = cpu_ticks(pid);
    std::thread::sleep(Duration::from_secs(2));
    let idle = cpu_ticks(pid) - cpu0;
    eprintln!("CPU ticks in 2 s after 6 timed-out queries: {idle}");
    assert!(
        idle < 100,
        "{idle} ticks in 2 s: an evaluation kept running"
    );
    let (status, _, took) = query(&s, "1+1");
    assert_eq!(status, 200);
    assert!(took < Duration::from_secs(1), "slot not free: {took:?}");
}

#[test]
fn samples_cap_answers_422_in_prometheus_shape() {
    let (s, _dir) = start("query:\n  max_samples: 1000\n");
    let (status, v, _) = query(&s, "sum_over_time(vector(1)[3000s:1s])");
    assert_eq!(status, 422, "{v}");
    assert_eq!(
        v,
        serde_json::json!({
            "status": "error",
            "errorType": "execution",
            "error": "query processing would load too many samples into memory in query execution"
        })
    );
    assert_eq!(query(&s, "sum_over_time(vector(1)[500s:1s])").0, 200);
    // `gate` asks the same API: a criterion over the limit is a NO-GO naming the limit.
    let dir = tempfile::tempdir().unwrap();
    let criteria = temp_file(
        dir.path(),
        "gate.yaml",
        "criteria:\n  - name: heavy\n    query: sum_over_time(vector(1)[3000s:1s])\n    max: 1e9\n  - name: light\n    query: vector(1)\n    max: 2\n",
    );
    let out = std::process::Command::new(bin())
        .args(["gate", "--url", &s.url(""), "--criteria"])
        .arg(&criteria)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains(
            "422 Unprocessable Entity, execution): query processing would load too many samples"
        ),
        "{stdout}"
    );
    assert!(stdout.contains("NO-GO"), "{stdout}");
}

#[test]
fn out_of_range_duration_and_time_are_400_with_the_reason() {
    let (s, _dir) = start("");
    let (status, v, _) = query(&s, "rate(x[99999999999y])");
    assert_eq!(status, 400, "{v}");
    let e = v["error"].as_str().unwrap();
    let e = e.strip_prefix("invalid parameter \"query\": ").unwrap_or(e);
    assert!(
        e.starts_with("1:8: ") && e.contains("duration out of range"),
        "{e}"
    );
    let (status, _, body) = http_get(&s.url("/api/v1/query?query=1&time=1e300"), &[]).unwrap();
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(status, 400, "{v}");
    assert_eq!(v["errorType"], "bad_data");
    assert!(v["error"].as_str().unwrap().contains("out of range"), "{v}");
}

#[test]
fn rule_hitting_a_query_limit_fails_its_evaluation_and_the_engine_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let rules = temp_file(
        dir.path(),
        "r.yaml",
        &format!(
            "groups:\n  - name: hostile\n    interval: 1s\n    rules:\n      - record: too_deep\n        expr: '{}'\n      - record: fine\n        expr: vector(1)\n",
            nested_max_over_time(20)
        ),
    );
    let (s, _dir2) = start(&format!(
        "rules:\n  files: [{:?}]\n",
        rules.display().to_string()
    ));
    let text = wait_scrape(&s, Duration::from_secs(20), |text| {
        let failures = text
            .lines()
            .find(|l| l.starts_with("sentinel_rule_evaluation_failures_total{group=\"hostile\"}"))
            .and_then(|l| l.split_whitespace().last())
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0);
        if failures >= 2.0 {
            vec![]
        } else {
            vec!["two failures counted for the hostile group".into()]
        }
    });
    assert!(
        text.contains("sentinel_rule_health{group=\"hostile\",rule=\"too_deep\"} 0"),
        "{text}"
    );
    assert!(
        text.contains("sentinel_rule_health{group=\"hostile\",rule=\"fine\"} 1"),
        "{text}"
    );
    assert!(
        s.logs().contains("exceeded maximum resolution"),
        "{}",
        s.logs()
    );
    assert_eq!(query(&s, "fine").0, 200);
}

#[test]
fn query_section_is_validated_with_its_location() {
    let dir = tempfile::tempdir().unwrap();
    let check = |body: &str| {
        let cfg = temp_file(dir.path(), "c.yaml", body);
        let out = std::process::Command::new(bin())
            .args(["check", "--config"])
            .arg(&cfg)
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).to_string(),
        )
    };
    let (code, err) = check("query:\n  max_samples: 0\n");
    assert_ne!(code, Some(0));
    assert!(
        err.contains("c.yaml:2:16: query.max_samples: must be greater than 0"),
        "{err}"
    );
    let (code, err) = check("query:\n  max_sample: 10\n");
    assert_ne!(code, Some(0));
    assert!(
        err.contains("c.yaml:2:3: query.max_sample: unknown field"),
        "{err}"
    );
    let (code, err) = check("query:\n  timeout: 2s\n  max_concurrent: 4\n");
    assert_eq!(code, Some(0), "{err}");
}
