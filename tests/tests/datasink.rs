//! The datasink `pseidon.kafka.util.datasink` end to end, as users reach it: the real
//! `libpseidon_kafka.so` loaded by the real host from a TOML conf, the sink looked up
//! in the registry by name, a real Kafka broker, and kcat as the independent reader.
//!
//! The tests run one after another (`plugin_lock`): a plugin library holds one plugin
//! instance at a time.

use std::{
    collections::{BTreeMap, BTreeSet},
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    thread,
    time::{Duration, Instant},
};

use pseidon_plugin_api::{Error, Header, Record, Sink};
use pseidon_tests::{
    OwnBroker, bootstrap, captured_logs, create_topic, kafka_host, kcat_formatted, kcat_values,
    kcat_values_from, plugin_lock, unique,
};

const SINK: &str = "pseidon.kafka.util.datasink";

fn sink_of(host: &pseidon_host::Host) -> Sink {
    host.registry()
        .reg_get_wait_sink(SINK, Duration::from_secs(5))
        .expect("the plugin registers the datasink")
}

fn conf_for(bootstrap: &str) -> String {
    format!("[kafka]\nbootstrap.servers = \"{bootstrap}\"\n")
}

/// The README's example: `(writer {:topic "test" :val (.getBytes (str "test-" i))})`
/// for i in 0..1000, read back with kcat: every value once, byte for byte.
#[test]
fn readme_example_writes_test_0_to_test_999_through_the_registry() {
    let _serial = plugin_lock();
    let topic = unique("readme");
    create_topic(&topic, 1);
    let mut host = kafka_host(&conf_for(&bootstrap())).expect("host loads the plugin");
    let sink = sink_of(&host);
    for i in 0..1000 {
        let id = sink
            .write(&topic, format!("test-{i}").as_bytes())
            .expect("write");
        assert_eq!(id, i, "delivery ids count up from 0");
    }
    let report = sink.flush(Duration::from_secs(60)).expect("flush");
    assert_eq!(report.delivered, 1000, "{report:?}");
    assert!(report.is_clean(), "{report:?}");
    // A second flush reports nothing twice.
    let again = sink.flush(Duration::from_secs(1)).expect("flush");
    assert_eq!(
        (again.delivered, again.failed.len(), again.pending),
        (0, 0, 0)
    );
    assert!(host.shutdown().is_empty());

    let values = kcat_values(&topic);
    assert_eq!(values.len(), 1000, "kcat read {} messages", values.len());
    let expected: Vec<Vec<u8>> = (0..1000)
        .map(|i| format!("test-{i}").into_bytes())
        .collect();
    // One partition: kcat sees them in write order, each once.
    assert_eq!(values, expected);
}

