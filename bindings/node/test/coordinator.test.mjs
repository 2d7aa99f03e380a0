// Issue 10: the Node Cache as a host of core's per-process Coordinator — C5 after invalidate()
// and bump(), the stampede's stats table, undecodable cached values, OS seeds. Each on the
// memory store and on a real redis-server this file starts (a free port, a temp dir).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import Redis from 'ioredis';
import { Cache, Key, MemoryStore, RedisStore, internals } from '../index.mjs';
import { ns } from './behaviour.mjs';
import { startRedis, deferred, recordEntry, withEntry } from './helpers.mjs';

let server;
const clients = [];
function client() {
  const c = new Redis(server.port, '127.0.0.1', { maxRetriesPerRequest: 1 });
  c.on('error', () => {});
  clients.push(c);
  return c;
}

before(async () => {
  server = await startRedis();
});
after(async () => {
  for (const c of clients) c.disconnect();
  await server?.stop();
});

const memoryStore = new MemoryStore();
const stores = {
  memory: () => memoryStore,
  redis: () => new RedisStore(client()),
};

/** A loader that records its start (`started` resolves) and waits for `gate` before answering
 * what it read from `source` when it started (a slow read of the source of truth). */
function gatedLoader(source) {
  const started = deferred();
  const gate = deferred();
  const f = async () => {
    f.calls++;
    const v = source.value;
    started.resolve();
    await gate.promise;
    return v;
  };
  f.calls = 0;
  f.started = started.promise;
  f.release = gate.resolve;
  return f;
}

/** Plant an entry whose header is valid but whose value bytes are not JSON, through the store. */
async function plantUndecodable(label, store, key, softTtl = '1m') {
  const bad = Buffer.from('{not json').toString('hex');
  if (label === 'memory') {
    const seed = new Cache({ store, policy: { softTtl, hardTtl: '10m', jitter: 0 } });
    await seed.getOrLoad(key, async () => ({ good: true }));
    const e = internals.decodeEntry(internals.memoryRawEntry(store, key));
    e.value_hex = bad;
    const op = { op: 'fill', key: String(key), entry: internals.encodeEntry(e).toString('hex'), soft_at: e.soft_at, hard_at: e.hard_at, expire_at: e.hard_at, gen_keys: [key.generationKey], generations: null, token: null, version: null };
    const native = store[Object.getOwnPropertySymbols(store)[0]];
    assert.equal(JSON.parse(native.applyJson(Date.now(), JSON.stringify(op))).reply, 'stored');
  } else {
    const c = store.client;
    const seed = new Cache({ store, policy: { softTtl, hardTtl: '10m', jitter: 0 } });
    await seed.getOrLoad(key, async () => ({ good: true }));
    const raw = await c.getBuffer(String(key));
    const e = internals.decodeEntry(recordEntry(raw));
    e.value_hex = bad;
    await c.set(String(key), withEntry(raw, internals.encodeEntry(e)), 'KEEPTTL');
  }
}

