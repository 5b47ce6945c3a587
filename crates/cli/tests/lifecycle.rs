//! Reloads, draining, protocols and bad input, through the real binary.

mod common;
use bytes::Bytes;
use common::*;
use http_body_util::Full;
use std::io::{Read, Write};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

fn route(name: &str, path: &str, backend: &str, tag: &str) -> String {
    format!(
        r#"
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{name: {name}}}
spec:
  parentRefs: [{{name: gw}}]
  rules:
  - matches: [{{path: {{value: {path}}}}}]
    filters:
    - type: ResponseHeaderModifier
      responseHeaderModifier: {{set: [{{name: X-Tag, value: "{tag}"}}]}}
    backendRefs: [{{name: {backend}, port: 80}}]
"#
    )
}

struct World {
    port: u16,
    dir: TempDir,
    backends: Vec<Echo>,
}

fn world() -> World {
    let (a, b) = (echo("a", "a-0"), echo("b", "b-0"));
    let port = free_port();
    let dir = TempDir::new();
    let mut base = gateway_yaml(port);
    base += &service_yaml("a", a.port, None);
    base += &service_yaml("b", b.port, Some("kubernetes.io/h2c"));
    dir.write("base.yaml", &base);
    dir.write("routes.yaml", &route("main", "/", "a", "v0"));
    World {
        port,
        dir,
        backends: vec![a, b],
    }
}

#[tokio::test]
async fn bad_change_is_refused_and_the_last_good_config_serves() {
    let w = world();
    let gw = Gateway::start(&w.dir).await;
    assert_eq!(
        send(get(w.port, "h", "/")).await.expect("ok").service(),
        "a"
    );

    w.dir.write("broken.yaml", "apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {name: x}\nspec:\n  rules:\n  - matches: [{path: {type: Exact, valu: /x}}]\n");
    let refused = eventually(
        10,
        || format!("change not refused:\n{}", gw.logs()),
        || async {
            let c = gw.config().await;
            let refused = c["lastRefusedChange"]
                .as_array()
                .is_some_and(|a| !a.is_empty());
            refused.then_some(c)
        },
    )
    .await;
    let problem = &refused["lastRefusedChange"][0];
    assert!(problem["source"]["file"]
        .as_str()
        .unwrap_or("")
        .ends_with("broken.yaml"));
    assert_eq!(problem["source"]["doc"], 1);
    assert_eq!(problem["path"], "spec.rules[0].matches[0].path.valu");
    assert_eq!(
        send(get(w.port, "h", "/"))
            .await
            .expect("still serving")
            .service(),
        "a"
    );
    assert!(
        gw.logs()
            .contains("broken.yaml:1: spec.rules[0].matches[0].path.valu: unknown field"),
        "{}",
        gw.logs()
    );
    assert!(gw
        .metrics()
        .await
        .contains(r#"strait_config_reloads_total{result="failed"}"#));

    // An invalid route (semantics, not schema) is rejected alone.
    std::fs::remove_file(w.dir.path().join("broken.yaml")).expect("rm");
    let mut routes = route("main", "/", "a", "v1");
    routes += &route("bad", "/bad", "a", "x")
        .replace("value: /bad", "type: RegularExpression, value: \"/(\"");
    routes += &route("other", "/other", "b", "v1");
    w.dir.write("routes.yaml", &routes);
    gw.wait_generation(2).await;
    let r = send(get(w.port, "h", "/other")).await.expect("ok");
    assert_eq!(r.service(), "b");
    assert_eq!(
        r.json()["proto"],
        "HTTP/2.0",
        "appProtocol kubernetes.io/h2c goes upstream as HTTP/2"
    );
    assert_eq!(
        send(get(w.port, "h", "/")).await.expect("ok").headers["x-tag"],
        "v1"
    );
    let routes = gw.config().await["snapshot"]["routes"].clone();
    let bad = routes
        .as_array()
        .expect("routes")
        .iter()
        .find(|r| r["name"] == "bad")
        .expect("bad")
        .clone();
    assert_eq!(bad["parents"][0]["conditions"][0]["status"], false);
    drop(w.backends);
}

#[tokio::test]
async fn reload_under_load_loses_nothing() {
    let w = world();
    let gw = Gateway::start(&w.dir).await;
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicU64::new(0));
    let mut clients = Vec::new();
    for _ in 0..4 {
        let (stop, done, port) = (stop.clone(), done.clone(), w.port);
        clients.push(tokio::spawn(async move {
            let mut failures = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                match send(get(port, "h", "/")).await {
                    Ok(r) if r.status == 200 && r.service() == "a" => {}
                    Ok(r) => {
                        failures.push(format!("{} {}", r.status, String::from_utf8_lossy(&r.body)))
                    }
                    Err(e) => failures.push(e),
                }
                done.fetch_add(1, Ordering::Relaxed);
            }
            failures
        }));
    }
    for i in 1..=50 {
        // Alternate between one route and two, changing the tag every time.
        let mut text = route("main", "/", "a", &format!("v{i}"));
        if i % 2 == 0 {
            text += &route("extra", "/extra", "b", "x");
        }
        w.dir.write("routes.yaml", &text);
        // Each change becomes its own reload: wait for it to be swapped in.
        gw.wait_generation(1 + i).await;
    }
    // The last change is served once the folder settles.
    eventually(
        10,
        || format!("last change never served:\n{}", gw.logs()),
        || async {
            let r = send(get(w.port, "h", "/")).await.expect("ok");
            (r.headers["x-tag"] == "v50").then_some(())
        },
    )
    .await;
    stop.store(true, Ordering::Relaxed);
    let mut failures = Vec::new();
    for c in clients {
        failures.extend(c.await.expect("client"));
    }
    let total = done.load(Ordering::Relaxed);
    assert!(total > 200, "only {total} requests made");
    assert!(
        failures.is_empty(),
        "{} of {total} failed: {:?}",
        failures.len(),
        &failures[..failures.len().min(5)]
    );
    assert_eq!(gw.config().await["generation"].as_u64(), Some(51));
}

