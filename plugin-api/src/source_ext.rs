//! Extension calls of a data source that cross the plugin boundary without a new method
//! (added in 0.3.1; a new vtable method would make the host refuse older plugins):
//! `Source::groups` with the statuses of 0.3.1 (`failed`, `split`, `dead`, and the
//! columns `reason`, `retry_at_ms`, `parent`), `Source::replay` (whose previous status
//! may be `dead`) and `Source::mark_failed`.
//!
//! Why not new `FfiDataSource` methods: abi_stable compares every type reachable from
//! the root module field by field, and refuses a plugin whose `sabi_trait` vtable has
//! fewer methods than the host's (measured: a host with two more methods refused a
//! plugin of the commit before, "too many fields … expected 12, found 10"). So the
//! layout of every FFI type stays as in 0.3.0, and an extension call travels through
//! `FfiDataSource::open`: no topic, and the override [`CALL_KEY`] naming the call, its
//! arguments as further overrides. The plugin side ([`Call`], in the adapter every
//! plugin's `Source` goes through) answers with a reader whose one `next_group` returns
//! the result as one message group (a row per message, its fields as headers), or the
//! call's typed error. A plugin built before 0.3.1 treats it as an `open` of no topic:
//! an error (the Kafka datasource: "needs at least one topic"), which the caller reports
//! as "not supported by this plugin" (`mark_failed`) or answers from the methods of
//! 0.3.0 (`groups`).

use abi_stable::std_types::{RString, RVec};

use crate::{
    error::Error,
    ffi::{FfiKeyValue, FfiSourceArc},
    record::{GroupInfo, GroupStatus, MessageGroup, MessageHeader, message_group::MessageParts},
    source::{DataSource, GroupFilter},
};

/// The override naming an extension call (`groups`, `mark_failed`).
pub(crate) const CALL_KEY: &str = "pseidon.ext.call";
const TOPIC: &str = "pseidon.ext";

/// An extension call, as the plugin side receives it.
pub(crate) struct Call {
    name: String,
    args: Vec<(String, String)>,
}

impl Call {
    /// The call, if `open` was one (no topic, and [`CALL_KEY`] set).
    pub(crate) fn parse(topics: &RVec<RString>, overrides: &RVec<FfiKeyValue>) -> Option<Call> {
        if !topics.is_empty() {
            return None;
        }
        let name = overrides
            .iter()
            .find(|kv| kv.key.as_str() == CALL_KEY)?
            .value
            .to_string();
        Some(Call {
            name,
            args: overrides
                .iter()
                .map(|kv| (kv.key.to_string(), kv.value.to_string()))
                .collect(),
        })
    }

    /// What to call the call in a panic report.
    pub(crate) fn what(&self) -> &'static str {
        match self.name.as_str() {
            "groups" => "groups",
            "mark_failed" => "mark_failed",
            "replay" => "replay",
            _ => "an extension call",
        }
    }

    fn arg(&self, key: &str) -> Option<&str> {
        self.args
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// Runs the call on `source`: its answer as one message group.
    pub(crate) fn run<T: DataSource>(&self, source: &T) -> Result<MessageGroup, Error> {
        match self.name.as_str() {
            "mark_failed" => {
                let id = self.arg("group_id").unwrap_or_default();
                let status = source.mark_failed(
                    id,
                    self.arg("reason").unwrap_or_default(),
                    self.arg("consumer_group"),
                )?;
                Ok(answer_group(vec![MessageParts {
                    offset: 0,
                    timestamp_ms: None,
                    key: Some(id.as_bytes().to_vec()),
                    value: Some(status.as_str().as_bytes().to_vec()),
                    headers: Vec::new(),
                }]))
            }
            "groups" => {
                let status = match self.arg("status") {
                    None => None,
                    Some(s) => Some(
                        GroupStatus::parse(s)
                            .ok_or_else(|| Error::other(format!("unknown group status `{s}`")))?,
                    ),
                };
                let filter = GroupFilter {
                    status,
                    topic: self.arg("topic").map(str::to_string),
                    consumer_group: self.arg("consumer_group").map(str::to_string),
                    updated_since_ms: self.arg("updated_since_ms").and_then(|t| t.parse().ok()),
                };
                let rows = source.groups(&filter)?;
                Ok(answer_group(
                    rows.iter()
                        .filter(|g| filter.matches(g))
                        .enumerate()
                        .map(|(i, g)| encode(i, g))
                        .collect(),
                ))
            }
            "replay" => {
                let r = source.replay(
                    self.arg("group_id").unwrap_or_default(),
                    self.arg("consumer_group"),
                )?;
                let mut row = encode(0, &r.group);
                row.value = Some(r.previous.as_str().as_bytes().to_vec());
                Ok(answer_group(vec![row]))
            }
            other => Err(Error::other(format!(
                "unknown datasource extension call `{other}`"
            ))),
        }
    }
}

