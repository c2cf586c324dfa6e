//! Receivers against real peers: a real SMTP server (aiosmtpd, run by the test) and
//! Debian's real `prometheus-alertmanager` 0.25. Under CI=true a missing peer fails;
//! locally the test is skipped.

mod common;

use common::*;
use sentinel_base::alert::AlertSink;
use sentinel_base::metrics::registry::Registry;
use sentinel_notify::{Notifier, NotifyConfig};
use std::io::BufRead;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// Kills the child when the test ends, pass or fail.
struct Reaper(Child);

impl Drop for Reaper {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

const SMTP_SERVER: &str = r#"
import email, json, os, sys, time
from email import policy
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult

port, out = int(sys.argv[1]), sys.argv[2]
tls = None
if len(sys.argv) > 4:
    import ssl
    tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    tls.load_cert_chain(sys.argv[3], sys.argv[4])

def auth(server, session, envelope, mechanism, data):
    ok = data.login == b"sentinel" and data.password == b"s3cret"
    return AuthResult(success=ok)

class Handler:
    async def handle_DATA(self, server, session, envelope):
        m = email.message_from_bytes(envelope.content, policy=policy.default)
        parts = {}
        for p in m.walk():
            if p.get_content_type() in ("text/plain", "text/html"):
                parts[p.get_content_type()] = p.get_content()
        rec = {
            "from": envelope.mail_from, "to": envelope.rcpt_tos,
            "subject": str(m["subject"]), "content_type": m.get_content_type(),
            "id": m.get("X-Sentinel-Notification-Id"), "parts": parts,
            "authenticated": bool(session.authenticated),
            "tls": session.ssl is not None,
        }
        n = len([f for f in os.listdir(out) if f.endswith(".json")])
        tmp = os.path.join(out, "tmp")
        with open(tmp, "w") as f:
            json.dump(rec, f)
        os.rename(tmp, os.path.join(out, "%d.json" % n))
        return "250 OK"

c = Controller(Handler(), hostname="127.0.0.1", port=port, authenticator=auth,
               auth_require_tls=tls is not None, auth_required=True,
               tls_context=tls, require_starttls=tls is not None)
c.start()
print("ready", flush=True)
while True:
    time.sleep(3600)
"#;

#[tokio::test]
async fn email_arrives_at_a_real_smtp_server() {
    if !python_module("aiosmtpd") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mail_dir = dir.path().join("mail");
    std::fs::create_dir_all(&mail_dir).unwrap();
    let port = free_port();
    let mut child = Command::new("python3")
        .args([
            "-c",
            SMTP_SERVER,
            &port.to_string(),
            mail_dir.to_str().unwrap(),
        ])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let _smtp = Reaper(child);
    assert_eq!(line.trim(), "ready");
    let yaml = format!(
        r#"
external_url: "http://sentinel.test:9188"
route: {{ receiver: mail, group_by: [alertname], group_wait: 0s, group_interval: 1s }}
receivers:
  - name: mail
    emails: [{{ to: ["oncall@example.com", "Ops <ops@example.com>"], from: "Sentinel <sentinel@example.com>",
               smarthost: "127.0.0.1:{port}", require_tls: false, auth_username: sentinel,
               auth_password: s3cret, send_resolved: true }}]
"#
    );
    let cfg: NotifyConfig = serde_yaml_ng::from_str(&yaml).unwrap();
    cfg.validate().unwrap();
    let n = Notifier::new(&cfg, dir.path(), &Registry::new()).unwrap();
    n.start();
    n.send(vec![
        alert("GpuHot", &[("gpu", "0"), ("severity", "critical")], 240),
        alert("GpuHot", &[("gpu", "1"), ("severity", "critical")], 240),
    ]);
    let file = mail_dir.join("0.json");
    wait_for(Duration::from_secs(30), "the email", || {
        file.exists().then_some(())
    })
    .await;
    let m: serde_json::Value = serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
    assert_eq!(m["authenticated"], true);
    assert_eq!(m["from"], "sentinel@example.com");
    assert_eq!(
        m["to"],
        serde_json::json!(["oncall@example.com", "ops@example.com"])
    );
    assert_eq!(m["content_type"], "multipart/alternative");
    assert_eq!(m["subject"], "[FIRING:2] GpuHot (critical)");
    assert!(m["id"].as_str().unwrap().starts_with("msg_"));
    let text = m["parts"]["text/plain"].as_str().unwrap();
    let html = m["parts"]["text/html"].as_str().unwrap();
    for gpu in ["0", "1"] {
        assert!(text.contains(&format!("gpu = {gpu}")), "{text}");
        assert!(
            html.contains(&format!("<td>gpu</td><td>{gpu}</td>")),
            "{html}"
        );
    }
    assert!(text.contains("summary = GpuHot <is> & firing"));
    assert!(html.contains("GpuHot &lt;is&gt; &amp; firing"), "{html}");
    assert!(html.contains("href=\"http://127.0.0.1:9188/rules?x=1&amp;y=2\""));
    assert!(text.contains("started: "));
    let (_, _, dead) = n.notifications();
    assert!(dead.is_empty());
}

#[tokio::test]
async fn alerts_reach_a_real_alertmanager_and_resolve() {
    let Some(am) = peer("prometheus-alertmanager") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let am_cfg = dir.path().join("alertmanager.yml");
    std::fs::write(
        &am_cfg,
        "route: { receiver: devnull }\nreceivers: [{ name: devnull }]\n",
    )
    .unwrap();
    let storage = dir.path().join("am-data");
    let _am = Reaper(
        Command::new(am)
            .args([
                &format!("--config.file={}", am_cfg.display()),
                &format!("--storage.path={}", storage.display()),
                &format!("--web.listen-address=127.0.0.1:{port}"),
                "--cluster.listen-address=",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let base = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::new();
    let ready = format!("{base}/-/ready");
    let start = std::time::Instant::now();
    loop {
        if http
            .get(&ready)
            .send()
            .await
            .is_ok_and(|r| r.status().is_success())
        {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "alertmanager did not start"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The second URL is down: a cluster delivery succeeds if any instance accepts.
    let yaml = format!(
        r#"
route: {{ receiver: am }}
receivers:
  - name: am
    alertmanagers: [{{ urls: ["{base}", "http://127.0.0.1:{down}"] }}]
"#,
        down = free_port()
    );
    let cfg: NotifyConfig = serde_yaml_ng::from_str(&yaml).unwrap();
    cfg.validate().unwrap();
    let n = Notifier::new(&cfg, dir.path(), &Registry::new()).unwrap();
    n.start();
    let a = alert(
        "SentinelForwarded",
        &[("instance", "gpu-01"), ("severity", "warning")],
        300,
    );
    n.send(vec![a.clone()]);
    let get = || async {
        let v: serde_json::Value = http
            .get(format!("{base}/api/v2/alerts"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        v.as_array()
            .unwrap()
            .iter()
            .filter(|x| x["labels"]["alertname"] == "SentinelForwarded")
            .cloned()
            .collect::<Vec<_>>()
    };
    let start = std::time::Instant::now();
    let shown = loop {
        let v = get().await;
        if !v.is_empty() {
            break v;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "alert never reached alertmanager"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(shown[0]["labels"]["instance"], "gpu-01");
    assert_eq!(shown[0]["labels"]["severity"], "warning");
    assert_eq!(
        shown[0]["annotations"]["summary"],
        "SentinelForwarded <is> & firing"
    );
    assert_eq!(shown[0]["status"]["state"], "active");
    assert_eq!(
        shown[0]["fingerprint"],
        a.fingerprint_hex(),
        "same fingerprint algorithm"
    );
    // Resolve: endsAt now; alertmanager drops it from the active list.
    let mut r = a.clone();
    r.ends_at = chrono::Utc::now();
    n.send(vec![r]);
    let start = std::time::Instant::now();
    while !get().await.is_empty() {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "resolve never ended the alert"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A private CA and a server certificate for 127.0.0.1 it signed: (ca, cert, key).
fn private_ca(openssl: &std::path::Path, dir: &std::path::Path) -> (String, String, String) {
    let p = |f: &str| dir.join(f).to_str().unwrap().to_string();
    let (cert, key, ca) = (p("c.pem"), p("k.pem"), p("ca.pem"));
    std::fs::write(
        p("ext.cnf"),
        "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    // A private CA and a server certificate it signed.
    let steps: [Vec<String>; 3] = [
        vec![
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=sentinel-test-ca",
            "-keyout",
            &p("ca.key"),
            "-out",
            &ca,
        ]
        .into_iter()
        .map(String::from)
        .collect(),
        vec![
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-subj",
            "/CN=127.0.0.1",
            "-keyout",
            &key,
            "-out",
            &p("leaf.csr"),
        ]
        .into_iter()
        .map(String::from)
        .collect(),
        vec![
            "x509",
            "-req",
            "-in",
            &p("leaf.csr"),
            "-CA",
            &ca,
            "-CAkey",
            &p("ca.key"),
            "-CAcreateserial",
            "-days",
            "1",
            "-out",
            &cert,
            "-extfile",
            &p("ext.cnf"),
        ]
        .into_iter()
        .map(String::from)
        .collect(),
    ];
    for args in steps {
        let ok = Command::new(openssl)
            .args(&args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .unwrap();
        assert!(ok.success(), "openssl {args:?}");
    }
    (ca, cert, key)
}

const HTTPS_SERVER: &str = r#"
import ssl, sys
from http.server import BaseHTTPRequestHandler, HTTPServer
port, cert, key = int(sys.argv[1]), sys.argv[2], sys.argv[3]
class H(BaseHTTPRequestHandler):
    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length", "0")))
        self.send_response(204)
        self.end_headers()
    def log_message(self, *a):
        pass
srv = HTTPServer(("127.0.0.1", port), H)
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain(cert, key)
srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
print("ready", flush=True)
srv.serve_forever()
"#;

/// Certificates are verified by default; a private CA is trusted through `ca_file`.
#[tokio::test]
async fn webhook_tls_is_verified_and_a_ca_file_is_honoured() {
    use sentinel_notify::receiver::webhook::{Webhook, WebhookConfig};
    use sentinel_notify::receiver::{Delivery, Notify};
    let Some(openssl) = peer("openssl") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let (ca, cert, key) = private_ca(&openssl, dir.path());
    let port = free_port();
    let mut child = Command::new("python3")
        .args(["-c", HTTPS_SERVER, &port.to_string(), &cert, &key])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let _srv = Reaper(child);
    let n = sentinel_notify::notification::Notification {
        receiver: "r".into(),
        group_key: "k".into(),
        group_labels: Default::default(),
        alerts: vec![alert("Tls", &[], 240)],
        flushed_at: chrono::Utc::now(),
    };
    let d = Delivery {
        id: "msg_tls",
        notification: &n,
        external_url: "",
    };
    let url = format!("https://127.0.0.1:{port}/hook");
    let strict = Webhook::new(WebhookConfig {
        url: url.clone(),
        ..Default::default()
    })
    .unwrap();
    let e = strict.notify(&d).await.unwrap_err();
    assert!(e.reason.to_lowercase().contains("certificate"), "{e}");
    let trusted = Webhook::new(WebhookConfig {
        url,
        ca_file: Some(ca.into()),
        ..Default::default()
    })
    .unwrap();
    trusted.notify(&d).await.unwrap();
}

/// STARTTLS (required by default) against a server that offers it, trusting a private
/// CA through `ca_file`.
#[tokio::test]
async fn email_uses_starttls_when_required() {
    if !python_module("aiosmtpd") {
        return;
    }
    let Some(openssl) = peer("openssl") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let (ca, cert, key) = private_ca(&openssl, dir.path());
    let mail_dir = dir.path().join("mail");
    std::fs::create_dir_all(&mail_dir).unwrap();
    let port = free_port();
    let mut child = Command::new("python3")
        .args([
            "-c",
            SMTP_SERVER,
            &port.to_string(),
            mail_dir.to_str().unwrap(),
            &cert,
            &key,
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let _smtp = Reaper(child);
    let yaml = format!(
        r#"
route: {{ receiver: mail, group_wait: 0s }}
receivers:
  - name: mail
    emails: [{{ to: ["oncall@example.com"], from: "sentinel@example.com", smarthost: "127.0.0.1:{port}",
               ca_file: "{ca}", auth_username: sentinel, auth_password: s3cret }}]
"#
    );
    let cfg: NotifyConfig = serde_yaml_ng::from_str(&yaml).unwrap();
    cfg.validate().unwrap();
    let n = Notifier::new(&cfg, dir.path(), &Registry::new()).unwrap();
    n.start();
    n.send(vec![alert("Tls", &[], 240)]);
    let file = mail_dir.join("0.json");
    wait_for(Duration::from_secs(30), "the email over STARTTLS", || {
        file.exists().then_some(())
    })
    .await;
    let m: serde_json::Value = serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
    assert_eq!(m["tls"], true);
    assert_eq!(m["authenticated"], true);
}

/// Group keys (route path + group labels) are Alertmanager's own: the same routing
/// config in both, the same alert, the same `groupKey` — and the same webhook body,
/// byte for byte.
#[tokio::test]
async fn group_keys_match_alertmanager() {
    let Some(am) = peer("prometheus-alertmanager") else {
        return;
    };
    let cap = capture(|_| (200, vec![])).await;
    let dir = tempfile::tempdir().unwrap();
    let routes = r#"
  group_by: [alertname, gpu]
  group_wait: 0s
  group_interval: 1s
  routes:
    - matchers: ['severity="critical"']
      receiver: hook
      routes:
        - matchers: ['team="gpu"', 'env!~"dev|test"']
          receiver: hook
"#;
    let am_cfg = dir.path().join("am.yml");
    std::fs::write(
        &am_cfg,
        format!(
            "route:\n  receiver: hook\n{routes}receivers: [{{ name: hook, webhook_configs: [{{ url: '{}/am' }}] }}]\n",
            cap.url
        ),
    )
    .unwrap();
    let port = free_port();
    let _am = Reaper(
        Command::new(am)
            .arg(format!("--config.file={}", am_cfg.display()))
            .arg(format!(
                "--storage.path={}",
                dir.path().join("am").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg(format!("--web.external-url=http://127.0.0.1:{port}/"))
            .arg("--cluster.listen-address=")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let ours_cfg: NotifyConfig = serde_yaml_ng::from_str(&format!(
        "external_url: 'http://127.0.0.1:{port}'\nroute:\n  receiver: hook\n{routes}receivers: [{{ name: hook, webhooks: [{{ url: '{}/ours' }}] }}]\n",
        cap.url
    ))
    .unwrap();
    ours_cfg.validate().unwrap();
    let n = Notifier::new(&ours_cfg, dir.path(), &Registry::new()).unwrap();
    n.start();
    let a = alert(
        "Hot",
        &[
            ("gpu", "0"),
            ("severity", "critical"),
            ("team", "gpu"),
            ("env", "prod"),
        ],
        300,
    );
    n.send(vec![a.clone()]);
    let http = reqwest::Client::new();
    let base = format!("http://127.0.0.1:{port}");
    let start = std::time::Instant::now();
    while !http
        .get(format!("{base}/-/ready"))
        .send()
        .await
        .is_ok_and(|r| r.status().is_success())
    {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "alertmanager did not start"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    http.post(format!("{base}/api/v2/alerts"))
        .json(&vec![a])
        .send()
        .await
        .unwrap();
    let key = |path: &str| {
        cap.got.lock().iter().find(|c| c.path == path).map(|c| {
            serde_json::from_slice::<serde_json::Value>(&c.body).unwrap()["groupKey"]
                .as_str()
                .unwrap()
                .to_string()
        })
    };
    let (ours, theirs) = wait_for(Duration::from_secs(30), "both webhooks", || {
        Some((key("/ours")?, key("/am")?))
    })
    .await;
    assert_eq!(ours, theirs);
    let body = |path: &str| {
        let g = cap.got.lock();
        g.iter().find(|c| c.path == path).unwrap().body.clone()
    };
    assert_eq!(
        String::from_utf8(body("/ours")).unwrap(),
        String::from_utf8(body("/am")).unwrap(),
        "same webhook body as Alertmanager"
    );
    assert_eq!(
        theirs,
        r#"{}/{severity="critical"}/{env!~"dev|test",team="gpu"}:{alertname="Hot", gpu="0"}"#
    );
}
