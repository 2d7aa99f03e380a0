//! `karlton.Key`: the core's key scheme, built once at construction.

use crate::convert::{is_int, not_unicode, to_json, type_err, utf8};
use karlton_core::Key;
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyBool, PyInt, PyString, PyTuple};

/// A cache key: `namespace:segment:…[:#params-hash][:vN]`, escaped so that different inputs
/// never build the same key. Immutable; the key string is built once, at construction (the
/// core `Key` keeps it, and the generation-counter key, rendered).
#[pyclass(module = "karlton", name = "Key", frozen)]
pub struct PyKey {
    pub(crate) inner: Key,
    /// `build()` / `str()` as a Python str, made on first ask (a key handed to a cache
    /// never needs it).
    py_built: PyOnceLock<Py<PyString>>,
}

/// An int in `0..2**64`, or a TypeError/ValueError naming `what` (pyo3's own u64 conversion
/// raises an `OverflowError` that names no argument).
pub(crate) fn non_negative(v: &Bound<'_, PyAny>, what: &str) -> PyResult<u64> {
    if !is_int(v) {
        return Err(type_err(&format!("{what} must be an int"), v));
    }
    v.extract::<u64>()
        .map_err(|_| PyValueError::new_err(format!("{what} must be a non-negative int below 2**64, got {v}")))
}

/// One segment's text: borrowed from a Python str, an int written in decimal on the stack
/// (what `str(n)` gives for an exact int), or `str(n)` of a larger int or an int subclass.
enum Seg<'a> {
    Str(&'a str),
    Int([u8; 20], usize),
    Owned(String),
}

impl AsRef<str> for Seg<'_> {
    fn as_ref(&self) -> &str {
        match self {
            Seg::Str(s) => s,
            Seg::Int(b, n) => std::str::from_utf8(&b[..*n]).unwrap_or_default(),
            Seg::Owned(s) => s,
        }
    }
}

fn int_seg(n: i64) -> Seg<'static> {
    use std::io::Write;
    let mut b = [0u8; 20];
    let room = {
        let mut w = &mut b[..];
        let _ = write!(w, "{n}"); // an i64 takes at most 20 bytes
        w.len()
    };
    Seg::Int(b, 20 - room)
}

fn segment<'a>(s: Borrowed<'a, '_, PyAny>, i: usize) -> PyResult<Seg<'a>> {
    if s.is_instance_of::<PyString>() {
        return s.extract::<&'a str>().map(Seg::Str).map_err(|_| not_unicode(&format!("Key(): segment {i}")));
    }
    if s.is_exact_instance_of::<PyInt>() {
        if let Ok(n) = s.extract::<i64>() {
            return Ok(int_seg(n));
        }
    }
    if is_int(&s) {
        return Ok(Seg::Owned(s.str()?.to_str()?.to_owned()));
    }
    Err(type_err(&format!("Key(): segment {i} must be a str or int"), &s))
}

impl PyKey {
    /// The built entry key.
    pub(crate) fn built(&self) -> &str {
        self.inner.as_str()
    }

    /// `[generation key]`: the `gen_keys` of a call with no tags.
    pub(crate) fn gen_keys(&self) -> &[String] {
        self.inner.generation_keys()
    }
}

#[pymethods]
impl PyKey {
    // `*args` rather than `(namespace, *segments)`: the call's own argument tuple, not a slice
    // of it (the namespace is `args[0]`).
    #[new]
    #[pyo3(
        signature = (*args, params = None, version = None, hash_tag = None, max_len = None),
        text_signature = "(namespace, *segments, params=None, version=None, hash_tag=None, max_len=None)"
    )]
    fn new(
        args: &Bound<'_, PyTuple>,
        params: Option<&Bound<'_, PyAny>>,
        version: Option<&Bound<'_, PyAny>>,
        hash_tag: Option<&Bound<'_, PyAny>>,
        max_len: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<PyKey> {
        let Ok(namespace) = args.get_borrowed_item(0) else {
            return Err(PyTypeError::new_err("Key() missing 1 required positional argument: 'namespace'"));
        };
        if !namespace.is_instance_of::<PyString>() {
            return Err(type_err("Key(): namespace must be a str", &namespace));
        }
        let ns = namespace.extract::<&str>().map_err(|_| not_unicode("Key(): namespace"))?;
        let mut key = Key::new(ns)
            .map_err(|e| PyValueError::new_err(format!("Key(): namespace: {e}")))?;
        let mut bad = None;
        key = key.segments((1..args.len()).map_while(|i| {
            args.get_borrowed_item(i).and_then(|s| segment(s, i - 1)).map_err(|e| bad = Some(e)).ok()
        }));
        if let Some(e) = bad {
            return Err(e);
        }
        if let Some(p) = params.filter(|p| !p.is_none()) {
            let v = to_json(p, "Key(): params")?;
            key = key.params(&v).map_err(|e| PyValueError::new_err(format!("Key(): params: {e}")))?;
        }
        if let Some(v) = version.filter(|v| !v.is_none()) {
            key = key.version(non_negative(v, "Key(): version")?);
        }
        if let Some(h) = hash_tag {
            let Ok(b) = h.cast::<PyBool>() else { return Err(type_err("Key(): hash_tag must be a bool", h)) };
            key = key.hash_tag(b.is_true());
        }
        if let Some(m) = max_len.filter(|m| !m.is_none()) {
            let n = non_negative(m, "Key(): max_len")?;
            key = key.max_len(n as usize).map_err(|e| PyValueError::new_err(format!("Key(): max_len: {e}")))?;
        }
        key.as_str(); // render now, once
        Ok(PyKey { inner: key, py_built: PyOnceLock::new() })
    }

    /// The namespace (unescaped).
    #[getter]
    fn namespace(&self) -> &str {
        self.inner.namespace()
    }

    /// The built key string.
    fn build(&self, py: Python<'_>) -> Py<PyString> {
        self.py_built.get_or_init(py, || PyString::new(py, self.built()).unbind()).clone_ref(py)
    }

    /// Key of this namespace's generation counter (what `bump` moves).
    #[getter]
    fn generation_key(&self) -> &str {
        &self.gen_keys()[0]
    }

    /// Key of `tag`'s generation counter in this namespace (what `invalidate_tag` moves).
    #[pyo3(name = "tag_key")]
    fn py_tag_key(&self, tag: &Bound<'_, PyAny>) -> PyResult<String> {
        let Ok(t) = tag.cast::<PyString>() else { return Err(type_err("tag must be a str", tag)) };
        Ok(self.inner.tag_key(utf8(t, "tag")?))
    }

    fn __str__(&self, py: Python<'_>) -> Py<PyString> {
        self.build(py)
    }

    fn __repr__(&self) -> String {
        format!("Key({:?})", self.built())
    }

    fn __eq__(&self, other: &Bound<'_, PyAny>) -> bool {
        other.cast::<PyKey>().is_ok_and(|o| o.get().built() == self.built() && o.get().gen_keys() == self.gen_keys())
    }

    fn __hash__(&self) -> u64 {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        self.built().hash(&mut h);
        h.finish()
    }
}
