//! How `pseidon send` turns one input line into the parts of a record: the key
//! delimiter (`-K`), the fixed key (`-k`), null values (`-Z`) and `--input json` (one
//! object per line in the schema `pseidon consume --format json` prints); and the
//! parsers of the flags themselves (`-D`/`-K` delimiters with kcat's escapes, `-H
//! name=value` headers). A line that does not fit is an error for that line only,
//! with the reason; the caller counts it as a failed line.

use std::borrow::Cow;

use serde_json::{Map, Value};

/// A delimiter (`-D`, `-K`): its bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delim(pub Vec<u8>);

/// Parses a delimiter as kcat does (`-D`, `-K`): the bytes of the string, with the
/// escapes `\n`, `\r`, `\t`, `\\` and `\xNN` (two hex digits). For clap.
pub fn parse_delim_arg(s: &str) -> Result<Delim, String> {
    parse_delim(s).map(Delim)
}

/// The bytes of a delimiter (see [`parse_delim_arg`]).
pub fn parse_delim(s: &str) -> Result<Vec<u8>, String> {
    let mut out = Vec::with_capacity(s.len());
    let bytes = s.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] != b'\\' {
            out.push(bytes[i]);
            i += 1;
            continue;
        }
        match bytes.get(i + 1) {
            Some(b'n') => out.push(b'\n'),
            Some(b'r') => out.push(b'\r'),
            Some(b't') => out.push(b'\t'),
            Some(b'\\') => out.push(b'\\'),
            Some(b'x') => {
                let hex = s.get(i + 2..i + 4).unwrap_or("");
                let b = u8::from_str_radix(hex, 16).map_err(|_| {
                    format!("`\\x` must be followed by two hex digits (as in \\x1e), in `{s}`")
                })?;
                out.push(b);
                i += 4;
                continue;
            }
            _ => {
                return Err(format!(
                    "unknown escape in `{s}` (known: \\n \\r \\t \\\\ \\xNN)"
                ));
            }
        }
        i += 2;
    }
    if out.is_empty() {
        return Err("the delimiter must not be empty".into());
    }
    Ok(out)
}

/// Parses `-H name=value` (split at the first `=`; the value may be empty). For clap.
pub fn parse_header(s: &str) -> Result<(String, Vec<u8>), String> {
    match s.split_once('=') {
        Some(("", _)) => Err(format!("`{s}` has an empty header name: write name=value")),
        Some((name, value)) => Ok((name.to_string(), value.as_bytes().to_vec())),
        None => Err(format!("`{s}` has no `=`: write name=value")),
    }
}

/// The parts of one record, borrowed from the line where possible.
#[derive(Debug, PartialEq, Eq)]
pub struct Parsed<'a> {
    pub key: Option<Cow<'a, [u8]>>,
    /// `None`: a null value (tombstone).
    pub value: Option<Cow<'a, [u8]>>,
    /// The line's own headers (JSON input), after the `-H` ones.
    pub headers: Vec<(String, Option<Vec<u8>>)>,
    /// The line's own partition (JSON input).
    pub partition: Option<i32>,
    /// The line's own timestamp in ms since the epoch (JSON input `timestamp_ms`).
    pub timestamp_ms: Option<i64>,
}

/// How the lines are read: the send flags that shape a record.
#[derive(Debug, Clone, Default)]
pub struct LineFormat {
    /// `-K`: the key and the value are split at the first occurrence.
    pub key_delim: Option<Vec<u8>>,
    /// `-k`: the key of a line that has none of its own.
    pub fixed_key: Option<Vec<u8>>,
    /// `-Z`: an empty value is a null value (and, with `-K`, an empty key no key).
    pub null_empty: bool,
    /// `--input json`.
    pub json: bool,
}

impl LineFormat {
    /// The parts of `line`, or why it cannot be sent.
    pub fn parse<'a>(&'a self, line: &'a [u8]) -> Result<Parsed<'a>, String> {
        if self.json {
            return parse_json(line);
        }
        let (key, value): (Option<&[u8]>, &[u8]) = match &self.key_delim {
            Some(delim) => match find(line, delim) {
                Some(at) => {
                    let key = &line[..at];
                    let key = (!(self.null_empty && key.is_empty())).then_some(key);
                    (key, &line[at + delim.len()..])
                }
                None => {
                    return Err(format!(
                        "the line has no key delimiter `{}` (-K)",
                        String::from_utf8_lossy(delim).escape_debug()
                    ));
                }
            },
            None => (self.fixed_key.as_deref(), line),
        };
        let key = key.or(self.fixed_key.as_deref());
        let value = (!(self.null_empty && value.is_empty())).then_some(value);
        Ok(Parsed {
            key: key.map(Cow::Borrowed),
            value: value.map(Cow::Borrowed),
            headers: Vec::new(),
            partition: None,
            timestamp_ms: None,
        })
    }
}

