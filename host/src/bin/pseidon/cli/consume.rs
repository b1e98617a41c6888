//! `pseidon consume`: prints the messages of topics read through the datasource, like
//! `kcat -C`, group after group (`next_group`).
//!
//! - `--format value` (default): each value on a line of its own; a value that is not
//!   UTF-8 stops the command with an error naming its topic, partition and offset
//!   (use `--format json` for binary data). A tombstone prints an empty line.
//! - `--format json`: one JSON object per line with `topic`, `partition`, `offset`,
//!   `timestamp_ms`, `key`, `value`, `headers` (`[{"key", "value"}]`) and `group_id`.
//!   Byte fields (`key`, `value`, header values) are strings when they are UTF-8,
//!   `null` when absent; bytes that are not UTF-8 go in a field `<name>_base64`
//!   (standard base64 with padding) instead of `<name>`, so nothing is lost.
//! - `--mark-done`: a group is marked done once all its messages were printed and
//!   stdout was flushed; a group `--max` cut short is not (it is replayed later).
//! - The reader is closed at the end (which commits what is done), also on SIGINT or
//!   SIGTERM, which end the command after the group being printed.

use std::{
    io::{ErrorKind, Write},
    process::ExitCode,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use anyhow::Context as _;
use pseidon_plugin_api::{Message, MessageGroup, ReaderOptions, Source, SourceReader};
use serde_json::{Map, Value, json};

use super::{DEFAULT_SOURCE, Global, check_topic, wait_source};

/// How the messages are printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// The value, one per line (must be UTF-8).
    Value,
    /// One JSON object per message (non-UTF-8 bytes as `<field>_base64`).
    Json,
}

/// Arguments of `pseidon consume`.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "JSON: byte fields (key, value, header values) are strings when \
    UTF-8, null when absent, and `<field>_base64` (standard base64) instead when not UTF-8."
)]
pub struct Args {
    /// The topic to read (repeat for more topics).
    #[arg(long, short = 't', value_name = "TOPIC", required = true)]
    pub topic: Vec<String>,
    /// The consumer group [default: the conf's kafka.group.id].
    #[arg(long, short = 'g', value_name = "GROUP")]
    pub group: Option<String>,
    /// Stop after this many messages.
    #[arg(long, value_name = "N")]
    pub max: Option<u64>,
    /// Exit after this long without a message, in milliseconds [default: never].
    #[arg(long, value_name = "MS")]
    pub idle_exit_ms: Option<u64>,
    /// How to print the messages.
    #[arg(long, value_enum, default_value_t = Format::Value)]
    pub format: Format,
    /// Mark each message group done once all its messages are printed.
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
    messages: u64,
    groups: u64,
    marked: u64,
}

/// How a run ended without an error.
enum End {
    Done,
    /// stdout was closed by the reader (e.g. `| head`).
    BrokenPipe,
}

/// Reads and prints until `--max`, `--idle-exit-ms` or a signal.
pub fn run(global: &Global, args: Args) -> anyhow::Result<ExitCode> {
    for t in &args.topic {
        check_topic(t)?;
    }
    let stop = Arc::new(AtomicBool::new(false));
    // The first SIGINT/SIGTERM ends the loop (the reader is closed and commits); a
    // second one exits at once (status 130).
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register_conditional_shutdown(sig, 130, Arc::clone(&stop))
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
    match &args.group {
        Some(g) if g.trim().is_empty() => anyhow::bail!("--group must not be empty"),
        Some(g) => options = options.group_id(g),
        None if !has_conf_group => anyhow::bail!(
            "no consumer group: pass --group GROUP or set kafka.group.id in {}",
            host.conf().path.display()
        ),
        None => {}
    }
    let source = wait_source(&host, &args.source, args.wait_ms)?;
    let topics: Vec<&str> = args.topic.iter().map(String::as_str).collect();
    let mut reader = source
        .reader(&topics, options)
        .with_context(|| format!("cannot read {topics:?}"))?;
    let mut counts = Counts::default();
    let result = consume(&source, &mut reader, &args, &stop, &mut counts);
    let closed = reader.close().context("closing the reader");
    let shutdown_errors = host.shutdown();
    result?;
    closed?;
    eprintln!(
        "pseidon consume: {} message(s) in {} group(s) printed, {} group(s) marked done",
        counts.messages, counts.groups, counts.marked
    );
    if let Some(e) = shutdown_errors.first() {
        anyhow::bail!("{e}");
    }
    Ok(ExitCode::SUCCESS)
}

fn consume(
    source: &Source,
    reader: &mut SourceReader,
    args: &Args,
    stop: &AtomicBool,
    counts: &mut Counts,
) -> anyhow::Result<End> {
    let mut out = std::io::BufWriter::with_capacity(256 * 1024, std::io::stdout().lock());
    let idle = args.idle_exit_ms.map(Duration::from_millis);
    let mut last_message = Instant::now();
    let mut buf = Vec::with_capacity(64 * 1024);
    loop {
        if stop.load(Ordering::SeqCst) || args.max.is_some_and(|m| counts.messages >= m) {
            return Ok(End::Done);
        }
        let mut wait = Duration::from_millis(200);
        if let Some(idle) = idle {
            let left = idle.saturating_sub(last_message.elapsed());
            if left.is_zero() {
                return Ok(End::Done);
            }
            wait = wait.min(left);
        }
        let Some(group) = reader.next_group(wait)? else {
            continue;
        };
        last_message = Instant::now();
        let total = group.messages().len();
        let take = match args.max {
            Some(m) => usize::try_from(m - counts.messages)
                .unwrap_or(usize::MAX)
                .min(total),
            None => total,
        };
        buf.clear();
        let mut printed = 0;
        let formatted = format_group(&group, take, args.format, &mut buf, &mut printed);
        // What was formatted (up to a bad message) is printed in any case.
        match out.write_all(&buf).and_then(|()| out.flush()) {
            Ok(()) => {}
            Err(e) if e.kind() == ErrorKind::BrokenPipe => return Ok(End::BrokenPipe),
            Err(e) => return Err(e).context("cannot write to stdout"),
        }
        counts.messages += printed as u64;
        counts.groups += 1;
        formatted?;
        if args.mark_done && printed == total {
            source
                .mark_done(group.id())
                .with_context(|| format!("cannot mark group {} done", group.id()))?;
            counts.marked += 1;
        }
    }
}

/// Formats the first `take` messages of `group` into `buf`, counting them in
/// `formatted`; on a message that cannot be printed, returns the error (what was
/// formatted before it stays in `buf`).
fn format_group(
    group: &MessageGroup,
    take: usize,
    format: Format,
    buf: &mut Vec<u8>,
    formatted: &mut usize,
) -> anyhow::Result<()> {
    for m in group.messages().iter().take(take) {
        match format {
            Format::Value => {
                let value = m.value().unwrap_or_default();
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
