// karlton on a real Redis Cluster (3 masters + 3 replicas started by this file) through ioredis
// `Cluster`: the shared behaviour suite with hash-tag keys, the fast read routed by slot, a
// stampede across two caches and invalidation.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import Redis from 'ioredis';
import { Cache, Key, RedisStore } from '../index.mjs';
import { behaviour, ns, countingLoader } from './behaviour.mjs';
import { startCluster } from './helpers.mjs';

let cluster;
const clients = [];
function client() {
  const c = new Redis.Cluster(cluster.nodes.slice(0, 1), { redisOptions: { maxRetriesPerRequest: 1 } });
  c.on('error', () => {});
  clients.push(c);
  return c;
}

before(async () => {
  cluster = await startCluster();
});
after(async () => {
  for (const c of clients) c.disconnect();
  await cluster?.stop();
});

let shared;
behaviour('cluster', (options) => new Cache({ store: (shared ??= new RedisStore(client())), ...options }), { hashTag: true });

const delta = (a, b, names) => Object.fromEntries(names.map((n) => [n, (b[n] ?? 0) - (a[n] ?? 0)]));

test('cluster: hits are fast reads (TIME + MGET, no Lua) on the node that owns the slot', async () => {
  const store = new RedisStore(client());
  assert.equal(store._fast, true);
  const cache = new Cache({ store, policy: { softTtl: '1m' } });
  const keys = Array.from({ length: 20 }, (_, i) => new Key(ns(`fr${i}`), 'k').hashTag());
  const masters = new Set(keys.map((k) => cluster.masterOf(k.toString())));
  assert.equal(masters.size, 3, 'the keys spread over every master');
  for (const [i, k] of keys.entries()) assert.deepEqual(await cache.getOrLoad(k, async () => ({ n: i })), { n: i });
  const before = cluster.commandstats();
  for (let r = 0; r < 3; r++) {
    for (const [i, k] of keys.entries()) {
      assert.deepEqual(await cache.getOrLoad(k, async () => assert.fail('hit expected')), { n: i });
      assert.deepEqual(await cache.get(k), { n: i });
    }
  }
  const d = delta(before, cluster.commandstats(), ['evalsha', 'mget', 'time']);
  assert.deepEqual(d, { evalsha: 0, mget: 120, time: 120 });
  const s = cache.stats();
  assert.equal(s.hitsFresh, 120);
  assert.equal(s.loads, 20);
  assert.equal(s.storeErrors, 0);
});

test('cluster: fastReads: false runs the read script per hit', async () => {
  const cache = new Cache({ store: new RedisStore(client(), { fastReads: false }), policy: { softTtl: '1m' } });
  const k = new Key(ns('nofast'), 'k').hashTag();
  assert.equal(await cache.getOrLoad(k, async () => 1), 1);
  const before = cluster.commandstats();
  assert.equal(await cache.getOrLoad(k, async () => 2), 1);
  assert.equal(delta(before, cluster.commandstats(), ['evalsha']).evalsha, 1);
});

test('cluster: 2 caches x 25 concurrent getOrLoad -> one load; invalidate from the other cache (C3, C2)', async () => {
  const a = new Cache({ store: new RedisStore(client()), policy: { softTtl: '1m', lockWait: '5s' } });
  const b = new Cache({ store: new RedisStore(client()), policy: { softTtl: '1m', lockWait: '5s' } });
  const k = new Key(ns('stampede'), 'hot').hashTag();
  const load = countingLoader((n) => `v${n}`, 50);
  const res = await Promise.all([...Array.from({ length: 25 }, () => a.getOrLoad(k, load)), ...Array.from({ length: 25 }, () => b.getOrLoad(k, load))]);
  assert.equal(load.calls, 1);
  assert.ok(res.every((v) => v === 'v1'));
  assert.equal(await b.invalidate(k), true);
  assert.equal(await a.get(k), undefined);
  const again = await Promise.all(Array.from({ length: 25 }, () => a.getOrLoad(k, load)));
  assert.equal(load.calls, 2);
  assert.ok(again.every((v) => v === 'v2'));
});
