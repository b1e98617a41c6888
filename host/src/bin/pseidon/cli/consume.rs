//! `pseidon consume`: prints the messages of topics read through the datasource, like
//! `kcat -C`, group after group (`next_group`).
//!
//! - `--format value` (default): each value on a line of its own; a value that is not
//!   UTF-8 stops the command with an error naming its topic, partition and offset
//!   (use `--format json` for binary data). A tombstone prints the null string: empty
//!   by default, `NULL` with `-Z`, or `--null-value STR`.
//! - `-f FORMAT`: kcat's format strings (the `kformat` module); bytes printed
//!   raw, nulls as the null string.
//! - `-o`/`-p`: a plain read (the plugin's reader options `pseidon-kafka.assign`,
//!   `start-offset`, `stop-timestamp-ms`): no consumer group, nothing tracked, nothing
//!   committed; `--mark-done` is refused with them. A refused option is reported with
//!   the flag behind it. `-o e@TS` ends the read by itself once every partition
//!   reached the stop timestamp (or, with `-e`, its end).
//! - stderr: a progress line while stderr is a terminal (messages, groups, rate, twice
//!   a second), and a summary at the end with the elapsed time and the rate.
//! - `--format json`: one JSON object per line with `topic`, `partition`, `offset`,
//!   `timestamp_ms`, `key`, `value`, `headers` (`[{"key", "value"}]`) and `group_id`.
//!   Byte fields (`key`, `value`, header values) are strings when they are UTF-8,
//!   `null` when absent; bytes that are not UTF-8 go in a field `<name>_base64`
//!   (standard base64 with padding) instead of `<name>`, so nothing is lost.
//! - `--mark-done`: a group is marked done once all its messages were printed and
//!   stdout was flushed.
//! - `--max N`: the reader is opened with `pseidon-kafka.reader-max-messages = N`, so no
//!   group it forms holds more than what is still to print: every printed group can be
//!   marked done, and the next run goes on after them. A replayed group (its range is
//!   recorded) larger than what is left ends the run before it, saying so (an error if
//!   nothing was printed: such a group needs a larger `--max`).
//! - `--idle-exit-ms`: the idle clock runs only while the consumer group has assigned
//!   the reader its partitions: not while it joins (after a crash that can take the
//!   dead member's session timeout), nor during a replay or a rebalance.
//! - `-e`/`--exit-at-end` (kcat's `-e`): the reader is opened with
//!   `kafka.enable.partition.eof = true`; the command exits 0 once every assigned
//!   partition reached its end and all it read was printed. Ending otherwise (idle, a
//!   signal) before that is not success.
//! - stdout is written by a thread of its own, so a stalled stdout (`| sleep 25`) never
//!   holds up a signal: the first SIGINT/SIGTERM stops reading, closes the reader (which
//!   commits what is done) and exits 130/143 at once; groups not printed whole stay
//!   unfinished and are replayed by the next reader, as after any crash. A second
//!   signal exits at once.

use std::{
    collections::HashSet,
    io::{ErrorKind, IsTerminal as _, Write},
    process::ExitCode,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicUsize, Ordering},
        mpsc,
    },
    time::{Duration, Instant},
};

use anyhow::Context as _;
use pseidon_plugin_api::{Error, Message, MessageGroup, ReaderOptions, Source, SourceReader};
use serde_json::{Map, Value, json};

use super::{DEFAULT_SOURCE, Global, check_topic, kformat, wait_source};

/// The per-reader option bounding the messages a reader hands out (pseidon-kafka).
const READER_MAX_MESSAGES: &str = "pseidon-kafka.reader-max-messages";
/// The per-reader options of a plain read (pseidon-kafka): the partitions, the start
/// offset, the stop timestamp.
const ASSIGN: &str = "pseidon-kafka.assign";
const START_OFFSET: &str = "pseidon-kafka.start-offset";
const STOP_TIMESTAMP_MS: &str = "pseidon-kafka.stop-timestamp-ms";
/// Groups handed to the stdout thread and not printed yet, at most.
const IN_FLIGHT: usize = 2;
/// The longest one wait of the loop (so a signal is seen within it).
const TICK: Duration = Duration::from_millis(200);

