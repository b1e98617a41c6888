//! The Kafka plugin's metrics and readiness, through the real host loading the real
//! `libpseidon_kafka.so`, against the shared broker: N records written with the
//! datasink, read in groups with the datasource, some marked done; the families'
//! values must say exactly that. Readiness is true there, and false against a port of
//! 127.0.0.1 where no broker listens.

use std::{
    net::TcpListener,
    time::{Duration, Instant},
};

use pseidon_plugin_api::{
    Observer, ReaderOptions, SourceReader,
    metrics::{MetricFamily, MetricKind},
};
use pseidon_tests::{
    bootstrap, copy_plugins, create_topic, kafka_host, plugin_lock, temp_dir, unique,
};

const SINK: &str = "pseidon.kafka.util.datasink";
const SOURCE: &str = "pseidon.kafka.util.datasource";
/// Records written; groups of [`GROUP`] messages.
const N: usize = 30;
const GROUP: usize = 10;

/// The Kafka plugin's observability extension, as the host found it.
fn observer(host: &pseidon_host::Host) -> Observer {
    host.loaded_plugins()
        .iter()
        .find(|p| p.name() == "pseidon-kafka")
        .and_then(|p| p.observer())
        .expect("the Kafka plugin exports its observability extension")
}

/// The value of the sample of `name` whose labels include all of `labels`.
fn value(families: &[MetricFamily], name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    families
        .iter()
        .find(|f| f.name == name)?
        .samples
        .iter()
        .find(|s| {
            labels
                .iter()
                .all(|(k, v)| s.labels.iter().any(|(a, b)| a == k && b == v))
        })
        .map(|s| s.value)
}

/// Polls the metrics until `ok` holds or 20 s pass, keeping `reader` polled as a
/// processor would (a consumer's statistics, every 200 ms here, arrive through its poll);
/// it has nothing more to hand out.
fn metrics_until(
    obs: Observer,
    reader: &mut SourceReader,
    ok: impl Fn(&[MetricFamily]) -> bool,
) -> Vec<MetricFamily> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let m = obs.metrics();
        if ok(&m) || Instant::now() >= deadline {
            return m;
        }
        let more = reader.next_group(Duration::from_millis(100)).expect("next");
        assert!(more.is_none(), "nothing more was written");
    }
}

