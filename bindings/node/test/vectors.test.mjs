// The shared conformance vectors (tests/vectors/*.json, format in its README.md), run through
// this package: keys through `Key`, policies through `Policy` (and the native JSON entry point),
// entries through the addon's codec, store ops through the addon's memory store, flows and
// coordinator scripts through the core's evaluator compiled into the addon (`vectorEval`). Pending cases (known core bugs) must still fail; set KARLTON_VECTORS_STRICT=1 to
// make them count as failures.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import { createRequire } from 'node:module';
import { Key, Policy, internals } from '../index.mjs';

const require = createRequire(import.meta.url);
const native = require('../native.cjs');
const dir = new URL('../../../tests/vectors/', import.meta.url);
const strict = process.env.KARLTON_VECTORS_STRICT === '1';

/** JSON equality as the README says: numbers numerically, object member order irrelevant. */
function same(a, b) {
  if (typeof a === 'number' && typeof b === 'number') return a === b || (a === 0 && b === 0);
  if (Array.isArray(a)) return Array.isArray(b) && a.length === b.length && a.every((x, i) => same(x, b[i]));
  if (a && typeof a === 'object') {
    if (!b || typeof b !== 'object' || Array.isArray(b)) return false;
    const ka = Object.keys(a).filter((k) => a[k] !== undefined);
    const kb = Object.keys(b).filter((k) => b[k] !== undefined);
    return ka.length === kb.length && ka.every((k) => same(a[k], b[k]));
  }
  return a === b;
}

const camel = (s) => s.replace(/_ms$/, '').replace(/_([a-z])/g, (_, c) => c.toUpperCase());
const SPEC_FIELDS = new Set(['soft_ttl_ms', 'hard_ttl_ms', 'jitter', 'early_refresh', 'negative_ttl_ms', 'stale_if_error_ms', 'lease_ttl_ms', 'lock_wait_ms', 'lock_backoff_ms', 'on_lock_timeout', 'load_soft_timeout_ms', 'load_hard_timeout_ms', 'on_store_error', 'max_value_bytes']);

/** Parse vector text keeping integers beyond 2^53 exact: they travel as marked strings and are
 * written back as bare digits when the case is serialized for the addon. */
const BIG = '__big__';
function parseExact(text) {
  let out = '';
  let i = 0;
  while (i < text.length) {
    const c = text[i];
    if (c === '"') {
      // copy a string literal verbatim
      let j = i + 1;
      while (text[j] !== '"') j += text[j] === '\\' ? 2 : 1;
      out += text.slice(i, j + 1);
      i = j + 1;
    } else if (c === '-' || (c >= '0' && c <= '9')) {
      const m = /^-?\d+(\.\d+)?([eE][+-]?\d+)?/.exec(text.slice(i, i + 400));
      const lit = m[0];
      out += !m[1] && !m[2] && !Number.isSafeInteger(Number(lit)) ? `"${BIG}${lit}"` : lit;
      i += lit.length;
    } else {
      out += c;
      i++;
    }
  }
  return JSON.parse(out);
}
const stringifyExact = (v) => JSON.stringify(v).replace(new RegExp(`"${BIG}(-?\\d+)"`, 'g'), '$1');

// ---- evaluators: input → the `expect` shape ----

function buildKey(i) {
  const hasValueParams = i.params_json !== undefined && !i.exact_text;
  if (i.params_json !== undefined && i.exact_text) {
    // Integer literals a double cannot hold: the text entry point (JSON.parse would round them).
    const [k, g] = native.buildKey(i.namespace, i.segments ?? [], i.params_json, i.version ?? null, i.hash_tag ?? false, i.max_len ?? null);
    return { k, g, key: null };
  }
  let key = new Key(i.namespace, ...(i.segments ?? []));
  if (hasValueParams) {
    let v;
    try {
      v = JSON.parse(i.params_json);
    } catch {
      // not JSON: the text entry point reports invalid_json
      native.buildKey(i.namespace, [], i.params_json, null, false, null);
    }
    key = key.params(v);
  }
  if (i.version !== undefined) key = key.version(BigInt(i.version));
  if (i.hash_tag) key = key.hashTag(true);
  if (i.max_len !== undefined) key = key.maxLen(i.max_len);
  return { k: String(key), g: key.generationKey, key };
}

function wrap(f) {
  try {
    return { ok: f() };
  } catch (e) {
    if (!(e instanceof RangeError) && !(e instanceof TypeError) && e?.code !== 'InvalidArg') throw e;
    return { error: e };
  }
}

