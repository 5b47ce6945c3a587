//! `strait explain`: the real binary's account of requests to the shop
//! example and to a folder of the test's own — the rule, each policy's
//! part and the decisions the request alone settles, the backends.

mod common;
use common::*;
use std::path::Path;

fn explain(dir: &Path, args: &[&str]) -> (Option<i32>, String) {
    let out = std::process::Command::new(STRAIT)
        .arg("explain")
        .arg(dir)
        .args(args)
        .output()
        .expect("run strait explain");
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.code(), text)
}

fn shop() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/shop")
}

#[test]
fn the_shop_s_requests_are_explained_phase_by_phase() {
    let (code, out) = explain(
        &shop(),
        &["GET", "http://shop.example.com:8080/api/products/42"],
    );
    assert_eq!(code, Some(0), "{out}");
    for line in [
        "listener  shop/shop/http (address *:8080)",
        "route     shop/storefront rule 0",
        "limit     RateLimitPolicy shop/api-per-client rule per-client: 5 a second (burst 10), one count per client, local",
        "schema    ApiSchemaPolicy shop/product-api: operation getProduct: its parameters and JSON body are checked",
        "backend   shop/product-api:80 (1 of 1): HTTP/1.1 to one of",
    ] {
        assert!(out.contains(line), "{line}\n{out}");
    }
    let (_, out) = explain(
        &shop(),
        &["POST", "http://shop.example.com:8080/api/checkout"],
    );
    assert!(
        out.contains("authn     SecurityPolicy shop/checkout-users: asks for a JWT; this request carries no token: 401 (jwt_missing)"),
        "{out}"
    );
    let token = [
        "POST",
        "http://shop.example.com:8080/api/checkout",
        "-H",
        "authorization: Bearer a.b.c",
    ];
    let (_, out) = explain(&shop(), &token);
    assert!(out.contains("checked when served"), "{out}");
    let preflight = [
        "OPTIONS",
        "http://shop.example.com:8080/api/cart",
        "-H",
        "origin: https://shop.example.com",
        "-H",
        "access-control-request-method: PUT",
    ];
    let (_, out) = explain(&shop(), &preflight);
    assert!(
        out.contains("cors      a preflight: strait answers it"),
        "{out}"
    );
    let (_, out) = explain(
        &shop(),
        &["POST", "http://shop.example.com:8080/api/orders"],
    );
    assert!(
        out.contains("no operation of the document has this path: 404 (operation_unknown)"),
        "{out}"
    );
    let (_, out) = explain(&shop(), &["GET", "http://elsewhere.example.com:8080/"]);
    assert!(
        out.contains("no listener on port 8080 takes host elsewhere.example.com: 404 (no_route)"),
        "{out}"
    );
    let (code, out) = explain(&shop(), &["GET", "/relative"]);
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("give an absolute URL"), "{out}");
}

#[test]
fn extensions_and_backends_of_a_folder_are_explained() {
    let dir = TempDir::new();
    let yaml = gateway_yaml(8081)
        + &service_yaml("legacy", 9999, None)
        + &prefix_route(
            "orders",
            "/orders",
            "legacy",
            "    filters:\n    - type: ExtensionRef\n      extensionRef: {group: policy.strait.dev, kind: BodyTransform, name: to-legacy}\n",
        )
        + &prefix_route(
            "broken",
            "/broken",
            "legacy",
            "    filters:\n    - type: ExtensionRef\n      extensionRef: {group: policy.strait.dev, kind: BodyTransform, name: missing}\n",
        )
        + "---\napiVersion: policy.strait.dev/v1alpha1\nkind: BodyTransform\nmetadata: {name: to-legacy}\n\
           spec:\n  request: {convert: JSONToXML}\n  response: {convert: XMLToJSON}\n";
    dir.write("gw.yaml", &yaml);
    let (code, out) = explain(dir.path(), &["POST", "http://any.example.com:8081/orders"]);
    assert_eq!(code, Some(0), "{out}");
    assert!(
        out.contains("transform BodyTransform default/to-legacy: the request's body JSON to XML, the answer's XML to JSON (bodies up to 1048576 bytes)"),
        "{out}"
    );
    assert!(
        out.contains("backend   default/legacy:80 (1 of 1): HTTP/1.1 to one of 127.0.0.1:9999"),
        "{out}"
    );
    let (_, out) = explain(dir.path(), &["POST", "http://any.example.com:8081/broken"]);
    assert!(
        out.contains("BodyTransform default/missing not found: 500 (extension_unresolved)"),
        "{out}"
    );
    let (_, out) = explain(dir.path(), &["GET", "http://any.example.com:8081/other"]);
    assert!(
        out.contains("none of the listener's routes has a rule that matches: 404 (no_route)"),
        "{out}"
    );
}

