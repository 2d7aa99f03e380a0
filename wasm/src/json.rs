//! Hand-rolled JSON plumbing for the dispatcher, to keep the module small.
//!
//! Reading: a request is read once by karlton-core's JSON reader ([`karlton_core::json`], the
//! one the policy parser uses) into a tree, and each member is converted by hand ([`Obj`]). No
//! serde on this path (its type-directed deserializers and serde_json's parser cost tens of
//! kilobytes). The
//! conversions accept exactly what the serde derives of the same shapes accept, member by
//! member (missing, `null`, duplicate and unknown members included); only the wording of
//! `bad_request` messages differs.
//!
//! Writing: replies are written straight into the output buffer, byte-identical to
//! `serde_json::to_writer` of the same values (compact, same escapes, declaration order).

use karlton_core::json::{self as cj, Number, Value};

use crate::api::Fail;

// ---------------------------------------------------------------------------------------------
// Reading

/// The members of a JSON object, in document order, read once by the core's JSON reader; for
/// the request itself also each member's raw JSON text (a policy is cached by its text, and key
/// params are checked as text).
pub(crate) struct Obj<'a> {
    fields: &'a [(String, Value)],
    raw: &'a [&'a str],
    /// The first error met by [`Obj::keep`].
    first: std::cell::Cell<Option<Fail>>,
}

fn json_fail(e: cj::Error) -> Fail {
    Fail::new("json", e.to_string())
}

pub(crate) fn bad(msg: impl Into<String>) -> Fail {
    Fail::new("bad_request", msg)
}

fn invalid(what: &str, expected: &str) -> Fail {
    bad(format!("invalid type for `{what}`: expected {expected}"))
}

/// A request: its JSON tree and the raw text of its members (empty if it is not an object).
pub(crate) fn parse(text: &str) -> Result<(Value, Vec<&str>), Fail> {
    cj::parse_members(text).map_err(json_fail)
}

impl<'a> Obj<'a> {
    /// The request (from [`parse`]); `None` if it is not an object.
    pub(crate) fn top(doc: &'a Value, raw: &'a [&'a str]) -> Option<Obj<'a>> {
        match doc {
            Value::Object(m) => Some(Obj { fields: m, raw, first: Default::default() }),
            _ => None,
        }
    }

    /// A nested object member.
    pub(crate) fn sub(v: &'a Value, what: &str) -> Result<Obj<'a>, Fail> {
        match v {
            Value::Object(m) => Ok(Obj { fields: m, raw: &[], first: Default::default() }),
            _ => Err(bad(format!("{what} must be a JSON object"))),
        }
    }

    fn index(&self, k: &str) -> Result<Option<usize>, Fail> {
        let mut it = self.fields.iter().enumerate().filter(|(_, (n, _))| n == k);
        let first = it.next().map(|f| f.0);
        if it.next().is_some() {
            return Err(bad(format!("duplicate field `{k}`")));
        }
        Ok(first)
    }

    /// The member `k`, if present (more than once is an error, as with serde's derives). A
    /// member nested deeper than the core's limit is refused here, when it is read: the request
    /// reader keeps it as raw text only (`null` in the tree, raw text not `null`), so that a
    /// request is not refused as a whole for one member's depth (`cj::parse_members`).
    pub(crate) fn get(&self, k: &str) -> Result<Option<&'a Value>, Fail> {
        let fields = self.fields;
        match self.index(k)? {
            Some(i) if matches!(fields[i].1, Value::Null) && self.raw.get(i).is_some_and(|r| *r != "null") => Err(bad(format!(
                "`{k}` is nested deeper than {} levels",
                cj::MAX_DEPTH
            ))),
            i => Ok(i.map(|i| &fields[i].1)),
        }
    }

    /// The raw JSON text of the request's member `k` unless absent or `null`.
    /// Whether the request has member `k` at all (even `null`).
    pub(crate) fn has(&self, k: &str) -> Result<bool, Fail> {
        Ok(self.index(k)?.is_some())
    }

    pub(crate) fn raw_opt(&self, k: &str) -> Result<Option<&'a str>, Fail> {
        let raw = self.raw;
        Ok(self.index(k)?.and_then(|i| raw.get(i).copied()).filter(|r| *r != "null"))
    }

    /// The raw JSON text of the request's member `k`, which must be present.
    pub(crate) fn raw_req(&self, k: &str) -> Result<&'a str, Fail> {
        let raw = self.raw;
        self.index(k)?
            .and_then(|i| raw.get(i).copied())
            .ok_or_else(|| missing(k))
    }

