//! `pseidon consume -f FORMAT`: kcat's output format strings. Tokens: `%t` topic, `%p`
//! partition, `%o` offset, `%k` key, `%K` key length (-1 for a null key), `%s` value,
//! `%S` value length (-1 for a null value), `%R` the value length as a 4-byte
//! big-endian signed integer (-1 for null), `%T` timestamp in ms (-1 if none), `%h`
//! headers as `name=value` separated by commas, `%%` a `%`; escapes `\n`, `\r`, `\t`,
//! `\\` and `\xNN`. Keys and values are printed as raw bytes; a null key or value
//! prints the null string (`-Z`: `NULL`, `--null-value STR`; empty by default).

use pseidon_plugin_api::Message;

/// One piece of a format.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    Literal(Vec<u8>),
    Topic,
    Partition,
    Offset,
    Key,
    KeyLen,
    Value,
    ValueLen,
    ValueLenBe32,
    Timestamp,
    Headers,
}

/// A parsed `-f` format.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    tokens: Vec<Token>,
}

impl Template {
    /// Parses a format; the error says which token or escape is unknown. For clap.
    pub fn parse(s: &str) -> Result<Template, String> {
        let mut tokens = Vec::new();
        let mut lit = Vec::new();
        let bytes = s.as_bytes();
        let mut i = 0;
        while i < bytes.len() {
            match bytes[i] {
                b'%' => {
                    let t = match bytes.get(i + 1) {
                        Some(b't') => Token::Topic,
                        Some(b'p') => Token::Partition,
                        Some(b'o') => Token::Offset,
                        Some(b'k') => Token::Key,
                        Some(b'K') => Token::KeyLen,
                        Some(b's') => Token::Value,
                        Some(b'S') => Token::ValueLen,
                        Some(b'R') => Token::ValueLenBe32,
                        Some(b'T') => Token::Timestamp,
                        Some(b'h') => Token::Headers,
                        Some(b'%') => {
                            lit.push(b'%');
                            i += 2;
                            continue;
                        }
                        _ => {
                            let what = s.get(i..i + 2).unwrap_or("%");
                            return Err(format!(
                                "unknown token `{what}` (known: %t %p %o %k %K %s %S %R %T %h %%)"
                            ));
                        }
                    };
                    if !lit.is_empty() {
                        tokens.push(Token::Literal(std::mem::take(&mut lit)));
                    }
                    tokens.push(t);
                    i += 2;
                }
                b'\\' => {
                    match bytes.get(i + 1) {
                        Some(b'n') => lit.push(b'\n'),
                        Some(b'r') => lit.push(b'\r'),
                        Some(b't') => lit.push(b'\t'),
                        Some(b'\\') => lit.push(b'\\'),
                        Some(b'x') => {
                            let hex = s.get(i + 2..i + 4).unwrap_or("");
                            let b = u8::from_str_radix(hex, 16).map_err(|_| {
                                "`\\x` must be followed by two hex digits (as in \\x1e)".to_string()
                            })?;
                            lit.push(b);
                            i += 4;
                            continue;
                        }
                        _ => {
                            return Err("unknown escape (known: \\n \\r \\t \\\\ \\xNN)".into());
                        }
                    }
                    i += 2;
                }
                b => {
                    lit.push(b);
                    i += 1;
                }
            }
        }
        if !lit.is_empty() {
            tokens.push(Token::Literal(lit));
        }
        if tokens.is_empty() {
            return Err("the format is empty".into());
        }
        Ok(Template { tokens })
    }

    /// Appends `m` formatted to `out`; `null` is what a null key or value prints.
    pub fn write(&self, m: &Message, null: &[u8], out: &mut Vec<u8>) {
        let len = |b: Option<&[u8]>| b.map_or(-1, |b| i64::try_from(b.len()).unwrap_or(i64::MAX));
        for t in &self.tokens {
            match t {
                Token::Literal(l) => out.extend_from_slice(l),
                Token::Topic => out.extend_from_slice(m.topic().as_bytes()),
                Token::Partition => out.extend_from_slice(m.partition().to_string().as_bytes()),
                Token::Offset => out.extend_from_slice(m.offset().to_string().as_bytes()),
                Token::Key => out.extend_from_slice(m.key().unwrap_or(null)),
                Token::KeyLen => out.extend_from_slice(len(m.key()).to_string().as_bytes()),
                Token::Value => out.extend_from_slice(m.value().unwrap_or(null)),
                Token::ValueLen => out.extend_from_slice(len(m.value()).to_string().as_bytes()),
                Token::ValueLenBe32 => {
                    let n = i32::try_from(len(m.value())).unwrap_or(i32::MAX);
                    out.extend_from_slice(&n.to_be_bytes());
                }
                Token::Timestamp => {
                    out.extend_from_slice(m.timestamp_ms().unwrap_or(-1).to_string().as_bytes())
                }
                Token::Headers => {
                    for (i, h) in m.headers().iter().enumerate() {
                        if i > 0 {
                            out.push(b',');
                        }
                        out.extend_from_slice(h.key().as_bytes());
                        out.push(b'=');
                        out.extend_from_slice(h.value().unwrap_or_default());
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use pseidon_plugin_api::{MessageGroup, MessageHeader, message_group::MessageParts};

    use super::*;

    fn group(key: Option<&[u8]>, value: Option<&[u8]>) -> MessageGroup {
        MessageGroup::new(
            "t",
            3,
            1,
            vec![MessageParts {
                offset: 42,
                timestamp_ms: Some(1_700_000_000_123),
                key: key.map(<[u8]>::to_vec),
                value: value.map(<[u8]>::to_vec),
                headers: vec![
                    MessageHeader::new("a", Some(b"1".to_vec())),
                    MessageHeader::new("b", None),
                ],
            }],
        )
    }

    fn render(fmt: &str, g: &MessageGroup, null: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        Template::parse(fmt)
            .unwrap()
            .write(&g.messages()[0], null, &mut out);
        out
    }

    #[test]
    fn every_token_renders_as_kcat_documents() {
        let g = group(Some(b"kk"), Some(b"value"));
        assert_eq!(
            render("%t|%p|%o|%k|%K|%s|%S|%T|%h|100%%\\t\\x41\\n", &g, b""),
            b"t|3|42|kk|2|value|5|1700000000123|a=1,b=|100%\tA\n"
        );
        assert_eq!(render("%R%s", &g, b""), b"\x00\x00\x00\x05value");
    }

    #[test]
    fn nulls_print_the_null_string_and_minus_one_lengths() {
        let g = group(None, None);
        assert_eq!(render("%k:%s %K %S", &g, b"NULL"), b"NULL:NULL -1 -1");
        assert_eq!(render("%k:%s", &g, b""), b":");
        assert_eq!(render("%R", &g, b""), (-1i32).to_be_bytes());
        // An empty value is not a null one.
        let g = group(Some(b""), Some(b""));
        assert_eq!(render("[%k][%s] %K %S", &g, b"NULL"), b"[][] 0 0");
    }

    #[test]
    fn unknown_tokens_and_escapes_are_named() {
        assert!(Template::parse("%x").unwrap_err().contains("`%x`"));
        assert!(Template::parse("%").unwrap_err().contains("unknown token"));
        assert!(Template::parse("\\q").unwrap_err().contains("escape"));
        assert!(Template::parse("").is_err());
    }
}
