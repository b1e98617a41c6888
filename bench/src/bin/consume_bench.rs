//! `consume-bench`: reads a pre-filled topic to its end and prints one `SAMPLE` line
//! (messages, bytes, seconds from the first message to the last, rate, peak RSS).
//!
//! - `--mode ours`: our datasource as a user reaches it: the host library loads
//!   `libpseidon_kafka.so` from a conf (a fresh or given `pseidon-kafka.status-db`),
//!   `reg_get_wait_source`, `reader`, `next_group` and `mark_done` per group.
//!   `--no-mark` leaves every group unfinished (the first half of the replay
//!   benchmark); `--replay` counts only replayed groups (attempt > 1), as the second
//!   half after a restart on the same status database and consumer group.
//! - `--mode plain`: a plain rdkafka `BaseConsumer` subscribed in a fresh consumer
//!   group with the same librdkafka properties as the plugin's consumer
//!   (`auto.offset.reset=earliest`, `enable.partition.eof=false`,
//!   `fetch.queue.backoff.ms=10`, `queued.max.messages.kbytes=16384`,
//!   `auto.commit.interval.ms=200`, plus `--prop`s),
//!   copying each payload out.
//! - `--mode lines`: counts newline-delimited messages on stdin (`kcat -C -e | …`),
//!   timed from the first byte to end of input.
//!
//! Every offset of every partition up to the high watermark found at start must be
//! seen (a bitmap per partition): a run that misses one within `--idle-timeout-s`
//! fails (exit code 1) with the count, and prints no sample.

#[allow(dead_code)] // shared by the bench binaries; each uses a part
#[path = "../common.rs"]
mod common;

use std::{
    collections::HashMap,
    io::Read,
    path::PathBuf,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail};
use clap::{Parser, ValueEnum};
use pseidon_plugin_api::ReaderOptions;
use rdkafka::{
    Message,
    consumer::{BaseConsumer, Consumer},
};

/// The registry name of our datasource.
const SOURCE_NAME: &str = "pseidon.kafka.util.datasource";

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Mode {
    /// Our datasource, through the host library and the plugin boundary.
    Ours,
    /// A plain rdkafka consumer loop.
    Plain,
    /// Newline-delimited messages on stdin.
    Lines,
}

/// Consume benchmark: ours (the plugin's datasource), a plain rdkafka consumer, or a
/// counter of kcat's output.
#[derive(Debug, Parser)]
struct Args {
    /// Which consumer.
    #[arg(long, value_enum)]
    mode: Mode,
    /// Broker bootstrap address (not needed for `lines`).
    #[arg(long, default_value = "")]
    bootstrap: String,
    /// Topic (pre-filled).
    #[arg(long, default_value = "")]
    topic: String,
    /// Consumer group (fresh unless replaying).
    #[arg(long, default_value = "")]
    group: String,
    /// `lines`: the number of messages expected. Otherwise the topic's message count
    /// is read from its watermarks and this, if given, must match it.
    #[arg(long)]
    count: Option<u64>,
    /// `lines`: the payload size, to check the byte count.
    #[arg(long)]
    size: Option<usize>,
    /// Extra librdkafka property for both modes (`ours` gets it as `kafka.<key>`).
    #[arg(long = "prop", value_parser = common::parse_prop)]
    props: Vec<(String, String)>,
    /// Extra conf key for `ours`, `key=value` (e.g. `pseidon-kafka.group-max-messages=500`).
    #[arg(long = "conf", value_parser = common::parse_prop)]
    conf: Vec<(String, String)>,
    /// `ours`: the plugin library.
    #[arg(long, default_value = "target/release/libpseidon_kafka.so")]
    plugin: PathBuf,
    /// `ours`: directory for the conf (and the status database unless `--status-db`).
    #[arg(long, default_value = "bench/out/work")]
    work_dir: PathBuf,
    /// `ours`: the status database (default: `<work-dir>/<group>/status.db`).
    #[arg(long)]
    status_db: Option<PathBuf>,
    /// `ours`: never mark a group done (then close: the groups stay unfinished).
    #[arg(long)]
    no_mark: bool,
    /// `ours`: count only replayed groups (attempt > 1), marking them done.
    #[arg(long)]
    replay: bool,
    /// Give up when no message came for this long.
    #[arg(long, default_value_t = 60)]
    idle_timeout_s: u64,
}

fn main() {
    let args = Args::parse();
    if let Err(e) = run(&args) {
        eprintln!("consume-bench ({:?}): error: {e:#}", args.mode);
        std::process::exit(1);
    }
}

