//! Finding and loading plugin files and the classpath libraries they depend on;
//! every failure is one short paragraph naming the file and the reason.

use std::{
    fmt, fs, io,
    os::unix::fs::PermissionsExt,
    path::{Path, PathBuf},
    time::Duration,
};

use abi_stable::library::{LibraryError, lib_header_from_path};
use pseidon_plugin_api::{
    ConfView, Error as PluginError, INTERFACE_VERSION, InitContext, Observer, PluginModRef,
    Registry,
    observe::{OBSERVE_SYMBOL, ObserveFn},
};

use crate::logging;

/// Why a plugin file (or a plugin dir, or a classpath library) was not loaded; one
/// variant per failed operation. Every message names the file.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LoadError {
    /// A path named in `plugin-dirs` or `classpath` does not exist.
    #[error("{}: does not exist (named in `{key}` of the conf)", path.display())]
    Missing {
        /// The path.
        path: PathBuf,
        /// `plugin-dirs` or `classpath`.
        key: &'static str,
    },
    /// A directory could not be listed, or a file's metadata read.
    #[error("{}: cannot be read: {source}", path.display())]
    Inspect {
        /// The path.
        path: PathBuf,
        /// The I/O error.
        source: io::Error,
    },
    /// A plugin file or dir is writable by group or others, and the conf does not allow it.
    #[error(
        "{}: refused because it is writable by {who} (mode {mode:04o}), so others could plant code in the host; \
         fix it with `chmod go-w {}` or set `allow-writable-plugins = true` in the conf",
        path.display(), path.display()
    )]
    Writable {
        /// The file or dir.
        path: PathBuf,
        /// `group`, `others` or `group and others`.
        who: &'static str,
        /// Its permission bits.
        mode: u32,
    },
    /// A directory on the way to a plugin file (or to its symlink's target) is writable
    /// by group or others without being a root-owned sticky dir like `/tmp`.
    #[error(
        "{}: refused because {} (a directory on its path) is writable by {who} (mode {mode:04o}), so others \
         could replace the plugin; fix it with `chmod go-w {}` or set `allow-writable-plugins = true` in the conf",
        path.display(), culprit.display(), culprit.display()
    )]
    WritableAncestor {
        /// The plugin file or dir.
        path: PathBuf,
        /// The directory that others can write.
        culprit: PathBuf,
        /// `group`, `others` or `group and others`.
        who: &'static str,
        /// Its permission bits.
        mode: u32,
    },
    /// A plugin file, its symlink's target, or a directory on their path is owned by a
    /// user other than root and the user running the host.
    #[error(
        "{}: refused because {} is owned by uid {owner} (neither root nor this process's uid {me}), who could \
         replace the plugin; fix it with `chown root {}` or set `allow-writable-plugins = true` in the conf",
        path.display(), culprit.display(), culprit.display()
    )]
    ForeignOwner {
        /// The plugin file or dir.
        path: PathBuf,
        /// The file or directory with the foreign owner.
        culprit: PathBuf,
        /// Its owner's uid.
        owner: u32,
        /// The uid the host runs as.
        me: u32,
    },
    /// A plugin path is not a regular file or a directory (a FIFO, a device, a socket):
    /// refused without opening it.
    #[error("{}: refused because it is {kind}, not a regular file (not opened)", path.display())]
    NotAFile {
        /// The path (as named in the conf or found in a plugin dir).
        path: PathBuf,
        /// What it is: `a FIFO`, `a character device`, ...
        kind: &'static str,
    },
    /// The dynamic loader refused the file (not a shared library, truncated, missing dependency).
    #[error("{}: cannot be loaded as a shared library: {reason}", path.display())]
    Open {
        /// The file.
        path: PathBuf,
        /// The dynamic loader's reason.
        reason: String,
    },
    /// The file is an ELF file shorter than its own headers say (a truncated copy).
    #[error("{}: truncated: the file has {size} bytes but its ELF headers need {needed}", path.display())]
    Truncated {
        /// The file.
        path: PathBuf,
        /// Its size.
        size: u64,
        /// The size its headers describe.
        needed: u64,
    },
    /// The file is a shared library without a pseidon root module.
    #[error("{}: not a pseidon plugin: it exports no abi_stable root module (symbol `{symbol}`)", path.display())]
    NotAPlugin {
        /// The file.
        path: PathBuf,
        /// The symbol that was looked for.
        symbol: String,
    },
    /// The plugin was built against an interface version or layout this host cannot use.
    #[error(
        "{}: incompatible plugin interface: the plugin was built against pseidon-plugin-api {plugin_version}, \
         this host has {host_version}; {detail}",
        path.display()
    )]
    Incompatible {
        /// The file.
        path: PathBuf,
        /// The interface version of this host.
        host_version: String,
        /// The interface version the plugin declares.
        plugin_version: String,
        /// The first mismatch (summarised from abi_stable's report).
        detail: String,
    },
    /// abi_stable refused the file for another reason (summarised).
    #[error("{}: cannot be used as a plugin: {reason}", path.display())]
    Abi {
        /// The file.
        path: PathBuf,
        /// A summary of abi_stable's reason.
        reason: String,
    },
    /// Another file already loaded a plugin of this name.
    #[error("{}: plugin `{plugin}` is already loaded from {}; not loading it twice", path.display(), first.display())]
    DuplicatePlugin {
        /// The file.
        path: PathBuf,
        /// The plugin name.
        plugin: String,
        /// The file it was first loaded from.
        first: PathBuf,
    },
    /// The plugin's `init` returned an error.
    #[error("{}: plugin `{plugin}` failed in init: {error}", path.display())]
    Init {
        /// The file.
        path: PathBuf,
        /// The plugin name.
        plugin: String,
        /// The plugin's error.
        error: Box<PluginError>,
    },
    /// The plugin's `init` panicked (caught on the plugin side; the host lives on).
    #[error("{}: plugin `{plugin}` panicked in init: {message}", path.display())]
    InitPanicked {
        /// The file.
        path: PathBuf,
        /// The plugin name.
        plugin: String,
        /// The panic message.
        message: String,
    },
}

