//! Compression codecs against the real broker (issue 12, item 4): every codec librdkafka
//! has (gzip, snappy, lz4, zstd), both ways. Per codec: a topic written by kcat
//! (`kcat -z <codec>`) and one written by Kafka's own producer
//! (`console-producer --compression-codec <codec>`; its default `none` overrides a
//! `--producer-property compression.type`), each read by the
//! datasource (`pseidon consume`: all N values, exact, in order); and a topic written by
//! the datasink (`pseidon send` with `kafka.compression.type=<codec>`), read back by kcat.
//! That the batches on disk really carry the codec is checked with Kafka's `dump-log`
//! on the broker's segment files (found with `log-dirs`), so no test passes uncompressed.
//!
//! And a permanently undecodable batch: a gzip batch whose bytes are corrupted in the
//! broker's segment file (as a bad disk would). librdkafka reports it once and skips it;
//! `pseidon consume` must exit 2 naming the topic and librdkafka's error, print nothing
//! after the batch, and leave the group's committed offset before it (a second run
//! fails the same way).
//!
//! Needs `cargo build --workspace` first, and a broker on this machine (its segment
//! files are read and, for the corruption test, one of this test's own topics written).

use std::{
    fs,
    io::{Read as _, Seek as _, SeekFrom, Write as _},
    path::{Path, PathBuf},
    process::{Command, Output, Stdio},
};

use pseidon_tests::{Workdir, bootstrap, create_topic, kafka_tool, kcat_values, repo_root, unique};

const N: usize = 60;

/// A work dir with a copy of the Kafka plugin and a conf naming the test broker and a
/// status db of its own; `kafka_extra` goes into the `[kafka]` table.
struct Setup(Workdir);

impl std::ops::Deref for Setup {
    type Target = Workdir;
    fn deref(&self) -> &Workdir {
        &self.0
    }
}

impl Setup {
    fn new(kafka_extra: &str) -> Setup {
        Setup(Workdir::kafka("pseidon-codecs", kafka_extra, ""))
    }

    /// Runs `pseidon --conf <conf> args…` with `stdin` fed in.
    fn pseidon(&self, args: &[&str], stdin: &[u8]) -> Output {
        self.run(args, stdin)
    }

