//! Cache entries: the value plus the metadata every runtime needs to judge it, and their one
//! versioned binary encoding (DESIGN §2 "Entries").
//!
//! An [`Entry`] is what the store holds under a key. [`Entry::encode`] turns it into the bytes a
//! store keeps; [`Entry::decode`] turns bytes back into an entry or a [`DecodeError`]. Every
//! runtime (Rust, Python, Node, wasm) goes through this one codec, so a value written by one is
//! read identically by the others.
//!
//! The layout is specified byte by byte in `docs/entry-format.md`. In short:
//!
//! ```text
//! "KC" | format=1 | flags | codec | soft_at u64le | hard_at u64le | load_ms u64le
//!      | [version u64le if flags.has_version]
//!      | n_gen varint | n_gen × u64le
//!      | n_tags varint | n_tags × (len varint | utf-8 bytes)
//!      | value_len varint | value bytes          (nothing may follow)
//! ```
//!
//! # Guarantees
//!
//! - **Decode never panics** and never allocates more than the input's own size plus a small
//!   bounded amount, whatever the bytes: every length is checked against the remaining input
//!   before anything is allocated, and counts are bounded ([`Entry::MAX_GENERATIONS`],
//!   [`Entry::MAX_TAGS`], [`Entry::MAX_TAG_LEN`]).
//! - **Canonical**: the decoder accepts exactly one byte string per entry (minimal varints,
//!   no unknown flag bits, no trailing bytes), so `decode(b) == Ok(e)` implies `e.encode() == b`.
//! - **Round trip**: for every entry that passes [`Entry::validate`],
//!   `Entry::decode(&e.encode()) == Ok(e)`. An entry that fails `validate` still encodes (encoding
//!   is infallible and lossless), but its bytes decode to the same error `validate` reports —
//!   i.e. it reads back as a miss.
//! - **Corrupt or foreign bytes read as a miss.** Any [`DecodeError`] means "treat as absent and
//!   overwrite"; callers should count it, never trust it. A future format (a new format number
//!   or a new flag bit) is rejected rather than misread.
//!
//! There is no checksum: integrity of stored bytes is the store's job, and the format catches
//! truncation and extension (explicit lengths, no trailing bytes) but not a flipped bit inside
//! the value.
//!
//! # JSON form
//!
//! `Entry` also implements `serde` for the cross-runtime test vectors: `value` is written as a
//! lowercase hex string under the name `value_hex`, `version` as a decimal string (or `null`) so
//! JavaScript numbers don't round it, every other integer as a JSON number. Unknown fields are
//! rejected; missing fields take their default.

use serde::{Deserialize, Serialize};

/// Codec ids: who encoded [`Entry::value`], so a reader knows how to turn the bytes back into a
/// value of its language.
///
/// `0` and `1` are defined here, `2..=127` are reserved for future karlton codecs, and
/// `128..=255` are free for user-defined codecs. The entry format itself never interprets the
/// codec id: any `u8` round-trips.
pub mod codec {
    /// Opaque bytes: the value is handed to the caller as-is.
    pub const RAW: u8 = 0;
    /// UTF-8 JSON text (the default, so every runtime can read what another wrote).
    pub const JSON: u8 = 1;
    /// First id of the range reserved for future karlton codecs (`2..=127`).
    pub const RESERVED_START: u8 = 2;
    /// First id of the range free for user-defined codecs (`128..=255`).
    pub const USER_START: u8 = 128;
}

