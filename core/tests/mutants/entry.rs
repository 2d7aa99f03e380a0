//! Survivors of `core/src/entry.rs` (under the unit tests and vectors alone; `entry_props`
//! covers some of them too, but takes ~20 s per run, so these pin the same rules cheaply).

use karlton_core::Entry;
use karlton_core::entry::{DecodeError, EntryHeader, decode_view, peek_header};

/// Entries whose lengths cross the one-byte varint boundary (127) in every field.
fn entries() -> Vec<Entry> {
    let small = Entry {
        value: b"v".to_vec(),
        codec: 1,
        soft_at: 10,
        hard_at: 20,
        ..Entry::default()
    };
    let big = Entry {
        value: vec![7; 300],
        codec: 2,
        version: Some(9),
        generations: (0..200).collect(),
        soft_at: 5,
        hard_at: 5,
        load_ms: 33,
        negative: true,
        tags: vec!["t".repeat(200), "u".into()],
    };
    vec![Entry::default(), small, big]
}

/// `encoded_len` is exactly the length `encode` writes, for every field combination.
#[test]
fn encoded_len_is_the_encoding_length() {
    for e in entries() {
        assert_eq!(e.encoded_len(), e.encode().len(), "{e:?}");
    }
}

/// `encode_into` appends the same bytes `encode` returns, after what the buffer held.
#[test]
fn encode_into_appends_the_encoding() {
    for e in entries() {
        let mut out = b"prefix".to_vec();
        e.encode_into(&mut out);
        assert_eq!(&out[..6], b"prefix");
        assert_eq!(&out[6..], &e.encode()[..]);
    }
}

/// `validate` refuses hard_at < soft_at and accepts hard_at == soft_at (an entry with no
/// stale window) and hard_at > soft_at.
#[test]
fn validate_refuses_only_hard_before_soft() {
    let e = |soft_at, hard_at| Entry { soft_at, hard_at, ..Entry::default() };
    assert_eq!(e(10, 9).validate(), Err(DecodeError::Inconsistent("hard_at < soft_at")));
    assert_eq!(e(10, 10).validate(), Ok(()));
    assert_eq!(e(10, 11).validate(), Ok(()));
}

/// `decode_view` and `peek_header` read the real header and the value bytes (after skipping
/// every generation and tag), the same as a full decode.
#[test]
fn decode_view_and_peek_header_read_what_was_encoded() {
    for e in entries() {
        let bytes = e.encode();
        let want = EntryHeader {
            codec: e.codec,
            version: e.version,
            soft_at: e.soft_at,
            hard_at: e.hard_at,
            load_ms: e.load_ms,
            negative: e.negative,
        };
        assert_eq!(peek_header(&bytes), Ok(want));
        assert_eq!(decode_view(&bytes), Ok((want, &e.value[..])));
        assert_eq!(Entry::decode(&bytes), Ok(e));
    }
}

/// The JSON form's `value_hex` reads either case (tests/vectors/README.md).
#[test]
fn entry_json_value_hex_reads_either_case() {
    let e: Entry = serde_json::from_str(r#"{"value_hex":"ABcd09"}"#).unwrap();
    assert_eq!(e.value, vec![0xab, 0xcd, 0x09]);
}
