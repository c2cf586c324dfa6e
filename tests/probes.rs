//! Dependency probes against servers started here: TCP open and closed, HTTP status
//! and redirects, a hung server that must not hold up the others, TLS with a
//! self-signed certificate made in the test (its expiry read back), and the probes
//! end to end in the running binary.

use crate::support::exposition::{series_key, Exposition};
use crate::support::process::{free_port, KillOnDrop};
use crate::support::prometheus::promtool_check_metrics;
use crate::util::*;
use comfy_sentinel::collect::probes::{families, ProbeResult, ProbesCollector, ProbesConfig};
use comfy_sentinel::metrics::MetricFamily;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// Reads one request head; returns its target, or None when the peer went away.
async fn read_head<S: tokio::io::AsyncRead + Unpin>(s: &mut S) -> Option<String> {
    let head = read_full_head(s).await?;
    head.split_whitespace().nth(1).map(str::to_string)
}

async fn read_full_head<S: tokio::io::AsyncRead + Unpin>(s: &mut S) -> Option<String> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 1024];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
        match s.read(&mut chunk).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
    Some(String::from_utf8_lossy(&buf).to_string())
}

fn response(target: &str) -> String {
    let (status, extra) = match target {
        "/ok" => ("200 OK", ""),
        "/fail" => ("500 Internal Server Error", ""),
        "/redirect" => ("302 Found", "Location: /ok\r\n"),
        "/loop" => ("302 Found", "Location: /loop\r\n"),
        _ => ("404 Not Found", ""),
    };
    format!("HTTP/1.1 {status}\r\n{extra}Content-Length: 5\r\nConnection: close\r\n\r\nhello")
}

/// A plain HTTP server answering per path (see `response`); `/hang` reads the request
/// and never answers; `/auth` answers 200 only with `Authorization: Bearer sekrit`,
/// `/vhost` only with a single `Host: app.example`.
async fn http_server() -> String {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            tokio::spawn(async move {
                let Some(head) = read_full_head(&mut s).await else {
                    return;
                };
                let mut target = head.split_whitespace().nth(1).unwrap_or("").to_string();
                if target == "/vhost" {
                    let lower = head.to_ascii_lowercase();
                    let one_host = lower.matches("\r\nhost:").count() == 1;
                    let vhost = lower.contains("\r\nhost: app.example\r\n");
                    target = if one_host && vhost { "/ok" } else { "/fail" }.to_string();
                }
                if target == "/auth" {
                    let authorized = head
                        .to_ascii_lowercase()
                        .contains("\r\nauthorization: bearer sekrit\r\n");
                    target = if authorized { "/ok" } else { "/fail" }.to_string();
                }
                if target == "/hang" {
                    let _ = s.read(&mut [0u8; 1]).await;
                    return;
                }
                let _ = s.write_all(response(&target).as_bytes()).await;
            });
        }
    });
    format!("http://{addr}")
}

fn config(yaml: &str) -> ProbesConfig {
    let c: ProbesConfig = serde_yaml_ng::from_str(yaml).expect("probe config");
    c.validate().expect("valid probe config");
    c
}

async fn run(yaml: &str) -> (Vec<ProbeResult>, Vec<MetricFamily>) {
    let cfg = config(yaml);
    let names: Vec<String> = cfg.targets.iter().map(|t| t.name.clone()).collect();
    let ctx = comfy_sentinel::collect::BuildContext {
        registry: comfy_sentinel::metrics::registry::Registry::new(),
        data_dir: std::env::temp_dir(),
        outputs: Default::default(),
    };
    let c = ProbesCollector::from_config(&cfg, &ctx).expect("targets configured");
    let results = c.probe_all().await;
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    let fams = families(&refs, &results);
    (results, fams)
}

fn gauge(fams: &[MetricFamily], name: &str, target: &str) -> Option<f64> {
    fams.iter()
        .find(|f| f.name == name)?
        .samples
        .iter()
        .find(|s| s.labels.iter().any(|(k, v)| k == "target" && v == target))
        .map(|s| s.value)
}

