//! `/ready`: ready only when every plugin loaded, every processor runs, and every
//! plugin's readiness checks (`Observer::readiness`, e.g. the Kafka plugin's "brokers
//! answer") pass. The result is cached for [`CACHE_FOR`], so scrapes and probes
//! cannot hammer the brokers; `/health` (liveness) never asks the plugins.

use std::{
    sync::Mutex,
    time::{Duration, Instant},
};

use pseidon_plugin_api::ProcessorStatus;
use serde_json::{Value, json};

use super::State;

/// How long one readiness result is served before the checks run again.
pub const CACHE_FOR: Duration = Duration::from_secs(1);

/// How long each plugin's readiness checks may take.
pub const CHECK_TIMEOUT: Duration = Duration::from_secs(2);

/// The last readiness result and when it was taken.
#[derive(Default)]
pub struct ReadyCache {
    last: Mutex<Option<(Instant, Readiness)>>,
}

/// A readiness result: ready or not, and the JSON body naming what is not.
#[derive(Debug, Clone)]
pub struct Readiness {
    /// Ready.
    pub ready: bool,
    /// `{"status": "ready"|"not ready", "not_ready": [{"what", "detail"}], "checks": [...]}`.
    pub body: Value,
}

/// The readiness of `state`, from the cache if it is younger than [`CACHE_FOR`].
pub fn readiness(state: &State) -> Readiness {
    if state.is_stopping() {
        return evaluate(state);
    }
    let mut last = state.ready.last.lock().unwrap_or_else(|p| p.into_inner());
    if let Some((at, r)) = last.as_ref()
        && at.elapsed() < CACHE_FOR
    {
        return r.clone();
    }
    let r = evaluate(state);
    *last = Some((Instant::now(), r.clone()));
    r
}

fn evaluate(state: &State) -> Readiness {
    let mut not_ready: Vec<Value> = Vec::new();
    let mut checks: Vec<Value> = Vec::new();
    if state.is_stopping() {
        not_ready.push(json!({"what": "host", "detail": "stopping"}));
    }
    if state.plugins_failed > 0 {
        not_ready.push(json!({
            "what": "plugins",
            "detail": format!("{} plugin file(s) failed to load", state.plugins_failed),
        }));
    }
    if !state.started.load(std::sync::atomic::Ordering::SeqCst) {
        not_ready.push(json!({"what": "processors", "detail": "not started yet"}));
    }
    for (name, status) in state.processor_statuses() {
        let detail = match status {
            ProcessorStatus::Running => continue,
            ProcessorStatus::Finished => "finished".to_string(),
            ProcessorStatus::Failed(e) => format!("failed: {e}"),
        };
        not_ready.push(json!({"what": format!("processor {name}"), "detail": detail}));
    }
    for p in &state.plugins {
        for c in p
            .observer
            .map(|o| o.readiness(CHECK_TIMEOUT))
            .unwrap_or_default()
        {
            let what = format!("plugin {}: {}", p.name, c.name);
            checks.push(json!({"what": what, "ready": c.ready, "detail": c.detail}));
            if !c.ready {
                not_ready.push(json!({"what": what, "detail": c.detail}));
            }
        }
    }
    let ready = not_ready.is_empty();
    Readiness {
        ready,
        body: json!({
            "status": if ready { "ready" } else { "not ready" },
            "not_ready": not_ready,
            "checks": checks,
        }),
    }
}
