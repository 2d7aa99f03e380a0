// Runs the Worker on Node: a tiny HTTP server that turns Node requests into fetch Requests,
// with an in-memory KV and a demo origin (or ORIGIN_URL to proxy a real one).
//
//   node examples/edge/harness.mjs [port]      then: curl -i localhost:8787/products/42?lang=en

import { createServer } from "node:http";
import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { dirname, join } from "node:path";
import { load } from "../../wasm/js/karlton-wasm.mjs";
import { createWorker } from "./worker.mjs";
import { MemoryKV } from "./kv.mjs";

const here = dirname(fileURLToPath(import.meta.url));

/** A demo origin: echoes the path and params, version bumps every 10 s. */
export const demoOrigin = {
  async fetch(url) {
    const u = new URL(url);
    const version = Math.floor(Date.now() / 10_000);
    const body = JSON.stringify({ path: u.pathname, params: Object.fromEntries(u.searchParams), version, at: new Date().toISOString() });
    return new Response(body, { headers: { "content-type": "application/json", "x-version": String(version) } });
  },
};

/** Serve `worker` with `env` on `port`; resolves to the server. */
export function serve(worker, env, port = 8787) {
  const server = createServer(async (req, res) => {
    try {
      const request = new Request(new URL(req.url, `http://${req.headers.host ?? "localhost"}`), {
        method: req.method,
        headers: Object.entries(req.headers).flatMap(([k, v]) => (Array.isArray(v) ? v.map((x) => [k, x]) : [[k, v]])),
      });
      const pending = [];
      const response = await worker.fetch(request, env, { waitUntil: (p) => pending.push(p) });
      res.writeHead(response.status, Object.fromEntries(response.headers));
      res.end(Buffer.from(await response.arrayBuffer()));
      await Promise.allSettled(pending);
    } catch (e) {
      res.writeHead(500).end(String(e));
    }
  });
  return new Promise((resolve) => server.listen(port, () => resolve(server)));
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const wasm = process.env.KARLTON_WASM ?? join(here, "..", "..", "wasm", "dist", "karlton.wasm");
  const karlton = await load(readFileSync(wasm));
  const env = { CACHE: new MemoryKV(), ORIGIN: process.env.ORIGIN_URL ? undefined : demoOrigin, ORIGIN_URL: process.env.ORIGIN_URL };
  const port = Number(process.argv[2] ?? 8787);
  await serve(createWorker({ karlton }), env, port);
  console.log(`edge example on http://localhost:${port}/products/42?lang=en`);
}
