//! RFC 8785 JSON Canonicalization Scheme (JCS).
//!
//! The canonical form is what makes parameter hashes identical across runtimes: Python, Node and
//! Rust all hash the exact bytes produced here. The rules (RFC 8785 §3.2):
//!
//! * no whitespace between tokens;
//! * object members sorted by their names compared as arrays of **UTF-16 code units** (not UTF-8
//!   bytes, not code points: they differ for characters above U+FFFF vs. U+E000..U+FFFF);
//! * strings escaped like ECMAScript `JSON.stringify`: only `"`, `\` and control characters below
//!   U+0020 are escaped, using `\b \t \n \f \r` where they exist and `\u00xx` (lowercase hex)
//!   otherwise; everything else, including U+007F and all non-ASCII, is emitted as raw UTF-8;
//! * numbers serialized like ECMAScript `Number.prototype.toString` (via `ryu_js`): `1.0` is `1`,
//!   `1e21` is `1e+21`, `-0` is `0`.
//!
//! Integers: JSON has one number type, an IEEE-754 double, and every JCS implementation converts
//! integers to doubles, so integers above 2^53 in magnitude silently lose precision in other
//! implementations (`9007199254740993` becomes `9007199254740992`, and Python, which keeps exact
//! ints, would disagree with Node). For a cache key a silent collision is worse than an error, so
//! an integer (`u64`/`i64` in the value, or any integer literal checked by
//! [`check_integer_literals`]) is accepted only if it is already in canonical form: always for
//! `|n| <= 2^53`, above that only if its decimal text equals the ECMAScript form of its double
//! (see `canonical_integer`). Otherwise [`JcsError::UnsafeInteger`]. This keeps canonicalization
//! injective on integers, accepts everything `JSON.stringify` emits, and makes canonical output a
//! fixed point. Floats (literals with `.` or an exponent) are doubles by definition and accepted
//! at any magnitude.
//! NaN and infinities cannot be represented in a [`Value`] (the core's JSON tree, which
//! [`canonicalize`] reads; a `serde_json::Value` is converted to it first).

use std::fmt::Write as _;

use crate::json::{Number, Value};

/// Why a value could not be canonicalized.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JcsError {
    /// An integer above 2^53 in magnitude that is not written in canonical form (e.g. 2^53 + 1,
    /// which is not a double): converting it to a double would change it, so it could collide
    /// with another integer.
    #[error("integer {0} exceeds 2^53 and is not a canonical double; pass it as a string")]
    UnsafeInteger(String),
    /// A number that is neither a safe integer nor a finite double (cannot happen with the
    /// default serde_json features; kept so that exotic builds fail loudly instead of wrongly).
    #[error("number {0} cannot be canonicalized")]
    UnsupportedNumber(String),
}

/// Canonicalizes `v` per RFC 8785 and returns the canonical JSON text.
pub fn canonicalize(v: &serde_json::Value) -> Result<String, JcsError> {
    canonicalize_value(&from_serde(v))
}

/// [`canonicalize`] for the core's JSON tree ([`crate::json::parse`]). An object member that
/// occurs more than once counts with its last value (as in a `serde_json::Value`).
pub fn canonicalize_value(v: &Value) -> Result<String, JcsError> {
    let mut out = String::new();
    write_value(&mut out, v)?;
    Ok(out)
}

/// The core's JSON tree of a `serde_json::Value` (numbers classified alike).
pub(crate) fn from_serde(v: &serde_json::Value) -> Value {
    use serde_json::Value as S;
    match v {
        S::Null => Value::Null,
        S::Bool(b) => Value::Bool(*b),
        S::Number(n) => Value::Number(match (n.as_u64(), n.as_i64()) {
            (Some(u), _) => Number::U64(u),
            (None, Some(i)) => Number::I64(i),
            // Without `arbitrary_precision` every serde_json number has an f64 form.
            _ => Number::F64(n.as_f64().unwrap_or(f64::NAN)),
        }),
        S::String(s) => Value::String(s.clone()),
        S::Array(a) => Value::Array(a.iter().map(from_serde).collect()),
        S::Object(m) => Value::Object(m.iter().map(|(k, v)| (k.clone(), from_serde(v))).collect()),
    }
}

