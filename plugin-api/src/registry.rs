//! The name-keyed registry: plugins register sinks, sources and processors under
//! names; anyone looks them up, waiting for a name with [`Registry::reg_get_wait`].
//!
//! The registry created by [`Registry::new`] (the host's) also counts the
//! `reg_get_wait*` calls made through it and how long each waited
//! ([`Registry::wait_stats`]): plugins reach the same core through the vtable, so
//! their waits are counted too, with no change to the ABI.

use std::{
    collections::HashMap,
    sync::{Arc, Condvar, Mutex, MutexGuard},
    time::{Duration, Instant},
};

use abi_stable::{
    sabi_trait::TD_Opaque,
    std_types::{RArc, ROption, RResult, RStr, RVec},
};

use crate::{
    error::Error,
    ffi::{
        FfiEntry, FfiEntryKind, FfiError, FfiRegistration, FfiRegistry, FfiRegistry_TO,
        FfiRegistryArc, FfiResult,
    },
    processor::{Processor, ProcessorHandle},
    sink::{DataSink, Sink},
    source::{DataSource, Source},
};

/// What kind of object a name is registered as.
pub use crate::ffi::FfiEntryKind as EntryKind;

impl EntryKind {
    /// `sink`, `source` or `processor`.
    ///
    /// ```
    /// assert_eq!(pseidon_plugin_api::EntryKind::Sink.as_str(), "sink");
    /// ```
    pub fn as_str(&self) -> &'static str {
        match self {
            FfiEntryKind::Sink => "sink",
            FfiEntryKind::Source => "source",
            FfiEntryKind::Processor => "processor",
        }
    }
}

/// A registered object.
#[derive(Clone)]
pub enum Entry {
    /// A data sink.
    Sink(Sink),
    /// A data source.
    Source(Source),
    /// A processor.
    Processor(ProcessorHandle),
}

impl Entry {
    /// The entry's kind.
    pub fn kind(&self) -> EntryKind {
        match self {
            Entry::Sink(_) => EntryKind::Sink,
            Entry::Source(_) => EntryKind::Source,
            Entry::Processor(_) => EntryKind::Processor,
        }
    }

    fn from_ffi(entry: FfiEntry) -> Self {
        match entry {
            FfiEntry::Sink(s) => Entry::Sink(Sink::from_ffi(s)),
            FfiEntry::Source(s) => Entry::Source(Source::from_ffi(s)),
            FfiEntry::Processor(p) => Entry::Processor(ProcessorHandle::from_ffi(p)),
        }
    }
}

/// A name, who registered it, and what it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Registration {
    /// The registered name.
    pub name: String,
    /// The plugin that registered it (or `host`).
    pub owner: String,
    /// The kind of entry.
    pub kind: EntryKind,
}

struct Slot {
    owner: String,
    entry: FfiEntry,
}

#[derive(Default)]
struct Table {
    by_name: HashMap<String, Slot>,
    order: Vec<String>,
}

/// The upper bounds, in seconds, of the buckets of [`WaitStats::buckets`].
pub const WAIT_BUCKETS_SECONDS: [f64; 10] =
    [0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 30.0];

/// The `reg_get_wait*` calls made so far, and how long they waited (found or not).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct WaitStats {
    /// How many calls.
    pub waits: u64,
    /// The sum of their waits, in seconds.
    pub wait_seconds_sum: f64,
    /// Cumulative counts per bound of [`WAIT_BUCKETS_SECONDS`] (same order).
    pub buckets: [u64; 10],
}

impl WaitStats {
    fn observe(&mut self, waited: Duration) {
        let secs = waited.as_secs_f64();
        self.waits += 1;
        self.wait_seconds_sum += secs;
        for (bound, count) in WAIT_BUCKETS_SECONDS.iter().zip(self.buckets.iter_mut()) {
            if secs <= *bound {
                *count += 1;
            }
        }
    }
}

/// The registry's state, owned by the host and reached by plugins through the vtable.
#[derive(Default)]
struct RegistryCore {
    table: Mutex<Table>,
    registered: Condvar,
    waits: Arc<Mutex<WaitStats>>,
}

