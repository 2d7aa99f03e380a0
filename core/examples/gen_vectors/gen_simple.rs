//! keys, policy, freshness, entry, store and writes vectors.

use crate::File;
use karlton_core::Entry;
use karlton_core::store::hex;
use serde_json::{Value, json};

// ================================================================================================
// keys

/// Input of a `build` case.
fn kb(ns: &str, segs: &[&str]) -> Value {
    json!({ "op": "build", "namespace": ns, "segments": segs })
}

fn with(mut v: Value, field: &str, x: Value) -> Value {
    v[field] = x;
    v
}

fn okv(v: impl Into<Value>) -> Value {
    json!({ "ok": v.into() })
}

fn errv(v: Value) -> Value {
    json!({ "error": v })
}

fn sha_hex(s: &str, n: usize) -> String {
    use sha2::{Digest, Sha256};
    hex::encode(&Sha256::digest(s.as_bytes())[..n])
}

pub fn keys() -> File {
    let mut f = File::new(
        "keys",
        "Key building (namespace, segments, params, version, hash tag, max length), counter keys and params hashes.",
    );
    // ---- layout
    f.hand("ns_only", "a bare namespace is a key", kb("user", &[]), okv("user"));
    f.hand("one_segment", "segments join with ':'", kb("user", &["123"]), okv("user:123"));
    f.hand("three_segments", "segments in order", kb("shop", &["eu", "cart", "42"]), okv("shop:eu:cart:42"));
    f.hand("version_suffix", "version renders as :v<N>", with(kb("user", &["123"]), "version", json!("7")), okv("user:123:v7"));
    f.hand("version_zero", "version 0 is a version", with(kb("user", &[]), "version", json!("0")), okv("user:v0"));
    f.hand(
        "version_u64_max",
        "versions are u64 (string in the vector), canonical decimal",
        with(kb("user", &["1"]), "version", json!("18446744073709551615")),
        okv("user:1:v18446744073709551615"),
    );
    f.hand(
        "version_2_53_plus_1",
        "a version above 2^53 stays exact",
        with(kb("user", &["1"]), "version", json!("9007199254740993")),
        okv("user:1:v9007199254740993"),
    );
    f.hand("empty_segment", "an empty segment is kept", kb("n", &[""]), okv("n:"));
    f.hand("two_empty_segments", "two empty segments differ from one", kb("n", &["", ""]), okv("n::"));
    f.hand("empty_middle_segment", "empty segments keep their position", kb("n", &["a", "", "b"]), okv("n:a::b"));
    // ---- escaping: every reserved byte
    for (name, ch, esc) in [
        ("pct", "%", "%25"),
        ("colon", ":", "%3A"),
        ("lbrace", "{", "%7B"),
        ("rbrace", "}", "%7D"),
        ("hash", "#", "%23"),
        ("bang", "!", "%21"),
        ("tilde", "~", "%7E"),
        ("at", "@", "%40"),
        ("space", " ", "%20"),
        ("nul", "\u{0}", "%00"),
        ("soh", "\u{1}", "%01"),
        ("tab", "\t", "%09"),
        ("lf", "\n", "%0A"),
        ("cr", "\r", "%0D"),
        ("us", "\u{1f}", "%1F"),
        ("del", "\u{7f}", "%7F"),
    ] {
        f.hand(
            &format!("escape_{name}"),
            "reserved and control bytes are percent-encoded with uppercase hex",
            kb("ns", &[&format!("a{ch}b")]),
            okv(format!("ns:a{esc}b")),
        );
    }
    f.hand(
        "escape_all_reserved",
        "every reserved byte in one segment",
        kb("ns", &["%:{}#!~@ \u{0}\u{1f}\u{7f}"]),
        okv("ns:%25%3A%7B%7D%23%21%7E%40%20%00%1F%7F"),
    );
    f.hand("escape_pct_lookalike", "'%3A' is text, so its '%' is escaped", kb("ns", &["%3A"]), okv("ns:%253A"));
    f.hand(
        "ascii_punct_passes",
        "other ASCII punctuation is not reserved",
        kb("ns", &["-_.,;/?&=+$*()[]'\"<>\\^`|"]),
        okv("ns:-_.,;/?&=+$*()[]'\"<>\\^`|"),
    );
    f.hand("colon_in_segment_vs_two_segments_a", "[\"a:b\"] ...", kb("n", &["a:b"]), okv("n:a%3Ab"));
    f.hand("colon_in_segment_vs_two_segments_b", "... differs from [\"a\",\"b\"]", kb("n", &["a", "b"]), okv("n:a:b"));
    f.hand("namespace_escaped", "the namespace is escaped too", kb("a:b", &["c:d"]), okv("a%3Ab:c%3Ad"));
    f.hand("namespace_colon_vs_segment", "ns 'n:a' differs from ns 'n' + segment 'a'", kb("n:a", &[]), okv("n%3Aa"));
    f.hand("segment_bang_gen", "a segment '!gen' cannot forge the generation key", kb("n", &["!gen"]), okv("n:%21gen"));
    f.hand("segment_hash_lookalike", "a segment '#…' cannot forge a params hash", kb("n", &["#abc"]), okv("n:%23abc"));
    f.hand("segment_braces", "a segment '{n}' cannot forge the hash-tag form", kb("n", &["{n}"]), okv("n:%7Bn%7D"));
    f.hand("segment_tilde", "a segment with '~' cannot forge a truncated key", kb("n", &["x~y"]), okv("n:x%7Ey"));
    // ---- version look-alikes
    f.hand("segment_v7", "a segment 'v7' escapes its 'v' so it is not a version", kb("ns", &["v7"]), okv("ns:%767"));
    f.hand("segment_v7_vs_version", "... while version 7 is ':v7'", with(kb("ns", &[]), "version", json!("7")), okv("ns:v7"));
    f.hand("segment_v07", "'v' + digits, leading zero too", kb("ns", &["v07"]), okv("ns:%7607"));
    f.hand("segment_v_only", "'v' alone is not a version", kb("ns", &["v"]), okv("ns:v"));
    f.hand("segment_v7a", "'v7a' is not a version", kb("ns", &["v7a"]), okv("ns:v7a"));
    f.hand("segment_upper_V7", "'V7' is not a version", kb("ns", &["V7"]), okv("ns:V7"));
    f.hand("segment_v_arabic_digit", "only ASCII digits make a version look-alike", kb("ns", &["v\u{663}"]), okv("ns:v\u{663}"));
    f.hand(
        "segments_123_v7_vs_version",
        "['123','v7'] differs from ['123'] + version 7",
        kb("n", &["123", "v7"]),
        okv("n:123:%767"),
    );
    f.hand("namespace_v7", "the namespace needs no version rule", kb("v7", &[]), okv("v7"));
    // ---- unicode
    f.hand("unicode_latin1", "non-ASCII passes through as UTF-8", kb("user", &["é"]), okv("user:é"));
    f.hand("unicode_emoji", "4-byte UTF-8 passes through", kb("user", &["é😀"]), okv("user:é😀"));
    f.hand("unicode_cjk", "CJK passes through", kb("用户", &["日本語"]), okv("用户:日本語"));
    f.hand("unicode_rtl", "RTL text passes through", kb("n", &["עברית"]), okv("n:עברית"));
    f.hand("unicode_c1_control", "U+0080 is multi-byte, not escaped", kb("n", &["\u{80}"]), okv("n:\u{80}"));
    f.hand("unicode_line_separator", "U+2028 passes through", kb("n", &["a\u{2028}b"]), okv("n:a\u{2028}b"));
    f.hand("unicode_nfc", "no Unicode normalization: NFC é ...", kb("n", &["\u{e9}"]), okv("n:\u{e9}"));
    f.hand("unicode_nfd", "... and NFD e+U+0301 are different keys", kb("n", &["e\u{301}"]), okv("n:e\u{301}"));
    f.hand("unicode_zwj", "zero-width joiner kept", kb("n", &["👩\u{200d}💻"]), okv("n:👩\u{200d}💻"));
    f.hand("unicode_bom", "U+FEFF kept", kb("n", &["\u{feff}x"]), okv("n:\u{feff}x"));
    // ---- hash tag
    f.hand("hash_tag", "hash-tag form wraps the namespace", with(kb("user", &["123"]), "hash_tag", json!(true)), okv("{user}:123"));
    f.hand(
        "hash_tag_version",
        "hash tag with version",
        with(with(kb("user", &["a", "b"]), "hash_tag", json!(true)), "version", json!("0")),
        okv("{user}:a:b:v0"),
    );
    f.hand(
        "hash_tag_braces_in_namespace",
        "braces inside the namespace are escaped",
        with(kb("{x}", &[]), "hash_tag", json!(true)),
        okv("{%7Bx%7D}"),
    );
    f.hand("hash_tag_false", "hash_tag false is the plain form", with(kb("user", &["1"]), "hash_tag", json!(false)), okv("user:1"));
    // ---- params
    let h_a1 = sha_hex("{\"a\":1}", 16);
    f.hand(
        "params_simple",
        "params hash: JCS then SHA-256, 16 bytes hex",
        with(kb("n", &[]), "params_json", json!("{\"a\":1}")),
        okv(format!("n:#{h_a1}")),
    );
    f.hand(
        "params_with_segments_version",
        "order: segments, #params, v<N>",
        with(with(kb("user", &["123"]), "params_json", json!("{\"a\":1}")), "version", json!("7")),
        okv(format!("user:123:#{h_a1}:v7")),
    );
    f.hand(
        "params_member_order",
        "member order does not matter",
        with(kb("n", &[]), "params_json", json!("{ \"b\" : 2, \"a\" : 1 }")),
        okv(format!("n:#{}", sha_hex("{\"a\":1,\"b\":2}", 16))),
    );
    f.hand(
        "params_one_point_zero",
        "1.0 and 1 are the same number",
        with(kb("n", &[]), "params_json", json!("{\"a\":1.0}")),
        okv(format!("n:#{h_a1}")),
    );
    f.hand(
        "params_exponent",
        "1e0 is 1 too",
        with(kb("n", &[]), "params_json", json!("{\"a\":1e0}")),
        okv(format!("n:#{h_a1}")),
    );
    f.hand(
        "params_hash_tag",
        "params in hash-tag form",
        with(with(kb("n", &["x"]), "params_json", json!("{\"a\":1}")), "hash_tag", json!(true)),
        okv(format!("{{n}}:x:#{h_a1}")),
    );
    f.hand(
        "params_empty_object",
        "{} still hashes (differs from no params)",
        with(kb("n", &[]), "params_json", json!("{}")),
        okv(format!("n:#{}", sha_hex("{}", 16))),
    );
    f.hand(
        "params_nested",
        "nested maps sort at every level; arrays keep order",
        with(kb("n", &[]), "params_json", json!("{\"z\":[3,1,{\"y\":null,\"x\":true}],\"a\":{\"d\":0.5,\"c\":\"s\"}}")),
        okv(format!("n:#{}", sha_hex("{\"a\":{\"c\":\"s\",\"d\":0.5},\"z\":[3,1,{\"x\":true,\"y\":null}]}", 16))),
    );
    f.hand(
        "params_big_safe_int",
        "2^53 is exact",
        with(kb("n", &[]), "params_json", json!("{\"id\":9007199254740992}")),
        okv(format!("n:#{}", sha_hex("{\"id\":9007199254740992}", 16))),
    );
    let mut c = with(kb("n", &[]), "params_json", json!("{\"id\":9007199254740993}"));
    c["exact_text"] = json!(true);
    f.hand("params_unsafe_int", "2^53+1 is not a double: refused rather than collide", c, errv(json!({"kind": "params"})));
    let mut c = with(kb("n", &[]), "params_json", json!("[18446744073709551616]"));
    c["exact_text"] = json!(true);
    f.hand("params_beyond_u64", "2^64 (beyond u64) is not canonical: refused", c, errv(json!({"kind": "params"})));
    let mut c = with(kb("n", &[]), "params_json", json!("[18446744073709552000]"));
    c["exact_text"] = json!(true);
    f.hand(
        "params_canonical_huge_int",
        "an integer written in its canonical double form is accepted",
        c,
        okv(format!("n:#{}", sha_hex("[18446744073709552000]", 16))),
    );
    f.hand(
        "params_floats",
        "floats in ECMAScript form",
        with(kb("n", &[]), "params_json", json!("[0.1,1e21,1e-7,-0.0,2.50]")),
        okv(format!("n:#{}", sha_hex("[0.1,1e+21,1e-7,0,2.5]", 16))),
    );
    f.hand(
        "params_string_array",
        "params may be any JSON value, not only objects",
        with(kb("n", &[]), "params_json", json!("[\"a\",\"b\"]")),
        okv(format!("n:#{}", sha_hex("[\"a\",\"b\"]", 16))),
    );
    f.hand(
        "params_null",
        "null params mean no params (Python's None, JavaScript's null and undefined): no hash",
        with(kb("n", &[]), "params_json", json!("null")),
        okv("n".to_string()),
    );
    f.hand(
        "params_invalid_json",
        "params text that is not JSON",
        with(kb("n", &[]), "params_json", json!("{\"a\":")),
        errv(json!({"kind": "invalid_json"})),
    );
    f.hand(
        "params_trailing_garbage",
        "params text with trailing garbage",
        with(kb("n", &[]), "params_json", json!("{} x")),
        errv(json!({"kind": "invalid_json"})),
    );
    f.hand(
        "params_vs_hash_segment",
        "a segment holding '#<hash>' differs from params",
        kb("n", &[&format!("#{}", sha_hex("{}", 16))]),
        okv(format!("n:%23{}", sha_hex("{}", 16))),
    );
    // ---- namespace limits
    f.hand("namespace_empty", "empty namespace refused", kb("", &[]), errv(json!({"kind": "empty_namespace"})));
    let ns64 = "n".repeat(64);
    f.hand("namespace_64", "64 bytes is the maximum", kb(&ns64, &[]), okv(ns64.clone()));
    f.hand(
        "namespace_65",
        "65 bytes refused",
        kb(&"n".repeat(65), &[]),
        errv(json!({"kind": "namespace_too_long", "len": 65, "max": 64})),
    );
    f.hand(
        "namespace_21_colons",
        "limit counts escaped bytes: 21 ':' = 63 bytes",
        kb(&":".repeat(21), &[]),
        okv("%3A".repeat(21)),
    );
    f.hand(
        "namespace_22_colons",
        "22 ':' = 66 escaped bytes: refused",
        kb(&":".repeat(22), &[]),
        errv(json!({"kind": "namespace_too_long", "len": 66, "max": 64})),
    );
    f.hand("namespace_16_emoji", "16 emoji = 64 bytes of UTF-8", kb(&"😀".repeat(16), &[]), okv("😀".repeat(16)));
    f.hand(
        "namespace_17_emoji",
        "17 emoji = 68 bytes: refused",
        kb(&"😀".repeat(17), &[]),
        errv(json!({"kind": "namespace_too_long", "len": 68, "max": 64})),
    );
    // ---- length
    let seg197 = "z".repeat(197);
    f.hand("len_exactly_200", "exactly max_len (200) is not truncated", kb("ns", &[&seg197]), okv(format!("ns:{seg197}")));
    let seg198 = "z".repeat(198);
    let full = format!("ns:{seg198}");
    f.hand(
        "len_201_truncated",
        "201 bytes: 167-byte prefix, '~', 32 hex of SHA-256(full key)",
        kb("ns", &[&seg198]),
        okv(format!("{}~{}", &full[..167], sha_hex(&full, 16))),
    );
    let full = format!("{{ns}}:{}", "x".repeat(300));
    f.hand(
        "len_hash_tag_truncated",
        "truncated keys keep the braced namespace (same Cluster slot)",
        with(kb("ns", &[&"x".repeat(300)]), "hash_tag", json!(true)),
        okv(format!("{}~{}", &full[..167], sha_hex(&full, 16))),
    );
    let full = format!("ns:{}", "x".repeat(300));
    f.hand(
        "len_max_len_128",
        "max_len 128: 95-byte prefix",
        with(kb("ns", &[&"x".repeat(300)]), "max_len", json!(128)),
        okv(format!("{}~{}", &full[..95], sha_hex(&full, 16))),
    );
    f.hand(
        "len_max_len_1000",
        "a larger max_len keeps the key whole",
        with(kb("ns", &[&"x".repeat(300)]), "max_len", json!(1000)),
        okv(full.clone()),
    );
    f.hand(
        "len_max_len_127",
        "max_len below 128 refused",
        with(kb("ns", &[]), "max_len", json!(127)),
        errv(json!({"kind": "max_len_too_small", "len": 127, "min": 128})),
    );
    // Cut points that land inside an escape or a UTF-8 character.
    for n in 0..6 {
        let seg = format!("{}{}", "y".repeat(n), ":é".repeat(60));
        f.add(
            &format!("len_cut_boundary_{n}"),
            "the truncation prefix never ends inside a %XX escape or a UTF-8 character",
            with(kb("ns", &[&seg]), "max_len", json!(128)),
        );
    }
    for n in 0..4 {
        let seg = format!("{}{}", "y".repeat(n), "😀".repeat(60));
        f.add(
            &format!("len_cut_emoji_{n}"),
            "cut backs up to a 4-byte character boundary",
            kb("ns", &[&seg]),
        );
    }
    f.add(
        "len_many_segments",
        "many short segments exceed max_len",
        kb("ns", &["seg"; 80]),
    );
    f.add(
        "len_params_version_truncated",
        "a long key with params and version: the hash covers the full key",
        with(with(kb("ns", &[&"q".repeat(190)]), "params_json", json!("{\"a\":1}")), "version", json!("3")),
    );
    // ---- counter keys
    let gk = |ns: &str, tag: bool| json!({ "op": "generation_key", "namespace": ns, "hash_tag": tag });
    f.hand("generation_key", "namespace generation counter", gk("user", false), okv("user:!gen"));
    f.hand("generation_key_hash_tag", "same slot as the entries", gk("user", true), okv("{user}:!gen"));
    f.hand("generation_key_escaped", "namespace escaped", gk("a:b!", false), okv("a%3Ab%21:!gen"));
    f.hand(
        "generation_key_ignores_segments",
        "segments do not change the generation key",
        with(with(kb("user", &["1", "2"]), "op", json!("generation_key")), "version", json!("3")),
        okv("user:!gen"),
    );
    let tk = |ns: &str, tag: &str, ht: bool| {
        json!({ "op": "tag_key", "namespace": ns, "tag": tag, "hash_tag": ht })
    };
    f.hand("tag_key", "tag generation counter", tk("user", "red", false), okv("user:!tag:red"));
    f.hand("tag_key_hash_tag", "tag counter in the namespace's slot", tk("user", "red", true), okv("{user}:!tag:red"));
    f.hand("tag_key_escaped", "tags are escaped like segments", tk("user", "a:b c", false), okv("user:!tag:a%3Ab%20c"));
    f.hand("tag_key_v7", "tags have no version rule (nothing follows them)", tk("user", "v7", false), okv("user:!tag:v7"));
    f.hand("tag_key_empty", "empty tag", tk("user", "", false), okv("user:!tag:"));
    f.hand("tag_key_unicode", "unicode tag", tk("user", "café☕", false), okv("user:!tag:café☕"));
    let long_tag = "t".repeat(300);
    let full = format!("user:!tag:{long_tag}");
    f.hand(
        "tag_key_long",
        "tag keys truncate like entry keys",
        tk("user", &long_tag, false),
        okv(format!("{}~{}", &full[..167], sha_hex(&full, 16))),
    );
    f.hand(
        "tag_key_empty_namespace",
        "counter keys validate the namespace too",
        tk("", "x", false),
        errv(json!({"kind": "empty_namespace"})),
    );
    // ---- params_hash
    let ph = |text: &str| json!({ "op": "params_hash", "params_json": text });
    for (name, why, text, canon) in [
        ("ph_empty_object", "empty object", "{}", "{}"),
        ("ph_sorted", "members sorted", "{\"b\":1,\"a\":2}", "{\"a\":2,\"b\":1}"),
        ("ph_whitespace", "whitespace dropped", " { \"a\" : [ 1 , 2 ] } ", "{\"a\":[1,2]}"),
        ("ph_one_point_zero", "1.0 → 1", "1.0", "1"),
        ("ph_neg_zero", "-0 → 0", "-0.0", "0"),
        ("ph_1e21", "1e21 → 1e+21", "1e21", "1e+21"),
        ("ph_1e20", "1e20 → integer digits", "1e20", "100000000000000000000"),
        ("ph_1e_minus_7", "1e-7 stays exponent", "0.0000001", "1e-7"),
        ("ph_1e_minus_6", "1e-6 → 0.000001", "1e-6", "0.000001"),
        ("ph_point_one", "0.1 shortest round-trip", "0.1", "0.1"),
        ("ph_third", "1/3 shortest round-trip", "0.3333333333333333", "0.3333333333333333"),
        ("ph_min_subnormal", "smallest double", "5e-324", "5e-324"),
        ("ph_max_double", "largest double", "1.7976931348623157e308", "1.7976931348623157e+308"),
        ("ph_negative", "negative numbers", "[-1,-1.5,-1e-9]", "[-1,-1.5,-1e-9]"),
        ("ph_2_53", "2^53 exact", "9007199254740992", "9007199254740992"),
        ("ph_minus_2_53", "-2^53 exact", "-9007199254740992", "-9007199254740992"),
        ("ph_1e18_int", "10^18 written canonically is accepted", "1000000000000000000", "1000000000000000000"),
        ("ph_canonical_big", "a canonical big integer", "883428225632934100", "883428225632934100"),
        ("ph_control_escapes", "short escapes for \\b\\t\\n\\f\\r", "\"\\b\\t\\n\\f\\r\"", "\"\\b\\t\\n\\f\\r\""),
        ("ph_nul_escape", "other controls as \\u00xx lowercase", "\"\\u0000\\u001F\"", "\"\\u0000\\u001f\""),
        ("ph_del_raw", "U+007F raw", "\"\\u007f\"", "\"\u{7f}\""),
        ("ph_solidus", "\\/ unescaped", "\"a\\/b\"", "\"a/b\""),
        ("ph_quote_backslash", "quote and backslash escaped", "\"\\\"\\\\\"", "\"\\\"\\\\\""),
        ("ph_unicode_raw", "non-ASCII raw UTF-8", "\"\\u00e9\\ud83d\\ude00\"", "\"é😀\""),
        ("ph_utf16_order", "members sorted by UTF-16 code units: U+1F600 (D83D) before U+E000", "{\"\u{e000}\":1,\"😀\":2}", "{\"😀\":2,\"\u{e000}\":1}"),
        ("ph_key_prefix_order", "shorter key first", "{\"ab\":1,\"a\":2,\"b\":3}", "{\"a\":2,\"ab\":1,\"b\":3}"),
        ("ph_nested", "nested", "{\"b\":[{\"d\":1,\"c\":2}],\"a\":null}", "{\"a\":null,\"b\":[{\"c\":2,\"d\":1}]}"),
        ("ph_literals", "true/false/null", "[true,false,null]", "[true,false,null]"),
        ("ph_string", "a bare string", "\"hello\"", "\"hello\""),
        ("ph_empty_array", "empty array", "[]", "[]"),
    ] {
        f.hand(name, why, ph(text), okv(json!({ "hash": sha_hex(canon, 16), "canonical": canon })));
    }
    for (name, why, text) in [
        ("ph_unsafe_int", "2^53+1 refused", "9007199254740993"),
        ("ph_unsafe_neg_int", "-(2^53+1) refused", "-9007199254740993"),
        ("ph_noncanonical_big", "a big integer that is a double but not in canonical form", "883428225632934144"),
        ("ph_huge_int", "beyond i128", "123456789012345678901234567890123456789012"),
        ("ph_unsafe_nested", "refused inside nested values too", "{\"a\":[1,{\"b\":9007199254740993}]}"),
    ] {
        f.hand(name, why, ph(text), errv(json!({"kind": "params"})));
    }
    f.hand(
        "ph_big_float_ok",
        "a float literal above 2^53 is a double by definition",
        ph("9007199254740993.0"),
        okv(json!({ "hash": sha_hex("9007199254740992", 16), "canonical": "9007199254740992" })),
    );
    f.hand("ph_invalid_json", "not JSON", ph("{"), errv(json!({"kind": "invalid_json"})));
    f.hand("ph_nan", "NaN is not JSON", ph("NaN"), errv(json!({"kind": "invalid_json"})));
    f
}

