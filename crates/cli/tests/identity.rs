//! Workload identity through real processes: `strait control` (the mesh
//! CA) and sidecars that get their certificates from it and speak mutual
//! TLS to each other. What the backend sees (the caller's SPIFFE ID, as
//! the inbound sidecar proved it), and what is refused: a CSR for another
//! identity, a client certificate from another CA or expired, a server
//! with the wrong identity, plaintext to a STRICT workload.

mod common;
use common::identity::*;
use common::*;
use rustls_pki_types::ServerName;
use std::time::Duration;
use strait_identity::{Authority, Credentials, MeshTls, SpiffeId};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A plain HTTP GET straight to a sidecar's inbound listener, as a
/// client outside the mesh would make it.
async fn plaintext_get(inbound: u16, headers: &[(&str, &str)]) -> Result<Resp, String> {
    let mut req =
        http::Request::get(format!("http://127.0.0.1:{inbound}/plain")).header("host", "payment");
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    // A connection of its own: an accepted one stays accepted.
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http();
    send_with(&client, req.body(Default::default()).expect("request")).await
}

/// An HTTP/2-over-mTLS GET to a sidecar's inbound listener with `creds`,
/// trusting `bundle`: `Err` when the sidecar refuses.
async fn mtls_get(
    inbound: u16,
    creds: &Credentials,
    bundle: &[rustls_pki_types::CertificateDer<'static>],
) -> Result<u16, String> {
    let tls = MeshTls::new(creds, bundle)?;
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", inbound))
        .await
        .map_err(|e| e.to_string())?;
    let name = ServerName::try_from("payment").map_err(|e| e.to_string())?;
    let mut stream = tokio_rustls::TlsConnector::from(tls.client_http1.clone())
        .connect(name, tcp)
        .await
        .map_err(|e| format!("handshake: {e}"))?;
    // TLS 1.3: a refused client certificate shows at the first read.
    stream
        .write_all(b"GET /x HTTP/1.1\r\nhost: payment\r\nconnection: close\r\n\r\n")
        .await
        .map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut out))
        .await
        .map_err(|_| "no answer".to_string())?
        .map_err(|e| e.to_string())?;
    let text = String::from_utf8_lossy(&out);
    text.split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| format!("no HTTP answer: {text:?}"))
}

/// Sidecars of two callers, `checkout-api` and `cart` (only their
/// outbound side is used: no app is called behind them).
async fn callers(dir: &TempDir, control: &Control) -> (Sidecar, Sidecar) {
    let checkout = sidecar(dir, control, "checkout-api", free_port(), free_port()).await;
    let cart = sidecar(dir, control, "cart", free_port(), free_port()).await;
    (checkout, cart)
}

