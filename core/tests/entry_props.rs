//! Property and example tests for the entry encoding (`karlton_core::entry`).
//!
//! - roundtrip: `decode(encode(e)) == e` for every valid entry, and `validate` predicts exactly
//!   which entries decode back;
//! - robustness: decoding arbitrary bytes and mutated valid encodings never panics, and any
//!   successful decode is canonical (re-encodes to the same bytes);
//! - the worked example of `docs/entry-format.md`, byte for byte.

use karlton_core::entry::{DecodeError, Entry, EntryHeader, codec, peek_header};
use proptest::prelude::*;

// ---------------------------------------------------------------------------------------------
// Strategies

fn tag() -> impl Strategy<Value = String> {
    prop_oneof![
        8 => ".{0,24}",
        1 => "[a-z:]{1000,1024}",
    ]
}

fn value() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        4 => proptest::collection::vec(any::<u8>(), 0..64),
        1 => proptest::collection::vec(any::<u8>(), 100..2000),
    ]
}

/// Entries that satisfy `Entry::validate`, up to the bounds.
fn valid_entry() -> impl Strategy<Value = Entry> {
    entry_with(tag().boxed(), value().boxed(), Entry::MAX_GENERATIONS)
}

/// Valid entries with short fields, for tests that are quadratic in the encoded length.
fn small_entry() -> impl Strategy<Value = Entry> {
    entry_with(
        ".{0,12}".boxed(),
        proptest::collection::vec(any::<u8>(), 0..24).boxed(),
        6,
    )
}

fn entry_with(
    tag: BoxedStrategy<String>,
    value: BoxedStrategy<Vec<u8>>,
    max_gens: usize,
) -> impl Strategy<Value = Entry> {
    (
        value,
        any::<u8>(),
        any::<Option<u64>>(),
        proptest::collection::vec(any::<u64>(), 0..=max_gens),
        any::<u64>(),
        any::<u64>(),
        any::<u64>(),
        any::<bool>(),
        proptest::collection::vec(tag, 0..12),
    )
        .prop_map(
            |(value, codec, version, generations, a, b, load_ms, negative, tags)| Entry {
                value,
                codec,
                version,
                generations,
                soft_at: a.min(b),
                hard_at: a.max(b),
                load_ms,
                negative,
                tags,
            },
        )
}

/// Entries that may break any rule: too many generations or tags, over-long tags,
/// `hard_at < soft_at`.
fn any_entry() -> impl Strategy<Value = Entry> {
    (
        valid_entry(),
        prop_oneof![Just(0usize), 0usize..4, 250usize..260],
        prop_oneof![Just(0usize), 250usize..300],
        prop_oneof![Just(None), (1020usize..1030).prop_map(Some)],
        any::<bool>(),
    )
        .prop_map(|(mut e, extra_gen, extra_tags, long_tag, swap)| {
            e.generations.extend((0..extra_gen as u64).map(|i| i * 7));
            e.tags.extend((0..extra_tags).map(|i| format!("t{i}")));
            if let Some(n) = long_tag {
                e.tags.push("x".repeat(n));
            }
            if swap {
                std::mem::swap(&mut e.soft_at, &mut e.hard_at);
            }
            e
        })
}

/// Asserts the decoder's canonicality: whatever it accepts re-encodes to the same bytes.
fn assert_canonical(bytes: &[u8]) {
    let decoded = Entry::decode(bytes);
    if let Ok(e) = &decoded {
        assert_eq!(
            e.encode(),
            bytes,
            "decode accepted a non-canonical encoding"
        );
        assert_eq!(e.encoded_len(), bytes.len());
        assert_eq!(e.validate(), Ok(()));
    }
    // peek_header must never panic either, and must agree with decode where decode succeeds.
    let peek = peek_header(bytes);
    match decoded {
        Ok(e) => assert_eq!(peek, Ok(header_of(&e))),
        Err(d) => {
            if let Err(p) = peek {
                assert_eq!(d, p, "peek_header error differs from decode");
            }
        }
    }
}

fn header_of(e: &Entry) -> EntryHeader {
    EntryHeader {
        codec: e.codec,
        version: e.version,
        soft_at: e.soft_at,
        hard_at: e.hard_at,
        load_ms: e.load_ms,
        negative: e.negative,
    }
}