const evaluators = {
  keys(i) {
    const r = wrap(() => {
      switch (i.op) {
        case 'build':
          return buildKey(i).k;
        case 'generation_key':
          return buildKey(i).g;
        case 'tag_key': {
          const b = buildKey(i);
          return b.key ? b.key.tagKey(i.tag) : native.tagKey(i.namespace, i.hash_tag ?? false, i.max_len ?? null, i.tag);
        }
        case 'params_hash': {
          // The text entry point: these cases pin literal forms JSON.parse would change.
          const [k] = native.buildKey('n', [], i.params_json, null, false, null);
          return { hash: k.slice(k.lastIndexOf('#') + 1) };
        }
        default:
          throw new Error(`unknown keys op ${i.op}`);
      }
    });
    return r;
  },
  policy(i, expect) {
    if (i.spec_json !== undefined || expect.error?.kind === 'json') {
      // JSON-level refusals (wrong JSON types, unknown fields) belong to the JSON entry point;
      // the JS class deliberately accepts more (duration strings, a scalar backoff).
      if (i.spec_json === undefined) return wrap(() => JSON.parse(new native.NativePolicy(stringifyExact(i.spec)).toJson()));
      return wrap(() => JSON.parse(new native.NativePolicy(i.spec_json).toJson()));
    }
    return wrap(() => {
      // Through the public class: snake_case ms fields → camelCase options.
      const opts = {};
      for (const [f, v] of Object.entries(i.spec)) {
        if (f === 'on_lock_timeout' && v === 'serve_stale') opts.onLockTimeout = 'serveStale';
        else opts[SPEC_FIELDS.has(f) ? camel(f) : f] = v;
      }
      let p;
      try {
        p = new Policy(opts);
      } catch (e) {
        // The JS layer may refuse earlier (types) or accept more (it rounds ms); the native JSON
        // path is the reference for those: both must refuse.
        assert.throws(() => new native.NativePolicy(JSON.stringify(i.spec)));
        throw e;
      }
      return JSON.parse(p[Object.getOwnPropertySymbols(p)[0]].toJson());
    });
  },
  entry(i) {
    if (i.op === 'encode') return wrap(() => internals.encodeEntry(i.entry).toString('hex'));
    return wrap(() => internals.decodeEntry(Buffer.from(i.hex, 'hex')));
  },
  // The flow and coordinator scripts through the core's own evaluator compiled into the addon
  // (the `vectors` feature `npm run build` enables): the binary this package ships agrees.
  flows: (i) => JSON.parse(native.vectorEval('flows', stringifyExact(i))),
  coordinator: (i) => JSON.parse(native.vectorEval('coordinator', stringifyExact(i))),
  freshness: (i) => JSON.parse(native.vectorEval('freshness', stringifyExact(i))),
  writes: (i) => JSON.parse(native.vectorEval('writes', stringifyExact(i))),
  store(i) {
    const store = new native.NativeMemoryStore(1e6, 1e9);
    return { replies: i.ops.map((o) => parseExact(store.applyJson(o.now, stringifyExact(o.op)))) };
  },
  eviction(i) {
    const c = i.config;
    const store = new native.NativeMemoryStore(c.max_entries, c.max_bytes, c.shards, String(c.seed));
    const replies = i.ops.map((o) => parseExact(store.applyJson(o.now, stringifyExact(o.op))));
    return { replies, evictions: store.evictions, slots: store.size, bytes: store.bytes };
  },
};

/** Compare, with the README's rule for errors: a runtime whose errors carry only a message
 * checks that an error was raised (and, for policies, that it names the field). */
function matches(kind, got, expect) {
  if ('error' in expect) {
    if (!('error' in got)) return false;
    if (kind === 'policy' && expect.error.field && expect.error.kind !== 'json') {
      const f = expect.error.field;
      return got.error.message.includes(f) || got.error.message.includes(camel(f));
    }
    return true;
  }
  if (kind === 'keys' && expect.ok && typeof expect.ok === 'object' && 'canonical' in expect.ok) {
    // params_hash: the canonical text is internal to the core; the hash is what keys carry.
    return 'ok' in got && got.ok.hash === expect.ok.hash;
  }
  if ('ok' in expect) return 'ok' in got && same(got.ok, expect.ok);
  return same(got, expect);
}

const FLOORS = { coordinator: 60 };

const files = existsSync(dir) ? readdirSync(dir).filter((f) => f.endsWith('.json')).sort() : [];

test('conformance vectors exist', () => {
  assert.ok(files.length >= 5, `vector files found: ${files.join(', ')}`);
});

for (const file of files) {
  const doc = parseExact(readFileSync(new URL(file, dir), 'utf8'));
  const evaluate = evaluators[doc.kind];
  test(`vectors: ${file}`, { skip: evaluate ? false : `no Node runner for kind ${doc.kind}` }, () => {
    const failures = [];
    let passed = 0;
    let pending = 0;
    for (const c of doc.cases) {
      let got;
      try {
        got = evaluate(c.input, c.expect);
      } catch (e) {
        got = { threw: String(e?.stack ?? e) };
      }
      const ok = matches(doc.kind, got, c.expect);
      if (c.pending && !strict) {
        if (ok) failures.push(`${c.name}: pending case passes now (drop its pending field)`);
        else pending++;
      } else if (ok) passed++;
      else failures.push(`${c.name}: expected ${JSON.stringify(c.expect)}\n    got ${JSON.stringify(got, (k, v) => (v instanceof Error ? `${v.name}: ${v.message}` : v))}`);
    }
    test.diagnostic?.(`${file}: ${passed} passed, ${pending} pending`);
    // a per-file floor: a runner that silently ran nothing must fail
    const floor = FLOORS[doc.kind] ?? 1;
    assert.ok(passed + pending >= floor, `${file}: only ${passed + pending} cases ran (floor ${floor})`);
    assert.deepEqual(failures, [], `${file}: ${failures.length} of ${doc.cases.length} cases failed:\n${failures.slice(0, 10).join('\n')}`);
  });
}
