//! `pseidon groups`: the message groups tracked in the datasource's status database,
//! as a table (id, status, attempt, last update in UTC); `pseidon groups mark-done ID…`
//! marks groups done by hand.

use std::{io::Write as _, process::ExitCode};

use anyhow::Context as _;
use pseidon_plugin_api::{GroupFilter, GroupInfo, GroupStatus};

use super::{DEFAULT_SOURCE, Global, wait_source};

/// A group status, as given on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Status {
    /// Read, not handed out yet.
    Ready,
    /// Handed out, not done yet.
    Run,
    /// Marked done.
    Done,
    /// Could not be replayed (its messages are gone from Kafka).
    Lost,
}

impl From<Status> for GroupStatus {
    fn from(s: Status) -> Self {
        match s {
            Status::Ready => GroupStatus::Ready,
            Status::Run => GroupStatus::Run,
            Status::Done => GroupStatus::Done,
            Status::Lost => GroupStatus::Lost,
        }
    }
}

/// Arguments of `pseidon groups`.
#[derive(Debug, clap::Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct Args {
    /// What to do instead of listing.
    #[command(subcommand)]
    pub action: Option<Action>,
    /// Only groups of this status.
    #[arg(long, value_enum)]
    pub status: Option<Status>,
    /// Only groups of this topic.
    #[arg(long, value_name = "TOPIC")]
    pub topic: Option<String>,
    /// The registry name of the datasource.
    #[arg(long, value_name = "NAME", default_value = DEFAULT_SOURCE, global = true)]
    pub source: String,
    /// How long to wait for the datasource to be registered, in milliseconds.
    #[arg(long, value_name = "MS", default_value_t = 5000, global = true)]
    pub wait_ms: u64,
}

/// The subcommands of `pseidon groups`.
#[derive(Debug, clap::Subcommand)]
pub enum Action {
    /// Mark message groups done (ids as listed: topic:partition:min-offset:max-offset).
    MarkDone {
        /// The group ids.
        #[arg(required = true, value_name = "ID")]
        ids: Vec<String>,
    },
}

/// Lists the groups, or marks them done.
pub fn run(global: &Global, args: Args) -> anyhow::Result<ExitCode> {
    let mut host = global.load_host_with_plugins()?;
    let source = wait_source(&host, &args.source, args.wait_ms)?;
    let result = match &args.action {
        Some(Action::MarkDone { ids }) => {
            let mut out = std::io::stdout().lock();
            ids.iter().try_for_each(|id| {
                source
                    .mark_done(id)
                    .with_context(|| format!("cannot mark group `{id}` done"))?;
                writeln!(out, "marked done {id}").context("cannot write to stdout")
            })
        }
        None => {
            let filter = GroupFilter {
                status: args.status.map(GroupStatus::from),
                topic: args.topic.clone(),
                consumer_group: None,
            };
            source
                .groups(&filter)
                .context("cannot list the message groups")
                .and_then(|groups| {
                    std::io::stdout()
                        .lock()
                        .write_all(table(&groups).as_bytes())
                        .context("cannot write to stdout")
                })
        }
    };
    let shutdown_errors = host.shutdown();
    result?;
    if let Some(e) = shutdown_errors.first() {
        anyhow::bail!("{e}");
    }
    Ok(ExitCode::SUCCESS)
}

/// The table: a header, one row per group, and a count.
fn table(groups: &[GroupInfo]) -> String {
    let id_width = groups.iter().map(|g| g.id.len()).max().unwrap_or(0).max(2);
    let mut out = format!(
        "{:<id_width$}  {:<6}  {:>7}  {}\n",
        "ID", "STATUS", "ATTEMPT", "UPDATED (UTC)"
    );
    for g in groups {
        out.push_str(&format!(
            "{:<id_width$}  {:<6}  {:>7}  {}\n",
            g.id,
            g.status.as_str(),
            g.attempt,
            utc(g.updated_ms)
        ));
    }
    out.push_str(&format!("{} group(s)\n", groups.len()));
    out
}

/// `YYYY-MM-DD HH:MM:SS.mmm` (UTC) of `ms` since the epoch.
fn utc(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let millis = ms.rem_euclid(1000);
    let days = secs.div_euclid(86_400);
    let tod = secs.rem_euclid(86_400);
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02}.{millis:03}",
        tod / 3600,
        tod % 3600 / 60,
        tod % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_formats_known_instants() {
        assert_eq!(utc(0), "1970-01-01 00:00:00.000");
        assert_eq!(utc(951_782_400_123), "2000-02-29 00:00:00.123");
        assert_eq!(utc(1_798_761_599_999), "2026-12-31 23:59:59.999");
    }

    #[test]
    fn table_lists_every_group_with_a_count() {
        let g = GroupInfo {
            id: "t:0:0:9".into(),
            topic: "t".into(),
            partition: 0,
            min_offset: 0,
            max_offset: 9,
            status: GroupStatus::Done,
            attempt: 2,
            updated_ms: 0,
            cluster_id: String::new(),
            consumer_group: String::new(),
            topic_id: String::new(),
        };
        let t = table(&[g]);
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines.len(), 3, "{t}");
        assert!(lines[0].starts_with("ID"), "{t}");
        assert!(
            lines[1].starts_with("t:0:0:9  done") && lines[1].contains(" 2  1970-01-01"),
            "{t}"
        );
        assert_eq!(lines[2], "1 group(s)");
    }
}