/// `--from`: a call between workloads, at the caller's sidecar (the
/// Service's route and backends) and at each callee's (mutual TLS,
/// SecurityPolicy, AuthorizationPolicy, the workload's limits).
#[test]
fn a_call_between_workloads_is_explained_at_both_sidecars() {
    let dir = TempDir::new();
    for file in std::fs::read_dir(shop()).expect("shop") {
        let path = file.expect("entry").path();
        let name = path
            .file_name()
            .expect("name")
            .to_string_lossy()
            .into_owned();
        dir.write(&name, &std::fs::read_to_string(&path).expect("read"));
    }
    dir.write(
        "limits.yaml",
        "apiVersion: policy.strait.dev/v1alpha1\nkind: RateLimitPolicy\nmetadata: {name: v1-calls, namespace: shop}\n\
         spec:\n  targetRefs: [{group: apps, kind: Deployment, name: payment-service-v1}]\n\
         \x20 local:\n    rules:\n    - name: per-caller\n      clientSelectors: [{sourceIdentity: {type: Distinct}}]\n\
         \x20     limit: {requests: 50, unit: Second}\n",
    );
    let call = [
        "POST",
        "http://payment-service/pay",
        "--from",
        "shop/checkout-api",
        "--service-account",
        "checkout-api",
        "-H",
        "authorization: Bearer a.b.c",
    ];
    let (code, out) = explain(dir.path(), &call);
    assert_eq!(code, Some(0), "{out}");
    for line in [
        "caller    workload shop/checkout-api, identity spiffe://cluster.local/ns/shop/sa/checkout-api",
        "outbound  Service shop/payment-service port 80",
        "route     shop/payment-canary rule 1",
        "backend   shop/payment-service-v1:80 (95 of 100)",
        "inbound   shop/payment-service-v1:80: workload shop/payment-service-v1",
        "mtls      with a workload certificate, the callee's sidecar must prove spiffe://cluster.local/ns/shop/sa/payment-service-v1",
        "peer      PeerAuthentication STRICT: mutual TLS only",
        "authn     SecurityPolicy shop/payment-users: asks for a JWT; the token's signature and claims are checked when served",
        "authz     allowed by AuthorizationPolicy shop/payment-callers rule 0",
        "limit     RateLimitPolicy shop/v1-calls rule per-caller: 50 a second (burst 50), one count per source_identity, local",
        "inbound   shop/payment-service-v2:80: workload shop/payment-service-v2",
    ] {
        assert!(out.contains(line), "{line}\n{out}");
    }
    assert_eq!(
        out.matches("limit     ").count(),
        1,
        "v2 has no limit: {out}"
    );

    let beta = [
        "GET",
        "http://payment-service.shop.svc.cluster.local/pay",
        "--from",
        "shop/web",
        "--to",
        "shop/payment-service-v2",
        "-H",
        "cookie: version=beta",
    ];
    let (_, out) = explain(dir.path(), &beta);
    for line in [
        "route     shop/payment-canary rule 0",
        "inbound   workload shop/payment-service-v2",
        "this request carries no token: 401 (jwt_missing)",
        "authz     denied: no rule of AuthorizationPolicy shop/payment-callers allows this call: 403 (authz_denied)",
    ] {
        assert!(out.contains(line), "{line}\n{out}");
    }
    assert_eq!(out.matches("inbound").count(), 1, "only --to: {out}");

    dir.write(
        "cart-route.yaml",
        "apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {name: cart-tag, namespace: shop}\n\
         spec:\n  parentRefs: [{group: \"\", kind: Service, name: cart-api, port: 80}]\n  rules:\n\
         \x20 - filters: [{type: RequestHeaderModifier, requestHeaderModifier: {set: [{name: x-tag, value: a}]}}]\n\
         \x20   backendRefs: [{name: cart-api, port: 80}]\n",
    );
    let (_, out) = explain(
        dir.path(),
        &["GET", "http://cart-api/", "--from", "shop/web"],
    );
    for line in [
        "route     shop/cart-tag rule 0",
        "note      the callee's checks below judge the request as the caller sent it",
    ] {
        assert!(out.contains(line), "{line}\n{out}");
    }
    dir.write("legacy.yaml", &service_yaml("legacy", 9999, None));
    let (_, out) = explain(
        dir.path(),
        &["GET", "http://legacy/", "--from", "default/web"],
    );
    for line in [
        "route     no route is attached: calls go to the Service's endpoints",
        "inbound   default/legacy:80: workload default/legacy",
        "its endpoints are not meshed: no sidecar takes the call",
    ] {
        assert!(out.contains(line), "{line}\n{out}");
    }
    let (_, out) = explain(
        dir.path(),
        &["GET", "http://cart-api:81/", "--from", "shop/web"],
    );
    assert!(
        out.contains(
            "no Service shop/cart-api with port 81 in the folder: passed through or refused"
        ),
        "{out}"
    );
    let (code, out) = explain(dir.path(), &["GET", "http://cart-api/", "--from", "web"]);
    assert_ne!(code, Some(0), "{out}");
    assert!(out.contains("give NAMESPACE/NAME"), "{out}");
}