/// One cached value and its metadata, as stored under a key.
///
/// All times are integer milliseconds since the Unix epoch on the *store's* clock (DESIGN §2);
/// they should stay below 2^53 so JavaScript numbers hold them (not enforced here).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Entry {
    /// The encoded value (see [`Entry::codec`]). Empty for most negative entries. In JSON:
    /// `value_hex`, a lowercase hex string.
    #[serde(rename = "value_hex", with = "value_hex")]
    pub value: Vec<u8>,
    /// Which codec produced [`Entry::value`]; see [`codec`].
    pub codec: u8,
    /// Monotonic user version, if the writer supplied one; a fill never lowers it (invariant C2).
    /// In JSON: a decimal string, or `null`.
    #[serde(with = "version_str")]
    pub version: Option<u64>,
    /// Generation counters at fill time: the namespace's first, then one per tag (in
    /// [`Entry::tags`] order) if tag invalidation is used. An entry whose generations are older
    /// than the current ones was orphaned by a `bump` (invariant T1). At most
    /// [`Entry::MAX_GENERATIONS`].
    pub generations: Vec<u64>,
    /// End of freshness: fresh while `now < soft_at`.
    pub soft_at: u64,
    /// End of usability: stale (served while one caller refreshes) while
    /// `soft_at <= now < hard_at`. Must be `>= soft_at`.
    pub hard_at: u64,
    /// How long the load that produced this entry took, in ms (the `XFetch` delta).
    pub load_ms: u64,
    /// A cached "not found". The value of a negative entry is opaque to karlton (normally empty;
    /// a writer may keep e.g. an error description there); readers treat the entry as "absent
    /// at the source" whatever it holds.
    pub negative: bool,
    /// Tags this entry was filled under (for tag invalidation). At most [`Entry::MAX_TAGS`],
    /// each at most [`Entry::MAX_TAG_LEN`] bytes of UTF-8.
    pub tags: Vec<String>,
}

