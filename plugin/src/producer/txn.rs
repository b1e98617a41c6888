//! Kafka transactions of the datasink (issue 17): a sink created with a
//! `transactional.id` ([`KafkaSink::new_transactional`], `init_transactions` bounded by
//! a timeout, so a transaction coordinator that cannot work — a transaction log with
//! more replicas than brokers, a missing `TransactionalId` ACL — is an error at start,
//! not a hang), and begin / abort / commit. A commit with message groups sends their
//! consumer groups' watermarks inside the transaction (`send_offsets_to_transaction`
//! with each reader's group metadata, KIP-447) before `commit_transaction`.
//!
//! Errors keep librdkafka's code: a fenced producer (another instance with the same
//! transactional id took over) is `_FENCED` / `PRODUCER_FENCED` / `INVALID_PRODUCER_EPOCH`,
//! and is fatal: no transaction can follow on this sink. An abortable error is aborted
//! here before it is returned, so the next `begin` can follow.

use std::{sync::PoisonError, time::Duration};

use pseidon_plugin_api::Error;
use rdkafka::{
    error::{KafkaError, RDKafkaErrorCode},
    producer::Producer,
};

use super::sink::KafkaSink;
use crate::{
    config::Config,
    source::{TxnGroup, TxnPlan},
};

/// True for librdkafka's codes of a fenced producer.
pub fn is_fenced_code(code: i32) -> bool {
    [
        RDKafkaErrorCode::Fenced as i32,
        RDKafkaErrorCode::ProducerFenced as i32,
        RDKafkaErrorCode::InvalidProducerEpoch as i32,
    ]
    .contains(&code)
}

/// A transaction call's failure as the interface's error, naming the operation and
/// saying what it means for the caller.
fn txn_err(operation: &str, transactional_id: &str, e: &KafkaError) -> Error {
    let (code, fatal, abortable) = match e {
        KafkaError::Transaction(t) => (Some(t.code()), t.is_fatal(), t.txn_requires_abort()),
        other => (other.rdkafka_error_code(), false, false),
    };
    let fenced = code.is_some_and(|c| is_fenced_code(c as i32));
    let hint = if fenced {
        format!(
            ": this producer was fenced (another instance with transactional id \
             `{transactional_id}` took over); it must stop, its open transaction is aborted"
        )
    } else if matches!(
        code,
        Some(RDKafkaErrorCode::TransactionalIdAuthorizationFailed)
    ) {
        format!(
            ": the principal may not use transactional id `{transactional_id}` (grant a \
             TransactionalId ACL, Write and Describe)"
        )
    } else if fatal {
        ": a fatal producer error; no transaction can follow".into()
    } else if abortable {
        ": the transaction was aborted".into()
    } else {
        String::new()
    };
    Error::Kafka {
        operation: format!("{operation} (transactional id `{transactional_id}`)"),
        reason: format!("{e}{hint}"),
        code: code.map(|c| c as i32),
        retriable: !fatal && !fenced && code.is_some_and(crate::error::is_retriable_code),
    }
}

impl KafkaSink {
    /// A transactional sink: the producer with `transactional.id`, its transactions
    /// initialised within `timeout` (previous transactions of the id are fenced and
    /// aborted by the broker).
    pub(crate) fn new_transactional(
        config: &Config,
        transactional_id: &str,
        timeout: Duration,
    ) -> Result<KafkaSink, Error> {
        let overrides = [(
            "kafka.transactional.id".to_string(),
            transactional_id.to_string(),
        )];
        let sink = KafkaSink::with_overrides(config, &overrides)?;
        sink.shared
            .txn_id
            .get_or_init(|| transactional_id.to_string());
        let producer = sink.producer()?;
        if let Err(e) = producer.init_transactions(timeout) {
            let mut err = txn_err("initialise transactions", transactional_id, &e);
            if let Error::Kafka { reason, .. } = &mut err
                && matches!(
                    e.rdkafka_error_code(),
                    Some(RDKafkaErrorCode::MessageTimedOut | RDKafkaErrorCode::OperationTimedOut)
                        | Some(RDKafkaErrorCode::CoordinatorNotAvailable)
                )
            {
                reason.push_str(&format!(
                    " (no transaction coordinator answered within {} ms: is the broker's \
                     transaction log available — transaction.state.log.replication.factor \
                     and transaction.state.log.min.isr no larger than the brokers up?)",
                    timeout.as_millis()
                ));
            }
            let _ = sink.shutdown(Duration::from_secs(1));
            return Err(err);
        }
        log::info!("datasink: transactions initialised (transactional id `{transactional_id}`)");
        Ok(sink)
    }

