// A KV-like store in memory, shaped like Cloudflare Workers KV (get / put with expirationTtl /
// delete). Like KV it is only a place to keep bytes: it has no atomic operations, so every cache
// decision is made by karlton.wasm from the entry's own windows.

export class MemoryKV {
  #m = new Map();
  #clock;

  /** `clock()` returns ms (the KV's own notion of time, for expirations). */
  constructor(clock = Date.now) {
    this.#clock = clock;
  }

  async get(key, type = "text") {
    const e = this.#m.get(key);
    if (!e) return null;
    if (e.expiresAt !== null && this.#clock() >= e.expiresAt) {
      this.#m.delete(key);
      return null;
    }
    if (type === "arrayBuffer") return e.value.buffer.slice(e.value.byteOffset, e.value.byteOffset + e.value.byteLength);
    return new TextDecoder().decode(e.value);
  }

  /** `value`: string, ArrayBuffer or typed array; `expirationTtl` in seconds (KV's minimum is 60). */
  async put(key, value, { expirationTtl } = {}) {
    const bytes = typeof value === "string" ? new TextEncoder().encode(value) : new Uint8Array(ArrayBuffer.isView(value) ? value.slice().buffer : value.slice(0));
    const expiresAt = expirationTtl ? this.#clock() + Math.max(60, expirationTtl) * 1000 : null;
    this.#m.set(key, { value: bytes, expiresAt });
  }

  async delete(key) {
    this.#m.delete(key);
  }

  get size() {
    return this.#m.size;
  }
}