/// Why bytes could not be decoded as an [`Entry`]. Every variant means the same thing to a
/// cache: *miss; count it; overwrite*.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// The input is too short to hold the magic and format byte, or ends inside the fixed
    /// header ([`Entry::HEADER_LEN`] bytes).
    #[error("entry too short: shorter than its fixed header")]
    TooShort,
    /// The first two bytes are not [`Entry::MAGIC`]: not a karlton entry.
    #[error("not a karlton entry (bad magic)")]
    BadMagic,
    /// A karlton entry in a format this build does not know (a newer or older writer).
    #[error("unsupported entry format {0}")]
    UnsupportedFormat(u8),
    /// The flags byte has bits set that this format does not define (the byte is carried).
    #[error("unknown flag bits in entry flags 0x{0:02x}")]
    UnknownFlags(u8),
    /// The input ends inside the named field.
    #[error("entry truncated in {0}")]
    Truncated(&'static str),
    /// A length or count varint for the named field is over-long (non-minimal) or overflows u64.
    #[error("invalid varint in {0}")]
    InvalidVarint(&'static str),
    /// A tag is not valid UTF-8.
    #[error("tag is not valid UTF-8")]
    InvalidUtf8,
    /// The entry is complete but this many bytes follow it.
    #[error("{0} trailing bytes after entry")]
    TrailingBytes(usize),
    /// The named count or length exceeds its bound: `(field, found, max)`.
    #[error("{0} too large: {1} > {2}")]
    TooLarge(&'static str, u64, u64),
    /// The fields are well-formed but contradict each other (e.g. `hard_at < soft_at`).
    #[error("inconsistent entry: {0}")]
    Inconsistent(&'static str),
}

/// The fixed-size head of an encoded entry, read by [`peek_header`] without copying the value,
/// generations or tags.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct EntryHeader {
    /// See [`Entry::codec`].
    pub codec: u8,
    /// See [`Entry::version`].
    pub version: Option<u64>,
    /// See [`Entry::soft_at`].
    pub soft_at: u64,
    /// See [`Entry::hard_at`].
    pub hard_at: u64,
    /// See [`Entry::load_ms`].
    pub load_ms: u64,
    /// See [`Entry::negative`].
    pub negative: bool,
}

/// Flag bit: the entry is negative ("not found").
const FLAG_NEGATIVE: u8 = 0b0000_0001;
/// Flag bit: an 8-byte version follows the fixed header.
const FLAG_HAS_VERSION: u8 = 0b0000_0010;
/// Every flag bit format 1 defines; any other bit is an error.
const FLAGS_KNOWN: u8 = FLAG_NEGATIVE | FLAG_HAS_VERSION;

impl Entry {
    /// The two bytes every encoded entry starts with: ASCII `"KC"` (`0x4B 0x43`, "karlton cache").
    pub const MAGIC: [u8; 2] = *b"KC";
    /// The format number this build writes and the only one it reads (byte 2).
    pub const FORMAT: u8 = 1;
    /// Length of the fixed header: magic (2), format (1), flags (1), codec (1), `soft_at` (8),
    /// `hard_at` (8), `load_ms` (8).
    pub const HEADER_LEN: usize = 29;
    /// Most generation counters an entry may carry: one for the namespace plus one per tag.
    pub const MAX_GENERATIONS: usize = 1 + Self::MAX_TAGS;
    /// Most tags an entry may carry.
    pub const MAX_TAGS: usize = 256;
    /// Longest tag, in bytes of UTF-8.
    pub const MAX_TAG_LEN: usize = 1024;

    /// Encodes this entry into a new buffer of exactly [`Entry::encoded_len`] bytes.
    ///
    /// Infallible and lossless; see [`Entry::validate`] for which entries decode back.
    #[must_use]
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.encoded_len());
        self.write(&mut out);
        out
    }

    /// Appends the encoding of this entry to `out` (reserving the space once).
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        out.reserve(self.encoded_len());
        self.write(out);
    }

    /// Writes the encoding; the caller has reserved the space.
    fn write(&self, out: &mut Vec<u8>) {
        let mut flags = 0;
        if self.negative {
            flags |= FLAG_NEGATIVE;
        }
        if self.version.is_some() {
            flags |= FLAG_HAS_VERSION;
        }
        out.extend_from_slice(&Self::MAGIC);
        out.push(Self::FORMAT);
        out.push(flags);
        out.push(self.codec);
        out.extend_from_slice(&self.soft_at.to_le_bytes());
        out.extend_from_slice(&self.hard_at.to_le_bytes());
        out.extend_from_slice(&self.load_ms.to_le_bytes());
        if let Some(v) = self.version {
            out.extend_from_slice(&v.to_le_bytes());
        }
        put_varint(out, self.generations.len() as u64);
        for g in &self.generations {
            out.extend_from_slice(&g.to_le_bytes());
        }
        put_varint(out, self.tags.len() as u64);
        for t in &self.tags {
            put_varint(out, t.len() as u64);
            out.extend_from_slice(t.as_bytes());
        }
        put_varint(out, self.value.len() as u64);
        out.extend_from_slice(&self.value);
    }

    /// The exact number of bytes [`Entry::encode`] produces for this entry.
    #[must_use]
    pub fn encoded_len(&self) -> usize {
        let mut n = Self::HEADER_LEN;
        if self.version.is_some() {
            n += 8;
        }
        n += varint_len(self.generations.len() as u64) + 8 * self.generations.len();
        n += varint_len(self.tags.len() as u64);
        for t in &self.tags {
            n += varint_len(t.len() as u64) + t.len();
        }
        n + varint_len(self.value.len() as u64) + self.value.len()
    }

    /// Checks the bounds and consistency rules the decoder enforces, returning the error
    /// [`Entry::decode`] would return for this entry's encoding.
    ///
    /// `Entry::decode(&e.encode())` is `Ok(e)` exactly when `e.validate()` is `Ok(())`. Writers
    /// should validate before storing so an invalid entry is refused up front instead of being
    /// stored and then read back as a miss.
    ///
    /// # Errors
    ///
    /// [`DecodeError::Inconsistent`] if `hard_at < soft_at`; [`DecodeError::TooLarge`] if there
    /// are more than [`Entry::MAX_GENERATIONS`] generations, more than [`Entry::MAX_TAGS`] tags,
    /// or a tag longer than [`Entry::MAX_TAG_LEN`] bytes.
    pub fn validate(&self) -> Result<(), DecodeError> {
        if self.hard_at < self.soft_at {
            return Err(DecodeError::Inconsistent("hard_at < soft_at"));
        }
        check_max(
            "generations",
            self.generations.len() as u64,
            Self::MAX_GENERATIONS,
        )?;
        check_max("tags", self.tags.len() as u64, Self::MAX_TAGS)?;
        for t in &self.tags {
            check_max("tag", t.len() as u64, Self::MAX_TAG_LEN)?;
        }
        Ok(())
    }

    /// Decodes an entry from exactly `bytes` (no trailing bytes allowed).
    ///
    /// Never panics. Any error means the bytes are not a valid format-1 entry and should be
    /// treated as a miss. Only canonical encodings are accepted, so a successful decode
    /// re-encodes to the same bytes.
    ///
    /// # Errors
    ///
    /// Any [`DecodeError`]; see `docs/entry-format.md` for which condition yields which.
    pub fn decode(bytes: &[u8]) -> Result<Entry, DecodeError> {
        let (h, rest) = read_header(bytes)?;
        let mut r = Reader { buf: rest };

        let n_gen = r.count("generations", Self::MAX_GENERATIONS)?;
        // n_gen <= 257, so the product cannot overflow; check before allocating.
        let gen_bytes = r.take(n_gen * 8, "generations")?;
        let generations = gen_bytes
            .chunks_exact(8)
            .map(|c| {
                let mut a = [0u8; 8];
                a.copy_from_slice(c);
                u64::from_le_bytes(a)
            })
            .collect();

        let n_tags = r.count("tags", Self::MAX_TAGS)?;
        // Every tag takes at least one byte (its length), so a forged count cannot make us
        // reserve more than the input could hold.
        let mut tags = Vec::with_capacity(n_tags.min(r.buf.len()));
        for _ in 0..n_tags {
            let len = r.count("tag", Self::MAX_TAG_LEN)?;
            let raw = r.take(len, "tag")?;
            let s = core::str::from_utf8(raw).map_err(|_| DecodeError::InvalidUtf8)?;
            tags.push(s.to_owned());
        }

        let value_len = r.len("value")?;
        let value = r.take(value_len, "value")?.to_vec();

        if !r.buf.is_empty() {
            return Err(DecodeError::TrailingBytes(r.buf.len()));
        }
        Ok(Entry {
            value,
            codec: h.codec,
            version: h.version,
            generations,
            soft_at: h.soft_at,
            hard_at: h.hard_at,
            load_ms: h.load_ms,
            negative: h.negative,
            tags,
        })
    }
}

