//! The CA checking tokens with the Kubernetes API (`strait control
//! --token-review`), against a stand-in API server on 127.0.0.1 that
//! kube-rs reaches through a kubeconfig, as it would a real one. No real
//! API server can run here (see docs/identity.md for what that leaves
//! untested). The stand-in answers TokenReviews the way the API server
//! does and records what it was asked.

mod common;
use bytes::Bytes;
use common::identity::*;
use common::*;
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::sync::{Arc, Mutex};
use strait_identity::SpiffeId;

/// What the stand-in was sent: the Authorization header and the body.
type Seen = Arc<Mutex<Vec<(String, serde_json::Value)>>>;

/// A TokenReview answer for `token`, as the API server would give it.
fn review(token: &str, audiences: &serde_json::Value) -> serde_json::Value {
    let status = match token {
        "k8s-payment" => serde_json::json!({
            "authenticated": true,
            "user": {"username": "system:serviceaccount:shop:payment", "uid": "1"},
            "audiences": audiences,
        }),
        "k8s-other-audience" => serde_json::json!({
            "authenticated": true,
            "user": {"username": "system:serviceaccount:shop:payment"},
            "audiences": ["https://kubernetes.default.svc"],
        }),
        "k8s-node" => serde_json::json!({
            "authenticated": true,
            "user": {"username": "system:node:worker-1"},
            "audiences": audiences,
        }),
        _ => serde_json::json!({"authenticated": false, "error": "invalid bearer token"}),
    };
    serde_json::json!({
        "apiVersion": "authentication.k8s.io/v1",
        "kind": "TokenReview",
        "metadata": {"creationTimestamp": null},
        "spec": {"token": token, "audiences": audiences},
        "status": status,
    })
}

async fn stand_in_api() -> (u16, Seen) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let seen: Seen = Arc::default();
    let record = seen.clone();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let record = record.clone();
            tokio::spawn(async move {
                let svc = service_fn(move |req: http::Request<hyper::body::Incoming>| {
                    let record = record.clone();
                    async move {
                        let auth = req
                            .headers()
                            .get("authorization")
                            .and_then(|v| v.to_str().ok())
                            .unwrap_or("")
                            .to_string();
                        let path = req.uri().path().to_string();
                        let body = req.into_body().collect().await.map(|b| b.to_bytes());
                        let body: serde_json::Value = body
                            .ok()
                            .and_then(|b| serde_json::from_slice(&b).ok())
                            .unwrap_or_default();
                        let (status, answer) = if path
                            == "/apis/authentication.k8s.io/v1/tokenreviews"
                        {
                            let token = body["spec"]["token"].as_str().unwrap_or("").to_string();
                            let answer = review(&token, &body["spec"]["audiences"]);
                            (201, answer)
                        } else {
                            (404, serde_json::json!({"kind": "Status", "code": 404}))
                        };
                        if let Ok(mut s) = record.lock() {
                            s.push((auth, body));
                        }
                        Ok::<_, std::convert::Infallible>(
                            http::Response::builder()
                                .status(status)
                                .header("content-type", "application/json")
                                .body(Full::new(Bytes::from(answer.to_string())))
                                .expect("response"),
                        )
                    }
                });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(tcp), svc)
                    .await;
            });
        }
    });
    (port, seen)
}

#[tokio::test]
async fn the_ca_asks_the_kubernetes_api_who_a_token_belongs_to() {
    let (api, seen) = stand_in_api().await;
    let dir = TempDir::new();
    dir.write(
        "empty.yaml",
        "apiVersion: v1\nkind: Namespace\nmetadata: {name: shop}\n",
    );
    let kubeconfig = dir.path().with_extension("kubeconfig");
    std::fs::write(
        &kubeconfig,
        format!(
            "apiVersion: v1\nkind: Config\nclusters: [{{name: stand-in, cluster: {{server: \"http://127.0.0.1:{api}\"}}}}]\n\
             users: [{{name: ca, user: {{token: control-plane-token}}}}]\n\
             contexts: [{{name: stand-in, context: {{cluster: stand-in, user: ca}}}}]\ncurrent-context: stand-in\n"
        ),
    )
    .expect("kubeconfig");
    let control = Control::start_in(
        &dir,
        "127.0.0.1:0",
        &dir.path().with_extension("ca"),
        &["--token-review"],
        &[("KUBECONFIG", &kubeconfig.to_string_lossy())],
    );
    let ca = control.addr.as_str();
    let bundle = strait_identity::ca::certs(
        &std::fs::read(control.ca_dir.join("trust-bundle.pem")).expect("bundle"),
        "bundle",
    )
    .expect("pem");
    let payment = SpiffeId::new("cluster.local", "shop", "payment");
    let fetch = |token: &'static str, id: SpiffeId| {
        let bundle = bundle.clone();
        async move { strait_identity::service::fetch(ca, &bundle, token, &id).await }
    };

    // The API server vouches for the token: signed for that identity.
    let (creds, _) = fetch("k8s-payment", payment.clone()).await.expect("signed");
    assert_eq!(creds.id, payment);
    // The same token cannot get someone else's certificate.
    let why = fetch(
        "k8s-payment",
        SpiffeId::new("cluster.local", "shop", "checkout-api"),
    )
    .await
    .expect_err("another identity");
    assert!(why.contains("PermissionDenied"), "{why}");
    // Refused by the API server, made for another audience, or no
    // ServiceAccount's: no certificate.
    for (token, reason) in [
        ("bogus", "invalid bearer token"),
        ("k8s-other-audience", "audience"),
        ("k8s-node", "not a ServiceAccount"),
    ] {
        let why = fetch(token, payment.clone()).await.expect_err(token);
        assert!(
            why.contains("Unauthenticated") && why.contains(reason),
            "{token}: {why}"
        );
    }

    // What the API server was asked: with the control plane's own
    // credentials, for the proxies' audience.
    let seen = seen.lock().expect("seen").clone();
    assert_eq!(seen.len(), 5, "{seen:?}");
    for (auth, body) in &seen {
        assert_eq!(auth, "Bearer control-plane-token");
        assert_eq!(body["kind"], "TokenReview");
        assert_eq!(body["spec"]["audiences"], serde_json::json!(["strait"]));
    }
}