impl LoadError {
    /// The file (or dir) the failure is about.
    pub fn path(&self) -> &Path {
        match self {
            LoadError::Missing { path, .. }
            | LoadError::Inspect { path, .. }
            | LoadError::Writable { path, .. }
            | LoadError::WritableAncestor { path, .. }
            | LoadError::ForeignOwner { path, .. }
            | LoadError::NotAFile { path, .. }
            | LoadError::Open { path, .. }
            | LoadError::Truncated { path, .. }
            | LoadError::NotAPlugin { path, .. }
            | LoadError::Incompatible { path, .. }
            | LoadError::Abi { path, .. }
            | LoadError::DuplicatePlugin { path, .. }
            | LoadError::Init { path, .. }
            | LoadError::InitPanicked { path, .. } => path,
        }
    }
}

/// A file that failed to load, with the reason.
#[derive(Debug)]
pub struct LoadFailure {
    /// The file or dir.
    pub path: PathBuf,
    /// Why.
    pub error: LoadError,
}

impl From<LoadError> for LoadFailure {
    fn from(error: LoadError) -> Self {
        LoadFailure {
            path: error.path().to_path_buf(),
            error,
        }
    }
}

impl fmt::Display for LoadFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.error, f)
    }
}

/// Why a plugin's `shutdown` did not end well; one variant per failed operation.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ShutdownError {
    /// `shutdown` returned an error (or panicked, caught on the plugin side).
    #[error("plugin `{plugin}` ({}) failed to shut down: {error}", path.display())]
    Failed {
        /// The plugin name.
        plugin: String,
        /// Its file.
        path: PathBuf,
        /// The plugin's error.
        error: Box<PluginError>,
    },
    /// `shutdown` did not return within the timeout; the host moved on.
    #[error("plugin `{plugin}` ({}) did not shut down within {} ms; moving on", path.display(), timeout.as_millis())]
    TimedOut {
        /// The plugin name.
        plugin: String,
        /// Its file.
        path: PathBuf,
        /// The timeout.
        timeout: Duration,
    },
    /// No thread could be started to run `shutdown`.
    #[error("plugin `{plugin}`: cannot start the shutdown thread: {source}")]
    Thread {
        /// The plugin name.
        plugin: String,
        /// The I/O error.
        source: io::Error,
    },
}