fn run(args: &Args) -> Result<()> {
    if args.mode == Mode::Lines {
        return count_lines(args);
    }
    if args.topic.is_empty() || args.bootstrap.is_empty() || args.group.is_empty() {
        bail!("--bootstrap, --topic and --group are required for --mode ours|plain");
    }
    let mut seen = Seen::new(&common::watermarks(&args.bootstrap, &args.topic)?);
    if let Some(c) = args.count
        && c != seen.expected
    {
        bail!(
            "topic {} holds {} messages, --count says {c}",
            args.topic,
            seen.expected
        );
    }
    let t = match args.mode {
        Mode::Ours => consume_ours(args, &mut seen)?,
        Mode::Plain => consume_plain(args, &mut seen)?,
        Mode::Lines => unreachable!("handled above"),
    };
    if seen.distinct != seen.expected {
        bail!(
            "lost messages: saw {} distinct of {} (topic {})",
            seen.distinct,
            seen.expected,
            args.topic
        );
    }
    let mode = match (args.mode, args.no_mark, args.replay) {
        (Mode::Ours, _, true) => "ours-replay",
        (Mode::Ours, true, _) => "ours-nomark",
        (Mode::Ours, false, false) => "ours",
        _ => "plain",
    };
    let mut extra = vec![
        ("mode", mode.to_string()),
        ("startup_ms", format!("{:.1}", t.startup_ms)),
        ("duplicates", seen.duplicates.to_string()),
        ("other", seen.other.to_string()),
    ];
    if let Some((next, mark)) = t.calls {
        extra.push(("next_group_s", format!("{next:.3}")));
        extra.push(("mark_done_s", format!("{mark:.3}")));
    }
    common::print_sample(seen.distinct, seen.bytes, t.secs, &extra);
    Ok(())
}

/// Offsets seen per partition, up to the high watermarks at start.
struct Seen {
    bits: HashMap<i32, (i64, Vec<u64>)>,
    expected: u64,
    distinct: u64,
    duplicates: u64,
    /// Messages outside the expected ranges (or, when replaying, in first-time groups).
    other: u64,
    bytes: u64,
}

impl Seen {
    fn new(watermarks: &[(i32, i64, i64)]) -> Self {
        let mut bits = HashMap::new();
        let mut expected = 0;
        for &(p, lo, hi) in watermarks {
            let n = (hi - lo).max(0) as u64;
            expected += n;
            bits.insert(p, (lo, vec![0u64; n.div_ceil(64) as usize]));
        }
        Seen {
            bits,
            expected,
            distinct: 0,
            duplicates: 0,
            other: 0,
            bytes: 0,
        }
    }

    fn see(&mut self, partition: i32, offset: i64, len: usize) {
        let Some((lo, words)) = self.bits.get_mut(&partition) else {
            self.other += 1;
            return;
        };
        let i = offset - *lo;
        let Some(word) = usize::try_from(i / 64)
            .ok()
            .filter(|_| i >= 0)
            .and_then(|w| words.get_mut(w))
        else {
            self.other += 1;
            return;
        };
        let bit = 1u64 << (i % 64);
        if *word & bit != 0 {
            self.duplicates += 1;
        } else {
            *word |= bit;
            self.distinct += 1;
            self.bytes += len as u64;
        }
    }

    fn complete(&self) -> bool {
        self.distinct >= self.expected
    }
}

/// Seconds from the first message to the last, and from opening to the first message.
struct Timing {
    secs: f64,
    startup_ms: f64,
    /// `ours`: seconds spent in `next_group` and in `mark_done`, in total.
    calls: Option<(f64, f64)>,
}

