//! `pseidon send`: each line of stdin (or of `--file`) becomes one message through the
//! datasink, like `kcat -P`.
//!
//! Lines are bytes (any encoding; the `\n` is removed, nothing else). A reader thread
//! reads the input and hands lines that are already buffered over as one batch (at
//! most [`BATCH_LINES`] lines or [`BATCH_BYTES`] bytes; two batches in flight), so a
//! pipe sends at full speed, a line typed on a terminal goes out at once, and memory
//! stays bounded. A line longer than the limit (`--max-line-bytes`, by default the
//! conf's `kafka.message.max.bytes`) is not kept: it is reported with its number and
//! size and skipped; a line still going after [`SKIP_MAX_BYTES`] (input that is not
//! line-oriented, e.g. `/dev/zero`) ends the reading.
//!
//! At the end the datasink is flushed until every message is delivered or reported
//! failed, and a summary goes to stderr: counts, and every failed line number as
//! ranges; `--failed-out FILE` writes the failed lines verbatim, in input order (the
//! input is spooled to an unlinked file next to FILE for that). The exit status is
//! non-zero if any line was not delivered.
//!
//! SIGINT/SIGTERM: the first stops the reading (the main loop waits on the reader's
//! batches with a timeout, so a blocked read does not delay it), flushes what was
//! accepted within the conf's `shutdown-timeout-ms` (the plugins' shutdown; the
//! Kafka datasink purges what is still undelivered then, each purged message
//! becoming a failed line), prints the summary and exits 130 (SIGINT) or 143
//! (SIGTERM). A second signal exits at once, saying how many accepted messages were
//! not yet reported delivered.

use std::{
    fs::File,
    io::{BufRead, BufReader, BufWriter, IsTerminal as _, Read, Seek as _, Write as _},
    path::{Path, PathBuf},
    process::ExitCode,
    sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender},
    time::{Duration, Instant},
};

use anyhow::Context as _;
use pseidon_host::{Termination, signals};
use pseidon_plugin_api::{DeliveryFailure, Error, Header, Record, Sink};

use super::{
    DEFAULT_SINK, Global, check_topic,
    records::{self, LineFormat},
    wait_sink,
};

/// The most lines written in one batch.
pub const BATCH_LINES: usize = 1000;
/// A batch is handed over once it holds this many bytes.
pub const BATCH_BYTES: usize = 4 << 20;
/// A line longer than the limit is skipped up to its end, but at most this far: a
/// longer one ends the reading.
pub const SKIP_MAX_BYTES: u64 = 1 << 30;
/// librdkafka's default `message.max.bytes`, the line limit when the conf has none.
pub const DEFAULT_MAX_LINE_BYTES: u64 = 1_000_000;
/// How many failures are listed one by one (with their reasons) on stderr.
const SHOW_FAILURES: usize = 5;
/// How long the main loop waits for a batch before it looks at the signals again.
const POLL: Duration = Duration::from_millis(100);

/// How `send` reads its input.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum InputFormat {
    /// Each line is a value (with -K: a key, the delimiter, a value).
    Lines,
    /// Each line is one JSON object as `pseidon consume --format json` prints it.
    Json,
}

