// Redis Cluster vs one node: karlton hit latency through ioredis, one run. Prints a Markdown table.
//
//   cd bindings/node && npm run build && node bench/cluster.mjs
//
// Starts a redis-server and a 3+3 cluster (test/helpers.mjs), stopped at the end. Rounds of 200
// sequential fresh hits on 20 hash-tag keys, the workloads taking turns in each round; per
// workload the best round (µs per hit) and the median over rounds of its time / the one-node
// karlton hit's time in the same round.
import Redis from 'ioredis';
import { Cache, Key, RedisStore } from '../index.mjs';
import { startCluster, startRedis } from '../test/helpers.mjs';

const N = 200;
const ROUNDS = 40;
const VALUE = { id: 42, name: 'Ada Lovelace', roles: ['admin', 'dev'] };

const single = await startRedis();
const cluster = await startCluster();
const r1 = new Redis(single.port, '127.0.0.1');
const rc = new Redis.Cluster(cluster.nodes.slice(0, 1));
try {
  const keys = Array.from({ length: 20 }, (_, i) => new Key(`bench${i}`, 'k').hashTag());
  const caches = {
    'one node: karlton getOrLoad hit (fast read)': new Cache({ store: new RedisStore(r1), policy: { softTtl: '1h' } }),
    'cluster: karlton getOrLoad hit (fast read, one pipeline routed by slot)': new Cache({ store: new RedisStore(rc), policy: { softTtl: '1h' } }),
    'cluster: karlton getOrLoad hit (fastReads: false: read script)': new Cache({ store: new RedisStore(rc, { fastReads: false }), policy: { softTtl: '1h' } }),
  };
  for (const c of Object.values(caches)) for (const k of keys) await c.getOrLoad(k, async () => VALUE);
  const raw = keys.map((k) => `${k}raw`);
  for (const k of raw) {
    await r1.set(k, 'x'.repeat(60));
    await rc.set(k, 'x'.repeat(60));
  }
  const hits = (c) => async () => {
    const t0 = performance.now();
    for (let i = 0; i < N; i++) await c.getOrLoad(keys[i % 20], async () => VALUE);
    return (performance.now() - t0) / N;
  };
  const gets = (r) => async () => {
    const t0 = performance.now();
    for (let i = 0; i < N; i++) await r.getBuffer(raw[i % 20]);
    return (performance.now() - t0) / N;
  };
  const runs = Object.fromEntries(Object.entries(caches).map(([n, c]) => [n, hits(c)]));
  runs['one node: ioredis GET'] = gets(r1);
  runs['cluster: ioredis Cluster GET'] = gets(rc);
  const times = Object.fromEntries(Object.keys(runs).map((n) => [n, []]));
  for (let r = 0; r < ROUNDS; r++) for (const [n, run] of Object.entries(runs)) times[n].push(await run());
  const base = times[Object.keys(runs)[0]];
  const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
  console.log('| workload | best µs/hit | ratio to one-node karlton hit (median of rounds) |');
  console.log('|---|---|---|');
  for (const [n, ts] of Object.entries(times)) {
    console.log(`| ${n} | ${(Math.min(...ts) * 1000).toFixed(1)} | ${median(ts.map((t, i) => t / base[i])).toFixed(2)} |`);
  }
  for (const c of Object.values(caches)) if (c.stats().storeErrors !== 0) throw new Error(`store errors: ${JSON.stringify(c.stats())}`);
} finally {
  r1.disconnect();
  rc.disconnect();
  await cluster.stop();
  await single.stop();
}
