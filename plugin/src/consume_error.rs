//! Consume errors: which of the errors librdkafka's consumers return from `poll` the
//! datasource gives up on, and when ([`ConsumeErrors`]).
//!
//! librdkafka reports a message batch it cannot decode (a decompression failure, a
//! codec or message format this build lacks, a corrupt batch) as one error and then
//! **skips the batch**: the next message polled from that partition lies after it.
//! Reading on would hand out the later messages and, once they are done, let the
//! done-watermark pass the undecodable ones: loss without a word. Such a *data* error
//! (and a fatal error of the client) is therefore given up on at once: `next_group`
//! returns it, and every later call returns it again (the reader is failed; a new
//! reader starts from the committed offsets, before the batch, and fails the same way
//! until an operator acts, see docs/rel-codecs.md).
//!
//! A *permanent* error (authorization refused, a message larger than the fetch limits,
//! a consumer group the broker rejects) does not go away by itself; librdkafka keeps
//! retrying or waits. It is logged at once and given up on when it was first seen
//! `pseidon-kafka.consume-error-timeout-ms` ago (0: at once). A message received does
//! not clear it: librdkafka's error does not say which partition it concerns, and a
//! message of another partition proves nothing about the stuck one; a loud failure
//! beats a silent stall.
//!
//! Every other error (a broker down, a leader moving, a topic not created yet) is
//! transient: logged, and librdkafka retries.

use std::{
    sync::Mutex,
    time::{Duration, Instant},
};

use pseidon_plugin_api::Error;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};

/// How the datasource treats an error polled from a consumer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Data librdkafka cannot decode and skips: given up on at once.
    Data,
    /// The client instance is unusable: given up on at once.
    Fatal,
    /// Does not go away by itself: given up on after the timeout.
    Permanent,
    /// Retried by librdkafka: logged only.
    Transient,
}

/// Classifies an error returned by a consumer's `poll`.
pub fn classify(e: &KafkaError) -> Kind {
    if matches!(e, KafkaError::MessageConsumptionFatal(_)) {
        return Kind::Fatal;
    }
    if matches!(e, KafkaError::PartitionEOF(_)) {
        return Kind::Transient;
    }
    match e.rdkafka_error_code() {
        Some(code) => classify_code(code),
        None => Kind::Transient,
    }
}

/// Classifies one of librdkafka's error codes (see [`classify`]).
pub fn classify_code(code: RDKafkaErrorCode) -> Kind {
    use RDKafkaErrorCode as C;
    match code {
        // librdkafka skips the batch after reporting these.
        C::BadCompression | C::NotImplemented | C::BadMessage | C::InvalidMessage => Kind::Data,
        C::Fatal => Kind::Fatal,
        C::TopicAuthorizationFailed
        | C::GroupAuthorizationFailed
        | C::ClusterAuthorizationFailed
        | C::MessageSizeTooLarge
        | C::UnsupportedCompressionType
        | C::UnsupportedVersion
        | C::UnsupportedForMessageFormat
        | C::InconsistentGroupProtocol
        | C::InvalidGroupId
        | C::InvalidSessionTimeout
        | C::GroupMaxSizeReached
        | C::FencedInstanceId
        | C::AutoOffsetReset => Kind::Permanent,
        _ => Kind::Transient,
    }
}

/// What the caller does with an error it polled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Log it and poll on.
    Continue,
    /// Give up: return this failure (`next_group` fails with it).
    GiveUp(Failure),
}

/// An error given up on: librdkafka's code (when the error had one) and the reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// librdkafka's error code.
    pub code: Option<RDKafkaErrorCode>,
    /// What failed, in words.
    pub reason: String,
}

/// The consume errors one consumer has seen, and whether it gave up.
#[derive(Debug)]
pub struct ConsumeErrors {
    timeout: Duration,
    /// The first permanent error not given up on yet: when, its code and text.
    pending: Option<(Instant, Option<RDKafkaErrorCode>, String)>,
    /// The failure given up with: every later check returns it again.
    failed: Option<Failure>,
}

impl ConsumeErrors {
    /// Gives up on a permanent error after `timeout_ms` (0: at once).
    pub fn new(timeout_ms: u64) -> Self {
        ConsumeErrors {
            timeout: Duration::from_millis(timeout_ms),
            pending: None,
            failed: None,
        }
    }

