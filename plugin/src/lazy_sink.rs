//! The datasink as registered at `init`: the [`KafkaSink`] (its librdkafka producer,
//! which connects to the cluster at once) is created at the first write, not at load.
//! A process that only reads the status database (`pseidon groups`) or asks the cluster
//! through the datasource (`pseidon metadata`) then opens no producer connection and
//! prints none of its librdkafka complaints about a broker it does not need.
//!
//! The conf is still checked with librdkafka at `init` (the plugin's `init`); what only
//! creating the producer finds (e.g. a certificate file that cannot be read) is the
//! error of the first write, and of every later one. A flush before any write reports
//! nothing; `shutdown` before any write creates nothing, and later writes are refused
//! as after any shutdown.
//!
//! Transactions (issue 17): with `kafka.transactional.id` in the conf the producer is
//! created transactional (at the first write or `begin_transaction`); without it, a
//! `begin_transaction` before any write creates it transactional with the derived id
//! [`derived_transactional_id`] (the datasource's one consumer group and cluster). A
//! sink already written to without transactions refuses `begin_transaction`.

use std::{
    sync::{Mutex, PoisonError},
    time::Duration,
};

use pseidon_plugin_api::{DataSink, DeliveryId, Error, FlushReport, Record};

use crate::{
    config::Config,
    producer::KafkaSink,
    source::{KafkaSource, WeakSource},
};

enum State {
    /// Not written to yet.
    Idle(Box<Config>),
    /// The producer, created at the first write.
    Open(KafkaSink),
    /// Creating the producer failed: every write fails alike.
    Failed(Error),
    /// Shut down before any write.
    Closed,
}

/// The registered datasink (module docs). Cheap to clone.
#[derive(Clone)]
pub(crate) struct LazySink {
    state: std::sync::Arc<Mutex<State>>,
    /// The producer once [`State::Open`] (it stays open for good): writes take it
    /// from here without the mutex.
    open: std::sync::Arc<std::sync::OnceLock<KafkaSink>>,
    /// The plugin's datasource: the readers a transactional commit finds its groups in.
    /// Weak: the source holds this sink (dead letters); see [`WeakSource`].
    source: std::sync::Arc<std::sync::OnceLock<WeakSource>>,
    /// The registry name (`Config::sink_name`), for errors.
    name: std::sync::Arc<str>,
}

/// How long the producer's transactions may take to initialise when the first write
/// (not `begin_transaction`, which brings its own timeout) creates it.
const INIT_TIMEOUT: Duration = Duration::from_secs(30);

/// The derived transactional id: `pseidon-<consumer group>-<first 12 hex digits of
/// sha256(status-db path + cluster id)>`, stable per instance (one instance per status
/// database: a file lock), so a restart fences its predecessor (docs/DESIGN-group-states.md).
pub(crate) fn derived_transactional_id(
    status_db: &std::path::Path,
    scope: &crate::store::Scope,
) -> String {
    let path = std::fs::canonicalize(status_db).unwrap_or_else(|_| status_db.to_path_buf());
    let mut input = path.to_string_lossy().into_owned().into_bytes();
    input.extend_from_slice(scope.cluster_id.as_bytes());
    let digest = crate::sha256::hex(&input);
    format!("pseidon-{}-{}", scope.consumer_group, &digest[..12])
}

impl LazySink {
    /// A sink for `config`; nothing is created yet.
    pub(crate) fn new(config: &Config) -> Self {
        LazySink {
            state: std::sync::Arc::new(Mutex::new(State::Idle(Box::new(config.clone())))),
            open: std::sync::Arc::new(std::sync::OnceLock::new()),
            source: std::sync::Arc::new(std::sync::OnceLock::new()),
            name: config.sink_name().into(),
        }
    }

    /// The plugin's datasource, for transactional commits (set once at init).
    pub(crate) fn attach_source(&self, source: KafkaSource) {
        let _ = self.source.set(source.downgrade());
    }