/// A plugin that loaded and whose `init` succeeded.
#[derive(Clone)]
pub struct LoadedPlugin {
    path: PathBuf,
    name: String,
    version: String,
    module: PluginModRef,
    /// Its observability extension; `None` for a plugin built without it.
    observer: Option<Observer>,
}

impl fmt::Debug for LoadedPlugin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LoadedPlugin")
            .field("path", &self.path)
            .field("name", &self.name)
            .field("version", &self.version)
            .finish_non_exhaustive()
    }
}

impl LoadedPlugin {
    /// The file it was loaded from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The plugin's name (also the owner of its registrations).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The plugin's own version.
    pub fn version(&self) -> &str {
        &self.version
    }

    /// Its observability extension (metrics and readiness checks); `None` for a
    /// plugin built without it. Valid while the plugin is loaded (use it before
    /// [`crate::Host::shutdown`]).
    pub fn observer(&self) -> Option<Observer> {
        self.observer
    }

    /// Calls the plugin's `shutdown` in a thread of its own and waits for it at most
    /// `timeout` (the plugin is told the same timeout).
    pub fn shutdown(&self, timeout: Duration) -> Result<(), ShutdownError> {
        let shutdown = self.module.shutdown();
        let timeout_ms = u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX);
        let done = crate::bounded::call_with_timeout(
            format!("shutdown-{}", self.name),
            timeout,
            move || shutdown(timeout_ms).into_result(),
        )
        .map_err(|source| ShutdownError::Thread {
            plugin: self.name.clone(),
            source,
        })?;
        match done {
            Some(Ok(())) => Ok(()),
            Some(Err(e)) => Err(ShutdownError::Failed {
                plugin: self.name.clone(),
                path: self.path.clone(),
                error: Box::new(e.into()),
            }),
            None => Err(ShutdownError::TimedOut {
                plugin: self.name.clone(),
                path: self.path.clone(),
                timeout,
            }),
        }
    }
}

/// Lists the plugin files of `plugin-dirs`: every `*.so` of each dir in sorted
/// order, or the file itself, in the order of the conf. Missing and (unless
/// `allow_writable`) group/other-writable paths become failures.
pub fn plugin_files(entries: &[PathBuf], allow_writable: bool) -> (Vec<PathBuf>, Vec<LoadFailure>) {
    collect_files(entries, "plugin-dirs", allow_writable)
}

fn collect_files(
    entries: &[PathBuf],
    key: &'static str,
    allow_writable: bool,
) -> (Vec<PathBuf>, Vec<LoadFailure>) {
    let mut files: Vec<PathBuf> = Vec::new();
    let mut failures = Vec::new();
    for entry in entries {
        match list_entry(entry, key, allow_writable) {
            Ok((found, refused)) => {
                for f in found {
                    if !files.contains(&f) {
                        files.push(f);
                    }
                }
                failures.extend(refused.into_iter().map(LoadFailure::from));
            }
            Err(e) => failures.push(e.into()),
        }
    }
    (files, failures)
}

