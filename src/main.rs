//! Wiring only: parse arguments and config, start the parts, serve, map errors to exit
//! codes (0 ok, 1 runtime failure, 2 invalid config).

#![forbid(unsafe_code)]

use clap::Parser;
use comfy_sentinel::app::App;
use comfy_sentinel::cli::{exit, Cli, Command, ExportFormat, HistoryCommand, RulesCommand};
use comfy_sentinel::config::{self, Config, LogFormat};
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

fn main() {
    let cli = Cli::parse();
    let code = match cli.command {
        Some(Command::Version) => {
            println!("comfy-sentinel {}", env!("CARGO_PKG_VERSION"));
            exit::OK
        }
        Some(Command::Check { print }) => check(&cli, print),
        Some(Command::Rules { ref command }) => rules_command(&cli, command),
        Some(Command::History { ref command }) => history_command(&cli, command),
        Some(Command::Healthcheck { ref url }) => healthcheck(&cli, url.clone()),
        Some(Command::Gate {
            ref url,
            ref criteria,
            ref auth,
            timeout,
        }) => comfy_sentinel::gate::run(url, criteria, auth.clone(), timeout),
        Some(Command::Verify {
            ref secret,
            ref tolerance,
            ref headers,
            ref body,
            show_whsec,
        }) => verify(
            secret,
            tolerance,
            headers.as_deref(),
            body.as_deref(),
            show_whsec,
        ),
        Some(Command::Run) | None => run(&cli),
    };
    std::process::exit(code);
}

fn load(cli: &Cli) -> Result<(Config, config::ConfigSource), i32> {
    match config::load(cli.config.as_deref()) {
        Ok((mut c, source)) => {
            if let Some(l) = &cli.listen {
                if l.parse::<std::net::SocketAddr>().is_err() {
                    eprintln!("error: --listen {l:?} is not a valid host:port address");
                    return Err(exit::INVALID_CONFIG);
                }
                c.listen = l.clone();
            }
            Ok((c, source))
        }
        Err(e) => {
            eprintln!("error: invalid configuration: {e}");
            Err(exit::INVALID_CONFIG)
        }
    }
}

fn history_command(cli: &Cli, command: &HistoryCommand) -> i32 {
    let cfg = match load(cli) {
        Ok((c, _)) => c,
        Err(code) => return code,
    };
    let result = match command {
        HistoryCommand::Import { file } => comfy_sentinel::history::import(&cfg, file),
        HistoryCommand::Export { out } => comfy_sentinel::history::export(&cfg, out.as_deref())
            .map(|n| format!("exported {n} samples")),
    };
    match result {
        Ok(msg) => {
            eprintln!("{msg}");
            exit::OK
        }
        Err(e) => {
            eprintln!("error: {e}");
            exit::RUNTIME
        }
    }
}

fn check(cli: &Cli, print: bool) -> i32 {
    match load(cli) {
        Ok((c, source)) => {
            if print {
                print!("{}", config::render_redacted(&c));
            }
            eprintln!("{}: configuration is valid", source.display_name());
            exit::OK
        }
        Err(code) => code,
    }
}

fn verify(
    secret: &str,
    tolerance: &str,
    headers: Option<&std::path::Path>,
    body: Option<&std::path::Path>,
    show_whsec: bool,
) -> i32 {
    use std::io::Read;
    let tolerance = match comfy_sentinel::config::parse_duration(tolerance) {
        Ok(d) => d.as_secs() as i64,
        Err(e) => {
            eprintln!("error: --tolerance: {e}");
            return exit::INVALID_CONFIG;
        }
    };
    let input = match body {
        Some(p) => std::fs::read(p).map_err(|e| format!("cannot read {}: {e}", p.display())),
        None => {
            let mut b = Vec::new();
            std::io::stdin()
                .read_to_end(&mut b)
                .map(|_| b)
                .map_err(|e| format!("cannot read stdin: {e}"))
        }
    };
    let input = match input {
        Ok(b) => b,
        Err(e) => {
            eprintln!("error: {e}");
            return exit::RUNTIME;
        }
    };
    let (hdrs, body) = match headers {
        Some(p) => match std::fs::read_to_string(p) {
            Ok(t) => (sentinel_notify::verify::parse_header_lines(&t), input),
            Err(e) => {
                eprintln!("error: cannot read {}: {e}", p.display());
                return exit::RUNTIME;
            }
        },
        None => sentinel_notify::verify::split_request(&input),
    };
    if show_whsec {
        if let Ok(keys) = sentinel_notify::sign::WebhookKey::parse_list(secret) {
            for k in keys {
                println!("whsec form: {}", k.to_whsec());
            }
        }
    }
    let now = chrono::Utc::now().timestamp();
    match sentinel_notify::verify::verify_message(secret, &hdrs, &body, now, tolerance) {
        Ok(msg) => {
            println!("{msg}");
            exit::OK
        }
        Err(msg) => {
            println!("{msg}");
            exit::RUNTIME
        }
    }
}