/// How the messages are printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// The value, one per line (must be UTF-8).
    Value,
    /// One JSON object per message (non-UTF-8 bytes as `<field>_base64`).
    Json,
}

/// `--isolation`: which messages of transactional producers are read (librdkafka
/// `isolation.level`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
#[clap(rename_all = "snake_case")]
pub enum Isolation {
    /// Only messages of committed transactions (and non-transactional ones), up to the
    /// last stable offset.
    ReadCommitted,
    /// Every message, also those of open and aborted transactions.
    ReadUncommitted,
}

impl Isolation {
    /// The librdkafka value of `isolation.level`.
    pub fn as_librdkafka(self) -> &'static str {
        match self {
            Isolation::ReadCommitted => "read_committed",
            Isolation::ReadUncommitted => "read_uncommitted",
        }
    }
}

/// A `-o` value: where to start, or (`e@TS`) where to stop.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OffsetArg {
    /// `beginning`, `end`, `stored`, `N`, `-N` or `s@TS`, as the plugin takes it.
    Start(String),
    /// `e@TS`: stop before the first message at or after TS (ms since the epoch).
    Stop(i64),
}

/// Parses `-o` (kcat's forms). For clap.
fn parse_offset(s: &str) -> Result<OffsetArg, String> {
    let bad = || {
        format!(
            "`{s}` is not beginning, end, stored, N (an offset), -N (N before the end), s@TS or e@TS (TS in ms since the epoch)"
        )
    };
    let number = |n: &str| n.parse::<i64>().ok().filter(|n| *n >= 0);
    match s {
        "beginning" | "end" | "stored" => Ok(OffsetArg::Start(s.to_string())),
        _ => {
            if let Some(ts) = s.strip_prefix("e@") {
                number(ts).map(OffsetArg::Stop).ok_or_else(bad)
            } else {
                let rest = s
                    .strip_prefix("s@")
                    .or_else(|| s.strip_prefix('-'))
                    .unwrap_or(s);
                number(rest)
                    .map(|_| OffsetArg::Start(s.to_string()))
                    .ok_or_else(bad)
            }
        }
    }
}

