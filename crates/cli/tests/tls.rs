//! HTTPS termination through the real binary: certificates from Secrets,
//! chosen by SNI, ALPN h2 and http/1.1, 421 for a host of another listener,
//! and a listener with a bad Secret refused alone.

mod common;
use base64::Engine;
use bytes::Bytes;
use common::*;
use http_body_util::{BodyExt, Empty};
use rustls::pki_types::CertificateDer;

struct Cert {
    der: CertificateDer<'static>,
    pem: String,
    secret_yaml: String,
}

fn cert(name: &str, secret: &str) -> Cert {
    let ck = rcgen::generate_simple_self_signed(vec![name.to_string()]).expect("cert");
    let b64 = |s: String| base64::engine::general_purpose::STANDARD.encode(s);
    Cert {
        der: ck.cert.der().clone(),
        pem: ck.cert.pem(),
        secret_yaml: format!(
            "---\napiVersion: v1\nkind: Secret\nmetadata: {{name: {secret}}}\ntype: kubernetes.io/tls\ndata:\n  tls.crt: {}\n  tls.key: {}\n",
            b64(ck.cert.pem()),
            b64(ck.signing_key.serialize_pem())
        ),
    }
}

struct Answer {
    status: u16,
    body: Bytes,
    peer: CertificateDer<'static>,
    alpn: Option<Vec<u8>>,
    location: Option<String>,
    reason: Option<String>,
}

struct Target<'a> {
    port: u16,
    sni: &'a str,
    host: &'a str,
    path: &'a str,
    h2: bool,
}

fn target<'a>(port: u16, sni: &'a str, host: &'a str, h2: bool) -> Target<'a> {
    Target {
        port,
        sni,
        host,
        path: "/",
        h2,
    }
}

async fn tls_get(t: Target<'_>, roots: &[&Cert]) -> Answer {
    let Target {
        port,
        sni,
        host,
        path,
        h2,
    } = t;
    let roots: Vec<CertificateDer<'static>> = roots.iter().map(|c| c.der.clone()).collect();
    let alpn: &[u8] = if h2 { b"h2" } else { b"http/1.1" };
    let tls = tls_connect(port, sni, &roots, &[alpn], None)
        .await
        .expect("handshake");
    let (_, session) = tls.get_ref();
    let peer = session.peer_certificates().expect("peer cert")[0]
        .clone()
        .into_owned();
    let alpn = session.alpn_protocol().map(|p| p.to_vec());
    let io = tls;
    let req = |version| {
        http::Request::get(format!("https://{host}{path}"))
            .version(version)
            .header("host", host)
            .body(Empty::<Bytes>::new())
            .expect("request")
    };
    let response = if h2 {
        let mut send = h2_over(io).await;
        let mut r = req(http::Version::HTTP_2);
        r.headers_mut().remove("host");
        send.send_request(r).await.expect("response")
    } else {
        let mut send = h1_over(io).await;
        send.send_request(req(http::Version::HTTP_11))
            .await
            .expect("response")
    };
    let status = response.status().as_u16();
    let header = |name: &str| {
        let value = response.headers().get(name)?;
        Some(value.to_str().unwrap_or("").to_string())
    };
    let (location, reason) = (header("location"), header("x-strait-reason"));
    let body = response
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes();
    Answer {
        status,
        body,
        peer,
        alpn,
        location,
        reason,
    }
}

