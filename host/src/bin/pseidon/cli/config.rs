//! `pseidon config`: the effective conf — the file it was read from, then every key
//! flattened to `key = value` in file order (what the plugins see), secret values
//! (see [`pseidon_host::conf::is_secret_key`]) printed as `<redacted>`. Loads no plugin.

use std::{io::Write as _, process::ExitCode};

use anyhow::Context as _;
use pseidon_host::conf::{self, is_secret_key};

use super::Global;

/// What a secret value is printed as.
pub const REDACTED: &str = pseidon_plugin_api::secret::REDACTED;

/// Arguments of `pseidon config`.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Prints the conf that would be used, one `key = value` per line (tables \
    flattened as `table.key`), with every secret value (passwords, keys, tokens) shown as \
    `<redacted>`. Loads no plugin and connects to nothing.\n\n\
    Examples:\n  \
    pseidon config\n  \
    PSEIDON_CONF=./pseidon.toml pseidon config | grep kafka."
)]
pub struct Args {}

/// Prints the conf.
pub fn run(global: &Global, _args: Args) -> anyhow::Result<ExitCode> {
    let (_, origin) = conf::resolve_path(global.conf.as_deref());
    let conf = global.load_conf()?;
    let mut out = format!("# {} ({origin})\n", conf.path.display());
    for e in conf.view.entries() {
        let value = if is_secret_key(&e.key) {
            REDACTED
        } else {
            e.value.as_str()
        };
        out.push_str(&format!("{} = {value}\n", e.key));
    }
    std::io::stdout()
        .lock()
        .write_all(out.as_bytes())
        .context("cannot write to stdout")?;
    Ok(ExitCode::SUCCESS)
}
