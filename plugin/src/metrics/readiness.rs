//! Readiness of the datasink and the datasource: one check each. A client in use is
//! ready when its latest statistics show a broker `UP`; otherwise (never used yet, no
//! statistics yet, or no broker up in them) a metadata request within the host's
//! timeout decides. A check that fails names the bootstrap servers and librdkafka's
//! error.

use std::time::Duration;

use pseidon_plugin_api::metrics::Check;

use super::stats::ClientStats;
use crate::{config::Config, metadata};

/// The check `name` of a client of `config` whose latest statistics are `stats`.
pub(crate) fn check(
    name: String,
    config: &Config,
    stats: Option<&ClientStats>,
    timeout: Duration,
) -> Check {
    let bootstrap = config.kafka_prop("bootstrap.servers").unwrap_or("(unset)");
    if let Some(s) = stats {
        let up: Vec<&str> = s
            .brokers
            .values()
            .filter(|b| b.state == "UP" && b.nodeid >= 0)
            .map(|b| b.name.as_str())
            .collect();
        if !up.is_empty() {
            return Check {
                name,
                ready: true,
                detail: format!(
                    "bootstrap.servers = {bootstrap}: brokers up: {}",
                    up.join(", ")
                ),
            };
        }
    }
    match metadata::fetch(config, None, timeout) {
        Ok(m) => Check {
            name,
            ready: true,
            detail: format!(
                "bootstrap.servers = {bootstrap}: metadata answered ({} broker(s))",
                m.brokers.len()
            ),
        },
        Err(e) => Check {
            name,
            ready: false,
            detail: format!("bootstrap.servers = {bootstrap}: {e}"),
        },
    }
}