// ================================================================================================
// policy

/// The normalized form of the default policy with some fields replaced.
fn norm(over: Value) -> Value {
    let mut p = json!({
        "soft_ttl_ms": 60000, "hard_ttl_ms": 60000, "jitter": 0.0, "early_refresh": 0.0,
        "negative_ttl_ms": 0, "stale_if_error_ms": 0, "lease_ttl_ms": 10000, "lock_wait_ms": 5000,
        "lock_backoff_ms": [2, 5, 10], "on_lock_timeout": "load", "load_soft_timeout_ms": null,
        "load_hard_timeout_ms": null, "on_store_error": "load", "max_value_bytes": 16777216
    });
    for (k, v) in over.as_object().unwrap() {
        p[k] = v.clone();
    }
    okv(p)
}

fn perr(kind: &str, field: Option<&str>) -> Value {
    errv(json!({ "kind": kind, "field": field }))
}

pub fn policy() -> File {
    let mut f = File::new(
        "policy",
        "Policy JSON → normalized policy JSON, or the error kind and the field it names.",
    );
    let sp = |v: Value| json!({ "spec": v });
    let tx = |t: &str| json!({ "spec_json": t });
    const MAX: u64 = 1 << 40;
    // ---- ok
    f.hand("defaults", "{} takes every default; hard_ttl resolves to soft_ttl", sp(json!({})), norm(json!({})));
    f.hand("soft_only", "hard defaults to soft", sp(json!({"soft_ttl_ms": 1000})), norm(json!({"soft_ttl_ms": 1000, "hard_ttl_ms": 1000})));
    f.hand("hard_null", "explicit null hard = soft", sp(json!({"soft_ttl_ms": 1000, "hard_ttl_ms": null})), norm(json!({"soft_ttl_ms": 1000, "hard_ttl_ms": 1000})));
    f.hand("hard_eq_soft", "hard == soft allowed", sp(json!({"soft_ttl_ms": 5, "hard_ttl_ms": 5})), norm(json!({"soft_ttl_ms": 5, "hard_ttl_ms": 5})));
    f.hand("soft_1ms", "1 ms is the smallest soft TTL", sp(json!({"soft_ttl_ms": 1})), norm(json!({"soft_ttl_ms": 1, "hard_ttl_ms": 1})));
    f.hand("soft_max", "2^40 ms is the largest duration", sp(json!({"soft_ttl_ms": MAX})), norm(json!({"soft_ttl_ms": MAX, "hard_ttl_ms": MAX})));
    let full = json!({
        "soft_ttl_ms": 1000, "hard_ttl_ms": 5000, "jitter": 0.1, "early_refresh": 1.0,
        "negative_ttl_ms": 500, "stale_if_error_ms": 60000, "lease_ttl_ms": 2000, "lock_wait_ms": 300,
        "lock_backoff_ms": [5, 10, 20, 40], "on_lock_timeout": "serve_stale", "load_soft_timeout_ms": 100,
        "load_hard_timeout_ms": 1000, "on_store_error": "error", "max_value_bytes": 1024
    });
    f.hand("every_field", "every field set", sp(full.clone()), norm(full));
    f.hand("jitter_zero", "jitter 0 allowed", sp(json!({"jitter": 0})), norm(json!({"jitter": 0.0})));
    f.hand("jitter_neg_zero", "-0.0 is inside [0, 1)", tx("{\"jitter\":-0.0}"), norm(json!({"jitter": -0.0})));
    f.hand("jitter_almost_one", "0.9999999 allowed", sp(json!({"jitter": 0.9999999})), norm(json!({"jitter": 0.9999999})));
    f.hand("early_refresh_100", "β = 100 is the maximum", sp(json!({"early_refresh": 100})), norm(json!({"early_refresh": 100.0})));
    f.hand("lock_wait_zero", "lock_wait 0 = never wait", sp(json!({"lock_wait_ms": 0})), norm(json!({"lock_wait_ms": 0})));
    f.hand("negative_ttl_max", "negative TTL up to 2^40", sp(json!({"negative_ttl_ms": MAX})), norm(json!({"negative_ttl_ms": MAX})));
    f.hand("stale_if_error_max", "stale-if-error up to 2^40", sp(json!({"stale_if_error_ms": MAX})), norm(json!({"stale_if_error_ms": MAX})));
    f.hand("backoff_single", "one backoff value repeats", sp(json!({"lock_backoff_ms": [7]})), norm(json!({"lock_backoff_ms": [7]})));
    f.hand("load_soft_only", "soft load timeout alone", sp(json!({"load_soft_timeout_ms": 50})), norm(json!({"load_soft_timeout_ms": 50})));
    f.hand("load_hard_only", "hard load timeout alone", sp(json!({"load_hard_timeout_ms": 50})), norm(json!({"load_hard_timeout_ms": 50})));
    f.hand("load_soft_lt_hard", "soft < hard", sp(json!({"load_soft_timeout_ms": 49, "load_hard_timeout_ms": 50})), norm(json!({"load_soft_timeout_ms": 49, "load_hard_timeout_ms": 50})));
    for v in ["load", "serve_stale", "error"] {
        f.hand(&format!("on_lock_timeout_{v}"), "each on_lock_timeout value", sp(json!({"on_lock_timeout": v})), norm(json!({"on_lock_timeout": v})));
    }
    for v in ["load", "error"] {
        f.hand(&format!("on_store_error_{v}"), "each on_store_error value", sp(json!({"on_store_error": v})), norm(json!({"on_store_error": v})));
    }
    f.hand("normalized_roundtrip", "a normalized policy parses to itself", sp(norm(json!({}))["ok"].clone()), norm(json!({})));
    f.hand("max_value_bytes_1", "1 byte is the smallest value limit", sp(json!({"max_value_bytes": 1})), norm(json!({"max_value_bytes": 1})));
    f.hand("max_value_bytes_512mib", "512 MiB (Redis's largest string) is the largest", sp(json!({"max_value_bytes": 536870912u64})), norm(json!({"max_value_bytes": 536870912u64})));
    f.hand("max_value_bytes_zero", "a value limit of 0 would cache nothing", sp(json!({"max_value_bytes": 0})), perr("out_of_range", Some("max_value_bytes")));
    f.hand("max_value_bytes_over", "above 512 MiB is refused", sp(json!({"max_value_bytes": 536870913u64})), perr("out_of_range", Some("max_value_bytes")));
    // ---- zero
    f.hand("soft_zero", "soft_ttl must be > 0", sp(json!({"soft_ttl_ms": 0})), perr("zero", Some("soft_ttl_ms")));
    f.hand("lease_zero", "lease_ttl must be > 0", sp(json!({"lease_ttl_ms": 0})), perr("zero", Some("lease_ttl_ms")));
    f.hand("backoff_empty", "backoff needs at least one value", sp(json!({"lock_backoff_ms": []})), perr("zero", Some("lock_backoff_ms")));
    f.hand("backoff_has_zero", "backoff values must be > 0", sp(json!({"lock_backoff_ms": [5, 0, 10]})), perr("zero", Some("lock_backoff_ms")));
    f.hand("load_soft_zero", "soft load timeout must be > 0", sp(json!({"load_soft_timeout_ms": 0})), perr("zero", Some("load_soft_timeout_ms")));
    f.hand("load_hard_zero", "hard load timeout must be > 0", sp(json!({"load_hard_timeout_ms": 0})), perr("zero", Some("load_hard_timeout_ms")));
    // ---- too long
    f.hand("lease_ttl_1h", "a lease may last up to 1 hour", sp(json!({"lease_ttl_ms": 3_600_000})), norm(json!({"lease_ttl_ms": 3_600_000})));
    f.hand("lease_ttl_over_1h", "a longer lease would keep a dead holder's key uncached for that long", sp(json!({"lease_ttl_ms": 3_600_001})), perr("too_long", Some("lease_ttl_ms")));
    for field in ["soft_ttl_ms", "hard_ttl_ms", "negative_ttl_ms", "stale_if_error_ms", "lease_ttl_ms", "lock_wait_ms", "load_soft_timeout_ms", "load_hard_timeout_ms"] {
        let mut spec = json!({ field: MAX + 1 });
        if field == "hard_ttl_ms" {
            spec["soft_ttl_ms"] = json!(1);
        }
        f.hand(&format!("{field}_too_long"), "durations are capped at 2^40 ms", sp(spec), perr("too_long", Some(field)));
    }
    f.hand("backoff_too_long", "each backoff value is capped", sp(json!({"lock_backoff_ms": [1, MAX + 1]})), perr("too_long", Some("lock_backoff_ms")));
    f.hand("soft_u64_max", "u64::MAX is too long", tx("{\"soft_ttl_ms\":18446744073709551615}"), perr("too_long", Some("soft_ttl_ms")));
    // ---- ordering
    f.hand("hard_before_soft", "hard < soft refused", sp(json!({"soft_ttl_ms": 10, "hard_ttl_ms": 5})), perr("hard_before_soft", Some("hard_ttl_ms")));
    f.hand("hard_before_soft_by_one", "hard = soft - 1 refused", sp(json!({"soft_ttl_ms": 1000, "hard_ttl_ms": 999})), perr("hard_before_soft", Some("hard_ttl_ms")));
    f.hand("hard_zero", "hard 0 with default soft: hard < soft", sp(json!({"hard_ttl_ms": 0})), perr("hard_before_soft", Some("hard_ttl_ms")));
    f.hand("load_soft_eq_hard", "soft load timeout must be < hard", sp(json!({"load_soft_timeout_ms": 50, "load_hard_timeout_ms": 50})), perr("load_timeouts", Some("load_soft_timeout_ms")));
    f.hand("load_soft_gt_hard", "soft > hard refused", sp(json!({"load_soft_timeout_ms": 60, "load_hard_timeout_ms": 50})), perr("load_timeouts", Some("load_soft_timeout_ms")));
    // ---- ranges
    for (name, v) in [("jitter_one", json!(1.0)), ("jitter_negative", json!(-0.1)), ("jitter_big", json!(1.5))] {
        f.hand(name, "jitter is a fraction in [0, 1)", sp(json!({"jitter": v})), perr("out_of_range", Some("jitter")));
    }
    for (name, v) in [("early_refresh_negative", json!(-1.0)), ("early_refresh_over_100", json!(100.5))] {
        f.hand(name, "early_refresh in [0, 100]", sp(json!({"early_refresh": v})), perr("out_of_range", Some("early_refresh")));
    }
    // ---- first error wins (checks run in a fixed order)
    f.hand("order_soft_before_lease", "soft_ttl is checked before lease_ttl", sp(json!({"soft_ttl_ms": 0, "lease_ttl_ms": 0})), perr("zero", Some("soft_ttl_ms")));
    f.hand("order_hard_before_jitter", "hard<soft is checked before jitter", sp(json!({"soft_ttl_ms": 10, "hard_ttl_ms": 5, "jitter": 2})), perr("hard_before_soft", Some("hard_ttl_ms")));
    f.hand("order_jitter_before_backoff", "jitter before backoff", sp(json!({"jitter": 2, "lock_backoff_ms": []})), perr("out_of_range", Some("jitter")));
    f.hand("order_hard_too_long_before_order", "hard too long before hard<soft", sp(json!({"soft_ttl_ms": 10, "hard_ttl_ms": MAX + 1})), perr("too_long", Some("hard_ttl_ms")));
    // ---- JSON errors
    f.hand("unknown_field", "unknown fields are refused and named", sp(json!({"soft_ttl": 1})), perr("json", Some("soft_ttl")));
    f.hand("unknown_field_jitter_ppm", "jitter_ppm is internal, not a field", sp(json!({"jitter_ppm": 1})), perr("json", Some("jitter_ppm")));
    f.hand("duplicate_field", "duplicate fields are refused and named", tx("{\"soft_ttl_ms\":1,\"soft_ttl_ms\":2}"), perr("json", Some("soft_ttl_ms")));
    f.hand("negative_duration", "negative numbers are not durations", tx("{\"soft_ttl_ms\":-1}"), perr("json", Some("soft_ttl_ms")));
    f.hand("negative_fraction_duration", "-0.5 ms rounds (half away from zero) to -1: negative", tx("{\"soft_ttl_ms\":-0.5}"), perr("json", Some("soft_ttl_ms")));
    f.hand("string_duration", "no strings for durations at this level", sp(json!({"soft_ttl_ms": "5m"})), perr("json", Some("soft_ttl_ms")));
    f.hand("bool_duration", "a boolean is not a duration", sp(json!({"hard_ttl_ms": true})), perr("json", Some("hard_ttl_ms")));
    f.hand("bad_on_lock_timeout", "unknown enum value", sp(json!({"on_lock_timeout": "wait"})), perr("json", Some("on_lock_timeout")));
    f.hand("bad_on_store_error", "unknown enum value", sp(json!({"on_store_error": "serve_stale"})), perr("json", Some("on_store_error")));
    f.hand("enum_case", "enum values are snake_case exactly", sp(json!({"on_lock_timeout": "Load"})), perr("json", Some("on_lock_timeout")));
    f.hand("jitter_string", "jitter must be a number", sp(json!({"jitter": "0.1"})), perr("json", Some("jitter")));
    f.hand("jitter_huge_literal", "1e400 is not a finite double (not JSON a reader takes: no field)", tx("{\"jitter\":1e400}"), perr("json", None));
    f.hand("backoff_not_array", "backoff must be an array", sp(json!({"lock_backoff_ms": 5})), perr("json", Some("lock_backoff_ms")));
    f.hand("max_value_bytes_negative", "a size is a u64", tx("{\"max_value_bytes\":-1}"), perr("json", Some("max_value_bytes")));
    f.hand("max_value_bytes_2_64", "2^64 is beyond u64 (the reader holds it as a float)", tx("{\"max_value_bytes\":18446744073709551616}"), perr("json", Some("max_value_bytes")));
    f.hand("max_value_bytes_float", "a size is an integer: 1024.0 is not rounded like a duration", tx("{\"max_value_bytes\":1024.0}"), perr("json", Some("max_value_bytes")));
    f.hand("order_fields_not_members", "members are read in the field order, not the text's: soft_ttl_ms's error first", tx("{\"max_value_bytes\":-1,\"soft_ttl_ms\":\"x\"}"), perr("json", Some("soft_ttl_ms")));
    // ---- fractional durations: the one rounding rule of every host (policy::duration_ms)
    f.hand("fraction_duration", "1.5 ms rounds half away from zero to 2 ms, as from every host", tx("{\"soft_ttl_ms\":1.5}"), norm(json!({"soft_ttl_ms": 2, "hard_ttl_ms": 2})));
    f.hand("fraction_duration_whole", "1000.0 is 1000 ms", tx("{\"soft_ttl_ms\":1000.0}"), norm(json!({"soft_ttl_ms": 1000, "hard_ttl_ms": 1000})));
    f.hand("fraction_duration_exponent", "2.5e3 is 2500 ms", tx("{\"soft_ttl_ms\":2.5e3}"), norm(json!({"soft_ttl_ms": 2500, "hard_ttl_ms": 2500})));
    f.hand("fraction_duration_every_field", "every duration field rounds the same way (2.5 -> 3, 0.4 -> 0, 0.5 -> 1)",
        tx("{\"soft_ttl_ms\":2.5,\"hard_ttl_ms\":10.5,\"negative_ttl_ms\":0.4,\"stale_if_error_ms\":0.5,\"lease_ttl_ms\":1234.5,\"lock_wait_ms\":7.49,\"lock_backoff_ms\":[0.5,2.5],\"load_soft_timeout_ms\":1.5,\"load_hard_timeout_ms\":2.5}"),
        norm(json!({"soft_ttl_ms": 3, "hard_ttl_ms": 11, "negative_ttl_ms": 0, "stale_if_error_ms": 1, "lease_ttl_ms": 1235, "lock_wait_ms": 7,
            "lock_backoff_ms": [1, 3], "load_soft_timeout_ms": 2, "load_hard_timeout_ms": 3})));
    f.hand("fraction_duration_neg_zero", "-0.0 is 0 ms", tx("{\"lock_wait_ms\":-0.0}"), norm(json!({"lock_wait_ms": 0})));
    f.hand("fraction_duration_neg_zero_soft", "-0.0 is 0 ms, refused where 0 is", tx("{\"soft_ttl_ms\":-0.0}"), perr("zero", Some("soft_ttl_ms")));
    f.hand("fraction_duration_rounds_to_zero", "0.4 ms is 0 ms, refused where 0 is", tx("{\"lease_ttl_ms\":0.4}"), perr("zero", Some("lease_ttl_ms")));
    f.hand("fraction_duration_huge", "1e21 ms is too long (saturated, never wrapped)", tx("{\"stale_if_error_ms\":1e21}"), perr("too_long", Some("stale_if_error_ms")));
    f.hand("fraction_duration_over_max", "2^40 + 0.5 ms rounds to 2^40 + 1: too long", tx("{\"lock_wait_ms\":1099511627776.5}"), perr("too_long", Some("lock_wait_ms")));
    f.pending("not_object_array", "a policy is an object, not an array", tx("[]"), perr("json", None),
        "serde accepts a JSON array as a positional PolicySpec (serde_json visits structs from sequences), so `[]` is the default policy");
    f.pending("not_object_positional", "a positional array must not set soft_ttl_ms", tx("[1000]"), perr("json", None),
        "serde accepts a JSON array as a positional PolicySpec: `[1000]` is soft_ttl_ms 1000");
    f.hand("not_object_null", "null is not a policy", tx("null"), perr("json", None));
    f.hand("not_json", "not JSON at all", tx("soft_ttl_ms=1"), perr("json", None));
    f.hand("trailing_garbage", "trailing characters", tx("{} {}"), perr("json", None));
    f.hand("empty_text", "empty text", tx(""), perr("json", None));
    f
}