/// Arguments of `pseidon send`.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Each line (bytes up to `\\n`, or up to -D DELIM; any encoding) is one message. \
    Prints a summary on stderr: sent, failed, and every failed line number as ranges \
    (`failed lines of stdin: 3-7, 12`); --failed-out FILE also writes the failed lines \
    themselves, so that `pseidon send -f FILE` resends exactly those.\n\n\
    A line that does not parse (-K without the delimiter in it; --input json that is not \
    an object of the schema below) is a failed line with its reason; the others go on.\n\n\
    --input json: one object per line, as `pseidon consume --format json` prints it: \
    `key`/`value` as text, or `key_base64`/`value_base64`; `null` is a null key or value \
    (the value or value_base64 field is required); `headers` [{\"key\", \"value\" or \
    \"value_base64\"}] (after the -H headers); `partition` (-p overrides it); \
    `timestamp_ms` (ms since the epoch; null or missing: the producer stamps the message \
    now; the topic's message.timestamp.type=LogAppendTime overrides it on the broker). \
    `topic`, `offset` and `group_id` are not sent. So \
    `pseidon consume -t A -o beginning -e --format json | pseidon send -t B --input json` \
    copies keys, values, headers, partitions and timestamps byte for byte.\n\n\
    A line longer than --max-line-bytes is reported (line number, size) and skipped (it \
    is not written to --failed-out); a line longer than 1 GiB ends the reading.\n\n\
    SIGINT/SIGTERM stops reading, flushes what was accepted within the conf's \
    shutdown-timeout-ms (what is still undelivered then counts as failed), prints the \
    summary, and exits 130 (SIGINT) or 143 (SIGTERM); the rest of the input is not read. \
    A second signal exits at once, saying how many messages were not yet delivered.\n\n\
    Exit status: 0 if every line was delivered; 1 if some line was not (failed or \
    skipped); 2 on other errors (a bad flag: named); 130/143 after a signal.\n\n\
    Examples:\n  \
    seq 1 10 | pseidon send -t test\n  \
    printf 'k1:v1\\nk2:v2\\n' | pseidon send -t test -K:\n  \
    pseidon send -t test -H source=batch -H v=2 -p 0 -f lines.txt\n  \
    printf 'k1:\\n' | pseidon send -t test -K: -Z          # a tombstone for key k1\n  \
    printf 'a\\nb;c\\nd;' | pseidon send -t test -D ';'   # values with newlines\n  \
    pseidon consume -t a -o beginning -e --format json | pseidon send -t b --input json"
)]
pub struct Args {
    /// The topic to write to.  Example: -t test
    #[arg(long, short = 't', value_name = "TOPIC")]
    pub topic: String,
    /// The key of every message (none by default; -K keys take precedence).  Example: -k user-7
    #[arg(long, short = 'k', value_name = "KEY", conflicts_with = "input")]
    pub key: Option<String>,
    /// Each line is KEY DELIM VALUE, split at the first DELIM (kcat -K; escapes \n \t \xNN).  Example: -K:
    #[arg(long = "key-delimiter", short = 'K', value_name = "DELIM", value_parser = records::parse_delim_arg, conflicts_with = "input")]
    pub key_delimiter: Option<records::Delim>,
    /// A header on every message (repeatable).  Example: -H source=batch -H v=2
    #[arg(long = "header", short = 'H', value_name = "NAME=VALUE", value_parser = records::parse_header)]
    pub headers: Vec<(String, Vec<u8>)>,
    /// Write every message to this partition [default: the partitioner's choice].  Example: -p 0
    #[arg(long, short = 'p', value_name = "N", allow_negative_numbers = true, value_parser = clap::value_parser!(i32).range(0..))]
    pub partition: Option<i32>,
    /// An empty value is sent as a null value (a tombstone); with -K an empty key is no key (kcat -Z).
    #[arg(long = "null-empty", short = 'Z', conflicts_with = "input")]
    pub null_empty: bool,
    /// The message delimiter instead of a newline (kcat -D; escapes \n \t \xNN).  Example: -D ';'
    #[arg(long = "delimiter", short = 'D', value_name = "DELIM", value_parser = records::parse_delim_arg)]
    pub delimiter: Option<records::Delim>,
    /// How to read each line.  Example: --input json
    #[arg(long, value_enum, default_value_t = InputFormat::Lines)]
    pub input: InputFormat,
    /// Read the lines from this file instead of stdin.  Example: -f lines.txt
    #[arg(long, short = 'f', value_name = "FILE")]
    pub file: Option<PathBuf>,
    /// Write the lines that were not delivered to FILE, verbatim and in input order
    /// (created or truncated at the start; empty if none failed).
    #[arg(long, value_name = "FILE")]
    pub failed_out: Option<PathBuf>,
    /// The longest line sent, in bytes; a longer one is reported and skipped
    /// [default: the conf's kafka.message.max.bytes, else 1000000].
    #[arg(long, value_name = "BYTES", value_parser = clap::value_parser!(u64).range(1..))]
    pub max_line_bytes: Option<u64>,
    /// The registry name of the datasink.
    #[arg(long, value_name = "NAME", default_value = DEFAULT_SINK)]
    pub sink: String,
    /// How long to wait for the datasink to be registered, in milliseconds.
    #[arg(long, value_name = "MS", default_value_t = 5000)]
    pub wait_ms: u64,
}

impl Args {
    /// The message delimiter (`-D`, else `\n`).
    fn delim(&self) -> Vec<u8> {
        self.delimiter
            .as_ref()
            .map_or_else(|| b"\n".to_vec(), |d| d.0.clone())
    }

    fn line_format(&self) -> LineFormat {
        LineFormat {
            key_delim: self.key_delimiter.as_ref().map(|d| d.0.clone()),
            fixed_key: self.key.as_ref().map(|k| k.as_bytes().to_vec()),
            null_empty: self.null_empty,
            json: self.input == InputFormat::Json,
        }
    }
}

/// One run of accepted records: delivery ids `first_id..first_id+count` are the
/// lines `first_line..first_line+count` (1-based).
struct Span {
    first_id: u64,
    first_line: u64,
    count: u64,
}

/// Counts, spans and failures of one send.
struct Tally {
    topic: String,
    lines: u64,
    accepted: u64,
    delivered: u64,
    /// (line, reason) of the first records refused by `write` or not delivered.
    failures: Vec<(Option<u64>, String)>,
    failed: u64,
    /// Of `failed`: the accepted records whose delivery failed.
    delivery_failed: u64,
    /// Every failed line number that is known (unsorted).
    failed_lines: Vec<u64>,
    /// Of `failed_lines`: the lines skipped as too long (not in `--failed-out`).
    skipped_lines: Vec<u64>,
    spans: Vec<Span>,
    start: Instant,
    progress: Option<Instant>,
}