#[test]
fn families_count_what_was_written_read_and_done_and_readiness_is_true() {
    let _serial = plugin_lock();
    let topic = unique("pmet");
    let group = unique("pmet-group");
    create_topic(&topic, 1);
    let conf = format!(
        "\"pseidon-kafka.group-max-messages\" = {GROUP}\n\"pseidon-kafka.group-max-wait-ms\" = 60000\n\
         [kafka]\nbootstrap.servers = \"{}\"\n\"group.id\" = \"{group}\"\n\"statistics.interval.ms\" = 200\n",
        bootstrap()
    );
    let mut host = kafka_host(&conf).expect("host loads the plugin");
    let obs = observer(&host);
    let sink = host
        .registry()
        .reg_get_wait_sink(SINK, Duration::from_secs(5))
        .expect("sink");
    for i in 0..N {
        sink.write(&topic, format!("v-{i:03}").as_bytes())
            .expect("write");
    }
    let report = sink.flush(Duration::from_secs(60)).expect("flush");
    assert_eq!(report.delivered, N as u64, "{report:?}");

    let source = host
        .registry()
        .reg_get_wait_source(SOURCE, Duration::from_secs(5))
        .expect("source");
    let mut reader = source
        .reader(&[topic.as_str()], ReaderOptions::default())
        .expect("reader");
    let mut groups = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while groups.len() < N / GROUP && Instant::now() < deadline {
        if let Some(g) = reader.next_group(Duration::from_millis(500)).expect("next") {
            assert_eq!(g.messages().len(), GROUP, "{}", g.id());
            groups.push(g.id().to_string());
        }
    }
    assert_eq!(groups.len(), N / GROUP, "{groups:?}");
    // The first and the last group done; the middle one holds the commit back.
    source.mark_done(&groups[0]).expect("mark_done");
    source.mark_done(&groups[2]).expect("mark_done");
    let held = (GROUP * 2) as f64; // offsets 10..=29 wait for group 1
    let lag = [
        ("group", group.as_str()),
        ("topic", topic.as_str()),
        ("partition", "0"),
    ];
    let m = metrics_until(obs, &mut reader, |m| {
        value(m, "pseidon_kafka_lag_unfinished_messages", &lag) == Some(held)
            && value(m, "pseidon_kafka_lag_unread_messages", &lag) == Some(0.0)
            && value(m, "pseidon_kafka_broker_rtt_seconds", &[("client", SOURCE)]).is_some()
    });
    let sink_l = [("sink", SINK), ("topic", topic.as_str())];
    assert_eq!(
        value(&m, "pseidon_kafka_sink_messages_accepted", &sink_l),
        Some(N as f64)
    );
    assert_eq!(
        value(&m, "pseidon_kafka_sink_messages_delivered", &sink_l),
        Some(N as f64)
    );
    assert_eq!(
        value(&m, "pseidon_kafka_sink_bytes_accepted", &sink_l),
        Some((N * 5) as f64),
        "values v-000.. of 5 bytes, no keys"
    );
    assert_eq!(
        value(&m, "pseidon_kafka_sink_queue_messages", &[("sink", SINK)]),
        Some(0.0)
    );
    let latency = m
        .iter()
        .find(|f| f.name == "pseidon_kafka_sink_delivery_latency_seconds")
        .expect("latency family");
    assert_eq!(latency.kind, MetricKind::Histogram);
    let h = latency.samples[0].histogram.as_ref().expect("histogram");
    assert_eq!(h.count, N as u64);
    assert!(
        value(&m, "pseidon_kafka_sink_messages_failed", &sink_l).is_none(),
        "no failure"
    );

    let src_l = [
        ("source", SOURCE),
        ("topic", topic.as_str()),
        ("group", group.as_str()),
    ];
    assert_eq!(
        value(&m, "pseidon_kafka_source_messages_handed_out", &src_l),
        Some(N as f64)
    );
    assert_eq!(
        value(&m, "pseidon_kafka_source_groups_handed_out", &src_l),
        Some(3.0)
    );
    assert_eq!(
        value(&m, "pseidon_kafka_source_groups_replayed", &src_l),
        Some(0.0)
    );
    assert_eq!(
        value(&m, "pseidon_kafka_source_messages_lost", &src_l),
        Some(0.0)
    );
    let status = |s: &str| {
        value(
            &m,
            "pseidon_kafka_source_groups",
            &[("source", SOURCE), ("status", s)],
        )
    };
    assert_eq!(
        (
            status("done"),
            status("run"),
            status("ready"),
            status("lost")
        ),
        (Some(2.0), Some(1.0), Some(0.0), Some(0.0))
    );

    assert_eq!(
        value(&m, "pseidon_kafka_lag_unfinished_messages", &lag),
        Some(held),
        "{m:#?}"
    );
    assert_eq!(
        value(&m, "pseidon_kafka_lag_unread_messages", &lag),
        Some(0.0)
    );
    assert_eq!(
        value(&m, "pseidon_kafka_oldest_unfinished_group_attempts", &lag),
        Some(1.0)
    );
    let age = value(
        &m,
        "pseidon_kafka_oldest_unfinished_group_age_seconds",
        &lag,
    )
    .expect("age");
    assert!((0.0..60.0).contains(&age), "age {age}");
    assert_eq!(
        value(&m, "pseidon_kafka_retention_risk_offsets", &lag),
        Some(GROUP as f64),
        "group 1 starts at offset 10, the log at 0"
    );
    assert!(
        value(
            &m,
            "pseidon_kafka_client_queue_messages",
            &[("client", SINK)]
        )
        .is_some()
    );
    assert!(
        value(
            &m,
            "pseidon_kafka_broker_outbuf_messages",
            &[("client", SOURCE)]
        )
        .is_some()
    );
    assert!(
        m.iter().all(|f| f
            .samples
            .iter()
            .all(|s| s.labels.iter().all(|(k, _)| k != "plugin"))),
        "the host adds `plugin`"
    );

    // The middle group done too: nothing is unfinished once the watermark moved.
    source.mark_done(&groups[1]).expect("mark_done");
    let m = metrics_until(obs, &mut reader, |m| {
        value(m, "pseidon_kafka_lag_unfinished_messages", &lag) == Some(0.0)
    });
    assert_eq!(
        value(&m, "pseidon_kafka_lag_unfinished_messages", &lag),
        Some(0.0)
    );
    assert_eq!(
        value(&m, "pseidon_kafka_oldest_unfinished_group_attempts", &lag),
        Some(0.0)
    );

    let checks = obs.readiness(Duration::from_secs(5));
    assert_eq!(checks.len(), 2, "{checks:?}");
    assert!(checks.iter().all(|c| c.ready), "{checks:?}");
    drop(reader);
    assert!(host.shutdown().is_empty());
}

#[test]
fn readiness_is_false_where_no_broker_listens_and_names_the_bootstrap() {
    let _serial = plugin_lock();
    let port = {
        let l = TcpListener::bind("127.0.0.1:0").expect("a free port");
        l.local_addr().expect("addr").port()
    };
    let servers = format!("127.0.0.1:{port}");
    let conf = format!("[kafka]\nbootstrap.servers = \"{servers}\"\n");
    let mut host = kafka_host(&conf).expect("host loads the plugin");
    let obs = observer(&host);
    let started = Instant::now();
    let checks = obs.readiness(Duration::from_secs(2));
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "bounded by the timeout"
    );
    assert_eq!(checks.len(), 2, "{checks:?}");
    for c in &checks {
        assert!(!c.ready, "{c:?}");
        assert!(c.detail.contains(&servers), "{c:?}");
    }
    // A sink never used has no families; the source's counters are there, empty.
    let m = obs.metrics();
    assert!(
        m.iter().all(|f| !f.name.starts_with("pseidon_kafka_sink_")),
        "{m:#?}"
    );
    assert!(host.shutdown().is_empty());
}

/// A plugin built before the observability extension (a root module of the 0.3.0
/// layout and no `pseidon_plugin_observe_v1` symbol) still loads; it has no
/// extension, so it reports no family and no readiness check.
#[test]
fn a_plugin_without_the_observability_extension_loads_and_reports_none() {
    let root = temp_dir("pmet-old");
    let dir = root.join("plugins");
    std::fs::create_dir_all(&dir).expect("plugins dir");
    copy_plugins(&dir, &["pseidon_test_plugin_old_prefix"]);
    let conf = pseidon_host::Conf::parse(
        &format!("plugin-dirs = [{dir:?}]\nstrict = true\n"),
        &root.join("pseidon.toml"),
    )
    .expect("conf");
    let mut host = pseidon_host::Host::load(conf).expect("the host loads the old plugin");
    let names: Vec<String> = host.plugins().into_iter().map(|p| p.name).collect();
    assert_eq!(names, vec!["old-prefix".to_string()]);
    assert!(host.loaded_plugins()[0].observer().is_none());
    assert!(host.shutdown().is_empty());
    let _ = std::fs::remove_dir_all(&root);
}
