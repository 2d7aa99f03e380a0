//! `karlton.Key`: the core's key scheme, built once at construction.

use crate::convert::to_json;
use karlton_core::Key;
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyInt, PyString, PyTuple};

/// A cache key: `namespace:segment:…[:#params-hash][:vN]`, escaped so that different inputs
/// never build the same key. Immutable; the key string is built once, at construction.
#[pyclass(module = "karlton", name = "Key", frozen)]
pub struct PyKey {
    pub(crate) inner: Key,
    pub(crate) built: String,
    pub(crate) gen_key: String,
    py_built: Py<PyString>,
}

fn non_negative(v: &Bound<'_, PyAny>, what: &str) -> PyResult<u64> {
    if v.is_instance_of::<PyBool>() || !v.is_instance_of::<PyInt>() {
        return Err(PyTypeError::new_err(format!(
            "{what} must be an int, not {}",
            v.get_type().name()?
        )));
    }
    v.extract::<u64>()
        .map_err(|_| PyValueError::new_err(format!("{what} must be a non-negative int below 2**64, got {v}")))
}

impl PyKey {
    pub(crate) fn tag_key_str(&self, tag: &str) -> String {
        self.inner.tag_key(tag)
    }
}

#[pymethods]
impl PyKey {
    #[new]
    #[pyo3(signature = (namespace, *segments, params = None, version = None, hash_tag = None, max_len = None))]
    fn new(
        py: Python<'_>,
        namespace: &Bound<'_, PyAny>,
        segments: &Bound<'_, PyTuple>,
        params: Option<&Bound<'_, PyAny>>,
        version: Option<&Bound<'_, PyAny>>,
        hash_tag: Option<&Bound<'_, PyAny>>,
        max_len: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<PyKey> {
        let Ok(ns) = namespace.cast::<PyString>() else {
            return Err(PyTypeError::new_err(format!(
                "Key(): namespace must be a str, not {}",
                namespace.get_type().name()?
            )));
        };
        let mut key = Key::new(ns.to_str()?).map_err(|e| PyValueError::new_err(format!("Key(): namespace: {e}")))?;
        for (i, s) in segments.iter().enumerate() {
            if let Ok(s) = s.cast::<PyString>() {
                key = key.segment(s.to_str()?);
            } else if s.is_instance_of::<PyInt>() && !s.is_instance_of::<PyBool>() {
                key = key.segment(&s.str()?.to_str()?.to_owned());
            } else {
                return Err(PyTypeError::new_err(format!(
                    "Key(): segment {i} must be a str or int, not {}",
                    s.get_type().name()?
                )));
            }
        }
        if let Some(p) = params.filter(|p| !p.is_none()) {
            let v = to_json(p, "Key(): params")?;
            key = key.params(&v).map_err(|e| PyValueError::new_err(format!("Key(): params: {e}")))?;
        }
        if let Some(v) = version.filter(|v| !v.is_none()) {
            key = key.version(non_negative(v, "Key(): version")?);
        }
        if let Some(h) = hash_tag {
            let Ok(b) = h.cast::<PyBool>() else {
                return Err(PyTypeError::new_err(format!("Key(): hash_tag must be a bool, not {}", h.get_type().name()?)));
            };
            key = key.hash_tag(b.is_true());
        }
        if let Some(m) = max_len.filter(|m| !m.is_none()) {
            let n = non_negative(m, "Key(): max_len")?;
            key = key.max_len(n as usize).map_err(|e| PyValueError::new_err(format!("Key(): max_len: {e}")))?;
        }
        let built = key.build();
        let gen_key = key.generation_key();
        let py_built = PyString::new(py, &built).unbind();
        Ok(PyKey { inner: key, built, gen_key, py_built })
    }

    /// The namespace (unescaped).
    #[getter]
    fn namespace(&self) -> &str {
        self.inner.namespace()
    }

    /// The built key string.
    fn build(&self, py: Python<'_>) -> Py<PyString> {
        self.py_built.clone_ref(py)
    }

    /// Key of this namespace's generation counter (what `bump` moves).
    #[getter]
    fn generation_key(&self) -> &str {
        &self.gen_key
    }

    /// Key of `tag`'s generation counter in this namespace (what `invalidate_tag` moves).
    #[pyo3(name = "tag_key")]
    fn py_tag_key(&self, tag: &Bound<'_, PyAny>) -> PyResult<String> {
        let Ok(t) = tag.cast::<PyString>() else {
            return Err(PyTypeError::new_err(format!("tag must be a str, not {}", tag.get_type().name()?)));
        };
        Ok(self.inner.tag_key(t.to_str()?))
    }

    fn __str__(&self, py: Python<'_>) -> Py<PyString> {
        self.py_built.clone_ref(py)
    }

    fn __repr__(&self) -> String {
        format!("Key({:?})", self.built)
    }

    fn __eq__(&self, other: &Bound<'_, PyAny>) -> bool {
        other.cast::<PyKey>().is_ok_and(|o| o.get().built == self.built && o.get().gen_key == self.gen_key)
    }

    fn __hash__(&self) -> u64 {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        self.built.hash(&mut h);
        h.finish()
    }
}