/// Validates `bytes` exactly as [`Entry::decode`] does, but allocates nothing: returns the
/// header and the value's bytes. The hit path uses it (`flow::fast_hit`).
///
/// # Errors
///
/// The same [`DecodeError`] [`Entry::decode`] would return.
pub fn decode_view(bytes: &[u8]) -> Result<(EntryHeader, &[u8]), DecodeError> {
    let (h, rest) = read_header(bytes)?;
    let mut r = Reader { buf: rest };
    let n_gen = r.count("generations", Entry::MAX_GENERATIONS)?;
    r.take(n_gen * 8, "generations")?;
    let n_tags = r.count("tags", Entry::MAX_TAGS)?;
    for _ in 0..n_tags {
        let len = r.count("tag", Entry::MAX_TAG_LEN)?;
        let raw = r.take(len, "tag")?;
        core::str::from_utf8(raw).map_err(|_| DecodeError::InvalidUtf8)?;
    }
    let value_len = r.len("value")?;
    let value = r.take(value_len, "value")?;
    if !r.buf.is_empty() {
        return Err(DecodeError::TrailingBytes(r.buf.len()));
    }
    Ok((h, value))
}

/// Reads the fixed header (and version) of an encoded entry without touching the rest: O(1),
/// no allocation.
///
/// Checks magic, format, flags and `hard_at >= soft_at`, nothing after the version. So an `Ok`
/// here does not promise that [`Entry::decode`] succeeds, but an `Err` here is the error
/// `decode` would return.
///
/// # Errors
///
/// [`DecodeError::TooShort`], [`DecodeError::BadMagic`], [`DecodeError::UnsupportedFormat`],
/// [`DecodeError::UnknownFlags`], [`DecodeError::Inconsistent`] (`hard_at < soft_at`), or
/// [`DecodeError::Truncated`]`("version")`.
pub fn peek_header(bytes: &[u8]) -> Result<EntryHeader, DecodeError> {
    read_header(bytes).map(|(h, _)| h)
}