/// Keys, headers (with a null one) and an explicit partition reach the broker as
/// written; the batch form gives consecutive ids.
#[test]
fn keys_headers_and_explicit_partition_round_trip() {
    let _serial = plugin_lock();
    let topic = unique("keys");
    create_topic(&topic, 3);
    let mut host = kafka_host(&conf_for(&bootstrap())).expect("host loads the plugin");
    let sink = sink_of(&host);

    let keys: Vec<String> = (0..30).map(|i| format!("key-{i}")).collect();
    let values: Vec<String> = (0..30).map(|i| format!("value-{i}")).collect();
    let traces: Vec<String> = (0..30).map(|i| format!("t{i}")).collect();
    let headers: Vec<[Header<'_>; 3]> = traces
        .iter()
        .map(|t| {
            [
                Header::new("trace", t.as_bytes()),
                Header::new("source", b"pseidon"),
                Header::null("empty"),
            ]
        })
        .collect();
    let records: Vec<Record<'_>> = (0..30)
        .map(|i| {
            Record::new(&topic, values[i].as_bytes())
                .with_key(keys[i].as_bytes())
                .with_headers(&headers[i])
                .with_partition(2)
        })
        .collect();
    let accepted = sink.write_batch(&records).expect("write_batch");
    assert_eq!(accepted.accepted, 30);
    assert!(accepted.error.is_none(), "{accepted:?}");
    let report = sink.flush(Duration::from_secs(60)).expect("flush");
    assert_eq!(report.delivered, 30, "{report:?}");
    assert!(report.is_clean(), "{report:?}");
    assert!(host.shutdown().is_empty());

    let out = kcat_formatted(&bootstrap(), &topic, "%p|%k|%h|%s\n");
    let lines: Vec<String> = String::from_utf8(out)
        .expect("utf-8")
        .lines()
        .map(str::to_string)
        .collect();
    let expected: Vec<String> = (0..30)
        .map(|i| format!("2|key-{i}|trace=t{i},source=pseidon,empty=NULL|value-{i}"))
        .collect();
    assert_eq!(lines, expected);
}

/// Null keys and no partition: the partitioner spreads the records over all three
/// partitions (librdkafka's sticky partitioner switches partition between batches,
/// so the writes are spread out in time a little).
#[test]
fn null_keys_use_all_three_partitions() {
    let _serial = plugin_lock();
    let topic = unique("spread");
    create_topic(&topic, 3);
    let mut host = kafka_host(&conf_for(&bootstrap())).expect("host loads the plugin");
    let sink = sink_of(&host);
    for i in 0..90 {
        sink.write(&topic, format!("v{i}").as_bytes())
            .expect("write");
        thread::sleep(Duration::from_millis(15));
    }
    let report = sink.flush(Duration::from_secs(60)).expect("flush");
    assert!(report.is_clean() && report.delivered == 90, "{report:?}");
    assert!(host.shutdown().is_empty());

    let out = String::from_utf8(kcat_formatted(&bootstrap(), &topic, "%p %s\n")).unwrap();
    let mut per_partition: BTreeMap<&str, usize> = BTreeMap::new();
    for line in out.lines() {
        *per_partition
            .entry(line.split(' ').next().unwrap())
            .or_default() += 1;
    }
    assert_eq!(
        per_partition.values().sum::<usize>(),
        90,
        "{per_partition:?}"
    );
    assert_eq!(
        per_partition.keys().copied().collect::<Vec<_>>(),
        ["0", "1", "2"],
        "{per_partition:?}"
    );
}

/// The broker is SIGKILLed in the middle of a send of 10 000 messages and started
/// again on the same data: every message `write` accepted arrives exactly once (the
/// idempotent producer never duplicates a retry), and none that `write` accepted is
/// lost without a failure report.
#[test]
fn broker_killed_mid_send_every_accepted_message_arrives_exactly_once() {
    let _serial = plugin_lock();
    let broker = OwnBroker::start(19292, "");
    let topic = unique("restart");
    broker.create_topic(&topic, 3);
    let conf = format!(
        "{}message.timeout.ms = 180000\n",
        conf_for(&broker.bootstrap)
    );
    let mut host = kafka_host(&conf).expect("host loads the plugin");
    let sink = sink_of(&host);

    const N: u64 = 10_000;
    let killed = Arc::new(AtomicBool::new(false));
    let written = Arc::new(AtomicU64::new(0));
    let writer = {
        let sink = sink.clone();
        let topic = topic.clone();
        let killed = Arc::clone(&killed);
        let written = Arc::clone(&written);
        thread::spawn(move || {
            let mut accepted = BTreeMap::new();
            let mut refused = Vec::new();
            for i in 0..N {
                let value = format!("msg-{i:05}");
                match sink.write(&topic, value.as_bytes()) {
                    Ok(id) => {
                        accepted.insert(id, value);
                    }
                    Err(e) => refused.push((i, e.to_string())),
                }
                written.store(i + 1, Ordering::Relaxed);
                // The first half goes out paced, up to the kill; the second half
                // is written while the broker is down or coming back.
                if i % 100 == 99 && !killed.load(Ordering::Relaxed) {
                    thread::sleep(Duration::from_millis(20));
                }
                while i + 1 == N / 2 && !killed.load(Ordering::Relaxed) {
                    thread::sleep(Duration::from_millis(1));
                }
            }
            (accepted, refused)
        })
    };
    // Wait until part of the send went through, then kill the broker.
    while written.load(Ordering::Relaxed) < N / 2 - 1_000 {
        thread::sleep(Duration::from_millis(5));
    }
    broker.kill();
    let at_kill = written.load(Ordering::Relaxed);
    killed.store(true, Ordering::Relaxed);
    assert!(
        at_kill <= N / 2,
        "the kill came after the send: {at_kill} written"
    );
    thread::sleep(Duration::from_secs(2));
    broker.start_keep_data();
    let (accepted, refused) = writer.join().expect("writer thread");
    assert!(refused.is_empty(), "writes refused: {refused:?}");
    assert_eq!(accepted.len() as u64, N);

    let report = sink.flush(Duration::from_secs(180)).expect("flush");
    assert_eq!(report.pending, 0, "{report:?}");
    let failed: BTreeSet<u64> = report.failed.iter().map(|f| f.id).collect();
    assert!(host.shutdown().is_empty());

    let values = kcat_values_from(&broker.bootstrap, &topic);
    let mut seen: BTreeMap<Vec<u8>, usize> = BTreeMap::new();
    for v in &values {
        *seen.entry(v.clone()).or_default() += 1;
    }
    let duplicates: Vec<_> = seen.iter().filter(|(_, n)| **n > 1).collect();
    assert!(duplicates.is_empty(), "duplicates: {duplicates:?}");
    for (id, value) in &accepted {
        let arrived = seen.contains_key(value.as_bytes());
        // An accepted message that did not arrive must have been reported as failed.
        assert!(
            arrived || failed.contains(id),
            "message {id} ({value}) was accepted, not reported as failed, and is not in the topic"
        );
        assert!(
            !(arrived && failed.contains(id)),
            "message {id} ({value}) arrived but was reported as failed"
        );
    }
    assert_eq!(
        report.delivered + failed.len() as u64,
        N,
        "every accepted message is reported once: {} delivered, {} failed",
        report.delivered,
        failed.len()
    );
    // With a message timeout longer than the outage nothing may fail.
    assert!(
        report.failed.is_empty(),
        "{:?}",
        &report.failed[..report.failed.len().min(5)]
    );
    assert_eq!(values.len() as u64, N);
}

/// A `kafka.*` property librdkafka rejects fails `init`, naming the key and the reason;
/// no sink is registered.
#[test]
fn rejected_kafka_property_fails_init_naming_the_key() {
    let _serial = plugin_lock();
    let err = kafka_host(&format!(
        "{}no.such.property = \"1\"\n",
        conf_for(&bootstrap())
    ))
    .err()
    .expect("init must fail")
    .to_string();
    assert!(err.contains("kafka.no.such.property"), "{err}");
    assert!(err.contains("No such configuration property"), "{err}");

    let err = kafka_host("\"kafka.acks\" = \"sometimes\"\n")
        .err()
        .expect("init must fail")
        .to_string();
    assert!(
        err.contains("kafka.acks") && err.contains("Invalid value"),
        "{err}"
    );
}

/// A `kafka.*` value that is an array is an error naming the key.
#[test]
fn array_value_fails_init_naming_the_key() {
    let _serial = plugin_lock();
    let err = kafka_host("[kafka]\nbootstrap.servers = [\"127.0.0.1:9092\", \"127.0.0.1:9093\"]\n")
        .err()
        .expect("init must fail")
        .to_string();
    assert!(err.contains("kafka.bootstrap.servers"), "{err}");
    assert!(err.contains("array"), "{err}");
}

/// A value larger than `message.max.bytes` is refused before it is queued, naming
/// the size and the limit (the configured one, and librdkafka's default 1000000).
#[test]
fn oversize_message_is_refused_naming_size_and_limit() {
    let _serial = plugin_lock();
    let topic = unique("oversize");
    let mut host = kafka_host(&format!(
        "{}message.max.bytes = 10000\n",
        conf_for(&bootstrap())
    ))
    .expect("host loads the plugin");
    let sink = sink_of(&host);
    let big = vec![b'x'; 20_000];
    let err = sink.write(&topic, &big).expect_err("too large");
    assert!(matches!(err, Error::MessageTooLarge { .. }), "{err:?}");
    let text = err.to_string();
    assert!(text.contains("20000") && text.contains("10000"), "{text}");
    assert!(
        text.contains("message.max.bytes") && text.contains(&topic),
        "{text}"
    );
    // librdkafka frames a record with up to 36 bytes: a value that fits only
    // without the framing is refused too, naming the framed size.
    let err = sink
        .write(&topic, &vec![b'x'; 9_990])
        .expect_err("too large with framing")
        .to_string();
    assert!(err.contains("10026") && err.contains("10000"), "{err}");
    sink.write(&topic, &vec![b'x'; 9_964])
        .expect("fits with framing");
    // In a batch: the records before it are accepted, the rest not.
    let records = [
        Record::new(&topic, b"small"),
        Record::new(&topic, &big),
        Record::new(&topic, b"after"),
    ];
    let b = sink.write_batch(&records).expect("write_batch");
    assert_eq!(b.accepted, 1);
    assert!(
        matches!(b.error, Some(Error::MessageTooLarge { .. })),
        "{b:?}"
    );
    assert!(host.shutdown().is_empty());

    let mut host = kafka_host(&conf_for(&bootstrap())).expect("host loads the plugin");
    let sink = sink_of(&host);
    let err = sink
        .write(&topic, &vec![0u8; 1_000_001])
        .expect_err("too large")
        .to_string();
    assert!(err.contains("1000001") && err.contains("1000000"), "{err}");
    assert!(host.shutdown().is_empty());
}

/// Nothing listens at the bootstrap address: writes are accepted (the producer is
/// asynchronous), and flush reports every one as failed within
/// `message.timeout.ms`, with the reason; no hang. librdkafka's own log lines about
/// the failed connections reach the host's log.
#[test]
fn unreachable_bootstrap_is_reported_within_message_timeout() {
    let _serial = plugin_lock();
    let topic = unique("unreachable");
    let mut host =
        kafka_host("[kafka]\nbootstrap.servers = \"127.0.0.1:1\"\nmessage.timeout.ms = 3000\n")
            .expect("host loads the plugin");
    let sink = sink_of(&host);
    let start = Instant::now();
    for i in 0..10 {
        sink.write(&topic, format!("v{i}").as_bytes())
            .expect("write is accepted");
    }
    let report = sink.flush(Duration::from_secs(60)).expect("flush");
    let took = start.elapsed();
    assert!(took < Duration::from_secs(8), "flush took {took:?}");
    assert_eq!(report.delivered, 0);
    assert_eq!(report.pending, 0);
    let ids: Vec<u64> = report.failed.iter().map(|f| f.id).collect();
    assert_eq!(ids.len(), 10, "{report:?}");
    assert_eq!(
        ids.iter().copied().collect::<BTreeSet<_>>(),
        (0..10).collect()
    );
    for f in &report.failed {
        assert_eq!(f.topic, topic);
        assert!(
            f.reason.contains("timed out") && f.reason.contains("3000 ms"),
            "{}",
            f.reason
        );
    }
    assert!(host.shutdown().is_empty());
    let logs = captured_logs();
    assert!(
        logs.iter().any(|l| l.plugin == "pseidon-kafka"
            && l.target == "librdkafka"
            && l.message.contains("127.0.0.1:1")),
        "no librdkafka log line about 127.0.0.1:1 reached the host's log"
    );
}

/// A topic that does not exist, with automatic creation off: the failure names the
/// topic and says it is unknown (as a write error once librdkafka knows, or in the
/// flush report), within `message.timeout.ms`.
#[test]
fn missing_topic_with_auto_creation_off_is_reported() {
    let _serial = plugin_lock();
    let topic = unique("missing");
    let mut host = kafka_host(&format!(
        "{}allow.auto.create.topics = false\nmessage.timeout.ms = 5000\ntopic.metadata.propagation.max.ms = 1000\n",
        conf_for(&bootstrap())
    ))
    .expect("host loads the plugin");
    let sink = sink_of(&host);
    let start = Instant::now();
    sink.write(&topic, b"first")
        .expect("the first write is queued");
    let report = sink.flush(Duration::from_secs(60)).expect("flush");
    assert!(
        start.elapsed() < Duration::from_secs(10),
        "took {:?}",
        start.elapsed()
    );
    assert_eq!(report.failed.len(), 1, "{report:?}");
    let f = &report.failed[0];
    assert_eq!((f.id, f.topic.as_str()), (0, topic.as_str()));
    assert!(f.reason.contains("Unknown topic"), "{}", f.reason);
    // Now librdkafka knows: a write fails at once, naming the topic.
    let err = sink
        .write(&topic, b"second")
        .expect_err("unknown topic")
        .to_string();
    assert!(
        err.contains(&topic) && err.contains("Unknown topic"),
        "{err}"
    );
    assert!(host.shutdown().is_empty());
}

/// Backpressure: with a tiny producer queue and no broker, `write` waits
/// `pseidon-kafka.queue-full-timeout-ms` for room, then says the queue is full.
#[test]
fn full_queue_blocks_then_reports_queue_full() {
    let _serial = plugin_lock();
    let topic = unique("full");
    let mut host = kafka_host(
        "\"pseidon-kafka.queue-full-timeout-ms\" = 300\n[kafka]\nbootstrap.servers = \"127.0.0.1:1\"\nqueue.buffering.max.messages = 5\nmessage.timeout.ms = 3000\n",
    )
    .expect("host loads the plugin");
    let sink = sink_of(&host);
    for i in 0..5 {
        sink.write(&topic, format!("v{i}").as_bytes())
            .expect("room for 5");
    }
    let start = Instant::now();
    let err = sink.write(&topic, b"v5").expect_err("queue full");
    let waited = start.elapsed();
    assert!(matches!(err, Error::QueueFull { .. }), "{err:?}");
    assert!(err.to_string().contains("queue full"), "{err}");
    assert!(
        waited >= Duration::from_millis(300) && waited < Duration::from_secs(3),
        "{waited:?}"
    );
    // The 5 queued ones fail after message.timeout.ms; shutdown reports them.
    let errors = host.shutdown();
    assert_eq!(errors.len(), 1, "{errors:?}");
    let text = errors[0].to_string();
    assert!(
        text.contains("5 accepted message(s) were not delivered"),
        "{text}"
    );
    let report = sink
        .flush(Duration::from_secs(1))
        .expect("flush after shutdown");
    assert_eq!(report.failed.len(), 5, "{report:?}");
}

/// Graceful stop: what `write` accepted just before shutdown reaches the broker
/// (shutdown flushes), and writes after shutdown fail with "closed".
#[test]
fn shutdown_flushes_accepted_messages_and_later_writes_are_refused() {
    let _serial = plugin_lock();
    let topic = unique("shutdown");
    create_topic(&topic, 1);
    let mut host = kafka_host(&format!("{}linger.ms = 200\n", conf_for(&bootstrap())))
        .expect("host loads the plugin");
    let sink = sink_of(&host);
    for i in 0..500 {
        sink.write(&topic, format!("s-{i}").as_bytes())
            .expect("write");
    }
    let errors = host.shutdown();
    assert!(errors.is_empty(), "{errors:?}");
    let err = sink.write(&topic, b"late").expect_err("closed");
    assert!(matches!(err, Error::Closed { .. }), "{err:?}");
    assert!(err.to_string().contains("closed"), "{err}");
    let values = kcat_values(&topic);
    assert_eq!(values.len(), 500);
    let report = sink
        .flush(Duration::from_secs(1))
        .expect("flush after shutdown");
    assert_eq!(report.delivered, 500, "{report:?}");
    assert!(report.failed.is_empty());
}

/// Secret conf values never reach the host's log, not even through librdkafka's own
/// log lines; the plugin's own conf summary shows them redacted.
#[test]
fn secrets_never_reach_the_log() {
    let _serial = plugin_lock();
    let topic = unique("secret");
    create_topic(&topic, 1);
    let secret = "hunter2-do-not-log";
    let mut host = kafka_host(&format!(
        "{}sasl.username = \"user\"\nsasl.password = \"{secret}\"\nssl.key.password = \"{secret}\"\n",
        conf_for(&bootstrap())
    ))
    .expect("host loads the plugin");
    let sink = sink_of(&host);
    sink.write(&topic, b"v").expect("write");
    let report = sink.flush(Duration::from_secs(60)).expect("flush");
    assert!(report.is_clean() && report.delivered == 1, "{report:?}");
    assert!(host.shutdown().is_empty());
    let logs = captured_logs();
    let leaked: Vec<_> = logs.iter().filter(|l| l.message.contains(secret)).collect();
    assert!(leaked.is_empty(), "{leaked:?}");
    assert!(
        logs.iter()
            .any(|l| l.message.contains("sasl.password") && l.message.contains("<redacted>")),
        "the plugin logs its conf with the secret redacted"
    );
}

/// A tombstone (null value) with a key reaches the broker as a null value.
#[test]
fn tombstone_is_written_with_a_null_value() {
    let _serial = plugin_lock();
    let topic = unique("tombstone");
    create_topic(&topic, 1);
    let mut host = kafka_host(&conf_for(&bootstrap())).expect("host loads the plugin");
    let sink = sink_of(&host);
    sink.send(&Record::tombstone(&topic, b"gone"))
        .expect("send");
    sink.send(&Record::new(&topic, b"").with_key(b"empty"))
        .expect("send");
    let report = sink.flush(Duration::from_secs(60)).expect("flush");
    assert!(report.is_clean() && report.delivered == 2, "{report:?}");
    assert!(host.shutdown().is_empty());
    let out = String::from_utf8(kcat_formatted(&bootstrap(), &topic, "%k %S\n")).unwrap();
    assert_eq!(out, "gone -1\nempty 0\n");
}

/// Two users of one sink: a writer with flush tickets and another that flushes the
/// shared way all along. Each ticket reports exactly its batch — its deliveries and
/// its failure (a record to a topic that does not exist) — and the shared flush never
/// reports them; kcat sees every delivered record once.
#[test]
fn flush_tickets_report_exactly_their_batch_while_another_user_flushes() {
    let _serial = plugin_lock();
    let topic = unique("tickets");
    create_topic(&topic, 1);
    let conf = format!(
        "{}allow.auto.create.topics = false\nmessage.timeout.ms = 5000\n\
         topic.metadata.propagation.max.ms = 1000\n",
        conf_for(&bootstrap())
    );
    let mut host = kafka_host(&conf).expect("host loads the plugin");
    let sink = sink_of(&host);
    let stop = Arc::new(AtomicBool::new(false));
    let shared_user = {
        let (sink, topic, stop) = (sink.clone(), topic.clone(), Arc::clone(&stop));
        thread::spawn(move || {
            let (mut written, mut delivered, mut failed) = (0u64, 0u64, Vec::new());
            while !stop.load(Ordering::SeqCst) {
                sink.write(&topic, format!("plain-{written}").as_bytes())
                    .expect("plain write");
                written += 1;
                let r = sink.flush(Duration::from_millis(50)).expect("plain flush");
                delivered += r.delivered;
                failed.extend(r.failed);
            }
            loop {
                let r = sink.flush(Duration::from_secs(10)).expect("plain flush");
                delivered += r.delivered;
                failed.extend(r.failed);
                if r.pending == 0 {
                    break;
                }
            }
            (written, delivered, failed)
        })
    };
    let mut ticket_delivered = 0;
    for round in 0..5 {
        let values: Vec<String> = (0..199).map(|i| format!("t{round}-{i}")).collect();
        let missing = unique("ticket-missing");
        let mut records: Vec<Record<'_>> = values
            .iter()
            .map(|v| Record::new(&topic, v.as_bytes()))
            .collect();
        // The last record of each batch goes to a topic that does not exist: librdkafka
        // queues it (it does not know yet) and reports its delivery failed.
        records.push(Record::new(&missing, b"lost on purpose"));
        let (batch, mut ticket) = sink.write_batch_ticket(&records).expect("ticketed write");
        assert_eq!(
            (batch.accepted, batch.error.is_none()),
            (200, true),
            "{batch:?}"
        );
        assert_eq!(ticket.ids(), batch.first_id..batch.first_id + 200);
        let mut delivered = 0;
        let mut failed = Vec::new();
        loop {
            let r = ticket.flush(Duration::from_secs(10)).expect("ticket flush");
            delivered += r.delivered;
            failed.extend(r.failed);
            if r.pending == 0 {
                break;
            }
        }
        assert!(!ticket.is_open());
        assert_eq!(delivered, 199, "round {round}");
        let ids: Vec<(u64, &str)> = failed.iter().map(|f| (f.id, f.topic.as_str())).collect();
        assert_eq!(
            ids,
            [(batch.first_id + 199, missing.as_str())],
            "round {round}: {failed:?}"
        );
        ticket_delivered += delivered;
    }
    stop.store(true, Ordering::SeqCst);
    let (written, delivered, failed) = shared_user.join().expect("shared user");
    assert!(written > 0);
    assert_eq!(
        delivered, written,
        "the shared flush reports only its own deliveries"
    );
    assert!(
        failed.is_empty(),
        "the tickets' failures are theirs: {failed:?}"
    );
    assert!(host.shutdown().is_empty());
    let values = kcat_values(&topic);
    assert_eq!(values.len() as u64, written + ticket_delivered);
    let distinct: BTreeSet<&Vec<u8>> = values.iter().collect();
    assert_eq!(distinct.len(), values.len(), "each record once");
}

/// A ticket dropped before its deliveries are known hands them to the shared flush:
/// nothing is lost, nothing reported twice.
#[test]
fn a_dropped_flush_ticket_leaves_its_reports_to_the_shared_flush() {
    let _serial = plugin_lock();
    let topic = unique("ticket-drop");
    create_topic(&topic, 1);
    let mut host = kafka_host(&conf_for(&bootstrap())).expect("host loads the plugin");
    let sink = sink_of(&host);
    let values: Vec<String> = (0..500).map(|i| format!("d-{i}")).collect();
    let records: Vec<Record<'_>> = values
        .iter()
        .map(|v| Record::new(&topic, v.as_bytes()))
        .collect();
    let (batch, ticket) = sink.write_batch_ticket(&records).expect("ticketed write");
    assert_eq!(batch.accepted, 500);
    drop(ticket);
    let mut delivered = 0;
    loop {
        let r = sink.flush(Duration::from_secs(10)).expect("flush");
        assert!(r.failed.is_empty(), "{r:?}");
        delivered += r.delivered;
        if r.pending == 0 {
            break;
        }
    }
    assert_eq!(delivered, 500);
    assert!(host.shutdown().is_empty());
    assert_eq!(kcat_values(&topic).len(), 500);
}