/// Arguments of `pseidon consume`.
#[derive(Debug, clap::Args)]
#[command(after_help = "Two ways to read:\n\n\
    - In a consumer group (the default): messages come in message groups tracked in the \
    status database; --mark-done marks each printed group done, and only done groups \
    move the committed offsets.\n\
    - A plain read (-o and/or -p, as kcat's assign mode): the reader assigns itself the \
    partitions (-p, default all) from -o (default beginning); it joins no consumer \
    group, tracks nothing and commits nothing (`stored` only reads the committed offsets \
    of --group). --mark-done is refused with -o/-p. An -o N past the end starts at the \
    end; -N starts N messages before the end of each partition; s@TS at the first \
    message at or after TS (ms since the epoch), or the end. e@TS (may be given with a \
    start -o) stops each partition before its first message at or after TS; the \
    command exits 0 once every partition reached it (or, with -e, its end).\n\n\
    JSON: byte fields (key, value, header values) are strings when UTF-8, null when \
    absent, and `<field>_base64` (standard base64) instead when not UTF-8; \
    `pseidon send --input json` reads it back.\n\n\
    -f FORMAT: kcat's tokens %t topic, %p partition, %o offset, %k key, %K key length, \
    %s value, %S value length, %R value length as 4-byte big-endian, %T timestamp (ms), \
    %h headers (n=v,...), %% and \\n \\r \\t \\xNN; lengths are -1 for null. A \
    null key or value prints as the --null-value string (-Z: NULL; empty by default), \
    in --format value and -f alike.\n\n\
    Topic patterns: a -t starting with ^ is a regular expression (as librdkafka's), \
    matched anywhere in a name (anchor with ^ and $); the datasource expands it when the \
    reader opens into the topics that match then (not Kafka's internal __ topics): a \
    topic created later is not read by this run.\n\n\
    stderr: a progress line while it runs on a terminal, then a summary (messages, \
    groups, elapsed time, rate).\n\n\
    Examples:\n  \
    pseidon consume -t test --mark-done -e\n  \
    pseidon consume -t test -o beginning -e -f '%k=%s\\n'\n  \
    pseidon consume -t test -p 0,1 -o -10 -e\n  \
    pseidon consume -t test -o s@1700000000000 -o e@1700003600000\n  \
    pseidon consume -t test -o beginning -e -Z -f '%p %o %k %S\\n'\n  \
    pseidon consume -t test -o beginning -e --format json > copy.jsonl\n  \
    pseidon consume -t copied -o beginning -e --isolation read_committed\n  \
    pseidon consume -t '^logs-.*' --mark-done -e")]
pub struct Args {
    /// The topic to read (repeat for more); `^…` is a regular expression of topics.  Example: -t '^logs-.*'
    #[arg(long, short = 't', value_name = "TOPIC", required = true)]
    pub topic: Vec<String>,
    /// The consumer group [default: the conf's kafka.group.id].  Example: -g my-app
    #[arg(long, short = 'g', value_name = "GROUP")]
    pub group: Option<String>,
    /// A plain read from this offset: beginning, end, stored, N, -N, s@TS; e@TS stops (kcat -o).  Example: -o -10
    #[arg(long, short = 'o', value_name = "OFFSET", value_parser = parse_offset, allow_hyphen_values = true)]
    pub offset: Vec<OffsetArg>,
    /// A plain read of these partitions of every topic (repeatable, or a list).  Example: -p 0,2
    #[arg(long, short = 'p', value_name = "N", allow_negative_numbers = true, value_delimiter = ',', value_parser = clap::value_parser!(i32).range(0..))]
    pub partition: Vec<i32>,
    /// Stop after this many messages (groups are formed no larger than what is left,
    /// so each printed group can be marked done).  Example: --max 100
    #[arg(long, short = 'c', value_name = "N")]
    pub max: Option<u64>,
    /// Exit after this long without a message, in milliseconds, counted once the
    /// partitions are assigned [default: never].
    #[arg(long, value_name = "MS")]
    pub idle_exit_ms: Option<u64>,
    /// Exit when every assigned partition reached its end (exit 0 only then).
    #[arg(long, short = 'e')]
    pub exit_at_end: bool,
    /// How to print the messages.  Example: --format json
    #[arg(long, value_enum, default_value_t = Format::Value)]
    pub format: Format,
    /// Print each message with this kcat format (see below).  Example: -f '%k=%s\n'
    #[arg(long = "format-string", short = 'f', value_name = "FORMAT", value_parser = kformat::Template::parse)]
    pub format_string: Option<kformat::Template>,
    /// Print a null key or value as NULL (kcat -Z); see --null-value.
    #[arg(short = 'Z', conflicts_with = "null_value")]
    pub null_as_null: bool,
    /// What a null key or value prints as in --format value and -f [default: empty].  Example: --null-value '(null)'
    #[arg(long, value_name = "STR")]
    pub null_value: Option<String>,
    /// Which transactional messages are read: read_committed (only committed
    /// transactions) or read_uncommitted (also open and aborted ones) [default: as
    /// librdkafka, read_committed; or the conf's kafka.isolation.level].  Example: --isolation read_uncommitted
    #[arg(long, value_enum, value_name = "LEVEL")]
    pub isolation: Option<Isolation>,
    /// Mark each message group done once all its messages are printed (not with -o/-p).
    #[arg(long)]
    pub mark_done: bool,
    /// The registry name of the datasource.
    #[arg(long, value_name = "NAME", default_value = DEFAULT_SOURCE)]
    pub source: String,
    /// How long to wait for the datasource to be registered, in milliseconds.
    #[arg(long, value_name = "MS", default_value_t = 5000)]
    pub wait_ms: u64,
}

/// Counts of one run.
#[derive(Default)]
struct Counts {
    /// Messages handed to the stdout thread.
    sent: u64,
    messages: u64,
    groups: u64,
    marked: u64,
}

/// How a run ended without an error.
enum End {
    /// `--max` reached.
    Max,
    /// `--idle-exit-ms` ran out.
    Idle,
    /// `-e`: every assigned partition reached its end.
    AllRead,
    /// `--max`: a replayed group holds more messages than are left to print.
    TooBig { id: String, messages: usize },
    /// SIGINT (2) or SIGTERM (15).
    Signal(usize),
    /// stdout was closed by the reader (e.g. `| head`).
    BrokenPipe,
}

/// A group for the stdout thread.
struct Printing {
    id: String,
    buf: Vec<u8>,
    messages: usize,
    /// All its messages are in `buf`: it may be marked done once printed.
    whole: bool,
}

/// What the stdout thread reports.
enum Printed {
    Group {
        id: String,
        messages: usize,
        whole: bool,
    },
    Failed(std::io::Error),
}

/// Reads and prints until `--max`, `--idle-exit-ms`, `-e` or a signal.
pub fn run(global: &Global, args: Args) -> anyhow::Result<ExitCode> {
    let mut seen = HashSet::new();
    for t in &args.topic {
        // `^…`: a pattern, expanded by the datasource when the reader opens.
        if !t.starts_with('^') {
            check_topic(t)?;
        }
        if !seen.insert(t.as_str()) {
            anyhow::bail!("topic `{t}` is listed twice (-t/--topic): name each topic once");
        }
    }
    if args.max == Some(0) {
        anyhow::bail!("--max must be at least 1");
    }
    let plain = !args.offset.is_empty() || !args.partition.is_empty();
    if plain && args.mark_done {
        anyhow::bail!(
            "--mark-done cannot be used with -o/--offset or -p/--partition: a plain read \
             tracks no message groups (drop -o/-p to read in the consumer group)"
        );
    }
    let starts: Vec<&str> = args
        .offset
        .iter()
        .filter_map(|o| match o {
            OffsetArg::Start(s) => Some(s.as_str()),
            OffsetArg::Stop(_) => None,
        })
        .collect();
    let stops: Vec<i64> = args
        .offset
        .iter()
        .filter_map(|o| match o {
            OffsetArg::Stop(t) => Some(*t),
            OffsetArg::Start(_) => None,
        })
        .collect();
    if starts.len() > 1 || stops.len() > 1 {
        anyhow::bail!(
            "-o/--offset is given {} times: at most one start (beginning, end, stored, N, -N, \
             s@TS) and one e@TS",
            args.offset.len()
        );
    }
    let stop = Arc::new(AtomicBool::new(false));
    let signal = Arc::new(AtomicUsize::new(0));
    // The first SIGINT/SIGTERM ends the loop (the reader is closed and commits); a
    // second one exits at once (status 130/143).
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register_conditional_shutdown(sig, 128 + sig, Arc::clone(&stop))
            .and_then(|_| {
                signal_hook::flag::register_usize(
                    sig,
                    Arc::clone(&signal),
                    usize::try_from(sig).unwrap_or(2),
                )
            })
            .and_then(|_| signal_hook::flag::register(sig, Arc::clone(&stop)))
            .context("cannot install the SIGINT/SIGTERM handlers")?;
    }
    let mut host = global.load_host_with_plugins()?;
    let has_conf_group = host
        .conf()
        .view
        .get("kafka.group.id")
        .is_some_and(|e| !e.value.trim().is_empty());
    let mut options = ReaderOptions::default();
    let group = match &args.group {
        Some(g) if g.trim().is_empty() => anyhow::bail!("--group must not be empty"),
        Some(g) => {
            options = options.group_id(g);
            g.clone()
        }
        None if plain => String::new(),
        None if !has_conf_group => anyhow::bail!(
            "no consumer group: pass --group GROUP or set kafka.group.id in {}",
            host.conf().path.display()
        ),
        None => host
            .conf()
            .view
            .get("kafka.group.id")
            .map(|e| e.value.clone())
            .unwrap_or_default(),
    };
    if let Some(max) = args.max {
        options = options.set(READER_MAX_MESSAGES, &max.to_string());
    }
    if args.exit_at_end {
        options = options.set("kafka.enable.partition.eof", "true");
    }
    if let Some(level) = args.isolation {
        options = options.set("kafka.isolation.level", level.as_librdkafka());
    }
    if plain {
        let list: Vec<String> = args.partition.iter().map(i32::to_string).collect();
        options = options.set(
            ASSIGN,
            if list.is_empty() {
                "all".to_string()
            } else {
                list.join(",")
            }
            .as_str(),
        );
        options = options.set(START_OFFSET, starts.first().copied().unwrap_or("beginning"));
        if let Some(stop) = stops.first() {
            options = options.set(STOP_TIMESTAMP_MS, &stop.to_string());
        }
    }
    let source = wait_source(&host, &args.source, args.wait_ms)?;
    let topics: Vec<&str> = args.topic.iter().map(String::as_str).collect();
    let mut reader = match source.reader(&topics, options) {
        Ok(r) => r,
        Err(e) => {
            let _ = host.shutdown();
            return Err(match flag_error(&e) {
                Some(msg) => anyhow::anyhow!("cannot read {topics:?}: {msg}"),
                None => anyhow::Error::new(e).context(format!("cannot read {topics:?}")),
            });
        }
    };
    let ends_by_itself = args.exit_at_end || !stops.is_empty();
    if ends_by_itself && let Err(e) = reader.progress() {
        let _ = reader.close();
        let _ = host.shutdown();
        anyhow::bail!("-e/--exit-at-end needs a datasource that reports its progress: {e}");
    }
    let mut counts = Counts::default();
    let null: Vec<u8> = match (&args.null_value, args.null_as_null) {
        (Some(s), _) => s.as_bytes().to_vec(),
        (None, true) => b"NULL".to_vec(),
        (None, false) => Vec::new(),
    };
    let started = Instant::now();
    let run = Run {
        source: &source,
        args: &args,
        stop: &stop,
        signal: &signal,
        group: &group,
        null: &null,
        ends_by_itself,
        started,
        progress_line: std::io::stderr().is_terminal(),
    };
    let result = run.consume(&mut reader, &mut counts);
    let closed = reader.close().context("closing the reader");
    let shutdown_errors = host.shutdown();
    if run.progress_line {
        eprint!("\r\x1b[K");
    }
    let end = result?;
    closed?;
    let elapsed = started.elapsed().as_secs_f64();
    eprintln!(
        "pseidon consume: {} message(s) in {} group(s) printed, {} group(s) marked done{} in {:.1} s ({:.0} msg/s)",
        counts.messages,
        counts.groups,
        counts.marked,
        if plain {
            " (a plain read: nothing tracked)"
        } else {
            ""
        },
        elapsed,
        counts.messages as f64 / elapsed.max(0.001)
    );
    if let Some(e) = shutdown_errors.first() {
        anyhow::bail!("{e}");
    }
    match end {
        End::Max | End::AllRead | End::BrokenPipe => Ok(ExitCode::SUCCESS),
        End::Idle if !ends_by_itself => Ok(ExitCode::SUCCESS),
        End::Idle => anyhow::bail!(
            "--idle-exit-ms ran out before every partition of {topics:?} reached its end \
             (-e): messages may be left unread"
        ),
        End::TooBig { id, messages } => {
            let max = args.max.unwrap_or(0);
            if counts.sent == 0 {
                anyhow::bail!(
                    "the unfinished group {id} (replayed first) holds {messages} message(s), \
                     more than --max {max}: a group is printed whole or not at all; \
                     pass --max {messages} or more"
                );
            }
            eprintln!(
                "pseidon consume: stopped before the replayed group {id}: it holds {messages} \
                 message(s), more than the {} left of --max {max} (it comes first next time)",
                max.saturating_sub(counts.sent)
            );
            Ok(ExitCode::SUCCESS)
        }
        End::Signal(sig) => {
            eprintln!(
                "pseidon consume: stopped by {}; groups not printed whole stay unfinished \
                 (the next reader of group `{group}` gets them again)",
                if sig == 15 { "SIGTERM" } else { "SIGINT" }
            );
            Ok(ExitCode::from(u8::try_from(128 + sig).unwrap_or(130)))
        }
    }
}