#[tokio::test]
async fn sidecars_speak_mtls_and_the_backend_sees_the_callers_identity() {
    let dir = TempDir::new();
    let payment_in = free_port();
    let ledger_in = free_port();
    dir.write(
        "shop.yaml",
        &(meshed_service("payment", "payment", payment_in)
            // ledger claims to run as `ledger`, but its sidecar is `cart`.
            + &meshed_service("ledger", "ledger", ledger_in)
            + &token_secret("checkout-api")
            + &token_secret("payment")
            + &token_secret("cart")),
    );
    let control = Control::start(&dir, "127.0.0.1:0", &["--cert-ttl", "1h"]);
    let payment_app = echo("payment", "payment-0");
    let ledger_app = echo("ledger", "ledger-0");
    let checkout_app = echo("checkout-api", "checkout-0");
    let payment = sidecar(&dir, &control, "payment", payment_app.port, payment_in).await;
    let _impostor = sidecar(&dir, &control, "cart", ledger_app.port, ledger_in).await;
    let checkout = sidecar(
        &dir,
        &control,
        "checkout-api",
        checkout_app.port,
        free_port(),
    )
    .await;

    // Through both sidecars: mutual TLS, and the backend sees who called.
    let r = call(checkout.outbound, "http://payment/pay", &[]).await;
    assert_eq!(r.status, 200, "{}", payment.logs());
    let json = r.json();
    assert_eq!(
        json["headers"]["X-Forwarded-Client-Cert"][0],
        "By=spiffe://cluster.local/ns/shop/sa/payment;URI=spiffe://cluster.local/ns/shop/sa/checkout-api",
        "{json}"
    );
    let m = payment.metrics().await;
    assert!(
        metric(
            &m,
            "strait_mesh_inbound_connections_total{tls=\"mtls\",result=\"accepted\",peer=\"spiffe://cluster.local/ns/shop/sa/checkout-api\"}"
        ) >= 1.0,
        "the caller's identity is in the telemetry: {m}"
    );
    assert!(
        metric(&m, "strait_identity_certificate_expiry_seconds") > 3000.0,
        "{m}"
    );

    // A server that cannot prove the destination's identity: 502.
    let r = call(checkout.outbound, "http://ledger/", &[]).await;
    assert_eq!(
        r.service(),
        "<502 connect_failed>",
        "the impostor was accepted"
    );
    assert!(
        checkout
            .logs()
            .contains("expected spiffe://cluster.local/ns/shop/sa/ledger"),
        "{}",
        checkout.logs()
    );

    // PERMISSIVE (the default): plaintext is served, counted apart, and a
    // client cannot forge the identity header.
    let r = plaintext_get(
        payment_in,
        &[("x-forwarded-client-cert", "URI=spiffe://forged")],
    )
    .await
    .expect("plaintext answer");
    assert_eq!(r.status, 200);
    assert!(
        r.json()["headers"].get("X-Forwarded-Client-Cert").is_none(),
        "forged header passed"
    );
    let m = payment.metrics().await;
    assert!(
        metric(
            &m,
            "strait_mesh_inbound_connections_total{tls=\"plaintext\",result=\"accepted\""
        ) >= 1.0
    );

    // Client certificates the mesh does not accept.
    let bundle = strait_identity::ca::certs(
        &std::fs::read(control.ca_dir.join("trust-bundle.pem")).expect("bundle"),
        "bundle",
    )
    .expect("pem");
    let who = SpiffeId::new("cluster.local", "shop", "checkout-api");
    let (other_cert, other_key) = strait_identity::ca::new_root("cluster.local").expect("root");
    let other = Authority::from_pem("cluster.local", &other_cert, &other_key, None).expect("ca");
    let (key, csr) = strait_identity::new_key_and_csr(&who).expect("csr");
    let chain = other
        .sign(&csr, &who, Duration::from_secs(600))
        .expect("signed");
    let stranger = Credentials::new(&who, chain, &key).expect("creds");
    let refused = mtls_get(payment_in, &stranger, &bundle).await;
    assert!(
        refused.is_err(),
        "a certificate of another CA was accepted: {refused:?}"
    );

    let ca_cert = std::fs::read_to_string(control.ca_dir.join("ca.crt")).expect("ca.crt");
    let ca_key = std::fs::read_to_string(control.ca_dir.join("ca.key")).expect("ca.key");
    let ours = Authority::from_pem("cluster.local", &ca_cert, &ca_key, None).expect("ca");
    let (key, csr) = strait_identity::new_key_and_csr(&who).expect("csr");
    let chain = ours
        .sign(&csr, &who, Duration::from_secs(600))
        .expect("signed");
    let good = Credentials::new(&who, chain, &key).expect("creds");
    assert_eq!(
        mtls_get(payment_in, &good, &bundle).await,
        Ok(200),
        "the control case"
    );
    let expired = expired_credentials(&ca_cert, &ca_key, &who);
    let refused = mtls_get(payment_in, &expired, &bundle).await;
    assert!(
        refused.is_err(),
        "an expired certificate was accepted: {refused:?}"
    );

    // A CSR for another identity than the token's.
    let ca_addr = control.addr.as_str();
    let payment_id = SpiffeId::new("cluster.local", "shop", "payment");
    let refused =
        strait_identity::service::fetch(ca_addr, &bundle, "tok-checkout-api", &payment_id).await;
    let why = refused.expect_err("a CSR for someone else is refused");
    assert!(
        why.contains("PermissionDenied") && why.contains("sa/payment"),
        "{why}"
    );
    let unknown =
        strait_identity::service::fetch(ca_addr, &bundle, "tok-nobody", &payment_id).await;
    assert!(unknown.err().is_some_and(|e| e.contains("Unauthenticated")));

    // STRICT: plaintext is refused; mutual TLS still goes through.
    dir.write(
        "strict.yaml",
        r#"apiVersion: policy.strait.dev/v1alpha1
kind: PeerAuthentication
metadata: {name: payment-strict, namespace: shop}
spec:
  mode: STRICT
  targetRefs: [{group: apps, kind: Deployment, name: payment}]
"#,
    );
    eventually(
        10,
        || "plaintext still served under STRICT".into(),
        || async { plaintext_get(payment_in, &[]).await.err() },
    )
    .await;
    let r = call(checkout.outbound, "http://payment/pay", &[]).await;
    assert_eq!(r.status, 200);
    let m = payment.metrics().await;
    assert!(
        metric(
            &m,
            "strait_mesh_inbound_connections_total{tls=\"plaintext\",result=\"refused\""
        ) >= 1.0,
        "{m}"
    );
}