    /// The member `k`, which must be present.
    pub(crate) fn req(&self, k: &str) -> Result<&'a Value, Fail> {
        self.get(k)?.ok_or_else(|| missing(k))
    }

    /// The member `k` unless absent or `null`.
    pub(crate) fn opt(&self, k: &str) -> Result<Option<&'a Value>, Fail> {
        Ok(self.get(k)?.filter(|v| !matches!(v, Value::Null)))
    }

    /// Refuse members not in `known` (serde's `deny_unknown_fields`).
    pub(crate) fn deny_unknown(&self, known: &[&str]) -> Result<(), Fail> {
        match self.fields.iter().find(|(n, _)| !known.contains(&n.as_str())) {
            Some((n, _)) => Err(bad(format!("unknown field `{n}`"))),
            None => Ok(()),
        }
    }

    /// A member's value, or its type's default after recording the error (only the first
    /// one is kept). Readers build a whole value this way and end with [`Obj::done`]: the
    /// reported error is the first in reading order, exactly as with `?` after each member,
    /// but without one early exit per member (each dropping what was read so far, which cost
    /// the module kilobytes of drop code).
    pub(crate) fn keep<T: Default>(&self, r: Result<T, Fail>) -> T {
        match r {
            Ok(v) => v,
            Err(e) => {
                self.record(e);
                T::default()
            }
        }
    }

    /// [`Obj::keep`] with `d` in place of a default (for the unit-variant enums).
    pub(crate) fn keep_or<T: Copy>(&self, r: Result<T, Fail>, d: T) -> T {
        match r {
            Ok(v) => v,
            Err(e) => {
                self.record(e);
                d
            }
        }
    }

    #[inline(never)]
    fn record(&self, e: Fail) {
        let f = self.first.take();
        self.first.set(Some(f.unwrap_or(e)));
    }

    /// Whether [`Obj::keep`] recorded an error.
    pub(crate) fn failed(&self) -> bool {
        let f = self.first.take();
        let failed = f.is_some();
        self.first.set(f);
        failed
    }

    /// `v`, unless [`Obj::keep`] recorded an error (then that error; `v` is dropped).
    pub(crate) fn done<T>(&self, v: T) -> Result<T, Fail> {
        match self.first.take() {
            None => Ok(v),
            Some(e) => Err(e),
        }
    }

    // Typed members.

    pub(crate) fn string(&self, k: &str) -> Result<String, Fail> {
        string(self.req(k)?, k)
    }
    pub(crate) fn string_opt(&self, k: &str) -> Result<Option<String>, Fail> {
        self.opt(k)?.map(|r| string(r, k)).transpose()
    }
    pub(crate) fn u64(&self, k: &str) -> Result<u64, Fail> {
        num_u64(self.req(k)?, k)
    }
    pub(crate) fn u64_opt(&self, k: &str) -> Result<Option<u64>, Fail> {
        self.opt(k)?.map(|r| num_u64(r, k)).transpose()
    }
    /// A `u64` argument: a number or a decimal string.
    pub(crate) fn arg(&self, k: &str) -> Result<u64, Fail> {
        u64_arg(self.req(k)?, k)
    }
    pub(crate) fn arg_opt(&self, k: &str) -> Result<Option<u64>, Fail> {
        self.opt(k)?.map(|r| u64_arg(r, k)).transpose()
    }
    pub(crate) fn u32(&self, k: &str) -> Result<u32, Fail> {
        u32_plain(self.req(k)?, k)
    }
    pub(crate) fn u32_opt(&self, k: &str) -> Result<Option<u32>, Fail> {
        self.opt(k)?.map(|r| u32_plain(r, k)).transpose()
    }
    pub(crate) fn u8(&self, k: &str) -> Result<u8, Fail> {
        let v = num_u64(self.req(k)?, k)?;
        u8::try_from(v).map_err(|_| bad(format!("invalid value for `{k}`: expected u8")))
    }
    pub(crate) fn bool(&self, k: &str) -> Result<bool, Fail> {
        bool(self.req(k)?, k)
    }
    pub(crate) fn f64(&self, k: &str) -> Result<f64, Fail> {
        match self.req(k)? {
            Value::Number(n) => Ok(n.as_f64()),
            _ => Err(invalid(k, "f64")),
        }
    }
    pub(crate) fn strings(&self, k: &str) -> Result<Vec<String>, Fail> {
        strings(self.req(k)?, k)
    }
    /// `Vec<String>` with `#[serde(default)]`: absent is empty (`null` is not).
    pub(crate) fn strings_default(&self, k: &str) -> Result<Vec<String>, Fail> {
        self.get(k)?.map_or(Ok(Vec::new()), |r| strings(r, k))
    }
    pub(crate) fn u64s(&self, k: &str) -> Result<Vec<u64>, Fail> {
        u64s(self.req(k)?, k)
    }
    /// Lowercase or uppercase hex (serde `with` helpers: a required member).
    pub(crate) fn hex(&self, k: &str) -> Result<Vec<u8>, Fail> {
        let s = self.string(k)?;
        karlton_core::store::hex::decode(&s).ok_or_else(|| bad(format!("invalid hex in `{k}`")))
    }
    /// A string naming a unit variant (`rename_all = "snake_case"` enums).
    pub(crate) fn variant<T: Copy>(&self, k: &str, names: &[(&str, T)]) -> Result<T, Fail> {
        variant(self.req(k)?, k, names)
    }
}