// ================================================================================================
// freshness

fn fin(now: u64, soft: u64, hard: u64, sie: u64) -> Value {
    json!({ "op": "freshness", "now": now, "soft_at": soft, "hard_at": hard, "stale_if_error_ms": sie })
}

pub fn freshness() -> File {
    let mut f = File::new(
        "freshness",
        "Freshness windows, the read decision with XFetch, jitter reduction and jittered TTLs.",
    );
    // ---- windows, exactly at and around every boundary
    let (s, h, e) = (1_000u64, 2_000u64, 500u64);
    for (now, want) in [
        (0, "fresh"), (999, "fresh"), (1000, "stale"), (1001, "stale"), (1999, "stale"),
        (2000, "usable_on_error"), (2001, "usable_on_error"), (2499, "usable_on_error"),
        (2500, "gone"), (2501, "gone"), (u64::MAX, "gone"),
    ] {
        f.hand(&format!("window_{now}"), "soft=1000 hard=2000 sie=500: [.., soft) fresh, [soft, hard) stale, [hard, hard+sie) usable on error", fin(now, s, h, e), okv(want));
    }
    f.hand("no_sie_at_hard", "sie 0: hard_at is gone", fin(2000, s, h, 0), okv("gone"));
    f.hand("no_sie_before_hard", "sie 0: just before hard is stale", fin(1999, s, h, 0), okv("stale"));
    f.hand("soft_eq_hard_at", "no stale window: soft_at == hard_at is usable on error", fin(1000, 1000, 1000, 10), okv("usable_on_error"));
    f.hand("soft_eq_hard_before", "no stale window: fresh before", fin(999, 1000, 1000, 10), okv("fresh"));
    f.hand("soft_eq_hard_gone", "no stale window, no sie: gone at soft_at", fin(1000, 1000, 1000, 0), okv("gone"));
    f.hand("zero_entry", "all-zero windows at now 0: gone", fin(0, 0, 0, 0), okv("gone"));
    f.hand("sie_saturates", "hard + sie saturates at u64::MAX", json!({"op": "freshness", "now": "18446744073709551614", "soft_at": 0, "hard_at": 10, "stale_if_error_ms": "18446744073709551615"}), okv("usable_on_error"));
    f.hand("sie_saturates_max_now", "now = u64::MAX is never < the saturated limit", json!({"op": "freshness", "now": "18446744073709551615", "soft_at": 0, "hard_at": 10, "stale_if_error_ms": "18446744073709551615"}), okv("gone"));
    let t = 1_700_000_000_000u64;
    f.hand("realistic_fresh", "epoch-ms timestamps", fin(t, t + 60_000, t + 120_000, 0), okv("fresh"));
    f.hand("realistic_stale", "epoch-ms timestamps", fin(t + 60_000, t + 60_000, t + 120_000, 0), okv("stale"));

    // ---- decide (freshness + XFetch)
    let pol = |beta: f64, sie: u64| json!({ "soft_ttl_ms": 1000, "hard_ttl_ms": 2000, "stale_if_error_ms": sie, "early_refresh": beta });
    let dec = |now: u64, load: u64, beta: f64, rand: &str| {
        json!({ "op": "decide", "now": now, "soft_at": 10_000, "hard_at": 11_000, "load_ms": load, "policy": pol(beta, 500), "rand": rand })
    };
    const R0: &str = "0"; // u = 2^-53: ln u = -36.7368005696771, the earliest possible refresh
    const RMAX: &str = "18446744073709551615"; // u = 1: ln u = 0, never early
    const RHALF: &str = "9223372036854775807"; // u = 0.5: ln u = -0.6931471805599453
    // β=1, load=100, rand=0: gap = 3673.68 → refresh iff now >= 10000 - 3673.68, i.e. now >= 6327.
    f.hand("xf_r0_edge_in", "rand 0 (u=2^-53): gap 3673.68 ms, now 6327 refreshes", dec(6327, 100, 1.0, R0), okv("refresh_early"));
    f.hand("xf_r0_edge_out", "rand 0: now 6326 is just too early", dec(6326, 100, 1.0, R0), okv("fresh"));
    // u=0.5: gap 69.31 → now >= 9930.69 → 9931 refreshes, 9930 not.
    f.hand("xf_half_edge_in", "u=0.5: gap 69.31 ms, now 9931 refreshes", dec(9931, 100, 1.0, RHALF), okv("refresh_early"));
    f.hand("xf_half_edge_out", "u=0.5: now 9930 does not", dec(9930, 100, 1.0, RHALF), okv("fresh"));
    f.hand("xf_rmax_never", "u=1: gap 0, never early", dec(9999, 100, 1.0, RMAX), okv("fresh"));
    f.hand("xf_beta_zero", "β=0 turns XFetch off", dec(9999, 100, 0.0, R0), okv("fresh"));
    f.hand("xf_load_zero", "load_ms=0 turns XFetch off", dec(9999, 0, 1.0, R0), okv("fresh"));
    f.hand("xf_beta_2", "β=2 doubles the gap: 138.63 ms at u=0.5", dec(9862, 100, 2.0, RHALF), okv("refresh_early"));
    f.hand("xf_beta_2_out", "β=2: now 9861 too early", dec(9861, 100, 2.0, RHALF), okv("fresh"));
    f.hand("xf_beta_half", "β=0.5: gap 34.66 at u=0.5", dec(9966, 100, 0.5, RHALF), okv("refresh_early"));
    f.hand("xf_beta_half_out", "β=0.5: now 9965 too early", dec(9965, 100, 0.5, RHALF), okv("fresh"));
    f.hand("xf_at_soft_is_stale", "at soft_at the entry is stale, not early", dec(10_000, 100, 1.0, R0), okv("stale"));
    f.hand("xf_usable_on_error", "past hard: usable on error", dec(11_000, 100, 1.0, R0), okv("usable_on_error"));
    f.hand("xf_gone", "past hard + sie: gone", dec(11_500, 100, 1.0, R0), okv("gone"));
    f.hand("xf_beta_100_far", "β=100, load 1000, rand 0: gap 3.67e6 ms reaches back to now 0", dec(0, 1000, 100.0, R0), okv("refresh_early"));
    // Spread of rand values near one threshold: computed by the core (libm::log), bit-exact.
    for (i, r) in ["1", "2048", "4096", "1311768467463790320", "6148914691236517205", "12297829382473034410", "16045690984833335023", "18446744073709549568"].iter().enumerate() {
        for now in [9_000u64, 9_900, 9_990] {
            f.add(&format!("xf_spread_{i}_{now}"), "XFetch with assorted 64-bit rand values (u from the top 53 bits, libm ln)", dec(now, 250, 1.0, r));
        }
    }
    // xfetch directly.
    let xf = |now: u64, soft: u64, load: u64, beta: f64, rand: &str| {
        json!({ "op": "xfetch", "now": now, "soft_at": soft, "load_ms": load, "beta": beta, "rand": rand })
    };
    f.hand("xfetch_fn_true", "xfetch(): early", xf(6327, 10_000, 100, 1.0, R0), okv(true));
    f.hand("xfetch_fn_false", "xfetch(): not yet", xf(6326, 10_000, 100, 1.0, R0), okv(false));
    f.hand("xfetch_fn_past_soft", "xfetch() is false at or past soft_at", xf(10_000, 10_000, 100, 1.0, R0), okv(false));
    f.hand("xfetch_fn_beta_negative", "β <= 0 is off", xf(9_999, 10_000, 100, -1.0, R0), okv(false));
    // 2^11 - 1 and 2^11 differ in the 53-bit draw only above bit 11.
    f.hand("xfetch_low_bits_ignored", "the low 11 bits of rand do not matter: rand 2047 = rand 0", xf(6327, 10_000, 100, 1.0, "2047"), okv(true));
    f.hand("xfetch_low_bits_ignored_out", "rand 2047 at 6326", xf(6326, 10_000, 100, 1.0, "2047"), okv(false));

    // ---- jitter_reduction: floor(ttl * ppm * (rand >> 32) / (1e6 * 2^32))
    let jr = |ttl: u64, ppm: u64, rand: &str| json!({ "op": "jitter_reduction", "ttl_ms": ttl, "jitter_ppm": ppm, "rand": rand });
    f.hand("jr_rand_zero", "rand 0: no reduction", jr(10_000, 200_000, "0"), okv(0));
    f.hand("jr_ppm_zero", "jitter 0: no reduction", jr(10_000, 0, RMAX), okv(0));
    f.hand("jr_ttl_zero", "ttl 0: nothing to cut", jr(0, 999_999, RMAX), okv(0));
    // rand>>32 = 2^32-1: 10000*200000*(2^32-1)/(1e6*2^32) = 1999.9999995 → 1999
    f.hand("jr_rand_max", "rand max: just under ttl*jitter", jr(10_000, 200_000, RMAX), okv(1999));
    // rand = 2^63 → r = 2^31 → exactly half: 10000*0.2*0.5 = 1000
    f.hand("jr_rand_half", "rand 2^63: half of ttl*jitter", jr(10_000, 200_000, "9223372036854775808"), okv(1000));
    f.hand("jr_low_32_ignored", "the low 32 bits of rand do not matter", jr(10_000, 200_000, "4294967295"), okv(0));
    f.hand("jr_r_one", "r = 1 (rand 2^32): 10000*0.2/2^32 rounds down to 0", jr(10_000, 200_000, "4294967296"), okv(0));
    // ppm max, rand max, ttl 2^40: 2^40*999999*(2^32-1)/(1e6*2^32)
    f.hand("jr_max_everything", "ttl 2^40, ppm 999999, rand max: stays below ttl", jr(1 << 40, 999_999, RMAX), okv(((1u128 << 40) * 999_999 * 4_294_967_295 / (1_000_000u128 << 32)) as u64));
    f.hand("jr_ttl_1", "ttl 1 never loses its last ms", jr(1, 999_999, RMAX), okv(0));
    f.hand("jr_quarter", "rand 2^62: a quarter", jr(1_000, 400_000, "4611686018427387904"), okv(100));
    for (i, r) in ["123456789", "9876543210987654321", "3000000000000000000", "15000000000000000000"].iter().enumerate() {
        f.add(&format!("jr_assorted_{i}"), "assorted rand values (u128 integer arithmetic)", jr(60_000, 100_000, r));
    }
    // ---- jittered_ttls: both TTLs cut by the same amount; jitter → ppm by rounding
    let jt = |spec: Value, rand: &str| json!({ "op": "jittered_ttls", "policy": spec, "rand": rand });
    let sp = json!({"soft_ttl_ms": 10_000, "hard_ttl_ms": 20_000, "jitter": 0.2});
    f.hand("jt_rand_zero", "no cut", jt(sp.clone(), "0"), okv(json!({"jitter_ppm": 200_000, "soft_ttl_ms": 10_000, "hard_ttl_ms": 20_000})));
    f.hand("jt_rand_max", "max cut 1999 from both", jt(sp.clone(), RMAX), okv(json!({"jitter_ppm": 200_000, "soft_ttl_ms": 8_001, "hard_ttl_ms": 18_001})));
    f.hand("jt_rand_half", "cut 1000 from both: the stale window keeps its length", jt(sp.clone(), "9223372036854775808"), okv(json!({"jitter_ppm": 200_000, "soft_ttl_ms": 9_000, "hard_ttl_ms": 19_000})));
    f.hand("jt_no_jitter", "jitter 0", jt(json!({"soft_ttl_ms": 10_000}), RMAX), okv(json!({"jitter_ppm": 0, "soft_ttl_ms": 10_000, "hard_ttl_ms": 10_000})));
    f.hand("jt_ppm_round_half_up", "jitter 5e-7 rounds to 1 ppm", jt(json!({"soft_ttl_ms": 1_000_000_000, "jitter": 0.0000005}), RMAX), okv(json!({"jitter_ppm": 1, "soft_ttl_ms": 999_999_001, "hard_ttl_ms": 999_999_001})));
    f.hand("jt_ppm_round_down", "jitter 4e-7 rounds to 0 ppm", jt(json!({"soft_ttl_ms": 1_000_000_000, "jitter": 0.0000004}), RMAX), okv(json!({"jitter_ppm": 0, "soft_ttl_ms": 1_000_000_000, "hard_ttl_ms": 1_000_000_000})));
    f.hand("jt_ppm_capped", "jitter 0.9999999 rounds to 1e6 ppm, capped at 999999", jt(json!({"soft_ttl_ms": 1_000_000, "jitter": 0.9999999}), RMAX), okv(json!({"jitter_ppm": 999_999, "soft_ttl_ms": 2, "hard_ttl_ms": 2})));
    f.hand("jt_point_one", "0.1 → 100000 ppm exactly", jt(json!({"soft_ttl_ms": 60_000, "hard_ttl_ms": 60_000, "jitter": 0.1}), RMAX), okv(json!({"jitter_ppm": 100_000, "soft_ttl_ms": 54_001, "hard_ttl_ms": 54_001})));
    f.hand("jt_cut_from_soft", "the cut is computed from soft_ttl, applied to both", jt(json!({"soft_ttl_ms": 100, "hard_ttl_ms": 1_000_000, "jitter": 0.5}), RMAX), okv(json!({"jitter_ppm": 500_000, "soft_ttl_ms": 51, "hard_ttl_ms": 999_951})));
    for (i, r) in ["1", "77777777777777777", "5555555555555555555", "18000000000000000000"].iter().enumerate() {
        f.add(&format!("jt_assorted_{i}"), "assorted rand values", jt(json!({"soft_ttl_ms": 30_000, "hard_ttl_ms": 90_000, "jitter": 0.15}), r));
    }
    f
}