#[tokio::test]
async fn https_termination_by_sni() {
    let backend = echo("a", "a-0");
    let (port, bad_port) = (free_port(), free_port());
    let shop = cert("shop.example.com", "shop-cert");
    let wild = cert("*.example.com", "wild-cert");
    let dir = TempDir::new();
    let mut yaml = format!(
        r#"apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata: {{name: strait}}
spec: {{controllerName: strait.dev/gateway-controller}}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {{name: gw}}
spec:
  gatewayClassName: strait
  listeners:
  - {{name: shop, port: {port}, protocol: HTTPS, hostname: shop.example.com, tls: {{certificateRefs: [{{name: shop-cert}}]}}}}
  - {{name: wild, port: {port}, protocol: HTTPS, hostname: "*.example.com", tls: {{certificateRefs: [{{name: wild-cert}}]}}}}
  - {{name: broken, port: {bad_port}, protocol: HTTPS, tls: {{certificateRefs: [{{name: missing}}]}}}}
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{name: r}}
spec:
  parentRefs: [{{name: gw}}]
  rules:
  - filters:
    - type: RequestRedirect
      requestRedirect: {{path: {{type: ReplaceFullPath, replaceFullPath: /moved}}}}
    matches: [{{path: {{value: /old}}}}]
  - backendRefs: [{{name: a, port: 80}}]
"#
    );
    yaml += &service_yaml("a", backend.port, None);
    yaml += &shop.secret_yaml;
    yaml += &wild.secret_yaml;
    dir.write("all.yaml", &yaml);
    let gw = Gateway::start(&dir).await;
    let roots = [&shop, &wild];

    let a = tls_get(
        target(port, "shop.example.com", "shop.example.com", false),
        &roots,
    )
    .await;
    assert_eq!(a.status, 200);
    assert_eq!(a.peer, shop.der, "the exact-name certificate");
    assert_eq!(a.alpn.as_deref(), Some(&b"http/1.1"[..]));
    let body: serde_json::Value = serde_json::from_slice(&a.body).expect("json");
    assert_eq!(
        body["headers"]["X-Forwarded-Proto"],
        serde_json::json!(["https"])
    );

    let a = tls_get(
        target(port, "api.example.com", "api.example.com", true),
        &roots,
    )
    .await;
    assert_eq!(a.status, 200);
    assert_eq!(a.peer, wild.der, "the wildcard certificate");
    assert_eq!(a.alpn.as_deref(), Some(&b"h2"[..]));

    let a = tls_get(
        target(port, "api.example.com", "shop.example.com", false),
        &roots,
    )
    .await;
    assert_eq!(a.status, 421, "host of another listener than the SNI's");
    assert_eq!(a.reason.as_deref(), Some("misdirected"));
    assert!(!a.body.is_empty());

    // A client offering only http/1.0 (curl --http1.0) is served.
    let roots_der: Vec<CertificateDer<'static>> = roots.iter().map(|c| c.der.clone()).collect();
    let tls = tls_connect(port, "shop.example.com", &roots_der, &[b"http/1.0"], None)
        .await
        .expect("an http/1.0-only client completes the handshake");
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"http/1.0"[..]));

    let old = Target {
        path: "/old",
        ..target(port, "shop.example.com", "shop.example.com", false)
    };
    let a = tls_get(old, &roots).await;
    assert_eq!(a.status, 302);
    assert_eq!(
        a.location.as_deref(),
        Some(format!("https://shop.example.com:{port}/moved").as_str())
    );

    // The bad listener is refused alone: its port is not open, the rest serves.
    assert!(std::net::TcpStream::connect(("127.0.0.1", bad_port)).is_err());
    let config = gw.config().await;
    let broken = &config["snapshot"]["gateways"][0]["listeners"][2]["conditions"][0];
    assert_eq!(broken["type"], "ResolvedRefs");
    assert_eq!(broken["status"], false);
    assert!(
        gw.logs().contains("Secret default/missing not found"),
        "{}",
        gw.logs()
    );
}

#[tokio::test]
async fn certificates_reload_without_closing_connections() {
    let backend = echo("a", "a-0");
    let port = free_port();
    let first = cert("shop.example.com", "shop-cert");
    let second = cert("shop.example.com", "shop-cert");
    let dir = TempDir::new();
    let base = format!(
        r#"apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata: {{name: strait}}
spec: {{controllerName: strait.dev/gateway-controller}}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {{name: gw}}
spec:
  gatewayClassName: strait
  listeners:
  - {{name: shop, port: {port}, protocol: HTTPS, tls: {{certificateRefs: [{{name: shop-cert}}]}}}}
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{name: r}}
spec:
  parentRefs: [{{name: gw}}]
  rules: [{{backendRefs: [{{name: a, port: 80}}]}}]
{}"#,
        service_yaml("a", backend.port, None)
    );
    dir.write("base.yaml", &base);
    dir.write("secret.yaml", &first.secret_yaml);
    let gw = Gateway::start(&dir).await;
    let roots = [&first, &second];

    // A connection opened before the change...
    let tls = tls_connect(
        port,
        "shop.example.com",
        std::slice::from_ref(&first.der),
        &[],
        None,
    )
    .await
    .expect("handshake");
    let mut send = h1_over(tls).await;
    let get = || {
        http::Request::get("/")
            .header("host", "shop.example.com")
            .body(Empty::<Bytes>::new())
            .expect("request")
    };
    assert_eq!(send.send_request(get()).await.expect("first").status(), 200);

    dir.write("secret.yaml", &second.secret_yaml);
    gw.wait_generation(2).await;

    // ...keeps working, and new connections get the new certificate.
    assert_eq!(
        send.send_request(get())
            .await
            .expect("same connection")
            .status(),
        200
    );
    let a = tls_get(
        target(port, "shop.example.com", "shop.example.com", false),
        &roots,
    )
    .await;
    assert_eq!(a.status, 200);
    assert_eq!(a.peer, second.der);
}