fn missing(k: &str) -> Fail {
    bad(format!("missing field `{k}`"))
}

pub(crate) fn string(v: &Value, k: &str) -> Result<String, Fail> {
    match v {
        Value::String(s) => Ok(s.clone()),
        _ => Err(invalid(k, "a string")),
    }
}

fn bool(v: &Value, k: &str) -> Result<bool, Fail> {
    match v {
        Value::Bool(b) => Ok(*b),
        _ => Err(invalid(k, "a boolean")),
    }
}

fn num_u64(v: &Value, k: &str) -> Result<u64, Fail> {
    match v {
        Value::Number(n) => n
            .as_u64()
            .ok_or_else(|| bad(format!("invalid value for `{k}`: expected u64"))),
        _ => Err(invalid(k, "u64")),
    }
}

fn u32_plain(v: &Value, k: &str) -> Result<u32, Fail> {
    let v = num_u64(v, k)?;
    u32::try_from(v).map_err(|_| bad(format!("invalid value for `{k}`: expected u32")))
}

/// A `u64` given as a JSON number or a decimal string.
fn u64_arg(v: &Value, k: &str) -> Result<u64, Fail> {
    let err = |why: &str| bad(format!("`{k}`: {why}"));
    match v {
        Value::Number(Number::U64(u)) => Ok(*u),
        Value::Number(Number::I64(_)) => Err(err("negative integer")),
        Value::Number(Number::F64(v)) => {
            // JSON from JavaScript may write a large integer as a float (1e21); accept only
            // exact integers below 2^53.
            let v = *v;
            if v >= 0.0 && v.fract() == 0.0 && v <= 9_007_199_254_740_992.0 {
                Ok(v as u64)
            } else {
                Err(err("not a non-negative integer below 2^53"))
            }
        }
        Value::String(s) => {
            if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
                return Err(err("not a decimal integer string"));
            }
            // Digits only: the one failure is overflow.
            s.bytes()
                .try_fold(0u64, |acc, b| {
                    acc.checked_mul(10)?.checked_add(u64::from(b - b'0'))
                })
                .ok_or_else(|| err("integer string out of range"))
        }
        _ => Err(err(
            "expected a non-negative integer (number or decimal string)",
        )),
    }
}

fn strings(v: &Value, k: &str) -> Result<Vec<String>, Fail> {
    let Value::Array(a) = v else {
        return Err(invalid(k, "an array of strings"));
    };
    let mut out = Vec::with_capacity(a.len());
    for x in a {
        out.push(string(x, k)?);
    }
    Ok(out)
}