/// The first position of `needle` in `hay`.
fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.len() == 1 {
        return hay.iter().position(|&b| b == needle[0]);
    }
    hay.windows(needle.len()).position(|w| w == needle)
}

/// One line of `--input json`: `key`/`key_base64`, `value`/`value_base64` (one of the
/// two required; `null` is a null value), `headers` (`[{"key", "value"}]`, the value
/// as text, `value_base64` or null), `partition`, `timestamp_ms` (ms since the epoch,
/// or null). `topic`, `offset` and `group_id` are what `consume` prints and are not sent.
fn parse_json(line: &[u8]) -> Result<Parsed<'static>, String> {
    let v: Value =
        serde_json::from_slice(line).map_err(|e| format!("not JSON (--input json): {e}"))?;
    let Value::Object(o) = v else {
        return Err("not a JSON object (--input json)".into());
    };
    let key = bytes_field(&o, "key")?.flatten();
    let value = match bytes_field(&o, "value")? {
        Some(v) => v,
        None => {
            return Err(
                "the object has no `value` (or `value_base64`; null for a null value)".into(),
            );
        }
    };
    let mut headers = Vec::new();
    match o.get("headers") {
        None | Some(Value::Null) => {}
        Some(Value::Array(hs)) => {
            for (i, h) in hs.iter().enumerate() {
                let Value::Object(ho) = h else {
                    return Err(format!("headers[{i}] is not an object"));
                };
                let Some(Value::String(name)) = ho.get("key") else {
                    return Err(format!("headers[{i}] has no string `key`"));
                };
                let value = bytes_field(ho, "value")
                    .map_err(|e| format!("headers[{i}]: {e}"))?
                    .flatten();
                headers.push((name.clone(), value));
            }
        }
        Some(_) => return Err("`headers` is not an array".into()),
    }
    let partition = match o.get("partition") {
        None | Some(Value::Null) => None,
        Some(p) => match p.as_i64().and_then(|p| i32::try_from(p).ok()) {
            Some(p) if p >= 0 => Some(p),
            _ => return Err(format!("`partition` is {p}, not a partition number")),
        },
    };
    let timestamp_ms = match o.get("timestamp_ms") {
        None | Some(Value::Null) => None,
        Some(t) => match t.as_i64() {
            Some(t) if t >= 0 => Some(t),
            _ => {
                return Err(format!(
                    "`timestamp_ms` is {t}, not a time in ms since the epoch"
                ));
            }
        },
    };
    Ok(Parsed {
        key: key.map(Cow::Owned),
        value: value.map(Cow::Owned),
        headers,
        partition,
        timestamp_ms,
    })
}

/// Field `name` (text, or `null`) or `name_base64`: `None` if neither is there,
/// `Some(None)` for `null`.
fn bytes_field(o: &Map<String, Value>, name: &str) -> Result<Option<Option<Vec<u8>>>, String> {
    let b64 = format!("{name}_base64");
    match (o.get(name), o.get(&b64)) {
        (Some(_), Some(_)) => Err(format!("both `{name}` and `{b64}` are set")),
        (None, None) => Ok(None),
        (Some(Value::Null), None) => Ok(Some(None)),
        (Some(Value::String(s)), None) => Ok(Some(Some(s.as_bytes().to_vec()))),
        (Some(_), None) => Err(format!("`{name}` is not a string or null")),
        (None, Some(Value::String(s))) => base64_decode(s)
            .map(|b| Some(Some(b)))
            .ok_or_else(|| format!("`{b64}` is not standard base64")),
        (None, Some(_)) => Err(format!("`{b64}` is not a string")),
    }
}

