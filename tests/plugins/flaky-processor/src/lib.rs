//! Test plugin `flaky-processor`: registers the processor `test.flaky.processor`,
//! which, by the conf key `flaky.mode`,
//! - `start-error`: fails in `start` with an error naming the missing conf key
//!   `flaky.required`;
//! - `die-after-ms=N`: starts, then reports [`ProcessorStatus::Failed`] N ms later
//!   (as a processor whose work thread ended in an error);
//! - `finish-after-ms=N`: starts, then reports [`ProcessorStatus::Finished`] N ms later;
//! - anything else (or none): runs until stopped.

use std::{
    sync::Mutex,
    time::{Duration, Instant},
};

use pseidon_plugin_api::{Error, InitContext, Plugin, Processor, ProcessorStatus};

/// The processor's registry name.
const NAME: &str = "test.flaky.processor";

#[derive(Clone, Copy)]
enum Mode {
    StartError,
    DieAfter(Duration),
    FinishAfter(Duration),
    Run,
}

struct Flaky {
    mode: Mode,
    started: Mutex<Option<Instant>>,
}

impl Processor for Flaky {
    fn start(&self) -> Result<(), Error> {
        if let Mode::StartError = self.mode {
            return Err(Error::config(
                "flaky.required",
                "is missing (the flaky-processor test plugin says so in start)",
            ));
        }
        *self
            .started
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(Instant::now());
        log::info!("{NAME} started");
        Ok(())
    }

    fn stop(&self, _timeout: Duration) -> Result<(), Error> {
        log::info!("{NAME} stopped");
        Ok(())
    }

    fn status(&self) -> ProcessorStatus {
        let started = *self
            .started
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let Some(started) = started else {
            return ProcessorStatus::Running;
        };
        match self.mode {
            Mode::DieAfter(d) if started.elapsed() >= d => ProcessorStatus::Failed(Error::other(
                "the work thread ended: status database is locked (flaky-processor test plugin)",
            )),
            Mode::FinishAfter(d) if started.elapsed() >= d => ProcessorStatus::Finished,
            _ => ProcessorStatus::Running,
        }
    }
}

struct FlakyPlugin;

impl Plugin for FlakyPlugin {
    const NAME: &'static str = "flaky-processor";

    fn init(ctx: InitContext) -> Result<Self, Error> {
        let mode = ctx
            .conf
            .get("flaky.mode")
            .map(|e| e.value.clone())
            .unwrap_or_default();
        let ms = |prefix: &str| {
            mode.strip_prefix(prefix)
                .and_then(|v| v.parse::<u64>().ok())
                .map(Duration::from_millis)
        };
        let mode = if mode == "start-error" {
            Mode::StartError
        } else if let Some(d) = ms("die-after-ms=") {
            Mode::DieAfter(d)
        } else if let Some(d) = ms("finish-after-ms=") {
            Mode::FinishAfter(d)
        } else {
            Mode::Run
        };
        ctx.registry.register_processor(
            NAME,
            Flaky {
                mode,
                started: Mutex::new(None),
            },
        )?;
        Ok(FlakyPlugin)
    }

    fn shutdown(&self, _timeout: Duration) -> Result<(), Error> {
        Ok(())
    }
}

pseidon_plugin_api::export_plugin!(FlakyPlugin);
