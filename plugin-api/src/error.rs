//! Errors of the plugin interface, as Rust sees them ([`Error`]) and as they cross
//! the plugin boundary ([`FfiError`](crate::ffi::FfiError)).

use std::time::Duration;

/// Everything that can fail across the plugin boundary, one variant per failed operation.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// `reg_get_wait` timed out: nothing registered `name` within `waited`.
    #[error("no plugin registered `{name}` within {} ms", waited.as_millis())]
    NotRegistered {
        /// The name that was looked up.
        name: String,
        /// How long the lookup waited.
        waited: Duration,
    },
    /// `register` found the name taken.
    #[error("`{name}` is already registered by {owner}; {new_owner} tried to register it again")]
    AlreadyRegistered {
        /// The contested name.
        name: String,
        /// Who registered it first.
        owner: String,
        /// Who tried to register it again.
        new_owner: String,
    },
    /// The name is registered, but as another kind of entry than asked for.
    #[error("`{name}` is registered as a {found}, not as a {expected}")]
    WrongKind {
        /// The name that was looked up.
        name: String,
        /// The kind the caller asked for.
        expected: String,
        /// The kind that is registered.
        found: String,
    },
    /// A conf key has a value the plugin cannot use.
    #[error("conf key `{key}`: {reason}")]
    Config {
        /// The culprit key, as written in the conf.
        key: String,
        /// Why it was refused.
        reason: String,
    },
    /// The producer queue stayed full for the whole configured wait.
    #[error(
        "queue full: the producer queue for topic `{topic}` stayed full for {waited_ms} ms; nothing was written"
    )]
    QueueFull {
        /// The topic of the refused record.
        topic: String,
        /// How long `write` waited for room.
        waited_ms: u64,
    },
    /// A record larger than the producer's `message.max.bytes`.
    #[error(
        "message of {size_bytes} bytes for topic `{topic}` exceeds the producer's message.max.bytes of {limit_bytes} bytes"
    )]
    MessageTooLarge {
        /// The topic of the refused record.
        topic: String,
        /// The size of the record.
        size_bytes: u64,
        /// The configured limit.
        limit_bytes: u64,
    },
    /// A Kafka operation failed.
    #[error("kafka {operation} failed: {reason}")]
    Kafka {
        /// What was attempted, naming the topic or group where there is one.
        operation: String,
        /// librdkafka's reason.
        reason: String,
    },
    /// `mark_done` of a group id the status database does not know.
    #[error("unknown message group `{group_id}`")]
    UnknownGroup {
        /// The id that was given.
        group_id: String,
    },
    /// A group id that is not of the form `topic:partition:min-offset:max-offset`.
    #[error("invalid message group id `{group_id}`: {reason}")]
    InvalidGroupId {
        /// The id that was given.
        group_id: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The status database could not be used.
    #[error("status database {path}: {reason}")]
    StatusDb {
        /// The database file.
        path: String,
        /// What failed.
        reason: String,
    },
    /// Code in a plugin panicked; the panic was caught at the boundary.
    #[error("plugin {plugin} panicked in {operation}: {message}")]
    Panicked {
        /// The plugin's name.
        plugin: String,
        /// The call that panicked.
        operation: String,
        /// The panic message.
        message: String,
    },
    /// The object was shut down or closed.
    #[error("{what} is closed")]
    Closed {
        /// What is closed.
        what: String,
    },
    /// Any other failure, described in words.
    #[error("{message}")]
    Other {
        /// The description.
        message: String,
    },
}

impl Error {
    /// An [`Error::Other`] from anything printable.
    ///
    /// ```
    /// let err = pseidon_plugin_api::Error::other("boom");
    /// assert_eq!(err.to_string(), "boom");
    /// ```
    pub fn other(message: impl Into<String>) -> Self {
        Error::Other {
            message: message.into(),
        }
    }

    /// An [`Error::Config`] naming `key`.
    ///
    /// ```
    /// let err = pseidon_plugin_api::Error::config("kafka.acks", "must be a string");
    /// assert_eq!(err.to_string(), "conf key `kafka.acks`: must be a string");
    /// ```
    pub fn config(key: impl Into<String>, reason: impl Into<String>) -> Self {
        Error::Config {
            key: key.into(),
            reason: reason.into(),
        }
    }
}
