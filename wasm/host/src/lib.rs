//! # karlton-wasm-host
//!
//! Loads `karlton.wasm` (the `karlton-wasm` crate built for `wasm32-unknown-unknown`) into
//! wasmtime as a plugin and exposes its ABI as a typed Rust API. The module has no imports, so
//! it is instantiated with none: it cannot reach the host, the clock or the network.
//!
//! ```no_run
//! use karlton_wasm_host::{Plugin, Decision};
//! let plugin = Plugin::from_file("wasm/dist/karlton.wasm")?;
//! let mut k = plugin.instantiate()?;
//! assert_eq!(k.decide(5, 10, 20, 0, 0.0, 0, 0)?, Decision::Fresh);
//! let key = k.call_json(r#"{"op":"key_build","namespace":"users","segments":["42"]}"#)?;
//! # Ok::<(), karlton_wasm_host::HostError>(())
//! ```
//!
//! [`Plugin`] holds the compiled module (compile once); each [`Instance`] has its own memory
//! and handle tables (flows, memory stores). An instance is single-threaded (`&mut self`).

use karlton_core::entry::Entry;
use karlton_core::flow::Request;
use karlton_core::store::{StoreOp, StoreReply, hex};
use karlton_core::{Input, Stats, Step};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use serde_json::value::RawValue;
use std::path::Path;
use wasmtime::{Engine, Memory, Module, Store, TypedFunc};

/// The ABI version this host speaks.
pub const ABI_VERSION: u32 = 1;

/// Errors of the host API.
#[derive(Debug, thiserror::Error)]
pub enum HostError {
    /// wasmtime failed (compile, instantiate, trap).
    #[error("wasm: {0}")]
    Wasm(String),
    /// The module is not a karlton module this host understands.
    #[error("incompatible module: {0}")]
    Incompatible(String),
    /// The module answered with an error reply.
    #[error("{code}: {message}")]
    Call {
        /// Stable error code (`bad_request`, `unknown_handle`, `policy`, ...).
        code: String,
        /// Human-readable message.
        message: String,
        /// Structured detail (`{"kind": ...}`), for key, policy, entry and flow errors.
        detail: Option<Value>,
    },
    /// A reply could not be read as the expected type (a host/module mismatch).
    #[error("bad reply: {0}")]
    Reply(String),
}

fn wasm_err(e: impl std::fmt::Display) -> HostError {
    HostError::Wasm(e.to_string())
}

/// Result of the host API.
pub type Result<T, E = HostError> = std::result::Result<T, E>;

/// The scalar decision codes of `karlton_decide`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Serve it.
    Fresh,
    /// Serve it and refresh early in the background.
    RefreshEarly,
    /// Serve it stale while one caller refreshes.
    Stale,
    /// Serve only if the load fails.
    UsableOnError,
    /// A miss.
    Gone,
}

impl Decision {
    /// From a `karlton_decide` code (`None` for 255 = invalid beta, or an unknown code).
    pub fn from_code(c: u32) -> Option<Decision> {
        Some(match c {
            0 => Decision::Fresh,
            1 => Decision::RefreshEarly,
            2 => Decision::Stale,
            3 => Decision::UsableOnError,
            4 => Decision::Gone,
            _ => return None,
        })
    }
    /// The core's decision.
    pub fn to_core(self) -> karlton_core::Decision {
        match self {
            Decision::Fresh => karlton_core::Decision::Fresh,
            Decision::RefreshEarly => karlton_core::Decision::RefreshEarly,
            Decision::Stale => karlton_core::Decision::Stale,
            Decision::UsableOnError => karlton_core::Decision::UsableOnError,
            Decision::Gone => karlton_core::Decision::Gone,
        }
    }
}

/// A compiled `karlton.wasm`.
#[derive(Clone)]
pub struct Plugin {
    engine: Engine,
    module: Module,
}

