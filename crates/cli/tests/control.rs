//! The control plane feeding proxies, through real processes: `strait
//! control` serves a folder; a gateway and two sidecars take their
//! configuration from it (`--control`). A change reaches every proxy with
//! no failed request; the control plane can die while traffic flows;
//! proxies find it again within 5 s of its return; a proxy restarted
//! while it is down serves its cached snapshot; a snapshot a proxy cannot
//! apply is refused (NACK), reported, and the old one kept.

mod common;
use common::identity::*;
use common::*;
use std::time::{Duration, Instant};

/// The folder: the gateway's route to `web`, and a GAMMA route for `pay`
/// (its endpoint the callee sidecar), both tagging answers `x-version`.
fn manifests(gw_port: u16, web: u16, pay_inbound: u16, version: u32) -> String {
    let tag = format!(
        "    filters: [{{type: ResponseHeaderModifier, responseHeaderModifier: {{set: [{{name: x-version, value: \"{version}\"}}]}}}}]\n"
    );
    gateway_yaml(gw_port)
        + &service_yaml("web", web, None)
        + &service_yaml("pay", pay_inbound, None)
        + &format!(
            r#"---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{name: web}}
spec:
  parentRefs: [{{name: gw}}]
  rules:
  - backendRefs: [{{name: web, port: 80}}]
{tag}---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{name: pay}}
spec:
  parentRefs: [{{group: "", kind: Service, name: pay, port: 80}}]
  rules:
  - backendRefs: [{{name: pay, port: 80}}]
{tag}"#
        )
}

/// The `x-version` each path answers with now: through the gateway, and
/// through the caller's sidecar; `None` for a failed call.
async fn versions(gw_port: u16, outbound: u16) -> (Option<String>, Option<String>) {
    let through_gw = send(get(gw_port, "shop.example.com", "/"))
        .await
        .ok()
        .filter(|r| r.status == 200)
        .and_then(|r| Some(r.headers.get("x-version")?.to_str().ok()?.to_string()));
    let through_mesh = try_call(outbound, "http://pay/").await;
    (through_gw, through_mesh)
}

async fn try_call(outbound: u16, url: &str) -> Option<String> {
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", outbound))
        .await
        .ok()?;
    let mut send = h1_over::<_, http_body_util::Empty<bytes::Bytes>>(tcp).await;
    let r = tokio::time::timeout(
        Duration::from_secs(5),
        send.send_request(http::Request::get(url).body(Default::default()).ok()?),
    )
    .await
    .ok()?
    .ok()?;
    (r.status() == 200).then(|| {
        r.headers()
            .get("x-version")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string()
    })
}

