import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Cache, Key, MemoryStore, internals } from '../index.mjs';
import { behaviour, ns } from './behaviour.mjs';

// One store shared by every cache of a test, like one Redis shared by processes.
let store = new MemoryStore();
behaviour('memory', (options) => new Cache({ store, ...options }));

test('memory: bounded by maxEntries (LRU eviction counted)', async () => {
  const small = new Cache({ store: new MemoryStore({ maxEntries: 64 }) });
  for (let i = 0; i < 500; i++) await small.getOrLoad(new Key(ns('lru'), i), async () => i);
  assert.ok(small.store.size <= 64 + 16, `size ${small.store.size}`);
  assert.ok(small.stats().evictions > 0);
});

test('memory: stored entries are the core format with JSON values (readable by Python/Rust)', async () => {
  const cache = new Cache({ store });
  const key = new Key(ns('format'), 'u');
  await cache.getOrLoad(key, async () => ({ name: 'Zoë', n: 1 }), { tags: ['t'] });
  const raw = internals.memoryRawEntry(store, key);
  const e = internals.decodeEntry(raw);
  assert.equal(e.codec, 1);
  assert.equal(Buffer.from(e.value_hex, 'hex').toString(), '{"name":"Zoë","n":1}');
  assert.deepEqual(e.tags, ['t']);
});