/// Parses the header and returns it with the bytes that follow it.
fn read_header(bytes: &[u8]) -> Result<(EntryHeader, &[u8]), DecodeError> {
    let Some((pre, _)) = bytes.split_first_chunk::<3>() else {
        return Err(DecodeError::TooShort);
    };
    if pre[..2] != Entry::MAGIC {
        return Err(DecodeError::BadMagic);
    }
    if pre[2] != Entry::FORMAT {
        return Err(DecodeError::UnsupportedFormat(pre[2]));
    }
    let Some((head, rest)) = bytes.split_first_chunk::<{ Entry::HEADER_LEN }>() else {
        return Err(DecodeError::TooShort);
    };
    let flags = head[3];
    if flags & !FLAGS_KNOWN != 0 {
        return Err(DecodeError::UnknownFlags(flags));
    }
    let codec = head[4];
    let soft_at = le_u64(head, 5);
    let hard_at = le_u64(head, 13);
    let load_ms = le_u64(head, 21);
    if hard_at < soft_at {
        return Err(DecodeError::Inconsistent("hard_at < soft_at"));
    }
    let mut r = Reader { buf: rest };
    let version = if flags & FLAG_HAS_VERSION != 0 {
        Some(r.u64("version")?)
    } else {
        None
    };
    let header = EntryHeader {
        codec,
        version,
        soft_at,
        hard_at,
        load_ms,
        negative: flags & FLAG_NEGATIVE != 0,
    };
    Ok((header, r.buf))
}

/// Reads a little-endian u64 at a constant offset inside the fixed header.
#[inline]
fn le_u64(head: &[u8; Entry::HEADER_LEN], at: usize) -> u64 {
    let mut a = [0u8; 8];
    // `at` is one of 5, 13, 21: always in bounds of the 29-byte header.
    a.copy_from_slice(&head[at..at + 8]);
    u64::from_le_bytes(a)
}

/// Fails with [`DecodeError::TooLarge`] when `n > max`.
fn check_max(field: &'static str, n: u64, max: usize) -> Result<(), DecodeError> {
    if n > max as u64 {
        Err(DecodeError::TooLarge(field, n, max as u64))
    } else {
        Ok(())
    }
}

/// A cursor over the variable part of an encoded entry. Every read is bounds-checked.
struct Reader<'a> {
    /// The bytes not yet consumed.
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    /// Consumes exactly `n` bytes.
    #[inline]
    fn take(&mut self, n: usize, field: &'static str) -> Result<&'a [u8], DecodeError> {
        let (head, rest) = self
            .buf
            .split_at_checked(n)
            .ok_or(DecodeError::Truncated(field))?;
        self.buf = rest;
        Ok(head)
    }

    /// Consumes a little-endian u64.
    #[inline]
    fn u64(&mut self, field: &'static str) -> Result<u64, DecodeError> {
        let (head, rest) = self
            .buf
            .split_first_chunk::<8>()
            .ok_or(DecodeError::Truncated(field))?;
        self.buf = rest;
        Ok(u64::from_le_bytes(*head))
    }

    /// Consumes a minimal unsigned LEB128 varint.
    #[inline]
    fn varint(&mut self, field: &'static str) -> Result<u64, DecodeError> {
        // Fast path: one byte (every count and length below 128).
        if let Some((&b, rest)) = self.buf.split_first()
            && b < 0x80
        {
            self.buf = rest;
            return Ok(u64::from(b));
        }
        let mut result: u64 = 0;
        let mut shift: u32 = 0;
        loop {
            let Some((&b, rest)) = self.buf.split_first() else {
                return Err(DecodeError::Truncated(field));
            };
            self.buf = rest;
            // The 10th byte may only contribute bit 63 and must end the varint.
            if shift == 63 && b > 1 {
                return Err(DecodeError::InvalidVarint(field));
            }
            result |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                // A final zero byte after others means the encoding was not minimal.
                if b == 0 && shift > 0 {
                    return Err(DecodeError::InvalidVarint(field));
                }
                return Ok(result);
            }
            shift += 7;
        }
    }

    /// Consumes a varint count/length bounded by `max` (checked before any allocation).
    #[inline]
    fn count(&mut self, field: &'static str, max: usize) -> Result<usize, DecodeError> {
        let n = self.varint(field)?;
        check_max(field, n, max)?;
        // Cannot fail: n <= max, which is a usize.
        usize::try_from(n).map_err(|_| DecodeError::TooLarge(field, n, max as u64))
    }

    /// Consumes a varint byte length that must fit in the remaining input.
    #[inline]
    fn len(&mut self, field: &'static str) -> Result<usize, DecodeError> {
        let n = self.varint(field)?;
        if n > self.buf.len() as u64 {
            return Err(DecodeError::Truncated(field));
        }
        // Cannot fail: n <= the remaining length, which is a usize.
        usize::try_from(n).map_err(|_| DecodeError::Truncated(field))
    }
}