impl RegistryCore {
    fn lock(&self) -> MutexGuard<'_, Table> {
        // A poisoned lock only means a panic elsewhere; the table itself stays consistent.
        self.table.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl FfiRegistry for RegistryCore {
    fn register(&self, name: RStr<'_>, owner: RStr<'_>, entry: FfiEntry) -> FfiResult<()> {
        let mut table = self.lock();
        if let Some(slot) = table.by_name.get(name.as_str()) {
            return RResult::RErr(FfiError::AlreadyRegistered {
                name: name.into(),
                owner: slot.owner.as_str().into(),
                new_owner: owner.into(),
            });
        }
        table.by_name.insert(
            name.to_string(),
            Slot {
                owner: owner.to_string(),
                entry,
            },
        );
        table.order.push(name.to_string());
        drop(table);
        self.registered.notify_all();
        RResult::ROk(())
    }

    fn get(&self, name: RStr<'_>) -> ROption<FfiEntry> {
        self.lock()
            .by_name
            .get(name.as_str())
            .map(|s| s.entry.clone())
            .into()
    }

    fn get_wait(&self, name: RStr<'_>, timeout_ms: u64) -> FfiResult<FfiEntry> {
        let start = Instant::now();
        let result = self.get_wait_from(name, timeout_ms, start);
        self.waits
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .observe(start.elapsed());
        result
    }

    fn list(&self) -> RVec<FfiRegistration> {
        self.list_entries()
    }
}

impl RegistryCore {
    fn get_wait_from(
        &self,
        name: RStr<'_>,
        timeout_ms: u64,
        start: Instant,
    ) -> FfiResult<FfiEntry> {
        let timeout = Duration::from_millis(timeout_ms);
        let mut table = self.lock();
        loop {
            if let Some(slot) = table.by_name.get(name.as_str()) {
                return RResult::ROk(slot.entry.clone());
            }
            let elapsed = start.elapsed();
            if elapsed >= timeout {
                return RResult::RErr(
                    Error::NotRegistered {
                        name: name.into(),
                        waited: elapsed,
                    }
                    .into(),
                );
            }
            table = match self.registered.wait_timeout(table, timeout - elapsed) {
                Ok((t, _)) => t,
                Err(p) => p.into_inner().0,
            };
        }
    }

    fn list_entries(&self) -> RVec<FfiRegistration> {
        let table = self.lock();
        table
            .order
            .iter()
            .filter_map(|name| {
                table.by_name.get(name).map(|slot| FfiRegistration {
                    name: name.as_str().into(),
                    owner: slot.owner.as_str().into(),
                    kind: match slot.entry {
                        FfiEntry::Sink(_) => FfiEntryKind::Sink,
                        FfiEntry::Source(_) => FfiEntryKind::Source,
                        FfiEntry::Processor(_) => FfiEntryKind::Processor,
                    },
                })
            })
            .collect()
    }
}

/// A handle on the shared registry, acting for one owner (a plugin, or the host).
/// Cloning is cheap; every clone sees the same registry.
///
/// ```
/// use std::time::Duration;
/// use pseidon_plugin_api::{Registry, Error};
///
/// let registry = Registry::new("host");
/// let err = registry.reg_get_wait("missing", Duration::from_millis(20)).err().unwrap();
/// assert!(matches!(err, Error::NotRegistered { ref name, .. } if name == "missing"));
/// assert!(registry.reg_list().is_empty());
/// ```
#[derive(Clone)]
pub struct Registry {
    inner: FfiRegistryArc,
    owner: Arc<str>,
    /// The wait counts of the core this process created (`None` for a handle
    /// received over the boundary: that core counts on the host's side).
    waits: Option<Arc<Mutex<WaitStats>>>,
}

impl Registry {
    /// A new, empty registry; `owner` names whoever registers through this handle.
    pub fn new(owner: &str) -> Self {
        let core = RegistryCore::default();
        let waits = Arc::clone(&core.waits);
        let core = FfiRegistry_TO::from_value(core, TD_Opaque);
        Registry {
            inner: RArc::new(core),
            owner: owner.into(),
            waits: Some(waits),
        }
    }

    /// A handle on the same registry acting for another owner (the host gives each
    /// plugin its own).
    pub fn with_owner(&self, owner: &str) -> Self {
        Registry {
            inner: self.inner.clone(),
            owner: owner.into(),
            waits: self.waits.clone(),
        }
    }

    /// The owner this handle registers as.
    pub fn owner(&self) -> &str {
        &self.owner
    }

    /// Registers `entry` under `name`. A name already taken is an
    /// [`Error::AlreadyRegistered`] naming both owners; the first one stays.
    pub fn register(&self, name: &str, entry: Entry) -> Result<(), Error> {
        let ffi = match entry {
            Entry::Sink(s) => FfiEntry::Sink(s.into_ffi()),
            Entry::Source(s) => FfiEntry::Source(s.into_ffi()),
            Entry::Processor(p) => FfiEntry::Processor(p.into_ffi()),
        };
        self.inner
            .register(RStr::from_str(name), RStr::from_str(&self.owner), ffi)
            .into_result()
            .map_err(Error::from)
    }

