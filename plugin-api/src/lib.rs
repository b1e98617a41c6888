//! The stable-ABI contract between the `pseidon` host and its plugins.
//!
//! A plugin is a `cdylib` that exports one root module ([`PluginModRef`]) with
//! [`export_plugin!`]. At load time the host calls the plugin's `init` with an
//! [`InitContext`]: the shared [`Registry`], the plugin's view of the conf and a
//! logging callback. The plugin registers what it offers under names, and
//! anything (the host, other plugins, their threads) looks the names up:
//!
//! ```
//! use std::time::Duration;
//! use pseidon_plugin_api::Registry;
//!
//! let registry = Registry::new("host");
//! match registry.reg_get_wait_sink("pseidon.kafka.util.datasink", Duration::from_millis(10)) {
//!     Ok(_sink) => unreachable!("nothing registered it"),
//!     Err(err) => assert!(err.to_string().contains("pseidon.kafka.util.datasink")),
//! }
//! ```
//!
//! Users work with the idiomatic types of this crate ([`Registry`], [`Sink`],
//! [`Source`], [`Reader`], [`Record`], [`Message`]); the `R`-types and `_TO`
//! trait objects of the [`ffi`] module are the wire format between the host and
//! the plugins and stay behind these wrappers.
//!
//! ## Versions
//!
//! The host refuses a plugin built against another `0.y` of this crate (abi_stable
//! compares the crate version). Within a `0.y`, fields and methods are only added
//! after a `#[sabi(last_prefix_field)]`: a plugin built after them still loads into an
//! older host. The other way round abi_stable refuses any type reachable from the root
//! module that has fewer fields or methods than the host's, so additions a newer host
//! must also find missing in older plugins come as extension symbols (below).
//! 0.3.0 broke the layout once, on purpose: [`Error::Kafka`] keeps librdkafka's error
//! code and whether a retry may cure it, a locked status database is its own variant
//! ([`Error::StatusDbLocked`]), and [`Record`]'s builders are `with_key`,
//! `with_partition`, `with_headers` (its getters `key`, `partition`, `headers`, as
//! [`Message`]'s). Plugins built against 0.2 must be rebuilt; the host says so,
//! naming both versions.
//!
//! The root module itself never grows: abi_stable refuses a root module with fewer
//! fields than the host expects, so a field added there would refuse every older
//! plugin. The same holds for every `#[sabi_trait]` vtable reachable from it (data sink,
//! source, reader, processor, registry): a method added to one, even with a default
//! body, makes the host refuse a plugin built before it (checked with a real 0.3.0
//! build). So within 0.3 none of them changes. What a plugin offers beyond them comes as
//! an extension symbol the host looks up and checks ([`observe`]: metrics and
//! readiness), or through the existing methods: a datasink's capabilities answer a probe
//! ([`ffi::PROBE_TICKET`]; 0.3.1: record timestamps, as [`ffi::TIMESTAMP_HEADER`]); a
//! plugin without them loads and goes without, and the wrapper says "not supported by
//! this plugin".
#![deny(missing_docs)]

pub mod conf;
pub mod error;
pub mod ffi;
pub mod logging;
pub mod metadata;
pub mod metrics;
pub mod module;
pub mod observe;
pub mod processor;
pub mod record;
pub mod registry;
pub mod secret;
pub mod sink;
pub mod source;
pub(crate) mod source_ext;

pub use conf::{ConfEntry, ConfKind, ConfView};
pub use error::Error;
pub use metadata::{BrokerMetadata, ClusterMetadata, PartitionMetadata, TopicMetadata};
pub use metrics::{Check, HistogramValue, MetricFamily, MetricKind, Sample};
pub use module::{INTERFACE_VERSION, InitContext, Plugin, PluginMod, PluginModRef, PluginSlot};
pub use observe::Observer;
pub use processor::{Processor, ProcessorHandle, ProcessorStatus};
pub use record::message_group;
pub use record::{GroupInfo, GroupStatus, Header, Message, MessageGroup, MessageHeader, Record};
pub use registry::{Entry, EntryKind, Registration, Registry, WaitStats};
pub use sink::{
    BatchAccepted, DataSink, DeliveryFailure, DeliveryId, FlushReport, FlushTicket, Sink,
};
pub use source::{
    DataSource, GroupFilter, Reader, ReaderOptions, ReaderProgress, ReaderSeq, Replayed, Source,
    SourceReader,
};

/// Re-exports for the code that [`export_plugin!`] generates; not part of the API.
#[doc(hidden)]
pub mod reexports {
    pub use abi_stable;
}