impl Tally {
    fn line_of(&self, id: u64) -> Option<u64> {
        let i = self.spans.partition_point(|s| s.first_id <= id);
        let s = self.spans.get(i.checked_sub(1)?)?;
        (id < s.first_id + s.count).then(|| s.first_line + (id - s.first_id))
    }

    fn fail(&mut self, line: Option<u64>, reason: String) {
        self.failed += 1;
        if let Some(l) = line {
            self.failed_lines.push(l);
        }
        if self.failures.len() < SHOW_FAILURES {
            self.failures.push((line, reason));
        }
    }

    fn add_report(&mut self, delivered: u64, failed: &[DeliveryFailure]) {
        self.delivered += delivered;
        self.delivery_failed += failed.len() as u64;
        for f in failed {
            let line = self.line_of(f.id);
            self.fail(line, f.reason.clone());
        }
    }

    /// Accepted messages with no delivery report yet.
    fn outstanding(&self) -> u64 {
        self.accepted
            .saturating_sub(self.delivered + self.delivery_failed)
    }

    /// The progress line, at most twice a second, once the send took a second.
    fn show_progress(&mut self, final_line: bool) {
        let Some(last) = self.progress else { return };
        let elapsed = self.start.elapsed();
        if !final_line
            && (elapsed < Duration::from_secs(1) || last.elapsed() < Duration::from_millis(500))
        {
            return;
        }
        self.progress = Some(Instant::now());
        let rate = self.lines as f64 / elapsed.as_secs_f64().max(0.001);
        let mut err = std::io::stderr().lock();
        let _ = write!(
            err,
            "\r\x1b[Ksending to {}: {} read, {} delivered, {} failed ({:.0} msg/s)",
            self.topic, self.lines, self.delivered, self.failed, rate
        );
        if final_line {
            let _ = write!(err, "\r\x1b[K");
        }
        let _ = err.flush();
    }
}

/// What the reader thread hands over.
enum Input {
    /// The next lines, in order.
    Lines(Vec<Vec<u8>>),
    /// The next line is longer than the limit and was skipped; `size_bytes` read of
    /// it; `ended`: false if the reading stopped inside it (past [`SKIP_MAX_BYTES`]).
    TooLong { size_bytes: u64, ended: bool },
    /// Reading failed; nothing follows.
    Error(std::io::Error),
}