#[tokio::test]
async fn tcp_open_and_closed_ports() {
    let open = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let closed = {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        l.local_addr().unwrap()
    };
    let (results, fams) = run(&format!(
        "targets:\n- {{name: open, tcp: '{}', timeout: 2s}}\n- {{name: closed, tcp: '{closed}', timeout: 2s}}\n- {{name: byname, tcp: 'localhost:{}', timeout: 2s}}\n",
        open.local_addr().unwrap(),
        open.local_addr().unwrap().port(),
    ))
    .await;
    assert_eq!(gauge(&fams, "probe_success", "open"), Some(1.0));
    assert_eq!(gauge(&fams, "probe_success", "closed"), Some(0.0));
    // localhost may resolve to ::1 first; the probe tries each address in turn.
    assert_eq!(
        gauge(&fams, "probe_success", "byname"),
        Some(1.0),
        "{:?}",
        results[2]
    );
    assert!(gauge(&fams, "probe_dns_lookup_time_seconds", "byname").is_some());
    // TCP probes have no HTTP series.
    assert_eq!(gauge(&fams, "probe_http_status_code", "open"), None);
    assert!(results[1].error.as_deref().unwrap().contains("connecting"));
}

#[tokio::test]
async fn http_status_redirects_and_expectations() {
    let base = http_server().await;
    let (results, fams) = run(&format!(
        "targets:
- {{name: ok, http: '{base}/ok'}}
- {{name: fail, http: '{base}/fail'}}
- {{name: fail-expected, http: '{base}/fail', expect_status: [500]}}
- {{name: redirect, http: '{base}/redirect'}}
- {{name: no-follow, http: '{base}/redirect', follow_redirects: false, expect_status: ['3xx']}}
- {{name: loop, http: '{base}/loop'}}
- {{name: auth, http: '{base}/auth', headers: {{Authorization: 'Bearer sekrit'}}}}
- {{name: no-auth, http: '{base}/auth'}}
- {{name: head, http: '{base}/ok', method: HEAD}}
- {{name: vhost, http: '{base}/vhost', headers: {{Host: app.example}}}}
"
    ))
    .await;
    let s = |t| gauge(&fams, "probe_success", t);
    let code = |t| gauge(&fams, "probe_http_status_code", t);
    assert_eq!((s("ok"), code("ok")), (Some(1.0), Some(200.0)));
    assert_eq!((s("fail"), code("fail")), (Some(0.0), Some(500.0)));
    assert_eq!(s("fail-expected"), Some(1.0));
    assert_eq!((s("redirect"), code("redirect")), (Some(1.0), Some(200.0)));
    assert_eq!(gauge(&fams, "probe_http_redirects", "redirect"), Some(1.0));
    assert_eq!(
        (s("no-follow"), code("no-follow")),
        (Some(1.0), Some(302.0))
    );
    assert_eq!(s("loop"), Some(0.0), "{:?}", results[5]);
    assert_eq!((s("auth"), s("no-auth")), (Some(1.0), Some(0.0)));
    // A HEAD answer carries Content-Length but no body; the probe must not wait for one.
    assert_eq!(s("head"), Some(1.0), "{:?}", results[8]);
    // A configured Host replaces the URL's rather than adding a second one.
    assert_eq!(s("vhost"), Some(1.0), "{:?}", results[9]);
    assert_eq!(gauge(&fams, "probe_http_content_length", "ok"), Some(5.0));
    assert_eq!(gauge(&fams, "probe_http_ssl", "ok"), Some(0.0));
    assert_eq!(gauge(&fams, "probe_ssl_earliest_cert_expiry", "ok"), None);
    let phases: Vec<String> = fams
        .iter()
        .find(|f| f.name == "probe_http_duration_seconds")
        .unwrap()
        .samples
        .iter()
        .filter(|s| s.labels[0].1 == "ok")
        .map(|s| s.labels[1].1.clone())
        .collect();
    assert_eq!(
        phases,
        ["resolve", "connect", "tls", "processing", "transfer"]
    );
}

