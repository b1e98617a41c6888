//! `pseidon groups`: the message groups tracked in the datasource's status database,
//! as a table (id, status, attempt, last update in UTC, consumer group, cluster id,
//! messages) or as JSON (`pseidon_host::report::groups_json`, one documented schema);
//! `pseidon groups mark-done ID…` marks groups done by hand, and `pseidon groups replay
//! ID…` has done groups delivered again (`--group` says whose, when more than one
//! consumer group tracks the id). Listing, marking and replaying only touch the status
//! database: no Kafka connection is opened.

use std::{
    io::Write as _,
    process::ExitCode,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use anyhow::Context as _;
use pseidon_plugin_api::{GroupFilter, GroupInfo, GroupStatus, Replayed};

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
    /// Marked failed by its user: handed out again after a backoff.
    Failed,
    /// Split in two halves (rows of their own) after max-attempts failures.
    Split,
    /// One message that failed max-attempts times: copied to the dead-letter topic.
    Dead,
}

impl From<Status> for GroupStatus {
    fn from(s: Status) -> Self {
        match s {
            Status::Ready => GroupStatus::Ready,
            Status::Run => GroupStatus::Run,
            Status::Done => GroupStatus::Done,
            Status::Lost => GroupStatus::Lost,
            Status::Failed => GroupStatus::Failed,
            Status::Split => GroupStatus::Split,
            Status::Dead => GroupStatus::Dead,
        }
    }
}

/// How the listing is printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// A table with a header and a count line.
    Table,
    /// One JSON document: {"groups": [...], "count": N, "messages": N}.
    Json,
}

/// Arguments of `pseidon groups`.
#[derive(Debug, clap::Args)]
#[command(
    args_conflicts_with_subcommands = true,
    after_help = "Columns: ID (topic:partition:min-offset:max-offset), STATUS (ready, run, \
    done, lost), ATTEMPT (times handed out), UPDATED (UTC) (last status change), GROUP \
    (consumer group; - if unknown), CLUSTER (Kafka cluster id; - if unknown), MESSAGES (in \
    the group when last handed out; - if unknown). JSON: {\"groups\": [{\"id\", \"topic\", \
    \"partition\", \"min_offset\", \"max_offset\", \"messages\", \"status\", \"attempt\", \
    \"updated_ms\", \"updated\", \"consumer_group\", \"cluster_id\", \"topic_id\"}], \
    \"count\", \"messages\"}, unknown values null.\n\n\
    Only the status database is read: no connection to Kafka.\n\n\
    Examples:\n  \
    pseidon groups --status run --group my-app\n  \
    pseidon groups --since 2h --format json | jq '.groups[] | select(.status == \"run\")'\n  \
    pseidon groups mark-done test:0:0:9\n  \
    pseidon groups replay --group my-app test:0:0:9"
)]
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
    /// Only groups whose status changed within this long ago (e.g. 30s, 10m, 2h, 1d).
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    pub since: Option<Duration>,
    /// Print a table, or one JSON document.
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub format: Format,
    /// Only groups of this consumer group (`group.id`); with `mark-done` and `replay`,
    /// the consumer group whose groups are meant.
    #[arg(long, short = 'g', value_name = "GROUP", global = true)]
    pub group: Option<String>,
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
    #[command(
        after_help = "Example:\n  pseidon groups mark-done --group my-app test:0:0:9 test:0:10:19"
    )]
    MarkDone {
        /// The group ids.
        #[arg(required = true, value_name = "ID")]
        ids: Vec<String>,
    },
    /// Deliver done message groups again: each goes back to `ready`, and the next reader
    /// of its topic in its consumer group hands it out before new data, as a new attempt.
    #[command(
        after_help = "Each id is set back from done to ready; its attempt (times \
    handed out) stays, and the next reader opened on its topic in its consumer group (e.g. \
    `pseidon consume --topic T --group G`) hands it out first, as attempt + 1, with the \
    same id and messages. The consumer group's committed offsets do not move: the replay \
    reads the range with its own consumer, and nothing is committed below what is \
    committed already.\n\n\
    A group that is still ready or run is left as it is (it is replayed by the next reader \
    anyway) and said so. An unknown id, a lost group (its messages are gone from Kafka), \
    or an id that more than one consumer group tracks without --group, is an error naming \
    it (exit 2); the ids before it are replayed. The status database must not be in use by \
    a running reader (stop `pseidon consume` or `pseidon run` first).\n\n\
    Example:\n  pseidon groups replay --group my-app test:0:0:9 && \
    pseidon consume --topic test --group my-app --mark-done -e"
    )]
    Replay {
        /// The group ids (topic:partition:min-offset:max-offset).
        #[arg(required = true, value_name = "ID")]
        ids: Vec<String>,
    },
}

