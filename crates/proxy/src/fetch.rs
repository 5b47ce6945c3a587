//! strait's own calls to HTTP servers that are not backends: issuers'
//! key sets and discovery documents, OpenID token endpoints. Each call
//! is bounded in time and size.

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Full};
use std::sync::Arc;
use std::time::Duration;

pub type Client = hyper_util::client::legacy::Client<
    hyper_rustls::HttpsConnector<hyper_util::client::legacy::connect::HttpConnector>,
    Full<Bytes>,
>;

/// A call's limit, connection to last byte.
const TIMEOUT: Duration = Duration::from_secs(5);
/// An answer larger than this is refused.
const MAX_BODY: usize = 1024 * 1024;

/// A client over http and https, checking servers against the system's
/// roots; without any (an image with no CA bundle), https fails at each
/// call, saying so, and http still works.
pub fn client(uri: &str) -> Result<Client, String> {
    let builder = match hyper_rustls::HttpsConnectorBuilder::new().with_native_roots() {
        Ok(b) => b,
        Err(e) => {
            tracing::warn!(uri, error = %e, "no system roots: https servers cannot be checked");
            let provider = Arc::new(rustls::crypto::ring::default_provider());
            let config = rustls::ClientConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .map_err(|e| e.to_string())?
                .with_root_certificates(rustls::RootCertStore::empty())
                .with_no_client_auth();
            hyper_rustls::HttpsConnectorBuilder::new().with_tls_config(config)
        }
    };
    let https = builder.https_or_http().enable_http1().build();
    let executor = hyper_util::rt::TokioExecutor::new();
    Ok(hyper_util::client::legacy::Client::builder(executor).build(https))
}

/// The body of a `2xx` answer to `GET uri`.
pub async fn get(client: &Client, uri: &str) -> Result<Bytes, String> {
    let uri: http::Uri = uri.parse().map_err(|e| format!("{e}"))?;
    let req = Request::get(uri)
        .body(Full::default())
        .map_err(|e| e.to_string())?;
    match call(client, req).await? {
        (status, body) if status.is_success() => Ok(body),
        (status, _) => Err(format!("answered {status}")),
    }
}

/// The answer to `req`, whatever its status.
pub async fn call(
    client: &Client,
    req: Request<Full<Bytes>>,
) -> Result<(StatusCode, Bytes), String> {
    let asked = async {
        let response = client.request(req).await.map_err(|e| format!("{e}"))?;
        let status = response.status();
        let body = http_body_util::Limited::new(response.into_body(), MAX_BODY)
            .collect()
            .await
            .map_err(|e| format!("reading the answer: {e}"))?;
        Ok((status, body.to_bytes()))
    };
    tokio::time::timeout(TIMEOUT, asked)
        .await
        .map_err(|_| format!("no answer in {TIMEOUT:?}"))?
}
