//! `strait demo`: the shop's edge from `examples/shop`, on this machine.

use anyhow::Context;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

const FILES: [(&str, &str); 3] = [
    (
        "gateway.yaml",
        include_str!("../../../examples/shop/gateway.yaml"),
    ),
    (
        "routes.yaml",
        include_str!("../../../examples/shop/routes.yaml"),
    ),
    (
        "services.yaml",
        include_str!("../../../examples/shop/services.yaml"),
    ),
];

/// The echo backends the example's EndpointSlices point at.
const BACKENDS: [(&str, &str, u16); 3] = [
    ("web-frontend", "web-frontend-7d4f9", 9101),
    ("product-api", "product-api-5c8b2", 9102),
    ("product-api", "product-api-9x3k1", 9103),
];

pub async fn run() -> anyhow::Result<()> {
    let dir = std::env::temp_dir().join(format!("strait-demo-{}", std::process::id()));
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    for (name, text) in FILES {
        std::fs::write(dir.join(name), text)?;
    }
    // TLS at the edge, as the reference scenario has it: a certificate made
    // now for shop.example.com, and an HTTPS listener beside the HTTP one.
    let ca_file = dir.join("shop.example.com.pem");
    let (secret, cert_pem) = demo_certificate()?;
    std::fs::write(&ca_file, cert_pem)?;
    std::fs::write(dir.join("tls.yaml"), secret)?;
    let gateway = format!("{}{HTTPS_LISTENER}", FILES[0].1);
    std::fs::write(dir.join("gateway.yaml"), gateway)?;
    for (service, pod, port) in BACKENDS {
        let addr = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port);
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("starting the {service} backend on {addr}"))?;
        let info = Arc::new(strait_echo::EchoInfo::new("shop", service, pod));
        tokio::spawn(strait_echo::serve(listener, info));
    }
    let admin = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 9901);
    println!(
        "strait demo: the shop's edge on http://127.0.0.1:8080 and https://127.0.0.1:8443 (config in {})\n\n\
         Try:\n\
         \x20 curl -s -H 'Host: shop.example.com' http://127.0.0.1:8080/            # web-frontend\n\
         \x20 curl -s --cacert {} --resolve shop.example.com:8443:127.0.0.1 https://shop.example.com:8443/api/products  # TLS terminated at the edge\n\
         \x20 curl -s -H 'Host: shop.example.com' http://127.0.0.1:8080/api/products # product-api, two pods in turn\n\
         \x20 curl -s -H 'Host: other.example.com' http://127.0.0.1:8080/ -i        # 404: no route for that host\n\
         \x20 curl -s http://127.0.0.1:9901/metrics                                 # Prometheus metrics\n\
         \x20 curl -s http://127.0.0.1:9901/config                                  # the active routing table\n\n\
         Edit the files in {} and watch strait reload them. Ctrl-C stops.\n",
        dir.display(),
        ca_file.display(),
        dir.display()
    );
    let opts = strait_proxy::GatewayOptions {
        config_dir: dir.clone(),
        bind_address: IpAddr::V4(Ipv4Addr::LOCALHOST),
        admin: Some(admin),
        compile: strait_route::CompileOptions::default(),
        drain_timeout: Duration::from_secs(5),
        stream_limits: Default::default(),
        sidecar: None,
    };
    let result = strait_proxy::run(opts, std::future::pending()).await;
    let _ = std::fs::remove_dir_all(&dir);
    result
}

/// Appended to the example Gateway's listener list.
const HTTPS_LISTENER: &str = "  - name: https
    port: 8443
    protocol: HTTPS
    hostname: shop.example.com
    tls:
      certificateRefs:
      - name: shop-tls
";

/// A self-signed certificate for shop.example.com: the Secret manifest and
/// the certificate's PEM (for curl's --cacert).
fn demo_certificate() -> anyhow::Result<(String, String)> {
    use base64::Engine;
    let ck = rcgen::generate_simple_self_signed(vec!["shop.example.com".to_string()])?;
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    let cert_pem = ck.cert.pem();
    let secret = format!(
        "apiVersion: v1\nkind: Secret\nmetadata: {{name: shop-tls, namespace: shop}}\ntype: kubernetes.io/tls\ndata:\n  tls.crt: {}\n  tls.key: {}\n",
        b64(&cert_pem),
        b64(&ck.signing_key.serialize_pem())
    );
    Ok((secret, cert_pem))
}
