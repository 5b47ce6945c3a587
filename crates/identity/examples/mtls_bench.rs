//! Benchmark aid for `bench/mesh.sh` (not part of strait):
//!
//! `mtls_bench mint CA_DIR SPIFFE_ID OUT_PREFIX` writes `OUT_PREFIX.crt`
//! and `OUT_PREFIX.key`: a workload certificate (one day) for the ID,
//! signed by the CA in `CA_DIR` — the same ECDSA P-256 certificates
//! strait's CA issues, for nginx and for this client.
//!
//! `mtls_bench handshakes ADDR CERT KEY CA SECONDS CONCURRENCY` makes full
//! TLS 1.3 mutual-TLS handshakes to ADDR for SECONDS, CONCURRENCY at a
//! time: a new connection each, no resumption, ALPN `strait-http/1.1`
//! then `http/1.1`, one `GET /` read to its end. Prints
//! `handshakes=N errors=E seconds=S`; the first error is printed too.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use strait_identity::{Authority, Credentials, SpiffeId};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn main() -> Result<(), String> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("mint") if args.len() == 4 => mint(&args[1], &args[2], &args[3]),
        Some("handshakes") if args.len() == 7 => {
            let seconds: u64 = args[5].parse().map_err(|e| format!("SECONDS: {e}"))?;
            let concurrency: usize = args[6].parse().map_err(|e| format!("CONCURRENCY: {e}"))?;
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| e.to_string())?
                .block_on(handshakes(&args[1], &args[2], &args[3], &args[4], seconds, concurrency))
        }
        _ => Err("usage: mtls_bench mint CA_DIR SPIFFE_ID OUT_PREFIX | handshakes ADDR CERT KEY CA SECONDS CONCURRENCY".into()),
    }
}

fn read(path: &str) -> Result<String, String> {
    std::fs::read_to_string(path).map_err(|e| format!("{path}: {e}"))
}

fn mint(ca_dir: &str, id: &str, out: &str) -> Result<(), String> {
    let id = SpiffeId::parse(id)?;
    let ca = Authority::from_pem(
        &id.trust_domain,
        &read(&format!("{ca_dir}/ca.crt"))?,
        &read(&format!("{ca_dir}/ca.key"))?,
        None,
    )?;
    let (key, csr) = strait_identity::new_key_and_csr(&id)?;
    let chain = ca.sign(&csr, &id, Duration::from_secs(24 * 3600))?;
    let pem: String = chain
        .iter()
        .map(|c| strait_identity::ca::pem("CERTIFICATE", c))
        .collect();
    std::fs::write(format!("{out}.crt"), pem).map_err(|e| e.to_string())?;
    strait_identity::ca::write_private(
        std::path::Path::new(&format!("{out}.key")),
        key.serialize_pem().as_bytes(),
    )
}

async fn handshakes(
    addr: &str,
    cert: &str,
    key: &str,
    ca: &str,
    seconds: u64,
    concurrency: usize,
) -> Result<(), String> {
    let chain = strait_identity::ca::certs(read(cert)?.as_bytes(), cert)?;
    let key_pair = rcgen::KeyPair::from_pem(&read(key)?).map_err(|e| format!("{key}: {e}"))?;
    let id = SpiffeId::of_certificate(&chain[0])?;
    let creds = Credentials::new(&id, chain, &key_pair)?;
    let bundle = strait_identity::ca::certs(read(ca)?.as_bytes(), ca)?;
    let tls = strait_identity::MeshTls::new(&creds, &bundle)?;
    let mut config = (*tls.client_http1).clone();
    config.alpn_protocols = vec![b"strait-http/1.1".to_vec(), b"http/1.1".to_vec()];
    config.resumption = rustls::client::Resumption::disabled();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let addr: std::net::SocketAddr = addr.parse().map_err(|e| format!("ADDR: {e}"))?;
    let done = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let first_error = Arc::new(std::sync::Mutex::new(None::<String>));
    let start = Instant::now();
    let until = start + Duration::from_secs(seconds);
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let (connector, done, errors, first_error) = (
            connector.clone(),
            done.clone(),
            errors.clone(),
            first_error.clone(),
        );
        tasks.push(tokio::spawn(async move {
            while Instant::now() < until {
                match one(&connector, addr).await {
                    Ok(()) => done.fetch_add(1, Ordering::Relaxed),
                    Err(e) => {
                        if let Ok(mut f) = first_error.lock() {
                            f.get_or_insert(e);
                        }
                        errors.fetch_add(1, Ordering::Relaxed)
                    }
                };
            }
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
    let elapsed = start.elapsed().as_secs_f64();
    if let Ok(Some(e)) = first_error.lock().map(|f| f.clone()) {
        eprintln!("first error: {e}");
    }
    println!(
        "handshakes={} errors={} seconds={elapsed:.3}",
        done.load(Ordering::Relaxed),
        errors.load(Ordering::Relaxed)
    );
    Ok(())
}

async fn one(
    connector: &tokio_rustls::TlsConnector,
    addr: std::net::SocketAddr,
) -> Result<(), String> {
    let tcp = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|e| e.to_string())?;
    let _ = tcp.set_nodelay(true);
    let name = rustls_pki_types::ServerName::try_from("payment.shop").map_err(|e| e.to_string())?;
    let mut tls = connector
        .connect(name, tcp)
        .await
        .map_err(|e| format!("handshake: {e}"))?;
    tls.write_all(b"GET / HTTP/1.1\r\nhost: payment.shop\r\nconnection: close\r\n\r\n")
        .await
        .map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    // A close without close_notify after a whole answer is no failure here.
    let read = tls.read_to_end(&mut out).await;
    if let Err(e) = read {
        if out.is_empty() {
            return Err(e.to_string());
        }
    }
    if out.starts_with(b"HTTP/1.1 200") {
        Ok(())
    } else {
        Err(format!(
            "answer: {:?}",
            String::from_utf8_lossy(&out[..out.len().min(80)])
        ))
    }
}
