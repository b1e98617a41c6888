//! `pseidon send`: each line of stdin (or of `--file`) becomes one message through the
//! datasink, like `kcat -P`.
//!
//! Lines are bytes (any encoding; the `\n` is removed, nothing else). Lines that are
//! already buffered are written as one batch (at most [`BATCH_LINES`]), so a pipe
//! sends at full speed and a line typed on a terminal goes out at once. At the end
//! the datasink is flushed until every message is delivered or reported failed, and a
//! summary goes to stderr; the exit status is non-zero if any message failed.

use std::{
    fs::File,
    io::{BufRead, BufReader, IsTerminal as _, Read, Write as _},
    path::PathBuf,
    process::ExitCode,
    time::{Duration, Instant},
};

use anyhow::Context as _;
use pseidon_plugin_api::{DeliveryFailure, Error, Record, Sink};

use super::{DEFAULT_SINK, Global, check_topic, wait_sink};

/// The most lines written in one batch.
pub const BATCH_LINES: usize = 1000;
/// How many failures are listed one by one on stderr.
const SHOW_FAILURES: usize = 5;

/// Arguments of `pseidon send`.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Each line (bytes up to `\\n`, any encoding) is one message. \
    Prints a summary (sent, failed) on stderr; exits 1 if any message was not delivered, 2 on \
    other errors."
)]
pub struct Args {
    /// The topic to write to.
    #[arg(long, short = 't', value_name = "TOPIC")]
    pub topic: String,
    /// The key of every message (none by default).
    #[arg(long, short = 'k', value_name = "KEY")]
    pub key: Option<String>,
    /// Read the lines from this file instead of stdin.
    #[arg(long, short = 'f', value_name = "FILE")]
    pub file: Option<PathBuf>,
    /// The registry name of the datasink.
    #[arg(long, value_name = "NAME", default_value = DEFAULT_SINK)]
    pub sink: String,
    /// How long to wait for the datasink to be registered, in milliseconds.
    #[arg(long, value_name = "MS", default_value_t = 5000)]
    pub wait_ms: u64,
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
    /// (line, reason) of records refused by `write` or not delivered.
    failures: Vec<(Option<u64>, String)>,
    failed: u64,
    /// Of `failed`: the accepted records whose delivery failed.
    delivery_failed: u64,
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

/// Sends the lines; exit code 0 if every message was delivered.
pub fn run(global: &Global, args: Args) -> anyhow::Result<ExitCode> {
    check_topic(&args.topic)?;
    let input: Box<dyn Read> = match &args.file {
        Some(path) => Box::new(
            File::open(path).with_context(|| format!("cannot open --file {}", path.display()))?,
        ),
        None => Box::new(std::io::stdin()),
    };
    let input_name = args
        .file
        .as_ref()
        .map_or_else(|| "stdin".to_string(), |p| p.display().to_string());
    let mut host = global.load_host_with_plugins()?;
    let sink = wait_sink(&host, &args.sink, args.wait_ms)?;
    let mut tally = Tally {
        topic: args.topic.clone(),
        lines: 0,
        accepted: 0,
        delivered: 0,
        failures: Vec::new(),
        failed: 0,
        delivery_failed: 0,
        spans: Vec::new(),
        start: Instant::now(),
        progress: std::io::stderr().is_terminal().then(Instant::now),
    };
    let sent = send_lines(&sink, &args, input, &input_name, &mut tally);
    let flushed = flush_all(&sink, &mut tally);
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
    let shutdown_errors = host.shutdown();
    sent?;
    flushed?;
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

/// Reads the lines and writes them in batches; an error stops the reading.
fn send_lines(
    sink: &Sink,
    args: &Args,
    input: Box<dyn Read>,
    input_name: &str,
    tally: &mut Tally,
) -> anyhow::Result<()> {
    let mut reader = BufReader::with_capacity(256 * 1024, input);
    let mut batch: Vec<Vec<u8>> = Vec::with_capacity(BATCH_LINES);
    loop {
        let mut line = Vec::new();
        let n = reader
            .read_until(b'\n', &mut line)
            .with_context(|| format!("cannot read {input_name}"))?;
        if n > 0 {
            if line.last() == Some(&b'\n') {
                line.pop();
            }
            batch.push(line);
        }
        // Write what is buffered before a read that may block (or at the end).
        if batch.len() >= BATCH_LINES
            || (!batch.is_empty() && (n == 0 || reader.buffer().is_empty()))
        {
            write_batch(sink, args, &batch, tally)?;
            batch.clear();
            tally.show_progress(false);
        }
        if n == 0 {
            return Ok(());
        }
    }
}

/// Writes one batch; a record the datasink refuses as too large counts as failed and
/// the rest goes on; any other refusal stops the send.
fn write_batch(
    sink: &Sink,
    args: &Args,
    batch: &[Vec<u8>],
    tally: &mut Tally,
) -> anyhow::Result<()> {
    let first_line = tally.lines + 1;
    tally.lines += batch.len() as u64;
    let records: Vec<Record<'_>> = batch
        .iter()
        .map(|v| {
            let r = Record::new(&args.topic, v);
            match &args.key {
                Some(k) => r.key(k.as_bytes()),
                None => r,
            }
        })
        .collect();
    let mut from = 0usize;
    while from < records.len() {
        let rest = &records[from..];
        let b = sink.write_batch(rest)?;
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
                let not_written = (records.len() - from) as u64;
                tally.failed += not_written.saturating_sub(1);
                tally.fail(Some(first_line + from as u64), e.to_string());
                anyhow::bail!(
                    "stopped at line {} of the input: {e}",
                    first_line + from as u64
                );
            }
        }
    }
    // Collect delivery reports as they come (never waits).
    let report = sink.flush(Duration::ZERO)?;
    tally.add_report(report.delivered, &report.failed);
    Ok(())
}

/// Flushes until every accepted message is delivered or reported failed.
fn flush_all(sink: &Sink, tally: &mut Tally) -> anyhow::Result<()> {
    loop {
        let report = sink.flush(Duration::from_millis(500))?;
        tally.add_report(report.delivered, &report.failed);
        tally.show_progress(false);
        if report.pending == 0 {
            break;
        }
    }
    let unreported = tally
        .accepted
        .saturating_sub(tally.delivered + tally.delivery_failed);
    if unreported > 0 {
        tally.fail(
            None,
            format!("{unreported} message(s) have no delivery report"),
        );
        tally.failed += unreported - 1;
    }
    Ok(())
}
