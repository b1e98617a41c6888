//! The one rule for what is secret in a conf, shared by the host (`pseidon config`,
//! conf errors) and the plugins (their logs, their errors, librdkafka's log lines):
//! [`is_secret_key`] decides by the key's name, [`Scrubber`] blanks the values of the
//! secret keys out of any text. Plain Rust types only; nothing here crosses the ABI.
//!
//! The rule works on whole dotted keys (`kafka.sasl.password`) and on bare property
//! names (`sasl.password`) alike: it splits the key into words at `.`, `_` and `-`
//! and looks at the words, not at the prefix the host or a plugin put in front.
//! It is tested against every property of librdkafka's CONFIGURATION.md.

use std::borrow::Cow;

/// What a secret value is replaced with, in printed confs and scrubbed text.
pub const REDACTED: &str = "<redacted>";

/// Words that make a key secret wherever they stand (`sasl.password`,
/// `sasl.oauthbearer.client.secret`, `ssl.key.password`, `...private.key.passphrase`,
/// `sasl.jaas.config`).
const SECRET_WORDS: &[&str] = &[
    "password",
    "passwd",
    "secret",
    "passphrase",
    "jaas",
    "apikey",
];

/// Words that make a key secret when they are its last word (`ssl_key`, `api-token`,
/// `aws.credentials`); as a middle word they name something else
/// (`ssl.key.location`, `sasl.oauthbearer.token.endpoint.url`,
/// `sasl.oauthbearer.client.credentials.client.id`).
const SECRET_LAST_WORDS: &[&str] = &["key", "token", "credential", "credentials"];

/// True for conf keys whose values are secrets: passwords, passphrases, client
/// secrets, private keys (a `*.key.pem`, `ssl_key`, `private.key`), tokens,
/// credentials, JAAS and SASL/OAUTHBEARER configs. Their values are printed as
/// [`REDACTED`], never logged and never put in an error. Case-insensitive.
///
/// ```
/// use pseidon_plugin_api::secret::is_secret_key;
/// assert!(is_secret_key("kafka.sasl.password"));
/// assert!(is_secret_key("sasl.oauthbearer.assertion.private.key.passphrase"));
/// assert!(is_secret_key("kafka.sasl.oauthbearer.assertion.private.key.pem"));
/// assert!(is_secret_key("kafka.ssl.key.pem"));
/// assert!(is_secret_key("kafka.sasl.oauthbearer.config"));
/// assert!(!is_secret_key("kafka.ssl.ca.pem"));            // a public certificate
/// assert!(!is_secret_key("kafka.ssl.key.location"));      // a path, not the key
/// assert!(!is_secret_key("kafka.sasl.username"));
/// assert!(!is_secret_key("kafka.bootstrap.servers"));
/// ```
pub fn is_secret_key(key: &str) -> bool {
    let lower = key.to_ascii_lowercase();
    let words: Vec<&str> = lower
        .split(['.', '_', '-'])
        .filter(|w| !w.is_empty())
        .collect();
    let Some(last) = words.last().copied() else {
        return false;
    };
    if words.iter().any(|w| SECRET_WORDS.contains(w)) || SECRET_LAST_WORDS.contains(&last) {
        return true;
    }
    let has = |w: &str| words.contains(&w);
    // A private key in PEM form (`ssl.key.pem`, `...private.key.pem`); a certificate
    // PEM (`ssl.ca.pem`, `ssl.certificate.pem`) is public.
    if last == "pem" && (has("key") || has("private")) {
        return true;
    }
    // SASL/OAUTHBEARER's free-form config carries the principal and, for the unsecured
    // JWT handler and most extensions, credentials.
    last == "config" && has("oauthbearer")
}

/// Blanks the values of secret conf keys out of text (log lines, error reasons).
///
/// A multi-line value (a PEM key) is blanked whole, and each of its lines on its own
/// too (except its `-----BEGIN`/`-----END` armour), so a log line quoting one line of
/// it shows nothing of it either.
///
/// ```
/// use pseidon_plugin_api::secret::Scrubber;
/// let s = Scrubber::from_pairs([("kafka.sasl.password", "hunter2"), ("kafka.acks", "all")]);
/// assert_eq!(s.scrub("auth with hunter2 failed, acks all"), "auth with <redacted> failed, acks all");
/// assert!(!s.is_empty());
/// ```
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Scrubber {
    /// The texts to blank out, longest first (a whole value before its lines).
    values: Vec<String>,
}

