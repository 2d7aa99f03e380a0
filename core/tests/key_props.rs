//! Property tests for the key scheme (DESIGN §2 "Keys"): injectivity, length bound, hash-tag form,
//! and canonical params hashing.

use karlton_core::key::{Key, KeyError, canonicalize, generation_key, params_hash, tag_key};
use proptest::prelude::*;
use serde_json::{Map, Number, Value, json};

/// Characters that stress the escaping: every reserved character, the version look-alikes, `%XX`
/// look-alikes, control characters and multi-byte UTF-8 (2, 3 and 4 bytes).
const ADVERSARIAL: &[char] = &[
    ':', '%', '{', '}', '#', '!', '~', '@', ' ', '\0', '\u{1}', '\t', '\n', '\u{1f}', '\u{7f}',
    'v', 'V', '0', '1', '7', '3', 'A', 'a', 'g', 'e', 'n', '-', '/', 'é', '\u{80}', '€',
    '\u{fb33}', '😀',
];

fn adversarial_string(max: usize) -> impl Strategy<Value = String> {
    prop_oneof![
        4 => prop::collection::vec(prop::sample::select(ADVERSARIAL), 0..max)
            .prop_map(String::from_iter),
        1 => "v[0-9]{1,3}",
        1 => "%[0-9A-F]{2}",
        1 => any::<String>().prop_map(move |s| s.chars().take(max).collect()),
    ]
}

fn namespace() -> impl Strategy<Value = String> {
    // At most 10 chars: <= 40 bytes escaped, always a valid namespace.
    prop_oneof![
        3 => prop::collection::vec(prop::sample::select(ADVERSARIAL), 1..10)
            .prop_map(String::from_iter),
        1 => "[a-z]{1,3}",
    ]
}

fn json_leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        (-1000i64..1000).prop_map(|i| json!(i)),
        any::<i64>().prop_map(|i| json!(i >> 11)), // |i| <= 2^52: safe integers
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(|f| Value::Number(Number::from_f64(f).unwrap())),
        (-100i32..100, -30i32..30).prop_map(|(m, e)| {
            Value::Number(Number::from_f64(f64::from(m) * 10f64.powi(e)).unwrap())
        }),
        adversarial_string(6).prop_map(Value::String),
    ]
}

