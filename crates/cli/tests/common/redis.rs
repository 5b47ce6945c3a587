//! A real Redis (Debian's `redis-server`) on a loopback port, for
//! global rate limits: started, killed and started again on the same
//! port, with nothing kept on disk.

use super::{free_port, Proc};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

pub struct Redis {
    pub port: u16,
    proc: Option<Proc>,
}

impl Redis {
    pub async fn start() -> Redis {
        let mut r = Redis {
            port: free_port(),
            proc: None,
        };
        r.restart().await;
        r
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Starts it (again) on its port; returns once it answers.
    pub async fn restart(&mut self) {
        let port = self.port.to_string();
        let child = Command::new("redis-server")
            .args(["--port", &port, "--bind", "127.0.0.1", "--save", ""])
            .args(["--appendonly", "no", "--protected-mode", "no"])
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
        let port = self.port.to_string();
        let out = Command::new("redis-cli")
            .args(["-h", "127.0.0.1", "-p", &port])
            .args(args)
            .output()
            .ok()?;
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
    }
}