fn write_value(out: &mut String, v: &Value) -> Result<(), JcsError> {
    match v {
        Value::Null => out.push_str("null"),
        Value::Bool(true) => out.push_str("true"),
        Value::Bool(false) => out.push_str("false"),
        Value::Number(n) => write_number(out, n)?,
        Value::String(s) => write_string(out, s),
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_value(out, item)?;
            }
            out.push(']');
        }
        Value::Object(map) => write_object(out, map)?,
    }
    Ok(())
}

fn write_object(out: &mut String, map: &[(String, Value)]) -> Result<(), JcsError> {
    // Sort by UTF-16 code units (never by the document's or a map's own order). The sort is
    // stable, so of members with one name the last one in the document ends up last: keep it.
    // Insertion sort: objects are small, and std's stable sort would add kilobytes to the wasm
    // module.
    let mut members: Vec<(&String, &Value)> = Vec::with_capacity(map.len());
    for (k, v) in map {
        let at = members.partition_point(|(a, _)| a.encode_utf16().cmp(k.encode_utf16()).is_le());
        members.insert(at, (k, v));
    }
    let mut last: Vec<(&String, &Value)> = Vec::with_capacity(members.len());
    for m in members {
        match last.last_mut() {
            Some(prev) if prev.0 == m.0 => *prev = m,
            _ => last.push(m),
        }
    }
    out.push('{');
    for (i, (name, value)) in last.into_iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        write_string(out, name);
        out.push(':');
        write_value(out, value)?;
    }
    out.push('}');
    Ok(())
}

fn write_number(out: &mut String, n: &Number) -> Result<(), JcsError> {
    // Written with ryu-js rather than f64's Display, which would pull a second float formatter
    // into the wasm module.
    let f = match *n {
        Number::U64(u) => canonical_integer(&u.to_string())?,
        Number::I64(i) => canonical_integer(&i.to_string())?,
        Number::F64(f) => f,
    };
    if !f.is_finite() {
        return Err(JcsError::UnsupportedNumber(ryu_js::Buffer::new().format(f).to_string()));
    }
    if f == 0.0 {
        // Number.prototype.toString(-0) is "0".
        out.push('0');
    } else {
        let mut buf = ryu_js::Buffer::new();
        out.push_str(buf.format_finite(f));
    }
    Ok(())
}

/// The double an integer denotes, if the integer is written in canonical form.
///
/// Every integer with `|i| <= 2^53` is exactly a double whose canonical form is the integer itself.
/// A larger integer is accepted only if its decimal text *is* the ECMAScript form of the nearest
/// double (`1000000000000000000`, `883428225632934100`, `9007199254740994`), i.e. only if it is
/// already canonical. Each double has exactly one such text, so no two accepted integers share a
/// canonical form, JSON emitted by JavaScript (`JSON.stringify`) is always accepted, and canonical
/// output always re-canonicalizes to itself. Rejected: `9007199254740993` (not a double) and also
/// `883428225632934144` (exactly a double, but its canonical form is `883428225632934100`, so
/// accepting it would let it collide with that integer).
fn canonical_integer(text: &str) -> Result<f64, JcsError> {
    // On the decimal text (no i128 arithmetic, which costs kilobytes in the wasm module).
    let (neg, digits) = match text.strip_prefix('-') {
        Some(d) => (true, d),
        None => (false, text),
    };
    let d: Vec<u8> = digits.bytes().map(|c| c.wrapping_sub(b'0')).collect();
    // The nearest double, ties to even (`as` from an integer type rounds the same way).
    let f = crate::json::decimal_to_f64(&d, 0);
    let f = if neg { -f } else { f };
    // |i| <= 2^53 = 9007199254740992 (16 digits): exact.
    let safe = digits.len() < 16 || (digits.len() == 16 && digits <= "9007199254740992");
    if safe || (f.is_finite() && ryu_js::Buffer::new().format_finite(f) == text) {
        Ok(f)
    } else {
        Err(JcsError::UnsafeInteger(text.to_owned()))
    }
}

