//! Cache keys: one injective, runtime-independent key scheme (DESIGN §2 "Keys").
//!
//! Python, Node and WASM hosts all call this code, so the same inputs give byte-identical keys
//! everywhere.
//!
//! # Layout
//!
//! ```text
//! ns:seg1:seg2[:#<params hash>][:v<N>]        plain form
//! {ns}:seg1:seg2[:#<params hash>][:v<N>]      hash-tag form (Redis Cluster: one slot per namespace)
//! ns:!gen / {ns}:!gen                         namespace generation counter
//! ns:!tag:<tag> / {ns}:!tag:<tag>             a tag's generation counter
//! <prefix>~<32 hex>                           any of the above when longer than max_len
//! ```
//!
//! * `<params hash>` is [`params_hash`]: RFC 8785 canonical JSON, SHA-256, first 16 bytes as 32
//!   lowercase hex characters.
//! * `<N>` is the version in canonical decimal (no sign, no leading zeros).
//!
//! # Escaping
//!
//! The namespace, every segment and a tag are percent-encoded byte-wise on their UTF-8 bytes, with
//! uppercase hex, for exactly these bytes:
//!
//! | byte(s)                      | encoded as        |
//! |------------------------------|-------------------|
//! | `%`                          | `%25`             |
//! | `:`                          | `%3A`             |
//! | `{` `}`                      | `%7B` `%7D`       |
//! | `#`                          | `%23`             |
//! | `!`                          | `%21`             |
//! | `~`                          | `%7E`             |
//! | `@`                          | `%40`             |
//! | space                        | `%20`             |
//! | 0x00..=0x1F, 0x7F            | `%00`..`%1F`, `%7F` |
//!
//! All other bytes, including all non-ASCII UTF-8, pass through unchanged. In addition, a
//! **segment** that is exactly `v` followed by one or more ASCII digits has its leading `v`
//! written as `%76` (`"v7"` → `%767`), so it can never be read as the version suffix.
//! Empty segments stay empty (`ns::b`) and are still distinct from fewer segments.
//!
//! # Why this is injective
//!
//! Escaped components contain no `:`, `{`, `}`, `#`, `!` or `~`, so splitting a built key on `:`
//! recovers the components; the first is the namespace (wrapped in `{}` exactly when the hash-tag
//! form is used), a trailing `#…` component can only be the params hash (a segment's `#` is
//! escaped), a trailing `v<digits>` component can only be the version (a segment that looks like
//! one is escaped), and percent-encoding (which encodes `%` itself) is reversible. Counter keys use
//! a component starting with `!`, which no escaped segment can start with. Untruncated keys never
//! contain `~`, so a truncated key (`<prefix>~<hash>`) never equals an untruncated one; two
//! truncated keys coincide only on a 128-bit SHA-256 prefix collision.
//!
//! # Length
//!
//! A built key longer than `max_len` bytes (default [`Key::DEFAULT_MAX_LEN`]) becomes
//! `<prefix>~<first 32 hex chars of SHA-256(full key)>`, at most `max_len` bytes. The prefix is cut
//! at a UTF-8 character boundary and never inside a `%XX` escape. The namespace is limited to
//! [`Key::MAX_NAMESPACE_LEN`] bytes **after escaping** and `max_len` to at least
//! [`Key::MIN_MAX_LEN`], so the prefix always keeps the whole (braced) namespace: truncated keys
//! stay in their namespace's Cluster slot and remain readable.

use sha2::{Digest, Sha256};

pub use crate::jcs::{JcsError, canonicalize, canonicalize_value, check_integer_literals};

