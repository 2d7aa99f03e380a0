"""Fixtures: a real redis-server per test (or per module) on a free port in a temp dir."""

from __future__ import annotations

import faulthandler
import shutil
import socket
import subprocess
import time
from pathlib import Path
from typing import Iterator

import pytest


# A test that hangs fails: after this many seconds the interpreter prints every thread's stack and
# exits non-zero (pytest-timeout is not installed; faulthandler is in the standard library).
HANG_SECONDS = 120


@pytest.fixture(autouse=True)
def _fail_instead_of_hanging() -> Iterator[None]:
    faulthandler.dump_traceback_later(HANG_SECONDS, exit=True)
    try:
        yield
    finally:
        faulthandler.cancel_dump_traceback_later()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class RedisServer:
    """A redis-server we start, kill and restart ourselves (no mocks)."""

    def __init__(self, tmp: Path) -> None:
        self.port = free_port()
        self.dir = tmp
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", str(self.dir)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2) as s:
                    s.sendall(b"PING\r\n")
                    if s.recv(16).startswith(b"+PONG"):
                        return
            except OSError:
                time.sleep(0.02)
        raise RuntimeError("redis-server did not start")

    def kill(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()
            self.proc = None


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is not installed (scripts/setup.sh installs it)")
    server = RedisServer(tmp_path)
    server.start()
    try:
        yield server
    finally:
        server.kill()


@pytest.fixture
def redis_client(redis_server: RedisServer):  # type: ignore[no-untyped-def]
    import redis

    client = redis.Redis(port=redis_server.port, socket_timeout=2, socket_connect_timeout=0.5)
    yield client
    client.close()


def record_entry(raw: bytes) -> bytes:
    """The encoded entry inside a Redis record (``k1|st|x|s|h|v|g|lg|l|lu|`` + entry bytes; see
    core/src/redis.rs): everything after the header's tenth ``|``."""
    assert raw.startswith(b"k1|"), raw[:40]
    return raw.split(b"|", 10)[10]


def with_entry(raw: bytes, entry: bytes) -> bytes:
    """The record ``raw`` with its entry bytes replaced by ``entry`` (to plant corrupt data)."""
    return b"|".join(raw.split(b"|", 10)[:10] + [entry])
