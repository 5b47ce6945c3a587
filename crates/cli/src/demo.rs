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
        "strait demo: the shop's edge on http://127.0.0.1:8080 (config in {})\n\n\
         Try:\n\
         \x20 curl -s -H 'Host: shop.example.com' http://127.0.0.1:8080/            # web-frontend\n\
         \x20 curl -s -H 'Host: shop.example.com' http://127.0.0.1:8080/api/products # product-api, two pods in turn\n\
         \x20 curl -s -H 'Host: other.example.com' http://127.0.0.1:8080/ -i        # 404: no route for that host\n\
         \x20 curl -s http://127.0.0.1:9901/metrics                                 # Prometheus metrics\n\
         \x20 curl -s http://127.0.0.1:9901/config                                  # the active routing table\n\n\
         Edit the files in {} and watch strait reload them. Ctrl-C stops.\n",
        dir.display(),
        dir.display()
    );
    let opts = strait_proxy::GatewayOptions {
        config_dir: dir.clone(),
        bind_address: IpAddr::V4(Ipv4Addr::LOCALHOST),
        admin: Some(admin),
        compile: strait_route::CompileOptions::default(),
        drain_timeout: Duration::from_secs(5),
    };
    let result = strait_proxy::run(opts, std::future::pending()).await;
    let _ = std::fs::remove_dir_all(&dir);
    result
}