/// Why a key could not be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// The namespace is the empty string.
    #[error("key namespace must not be empty")]
    EmptyNamespace,
    /// The namespace is longer than [`Key::MAX_NAMESPACE_LEN`] bytes after escaping.
    #[error("key namespace is {len} bytes after escaping, the maximum is {max}")]
    NamespaceTooLong {
        /// Length of the escaped namespace in bytes.
        len: usize,
        /// The maximum ([`Key::MAX_NAMESPACE_LEN`]).
        max: usize,
    },
    /// The parameters could not be canonicalized: an integer above 2^53 that is not in canonical
    /// form (e.g. 2^53 + 1), which could otherwise collide with another integer.
    #[error("key params cannot be canonicalized: {0}")]
    Params(String),
    /// The parameters passed as JSON text are not valid JSON.
    #[error("key params are not valid JSON: {0}")]
    InvalidJson(String),
    /// The requested maximum key length is below [`Key::MIN_MAX_LEN`].
    #[error("max key length {len} is below the minimum {min}")]
    MaxLenTooSmall {
        /// The requested maximum.
        len: usize,
        /// The minimum ([`Key::MIN_MAX_LEN`]).
        min: usize,
    },
}

/// A cache key under construction: namespace, segments, optional params hash and version.
///
/// Built with [`Key::new`] and the builder methods, rendered with [`Key::build`]. The namespace
/// is stored raw; segments are escaped as they are added (into one string, so a key costs a
/// few allocations, not one per segment).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Key {
    namespace: String,
    /// `:seg1:seg2…`, each segment escaped (escaping is injective, so equal strings mean equal
    /// segment lists).
    segments: String,
    params_hash: Option<String>,
    version: Option<u64>,
    hash_tag: bool,
    max_len: usize,
    /// The rendered key and generation-counter key, computed on first use: a key built once and
    /// used for many reads pays for escaping once. Every builder method starts afresh.
    rendered: Rendered,
}

/// Cache of derived strings; invisible to equality, hashing and debug output (it is a pure
/// function of the other fields).
#[derive(Clone, Default)]
struct Rendered(std::sync::OnceLock<(String, [String; 1])>);

impl PartialEq for Rendered {
    fn eq(&self, _: &Rendered) -> bool {
        true
    }
}
impl Eq for Rendered {}
impl core::hash::Hash for Rendered {
    fn hash<H: core::hash::Hasher>(&self, _: &mut H) {}
}
impl core::fmt::Debug for Rendered {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("..")
    }
}

/// Length of the hash appended to over-long keys, in hex characters.
const TRUNC_HASH_HEX: usize = 32;
/// Bytes a params hash occupies in hex.
const PARAMS_HASH_BYTES: usize = 16;

impl Key {
    /// Default maximum length of a built key in bytes.
    pub const DEFAULT_MAX_LEN: usize = 200;
    /// Smallest accepted `max_len`. With a namespace of at most [`Key::MAX_NAMESPACE_LEN`] escaped
    /// bytes, `{ns}` (66 bytes) + at most 5 bytes lost to boundary adjustment + `~` + 32 hex
    /// characters fits well below this, so the braced namespace always survives truncation.
    pub const MIN_MAX_LEN: usize = 128;
    /// Maximum namespace length in bytes, measured **after escaping** (for a namespace without
    /// reserved characters that is its UTF-8 length).
    pub const MAX_NAMESPACE_LEN: usize = 64;

    /// Starts a key in `namespace` (1..=64 bytes after escaping; any characters).
    pub fn new(namespace: &str) -> Result<Key, KeyError> {
        if namespace.is_empty() {
            return Err(KeyError::EmptyNamespace);
        }
        let len = escaped_len(namespace);
        if len > Self::MAX_NAMESPACE_LEN {
            return Err(KeyError::NamespaceTooLong {
                len,
                max: Self::MAX_NAMESPACE_LEN,
            });
        }
        Ok(Key {
            namespace: namespace.to_owned(),
            segments: String::new(),
            params_hash: None,
            version: None,
            hash_tag: false,
            max_len: Self::DEFAULT_MAX_LEN,
            rendered: Rendered::default(),
        })
    }

    /// Appends one segment (any string, including the empty string).
    #[must_use]
    pub fn segment(mut self, s: &str) -> Key {
        self.rendered = Rendered::default();
        self.segments.push(':');
        escape_segment_into(&mut self.segments, s);
        self
    }