fn json_value() -> impl Strategy<Value = Value> {
    json_leaf().prop_recursive(4, 32, 5, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
            prop::collection::btree_map(adversarial_string(4), inner, 0..5)
                .prop_map(|m| Value::Object(m.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

/// One key's inputs. `params` is kept as its canonical text so that identity of inputs means
/// identity of what the key is meant to distinguish (`1` and `1.0` are the same params).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Spec {
    ns: String,
    segs: Vec<String>,
    params: Option<String>,
    version: Option<u64>,
    hash_tag: bool,
}

fn spec() -> impl Strategy<Value = Spec> {
    (
        namespace(),
        prop::collection::vec(adversarial_string(6), 0..5),
        prop::option::of(json_value()),
        prop::option::of(prop_oneof![0u64..20, any::<u64>()]),
        any::<bool>(),
    )
        .prop_map(|(ns, segs, params, version, hash_tag)| Spec {
            ns,
            segs,
            // `null` params are no params: the same input as `None`.
            params: params.map(|p| canonicalize(&p).unwrap()).filter(|c| c != "null"),
            version,
            hash_tag,
        })
}

fn key_of(s: &Spec, max_len: usize) -> Key {
    let mut k = Key::new(&s.ns)
        .unwrap()
        .segments(&s.segs)
        .hash_tag(s.hash_tag)
        .max_len(max_len)
        .unwrap();
    if let Some(p) = &s.params {
        k = k.params_json(p).unwrap();
    }
    if let Some(v) = s.version {
        k = k.version(v);
    }
    k
}

fn pct_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = std::str::from_utf8(&b[i + 1..i + 3]).unwrap();
            out.push(u8::from_str_radix(hex, 16).unwrap());
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).unwrap()
}

/// Parses an untruncated entry key back into its parts: the constructive proof of injectivity.
fn decode(key: &str) -> (String, Vec<String>, Option<String>, Option<u64>, bool) {
    assert!(
        !key.contains('~'),
        "untruncated keys never contain '~': {key}"
    );
    let mut parts: Vec<&str> = key.split(':').collect();
    let first = parts.remove(0);
    let (ns, hash_tag) = match first.strip_prefix('{') {
        Some(rest) => (rest.strip_suffix('}').expect("closing brace"), true),
        None => (first, false),
    };
    let mut version = None;
    if let Some(last) = parts.last()
        && let Some(digits) = last.strip_prefix('v')
        && !digits.is_empty()
        && digits.bytes().all(|c| c.is_ascii_digit())
    {
        version = Some(digits.parse().unwrap());
        parts.pop();
    }
    let mut hash = None;
    if let Some(last) = parts.last()
        && let Some(h) = last.strip_prefix('#')
    {
        hash = Some(h.to_owned());
        parts.pop();
    }
    let segs = parts.into_iter().map(pct_decode).collect();
    (pct_decode(ns), segs, hash, version, hash_tag)
}

const RESERVED: &[u8] = b"%:{}#!~@ ";

fn assert_escaped_component(c: &str) {
    for (i, &b) in c.as_bytes().iter().enumerate() {
        assert!(b >= 0x20 && b != 0x7f, "raw control byte in {c:?}");
        if b == b'%' {
            assert!(c.as_bytes()[i + 1..].len() >= 2, "dangling % in {c:?}");
        } else {
            assert!(!RESERVED[1..].contains(&b), "raw reserved byte in {c:?}");
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, .. ProptestConfig::default() })]

    /// Building then decoding recovers every input: the scheme is injective by construction.
    #[test]
    fn build_decodes_back(s in spec()) {
        let built = key_of(&s, 100_000).build();
        let (ns, segs, hash, version, hash_tag) = decode(&built);
        prop_assert_eq!(&ns, &s.ns);
        prop_assert_eq!(&segs, &s.segs);
        prop_assert_eq!(hash, s.params.as_ref().map(|p| params_hash(&serde_json::from_str(p).unwrap()).unwrap()));
        prop_assert_eq!(version, s.version);
        prop_assert_eq!(hash_tag, s.hash_tag);
        // namespace and segments: only escaped bytes; the params/version components follow
        let body = if s.hash_tag { &built[1..] } else { &built[..] };
        let mut comps = body.split(':');
        assert_escaped_component(comps.next().unwrap().trim_end_matches('}'));
        for c in comps.take(s.segs.len()) {
            assert_escaped_component(c);
        }
    }

    /// Distinct inputs give distinct keys (pairs, default max_len, so truncation is exercised too).
    #[test]
    fn injective_pairs(a in spec(), b in spec()) {
        let (ka, kb) = (key_of(&a, Key::DEFAULT_MAX_LEN).build(), key_of(&b, Key::DEFAULT_MAX_LEN).build());
        prop_assert_eq!(a == b, ka == kb, "{:?} / {:?} -> {} / {}", a, b, ka, kb);
    }

    /// Mutating one part of a key always changes the key.
    #[test]
    fn injective_mutations(s in spec(), extra in adversarial_string(6), i in any::<prop::sample::Index>()) {
        let base = key_of(&s, 100_000).build();
        // split one segment into two at a char boundary, joined by ':' in the original
        let mut joined = s.clone();
        if !s.segs.is_empty() {
            let j = i.index(s.segs.len());
            joined.segs[j] = format!("{}:{}", s.segs[j], extra);
            let mut split = s.clone();
            split.segs.splice(j..=j, [s.segs[j].clone(), extra.clone()]);
            prop_assert_ne!(key_of(&joined, 100_000).build(), key_of(&split, 100_000).build());
        }
        let mut more = s.clone();
        more.segs.push(extra.clone());
        prop_assert_ne!(&base, &key_of(&more, 100_000).build());
        let mut flipped = s.clone();
        flipped.hash_tag = !s.hash_tag;
        prop_assert_ne!(&base, &key_of(&flipped, 100_000).build());
        if let Some(v) = s.version {
            // the version as a trailing segment instead
            let mut as_seg = s.clone();
            as_seg.version = None;
            as_seg.segs.push(format!("v{v}"));
            prop_assert_ne!(&base, &key_of(&as_seg, 100_000).build());
        }
    }

    /// Built keys never exceed max_len; truncated ones are `<prefix of full key>~<32 hex>` cut at a
    /// char boundary, outside escapes, and keep the whole (braced) namespace.
    #[test]
    fn never_exceeds_max_len(
        s in spec(),
        long in prop::collection::vec(adversarial_string(40), 0..8),
        max_len in 128usize..400,
    ) {
        let mut s = s;
        s.segs.extend(long);
        let full = key_of(&s, 1_000_000).build();
        let built = key_of(&s, max_len).build();
        prop_assert!(built.len() <= max_len);
        if full.len() <= max_len {
            prop_assert_eq!(&built, &full);
        } else {
            let (prefix, hash) = built.rsplit_once('~').unwrap();
            prop_assert_eq!(hash.len(), 32);
            prop_assert!(hash.bytes().all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()));
            prop_assert!(full.starts_with(prefix));
            prop_assert!(built.len() + 5 >= max_len, "prefix as long as possible");
            let pb = prefix.as_bytes();
            prop_assert!(pb.last() != Some(&b'%') && pb.get(pb.len().wrapping_sub(2)) != Some(&b'%'));
            let head = full.split(':').next().unwrap();
            prop_assert!(prefix.starts_with(head), "namespace survives truncation");
        }
        // counter keys too
        let k = key_of(&s, max_len);
        for tag in &s.segs {
            prop_assert!(k.tag_key(tag).len() <= max_len);
        }
        prop_assert!(k.generation_key().len() <= max_len);
    }

    /// The hash-tag form has exactly one `{…}`, at the start, containing the (escaped) namespace;
    /// counter keys share it.
    #[test]
    fn hash_tag_form(s in spec(), tag in adversarial_string(8), max_len in 128usize..300) {
        let mut s = s;
        s.hash_tag = true;
        let k = key_of(&s, max_len);
        let mut expected_head = String::from("{");
        expected_head.push_str(
            Key::new(&s.ns).unwrap().build().as_str(),
        );
        expected_head.push('}');
        for key in [k.build(), k.generation_key(), k.tag_key(&tag), generation_key(&s.ns, true), tag_key(&s.ns, true, &tag)] {
            prop_assert!(key.starts_with(&expected_head), "{} vs {}", key, expected_head);
            prop_assert_eq!(key.matches('{').count(), 1);
            prop_assert_eq!(key.matches('}').count(), 1);
            prop_assert_eq!(pct_decode(&expected_head[1..expected_head.len() - 1]), s.ns.clone());
        }
        // the plain form never starts with '{'
        s.hash_tag = false;
        let plain = key_of(&s, max_len);
        let no_brace = !plain.build().contains('{') && !plain.generation_key().contains('{');
        prop_assert!(no_brace, "plain form has no brace");
    }

    /// Counter keys never collide with entry keys, and tag keys are injective in the tag.
    #[test]
    fn counter_keys_distinct(s in spec(), t1 in adversarial_string(8), t2 in adversarial_string(8)) {
        let k = key_of(&s, 100_000);
        let entry = k.build();
        prop_assert_ne!(&entry, &k.generation_key());
        prop_assert_ne!(&entry, &k.tag_key(&t1));
        prop_assert_ne!(k.generation_key(), k.tag_key(&t1));
        prop_assert_eq!(t1 == t2, k.tag_key(&t1) == k.tag_key(&t2));
        prop_assert_eq!(k.generation_key(), generation_key(&s.ns, s.hash_tag));
    }

    /// Member order of the JSON text does not change the params hash.
    #[test]
    fn params_hash_ignores_member_order(
        members in prop::collection::btree_map(adversarial_string(5), json_value(), 0..6),
        rot in any::<prop::sample::Index>(),
    ) {
        let pairs: Vec<(String, Value)> = members.into_iter().collect();
        let text = |order: &[(String, Value)]| {
            let body: Vec<String> = order
                .iter()
                .map(|(k, v)| format!("{}:{}", serde_json::to_string(k).unwrap(), serde_json::to_string(v).unwrap()))
                .collect();
            format!("{{{}}}", body.join(" , "))
        };
        let mut reversed = pairs.clone();
        reversed.reverse();
        let mut rotated = pairs.clone();
        if !rotated.is_empty() {
            let n = rot.index(rotated.len());
            rotated.rotate_left(n);
        }
        let h = |t: String| Key::new("n").unwrap().params_json(&t).unwrap().build();
        let base = h(text(&pairs));
        prop_assert_eq!(&base, &h(text(&reversed)));
        prop_assert_eq!(&base, &h(text(&rotated)));
    }

    /// `n` and `n.0` are the same JSON number and hash alike, at any nesting depth.
    #[test]
    fn params_hash_int_equals_float(n in -(1i64 << 53)..=(1i64 << 53), key in adversarial_string(4)) {
        let f = n as f64;
        prop_assert_eq!(params_hash(&json!(n)).unwrap(), params_hash(&json!(f)).unwrap());
        prop_assert_eq!(
            params_hash(&json!({ key.clone(): [n, {"x": n}] })).unwrap(),
            params_hash(&json!({ key: [f, {"x": f}] })).unwrap()
        );
        let text_int = format!("[{n}]");
        let text_float = format!("[{n}.0]");
        prop_assert_eq!(
            Key::new("n").unwrap().params_json(&text_int).unwrap().build(),
            Key::new("n").unwrap().params_json(&text_float).unwrap().build()
        );
    }

    /// An integer is accepted exactly when it is already canonical (its own ECMAScript form), and
    /// then hashes like its double; so accepted integers never collide with each other. The text
    /// path (`params_json`) agrees with the value path, also beyond the 64-bit range.
    #[test]
    fn integers_accepted_iff_canonical(u in any::<u64>(), i in any::<i64>(), shift in 0u32..64, big in any::<u128>()) {
        for n in [i128::from(u), i128::from(u >> shift), i128::from(i), i128::from(i >> shift), i128::try_from(big >> (shift + 1)).unwrap()] {
            let text = n.to_string();
            let f = n as f64;
            let canonical = ryu_js::Buffer::new().format_finite(f) == text;
            let via_text = Key::new("n").unwrap().params_json(&text);
            prop_assert_eq!(via_text.is_ok(), canonical, "{}", n);
            if let Ok(v) = serde_json::from_str::<Value>(&text) && !v.is_f64() {
                prop_assert_eq!(params_hash(&v).is_ok(), canonical, "{}", n);
            }
            if canonical {
                prop_assert_eq!(
                    via_text.unwrap().build(),
                    Key::new("n").unwrap().params(&json!(f)).unwrap().build()
                );
            }
        }
    }

    /// Canonical text is a fixed point and parses back to an equal value (floats round-trip).
    #[test]
    fn canonical_form_is_stable(v in json_value()) {
        let c = canonicalize(&v).unwrap();
        let reparsed: Value = serde_json::from_str(&c).unwrap();
        prop_assert_eq!(canonicalize(&reparsed).unwrap(), c.clone());
        prop_assert!(json_numbers_equal(&v, &reparsed), "{} vs {}", v, reparsed);
        prop_assert_eq!(params_hash(&v).unwrap().len(), 32);
    }
}

