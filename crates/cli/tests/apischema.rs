//! ApiSchemaPolicy through the real binary: requests checked against the
//! API's OpenAPI document (a file of the folder, a ConfigMap, or inline)
//! before they reach it — operation, path, query and header parameters,
//! the JSON body — refused with `400`/`404`/`405`/`413`/`415` and where
//! they fail, and never sent on; valid ones pass with their bodies whole.

mod common;
use common::*;
use http_body_util::Full;

const OPENAPI: &str = r##"openapi: 3.0.3
info: {title: shop, version: "1"}
servers: [{url: /api}]
paths:
  /products:
    get:
      parameters:
      - {name: limit, in: query, schema: {type: integer, minimum: 1, maximum: 50}}
      - {name: x-tenant, in: header, required: true, schema: {type: string, pattern: "^[a-z]+$"}}
  /products/{id}:
    get:
      parameters:
      - {name: id, in: path, required: true, schema: {type: integer}}
  /reviews:
    post:
      requestBody:
        required: true
        content:
          application/json:
            schema: {$ref: "#/components/schemas/Review"}
components:
  schemas:
    Review:
      type: object
      required: [product, stars]
      properties:
        product: {type: integer}
        stars: {type: integer, minimum: 1, maximum: 5}
        text: {type: string, nullable: true}
"##;

fn policy(open_api: &str, extra: &str) -> String {
    format!(
        r#"---
apiVersion: policy.strait.dev/v1alpha1
kind: ApiSchemaPolicy
metadata: {{name: shop-api}}
spec:
  targetRefs: [{{group: gateway.networking.k8s.io, kind: HTTPRoute, name: api}}]
  openAPI: {open_api}
{extra}"#
    )
}

async fn start(policy: &str) -> (Gateway, u16, TempDir, Echo) {
    let app = echo("shop", "shop-0");
    let port = free_port();
    let dir = TempDir::new();
    dir.write("shop.openapi.yaml", OPENAPI);
    let yaml = gateway_yaml(port)
        + &service_yaml("shop", app.port, None)
        + &prefix_route("api", "/api", "shop", "")
        + policy;
    dir.write("gw.yaml", &yaml);
    let gw = Gateway::start_with(&dir, &[]).await;
    (gw, port, dir, app)
}

async fn call(
    port: u16,
    (method, path): (&str, &str),
    headers: &[(&str, &str)],
    body: &str,
) -> Resp {
    let mut req = request(method, port, "shop.example.com", path, headers);
    *req.body_mut() = Full::new(bytes::Bytes::from(body.to_string()));
    send(req).await.expect("gateway answers")
}

fn said(r: &Resp) -> String {
    String::from_utf8_lossy(&r.body).into_owned()
}

const TENANT: (&str, &str) = ("x-tenant", "acme");
const JSON: (&str, &str) = ("content-type", "application/json");

