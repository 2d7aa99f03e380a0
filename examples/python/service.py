"""A small HTTP service over SQLite that reads through karlton and invalidates on writes.

    python examples/python/service.py [--port 8080] [--redis redis://127.0.0.1:6379/0] [--db FILE]

GET  /items/<id>        read through the cache (404 if missing; "not found" is cached briefly)
PUT  /items/<id>        body = JSON value: write SQLite, then invalidate the key
GET  /stats             the cache counters
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import karlton


class App:
    def __init__(self, db: str, redis_url: str | None) -> None:
        self.db = sqlite3.connect(db, check_same_thread=False)
        self.lock = threading.Lock()
        self.db.execute("CREATE TABLE IF NOT EXISTS items (id TEXT PRIMARY KEY, body TEXT NOT NULL)")
        self.db.commit()
        self.loads = 0
        store: Any = None
        if redis_url:
            import redis

            store = karlton.RedisStore(redis.Redis.from_url(redis_url))
        self.cache = karlton.Cache(store, karlton.Policy(soft_ttl=30, hard_ttl=300, negative_ttl=5, jitter=0.1))

    def load(self, item_id: str) -> Any:
        with self.lock:
            self.loads += 1
            row = self.db.execute("SELECT body FROM items WHERE id = ?", (item_id,)).fetchone()
        return None if row is None else json.loads(row[0])

    def get(self, item_id: str) -> Any:
        return self.cache.get_or_load(karlton.Key("items", item_id), lambda: self.load(item_id))

    def put(self, item_id: str, value: Any) -> None:
        with self.lock:
            self.db.execute("INSERT OR REPLACE INTO items (id, body) VALUES (?, ?)", (item_id, json.dumps(value)))
            self.db.commit()
        self.cache.invalidate(karlton.Key("items", item_id))  # after the source changed


def make_handler(app: App) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def _send(self, code: int, body: Any) -> None:
            data = json.dumps(body).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:  # noqa: N802
            if self.path == "/stats":
                return self._send(200, {**app.cache.stats(), "source_loads": app.loads})
            if self.path.startswith("/items/"):
                value = app.get(self.path[len("/items/"):])
                return self._send(404, {"error": "not found"}) if value is None else self._send(200, value)
            self._send(404, {"error": "no route"})

        def do_PUT(self) -> None:  # noqa: N802
            if not self.path.startswith("/items/"):
                return self._send(404, {"error": "no route"})
            n = int(self.headers.get("Content-Length", "0"))
            try:
                value = json.loads(self.rfile.read(n) or b"null")
            except ValueError:
                return self._send(400, {"error": "body must be JSON"})
            app.put(self.path[len("/items/"):], value)
            self._send(200, {"ok": True})

        def log_message(self, *args: Any) -> None:
            pass

    return Handler


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--port", type=int, default=8080)
    ap.add_argument("--redis", metavar="URL", help="use Redis (default: the in-process memory store)")
    ap.add_argument("--db", default="items.sqlite3")
    args = ap.parse_args(argv)
    app = App(args.db, args.redis)
    server = ThreadingHTTPServer(("127.0.0.1", args.port), make_handler(app))
    print(f"listening on http://127.0.0.1:{server.server_address[1]} ({'redis' if args.redis else 'memory'})", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
