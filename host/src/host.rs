//! The embedding API: load the conf, load the plugins, use the registry, shut down.

use std::{
    path::{Path, PathBuf},
    time::Duration,
};

use pseidon_plugin_api::{EntryKind, ProcessorHandle, Registration, Registry};

use crate::{
    conf::{Conf, ConfError},
    loader::{self, LoadFailure, LoadedPlugin, ShutdownError},
};

/// The owner name of registrations the host itself makes.
pub const HOST_OWNER: &str = "host";

/// Why the host could not come up; one variant per failed operation.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HostError {
    /// The conf could not be read or parsed.
    #[error(transparent)]
    Conf(#[from] ConfError),
    /// Strict mode (`strict = true` or `--strict`) and something failed to load; the
    /// plugins loaded before it were shut down again.
    #[error("strict mode: {failure}")]
    Strict {
        /// The first failure.
        failure: Box<LoadFailure>,
    },
}

/// A loaded plugin as listed by [`Host::plugins`].
#[derive(Debug, Clone)]
pub struct PluginInfo {
    /// The file it was loaded from.
    pub path: PathBuf,
    /// Its name.
    pub name: String,
    /// Its version.
    pub version: String,
    /// What it has registered so far, in registration order.
    pub registrations: Vec<Registration>,
}

/// Why a processor did not start or stop cleanly; one variant per failed operation.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProcessorError {
    /// `start` returned an error.
    #[error("processor `{name}` (of {owner}) failed to start: {error}")]
    Start {
        /// The registry name.
        name: String,
        /// The plugin that registered it.
        owner: String,
        /// The processor's error.
        error: Box<pseidon_plugin_api::Error>,
    },
    /// The processor reported (through `status`) that its work died while running.
    #[error("processor `{name}` (of {owner}) stopped with an error while running: {error}")]
    Died {
        /// The registry name.
        name: String,
        /// The plugin that registered it.
        owner: String,
        /// The processor's error.
        error: Box<pseidon_plugin_api::Error>,
    },
    /// `stop` returned an error.
    #[error("processor `{name}` (of {owner}) failed to stop: {error}")]
    Stop {
        /// The registry name.
        name: String,
        /// The plugin that registered it.
        owner: String,
        /// The processor's error.
        error: Box<pseidon_plugin_api::Error>,
    },
    /// `stop` did not return within the timeout.
    #[error("processor `{name}` (of {owner}) did not stop within {} ms; moving on", timeout.as_millis())]
    StopTimedOut {
        /// The registry name.
        name: String,
        /// The plugin that registered it.
        owner: String,
        /// The timeout.
        timeout: Duration,
    },
    /// No thread could be started to run `stop`.
    #[error("processor `{name}`: cannot start the stop thread: {source}")]
    Thread {
        /// The registry name.
        name: String,
        /// The I/O error.
        source: std::io::Error,
    },
}

/// A started processor, for [`Host::stop_processors`].
#[derive(Clone)]
pub struct RunningProcessor {
    /// The registry name.
    pub name: String,
    /// The plugin that registered it.
    pub owner: String,
    handle: ProcessorHandle,
}

impl RunningProcessor {
    /// What the processor says of its work (see `Processor::status`); a processor
    /// built before `status` existed always says running.
    pub fn status(&self) -> pseidon_plugin_api::ProcessorStatus {
        self.handle.status()
    }
}

/// The host: the conf, the shared registry, the loaded plugins and the failures.
///
/// ```
/// use pseidon_host::{Conf, Host};
/// let mut host = Host::load(Conf::empty("/nowhere.toml")).unwrap();
/// assert!(host.plugins().is_empty() && host.failures().is_empty());
/// assert!(host.registry().reg_list().is_empty());
/// assert!(host.shutdown().is_empty());
/// ```
pub struct Host {
    conf: Conf,
    registry: Registry,
    plugins: Vec<LoadedPlugin>,
    failures: Vec<LoadFailure>,
    shut_down: bool,
}

impl Host {
    /// Loads the classpath libraries, then every plugin of `plugin-dirs` in order,
    /// calling each one's `init`. Failures are kept in [`Host::failures`] and the
    /// other plugins still load, unless `conf.strict`: then the first failure shuts
    /// the loaded plugins down again and is returned as [`HostError::Strict`].
    pub fn load(conf: Conf) -> Result<Host, HostError> {
        let mut host = Host {
            registry: Registry::new(HOST_OWNER),
            plugins: Vec::new(),
            failures: Vec::new(),
            shut_down: false,
            conf,
        };
        let strict = host.conf.strict;
        for typo in &host.conf.typos {
            tracing::warn!("{typo}");
        }
        host.conf.check_typos()?;
        for key in &host.conf.unknown_top_level {
            if host.conf.typos.iter().any(|t| t.key == *key) {
                continue;
            }
            tracing::warn!(
                "conf key `{key}` in {} is not a host key ({}); it is passed to the plugins only",
                host.conf.path.display(),
                crate::conf::HOST_KEYS.join(", ")
            );
        }
        let (_libs, classpath_failures) =
            loader::load_classpath(&host.conf.classpath, host.conf.allow_writable_plugins);
        host.record(classpath_failures, strict)?;
        let (files, list_failures) =
            loader::plugin_files(&host.conf.plugin_dirs, host.conf.allow_writable_plugins);
        host.record(list_failures, strict)?;
        let plugin_view = host.conf.plugin_view();
        for file in files {
            match loader::load_plugin(&file, &host.registry, &plugin_view, &host.plugins) {
                Ok(p) => {
                    tracing::info!(plugin = p.name(), version = p.version(), path = %p.path().display(), "plugin loaded");
                    host.plugins.push(p);
                }
                Err(e) => host.record(vec![e.into()], strict)?,
            }
        }
        Ok(host)
    }

