//! What the Kafka bench binaries share: librdkafka properties from the command line,
//! payloads, topic administration and counting, loading our plugin through the host
//! library, and the `SAMPLE` line every measured run prints for `bench/run`.
//!
//! Each binary includes this file with `#[path]` (the library crate belongs to the
//! registry bench); not every binary uses every function.

use std::{
    fmt::Write as _,
    future::Future,
    path::{Path, PathBuf},
    pin::pin,
    sync::Arc,
    task::{Context, Poll, Wake, Waker},
    thread::{self, Thread},
    time::Duration,
};

use anyhow::{Context as _, Result, anyhow, bail};
use rdkafka::{
    ClientConfig,
    admin::{AdminClient, AdminOptions, NewTopic, TopicReplication},
    client::DefaultClientContext,
    consumer::{BaseConsumer, Consumer},
};

/// How long metadata and watermark requests may take.
pub const META_TIMEOUT: Duration = Duration::from_secs(30);

/// A `key=value` librdkafka property from the command line.
pub fn parse_prop(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.trim().is_empty() => Ok((k.trim().to_string(), v.to_string())),
        _ => Err(format!("`{s}` is not key=value")),
    }
}

/// A client configuration: bootstrap, then `props` in order.
pub fn client_config(bootstrap: &str, props: &[(String, String)]) -> ClientConfig {
    let mut cfg = ClientConfig::new();
    cfg.set("bootstrap.servers", bootstrap);
    for (k, v) in props {
        cfg.set(k.as_str(), v.as_str());
        if k == "debug" {
            // rdkafka passes on librdkafka's lines only up to this level.
            cfg.set_log_level(rdkafka::config::RDKafkaLogLevel::Debug);
        }
    }
    cfg
}

/// Payloads of one size: slices at varying offsets of a pseudo-random alphanumeric
/// buffer (no newline, so kcat's line-delimited input and output can carry them).
pub struct Payloads {
    buf: Vec<u8>,
    size: usize,
}

impl Payloads {
    /// Payloads of `size` bytes.
    pub fn new(size: usize) -> Self {
        const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
        let len = size + (1 << 20);
        let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
        let buf = (0..len)
            .map(|_| {
                // xorshift64*: fast, deterministic, good enough for payload bytes.
                state ^= state >> 12;
                state ^= state << 25;
                state ^= state >> 27;
                let r = state.wrapping_mul(0x2545_F491_4F6C_DD1D);
                ALPHABET[(r >> 58) as usize % ALPHABET.len()]
            })
            .collect();
        Payloads { buf, size }
    }

    /// The payload of message `i`.
    pub fn get(&self, i: u64) -> &[u8] {
        let span = (self.buf.len() - self.size) as u64;
        let start = (i.wrapping_mul(7919) % span) as usize;
        &self.buf[start..start + self.size]
    }
}

/// Runs a future to completion on this thread (the admin API is async; the bench has
/// no runtime).
pub fn block_on<F: Future>(fut: F) -> F::Output {
    struct ThreadWaker(Thread);
    impl Wake for ThreadWaker {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
    }
    let waker = Waker::from(Arc::new(ThreadWaker(thread::current())));
    let mut cx = Context::from_waker(&waker);
    let mut fut = pin!(fut);
    loop {
        match fut.as_mut().poll(&mut cx) {
            Poll::Ready(v) => return v,
            Poll::Pending => thread::park_timeout(Duration::from_millis(50)),
        }
    }
}

fn admin(bootstrap: &str) -> Result<AdminClient<DefaultClientContext>> {
    client_config(bootstrap, &[])
        .create()
        .context("create an admin client")
}