/// Sends the lines; exit code 0 if every message was delivered.
pub fn run(global: &Global, args: Args) -> anyhow::Result<ExitCode> {
    check_topic(&args.topic)?;
    // Installed first, so that a signal during loading is not lost.
    let mut termination = Termination::install()?;
    let input: Box<dyn Read + Send> = match &args.file {
        Some(path) => Box::new(
            File::open(path).with_context(|| format!("cannot open --file {}", path.display()))?,
        ),
        None => Box::new(std::io::stdin()),
    };
    let input_name = args
        .file
        .as_ref()
        .map_or_else(|| "stdin".to_string(), |p| p.display().to_string());
    let mut failed_out = args
        .failed_out
        .as_deref()
        .map(|p| FailedOut::create(p, args.delim()))
        .transpose()?;
    let mut host = global.load_host_with_plugins()?;
    let max_line = match args.max_line_bytes {
        Some(n) => n,
        None => conf_max_message_bytes(&host)?,
    };
    let shutdown_timeout = host.conf().shutdown_timeout;
    let sink = wait_sink(&host, &args.sink, args.wait_ms)?;
    let mut tally = Tally {
        topic: args.topic.clone(),
        lines: 0,
        accepted: 0,
        delivered: 0,
        failures: Vec::new(),
        failed: 0,
        delivery_failed: 0,
        failed_lines: Vec::new(),
        skipped_lines: Vec::new(),
        spans: Vec::new(),
        start: Instant::now(),
        progress: std::io::stderr().is_terminal().then(Instant::now),
    };
    let (tx, rx) = mpsc::sync_channel(2);
    let (recycle, recycled) = mpsc::channel();
    let delim = args.delim();
    std::thread::Builder::new()
        .name("send-reader".into())
        .spawn(move || read_lines(input, max_line, &delim, &tx, &recycled))
        .context("cannot start the reader thread")?;
    let batches = Batches { rx, recycle };

    // Reading: until the end of the input, an error, or a signal.
    let mut signal = None;
    let mut stopped: Option<String> = None;
    let sent = send_lines(
        &sink,
        &args,
        &batches,
        max_line,
        &mut tally,
        &mut failed_out,
        &mut termination,
        &mut signal,
        &mut stopped,
    );
    // The reader stops at its next hand-over (or with the process, if it is blocked).
    drop(batches);

    // Flushing: until everything is reported, unless a signal bounds it.
    let mut flushed = Ok(());
    if signal.is_none() {
        flushed = flush_all(&sink, &mut tally, &mut termination, &mut signal);
    }
    if let Some(sig) = signal {
        if let Ok(report) = sink.flush(Duration::ZERO) {
            tally.add_report(report.delivered, &report.failed);
        }
        eprintln!(
            "pseidon send: {sig}: stopped reading {input_name} after line {}; flushing {} undelivered message(s) for at most {} ms (a second signal exits at once)",
            tally.lines,
            tally.outstanding(),
            shutdown_timeout.as_millis()
        );
        let outstanding = tally.outstanding();
        let topic = args.topic.clone();
        std::thread::spawn(move || {
            let again = termination.wait();
            eprintln!(
                "pseidon send: second {again}: exiting at once; {} message(s) to topic `{topic}` were accepted but not reported delivered (they may or may not arrive)",
                outstanding
            );
            std::process::exit(i32::from(signals::exit_code(again)));
        });
    }
    // The plugins' shutdown flushes within `shutdown-timeout-ms`; the Kafka datasink
    // then purges what is left, each purged message reported failed by a later flush.
    let shutdown_errors = host.shutdown();
    match sink.flush(Duration::ZERO) {
        Ok(report) => tally.add_report(report.delivered, &report.failed),
        Err(e) => tracing::debug!("flush after shutdown: {e}"),
    }
    let unreported = tally.outstanding();
    if unreported > 0 {
        tally.fail(
            None,
            format!("{unreported} message(s) have no delivery report (their lines are unknown)"),
        );
        tally.failed += unreported - 1;
    }
    tally.show_progress(true);
    let elapsed = tally.start.elapsed().as_secs_f64();
    eprintln!(
        "pseidon send: sent {}, failed {} to topic `{}` ({} line(s) read in {:.1} s, {:.0} msg/s)",
        tally.delivered,
        tally.failed,
        args.topic,
        tally.lines,
        elapsed,
        tally.delivered as f64 / elapsed.max(0.001)
    );
    for (line, reason) in &tally.failures {
        match line {
            Some(l) => eprintln!("pseidon send: line {l} of {input_name}: {reason}"),
            None => eprintln!("pseidon send: {reason}"),
        }
    }
    tally.failed_lines.sort_unstable();
    tally.failed_lines.dedup();
    if !tally.failed_lines.is_empty() {
        eprintln!(
            "pseidon send: failed lines of {input_name}: {}",
            ranges(&tally.failed_lines)
        );
    }
    if let Some(out) = failed_out {
        tally.skipped_lines.sort_unstable();
        let written = out
            .finish(&tally.failed_lines, &tally.skipped_lines)
            .context("cannot write --failed-out")?;
        let skipped = if tally.skipped_lines.is_empty() {
            String::new()
        } else {
            format!(
                " (not the {} line(s) skipped as too long)",
                tally.skipped_lines.len()
            )
        };
        eprintln!(
            "pseidon send: wrote {written} failed line(s) to {}{skipped}",
            args.failed_out
                .as_deref()
                .unwrap_or(Path::new(""))
                .display()
        );
    }
    if let Some(why) = &stopped {
        eprintln!("pseidon send: {why}");
    }
    sent?;
    flushed?;
    if let Some(sig) = signal {
        eprintln!(
            "pseidon: {sig}: stopped after line {} of {input_name}; {} of {} line(s) read were delivered",
            tally.lines, tally.delivered, tally.lines
        );
        return Ok(ExitCode::from(signals::exit_code(sig)));
    }
    if tally.failed > 0 {
        // Exit code 1: the send ran, some deliveries failed (2 is for other errors).
        let first = tally.failures.first().map_or("", |(_, r)| r.as_str());
        eprintln!(
            "pseidon: error: {} of {} message(s) to topic `{}` were not delivered (first: {first})",
            tally.failed, tally.lines, args.topic
        );
        return Ok(ExitCode::from(1));
    }
    if let Some(e) = shutdown_errors.first() {
        anyhow::bail!("{e}");
    }
    Ok(ExitCode::SUCCESS)
}

/// `kafka.message.max.bytes` of the conf, or librdkafka's default.
fn conf_max_message_bytes(host: &pseidon_host::Host) -> anyhow::Result<u64> {
    let key = "kafka.message.max.bytes";
    match host.conf().view.get(key) {
        None => Ok(DEFAULT_MAX_LINE_BYTES),
        Some(e) => e.value.trim().parse::<u64>().map_err(|_| {
            anyhow::anyhow!(
                "conf key `{key}` in {} is `{}`, not a number of bytes",
                host.conf().path.display(),
                e.value
            )
        }),
    }
}