/// The flag behind a plugin's refusal of a plain read option, with its reason.
fn flag_error(e: &Error) -> Option<String> {
    let Error::Config { key, reason, .. } = e else {
        return None;
    };
    let flag = match key.as_str() {
        ASSIGN => "-p/--partition",
        START_OFFSET => "-o/--offset",
        STOP_TIMESTAMP_MS => "-o/--offset e@TS",
        _ => return None,
    };
    Some(format!("{flag}: {reason}"))
}

/// One run's settings.
struct Run<'a> {
    source: &'a Source,
    args: &'a Args,
    stop: &'a AtomicBool,
    signal: &'a AtomicUsize,
    group: &'a str,
    /// What a null key or value prints as (`--format value`, `-f`).
    null: &'a [u8],
    /// `-e`, or `-o e@TS`: the read ends when every partition is at its end.
    ends_by_itself: bool,
    started: Instant,
    /// stderr is a terminal: a progress line is drawn.
    progress_line: bool,
}

impl Run<'_> {
    fn signalled(&self) -> Option<End> {
        self.stop
            .load(Ordering::SeqCst)
            .then(|| End::Signal(self.signal.load(Ordering::SeqCst).max(2)))
    }

    /// The progress line (a terminal only), at most twice a second, after a second.
    fn show_progress(&self, counts: &Counts, last: &mut Option<Instant>) {
        if !self.progress_line {
            return;
        }
        let elapsed = self.started.elapsed();
        if elapsed < Duration::from_secs(1)
            || last.is_some_and(|l| l.elapsed() < Duration::from_millis(500))
        {
            return;
        }
        *last = Some(Instant::now());
        let mut err = std::io::stderr().lock();
        let _ = write!(
            err,
            "\r\x1b[Kconsuming {:?}: {} message(s) in {} group(s), {} marked done ({:.0} msg/s)",
            self.args.topic,
            counts.messages,
            counts.groups,
            counts.marked,
            counts.messages as f64 / elapsed.as_secs_f64().max(0.001)
        );
        let _ = err.flush();
    }

    /// Takes a report of the stdout thread: counts, and marks the group done.
    fn printed(&self, report: Printed, counts: &mut Counts) -> anyhow::Result<Option<End>> {
        match report {
            Printed::Group {
                id,
                messages,
                whole,
            } => {
                counts.messages += messages as u64;
                counts.groups += 1;
                if self.args.mark_done && whole {
                    self.source
                        .mark_done(&id)
                        .with_context(|| format!("cannot mark group {id} done"))?;
                    counts.marked += 1;
                }
                Ok(None)
            }
            Printed::Failed(e) if e.kind() == ErrorKind::BrokenPipe => Ok(Some(End::BrokenPipe)),
            Printed::Failed(e) => Err(e).context("cannot write to stdout"),
        }
    }

    fn consume(&self, reader: &mut SourceReader, counts: &mut Counts) -> anyhow::Result<End> {
        let (to_writer, from_main) = mpsc::sync_channel::<Printing>(IN_FLIGHT);
        let (to_main, reports) = mpsc::channel::<Printed>();
        // Not joined: on a signal with stdout stalled, the process exits without it.
        std::thread::Builder::new()
            .name("pseidon-stdout".into())
            .spawn(move || write_stdout(&from_main, &to_main))
            .context("cannot start the stdout thread")?;
        let mut in_flight = 0usize;
        let r = self.read_loop(reader, counts, &to_writer, &reports, &mut in_flight);
        drop(to_writer);
        let (end, error) = match r {
            Ok(end) => (end, None),
            Err(e) => (End::Max, Some(e)),
        };
        if matches!(end, End::Signal(_) | End::BrokenPipe) {
            // Only what is printed already counts; the rest stays unfinished.
            while let Ok(report) = reports.try_recv() {
                self.printed(report, counts)?;
            }
            return Ok(end);
        }
        // Print what was handed to the stdout thread (a signal cuts this short).
        while in_flight > 0 {
            if let Some(sig) = self.signalled() {
                return Ok(sig);
            }
            match reports.recv_timeout(TICK) {
                Ok(report) => {
                    in_flight -= 1;
                    if let Some(e) = self.printed(report, counts)? {
                        return Ok(e);
                    }
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
            }
        }
        match error {
            Some(e) => Err(e),
            None => Ok(end),
        }
    }

    fn read_loop(
        &self,
        reader: &mut SourceReader,
        counts: &mut Counts,
        to_writer: &mpsc::SyncSender<Printing>,
        reports: &mpsc::Receiver<Printed>,
        in_flight: &mut usize,
    ) -> anyhow::Result<End> {
        let args = self.args;
        let idle = args.idle_exit_ms.map(Duration::from_millis);
        let started = Instant::now();
        let mut idle_from: Option<Instant> = None;
        let mut told_waiting = false;
        let mut last_progress = None;
        loop {
            self.show_progress(counts, &mut last_progress);
            while let Ok(report) = reports.try_recv() {
                *in_flight -= 1;
                if let Some(end) = self.printed(report, counts)? {
                    return Ok(end);
                }
            }
            if let Some(sig) = self.signalled() {
                return Ok(sig);
            }
            if args.max.is_some_and(|m| counts.sent >= m) {
                return Ok(End::Max);
            }
            // A plugin that cannot tell its progress: the clock runs from the start.
            let progress = reader.progress().ok();
            let assigned = progress.is_none_or(|p| p.assignment_known);
            if self.ends_by_itself && progress.is_some_and(|p| p.all_at_end()) {
                return Ok(End::AllRead);
            }
            if !assigned {
                idle_from = None;
            } else if idle_from.is_none() {
                idle_from = Some(Instant::now());
            }
            let mut wait = TICK;
            if let Some(idle) = idle {
                match idle_from {
                    Some(from) => {
                        let left = idle.saturating_sub(from.elapsed());
                        if left.is_zero() {
                            return Ok(End::Idle);
                        }
                        wait = wait.min(left);
                    }
                    None if !told_waiting && started.elapsed() >= idle => {
                        told_waiting = true;
                        eprintln!(
                            "pseidon consume: waiting for consumer group `{}` to assign the \
                             partitions (--idle-exit-ms counts from the assignment)",
                            self.group
                        );
                    }
                    None => {}
                }
            }
            if *in_flight >= IN_FLIGHT {
                // stdout is slow: wait for it, but never longer than a tick.
                match reports.recv_timeout(wait) {
                    Ok(report) => {
                        *in_flight -= 1;
                        if let Some(end) = self.printed(report, counts)? {
                            return Ok(end);
                        }
                    }
                    Err(mpsc::RecvTimeoutError::Timeout) => {}
                    Err(mpsc::RecvTimeoutError::Disconnected) => {
                        anyhow::bail!("the stdout thread ended")
                    }
                }
                continue;
            }
            let Some(group) = reader.next_group(wait)? else {
                continue;
            };
            if assigned {
                idle_from = Some(Instant::now());
            }
            let total = group.messages().len();
            if let Some(max) = args.max {
                let left = max.saturating_sub(counts.sent);
                if total as u64 > left {
                    return Ok(End::TooBig {
                        id: group.id().to_string(),
                        messages: total,
                    });
                }
            }
            let mut buf = Vec::with_capacity(64 * 1024);
            let mut formatted = 0;
            let how = How {
                format: args.format,
                template: args.format_string.as_ref(),
                null: self.null,
            };
            let result = format_group(&group, total, &how, &mut buf, &mut formatted);
            counts.sent += formatted as u64;
            // What was formatted (up to a bad message) is printed in any case.
            let printing = Printing {
                id: group.id().to_string(),
                buf,
                messages: formatted,
                whole: formatted == total,
            };
            if to_writer.send(printing).is_err() {
                anyhow::bail!("the stdout thread ended");
            }
            *in_flight += 1;
            result?;
        }
    }
}

