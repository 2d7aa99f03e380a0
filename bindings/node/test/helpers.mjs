// Test helpers: a real redis-server on a free port in a temp dir, started and killed by the test.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';

export async function freePort() {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.unref();
    s.on('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

async function ping(port) {
  const { connect } = await import('node:net');
  return new Promise((resolve) => {
    const c = connect(port, '127.0.0.1');
    c.on('connect', () => c.write('PING\r\n'));
    c.on('data', (d) => {
      c.destroy();
      resolve(d.toString().startsWith('+PONG'));
    });
    c.on('error', () => resolve(false));
  });
}

/** A redis-server of our own: `{ port, url, kill(), start(), stop() }`. */
export async function startRedis() {
  const dir = mkdtempSync(join(tmpdir(), 'karlton-node-redis-'));
  const port = await freePort();
  const r = {
    port,
    url: `redis://127.0.0.1:${port}`,
    proc: null,
    async start() {
      this.proc = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', dir], {
        stdio: 'ignore',
      });
      const deadline = Date.now() + 10_000;
      while (Date.now() < deadline) {
        if (await ping(port)) return;
        await sleep(20);
      }
      throw new Error('redis-server did not start');
    },
    /** SIGKILL: the server vanishes mid-flight. */
    async kill() {
      const p = this.proc;
      this.proc = null;
      if (!p || p.exitCode !== null) return;
      const gone = new Promise((res) => p.once('exit', res));
      p.kill('SIGKILL');
      await gone;
    },
    async stop() {
      await this.kill();
      rmSync(dir, { recursive: true, force: true });
    },
  };
  await r.start();
  return r;
}

export function deferred() {
  let resolve, reject;
  const promise = new Promise((a, b) => {
    resolve = a;
    reject = b;
  });
  return { promise, resolve, reject };
}

export { sleep };

/**
 * Where the entry bytes start in a Redis record (`k1|st|x|s|h|v|g|lg|l|lu|` + entry; see
 * core/src/redis.rs): after the header's tenth `|`.
 */
function entryStart(raw) {
  assert.equal(raw.subarray(0, 3).toString(), 'k1|', 'a karlton record');
  let at = 0;
  for (let i = 0; i < 10; i++) at = raw.indexOf(0x7c, at) + 1;
  return at;
}
/** The encoded entry inside a Redis record (a Buffer). */
export const recordEntry = (raw) => raw.subarray(entryStart(raw));
/** The record `raw` with its entry bytes replaced by `entry` (to plant corrupt data). */
export const withEntry = (raw, entry) => Buffer.concat([raw.subarray(0, entryStart(raw)), entry]);

async function clusterPort() {
  // A free port whose cluster-bus port (port + 10000) is free too.
  for (;;) {
    const p = await freePort();
    if (p + 10000 >= 65536) continue;
    const ok = await new Promise((resolve) => {
      const s = createServer();
      s.unref();
      s.on('error', () => resolve(false));
      s.listen(p + 10000, '127.0.0.1', () => s.close(() => resolve(true)));
    });
    if (ok) return p;
  }
}

/**
 * A real Redis Cluster of our own: 3 masters + 3 replicas (`redis-server --cluster-enabled yes`
 * on free ports in a temp dir, joined by `redis-cli --cluster create --cluster-replicas 1`),
 * ready when every node says `cluster_state:ok` and every replica is in sync. `kill(port)`
 * SIGKILLs a node (its replica is promoted after `cluster-node-timeout`, 1 s); `stop()` ends all.
 */
