//! Python objects <-> JSON, without going through the `json` module.
//!
//! `to_json` turns key params into a `serde_json::Value` (for the canonical params hash);
//! `json_to_py` decodes cached JSON value bytes straight into Python objects (the hit path).

use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyDict, PyFloat, PyInt, PyList, PyString, PyTuple};
use serde::de::{DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};
use std::fmt;

const MAX_DEPTH: usize = 128;

/// `TypeError("{expected}, not {type of v}")`.
pub fn type_err(expected: &str, v: &Bound<'_, PyAny>) -> PyErr {
    let name = v.get_type().name().map(|n| n.to_string()).unwrap_or_default();
    PyTypeError::new_err(format!("{expected}, not {name}"))
}

/// The `ValueError` for a str that is not valid Unicode (a lone surrogate has no UTF-8 form):
/// it names the argument, and the str is never replaced (`str.encode` would raise a
/// `UnicodeEncodeError` that names none).
pub fn not_unicode(what: &str) -> PyErr {
    PyValueError::new_err(format!("{what} is not valid Unicode: it holds a lone surrogate"))
}

/// A str argument as UTF-8, or [`not_unicode`] naming `what`.
pub fn utf8<'a>(s: &'a Bound<'_, PyString>, what: &str) -> PyResult<&'a str> {
    s.to_str().map_err(|_| not_unicode(what))
}

/// An int and not a bool.
pub fn is_int(v: &Bound<'_, PyAny>) -> bool {
    v.is_instance_of::<PyInt>() && !v.is_instance_of::<PyBool>()
}

/// A Python value (dict/list/tuple/str/int/float/bool/None) as JSON. `what` names the argument
/// in error messages.
pub fn to_json(obj: &Bound<'_, PyAny>, what: &str) -> PyResult<Value> {
    to_json_at(obj, what, 0)
}

fn to_json_at(obj: &Bound<'_, PyAny>, what: &str, depth: usize) -> PyResult<Value> {
    if depth > MAX_DEPTH {
        return Err(PyValueError::new_err(format!("{what}: nested deeper than {MAX_DEPTH} levels")));
    }
    if obj.is_none() {
        return Ok(Value::Null);
    }
    if let Ok(b) = obj.cast::<PyBool>() {
        return Ok(Value::Bool(b.is_true()));
    }
    if let Ok(s) = obj.cast::<PyString>() {
        return Ok(Value::String(utf8(s, what)?.to_owned()));
    }
    if obj.is_instance_of::<PyInt>() {
        if let Ok(i) = obj.extract::<i64>() {
            return Ok(Value::Number(i.into()));
        }
        if let Ok(u) = obj.extract::<u64>() {
            return Ok(Value::Number(u.into()));
        }
        return Err(PyValueError::new_err(format!("{what}: integer {obj} does not fit in 64 bits")));
    }
    if let Ok(f) = obj.cast::<PyFloat>() {
        let v = f.value();
        return Number::from_f64(v)
            .map(Value::Number)
            .ok_or_else(|| PyValueError::new_err(format!("{what}: {v} is not a finite number")));
    }
    if let Ok(d) = obj.cast::<PyDict>() {
        let mut m = Map::new();
        for (k, v) in d.iter() {
            let Ok(ks) = k.cast::<PyString>() else { return Err(type_err(&format!("{what}: dict keys must be str"), &k)) };
            m.insert(utf8(ks, &format!("{what}: a dict key"))?.to_owned(), to_json_at(&v, what, depth + 1)?);
        }
        return Ok(Value::Object(m));
    }
    if let Ok(l) = obj.cast::<PyList>() {
        return l.iter().map(|v| to_json_at(&v, what, depth + 1)).collect::<PyResult<_>>().map(Value::Array);
    }
    if let Ok(t) = obj.cast::<PyTuple>() {
        return t.iter().map(|v| to_json_at(&v, what, depth + 1)).collect::<PyResult<_>>().map(Value::Array);
    }
    Err(type_err(&format!("{what}: values must be dict, list, tuple, str, int, float, bool or None"), obj))
}

/// A cached value as JSON bytes, refusing what another runtime would read back differently
/// (the value model in the package README): non-str dict keys (the `json` module would turn
/// `{1: "a"}` into `{"1": "a"}`), ints beyond 64 bits (they would come back as floats), NaN and
/// infinities, other types, and nesting deeper than the core's limit (no reader could decode
/// it). Dict order is kept; floats are written shortest-round-trip.
pub fn encode_value(obj: &Bound<'_, PyAny>) -> PyResult<Vec<u8>> {
    let mut out = Vec::with_capacity(64);
    write_value(obj, &mut out, 0)?;
    Ok(out)
}