#[tokio::test]
async fn sigterm_drains_in_flight_requests() {
    let w = world();
    let gw = Gateway::start_with(&w.dir, &["--drain-timeout", "10"]).await;
    let port = w.port;
    // The request must be in flight (not merely connecting) when SIGTERM
    // comes: a second of head start, even on a loaded CI machine.
    let slow = tokio::spawn(async move { send(get(port, "h", "/?delay=2s")).await });
    tokio::time::sleep(Duration::from_millis(1000)).await;
    gw.signal("TERM");
    let r = slow
        .await
        .expect("task")
        .expect("in-flight request completes");
    assert_eq!(r.status, 200);
    let mut gw = gw;
    let Some(status) = gw.proc.exit_within(5).await else {
        panic!("gateway did not exit:\n{}", gw.logs());
    };
    assert!(status.success(), "{status}");
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", port)).is_err(),
        "listener closed"
    );
    assert!(gw.logs().contains("drained"), "{}", gw.logs());
}

#[tokio::test]
async fn protocols_bodies_and_hop_by_hop() {
    let w = world();
    let _gw = Gateway::start(&w.dir).await;
    // HTTP/2 with prior knowledge on the same port.
    let h2 = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .http2_only(true)
        .build_http();
    let r = send_with(&h2, get(w.port, "h", "/")).await.expect("h2c");
    assert_eq!(r.service(), "a");
    assert_eq!(r.json()["proto"], "HTTP/1.1", "plain backend gets HTTP/1.1");
    assert_eq!(r.json()["host"], "h", "authority becomes Host");

    // A 4 MiB upload is streamed through whole.
    let body = Bytes::from(vec![b'x'; 4 << 20]);
    let req = http::Request::post(format!("http://127.0.0.1:{}/upload", w.port))
        .header("host", "h")
        .body(Full::new(body))
        .expect("req");
    let r = send(req).await.expect("upload");
    assert_eq!(r.json()["bodyBytes"], 4 << 20);

    let r = send(request(
        "GET",
        w.port,
        "h",
        "/",
        &[
            ("connection", "x-private"),
            ("x-private", "1"),
            ("keep-alive", "timeout=5"),
        ],
    ))
    .await
    .expect("ok");
    let headers = &r.json()["headers"];
    assert!(
        headers.get("X-Private").is_none() && headers.get("Keep-Alive").is_none(),
        "{headers}"
    );
}

fn raw(port: u16, bytes: &[u8]) -> String {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    s.write_all(bytes).expect("write");
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}

