//! The host conf: a TOML file with the host's own keys, handed whole (flattened to
//! dotted keys) to every plugin as a [`ConfView`], plus [`CONF_DIR_KEY`] (the conf
//! file's directory, against which plugins resolve their relative paths).
//!
//! Also the conf's checks that need no plugin: wrong types of host keys, keys set
//! twice, and likely typos of the known tables and prefixes ([`Conf::typos`]:
//! `[pseidon_kafka]`, `[kafak]`, `"kafak.acks"`, `plugin_dirs`), which the host warns
//! about, or refuses in strict mode.

use std::{
    fmt, fs, io,
    net::SocketAddr,
    path::{Path, PathBuf},
    time::Duration,
};

use pseidon_plugin_api::{ConfEntry, ConfKind, ConfView};

/// Where the conf is read from when neither `--conf` nor `PSEIDON_CONF` says otherwise.
pub const DEFAULT_CONF_PATH: &str = "/opt/pseidon/conf/pseidon.toml";

/// The environment variable that overrides the default conf path.
pub const CONF_ENV: &str = "PSEIDON_CONF";

/// The host's own top-level keys.
pub const HOST_KEYS: [&str; 6] = [
    "plugin-dirs",
    "classpath",
    "strict",
    "shutdown-timeout-ms",
    "allow-writable-plugins",
    "http-listen",
];

/// The host key of the HTTP endpoint's address (see [`Conf::http_listen`]).
pub const HTTP_LISTEN_KEY: &str = "http-listen";

/// Parses an `http-listen` value: an IP literal and a port (`127.0.0.1:9644`,
/// `[::1]:9644`). Host names are refused, so nothing is ever resolved; the error
/// says what is expected.
///
/// ```
/// use pseidon_host::conf::parse_listen;
/// assert_eq!(parse_listen("127.0.0.1:9644").unwrap().port(), 9644);
/// assert!(parse_listen("localhost:9644").unwrap_err().contains("IP address"));
/// ```
pub fn parse_listen(value: &str) -> Result<SocketAddr, String> {
    value.trim().parse::<SocketAddr>().map_err(|_| {
        format!(
            "`{value}` is not an IP address and port (e.g. \"127.0.0.1:9644\" or \"[::1]:9644\"; host names are not resolved)"
        )
    })
}

/// The key of the entry the host adds to every plugin's conf view: the conf file's
/// directory, absolute. Plugins resolve their relative paths against it (the Kafka
/// plugin its `pseidon-kafka.status-db`), as the host does `plugin-dirs`. The conf
/// file itself may not set any `pseidon-host.` key.
pub const CONF_DIR_KEY: &str = "pseidon-host.conf-dir";

/// Tables (and dotted-key prefixes) that the shipped plugins read: a name one or two
/// edits away from one of these, or from a host key, is reported as a likely typo.
pub const KNOWN_TABLES: [&str; 2] = ["kafka", "pseidon-kafka"];

/// The default of `shutdown-timeout-ms`.
pub const DEFAULT_SHUTDOWN_TIMEOUT_MS: u64 = 10_000;

/// What chose the conf path: error messages say it, so a user knows what to change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConfOrigin {
    /// The `--conf` flag.
    Flag,
    /// The `PSEIDON_CONF` environment variable.
    Env,
    /// Neither: the default path.
    Default,
    /// An application embedding the host passed it.
    Caller,
}

impl fmt::Display for ConfOrigin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ConfOrigin::Flag => "chosen by the --conf flag",
            ConfOrigin::Env => "chosen by the PSEIDON_CONF environment variable",
            ConfOrigin::Default => {
                "the default path; choose another with --conf PATH or PSEIDON_CONF"
            }
            ConfOrigin::Caller => "given by the application",
        })
    }
}

/// Picks the conf path: the `--conf` flag wins over `PSEIDON_CONF`, which wins over
/// [`DEFAULT_CONF_PATH`]. An empty `PSEIDON_CONF` counts as unset.
///
/// ```
/// use std::path::Path;
/// use pseidon_host::conf::{resolve_path, ConfOrigin};
/// let (path, origin) = resolve_path(Some(Path::new("/etc/p.toml")));
/// assert_eq!((path.as_path(), origin), (Path::new("/etc/p.toml"), ConfOrigin::Flag));
/// ```
pub fn resolve_path(flag: Option<&Path>) -> (PathBuf, ConfOrigin) {
    if let Some(p) = flag {
        return (p.to_path_buf(), ConfOrigin::Flag);
    }
    match std::env::var_os(CONF_ENV) {
        Some(v) if !v.is_empty() => (PathBuf::from(v), ConfOrigin::Env),
        _ => (PathBuf::from(DEFAULT_CONF_PATH), ConfOrigin::Default),
    }
}

