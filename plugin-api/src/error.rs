//! Errors of the plugin interface, as Rust sees them ([`Error`]) and as they cross
//! the plugin boundary ([`FfiError`], re-exported by [`crate::ffi`]).
//!
//! Both enums and the conversions between them are generated from one table
//! (`boundary_errors!`): a variant or a field is written once. A librdkafka failure
//! keeps librdkafka's error code and whether it is retriable ([`Error::Kafka`]); a
//! status database held by another instance has a variant of its own
//! ([`Error::StatusDbLocked`]), so callers match on the type, never on a message.

use std::time::Duration;

use abi_stable::{
    StableAbi,
    std_types::{ROption, RString},
};

/// The one table of the boundary's errors. It generates [`Error`], its `#[repr(C)]`
/// twin [`FfiError`] (each field in its wire type, after `=>`), and the conversions
/// both ways, so that a variant or field is written once.
macro_rules! boundary_errors {
    ($(
        $(#[$vmeta:meta])*
        $variant:ident {
            $( $(#[$fmeta:meta])* $field:ident : $ty:ty => $fty:ty ),* $(,)?
        }
    ),* $(,)?) => {
        /// Everything that can fail across the plugin boundary, one variant per failed
        /// operation.
        #[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
        #[non_exhaustive]
        pub enum Error {
            $( $(#[$vmeta])* $variant { $( $(#[$fmeta])* $field: $ty ),* } ),*
        }

        /// [`Error`] as it crosses the boundary; converted back on the other side.
        #[repr(u8)]
        #[derive(StableAbi, Debug, Clone, PartialEq, Eq)]
        #[allow(missing_docs)]
        pub enum FfiError {
            $( $variant { $( $field: $fty ),* } ),*
        }

        impl From<Error> for FfiError {
            fn from(e: Error) -> Self {
                match e {
                    $( Error::$variant { $($field),* } =>
                        FfiError::$variant { $( $field: Wire::to_wire($field) ),* } ),*
                }
            }
        }

        impl From<FfiError> for Error {
            fn from(e: FfiError) -> Self {
                match e {
                    $( FfiError::$variant { $($field),* } =>
                        Error::$variant { $( $field: Wire::from_wire($field) ),* } ),*
                }
            }
        }
    };
}

/// A field type of [`Error`] and its wire type `W` in [`FfiError`].
trait Wire<W> {
    fn to_wire(self) -> W;
    fn from_wire(w: W) -> Self;
}

impl Wire<RString> for String {
    fn to_wire(self) -> RString {
        self.into()
    }
    fn from_wire(w: RString) -> Self {
        w.into()
    }
}

impl<T> Wire<T> for T {
    fn to_wire(self) -> T {
        self
    }
    fn from_wire(w: T) -> Self {
        w
    }
}

/// A duration crosses as whole milliseconds (saturating).
impl Wire<u64> for Duration {
    fn to_wire(self) -> u64 {
        u64::try_from(self.as_millis()).unwrap_or(u64::MAX)
    }
    fn from_wire(w: u64) -> Self {
        Duration::from_millis(w)
    }
}

impl Wire<ROption<i32>> for Option<i32> {
    fn to_wire(self) -> ROption<i32> {
        self.into()
    }
    fn from_wire(w: ROption<i32>) -> Self {
        w.into_option()
    }
}

boundary_errors! {
    /// `reg_get_wait` timed out: nothing registered `name` within `waited`.
    #[error("no plugin registered `{name}` within {} ms", waited.as_millis())]
    NotRegistered {
        /// The name that was looked up.
        name: String => RString,
        /// How long the lookup waited.
        waited: Duration => u64,
    },
    /// `register` found the name taken.
    #[error("`{name}` is already registered by {owner}; {new_owner} tried to register it again")]
    AlreadyRegistered {
        /// The contested name.
        name: String => RString,
        /// Who registered it first.
        owner: String => RString,
        /// Who tried to register it again.
        new_owner: String => RString,
    },
    /// The name is registered, but as another kind of entry than asked for.
    #[error("`{name}` is registered as a {found}, not as a {expected}")]
    WrongKind {
        /// The name that was looked up.
        name: String => RString,
        /// The kind the caller asked for.
        expected: String => RString,
        /// The kind that is registered.
        found: String => RString,
    },
    /// A conf key has a value the plugin cannot use.
    #[error("conf key `{key}`: {reason}")]
    Config {
        /// The culprit key, as written in the conf.
        key: String => RString,
        /// Why it was refused.
        reason: String => RString,
    },
    /// The producer queue stayed full for the whole configured wait.
    #[error(
        "queue full: the producer queue for topic `{topic}` stayed full for {waited_ms} ms; nothing was written"
    )]
    QueueFull {
        /// The topic of the refused record.
        topic: String => RString,
        /// How long `write` waited for room.
        waited_ms: u64 => u64,
    },
    /// A record larger than the producer's `message.max.bytes`.
    #[error(
        "message of {size_bytes} bytes for topic `{topic}` exceeds the producer's message.max.bytes of {limit_bytes} bytes"
    )]
    MessageTooLarge {
        /// The topic of the refused record.
        topic: String => RString,
        /// The size of the record.
        size_bytes: u64 => u64,
        /// The configured limit.
        limit_bytes: u64 => u64,
    },
    /// A Kafka operation failed.
    #[error("kafka {operation} failed: {reason}")]
    Kafka {
        /// What was attempted, naming the topic or group where there is one.
        operation: String => RString,
        /// librdkafka's reason.
        reason: String => RString,
        /// librdkafka's error code (`rd_kafka_resp_err_t`, e.g. -195 for `_TRANSPORT`,
        /// 29 for `TOPIC_AUTHORIZATION_FAILED`); `None` when the failure did not come
        /// with one (a wait that ran out, a refusal of the plugin's own).
        code: Option<i32> => ROption<i32>,
        /// Whether the same call may succeed if tried again later (a broker down, a
        /// leader moving), as opposed to a refusal that stays (authorization, a bad
        /// topic name, a fatal client error).
        retriable: bool => bool,
    },
    /// `mark_done` of a group id the status database does not know.
    #[error("unknown message group `{group_id}`")]
    UnknownGroup {
        /// The id that was given.
        group_id: String => RString,
    },
    /// A group id that is not of the form `topic:partition:min-offset:max-offset`.
    #[error("invalid message group id `{group_id}`: {reason}")]
    InvalidGroupId {
        /// The id that was given.
        group_id: String => RString,
        /// What is wrong with it.
        reason: String => RString,
    },
    /// The status database could not be used.
    #[error("status database {path}: {reason}")]
    StatusDb {
        /// The database file.
        path: String => RString,
        /// What failed.
        reason: String => RString,
    },
    /// The status database is in use by another live instance (its file is locked).
    #[error(
        "status database {path}: in use by another live pseidon-kafka instance (the file is \
         locked); give each instance its own pseidon-kafka.status-db"
    )]
    StatusDbLocked {
        /// The database file.
        path: String => RString,
    },
    /// Code in a plugin panicked; the panic was caught at the boundary.
    #[error("plugin {plugin} panicked in {operation}: {message}")]
    Panicked {
        /// The plugin's name.
        plugin: String => RString,
        /// The call that panicked.
        operation: String => RString,
        /// The panic message.
        message: String => RString,
    },
    /// The object was shut down or closed.
    #[error("{what} is closed")]
    Closed {
        /// What is closed.
        what: String => RString,
    },
    /// Any other failure, described in words.
    #[error("{message}")]
    Other {
        /// The description.
        message: String => RString,
    },
}

impl Error {
    /// An [`Error::Kafka`] without a librdkafka error code (a wait that ran out, a
    /// refusal of the plugin's own), not retriable.
    ///
    /// ```
    /// let err = pseidon_plugin_api::Error::kafka("flush", "timed out");
    /// assert_eq!(err.to_string(), "kafka flush failed: timed out");
    /// assert_eq!(err.kafka_code(), None);
    /// ```
    pub fn kafka(operation: impl Into<String>, reason: impl Into<String>) -> Self {
        Error::Kafka {
            operation: operation.into(),
            reason: reason.into(),
            code: None,
            retriable: false,
        }
    }

    /// librdkafka's error code of an [`Error::Kafka`] that came with one.
    pub fn kafka_code(&self) -> Option<i32> {
        match self {
            Error::Kafka { code, .. } => *code,
            _ => None,
        }
    }

    /// Whether the failed call may succeed if tried again later: a retriable
    /// [`Error::Kafka`], or a [`Error::QueueFull`] (the queue drains).
    pub fn is_retriable(&self) -> bool {
        match self {
            Error::Kafka { retriable, .. } => *retriable,
            Error::QueueFull { .. } => true,
            _ => false,
        }
    }

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
