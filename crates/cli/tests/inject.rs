//! The sidecar injector (`strait control --webhook-listen`): the API
//! server's AdmissionReview for a pod, sent over HTTPS as the API server
//! sends it (checked against the CA's root, the webhook configuration's
//! `caBundle`), answered with a JSON patch that is applied here to see
//! the pod it makes. No API server runs here: what it does with the
//! patch is Kubernetes' part (docs/control-plane.md).

mod common;
use common::identity::*;
use common::*;
use http_body_util::{BodyExt, Full};
use serde_json::{json, Value};

const NAME: &str = "strait-control.strait-system.svc";

fn review(pod: Value) -> Value {
    json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": "705ab4f5-6393-11e8-b7cc-42010a800002",
            "kind": {"group": "", "version": "v1", "kind": "Pod"},
            "resource": {"group": "", "version": "v1", "resource": "pods"},
            "requestKind": {"group": "", "version": "v1", "kind": "Pod"},
            "requestResource": {"group": "", "version": "v1", "resource": "pods"},
            "namespace": "shop",
            "operation": "CREATE",
            "userInfo": {"username": "system:serviceaccount:kube-system:replicaset-controller"},
            "object": pod,
            "dryRun": false,
        }
    })
}

fn job_pod() -> Value {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"generateName": "report-", "namespace": "shop", "labels": {"job-name": "report"}},
        "spec": {
            "serviceAccountName": "reporter",
            "restartPolicy": "Never",
            "initContainers": [{"name": "migrate", "image": "migrate:1"}],
            "containers": [{"name": "report", "image": "report:1", "ports": [{"containerPort": 8080}]}],
            "volumes": [{"name": "data", "emptyDir": {}}],
        }
    })
}