/// Value equality where numbers compare as f64 (JSON has one number type).
fn json_numbers_equal(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64() == y.as_f64(),
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(p, q)| json_numbers_equal(p, q))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, v)| y.get(k).is_some_and(|w| json_numbers_equal(v, w)))
        }
        _ => a == b,
    }
}

#[test]
fn adversarial_cases() {
    let n = || Key::new("n").unwrap();
    let distinct = [
        n().segment("a:b").build(),
        n().segments(["a", "b"]).build(),
        n().segment("v7").build(),
        n().version(7).build(),
        n().segments(["123", "v7"]).build(),
        n().segment("123").version(7).build(),
        n().segment("%3A").build(),
        n().segment(":").build(),
        n().build(),
        n().segment("").build(),
        n().segments(["", ""]).build(),
        n().segment("\n").build(),
        n().segment("%0A").build(),
        n().segment("é").build(),
        n().segment("%C3%A9").build(),
        n().segment("{n}").build(),
        n().hash_tag(true).build(),
        n().segment("!gen").build(),
        n().generation_key(),
        n().tag_key("x"),
        n().segments(["!tag", "x"]).build(),
        n().segment("~").build(),
        n().segment("#").build(),
        Key::new("n:a").unwrap().build(),
        n().segment("a").build(),
    ];
    for (i, a) in distinct.iter().enumerate() {
        for b in &distinct[i + 1..] {
            assert_ne!(a, b);
        }
    }
}

#[test]
fn fixed_keys() {
    let k = Key::new("user").unwrap();
    assert_eq!(k.clone().segment("123").version(7).build(), "user:123:v7");
    assert_eq!(k.clone().segments(["123", "v7"]).build(), "user:123:%767");
    assert_eq!(k.clone().segment("a:b").build(), "user:a%3Ab");
    assert_eq!(k.clone().hash_tag(true).segment("1").build(), "{user}:1");
    assert_eq!(k.clone().hash_tag(true).generation_key(), "{user}:!gen");
    assert_eq!(k.tag_key("team:9"), "user:!tag:team%3A9");
    assert_eq!(
        Key::new("user")
            .unwrap()
            .params(&json!({"b": [1, 2.5, {"z": null, "a": "é"}], "a": true}))
            .unwrap()
            .build(),
        // see key.rs unit test `params_hash_fixed` for the Python cross-check
        "user:#dd5ad1514929374b6da59b4437902419"
    );
    assert!(matches!(Key::new(""), Err(KeyError::EmptyNamespace)));
}