// ================================================================================================
// entry

fn entry_json(e: &Entry) -> Value {
    serde_json::to_value(e).unwrap()
}

pub fn entry() -> File {
    let mut f = File::new("entry", "Entry JSON form ↔ encoded bytes (hex); corrupt bytes → decode error (a miss).");
    let base = Entry {
        value: b"{\"name\":\"ada\"}".to_vec(),
        codec: 1,
        version: None,
        generations: vec![],
        soft_at: 1_700_000_060_000,
        hard_at: 1_700_000_120_000,
        load_ms: 42,
        negative: false,
        tags: vec![],
    };
    let mut entries: Vec<(&str, &str, Entry)> = vec![
        ("minimal", "all defaults: 32 bytes", Entry::default()),
        ("json_value", "a JSON value, no version", base.clone()),
        ("versioned", "has_version flag + 8-byte version", Entry { version: Some(7), ..base.clone() }),
        ("version_zero", "version 0 is present (flag set)", Entry { version: Some(0), ..base.clone() }),
        ("version_max", "u64::MAX version (a string in JSON)", Entry { version: Some(u64::MAX), ..base.clone() }),
        ("negative_empty", "negative flag, empty value", Entry { negative: true, value: vec![], soft_at: 5, hard_at: 5, ..Default::default() }),
        ("negative_with_value", "a negative entry may carry bytes", Entry { negative: true, value: b"404".to_vec(), ..base.clone() }),
        ("negative_versioned", "both flags", Entry { negative: true, version: Some(3), ..base.clone() }),
        ("raw_codec", "codec 0, binary value with every byte class", Entry { codec: 0, value: vec![0, 1, 0x7f, 0x80, 0xfe, 0xff], ..base.clone() }),
        ("user_codec", "codec 200 round-trips uninterpreted", Entry { codec: 200, ..base.clone() }),
        ("generations", "namespace + tag generations", Entry { generations: vec![1, 9_007_199_254_740_991], ..base.clone() }),
        ("tags", "tags with UTF-8", Entry { tags: vec!["red".into(), "".into(), "café☕".into()], generations: vec![3, 4, 5, 6], ..base.clone() }),
        ("value_127", "value length 127: 1-byte varint", Entry { value: vec![b'x'; 127], ..base.clone() }),
        ("value_128", "value length 128: 2-byte varint 80 01", Entry { value: vec![b'y'; 128], ..base.clone() }),
        ("value_300", "value length 300: varint ac 02", Entry { value: vec![b'z'; 300], ..base.clone() }),
        ("tag_1024", "a tag of the maximum 1024 bytes", Entry { tags: vec!["t".repeat(1024)], ..base.clone() }),
        ("soft_eq_hard", "hard_at == soft_at is consistent", Entry { soft_at: 9, hard_at: 9, ..base.clone() }),
        ("big_times", "times near 2^53", Entry { soft_at: 9_007_199_254_740_990, hard_at: 9_007_199_254_740_991, load_ms: 9_007_199_254_740_991, ..base.clone() }),
        ("hard_before_soft", "encodes, but decodes to an inconsistency error (a miss)", Entry { soft_at: 10, hard_at: 9, ..base.clone() }),
    ];
    let many_tags = Entry {
        tags: (0..130).map(|i| format!("t{i}")).collect(),
        generations: (0..131).collect(),
        ..base.clone()
    };
    entries.push(("many_tags", "130 tags: 2-byte tag count varint 82 01", many_tags));
    for (name, why, e) in &entries {
        let hexs = hex::encode(&e.encode());
        f.hand(&format!("encode_{name}"), why, json!({ "op": "encode", "entry": entry_json(e) }), okv(hexs.clone()));
        let want = match e.validate() {
            Ok(()) => okv(entry_json(e)),
            Err(err) => errv(crate::eval::decode_error(&err)),
        };
        f.hand(&format!("decode_{name}"), why, json!({ "op": "decode", "hex": hexs }), want);
    }
    // A worked example, byte by byte (matches docs/entry-format.md's conventions).
    let ex = Entry { value: b"1".to_vec(), codec: 1, version: Some(2), generations: vec![5], soft_at: 256, hard_at: 512, load_ms: 3, negative: true, tags: vec!["a".into()] };
    let ex_hex = concat!(
        "4b43", "01", "03", "01",
        "0001000000000000", "0002000000000000", "0300000000000000",
        "0200000000000000",
        "01", "0500000000000000",
        "01", "01", "61",
        "01", "31"
    );
    f.hand("encode_worked_example", "hand-assembled bytes: magic, format 1, flags 3, codec 1, times LE, version, 1 gen, 1 tag 'a', value '1'", json!({"op": "encode", "entry": entry_json(&ex)}), okv(ex_hex));
    f.hand("decode_uppercase_hex", "hex input in either case", json!({"op": "decode", "hex": ex_hex.to_uppercase()}), okv(entry_json(&ex)));

    // ---- corrupt bytes
    let good = base.encode();
    let gh = hex::encode(&good);
    let dec = |h: String| json!({ "op": "decode", "hex": h });
    let e = |v: Value| errv(v);
    f.hand("corrupt_empty", "no bytes", dec(String::new()), e(json!({"kind": "too_short"})));
    f.hand("corrupt_two_bytes", "magic only", dec("4b43".into()), e(json!({"kind": "too_short"})));
    f.hand("corrupt_bad_magic", "not KC", dec(format!("4b44{}", &gh[4..])), e(json!({"kind": "bad_magic"})));
    f.hand("corrupt_json_text", "a JSON string stored by someone else", dec(hex::encode(b"{\"a\":1}")), e(json!({"kind": "bad_magic"})));
    f.hand("corrupt_one_byte_bad_magic", "one byte, magic wrong: too short wins (3 bytes needed)", dec("00".into()), e(json!({"kind": "too_short"})));
    f.hand("corrupt_format_0", "format 0", dec(format!("4b4300{}", &gh[6..])), e(json!({"kind": "unsupported_format", "format": 0})));
    f.hand("corrupt_format_2", "a future format is a miss, not a misread", dec(format!("4b4302{}", &gh[6..])), e(json!({"kind": "unsupported_format", "format": 2})));
    f.hand("corrupt_format_only", "magic + format 1, header missing", dec("4b4301".into()), e(json!({"kind": "too_short"})));
    f.hand("corrupt_header_28", "header one byte short", dec(gh[..56].to_string()), e(json!({"kind": "too_short"})));
    f.hand("corrupt_unknown_flag", "flag bit 2 set", dec(format!("4b430104{}", &gh[8..])), e(json!({"kind": "unknown_flags", "flags": 4})));
    f.hand("corrupt_flag_high", "flag bit 7 set", dec(format!("4b430180{}", &gh[8..])), e(json!({"kind": "unknown_flags", "flags": 128})));
    f.hand("corrupt_hard_before_soft", "hard_at < soft_at in the header", dec(hex::encode(&Entry { soft_at: 2, hard_at: 1, ..Default::default() }.encode())), e(json!({"kind": "inconsistent", "reason": "hard_at < soft_at"})));
    f.hand("corrupt_version_truncated", "has_version set but only 4 version bytes", dec(format!("{}{}", hex::encode(&Entry { version: Some(1), ..Default::default() }.encode()[..29]), "01000000")), e(json!({"kind": "truncated", "field": "version"})));
    f.hand("corrupt_header_only", "ends after the header", dec(gh[..58].to_string()), e(json!({"kind": "truncated", "field": "generations"})));
    f.hand("corrupt_gen_truncated", "1 generation announced, 3 bytes given", dec(format!("{}01aabbcc", &gh[..58])), e(json!({"kind": "truncated", "field": "generations"})));
    f.hand("corrupt_gen_count_too_large", "258 generations", dec(format!("{}8202", &gh[..58])), e(json!({"kind": "too_large", "field": "generations", "found": 258, "max": 257})));
    f.hand("corrupt_gen_varint_nonminimal", "count 0 written as 80 00", dec(format!("{}8000000000", &gh[..58])), e(json!({"kind": "invalid_varint", "field": "generations"})));
    f.hand("corrupt_gen_varint_overflow", "a varint longer than 10 bytes", dec(format!("{}ffffffffffffffffffff7f", &gh[..58])), e(json!({"kind": "invalid_varint", "field": "generations"})));
    f.hand("corrupt_gen_varint_unterminated", "a varint cut off", dec(format!("{}80", &gh[..58])), e(json!({"kind": "truncated", "field": "generations"})));
    f.hand("corrupt_tags_missing", "ends before the tag count", dec(format!("{}00", &gh[..58])), e(json!({"kind": "truncated", "field": "tags"})));
    f.hand("corrupt_tag_count_too_large", "257 tags", dec(format!("{}008102", &gh[..58])), e(json!({"kind": "too_large", "field": "tags", "found": 257, "max": 256})));
    f.hand("corrupt_tag_len_too_large", "a 1025-byte tag", dec(format!("{}00018108", &gh[..58])), e(json!({"kind": "too_large", "field": "tag", "found": 1025, "max": 1024})));
    f.hand("corrupt_tag_truncated", "tag length 5, 2 bytes", dec(format!("{}0001056162", &gh[..58])), e(json!({"kind": "truncated", "field": "tag"})));
    f.hand("corrupt_tag_utf8", "tag bytes ff fe", dec(format!("{}000102fffe00", &gh[..58])), e(json!({"kind": "invalid_utf8"})));
    f.hand("corrupt_tag_overlong_utf8", "overlong UTF-8 c0 80 is invalid", dec(format!("{}000102c08000", &gh[..58])), e(json!({"kind": "invalid_utf8"})));
    f.hand("corrupt_value_missing", "ends before the value length", dec(format!("{}0000", &gh[..58])), e(json!({"kind": "truncated", "field": "value"})));
    f.hand("corrupt_value_truncated", "value truncated by one byte", dec(gh[..gh.len() - 2].to_string()), e(json!({"kind": "truncated", "field": "value"})));
    f.hand("corrupt_value_len_huge", "value length 2^63 (forged, no allocation)", dec(format!("{}000080808080808080808001", &gh[..58])), e(json!({"kind": "truncated", "field": "value"})));
    f.hand("corrupt_trailing_1", "one trailing byte", dec(format!("{gh}00")), e(json!({"kind": "trailing_bytes", "count": 1})));
    f.hand("corrupt_trailing_3", "three trailing bytes", dec(format!("{gh}abcdef")), e(json!({"kind": "trailing_bytes", "count": 3})));
    f.hand("corrupt_two_entries", "two entries back to back", dec(format!("{gh}{gh}")), e(json!({"kind": "trailing_bytes", "count": good.len()})));
    f
}

