//! The command line: global flags and one module per subcommand.

mod config;
pub(crate) mod consume;
mod groups;
mod kformat;
mod metadata;
mod metrics;
mod plugins;
mod records;
mod run;
mod send;

use std::{path::PathBuf, process::ExitCode};

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use pseidon_host::{Conf, conf};

/// pseidon: loads data sink, data source and processor plugins and runs them.
#[derive(Debug, Parser)]
#[command(
    name = "pseidon",
    version,
    after_help = "Logs go to stderr. PSEIDON_LOG sets the log filter (RUST_LOG syntax, e.g. \
    PSEIDON_LOG=debug or PSEIDON_LOG=info,pseidon::plugin=debug; it wins over RUST_LOG); the \
    default is info for `run` and `plugins`, warn for the others. --log-format json prints one \
    JSON object per line (timestamp, level, target, fields) for log shippers."
)]
pub struct Cli {
    /// The conf file [default: $PSEIDON_CONF, else /opt/pseidon/conf/pseidon.toml].
    #[arg(long, global = true, value_name = "PATH")]
    pub conf: Option<PathBuf>,

    /// Any plugin that fails to load is fatal (exit code 2), as `strict = true` in the conf.
    #[arg(long, global = true)]
    pub strict: bool,

    /// How log lines on stderr look: text for people, json (one object per line) for machines.
    #[arg(long, global = true, value_enum, default_value_t = LogFormatArg::Text)]
    pub log_format: LogFormatArg,

    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// `--log-format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormatArg {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

impl From<LogFormatArg> for pseidon_host::logging::LogFormat {
    fn from(f: LogFormatArg) -> Self {
        match f {
            LogFormatArg::Text => pseidon_host::logging::LogFormat::Text,
            LogFormatArg::Json => pseidon_host::logging::LogFormat::Json,
        }
    }
}

/// The subcommands; each lives in a module of its own.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// List the loaded plugins, their versions and registry names, then the files that failed.
    Plugins(plugins::Args),
    /// Load the plugins, start every registered processor, and run until SIGINT/SIGTERM.
    Run(run::Args),
    /// Send each line of stdin (or a file) as one message through the datasink.
    Send(send::Args),
    /// Print the messages of a topic read through the datasource.
    Consume(consume::Args),
    /// List the message groups tracked in the status database, mark them done, or replay them.
    Groups(groups::Args),
    /// Print the cluster's brokers, topics, partitions and their offsets (as kcat -L).
    Metadata(metadata::Args),
    /// Print the effective conf, flattened to `key = value`, secret values redacted.
    Config(config::Args),
    /// Print one scrape of the running `pseidon run`'s /metrics (its `http-listen`).
    Metrics(metrics::Args),
}

impl Command {
    /// The log filter used when neither `PSEIDON_LOG` nor `RUST_LOG` is set: the
    /// service commands log what they do; the user commands (whose output is the point)
    /// only warnings and errors.
    pub fn default_log_filter(&self) -> &'static str {
        match self {
            Command::Plugins(_) | Command::Run(_) => "info",
            Command::Send(_)
            | Command::Consume(_)
            | Command::Groups(_)
            | Command::Metadata(_)
            | Command::Config(_)
            | Command::Metrics(_) => "warn",
        }
    }
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
        Command::Send(args) => send::run(&global, args),
        Command::Consume(args) => consume::run(&global, args),
        Command::Groups(args) => groups::run(&global, args),
        Command::Metadata(args) => metadata::run(&global, args),
        Command::Config(args) => config::run(&global, args),
        Command::Metrics(args) => metrics::run(&global, args),
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

    /// [`Global::load_host`] for the commands that need a plugin: a conf without
    /// `plugin-dirs` is an error naming the file and the key.
    pub fn load_host_with_plugins(&self) -> anyhow::Result<pseidon_host::Host> {
        let conf = self.load_conf()?;
        if conf.plugin_dirs.is_empty() {
            anyhow::bail!(
                "conf file {} has no `plugin-dirs`: no plugin to load (add e.g. plugin-dirs = [\"/opt/pseidon-kafka/plugins\"] before the first [table])",
                conf.path.display()
            );
        }
        pseidon_host::Host::load(conf).context("loading plugins")
    }
}

