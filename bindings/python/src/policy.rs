//! The native side of `karlton.Policy` and `karlton.MemoryStore`.

use crate::convert::{is_int, type_err};
use karlton_core::{MemoryStore, MemoryStoreConfig, Policy};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use std::sync::Arc;

/// A validated core policy (built by `karlton.Policy` from seconds).
#[pyclass(module = "karlton._karlton", name = "PolicyCore", frozen)]
pub struct PyPolicy {
    pub(crate) inner: Arc<Policy>,
}

#[pymethods]
impl PyPolicy {
    /// Validate a policy given as JSON (core field names, durations in integer ms).
    #[staticmethod]
    fn from_json(json: &str) -> PyResult<PyPolicy> {
        Policy::from_json(json)
            .map(|p| PyPolicy { inner: Arc::new(p) })
            .map_err(|e| PyValueError::new_err(e.to_string()))
    }

    /// The policy as JSON (every field, hard TTL resolved).
    fn to_json(&self) -> String {
        self.inner.to_json()
    }
}

/// The embedded store: bounded by entries and bytes, exact LRU per shard, thread-safe.
#[pyclass(module = "karlton", name = "MemoryStore", frozen)]
pub struct PyMemoryStore {
    pub(crate) inner: Arc<MemoryStore>,
    max_entries: usize,
    max_bytes: usize,
}

fn positive(v: &Bound<'_, PyAny>, what: &str) -> PyResult<usize> {
    if !is_int(v) {
        return Err(type_err(&format!("MemoryStore(): {what} must be an int"), v));
    }
    match v.extract::<usize>() {
        Ok(n) if n > 0 => Ok(n),
        _ => Err(PyValueError::new_err(format!("MemoryStore(): {what} must be a positive int, got {v}"))),
    }
}

#[pymethods]
impl PyMemoryStore {
    #[new]
    #[pyo3(signature = (max_entries = None, max_bytes = None, *, seed = None))]
    fn new(
        py: Python<'_>,
        max_entries: Option<&Bound<'_, PyAny>>,
        max_bytes: Option<&Bound<'_, PyAny>>,
        seed: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Self> {
        let mut cfg = MemoryStoreConfig::default();
        // The seed keys shard placement and eviction's admission coin: from the OS by default
        // (so keys cannot be aimed at one sketch slot); given, it replays evictions exactly.
        cfg.seed = match seed.filter(|s| !s.is_none()) {
            Some(s) if !is_int(s) => return Err(type_err("MemoryStore(): seed must be an int", s)),
            Some(s) => s
                .extract::<u64>()
                .map_err(|_| PyValueError::new_err(format!("MemoryStore(): seed must be in [0, 2**64), got {s}")))?,
            None => {
                let b: Vec<u8> = py.import("os")?.call_method1("urandom", (8,))?.extract()?;
                u64::from_le_bytes(b.try_into().map_err(|_| PyValueError::new_err("os.urandom(8) returned the wrong length"))?)
            }
        };
        if let Some(m) = max_entries.filter(|m| !m.is_none()) {
            cfg.max_entries = positive(m, "max_entries")?;
        }
        if let Some(m) = max_bytes.filter(|m| !m.is_none()) {
            cfg.max_bytes = positive(m, "max_bytes")?;
        }
        Ok(PyMemoryStore { inner: Arc::new(MemoryStore::new(cfg)), max_entries: cfg.max_entries, max_bytes: cfg.max_bytes })
    }

    /// Most entries kept.
    #[getter]
    fn max_entries(&self) -> usize {
        self.max_entries
    }

    /// Most bytes kept.
    #[getter]
    fn max_bytes(&self) -> usize {
        self.max_bytes
    }

    /// Entries evicted for space so far.
    #[getter]
    fn evictions(&self) -> u64 {
        self.inner.evictions()
    }

    /// Bytes held (keys + encoded entries + bookkeeping).
    #[getter]
    fn bytes(&self) -> usize {
        self.inner.bytes()
    }

    fn __len__(&self) -> usize {
        self.inner.len()
    }

    fn __repr__(&self) -> String {
        format!("MemoryStore(max_entries={}, max_bytes={})", self.max_entries, self.max_bytes)
    }
}