/// Checks the integer literals of (valid) JSON text with the rule of [`canonicalize`].
///
/// Needed for JSON text because JSON readers (serde_json, [`crate::json`]) parse integer literals beyond the `u64`/`i64` range as
/// doubles, so `100000000000000000001` (say, a Python int) would otherwise silently become `1e20`.
/// Literals within the 64-bit range are checked again (harmlessly) by [`canonicalize`].
pub fn check_integer_literals(text: &str) -> Result<(), JcsError> {
    let b = text.as_bytes();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'"' => {
                // Skip the string; the text is valid JSON, so escapes are well formed.
                i += 1;
                while i < b.len() && b[i] != b'"' {
                    i += if b[i] == b'\\' { 2 } else { 1 };
                }
                i += 1;
            }
            b'-' | b'0'..=b'9' => {
                let start = i;
                while i < b.len() && matches!(b[i], b'-' | b'+' | b'.' | b'e' | b'E' | b'0'..=b'9')
                {
                    i += 1;
                }
                let token = text.get(start..i).unwrap_or_default();
                let is_integer = !token.contains(['.', 'e', 'E']);
                // 16+ digits may exceed 2^53 (a 16-digit number is below 10^16 < 2^54).
                if is_integer && token.trim_start_matches('-').len() >= 16 {
                    canonical_integer(token)?;
                }
            }
            _ => i += 1,
        }
    }
    Ok(())
}

