//! The CA and mutual TLS with real handshakes on 127.0.0.1: what is
//! signed, what is refused, and which peers a sidecar accepts. Negative
//! certificates are made here with rcgen.

use rcgen::{
    CertificateParams, DistinguishedName, ExtendedKeyUsagePurpose, Issuer, KeyPair, SanType,
};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName};
use std::time::Duration;
use strait_identity::{check_peer, new_key_and_csr, Authority, Credentials, MeshTls, SpiffeId};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const TD: &str = "cluster.local";

fn authority() -> (Authority, String, String) {
    let (cert, key) = strait_identity::ca::new_root(TD).expect("root");
    (
        Authority::from_pem(TD, &cert, &key, None).expect("authority"),
        cert,
        key,
    )
}

fn id(ns: &str, sa: &str) -> SpiffeId {
    SpiffeId::new(TD, ns, sa)
}

/// Credentials for `who`, signed by `ca` through a CSR, as a proxy gets them.
fn issue(ca: &Authority, who: &SpiffeId, ttl: Duration) -> Credentials {
    let (key, csr) = new_key_and_csr(who).expect("csr");
    let chain = ca.sign(&csr, who, ttl).expect("signed");
    Credentials::new(who, chain, &key).expect("credentials")
}

/// A certificate for `uri` made directly with rcgen by the CA in PEM, with
/// the validity given (seconds from now, negative for the past).
fn forged(
    ca_cert: &str,
    ca_key: &str,
    uri: &str,
    from: i64,
    to: i64,
) -> (Vec<CertificateDer<'static>>, KeyPair) {
    let issuer =
        Issuer::from_ca_cert_pem(ca_cert, KeyPair::from_pem(ca_key).expect("key")).expect("issuer");
    let key = KeyPair::generate().expect("key");
    let mut p = CertificateParams::default();
    p.distinguished_name = DistinguishedName::new();
    p.subject_alt_names = vec![SanType::URI(uri.try_into().expect("uri"))];
    p.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs() as i64;
    let epoch = rcgen::date_time_ymd(1970, 1, 1);
    p.not_before = epoch + Duration::from_secs((now + from) as u64);
    p.not_after = epoch + Duration::from_secs((now + to) as u64);
    let cert = p.signed_by(&key, &issuer).expect("signed");
    (vec![cert.der().clone()], key)
}

/// One handshake between a client with `client` and a server with
/// `server`; what each side ended with (the server's view: the peer ID).
async fn handshake(
    client: &MeshTls,
    server: &MeshTls,
) -> (Result<SpiffeId, String>, Result<Option<SpiffeId>, String>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let acceptor = tokio_rustls::TlsAcceptor::from(server.server.clone());
    let served = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.map_err(|e| e.to_string())?;
        let mut tls = acceptor.accept(tcp).await.map_err(|e| e.to_string())?;
        let peer = strait_identity::peer_id(tls.get_ref().1.peer_certificates());
        let mut buf = [0u8; 4];
        tls.read_exact(&mut buf).await.map_err(|e| e.to_string())?;
        tls.write_all(b"pong").await.map_err(|e| e.to_string())?;
        Ok::<_, String>(peer)
    });
    let connector = tokio_rustls::TlsConnector::from(client.client_h2.clone());
    let tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let name = ServerName::try_from("payment.shop.svc")
        .expect("name")
        .to_owned();
    let client_side = async {
        let mut tls = connector
            .connect(name, tcp)
            .await
            .map_err(|e| e.to_string())?;
        let peer = check_peer(tls.get_ref().1.peer_certificates(), &[])?;
        tls.write_all(b"ping").await.map_err(|e| e.to_string())?;
        let mut buf = [0u8; 4];
        tls.read_exact(&mut buf).await.map_err(|e| e.to_string())?;
        Ok(peer)
    }
    .await;
    let server_side = tokio::time::timeout(Duration::from_secs(5), served)
        .await
        .expect("server in time")
        .expect("server task");
    (client_side, server_side)
}

