//! The email receiver: SMTP through `lettre`, STARTTLS required by default, implicit
//! TLS on port 465, plain text only when `require_tls: false` (Alertmanager's rules,
//! `notify/email/email.go`); PLAIN/LOGIN auth. The message is multipart/alternative:
//! a text and an HTML part, each listing every alert with its labels, annotations,
//! start time and link; every value in the HTML is escaped.

use super::{read_ca_file, Delivery, Notify, NotifyError, ReceiverError};
use crate::notification::Notification;
use crate::webhook::payload::{format_go_time, Message, Status};
use lettre::message::{Mailbox, MultiPart};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::transport::smtp::extension::ClientId;
use lettre::{AsyncSmtpTransport, AsyncTransport, Tokio1Executor};
use sentinel_base::config::{
    either_secret, either_secret_at, Dur, FieldError, SecretFile, SecretString,
};
use serde::{Deserialize, Serialize};
use std::fmt::Write as _;
use std::path::PathBuf;

/// `receivers[].emails[]`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct EmailConfig {
    /// Recipients.
    pub to: Vec<String>,
    /// Sender address (`Name <addr>` allowed).
    pub from: String,
    /// SMTP server as `host:port`; port 465 means implicit TLS.
    pub smarthost: String,
    /// Name sent in EHLO; the local host name when unset.
    pub hello: Option<String>,
    /// SMTP auth user; auth is off when unset.
    pub auth_username: Option<String>,
    /// SMTP auth password.
    pub auth_password: Option<SecretString>,
    /// SMTP auth password from a file.
    pub auth_password_file: Option<SecretFile>,
    /// Require TLS (STARTTLS, or implicit on 465). `false` sends in plain text.
    pub require_tls: bool,
    /// PEM CA certificate to trust in addition to the web PKI roots.
    pub ca_file: Option<PathBuf>,
    /// Per-attempt timeout.
    pub timeout: Dur,
    /// Send resolved notifications (Alertmanager's default for email: false).
    pub send_resolved: bool,
}

impl Default for EmailConfig {
    fn default() -> Self {
        EmailConfig {
            to: Vec::new(),
            from: String::new(),
            smarthost: String::new(),
            hello: None,
            auth_username: None,
            auth_password: None,
            auth_password_file: None,
            require_tls: true,
            ca_file: None,
            timeout: Dur::secs(30),
            send_resolved: false,
        }
    }
}

impl EmailConfig {
    pub fn validate(&self) -> Result<(), FieldError> {
        if self.to.is_empty() {
            return Err(FieldError::new("to", "at least one recipient is required"));
        }
        for (i, t) in self.to.iter().enumerate() {
            t.parse::<Mailbox>().map_err(|e| {
                FieldError::new(format!("to[{i}]"), format!("invalid address {t:?}: {e}"))
            })?;
        }
        self.from.parse::<Mailbox>().map_err(|e| {
            FieldError::new(
                "from".to_string(),
                format!("invalid address {:?}: {e}", self.from),
            )
        })?;
        self.host_port()
            .map_err(|e| FieldError::new("smarthost".to_string(), e.to_string()))?;
        either_secret_at(
            &self.auth_password,
            &self.auth_password_file,
            "auth_password",
        )?;
        if self.timeout.get().is_zero() {
            return Err(FieldError::new("timeout", "must be > 0"));
        }
        Ok(())
    }

    fn host_port(&self) -> Result<(String, u16), ReceiverError> {
        let (h, p) = self
            .smarthost
            .rsplit_once(':')
            .ok_or_else(|| ReceiverError::NotHostPort(self.smarthost.clone()))?;
        let port: u16 = p
            .parse()
            .map_err(|_| ReceiverError::BadPort(self.smarthost.clone()))?;
        let host = h.trim_start_matches('[').trim_end_matches(']');
        if host.is_empty() {
            return Err(ReceiverError::EmptyHost);
        }
        Ok((host.to_string(), port))
    }
}