impl Plugin {
    /// Compile the module at `path`.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Plugin> {
        let bytes = std::fs::read(path.as_ref())
            .map_err(|e| HostError::Wasm(format!("{}: {e}", path.as_ref().display())))?;
        Plugin::from_bytes(&bytes)
    }

    /// Compile a module from bytes. Refuses a module that imports anything.
    pub fn from_bytes(bytes: &[u8]) -> Result<Plugin> {
        let engine = Engine::default();
        let module = Module::new(&engine, bytes).map_err(wasm_err)?;
        let p = Plugin { engine, module };
        let imports = p.imports();
        if !imports.is_empty() {
            return Err(HostError::Incompatible(format!("module has imports: {imports:?}")));
        }
        Ok(p)
    }

    /// The module's imports as `module::name` (empty for a karlton module).
    pub fn imports(&self) -> Vec<String> {
        self.module.imports().map(|i| format!("{}::{}", i.module(), i.name())).collect()
    }

    /// The module's exports by name.
    pub fn exports(&self) -> Vec<String> {
        self.module.exports().map(|e| e.name().to_owned()).collect()
    }

    /// A fresh instance (its own memory and tables).
    pub fn instantiate(&self) -> Result<Instance> {
        let mut store = Store::new(&self.engine, ());
        let inst = wasmtime::Instance::new(&mut store, &self.module, &[]).map_err(wasm_err)?;
        let memory = inst
            .get_memory(&mut store, "memory")
            .ok_or_else(|| HostError::Incompatible("no `memory` export".into()))?;
        macro_rules! func {
            ($name:literal) => {
                inst.get_typed_func(&mut store, $name)
                    .map_err(|e| HostError::Incompatible(format!("{}: {e}", $name)))?
            };
        }
        let version: TypedFunc<(), u32> = func!("karlton_abi_version");
        let mut k = Instance {
            memory,
            alloc: func!("karlton_alloc"),
            free: func!("karlton_free"),
            call: func!("karlton_call"),
            decide: func!("karlton_decide"),
            jitter: func!("karlton_jitter"),
            store,
            buf: (0, 0),
            recording: None,
        };
        let v = version.call(&mut k.store, ()).map_err(wasm_err)?;
        if v != ABI_VERSION {
            return Err(HostError::Incompatible(format!("ABI version {v}, host speaks {ABI_VERSION}")));
        }
        Ok(k)
    }
}

/// A policy as JSON text, passed verbatim to the module (which caches the policy it parsed
/// last by its text, so reusing one `PolicyJson` costs a string comparison per call).
#[derive(Debug, Clone)]
pub struct PolicyJson(Box<RawValue>);

impl PolicyJson {
    /// From JSON text (checked to be JSON here; validated as a policy by the module).
    pub fn parse(json: &str) -> Result<PolicyJson> {
        RawValue::from_string(json.to_owned())
            .map(PolicyJson)
            .map_err(|e| HostError::Reply(e.to_string()))
    }
    /// From a native policy.
    pub fn from_policy(p: &karlton_core::Policy) -> PolicyJson {
        PolicyJson(RawValue::from_string(p.to_json()).expect("policy JSON"))
    }
    /// The text.
    pub fn as_str(&self) -> &str {
        self.0.get()
    }
}

/// What `key_build` answers.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
pub struct BuiltKey {
    /// The entry key.
    pub key: String,
    /// The namespace generation counter key.
    pub generation_key: String,
    /// One counter key per requested tag.
    pub tag_keys: Vec<String>,
}

/// Inputs of `key_build`.
#[derive(Debug, Clone, Default, Serialize)]
pub struct KeySpec<'a> {
    /// Namespace.
    pub namespace: &'a str,
    /// Segments.
    pub segments: &'a [&'a str],
    /// Params as JSON text (hashed canonically).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub params_json: Option<&'a str>,
    /// Version suffix.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<u64>,
    /// Hash-tag form.
    pub hash_tag: bool,
    /// Maximum key length.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_len: Option<u64>,
    /// Tags to build counter keys for.
    pub tags: &'a [&'a str],
}