#[tokio::test]
async fn sidecars_with_ca_certificates_handshake_and_see_each_other() {
    let (ca, _, _) = authority();
    let checkout = issue(&ca, &id("shop", "checkout-api"), Duration::from_secs(3600));
    let payment = issue(&ca, &id("shop", "payment"), Duration::from_secs(3600));
    let bundle = ca.trust_bundle();
    let c = MeshTls::new(&checkout, bundle).expect("tls");
    let s = MeshTls::new(&payment, bundle).expect("tls");
    let (client, server) = handshake(&c, &s).await;
    assert_eq!(client, Ok(id("shop", "payment")));
    assert_eq!(server, Ok(Some(id("shop", "checkout-api"))));
    assert_eq!(c.id, id("shop", "checkout-api"));
}

#[tokio::test]
async fn the_ca_signs_only_the_callers_identity() {
    let (ca, _, _) = authority();
    let (_, csr) = new_key_and_csr(&id("shop", "payment")).expect("csr");
    let refused = ca.sign(&csr, &id("shop", "checkout-api"), Duration::from_secs(60));
    let why = refused.expect_err("a CSR for another identity is refused");
    assert!(
        why.contains("spiffe://cluster.local/ns/shop/sa/payment"),
        "{why}"
    );
    let other_td = SpiffeId::new("evil.example", "shop", "payment");
    let (_, csr) = new_key_and_csr(&other_td).expect("csr");
    assert!(ca.sign(&csr, &other_td, Duration::from_secs(60)).is_err());
    assert!(ca
        .sign(
            b"not a csr",
            &id("shop", "payment"),
            Duration::from_secs(60)
        )
        .is_err());
}

#[tokio::test]
async fn certificates_are_short_lived_and_renewed_before_expiry() {
    let (ca, _, _) = authority();
    let creds = issue(&ca, &id("shop", "payment"), Duration::from_secs(60));
    let left = creds.remaining();
    assert!(
        left <= Duration::from_secs(60) && left > Duration::from_secs(55),
        "{left:?}"
    );
    let renew = creds.renew_at();
    assert!(renew > creds.not_before && renew < creds.not_after);
}

#[tokio::test]
async fn peers_outside_the_mesh_are_refused() {
    let (ca, ca_cert, ca_key) = authority();
    let payment = issue(&ca, &id("shop", "payment"), Duration::from_secs(3600));
    let server = MeshTls::new(&payment, ca.trust_bundle()).expect("tls");

    // A client certificate from another CA.
    let (other, _, _) = authority();
    let stranger = issue(
        &other,
        &id("shop", "checkout-api"),
        Duration::from_secs(3600),
    );
    // The stranger trusts our CA, so only the server can refuse it.
    let client = MeshTls::new(&stranger, ca.trust_bundle()).expect("tls");
    let (c, s) = handshake(&client, &server).await;
    assert!(c.is_err() && s.is_err(), "other CA accepted: {c:?} {s:?}");

    // An expired certificate from our own CA.
    let who = id("shop", "checkout-api");
    let (chain, key) = forged(&ca_cert, &ca_key, &who.to_string(), -7200, -3600);
    let expired = Credentials::new(&who, chain, &key).expect("credentials");
    let client = MeshTls::new(&expired, ca.trust_bundle()).expect("tls");
    let (c, s) = handshake(&client, &server).await;
    assert!(c.is_err() && s.is_err(), "expired accepted: {c:?} {s:?}");

    // Our CA, but another trust domain's SPIFFE ID.
    let foreign = SpiffeId::new("evil.example", "shop", "checkout-api");
    let (chain, key) = forged(&ca_cert, &ca_key, &foreign.to_string(), -60, 3600);
    let creds = Credentials::new(&foreign, chain, &key).expect("credentials");
    let client = MeshTls::new(&creds, ca.trust_bundle()).expect("tls");
    let (c, s) = handshake(&client, &server).await;
    assert!(
        c.is_err() && s.is_err(),
        "foreign trust domain accepted: {c:?} {s:?}"
    );

    // A server with the wrong identity for the destination.
    let checkout = issue(&ca, &id("shop", "checkout-api"), Duration::from_secs(3600));
    let client = MeshTls::new(&checkout, ca.trust_bundle()).expect("tls");
    let impostor = issue(&ca, &id("shop", "cart"), Duration::from_secs(3600));
    let impostor = MeshTls::new(&impostor, ca.trust_bundle()).expect("tls");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let acceptor = tokio_rustls::TlsAcceptor::from(impostor.server.clone());
    tokio::spawn(async move {
        if let Ok((tcp, _)) = listener.accept().await {
            let _ = acceptor.accept(tcp).await;
        }
    });
    let tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let tls = tokio_rustls::TlsConnector::from(client.client_h2.clone())
        .connect(
            ServerName::try_from("payment").expect("name").to_owned(),
            tcp,
        )
        .await
        .expect("the chain is good");
    let why = check_peer(
        tls.get_ref().1.peer_certificates(),
        &[id("shop", "payment")],
    )
    .expect_err("wrong server identity");
    assert!(why.contains("sa/cart"), "{why}");
}

