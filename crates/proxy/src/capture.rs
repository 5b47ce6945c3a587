//! Transparent capture, Linux: `strait proxy-init` redirects a pod's TCP
//! to the sidecar with iptables (as a sidecar init container does), and
//! the outbound listener learns each connection's real destination from
//! `SO_ORIGINAL_DST`. What arrives is sniffed: HTTP/1 or HTTP/2 is routed
//! as HTTP; anything else, or a port of a server-first protocol (where the
//! client waits for the server and sniffing would only stall it), is
//! carried as opaque TCP.

use std::net::SocketAddr;
use std::time::Duration;
use tokio::net::TcpStream;

/// How long the first bytes may take before a connection is taken for
/// opaque TCP (`DETECT_TIMEOUT`).
pub const DETECT_TIMEOUT: Duration = Duration::from_secs(1);

/// Ports never sniffed, carried as TCP at once: server-first protocols
/// (SMTP, MySQL, PostgreSQL, Redis, memcached, ...), Linkerd's default list.
pub const OPAQUE_PORTS: [u16; 8] = [25, 587, 3306, 4444, 5432, 6379, 9300, 11211];

/// The destination the client asked for before iptables redirected it;
/// `None` for a connection made to the listener itself (explicit mode).
pub fn original_dst(stream: &TcpStream) -> Option<SocketAddr> {
    let sock = socket2::SockRef::from(stream);
    let dst = sock
        .original_dst_v4()
        .or_else(|_| sock.original_dst_v6())
        .ok()?
        .as_socket()?;
    (Some(dst) != stream.local_addr().ok()).then_some(dst)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sniffed {
    Http,
    Opaque,
}

const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
const METHODS: [&[u8]; 9] = [
    b"GET ",
    b"HEAD ",
    b"POST ",
    b"PUT ",
    b"DELETE ",
    b"OPTIONS ",
    b"PATCH ",
    b"TRACE ",
    b"CONNECT ",
];

/// Classifies the first bytes seen so far: `None` while they could still
/// be either.
pub fn classify(head: &[u8]) -> Option<Sniffed> {
    if head.is_empty() {
        return None;
    }
    let could_be = |pattern: &[u8]| {
        let n = head.len().min(pattern.len());
        head[..n] == pattern[..n]
    };
    let complete = |pattern: &[u8]| head.len() >= pattern.len() && head.starts_with(pattern);
    if complete(H2_PREFACE) || METHODS.iter().any(|m| complete(m)) {
        return Some(Sniffed::Http);
    }
    if could_be(H2_PREFACE) || METHODS.iter().any(|m| could_be(m)) {
        return None;
    }
    Some(Sniffed::Opaque)
}

/// Peeks (never reads) until the protocol is known or [`DETECT_TIMEOUT`].
pub async fn sniff(stream: &TcpStream) -> Sniffed {
    let detect = async {
        let mut buf = [0u8; 24];
        loop {
            match stream.peek(&mut buf).await {
                Ok(0) | Err(_) => return Sniffed::Opaque,
                Ok(n) => {
                    if let Some(found) = classify(&buf[..n]) {
                        return found;
                    }
                    if n == buf.len() {
                        return Sniffed::Opaque;
                    }
                    // More bytes are coming: wait for them rather than spin.
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
            }
        }
    };
    tokio::time::timeout(DETECT_TIMEOUT, detect)
        .await
        .unwrap_or(Sniffed::Opaque)
}

/// What `strait proxy-init` installs.
#[derive(Debug, Clone)]
pub struct CaptureRules {
    pub proxy_uid: u32,
    pub inbound_port: u16,
    pub outbound_port: u16,
    pub exclude_inbound: Vec<u16>,
    pub exclude_outbound: Vec<u16>,
}

impl CaptureRules {
    /// The rules as `iptables-restore --noflush` input: inbound TCP to the
    /// inbound port, outbound TCP to the outbound port, except the proxy's
    /// own traffic (by UID), loopback, and the excluded ports.
    pub fn iptables_restore(&self) -> String {
        let mut r = String::from("*nat\n");
        for chain in [
            "STRAIT_INBOUND",
            "STRAIT_IN_REDIRECT",
            "STRAIT_OUTPUT",
            "STRAIT_REDIRECT",
        ] {
            r += &format!(":{chain} - [0:0]\n");
        }
        r += &format!(
            "-A STRAIT_IN_REDIRECT -p tcp -j REDIRECT --to-ports {}\n",
            self.inbound_port
        );
        r += &format!(
            "-A STRAIT_REDIRECT -p tcp -j REDIRECT --to-ports {}\n",
            self.outbound_port
        );
        r += "-A PREROUTING -p tcp -j STRAIT_INBOUND\n";
        for p in &self.exclude_inbound {
            r += &format!("-A STRAIT_INBOUND -p tcp --dport {p} -j RETURN\n");
        }
        r += "-A STRAIT_INBOUND -p tcp -j STRAIT_IN_REDIRECT\n";
        r += "-A OUTPUT -p tcp -j STRAIT_OUTPUT\n";
        r += &format!(
            "-A STRAIT_OUTPUT -m owner --uid-owner {} -j RETURN\n",
            self.proxy_uid
        );
        r += "-A STRAIT_OUTPUT -d 127.0.0.1/32 -j RETURN\n";
        for p in &self.exclude_outbound {
            r += &format!("-A STRAIT_OUTPUT -p tcp --dport {p} -j RETURN\n");
        }
        r += "-A STRAIT_OUTPUT -j STRAIT_REDIRECT\nCOMMIT\n";
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sniffing() {
        assert_eq!(classify(b"GE"), None);
        assert_eq!(classify(b"GET /"), Some(Sniffed::Http));
        assert_eq!(
            classify(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"),
            Some(Sniffed::Http)
        );
        assert_eq!(classify(b"PRI * HT"), None);
        assert_eq!(classify(b"\x16\x03\x01"), Some(Sniffed::Opaque));
        assert_eq!(classify(b"GETX"), Some(Sniffed::Opaque));
        assert_eq!(classify(b"\0\0\0"), Some(Sniffed::Opaque));
    }

    #[test]
    fn rules_exclude_the_proxy_and_ports() {
        let r = CaptureRules {
            proxy_uid: 1337,
            inbound_port: 15006,
            outbound_port: 15001,
            exclude_inbound: vec![15000],
            exclude_outbound: vec![53],
        }
        .iptables_restore();
        assert!(r.contains("-A STRAIT_OUTPUT -m owner --uid-owner 1337 -j RETURN\n"));
        assert!(r.contains("--dport 15000 -j RETURN"));
        assert!(r.contains("--dport 53 -j RETURN"));
        assert!(r.ends_with("COMMIT\n"));
    }
}
