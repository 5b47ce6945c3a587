//! Helpers for tests of workload identity: `strait control` (the mesh
//! CA), meshed Services with their ServiceAccounts, token Secrets, and
//! sidecars started with an identity.

use super::*;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

pub struct Control {
    pub addr: String,
    pub ca_dir: std::path::PathBuf,
    pub proc: Proc,
}

impl Control {
    /// `strait control` on `listen` (port 0: any) for the folder `dir`.
    pub fn start(dir: &TempDir, listen: &str, extra: &[&str]) -> Control {
        Self::start_in(dir, listen, &dir.path().with_extension("ca"), extra, &[])
    }

    /// The same with its CA kept in `ca_dir`, and `env` set for it.
    pub fn start_in(
        dir: &TempDir,
        listen: &str,
        ca_dir: &Path,
        extra: &[&str],
        env: &[(&str, &str)],
    ) -> Control {
        let ca_dir = ca_dir.to_path_buf();
        let mut child = Command::new(STRAIT)
            .envs(env.iter().copied())
            .args(["control", "--config"])
            .arg(dir.path())
            .args(["--listen", listen, "--ca-dir"])
            .arg(&ca_dir)
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn control");
        let stdout = child.stdout.take().expect("stdout");
        let mut line = String::new();
        BufReader::new(stdout)
            .read_line(&mut line)
            .expect("control prints its address");
        let addr = line
            .trim()
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("unexpected banner {line:?}"))
            .to_string();
        Control {
            addr,
            ca_dir,
            proc: Proc(child),
        }
    }
}

/// A Service `name` whose endpoint is a sidecar's inbound listener,
/// running as ServiceAccount `sa`, and the token Secret of `sa`.
pub fn meshed_service(name: &str, sa: &str, inbound: u16) -> String {
    format!(
        r#"---
apiVersion: v1
kind: Service
metadata: {{name: {name}, namespace: shop}}
spec: {{ports: [{{name: http, port: 80}}]}}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: {name}
  namespace: shop
  labels: {{kubernetes.io/service-name: {name}, strait.dev/meshed: "true"}}
  annotations: {{strait.dev/service-account: {sa}}}
addressType: IPv4
endpoints: [{{addresses: ["127.0.0.1"]}}]
ports: [{{name: http, port: {inbound}}}]
"#
    )
}

pub fn token_secret(sa: &str) -> String {
    format!(
        r#"---
apiVersion: v1
kind: Secret
metadata:
  name: {sa}-token
  namespace: shop
  annotations: {{kubernetes.io/service-account.name: {sa}}}
type: kubernetes.io/service-account-token
stringData: {{token: tok-{sa}}}
"#
    )
}

/// The flags that give a sidecar its identity `sa`.
pub fn identity_flags(dir: &TempDir, control: &Control, sa: &str) -> Vec<String> {
    let token = dir.path().join(format!("{sa}.token"));
    std::fs::write(&token, format!("tok-{sa}\n")).expect("token");
    vec![
        "--ca".into(),
        control.addr.clone(),
        "--trust-bundle".into(),
        control
            .ca_dir
            .join("trust-bundle.pem")
            .to_string_lossy()
            .into_owned(),
        "--token-file".into(),
        token.to_string_lossy().into_owned(),
        "--service-account".into(),
        sa.into(),
    ]
}

pub async fn sidecar(
    dir: &TempDir,
    control: &Control,
    sa: &str,
    app: u16,
    inbound: u16,
) -> Sidecar {
    let flags = identity_flags(dir, control, sa);
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    Sidecar::start(dir, &format!("shop/{sa}"), app, inbound, &flags).await
}

pub fn metric(metrics: &str, needle: &str) -> f64 {
    metrics
        .lines()
        .filter(|l| l.starts_with(needle))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}
