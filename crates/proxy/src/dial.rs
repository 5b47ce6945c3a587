//! Opening a TCP connection to a backend: one place for the connect
//! timeout and `TCP_NODELAY`, for HTTP, tunnels and byte streams alike.

use std::net::SocketAddr;
use std::time::Duration;
use tokio::net::TcpStream;

/// How long connecting to an endpoint may take (`CONNECT_TIMEOUT`); the
/// TLS handshake after it gets as long again.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// A connection to `endpoint`, or why there is none, for logs.
pub async fn dial(endpoint: SocketAddr) -> Result<TcpStream, String> {
    match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(endpoint)).await {
        Ok(Ok(stream)) => {
            // Requests and answers are small writes: never wait to coalesce.
            let _ = stream.set_nodelay(true);
            Ok(stream)
        }
        Ok(Err(e)) => Err(format!("connecting to {endpoint}: {e}")),
        Err(_) => Err(format!("connecting to {endpoint} timed out")),
    }
}
