// The WASM-in-Node runner: karlton.wasm through the JS loader (wasm/js/karlton-wasm.mjs), as a
// user of the loader calls it: `key()`, `paramsHash()`, `policy()`, `entryDecode()`, `entryDescribe()`.
// Argument: the path of karlton.wasm (default wasm/dist/karlton.wasm).
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { load, hexToBytes } from '../../wasm/js/karlton-wasm.mjs';
import { run, val, entryForm, infoForm } from './common.mjs';

const path = process.argv[2] ?? fileURLToPath(new URL('../../wasm/dist/karlton.wasm', import.meta.url));
const k = await load(readFileSync(path));

// The JSON ops take strings for segments (a user formats an integer segment as its decimal
// text, as Node's Key does for safe integers and bigints) and u64 fields as numbers or decimal strings.
const seg = (v) => (typeof v === 'bigint' || Number.isSafeInteger(v) ? String(v) : v);

await run((c) => {
  switch (c.kind) {
    case 'key': {
      const args = { namespace: val(c.ns), segments: c.segs.map((s) => seg(val(s))) };
      if ('params' in c) args.params = val(c.params);
      if ('version' in c) args.version = val(c.version);
      if ('hash_tag' in c) args.hashTag = c.hash_tag;
      if ('max_len' in c) args.maxLen = val(c.max_len);
      if ('tags' in c) args.tags = c.tags.map(val);
      const r = k.key(args);
      return { key: r.key, gen: r.generationKey, tags: r.tagKeys };
    }
    case 'params_hash':
      return k.paramsHash(val(c.params));
    case 'policy': {
      const spec = {};
      for (const [f, v] of c.spec) {
        const x = val(v);
        spec[f] = typeof x === 'bigint' ? Number(x) : Array.isArray(x) ? x.map((y) => (typeof y === 'bigint' ? Number(y) : y)) : x;
      }
      return k.policy(spec);
    }
    case 'entry': {
      const e = k.entryDecode(hexToBytes(c.hex));
      return entryForm(e, e.value_hex);
    }
    case 'describe': {
      const policy = 'sie' in c ? { stale_if_error_ms: val(c.sie) } : undefined;
      return infoForm(k.entryDescribe(hexToBytes(c.hex), val(c.now), policy));
    }
    default:
      throw new Error(`unknown kind ${c.kind}`);
  }
});
