//! `pseidon run`: load the plugins, start the processors, run until SIGINT/SIGTERM,
//! then stop everything in reverse order.
//!
//! It never runs on doing nothing: a plugin that fails to load, or a processor that
//! fails to start, ends `run` at once (exit 2, naming it; what started is stopped
//! again). While running it polls every processor's `status`: one that reports its
//! work died stops everything and ends `run` with exit 2 naming the processor and the
//! error, so a supervisor (systemd's `Restart=on-failure`) restarts the service. When
//! every processor has finished on its own, `run` stops and exits 0.

use std::{collections::BTreeSet, process::ExitCode, time::Duration};

use pseidon_host::{ProcessorError, Termination};
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
    the error names the plugin or processor. A second signal while stopping exits 2 at once."
)]
pub struct Args {}

/// Runs until SIGINT or SIGTERM; exit code 0 after a clean stop.
pub fn run(global: &Global, _args: Args) -> anyhow::Result<ExitCode> {
    // Installed first, so a signal during loading is not lost.
    let mut termination = Termination::install()?;
    let mut host = global.load_host()?;
    if let Some(first) = host.failures().first() {
        let first = first.to_string();
        let n = host.failures().len();
        host.shutdown();
        anyhow::bail!(
            "{n} plugin file(s) failed to load, so nothing is started (first: {first}); fix the conf or the plugin dirs"
        );
    }
    let (running, errors) = host.start_processors();
    if let Some(first) = errors.first() {
        for e in &errors[1..] {
            tracing::error!("{e}");
        }
        let first = first.to_string();
        tracing::info!("stopping the processors that started, and the plugins");
        host.stop_processors(running);
        host.shutdown();
        anyhow::bail!("{first}; nothing is left running");
    }
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
    host.shutdown();
    tracing::info!("all stopped; exiting");
    if let Some(e) = died {
        anyhow::bail!("{e}; everything was stopped");
    }
    Ok(ExitCode::SUCCESS)
}
