//! Transparent capture in a Linux network namespace (root only): a sidecar
//! running as its own UID, `strait proxy-init`'s iptables rules, and an
//! unmodified client (curl, no proxy settings) calling a Service's
//! ClusterIP. The call is intercepted, routed by the mesh table and
//! answered; a server-first port is carried as opaque TCP. From a second
//! namespace, calls into the pod are captured by the inbound rules: the
//! app's HTTP port is served as HTTP, another port is carried as TCP to
//! the app on loopback. Without root,
//! `ip`, `iptables-restore`, `setpriv` or `curl` the test says SKIPPED and
//! why (`.ci/run` installs what it needs).

mod common;
use common::*;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// A network namespace removed when dropped.
struct Netns(String);

impl Netns {
    fn exec(&self, args: &[&str]) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.0]).args(args);
        c
    }

    fn run(&self, args: &[&str]) -> Result<String, String> {
        let out = self.exec(args).output().map_err(|e| e.to_string())?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            Err(format!(
                "{args:?}: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ))
        }
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

fn skip(why: &str) {
    eprintln!("SKIPPED transparent capture test: {why}");
}

fn have(tool: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// The pod's namespace, with loopback and a veth pair whose end holds
/// 10.200.0.1 and the default route (REDIRECT of outbound traffic needs a
/// route out); the other end, 10.200.0.2, is in a second namespace, the
/// caller outside the pod.
fn netns() -> Result<(Netns, Netns), String> {
    let name = format!("strait-{}", std::process::id());
    let ok = |args: &[&str]| -> Result<(), String> {
        let out = Command::new("ip")
            .args(args)
            .output()
            .map_err(|e| e.to_string())?;
        if out.status.success() {
            Ok(())
        } else {
            Err(format!(
                "ip {args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            ))
        }
    };
    let outside = format!("{name}-out");
    ok(&["netns", "add", &name])?;
    let ns = Netns(name.clone());
    ok(&["netns", "add", &outside])?;
    let out_ns = Netns(outside.clone());
    ok(&["-n", &name, "link", "set", "lo", "up"])?;
    ok(&[
        "-n", &name, "link", "add", "v0", "type", "veth", "peer", "name", "v1",
    ])?;
    ok(&["-n", &name, "addr", "add", "10.200.0.1/24", "dev", "v0"])?;
    ok(&["-n", &name, "link", "set", "v0", "up"])?;
    ok(&["-n", &name, "link", "set", "v1", "netns", &outside])?;
    ok(&["-n", &outside, "addr", "add", "10.200.0.2/24", "dev", "v1"])?;
    ok(&["-n", &outside, "link", "set", "v1", "up"])?;
    ok(&["-n", &outside, "link", "set", "lo", "up"])?;
    ok(&["-n", &name, "route", "add", "default", "dev", "v0"])?;
    Ok((ns, out_ns))
}

#[test]
fn unmodified_client_is_captured_routed_and_answered() {
    let uid = Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    if uid != "0" {
        return skip("needs root (network namespaces and iptables)");
    }
    for tool in ["ip", "iptables-restore", "setpriv", "curl"] {
        if !have(tool) {
            return skip(&format!("{tool} is not installed"));
        }
    }
    let (ns, outside) = match netns() {
        Ok(pair) => pair,
        Err(e) => return skip(&format!("cannot make a network namespace: {e}")),
    };
    let dir = TempDir::new();
    // Readable by the sidecar's UID.
    let _ = Command::new("chmod").args(["755"]).arg(dir.path()).status();
    dir.write(
        "shop.yaml",
        r#"apiVersion: v1
kind: Service
metadata: {name: payment, namespace: shop}
spec: {clusterIP: 10.96.0.50, ports: [{name: http, port: 80}]}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: payment, namespace: shop, labels: {kubernetes.io/service-name: payment}}
addressType: IPv4
endpoints: [{addresses: ["10.200.0.1"]}]
ports: [{name: http, port: 9101}]
---
apiVersion: v1
kind: Service
metadata: {name: db, namespace: shop}
spec: {clusterIP: 10.96.0.60, ports: [{name: pg, port: 5432}]}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: db, namespace: shop, labels: {kubernetes.io/service-name: db}}
addressType: IPv4
endpoints: [{addresses: ["10.200.0.1"]}]
ports: [{name: pg, port: 9102}]
"#,
    );
    let log = dir.path().with_extension("proxy.log");
    let _payment = Proc(
        ns.exec(&[
            STRAIT,
            "echo",
            "--listen",
            "10.200.0.1:9101",
            "--service",
            "payment",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("echo"),
    );
    let _db = Proc(
        ns.exec(&[
            STRAIT,
            "echo",
            "--listen",
            "10.200.0.1:9102",
            "--service",
            "db",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("echo"),
    );
    // The workload itself: HTTP on its app port, something else on 9103.
    let app = |listen: &str, service: &str| {
        Proc(
            ns.exec(&[STRAIT, "echo", "--listen", listen, "--service", service])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("echo"),
        )
    };
    let _app = app("127.0.0.1:9100", "checkout");
    let _other = app("127.0.0.1:9103", "checkout-admin");
    let config = dir.path().to_string_lossy().into_owned();
    let _proxy = Proc(
        ns.exec(&[
            "setpriv",
            "--reuid=1337",
            "--regid=1337",
            "--clear-groups",
            STRAIT,
            "proxy",
            "--config",
            &config,
            "--workload",
            "shop/checkout",
            "--app-port",
            "9100",
            "--inbound-listen",
            "0.0.0.0:15006",
            "--outbound-listen",
            "127.0.0.1:15001",
            "--admin",
            "127.0.0.1:15000",
        ])
        .env("STRAIT_LOG", "debug")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).expect("log"))
        .spawn()
        .expect("proxy"),
    );
    let logs = || std::fs::read_to_string(&log).unwrap_or_default();
    // A kernel without the nat table's REDIRECT (some containers) cannot
    // run this test at all: say so rather than fail or pass.
    if let Err(e) = ns.run(&[STRAIT, "proxy-init", "--exclude-inbound-ports", "15000"]) {
        return skip(&format!(
            "iptables-restore refused the capture rules here: {e}"
        ));
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while ns
        .run(&[
            "curl",
            "-sf",
            "-o",
            "/dev/null",
            "http://127.0.0.1:15000/ready",
        ])
        .is_err()
    {
        assert!(Instant::now() < deadline, "proxy not ready:\n{}", logs());
        #[allow(clippy::disallowed_methods)] // a plain #[test]: no async worker to block
        std::thread::sleep(Duration::from_millis(50));
    }

    // An unmodified client: plain curl to the ClusterIP, no proxy settings.
    let body = ns
        .run(&["curl", "-s", "--max-time", "5", "http://10.96.0.50/pay"])
        .unwrap_or_else(|e| panic!("curl: {e}\n{}", logs()));
    let json: serde_json::Value =
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("{e}: {body}\n{}", logs()));
    assert_eq!(json["service"], "payment", "{body}");
    assert_eq!(json["path"], "/pay");

    // Port 5432 is server-first by default: carried as bytes, not as HTTP.
    let body = ns
        .run(&[
            "curl",
            "-s",
            "--max-time",
            "5",
            "http://10.96.0.60:5432/raw",
        ])
        .unwrap_or_else(|e| panic!("curl: {e}\n{}", logs()));
    assert!(body.contains("\"service\":\"db\""), "{body}");

    // From outside the pod: the app's port is captured and served as HTTP
    // by the sidecar; port 9103 is captured and carried as TCP.
    let body = outside
        .run(&["curl", "-s", "--max-time", "5", "http://10.200.0.1:9100/in"])
        .unwrap_or_else(|e| panic!("curl: {e}\n{}", logs()));
    assert!(body.contains("\"service\":\"checkout\""), "{body}");
    let body = outside
        .run(&[
            "curl",
            "-s",
            "--max-time",
            "5",
            "http://10.200.0.1:9103/admin",
        ])
        .unwrap_or_else(|e| panic!("curl: {e}\n{}", logs()));
    assert!(body.contains("\"service\":\"checkout-admin\""), "{body}");

    let metrics = ns
        .run(&["curl", "-s", "http://127.0.0.1:15000/metrics"])
        .expect("metrics");
    assert!(
        metrics.contains(
            "strait_requests_total{reporter=\"destination\",listener=\"inbound|shop/checkout\""
        ),
        "the inbound call to the app port was served as HTTP:\n{metrics}"
    );
    assert!(
        metrics.contains("route=\"inbound|shop/checkout:9103\""),
        "the inbound call to port 9103 was carried as TCP:\n{metrics}"
    );
    assert!(
        metrics.contains("strait_requests_total{reporter=\"source\",listener=\"shop/payment:80\""),
        "the HTTP call was routed as HTTP:\n{metrics}"
    );
    assert!(
        metrics.contains("strait_tcp_connections_total{listener=\"shop/db:5432\""),
        "the 5432 call was opaque TCP:\n{metrics}"
    );
}
