//! Survivors of `core/src/jcs.rs`.

use karlton_core::json::parse;
use karlton_core::key::{canonicalize_value, check_integer_literals};

/// A member name that occurs more than once counts once, with its last value (as in a
/// `serde_json::Value`), wherever the repeats are: the core's JSON tree keeps every member.
#[test]
fn a_repeated_member_is_written_once_with_its_last_value() {
    for (text, canonical) in [
        (r#"{"a":1,"a":2}"#, r#"{"a":2}"#),
        (r#"{"a":1,"b":0,"a":2}"#, r#"{"a":2,"b":0}"#),
        (r#"{"b":[{"x":1,"x":null}],"a":true,"b":3}"#, r#"{"a":true,"b":3}"#),
        (r#"{"z":{"y":1,"y":2,"y":3}}"#, r#"{"z":{"y":3}}"#),
    ] {
        let v = parse(text).expect("valid test JSON");
        assert_eq!(canonicalize_value(&v).unwrap(), canonical, "{text}");
    }
}

/// Digits inside a string are not an integer literal, whatever comes before them in the
/// string (a letter, an escaped quote); a number after a string still is.
#[test]
fn digits_inside_a_string_are_not_an_integer_literal() {
    for t in [
        r#"["x9007199254740993"]"#,
        r#"{"a9007199254740993":1}"#,
        r#"["\"9007199254740993"]"#,
        r#"["\\","9007199254740993"]"#,
        r#"["ab 9007199254740993 and 100000000000000000001"]"#,
    ] {
        assert_eq!(check_integer_literals(t), Ok(()), "{t}");
    }
    for t in [
        r#"["a",9007199254740993]"#,
        r#"{"k":"x","n":-9007199254740993}"#,
        r#"["\"",9007199254740993]"#,
    ] {
        assert!(check_integer_literals(t).is_err(), "{t}");
    }
}

/// Text cut off anywhere (inside a string, after an escape, inside a number) is checked without
/// panicking: the scan never reads past the end. (Every caller parses the text first, but the
/// function is public and a panic would abort a binding.)
#[test]
fn truncated_text_is_checked_without_panicking() {
    let text = r#"{"s":"a\"b\\c","n":[9007199254740992,"x",-12.5e-3]}"#;
    for end in 0..=text.len() {
        let cut = &text[..end];
        assert_eq!(check_integer_literals(cut), Ok(()), "{cut}");
    }
    // An unterminated string is skipped to the end: nothing after its quote is a literal.
    assert_eq!(check_integer_literals(r#"["9007199254740993"#), Ok(()));
    assert_eq!(check_integer_literals("\"abc\\"), Ok(()));
}