/// The stdout thread: prints each group and flushes, then reports it.
fn write_stdout(groups: &mpsc::Receiver<Printing>, reports: &mpsc::Sender<Printed>) {
    let mut out = std::io::BufWriter::with_capacity(256 * 1024, std::io::stdout().lock());
    for g in groups {
        let report = match out.write_all(&g.buf).and_then(|()| out.flush()) {
            Ok(()) => Printed::Group {
                id: g.id,
                messages: g.messages,
                whole: g.whole,
            },
            Err(e) => Printed::Failed(e),
        };
        let failed = matches!(report, Printed::Failed(_));
        if reports.send(report).is_err() || failed {
            return;
        }
    }
}

/// How each message is printed.
struct How<'a> {
    format: Format,
    /// `-f`: takes precedence over `format`.
    template: Option<&'a kformat::Template>,
    /// What a null key or value prints as.
    null: &'a [u8],
}

/// Formats the first `take` messages of `group` into `buf`, counting them in
/// `formatted`; on a message that cannot be printed, returns the error (what was
/// formatted before it stays in `buf`).
fn format_group(
    group: &MessageGroup,
    take: usize,
    how: &How<'_>,
    buf: &mut Vec<u8>,
    formatted: &mut usize,
) -> anyhow::Result<()> {
    for m in group.messages().iter().take(take) {
        if let Some(t) = how.template {
            t.write(m, how.null, buf);
            *formatted += 1;
            continue;
        }
        match how.format {
            Format::Value => {
                let value = m.value().unwrap_or(how.null);
                if std::str::from_utf8(value).is_err() {
                    anyhow::bail!(
                        "the value of the message at topic `{}` partition {} offset {} is not UTF-8 \
                         (use --format json, which encodes it as base64)",
                        m.topic(),
                        m.partition(),
                        m.offset()
                    );
                }
                buf.extend_from_slice(value);
                buf.push(b'\n');
            }
            Format::Json => {
                serde_json::to_writer(&mut *buf, &message_json(m))?;
                buf.push(b'\n');
            }
        }
        *formatted += 1;
    }
    Ok(())
}