/// Formats sorted, distinct line numbers as ranges: `3-7, 12`.
fn ranges(lines: &[u64]) -> String {
    let mut out = String::new();
    let mut i = 0;
    while i < lines.len() {
        let start = lines[i];
        let mut end = start;
        while i + 1 < lines.len() && lines[i + 1] == end + 1 {
            i += 1;
            end = lines[i];
        }
        if !out.is_empty() {
            out.push_str(", ");
        }
        if start == end {
            out.push_str(&start.to_string());
        } else {
            out.push_str(&format!("{start}-{end}"));
        }
        i += 1;
    }
    out
}

/// The reader's batches, and the way back for their line buffers.
struct Batches {
    rx: Receiver<Input>,
    /// Written batches go back to the reader, which reuses their lines' buffers.
    recycle: mpsc::Sender<Vec<Vec<u8>>>,
}

/// A line buffer larger than this is not reused (the pool stays small).
const RECYCLE_MAX_LINE_BYTES: usize = 64 * 1024;

/// The reader thread: reads lines of at most `max_line` bytes and hands them over in
/// batches; ends at the end of the input, on an error, or when the receiver is gone.
/// Line buffers come from the batches the writer sent back (`recycled`) where it can:
/// a buffer allocated here and freed by the writer thread took glibc's arena lock
/// against this thread's allocations, once per line.
fn read_lines(
    input: Box<dyn Read + Send>,
    max_line: u64,
    delim: &[u8],
    tx: &SyncSender<Input>,
    recycled: &Receiver<Vec<Vec<u8>>>,
) {
    let mut reader = BufReader::with_capacity(256 * 1024, input);
    let mut batch: Vec<Vec<u8>> = Vec::new();
    let mut batch_bytes = 0usize;
    let mut pool: Vec<Vec<u8>> = Vec::new();
    let hand_over = |batch: &mut Vec<Vec<u8>>, batch_bytes: &mut usize| {
        *batch_bytes = 0;
        batch.is_empty() || tx.send(Input::Lines(std::mem::take(batch))).is_ok()
    };
    loop {
        if pool.is_empty() {
            while let Ok(mut lines) = recycled.try_recv() {
                lines.retain(|l| l.capacity() <= RECYCLE_MAX_LINE_BYTES);
                pool.append(&mut lines);
            }
        }
        let mut line = pool.pop().unwrap_or_default();
        line.clear();
        match read_line_bounded(&mut reader, &mut line, max_line, delim) {
            Err(e) => {
                if hand_over(&mut batch, &mut batch_bytes) {
                    let _ = tx.send(Input::Error(e));
                }
                return;
            }
            Ok(Line::Eof) => {
                hand_over(&mut batch, &mut batch_bytes);
                return;
            }
            Ok(Line::Complete) => {
                batch_bytes += line.len();
                batch.push(line);
            }
            Ok(Line::TooLong { size_bytes, ended }) => {
                if !hand_over(&mut batch, &mut batch_bytes)
                    || tx.send(Input::TooLong { size_bytes, ended }).is_err()
                    || !ended
                {
                    return;
                }
            }
        }
        // Hand over what is buffered before a read that may block.
        if (batch.len() >= BATCH_LINES
            || batch_bytes >= BATCH_BYTES
            || (!batch.is_empty() && reader.buffer().is_empty()))
            && !hand_over(&mut batch, &mut batch_bytes)
        {
            return;
        }
    }
}

/// What [`read_line_bounded`] read.
enum Line {
    /// A line (in the buffer, without its delimiter).
    Complete,
    /// A line over the limit, skipped (see [`Input::TooLong`]).
    TooLong { size_bytes: u64, ended: bool },
    /// The end of the input.
    Eof,
}

/// Reads one line ending in `delim` (or at the end of the input) into `line` (empty
/// on entry), keeping at most `max` bytes of it.
fn read_line_bounded(
    reader: &mut impl BufRead,
    line: &mut Vec<u8>,
    max: u64,
    delim: &[u8],
) -> std::io::Result<Line> {
    let Some(&last) = delim.last() else {
        return Err(std::io::Error::other("empty delimiter"));
    };
    let dlen = delim.len() as u64;
    // The longest read that may still be a line of `max` bytes and its delimiter.
    let cap = max.saturating_add(dlen);
    loop {
        let room = cap.saturating_add(1).saturating_sub(line.len() as u64);
        let n = reader.take(room).read_until(last, line)? as u64;
        let len = line.len() as u64;
        if n == 0 && line.is_empty() {
            return Ok(Line::Eof);
        }
        if line.ends_with(delim) {
            line.truncate(line.len() - delim.len());
            return Ok(if line.len() as u64 <= max {
                Line::Complete
            } else {
                Line::TooLong {
                    size_bytes: line.len() as u64,
                    ended: true,
                }
            });
        }
        if n > 0 && line.last() == Some(&last) && len <= cap {
            // The last byte of a longer delimiter, not the delimiter: read on.
            continue;
        }
        if len <= cap {
            // The end of the input: the last line, without a delimiter.
            return Ok(if len <= max {
                Line::Complete
            } else {
                Line::TooLong {
                    size_bytes: len,
                    ended: true,
                }
            });
        }
        break;
    }
    // Too long: skip to its end in bounded slices (keeping what may be the start of a
    // delimiter that straddles two of them).
    let mut size = line.len() as u64;
    let keep = delim.len() - 1;
    loop {
        let tail = line.len().saturating_sub(keep);
        line.drain(..tail);
        let k = reader.take(1 << 20).read_until(last, line)? as u64;
        if k == 0 {
            return Ok(Line::TooLong {
                size_bytes: size,
                ended: true,
            });
        }
        size += k;
        if line.ends_with(delim) {
            return Ok(Line::TooLong {
                size_bytes: size - dlen,
                ended: true,
            });
        }
        if size > SKIP_MAX_BYTES {
            return Ok(Line::TooLong {
                size_bytes: size,
                ended: false,
            });
        }
    }
}