/// A live module instance.
pub struct Instance {
    store: Store<()>,
    memory: Memory,
    alloc: TypedFunc<u32, u32>,
    free: TypedFunc<(u32, u32), u32>,
    call: TypedFunc<(u32, u32), u64>,
    #[allow(clippy::type_complexity)]
    decide: TypedFunc<(u64, u64, u64, u64, f64, u64, u64), u32>,
    jitter: TypedFunc<(u64, u64, u64), u64>,
    /// The request block (ptr, capacity), reused across calls.
    buf: (u32, u32),
    /// When on, every `call_bytes` request and reply (as text), in order.
    recording: Option<Vec<(String, String)>>,
}

/// Flow handle.
pub type FlowId = u32;
/// Memory store handle.
pub type StoreId = u32;

impl Instance {
    /// Scalar decide (`karlton_decide`). `Err` only on a trap; `beta` outside `[0, 100]` is a
    /// `Call` error with code `invalid`.
    #[allow(clippy::too_many_arguments)]
    pub fn decide(
        &mut self,
        now_ms: u64,
        soft_at: u64,
        hard_at: u64,
        load_ms: u64,
        beta: f64,
        stale_if_error_ms: u64,
        rand: u64,
    ) -> Result<Decision> {
        let c = self.decide_code(now_ms, soft_at, hard_at, load_ms, beta, stale_if_error_ms, rand)?;
        Decision::from_code(c).ok_or_else(|| HostError::Call {
            code: "invalid".into(),
            message: format!("beta {beta} is not a finite number in [0, 100]"),
            detail: None,
        })
    }

    /// The raw `karlton_decide` code.
    #[allow(clippy::too_many_arguments)]
    #[inline]
    pub fn decide_code(
        &mut self,
        now_ms: u64,
        soft_at: u64,
        hard_at: u64,
        load_ms: u64,
        beta: f64,
        stale_if_error_ms: u64,
        rand: u64,
    ) -> Result<u32> {
        self.decide
            .call(&mut self.store, (now_ms, soft_at, hard_at, load_ms, beta, stale_if_error_ms, rand))
            .map_err(wasm_err)
    }

    /// Jittered TTL (`karlton_jitter`).
    pub fn jitter(&mut self, ttl_ms: u64, jitter_ppm: u64, rand: u64) -> Result<u64> {
        self.jitter.call(&mut self.store, (ttl_ms, jitter_ppm, rand)).map_err(wasm_err)
    }

    /// Raw `karlton_alloc` (for tests of the ABI).
    pub fn raw_alloc(&mut self, len: u32) -> Result<u32> {
        self.alloc.call(&mut self.store, len).map_err(wasm_err)
    }

    /// Raw `karlton_free`.
    pub fn raw_free(&mut self, ptr: u32, len: u32) -> Result<u32> {
        self.free.call(&mut self.store, (ptr, len)).map_err(wasm_err)
    }

    /// Raw `karlton_call` on memory the caller manages: returns the reply bytes.
    pub fn raw_call(&mut self, ptr: u32, len: u32) -> Result<Vec<u8>> {
        let packed = self.call.call(&mut self.store, (ptr, len)).map_err(wasm_err)?;
        self.reply(packed)
    }

    /// Write bytes into module memory at `ptr` (for tests).
    pub fn write_memory(&mut self, ptr: u32, bytes: &[u8]) -> Result<()> {
        self.memory.write(&mut self.store, ptr as usize, bytes).map_err(wasm_err)
    }

    /// Size of the module's memory in bytes.
    pub fn memory_size(&self) -> usize {
        self.memory.data_size(&self.store)
    }