/// Waits up to `wait_ms` for the datasink `name`; the error names it, the time
/// waited and, if some plugin failed to load, the first load failure.
pub fn wait_sink(
    host: &pseidon_host::Host,
    name: &str,
    wait_ms: u64,
) -> anyhow::Result<pseidon_plugin_api::Sink> {
    host.registry()
        .reg_get_wait_sink(name, std::time::Duration::from_millis(wait_ms))
        .map_err(|e| lookup_error(host, e))
}

/// Waits up to `wait_ms` for the datasource `name` (errors as [`wait_sink`]).
pub fn wait_source(
    host: &pseidon_host::Host,
    name: &str,
    wait_ms: u64,
) -> anyhow::Result<pseidon_plugin_api::Source> {
    host.registry()
        .reg_get_wait_source(name, std::time::Duration::from_millis(wait_ms))
        .map_err(|e| lookup_error(host, e))
}

fn lookup_error(host: &pseidon_host::Host, e: pseidon_plugin_api::Error) -> anyhow::Error {
    let mut msg = e.to_string();
    if matches!(e, pseidon_plugin_api::Error::NotRegistered { .. }) {
        match host.failures().first() {
            Some(f) => msg.push_str(&format!(" (a plugin failed to load: {f})")),
            None => msg.push_str(" (`pseidon plugins` lists what is registered)"),
        }
    }
    anyhow::anyhow!(msg)
}

/// The datasink `send` uses unless `--sink` names another.
pub const DEFAULT_SINK: &str = "pseidon.kafka.util.datasink";
/// The datasource `consume` and `groups` use unless `--source` names another.
pub const DEFAULT_SOURCE: &str = "pseidon.kafka.util.datasource";

/// Checks `topic` against Kafka's rules for topic names (1 to 249 ASCII letters,
/// digits, `.`, `_` and `-`; not `.` or `..`), so a name the broker would reject
/// fails at once with the name, instead of after a delivery timeout.
pub fn check_topic(topic: &str) -> anyhow::Result<()> {
    let why = if topic.is_empty() {
        Some("it is empty")
    } else if topic == "." || topic == ".." {
        Some("`.` and `..` are not allowed")
    } else if topic.len() > 249 {
        Some("it is longer than 249 characters")
    } else if !topic
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
    {
        Some("only ASCII letters, digits, `.`, `_` and `-` are allowed")
    } else {
        None
    };
    match why {
        Some(why) => anyhow::bail!("topic `{topic}` is not a valid Kafka topic name: {why}"),
        None => Ok(()),
    }
}

/// Parses the command line. `--help` and `--version` print and exit 0; a usage error
/// (unknown subcommand or flag, missing or bad value) is one line on stderr naming
/// the culprit, and exit code 2.
pub fn parse_args() -> Result<Cli, ExitCode> {
    use clap::error::ErrorKind;
    match Cli::try_parse() {
        Ok(cli) => Ok(cli),
        Err(e) if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) => {
            let _ = e.print();
            Err(ExitCode::SUCCESS)
        }
        Err(e) if e.kind() == ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
            let _ = e.print();
            Err(ExitCode::from(2))
        }
        Err(e) => {
            eprintln!(
                "pseidon: error: {} (see --help)",
                usage_error_line(&e.render().to_string())
            );
            Err(ExitCode::from(2))
        }
    }
}

/// The first paragraph of clap's error text, on one line, without `error: `.
fn usage_error_line(text: &str) -> String {
    let first: Vec<&str> = text
        .lines()
        .take_while(|l| !l.trim().is_empty())
        .map(str::trim)
        .collect();
    let line = first.join(" ");
    line.strip_prefix("error: ").unwrap_or(&line).to_string()
}
