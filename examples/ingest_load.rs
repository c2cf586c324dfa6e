//! Load generator for `POST /api/v1/events` (std only; used by `bench/ingest-load.sh`).
//!
//! ```text
//! ingest_load body --batch 1000 > body.json          # a batch for wrk's Lua script
//! ingest_load throughput --url http://127.0.0.1:9188 --batch 1000 --connections 2 --seconds 10
//! ingest_load rate --url ... --batch 10 --rate 1000 --connections 4 --seconds 60 --pid 1234
//! ```
//! `throughput` posts back to back and reports events/s; `rate` posts open-loop at a
//! fixed rate and measures latency from each request's intended start (so a stall is
//! not hidden by the sender waiting), and with `--pid` samples the server's RSS every
//! 5 s to show whether memory stays flat.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

struct Args {
    mode: String,
    url: String,
    batch: usize,
    connections: usize,
    seconds: f64,
    rate: f64,
    pid: Option<u32>,
    token: Option<String>,
}

fn parse_args() -> Args {
    let mut it = std::env::args().skip(1);
    let mut a = Args {
        mode: it.next().unwrap_or_else(|| "throughput".into()),
        url: "http://127.0.0.1:9188".into(),
        batch: 1000,
        connections: 2,
        seconds: 10.0,
        rate: 1000.0,
        pid: None,
        token: None,
    };
    while let Some(flag) = it.next() {
        let v = it.next().unwrap_or_default();
        match flag.as_str() {
            "--url" => a.url = v,
            "--batch" => a.batch = v.parse().expect("--batch N"),
            "--connections" => a.connections = v.parse().expect("--connections N"),
            "--seconds" => a.seconds = v.parse().expect("--seconds S"),
            "--rate" => a.rate = v.parse().expect("--rate R"),
            "--pid" => a.pid = Some(v.parse().expect("--pid PID")),
            "--token" => a.token = Some(v),
            other => panic!("unknown flag {other}"),
        }
    }
    a
}

/// A batch mixing all four event types over 50 operations and 10 workflows.
fn body(n: usize, seed: usize) -> String {
    let mut out = String::with_capacity(n * 200);
    out.push('[');
    for i in 0..n {
        if i > 0 {
            out.push(',');
        }
        let k = seed.wrapping_mul(31).wrapping_add(i);
        match k % 10 {
            0..=6 => out.push_str(&format!(
                r#"{{"type":"operation","operation":"op_{}","duration_seconds":{}.{:03},"overhead_seconds":0.0{:02},"attempts":{},"outcome":"{}","recovery_seconds":0.{:03},"persistence_seconds":0.00{},"error_class":"transient"}}"#,
                k % 50,
                k % 3,
                k % 1000,
                k % 100,
                1 + k % 3,
                ["success", "recovered", "failed"][k % 3],
                k % 1000,
                1 + k % 9
            )),
            7 => out.push_str(&format!(
                r#"{{"type":"quality","workflow":"wf_{}","metric":"clip_score","value":0.{:02}}}"#,
                k % 10,
                k % 100
            )),
            8 => out.push_str(&format!(
                r#"{{"type":"circuit_breaker","name":"breaker_{}","state":"{}"}}"#,
                k % 5,
                ["closed", "half_open", "open"][k % 3]
            )),
            _ => out.push_str(&format!(
                r#"{{"type":"heartbeat","name":"job_{}","status":"success"}}"#,
                k % 5
            )),
        }
    }
    out.push(']');
    out
}

struct Conn {
    stream: BufReader<TcpStream>,
    host: String,
}

impl Conn {
    fn open(url: &str) -> Conn {
        let host = url
            .strip_prefix("http://")
            .expect("http:// url")
            .trim_end_matches('/')
            .to_string();
        let s = TcpStream::connect(&host).expect("connect");
        s.set_nodelay(true).expect("nodelay");
        Conn {
            stream: BufReader::new(s),
            host,
        }
    }