/// The `*.so` files of one conf entry, and the files refused for their mode or kind.
fn list_entry(
    entry: &Path,
    key: &'static str,
    allow_writable: bool,
) -> Result<(Vec<PathBuf>, Vec<LoadError>), LoadError> {
    // Follows a symlink (to see what will be opened) but never opens the entry.
    let meta = fs::metadata(entry).map_err(|source| {
        if source.kind() == io::ErrorKind::NotFound {
            LoadError::Missing {
                path: entry.to_path_buf(),
                key,
            }
        } else {
            LoadError::Inspect {
                path: entry.to_path_buf(),
                source,
            }
        }
    })?;
    check_kind(entry, &meta)?;
    let mut trusted = Trusted::default();
    if !allow_writable {
        trusted.check(entry)?;
    }
    if !meta.is_dir() {
        return Ok((vec![entry.to_path_buf()], Vec::new()));
    }
    let inspect = |source| LoadError::Inspect {
        path: entry.to_path_buf(),
        source,
    };
    let mut found = Vec::new();
    for item in fs::read_dir(entry).map_err(inspect)? {
        let path = item.map_err(inspect)?.path();
        if path.extension().is_some_and(|e| e == "so") {
            found.push(path);
        }
    }
    found.sort();
    let mut files = Vec::new();
    let mut refused = Vec::new();
    for path in found {
        // Every `*.so` is either loaded or listed as failed: a dangling link, a link to
        // a device or a FIFO is not skipped silently.
        let checked = fs::metadata(&path)
            .map_err(|source| LoadError::Inspect {
                path: path.clone(),
                source,
            })
            .and_then(|meta| check_kind(&path, &meta))
            .and_then(|()| {
                if allow_writable {
                    Ok(())
                } else {
                    trusted.check(&path)
                }
            });
        match checked {
            Ok(()) => files.push(path),
            Err(e) => refused.push(e),
        }
    }
    Ok((files, refused))
}

/// Refuses anything but a regular file or a directory (`meta` follows symlinks).
fn check_kind(path: &Path, meta: &fs::Metadata) -> Result<(), LoadError> {
    use std::os::unix::fs::FileTypeExt as _;
    let t = meta.file_type();
    let kind = if t.is_file() || t.is_dir() {
        return Ok(());
    } else if t.is_fifo() {
        "a FIFO"
    } else if t.is_char_device() {
        "a character device"
    } else if t.is_block_device() {
        "a block device"
    } else if t.is_socket() {
        "a socket"
    } else {
        "not a file"
    };
    Err(LoadError::NotAFile {
        path: path.to_path_buf(),
        kind,
    })
}

/// The check of ssh's `StrictModes`: a plugin path is trusted if the file itself,
/// its symlink's target, and every directory on the way to either (as named and
/// resolved) is writable only by its owner (a root-owned sticky dir like `/tmp` may
/// be writable by all: nobody can replace another's entry in it), and owned by root
/// or by the user running the host. Directories already found trusted are cached.
#[derive(Default)]
struct Trusted {
    dirs: std::collections::HashSet<PathBuf>,
}

impl Trusted {
    fn check(&mut self, path: &Path) -> Result<(), LoadError> {
        let inspect = |source| LoadError::Inspect {
            path: path.to_path_buf(),
            source,
        };
        let absolute = std::path::absolute(path).map_err(inspect)?;
        let resolved = fs::canonicalize(path).map_err(inspect)?;
        // The entry as named: its dirs (where a symlink could be swapped), then the
        // resolved file and its dirs.
        if let Some(parent) = absolute.parent() {
            self.check_dirs(path, parent)?;
        }
        let meta = fs::metadata(&resolved).map_err(inspect)?;
        check_owner(path, &resolved, &meta)?;
        if meta.is_dir() {
            self.check_dir(path, &resolved, &meta)?;
        } else {
            check_not_writable_file(path, &resolved, &meta)?;
        }
        if let Some(parent) = resolved.parent() {
            self.check_dirs(path, parent)?;
        }
        Ok(())
    }

