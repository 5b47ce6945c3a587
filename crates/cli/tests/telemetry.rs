//! Telemetry through real processes: a gateway in front of `checkout`,
//! whose sidecar calls `payment`'s over mutual TLS. Each hop counts the
//! call by caller and callee (the gateway, the caller's sidecar and the
//! callee's), the gateway writes an access log line, the workloads never
//! see the sidecars' peer header (nor can forge it), and strait's own
//! failures are warnings even with no access log.

mod common;
use common::identity::*;
use common::*;

/// The series of `name` whose labels include every one of `labels`.
fn series(metrics: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    metrics
        .lines()
        .filter(|l| l.starts_with(&format!("{name}{{")))
        .filter(|l| {
            labels
                .iter()
                .all(|(k, v)| l.contains(&format!("{k}=\"{v}\"")))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

struct Shop {
    dir: TempDir,
    _control: Control,
    _apps: Vec<Echo>,
    gateway: Gateway,
    port: u16,
    checkout: Sidecar,
    payment: Sidecar,
    access_log: std::path::PathBuf,
}

async fn shop() -> Shop {
    let dir = TempDir::new();
    let (checkout_in, payment_in, port) = (free_port(), free_port(), free_port());
    dir.write(
        "shop.yaml",
        &(gateway_yaml(port)
            + &meshed_service("checkout", "checkout-api", checkout_in)
            + &meshed_service("payment", "payment", payment_in)
            // Its sidecar's inbound port is closed: calls fail to connect.
            + &meshed_service("ledger", "ledger", free_port())
            + &token_secret("checkout-api")
            + &token_secret("payment")),
    );
    dir.write(
        "route.yaml",
        r#"apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: checkout}
spec:
  parentRefs: [{name: gw}]
  rules:
  - matches: [{path: {type: PathPrefix, value: /checkout}}]
    backendRefs: [{name: checkout, namespace: shop, port: 80}]
"#,
    );
    // The route's backend is in namespace shop.
    dir.write(
        "grant.yaml",
        r#"apiVersion: gateway.networking.k8s.io/v1beta1
kind: ReferenceGrant
metadata: {name: from-default, namespace: shop}
spec:
  from: [{group: gateway.networking.k8s.io, kind: HTTPRoute, namespace: default}]
  to: [{group: "", kind: Service}]
"#,
    );
    let control = Control::start(&dir, "127.0.0.1:0", &["--cert-ttl", "1h"]);
    let checkout_app = echo("checkout", "checkout-0");
    let payment_app = echo("payment", "payment-0");
    let checkout = sidecar(
        &dir,
        &control,
        "checkout-api",
        checkout_app.port,
        checkout_in,
    )
    .await;
    let payment = sidecar(&dir, &control, "payment", payment_app.port, payment_in).await;
    let access_log = dir.path().with_extension("access.log");
    let log = access_log.to_string_lossy().into_owned();
    let gateway = Gateway::start_with(&dir, &["--access-log", &log]).await;
    Shop {
        dir,
        _control: control,
        _apps: vec![checkout_app, payment_app],
        gateway,
        port,
        checkout,
        payment,
        access_log,
    }
}

#[tokio::test]
async fn every_hop_counts_the_call_by_caller_and_callee() {
    let shop = shop().await;
    let r = send(get(shop.port, "shop.example.com", "/checkout/cart")).await;
    let r = r.expect("gateway answers");
    assert_eq!(r.status, 200, "{}", shop.gateway.logs());
    assert!(
        !r.headers.contains_key("x-strait-peer"),
        "the client sees no peer header: {:?}",
        r.headers
    );
    // checkout's workload calls payment through its sidecar, trying to
    // pass for another workload.
    let r = call(
        shop.checkout.outbound,
        "http://payment.shop/pay",
        &[("x-strait-peer", "shop/admin")],
    )
    .await;
    assert_eq!(r.status, 200, "{}", shop.checkout.logs());
    let echoed = r.json();
    assert!(
        echoed["headers"].get("X-Strait-Peer").is_none()
            && echoed["headers"].get("x-strait-peer").is_none(),
        "the app sees no peer header: {echoed}"
    );
    assert!(!r.headers.contains_key("x-strait-peer"), "{:?}", r.headers);

    let gateway = shop.gateway.metrics().await;
    let at_gateway = [
        ("reporter", "gateway"),
        ("source_workload", "unknown"),
        ("destination_workload", "checkout-api"),
        ("destination_workload_namespace", "shop"),
        ("destination_service_name", "checkout"),
        ("destination_service_namespace", "shop"),
        ("route", "default/checkout"),
        ("connection_security_policy", "none"),
        ("code", "200"),
    ];
    assert_eq!(
        series(&gateway, "strait_requests_total", &at_gateway),
        1.0,
        "{gateway}"
    );
    let checkout = shop.checkout.metrics().await;
    let inbound = [
        ("reporter", "destination"),
        ("destination_workload", "checkout-api"),
        ("source_principal", "unknown"),
        ("code", "200"),
    ];
    assert_eq!(
        series(&checkout, "strait_requests_total", &inbound),
        1.0,
        "{checkout}"
    );
    let edge = [
        ("source_workload", "checkout-api"),
        ("source_workload_namespace", "shop"),
        (
            "source_principal",
            "spiffe://cluster.local/ns/shop/sa/checkout-api",
        ),
        ("destination_workload", "payment"),
        ("destination_service_name", "payment"),
        ("connection_security_policy", "mutual_tls"),
        ("code", "200"),
    ];
    let outbound = [&edge[..], &[("reporter", "source")]].concat();
    assert_eq!(
        series(&checkout, "strait_requests_total", &outbound),
        1.0,
        "{checkout}"
    );
    let payment = shop.payment.metrics().await;
    // The callee's side does not know the Service the caller named.
    let at_callee: Vec<_> = edge
        .iter()
        .filter(|(k, _)| *k != "destination_service_name")
        .copied()
        .chain([("reporter", "destination")])
        .collect();
    assert_eq!(
        series(&payment, "strait_requests_total", &at_callee),
        1.0,
        "the forged peer header was not believed: {payment}"
    );
    assert_eq!(
        series(
            &payment,
            "strait_request_duration_seconds_count",
            &at_callee
        ),
        1.0
    );
    let sent = r.body.len() as f64;
    assert_eq!(
        series(&payment, "strait_response_bytes_sum", &at_callee),
        sent,
        "{payment}"
    );
}

#[tokio::test]
async fn the_gateway_writes_an_access_log_line_per_request() {
    let shop = shop().await;
    let r = send(request_with_id(shop.port, "/checkout/items?page=2")).await;
    let r = r.expect("gateway answers");
    assert_eq!(r.status, 200);
    let r404 = send(get(shop.port, "shop.example.com", "/nowhere"))
        .await
        .expect("gateway answers");
    assert_eq!(r404.status, 404);
    let lines: Vec<serde_json::Value> = eventually(
        5,
        || format!("no access log lines in {}", shop.access_log.display()),
        || async {
            let text = std::fs::read_to_string(&shop.access_log).ok()?;
            let lines: Vec<serde_json::Value> = text
                .lines()
                .map(|l| serde_json::from_str(l).expect("a JSON line"))
                .collect();
            (lines.len() >= 2).then_some(lines)
        },
    )
    .await;
    assert_eq!(lines.len(), 2, "{lines:?}");
    let ok = &lines[0];
    for (field, value) in [
        ("method", "GET"),
        ("path", "/checkout/items?page=2"),
        ("authority", "shop.example.com"),
        ("protocol", "HTTP/1.1"),
        ("reporter", "gateway"),
        ("route", "default/checkout"),
        ("destination_workload", "shop/checkout-api"),
        ("destination_service", "shop/checkout"),
        ("request_id", "req-42"),
        ("user_agent", "telemetry-test"),
    ] {
        assert_eq!(ok[field], value, "{field} in {ok}");
    }
    assert_eq!(ok["status"], 200);
    assert_eq!(ok["bytes_sent"], r.body.len() as u64, "{ok}");
    assert!(ok["duration_ms"].as_f64() > Some(0.0), "{ok}");
    assert!(ok["upstream_ms"].as_f64() > Some(0.0), "{ok}");
    assert!(ok["start_time"].as_str().is_some_and(|t| t.ends_with('Z')));
    assert!(ok["upstream_host"]
        .as_str()
        .is_some_and(|h| h.starts_with("127.0.0.1:")));
    assert!(ok["client_address"]
        .as_str()
        .is_some_and(|h| h.starts_with("127.0.0.1:")));
    let missed = &lines[1];
    assert_eq!(missed["status"], 404, "{missed}");
    assert_eq!(missed["reason"], "no_route", "{missed}");
    assert_eq!(missed["route"], "-", "{missed}");
    drop(shop.dir);
}

fn request_with_id(port: u16, path: &str) -> http::Request<http_body_util::Full<bytes::Bytes>> {
    let mut req = get(port, "shop.example.com", path);
    let headers = req.headers_mut();
    headers.insert("x-request-id", http::HeaderValue::from_static("req-42"));
    headers.insert(
        "user-agent",
        http::HeaderValue::from_static("telemetry-test"),
    );
    req
}

#[tokio::test]
async fn strait_s_own_failures_are_warnings_without_an_access_log() {
    let shop = shop().await;
    let r = call(shop.checkout.outbound, "http://ledger.shop/", &[]).await;
    assert_eq!(r.status, 502, "{}", shop.checkout.logs());
    let logs = eventually(
        5,
        || shop.checkout.logs(),
        || async {
            let logs = shop.checkout.logs();
            logs.contains("strait answered a request itself")
                .then_some(logs)
        },
    )
    .await;
    let line = logs
        .lines()
        .find(|l| l.contains("strait answered a request itself"))
        .expect("the warning");
    assert!(
        line.contains("WARN") && line.contains("status=502") && line.contains("connect_failed"),
        "{line}"
    );
    let checkout = shop.checkout.metrics().await;
    let failed = [
        ("reporter", "source"),
        ("destination_service_name", "ledger"),
        ("reason", "connect_failed"),
        ("code", "502"),
    ];
    assert_eq!(
        series(&checkout, "strait_requests_total", &failed),
        1.0,
        "{checkout}"
    );
}