    /// Appends several segments in order.
    #[must_use]
    pub fn segments<I: IntoIterator<Item = S>, S: AsRef<str>>(mut self, it: I) -> Key {
        self.rendered = Rendered::default();
        for s in it {
            self.segments.push(':');
            escape_segment_into(&mut self.segments, s.as_ref());
        }
        self
    }

    /// Sets the params hash from a JSON value (see [`params_hash`]); replaces an earlier one.
    pub fn params(self, p: &serde_json::Value) -> Result<Key, KeyError> {
        self.params_value(&crate::jcs::from_serde(p))
    }

    /// [`Key::params`] for the core's JSON tree ([`crate::json::parse`]).
    ///
    /// `null` means "no params" (and clears earlier ones), in every runtime: it is what
    /// Python's `params=None` and a JavaScript `null`/`undefined` say.
    pub fn params_value(mut self, p: &crate::json::Value) -> Result<Key, KeyError> {
        self.rendered = Rendered::default();
        self.params_hash = match p {
            crate::json::Value::Null => None,
            p => Some(params_hash_value(p)?),
        };
        Ok(self)
    }

    /// Parses `json` and sets the params hash from it (for bindings that pass JSON text).
    ///
    /// Same hash as [`Key::params`] on the parsed value. Integer literals are checked in the text
    /// too, so an integer beyond the 64-bit range that is not canonical (which a JSON reader
    /// would silently round to a double) is a [`KeyError::Params`] error, as it is within the
    /// range. Read with the core's JSON reader ([`crate::json`]).
    pub fn params_json(self, json: &str) -> Result<Key, KeyError> {
        let v = crate::json::parse(json).map_err(|e| KeyError::InvalidJson(e.to_string()))?;
        check_integer_literals(json).map_err(|e| KeyError::Params(e.to_string()))?;
        self.params_value(&v)
    }

    /// Sets the version suffix `:v<N>`; replaces an earlier one.
    #[must_use]
    pub fn version(mut self, v: u64) -> Key {
        self.rendered = Rendered::default();
        self.version = Some(v);
        self
    }

    /// Switches the Redis Cluster hash-tag form on or off: the namespace is wrapped in `{…}` so
    /// every key of the namespace (entries and counters) maps to one slot.
    #[must_use]
    pub fn hash_tag(mut self, on: bool) -> Key {
        self.rendered = Rendered::default();
        self.hash_tag = on;
        self
    }

    /// Sets the maximum length of built keys in bytes (at least [`Key::MIN_MAX_LEN`]).
    pub fn max_len(mut self, n: usize) -> Result<Key, KeyError> {
        if n < Self::MIN_MAX_LEN {
            return Err(KeyError::MaxLenTooSmall {
                len: n,
                min: Self::MIN_MAX_LEN,
            });
        }
        self.rendered = Rendered::default();
        self.max_len = n;
        Ok(self)
    }

    /// Renders the key string. Never fails; the result is at most `max_len` bytes.
    pub fn build(&self) -> String {
        self.as_str().to_owned()
    }

    /// The rendered key, computed once per key value (see [`Key::build`]).
    pub fn as_str(&self) -> &str {
        &self.rendered().0
    }

    /// The generation-counter key as a one-element slice (the usual `gen_keys` of a read with
    /// no tags), computed once per key value (see [`Key::generation_key`]).
    pub fn generation_keys(&self) -> &[String] {
        &self.rendered().1
    }

    fn rendered(&self) -> &(String, [String; 1]) {
        self.rendered.0.get_or_init(|| {
            let counter = fit(generation_key_full(&self.namespace, self.hash_tag), self.max_len);
            (self.render(), [counter])
        })
    }