// ================================================================================================
// store

fn read(key: &str, lease: &str, ttl: u64) -> Value {
    json!({ "op": "read", "key": key, "gen_keys": [], "lease": lease, "lease_ttl_ms": ttl })
}
fn read_g(key: &str, gk: &[&str], lease: &str, ttl: u64) -> Value {
    json!({ "op": "read", "key": key, "gen_keys": gk, "lease": lease, "lease_ttl_ms": ttl })
}

/// A fill of an entry with value `v`, fresh for 1000 and servable for 2000 after `t`.
fn fill(key: &str, v: &str, t: u64, version: Option<u64>, token: Option<u64>) -> Value {
    fill_g(key, v, t, version, token, &[], None)
}

fn fill_g(key: &str, v: &str, t: u64, version: Option<u64>, token: Option<u64>, gk: &[&str], gens: Option<Vec<u64>>) -> Value {
    let e = Entry { value: v.as_bytes().to_vec(), codec: 1, version, generations: gens.clone().unwrap_or_default(), soft_at: t + 1000, hard_at: t + 2000, load_ms: 5, negative: false, tags: vec![] };
    json!({
        "op": "fill", "key": key, "entry": hex::encode(&e.encode()), "soft_at": t + 1000, "hard_at": t + 2000,
        "expire_at": t + 2000, "version": version, "generations": gens, "gen_keys": gk, "token": token
    })
}

