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

/// Only checkout-api may call payment.
const PAYMENT_CALLERS: &str = r#"---
apiVersion: policy.strait.dev/v1alpha1
kind: AuthorizationPolicy
metadata: {name: payment-callers, namespace: shop}
spec:
  targetRefs: [{group: apps, kind: Deployment, name: payment}]
  action: ALLOW
  rules:
  - from: [{serviceAccounts: [checkout-api]}]
"#;

struct Shop {
    dir: TempDir,
    _control: Control,
    _apps: Vec<Echo>,
    gateway: Gateway,
    port: u16,
    checkout: Sidecar,
    payment: Sidecar,
    payment_in: u16,
    access_log: std::path::PathBuf,
}

async fn shop() -> Shop {
    shop_with(&[], &[], None).await
}

/// The shop with more flags for the gateway and for the sidecars, and
/// checkout's app on `checkout_app` instead of an echo.
async fn shop_with(gateway_flags: &[&str], sidecar_flags: &[&str], relay: Option<u16>) -> Shop {
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
            + &token_secret("payment")
            + PAYMENT_CALLERS),
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
    let at = (&dir, &control, sidecar_flags);
    let app = relay.unwrap_or(checkout_app.port);
    let checkout = flagged_sidecar(at, "checkout-api", app, checkout_in).await;
    let payment = flagged_sidecar(at, "payment", payment_app.port, payment_in).await;
    let access_log = dir.path().with_extension("access.log");
    let log = access_log.to_string_lossy().into_owned();
    let flags = [&["--access-log", log.as_str()], gateway_flags].concat();
    let gateway = Gateway::start_with(&dir, &flags).await;
    Shop {
        dir,
        _control: control,
        _apps: vec![checkout_app, payment_app],
        gateway,
        port,
        checkout,
        payment,
        payment_in,
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
        &[
            ("x-strait-peer", "shop/admin"),
            ("x-strait-peer-service", "shop/vault"),
        ],
    )
    .await;
    assert_eq!(r.status, 200, "{}", shop.checkout.logs());
    let echoed = r.json();
    let mut seen_headers = echoed["headers"]
        .as_object()
        .map(|h| h.keys().map(|k| k.to_ascii_lowercase()).collect::<Vec<_>>())
        .unwrap_or_default();
    seen_headers.retain(|k| k.starts_with("x-strait-peer"));
    assert!(
        seen_headers.is_empty(),
        "the app sees no peer header: {echoed}"
    );
    assert!(!r.headers.contains_key("x-strait-peer"), "{:?}", r.headers);
    // A destination outside the mesh never learns the workload's name.
    let direct = format!("http://127.0.0.1:{}/direct", shop._apps[1].port);
    let outside = call(shop.checkout.outbound, &direct, &[]).await;
    assert_eq!(outside.status, 200, "{}", shop.checkout.logs());
    let seen = outside.json();
    assert!(
        seen["headers"].get("X-Strait-Peer").is_none(),
        "a passthrough call carried the peer header: {seen}"
    );

    let gateway = shop.gateway.metrics().await;
    let at_gateway = [
        ("reporter", "gateway"),
        ("source_workload", "unknown"),
        ("destination_workload", "checkout-api"),
        ("destination_workload_namespace", "shop"),
        ("destination_service_name", "checkout"),
        ("destination_service_namespace", "shop"),
        ("route", "default/checkout"),
        ("rule", "0"),
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
    // The callee's side knows the Service the caller named from its
    // sidecar, not from what the app claimed.
    let at_callee = [&edge[..], &[("reporter", "destination")]].concat();
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
    assert_eq!(ok["rule"], 0, "{ok}");
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

/// A Prometheus server (Debian's `prometheus`) scraping `targets` every
/// second, on a free port, its data in `dir`.
struct Prometheus {
    port: u16,
    _proc: Proc,
}

impl Prometheus {
    fn start(dir: &TempDir, targets: &[u16]) -> Option<Prometheus> {
        let bin = ["/usr/bin/prometheus", "/usr/local/bin/prometheus"]
            .into_iter()
            .find(|p| std::path::Path::new(p).exists())?;
        let targets: Vec<String> = targets.iter().map(|p| format!("'127.0.0.1:{p}'")).collect();
        let config = dir.path().with_extension("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global: {{scrape_interval: 1s}}\nscrape_configs:\n- job_name: strait\n  static_configs: [{{targets: [{}]}}]\n",
                targets.join(", ")
            ),
        )
        .expect("prometheus config");
        let port = free_port();
        let child = std::process::Command::new(bin)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().with_extension("tsdb").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("spawn prometheus");
        Some(Prometheus {
            port,
            _proc: Proc(child),
        })
    }

    /// The value of an instant query's one result, if there is one.
    async fn query(&self, promql: &str) -> Option<f64> {
        let q: String = url_encode(promql);
        let r = send(get(
            self.port,
            "127.0.0.1",
            &format!("/api/v1/query?query={q}"),
        ))
        .await
        .ok()?;
        // Not ready yet (503 while it starts): no answer, ask again.
        let json: serde_json::Value = serde_json::from_slice(&r.body).ok()?;
        let value = &json["data"]["result"][0]["value"][1];
        value.as_str()?.parse().ok()
    }
}