/// Why the conf could not be used; one variant per failed operation.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfError {
    /// The conf file does not exist.
    #[error("conf file {} does not exist ({origin})", path.display())]
    NotFound {
        /// The path that was tried.
        path: PathBuf,
        /// What chose it.
        origin: ConfOrigin,
    },
    /// The conf file exists but could not be read.
    #[error("cannot read conf file {} ({origin}): {source}", path.display())]
    Read {
        /// The path that was tried.
        path: PathBuf,
        /// What chose it.
        origin: ConfOrigin,
        /// The I/O error.
        source: io::Error,
    },
    /// The file is not valid TOML.
    #[error("malformed TOML in {} at line {line}, column {column}: {message}", path.display())]
    Parse {
        /// The conf file.
        path: PathBuf,
        /// 1-based line of the error.
        line: usize,
        /// 1-based column of the error.
        column: usize,
        /// The parser's message.
        message: String,
    },
    /// A host key has a value of the wrong type.
    #[error("conf key `{key}` in {} must be {expected}, not {found}", path.display())]
    WrongType {
        /// The conf file.
        path: PathBuf,
        /// The key.
        key: String,
        /// What the key needs.
        expected: &'static str,
        /// What the file has.
        found: String,
    },
    /// Two entries of the file name the same dotted key (a quoted `"kafka.acks"` and
    /// `acks` under `[kafka]`): which one wins would be a guess.
    #[error("conf key `{key}` is set twice in {} (once as a dotted key, once in a table); keep one", path.display())]
    DuplicateKey {
        /// The conf file.
        path: PathBuf,
        /// The flattened key.
        key: String,
    },
    /// A table or top-level key is one or two edits away from a known one, in strict
    /// mode (otherwise only a warning).
    #[error("{typo} (strict mode refuses it)")]
    Typo {
        /// The likely typo.
        typo: Typo,
    },
    /// A host key has a value of the right type that cannot be used.
    #[error("conf key `{key}` in {}: {reason}", path.display())]
    InvalidValue {
        /// The conf file.
        path: PathBuf,
        /// The key.
        key: String,
        /// Why it was refused.
        reason: String,
    },
}

/// The loaded conf: the host's keys, and every key for the plugins.
#[derive(Debug, Clone)]
pub struct Conf {
    /// The file it was read from.
    pub path: PathBuf,
    /// `plugin-dirs`: directories (every `*.so` in them, sorted) or single plugin
    /// files; relative paths are relative to the conf file's directory.
    pub plugin_dirs: Vec<PathBuf>,
    /// `classpath`: directories (or single files) of shared libraries the plugins
    /// depend on, loaded with `RTLD_GLOBAL` before any plugin.
    pub classpath: Vec<PathBuf>,
    /// `strict`: any load failure is fatal.
    pub strict: bool,
    /// `shutdown-timeout-ms`: how long each plugin's `shutdown` (and each processor's
    /// `stop`) may take.
    pub shutdown_timeout: Duration,
    /// `allow-writable-plugins`: load plugin files and dirs that group or others can write.
    pub allow_writable_plugins: bool,
    /// `http-listen`: where `pseidon run` serves `/metrics`, `/health`, `/ready`,
    /// `/registry` and `/groups` (an IP literal and port); unset: no endpoint.
    pub http_listen: Option<SocketAddr>,
    /// Every key of the file, flattened to dotted names, in file order.
    pub view: ConfView,
    /// Top-level keys (outside any table) that are not host keys: probably typos
    /// (`plugin_dirs`), since plugin settings live in tables. They still reach the plugins.
    pub unknown_top_level: Vec<String>,
    /// Likely typos of known tables, prefixes and host keys, one per misspelt name.
    pub typos: Vec<Typo>,
}

