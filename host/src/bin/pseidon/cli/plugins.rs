//! `pseidon plugins`: what loaded, what it registered, and what failed.

use std::{io::Write as _, process::ExitCode};

use super::Global;

/// Arguments of `pseidon plugins`.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Loads every plugin of the conf's `plugin-dirs`, prints each with its \
    version and the names it registered, then each file that failed with the reason; exit 2 \
    if one failed under --strict.\n\n\
    Examples:\n  \
    pseidon plugins\n  \
    pseidon --conf ./pseidon.toml --strict plugins"
)]
pub struct Args {}

/// Loads the plugins, prints them and the failures, shuts them down.
pub fn run(global: &Global, _args: Args) -> anyhow::Result<ExitCode> {
    let mut host = global.load_host()?;
    let mut out = String::new();
    let plugins = host.plugins();
    if plugins.is_empty() {
        out.push_str("no plugins loaded\n");
    }
    for p in &plugins {
        out.push_str(&format!(
            "loaded {} {} {}\n",
            p.name,
            p.version,
            p.path.display()
        ));
        if p.registrations.is_empty() {
            out.push_str("    (registered nothing)\n");
        }
        for r in &p.registrations {
            out.push_str(&format!("    {:<9} {}\n", r.kind.as_str(), r.name));
        }
    }
    for f in host.failures() {
        out.push_str(&format!("failed {}\n", f.error));
    }
    std::io::stdout().lock().write_all(out.as_bytes())?;
    host.shutdown();
    Ok(ExitCode::SUCCESS)
}
