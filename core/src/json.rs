//! A small JSON reader (RFC 8259) without serde: text in, a [`Value`] tree out.
//!
//! It exists so that the policy parser ([`crate::Policy::from_json`]) and the WebAssembly
//! module's request reader share one JSON front end that stays small when compiled to wasm (no
//! type-directed deserializers, no float-parsing tables). Objects keep their members in document
//! order, duplicates included, so callers decide what a duplicate means.
//!
//! Numbers are read as serde_json reads them: an integer literal that fits `u64` (or, when
//! negative, `i64`) is an integer; every other number is the nearest `f64` (correctly rounded);
//! a literal beyond the `f64` range is an error. Nesting is limited to 128 levels.

use std::fmt;

/// A JSON number, as read.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Number {
    /// An integer literal in `0..=u64::MAX`.
    U64(u64),
    /// A negative integer literal in `i64::MIN..0`.
    I64(i64),
    /// Any other number (a fraction, an exponent, or an integer beyond 64 bits), rounded to the
    /// nearest `f64`; always finite.
    F64(f64),
}

impl Number {
    /// The number as a `u64`, if it is an integer in range.
    pub fn as_u64(self) -> Option<u64> {
        match self {
            Number::U64(u) => Some(u),
            _ => None,
        }
    }

    /// The number as an `i64`, if it is an integer in range.
    pub fn as_i64(self) -> Option<i64> {
        match self {
            Number::U64(u) => i64::try_from(u).ok(),
            Number::I64(i) => Some(i),
            Number::F64(_) => None,
        }
    }

    /// The number as an `f64` (integers converted, rounding to nearest).
    pub fn as_f64(self) -> f64 {
        match self {
            Number::U64(u) => u as f64,
            Number::I64(i) => i as f64,
            Number::F64(f) => f,
        }
    }
}

/// A JSON value.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// `null`
    Null,
    /// `true` / `false`
    Bool(bool),
    /// A number.
    Number(Number),
    /// A string, unescaped.
    String(String),
    /// An array.
    Array(Vec<Value>),
    /// An object: its members in document order (duplicates kept).
    Object(Vec<(String, Value)>),
}

impl Value {
    /// The first member named `k`, when this is an object that has one.
    pub fn get(&self, k: &str) -> Option<&Value> {
        match self {
            Value::Object(m) => m.iter().find(|(n, _)| n == k).map(|(_, v)| v),
            _ => None,
        }
    }
}

/// Why a text is not JSON: what was expected and where (1-based line and column, as
/// serde_json reports them).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{what} at line {line} column {column}")]
pub struct Error {
    /// What went wrong, e.g. "expected value".
    pub what: &'static str,
    /// 1-based line.
    pub line: usize,
    /// Column (bytes from the line start; 0 at end of input after a newline).
    pub column: usize,
}

/// The deepest nesting of arrays and objects karlton reads — in params, in policies and in
/// cached JSON values, in every runtime (serde_json's default limit, which the Python reader
/// has). Writers refuse deeper values ([`nesting_within_limit`]) so nothing is stored that a
/// reader would reject.
pub const MAX_DEPTH: u32 = 128;