/// [`fill`] with its own `expire_at`.
fn fill_x(key: &str, v: &str, t: u64, version: Option<u64>, expire_at: u64) -> Value {
    let mut op = fill(key, v, t, version, None);
    op["expire_at"] = json!(expire_at);
    op
}

fn entry_hex(v: &str, t: u64, version: Option<u64>, gens: Vec<u64>) -> String {
    let e = Entry { value: v.as_bytes().to_vec(), codec: 1, version, generations: gens, soft_at: t + 1000, hard_at: t + 2000, load_ms: 5, negative: false, tags: vec![] };
    hex::encode(&e.encode())
}

fn inval(key: &str, mode: &str) -> Value {
    json!({ "op": "invalidate", "key": key, "mode": mode })
}
fn release(key: &str, token: u64) -> Value {
    json!({ "op": "release", "key": key, "token": token })
}
fn extend(key: &str, token: u64, ttl: u64) -> Value {
    json!({ "op": "extend", "key": key, "token": token, "lease_ttl_ms": ttl })
}
fn bump(gk: &str, v: u64) -> Value {
    json!({ "op": "bump", "gen_key": gk, "value": v })
}

fn rr(now: u64, entry: Option<String>, marked: bool, gens: Vec<u64>, lease: Value) -> Value {
    let mut r = json!({ "reply": "read", "now_ms": now, "entry": entry, "marked_stale": marked, "generations": gens });
    for (k, v) in lease.as_object().unwrap() {
        r[k] = v.clone();
    }
    r
}
fn granted(t: u64) -> Value {
    json!({ "lease": "granted", "token": t })
}
fn held(until: u64) -> Value {
    json!({ "lease": "held", "until_ms": until })
}
fn notreq() -> Value {
    json!({ "lease": "not_requested" })
}
fn stored() -> Value {
    json!({ "reply": "stored" })
}
fn rejected(r: &str) -> Value {
    json!({ "reply": "rejected", "reason": r })
}
fn lease_ok(ok: bool) -> Value {
    json!({ "reply": "lease", "ok": ok })
}
fn invalidated(existed: bool) -> Value {
    json!({ "reply": "invalidated", "existed": existed })
}
fn bumped(g: u64) -> Value {
    json!({ "reply": "bumped", "generation": g })
}

/// A store case: `(now, op, expected reply)` triples.
fn sc(f: &mut File, name: &str, why: &str, steps: Vec<(u64, Value, Value)>) {
    let ops: Vec<Value> = steps.iter().map(|(n, op, _)| json!({ "now": n, "op": op })).collect();
    let replies: Vec<Value> = steps.into_iter().map(|(_, _, r)| r).collect();
    f.hand(name, why, json!({ "ops": ops }), json!({ "replies": replies }));
}

