// A small user service: the source of truth is a JSON file (users.json); every read goes
// through karlton (read-through with single-flight, stale-while-revalidate, negative caching),
// every write updates the file and then invalidates the cached entry.
//
//   node server.mjs                          # memory store, port 8080, ./users.json
//   node server.mjs --redis redis://127.0.0.1:6379 --port 8081 --data /tmp/users.json
//
//   curl localhost:8080/users/1
//   curl -X PUT localhost:8080/users/1 -d '{"name":"Ada"}'
//   curl localhost:8080/stats
import { createServer } from 'node:http';
import { readFile, writeFile, rename } from 'node:fs/promises';
import { parseArgs } from 'node:util';
import { fileURLToPath } from 'node:url';
import { Cache, Key, MemoryStore, Policy, RedisStore } from 'karlton';

/** The source of truth: a JSON object { id: user } in one file, written atomically. */
class UserFile {
  constructor(path) {
    this.path = path;
    this.reads = 0;
  }
  async all() {
    this.reads++;
    try {
      return JSON.parse(await readFile(this.path, 'utf8'));
    } catch (e) {
      if (e.code === 'ENOENT') return {};
      throw e;
    }
  }
  async get(id) {
    return (await this.all())[id];
  }
  async put(id, user) {
    const all = await this.all();
    if (user === undefined) delete all[id];
    else all[id] = user;
    const tmp = `${this.path}.${process.pid}.tmp`;
    await writeFile(tmp, JSON.stringify(all, null, 2));
    await rename(tmp, this.path);
  }
}

async function body(req) {
  const chunks = [];
  for await (const c of req) chunks.push(c);
  return JSON.parse(Buffer.concat(chunks).toString('utf8') || 'null');
}

function send(res, status, value) {
  res.writeHead(status, { 'content-type': 'application/json' });
  res.end(value === undefined ? '' : JSON.stringify(value));
}

/** Build the service. Returns { server, cache, source, close() }. */
export async function createApp({ dataFile, redisUrl } = {}) {
  const source = new UserFile(dataFile);
  let redis = null;
  let store;
  if (redisUrl) {
    const { default: Redis } = await import('ioredis');
    redis = new Redis(redisUrl, { maxRetriesPerRequest: 1 });
    redis.on('error', () => {}); // karlton answers from the source while Redis is away
    store = new RedisStore(redis);
  } else {
    store = new MemoryStore({ maxEntries: 10_000 });
  }
  const cache = new Cache({
    store,
    policy: new Policy({ softTtl: '30s', hardTtl: '5m', negativeTtl: '10s', staleIfError: '1h', jitter: 0.1 }),
  });
  cache.on('error', (err, key) => console.error(`background refresh of ${key} failed:`, err.message));

  const server = createServer(async (req, res) => {
    try {
      const url = new URL(req.url, 'http://x');
      const m = /^\/users\/([^/]+)$/.exec(url.pathname);
      if (m) {
        const id = decodeURIComponent(m[1]);
        const key = new Key('users', id);
        if (req.method === 'GET') {
          const user = await cache.getOrLoad(key, () => source.get(id));
          return user === undefined ? send(res, 404, { error: 'not found' }) : send(res, 200, user);
        }
        if (req.method === 'PUT') {
          const user = await body(req);
          await source.put(id, user);
          await cache.invalidate(key); // write the source, then invalidate (never the reverse)
          return send(res, 200, user);
        }
        if (req.method === 'DELETE') {
          await source.put(id, undefined);
          await cache.invalidate(key);
          return send(res, 204);
        }
      }
      if (req.method === 'GET' && url.pathname === '/stats') {
        return send(res, 200, { cache: cache.stats(), sourceReads: source.reads });
      }
      send(res, 404, { error: 'no route' });
    } catch (e) {
      send(res, 500, { error: e.message });
    }
  });

  return {
    server,
    cache,
    source,
    async close() {
      await new Promise((r) => server.close(r));
      redis?.disconnect();
    },
  };
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const { values } = parseArgs({
    options: {
      port: { type: 'string', default: '8080' },
      data: { type: 'string', default: 'users.json' },
      redis: { type: 'string' },
    },
  });
  const app = await createApp({ dataFile: values.data, redisUrl: values.redis });
  app.server.listen(Number(values.port), () => {
    console.log(`users service on http://localhost:${values.port} (${values.redis ? `redis ${values.redis}` : 'memory store'}, source ${values.data})`);
  });
}