    /// The transactional sink, created now (with `timeout` for `init_transactions`) if
    /// this is the first use.
    fn txn_sink(&self, timeout: Duration) -> Result<KafkaSink, Error> {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let id = match &*state {
            State::Open(s) => return Ok(s.clone()),
            State::Failed(e) => return Err(e.clone()),
            State::Closed => {
                return Err(Error::Closed {
                    what: format!("the datasink {}", self.name),
                });
            }
            State::Idle(config) => match config.kafka_prop("transactional.id") {
                Some(id) if !id.trim().is_empty() => id.to_string(),
                _ => {
                    let source =
                        self.source
                            .get()
                            .and_then(WeakSource::upgrade)
                            .ok_or_else(|| {
                                Error::config(
                                    "kafka.transactional.id",
                                    "no datasource to derive a transactional id from: set it",
                                )
                            })?;
                    let scope = source.txn_scope()?;
                    derived_transactional_id(&config.settings.status_db, &scope)
                }
            },
        };
        let State::Idle(config) = std::mem::replace(&mut *state, State::Closed) else {
            unreachable!("matched above");
        };
        match KafkaSink::new_transactional(&config, &id, timeout) {
            Ok(s) => {
                *state = State::Open(s.clone());
                let _ = self.open.set(s.clone());
                Ok(s)
            }
            Err(e) => {
                *state = State::Failed(e.clone());
                Err(e)
            }
        }
    }

    /// The producer's sink, created now if this is the first use.
    fn sink(&self) -> Result<KafkaSink, Error> {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        match &*state {
            State::Open(s) => return Ok(s.clone()),
            State::Failed(e) => return Err(e.clone()),
            State::Closed => {
                return Err(Error::Closed {
                    what: format!("the datasink {}", self.name),
                });
            }
            State::Idle(config) => {
                if config
                    .kafka_prop("transactional.id")
                    .is_some_and(|id| !id.trim().is_empty())
                {
                    drop(state);
                    return self.txn_sink(INIT_TIMEOUT);
                }
            }
        }
        let State::Idle(config) = std::mem::replace(&mut *state, State::Closed) else {
            unreachable!("matched above");
        };
        match KafkaSink::new(&config) {
            Ok(s) => {
                *state = State::Open(s.clone());
                let _ = self.open.set(s.clone());
                Ok(s)
            }
            Err(e) => {
                *state = State::Failed(e.clone());
                Err(e)
            }
        }
    }

    /// Runs `f` on the producer's sink, created now if this is the first use.
    fn with_sink<R>(&self, f: impl FnOnce(&KafkaSink) -> R) -> Result<R, Error> {
        match self.open.get() {
            Some(s) => Ok(f(s)),
            None => Ok(f(&self.sink()?)),
        }
    }

    /// The sink if it was created.
    pub(crate) fn opened(&self) -> Option<KafkaSink> {
        match &*self.state.lock().unwrap_or_else(PoisonError::into_inner) {
            State::Open(s) => Some(s.clone()),
            _ => None,
        }
    }

    /// Shuts the producer down if there is one ([`KafkaSink::shutdown`]); later writes
    /// are refused either way.
    pub(crate) fn shutdown(&self, timeout: Duration) -> Result<(), Error> {
        let sink = {
            let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
            match &*state {
                State::Open(s) => Some(s.clone()),
                _ => {
                    *state = State::Closed;
                    None
                }
            }
        };
        match sink {
            Some(s) => s.shutdown(timeout),
            None => Ok(()),
        }
    }
}