    /// The transactional id, if the sink is transactional.
    pub(crate) fn transactional_id(&self) -> Option<&str> {
        self.shared.txn_id.get().map(String::as_str)
    }

    fn producer(&self) -> Result<std::sync::Arc<super::context::KafkaProducer>, Error> {
        self.shared
            .active
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .as_ref()
            .map(|a| std::sync::Arc::clone(a.producer()))
            .ok_or_else(|| Error::Closed {
                what: format!("the datasink {}", self.shared.name),
            })
    }

    fn txn_id_or_err(&self) -> Result<&str, Error> {
        self.transactional_id().ok_or_else(|| {
            Error::other(
                "the datasink was opened without transactions (it was written to before \
                 the first begin_transaction, and kafka.transactional.id is not set)",
            )
        })
    }

    /// Begins a transaction.
    pub(crate) fn txn_begin(&self) -> Result<(), Error> {
        let id = self.txn_id_or_err()?;
        self.producer()?
            .begin_transaction()
            .map_err(|e| txn_err("begin a transaction", id, &e))
    }

    /// Aborts the open transaction.
    pub(crate) fn txn_abort(&self, timeout: Duration) -> Result<(), Error> {
        let id = self.txn_id_or_err()?;
        self.producer()?
            .abort_transaction(timeout)
            .map_err(|e| txn_err("abort a transaction", id, &e))
    }

    /// Sends `plan`'s offsets within the open transaction and commits it. On an
    /// abortable failure the transaction is aborted before the error returns.
    pub(crate) fn txn_commit(
        &self,
        plan: Option<&TxnPlan>,
        timeout: Duration,
    ) -> Result<(), Error> {
        let id = self.txn_id_or_err()?;
        let producer = self.producer()?;
        let abort_on = |e: KafkaError, what: &str| -> Error {
            let err = txn_err(what, id, &e);
            if let KafkaError::Transaction(t) = &e
                && t.txn_requires_abort()
                && let Err(a) = producer.abort_transaction(timeout)
            {
                log::warn!("aborting the failed transaction of `{id}`: {a}");
            }
            err
        };
        if let Some(plan) = plan {
            for (group, offsets) in &plan.offsets {
                if offsets.count() == 0 {
                    continue;
                }
                const WHAT: &str = "send the groups' offsets to the transaction";
                match group {
                    TxnGroup::Joined(cgm) => producer
                        .send_offsets_to_transaction(offsets, cgm, timeout)
                        .map_err(|e| abort_on(e, WHAT))?,
                    TxnGroup::GroupOnly(g) => {
                        let ms = i32::try_from(timeout.as_millis()).unwrap_or(i32::MAX);
                        if let Err(f) =
                            super::raw::send_offsets_group_only(&producer, offsets, g, ms)
                        {
                            if f.abortable
                                && let Err(a) = producer.abort_transaction(timeout)
                            {
                                log::warn!("aborting the failed transaction of `{id}`: {a}");
                            }
                            let fenced = is_fenced_code(f.code as i32);
                            return Err(Error::Kafka {
                                operation: format!("{WHAT} (transactional id `{id}`)"),
                                reason: format!(
                                    "{}{}",
                                    f.text,
                                    if fenced {
                                        ": this producer was fenced (another instance with the same transactional id took over)"
                                    } else if f.abortable {
                                        ": the transaction was aborted"
                                    } else {
                                        ""
                                    }
                                ),
                                code: Some(f.code as i32),
                                retriable: !f.fatal
                                    && !fenced
                                    && crate::error::is_retriable_code(f.code),
                            });
                        }
                    }
                }
            }
        }
        producer
            .commit_transaction(timeout)
            .map_err(|e| abort_on(e, "commit a transaction"))
    }
}