/// Decodes standard base64 (RFC 4648, padding optional); `None` if it is not.
pub fn base64_decode(s: &str) -> Option<Vec<u8>> {
    let s = s.trim_end_matches('=');
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    let mut acc = 0u32;
    let mut bits = 0u32;
    for c in s.bytes() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    // A lone sixth of a byte left over cannot come from an encoder.
    (bits < 6).then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::consume::base64;

    #[test]
    fn delimiters_take_kcats_escapes() {
        assert_eq!(parse_delim(":").unwrap(), b":");
        assert_eq!(parse_delim("\\n--\\t").unwrap(), b"\n--\t");
        assert_eq!(parse_delim("\\x1e").unwrap(), [0x1e]);
        assert_eq!(parse_delim("a\\\\b").unwrap(), b"a\\b");
        assert!(parse_delim("").is_err());
        assert!(parse_delim("\\q").is_err());
        assert!(parse_delim("\\x1").is_err());
    }

    #[test]
    fn headers_split_at_the_first_equals() {
        assert_eq!(
            parse_header("a=b=c").unwrap(),
            ("a".into(), b"b=c".to_vec())
        );
        assert_eq!(parse_header("a=").unwrap(), ("a".into(), Vec::new()));
        assert!(parse_header("ab").unwrap_err().contains("no `=`"));
        assert!(parse_header("=b").is_err());
    }

    #[test]
    fn key_delimiter_splits_at_the_first_one_and_a_line_without_it_fails() {
        let f = LineFormat {
            key_delim: Some(b"::".to_vec()),
            ..LineFormat::default()
        };
        let p = f.parse(b"k::v::w").unwrap();
        assert_eq!(p.key.as_deref(), Some(&b"k"[..]));
        assert_eq!(p.value.as_deref(), Some(&b"v::w"[..]));
        assert!(f.parse(b"no delimiter").unwrap_err().contains("-K"));
        let z = LineFormat {
            null_empty: true,
            ..f.clone()
        };
        let p = z.parse(b"::").unwrap();
        assert_eq!((p.key, p.value), (None, None));
        let p = f.parse(b"::").unwrap();
        assert_eq!(p.key.as_deref(), Some(&b""[..]));
        assert_eq!(p.value.as_deref(), Some(&b""[..]));
    }

    #[test]
    fn fixed_key_and_null_empty() {
        let f = LineFormat {
            fixed_key: Some(b"K".to_vec()),
            null_empty: true,
            ..LineFormat::default()
        };
        let p = f.parse(b"").unwrap();
        assert_eq!(p.key.as_deref(), Some(&b"K"[..]));
        assert_eq!(p.value, None);
    }

    #[test]
    fn json_lines_read_what_consume_prints() {
        let f = LineFormat {
            json: true,
            ..LineFormat::default()
        };
        let line = format!(
            r#"{{"topic":"t","partition":2,"offset":5,"timestamp_ms":1,"key_base64":"{}","value":null,"headers":[{{"key":"h","value":"x"}},{{"key":"n","value":null}},{{"key":"b","value_base64":"/wA="}}],"group_id":"t:2:5:5"}}"#,
            base64(&[0xff, 0x00, 0x01])
        );
        let p = f.parse(line.as_bytes()).unwrap();
        assert_eq!(p.key.as_deref(), Some(&[0xff, 0x00, 0x01][..]));
        assert_eq!(p.value, None);
        assert_eq!(p.partition, Some(2));
        assert_eq!(
            p.headers,
            vec![
                ("h".to_string(), Some(b"x".to_vec())),
                ("n".to_string(), None),
                ("b".to_string(), Some(vec![0xff, 0x00])),
            ]
        );
        assert!(f.parse(b"{}").unwrap_err().contains("no `value`"));
        assert!(f.parse(b"nope").unwrap_err().contains("not JSON"));
        assert!(f.parse(br#"{"value":"a","value_base64":"YQ=="}"#).is_err());
        assert!(f.parse(br#"{"value":"a","partition":-1}"#).is_err());
    }

    #[test]
    fn base64_decodes_what_consume_encodes() {
        for len in 0..40u8 {
            let bytes: Vec<u8> = (0..len).map(|i| i.wrapping_mul(37) ^ 0xa5).collect();
            assert_eq!(base64_decode(&base64(&bytes)).unwrap(), bytes, "{len}");
        }
        assert_eq!(base64_decode("Zm9vYg").unwrap(), b"foob");
        assert!(base64_decode("Zm9v!").is_none());
        assert!(base64_decode("Z").is_none());
    }
}
