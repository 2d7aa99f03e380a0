// The API surface: entry points, Key, Policy, and wrong argument types → TypeError naming them.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createRequire } from 'node:module';
import * as esm from '../index.mjs';
import { Cache, Key, Policy, MemoryStore, RedisStore, KarltonError } from '../index.mjs';

const require = createRequire(import.meta.url);

test('ESM and CommonJS entry points expose the same classes', () => {
  const cjs = require('../index.cjs');
  for (const name of ['Key', 'Policy', 'MemoryStore', 'RedisStore', 'Cache', 'KarltonError']) {
    assert.equal(typeof esm[name], 'function', name);
    assert.equal(esm[name], cjs[name], `${name} is one class for both module systems`);
  }
  assert.equal(require('../package.json').exports['.'].types, './index.d.ts');
});

test('Key: escaping, params, version, hash tag, counters', () => {
  assert.equal(String(new Key('users', 42)), 'users:42');
  assert.notEqual(String(new Key('ns', 'a:b')), String(new Key('ns', 'a', 'b')), 'segments cannot forge keys');
  const a = new Key('q').params({ b: 1, a: [1, 2] });
  const b = new Key('q').params({ a: [1, 2], b: 1 });
  assert.equal(String(a), String(b), 'params are canonical (member order irrelevant)');
  assert.match(String(a), /^q:#[0-9a-f]{32}$/);
  assert.equal(String(new Key('u', 1).version(7)), 'u:1:v7');
  assert.equal(String(new Key('u', 'v7')), 'u:%767', 'a segment never reads as a version');
  assert.equal(String(new Key('u', 1).hashTag()), '{u}:1');
  assert.equal(new Key('u', 1).generationKey, 'u:!gen');
  assert.equal(new Key('u', 1).tagKey('team:1'), 'u:!tag:team%3A1');
  const long = new Key('n', 'x'.repeat(500));
  assert.ok(String(long).length <= 200 && String(long).startsWith('n:xxx'));
  assert.throws(() => new Key(''), RangeError);
});

test('Policy: ms numbers and duration strings, validated at construction', () => {
  const p = new Policy({ softTtl: '5m', hardTtl: 600_000, negativeTtl: '1.5s', lockBackoff: ['2ms', 5], onLockTimeout: 'serveStale' });
  const j = p.toJSON();
  assert.equal(j.softTtl, 300_000);
  assert.equal(j.hardTtl, 600_000);
  assert.equal(j.negativeTtl, 1500);
  assert.deepEqual(j.lockBackoff, [2, 5]);
  assert.equal(j.onLockTimeout, 'serveStale');
  assert.throws(() => new Policy({ softTtl: '10s', hardTtl: '5s' }), (e) => e instanceof RangeError && /hardTtl/.test(e.message));
  assert.throws(() => new Policy({ softTtl: '5 parsecs' }), (e) => e instanceof RangeError && /softTtl/.test(e.message));
  assert.throws(() => new Policy({ jitter: 1.5 }), (e) => e instanceof RangeError && /jitter/.test(e.message));
  assert.throws(() => new Policy({ softTTL: '5m' }), (e) => e instanceof TypeError && /softTTL/.test(e.message));
  assert.throws(() => new Policy({ onStoreError: 'explode' }), RangeError);
});

test('wrong argument types -> TypeError naming the argument', async () => {
  const cache = new Cache();
  const key = new Key('t', 1);
  const expectType = async (p, name) =>
    assert.rejects(p, (e) => e instanceof TypeError && e.message.includes(`\`${name}\``), `TypeError naming ${name}`);
  const expectThrow = (f, name) =>
    assert.throws(f, (e) => e instanceof TypeError && e.message.includes(`\`${name}\``), `TypeError naming ${name}`);

  await expectType(cache.getOrLoad('t:1', async () => 1), 'key');
  await expectType(cache.getOrLoad(key, 'not a function'), 'loader');
  await expectType(cache.getOrLoad(key, async () => 1, 'tags'), 'options');
  await expectType(cache.getOrLoad(key, async () => 1, { tags: 'a' }), 'options.tags');
  await expectType(cache.getOrLoad(key, async () => 1, { tags: [1] }), 'options.tags[0]');
  await expectType(cache.getOrLoad(key, async () => 1, { policy: 5 }), 'options.policy');
  await expectType(cache.get(42), 'key');
  await expectType(cache.set(key, undefined), 'value');
  await expectType(cache.set(key, 1, { version: 'seven' }), 'options.version');
  await expectType(cache.invalidate(key, { mode: 'nuke' }), 'options.mode');
  await expectType(cache.invalidateTag(key, 7), 'tag');
  await expectType(cache.bump('ns'), 'key');

  expectThrow(() => new Key(7), 'namespace');
  expectThrow(() => new Key('ns', {}), 'segments[0]');
  expectThrow(() => new Key('ns').version('7'), 'version');
  expectThrow(() => new Key('ns').hashTag('yes'), 'on');
  expectThrow(() => new Policy({ softTtl: true }), 'policy.softTtl');
  expectThrow(() => new Policy({ jitter: '10%' }), 'policy.jitter');
  expectThrow(() => new Policy('5m'), 'policy');
  expectThrow(() => new MemoryStore({ maxEntries: 'many' }), 'maxEntries');
  expectThrow(() => new RedisStore({}), 'client');
  expectThrow(() => new RedisStore(null), 'client');
  expectThrow(() => new Cache({ store: {} }), 'options.store');
  expectThrow(() => new Cache({ codec: { id: 5, encode() {}, decode() {} } }), 'codec.id');
  expectThrow(() => new Cache({ onBackgroundError: 'log' }), 'options.onBackgroundError');
});

test('a value JSON cannot encode rejects with the encoder error; nothing is cached', async () => {
  const cache = new Cache();
  const key = new Key('t', 'bigint');
  await assert.rejects(cache.getOrLoad(key, async () => ({ n: 1n })), TypeError);
  assert.equal(await cache.get(key), undefined);
});

test('KarltonError carries a code', async () => {
  const cache = new Cache({ policy: { loadHardTimeout: 20 } });
  await assert.rejects(cache.getOrLoad(new Key('t', 'slow'), () => new Promise((r) => setTimeout(r, 200, 1))), (e) => e instanceof KarltonError && e.code === 'ERR_KARLTON_LOAD_TIMEOUT');
});

test('Key: a string with a lone surrogate is refused (never replaced by U+FFFD)', () => {
  // Replacing would let distinct inputs build one key: 'n:\uD800' and 'n:\uFFFD' must differ.
  const bad = (e, what) => e instanceof RangeError && e.message.includes(what) && /lone surrogate/.test(e.message);
  assert.throws(() => new Key('n', '\uD800'), (e) => bad(e, 'segments[0]'));
  assert.throws(() => new Key('n', 'ok', 'a\uDC00b'), (e) => bad(e, 'segments[1]') && /index 1/.test(e.message));
  assert.throws(() => new Key('n\uD83D'), (e) => bad(e, 'namespace'));
  assert.throws(() => new Key('n', 1).tagKey('t\uD800'), (e) => bad(e, 'tag'));
  assert.equal(String(new Key('n', '\uFFFD')), 'n:\uFFFD', 'U+FFFD itself is an ordinary character');
  assert.equal(String(new Key('n', '😀é')), 'n:😀é', 'surrogate pairs are one character');
  assert.equal(String(new Key('n', 'x'.repeat(300) + 'é')).length <= 200, true, 'long strings read whole');
  assert.throws(() => new Key('n', 'x'.repeat(300) + '\uD800'), (e) => bad(e, 'segments[0]') && /index 300/.test(e.message));
});

test('Cache: a tag with a lone surrogate is refused, not dropped', async () => {
  const cache = new Cache({ store: new MemoryStore() });
  await assert.rejects(cache.getOrLoad(new Key('n', 1), () => 1, { tags: ['t\uDFFF'] }), (e) => e instanceof RangeError && /options\.tags\[0\]/.test(e.message));
  await assert.rejects(cache.get(new Key('n', 1), { tags: ['t\uDFFF'] }), RangeError);
});

test('Key#maxLen takes the number exactly: never wrapped to 32 bits, never rounded', () => {
  const seg = 'x'.repeat(300);
  const whole = String(new Key('n', seg).maxLen(1000));
  assert.equal(whole, `n:${seg}`);
  // 2**32 + 200 used to wrap to 200 (and truncate this key); it is a very large maximum
  assert.equal(String(new Key('n', seg).maxLen(2 ** 32 + 200)), whole);
  assert.equal(new Key('n', seg).maxLen(2 ** 32 + 200).tagKey('t'), 'n:!tag:t');
  for (const n of [127, -1, 1.5, 2 ** 53, Infinity, NaN]) {
    assert.throws(() => new Key('n', seg).maxLen(n), RangeError, `maxLen(${n})`);
  }
  assert.throws(() => new Key('n').maxLen('300'), TypeError);
});

test('Cache: every hit hands the caller its own value, equal to a fresh decode', async () => {
  const store = new MemoryStore();
  const cache = new Cache({ store, policy: { softTtl: '1h' } });
  const key = new Key('hits', 1);
  const value = { a: [1, { b: -0 }], s: 'é\u2028', n: null, t: true, ['__proto__']: { x: 1 } };
  const text = JSON.stringify(value);
  await cache.set(key, JSON.parse(text));
  for (let i = 0; i < 20; i++) {
    // past the point where the copier is compiled, and through both entry points
    const v = i % 2 ? await cache.get(key) : await cache.getOrLoad(key, () => assert.fail('no load on a hit'));
    assert.deepEqual(v, JSON.parse(text));
    assert.equal(Object.getPrototypeOf(v), Object.prototype, 'a __proto__ member stays a member');
    assert.ok(Object.hasOwn(v, '__proto__'));
    v.a.push('mutated');
    v.s = 'mutated';
  }
  // another Key object for the same key string, and a new Key per call
  assert.deepEqual(await cache.getOrLoad(new Key('hits', 1), () => 0), JSON.parse(text));
  // a new value is seen at once (the memo compares the served bytes)
  await cache.set(key, { v: 2 });
  assert.deepEqual(await cache.getOrLoad(key, () => 0), { v: 2 });
  assert.deepEqual(await cache.get(new Key('hits', 1)), { v: 2 });
  // a second cache on the same store with the same keys: its own memo
  const other = new Cache({ store, policy: { softTtl: '1h' } });
  assert.deepEqual(await other.get(key), { v: 2 });
  await other.set(key, [3]);
  assert.deepEqual(await cache.get(key), [3]);
  // primitives
  await cache.set(key, 'text');
  for (let i = 0; i < 6; i++) assert.equal(await cache.getOrLoad(key, () => 0), 'text');
  assert.equal(cache.stats().loads, 0);
});

test('issue 11: Key#params takes plain JSON data only — nothing JSON.stringify would change silently', () => {
  class Point {
    constructor() {
      this.x = 1;
    }
  }
  const refused = {
    Map: new Map([['a', 1]]),
    Set: new Set([1]),
    NaN: NaN,
    Infinity: { r: Infinity },
    'undefined member': { a: undefined },
    'undefined element': [undefined],
    Date: new Date(0),
    toJSON: { toJSON: () => 1 },
    'class instance': new Point(),
    function: () => 1,
    // (a bigint is taken since issue 9: an exact integer, see boundaries.test.mjs)
    hole: [1, , 2], // eslint-disable-line no-sparse-arrays
    symbol: { [Symbol('s')]: 1 },
  };
  for (const [what, v] of Object.entries(refused)) {
    assert.throws(() => new Key('q').params(v), TypeError, what);
  }
  let deep = 1;
  for (let i = 0; i < 129; i++) deep = [deep];
  assert.throws(() => new Key('q').params(deep), RangeError);
  // Plain data still works, canonically; distinct inputs build distinct keys.
  assert.equal(String(new Key('q').params({ a: [1, { b: null }], c: 'x' })), String(new Key('q').params({ c: 'x', a: [1, { b: null }] })));
  assert.notEqual(String(new Key('q').params({})), String(new Key('q').params({ a: null })));
  assert.ok(new Key('q').params(Object.create(null)));
});