/// Regression guard for "one hung dependency stalls every probe": the hung target is
/// listed first and its timeout is long; the fast target must be probed while the hung
/// connection is still held open (no timing measured, only the order of events).
#[tokio::test]
async fn a_hung_target_does_not_delay_the_others() {
    let hung = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let hung_addr = hung.local_addr().unwrap();
    let hung_open = Arc::new(AtomicBool::new(false));
    let flag = hung_open.clone();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = hung.accept().await {
            let flag = flag.clone();
            tokio::spawn(async move {
                flag.store(true, Ordering::SeqCst);
                let _ = read_head(&mut s).await;
                // Never answers; the probe's timeout closes the connection.
                let _ = s.read(&mut [0u8; 1]).await;
                flag.store(false, Ordering::SeqCst);
            });
        }
    });
    let fast = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let fast_addr = fast.local_addr().unwrap();
    let seen_while_hung = Arc::new(AtomicBool::new(false));
    let seen = seen_while_hung.clone();
    let flag = hung_open.clone();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = fast.accept().await {
            if read_head(&mut s).await.is_some() {
                // Both probes start together; give the hung connection time to be
                // accepted, but less than its timeout, after which it would be closed.
                for _ in 0..40 {
                    if flag.load(Ordering::SeqCst) {
                        break;
                    }
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                }
                seen.store(flag.load(Ordering::SeqCst), Ordering::SeqCst);
                let _ = s.write_all(response("/ok").as_bytes()).await;
            }
        }
    });
    let (results, fams) = run(&format!(
        "timeout: 10s
targets:
- {{name: hung, http: 'http://{hung_addr}/hang', timeout: 6s}}
- {{name: fast, http: 'http://{fast_addr}/ok', timeout: 6s}}
"
    ))
    .await;
    assert_eq!(gauge(&fams, "probe_success", "hung"), Some(0.0));
    assert!(
        results[0].error.as_deref().unwrap().contains("timed out"),
        "{:?}",
        results[0]
    );
    // How far the hung probe got is kept: it connected, then waited.
    assert_eq!(gauge(&fams, "probe_http_status_code", "hung"), None);
    assert_eq!(gauge(&fams, "probe_success", "fast"), Some(1.0));
    assert!(
        seen_while_hung.load(Ordering::SeqCst),
        "the fast target was probed only after the hung one gave up"
    );
}

/// A self-signed certificate for 127.0.0.1 and localhost, valid until `not_after`.
fn self_signed(not_after: (i32, u8, u8)) -> (String, rustls::ServerConfig) {
    let mut params =
        rcgen::CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()])
            .unwrap();
    params.not_after = rcgen::date_time_ymd(not_after.0, not_after.1, not_after.2);
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = params.self_signed(&key).unwrap();
    let server = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(
        vec![cert.der().clone()],
        rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into()),
    )
    .unwrap();
    (cert.pem(), server)
}

/// An HTTPS server answering 200 to every request.
async fn https_server(cfg: rustls::ServerConfig) -> std::net::SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(cfg));
    tokio::spawn(async move {
        while let Ok((s, _)) = l.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(mut s) = acceptor.accept(s).await else {
                    return;
                };
                if read_head(&mut s).await.is_some() {
                    let _ = s.write_all(response("/ok").as_bytes()).await;
                    let _ = s.shutdown().await;
                }
            });
        }
    });
    addr
}