fn url_encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' | b'.' => {
                char::from(b).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[tokio::test]
async fn prometheus_sees_each_edge_as_a_user_s_promql_asks() {
    let shop = shop().await;
    let targets = [shop.gateway.admin, shop.checkout.admin, shop.payment.admin];
    let Some(prometheus) = Prometheus::start(&shop.dir, &targets) else {
        eprintln!("SKIPPED: prometheus is not installed (.ci/run installs Debian's)");
        return;
    };
    // Known traffic: 10 through the gateway to checkout, 20 from checkout
    // to payment, 3 from checkout to a Service whose pod is down, and one
    // call to payment from outside the mesh, which its policy denies.
    for _ in 0..10 {
        let r = send(get(shop.port, "shop.example.com", "/checkout/x")).await;
        assert_eq!(r.map(|r| r.status).ok(), Some(200));
    }
    for _ in 0..20 {
        let r = call(shop.checkout.outbound, "http://payment.shop/pay", &[]).await;
        assert_eq!(r.status, 200);
    }
    for _ in 0..3 {
        let r = call(shop.checkout.outbound, "http://ledger.shop/", &[]).await;
        assert_eq!(r.status, 502);
    }
    let denied = send(get(shop.payment_in, "payment.shop", "/pay")).await;
    assert_eq!(denied.map(|r| r.status).ok(), Some(403));

    let expect = [
        // Every hop of gateway -> checkout, as each reporter saw it.
        (
            r#"sum(strait_requests_total{reporter="gateway",destination_workload="checkout-api",code="200"})"#,
            10.0,
        ),
        (
            r#"sum(strait_requests_total{reporter="destination",destination_workload="checkout-api",source_workload="unknown"})"#,
            10.0,
        ),
        // checkout -> payment, from both sides, over mutual TLS.
        (
            r#"sum(strait_requests_total{reporter="source",source_workload="checkout-api",destination_service_name="payment",connection_security_policy="mutual_tls"})"#,
            20.0,
        ),
        (
            r#"sum(strait_requests_total{reporter="destination",source_workload="checkout-api",destination_workload="payment",code="200"})"#,
            20.0,
        ),
        // Its success rate: all of them.
        (
            r#"sum(strait_requests_total{reporter="source",source_workload="checkout-api",destination_service_name="payment",code!~"5.."}) / sum(strait_requests_total{reporter="source",source_workload="checkout-api",destination_service_name="payment"})"#,
            1.0,
        ),
        // The failing edge, with strait's reason.
        (
            r#"sum(strait_requests_total{reporter="source",destination_service_name="ledger",code="502",reason="connect_failed"})"#,
            3.0,
        ),
        // The denied call, seen by the callee.
        (
            r#"sum(strait_requests_total{reporter="destination",destination_workload="payment",code="403",reason="authz_denied",source_principal="unknown"})"#,
            1.0,
        ),
        // Histograms, as a latency panel reads them.
        (
            r#"sum(strait_request_duration_seconds_count{reporter="source",destination_service_name="payment"})"#,
            20.0,
        ),
    ];
    for (promql, want) in expect {
        let got = eventually(
            30,
            || format!("{promql} never became {want}"),
            || async {
                let got = prometheus.query(promql).await?;
                ((got - want).abs() < 1e-9).then_some(got)
            },
        )
        .await;
        assert_eq!(got, want, "{promql}");
    }
    let p99 = prometheus
        .query(r#"histogram_quantile(0.99, sum by (le) (strait_request_duration_seconds_bucket{reporter="source",destination_service_name="payment"}))"#)
        .await
        .expect("a p99");
    assert!(p99 > 0.0 && p99 <= 10.0, "{p99}");
    dashboard_answers(&prometheus, &shop).await;
}

/// deploy/grafana's dashboard asks Prometheus what these proxies export:
/// every metric it names is one they expose (or, for a family with no
/// series yet, one docs/metrics.md lists), and every panel but the one
/// of retries, overflows and ejections (none happened) has data.
async fn dashboard_answers(prometheus: &Prometheus, shop: &Shop) {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../deploy/grafana/strait.json"
    );
    let text = std::fs::read_to_string(path).expect("the dashboard");
    let dashboard: serde_json::Value = serde_json::from_str(&text).expect("JSON");
    let exposed = [
        shop.gateway.metrics().await,
        shop.checkout.metrics().await,
        shop.payment.metrics().await,
    ]
    .concat();
    let docs = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/metrics.md");
    let docs = std::fs::read_to_string(docs).expect("docs/metrics.md");
    let panels = dashboard["panels"].as_array().expect("panels");
    assert!(panels.len() >= 6, "{dashboard}");
    for panel in panels {
        let title = panel["title"].as_str().unwrap_or("?");
        let exprs: Vec<String> = panel["targets"]
            .as_array()
            .expect("targets")
            .iter()
            .map(|t| {
                t["expr"]
                    .as_str()
                    .expect("expr")
                    .replace("$__rate_interval", "1m")
            })
            .collect();
        for expr in &exprs {
            for name in metric_names(expr) {
                let base = ["_total", "_bucket", "_count", "_sum"]
                    .iter()
                    .find_map(|s| name.strip_suffix(s))
                    .unwrap_or(&name);
                let known = exposed.contains(&format!("# TYPE {base} "))
                    || docs.contains(&format!("`{name}`"));
                assert!(known, "{title}: {name} is neither exported nor documented");
            }
        }
        if title.starts_with("Retries") {
            continue;
        }
        let q = |e: String| async move { vector(prometheus, &e).await };
        let mut answered = false;
        for _ in 0..30 {
            for expr in &exprs {
                answered |= q(expr.clone()).await > 0;
            }
            if answered {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_secs(1)).await;
        }
        assert!(answered, "the panel {title:?} has no data: {exprs:?}");
    }
}

