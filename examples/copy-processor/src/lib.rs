//! An example processor plugin for pseidon, as in the original pseidon: under
//! `pseidon run` it copies every message of one Kafka topic to another through the
//! pseidon-kafka datasource and datasink, marking a message group done only after the
//! sink confirmed the delivery of all its messages ([`copier`]).
//!
//! At `init` it parses its `copy-processor.*` keys ([`settings`]) and registers the
//! processor [`PROCESSOR_NAME`]. The host calls `start` once every plugin is loaded:
//! it spawns the copy thread, which looks the source and the sink up with
//! `reg_get_wait`. `stop` (and the plugin's `shutdown`) ends the thread within the
//! timeout; the thread closes its reader on the way out.
#![deny(missing_docs)]

pub mod copier;
pub mod settings;

use std::{
    sync::{
        Arc, Mutex, PoisonError,
        atomic::{AtomicBool, Ordering},
        mpsc,
    },
    thread::JoinHandle,
    time::Duration,
};

use pseidon_plugin_api::{Error, InitContext, Plugin, Processor, Registry};

use crate::settings::Settings;

/// The registry name of the processor.
pub const PROCESSOR_NAME: &str = "pseidon.example.copy-processor";

/// The copy thread while it runs.
struct Running {
    stop: Arc<AtomicBool>,
    finished: mpsc::Receiver<Result<copier::Totals, Error>>,
    handle: JoinHandle<()>,
}

struct Inner {
    registry: Registry,
    settings: Settings,
    running: Mutex<Option<Running>>,
}

/// The processor. Cheap to clone: the registry and the plugin share one.
#[derive(Clone)]
pub struct CopyProcessor {
    inner: Arc<Inner>,
}

impl CopyProcessor {
    /// A processor with `settings` that looks its source and sink up in `registry`.
    pub fn new(registry: Registry, settings: Settings) -> Self {
        CopyProcessor {
            inner: Arc::new(Inner {
                registry,
                settings,
                running: Mutex::new(None),
            }),
        }
    }
}

impl Processor for CopyProcessor {
    fn start(&self) -> Result<(), Error> {
        let mut running = self
            .inner
            .running
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if running.is_some() {
            return Err(Error::other("the copy processor is already running"));
        }
        let stop = Arc::new(AtomicBool::new(false));
        let (tx, finished) = mpsc::channel();
        let inner = Arc::clone(&self.inner);
        let thread_stop = Arc::clone(&stop);
        let handle = std::thread::Builder::new()
            .name("copy-processor".into())
            .spawn(move || {
                let result = copier::run(&inner.registry, &inner.settings, &thread_stop);
                if let Err(e) = &result {
                    log::error!("copy processor stopped copying: {e}");
                }
                let _ = tx.send(result);
            })
            .map_err(|e| Error::other(format!("cannot start the copy thread: {e}")))?;
        *running = Some(Running {
            stop,
            finished,
            handle,
        });
        Ok(())
    }

    fn stop(&self, timeout: Duration) -> Result<(), Error> {
        let Some(running) = self
            .inner
            .running
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
        else {
            return Ok(());
        };
        running.stop.store(true, Ordering::SeqCst);
        match running.finished.recv_timeout(timeout) {
            Ok(result) => {
                let _ = running.handle.join();
                result.map(|totals| {
                    log::info!(
                        "copy processor stopped: {} message(s) copied, {} group(s) done",
                        totals.messages,
                        totals.groups
                    );
                })
            }
            Err(mpsc::RecvTimeoutError::Timeout) => Err(Error::other(format!(
                "the copy thread did not stop within {} ms",
                timeout.as_millis()
            ))),
            // The thread ended without a result (it panicked).
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                Err(Error::other("the copy thread ended abnormally"))
            }
        }
    }
}

/// The plugin: holds the processor so `shutdown` can stop it too.
pub struct CopyPlugin {
    processor: CopyProcessor,
}

impl Plugin for CopyPlugin {
    const NAME: &'static str = "copy-processor";

    fn init(ctx: InitContext) -> Result<Self, Error> {
        let settings = Settings::parse(&ctx.conf)?;
        log::info!(
            "copy processor: `{}` -> `{}` (group `{}`)",
            settings.from,
            settings.to,
            settings.group
        );
        let processor = CopyProcessor::new(ctx.registry.clone(), settings);
        ctx.registry
            .register_processor(PROCESSOR_NAME, processor.clone())?;
        Ok(CopyPlugin { processor })
    }

    fn shutdown(&self, timeout: Duration) -> Result<(), Error> {
        self.processor.stop(timeout)
    }
}

pseidon_plugin_api::export_plugin!(CopyPlugin);