    /// Checks `dir` and all its ancestors (following symlinks of each prefix).
    fn check_dirs(&mut self, plugin: &Path, dir: &Path) -> Result<(), LoadError> {
        for d in dir.ancestors() {
            if d.as_os_str().is_empty() || self.dirs.contains(d) {
                continue;
            }
            let meta = fs::metadata(d).map_err(|source| LoadError::Inspect {
                path: d.to_path_buf(),
                source,
            })?;
            check_owner(plugin, d, &meta)?;
            self.check_dir(plugin, d, &meta)?;
        }
        Ok(())
    }

    fn check_dir(
        &mut self,
        plugin: &Path,
        dir: &Path,
        meta: &fs::Metadata,
    ) -> Result<(), LoadError> {
        use std::os::unix::fs::MetadataExt as _;
        let mode = meta.mode() & 0o7777;
        let sticky_root = mode & 0o1000 != 0 && meta.uid() == 0;
        if let Some(who) = writable_by(mode)
            && !sticky_root
        {
            // The plugin dir named in the conf keeps the message users know.
            if dir == plugin {
                return Err(LoadError::Writable {
                    path: plugin.to_path_buf(),
                    who,
                    mode,
                });
            }
            return Err(LoadError::WritableAncestor {
                path: plugin.to_path_buf(),
                culprit: dir.to_path_buf(),
                who,
                mode,
            });
        }
        self.dirs.insert(dir.to_path_buf());
        Ok(())
    }
}

/// `group`, `others` or both when `mode` lets them write.
fn writable_by(mode: u32) -> Option<&'static str> {
    match (mode & 0o020 != 0, mode & 0o002 != 0) {
        (false, false) => None,
        (true, false) => Some("group"),
        (false, true) => Some("others"),
        (true, true) => Some("group and others"),
    }
}

unsafe extern "C" {
    /// The C library's `geteuid(2)` (std links it): no preconditions, cannot fail.
    safe fn geteuid() -> u32;
}

/// Refuses a file or dir owned by anyone but root and the user running the host.
fn check_owner(plugin: &Path, culprit: &Path, meta: &fs::Metadata) -> Result<(), LoadError> {
    use std::os::unix::fs::MetadataExt as _;
    let me = geteuid();
    let owner = meta.uid();
    if owner == 0 || owner == me {
        return Ok(());
    }
    Err(LoadError::ForeignOwner {
        path: plugin.to_path_buf(),
        culprit: culprit.to_path_buf(),
        owner,
        me,
    })
}

/// Refuses a plugin file (or a symlink's target) that group or others can write.
fn check_not_writable_file(
    plugin: &Path,
    resolved: &Path,
    meta: &fs::Metadata,
) -> Result<(), LoadError> {
    let mode = meta.permissions().mode() & 0o7777;
    let Some(who) = writable_by(mode) else {
        return Ok(());
    };
    if resolved == plugin || fs::symlink_metadata(plugin).is_ok_and(|m| !m.is_symlink()) {
        return Err(LoadError::Writable {
            path: plugin.to_path_buf(),
            who,
            mode,
        });
    }
    Err(LoadError::WritableAncestor {
        path: plugin.to_path_buf(),
        culprit: resolved.to_path_buf(),
        who,
        mode,
    })
}

/// Loads the shared libraries of `classpath` with `RTLD_NOW | RTLD_GLOBAL`, so that
/// plugins loaded afterwards resolve their symbols against them. Libraries that
/// depend on each other load in whatever order works. They are never unloaded.
pub fn load_classpath(
    entries: &[PathBuf],
    allow_writable: bool,
) -> (Vec<PathBuf>, Vec<LoadFailure>) {
    use libloading::os::unix::{Library, RTLD_GLOBAL, RTLD_NOW};
    let (mut pending, mut failures) = collect_files(entries, "classpath", allow_writable);
    let mut loaded = Vec::new();
    loop {
        let mut still_pending = Vec::new();
        let mut errors = Vec::new();
        let mut loaded_this_pass = 0;
        for path in pending {
            // SAFETY: loading a library runs its initialisers; the conf names these
            // libraries as trusted (and the writable check above guards them).
            match unsafe { Library::open(Some(&path), RTLD_NOW | RTLD_GLOBAL) } {
                Ok(lib) => {
                    tracing::debug!(path = %path.display(), "loaded classpath library");
                    // Never unloaded: plugins resolve against it for the life of the process.
                    std::mem::forget(lib);
                    loaded.push(path);
                    loaded_this_pass += 1;
                }
                Err(e) => {
                    errors.push(LoadError::Open {
                        reason: strip_path(&e.to_string(), &path),
                        path: path.clone(),
                    });
                    still_pending.push(path);
                }
            }
        }
        if still_pending.is_empty() || loaded_this_pass == 0 {
            failures.extend(errors.into_iter().map(LoadFailure::from));
            return (loaded, failures);
        }
        // Another pass: what failed may depend on what loaded in this one.
        pending = still_pending;
    }
}