/// Appends `v` as a minimal unsigned LEB128 varint.
#[inline]
fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v & 0x7f) as u8 | 0x80);
        v >>= 7;
    }
    out.push((v & 0x7f) as u8);
}

/// Bytes `put_varint` writes for `v` (1..=10).
#[inline]
fn varint_len(v: u64) -> usize {
    let bits = 64 - (v | 1).leading_zeros() as usize;
    bits.div_ceil(7)
}

/// serde helper: `Vec<u8>` as a lowercase hex string (either case accepted on input).
mod value_hex {
    use serde::de::Error as _;
    use serde::{Deserialize, Deserializer, Serializer};

    /// Lowercase hex digits.
    const HEX: &[u8; 16] = b"0123456789abcdef";

    /// Writes `bytes` as a lowercase hex string.
    pub(super) fn serialize<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        let mut out = String::with_capacity(bytes.len() * 2);
        for &b in bytes {
            out.push(char::from(HEX[usize::from(b >> 4)]));
            out.push(char::from(HEX[usize::from(b & 0xf)]));
        }
        s.serialize_str(&out)
    }

    /// Reads a hex string of even length.
    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let s = String::deserialize(d)?;
        let s = s.as_bytes();
        if s.len() % 2 != 0 {
            return Err(D::Error::custom("value_hex: odd number of hex digits"));
        }
        s.chunks_exact(2)
            .map(|p| match (nibble(p[0]), nibble(p[1])) {
                (Some(hi), Some(lo)) => Ok(hi << 4 | lo),
                _ => Err(D::Error::custom("value_hex: invalid hex digit")),
            })
            .collect()
    }

    /// The value of one hex digit.
    fn nibble(c: u8) -> Option<u8> {
        match c {
            b'0'..=b'9' => Some(c - b'0'),
            b'a'..=b'f' => Some(c - b'a' + 10),
            b'A'..=b'F' => Some(c - b'A' + 10),
            _ => None,
        }
    }
}

/// serde helper: `Option<u64>` as a canonical decimal string (`"42"`) or `null`, so values
/// above 2^53 survive JavaScript.
mod version_str {
    use serde::de::Error as _;
    use serde::{Deserialize, Deserializer, Serializer};

    /// Writes `Some(v)` as `"v"`, `None` as `null`. (serde's `with` fixes the `&Option` type.)
    #[allow(clippy::ref_option)]
    pub(super) fn serialize<S: Serializer>(v: &Option<u64>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            Some(v) => s.serialize_some(&v.to_string()),
            None => s.serialize_none(),
        }
    }

    /// Reads a canonical decimal string (digits only, no sign, no leading zeros) or `null`.
    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
        let Some(s) = Option::<String>::deserialize(d)? else {
            return Ok(None);
        };
        let canonical = !s.is_empty()
            && s.bytes().all(|c| c.is_ascii_digit())
            && (s == "0" || !s.starts_with('0'));
        if !canonical {
            return Err(D::Error::custom(
                "version: expected a canonical decimal string",
            ));
        }
        s.parse::<u64>()
            .map(Some)
            .map_err(|_| D::Error::custom("version: out of range for u64"))
    }
}

/// What an operator or a test needs to know about stored entry bytes at `now_ms`, without the
/// value itself: [`describe`]'s answer, the same in every runtime.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EntryInfo {
    /// How a reader at `now_ms` classifies it (before generations: see [`describe`]).
    pub freshness: crate::freshness::Freshness,
    /// Fresh until this store-clock instant (ms).
    pub soft_at: u64,
    /// Servable stale until this instant.
    pub hard_at: u64,
    /// Usable when a load fails until this instant: `hard_at + stale_if_error` (saturating).
    pub usable_until: u64,
    /// How long the load that produced it took (ms).
    pub load_ms: u64,
    /// Source version, if it has one.
    pub version: Option<u64>,
    /// A cached "not found".
    pub negative: bool,
    /// Codec id of the value.
    pub codec: u8,
    /// Length of the encoded value in bytes.
    pub value_len: usize,
    /// Generation counters it was filled under (namespace, then tags).
    pub generations: Vec<u64>,
    /// Its tags.
    pub tags: Vec<String>,
}

