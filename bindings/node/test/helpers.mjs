// Test helpers: a real redis-server on a free port in a temp dir, started and killed by the test.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
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