for (const [label, makeStore] of Object.entries(stores)) {
  for (const write of ['invalidate', 'bump']) {
    test(`${label}: C5 — a call that begins after ${write}() returned never gets a value loaded before it`, async () => {
      const cache = new Cache({ store: makeStore(), policy: { softTtl: '1m' } });
      const key = new Key(ns(`c5${write}`), 'acct');
      const source = { value: 'old' };
      // A reads the old source value and is slow.
      const loadA = gatedLoader(source);
      const a = cache.getOrLoad(key, loadA);
      await loadA.started;
      // The source changes; the write returns while A still loads.
      source.value = 'new';
      if (write === 'invalidate') await cache.invalidate(key);
      else await cache.bump(key);
      // B begins after the write: it must not join A's flight; it loads "new".
      const loadB = gatedLoader(source);
      const b = cache.getOrLoad(key, loadB);
      if (write === 'invalidate') {
        await loadB.started; // the invalidation revoked A's lease: B gets a new one and loads
      } else {
        // a bump leaves A's lease alone (it orphans A's fill instead): B's read is under way
        // and waits for that lease
        await new Promise((resolve) => setImmediate(resolve));
      }
      // C begins later still: it may share B's load, never A's.
      const loadC = gatedLoader(source);
      const c = cache.getOrLoad(key, loadC);
      // A finishes first with "old" (its fill is refused or orphaned), then B with "new".
      loadA.release();
      assert.equal(await a, 'old', "A's own call began before the write: it gets its load");
      await loadB.started;
      loadB.release();
      loadC.release();
      assert.equal(await b, 'new');
      assert.equal(await c, 'new', 'C never gets the value A loaded before the write');
      assert.equal(loadA.calls + loadB.calls, 2);
      assert.equal(await cache.get(key), 'new');
      assert.equal(await cache.getOrLoad(key, async () => 'later'), 'new');
      assert.deepEqual(cache.pending(), { calls: 0, flights: 0 });
    });
  }

  test(`${label}: a 20-caller stampede on a missing key is one load, counted by the core's table`, async () => {
    const cache = new Cache({ store: makeStore(), policy: { softTtl: '1m' } });
    const key = new Key(ns('stampede20'), 'hot');
    const load = gatedLoader({ value: 'v' });
    const calls = Array.from({ length: 20 }, () => cache.getOrLoad(key, load));
    await load.started;
    load.release();
    const values = await Promise.all(calls);
    assert.ok(values.every((v) => v === 'v'));
    assert.equal(load.calls, 1);
    const s = cache.stats();
    assert.deepEqual(
      { misses: s.misses, loads: s.loads, coalesced: s.coalesced, leaseWaits: s.leaseWaits, hitsFresh: s.hitsFresh },
      { misses: 20, loads: 1, coalesced: 19, leaseWaits: 0, hitsFresh: 0 },
    );
    assert.deepEqual(cache.pending(), { calls: 0, flights: 0 });
  });

  test(`${label}: an undecodable cached value is a corrupt entry — getOrLoad replaces it, get reads it as missing`, async () => {
    const store = makeStore();
    const key = new Key(ns('undecodable'), 'x');
    await plantUndecodable(label, store, key);
    const cache = new Cache({ store, policy: { softTtl: '1m' } });
    assert.equal(await cache.get(key), undefined, 'get answers missing');
    assert.equal(cache.stats().corruptEntries, 1, 'and counts it');
    let calls = 0;
    const loader = async () => {
      calls++;
      return { fixed: true };
    };
    assert.deepEqual(await cache.getOrLoad(key, loader), { fixed: true }, 'the loader runs and answers');
    assert.equal(calls, 1);
    assert.equal(cache.stats().corruptEntries, 2);
    // the fill replaced the bytes: a plain hit now, no load
    assert.deepEqual(await cache.getOrLoad(key, loader), { fixed: true });
    assert.deepEqual(await cache.get(key), { fixed: true });
    assert.equal(calls, 1);
    assert.equal(cache.stats().corruptEntries, 2);
    assert.deepEqual(cache.pending(), { calls: 0, flights: 0 });
  });

  test(`${label}: an undecodable stale value is replaced by a load, not served and not left behind its own lease`, async () => {
    const store = makeStore();
    const key = new Key(ns('undecodablestale'), 'x');
    await plantUndecodable(label, store, key, '50ms');
    await new Promise((resolve) => setTimeout(resolve, 100)); // past soft expiry, before hard
    const cache = new Cache({ store, policy: { softTtl: '50ms', hardTtl: '1m', lockWait: '5s', jitter: 0 } });
    let calls = 0;
    const loader = async () => {
      calls++;
      return { fixed: true };
    };
    const t0 = Date.now();
    assert.deepEqual(await cache.getOrLoad(key, loader), { fixed: true });
    assert.ok(Date.now() - t0 < 4000, 'no lock_wait behind the lease this call gave back');
    assert.equal(calls, 1);
    const s = cache.stats();
    assert.equal(s.corruptEntries, 1);
    assert.equal(s.loads, 1);
    assert.equal(s.hitsStale, 0, 'the stale hit it was counted as is taken back');
    assert.deepEqual(cache.pending(), { calls: 0, flights: 0 });
  });

  test(`${label}: a loader that throws after its lease was taken does not strand the key or its joiners`, async () => {
    const cache = new Cache({ store: makeStore(), policy: { softTtl: '1m' } });
    const key = new Key(ns('throw'), 'x');
    const started = deferred();
    const gate = deferred();
    const boom = new Error('source down');
    const first = cache.getOrLoad(key, async () => {
      started.resolve();
      await gate.promise;
      throw boom;
    });
    await started.promise;
    const joiner = cache.getOrLoad(key, async () => 'unused');
    gate.resolve();
    await assert.rejects(first, (e) => e === boom);
    await assert.rejects(joiner, (e) => e === boom, "a joiner gets the loader's own error");
    assert.equal(await cache.getOrLoad(key, async () => 'next'), 'next', 'the lease was released');
    assert.deepEqual(cache.pending(), { calls: 0, flights: 0 });
  });

  test(`${label}: issue 11 — a value over maxValueBytes is answered to every caller, never stored, and its lease goes back`, async () => {
    const cache = new Cache({ store: makeStore(), policy: { softTtl: '1m', maxValueBytes: 64 } });
    const key = new Key(ns('toolarge'), 'x');
    const big = 'x'.repeat(100);
    const gate = deferred();
    let calls = 0;
    const loader = async () => {
      calls++;
      await gate.promise;
      return big;
    };
    const callers = Array.from({ length: 10 }, () => cache.getOrLoad(key, loader));
    gate.resolve();
    assert.deepEqual(await Promise.all(callers), Array(10).fill(big), 'joiners share it (not run again)');
    assert.equal(calls, 1);
    assert.equal(await cache.get(key), undefined, 'not stored');
    const s = cache.stats();
    assert.equal(s.valuesTooLarge, 1);
    assert.equal(s.fillsRejected, 0);
    assert.equal(await cache.getOrLoad(key, async () => 'small'), 'small', 'the lease went back: loads at once');
    assert.equal(await cache.set(key, big), false, 'a set over the limit is refused…');
    assert.equal(await cache.get(key), undefined, '…and removes the value it would replace');
    assert.equal(cache.stats().valuesTooLarge, 2);
    assert.deepEqual(cache.pending(), { calls: 0, flights: 0 });
  });
}