/// The metric names in a PromQL expression.
fn metric_names(expr: &str) -> Vec<String> {
    let mut names = Vec::new();
    for prefix in ["strait_", "process_"] {
        let mut rest = expr;
        while let Some(i) = rest.find(prefix) {
            let tail = &rest[i..];
            let end = tail
                .find(|c: char| !(c.is_ascii_lowercase() || c == '_'))
                .unwrap_or(tail.len());
            names.push(tail[..end].to_string());
            rest = &tail[end..];
        }
    }
    names
}

/// How many series an instant query returns.
async fn vector(prometheus: &Prometheus, promql: &str) -> usize {
    let q = url_encode(promql);
    let Ok(r) = send(get(
        prometheus.port,
        "127.0.0.1",
        &format!("/api/v1/query?query={q}"),
    ))
    .await
    else {
        return 0;
    };
    let json: serde_json::Value = serde_json::from_slice(&r.body).unwrap_or_default();
    json["data"]["result"].as_array().map_or(0, Vec::len)
}

/// A sidecar with the identity `sa` and `extra` flags.
async fn flagged_sidecar(
    (dir, control, extra): (&TempDir, &Control, &[&str]),
    sa: &str,
    app: u16,
    inbound: u16,
) -> Sidecar {
    let mut flags = identity_flags(dir, control, sa);
    flags.extend(extra.iter().map(|f| f.to_string()));
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    Sidecar::start(dir, &format!("shop/{sa}"), app, inbound, &flags).await
}

