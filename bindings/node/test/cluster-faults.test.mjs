// Faults on a real Redis Cluster (3 masters + 3 replicas of this file's own) through ioredis
// `Cluster`: a master SIGKILLed mid-stampede, its replica promoted.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import Redis from 'ioredis';
import { Cache, Key, RedisStore } from '../index.mjs';
import { startCluster, sleep } from './helpers.mjs';

const stops = [];

/** Callers' latency percentiles, for the diagnostics (reported, never asserted). */
function pcts(xs) {
  const s = [...xs].sort((a, b) => a - b);
  const p = (q) => s[Math.min(s.length - 1, Math.round(q * (s.length - 1)))].toFixed(1);
  return `caller ms p50 ${p(0.5)} p99 ${p(0.99)} max ${p(1)}`;
}
after(async () => {
  for (const s of stops) await s();
});

test('cluster: a master killed mid-stampede -> every call answered, loads <= 1/key + 1/store error, entries survive the promotion', async (t) => {
  const cluster = await startCluster();
  const c = new Redis.Cluster(cluster.nodes.slice(0, 1), { redisOptions: { maxRetriesPerRequest: 1 } });
  c.on('error', () => {});
  stops.push(async () => {
    c.disconnect();
    await cluster.stop();
  });
  const cache = new Cache({ store: new RedisStore(c), policy: { softTtl: '1m', lockWait: '5s' } });
  const keys = Array.from({ length: 4 }, (_, i) => new Key('failover', i).hashTag()); // one slot
  const loads = new Map();
  const loader = (k) => async () => {
    loads.set(String(k), (loads.get(String(k)) ?? 0) + 1);
    await sleep(20);
    return `value-of-${k}`;
  };
  for (const k of keys) assert.equal(await cache.getOrLoad(k, loader(k)), `value-of-${k}`);
  const victim = cluster.masterOf(String(keys[0]));
  const [replica] = cluster.replicasOf(victim);
  const deadline = Date.now() + 10_000;
  while (!keys.every((k) => cluster.replicaHas(replica, String(k)))) {
    assert.ok(Date.now() < deadline, 'the replica never got the entries');
    await sleep(50);
  }
  let stop = false;
  const answers = [];
  const errors = [];
  const latencies = [];
  const workers = Array.from({ length: 8 }, async (_, w) => {
    for (let n = 0; !stop; n++) {
      const k = keys[(w + n) % keys.length];
      const t0 = performance.now();
      try {
        answers.push([String(k), await cache.getOrLoad(k, loader(k))]);
      } catch (e) {
        errors.push(e);
      }
      latencies.push(performance.now() - t0);
      await sleep(2);
    }
  });
  try {
    await sleep(300);
    await cluster.kill(victim);
    await cluster.waitOk();
    await sleep(300);
  } finally {
    stop = true; // also when the steps above failed: the callers never outlive the test
    await Promise.all(workers);
  }
  assert.deepEqual(errors, []);
  assert.ok(answers.length > 0 && answers.every(([k, v]) => v === `value-of-${k}`));
  const total = () => [...loads.values()].reduce((a, b) => a + b, 0);
  const s = cache.stats();
  t.diagnostic(`failover: ${answers.length} answers, loads ${total()}, storeErrors ${s.storeErrors}, hitsFresh ${s.hitsFresh}, ${pcts(latencies)}`);
  assert.ok(total() <= keys.length + s.storeErrors, `loads ${JSON.stringify([...loads])}, stats ${JSON.stringify(s)}`);
  assert.equal(cluster.masterOf(String(keys[0])), replica);
  // The promoted replica serves the replicated entries (no load); a new key's stampede loads once.
  const before = total();
  for (const k of keys) assert.equal(await cache.getOrLoad(k, loader(k)), `value-of-${k}`);
  assert.equal(total(), before);
  const fresh = new Key('failover', 'new').hashTag();
  const out = await Promise.all(Array.from({ length: 20 }, () => cache.getOrLoad(fresh, loader(fresh))));
  assert.ok(out.every((v) => v === `value-of-${fresh}`));
  assert.equal(loads.get(String(fresh)), 1);
});

test('cluster: the slot of hot keys migrated mid-stampede (ASK, TRYAGAIN) -> every call answered, loads <= 1/key + 1/store error, entries move with it', async (t) => {
  const cluster = await startCluster();
  const c = new Redis.Cluster(cluster.nodes.slice(0, 1), { redisOptions: { maxRetriesPerRequest: 1 } });
  c.on('error', () => {});
  stops.push(async () => {
    c.disconnect();
    await cluster.stop();
  });
  const cache = new Cache({ store: new RedisStore(c), policy: { softTtl: '1m', lockWait: '5s' } });
  const keys = Array.from({ length: 4 }, (_, i) => new Key('migrate', i).hashTag());
  const loads = new Map();
  const loader = (k) => async () => {
    loads.set(String(k), (loads.get(String(k)) ?? 0) + 1);
    return `value-of-${k}`;
  };
  for (const k of keys) await cache.getOrLoad(k, loader(k));
  const src = cluster.masterOf(String(keys[0]));
  const dst = cluster.masters().find((m) => m !== src);
  const slot = Number(cluster.cli(src, 'cluster', 'keyslot', String(keys[0])).trim());
  let stop = false;
  const answers = [];
  const errors = [];
  const latencies = [];
  const workers = Array.from({ length: 8 }, async (_, w) => {
    for (let n = 0; !stop; n++) {
      const k = keys[(w + n) % keys.length];
      const t0 = performance.now();
      try {
        answers.push([String(k), await cache.getOrLoad(k, loader(k))]);
      } catch (e) {
        errors.push(e);
      }
      latencies.push(performance.now() - t0);
      await sleep(2);
    }
  });
  try {
    await cluster.migrateSlot(slot, src, dst, () => sleep(200));
    await sleep(200);
  } finally {
    stop = true;
    await Promise.all(workers);
  }
  assert.deepEqual(errors, []);
  assert.ok(answers.length > 0 && answers.every(([k, v]) => v === `value-of-${k}`));
  assert.equal(cluster.masterOf(String(keys[0])), dst);
  const total = () => [...loads.values()].reduce((a, b) => a + b, 0);
  const s = cache.stats();
  t.diagnostic(`migration: ${answers.length} answers, loads ${total()}, storeErrors ${s.storeErrors}, hitsFresh ${s.hitsFresh}, ${pcts(latencies)}`);
  assert.ok(total() <= keys.length + s.storeErrors, `loads ${JSON.stringify([...loads])}, stats ${JSON.stringify(s)}`);
  const before = total();
  for (const k of keys) assert.equal(await cache.getOrLoad(k, loader(k)), `value-of-${k}`);
  assert.equal(total(), before, 'the entries moved with the slot');
});