fn consume_ours(args: &Args, seen: &mut Seen) -> Result<Timing> {
    let dir = args.work_dir.join(&args.group);
    let status_db = args
        .status_db
        .clone()
        .unwrap_or_else(|| dir.join("status.db"));
    let mut extra: Vec<(String, String)> = vec![(
        "pseidon-kafka.status-db".to_string(),
        status_db.display().to_string(),
    )];
    extra.extend(
        args.props
            .iter()
            .map(|(k, v)| (format!("kafka.{k}"), v.clone())),
    );
    extra.extend(args.conf.iter().cloned());
    let conf = common::write_conf(&dir, &args.plugin, &args.bootstrap, &extra)?;
    let host = common::load_host(&conf)?;
    let source = host
        .registry()
        .reg_get_wait_source(SOURCE_NAME, Duration::from_secs(10))
        .context("reg_get_wait_source")?;
    let opened = Instant::now();
    let mut reader = source
        .reader(
            &[args.topic.as_str()],
            ReaderOptions::default().group_id(&args.group),
        )
        .context("open a reader")?;
    let idle = Duration::from_secs(args.idle_timeout_s);
    let mut first: Option<Instant> = None;
    let mut last_message = Instant::now();
    let (mut in_next, mut in_mark) = (Duration::ZERO, Duration::ZERO);
    while !seen.complete() {
        let t0 = Instant::now();
        let next = reader.next_group(Duration::from_millis(500))?;
        in_next += t0.elapsed();
        match next {
            Some(group) => {
                last_message = Instant::now();
                first.get_or_insert(last_message);
                if args.replay && group.attempt() <= 1 {
                    seen.other += group.messages().len() as u64;
                } else {
                    for m in group.messages() {
                        seen.see(m.partition(), m.offset(), m.value().map_or(0, <[u8]>::len));
                    }
                }
                if !args.no_mark {
                    let t1 = Instant::now();
                    source
                        .mark_done(group.id())
                        .with_context(|| format!("mark_done({})", group.id()))?;
                    in_mark += t1.elapsed();
                }
            }
            None if last_message.elapsed() > idle => bail!(
                "no message for {idle:?}: saw {} distinct of {} ({} in other groups)",
                seen.distinct,
                seen.expected,
                seen.other
            ),
            None => {}
        }
    }
    let end = Instant::now();
    reader.close().context("close the reader")?;
    drop(source);
    common::shutdown_host(host)?;
    let first = first.unwrap_or(end);
    Ok(Timing {
        secs: (end - first).as_secs_f64(),
        startup_ms: (first - opened).as_secs_f64() * 1000.0,
        calls: Some((in_next.as_secs_f64(), in_mark.as_secs_f64())),
    })
}

fn consume_plain(args: &Args, seen: &mut Seen) -> Result<Timing> {
    let mut props = vec![
        ("group.id".to_string(), args.group.clone()),
        ("auto.offset.reset".to_string(), "earliest".to_string()),
        ("enable.partition.eof".to_string(), "false".to_string()),
        // As the plugin's consumer (plugin/src/config.rs, Role::Consumer).
        ("fetch.queue.backoff.ms".to_string(), "10".to_string()),
        (
            "queued.max.messages.kbytes".to_string(),
            "16384".to_string(),
        ),
        ("auto.commit.interval.ms".to_string(), "200".to_string()),
    ];
    props.extend(args.props.iter().cloned());
    let consumer: BaseConsumer = common::client_config(&args.bootstrap, &props)
        .create()
        .context("create the consumer")?;
    let opened = Instant::now();
    consumer
        .subscribe(&[args.topic.as_str()])
        .context("subscribe")?;
    let idle = Duration::from_secs(args.idle_timeout_s);
    let mut first: Option<Instant> = None;
    let mut last_message = Instant::now();
    let mut sink: Vec<Vec<u8>> = Vec::with_capacity(1024);
    while !seen.complete() {
        match consumer.poll(Duration::from_millis(500)) {
            Some(Ok(m)) => {
                last_message = Instant::now();
                first.get_or_insert(last_message);
                // Copy the payload out, as the datasource does.
                let value = m.payload().map(<[u8]>::to_vec).unwrap_or_default();
                seen.see(m.partition(), m.offset(), value.len());
                sink.push(value);
                if sink.len() == sink.capacity() {
                    sink.clear();
                }
            }
            Some(Err(e)) => bail!("consume: {e}"),
            None if last_message.elapsed() > idle => bail!(
                "no message for {idle:?}: saw {} distinct of {}",
                seen.distinct,
                seen.expected
            ),
            None => {}
        }
    }
    let end = Instant::now();
    let first = first.unwrap_or(end);
    consumer.unsubscribe();
    Ok(Timing {
        secs: (end - first).as_secs_f64(),
        startup_ms: (first - opened).as_secs_f64() * 1000.0,
        calls: None,
    })
}

fn count_lines(args: &Args) -> Result<()> {
    let Some(expected) = args.count else {
        bail!("--count is required for --mode lines");
    };
    let mut stdin = std::io::stdin().lock();
    let mut buf = vec![0u8; 1 << 20];
    let mut first: Option<Instant> = None;
    let mut lines = 0u64;
    let mut total = 0u64;
    loop {
        let n = match stdin.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e).context("read stdin"),
        };
        first.get_or_insert_with(Instant::now);
        total += n as u64;
        lines += buf[..n].iter().filter(|b| **b == b'\n').count() as u64;
    }
    let end = Instant::now();
    let bytes = total.saturating_sub(lines);
    if lines != expected {
        bail!("lost messages: {lines} lines of {expected} expected");
    }
    if let Some(size) = args.size
        && bytes != expected * size as u64
    {
        bail!(
            "wrong byte count: {bytes} payload bytes, {} expected",
            expected * size as u64
        );
    }
    let secs = first.map_or(0.0, |f| (end - f).as_secs_f64());
    common::print_sample(lines, bytes, secs, &[("mode", "lines".to_string())]);
    Ok(())
}