// ---------------------------------------------------------------------------------------------
// Roundtrip

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1_000))]

    #[test]
    fn roundtrip_valid_entries(e in valid_entry()) {
        prop_assert_eq!(e.validate(), Ok(()));
        let bytes = e.encode();
        prop_assert_eq!(bytes.len(), e.encoded_len());
        prop_assert_eq!(Entry::decode(&bytes), Ok(e.clone()));
        prop_assert_eq!(peek_header(&bytes), Ok(header_of(&e)));

        // encode_into appends and produces the same bytes.
        let mut out = b"prefix".to_vec();
        e.encode_into(&mut out);
        prop_assert_eq!(&out[..6], b"prefix");
        prop_assert_eq!(&out[6..], &bytes[..]);
    }

    #[test]
    fn validate_predicts_decode(e in any_entry()) {
        let bytes = e.encode();
        prop_assert_eq!(bytes.len(), e.encoded_len());
        match e.validate() {
            Ok(()) => prop_assert_eq!(Entry::decode(&bytes), Ok(e)),
            Err(err) => prop_assert_eq!(Entry::decode(&bytes), Err(err)),
        }
    }

    #[test]
    fn json_form_roundtrips(e in valid_entry()) {
        let json = serde_json::to_string(&e).unwrap();
        let back: Entry = serde_json::from_str(&json).unwrap();
        prop_assert_eq!(back, e);
    }
}

// ---------------------------------------------------------------------------------------------
// Robustness: arbitrary and mutated input

proptest! {
    #![proptest_config(ProptestConfig::with_cases(50_000))]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..128)) {
        assert_canonical(&bytes);
    }

    /// Random tails behind a valid magic/format/flags prefix reach the variable-length part.
    #[test]
    fn arbitrary_body_never_panics(
        flags in 0u8..4,
        mut times in proptest::collection::vec(any::<u8>(), 24),
        tail in proptest::collection::vec(any::<u8>(), 0..96),
    ) {
        // Keep hard_at >= soft_at most of the time so decoding goes past the header.
        times[8..16].copy_from_slice(&[0xff; 8]);
        let mut bytes = vec![b'K', b'C', 1, flags, 1];
        bytes.extend_from_slice(&times);
        bytes.extend_from_slice(&tail);
        assert_canonical(&bytes);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1_000))]

    #[test]
    fn truncations_are_errors(e in small_entry()) {
        let bytes = e.encode();
        for cut in 0..bytes.len() {
            let r = Entry::decode(&bytes[..cut]);
            prop_assert!(
                matches!(r, Err(DecodeError::TooShort | DecodeError::Truncated(_))),
                "prefix of {} bytes decoded as {:?}", cut, r
            );
        }
    }

    #[test]
    fn extensions_are_trailing_bytes(
        e in valid_entry(),
        extra in proptest::collection::vec(any::<u8>(), 1..32),
    ) {
        let mut bytes = e.encode();
        bytes.extend_from_slice(&extra);
        prop_assert_eq!(Entry::decode(&bytes), Err(DecodeError::TrailingBytes(extra.len())));
    }

    #[test]
    fn bit_flips_never_panic(e in valid_entry(), flips in proptest::collection::vec(any::<prop::sample::Index>(), 1..4), bits in proptest::collection::vec(0u8..8, 4)) {
        let mut bytes = e.encode();
        for (i, idx) in flips.iter().enumerate() {
            let at = idx.index(bytes.len());
            bytes[at] ^= 1 << bits[i];
        }
        assert_canonical(&bytes);
    }


    #[test]
    fn byte_overwrites_and_splices_never_panic(
        e in valid_entry(),
        at in any::<prop::sample::Index>(),
        with in proptest::collection::vec(any::<u8>(), 0..12),
        remove in 0usize..12,
    ) {
        let mut bytes = e.encode();
        let at = at.index(bytes.len());
        let end = (at + remove).min(bytes.len());
        bytes.splice(at..end, with);
        assert_canonical(&bytes);
    }
}

proptest! {
    // Exhaustive per case, so few cases.
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn every_single_bit_flip_in_the_head(e in small_entry()) {
        let clean = e.encode();
        // Exhaustive over the structured part (everything but the value's bytes).
        let head = clean.len() - e.value.len();
        for at in 0..head {
            for bit in 0..8 {
                let mut bytes = clean.clone();
                bytes[at] ^= 1 << bit;
                assert_canonical(&bytes);
            }
        }
    }

}

// ---------------------------------------------------------------------------------------------
// The worked example in docs/entry-format.md

fn example() -> Entry {
    Entry {
        value: br#"{"id":7}"#.to_vec(),
        codec: codec::JSON,
        version: Some(42),
        generations: vec![3, 1],
        soft_at: 1_700_000_000_000,
        hard_at: 1_700_000_060_000,
        load_ms: 250,
        negative: false,
        tags: vec!["user".into(), "org:9".into()],
    }
}

