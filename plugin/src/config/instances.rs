//! Named instances (issue 18, "more than one cluster in one host"): the conf may declare
//! `[pseidon-kafka.instances.NAME]` tables, each another cluster with its own datasink
//! and datasource (`pseidon.kafka.util.datasink.NAME`, `pseidon.kafka.util.datasource.NAME`)
//! and its own status database, beside the unnamed default instance.
//!
//! Keys of instance `NAME` (`[a-z0-9_-]+`; any other name is an error naming the key):
//! - `pseidon-kafka.instances.NAME.kafka.<property>`: its librdkafka properties;
//! - `pseidon-kafka.instances.NAME.<setting>`: its plugin settings, the same names and
//!   checks as `pseidon-kafka.<setting>`.
//!
//! The instance's view is those keys renamed to `kafka.<property>` /
//! `pseidon-kafka.<setting>` (plus `pseidon-host.conf-dir`), parsed by the one
//! [`Config::parse`]: every check is shared, and an error names the key as written
//! (`pseidon-kafka.instances.NAME.…`).
//!
//! Invariants:
//! - Nothing is inherited from the default instance: not a `kafka.*` property (its
//!   credentials must never go to another cluster by accident), not a setting (each
//!   setting of an instance is its own default unless the instance sets it). An instance
//!   must set its own `kafka.bootstrap.servers`.
//! - `status-db`, when the instance does not set it, is derived from the default's:
//!   `<dir>/<stem>.NAME.<ext>` beside it (`status.db` → `status.NAME.db`).
//! - No two instances (the default included) share a status database: a clash is an
//!   error naming both keys.

use std::path::{Component, Path, PathBuf};

use pseidon_plugin_api::{ConfEntry, ConfView, Error};

use super::{CONF_DIR_KEY, Config, KAFKA_PREFIX, SETTINGS_PREFIX};

/// Prefix of every key of a named instance.
pub const INSTANCES_PREFIX: &str = "pseidon-kafka.instances.";

/// Whether `name` is a valid instance name: `[a-z0-9_-]+`.
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
}

/// The named instances of `conf`, in the order they first appear, each parsed from its
/// own view (module docs); `default` is the default instance's parsed configuration
/// (its status database is the base of the derived ones and takes part in the clash check).
pub fn parse(conf: &ConfView, default: &Config) -> Result<Vec<Config>, Error> {
    let mut views: Vec<(String, Vec<ConfEntry>)> = Vec::new();
    for entry in conf.entries() {
        let Some(rest) = entry.key.strip_prefix(INSTANCES_PREFIX) else {
            continue;
        };
        let Some((name, tail)) = rest.split_once('.') else {
            return Err(Error::config(
                entry.key.as_str(),
                format!(
                    "an instance is a table: `[{INSTANCES_PREFIX}NAME]` with kafka.* properties and \
                     pseidon-kafka settings"
                ),
            ));
        };
        if !valid_name(name) {
            return Err(Error::config(
                entry.key.as_str(),
                format!("`{name}` is not an instance name (lowercase letters, digits, `_`, `-`)"),
            ));
        }
        let key = if tail.starts_with(KAFKA_PREFIX) {
            tail.to_string()
        } else {
            format!("{SETTINGS_PREFIX}{tail}")
        };
        let renamed = ConfEntry {
            key,
            kind: entry.kind,
            value: entry.value.clone(),
        };
        match views.iter_mut().find(|(n, _)| n == name) {
            Some((_, entries)) => entries.push(renamed),
            None => views.push((name.to_string(), vec![renamed])),
        }
    }
    let mut out: Vec<Config> = Vec::new();
    for (name, mut entries) in views {
        let sets_status_db = entries
            .iter()
            .any(|e| e.key == format!("{SETTINGS_PREFIX}status-db"));
        if let Some(dir) = conf.get(CONF_DIR_KEY) {
            entries.push(dir.clone());
        }
        let mut config =
            Config::parse(&ConfView::new(entries)).map_err(|e| rename_error(&name, e))?;
        if config.kafka_prop("bootstrap.servers").is_none()
            && config.kafka_prop("metadata.broker.list").is_none()
        {
            return Err(Error::config(
                instance_key(&name, "kafka.bootstrap.servers"),
                "an instance must name its own cluster: kafka.* is not inherited from the default",
            ));
        }
        // librdkafka checks every property now, and the error names the key as written.
        config
            .client_config(super::Role::Producer, &[])
            .map_err(|e| rename_error(&name, e))?;
        if !sets_status_db {
            config.settings.status_db = derived_status_db(&default.settings.status_db, &name);
        }
        config.instance = Some(name);
        out.push(config);
    }
    check_status_dbs(default, &out)?;
    Ok(out)
}

/// The key `key` of the instance's view (`kafka.x`, `pseidon-kafka.x`) as written in the conf.
fn instance_key(name: &str, key: &str) -> String {
    let tail = key.strip_prefix(SETTINGS_PREFIX).unwrap_or(key);
    format!("{INSTANCES_PREFIX}{name}.{tail}")
}

/// `e` with its key (of the instance's view) renamed to the key as written in the conf.
pub(crate) fn rename_error(name: &str, e: Error) -> Error {
    match e {
        Error::Config { key, reason, .. }
            if key.starts_with(KAFKA_PREFIX) || key.starts_with(SETTINGS_PREFIX) =>
        {
            Error::config(instance_key(name, &key), reason)
        }
        other => other,
    }
}

/// The status database of instance `name` that does not set one: beside the default's,
/// `<stem>.NAME.<ext>`.
pub fn derived_status_db(default: &Path, name: &str) -> PathBuf {
    let stem = default
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "status".to_string());
    let file = match default.extension() {
        Some(ext) => format!("{stem}.{name}.{}", ext.to_string_lossy()),
        None => format!("{stem}.{name}"),
    };
    default.with_file_name(file)
}

/// `path` without `.` and with `..` applied, and its existing parent resolved (symbolic
/// links): two spellings of one file compare equal.
fn normalized(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    match (out.parent(), out.file_name()) {
        (Some(dir), Some(file)) => match std::fs::canonicalize(dir) {
            Ok(dir) => dir.join(file),
            Err(_) => out,
        },
        _ => out,
    }
}

/// An error naming both keys if two instances resolve to one status database.
fn check_status_dbs(default: &Config, named: &[Config]) -> Result<(), Error> {
    let key_of = |c: &Config| match &c.instance {
        None => format!("{SETTINGS_PREFIX}status-db"),
        Some(name) => instance_key(name, "status-db"),
    };
    let all: Vec<&Config> = std::iter::once(default).chain(named).collect();
    for (i, a) in all.iter().enumerate() {
        for b in &all[i + 1..] {
            if normalized(&a.settings.status_db) == normalized(&b.settings.status_db) {
                return Err(Error::config(
                    key_of(b),
                    format!(
                        "{} is also the status database of {} (`{}`): each instance needs its own",
                        b.settings.status_db.display(),
                        key_of(a),
                        a.settings.status_db.display()
                    ),
                ));
            }
        }
    }
    Ok(())
}
