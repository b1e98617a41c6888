//! librdkafka's log lines and errors on their way to the `log` crate (target
//! `librdkafka`, which the plugin-api forwards to the host): every line passes the
//! project's one secret rule ([`pseidon_plugin_api::secret`]) first, for every
//! client (producer, group consumer, replay consumer).

use pseidon_plugin_api::secret::Scrubber;
use rdkafka::config::RDKafkaLogLevel;

use crate::config::Config;

/// The secret conf values of `config` (by the project's one rule,
/// [`pseidon_plugin_api::secret::is_secret_key`]), to blank out of librdkafka's log
/// lines and errors.
pub(crate) fn secret_values(config: &Config) -> Scrubber {
    config.scrubber()
}

/// `text` with every value of `secrets` blanked out.
pub(crate) fn scrub<'a>(secrets: &Scrubber, text: &'a str) -> std::borrow::Cow<'a, str> {
    secrets.scrub(text)
}

/// Forwards one librdkafka log line to the `log` crate (target `librdkafka`) with the
/// secrets blanked out: the producer's and the consumers' `ClientContext::log`.
pub(crate) fn log_librdkafka(secrets: &Scrubber, level: RDKafkaLogLevel, fac: &str, message: &str) {
    let level = match level {
        RDKafkaLogLevel::Emerg
        | RDKafkaLogLevel::Alert
        | RDKafkaLogLevel::Critical
        | RDKafkaLogLevel::Error => log::Level::Error,
        RDKafkaLogLevel::Warning => log::Level::Warn,
        RDKafkaLogLevel::Notice | RDKafkaLogLevel::Info => log::Level::Info,
        RDKafkaLogLevel::Debug => log::Level::Debug,
    };
    if level <= log::max_level() {
        log::log!(target: "librdkafka", level, "{fac}: {}", secrets.scrub(message));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_scrubbed() {
        let secrets = Scrubber::from_pairs([
            ("sasl.password", "hunter2"),
            (
                "sasl.oauthbearer.assertion.private.key.passphrase",
                "s3cr3t-phrase",
            ),
        ]);
        assert_eq!(scrub(&secrets, "pw hunter2 x"), "pw <redacted> x");
        assert_eq!(
            scrub(&secrets, "passphrase s3cr3t-phrase"),
            "passphrase <redacted>"
        );
        assert!(matches!(
            scrub(&secrets, "nothing"),
            std::borrow::Cow::Borrowed("nothing")
        ));
    }
}