/// Hex of `example().encode()`, exactly as printed in docs/entry-format.md.
const EXAMPLE_HEX: &str = "\
4b43 01 02 01
0068e5cf8b010000
6052e6cf8b010000
fa00000000000000
2a00000000000000
02 0300000000000000 0100000000000000
02 04 75736572 05 6f72673a39
08 7b226964223a377d";

fn unhex(s: &str) -> Vec<u8> {
    let digits: Vec<u8> = s.bytes().filter(u8::is_ascii_hexdigit).collect();
    digits
        .chunks(2)
        .map(|p| u8::from_str_radix(std::str::from_utf8(p).unwrap(), 16).unwrap())
        .collect()
}

#[test]
fn worked_example_bytes() {
    let e = example();
    let want = unhex(EXAMPLE_HEX);
    assert_eq!(want.len(), 75);
    assert_eq!(e.encode(), want);
    assert_eq!(e.encoded_len(), 75);
    assert_eq!(Entry::decode(&want), Ok(e));
}

#[test]
fn worked_example_doc_matches() {
    // The doc carries the same hex; keep them in sync.
    let doc = include_str!("../../docs/entry-format.md");
    let compact: String = EXAMPLE_HEX.split_whitespace().collect();
    let doc_compact: String = doc.split_whitespace().collect();
    assert!(
        doc_compact.contains(&compact),
        "docs/entry-format.md must contain the example hex"
    );
    assert!(
        doc.contains(EXAMPLE_JSON),
        "docs/entry-format.md must contain the example JSON"
    );
}

const EXAMPLE_JSON: &str = r#"{"value_hex":"7b226964223a377d","codec":1,"version":"42","generations":[3,1],"soft_at":1700000000000,"hard_at":1700000060000,"load_ms":250,"negative":false,"tags":["user","org:9"]}"#;

#[test]
fn worked_example_json() {
    assert_eq!(serde_json::to_string(&example()).unwrap(), EXAMPLE_JSON);
    let back: Entry = serde_json::from_str(EXAMPLE_JSON).unwrap();
    assert_eq!(back, example());
}

#[test]
fn negative_entry_without_version() {
    let e = Entry {
        negative: true,
        soft_at: 5,
        hard_at: 5,
        ..Entry::default()
    };
    let bytes = e.encode();
    assert_eq!(
        bytes,
        unhex("4b43 01 01 00 0500000000000000 0500000000000000 0000000000000000 00 00 00")
    );
    assert_eq!(Entry::decode(&bytes), Ok(e));
}

// ---------------------------------------------------------------------------------------------
// Specific rejections

fn header(flags: u8, soft: u64, hard: u64) -> Vec<u8> {
    let mut b = vec![b'K', b'C', 1, flags, 0];
    b.extend_from_slice(&soft.to_le_bytes());
    b.extend_from_slice(&hard.to_le_bytes());
    b.extend_from_slice(&0u64.to_le_bytes());
    b
}

#[test]
fn specific_errors() {
    use DecodeError::*;
    let ok = example().encode();

    assert_eq!(Entry::decode(b""), Err(TooShort));
    assert_eq!(Entry::decode(b"KC"), Err(TooShort));
    assert_eq!(Entry::decode(b"{\"id\":7}"), Err(BadMagic));
    assert_eq!(Entry::decode(&ok[..20]), Err(TooShort));

    let mut b = ok.clone();
    b[2] = 2;
    assert_eq!(Entry::decode(&b), Err(UnsupportedFormat(2)));
    assert_eq!(peek_header(&b), Err(UnsupportedFormat(2)));

    for bit in 2..8 {
        let mut b = ok.clone();
        b[3] |= 1 << bit;
        assert_eq!(Entry::decode(&b), Err(UnknownFlags(b[3])));
    }

    assert_eq!(
        Entry::decode(&header(0, 10, 9)),
        Err(Inconsistent("hard_at < soft_at"))
    );

    // has_version but the input stops.
    assert_eq!(Entry::decode(&header(2, 0, 0)), Err(Truncated("version")));

    // 258 generations: rejected by the bound before anything is read.
    let mut b = header(0, 0, 0);
    b.extend_from_slice(&[0x82, 0x02]);
    assert_eq!(Entry::decode(&b), Err(TooLarge("generations", 258, 257)));

    // A forged generation count within bounds but beyond the input.
    let mut b = header(0, 0, 0);
    b.extend_from_slice(&[0x40, 0, 0, 0]);
    assert_eq!(Entry::decode(&b), Err(Truncated("generations")));

    // 257 tags.
    let mut b = header(0, 0, 0);
    b.extend_from_slice(&[0x00, 0x81, 0x02]);
    assert_eq!(Entry::decode(&b), Err(TooLarge("tags", 257, 256)));

    // A 1025-byte tag.
    let mut b = header(0, 0, 0);
    b.extend_from_slice(&[0x00, 0x01, 0x81, 0x08]);
    assert_eq!(Entry::decode(&b), Err(TooLarge("tag", 1025, 1024)));

    // Invalid UTF-8 in a tag.
    let mut b = header(0, 0, 0);
    b.extend_from_slice(&[0x00, 0x01, 0x02, 0xc3, 0x28, 0x00]);
    assert_eq!(Entry::decode(&b), Err(InvalidUtf8));

    // A forged value length of 2^63 - 1: no allocation, just Truncated.
    let mut b = header(0, 0, 0);
    b.extend_from_slice(&[0x00, 0x00]);
    b.extend_from_slice(&[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f]);
    assert_eq!(Entry::decode(&b), Err(Truncated("value")));

    // Non-minimal varint for the value length (0 written as 0x80 0x00).
    let mut b = header(0, 0, 0);
    b.extend_from_slice(&[0x00, 0x00, 0x80, 0x00]);
    assert_eq!(Entry::decode(&b), Err(InvalidVarint("value")));

    // Trailing bytes.
    let mut b = ok.clone();
    b.push(0);
    assert_eq!(Entry::decode(&b), Err(TrailingBytes(1)));
}