    fn reply(&mut self, packed: u64) -> Result<Vec<u8>> {
        let (p, l) = ((packed >> 32) as usize, (packed & 0xffff_ffff) as usize);
        let data = self.memory.data(&self.store);
        data.get(p..p + l)
            .map(<[u8]>::to_vec)
            .ok_or_else(|| HostError::Wasm(format!("reply {p}+{l} outside memory")))
    }

    /// One request, as bytes, through `karlton_call`: the reply bytes (`{"ok":..}` or
    /// `{"error":..}`).
    pub fn call_bytes(&mut self, req: &[u8]) -> Result<Vec<u8>> {
        let len = u32::try_from(req.len()).map_err(|_| HostError::Wasm("request too large".into()))?;
        if self.buf.1 < len.max(1) {
            if self.buf.0 != 0 {
                self.raw_free(self.buf.0, self.buf.1)?;
            }
            let cap = len.max(256).next_power_of_two();
            let p = self.raw_alloc(cap)?;
            if p == 0 {
                self.buf = (0, 0);
                return Err(HostError::Wasm("karlton_alloc failed".into()));
            }
            self.buf = (p, cap);
        }
        self.memory.write(&mut self.store, self.buf.0 as usize, req).map_err(wasm_err)?;
        let packed = self.call.call(&mut self.store, (self.buf.0, len)).map_err(wasm_err)?;
        let reply = self.reply(packed)?;
        if let Some(rec) = &mut self.recording {
            rec.push((String::from_utf8_lossy(req).into_owned(), String::from_utf8_lossy(&reply).into_owned()));
        }
        Ok(reply)
    }

    /// Start recording every request and reply (replayable on a fresh instance of the same
    /// module in another engine: handles are deterministic per instance).
    pub fn record(&mut self) {
        self.recording = Some(Vec::new());
    }

    /// Stop recording; what was recorded.
    pub fn take_recording(&mut self) -> Vec<(String, String)> {
        self.recording.take().unwrap_or_default()
    }

    /// [`Instance::call_bytes`] on text.
    pub fn call_json(&mut self, req: &str) -> Result<String> {
        String::from_utf8(self.call_bytes(req.as_bytes())?)
            .map_err(|e| HostError::Reply(e.to_string()))
    }

    /// Serialize `req`, call, and read the `ok` value as `T` (an error reply is
    /// [`HostError::Call`]).
    pub fn call<T: DeserializeOwned>(&mut self, req: &impl Serialize) -> Result<T> {
        let bytes = serde_json::to_vec(req).map_err(|e| HostError::Reply(e.to_string()))?;
        let reply = self.call_bytes(&bytes)?;
        parse_reply(&reply)
    }

    // -- typed wrappers ----------------------------------------------------------------------

