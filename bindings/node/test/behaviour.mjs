// Behaviour every store must show (issue 5 §3/§5). Run by memory.test.mjs and redis.test.mjs.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Cache, Key, Policy, KarltonError } from '../index.mjs';
import { sleep, deferred } from './helpers.mjs';

let seq = 0;
/** A fresh namespace per test, so tests on one shared store never see each other's keys. */
export const ns = (name) => `t${process.pid}_${++seq}_${name}`;

/** Loader that counts its calls and resolves `value` after `ms`. */
export function countingLoader(value, ms = 0) {
  const f = async () => {
    f.calls++;
    if (ms) await sleep(ms);
    return typeof value === 'function' ? value(f.calls) : value;
  };
  f.calls = 0;
  return f;
}

/**
 * @param label store name for test titles
 * @param makeCache (options) => Cache over the store under test
 * @param opts.hashTag build every key in hash-tag form (a Redis Cluster: an entry and its
 *   counters must share a slot)
 */
export function behaviour(label, makeCache, { hashTag = false } = {}) {
  const mkKey = (...a) => (hashTag ? new Key(...a).hashTag() : new Key(...a));

  test(`${label}: hit, miss, load, stats`, async () => {
    const cache = makeCache({ policy: { softTtl: '1m' } });
    const key = mkKey(ns('basic'), 'user', 42);
    const load = countingLoader({ id: 42, name: 'Ada', tags: ['x'], n: 1.5 });
    assert.deepEqual(await cache.getOrLoad(key, load), { id: 42, name: 'Ada', tags: ['x'], n: 1.5 });
    assert.deepEqual(await cache.getOrLoad(key, load), { id: 42, name: 'Ada', tags: ['x'], n: 1.5 });
    assert.equal(load.calls, 1);
    const s = cache.stats();
    assert.equal(s.loads, 1);
    assert.equal(s.misses, 1);
    assert.equal(s.hitsFresh, 1);
  });

  test(`${label}: 500 concurrent getOrLoad on one expired key -> one loader call (C3)`, async () => {
    const cache = makeCache({ policy: { softTtl: '1m', lockWait: '5s' } });
    const key = mkKey(ns('stampede'), 'hot');
    const first = countingLoader('v0');
    assert.equal(await cache.getOrLoad(key, first, { policy: { softTtl: 60 } }), 'v0');
    await sleep(120); // past hard expiry (hardTtl = softTtl): gone
    const load = countingLoader('v1', 50);
    const results = await Promise.all(Array.from({ length: 500 }, () => cache.getOrLoad(key, load)));
    assert.equal(load.calls, 1);
    assert.ok(results.every((r) => r === 'v1'));
    assert.equal(await cache.get(key), 'v1');
  });

  test(`${label}: stale-while-revalidate answers at once while one refresh runs`, { timeout: 30_000 }, async () => {
    const cache = makeCache({ policy: { softTtl: 50, hardTtl: '10s' } });
    const key = mkKey(ns('swr'), 'page');
    await cache.getOrLoad(key, countingLoader('old'));
    await sleep(100); // stale: past soft, before hard
    // The refresh is held open until every stale answer is in: the answers cannot have waited
    // for it (an explicit gate, not "under 200 ms").
    const gate = deferred();
    const refreshed = deferred();
    let calls = 0;
    const slow = async () => {
      calls++;
      await gate.promise;
      setImmediate(refreshed.resolve);
      return 'new';
    };
    const answers = await Promise.all(Array.from({ length: 50 }, () => cache.getOrLoad(key, slow)));
    assert.ok(answers.every((a) => a === 'old'), 'stale value served');
    assert.equal(calls, 1, 'one background refresh');
    gate.resolve();
    await refreshed.promise;
    const deadline = Date.now() + 10_000;
    while ((await cache.get(key)) !== 'new' && Date.now() < deadline) await sleep(5);
    assert.equal(await cache.get(key), 'new', 'the refresh filled');
    assert.equal(calls, 1);
    assert.ok(cache.stats().hitsStale >= 1);
  });

  test(`${label}: loader rejections propagate (the loader's own error object)`, async () => {
    const cache = makeCache({});
    const key = mkKey(ns('reject'), 'x');
    const boom = new Error('source down');
    const load = async () => {
      throw boom;
    };
    const rs = await Promise.allSettled([cache.getOrLoad(key, load), cache.getOrLoad(key, load)]);
    for (const r of rs) {
      assert.equal(r.status, 'rejected');
      assert.equal(r.reason, boom);
    }
    // a synchronous throw is a rejection too
    await assert.rejects(cache.getOrLoad(key, () => { throw boom; }), (e) => e === boom);
    assert.ok(cache.stats().loadErrors >= 2);
    // nothing cached: the next call loads
    assert.equal(await cache.getOrLoad(key, async () => 'fine'), 'fine');
  });

  test(`${label}: staleIfError serves the stale value when the loader fails`, async () => {
    const cache = makeCache({ policy: { softTtl: 40, staleIfError: '10s' } });
    const key = mkKey(ns('sie'), 'x');
    await cache.getOrLoad(key, async () => ({ v: 1 }));
    await sleep(80); // past hard expiry, inside stale-if-error
    const v = await cache.getOrLoad(key, async () => {
      throw new Error('down');
    });
    assert.deepEqual(v, { v: 1 });
    assert.equal(cache.stats().staleIfError, 1);
  });

  test(`${label}: undefined/null from the loader is cached as not-found for negativeTtl`, async () => {
    const cache = makeCache({ policy: { negativeTtl: '1m' } });
    for (const nothing of [undefined, null]) {
      const key = mkKey(ns('neg'), String(nothing));
      const load = countingLoader(nothing);
      assert.equal(await cache.getOrLoad(key, load), undefined);
      assert.equal(await cache.getOrLoad(key, countingLoader('late')), undefined, 'negative hit');
      assert.equal(load.calls, 1);
    }
    assert.equal(cache.stats().negativeHits, 2);
    // negativeTtl 0 (default): not-found is not cached
    const plain = makeCache({});
    const key = mkKey(ns('neg0'), 'x');
    assert.equal(await plain.getOrLoad(key, async () => undefined), undefined);
    assert.equal(await plain.getOrLoad(key, async () => 7), 7);
  });

  test(`${label}: invalidate during a load -> the load cannot fill (C2)`, async () => {
    const cache = makeCache({ policy: { softTtl: '1m' } });
    const key = mkKey(ns('c2'), 'acct');
    const gate = deferred();
    const pending = cache.getOrLoad(key, async () => {
      await gate.promise;
      return 'old (read before the write)';
    });
    await sleep(30);
    await cache.invalidate(key); // the writer updated the source, then invalidates
    gate.resolve();
    assert.equal(await pending, 'old (read before the write)', 'the caller still gets its value');
    assert.equal(await cache.get(key), undefined, 'but it was not cached');
    assert.equal(cache.stats().fillsRejected, 1);
    assert.equal(await cache.getOrLoad(key, async () => 'new'), 'new');
  });

  test(`${label}: set never lowers a version; set revokes a load in flight`, async () => {
    const cache = makeCache({});
    const key = mkKey(ns('ver'), 'doc');
    assert.equal(await cache.set(key, { rev: 2 }, { version: 2 }), true);
    assert.equal(await cache.set(key, { rev: 1 }, { version: 1 }), false);
    assert.deepEqual(await cache.get(key), { rev: 2 });
    assert.equal(await cache.set(key, { rev: 3 }, { version: 3n }), true);
    assert.deepEqual(await cache.get(key), { rev: 3 });

    const k2 = mkKey(ns('ver'), 'race');
    const gate = deferred();
    const p = cache.getOrLoad(k2, async () => {
      await gate.promise;
      return 'stale read';
    });
    await sleep(20);
    await cache.set(k2, 'written');
    gate.resolve();
    await p;
    assert.equal(await cache.get(k2), 'written');
  });

  test(`${label}: tags and namespace bumps orphan entries (T1)`, async () => {
    const cache = makeCache({});
    const n = ns('tags');
    const a = mkKey(n, 'a');
    const b = mkKey(n, 'b');
    await cache.getOrLoad(a, async () => 'a1', { tags: ['team:7'] });
    await cache.getOrLoad(b, async () => 'b1');
    await cache.invalidateTag(a, 'team:7');
    assert.equal(await cache.getOrLoad(a, async () => 'a2', { tags: ['team:7'] }), 'a2');
    assert.equal(await cache.getOrLoad(b, async () => 'b2'), 'b1', 'untagged entry survives');
    await cache.bump(b);
    assert.equal(await cache.getOrLoad(b, async () => 'b3'), 'b3');
    assert.equal(await cache.get(a, { tags: ['team:7'] }), undefined, 'bump orphaned the tagged entry too');
  });

  test(`${label}: invalidate markStale serves stale while one caller refreshes`, async () => {
    const cache = makeCache({ policy: { softTtl: '1m' } });
    const key = mkKey(ns('mark'), 'x');
    await cache.getOrLoad(key, async () => 'v1');
    assert.equal(await cache.invalidate(key, { mode: 'markStale' }), true);
    const load = countingLoader('v2', 100);
    assert.equal(await cache.getOrLoad(key, load), 'v1');
    await sleep(250);
    assert.equal(await cache.getOrLoad(key, load), 'v2');
    assert.equal(load.calls, 1);
  });

  test(`${label}: Buffers pass through; a custom codec round-trips`, async () => {
    const cache = makeCache({});
    const key = mkKey(ns('bytes'), 'blob');
    const bytes = Buffer.from([0, 1, 2, 255, 254]);
    assert.deepEqual(await cache.getOrLoad(key, async () => bytes), bytes);
    const again = await cache.getOrLoad(key, async () => Buffer.from('other'));
    assert.ok(Buffer.isBuffer(again));
    assert.deepEqual(again, bytes);

    const upper = {
      id: 200,
      encode: (v) => Buffer.from(String(v).toUpperCase()),
      decode: (b) => `decoded:${b.toString()}`,
    };
    const c2 = makeCache({ codec: upper });
    const k2 = mkKey(ns('codec'), 'x');
    assert.equal(await c2.getOrLoad(k2, async () => 'hello'), 'decoded:HELLO');
    assert.equal(await c2.getOrLoad(k2, async () => 'nope'), 'decoded:HELLO');
    await c2.set(k2, 'set');
    assert.equal(await c2.get(k2), 'decoded:SET');
  });

  test(`${label}: background refresh failures go to 'error' / onBackgroundError, never unhandled`, async () => {
    const unhandled = [];
    const onUnhandled = (r) => unhandled.push(r);
    process.on('unhandledRejection', onUnhandled);
    try {
      const seen = [];
      const cache = makeCache({ policy: { softTtl: 40, hardTtl: '1m' }, onBackgroundError: (e, k) => seen.push(['cb', e, k]) });
      cache.on('error', (e, k) => seen.push(['event', e, k]));
      const key = mkKey(ns('bg'), 'x');
      await cache.getOrLoad(key, async () => 'v1');
      await sleep(80);
      const boom = new Error('refresh failed');
      assert.equal(await cache.getOrLoad(key, async () => { throw boom; }), 'v1');
      await sleep(100);
      assert.deepEqual(seen.map((s) => s[0]).sort(), ['cb', 'event']);
      assert.ok(seen.every((s) => s[1] === boom && s[2] === String(key)));
      // no listener at all: still nothing unhandled, nothing thrown
      const quiet = makeCache({ policy: { softTtl: 40, hardTtl: '1m' } });
      await quiet.getOrLoad(key, async () => 'v1');
      await sleep(80);
      assert.equal(await quiet.getOrLoad(key, async () => { throw boom; }), 'v1');
      await sleep(100);
      assert.deepEqual(unhandled, []);
    } finally {
      process.off('unhandledRejection', onUnhandled);
    }
  });

  test(`${label}: loadHardTimeout fails a slow load; lock waits time out per onLockTimeout`, async () => {
    const cache = makeCache({ policy: { loadHardTimeout: 50 } });
    const key = mkKey(ns('timeout'), 'x');
    await assert.rejects(cache.getOrLoad(key, () => sleep(300).then(() => 1)), (e) => e instanceof KarltonError && e.code === 'ERR_KARLTON_LOAD_TIMEOUT');
    const strict = makeCache({ policy: { lockWait: 60, onLockTimeout: 'error', lockBackoff: 10 } });
    const other = makeCache({}); // another "process" holding the lease
    const k2 = mkKey(ns('lock'), 'x');
    // The holder's loader says when it runs (it then holds the lease) and finishes only when
    // told: explicit signals, not "it got there first after a 20 ms sleep".
    const running = deferred();
    const release = deferred();
    const holder = other.getOrLoad(k2, async () => {
      running.resolve();
      await release.promise;
      return 'held';
    });
    await running.promise;
    await assert.rejects(strict.getOrLoad(k2, async () => 'mine'), (e) => e instanceof KarltonError && e.code === 'ERR_KARLTON_LOCK_TIMEOUT');
    release.resolve();
    assert.equal(await holder, 'held');
    assert.equal(await strict.getOrLoad(k2, async () => 'mine'), 'held');
  });
}
