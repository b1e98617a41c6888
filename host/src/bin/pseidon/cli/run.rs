//! `pseidon run`: load the plugins, start the processors, run until SIGINT/SIGTERM,
//! then stop everything in reverse order.

use std::process::ExitCode;

use pseidon_host::Termination;

use super::Global;

/// Arguments of `pseidon run`.
#[derive(Debug, clap::Args)]
pub struct Args {}

/// Runs until SIGINT or SIGTERM; exit code 0 after a clean stop.
pub fn run(global: &Global, _args: Args) -> anyhow::Result<ExitCode> {
    // Installed first, so a signal during loading is not lost.
    let mut termination = Termination::install()?;
    let mut host = global.load_host()?;
    let (running, errors) = host.start_processors();
    for e in &errors {
        tracing::error!("{e}");
    }
    tracing::info!(
        plugins = host.plugins().len(),
        processors = running.len(),
        "running; waiting for SIGINT or SIGTERM"
    );
    let signal = termination.wait();
    tracing::info!(signal, "stopping processors and plugins in reverse order");
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
    Ok(ExitCode::SUCCESS)
}
