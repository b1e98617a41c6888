//! Property tests of the host conf parsing and flattening (`Conf::parse`), with
//! generated input: arbitrary text, random TOML documents (nested tables, every value
//! kind, odd keys) and random mutations of them.
//!
//! Properties: parsing never panics; malformed text is a `Parse` error naming the file
//! and a line/column inside the text; a host key of the wrong type is an error naming
//! the key; a valid document flattens to exactly its leaf keys (dotted names), each with
//! its TOML kind and strings passed as they are.
//!
//! The generator is a small seeded PRNG (this crate has no proptest dev-dependency);
//! every failure message carries the seed and the case: rerun one with
//! `PSEIDON_PROPTEST_SEED=<seed>`. `PSEIDON_PROPTEST_CASES` scales the case counts.

use std::path::Path;

use pseidon_host::{Conf, conf::ConfError};
use pseidon_plugin_api::ConfKind;

/// xorshift64* — deterministic, dependency-free.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Self {
        Rng(seed.max(1))
    }
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
    fn chance(&mut self, percent: usize) -> bool {
        self.below(100) < percent
    }
    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
    /// A string of up to `max` chars from a mix of ASCII, TOML syntax, control and
    /// multi-byte characters.
    fn text(&mut self, max: usize) -> String {
        const SPECIAL: &[char] = &[
            '=', '[', ']', '{', '}', '"', '\'', '.', ',', '#', '\n', '\r', '\t', ' ', '\\', ':',
            '-', '_', '+', '\0', '\u{7f}', 'é', '€', '𝄞', '\u{feff}', '\u{2028}',
        ];
        let len = self.below(max + 1);
        (0..len)
            .map(|_| match self.below(3) {
                0 => *self.pick(SPECIAL),
                1 => (b'a' + self.below(26) as u8) as char,
                _ => char::from_u32(self.below(0x1_0000) as u32).unwrap_or('x'),
            })
            .collect()
    }
}

fn seed() -> u64 {
    std::env::var("PSEIDON_PROPTEST_SEED")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(42)
        })
}

