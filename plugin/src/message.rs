//! Messages copied out of librdkafka, and their sizes.
//!
//! A message is copied as soon as it is polled: a borrowed message pins librdkafka's
//! fetch buffers, and a consumer dropped while one is alive hangs. The size of a message
//! is what `group-max-bytes` counts: its key, value and headers.

use pseidon_plugin_api::{MessageHeader, message_group::MessageParts};
use rdkafka::{
    Message,
    message::{BorrowedMessage, Headers},
};

/// Copies a message out of librdkafka.
pub(crate) fn copy_message(m: &BorrowedMessage<'_>) -> MessageParts {
    MessageParts {
        offset: m.offset(),
        timestamp_ms: m.timestamp().to_millis(),
        key: m.key().map(<[u8]>::to_vec),
        value: m.payload().map(<[u8]>::to_vec),
        headers: m
            .headers()
            .map(|hs| {
                hs.iter()
                    .map(|h| MessageHeader::new(h.key, h.value.map(<[u8]>::to_vec)))
                    .collect()
            })
            .unwrap_or_default(),
    }
}

/// Bytes of a message's key, value and headers (what `group-max-bytes` counts).
pub(crate) fn parts_bytes(m: &MessageParts) -> usize {
    m.key.as_ref().map_or(0, Vec::len)
        + m.value.as_ref().map_or(0, Vec::len)
        + m.headers
            .iter()
            .map(|h| h.key().len() + h.value().map_or(0, <[u8]>::len))
            .sum::<usize>()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_bytes_counts_key_value_and_headers() {
        let m = MessageParts {
            offset: 0,
            timestamp_ms: None,
            key: Some(b"kk".to_vec()),
            value: Some(vec![0; 100]),
            headers: vec![
                MessageHeader::new("h1", Some(b"vvv".to_vec())),
                MessageHeader::new("h2", None),
            ],
        };
        assert_eq!(parts_bytes(&m), 2 + 100 + (2 + 3) + 2);
        let tombstone = MessageParts {
            value: None,
            key: None,
            headers: vec![],
            ..m
        };
        assert_eq!(parts_bytes(&tombstone), 0);
    }
}
