//! `pseidon run`: load the plugins, start the processors, run until SIGINT/SIGTERM,
//! then stop everything in reverse order.
//!
//! It never runs on doing nothing: a plugin that fails to load, or a processor that
//! fails to start, ends `run` at once (exit 2, naming it; what started is stopped
//! again). While running it polls every processor's `status`: one that reports its
//! work died stops everything and ends `run` with exit 2 naming the processor and the
//! error, so a supervisor (systemd's `Restart=on-failure`) restarts the service. When
//! every processor has finished on its own, `run` stops and exits 0.
//!
//! With `http-listen` (or `--http-listen`) it serves the host's HTTP endpoint
//! (`pseidon_host::http`): the socket is bound before any plugin loads, so a bad
//! address or a taken port ends `run` first (exit 2, naming the key or the flag and
//! the value); `/health` turns 503 as soon as stopping begins, and the endpoint is
//! stopped after the processors and before the plugins shut down.

use std::{collections::BTreeSet, net::SocketAddr, process::ExitCode, sync::Arc, time::Duration};

use anyhow::Context as _;
use pseidon_host::{
    ProcessorError, Termination,
    conf::HTTP_LISTEN_KEY,
    http::{HttpServer, State},
};
use pseidon_plugin_api::ProcessorStatus;

use super::Global;

/// How often the processors' status is polled (also the longest a signal waits to
/// be noticed).
const STATUS_POLL: Duration = Duration::from_millis(200);

/// Arguments of `pseidon run`.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Exits 0 after a clean stop (SIGINT/SIGTERM, or every processor finished on its \
    own). Exits 2 if a plugin fails to load or a processor fails to start (nothing is left \
    running), or if a running processor reports that its work died (everything is stopped first); \
    the error names the plugin or processor. A second signal while stopping exits 2 at once.\n\n\
    HTTP (with --http-listen or the conf's `http-listen`; GET only): /metrics (Prometheus), \
    /health (200 while running, 503 once stopping), /ready (200 when every plugin loaded, every \
    processor runs and every plugin's checks pass, e.g. the brokers answer; else 503 naming what \
    is not; cached 1 s), /registry (plugins and registered names), /groups?status=&topic=&group= \
    (as `pseidon groups --format json`). No secret value is ever served.\n\n\
    Examples:\n  \
    pseidon run\n  \
    pseidon --conf ./pseidon.toml run --http-listen 127.0.0.1:9644\n  \
    PSEIDON_LOG=debug pseidon --log-format json run"
)]
pub struct Args {
    /// Serve the HTTP endpoint here (an IP address and port, e.g. 127.0.0.1:9644);
    /// overrides the conf's `http-listen`.
    #[arg(long, value_name = "ADDR", value_parser = parse_addr)]
    pub http_listen: Option<SocketAddr>,
}

fn parse_addr(s: &str) -> Result<SocketAddr, String> {
    pseidon_host::conf::parse_listen(s)
}

/// Runs until SIGINT or SIGTERM; exit code 0 after a clean stop.
pub fn run(global: &Global, args: Args) -> anyhow::Result<ExitCode> {
    // Installed first, so a signal during loading is not lost.
    let mut termination = Termination::install()?;
    let conf = global.load_conf()?;
    let listen = match args.http_listen {
        Some(addr) => Some((addr, format!("flag --http-listen {addr}"))),
        None => conf.http_listen.map(|addr| {
            (
                addr,
                format!(
                    "conf key `{HTTP_LISTEN_KEY}` = \"{addr}\" in {}",
                    conf.path.display()
                ),
            )
        }),
    };
    let mut http = match listen {
        Some((addr, origin)) => Some(HttpServer::bind(addr, &origin)?),
        None => None,
    };
    let mut host = pseidon_host::Host::load(conf).context("loading plugins")?;
    if let Some(first) = host.failures().first() {
        let first = first.to_string();
        let n = host.failures().len();
        host.shutdown();
        anyhow::bail!(
            "{n} plugin file(s) failed to load, so nothing is started (first: {first}); fix the conf or the plugin dirs"
        );
    }
    let state = Arc::new(State::new(&host, super::DEFAULT_SOURCE));
    if let Some(server) = http.as_mut() {
        server.serve(Arc::clone(&state))?;
    }
    let (running, errors) = host.start_processors();
    if let Some(first) = errors.first() {
        for e in &errors[1..] {
            tracing::error!("{e}");
        }
        let first = first.to_string();
        tracing::info!("stopping the processors that started, and the plugins");
        state.set_stopping();
        host.stop_processors(running);
        if let Some(server) = http.take() {
            server.stop();
        }
        host.shutdown();
        anyhow::bail!("{first}; nothing is left running");
    }
    state.set_processors(running.clone());
    tracing::info!(
        plugins = host.plugins().len(),
        processors = running.len(),
        "running; waiting for SIGINT or SIGTERM"
    );
    let mut finished = BTreeSet::new();
    let mut died = None;
    let signal = loop {
        if let Some(signal) = termination.wait_timeout(STATUS_POLL) {
            break Some(signal);
        }
        for p in &running {
            if finished.contains(&p.name) {
                continue;
            }
            match p.status() {
                ProcessorStatus::Running => {}
                ProcessorStatus::Finished => {
                    tracing::info!(processor = p.name, owner = p.owner, "processor finished");
                    finished.insert(p.name.clone());
                }
                ProcessorStatus::Failed(error) => {
                    died = Some(ProcessorError::Died {
                        name: p.name.clone(),
                        owner: p.owner.clone(),
                        error: Box::new(error),
                    });
                    break;
                }
            }
        }
        if let Some(e) = &died {
            tracing::error!("{e}");
            break None;
        }
        if !running.is_empty() && finished.len() == running.len() {
            tracing::info!("every processor has finished");
            break None;
        }
    };
    state.set_stopping();
    match signal {
        Some(signal) => {
            tracing::info!(signal, "stopping processors and plugins in reverse order");
        }
        None => tracing::info!("stopping processors and plugins in reverse order"),
    }
    // A second signal while stopping means: do not wait any longer.
    std::thread::spawn(move || {
        let again = termination.wait();
        eprintln!(
            "pseidon: second {again} while stopping; exiting without waiting for the plugins"
        );
        std::process::exit(2);
    });
    host.stop_processors(running);
    if let Some(server) = http.take() {
        server.stop();
    }
    host.shutdown();
    tracing::info!("all stopped; exiting");
    if let Some(e) = died {
        anyhow::bail!("{e}; everything was stopped");
    }
    Ok(ExitCode::SUCCESS)
}