/// A table, dotted-key prefix or top-level key of the conf that is one or two edits
/// away from a known one (see [`KNOWN_TABLES`], [`HOST_KEYS`]): its keys reach no
/// plugin setting as the user meant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Typo {
    /// The conf file.
    pub path: PathBuf,
    /// The first key of the file with the misspelt name (`kafak.acks`).
    pub key: String,
    /// The misspelt name (`kafak`).
    pub name: String,
    /// The known name it is probably meant to be (`kafka`).
    pub intended: String,
}

impl fmt::Display for Typo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.key == self.name {
            write!(
                f,
                "conf key `{}` in {} is not a host key; it looks like a typo of `{}`",
                self.key,
                self.path.display(),
                self.intended
            )
        } else {
            write!(
                f,
                "conf key `{}` in {} looks like a typo: `{}` is not a known table, did you mean `{}` (`[{}]`)?",
                self.key,
                self.path.display(),
                self.name,
                self.intended,
                self.intended
            )
        }
    }
}

impl Conf {
    /// A conf with no plugins and the defaults, as if read from an empty file at `path`.
    ///
    /// ```
    /// let conf = pseidon_host::Conf::empty("/nowhere.toml");
    /// assert!(conf.plugin_dirs.is_empty() && !conf.strict);
    /// assert_eq!(conf.shutdown_timeout.as_millis(), 10_000);
    /// ```
    pub fn empty(path: impl Into<PathBuf>) -> Self {
        Conf {
            path: path.into(),
            plugin_dirs: Vec::new(),
            classpath: Vec::new(),
            strict: false,
            shutdown_timeout: Duration::from_millis(DEFAULT_SHUTDOWN_TIMEOUT_MS),
            allow_writable_plugins: false,
            http_listen: None,
            view: ConfView::default(),
            unknown_top_level: Vec::new(),
            typos: Vec::new(),
        }
    }

    /// The conf view handed to the plugins: every key of the file, then
    /// [`CONF_DIR_KEY`] with the conf file's absolute directory.
    ///
    /// ```
    /// let conf = pseidon_host::Conf::parse("[kafka]\nacks = 1\n", "/etc/pseidon/p.toml".as_ref()).unwrap();
    /// let view = conf.plugin_view();
    /// assert_eq!(view.get("pseidon-host.conf-dir").unwrap().value, "/etc/pseidon");
    /// assert_eq!(view.entries().len(), conf.view.entries().len() + 1);
    /// ```
    pub fn plugin_view(&self) -> ConfView {
        let dir = std::path::absolute(&self.path)
            .unwrap_or_else(|_| self.path.clone())
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_default();
        let mut entries = self.view.entries().to_vec();
        entries.push(ConfEntry {
            key: CONF_DIR_KEY.to_string(),
            kind: ConfKind::String,
            value: dir.to_string_lossy().into_owned(),
        });
        ConfView::new(entries)
    }

    /// In strict mode, the first likely typo as an error; otherwise nothing (the
    /// caller warns about each of [`Conf::typos`]).
    pub fn check_typos(&self) -> Result<(), ConfError> {
        match self.typos.first() {
            Some(typo) if self.strict => Err(ConfError::Typo { typo: typo.clone() }),
            _ => Ok(()),
        }
    }

    /// Reads the conf file at `path`; `origin` says what chose the path (for errors).
    pub fn load_from(path: &Path, origin: ConfOrigin) -> Result<Conf, ConfError> {
        let text = fs::read_to_string(path).map_err(|source| {
            if source.kind() == io::ErrorKind::NotFound {
                ConfError::NotFound {
                    path: path.to_path_buf(),
                    origin,
                }
            } else {
                ConfError::Read {
                    path: path.to_path_buf(),
                    origin,
                    source,
                }
            }
        })?;
        Conf::parse(&text, path)
    }

    /// Reads the conf file at `path` (given by the application).
    pub fn load(path: &Path) -> Result<Conf, ConfError> {
        Conf::load_from(path, ConfOrigin::Caller)
    }