fn write_value(obj: &Bound<'_, PyAny>, out: &mut Vec<u8>, depth: usize) -> PyResult<()> {
    const WHAT: &str = "value";
    if let Ok(s) = obj.cast::<PyString>() {
        return write_str(utf8(s, WHAT)?, out);
    }
    if obj.is_none() {
        out.extend_from_slice(b"null");
        return Ok(());
    }
    if let Ok(b) = obj.cast::<PyBool>() {
        out.extend_from_slice(if b.is_true() { b"true" } else { b"false" });
        return Ok(());
    }
    if obj.is_instance_of::<PyInt>() {
        if let Ok(i) = obj.extract::<i64>() {
            out.extend_from_slice(i.to_string().as_bytes());
        } else if let Ok(u) = obj.extract::<u64>() {
            out.extend_from_slice(u.to_string().as_bytes());
        } else {
            return Err(PyValueError::new_err(format!(
                "{WHAT}: integer {obj} does not fit in 64 bits (another runtime would read it back as a float)"
            )));
        }
        return Ok(());
    }
    if let Ok(f) = obj.cast::<PyFloat>() {
        let v = f.value();
        if !v.is_finite() {
            return Err(PyValueError::new_err(format!("{WHAT}: {v} is not a finite number (JSON has no NaN or infinity)")));
        }
        serde_json::to_writer(&mut *out, &v).map_err(|e| PyValueError::new_err(format!("{WHAT}: {e}")))?;
        return Ok(());
    }
    if depth >= karlton_core::json::MAX_DEPTH as usize {
        return Err(PyValueError::new_err(format!(
            "{WHAT}: nested deeper than {} levels: no karlton reader could decode it",
            karlton_core::json::MAX_DEPTH
        )));
    }
    if let Ok(d) = obj.cast::<PyDict>() {
        out.push(b'{');
        for (n, (k, v)) in d.iter().enumerate() {
            let Ok(ks) = k.cast::<PyString>() else {
                return Err(type_err(&format!("{WHAT}: dict keys must be str (JSON has no other keys)"), &k));
            };
            if n > 0 {
                out.push(b',');
            }
            write_str(utf8(ks, "value: a dict key")?, out)?;
            out.push(b':');
            write_value(&v, out, depth + 1)?;
        }
        out.push(b'}');
        return Ok(());
    }
    if let Ok(l) = obj.cast::<PyList>() {
        write_array(l.iter(), out, depth)
    } else if let Ok(t) = obj.cast::<PyTuple>() {
        write_array(t.iter(), out, depth)
    } else {
        Err(type_err(&format!("{WHAT}: values must be dict, list, tuple, str, int, float, bool or None"), obj))
    }
}

fn write_array<'py>(items: impl Iterator<Item = Bound<'py, PyAny>>, out: &mut Vec<u8>, depth: usize) -> PyResult<()> {
    out.push(b'[');
    for (n, v) in items.enumerate() {
        if n > 0 {
            out.push(b',');
        }
        write_value(&v, out, depth + 1)?;
    }
    out.push(b']');
    Ok(())
}

fn write_str(s: &str, out: &mut Vec<u8>) -> PyResult<()> {
    serde_json::to_writer(&mut *out, s).map_err(|e| PyValueError::new_err(format!("value: {e}")))
}

/// Decode JSON bytes into Python objects (like `json.loads`).
pub fn json_to_py<'py>(py: Python<'py>, bytes: &[u8]) -> Result<Bound<'py, PyAny>, serde_json::Error> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let v = PySeed(py).deserialize(&mut de)?;
    de.end()?;
    Ok(v)
}

struct PySeed<'py>(Python<'py>);

impl<'de, 'py> DeserializeSeed<'de> for PySeed<'py> {
    type Value = Bound<'py, PyAny>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
}

fn py_err<E: serde::de::Error>(e: PyErr) -> E {
    E::custom(e.to_string())
}

impl<'de, 'py> Visitor<'de> for PySeed<'py> {
    type Value = Bound<'py, PyAny>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_bool<E: serde::de::Error>(self, v: bool) -> Result<Self::Value, E> {
        Ok(PyBool::new(self.0, v).to_owned().into_any())
    }
    fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Self::Value, E> {
        Ok(v.into_pyobject(self.0).unwrap_or_else(|e| match e {}).into_any())
    }
    fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Self::Value, E> {
        Ok(v.into_pyobject(self.0).unwrap_or_else(|e| match e {}).into_any())
    }
    fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<Self::Value, E> {
        Ok(PyFloat::new(self.0, v).into_any())
    }
    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok(PyString::new(self.0, v).into_any())
    }
    fn visit_unit<E: serde::de::Error>(self) -> Result<Self::Value, E> {
        Ok(self.0.None().into_bound(self.0))
    }
    fn visit_none<E: serde::de::Error>(self) -> Result<Self::Value, E> {
        self.visit_unit()
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let list = PyList::empty(self.0);
        while let Some(v) = seq.next_element_seed(PySeed(self.0))? {
            list.append(v).map_err(py_err::<A::Error>)?;
        }
        Ok(list.into_any())
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let dict = PyDict::new(self.0);
        while let Some(k) = map.next_key_seed(PySeed(self.0))? {
            let v = map.next_value_seed(PySeed(self.0))?;
            dict.set_item(k, v).map_err(py_err::<A::Error>)?;
        }
        Ok(dict.into_any())
    }
}