#[tokio::test]
async fn malformed_requests_get_4xx_and_nothing_breaks() {
    let w = world();
    let _gw = Gateway::start(&w.dir).await;
    let answer = raw(w.port, b"GARBAGE\r\n\r\n");
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer:?}");
    let answer = raw(w.port, b"GET / HTTP/1.1\r\n\r\n");
    assert!(answer.starts_with("HTTP/1.1 400"), "no Host: {answer:?}");
    // HTTP/1.0 may leave Host out: the listener's catch-all routes serve it.
    let answer = raw(w.port, b"GET / HTTP/1.0\r\n\r\n");
    assert!(
        answer.starts_with("HTTP/1.0 200") && answer.contains("\"service\":\"a\""),
        "HTTP/1.0 without Host: {answer:?}"
    );
    let mut many = b"GET / HTTP/1.1\r\nHost: h\r\n".to_vec();
    for i in 0..200 {
        many.extend_from_slice(format!("X-H{i}: v\r\n").as_bytes());
    }
    many.extend_from_slice(b"\r\n");
    let answer = raw(w.port, &many);
    assert!(
        answer.starts_with("HTTP/1.1 431"),
        "too many headers: {answer:?}"
    );
    assert_eq!(
        send(get(w.port, "h", "/"))
            .await
            .expect("still serving")
            .service(),
        "a"
    );
}

#[test]
fn check_reports_file_document_and_field_path() {
    let dir = TempDir::new();
    dir.write("gw.yaml", &gateway_yaml(8080));
    dir.write(
        "routes.yaml",
        "apiVersion: v1\nkind: Namespace\nmetadata: {name: a}\n---\napiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {name: r}\nspec:\n  parentRefs: [{name: gw}]\n  rules:\n  - backendRefs: [{name: svc, port: 80, weight: -1}]\n",
    );
    let (code, stdout) = check(&dir);
    assert_eq!(code, Some(1), "{stdout}");
    assert!(
        stdout.contains(
            "routes.yaml:2: spec.rules[0].backendRefs[0].weight: -1 is outside 0-1000000"
        ),
        "{stdout}"
    );

    dir.write(
        "routes.yaml",
        "apiVersion: v1\nkind: Namespace\nmetadata: {name: a}\n",
    );
    let (code, stdout) = check(&dir);
    assert_eq!(code, Some(0), "{stdout}");

    dir.write("bad.yaml", "kind: [unclosed\n");
    let (code, stdout) = check(&dir);
    assert_eq!(code, Some(1));
    assert!(
        stdout.contains("bad.yaml: not valid YAML: line 1"),
        "{stdout}"
    );
}

/// Non-ASCII beside a wildcard once panicked the validator (exit 101).
#[test]
fn check_reports_odd_authorization_paths_without_panicking() {
    let dir = TempDir::new();
    dir.write(
        "authz.yaml",
        "apiVersion: policy.strait.dev/v1alpha1\nkind: AuthorizationPolicy\nmetadata: {name: a}\nspec:\n  targetRefs: [{group: \"\", kind: Service, name: pay}]\n  action: ALLOW\n  rules:\n  - to: [{paths: [\"é*\", \"*é\", \"a*é*b\"]}]\n",
    );
    let (code, stdout) = check(&dir);
    assert_eq!(code, Some(1), "{stdout}");
    assert!(
        stdout.contains("authz.yaml:1: spec.rules[0].to[0].paths[2]"),
        "{stdout}"
    );
    assert!(
        !stdout.contains("paths[0]") && !stdout.contains("paths[1]"),
        "{stdout}"
    );
}

/// A change the file watcher cannot see — the folder is a symlink swapped
/// to another, as Kubernetes mounts a ConfigMap — arrives with SIGHUP.
#[tokio::test]
async fn sighup_reloads() {
    let w = world();
    let root = TempDir::new();
    for (version, tag) in [("v1", "v0"), ("v2", "v1")] {
        let folder = root.path().join(version);
        std::fs::create_dir_all(&folder).expect("folder");
        let base = std::fs::read_to_string(w.dir.path().join("base.yaml")).expect("base");
        std::fs::write(folder.join("base.yaml"), base).expect("write");
        std::fs::write(folder.join("routes.yaml"), route("main", "/", "a", tag)).expect("write");
    }
    let current = root.path().join("current");
    std::os::unix::fs::symlink(root.path().join("v1"), &current).expect("symlink");
    let config = current.to_string_lossy().into_owned();
    let gw = Gateway::launch(&root, &["--config", &config]).await;
    let tag = || async {
        let r = send(get(w.port, "h", "/")).await.expect("answer");
        assert_eq!(r.service(), "a");
        r.headers["x-tag"].to_str().unwrap_or("").to_string()
    };
    assert_eq!(tag().await, "v0");
    let next = root.path().join("next");
    std::os::unix::fs::symlink(root.path().join("v2"), &next).expect("symlink");
    std::fs::rename(&next, &current).expect("swap");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(tag().await, "v0", "the watcher saw no change");
    gw.signal("HUP");
    gw.wait_generation(2).await;
    assert_eq!(tag().await, "v1");
}