#[tokio::test]
async fn during_a_root_rotation_both_roots_are_trusted() {
    let (old, _, _) = authority();
    let (mut new, _, _) = authority();
    let old_pem = old.trust_bundle_pem();
    new.trust_also(&old_pem).expect("both roots");
    assert_eq!(new.trust_bundle().len(), 2);
    let bundle: Vec<CertificateDer<'static>> =
        CertificateDer::pem_slice_iter(new.trust_bundle_pem().as_bytes())
            .collect::<Result<_, _>>()
            .expect("pem");
    // One side still on the old root, the other already on the new one.
    let a = issue(&old, &id("shop", "checkout-api"), Duration::from_secs(3600));
    let b = issue(&new, &id("shop", "payment"), Duration::from_secs(3600));
    let a = MeshTls::new(&a, &bundle).expect("tls");
    let b = MeshTls::new(&b, &bundle).expect("tls");
    let (c, s) = handshake(&a, &b).await;
    assert_eq!(c, Ok(id("shop", "payment")));
    assert_eq!(s, Ok(Some(id("shop", "checkout-api"))));
    let (c, s) = handshake(&b, &a).await;
    assert!(c.is_ok() && s.is_ok());
}

#[test]
fn a_generated_ca_key_is_private_to_its_owner() {
    use std::os::unix::fs::PermissionsExt;
    let dir = std::env::temp_dir().join(format!("strait-ca-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let ca = Authority::open_or_create(&dir, TD).expect("ca");
    let mode = std::fs::metadata(dir.join("ca.key"))
        .expect("key")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    // Opened again, it is the same CA.
    let again = Authority::open_or_create(&dir, TD).expect("ca");
    assert_eq!(ca.trust_bundle(), again.trust_bundle());
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn a_user_supplied_intermediate_signs_and_chains_to_its_root() {
    use rcgen::{BasicConstraints, CertifiedIssuer, IsCa, KeyUsagePurpose};
    // A root and an intermediate, as cert-manager would hand them over.
    let root_key = KeyPair::generate().expect("key");
    let mut p = CertificateParams::default();
    p.distinguished_name = DistinguishedName::new();
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let root = CertifiedIssuer::self_signed(p, root_key).expect("root");
    let mid_key = KeyPair::generate().expect("key");
    let mut p = CertificateParams::default();
    p.distinguished_name = DistinguishedName::new();
    p.distinguished_name
        .push(rcgen::DnType::CommonName, "mesh intermediate");
    p.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let mid_pem = p.signed_by(&mid_key, &root).expect("intermediate").pem();

    assert!(
        Authority::from_pem(TD, &mid_pem, &mid_key.serialize_pem(), None).is_err(),
        "an intermediate without its roots is refused"
    );
    let ca = Authority::from_pem(TD, &mid_pem, &mid_key.serialize_pem(), Some(&root.pem()))
        .expect("intermediate CA");
    let a = issue(&ca, &id("shop", "checkout-api"), Duration::from_secs(600));
    assert_eq!(a.chain.len(), 2, "the leaf travels with the intermediate");
    let b = issue(&ca, &id("shop", "payment"), Duration::from_secs(600));
    // Peers trust only the root.
    let roots = vec![root.der().clone()];
    let (c, s) = handshake(
        &MeshTls::new(&a, &roots).expect("tls"),
        &MeshTls::new(&b, &roots).expect("tls"),
    )
    .await;
    assert_eq!(c, Ok(id("shop", "payment")));
    assert_eq!(s, Ok(Some(id("shop", "checkout-api"))));
    // A key that is not the certificate's is refused.
    let other = KeyPair::generate().expect("key").serialize_pem();
    assert!(Authority::from_pem(TD, &mid_pem, &other, Some(&root.pem())).is_err());
}
