//! The librdkafka client gauges, from the latest statistics of each client: broker
//! round-trip time and output buffer, and the client's queue (the producer's `msg_cnt`,
//! a consumer's `replyq`).
//!
//! Invariant: one sample per (`client`, `broker`): a datasource with several readers
//! (several consumers) sums their buffers and queues and averages their round trips.

use std::collections::BTreeMap;

use pseidon_plugin_api::metrics::MetricFamily;

use super::stats::ClientStats;

/// What a client's queue gauge counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum QueueField {
    /// The producer's messages in queue (`msg_cnt`).
    Messages,
    /// The operations waiting for the application (`replyq`).
    ReplyQueue,
}

/// The client families of `clients`: (client label, its statistics, what its queue is).
pub(crate) fn families(clients: &[(&str, &ClientStats, QueueField)]) -> Vec<MetricFamily> {
    // (client, broker) → (sum of rtt averages in µs, how many, outbuf).
    let mut brokers: BTreeMap<(&str, &str), (i64, i64, i64)> = BTreeMap::new();
    let mut queues: BTreeMap<&str, i64> = BTreeMap::new();
    for (client, stats, field) in clients {
        *queues.entry(client).or_default() += match field {
            QueueField::Messages => stats.msg_cnt,
            QueueField::ReplyQueue => stats.replyq,
        };
        for b in stats.real_brokers() {
            let e = brokers.entry((client, b.name.as_str())).or_default();
            if b.rtt.cnt > 0 {
                e.0 += b.rtt.avg;
                e.1 += 1;
            }
            e.2 += b.outbuf_msg_cnt;
        }
    }
    let mut rtt = MetricFamily::gauge(
        "pseidon_kafka_broker_rtt_seconds",
        "Average broker round-trip time over librdkafka's last statistics window.",
    );
    let mut outbuf = MetricFamily::gauge(
        "pseidon_kafka_broker_outbuf_messages",
        "Requests waiting to be sent to the broker.",
    );
    for ((client, broker), (sum_us, n, out)) in &brokers {
        let l = [("client", *client), ("broker", *broker)];
        if *n > 0 {
            rtt.push(&l, *sum_us as f64 / *n as f64 / 1e6);
        }
        outbuf.push(&l, *out as f64);
    }
    let mut queue = MetricFamily::gauge(
        "pseidon_kafka_client_queue_messages",
        "The producer's queued messages, or a consumer's operations waiting for the reader.",
    );
    for (client, n) in &queues {
        queue.push(&[("client", client)], *n as f64);
    }
    vec![rtt, outbuf, queue]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sums_buffers_and_averages_round_trips_per_client_and_broker() {
        let doc = |avg: i64, out: i64, replyq: i64| {
            ClientStats::parse(
                format!(
                    r#"{{"replyq":{replyq},"msg_cnt":9,"brokers":{{"b/1":{{"name":"b/1","nodeid":1,
                    "state":"UP","outbuf_msg_cnt":{out},"rtt":{{"avg":{avg},"cnt":1}}}}}}}}"#
                )
                .as_bytes(),
            )
            .unwrap()
        };
        let (a, b, p) = (doc(1000, 1, 2), doc(3000, 2, 3), doc(500, 0, 0));
        let f = families(&[
            ("src", &a, QueueField::ReplyQueue),
            ("src", &b, QueueField::ReplyQueue),
            ("sink", &p, QueueField::Messages),
        ]);
        let rtt = &f[0].samples;
        assert_eq!(rtt.len(), 2);
        let src = rtt
            .iter()
            .find(|s| s.labels.contains(&("client".into(), "src".into())))
            .unwrap();
        assert!((src.value - 0.002).abs() < 1e-12);
        let out = f[1]
            .samples
            .iter()
            .find(|s| s.labels.contains(&("client".into(), "src".into())))
            .unwrap();
        assert_eq!(out.value, 3.0);
        let queues: Vec<f64> = f[2].samples.iter().map(|s| s.value).collect();
        assert_eq!(queues, vec![9.0, 5.0], "sink msg_cnt, src replyq summed");
    }
}
