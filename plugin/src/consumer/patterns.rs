//! Topic patterns: a topic that starts with `^` is a regular expression, as in
//! librdkafka's `subscribe`, matched anywhere in a topic name (anchor it with `^` and
//! `$`). A reader expands its patterns once, when it opens, into the topics of the
//! cluster's metadata that match then (Kafka's internal `__` topics never do); a topic
//! created later is not read by that reader. A pattern that does not compile, or that
//! matches no topic, is an error naming it.

use std::time::Duration;

use pseidon_plugin_api::Error;
use rdkafka::consumer::{Consumer, ConsumerContext};
use regex_automata::meta::Regex;

use crate::error::kafka_err;

/// How long the metadata request of an expansion may take.
const META_TIMEOUT: Duration = Duration::from_secs(10);

/// True if `topic` is a pattern.
pub(crate) fn is_pattern(topic: &str) -> bool {
    topic.starts_with('^')
}

/// `topics` with every pattern replaced by the topics that match it now, each topic
/// once, in the order given (the matches of a pattern sorted by name).
pub(crate) fn expand<X: ConsumerContext, C: Consumer<X>>(
    consumer: &C,
    topics: &[String],
) -> Result<Vec<String>, Error> {
    if !topics.iter().any(|t| is_pattern(t)) {
        return Ok(topics.to_vec());
    }
    let md = consumer
        .fetch_metadata(None, META_TIMEOUT)
        .map_err(|e| kafka_err("fetching the topic list for a topic pattern", &e))?;
    let mut names: Vec<&str> = md
        .topics()
        .iter()
        .map(|t| t.name())
        .filter(|n| !n.starts_with("__"))
        .collect();
    names.sort_unstable();
    expand_with(topics, &names)
}

/// [`expand`] against the topic names `names` (sorted).
fn expand_with(topics: &[String], names: &[&str]) -> Result<Vec<String>, Error> {
    let mut out: Vec<String> = Vec::new();
    for t in topics {
        if !is_pattern(t) {
            if !out.contains(t) {
                out.push(t.clone());
            }
            continue;
        }
        let re = Regex::new(t).map_err(|e| {
            // The syntax error's last line says what is wrong ("error: unclosed group").
            let why = e
                .syntax_error()
                .map(|se| se.to_string())
                .and_then(|text| {
                    text.lines()
                        .rev()
                        .find(|l| !l.trim().is_empty())
                        .map(str::to_string)
                })
                .unwrap_or_else(|| e.to_string());
            let why = why.trim().trim_start_matches("error: ");
            Error::other(format!(
                "topic pattern `{t}` is not a regular expression: {why}"
            ))
        })?;
        let matched: Vec<&str> = names.iter().copied().filter(|n| re.is_match(n)).collect();
        if matched.is_empty() {
            return Err(Error::other(format!(
                "topic pattern `{t}` matches no topic"
            )));
        }
        for m in matched {
            if !out.iter().any(|o| o == m) {
                out.push(m.to_string());
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|t| t.to_string()).collect()
    }

    #[test]
    fn patterns_expand_to_the_matching_topics_once_each() {
        let names = ["a-1", "a-2", "b-1", "xa-1"];
        assert_eq!(
            expand_with(&s(&["^a-.*", "b-1", "a-1"]), &names).unwrap(),
            s(&["a-1", "a-2", "b-1"])
        );
        assert_eq!(
            expand_with(&s(&["^.*-1$"]), &names).unwrap(),
            s(&["a-1", "b-1", "xa-1"])
        );
        let err = expand_with(&s(&["^zz"]), &names).unwrap_err().to_string();
        assert!(err.contains("`^zz` matches no topic"), "{err}");
        let err = expand_with(&s(&["^a(("]), &names).unwrap_err().to_string();
        assert!(
            err.contains("not a regular expression: unclosed group"),
            "{err}"
        );
    }
}
