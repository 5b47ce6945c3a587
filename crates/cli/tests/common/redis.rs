//! A real Redis (Debian's `redis-server`) on loopback ports, for global
//! rate limits: one server (plain or TLS only), killed and started again
//! on the same port; a Redis Cluster of three primaries; a primary with a
//! replica watched by Redis Sentinel. Nothing is kept on disk but the
//! cluster's and the sentinel's own files, in a folder removed after.

use super::{free_port, Proc, TempDir};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

pub struct Redis {
    pub port: u16,
    /// Given to `redis-server` after the port and the defaults.
    args: Vec<String>,
    /// TLS only: the folder with `server.crt`, `server.key`, `ca.crt`.
    tls: Option<PathBuf>,
    proc: Option<Proc>,
    /// Its working folder: a replica keeps what it is sent there.
    dir: TempDir,
}

impl Redis {
    pub async fn start() -> Redis {
        Redis::start_with(&[]).await
    }

    /// Started with `args` added (`--replicaof`, cluster settings).
    pub async fn start_with(args: &[String]) -> Redis {
        Redis::started(args, None).await
    }

    /// TLS only, with the certificate and key in `dir` (`server.crt`,
    /// `server.key`, and `ca.crt` for `redis-cli`); clients need none.
    pub async fn start_tls(dir: &Path) -> Redis {
        Redis::started(&[], Some(dir.to_path_buf())).await
    }

    async fn started(args: &[String], tls: Option<PathBuf>) -> Redis {
        let mut r = Redis {
            port: free_port(),
            args: args.to_vec(),
            tls,
            proc: None,
            dir: TempDir::new(),
        };
        r.restart().await;
        r
    }

    pub fn url(&self) -> String {
        let scheme = if self.tls.is_some() {
            "rediss"
        } else {
            "redis"
        };
        format!("{scheme}://127.0.0.1:{}", self.port)
    }