#[tokio::test]
async fn a_gateway_binds_its_own_address() {
    let w = world();
    let port2 = free_port();
    w.dir.write(
        "second.yaml",
        &format!(
            "apiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\nmetadata: {{name: second}}\nspec:\n  gatewayClassName: strait\n  addresses: [{{value: 127.0.0.1}}]\n  listeners: [{{name: http, port: {port2}, protocol: HTTP}}]\n{}",
            route("second", "/", "a", "second").replace("parentRefs: [{name: gw}]", "parentRefs: [{name: second}]")
        ),
    );
    // Tests stay on 127.0.0.1, so the Gateway's own address is that too: what
    // is checked is that the listener is keyed and bound by spec.addresses.
    let gw = Gateway::start(&w.dir).await;
    let r = send(get(port2, "h", "/")).await.expect("second gateway");
    assert_eq!(r.headers["x-tag"], "second");
    let r = send(get(w.port, "h", "/")).await.expect("first gateway");
    assert_eq!(r.headers["x-tag"], "v0");
    let config = gw.config().await;
    let addresses: Vec<String> = config["snapshot"]["ports"]
        .as_array()
        .expect("ports")
        .iter()
        .map(|p| p["address"].to_string())
        .collect();
    assert!(
        addresses.contains(&"\"127.0.0.1\"".to_string()),
        "{addresses:?}"
    );
}

#[tokio::test]
async fn upgrades_are_joined_end_to_end() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let w = world();
    let _gw = Gateway::start(&w.dir).await;
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", w.port))
        .await
        .expect("connect");
    s.write_all(
        b"GET /chat HTTP/1.1\r\nHost: h\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n",
    )
    .await
    .expect("write");
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let mut byte = [0u8; 1];
        let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut byte))
            .await
            .expect("head in time")
            .expect("read");
        assert!(n == 1, "closed early: {}", String::from_utf8_lossy(&head));
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head).to_ascii_lowercase();
    assert!(head.starts_with("http/1.1 101"), "{head}");
    assert!(head.contains("upgrade: websocket"), "{head}");
    for message in [&b"hello"[..], b"second message"] {
        s.write_all(message).await.expect("send");
        let mut back = vec![0u8; message.len()];
        tokio::time::timeout(Duration::from_secs(5), s.read_exact(&mut back))
            .await
            .expect("echo in time")
            .expect("read");
        assert_eq!(back, message);
    }
}

#[tokio::test]
async fn trailers_pass_through_http2_end_to_end() {
    use http_body_util::BodyExt;
    let w = world();
    // Backend b speaks h2c (appProtocol kubernetes.io/h2c), as gRPC servers do.
    w.dir.write("routes.yaml", &route("to-b", "/", "b", "t"));
    let _gw = Gateway::start(&w.dir).await;
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", w.port))
        .await
        .expect("connect");
    let mut send = h2_over(tcp).await;
    let req = http::Request::post("http://h/pkg.Svc/Call")
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .header("x-echo-trailer", "grpc-status:0,grpc-message:fine")
        .body(http_body_util::Full::new(Bytes::from_static(b"\0\0\0\0\0")))
        .expect("request");
    let response = send.send_request(req).await.expect("response");
    assert_eq!(response.status(), 200);
    let collected = response.into_body().collect().await.expect("body");
    let trailers = collected.trailers().cloned().expect("trailers arrive");
    assert_eq!(trailers["grpc-status"], "0");
    assert_eq!(trailers["grpc-message"], "fine");
    let json: serde_json::Value = serde_json::from_slice(&collected.to_bytes()).expect("json");
    assert_eq!(json["proto"], "HTTP/2.0");
    assert_eq!(
        json["headers"]["Te"],
        serde_json::json!(["trailers"]),
        "TE: trailers is kept for HTTP/2 upstreams"
    );
}