    /// Parses conf text; `path` is where it came from (for errors and for relative paths).
    ///
    /// ```
    /// use pseidon_host::Conf;
    /// let conf = Conf::parse("strict = true\n[kafka]\nbootstrap.servers = \"b:9092\"\n", "/etc/p.toml".as_ref()).unwrap();
    /// assert!(conf.strict);
    /// assert_eq!(conf.view.get("kafka.bootstrap.servers").unwrap().value, "b:9092");
    ///
    /// let err = Conf::parse("strict = \n", "/etc/p.toml".as_ref()).unwrap_err();
    /// assert!(err.to_string().contains("line 1, column"));
    /// ```
    pub fn parse(text: &str, path: &Path) -> Result<Conf, ConfError> {
        let table: toml::Table = text.parse().map_err(|e: toml::de::Error| {
            let offset = e.span().map(|s| s.start).unwrap_or(0);
            let (line, column) = line_column(text, offset);
            ConfError::Parse {
                path: path.to_path_buf(),
                line,
                column,
                message: e.message().trim().to_string(),
            }
        })?;
        let base = path.parent().map(Path::to_path_buf).unwrap_or_default();
        let mut conf = Conf::empty(path);
        if let Some(v) = table.get("plugin-dirs") {
            conf.plugin_dirs = path_list(v, "plugin-dirs", path, &base)?;
        }
        if let Some(v) = table.get("classpath") {
            conf.classpath = path_list(v, "classpath", path, &base)?;
        }
        if let Some(v) = table.get("strict") {
            conf.strict = boolean(v, "strict", path)?;
        }
        if let Some(v) = table.get("allow-writable-plugins") {
            conf.allow_writable_plugins = boolean(v, "allow-writable-plugins", path)?;
        }
        if let Some(v) = table.get(HTTP_LISTEN_KEY) {
            let text = v
                .as_str()
                .ok_or_else(|| wrong_type(path, HTTP_LISTEN_KEY, "a string", v))?;
            conf.http_listen =
                Some(
                    parse_listen(text).map_err(|reason| ConfError::InvalidValue {
                        path: path.to_path_buf(),
                        key: HTTP_LISTEN_KEY.into(),
                        reason,
                    })?,
                );
        }
        if let Some(v) = table.get("shutdown-timeout-ms") {
            let ms = v
                .as_integer()
                .ok_or_else(|| wrong_type(path, "shutdown-timeout-ms", "an integer", v))?;
            let ms = u64::try_from(ms).map_err(|_| ConfError::InvalidValue {
                path: path.to_path_buf(),
                key: "shutdown-timeout-ms".into(),
                reason: format!("must not be negative, found {ms}"),
            })?;
            conf.shutdown_timeout = Duration::from_millis(ms);
        }
        conf.unknown_top_level = table
            .iter()
            // Quoted dotted keys (`"kafka.acks"`) are plugin keys written flat.
            .filter(|(k, v)| !v.is_table() && !k.contains('.') && !HOST_KEYS.contains(&k.as_str()))
            .map(|(k, _)| k.clone())
            .collect();
        let mut entries = Vec::new();
        flatten("", &table, &mut entries);
        let mut seen = std::collections::HashSet::new();
        if let Some(dup) = entries.iter().find(|e| !seen.insert(e.key.as_str())) {
            return Err(ConfError::DuplicateKey {
                path: path.to_path_buf(),
                key: dup.key.clone(),
            });
        }
        let reserved = CONF_DIR_KEY.split('.').next().unwrap_or(CONF_DIR_KEY);
        if let Some(e) = entries
            .iter()
            .find(|e| e.key.split('.').next() == Some(reserved))
        {
            return Err(ConfError::InvalidValue {
                path: path.to_path_buf(),
                key: e.key.clone(),
                reason: format!(
                    "`{reserved}` is reserved: the host sets `{CONF_DIR_KEY}` for the plugins itself"
                ),
            });
        }
        conf.typos = find_typos(&entries, path);
        conf.view = ConfView::new(entries);
        Ok(conf)
    }
}

/// True for conf keys whose values are secrets: `pseidon config` prints them as
/// `<redacted>`, and no conf error quotes them. The one rule of the whole project,
/// [`pseidon_plugin_api::secret::is_secret_key`], that the plugins use too.
///
/// ```
/// use pseidon_host::conf::is_secret_key;
/// assert!(is_secret_key("kafka.sasl.password"));
/// assert!(is_secret_key("kafka.ssl.key.pem"));
/// assert!(is_secret_key("kafka.sasl.oauthbearer.assertion.private.key.pem"));
/// assert!(!is_secret_key("kafka.sasl.username"));
/// ```
pub use pseidon_plugin_api::secret::is_secret_key;

fn wrong_type(path: &Path, key: &str, expected: &'static str, found: &toml::Value) -> ConfError {
    ConfError::WrongType {
        path: path.to_path_buf(),
        key: key.to_string(),
        expected,
        found: if is_secret_key(key) {
            format!(
                "{} {}",
                found.type_str(),
                pseidon_plugin_api::secret::REDACTED
            )
        } else {
            format!("{} {found}", found.type_str())
        },
    }
}