pub fn store() -> File {
    let mut f = File::new("store", "Sequences of (now, StoreOp) → StoreReply against a fresh store (memory store; Redis runs the same file).");
    let k = "n:k";
    let e1 = |t| Some(entry_hex("v1", t, None, vec![]));
    sc(&mut f, "read_miss_no_lease", "plain read of a missing key", vec![(100, read(k, "none", 0), rr(100, None, false, vec![], notreq()))]);
    sc(&mut f, "read_miss_grants_lease", "if_needed on a miss grants the lease under a token the store issues (the memory store counts from 1; Redis runners map its tokens onto these)", vec![(100, read(k, "if_needed", 500), rr(100, None, false, vec![], granted(1)))]);
    sc(&mut f, "tokens_never_repeat", "C2: every grant gets a new token, also after the lease before it was revoked, released or consumed: no holder can ever share a revoked holder's token", vec![
        (100, read(k, "if_needed", 500), rr(100, None, false, vec![], granted(1))),
        (100, inval(k, "delete"), invalidated(false)),
        (100, read(k, "if_needed", 500), rr(100, None, false, vec![], granted(2))),
        (100, fill(k, "old", 100, None, Some(1)), rejected("lease_lost")),
        (100, release(k, 2), lease_ok(true)),
        (100, read(k, "if_needed", 500), rr(100, None, false, vec![], granted(3))),
        (100, fill(k, "v1", 100, None, Some(3)), stored()),
        (1100, read(k, "if_needed", 500), rr(1100, e1(100), false, vec![], granted(4))),
        (1100, fill(k, "v1", 1100, None, Some(2)), rejected("lease_lost")),
    ]);
    sc(&mut f, "lease_held_by_other", "a second reader sees the lease held until grant + ttl", vec![
        (100, read(k, "if_needed", 500), rr(100, None, false, vec![], granted(1))),
        (150, read(k, "if_needed", 500), rr(150, None, false, vec![], held(600))),
    ]);
    sc(&mut f, "lease_held_until_edge", "L3: the lease is live at until-1 ...", vec![
        (100, read(k, "if_needed", 500), rr(100, None, false, vec![], granted(1))),
        (599, read(k, "if_needed", 500), rr(599, None, false, vec![], held(600))),
    ]);
    sc(&mut f, "lease_takeover_at_expiry", "L3: ... and taken over at exactly grant + ttl", vec![
        (100, read(k, "if_needed", 500), rr(100, None, false, vec![], granted(1))),
        (600, read(k, "if_needed", 500), rr(600, None, false, vec![], granted(2))),
    ]);
    sc(&mut f, "takeover_then_old_fill_rejected", "C2/L3: the crashed holder's late fill is refused after takeover", vec![
        (100, read(k, "if_needed", 500), rr(100, None, false, vec![], granted(1))),
        (700, read(k, "if_needed", 500), rr(700, None, false, vec![], granted(2))),
        (710, fill(k, "old", 710, None, Some(1)), rejected("lease_lost")),
        (720, fill(k, "new", 720, None, Some(2)), stored()),
    ]);
    sc(&mut f, "fill_with_lease_then_fresh", "lease → fill → a fresh read needs no lease", vec![
        (100, read(k, "if_needed", 500), rr(100, None, false, vec![], granted(1))),
        (200, fill(k, "v1", 200, None, Some(1)), stored()),
        (300, read(k, "if_needed", 500), rr(300, e1(200), false, vec![], notreq())),
    ]);
    sc(&mut f, "fill_consumes_lease", "after a fill the lease is gone: a stale read can lease again", vec![
        (100, read(k, "if_needed", 500), rr(100, None, false, vec![], granted(1))),
        (200, fill(k, "v1", 200, None, Some(1)), stored()),
        (1200, read(k, "if_needed", 500), rr(1200, e1(200), false, vec![], granted(2))),
    ]);
    sc(&mut f, "stale_read_grants", "a stale entry (soft_at <= now) grants the lease", vec![
        (0, fill(k, "v1", 0, None, None), stored()),
        (1000, read(k, "if_needed", 500), rr(1000, e1(0), false, vec![], granted(1))),
    ]);
    sc(&mut f, "fresh_read_just_before_soft", "now = soft_at - 1: fresh, no lease", vec![
        (0, fill(k, "v1", 0, None, None), stored()),
        (999, read(k, "if_needed", 500), rr(999, e1(0), false, vec![], notreq())),
    ]);
    sc(&mut f, "force_on_fresh", "force grants a lease on a fresh entry (XFetch)", vec![
        (0, fill(k, "v1", 0, None, None), stored()),
        (500, read(k, "force", 500), rr(500, e1(0), false, vec![], granted(1))),
        (501, read(k, "force", 500), rr(501, e1(0), false, vec![], held(1000))),
    ]);
    sc(&mut f, "none_never_leases", "lease none on a miss grants nothing and leaves no lease", vec![
        (100, read(k, "none", 500), rr(100, None, false, vec![], notreq())),
        (101, read(k, "if_needed", 500), rr(101, None, false, vec![], granted(1))),
    ]);
    sc(&mut f, "expired_entry_gone", "at expire_at the entry is physically gone", vec![
        (0, fill(k, "v1", 0, None, None), stored()),
        (1999, read(k, "none", 0), rr(1999, e1(0), false, vec![], notreq())),
        (2000, read(k, "none", 0), rr(2000, None, false, vec![], notreq())),
    ]);
    sc(&mut f, "fill_revoked_by_invalidate", "C2: invalidate revokes the lease; the reader's fill is refused (seed 003 race)", vec![
        (100, read(k, "if_needed", 500), rr(100, None, false, vec![], granted(1))),
        (150, inval(k, "delete"), invalidated(false)),
        (200, fill(k, "old", 200, None, Some(1)), rejected("lease_lost")),
        (210, read(k, "none", 0), rr(210, None, false, vec![], notreq())),
    ]);
    sc(&mut f, "fill_revoked_by_set", "C2: an authoritative write (no token) revokes the lease", vec![
        (100, read(k, "if_needed", 500), rr(100, None, false, vec![], granted(1))),
        (150, fill(k, "v1", 150, None, None), stored()),
        (200, fill(k, "old", 200, None, Some(1)), rejected("lease_lost")),
        (210, read(k, "none", 0), rr(210, e1(150), false, vec![], notreq())),
    ]);
    sc(&mut f, "fill_token_without_lease", "a fill with a token that never held the lease is refused", vec![
        (100, fill(k, "v1", 100, None, Some(99)), rejected("lease_lost")),
    ]);
    sc(&mut f, "fill_wrong_token", "a fill with another token is refused", vec![
        (100, read(k, "if_needed", 500), rr(100, None, false, vec![], granted(1))),
        (120, fill(k, "v1", 120, None, Some(12)), rejected("lease_lost")),
        (130, fill(k, "v1", 130, None, Some(1)), stored()),
    ]);
    sc(&mut f, "fill_after_own_lease_expired_on_miss", "the lease on a miss expired and nobody took over: the late fill is refused", vec![
        (100, read(k, "if_needed", 500), rr(100, None, false, vec![], granted(1))),
        (600, fill(k, "v1", 600, None, Some(1)), rejected("lease_lost")),
    ]);
    f.pending(
        "fill_after_own_lease_expired_on_stale",
        "the lease on a stale entry expired and nobody took over: the late fill must be refused like on a miss (and like Redis, where the lease key has expired)",
        json!({ "ops": [
            { "now": 0, "op": fill(k, "v1", 0, None, None) },
            { "now": 1000, "op": read(k, "if_needed", 500) },
            { "now": 1600, "op": fill(k, "v2", 1600, None, Some(1)) },
        ]}),
        json!({ "replies": [stored(), rr(1000, e1(0), false, vec![], granted(1)), rejected("lease_lost")] }),
        "memory store Fill compares the token with the slot's lease without checking it is live (uses `s.lease`, not `live_lease(now)`), so an expired lease still fills when the slot survived",
    );
    sc(&mut f, "fill_after_own_lease_expired_on_marked_stale", "the lease on a marked-stale entry expired: the late fill is refused, the entry stays marked and the next reader gets a new lease", vec![
        (0, fill(k, "v1", 0, None, None), stored()),
        (100, inval(k, "mark_stale"), invalidated(true)),
        (200, read(k, "if_needed", 300), rr(200, e1(0), true, vec![], granted(1))),
        (500, fill(k, "v2", 500, None, Some(1)), rejected("lease_lost")),
        (510, read(k, "if_needed", 300), rr(510, e1(0), true, vec![], granted(2))),
    ]);
    // ---- versions
    sc(&mut f, "version_floor", "C2: a fill never lowers a version", vec![
        (0, fill(k, "v5", 0, Some(5), None), stored()),
        (10, fill(k, "v4", 10, Some(4), None), rejected("version_newer")),
        (20, fill(k, "v5b", 20, Some(5), None), stored()),
        (30, fill(k, "v6", 30, Some(6), None), stored()),
    ]);
    sc(&mut f, "version_floor_survives_delete", "C2: delete keeps the floor, so an older fill after it is refused", vec![
        (0, fill(k, "v5", 0, Some(5), None), stored()),
        (10, inval(k, "delete"), invalidated(true)),
        (20, read(k, "if_needed", 500), rr(20, None, false, vec![], granted(1))),
        (30, fill(k, "v4", 30, Some(4), Some(1)), rejected("version_newer")),
    ]);
    sc(&mut f, "version_floor_with_lease", "a leased fill with an older version is refused", vec![
        (0, fill(k, "v5", 0, Some(5), None), stored()),
        (1000, read(k, "if_needed", 500), rr(1000, Some(entry_hex("v5", 0, Some(5), vec![])), false, vec![], granted(1))),
        (1010, fill(k, "v4", 1010, Some(4), Some(1)), rejected("version_newer")),
    ]);
    sc(&mut f, "unversioned_over_versioned", "an unversioned write is stored (the floor stays)", vec![
        (0, fill(k, "v5", 0, Some(5), None), stored()),
        (10, fill(k, "x", 10, None, None), stored()),
        (20, fill(k, "v4", 20, Some(4), None), rejected("version_newer")),
    ]);
    // A fill's expire_at is its own, except that a version floor keeps the record at least as
    // long as it already lived (fill.lua: `if s and s.v and s.x > x`; killed Lua mutants, see
    // docs/mutation.md).
    sc(&mut f, "unversioned_fill_shortens_expiry", "an unversioned fill with an earlier expire_at replaces the old one: the record is gone at the new expire_at", vec![
        (500, fill(k, "v1", 500, None, None), stored()),
        (600, fill_x(k, "v2", 0, None, 2000), stored()),
        (1999, read(k, "none", 0), rr(1999, Some(entry_hex("v2", 0, None, vec![])), false, vec![], notreq())),
        (2000, read(k, "none", 0), rr(2000, None, false, vec![], notreq())),
    ]);
    sc(&mut f, "versioned_fill_keeps_the_floor_expiry", "a versioned fill with an earlier expire_at keeps the floor's: the record (and its entry) lives to the old expire_at", vec![
        (500, fill(k, "v5", 500, Some(5), None), stored()),
        (600, fill_x(k, "v6", 0, Some(6), 2000), stored()),
        (2000, read(k, "none", 0), rr(2000, Some(entry_hex("v6", 0, Some(6), vec![])), false, vec![], notreq())),
        (2500, read(k, "none", 0), rr(2500, None, false, vec![], notreq())),
    ]);
    sc(&mut f, "version_u64_large", "versions compare as u64", vec![
        (0, fill(k, "a", 0, Some(9_007_199_254_740_993), None), stored()),
        (10, fill(k, "b", 10, Some(9_007_199_254_740_992), None), rejected("version_newer")),
    ]);
    // ---- invalidate
    sc(&mut f, "invalidate_delete", "delete removes the value", vec![
        (0, fill(k, "v1", 0, None, None), stored()),
        (10, inval(k, "delete"), invalidated(true)),
        (20, read(k, "none", 0), rr(20, None, false, vec![], notreq())),
        (30, inval(k, "delete"), invalidated(false)),
    ]);
    sc(&mut f, "invalidate_missing", "invalidating a missing key", vec![(0, inval(k, "delete"), invalidated(false)), (0, inval(k, "mark_stale"), invalidated(false))]);
    sc(&mut f, "invalidate_mark_stale", "mark-stale keeps the value, flags it, and a lease is granted though it is fresh", vec![
        (0, fill(k, "v1", 0, None, None), stored()),
        (10, inval(k, "mark_stale"), invalidated(true)),
        (20, read(k, "none", 0), rr(20, e1(0), true, vec![], notreq())),
        (30, read(k, "if_needed", 500), rr(30, e1(0), true, vec![], granted(1))),
        (40, fill(k, "v2", 40, None, Some(1)), stored()),
        (50, read(k, "none", 0), rr(50, Some(entry_hex("v2", 40, None, vec![])), false, vec![], notreq())),
    ]);
    sc(&mut f, "mark_stale_revokes_lease", "mark-stale revokes an outstanding lease", vec![
        (0, fill(k, "v1", 0, None, None), stored()),
        (1000, read(k, "if_needed", 500), rr(1000, e1(0), false, vec![], granted(1))),
        (1010, inval(k, "mark_stale"), invalidated(true)),
        (1020, fill(k, "v2", 1020, None, Some(1)), rejected("lease_lost")),
        (1030, read(k, "if_needed", 500), rr(1030, e1(0), true, vec![], granted(2))),
    ]);
    sc(&mut f, "invalidate_revokes_lease_on_miss", "invalidate on a leased miss revokes the lease: the next reader gets it", vec![
        (0, read(k, "if_needed", 500), rr(0, None, false, vec![], granted(1))),
        (10, inval(k, "delete"), invalidated(false)),
        (20, read(k, "if_needed", 500), rr(20, None, false, vec![], granted(2))),
    ]);
    // ---- release / extend (L2)
    sc(&mut f, "release_own", "release with the holder's token frees the lease", vec![
        (0, read(k, "if_needed", 500), rr(0, None, false, vec![], granted(1))),
        (10, release(k, 1), lease_ok(true)),
        (20, read(k, "if_needed", 500), rr(20, None, false, vec![], granted(2))),
    ]);
    sc(&mut f, "release_wrong_token", "L2: release with another token does nothing", vec![
        (0, read(k, "if_needed", 500), rr(0, None, false, vec![], granted(1))),
        (10, release(k, 5), lease_ok(false)),
        (20, read(k, "if_needed", 500), rr(20, None, false, vec![], held(500))),
    ]);
    sc(&mut f, "release_twice", "a second release is a no-op", vec![
        (0, read(k, "if_needed", 500), rr(0, None, false, vec![], granted(1))),
        (10, release(k, 1), lease_ok(true)),
        (11, release(k, 1), lease_ok(false)),
    ]);
    sc(&mut f, "release_expired", "releasing an expired lease is refused", vec![
        (0, read(k, "if_needed", 500), rr(0, None, false, vec![], granted(1))),
        (500, release(k, 1), lease_ok(false)),
    ]);
    sc(&mut f, "release_after_takeover", "L2: the old holder cannot release the new holder's lease", vec![
        (0, read(k, "if_needed", 500), rr(0, None, false, vec![], granted(1))),
        (600, read(k, "if_needed", 500), rr(600, None, false, vec![], granted(2))),
        (610, release(k, 1), lease_ok(false)),
        (620, read(k, "if_needed", 500), rr(620, None, false, vec![], held(1100))),
    ]);
    sc(&mut f, "extend_own", "extend moves the lease end to now + ttl", vec![
        (0, read(k, "if_needed", 500), rr(0, None, false, vec![], granted(1))),
        (400, extend(k, 1, 1000), lease_ok(true)),
        (900, read(k, "if_needed", 500), rr(900, None, false, vec![], held(1400))),
    ]);
    sc(&mut f, "extend_wrong_token", "L2: extend with another token does nothing", vec![
        (0, read(k, "if_needed", 500), rr(0, None, false, vec![], granted(1))),
        (100, extend(k, 5, 10_000), lease_ok(false)),
        (500, read(k, "if_needed", 500), rr(500, None, false, vec![], granted(2))),
    ]);
    sc(&mut f, "extend_expired", "an expired lease cannot be extended (it may be someone else's)", vec![
        (0, read(k, "if_needed", 500), rr(0, None, false, vec![], granted(1))),
        (500, extend(k, 1, 1000), lease_ok(false)),
        (501, read(k, "if_needed", 500), rr(501, None, false, vec![], granted(2))),
    ]);
    sc(&mut f, "extend_expired_over_entry", "an expired lease on a slot that still holds an entry cannot be extended either (the next reader gets a new lease)", vec![
        (0, fill(k, "v1", 0, None, None), stored()),
        (1000, read(k, "if_needed", 200), rr(1000, e1(0), false, vec![], granted(1))),
        (1300, extend(k, 1, 1000), lease_ok(false)),
        (1301, read(k, "if_needed", 200), rr(1301, e1(0), false, vec![], granted(2))),
    ]);
    sc(&mut f, "extend_missing", "extend on an unknown key", vec![(0, extend(k, 4, 1000), lease_ok(false))]);
    // ---- generations (T1)
    let g = "n:!gen";
    sc(&mut f, "bump_orphans", "T1: after a bump the old entry reads as absent and needs a load", vec![
        (0, read_g(k, &[g], "if_needed", 500), rr(0, None, false, vec![0], granted(1))),
        (10, fill_g(k, "v1", 10, None, Some(1), &[g], Some(vec![0])), stored()),
        (20, read_g(k, &[g], "if_needed", 500), rr(20, Some(entry_hex("v1", 10, None, vec![0])), false, vec![0], notreq())),
        (30, bump(g, 777), bumped(777)),
        (40, read_g(k, &[g], "if_needed", 500), rr(40, None, false, vec![777], granted(2))),
    ]);
    sc(&mut f, "bump_between_read_and_fill", "T1: a fill stamped with pre-bump generations is refused", vec![
        (0, read_g(k, &[g], "if_needed", 500), rr(0, None, false, vec![0], granted(1))),
        (5, bump(g, 777), bumped(777)),
        (10, fill_g(k, "v1", 10, None, Some(1), &[g], Some(vec![0])), rejected("generation_changed")),
    ]);
    sc(&mut f, "lease_held_within_a_generation", "with generations unchanged, a second reader sees the lease held", vec![
        (0, read_g(k, &[g], "if_needed", 500), rr(0, None, false, vec![0], granted(1))),
        (10, read_g(k, &[g], "if_needed", 500), rr(10, None, false, vec![0], held(500))),
    ]);
    sc(&mut f, "bump_frees_the_lease", "a lease granted before a bump does not hold the key: its load can never fill, so a reader of the new generation gets a new lease at once and the old holder's fill and release are refused", vec![
        (0, read_g(k, &[g], "if_needed", 500), rr(0, None, false, vec![0], granted(1))),
        (5, bump(g, 777), bumped(777)),
        (10, read_g(k, &[g], "if_needed", 500), rr(10, None, false, vec![777], granted(2))),
        (15, read_g(k, &[g], "if_needed", 500), rr(15, None, false, vec![777], held(510))),
        (20, fill_g(k, "old", 20, None, Some(1), &[g], Some(vec![0])), rejected("generation_changed")),
        (21, release(k, 1), lease_ok(false)),
        (30, fill_g(k, "new", 30, None, Some(2), &[g], Some(vec![777])), stored()),
        (40, read_g(k, &[g], "if_needed", 500), rr(40, Some(entry_hex("new", 30, None, vec![777])), false, vec![777], notreq())),
    ]);
    sc(&mut f, "bump_same_value", "bumping to the current value still moves the counter", vec![
        (0, bump(g, 5), bumped(5)),
        (1, bump(g, 5), bumped(6)),
    ]);
    sc(&mut f, "bump_same_value_repeated", "a bump to the current value moves past it every time, and orphans what was filled under it", vec![
        (0, bump(g, 5), bumped(5)),
        (1, fill_g(k, "v1", 1, None, None, &[g], None), stored()),
        (2, bump(g, 5), bumped(6)),
        (3, read_g(k, &[g], "none", 0), rr(3, None, false, vec![6], notreq())),
        (4, bump(g, 6), bumped(7)),
        (5, bump(g, 7), bumped(8)),
    ]);
    // The largest value bump_op writes (rand >> 11 < 2^53: 16 digits) reads back exactly
    // (prelude.lua's parse_counter keeps values of up to 16 digits; killed Lua mutant).
    sc(&mut f, "bump_largest_value", "a generation of 2^53 - 1 (16 digits) is reported, and stamps a fill, exactly", vec![
        (0, bump(g, 9_007_199_254_740_991), bumped(9_007_199_254_740_991)),
        (1, fill_g(k, "v1", 1, None, None, &[g], None), stored()),
        (2, read_g(k, &[g], "none", 0), rr(2, Some(entry_hex("v1", 1, None, vec![])), false, vec![9_007_199_254_740_991], notreq())),
    ]);
    sc(&mut f, "authoritative_fill_stamps_current", "a fill without generations stamps the current ones", vec![
        (0, bump(g, 9), bumped(9)),
        (10, fill_g(k, "v1", 10, None, None, &[g], None), stored()),
        (20, read_g(k, &[g], "none", 0), rr(20, Some(entry_hex("v1", 10, None, vec![])), false, vec![9], notreq())),
    ]);
    let t = "n:!tag:red";
    sc(&mut f, "tag_bump_orphans", "T1: bumping a tag orphans entries that depend on it", vec![
        (0, fill_g(k, "v1", 0, None, None, &[g, t], None), stored()),
        (10, read_g(k, &[g, t], "none", 0), rr(10, Some(entry_hex("v1", 0, None, vec![])), false, vec![0, 0], notreq())),
        (20, bump(t, 3), bumped(3)),
        (30, read_g(k, &[g, t], "none", 0), rr(30, None, false, vec![0, 3], notreq())),
        (40, read_g(k, &[g], "none", 0), rr(40, None, false, vec![0], notreq())),
    ]);
    sc(&mut f, "generations_in_order", "generations come back in gen_keys order; unknown counters read 0", vec![
        (0, bump("a:!gen", 1), bumped(1)),
        (0, bump("a:!tag:x", 2), bumped(2)),
        (1, read_g(k, &["a:!tag:x", "a:!tag:none", "a:!gen"], "none", 0), rr(1, None, false, vec![2, 0, 1], notreq())),
    ]);
    // Counters that expire with their entries (Redis: fill keeps a counter until the entry's
    // expire_at, a bump keeps it an hour; docs/redis.md "Counter TTLs") must be invisible: what
    // a reader sees is what the memory store, whose counters never expire, answers.
    let fill_gx = |v: &str, t: u64, token: Option<u64>, gens: Vec<u64>, expire_at: u64| {
        let mut op = fill_g(k, v, t, None, token, &[g], Some(gens));
        op["expire_at"] = json!(expire_at);
        op
    };
    sc(&mut f, "entry_not_served_past_expire_at_under_a_live_lease", "a live lease keeps the slot past expire_at, not the entry: from expire_at on a read answers no entry (the lease still holds, and its holder may fill)", vec![
        (0, fill_x(k, "v1", 0, None, 300), stored()),
        (200, read(k, "force", 500), rr(200, e1(0), false, vec![], granted(1))),
        (299, read(k, "none", 0), rr(299, e1(0), false, vec![], notreq())),
        (300, read(k, "none", 0), rr(300, None, false, vec![], notreq())),
        (400, read(k, "if_needed", 500), rr(400, None, false, vec![], held(700))),
        (500, fill(k, "v2", 500, None, Some(1)), stored()),
        (600, read(k, "none", 0), rr(600, Some(entry_hex("v2", 500, None, vec![])), false, vec![], notreq())),
    ]);
    sc(&mut f, "counter_expired_with_its_entry_then_bumped", "the counter's only entry expired (on Redis the counter with it): it reads 0; a bump then still refuses the fill of a load that read 0 before it, and frees the key for the new generation", vec![
        (0, fill_gx("v1", 0, None, vec![0], 300), stored()),
        (100, read_g(k, &[g], "none", 0), rr(100, Some(entry_hex("v1", 0, None, vec![0])), false, vec![0], notreq())),
        (400, read_g(k, &[g], "if_needed", 500), rr(400, None, false, vec![0], granted(1))),
        (500, bump(g, 9), bumped(9)),
        (600, fill_gx("old", 600, Some(1), vec![0], 2600), rejected("generation_changed")),
        (700, read_g(k, &[g], "if_needed", 500), rr(700, None, false, vec![9], granted(2))),
        (800, fill_gx("new", 800, Some(2), vec![9], 2800), stored()),
        (900, read_g(k, &[g], "none", 0), rr(900, Some(entry_hex("new", 800, None, vec![9])), false, vec![9], notreq())),
    ]);
    sc(&mut f, "counter_expired_with_its_entry_refills", "the counter's only entry expired: a new fill under generation 0 is stored and served (on Redis it creates a new incarnation of the counter)", vec![
        (0, fill_gx("v1", 0, None, vec![0], 300), stored()),
        (400, read_g(k, &[g], "if_needed", 500), rr(400, None, false, vec![0], granted(1))),
        (500, fill_gx("v2", 500, Some(1), vec![0], 2500), stored()),
        (600, read_g(k, &[g], "none", 0), rr(600, Some(entry_hex("v2", 500, None, vec![0])), false, vec![0], notreq())),
    ]);
    sc(&mut f, "keys_independent", "leases and entries are per key", vec![
        (0, read("n:a", "if_needed", 500), rr(0, None, false, vec![], granted(1))),
        (0, read("n:b", "if_needed", 500), rr(0, None, false, vec![], granted(2))),
        (10, fill("n:b", "v1", 10, None, Some(2)), stored()),
        (20, read("n:a", "none", 0), rr(20, None, false, vec![], notreq())),
    ]);
    f
}