fn write_string(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\u{08}' => out.push_str("\\b"),
            '\t' => out.push_str("\\t"),
            '\n' => out.push_str("\\n"),
            '\u{0C}' => out.push_str("\\f"),
            '\r' => out.push_str("\\r"),
            c if (c as u32) < 0x20 => {
                // Writing to a String cannot fail.
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Number, Value, json};

    #[test]
    fn canonical_integer_is_the_i128_rule() {
        // The rule as first written on i128: |i| <= 2^53, or the ECMAScript form of the nearest
        // double is the integer's own text.
        let rule = |i: i128| {
            #[allow(clippy::cast_precision_loss)]
            let f = i as f64;
            (-(1i128 << 53)..=1 << 53).contains(&i)
                || ryu_js::Buffer::new().format_finite(f) == i.to_string()
        };
        let mut x = 0x2545_F491_4F6C_DD1Du64;
        let mut vals: Vec<i128> = vec![0, 1, -1, 1 << 53, (1 << 53) + 1, (1 << 53) + 2, -(1 << 53) - 1,
            i128::from(u64::MAX), i128::from(i64::MIN), 1_000_000_000_000_000_000, 883_428_225_632_934_100,
            883_428_225_632_934_144, 100_000_000_000_000_000_000, 100_000_000_000_000_000_001, i128::MAX];
        for _ in 0..20_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let v = i128::from(x >> (x % 16)) * 1000i128.pow((x % 4) as u32);
            vals.push(v);
            vals.push(-v);
            // Round trips of doubles are canonical.
            let f = f64::from_bits(0x4340_0000_0000_0000 + (x >> 40)) ;
            vals.push(f as i128);
        }
        for i in vals {
            assert_eq!(canonical_integer(&i.to_string()).is_ok(), rule(i), "{i}");
        }
    }

    fn canon_text(json_text: &str) -> String {
        let v: Value = serde_json::from_str(json_text).expect("valid test JSON");
        let c = canonicalize(&v).expect("canonicalizable");
        // The core's own reader gives the same canonical text.
        let w = crate::json::parse(json_text).expect("valid test JSON");
        assert_eq!(canonicalize_value(&w).expect("canonicalizable"), c, "{json_text}");
        c
    }

    /// RFC 8785 Appendix B / §3.2.2.3 number samples (the subset expressible in JSON text).
    #[test]
    fn rfc8785_numbers() {
        let cases: &[(&str, &str)] = &[
            ("333333333.33333329", "333333333.3333333"),
            ("1E30", "1e+30"),
            ("4.50", "4.5"),
            ("2e-3", "0.002"),
            ("0.000000000000000000000000001", "1e-27"),
            ("-0", "0"),
            ("-0.0", "0"),
            ("0", "0"),
            ("1", "1"),
            ("1.0", "1"),
            ("-1.5", "-1.5"),
            ("1e21", "1e+21"),
            ("1e20", "100000000000000000000"),
            ("1e-6", "0.000001"),
            ("1e-7", "1e-7"),
            ("9007199254740992", "9007199254740992"),
            ("-9007199254740992", "-9007199254740992"),
            ("9007199254740993.0", "9007199254740992"),
            ("1.7976931348623157e308", "1.7976931348623157e+308"),
            ("-1.7976931348623157e308", "-1.7976931348623157e+308"),
            ("5e-324", "5e-324"),
            ("-5e-324", "-5e-324"),
            ("295147905179352830000", "295147905179352830000"),
            ("0.1", "0.1"),
            ("123456789012345680000", "123456789012345680000"),
        ];
        for (input, expected) in cases {
            assert_eq!(&canon_text(input), expected, "input {input}");
        }
    }

    /// RFC 8785 Appendix B IEEE-754 hex samples, fed as bit patterns.
    #[test]
    fn rfc8785_number_bit_patterns() {
        let cases: &[(u64, &str)] = &[
            (0x0000000000000000, "0"),
            (0x8000000000000000, "0"),
            (0x0000000000000001, "5e-324"),
            (0x8000000000000001, "-5e-324"),
            (0x7fefffffffffffff, "1.7976931348623157e+308"),
            (0xffefffffffffffff, "-1.7976931348623157e+308"),
            (0x4340000000000000, "9007199254740992"),
            (0xc340000000000000, "-9007199254740992"),
            (0x4430000000000000, "295147905179352830000"),
            (0x44b52d02c7e14af5, "9.999999999999997e+22"),
            (0x44b52d02c7e14af6, "1e+23"),
            (0x44b52d02c7e14af7, "1.0000000000000001e+23"),
            (0x444b1ae4d6e2ef4e, "999999999999999700000"),
            (0x444b1ae4d6e2ef4f, "999999999999999900000"),
            (0x444b1ae4d6e2ef50, "1e+21"),
            (0x3eb0c6f7a0b5ed8c, "9.999999999999997e-7"),
            (0x3eb0c6f7a0b5ed8d, "0.000001"),
            (0x41b3de4355555553, "333333333.3333332"),
            (0x41b3de4355555554, "333333333.33333325"),
            (0x41b3de4355555555, "333333333.3333333"),
            (0x41b3de4355555556, "333333333.3333334"),
            (0x41b3de4355555557, "333333333.33333343"),
            (0xbecbf647612f3696, "-0.0000033333333333333333"),
            (0x43143ff3c1cb0959, "1424953923781206.2"),
        ];
        for (bits, expected) in cases {
            let f = f64::from_bits(*bits);
            let v = Value::Number(Number::from_f64(f).expect("finite"));
            assert_eq!(&canonicalize(&v).unwrap(), expected, "bits {bits:#018x}");
        }
    }

    #[test]
    fn unsafe_integers_are_rejected() {
        assert!(canonicalize(&json!(9_007_199_254_740_992_u64)).is_ok());
        assert!(canonicalize(&json!(-9_007_199_254_740_992_i64)).is_ok());
        assert_eq!(
            canonicalize(&json!(9_007_199_254_740_993_u64)),
            Err(JcsError::UnsafeInteger("9007199254740993".into()))
        );
        assert_eq!(
            canonicalize(&json!(-9_007_199_254_740_993_i64)),
            Err(JcsError::UnsafeInteger("-9007199254740993".into()))
        );
        assert!(canonicalize(&json!({"a": [u64::MAX]})).is_err());
        assert!(canonicalize(&json!(i64::MAX)).is_err());
        assert!(canonicalize(&json!(i64::MIN + 1)).is_err());
        // Above 2^53 only integers already in canonical (ECMAScript) form are accepted.
        assert_eq!(
            canonicalize(&json!(9_007_199_254_740_994_u64)).unwrap(),
            "9007199254740994"
        );
        assert_eq!(
            canonicalize(&json!(1_000_000_000_000_000_000_u64)).unwrap(),
            "1000000000000000000"
        );
        assert_eq!(
            canonicalize(&json!(883_428_225_632_934_100_u64)).unwrap(),
            "883428225632934100"
        );
        assert_eq!(
            canonicalize(&json!(-883_428_225_632_934_100_i64)).unwrap(),
            "-883428225632934100"
        );
        // Exactly a double, but not its canonical text: would collide with the one above.
        assert!(canonicalize(&json!(883_428_225_632_934_144_u64)).is_err());
        assert!(canonicalize(&json!(1_u64 << 63)).is_err());
        // The canonical form of a large double re-canonicalizes to itself.
        let c = canonicalize(&json!(1.2e18)).unwrap();
        assert_eq!(c, "1200000000000000000");
        assert_eq!(canon_text(&c), c);
    }

    #[test]
    fn integer_literals_in_text() {
        let ok = [
            "[1,2.5,-3]",
            "9007199254740993.0",
            "[\"9007199254740993\"]",
            "{\"a\":[100000000000000000000]}",
            "1e400x",
            "-883428225632934100",
            "1234567890123456e30",
        ];
        for t in ok {
            assert_eq!(check_integer_literals(t), Ok(()), "{t}");
        }
        for t in [
            "9007199254740993",
            "[-9007199254740993]",
            "{\"a\":100000000000000000001}",
            "1000000000000000000000",
            "123456789012345678901234567890123456789012345",
        ] {
            assert!(check_integer_literals(t).is_err(), "{t}");
        }
    }

    /// RFC 8785 §3.2.3 sorting example.
    #[test]
    fn rfc8785_sorting() {
        let input = r#"{
            "\u20ac": "Euro Sign",
            "\r": "Carriage Return",
            "\ufb33": "Hebrew Letter Dalet With Dagesh",
            "1": "One",
            "\ud83d\ude00": "Emoji: Grinning Face",
            "\u0080": "Control",
            "\u00f6": "Latin Small Letter O With Diaeresis"
        }"#;
        let expected = "{\"\\r\":\"Carriage Return\",\"1\":\"One\",\"\u{80}\":\"Control\",\
                        \"\u{f6}\":\"Latin Small Letter O With Diaeresis\",\
                        \"\u{20ac}\":\"Euro Sign\",\"\u{1f600}\":\"Emoji: Grinning Face\",\
                        \"\u{fb33}\":\"Hebrew Letter Dalet With Dagesh\"}";
        assert_eq!(canon_text(input), expected);
    }

    /// RFC 8785 §3.2.2 / Appendix: the main example of the specification.
    #[test]
    fn rfc8785_main_example() {
        let input = r#"{
            "numbers": [333333333.33333329, 1E30, 4.50, 2e-3, 0.000000000000000000000000001],
            "string": "\u20ac$\u000F\u000aA'\u0042\u0022\u005c\\\"\/",
            "literals": [null, true, false]
        }"#;
        let expected = "{\"literals\":[null,true,false],\
                        \"numbers\":[333333333.3333333,1e+30,4.5,0.002,1e-27],\
                        \"string\":\"\u{20ac}$\\u000f\\nA'B\\\"\\\\\\\\\\\"/\"}";
        assert_eq!(canon_text(input), expected);
    }

    #[test]
    fn string_escapes() {
        let s: String = (0u32..0x20).filter_map(char::from_u32).collect();
        let got = canonicalize(&Value::String(s)).unwrap();
        assert_eq!(
            got,
            "\"\\u0000\\u0001\\u0002\\u0003\\u0004\\u0005\\u0006\\u0007\\b\\t\\n\\u000b\\f\\r\
             \\u000e\\u000f\\u0010\\u0011\\u0012\\u0013\\u0014\\u0015\\u0016\\u0017\\u0018\
             \\u0019\\u001a\\u001b\\u001c\\u001d\\u001e\\u001f\""
        );
        assert_eq!(
            canonicalize(&json!("\u{7f}/<>é😀")).unwrap(),
            "\"\u{7f}/<>é😀\""
        );
        assert_eq!(canonicalize(&json!("a\"b\\c")).unwrap(), r#""a\"b\\c""#);
    }

    #[test]
    fn structure_and_nesting() {
        let v = json!({"b": [1, 2.5, {"z": null, "a": "é"}], "a": true, "": {}, "c": []});
        assert_eq!(
            canonicalize(&v).unwrap(),
            r#"{"":{},"a":true,"b":[1,2.5,{"a":"é","z":null}],"c":[]}"#
        );
    }

    #[test]
    fn utf16_order_differs_from_utf8_order() {
        // U+FB33 is one UTF-16 unit 0xFB33; U+1F600 is the pair 0xD83D 0xDE00, which sorts first.
        // In UTF-8 byte order it would be the other way round (EF.. < F0..).
        let v = json!({"\u{fb33}": 1, "\u{1f600}": 2});
        assert_eq!(
            canonicalize(&v).unwrap(),
            "{\"\u{1f600}\":2,\"\u{fb33}\":1}"
        );
    }
}
