//! `strait control --kubernetes`: the control plane watching a cluster
//! with kube-rs and feeding a gateway, against a stand-in API server (no
//! real one runs here; docs/control-plane.md says what that leaves
//! untested). Objects are created, changed and deleted through watch
//! events; a watch ending in `410 Gone` makes the control plane list
//! again, and an object deleted while it was not watching goes.

mod common;
use common::kube_api::FakeApi;
use common::*;

fn route(name: &str, path: &str, version: &str) -> String {
    let tag = format!("    filters: [{{type: ResponseHeaderModifier, responseHeaderModifier: {{set: [{{name: x-version, value: \"{version}\"}}]}}}}]\n");
    prefix_route(name, path, "web", &tag)
}

/// What `path` answers through the gateway: status and `x-version`.
async fn answer(gw_port: u16, path: &str) -> (u16, String) {
    match send(get(gw_port, "shop.example.com", path)).await {
        Ok(r) => {
            let v = r
                .headers
                .get("x-version")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_string();
            (r.status, v)
        }
        Err(_) => (0, String::new()),
    }
}

async fn wait_answer(gw_port: u16, path: &str, want: (u16, &str), logs: &dyn Fn() -> String) {
    let what = || format!("{path}: want {want:?}\n{}", logs());
    eventually(10, what, || async {
        let got = answer(gw_port, path).await;
        (got.0 == want.0 && got.1 == want.1).then_some(())
    })
    .await
}

/// The status last written to `kind` `default/name`, once `ready` holds.
async fn wait_status(
    api: &FakeApi,
    kind: &str,
    name: &str,
    ready: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let status = || {
        api.object(kind, "default", name)
            .map(|o| o["status"].clone())
            .unwrap_or_default()
    };
    eventually(
        10,
        || format!("{kind} {name}: status {}", status()),
        || {
            let now = status();
            let written = !api.status_writes(kind, "default", name).is_empty();
            std::future::ready((ready(&now) && written).then_some(now))
        },
    )
    .await
}