impl std::fmt::Debug for Scrubber {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Scrubber({} secret texts)", self.values.len())
    }
}

impl Scrubber {
    /// A scrubber of the values of those `(key, value)` pairs whose key
    /// [`is_secret_key`]; the others are ignored.
    pub fn from_pairs<K, V>(pairs: impl IntoIterator<Item = (K, V)>) -> Scrubber
    where
        K: AsRef<str>,
        V: AsRef<str>,
    {
        let mut s = Scrubber::default();
        for (k, v) in pairs {
            if is_secret_key(k.as_ref()) {
                s.add(v.as_ref());
            }
        }
        s
    }

    /// Adds one secret value (empty values are ignored).
    pub fn add(&mut self, value: &str) {
        let mut push = |t: &str| {
            if !t.is_empty() && !self.values.iter().any(|v| v == t) {
                self.values.push(t.to_string());
            }
        };
        push(value);
        let trimmed = value.trim();
        push(trimmed);
        if trimmed.contains('\n') {
            for line in trimmed.lines().map(str::trim) {
                // Short lines (a PEM's last few characters) would blank out common text.
                if line.len() >= 8 && !line.starts_with("-----") {
                    push(line);
                }
            }
        }
        self.values.sort_by_key(|v| std::cmp::Reverse(v.len()));
    }

