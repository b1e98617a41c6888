//! The pseidon host: reads the TOML conf, loads the classpath libraries and the
//! plugins of `plugin-dirs`, owns the shared registry, and shuts everything down in
//! reverse order. The `pseidon` binary is a thin CLI over this library; applications
//! embed it directly:
//!
//! ```no_run
//! use std::{path::Path, time::Duration};
//! use pseidon_host::Host;
//!
//! let mut host = Host::load_path(Path::new("/opt/pseidon/conf/pseidon.toml"))?;
//! for failure in host.failures() {
//!     eprintln!("{failure}");
//! }
//! let sink = host.registry().reg_get_wait_sink("pseidon.kafka.util.datasink", Duration::from_secs(5))?;
//! sink.write("test", b"hello")?;
//! host.shutdown();
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![deny(missing_docs)]

mod bounded;
pub mod conf;
pub mod host;
pub mod http;
pub mod loader;
pub mod logging;
pub mod report;
pub mod signals;

pub use conf::{Conf, ConfError, ConfOrigin};
pub use host::{Host, HostError, PluginInfo, ProcessorError, RunningProcessor};
pub use loader::{LoadError, LoadFailure, LoadedPlugin, ShutdownError};
pub use signals::{SignalError, Termination};