    /// One request on the kept-alive connection; returns the status.
    fn post(&mut self, body: &[u8], token: Option<&str>) -> u16 {
        let auth = token
            .map(|t| format!("Authorization: Bearer {t}\r\n"))
            .unwrap_or_default();
        let head = format!(
            "POST /api/v1/events HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\n{auth}Content-Length: {}\r\n\r\n",
            self.host,
            body.len()
        );
        let s = self.stream.get_mut();
        s.write_all(head.as_bytes()).expect("write head");
        s.write_all(body).expect("write body");
        let mut line = String::new();
        self.stream.read_line(&mut line).expect("status line");
        let status: u16 = line
            .split_whitespace()
            .nth(1)
            .and_then(|v| v.parse().ok())
            .expect("status");
        let mut len = 0usize;
        loop {
            line.clear();
            self.stream.read_line(&mut line).expect("header");
            if line == "\r\n" || line.is_empty() {
                break;
            }
            if let Some((k, v)) = line.split_once(':') {
                if k.eq_ignore_ascii_case("content-length") {
                    len = v.trim().parse().expect("content-length");
                }
            }
        }
        let mut buf = vec![0; len];
        self.stream.read_exact(&mut buf).expect("body");
        status
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1]
}

fn rss_kib(pid: u32) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    s.lines()
        .find(|l| l.starts_with("VmRSS:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

fn main() {
    let a = parse_args();
    if a.mode == "body" {
        print!("{}", body(a.batch, 0));
        return;
    }
    let bodies: Arc<Vec<Vec<u8>>> =
        Arc::new((0..8).map(|s| body(a.batch, s).into_bytes()).collect());
    let non_ok = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + Duration::from_secs_f64(a.seconds);
    let per_conn_interval =
        (a.mode == "rate").then(|| Duration::from_secs_f64(a.connections as f64 / a.rate));
    let started = Instant::now();
    let sampler = a.pid.map(|pid| {
        std::thread::spawn(move || {
            let mut samples = Vec::new();
            while Instant::now() < deadline {
                if let Some(kib) = rss_kib(pid) {
                    samples.push((started.elapsed().as_secs(), kib));
                }
                std::thread::sleep(Duration::from_secs(5));
            }
            samples
        })
    });
    let workers: Vec<_> = (0..a.connections)
        .map(|c| {
            let bodies = bodies.clone();
            let non_ok = non_ok.clone();
            let url = a.url.clone();
            let token = a.token.clone();
            std::thread::spawn(move || {
                let mut conn = Conn::open(&url);
                let mut latencies = Vec::new();
                // Spread the connections' schedules over one interval.
                let mut next = Instant::now()
                    + per_conn_interval.map_or(Duration::ZERO, |i| i.mul_f64(c as f64 / 8.0));
                let mut i = c;
                while Instant::now() < deadline {
                    let intended = match per_conn_interval {
                        Some(iv) => {
                            let now = Instant::now();
                            if next > now {
                                std::thread::sleep(next - now);
                            }
                            let t = next;
                            next += iv;
                            t
                        }
                        None => Instant::now(),
                    };
                    let status = conn.post(&bodies[i % bodies.len()], token.as_deref());
                    latencies.push(intended.elapsed());
                    if status != 200 {
                        non_ok.fetch_add(1, Ordering::Relaxed);
                    }
                    i += 1;
                }
                latencies
            })
        })
        .collect();
    let mut all: Vec<Duration> = workers
        .into_iter()
        .flat_map(|w| w.join().expect("worker"))
        .collect();
    let elapsed = started.elapsed().as_secs_f64();
    all.sort();
    let requests = all.len() as f64;
    println!(
        "mode={} batch={} connections={} seconds={:.1} requests={} non_200={} req/s={:.0} events/s={:.0}",
        a.mode,
        a.batch,
        a.connections,
        elapsed,
        all.len(),
        non_ok.load(Ordering::Relaxed),
        requests / elapsed,
        requests * a.batch as f64 / elapsed
    );
    println!(
        "latency p50={:.2?} p90={:.2?} p99={:.2?} max={:.2?}",
        percentile(&all, 0.50),
        percentile(&all, 0.90),
        percentile(&all, 0.99),
        all.last().copied().unwrap_or_default()
    );
    if let Some(s) = sampler {
        let samples = s.join().expect("sampler");
        let line: Vec<String> = samples
            .iter()
            .map(|(t, kib)| format!("{t}s:{:.1}MiB", *kib as f64 / 1024.0))
            .collect();
        println!("server RSS {}", line.join(" "));
    }
}