fn rules_command(cli: &Cli, command: &RulesCommand) -> i32 {
    match command {
        RulesCommand::Test { files } => sentinel_rules::cli::test(files),
        RulesCommand::Export {
            out,
            format,
            name,
            namespace,
            labels,
        } => {
            let operator = match format {
                ExportFormat::Prometheus => None,
                ExportFormat::PrometheusOperator => {
                    match sentinel_rules::export_operator::OperatorOptions::new(
                        name,
                        namespace.as_deref(),
                        labels,
                    ) {
                        Ok(o) => Some(o),
                        Err(e) => {
                            eprintln!("error: {e:#}");
                            return exit::INVALID_CONFIG;
                        }
                    }
                }
            };
            let (cfg, _) = match load(cli) {
                Ok(x) => x,
                Err(code) => return code,
            };
            let sources = match cfg.rules.sources() {
                Ok(s) => s,
                Err(e) => {
                    eprintln!("error: {e}");
                    return exit::INVALID_CONFIG;
                }
            };
            let result = match &operator {
                None => sentinel_rules::cli::export(&sources, out.as_deref()),
                Some(o) => sentinel_rules::export_operator::export(&sources, out.as_deref(), o),
            };
            match result {
                Ok(()) => exit::OK,
                Err(e) => {
                    eprintln!("error: {e:#}");
                    exit::INVALID_CONFIG
                }
            }
        }
    }
}

fn init_logging(c: &Config) {
    // `log.level` was validated with the config; a bad RUST_LOG is said, not ignored.
    let filter = match std::env::var("RUST_LOG") {
        Ok(v) if !v.is_empty() => match tracing_subscriber::EnvFilter::try_new(&v) {
            Ok(f) => f,
            Err(e) => {
                eprintln!("warning: RUST_LOG {v:?} is not a valid filter ({e}); using log.level");
                tracing_subscriber::EnvFilter::new(&c.log.level)
            }
        },
        _ => tracing_subscriber::EnvFilter::new(&c.log.level),
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(RedactingStderr);
    match c.log.format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
}

/// Log output with URL passwords and token-like query parameters redacted, whichever
/// part of the sidecar logged them (an error text that embeds a URL, a config value).
/// The formatter hands over one whole event per write, so a URL is never split.
struct RedactingStderr;

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for RedactingStderr {
    type Writer = RedactingStderr;
    fn make_writer(&'a self) -> Self::Writer {
        RedactingStderr
    }
}

impl std::io::Write for RedactingStderr {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let text = String::from_utf8_lossy(buf);
        let red = sentinel_base::text::redact_secrets_in(&text);
        std::io::stderr().write_all(red.as_bytes())?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}

fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    // Two workers: the sidecar must stay light beside a GPU server.
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .max_blocking_threads(16)
        .thread_name("sentinel")
        .enable_all()
        .build()
}

fn run(cli: &Cli) -> i32 {
    // Allocator settings first, before any thread or large allocation exists.
    comfy_sentinel::alloc::tune();
    let (cfg, source) = match load(cli) {
        Ok(x) => x,
        Err(code) => return code,
    };
    init_logging(&cfg);
    let rt = match runtime() {
        Ok(rt) => rt,
        Err(e) => {
            tracing::error!(error = %e, "cannot start the async runtime");
            return exit::RUNTIME;
        }
    };
    match rt.block_on(serve(cfg, source)) {
        Ok(()) => exit::OK,
        Err(e) => {
            tracing::error!(error = format!("{e:#}"), "fatal");
            exit::RUNTIME
        }
    }
}

async fn serve(cfg: Config, source: config::ConfigSource) -> anyhow::Result<()> {
    use anyhow::Context;
    if let Err(e) = std::fs::create_dir_all(&cfg.data_dir) {
        tracing::warn!(data_dir = %cfg.data_dir.display(), error = %e, "cannot create data dir; durable state is off");
    }
    let listener = tokio::net::TcpListener::bind(&cfg.listen)
        .await
        .with_context(|| format!("cannot listen on {}", cfg.listen))?;
    let addr = listener.local_addr()?;
    let web = cfg.web.clone();
    tracing::info!(
        version = env!("CARGO_PKG_VERSION"),
        listen = %addr,
        config = %source.display_name(),
        tls = web.tls.is_some(),
        "comfy-sentinel starting"
    );
    let app = App::try_start(cfg, source)?;
    let shutdown = CancellationToken::new();
    spawn_signal_handlers(app.clone(), shutdown.clone())?;
    spawn_refresher(app.clone(), shutdown.clone());
    spawn_startup_release(app.clone());
    let router = comfy_sentinel::http::router(app.clone());
    comfy_sentinel::http::serve(listener, router, &web, &app.registry, shutdown.clone()).await?;
    app.runner.stop_all();
    tokio::task::spawn_blocking(comfy_sentinel::history::final_flush).await?;
    tracing::info!("comfy-sentinel stopped");
    Ok(())
}

