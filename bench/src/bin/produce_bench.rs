//! `produce-bench`: writes `--count` messages of `--size` bytes to a fresh topic and
//! prints one `SAMPLE` line (messages, bytes, seconds from the first write until the
//! last delivery report, rate, peak RSS).
//!
//! - `--mode ours`: our datasink as a user reaches it: the host library loads
//!   `libpseidon_kafka.so` from a conf, `reg_get_wait_sink`, one `write` per message
//!   (or `write_batch` with `--batch`), then `flush`.
//! - `--mode plain`: a plain rdkafka `BaseProducer` loop with the same librdkafka
//!   properties as the plugin's producer (`enable.idempotence=true`,
//!   `queue.buffering.max.kbytes=65536`, plus `--prop`s),
//!   polling inline for delivery reports and on a full queue.
//!
//! A run that does not get a successful delivery report for every message, or after
//! which the topic does not hold exactly `--count` messages, fails (exit code 1) with
//! the reason, and prints no sample.

#[allow(dead_code)] // shared by the bench binaries; each uses a part
#[path = "../common.rs"]
mod common;

use std::{
    path::PathBuf,
    sync::atomic::{AtomicU64, Ordering},
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail};
use clap::{Parser, ValueEnum};
use pseidon_plugin_api::Record;
use rdkafka::{
    ClientContext,
    error::{KafkaError, RDKafkaErrorCode},
    producer::{BaseProducer, BaseRecord, DeliveryResult, Producer, ProducerContext},
};

use common::Payloads;

/// The registry name of our datasink.
const SINK_NAME: &str = "pseidon.kafka.util.datasink";

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Mode {
    /// Our datasink, through the host library and the plugin boundary.
    Ours,
    /// A plain rdkafka producer loop.
    Plain,
}

/// Produce benchmark: ours (the plugin's datasink) or a plain rdkafka producer.
#[derive(Debug, Parser)]
struct Args {
    /// Which producer.
    #[arg(long, value_enum)]
    mode: Mode,
    /// Broker bootstrap address.
    #[arg(long)]
    bootstrap: String,
    /// Topic (fresh, created beforehand).
    #[arg(long)]
    topic: String,
    /// Number of messages.
    #[arg(long)]
    count: u64,
    /// Payload size in bytes.
    #[arg(long)]
    size: usize,
    /// Extra librdkafka property for both modes (`ours` gets it as `kafka.<key>`).
    #[arg(long = "prop", value_parser = common::parse_prop)]
    props: Vec<(String, String)>,
    /// `ours`: the plugin library.
    #[arg(long, default_value = "target/release/libpseidon_kafka.so")]
    plugin: PathBuf,
    /// `ours`: directory for the conf.
    #[arg(long, default_value = "bench/out/work")]
    work_dir: PathBuf,
    /// `ours`: records per `write_batch` call (1: one `write` per message).
    #[arg(long, default_value_t = 1)]
    batch: usize,
    /// Before the clock starts, write one message to this (other) topic and flush, so
    /// the producer is connected and has its idempotent producer id: the figure is the
    /// steady-state rate of a producer that is up, as a long-running datasink is.
    #[arg(long)]
    warmup_topic: Option<String>,
    /// Longest wait for the final flush, in seconds.
    #[arg(long, default_value_t = 300)]
    flush_timeout_s: u64,
}

fn main() {
    let args = Args::parse();
    if let Err(e) = run(&args) {
        eprintln!("produce-bench ({:?}): error: {e:#}", args.mode);
        std::process::exit(1);
    }
}

fn run(args: &Args) -> Result<()> {
    let payloads = Payloads::new(args.size);
    let before = common::topic_count(&args.bootstrap, &args.topic)?;
    if before != 0 {
        bail!(
            "topic {} is not fresh: it holds {before} messages",
            args.topic
        );
    }
    let secs = match args.mode {
        Mode::Ours => produce_ours(args, &payloads)?,
        Mode::Plain => produce_plain(args, &payloads)?,
    };
    let after = common::topic_count(&args.bootstrap, &args.topic)?;
    if after != args.count {
        bail!(
            "lost or duplicated messages: topic {} holds {after} messages, {} were written",
            args.topic,
            args.count
        );
    }
    common::print_sample(
        args.count,
        args.count * args.size as u64,
        secs,
        &[("mode", format!("{:?}", args.mode).to_lowercase())],
    );
    Ok(())
}

