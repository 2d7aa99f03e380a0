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


def _cluster_port() -> int:
    """A free port whose cluster-bus port (port + 10000) is free too."""
    while True:
        p = free_port()
        if p + 10000 >= 65536:
            continue
        try:
            with socket.socket() as s:
                s.bind(("127.0.0.1", p + 10000))
        except OSError:
            continue
        return p


class RedisClusterProcs:
    """A real Redis Cluster: 3 masters + 3 replicas (``redis-server --cluster-enabled yes``, joined
    with ``redis-cli --cluster create --cluster-replicas 1``), on free ports in a temp dir. Nodes
    can be killed (a replica is promoted after ``cluster-node-timeout``) and the whole cluster is
    stopped by ``stop``."""

    NODE_TIMEOUT_MS = 1000

    def __init__(self, tmp: Path, masters: int = 3, replicas: int = 1) -> None:
        self.dir = tmp
        self.ports = [_cluster_port() for _ in range(masters * (1 + replicas))]
        self.replicas = replicas
        self.procs: dict[int, subprocess.Popen[bytes]] = {}

    def _spawn(self, port: int) -> None:
        d = self.dir / str(port)
        d.mkdir(exist_ok=True)
        self.procs[port] = subprocess.Popen(
            ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", str(d), "--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
             "--cluster-node-timeout", str(self.NODE_TIMEOUT_MS), "--cluster-require-full-coverage", "no"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )

    def cli(self, port: int, *args: str, timeout: float = 10) -> str:
        out = subprocess.run(
            ["redis-cli", "-p", str(port), *args], capture_output=True, timeout=timeout, check=True,
        )
        return out.stdout.decode()

    def start(self) -> None:
        for p in self.ports:
            self._spawn(p)
        for p in self.ports:
            _wait_pong(p)
        subprocess.run(
            ["redis-cli", "--cluster", "create", *[f"127.0.0.1:{p}" for p in self.ports],
             "--cluster-replicas", str(self.replicas), "--cluster-yes"],
            capture_output=True, timeout=60, check=True,
        )
        self.wait_ok()

    def wait_ok(self, timeout: float = 30) -> None:
        """Until every live node says ``cluster_state:ok`` with all 16384 slots ok in its view (after a
        kill: the replica has been promoted, and every node knows it) and every live replica is in
        sync. (``cluster_state`` alone is ok with uncovered slots: require-full-coverage is off.)"""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                infos = [self.cli(p, "cluster", "info") for p in self.procs]
                ok = all("cluster_state:ok" in i and "cluster_slots_ok:16384" in i for i in infos)
                roles = [self.cli(p, "info", "replication") for p in self.procs]
                synced = all("role:master" in r or "master_link_status:up" in r for r in roles)
                if ok and synced:
                    return
            except (subprocess.SubprocessError, OSError):
                pass
            time.sleep(0.1)
        raise RuntimeError("the cluster did not reach cluster_state:ok")

    def master_of(self, key: str) -> int:
        """The port of the master that owns ``key``'s slot now."""
        slot = int(self.cli(next(iter(self.procs)), "cluster", "keyslot", key).strip())
        for line in self.cli(next(iter(self.procs)), "cluster", "nodes").splitlines():
            f = line.split()
            if "master" not in f[2] or "fail" in f[2]:
                continue
            for r in f[8:]:
                if r.startswith("["):  # a migrating/importing marker
                    continue
                lo, _, hi = r.partition("-")
                if int(lo) <= slot <= int(hi or lo):
                    return int(f[1].split("@")[0].rsplit(":", 1)[1])
        raise RuntimeError(f"no master owns slot {slot}")

    def node_id(self, port: int) -> str:
        return self.cli(port, "cluster", "myid").strip()

    def replicas_of(self, port: int) -> list[int]:
        """Ports of the live replicas of the master on ``port``."""
        mid = self.node_id(port)
        out = []
        for line in self.cli(next(iter(self.procs)), "cluster", "nodes").splitlines():
            f = line.split()
            if len(f) > 3 and f[3] == mid and "fail" not in f[2]:
                out.append(int(f[1].split("@")[0].rsplit(":", 1)[1]))
        return out

    def masters(self) -> list[int]:
        out = []
        for line in self.cli(next(iter(self.procs)), "cluster", "nodes").splitlines():
            f = line.split()
            if len(f) > 8 and "master" in f[2] and "fail" not in f[2]:
                out.append(int(f[1].split("@")[0].rsplit(":", 1)[1]))
        return out

    def kill(self, port: int) -> None:
        p = self.procs.pop(port)
        p.kill()
        p.wait()

    def restart(self, port: int) -> None:
        """Start a killed node again, on its old config (it rejoins, as a replica if it was
        failed over)."""
        self._spawn(port)
        _wait_pong(port)

    def stop(self) -> None:
        for port in list(self.procs):
            self.kill(port)


def _wait_pong(port: int) -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2) as s:
                s.sendall(b"PING\r\n")
                if s.recv(16).startswith(b"+PONG"):
                    return
        except OSError:
            time.sleep(0.02)
    raise RuntimeError(f"redis-server on {port} did not start")


def _need_cluster_tools() -> None:
    if shutil.which("redis-server") is None or shutil.which("redis-cli") is None:
        pytest.skip("redis-server/redis-cli are not installed (scripts/setup.sh installs them)")


@pytest.fixture(scope="session")
def redis_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisClusterProcs]:
    """One 3+3 cluster for the session (tests use their own namespaces; none kills a node)."""
    _need_cluster_tools()
    c = RedisClusterProcs(tmp_path_factory.mktemp("cluster"))
    try:
        c.start()
        yield c
    finally:
        c.stop()


@pytest.fixture
def fresh_cluster(tmp_path: Path) -> Iterator[RedisClusterProcs]:
    """A 3+3 cluster of its own, for a test that kills, restarts or reshards nodes."""
    _need_cluster_tools()
    c = RedisClusterProcs(tmp_path)
    try:
        c.start()
        yield c
    finally:
        c.stop()
