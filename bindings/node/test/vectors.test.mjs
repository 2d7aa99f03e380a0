// The shared conformance vectors (tests/vectors/*.json, format in its README.md), run through
// this package: keys through `Key`, policies through `Policy` (and the native JSON entry point),
// entries through the addon's codec, store ops through the addon's memory store, flows and
// coordinator scripts (and freshness, writes) through the core's evaluator compiled into the addon
// (`vectorEval`). Every file listed in tests/vectors/floors.txt runs (a missing one fails, an
// unlisted one fails), each asserts it ran all its cases and its floor, and the total its floor.
// A thrown error must be of the expected kind and name the expected field (ERROR_TEXT), not just
// be an error. Pending cases (known core bugs) must still fail; set KARLTON_VECTORS_STRICT=1 to
// make them count as failures.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, readdirSync } from 'node:fs';
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

/** What each error `kind` of the vectors reads like in a thrown error's message: errors cross into
 * JavaScript as a message only, and the message is the core's `Display` of the error (one text per
 * kind, see core/src/{key,policy,entry}.rs). A thrown error of the wrong kind fails the case. */
const ERROR_TEXT = {
  keys: {
    empty_namespace: /namespace must not be empty/,
    namespace_too_long: /namespace is \d+ bytes after escaping/,
    params: /params cannot be canonicalized|exceeds 2\^53|cannot be canonicalized/,
    invalid_json: /not valid JSON/,
    max_len_too_small: /below the minimum/,
  },
  policy: {
    zero: /must be greater than 0|must not be empty/,
    too_long: /exceeds the maximum/,
    hard_before_soft: /must be >= `(soft_ttl_ms|softTtl)`/,
    load_timeouts: /must be < `(load_hard_timeout_ms|loadHardTimeout)`/,
    out_of_range: /out of range/,
    json: /invalid JSON/,
  },
  entry: {
    too_short: /entry too short/,
    bad_magic: /bad magic/,
    unsupported_format: /unsupported entry format/,
    unknown_flags: /unknown flag bits/,
    truncated: /entry truncated in/,
    invalid_varint: /invalid varint in/,
    invalid_utf8: /not valid UTF-8/,
    trailing_bytes: /trailing bytes after entry/,
    too_large: /too large/,
    inconsistent: /inconsistent entry/,
  },
};

/** Why a thrown error does not match the expected error object, or null when it does: its
 * message must read as the expected `kind`, name the `field` (snake_case or camelCase) and carry
 * every numeric member (`len`, `max`, `found`, `count`, `format`, …). */
function errorMismatch(kind, err, expect) {
  const msg = String(err?.message ?? err);
  const text = ERROR_TEXT[kind]?.[expect.kind];
  if (!text) return `no message pattern for ${kind} error kind ${expect.kind} (add one to ERROR_TEXT)`;
  if (!text.test(msg)) return `message ${JSON.stringify(msg)} is not a ${expect.kind} error`;
  if (expect.field && !(msg.includes(expect.field) || msg.includes(camel(expect.field)))) {
    return `message ${JSON.stringify(msg)} does not name the field ${expect.field}`;
  }
  for (const [k, v] of Object.entries(expect)) {
    // Numbers as decimal, or as hex for flag bits (`0x04`).
    if (typeof v === 'number' && !new RegExp(`\\b(${v}|0x0*${v.toString(16)})\\b`, 'i').test(msg)) return `message ${JSON.stringify(msg)} lacks ${k} = ${v}`;
    if (k === 'reason' && !msg.includes(v)) return `message ${JSON.stringify(msg)} lacks the reason ${JSON.stringify(v)}`;
  }
  return null;
}

/** Compare: `null` when `got` matches `expect`, else why not. Errors as the README says for a
 * runtime whose errors carry a message: the message must say the expected kind and field. */