fn answer_group(parts: Vec<MessageParts>) -> MessageGroup {
    let max = i64::try_from(parts.len()).unwrap_or(i64::MAX) - 1;
    MessageGroup::with_range(TOPIC, 0, 0, max.max(0), 1, parts)
}

fn encode(i: usize, g: &GroupInfo) -> MessageParts {
    let h = |k: &str, v: String| MessageHeader::new(k, Some(v.into_bytes()));
    let mut headers = vec![
        h("status", g.status.as_str().to_string()),
        h("topic", g.topic.clone()),
        h("partition", g.partition.to_string()),
        h("min_offset", g.min_offset.to_string()),
        h("max_offset", g.max_offset.to_string()),
        h("attempt", g.attempt.to_string()),
        h("updated_ms", g.updated_ms.to_string()),
        h("cluster_id", g.cluster_id.clone()),
        h("consumer_group", g.consumer_group.clone()),
        h("topic_id", g.topic_id.clone()),
    ];
    if let Some(n) = g.messages {
        headers.push(h("messages", n.to_string()));
    }
    if let Some(r) = &g.reason {
        headers.push(h("reason", r.clone()));
    }
    if let Some(t) = g.retry_at_ms {
        headers.push(h("retry_at_ms", t.to_string()));
    }
    if let Some(p) = &g.parent {
        headers.push(h("parent", p.clone()));
    }
    MessageParts {
        offset: i64::try_from(i).unwrap_or(i64::MAX),
        timestamp_ms: None,
        key: Some(g.id.as_bytes().to_vec()),
        value: None,
        headers,
    }
}

fn decode(m: &crate::record::Message) -> Result<GroupInfo, Error> {
    let bad =
        |what: &str| Error::other(format!("the datasource's group row lacks a valid `{what}`"));
    let get = |k: &str| -> Option<String> {
        m.headers()
            .iter()
            .find(|h| h.key() == k)
            .and_then(|h| h.value())
            .map(|v| String::from_utf8_lossy(v).into_owned())
    };
    let num = |k: &str| -> Result<i64, Error> {
        get(k).and_then(|v| v.parse().ok()).ok_or_else(|| bad(k))
    };
    Ok(GroupInfo {
        id: String::from_utf8_lossy(m.key().unwrap_or_default()).into_owned(),
        topic: get("topic").ok_or_else(|| bad("topic"))?,
        partition: i32::try_from(num("partition")?).map_err(|_| bad("partition"))?,
        min_offset: num("min_offset")?,
        max_offset: num("max_offset")?,
        status: get("status")
            .and_then(|s| GroupStatus::parse(&s))
            .ok_or_else(|| bad("status"))?,
        attempt: u32::try_from(num("attempt")?).map_err(|_| bad("attempt"))?,
        updated_ms: num("updated_ms")?,
        cluster_id: get("cluster_id").unwrap_or_default(),
        consumer_group: get("consumer_group").unwrap_or_default(),
        topic_id: get("topic_id").unwrap_or_default(),
        messages: get("messages").and_then(|v| v.parse().ok()),
        reason: get("reason"),
        retry_at_ms: get("retry_at_ms").and_then(|v| v.parse().ok()),
        parent: get("parent"),
    })
}

/// The plugin side's answer: a reader handing out the call's outcome once.
pub(crate) struct Answer {
    outcome: Option<Result<MessageGroup, Error>>,
}

impl Answer {
    pub(crate) fn new(outcome: Result<MessageGroup, Error>) -> Self {
        Answer {
            outcome: Some(outcome),
        }
    }
}

impl crate::ffi::FfiReader for Answer {
    fn next_group(
        &mut self,
        _timeout_ms: u64,
    ) -> crate::ffi::FfiResult<abi_stable::std_types::ROption<crate::ffi::FfiMessageGroup>> {
        match self.outcome.take() {
            Some(Ok(g)) => abi_stable::std_types::RResult::ROk(
                abi_stable::std_types::ROption::RSome(g.into_ffi()),
            ),
            Some(Err(e)) => abi_stable::std_types::RResult::RErr(e.into()),
            None => abi_stable::std_types::RResult::ROk(abi_stable::std_types::ROption::RNone),
        }
    }