    /// Reads the conf at `path` and [`Host::load`]s it.
    pub fn load_path(path: &Path) -> Result<Host, HostError> {
        Host::load(Conf::load(path)?)
    }

    fn record(&mut self, failures: Vec<LoadFailure>, strict: bool) -> Result<(), HostError> {
        for failure in failures {
            if strict {
                tracing::error!("{failure}");
                self.shutdown();
                return Err(HostError::Strict {
                    failure: Box::new(failure),
                });
            }
            tracing::warn!("{failure}");
            self.failures.push(failure);
        }
        Ok(())
    }

    /// The conf the host was loaded with.
    pub fn conf(&self) -> &Conf {
        &self.conf
    }

    /// The shared registry (registrations through it are owned by `host`).
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// The loaded plugins in load order, with what each has registered so far.
    pub fn plugins(&self) -> Vec<PluginInfo> {
        let all = self.registry.reg_list();
        self.plugins
            .iter()
            .map(|p| PluginInfo {
                path: p.path().to_path_buf(),
                name: p.name().to_string(),
                version: p.version().to_string(),
                registrations: all
                    .iter()
                    .filter(|r| r.owner == p.name())
                    .cloned()
                    .collect(),
            })
            .collect()
    }

    /// The loaded plugins themselves, in load order (their modules: metrics, readiness).
    pub fn loaded_plugins(&self) -> &[LoadedPlugin] {
        &self.plugins
    }

    /// The files (and dirs) that failed to load, in the order they were tried.
    pub fn failures(&self) -> &[LoadFailure] {
        &self.failures
    }

    /// Starts every registered processor in registry order. Those that fail to
    /// start are returned as errors; the others run.
    pub fn start_processors(&self) -> (Vec<RunningProcessor>, Vec<ProcessorError>) {
        let mut running = Vec::new();
        let mut errors = Vec::new();
        for reg in self.registry.reg_list() {
            if reg.kind != EntryKind::Processor {
                continue;
            }
            let Some(pseidon_plugin_api::Entry::Processor(handle)) =
                self.registry.reg_get(&reg.name)
            else {
                continue;
            };
            match handle.start() {
                Ok(()) => {
                    tracing::info!(processor = reg.name, owner = reg.owner, "processor started");
                    running.push(RunningProcessor {
                        name: reg.name,
                        owner: reg.owner,
                        handle,
                    });
                }
                Err(error) => errors.push(ProcessorError::Start {
                    name: reg.name,
                    owner: reg.owner,
                    error: Box::new(error),
                }),
            }
        }
        (running, errors)
    }

    /// Stops `running` in reverse order, each bounded by `shutdown-timeout-ms`.
    pub fn stop_processors(&self, running: Vec<RunningProcessor>) -> Vec<ProcessorError> {
        let timeout = self.conf.shutdown_timeout;
        let mut errors = Vec::new();
        for p in running.into_iter().rev() {
            match stop_processor(&p, timeout) {
                Ok(()) => tracing::info!(processor = p.name, owner = p.owner, "processor stopped"),
                Err(e) => {
                    tracing::warn!("{e}");
                    errors.push(e);
                }
            }
        }
        errors
    }

    /// Shuts the plugins down in reverse load order, each bounded by
    /// `shutdown-timeout-ms` (a plugin that overruns is logged and left behind).
    /// Returns what went wrong; a second call does nothing.
    pub fn shutdown(&mut self) -> Vec<ShutdownError> {
        let mut errors = Vec::new();
        if self.shut_down {
            return errors;
        }
        self.shut_down = true;
        for p in self.plugins.iter().rev() {
            match p.shutdown(self.conf.shutdown_timeout) {
                Ok(()) => tracing::debug!(plugin = p.name(), "plugin shut down"),
                Err(e) => {
                    tracing::warn!("{e}");
                    errors.push(e);
                }
            }
        }
        errors
    }
}

impl Drop for Host {
    /// Shuts the plugins down if [`Host::shutdown`] was not called.
    fn drop(&mut self) {
        let _logged = self.shutdown();
    }
}

fn stop_processor(p: &RunningProcessor, timeout: Duration) -> Result<(), ProcessorError> {
    let handle = p.handle.clone();
    let stopped =
        crate::bounded::call_with_timeout(format!("stop-{}", p.name), timeout, move || {
            handle.stop(timeout)
        })
        .map_err(|source| ProcessorError::Thread {
            name: p.name.clone(),
            source,
        })?;
    match stopped {
        Some(Ok(())) => Ok(()),
        Some(Err(error)) => Err(ProcessorError::Stop {
            name: p.name.clone(),
            owner: p.owner.clone(),
            error: Box::new(error),
        }),
        None => Err(ProcessorError::StopTimedOut {
            name: p.name.clone(),
            owner: p.owner.clone(),
            timeout,
        }),
    }
}
