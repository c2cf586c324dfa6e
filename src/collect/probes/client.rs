//! The probe's HTTP/TCP client, hand-assembled (resolve, `TcpStream`, `tokio-rustls`,
//! hyper's HTTP/1.1 connection) rather than a high-level client, so that each phase can
//! be timed and the peer's certificate chain read. One [`Target`] is built per configured
//! target when the collector is; [`Target::probe`] fills a [`ProbeResult`], which
//! `probes/mod.rs` turns into blackbox_exporter's families. TLS parts are in `tls.rs`.

use super::tls;
use super::ProbeTarget;
use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use sentinel_base::config::Dur;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

/// Most redirects followed, as Go's HTTP client (and so blackbox_exporter).
const MAX_REDIRECTS: u32 = 10;
/// A target's timeout when it sets none (and the run's allows).
pub(super) const DEFAULT_TARGET_TIMEOUT: Duration = Duration::from_secs(5);
/// The body is read (to time the transfer) up to this many bytes, then dropped.
const MAX_BODY_BYTES: usize = 16 << 20;

/// Why an address in the config is not usable (`tcp:` targets, URL hosts).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AddressError {
    #[error("{0:?} is not host:port")]
    NotHostPort(String),
    #[error("{0:?}: invalid port {1:?}")]
    BadPort(String, String),
    #[error("{0:?}: unclosed [")]
    UnclosedBracket(String),
    #[error("{0:?}: write an IPv6 address as [addr]:port")]
    BareIpv6(String),
    #[error("{0:?} needs a host and a non-zero port")]
    NoHostOrPort(String),
    #[error("URL without host")]
    UrlWithoutHost,
}

/// Why one probe failed. Shown as the target's last error (`ProbeResult::error`) and
/// in the log; the phase it names is where the probe stopped.
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    #[error(transparent)]
    Address(#[from] AddressError),
    #[error("URL without port")]
    UrlWithoutPort,
    #[error("resolving {host}: {source}")]
    Resolve {
        host: String,
        source: std::io::Error,
    },
    #[error("{0} resolved to no address")]
    NoAddress(String),
    #[error("connecting to {addr}: {source}")]
    Connect {
        addr: SocketAddr,
        source: std::io::Error,
    },
    /// The target's TLS settings could not be built (an unreadable CA file) or its
    /// host is not a valid TLS server name.
    #[error("{0}")]
    TlsSetup(Arc<tls::TlsSetupError>),
    #[error("TLS handshake with {host}: {source}")]
    TlsHandshake {
        host: String,
        source: std::io::Error,
    },
    #[error("HTTP handshake: {0}")]
    HttpHandshake(hyper::Error),
    #[error("building request: {0}")]
    BuildRequest(http::Error),
    #[error("HTTP request: {0}")]
    Request(hyper::Error),
    #[error("reading body: {0}")]
    Body(hyper::Error),
    #[error("stopped after {MAX_REDIRECTS} redirects")]
    TooManyRedirects,
    #[error("bad redirect location {location:?}: {source}")]
    BadRedirect {
        location: String,
        source: url::ParseError,
    },
    #[error("redirect to unsupported scheme {0}")]
    RedirectScheme(String),
    #[error("unexpected status {0}")]
    UnexpectedStatus(u16),
}

