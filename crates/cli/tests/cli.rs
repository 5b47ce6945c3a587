//! The command line as a user meets it: errors that say what to do, logs
//! for people or for pipelines, counts in words, and the ports file.

mod common;

use common::*;
use std::process::{Command, Stdio};

fn run(args: &[&str]) -> (Option<i32>, String, String) {
    let out = Command::new(STRAIT)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run strait");
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    (out.status.code(), text(&out.stdout), text(&out.stderr))
}

#[test]
fn a_gateway_without_configuration_names_both_sources() {
    for role in [
        &["gateway"][..],
        &["proxy", "--workload", "a/b", "--app-port", "1"],
    ] {
        let (code, _, stderr) = run(role);
        assert_eq!(code, Some(2), "{stderr}");
        assert!(
            stderr.contains("--config DIR") && stderr.contains("--control HOST:PORT"),
            "{stderr}"
        );
        assert!(
            stderr.contains(&format!("Usage: strait {}", role[0])),
            "{stderr}"
        );
    }
}

#[test]
fn help_tells_how_to_set_the_log() {
    let (code, stdout, _) = run(&["--help"]);
    assert_eq!(code, Some(0));
    assert!(stdout.contains("STRAIT_LOG"), "{stdout}");
    assert!(stdout.contains("--log-format"), "{stdout}");
    let (_, stdout, _) = run(&["gateway", "--help"]);
    assert!(stdout.contains("[default: 0.0.0.0]"), "{stdout}");
}

#[test]
fn check_speaks_yaml_not_rust_and_counts_in_words() {
    let dir = TempDir::new();
    dir.write("gw.yaml", &gateway_yaml(8080));
    let (code, stdout, _) = run(&["check", &dir.path().to_string_lossy()]);
    assert_eq!(code, Some(0), "{stdout}");
    assert!(stdout.contains("1 listener,"), "{stdout}");
    assert!(stdout.contains("0 errors"), "{stdout}");
    dir.write(
        "bad.yaml",
        "apiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\nmetadata: {name: g}\nspec:\n  gatewayClassName: strait\n  listeners:\n  - {name: h, port: eighty, protocol: HTTP}\n",
    );
    dir.write("broken.yaml", "a: {b: 1\n  c: [\n");
    let (code, stdout, _) = run(&["check", &dir.path().to_string_lossy()]);
    assert_eq!(code, Some(1), "{stdout}");
    assert!(
        stdout.contains("bad.yaml:1: spec.listeners[0].port: invalid type: string \"eighty\", expected an integer"),
        "{stdout}"
    );
    let yaml = stdout
        .lines()
        .find(|l| l.contains("broken.yaml"))
        .expect("the YAML error");
    assert_eq!(yaml.matches("line ").count(), 1, "{yaml}");
    assert!(stdout.contains("2 errors"), "{stdout}");
    for rust in ["i32", "u16", "struct ", "enum "] {
        assert!(!stdout.contains(rust), "{rust} in {stdout}");
    }
}

/// Logs to a file: no colour codes, and `--log-format json` is one JSON
/// object per line; the ports file lists what a port 0 became.
#[tokio::test]
async fn logs_are_plain_or_json_and_the_ports_file_tells_the_ports() {
    let dir = TempDir::new();
    let port = free_port();
    dir.write("gw.yaml", &gateway_yaml(port));
    let gw = Gateway::start(&dir).await;
    let logs = gw.logs();
    assert!(!logs.contains('\u{1b}'), "colour in a file: {logs:?}");
    assert!(
        logs.contains(&format!("127.0.0.1:{port} (gateway)")),
        "ready names its sockets: {logs}"
    );
    let ports = read_ports(&dir.path().with_extension("ports")).expect("ports file");
    assert!(ports.contains(&("gateway".into(), port)), "{ports:?}");
    assert!(ports.contains(&("admin".into(), gw.admin)), "{ports:?}");
    drop(gw);

    let json = Gateway::start_with(&dir, &["--log-format", "json"]).await;
    let logs = json.logs();
    assert!(logs.lines().count() >= 2, "{logs}");
    for line in logs.lines() {
        let v: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
        assert!(
            v["level"].is_string() && v["fields"]["message"].is_string(),
            "{line}"
        );
    }
}
