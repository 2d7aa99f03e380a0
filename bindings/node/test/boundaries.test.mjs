// Every input means the same thing in every runtime (issue 9): one rounding rule for durations,
// one value model, null params are no params, u64 values stay exact. The Python suite
// (bindings/python/tests/test_boundaries.py) asserts the same cases.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Cache, Key, Policy, describeEntry, internals, paramsHash } from '../index.mjs';

test('durations round half away from zero like every runtime (2.5 ms is 3, 0.5 ms is 1)', () => {
  for (const [ms, want] of [[2.5, 3], [1.5, 2], [0.5, 1], ['2.5ms', 3], ['0.0025s', 3], [2 ** 40, 2 ** 40]]) {
    assert.equal(new Policy({ softTtl: ms, hardTtl: 2 ** 40 }).toJSON().softTtl, want, `softTtl ${ms}`);
  }
  for (const bad of [0.4, 2 ** 40 + 1, Infinity, NaN, -1]) {
    assert.throws(() => new Policy({ softTtl: bad }), /softTtl/, `softTtl ${bad}`);
  }
});

const refused = [
  ['NaN', NaN, /`value` must be a finite number/],
  ['Infinity inside', { ratio: Infinity }, /`value.ratio` must be a finite number/],
  ['undefined member', { a: undefined }, /`value.a` must be plain JSON data/],
  ['function member', { f() {} }, /`value.f` must be plain JSON data/],
  ['Date', new Date(0), /`value` must be plain JSON data/],
  ['Map', new Map([[1, 2]]), /`value` must be plain JSON data/],
  ['Set in array', [new Set([1])], /`value\[0\]` must be plain JSON data/],
  ['BigInt', 10n, /`value` must be plain JSON data/],
  ['lone surrogate', { s: '\uD800' }, /`value.s` is not valid Unicode/],
  ['lone surrogate key', { ['\uDC00']: 1 }, /a key in `value` is not valid Unicode/],
  ['array hole', [1, , 3], /`value\[1\]` is a hole/], // eslint-disable-line no-sparse-arrays
];

test('values JSON.stringify would change are refused, and nothing is stored', async () => {
  const c = new Cache();
  const k = new Key('boundary', 'v');
  await c.set(k, 'before');
  for (const [name, v, says] of refused) {
    await assert.rejects(c.set(k, v), says, `set ${name}`);
    assert.equal(await c.get(k), 'before', `a refused ${name} leaves what was stored`);
    const lk = new Key('boundary', 'loaded', name);
    await assert.rejects(c.getOrLoad(lk, async () => v), says, `loaded ${name}`);
    assert.equal(await c.get(lk), undefined, `a loaded ${name} is not cached`);
  }
  const cyclic = { a: 1 };
  cyclic.self = cyclic;
  await assert.rejects(c.set(k, cyclic), /nested deeper than 128 levels/);
});

test('values come back as written (key order, floats, unicode)', async () => {
  const c = new Cache();
  const v = { z: 1, a: [9007199254740991, 0.1, 1e21, 1e-7], m: { é: '\u2028' }, t: null };
  await c.set(new Key('boundary', 'rt'), v);
  const got = await c.get(new Key('boundary', 'rt'));
  assert.deepEqual(got, v);
  assert.deepEqual(Object.keys(got), ['z', 'a', 'm', 't']);
});