/// POSTs `body` to the webhook over HTTPS (HTTP/1.1, as a client without
/// HTTP/2 would); the status and the JSON answer.
async fn post(
    port: u16,
    bundle: &[rustls::pki_types::CertificateDer<'static>],
    path: &str,
    body: Vec<u8>,
) -> (u16, Value) {
    let tls = tls_connect(port, NAME, bundle, &[b"http/1.1"], None)
        .await
        .expect("TLS to the webhook, checked against the CA's root");
    let mut send = h1_over::<_, Full<bytes::Bytes>>(tls).await;
    let req = http::Request::post(format!("https://{NAME}{path}"))
        .header("content-type", "application/json")
        .header("host", NAME)
        .body(Full::new(bytes::Bytes::from(body)))
        .expect("request");
    let r = send.send_request(req).await.expect("answer");
    let status = r.status().as_u16();
    let body = r.into_body().collect().await.expect("body").to_bytes();
    (status, serde_json::from_slice(&body).unwrap_or(Value::Null))
}

/// The `name` of each item of a list.
fn names(list: &Value) -> Vec<&str> {
    let items = list.as_array().map(Vec::as_slice).unwrap_or_default();
    items
        .iter()
        .map(|c| c["name"].as_str().unwrap_or(""))
        .collect()
}

fn patched(pod: &Value, answer: &Value) -> Value {
    use base64::Engine;
    let response = &answer["response"];
    assert_eq!(response["patchType"], "JSONPatch", "{answer}");
    let patch = base64::engine::general_purpose::STANDARD
        .decode(response["patch"].as_str().expect("patch"))
        .expect("base64");
    let patch: json_patch::Patch = serde_json::from_slice(&patch).expect("a JSON patch");
    let mut out = pod.clone();
    json_patch::patch(&mut out, &patch).expect("the patch applies to the pod");
    out
}

#[tokio::test]
async fn pods_get_the_proxy_as_a_native_sidecar() {
    let dir = TempDir::new();
    dir.write(
        "ns.yaml",
        "apiVersion: v1\nkind: Namespace\nmetadata: {name: shop}\n",
    );
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let control = Control::start(
        &dir,
        "127.0.0.1:0",
        &[
            "--webhook-listen",
            &listen,
            "--webhook-names",
            NAME,
            "--proxy-image",
            "strait:test",
            "--control-address",
            "strait-control.strait-system.svc:15012",
        ],
    );
    let pem = std::fs::read(control.ca_dir.join("trust-bundle.pem")).expect("bundle");
    let bundle = strait_identity::ca::certs(&pem, "bundle").expect("pem");

    let inject = |pod: Value| {
        let bundle = bundle.clone();
        async move {
            post(
                port,
                &bundle,
                "/inject",
                review(pod).to_string().into_bytes(),
            )
            .await
        }
    };
    let pod = job_pod();
    let (status, answer) = inject(pod.clone()).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["kind"], "AdmissionReview");
    assert_eq!(
        answer["response"]["uid"],
        "705ab4f5-6393-11e8-b7cc-42010a800002"
    );
    assert_eq!(answer["response"]["allowed"], true);
    let out = patched(&pod, &answer);
    eprintln!(
        "{}",
        serde_json::to_string_pretty(&out["spec"]["initContainers"]).unwrap_or_default()
    );

    // Capture first, then the proxy (restartable, probed), then the pod's
    // own init containers; the app's containers untouched.
    let inits = names(&out["spec"]["initContainers"]);
    assert_eq!(inits, ["strait-init", "strait-proxy", "migrate"]);
    assert_eq!(out["spec"]["containers"], pod["spec"]["containers"]);
    let init = &out["spec"]["initContainers"][0];
    assert_eq!(
        init["securityContext"]["capabilities"]["add"],
        json!(["NET_ADMIN", "NET_RAW"])
    );
    assert_eq!(init["args"][0], "proxy-init");
    let proxy = &out["spec"]["initContainers"][1];
    assert_eq!(proxy["restartPolicy"], "Always");
    assert_eq!(proxy["image"], "strait:test");
    assert_eq!(proxy["startupProbe"]["httpGet"]["path"], "/ready");
    assert_eq!(proxy["securityContext"]["runAsUser"], 1337);
    let args: Vec<&str> = proxy["args"]
        .as_array()
        .expect("args")
        .iter()
        .map(|a| a.as_str().unwrap_or(""))
        .collect();
    let flag = |name: &str| args.iter().position(|a| *a == name).map(|i| args[i + 1]);
    // A pod no controller owns is its own workload.
    assert_eq!(flag("--workload"), Some("$(POD_NAMESPACE)/$(POD_NAME)"));
    assert_eq!(flag("--pod"), Some("$(POD_NAME)"));
    assert_eq!(flag("--service-account"), Some("reporter"));
    assert_eq!(flag("--app-port"), Some("8080"));
    assert_eq!(
        flag("--control"),
        Some("strait-control.strait-system.svc:15012")
    );
    assert_eq!(flag("--token-file"), Some("/var/run/strait/token/token"));
    // The trust bundle rides on the pod, read back as a file.
    assert_eq!(
        out["metadata"]["annotations"]["strait.dev/trust-bundle"].as_str(),
        Some(String::from_utf8_lossy(&pem).as_ref())
    );
    assert_eq!(
        out["metadata"]["annotations"]["strait.dev/injected"],
        "true"
    );
    let volumes = names(&out["spec"]["volumes"]);
    assert_eq!(
        volumes,
        ["data", "strait-token", "strait-bundle", "strait-cache"]
    );
    assert_eq!(
        out["spec"]["volumes"][1]["projected"]["sources"][0]["serviceAccountToken"]["audience"],
        "strait"
    );
    // The injected pod is a Pod: every field is one of Kubernetes' (none
    // is dropped by k8s-openapi's types), of the right type.
    let typed: k8s_openapi::api::core::v1::Pod =
        serde_json::from_value(out.clone()).expect("a Pod");
    assert_eq!(serde_json::to_value(&typed).expect("json"), out);

    // A field this build does not know stays where it was.
    let mut newer = job_pod();
    newer["spec"]["initContainers"][0]["futureField"] = json!({"x": 1});
    let (_, answer) = inject(newer.clone()).await;
    let out_newer = patched(&newer, &answer);
    assert_eq!(
        out_newer["spec"]["initContainers"][2],
        newer["spec"]["initContainers"][0]
    );

    // Injecting twice changes nothing; a pod that opts out is left alone.
    let (_, again) = inject(out).await;
    assert_eq!(again["response"]["allowed"], true);
    assert!(again["response"]["patch"].is_null(), "{again}");
    let mut opted_out = job_pod();
    opted_out["metadata"]["annotations"] = json!({"strait.dev/inject": "false"});
    let (_, left) = inject(opted_out).await;
    assert!(left["response"]["patch"].is_null(), "{left}");

    // Bad input gets a 4xx, and the webhook goes on serving.
    let (status, why) = post(port, &bundle, "/inject", b"{\"kind\": \"Pod\"".to_vec()).await;
    assert_eq!(status, 400, "{why}");
    let (status, _) = post(port, &bundle, "/other", b"{}".to_vec()).await;
    assert_eq!(status, 404);
    let (status, _) = inject(job_pod()).await;
    assert_eq!(status, 200);
}
