//! Unit tests of the datasink against unreachable brokers and rdkafka's mock cluster:
//! deliveries reported once, failures with ids, topics and reasons, the size check,
//! a full queue, a persistent connection failure, shutdown.

use std::{
    thread,
    time::{Duration, Instant},
};

use pseidon_plugin_api::{
    ConfEntry, ConfKind, ConfView, DataSink, Error, FlushReport, Header, Record,
};
use rdkafka::{
    ClientContext,
    error::{KafkaError, RDKafkaErrorCode},
};

use super::KafkaSink;
use crate::config::Config;

fn sink(entries: &[(&str, &str)]) -> KafkaSink {
    let conf = ConfView::new(
        entries
            .iter()
            .map(|(k, v)| ConfEntry {
                key: k.to_string(),
                kind: ConfKind::String,
                value: v.to_string(),
            })
            .collect(),
    );
    KafkaSink::new(&Config::parse(&conf).unwrap()).unwrap()
}

fn unreachable(extra: &[(&'static str, &'static str)]) -> KafkaSink {
    let mut entries = vec![("kafka.bootstrap.servers", "127.0.0.1:1")];
    entries.extend_from_slice(extra);
    sink(&entries)
}

#[test]
fn delivers_to_a_mock_cluster_and_reports_each_delivery_once() {
    let cluster = rdkafka::mocking::MockCluster::new(1).unwrap();
    cluster.create_topic("t", 3, 1).unwrap();
    let bootstrap = cluster.bootstrap_servers();
    let sink = sink(&[("kafka.bootstrap.servers", bootstrap.as_str())]);
    let headers = [Header::new("h", b"1"), Header::null("n")];
    let records: Vec<Record<'_>> = (0..1000)
        .map(|i| {
            Record::new("t", b"value")
                .with_key(b"k")
                .with_headers(&headers)
                .with_partition(i % 3)
        })
        .collect();
    sink.write_batch(&records, 0).unwrap();
    sink.write_batch(&[Record::tombstone("t", b"k")], 1000)
        .unwrap();
    let report = sink.flush(Duration::from_secs(30)).unwrap();
    assert_eq!(report.delivered, 1001, "{report:?}");
    assert!(report.is_clean(), "{report:?}");
    assert_eq!(sink.flush(Duration::ZERO).unwrap(), FlushReport::default());
    sink.shutdown(Duration::from_secs(5)).unwrap();
}

#[test]
fn oversize_is_refused_before_it_is_queued() {
    let sink = unreachable(&[("kafka.message.max.bytes", "1000")]);
    let big = vec![0u8; 2000];
    let records = [Record::new("t", b"small"), Record::new("t", &big)];
    let (accepted, err) = sink.write_batch(&records, 0).unwrap_err();
    assert_eq!(accepted, 1);
    assert_eq!(
        err,
        Error::MessageTooLarge {
            topic: "t".into(),
            size_bytes: 2000,
            limit_bytes: 1000
        }
    );
    // Key and headers count too.
    let key = vec![0u8; 900];
    let headers = [Header::new("h", &[0u8; 100])];
    let err = sink
        .write_batch(
            &[Record::new("t", b"v").with_key(&key).with_headers(&headers)],
            2,
        )
        .unwrap_err()
        .1;
    assert!(
        matches!(
            err,
            Error::MessageTooLarge {
                size_bytes: 1002,
                ..
            }
        ),
        "{err:?}"
    );
}

#[test]
fn failures_are_reported_once_with_ids_topic_and_reason() {
    let sink = unreachable(&[("kafka.message.timeout.ms", "300")]);
    sink.write_batch(&[Record::new("a", b"1"), Record::new("b", b"2")], 7)
        .unwrap();
    let started = Instant::now();
    let report = sink.flush(Duration::from_secs(30)).unwrap();
    assert!(started.elapsed() < Duration::from_secs(5));
    let mut failed: Vec<(u64, String)> = report
        .failed
        .iter()
        .map(|f| (f.id, f.topic.clone()))
        .collect();
    failed.sort();
    assert_eq!(failed, [(7, "a".to_string()), (8, "b".to_string())]);
    assert!(
        report.failed[0]
            .reason
            .contains("message.timeout.ms = 300 ms")
    );
    assert_eq!((report.delivered, report.pending), (0, 0));
    assert!(sink.flush(Duration::ZERO).unwrap().failed.is_empty());
    // Reported already: shutdown has nothing left to complain about.
    sink.shutdown(Duration::from_secs(5)).unwrap();
}

