//! BodyTransform through the real binary: a client's JSON reaches an XML
//! backend as XML (and back), fields are edited with the request's own
//! values, answers of another type pass untouched, and bodies that are
//! too large or not what the filter expects are refused with a reason —
//! never half-sent.

mod common;
use common::*;
use http::Response;
use http_body_util::{BodyExt, Full};
use std::sync::{Arc, Mutex};

/// What the backend got: Content-Type, Content-Length, Accept-Encoding, body.
type Seen = Arc<Mutex<Vec<(String, String, String, String)>>>;

/// A backend that records each request and answers by path: `/xml` an
/// XML order, `/json` a JSON order, `/page` an HTML page, `/gzip` JSON
/// said to be gzipped, `/big` 5,000 bytes of JSON.
async fn backend() -> (u16, Seen) {
    let seen: Seen = Arc::default();
    let record = seen.clone();
    let port = serve_loopback(move |req: http::Request<hyper::body::Incoming>| {
        let record = record.clone();
        async move {
            let header = |n: &str| {
                req.headers()
                    .get(n)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("-")
                    .to_string()
            };
            let (ct, cl, ae) = (
                header("content-type"),
                header("content-length"),
                header("accept-encoding"),
            );
            let path = req.uri().path().to_string();
            let body = req.into_body().collect().await.map(|b| b.to_bytes());
            let body = String::from_utf8_lossy(&body.unwrap_or_default()).into_owned();
            record.lock().expect("lock").push((ct, cl, ae, body));
            let (ct, answer, coding): (&str, String, Option<&str>) = match path.as_str() {
                "/xml" => (
                    "text/xml",
                    r#"<order id="7"><item>2</item><item>3</item></order>"#.into(),
                    None,
                ),
                "/json" => ("application/json", r#"{"id":7,"secret":"s"}"#.into(), None),
                "/gzip" => ("application/json", r#"{"id":7}"#.into(), Some("gzip")),
                "/big" => (
                    "application/json",
                    format!(r#"{{"pad":"{}"}}"#, "x".repeat(5000)),
                    None,
                ),
                _ => ("text/html", "<p>a page</p>".into(), None),
            };
            let mut r = Response::builder()
                .header("content-type", ct)
                .header("etag", "\"v1\"");
            if let Some(c) = coding {
                r = r.header("content-encoding", c);
            }
            Ok::<_, std::convert::Infallible>(
                r.body(Full::new(bytes::Bytes::from(answer)))
                    .expect("answer"),
            )
        }
    })
    .await;
    (port, seen)
}

const TRANSFORMS: &str = r#"---
apiVersion: policy.strait.dev/v1alpha1
kind: BodyTransform
metadata: {name: to-legacy}
spec:
  maxBodyBytes: 4096
  request:
    convert: JSONToXML
    rootElement: order
    edits:
    - {op: Remove, path: /password}
    - {op: Set, path: /channel, value: "{{ request.header.x-channel }} via {{ request.method }}"}
  response:
    convert: XMLToJSON
    edits:
    - {op: Rename, path: /order/@id, to: /order/id}
---
apiVersion: policy.strait.dev/v1alpha1
kind: BodyTransform
metadata: {name: redact}
spec:
  maxBodyBytes: 4096
  response:
    edits:
    - {op: Remove, path: /secret}
    - {op: Set, path: /path, value: "{{ request.path }}"}
    - {op: Set, path: /asker, value: "{{ request.header.x-asker }}"}
"#;

fn route(name: &str, prefix: &str, rewrite: &str, transform: &str) -> String {
    prefix_route(
        name,
        prefix,
        "legacy",
        &format!(
            "    filters:\n    - type: URLRewrite\n      urlRewrite: {{path: {{type: ReplacePrefixMatch, replacePrefixMatch: {rewrite}}}}}\n    \
             - type: ExtensionRef\n      extensionRef: {{group: policy.strait.dev, kind: BodyTransform, name: {transform}}}\n"
        ),
    )
}

async fn start() -> (Gateway, u16, Seen, TempDir) {
    let (app, seen) = backend().await;
    let port = free_port();
    let dir = TempDir::new();
    let yaml = gateway_yaml(port)
        + &service_yaml("legacy", app, None)
        + &route("orders", "/orders", "/xml", "to-legacy")
        + &route("html", "/page", "/page", "to-legacy")
        + &route("account", "/account", "/json", "redact")
        + &route("gzip", "/gzip", "/gzip", "redact")
        + &route("big", "/big", "/big", "redact")
        + TRANSFORMS;
    dir.write("gw.yaml", &yaml);
    let gw = Gateway::start_with(&dir, &[]).await;
    (gw, port, seen, dir)
}

async fn post(port: u16, path: &str, headers: &[(&str, &str)], body: &str) -> Resp {
    let mut req = request("POST", port, "shop.example.com", path, headers);
    *req.body_mut() = Full::new(bytes::Bytes::from(body.to_string()));
    send(req).await.expect("gateway answers")
}

async fn fetch(port: u16, path: &str) -> Resp {
    let req = request("GET", port, "shop.example.com", path, &[]);
    send(req).await.expect("gateway answers")
}

fn text(r: &Resp) -> String {
    String::from_utf8_lossy(&r.body).into_owned()
}

fn header<'a>(r: &'a Resp, name: &str) -> &'a str {
    r.headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("-")
}

#[tokio::test]
async fn json_reaches_an_xml_backend_as_xml_and_its_answer_comes_back_as_json() {
    let (gw, port, seen, _dir) = start().await;
    let r = post(
        port,
        "/orders",
        &[
            ("content-type", "application/json"),
            ("x-channel", "web"),
            ("accept-encoding", "gzip"),
        ],
        r#"{"item":[2,3],"password":"p","note":"a < b"}"#,
    )
    .await;
    assert_eq!(r.status, 200, "{}\n{}", text(&r), gw.logs());
    // The backend got XML, with its own length, and no coding asked for.
    let got = seen.lock().expect("lock").pop().expect("a request");
    let xml = "<?xml version=\"1.0\" encoding=\"UTF-8\"?><order><item>2</item><item>3</item>\
               <note>a &lt; b</note><channel>web via POST</channel></order>";
    assert_eq!(got.0, "application/xml; charset=utf-8");
    assert_eq!(got.1, xml.len().to_string());
    assert_eq!(
        got.2, "-",
        "Accept-Encoding is taken off when answers are transformed"
    );
    assert_eq!(got.3, xml);
    // The XML answer came back as JSON, edited, with its length and type.
    assert_eq!(text(&r), r#"{"order":{"item":["2","3"],"id":"7"}}"#);
    assert_eq!(header(&r, "content-type"), "application/json");
    assert_eq!(header(&r, "content-length"), r.body.len().to_string());
    assert_eq!(
        header(&r, "etag"),
        "-",
        "a validator of the old body is dropped"
    );

    // A request with no body passes as it is; so does an answer of
    // another type than the filter reads.
    let page = fetch(port, "/page").await;
    assert_eq!(page.status, 200);
    assert_eq!(text(&page), "<p>a page</p>");
    assert_eq!(header(&page, "etag"), "\"v1\"");

    // JSON to JSON: a field removed, two set from the request (its path,
    // a header the template names, kept from before it was sent on).
    let req = request(
        "GET",
        port,
        "shop.example.com",
        "/account",
        &[("x-asker", "ann")],
    );
    let account = send(req).await.expect("gateway answers");
    assert_eq!(
        text(&account),
        r#"{"id":7,"path":"/account","asker":"ann"}"#
    );
}

#[tokio::test]
async fn bodies_the_filter_cannot_read_are_refused_with_the_reason() {
    let (gw, port, seen, _dir) = start().await;
    let json = ("content-type", "application/json");
    let cases = [
        (
            post(port, "/orders", &[("content-type", "text/plain")], "hello").await,
            (415, "media_type_unsupported"),
            "the request's body must be JSON (its Content-Type is text/plain)",
        ),
        (
            post(port, "/orders", &[json], r#"{"a":1,"a":2}"#).await,
            (400, "body_transform_failed"),
            "not JSON: member \"a\" given twice",
        ),
        (
            post(port, "/orders", &[json], r#"{"bad name":1}"#).await,
            (400, "body_transform_failed"),
            "\"bad name\" cannot be an XML name",
        ),
        (
            post(
                port,
                "/orders",
                &[json],
                &format!(r#"{{"pad":"{}"}}"#, "x".repeat(5000)),
            )
            .await,
            (413, "body_too_large"),
            "",
        ),
    ];
    for (r, (status, reason), says) in &cases {
        assert_eq!(r.status, *status, "{}\n{}", text(r), gw.logs());
        assert_eq!(r.reason(), Some(*reason), "{}", text(r));
        assert!(text(r).contains(says), "{}", text(r));
    }
    assert_eq!(
        header(&cases[1].0, "x-strait-transform"),
        "default/to-legacy"
    );
    assert!(
        seen.lock().expect("lock").is_empty(),
        "no refused request reached the backend"
    );

    // The backend's answers: too large, or coded though none was asked.
    let big = fetch(port, "/big").await;
    assert_eq!(big.status, 502, "{}", text(&big));
    assert_eq!(big.reason(), Some("response_transform_failed"));
    assert!(
        text(&big).contains("over maxBodyBytes (4096)"),
        "{}",
        text(&big)
    );
    let coded = fetch(port, "/gzip").await;
    assert_eq!(coded.status, 502, "{}", text(&coded));
    assert!(text(&coded).contains("encoded"), "{}", text(&coded));
}

#[tokio::test]
async fn a_bad_transform_is_refused_by_field_and_its_rule_answers_500() {
    let (app, _seen) = backend().await;
    let port = free_port();
    let dir = TempDir::new();
    let yaml = gateway_yaml(port)
        + &service_yaml("legacy", app, None)
        + &route("orders", "/orders", "/json", "broken")
        + "---\napiVersion: policy.strait.dev/v1alpha1\nkind: BodyTransform\nmetadata: {name: broken}\n\
           spec:\n  request: {convert: CSV}\n";
    dir.write("gw.yaml", &yaml);
    let (code, out) = check(&dir);
    assert_eq!(code, Some(1), "{out}");
    assert!(
        out.contains("BodyTransform default/broken: spec.request.convert: \"CSV\" is not JSONToXML or XMLToJSON"),
        "{out}"
    );
    let gw = Gateway::start_with(&dir, &[]).await;
    let r = post(
        port,
        "/orders",
        &[("content-type", "application/json")],
        "{}",
    )
    .await;
    assert_eq!(r.status, 500, "{}\n{}", text(&r), gw.logs());
    assert_eq!(r.reason(), Some("extension_unresolved"));
}