fn cases(base: usize) -> usize {
    let scale: usize = std::env::var("PSEIDON_PROPTEST_CASES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1);
    base * scale.max(1)
}

const PATH: &str = "/etc/pseidon/proptest.toml";

/// Checks a parse error: it names the file, and a `Parse` error points inside the text.
fn check_error(err: &ConfError, text: &str, ctx: &str) {
    let msg = err.to_string();
    assert!(
        msg.contains(PATH),
        "{ctx}: error does not name the file: {msg}"
    );
    match err {
        ConfError::Parse {
            line,
            column,
            message,
            ..
        } => {
            let lines = text.split('\n').count();
            assert!(
                *line >= 1 && *line <= lines,
                "{ctx}: line {line} outside 1..={lines}: {msg}"
            );
            let len = text
                .split('\n')
                .nth(line - 1)
                .map(|l| l.chars().count())
                .unwrap_or(0);
            assert!(
                *column >= 1 && *column <= len + 1,
                "{ctx}: column {column} outside 1..={}: {msg}",
                len + 1
            );
            assert!(
                !message.trim().is_empty(),
                "{ctx}: parse error without a message"
            );
        }
        ConfError::WrongType { key, .. } | ConfError::InvalidValue { key, .. } => {
            assert!(
                [
                    "plugin-dirs",
                    "classpath",
                    "strict",
                    "shutdown-timeout-ms",
                    "allow-writable-plugins"
                ]
                .contains(&key.as_str()),
                "{ctx}: type error for a key that is not a host key: {msg}"
            );
            assert!(
                msg.contains(key.as_str()),
                "{ctx}: error does not name the key: {msg}"
            );
        }
        ConfError::DuplicateKey { key, .. } => {
            assert!(
                msg.contains(&format!("`{key}`")),
                "{ctx}: duplicate-key error does not name the key: {msg}"
            );
        }
        other => panic!("{ctx}: unexpected error kind from parse: {other:?}"),
    }
}

/// Arbitrary text never panics the parser; errors are clear.
#[test]
fn arbitrary_text_never_panics() {
    let seed = seed();
    let mut rng = Rng::new(seed);
    for case in 0..cases(3000) {
        let text = rng.text(200);
        let ctx = format!("seed {seed} case {case} text {text:?}");
        if let Err(e) = Conf::parse(&text, Path::new(PATH)) {
            check_error(&e, &text, &ctx);
        }
    }
}

/// A random TOML value; tables nest up to `depth`.
fn value(rng: &mut Rng, depth: usize) -> toml::Value {
    match rng.below(if depth == 0 { 6 } else { 8 }) {
        0 => toml::Value::String(rng.text(20)),
        1 => toml::Value::Integer(rng.next() as i64 >> rng.below(64)),
        2 => {
            let f = (rng.next() as i64 >> 20) as f64 / 1000.0;
            toml::Value::Float(f)
        }
        3 => toml::Value::Boolean(rng.chance(50)),
        4 => toml::Value::Datetime("1979-05-27T07:32:00Z".parse().expect("datetime literal")),
        5 => toml::Value::Array((0..rng.below(4)).map(|_| value(rng, 0)).collect()),
        _ => toml::Value::Table(table(rng, depth - 1)),
    }
}

/// Keys: plain, dotted-looking (quoted when written), host keys, `kafka.*`-like, odd.
fn key(rng: &mut Rng) -> String {
    match rng.below(5) {
        0 => rng
            .pick(&[
                "kafka",
                "pseidon-kafka",
                "bootstrap.servers",
                "acks",
                "a.b.c",
                "x",
            ])
            .to_string(),
        1 => rng.text(12),
        2 => format!("k{}", rng.below(1000)),
        3 => rng
            .pick(&["sasl.password", "linger.ms", "status-db", "", " ", "é"])
            .to_string(),
        _ => format!("{}.{}", rng.text(4), rng.text(4)),
    }
}

fn table(rng: &mut Rng, depth: usize) -> toml::Table {
    let mut t = toml::Table::new();
    for _ in 0..rng.below(6) {
        t.insert(key(rng), value(rng, depth));
    }
    t
}

/// The flattening `Conf::parse` promises: leaf keys joined with `.`, an empty table is
/// one `Table` entry, arrays stay whole.
fn expected_leaves(
    prefix: &str,
    t: &toml::Table,
    out: &mut Vec<(String, ConfKind, Option<String>)>,
) {
    for (k, v) in t {
        let key = if prefix.is_empty() {
            k.clone()
        } else {
            format!("{prefix}.{k}")
        };
        match v {
            toml::Value::Table(inner) if !inner.is_empty() => expected_leaves(&key, inner, out),
            toml::Value::Table(_) => out.push((key, ConfKind::Table, None)),
            toml::Value::String(s) => out.push((key, ConfKind::String, Some(s.clone()))),
            toml::Value::Integer(i) => out.push((key, ConfKind::Integer, Some(i.to_string()))),
            toml::Value::Float(_) => out.push((key, ConfKind::Float, None)),
            toml::Value::Boolean(b) => out.push((key, ConfKind::Boolean, Some(b.to_string()))),
            toml::Value::Datetime(_) => out.push((key, ConfKind::Datetime, None)),
            toml::Value::Array(_) => out.push((key, ConfKind::Array, None)),
        }
    }
}

/// Random valid documents (without host keys) parse, and flatten to exactly their leaves.
#[test]
fn random_documents_flatten_to_their_leaves() {
    let seed = seed();
    let mut rng = Rng::new(seed);
    for case in 0..cases(800) {
        let mut doc = table(&mut rng, 3);
        for host_key in [
            "plugin-dirs",
            "classpath",
            "strict",
            "shutdown-timeout-ms",
            "allow-writable-plugins",
        ] {
            doc.remove(host_key);
        }
        let Ok(text) = toml::to_string(&doc) else {
            continue;
        };
        let ctx = format!("seed {seed} case {case} text:\n{text}");
        let mut want = Vec::new();
        expected_leaves("", &doc, &mut want);
        let mut keys: Vec<&String> = want.iter().map(|w| &w.0).collect();
        keys.sort();
        if keys.windows(2).any(|w| w[0] == w[1]) {
            // Two entries flatten to one key: refused, naming it.
            let err = Conf::parse(&text, Path::new(PATH));
            assert!(
                matches!(&err, Err(ConfError::DuplicateKey { .. })),
                "{ctx}\nambiguous conf accepted"
            );
            continue;
        }
        let conf = Conf::parse(&text, Path::new(PATH))
            .unwrap_or_else(|e| panic!("{ctx}\nvalid TOML refused: {e}"));
        // Compared as multisets: the serializer writes scalars before tables, and a
        // dotted key can repeat (see `duplicate_flattened_keys_are_refused`).
        let mut got: Vec<(String, ConfKind, Option<String>)> = conf
            .view
            .entries()
            .iter()
            .map(|e| {
                let keep = matches!(
                    e.kind,
                    ConfKind::String | ConfKind::Integer | ConfKind::Boolean
                );
                (e.key.clone(), e.kind, keep.then(|| e.value.clone()))
            })
            .collect();
        let key_of = |e: &(String, ConfKind, Option<String>)| {
            (e.0.clone(), format!("{:?}", e.1), e.2.clone())
        };
        got.sort_by_key(key_of);
        want.sort_by_key(key_of);
        assert_eq!(got, want, "{ctx}");
    }
}

/// A quoted dotted key and a table can name the same flattened key
/// (`"kafka.acks" = "all"` and `[kafka] acks = "0"`): an error naming the key.
#[test]
fn duplicate_flattened_keys_are_refused() {
    let text = "\"kafka.acks\" = \"all\"\n[kafka]\nacks = \"0\"\n";
    let err = Conf::parse(text, Path::new(PATH)).map(|c| c.view.entries().len());
    assert!(
        matches!(&err, Err(e) if e.to_string().contains("kafka.acks")),
        "ambiguous conf accepted: {err:?}"
    );
}

/// Random mutations of valid documents (insert, delete, duplicate lines): never a
/// panic; any error is clear.
#[test]
fn mutated_documents_never_panic() {
    let seed = seed();
    let mut rng = Rng::new(seed ^ 0x5eed);
    for case in 0..cases(1500) {
        let doc = table(&mut rng, 2);
        let Ok(mut text) = toml::to_string(&doc) else {
            continue;
        };
        for _ in 0..1 + rng.below(4) {
            let chars: Vec<char> = text.chars().collect();
            let at = rng.below(chars.len() + 1);
            text = match rng.below(4) {
                0 => {
                    let ins = rng.text(6);
                    chars[..at].iter().collect::<String>()
                        + &ins
                        + &chars[at..].iter().collect::<String>()
                }
                1 => {
                    let end = (at + 1 + rng.below(8)).min(chars.len());
                    chars[..at.min(end)]
                        .iter()
                        .chain(chars[end..].iter())
                        .collect()
                }
                2 => format!("{text}\n{text}"),
                _ => {
                    let host = rng.pick(&[
                        "strict = \"yes\"",
                        "plugin-dirs = \"/x\"",
                        "plugin-dirs = [1]",
                        "shutdown-timeout-ms = -5",
                        "shutdown-timeout-ms = 1.5",
                        "classpath = {}",
                        "allow-writable-plugins = 1",
                    ]);
                    format!("{host}\n{text}")
                }
            };
        }
        let ctx = format!("seed {seed} case {case} text {text:?}");
        if let Err(e) = Conf::parse(&text, Path::new(PATH)) {
            check_error(&e, &text, &ctx);
        }
    }
}

/// Host keys with every wrong kind: an error naming the key and the file, never a
/// silent default.
#[test]
fn host_keys_of_the_wrong_kind_are_refused() {
    let seed = seed();
    let mut rng = Rng::new(seed ^ 0xbad);
    let host_keys: &[(&str, &[&str])] = &[
        (
            "plugin-dirs",
            &[
                "\"a\"",
                "1",
                "true",
                "[1]",
                "[[\"a\"]]",
                "{ x = 1 }",
                "1979-05-27",
            ],
        ),
        ("classpath", &["\"a\"", "1.5", "false", "[true]", "{}"]),
        ("strict", &["\"true\"", "1", "[true]", "{}", "0.0"]),
        (
            "allow-writable-plugins",
            &["\"no\"", "0", "[]", "{ a = 1 }"],
        ),
        (
            "shutdown-timeout-ms",
            &[
                "\"10\"",
                "-1",
                "1.0",
                "true",
                "[10]",
                "-9223372036854775808",
            ],
        ),
    ];
    for case in 0..cases(300) {
        let (k, bad) = *rng.pick(host_keys);
        let v = *rng.pick(bad);
        let text = format!("{k} = {v}\n[kafka]\nacks = \"all\"\n");
        let ctx = format!("seed {seed} case {case} text {text:?}");
        let err = Conf::parse(&text, Path::new(PATH))
            .map(|_| ())
            .expect_err(&format!("{ctx}: accepted"));
        check_error(&err, &text, &ctx);
        assert!(err.to_string().contains(k), "{ctx}: {err}");
    }
}