/// Why a configured target cannot be turned into a [`Target`] (validation has already
/// refused these, so only a bug gets here).
#[derive(Debug, thiserror::Error)]
pub enum TargetError {
    #[error(transparent)]
    Address(#[from] AddressError),
    #[error(transparent)]
    Url(#[from] url::ParseError),
    #[error(transparent)]
    HeaderName(#[from] http::header::InvalidHeaderName),
    #[error(transparent)]
    HeaderValue(#[from] http::header::InvalidHeaderValue),
    #[error(transparent)]
    Method(#[from] http::method::InvalidMethod),
    #[error("no address")]
    NoAddress,
}

/// `host:port`, with the IPv6 brackets removed from the host.
pub(super) fn split_host_port(s: &str) -> Result<(String, u16), AddressError> {
    let (host, port) = s
        .rsplit_once(':')
        .ok_or_else(|| AddressError::NotHostPort(s.to_string()))?;
    let port: u16 = port
        .parse()
        .map_err(|_| AddressError::BadPort(s.to_string(), port.to_string()))?;
    let host = if let Some(h) = host.strip_prefix('[') {
        h.strip_suffix(']')
            .ok_or_else(|| AddressError::UnclosedBracket(s.to_string()))?
    } else if host.contains(':') {
        return Err(AddressError::BareIpv6(s.to_string()));
    } else {
        host
    };
    if host.is_empty() || port == 0 {
        return Err(AddressError::NoHostOrPort(s.to_string()));
    }
    Ok((host.to_string(), port))
}

/// The host to resolve or connect to: `host_str` keeps the brackets of an IPv6
/// literal, which neither the resolver nor `IpAddr` parsing accept.
pub(super) fn connect_host(url: &url::Url) -> Result<String, AddressError> {
    match url.host() {
        Some(url::Host::Ipv6(a)) => Ok(a.to_string()),
        Some(url::Host::Ipv4(a)) => Ok(a.to_string()),
        Some(url::Host::Domain(d)) => Ok(d.to_string()),
        None => Err(AddressError::UrlWithoutHost),
    }
}

/// Everything one probe found out; `None` is "not measured".
#[derive(Debug, Default, Clone)]
pub struct ProbeResult {
    pub success: bool,
    pub duration: f64,
    pub dns: Option<f64>,
    pub resolve: f64,
    pub connect: f64,
    pub tls: f64,
    pub processing: f64,
    pub transfer: f64,
    pub status: Option<u16>,
    pub content_length: Option<u64>,
    /// Body bytes read of the last response (up to the read cap).
    pub body_length: Option<u64>,
    /// HTTP version of the last response as blackbox_exporter writes it (1.1).
    pub http_version: Option<f64>,
    /// 4 or 6: the address family of the last connection.
    pub ip_protocol: Option<u8>,
    pub redirects: Option<u32>,
    pub ssl: Option<bool>,
    pub cert_expiry: Option<f64>,
    pub tls_version: Option<&'static str>,
    pub error: Option<String>,
}

enum Kind {
    Http(url::Url),
    Tcp(String, u16),
}

/// A target ready to probe: parsed address and TLS config built once.
pub(super) struct Target {
    pub(super) cfg: ProbeTarget,
    pub(super) timeout: Duration,
    kind: Kind,
    method: http::Method,
    headers: Vec<(http::HeaderName, http::HeaderValue)>,
    /// Built when the collector is; an error (unreadable CA file) fails every probe.
    tls: Result<Arc<rustls::ClientConfig>, Arc<tls::TlsSetupError>>,
}

trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

impl Target {
    pub(super) fn new(cfg: &ProbeTarget, run_timeout: Duration) -> Result<Self, TargetError> {
        let (kind, alpn) = match (&cfg.http, &cfg.tcp) {
            (Some(u), _) => (Kind::Http(url::Url::parse(u)?), Some(&b"http/1.1"[..])),
            (None, Some(a)) => {
                let (h, p) = split_host_port(a)?;
                (Kind::Tcp(h, p), None)
            }
            (None, None) => return Err(TargetError::NoAddress),
        };
        let headers = cfg
            .headers
            .iter()
            .map(|(k, v)| {
                Ok((
                    http::HeaderName::from_bytes(k.as_bytes())?,
                    http::HeaderValue::from_str(v.0.expose())?,
                ))
            })
            .collect::<Result<_, TargetError>>()?;
        Ok(Target {
            method: http::Method::from_bytes(cfg.method.as_bytes())?,
            headers,
            tls: tls::client_config(cfg.tls_ca_file.as_deref(), cfg.insecure_skip_verify, alpn)
                .map_err(Arc::new),
            kind,
            timeout: cfg
                .timeout
                .map(Dur::get)
                .unwrap_or_else(|| DEFAULT_TARGET_TIMEOUT.min(run_timeout.mul_f64(0.9))),
            cfg: cfg.clone(),
        })
    }

    /// Probes once under this target's timeout. The partial result survives a
    /// timeout, so a hung server still shows how far the probe got.
    pub(super) async fn probe(&self) -> ProbeResult {
        let started = Instant::now();
        let mut r = ProbeResult::default();
        let outcome = tokio::time::timeout(self.timeout, async {
            match &self.kind {
                Kind::Http(u) => self.probe_http(u, &mut r).await,
                Kind::Tcp(h, p) => self.probe_tcp(h, *p, &mut r).await,
            }
        })
        .await;
        r.duration = started.elapsed().as_secs_f64();
        match outcome {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                r.success = false;
                r.error = Some(e.to_string());
            }
            Err(_) => {
                r.success = false;
                r.error = Some(format!(
                    "timed out after {}",
                    sentinel_base::config::format_duration(self.timeout)
                ));
            }
        }
        r
    }

    async fn connect(
        &self,
        host: &str,
        port: u16,
        use_tls: bool,
        r: &mut ProbeResult,
    ) -> Result<Box<dyn Io>, ProbeError> {
        let t = Instant::now();
        let addrs: Result<Vec<SocketAddr>, ProbeError> = match host.parse::<std::net::IpAddr>() {
            Ok(ip) => Ok(vec![SocketAddr::new(ip, port)]),
            Err(_) => tokio::net::lookup_host((host, port))
                .await
                .map(Iterator::collect)
                .map_err(|source| ProbeError::Resolve {
                    host: host.to_string(),
                    source,
                }),
        };
        let resolve = t.elapsed().as_secs_f64();
        r.resolve += resolve;
        // The first lookup only, as blackbox_exporter; redirects add to the resolve phase.
        r.dns.get_or_insert(resolve);
        let addrs = addrs?;
        let t = Instant::now();
        let mut last_err = ProbeError::NoAddress(host.to_string());
        let mut stream = None;
        // Each address in turn, as most clients do: `localhost` may list ::1 first for
        // a server that listens on 127.0.0.1 only.
        for a in addrs {
            // Set before connecting, as blackbox_exporter does: known once resolved.
            r.ip_protocol = Some(if a.is_ipv4() { 4 } else { 6 });
            match TcpStream::connect(a).await {
                Ok(s) => {
                    stream = Some(s);
                    break;
                }
                Err(source) => last_err = ProbeError::Connect { addr: a, source },
            }
        }
        r.connect += t.elapsed().as_secs_f64();
        let stream = stream.ok_or(last_err)?;
        let _ = stream.set_nodelay(true);
        if !use_tls {
            return Ok(Box::new(stream));
        }
        let cfg = self.tls.clone().map_err(ProbeError::TlsSetup)?;
        let name = tls::server_name(host).map_err(|e| ProbeError::TlsSetup(Arc::new(e)))?;
        let t = Instant::now();
        let handshake = tokio_rustls::TlsConnector::from(cfg)
            .connect(name, stream)
            .await;
        r.tls += t.elapsed().as_secs_f64();
        let s = handshake.map_err(|source| ProbeError::TlsHandshake {
            host: host.to_string(),
            source,
        })?;
        let conn = s.get_ref().1;
        if let Some(chain) = conn.peer_certificates() {
            r.cert_expiry = tls::earliest_expiry(chain);
        }
        r.tls_version = conn.protocol_version().map(tls::version_name);
        Ok(Box::new(s))
    }

    async fn probe_tcp(
        &self,
        host: &str,
        port: u16,
        r: &mut ProbeResult,
    ) -> Result<(), ProbeError> {
        self.connect(host, port, self.cfg.tls, r).await?;
        r.success = true;
        Ok(())
    }

    async fn probe_http(&self, first: &url::Url, r: &mut ProbeResult) -> Result<(), ProbeError> {
        let mut url = first.clone();
        let mut redirects = 0u32;
        r.redirects = Some(0);
        loop {
            let https = url.scheme() == "https";
            let host = connect_host(&url)?;
            let port = url
                .port_or_known_default()
                .ok_or(ProbeError::UrlWithoutPort)?;
            let io = self.connect(&host, port, https, r).await?;
            r.ssl = Some(https);
            let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io))
                .await
                .map_err(ProbeError::HttpHandshake)?;
            let conn = tokio::spawn(conn);
            let result = self.exchange(&mut sender, &url, first, r).await;
            conn.abort();
            let location = result?;
            let status = r.status.unwrap_or(0);
            match location {
                Some(loc) if self.cfg.follow_redirects && (300..400).contains(&status) => {
                    if redirects >= MAX_REDIRECTS {
                        return Err(ProbeError::TooManyRedirects);
                    }
                    url = url.join(&loc).map_err(|source| ProbeError::BadRedirect {
                        location: loc.clone(),
                        source,
                    })?;
                    if !matches!(url.scheme(), "http" | "https") {
                        return Err(ProbeError::RedirectScheme(url.scheme().to_string()));
                    }
                    redirects += 1;
                    r.redirects = Some(redirects);
                }
                _ => break,
            }
        }
        let status = r.status.unwrap_or(0);
        r.success = if self.cfg.expect_status.is_empty() {
            (200..300).contains(&status)
        } else {
            self.cfg.expect_status.iter().any(|m| m.matches(status))
        };
        if !r.success {
            return Err(ProbeError::UnexpectedStatus(status));
        }
        Ok(())
    }

    /// One request/response on an open connection; returns the `Location` header.
    async fn exchange(
        &self,
        sender: &mut hyper::client::conn::http1::SendRequest<Empty<Bytes>>,
        url: &url::Url,
        first: &url::Url,
        r: &mut ProbeResult,
    ) -> Result<Option<String>, ProbeError> {
        let host_header = match url.port() {
            Some(p) => format!("{}:{p}", url.host_str().unwrap_or_default()),
            None => url.host_str().unwrap_or_default().to_string(),
        };
        let path = match url.query() {
            Some(q) => format!("{}?{q}", url.path()),
            None => url.path().to_string(),
        };
        let mut req = http::Request::builder()
            .method(self.method.clone())
            .uri(path)
            .header(http::header::HOST, host_header)
            .header(
                http::header::USER_AGENT,
                concat!("comfy-sentinel/", env!("CARGO_PKG_VERSION")),
            );
        // Credentials go to the configured origin only, as browsers and Go do. A
        // configured header replaces ours (a `Host` for a virtual host, say).
        if url.origin() == first.origin() {
            if let Some(h) = req.headers_mut() {
                for (k, v) in &self.headers {
                    h.insert(k, v.clone());
                }
            }
        }
        let req = req
            .body(Empty::<Bytes>::new())
            .map_err(ProbeError::BuildRequest)?;
        let t = Instant::now();
        let resp = sender.send_request(req).await;
        r.processing += t.elapsed().as_secs_f64();
        let resp = resp.map_err(ProbeError::Request)?;
        r.status = Some(resp.status().as_u16());
        r.http_version = match resp.version() {
            http::Version::HTTP_09 => Some(0.9),
            http::Version::HTTP_10 => Some(1.0),
            http::Version::HTTP_11 => Some(1.1),
            _ => None,
        };
        r.content_length = resp
            .headers()
            .get(http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok());
        let location = resp
            .headers()
            .get(http::header::LOCATION)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let t = Instant::now();
        let mut body = resp.into_body();
        let mut read = 0usize;
        let mut outcome = Ok(());
        while read < MAX_BODY_BYTES {
            match body.frame().await {
                None => break,
                Some(Ok(f)) => read += f.data_ref().map_or(0, |d| d.len()),
                Some(Err(e)) => {
                    outcome = Err(ProbeError::Body(e));
                    break;
                }
            }
        }
        r.transfer += t.elapsed().as_secs_f64();
        r.body_length = Some(read as u64);
        outcome.map(|()| location)
    }
}