#[tokio::test]
async fn requests_the_document_does_not_describe_never_reach_the_api() {
    let (gw, port, _dir, _app) = start(&policy(
        "{file: shop.openapi.yaml}",
        "  unknownOperations: Reject\n  maxBodyBytes: 1024\n",
    ))
    .await;
    let get = |path| ("GET", path);
    let ok = call(port, get("/api/products?limit=5"), &[TENANT], "").await;
    assert_eq!(ok.status, 200, "{}", gw.logs());
    let served = ok.json()["served"].as_u64().expect("served");

    let refused = [
        (
            call(port, get("/api/products?limit=500"), &[TENANT], "").await,
            (400, "request_invalid"),
            "query parameter limit: 500 is greater than the maximum of 50",
        ),
        (
            call(port, get("/api/products?limit=ten"), &[TENANT], "").await,
            (400, "request_invalid"),
            "query parameter limit: \"ten\" is not of type \"integer\"",
        ),
        (
            call(port, get("/api/products"), &[], "").await,
            (400, "request_invalid"),
            "header parameter x-tenant: is required",
        ),
        (
            call(port, get("/api/products"), &[("x-tenant", "ACME")], "").await,
            (400, "request_invalid"),
            "header parameter x-tenant: \"ACME\" does not match",
        ),
        (
            call(port, get("/api/products/abc"), &[], "").await,
            (400, "request_invalid"),
            "path parameter id: \"abc\" is not of type \"integer\"",
        ),
        (
            call(port, get("/api/orders"), &[], "").await,
            (404, "operation_unknown"),
            "GET /api/orders is not an operation of the API",
        ),
        (
            call(port, ("DELETE", "/api/products/1"), &[], "").await,
            (405, "operation_unknown"),
            "method DELETE is not one of GET, HEAD",
        ),
        (
            call(
                port,
                ("POST", "/api/reviews"),
                &[JSON],
                r#"{"product": 1, "stars": 9}"#,
            )
            .await,
            (400, "request_invalid"),
            "body/stars: 9 is greater than the maximum of 5",
        ),
        (
            call(port, ("POST", "/api/reviews"), &[JSON], r#"{"stars": 2}"#).await,
            (400, "request_invalid"),
            "body: \"product\" is a required property",
        ),
        (
            call(port, ("POST", "/api/reviews"), &[JSON], "{\"product\": ").await,
            (400, "request_invalid"),
            "body: is not JSON",
        ),
        (
            call(
                port,
                ("POST", "/api/reviews"),
                &[("content-type", "text/plain")],
                "5 stars",
            )
            .await,
            (415, "media_type_unsupported"),
            "body: \"text/plain\" is not one of application/json",
        ),
        (
            call(port, ("POST", "/api/reviews"), &[JSON], "").await,
            (400, "request_invalid"),
            "body: is required",
        ),
        (
            call(
                port,
                ("POST", "/api/reviews"),
                &[JSON],
                &format!(
                    r#"{{"product": 1, "stars": 2, "text": "{}"}}"#,
                    "a".repeat(2000)
                ),
            )
            .await,
            (413, "body_too_large"),
            "",
        ),
    ];
    for (r, (status, reason), message) in &refused {
        assert_eq!(
            (r.status, r.reason()),
            (*status, Some(*reason)),
            "{message}: {}",
            said(r)
        );
        assert!(said(r).contains(message), "{message:?} not in {}", said(r));
        if *status != 413 {
            assert_eq!(r.headers["x-strait-api-schema"], "default/shop-api");
            assert!(said(r).starts_with("strait: ApiSchemaPolicy default/shop-api: "));
        }
    }
    assert_eq!(refused[6].0.headers["allow"], "GET, HEAD");

    // What the document describes passes, its body whole; HEAD as GET.
    let review = r#"{"product": 1, "stars": 5, "text": null}"#;
    let r = call(
        port,
        ("POST", "/api/reviews"),
        &[("content-type", "application/json; charset=utf-8")],
        review,
    )
    .await;
    assert_eq!(r.status, 200, "{}", said(&r));
    assert_eq!(r.json()["bodyBytes"], review.len());
    let r = call(port, ("HEAD", "/api/products/7"), &[], "").await;
    assert_eq!(r.status, 200);
    let r = call(port, get("/api/products/7"), &[], "").await;
    // Only the valid requests reached the API.
    assert_eq!(r.json()["served"].as_u64(), Some(served + 3));
}

#[tokio::test]
async fn a_configmaps_document_and_unknown_operations_passed() {
    let config_map = format!(
        "---\napiVersion: v1\nkind: ConfigMap\nmetadata: {{name: shop-api}}\ndata:\n  openapi.yaml: |\n{}",
        OPENAPI.lines().map(|l| format!("    {l}\n")).collect::<String>()
    );
    let (_gw, port, _dir, _app) =
        start(&(config_map + &policy("{configMapRef: {name: shop-api, key: openapi.yaml}}", "")))
            .await;
    let r = call(port, ("GET", "/api/orders"), &[], "").await;
    assert_eq!(r.status, 200, "not described: passed unchecked");
    let r = call(port, ("GET", "/api/products?limit=0"), &[TENANT], "").await;
    assert_eq!((r.status, r.reason()), (400, Some("request_invalid")));
    assert!(
        said(&r).contains("query parameter limit: 0 is less than the minimum of 1"),
        "{}",
        said(&r)
    );
}

#[tokio::test]
async fn a_changed_document_applies_at_the_next_reload() {
    let (gw, port, dir, _app) = start(&policy("{file: shop.openapi.yaml}", "")).await;
    let limit = ("GET", "/api/products?limit=40");
    assert_eq!(call(port, limit, &[TENANT], "").await.status, 200);
    let generation = gw.config().await["generation"]
        .as_u64()
        .expect("generation");
    dir.write(
        "shop.openapi.yaml",
        &OPENAPI.replace("maximum: 50", "maximum: 20"),
    );
    gw.wait_generation(generation + 1).await;
    let r = call(port, limit, &[TENANT], "").await;
    assert_eq!(r.status, 400, "{}", said(&r));
    assert!(said(&r).contains("maximum of 20"), "{}", said(&r));
}

#[test]
fn a_bad_document_or_policy_is_refused_with_its_field_path() {
    let cases = [
        ("{file: nowhere.yaml}", "", "spec.openAPI.file: OpenAPI file \"nowhere.yaml\" not found"),
        ("{inline: '{\"swagger\": \"2.0\"}'}", "", "spec.openAPI: the document: a Swagger 2.0 document: OpenAPI 3.0 and 3.1 are read"),
        (
            "{inline: '{\"openapi\": \"3.1.0\", \"paths\": {\"/a\": {\"get\": {\"parameters\": [{\"$ref\": \"common.yaml#/p\"}]}}}}'}",
            "",
            "references outside the document are not read",
        ),
        ("{file: shop.openapi.yaml, inline: x}", "", "spec.openAPI: set one of file, configMapRef and inline"),
        ("{file: shop.openapi.yaml}", "  unknownOperations: Deny\n", "spec.unknownOperations: \"Deny\" is not Allow or Reject"),
    ];
    for (open_api, extra, message) in cases {
        let dir = TempDir::new();
        dir.write("shop.openapi.yaml", OPENAPI);
        let yaml = gateway_yaml(free_port())
            + &service_yaml("shop", free_port(), None)
            + &prefix_route("api", "/api", "shop", "")
            + &policy(open_api, extra);
        dir.write("gw.yaml", &yaml);
        let (code, out) = check(&dir);
        assert_ne!(code, Some(0), "{out}");
        assert!(out.contains(message), "{message:?} not in {out}");
        assert!(
            out.contains("the policy's targets answer 500 until it is fixed"),
            "{out}"
        );
    }
    let dir = TempDir::new();
    dir.write("shop.openapi.yaml", OPENAPI);
    let yaml = gateway_yaml(free_port())
        + &service_yaml("shop", free_port(), None)
        + &prefix_route("api", "/api", "shop", "")
        + &policy("{file: shop.openapi.yaml}", "");
    dir.write("gw.yaml", &yaml);
    let (code, out) = check(&dir);
    assert_eq!(code, Some(0), "{out}");
    for said in [
        "ApiSchemaPolicy default/shop-api -> HTTPRoute api: applies",
        "ApiSchemaPolicy default/shop-api: 3 operations under /api; other requests passed unchecked; JSON bodies up to 1048576 bytes",
    ] {
        assert!(out.contains(said), "{said:?} not in {out}");
    }
}

/// Bodies without a length — HTTP/1.1 chunks, HTTP/2 frames with no
/// `content-length` — are read whole, checked, and sent on whole; past
/// the bound they are refused (`413`), and the connection still works
/// (HTTP/2) or is closed (HTTP/1.1).
#[tokio::test]
async fn streamed_bodies_are_read_checked_and_sent_on_whole() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (_gw, port, _dir, _app) = start(&policy(
        "{file: shop.openapi.yaml}",
        "  maxBodyBytes: 200\n",
    ))
    .await;
    let chunked = |chunks: &[&str]| {
        let mut req = String::from("POST /api/reviews HTTP/1.1\r\nHost: shop.example.com\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n");
        for c in chunks {
            req += &format!("{:x}\r\n{c}\r\n", c.len());
        }
        req + "0\r\n\r\n"
    };
    let exchange = |text: String| async move {
        let mut tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .expect("connect");
        tcp.write_all(text.as_bytes()).await.expect("write");
        let mut out = Vec::new();
        let _ = tokio::time::timeout(std::time::Duration::from_secs(3), tcp.read_to_end(&mut out))
            .await;
        String::from_utf8_lossy(&out).into_owned()
    };
    let good = chunked(&[r#"{"product": 1, "#, r#""stars": 3}"#]);
    let answer = exchange(good.replace("\r\n\r\n", "\r\nConnection: close\r\n\r\n")).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.contains("\"bodyBytes\":26"), "{answer}");
    let bad = chunked(&[r#"{"product": 1, "#, r#""stars": 0}"#]);
    let answer = exchange(bad.replace("\r\n\r\n", "\r\nConnection: close\r\n\r\n")).await;
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    assert!(
        answer.contains("body/stars: 0 is less than the minimum of 1"),
        "{answer}"
    );
    let long = format!(
        r#"{{"product": 1, "stars": 3, "text": "{}"}}"#,
        "x".repeat(300)
    );
    let answer = exchange(chunked(&[&long[..100], &long[100..]])).await;
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");

    // Refused before its body is read: what follows the body on the
    // connection is never taken for a request of its own.
    let hidden = "GET /api/orders HTTP/1.1\r\nHost: shop.example.com\r\n\r\n";
    let text = format!(
        "GET /api/products?limit=500 HTTP/1.1\r\nHost: shop.example.com\r\nx-tenant: acme\r\nContent-Length: {}\r\n\r\n{hidden}{}",
        hidden.len(),
        hidden.replace("\r\n\r\n", "\r\nConnection: close\r\n\r\n")
    );
    let answer = exchange(text).await;
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    assert_eq!(
        answer.matches("HTTP/1.1 ").count(),
        2,
        "the request, then only what followed its body: {answer}"
    );

    // HTTP/2: two DATA frames, no content-length; then one too long,
    // then the connection still serves.
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect");
    let mut h2 = h2_over::<_, http_body_util::StreamBody<_>>(tcp).await;
    let post = |parts: Vec<String>| {
        let frames = parts.into_iter().map(|p| {
            Ok::<_, std::convert::Infallible>(hyper::body::Frame::data(bytes::Bytes::from(p)))
        });
        let body =
            http_body_util::StreamBody::new(futures_util::stream::iter(frames.collect::<Vec<_>>()));
        http::Request::post(format!("http://shop.example.com:{port}/api/reviews"))
            .header("content-type", "application/json")
            .body(body)
            .expect("request")
    };
    let r = h2
        .send_request(post(vec![
            r#"{"product": 2,"#.into(),
            r#" "stars": 5}"#.into(),
        ]))
        .await
        .expect("answer");
    assert_eq!(r.status(), 200);
    let r = h2
        .send_request(post(vec![long[..150].into(), long[150..].into()]))
        .await
        .expect("answer");
    assert_eq!(r.status(), 413);
    let r = h2
        .send_request(post(vec![r#"{"product": "two", "stars": 5}"#.into()]))
        .await
        .expect("answer");
    assert_eq!(r.status(), 400);
}

/// A path a backend may read as another — `//`, dot segments, an encoded
/// letter or `/`, a `;` parameter — is refused even when unknown
/// operations pass; a trailing `/` is checked as if absent; a parameter
/// given twice is refused (a backend may read either value).
#[tokio::test]
async fn paths_a_backend_could_read_otherwise_are_refused() {
    let (gw, port, _dir, _app) = start(&policy("{file: shop.openapi.yaml}", "")).await;
    let get = |path| ("GET", path);
    for path in [
        "/api//products/1",
        "/api/./products/1",
        "/api/x/../products/1",
        "/api/%70roducts/1",
        "/api/products%2F1",
        "/api/products;v=2/1",
        "/api/products/1/..",
    ] {
        let r = call(port, get(path), &[TENANT], "").await;
        assert_eq!(
            (r.status, r.reason()),
            (400, Some("request_invalid")),
            "{path}: {}",
            gw.logs()
        );
        assert!(
            said(&r).contains("the path is not in normal form"),
            "{}",
            said(&r)
        );
    }
    let r = call(port, get("/api/products/abc/"), &[], "").await;
    assert_eq!(r.status, 400, "trailing / checked: {}", said(&r));
    assert!(said(&r).contains("path parameter id"), "{}", said(&r));
    assert_eq!(
        call(port, get("/api/products/12/"), &[], "").await.status,
        200
    );
    let r = call(port, get("/api/products?limit=5&limit=500"), &[TENANT], "").await;
    assert_eq!(r.status, 400);
    assert!(
        said(&r).contains("query parameter limit: is given 2 times"),
        "{}",
        said(&r)
    );
    let twice = [JSON, ("content-type", "text/plain")];
    let r = call(
        port,
        ("POST", "/api/reviews"),
        &twice,
        r#"{"product": 1, "stars": 3}"#,
    )
    .await;
    assert_eq!(r.status, 400);
    assert!(
        said(&r).contains("header Content-Type: is given more than once"),
        "{}",
        said(&r)
    );
}

/// A policy that cannot be read fails closed: its route answers `500`
/// (`policy_invalid`) until it is fixed, and another route is served.
#[tokio::test]
async fn a_broken_policy_fails_closed() {
    let (gw, port, _dir, _app) = start(&policy("{file: nowhere.yaml}", "")).await;
    let r = call(port, ("GET", "/api/products?limit=5"), &[TENANT], "").await;
    assert_eq!(
        (r.status, r.reason()),
        (500, Some("policy_invalid")),
        "{}",
        gw.logs()
    );
    assert!(said(&r).contains("not valid"), "{}", said(&r));
}