/// Read stored entry bytes as [`EntryInfo`] at store-clock time `now_ms` under `policy` (for
/// its `stale_if_error`). Corrupt bytes are the [`DecodeError`] a reader would count as a
/// corrupt entry. It cannot know whether a later `bump` or tag invalidation orphaned the entry:
/// that needs the counters' current values, which `generations` are compared with.
pub fn describe(bytes: &[u8], now_ms: u64, policy: &crate::policy::Policy) -> Result<EntryInfo, DecodeError> {
    let e = Entry::decode(bytes)?;
    let usable_until = e.hard_at.saturating_add(policy.stale_if_error_ms());
    Ok(EntryInfo {
        freshness: crate::freshness::freshness(now_ms, e.soft_at, e.hard_at, policy.stale_if_error_ms()),
        soft_at: e.soft_at,
        hard_at: e.hard_at,
        usable_until,
        load_ms: e.load_ms,
        version: e.version,
        negative: e.negative,
        codec: e.codec,
        value_len: e.value.len(),
        generations: e.generations,
        tags: e.tags,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn varint_bytes(v: u64) -> Vec<u8> {
        let mut out = Vec::new();
        put_varint(&mut out, v);
        out
    }

    #[test]
    fn varint_edges_roundtrip_and_len() {
        for v in [
            0,
            1,
            127,
            128,
            255,
            16_383,
            16_384,
            u64::from(u32::MAX),
            u64::MAX - 1,
            u64::MAX,
        ] {
            let b = varint_bytes(v);
            assert_eq!(b.len(), varint_len(v), "len of {v}");
            let mut r = Reader { buf: &b };
            assert_eq!(r.varint("x"), Ok(v));
            assert!(r.buf.is_empty());
        }
        assert_eq!(varint_bytes(u64::MAX).len(), 10);
    }

    #[test]
    fn varint_rejects_non_minimal_overflow_and_truncation() {
        let cases: &[(&[u8], DecodeError)] = &[
            (&[0x80, 0x00], DecodeError::InvalidVarint("x")),
            (&[0xff, 0x80, 0x00], DecodeError::InvalidVarint("x")),
            (
                &[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02],
                DecodeError::InvalidVarint("x"),
            ),
            (
                &[
                    0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x81, 0x00,
                ],
                DecodeError::InvalidVarint("x"),
            ),
            (&[0x80], DecodeError::Truncated("x")),
            (&[], DecodeError::Truncated("x")),
        ];
        for (bytes, want) in cases {
            let mut r = Reader { buf: bytes };
            assert_eq!(r.varint("x").as_ref(), Err(want), "{bytes:02x?}");
        }
    }
}

#[cfg(test)]
mod describe_tests {
    use super::*;
    use crate::freshness::Freshness;
    use crate::policy::{Policy, PolicySpec};

    #[test]
    fn describe_classifies_an_entry_by_its_windows_and_refuses_corrupt_bytes() {
        let e = Entry {
            value: b"\"v\"".to_vec(),
            codec: 1,
            version: Some(u64::MAX),
            generations: vec![7],
            soft_at: 100,
            hard_at: 200,
            load_ms: 5,
            negative: false,
            tags: vec!["t".into()],
        };
        let bytes = e.encode();
        let p = Policy::new(PolicySpec { stale_if_error_ms: 50, ..PolicySpec::default() }).unwrap();
        let at = |now| describe(&bytes, now, &p).unwrap();
        assert_eq!(at(99).freshness, Freshness::Fresh);
        assert_eq!(at(100).freshness, Freshness::Stale);
        assert_eq!(at(200).freshness, Freshness::UsableOnError);
        assert_eq!(at(250).freshness, Freshness::Gone);
        let i = at(0);
        assert_eq!((i.usable_until, i.value_len, i.version, i.generations, i.tags), (250, 3, Some(u64::MAX), vec![7], vec!["t".to_string()]));
        assert_eq!(describe(&bytes[..bytes.len() - 1], 0, &p), Err(DecodeError::Truncated("value")));
        assert_eq!(describe(b"XX", 0, &p), Err(DecodeError::TooShort));
    }
}
