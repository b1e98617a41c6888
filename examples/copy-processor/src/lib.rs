//! An example processor plugin for pseidon, as in the original pseidon: under
//! `pseidon run` it copies every message of one Kafka topic to another through the
//! pseidon-kafka datasource and datasink, marking a message group done only after the
//! sink confirmed the delivery of all its messages ([`copier`]).
//!
//! At `init` it parses its `copy-processor.*` keys ([`settings`]) and registers the
//! processor [`PROCESSOR_NAME`]. The host calls `start` once every plugin is loaded:
//! it spawns the copy thread, which looks the source and the sink up with
//! `reg_get_wait`, and waits until the thread has its source, sink and reader (a
//! setup error, e.g. a locked status database, fails `start`). While it runs,
//! `status` says whether the thread ended in an error (then `pseidon run` stops and
//! exits non-zero). `stop` (and the plugin's `shutdown`) ends the thread within the
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

use pseidon_plugin_api::{Error, InitContext, Plugin, Processor, ProcessorStatus, Registry};

use crate::settings::Settings;

/// The registry name of the processor.
pub const PROCESSOR_NAME: &str = "pseidon.example.copy-processor";

/// How long `start` waits, beyond `wait-ms`, for the thread to open its reader
/// before it returns anyway (`status` then reports what happens later).
const OPEN_GRACE: Duration = Duration::from_secs(30);

/// What the copy thread tells `start`, `status` and `stop`.
enum Event {
    /// The source, the sink and the reader are there: copying.
    Opened,
    /// The thread ended with this result.
    Ended(Result<copier::Totals, Error>),
}

/// The copy thread while it runs.
struct Running {
    stop: Arc<AtomicBool>,
    events: mpsc::Receiver<Event>,
    /// The thread's result once `status` (or `stop`) received it.
    outcome: Option<Result<copier::Totals, Error>>,
    handle: JoinHandle<()>,
}

impl Running {
    /// Takes the thread's result if it has ended, without waiting.
    fn poll(&mut self) {
        if self.outcome.is_some() {
            return;
        }
        loop {
            match self.events.try_recv() {
                Ok(Event::Opened) => {}
                Ok(Event::Ended(result)) => {
                    self.outcome = Some(result);
                    return;
                }
                Err(mpsc::TryRecvError::Empty) => return,
                // The thread ended without a result (it panicked).
                Err(mpsc::TryRecvError::Disconnected) => {
                    self.outcome = Some(Err(Error::other("the copy thread ended abnormally")));
                    return;
                }
            }
        }
    }
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
        let (tx, events) = mpsc::channel();
        let inner = Arc::clone(&self.inner);
        let thread_stop = Arc::clone(&stop);
        let handle = std::thread::Builder::new()
            .name("copy-processor".into())
            .spawn(move || {
                let opened = tx.clone();
                let result =
                    copier::run_notify(&inner.registry, &inner.settings, &thread_stop, move || {
                        let _ = opened.send(Event::Opened);
                    });
                if let Err(e) = &result {
                    log::error!("copy processor stopped copying: {e}");
                }
                let _ = tx.send(Event::Ended(result));
            })
            .map_err(|e| Error::other(format!("cannot start the copy thread: {e}")))?;
        // Wait until it copies, so that a setup error fails `start`.
        match events.recv_timeout(self.inner.settings.wait.saturating_mul(2) + OPEN_GRACE) {
            Ok(Event::Opened) => {}
            Ok(Event::Ended(result)) => {
                let _ = handle.join();
                return result.and(Err(Error::other(
                    "the copy thread ended before it started copying",
                )));
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {
                log::warn!("the copy thread has not opened its reader yet; running on");
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                let _ = handle.join();
                return Err(Error::other("the copy thread ended abnormally"));
            }
        }
        *running = Some(Running {
            stop,
            events,
            outcome: None,
            handle,
        });
        Ok(())
    }

    fn stop(&self, timeout: Duration) -> Result<(), Error> {
        let Some(mut running) = self
            .inner
            .running
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
        else {
            return Ok(());
        };
        running.stop.store(true, Ordering::SeqCst);
        let deadline = std::time::Instant::now() + timeout;
        while running.outcome.is_none() {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match running.events.recv_timeout(left) {
                Ok(Event::Opened) => {}
                Ok(Event::Ended(result)) => running.outcome = Some(result),
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    return Err(Error::other(format!(
                        "the copy thread did not stop within {} ms",
                        timeout.as_millis()
                    )));
                }
                // The thread ended without a result (it panicked).
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    running.outcome = Some(Err(Error::other("the copy thread ended abnormally")));
                }
            }
        }
        let _ = running.handle.join();
        match running.outcome.take() {
            Some(Ok(totals)) => {
                log::info!(
                    "copy processor stopped: {} message(s) copied, {} group(s) done",
                    totals.messages,
                    totals.groups
                );
                Ok(())
            }
            Some(Err(e)) => Err(e),
            None => Ok(()),
        }
    }

    fn status(&self) -> ProcessorStatus {
        let mut running = self
            .inner
            .running
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let Some(running) = running.as_mut() else {
            return ProcessorStatus::Running;
        };
        running.poll();
        match &running.outcome {
            None => ProcessorStatus::Running,
            Some(Ok(_)) => ProcessorStatus::Finished,
            Some(Err(e)) => ProcessorStatus::Failed(e.clone()),
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