for (const [label, makeStore] of Object.entries(stores)) {
  test(`${label}: issue 11 — a loader calling getOrLoad on the key its own chain loads is refused, not a hang`, async () => {
    const cache = new Cache({ store: makeStore(), policy: { softTtl: '1m' } });
    const key = new Key(ns('reentrant'), 'k');
    const other = new Key(ns('reentrant'), 'k2');
    const withTimeout = (p) => Promise.race([p, new Promise((_, rej) => setTimeout(() => rej(new Error('deadlock: no answer in 5 s')), 5000).unref())]);
    let inner;
    const outer = await withTimeout(
      cache.getOrLoad(key, async () => {
        inner = await cache.getOrLoad(key, async () => 'never').catch((e) => e);
        return 'outer';
      }),
    );
    assert.equal(outer, 'outer');
    assert.equal(inner?.code, 'ERR_KARLTON_REENTRANT', String(inner));
    // key -> other -> key
    await cache.invalidate(key);
    const got = await withTimeout(
      cache.getOrLoad(key, () =>
        cache.getOrLoad(other, async () => {
          const e = await cache.getOrLoad(key, async () => 'never').catch((x) => x);
          return e?.code ?? 'joined';
        }),
      ),
    );
    assert.equal(got, 'ERR_KARLTON_REENTRANT');
    // Callers outside the chain are unaffected, and nothing is left pending.
    assert.equal(await cache.getOrLoad(key, async () => 'x'), 'ERR_KARLTON_REENTRANT');
    assert.deepEqual(cache.pending(), { calls: 0, flights: 0 });
  });
}

for (const [label, makeStore] of Object.entries(stores)) {
  test(`${label}: issue 11 — a joiner waits at most lockWait, then loads for itself (no fill)`, async () => {
    const cache = new Cache({ store: makeStore(), policy: { softTtl: '1m', lockWait: 200 } });
    const key = new Key(ns('boundjoin'), 'k');
    const started = deferred();
    const go = deferred();
    const leader = cache.getOrLoad(key, async () => {
      started.resolve();
      await go.promise; // released only after the joiner answered: an unbounded joiner hangs
      return 'leader';
    });
    await started.promise;
    const joiner = await Promise.race([
      cache.getOrLoad(key, async () => 'joiner'),
      new Promise((_, rej) => setTimeout(() => rej(new Error('joiner not bounded by lockWait')), 5000).unref()),
    ]);
    assert.equal(joiner, 'joiner');
    go.resolve();
    assert.equal(await leader, 'leader');
    assert.equal(await cache.get(key), 'leader', 'only the lease holder filled');
    assert.equal(cache.stats().leaseTimeouts, 1);
    assert.deepEqual(cache.pending(), { calls: 0, flights: 0 });
  });
}