/// checkout's app as an instrumented app is: each request it gets, it
/// calls payment through its sidecar, handing on the `traceparent` it was
/// given, and answers with payment's answer.
async fn relaying_app(outbound: std::sync::Arc<std::sync::OnceLock<u16>>) -> u16 {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind the app");
    let port = listener.local_addr().expect("address").port();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                continue;
            };
            let outbound = outbound.clone();
            tokio::spawn(async move {
                let svc =
                    hyper::service::service_fn(move |req: http::Request<hyper::body::Incoming>| {
                        let outbound = outbound.get().copied();
                        async move {
                            let parent = req
                                .headers()
                                .get("traceparent")
                                .and_then(|v| v.to_str().ok())
                                .map(str::to_owned);
                            let headers: Vec<(&str, &str)> =
                                parent.iter().map(|p| ("traceparent", p.as_str())).collect();
                            let r =
                                call(outbound.unwrap_or(1), "http://payment.shop/pay", &headers)
                                    .await;
                            let mut answer = http::Response::new(http_body_util::Full::new(r.body));
                            *answer.status_mut() =
                                http::StatusCode::from_u16(r.status).unwrap_or_default();
                            Ok::<_, std::convert::Infallible>(answer)
                        }
                    });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(tcp), svc)
                    .await;
            });
        }
    });
    port
}

/// The spans of `trace` the receiver has, once it has at least `n`.
async fn spans_of(
    receiver: &common::otlp::Receiver,
    trace: &str,
    n: usize,
) -> Vec<common::otlp::Received> {
    eventually(
        10,
        || format!("fewer than {n} spans of {trace}: {:?}", receiver.spans()),
        || async {
            let spans: Vec<_> = receiver
                .spans()
                .into_iter()
                .filter(|s| s.trace_id == trace)
                .collect();
            (spans.len() >= n).then_some(spans)
        },
    )
    .await
}