/// Takes the reader's batches and writes them, until the input ends, an error stops
/// the send, or a signal arrives (`signal`). `stopped` says why reading ended early.
#[allow(clippy::too_many_arguments)]
fn send_lines(
    sink: &Sink,
    args: &Args,
    batches: &Batches,
    max_line: u64,
    tally: &mut Tally,
    failed_out: &mut Option<FailedOut>,
    termination: &mut Termination,
    signal: &mut Option<&'static str>,
    stopped: &mut Option<String>,
) -> anyhow::Result<()> {
    let format = args.line_format();
    loop {
        if let Some(sig) = termination.wait_timeout(Duration::ZERO) {
            *signal = Some(sig);
            return Ok(());
        }
        match batches.rx.recv_timeout(POLL) {
            Ok(Input::Lines(batch)) => {
                if let Some(out) = failed_out {
                    out.spool(&batch)
                        .context("cannot spool the input for --failed-out")?;
                }
                write_batch(sink, args, &format, &batch, tally)?;
                // The reader may be gone (the end of the input): then it is dropped here.
                let _ = batches.recycle.send(batch);
                tracing::debug!("{} line(s) accepted so far", tally.accepted);
                tally.show_progress(false);
            }
            Ok(Input::TooLong { size_bytes, ended }) => {
                if let Some(out) = failed_out {
                    out.spool(&[Vec::new()])
                        .context("cannot spool the input for --failed-out")?;
                }
                tally.lines += 1;
                let line = tally.lines;
                tally.skipped_lines.push(line);
                let size = if ended {
                    format!("{size_bytes} bytes")
                } else {
                    format!("more than {size_bytes} bytes")
                };
                tally.fail(
                    Some(line),
                    format!(
                        "line is {size}, over the limit of {max_line} bytes (--max-line-bytes, by default kafka.message.max.bytes); skipped"
                    ),
                );
                if !ended {
                    *stopped = Some(format!(
                        "stopped reading at line {line}: it is longer than {SKIP_MAX_BYTES} bytes (is the input line-oriented?); the rest of the input was not read"
                    ));
                }
            }
            Ok(Input::Error(e)) => {
                return Err(e).with_context(|| format!("cannot read {}", input_label(args)));
            }
            Err(RecvTimeoutError::Timeout) if tally.progress.is_some() => {
                // For the progress line: collect delivery reports as they come.
                let report = sink.flush(Duration::ZERO)?;
                tally.add_report(report.delivered, &report.failed);
                tally.show_progress(false);
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => return Ok(()),
        }
    }
}

fn input_label(args: &Args) -> String {
    args.file
        .as_ref()
        .map_or_else(|| "stdin".to_string(), |p| p.display().to_string())
}

/// Writes one batch: a line that does not parse counts as failed (with its reason),
/// as does a record the datasink refuses as too large, and the rest goes on; any
/// other refusal stops the send.
fn write_batch(
    sink: &Sink,
    args: &Args,
    format: &LineFormat,
    batch: &[Vec<u8>],
    tally: &mut Tally,
) -> anyhow::Result<()> {
    let first_line = tally.lines + 1;
    tally.lines += batch.len() as u64;
    let parsed: Vec<Result<records::Parsed<'_>, String>> =
        batch.iter().map(|l| format.parse(l)).collect();
    let headers: Vec<Vec<Header<'_>>> = parsed
        .iter()
        .map(|p| {
            let own = p.as_ref().map(|p| p.headers.as_slice()).unwrap_or_default();
            args.headers
                .iter()
                .map(|(k, v)| Header::new(k, v))
                .chain(own.iter().map(|(k, v)| match v {
                    Some(v) => Header::new(k, v),
                    None => Header::null(k),
                }))
                .collect()
        })
        .collect();
    let mut i = 0usize;
    while i < parsed.len() {
        if let Err(reason) = &parsed[i] {
            tally.fail(Some(first_line + i as u64), reason.clone());
            i += 1;
            continue;
        }
        let run_end = parsed[i..]
            .iter()
            .position(Result::is_err)
            .map_or(parsed.len(), |n| i + n);
        let records: Vec<Record<'_>> = parsed[i..run_end]
            .iter()
            .zip(&headers[i..run_end])
            .filter_map(|(p, hs)| p.as_ref().ok().map(|p| (p, hs)))
            .map(|(p, hs)| {
                let mut r = match &p.value {
                    Some(v) => Record::new(&args.topic, v),
                    None => Record::new(&args.topic, &[]).with_null_value(),
                };
                if let Some(k) = &p.key {
                    r = r.with_key(k);
                }
                if let Some(part) = args.partition.or(p.partition) {
                    r = r.with_partition(part);
                }
                if !hs.is_empty() {
                    r = r.with_headers(hs);
                }
                r
            })
            .collect();
        let timestamps_ms: Option<Vec<i64>> = parsed[i..run_end]
            .iter()
            .any(|p| p.as_ref().is_ok_and(|p| p.timestamp_ms.is_some()))
            .then(|| {
                parsed[i..run_end]
                    .iter()
                    .filter_map(|p| p.as_ref().ok())
                    .map(|p| p.timestamp_ms.unwrap_or(-1))
                    .collect()
            });
        write_run(
            sink,
            &records,
            timestamps_ms.as_deref(),
            first_line + i as u64,
            tally,
        )?;
        i = run_end;
    }
    // Collect delivery reports as they come (never waits).
    let report = sink.flush(Duration::ZERO)?;
    tally.add_report(report.delivered, &report.failed);
    Ok(())
}

/// Writes consecutive records, the first of them line `first_line`, with their
/// timestamps if given (one per record, negative: none).
fn write_run(
    sink: &Sink,
    records: &[Record<'_>],
    timestamps_ms: Option<&[i64]>,
    first_line: u64,
    tally: &mut Tally,
) -> anyhow::Result<()> {
    let mut from = 0usize;
    while from < records.len() {
        let rest = &records[from..];
        let b = match timestamps_ms {
            Some(ts) => sink.write_batch_timestamped(rest, &ts[from..])?,
            None => sink.write_batch(rest)?,
        };
        let accepted = usize::try_from(b.accepted)
            .unwrap_or(rest.len())
            .min(rest.len());
        if accepted > 0 {
            tally.spans.push(Span {
                first_id: b.first_id,
                first_line: first_line + from as u64,
                count: accepted as u64,
            });
            tally.accepted += accepted as u64;
        }
        from += accepted;
        match b.error {
            None => {}
            Some(e @ Error::MessageTooLarge { .. }) => {
                tally.fail(Some(first_line + from as u64), e.to_string());
                from += 1;
            }
            Some(e) => {
                // The lines not written count as failed.
                let at = first_line + from as u64;
                tally.fail(Some(at), e.to_string());
                for line in at + 1..first_line + records.len() as u64 {
                    tally.failed += 1;
                    tally.failed_lines.push(line);
                }
                anyhow::bail!("stopped at line {at} of the input: {e}");
            }
        }
    }
    Ok(())
}

/// Flushes until every accepted message is delivered or reported failed, or a
/// signal arrives (`signal`).
fn flush_all(
    sink: &Sink,
    tally: &mut Tally,
    termination: &mut Termination,
    signal: &mut Option<&'static str>,
) -> anyhow::Result<()> {
    loop {
        let report = sink.flush(Duration::from_millis(200))?;
        tally.add_report(report.delivered, &report.failed);
        tally.show_progress(false);
        if report.pending == 0 {
            return Ok(());
        }
        if let Some(sig) = termination.wait_timeout(Duration::ZERO) {
            *signal = Some(sig);
            return Ok(());
        }
    }
}

/// `--failed-out`: the output file, created at the start, and the spool of the
/// input (an unlinked file in the same directory: each input line with its length
/// before it, an empty one for a skipped line), from which the failed lines are
/// copied at the end, each followed by the message delimiter.
struct FailedOut {
    out: File,
    spool: BufWriter<File>,
    delim: Vec<u8>,
}

impl FailedOut {
    fn create(path: &Path, delim: Vec<u8>) -> anyhow::Result<FailedOut> {
        let out = File::create(path)
            .with_context(|| format!("cannot create --failed-out {}", path.display()))?;
        let dir = match path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let spool_path = dir.join(format!(".{name}.spool-{}", std::process::id()));
        let spool = File::options()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&spool_path)
            .with_context(|| {
                format!(
                    "cannot create the spool file {} for --failed-out",
                    spool_path.display()
                )
            })?;
        // Unlinked at once: it goes with the process, however it ends.
        std::fs::remove_file(&spool_path)
            .with_context(|| format!("cannot remove the spool file {}", spool_path.display()))?;
        Ok(FailedOut {
            out,
            spool: BufWriter::with_capacity(256 * 1024, spool),
            delim,
        })
    }

    fn spool(&mut self, lines: &[Vec<u8>]) -> std::io::Result<()> {
        for l in lines {
            self.spool.write_all(&(l.len() as u64).to_le_bytes())?;
            self.spool.write_all(l)?;
        }
        Ok(())
    }

    /// Copies the lines `failed` (sorted, 1-based) except `skip` (sorted) from the
    /// spool to the output; returns how many were written.
    fn finish(self, failed: &[u64], skip: &[u64]) -> anyhow::Result<u64> {
        let mut spool = self.spool.into_inner().map_err(|e| e.into_error())?;
        spool.rewind()?;
        let mut reader = BufReader::with_capacity(256 * 1024, spool);
        let mut out = BufWriter::new(self.out);
        let mut wanted = failed
            .iter()
            .copied()
            .filter(|l| skip.binary_search(l).is_err())
            .peekable();
        let mut line_no = 0u64;
        let mut line = Vec::new();
        let mut written = 0u64;
        while let Some(&next) = wanted.peek() {
            let mut len = [0u8; 8];
            match reader.read_exact(&mut len) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => break,
                Err(e) => return Err(e.into()),
            }
            let len = u64::from_le_bytes(len);
            line_no += 1;
            if line_no == next {
                line.clear();
                (&mut reader).take(len).read_to_end(&mut line)?;
                out.write_all(&line)?;
                out.write_all(&self.delim)?;
                written += 1;
                wanted.next();
            } else {
                std::io::copy(&mut (&mut reader).take(len), &mut std::io::sink())?;
            }
        }
        out.flush()?;
        Ok(written)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_join_consecutive_lines() {
        assert_eq!(ranges(&[3, 4, 5, 6, 7, 12]), "3-7, 12");
        assert_eq!(ranges(&[1]), "1");
        assert_eq!(ranges(&[1, 3, 4]), "1, 3-4");
        assert_eq!(ranges(&[]), "");
    }

    #[test]
    fn a_long_line_is_skipped_to_its_end_and_the_next_one_is_read() {
        let mut r = BufReader::with_capacity(4, &b"abc\nxxxxxxxxxx\nde\nfgh"[..]);
        let mut got = Vec::new();
        loop {
            let mut line = Vec::new();
            match read_line_bounded(&mut r, &mut line, 3, b"\n").unwrap() {
                Line::Eof => break,
                Line::Complete => got.push(String::from_utf8(line).unwrap()),
                Line::TooLong { size_bytes, ended } => {
                    got.push(format!("long {size_bytes} {ended}"))
                }
            }
        }
        assert_eq!(got, ["abc", "long 10 true", "de", "fgh"]);
    }

    fn lines_of(input: &[u8], max: u64, delim: &[u8], buf: usize) -> Vec<String> {
        let mut r = BufReader::with_capacity(buf, input);
        let mut got = Vec::new();
        loop {
            let mut line = Vec::new();
            match read_line_bounded(&mut r, &mut line, max, delim).unwrap() {
                Line::Eof => break,
                Line::Complete => got.push(String::from_utf8(line).unwrap()),
                Line::TooLong { size_bytes, ended } => {
                    got.push(format!("long {size_bytes} {ended}"))
                }
            }
        }
        got
    }

    #[test]
    fn recycled_line_buffers_are_emptied_before_they_are_reused() {
        let (tx, rx) = mpsc::sync_channel(16);
        let (recycle, recycled) = mpsc::channel();
        // Buffers that still hold an earlier batch's bytes, and one too large to keep.
        recycle
            .send(vec![
                b"an earlier line".to_vec(),
                b"x".to_vec(),
                Vec::with_capacity(RECYCLE_MAX_LINE_BYTES + 1),
            ])
            .unwrap();
        let input: Box<dyn Read + Send> = Box::new(std::io::Cursor::new(b"a\nbb\n\nccc".to_vec()));
        read_lines(input, 100, b"\n", &tx, &recycled);
        drop(tx);
        let mut got = Vec::new();
        for input in rx {
            let Input::Lines(lines) = input else {
                panic!("only lines expected");
            };
            got.extend(lines.into_iter().map(|l| String::from_utf8(l).unwrap()));
        }
        assert_eq!(got, ["a", "bb", "", "ccc"]);
    }

    #[test]
    fn a_delimiter_of_several_bytes_splits_and_newlines_stay_in_values() {
        for buf in [1, 2, 3, 64] {
            assert_eq!(
                lines_of(b"a\nb;;c;d;;;;e;", 5, b";;", buf),
                ["a\nb", "c;d", "", "e;"],
                "{buf}"
            );
            // Over the limit, with the delimiter straddling the skipped slices.
            assert_eq!(
                lines_of(b"abcdefgh;;ij;;", 3, b";;", buf),
                ["long 8 true", "ij"],
                "{buf}"
            );
            // A line of exactly the limit.
            assert_eq!(
                lines_of(b"abc;;abcd", 3, b";;", buf),
                ["abc", "long 4 true"]
            );
        }
    }
}