    /// True if there is nothing to blank out.
    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    /// `text` with every secret value replaced by [`REDACTED`]; borrowed when there
    /// was nothing to replace.
    pub fn scrub<'a>(&self, text: &'a str) -> Cow<'a, str> {
        if !self.values.iter().any(|v| text.contains(v.as_str())) {
            return Cow::Borrowed(text);
        }
        let mut t = text.to_string();
        for v in &self.values {
            if t.contains(v.as_str()) {
                t = t.replace(v.as_str(), REDACTED);
            }
        }
        Cow::Owned(t)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every property of librdkafka 2.12.1's CONFIGURATION.md whose value is a secret,
    /// found by reading the file: passwords, passphrases, client secrets, private keys
    /// (PEM strings and the API-set key), and the free-form OAUTHBEARER config.
    const LIBRDKAFKA_SECRETS: &[&str] = &[
        "ssl.key.password",
        "ssl.key.pem",
        "ssl_key",
        "ssl.keystore.password",
        "sasl.password",
        "sasl.oauthbearer.config",
        "sasl.oauthbearer.client.secret",
        "sasl.oauthbearer.client.credentials.client.secret",
        "sasl.oauthbearer.assertion.private.key.passphrase",
        "sasl.oauthbearer.assertion.private.key.pem",
    ];

    /// Properties of CONFIGURATION.md whose name or description mentions a secret-ish
    /// word but whose value is not a secret, each with the reason (reviewed by hand).
    const LIBRDKAFKA_NOT_SECRET: &[(&str, &str)] = &[
        ("ssl.cipher.suites", "cipher names"),
        ("ssl.key.location", "a path; the file holds the key"),
        ("ssl.certificate.location", "a path to a public certificate"),
        ("ssl.certificate.pem", "a public certificate"),
        ("ssl_certificate", "a public certificate"),
        ("ssl.ca.location", "a path to CA certificates"),
        ("ssl.ca.pem", "a public CA certificate"),
        ("ssl_ca", "a public CA certificate"),
        ("https.ca.location", "a path to CA certificates"),
        ("https.ca.pem", "a public CA certificate"),
        ("ssl.ca.certificate.stores", "Windows store names"),
        ("ssl.keystore.location", "a path; the file holds the key"),
        ("ssl.engine.location", "a path to a library"),
        ("ssl.engine.id", "an engine name"),
        ("ssl_engine_callback_data", "API-only pointer"),
        ("ssl.certificate.verify_cb", "API-only callback"),
        ("ssl.endpoint.identification.algorithm", "an enum"),
        ("ssl.providers", "provider names"),
        ("enable.ssl.certificate.verification", "a boolean"),
        (
            "sasl.kerberos.kinit.cmd",
            "a command template (keytab by path)",
        ),
        ("sasl.kerberos.keytab", "a path; the file holds the keys"),
        ("sasl.kerberos.principal", "a user name"),
        ("sasl.kerberos.min.time.before.relogin", "a duration"),
        ("sasl.kerberos.service.name", "a service name"),
        ("sasl.username", "a user name"),
        ("sasl.mechanisms", "mechanism names"),
        ("sasl.mechanism", "mechanism names"),
        ("enable.sasl.oauthbearer.unsecure.jwt", "a boolean"),
        ("oauthbearer_token_refresh_cb", "API-only callback"),
        ("sasl.oauthbearer.method", "an enum"),
        ("sasl.oauthbearer.client.id", "a public client id"),
        (
            "sasl.oauthbearer.client.credentials.client.id",
            "a public client id",
        ),
        ("sasl.oauthbearer.scope", "a scope name"),
        ("sasl.oauthbearer.extensions", "public key=value pairs"),
        ("sasl.oauthbearer.token.endpoint.url", "a URL"),
        ("sasl.oauthbearer.grant.type", "an enum"),
        ("sasl.oauthbearer.assertion.algorithm", "an enum"),
        (
            "sasl.oauthbearer.assertion.private.key.file",
            "a path; the file holds the key",
        ),
        ("sasl.oauthbearer.assertion.file", "a path"),
        ("sasl.oauthbearer.assertion.claim.aud", "a claim"),
        ("sasl.oauthbearer.assertion.claim.exp.seconds", "a duration"),
        ("sasl.oauthbearer.assertion.claim.iss", "a claim"),
        ("sasl.oauthbearer.assertion.claim.jti.include", "a boolean"),
        ("sasl.oauthbearer.assertion.claim.nbf.seconds", "a duration"),
        ("sasl.oauthbearer.assertion.claim.sub", "a claim"),
        ("sasl.oauthbearer.assertion.jwt.template.file", "a path"),
        ("sasl.oauthbearer.metadata.authentication.type", "an enum"),
        ("security.protocol", "an enum"),
        ("partitioner", "an enum (mentions the message key)"),
        ("partitioner_cb", "API-only callback"),
        ("msg_order_cmp", "API-only callback"),
        ("message.timeout.ms", "a duration"),
        ("delivery.timeout.ms", "a duration"),
        ("sticky.partitioning.linger.ms", "a duration"),
        ("topic.metadata.refresh.sparse", "a boolean"),
        ("client.dns.lookup", "an enum"),
        ("compression.codec", "an enum"),
        ("compression.type", "an enum"),
    ];

    const CONFIGURATION_MD: &str =
        include_str!("../../vendor/rdkafka-sys/librdkafka/CONFIGURATION.md");

    /// Words in a property's name that suggest its value may be secret.
    const SUSPICIOUS_IN_NAME: &[&str] = &[
        "password",
        "passwd",
        "secret",
        "passphrase",
        "private",
        "pem",
        "token",
        "credential",
        "jaas",
        "key",
        "keytab",
        "keystore",
        "auth",
        "config",
    ];

    /// Words in a property's description that suggest its value may be secret.
    const SUSPICIOUS_IN_DESCRIPTION: &[&str] = &[
        "password",
        "passwd",
        "secret",
        "passphrase",
        "private key",
        "pem",
        "token",
        "credential",
        "jaas",
        "keytab",
        "keystore",
        "sensitive",
    ];

    /// (property, description) of every row of the property tables.
    fn properties() -> Vec<(String, String)> {
        CONFIGURATION_MD
            .lines()
            .filter_map(|line| {
                let mut cols = line.split(" | ");
                let name = cols.next()?.trim();
                let valid = !name.is_empty()
                    && name
                        .chars()
                        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "._".contains(c));
                if !valid || !line.contains('|') {
                    return None;
                }
                Some((name.to_string(), line.to_ascii_lowercase()))
            })
            .collect()
    }

    #[test]
    fn the_table_parser_finds_all_librdkafka_properties() {
        let props = properties();
        assert!(props.len() > 150, "only {} properties parsed", props.len());
        for p in LIBRDKAFKA_SECRETS {
            assert!(
                props.iter().any(|(n, _)| n == p),
                "{p} is not in CONFIGURATION.md any more: update the list"
            );
        }
    }

    #[test]
    fn every_librdkafka_secret_is_secret_with_and_without_prefix() {
        for p in LIBRDKAFKA_SECRETS {
            assert!(is_secret_key(p), "{p}");
            assert!(is_secret_key(&format!("kafka.{p}")), "kafka.{p}");
            assert!(is_secret_key(&p.to_ascii_uppercase()), "{p} upper case");
        }
        for (p, why) in LIBRDKAFKA_NOT_SECRET {
            assert!(!is_secret_key(p), "{p} ({why}) must not be secret");
        }
    }

    /// Fails when librdkafka gains a property that looks secret (by name or
    /// description) and nobody decided whether it is, or when the rule and the
    /// reviewed lists disagree on any property.
    #[test]
    fn every_suspicious_librdkafka_property_is_classified() {
        let mut unclassified = Vec::new();
        let mut disagree = Vec::new();
        for (name, row) in properties() {
            let listed_secret = LIBRDKAFKA_SECRETS.contains(&name.as_str());
            let listed_not = LIBRDKAFKA_NOT_SECRET.iter().any(|(n, _)| *n == name);
            if is_secret_key(&name) != listed_secret {
                disagree.push(name.clone());
            }
            let suspicious = SUSPICIOUS_IN_NAME.iter().any(|w| name.contains(w))
                || SUSPICIOUS_IN_DESCRIPTION.iter().any(|w| row.contains(w));
            if suspicious && !listed_secret && !listed_not {
                unclassified.push(name);
            }
        }
        assert!(
            disagree.is_empty(),
            "is_secret_key disagrees with LIBRDKAFKA_SECRETS on: {disagree:?}"
        );
        assert!(
            unclassified.is_empty(),
            "properties of CONFIGURATION.md that look secret but are not classified \
             (add each to LIBRDKAFKA_SECRETS or LIBRDKAFKA_NOT_SECRET): {unclassified:?}"
        );
    }

    #[test]
    fn other_plugins_keys_follow_the_same_words() {
        for k in [
            "my-plugin.api-token",
            "my-plugin.api_key",
            "db.password",
            "aws.credentials",
            "x.apikey",
            "kafka.sasl.jaas.config",
            "more.kafka.sasl.password",
            "Kafka.SASL.Password",
        ] {
            assert!(is_secret_key(k), "{k}");
        }
        for k in [
            "plugin-dirs",
            "pseidon-kafka.status-db",
            "kafka.acks",
            "kafka.key.serializer.class",
            "monkey",
            "tokens.count",
            "",
            ".",
        ] {
            assert!(!is_secret_key(k), "{k}");
        }
    }

    #[test]
    fn scrubber_blanks_whole_values_and_pem_lines() {
        let pem = "-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC\nBKcwggSjAgEAAoIBAQC7\n-----END PRIVATE KEY-----\n";
        let s = Scrubber::from_pairs([
            ("kafka.ssl.key.pem", pem),
            ("kafka.sasl.password", "hunter2"),
            ("kafka.sasl.username", "alice"),
            ("kafka.ssl.key.password", ""),
        ]);
        assert_eq!(
            s.scrub(&format!("conf {pem} end")),
            "conf <redacted> end",
            "the whole value"
        );
        assert_eq!(
            s.scrub("bad line MIIEvQIBADANBgkqhkiG9w0BAQEFAASC here"),
            "bad line <redacted> here"
        );
        assert_eq!(s.scrub("alice: hunter2"), "alice: <redacted>");
        assert!(matches!(s.scrub("nothing here"), Cow::Borrowed(_)));
        assert!(
            s.scrub("-----BEGIN PRIVATE KEY-----").contains("BEGIN"),
            "the armour alone is no secret"
        );
        assert!(Scrubber::from_pairs([("kafka.acks", "all")]).is_empty());
        assert!(!format!("{s:?}").contains("hunter2"));
    }
}
