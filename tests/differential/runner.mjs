// The Node runner: answers cases through the `karlton` npm package's public API
// (bindings/node: Key, Policy, describeEntry, paramsHash; entries through `internals.decodeEntry`, the only decoder it has).
import { createRequire } from 'node:module';
import { run, val, entryForm, infoForm } from './common.mjs';

const require = createRequire(import.meta.url);
const { Key, Policy, describeEntry, paramsHash, internals } = require('../../bindings/node/index.cjs');

const camel = (s) => s.replace(/_([a-z])/g, (_, c) => c.toUpperCase());
const snake = (s) => s.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`);

function buildKey(c) {
  let k = new Key(val(c.ns), ...c.segs.map(val));
  if ('params' in c) k = k.params(val(c.params));
  if ('version' in c) k = k.version(val(c.version));
  if ('hash_tag' in c) k = k.hashTag(c.hash_tag);
  if ('max_len' in c) k = k.maxLen(val(c.max_len)); // a safe integer, or a bigint beyond
  return k;
}

const DUR = new Set(['soft_ttl_ms', 'hard_ttl_ms', 'negative_ttl_ms', 'stale_if_error_ms', 'lease_ttl_ms', 'lock_wait_ms', 'load_soft_timeout_ms', 'load_hard_timeout_ms']);

function policy(c) {
  const opts = {};
  for (const [f, v] of c.spec) {
    let x = val(v);
    let name = f;
    if (DUR.has(f)) name = f.slice(0, -3);
    else if (f === 'lock_backoff_ms') name = 'lock_backoff';
    // durations are numbers of ms here; a bigint (beyond 2^53) is passed as the nearest number
    if (typeof x === 'bigint') x = Number(x);
    if (Array.isArray(x)) x = x.map((y) => (typeof y === 'bigint' ? Number(y) : y));
    opts[camel(name)] = x;
  }
  const out = {};
  for (const [k, v] of Object.entries(new Policy(opts).toJSON())) {
    let f = snake(k);
    if (DUR.has(`${f}_ms`) || f === 'lock_backoff') f = `${f}_ms`;
    out[f] = k === 'onLockTimeout' && v === 'serveStale' ? 'serve_stale' : v;
  }
  return out;
}

await run((c) => {
  switch (c.kind) {
    case 'key': {
      const k = buildKey(c);
      return { key: String(k), gen: k.generationKey, tags: (c.tags ?? []).map((t) => k.tagKey(val(t))) };
    }
    case 'params_hash':
      return paramsHash(val(c.params));
    case 'policy':
      return policy(c);
    case 'entry': {
      const e = internals.decodeEntry(Buffer.from(c.hex, 'hex'));
      return entryForm(e, e.value_hex);
    }
    case 'describe': {
      const opts = { nowMs: val(c.now) };
      if ('sie' in c) opts.policy = new Policy({ staleIfError: val(c.sie) });
      return infoForm(describeEntry(Buffer.from(c.hex, 'hex'), opts));
    }
    default:
      throw new Error(`unknown kind ${c.kind}`);
  }
});