/// Creates `topic` with `partitions` partitions (replication 1) and waits until its
/// metadata shows every partition with a leader.
pub fn create_topic(bootstrap: &str, topic: &str, partitions: i32) -> Result<()> {
    let admin = admin(bootstrap)?;
    let opts = AdminOptions::new().operation_timeout(Some(META_TIMEOUT));
    let results = block_on(admin.create_topics(
        &[NewTopic::new(topic, partitions, TopicReplication::Fixed(1))],
        &opts,
    ))
    .context("create topic")?;
    for r in results {
        if let Err((t, code)) = r {
            bail!("cannot create topic {t}: {code}");
        }
    }
    let consumer = metadata_consumer(bootstrap)?;
    let deadline = std::time::Instant::now() + META_TIMEOUT;
    loop {
        let ready = consumer
            .fetch_metadata(Some(topic), Duration::from_secs(5))
            .ok()
            .and_then(|md| {
                md.topics().first().map(|t| {
                    t.error().is_none()
                        && t.partitions().len() == partitions as usize
                        && t.partitions()
                            .iter()
                            .all(|p| p.leader() >= 0 && p.error().is_none())
                })
            })
            .unwrap_or(false);
        // ...and every partition answers for its offsets (the fill's and the runs' own
        // checks read them).
        if ready && watermarks(bootstrap, topic).is_ok() {
            return Ok(());
        }
        if std::time::Instant::now() > deadline {
            bail!("topic {topic} has no leader for every partition after {META_TIMEOUT:?}");
        }
        thread::sleep(Duration::from_millis(100));
    }
}

/// Deletes `topics`; a topic that is already gone is fine.
pub fn delete_topics(bootstrap: &str, topics: &[String]) -> Result<()> {
    if topics.is_empty() {
        return Ok(());
    }
    let admin = admin(bootstrap)?;
    let names: Vec<&str> = topics.iter().map(String::as_str).collect();
    let opts = AdminOptions::new().operation_timeout(Some(META_TIMEOUT));
    let results = block_on(admin.delete_topics(&names, &opts)).context("delete topics")?;
    for r in results {
        if let Err((t, code)) = r
            && code != rdkafka::types::RDKafkaErrorCode::UnknownTopicOrPartition
        {
            bail!("cannot delete topic {t}: {code}");
        }
    }
    Ok(())
}

fn metadata_consumer(bootstrap: &str) -> Result<BaseConsumer> {
    client_config(bootstrap, &[])
        .create()
        .context("create a metadata client")
}

/// The partitions of `topic` with their (low, high) watermarks.
pub fn watermarks(bootstrap: &str, topic: &str) -> Result<Vec<(i32, i64, i64)>> {
    let consumer = metadata_consumer(bootstrap)?;
    let md = consumer
        .fetch_metadata(Some(topic), META_TIMEOUT)
        .with_context(|| format!("metadata of topic {topic}"))?;
    let t = md
        .topics()
        .first()
        .ok_or_else(|| anyhow!("no metadata for topic {topic}"))?;
    if let Some(e) = t.error() {
        bail!("topic {topic}: {e:?}");
    }
    let mut out = Vec::new();
    // A fresh partition's leader may be known to the metadata before it answers a
    // ListOffsets (NotLeaderForPartition, LeaderNotAvailable): asked again until it does.
    let deadline = std::time::Instant::now() + META_TIMEOUT;
    for p in t.partitions() {
        let (lo, hi) = loop {
            match consumer.fetch_watermarks(topic, p.id(), META_TIMEOUT) {
                Err(e)
                    if std::time::Instant::now() < deadline
                        && matches!(
                            e.rdkafka_error_code(),
                            Some(
                                rdkafka::types::RDKafkaErrorCode::NotLeaderForPartition
                                    | rdkafka::types::RDKafkaErrorCode::LeaderNotAvailable
                                    | rdkafka::types::RDKafkaErrorCode::UnknownTopicOrPartition
                            )
                        ) =>
                {
                    thread::sleep(Duration::from_millis(100));
                }
                r => break r.with_context(|| format!("watermarks of {topic}/{}", p.id()))?,
            }
        };
        out.push((p.id(), lo, hi));
    }
    out.sort_unstable();
    Ok(out)
}

/// How many messages of `topic` consumer group `group` has committed: the sum over
/// partitions of (committed offset - low watermark), 0 for a partition without one.
pub fn committed_count(bootstrap: &str, topic: &str, group: &str) -> Result<u64> {
    use rdkafka::{Offset, TopicPartitionList, consumer::Consumer};
    let marks = watermarks(bootstrap, topic)?;
    let consumer: rdkafka::consumer::BaseConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .create()
        .context("create the offsets consumer")?;
    let mut tpl = TopicPartitionList::new();
    for (p, _, _) in &marks {
        tpl.add_partition(topic, *p);
    }
    let committed = consumer
        .committed_offsets(tpl, META_TIMEOUT)
        .with_context(|| format!("committed offsets of {group} on {topic}"))?;
    let mut n = 0u64;
    for (p, lo, _) in &marks {
        if let Some(Offset::Offset(o)) = committed.find_partition(topic, *p).map(|e| e.offset()) {
            n += (o - lo).max(0) as u64;
        }
    }
    Ok(n)
}