    /// Starts it (again) on its port; returns once it answers.
    pub async fn restart(&mut self) {
        let port = self.port.to_string();
        let mut cmd = Command::new("redis-server");
        match &self.tls {
            None => cmd.args(["--port", &port]),
            Some(dir) => {
                let file = |name: &str| dir.join(name).display().to_string();
                cmd.args(["--port", "0", "--tls-port", &port])
                    .args(["--tls-cert-file", &file("server.crt")])
                    .args(["--tls-key-file", &file("server.key")])
                    .args(["--tls-ca-cert-file", &file("ca.crt")])
                    .args(["--tls-auth-clients", "no"])
            }
        };
        let child = cmd
            .args(["--bind", "127.0.0.1", "--save", ""])
            .arg("--dir")
            .arg(self.dir.path())
            .args(["--appendonly", "no", "--protected-mode", "no"])
            .args(&self.args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server (Debian's redis-server package; .ci/run installs it)");
        self.proc = Some(Proc(child));
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if self.cli(&["PING"]).is_some_and(|s| s.trim() == "PONG") {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("redis-server did not answer on {port}");
    }

    /// Kills it: the port refuses connections until [`restart`].
    pub fn kill(&mut self) {
        self.proc = None;
    }

    /// What `redis-cli` prints for `args`, if it ran.
    pub fn cli(&self, args: &[&str]) -> Option<String> {
        let mut cmd = cli(self.port);
        if let Some(dir) = &self.tls {
            cmd.arg("--tls").arg("--cacert").arg(dir.join("ca.crt"));
        }
        run(cmd.args(args))
    }

    /// How many keys it holds.
    pub fn keys(&self) -> usize {
        self.cli(&["DBSIZE"])
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(0)
    }
}

fn cli(port: u16) -> Command {
    let mut cmd = Command::new("redis-cli");
    cmd.args(["-h", "127.0.0.1", "-p", &port.to_string()]);
    cmd
}

fn run(cmd: &mut Command) -> Option<String> {
    let out = cmd.output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Checks `what` every 50 ms for up to 20 s.
async fn until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !done() {
        assert!(Instant::now() < deadline, "{what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A Redis Cluster: three primaries sharing the 16,384 slots.
pub struct Cluster {
    pub nodes: Vec<Redis>,
    _dir: TempDir,
}

impl Cluster {
    pub async fn start() -> Cluster {
        let dir = TempDir::new();
        let mut nodes = Vec::new();
        for i in 0..3 {
            let conf = dir.path().join(format!("nodes-{i}.conf"));
            let args = [
                "--cluster-enabled".to_string(),
                "yes".into(),
                "--cluster-config-file".into(),
                conf.display().to_string(),
                // The bus port is given: port + 10,000 may be taken.
                "--cluster-port".into(),
                free_port().to_string(),
            ];
            nodes.push(Redis::start_with(&args).await);
        }
        let addrs: Vec<String> = nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.port))
            .collect();
        let created = run(Command::new("redis-cli")
            .args(["--cluster", "create"])
            .args(&addrs)
            .args(["--cluster-replicas", "0", "--cluster-yes"]));
        assert!(created.is_some(), "redis-cli --cluster create failed");
        let ok = |n: &Redis| {
            n.cli(&["CLUSTER", "INFO"])
                .is_some_and(|i| i.contains("cluster_state:ok"))
        };
        until("the cluster never became ok", || nodes.iter().all(ok)).await;
        Cluster { nodes, _dir: dir }
    }
}

/// A primary and its replica, watched by one sentinel that knows the
/// primary as `mymaster`.
pub struct Sentinel {
    pub port: u16,
    pub primary: Redis,
    pub replica: Redis,
    _proc: Proc,
    _dir: TempDir,
}

impl Sentinel {
    pub async fn start() -> Sentinel {
        let primary = Redis::start().await;
        let replicaof = [
            "--replicaof".to_string(),
            format!("127.0.0.1 {}", primary.port),
        ];
        let replica = Redis::start_with(&replicaof).await;
        until("the replica never synced", || {
            replica
                .cli(&["INFO", "replication"])
                .is_some_and(|i| i.contains("master_link_status:up"))
        })
        .await;
        let dir = TempDir::new();
        let port = free_port();
        let conf = format!(
            "port {port}\nbind 127.0.0.1\nprotected-mode no\n\
             sentinel monitor mymaster 127.0.0.1 {} 1\n\
             sentinel down-after-milliseconds mymaster 1000\n\
             sentinel failover-timeout mymaster 5000\n",
            primary.port
        );
        dir.write("sentinel.conf", &conf);
        let child = Command::new("redis-server")
            .arg(dir.path().join("sentinel.conf"))
            .arg("--sentinel")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server --sentinel");
        let s = Sentinel {
            port,
            primary,
            replica,
            _proc: Proc(child),
            _dir: dir,
        };
        until("the sentinel never saw the replica", || {
            s.cli(&["SENTINEL", "REPLICAS", "mymaster"])
                .is_some_and(|r| r.contains(&s.replica.port.to_string()))
        })
        .await;
        s
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    pub fn cli(&self, args: &[&str]) -> Option<String> {
        run(cli(self.port).args(args))
    }

    /// Makes the replica the primary, and waits until the sentinel says so.
    pub async fn fail_over(&self) {
        // Refused (`NOGOODSLAVE`) until the sentinel has heard from the
        // replica itself.
        until("the sentinel never began a failover", || {
            self.cli(&["SENTINEL", "FAILOVER", "mymaster"])
                .is_some_and(|s| s.trim() == "OK")
        })
        .await;
        // Until the old primary is a replica, it still takes writes that
        // the new one will never see.
        let replica = self.replica.port.to_string();
        let role = |r: &Redis| r.cli(&["ROLE"]).unwrap_or_default();
        until("the primary and the replica never swapped", || {
            let addr = self.cli(&["SENTINEL", "GET-MASTER-ADDR-BY-NAME", "mymaster"]);
            addr.is_some_and(|a| a.contains(&replica))
                && role(&self.replica).starts_with("master")
                && role(&self.primary).starts_with("slave")
        })
        .await;
    }
}
