//! The command line: global flags and one module per subcommand.

mod plugins;
mod run;

use std::{path::PathBuf, process::ExitCode};

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use pseidon_host::{Conf, conf};

/// pseidon: loads data sink, data source and processor plugins and runs them.
#[derive(Debug, Parser)]
#[command(name = "pseidon", version)]
pub struct Cli {
    /// The conf file [default: $PSEIDON_CONF, else /opt/pseidon/conf/pseidon.toml].
    #[arg(long, global = true, value_name = "PATH")]
    pub conf: Option<PathBuf>,

    /// Any plugin that fails to load is fatal (exit code 2), as `strict = true` in the conf.
    #[arg(long, global = true)]
    pub strict: bool,

    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands; each lives in a module of its own.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// List the loaded plugins, their versions and registry names, then the files that failed.
    Plugins(plugins::Args),
    /// Load the plugins, start every registered processor, and run until SIGINT/SIGTERM.
    Run(run::Args),
}

/// Runs the chosen subcommand.
pub fn dispatch(cli: Cli) -> anyhow::Result<ExitCode> {
    let global = Global {
        conf: cli.conf,
        strict: cli.strict,
    };
    match cli.command {
        Command::Plugins(args) => plugins::run(&global, args),
        Command::Run(args) => run::run(&global, args),
    }
}

/// The global flags, as the subcommands see them.
pub struct Global {
    /// `--conf`.
    pub conf: Option<PathBuf>,
    /// `--strict`.
    pub strict: bool,
}

impl Global {
    /// Reads the conf chosen by `--conf`, `PSEIDON_CONF` or the default; `--strict`
    /// turns strict mode on.
    pub fn load_conf(&self) -> anyhow::Result<Conf> {
        let (path, origin) = conf::resolve_path(self.conf.as_deref());
        let mut conf = Conf::load_from(&path, origin)?;
        conf.strict |= self.strict;
        Ok(conf)
    }

    /// Reads the conf and loads the plugins.
    pub fn load_host(&self) -> anyhow::Result<pseidon_host::Host> {
        let conf = self.load_conf()?;
        pseidon_host::Host::load(conf).context("loading plugins")
    }
}
