"""Starts the example service as a process and talks HTTP to it (memory store, then Redis)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE.parents[1] / "bindings" / "python" / "tests"))
from conftest import RedisServer, free_port  # noqa: E402


def _req(port: int, method: str, path: str, body: Any = None) -> tuple[int, Any]:
    data = None if body is None else json.dumps(body).encode()
    r = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=data, method=method)
    try:
        with urllib.request.urlopen(r, timeout=5) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def _run(tmp_path: Path, extra: list[str]) -> None:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, str(HERE / "service.py"), "--port", str(port), "--db", str(tmp_path / "db.sqlite3"), *extra],
        stdout=subprocess.PIPE,
    )
    try:
        assert proc.stdout is not None
        assert b"listening" in proc.stdout.readline()
        assert _req(port, "GET", "/items/a")[0] == 404
        assert _req(port, "PUT", "/items/a", {"n": 1})[0] == 200
        assert _req(port, "GET", "/items/a") == (200, {"n": 1})
        assert _req(port, "GET", "/items/a") == (200, {"n": 1})
        loads = _req(port, "GET", "/stats")[1]["source_loads"]
        assert _req(port, "PUT", "/items/a", {"n": 2})[0] == 200  # write invalidates
        assert _req(port, "GET", "/items/a") == (200, {"n": 2})
        stats = _req(port, "GET", "/stats")[1]
        assert stats["source_loads"] == loads + 1
        assert stats["hits_fresh"] >= 1
    finally:
        proc.terminate()
        proc.wait(5)


def test_service_memory(tmp_path: Path) -> None:
    _run(tmp_path, [])


def test_service_redis(tmp_path: Path) -> None:
    import shutil

    if shutil.which("redis-server") is None:
        pytest.skip("no redis-server")
    server = RedisServer(tmp_path)
    server.start()
    try:
        _run(tmp_path, ["--redis", server.url])
    finally:
        server.kill()
