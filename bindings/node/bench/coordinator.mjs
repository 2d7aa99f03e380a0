// karlton for Node, issue 10 figures in one run (ratios from the same process):
//   - building a 2-segment Key (ns per Key)
//   - getOrLoad memory hit vs Map.get; get vs getOrLoad (memory hit)
//   - one stampede on a missing key with 500 promises on a private redis-server: Redis
//     commands (INFO commandstats, minus the INFO calls) and caller p99 / loader duration.
//
//   cd bindings/node && npm run build && node bench/coordinator.mjs
//   KARLTON_PKG=/path/to/other/checkout/bindings/node/index.mjs node bench/coordinator.mjs
// (the second form measures another build, e.g. the checkout before a change, with this script).
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer, connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { pathToFileURL, fileURLToPath } from 'node:url';
import { createRequire } from 'node:module';

const pkg = process.env.KARLTON_PKG ? pathToFileURL(process.env.KARLTON_PKG).href : '../index.mjs';
const { Cache, Key, MemoryStore, RedisStore } = await import(pkg);
// ioredis from the measured package's own dev dependencies
const Redis = createRequire(process.env.KARLTON_PKG ?? fileURLToPath(new URL('../index.mjs', import.meta.url)))('ioredis');

const N = Number(process.env.BENCH_N ?? 300_000);
const LOADER_MS = 50;
const VALUE = { id: 42, name: 'Ada Lovelace', email: 'ada@example.com', roles: ['admin', 'author'] };
let sink = 0;

/** CPU ns per op (user + system), best of 5 after a warm-up. */
async function time(fn, n = N) {
  await fn(Math.min(n, 20_000));
  let best = Infinity;
  for (let r = 0; r < 5; r++) {
    const c = process.cpuUsage();
    await fn(n);
    const d = process.cpuUsage(c);
    best = Math.min(best, ((d.user + d.system) * 1000) / n);
  }
  return best;
}

const map = new Map([['bench:user:42', VALUE]]);
const mapNs = await time(async (n) => {
  for (let i = 0; i < n; i++) sink += map.get('bench:user:42') === VALUE ? 1 : 0;
});
const keyNs = await time(async (n) => {
  for (let i = 0; i < n; i++) sink += new Key('bench', 'user', i & 1023) ? 1 : 0;
});
const cache = new Cache({ store: new MemoryStore(), policy: { softTtl: '1h' } });
const key = new Key('bench', 'user', 42);
const loader = async () => VALUE;
await cache.getOrLoad(key, loader);
const golNs = await time(async (n) => {
  for (let i = 0; i < n; i++) sink += (await cache.getOrLoad(key, loader)).id;
});
const getNs = await time(async (n) => {
  for (let i = 0; i < n; i++) sink += (await cache.get(key)).id;
});

// ---- the stampede on Redis ----
const port = await new Promise((resolve) => {
  const s = createServer();
  s.listen(0, '127.0.0.1', () => {
    const { port } = s.address();
    s.close(() => resolve(port));
  });
});
const dir = mkdtempSync(join(tmpdir(), 'karlton-bench-'));
const proc = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', dir], { stdio: 'ignore' });
for (let i = 0; i < 200; i++) {
  const up = await new Promise((res) => {
    const c = connect(port, '127.0.0.1');
    c.on('connect', () => (c.destroy(), res(true)));
    c.on('error', () => res(false));
  });
  if (up) break;
  await sleep(25);
}
const commands = async (c) => {
  const info = await c.info('commandstats');
  let total = 0;
  for (const m of info.matchAll(/^cmdstat_([a-z|_-]+):calls=(\d+)/gm)) if (m[1] !== 'info') total += Number(m[2]);
  return total;
};
const admin = new Redis(port, '127.0.0.1');
const client = new Redis(port, '127.0.0.1');
const rcache = new Cache({ store: new RedisStore(client), policy: { softTtl: '1m' } });
await rcache.store.loadScripts();
const runs = [];
for (let round = 0; round < 3; round++) {
  const k = new Key('bench', 'stampede', round);
  let calls = 0;
  const slow = async () => {
    calls++;
    await sleep(LOADER_MS);
    return VALUE;
  };
  const before = await commands(admin);
  const t0 = performance.now();
  const lat = await Promise.all(Array.from({ length: 500 }, async () => {
    await rcache.getOrLoad(k, slow);
    return performance.now() - t0;
  }));
  const cmds = (await commands(admin)) - before - (round === 0 ? 0 : 0);
  lat.sort((a, b) => a - b);
  runs.push({ calls, cmds, p99: lat[Math.floor(0.99 * lat.length)] });
}
client.disconnect();
admin.disconnect();
proc.kill('SIGKILL');
rmSync(dir, { recursive: true, force: true });

const r = runs[runs.length - 1];
const s = rcache.stats();
console.log(JSON.stringify({
  pkg,
  key2SegNs: Math.round(keyNs),
  mapGetNs: Math.round(mapNs),
  getOrLoadHitNs: Math.round(golNs),
  getHitNs: Math.round(getNs),
  getOrLoadVsMap: +(golNs / mapNs).toFixed(1),
  getVsGetOrLoad: +(getNs / golNs).toFixed(2),
  stampede500: runs.map((x) => ({ loaderCalls: x.calls, redisCommands: x.cmds, p99OverLoader: +(x.p99 / LOADER_MS).toFixed(2) })),
  redisStatsAfter3Stampedes: { misses: s.misses, loads: s.loads, coalesced: s.coalesced, leaseWaits: s.leaseWaits },
}, null, 1));
if (sink === 42) console.log('');