/// The JSON object of one message.
fn message_json(m: &Message) -> Value {
    let mut o = Map::new();
    o.insert("topic".into(), json!(m.topic()));
    o.insert("partition".into(), json!(m.partition()));
    o.insert("offset".into(), json!(m.offset()));
    o.insert("timestamp_ms".into(), json!(m.timestamp_ms()));
    put_bytes(&mut o, "key", m.key());
    put_bytes(&mut o, "value", m.value());
    let headers: Vec<Value> = m
        .headers()
        .iter()
        .map(|h| {
            let mut ho = Map::new();
            ho.insert("key".into(), json!(h.key()));
            put_bytes(&mut ho, "value", h.value());
            Value::Object(ho)
        })
        .collect();
    o.insert("headers".into(), Value::Array(headers));
    o.insert("group_id".into(), json!(m.group_id()));
    Value::Object(o)
}

/// `name`: the bytes as a string if UTF-8, `null` if absent; else `name_base64`.
fn put_bytes(o: &mut Map<String, Value>, name: &str, bytes: Option<&[u8]>) {
    match bytes.map(std::str::from_utf8) {
        None => {
            o.insert(name.into(), Value::Null);
        }
        Some(Ok(s)) => {
            o.insert(name.into(), json!(s));
        }
        Some(Err(_)) => {
            o.insert(
                format!("{name}_base64"),
                json!(base64(bytes.unwrap_or_default())),
            );
        }
    }
}

/// Standard base64 (RFC 4648, with padding).
pub fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_rfc4648_vectors() {
        let cases = [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ];
        for (input, want) in cases {
            assert_eq!(base64(input.as_bytes()), want, "{input}");
        }
        assert_eq!(base64(&[0xff, 0xfe, 0x00]), "//4A");
    }

    #[test]
    fn non_utf8_bytes_go_to_a_base64_field() {
        let mut o = Map::new();
        put_bytes(&mut o, "value", Some(&[0xff, 0x00]));
        put_bytes(&mut o, "key", None);
        assert_eq!(o.get("value_base64"), Some(&json!("/wA=")));
        assert!(!o.contains_key("value"));
        assert_eq!(o.get("key"), Some(&Value::Null));
    }
}