#[tokio::test]
async fn tls_certificate_expiry_is_read_from_the_peer() {
    let (pem, server) = self_signed((2031, 1, 2));
    let expiry = chrono::NaiveDate::from_ymd_opt(2031, 1, 2)
        .unwrap()
        .and_hms_opt(0, 0, 0)
        .unwrap()
        .and_utc()
        .timestamp() as f64;
    let addr = https_server(server).await;
    let tmp = tempfile::tempdir().unwrap();
    let ca = temp_file(tmp.path(), "ca.pem", &pem);
    let (results, fams) = run(&format!(
        "targets:
- {{name: trusted, http: 'https://localhost:{port}/ok', tls_ca_file: '{ca}'}}
- {{name: by-ip, http: 'https://{addr}/ok', tls_ca_file: '{ca}'}}
- {{name: untrusted, http: 'https://{addr}/ok'}}
- {{name: insecure, http: 'https://{addr}/ok', insecure_skip_verify: true}}
- {{name: tcp-tls, tcp: '{addr}', tls: true, tls_ca_file: '{ca}'}}
",
        port = addr.port(),
        ca = ca.display()
    ))
    .await;
    for t in ["trusted", "by-ip", "insecure", "tcp-tls"] {
        let i = ["trusted", "by-ip", "untrusted", "insecure", "tcp-tls"]
            .iter()
            .position(|n| *n == t)
            .unwrap();
        assert_eq!(
            gauge(&fams, "probe_success", t),
            Some(1.0),
            "{t}: {:?}",
            results[i]
        );
        assert_eq!(
            gauge(&fams, "probe_ssl_earliest_cert_expiry", t),
            Some(expiry),
            "{t}"
        );
    }
    assert_eq!(gauge(&fams, "probe_http_ssl", "trusted"), Some(1.0));
    // Public roots do not know a self-signed certificate: the handshake fails.
    assert_eq!(gauge(&fams, "probe_success", "untrusted"), Some(0.0));
    assert!(
        results[2]
            .error
            .as_deref()
            .unwrap()
            .contains("TLS handshake"),
        "{:?}",
        results[2]
    );
    assert_eq!(
        gauge(&fams, "probe_ssl_earliest_cert_expiry", "untrusted"),
        None
    );
    let version = fams
        .iter()
        .find(|f| f.name == "probe_tls_version_info")
        .unwrap();
    assert!(version.samples[0]
        .labels
        .iter()
        .any(|(k, v)| k == "version" && v == "TLS 1.3"));
}

#[test]
fn probes_run_in_the_binary_and_pass_promtool() {
    let open = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let cfg = temp_file(
        tmp.path(),
        "sentinel.yaml",
        &format!(
            "collectors:\n  probes:\n    interval: 1s\n    timeout: 1s\n    targets:\n      - {{name: local, tcp: '{}'}}\n",
            open.local_addr().unwrap()
        ),
    );
    let s = Sentinel::start(&["--config", cfg.to_str().unwrap()]);
    s.wait_ready();
    let text = scrape(&s);
    assert!(text.contains("probe_success{target=\"local\"} 1"), "{text}");
    assert!(
        text.contains("sentinel_collector_success{collector=\"quality\"} 1"),
        "{text}"
    );
    assert!(
        text.contains("quality_image_failures_total{check=\"blank\"} 0"),
        "{text}"
    );
    if let Some((code, lint)) = promtool_check_metrics(&text) {
        assert_ne!(code, Some(1), "promtool cannot parse: {lint}");
        let ours: Vec<&str> = lint
            .lines()
            .filter(|l| l.starts_with("probe_") || l.starts_with("quality_"))
            .collect();
        assert!(ours.is_empty(), "promtool: {lint}");
    }
}

/// `name{labels} value` lines of an exposition, keyed (see `series_key`) without the
/// `target` label of `target`.
fn parse_exposition(text: &str, target: Option<&str>) -> std::collections::BTreeMap<String, f64> {
    Exposition::parse(text)
        .samples
        .into_iter()
        .map(|mut s| {
            if let Some(t) = target {
                s.labels.retain(|(k, v)| !(k == "target" && v == t));
            }
            (series_key(&s.name, &s.labels), s.value)
        })
        .collect()
}