/// Our datasink: returns the seconds from the first write to the clean flush.
fn produce_ours(args: &Args, payloads: &Payloads) -> Result<f64> {
    let dir = args.work_dir.join(&args.topic);
    let extra: Vec<(String, String)> = args
        .props
        .iter()
        .map(|(k, v)| (format!("kafka.{k}"), v.clone()))
        .collect();
    let conf = common::write_conf(&dir, &args.plugin, &args.bootstrap, &extra)?;
    let host = common::load_host(&conf)?;
    let sink = host
        .registry()
        .reg_get_wait_sink(SINK_NAME, Duration::from_secs(10))
        .context("reg_get_wait_sink")?;
    if let Some(w) = &args.warmup_topic {
        sink.write(w, b"warm-up").context("warm-up write")?;
        let r = sink
            .flush(Duration::from_secs(60))
            .context("warm-up flush")?;
        if !r.is_clean() {
            bail!("warm-up message not delivered: {r:?}");
        }
    }
    let topic = args.topic.as_str();
    let start = Instant::now();
    if args.batch <= 1 {
        for i in 0..args.count {
            sink.write(topic, payloads.get(i))
                .with_context(|| format!("write of message {i}"))?;
        }
    } else {
        let mut i = 0;
        while i < args.count {
            let n = (args.count - i).min(args.batch as u64);
            let records: Vec<Record<'_>> = (i..i + n)
                .map(|j| Record::new(topic, payloads.get(j)))
                .collect();
            let accepted = sink.write_batch(&records).context("write_batch")?;
            if let Some(e) = accepted.error {
                bail!("write_batch refused message {}: {e}", i + accepted.accepted);
            }
            i += n;
        }
    }
    let report = sink
        .flush(Duration::from_secs(args.flush_timeout_s))
        .context("flush")?;
    let secs = start.elapsed().as_secs_f64();
    if !report.is_clean() || report.delivered != args.count {
        bail!(
            "flush: {} delivered, {} failed (first: {:?}), {} pending; expected {} delivered",
            report.delivered,
            report.failed.len(),
            report.failed.first(),
            report.pending,
            args.count
        );
    }
    drop(sink);
    common::shutdown_host(host)?;
    Ok(secs)
}

/// Counts delivery reports.
#[derive(Default)]
struct Counting {
    delivered: AtomicU64,
    failed: AtomicU64,
}

impl ClientContext for Counting {
    /// librdkafka's log lines (e.g. with `--prop debug=msg`) go to stderr.
    fn log(&self, level: rdkafka::config::RDKafkaLogLevel, fac: &str, log_message: &str) {
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64());
        eprintln!("{t:.6} librdkafka {level:?} {fac}: {log_message}");
    }
}

impl ProducerContext for Counting {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        match result {
            Ok(_) => self.delivered.fetch_add(1, Ordering::Relaxed),
            Err(_) => self.failed.fetch_add(1, Ordering::Relaxed),
        };
    }
}

/// The plain rdkafka loop: returns the seconds from the first send to the flush.
fn produce_plain(args: &Args, payloads: &Payloads) -> Result<f64> {
    // As the plugin's producer (plugin/src/config.rs, Role::Producer).
    let mut props = vec![
        ("enable.idempotence".to_string(), "true".to_string()),
        (
            "queue.buffering.max.kbytes".to_string(),
            "65536".to_string(),
        ),
    ];
    props.extend(args.props.iter().cloned());
    let producer: BaseProducer<Counting> = common::client_config(&args.bootstrap, &props)
        .create_with_context(Counting::default())
        .context("create the producer")?;
    if let Some(w) = &args.warmup_topic {
        producer
            .send::<[u8], [u8]>(BaseRecord::to(w).payload(&b"warm-up"[..]))
            .map_err(|(e, _)| e)
            .context("warm-up send")?;
        producer
            .flush(Duration::from_secs(60))
            .context("warm-up flush")?;
        if producer.context().delivered.swap(0, Ordering::Relaxed) != 1 {
            bail!("warm-up message not delivered");
        }
    }
    let topic = args.topic.as_str();
    let start = Instant::now();
    for i in 0..args.count {
        let mut record = BaseRecord::to(topic).payload(payloads.get(i));
        loop {
            match producer.send::<[u8], [u8]>(record) {
                Ok(()) => break,
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                    record = back;
                    producer.poll(Duration::from_millis(10));
                }
                Err((e, _)) => bail!("send of message {i}: {e}"),
            }
        }
        if i % 1024 == 0 {
            producer.poll(Duration::ZERO);
        }
    }
    producer
        .flush(Duration::from_secs(args.flush_timeout_s))
        .context("flush")?;
    let secs = start.elapsed().as_secs_f64();
    let ctx = producer.context();
    let (delivered, failed) = (
        ctx.delivered.load(Ordering::Relaxed),
        ctx.failed.load(Ordering::Relaxed),
    );
    if delivered != args.count || failed != 0 {
        bail!(
            "{delivered} delivered, {failed} failed; expected {} delivered",
            args.count
        );
    }
    Ok(secs)
}