test('null and undefined params are no params, as Python None', () => {
  assert.equal(String(new Key('ns').params(null)), 'ns');
  assert.equal(String(new Key('ns').params(undefined)), 'ns');
  assert.equal(String(new Key('ns').params({ a: 1 }).params(null)), 'ns', 'null clears earlier params');
  assert.match(String(new Key('ns').params({ a: 1 })), /^ns:#/);
});

test('versions take the full u64 range, as in Python', async () => {
  const c = new Cache();
  const k = new Key('boundary', 'ver');
  assert.equal(await c.set(k, 'new', { version: 2n ** 64n - 1n }), true);
  assert.equal(await c.set(k, 'older', { version: 2n ** 53n }), false, 'a lower version never replaces a higher one');
  assert.equal(await c.get(k), 'new');
  for (const bad of [2n ** 64n, -1n, 2 ** 53, 1.5]) await assert.rejects(c.set(k, 'x', { version: bad }), /version/);
});

test('entry instants and versions beyond 2^53 decode exactly (bigints, not rounded)', () => {
  const e = {
    value_hex: '31', codec: 1, version: '18446744073709551615', generations: [9007199254740993n, 5],
    soft_at: 9007199254740993n, hard_at: 18446744073709551615n, load_ms: 0, negative: false, tags: ['12345678901234567890'],
  };
  assert.deepEqual(internals.decodeEntry(internals.encodeEntry(e)), e);
});

test('key segments are strings, safe integers or bigints, as Python str/int', () => {
  assert.equal(String(new Key('a', 42, -3, 2n ** 70n, 'x')), 'a:42:-3:1180591620717411303424:x');
  for (const bad of [1e21, 0.1, 2 ** 53, NaN, true, null]) {
    assert.throws(() => new Key('a', bad), (e) => e instanceof TypeError && /segments\[0\]/.test(e.message), String(bad));
  }
  assert.throws(() => new Key('n', '\uD800'), /segments\[0\]` is not valid Unicode/);
});

test('describeEntry reads every vector entry as the core decodes it (the same answer as Python)', async () => {
  const { describeEntry, Policy: P, KarltonError } = await import('../index.mjs');
  const { readFileSync } = await import('node:fs');
  const file = new URL('../../../tests/vectors/entry.json', import.meta.url);
  const cases = JSON.parse(readFileSync(file, 'utf8')).cases.filter((c) => c.input.op === 'decode');
  const policy = new P({ softTtl: 1000, staleIfError: 500 });
  const MAX = 2n ** 64n - 1n;
  let ok = 0;
  let err = 0;
  for (const c of cases) {
    const bytes = Buffer.from(c.input.hex, 'hex');
    if ('error' in c.expect) {
      assert.throws(() => describeEntry(bytes, { nowMs: 0 }), (e) => e instanceof KarltonError && e.code === 'ERR_KARLTON_CODEC', c.name);
      err++;
      continue;
    }
    const e = c.expect.ok;
    const d = describeEntry(bytes, { nowMs: Number.isSafeInteger(e.soft_at) ? e.soft_at : 0, policy });
    for (const k of ['soft_at', 'hard_at', 'load_ms', 'negative', 'codec', 'generations', 'tags']) assert.deepEqual(d[k], e[k], `${c.name} ${k}`);
    assert.equal(d.version === null ? null : String(d.version), e.version, c.name);
    assert.equal(d.value_len, e.value_hex.length / 2);
    const until = BigInt(e.hard_at) + 500n;
    assert.equal(BigInt(d.usable_until), until > MAX ? MAX : until, c.name);
    if (Number.isSafeInteger(e.soft_at) && e.soft_at > 0 && e.hard_at > e.soft_at) {
      assert.equal(describeEntry(bytes, { nowMs: e.soft_at - 1, policy }).freshness, 'fresh');
      assert.equal(d.freshness, 'stale', c.name);
    }
    if (Number.isSafeInteger(e.hard_at + 500)) {
      assert.equal(describeEntry(bytes, { nowMs: e.hard_at, policy }).freshness, 'usable_on_error', c.name);
      assert.equal(describeEntry(bytes, { nowMs: e.hard_at + 500, policy }).freshness, 'gone', c.name);
    }
    ok++;
  }
  assert.ok(ok >= 15 && err >= 10, `${ok} ok, ${err} errors`);
  assert.throws(() => describeEntry('4b43'), TypeError);
  assert.throws(() => describeEntry(Buffer.alloc(0), { nowMs: -1 }), /nowMs/);
  assert.throws(() => describeEntry(Buffer.alloc(0), { nowMs: 2n ** 64n }), /nowMs/);
  // A bigint clock beyond 2^53 (as Python, Rust and WASM take any u64).
  const { internals } = await import('../index.mjs');
  const far = internals.encodeEntry({ value_hex: '', codec: 1, version: null, generations: [], soft_at: 2n ** 62n, hard_at: 2n ** 64n - 1n, load_ms: 0, negative: true, tags: [] });
  assert.equal(describeEntry(far, { nowMs: 2n ** 62n - 1n }).freshness, 'fresh');
  assert.equal(describeEntry(far, { nowMs: 2n ** 63n }).freshness, 'stale');
});

test('one vocabulary: every concept in tests/vocabulary.txt is spelled as in Python (camelCase)', async () => {
  const k = await import('../index.mjs');
  const { readFileSync } = await import('node:fs');
  const text = readFileSync(new URL('../../../tests/vocabulary.txt', import.meta.url), 'utf8');
  const rows = text.split('\n').filter((l) => l.trim() && !l.startsWith('#')).map((l) => l.trim().split(/\s+/));
  assert.ok(rows.length >= 40);
  const camel = (s) => s.replace(/_([a-z])/g, (_, c) => c.toUpperCase());
  const stats = new k.Cache().stats();
  const scopes = { module: k, Cache: k.Cache.prototype, Key: new k.Key('ns'), MemoryStore: new k.MemoryStore(), RedisStore: k.RedisStore.prototype };
  const missing = rows.filter(([scope, name]) => (scope === 'stats' ? !(camel(name) in stats) : !(camel(name) in scopes[scope]))).map((r) => r.join('.'));
  assert.deepEqual(missing, []);
  assert.deepEqual(Object.keys(stats).sort(), rows.filter(([s]) => s === 'stats').map(([, n]) => camel(n)).sort(), 'stats() has exactly the listed counters');
});

test('paramsHash is the hash of the keys vectors (as Python params_hash)', async () => {
  const { paramsHash } = await import('../index.mjs');
  const { readFileSync } = await import('node:fs');
  const cases = JSON.parse(readFileSync(new URL('../../../tests/vectors/keys.json', import.meta.url), 'utf8')).cases
    .filter((c) => c.input.op === 'params_hash' && 'ok' in c.expect && !/[0-9]{16}/.test(c.input.params_json));
  assert.ok(cases.length >= 5, `${cases.length} cases`);
  for (const c of cases) assert.equal(paramsHash(JSON.parse(c.input.params_json)), c.expect.ok.hash, c.name);
  assert.throws(() => paramsHash({ a: NaN }), /`params.a` must be a finite number/);
});

test('params take bigints: hashed as Python hashes the same ints (issue 9)', () => {
  // Python: params_hash({'id': 10**18, 'neg': -(10**18), 'big': 9007199254740994})
  assert.equal(paramsHash({ id: 10n ** 18n, neg: -(10n ** 18n), big: 9007199254740994n }), '986a2a75b6673b53f178c53c44731689');
  // Python: Key('n', params={'id': 10**18}).build()
  assert.equal(String(new Key('n').params({ id: 10n ** 18n })), 'n:#9b025444362ecb99c8c3364ec9ecface');
  // a safe bigint is the number
  assert.equal(paramsHash([5n, -7n]), paramsHash([5, -7]));
  // not canonical beyond 2^53 (Python's ValueError too), and beyond 64 bits: refused naming params
  assert.throws(() => paramsHash({ id: 2n ** 60n + 1n }), (e) => e instanceof RangeError && /`params`: key params cannot be canonicalized/.test(e.message));
  assert.throws(() => new Key('n').params({ a: [2n ** 64n] }), (e) => e instanceof RangeError && /`params` must fit in 64 bits/.test(e.message));
});

test('maxLen takes a bigint, never wrapped (the keys Python builds)', () => {
  const k = (n) => String(new Key('n', 'x'.repeat(300)).maxLen(n));
  assert.equal(k(2n ** 32n + 200n), k(2 ** 32 + 200));
  // from 2^53 up: never truncates, as Python's max_len=2**64-1
  assert.equal(k(2n ** 64n - 1n), k(Number.MAX_SAFE_INTEGER));
  assert.ok(!k(2n ** 64n - 1n).includes('~'));
  assert.equal(k(200n), k(200));
  assert.throws(() => k(2n ** 64n), (e) => e instanceof RangeError && /`n` must be in 0..2\^64/.test(e.message));
  assert.throws(() => k(-1n), RangeError);
  assert.throws(() => k(100n), (e) => e instanceof RangeError && /`n`: max key length 100 is below the minimum 128/.test(e.message));
});

test('core key errors name their argument', () => {
  assert.throws(() => new Key(''), (e) => e instanceof RangeError && /`namespace`: key namespace must not be empty/.test(e.message));
  assert.throws(() => new Key('n'.repeat(65)), (e) => e instanceof RangeError && /`namespace`: key namespace is 65 bytes/.test(e.message));
  assert.throws(() => new Key('n').params({ id: 2n ** 60n + 1n }), (e) => e instanceof RangeError && /`params`: key params cannot/.test(e.message));
});

test('several bad arguments: the first in the one order is reported (docs/value-model.md)', () => {
  // the namespace before the segments, although Node checks segment types in JavaScript
  assert.throws(() => new Key('', 1.5), (e) => e instanceof RangeError && /`namespace`/.test(e.message));
  assert.throws(() => new Key('\uD800', true), (e) => /`namespace` is not valid Unicode/.test(e.message));
  assert.throws(() => new Key('ok', 1.5), (e) => e instanceof TypeError && /`segments\[0\]`/.test(e.message));
  // policy options in the core's field order, whatever the object's order
  assert.throws(() => new Policy({ onStoreError: 'nope', lockBackoff: [-1] }), /lockBackoff/);
  assert.throws(() => new Policy({ maxValueBytes: 1, jitter: NaN, softTtl: true }), /softTtl/);
  // unknown options before any value
  assert.throws(() => new Policy({ softTtl: -1, bogus: 1 }), /unknown policy option `bogus`/);
});

test('describeEntry checks the policy before nowMs, as Python (where it is built before the call)', () => {
  assert.throws(() => describeEntry(Buffer.alloc(0), { nowMs: -1, policy: { staleIfError: 2 ** 40 + 1 } }), /staleIfError/);
  assert.throws(() => describeEntry(Buffer.alloc(0), { nowMs: -1 }), /`options.nowMs`/);
});