pub(crate) fn u64s(v: &Value, k: &str) -> Result<Vec<u64>, Fail> {
    let Value::Array(a) = v else {
        return Err(invalid(k, "an array of u64"));
    };
    let mut out = Vec::with_capacity(a.len());
    for x in a {
        out.push(num_u64(x, k)?);
    }
    Ok(out)
}

/// The name of a unit variant as serde_json reads an externally tagged enum: `"name"` or
/// `{"name": null}`; any other JSON is a `json` error ("expected value"), as serde_json's
/// `deserialize_enum` reports it.
pub(crate) fn variant_name(v: &Value) -> Result<&str, Fail> {
    match v {
        Value::String(s) => Ok(s),
        Value::Object(m) => match m.as_slice() {
            [(name, Value::Null)] => Ok(name),
            [(_, _)] => Err(bad("invalid type: expected unit variant")),
            _ => Err(Fail::new("json", "expected value")),
        },
        _ => Err(Fail::new("json", "expected value")),
    }
}

pub(crate) fn variant<T: Copy>(v: &Value, k: &str, names: &[(&str, T)]) -> Result<T, Fail> {
    let s = variant_name(v)?;
    names
        .iter()
        .find(|(n, _)| *n == s)
        .map(|(_, v)| *v)
        .ok_or_else(|| bad(format!("unknown variant `{s}` for `{k}`")))
}

// ---------------------------------------------------------------------------------------------
// Writing

/// A JSON string, escaped as serde_json does (core's writer: one copy of the escaping rules).
pub(crate) fn str(out: &mut Vec<u8>, s: &str) {
    karlton_core::json::write_str(out, s);
}

/// An unsigned integer.
pub(crate) fn u64(out: &mut Vec<u8>, mut v: u64) {
    let mut buf = [0u8; 20];
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    out.extend_from_slice(&buf[i..]);
}

pub(crate) fn bool_(out: &mut Vec<u8>, v: bool) {
    out.extend_from_slice(if v { b"true" } else { b"false" });
}

pub(crate) fn null(out: &mut Vec<u8>) {
    out.extend_from_slice(b"null");
}

pub(crate) fn opt_u64(out: &mut Vec<u8>, v: Option<u64>) {
    match v {
        Some(v) => u64(out, v),
        None => null(out),
    }
}

pub(crate) fn hex(out: &mut Vec<u8>, b: &[u8]) {
    const D: &[u8; 16] = b"0123456789abcdef";
    out.push(b'"');
    for &x in b {
        out.push(D[usize::from(x >> 4)]);
        out.push(D[usize::from(x & 15)]);
    }
    out.push(b'"');
}

pub(crate) fn strs(out: &mut Vec<u8>, v: &[String]) {
    out.push(b'[');
    for (i, s) in v.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        str(out, s);
    }
    out.push(b']');
}

pub(crate) fn u64s_out(out: &mut Vec<u8>, v: &[u64]) {
    out.push(b'[');
    for (i, &x) in v.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        u64(out, x);
    }
    out.push(b']');
}

/// An f64 exactly as serde_json writes it (its `zmij` format: shortest round-trip digits,
/// positional for decimal exponents -5..=15 with at least one fractional digit, else
/// `d.ddde±x`; `null` for non-finite), from ryu-js's digits, which ties the same way.
pub(crate) fn f64(out: &mut Vec<u8>, v: f64) {
    if !v.is_finite() {
        return null(out);
    }
    if v.is_sign_negative() {
        out.push(b'-');
    }
    let Some((d, e)) = digits(v) else {
        return out.extend_from_slice(b"0.0");
    };
    let n = d.len() as i32;
    if (-5..=15).contains(&e) {
        if n - 1 <= e {
            out.extend_from_slice(&d);
            out.extend(std::iter::repeat_n(b'0', (e + 1 - n) as usize));
            out.extend_from_slice(b".0");
        } else if e >= 0 {
            out.extend_from_slice(&d[..(e + 1) as usize]);
            out.push(b'.');
            out.extend_from_slice(&d[(e + 1) as usize..]);
        } else {
            out.extend_from_slice(b"0.");
            out.extend(std::iter::repeat_n(b'0', (-e - 1) as usize));
            out.extend_from_slice(&d);
        }
    } else {
        out.push(d[0]);
        if n > 1 {
            out.push(b'.');
            out.extend_from_slice(&d[1..]);
        }
        out.push(b'e');
        out.push(if e < 0 { b'-' } else { b'+' });
        u64(out, u64::from(e.unsigned_abs()));
    }
}