    /// An error `e` polled at `now` while `what` (e.g. `reading ["t"]`, `replay of group
    /// t:0:0:9`); `detail` is librdkafka's text of it (the error event's string: it names
    /// the offset of an undecodable batch), where the consumer's context caught it.
    pub fn on_error(
        &mut self,
        e: &KafkaError,
        detail: Option<String>,
        what: &str,
        now: Instant,
    ) -> Verdict {
        if let Some(failure) = &self.failed {
            return Verdict::GiveUp(failure.clone());
        }
        let rd_code = e.rdkafka_error_code();
        let name = rd_code.map_or_else(|| "-".to_string(), |c| format!("{c:?}"));
        let code = match detail.as_deref().map(str::trim).filter(|d| !d.is_empty()) {
            Some(d) => format!("{name}: {d}"),
            None => format!("{name}: {e}"),
        };
        match classify(e) {
            // Logged by the caller, rate-limited (a broker that is down repeats them).
            Kind::Transient => Verdict::Continue,
            Kind::Data => self.fail(
                what,
                rd_code,
                format!(
                    "librdkafka cannot decode a message batch ({code}): it is corrupt, or uses a \
                     codec or format this build lacks; librdkafka would skip it, so the reader \
                     stops before it and commits no offset past it"
                ),
            ),
            Kind::Fatal => self.fail(what, rd_code, format!("a fatal librdkafka error ({code})")),
            Kind::Permanent => {
                let text = code;
                log::error!(
                    "{what}: {text}; this does not clear by itself: the reader gives up if it is \
                     not fixed within pseidon-kafka.consume-error-timeout-ms ({} ms)",
                    self.timeout.as_millis()
                );
                if self.pending.is_none() {
                    self.pending = Some((now, rd_code, text));
                }
                self.check(what, now)
            }
        }
    }

    /// Whether a pending permanent error is due at `now`.
    pub fn check(&mut self, what: &str, now: Instant) -> Verdict {
        if let Some(failure) = &self.failed {
            return Verdict::GiveUp(failure.clone());
        }
        match &self.pending {
            Some((first, code, text)) if now.duration_since(*first) >= self.timeout => {
                let reason = format!(
                    "{text}, first seen {} ms ago (pseidon-kafka.consume-error-timeout-ms is {})",
                    now.duration_since(*first).as_millis(),
                    self.timeout.as_millis()
                );
                self.fail(what, *code, reason)
            }
            _ => Verdict::Continue,
        }
    }

    /// When the pending permanent error is due, if there is one.
    pub fn due(&self) -> Option<Instant> {
        self.pending
            .as_ref()
            .map(|(first, _, _)| *first + self.timeout)
    }

    /// [`on_error`](Self::on_error) now, as `next_group`'s error; `what` names what is
    /// read (`reading ["t"]`, `replay of group t:0:0:9`), `detail` as in `on_error`.
    pub fn poll_error(
        &mut self,
        e: &KafkaError,
        detail: Option<String>,
        what: impl FnOnce() -> String,
    ) -> Result<(), Error> {
        let what = what();
        as_result(self.on_error(e, detail, &what, Instant::now()), &what)
    }

    /// [`check`](Self::check) now, as `next_group`'s error (`what` as in
    /// [`poll_error`](Self::poll_error)); cheap while no permanent error was seen.
    pub fn check_due(&mut self, what: impl FnOnce() -> String) -> Result<(), Error> {
        if self.pending.is_none() && self.failed.is_none() {
            return Ok(());
        }
        let what = what();
        as_result(self.check(&what, Instant::now()), &what)
    }

    fn fail(&mut self, what: &str, code: Option<RDKafkaErrorCode>, reason: String) -> Verdict {
        log::error!("{what}: {reason}");
        let failure = Failure { code, reason };
        self.failed = Some(failure.clone());
        self.pending = None;
        Verdict::GiveUp(failure)
    }
}

/// True for the errors librdkafka retries by itself (logged by the caller, not counted).
pub fn is_transient(e: &KafkaError) -> bool {
    matches!(classify(e), Kind::Transient)
}

fn as_result(v: Verdict, what: &str) -> Result<(), Error> {
    match v {
        Verdict::Continue => Ok(()),
        // Given up on: a data, fatal or permanent error, none of which a retry cures.
        Verdict::GiveUp(Failure { code, reason }) => Err(Error::Kafka {
            operation: what.to_string(),
            reason,
            code: code.map(|c| c as i32),
            retriable: false,
        }),
    }
}

/// librdkafka's text of the last error event, caught by a consumer's context
/// (`ClientContext::error` runs for the very event `poll` then returns as an error,
/// which keeps only the code).
#[derive(Debug, Default)]
pub struct ErrorText(Mutex<Option<String>>);