    /// `pseidon consume` of `topic` in a group of its own: the printed values.
    fn consume(&self, topic: &str, max: usize) -> Vec<String> {
        let group = unique("codecs-g");
        let max = max.to_string();
        let out = self.pseidon(
            &[
                "consume",
                "-t",
                topic,
                "-g",
                &group,
                "--max",
                &max,
                "--idle-exit-ms",
                "15000",
            ],
            b"",
        );
        assert_eq!(
            out.status.code(),
            Some(0),
            "consume {topic}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(str::to_string)
            .collect()
    }
}

/// N compressible, distinct values naming the codec and the writer.
fn values(codec: &str, writer: &str) -> Vec<String> {
    (0..N)
        .map(|i| format!("{codec}-{writer}-{i:03}-{}", "abcdefgh".repeat(3 + i % 7)))
        .collect()
}

fn lines(values: &[String]) -> Vec<u8> {
    let mut s = values.join("\n");
    s.push('\n');
    s.into_bytes()
}

/// kcat writes `values` with `codec`. It lingers 500 ms: a batch of the first line alone
/// (kcat reading it before the rest is written) would be stored uncompressed, as
/// librdkafka does when compressing does not make a batch smaller.
fn kcat_produce(topic: &str, codec: &str, values: &[String]) {
    let mut child = Command::new("kcat")
        .args([
            "-b",
            &bootstrap(),
            "-P",
            "-t",
            topic,
            "-z",
            codec,
            "-X",
            "linger.ms=500",
        ])
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run kcat (apt-get install kcat)");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(&lines(values))
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "kcat -P -z {codec}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Kafka's own console producer with `compression.type=<codec>`.
fn kafka_produce(topic: &str, codec: &str, values: &[String]) {
    let mut child = Command::new(repo_root().join("scripts/kafka"))
        .args([
            "tools",
            "console-producer",
            "--bootstrap-server",
            &bootstrap(),
            "--topic",
            topic,
            // Its own default (none) overrides a --producer-property compression.type.
            "--compression-codec",
            codec,
            "--producer-property",
            "acks=all",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run scripts/kafka tools console-producer");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(&lines(values))
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "console-producer --compression-codec {codec}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The segment file of partition 0 of each of `topics`, from Kafka's `log-dirs`.
fn segments(topics: &[&str]) -> Vec<PathBuf> {
    let out = kafka_tool(&[
        "log-dirs",
        "--bootstrap-server",
        &bootstrap(),
        "--describe",
        "--topic-list",
        &topics.join(","),
    ]);
    let json = out
        .lines()
        .find(|l| l.trim_start().starts_with('{'))
        .unwrap_or_else(|| panic!("no JSON in log-dirs output:\n{out}"));
    let v: serde_json::Value = serde_json::from_str(json).unwrap();
    let dir = v["brokers"][0]["logDirs"][0]["logDir"]
        .as_str()
        .unwrap_or_else(|| panic!("no logDir in {json}"))
        .to_string();
    topics
        .iter()
        .map(|t| {
            let seg = Path::new(&dir)
                .join(format!("{t}-0"))
                .join("00000000000000000000.log");
            assert!(
                seg.exists(),
                "{} is not on this machine: these tests need a local broker",
                seg.display()
            );
            seg
        })
        .collect()
}

/// One record batch as `dump-log` shows it.
#[derive(Debug)]
struct Batch {
    base_offset: i64,
    last_offset: i64,
    position: u64,
    codec: String,
}

/// The record batches of each segment, with Kafka's `dump-log`.
fn batches(segs: &[PathBuf]) -> Vec<Vec<Batch>> {
    let files: Vec<String> = segs.iter().map(|s| s.display().to_string()).collect();
    let out = kafka_tool(&["dump-log", "--files", &files.join(",")]);
    let mut per: Vec<Vec<Batch>> = segs.iter().map(|_| Vec::new()).collect();
    let mut cur: Option<usize> = None;
    for line in out.lines() {
        if let Some(f) = line.strip_prefix("Dumping ") {
            cur = files.iter().position(|x| x == f.trim());
            continue;
        }
        let field = |name: &str| {
            line.split(&format!("{name}: "))
                .nth(1)
                .and_then(|r| r.split_whitespace().next())
                .map(str::to_string)
        };
        if let (Some(i), Some(base), Some(last), Some(pos), Some(codec)) = (
            cur,
            field("baseOffset"),
            field("lastOffset"),
            field("position"),
            field("compresscodec"),
        ) {
            per[i].push(Batch {
                base_offset: base.parse().unwrap(),
                last_offset: last.parse().unwrap(),
                position: pos.parse().unwrap(),
                codec: codec.to_lowercase(),
            });
        }
    }
    per
}

fn assert_codec(what: &str, batches: &[Batch], codec: &str) {
    assert!(!batches.is_empty(), "{what}: no batch on disk");
    let last = batches.iter().map(|b| b.last_offset).max().unwrap();
    assert_eq!(last, N as i64 - 1, "{what}: {batches:?}");
    for b in batches {
        assert_eq!(b.codec, codec, "{what}: a batch is not {codec}: {b:?}");
    }
}

/// One codec, both ways: kcat and Kafka's producer write, the datasource reads; the
/// datasink writes, kcat reads.
fn round_trip(codec: &str) {
    let by_kcat = unique(&format!("codec-{codec}-kcat"));
    let by_kafka = unique(&format!("codec-{codec}-kafka"));
    let by_sink = unique(&format!("codec-{codec}-sink"));
    for t in [&by_kcat, &by_kafka, &by_sink] {
        create_topic(t, 1);
    }
    let (v_kcat, v_kafka, v_sink) = (
        values(codec, "kcat"),
        values(codec, "kafka"),
        values(codec, "sink"),
    );
    kcat_produce(&by_kcat, codec, &v_kcat);
    kafka_produce(&by_kafka, codec, &v_kafka);
    let sink = Setup::new(&format!("compression.type = {codec:?}\nlinger.ms = 50"));
    let out = sink.pseidon(&["send", "-t", &by_sink], &lines(&v_sink));
    assert_eq!(
        out.status.code(),
        Some(0),
        "send with compression.type={codec}: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    // Written with the codec, all three: checked on the broker's disk.
    let on_disk = batches(&segments(&[&by_kcat, &by_kafka, &by_sink]));
    assert_codec("kcat -z", &on_disk[0], codec);
    assert_codec("console-producer", &on_disk[1], codec);
    assert_codec("pseidon send", &on_disk[2], codec);

    // Read by the datasource: every value, exact, in order.
    let reader = Setup::new("");
    assert_eq!(reader.consume(&by_kcat, N), v_kcat, "kcat -z {codec}");
    assert_eq!(
        reader.consume(&by_kafka, N),
        v_kafka,
        "console-producer {codec}"
    );

    // Written by the datasink, read by kcat.
    let got: Vec<String> = kcat_values(&by_sink)
        .into_iter()
        .map(|v| String::from_utf8(v).unwrap())
        .collect();
    assert_eq!(got, v_sink, "pseidon send with {codec}, read by kcat");
}

#[test]
fn gzip_both_ways() {
    round_trip("gzip");
}

#[test]
fn snappy_both_ways() {
    round_trip("snappy");
}

#[test]
fn lz4_both_ways() {
    round_trip("lz4");
}

#[test]
fn zstd_both_ways() {
    round_trip("zstd");
}

/// The committed offset of `group` on partition 0 of `topic` (None: nothing committed).
fn committed(group: &str, topic: &str) -> Option<i64> {
    let out = Command::new(repo_root().join("scripts/kafka"))
        .args([
            "tools",
            "consumer-groups",
            "--bootstrap-server",
            &bootstrap(),
            "--describe",
            "--group",
            group,
        ])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .find(|f| f.len() >= 4 && f[1] == topic && f[2] == "0")
        .and_then(|f| f[3].parse().ok())
}

#[test]
fn a_corrupt_batch_fails_consume_and_is_never_committed_past() {
    let topic = unique("codec-corrupt");
    create_topic(&topic, 1);
    // Three gzip batches of 10: offsets 0-9, 10-19, 20-29.
    let vals: Vec<Vec<String>> = (0..3)
        .map(|b| {
            (0..10)
                .map(|i| format!("batch{b}-{i}-{}", "x".repeat(50)))
                .collect()
        })
        .collect();
    for v in &vals {
        kcat_produce(&topic, "gzip", v);
    }
    let seg = segments(&[&topic]).remove(0);
    let on_disk = batches(std::slice::from_ref(&seg)).remove(0);
    let second = on_disk
        .iter()
        .find(|b| b.base_offset == 10)
        .unwrap_or_else(|| panic!("no batch starting at offset 10: {on_disk:?}"));
    assert_eq!(second.codec, "gzip", "{second:?}");
    // The gzip stream starts after the 61-byte v2 batch header: break its magic bytes.
    let at = second.position + 61;
    let mut f = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&seg)
        .unwrap();
    f.seek(SeekFrom::Start(at)).unwrap();
    let mut magic = [0u8; 2];
    f.read_exact(&mut magic).unwrap();
    assert_eq!(
        magic,
        [0x1f, 0x8b],
        "not a gzip stream at {at} of {}",
        seg.display()
    );
    f.seek(SeekFrom::Start(at)).unwrap();
    f.write_all(&[0, 0]).unwrap();
    f.sync_all().unwrap();
    drop(f);

    let s = Setup::new("");
    let group = unique("codec-corrupt-g");
    let run = || {
        s.pseidon(
            &[
                "consume",
                "-t",
                &topic,
                "-g",
                &group,
                "--mark-done",
                "--idle-exit-ms",
                "15000",
            ],
            b"",
        )
    };
    for attempt in 1..=2 {
        let out = run();
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        println!("attempt {attempt}: exit {:?}\n{stderr}", out.status.code());
        assert_eq!(out.status.code(), Some(2), "attempt {attempt}:\n{stderr}");
        let err = stderr
            .lines()
            .find(|l| l.starts_with("pseidon: error"))
            .unwrap_or_else(|| panic!("no error line:\n{stderr}"));
        assert!(err.contains(&topic), "{err}");
        assert!(err.contains("BadCompression"), "{err}");
        // Nothing after the broken batch was handed out.
        let printed: Vec<&str> = stdout.lines().collect();
        assert!(
            printed.iter().all(|l| l.starts_with("batch0-")),
            "attempt {attempt} printed past the broken batch: {printed:?}"
        );
        // The group's offset never passes the broken batch.
        let c = committed(&group, &topic);
        assert!(
            c.is_none_or(|c| c <= 10),
            "attempt {attempt}: committed {c:?}, past the broken batch at 10"
        );
        println!(
            "attempt {attempt}: printed {}, committed {c:?}",
            printed.len()
        );
    }
}