#[test]
fn bounds_are_inclusive() {
    let e = Entry {
        generations: vec![u64::MAX; Entry::MAX_GENERATIONS],
        tags: (0..Entry::MAX_TAGS)
            .map(|_| "y".repeat(Entry::MAX_TAG_LEN))
            .collect(),
        ..example()
    };
    assert_eq!(e.validate(), Ok(()));
    assert_eq!(Entry::decode(&e.encode()), Ok(e));
}

#[test]
fn json_rejects_bad_input() {
    let bad = [
        r#"{"value_hex":"abc"}"#,
        r#"{"value_hex":"zz"}"#,
        r#"{"version":42}"#,
        r#"{"version":"042"}"#,
        r#"{"version":"+1"}"#,
        r#"{"version":"18446744073709551616"}"#,
        r#"{"bogus":1}"#,
    ];
    for s in bad {
        assert!(
            serde_json::from_str::<Entry>(s).is_err(),
            "{s} should be rejected"
        );
    }
    let e: Entry =
        serde_json::from_str(r#"{"value_hex":"AbCd","version":"18446744073709551615"}"#).unwrap();
    assert_eq!(e.value, vec![0xab, 0xcd]);
    assert_eq!(e.version, Some(u64::MAX));
    assert_eq!(
        serde_json::from_str::<Entry>("{}").unwrap(),
        Entry::default()
    );
}

/// Speed check: run with `cargo test --release -p karlton-core --test entry_props -- --ignored
/// --nocapture`.
#[test]
#[ignore = "timing; run in release"]
fn timing_1k_value() {
    let e = Entry {
        value: vec![0x5a; 1024],
        ..example()
    };
    let n = 1_000_000u32;
    let mut buf = Vec::with_capacity(2048);
    let start = std::time::Instant::now();
    for _ in 0..n {
        buf.clear();
        std::hint::black_box(&e).encode_into(&mut buf);
        let d = Entry::decode(std::hint::black_box(&buf)).unwrap();
        std::hint::black_box(d);
    }
    let per = start.elapsed() / n;
    println!("1 KiB value encode_into+decode: {per:?} per round trip");
    let start = std::time::Instant::now();
    for _ in 0..n {
        let b = std::hint::black_box(&e).encode();
        let d = Entry::decode(std::hint::black_box(&b)).unwrap();
        std::hint::black_box(d);
    }
    println!(
        "1 KiB value encode+decode (fresh Vec): {:?} per round trip",
        start.elapsed() / n
    );
    let start = std::time::Instant::now();
    for _ in 0..n {
        std::hint::black_box(peek_header(std::hint::black_box(&buf)).unwrap());
    }
    println!("peek_header: {:?}", start.elapsed() / n);
}

#[test]
fn truncations_of_a_large_entry_are_errors() {
    let e = Entry {
        generations: vec![9; Entry::MAX_GENERATIONS],
        tags: vec!["z".repeat(Entry::MAX_TAG_LEN), "é".repeat(100)],
        value: vec![1; 3000],
        ..example()
    };
    let bytes = e.encode();
    for cut in 0..bytes.len() {
        assert!(matches!(
            Entry::decode(&bytes[..cut]),
            Err(DecodeError::TooShort | DecodeError::Truncated(_))
        ));
    }
}
