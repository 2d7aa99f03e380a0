//! Test harness: real `redis-server` processes on free ports in temp dirs, stopped on drop.
//! No mocks. Enabled by the `testing` feature (tests, benches, the bench binary).

use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// `redis-server` to run: `$KARLTON_REDIS_SERVER` or the one on `PATH`.
pub fn server_bin() -> String {
    std::env::var("KARLTON_REDIS_SERVER").unwrap_or_else(|_| "redis-server".into())
}

/// `redis-cli` next to it.
pub fn cli_bin() -> String {
    std::env::var("KARLTON_REDIS_CLI").unwrap_or_else(|_| "redis-cli".into())
}

/// A free TCP port on loopback (and, for cluster nodes, `port + 10000` free too).
pub fn free_port(cluster_bus: bool) -> u16 {
    loop {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        let p = l.local_addr().unwrap().port();
        if !cluster_bus {
            return p;
        }
        if p < 55000 && TcpListener::bind(("127.0.0.1", p + 10000)).is_ok() {
            return p;
        }
    }
}

/// One `redis-server` process, killed (and its temp dir removed) on drop.
pub struct RedisServer {
    child: Option<Child>,
    port: u16,
    dir: tempfile::TempDir,
    extra: Vec<String>,
}

impl RedisServer {
    /// Start a server on a free port: no persistence, logs in the temp dir.
    pub fn start() -> RedisServer {
        Self::start_with(&[])
    }

    /// Start with extra config arguments (`["--maxmemory", "2mb"]`).
    pub fn start_with(extra: &[&str]) -> RedisServer {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut s = RedisServer { child: None, port: free_port(false), dir, extra: extra.iter().map(|s| s.to_string()).collect() };
        s.spawn();
        s
    }

    fn spawn(&mut self) {
        let mut cmd = Command::new(server_bin());
        cmd.arg("--port")
            .arg(self.port.to_string())
            .arg("--bind")
            .arg("127.0.0.1")
            .arg("--save")
            .arg("")
            .arg("--appendonly")
            .arg("no")
            .arg("--dir")
            .arg(self.dir.path())
            .arg("--logfile")
            .arg(self.dir.path().join("redis.log"))
            .args(&self.extra)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let child = cmd.spawn().unwrap_or_else(|e| panic!("cannot start {}: {e} (apt-get install redis-server)", server_bin()));
        self.child = Some(child);
        wait_ping(self.port, Duration::from_secs(10));
    }

    /// The port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `redis://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// The temp dir (config, logs, cluster state).
    pub fn dir(&self) -> PathBuf {
        self.dir.path().to_path_buf()
    }

    /// A blocking connection for test set-up and checks.
    pub fn client(&self) -> redis::Connection {
        redis::Client::open(self.url()).unwrap().get_connection().expect("connect")
    }

    /// SIGKILL the server (data is gone: no persistence).
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Start it again on the same port (empty).
    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }

    /// The server's pid.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}

