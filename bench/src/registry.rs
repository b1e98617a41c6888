//! How fast `reg_get_wait` wakes after a late `register` from another thread, and
//! how long loading one plugin takes (dlopen, layout check, `init`).

use std::{
    fmt, fs,
    os::unix::fs::PermissionsExt,
    path::{Path, PathBuf},
    sync::mpsc,
    thread,
    time::{Duration, Instant},
};

use pseidon_host::loader;
use pseidon_plugin_api::{ConfView, DataSink, Error, FlushReport, Record, Registry};

/// Why a benchmark could not run.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BenchError {
    /// The registrar thread could not be started or went away.
    #[error("registrar thread: {0}")]
    Thread(String),
    /// `reg_get_wait` failed.
    #[error("reg_get_wait: {0}")]
    Registry(#[from] Error),
    /// The plugin copies could not be made.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The plugin did not load.
    #[error("{0}")]
    Load(#[from] loader::LoadError),
}

/// Percentiles of a set of durations.
#[derive(Debug, Clone, Copy)]
pub struct Summary {
    /// Number of samples.
    pub samples: usize,
    /// Median.
    pub p50: Duration,
    /// 99th percentile.
    pub p99: Duration,
    /// Largest.
    pub max: Duration,
}

impl Summary {
    /// Summarises `samples` (at least one).
    pub fn of(mut samples: Vec<Duration>) -> Summary {
        samples.sort();
        let at = |q: f64| {
            let i = ((samples.len() as f64 - 1.0) * q).round() as usize;
            samples.get(i).copied().unwrap_or_default()
        };
        Summary {
            samples: samples.len(),
            p50: at(0.50),
            p99: at(0.99),
            max: samples.last().copied().unwrap_or_default(),
        }
    }
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} samples: p50={:.1} us p99={:.1} us max={:.1} us",
            self.samples,
            us(self.p50),
            us(self.p99),
            us(self.max)
        )
    }
}

/// Microseconds as a float.
pub fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

/// Milliseconds as a float.
pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

struct NullSink;

impl DataSink for NullSink {
    fn write_batch(&self, _records: &[Record<'_>], _first_id: u64) -> Result<(), (u64, Error)> {
        Ok(())
    }

    fn flush(&self, _timeout: Duration) -> Result<FlushReport, Error> {
        Ok(FlushReport::default())
    }
}

/// For each sample, this thread blocks in `reg_get_wait` on a fresh name; a
/// registrar thread waits `lead` (so the waiter is surely asleep), notes the time and
/// registers the name. The sample is the time from just before `register` to the
/// waiter's return.
pub fn wakeup_latency(samples: usize, lead: Duration) -> Result<Summary, BenchError> {
    let registry = Registry::new("bench");
    let (to_registrar, names) = mpsc::channel::<String>();
    let (to_waiter, stamps) = mpsc::channel::<Instant>();
    let registrar = registry.with_owner("bench-registrar");
    let worker = thread::Builder::new()
        .name("registrar".into())
        .spawn(move || {
            for name in names {
                thread::sleep(lead);
                let t0 = Instant::now();
                if registrar.register_sink(&name, NullSink).is_err() || to_waiter.send(t0).is_err()
                {
                    break;
                }
            }
        })
        .map_err(|e| BenchError::Thread(e.to_string()))?;
    let mut out = Vec::with_capacity(samples);
    for i in 0..samples {
        let name = format!("bench.wakeup.{i}");
        to_registrar
            .send(name.clone())
            .map_err(|e| BenchError::Thread(e.to_string()))?;
        registry.reg_get_wait(&name, Duration::from_secs(5))?;
        let t1 = Instant::now();
        let t0 = stamps
            .recv()
            .map_err(|e| BenchError::Thread(e.to_string()))?;
        out.push(t1.saturating_duration_since(t0));
    }
    drop(to_registrar);
    let _ = worker.join();
    Ok(Summary::of(out))
}

/// Loads `copies` fresh copies of the plugin at `plugin` (each a new file, so each
/// is a real dlopen), each into a fresh registry, and times
/// `loader::load_plugin` (dlopen + abi_stable layout check + `init`).
pub fn plugin_load(plugin: &Path, copies: usize) -> Result<Summary, BenchError> {
    let dir = std::env::temp_dir().join(format!("pseidon-bench-{}", std::process::id()));
    let io = |path: &Path| {
        let path = path.display().to_string();
        move |source| BenchError::Io { path, source }
    };
    fs::create_dir_all(&dir).map_err(io(&dir))?;
    fs::set_permissions(&dir, fs::Permissions::from_mode(0o755)).map_err(io(&dir))?;
    let mut files: Vec<PathBuf> = Vec::new();
    for i in 0..copies {
        let to = dir.join(format!("{i:03}.so"));
        fs::copy(plugin, &to).map_err(io(&to))?;
        files.push(to);
    }
    let mut out = Vec::with_capacity(copies);
    for f in &files {
        let registry = Registry::new("host");
        let t0 = Instant::now();
        let loaded = loader::load_plugin(f, &registry, &ConfView::default(), &[]);
        out.push(t0.elapsed());
        let loaded = loaded?;
        let _ = loaded.shutdown(Duration::from_secs(5));
    }
    let _ = fs::remove_dir_all(&dir);
    Ok(Summary::of(out))
}