export async function startCluster() {
  const { execFileSync } = await import('node:child_process');
  const dir = mkdtempSync(join(tmpdir(), 'karlton-node-cluster-'));
  const ports = [];
  for (let i = 0; i < 6; i++) ports.push(await clusterPort());
  const procs = new Map();
  const cli = (port, ...args) => execFileSync('redis-cli', ['-p', String(port), ...args], { encoding: 'utf8', timeout: 10_000 });
  const spawnNode = (port) => {
    const d = join(dir, String(port));
    mkdirSync(d, { recursive: true });
    procs.set(
      port,
      spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', d,
        '--cluster-enabled', 'yes', '--cluster-config-file', 'nodes.conf', '--cluster-node-timeout', '1000',
        '--cluster-require-full-coverage', 'no'], { stdio: 'ignore' }),
    );
  };
  const c = {
    ports,
    procs,
    cli,
    /** `[{ host, port }]` of every node, for `new Redis.Cluster(...)`. */
    get nodes() {
      return ports.map((port) => ({ host: '127.0.0.1', port }));
    },
    async waitOk(ms = 30_000) {
      const deadline = Date.now() + ms;
      while (Date.now() < deadline) {
        try {
          const live = [...procs.keys()];
          // cluster_state alone is ok with uncovered slots (require-full-coverage is off): after
          // a kill, wait until every node sees all 16384 slots ok (the replica promoted).
          const ok = live.every((p) => {
            const i = cli(p, 'cluster', 'info');
            return i.includes('cluster_state:ok') && i.includes('cluster_slots_ok:16384');
          });
          const synced = live.every((p) => {
            const r = cli(p, 'info', 'replication');
            return r.includes('role:master') || r.includes('master_link_status:up');
          });
          if (ok && synced) return;
        } catch {
          // a node still starting
        }
        await sleep(100);
      }
      throw new Error('the cluster did not reach cluster_state:ok');
    },
    /** The port of the master owning `key`'s slot now. */
    masterOf(key) {
      const live = [...procs.keys()];
      const slot = Number(cli(live[0], 'cluster', 'keyslot', key).trim());
      for (const line of cli(live[0], 'cluster', 'nodes').split('\n')) {
        const f = line.trim().split(/\s+/);
        if (f.length < 9 || !f[2].includes('master') || f[2].includes('fail')) continue;
        for (const r of f.slice(8)) {
          if (r.startsWith('[')) continue;
          const [lo, hi = lo] = r.split('-').map(Number);
          if (lo <= slot && slot <= hi) return Number(f[1].split('@')[0].split(':').pop());
        }
      }
      throw new Error(`no master owns slot ${slot}`);
    },
    nodeId(port) {
      return cli(port, 'cluster', 'myid').trim();
    },
    /** Ports of the live masters that own slots. */
    masters() {
      const live = [...procs.keys()];
      return cli(live[0], 'cluster', 'nodes')
        .split('\n')
        .map((l) => l.trim().split(/\s+/))
        .filter((f) => f.length > 8 && f[2].includes('master') && !f[2].includes('fail'))
        .map((f) => Number(f[1].split('@')[0].split(':').pop()));
    },
    /**
     * Move `slot` from `src` to `dst` the way `redis-cli --cluster reshard` does, one key at a
     * time, awaiting `between()` after each step (so callers meet ASK and TRYAGAIN).
     */
    async migrateSlot(slot, src, dst, between) {
      const sid = this.nodeId(src);
      const did = this.nodeId(dst);
      cli(dst, 'cluster', 'setslot', String(slot), 'importing', sid);
      cli(src, 'cluster', 'setslot', String(slot), 'migrating', did);
      await between();
      for (const key of cli(src, 'cluster', 'getkeysinslot', String(slot), '100').split('\n').filter(Boolean)) {
        cli(src, 'migrate', '127.0.0.1', String(dst), key, '0', '5000');
        await between();
      }
      for (const m of this.masters()) cli(m, 'cluster', 'setslot', String(slot), 'node', did);
      await between();
    },
    /** Ports of the live replicas of the master on `port`. */
    replicasOf(port) {
      const live = [...procs.keys()];
      const id = cli(port, 'cluster', 'myid').trim();
      return cli(live[0], 'cluster', 'nodes')
        .split('\n')
        .map((l) => l.trim().split(/\s+/))
        .filter((f) => f.length > 3 && f[3] === id && !f[2].includes('fail'))
        .map((f) => Number(f[1].split('@')[0].split(':').pop()));
    },
    /** Whether the replica on `port` holds `key` (replication is asynchronous). */
    replicaHas(port, key) {
      const out = execFileSync('redis-cli', ['-p', String(port)], { input: `READONLY\nEXISTS ${key}\n`, encoding: 'utf8', timeout: 10_000 });
      return out.trim().split('\n').pop() === '1';
    },
    /** `INFO commandstats` calls per command, summed over every live node. */
    commandstats() {
      const out = {};
      for (const p of procs.keys()) {
        for (const m of cli(p, 'info', 'commandstats').matchAll(/cmdstat_(\w+):calls=(\d+)/g)) out[m[1]] = (out[m[1]] ?? 0) + Number(m[2]);
      }
      return out;
    },
    async kill(port) {
      const p = procs.get(port);
      procs.delete(port);
      if (!p || p.exitCode !== null) return;
      const gone = new Promise((res) => p.once('exit', res));
      p.kill('SIGKILL');
      await gone;
    },
    async stop() {
      for (const port of [...procs.keys()]) await this.kill(port);
      rmSync(dir, { recursive: true, force: true });
    },
  };
  for (const p of ports) spawnNode(p);
  for (const p of ports) {
    const deadline = Date.now() + 10_000;
    while (!(await ping(p))) {
      if (Date.now() > deadline) throw new Error(`redis-server on ${p} did not start`);
      await sleep(20);
    }
  }
  execFileSync('redis-cli', ['--cluster', 'create', ...ports.map((p) => `127.0.0.1:${p}`), '--cluster-replicas', '1', '--cluster-yes'], {
    stdio: 'ignore',
    timeout: 60_000,
  });
  await c.waitOk();
  return c;
}