#[tokio::test]
async fn one_call_through_three_hops_is_one_trace() {
    let receiver = common::otlp::Receiver::start().await;
    let grpc = format!("http://127.0.0.1:{}", receiver.port);
    let http = format!("http://127.0.0.1:{}/v1/traces", receiver.port);
    // The gateway exports over HTTP/protobuf, the sidecars over gRPC.
    let gateway_flags = [
        "--tracing-endpoint",
        &http,
        "--tracing-protocol",
        "http/protobuf",
    ];
    let sidecar_flags = ["--tracing-endpoint", grpc.as_str()];
    let outbound = std::sync::Arc::new(std::sync::OnceLock::new());
    let app = relaying_app(outbound.clone()).await;
    let shop = shop_with(&gateway_flags, &sidecar_flags, Some(app)).await;
    let _ = outbound.set(shop.checkout.outbound);

    // A client with no trace context: the gateway starts the trace.
    let r = send(get(shop.port, "shop.example.com", "/checkout/pay"))
        .await
        .expect("gateway answers");
    assert_eq!(r.status, 200, "{}", shop.gateway.logs());
    // payment's app saw a traceparent: the trace's ID, sampled.
    let seen = r.json();
    let parent = seen["headers"]["Traceparent"][0]
        .as_str()
        .unwrap_or_else(|| panic!("payment's app saw no traceparent: {seen}"))
        .to_string();
    let fields: Vec<&str> = parent.split('-').collect();
    assert_eq!(fields.len(), 4, "{parent}");
    assert_eq!(fields[3], "01", "sampled: {parent}");
    let trace = fields[1].to_string();

    let spans = spans_of(&receiver, &trace, 4).await;
    assert_eq!(spans.len(), 4, "{spans:#?}");
    let by = |service: &str, kind: i32| {
        spans
            .iter()
            .find(|s| s.service == service && s.kind == kind)
            .unwrap_or_else(|| panic!("no {service} span of kind {kind}: {spans:#?}"))
    };
    // Kinds: 2 server, 3 client.
    let gateway = by("strait-gateway", 2);
    let checkout_in = by("checkout-api", 2);
    let checkout_out = by("checkout-api", 3);
    let payment_in = by("payment", 2);
    assert_eq!(gateway.parent_span_id, "", "the gateway started the trace");
    assert_eq!(checkout_in.parent_span_id, gateway.span_id);
    assert_eq!(
        checkout_out.parent_span_id, checkout_in.span_id,
        "through the app's traceparent"
    );
    assert_eq!(payment_in.parent_span_id, checkout_out.span_id);
    assert_eq!(
        fields[2], payment_in.span_id,
        "the app's parent is payment's inbound span"
    );
    assert_eq!(gateway.name, "GET default/checkout");
    assert_eq!(gateway.attribute("http.response.status_code"), Some("200"));
    assert_eq!(
        gateway.attribute("strait.destination.workload"),
        Some("shop/checkout-api")
    );
    assert_eq!(
        checkout_out.attribute("strait.destination.service"),
        Some("shop/payment")
    );
    assert_eq!(checkout_out.attribute("strait.mtls"), Some("true"));
    assert_eq!(
        payment_in.attribute("strait.source.principal"),
        Some("spiffe://cluster.local/ns/shop/sa/checkout-api")
    );
    // The access log names the trace.
    let logged = eventually(
        5,
        || "no access log line".into(),
        || async {
            let text = std::fs::read_to_string(&shop.access_log).ok()?;
            text.lines().find(|l| l.contains(&trace)).map(str::to_owned)
        },
    )
    .await;
    assert!(logged.contains("\"trace_id\""), "{logged}");
}

#[tokio::test]
async fn a_caller_s_context_and_its_sampling_decision_are_kept() {
    let receiver = common::otlp::Receiver::start().await;
    let grpc = format!("http://127.0.0.1:{}", receiver.port);
    let shop = shop_with(&["--tracing-endpoint", &grpc], &[], None).await;
    let trace = "4bf92f3577b34da6a3ce929d0e0e4736";
    let call_with = |header: &'static str, value: String| {
        let mut req = get(shop.port, "shop.example.com", "/checkout/x");
        req.headers_mut()
            .insert(header, http::HeaderValue::from_str(&value).expect("value"));
        send(req)
    };
    // W3C, sampled: the gateway's span is the caller's child.
    let r = call_with("traceparent", format!("00-{trace}-00f067aa0ba902b7-01")).await;
    let seen = r.expect("answer").json();
    let parent = seen["headers"]["Traceparent"][0]
        .as_str()
        .unwrap_or("")
        .to_string();
    assert!(parent.starts_with(&format!("00-{trace}-")), "{seen}");
    assert!(
        !parent.contains("00f067aa0ba902b7"),
        "a new parent: this hop's span"
    );
    // B3 (single header), sampled: taken as the parent, handed on as W3C.
    let b3 = "80f198ee56343ba864fe8b2a57d3eff7";
    let r = call_with("b3", format!("{b3}-e457b5a2e4d86bd1-1")).await;
    let seen = r.expect("answer").json();
    let parent = seen["headers"]["Traceparent"][0]
        .as_str()
        .unwrap_or("")
        .to_string();
    assert!(parent.starts_with(&format!("00-{b3}-")), "{seen}");
    // Not sampled by the caller: handed on unsampled, and not exported.
    let quiet = "0af7651916cd43dd8448eb211c80319c";
    let r = call_with("traceparent", format!("00-{quiet}-b7ad6b7169203331-00")).await;
    let seen = r.expect("answer").json();
    let parent = seen["headers"]["Traceparent"][0]
        .as_str()
        .unwrap_or("")
        .to_string();
    assert!(
        parent.starts_with(&format!("00-{quiet}-")) && parent.ends_with("-00"),
        "{seen}"
    );
    let spans = eventually(
        10,
        || format!("spans: {:?}", receiver.spans()),
        || async {
            let spans = receiver.spans();
            let both = [trace, b3].iter().all(|t| {
                spans
                    .iter()
                    .any(|s| s.trace_id == *t && s.service == "strait-gateway")
            });
            both.then_some(spans)
        },
    )
    .await;
    let gateway = spans
        .iter()
        .find(|s| s.trace_id == trace && s.service == "strait-gateway")
        .expect("span");
    assert_eq!(gateway.parent_span_id, "00f067aa0ba902b7");
    let b3_span = spans.iter().find(|s| s.trace_id == b3).expect("span");
    assert_eq!(b3_span.parent_span_id, "e457b5a2e4d86bd1");
    // A second for the batch to go out, then: nothing of the quiet trace.
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    assert!(
        !receiver.spans().iter().any(|s| s.trace_id == quiet),
        "an unsampled trace was exported"
    );
}

