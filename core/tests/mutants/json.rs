//! `core/src/json.rs`: the JSON reader and string writer the policy parser, key params and the
//! wasm module share.

use karlton_core::json::{self, Number, Value};

/// Every ASCII character (and some beyond) is written as serde_json writes it: the short escapes,
/// `\u00XX` in lowercase hex for the other control characters, nothing else escaped — the wasm
/// module's replies must be byte-identical to the native serde forms.
#[test]
fn write_str_escapes_exactly_as_serde_json() {
    let mut all: String = (0u8..0x80).map(char::from).collect();
    all.push_str("é€😀 \u{7f}\u{2028}");
    for s in [all.as_str(), "\"quoted\"", "tab\there", "\u{1}\u{1f}\u{10}", "plain", ""] {
        let mut out = Vec::new();
        json::write_str(&mut out, s);
        assert_eq!(String::from_utf8(out).unwrap(), serde_json::to_string(s).unwrap(), "{s:?}");
    }
}

/// A number converts to the integer it is, and to none it is not.
#[test]
fn numbers_convert_only_to_integers_they_hold() {
    assert_eq!(Number::U64(7).as_u64(), Some(7));
    assert_eq!(Number::U64(u64::MAX).as_u64(), Some(u64::MAX));
    assert_eq!(Number::I64(-3).as_u64(), None);
    assert_eq!(Number::F64(1.5).as_u64(), None);
    assert_eq!(Number::I64(-3).as_i64(), Some(-3));
    assert_eq!(Number::U64(9).as_i64(), Some(9));
    assert_eq!(Number::U64(u64::MAX).as_i64(), None);
    assert_eq!(Number::F64(-2.0).as_i64(), None);
}

/// Text that ends inside an object after a comma is "EOF while parsing an object" (serde_json's
/// wording, which the runtimes' error messages carry), not "key must be a string".
#[test]
fn an_object_cut_after_a_comma_is_an_eof_error() {
    for text in [r#"{"a":1,"#, r#"{"a":1, "#, "{"] {
        let e = json::parse(text).unwrap_err();
        assert_eq!(e.what, "EOF while parsing an object", "{text:?}");
    }
    assert_eq!(json::parse(r#"{"a":1,2}"#).unwrap_err().what, "key must be a string");
}

/// A member of an envelope nested deeper than the limit is skipped as raw text, and strings in
/// it — brackets and escaped quotes inside them included — do not count as structure: the
/// members after it are read as they are.
#[test]
fn a_too_deep_member_is_skipped_past_its_strings() {
    let depth = json::MAX_DEPTH as usize + 1;
    let deep = format!("{}\"]]}} \\\" ]\"{}", "[".repeat(depth), "]".repeat(depth));
    let text = format!(r#"{{"a":{deep},"b":1}}"#);
    let (v, raw) = json::parse_members(&text).unwrap();
    let Value::Object(members) = v else { panic!("not an object") };
    assert_eq!(members.len(), 2);
    assert_eq!(members[0].0, "a");
    assert_eq!(members[0].1, Value::Null);
    assert_eq!(members[1], ("b".to_owned(), Value::Number(Number::U64(1))));
    assert_eq!(raw, vec![deep.as_str(), "1"]);
}

/// An exponent may carry an explicit `+` or `-` sign, as in any JSON.
#[test]
fn exponents_take_an_explicit_sign() {
    for (text, want) in [("1e+2", 100.0), ("1E+2", 100.0), ("2.5e-1", 0.25), ("1e2", 100.0), ("-1e+0", -1.0)] {
        assert_eq!(json::parse(text).unwrap(), Value::Number(Number::F64(want)), "{text}");
    }
    assert!(json::parse("1e+").is_err());
}

/// Decimals the fast path cannot take (more than 15 digits, or exponents past 10^22) are still
/// the nearest double, subnormals included — as Rust's own (correctly rounded) parser has them.
#[test]
fn long_and_subnormal_decimals_round_to_the_nearest_double() {
    let cases = [
        "4.9406564584124654e-324", "2.4703282292062328e-324", "2.4703282292062327e-324",
        "9.8813129168249309e-324", "1.5e-323", "7.4109846876186982e-323", "1.2345678901234567890e-310",
        "2.2250738585072009e-308", "2.2250738585072014e-308", "2.2250738585072011e-308",
        "1.0000000000000002220446049250313080847263336181640625", "9007199254740993.0000000001",
        "123456789012345678901234567890e-20", "1.7976931348623157e308", "3.14159265358979323846264338327950288",
        "1e-30", "4.35e-310", "6.9e-311", "1.000000000000000000001e-320",
    ];
    // Exactly half the smallest subnormal (2^-1075 = 5^1075 · 10^-1075) ties to even (0), and
    // anything above it rounds up to 2^-1074.
    let mut five = vec![1u8]; // decimal digits of 5^1075, least significant first
    for _ in 0..1075 {
        let mut carry = 0;
        for d in five.iter_mut() {
            let x = *d * 5 + carry;
            (*d, carry) = (x % 10, x / 10);
        }
        if carry > 0 {
            five.push(carry);
        }
    }
    let half: String = five.iter().rev().map(|d| char::from(b'0' + d)).collect();
    let (at_half, above_half) = (format!("{half}e-1075"), format!("{half}1e-1076"));
    assert_eq!(at_half.parse::<f64>().unwrap(), 0.0);
    assert_eq!(above_half.parse::<f64>().unwrap(), f64::from_bits(1));
    for text in cases.iter().copied().chain([at_half.as_str(), above_half.as_str()]) {
        let want: f64 = text.parse().unwrap();
        match json::parse(text).unwrap() {
            Value::Number(Number::F64(got)) => assert_eq!(got.to_bits(), want.to_bits(), "{text}: {got:e} vs {want:e}"),
            v => panic!("{text}: {v:?}"),
        }
    }
}
