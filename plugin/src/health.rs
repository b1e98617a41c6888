//! Connection health, for both roles: tells a broker that is down (waited for, as
//! librdkafka does) from a TLS or authentication failure that no retry cures (a wrong
//! CA, a wrong password). [`ConnectFailure`] records the first such failure; once it
//! has persisted `pseidon-kafka.connect-failure-timeout-ms` with no broker answering a
//! probe ([`broker_answers`]), [`ConnectFailure::check`] says so, and the datasink
//! fails its queue, the datasource's `next_group` returns the error. A delivery, a
//! received message, an assignment or an answering broker clears it.

use std::{
    ffi::c_int,
    ptr,
    sync::{
        Mutex, MutexGuard, PoisonError,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use rdkafka::{
    bindings as rdsys,
    error::{KafkaError, RDKafkaErrorCode},
    types::RDKafkaRespErr,
};

/// How long a check waits for a broker to answer before it gives up.
pub(crate) const PROBE_TIMEOUT: Duration = Duration::from_secs(1);
/// How often a tripped [`ConnectFailure`] checks whether a broker answers again.
const PROBE_EVERY: Duration = Duration::from_secs(2);

/// True for the errors that no retry cures: the TLS handshake or the authentication
/// failed (a wrong CA or certificate, a wrong password). A broker that is down
/// (connection refused, transport errors, all brokers down) is not one of them.
pub(crate) fn is_persistent_connect_code(code: RDKafkaErrorCode) -> bool {
    matches!(
        code,
        RDKafkaErrorCode::SSL
            | RDKafkaErrorCode::Authentication
            | RDKafkaErrorCode::SaslAuthenticationFailed
    )
}

/// For a TLS or authentication failure, the text to record and give as the reason
/// (`reason`, librdkafka's own text, must have its secrets blanked out already).
pub(crate) fn connect_failure_text(
    error: &KafkaError,
    reason: &str,
) -> Option<(RDKafkaErrorCode, String)> {
    let code = error
        .rdkafka_error_code()
        .filter(|c| is_persistent_connect_code(*c))?;
    let kind = match code {
        RDKafkaErrorCode::SSL => "TLS failure",
        _ => "authentication failure",
    };
    Some((code, format!("{kind} connecting to the brokers: {reason}")))
}

/// What [`ConnectFailure::check`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ConnectCheck {
    /// No TLS or authentication failure (or the check is disabled).
    Fine,
    /// A failure was recorded; it counts as persistent at this instant.
    Pending(Instant),
    /// The failure persisted and no broker answers: the reason to give.
    Failed {
        /// The failure, secrets blanked out.
        reason: String,
        /// librdkafka's code of the failure.
        code: RDKafkaErrorCode,
        /// True the first time (since the failure was recorded) it is found failed.
        newly: bool,
        /// True if this check asked a broker (and got no answer).
        probed: bool,
    },
}

#[derive(Debug)]
struct Recorded {
    /// librdkafka's error code.
    code: RDKafkaErrorCode,
    /// librdkafka's error text, secrets blanked out.
    text: String,
    since: Instant,
    /// When a check last asked a broker and got no answer (the failure then counts).
    failed_probe: Option<Instant>,
}

/// The first TLS or authentication failure to connect since the last sign of a
/// working connection (a delivery, a received message, a broker answering a check),
/// and whether it has persisted `pseidon-kafka.connect-failure-timeout-ms`.
#[derive(Debug)]
pub(crate) struct ConnectFailure {
    /// `None`: never give up (the setting is 0).
    timeout: Option<Duration>,
    /// Fast path: a failure is recorded.
    recorded: AtomicBool,
    /// Fast path: the failure persisted (writes are refused).
    tripped: AtomicBool,
    state: Mutex<Option<Recorded>>,
}

impl ConnectFailure {
    /// A tracker giving up after `timeout_ms` (0: never).
    pub(crate) fn new(timeout_ms: u64) -> Self {
        ConnectFailure {
            timeout: (timeout_ms > 0).then(|| Duration::from_millis(timeout_ms)),
            recorded: AtomicBool::new(false),
            tripped: AtomicBool::new(false),
            state: Mutex::new(None),
        }
    }

    fn state(&self) -> MutexGuard<'_, Option<Recorded>> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Records a TLS or authentication failure (`text`: secrets already blanked out);
    /// the first one since the connection last worked is kept, with its time.
    pub(crate) fn record(&self, code: RDKafkaErrorCode, text: &str) {
        let mut state = self.state();
        if state.is_none() {
            *state = Some(Recorded {
                code,
                text: text.to_string(),
                since: Instant::now(),
                failed_probe: None,
            });
            self.recorded.store(true, Ordering::Release);
        }
    }

    /// The connection works (a delivery, a message, a broker answered): forgets the
    /// failure. Cheap when none is recorded.
    pub(crate) fn clear(&self) {
        if !self.recorded.load(Ordering::Acquire) {
            return;
        }
        let mut state = self.state();
        if let Some(r) = state.take()
            && self.tripped.load(Ordering::Acquire)
        {
            log::info!(
                "a broker answers again: the earlier connection failure is over ({})",
                r.text
            );
        }
        self.tripped.store(false, Ordering::Release);
        self.recorded.store(false, Ordering::Release);
    }

    /// The recorded failure's text, if one is recorded.
    pub(crate) fn recorded_text(&self) -> Option<String> {
        if !self.recorded.load(Ordering::Acquire) {
            return None;
        }
        self.state().as_ref().map(|r| r.text.clone())
    }

    /// The code and reason to give while the failure counts as persistent (writes
    /// refused).
    pub(crate) fn tripped(&self) -> Option<(RDKafkaErrorCode, String)> {
        if !self.tripped.load(Ordering::Acquire) {
            return None;
        }
        self.state().as_ref().map(|r| (r.code, self.reason(r)))
    }

    fn reason(&self, r: &Recorded) -> String {
        format!(
            "{} (no broker could be connected to for {} s; pseidon-kafka.connect-failure-timeout-ms = {})",
            r.text,
            r.since.elapsed().as_secs(),
            self.timeout.map_or(0, |t| t.as_millis())
        )
    }

    /// Whether a recorded failure has persisted. Once it is due, `probe` (which asks a
    /// broker, waiting at most [`PROBE_TIMEOUT`]) decides: an answer clears it, no
    /// answer makes it count; while it counts, `probe` is asked again every
    /// [`PROBE_EVERY`], so a working connection is noticed even with nothing to send.
    pub(crate) fn check(&self, probe: impl FnOnce() -> bool) -> ConnectCheck {
        let Some(timeout) = self.timeout else {
            return ConnectCheck::Fine;
        };
        if !self.recorded.load(Ordering::Acquire) {
            return ConnectCheck::Fine;
        }
        {
            let state = self.state();
            let Some(r) = state.as_ref() else {
                return ConnectCheck::Fine;
            };
            let due = r.since + timeout;
            if Instant::now() < due {
                return ConnectCheck::Pending(due);
            }
            if let Some(at) = r.failed_probe
                && at.elapsed() < PROBE_EVERY
            {
                return ConnectCheck::Failed {
                    reason: self.reason(r),
                    code: r.code,
                    newly: false,
                    probed: false,
                };
            }
        }
        // Not under the lock: the probe waits, and the callbacks record meanwhile.
        if probe() {
            self.clear();
            return ConnectCheck::Fine;
        }
        let mut state = self.state();
        let Some(r) = state.as_mut() else {
            // Cleared meanwhile (a delivery, a message): the connection works.
            return ConnectCheck::Fine;
        };
        r.failed_probe = Some(Instant::now());
        let newly = !self.tripped.swap(true, Ordering::AcqRel);
        ConnectCheck::Failed {
            reason: self.reason(r),
            code: r.code,
            newly,
            probed: true,
        }
    }
}

/// Asks the brokers for metadata (of the topics the client knows, or none): true if
/// one answers within `timeout`, which takes a working connection (TLS handshake and
/// authentication done).
pub(crate) fn broker_answers(client: *mut rdsys::rd_kafka_t, timeout: Duration) -> bool {
    let mut metadata: *const rdsys::rd_kafka_metadata_t = ptr::null();
    let timeout_ms = c_int::try_from(timeout.as_millis()).unwrap_or(c_int::MAX);
    // SAFETY: a live client; all_topics = 0 and no topic handle: the locally known
    // topics only. On success `metadata` is ours to destroy.
    let code =
        unsafe { rdsys::rd_kafka_metadata(client, 0, ptr::null_mut(), &mut metadata, timeout_ms) };
    if !metadata.is_null() {
        // SAFETY: returned by rd_kafka_metadata, destroyed once.
        unsafe { rdsys::rd_kafka_metadata_destroy(metadata) };
    }
    code == RDKafkaRespErr::RD_KAFKA_RESP_ERR_NO_ERROR
}

#[cfg(test)]
mod tests {
    use std::thread;

    use super::*;

    #[test]
    fn only_tls_and_authentication_errors_count_as_persistent() {
        for code in [
            RDKafkaErrorCode::SSL,
            RDKafkaErrorCode::Authentication,
            RDKafkaErrorCode::SaslAuthenticationFailed,
        ] {
            assert!(is_persistent_connect_code(code));
            assert!(connect_failure_text(&KafkaError::MessageConsumption(code), "x").is_some());
        }
        // A broker that is down: transient, waited for.
        for code in [
            RDKafkaErrorCode::BrokerTransportFailure,
            RDKafkaErrorCode::AllBrokersDown,
            RDKafkaErrorCode::Resolve,
            RDKafkaErrorCode::MessageTimedOut,
            RDKafkaErrorCode::RequestTimedOut,
        ] {
            assert!(!is_persistent_connect_code(code));
            assert!(connect_failure_text(&KafkaError::Global(code), "x").is_none());
            assert_eq!(
                connect_failure_text(&KafkaError::Global(code), "Connection refused"),
                None
            );
        }
        assert_eq!(
            connect_failure_text(
                &KafkaError::Global(RDKafkaErrorCode::SSL),
                "SSL handshake failed: certificate verify failed"
            )
            .map(|(code, text)| (code, text.to_string())),
            Some((
                RDKafkaErrorCode::SSL,
                "TLS failure connecting to the brokers: SSL handshake failed: certificate verify failed"
                    .to_string()
            ))
        );
        assert_eq!(
            connect_failure_text(
                &KafkaError::Global(RDKafkaErrorCode::Authentication),
                "SASL authentication error: Authentication failed"
            )
            .map(|(code, text)| (code, text.to_string())),
            Some((
                RDKafkaErrorCode::Authentication,
                "authentication failure connecting to the brokers: SASL authentication error: Authentication failed"
                    .to_string()
            ))
        );
    }

    #[test]
    fn connect_failure_trips_after_the_timeout_unless_a_broker_answers() {
        let f = ConnectFailure::new(100);
        assert_eq!(
            f.check(|| panic!("no probe without a failure")),
            ConnectCheck::Fine
        );
        f.record(
            RDKafkaErrorCode::SSL,
            "SSL handshake failed: certificate verify failed",
        );
        f.record(RDKafkaErrorCode::SSL, "a later error is not kept");
        assert!(matches!(
            f.check(|| panic!("not due")),
            ConnectCheck::Pending(_)
        ));
        assert_eq!(f.tripped(), None);
        thread::sleep(Duration::from_millis(120));
        // Due, but a broker answers: it was stale.
        assert_eq!(f.check(|| true), ConnectCheck::Fine);
        assert_eq!(f.recorded_text(), None);
        f.record(
            RDKafkaErrorCode::SSL,
            "SSL handshake failed: certificate verify failed",
        );
        thread::sleep(Duration::from_millis(120));
        let ConnectCheck::Failed {
            reason,
            code: RDKafkaErrorCode::SSL,
            newly: true,
            probed: true,
        } = f.check(|| false)
        else {
            panic!("not failed");
        };
        assert!(reason.starts_with("SSL handshake failed: certificate verify failed"));
        assert!(
            reason.contains("connect-failure-timeout-ms = 100"),
            "{reason}"
        );
        assert!(f.tripped().is_some());
        // Asked again only every PROBE_EVERY.
        assert!(matches!(
            f.check(|| panic!("probed too soon")),
            ConnectCheck::Failed {
                newly: false,
                probed: false,
                ..
            }
        ));
        f.clear();
        assert_eq!(f.tripped(), None);
        assert_eq!(f.check(|| panic!("cleared")), ConnectCheck::Fine);
        // 0 disables it.
        let off = ConnectFailure::new(0);
        off.record(RDKafkaErrorCode::SSL, "Authentication failed");
        assert_eq!(off.check(|| panic!("disabled")), ConnectCheck::Fine);
    }
}
