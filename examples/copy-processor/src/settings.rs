//! The processor's settings: the `copy-processor.*` keys of the host conf (a
//! `[copy-processor]` table). Every error names the key.

use std::time::Duration;

use pseidon_plugin_api::{ConfKind, ConfView, Error};

/// Prefix of the processor's keys.
pub const PREFIX: &str = "copy-processor.";

/// The settings, see the crate's README for each key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// `copy-processor.from`: the topic to copy from (required).
    pub from: String,
    /// `copy-processor.to`: the topic to copy to (required, not `from`).
    pub to: String,
    /// `copy-processor.group`: the consumer group it reads `from` in.
    /// Default `pseidon-copy-processor`.
    pub group: String,
    /// `copy-processor.source`: the datasource's registry name.
    /// Default `pseidon.kafka.util.datasource`.
    pub source: String,
    /// `copy-processor.sink`: the datasink's registry name.
    /// Default `pseidon.kafka.util.datasink`.
    pub sink: String,
    /// `copy-processor.wait-ms`: how long `start`'s thread waits for the source and
    /// the sink to be registered. Default 30000.
    pub wait: Duration,
    /// `copy-processor.max-attempts`: how often a group whose delivery failed is
    /// written again before the processor gives up (and stops copying; the group
    /// stays unfinished and is replayed at the next start). Default 5.
    pub max_attempts: u32,
    /// `copy-processor.max-rate`: the most messages copied per second; 0 (the
    /// default) is no limit.
    pub max_rate: u64,
    /// `copy-processor.exactly-once`: copy each batch of groups in one Kafka
    /// transaction that also commits their offsets ([`exactly_once`](crate::copier::exactly_once));
    /// the target read `read_committed` then holds each message once, also after a
    /// crash. The datasink's transactional id is derived (stable per instance) unless
    /// `kafka.transactional.id` is set. Default false (at-least-once).
    pub exactly_once: bool,
}

impl Settings {
    /// Parses the `copy-processor.*` keys; unknown ones are an error (a typo must not
    /// fall back to a default silently).
    pub fn parse(conf: &ConfView) -> Result<Settings, Error> {
        let mut from = None;
        let mut to = None;
        let mut s = Settings {
            from: String::new(),
            to: String::new(),
            group: "pseidon-copy-processor".into(),
            source: "pseidon.kafka.util.datasource".into(),
            sink: "pseidon.kafka.util.datasink".into(),
            wait: Duration::from_secs(30),
            max_attempts: 5,
            max_rate: 0,
            exactly_once: false,
        };
        for e in conf.with_prefix(PREFIX) {
            let name = &e.key[PREFIX.len()..];
            match name {
                "from" => from = Some(string(&e.key, e.kind, &e.value)?),
                "to" => to = Some(string(&e.key, e.kind, &e.value)?),
                "group" => s.group = string(&e.key, e.kind, &e.value)?,
                "source" => s.source = string(&e.key, e.kind, &e.value)?,
                "sink" => s.sink = string(&e.key, e.kind, &e.value)?,
                "wait-ms" => s.wait = Duration::from_millis(number(&e.key, e.kind, &e.value)?),
                "max-attempts" => {
                    s.max_attempts = u32::try_from(number(&e.key, e.kind, &e.value)?)
                        .ok()
                        .filter(|n| *n > 0)
                        .ok_or_else(|| {
                            Error::config(e.key.as_str(), "must be a whole number from 1")
                        })?;
                }
                "max-rate" => s.max_rate = number(&e.key, e.kind, &e.value)?,
                "exactly-once" => s.exactly_once = boolean(&e.key, e.kind, &e.value)?,
                _ => {
                    return Err(Error::config(
                        e.key.as_str(),
                        "unknown key (known: from, to, group, source, sink, wait-ms, max-attempts, max-rate, exactly-once)",
                    ));
                }
            }
        }
        s.from = from.ok_or_else(|| {
            Error::config("copy-processor.from", "missing: the topic to copy from")
        })?;
        s.to =
            to.ok_or_else(|| Error::config("copy-processor.to", "missing: the topic to copy to"))?;
        if s.from == s.to {
            return Err(Error::config(
                "copy-processor.to",
                format!(
                    "must differ from copy-processor.from (both are `{}`)",
                    s.from
                ),
            ));
        }
        Ok(s)
    }
}

fn string(key: &str, kind: ConfKind, value: &str) -> Result<String, Error> {
    if kind != ConfKind::String || value.trim().is_empty() {
        return Err(Error::config(key, "must be a non-empty string"));
    }
    Ok(value.to_string())
}

fn boolean(key: &str, kind: ConfKind, value: &str) -> Result<bool, Error> {
    match (kind, value) {
        (ConfKind::Boolean, "true") => Ok(true),
        (ConfKind::Boolean, "false") => Ok(false),
        _ => Err(Error::config(key, "must be true or false")),
    }
}

fn number(key: &str, kind: ConfKind, value: &str) -> Result<u64, Error> {
    if kind != ConfKind::Integer {
        return Err(Error::config(key, "must be a whole number"));
    }
    value
        .parse()
        .map_err(|_| Error::config(key, format!("`{value}` is not a non-negative whole number")))
}

#[cfg(test)]
mod tests {
    use pseidon_plugin_api::ConfEntry;

    use super::*;

    fn conf(entries: &[(&str, ConfKind, &str)]) -> ConfView {
        ConfView::new(
            entries
                .iter()
                .map(|(k, kind, v)| ConfEntry {
                    key: (*k).into(),
                    kind: *kind,
                    value: (*v).into(),
                })
                .collect(),
        )
    }

    #[test]
    fn defaults_and_overrides() {
        let s = Settings::parse(&conf(&[
            ("copy-processor.from", ConfKind::String, "a"),
            ("copy-processor.to", ConfKind::String, "b"),
            ("copy-processor.max-rate", ConfKind::Integer, "500"),
            ("kafka.group.id", ConfKind::String, "ignored"),
        ]))
        .unwrap();
        assert_eq!((s.from.as_str(), s.to.as_str()), ("a", "b"));
        assert_eq!(s.group, "pseidon-copy-processor");
        assert_eq!(s.max_rate, 500);
        assert_eq!(s.max_attempts, 5);
    }

    #[test]
    fn errors_name_the_key() {
        let cases = [
            (
                vec![("copy-processor.to", ConfKind::String, "b")],
                "copy-processor.from",
            ),
            (
                vec![
                    ("copy-processor.from", ConfKind::String, "a"),
                    ("copy-processor.to", ConfKind::String, "a"),
                ],
                "copy-processor.to",
            ),
            (
                vec![("copy-processor.form", ConfKind::String, "a")],
                "copy-processor.form",
            ),
            (
                vec![("copy-processor.wait-ms", ConfKind::String, "5")],
                "copy-processor.wait-ms",
            ),
            (
                vec![("copy-processor.max-attempts", ConfKind::Integer, "0")],
                "copy-processor.max-attempts",
            ),
        ];
        for (entries, key) in cases {
            let err = Settings::parse(&conf(&entries)).unwrap_err().to_string();
            assert!(err.contains(&format!("`{key}`")), "{key}: {err}");
        }
    }
}