    fn render(&self) -> String {
        // Room for the segments, a params hash and a version: rendering allocates once.
        let mut out = prefix(&self.namespace, self.hash_tag, self.segments.len() + 64);
        out.push_str(&self.segments);
        if let Some(h) = &self.params_hash {
            out.push_str(":#");
            out.push_str(h);
        }
        if let Some(v) = self.version {
            out.push_str(":v");
            out.push_str(&v.to_string());
        }
        fit(out, self.max_len)
    }

    /// The raw (unescaped) namespace.
    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    /// Key of this namespace's generation counter (`ns:!gen`), in the same hash-tag form as the
    /// entry keys.
    pub fn generation_key(&self) -> String {
        self.generation_keys()[0].clone()
    }

    /// Key of `tag`'s generation counter in this namespace (`ns:!tag:<escaped tag>`), in the same
    /// hash-tag form as the entry keys; truncated to this key's `max_len` like entry keys.
    pub fn tag_key(&self, tag: &str) -> String {
        fit(
            tag_key_full(&self.namespace, self.hash_tag, tag),
            self.max_len,
        )
    }
}

/// Hash of a params value: RFC 8785 canonical JSON, SHA-256, first 16 bytes as 32 lowercase hex
/// characters. Equal for equal JSON values regardless of object member order, and `1` and `1.0`
/// hash alike (JSON has one number type).
pub fn params_hash(p: &serde_json::Value) -> Result<String, KeyError> {
    params_hash_value(&crate::jcs::from_serde(p))
}

/// [`params_hash`] for the core's JSON tree ([`crate::json::parse`]). Params nested deeper than
/// [`crate::json::MAX_DEPTH`] containers are refused, as every runtime's parser refuses them
/// (a tree built in Rust, or converted from `serde_json`, is not limited by a parser).
pub fn params_hash_value(p: &crate::json::Value) -> Result<String, KeyError> {
    if !within_depth(p) {
        return Err(KeyError::Params(format!(
            "params are nested deeper than {} levels",
            crate::json::MAX_DEPTH
        )));
    }
    let canon = canonicalize_value(p).map_err(|e| KeyError::Params(e.to_string()))?;
    let digest = Sha256::digest(canon.as_bytes());
    Ok(hex_lower(&digest[..PARAMS_HASH_BYTES]))
}

/// Whether `v` nests at most [`crate::json::MAX_DEPTH`] arrays/objects (iterative: a deep tree
/// must not overflow the stack while being checked).
fn within_depth(v: &crate::json::Value) -> bool {
    use crate::json::Value;
    let mut stack: Vec<(&Value, u32)> = vec![(v, 0)];
    while let Some((v, d)) = stack.pop() {
        let kids: Box<dyn Iterator<Item = &Value>> = match v {
            Value::Array(a) => Box::new(a.iter()),
            Value::Object(o) => Box::new(o.iter().map(|(_, v)| v)),
            _ => continue,
        };
        if d + 1 > crate::json::MAX_DEPTH {
            return false;
        }
        stack.extend(kids.map(|k| (k, d + 1)));
    }
    true
}

/// Key of `namespace`'s generation counter (`ns:!gen` or `{ns}:!gen`), truncated to
/// [`Key::DEFAULT_MAX_LEN`] if needed. Equals `Key::new(namespace)?.hash_tag(hash_tag)
/// .generation_key()` for a valid namespace (this function does not validate it).
pub fn generation_key(namespace: &str, hash_tag: bool) -> String {
    fit(
        generation_key_full(namespace, hash_tag),
        Key::DEFAULT_MAX_LEN,
    )
}

/// Key of `tag`'s generation counter in `namespace` (`ns:!tag:<escaped tag>`, or with `{ns}`),
/// truncated to [`Key::DEFAULT_MAX_LEN`] if needed. Equals `Key::new(namespace)?
/// .hash_tag(hash_tag).tag_key(tag)` for a valid namespace (this function does not validate it).
pub fn tag_key(namespace: &str, hash_tag: bool, tag: &str) -> String {
    fit(tag_key_full(namespace, hash_tag, tag), Key::DEFAULT_MAX_LEN)
}