// ================================================================================================
// writes

pub fn writes() -> File {
    let mut f = File::new("writes", "The one-op paths: get_op / get_result, set_op, invalidate_op, bump_op, get_on_store_error.");
    let pol = json!({ "soft_ttl_ms": 1000, "hard_ttl_ms": 3000, "stale_if_error_ms": 500, "jitter": 0.1 });
    f.add("get_op", "a plain read: no lease, token 0", json!({ "op": "get_op", "key": "n:k", "gen_keys": ["n:!gen"] }));
    f.add("get_op_no_gen", "without generations", json!({ "op": "get_op", "key": "n:k", "gen_keys": [] }));
    for (name, rand) in [("set_op_rand0", "0"), ("set_op_randmax", "18446744073709551615")] {
        f.add(name, "authoritative fill: no token, no generations (stamp current), jittered TTLs, expire_at = hard + sie", json!({
            "op": "set_op", "policy": pol, "store_now": 1_700_000_000_000u64, "rand": rand,
            "write": { "key": "n:k", "gen_keys": ["n:!gen"], "tags": ["red"], "value": "7b7d", "codec": 1, "version": null }
        }));
    }
    f.add("set_op_versioned", "the version goes in the entry and the op", json!({
        "op": "set_op", "policy": pol, "store_now": 5000, "rand": "12345678901234567890",
        "write": { "key": "n:k", "value": "31", "codec": 0, "version": 9 }
    }));
    f.add("invalidate_delete", "delete op", json!({ "op": "invalidate_op", "key": "n:k", "mode": "delete" }));
    f.add("invalidate_mark_stale", "mark-stale op", json!({ "op": "invalidate_op", "key": "n:k", "mode": "mark_stale" }));
    f.hand("bump_rand0", "bump value is rand >> 11, at least 1", json!({ "op": "bump_op", "gen_key": "n:!gen", "rand": "0" }), okv(json!({"op": "bump", "gen_key": "n:!gen", "value": 1})));
    f.hand("bump_randmax", "rand max → 2^53 - 1 (fits a JS number)", json!({ "op": "bump_op", "gen_key": "n:!gen", "rand": "18446744073709551615" }), okv(json!({"op": "bump", "gen_key": "n:!gen", "value": 9_007_199_254_740_991u64})));
    f.hand("bump_rand_4096", "4096 >> 11 = 2", json!({ "op": "bump_op", "gen_key": "n:!tag:x", "rand": "4096" }), okv(json!({"op": "bump", "gen_key": "n:!tag:x", "value": 2})));
    // get_result
    let ent = |neg: bool| {
        let e = Entry { value: if neg { vec![] } else { b"\"hi\"".to_vec() }, codec: 1, version: Some(4), generations: vec![], soft_at: 1000, hard_at: 3000, load_ms: 1, negative: neg, tags: vec![] };
        hex::encode(&e.encode())
    };
    let gr = |now: u64, entry: Option<String>, marked: bool| json!({
        "op": "get_result", "policy": pol,
        "reply": { "now_ms": now, "entry": entry, "marked_stale": marked, "generations": [], "lease": "not_requested" }
    });
    let served = |src: &str, neg: bool| json!({ "value": if neg { "" } else { "22686922" }, "codec": 1, "negative": neg, "version": 4, "source": src, "cached": true });
    f.hand("get_fresh", "fresh entry", gr(999, Some(ent(false)), false), okv(json!({"served": served("fresh", false), "stats": {"hits_fresh": 1}})));
    f.hand("get_stale_at_soft", "at soft_at: stale", gr(1000, Some(ent(false)), false), okv(json!({"served": served("stale", false), "stats": {"hits_stale": 1}})));
    f.hand("get_stale_last_ms", "hard_at - 1: stale", gr(2999, Some(ent(false)), false), okv(json!({"served": served("stale", false), "stats": {"hits_stale": 1}})));
    f.hand("get_past_hard", "C4: never served at or past hard_at (get does not use stale-if-error)", gr(3000, Some(ent(false)), false), okv(json!({"served": null, "stats": {"misses": 1}})));
    f.hand("get_marked_stale", "a marked entry is stale even before soft_at", gr(10, Some(ent(false)), true), okv(json!({"served": served("stale", false), "stats": {"hits_stale": 1}})));
    f.hand("get_none", "no entry: miss", gr(10, None, false), okv(json!({"served": null, "stats": {"misses": 1}})));
    f.hand("get_corrupt", "corrupt bytes: a counted miss", gr(10, Some("deadbeef".into()), false), okv(json!({"served": null, "stats": {"misses": 1, "corrupt_entries": 1}})));
    f.hand("get_negative", "a cached not-found", gr(10, Some(ent(true)), false), okv(json!({"served": served("fresh", true), "stats": {"negative_hits": 1}})));
    f.hand("get_store_error_load", "on_store_error load: a get on a failed store is a miss", json!({"op": "get_on_store_error", "policy": pol, "message": "down"}), okv(json!({"served": null, "stats": {"store_errors": 1}})));
    f.hand("get_store_error_error", "on_store_error error: the error", json!({"op": "get_on_store_error", "policy": {"on_store_error": "error"}, "message": "down"}), errv(json!({"error": "store", "message": "down"})));
    f
}