impl ErrorText {
    /// Keeps `text` (the context's `error` callback).
    pub fn set(&self, text: &str) {
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) = Some(text.to_string());
    }

    /// The text kept, taken.
    pub fn take(&self) -> Option<String> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).take()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// librdkafka's `builtin.features` of this build (codecs, SASL mechanisms, ...).
    fn builtin_features() -> Option<String> {
        rdkafka::ClientConfig::new()
            .create_native_config()
            .ok()?
            .get("builtin.features")
            .ok()
    }

    fn consumption(code: RDKafkaErrorCode) -> KafkaError {
        KafkaError::MessageConsumption(code)
    }

    #[test]
    fn every_codec_is_built_in() {
        let features = builtin_features().expect("builtin.features");
        println!("librdkafka builtin.features: {features}");
        let have: Vec<&str> = features.split(',').collect();
        for codec in ["gzip", "snappy", "lz4", "zstd"] {
            assert!(have.contains(&codec), "{codec} missing from {features}");
        }
    }

    /// Every SASL mechanism a user's cluster may ask for, and OAUTHBEARER's OIDC token
    /// fetching (libcurl): librdkafka built with Cyrus SASL/MIT Kerberos and libcurl.
    #[test]
    fn every_sasl_mechanism_is_built_in() {
        let features = builtin_features().expect("builtin.features");
        let have: Vec<&str> = features.split(',').collect();
        for f in [
            "sasl",
            "sasl_plain",
            "sasl_scram",
            "sasl_oauthbearer",
            "sasl_gssapi",
            "oidc",
        ] {
            assert!(have.contains(&f), "{f} missing from {features}");
        }
    }

    #[test]
    fn classification_keeps_the_code_apart() {
        use RDKafkaErrorCode as C;
        for c in [C::BadCompression, C::NotImplemented, C::BadMessage] {
            assert_eq!(classify(&consumption(c)), Kind::Data, "{c:?}");
        }
        for c in [
            C::TopicAuthorizationFailed,
            C::GroupAuthorizationFailed,
            C::MessageSizeTooLarge,
            C::AutoOffsetReset,
        ] {
            assert_eq!(classify(&consumption(c)), Kind::Permanent, "{c:?}");
        }
        for c in [
            C::AllBrokersDown,
            C::BrokerTransportFailure,
            C::UnknownTopicOrPartition,
            C::NotLeaderForPartition,
            C::RequestTimedOut,
        ] {
            assert_eq!(classify(&consumption(c)), Kind::Transient, "{c:?}");
        }
        assert_eq!(
            classify(&KafkaError::MessageConsumptionFatal(
                C::OutOfOrderSequenceNumber
            )),
            Kind::Fatal
        );
        assert_eq!(classify(&KafkaError::PartitionEOF(0)), Kind::Transient);
    }

    #[test]
    fn a_data_error_gives_up_at_once_and_stays_failed() {
        let mut errs = ConsumeErrors::new(60_000);
        let now = Instant::now();
        let v = errs.on_error(
            &consumption(RDKafkaErrorCode::BadCompression),
            Some("Decompression (codec 0x1) of message at 10 of 40 bytes failed".into()),
            "reading [\"t\"]",
            now,
        );
        let Verdict::GiveUp(failure) = v else {
            panic!("{v:?}")
        };
        assert_eq!(failure.code, Some(RDKafkaErrorCode::BadCompression));
        let reason = &failure.reason;
        assert!(reason.contains("BadCompression"), "{reason}");
        assert!(reason.contains("message at 10"), "{reason}");
        // Sticky: a later transient error or a check still fails with the same reason.
        assert_eq!(
            errs.on_error(
                &consumption(RDKafkaErrorCode::BrokerTransportFailure),
                None,
                "x",
                now
            ),
            Verdict::GiveUp(failure.clone())
        );
        assert_eq!(errs.check("x", now), Verdict::GiveUp(failure.clone()));
        assert_eq!(errs.failed.as_ref(), Some(&failure));
    }

    #[test]
    fn a_permanent_error_gives_up_after_the_timeout_only() {
        let mut errs = ConsumeErrors::new(1000);
        let t0 = Instant::now();
        let e = consumption(RDKafkaErrorCode::TopicAuthorizationFailed);
        assert_eq!(errs.on_error(&e, None, "t", t0), Verdict::Continue);
        assert_eq!(errs.due(), Some(t0 + Duration::from_millis(1000)));
        // Repeats do not restart the clock.
        let t1 = t0 + Duration::from_millis(600);
        assert_eq!(errs.on_error(&e, None, "t", t1), Verdict::Continue);
        assert_eq!(
            errs.check("topics [\"t\"]", t0 + Duration::from_millis(999)),
            Verdict::Continue
        );
        let Verdict::GiveUp(Failure { code, reason }) =
            errs.check("topics [\"t\"]", t0 + Duration::from_millis(1000))
        else {
            panic!("not given up at the timeout")
        };
        assert_eq!(code, Some(RDKafkaErrorCode::TopicAuthorizationFailed));
        assert!(reason.contains("TopicAuthorizationFailed"), "{reason}");
        assert!(reason.contains("consume-error-timeout-ms"), "{reason}");
        assert!(errs.due().is_none());
    }

    #[test]
    fn timeout_zero_gives_up_at_once_and_transients_never() {
        let mut errs = ConsumeErrors::new(0);
        let now = Instant::now();
        for _ in 0..100 {
            assert_eq!(
                errs.on_error(
                    &consumption(RDKafkaErrorCode::AllBrokersDown),
                    None,
                    "t",
                    now
                ),
                Verdict::Continue
            );
        }
        assert!(errs.due().is_none());
        assert!(matches!(
            errs.on_error(
                &consumption(RDKafkaErrorCode::GroupAuthorizationFailed),
                None,
                "t",
                now
            ),
            Verdict::GiveUp(_)
        ));
    }
}