#[tokio::test]
async fn a_tunnel_counts_its_connection_and_bytes_at_both_sidecars() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let shop = shop().await;
    // Every workload of the namespace logs (to stdout: no log flag).
    let policy = telemetry_policy("all", "shop", "  accessLog: {}");
    shop.dir.write("telemetry.yaml", &policy);
    reloaded(&[&shop.checkout, &shop.payment]).await;
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", shop.checkout.outbound))
        .await
        .expect("connect");
    let (mut send, conn) = hyper::client::conn::http1::handshake::<
        _,
        http_body_util::Empty<bytes::Bytes>,
    >(hyper_util::rt::TokioIo::new(tcp))
    .await
    .expect("handshake");
    tokio::spawn(conn.with_upgrades());
    let req = http::Request::connect("payment.shop:80")
        .body(http_body_util::Empty::new())
        .expect("request");
    let mut r = send.send_request(req).await.expect("CONNECT answer");
    assert_eq!(r.status(), 200, "{}", shop.checkout.logs());
    let tunnel = hyper::upgrade::on(&mut r).await.expect("tunnel");
    let mut tunnel = hyper_util::rt::TokioIo::new(tunnel);
    let ask = b"GET /through HTTP/1.1\r\nhost: payment\r\nconnection: close\r\n\r\n";
    tunnel.write_all(ask).await.expect("write");
    let mut answer = Vec::new();
    tunnel.read_to_end(&mut answer).await.expect("read");
    assert!(
        answer.starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&answer)
    );
    drop(tunnel);
    let (sent, got) = (ask.len() as f64, answer.len() as f64);
    let caller = [
        ("reporter", "source"),
        ("source_workload", "checkout-api"),
        ("destination_service_name", "payment"),
        ("connection_security_policy", "mutual_tls"),
    ];
    let callee = [
        ("reporter", "destination"),
        ("destination_workload", "payment"),
        (
            "source_principal",
            "spiffe://cluster.local/ns/shop/sa/checkout-api",
        ),
        ("connection_security_policy", "mutual_tls"),
    ];
    for (sidecar, labels) in [(&shop.checkout, &caller), (&shop.payment, &callee)] {
        let m = eventually(
            5,
            || "the connection never closed".into(),
            || async {
                let m = sidecar.metrics().await;
                (series(&m, "strait_tcp_connections_closed_total", labels) == 1.0).then_some(m)
            },
        )
        .await;
        assert_eq!(
            series(&m, "strait_tcp_connections_opened_total", labels),
            1.0,
            "{m}"
        );
        assert_eq!(
            series(&m, "strait_tcp_received_bytes_total", labels),
            sent,
            "{m}"
        );
        assert_eq!(
            series(&m, "strait_tcp_sent_bytes_total", labels),
            got,
            "{m}"
        );
    }
    // One access log line per connection, at each end.
    for (sidecar, field, value) in [
        (&shop.checkout, "destination_service", "shop/payment"),
        (
            &shop.payment,
            "source_principal",
            "spiffe://cluster.local/ns/shop/sa/checkout-api",
        ),
    ] {
        let lines = eventually(
            5,
            || format!("no TCP line in {:?}", sidecar.stdout()),
            || async { Some(tcp_lines(&sidecar.stdout())).filter(|l| !l.is_empty()) },
        )
        .await;
        assert_eq!(lines.len(), 1, "{lines:?}");
        let line = &lines[0];
        assert_eq!(line[field], value, "{line}");
        assert_eq!(line["bytes_received"], sent as u64, "{line}");
        assert_eq!(line["bytes_sent"], got as u64, "{line}");
        assert_eq!(line["mtls"], true, "{line}");
        assert!(line.get("method").is_none() && line.get("status") == Some(&0.into()));
    }
}