fn generation_key_full(namespace: &str, hash_tag: bool) -> String {
    let mut out = prefix(namespace, hash_tag, 5);
    out.push_str(":!gen");
    out
}

fn tag_key_full(namespace: &str, hash_tag: bool, tag: &str) -> String {
    let mut out = prefix(namespace, hash_tag, 6 + tag.len());
    out.push_str(":!tag:");
    escape_into(&mut out, tag);
    out
}

/// `ns` or `{ns}`, escaped, with room for `more` bytes after it.
fn prefix(namespace: &str, hash_tag: bool, more: usize) -> String {
    let mut out = String::with_capacity(namespace.len() + 2 + more);
    if hash_tag {
        out.push('{');
        escape_into(&mut out, namespace);
        out.push('}');
    } else {
        escape_into(&mut out, namespace);
    }
    out
}

/// Whether a byte is percent-encoded in key components.
fn is_reserved(b: u8) -> bool {
    matches!(
        b,
        b'%' | b':' | b'{' | b'}' | b'#' | b'!' | b'~' | b'@' | b' ' | 0x7F
    ) || b < 0x20
}

fn escaped_len(s: &str) -> usize {
    s.bytes().map(|b| if is_reserved(b) { 3 } else { 1 }).sum()
}

const HEX_UPPER: &[u8; 16] = b"0123456789ABCDEF";
const HEX_LOWER: &[u8; 16] = b"0123456789abcdef";

fn push_pct(out: &mut String, b: u8) {
    out.push('%');
    out.push(HEX_UPPER[usize::from(b >> 4)] as char);
    out.push(HEX_UPPER[usize::from(b & 0xF)] as char);
}

/// Percent-encodes the reserved bytes of `s`. Only ASCII bytes are ever encoded, so the unencoded
/// runs are whole UTF-8 sequences and can be copied as `&str` slices.
fn escape_into(out: &mut String, s: &str) {
    let bytes = s.as_bytes();
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        if is_reserved(b) {
            out.push_str(s.get(start..i).unwrap_or_default());
            push_pct(out, b);
            start = i + 1;
        }
    }
    out.push_str(s.get(start..).unwrap_or_default());
}

/// Like [`escape_into`], plus: a segment that is exactly `v<digits>` gets its `v` encoded.
fn escape_segment_into(out: &mut String, s: &str) {
    let b = s.as_bytes();
    if b.len() >= 2 && b[0] == b'v' && b[1..].iter().all(u8::is_ascii_digit) {
        push_pct(out, b'v');
        out.push_str(s.get(1..).unwrap_or_default());
    } else {
        escape_into(out, s);
    }
}

fn hex_lower(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len() * 2);
    for &b in bytes {
        s.push(HEX_LOWER[usize::from(b >> 4)] as char);
        s.push(HEX_LOWER[usize::from(b & 0xF)] as char);
    }
    s
}

/// Returns `full` if it fits in `max_len` bytes, else `<prefix>~<32 hex of SHA-256(full)>`.
fn fit(full: String, max_len: usize) -> String {
    if full.len() <= max_len {
        return full;
    }
    let digest = Sha256::digest(full.as_bytes());
    let hash = hex_lower(&digest[..TRUNC_HASH_HEX / 2]);
    let budget = max_len.saturating_sub(1 + TRUNC_HASH_HEX);
    let cut = cut_point(&full, budget);
    let mut out = String::with_capacity(cut + 1 + TRUNC_HASH_HEX);
    // `get`, not indexing: `cut` is a char boundary, and a panicking slice would pull core's
    // char-escaping and Unicode tables into the wasm module.
    out.push_str(full.get(..cut).unwrap_or_default());
    out.push('~');
    out.push_str(&hash);
    out
}

