//! `strait demo`, the README's first command, end to end: it serves the
//! shop's edge on its fixed ports and stops cleanly on Ctrl-C (SIGINT).

mod common;
use common::*;
use std::process::{Command, Stdio};
use std::time::Duration;

#[tokio::test]
async fn demo_serves_the_shop_and_stops_on_ctrl_c() {
    for port in [
        8080, 8443, 9101, 9102, 9103, 9104, 9105, 9106, 9107, 9108, 9901, 15101, 15102, 15103,
        15104, 15105, 15106, 15107, 15108, 15109, 15110, 15111, 15112, 9109, 15201, 15202, 15203,
        15204, 15205, 15206,
    ] {
        assert!(
            std::net::TcpListener::bind(("127.0.0.1", port)).is_ok(),
            "the demo needs 127.0.0.1:{port} free"
        );
    }
    a_busy_port_ends_the_demo_cleanly();
    let child = Command::new(STRAIT)
        .arg("demo")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn demo");
    let mut demo = Proc(child);
    // The banner names the certificate file to trust for HTTPS; the mesh's
    // measurement follows it.
    let stdout = demo.0.stdout.take().expect("stdout");
    let banner = tokio::task::spawn_blocking(move || {
        use std::io::BufRead;
        let mut seen = Vec::new();
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            let last = line.contains("calls succeeded although");
            seen.push(line);
            if last {
                break;
            }
        }
        seen.join("\n")
    });
    eventually(
        10,
        || "demo not ready".into(),
        || async {
            send(get(9901, "admin", "/ready"))
                .await
                .is_ok_and(|r| r.status == 200)
                .then_some(())
        },
    )
    .await;
    let host = "shop.example.com";
    assert_eq!(
        send(get(8080, host, "/")).await.expect("ok").service(),
        "web-frontend"
    );
    let pods: Vec<String> = futures_pods(host).await;
    assert_eq!(pods.len(), 2, "product-api's two pods take turns: {pods:?}");
    let write = send(request("POST", 8080, host, "/api/products", &[]))
        .await
        .expect("ok");
    assert_eq!(
        (write.status, &write.body[..]),
        (403, &b"You are rejected!"[..]),
        "the product API is read-only"
    );
    assert_eq!(
        send(get(8080, "other.example.com", "/"))
            .await
            .expect("ok")
            .status,
        404
    );

    let banner = banner.await.expect("banner");
    assert!(
        banner.contains("cart-api → user-service: 20 of 20 calls succeeded"),
        "{banner}"
    );
    // Every sidecar has an admin port, printed, with its metrics.
    assert!(banner.contains("checkout-api-6f7d8 15201"), "{banner}");
    let metrics = send(get(15201, "admin", "/metrics"))
        .await
        .expect("metrics");
    assert!(
        String::from_utf8_lossy(&metrics.body).contains("strait_requests_total"),
        "a sidecar's metrics"
    );
    let ca_file = banner
        .split_whitespace()
        .skip_while(|w| *w != "--cacert")
        .nth(1)
        .unwrap_or_else(|| panic!("no --cacert in {banner}"));
    assert_eq!(
        https_service(ca_file).await,
        "product-api",
        "TLS terminated at the edge"
    );

    // Checkout wants a user's token from the shop's issuer: the demo
    // prints one, and checkout-api is told the user.
    let token = banner
        .split_whitespace()
        .find_map(|w| w.strip_prefix("TOKEN="))
        .unwrap_or_else(|| panic!("no token in {banner}"))
        .to_string();
    let r = send(get(8080, host, "/api/checkout"))
        .await
        .expect("answer");
    assert_eq!((r.status, r.reason()), (401, Some("jwt_missing")));
    let bearer = format!("Bearer {token}");
    let r = send(request(
        "GET",
        8080,
        host,
        "/api/checkout",
        &[("authorization", &bearer)],
    ))
    .await
    .expect("answer");
    assert_eq!(r.service(), "checkout-api");
    assert_eq!(r.json()["headers"]["X-User"][0], "demo-user");
    let r = send(request(
        "GET",
        8080,
        host,
        "/api/checkout",
        &[("authorization", "Bearer x.y.z")],
    ))
    .await
    .expect("answer");
    assert_eq!((r.status, r.reason()), (401, Some("jwt_invalid")));

    // product-api's OpenAPI document, checked at the edge: the printed
    // bad query and bad review are refused there, a good review passes.
    let r = send(get(8080, host, "/api/products/x"))
        .await
        .expect("answer");
    assert_eq!((r.status, r.reason()), (400, Some("request_invalid")));
    let body = String::from_utf8_lossy(&r.body);
    assert!(body.contains("path parameter id"), "{body}");
    let review = |text: &str| {
        let mut req = request(
            "POST",
            8080,
            host,
            "/api/reviews",
            &[("content-type", "application/json")],
        );
        *req.body_mut() = http_body_util::Full::new(bytes::Bytes::from(text.to_string()));
        req
    };
    let r = send(review(r#"{"product": 1, "stars": 9}"#))
        .await
        .expect("answer");
    assert_eq!((r.status, r.reason()), (400, Some("request_invalid")));
    let body = String::from_utf8_lossy(&r.body);
    assert!(
        body.contains("body/stars: 9 is greater than the maximum of 5"),
        "{body}"
    );
    let r = send(review(r#"{"product": 1, "stars": 4}"#))
        .await
        .expect("answer");
    assert_eq!(r.service(), "product-api");
    assert!(banner.contains("limit=500"), "{banner}");

    // The cart API answers a browser on the shop's pages: the edge
    // answers the preflight; the call itself reaches cart-api.
    let origin = ("origin", "https://shop.example.com");
    let preflight = [origin, ("access-control-request-method", "POST")];
    let r = send(request("OPTIONS", 8080, host, "/api/cart", &preflight))
        .await
        .expect("answer");
    assert_eq!(r.status, 200);
    assert_eq!(
        r.headers["access-control-allow-origin"],
        "https://shop.example.com"
    );
    assert_eq!(r.headers["access-control-allow-credentials"], "true");
    let r = send(request("GET", 8080, host, "/api/cart", &[origin]))
        .await
        .expect("answer");
    assert_eq!(r.service(), "cart-api");
    assert_eq!(
        r.headers["access-control-allow-origin"],
        "https://shop.example.com"
    );
    let other = [
        ("origin", "https://evil.example.com"),
        ("access-control-request-method", "POST"),
    ];
    let r = send(request("OPTIONS", 8080, host, "/api/cart", &other))
        .await
        .expect("answer");
    assert!(
        !r.headers.contains_key("access-control-allow-origin"),
        "{:?}",
        r.headers
    );

    // The edge's limit: 10 reads at once per client, then 429 saying
    // when to come back (the printed loop of 15), once the reads above
    // are given back (two seconds).
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    let mut codes = Vec::new();
    let mut refusal = None;
    for _ in 0..15 {
        let r = send(get(8080, host, "/api/products")).await.expect("ok");
        codes.push(r.status);
        if r.status == 429 {
            refusal = Some(r);
        }
    }
    let refused = codes.iter().filter(|c| **c == 429).count();
    assert!((3..=6).contains(&refused), "{codes:?}");
    let r = refusal.expect("a refusal");
    assert_eq!(r.reason(), Some("rate_limited"));
    assert!(r.headers.contains_key("retry-after"), "{:?}", r.headers);
    assert_eq!(r.headers["ratelimit-policy"], "\"per-client\";q=5;w=1");

    // The mesh: through checkout-api's sidecar the cookie goes to v2;
    // through cart-api's, user-service's failures are retried away.
    // payment-service wants the user's token passed on.
    let user = format!("Authorization: {bearer}\r\n");
    eventually(
        10,
        || "the demo's sidecars did not answer".into(),
        || via_sidecar(15101, "payment-service.shop", &user),
    )
    .await;
    let (status, _) = via_sidecar(15101, "payment-service.shop", "")
        .await
        .expect("answer");
    assert_eq!(status, 401, "payment wants the user's token");
    let beta = format!("{user}Cookie: version=beta\r\n");
    for _ in 0..10 {
        let (status, body) = via_sidecar(15101, "payment-service.shop", &beta)
            .await
            .expect("answer");
        assert_eq!(status, 200);
        assert!(
            body.contains("\"service\":\"payment-service-v2\""),
            "{body}"
        );
    }
    for _ in 0..10 {
        let (status, _) = via_sidecar(15102, "user-service.shop", "")
            .await
            .expect("answer");
        assert_eq!(status, 200, "one retry hides user-service's failures");
    }
    // Sidecar to sidecar is mutual TLS: payment's app sees its caller's
    // SPIFFE ID; and only checkout-api may call payment.
    let (_, body) = via_sidecar(15101, "payment-service.shop", &user)
        .await
        .expect("answer");
    assert!(
        body.contains("URI=spiffe://cluster.local/ns/shop/sa/checkout-api"),
        "{body}"
    );
    assert!(body.contains("\"X-User\":[\"demo-user\"]"), "{body}");
    let (status, body) = via_sidecar(15102, "payment-service.shop", &user)
        .await
        .expect("answer");
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("shop/payment-callers"), "{body}");

    // The control plane follows the folder: a route added there reaches
    // the gateway.
    let dir = banner
        .split("(config in ")
        .nth(1)
        .and_then(|rest| rest.split(')').next())
        .unwrap_or_else(|| panic!("no config folder in {banner}"));
    let tagged = |r: &Resp| r.headers.get("x-new").is_some();
    let r = send(get(8080, "shop.example.com", "/new"))
        .await
        .expect("answer");
    assert!(!tagged(&r));
    std::fs::write(
        std::path::Path::new(dir).join("new.yaml"),
        "apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {name: new, namespace: shop}\nspec:\n  parentRefs: [{name: shop}]\n  hostnames: [shop.example.com]\n  rules:\n  - matches: [{path: {type: PathPrefix, value: /new}}]\n    filters: [{type: ResponseHeaderModifier, responseHeaderModifier: {add: [{name: x-new, value: \"1\"}]}}]\n    backendRefs: [{name: web-frontend, port: 80}]\n",
    )
    .expect("write");
    eventually(
        5,
        || "the new route never arrived".into(),
        || async {
            send(get(8080, "shop.example.com", "/new"))
                .await
                .is_ok_and(|r| tagged(&r))
                .then_some(())
        },
    )
    .await;

    // The gateway's access log, where the banner says, one JSON object
    // per request (written within a second): the calls above are in it.
    let log = std::path::Path::new(dir).join("access.log");
    assert!(banner.contains(&log.display().to_string()), "{banner}");
    eventually(
        5,
        || std::fs::read_to_string(&log).unwrap_or_default(),
        || async {
            let text = std::fs::read_to_string(&log).ok()?;
            let lines: Vec<serde_json::Value> = text
                .lines()
                .map(|l| serde_json::from_str(l).expect("a JSON line"))
                .collect();
            lines
                .iter()
                .any(|l| l["path"] == "/new" && l["status"] == 200 && l["reporter"] == "gateway")
                .then_some(())
        },
    )
    .await;

    let pid = demo.0.id().to_string();
    let ok = Command::new("sh")
        .args(["-c", &format!("kill -INT {pid}")])
        .status()
        .expect("kill");
    assert!(ok.success());
    let status = demo.exit_within(10).await.expect("demo stops on SIGINT");
    assert!(status.success(), "{status}");
}

/// With a port taken, the demo says which and stops: no list of things to
/// try, and no folder left behind.
fn a_busy_port_ends_the_demo_cleanly() {
    let _taken = std::net::TcpListener::bind(("127.0.0.1", 8443)).expect("bind 8443");
    let child = Command::new(STRAIT)
        .arg("demo")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn demo");
    let folder = std::env::temp_dir().join(format!("strait-demo-{}", child.id()));
    let out = child.wait_with_output().expect("run demo");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stdout}");
    assert!(!stdout.contains("Try:"), "{stdout}");
    assert!(stderr.contains("8443"), "{stderr}");
    assert!(!folder.exists(), "{} left behind", folder.display());
}

async fn futures_pods(host: &str) -> Vec<String> {
    let mut pods = Vec::new();
    for _ in 0..4 {
        let r = send(get(8080, host, "/api/products")).await.expect("ok");
        assert_eq!(r.service(), "product-api");
        let pod = r.json()["pod"].as_str().unwrap_or("").to_string();
        if !pods.contains(&pod) {
            pods.push(pod);
        }
    }
    pods
}

async fn https_service(ca_file: &str) -> String {
    use http_body_util::{BodyExt, Empty};
    use rustls::pki_types::pem::PemObject;
    let pem = std::fs::read(ca_file).expect("ca file");
    let roots: Vec<_> = rustls::pki_types::CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<_, _>>()
        .expect("pem");
    let tls = tls_connect(8443, "shop.example.com", &roots, &[], None)
        .await
        .expect("handshake");
    let mut send = h1_over(tls).await;
    let req = http::Request::get("/api/products")
        .header("host", "shop.example.com")
        .body(Empty::<bytes::Bytes>::new())
        .expect("request");
    let body = send
        .send_request(req)
        .await
        .expect("response")
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes();
    let json: serde_json::Value = serde_json::from_slice(&body).expect("json");
    json["service"].as_str().unwrap_or("").to_string()
}

/// A call as a workload with `HTTP_PROXY` makes it, through the sidecar
/// whose outbound listener is on `proxy`.
async fn via_sidecar(proxy: u16, host: &str, headers: &str) -> Option<(u16, String)> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", proxy))
        .await
        .ok()?;
    let req = format!(
        "GET http://{host}/ HTTP/1.1\r\nHost: {host}\r\n{headers}Connection: close\r\n\r\n"
    );
    s.write_all(req.as_bytes()).await.ok()?;
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut out))
        .await
        .ok()?
        .ok()?;
    let text = String::from_utf8_lossy(&out);
    let status = text.split(' ').nth(1)?.parse().ok()?;
    Some((status, text.split_once("\r\n\r\n")?.1.to_string()))
}