/// The same targets probed by blackbox_exporter and by us must give the same answers
/// under the same metric names (blackbox_exporter has one target per scrape and no
/// `target` label; ours is removed before comparing).
#[tokio::test]
async fn same_answers_as_blackbox_exporter() {
    let Some(bb) = peer("prometheus-blackbox-exporter") else {
        return;
    };
    let base = http_server().await;
    let (_, server) = self_signed((2031, 1, 2));
    let tls_addr = https_server(server).await;
    let closed = TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .local_addr()
        .unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let cfg = temp_file(
        tmp.path(),
        "blackbox.yml",
        "modules:
  http:
    prober: http
    timeout: 5s
    http: {tls_config: {insecure_skip_verify: true}}
  tcp:
    prober: tcp
    timeout: 5s
  tcp_tls:
    prober: tcp
    timeout: 5s
    tcp: {tls: true, tls_config: {insecure_skip_verify: true}}
",
    );
    let port = free_port();
    let _bb = KillOnDrop(
        std::process::Command::new(bb)
            .arg(format!("--config.file={}", cfg.display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("start blackbox_exporter"),
    );
    // (name, our target line, blackbox module, blackbox target)
    let cases = [
        (
            "ok",
            format!("http: '{base}/ok'"),
            "http",
            format!("{base}/ok"),
        ),
        (
            "fail",
            format!("http: '{base}/fail'"),
            "http",
            format!("{base}/fail"),
        ),
        (
            "redirect",
            format!("http: '{base}/redirect'"),
            "http",
            format!("{base}/redirect"),
        ),
        (
            "https",
            format!("http: 'https://{tls_addr}/ok', insecure_skip_verify: true"),
            "http",
            format!("https://{tls_addr}/ok"),
        ),
        (
            "tcp-tls",
            format!("tcp: '{tls_addr}', tls: true, insecure_skip_verify: true"),
            "tcp_tls",
            tls_addr.to_string(),
        ),
        (
            "closed",
            format!("tcp: '{closed}'"),
            "tcp",
            closed.to_string(),
        ),
    ];
    let yaml: String = std::iter::once("targets:\n".to_string())
        .chain(
            cases
                .iter()
                .map(|(n, t, _, _)| format!("- {{name: {n}, {t}}}\n")),
        )
        .collect();
    let (_, fams) = run(&yaml).await;
    let mut ours_text = String::new();
    for f in &fams {
        for s in &f.samples {
            let labels: Vec<String> = s
                .labels
                .iter()
                .map(|(k, v)| format!("{k}=\"{v}\""))
                .collect();
            ours_text.push_str(&format!("{}{{{}}} {}\n", f.name, labels.join(","), s.value));
        }
    }
    // Values that differ run to run (durations) or that only one side has by design.
    let timing = |k: &str| k.contains("duration_seconds") || k.contains("dns_lookup");
    // blackbox_exporter writes -1 for an unknown Content-Length; we leave it out.
    let only_theirs = |k: &str, v: f64| {
        k.starts_with("probe_failed_due_to_regex")
            || k.starts_with("probe_ip_addr_hash")
            || k.starts_with("probe_ssl_last_chain")
            || (k == "probe_http_content_length" && v == -1.0)
    };
    for (name, _, module, target) in &cases {
        let url = format!("http://127.0.0.1:{port}/probe?module={module}&target={target}");
        let theirs = tokio::task::spawn_blocking(move || {
            for _ in 0..100 {
                if let Ok((200, _, body)) = http_get(&url, &[]) {
                    return String::from_utf8(body).unwrap();
                }
                std::thread::sleep(std::time::Duration::from_millis(100));
            }
            panic!("blackbox_exporter did not answer {url}");
        })
        .await
        .unwrap();
        let theirs = parse_exposition(&theirs, None);
        // This target's series, its label removed; the other targets' keep theirs.
        let ours: std::collections::BTreeMap<String, f64> =
            parse_exposition(&ours_text, Some(name))
                .into_iter()
                .filter(|(k, _)| !k.contains("target="))
                .collect();
        for (k, v) in &ours {
            let Some(t) = theirs.get(k) else {
                panic!("{name}: {k} is not in blackbox_exporter's answer {theirs:?}");
            };
            if !timing(k) {
                assert_eq!(v, t, "{name}: {k}");
            }
        }
        for (k, v) in &theirs {
            if !only_theirs(k, *v) {
                assert!(
                    ours.contains_key(k),
                    "{name}: blackbox_exporter has {k}, we do not: {ours:?}"
                );
            }
        }
    }
}
