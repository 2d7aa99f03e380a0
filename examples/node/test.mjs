// The example service, end to end: memory store, then a real redis-server (required).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import net, { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { createApp } from './server.mjs';

async function freePort() {
  return new Promise((resolve) => {
    const s = createServer();
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

async function exercise(t, redisUrl) {
  const dir = mkdtempSync(join(tmpdir(), 'karlton-example-'));
  const dataFile = join(dir, 'users.json');
  writeFileSync(dataFile, JSON.stringify({ 1: { name: 'Ada' } }));
  const app = await createApp({ dataFile, redisUrl });
  await new Promise((r) => app.server.listen(0, '127.0.0.1', r));
  const base = `http://127.0.0.1:${app.server.address().port}`;
  t.after(async () => {
    await app.close();
    rmSync(dir, { recursive: true, force: true });
  });

  // read through: concurrent requests, one source read
  const rs = await Promise.all(Array.from({ length: 20 }, () => fetch(`${base}/users/1`).then((r) => r.json())));
  assert.ok(rs.every((u) => u.name === 'Ada'));
  assert.equal(app.source.reads, 1);

  // an out-of-band change to the file is not seen (cached) ...
  writeFileSync(dataFile, JSON.stringify({ 1: { name: 'changed behind our back' } }));
  assert.equal((await (await fetch(`${base}/users/1`)).json()).name, 'Ada');

  // ... but a write through the service invalidates
  const put = await fetch(`${base}/users/1`, { method: 'PUT', body: JSON.stringify({ name: 'Grace' }) });
  assert.equal(put.status, 200);
  assert.equal((await (await fetch(`${base}/users/1`)).json()).name, 'Grace');

  // not found is cached too (negativeTtl)
  assert.equal((await fetch(`${base}/users/404`)).status, 404);
  const before = app.source.reads;
  assert.equal((await fetch(`${base}/users/404`)).status, 404);
  assert.equal(app.source.reads, before);

  await fetch(`${base}/users/1`, { method: 'DELETE' });
  assert.equal((await fetch(`${base}/users/1`)).status, 404);
  const stats = await (await fetch(`${base}/stats`)).json();
  assert.ok(stats.cache.hitsFresh >= 1);
  assert.ok(stats.cache.loads >= 2);
}

test('example service on the memory store', (t) => exercise(t, undefined));

/** Resolve once redis-server on `port` answers PING with +PONG (a readiness probe, not a sleep);
 * reject after `ms` or when the process exits. */
async function redisReady(port, proc, ms = 20_000) {
  const deadline = Date.now() + ms;
  let exited = null;
  proc.once('exit', (code) => {
    exited = code;
  });
  for (;;) {
    if (exited !== null) throw new Error(`redis-server exited (code ${exited}) before it answered PING`);
    const pong = await new Promise((resolve) => {
      const sock = net.connect(port, '127.0.0.1');
      let buf = '';
      sock.setTimeout(1000, () => sock.destroy());
      sock.on('connect', () => sock.write('PING\r\n'));
      sock.on('data', (d) => {
        buf += d;
        if (buf.includes('\r\n')) sock.end();
      });
      sock.on('close', () => resolve(buf.startsWith('+PONG')));
      sock.on('error', () => {});
    });
    if (pong) return;
    if (Date.now() > deadline) throw new Error(`redis-server on port ${port} did not answer PING within ${ms} ms`);
    await sleep(20);
  }
}

// scripts/test-node.sh requires redis-server: without it this fails rather than skips.
test('example service on Redis', async (t) => {
  assert.equal(spawnSync('redis-server', ['--version']).status, 0, 'redis-server is not installed');
  const dir = mkdtempSync(join(tmpdir(), 'karlton-example-redis-'));
  const port = await freePort();
  const proc = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', dir], { stdio: 'ignore' });
  t.after(() => {
    proc.kill('SIGKILL');
    rmSync(dir, { recursive: true, force: true });
  });
  await redisReady(port, proc);
  await exercise(t, `redis://127.0.0.1:${port}`);
});