async fn wait_for(gw_port: u16, outbound: u16, version: &str, within: Duration) -> Duration {
    let start = Instant::now();
    loop {
        let (a, b) = versions(gw_port, outbound).await;
        if a.as_deref() == Some(version) && b.as_deref() == Some(version) {
            return start.elapsed();
        }
        assert!(
            start.elapsed() < within,
            "version {version} not everywhere after {within:?}: gateway {a:?}, mesh {b:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_control_plane_feeds_every_proxy_and_can_go_away() {
    let dir = TempDir::new();
    let (gw_port, pay_in) = (free_port(), free_port());
    let web = echo("web", "web-0");
    let pay_app = echo("pay", "pay-0");
    dir.write("shop.yaml", &manifests(gw_port, web.port, pay_in, 1));
    let listen = format!("127.0.0.1:{}", free_port());
    let control = Control::start(&dir, &listen, &[]);
    let bundle = control
        .ca_dir
        .join("trust-bundle.pem")
        .to_string_lossy()
        .into_owned();
    let cache_dir = TempDir::new();
    let cache = |name: &str| cache_dir.path().join(name).to_string_lossy().into_owned();
    let (gw_cache, pay_cache, checkout_cache) =
        (cache("gw.json"), cache("pay.json"), cache("checkout.json"));
    let gw_flags = [
        "--control",
        &listen,
        "--trust-bundle",
        &bundle,
        "--cache",
        &gw_cache,
    ];
    let gw_logs = TempDir::new();
    let gateway = Gateway::launch(&gw_logs, &gw_flags).await;
    let sidecar_flags = |cache: &str| {
        vec![
            "--control".to_string(),
            listen.clone(),
            "--trust-bundle".into(),
            bundle.clone(),
            "--cache".into(),
            cache.to_string(),
        ]
    };
    let pay_flags = sidecar_flags(&pay_cache);
    let pay_flags: Vec<&str> = pay_flags.iter().map(String::as_str).collect();
    let _pay = Sidecar::launch(&dir, "default/pay", pay_app.port, pay_in, &pay_flags).await;
    let checkout_flags = sidecar_flags(&checkout_cache);
    let checkout_flags: Vec<&str> = checkout_flags.iter().map(String::as_str).collect();
    let checkout_app = echo("checkout", "checkout-0");
    let checkout = Sidecar::launch(
        &dir,
        "default/checkout",
        checkout_app.port,
        free_port(),
        &checkout_flags,
    )
    .await;
    wait_for(gw_port, checkout.outbound, "1", Duration::from_secs(5)).await;

    // Steady traffic through both paths for the rest of the test.
    let out = checkout.outbound;
    let traffic = Traffic::start(Duration::from_millis(5), move || async move {
        let (a, b) = versions(gw_port, out).await;
        vec![a.is_some(), b.is_some()]
    });

    // A change in the folder reaches the gateway and both sidecars.
    dir.write("shop.yaml", &manifests(gw_port, web.port, pay_in, 2));
    let took = wait_for(gw_port, checkout.outbound, "2", Duration::from_secs(5)).await;
    eprintln!("version 2 everywhere {took:?} after the folder changed");

    // The control plane dies; traffic goes on. A change made meanwhile
    // reaches every proxy within 5 s of the control plane's return.
    drop(control);
    tokio::time::sleep(Duration::from_secs(2)).await;
    dir.write("shop.yaml", &manifests(gw_port, web.port, pay_in, 3));
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (a, b) = versions(gw_port, checkout.outbound).await;
    assert_eq!(
        (a.as_deref(), b.as_deref()),
        (Some("2"), Some("2")),
        "still the last snapshot"
    );
    let control = Control::start(&dir, &listen, &[]);
    let took = wait_for(gw_port, checkout.outbound, "3", Duration::from_secs(5)).await;
    eprintln!("version 3 everywhere {took:?} after the control plane came back");

    let (ok, failed) = traffic.stop().await;
    eprintln!("{ok} calls succeeded, {failed} failed");
    assert!(ok > 100, "{ok} calls");
    assert_eq!(
        failed, 0,
        "calls failed while the configuration changed and the control plane came and went"
    );

    // A gateway restarted while the control plane is down serves its cache.
    drop(control);
    drop(gateway);
    let gateway = Gateway::launch(&gw_logs, &gw_flags).await;
    let (a, _) = versions(gw_port, checkout.outbound).await;
    assert_eq!(
        a.as_deref(),
        Some("3"),
        "the cached snapshot:\n{}",
        gateway.logs()
    );
    assert!(gateway.logs().contains("serving the cached configuration"));
}

#[tokio::test]
async fn a_snapshot_the_proxy_cannot_apply_is_refused_and_reported() {
    use std::sync::Arc;
    use strait_control::index::{Class, Index, Indexed, Published, Scope};
    use strait_control::pb;
    // An in-process control plane, so that it can send what `strait
    // control` itself would refuse to publish (a proxy of another version
    // may refuse what this one accepts).
    let ca_dir = TempDir::new();
    let authority =
        strait_identity::Authority::open_or_create(ca_dir.path(), "cluster.local").expect("ca");
    let tls = strait_identity::service::server_tls(&authority).expect("tls");
    let (publish, current) = tokio::sync::watch::channel(None);
    let service = strait_control::server::ConfigService::new(current);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr").to_string();
    tokio::spawn(strait_identity::service::serve_tls(
        listener,
        pb::config_server::ConfigServer::new(service.clone()),
        tls,
    ));

    let dir = TempDir::new();
    let gw_port = free_port();
    let web = echo("web", "web-0");
    dir.write("shop.yaml", &manifests(gw_port, web.port, free_port(), 1));
    let good = Arc::new(strait_control::folder::Folder::new(dir.path()).index(None));
    assert!(good.problems.is_empty(), "{:?}", good.problems);
    let good_version = good.version.clone();
    let _ = publish.send(Some(Arc::new(Published::next(None, good.clone()))));
    let cache = dir
        .path()
        .with_extension("cache.json")
        .to_string_lossy()
        .into_owned();
    let root = ca_dir.path().join("ca.crt");
    let flags = [
        "--control",
        &addr,
        "--trust-bundle",
        root.to_str().expect("utf-8 path"),
        "--cache",
        &cache,
    ];
    let gateway = Gateway::launch(&dir, &flags).await;
    let r = send(get(gw_port, "shop.example.com", "/"))
        .await
        .unwrap_or_else(|e| panic!("answer: {e}\n{}", gateway.logs()));
    assert_eq!(r.headers["x-version"], "1");

    // An object added that the proxy's schema refuses.
    let mut objects = good.objects.clone();
    let entry = pb::Entry {
        key: "HTTPRoute/default/bad".into(),
        file: "routes/bad.yaml".into(),
        doc: 1,
        prefix: String::new(),
        json: r#"{"apiVersion":"gateway.networking.k8s.io/v1","kind":"HTTPRoute","metadata":{"name":"bad"},"spec":{"parentRefs":[{"name":"gw"}],"rules":[{"backendRefs":[{"name":"web","port":"eighty"}]}]}}"#.into(),
    };
    objects.insert(
        entry.key.clone(),
        Arc::new(Indexed {
            entry,
            scope: Scope::Everyone,
            class: Class::Fixed(Scope::Everyone),
        }),
    );
    let bad = Arc::new(Index {
        version: "broken".into(),
        objects,
        problems: Vec::new(),
    });
    let _ = publish.send(Some(Arc::new(Published::next(Some(&good), bad))));
    let (node, status) = eventually(
        5,
        || format!("no NACK: {:?}", service.status()),
        || {
            std::future::ready(
                service
                    .status()
                    .into_iter()
                    .find(|(_, s)| s.role == "gateway" && s.refused.is_some()),
            )
        },
    )
    .await;
    let (version, reason) = status.refused.clone().expect("refused");
    eprintln!("{node} refused {version}: {reason}");
    assert_eq!(version, "broken");
    assert!(
        reason.contains("routes/bad.yaml") && reason.contains("port"),
        "{reason}"
    );
    assert_eq!(status.accepted.as_deref(), Some(good_version.as_str()));
    // The proxy keeps what it had.
    let r = send(get(gw_port, "shop.example.com", "/"))
        .await
        .expect("answer");
    assert_eq!(r.headers["x-version"], "1", "{}", gateway.logs());
}

#[tokio::test]
async fn a_bad_object_is_refused_alone_and_each_proxy_gets_only_what_it_needs() {
    let dir = TempDir::new();
    let gw_port = free_port();
    let web = echo("web", "web-0");
    let pay = echo("pay", "pay-0");
    let shop = |version| manifests(gw_port, web.port, pay.port, version) + &token_secret("web");
    dir.write("shop.yaml", &shop(1));
    let admin = free_port();
    let admin_flag = format!("127.0.0.1:{admin}");
    let control = Control::start(&dir, "127.0.0.1:0", &["--admin", &admin_flag]);
    let bundle = control.ca_dir.join("trust-bundle.pem");
    let bundle = bundle.to_str().expect("utf-8 path");
    let caches = TempDir::new();
    let (gw_cache, sidecar_cache) = (
        caches.path().join("gw.json"),
        caches.path().join("checkout.json"),
    );
    let flags = |cache: &std::path::Path| {
        let cache = cache.to_string_lossy().into_owned();
        [
            "--control",
            control.addr.as_str(),
            "--trust-bundle",
            bundle,
            "--cache",
        ]
        .map(str::to_string)
        .into_iter()
        .chain([cache])
        .collect::<Vec<_>>()
    };
    let gw_flags = flags(&gw_cache);
    let gw_flags: Vec<&str> = gw_flags.iter().map(String::as_str).collect();
    let gw_logs = TempDir::new();
    let _gateway = Gateway::launch(&gw_logs, &gw_flags).await;
    let sc_flags = flags(&sidecar_cache);
    let sc_flags: Vec<&str> = sc_flags.iter().map(String::as_str).collect();
    let app = echo("checkout", "checkout-0");
    let checkout =
        Sidecar::launch(&dir, "default/checkout", app.port, free_port(), &sc_flags).await;
    wait_for(gw_port, checkout.outbound, "1", Duration::from_secs(5)).await;

    // A route whose port is not a number, and a good change, at once: the
    // good change arrives everywhere; the bad route is reported alone.
    dir.write("bad.yaml", "apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {name: bad}\nspec: {parentRefs: [{name: gw}], rules: [{backendRefs: [{name: web, port: eighty}]}]}\n");
    dir.write("shop.yaml", &shop(2));
    wait_for(gw_port, checkout.outbound, "2", Duration::from_secs(5)).await;
    let status = send(get(admin, "admin", "/status"))
        .await
        .expect("status")
        .json();
    let problems = status["problems"].to_string();
    assert!(
        problems.contains("bad.yaml:1: spec.rules[0].backendRefs[0].port"),
        "{status}"
    );
    let version = status["version"].as_str().expect("version");
    let proxies = status["proxies"].as_object().expect("proxies");
    assert_eq!(proxies.len(), 2, "{status}");
    for (node, p) in proxies {
        assert_eq!(p["connected"], true, "{node}: {status}");
        assert_eq!(p["accepted"], version, "{node}: {status}");
    }

    // What each proxy was sent, from its cache: the gateway its Gateway
    // and routes but no mesh policy; the sidecar the Services and mesh
    // route but no Gateway; and neither the ServiceAccount token.
    let keys = |path: &std::path::Path| -> Vec<String> {
        let cached: serde_json::Value =
            serde_json::from_slice(&std::fs::read(path).expect("cache")).expect("json");
        cached["objects"]
            .as_array()
            .expect("objects")
            .iter()
            .map(|o| o[0].as_str().expect("key").to_string())
            .collect()
    };
    let (gw, sc) = (keys(&gw_cache), keys(&sidecar_cache));
    eprintln!("gateway: {gw:?}\nsidecar: {sc:?}");
    assert!(gw.contains(&"Gateway/default/gw".to_string()), "{gw:?}");
    assert!(gw.contains(&"HTTPRoute/default/web".to_string()), "{gw:?}");
    assert!(!gw.contains(&"HTTPRoute/default/pay".to_string()), "{gw:?}");
    assert!(sc.contains(&"HTTPRoute/default/pay".to_string()), "{sc:?}");
    assert!(sc.contains(&"Service/default/web".to_string()), "{sc:?}");
    assert!(!sc.iter().any(|k| k.starts_with("Gateway/")), "{sc:?}");
    for k in gw.iter().chain(&sc) {
        assert!(!k.starts_with("Secret/"), "{k} was sent to a proxy");
    }
}

/// Asks the control plane at `addr` for `node`'s view as `role`, showing
/// `token`: the first part of its configuration, or why it was refused.
async fn ask(
    addr: &str,
    bundle: &[rustls::pki_types::CertificateDer<'static>],
    token: Option<&str>,
    role: &str,
    node: &str,
) -> Result<strait_control::pb::Update, tonic::Status> {
    use futures_util::StreamExt as _;
    use strait_control::pb;
    let (channel, origin) =
        strait_identity::service::connect_control(addr, bundle, "cluster.local")
            .await
            .expect("connect");
    let mut client = pb::config_client::ConfigClient::with_origin(channel, origin);
    let hello = pb::ProxyMessage {
        kind: Some(pb::proxy_message::Kind::Hello(pb::Hello {
            node: node.into(),
            role: role.into(),
            version: String::new(),
        })),
    };
    let mut request = tonic::Request::new(
        futures_util::stream::iter([hello]).chain(futures_util::stream::pending()),
    );
    if let Some(t) = token {
        request.metadata_mut().insert(
            "authorization",
            format!("Bearer {t}").parse().expect("header"),
        );
    }
    let mut updates = client.stream(request).await?.into_inner();
    updates
        .message()
        .await?
        .ok_or_else(|| tonic::Status::unknown("stream ended"))
}

#[tokio::test]
async fn only_a_gateway_gets_the_gateway_s_view_and_a_sidecar_only_its_namespace() {
    let dir = TempDir::new();
    dir.write(
        "shop.yaml",
        &manifests(free_port(), free_port(), free_port(), 1),
    );
    dir.write(
        "tokens.yaml",
        &(token_secret("web")
            + "---\napiVersion: v1\nkind: Secret\nmetadata: {name: gw-token, namespace: strait-system, annotations: {kubernetes.io/service-account.name: strait-gateway}}\ntype: kubernetes.io/service-account-token\nstringData: {token: tok-gateway}\n"),
    );
    let control = Control::start(&dir, "127.0.0.1:0", &["--authenticate-proxies"]);
    let pem = std::fs::read(control.ca_dir.join("trust-bundle.pem")).expect("bundle");
    let bundle = strait_identity::ca::certs(&pem, "bundle").expect("pem");
    let addr = control.addr.as_str();

    let got = ask(addr, &bundle, Some("tok-gateway"), "gateway", "gw-0")
        .await
        .expect("the gateway's view");
    assert!(
        got.entries.iter().any(|e| e.key == "Gateway/default/gw"),
        "{got:?}"
    );
    let got = ask(addr, &bundle, Some("tok-web"), "sidecar", "shop/web-0")
        .await
        .expect("its own namespace");
    assert!(!got.entries.iter().any(|e| e.key.starts_with("Gateway/")));

    use tonic::Code::{PermissionDenied, Unauthenticated};
    for (token, role, node, code, why) in [
        (None, "gateway", "gw-0", Unauthenticated, "no token"),
        (
            Some("bogus"),
            "sidecar",
            "shop/web-0",
            Unauthenticated,
            "unknown token",
        ),
        (
            Some("tok-web"),
            "gateway",
            "gw-0",
            PermissionDenied,
            "ns/shop/sa/web",
        ),
        (
            Some("tok-web"),
            "sidecar",
            "payments/pay-0",
            PermissionDenied,
            "ns/shop/sa/web",
        ),
    ] {
        let refused = ask(addr, &bundle, token, role, node).await.expect_err(why);
        assert_eq!(refused.code(), code, "{why}: {refused:?}");
        assert!(
            refused.message().contains(why) || code == Unauthenticated,
            "{refused:?}"
        );
    }
}
