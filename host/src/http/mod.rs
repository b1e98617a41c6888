//! The host's HTTP endpoint (`http-listen`, `pseidon run --http-listen`): what it
//! serves and the state it serves it from. One concept per module:
//! [`server`] (the socket, its thread, routing, GET only, secret scrubbing),
//! [`metrics`] (the Prometheus exposition), [`ready`] (readiness, cached) and
//! [`views`] (the JSON of `/registry` and `/groups`).
//!
//! Invariants: the socket is bound before any plugin loads (a bad address or a taken
//! port fails `run` first); every body is scrubbed of the conf's secret values
//! before it leaves; the endpoint is stopped before the plugins are shut down (it
//! calls into their modules).

pub mod metrics;
pub mod ready;
pub mod server;
pub mod views;

use std::sync::{
    Mutex,
    atomic::{AtomicBool, Ordering},
};

use pseidon_plugin_api::{Observer, ProcessorStatus, Registry};

use crate::host::RunningProcessor;

pub use server::{HttpError, HttpServer};

/// A loaded plugin as the endpoint sees it.
#[derive(Clone)]
pub struct PluginView {
    /// The file it was loaded from.
    pub file: String,
    /// Its name (the `plugin` label of its metrics).
    pub name: String,
    /// Its version.
    pub version: String,
    /// Its observability extension (metrics, readiness); `None`: the plugin has none.
    pub observer: Option<Observer>,
}

/// What the endpoint serves from: a snapshot of the host taken when `run` has
/// loaded the plugins, plus the live parts (processors, stopping).
pub struct State {
    /// The loaded plugins.
    pub plugins: Vec<PluginView>,
    /// How many plugin files (or dirs) failed to load.
    pub plugins_failed: usize,
    /// The shared registry.
    pub registry: Registry,
    /// The registry name of the datasource `/groups` asks.
    pub source: String,
    /// The processors `run` started (empty until they are).
    pub processors: Mutex<Vec<RunningProcessor>>,
    /// Whether the processors have been started (before: not ready).
    pub started: AtomicBool,
    /// Set once `run` begins to stop: `/health` says 503 from then on.
    pub stopping: AtomicBool,
    /// Blanks the conf's secret values out of every body.
    pub scrubber: pseidon_plugin_api::secret::Scrubber,
    /// The readiness cache.
    pub ready: ready::ReadyCache,
}

impl State {
    /// The state of a loaded host, before its processors start.
    pub fn new(host: &crate::Host, source: &str) -> State {
        let plugins = host
            .loaded_plugins()
            .iter()
            .map(|p| PluginView {
                file: p.path().display().to_string(),
                name: p.name().to_string(),
                version: p.version().to_string(),
                observer: p.observer(),
            })
            .collect();
        let view = host.conf().plugin_view();
        State {
            plugins,
            plugins_failed: host.failures().len(),
            registry: host.registry().clone(),
            source: source.to_string(),
            processors: Mutex::new(Vec::new()),
            started: AtomicBool::new(false),
            stopping: AtomicBool::new(false),
            scrubber: pseidon_plugin_api::secret::Scrubber::from_pairs(
                view.entries()
                    .iter()
                    .map(|e| (e.key.as_str(), e.value.as_str())),
            ),
            ready: ready::ReadyCache::default(),
        }
    }

    /// Records the processors that `run` started.
    pub fn set_processors(&self, running: Vec<RunningProcessor>) {
        *self.processors.lock().unwrap_or_else(|p| p.into_inner()) = running;
        self.started.store(true, Ordering::SeqCst);
    }

    /// Marks the process as stopping (`/health` 503, `/ready` 503).
    pub fn set_stopping(&self) {
        self.stopping.store(true, Ordering::SeqCst);
    }

    /// True once `run` began to stop.
    pub fn is_stopping(&self) -> bool {
        self.stopping.load(Ordering::SeqCst)
    }

    /// (name, status) of every started processor.
    pub fn processor_statuses(&self) -> Vec<(String, ProcessorStatus)> {
        self.processors
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .map(|p| (p.name.clone(), p.status()))
            .collect()
    }
}
