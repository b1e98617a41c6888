//! `pseidon metadata` (kcat -L): the cluster's brokers, topics and partitions with
//! leaders, replicas, in-sync replicas and low/high watermarks, asked through the
//! datasource (the host links no Kafka client), as text in kcat's layout or as JSON in
//! `kcat -L -J`'s (`pseidon_host::report`, where both are documented).

use std::{io::Write as _, process::ExitCode, time::Duration};

use anyhow::Context as _;

use super::{DEFAULT_SOURCE, Global, check_topic, wait_source};

/// How the metadata is printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// kcat -L's text, with each partition's offsets at the end of its line.
    Text,
    /// One JSON document, kcat -L -J's keys plus cluster_id and the offsets.
    Json,
}

/// Arguments of `pseidon metadata`.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Every partition line ends with its watermarks: `offsets: low L, high H` \
    (low: the first offset still in the log; high: the offset the next message gets; H - L \
    messages at most). A topic that does not exist is an error naming it (exit 2); it is not \
    created.\n\n\
    Examples:\n  \
    pseidon metadata\n  \
    pseidon metadata --topic test --format json | jq '.topics[0].partitions[] | .high_offset'"
)]
pub struct Args {
    /// Only this topic (an error if it does not exist).
    #[arg(long, short = 't', value_name = "TOPIC")]
    pub topic: Option<String>,
    /// Print kcat -L's text, or one JSON document.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
    /// How long to wait for the cluster's answer, in milliseconds.
    #[arg(long, value_name = "MS", default_value_t = 10_000)]
    pub timeout_ms: u64,
    /// The registry name of the datasource.
    #[arg(long, value_name = "NAME", default_value = DEFAULT_SOURCE)]
    pub source: String,
    /// How long to wait for the datasource to be registered, in milliseconds.
    #[arg(long, value_name = "MS", default_value_t = 5000)]
    pub wait_ms: u64,
}

/// Prints the metadata.
pub fn run(global: &Global, args: Args) -> anyhow::Result<ExitCode> {
    if let Some(t) = &args.topic {
        check_topic(t)?;
    }
    let mut host = global.load_host_with_plugins()?;
    let source = wait_source(&host, &args.source, args.wait_ms)?;
    let result = source
        .metadata(
            args.topic.as_deref(),
            Duration::from_millis(args.timeout_ms),
        )
        .context("cannot fetch the cluster metadata")
        .and_then(|m| {
            let topic = args.topic.as_deref();
            let text = match args.format {
                Format::Text => pseidon_host::report::metadata_text(&m, topic),
                Format::Json => format!("{}\n", pseidon_host::report::metadata_json(&m, topic)),
            };
            std::io::stdout()
                .lock()
                .write_all(text.as_bytes())
                .context("cannot write to stdout")
        });
    let shutdown_errors = host.shutdown();
    result?;
    if let Some(e) = shutdown_errors.first() {
        anyhow::bail!("{e}");
    }
    Ok(ExitCode::SUCCESS)
}