/// Shortest round-trip digits of a finite `f64` and the decimal exponent of the first digit
/// (`(b"15", 0)` for 1.5), from ryu-js. `None` for zero.
fn digits(v: f64) -> Option<(Vec<u8>, i32)> {
    if v == 0.0 {
        return None;
    }
    let mut buf = ryu_js::Buffer::new();
    let s = buf.format_finite(v.abs()).as_bytes();
    let (mant, exp) = match s.iter().position(|&c| c == b'e') {
        Some(i) => (&s[..i], {
            let e = &s[i + 1..];
            let (neg, e) = match e[0] {
                b'-' => (true, &e[1..]),
                b'+' => (false, &e[1..]),
                _ => (false, e),
            };
            let n = e.iter().fold(0i32, |a, &c| a * 10 + i32::from(c - b'0'));
            if neg { -n } else { n }
        }),
        None => (s, 0),
    };
    let point = mant.iter().position(|&c| c == b'.').unwrap_or(mant.len());
    let mut d: Vec<u8> = mant.iter().copied().filter(|&c| c != b'.').collect();
    let lead = d.iter().take_while(|&&c| c == b'0').count();
    d.drain(..lead);
    while d.last() == Some(&b'0') {
        d.pop();
    }
    Some((d, point as i32 - lead as i32 - 1 + exp))
}

#[cfg(test)]
mod tests {
    #[test]
    fn f64_is_serde_json() {
        let mut x = 0x2545_F491_4F6C_DD1Du64;
        let mut vals = vec![
            0.0,
            -0.0,
            1.0,
            0.1,
            1e15,
            1e16,
            1e-5,
            1e-6,
            1.5e-7,
            123456789.125,
            1e21,
            5e-324,
            f64::MAX,
            100.0,
            0.9999999,
        ];
        for _ in 0..50_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            vals.push(f64::from_bits(x));
            vals.push((x % 100_000_000) as f64 / 1_000_000.0);
        }
        for v in vals {
            let mut out = Vec::new();
            super::f64(&mut out, v);
            assert_eq!(
                String::from_utf8(out).unwrap(),
                serde_json::to_string(&v).unwrap(),
                "{:#x}",
                v.to_bits()
            );
        }
    }
}

/// Object writer: `o.key("name")` writes the separator and the key; the caller writes the value.
pub(crate) struct O<'a> {
    pub(crate) out: &'a mut Vec<u8>,
    first: bool,
}

impl<'a> O<'a> {
    pub(crate) fn new(out: &'a mut Vec<u8>) -> O<'a> {
        out.push(b'{');
        O { out, first: true }
    }
    pub(crate) fn key(&mut self, k: &str) -> &mut Vec<u8> {
        if !self.first {
            self.out.push(b',');
        }
        self.first = false;
        // Keys are plain identifiers: no escaping needed.
        self.out.push(b'"');
        self.out.extend_from_slice(k.as_bytes());
        self.out.extend_from_slice(b"\":");
        self.out
    }
    pub(crate) fn str(&mut self, k: &str, v: &str) -> &mut Self {
        str(self.key(k), v);
        self
    }
    pub(crate) fn u64(&mut self, k: &str, v: u64) -> &mut Self {
        u64(self.key(k), v);
        self
    }
    pub(crate) fn opt_u64(&mut self, k: &str, v: Option<u64>) -> &mut Self {
        opt_u64(self.key(k), v);
        self
    }
    pub(crate) fn bool(&mut self, k: &str, v: bool) -> &mut Self {
        bool_(self.key(k), v);
        self
    }
    pub(crate) fn strs(&mut self, k: &str, v: &[String]) -> &mut Self {
        strs(self.key(k), v);
        self
    }
    pub(crate) fn u64s(&mut self, k: &str, v: &[u64]) -> &mut Self {
        u64s_out(self.key(k), v);
        self
    }
    pub(crate) fn hex(&mut self, k: &str, v: &[u8]) -> &mut Self {
        hex(self.key(k), v);
        self
    }
    pub(crate) fn end(&mut self) {
        self.out.push(b'}');
    }
}