/// How many messages `topic` holds (sum of high - low watermarks).
pub fn topic_count(bootstrap: &str, topic: &str) -> Result<u64> {
    Ok(watermarks(bootstrap, topic)?
        .iter()
        .map(|(_, lo, hi)| (hi - lo).max(0) as u64)
        .sum())
}

/// The host conf of a bench run of our plugin: the plugin file, strict loading, the
/// broker, and `extra` conf keys (`kafka.*` and `pseidon-kafka.*`), written to
/// `dir/pseidon.toml`.
pub fn write_conf(
    dir: &Path,
    plugin: &Path,
    bootstrap: &str,
    extra: &[(String, String)],
) -> Result<PathBuf> {
    // Relative paths in a conf are relative to its directory: make it absolute.
    let plugin =
        std::fs::canonicalize(plugin).with_context(|| format!("plugin {}", plugin.display()))?;
    let mut text = String::new();
    let _ = writeln!(
        text,
        "plugin-dirs = [{}]",
        toml_str(&plugin.display().to_string())
    );
    let _ = writeln!(text, "strict = true");
    let _ = writeln!(text, "shutdown-timeout-ms = 60000");
    let _ = writeln!(
        text,
        "\"kafka.bootstrap.servers\" = {}",
        toml_str(bootstrap)
    );
    for (k, v) in extra {
        let _ = writeln!(text, "{} = {}", toml_str(k), toml_str(v));
    }
    std::fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
    let path = dir.join("pseidon.toml");
    std::fs::write(&path, text).with_context(|| format!("write {}", path.display()))?;
    Ok(path)
}

/// A TOML basic string.
fn toml_str(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => {
                let _ = write!(out, "\\u{:04X}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Loads the host (and so our plugin) from the conf at `conf`; any load failure is an
/// error.
pub fn load_host(conf: &Path) -> Result<pseidon_host::Host> {
    // Logs (the host's and the plugin's) only when asked for: they cost time.
    if std::env::var_os(pseidon_host::logging::LOG_ENV).is_some() {
        pseidon_host::logging::init_subscriber().context("install the log subscriber")?;
    }
    let host = pseidon_host::Host::load_path(conf)
        .with_context(|| format!("load the host from {}", conf.display()))?;
    if let Some(f) = host.failures().first() {
        bail!("plugin load failure: {f}");
    }
    Ok(host)
}

/// Shuts the host down, turning its errors into one.
pub fn shutdown_host(mut host: pseidon_host::Host) -> Result<()> {
    let errors = host.shutdown();
    if let Some(e) = errors.first() {
        bail!("host shutdown: {e}");
    }
    Ok(())
}

/// This process's peak resident set (VmHWM) in KiB.
pub fn peak_rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// Prints the `SAMPLE` line `bench/run` parses: messages, bytes, seconds, rate and the
/// peak RSS, plus `extra` `key=value` fields.
pub fn print_sample(messages: u64, bytes: u64, secs: f64, extra: &[(&str, String)]) {
    let rate = if secs > 0.0 {
        messages as f64 / secs
    } else {
        0.0
    };
    let mut line = format!(
        "SAMPLE msgs={messages} bytes={bytes} secs={secs:.6} msgs_per_s={rate:.1} rss_kib={}",
        peak_rss_kib().unwrap_or(0)
    );
    for (k, v) in extra {
        let _ = write!(line, " {k}={v}");
    }
    println!("{line}");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_have_the_size_and_no_newline() {
        let p = Payloads::new(100);
        for i in [0, 1, 999_999, u64::MAX] {
            assert_eq!(p.get(i).len(), 100);
            assert!(!p.get(i).contains(&b'\n'));
        }
        assert_ne!(p.get(0), p.get(1));
    }

    #[test]
    fn props_parse() {
        assert_eq!(parse_prop("a.b=c=d"), Ok(("a.b".into(), "c=d".into())));
        assert!(parse_prop("nope").is_err());
    }

    #[test]
    fn toml_strings_escape() {
        assert_eq!(toml_str("a\"b\\c"), "\"a\\\"b\\\\c\"");
    }
}