/// Waits until each sidecar serves its second configuration.
async fn reloaded(sidecars: &[&Sidecar]) {
    for sidecar in sidecars {
        eventually(
            10,
            || sidecar.logs(),
            || async {
                let metrics = sidecar.metrics().await;
                let generation = metrics
                    .lines()
                    .find_map(|l| l.strip_prefix("strait_config_generation "))
                    .and_then(|n| n.parse::<u64>().ok());
                (generation >= Some(2)).then_some(())
            },
        )
        .await;
    }
}

/// The JSON lines of TCP connections in `out`.
fn tcp_lines(out: &str) -> Vec<serde_json::Value> {
    out.lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|l| l["protocol"] == "TCP")
        .collect()
}

fn telemetry_policy(name: &str, namespace: &str, spec: &str) -> String {
    format!("---\napiVersion: policy.strait.dev/v1alpha1\nkind: TelemetryPolicy\nmetadata: {{name: {name}, namespace: {namespace}}}\nspec:\n{spec}\n")
}

/// Waits until `out()` holds a line with `mark`, and returns every line.
async fn lines_until(out: impl Fn() -> String, mark: &str) -> Vec<String> {
    eventually(
        5,
        || format!("no line with {mark} in {:?}", out()),
        || async {
            let text = out();
            text.contains(mark)
                .then(|| text.lines().map(str::to_owned).collect())
        },
    )
    .await
}

#[tokio::test]
async fn telemetry_policies_set_each_listener_s_access_log() {
    let dir = TempDir::new();
    let app = echo("shop", "shop-0");
    let (web, api) = (free_port(), free_port());
    let listeners = format!(
        "  - {{name: web, port: {web}, protocol: HTTP}}\n  - {{name: api, port: {api}, protocol: HTTP}}\n"
    );
    dir.write(
        "gw.yaml",
        &(gateway_with(&listeners)
            + &service_yaml("shop", app.port, None)
            + &prefix_route("all", "/", "shop", "")),
    );
    let gw_target = "group: gateway.networking.k8s.io, kind: Gateway, name: gw";
    dir.write(
        "telemetry.yaml",
        &(telemetry_policy(
            "edge",
            "default",
            &format!("  targetRefs: [{{{gw_target}}}]\n  accessLog: {{format: text}}"),
        ) + &telemetry_policy(
            "quiet-api",
            "default",
            &format!("  targetRefs: [{{{gw_target}, sectionName: api}}]\n  accessLog: {{enabled: false}}"),
        )),
    );
    // No --access-log: a policy's log goes to stdout.
    let gw = Gateway::start(&dir).await;
    let ok = |r: Result<Resp, String>| assert_eq!(r.expect("answer").status, 200);
    ok(send(get(api, "shop.example.com", "/not-logged")).await);
    ok(send(get(web, "shop.example.com", "/logged")).await);
    let lines = lines_until(|| gw.stdout(), "/logged").await;
    assert_eq!(lines.len(), 1, "only web's request, in text: {lines:?}");
    assert!(
        lines[0].contains("\"GET /logged HTTP/1.1\" 200"),
        "{lines:?}"
    );

    // The policies change: api logs (JSON, the default), web stops.
    dir.write(
        "telemetry.yaml",
        &(telemetry_policy(
            "edge",
            "default",
            &format!("  targetRefs: [{{{gw_target}}}]\n  accessLog: {{samplingPercentage: 0}}"),
        ) + &telemetry_policy(
            "loud-api",
            "default",
            &format!("  targetRefs: [{{{gw_target}, sectionName: api}}]\n  accessLog: {{}}"),
        )),
    );
    gw.wait_generation(2).await;
    ok(send(get(web, "shop.example.com", "/not-logged-either")).await);
    ok(send(get(api, "shop.example.com", "/logged-in-json")).await);
    let lines = lines_until(|| gw.stdout(), "/logged-in-json").await;
    assert_eq!(lines.len(), 2, "{lines:?}");
    let line: serde_json::Value = serde_json::from_str(&lines[1]).expect("JSON");
    assert_eq!(line["path"], "/logged-in-json", "{line}");
    assert_eq!(line["listener"], "default/gw/api", "{line}");

    // A bad policy is refused with its field and not applied; the rest
    // keeps serving as it was.
    dir.write(
        "bad.yaml",
        &telemetry_policy("bad", "default", "  accessLog: {samplingPercentage: 250}"),
    );
    gw.wait_generation(3).await;
    let config = gw.config().await;
    assert!(
        config
            .to_string()
            .contains("spec.accessLog.samplingPercentage"),
        "{config}"
    );
    ok(send(get(api, "shop.example.com", "/still-logged")).await);
    lines_until(|| gw.stdout(), "/still-logged").await;
    drop(dir);
}