    fn close(&mut self) -> crate::ffi::FfiResult<()> {
        abi_stable::std_types::RResult::ROk(())
    }
}

/// Makes call `name` with `args` on `source`: `Ok(Some(group))` the answer, `Ok(None)`
/// if the plugin predates extension calls (its `open` refused), `Err` the call's error.
fn call(
    source: &FfiSourceArc,
    name: &str,
    args: &[(&str, &str)],
) -> Result<Option<MessageGroup>, Error> {
    let mut overrides: RVec<FfiKeyValue> = RVec::new();
    overrides.push(FfiKeyValue {
        key: CALL_KEY.into(),
        value: name.into(),
    });
    for (k, v) in args {
        overrides.push(FfiKeyValue {
            key: (*k).into(),
            value: (*v).into(),
        });
    }
    let mut reader = match source.open(RVec::new(), overrides).into_result() {
        Ok(r) => r,
        Err(_) => return Ok(None),
    };
    let answer = reader.next_group(0).into_result();
    let _ = reader.close();
    match answer {
        Ok(g) => Ok(g.into_option().map(MessageGroup::from_ffi)),
        Err(e) => Err(e.into()),
    }
}

/// `Source::groups` through the extension call; `None` from a plugin before 0.3.1.
pub(crate) fn groups(
    source: &FfiSourceArc,
    filter: &GroupFilter,
) -> Result<Option<Vec<GroupInfo>>, Error> {
    let since = filter.updated_since_ms.map(|t| t.to_string());
    let mut args: Vec<(&str, &str)> = Vec::new();
    if let Some(s) = filter.status {
        args.push(("status", s.as_str()));
    }
    if let Some(t) = filter.topic.as_deref() {
        args.push(("topic", t));
    }
    if let Some(g) = filter.consumer_group.as_deref() {
        args.push(("consumer_group", g));
    }
    if let Some(t) = since.as_deref() {
        args.push(("updated_since_ms", t));
    }
    let Some(g) = call(source, "groups", &args)? else {
        return Ok(None);
    };
    g.messages()
        .iter()
        .map(decode)
        .collect::<Result<Vec<_>, _>>()
        .map(Some)
}

/// `Source::replay` through the extension call (the previous status as text: `dead`
/// too); `None` from a plugin before 0.3.1.
pub(crate) fn replay(
    source: &FfiSourceArc,
    group_id: &str,
    consumer_group: Option<&str>,
) -> Result<Option<crate::source::Replayed>, Error> {
    let mut args = vec![("group_id", group_id)];
    if let Some(g) = consumer_group {
        args.push(("consumer_group", g));
    }
    let Some(g) = call(source, "replay", &args)? else {
        return Ok(None);
    };
    let Some(m) = g.messages().first() else {
        return Err(Error::other(
            "the datasource answered the replay with no row",
        ));
    };
    let previous = m
        .value()
        .and_then(|v| GroupStatus::parse(&String::from_utf8_lossy(v)))
        .ok_or_else(|| Error::other("the datasource answered the replay without a valid status"))?;
    Ok(Some(crate::source::Replayed {
        previous,
        group: decode(m)?,
    }))
}

/// `Source::mark_failed` through the extension call.
pub(crate) fn mark_failed(
    source: &FfiSourceArc,
    group_id: &str,
    reason: &str,
    consumer_group: Option<&str>,
) -> Result<GroupStatus, Error> {
    let mut args = vec![("group_id", group_id), ("reason", reason)];
    if let Some(g) = consumer_group {
        args.push(("consumer_group", g));
    }
    let Some(g) = call(source, "mark_failed", &args)? else {
        return Err(Error::other(format!(
            "mark_failed is not supported by this plugin (built before pseidon-plugin-api \
             0.3.1): group `{group_id}` cannot be marked failed"
        )));
    };
    let status = g
        .messages()
        .first()
        .and_then(|m| m.value())
        .map(|v| String::from_utf8_lossy(v).into_owned())
        .unwrap_or_default();
    GroupStatus::parse(&status).ok_or_else(|| {
        Error::other(format!(
            "the datasource answered an unknown status `{status}`"
        ))
    })
}
