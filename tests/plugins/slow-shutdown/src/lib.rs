//! Test plugin `slow-shutdown`: its `shutdown` sleeps `slow-shutdown.sleep-ms`
//! (default 30000) milliseconds, far past any test's shutdown timeout.

use std::time::Duration;

use pseidon_plugin_api::{Error, InitContext, Plugin};

struct SlowShutdown {
    sleep: Duration,
}

impl Plugin for SlowShutdown {
    const NAME: &'static str = "slow-shutdown";

    fn init(ctx: InitContext) -> Result<Self, Error> {
        let ms = ctx
            .conf
            .get("slow-shutdown.sleep-ms")
            .and_then(|e| e.value.parse::<u64>().ok())
            .unwrap_or(30_000);
        Ok(SlowShutdown {
            sleep: Duration::from_millis(ms),
        })
    }

    fn shutdown(&self, _timeout: Duration) -> Result<(), Error> {
        std::thread::sleep(self.sleep);
        Ok(())
    }
}

pseidon_plugin_api::export_plugin!(SlowShutdown);