    /// Build a key (and its generation and tag counter keys).
    pub fn key_build(&mut self, spec: &KeySpec<'_>) -> Result<BuiltKey> {
        #[derive(Serialize)]
        struct R<'a> {
            op: &'static str,
            #[serde(flatten)]
            spec: &'a KeySpec<'a>,
        }
        self.call(&R { op: "key_build", spec })
    }

    /// Canonical params hash of JSON text.
    pub fn params_hash(&mut self, params_json: &str) -> Result<String> {
        let v: Value = self.call(&serde_json::json!({"op": "params_hash", "params_json": params_json}))?;
        v["hash"].as_str().map(str::to_owned).ok_or_else(|| HostError::Reply("no hash".into()))
    }

    /// Validate a policy; the normalized policy JSON.
    pub fn policy(&mut self, policy_json: &str) -> Result<Value> {
        self.call(&serde_json::json!({"op": "policy", "policy_json": policy_json}))
    }

    /// Encode an entry.
    pub fn entry_encode(&mut self, e: &Entry) -> Result<Vec<u8>> {
        let h: String = self.call(&serde_json::json!({"op": "entry_encode", "entry": e}))?;
        hex::decode(&h).ok_or_else(|| HostError::Reply("bad hex".into()))
    }

    /// Decode entry bytes (an `entry_decode` error = a miss).
    pub fn entry_decode(&mut self, bytes: &[u8]) -> Result<Entry> {
        self.call(&serde_json::json!({"op": "entry_decode", "hex": hex::encode(bytes)}))
    }

    /// Create a `get_or_load` flow.
    pub fn flow_create(&mut self, req: &Request, policy: &PolicyJson, seed: u64) -> Result<FlowId> {
        #[derive(Serialize)]
        struct R<'a> {
            op: &'static str,
            request: &'a Request,
            policy: &'a RawValue,
            seed: u64,
        }
        self.call(&R { op: "flow_create", request: req, policy: &policy.0, seed })
    }

    /// First step of a flow (with `store`, store steps run inside the module).
    pub fn flow_start(&mut self, flow: FlowId, now_ms: u64, store: Option<StoreId>) -> Result<Step> {
        self.call(&serde_json::json!({"op": "flow_start", "flow": flow, "now_ms": now_ms, "store": store}))
    }

    /// Feed an input; the next step.
    pub fn flow_handle(
        &mut self,
        flow: FlowId,
        now_ms: u64,
        input: &Input,
        store: Option<StoreId>,
    ) -> Result<Step> {
        #[derive(Serialize)]
        struct R<'a> {
            op: &'static str,
            flow: FlowId,
            now_ms: u64,
            input: &'a Input,
            store: Option<StoreId>,
        }
        self.call(&R { op: "flow_handle", flow, now_ms, input, store })
    }

    /// Drop a flow; its final counters.
    pub fn flow_drop(&mut self, flow: FlowId) -> Result<Stats> {
        self.call(&serde_json::json!({"op": "flow_drop", "flow": flow}))
    }

    /// Create an in-module memory store (default limits).
    pub fn store_create(&mut self) -> Result<StoreId> {
        self.call(&serde_json::json!({"op": "store_create"}))
    }

    /// Run one store op against an in-module memory store.
    pub fn store_apply(&mut self, store: StoreId, now_ms: u64, op: &StoreOp) -> Result<StoreReply> {
        #[derive(Serialize)]
        struct R<'a> {
            op: &'static str,
            store: StoreId,
            now_ms: u64,
            store_op: &'a StoreOp,
        }
        self.call(&R { op: "store_apply", store, now_ms, store_op: op })
    }

    /// Drop a memory store.
    pub fn store_drop(&mut self, store: StoreId) -> Result<()> {
        let _: bool = self.call(&serde_json::json!({"op": "store_drop", "store": store}))?;
        Ok(())
    }
}

/// Read a reply: the `ok` value as `T`, or the error as [`HostError::Call`].
pub fn parse_reply<T: DeserializeOwned>(reply: &[u8]) -> Result<T> {
    const OK: &[u8] = b"{\"ok\":";
    if reply.starts_with(OK) && reply.ends_with(b"}") {
        return serde_json::from_slice(&reply[OK.len()..reply.len() - 1])
            .map_err(|e| HostError::Reply(format!("{e}: {}", String::from_utf8_lossy(reply))));
    }
    let v: Value = serde_json::from_slice(reply)
        .map_err(|e| HostError::Reply(format!("{e}: {}", String::from_utf8_lossy(reply))))?;
    let e = &v["error"];
    Err(HostError::Call {
        code: e["code"].as_str().unwrap_or("?").to_owned(),
        message: e["message"].as_str().unwrap_or("").to_owned(),
        detail: e.get("detail").cloned(),
    })
}

/// Where `scripts/test-wasm.sh` puts the module: `$KARLTON_WASM`, else `wasm/dist/karlton.wasm`
/// under the workspace.
pub fn default_module_path() -> std::path::PathBuf {
    match std::env::var_os("KARLTON_WASM") {
        Some(p) => p.into(),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../dist/karlton.wasm"),
    }
}