    /// Registers a data sink implementation under `name`.
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use pseidon_plugin_api::{Registry, DataSink, Record, BatchAccepted, FlushReport, Error};
    /// struct Null;
    /// impl DataSink for Null {
    ///     fn write_batch(&self, records: &[Record<'_>], first_id: u64) -> Result<(), (u64, Error)> { Ok(()) }
    ///     fn flush(&self, _t: Duration) -> Result<FlushReport, Error> { Ok(FlushReport::default()) }
    /// }
    /// let registry = Registry::new("example");
    /// registry.register_sink("null", Null).unwrap();
    /// let sink = registry.reg_get_wait_sink("null", Duration::from_secs(1)).unwrap();
    /// assert_eq!(sink.write("t", b"x").unwrap(), 0);
    /// ```
    pub fn register_sink(&self, name: &str, sink: impl DataSink) -> Result<(), Error> {
        self.register(name, Entry::Sink(Sink::from_impl(&self.owner, sink)))
    }

    /// Registers a data source implementation under `name`.
    pub fn register_source(&self, name: &str, source: impl DataSource) -> Result<(), Error> {
        self.register(name, Entry::Source(Source::from_impl(&self.owner, source)))
    }

    /// Registers a processor under `name`; `pseidon run` starts it.
    pub fn register_processor(&self, name: &str, processor: impl Processor) -> Result<(), Error> {
        self.register(
            name,
            Entry::Processor(ProcessorHandle::from_impl(&self.owner, processor)),
        )
    }

    /// The entry under `name`, without waiting.
    pub fn reg_get(&self, name: &str) -> Option<Entry> {
        self.inner
            .get(RStr::from_str(name))
            .into_option()
            .map(Entry::from_ffi)
    }

    /// The entry under `name`; if it is not there yet, waits until somebody
    /// registers it (woken at once, no polling) or `timeout` passes
    /// ([`Error::NotRegistered`] naming the name and the time waited).
    pub fn reg_get_wait(&self, name: &str, timeout: Duration) -> Result<Entry, Error> {
        let timeout_ms = u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX);
        self.inner
            .get_wait(RStr::from_str(name), timeout_ms)
            .into_result()
            .map(Entry::from_ffi)
            .map_err(Error::from)
    }

    /// [`Registry::reg_get_wait`] for a data sink; another kind under the name is an
    /// [`Error::WrongKind`].
    pub fn reg_get_wait_sink(&self, name: &str, timeout: Duration) -> Result<Sink, Error> {
        match self.reg_get_wait(name, timeout)? {
            Entry::Sink(s) => Ok(s),
            other => Err(wrong_kind(name, EntryKind::Sink, other.kind())),
        }
    }

    /// [`Registry::reg_get_wait`] for a data source.
    pub fn reg_get_wait_source(&self, name: &str, timeout: Duration) -> Result<Source, Error> {
        match self.reg_get_wait(name, timeout)? {
            Entry::Source(s) => Ok(s),
            other => Err(wrong_kind(name, EntryKind::Source, other.kind())),
        }
    }

    /// [`Registry::reg_get_wait`] for a processor.
    pub fn reg_get_wait_processor(
        &self,
        name: &str,
        timeout: Duration,
    ) -> Result<ProcessorHandle, Error> {
        match self.reg_get_wait(name, timeout)? {
            Entry::Processor(p) => Ok(p),
            other => Err(wrong_kind(name, EntryKind::Processor, other.kind())),
        }
    }

    /// The `reg_get_wait*` calls made on this registry so far, by anyone (the host
    /// and every plugin), and how long they waited; `None` on a handle a plugin
    /// received from the host (the host counts).
    ///
    /// ```
    /// use std::time::Duration;
    /// let registry = pseidon_plugin_api::Registry::new("host");
    /// let _ = registry.reg_get_wait("missing", Duration::from_millis(5));
    /// let stats = registry.wait_stats().unwrap();
    /// assert_eq!(stats.waits, 1);
    /// assert!(stats.wait_seconds_sum >= 0.005);
    /// ```
    pub fn wait_stats(&self) -> Option<WaitStats> {
        self.waits
            .as_ref()
            .map(|w| w.lock().unwrap_or_else(|p| p.into_inner()).clone())
    }

    /// Every registration, in registration order.
    pub fn reg_list(&self) -> Vec<Registration> {
        self.inner
            .list()
            .into_iter()
            .map(|r| Registration {
                name: r.name.into_string(),
                owner: r.owner.into_string(),
                kind: r.kind,
            })
            .collect()
    }

    pub(crate) fn to_ffi(&self) -> FfiRegistryArc {
        self.inner.clone()
    }

    pub(crate) fn from_ffi(inner: FfiRegistryArc, owner: &str) -> Self {
        Registry {
            inner,
            owner: owner.into(),
            waits: None,
        }
    }
}

fn wrong_kind(name: &str, expected: EntryKind, found: EntryKind) -> Error {
    Error::WrongKind {
        name: name.to_string(),
        expected: expected.as_str().to_string(),
        found: found.as_str().to_string(),
    }
}
