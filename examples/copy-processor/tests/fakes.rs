//! The copy loop against an in-memory datasource and datasink registered in a real
//! registry: delivered groups are marked done, a group with a failed delivery is not
//! (it is written again, and after `max-attempts` it is marked failed and the copy goes
//! on, or, with a datasource that cannot mark it failed, the loop gives up), and `stop` ends
//! the thread in time and closes the reader.

use std::{
    collections::{HashMap, VecDeque},
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use pseidon_copy_processor::{CopyProcessor, copier, settings::Settings};
use pseidon_plugin_api::{
    DataSink, DataSource, DeliveryFailure, DeliveryId, Error, FlushReport, GroupFilter, GroupInfo,
    GroupStatus, MessageGroup, Processor, Reader, ReaderOptions, Record, Registry,
    message_group::MessageParts,
};

/// The topics and the option overrides of one `open`.
type Opened = (Vec<String>, Vec<(String, String)>);

/// What the fakes saw.
#[derive(Default)]
struct Seen {
    /// (topic, value) of every record written.
    written: Mutex<Vec<(String, Vec<u8>)>>,
    marked: Mutex<Vec<String>>,
    opened: Mutex<Vec<Opened>>,
    closed: AtomicBool,
    /// The sink fails the delivery of a record whose value is this, this many times.
    fail_value: Mutex<Option<(Vec<u8>, usize)>>,
    /// Whether the source can mark groups failed (else: the default, "not supported").
    can_fail: AtomicBool,
    /// (group id, consumer group, reason) of every `mark_failed`.
    failed: Mutex<Vec<(String, Option<String>, String)>>,
}

struct FakeReader {
    groups: VecDeque<MessageGroup>,
    seen: Arc<Seen>,
}

impl Reader for FakeReader {
    fn next_group(&mut self, timeout: Duration) -> Result<Option<MessageGroup>, Error> {
        match self.groups.pop_front() {
            Some(g) => Ok(Some(g)),
            None => {
                std::thread::sleep(timeout.min(Duration::from_millis(20)));
                Ok(None)
            }
        }
    }

    fn close(&mut self) -> Result<(), Error> {
        self.seen.closed.store(true, Ordering::SeqCst);
        Ok(())
    }
}

struct FakeSource {
    groups: Mutex<Option<VecDeque<MessageGroup>>>,
    seen: Arc<Seen>,
}

impl DataSource for FakeSource {
    type Reader = FakeReader;

    fn open(&self, topics: &[String], options: &ReaderOptions) -> Result<FakeReader, Error> {
        self.seen
            .opened
            .lock()
            .unwrap()
            .push((topics.to_vec(), options.overrides().to_vec()));
        Ok(FakeReader {
            groups: self.groups.lock().unwrap().take().unwrap_or_default(),
            seen: Arc::clone(&self.seen),
        })
    }

    fn mark_done(&self, group_id: &str) -> Result<(), Error> {
        self.seen.marked.lock().unwrap().push(group_id.to_string());
        Ok(())
    }

    fn groups(&self, _filter: &GroupFilter) -> Result<Vec<GroupInfo>, Error> {
        Ok(Vec::new())
    }

    fn mark_failed(
        &self,
        group_id: &str,
        reason: &str,
        consumer_group: Option<&str>,
    ) -> Result<GroupStatus, Error> {
        if !self.seen.can_fail.load(Ordering::SeqCst) {
            return Err(Error::other("not supported by this plugin"));
        }
        self.seen.failed.lock().unwrap().push((
            group_id.to_string(),
            consumer_group.map(str::to_string),
            reason.to_string(),
        ));
        Ok(GroupStatus::Failed)
    }
}

struct FakeSink {
    seen: Arc<Seen>,
    delivered: AtomicUsize,
    failed: Mutex<Vec<DeliveryFailure>>,
    /// Open flush tickets: first id → (delivered, failures) of that batch.
    tickets: Mutex<HashMap<DeliveryId, (u64, Vec<DeliveryFailure>)>>,
}

impl FakeSink {
    /// Writes `records`, reporting each delivery into `delivered` / `failed`.
    fn write(
        &self,
        records: &[Record<'_>],
        first_id: DeliveryId,
        delivered: &mut u64,
        failed: &mut Vec<DeliveryFailure>,
    ) {
        for (i, r) in records.iter().enumerate() {
            let value = r.value().unwrap_or_default().to_vec();
            self.seen
                .written
                .lock()
                .unwrap()
                .push((r.topic().to_string(), value.clone()));
            let mut fail = self.seen.fail_value.lock().unwrap();
            match fail.as_mut() {
                Some((v, left)) if *v == value && *left > 0 => {
                    *left -= 1;
                    failed.push(DeliveryFailure {
                        id: first_id + i as u64,
                        topic: r.topic().to_string(),
                        reason: "Broker: test failure".into(),
                    });
                }
                _ => *delivered += 1,
            }
        }
    }
}

impl DataSink for FakeSink {
    fn write_batch_ticketed(
        &self,
        records: &[Record<'_>],
        first_id: DeliveryId,
    ) -> Result<(), (u64, Error)> {
        let (mut delivered, mut failed) = (0, Vec::new());
        self.write(records, first_id, &mut delivered, &mut failed);
        self.tickets
            .lock()
            .unwrap()
            .insert(first_id, (delivered, failed));
        Ok(())
    }

    fn flush_ticket(&self, first_id: DeliveryId, _timeout: Duration) -> Result<FlushReport, Error> {
        // Every delivery is reported at once: the ticket closes at its first flush.
        let (delivered, failed) = self
            .tickets
            .lock()
            .unwrap()
            .remove(&first_id)
            .ok_or_else(|| Error::other(format!("no open flush ticket {first_id}")))?;
        Ok(FlushReport {
            delivered,
            failed,
            pending: 0,
        })
    }

    fn release_ticket(&self, first_id: DeliveryId) {
        if let Some((delivered, failed)) = self.tickets.lock().unwrap().remove(&first_id) {
            self.delivered
                .fetch_add(delivered as usize, Ordering::SeqCst);
            self.failed.lock().unwrap().extend(failed);
        }
    }

    fn write_batch(
        &self,
        records: &[Record<'_>],
        first_id: DeliveryId,
    ) -> Result<(), (u64, Error)> {
        let (mut delivered, mut failed) = (0, Vec::new());
        self.write(records, first_id, &mut delivered, &mut failed);
        self.delivered
            .fetch_add(delivered as usize, Ordering::SeqCst);
        self.failed.lock().unwrap().extend(failed);
        Ok(())
    }

    fn flush(&self, _timeout: Duration) -> Result<FlushReport, Error> {
        Ok(FlushReport {
            delivered: self.delivered.swap(0, Ordering::SeqCst) as u64,
            failed: std::mem::take(&mut *self.failed.lock().unwrap()),
            pending: 0,
        })
    }
}

fn group(partition: i32, first: i64, values: &[&str]) -> MessageGroup {
    let parts = values
        .iter()
        .enumerate()
        .map(|(i, v)| MessageParts {
            offset: first + i as i64,
            timestamp_ms: None,
            key: None,
            value: Some(v.as_bytes().to_vec()),
            headers: vec![],
        })
        .collect();
    MessageGroup::new("copy.from", partition, 1, parts)
}

fn setup(groups: Vec<MessageGroup>, max_attempts: u32) -> (Registry, Settings, Arc<Seen>) {
    let seen = Arc::new(Seen::default());
    let registry = Registry::new("test");
    registry
        .register_source(
            "src",
            FakeSource {
                groups: Mutex::new(Some(groups.into())),
                seen: Arc::clone(&seen),
            },
        )
        .unwrap();
    registry
        .register_sink(
            "snk",
            FakeSink {
                seen: Arc::clone(&seen),
                delivered: AtomicUsize::new(0),
                failed: Mutex::new(Vec::new()),
                tickets: Mutex::new(HashMap::new()),
            },
        )
        .unwrap();
    let settings = Settings {
        from: "copy.from".into(),
        to: "copy.to".into(),
        group: "copier".into(),
        source: "src".into(),
        sink: "snk".into(),
        wait: Duration::from_secs(1),
        max_attempts,
        max_rate: 0,
        exactly_once: false,
    };
    (registry, settings, seen)
}

/// Runs the loop on a thread until `until` holds (5 s at most), then stops it.
fn run_until(
    registry: &Registry,
    settings: &Settings,
    until: impl Fn() -> bool,
) -> Result<copier::Totals, Error> {
    let stop = Arc::new(AtomicBool::new(false));
    let handle = {
        let (registry, settings, stop) = (registry.clone(), settings.clone(), Arc::clone(&stop));
        std::thread::spawn(move || copier::run(&registry, &settings, &stop))
    };
    let deadline = Instant::now() + Duration::from_secs(5);
    while !until() && !handle.is_finished() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    stop.store(true, Ordering::SeqCst);
    handle.join().unwrap()
}

fn values(seen: &Seen) -> Vec<String> {
    seen.written
        .lock()
        .unwrap()
        .iter()
        .map(|(t, v)| {
            assert_eq!(t, "copy.to");
            String::from_utf8_lossy(v).into_owned()
        })
        .collect()
}

#[test]
fn every_group_is_copied_then_marked_done_and_the_reader_closed() {
    let groups = vec![group(0, 0, &["a", "b"]), group(1, 5, &["c"])];
    let (registry, settings, seen) = setup(groups, 3);
    let totals = run_until(&registry, &settings, || {
        seen.marked.lock().unwrap().len() == 2
    })
    .unwrap();
    assert_eq!(values(&seen), ["a", "b", "c"]);
    assert_eq!(
        *seen.marked.lock().unwrap(),
        ["copy.from:0:0:1", "copy.from:1:5:5"]
    );
    assert_eq!(totals.messages, 3);
    assert_eq!(totals.groups, 2);
    assert!(seen.closed.load(Ordering::SeqCst));
    let opened = seen.opened.lock().unwrap();
    assert_eq!(opened[0].0, ["copy.from"]);
    assert_eq!(
        opened[0].1,
        [("kafka.group.id".to_string(), "copier".to_string())]
    );
}

#[test]
fn a_group_with_a_failed_delivery_is_not_marked_until_written_again_cleanly() {
    let groups = vec![
        group(0, 0, &["ok-1"]),
        group(0, 1, &["x", "bad"]),
        group(0, 3, &["ok-2"]),
    ];
    let (registry, settings, seen) = setup(groups, 3);
    *seen.fail_value.lock().unwrap() = Some((b"bad".to_vec(), 1));
    run_until(&registry, &settings, || {
        seen.marked.lock().unwrap().len() == 3
    })
    .unwrap();
    // The clean groups are marked after the first attempt, the failed one after the second.
    assert_eq!(
        *seen.marked.lock().unwrap(),
        ["copy.from:0:0:0", "copy.from:0:3:3", "copy.from:0:1:2"]
    );
    assert_eq!(values(&seen), ["ok-1", "x", "bad", "ok-2", "x", "bad"]);
}

#[test]
fn a_group_refused_max_attempts_times_is_marked_failed_and_the_copy_goes_on() {
    let groups = vec![
        group(0, 0, &["ok"]),
        group(0, 1, &["bad"]),
        group(0, 2, &["after"]),
    ];
    let (registry, settings, seen) = setup(groups, 2);
    seen.can_fail.store(true, Ordering::SeqCst);
    *seen.fail_value.lock().unwrap() = Some((b"bad".to_vec(), usize::MAX));
    run_until(&registry, &settings, || {
        seen.marked.lock().unwrap().len() == 2 && !seen.failed.lock().unwrap().is_empty()
    })
    .unwrap();
    let failed = seen.failed.lock().unwrap().clone();
    assert_eq!(failed.len(), 1, "{failed:?}");
    assert_eq!(failed[0].0, "copy.from:0:1:1");
    assert_eq!(failed[0].1.as_deref(), Some("copier"));
    assert!(
        failed[0].2.contains("copy.to") && failed[0].2.contains("test failure"),
        "{failed:?}"
    );
    assert_eq!(
        *seen.marked.lock().unwrap(),
        ["copy.from:0:0:0", "copy.from:0:2:2"],
        "the copy went on past the refused group"
    );
}

#[test]
fn after_max_attempts_the_loop_gives_up_naming_the_group_and_never_marks_it() {
    let groups = vec![group(0, 0, &["ok"]), group(0, 1, &["bad"])];
    let (registry, settings, seen) = setup(groups, 2);
    *seen.fail_value.lock().unwrap() = Some((b"bad".to_vec(), 100));
    let err = run_until(&registry, &settings, || false)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("copy.from:0:1:1") && err.contains("2 attempt"),
        "{err}"
    );
    assert_eq!(*seen.marked.lock().unwrap(), ["copy.from:0:0:0"]);
    assert_eq!(values(&seen), ["ok", "bad", "bad"]);
    assert!(seen.closed.load(Ordering::SeqCst));
}

#[test]
fn the_processor_stops_within_the_timeout_and_closes_the_reader() {
    let (registry, settings, seen) = setup(vec![group(0, 0, &["a"])], 3);
    let p = CopyProcessor::new(registry, settings);
    p.start().unwrap();
    assert!(p.start().is_err(), "a second start is refused");
    let deadline = Instant::now() + Duration::from_secs(5);
    while seen.marked.lock().unwrap().is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    let start = Instant::now();
    p.stop(Duration::from_secs(2)).unwrap();
    assert!(
        start.elapsed() < Duration::from_secs(1),
        "{:?}",
        start.elapsed()
    );
    assert!(seen.closed.load(Ordering::SeqCst));
    assert_eq!(*seen.marked.lock().unwrap(), ["copy.from:0:0:0"]);
    // Stopping again is harmless.
    p.stop(Duration::from_secs(1)).unwrap();
}

#[test]
fn a_missing_source_fails_the_thread_with_its_name() {
    let (registry, mut settings, _seen) = setup(vec![], 3);
    settings.source = "nobody.registered.this".into();
    settings.wait = Duration::from_millis(50);
    let stop = AtomicBool::new(false);
    let err = copier::run(&registry, &settings, &stop)
        .unwrap_err()
        .to_string();
    assert!(err.contains("nobody.registered.this"), "{err}");
}