/// Whether the JSON text `bytes` nests arrays and objects at most [`MAX_DEPTH`] deep (a scan
/// of brackets outside strings; the text is assumed to be JSON a serializer wrote).
pub fn nesting_within_limit(bytes: &[u8]) -> bool {
    let (mut depth, mut in_str, mut esc) = (0u32, false, false);
    for &b in bytes {
        if in_str {
            match b {
                _ if esc => esc = false,
                b'\\' => esc = true,
                b'"' => in_str = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_str = true,
            b'[' | b'{' => {
                depth += 1;
                if depth > MAX_DEPTH {
                    return false;
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    true
}

/// Parse one JSON text (whitespace around it allowed, nothing else after it), nested at most
/// [`MAX_DEPTH`] deep.
pub fn parse(text: &str) -> Result<Value, Error> {
    parse_with(text, MAX_DEPTH).map(|(v, _)| v)
}

/// [`parse`], plus the raw text of each member value when the text is an object (in member
/// order; empty otherwise), for callers that keep a member as text: a request envelope whose
/// members are values of their own (the wasm module's requests).
///
/// The envelope takes no level from its members: each may nest [`MAX_DEPTH`] deep, as it may
/// when sent alone. A member nested deeper is not an error of the whole text: it is kept as raw
/// text only, with `null` in the tree (tell it from a real `null` by its raw text, which is
/// not `"null"`), so that the caller refuses it when, and only if, it reads that member — as
/// [`parse`] of its raw text does. Params of the allowed depth are then read from a request as
/// they are alone, and a too-deep one is refused at its turn, naming itself.
pub fn parse_members(text: &str) -> Result<(Value, Vec<&str>), Error> {
    parse_with(text, MAX_DEPTH + 1)
}

const TOO_DEEP: &str = "recursion limit exceeded";

fn parse_with(text: &str, max_depth: u32) -> Result<(Value, Vec<&str>), Error> {
    let envelope = max_depth > MAX_DEPTH;
    let mut p = Parser { s: text, b: text.as_bytes(), i: 0, depth: 0, max_depth, envelope, spans: Vec::new() };
    let v = p.value()?;
    p.ws();
    if p.i < p.b.len() {
        return Err(p.err("trailing characters"));
    }
    let raw = p.spans.iter().map(|&(a, b)| text.get(a..b).unwrap_or_default()).collect();
    Ok((v, raw))
}

/// Write `s` as a JSON string literal (escapes as serde_json writes them: `\"`, `\\`, `\n`,
/// `\r`, `\t`, `\b`, `\f`, other control characters as `\u00XX`; nothing else escaped).
pub fn write_str(out: &mut Vec<u8>, s: &str) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.push(b'"');
    let b = s.as_bytes();
    let mut start = 0;
    for (i, &c) in b.iter().enumerate() {
        let esc: &[u8] = match c {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            0x08 => b"\\b",
            0x0c => b"\\f",
            0..=0x1f => b"",
            _ => continue,
        };
        out.extend_from_slice(&b[start..i]);
        if esc.is_empty() {
            out.extend_from_slice(b"\\u00");
            out.push(HEX[usize::from(c >> 4)]);
            out.push(HEX[usize::from(c & 15)]);
        } else {
            out.extend_from_slice(esc);
        }
        start = i + 1;
    }
    out.extend_from_slice(&b[start..]);
    out.push(b'"');
}

struct Parser<'a> {
    s: &'a str,
    b: &'a [u8],
    i: usize,
    depth: u32,
    max_depth: u32,
    /// [`parse_members`]: a too-deep member of the top-level object is kept as raw text.
    envelope: bool,
    /// Byte ranges of the top-level object's member values.
    spans: Vec<(usize, usize)>,
}

impl Parser<'_> {
    #[inline(never)]
    fn err(&self, what: &'static str) -> Error {
        let upto = &self.b[..self.i.min(self.b.len())];
        let line = 1 + upto.iter().filter(|&&c| c == b'\n').count();
        let column = upto.iter().rev().take_while(|&&c| c != b'\n').count();
        Error { what, line, column }
    }

    fn ws(&mut self) {
        while matches!(self.b.get(self.i), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.i += 1;
        }
    }

    fn peek(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }

    fn eat(&mut self, c: u8, what: &'static str) -> Result<(), Error> {
        self.ws();
        if self.peek() == Some(c) {
            self.i += 1;
            Ok(())
        } else {
            Err(self.err(what))
        }
    }

    fn lit(&mut self, word: &[u8], v: Value) -> Result<Value, Error> {
        if self.b[self.i..].starts_with(word) {
            self.i += word.len();
            Ok(v)
        } else {
            Err(self.err("expected value"))
        }
    }

    fn value(&mut self) -> Result<Value, Error> {
        self.ws();
        let Some(c) = self.peek() else {
            return Err(self.err("EOF while parsing a value"));
        };
        match c {
            b'n' => self.lit(b"null", Value::Null),
            b't' => self.lit(b"true", Value::Bool(true)),
            b'f' => self.lit(b"false", Value::Bool(false)),
            b'"' => Ok(Value::String(self.string()?)),
            b'-' | b'0'..=b'9' => Ok(Value::Number(self.number()?)),
            b'[' | b'{' => {
                self.depth += 1;
                if self.depth > self.max_depth {
                    return Err(self.err(TOO_DEEP));
                }
                self.i += 1;
                let v = if c == b'[' { self.array()? } else { self.object()? };
                self.depth -= 1;
                Ok(v)
            }
            _ => Err(self.err("expected value")),
        }
    }

    fn array(&mut self) -> Result<Value, Error> {
        let mut items = Vec::new();
        self.ws();
        if self.peek() == Some(b']') {
            self.i += 1;
            return Ok(Value::Array(items));
        }
        loop {
            items.push(self.value()?);
            self.ws();
            match self.peek() {
                Some(b',') => self.i += 1,
                Some(b']') => {
                    self.i += 1;
                    return Ok(Value::Array(items));
                }
                None => return Err(self.err("EOF while parsing a list")),
                _ => return Err(self.err("expected `,` or `]`")),
            }
        }
    }

    fn object(&mut self) -> Result<Value, Error> {
        // 1 for the top-level object (the envelope of `parse_members`)
        let level = self.depth;
        let mut members = Vec::new();
        self.ws();
        if self.peek() == Some(b'}') {
            self.i += 1;
            return Ok(Value::Object(members));
        }
        loop {
            self.ws();
            match self.peek() {
                Some(b'"') => {}
                None => return Err(self.err("EOF while parsing an object")),
                _ => return Err(self.err("key must be a string")),
            }
            let k = self.string()?;
            self.eat(b':', "expected `:`")?;
            self.ws();
            let start = self.i;
            let v = match self.value() {
                Err(e) if e.what == TOO_DEEP && self.envelope && level == 1 => {
                    // (the error left the levels it came up through counted)
                    self.depth = 1;
                    self.i = start;
                    self.skip_value()?;
                    Value::Null
                }
                v => v?,
            };
            members.push((k, v));
            if self.depth == 1 {
                self.spans.push((start, self.i));
            }
            self.ws();
            match self.peek() {
                Some(b',') => self.i += 1,
                Some(b'}') => {
                    self.i += 1;
                    return Ok(Value::Object(members));
                }
                None => return Err(self.err("EOF while parsing an object")),
                _ => return Err(self.err("expected `,` or `}`")),
            }
        }
    }

    /// At an array or object: moves past it without building it (and without recursion),
    /// checking only that its brackets and strings close.
    fn skip_value(&mut self) -> Result<(), Error> {
        let mut depth = 0u64;
        while let Some(c) = self.peek() {
            self.i += 1;
            match c {
                b'"' => {
                    while let Some(c) = self.peek() {
                        self.i += if c == b'\\' { 2 } else { 1 };
                        if c == b'"' {
                            break;
                        }
                    }
                }
                b'[' | b'{' => depth += 1,
                b']' | b'}' => {
                    depth -= 1;
                    if depth == 0 {
                        return Ok(());
                    }
                }
                _ => {}
            }
        }
        Err(self.err("EOF while parsing a value"))
    }

    fn hex4(&mut self) -> Result<u32, Error> {
        let mut n = 0;
        for _ in 0..4 {
            let d = match self.peek() {
                Some(c @ b'0'..=b'9') => c - b'0',
                Some(c @ b'a'..=b'f') => c - b'a' + 10,
                Some(c @ b'A'..=b'F') => c - b'A' + 10,
                None => return Err(self.err("EOF while parsing a string")),
                _ => return Err(self.err("invalid escape")),
            };
            n = n * 16 + u32::from(d);
            self.i += 1;
        }
        Ok(n)
    }

    /// At the opening quote: the unescaped string.
    fn string(&mut self) -> Result<String, Error> {
        self.i += 1;
        // Fast path: no escapes, a slice of the input (already UTF-8; quotes are ASCII).
        let first = self.i;
        while matches!(self.peek(), Some(c) if c != b'"' && c != b'\\' && c >= 0x20) {
            self.i += 1;
        }
        if self.peek() == Some(b'"') {
            self.i += 1;
            return Ok(self.s.get(first..self.i - 1).unwrap_or_default().to_owned());
        }
        self.i = first;
        let mut out = Vec::new();
        loop {
            let start = self.i;
            while matches!(self.peek(), Some(c) if c != b'"' && c != b'\\' && c >= 0x20) {
                self.i += 1;
            }
            out.extend_from_slice(&self.b[start..self.i]);
            match self.peek() {
                None => return Err(self.err("EOF while parsing a string")),
                Some(b'"') => {
                    self.i += 1;
                    // The input is a `&str` and escapes write whole characters: still UTF-8.
                    return String::from_utf8(out).map_err(|_| self.err("invalid unicode"));
                }
                Some(b'\\') => {
                    self.i += 1;
                    let Some(e) = self.peek() else {
                        return Err(self.err("EOF while parsing a string"));
                    };
                    self.i += 1;
                    let c = match e {
                        b'"' => '"',
                        b'\\' => '\\',
                        b'/' => '/',
                        b'b' => '\u{8}',
                        b'f' => '\u{c}',
                        b'n' => '\n',
                        b'r' => '\r',
                        b't' => '\t',
                        b'u' => {
                            let mut n = self.hex4()?;
                            if (0xDC00..0xE000).contains(&n) {
                                return Err(self.err("lone trailing surrogate in hex escape"));
                            }
                            if (0xD800..0xDC00).contains(&n) {
                                if !self.b[self.i..].starts_with(b"\\u") {
                                    return Err(self.err("lone leading surrogate in hex escape"));
                                }
                                self.i += 2;
                                let lo = self.hex4()?;
                                if !(0xDC00..0xE000).contains(&lo) {
                                    return Err(self.err("lone leading surrogate in hex escape"));
                                }
                                n = 0x10000 + ((n - 0xD800) << 10) + (lo - 0xDC00);
                            }
                            char::from_u32(n).ok_or_else(|| self.err("invalid unicode"))?
                        }
                        _ => {
                            self.i -= 1;
                            return Err(self.err("invalid escape"));
                        }
                    };
                    let mut buf = [0u8; 4];
                    out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
                }
                Some(_) => {
                    return Err(self.err("control character (\\u0000-\\u001F) found while parsing a string"));
                }
            }
        }
    }

    fn digits(&mut self) -> usize {
        let s = self.i;
        while matches!(self.peek(), Some(b'0'..=b'9')) {
            self.i += 1;
        }
        self.i - s
    }

    fn number(&mut self) -> Result<Number, Error> {
        let start = self.i;
        let neg = self.peek() == Some(b'-');
        if neg {
            self.i += 1;
        }
        let int_start = self.i;
        match self.peek() {
            Some(b'0') => self.i += 1,
            Some(b'1'..=b'9') => {
                self.digits();
            }
            _ => return Err(self.err("invalid number")),
        }
        let int_end = self.i;
        let mut frac = (int_end, int_end);
        let mut exp: i64 = 0;
        let mut is_float = false;
        if self.peek() == Some(b'.') {
            self.i += 1;
            let s = self.i;
            if self.digits() == 0 {
                return Err(self.err("invalid number"));
            }
            frac = (s, self.i);
            is_float = true;
        }
        if matches!(self.peek(), Some(b'e' | b'E')) {
            self.i += 1;
            let eneg = match self.peek() {
                Some(b'-') => {
                    self.i += 1;
                    true
                }
                Some(b'+') => {
                    self.i += 1;
                    false
                }
                _ => false,
            };
            let s = self.i;
            if self.digits() == 0 {
                return Err(self.err("invalid number"));
            }
            // Saturate: anything beyond ±10^6 is far outside the f64 range either way.
            let e = self.b[s..self.i]
                .iter()
                .fold(0i64, |a, &c| (a * 10 + i64::from(c - b'0')).min(1_000_000));
            exp = if eneg { -e } else { e };
            is_float = true;
        }
        let int = &self.b[int_start..int_end];
        if !is_float {
            let n = int
                .iter()
                .try_fold(0u64, |a, &c| a.checked_mul(10)?.checked_add(u64::from(c - b'0')));
            match (n, neg) {
                (Some(n), false) => return Ok(Number::U64(n)),
                // "-0" is the integer 0 (as serde_json reads it).
                (Some(0), true) => return Ok(Number::U64(0)),
                (Some(n), true) if n <= 1 << 63 => {
                    return Ok(Number::I64((n as i64).wrapping_neg()));
                }
                _ => {}
            }
        }
        // Decimal digits without leading zeros, and the power of ten they are scaled by.
        let mut d: Vec<u8> = int.iter().chain(&self.b[frac.0..frac.1]).map(|c| c - b'0').collect();
        exp -= (frac.1 - frac.0) as i64;
        let lead = d.iter().take_while(|&&c| c == 0).count();
        d.drain(..lead);
        while d.last() == Some(&0) {
            d.pop();
            exp += 1;
        }
        let v = decimal_to_f64(&d, exp);
        if !v.is_finite() {
            self.i = start;
            return Err(self.err("number out of range"));
        }
        Ok(Number::F64(if neg { -v } else { v }))
    }
}

impl fmt::Display for Value {
    /// Compact JSON (for messages and tests; not canonical).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut out = Vec::new();
        write_value(&mut out, self);
        f.write_str(&String::from_utf8_lossy(&out))
    }
}

fn write_value(out: &mut Vec<u8>, v: &Value) {
    match v {
        Value::Null => out.extend_from_slice(b"null"),
        Value::Bool(b) => out.extend_from_slice(if *b { b"true" } else { b"false" }),
        Value::Number(Number::U64(u)) => out.extend_from_slice(u.to_string().as_bytes()),
        Value::Number(Number::I64(i)) => out.extend_from_slice(i.to_string().as_bytes()),
        Value::Number(Number::F64(x)) => {
            out.extend_from_slice(ryu_js::Buffer::new().format(*x).as_bytes())
        }
        Value::String(s) => write_str(out, s),
        Value::Array(a) => {
            out.push(b'[');
            for (i, x) in a.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_value(out, x);
            }
            out.push(b']');
        }
        Value::Object(m) => {
            out.push(b'{');
            for (i, (k, x)) in m.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_str(out, k);
                out.push(b':');
                write_value(out, x);
            }
            out.push(b'}');
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Decimal to binary, correctly rounded, with a small bignum (no tables).

/// Little-endian base-2^32 unsigned integer.
#[derive(Clone)]
struct Big(Vec<u32>);

impl Big {
    fn trim(&mut self) {
        while self.0.last() == Some(&0) {
            self.0.pop();
        }
    }
    fn mul_add(&mut self, m: u32, a: u32) {
        let mut carry = u64::from(a);
        for w in &mut self.0 {
            let t = u64::from(*w) * u64::from(m) + carry;
            *w = t as u32;
            carry = t >> 32;
        }
        if carry > 0 {
            self.0.push(carry as u32);
        }
    }
    fn mul_pow10(&mut self, mut e: u64) {
        while e > 0 {
            let k = e.min(9);
            self.mul_add(10u32.pow(k as u32), 0);
            e -= k;
        }
    }
    fn bits(&self) -> u64 {
        match self.0.last() {
            None => 0,
            Some(&top) => self.0.len() as u64 * 32 - u64::from(top.leading_zeros()),
        }
    }
    fn shl(&mut self, s: u64) {
        if !s.is_multiple_of(32) {
            self.mul_add(1 << (s % 32), 0);
        }
        let mut v = vec![0; (s / 32) as usize];
        v.append(&mut self.0);
        self.0 = v;
    }
    fn bit(&self, i: u64) -> bool {
        self.0.get((i / 32) as usize).is_some_and(|w| w >> (i % 32) & 1 == 1)
    }
    /// Whether any bit below `i` is set.
    fn any_below(&self, i: u64) -> bool {
        let (w, b) = ((i / 32) as usize, (i % 32) as u32);
        self.0.iter().take(w).any(|&x| x != 0)
            || (b > 0 && self.0.get(w).is_some_and(|&x| x & ((1 << b) - 1) != 0))
    }
    fn ge(&self, o: &Big) -> bool {
        if self.0.len() != o.0.len() {
            return self.0.len() > o.0.len();
        }
        for (a, b) in self.0.iter().rev().zip(o.0.iter().rev()) {
            if a != b {
                return a > b;
            }
        }
        true
    }
    fn sub(&mut self, o: &Big) {
        let mut borrow = 0i64;
        for (i, w) in self.0.iter_mut().enumerate() {
            let t = i64::from(*w) - i64::from(o.0.get(i).copied().unwrap_or(0)) - borrow;
            borrow = i64::from(t < 0);
            *w = t.rem_euclid(1 << 32) as u32;
        }
        self.trim();
    }
}

/// `m · 2^e` for `m < 2^54`, exactly (the result is a representable double or infinite).
fn scale(m: u64, e: i64) -> f64 {
    let mut v = m as f64;
    let mut e = e;
    while e > 0 {
        let k = e.min(1000);
        v *= f64::from_bits(((1023 + k) as u64) << 52);
        e -= k;
    }
    while e < 0 {
        // Step by at most 2^-1000 while far away, then land exactly.
        let k = (-e).min(1000);
        v *= f64::from_bits(((1023 - k) as u64) << 52);
        e += k;
    }
    v
}

/// The nearest double to `0.d₁d₂…·10^(len+exp)`, i.e. the integer `d` (decimal digits, most
/// significant first, no leading zeros) times `10^exp`; ties to even.
pub(crate) fn decimal_to_f64(d: &[u8], exp: i64) -> f64 {
    if d.is_empty() {
        return 0.0;
    }
    let n = d.len() as i64;
    if n + exp > 310 {
        return f64::INFINITY;
    }
    if n + exp < -326 {
        return 0.0;
    }
    // Fast path: an exact integer significand and an exact power of ten.
    if n <= 15 && exp.abs() <= 22 {
        let m = d.iter().fold(0u64, |a, &c| a * 10 + u64::from(c)) as f64;
        let p = 10f64.powi(exp.abs() as i32);
        return if exp < 0 { m / p } else { m * p };
    }
    let mut num = Big(Vec::new());
    for &c in d {
        num.mul_add(10, u32::from(c));
    }
    // value = q · 2^-s, plus a remainder below q's last bit when `sticky_rem`.
    let (q, s, sticky_rem) = if exp >= 0 {
        num.mul_pow10(exp as u64);
        (num, 0u64, false)
    } else {
        let mut den = Big(vec![1]);
        den.mul_pow10((-exp) as u64);
        // Scale so the quotient has at least 66 bits, then divide bit by bit.
        let s = (66 + den.bits() as i64 - num.bits() as i64).max(0) as u64;
        num.shl(s);
        let qbits = (num.bits() + 1).saturating_sub(den.bits()).max(1);
        let mut q = Big(vec![0; qbits.div_ceil(32) as usize]);
        let mut dsh = den;
        dsh.shl(qbits - 1);
        // Restoring division; the remainder doubles instead of the divisor halving.
        for i in (0..qbits).rev() {
            if num.ge(&dsh) {
                num.sub(&dsh);
                q.0[(i / 32) as usize] |= 1 << (i % 32);
            }
            num.mul_add(2, 0);
        }
        q.trim();
        (q, s, !num.0.is_empty())
    };
    let qb = q.bits();
    // The exponent of the top bit.
    let e2 = qb as i64 - 1 - s as i64;
    // Bits kept: 53 for normal numbers, fewer below 2^-1022.
    let keep = if e2 >= -1022 { 53 } else { 53 - (-1022 - e2) };
    if keep <= 0 {
        // Below half the smallest subnormal, or at most exactly half: rounds to 0 (ties to even)
        // unless above half.
        if keep == 0 {
            // The value is in [2^-1075, 2^-1074): above half rounds up to the smallest subnormal.
            let above = q.any_below(qb - 1) || sticky_rem;
            return if above { f64::from_bits(1) } else { 0.0 };
        }
        return 0.0;
    }
    if qb <= keep as u64 {
        // Fewer bits than a double holds (only an integer gets here): exact.
        let m = q.0.iter().rev().fold(0u64, |a, &w| a << 32 | u64::from(w));
        return scale(m, -(s as i64));
    }
    let drop = qb - keep as u64;
    let mut m = 0u64;
    for i in (drop..qb).rev() {
        m = m << 1 | u64::from(q.bit(i));
    }
    let half = drop > 0 && q.bit(drop - 1);
    let rest = (drop > 1 && q.any_below(drop - 1)) || sticky_rem;
    if half && (rest || m & 1 == 1) {
        m += 1;
    }
    scale(m, e2 - keep + 1)
}

#[cfg(test)]
mod tests {

    /// Issue 11: one nesting limit for writers and readers — a value the parser refuses is
    /// never written, and one it takes is never refused.
    #[test]
    fn nesting_limit_matches_the_parser() {
        for depth in [1usize, 127, 128, 129, 400] {
            let text = format!("{}{}", "[".repeat(depth), "]".repeat(depth));
            assert_eq!(nesting_within_limit(text.as_bytes()), parse(&text).is_ok(), "depth {depth}");
        }
        // Brackets inside strings (and escaped quotes) do not count.
        let s = format!("[\"{}\\\"{}\"]", "[".repeat(300), "{".repeat(300));
        assert!(parse(&s).is_ok() && nesting_within_limit(s.as_bytes()));
    }

    /// Issue 9: a request envelope does not take a level from its members — params nested
    /// exactly MAX_DEPTH deep are read from a request as they are alone; one more is refused
    /// when the member is read as a value (its raw text through `parse`).
    #[test]
    fn envelope_members_nest_as_deep_as_values() {
        for (depth, open, close) in [127usize, 128, 129, 130, 5000].into_iter().flat_map(|d| [(d, "[", "]"), (d, r#"{"k":"#, "}")]) {
            let member = format!("{}\"]}}\\\"[\"{}", open.repeat(depth), close.repeat(depth));
            let req = format!(r#"{{"op":"params_hash","params":{member},"after":7}}"#);
            let (v, raw) = parse_members(&req).expect("the envelope never refuses a member's depth");
            assert_eq!(raw, ["\"params_hash\"", member.as_str(), "7"], "depth {depth}");
            assert_eq!(v.get("after"), Some(&Value::Number(Number::U64(7))));
            // within the limit in the tree; beyond it null in the tree, and refused when read
            let params = v.get("params").expect("present");
            assert_eq!(*params == Value::Null, depth > 128, "depth {depth}");
            assert_eq!(parse(raw[1]).is_ok(), depth <= 128, "depth {depth}");
        }
        // unclosed, it is still an error of the text
        assert!(parse_members(&format!(r#"{{"params":{}}}"#, "[".repeat(200))).is_err());
        // and outside an envelope the limit is the limit
        let deep = format!("{}{}", "[".repeat(129), "]".repeat(129));
        assert!(parse(&deep).is_err());
        assert!(parse_members(&format!("[{deep}]")).is_err());
    }

    use super::*;

    fn num(t: &str) -> Number {
        match parse(t).unwrap() {
            Value::Number(n) => n,
            v => panic!("{v:?}"),
        }
    }

    #[test]
    fn values_and_order() {
        let v = parse(r#" {"b":[1,-2,3.5,true,null],"a":"x\u00e9\n","b":{}} "#).unwrap();
        let Value::Object(m) = &v else { panic!() };
        assert_eq!(m.len(), 3);
        assert_eq!(m[0].0, "b");
        assert_eq!(v.get("a"), Some(&Value::String("xé\n".into())));
        assert_eq!(v.to_string(), r#"{"b":[1,-2,3.5,true,null],"a":"xé\n","b":{}}"#);
        let (_, raw) = parse_members(r#" {"b": [1, {"c":2}] ,"a" :"x" } "#).unwrap();
        assert_eq!(raw, [r#"[1, {"c":2}]"#, r#""x""#]);
        assert!(parse_members("[1]").unwrap().1.is_empty());
        assert_eq!(num("18446744073709551615"), Number::U64(u64::MAX));
        assert_eq!(num("-9223372036854775808"), Number::I64(i64::MIN));
        assert_eq!(num("18446744073709551616"), Number::F64(18446744073709551616.0));
        assert_eq!(num("-0"), Number::U64(0));
        assert_eq!(num("-0.0"), Number::F64(-0.0));
        assert_eq!(parse(r#""\ud83d\ude00""#).unwrap(), Value::String("😀".into()));
    }

    #[test]
    fn errors() {
        for t in [
            "", " ", "{", "[1,]", "{\"a\" 1}", "{1:2}", "01", "1.", "-", "1e", "tru", "\"\\x\"",
            "\"\\ud800\"", "\"a", "[] []", "1e400", "-1e400", "\"\u{1}\"", "{\"a\":1,}",
        ] {
            assert!(parse(t).is_err(), "{t:?}");
        }
        assert_eq!(parse("").unwrap_err().to_string(), "EOF while parsing a value at line 1 column 0");
        assert_eq!(parse("[1,\n x]").unwrap_err().to_string(), "expected value at line 2 column 1");
        let deep = "[".repeat(129) + &"]".repeat(129);
        assert!(parse(&deep).is_err());
        let ok = "[".repeat(128) + &"]".repeat(128);
        assert!(parse(&ok).is_ok());
    }

    #[test]
    fn floats_are_correctly_rounded() {
        let mut x = 0x9E37_79B9_7F4A_7C15u64;
        let mut texts: Vec<String> = [
            "0.1", "1e23", "2.2250738585072011e-308", "2.2250738585072014e-308", "4.9e-324",
            "2.4703282292062327e-324", "2.4703282292062328e-324", "1.7976931348623157e308",
            "1.7976931348623158e308", "9007199254740993", "9007199254740992.5", "0.000001",
            "123456789012345678901234567890e-10", "1e-400", "5e-324", "3e-324", "1e308",
            "0.30000000000000004", "7.2057594037927933e16", "1.00000000000000011102230246251565404236316680908203125",
            "1.00000000000000011102230246251565404236316680908203124",
            "1.00000000000000011102230246251565404236316680908203126",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        for _ in 0..20_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let f = f64::from_bits(x >> 1);
            if f.is_finite() {
                texts.push(format!("{f:e}"));
                texts.push(format!("{:.3e}", f));
            }
            texts.push(format!("{}.{}e{}", x % 100_000, x % 9_999_991, (x >> 40) as i64 % 320 - 160));
            texts.push(format!("{}e-{}", x, 300 + x % 40));
        }
        for t in texts {
            let want: f64 = t.parse().unwrap();
            let got = match parse(&t) {
                Ok(Value::Number(n)) => n.as_f64(),
                other => panic!("{t}: {other:?}"),
            };
            assert_eq!(got.to_bits(), want.to_bits(), "{t}");
        }
    }
}