for (const [label, makeStore] of Object.entries(stores)) {
  test(`${label}: C3 — a load longer than its lease extends it, so another process waits for it instead of loading again`, async () => {
    const store = makeStore();
    const policy = { softTtl: '1m', leaseTtl: 1000, lockWait: 10_000, jitter: 0 };
    // Two caches on one store: two processes sharing one Redis.
    const [a, b] = [new Cache({ store, policy }), new Cache({ store: label === 'memory' ? store : makeStore(), policy })];
    const key = new Key(ns('longload'), 'k');
    await a.invalidate(key);
    const started = deferred();
    const long = a.getOrLoad(key, async () => {
      started.resolve();
      await new Promise((r) => setTimeout(r, 2500));
      return 'long';
    });
    await started.promise;
    await new Promise((r) => setTimeout(r, 1500)); // past the first lease's end
    let second = 0;
    const v = await b.getOrLoad(key, async () => {
      second++;
      return 'second';
    });
    assert.equal(await long, 'long');
    assert.equal(second, 0, 'a second load started while the first held its key');
    assert.equal(v, 'long', 'the waiter got the long load');
    assert.ok(a.stats().leaseExtensions >= 2, JSON.stringify(a.stats()));
    assert.equal(a.stats().fillsRejected, 0);
    assert.equal(b.stats().leaseWaits, 1);
  });
}

test('issue 11: every load has a deadline — a loader that never settles is answered LoadTimeout at the default 30 s, its lease extended until then and released there', async () => {
  const store = new MemoryStore();
  const cache = new Cache({ store, policy: { softTtl: '1m' } }); // no load timeout given
  const key = new Key(ns('hung'), 'k');
  const t0 = Date.now();
  // Nothing else keeps the event loop alive: before, a hung loader let Node exit silently.
  await assert.rejects(cache.getOrLoad(key, () => new Promise(() => {})), (e) => e.code === 'ERR_KARLTON_LOAD_TIMEOUT');
  assert.ok(Date.now() - t0 >= 29_000, `answered after ${Date.now() - t0} ms`);
  const s = cache.stats();
  // At 5, 10, 15, 20 and 25 s (lease 10 s); a sixth only if a wake fell a hair before 30 s.
  assert.ok(s.leaseExtensions >= 5 && s.leaseExtensions <= 6, JSON.stringify(s));
  // The lease went back at the deadline: another process loads at once.
  const other = new Cache({ store, policy: { softTtl: '1m', lockWait: 50, onLockTimeout: 'error' } });
  assert.equal(await other.getOrLoad(key, async () => 'next'), 'next');
  assert.equal(other.stats().leaseWaits, 0);
});

test('issue 11: a value nested deeper than readers take (128) is refused, never stored', async () => {
  const cache = new Cache({ policy: { softTtl: '1m' } });
  const key = new Key(ns('deep'), 'k');
  let deep = 'leaf';
  for (let i = 0; i < 130; i++) deep = [deep];
  let ok = 'leaf';
  for (let i = 0; i < 127; i++) ok = [ok];
  await assert.rejects(cache.set(key, deep), RangeError);
  await assert.rejects(cache.getOrLoad(key, async () => deep), RangeError);
  assert.equal(await cache.get(key), undefined, 'nothing stored');
  assert.deepEqual(await cache.getOrLoad(key, async () => ok), ok);
  assert.deepEqual(cache.pending(), { calls: 0, flights: 0 });
});

test('issue 11: maxValueBytes is validated by the core', () => {
  assert.throws(() => new Cache({ policy: { maxValueBytes: 0 } }), /maxValueBytes/);
  assert.throws(() => new Cache({ policy: { maxValueBytes: 2 ** 29 + 1 } }), /maxValueBytes/);
  assert.throws(() => new Cache({ policy: { maxValueBytes: '1' } }), TypeError);
});

test('seeds: caches created at once draw different jitter (OS seeds, not the clock)', async () => {
  // The same key, the same policy and the same instant in five caches, each on its own store:
  // only the coordinator's seed can make their TTLs differ.
  const caches = Array.from({ length: 5 }, () => new Cache({ store: new MemoryStore({ seed: 1 }), policy: { softTtl: '1h', jitter: 0.5 } }));
  const key = new Key(ns('seeds'), 'same');
  await Promise.all(caches.map((c) => c.getOrLoad(key, async () => 'v')));
  const softAt = caches.map((c) => internals.decodeEntry(internals.memoryRawEntry(c.store, key)).soft_at);
  assert.equal(new Set(softAt).size, softAt.length, `jittered soft expiries: ${softAt.join(', ')}`);
});