/// The likely typos among `entries`: each first name of a dotted key (a table or a
/// prefix) and each top-level key that is not known but one or two edits (a
/// transposition counts as one) from a name of [`KNOWN_TABLES`] or [`HOST_KEYS`].
/// Names shorter than 4 characters are never suspected.
fn find_typos(entries: &[ConfEntry], path: &Path) -> Vec<Typo> {
    let known: Vec<&str> = KNOWN_TABLES
        .iter()
        .chain(HOST_KEYS.iter())
        .copied()
        .collect();
    let mut typos: Vec<Typo> = Vec::new();
    for e in entries {
        let name = e.key.split('.').next().unwrap_or(&e.key);
        if name.chars().count() < 4 || known.contains(&name) || typos.iter().any(|t| t.name == name)
        {
            continue;
        }
        let best = known
            .iter()
            .map(|k| (edit_distance(name, k), *k))
            .filter(|(d, _)| (1..=2).contains(d))
            .min();
        if let Some((_, intended)) = best {
            typos.push(Typo {
                path: path.to_path_buf(),
                key: e.key.clone(),
                name: name.to_string(),
                intended: intended.to_string(),
            });
        }
    }
    typos
}

/// The optimal-string-alignment distance of `a` and `b`: insertions, deletions,
/// substitutions and transpositions of adjacent characters each count one.
fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let mut d = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for (i, row) in d.iter_mut().enumerate() {
        row[0] = i;
    }
    for (j, cell) in d[0].iter_mut().enumerate() {
        *cell = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut v = (d[i - 1][j] + 1)
                .min(d[i][j - 1] + 1)
                .min(d[i - 1][j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                v = v.min(d[i - 2][j - 2] + 1);
            }
            d[i][j] = v;
        }
    }
    d[a.len()][b.len()]
}

fn boolean(v: &toml::Value, key: &str, path: &Path) -> Result<bool, ConfError> {
    v.as_bool()
        .ok_or_else(|| wrong_type(path, key, "a boolean (true or false)", v))
}

fn path_list(
    v: &toml::Value,
    key: &str,
    path: &Path,
    base: &Path,
) -> Result<Vec<PathBuf>, ConfError> {
    const EXPECTED: &str = "an array of path strings";
    let items = v
        .as_array()
        .ok_or_else(|| wrong_type(path, key, EXPECTED, v))?;
    items
        .iter()
        .map(|item| {
            let s = item
                .as_str()
                .ok_or_else(|| wrong_type(path, key, EXPECTED, v))?;
            Ok(base.join(s))
        })
        .collect()
}

/// 1-based line and column (in characters) of byte `offset` in `text`.
fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let before = text.get(..offset).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map(|i| i + 1).unwrap_or(0);
    let column = before
        .get(line_start..)
        .map(|s| s.chars().count())
        .unwrap_or(0)
        + 1;
    (line, column)
}

