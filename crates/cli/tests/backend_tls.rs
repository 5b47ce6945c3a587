//! BackendTLSPolicy through the real binary: strait originates TLS to a
//! backend that terminates it, sends the policy's hostname as SNI, and
//! verifies the backend's certificate against the policy's CA and names.
//! A certificate for another name, or from another CA, fails the request
//! (502); a policy that cannot be honoured makes the backend invalid (500)
//! and is reported with its file and field — never plain text instead.

mod common;
use bytes::Bytes;
use common::*;
use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use std::sync::Arc;

struct Ca {
    pem: String,
    issuer: rcgen::CertifiedIssuer<'static, rcgen::KeyPair>,
}

fn ca() -> Ca {
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let issuer =
        rcgen::CertifiedIssuer::self_signed(params, rcgen::KeyPair::generate().expect("key"))
            .expect("ca");
    Ca {
        pem: issuer.pem(),
        issuer,
    }
}

/// An HTTPS backend with a certificate for `name` signed by `ca`; it
/// answers `sni=<the SNI it was asked for>`.
async fn https_backend(ca: &Ca, name: &str) -> u16 {
    use rustls::pki_types::pem::PemObject;
    let key = rcgen::KeyPair::generate().expect("key");
    let cert = rcgen::CertificateParams::new(vec![name.to_string()])
        .expect("params")
        .signed_by(&key, &ca.issuer)
        .expect("cert");
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_no_client_auth()
        .with_single_cert(
            vec![cert.der().clone()],
            rustls::pki_types::PrivateKeyDer::from_pem_slice(key.serialize_pem().as_bytes())
                .expect("key"),
        )
        .expect("config");
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(stream).await else {
                    return;
                };
                let sni = tls.get_ref().1.server_name().unwrap_or("-").to_string();
                let svc = service_fn(move |_req| {
                    let body = format!("sni={sni}");
                    async move {
                        Ok::<_, std::convert::Infallible>(hyper::Response::new(Full::new(
                            Bytes::from(body),
                        )))
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(tls), svc)
                    .await;
            });
        }
    });
    port
}

fn policy(name: &str, service: &str, ca_map: &str, hostname: &str, sans: &[&str]) -> String {
    let sans = if sans.is_empty() {
        String::new()
    } else {
        let list: Vec<String> = sans
            .iter()
            .map(|h| format!("{{type: Hostname, hostname: {h}}}"))
            .collect();
        format!("\n    subjectAltNames: [{}]", list.join(", "))
    };
    format!(
        r#"---
apiVersion: gateway.networking.k8s.io/v1
kind: BackendTLSPolicy
metadata: {{name: {name}}}
spec:
  targetRefs: [{{group: "", kind: Service, name: {service}}}]
  validation:
    caCertificateRefs: [{{group: "", kind: ConfigMap, name: {ca_map}}}]
    hostname: {hostname}{sans}
"#
    )
}

fn ca_map(name: &str, pem: &str) -> String {
    let indented: String = pem.lines().map(|l| format!("    {l}\n")).collect();
    format!("---\napiVersion: v1\nkind: ConfigMap\nmetadata: {{name: {name}}}\ndata:\n  ca.crt: |\n{indented}")
}

#[tokio::test]
async fn backend_tls_policy_verifies_the_backend() {
    let (good_ca, other_ca) = (ca(), ca());
    let right = https_backend(&good_ca, "backend.example.com").await;
    let alt = https_backend(&good_ca, "alt.example.com").await;
    let stranger = https_backend(&other_ca, "backend.example.com").await;
    let port = free_port();
    let dir = TempDir::new();
    let mut yaml = gateway_yaml(port);
    yaml += &ca_map("good-ca", &good_ca.pem);
    for (svc, backend_port, path) in [
        ("right", right, "/right"),
        ("wrong-name", alt, "/wrong-name"),
        ("alt", alt, "/alt"),
        ("stranger", stranger, "/stranger"),
        ("plain", right, "/plain"),
        ("no-ca", right, "/no-ca"),
    ] {
        yaml += &service_yaml(svc, backend_port, None);
        yaml += &prefix_route(svc, path, svc, "");
    }
    yaml += &policy("right", "right", "good-ca", "backend.example.com", &[]);
    yaml += &policy(
        "wrong-name",
        "wrong-name",
        "good-ca",
        "backend.example.com",
        &[],
    );
    yaml += &policy(
        "alt",
        "alt",
        "good-ca",
        "backend.example.com",
        &["alt.example.com"],
    );
    yaml += &policy(
        "stranger",
        "stranger",
        "good-ca",
        "backend.example.com",
        &[],
    );
    yaml += &policy("no-ca", "no-ca", "missing-ca", "backend.example.com", &[]);
    dir.write("all.yaml", &yaml);
    let gw = Gateway::start(&dir).await;

    let call = |path: &'static str| async move {
        send(get(port, "example.com", path))
            .await
            .expect("response")
    };
    let r = call("/right").await;
    assert_eq!(r.status, 200, "{}", gw.logs());
    assert_eq!(
        r.body, "sni=backend.example.com",
        "the policy's hostname is the SNI"
    );
    // A second request reuses the pooled TLS connection.
    assert_eq!(call("/right").await.status, 200);

    let r = call("/alt").await;
    assert_eq!(
        r.status,
        200,
        "a subjectAltName the certificate carries: {}",
        gw.logs()
    );
    assert_eq!(r.body, "sni=backend.example.com");

    assert_eq!(
        call("/wrong-name").await.status,
        502,
        "certificate for another name"
    );
    assert_eq!(
        call("/stranger").await.status,
        502,
        "certificate from another CA"
    );
    assert_eq!(
        call("/plain").await.status,
        502,
        "plain HTTP to a TLS backend"
    );
    assert_eq!(
        call("/no-ca").await.status,
        500,
        "a policy that cannot be honoured"
    );
    assert!(
        gw.logs().contains("NotValidForName") || gw.logs().contains("not valid for name"),
        "the name mismatch is logged:\n{}",
        gw.logs()
    );

    let config = gw.config().await;
    let policies = config["snapshot"]["policies"].as_array().expect("policies");
    let no_ca = policies
        .iter()
        .find(|p| p["name"] == "no-ca")
        .expect("no-ca status");
    let conditions = &no_ca["parents"][0]["conditions"];
    assert_eq!(conditions[0]["type"], "Accepted", "{no_ca:#}");
    assert_eq!(conditions[0]["status"], false, "{no_ca:#}");
    assert_eq!(
        conditions[1]["reason"], "InvalidCACertificateRef",
        "{no_ca:#}"
    );
    let right = policies
        .iter()
        .find(|p| p["name"] == "right")
        .expect("right");
    assert_eq!(right["parents"][0]["conditions"][0]["status"], true);

    let (_, out) = check(&dir);
    assert!(
        out.contains("spec.validation: BackendTLSPolicy default/no-ca: ConfigMap default/missing-ca with a ca.crt not found"),
        "{out}"
    );
}