pub struct Email {
    cfg: EmailConfig,
    from: Mailbox,
    to: Vec<Mailbox>,
    transport: AsyncSmtpTransport<Tokio1Executor>,
}

impl Email {
    pub fn new(cfg: EmailConfig) -> Result<Self, ReceiverError> {
        let (b, from, to) = Self::prepare(&cfg)?;
        Ok(Email {
            transport: b.build(),
            from,
            to,
            cfg,
        })
    }

    /// Everything [`Email::new`] does but start the connection pool (which needs a
    /// runtime): CA file, TLS parameters, credentials, addresses. `check` runs it.
    pub fn check(cfg: &EmailConfig) -> Result<(), ReceiverError> {
        Self::prepare(cfg).map(|_| ())
    }

    fn prepare(
        cfg: &EmailConfig,
    ) -> Result<
        (
            lettre::transport::smtp::AsyncSmtpTransportBuilder,
            Mailbox,
            Vec<Mailbox>,
        ),
        ReceiverError,
    > {
        cfg.validate().map_err(ReceiverError::invalid)?;
        let (host, port) = cfg.host_port()?;
        let mut b = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(host.clone())
            .port(port)
            .timeout(Some(cfg.timeout.get()));
        if cfg.require_tls {
            let mut tb = TlsParameters::builder(host.clone());
            if let Some(p) = &cfg.ca_file {
                let pem = read_ca_file(p)?;
                let c = Certificate::from_pem(&pem).map_err(|e| ReceiverError::NotPem {
                    path: p.clone(),
                    reason: e.to_string(),
                })?;
                tb = tb.add_root_certificate(c);
            }
            let params = tb.build().map_err(|e| ReceiverError::Tls(e.to_string()))?;
            b = b.tls(if port == 465 {
                Tls::Wrapper(params)
            } else {
                Tls::Required(params)
            });
        }
        if let Some(h) = &cfg.hello {
            b = b.hello_name(ClientId::Domain(h.clone()));
        }
        if let Some(user) = &cfg.auth_username {
            let pass = either_secret(&cfg.auth_password, &cfg.auth_password_file)
                .map_err(|e| ReceiverError::Secret(e.to_string()))?
                .map(|s| s.expose().to_string())
                .unwrap_or_default();
            b = b.credentials(Credentials::new(user.clone(), pass));
        }
        let from = cfg
            .from
            .parse()
            .map_err(|e: lettre::address::AddressError| ReceiverError::Address {
                field: "from",
                reason: e.to_string(),
            })?;
        let to = cfg
            .to
            .iter()
            .map(|t| t.parse::<Mailbox>())
            .collect::<Result<_, _>>()
            .map_err(|e| ReceiverError::Address {
                field: "to",
                reason: e.to_string(),
            })?;
        Ok((b, from, to))
    }
}

#[async_trait::async_trait]
impl Notify for Email {
    fn kind(&self) -> &'static str {
        "email"
    }

    fn send_resolved(&self) -> bool {
        self.cfg.send_resolved
    }

    async fn notify(&self, d: &Delivery<'_>) -> Result<(), NotifyError> {
        // A storm must not produce a multi-megabyte email: list the first alerts and
        // count the rest (the subject still counts every firing alert).
        let m = Message::build(d.notification, d.external_url, MAX_LISTED);
        let mut b = lettre::Message::builder()
            .from(self.from.clone())
            .subject(subject(&m, d.notification.firing().count()))
            .message_id(Some(format!("<{}@comfy-sentinel>", d.id)))
            .header(NotificationId(d.id.to_string()));
        for t in &self.to {
            b = b.to(t.clone());
        }
        let msg = b
            .multipart(MultiPart::alternative_plain_html(
                text_body(&m, d.notification),
                html_body(&m, d.notification),
            ))
            .map_err(|e| NotifyError::permanent(format!("cannot build the message: {e}")))?;
        // lettre's own timeout covers each socket read once a session is under way, but
        // not every wait (a server that accepts and never greets held the attempt, and
        // its delivery slot, forever): the whole attempt is bounded here.
        let attempt = tokio::time::timeout(self.cfg.timeout.get(), self.transport.send(msg));
        let Ok(sent) = attempt.await else {
            return Err(NotifyError::retry(format!(
                "smtp: no answer within the {} attempt timeout",
                self.cfg.timeout
            )));
        };
        match sent {
            Ok(_) => Ok(()),
            // 5xx SMTP replies are final, and so are client-side refusals (the server
            // offers no STARTTLS while TLS is required, no usable auth mechanism);
            // everything else (4xx, connection, TLS handshake, timeouts) may pass later.
            Err(e) if e.is_permanent() || e.is_client() => {
                Err(NotifyError::permanent(format!("smtp: {e}")))
            }
            Err(e) => Err(NotifyError::retry(format!("smtp: {e}"))),
        }
    }
}