fn flatten(prefix: &str, table: &toml::Table, out: &mut Vec<ConfEntry>) {
    for (k, v) in table {
        let key = if prefix.is_empty() {
            k.clone()
        } else {
            format!("{prefix}.{k}")
        };
        let (kind, value) = match v {
            toml::Value::Table(t) if !t.is_empty() => {
                flatten(&key, t, out);
                continue;
            }
            toml::Value::Table(_) => (ConfKind::Table, "{}".to_string()),
            toml::Value::String(s) => (ConfKind::String, s.clone()),
            toml::Value::Integer(_) => (ConfKind::Integer, v.to_string()),
            toml::Value::Float(_) => (ConfKind::Float, v.to_string()),
            toml::Value::Boolean(_) => (ConfKind::Boolean, v.to_string()),
            toml::Value::Datetime(_) => (ConfKind::Datetime, v.to_string()),
            toml::Value::Array(_) => (ConfKind::Array, v.to_string()),
        };
        out.push(ConfEntry { key, kind, value });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Conf, ConfError> {
        Conf::parse(text, Path::new("/etc/pseidon/pseidon.toml"))
    }

    #[test]
    fn host_keys_and_flattened_view() {
        let conf = parse(
            "plugin-dirs = [\"/opt/p\", \"rel/x.so\"]\nclasspath = [\"/opt/lib\"]\nstrict = true\n\
             shutdown-timeout-ms = 250\nallow-writable-plugins = true\n\
             [kafka]\nbootstrap.servers = \"h:9092\"\n\"acks\" = \"all\"\nretries = 3\n",
        )
        .unwrap();
        assert_eq!(
            conf.plugin_dirs,
            vec![
                PathBuf::from("/opt/p"),
                PathBuf::from("/etc/pseidon/rel/x.so")
            ]
        );
        assert_eq!(conf.classpath, vec![PathBuf::from("/opt/lib")]);
        assert!(conf.strict && conf.allow_writable_plugins);
        assert_eq!(conf.shutdown_timeout, Duration::from_millis(250));
        let keys: Vec<_> = conf.view.entries().iter().map(|e| e.key.as_str()).collect();
        assert_eq!(
            keys,
            [
                "plugin-dirs",
                "classpath",
                "strict",
                "shutdown-timeout-ms",
                "allow-writable-plugins",
                "kafka.bootstrap.servers",
                "kafka.acks",
                "kafka.retries"
            ]
        );
        let dirs = conf.view.get("plugin-dirs").unwrap();
        assert_eq!(dirs.kind, ConfKind::Array);
        assert_eq!(dirs.value, "[\"/opt/p\", \"rel/x.so\"]");
        assert_eq!(
            conf.view.get("kafka.retries").unwrap().kind,
            ConfKind::Integer
        );
        assert_eq!(conf.view.get("kafka.retries").unwrap().value, "3");
        assert!(conf.unknown_top_level.is_empty());
        let conf = parse("plugin_dirs = []\n[x]\ny = 1\n").unwrap();
        assert_eq!(conf.unknown_top_level, ["plugin_dirs"]);
    }

    #[test]
    fn malformed_toml_names_file_line_and_column() {
        let err = parse("strict = true\nplugin-dirs = [\"a\",\n  oops ]\n").unwrap_err();
        let msg = err.to_string();
        assert!(
            matches!(
                err,
                ConfError::Parse {
                    line: 3,
                    column: 3,
                    ..
                }
            ),
            "{msg}"
        );
        assert!(
            msg.contains("/etc/pseidon/pseidon.toml") && msg.contains("line 3, column 3"),
            "{msg}"
        );
    }

    #[test]
    fn wrong_type_names_key_and_file() {
        let msg = parse("strict = \"yes\"\n").unwrap_err().to_string();
        assert!(
            msg.contains("`strict`") && msg.contains("/etc/pseidon/pseidon.toml"),
            "{msg}"
        );
        let msg = parse("plugin-dirs = \"/opt/p\"\n").unwrap_err().to_string();
        assert!(
            msg.contains("`plugin-dirs`") && msg.contains("array"),
            "{msg}"
        );
        let msg = parse("shutdown-timeout-ms = -1\n").unwrap_err().to_string();
        assert!(
            msg.contains("shutdown-timeout-ms") && msg.contains("negative"),
            "{msg}"
        );
    }

    #[test]
    fn missing_file_names_path_and_origin() {
        let err = Conf::load_from(Path::new("/nonexistent/p.toml"), ConfOrigin::Env).unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains("/nonexistent/p.toml") && msg.contains("PSEIDON_CONF"),
            "{msg}"
        );
    }

    #[test]
    fn the_sample_conf_parses_with_its_documented_values() {
        let text = include_str!("../../conf/pseidon.toml");
        let conf = parse(text).unwrap();
        assert_eq!(
            conf.plugin_dirs,
            vec![PathBuf::from("/opt/pseidon-kafka/plugins")]
        );
        assert_eq!(
            conf.classpath,
            vec![PathBuf::from("/opt/pseidon-kafka/lib")]
        );
        assert!(!conf.strict && !conf.allow_writable_plugins);
        assert_eq!(conf.http_listen, None, "commented out in the sample");
        assert_eq!(
            conf.shutdown_timeout,
            Duration::from_millis(DEFAULT_SHUTDOWN_TIMEOUT_MS)
        );
    }

    #[test]
    fn http_listen_takes_ip_literals_only_and_errors_name_key_and_value() {
        let conf = parse("http-listen = \"[::1]:9644\"\n").unwrap();
        assert_eq!(conf.http_listen, Some("[::1]:9644".parse().unwrap()));
        for bad in ["localhost:9644", "127.0.0.1", "1.2.3.4:70000", ""] {
            let err = parse(&format!("http-listen = {bad:?}\n"))
                .unwrap_err()
                .to_string();
            assert!(
                err.contains("`http-listen`") && err.contains(&format!("`{bad}`")),
                "{err}"
            );
        }
        let err = parse("http-listen = 9644\n").unwrap_err().to_string();
        assert!(
            err.contains("`http-listen`") && err.contains("a string"),
            "{err}"
        );
    }

    #[test]
    fn line_column_counts_chars() {
        assert_eq!(line_column("ab\ncdé\nx", 8), (3, 1));
        assert_eq!(line_column("ab\ncdé\nx", 7), (2, 4));
    }

    #[test]
    fn typos_of_known_tables_prefixes_and_host_keys_are_found() {
        let conf = parse(
            "plugin_dirs = []\n\"kafak.acks\" = \"all\"\n[pseidon_kafka]\nstatus-db = \"x\"\ngroup-max-wait-ms = 5\n\
             [Kafka]\nlinger.ms = 1\n[kafka]\nacks = 1\n[kafka-extra]\nx = 1\n[hello]\ngreeting = \"hi\"\n[kfk]\nx = 1\n",
        )
        .unwrap();
        let got: Vec<(&str, &str, &str)> = conf
            .typos
            .iter()
            .map(|t| (t.key.as_str(), t.name.as_str(), t.intended.as_str()))
            .collect();
        assert_eq!(
            got,
            [
                ("plugin_dirs", "plugin_dirs", "plugin-dirs"),
                ("kafak.acks", "kafak", "kafka"),
                ("pseidon_kafka.status-db", "pseidon_kafka", "pseidon-kafka"),
                ("Kafka.linger.ms", "Kafka", "kafka"),
            ]
        );
        let msg = conf.typos[1].to_string();
        assert!(
            msg.contains("`kafak.acks`")
                && msg.contains("did you mean `kafka`")
                && msg.contains("/etc/pseidon/pseidon.toml"),
            "{msg}"
        );
        assert!(conf.check_typos().is_ok(), "only a warning unless strict");
        let mut strict = conf.clone();
        strict.strict = true;
        let err = strict.check_typos().unwrap_err().to_string();
        assert!(
            err.contains("plugin_dirs") && err.contains("strict"),
            "{err}"
        );
        assert!(parse("[kafka]\nacks = 1\n").unwrap().typos.is_empty());
        assert_eq!(edit_distance("kafak", "kafka"), 1);
        assert_eq!(edit_distance("kafkaa", "kafka"), 1);
        assert_eq!(edit_distance("pseidon-kfk", "pseidon-kafka"), 2);
        assert_eq!(edit_distance("abc", ""), 3);
    }

    #[test]
    fn the_plugin_view_adds_the_conf_dir_and_the_file_may_not_set_it() {
        let conf = parse("[kafka]\nacks = 1\n").unwrap();
        let view = conf.plugin_view();
        assert_eq!(
            view.get(CONF_DIR_KEY).map(|e| e.value.as_str()),
            Some("/etc/pseidon")
        );
        assert!(
            conf.view.get(CONF_DIR_KEY).is_none(),
            "pseidon config shows the file only"
        );
        let err = parse("[pseidon-host]\nconf-dir = \"/x\"\n")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("pseidon-host.conf-dir") && err.contains("reserved"),
            "{err}"
        );
        // A relative conf path gives an absolute dir.
        let conf = Conf::parse("", Path::new("rel/p.toml")).unwrap();
        let dir = PathBuf::from(&conf.plugin_view().get(CONF_DIR_KEY).unwrap().value);
        assert!(
            dir.is_absolute() && dir.ends_with("rel"),
            "{}",
            dir.display()
        );
    }

    #[test]
    fn a_wrong_type_error_never_quotes_a_secret() {
        let msg = Conf::parse("\"kafka.sasl.password\" = 12345678\n", Path::new("/p.toml"));
        // Plugin keys are not typed by the host; a host-typed secret key is redacted.
        assert!(msg.is_ok());
        let err = wrong_type(
            Path::new("/p.toml"),
            "x.password",
            "a string",
            &toml::Value::Integer(12345678),
        )
        .to_string();
        assert!(
            !err.contains("12345678") && err.contains("<redacted>"),
            "{err}"
        );
    }
}