function mismatch(kind, got, expect) {
  if ('error' in expect) {
    if (!('error' in got)) return 'expected an error';
    // Errors the evaluator returns as objects (the core's evaluator for flows/writes/…) compare whole.
    if (!(got.error instanceof Error)) return same(got.error, expect.error) ? null : 'a different error object';
    return errorMismatch(kind, got.error, expect.error);
  }
  if (kind === 'keys' && expect.ok && typeof expect.ok === 'object' && 'canonical' in expect.ok) {
    // params_hash: the canonical text is internal to the core; the hash is what keys carry.
    return 'ok' in got && got.ok.hash === expect.ok.hash ? null : 'a different hash';
  }
  if ('ok' in expect) return 'ok' in got && same(got.ok, expect.ok) ? null : 'a different value';
  return same(got, expect) ? null : 'a different answer';
}

/** tests/vectors/floors.txt: every vector file with its case floor, and the total floor (the
 * manifest every runtime's runner reads). A missing manifest or directory throws: the file fails. */
function readFloors() {
  const files = new Map();
  let total;
  for (const raw of readFileSync(new URL('floors.txt', dir), 'utf8').split('\n')) {
    const line = raw.trim();
    if (!line || line.startsWith('#')) continue;
    const [name, n] = line.split(/\s+/);
    if (!/^\d+$/.test(n ?? '')) throw new Error(`floors.txt: bad line ${JSON.stringify(line)}`);
    if (name === 'total') total = Number(n);
    else files.set(name, Number(n));
  }
  if (total === undefined) throw new Error('floors.txt: no `total` line');
  return { files, total };
}

const floors = readFloors();
const ran = new Map();

test('every vector file is listed in floors.txt', () => {
  const onDisk = readdirSync(dir).filter((f) => f.endsWith('.json')).sort();
  assert.deepEqual(onDisk.filter((f) => !floors.files.has(f)), [], 'vector files not listed in tests/vectors/floors.txt');
});

for (const [file, floor] of floors.files) {
  test(`vectors: ${file}`, (t) => {
    // A listed file that is missing, or a kind without an evaluator, fails (never skips).
    const doc = parseExact(readFileSync(new URL(file, dir), 'utf8'));
    const evaluate = evaluators[doc.kind];
    assert.ok(evaluate, `${file}: no Node evaluator for kind ${doc.kind}`);
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
      const why = mismatch(doc.kind, got, c.expect);
      if (c.pending && !strict) {
        if (why === null) failures.push(`${c.name}: pending case passes now (drop its pending field)`);
        else pending++;
      } else if (why === null) passed++;
      else failures.push(`${c.name}: ${why}: expected ${JSON.stringify(c.expect)}\n    got ${JSON.stringify(got, (k, v) => (v instanceof Error ? `${v.name}: ${v.message}` : v))}`);
    }
    const n = passed + pending + failures.length;
    ran.set(file, passed + pending);
    // The count line (node:test prints diagnostics as `# ...` lines).
    t.diagnostic(`${file}: ${doc.cases.length} cases, ${passed} passed, ${pending} pending, ${failures.length} failed`);
    assert.deepEqual(failures, [], `${file}: ${failures.length} of ${doc.cases.length} cases failed:\n${failures.slice(0, 10).join('\n')}`);
    assert.equal(n, doc.cases.length, `${file}: ran ${n} of its ${doc.cases.length} cases`);
    assert.ok(doc.cases.length >= floor, `${file}: ${doc.cases.length} cases, fewer than its floor ${floor}`);
  });
}

test('vectors: total against floors.txt', (t) => {
  const total = [...ran.values()].reduce((a, b) => a + b, 0);
  t.diagnostic(`total: ${total} vector cases passed or pending`);
  assert.equal(ran.size, floors.files.size, `only ${ran.size} of ${floors.files.size} vector files ran clean`);
  assert.ok(total >= floors.total, `only ${total} vector cases ran (floor ${floors.total})`);
});