/// Largest `p <= budget` such that `full[..p]` ends on a character boundary and not inside a
/// `%XX` escape.
fn cut_point(full: &str, budget: usize) -> usize {
    let mut p = budget.min(full.len());
    while !full.is_char_boundary(p) {
        p -= 1;
    }
    let b = full.as_bytes();
    // Every '%' in a built key starts an escape ("%25" encodes a literal '%'), and escapes are
    // ASCII, so backing up to the '%' keeps the char-boundary property.
    if p >= 1 && b[p - 1] == b'%' {
        p -= 1;
    } else if p >= 2 && b[p - 2] == b'%' {
        p -= 2;
    }
    p
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn k(ns: &str) -> Key {
        Key::new(ns).unwrap()
    }

    #[test]
    fn layout() {
        assert_eq!(k("user").build(), "user");
        assert_eq!(k("user").segment("123").build(), "user:123");
        assert_eq!(k("user").segment("123").version(7).build(), "user:123:v7");
        assert_eq!(
            k("user")
                .segments(["a", "b"])
                .hash_tag(true)
                .version(0)
                .build(),
            "{user}:a:b:v0"
        );
        assert_eq!(
            k("user")
                .segment("123")
                .params(&json!({"a": 1}))
                .unwrap()
                .version(7)
                .build(),
            format!("user:123:#{}:v7", params_hash(&json!({"a": 1})).unwrap())
        );
        assert_eq!(k("user").segment("").segment("").build(), "user::");
        assert_eq!(k("user").segment("é😀").build(), "user:é😀");
    }

    #[test]
    fn escaping() {
        assert_eq!(k("a:b").segment("c:d").build(), "a%3Ab:c%3Ad");
        assert_eq!(
            k("ns").segment("%:{}#!~@ \u{0}\u{1f}\u{7f}").build(),
            "ns:%25%3A%7B%7D%23%21%7E%40%20%00%1F%7F"
        );
        assert_eq!(k("ns").segment("%3A").build(), "ns:%253A");
        assert_eq!(k("ns").segment("v7").build(), "ns:%767");
        assert_eq!(k("ns").segment("v").build(), "ns:v");
        assert_eq!(k("ns").segment("v7a").build(), "ns:v7a");
        assert_eq!(k("ns").segment("V7").build(), "ns:V7");
        assert_eq!(k("ns").segment("x-y_z.w/é").build(), "ns:x-y_z.w/é");
        // The namespace does not need the v-rule (it is always the first component).
        assert_eq!(k("v7").build(), "v7");
        assert_eq!(k("{x}").hash_tag(true).build(), "{%7Bx%7D}");
    }

    #[test]
    fn adversarial_distinct() {
        let pairs = [
            (k("n").segment("a:b"), k("n").segments(["a", "b"])),
            (k("n").segment("v7"), k("n").version(7)),
            (
                k("n").segments(["123", "v7"]),
                k("n").segment("123").version(7),
            ),
            (k("n").segment("%3A"), k("n").segment(":")),
            (k("n").segment(""), k("n")),
            (k("n").segments(["", ""]), k("n").segment("")),
            (k("n").segment("!gen"), k("n")),
            (k("n:a"), k("n").segment("a")),
            (k("n").segment("{n}"), k("n").hash_tag(true)),
        ];
        for (a, b) in pairs {
            assert_ne!(a.build(), b.build(), "{a:?} vs {b:?}");
        }
        let p = k("n").params(&json!({})).unwrap();
        let h = params_hash(&json!({})).unwrap();
        assert_ne!(p.build(), k("n").segment(&format!("#{h}")).build());
        assert_ne!(k("n").segment("!gen").build(), k("n").generation_key());
        assert_ne!(k("n").segments(["!tag", "x"]).build(), k("n").tag_key("x"));
    }

    #[test]
    fn counter_keys() {
        assert_eq!(generation_key("t1", false), "t1:!gen");
        assert_eq!(generation_key("t1", true), "{t1}:!gen");
        assert_eq!(tag_key("t1", false, "user:1"), "t1:!tag:user%3A1");
        assert_eq!(tag_key("t1", true, "v7"), "{t1}:!tag:v7");
        let key = k("t1").hash_tag(true);
        assert_eq!(key.generation_key(), generation_key("t1", true));
        assert_eq!(key.tag_key("x y"), "{t1}:!tag:x%20y");
        assert_eq!(key.namespace(), "t1");
        assert_eq!(k("a b").namespace(), "a b");
    }

    #[test]
    fn errors() {
        assert_eq!(Key::new(""), Err(KeyError::EmptyNamespace));
        assert!(Key::new(&"a".repeat(64)).is_ok());
        assert_eq!(
            Key::new(&"a".repeat(65)),
            Err(KeyError::NamespaceTooLong { len: 65, max: 64 })
        );
        // 22 colons escape to 66 bytes.
        assert_eq!(
            Key::new(&":".repeat(22)),
            Err(KeyError::NamespaceTooLong { len: 66, max: 64 })
        );
        assert!(Key::new(&":".repeat(21)).is_ok());
        assert_eq!(
            k("a").max_len(127),
            Err(KeyError::MaxLenTooSmall { len: 127, min: 128 })
        );
        assert!(k("a").max_len(128).is_ok());
        assert!(matches!(
            k("a").params(&json!(9_007_199_254_740_993_u64)),
            Err(KeyError::Params(_))
        ));
        assert!(matches!(
            k("a").params_json("{"),
            Err(KeyError::InvalidJson(_))
        ));
    }

    #[test]
    fn params_hash_fixed() {
        // Cross-checked by hand (this input has no float-formatting differences between JCS and
        // Python's json module, so sort_keys + compact separators is its canonical form):
        //   python3 -c 'import json,hashlib; v={"b":[1,2.5,{"z":None,"a":"é"}],"a":True};
        //     s=json.dumps(v,sort_keys=True,separators=(",",":"),ensure_ascii=False);
        //     print(s); print(hashlib.sha256(s.encode()).hexdigest()[:32])'
        //   {"a":true,"b":[1,2.5,{"a":"é","z":null}]}
        //   dd5ad1514929374b6da59b4437902419
        let v = json!({"b": [1, 2.5, {"z": null, "a": "é"}], "a": true});
        assert_eq!(
            canonicalize(&v).unwrap(),
            r#"{"a":true,"b":[1,2.5,{"a":"é","z":null}]}"#
        );
        assert_eq!(params_hash(&v).unwrap(), "dd5ad1514929374b6da59b4437902419");
        assert_eq!(
            k("a")
                .params_json(r#"{"a":true,"b":[1.0,2.50,{"a":"\u00e9","z":null}]}"#)
                .unwrap()
                .build(),
            "a:#dd5ad1514929374b6da59b4437902419"
        );
    }

    #[test]
    fn truncation() {
        let key = k("ns").hash_tag(true).segment(&"x".repeat(300));
        let built = key.build();
        assert_eq!(built.len(), 200);
        assert!(built.starts_with("{ns}:xxx"));
        let full = format!("{{ns}}:{}", "x".repeat(300));
        let h = hex_lower(&Sha256::digest(full.as_bytes())[..16]);
        assert_eq!(built, format!("{}~{h}", &full[..167]));

        // Never cut inside an escape or a UTF-8 character.
        for n in 0..8 {
            let seg = format!("{}{}", "y".repeat(n), ":é".repeat(100));
            let b = k("ns").segment(&seg).max_len(128).unwrap().build();
            assert!(b.len() <= 128);
            let (pre, hash) = b.rsplit_once('~').unwrap();
            assert_eq!(hash.len(), 32);
            assert!(!pre.ends_with('%'));
            assert!(pre.as_bytes()[pre.len() - 2] != b'%');
        }
        // Exactly max_len stays untruncated.
        let seg = "z".repeat(200 - 3);
        assert_eq!(k("ns").segment(&seg).build().len(), 200);
        assert!(!k("ns").segment(&seg).build().contains('~'));
    }
}