/// Re-encodes `/metrics` when the sidecar's own metrics changed (collectors refresh
/// it themselves after each run): every second, and soon after pushed events, at most
/// every 50 ms so a stream of ingest requests costs a bounded number of encodes.
fn spawn_refresher(app: Arc<App>, shutdown: CancellationToken) {
    tokio::spawn(async move {
        let mut t = tokio::time::interval(Duration::from_secs(1));
        t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = t.tick() => { app.exposition.refresh(); }
                _ = app.refresh_requests() => {
                    app.exposition.refresh();
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                _ = shutdown.cancelled() => break,
            }
        }
    });
}

/// Once the sidecar is up (ready, or after at most a minute) and a few more seconds have
/// passed (`STARTUP_RELEASE_DELAY`), drops the pages only start-up
/// needed (`alloc::release_startup_pages`; off with `COMFY_SENTINEL_RELEASE_STARTUP_PAGES=0`).
fn spawn_startup_release(app: Arc<App>) {
    if !release_enabled() {
        return;
    }
    tokio::spawn(async move {
        for _ in 0..60 {
            if app.readiness().is_ok() {
                break;
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        tokio::time::sleep(STARTUP_RELEASE_DELAY).await;
        release_pages("start-up").await;
    });
}

/// From readiness (every collector ran once) to the release of start-up pages: time for
/// the work that follows start-up at once (the first refreshes and rule evaluations).
/// Whatever runs later for the first time maps its code back in on use.
const STARTUP_RELEASE_DELAY: Duration = Duration::from_secs(3);

fn release_enabled() -> bool {
    let v = std::env::var(comfy_sentinel::alloc::RELEASE_PAGES_ENV).ok();
    comfy_sentinel::alloc::release_pages_enabled(v.as_deref())
}

async fn release_pages(after: &'static str) {
    match tokio::task::spawn_blocking(comfy_sentinel::alloc::release_startup_pages).await {
        Ok(Ok(r)) => tracing::debug!(
            after,
            mappings = r.mappings,
            bytes = r.bytes,
            rss_file_kb_before = r.rss_file_kb_before,
            rss_file_kb_after = r.rss_file_kb_after,
            rss_anon_kb_before = r.rss_anon_kb_before,
            rss_anon_kb_after = r.rss_anon_kb_after,
            "released start-up pages"
        ),
        Ok(Err(e)) => tracing::debug!(after, error = %e, "cannot release start-up pages"),
        Err(e) => tracing::debug!(after, error = %e, "cannot release start-up pages"),
    }
}

fn spawn_signal_handlers(app: Arc<App>, shutdown: CancellationToken) -> anyhow::Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut hup = signal(SignalKind::hangup())?;
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    tokio::spawn(async move {
        while hup.recv().await.is_some() {
            tracing::info!("SIGHUP: reloading config");
            let _ = app.reload().await;
            // A reload parses and compiles like start-up did.
            if release_enabled() {
                release_pages("reload").await;
            }
        }
    });
    tokio::spawn(async move {
        tokio::select! {
            _ = term.recv() => tracing::info!("SIGTERM: shutting down"),
            _ = int.recv() => tracing::info!("SIGINT: shutting down"),
        }
        shutdown.cancel();
    });
    Ok(())
}

fn healthcheck(cli: &Cli, url: Option<String>) -> i32 {
    let url = url.unwrap_or_else(|| {
        let listen = cli
            .listen
            .clone()
            .or_else(|| {
                config::load(cli.config.as_deref())
                    .ok()
                    .map(|(c, _)| c.listen)
            })
            .unwrap_or_else(|| "0.0.0.0:9188".to_string());
        let port = listen.rsplit(':').next().unwrap_or("9188");
        format!("http://127.0.0.1:{port}/healthz")
    });
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(_) => return exit::RUNTIME,
    };
    rt.block_on(async {
        // Loopback probe of our own server: a self-signed certificate is expected.
        let client = match reqwest::Client::builder()
            .timeout(Duration::from_secs(3))
            .danger_accept_invalid_certs(true)
            .build()
        {
            Ok(c) => c,
            Err(_) => return exit::RUNTIME,
        };
        match client.get(&url).send().await {
            // 401 still proves the server is alive; the probe carries no credentials.
            Ok(r) if r.status().is_success() || r.status() == reqwest::StatusCode::UNAUTHORIZED => {
                exit::OK
            }
            Ok(r) => {
                eprintln!("unhealthy: {url} answered {}", r.status());
                exit::RUNTIME
            }
            Err(e) => {
                eprintln!("unhealthy: {url}: {e}");
                exit::RUNTIME
            }
        }
    })
}