impl DataSink for LazySink {
    fn write_batch(
        &self,
        records: &[Record<'_>],
        first_id: DeliveryId,
    ) -> Result<(), (u64, Error)> {
        self.with_sink(|s| s.write_batch(records, first_id))
            .map_err(|e| (0, e))?
    }

    fn flush(&self, timeout: Duration) -> Result<FlushReport, Error> {
        match self.opened() {
            Some(s) => s.flush(timeout),
            None => Ok(FlushReport::default()),
        }
    }

    fn write_batch_ticketed(
        &self,
        records: &[Record<'_>],
        first_id: DeliveryId,
    ) -> Result<(), (u64, Error)> {
        self.with_sink(|s| s.write_batch_ticketed(records, first_id))
            .map_err(|e| (0, e))?
    }

    fn flush_ticket(&self, first_id: DeliveryId, timeout: Duration) -> Result<FlushReport, Error> {
        match self.opened() {
            Some(s) => s.flush_ticket(first_id, timeout),
            // No write yet, so no ticket was ever opened.
            None => Err(Error::other(format!(
                "flush ticket {first_id} of the datasink {} is not open (nothing was written)",
                self.name
            ))),
        }
    }

    fn release_ticket(&self, first_id: DeliveryId) {
        if let Some(s) = self.opened() {
            s.release_ticket(first_id);
        }
    }

    fn write_batch_timestamped(
        &self,
        records: &[Record<'_>],
        timestamps_ms: &[i64],
        first_id: DeliveryId,
        ticketed: bool,
    ) -> Result<(), (u64, Error)> {
        self.with_sink(|s| s.write_batch_timestamped(records, timestamps_ms, first_id, ticketed))
            .map_err(|e| (0, e))?
    }

    fn begin_transaction(&self, timeout: Duration) -> Result<(), Error> {
        self.txn_sink(timeout)?.txn_begin()
    }

    fn abort_transaction(&self, timeout: Duration) -> Result<(), Error> {
        match self.opened() {
            Some(s) => s.txn_abort(timeout),
            None => Err(Error::other(
                "no transaction is open: the datasink was not used yet",
            )),
        }
    }

    fn commit_transaction(&self, group_ids: &[String], timeout: Duration) -> Result<(), Error> {
        let Some(sink) = self.opened() else {
            return Err(Error::other(
                "no transaction is open: the datasink was not used yet",
            ));
        };
        let Some(txn) = sink.transactional_id().map(str::to_string) else {
            return Err(Error::other(
                "the datasink is not transactional (written to before begin_transaction, \
                 and kafka.transactional.id is not set)",
            ));
        };
        if group_ids.is_empty() {
            return sink.txn_commit(None, timeout);
        }
        let source = self
            .source
            .get()
            .and_then(WeakSource::upgrade)
            .ok_or_else(|| Error::other("the datasink has no datasource to commit groups in"))?;
        let plan = match source.txn_prepare(group_ids, &txn) {
            Ok(p) => p,
            Err(e) => {
                let _ = sink.txn_abort(timeout);
                return Err(e);
            }
        };
        sink.txn_commit(Some(&plan), timeout)?;
        // Committed in Kafka: a crash from here on is recognised at restart (the rows
        // carry `txn`, the committed offsets are past them).
        source.txn_done(&plan.rows)
    }
}

#[cfg(test)]
mod tests {
    use pseidon_plugin_api::{ConfEntry, ConfKind, ConfView};

    use super::*;

    fn config() -> Config {
        let conf = ConfView::new(vec![ConfEntry {
            key: "kafka.bootstrap.servers".into(),
            kind: ConfKind::String,
            value: "127.0.0.1:1".into(),
        }]);
        Config::parse(&conf).unwrap()
    }

    #[test]
    fn nothing_is_created_before_the_first_write_and_shutdown_closes_it() {
        let sink = LazySink::new(&config());
        assert!(sink.opened().is_none());
        assert_eq!(
            sink.flush(Duration::from_millis(1)).unwrap(),
            FlushReport::default()
        );
        assert!(sink.opened().is_none(), "a flush creates nothing");
        sink.shutdown(Duration::from_millis(1)).unwrap();
        let err = sink.write_batch(&[Record::new("t", b"x")], 0).unwrap_err();
        assert_eq!(err.0, 0);
        assert!(matches!(err.1, Error::Closed { .. }), "{:?}", err.1);
        assert!(sink.opened().is_none());
    }

    #[test]
    fn the_first_write_creates_the_producer_once() {
        let sink = LazySink::new(&config());
        sink.write_batch(&[Record::new("t", b"x")], 0).unwrap();
        let first = sink.opened().expect("created by the write");
        sink.write_batch(&[Record::new("t", b"y")], 1).unwrap();
        let again = sink.opened().expect("still there");
        assert_eq!(first.max_message_bytes(), again.max_message_bytes());
        // Undeliverable (no broker): purged at shutdown, which reports them.
        assert!(sink.shutdown(Duration::from_millis(100)).is_err());
    }
}
