// karlton on a real Redis Cluster (3 masters + 3 replicas started by this file) through ioredis
// `Cluster`: the shared behaviour suite with hash-tag keys, the fast read routed by slot, a
// stampede across two caches and invalidation.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import Redis from 'ioredis';
import { Cache, Key, RedisStore } from '../index.mjs';
import { behaviour, ns, countingLoader } from './behaviour.mjs';
import { startCluster, sleep } from './helpers.mjs';

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

test('cluster: a Python process and this Node process share keys (one load across both; invalidate seen by both)', async (t) => {
  const { existsSync } = await import('node:fs');
  const { spawn } = await import('node:child_process');
  const { fileURLToPath } = await import('node:url');
  const py = fileURLToPath(new URL('../../../.venv/bin/python', import.meta.url));
  if (!existsSync(py)) {
    t.skip('no .venv with karlton (./scripts/test.sh python builds it)');
    return;
  }
  const nsName = ns('xlang');
  const child = spawn(py, [fileURLToPath(new URL('./fixtures/cluster_child.py', import.meta.url)), String(cluster.ports[0]), nsName], {
    stdio: ['pipe', 'pipe', 'inherit'],
  });
  const lines = [];
  const waiting = [];
  let buf = '';
  child.stdout.on('data', (d) => {
    buf += d;
    for (let i; (i = buf.indexOf('\n')) >= 0; ) {
      const l = JSON.parse(buf.slice(0, i));
      buf = buf.slice(i + 1);
      if (waiting.length) waiting.shift()(l);
      else lines.push(l);
    }
  });
  const next = () => (lines.length ? Promise.resolve(lines.shift()) : new Promise((res) => waiting.push(res)));
  const ask = (cmd) => {
    child.stdin.write(`${cmd}\n`);
    return next();
  };
  try {
    assert.equal(await next(), 'ready');
    const c = client();
    const cache = new Cache({ store: new RedisStore(c), policy: { softTtl: '1m', lockWait: '5s' } });
    // Node fills, Python reads the same entry.
    const a = new Key(nsName, 'a').hashTag();
    assert.deepEqual(await cache.getOrLoad(a, async () => ({ from: 'node', n: [1, 2] })), { from: 'node', n: [1, 2] });
    assert.deepEqual(await ask('read a'), { from: 'node', n: [1, 2] });
    // Both stampede one missing key: one load between the two processes (the store's lease).
    const b = new Key(nsName, 'b').hashTag();
    const loads = `{${nsName}}:loads`;
    const nodeLoader = async () => {
      await c.incr(loads);
      await sleep(300);
      return { from: 'node' };
    };
    const fromPy = ask('load b');
    const fromNode = await Promise.all(Array.from({ length: 20 }, () => cache.getOrLoad(b, nodeLoader)));
    const pyValue = await fromPy;
    assert.equal(Number(await c.get(loads)), 1, 'one loader call across Python and Node');
    for (const v of fromNode) assert.deepEqual(v, pyValue);
    // Python invalidates; Node sees it.
    assert.equal(await ask('invalidate b'), true);
    assert.equal(await cache.get(b), undefined);
  } finally {
    child.stdin.end();
    await new Promise((res) => (child.exitCode !== null ? res() : child.once('exit', res)));
  }
});
