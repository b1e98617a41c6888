//! The plugin's view of the host conf: every key, tables flattened to dotted names.

use abi_stable::std_types::RVec;

use crate::ffi::FfiConfEntry;
pub use crate::ffi::FfiConfKind as ConfKind;

/// One conf key and its value.
#[derive(Debug, Clone, PartialEq)]
pub struct ConfEntry {
    /// Dotted key, e.g. `kafka.bootstrap.servers` (from `[kafka]` + `bootstrap.servers` too).
    pub key: String,
    /// The value's TOML type.
    pub kind: ConfKind,
    /// Strings as they are; other values in their TOML form (`5000`, `true`, `["a", "b"]`).
    pub value: String,
}

/// All conf entries handed to a plugin, in file order.
///
/// ```
/// use pseidon_plugin_api::{ConfEntry, ConfKind, ConfView};
/// let conf = ConfView::new(vec![ConfEntry {
///     key: "kafka.acks".into(), kind: ConfKind::String, value: "all".into(),
/// }]);
/// assert_eq!(conf.get("kafka.acks").map(|e| e.value.as_str()), Some("all"));
/// assert_eq!(conf.with_prefix("kafka.").count(), 1);
/// ```
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ConfView {
    entries: Vec<ConfEntry>,
}

impl ConfView {
    /// A view of these entries.
    pub fn new(entries: Vec<ConfEntry>) -> Self {
        ConfView { entries }
    }

    /// The entry for `key`, if the conf has it.
    pub fn get(&self, key: &str) -> Option<&ConfEntry> {
        self.entries.iter().find(|e| e.key == key)
    }

    /// Every entry whose key starts with `prefix`.
    pub fn with_prefix<'a>(&'a self, prefix: &'a str) -> impl Iterator<Item = &'a ConfEntry> + 'a {
        self.entries
            .iter()
            .filter(move |e| e.key.starts_with(prefix))
    }

    /// All entries.
    pub fn entries(&self) -> &[ConfEntry] {
        &self.entries
    }

    pub(crate) fn to_ffi(&self) -> RVec<FfiConfEntry> {
        self.entries
            .iter()
            .map(|e| FfiConfEntry {
                key: e.key.as_str().into(),
                kind: e.kind,
                value: e.value.as_str().into(),
            })
            .collect()
    }

    pub(crate) fn from_ffi(entries: &RVec<FfiConfEntry>) -> Self {
        ConfView {
            entries: entries
                .iter()
                .map(|e| ConfEntry {
                    key: e.key.to_string(),
                    kind: e.kind,
                    value: e.value.to_string(),
                })
                .collect(),
        }
    }
}