/// The line `replay` prints for one group.
fn replayed_line(r: &Replayed) -> String {
    let g = &r.group;
    let whose = if g.consumer_group.is_empty() {
        String::new()
    } else {
        format!(" in consumer group {}", g.consumer_group)
    };
    match r.previous {
        GroupStatus::Done | GroupStatus::Dead => format!(
            "replay {}: {} -> ready; the next reader of {}{whose} delivers it as attempt {}",
            g.id,
            r.previous.as_str(),
            g.topic,
            g.attempt + 1
        ),
        other => format!(
            "replay {}: already {} (unfinished), unchanged; the next reader of {}{whose} \
             delivers it as attempt {}",
            g.id,
            other.as_str(),
            g.topic,
            g.attempt + 1
        ),
    }
}

/// Lists the groups, or marks them done.
pub fn run(global: &Global, args: Args) -> anyhow::Result<ExitCode> {
    let mut host = global.load_host_with_plugins()?;
    let source = wait_source(&host, &args.source, args.wait_ms)?;
    let result = match &args.action {
        Some(Action::MarkDone { ids }) => {
            let mut out = std::io::stdout().lock();
            ids.iter().try_for_each(|id| {
                match &args.group {
                    Some(g) => source.mark_done_in(id, g),
                    None => source.mark_done(id),
                }
                .with_context(|| format!("cannot mark group `{id}` done"))?;
                writeln!(out, "marked done {id}").context("cannot write to stdout")
            })
        }
        Some(Action::Replay { ids }) => {
            let mut out = std::io::stdout().lock();
            ids.iter().try_for_each(|id| {
                let r = source
                    .replay(id, args.group.as_deref())
                    .with_context(|| format!("cannot replay group `{id}`"))?;
                writeln!(out, "{}", replayed_line(&r)).context("cannot write to stdout")
            })
        }
        None => {
            let filter = GroupFilter {
                status: args.status.map(GroupStatus::from),
                topic: args.topic.clone(),
                consumer_group: args.group.clone(),
                updated_since_ms: args.since.map(|ago| since_ms(SystemTime::now(), ago)),
            };
            source
                .groups(&filter)
                .context("cannot list the message groups")
                .and_then(|groups| {
                    let text = match args.format {
                        Format::Table => table(&groups),
                        Format::Json => {
                            format!("{}\n", pseidon_host::report::groups_json(&groups))
                        }
                    };
                    std::io::stdout()
                        .lock()
                        .write_all(text.as_bytes())
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

/// The instant `ago` before `now`, in ms since the epoch (the epoch at the earliest).
fn since_ms(now: SystemTime, ago: Duration) -> i64 {
    let then = now
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .saturating_sub(ago);
    i64::try_from(then.as_millis()).unwrap_or(i64::MAX)
}

/// The consumer group as listed: `-` for rows of unknown origin (from before scoping).
fn group_name(g: &GroupInfo) -> &str {
    if g.consumer_group.is_empty() {
        "-"
    } else {
        &g.consumer_group
    }
}

/// The table: a header, one row per group, and a count.
fn table(groups: &[GroupInfo]) -> String {
    let id_width = groups.iter().map(|g| g.id.len()).max().unwrap_or(0).max(2);
    let group_width = groups
        .iter()
        .map(|g| group_name(g).len())
        .max()
        .unwrap_or(0)
        .max(5);
    let cluster = |g: &GroupInfo| {
        if g.cluster_id.is_empty() {
            "-".to_string()
        } else {
            g.cluster_id.clone()
        }
    };
    let cluster_width = groups
        .iter()
        .map(|g| cluster(g).len())
        .max()
        .unwrap_or(0)
        .max(7);
    // MESSAGES comes last, after the columns of earlier versions, so that scripts
    // reading columns by position keep working.
    let mut out = format!(
        "{:<id_width$}  {:<6}  {:>7}  {:<23}  {:<group_width$}  {:<cluster_width$}  {}\n",
        "ID", "STATUS", "ATTEMPT", "UPDATED (UTC)", "GROUP", "CLUSTER", "MESSAGES"
    );
    for g in groups {
        out.push_str(&format!(
            "{:<id_width$}  {:<6}  {:>7}  {:<23}  {:<group_width$}  {:<cluster_width$}  {}\n",
            g.id,
            g.status.as_str(),
            g.attempt,
            utc(g.updated_ms),
            group_name(g),
            cluster(g),
            g.messages.map_or("-".to_string(), |n| n.to_string()),
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
            cluster_id: "C1".into(),
            consumer_group: "gA".into(),
            topic_id: "T1".into(),
            messages: Some(10),
            reason: None,
            retry_at_ms: None,
            parent: None,
        };
        let old = GroupInfo {
            consumer_group: String::new(),
            cluster_id: String::new(),
            messages: None,
            ..g.clone()
        };
        let t = table(&[g, old]);
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines.len(), 4, "{t}");
        assert!(
            lines[0].starts_with("ID") && lines[0].contains("GROUP"),
            "{t}"
        );
        assert!(
            lines[1].starts_with("t:0:0:9  done")
                && lines[1].ends_with(" 2  1970-01-01 00:00:00.000  gA     C1       10"),
            "{t}"
        );
        assert!(
            lines[2].ends_with("1970-01-01 00:00:00.000  -      -        -"),
            "{t}"
        );
        assert!(lines[0].ends_with("CLUSTER  MESSAGES"), "{t}");
        assert_eq!(lines[3], "2 group(s)");
    }
}

#[cfg(test)]
mod replay_tests {
    use super::*;

    fn replayed(previous: GroupStatus, status: GroupStatus) -> Replayed {
        Replayed {
            previous,
            group: GroupInfo {
                id: "t:0:0:9".into(),
                topic: "t".into(),
                partition: 0,
                min_offset: 0,
                max_offset: 9,
                status,
                attempt: 1,
                updated_ms: 0,
                cluster_id: "C1".into(),
                consumer_group: "gA".into(),
                topic_id: "T1".into(),
                messages: Some(10),
                reason: None,
                retry_at_ms: None,
                parent: None,
            },
        }
    }

    #[test]
    fn replay_lines_say_what_happens_next() {
        assert_eq!(
            replayed_line(&replayed(GroupStatus::Done, GroupStatus::Ready)),
            "replay t:0:0:9: done -> ready; the next reader of t in consumer group gA \
             delivers it as attempt 2"
        );
        let run = replayed_line(&replayed(GroupStatus::Run, GroupStatus::Run));
        assert!(run.contains("already run (unfinished), unchanged"), "{run}");
    }

    #[test]
    fn since_is_that_long_before_now() {
        let now = UNIX_EPOCH + Duration::from_millis(10_000_123);
        assert_eq!(since_ms(now, Duration::from_secs(7200)), 2_800_123);
        assert_eq!(
            since_ms(now, humantime::parse_duration("10m").unwrap()),
            9_400_123
        );
        assert_eq!(since_ms(now, Duration::from_secs(1 << 40)), 0);
    }
}