/// (status, reason) of condition `kind`.
fn condition<'a>(of: &'a serde_json::Value, kind: &str) -> (&'a str, &'a str) {
    let c = of["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|c| c["type"] == kind)
        .unwrap_or_else(|| panic!("no {kind} condition in {of}"));
    (
        c["status"].as_str().unwrap_or(""),
        c["reason"].as_str().unwrap_or(""),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_control_plane_follows_the_cluster() {
    let api = FakeApi::start().await;
    let (gw_port, tcp_port) = (free_port(), free_port());
    let web = echo("web", "web-0");
    let gateway = gateway_with(&format!(
        "  - {{name: http, port: {gw_port}, protocol: HTTP, allowedRoutes: {{namespaces: {{from: All}}}}}}\n  - {{name: tcp, port: {tcp_port}, protocol: TCP}}\n"
    ));
    api.apply(&(gateway + &service_yaml("web", web.port, None)));
    // The slice's endpoint is pod web-0, running as ServiceAccount web.
    api.apply(&format!(
        "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {{name: web, labels: {{kubernetes.io/service-name: web}}}}\naddressType: IPv4\nendpoints: [{{addresses: [\"127.0.0.1\"], targetRef: {{kind: Pod, name: web-0, namespace: default}}}}]\nports: [{{name: http, port: {}}}]\n---\napiVersion: v1\nkind: Pod\nmetadata: {{name: web-0}}\nspec: {{serviceAccountName: web, containers: [{{name: web, image: web}}]}}\n",
        web.port
    ));
    api.apply(&route("web", "/", "1"));
    api.serve("SecurityPolicy");
    api.serve("RateLimitPolicy");
    api.serve("ApiSchemaPolicy");
    // Another controller has reported on its own parent of this route.
    let theirs = serde_json::json!({"parentRef": {"name": "other-gw"}, "controllerName": "example.com/other",
        "conditions": [{"type": "Accepted", "status": "True", "reason": "Accepted", "message": "",
                        "lastTransitionTime": "2026-01-01T00:00:00Z"}]});
    api.set_status(
        "HTTPRoute",
        "default",
        "web",
        serde_json::json!({"parents": [theirs]}),
    );

    let dir = TempDir::new();
    let kubeconfig = dir.path().with_extension("kubeconfig");
    api.kubeconfig(&kubeconfig);
    let admin = free_port();
    let admin_addr = format!("127.0.0.1:{admin}");
    let ca_dir = dir.path().with_extension("ca");
    let mut control = std::process::Command::new(STRAIT)
        .args(["control", "--kubernetes", "--listen", "127.0.0.1:0"])
        .args(["--admin", &admin_addr, "--ca-dir"])
        .arg(&ca_dir)
        .env("KUBECONFIG", &kubeconfig)
        .env("STRAIT_LOG", "info")
        .stdout(std::process::Stdio::piped())
        .stderr(std::fs::File::create(dir.path().with_extension("control.log")).expect("log"))
        .spawn()
        .expect("spawn control");
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(control.stdout.take().expect("stdout")),
        &mut line,
    )
    .expect("banner");
    let _control = Proc(control);
    let addr = line.trim().trim_start_matches("listening on ").to_string();
    let control_logs =
        || std::fs::read_to_string(dir.path().with_extension("control.log")).unwrap_or_default();

    let cache = dir.path().with_extension("gw.json");
    let bundle = ca_dir.join("trust-bundle.pem");
    // The gateway proves it runs as strait-system/strait-gateway.
    api.token("gateway-token", "strait-system", "strait-gateway");
    let token = dir.path().with_extension("token");
    std::fs::write(&token, "gateway-token\n").expect("token");
    let flags = [
        "--control",
        addr.as_str(),
        "--trust-bundle",
        bundle.to_str().expect("utf-8"),
        "--cache",
        cache.to_str().expect("utf-8"),
        "--token-file",
        token.to_str().expect("utf-8"),
    ];
    let gw_logs = TempDir::new();
    let gateway = Gateway::launch(&gw_logs, &flags).await;
    let logs = || format!("{}\n--- control:\n{}", gateway.logs(), control_logs());
    wait_answer(gw_port, "/", (200, "1"), &logs).await;

    // The slice reached the gateway completed from its pod.
    let cached = std::fs::read_to_string(&cache).expect("cache");
    assert!(
        cached.contains(r#"\"strait.dev/service-account\":\"web\""#),
        "{cached}"
    );
    assert!(!cached.contains("managedFields"), "{cached}");

    // Status back to the cluster: the route accepted by our Gateway with
    // its references resolved, beside the other controller's entry.
    let route_status = wait_status(&api, "HTTPRoute", "web", |s| {
        s["parents"].as_array().is_some_and(|p| p.len() == 2)
    })
    .await;
    let ours = &route_status["parents"][0];
    assert_eq!(ours["controllerName"], "strait.dev/gateway-controller");
    assert_eq!(ours["parentRef"]["name"], "gw");
    assert_eq!(condition(ours, "Accepted"), ("True", "Accepted"));
    assert_eq!(condition(ours, "ResolvedRefs"), ("True", "ResolvedRefs"));
    assert_eq!(route_status["parents"][1], theirs);
    let gw_status = wait_status(&api, "Gateway", "gw", |s| s["listeners"].is_array()).await;
    let listener = &gw_status["listeners"][0];
    assert_eq!(listener["name"], "http");
    assert_eq!(listener["attachedRoutes"], 1);
    assert_eq!(listener["supportedKinds"][0]["kind"], "HTTPRoute");
    assert_eq!(condition(&gw_status, "Accepted").0, "True", "{gw_status}");
    // A route to a Service that does not exist: ResolvedRefs False.
    api.apply(&prefix_route("broken", "/broken", "nothing", ""));
    let broken = wait_status(&api, "HTTPRoute", "broken", |s| s["parents"].is_array()).await;
    assert_eq!(
        condition(&broken["parents"][0], "ResolvedRefs"),
        ("False", "BackendNotFound"),
        "{broken}"
    );
    // A TCPRoute (served at v1alpha2 here) gets its status too.
    api.apply("apiVersion: gateway.networking.k8s.io/v1alpha2\nkind: TCPRoute\nmetadata: {name: tcp}\nspec: {parentRefs: [{name: gw, sectionName: tcp}], rules: [{backendRefs: [{name: web, port: 80}]}]}\n");
    let tcp = wait_status(&api, "TCPRoute", "tcp", |s| s["parents"].is_array()).await;
    assert_eq!(
        condition(&tcp["parents"][0], "Accepted"),
        ("True", "Accepted"),
        "{tcp}"
    );
    let gw_status = wait_status(&api, "Gateway", "gw", |s| {
        s["listeners"][1]["attachedRoutes"] == 1
    })
    .await;
    assert_eq!(
        gw_status["listeners"][1]["supportedKinds"][0]["kind"],
        "TCPRoute"
    );
    // A SecurityPolicy's status, per target (GEP-713 ancestors): accepted;
    // refused for a Secret that is not there; conflicted where an older
    // policy names the same target.
    let policy = |name: &str, created: &str, secret: &str, target: &str| {
        format!("apiVersion: policy.strait.dev/v1alpha1\nkind: SecurityPolicy\nmetadata: {{name: {name}, creationTimestamp: \"{created}\"}}\nspec:\n  targetRefs: [{{group: gateway.networking.k8s.io, {target}}}]\n  basicAuth: {{users: {{group: \"\", kind: Secret, name: {secret}}}}}\n")
    };
    let broken_route = "kind: HTTPRoute, name: broken";
    api.apply("apiVersion: v1\nkind: Secret\nmetadata: {name: users}\nstringData: {.htpasswd: \"alice:{SHA}EfatjsUqKYSrqv18O1FlA3hcIHI=\"}\n");
    api.apply(&policy(
        "first",
        "2026-01-01T00:00:00Z",
        "users",
        broken_route,
    ));
    api.apply(&policy(
        "second",
        "2026-02-01T00:00:00Z",
        "users",
        broken_route,
    ));
    let listener = "kind: Gateway, name: gw, sectionName: tcp";
    api.apply(&policy(
        "unresolved",
        "2026-03-01T00:00:00Z",
        "nobody",
        listener,
    ));
    let ancestor = |s: &serde_json::Value| s["ancestors"][0].clone();
    let first = wait_status(&api, "SecurityPolicy", "first", |s| {
        s["ancestors"].is_array()
    })
    .await;
    let a = ancestor(&first);
    assert_eq!(a["controllerName"], "strait.dev/gateway-controller");
    assert_eq!(a["ancestorRef"]["kind"], "HTTPRoute", "{first}");
    assert_eq!(a["ancestorRef"]["name"], "broken");
    assert_eq!(condition(&a, "Accepted"), ("True", "Accepted"), "{first}");
    assert_eq!(condition(&a, "ResolvedRefs"), ("True", "ResolvedRefs"));
    let second = wait_status(&api, "SecurityPolicy", "second", |s| {
        s["ancestors"].is_array()
    })
    .await;
    assert_eq!(
        condition(&ancestor(&second), "Accepted"),
        ("False", "Conflicted"),
        "{second}"
    );
    let bad = wait_status(&api, "SecurityPolicy", "unresolved", |s| {
        s["ancestors"].is_array()
    })
    .await;
    let a = ancestor(&bad);
    assert_eq!(condition(&a, "Accepted"), ("False", "Invalid"), "{bad}");
    assert_eq!(
        condition(&a, "ResolvedRefs"),
        ("False", "InvalidRef"),
        "{bad}"
    );
    assert!(
        a["conditions"].to_string().contains("spec.basicAuth"),
        "{bad}"
    );
    // A RateLimitPolicy's likewise: accepted, or refused naming the field.
    let limit = |name: &str, unit: &str| {
        format!("apiVersion: policy.strait.dev/v1alpha1\nkind: RateLimitPolicy\nmetadata: {{name: {name}}}\nspec:\n  targetRefs: [{{group: gateway.networking.k8s.io, kind: HTTPRoute, name: web}}]\n  local: {{rules: [{{limit: {{requests: 100000, unit: {unit}}}}}]}}\n")
    };
    api.apply(&limit("per-second", "Second"));
    api.apply(&limit("weekly", "Week"));
    let good = wait_status(&api, "RateLimitPolicy", "per-second", |s| {
        s["ancestors"].is_array()
    })
    .await;
    let a = ancestor(&good);
    assert_eq!(a["ancestorRef"]["name"], "web", "{good}");
    assert_eq!(condition(&a, "Accepted"), ("True", "Accepted"), "{good}");
    let weekly = wait_status(&api, "RateLimitPolicy", "weekly", |s| {
        s["ancestors"].is_array()
    })
    .await;
    let a = ancestor(&weekly);
    assert_eq!(condition(&a, "Accepted"), ("False", "Invalid"), "{weekly}");
    assert!(
        a["conditions"]
            .to_string()
            .contains("spec.local.rules[0].limit"),
        "{weekly}"
    );
    // An ApiSchemaPolicy's likewise; a ConfigMap that is not there is a
    // reference not resolved.
    let schema = |name: &str, open_api: &str| {
        format!("apiVersion: policy.strait.dev/v1alpha1\nkind: ApiSchemaPolicy\nmetadata: {{name: {name}}}\nspec:\n  targetRefs: [{{group: gateway.networking.k8s.io, kind: HTTPRoute, name: web}}]\n  openAPI: {open_api}\n")
    };
    api.apply(&schema(
        "inline-doc",
        "{inline: '{\"openapi\": \"3.1.0\", \"paths\": {}}'}",
    ));
    api.apply(&schema(
        "missing-doc",
        "{configMapRef: {name: nowhere, key: openapi.yaml}}",
    ));
    let good = wait_status(&api, "ApiSchemaPolicy", "inline-doc", |s| {
        s["ancestors"].is_array()
    })
    .await;
    assert_eq!(
        condition(&ancestor(&good), "Accepted"),
        ("True", "Accepted"),
        "{good}"
    );
    let missing = wait_status(&api, "ApiSchemaPolicy", "missing-doc", |s| {
        s["ancestors"].is_array()
    })
    .await;
    let a = ancestor(&missing);
    assert_eq!(condition(&a, "Accepted"), ("False", "Invalid"), "{missing}");
    assert_eq!(
        condition(&a, "ResolvedRefs"),
        ("False", "InvalidRef"),
        "{missing}"
    );
    assert!(
        a["conditions"]
            .to_string()
            .contains("no ConfigMap default/nowhere"),
        "{missing}"
    );

    // Unchanged statuses are not written again.
    let writes = api.status_writes("HTTPRoute", "default", "web").len();

    // A change, an addition, a deletion: each arrives as a watch event.
    api.apply(&route("web", "/", "2"));
    wait_answer(gw_port, "/", (200, "2"), &logs).await;
    api.apply(&route("extra", "/extra", "x"));
    wait_answer(gw_port, "/extra", (200, "x"), &logs).await;
    api.delete("HTTPRoute", "default", "web");
    wait_answer(gw_port, "/", (404, ""), &logs).await;
    wait_answer(gw_port, "/extra", (200, "x"), &logs).await;

    // `extra` goes while the control plane is not told; its watch ends in
    // 410 Gone: the list that follows no longer has it.
    assert_eq!(
        api.status_writes("HTTPRoute", "default", "web").len(),
        writes,
        "route web's status did not change, and was not written again"
    );
    let lists = api.lists("HTTPRoute");
    api.delete_unseen_then_expire("HTTPRoute", "default", "extra");
    wait_answer(gw_port, "/extra", (404, ""), &logs).await;
    assert!(api.lists("HTTPRoute") > lists, "no new list after 410");

    // A bad object is reported with its path and blocks nothing: its last
    // good version (none here: it is new) is kept, and a good change made
    // with it arrives.
    api.apply(&route("web", "/", "3").replace("port: 80", "port: eighty"));
    api.apply(&route("other", "/other", "o"));
    wait_answer(gw_port, "/other", (200, "o"), &logs).await;
    wait_answer(gw_port, "/", (404, ""), &logs).await;
    let status = send(get(admin, "admin", "/status"))
        .await
        .expect("status")
        .json();
    assert!(
        status["problems"]
            .to_string()
            .contains("HTTPRoute/default/web: spec.rules[0].backendRefs[0].port"),
        "{status}"
    );
}