/// A certificate for `who` from the real CA that expired an hour ago.
fn expired_credentials(ca_cert: &str, ca_key: &str, who: &SpiffeId) -> Credentials {
    use rcgen::{
        CertificateParams, DistinguishedName, ExtendedKeyUsagePurpose, Issuer, KeyPair, SanType,
    };
    let issuer =
        Issuer::from_ca_cert_pem(ca_cert, KeyPair::from_pem(ca_key).expect("key")).expect("issuer");
    let key = KeyPair::generate().expect("key");
    let mut p = CertificateParams::default();
    p.distinguished_name = DistinguishedName::new();
    p.subject_alt_names = vec![SanType::URI(who.to_string().try_into().expect("uri"))];
    p.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock");
    let epoch = rcgen::date_time_ymd(1970, 1, 1);
    p.not_before = epoch + (now - Duration::from_secs(7200));
    p.not_after = epoch + (now - Duration::from_secs(3600));
    let cert = p.signed_by(&key, &issuer).expect("signed");
    Credentials::new(who, vec![cert.der().clone()], &key).expect("creds")
}

#[tokio::test]
async fn only_checkout_may_call_payment_and_a_denial_names_the_policy() {
    let dir = TempDir::new();
    let payment_in = free_port();
    dir.write(
        "shop.yaml",
        &(meshed_service("payment", "payment", payment_in)
            + &token_secret("checkout-api")
            + &token_secret("payment")
            + &token_secret("cart")
            + r#"---
apiVersion: policy.strait.dev/v1alpha1
kind: AuthorizationPolicy
metadata: {name: payment-callers, namespace: shop}
spec:
  targetRefs: [{group: "", kind: Service, name: payment}]
  rules: [{from: [{serviceAccounts: [checkout-api]}]}]
---
apiVersion: policy.strait.dev/v1alpha1
kind: AuthorizationPolicy
metadata: {name: no-deletes, namespace: shop}
spec:
  action: DENY
  rules: [{to: [{methods: [DELETE]}]}]
"#),
    );
    let control = Control::start(&dir, "127.0.0.1:0", &[]);
    let payment_app = echo("payment", "payment-0");
    let payment = sidecar(&dir, &control, "payment", payment_app.port, payment_in).await;
    let (checkout, cart) = callers(&dir, &control).await;

    let r = call(checkout.outbound, "http://payment/pay", &[]).await;
    assert_eq!(r.status, 200, "{}", payment.logs());
    for _ in 0..3 {
        let r = call(cart.outbound, "http://payment/pay", &[]).await;
        assert_eq!(r.status, 403);
        assert_eq!(r.headers["x-strait-reason"], "authz_denied");
        assert_eq!(r.headers["x-strait-authz"], "shop/payment-callers");
        let body = String::from_utf8_lossy(&r.body).into_owned();
        assert!(
            body.contains("no rule of AuthorizationPolicy shop/payment-callers"),
            "{body}"
        );
    }
    // A caller outside the mesh proves no identity: denied too.
    let r = plaintext_get(payment_in, &[]).await.expect("answer");
    assert_eq!(r.service(), "<403 authz_denied>");
    // DENY wins over ALLOW, and says which rule.
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", checkout.outbound))
        .await
        .expect("connect");
    let mut send = h1_over::<_, http_body_util::Empty<bytes::Bytes>>(tcp).await;
    let r = send
        .send_request(
            http::Request::delete("http://payment/pay")
                .body(http_body_util::Empty::new())
                .expect("request"),
        )
        .await
        .expect("answer");
    assert_eq!(r.status(), 403);
    assert_eq!(r.headers()["x-strait-authz"], "shop/no-deletes rule 0");

    // A gRPC caller gets PERMISSION_DENIED, naming the policy; checkout's
    // gRPC call goes through.
    let grpc = |outbound: u16| async move {
        let tcp = tokio::net::TcpStream::connect(("127.0.0.1", outbound))
            .await
            .expect("connect");
        let channel = strait_identity::service::H2(h2_over(tcp).await);
        let mut client = strait_echo::pb::grpcecho::grpc_echo_client::GrpcEchoClient::with_origin(
            channel,
            http::Uri::from_static("http://payment.shop"),
        );
        client.echo(strait_echo::pb::grpcecho::EchoRequest {}).await
    };
    let status = grpc(cart.outbound).await.expect_err("denied");
    assert_eq!(status.code(), tonic::Code::PermissionDenied, "{status:?}");
    assert_eq!(
        status.message(),
        "strait: permission denied by shop/payment-callers"
    );
    assert!(grpc(checkout.outbound).await.is_ok());

    let m = payment.metrics().await;
    assert_eq!(
        metric(
            &m,
            "strait_authz_decisions_total{policy=\"shop/payment-callers\",decision=\"deny\"}"
        ),
        5.0,
        "{m}"
    );
    assert!(metric(&m, "strait_authz_decisions_total{policy=\"shop/payment-callers rule 0\",decision=\"allow\"}") >= 1.0);
    assert!(payment.logs().contains("call denied"), "{}", payment.logs());
}

/// A `CONNECT host:port` tunnel through a sidecar's outbound listener,
/// then one HTTP/1.1 request inside it: the status of the tunnel and
/// whatever came back through it.
async fn through_tunnel(outbound: u16, target: &str) -> (String, String) {
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", outbound))
        .await
        .expect("connect");
    s.write_all(format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n").as_bytes())
        .await
        .expect("write");
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match s.read(&mut byte).await {
            Ok(1) => head.push(byte[0]),
            _ => break,
        }
    }
    let status = String::from_utf8_lossy(&head)
        .lines()
        .next()
        .unwrap_or("")
        .to_string();
    let _ = s
        .write_all(b"GET /tunnel HTTP/1.1\r\nHost: ledger\r\nConnection: close\r\n\r\n")
        .await;
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut out)).await;
    (status, String::from_utf8_lossy(&out).into_owned())
}