/// A CA, a client certificate it signed, and one it did not.
struct Pki {
    ca_pem: String,
    trusted: (Vec<CertificateDer<'static>>, String),
    stranger: (Vec<CertificateDer<'static>>, String),
}

fn pki() -> Pki {
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca =
        rcgen::CertifiedIssuer::self_signed(ca_params, rcgen::KeyPair::generate().expect("key"))
            .expect("ca");
    let client_key = rcgen::KeyPair::generate().expect("key");
    let client = rcgen::CertificateParams::new(vec!["client.example.com".to_string()])
        .expect("params")
        .signed_by(&client_key, &ca)
        .expect("client cert");
    let stranger =
        rcgen::generate_simple_self_signed(vec!["client.example.com".to_string()]).expect("cert");
    Pki {
        ca_pem: ca.pem(),
        trusted: (vec![client.der().clone()], client_key.serialize_pem()),
        stranger: (
            vec![stranger.cert.der().clone()],
            stranger.signing_key.serialize_pem(),
        ),
    }
}

async fn mtls_get(
    port: u16,
    server: &Cert,
    client: Option<&(Vec<CertificateDer<'static>>, String)>,
) -> Result<(u16, String), String> {
    let client = client.map(|(chain, key)| (chain.as_slice(), key.as_str()));
    let tls = tls_connect(
        port,
        "secure.example.com",
        std::slice::from_ref(&server.der),
        &[],
        client,
    )
    .await?;
    let mut send = h1_over(tls).await;
    // A client's own x-forwarded-client-cert is never believed.
    let req = http::Request::get("/")
        .header("host", "secure.example.com")
        .header(
            "x-forwarded-client-cert",
            "Hash=forged;URI=spiffe://x/ns/a/sa/admin",
        )
        .body(Empty::<Bytes>::new())
        .expect("req");
    let r = send.send_request(req).await.map_err(|e| e.to_string())?;
    let status = r.status().as_u16();
    let body = r.into_body().collect().await.map_err(|e| e.to_string())?;
    Ok((
        status,
        String::from_utf8_lossy(&body.to_bytes()).into_owned(),
    ))
}

#[tokio::test]
async fn frontend_validation_requires_a_client_certificate_from_the_ca() {
    let backend = echo("a", "a-0");
    let port = free_port();
    let server = cert("secure.example.com", "server-cert");
    let pki = pki();
    let indented: String = pki.ca_pem.lines().map(|l| format!("    {l}\n")).collect();
    let yaml = format!(
        r#"apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata: {{name: strait}}
spec: {{controllerName: strait.dev/gateway-controller}}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {{name: gw}}
spec:
  gatewayClassName: strait
  listeners:
  - name: secure
    port: {port}
    protocol: HTTPS
    tls:
      certificateRefs: [{{name: server-cert}}]
      frontendValidation:
        caCertificateRefs: [{{kind: ConfigMap, name: client-ca}}]
---
apiVersion: v1
kind: ConfigMap
metadata: {{name: client-ca}}
data:
  ca.crt: |
{indented}---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{name: r}}
spec:
  parentRefs: [{{name: gw}}]
  rules: [{{backendRefs: [{{name: a, port: 80}}]}}]
{}{}"#,
        service_yaml("a", backend.port, None),
        server.secret_yaml
    );
    let dir = TempDir::new();
    dir.write("all.yaml", &yaml);
    let _gw = Gateway::start(&dir).await;
    let (status, body) = mtls_get(port, &server, Some(&pki.trusted))
        .await
        .expect("answer");
    assert_eq!(status, 200);
    // The backend is told the certificate the listener verified, as
    // Envoy's x-forwarded-client-cert, and only that.
    let seen: serde_json::Value = serde_json::from_str(&body).expect("JSON");
    let xfcc = &seen["headers"]["X-Forwarded-Client-Cert"];
    assert_eq!(xfcc.as_array().map(Vec::len), Some(1), "{seen}");
    let xfcc = xfcc[0].as_str().unwrap_or_default();
    assert!(
        xfcc.starts_with("Hash=")
            && xfcc.contains(";Subject=\"")
            && xfcc.ends_with(";DNS=client.example.com"),
        "{xfcc}"
    );
    assert!(!xfcc.contains("forged"), "{xfcc}");
    assert!(
        mtls_get(port, &server, None).await.is_err(),
        "no client certificate"
    );
    assert!(
        mtls_get(port, &server, Some(&pki.stranger)).await.is_err(),
        "a certificate from another CA"
    );
}

/// A Secret with the certificate of one key and another key.
fn mismatched(name: &str, secret: &str) -> String {
    let one = rcgen::generate_simple_self_signed(vec![name.to_string()]).expect("cert");
    let other = rcgen::KeyPair::generate().expect("key");
    secret_yaml(secret, one.cert.pem(), other.serialize_pem())
}

/// A Secret whose certificate expired in 2021.
fn expired(name: &str, secret: &str) -> String {
    let key = rcgen::KeyPair::generate().expect("key");
    let mut params = rcgen::CertificateParams::new(vec![name.to_string()]).expect("params");
    params.not_before = rcgen::date_time_ymd(2020, 1, 1);
    params.not_after = rcgen::date_time_ymd(2021, 1, 1);
    let cert = params.self_signed(&key).expect("cert");
    secret_yaml(secret, cert.pem(), key.serialize_pem())
}

fn secret_yaml(secret: &str, crt: String, key: String) -> String {
    let b64 = |s: String| base64::engine::general_purpose::STANDARD.encode(s);
    format!(
        "---\napiVersion: v1\nkind: Secret\nmetadata: {{name: {secret}}}\ntype: kubernetes.io/tls\ndata:\n  tls.crt: {}\n  tls.key: {}\n",
        b64(crt),
        b64(key)
    )
}

/// Expired and mismatched certificates are refused when the configuration
/// is read, with the file and field; the good listener on the same port
/// serves; plaintext, truncated and oversized ClientHellos are closed and
/// counted, and the port keeps serving.
#[tokio::test]
async fn bad_certificates_refused_at_load_and_bad_handshakes_counted() {
    let backend = echo("a", "a-0");
    let port = free_port();
    let shop = cert("shop.example.com", "shop-cert");
    let dir = TempDir::new();
    let mut yaml = gateway_with(&format!(
        r#"  - {{name: shop, port: {port}, protocol: HTTPS, hostname: shop.example.com, tls: {{certificateRefs: [{{name: shop-cert}}]}}}}
  - {{name: old, port: {port}, protocol: HTTPS, hostname: old.example.com, tls: {{certificateRefs: [{{name: old-cert}}]}}}}
  - {{name: odd, port: {port}, protocol: HTTPS, hostname: odd.example.com, tls: {{certificateRefs: [{{name: odd-cert}}]}}}}
"#
    ));
    yaml += r#"---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: r}
spec:
  parentRefs: [{name: gw}]
  rules: [{backendRefs: [{name: a, port: 80}]}]
"#;
    yaml += &service_yaml("a", backend.port, None);
    yaml += &shop.secret_yaml;
    yaml += &expired("old.example.com", "old-cert");
    yaml += &mismatched("odd.example.com", "odd-cert");
    dir.write("all.yaml", &yaml);

    let (code, out) = check(&dir);
    assert_ne!(code, Some(0), "{out}");
    let file = dir.path().join("all.yaml");
    let file = file.display();
    for expected in [
        format!("{file}:2: spec.listeners[1].tls: Secret default/old-cert ({file}:7): tls.crt: the certificate expired on"),
        format!("{file}:2: spec.listeners[2].tls: Secret default/odd-cert ({file}:8): tls.key does not belong to the certificate"),
    ] {
        assert!(out.contains(&expected), "missing {expected:?} in:\n{out}");
    }

    let gw = Gateway::start(&dir).await;
    let a = tls_get(
        target(port, "shop.example.com", "shop.example.com", false),
        &[&shop],
    )
    .await;
    assert_eq!(a.status, 200);
    let config = gw.config().await;
    for i in [1, 2] {
        let c = &config["snapshot"]["gateways"][0]["listeners"][i]["conditions"][0];
        assert_eq!(c["type"], "ResolvedRefs", "{config:#}");
        assert_eq!(c["status"], false, "{config:#}");
    }
    // Refused listeners do not serve their names: the handshake fails.
    assert!(tls_connect(port, "old.example.com", &[], &[], None)
        .await
        .is_err());

    assert_bad_hellos_refused(&gw, port).await;
    let a = tls_get(
        target(port, "shop.example.com", "shop.example.com", true),
        &[&shop],
    )
    .await;
    assert_eq!(a.status, 200, "still serving after bad handshakes");
}

/// curl, as users run it: `--resolve` for several SNI names, each answered
/// with its own certificate (curl trusts only that one), HTTP/2 by ALPN,
/// and 421 for a Host of another listener. Skipped, loudly, without curl.
#[tokio::test]
async fn curl_resolve_gets_the_right_certificate_per_name() {
    if std::process::Command::new("curl")
        .arg("--version")
        .output()
        .is_err()
    {
        eprintln!("SKIPPED curl_resolve_gets_the_right_certificate_per_name: curl is not installed (.ci/run installs it)");
        return;
    }
    let backend = echo("a", "a-0");
    let port = free_port();
    let shop = cert("shop.example.com", "shop-cert");
    let wild = cert("*.example.com", "wild-cert");
    let dir = TempDir::new();
    let mut yaml = gateway_with(&format!(
        r#"  - {{name: shop, port: {port}, protocol: HTTPS, hostname: shop.example.com, tls: {{certificateRefs: [{{name: shop-cert}}]}}}}
  - {{name: wild, port: {port}, protocol: HTTPS, hostname: "*.example.com", tls: {{certificateRefs: [{{name: wild-cert}}]}}}}
"#
    ));
    yaml += r#"---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: r}
spec:
  parentRefs: [{name: gw}]
  rules: [{backendRefs: [{name: a, port: 80}]}]
"#;
    yaml += &service_yaml("a", backend.port, None);
    yaml += &shop.secret_yaml;
    yaml += &wild.secret_yaml;
    dir.write("all.yaml", &yaml);
    let _gw = Gateway::start(&dir).await;
    let pem_dir = TempDir::new();
    std::fs::write(pem_dir.path().join("shop.pem"), &shop.pem).expect("pem");
    std::fs::write(pem_dir.path().join("wild.pem"), &wild.pem).expect("pem");
    let curl = |name: &str, ca: &str, extra: &[&str]| {
        let out = std::process::Command::new("curl")
            .args([
                "-sS",
                "-o",
                "/dev/null",
                "-w",
                "%{http_code} %{http_version}",
            ])
            .arg("--resolve")
            .arg(format!("{name}:{port}:127.0.0.1"))
            .arg("--cacert")
            .arg(pem_dir.path().join(ca))
            .args(extra)
            .arg(format!("https://{name}:{port}/"))
            .output()
            .expect("curl runs");
        (
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    assert_eq!(
        curl("shop.example.com", "shop.pem", &["--http1.1"]).0,
        "200 1.1"
    );
    assert_eq!(curl("api.example.com", "wild.pem", &["--http2"]).0, "200 2");
    // Trusting only the other certificate fails: each name got its own.
    let (out, err) = curl("shop.example.com", "wild.pem", &[]);
    assert!(out.starts_with("000"), "{out} {err}");
    let (out, err) = curl("api.example.com", "shop.pem", &[]);
    assert!(out.starts_with("000"), "{out} {err}");
    // SNI api.example.com (the wildcard listener), Host of the shop listener.
    let (out, _) = curl(
        "api.example.com",
        "wild.pem",
        &["-H", "Host: shop.example.com"],
    );
    assert!(out.starts_with("421"), "{out}");
}