/// Alerts listed in one email.
const MAX_LISTED: usize = 200;

/// `X-Sentinel-Notification-Id`: the outbox id, as `webhook-id` is for webhooks.
#[derive(Clone)]
struct NotificationId(String);

impl lettre::message::header::Header for NotificationId {
    fn name() -> lettre::message::header::HeaderName {
        lettre::message::header::HeaderName::new_from_ascii_str("X-Sentinel-Notification-Id")
    }
    fn parse(s: &str) -> Result<Self, Box<dyn std::error::Error + Send + Sync>> {
        Ok(NotificationId(s.to_string()))
    }
    fn display(&self) -> lettre::message::header::HeaderValue {
        lettre::message::header::HeaderValue::new(Self::name(), self.0.clone())
    }
}

/// Alertmanager's default subject: `[FIRING:2] <group label values> (<other common label values>)`.
/// `firing` counts every firing alert, listed or not.
pub fn subject(m: &Message, firing: usize) -> String {
    let mut s = match m.status {
        Status::Firing => format!("[FIRING:{firing}]"),
        Status::Resolved => "[RESOLVED]".to_string(),
    };
    for v in m.group_labels.values() {
        s.push(' ');
        s.push_str(v);
    }
    let rest: Vec<&str> = m
        .common_labels
        .iter()
        .filter(|(k, _)| !m.group_labels.contains_key(*k))
        .map(|(_, v)| v.as_str())
        .collect();
    if !rest.is_empty() {
        let _ = write!(s, " ({})", rest.join(" "));
    }
    s
}

pub fn text_body(m: &Message, n: &Notification) -> String {
    let mut s = String::new();
    let firing = n.firing().count();
    let resolved = n.resolved().count();
    let _ = writeln!(s, "{firing} firing, {resolved} resolved ({})\n", m.receiver);
    for a in &m.alerts {
        let _ = writeln!(
            s,
            "[{}] {}",
            a.status.as_str().to_uppercase(),
            a.labels.get("alertname").map(String::as_str).unwrap_or("")
        );
        let _ = writeln!(s, "  started: {}", format_go_time(&a.starts_at));
        if let Some(e) = a.ends_at {
            let _ = writeln!(s, "  ended:   {}", format_go_time(&e));
        }
        s.push_str("  labels:\n");
        for (k, v) in &a.labels {
            let _ = writeln!(s, "    {k} = {v}");
        }
        if !a.annotations.is_empty() {
            s.push_str("  annotations:\n");
            for (k, v) in &a.annotations {
                let _ = writeln!(s, "    {k} = {v}");
            }
        }
        if !a.generator_url.is_empty() {
            let _ = writeln!(s, "  source: {}", a.generator_url);
        }
        s.push('\n');
    }
    if m.truncated_alerts > 0 {
        let _ = writeln!(s, "… and {} more alerts not listed.\n", m.truncated_alerts);
    }
    if !m.external_url.is_empty() {
        let _ = writeln!(s, "Sent by comfy-sentinel: {}", m.external_url);
    }
    s
}