/// The observability extension of the plugin loaded from `path`, if it exports one
/// whose layout matches this host's (a mismatch is logged; the plugin still runs).
fn observer_of(path: &Path, plugin: &str) -> Option<Observer> {
    use libloading::os::unix::{Library, RTLD_NOW};
    // SAFETY: the library is loaded already (abi_stable keeps it for the process's
    // life): dlopen hands back the same handle and runs no initialiser again.
    let lib = unsafe { Library::open(Some(path), RTLD_NOW) }.ok()?;
    // SAFETY: `export_plugin!` declares the symbol with exactly this signature; its
    // layout is checked with abi_stable below before anything else is called.
    let symbol = unsafe { lib.get::<ObserveFn>(OBSERVE_SYMBOL) }
        .ok()
        .map(|f| *f);
    // The handle stays open: the functions live in the library.
    std::mem::forget(lib);
    match Observer::from_export(symbol?()) {
        Ok(o) => Some(o),
        Err(detail) => {
            tracing::warn!(plugin, path = %path.display(), "the plugin's metrics and readiness are left unused: layout mismatch: {detail}");
            None
        }
    }
}

/// Loads one plugin file and calls its `init` with a registry handle owned by the
/// plugin's name, the conf view and the file's path. `already_loaded` (name, file)
/// refuses a second plugin of the same name before its `init` runs.
pub fn load_plugin(
    path: &Path,
    registry: &Registry,
    conf: &ConfView,
    already_loaded: &[LoadedPlugin],
) -> Result<LoadedPlugin, LoadError> {
    check_elf_size(path)?;
    let header = lib_header_from_path(path).map_err(|e| library_error(path, e))?;
    let module = header.init_root_module::<PluginModRef>().map_err(|e| {
        let plugin_version = header.version_strings().version.to_string();
        match e {
            LibraryError::AbiInstability(report) => LoadError::Incompatible {
                path: path.to_path_buf(),
                host_version: INTERFACE_VERSION.to_string(),
                plugin_version,
                detail: format!("first mismatch: {}", first_mismatch(&report.to_string())),
            },
            other => library_error(path, other),
        }
    })?;
    let name = module.name()().to_string();
    let version = module.version()().to_string();
    if let Some(first) = already_loaded.iter().find(|p| p.name == name) {
        return Err(LoadError::DuplicatePlugin {
            path: path.to_path_buf(),
            plugin: name,
            first: first.path.clone(),
        });
    }
    let ctx = InitContext {
        registry: registry.with_owner(&name),
        conf: conf.clone(),
        plugin_path: path.to_path_buf(),
    };
    let ffi = ctx.to_ffi(logging::log_callback, logging::max_level());
    match module.init()(ffi).into_result().map_err(PluginError::from) {
        Ok(()) => Ok(LoadedPlugin {
            observer: observer_of(path, &name),
            path: path.to_path_buf(),
            name,
            version,
            module,
        }),
        Err(PluginError::Panicked { message, .. }) => Err(LoadError::InitPanicked {
            path: path.to_path_buf(),
            plugin: name,
            message,
        }),
        Err(error) => Err(LoadError::Init {
            path: path.to_path_buf(),
            plugin: name,
            error: Box::new(error),
        }),
    }
}