#[test]
fn a_persistent_failure_fails_queued_messages_and_refuses_writes_until_a_broker_answers() {
    let cluster = rdkafka::mocking::MockCluster::new(1).unwrap();
    cluster.create_topic("t", 1, 1).unwrap();
    let bootstrap = cluster.bootstrap_servers();
    let sink = sink(&[
        ("kafka.bootstrap.servers", bootstrap.as_str()),
        ("pseidon-kafka.connect-failure-timeout-ms", "300"),
    ]);
    sink.write_batch(&[Record::new("t", b"ok")], 0).unwrap();
    assert_eq!(sink.flush(Duration::from_secs(30)).unwrap().delivered, 1);
    // The brokers go away (down: never a reason to give up), and an
    // authentication failure is reported meanwhile.
    cluster.broker_down(1).unwrap();
    sink.write_batch(&[Record::new("t", b"1"), Record::new("t", b"2")], 1)
        .unwrap();
    sink.shared.context.error(
        KafkaError::Global(RDKafkaErrorCode::Authentication),
        "sasl_ssl://b:9093/1: SASL authentication error: Authentication failed",
    );
    let started = Instant::now();
    let mut failed = Vec::new();
    while failed.len() < 2 && started.elapsed() < Duration::from_secs(10) {
        failed.extend(sink.flush(Duration::from_millis(100)).unwrap().failed);
    }
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    let ids: Vec<u64> = failed.iter().map(|f| f.id).collect();
    assert_eq!(ids.len(), 2, "{failed:?}");
    assert!(
        failed
            .iter()
            .all(|f| f.reason.contains("Authentication failed")),
        "{failed:?}"
    );
    let (accepted, err) = sink.write_batch(&[Record::new("t", b"3")], 3).unwrap_err();
    assert_eq!(accepted, 0);
    let Error::Kafka {
        operation,
        reason,
        code,
        retriable,
    } = err
    else {
        panic!("{err:?}");
    };
    assert_eq!(operation, "write to topic `t`");
    assert_eq!(code, Some(RDKafkaErrorCode::Authentication as i32));
    assert!(!retriable);
    assert!(reason.contains("SASL authentication error"), "{reason}");
    // The broker is back: the next check (every 2 s) finds it answering.
    cluster.broker_up(1).unwrap();
    let started = Instant::now();
    loop {
        match sink.write_batch(&[Record::new("t", b"4")], 4) {
            Ok(()) => break,
            Err(_) if started.elapsed() < Duration::from_secs(10) => {
                thread::sleep(Duration::from_millis(50))
            }
            Err((_, e)) => panic!("writes still refused: {e}"),
        }
    }
    let report = sink.flush(Duration::from_secs(30)).unwrap();
    assert_eq!(
        (report.delivered, report.failed.len()),
        (1, 0),
        "{report:?}"
    );
    sink.shutdown(Duration::from_secs(5)).unwrap();
}

#[test]
fn a_broker_that_is_down_is_waited_for() {
    let sink = unreachable(&[("pseidon-kafka.connect-failure-timeout-ms", "100")]);
    sink.write_batch(&[Record::new("t", b"1")], 0).unwrap();
    let report = sink.flush(Duration::from_millis(800)).unwrap();
    assert_eq!((report.pending, report.failed.len()), (1, 0), "{report:?}");
    sink.write_batch(&[Record::new("t", b"2")], 1).unwrap();
    let err = sink.shutdown(Duration::from_millis(100)).unwrap_err();
    assert!(err.to_string().contains("were not delivered"), "{err}");
    let report = sink.flush(Duration::ZERO).unwrap();
    assert!(
        report.failed.iter().all(|f| f.reason.contains("shut down")),
        "{report:?}"
    );
}

#[test]
fn full_queue_waits_then_says_so_and_shutdown_reports_the_rest() {
    let sink = unreachable(&[
        ("kafka.queue.buffering.max.messages", "2"),
        ("pseidon-kafka.queue-full-timeout-ms", "200"),
    ]);
    sink.write_batch(&[Record::new("t", b"1"), Record::new("t", b"2")], 0)
        .unwrap();
    let started = Instant::now();
    let (accepted, err) = sink.write_batch(&[Record::new("t", b"3")], 2).unwrap_err();
    assert_eq!(accepted, 0);
    assert!(matches!(err, Error::QueueFull { .. }), "{err:?}");
    assert!(started.elapsed() >= Duration::from_millis(200));
    let err = sink.shutdown(Duration::from_millis(300)).unwrap_err();
    assert!(
        err.to_string()
            .contains("2 accepted message(s) were not delivered"),
        "{err}"
    );
    let report = sink.flush(Duration::ZERO).unwrap();
    assert_eq!(report.failed.len(), 2, "{report:?}");
    // Shut down: writes are refused.
    let (_, err) = sink.write_batch(&[Record::new("t", b"4")], 3).unwrap_err();
    assert!(matches!(err, Error::Closed { .. }), "{err:?}");
    sink.shutdown(Duration::ZERO).unwrap();
}
