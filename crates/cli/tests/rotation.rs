//! Certificate rotation under load, through real processes: sidecars with
//! one-minute certificates renew them again and again while a client
//! sends steady traffic between them; the CA root is rotated once
//! (new root trusted, then signing, then the old one dropped), and the CA
//! is down for a while in the middle. Not one request may fail.
//!
//! `STRAIT_ROTATION_SECONDS` sets the run's length (default 300, the
//! issue's five minutes; the outage alone needs up to 90 s, so shorter
//! runs stretch).

mod common;
use common::identity::*;
use common::*;
use http_body_util::Empty;
use std::path::Path;
use std::time::{Duration, Instant};

/// One call through the caller's outbound listener, on a connection of
/// its own; the status, or why there was none.
async fn try_call(proxy: u16, url: &str) -> Result<u16, String> {
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", proxy))
        .await
        .map_err(|e| e.to_string())?;
    let mut send = h1_over::<_, Empty<bytes::Bytes>>(tcp).await;
    let req = http::Request::get(url)
        .body(Empty::new())
        .map_err(|e| e.to_string())?;
    let r = tokio::time::timeout(Duration::from_secs(5), send.send_request(req))
        .await
        .map_err(|_| "no answer in 5 s".to_string())?
        .map_err(|e| e.to_string())?;
    Ok(r.status().as_u16())
}

/// Payment's certificate count: now, or once it has moved past `seen`.
async fn renewal(sidecar: &Sidecar, seen: Option<f64>) -> f64 {
    eventually(
        70,
        || "no renewal".into(),
        || async {
            let n = metric(
                &sidecar.metrics().await,
                "strait_identity_certificates_issued_total",
            );
            seen.is_none_or(|s| n > s).then_some(n)
        },
    )
    .await
}

fn write_root(dir: &Path) {
    std::fs::create_dir_all(dir).expect("ca dir");
    let (cert, key) = strait_identity::ca::new_root("cluster.local").expect("root");
    std::fs::write(dir.join("ca.crt"), cert).expect("ca.crt");
    std::fs::write(dir.join("ca.key"), key).expect("ca.key");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotation_and_a_ca_outage_lose_no_request() {
    let total = Duration::from_secs(
        std::env::var("STRAIT_ROTATION_SECONDS")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(300),
    );
    let dir = TempDir::new();
    let payment_in = free_port();
    dir.write(
        "shop.yaml",
        &(meshed_service("payment", "payment", payment_in)
            + &token_secret("checkout-api")
            + &token_secret("payment")),
    );
    let (old, new) = (
        dir.path().with_extension("ca-old"),
        dir.path().with_extension("ca-new"),
    );
    write_root(&old);
    write_root(&new);
    let listen = format!("127.0.0.1:{}", free_port());
    let ttl = ["--cert-ttl", "1m"];
    let new_root = new.join("ca.crt").to_string_lossy().into_owned();
    let old_root = old.join("ca.crt").to_string_lossy().into_owned();
    let phase = |ca: &Path, extra_roots: Option<&str>| {
        let mut flags = ttl.to_vec();
        if let Some(r) = extra_roots {
            flags.extend(["--extra-roots", r]);
        }
        Control::start_in(&dir, &listen, ca, &flags, &[])
    };
    // 1. Signing with the old root; the new one trusted already.
    let control = phase(&old, Some(&new_root));
    let payment_app = echo("payment", "payment-0");
    let payment = sidecar(&dir, &control, "payment", payment_app.port, payment_in).await;
    let checkout_app = echo("c", "c");
    let checkout = sidecar(
        &dir,
        &control,
        "checkout-api",
        checkout_app.port,
        free_port(),
    )
    .await;

    let out = checkout.outbound;
    let traffic = Traffic::start(Duration::from_millis(20), move || async move {
        let answer = try_call(out, "http://payment/pay").await;
        let good = matches!(answer, Ok(200));
        if !good {
            eprintln!("failed: {answer:?}");
        }
        vec![good]
    });
    let start = Instant::now();
    let until = |share: f64| start + total.mul_f64(share);
    tokio::time::sleep_until(until(1.0 / 3.0).into()).await;
    // 2. Signing with the new root; the old one still trusted.
    drop(control);
    let control = phase(&new, Some(&old_root));
    // The CA goes away just before payment's next renewal, for 15 s:
    // renewal fails and is retried while the certificate, still valid,
    // keeps serving (a one-minute certificate is renewed 37-44 s after
    // it is issued).
    let issued = renewal(&payment, None).await;
    renewal(&payment, Some(issued)).await;
    tokio::time::sleep(Duration::from_secs(30)).await;
    drop(control);
    tokio::time::sleep(Duration::from_secs(15)).await;
    let control = phase(&new, Some(&old_root));
    tokio::time::sleep_until(until(2.0 / 3.0).into()).await;
    // 3. The old root dropped.
    drop(control);
    let control = phase(&new, None);
    tokio::time::sleep_until(until(1.0).into()).await;

    let (ok, failed) = traffic.stop().await;
    let pm = payment.metrics().await;
    let cm = checkout.metrics().await;
    eprintln!(
        "rotation over {total:?}: {ok} requests succeeded, {failed} failed; payment got {} certificates ({} failed CA calls), checkout {} ({})",
        metric(&pm, "strait_identity_certificates_issued_total"),
        metric(&pm, "strait_identity_ca_failures_total"),
        metric(&cm, "strait_identity_certificates_issued_total"),
        metric(&cm, "strait_identity_ca_failures_total"),
    );
    assert_eq!(failed, 0, "requests failed during rotation");
    assert!(ok as f64 > total.as_secs_f64() * 10.0, "only {ok} requests");
    // Renewed all along, the outage included.
    let renewals = (total.as_secs_f64() / 60.0).floor().max(2.0);
    assert!(
        metric(&pm, "strait_identity_certificates_issued_total") >= renewals,
        "{pm}"
    );
    assert!(
        metric(&cm, "strait_identity_certificates_issued_total") >= renewals,
        "{cm}"
    );
    assert!(metric(&pm, "strait_identity_certificate_expiry_seconds") > 0.0);
    assert!(
        metric(&pm, "strait_identity_ca_failures_total") >= 1.0,
        "payment's renewal never met the outage:\n{}",
        payment.logs()
    );

    // Payment now presents a certificate of the new root: a client that
    // trusts only the new root, with a certificate from it, is served.
    let ca = strait_identity::Authority::from_pem(
        "cluster.local",
        &std::fs::read_to_string(new.join("ca.crt")).expect("crt"),
        &std::fs::read_to_string(new.join("ca.key")).expect("key"),
        None,
    )
    .expect("new CA");
    let who = strait_identity::SpiffeId::new("cluster.local", "shop", "checkout-api");
    let (key, csr) = strait_identity::new_key_and_csr(&who).expect("csr");
    let chain = ca
        .sign(&csr, &who, Duration::from_secs(60))
        .expect("signed");
    let creds = strait_identity::Credentials::new(&who, chain, &key).expect("creds");
    let tls = strait_identity::MeshTls::new(&creds, ca.trust_bundle()).expect("tls");
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", payment_in))
        .await
        .expect("connect");
    let name = rustls_pki_types::ServerName::try_from("payment").expect("name");
    let stream = tokio_rustls::TlsConnector::from(tls.client_http1.clone())
        .connect(name, tcp)
        .await
        .expect("payment's certificate chains to the new root");
    let peer = strait_identity::peer_id(stream.get_ref().1.peer_certificates());
    assert_eq!(peer.map(|p| p.service_account), Some("payment".to_string()));
    drop(control);
}