/// Refuses a truncated ELF file before the dynamic loader maps it: touching the
/// pages past the end of a truncated mapping kills the process with SIGBUS.
/// Files that are not 64-bit little-endian ELF are left to the dynamic loader.
fn check_elf_size(path: &Path) -> Result<(), LoadError> {
    use std::io::Read as _;
    let inspect = |source| LoadError::Inspect {
        path: path.to_path_buf(),
        source,
    };
    let file = fs::File::open(path).map_err(inspect)?;
    let size = file.metadata().map_err(inspect)?.len();
    // The ELF header and the program header table (which follows it in practice);
    // at most 1 MiB, never the whole file.
    let mut head = Vec::new();
    file.take(1 << 20).read_to_end(&mut head).map_err(inspect)?;
    let Some(needed) = elf_extent(&head) else {
        return Ok(());
    };
    if size < needed {
        return Err(LoadError::Truncated {
            path: path.to_path_buf(),
            size,
            needed,
        });
    }
    Ok(())
}

/// The number of bytes a 64-bit little-endian ELF file must have according to its
/// own headers (program segments and section header table); `None` if `bytes` is
/// not such a file. A header cut short needs at least 64 bytes.
fn elf_extent(bytes: &[u8]) -> Option<u64> {
    if bytes.len() < 6 || &bytes[..4] != b"\x7fELF" || bytes[4] != 2 || bytes[5] != 1 {
        return None;
    }
    let u16_at = |o: usize| {
        bytes
            .get(o..o + 2)
            .map(|b| u64::from(u16::from_le_bytes([b[0], b[1]])))
    };
    let u64_at = |o: u64| {
        let o = usize::try_from(o).ok()?;
        let b: [u8; 8] = bytes.get(o..o.checked_add(8)?)?.try_into().ok()?;
        Some(u64::from_le_bytes(b))
    };
    let (Some(phoff), Some(shoff), Some(phentsize), Some(phnum), Some(shentsize), Some(shnum)) = (
        u64_at(0x20),
        u64_at(0x28),
        u16_at(0x36),
        u16_at(0x38),
        u16_at(0x3a),
        u16_at(0x3c),
    ) else {
        return Some(64);
    };
    let mut needed = 64u64
        .max(phoff.saturating_add(phentsize.saturating_mul(phnum)))
        .max(shoff.saturating_add(shentsize.saturating_mul(shnum)));
    for i in 0..phnum {
        let ph = phoff.saturating_add(i.saturating_mul(phentsize));
        if let (Some(offset), Some(filesz)) =
            (u64_at(ph.saturating_add(8)), u64_at(ph.saturating_add(32)))
        {
            needed = needed.max(offset.saturating_add(filesz));
        }
    }
    Some(needed)
}

/// Turns abi_stable's (multi-line) error into a one-paragraph [`LoadError`].
fn library_error(path: &Path, e: LibraryError) -> LoadError {
    let path = path.to_path_buf();
    match e {
        LibraryError::OpenError { err, .. } => LoadError::Open {
            reason: strip_path(&err.to_string(), &path),
            path,
        },
        LibraryError::GetSymbolError { symbol, .. } => LoadError::NotAPlugin {
            path,
            symbol: String::from_utf8_lossy(&symbol)
                .trim_end_matches('\0')
                .to_string(),
        },
        LibraryError::IncompatibleVersionNumber {
            expected_version,
            actual_version,
            ..
        } => LoadError::Incompatible {
            path,
            host_version: expected_version.to_string(),
            plugin_version: actual_version.to_string(),
            detail:
                "this host needs plugins built against the same (or a newer, compatible) interface"
                    .into(),
        },
        LibraryError::RootModule { err, .. } => LoadError::Abi {
            path,
            reason: format!(
                "its root module failed to initialise: {}",
                summarise(&err.to_string())
            ),
        },
        LibraryError::AbiInstability(report) => LoadError::Incompatible {
            path,
            host_version: INTERFACE_VERSION.to_string(),
            plugin_version: "an unknown version".into(),
            detail: format!("first mismatch: {}", first_mismatch(&report.to_string())),
        },
        other => LoadError::Abi {
            path,
            reason: summarise(&other.to_string()),
        },
    }
}

