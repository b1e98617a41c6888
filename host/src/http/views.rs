//! The JSON of `/registry` (plugins and registered names) and `/groups` (the
//! tracked message groups, in the one schema `pseidon groups --format json` prints:
//! [`crate::report::groups_json`]).

use std::time::{SystemTime, UNIX_EPOCH};

use pseidon_plugin_api::{Entry, GroupFilter, GroupStatus};
use serde_json::{Value, json};

use super::State;

/// `{"plugins": [{"file", "name", "version"}], "entries": [{"kind", "name", "owner"}]}`.
pub fn registry_json(state: &State) -> Value {
    json!({
        "plugins": state.plugins.iter().map(|p| json!({
            "file": p.file, "name": p.name, "version": p.version,
        })).collect::<Vec<_>>(),
        "entries": state.registry.reg_list().iter().map(|r| json!({
            "kind": r.kind.as_str(), "name": r.name, "owner": r.owner,
        })).collect::<Vec<_>>(),
    })
}

/// Why `/groups` could not answer; each maps to a status code.
#[derive(Debug, thiserror::Error)]
pub enum GroupsError {
    /// A query parameter is unknown or has a bad value (400).
    #[error("{0}")]
    BadQuery(String),
    /// No datasource under the name (404).
    #[error("no datasource `{0}` is registered")]
    NoSource(String),
    /// The datasource failed to list them (500).
    #[error("cannot list the message groups: {0}")]
    List(String),
}

/// Parses `status=&topic=&group=&since=` into a filter.
pub fn parse_filter(query: &str) -> Result<GroupFilter, GroupsError> {
    let mut filter = GroupFilter::default();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        let value = percent_decode(value);
        match key {
            "status" if value.is_empty() => {}
            "status" => {
                filter.status = Some(GroupStatus::parse(&value).ok_or_else(|| {
                    GroupsError::BadQuery(format!(
                        "status `{value}` is not one of ready, run, done, lost, failed, split, dead"
                    ))
                })?);
            }
            "topic" => filter.topic = (!value.is_empty()).then_some(value),
            "group" => filter.consumer_group = (!value.is_empty()).then_some(value),
            "since" if value.is_empty() => {}
            "since" => {
                let ago = humantime::parse_duration(&value).map_err(|e| {
                    GroupsError::BadQuery(format!("since `{value}` is not a duration: {e}"))
                })?;
                let now_ms = SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .map(|d| d.as_millis() as i64)
                    .unwrap_or(0);
                filter.updated_since_ms = Some(now_ms - ago.as_millis() as i64);
            }
            other => {
                return Err(GroupsError::BadQuery(format!(
                    "unknown query parameter `{other}` (status, topic, group, since)"
                )));
            }
        }
    }
    Ok(filter)
}

/// The groups document for `query`.
pub fn groups_json(state: &State, query: &str) -> Result<Value, GroupsError> {
    let filter = parse_filter(query)?;
    let Some(Entry::Source(source)) = state.registry.reg_get(&state.source) else {
        return Err(GroupsError::NoSource(state.source.clone()));
    };
    let groups = source
        .groups(&filter)
        .map_err(|e| GroupsError::List(e.to_string()))?;
    Ok(crate::report::groups_json(&groups))
}

/// `%XX` and `+` decoding of a query value (invalid escapes stay as they are).
fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => match (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                (Some(hi), Some(lo)) => {
                    out.push(hi * 16 + lo);
                    i += 3;
                    continue;
                }
                _ => out.push(b'%'),
            },
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn hex(b: u8) -> Option<u8> {
    (b as char).to_digit(16).map(|d| d as u8)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_parse_and_bad_ones_are_named() {
        let f = parse_filter("status=run&topic=a%2Eb&group=g+1").unwrap();
        assert_eq!(f.status, Some(GroupStatus::Run));
        assert_eq!(f.topic.as_deref(), Some("a.b"));
        assert_eq!(f.consumer_group.as_deref(), Some("g 1"));
        assert!(
            parse_filter("status=nope")
                .unwrap_err()
                .to_string()
                .contains("nope")
        );
        assert!(parse_filter("x=1").unwrap_err().to_string().contains("`x`"));
        assert_eq!(percent_decode("100%"), "100%");
        assert_eq!(percent_decode("%4"), "%4");
    }
}