#[tokio::test]
async fn tcp_between_sidecars_is_mutual_tls_and_authorized_too() {
    let dir = TempDir::new();
    let ledger_in = free_port();
    dir.write(
        "shop.yaml",
        &(meshed_service("ledger", "ledger", ledger_in)
            + &token_secret("checkout-api")
            + &token_secret("ledger")
            + &token_secret("cart")
            + r#"---
apiVersion: policy.strait.dev/v1alpha1
kind: PeerAuthentication
metadata: {name: strict, namespace: shop}
spec: {mode: STRICT}
---
apiVersion: policy.strait.dev/v1alpha1
kind: AuthorizationPolicy
metadata: {name: ledger-callers, namespace: shop}
spec:
  targetRefs: [{group: apps, kind: Deployment, name: ledger}]
  rules: [{from: [{serviceAccounts: [checkout-api]}]}]
"#),
    );
    let control = Control::start(&dir, "127.0.0.1:0", &[]);
    let ledger_app = echo("ledger", "ledger-0");
    let ledger = sidecar(&dir, &control, "ledger", ledger_app.port, ledger_in).await;
    let (checkout, cart) = callers(&dir, &control).await;

    // STRICT: the tunnel reaches ledger only because it is mutual TLS.
    let (status, answer) = through_tunnel(checkout.outbound, "ledger.shop:80").await;
    assert!(status.contains(" 200"), "{status}");
    assert!(
        answer.contains("\"service\":\"ledger\""),
        "{answer}\n{}",
        ledger.logs()
    );
    // cart's sidecar proves who it is, and ledger's policy refuses it.
    let (status, answer) = through_tunnel(cart.outbound, "ledger.shop:80").await;
    assert!(status.contains(" 200"), "{status}");
    assert!(answer.is_empty(), "a denied stream carried {answer}");
    let m = ledger.metrics().await;
    let route = format!("route=\"inbound|shop/ledger:{}\"", ledger_app.port);
    assert!(
        m.lines()
            .any(|l| l.contains(&route) && l.contains("result=\"closed\"")),
        "{m}"
    );
    assert!(
        m.lines()
            .any(|l| l.contains(&route) && l.contains("result=\"denied\"")),
        "{m}"
    );
    assert!(
        metric(
            &m,
            "strait_mesh_inbound_connections_total{tls=\"mtls\",result=\"accepted\""
        ) >= 2.0
    );
    assert!(
        metric(
            &m,
            "strait_authz_decisions_total{policy=\"shop/ledger-callers\",decision=\"deny\"}"
        ) >= 1.0,
        "{m}"
    );
}

#[tokio::test]
async fn a_cert_manager_secret_can_be_the_ca() {
    use rcgen::{
        BasicConstraints, CertificateParams, CertifiedIssuer, DistinguishedName, IsCa, KeyPair,
        KeyUsagePurpose,
    };
    let ca_params = |cn: &str, depth: BasicConstraints| {
        let mut p = CertificateParams::default();
        p.distinguished_name = DistinguishedName::new();
        p.distinguished_name.push(rcgen::DnType::CommonName, cn);
        p.is_ca = IsCa::Ca(depth);
        p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        p
    };
    let root = CertifiedIssuer::self_signed(
        ca_params("root", BasicConstraints::Unconstrained),
        KeyPair::generate().expect("key"),
    )
    .expect("root");
    let mid_key = KeyPair::generate().expect("key");
    let mid = ca_params("mesh", BasicConstraints::Constrained(0))
        .signed_by(&mid_key, &root)
        .expect("intermediate");
    let indent = |pem: &str| {
        pem.lines()
            .map(|l| format!("    {l}\n"))
            .collect::<String>()
    };
    let dir = TempDir::new();
    dir.write(
        "ca.yaml",
        &(format!(
            "apiVersion: v1\nkind: Secret\nmetadata: {{name: mesh-ca, namespace: strait-system}}\ntype: kubernetes.io/tls\nstringData:\n  tls.crt: |\n{}  tls.key: |\n{}  ca.crt: |\n{}",
            indent(&mid.pem()),
            indent(&mid_key.serialize_pem()),
            indent(&root.pem())
        ) + &token_secret("payment")),
    );
    let control = Control::start(
        &dir,
        "127.0.0.1:0",
        &["--ca-secret", "strait-system/mesh-ca"],
    );
    let bundle = strait_identity::ca::certs(
        &std::fs::read(control.ca_dir.join("trust-bundle.pem")).expect("bundle"),
        "bundle",
    )
    .expect("pem");
    assert_eq!(
        bundle,
        vec![root.der().clone()],
        "proxies trust cert-manager's root"
    );
    let payment = SpiffeId::new("cluster.local", "shop", "payment");
    let (creds, got_bundle) =
        strait_identity::service::fetch(&control.addr, &bundle, "tok-payment", &payment)
            .await
            .expect("signed by the intermediate");
    assert_eq!(creds.chain.len(), 2);
    assert_eq!(
        &creds.chain[1],
        mid.der(),
        "the intermediate travels with the leaf"
    );
    assert_eq!(got_bundle, bundle);
}

/// A workload's authorization service is told who called, as the
/// workload's sidecar proved it with mutual TLS (the source's
/// `principal`, Envoy's field): a remembered decision answers only the
/// same caller.
#[tokio::test]
async fn a_workload_s_authorization_service_is_told_the_caller_s_proven_identity() {
    let authz = common::ext_authz::Service::start().await;
    let dir = TempDir::new();
    let payment_in = free_port();
    dir.write(
        "shop.yaml",
        &(meshed_service("payment", "payment", payment_in)
            + &token_secret("checkout-api")
            + &token_secret("payment")
            + &token_secret("cart")
            + &authz.shop_yaml()
            + r#"---
apiVersion: policy.strait.dev/v1alpha1
kind: SecurityPolicy
metadata: {name: payment-authz, namespace: shop}
spec:
  targetRefs: [{group: apps, kind: Deployment, name: payment}]
  extAuth:
    grpc: {backendRef: {name: authz, port: 9000}}
    headersToExtAuth: [authorization]
    cache: {ttl: 60s}
"#),
    );
    let control = Control::start(&dir, "127.0.0.1:0", &[]);
    let payment_app = echo("payment", "payment-0");
    let payment = sidecar(&dir, &control, "payment", payment_app.port, payment_in).await;
    let (checkout, cart) = callers(&dir, &control).await;

    let good = [("authorization", "Bearer good")];
    for _ in 0..2 {
        let r = call(checkout.outbound, "http://payment/pay", &good).await;
        assert_eq!(r.status, 200, "{}", payment.logs());
        assert_eq!(r.json()["headers"]["X-Authz-User"][0], "alice");
    }
    let r = call(cart.outbound, "http://payment/pay", &good).await;
    assert_eq!(r.status, 200, "{}", payment.logs());
    let asked = authz.take();
    let principals: Vec<&str> = asked.iter().map(|a| a.principal.as_str()).collect();
    assert_eq!(
        principals,
        [
            "spiffe://cluster.local/ns/shop/sa/checkout-api",
            "spiffe://cluster.local/ns/shop/sa/cart"
        ],
        "asked once per proven caller: {asked:?}"
    );
    let r = call(
        cart.outbound,
        "http://payment/pay",
        &[("authorization", "Bearer nope")],
    )
    .await;
    assert_eq!(r.status, 403);
    assert_eq!(r.reason(), Some("ext_authz_denied"));
}

/// A workload's RateLimitPolicy counts each caller by the identity its
/// sidecar proved with mutual TLS: checkout-api's calls use up
/// checkout-api's count only, and no header a caller writes changes it.
#[tokio::test]
async fn a_workload_s_rate_limit_counts_each_proven_caller_apart() {
    let dir = TempDir::new();
    let payment_in = free_port();
    dir.write(
        "shop.yaml",
        &(meshed_service("payment", "payment", payment_in)
            + &token_secret("checkout-api")
            + &token_secret("payment")
            + &token_secret("cart")
            + r#"---
apiVersion: policy.strait.dev/v1alpha1
kind: RateLimitPolicy
metadata: {name: payment-callers, namespace: shop}
spec:
  targetRefs: [{group: apps, kind: Deployment, name: payment}]
  local:
    rules:
    - name: per-caller
      clientSelectors: [{sourceIdentity: {type: Distinct}}]
      limit: {requests: 2, unit: Hour}
"#),
    );
    let control = Control::start(&dir, "127.0.0.1:0", &[]);
    let payment_app = echo("payment", "payment-0");
    let payment = sidecar(&dir, &control, "payment", payment_app.port, payment_in).await;
    let (checkout, cart) = callers(&dir, &control).await;
    for _ in 0..2 {
        let r = call(checkout.outbound, "http://payment/pay", &[]).await;
        assert_eq!(r.status, 200, "{}", payment.logs());
    }
    let forged = [(
        "x-forwarded-client-cert",
        "By=x;URI=spiffe://cluster.local/ns/shop/sa/cart",
    )];
    let r = call(checkout.outbound, "http://payment/pay", &forged).await;
    assert_eq!((r.status, r.reason()), (429, Some("rate_limited")));
    assert_eq!(
        r.headers["x-strait-rate-limit"],
        "shop/payment-callers per-caller"
    );
    let r = call(cart.outbound, "http://payment/pay", &[]).await;
    assert_eq!(r.status, 200, "cart has its own count");
    let metrics = payment.metrics().await;
    assert!(
        metrics
            .lines()
            .any(|l| l.contains("key=\"source_identity\"")
                && l.contains("result=\"limited\"")
                && l.ends_with(" 1")),
        "{metrics}"
    );
}