/// The dynamic loader repeats the path in its message; keep the reason only.
fn strip_path(reason: &str, path: &Path) -> String {
    let p = path.display().to_string();
    let r = reason.trim();
    r.strip_prefix(&p)
        .map(|rest| rest.trim_start_matches(':').trim().to_string())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| r.to_string())
}

/// The first few non-empty lines of a long message, on one line, at most 300 characters.
fn summarise(text: &str) -> String {
    let joined = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .take(3)
        .collect::<Vec<_>>()
        .join(" ");
    truncate(&joined, 300)
}

fn truncate(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_string()
    } else {
        let mut t: String = s.chars().take(max).collect();
        t.push('…');
        t
    }
}

/// Summarises an AbiInstability report (hundreds to thousands of lines) into its
/// first error: what mismatched, in which type, expected and found.
fn first_mismatch(report: &str) -> String {
    let lines: Vec<&str> = report
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    let after = |from: usize, heading: &str| -> Option<&str> {
        let at = lines.iter().skip(from).position(|l| *l == heading)? + from;
        lines.get(at + 1).copied()
    };
    let Some(err_at) = lines.iter().position(|l| l.starts_with("Error:")) else {
        return summarise(report);
    };
    let what = lines[err_at].trim_start_matches("Error:").trim();
    let in_type = lines
        .iter()
        .position(|l| *l == "Layout of expected type:")
        .and_then(|at| lines.iter().skip(at).find(|l| l.starts_with("type:")))
        .map(|l| format!(" in `{}`", l.trim_start_matches("type:").trim()))
        .unwrap_or_default();
    let mut s = format!("{what}{in_type}");
    if let (Some(expected), Some(found)) = (after(err_at, "Expected:"), after(err_at, "Found:")) {
        s.push_str(&format!(" (expected {expected}, found {found})"));
    }
    truncate(&s, 300)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summaries_are_short_and_single_line() {
        let long = format!("\n\nfirst\n  second\nthird\n{}", "x\n".repeat(5000));
        let s = summarise(&long);
        assert_eq!(s, "first second third");
        let report = "Compared <this>:\n  type:X\nLayout of expected type:\n  --- Type Layout ---\n  type:PluginMod\n\
                      size:32\n\n\nError:mismatched package\nExpected:\n    api\nFound:\n    other\n";
        assert_eq!(
            first_mismatch(report),
            "mismatched package in `PluginMod` (expected api, found other)"
        );
        assert_eq!(first_mismatch("odd\nreport"), "odd report");
        assert!(truncate(&"y".repeat(1000), 300).chars().count() == 301);
    }

    #[test]
    fn elf_extent_fits_a_whole_file_and_exceeds_a_truncated_one() {
        let exe = std::env::current_exe().unwrap();
        let bytes = fs::read(&exe).unwrap();
        let needed = elf_extent(&bytes).unwrap();
        assert!(needed <= bytes.len() as u64 && needed > bytes.len() as u64 / 2);
        assert!(check_elf_size(&exe).is_ok());
        assert_eq!(elf_extent(&bytes[..40]), Some(64));
        assert_eq!(elf_extent(b"#!/bin/sh\n"), None);
    }

    #[test]
    fn dlerror_path_is_stripped() {
        assert_eq!(
            strip_path("/a/b.so: file too short", Path::new("/a/b.so")),
            "file too short"
        );
        assert_eq!(strip_path("weird", Path::new("/a/b.so")), "weird");
    }
}