fn wait_ping(port: u16, limit: Duration) {
    let start = Instant::now();
    loop {
        if let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) {
            use std::io::{Read, Write};
            let _ = s.set_read_timeout(Some(Duration::from_millis(200)));
            if s.write_all(b"PING\r\n").is_ok() {
                let mut b = [0u8; 16];
                if let Ok(n) = s.read(&mut b)
                    && b[..n].starts_with(b"+PONG")
                {
                    return;
                }
            }
        }
        assert!(start.elapsed() < limit, "redis-server on port {port} did not answer PING");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// One line of `CLUSTER NODES`: port, flags, master id (`-` for a master), own id, slot ranges.
type NodeLine = (u16, String, String, String, Vec<(u16, u16)>);

/// A local Redis Cluster: `n` masters, optionally with replicas. Stopped on drop.
pub struct RedisCluster {
    /// The nodes.
    pub nodes: Vec<RedisServer>,
}

impl RedisCluster {
    /// Start 3 masters and join them with `redis-cli --cluster create`.
    pub fn start() -> RedisCluster {
        Self::start_n(3)
    }

    /// Start `n` (≥ 3) masters.
    pub fn start_n(n: usize) -> RedisCluster {
        Self::start_with(n, 0, 5000)
    }

    /// Start `masters` (≥ 3) masters with `replicas` replicas each (`redis-cli --cluster create
    /// --cluster-replicas`), `cluster-node-timeout` = `node_timeout_ms` (how soon a replica is
    /// promoted after its master dies). Returns when every node reports `cluster_state:ok` and
    /// every replica is in sync with its master.
    pub fn start_with(masters: usize, replicas: usize, node_timeout_ms: u64) -> RedisCluster {
        let nodes: Vec<RedisServer> = (0..masters * (1 + replicas))
            .map(|_| {
                let dir = tempfile::tempdir().expect("temp dir");
                let mut s = RedisServer {
                    child: None,
                    port: free_port(true),
                    extra: vec![
                        "--cluster-enabled".into(),
                        "yes".into(),
                        "--cluster-config-file".into(),
                        dir.path().join("nodes.conf").display().to_string(),
                        "--cluster-node-timeout".into(),
                        node_timeout_ms.to_string(),
                        "--cluster-require-full-coverage".into(),
                        "no".into(),
                    ],
                    dir,
                };
                s.spawn();
                s
            })
            .collect();
        let addrs: Vec<String> = nodes.iter().map(|s| format!("127.0.0.1:{}", s.port)).collect();
        let out = Command::new(cli_bin())
            .arg("--cluster")
            .arg("create")
            .args(&addrs)
            .args(["--cluster-replicas", &replicas.to_string(), "--cluster-yes"])
            .output()
            .expect("redis-cli --cluster create");
        assert!(out.status.success(), "cluster create failed: {}", String::from_utf8_lossy(&out.stdout));
        let c = RedisCluster { nodes };
        c.wait_ok(Duration::from_secs(30));
        c
    }

    /// Wait until every live node reports `cluster_state:ok` and every live replica's link to
    /// its master is up (after a kill: the replica has been promoted).
    pub fn wait_ok(&self, limit: Duration) {
        let start = Instant::now();
        'wait: loop {
            assert!(start.elapsed() < limit, "cluster did not reach state ok");
            for s in self.nodes.iter().filter(|s| s.child.is_some()) {
                let Ok(mut conn) = redis::Client::open(s.url()).and_then(|c| c.get_connection()) else {
                    std::thread::sleep(Duration::from_millis(100));
                    continue 'wait;
                };
                let info: String = redis::cmd("CLUSTER").arg("INFO").query(&mut conn).unwrap_or_default();
                let repl: String = redis::cmd("INFO").arg("replication").query(&mut conn).unwrap_or_default();
                // `cluster_state` alone is ok with uncovered slots (require-full-coverage is off):
                // after a kill, wait until every node sees all 16384 slots ok.
                if !info.contains("cluster_state:ok")
                    || !info.contains("cluster_slots_ok:16384")
                    || !(repl.contains("role:master") || repl.contains("master_link_status:up"))
                {
                    std::thread::sleep(Duration::from_millis(100));
                    continue 'wait;
                }
            }
            break;
        }
    }

    /// `CLUSTER NODES` of a live node, one `(port, flags, master id, own id, slot ranges)` a line.
    fn topology(&self) -> Vec<NodeLine> {
        let live = self.nodes.iter().find(|s| s.child.is_some()).expect("a live node");
        let text: String = redis::cmd("CLUSTER").arg("NODES").query(&mut live.client()).unwrap();
        text.lines()
            .filter_map(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                let port = f.get(1)?.split('@').next()?.rsplit(':').next()?.parse().ok()?;
                let slots = f
                    .iter()
                    .skip(8)
                    .filter(|r| !r.starts_with('['))
                    .filter_map(|r| {
                        let (lo, hi) = r.split_once('-').unwrap_or((r, r));
                        Some((lo.parse().ok()?, hi.parse().ok()?))
                    })
                    .collect();
                Some((port, f[2].to_string(), f[3].to_string(), f[0].to_string(), slots))
            })
            .collect()
    }

    /// Index (into `nodes`) of the live master that owns `key`'s slot now.
    pub fn master_of(&self, key: &str) -> usize {
        let slot = karlton_core::redis::key_slot(key.as_bytes());
        let port = self
            .topology()
            .into_iter()
            .find(|(_, flags, _, _, slots)| {
                flags.contains("master") && !flags.contains("fail") && slots.iter().any(|&(lo, hi)| lo <= slot && slot <= hi)
            })
            .map(|t| t.0)
            .expect("a master owns the slot");
        self.nodes.iter().position(|s| s.port == port).unwrap()
    }

    /// Indices of the live replicas of the master `nodes[master]`.
    pub fn replicas_of(&self, master: usize) -> Vec<usize> {
        let topo = self.topology();
        let id = topo.iter().find(|t| t.0 == self.nodes[master].port).map(|t| t.3.clone()).unwrap();
        topo.iter()
            .filter(|t| t.2 == id && !t.1.contains("fail"))
            .filter_map(|t| self.nodes.iter().position(|s| s.port == t.0))
            .collect()
    }

    /// `redis://127.0.0.1:<port>` of every node.
    pub fn urls(&self) -> Vec<String> {
        self.nodes.iter().map(|s| s.url()).collect()
    }
}