pub fn html_escape(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&#39;"),
            c => o.push(c),
        }
    }
    o
}

/// Only http(s) links become clickable; anything else is shown as text.
fn link(url: &str, text: &str) -> String {
    if url.starts_with("http://") || url.starts_with("https://") {
        format!("<a href=\"{}\">{}</a>", html_escape(url), html_escape(text))
    } else {
        html_escape(url)
    }
}

pub fn html_body(m: &Message, n: &Notification) -> String {
    let mut s = String::from("<!DOCTYPE html><html><body style=\"font-family:sans-serif\">");
    let _ = write!(
        s,
        "<h2>{}</h2>",
        html_escape(&subject(m, n.firing().count()))
    );
    for a in &m.alerts {
        let color = if a.status == Status::Firing {
            "#c0392b"
        } else {
            "#27ae60"
        };
        let _ = write!(
            s,
            "<div style=\"border-left:4px solid {color};padding:4px 12px;margin:12px 0\"><h3>[{}] {}</h3><p>Started: {}",
            a.status.as_str().to_uppercase(),
            html_escape(a.labels.get("alertname").map(String::as_str).unwrap_or("")),
            html_escape(&format_go_time(&a.starts_at)),
        );
        if let Some(e) = a.ends_at {
            let _ = write!(s, "<br>Ended: {}", html_escape(&format_go_time(&e)));
        }
        s.push_str("</p><table><tr><th align=\"left\" colspan=\"2\">Labels</th></tr>");
        for (k, v) in &a.labels {
            let _ = write!(
                s,
                "<tr><td>{}</td><td>{}</td></tr>",
                html_escape(k),
                html_escape(v)
            );
        }
        if !a.annotations.is_empty() {
            s.push_str("<tr><th align=\"left\" colspan=\"2\">Annotations</th></tr>");
            for (k, v) in &a.annotations {
                let _ = write!(
                    s,
                    "<tr><td>{}</td><td>{}</td></tr>",
                    html_escape(k),
                    html_escape(v)
                );
            }
        }
        s.push_str("</table>");
        if !a.generator_url.is_empty() {
            let _ = write!(s, "<p>{}</p>", link(&a.generator_url, "Source"));
        }
        s.push_str("</div>");
    }
    if !m.external_url.is_empty() {
        let _ = write!(
            s,
            "<p>Sent by {}</p>",
            link(&m.external_url, "comfy-sentinel")
        );
    }
    s.push_str("</body></html>");
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Utc;
    use sentinel_base::alert::Alert;
    use std::collections::BTreeMap;

    #[test]
    fn html_is_escaped_and_lists_each_alert() {
        let now = Utc::now();
        let n = Notification {
            receiver: "oncall".into(),
            group_key: "k".into(),
            group_labels: [("alertname".to_string(), "X".to_string())].into(),
            alerts: vec![Alert {
                labels: [
                    ("alertname".to_string(), "X".to_string()),
                    ("job".to_string(), "<script>alert(1)</script>".to_string()),
                ]
                .into(),
                annotations: BTreeMap::from([("summary".to_string(), "a & b".to_string())]),
                starts_at: now,
                ends_at: now + chrono::Duration::minutes(4),
                generator_url: "javascript:alert(1)".into(),
            }],
            flushed_at: now,
        };
        let m = Message::build(&n, "http://sentinel:9188", 0);
        let h = html_body(&m, &n);
        assert!(!h.contains("<script>"));
        assert!(h.contains("&lt;script&gt;"));
        assert!(h.contains("a &amp; b"));
        assert!(!h.contains("href=\"javascript"));
        let t = text_body(&m, &n);
        assert!(t.contains("summary = a & b"));
        assert_eq!(subject(&m, 1), "[FIRING:1] X (<script>alert(1)</script>)");
    }
}