#[tokio::test]
async fn a_workload_s_policy_samples_its_traces_and_logs_its_requests() {
    let receiver = common::otlp::Receiver::start().await;
    let grpc = format!("http://127.0.0.1:{}", receiver.port);
    // Nothing is sampled by the flags, anywhere.
    let flags = ["--tracing-endpoint", grpc.as_str(), "--tracing-sample", "0"];
    let shop = shop_with(&flags, &flags, None).await;
    shop.dir.write(
        "telemetry.yaml",
        &telemetry_policy(
            "checkout",
            "shop",
            "  targetRefs: [{group: apps, kind: Deployment, name: checkout-api}]\n  tracing: {samplingPercentage: 100}\n  accessLog: {}",
        ),
    );
    reloaded(&[&shop.checkout, &shop.payment]).await;
    // checkout's call to payment: sampled by checkout's policy, and payment
    // keeps the decision of its caller.
    let r = call(shop.checkout.outbound, "http://payment.shop/pay", &[]).await;
    assert_eq!(r.status, 200, "{}", shop.checkout.logs());
    let parent = r.json()["headers"]["Traceparent"][0]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(parent.ends_with("-01"), "sampled: {parent}");
    let trace = parent.split('-').nth(1).unwrap_or_default().to_string();
    let spans = spans_of(&receiver, &trace, 2).await;
    let services: Vec<&str> = spans.iter().map(|s| s.service.as_str()).collect();
    assert!(
        services.contains(&"checkout-api") && services.contains(&"payment"),
        "{services:?}"
    );
    // The gateway samples nothing: its call through checkout is not traced.
    let r = send(get(shop.port, "shop.example.com", "/checkout/x")).await;
    let seen = r.expect("answer").json();
    let quiet = seen["headers"]["Traceparent"][0]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(quiet.ends_with("-00"), "unsampled: {quiet}");
    // checkout's sidecar logs both calls (on stdout: it has no log flag);
    // payment's logs nothing.
    let lines = lines_until(|| shop.checkout.stdout(), "/checkout/x").await;
    assert!(lines.iter().any(|l| l.contains("\"/pay\"")), "{lines:?}");
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    let quiet_trace = quiet.split('-').nth(1).unwrap_or_default();
    assert!(
        !receiver.spans().iter().any(|s| s.trace_id == quiet_trace),
        "an unsampled trace was exported"
    );
    assert_eq!(shop.payment.stdout(), "", "payment has no policy");
}
